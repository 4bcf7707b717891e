//! Several processes on one data directory ([`super::MemEnsemble::open_shared`]).
//!
//! - **Truth.** SQLite holds the tree, ephemeral nodes included; each
//!   process keeps a cache and the change counter it was loaded at
//!   (`meta.seq`, bumped by every write transaction).
//! - **Reads** compare the counter and reload the cache when another process
//!   wrote. In WAL mode they never take, nor wait for, the write lock.
//! - **Writes** run against the cache first; one that fails (a version
//!   mismatch, an existing node) changes nothing and is answered without the
//!   lock. One that succeeds takes the write lock (`BEGIN IMMEDIATE`), runs
//!   again on a reloaded tree if the counter moved meanwhile, writes its rows
//!   and bumps the counter in the same transaction. Versions, sequence
//!   counters and multi-ops therefore keep ZooKeeper's semantics across
//!   processes. A writer that has to wait reports it once and gives up with
//!   [`crate::CoordError::StoreBusy`] after its timeout.
//! - **Watches**: a reload compares the old and new trees and fires the
//!   watches the difference triggers; while any watch is armed, a poller
//!   thread checks the counter every `poll_interval`.
//! - **Ephemeral nodes** are rows owned by a session id whose high bits name
//!   the process's ensemble (its *holder*). Each holder keeps an exclusive
//!   `flock` on `holders/<token>` for its lifetime; the kernel drops it when
//!   the process dies, however it dies. Ensembles look for nodes whose holder
//!   lock is free when they open and about once a second, and delete them as
//!   an expiry would.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::{Deliveries, Expect, Inner, Node, State, Trigger, fire, now_ms};
use crate::{CoordError, Result};

/// Folder of holder lock files inside the data directory.
pub const HOLDERS_DIR: &str = "holders";

/// Low bits of a session id: the session's number within its ensemble.
const SESSION_BITS: u32 = 20;

/// How many poll intervals pass between looks for dead holders.
const REAP_EVERY: u32 = 20;

static ENSEMBLES: AtomicI64 = AtomicI64::new(0);

/// The first session id of a new ensemble: unique among ensembles alive at
/// the same time on one host (process id, ensemble number in the process)
/// and unlikely to repeat later (seconds). The bits above `SESSION_BITS` are
/// the ensemble's holder token.
pub(super) fn first_session_id() -> i64 {
    let pid = i64::from(std::process::id()) & 0x3f_ffff;
    let secs = (now_ms() / 1000) & 0xfff;
    let ensemble = ENSEMBLES.fetch_add(1, Ordering::Relaxed) & 0x3f;
    (1 << 60) | (pid << 38) | (secs << 26) | (ensemble << SESSION_BITS)
}

fn token_of(session: i64) -> i64 {
    session >> SESSION_BITS
}

fn holder_file(dir: &Path, token: i64) -> PathBuf {
    dir.join(HOLDERS_DIR).join(format!("{token:x}"))
}

/// Try to lock a file exclusively without waiting.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// This ensemble's claim on its sessions' ephemeral nodes.
pub(super) struct Holder {
    dir: PathBuf,
    token: i64,
    _lock: std::fs::File,
}

impl Holder {
    /// Lock `holders/<token>` for the ensemble whose first session is `first`.
    ///
    /// A sweeper (`sweep`) may remove a file between our create and our
    /// lock; the lock is ours only if the path still names the file we
    /// locked, so check and start over otherwise.
    pub(super) fn take(dir: &Path, first: i64) -> Result<Holder> {
        use std::os::unix::fs::MetadataExt;
        let token = token_of(first);
        let path = holder_file(dir, token);
        let io = |e: std::io::Error| CoordError::Backend(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir.join(HOLDERS_DIR)).map_err(io)?;
        for _ in 0..100 {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io)?;
            if !try_lock(&file) {
                return Err(CoordError::Backend(format!(
                    "{} is locked by another ensemble",
                    path.display()
                )));
            }
            let locked = file.metadata().map_err(io)?;
            match std::fs::metadata(&path) {
                Ok(named) if named.ino() == locked.ino() && named.dev() == locked.dev() => {
                    let holder = Holder {
                        dir: dir.to_path_buf(),
                        token,
                        _lock: file,
                    };
                    holder.sweep();
                    return Ok(holder);
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        Err(CoordError::Backend(format!(
            "{}: could not keep a lock file",
            path.display()
        )))
    }

    /// Remove the lock files of ensembles that are gone (a missing file
    /// means a dead holder too, so their nodes are still reaped).
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(HOLDERS_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(token) = entry
                .file_name()
                .to_str()
                .and_then(|n| i64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            if token == self.token {
                continue;
            }
            // Holding its lock, nobody else can be using it.
            if let Ok(f) = std::fs::File::open(entry.path())
                && try_lock(&f)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Whether the ensemble behind `token` is gone (its lock is free or its
    /// file missing).
    fn is_dead(&self, token: i64) -> bool {
        if token == self.token {
            return false;
        }
        match std::fs::File::open(holder_file(&self.dir, token)) {
            // Dropping the file releases the lock we just took.
            Ok(f) => try_lock(&f),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    fn forget(&self, token: i64) {
        let path = holder_file(&self.dir, token);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a dead holder's lock file");
        }
    }
}

impl Drop for Holder {
    /// Our sessions are closed (they keep the ensemble alive): remove the
    /// file while its lock is still ours.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(holder_file(&self.dir, self.token));
    }
}

/// The watch triggers that turn `old` into `new`.
fn diff(old: &HashMap<String, Node>, new: &HashMap<String, Node>) -> Vec<(String, Trigger)> {
    let mut fired = Vec::new();
    for (path, n) in new {
        match old.get(path) {
            None => fired.push((path.clone(), Trigger::Created)),
            Some(o) => {
                if o.stat.version != n.stat.version
                    || o.stat.ctime_ms != n.stat.ctime_ms
                    || o.stat.mtime_ms != n.stat.mtime_ms
                    || o.data != n.data
                {
                    fired.push((path.clone(), Trigger::DataChanged));
                }
                if o.children != n.children {
                    fired.push((path.clone(), Trigger::ChildrenChanged));
                }
            }
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            fired.push((path.clone(), Trigger::Deleted));
        }
    }
    fired
}

impl State {
    /// Bring the cached tree up to date with other processes' writes (a
    /// no-op unless sharing); returns the watch deliveries that causes.
    pub(super) fn sync(&mut self) -> Result<Deliveries> {
        if self.shared.is_none() {
            return Ok(Vec::new());
        }
        let db = self.db_mut();
        if db.seq()? == db.synced {
            return Ok(Vec::new());
        }
        self.reload()
    }

    /// Load the whole tree from SQLite and fire what changed.
    pub(super) fn reload(&mut self) -> Result<Deliveries> {
        let new = self.db_mut().load(true)?;
        let old = std::mem::replace(&mut self.nodes, new);
        let fired = diff(&old, &self.nodes);
        Ok(self.take_watches(&fired))
    }

    fn has_watches(&self) -> bool {
        !self.data_watches.is_empty() || !self.child_watches.is_empty()
    }

    /// Delete the ephemeral nodes whose holder is gone; returns how many.
    pub(super) fn reap(&mut self) -> (Result<usize>, Deliveries) {
        let Some(holder) = &self.shared else {
            return (Ok(0), Vec::new());
        };
        let dead: BTreeSet<i64> = self
            .nodes
            .values()
            .filter(|n| n.stat.owner != 0)
            .map(|n| token_of(n.stat.owner))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|t| holder.is_dead(*t))
            .collect();
        if dead.is_empty() {
            return (Ok(0), Vec::new());
        }
        let (r, out) = self.write(|st, tx| {
            let gone: Vec<String> = st
                .nodes
                .iter()
                .filter(|(_, n)| n.stat.owner != 0 && dead.contains(&token_of(n.stat.owner)))
                .map(|(p, _)| p.clone())
                .collect();
            for path in &gone {
                st.delete(tx, path, Expect::Any)?;
            }
            Ok(gone.len())
        });
        if r.is_ok()
            && let Some(holder) = &self.shared
        {
            for t in &dead {
                holder.forget(*t);
            }
            tracing::info!(
                holders = dead.len(),
                "removed the ephemeral nodes of ended processes"
            );
        }
        (r, out)
    }
}

/// While the ensemble lives: fire watches on other processes' writes, and
/// now and then remove the ephemeral nodes of processes that are gone.
pub(super) fn spawn_poller(inner: Weak<Inner>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("coord-shared-poll".into())
        .spawn(move || {
            let mut tick: u32 = 0;
            loop {
                std::thread::sleep(every);
                tick = tick.wrapping_add(1);
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let deliveries = {
                    let mut st = inner.lock();
                    if st.shared.is_none() {
                        return; // every handle is gone: the directory was let go
                    }
                    let mut out = Vec::new();
                    if st.has_watches() {
                        match st.sync() {
                            Ok(d) => out.extend(d),
                            Err(e) => tracing::warn!(error = %e, "could not check the shared store for changes"),
                        }
                    }
                    if tick.is_multiple_of(REAP_EVERY) {
                        let (r, d) = st.reap();
                        out.extend(d);
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "could not remove the ephemeral nodes of ended processes");
                        }
                    }
                    out
                };
                fire(deliveries);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the shared store's poller; watches see only this process's writes");
    }
}
