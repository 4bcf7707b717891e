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
    /// e-m: the ring had data vnodes when it was loaded (`ring.ro_`), so
    /// bucket DDL is refused (`new ReadOnlyError()`, no pnode).
    #[error("some vnodes are in read-only mode")]
    ReadOnlyRing,
    /// moray: `BucketNotFoundError`.
    #[error("{bucket} does not exist")]
    BucketNotFound { bucket: String },
    /// moray: the bucket exists already (`BucketConflictError`).
    #[error("{bucket} was likely being concurrently updated")]
    BucketConflict { bucket: String },
    /// moray: `InvalidBucketNameError`.
    #[error("{bucket} is not a valid bucket name")]
    InvalidBucketName { bucket: String },
    /// e-m's `InvocationError` for a malformed request (e.g. an empty batch).
    #[error("{message}")]
    Invocation { message: String },
    /// A plain node `Error` as e-m raises it (batch validation).
    #[error("{message}")]
    Plain { message: String },
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
    /// A PostgreSQL error under a real-PG shard (moray wraps these in an
    /// `InternalError`).
    #[error("{message}")]
    Database { pnode: String, message: String },
    /// The electric-moray process is not running (stopped zone, disabled
    /// service, or a start that failed).
    #[error("electric-moray in zone {zone} is not running")]
    NotRunning { zone: String },
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
            MantaError::ReadOnlyVnode { .. }
            | MantaError::ReadOnlyPnode { .. }
            | MantaError::ReadOnlyRing => "ReadOnlyError",
            MantaError::BucketNotFound { .. } => "BucketNotFoundError",
            MantaError::BucketConflict { .. } => "BucketConflictError",
            MantaError::InvalidBucketName { .. } => "InvalidBucketNameError",
            MantaError::Invocation { .. } => "InvocationError",
            MantaError::Plain { .. } => "Error",
            MantaError::ObjectNotFound { .. } => "ObjectNotFoundError",
            MantaError::NoDatabasePeers { .. } => "NoDatabasePeersError",
            MantaError::NoDatabase { .. } => "NoDatabaseError",
            MantaError::QueryTimeout { .. } => "QueryTimeoutError",
            MantaError::ClientTimeout { .. } => "TimeoutError",
            MantaError::RowConflict { .. } | MantaError::Database { .. } => "InternalError",
            MantaError::NotRunning { .. } => "ServiceUnavailableError",
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
            MantaError::ReadOnlyVnode { .. }
                | MantaError::ReadOnlyPnode { .. }
                | MantaError::ReadOnlyRing
        )
    }
}
