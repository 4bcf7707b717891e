//! Coordination with ZooKeeper semantics.
//!
//! Everything tritonctl persists, and everything the simulated manatee sitters
//! coordinate through, goes through the [`Coordination`] trait: znodes with
//! data versions, ephemeral and sequential nodes, one-shot data/child watches,
//! all-or-nothing multi-ops, and an explicit session whose expiry is reported
//! to the caller and never papered over with a fresh session.
//!
//! Implementations:
//! - [`zk::ZkCoordination`]: a real ZooKeeper through `zookeeper-client`,
//!   restricted to ZooKeeper 3.4 operations (Triton's binder ships 3.4); a
//!   multi with a create goes to a 3.4 server over a small wire-protocol
//!   session of our own ([`zk34`], records in [`jute`]).
//! - [`mem::MemEnsemble`]: an in-process "server" that hands out sessions;
//!   with a data directory it persists persistent znodes to SQLite.
//!
//! The same conformance suite (`tests/conformance.rs`) runs against both.
//! With the `testing` feature, `testing::ZkServer` starts a private real
//! ZooKeeper for integration tests (`coord = { workspace = true, features =
//! ["testing"] }` in dev-dependencies).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

pub mod acl;
pub mod jute;
pub mod mem;
pub mod path;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod zk;
pub mod zk34;

pub use acl::{Acl, DigestCredentials, Id, Perms, Secret};
pub use mem::{MemEnsemble, MemSession, SharedOptions};
pub use path::{join, parent, validate_path};
pub use zk::{MultiRoute, ZkCoordination, ZkOptions};

/// A znode's metadata (the parts of ZooKeeper's `Stat` we rely on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stat {
    /// Data version: bumped by every `set`; `set`/`delete`/`check` compare against it.
    pub version: i32,
    /// Child version: bumped on every child create/delete.
    pub cversion: i32,
    /// Creation time, milliseconds since the Unix epoch.
    pub ctime_ms: i64,
    /// Last modification time, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// Session id that owns this ephemeral node, 0 for persistent nodes.
    pub ephemeral_owner: i64,
    pub num_children: i32,
    pub data_length: i32,
}

/// How a node is created. Sequential modes append a 10-digit, zero-padded
/// counter owned by the parent (it never goes backwards, even across deletes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateMode {
    Persistent,
    PersistentSequential,
    Ephemeral,
    EphemeralSequential,
}

impl CreateMode {
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential | CreateMode::EphemeralSequential
        )
    }
}

/// Version expectation for conditional writes. `Any` is ZooKeeper's `-1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Any,
    Version(i32),
}

impl From<i32> for Expect {
    fn from(v: i32) -> Self {
        Expect::Version(v)
    }
}

/// One operation of a multi-op transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        mode: CreateMode,
        /// The node's ACL; `None` is the open ACL (`world:anyone:cdrwa`).
        acl: Option<Vec<Acl>>,
    },
    Set {
        path: String,
        data: Vec<u8>,
        expect: Expect,
    },
    Delete {
        path: String,
        expect: Expect,
    },
    /// Fails the whole transaction unless `path` exists at `expect`.
    Check {
        path: String,
        expect: Expect,
    },
}

impl Op {
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: CreateMode) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            mode,
            acl: None,
        }
    }
    /// A create with an explicit ACL.
    pub fn create_with_acl(
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        mode: CreateMode,
        acl: Vec<Acl>,
    ) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            mode,
            acl: Some(acl),
        }
    }
    pub fn set(path: impl Into<String>, data: impl Into<Vec<u8>>, expect: Expect) -> Op {
        Op::Set {
            path: path.into(),
            data: data.into(),
            expect,
        }
    }
    pub fn delete(path: impl Into<String>, expect: Expect) -> Op {
        Op::Delete {
            path: path.into(),
            expect,
        }
    }
    pub fn check(path: impl Into<String>, expect: Expect) -> Op {
        Op::Check {
            path: path.into(),
            expect,
        }
    }
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Set { path, .. }
            | Op::Delete { path, .. }
            | Op::Check { path, .. } => path,
        }
    }
}

/// The result of one successful operation inside a multi-op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// The path actually created (with the sequence suffix for sequential nodes).
    Created(String),
    Set(Stat),
    Deleted,
    Checked,
}

/// Errors, named after ZooKeeper's error codes so callers can reason the same way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    #[error("no node: {0}")]
    NoNode(String),
    #[error("node exists: {0}")]
    NodeExists(String),
    #[error("bad version: {0}")]
    BadVersion(String),
    #[error("node has children: {0}")]
    NotEmpty(String),
    #[error("ephemeral nodes may not have children: {0}")]
    NoChildrenForEphemerals(String),
    #[error("invalid path: {0}")]
    BadPath(String),
    /// The session is gone for good: every later call on this handle fails
    /// with this error. The caller must decide what to do (build a new
    /// session, stop acting as leader, ...). Never hidden.
    #[error("session expired")]
    SessionExpired,
    /// The handle was closed by its owner.
    #[error("session closed")]
    SessionClosed,
    /// The connection dropped; the session may still be alive and the call may
    /// or may not have been applied. Retry only idempotent calls.
    #[error("connection loss")]
    ConnectionLoss,
    /// A multi-op failed: `index` is the first operation that failed and
    /// `error` why. Nothing of the transaction was applied.
    #[error("transaction failed at operation {index}: {error}")]
    MultiFailed {
        index: usize,
        error: Box<CoordError>,
    },
    /// The server refused: this session's identities lack the permission
    /// the node's ACL asks for (ZooKeeper's NOAUTH). Nothing was applied.
    #[error("not authorized: {0}")]
    NoAuth(String),
    /// An ACL the server will not store (empty, unknown scheme, an `auth`
    /// entry from a session with no authenticated id).
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error("coordination backend error: {0}")]
    Backend(String),
    /// A shared embedded store stayed write-locked by another process for
    /// longer than the writer's timeout; nothing was written.
    #[error(
        "gave up after {waited_ms} ms waiting for another process to finish writing the store in {dir}; nothing was written, try again"
    )]
    StoreBusy { dir: String, waited_ms: u64 },
}

impl CoordError {
    /// The underlying error of a failed multi-op, or self.
    pub fn root(&self) -> &CoordError {
        match self {
            CoordError::MultiFailed { error, .. } => error.root(),
            other => other,
        }
    }
    pub fn is_session_lost(&self) -> bool {
        matches!(
            self.root(),
            CoordError::SessionExpired | CoordError::SessionClosed
        )
    }
}

pub type Result<T, E = CoordError> = std::result::Result<T, E>;

/// What fired a one-shot watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    NodeCreated,
    NodeDeleted,
    NodeDataChanged,
    NodeChildrenChanged,
    /// The session ended before the watch fired; it never will.
    SessionExpired,
    SessionClosed,
}

/// A one-shot watch: a future that completes once, with the event that fired it.
/// Dropping it is always safe (implementations must not send ZooKeeper 3.5+
/// RemoveWatches on drop).
pub struct Watch(Pin<Box<dyn Future<Output = WatchEvent> + Send + 'static>>);

impl Watch {
    pub fn new(fut: impl Future<Output = WatchEvent> + Send + 'static) -> Watch {
        Watch(Box::pin(fut))
    }
}

impl Future for Watch {
    type Output = WatchEvent;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<WatchEvent> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Watch")
    }
}

/// The session's life as the client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Connected,
    /// Connection lost, session possibly still alive on the server.
    Disconnected,
    /// Terminal: the server expired the session; its ephemeral nodes are gone.
    Expired,
    /// Terminal: closed by its owner.
    Closed,
}

impl SessionState {
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionState::Expired | SessionState::Closed)
    }
}

/// A ZooKeeper-like session. Cheap to clone behind an `Arc`; every method is
/// one round trip.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// The server-assigned session id (the `ephemeral_owner` of our nodes).
    fn session_id(&self) -> i64;

    /// Current session state.
    fn session_state(&self) -> SessionState;

    /// A receiver that sees every session state change; it ends in a terminal state.
    fn session_events(&self) -> tokio::sync::watch::Receiver<SessionState>;

    /// Create a node; returns the path created (with sequence suffix when sequential).
    /// The parent must exist (`NoNode`), the node must not (`NodeExists`).
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String>;

    /// Data and stat of a node, `NoNode` when it does not exist.
    async fn get(&self, path: &str) -> Result<(Vec<u8>, Stat)>;

    /// Like `get`, and leave a one-shot watch that fires on data change or deletion.
    /// Dropping this call's future before it completes is safe, as for
    /// `exists_watch` and `children_watch`: the backend finishes the call
    /// itself and the watch it leaves fires into nothing.
    async fn get_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch)>;

    /// Stat of a node, or `None`.
    async fn exists(&self, path: &str) -> Result<Option<Stat>>;

    /// Like `exists`, and leave a one-shot watch that fires on create, change or delete.
    async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, Watch)>;

    /// Replace a node's data if its version matches.
    async fn set(&self, path: &str, data: &[u8], expect: Expect) -> Result<Stat>;

    /// Delete a node (it must have no children) if its version matches.
    async fn delete(&self, path: &str, expect: Expect) -> Result<()>;

    /// Child names (not full paths), in no particular order.
    async fn children(&self, path: &str) -> Result<Vec<String>>;

    /// Like `children`, and leave a one-shot watch that fires when a child is
    /// created or deleted, or the node itself is deleted.
    async fn children_watch(&self, path: &str) -> Result<(Vec<String>, Watch)>;

    /// Apply every operation or none. On failure returns `MultiFailed` with the
    /// index of the first failing operation.
    async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>>;

    /// Create a node with an ACL (`create` gives the open ACL). Backends
    /// that know no ACLs take only the open one.
    async fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: &[Acl],
    ) -> Result<String> {
        if Acl::is_open(acl) {
            return self.create(path, data, mode).await;
        }
        Err(CoordError::Backend(format!(
            "{path}: this coordination backend does not support ACLs"
        )))
    }

    /// A node's ACL and stat (ZooKeeper's getACL).
    async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        let stat = self
            .exists(path)
            .await?
            .ok_or_else(|| CoordError::NoNode(path.to_string()))?;
        Ok((Acl::open(), stat))
    }

    /// Replace a node's ACL (ZooKeeper's setACL; needs ADMIN on the node).
    /// `expect` is compared with the ACL's own version (not the data's);
    /// `Expect::Any` always applies.
    async fn set_acl(&self, path: &str, acl: &[Acl], expect: Expect) -> Result<()> {
        let _ = (acl, expect);
        Err(CoordError::Backend(format!(
            "{path}: this coordination backend does not support ACLs"
        )))
    }

    /// Close the session: its ephemeral nodes are deleted, pending watches end
    /// with `SessionClosed`, and later calls fail with `SessionClosed`.
    /// As in ZooKeeper, the ephemerals are deleted while the session is still
    /// connected, so this session's own watches on them fire `NodeDeleted`
    /// (and a child watch on their parent `NodeChildrenChanged`) first.
    async fn close(&self);

    /// Create `path` and any missing ancestors as empty persistent nodes.
    /// Existing nodes are left alone.
    async fn mkdirp(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            match self.create(&at, b"", CreateMode::Persistent).await {
                Ok(_) | Err(CoordError::NodeExists(_)) => {}
                // ZooKeeper checks CREATE on the parent before it looks for
                // the node: an existing node we may not create is fine.
                Err(CoordError::NoAuth(e)) => {
                    if self.exists(&at).await?.is_none() {
                        return Err(CoordError::NoAuth(e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Split a sequential node name `prefix0000000042` into (`prefix`, 42).
pub fn split_sequence(name: &str) -> Option<(&str, u64)> {
    if name.len() < 10 {
        return None;
    }
    let (prefix, digits) = name.split_at(name.len() - 10);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|n| (prefix, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sequence_parses_zookeeper_suffixes() {
        assert_eq!(
            split_sequence("10.0.0.1:5432:12345-0000000007"),
            Some(("10.0.0.1:5432:12345-", 7))
        );
        assert_eq!(split_sequence("lock-"), None);
        assert_eq!(split_sequence("abc000000000x"), None);
    }
}
