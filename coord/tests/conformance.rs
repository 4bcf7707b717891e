//! One conformance suite, five backends: the in-process ensemble in memory,
//! the in-process ensemble persisted to SQLite, the same with the directory
//! shared (`shared`: one ensemble; `shared_pair`: two ensembles on one
//! directory, sessions taken from each in turn, as two processes would), and
//! a real ZooKeeper (tests named `zk_*`, feature `testing`, one private
//! server per test).
//!
//! Every test body is written once against `Arc<dyn Coordination>` plus a
//! small `Backend` harness (new session, expire a session).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord::{
    CoordError, Coordination, CreateMode, Expect, MemEnsemble, Op, OpResult, SessionState, Watch,
    WatchEvent, split_sequence,
};
use tokio::time::timeout;

#[async_trait]
trait Backend: Send + Sync {
    async fn connect(&self) -> Arc<dyn Coordination>;
    /// Expire `session` from outside, as the ensemble would after its timeout.
    async fn expire(&self, session: &Arc<dyn Coordination>);
}

struct MemBackend {
    ensemble: MemEnsemble,
    /// A second ensemble on the same directory (`shared_pair`).
    second: Option<MemEnsemble>,
    turn: std::sync::atomic::AtomicUsize,
    _dir: Option<tempfile::TempDir>,
}

impl MemBackend {
    fn memory() -> MemBackend {
        MemBackend {
            ensemble: MemEnsemble::new(),
            second: None,
            turn: Default::default(),
            _dir: None,
        }
    }

    fn sqlite() -> MemBackend {
        let dir = tempfile::tempdir().unwrap();
        MemBackend {
            ensemble: MemEnsemble::open(dir.path()).unwrap(),
            second: None,
            turn: Default::default(),
            _dir: Some(dir),
        }
    }

    fn shared(pair: bool) -> MemBackend {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || MemEnsemble::open_shared(dir.path(), coord::SharedOptions::default()).unwrap();
        MemBackend {
            ensemble: open(),
            second: pair.then(open),
            turn: Default::default(),
            _dir: Some(dir),
        }
    }
}

#[async_trait]
impl Backend for MemBackend {
    async fn connect(&self) -> Arc<dyn Coordination> {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.second {
            Some(second) if turn % 2 == 1 => second.connect(),
            _ => self.ensemble.connect(),
        }
    }
    async fn expire(&self, session: &Arc<dyn Coordination>) {
        let id = session.session_id();
        let expired = self.ensemble.expire_session(id)
            || self.second.as_ref().is_some_and(|e| e.expire_session(id));
        assert!(expired);
    }
}

#[cfg(feature = "testing")]
struct ZkBackend {
    server: coord::testing::ZkServer,
    session_timeout: Duration,
    options: coord::ZkOptions,
    sessions: std::sync::Mutex<Vec<std::sync::Weak<coord::ZkCoordination>>>,
    /// Jute-forced backends keep their sessions, to show afterwards that
    /// the multis did go over the second session.
    kept: std::sync::Mutex<Vec<Arc<coord::ZkCoordination>>>,
}

#[cfg(feature = "testing")]
impl ZkBackend {
    async fn start() -> ZkBackend {
        ZkBackend::start_with(Duration::from_secs(2)).await
    }

    async fn start_with(session_timeout: Duration) -> ZkBackend {
        ZkBackend::start_with_options(session_timeout, coord::ZkOptions::default()).await
    }

    /// Every multi over the wire-protocol session (`coord::zk34`), the path
    /// a ZooKeeper 3.4 server gets for multis with a create.
    /// A longer session timeout than the suite's 2 s: these tests hold a
    /// leader-style session for a while, on a loaded 2-core machine.
    async fn start_jute() -> ZkBackend {
        ZkBackend::start_with_options(
            Duration::from_secs(6),
            coord::ZkOptions {
                multi_route: coord::MultiRoute::Jute,
                ..Default::default()
            },
        )
        .await
    }

    async fn start_with_options(session_timeout: Duration, options: coord::ZkOptions) -> ZkBackend {
        let server = coord::testing::ZkServer::start()
            .await
            .expect("start ZooKeeper");
        ZkBackend {
            server,
            session_timeout,
            options,
            sessions: std::sync::Mutex::new(Vec::new()),
            kept: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn connect_zk(&self) -> Arc<coord::ZkCoordination> {
        let s = coord::ZkCoordination::connect_with(
            &self.server.connect_string(),
            self.session_timeout,
            self.options.clone(),
        )
        .await
        .expect("connect to ZooKeeper");
        self.sessions.lock().unwrap().push(Arc::downgrade(&s));
        if self.options.multi_route == coord::MultiRoute::Jute {
            self.kept.lock().unwrap().push(s.clone());
        }
        s
    }

    /// Multis that went over second sessions, as (main, second) session ids.
    fn second_sessions(&self) -> Vec<(i64, i64)> {
        self.kept
            .lock()
            .unwrap()
            .iter()
            .map(|s| (s.session_id(), s.multi_session_info().session_id))
            .filter(|(_, second)| *second != 0)
            .collect()
    }
}

#[cfg(feature = "testing")]
#[async_trait]
impl Backend for ZkBackend {
    async fn connect(&self) -> Arc<dyn Coordination> {
        self.connect_zk().await
    }
    async fn expire(&self, session: &Arc<dyn Coordination>) {
        let id = session.session_id();
        let zk = self
            .sessions
            .lock()
            .unwrap()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|s| s.session_id() == id)
            .expect("session made by this backend");
        zk.expire_from_outside().await.expect("force expiry");
    }
}

// ---------------------------------------------------------------- helpers

const FIRE_WITHIN: Duration = Duration::from_secs(10);

async fn fired(watch: Watch) -> WatchEvent {
    timeout(FIRE_WITHIN, watch)
        .await
        .expect("watch did not fire in time")
}

async fn assert_pending(watch: &mut Watch) {
    if let Ok(ev) = timeout(Duration::from_millis(300), watch).await {
        panic!("watch fired unexpectedly with {ev:?}");
    }
}

fn is_no_node(r: &CoordError) -> bool {
    matches!(r, CoordError::NoNode(_))
}

// ------------------------------------------------------------- the suite

async fn crud_and_versions(b: &dyn Backend) {
    let s = b.connect().await;
    s.mkdirp("/t").await.unwrap();

    assert_eq!(
        s.create("/t/a", b"one", CreateMode::Persistent)
            .await
            .unwrap(),
        "/t/a"
    );
    let (data, st) = s.get("/t/a").await.unwrap();
    assert_eq!(data, b"one");
    assert_eq!(st.version, 0);
    assert_eq!(st.cversion, 0);
    assert_eq!(st.data_length, 3);
    assert_eq!(st.num_children, 0);
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(st.ctime_ms, st.mtime_ms);
    assert!(st.ctime_ms > 1_600_000_000_000, "ctime is epoch ms");
    assert_eq!(s.exists("/t/a").await.unwrap(), Some(st));

    let st1 = s.set("/t/a", b"two", Expect::Version(0)).await.unwrap();
    assert_eq!(st1.version, 1);
    assert!(st1.mtime_ms >= st1.ctime_ms);
    assert_eq!(st1.ctime_ms, st.ctime_ms);
    assert!(matches!(
        s.set("/t/a", b"stale", Expect::Version(0)).await,
        Err(CoordError::BadVersion(p)) if p == "/t/a"
    ));
    assert_eq!(s.get("/t/a").await.unwrap().0, b"two");
    let st2 = s.set("/t/a", b"", Expect::Any).await.unwrap();
    assert_eq!(st2.version, 2);
    assert_eq!(st2.data_length, 0);

    assert!(matches!(
        s.delete("/t/a", Expect::Version(1)).await,
        Err(CoordError::BadVersion(_))
    ));
    s.delete("/t/a", Expect::Version(2)).await.unwrap();
    assert!(is_no_node(&s.get("/t/a").await.unwrap_err()));
    assert_eq!(s.exists("/t/a").await.unwrap(), None);
    assert!(is_no_node(
        &s.set("/t/a", b"x", Expect::Any).await.unwrap_err()
    ));
    assert!(is_no_node(
        &s.delete("/t/a", Expect::Any).await.unwrap_err()
    ));
    assert!(is_no_node(&s.children("/t/a").await.unwrap_err()));

    // NodeExists / NoNode on create.
    s.create("/t/b", b"", CreateMode::Persistent).await.unwrap();
    assert!(matches!(
        s.create("/t/b", b"", CreateMode::Persistent).await,
        Err(CoordError::NodeExists(p)) if p == "/t/b"
    ));
    assert!(is_no_node(
        &s.create("/t/missing/x", b"", CreateMode::Persistent)
            .await
            .unwrap_err()
    ));

    // NotEmpty, child counters.
    s.create("/t/b/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert!(matches!(
        s.delete("/t/b", Expect::Any).await,
        Err(CoordError::NotEmpty(p)) if p == "/t/b"
    ));
    let st = s.exists("/t/b").await.unwrap().unwrap();
    assert_eq!((st.num_children, st.cversion, st.version), (1, 1, 0));
    assert_eq!(s.children("/t/b").await.unwrap(), vec!["c".to_string()]);
    s.delete("/t/b/c", Expect::Any).await.unwrap();
    let st = s.exists("/t/b").await.unwrap().unwrap();
    assert_eq!((st.num_children, st.cversion), (0, 2));
    s.delete("/t/b", Expect::Version(0)).await.unwrap();

    // A second session sees the same tree.
    let other = b.connect().await;
    assert_ne!(other.session_id(), s.session_id());
    assert_eq!(other.children("/t").await.unwrap(), Vec::<String>::new());

    // Bad paths never reach the server.
    for bad in ["", "t", "/t/", "/t//x", "/t/./x"] {
        assert!(
            matches!(s.get(bad).await, Err(CoordError::BadPath(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        s.create("/", b"", CreateMode::Persistent).await,
        Err(CoordError::NodeExists(_))
    ));
}

async fn sequential_names(b: &dyn Backend) {
    let s = b.connect().await;
    s.mkdirp("/t/seq").await.unwrap();
    let seq = |p: &'static str| s.create(p, b"", CreateMode::PersistentSequential);

    assert_eq!(seq("/t/seq/n-").await.unwrap(), "/t/seq/n-0000000000");
    assert_eq!(seq("/t/seq/n-").await.unwrap(), "/t/seq/n-0000000001");
    s.delete("/t/seq/n-0000000001", Expect::Any).await.unwrap();
    // The counter is the parent's number of child creates (ZooKeeper's
    // internal cversion): a deleted number is never handed out again ...
    assert_eq!(seq("/t/seq/n-").await.unwrap(), "/t/seq/n-0000000002");
    // ... while the visible cversion counts creates and deletes.
    assert_eq!(s.exists("/t/seq").await.unwrap().unwrap().cversion, 4);
    // One counter per parent, shared by every prefix.
    assert_eq!(seq("/t/seq/m-").await.unwrap(), "/t/seq/m-0000000003");
    let eph = s
        .create("/t/seq/e-", b"", CreateMode::EphemeralSequential)
        .await
        .unwrap();
    assert_eq!(eph, "/t/seq/e-0000000004");
    assert_eq!(split_sequence("e-0000000004"), Some(("e-", 4)));
    let st = s.exists(&eph).await.unwrap().unwrap();
    assert_eq!(st.ephemeral_owner, s.session_id());

    // A sequential path may end at the directory: the name is the counter.
    s.mkdirp("/t/q").await.unwrap();
    assert_eq!(seq("/t/q/").await.unwrap(), "/t/q/0000000000");

    let mut names = s.children("/t/seq").await.unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            "e-0000000004",
            "m-0000000003",
            "n-0000000000",
            "n-0000000002"
        ]
    );
}

async fn concurrent_sequential_unique(b: &dyn Backend) {
    let setup = b.connect().await;
    setup.mkdirp("/t/race").await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(b.connect().await);
    }

    // Phase 1: 4 sessions x 10 sequential creates, interleaved.
    let mut tasks = Vec::new();
    for s in &sessions {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for _ in 0..10 {
                made.push(
                    s.create("/t/race/x-", b"", CreateMode::EphemeralSequential)
                        .await
                        .unwrap(),
                );
            }
            made
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all.dedup();
    let expected: Vec<String> = (0..40).map(|i| format!("/t/race/x-{i:010}")).collect();
    assert_eq!(all, expected);

    // Phase 2: everyone races for one plain node; exactly one wins.
    let mut tasks = Vec::new();
    for s in &sessions {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create("/t/race/leader", b"", CreateMode::Persistent)
                .await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(CoordError::NodeExists(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners, 1);
}

async fn ephemeral_nodes_and_close(b: &dyn Backend) {
    let owner = b.connect().await;
    let other = b.connect().await;
    owner.mkdirp("/t").await.unwrap();
    owner
        .create("/t/e", b"mine", CreateMode::Ephemeral)
        .await
        .unwrap();
    let st = other.exists("/t/e").await.unwrap().unwrap();
    assert_eq!(st.ephemeral_owner, owner.session_id());

    // Ephemeral nodes may not have children (checked from either session).
    assert!(matches!(
        owner
            .create("/t/e/child", b"", CreateMode::Persistent)
            .await,
        Err(CoordError::NoChildrenForEphemerals(_))
    ));
    assert!(matches!(
        other.create("/t/e/child", b"", CreateMode::Ephemeral).await,
        Err(CoordError::NoChildrenForEphemerals(_))
    ));
    assert!(matches!(
        other.mkdirp("/t/e/a/b").await,
        Err(CoordError::NoChildrenForEphemerals(_))
    ));

    let (_, mut gone) = other.exists_watch("/t/e").await.unwrap();
    let (_, _, mut own_on_ephemeral) = owner.get_watch("/t/e").await.unwrap();
    let (_, _, own_elsewhere) = owner.get_watch("/t").await.unwrap();
    let (_, own_parent) = owner.children_watch("/t").await.unwrap();
    let mut events = owner.session_events();
    assert_eq!(owner.session_state(), SessionState::Connected);
    assert_pending(&mut gone).await;
    assert_pending(&mut own_on_ephemeral).await;

    owner.close().await;
    assert_eq!(fired(gone).await, WatchEvent::NodeDeleted);
    // As in ZooKeeper, a closing session is still connected while its
    // ephemerals are deleted, so its own watches on them fire normally;
    // its other watches end with the session.
    assert_eq!(fired(own_on_ephemeral).await, WatchEvent::NodeDeleted);
    assert_eq!(fired(own_parent).await, WatchEvent::NodeChildrenChanged);
    assert_eq!(fired(own_elsewhere).await, WatchEvent::SessionClosed);
    assert_eq!(other.exists("/t/e").await.unwrap(), None);
    assert_eq!(owner.session_state(), SessionState::Closed);
    let last = timeout(FIRE_WITHIN, events.wait_for(|s| s.is_terminal()))
        .await
        .expect("session events end")
        .map(|s| *s)
        .unwrap_or_else(|_| *events.borrow());
    assert_eq!(last, SessionState::Closed);
    assert_eq!(
        owner.get("/t").await.unwrap_err(),
        CoordError::SessionClosed
    );
    assert_eq!(
        owner
            .create("/t/again", b"", CreateMode::Persistent)
            .await
            .unwrap_err(),
        CoordError::SessionClosed
    );
    // Closing twice is harmless.
    owner.close().await;
}

async fn ephemeral_vanishes_on_expiry(b: &dyn Backend) {
    let owner = b.connect().await;
    let other = b.connect().await;
    owner.mkdirp("/t").await.unwrap();
    owner
        .create("/t/lock-", b"", CreateMode::EphemeralSequential)
        .await
        .unwrap();
    let name = owner.children("/t").await.unwrap().pop().unwrap();
    let path = format!("/t/{name}");
    let (_, watch) = other.children_watch("/t").await.unwrap();
    let (_, _, data_watch) = other.get_watch(&path).await.unwrap();

    b.expire(&owner).await;
    assert_eq!(fired(watch).await, WatchEvent::NodeChildrenChanged);
    assert_eq!(fired(data_watch).await, WatchEvent::NodeDeleted);
    assert_eq!(other.exists(&path).await.unwrap(), None);
    assert_eq!(other.children("/t").await.unwrap(), Vec::<String>::new());
}

async fn data_watches(b: &dyn Backend) {
    let s = b.connect().await;
    let writer = b.connect().await;
    s.mkdirp("/t/w").await.unwrap();

    // Data change fires once; a child change does not fire a data watch.
    let (_, _, mut w) = s.get_watch("/t/w").await.unwrap();
    writer
        .create("/t/w/kid", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_pending(&mut w).await;
    writer.set("/t/w", b"1", Expect::Any).await.unwrap();
    writer.set("/t/w", b"2", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDataChanged);

    // The watch is one-shot: a new one sees only later changes.
    let (data, _, w) = s.get_watch("/t/w").await.unwrap();
    assert_eq!(data, b"2");
    s.set("/t/w", b"3", Expect::Any).await.unwrap(); // own writes fire too
    assert_eq!(fired(w).await, WatchEvent::NodeDataChanged);

    // Deletion.
    let (_, _, w) = s.get_watch("/t/w/kid").await.unwrap();
    writer.delete("/t/w/kid", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDeleted);

    // get_watch on a missing node leaves no watch.
    assert!(is_no_node(&s.get_watch("/t/w/kid").await.unwrap_err()));

    // exists_watch: creation of a missing node ...
    let (none, w) = s.exists_watch("/t/w/new").await.unwrap();
    assert_eq!(none, None);
    writer
        .create("/t/w/new", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeCreated);
    // ... data change of an existing node ...
    let (some, w) = s.exists_watch("/t/w/new").await.unwrap();
    assert!(some.is_some());
    writer.set("/t/w/new", b"x", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDataChanged);
    // ... and its deletion.
    let (_, w) = s.exists_watch("/t/w/new").await.unwrap();
    writer.delete("/t/w/new", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDeleted);

    // Dropping an unfired watch is harmless and the session keeps working.
    let (_, _, dropped) = s.get_watch("/t/w").await.unwrap();
    drop(dropped);
    writer.set("/t/w", b"4", Expect::Any).await.unwrap();
    let (data, _, w) = s.get_watch("/t/w").await.unwrap();
    assert_eq!(data, b"4");
    writer.set("/t/w", b"5", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDataChanged);
}

async fn child_watches(b: &dyn Backend) {
    let s = b.connect().await;
    let writer = b.connect().await;
    s.mkdirp("/t/c").await.unwrap();

    let (kids, mut w) = s.children_watch("/t/c").await.unwrap();
    assert!(kids.is_empty());
    // Data changes do not fire child watches.
    writer.set("/t/c", b"data", Expect::Any).await.unwrap();
    assert_pending(&mut w).await;
    writer
        .create("/t/c/a", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeChildrenChanged);

    // Grandchildren are not children.
    let (kids, mut w) = s.children_watch("/t/c").await.unwrap();
    assert_eq!(kids, vec!["a".to_string()]);
    writer
        .create("/t/c/a/deep", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_pending(&mut w).await;
    writer.delete("/t/c/a/deep", Expect::Any).await.unwrap();
    writer.delete("/t/c/a", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeChildrenChanged);

    // Deleting the watched node itself.
    let (_, w) = s.children_watch("/t/c").await.unwrap();
    writer.delete("/t/c", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDeleted);

    assert!(is_no_node(&s.children_watch("/t/c").await.unwrap_err()));
}

async fn multi_is_atomic(b: &dyn Backend) {
    let s = b.connect().await;
    let watcher = b.connect().await;
    s.mkdirp("/t/m").await.unwrap();
    s.create("/t/m/x", b"x0", CreateMode::Persistent)
        .await
        .unwrap();

    // A failing check at index 2 leaves ops 0 and 1 unapplied.
    let err = s
        .multi(vec![
            Op::create("/t/m/a", "a", CreateMode::Persistent),
            Op::set("/t/m/x", "x1", Expect::Version(0)),
            Op::check("/t/m/x", Expect::Version(7)),
        ])
        .await
        .unwrap_err();
    match &err {
        CoordError::MultiFailed { index, error } => {
            assert_eq!(*index, 2);
            assert!(matches!(**error, CoordError::BadVersion(_)), "{error:?}");
        }
        other => panic!("expected MultiFailed, got {other:?}"),
    }
    assert!(matches!(err.root(), CoordError::BadVersion(_)));
    assert_eq!(s.exists("/t/m/a").await.unwrap(), None);
    let (data, st) = s.get("/t/m/x").await.unwrap();
    assert_eq!((data.as_slice(), st.version), (&b"x0"[..], 0));

    // The same with a stale set version and with a missing node.
    let err = s
        .multi(vec![
            Op::create("/t/m/a", "a", CreateMode::Persistent),
            Op::create("/t/m/b", "b", CreateMode::Persistent),
            Op::set("/t/m/x", "x1", Expect::Version(3)),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoordError::MultiFailed { index: 2, .. }),
        "{err:?}"
    );
    let err = s
        .multi(vec![
            Op::create("/t/m/a", "a", CreateMode::Persistent),
            Op::delete("/t/m/nope", Expect::Any),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoordError::MultiFailed { index: 1, error } if is_no_node(error)),
        "{err:?}"
    );
    assert_eq!(s.children("/t/m").await.unwrap(), vec!["x".to_string()]);
    // Failed multis did not advance the parent's counters.
    assert_eq!(s.exists("/t/m").await.unwrap().unwrap().cversion, 1);

    // Success: all applied, results in order, later ops see earlier ones,
    // and watches fire only once everything is visible.
    let (_, _, wx) = watcher.get_watch("/t/m/x").await.unwrap();
    let (_, wa) = watcher.exists_watch("/t/m/a").await.unwrap();
    let results = s
        .multi(vec![
            Op::create("/t/m/a", "a", CreateMode::Persistent),
            Op::create("/t/m/s-", "", CreateMode::PersistentSequential),
            Op::set("/t/m/x", "x1", Expect::Version(0)),
            Op::check("/t/m/x", Expect::Version(1)),
            Op::create("/t/m/a/child", "", CreateMode::Persistent),
            Op::delete("/t/m/a/child", Expect::Version(0)),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(results[0], OpResult::Created("/t/m/a".into()));
    assert_eq!(results[1], OpResult::Created("/t/m/s-0000000002".into()));
    match &results[2] {
        OpResult::Set(st) => assert_eq!(st.version, 1),
        other => panic!("expected Set, got {other:?}"),
    }
    assert_eq!(results[3], OpResult::Checked);
    assert_eq!(results[4], OpResult::Created("/t/m/a/child".into()));
    assert_eq!(results[5], OpResult::Deleted);
    assert_eq!(fired(wx).await, WatchEvent::NodeDataChanged);
    assert_eq!(fired(wa).await, WatchEvent::NodeCreated);
    let mut kids = watcher.children("/t/m").await.unwrap();
    kids.sort();
    assert_eq!(kids, ["a", "s-0000000002", "x"]);
    assert_eq!(watcher.get("/t/m/x").await.unwrap().0, b"x1");

    // Nothing to do is not an error.
    assert_eq!(s.multi(Vec::new()).await.unwrap(), Vec::new());

    // A late failure undoes every kind of earlier change: data and version
    // of a set, a delete, nested creates, the parents' counters.
    let parent_before = s.exists("/t/m").await.unwrap().unwrap();
    let x_before = s.get("/t/m/x").await.unwrap();
    let (_, mut quiet) = watcher.children_watch("/t/m").await.unwrap();
    let err = s
        .multi(vec![
            Op::set("/t/m/x", "changed", Expect::Any),
            Op::delete("/t/m/s-0000000002", Expect::Any),
            Op::create("/t/m/z", "", CreateMode::Persistent),
            Op::create("/t/m/z/child", "", CreateMode::Persistent),
            Op::check("/t/m/x", Expect::Version(x_before.1.version)),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoordError::MultiFailed { index: 4, error } if matches!(**error, CoordError::BadVersion(_))),
        "{err:?}"
    );
    assert_eq!(s.get("/t/m/x").await.unwrap(), x_before);
    assert!(s.exists("/t/m/s-0000000002").await.unwrap().is_some());
    assert_eq!(s.exists("/t/m/z").await.unwrap(), None);
    assert_eq!(s.exists("/t/m").await.unwrap().unwrap(), parent_before);
    assert_pending(&mut quiet).await;
    // The counter did not move either: the next sequence number follows on.
    assert_eq!(
        s.create("/t/m/s-", b"", CreateMode::PersistentSequential)
            .await
            .unwrap(),
        "/t/m/s-0000000003"
    );
    assert_eq!(fired(quiet).await, WatchEvent::NodeChildrenChanged);
}

async fn session_expiry_is_terminal(b: &dyn Backend) {
    let s = b.connect().await;
    let id = s.session_id();
    s.mkdirp("/t/eph").await.unwrap();
    s.create("/t/eph/mine", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    // Watches away from the ephemeral, so its deletion cannot fire them.
    let (_, _, pending) = s.get_watch("/t").await.unwrap();
    let (_, pending_children) = s.children_watch("/t").await.unwrap();
    let mut events = s.session_events();
    assert_eq!(*events.borrow(), SessionState::Connected);

    b.expire(&s).await;

    assert_eq!(fired(pending).await, WatchEvent::SessionExpired);
    assert_eq!(fired(pending_children).await, WatchEvent::SessionExpired);
    let last = timeout(FIRE_WITHIN, events.wait_for(|st| st.is_terminal()))
        .await
        .expect("session events reach a terminal state")
        .map(|st| *st)
        .unwrap_or_else(|_| *events.borrow());
    assert_eq!(last, SessionState::Expired);
    assert_eq!(s.session_state(), SessionState::Expired);

    // Give a would-be silent reconnect a chance to happen; it must not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expired = |r: Result<(), CoordError>| {
        assert_eq!(r.unwrap_err(), CoordError::SessionExpired);
    };
    expired(s.get("/t").await.map(drop));
    expired(s.get_watch("/t").await.map(drop));
    expired(s.exists("/t").await.map(drop));
    expired(s.exists_watch("/t").await.map(drop));
    expired(s.children("/t").await.map(drop));
    expired(s.children_watch("/t").await.map(drop));
    expired(
        s.create("/t/x", b"", CreateMode::Persistent)
            .await
            .map(drop),
    );
    expired(s.set("/t", b"", Expect::Any).await.map(drop));
    expired(s.delete("/t", Expect::Any).await);
    expired(s.multi(vec![Op::check("/t", Expect::Any)]).await.map(drop));
    expired(s.mkdirp("/t/y").await);
    assert!(s.get("/t").await.unwrap_err().is_session_lost());
    assert_eq!(s.session_id(), id);
    assert_eq!(s.session_state(), SessionState::Expired);

    // A new session is needed to continue; the ephemeral is gone.
    let fresh = b.connect().await;
    assert_ne!(fresh.session_id(), id);
    assert_eq!(fresh.exists("/t/eph/mine").await.unwrap(), None);
    fresh
        .create("/t/eph/mine", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    s.close().await; // closing an expired handle is harmless
    assert_eq!(s.session_state(), SessionState::Expired);
}

async fn mkdirp_creates_missing_ancestors(b: &dyn Backend) {
    let s = b.connect().await;
    s.mkdirp("/").await.unwrap();
    s.mkdirp("/a/b/c").await.unwrap();
    for p in ["/a", "/a/b", "/a/b/c"] {
        let st = s.exists(p).await.unwrap().unwrap();
        assert_eq!(st.ephemeral_owner, 0, "{p}");
    }
    s.set("/a/b", b"keep", Expect::Any).await.unwrap();
    s.mkdirp("/a/b/c/d").await.unwrap();
    s.mkdirp("/a/b").await.unwrap();
    let (data, st) = s.get("/a/b").await.unwrap();
    assert_eq!((data.as_slice(), st.version), (&b"keep"[..], 1));
    assert!(s.exists("/a/b/c/d").await.unwrap().is_some());
    assert!(matches!(
        s.mkdirp("relative/x").await,
        Err(CoordError::BadPath(_))
    ));
}

/// ACLs every backend takes: a create with an ACL (plain and inside a
/// multi), the checks ZooKeeper makes on the list (`InvalidAcl` for an
/// empty one, nothing applied), getACL of an open node, setACL on a missing
/// node. Enforcement is ZooKeeper's own (`zk_acl.rs`); the embedded store
/// enforces none (see `coord::mem`).
async fn acls_are_taken_and_checked(b: &dyn Backend) {
    use coord::{Acl, Id, Perms};
    let s = b.connect().await;
    let open = vec![Acl::new(Perms::ALL, Id::anyone())];
    s.create_with_acl("/acl", b"x", CreateMode::Persistent, &open)
        .await
        .unwrap();
    assert_eq!(s.get("/acl").await.unwrap().0, b"x");
    let (acl, stat) = s.get_acl("/acl").await.unwrap();
    assert_eq!(acl, open);
    assert_eq!(stat.data_length, 1);
    let err = s
        .create_with_acl("/acl/empty", b"", CreateMode::Persistent, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::InvalidAcl(_)), "{err:?}");
    assert_eq!(s.exists("/acl/empty").await.unwrap(), None);
    let results = s
        .multi(vec![
            Op::create_with_acl("/acl/m", "", CreateMode::Persistent, open.clone()),
            Op::create("/acl/n", "", CreateMode::Persistent),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], OpResult::Created("/acl/m".into()));
    let err = s
        .multi(vec![
            Op::create("/acl/o", "", CreateMode::Persistent),
            Op::create_with_acl("/acl/p", "", CreateMode::Persistent, Vec::new()),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoordError::MultiFailed { index: 1, error } if matches!(**error, CoordError::InvalidAcl(_))),
        "{err:?}"
    );
    assert_eq!(s.exists("/acl/o").await.unwrap(), None);
    s.set_acl("/acl/m", &open, Expect::Any).await.unwrap();
    assert!(is_no_node(
        &s.set_acl("/acl/none", &open, Expect::Any)
            .await
            .unwrap_err()
    ));
    assert!(is_no_node(&s.get_acl("/acl/none").await.unwrap_err()));
}

macro_rules! suite {
    ($($body:ident => $zk:ident),* $(,)?) => {
        mod mem {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    super::$body(&super::MemBackend::memory()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    super::$body(&super::MemBackend::sqlite()).await;
                }
            )*
        }
        mod shared {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    super::$body(&super::MemBackend::shared(false)).await;
                }
            )*
        }
        mod shared_pair {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    super::$body(&super::MemBackend::shared(true)).await;
                }
            )*
        }
        #[cfg(feature = "testing")]
        mod zk {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $zk() {
                    let backend = super::ZkBackend::start().await;
                    super::$body(&backend).await;
                }
            )*
        }
    };
}

suite! {
    crud_and_versions => zk_crud_and_versions,
    sequential_names => zk_sequential_names,
    concurrent_sequential_unique => zk_concurrent_sequential_unique,
    ephemeral_nodes_and_close => zk_ephemeral_nodes_and_close,
    ephemeral_vanishes_on_expiry => zk_ephemeral_vanishes_on_expiry,
    data_watches => zk_data_watches,
    child_watches => zk_child_watches,
    multi_is_atomic => zk_multi_is_atomic,
    session_expiry_is_terminal => zk_session_expiry_is_terminal,
    mkdirp_creates_missing_ancestors => zk_mkdirp_creates_missing_ancestors,
    acls_are_taken_and_checked => zk_acls_are_taken_and_checked,
}

/// The suite's multi cases with every multi over the wire-protocol session
/// (`coord::zk34`: plain CREATE in the multi, as a 3.4 server needs),
/// against the real ZooKeeper, so both paths answer to the same semantics.
#[cfg(feature = "testing")]
mod zk_jute {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zk_jute_multi_is_atomic() {
        let backend = ZkBackend::start_jute().await;
        multi_is_atomic(&backend).await;
        let used = backend.second_sessions();
        assert!(!used.is_empty(), "no multi went over a second session");
        assert!(used.iter().all(|(main, second)| main != second), "{used:?}");
    }

    /// After expiry a multi fails with `SessionExpired` on this path too:
    /// the second session is never used for a dead main session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zk_jute_session_expiry_is_terminal() {
        let backend = ZkBackend::start_jute().await;
        session_expiry_is_terminal(&backend).await;
        assert!(backend.second_sessions().is_empty());
    }

    /// The store's shape: fence check + create + set in one multi. It
    /// succeeds while the fence holds, the main session reads it at once,
    /// and once the fence node is gone nothing of it applies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zk_jute_fenced_store_write() {
        let backend = ZkBackend::start_jute().await;
        let leader = backend.connect_zk().await;
        let other = backend.connect().await;
        leader.mkdirp("/tritonctl/v1/leader").await.unwrap();
        leader.mkdirp("/tritonctl/v1/docs").await.unwrap();
        leader
            .create("/tritonctl/v1/status", b"s0", CreateMode::Persistent)
            .await
            .unwrap();
        let fence = leader
            .create(
                "/tritonctl/v1/leader/n-",
                b"me",
                CreateMode::EphemeralSequential,
            )
            .await
            .unwrap();

        let results = leader
            .multi(vec![
                Op::check(&fence, Expect::Version(0)),
                Op::create("/tritonctl/v1/docs/a", "doc-a", CreateMode::Persistent),
                Op::set("/tritonctl/v1/status", "s1", Expect::Version(0)),
            ])
            .await
            .unwrap();
        assert_eq!(results[0], OpResult::Checked);
        assert_eq!(results[1], OpResult::Created("/tritonctl/v1/docs/a".into()));
        assert!(matches!(&results[2], OpResult::Set(st) if st.version == 1));
        // Read-your-writes on the main session, right away.
        let (doc, st) = leader.get("/tritonctl/v1/docs/a").await.unwrap();
        assert_eq!((doc.as_slice(), st.ephemeral_owner), (&b"doc-a"[..], 0));
        let (status, st) = leader.get("/tritonctl/v1/status").await.unwrap();
        assert_eq!((status.as_slice(), st.version), (&b"s1"[..], 1));
        let info = leader.multi_session_info();
        assert!(info.session_id != 0 && info.session_id != leader.session_id());

        // A stale status version fails at its index and applies nothing.
        let err = leader
            .multi(vec![
                Op::check(&fence, Expect::Version(0)),
                Op::create("/tritonctl/v1/docs/b", "doc-b", CreateMode::Persistent),
                Op::set("/tritonctl/v1/status", "s2", Expect::Version(0)),
            ])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CoordError::MultiFailed { index: 2, error } if matches!(**error, CoordError::BadVersion(_))),
            "{err:?}"
        );
        assert_eq!(leader.exists("/tritonctl/v1/docs/b").await.unwrap(), None);

        // Leadership lost (the fence node gone): the write fails at the check.
        other.delete(&fence, Expect::Any).await.unwrap();
        let err = leader
            .multi(vec![
                Op::check(&fence, Expect::Version(0)),
                Op::create("/tritonctl/v1/docs/b", "doc-b", CreateMode::Persistent),
                Op::set("/tritonctl/v1/status", "s2", Expect::Version(1)),
            ])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            CoordError::MultiFailed {
                index: 0,
                error: Box::new(CoordError::NoNode(fence.clone()))
            }
        );
        assert_eq!(other.exists("/tritonctl/v1/docs/b").await.unwrap(), None);
        assert_eq!(other.get("/tritonctl/v1/status").await.unwrap().0, b"s1");
        // Ephemeral creates are refused on this path, before sending.
        let err = leader
            .multi(vec![Op::create(
                "/tritonctl/v1/leader/n-",
                "",
                CreateMode::EphemeralSequential,
            )])
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordError::MultiFailed { index: 0, .. }),
            "{err:?}"
        );
        leader.close().await;
    }

    /// A server restart drops the second session's connection; the next
    /// multi re-attaches to the same session (ZooKeeper keeps sessions
    /// across a restart within their timeout).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zk_jute_second_session_reattaches_after_server_restart() {
        let mut backend = ZkBackend::start_with_options(
            Duration::from_secs(8),
            coord::ZkOptions {
                multi_route: coord::MultiRoute::Jute,
                ..Default::default()
            },
        )
        .await;
        let s = backend.connect_zk().await;
        s.multi(vec![Op::create("/r1", "", CreateMode::Persistent)])
            .await
            .unwrap();
        let before = s.multi_session_info();
        assert!(before.connected);
        backend.server.restart().await.unwrap();
        // Conditions, not sleeps: the second session saw its connection
        // end, and the main session has answered a call since the restart.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while s.multi_session_info().connected {
            assert!(tokio::time::Instant::now() < deadline, "drop not noticed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while s.exists("/r1").await.is_err() || s.session_state() != SessionState::Connected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "main session not back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.multi(vec![Op::create("/r2", "", CreateMode::Persistent)])
            .await
            .unwrap();
        let after = s.multi_session_info();
        assert_eq!(after.session_id, before.session_id);
        assert_eq!(after.connections, before.connections + 1, "{after:?}");
        assert!(s.exists("/r2").await.unwrap().is_some());
        s.close().await;
    }

    /// Pings keep the second session alive past its timeout while idle: the
    /// next multi goes over the same session and connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zk_jute_pings_keep_the_second_session_alive() {
        let backend = ZkBackend::start_with_options(
            Duration::from_secs(4),
            coord::ZkOptions {
                multi_route: coord::MultiRoute::Jute,
                ..Default::default()
            },
        )
        .await;
        let s = backend.connect_zk().await;
        s.multi(vec![Op::create("/p1", "", CreateMode::Persistent)])
            .await
            .unwrap();
        let first = s.multi_session_info();
        // Pings go every third of the granted timeout: six of them span two
        // timeouts, long enough for an unpinged session to expire.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while s.multi_session_info().pings < first.pings + 6 {
            assert!(tokio::time::Instant::now() < deadline, "pings stopped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.multi(vec![Op::create("/p2", "", CreateMode::Persistent)])
            .await
            .unwrap();
        let after = s.multi_session_info();
        assert_eq!(after.session_id, first.session_id);
        assert_eq!(after.connections, 1, "{after:?}");
        s.close().await;
    }
}

// ------------------------------------------------- backend-specific tests

/// Persistent znodes, their versions and child counters survive a reopen
/// (including a "crash" with a live session); ephemeral nodes do not.
#[tokio::test]
async fn sqlite_reopen_keeps_persistent_nodes_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (before_a, crashed) = {
        let ens = MemEnsemble::open(dir.path()).unwrap();
        assert!(ens.is_persistent());
        let s = ens.connect();
        s.mkdirp("/p").await.unwrap();
        s.create("/p/a", b"v0", CreateMode::Persistent)
            .await
            .unwrap();
        s.set("/p/a", b"v1", Expect::Any).await.unwrap();
        s.set("/p/a", b"v2", Expect::Any).await.unwrap();
        for _ in 0..3 {
            s.create("/p/s-", b"", CreateMode::PersistentSequential)
                .await
                .unwrap();
        }
        s.delete("/p/s-0000000003", Expect::Any).await.unwrap();
        s.create("/p/e", b"", CreateMode::Ephemeral).await.unwrap();
        let es = s
            .create("/p/es-", b"", CreateMode::EphemeralSequential)
            .await
            .unwrap();
        assert_eq!(es, "/p/es-0000000005");
        s.multi(vec![Op::create("/p/m", "m", CreateMode::Persistent)])
            .await
            .unwrap();
        s.multi(vec![
            Op::create("/p/never", "", CreateMode::Persistent),
            Op::check("/p/a", Expect::Version(0)),
        ])
        .await
        .unwrap_err();
        // 7 child creates and 6 children left: cversion 2*7-6.
        let before_p = s.exists("/p").await.unwrap().unwrap();
        assert_eq!((before_p.cversion, before_p.num_children), (8, 6));

        let before_a = s.get("/p/a").await.unwrap();

        // A second store may not share the directory ...
        let err = MemEnsemble::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        // ... so simulate a crash by copying the files as they are now,
        // with the session still alive, and opening the copy.
        let crashed = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), crashed.path().join(entry.file_name())).unwrap();
        }
        drop((s, ens));
        let again = MemEnsemble::open(crashed.path()).unwrap();
        let r = again.connect();
        assert_eq!(r.exists("/p/e").await.unwrap(), None);
        assert_eq!(r.exists("/p/never").await.unwrap(), None);
        let mut kids = r.children("/p").await.unwrap();
        kids.sort();
        assert_eq!(kids, ["a", "m", "s-0000000001", "s-0000000002"]);
        // The ephemerals are gone as if deleted: cversion 2*7-4.
        let after_p = r.exists("/p").await.unwrap().unwrap();
        assert_eq!((after_p.cversion, after_p.num_children), (10, 4));
        // Ephemeral creates advanced the counter too: no number is reused.
        assert_eq!(
            r.create("/p/s-", b"", CreateMode::PersistentSequential)
                .await
                .unwrap(),
            "/p/s-0000000007"
        );
        assert_eq!(r.get("/p/a").await.unwrap(), before_a);
        r.delete("/p/s-0000000007", Expect::Any).await.unwrap();
        drop((r, again));
        (before_a, crashed)
    };
    drop(dir);

    // Clean reopen after the second run closed normally.
    let ens = MemEnsemble::open(crashed.path()).unwrap();
    let s = ens.connect();
    let (data, st) = s.get("/p/a").await.unwrap();
    assert_eq!(data, b"v2");
    assert_eq!(st, before_a.1);
    assert_eq!(st.version, 2);
    assert_eq!(s.get("/p/m").await.unwrap().0, b"m");
    assert_eq!(s.exists("/p/e").await.unwrap(), None);
    let p = s.exists("/p").await.unwrap().unwrap();
    // 8 creates (one by the second run), 4 children.
    assert_eq!((p.cversion, p.num_children), (12, 4));
    assert_eq!(
        s.create("/p/s-", b"", CreateMode::PersistentSequential)
            .await
            .unwrap(),
        "/p/s-0000000008"
    );
    assert_eq!(s.exists("/").await.unwrap().unwrap().num_children, 1);
}

#[tokio::test]
async fn sqlite_open_rejects_unknown_schema() {
    let dir = tempfile::tempdir().unwrap();
    drop(MemEnsemble::open(dir.path()).unwrap());
    set_user_version(dir.path(), 99);
    let err = MemEnsemble::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

fn set_user_version(dir: &std::path::Path, v: i64) {
    // Touch the file through SQLite itself to simulate a future format.
    let conn = rusqlite::Connection::open(dir.join(coord::mem::DB_FILE)).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {v}"))
        .unwrap();
}

/// A failed SQLite write fails the call and leaves memory exactly as disk:
/// nothing applied, no watch fired, counters untouched.
#[tokio::test]
async fn sqlite_write_failure_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let ens = MemEnsemble::open(dir.path()).unwrap();
    let s = ens.connect();
    s.mkdirp("/d").await.unwrap();
    s.create("/d/x", b"x", CreateMode::Persistent)
        .await
        .unwrap();
    // Inject a storage failure for one path through SQLite itself.
    let raw = rusqlite::Connection::open(dir.path().join(coord::mem::DB_FILE)).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON znode WHEN NEW.path = '/d/boom'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    drop(raw);

    let before = s.exists("/d").await.unwrap().unwrap();
    let (_, mut w) = s.children_watch("/d").await.unwrap();
    let (_, _, mut wx) = s.get_watch("/d/x").await.unwrap();
    let err = s
        .create("/d/boom", b"", CreateMode::Persistent)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoordError::Backend(m) if m.contains("injected failure")),
        "{err:?}"
    );
    let err = s
        .multi(vec![
            Op::set("/d/x", "changed", Expect::Any),
            Op::create("/d/boom", "", CreateMode::Persistent),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::Backend(_)), "{err:?}");
    assert_eq!(s.exists("/d/boom").await.unwrap(), None);
    assert_eq!(s.get("/d/x").await.unwrap().0, b"x");
    assert_eq!(s.exists("/d").await.unwrap().unwrap(), before);
    assert_pending(&mut w).await;
    assert_pending(&mut wx).await;

    // Other writes still work, and the next sequence number was not burnt.
    assert_eq!(
        s.create("/d/s-", b"", CreateMode::PersistentSequential)
            .await
            .unwrap(),
        "/d/s-0000000001"
    );
    assert_eq!(fired(w).await, WatchEvent::NodeChildrenChanged);
    drop(s);
    let ens = MemEnsemble::open(dir.path()).map(drop);
    assert!(ens.is_err(), "the first ensemble still holds the directory");
}

#[tokio::test]
async fn mem_dropping_a_session_closes_it() {
    let ens = MemEnsemble::new();
    let a = ens.connect();
    let b = ens.connect();
    assert_eq!(ens.session_ids().len(), 2);
    a.create("/e", b"", CreateMode::Ephemeral).await.unwrap();
    let (_, w) = b.exists_watch("/e").await.unwrap();
    drop(a);
    assert_eq!(fired(w).await, WatchEvent::NodeDeleted);
    assert_eq!(ens.session_ids(), vec![b.session_id()]);
    assert!(!ens.expire_session(12345));
}

/// A watch left before a server restart still fires afterwards: the client
/// re-registers it (SetWatches, a 3.4 operation) on the same session.
#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_watch_survives_server_restart() {
    let mut backend = ZkBackend::start_with(Duration::from_secs(8)).await;
    let s = backend.connect_zk().await;
    let id = s.session_id();
    s.mkdirp("/t").await.unwrap();
    s.create("/t/eph", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let (_, _, w) = s.get_watch("/t").await.unwrap();
    let mut events = s.session_events();

    backend.server.restart().await.unwrap();
    // The client notices the drop and comes back on the same session.
    timeout(
        FIRE_WITHIN,
        events.wait_for(|st| *st == SessionState::Connected),
    )
    .await
    .unwrap()
    .unwrap();
    let writer = backend.connect().await;
    writer.set("/t", b"after", Expect::Any).await.unwrap();
    assert_eq!(fired(w).await, WatchEvent::NodeDataChanged);
    assert_eq!(s.session_id(), id);
    assert_eq!(s.session_state(), SessionState::Connected);
    assert!(writer.exists("/t/eph").await.unwrap().is_some());
    assert_eq!(s.get("/t").await.unwrap().0, b"after");
}

/// A stopped ensemble eventually expires the session from the client's side
/// (no server to confirm it): the handle must still end in `Expired`.
#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_lost_ensemble_ends_in_expiry() {
    let mut backend = ZkBackend::start_with(Duration::from_secs(1)).await;
    let s = backend.connect_zk().await;
    let (_, _, w) = s.get_watch("/").await.unwrap();
    let mut events = s.session_events();
    backend.server.stop().await;
    let end = timeout(
        Duration::from_secs(15),
        events.wait_for(|st| st.is_terminal()),
    )
    .await
    .expect("terminal state after the ensemble is gone")
    .map(|st| *st)
    .unwrap_or_else(|_| *events.borrow());
    assert_eq!(end, SessionState::Expired);
    assert_eq!(fired(w).await, WatchEvent::SessionExpired);
    assert_eq!(s.get("/").await.unwrap_err(), CoordError::SessionExpired);
}

#[cfg(feature = "testing")]
#[tokio::test]
async fn zk_fixture_reports_connect_string_and_log() {
    let mut server = coord::testing::ZkServer::start().await.unwrap();
    assert!(server.connect_string().starts_with("127.0.0.1:"));
    assert!(server.is_running());
    assert!(server.dir().join("zoo.cfg").exists());
    let pid = server.pid().unwrap();
    server.stop().await;
    assert!(!server.is_running());
    // The PID we signalled is gone (reaped), and a restart reuses the port.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let port = server.port();
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    let s = coord::ZkCoordination::connect(&server.connect_string(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(s.session_state(), SessionState::Connected);
    assert!(s.exists("/zookeeper").await.unwrap().is_some());
}
