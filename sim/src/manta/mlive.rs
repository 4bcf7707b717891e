//! A ring-wide load generator, like Manta's mlive: workers write, read and
//! delete objects in directories spread over every vnode of the ring,
//! through the electric-moray instances in turn, and record every attempt.
//!
//! A write that fails is retried (same key, same value) on the worker's
//! next turn until it is acknowledged, as a client that must store its
//! object would; the time from a key's first refused write to its
//! acknowledgement (or the end of the run) is its blocked time, summed as
//! "blocked key-seconds". The report splits refusals into moved and
//! unmoved vnodes (given the moved set), gives read latency percentiles,
//! and [`MliveReport::verify`] checks every acknowledged write survived
//! (none lost, none on two shards) and every acknowledged delete stayed
//! deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use wire::fash::{KeyEncoding, Ring};

use super::em_client::EmClient;
use super::em_http::WireError;
use super::load::StopAfter;
use super::verify::{AckedWrite, Verification, verify_acked};
use super::{ElectricMoray, MorayTier};

/// Relative weights of the three operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpMix {
    pub write: u32,
    pub read: u32,
    pub delete: u32,
}

#[derive(Debug, Clone)]
pub struct MliveConfig {
    pub workers: usize,
    /// Time between one worker's operations.
    pub period: Duration,
    pub stop: StopAfter,
    pub bucket: String,
    pub account: String,
    pub mix: OpMix,
    /// Deadline per request.
    pub op_timeout: Duration,
    /// At most this many directories (one per vnode while the ring has
    /// that few vnodes: every vnode gets one).
    pub max_directories: usize,
}

impl Default for MliveConfig {
    fn default() -> MliveConfig {
        MliveConfig {
            workers: 4,
            period: Duration::from_millis(5),
            stop: StopAfter::Elapsed(Duration::from_secs(1)),
            bucket: "manta".into(),
            account: "a3829ca2-0966-60ce-9dc3-e4e9060f0950".into(),
            mix: OpMix {
                write: 6,
                read: 3,
                delete: 1,
            },
            op_timeout: Duration::from_secs(2),
            max_directories: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Write,
    Read,
    Delete,
}

/// One attempt. Times are offsets from the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpRecord {
    pub worker: usize,
    pub kind: OpKind,
    /// The electric-moray used.
    pub em: String,
    pub key: String,
    pub vnode: u32,
    pub start: Duration,
    pub end: Duration,
    pub error: Option<WireError>,
    /// A read that returned another value than the last acknowledged.
    pub mismatch: bool,
}

/// Directories, one per vnode as far as `max` allows: `dirs[i]` hashes to
/// vnode `vnodes[i]`. Found by trying names in order, so the same ring
/// always gives the same directories.
pub fn ring_directories(ring: &Ring, account: &str, max: usize) -> Vec<(String, u32)> {
    let want = (ring.vnode_count() as usize).min(max.max(1));
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    let budget = want.saturating_mul(40).max(1000);
    for i in 0..budget {
        let dir = format!("/{account}/stor/mlive/d{i}");
        if let Ok(v) = ring.vnode_of(&dir, KeyEncoding::Utf8) {
            seen.entry(v).or_insert(dir);
        }
        if seen.len() >= want {
            break;
        }
    }
    seen.into_iter().map(|(v, d)| (d, v)).collect()
}

struct Worker {
    id: usize,
    origin: Instant,
    targets: Arc<Vec<EmClient>>,
    dirs: Arc<Vec<(String, u32)>>,
    cfg: Arc<MliveConfig>,
    nonce: String,
}

/// What a worker ends with.
#[derive(Default)]
struct WorkerLog {
    ops: Vec<OpRecord>,
    /// Acknowledged writes in order.
    acked: Vec<AckedWrite>,
    /// Keys whose delete was acknowledged (and not written again since).
    deleted: BTreeSet<String>,
}

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) -> WorkerLog {
        let cfg = &self.cfg;
        let offset = cfg.period.mul_f64(self.id as f64 / cfg.workers as f64);
        let mut tick = tokio::time::interval_at(self.origin + offset, cfg.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = match cfg.stop {
            StopAfter::Elapsed(d) => self.origin + d,
            StopAfter::WritesPerWriter(_) => self.origin + Duration::from_secs(86_400 * 365),
        };
        let total = cfg.mix.write + cfg.mix.read + cfg.mix.delete;
        let mut log = WorkerLog::default();
        // Live objects: key -> (value, vnode).
        let mut live: Vec<(String, Value, u32)> = Vec::new();
        let mut pending: Option<(String, Value, u32)> = None;
        let mut n: u64 = 0;
        let mut writes: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
                _ = tokio::time::sleep_until(deadline) => break,
            }
            if *stop.borrow() || Instant::now() >= deadline {
                break;
            }
            if let StopAfter::WritesPerWriter(max) = cfg.stop
                && writes >= max
                && pending.is_none()
            {
                break;
            }
            let target = &self.targets[(self.id + n as usize) % self.targets.len()];
            let slot = (n % u64::from(total.max(1))) as u32;
            n += 1;
            let kind = if pending.is_some() || slot < cfg.mix.write || live.is_empty() {
                OpKind::Write
            } else if slot < cfg.mix.write + cfg.mix.read {
                OpKind::Read
            } else {
                OpKind::Delete
            };
            match kind {
                OpKind::Write => {
                    let (key, value, vnode) = pending.take().unwrap_or_else(|| {
                        let (dir, vnode) =
                            &self.dirs[(self.id + writes as usize * 7919) % self.dirs.len()];
                        let name = format!("w{}-o{writes}", self.id);
                        let key = format!("{dir}/{name}");
                        let value = json!({
                            "dirname": dir, "key": key, "name": name, "owner": cfg.account,
                            "objectId": format!("{}-{}-{writes}", self.nonce, self.id),
                            "type": "object", "run": self.nonce,
                        });
                        (key, value, *vnode)
                    });
                    let (start, r) = self
                        .timed(cfg.op_timeout, target.put(&cfg.bucket, &key, &value))
                        .await;
                    let end = self.origin.elapsed();
                    log.ops.push(self.record(
                        kind,
                        target,
                        &key,
                        vnode,
                        start,
                        end,
                        r.as_ref().err(),
                    ));
                    if r.is_ok() {
                        writes += 1;
                        log.deleted.remove(&key);
                        log.acked.push(AckedWrite {
                            bucket: cfg.bucket.clone(),
                            key: key.clone(),
                            value: value.clone(),
                        });
                        live.push((key, value, vnode));
                    } else {
                        pending = Some((key, value, vnode));
                    }
                }
                OpKind::Read => {
                    let i = (n as usize * 31) % live.len();
                    let (key, value, vnode) = live[i].clone();
                    let (start, r) = self
                        .timed(cfg.op_timeout, target.get(&cfg.bucket, &key))
                        .await;
                    let end = self.origin.elapsed();
                    let mut rec =
                        self.record(kind, target, &key, vnode, start, end, r.as_ref().err());
                    rec.mismatch = r.as_ref().is_ok_and(|got| *got != value);
                    log.ops.push(rec);
                }
                OpKind::Delete => {
                    let i = (n as usize * 17) % live.len();
                    let (key, _, vnode) = live[i].clone();
                    let (start, r) = self
                        .timed(cfg.op_timeout, target.del(&cfg.bucket, &key))
                        .await;
                    let end = self.origin.elapsed();
                    log.ops.push(self.record(
                        kind,
                        target,
                        &key,
                        vnode,
                        start,
                        end,
                        r.as_ref().err(),
                    ));
                    if r.is_ok() {
                        live.swap_remove(i);
                        log.deleted.insert(key);
                    }
                }
            }
        }
        log
    }

    async fn timed<T>(
        &self,
        limit: Duration,
        f: impl std::future::Future<Output = Result<T, WireError>>,
    ) -> (Duration, Result<T, WireError>) {
        let start = self.origin.elapsed();
        let r = match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(WireError::timeout(limit)),
        };
        (start, r)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        kind: OpKind,
        target: &EmClient,
        key: &str,
        vnode: u32,
        start: Duration,
        end: Duration,
        error: Option<&WireError>,
    ) -> OpRecord {
        OpRecord {
            worker: self.id,
            kind,
            em: target.name().to_owned(),
            key: key.to_owned(),
            vnode,
            start,
            end,
            error: error.cloned(),
            mismatch: false,
        }
    }
}

/// Refused or failed writes of one vnode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VnodeBlock {
    pub refused: u64,
    pub failed: u64,
    pub first: Duration,
    pub last: Duration,
    /// Sum over this vnode's keys of first failed write -> acknowledged
    /// (or the end of the run).
    pub blocked_key_seconds: f64,
}

/// Totals over a set of vnodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockTotals {
    pub vnodes: usize,
    pub refused_writes: u64,
    pub failed_writes: u64,
    pub blocked_key_seconds: f64,
}

#[derive(Debug, Clone)]
pub struct MliveReport {
    pub elapsed: Duration,
    pub ops: Vec<OpRecord>,
    pub writes_acked: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub reads_mismatched: u64,
    pub deletes_acked: u64,
    /// Failed operations by error name and kind.
    pub errors: BTreeMap<(OpKind, String), u64>,
    /// Successful reads' latency.
    pub read_p50: Option<Duration>,
    pub read_p99: Option<Duration>,
    /// Vnodes whose writes were refused or failed.
    pub blocked: BTreeMap<u32, VnodeBlock>,
    /// Distinct vnodes written to (acknowledged).
    pub vnodes_written: usize,
    acked: Vec<AckedWrite>,
    deleted: BTreeSet<String>,
    bucket: String,
}

/// The `p`-th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl MliveReport {
    fn build(logs: Vec<WorkerLog>, elapsed: Duration, bucket: String) -> MliveReport {
        let mut ops = Vec::new();
        let mut acked = Vec::new();
        let mut deleted = BTreeSet::new();
        for l in logs {
            ops.extend(l.ops);
            acked.extend(l.acked);
            deleted.extend(l.deleted);
        }
        ops.sort_by_key(|o| (o.start, o.worker));
        let mut r = MliveReport {
            elapsed,
            ops: Vec::new(),
            writes_acked: 0,
            reads_ok: 0,
            reads_failed: 0,
            reads_mismatched: 0,
            deletes_acked: 0,
            errors: BTreeMap::new(),
            read_p50: None,
            read_p99: None,
            blocked: BTreeMap::new(),
            vnodes_written: 0,
            acked,
            deleted,
            bucket,
        };
        let mut latencies = Vec::new();
        let mut written = BTreeSet::new();
        // key -> first failed write start, while not yet acknowledged.
        let mut blocked_since: BTreeMap<&str, (u32, Duration)> = BTreeMap::new();
        for o in &ops {
            if let Some(e) = &o.error {
                *r.errors.entry((o.kind, e.name.clone())).or_default() += 1;
            }
            match (o.kind, &o.error) {
                (OpKind::Write, None) => {
                    r.writes_acked += 1;
                    written.insert(o.vnode);
                    if let Some((v, since)) = blocked_since.remove(o.key.as_str()) {
                        r.blocked.entry(v).or_default().blocked_key_seconds +=
                            o.end.saturating_sub(since).as_secs_f64();
                    }
                }
                (OpKind::Write, Some(e)) => {
                    let b = r.blocked.entry(o.vnode).or_default();
                    if b.refused + b.failed == 0 {
                        b.first = o.start;
                    }
                    b.last = b.last.max(o.end);
                    if e.is_read_only() {
                        b.refused += 1;
                    } else {
                        b.failed += 1;
                    }
                    blocked_since.entry(&o.key).or_insert((o.vnode, o.start));
                }
                (OpKind::Read, None) if o.mismatch => r.reads_mismatched += 1,
                (OpKind::Read, None) => {
                    r.reads_ok += 1;
                    latencies.push(o.end.saturating_sub(o.start));
                }
                (OpKind::Read, Some(_)) => r.reads_failed += 1,
                (OpKind::Delete, None) => r.deletes_acked += 1,
                (OpKind::Delete, Some(_)) => {}
            }
        }
        for (v, since) in blocked_since.values() {
            r.blocked.entry(*v).or_default().blocked_key_seconds +=
                elapsed.saturating_sub(*since).as_secs_f64();
        }
        latencies.sort();
        r.read_p50 = percentile(&latencies, 50.0);
        r.read_p99 = percentile(&latencies, 99.0);
        r.vnodes_written = written.len();
        r.ops = ops;
        r
    }

    /// Refusals and blocked time split into the `moved` vnodes and the
    /// rest: (moved, unmoved).
    pub fn blocked_split(&self, moved: &BTreeSet<u32>) -> (BlockTotals, BlockTotals) {
        let mut m = BlockTotals::default();
        let mut u = BlockTotals::default();
        for (v, b) in &self.blocked {
            let t = if moved.contains(v) { &mut m } else { &mut u };
            t.vnodes += 1;
            t.refused_writes += b.refused;
            t.failed_writes += b.failed;
            t.blocked_key_seconds += b.blocked_key_seconds;
        }
        (m, u)
    }

    /// Every failed or refused operation, in time order.
    pub fn failures(&self) -> impl Iterator<Item = &OpRecord> {
        self.ops.iter().filter(|o| o.error.is_some())
    }

    /// Acknowledged writes in acknowledgement order.
    pub fn acked_writes(&self) -> &[AckedWrite] {
        &self.acked
    }

    /// Acknowledged writes lost or on two shards, wrong or unreadable
    /// through `via`; plus deleted objects found again.
    pub async fn verify(&self, tier: &MorayTier, via: &[Arc<ElectricMoray>]) -> MliveCheck {
        let live: Vec<AckedWrite> = self
            .acked
            .iter()
            .filter(|w| !self.deleted.contains(&w.key))
            .cloned()
            .collect();
        let verification = verify_acked(&live, tier, via).await;
        let mut resurrected = Vec::new();
        for key in &self.deleted {
            let mut found = Vec::new();
            for s in tier.stores() {
                if s.get(&self.bucket, key).await.is_ok() {
                    found.push(s.pnode().to_owned());
                }
            }
            if !found.is_empty() {
                resurrected.push((key.clone(), found));
            }
        }
        MliveCheck {
            verification,
            resurrected,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ops in {:?}: writes acked {}, reads ok {} failed {} mismatched {}, deletes {}; \
             read p50 {:?} p99 {:?}; {} vnodes written; {} vnodes blocked; errors {:?}",
            self.ops.len(),
            self.elapsed,
            self.writes_acked,
            self.reads_ok,
            self.reads_failed,
            self.reads_mismatched,
            self.deletes_acked,
            self.read_p50,
            self.read_p99,
            self.vnodes_written,
            self.blocked.len(),
            self.errors
        )
    }
}

/// [`MliveReport::verify`]'s findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MliveCheck {
    pub verification: Verification,
    /// Deleted objects still on a shard (key, shards).
    pub resurrected: Vec<(String, Vec<String>)>,
}

impl MliveCheck {
    /// Acknowledged writes lost (must be 0).
    pub fn lost(&self) -> usize {
        self.verification.lost.len()
    }

    /// Acknowledged rows found on two shards.
    pub fn on_two_shards(&self) -> usize {
        self.verification.duplicated.len()
    }

    pub fn is_clean(&self) -> bool {
        self.verification.is_clean() && self.resurrected.is_empty()
    }
}

/// A run in progress.
pub struct MliveHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<MliveReport>,
}

impl MliveHandle {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn wait(self) -> MliveReport {
        self.task.await.expect("mlive task panicked")
    }
}

/// Starts a run over `targets` (used in turn). `ring` places keys on
/// vnodes for the report (vnodes do not change when a ring is remapped).
pub fn spawn(targets: Vec<EmClient>, ring: &Ring, cfg: MliveConfig) -> MliveHandle {
    assert!(
        !targets.is_empty(),
        "mlive needs at least one electric-moray"
    );
    assert!(cfg.workers > 0 && !cfg.period.is_zero());
    let dirs = Arc::new(ring_directories(ring, &cfg.account, cfg.max_directories));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let origin = Instant::now();
        let targets = Arc::new(targets);
        let bucket = cfg.bucket.clone();
        let cfg = Arc::new(cfg);
        let nonce = uuid::Uuid::new_v4().to_string();
        let handles: Vec<_> = (0..cfg.workers)
            .map(|id| {
                let w = Worker {
                    id,
                    origin,
                    targets: targets.clone(),
                    dirs: dirs.clone(),
                    cfg: cfg.clone(),
                    nonce: nonce.clone(),
                };
                tokio::spawn(w.run(stop_rx.clone()))
            })
            .collect();
        let mut logs = Vec::new();
        for h in handles {
            logs.push(h.await.expect("mlive worker panicked"));
        }
        MliveReport::build(logs, origin.elapsed(), bucket)
    });
    MliveHandle { stop, task }
}

/// Runs to completion.
pub async fn run(targets: Vec<EmClient>, ring: &Ring, cfg: MliveConfig) -> MliveReport {
    spawn(targets, ring, cfg).wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&d, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn directories_cover_a_small_ring() {
        let ring = Ring::create(64, &["tcp://a:2020", "tcp://b:2020"]).unwrap();
        let dirs = ring_directories(&ring, "acct", 4096);
        assert_eq!(dirs.len(), 64);
        for (d, v) in &dirs {
            let key = format!("{d}/o1");
            assert_eq!(
                ring.locate("manta", &key, KeyEncoding::Utf8).unwrap().vnode,
                *v
            );
        }
    }
}
