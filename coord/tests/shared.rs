//! What only a shared data directory (`MemEnsemble::open_shared`) has to
//! answer for: the write lock held by another process (a reported wait, then
//! a typed timeout), ephemeral nodes of a process that died without closing,
//! the exclusion of exclusive ensembles, and directories written by the
//! previous schema. The ZooKeeper semantics themselves are in
//! `conformance.rs` (`shared` and `shared_pair`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coord::{CoordError, Coordination, CreateMode, Expect, MemEnsemble, SharedOptions, WatchEvent};

const FIRE_WITHIN: Duration = Duration::from_secs(60);

fn options(write_timeout: Duration, waits: &Arc<AtomicUsize>) -> SharedOptions {
    let waits = waits.clone();
    SharedOptions {
        write_timeout,
        on_wait: Some(Arc::new(move |_: &Path| {
            waits.fetch_add(1, Ordering::SeqCst);
        })),
        ..Default::default()
    }
}

fn holders(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(coord::mem::shared::HOLDERS_DIR))
        .unwrap()
        .count()
}

fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(coord::mem::DB_FILE)).unwrap()
}

/// A writer that finds the write lock held reports the wait once and fails
/// with `StoreBusy` naming the directory, having changed nothing; readers
/// are served meanwhile; once the lock is free, writes go through.
#[tokio::test]
async fn a_held_write_lock_is_waited_for_reported_once_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let waits = Arc::new(AtomicUsize::new(0));
    let ens =
        MemEnsemble::open_shared(dir.path(), options(Duration::from_millis(400), &waits)).unwrap();
    assert!(ens.is_shared() && ens.is_persistent());
    let s = ens.connect();
    s.mkdirp("/d").await.unwrap();
    s.create("/d/x", b"x", CreateMode::Persistent)
        .await
        .unwrap();

    let holder = raw(dir.path());
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = s.set("/d/x", b"changed", Expect::Any).await.unwrap_err();
    match &err {
        CoordError::StoreBusy { dir: d, waited_ms } => {
            assert_eq!(d, &dir.path().display().to_string());
            assert!(*waited_ms >= 400, "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    assert_eq!(waits.load(Ordering::SeqCst), 1);
    // Reads need no lock; the failed write changed nothing.
    let (data, stat) = s.get("/d/x").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (&b"x"[..], 0));
    // A write that cannot succeed is answered without waiting.
    assert!(matches!(
        s.create("/d/x", b"", CreateMode::Persistent).await,
        Err(CoordError::NodeExists(_))
    ));
    assert_eq!(waits.load(Ordering::SeqCst), 1);

    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(
        s.set("/d/x", b"changed", Expect::Version(0))
            .await
            .unwrap()
            .version,
        1
    );
}

/// Run by `ephemeral_nodes_of_a_dead_process_are_removed` in a child
/// process: leave an ephemeral node and die without closing anything.
#[tokio::test]
async fn child_leaves_an_ephemeral_node_and_aborts() {
    let Some(dir) = std::env::var_os("COORD_SHARED_CHILD_DIR") else {
        return; // only meaningful as the child
    };
    let ens = MemEnsemble::open_shared(Path::new(&dir), SharedOptions::default()).unwrap();
    let s = ens.connect();
    s.mkdirp("/e").await.unwrap();
    s.create("/e/lock-", b"child", CreateMode::EphemeralSequential)
        .await
        .unwrap();
    s.create("/e/persistent", b"", CreateMode::Persistent)
        .await
        .unwrap();
    std::process::abort();
}

/// A process that dies holding ephemeral nodes loses them, as an expired
/// session would: a watcher in another process sees them go, and a process
/// opening the directory later never sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_nodes_of_a_dead_process_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let watcher_ens = MemEnsemble::open_shared(dir.path(), SharedOptions::default()).unwrap();
    let watcher = watcher_ens.connect();
    watcher.mkdirp("/e").await.unwrap();
    let (before, children) = watcher.children_watch("/e").await.unwrap();
    assert!(before.is_empty());

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_leaves_an_ephemeral_node_and_aborts",
            "--nocapture",
        ])
        .env("COORD_SHARED_CHILD_DIR", dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts");

    // The child's creates fire the watch; then its node goes once it is
    // found dead.
    assert_eq!(
        tokio::time::timeout(FIRE_WITHIN, children).await.unwrap(),
        WatchEvent::NodeChildrenChanged
    );
    let deadline = tokio::time::Instant::now() + FIRE_WITHIN;
    loop {
        let (mut kids, w) = watcher.children_watch("/e").await.unwrap();
        kids.sort();
        if kids == ["persistent"] {
            break;
        }
        assert_eq!(kids, ["lock-0000000000", "persistent"]);
        tokio::time::timeout_at(deadline, w)
            .await
            .expect("the dead process's ephemeral node is removed");
    }

    // Opening again: nothing of the child's but its persistent node, and
    // the sequence counter did not go back.
    drop((watcher, watcher_ens));
    let ens = MemEnsemble::open_shared(dir.path(), SharedOptions::default()).unwrap();
    let s = ens.connect();
    assert_eq!(s.children("/e").await.unwrap(), ["persistent"]);
    assert_eq!(
        s.create("/e/lock-", b"", CreateMode::EphemeralSequential)
            .await
            .unwrap(),
        "/e/lock-0000000002"
    );
    // Only this ensemble's lock file is left: the dead one's went with its node.
    assert_eq!(holders(dir.path()), 1);
}

/// Sharing and exclusive ensembles never have one directory at once.
#[tokio::test]
async fn shared_and_exclusive_ensembles_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let a = MemEnsemble::open_shared(dir.path(), SharedOptions::default()).unwrap();
    let b = MemEnsemble::open_shared(dir.path(), SharedOptions::default()).unwrap();
    let err = MemEnsemble::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    a.connect()
        .create("/kept", b"k", CreateMode::Persistent)
        .await
        .unwrap();
    b.connect()
        .create("/gone", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    drop((a, b));
    // Closed ensembles leave no lock file behind.
    assert_eq!(holders(dir.path()), 0);

    let ex = MemEnsemble::open(dir.path()).unwrap();
    let err = MemEnsemble::open_shared(dir.path(), SharedOptions::default()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    let s = ex.connect();
    assert_eq!(s.get("/kept").await.unwrap().0, b"k");
    assert_eq!(s.exists("/gone").await.unwrap(), None);
}

/// A directory written by the previous schema (no owner column, no change
/// counter) is upgraded in place and keeps its nodes.
#[tokio::test]
async fn a_schema_1_directory_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let conn = raw(dir.path());
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE znode (
             path     TEXT PRIMARY KEY NOT NULL,
             data     BLOB NOT NULL,
             version  INTEGER NOT NULL,
             child_creates INTEGER NOT NULL,
             ctime_ms INTEGER NOT NULL,
             mtime_ms INTEGER NOT NULL
         ) WITHOUT ROWID;
         INSERT INTO znode VALUES ('/', x'', 0, 3, 1, 1);
         INSERT INTO znode VALUES ('/old', x'6f6c64', 4, 0, 1, 2);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let ens = MemEnsemble::open_shared(dir.path(), SharedOptions::default()).unwrap();
    let s = ens.connect();
    let (data, stat) = s.get("/old").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (&b"old"[..], 4));
    assert_eq!(
        s.create("/s-", b"", CreateMode::PersistentSequential)
            .await
            .unwrap(),
        "/s-0000000003"
    );
    let v: i64 = raw(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
}
