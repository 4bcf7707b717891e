//! The per-shard pg_dump job (manta-manatee `pg_dump/pg_dump.sh`, run by
//! cron in every postgres zone): **world** behaviour, research/manatee.md
//! §2.7. Only one peer dumps: the first async if there is one, else the
//! sync, else a primary alone. After taking its ZFS snapshot the job runs
//! `manatee-adm check-lock -p /pg_dump_lock`: when the node exists (or
//! ZooKeeper cannot be asked) it stops and nothing is dumped. Resharding
//! takes the lock (RFD 103 step 5) so metering and GC never see a dump of
//! a half-split topology; a dump taken anyway while a shard is split mid-way
//! (its state frozen by a reshard plan) is flagged in the record, which is
//! what a test or the lead's measurement reads to prove the lock was held.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord::Coordination;
use wire::manatee::Freeze;

use crate::manatee::{ManateeSim, SimError};

/// The global lock node (at the ZooKeeper root, every shard sharing it).
pub const PG_DUMP_LOCK: &str = "/pg_dump_lock";

/// A freeze reason that says a reshard plan has the shard mid-split
/// (manta-reshard freezes with `reshard plan <uuid>`, phases 2-20).
pub const RESHARD_FREEZE_PREFIX: &str = "reshard plan ";

/// What one run of the job did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpOutcome {
    /// The dump was taken on `peer` at its replay position `lsn`.
    Dumped { peer: String, lsn: Option<u64> },
    /// `check-lock` found `/pg_dump_lock`: no dump.
    SkippedLocked,
    /// `check-lock` could not ask ZooKeeper (exits 1 too): no dump.
    SkippedNoZooKeeper(String),
    /// No peer to dump from (no state, or nobody in a dumping role).
    NoPeer,
}

/// One run of the job, as the simulator records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpRecord {
    pub shard: String,
    /// The run's number (the hour it stands for).
    pub hour: u64,
    pub outcome: DumpOutcome,
    /// Set when the dump was taken while the shard was split mid-way: the
    /// freeze reason of the reshard plan that had it.
    pub mid_split: Option<String>,
}

impl DumpRecord {
    /// A dump that should not have happened: taken mid-split.
    pub fn is_mid_split_dump(&self) -> bool {
        matches!(self.outcome, DumpOutcome::Dumped { .. }) && self.mid_split.is_some()
    }
}

/// `manatee-adm check-lock -p PATH`: `Ok(true)` when the lock is held.
pub async fn check_lock(c: &dyn Coordination, path: &str) -> Result<bool, String> {
    c.exists(path)
        .await
        .map(|s| s.is_some())
        .map_err(|e| e.to_string())
}

/// One run of the job for `shard` (the cron firing in its zones).
pub async fn run_once(sim: &ManateeSim, shard: &str, hour: u64) -> Result<DumpRecord, SimError> {
    let s = sim.shard(shard);
    let state = s.state().await?;
    let mid_split = state.as_ref().and_then(|st| match &st.freeze {
        Freeze::Info(f) => f
            .reason
            .as_ref()
            .filter(|r| r.starts_with(RESHARD_FREEZE_PREFIX))
            .cloned(),
        _ => None,
    });
    let record = |outcome| DumpRecord {
        shard: shard.to_string(),
        hour,
        outcome,
        mid_split: mid_split.clone(),
    };
    // get_self_role: first async, else sync, else a primary alone.
    let peer = state.as_ref().and_then(|st| {
        st.asyncs
            .first()
            .or(st.sync.as_ref())
            .or(Some(&st.primary))
            .map(|p| p.id.clone())
    });
    let Some(zone) = peer.and_then(|p| sim.zone_by_peer_id(&p)) else {
        return Ok(record(DumpOutcome::NoPeer));
    };
    // The ZFS snapshot comes first, then the lock check.
    let c = match sim.admin_session().await {
        Ok(c) => c,
        Err(e) => return Ok(record(DumpOutcome::SkippedNoZooKeeper(e.to_string()))),
    };
    match check_lock(c.as_ref(), PG_DUMP_LOCK).await {
        Ok(true) => Ok(record(DumpOutcome::SkippedLocked)),
        Err(e) => Ok(record(DumpOutcome::SkippedNoZooKeeper(e))),
        Ok(false) => Ok(record(DumpOutcome::Dumped {
            peer: zone.id().to_string(),
            lsn: zone.lsn().map(|l| l.0),
        })),
    }
}

/// The hourly job on every named shard, until the handle is dropped or
/// stopped; every run is appended to [`DumpSchedule::records`].
pub struct DumpSchedule {
    records: Arc<Mutex<Vec<DumpRecord>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DumpSchedule {
    /// `hour` is the real time between runs (scaled in tests).
    pub fn start(sim: ManateeSim, shards: Vec<String>, hour: Duration) -> DumpSchedule {
        let records = Arc::new(Mutex::new(Vec::new()));
        let out = records.clone();
        let task = tokio::spawn(async move {
            for n in 0u64.. {
                tokio::time::sleep(hour).await;
                for s in &shards {
                    match run_once(&sim, s, n).await {
                        Ok(r) => out.lock().unwrap().push(r),
                        Err(e) => tracing::warn!(shard = %s, "pg_dump run failed: {e}"),
                    }
                }
            }
        });
        DumpSchedule { records, task }
    }

    pub fn records(&self) -> Vec<DumpRecord> {
        self.records.lock().unwrap().clone()
    }

    pub fn stop(self) -> Vec<DumpRecord> {
        self.task.abort();
        self.records()
    }
}

impl Drop for DumpSchedule {
    fn drop(&mut self) {
        self.task.abort();
    }
}
