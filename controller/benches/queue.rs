//! Runner overhead: reconciles per second of a no-op reconciler over 10,000
//! keys driven by `Controller::run`, against two baselines measured in the
//! same run: the same no-op called directly in a loop, and a bare tokio task
//! spawned per key. Then the whole trigger path: 10,000 stored documents,
//! each with its own watch, feeding the runner.
//!
//! Memory: the resident set (RSS) the controller adds at 10,000 keys, each
//! stage measured in a fresh child process (this binary re-run with
//! `QUEUE_BENCH_STAGE`), so memory freed by one stage cannot hide the next:
//! the runner's queue after reconciling every key once; the runner plus one
//! document watch per key (in-process coordination store; the nodes
//! themselves are created before the baseline RSS is read); against 10,000
//! parked tokio tasks (a task per key, the floor of any design that keeps
//! something per key).
//!
//! `cargo bench -p tritonctl --bench queue`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coord::{Coordination, CreateMode, Op};
use futures::StreamExt;
use tokio::sync::Notify;
use tritonctl::runtime::queue::{Action, Config, Controller};
use tritonctl::runtime::triggers::Triggers;

const STAGE_ENV: &str = "QUEUE_BENCH_STAGE";

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

/// A bare tokio task per key: spawn them all, wait for all.
async fn task_per_key(keys: &[String]) -> Duration {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for key in keys {
        set.spawn(noop(key.clone()));
    }
    while let Some(r) = set.join_next().await {
        black_box(r.unwrap().unwrap());
    }
    start.elapsed()
}

/// 10,000 documents of one kind in an in-process store.
async fn documents(session: &Arc<dyn Coordination>) -> String {
    let dir = tritonctl::store::kind_dir(crds::Kind::ManateeVersion);
    session.mkdirp(&dir).await.unwrap();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let ops = chunk
            .iter()
            .map(|i| {
                Op::create(
                    format!("{dir}/shard-{i}"),
                    b"{}".to_vec(),
                    CreateMode::Persistent,
                )
            })
            .collect();
        session.multi(ops).await.unwrap();
    }
    dir
}

/// Triggers watching 10,000 stored documents feed the runner; timed from
/// the start of the watches until every document has been reconciled once.
/// Returns the time and what must stay alive for a memory reading.
async fn watched(session: Arc<dyn Coordination>, concurrency: usize) -> (Duration, impl Sized) {
    let controller = Controller::new(Config {
        concurrency,
        resync: None,
        ..Config::default()
    });
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let all_done = Arc::new(Notify::new());
    let (s, n) = (seen.clone(), all_done.clone());
    let start = Instant::now();
    let (triggers, stream) = Triggers::new(session);
    triggers.watch_documents(crds::Kind::ManateeVersion);
    let stop = CancellationToken::new();
    let runner = tokio::spawn(controller.run(
        move |key: String| {
            let (s, n) = (s.clone(), n.clone());
            async move {
                let last = {
                    let mut seen = s.lock().unwrap();
                    seen.insert(key.clone()) && seen.len() == KEYS
                };
                if last {
                    n.notify_one();
                }
                noop(key).await
            }
        },
        stream.boxed(),
        stop.clone().cancelled_owned(),
    ));
    all_done.notified().await;
    let elapsed = start.elapsed();
    (elapsed, (triggers, runner, stop.drop_guard()))
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

use tokio_util::sync::CancellationToken;

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
        let mut spawned = Vec::new();
        for _ in 0..ROUNDS {
            spawned.push(task_per_key(keys).await);
        }
        let spawned = median(spawned);
        println!("[{name}]");
        println!(
            "  direct loop:            {:>10.0} calls/s      ({base:?} for {KEYS})",
            rate(base)
        );
        println!(
            "  tokio task per key:     {:>10.0} tasks/s      ({spawned:?} for {KEYS}); baseline B",
            rate(spawned)
        );
        for concurrency in [1, 4, 64] {
            let mut runs = Vec::new();
            for _ in 0..ROUNDS {
                runs.push(runner(keys, concurrency).await);
            }
            let t = median(runs);
            println!(
                "  runner, concurrency {concurrency:>2}: {:>10.0} reconciles/s ({t:?} for {KEYS}); {:.0}x the direct loop's time, {:.2}x B's",
                rate(t),
                t.as_secs_f64() / base.as_secs_f64(),
                t.as_secs_f64() / spawned.as_secs_f64()
            );
        }
        let mut runs = Vec::new();
        for _ in 0..3 {
            let ens = coord::mem::MemEnsemble::new();
            let session: Arc<dyn Coordination> = ens.connect();
            documents(&session).await;
            runs.push(watched(session, 4).await.0);
        }
        let t = median(runs);
        println!(
            "  10k watched documents -> runner (concurrency 4): {:>8.0} reconciles/s ({t:?} from the first watch to the last reconcile); {:.2}x B's time",
            rate(t),
            t.as_secs_f64() / spawned.as_secs_f64()
        );
    });
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// One memory stage in this (fresh) process: prints the RSS it added.
fn stage(name: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = keys();
    let added = rt.block_on(async {
        match name {
            "tasks" => {
                let gate = Arc::new(Notify::new());
                let before = rss();
                let mut set = tokio::task::JoinSet::new();
                for key in &keys {
                    let (gate, key) = (gate.clone(), key.clone());
                    set.spawn(async move {
                        gate.notified().await;
                        noop(key).await
                    });
                }
                tokio::task::yield_now().await;
                let added = rss() - before;
                gate.notify_waiters();
                set.abort_all();
                added
            }
            "queue" => {
                let before = rss();
                let controller = Controller::new(Config {
                    concurrency: 4,
                    ..Config::default()
                });
                let queue = controller.queue();
                for key in &keys {
                    queue.add(key);
                }
                let done = Arc::new(AtomicUsize::new(0));
                let d = done.clone();
                let stop = CancellationToken::new();
                let runner = tokio::spawn(controller.run(
                    move |key| {
                        let d = d.clone();
                        async move {
                            d.fetch_add(1, Ordering::Relaxed);
                            noop(key).await
                        }
                    },
                    futures::stream::pending::<String>(),
                    stop.clone().cancelled_owned(),
                ));
                while done.load(Ordering::Relaxed) < KEYS {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                assert_eq!(queue.known_keys().len(), KEYS);
                let added = rss() - before;
                stop.cancel();
                runner.await.unwrap();
                added
            }
            "watched" => {
                let ens = coord::mem::MemEnsemble::new();
                let session: Arc<dyn Coordination> = ens.connect();
                documents(&session).await;
                let before = rss();
                let (_, keep) = watched(session, 4).await;
                let added = rss() - before;
                drop(keep);
                added
            }
            other => panic!("unknown stage {other}"),
        }
    });
    println!("{added}");
}

fn stage_in_child(name: &str) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(STAGE_ENV, name)
        .output()
        .unwrap();
    assert!(out.status.success(), "stage {name}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn memory() {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per = |b: u64| b as f64 / KEYS as f64;
    let tasks = stage_in_child("tasks");
    let queue = stage_in_child("queue");
    let watched = stage_in_child("watched");
    println!("[memory at {KEYS} keys: RSS added, each stage in a fresh process]");
    println!(
        "  10k parked tokio tasks (baseline T):     {:>7.2} MiB ({:>5.0} B/key)",
        mib(tasks),
        per(tasks)
    );
    println!(
        "  runner, every key reconciled once:       {:>7.2} MiB ({:>5.0} B/key); {:.2}x T",
        mib(queue),
        per(queue),
        queue as f64 / tasks as f64
    );
    println!(
        "  runner + one document watch per key:     {:>7.2} MiB ({:>5.0} B/key); {:.2}x T",
        mib(watched),
        per(watched),
        watched as f64 / tasks as f64
    );
}

fn main() {
    if let Ok(name) = std::env::var(STAGE_ENV) {
        stage(&name);
        return;
    }
    memory();
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
