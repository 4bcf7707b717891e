//! The deleting itself: [`cleanup_for`].
//!
//! One call builds a queue of work (bucket × dropped vnode that still has
//! rows, `manta_directory_counts` first, then the NULL-`_vnode` scans of
//! ring-keyed buckets), and `connections` workers, each on its own direct
//! connection to the primary, take items off it and delete one batch at a
//! time (`DELETE ... WHERE ctid = ANY(ARRAY(SELECT ctid ... WHERE _vnode =
//! $1 LIMIT $2))`: every row goes, whatever its `_id`), pausing between
//! batches. Every round the settings are read again from the
//! [`TuningSource`] and passed through the latency [`Backoff`]: extra
//! workers start when connections grow, and a worker above the count stops
//! after its batch. After `budget` the workers stop after their batch and
//! the call returns what is left; the next call builds the queue again from
//! what the tables hold, so a call killed mid-batch loses nothing (a batch
//! is one statement: done or not).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use wire::fash::HashSpace;

use super::tables::{self, ring_keyed};
use super::throttle::{Backoff, Probe};
use super::tuning::{Tuning, TuningSource};
use super::verify::{self, counts_with_unsharded, key_vnode, space};
use super::{CleanupError, CleanupProgress, CleanupTarget, OwnerCheck, db_error};

/// How often the settings are read again and the back-off looks at the
/// probe.
const ROUND: Duration = Duration::from_millis(50);

/// One piece of work.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Rows of one dropped vnode in one bucket.
    Vnode { bucket: String, vnode: u32 },
    /// NULL-`_vnode` rows of a ring-keyed bucket, keys after `after`.
    Nulls { bucket: String, after: String },
}

/// The worker tasks, aborted when the call is dropped (a cleanup killed
/// mid-batch stops deleting at once: a batch is one statement, done or
/// not).
struct Workers(Vec<Option<tokio::task::JoinHandle<()>>>);

impl Drop for Workers {
    fn drop(&mut self) {
        for h in self.0.iter().flatten() {
            h.abort();
        }
    }
}

struct Shared {
    target: CleanupTarget,
    space: HashSpace,
    queue: Mutex<VecDeque<Item>>,
    effective: Mutex<Tuning>,
    deleted: AtomicU64,
    stop: AtomicBool,
    error: Mutex<Option<CleanupError>>,
}

impl Shared {
    fn effective(&self) -> Tuning {
        *self.effective.lock().expect("tuning lock")
    }

    fn fail(&self, e: CleanupError) {
        self.error.lock().expect("error lock").get_or_insert(e);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Deletes, for up to `budget`, the rows of `target.drop_vnodes` on the
/// target shard, after checking the owning side holds at least as many rows
/// of each such vnode as this side (`owner`, see [`OwnerCheck`]); a vnode
/// that fails the check makes the call refuse with
/// [`CleanupError::OwnerMissingRows`] before anything is deleted.
pub async fn cleanup_for(
    target: &CleanupTarget,
    owner: &OwnerCheck,
    tuning: &TuningSource,
    budget: Duration,
) -> Result<CleanupProgress, CleanupError> {
    let start = Instant::now();
    let deadline = start + budget;
    let space = space(target)?;
    let mut settings = tuning.current().await?;
    let main = super::connect(target).await?;
    let (ours, _) = counts_with_unsharded(target, &main, &target.drop_vnodes).await?;
    let short: Vec<(u32, u64, u64)> = match owner {
        OwnerCheck::Counts(owner) => ours
            .iter()
            .filter_map(|(v, n)| {
                let o = owner.get(v).copied().unwrap_or(0);
                (o < *n).then_some((*v, *n, o))
            })
            .collect(),
        OwnerCheck::CopyOfOwner => Vec::new(),
    };
    if !short.is_empty() {
        return Err(CleanupError::OwnerMissingRows {
            shard: target.shard.clone(),
            vnodes: short,
        });
    }
    let remaining_at_start: u64 = ours.values().sum();
    let queue = work(target, &main).await?;
    // The probe reads `manta` by key (any bucket when there is none).
    let buckets = tables::buckets(&target.shard, &main).await?;
    let probe_bucket = buckets
        .iter()
        .find(|b| *b == "manta")
        .or(buckets.first())
        .cloned();
    let probe = match probe_bucket {
        Some(b) => Some(Probe::start(super::connect(target).await?, b)),
        None => None,
    };
    drop(main);

    let shared = Arc::new(Shared {
        target: target.clone(),
        space,
        queue: Mutex::new(queue),
        effective: Mutex::new(settings),
        deleted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
    });
    let mut backoff = Backoff::default();
    let mut workers = Workers(Vec::new());
    loop {
        if let Ok(t) = tuning.current().await {
            // A failed read keeps the last settings.
            settings = t;
        }
        let p99 = probe.as_ref().and_then(Probe::p99_ms);
        backoff.observe(p99, settings.max_read_p99_ms);
        let eff = backoff.apply(&settings);
        *shared.effective.lock().expect("tuning lock") = eff;
        if Instant::now() >= deadline {
            shared.stop.store(true, Ordering::SeqCst);
        }
        let stopping = shared.stop.load(Ordering::SeqCst);
        let queued = !shared.queue.lock().expect("queue lock").is_empty();
        if !stopping && queued {
            let want = eff.connections as usize;
            if workers.0.len() < want {
                workers.0.resize_with(want, || None);
            }
            for (i, w) in workers.0.iter_mut().enumerate().take(want) {
                if w.as_ref().is_none_or(|h| h.is_finished()) {
                    let s = shared.clone();
                    *w = Some(tokio::spawn(async move { worker(i, s).await }));
                }
            }
        }
        let running = workers.0.iter().flatten().any(|h| !h.is_finished());
        if !running && (stopping || !queued) {
            break;
        }
        tokio::time::sleep(ROUND).await;
    }
    for h in workers.0.iter_mut().filter_map(Option::take) {
        let _ = h.await;
    }
    if let Some(e) = shared.error.lock().expect("error lock").take() {
        return Err(e);
    }
    let deleted = shared.deleted.load(Ordering::SeqCst);
    let done = shared.queue.lock().expect("queue lock").is_empty();
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    let rows_per_s = deleted as f64 / secs;
    let remaining = if done {
        0
    } else {
        remaining_at_start.saturating_sub(deleted)
    };
    Ok(CleanupProgress {
        shard: target.shard.clone(),
        deleted,
        remaining_estimate: remaining,
        rows_per_s,
        eta: (rows_per_s > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / rows_per_s)),
        done,
        read_p99_ms: probe.as_ref().and_then(Probe::p99_ms),
        throttled: backoff.engaged,
        effective: shared.effective(),
    })
}

/// The queue: bucket × vnode with rows (buckets in cleanup order), then
/// the NULL-`_vnode` scans of ring-keyed buckets that have such rows.
async fn work(target: &CleanupTarget, c: &Client) -> Result<VecDeque<Item>, CleanupError> {
    let mut q = VecDeque::new();
    let buckets = tables::buckets(&target.shard, c).await?;
    for b in &buckets {
        let counts = verify::vnode_counts(&target.shard, c, b, &target.drop_vnodes).await?;
        q.extend(counts.keys().map(|v| Item::Vnode {
            bucket: b.clone(),
            vnode: *v,
        }));
    }
    for b in buckets.iter().filter(|b| ring_keyed(b)) {
        let any = c
            .query_opt(
                format!("SELECT 1 FROM {b} WHERE _vnode IS NULL LIMIT 1").as_str(),
                &[],
            )
            .await
            .map_err(|e| db_error(&target.shard, &format!("looking at {b}"), e))?;
        if any.is_some() {
            q.push_back(Item::Nulls {
                bucket: b.clone(),
                after: String::new(),
            });
        }
    }
    Ok(q)
}

async fn worker(index: usize, s: Arc<Shared>) {
    let client = match super::connect(&s.target).await {
        Ok(c) => c,
        Err(e) => return s.fail(e),
    };
    let mut current: Option<Item> = None;
    loop {
        let eff = s.effective();
        if s.stop.load(Ordering::SeqCst) || index >= eff.connections as usize {
            break;
        }
        let item = match current.take() {
            Some(i) => i,
            None => match s.queue.lock().expect("queue lock").pop_front() {
                Some(i) => i,
                None => break,
            },
        };
        match step(&s, &client, &item, eff.batch_size).await {
            Ok((n, next)) => {
                s.deleted.fetch_add(n, Ordering::SeqCst);
                current = next;
            }
            Err(e) => {
                s.queue.lock().expect("queue lock").push_front(item);
                return s.fail(e);
            }
        }
        if current.is_some() {
            pause(&s).await;
        }
    }
    if let Some(i) = current {
        s.queue.lock().expect("queue lock").push_front(i);
    }
}

/// The pause between batches, in slices, so a new setting (or the stop)
/// is obeyed at once rather than after a long pause.
async fn pause(s: &Shared) {
    let began = Instant::now();
    loop {
        let want = Duration::from_millis(s.effective().pause_ms);
        let slept = began.elapsed();
        if slept >= want || s.stop.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep((want - slept).min(ROUND)).await;
    }
}

/// One batch of an item: rows deleted and the item again if it is not
/// finished.
async fn step(
    s: &Shared,
    c: &Client,
    item: &Item,
    batch: u32,
) -> Result<(u64, Option<Item>), CleanupError> {
    let shard = &s.target.shard;
    let limit = i64::from(batch.max(1));
    match item {
        Item::Vnode { bucket, vnode } => {
            let v = i64::from(*vnode);
            let n = c
                .execute(
                    format!(
                        "DELETE FROM {bucket} WHERE ctid = ANY(ARRAY(\
                         SELECT ctid FROM {bucket} WHERE _vnode = $1 LIMIT $2))"
                    )
                    .as_str(),
                    &[&v, &limit],
                )
                .await
                .map_err(|e| db_error(shard, &format!("deleting vnode {vnode} of {bucket}"), e))?;
            if n > 0 {
                return Ok((n, Some(item.clone())));
            }
            // Nothing deleted: finished, unless rows moved under us (an
            // update between the select and the delete).
            let left = c
                .query_opt(
                    format!("SELECT 1 FROM {bucket} WHERE _vnode = $1 LIMIT 1").as_str(),
                    &[&v],
                )
                .await
                .map_err(|e| {
                    db_error(shard, &format!("looking at vnode {vnode} of {bucket}"), e)
                })?;
            Ok((0, left.map(|_| item.clone())))
        }
        Item::Nulls { bucket, after } => {
            let rows = c
                .query(
                    format!(
                        "SELECT _key FROM {bucket} WHERE _vnode IS NULL AND _key > $1 \
                         ORDER BY _key LIMIT $2"
                    )
                    .as_str(),
                    &[after, &limit],
                )
                .await
                .map_err(|e| {
                    db_error(shard, &format!("scanning NULL _vnode rows of {bucket}"), e)
                })?;
            let Some(last) = rows.last().map(|r| r.get::<_, String>(0)) else {
                return Ok((0, None));
            };
            let drop: Vec<String> = rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .filter(|k| {
                    key_vnode(&s.space, bucket, k)
                        .is_some_and(|v| s.target.drop_vnodes.contains(&v))
                })
                .collect();
            let n = if drop.is_empty() {
                0
            } else {
                c.execute(
                    format!("DELETE FROM {bucket} WHERE _key = ANY($1) AND _vnode IS NULL")
                        .as_str(),
                    &[&drop],
                )
                .await
                .map_err(|e| {
                    db_error(shard, &format!("deleting NULL _vnode rows of {bucket}"), e)
                })?
            };
            let more = (rows.len() as i64 == limit).then(|| Item::Nulls {
                bucket: bucket.clone(),
                after: last,
            });
            Ok((n, more))
        }
    }
}
