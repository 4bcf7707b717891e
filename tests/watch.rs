//! Watching from the command line, through the real binary: `events -w`,
//! `get -w`, `wait`, `pause` and `resume`. Tests that need a second writer
//! while the binary runs use a real ZooKeeper (`zk_*`); the embedded store
//! shared by several processes is tested in `embedded_concurrency.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use coord::testing::ZkServer;
use coord::{Coordination, MemEnsemble, ZkCoordination};
use crds::{ConditionStatus, ConditionType, Kind, Status};
use e2e::{repo, run, stderr, stdout, tritonctl_bin};
use tritonctl::runtime::events::{Event, Events};
use tritonctl::store::Store;

/// Generous: the machine is small and shared.
const PATIENCE: Duration = Duration::from_secs(60);

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

/// A tritonctl process against a ZooKeeper, its output lines on channels.
struct Running {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Running {
    fn start(zk: &str, args: &[&str]) -> Running {
        let mut child = Command::new(tritonctl_bin())
            .arg("--zk")
            .arg(zk)
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tritonctl");
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Running { child, out, err }
    }

    /// The first line of `rx` containing `needle`, within PATIENCE.
    fn expect(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {PATIENCE:?}; saw {seen:#?}"),
            }
        }
    }

    fn stdout_line(&self, needle: &str) -> String {
        Self::expect(&self.out, needle, &mut Vec::new())
    }

    fn stderr_line(&self, needle: &str) -> String {
        Self::expect(&self.err, needle, &mut Vec::new())
    }

    /// Wait for the process to exit by itself, within PATIENCE.
    fn exit_code(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().expect("exited normally");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tritonctl did not exit within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn zk_store(zk: &ZkServer) -> Store {
    let coord: Arc<dyn Coordination> =
        ZkCoordination::connect(&zk.connect_string(), Duration::from_secs(10))
            .await
            .unwrap();
    let store = Store::new(coord);
    store.init().await.unwrap();
    store
}

fn lab_manatee(image_version: &str) -> crds::Document {
    let text = std::fs::read_to_string(repo().join("examples/lab/manatee.yaml")).unwrap();
    let text = text.replace("20251104T182201Z", image_version);
    let (mut docs, diags) = crds::parse_documents("manatee.yaml", &text);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    docs.remove(0).document
}

/// ManateeVersion `sdc` (image v1) stored with a status whose Ready is `ready`.
async fn stored_lab_manatee(store: &Store, ready: ConditionStatus) {
    store.apply(&[lab_manatee("v1")]).await.unwrap();
    store
        .write_status(Kind::ManateeVersion, "sdc", &status(ready, 1), None)
        .await
        .unwrap();
}

fn status(ready: ConditionStatus, generation: i64) -> Status {
    let mut s = Status {
        observed_generation: Some(generation),
        ..Status::default()
    };
    s.set_condition(
        ConditionType::Ready,
        ready,
        if ready == ConditionStatus::True {
            "Converged"
        } else {
            "Converging"
        },
        "1/1 shard(s)",
        "2026-11-22T12:00:00Z",
    );
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn zk_events_w_prints_an_event_recorded_after_it_started() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    let events = Events::new(store.coord().clone());
    events
        .record(
            &Event::normal("ManateeVersion/sdc", "Before", "recorded before"),
            None,
        )
        .await
        .unwrap();
    let all = Running::start(&zk.connect_string(), &["events", "-w"]);
    let sdc = Running::start(&zk.connect_string(), &["events", "-w", "mv/sdc"]);
    // Both list what is stored first: from then on they are watching.
    all.stdout_line("recorded before");
    sdc.stdout_line("recorded before");
    events
        .record(
            &Event::warning("ShardTopology/1", "Other", "not for sdc"),
            None,
        )
        .await
        .unwrap();
    events
        .record(
            &Event::normal("ManateeVersion/sdc", "After", "recorded after"),
            None,
        )
        .await
        .unwrap();
    let line = all.stdout_line("not for sdc");
    assert!(
        line.contains("Warning") && line.contains("ShardTopology/1"),
        "{line}"
    );
    all.stdout_line("recorded after");
    // The filtered stream skips the other object's event.
    let mut seen = Vec::new();
    Running::expect(&sdc.out, "recorded after", &mut seen);
    assert!(seen.iter().all(|l| !l.contains("not for sdc")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn zk_wait_exits_0_once_the_condition_is_set() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    stored_lab_manatee(&store, ConditionStatus::False).await;
    let mut wait = Running::start(
        &zk.connect_string(),
        &[
            "wait",
            "--for=condition=Ready",
            "manateeversion/sdc",
            "--timeout",
            "10m",
        ],
    );
    // It has read the document and is waiting on its watches.
    wait.stderr_line("Ready=False (Converging");
    assert!(
        wait.child.try_wait().unwrap().is_none(),
        "exited before Ready"
    );
    store
        .write_status(
            Kind::ManateeVersion,
            "sdc",
            &status(ConditionStatus::True, 1),
            None,
        )
        .await
        .unwrap();
    assert_eq!(wait.exit_code(), 0);
    wait.stdout_line("Ready=True");

    // --for=delete ends when the document goes.
    let mut gone = Running::start(
        &zk.connect_string(),
        &["wait", "--for=delete", "mv/sdc", "--timeout", "10m"],
    );
    gone.stderr_line("exists");
    store.delete(Kind::ManateeVersion, "sdc").await.unwrap();
    assert_eq!(gone.exit_code(), 0);
}

/// A reconcile that fails (issue #12, item 2) is reported by `wait`, which
/// prints the Degraded reason and message and exits 2 instead of waiting
/// for its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn zk_wait_reports_a_degraded_document_and_exits_2() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    stored_lab_manatee(&store, ConditionStatus::False).await;
    let mut wait = Running::start(
        &zk.connect_string(),
        &[
            "wait",
            "--for=condition=Ready",
            "manateeversion/sdc",
            "--timeout",
            "10m",
        ],
    );
    wait.stderr_line("Ready=False (Converging");
    let mut degraded = status(ConditionStatus::False, 1);
    degraded.set_condition(
        ConditionType::Degraded,
        ConditionStatus::True,
        "ReconcileError",
        "no SAPI application `manta`",
        "2026-11-22T12:00:01Z",
    );
    store
        .write_status(Kind::ManateeVersion, "sdc", &degraded, None)
        .await
        .unwrap();
    let line = wait.stderr_line("no SAPI application `manta`");
    assert!(line.contains("ReconcileError"), "{line}");
    assert_eq!(wait.exit_code(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn zk_get_w_prints_a_row_again_when_the_status_changes() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    store.apply(&[lab_manatee("v1")]).await.unwrap();
    let one = Running::start(&zk.connect_string(), &["get", "mv", "sdc", "-w"]);
    let all = Running::start(&zk.connect_string(), &["get", "mv", "-w"]);
    let first = one.stdout_line("sdc");
    assert!(first.contains("Unknown"), "{first}");
    all.stdout_line("sdc");
    store
        .write_status(
            Kind::ManateeVersion,
            "sdc",
            &status(ConditionStatus::True, 1),
            None,
        )
        .await
        .unwrap();
    let again = one.stdout_line("True");
    assert!(again.starts_with("sdc"), "{again}");
    all.stdout_line("True");
    // A new document shows up in the list watch; a pause shows in both.
    let mut other = lab_manatee("v1");
    other.metadata_mut().name = "other".into();
    store.apply(&[other]).await.unwrap();
    all.stdout_line("other");
    let o = Command::new(tritonctl_bin())
        .args([
            "--zk",
            &zk.connect_string(),
            "pause",
            "mv/sdc",
            "--by",
            "alice@hn0",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    one.stdout_line("alice@hn0");
    all.stdout_line("alice@hn0");
    store.delete(Kind::ManateeVersion, "other").await.unwrap();
    all.stdout_line("other deleted");
}

#[test]
fn wait_times_out_with_1_ignores_an_older_generation_and_fails_with_2() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let o = run(dir, &["apply", "-f", "examples/lab/"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Not reconciled yet: times out.
    let o = run(
        dir,
        &["wait", "--for=condition=Ready", "mv/sdc", "--timeout", "1s"],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("timed out after 1s"), "{}", stderr(&o));

    // Ready for generation 1, then the spec changes (generation 2).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let write = |st: Status| {
        rt.block_on(async {
            let ens = MemEnsemble::open(dir).unwrap();
            let store = Store::new(ens.connect());
            store
                .write_status(Kind::ManateeVersion, "sdc", &st, None)
                .await
                .unwrap();
        })
    };
    write(status(ConditionStatus::True, 1));
    let o = run(
        dir,
        &["wait", "--for=condition=Ready", "mv/sdc", "--timeout", "1s"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let f = dir.join("mv.yaml");
    std::fs::write(
        &f,
        std::fs::read_to_string(repo().join("examples/lab/manatee.yaml"))
            .unwrap()
            .replace("maxReplicationLagSeconds: 5", "maxReplicationLagSeconds: 6"),
    )
    .unwrap();
    let o = run(dir, &["apply", "-f", f.to_str().unwrap()]);
    assert!(stdout(&o).contains("generation 2"), "{}", stdout(&o));
    let o = run(
        dir,
        &["wait", "--for=condition=Ready", "mv/sdc", "--timeout", "1s"],
    );
    assert_eq!(
        code(&o),
        1,
        "Ready of generation 1 ended the wait: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("but for generation 1"),
        "{}",
        stderr(&o)
    );
    write(status(ConditionStatus::True, 2));
    let o = run(
        dir,
        &["wait", "--for=condition=Ready", "mv/sdc", "--timeout", "1s"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Errors are 2: no such document, a bad --for.
    let o = run(
        dir,
        &[
            "wait",
            "--for=condition=Ready",
            "mv/nope",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = run(dir, &["wait", "--for=condition=Bogus", "mv/sdc"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // A document that does not exist is already deleted.
    let o = run(dir, &["wait", "--for=delete", "mv/nope", "--timeout", "1s"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn pause_is_kept_across_apply_shown_by_get_and_describe_and_lifted_by_resume() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert_eq!(code(&run(dir, &["apply", "-f", "examples/lab/"])), 0);
    let o = run(
        dir,
        &["pause", "mv/sdc", "--by", "alice@hn0", "--reason", "INC-42"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("paused by alice@hn0"), "{}", stdout(&o));
    // A second pause keeps the first pauser.
    let o = run(dir, &["pause", "mv/sdc", "--by", "bob@hn1"]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("already paused by alice@hn0"),
        "{}",
        stdout(&o)
    );
    // Applying the git copy again does not undo it.
    assert_eq!(code(&run(dir, &["apply", "-f", "examples/lab/"])), 0);
    let o = run(dir, &["get", "mv"]);
    let out = stdout(&o);
    assert!(out.lines().next().unwrap().contains("PAUSED"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sdc") && l.contains("alice@hn0")),
        "{out}"
    );
    let o = run(dir, &["describe", "mv", "sdc"]);
    let out = stdout(&o);
    assert!(
        out.contains("Paused:            by alice@hn0 at 20"),
        "{out}"
    );
    assert!(out.contains("Pause reason:      INC-42"), "{out}");

    let o = run(dir, &["resume", "mv/sdc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(dir, &["get", "mv", "sdc"]);
    assert!(!stdout(&o).contains("alice"), "{}", stdout(&o));
    assert_eq!(code(&run(dir, &["resume", "mv/sdc"])), 1);
    let o = run(dir, &["pause", "mv/nope"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}

#[test]
fn new_commands_have_help_with_examples() {
    for cmd in ["wait", "pause", "resume", "events", "get"] {
        let o = Command::new(tritonctl_bin())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{cmd}");
        assert!(stdout(&o).contains("Example"), "{cmd}: {}", stdout(&o));
    }
}

/// Issue #12 item 13: `--timeout 0s` bounds the waiting, not the first look
/// (over ZooKeeper that look takes round trips, which a zero deadline cut).
#[tokio::test(flavor = "multi_thread")]
async fn zk_wait_with_timeout_0s_succeeds_when_the_condition_already_holds() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    stored_lab_manatee(&store, ConditionStatus::True).await;
    let wait = |args: &[&str]| {
        Command::new(tritonctl_bin())
            .args(["--zk", &zk.connect_string(), "wait"])
            .args(args)
            .args(["--timeout", "0s"])
            .output()
            .unwrap()
    };
    let o = wait(&["--for=condition=Ready", "mv/sdc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Ready=True"), "{}", stdout(&o));
    let o = wait(&["--for=delete", "mv/nope"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Not holding: a zero timeout times out (1).
    let o = wait(&["--for=condition=Ready=False", "mv/sdc"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
}

/// Issue #12 item 3: a status rewrite that changes nothing a row shows (a
/// condition's message, a timestamp) prints no row.
#[tokio::test(flavor = "multi_thread")]
async fn zk_get_w_prints_a_row_only_when_what_it_shows_changes() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    let mut quiet = lab_manatee("v1");
    quiet.metadata_mut().name = "zz-quiet".into();
    let mut sync = lab_manatee("v1");
    sync.metadata_mut().name = "aa-sync".into();
    store.apply(&[quiet, sync]).await.unwrap();
    let with_message = |m: &str| {
        let mut s = status(ConditionStatus::False, 1);
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "Converging",
            m,
            "2026-11-22T12:00:00Z",
        );
        s
    };
    store
        .write_status(Kind::ManateeVersion, "zz-quiet", &with_message("0/3"), None)
        .await
        .unwrap();
    let all = Running::start(&zk.connect_string(), &["get", "mv", "-w"]);
    all.stdout_line("aa-sync");
    all.stdout_line("zz-quiet");
    // Changes no cell of zz-quiet's row...
    for m in ["1/3", "2/3"] {
        store
            .write_status(Kind::ManateeVersion, "zz-quiet", &with_message(m), None)
            .await
            .unwrap();
    }
    // ...then a change of aa-sync's row. The round that prints it reads
    // aa-sync first and zz-quiet after, so it has read zz-quiet's rewrite.
    store
        .write_status(
            Kind::ManateeVersion,
            "aa-sync",
            &status(ConditionStatus::True, 1),
            None,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    Running::expect(&all.out, "True", &mut seen);
    // One more visible change, so that a row printed late would show.
    store
        .write_status(
            Kind::ManateeVersion,
            "aa-sync",
            &status(ConditionStatus::False, 1),
            None,
        )
        .await
        .unwrap();
    Running::expect(&all.out, "aa-sync", &mut seen);
    assert!(
        seen.iter().all(|l| !l.starts_with("zz-quiet")),
        "a row that shows nothing new was printed again: {seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zk_get_leader_shows_the_leading_controller_and_since_when() {
    let zk = ZkServer::start().await.unwrap();
    let store = zk_store(&zk).await;
    let none = Command::new(tritonctl_bin())
        .args(["--zk", &zk.connect_string(), "get", "leader"])
        .output()
        .unwrap();
    assert_eq!(code(&none), 0, "{}", stderr(&none));
    assert!(
        stderr(&none).contains("No controller leads"),
        "{}",
        stderr(&none)
    );
    assert_eq!(stdout(&none), "", "no header without a leader");
    let election =
        tritonctl::runtime::leader::LeaderElection::new(store.coord().clone(), "hn0 pid 4242");
    let _leading = election.campaign().await.unwrap();
    let o = Command::new(tritonctl_bin())
        .args(["--zk", &zk.connect_string(), "get", "leader"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("IDENTITY"), "{out}");
    let row = out.lines().nth(1).unwrap();
    assert!(row.starts_with("hn0 pid 4242"), "{out}");
    assert!(row.contains("candidate-"), "{out}");
    let o = Command::new(tritonctl_bin())
        .args(["--zk", &zk.connect_string(), "get", "leader", "-j"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["identity"], "hn0 pid 4242");
    let since = v["since"].as_str().unwrap();
    let t =
        time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(t.year() >= 2024, "{since}");
}

#[test]
fn pause_resume_and_approve_record_who_did_it_as_events() {
    use reconcilers::manatee_ha::HaAction;
    use reconcilers::operation::{Operation, PlannedStep};
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert_eq!(code(&run(dir, &["apply", "-f", "examples/lab/"])), 0);
    let o = run(
        dir,
        &["pause", "mv/sdc", "--by", "alice@hn0", "--reason", "INC-42"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(dir, &["resume", "mv", "sdc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A HeadnodeSet step that timed out: approve allows one more attempt.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ens = MemEnsemble::open(dir).unwrap();
        let c = ens.connect();
        let mut op: Operation<HaAction> = Operation::new(
            "ha-lab-sdc-g1-test",
            "manatee-ha",
            "sdc",
            vec![PlannedStep {
                name: "wait-healthy".into(),
                description: "wait".into(),
                touches: vec![],
                irreversible: false,
                action: HaAction::WaitHealthy,
            }],
        );
        op.status.steps[0].state = crds::StepState::Failed;
        op.status.steps[0].attempts = 1;
        let jdir = tritonctl::reconcile::journal_dir(Kind::HeadnodeSet, "lab");
        c.mkdirp(&jdir).await.unwrap();
        c.create(
            &format!("{jdir}/sdc"),
            &serde_json::to_vec(&op).unwrap(),
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
    });
    let o = run(dir, &["approve", "hs", "lab"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(dir, &["events", "-H", "-o", "object,reason,message"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let me = tritonctl::pause::current_user();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ManateeVersion/sdc  Paused"), "{out}");
    assert!(lines[0].contains("paused by alice@hn0: INC-42"), "{out}");
    assert!(lines[1].contains("Resumed"), "{out}");
    assert!(lines[1].contains(&format!("resumed by {me}")), "{out}");
    assert!(lines[2].starts_with("HeadnodeSet/lab"), "{out}");
    assert!(lines[2].contains("Approved"), "{out}");
    assert!(lines[2].contains(&format!("approved by {me}")), "{out}");
    assert!(lines[2].contains("wait-healthy"), "{out}");
    // An approval with nothing waiting records nothing.
    let o = run(dir, &["approve", "mv/sdc"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let o = run(dir, &["events", "-o", "name"]);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
}

#[test]
fn listings_take_no_header_columns_json_name_and_jsonpath() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert_eq!(code(&run(dir, &["apply", "-f", "examples/lab/"])), 0);
    let o = run(dir, &["pause", "mv/sdc", "--by", "alice@hn0"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(dir, &["get", "mv", "-H"]);
    assert!(stdout(&o).starts_with("sdc "), "{}", stdout(&o));
    let o = run(dir, &["get", "mv", "-o", "paused,Name"]);
    assert_eq!(stdout(&o), "PAUSED     NAME\nalice@hn0  sdc\n");
    let o = run(dir, &["get", "mv", "-H", "-o", "spec"]);
    assert!(stdout(&o).contains("shard(s) ->"), "{}", stdout(&o));
    let o = run(dir, &["get", "mv", "-o", "name,bogus"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("unknown column `BOGUS`")
            && stderr(&o).contains("NAME, GENERATION, OBSERVED"),
        "{}",
        stderr(&o)
    );
    let o = run(dir, &["get", "mv", "-j"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"][0]["metadata"]["name"], "sdc");
    let o = run(dir, &["get", "manateeversions", "-o", "name"]);
    assert_eq!(stdout(&o), "manateeversion/sdc\n");
    let o = run(
        dir,
        &["get", "mv", "-o", "jsonpath={.items[*].metadata.name}"],
    );
    assert_eq!(stdout(&o), "sdc\n");
    let o = run(
        dir,
        &["get", "mv/sdc", "-o", "jsonpath=$.metadata.generation"],
    );
    assert_eq!(stdout(&o), "1\n");
    let o = run(dir, &["events", "-j"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["items"][0]["reason"], "Paused");
    let o = run(dir, &["events", "-o", "jsonpath={.items[*].reason}"]);
    assert_eq!(stdout(&o), "Paused\n");
    let o = run(dir, &["events", "-o", "reason,TYPE"]);
    assert_eq!(stdout(&o), "REASON  TYPE\nPaused  Normal\n");
}

#[test]
fn cancel_records_who_cancelled_as_an_event() {
    use reconcilers::operation::{Operation, PlannedStep};
    use reconcilers::transplant::{TransplantAction, TransplantJournal};
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert_eq!(code(&run(dir, &["apply", "-f", "examples/lab/"])), 0);
    // A transplant that has not reached its point of no return.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ens = MemEnsemble::open(dir).unwrap();
        let c = ens.connect();
        let forward: Operation<TransplantAction> = Operation::new(
            "transplant-sdc-g1-test",
            "transplant",
            "sdc",
            vec![PlannedStep {
                name: "check-moray".into(),
                description: "check".into(),
                touches: vec![],
                irreversible: false,
                action: TransplantAction::CheckMoray,
            }],
        );
        let jdir = "/tritonctl/v1/transplants/manateeversion/sdc";
        c.mkdirp(jdir).await.unwrap();
        c.create(
            &format!("{jdir}/sdc"),
            &serde_json::to_vec(&TransplantJournal::new(forward)).unwrap(),
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
    });
    let o = run(dir, &["cancel", "manateeversion", "sdc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(dir, &["events", "mv/sdc", "-H", "-o", "reason,message"]);
    let out = stdout(&o);
    let me = tritonctl::pause::current_user();
    assert!(out.starts_with("Cancelled"), "{out}");
    assert!(
        out.contains(&format!("cancelled by {me}: sdc: rollback requested")),
        "{out}"
    );
}
