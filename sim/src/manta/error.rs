//! Errors as electric-moray and moray put them on the wire: a `name` and a
//! message, so tests and the controller can match on what Manta reports.

use wire::fash::FashError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MantaError {
    /// e-m: the vnode's ring data is `"ro"` (em:lib/errors.js, no pnode).
    #[error("some vnodes are in read-only mode")]
    ReadOnlyVnode { vnode: u32 },
    /// e-m: the pnode is read-only (or missing) in `indexShards`, or the
    /// shard itself is flagged read-only.
    #[error("pnode \"{pnode}\" is in read-only mode")]
    ReadOnlyPnode { pnode: String },
    #[error("{bucket}::{key} does not exist")]
    ObjectNotFound { bucket: String, key: String },
    /// moray: no manatee primary to talk to.
    #[error("no manatee peers available")]
    NoDatabasePeers { pnode: String },
    /// moray: connected to nothing usable.
    #[error("Not connected to manatee and/or postgres")]
    NoDatabase { pnode: String },
    /// moray: the statement did not finish (e.g. a primary without a sync
    /// blocks commits).
    #[error("query timeout: {statement}")]
    QueryTimeout { pnode: String, statement: String },
    /// The caller gave up waiting (the load generator's per-op deadline).
    #[error("request timed out after {millis} ms")]
    ClientTimeout { millis: u64 },
    /// A copied row would overwrite a different row on the destination.
    #[error("{bucket}::{key} already exists on \"{pnode}\" with different content")]
    RowConflict {
        pnode: String,
        bucket: String,
        key: String,
    },
    #[error("no hash ring loaded")]
    NoRing,
    /// e-m has no moray client for a pnode of its ring.
    #[error("no moray client for pnode \"{pnode}\"")]
    UnknownShard { pnode: String },
    #[error("{0}")]
    Ring(#[from] FashError),
}

impl MantaError {
    /// The error `name` on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            MantaError::ReadOnlyVnode { .. } | MantaError::ReadOnlyPnode { .. } => "ReadOnlyError",
            MantaError::ObjectNotFound { .. } => "ObjectNotFoundError",
            MantaError::NoDatabasePeers { .. } => "NoDatabasePeersError",
            MantaError::NoDatabase { .. } => "NoDatabaseError",
            MantaError::QueryTimeout { .. } => "QueryTimeoutError",
            MantaError::ClientTimeout { .. } => "TimeoutError",
            MantaError::RowConflict { .. } => "InternalError",
            MantaError::NoRing | MantaError::UnknownShard { .. } | MantaError::Ring(_) => {
                "InvocationError"
            }
        }
    }

    /// A refusal because something is deliberately read-only, as opposed to
    /// a failure.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            MantaError::ReadOnlyVnode { .. } | MantaError::ReadOnlyPnode { .. }
        )
    }
}
