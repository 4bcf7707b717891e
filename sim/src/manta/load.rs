//! An mlive-like load generator: writers put new objects at a steady rate
//! through electric-moray, read each one back, and record every attempt.
//! The report turns failures into write-unavailability windows and can
//! verify that every acknowledged write survived.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::verify::{AckedWrite, Verification, verify_acked};
use super::{ElectricMoray, MantaError, MorayTier};

/// When a run ends. Both kinds end by themselves: attempts are counted
/// whether they succeed or not, and each is bounded by `op_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAfter {
    Elapsed(Duration),
    WritesPerWriter(u64),
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub writers: usize,
    /// Time between one writer's attempts.
    pub period: Duration,
    pub stop: StopAfter,
    pub bucket: String,
    /// Account uuid: keys are `/<account>/stor/mlive/w<writer>/d<n>/o<seq>`.
    pub account: String,
    /// Directories per writer; each directory is one vnode.
    pub dir_fanout: u32,
    pub read_back: bool,
    /// Deadline per request; a hung shard counts as a failed attempt.
    pub op_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> LoadConfig {
        LoadConfig {
            writers: 4,
            period: Duration::from_millis(10),
            stop: StopAfter::Elapsed(Duration::from_secs(1)),
            bucket: "manta".into(),
            account: "a3829ca2-0966-60ce-9dc3-e4e9060f0950".into(),
            dir_fanout: 16,
            read_back: true,
            op_timeout: Duration::from_secs(1),
        }
    }
}

/// Result of reading a just-acknowledged write back.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadBack {
    Ok,
    Mismatch(Value),
    Failed(MantaError),
}

/// One write attempt. Times are offsets from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAttempt {
    pub writer: usize,
    pub seq: u64,
    /// The electric-moray instance used.
    pub em: String,
    pub bucket: String,
    pub key: String,
    pub value: Value,
    pub start: Duration,
    pub end: Duration,
    /// Where the instance's ring routed the key, when it had one.
    pub pnode: Option<String>,
    pub vnode: Option<u32>,
    /// The etag on success.
    pub outcome: Result<String, MantaError>,
    pub read: Option<ReadBack>,
}

/// A stretch of time during which writes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
    pub failures: usize,
}

impl Window {
    pub fn len(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub elapsed: Duration,
    pub period: Duration,
    /// Every attempt, ordered by start time.
    pub attempts: Vec<WriteAttempt>,
    pub acked: u64,
    pub failed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub reads_mismatched: u64,
    /// Failed attempts by error name.
    pub errors: BTreeMap<String, u64>,
    pub windows: Vec<Window>,
    pub unavailable_total: Duration,
    pub longest_unavailable: Duration,
}

/// Merges failed attempts into windows. Two failures belong to one window
/// when they are at most `gap` apart (start to the window's end so far) or
/// when no write succeeded in between; the second rule keeps a scheduling
/// stall from splitting one outage. A steady-rate sampler cannot resolve
/// finer than its period, so the run uses the writer period as `gap`; a
/// window may be short of the real outage by up to a period at each end.
pub fn unavailable_windows(attempts: &[WriteAttempt], gap: Duration) -> Vec<Window> {
    let mut sorted: Vec<&WriteAttempt> = attempts.iter().collect();
    sorted.sort_by_key(|a| (a.start, a.end));
    let mut out: Vec<Window> = Vec::new();
    let mut success_since_last_window = false;
    for a in sorted {
        match (a.outcome.is_ok(), out.last_mut()) {
            (true, Some(w)) if a.start >= w.end => success_since_last_window = true,
            (true, _) => {}
            (false, Some(w)) if a.start <= w.end + gap || !success_since_last_window => {
                w.end = w.end.max(a.end);
                w.failures += 1;
            }
            (false, _) => {
                out.push(Window {
                    start: a.start,
                    end: a.end,
                    failures: 1,
                });
                success_since_last_window = false;
            }
        }
    }
    out
}

impl LoadReport {
    fn build(mut attempts: Vec<WriteAttempt>, elapsed: Duration, period: Duration) -> LoadReport {
        attempts.sort_by_key(|a| (a.start, a.writer));
        let mut r = LoadReport {
            elapsed,
            period,
            windows: unavailable_windows(&attempts, period),
            attempts: Vec::new(),
            acked: 0,
            failed: 0,
            reads_ok: 0,
            reads_failed: 0,
            reads_mismatched: 0,
            errors: BTreeMap::new(),
            unavailable_total: Duration::ZERO,
            longest_unavailable: Duration::ZERO,
        };
        for a in &attempts {
            match &a.outcome {
                Ok(_) => r.acked += 1,
                Err(e) => {
                    r.failed += 1;
                    *r.errors.entry(e.name().to_owned()).or_default() += 1;
                }
            }
            match &a.read {
                Some(ReadBack::Ok) => r.reads_ok += 1,
                Some(ReadBack::Mismatch(_)) => r.reads_mismatched += 1,
                Some(ReadBack::Failed(_)) => r.reads_failed += 1,
                None => {}
            }
        }
        r.unavailable_total = r.windows.iter().map(Window::len).sum();
        r.longest_unavailable = r.windows.iter().map(Window::len).max().unwrap_or_default();
        r.attempts = attempts;
        r
    }

    /// Acknowledged writes in acknowledgement order.
    pub fn acked_writes(&self) -> Vec<AckedWrite> {
        let mut ok: Vec<&WriteAttempt> =
            self.attempts.iter().filter(|a| a.outcome.is_ok()).collect();
        ok.sort_by_key(|a| a.end);
        ok.into_iter()
            .map(|a| AckedWrite {
                bucket: a.bucket.clone(),
                key: a.key.clone(),
                value: a.value.clone(),
            })
            .collect()
    }

    /// Every acknowledged write on exactly one shard with its value, and
    /// readable through each instance in `via`.
    pub async fn verify(&self, tier: &MorayTier, via: &[Arc<ElectricMoray>]) -> Verification {
        verify_acked(&self.acked_writes(), tier, via).await
    }

    pub fn summary(&self) -> String {
        format!(
            "{} attempts in {:?}: {} acked, {} failed {:?}; reads ok {} failed {} mismatched {}; \
             {} unavailability windows, total {:?}, longest {:?}",
            self.attempts.len(),
            self.elapsed,
            self.acked,
            self.failed,
            self.errors,
            self.reads_ok,
            self.reads_failed,
            self.reads_mismatched,
            self.windows.len(),
            self.unavailable_total,
            self.longest_unavailable
        )
    }
}

/// A run in progress.
pub struct LoadHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<LoadReport>,
}

impl LoadHandle {
    /// Ends the run early; attempts in flight finish first.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn wait(self) -> LoadReport {
        self.task.await.expect("load generator task panicked")
    }
}

/// Starts a run on the current tokio runtime. Instances are used round
/// robin, as muskie spreads requests over e-m.
pub fn spawn(ems: Vec<Arc<ElectricMoray>>, cfg: LoadConfig) -> LoadHandle {
    assert!(!ems.is_empty(), "load needs at least one electric-moray");
    assert!(cfg.writers > 0 && !cfg.period.is_zero() && cfg.dir_fanout > 0);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let origin = Instant::now();
        let ems = Arc::new(ems);
        let cfg = Arc::new(cfg);
        let nonce = uuid::Uuid::new_v4().to_string();
        let writers: Vec<_> = (0..cfg.writers)
            .map(|w| {
                let (ems, cfg, rx, nonce) =
                    (ems.clone(), cfg.clone(), stop_rx.clone(), nonce.clone());
                tokio::spawn(writer(w, origin, ems, cfg, rx, nonce))
            })
            .collect();
        let mut attempts = Vec::new();
        for h in writers {
            attempts.extend(h.await.expect("load writer panicked"));
        }
        LoadReport::build(attempts, origin.elapsed(), cfg.period)
    });
    LoadHandle { stop, task }
}

/// Runs to completion.
pub async fn run(ems: Vec<Arc<ElectricMoray>>, cfg: LoadConfig) -> LoadReport {
    spawn(ems, cfg).wait().await
}

async fn writer(
    w: usize,
    origin: Instant,
    ems: Arc<Vec<Arc<ElectricMoray>>>,
    cfg: Arc<LoadConfig>,
    mut stop: watch::Receiver<bool>,
    nonce: String,
) -> Vec<WriteAttempt> {
    // Stagger writers across the period for finer time resolution.
    let offset = cfg.period.mul_f64(w as f64 / cfg.writers as f64);
    let mut tick = tokio::time::interval_at(origin + offset, cfg.period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = match cfg.stop {
        StopAfter::Elapsed(d) => origin + d,
        // Far enough to never fire; the count ends the run.
        StopAfter::WritesPerWriter(_) => origin + Duration::from_secs(86_400 * 365),
    };
    let ms = |d: Duration| d.as_millis() as u64;
    let mut out = Vec::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(deadline) => break,
        }
        if *stop.borrow() || Instant::now() >= deadline {
            break;
        }
        if let StopAfter::WritesPerWriter(n) = cfg.stop
            && seq >= n
        {
            break;
        }
        let em = &ems[(w + seq as usize) % ems.len()];
        let key = format!(
            "/{}/stor/mlive/w{w}/d{}/o{seq}",
            cfg.account,
            seq % u64::from(cfg.dir_fanout)
        );
        let value = json!({"writer": w, "seq": seq, "run": nonce});
        let node = em.locate(&cfg.bucket, &key).ok();
        let start = origin.elapsed();
        let outcome = match tokio::time::timeout(
            cfg.op_timeout,
            em.put_object(&cfg.bucket, &key, value.clone()),
        )
        .await
        {
            Ok(r) => r.map(|p| p.etag),
            Err(_) => Err(MantaError::ClientTimeout {
                millis: ms(cfg.op_timeout),
            }),
        };
        let end = origin.elapsed();
        let read = if cfg.read_back && outcome.is_ok() {
            Some(
                match tokio::time::timeout(cfg.op_timeout, em.get_object(&cfg.bucket, &key)).await {
                    Ok(Ok(got)) if got.value == value => ReadBack::Ok,
                    Ok(Ok(got)) => ReadBack::Mismatch(got.value),
                    Ok(Err(e)) => ReadBack::Failed(e),
                    Err(_) => ReadBack::Failed(MantaError::ClientTimeout {
                        millis: ms(cfg.op_timeout),
                    }),
                },
            )
        } else {
            None
        };
        out.push(WriteAttempt {
            writer: w,
            seq,
            em: em.name().to_owned(),
            bucket: cfg.bucket.clone(),
            key,
            value,
            start,
            end,
            pnode: node.as_ref().map(|n| n.pnode.clone()),
            vnode: node.map(|n| n.vnode),
            outcome,
            read,
        });
        seq += 1;
    }
    out
}
