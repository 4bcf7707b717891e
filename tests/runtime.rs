//! The controller runtime against a real ZooKeeper (tests named `zk_*`, one
//! private server per test): leader election and fencing, takeover after a
//! closed, expired or SIGSTOPped leader, events, triggers and the runner.
//!
//! The SIGSTOP test re-runs this test binary as a child process in a helper
//! mode (`sigstop_child_helper`, selected by an environment variable; a
//! no-op otherwise) and signals only that child's PID.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coord::testing::ZkServer;
use coord::{Coordination, ZkCoordination};
use crds::{Kind, Status};
use futures::StreamExt;
use tritonctl::runtime::events::{Event, Events};
use tritonctl::runtime::leader::{LeaderElection, LeaderError, Leadership, LossReason};
use tritonctl::runtime::queue::{Action, Config, Controller};
use tritonctl::runtime::triggers::Triggers;
use tritonctl::store::{Fence, Store};

const SESSION: Duration = Duration::from_secs(2);
const HELPER_ENV: &str = "TRITONCTL_TEST_SIGSTOP_CHILD_ZK";

async fn zk() -> ZkServer {
    ZkServer::start().await.expect("start ZooKeeper")
}

async fn session(zk: &ZkServer) -> Arc<ZkCoordination> {
    ZkCoordination::connect(&zk.connect_string(), SESSION)
        .await
        .expect("connect to ZooKeeper")
}

async fn store(coord: Arc<ZkCoordination>) -> Store {
    let s = Store::new(coord);
    s.init().await.unwrap();
    s
}

async fn within<F: Future>(d: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {d:?}"))
}

fn status(generation: i64) -> Status {
    Status {
        observed_generation: Some(generation),
        ..Default::default()
    }
}

/// A fenced status write and a fenced event: both must succeed or both fail.
async fn fenced_writes(
    store: &Store,
    events: &Events,
    fence: &Fence,
    generation: i64,
) -> (bool, bool) {
    let s = store
        .write_status(
            Kind::ManateeVersion,
            "sdc",
            &status(generation),
            Some(fence),
        )
        .await;
    let e = events
        .record(
            &Event::normal("ManateeVersion/sdc", "Fenced", format!("g{generation}")),
            Some(fence),
        )
        .await;
    (s.is_ok(), e.is_ok())
}

async fn stored_generation(store: &Store) -> Option<i64> {
    store
        .status(Kind::ManateeVersion, "sdc")
        .await
        .unwrap()
        .and_then(|s| s.observed_generation)
}

/// A session ended from outside while its client is connected may first be
/// seen as the node vanishing (the deletion is pushed before the session is
/// reported expired); either way leadership is lost at once.
fn expiry_loss(reason: LossReason) -> bool {
    matches!(
        reason,
        LossReason::SessionExpired | LossReason::NodeVanished
    )
}

#[tokio::test]
async fn zk_one_leader_at_a_time_and_only_the_current_fence_writes() {
    let zk = zk().await;
    let (a, b) = (session(&zk).await, session(&zk).await);
    let (ea, eb) = (
        LeaderElection::new(a.clone(), "a"),
        LeaderElection::new(b.clone(), "b"),
    );
    let (ca, cb) = (ea.clone(), eb.clone());
    let mut fa = tokio::spawn(async move { ca.campaign().await });
    let mut fb = tokio::spawn(async move { cb.campaign().await });
    // Exactly one of the two leads; the other keeps waiting.
    let (leader, mut waiting, leader_session, follower_session) =
        within(SESSION, "a leader", async {
            tokio::select! {
                l = &mut fa => (l.unwrap().unwrap(), fb, a.clone(), b.clone()),
                l = &mut fb => (l.unwrap().unwrap(), fa, b.clone(), a.clone()),
            }
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "two leaders");
    let who = ea.current_leader().await.unwrap().unwrap();
    assert_eq!(leader.check().await, Ok(()));

    let (ls, fs) = (
        store(leader_session.clone()).await,
        store(follower_session.clone()).await,
    );
    let (le, fe) = (
        Events::new(leader_session.clone()),
        Events::new(follower_session.clone()),
    );
    assert_eq!(
        fenced_writes(&ls, &le, leader.fence(), 1).await,
        (true, true)
    );

    // Hand over: the old leader's fence is dead, the new one's works.
    let old_fence = leader.fence().clone();
    leader.resign().await;
    let follower = within(SESSION, "takeover after resign", &mut waiting)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(ea.current_leader().await.unwrap().unwrap(), who);
    assert_eq!(fenced_writes(&ls, &le, &old_fence, 2).await, (false, false));
    assert_eq!(fenced_writes(&fs, &fe, &old_fence, 3).await, (false, false));
    assert_eq!(
        fenced_writes(&fs, &fe, follower.fence(), 4).await,
        (true, true)
    );
    assert_eq!(stored_generation(&ls).await, Some(4));
    let messages: Vec<String> = fe
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.message)
        .collect();
    assert_eq!(messages, ["g1", "g4"]);
}

#[tokio::test]
async fn zk_the_other_takes_over_when_the_leader_session_dies() {
    let zk = zk().await;
    let (a, b, c) = (session(&zk).await, session(&zk).await, session(&zk).await);
    let la = LeaderElection::new(a.clone(), "a")
        .campaign()
        .await
        .unwrap();
    let eb = LeaderElection::new(b.clone(), "b");
    let fb = tokio::spawn(async move { eb.campaign().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fb.is_finished());

    // Closed: the ephemeral node goes at once.
    let lost_a = la.lost();
    let t = Instant::now();
    a.close().await;
    let lb: Leadership = within(SESSION, "takeover after close", fb)
        .await
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < SESSION, "took {:?}", t.elapsed());
    assert_eq!(
        within(SESSION, "a's loss", lost_a).await,
        LossReason::SessionClosed
    );

    // Expired from outside (the ensemble ending the session).
    let ec = LeaderElection::new(c.clone(), "c");
    let fc = tokio::spawn(async move { ec.campaign().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fc.is_finished());
    let lost_b = lb.lost();
    let t = Instant::now();
    b.expire_from_outside().await.unwrap();
    let lc = within(SESSION, "takeover after expiry", fc)
        .await
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < SESSION * 2, "took {:?}", t.elapsed());
    assert!(expiry_loss(within(SESSION, "b's loss", lost_b).await));
    lc.check().await.unwrap();
    let s = store(c.clone()).await;
    s.write_status(Kind::ManateeVersion, "sdc", &status(1), Some(lc.fence()))
        .await
        .unwrap();
}

#[tokio::test]
async fn zk_an_expired_leader_cannot_write_with_its_old_fence() {
    let zk = zk().await;
    let a = session(&zk).await;
    let ea = LeaderElection::new(a.clone(), "a");
    let la = ea.campaign().await.unwrap();
    let sa = store(a.clone()).await;
    let events_a = Events::new(a.clone());
    assert_eq!(
        fenced_writes(&sa, &events_a, la.fence(), 1).await,
        (true, true)
    );

    // As if the process had been stopped past its session timeout.
    a.expire_from_outside().await.unwrap();
    let reason = within(SESSION, "lost()", la.lost()).await;
    assert!(expiry_loss(reason));
    assert_eq!(la.check().await, Err(LeaderError::Lost(reason)));
    assert_eq!(
        fenced_writes(&sa, &events_a, la.fence(), 2).await,
        (false, false)
    );
    // Leadership is not regained on the dead session...
    assert!(matches!(
        ea.campaign().await,
        Err(LeaderError::SessionEnded(_))
    ));
    // ...and the old fence is useless on a new session too: its node is gone.
    let a2 = session(&zk).await;
    let (sa2, events_a2) = (store(a2.clone()).await, Events::new(a2.clone()));
    assert_eq!(
        fenced_writes(&sa2, &events_a2, la.fence(), 3).await,
        (false, false)
    );

    // Someone else leads at once and writes.
    let b = session(&zk).await;
    let lb = within(
        SESSION,
        "b leads",
        LeaderElection::new(b.clone(), "b").campaign(),
    )
    .await
    .unwrap();
    let (sb, events_b) = (store(b.clone()).await, Events::new(b.clone()));
    assert_eq!(
        fenced_writes(&sb, &events_b, lb.fence(), 4).await,
        (true, true)
    );
    assert_eq!(stored_generation(&sb).await, Some(4));
    let messages: Vec<String> = events_b
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.message)
        .collect();
    assert_eq!(messages, ["g1", "g4"]);
}

/// The child side of the SIGSTOP test: campaign, then write with the fence in
/// a loop (an event and a status each round) and report every outcome on
/// stdout until leadership is lost; then try once more and stop.
#[test]
fn sigstop_child_helper() {
    let Ok(connect) = std::env::var(HELPER_ENV) else {
        return; // not the child: nothing to do
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let coord = ZkCoordination::connect(&connect, SESSION).await.unwrap();
        let store = Store::new(coord.clone());
        store.init().await.unwrap();
        let events = Events::new(coord.clone());
        let leadership = LeaderElection::new(coord.clone(), "child")
            .campaign()
            .await
            .unwrap();
        println!("child: leader {}", leadership.node());
        let lost = leadership.lost();
        tokio::pin!(lost);
        let mut n: i64 = 0;
        let reason = loop {
            n += 1;
            let event = Event::normal("ManateeVersion/sdc", "ChildWrite", format!("child {n}"));
            match events.record(&event, Some(leadership.fence())).await {
                Ok(seq) => println!("child: wrote {n} {seq}"),
                Err(e) => println!("child: failed {n} {e}"),
            }
            match store
                .write_status(
                    Kind::ManateeVersion,
                    "sdc",
                    &status(n),
                    Some(leadership.fence()),
                )
                .await
            {
                Ok(()) => println!("child: status {n}"),
                Err(e) => println!("child: status-failed {n} {e}"),
            }
            tokio::select! {
                reason = &mut lost => break reason,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        };
        println!("child: lost {reason}");
        let after = events
            .record(
                &Event::warning("ManateeVersion/sdc", "ChildWrite", "after loss"),
                Some(leadership.fence()),
            )
            .await;
        println!(
            "child: after-loss {}",
            if after.is_ok() { "wrote" } else { "refused" }
        );
        println!("child: done");
    });
}

/// The child's report lines (without the `child: ` prefix) as they arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

fn count(lines: &Lines, prefix: &str) -> usize {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.starts_with(prefix))
        .count()
}

async fn wait_for(lines: &Lines, errors: &Lines, prefix: &str, n: usize, d: Duration) {
    let waited = tokio::time::timeout(d, async {
        while count(lines, prefix) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        let tail = |l: &Lines| {
            let l = l.lock().unwrap();
            let from = l.len().saturating_sub(10);
            l[from..]
                .iter()
                .map(|(_, l)| l.clone())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (report, stderr) = (tail(lines), tail(errors));
        panic!(
            "child: no `{prefix}` x{n} within {d:?}; its report ends:\n{report}\nits stderr ends:\n{stderr}"
        );
    }
}

/// Owns the child process: SIGKILLs it (only that PID, which we have not
/// reaped yet) if the test ends early.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> libc::pid_t {
        self.0.as_ref().unwrap().id() as libc::pid_t
    }
    fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn zk_a_sigstopped_leader_writes_nothing_after_takeover() {
    let zk = zk().await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sigstop_child_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, zk.connect_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = ChildGuard(Some(child));
    let lines: Lines = Arc::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness may print `test ... ` on the same line first.
            if let Some(at) = line.find("child: ") {
                l.lock()
                    .unwrap()
                    .push((Instant::now(), line[at + 7..].to_string()));
            }
        }
    });
    // Kept to explain a failure of the child.
    let errors: Lines = Arc::default();
    let e = errors.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            e.lock().unwrap().push((Instant::now(), line));
        }
    });
    wait_for(&lines, &errors, "leader", 1, Duration::from_secs(10)).await;
    wait_for(&lines, &errors, "wrote", 5, Duration::from_secs(5)).await;

    let b = session(&zk).await;
    let eb = LeaderElection::new(b.clone(), "parent");
    let campaign = tokio::spawn(async move { eb.campaign().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!campaign.is_finished(), "the child leads");

    child.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let lb = within(SESSION * 3, "takeover from the stopped child", campaign)
        .await
        .unwrap()
        .unwrap();
    let takeover = stopped.elapsed();
    // It took the session timeout (the child never let go), and not much more.
    assert!(
        takeover >= SESSION / 2 && takeover < SESSION * 3,
        "takeover after {takeover:?}"
    );
    let (sb, events_b) = (store(b.clone()).await, Events::new(b.clone()));
    let marker = events_b
        .record(
            &Event::normal("ManateeVersion/sdc", "Takeover", "parent"),
            Some(lb.fence()),
        )
        .await
        .unwrap();
    sb.write_status(
        Kind::ManateeVersion,
        "sdc",
        &status(1_000_000),
        Some(lb.fence()),
    )
    .await
    .unwrap();
    let written_before = count(&lines, "wrote");

    let resumed = Instant::now();
    child.signal(libc::SIGCONT);
    wait_for(&lines, &errors, "done", 1, Duration::from_secs(10)).await;

    // Nothing the child wrote landed after the takeover: every child event is
    // older than the marker, and the status is still the new leader's.
    let stored = events_b.list(None).await.unwrap();
    let children: Vec<u64> = stored
        .iter()
        .filter(|r| r.event.reason == "ChildWrite")
        .map(|r| r.seq)
        .collect();
    assert!(children.len() >= 5, "{children:?}");
    assert!(
        children.iter().all(|s| *s < marker),
        "child events {children:?} vs marker {marker}"
    );
    assert!(stored.iter().all(|r| r.event.message != "after loss"));
    assert_eq!(stored_generation(&sb).await, Some(1_000_000));
    let log = lines.lock().unwrap().clone();
    let resumed_writes: Vec<&String> = log
        .iter()
        .filter(|(t, l)| *t > resumed && (l.starts_with("wrote") || l.starts_with("status ")))
        .map(|(_, l)| l)
        .collect();
    // A reply that was on its way when the child stopped may be printed after
    // it resumes; such a write landed before the takeover (checked above).
    assert!(resumed_writes.len() <= 2, "{resumed_writes:?}");
    assert!(
        log.iter()
            .any(|(_, l)| l == "lost session expired" || l == "lost election node vanished"),
        "{log:?}"
    );
    assert!(
        log.iter().any(|(_, l)| l == "after-loss refused"),
        "{log:?}"
    );
    assert!(count(&lines, "wrote") >= written_before);
    println!(
        "takeover {takeover:?} after SIGSTOP; child events {} (last seq {:?}) < marker {marker}; writes reported after SIGCONT: {}",
        children.len(),
        children.last(),
        resumed_writes.len()
    );
}

type Seen = Arc<Mutex<Vec<String>>>;

fn runs(seen: &Seen, key: &str) -> usize {
    seen.lock().unwrap().iter().filter(|k| *k == key).count()
}

async fn more_runs(seen: &Seen, key: &str, before: usize) {
    within(Duration::from_secs(5), key, async {
        while runs(seen, key) <= before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn zk_document_and_manatee_changes_trigger_reconciles() {
    let zk = zk().await;
    let coord = session(&zk).await;
    let admin = store(session(&zk).await).await;
    let (triggers, stream) = Triggers::new(coord.clone());
    triggers.watch_documents(Kind::ManateeVersion);
    triggers.watch_path("/manatee/sdc/state", "ManateeVersion/sdc");
    triggers.watch_path("/manatee/sdc/election", "ManateeVersion/sdc");

    let seen: Seen = Arc::default();
    let s = seen.clone();
    let controller = Controller::new(Config {
        concurrency: 2,
        resync: None,
        ..Config::default()
    });
    let queue = controller.queue();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(controller.run(
        move |key: String| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(key);
                Ok::<_, String>(Action::AwaitChange)
            }
        },
        stream,
        async move {
            let _ = stopped.await;
        },
    ));
    // Applying a document reconciles it.
    let text = std::fs::read_to_string(e2e::repo().join("examples/lab/manatee.yaml")).unwrap();
    let doc = crds::parse_documents("mv", &text).0.remove(0).document;
    let key = format!("ManateeVersion/{}", doc.name());
    let key = key.as_str();
    admin.apply(std::slice::from_ref(&doc)).await.unwrap();
    more_runs(&seen, key, 0).await;

    // A manatee state write reconciles the ManateeVersion it maps to.
    let raw = session(&zk).await;
    let n = runs(&seen, "ManateeVersion/sdc");
    raw.mkdirp("/manatee/sdc/election").await.unwrap();
    more_runs(&seen, "ManateeVersion/sdc", n).await;
    let n = runs(&seen, "ManateeVersion/sdc");
    raw.create("/manatee/sdc/state", b"{}", coord::CreateMode::Persistent)
        .await
        .unwrap();
    more_runs(&seen, "ManateeVersion/sdc", n).await;
    let n = runs(&seen, "ManateeVersion/sdc");
    raw.create(
        "/manatee/sdc/election/10.0.0.1:5432:12345-",
        b"",
        coord::CreateMode::EphemeralSequential,
    )
    .await
    .unwrap();
    more_runs(&seen, "ManateeVersion/sdc", n).await;

    // Deleting the document reconciles it once more (to clean up).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = runs(&seen, key);
    admin
        .delete(Kind::ManateeVersion, doc.name())
        .await
        .unwrap();
    more_runs(&seen, key, n).await;
    assert!(queue.known_keys().contains(&key.to_string()));

    let _ = stop.send(());
    within(Duration::from_secs(5), "runner stops", runner)
        .await
        .unwrap();
}

#[tokio::test]
async fn zk_events_are_bounded_and_streamed_in_order() {
    let zk = zk().await;
    let a = session(&zk).await;
    let leadership = LeaderElection::new(a.clone(), "a")
        .campaign()
        .await
        .unwrap();
    let events = Events::new(a.clone()).with_limit(10);
    let reader = Events::new(session(&zk).await).with_limit(10);
    let mut watch = Box::pin(reader.watch(Some("ShardTopology/1".into()), None));
    for i in 0..30 {
        let object = if i % 2 == 0 {
            "ShardTopology/1"
        } else {
            "ManateeVersion/sdc"
        };
        let e = Event::normal(object, "Step", format!("e{i}"))
            .with_operation("op")
            .with_step("s");
        events.record(&e, Some(leadership.fence())).await.unwrap();
    }
    let listed = reader.list(None).await.unwrap();
    let messages: Vec<String> = listed.iter().map(|r| r.event.message.clone()).collect();
    let want: Vec<String> = (20..30).map(|i| format!("e{i}")).collect();
    assert_eq!(messages, want);
    assert!(
        a.children(&tritonctl::layout::events_dir())
            .await
            .unwrap()
            .len()
            <= 11
    );
    // The watch saw what it could before trimming; what it got is in order
    // and only for its object, and new events keep coming.
    events
        .record(
            &Event::warning("ShardTopology/1", "Step", "last"),
            Some(leadership.fence()),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let r = within(Duration::from_secs(5), "watched event", watch.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.event.object, "ShardTopology/1");
        got.push((r.seq, r.event.message.clone()));
        if r.event.message == "last" {
            break;
        }
    }
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
}
