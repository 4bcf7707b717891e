//! The row cleanup a resharding ends with (issue #16 step 4; the `cleanup`
//! and `verify-counts` steps): after the ring that maps the moved vnodes to
//! the new shard is live everywhere, each side still holds the rows of the
//! vnodes it no longer owns (the new shard is a physical copy of the
//! source). This engine deletes them on one shard, on real PostgreSQL,
//! through direct connections to the shard primary, as manta-reshard's
//! phase 19 does (research/resharding.md §3.8), and verifies by counts per
//! vnode that none are left.
//!
//! - [`tables`]: the buckets from `buckets_config`, `manta_directory_counts`
//!   first (libmanta's directory-count trigger then finds no count row to
//!   update while `manta` rows go), the rest sorted.
//! - [`tuning`]: connections, batch size, pause and the read-latency
//!   ceiling, read while running from `layout::reshard_tuning_path(op)`
//!   (`tritonctl reshard tune`).
//! - [`throttle`]: the read-latency probe and the back-off (pause grows,
//!   connections shrink while the probe's p99 is over the ceiling).
//! - [`engine`]: [`cleanup_for`], batched deletes by `_vnode`, then the
//!   NULL-`_vnode` rows placed by key; idempotent and resumable.
//! - [`verify`]: counts per vnode ([`count_vnodes`]) and [`verify`].
//!
//! Rows with a NULL `_vnode` (written by e-m's `batch`, and the count rows
//! its trigger made) are placed by computing the vnode of their key with
//! electric-moray's `transformKey` and fash's hash ([`wire::fash`]), but
//! only in the buckets whose keys electric-moray routes by the ring
//! (`manta`, `manta_uploads`, `manta_directory_counts`: [`RING_KEYED`]).
//! **Unsharded queue rows** (NULL `_vnode` in `manta_fastdelete_queue`,
//! `manta_delete_log` and any other bucket) are never deleted: they are the
//! garbage collector's work queue of the shard they were written on, keyed
//! by object id, not routed by the ring; after a split both sides hold a
//! copy, and the garbage collector of each may consider the object, which
//! is harmless (deleting a storage object twice finds nothing the second
//! time), whereas deleting a copy on the wrong side would leak the object's
//! storage forever. They are counted in [`VerifyReport::kept_unsharded`] so
//! the operator sees them.
//!
//! Rows are deleted only after the owning side is verified to hold them:
//! for the source's cleanup of the moved vnodes, [`cleanup_for`] takes the
//! new shard's counts per vnode ([`OwnerCheck::Counts`], taken by the
//! caller while the moved vnodes are read-only on both sides, after
//! `detach-peers` and before `mark-rw`, when the two copies are exact) and
//! refuses, deleting nothing, when any vnode's owner count is lower than
//! ours. The new shard's cleanup of the vnodes the source kept deletes a
//! copy of the source's own rows ([`OwnerCheck::CopyOfOwner`]).

pub mod engine;
pub mod tables;
pub mod throttle;
pub mod tuning;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use engine::cleanup_for;

pub use tuning::{Tunable, Tuning, TuningError, TuningSource};
pub use verify::{count_vnodes, verify};

/// Buckets whose keys electric-moray hashes onto the ring (after its key
/// transform), so a NULL-`_vnode` row of them has a vnode by its key.
pub const RING_KEYED: [&str; 3] = ["manta", "manta_uploads", "manta_directory_counts"];

/// One shard's side of a cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupTarget {
    /// The shard's name (for messages).
    pub shard: String,
    /// libpq connection string of the shard primary (from manatee's
    /// cluster state).
    pub pg_url: String,
    /// The vnodes this side no longer owns.
    pub drop_vnodes: BTreeSet<u32>,
    /// The ring's vnode count (for placing NULL-`_vnode` rows by key).
    pub vnode_count: u32,
}

/// How [`cleanup_for`] knows the owning side holds the rows it deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerCheck {
    /// The owner's counts per dropped vnode, taken while the vnodes were
    /// read-only on both sides (after `detach-peers`, before `mark-rw`):
    /// the source's cleanup of the moved vnodes, whose owner is the new
    /// shard. A vnode whose owner count is lower than ours is refused.
    Counts(VnodeCounts),
    /// The rows here are a physical copy of the owner's own (the new
    /// shard's cleanup of the vnodes the source kept): the source never
    /// stopped holding and serving them, and its counts may be lower than
    /// the copy's only by deletes acknowledged since, so no count check
    /// applies.
    CopyOfOwner,
}

/// Rows per vnode on one shard: `_vnode` rows of every bucket plus the
/// NULL-`_vnode` rows of ring-keyed buckets placed by key.
pub type VnodeCounts = BTreeMap<u32, u64>;

/// What one [`cleanup_for`] call did and what is left.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CleanupProgress {
    pub shard: String,
    /// Rows deleted by this call.
    pub deleted: u64,
    /// Rows of dropped vnodes left (by `_vnode`; the NULL-`_vnode` rows of
    /// unfinished buckets are not included: they are found by a scan).
    pub remaining_estimate: u64,
    /// Rows per second over this call.
    pub rows_per_s: f64,
    /// At this rate, when the rest is gone (None while nothing was deleted).
    pub eta: Option<Duration>,
    /// Every dropped vnode of every bucket is empty and the NULL-`_vnode`
    /// rows were all placed.
    pub done: bool,
    /// The probe's read p99 when the call ended (ms).
    pub read_p99_ms: Option<f64>,
    /// The call spent time backed off because of read latency.
    pub throttled: bool,
    /// The settings in effect when the call ended (after back-off).
    pub effective: Tuning,
}

/// The counts per vnode after a cleanup.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    pub shard: String,
    /// Rows left per dropped vnode (only vnodes with rows are listed):
    /// `_vnode` rows and NULL-`_vnode` rows of ring-keyed buckets by key.
    pub left: BTreeMap<u32, u64>,
    /// Per bucket: rows with a NULL `_vnode` of buckets the ring does not
    /// route, kept on purpose (see the module docs).
    pub kept_unsharded: BTreeMap<String, u64>,
}

impl VerifyReport {
    /// No row of a dropped vnode is left.
    pub fn is_clean(&self) -> bool {
        self.left.is_empty()
    }
}

/// Why a cleanup stops.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("{shard}: cannot connect to the primary: {message}")]
    Connect { shard: String, message: String },
    #[error("{shard}: {context}: {message}")]
    Database {
        shard: String,
        context: String,
        message: String,
    },
    /// The owning side holds fewer rows of these vnodes than we do: nothing
    /// of them is deleted.
    #[error(
        "{shard}: refusing to delete {} vnode(s) whose owning side holds fewer rows than this side: {}",
        vnodes.len(),
        vnodes.iter().take(8).map(|(v, ours, owner)| format!("vnode {v}: ours {ours}, owner {owner}")).collect::<Vec<_>>().join("; ")
    )]
    OwnerMissingRows {
        shard: String,
        /// (vnode, our count, owner's count).
        vnodes: Vec<(u32, u64, u64)>,
    },
    /// The server is still replaying WAL (a standby, or a primary not yet
    /// out of recovery): what it shows may be behind the shard.
    #[error(
        "{shard}: the server is in recovery; its rows may be behind the shard's, counting refused"
    )]
    InRecovery { shard: String },
    #[error("{shard}: a bucket name in buckets_config is not a plain identifier: {name:?}")]
    BadBucketName { shard: String, name: String },
    #[error("{shard}: vnode count {count} is not a fash ring size")]
    BadVnodeCount { shard: String, count: u32 },
    #[error(transparent)]
    Tuning(#[from] TuningError),
}

pub(crate) fn db_error(shard: &str, context: &str, e: tokio_postgres::Error) -> CleanupError {
    CleanupError::Database {
        shard: shard.to_owned(),
        context: context.to_owned(),
        message: match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        },
    }
}

/// A connection to the target's primary (its driver task spawned).
pub(crate) async fn connect(
    target: &CleanupTarget,
) -> Result<tokio_postgres::Client, CleanupError> {
    let (client, conn) = tokio_postgres::connect(&target.pg_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| CleanupError::Connect {
            shard: target.shard.clone(),
            message: e.to_string(),
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
