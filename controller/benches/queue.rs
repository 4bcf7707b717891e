//! Runner overhead: reconciles per second of a no-op reconciler over 10,000
//! keys driven by `Controller::run`, against calling the same no-op
//! function directly in a loop, measured in the same run.
//!
//! `cargo bench -p tritonctl --bench queue`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tritonctl::runtime::queue::{Action, Config, Controller};

const KEYS: usize = 10_000;
const ROUNDS: usize = 7;

async fn noop(key: String) -> Result<Action, Infallible> {
    black_box(&key);
    Ok(Action::AwaitChange)
}

fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("ManateeVersion/shard-{i}"))
        .collect()
}

/// The floor: the no-op awaited in a plain loop (same key clones).
async fn direct(keys: &[String]) -> Duration {
    let start = Instant::now();
    for key in keys {
        black_box(noop(key.clone()).await.unwrap());
    }
    start.elapsed()
}

/// Every key queued, then the runner drains them; timed until the last
/// reconcile has finished.
async fn runner(keys: &[String], concurrency: usize) -> Duration {
    let controller = Controller::new(Config {
        concurrency,
        resync: None,
        ..Config::default()
    });
    let queue = controller.queue();
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let (d, n) = (done.clone(), all_done.clone());
    let stop = all_done.clone();
    let start = Instant::now();
    for key in keys {
        queue.add(key);
    }
    controller
        .run(
            move |key| {
                let (d, n) = (d.clone(), n.clone());
                async move {
                    let r = noop(key).await;
                    if d.fetch_add(1, Ordering::Relaxed) + 1 == KEYS {
                        n.notify_one();
                    }
                    r
                }
            },
            futures::stream::pending::<String>(),
            async move { stop.notified().await },
        )
        .await;
    let elapsed = start.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), KEYS);
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rate(d: Duration) -> f64 {
    KEYS as f64 / d.as_secs_f64()
}

/// Measures the direct loop and the runner at a few concurrency caps on
/// one runtime.
fn measure(rt: &tokio::runtime::Runtime, name: &str, keys: &[String]) {
    rt.block_on(async {
        // Warm up allocator and caches.
        direct(keys).await;
        runner(keys, 4).await;

        let mut base = Vec::new();
        for _ in 0..ROUNDS {
            base.push(direct(keys).await);
        }
        let base = median(base);
        println!("[{name}]");
        println!(
            "  direct loop:            {:>10.0} calls/s      ({base:?} for {KEYS})",
            rate(base)
        );
        for concurrency in [1, 4, 64] {
            let mut runs = Vec::new();
            for _ in 0..ROUNDS {
                runs.push(runner(keys, concurrency).await);
            }
            let t = median(runs);
            println!(
                "  runner, concurrency {concurrency:>2}: {:>10.0} reconciles/s ({t:?} for {KEYS}); {:.0}x the direct loop's time",
                rate(t),
                t.as_secs_f64() / base.as_secs_f64()
            );
        }
    });
}

fn main() {
    let keys = keys();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    measure(
        &multi,
        "multi-thread runtime (as the controller runs)",
        &keys,
    );
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    measure(
        &single,
        "current-thread runtime (no cross-thread wake-ups)",
        &keys,
    );
}
