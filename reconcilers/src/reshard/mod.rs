//! Live resharding of Manta's metadata tier (issue #16): moving a set of
//! vnodes from one index shard to a new one, with writes blocked only for
//! the vnodes that move and only while they must be.
//!
//! The split into modules follows the other operations:
//! - this file: the observation types, the move, the actions, and the
//!   world traits ([`ReshardObserve`] observes, [`ReshardAct`] acts,
//!   [`ShardRows`] deletes and counts rows on a shard's primary);
//! - `plan.rs`: the pure plan (the canonical step list, the point of no
//!   return at `install-ring`), the ring stages R0..R3 and the rollback;
//! - `moves.rs`: the document's moves against the live ring;
//! - `runner/`: gates (preflight as Vitess's `canSwitch`), acts and checks;
//! - `drive.rs`: forward, rollback before the point of no return, the
//!   journal.
//!
//! Sources: research/resharding.md §3 (manta-reshard's phases) and §5.1.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::fash::Ring;

use crate::error::WorldError;

mod drive;
mod moves;
mod plan;
mod runner;
#[cfg(test)]
mod tests;

pub use drive::{Outcome, ReshardJournal, ReshardStore, drive};
pub use moves::{MovesError, move_name, moves_from_document};
pub use plan::{
    PNR_STEP, STEPS, cleanup_targets, freeze_reason, plan_move, rollback_plan, stage_ring,
};
pub use runner::{ReshardRunner, Timeouts};

/// One shard-to-shard move of a set of vnodes, as the operation executes
/// it. (H2's `crds::ring::VnodeMove` has the same shape; the lead swaps it
/// in at merge.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnodeMove {
    pub from: String,
    pub to: String,
    pub vnodes: BTreeSet<u32>,
}

/// What one move operation works with, fixed when it is planned and kept
/// in its journal, so a resumed operation never re-reads a changed world
/// into a different plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveJob {
    pub op_id: String,
    pub mv: VnodeMove,
    /// The image SAPI `HASH_RING_IMAGE` named when the move was planned:
    /// R0, what a rollback re-installs.
    pub original_image: String,
    pub vnode_count: u32,
    /// Servers for the new shard's peers (asyncs of the source until detach).
    pub new_servers: Vec<String>,
    /// Morays to provision for the new shard.
    pub morays: u32,
    /// Replication lag allowed at preflight, in seconds.
    pub max_lag_secs: f64,
    /// The approval gate before the critical section.
    pub approval: bool,
}

/// The four rings of a move. R0 is the live ring; R1 marks the moving
/// vnodes `ro` where they are; R2 maps them to the new shard, still `ro`;
/// R3 is R2 without `ro`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RingStage {
    R0,
    R1,
    R2,
    R3,
}

impl RingStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RingStage::R0 => "R0",
            RingStage::R1 => "R1",
            RingStage::R2 => "R2",
            RingStage::R3 => "R3",
        }
    }
}

/// One step of the operation, as data (journaled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ReshardAction {
    Preflight,
    LockRegion,
    FreezeSource,
    AddPeers,
    AwaitCatchUp,
    ProvisionMorays,
    BuildRings,
    Approval,
    TakeDumpLock,
    /// Set SAPI `HASH_RING_IMAGE` to the stage's image and restart every
    /// electric-moray not yet serving it; done when each one's `/status`
    /// stamp names it (mark-ro R1, install-ring R2, mark-rw R3, rollback R0).
    RollOutRing {
        stage: RingStage,
    },
    Sentinel,
    DetachPeers,
    ReleaseDumpLock,
    Cleanup,
    VerifyCounts,
    Unfreeze,
    ReleaseRegionLock,
    // Rollback only.
    RemoveMorays,
    RemovePeers,
}

/// A Manta shard as the operation sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardObs {
    pub name: String,
    /// Why the shard is not healthy (None: healthy).
    pub problem: Option<String>,
    /// The largest replication lag of its standbys, seconds (None: unknown).
    pub lag_secs: Option<f64>,
    /// The freeze reason in its cluster state, if frozen.
    pub frozen: Option<String>,
    /// Whether the server of its primary (per the cluster state) is running.
    pub primary_up: bool,
}

/// One electric-moray as its `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmObs {
    pub zone: String,
    /// The ring image it loaded (its `hash_ring_stamp`); `None` when its
    /// status could not be read, with why in `error`.
    pub ring_image: Option<String>,
    pub error: Option<String>,
}

/// One new peer (a postgres instance tagged with the operation).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerObs {
    pub zone: String,
    pub server: String,
    /// The shard its SAPI metadata names (the source until detach).
    pub shard: String,
    pub caught_up: bool,
    pub restore: Option<RestoreProgress>,
    /// Whether its sitter is running.
    pub running: bool,
}

/// A restore's progress, from the backup server.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreProgress {
    pub done_mb: f64,
    pub total_mb: f64,
    pub mb_per_s: f64,
}

impl RestoreProgress {
    pub fn eta(&self) -> Option<Duration> {
        (self.mb_per_s > 0.0).then(|| {
            Duration::from_secs_f64(((self.total_mb - self.done_mb) / self.mb_per_s).max(0.0))
        })
    }
}

/// The new shard's cluster state, once written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewShardState {
    pub generation: u64,
    pub frozen: Option<String>,
}

/// Progress of a cleanup slice on one shard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanupProgress {
    pub deleted: u64,
    pub remaining: u64,
    pub rows_per_s: f64,
    pub done: bool,
}

/// Rows a shard holds per vnode it should not (verify-counts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// (vnode, rows) for each dropped vnode that still has rows.
    pub left: Vec<(u32, u64)>,
}

/// Which rows a shard must lose after the move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupTarget {
    pub shard: String,
    pub drop_vnodes: BTreeSet<u32>,
    pub vnode_count: u32,
}

/// What the resharding observes. Nothing here changes the datacenter.
#[async_trait]
pub trait ReshardObserve: Send + Sync {
    async fn shard(&self, shard: &str) -> Result<ShardObs, WorldError>;
    /// Every electric-moray zone of the region, with its status.
    async fn electric_morays(&self) -> Result<Vec<EmObs>, WorldError>;
    /// The image SAPI `HASH_RING_IMAGE` names.
    async fn live_image(&self) -> Result<String, WorldError>;
    /// The ring an image holds (Err: unreadable, with why).
    async fn ring_of(&self, image: &str) -> Result<Ring, WorldError>;
    /// The ring image of `stage` tagged with the operation, if imported.
    async fn staged_image(
        &self,
        op_id: &str,
        stage: RingStage,
    ) -> Result<Option<String>, WorldError>;
    /// The operation id the region lock names, if held.
    async fn region_lock(&self) -> Result<Option<String>, WorldError>;
    async fn dump_lock(&self, shard: &str) -> Result<bool, WorldError>;
    /// The postgres instances tagged with the operation.
    async fn new_peers(&self, op_id: &str) -> Result<Vec<PeerObs>, WorldError>;
    /// Running moray instances tagged with the operation.
    async fn new_morays(&self, op_id: &str) -> Result<u32, WorldError>;
    /// Whether the operation's sentinel row is readable on the peer.
    async fn sentinel_seen(&self, op_id: &str, zone: &str) -> Result<bool, WorldError>;
    async fn new_shard_state(&self, shard: &str) -> Result<Option<NewShardState>, WorldError>;
    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError>;
}

/// What the resharding changes. Every call is safe to repeat: the runner
/// looks first, and the world tags what it creates with the operation.
#[async_trait]
pub trait ReshardAct: ReshardObserve {
    /// Create the region lock naming `op_id`; refused naming the holder.
    async fn take_region_lock(&self, op_id: &str) -> Result<(), WorldError>;
    /// Delete the region lock if it names `op_id`.
    async fn release_region_lock(&self, op_id: &str) -> Result<(), WorldError>;
    async fn freeze(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
    /// Lift a freeze only if its reason is exactly `reason`.
    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
    /// A postgres instance on `server` as an async of `source`, tagged.
    async fn add_peer(&self, op_id: &str, source: &str, server: &str) -> Result<(), WorldError>;
    async fn remove_peer(&self, zone: &str) -> Result<(), WorldError>;
    async fn provision_moray(&self, op_id: &str, shard: &str) -> Result<(), WorldError>;
    async fn remove_morays(&self, op_id: &str) -> Result<(), WorldError>;
    /// Build the ring image (fashdb) and import it into IMGAPI, tagged.
    async fn import_ring(
        &self,
        op_id: &str,
        stage: RingStage,
        ring: &Ring,
    ) -> Result<String, WorldError>;
    async fn set_live_image(&self, image: &str) -> Result<(), WorldError>;
    async fn restart_electric_moray(&self, zone: &str) -> Result<(), WorldError>;
    async fn take_dump_lock(&self, shard: &str) -> Result<(), WorldError>;
    async fn release_dump_lock(&self, shard: &str) -> Result<(), WorldError>;
    async fn write_sentinel(&self, op_id: &str, shard: &str) -> Result<(), WorldError>;
    /// Stop the peer's sitter, point its SAPI metadata at `to`, start it.
    async fn detach_peer(&self, zone: &str, to: &str) -> Result<(), WorldError>;
    /// The new shard's first cluster state (generation 1) over the
    /// detached peers (first is primary), frozen with `reason`.
    async fn write_new_shard_state(
        &self,
        shard: &str,
        peers: &[String],
        reason: &str,
    ) -> Result<(), WorldError>;
    /// Delete the new shard's cluster state if frozen with `reason`.
    async fn delete_new_shard_state(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
}

/// Rows on a shard's primary: the cleanup engine's calls (H3's
/// `controller/src/cleanup` behind it in the controller).
#[async_trait]
pub trait ShardRows: Send + Sync {
    /// Delete up to `budget`'s worth of rows the target must lose;
    /// idempotent and resumable.
    async fn cleanup(
        &self,
        target: &CleanupTarget,
        budget: Duration,
    ) -> Result<CleanupProgress, WorldError>;
    async fn verify(&self, target: &CleanupTarget) -> Result<VerifyReport, WorldError>;
}
