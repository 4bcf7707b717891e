//! The SQLite file under a persisted ensemble.
//!
//! One row per znode (`znode`), and one change counter (`meta.seq`) that
//! every write transaction bumps. A process compares the counter with the
//! one its cached tree was loaded at to learn that another process wrote.
//!
//! Writers take SQLite's write lock with `BEGIN IMMEDIATE`; in WAL mode
//! readers never take it and never wait for it. A writer that finds the
//! lock held waits in short slices, reports the wait once through
//! [`SharedOptions::on_wait`], and gives up with [`CoordError::StoreBusy`]
//! after [`SharedOptions::write_timeout`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{ErrorCode, params};

use super::{Node, NodeStat, name_of, now_ms, root_node};
use crate::CoordError;
use crate::Result;
use crate::path::parent;

/// File name of the SQLite database inside the data directory.
pub const DB_FILE: &str = "coord.sqlite3";

/// Schema version stored in SQLite's `user_version`.
/// 1: `znode` without `owner`; 2: `owner` and the `meta.seq` change counter.
const SCHEMA_VERSION: i64 = 2;

/// How long one slice of a writer's wait for the lock lasts: a wait shorter
/// than this is not reported.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Called when a writer starts waiting for another process's write lock.
pub type OnWait = Arc<dyn Fn(&Path) + Send + Sync>;

/// How an ensemble shares its data directory with other processes
/// ([`super::MemEnsemble::open_shared`]).
#[derive(Clone)]
pub struct SharedOptions {
    /// How long a writer waits for another process's write lock.
    pub write_timeout: Duration,
    /// How often watches are checked against other processes' writes.
    pub poll_interval: Duration,
    /// Told (with the data directory) each time a writer has to wait.
    pub on_wait: Option<OnWait>,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions {
            write_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            on_wait: None,
        }
    }
}

impl std::fmt::Debug for SharedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedOptions")
            .field("write_timeout", &self.write_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("on_wait", &self.on_wait.is_some())
            .finish()
    }
}

pub(super) fn db_err(e: rusqlite::Error) -> CoordError {
    CoordError::Backend(format!("sqlite: {e}"))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

pub(super) struct Db {
    conn: rusqlite::Connection,
    dir: PathBuf,
    options: SharedOptions,
    /// The change counter the cached tree reflects.
    pub(super) synced: i64,
}

impl Db {
    /// Open (creating or upgrading) the database in `dir`.
    pub(super) fn open(dir: &Path, options: SharedOptions) -> Result<Db> {
        let file = dir.join(DB_FILE);
        let conn = rusqlite::Connection::open(&file)
            .map_err(|e| CoordError::Backend(format!("open {}: {e}", file.display())))?;
        let mut db = Db {
            conn,
            dir: dir.to_path_buf(),
            options,
            synced: -1,
        };
        // Opening waits like a writer: switching to WAL and creating the
        // schema write, and a concurrent first open may hold the lock.
        db.retry_busy(|conn| {
            // WAL + NORMAL: every committed mutation survives a process crash
            // (the failure we design for); only a power loss may drop the
            // newest commits. WAL lets readers run beside a writer.
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        })?;
        if db.user_version()? != SCHEMA_VERSION {
            db.begin_write()?;
            let r = db.migrate();
            db.finish(r)?;
        }
        Ok(db)
    }

    fn user_version(&mut self) -> Result<i64> {
        self.retry_busy(|conn| conn.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    /// Create or upgrade the schema, inside a write transaction.
    fn migrate(&mut self) -> Result<()> {
        let file = self.dir.join(DB_FILE);
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_err)?;
        let sql = match version {
            0 => {
                "CREATE TABLE IF NOT EXISTS znode (
                     path     TEXT PRIMARY KEY NOT NULL,
                     data     BLOB NOT NULL,
                     version  INTEGER NOT NULL,
                     child_creates INTEGER NOT NULL,
                     ctime_ms INTEGER NOT NULL,
                     mtime_ms INTEGER NOT NULL,
                     owner    INTEGER NOT NULL DEFAULT 0
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS meta (
                     key   TEXT PRIMARY KEY NOT NULL,
                     value INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);"
            }
            1 => {
                "ALTER TABLE znode ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
                 CREATE TABLE IF NOT EXISTS meta (
                     key   TEXT PRIMARY KEY NOT NULL,
                     value INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);"
            }
            // Another process upgraded it while we waited for the lock.
            SCHEMA_VERSION => return Ok(()),
            other => {
                return Err(CoordError::Backend(format!(
                    "{}: unknown schema version {other} (this build knows {SCHEMA_VERSION})",
                    file.display()
                )));
            }
        };
        self.conn.execute_batch(sql).map_err(db_err)?;
        self.conn
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(db_err)
    }

    /// Run `f`, waiting in slices while another process holds a lock it
    /// needs; the first slice that runs out is reported, the timeout is an
    /// error naming the directory.
    fn retry_busy<T>(
        &mut self,
        mut f: impl FnMut(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut told = false;
        loop {
            let left = self.options.write_timeout.saturating_sub(start.elapsed());
            self.conn
                .busy_timeout(left.min(WAIT_SLICE))
                .map_err(db_err)?;
            match f(&self.conn) {
                Ok(v) => return Ok(v),
                Err(e) if is_busy(&e) => {
                    if start.elapsed() >= self.options.write_timeout {
                        return Err(CoordError::StoreBusy {
                            dir: self.dir.display().to_string(),
                            waited_ms: start.elapsed().as_millis() as u64,
                        });
                    }
                    if !told {
                        told = true;
                        tracing::info!(dir = %self.dir.display(), "waiting for another process's write lock");
                        if let Some(on_wait) = &self.options.on_wait {
                            on_wait(&self.dir);
                        }
                    }
                }
                Err(e) => return Err(db_err(e)),
            }
        }
    }

    /// Take the write lock (`BEGIN IMMEDIATE`), waiting for it if needed.
    pub(super) fn begin_write(&mut self) -> Result<()> {
        self.retry_busy(|conn| conn.execute_batch("BEGIN IMMEDIATE"))
    }

    /// Commit the open write transaction when `r` is Ok, roll it back otherwise.
    pub(super) fn finish<T>(&mut self, r: Result<T>) -> Result<T> {
        match r {
            Ok(v) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(e) => {
                    self.rollback();
                    Err(db_err(e))
                }
            },
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    pub(super) fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "sqlite rollback failed");
        }
    }

    /// The change counter as of now (or as of the open transaction).
    pub(super) fn seq(&mut self) -> Result<i64> {
        self.retry_busy(|conn| {
            conn.query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))
        })
    }

    /// Write every dirty path's current state and bump the change counter,
    /// inside the open write transaction; returns the new counter. Ephemeral rows are written only
    /// when `ephemerals` (a shared directory: other processes see them).
    pub(super) fn write_rows(
        &mut self,
        nodes: &HashMap<String, Node>,
        dirty: &BTreeSet<String>,
        ephemerals: bool,
    ) -> Result<i64> {
        let conn = &self.conn;
        let run = || -> rusqlite::Result<i64> {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO znode (path, data, version, child_creates, ctime_ms, mtime_ms, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(path) DO UPDATE SET data = excluded.data,
                   version = excluded.version, child_creates = excluded.child_creates,
                   ctime_ms = excluded.ctime_ms, mtime_ms = excluded.mtime_ms,
                   owner = excluded.owner",
            )?;
            let mut remove = conn.prepare_cached("DELETE FROM znode WHERE path = ?1")?;
            for path in dirty {
                match nodes.get(path) {
                    Some(n) if n.stat.owner == 0 || ephemerals => {
                        upsert.execute(params![
                            path,
                            n.data,
                            n.stat.version,
                            n.stat.child_creates,
                            n.stat.ctime_ms,
                            n.stat.mtime_ms,
                            n.stat.owner
                        ])?;
                    }
                    _ => {
                        remove.execute(params![path])?;
                    }
                }
            }
            conn.query_row(
                "UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value",
                [],
                |r| r.get(0),
            )
        };
        run().map_err(db_err)
    }

    /// Forget ephemeral rows (an exclusive open: no other process is alive
    /// to own them; a crashed sharer may have left some).
    pub(super) fn drop_ephemeral_rows(&mut self) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM znode WHERE owner != 0", [])
            .map_err(db_err)?;
        if n > 0 {
            self.conn
                .execute("UPDATE meta SET value = value + 1 WHERE key = 'seq'", [])
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// The whole tree as stored, and the change counter it is at, read in
    /// one snapshot. Ephemeral rows are kept only when `ephemerals`.
    pub(super) fn load(&mut self, ephemerals: bool) -> Result<HashMap<String, Node>> {
        let file = self.dir.join(DB_FILE);
        let (seq, rows) = self.retry_busy(|conn| {
            // One snapshot: a transaction of its own, unless this runs
            // inside the writer's (a reload under the write lock).
            let txn = if conn.is_autocommit() {
                Some(conn.unchecked_transaction()?)
            } else {
                None
            };
            let seq: i64 =
                conn.query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))?;
            let mut stmt = conn.prepare_cached(
                "SELECT path, data, version, child_creates, ctime_ms, mtime_ms, owner FROM znode",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Node {
                            data: r.get(1)?,
                            stat: NodeStat {
                                version: r.get(2)?,
                                child_creates: r.get(3)?,
                                ctime_ms: r.get(4)?,
                                mtime_ms: r.get(5)?,
                                owner: r.get(6)?,
                            },
                            children: BTreeSet::new(),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            if let Some(txn) = txn {
                txn.finish()?;
            }
            Ok((seq, rows))
        })?;
        let mut nodes: HashMap<String, Node> = rows
            .into_iter()
            .filter(|(_, n)| ephemerals || n.stat.owner == 0)
            .collect();
        // The root row appears with the first change under "/".
        nodes
            .entry("/".to_string())
            .or_insert_with(|| root_node(now_ms()));
        let paths: Vec<String> = nodes.keys().filter(|p| *p != "/").cloned().collect();
        for path in paths {
            let parent_path = parent(&path).unwrap_or("/");
            match nodes.get_mut(parent_path) {
                Some(p) => {
                    p.children.insert(name_of(&path).to_string());
                }
                None => {
                    return Err(CoordError::Backend(format!(
                        "{}: node {path} has no parent {parent_path}",
                        file.display()
                    )));
                }
            }
        }
        self.synced = seq;
        Ok(nodes)
    }
}
