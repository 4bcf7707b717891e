//! In-process coordination ensemble with ZooKeeper semantics.
//!
//! [`MemEnsemble`] plays the server: it owns the znode tree, hands out
//! sessions ([`MemSession`]) and lets tests and the simulator expire them.
//! Three modes:
//! - [`MemEnsemble::new`]: memory only.
//! - [`MemEnsemble::open`]: one process owns a data directory; every
//!   persistent znode is written through to SQLite (one transaction per
//!   mutation or multi-op) and reloaded on the next open; ephemeral nodes are
//!   never written, because their sessions cannot outlive the process.
//! - [`MemEnsemble::open_shared`]: any number of processes share a data
//!   directory (the `tritonctl` commands). SQLite is the truth and the tree
//!   a cache: see [`shared`] for how writes, watches and ephemeral nodes work
//!   across processes.
//!
//! Access control: this backend is the embedded store of one user. It
//! keeps no ACLs and enforces none: a create with an ACL is checked the way
//! ZooKeeper checks one (`InvalidAcl` for an empty or malformed list) and
//! then stored like any node, `set_acl` only checks the node exists, and
//! `get_acl` reports the open ACL (`world:anyone:cdrwa`), which is what
//! every node here has in effect. Whoever can read the data directory can
//! read and write everything in it; file permissions are its protection.
//!
//! Every mutation runs as a small transaction against the live tree with an
//! undo log: if any operation (or the SQLite write) fails, the undo log puts
//! the tree back, so multi-ops are all-or-nothing and memory never drifts from
//! disk. Watch events are collected while applying and delivered only after
//! the whole transaction committed and the lock was released.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};

mod db;
pub mod shared;

use db::Db;
pub use db::{DB_FILE, OnWait, SharedOptions};

use crate::path::{parent, validate_path};
use crate::{
    Acl, CoordError, Coordination, CreateMode, Expect, Op, OpResult, Result, SessionState, Stat,
    Watch, WatchEvent,
};

/// Lock file on the data directory: an exclusive ensemble holds it
/// exclusively, sharing ensembles hold it shared, so the two kinds never mix.
pub const LOCK_FILE: &str = "coord.lock";

/// An in-process ZooKeeper-like server. Cloning gives another handle to the
/// same ensemble.
#[derive(Clone)]
pub struct MemEnsemble {
    inner: Arc<Inner>,
    release: Arc<Release>,
}

/// Held by every handle the caller owns (ensembles and sessions), never by
/// the shared store's poller: when the last one goes, the data directory's
/// locks and the database are let go at once, in the caller's thread, even
/// if the poller still holds the state for a moment.
struct Release(Arc<Inner>);

impl Drop for Release {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.shared = None;
        st.db = None;
        st._dir_lock = None;
    }
}

struct Inner {
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock could leave a half-applied
        // transaction behind; refusing to continue is safer than serving it.
        self.state.lock().expect("coord::mem state poisoned")
    }
}

/// The parts of a znode's stat that are stored (children are counted live).
#[derive(Clone, Copy, Debug)]
struct NodeStat {
    version: i32,
    /// How many children were ever created here. Like ZooKeeper, this is the
    /// sequence counter, and the visible cversion (creates + deletes) is
    /// derived from it: `2 * child_creates - num_children`.
    child_creates: i32,
    ctime_ms: i64,
    mtime_ms: i64,
    owner: i64,
}

struct Node {
    data: Vec<u8>,
    stat: NodeStat,
    children: BTreeSet<String>,
}

impl Node {
    fn stat(&self) -> Stat {
        Stat {
            version: self.stat.version,
            cversion: self
                .stat
                .child_creates
                .wrapping_mul(2)
                .wrapping_sub(self.children.len() as i32),
            ctime_ms: self.stat.ctime_ms,
            mtime_ms: self.stat.mtime_ms,
            ephemeral_owner: self.stat.owner,
            num_children: self.children.len() as i32,
            data_length: self.data.len() as i32,
        }
    }
}

struct Registration {
    session: i64,
    tx: oneshot::Sender<WatchEvent>,
}

struct SessionEntry {
    state_tx: watch::Sender<SessionState>,
}

/// What a committed change means for watchers of a path.
#[derive(Clone, Copy)]
enum Trigger {
    Created,
    Deleted,
    DataChanged,
    ChildrenChanged,
}

/// Inverse of one change to the tree, replayed backwards on rollback.
enum Undo {
    Created(String),
    Deleted(String, Node),
    Stat(String, NodeStat),
    Data(String, Vec<u8>),
    ChildAdded(String, String),
    ChildRemoved(String, String),
}

/// One in-flight transaction.
#[derive(Default)]
struct Tx {
    undo: Vec<Undo>,
    fired: Vec<(String, Trigger)>,
    /// Paths whose SQLite row must be rewritten (or deleted) on commit.
    dirty: BTreeSet<String>,
}

type Deliveries = Vec<(oneshot::Sender<WatchEvent>, WatchEvent)>;

struct State {
    nodes: HashMap<String, Node>,
    sessions: HashMap<i64, SessionEntry>,
    next_session_id: i64,
    data_watches: HashMap<String, Vec<Registration>>,
    child_watches: HashMap<String, Vec<Registration>>,
    db: Option<Db>,
    /// Set when other processes share the data directory.
    shared: Option<shared::Holder>,
    /// Held for the ensemble's lifetime: a `flock` on the data dir.
    _dir_lock: Option<std::fs::File>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn root_node(now: i64) -> Node {
    Node {
        data: Vec::new(),
        stat: NodeStat {
            version: 0,
            child_creates: 0,
            ctime_ms: now,
            mtime_ms: now,
            owner: 0,
        },
        children: BTreeSet::new(),
    }
}

fn check_version(path: &str, expect: Expect, actual: i32) -> Result<()> {
    match expect {
        Expect::Version(v) if v != actual => Err(CoordError::BadVersion(path.to_string())),
        _ => Ok(()),
    }
}

fn name_of(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

fn fire(deliveries: Deliveries) {
    for (tx, event) in deliveries {
        // The receiver may have been dropped: a dropped watch is allowed.
        let _ = tx.send(event);
    }
}

impl State {
    fn new(db: Option<Db>) -> State {
        let mut nodes = HashMap::new();
        nodes.insert("/".to_string(), root_node(now_ms()));
        State {
            nodes,
            sessions: HashMap::new(),
            next_session_id: shared::first_session_id(),
            data_watches: HashMap::new(),
            child_watches: HashMap::new(),
            db,
            shared: None,
            _dir_lock: None,
        }
    }

    fn node(&self, path: &str) -> Result<&Node> {
        self.nodes
            .get(path)
            .ok_or_else(|| CoordError::NoNode(path.to_string()))
    }

    fn create(
        &mut self,
        tx: &mut Tx,
        session: i64,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<String> {
        if mode.is_sequential() {
            // `/dir/` is a valid sequential path: the name is just the counter.
            validate_path(&format!("{path}0"))
                .map_err(|_| CoordError::BadPath(path.to_string()))?;
        } else {
            validate_path(path)?;
        }
        if path == "/" {
            return Err(CoordError::NodeExists(path.to_string()));
        }
        let parent_path = parent(path).expect("non-root path has a parent");
        let parent_node = self
            .nodes
            .get(parent_path)
            .ok_or_else(|| CoordError::NoNode(path.to_string()))?;
        // ZooKeeper numbers sequential nodes by the parent's count of child
        // creates, which never goes backwards (deletes do not lower it).
        let full = if mode.is_sequential() {
            format!("{path}{:010}", parent_node.stat.child_creates)
        } else {
            path.to_string()
        };
        if self.nodes.contains_key(&full) {
            return Err(CoordError::NodeExists(full));
        }
        if parent_node.stat.owner != 0 {
            return Err(CoordError::NoChildrenForEphemerals(full));
        }
        let now = now_ms();
        let owner = if mode.is_ephemeral() { session } else { 0 };
        let parent_path = parent_path.to_string();
        let name = name_of(&full).to_string();

        let parent_node = self.nodes.get_mut(&parent_path).expect("checked above");
        tx.undo
            .push(Undo::Stat(parent_path.clone(), parent_node.stat));
        parent_node.stat.child_creates = parent_node.stat.child_creates.wrapping_add(1);
        parent_node.children.insert(name.clone());
        tx.undo
            .push(Undo::ChildAdded(parent_path.clone(), name.clone()));

        self.nodes.insert(
            full.clone(),
            Node {
                data: data.to_vec(),
                stat: NodeStat {
                    version: 0,
                    child_creates: 0,
                    ctime_ms: now,
                    mtime_ms: now,
                    owner,
                },
                children: BTreeSet::new(),
            },
        );
        tx.undo.push(Undo::Created(full.clone()));

        tx.dirty.insert(parent_path.clone());
        tx.dirty.insert(full.clone());
        tx.fired.push((full.clone(), Trigger::Created));
        tx.fired.push((parent_path, Trigger::ChildrenChanged));
        Ok(full)
    }

    fn set(&mut self, tx: &mut Tx, path: &str, data: &[u8], expect: Expect) -> Result<Stat> {
        validate_path(path)?;
        let node = self
            .nodes
            .get_mut(path)
            .ok_or_else(|| CoordError::NoNode(path.to_string()))?;
        check_version(path, expect, node.stat.version)?;
        tx.undo.push(Undo::Stat(path.to_string(), node.stat));
        let old = std::mem::replace(&mut node.data, data.to_vec());
        tx.undo.push(Undo::Data(path.to_string(), old));
        node.stat.version = node.stat.version.wrapping_add(1);
        node.stat.mtime_ms = now_ms();
        let stat = node.stat();
        tx.dirty.insert(path.to_string());
        tx.fired.push((path.to_string(), Trigger::DataChanged));
        Ok(stat)
    }

    fn delete(&mut self, tx: &mut Tx, path: &str, expect: Expect) -> Result<()> {
        validate_path(path)?;
        if path == "/" {
            return Err(CoordError::BadPath(path.to_string()));
        }
        let node = self.node(path)?;
        check_version(path, expect, node.stat.version)?;
        if !node.children.is_empty() {
            return Err(CoordError::NotEmpty(path.to_string()));
        }
        let node = self.nodes.remove(path).expect("checked above");
        tx.undo.push(Undo::Deleted(path.to_string(), node));

        let parent_path = parent(path)
            .expect("non-root path has a parent")
            .to_string();
        let name = name_of(path).to_string();
        // The visible cversion rises because the child count drops.
        let parent_node = self
            .nodes
            .get_mut(&parent_path)
            .expect("every node's parent exists");
        parent_node.children.remove(&name);
        tx.undo.push(Undo::ChildRemoved(parent_path.clone(), name));

        tx.dirty.insert(path.to_string());
        tx.dirty.insert(parent_path.clone());
        tx.fired.push((path.to_string(), Trigger::Deleted));
        tx.fired.push((parent_path, Trigger::ChildrenChanged));
        Ok(())
    }

    fn check(&self, path: &str, expect: Expect) -> Result<()> {
        validate_path(path)?;
        let node = self.node(path)?;
        check_version(path, expect, node.stat.version)
    }

    fn apply(&mut self, tx: &mut Tx, session: i64, op: &Op) -> Result<OpResult> {
        match op {
            Op::Create {
                path,
                data,
                mode,
                acl,
            } => {
                if let Some(acl) = acl {
                    crate::acl::validate_acl(path, acl)?;
                }
                self.create(tx, session, path, data, *mode)
                    .map(OpResult::Created)
            }
            Op::Set { path, data, expect } => self.set(tx, path, data, *expect).map(OpResult::Set),
            Op::Delete { path, expect } => {
                self.delete(tx, path, *expect).map(|()| OpResult::Deleted)
            }
            Op::Check { path, expect } => self.check(path, *expect).map(|()| OpResult::Checked),
        }
    }

    fn rollback(&mut self, tx: Tx) {
        for undo in tx.undo.into_iter().rev() {
            match undo {
                Undo::Created(path) => {
                    self.nodes.remove(&path);
                }
                Undo::Deleted(path, node) => {
                    self.nodes.insert(path, node);
                }
                Undo::Stat(path, stat) => {
                    if let Some(n) = self.nodes.get_mut(&path) {
                        n.stat = stat;
                    }
                }
                Undo::Data(path, data) => {
                    if let Some(n) = self.nodes.get_mut(&path) {
                        n.data = data;
                    }
                }
                Undo::ChildAdded(parent, name) => {
                    if let Some(n) = self.nodes.get_mut(&parent) {
                        n.children.remove(&name);
                    }
                }
                Undo::ChildRemoved(parent, name) => {
                    if let Some(n) = self.nodes.get_mut(&parent) {
                        n.children.insert(name);
                    }
                }
            }
        }
    }

    /// Run a mutation as one transaction and return the watch deliveries to
    /// send once unlocked (also when it failed: syncing with other
    /// processes first may have fired some).
    ///
    /// `f` applies the change to the tree, recording undo and dirty paths;
    /// on any error the tree is rolled back. With a database, the dirty rows
    /// are written in one SQLite transaction; a storage failure rolls the
    /// tree back too, so memory never drifts from disk. Sharing a directory,
    /// `f` first runs against the cached tree without the write lock (a
    /// failing operation changes nothing and needs no lock); if it succeeds
    /// the write lock is taken, and should another process have written in
    /// between, the tree is reloaded and `f` runs again under the lock, so
    /// versions, sequence numbers and multi-ops keep ZooKeeper's semantics
    /// across processes.
    fn write<T>(
        &mut self,
        mut f: impl FnMut(&mut State, &mut Tx) -> Result<T>,
    ) -> (Result<T>, Deliveries) {
        let mut out = match self.sync() {
            Ok(d) => d,
            Err(e) => return (Err(e), Vec::new()),
        };
        let mut tx = Tx::default();
        let mut value = match f(self, &mut tx) {
            Ok(v) => v,
            Err(e) => {
                self.rollback(tx);
                return (Err(e), out);
            }
        };
        if self.db.is_none() || tx.dirty.is_empty() {
            out.extend(self.take_watches(&tx.fired));
            return (Ok(value), out);
        }
        let sharing = self.shared.is_some();
        let db = self.db.as_mut().expect("checked above");
        if let Err(e) = db.begin_write() {
            self.rollback(tx);
            return (Err(e), out);
        }
        if sharing {
            let stale = match db.seq() {
                Ok(seq) => seq != db.synced,
                Err(e) => {
                    db.rollback();
                    self.rollback(tx);
                    return (Err(e), out);
                }
            };
            if stale {
                self.rollback(tx);
                match self.reload() {
                    Ok(d) => out.extend(d),
                    Err(e) => {
                        self.db_mut().rollback();
                        return (Err(e), out);
                    }
                }
                tx = Tx::default();
                value = match f(self, &mut tx) {
                    Ok(v) => v,
                    Err(e) => {
                        self.rollback(tx);
                        self.db_mut().rollback();
                        return (Err(e), out);
                    }
                };
            }
        }
        let State { nodes, db, .. } = self;
        let db = db.as_mut().expect("checked above");
        let written = db.write_rows(nodes, &tx.dirty, sharing);
        match db.finish(written) {
            Ok(seq) => db.synced = seq,
            Err(e) => {
                // Reload before trusting the cache again.
                db.synced = -1;
                self.rollback(tx);
                return (Err(e), out);
            }
        }
        out.extend(self.take_watches(&tx.fired));
        (Ok(value), out)
    }

    fn db_mut(&mut self) -> &mut Db {
        self.db.as_mut().expect("a database")
    }

    fn take_watches(&mut self, fired: &[(String, Trigger)]) -> Deliveries {
        let mut out = Vec::new();
        let mut take =
            |map: &mut HashMap<String, Vec<Registration>>, path: &str, ev: WatchEvent| {
                if let Some(regs) = map.remove(path) {
                    out.extend(regs.into_iter().map(|r| (r.tx, ev)));
                }
            };
        for (path, trigger) in fired {
            match trigger {
                Trigger::Created => take(&mut self.data_watches, path, WatchEvent::NodeCreated),
                Trigger::DataChanged => {
                    take(&mut self.data_watches, path, WatchEvent::NodeDataChanged)
                }
                Trigger::Deleted => {
                    take(&mut self.data_watches, path, WatchEvent::NodeDeleted);
                    take(&mut self.child_watches, path, WatchEvent::NodeDeleted);
                }
                Trigger::ChildrenChanged => take(
                    &mut self.child_watches,
                    path,
                    WatchEvent::NodeChildrenChanged,
                ),
            }
        }
        out
    }

    fn register(map: &mut HashMap<String, Vec<Registration>>, session: i64, path: &str) -> Watch {
        let (tx, rx) = oneshot::channel();
        let regs = map.entry(path.to_string()).or_default();
        // Forget watches whose receiver is gone, so a caller that keeps
        // dropping watches on a quiet path does not grow the list forever.
        regs.retain(|r| !r.tx.is_closed());
        regs.push(Registration { session, tx });
        Watch::new(async move { rx.await.unwrap_or(WatchEvent::SessionClosed) })
    }

    /// End a session and return the watch deliveries to send once unlocked.
    ///
    /// Its ephemeral nodes are deleted (firing watches), its remaining
    /// watches resolve with `SessionExpired`/`SessionClosed`, its state
    /// becomes terminal. The order follows ZooKeeper: a closing client is
    /// still connected while the server deletes its ephemerals, so its own
    /// watches on them fire normally; an expired client is already gone, so
    /// all its watches end with the expiry.
    fn end_session(&mut self, id: i64, end: SessionState) -> Deliveries {
        let Some(entry) = self.sessions.remove(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if end == SessionState::Expired {
            out.extend(self.drop_watches_of(id, WatchEvent::SessionExpired));
        }

        // Ephemeral nodes never have children, so any deletion order works.
        // The list is taken inside the transaction: sharing a directory, the
        // tree may be reloaded before it runs.
        let (written, fired) = self.write(|st, tx| {
            let ephemerals: Vec<String> = st
                .nodes
                .iter()
                .filter(|(_, n)| n.stat.owner == id)
                .map(|(p, _)| p.clone())
                .collect();
            for path in &ephemerals {
                if let Err(e) = st.delete(tx, path, Expect::Any) {
                    tracing::error!(%path, error = %e, "could not delete ephemeral node of ended session");
                }
            }
            Ok(())
        });
        // The session ends regardless; sharing a directory, its nodes go
        // when this process's holder lock does (see `shared`).
        if let Err(e) = written {
            tracing::error!(error = %e, "could not delete the ephemeral nodes of an ended session");
        }
        out.extend(fired);

        out.extend(self.drop_watches_of(id, WatchEvent::SessionClosed));
        entry.state_tx.send_replace(end);
        out
    }

    /// Remove every pending watch of one session, resolving it with `why`.
    fn drop_watches_of(&mut self, id: i64, why: WatchEvent) -> Deliveries {
        let mut out = Vec::new();
        for map in [&mut self.data_watches, &mut self.child_watches] {
            for regs in map.values_mut() {
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(regs)
                    .into_iter()
                    .partition(|r| r.session == id);
                *regs = others;
                out.extend(mine.into_iter().map(|r| (r.tx, why)));
            }
            map.retain(|_, regs| !regs.is_empty());
        }
        out
    }
}

/// Lock the data dir: exclusively for an ensemble that owns it alone
/// (its tree is the truth, so a second writer would silently overwrite its
/// counters and nodes), shared for ensembles that share it.
fn lock_dir(dir: &Path, exclusive: bool) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CoordError::Backend(format!("open {}: {e}", path.display())))?;
    // flock conflicts between open files even within one process, so a
    // second `open` of the same dir here fails too. Released on close/exit.
    let how = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(CoordError::Backend(format!(
            "{} is in use by another coordination store ({err})",
            dir.display()
        )));
    }
    Ok(file)
}

impl MemEnsemble {
    /// A memory-only ensemble: everything is gone when the last handle drops.
    pub fn new() -> MemEnsemble {
        MemEnsemble::from_state(State::new(None))
    }

    /// An ensemble whose persistent znodes live in `dir/coord.sqlite3`
    /// (created if missing). Reopening restores every persistent node with its
    /// versions and child counters (so sequence numbers continue), but no
    /// ephemeral node. Only one ensemble may have a directory open at a time
    /// (enforced with an exclusive `flock` on `dir/coord.lock`).
    pub fn open(dir: &Path) -> Result<MemEnsemble> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CoordError::Backend(format!("create {}: {e}", dir.display())))?;
        let lock = lock_dir(dir, true)?;
        let mut db = Db::open(dir, SharedOptions::default())?;
        // Nodes of sharing processes that crashed: no session of theirs lives.
        db.begin_write()?;
        let dropped = db.drop_ephemeral_rows();
        db.finish(dropped)?;
        let nodes = db.load(false)?;
        let mut state = State::new(Some(db));
        state.nodes = nodes;
        state._dir_lock = Some(lock);
        Ok(MemEnsemble::from_state(state))
    }

    /// An ensemble over `dir/coord.sqlite3` that other processes (and other
    /// ensembles of this one) may open at the same time: SQLite is the truth,
    /// every mutation a write transaction checked against the latest state,
    /// reads never take the write lock, watches see other processes' changes
    /// within `options.poll_interval`, and ephemeral nodes are shared and
    /// disappear with their session or their process. See [`shared`].
    /// Refused while an exclusive ensemble ([`MemEnsemble::open`]) has it.
    pub fn open_shared(dir: &Path, options: SharedOptions) -> Result<MemEnsemble> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CoordError::Backend(format!("create {}: {e}", dir.display())))?;
        let lock = lock_dir(dir, false)?;
        let poll = options.poll_interval;
        let mut db = Db::open(dir, options)?;
        let nodes = db.load(true)?;
        let mut state = State::new(Some(db));
        state.nodes = nodes;
        state._dir_lock = Some(lock);
        state.shared = Some(shared::Holder::take(dir, state.next_session_id)?);
        // Ephemeral nodes of processes that are gone.
        let (reaped, deliveries) = state.reap();
        reaped?;
        fire(deliveries);
        let ensemble = MemEnsemble::from_state(state);
        shared::spawn_poller(Arc::downgrade(&ensemble.inner), poll);
        Ok(ensemble)
    }

    fn from_state(state: State) -> MemEnsemble {
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
        });
        MemEnsemble {
            release: Arc::new(Release(inner.clone())),
            inner,
        }
    }

    /// Open a new session.
    pub fn connect(&self) -> Arc<MemSession> {
        let mut st = self.inner.lock();
        let id = st.next_session_id;
        st.next_session_id += 1;
        let (state_tx, state_rx) = watch::channel(SessionState::Connected);
        st.sessions.insert(id, SessionEntry { state_tx });
        tracing::debug!(session = format_args!("{id:#x}"), "mem session opened");
        Arc::new(MemSession {
            ensemble: self.inner.clone(),
            id,
            state_rx,
            _release: self.release.clone(),
        })
    }

    /// Expire a session as the server would after its timeout: its handle
    /// reports `Expired` and fails every later call with `SessionExpired`,
    /// its pending watches resolve `SessionExpired`, its ephemeral nodes are
    /// deleted. Returns false if no such live session exists.
    pub fn expire_session(&self, id: i64) -> bool {
        let deliveries = {
            let mut st = self.inner.lock();
            if !st.sessions.contains_key(&id) {
                return false;
            }
            st.end_session(id, SessionState::Expired)
        };
        tracing::info!(session = format_args!("{id:#x}"), "mem session expired");
        fire(deliveries);
        true
    }

    /// Ids of the sessions that are currently alive, in ascending order.
    pub fn session_ids(&self) -> Vec<i64> {
        let st = self.inner.lock();
        let mut ids: Vec<i64> = st.sessions.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether this ensemble writes through to SQLite.
    pub fn is_persistent(&self) -> bool {
        self.inner.lock().db.is_some()
    }

    /// Whether other processes may share this ensemble's directory.
    pub fn is_shared(&self) -> bool {
        self.inner.lock().shared.is_some()
    }
}

impl Default for MemEnsemble {
    fn default() -> Self {
        MemEnsemble::new()
    }
}

impl std::fmt::Debug for MemEnsemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("MemEnsemble")
            .field("nodes", &st.nodes.len())
            .field("sessions", &st.sessions.len())
            .field("persistent", &st.db.is_some())
            .finish()
    }
}

/// A session on a [`MemEnsemble`]. Dropping the last handle closes it (as
/// dropping a ZooKeeper client does).
pub struct MemSession {
    ensemble: Arc<Inner>,
    id: i64,
    state_rx: watch::Receiver<SessionState>,
    /// Dropped after `Drop::drop` closed the session.
    _release: Arc<Release>,
}

impl std::fmt::Debug for MemSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemSession")
            .field("id", &format_args!("{:#x}", self.id))
            .field("state", &*self.state_rx.borrow())
            .finish()
    }
}

impl MemSession {
    fn dead_error(&self) -> CoordError {
        match *self.state_rx.borrow() {
            SessionState::Closed => CoordError::SessionClosed,
            _ => CoordError::SessionExpired,
        }
    }

    /// Run `f` under the lock if this session is still alive, on a tree
    /// brought up to date with other processes' writes first (which may fire
    /// watches). Never takes the store's write lock.
    fn read<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let (value, deliveries) = {
            let mut st = self.ensemble.lock();
            if !st.sessions.contains_key(&self.id) {
                return Err(self.dead_error());
            }
            let deliveries = st.sync()?;
            (f(&mut st), deliveries)
        };
        fire(deliveries);
        value
    }

    /// Run a mutation as one transaction (see `State::write`): rolled back
    /// on error, persisted and watches fired (after unlocking) on success.
    fn transact<T>(&self, f: impl FnMut(&mut State, &mut Tx) -> Result<T>) -> Result<T> {
        let (value, deliveries) = {
            let mut st = self.ensemble.lock();
            if !st.sessions.contains_key(&self.id) {
                return Err(self.dead_error());
            }
            st.write(f)
        };
        fire(deliveries);
        value
    }

    fn end(&self, why: SessionState) {
        let deliveries = self.ensemble.lock().end_session(self.id, why);
        fire(deliveries);
    }
}

impl Drop for MemSession {
    fn drop(&mut self) {
        self.end(SessionState::Closed);
    }
}

#[async_trait]
impl Coordination for MemSession {
    fn session_id(&self) -> i64 {
        self.id
    }

    fn session_state(&self) -> SessionState {
        *self.state_rx.borrow()
    }

    fn session_events(&self) -> watch::Receiver<SessionState> {
        self.state_rx.clone()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        let id = self.id;
        self.transact(|st, tx| st.create(tx, id, path, data, mode))
    }

    /// Checked and accepted, never stored nor enforced (see module docs).
    async fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: &[Acl],
    ) -> Result<String> {
        crate::acl::validate_acl(path, acl)?;
        self.create(path, data, mode).await
    }

    /// Checked, not stored (see module docs).
    async fn set_acl(&self, path: &str, acl: &[Acl], _expect: Expect) -> Result<()> {
        validate_path(path)?;
        crate::acl::validate_acl(path, acl)?;
        self.read(|st| st.node(path).map(|_| ()))
    }

    async fn get(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        validate_path(path)?;
        self.read(|st| {
            let n = st.node(path)?;
            Ok((n.data.clone(), n.stat()))
        })
    }

    async fn get_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch)> {
        validate_path(path)?;
        let id = self.id;
        self.read(|st| {
            let n = st.node(path)?;
            let (data, stat) = (n.data.clone(), n.stat());
            let watch = State::register(&mut st.data_watches, id, path);
            Ok((data, stat, watch))
        })
    }

    async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        validate_path(path)?;
        self.read(|st| Ok(st.nodes.get(path).map(Node::stat)))
    }

    async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, Watch)> {
        validate_path(path)?;
        let id = self.id;
        self.read(|st| {
            let stat = st.nodes.get(path).map(Node::stat);
            let watch = State::register(&mut st.data_watches, id, path);
            Ok((stat, watch))
        })
    }

    async fn set(&self, path: &str, data: &[u8], expect: Expect) -> Result<Stat> {
        self.transact(|st, tx| st.set(tx, path, data, expect))
    }

    async fn delete(&self, path: &str, expect: Expect) -> Result<()> {
        self.transact(|st, tx| st.delete(tx, path, expect))
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        self.read(|st| Ok(st.node(path)?.children.iter().cloned().collect()))
    }

    async fn children_watch(&self, path: &str) -> Result<(Vec<String>, Watch)> {
        validate_path(path)?;
        let id = self.id;
        self.read(|st| {
            let children = st.node(path)?.children.iter().cloned().collect();
            let watch = State::register(&mut st.child_watches, id, path);
            Ok((children, watch))
        })
    }

    async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        let id = self.id;
        self.transact(|st, tx| {
            let mut results = Vec::with_capacity(ops.len());
            for (index, op) in ops.iter().enumerate() {
                match st.apply(tx, id, op) {
                    Ok(r) => results.push(r),
                    Err(error) => {
                        return Err(CoordError::MultiFailed {
                            index,
                            error: Box::new(error),
                        });
                    }
                }
            }
            Ok(results)
        })
    }

    async fn close(&self) {
        self.end(SessionState::Closed);
    }
}
