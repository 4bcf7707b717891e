//! The queue's rules, pinned on paused time.
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::channel::mpsc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

fn config() -> Config {
    Config {
        concurrency: 4,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(8),
        jitter: 0.0,
        resync: None,
    }
}

type Log = Arc<Mutex<Vec<(String, Duration)>>>;

/// A running controller whose reconcile calls are logged with their
/// start time (seconds since the harness started, on tokio's paused clock).
struct Harness {
    queue: WorkQueue,
    log: Log,
    start: Instant,
    triggers: mpsc::UnboundedSender<String>,
    stopper: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Harness {
    /// `reconcile(key, n)` gets the 1-based run number of the key.
    fn spawn<F, Fut>(config: Config, reconcile: F) -> Harness
    where
        F: Fn(String, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, String>> + Send + 'static,
    {
        let start = Instant::now();
        let log: Log = Arc::default();
        let controller = Controller::new(config).with_metrics(Metrics::new());
        let queue = controller.queue();
        let (triggers, rx) = mpsc::unbounded();
        let (stop, stopped) = oneshot::channel::<()>();
        let l = log.clone();
        let handle = tokio::spawn(controller.run(
            move |key: String| {
                let n = {
                    let mut l = l.lock().unwrap();
                    l.push((key.clone(), start.elapsed()));
                    l.iter().filter(|(k, _)| *k == key).count()
                };
                reconcile(key, n)
            },
            rx,
            async move {
                let _ = stopped.await;
            },
        ));
        Harness {
            queue,
            log,
            start,
            triggers,
            stopper: Some(stop),
            handle,
        }
    }

    /// Start times (seconds) of the runs of `key`.
    fn runs(&self, key: &str) -> Vec<f64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, t)| t.as_secs_f64())
            .collect()
    }

    fn total_runs(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    async fn sleep_until_secs(&self, secs: f64) {
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(secs)).await;
    }

    async fn stop(mut self) {
        let _ = self.stopper.take().unwrap().send(());
        self.handle.await.unwrap();
    }
}

/// Timers have millisecond granularity; allow a little drift per hop.
fn assert_times(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "runs at {got:?}, wanted {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.05, "runs at {got:?}, wanted {want:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_has_one_slot() {
    let q = WorkQueue::new(config());
    for key in ["K/a", "K/a", "K/b", "K/a"] {
        q.add(key);
    }
    assert_eq!(q.depth(), 2);
    let now = Instant::now();
    let mut popped = Vec::new();
    while let Pop::Ready(k) = q.pop(now) {
        popped.push(k);
    }
    popped.sort();
    assert_eq!(popped, ["K/a", "K/b"]);
    assert_eq!(q.pop(now), Pop::Idle(None));
    assert_eq!(q.in_flight(), 2);
}

#[tokio::test(start_paused = true)]
async fn duplicate_triggers_run_once() {
    let h = Harness::spawn(config(), |_, _| async { Ok(Action::AwaitChange) });
    // Queued before the runner looks: five triggers, one slot.
    for _ in 0..5 {
        h.queue.add("K/a");
    }
    h.sleep_until_secs(10.0).await;
    assert_times(&h.runs("K/a"), &[0.0]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_earliest_deadline_wins() {
    let h = Harness::spawn(config(), |_, _| async { Ok(Action::AwaitChange) });
    h.queue.add_after("K/a", Duration::from_secs(10));
    h.queue.add_after("K/a", Duration::from_secs(2));
    h.queue.add_after("K/a", Duration::from_secs(5));
    assert_eq!(
        h.queue.deadline("K/a"),
        Some(h.start + Duration::from_secs(2))
    );
    assert_eq!(h.queue.depth(), 1);
    h.sleep_until_secs(20.0).await;
    assert_times(&h.runs("K/a"), &[2.0]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_trigger_during_a_run_is_held_not_run_concurrently() {
    let active = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicUsize::new(0));
    let (a, o) = (active.clone(), overlap.clone());
    let h = Harness::spawn(config(), move |_, _| {
        let (a, o) = (a.clone(), o.clone());
        async move {
            if a.fetch_add(1, Ordering::SeqCst) > 0 {
                o.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            a.fetch_sub(1, Ordering::SeqCst);
            Ok(Action::AwaitChange)
        }
    });
    h.triggers.unbounded_send("K/a".into()).unwrap();
    h.sleep_until_secs(1.0).await;
    assert!(h.queue.is_running("K/a"));
    // Two triggers while it runs: held as one, not started.
    h.triggers.unbounded_send("K/a".into()).unwrap();
    h.sleep_until_secs(2.0).await;
    h.queue.add("K/a");
    h.sleep_until_secs(3.0).await;
    assert_eq!(h.queue.in_flight(), 1);
    assert_eq!(h.queue.depth(), 1, "the held trigger");
    assert_eq!(h.queue.deadline("K/a"), None, "held, not queued");
    h.sleep_until_secs(30.0).await;
    assert_times(&h.runs("K/a"), &[0.0, 10.0]);
    assert_eq!(overlap.load(Ordering::SeqCst), 0);
    assert_eq!(h.queue.depth(), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_is_never_exceeded() {
    const CAP: usize = 3;
    const KEYS: usize = 40;
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (a, p) = (active.clone(), peak.clone());
    let cfg = Config {
        concurrency: CAP,
        ..config()
    };
    let h = Harness::spawn(cfg, move |key, n| {
        let (a, p) = (a.clone(), p.clone());
        async move {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            // Uneven work so slots free up at different times.
            let i: u64 = key[2..].parse().unwrap();
            tokio::time::sleep(Duration::from_millis(100 + (i * 37 + n as u64 * 11) % 400)).await;
            a.fetch_sub(1, Ordering::SeqCst);
            if n < 4 {
                Ok(Action::RequeueAfter(Duration::from_millis(50)))
            } else {
                Ok(Action::AwaitChange)
            }
        }
    });
    for i in 0..KEYS {
        h.queue.add(format!("K/{i}"));
    }
    h.sleep_until_secs(1.0).await;
    assert_eq!(h.queue.in_flight(), CAP);
    assert_eq!(h.queue.depth(), KEYS - CAP);
    h.sleep_until_secs(600.0).await;
    assert_eq!(h.total_runs(), KEYS * 4);
    assert_eq!(peak.load(Ordering::SeqCst), CAP);
    assert_eq!(h.queue.in_flight(), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_to_the_cap_then_resets_on_success() {
    // Runs 1-5 fail, 6 succeeds, 7 (after a new trigger) fails, 8 succeeds.
    let h = Harness::spawn(config(), |_, n| async move {
        if n <= 5 || n == 7 {
            Err(format!("attempt {n} failed"))
        } else {
            Ok(Action::AwaitChange)
        }
    });
    h.queue.add("K/a");
    h.sleep_until_secs(50.0).await;
    // Delays 1, 2, 4, 8, then capped at 8.
    assert_times(&h.runs("K/a"), &[0.0, 1.0, 3.0, 7.0, 15.0, 23.0]);
    assert_eq!(h.queue.failures("K/a"), 0);
    h.sleep_until_secs(100.0).await;
    h.queue.add("K/a");
    h.sleep_until_secs(150.0).await;
    // Reset: the first retry after a success waits the base delay again.
    assert_times(
        &h.runs("K/a"),
        &[0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 100.0, 101.0],
    );
    assert_eq!(h.queue.failures("K/a"), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_only_shortens_and_backoff_stays_monotonic() {
    let q = WorkQueue::new(Config {
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        jitter: 0.1,
        ..config()
    });
    let mut last = Duration::ZERO;
    for attempt in 1..=12 {
        let full = Duration::from_secs((1u64 << (attempt - 1)).min(60));
        let d = q.backoff_delay("K/a", attempt);
        assert!(
            d <= full && d >= full.mul_f64(0.9),
            "attempt {attempt}: {d:?}"
        );
        if full < Duration::from_secs(60) {
            assert!(d > last, "attempt {attempt}: {d:?} after {last:?}");
        }
        last = d;
    }
    // Keys that failed together spread out.
    let spread: HashSet<Duration> = (0..20)
        .map(|i| q.backoff_delay(&format!("K/{i}"), 3))
        .collect();
    assert!(spread.len() > 10, "{spread:?}");
}

#[tokio::test(start_paused = true)]
async fn resync_requeues_known_keys_but_not_failing_or_forgotten_ones() {
    let cfg = Config {
        resync: Some(Duration::from_secs(60)),
        backoff_base: Duration::from_secs(100),
        backoff_max: Duration::from_secs(100),
        ..config()
    };
    let h = Harness::spawn(cfg, |key, _| async move {
        if key == "K/bad" {
            Err("broken".to_string())
        } else {
            Ok(Action::AwaitChange)
        }
    });
    for key in ["K/a", "K/bad", "K/gone"] {
        h.queue.add(key);
    }
    h.sleep_until_secs(1.0).await;
    h.queue.forget("K/gone");
    h.sleep_until_secs(130.0).await;
    assert_times(&h.runs("K/a"), &[0.0, 60.0, 120.0]);
    assert_times(&h.runs("K/bad"), &[0.0, 100.0]);
    assert_times(&h.runs("K/gone"), &[0.0]);
    assert_eq!(h.queue.known_keys(), ["K/a", "K/bad"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn requeue_after_runs_again_on_time() {
    let h = Harness::spawn(config(), |_, _| async {
        Ok(Action::RequeueAfter(Duration::from_secs(30)))
    });
    h.queue.add("K/a");
    h.sleep_until_secs(70.0).await;
    assert_times(&h.runs("K/a"), &[0.0, 30.0, 60.0]);
    assert_eq!(
        h.queue.deadline("K/a"),
        Some(h.start + Duration::from_secs(90))
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reconcile_is_retried_with_backoff() {
    let h = Harness::spawn(config(), |_, n| async move {
        assert!(n > 1, "first run blows up");
        Ok(Action::AwaitChange)
    });
    h.queue.add("K/a");
    h.sleep_until_secs(10.0).await;
    assert_times(&h.runs("K/a"), &[0.0, 1.0]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_reconciles_in_flight() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let h = Harness::spawn(config(), move |_, _| {
        let d = d.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok(Action::RequeueAfter(Duration::from_secs(1)))
        }
    });
    h.queue.add("K/a");
    h.sleep_until_secs(1.0).await;
    let start = h.start;
    h.stop().await;
    assert_eq!(done.load(Ordering::SeqCst), 1);
    assert!(start.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn the_trigger_stream_ending_is_not_shutdown() {
    let h = Harness::spawn(config(), |_, n| async move {
        Ok(if n < 3 {
            Action::RequeueAfter(Duration::from_secs(1))
        } else {
            Action::AwaitChange
        })
    });
    h.triggers.unbounded_send("K/a".into()).unwrap();
    h.triggers.close_channel();
    h.sleep_until_secs(10.0).await;
    assert_times(&h.runs("K/a"), &[0.0, 1.0, 2.0]);
    h.stop().await;
}
