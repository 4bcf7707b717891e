//! Resumability of the controller PROCESS: the lab manatee upgrade, driven
//! by the `tritonctl controller` binary as a child process on a real
//! ZooKeeper, survives SIGKILL at every step boundary it is seen to reach
//! and at random instants, with no step's side effect repeated.
//!
//! The simulated lab datacenter runs in this test process (so the test can
//! look at the world: the VMAPI jobs, the shard's state, the writes), on the
//! same ZooKeeper as the controller. A writer writes to the shard
//! throughout. After each SIGKILL a new controller is started; it has to
//! wait for the killed one's session to expire (its election node is
//! ephemeral) before it leads, as in production.
//!
//! Afterwards, the world: the document is Ready, every zone was reprovisioned
//! exactly once (counted in the simulator's job list), no acknowledged write
//! is missing from the primary, the shard is not frozen and has no deposed
//! peer, and every zone runs the target image.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coord::testing::ZkServer;
use coord::{Coordination, ZkCoordination};
use crds::{ConditionType, Document, Kind};
use sim::manatee::{SessionProvider, ZkProvider};
use sim::scenario::{ScenarioOptions, SimScenario, images};
use tritonctl::layout::journal_path;
use tritonctl::store::Store;

/// The controller's ZooKeeper session timeout: how long a killed leader
/// blocks its successor.
const CONTROLLER_SESSION: &str = "1s";
const DEADLINE: Duration = Duration::from_secs(100);

fn parse(path: &str) -> Document {
    let full = e2e::repo().join(path);
    let text = std::fs::read_to_string(&full).unwrap();
    let (mut docs, diags) = crds::parse_documents(path, &text);
    assert!(diags.is_empty(), "{diags:?}");
    docs.remove(0).document
}

/// A controller child process, SIGKILLed by its PID when dropped.
struct ControllerProc {
    child: Child,
}

impl ControllerProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (only this child's PID) and reap it.
    fn kill9(mut self) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

struct Lab {
    zk: ZkServer,
    scenario: SimScenario,
    admin: Arc<dyn Coordination>,
    store: Store,
    logs: tempfile::TempDir,
    spawned: usize,
    acked: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    stop_writer: Arc<AtomicBool>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl Lab {
    async fn start() -> Lab {
        Self::start_with(crds::manatee::Strategy::Rolling).await
    }

    /// The lab upgrade with `strategy` (the example says `rolling`).
    async fn start_with(strategy: crds::manatee::Strategy) -> Lab {
        let zk = ZkServer::start().await.expect("start ZooKeeper");
        let provider: Arc<dyn SessionProvider> = Arc::new(ZkProvider {
            connect_string: zk.connect_string(),
            session_timeout: Duration::from_secs(3),
        });
        let hs = parse("examples/lab/headnodeset.yaml");
        let mut mv = parse("examples/lab/manatee.yaml");
        if let Document::ManateeVersion(m) = &mut mv {
            m.spec.strategy = strategy;
        }
        let scenario = SimScenario::start(
            std::slice::from_ref(&hs),
            provider,
            ScenarioOptions {
                // A reprovision (15 min) takes ~900 ms: long enough to see
                // a step running.
                dc_time_scale: 1.0 / 1000.0,
                ..ScenarioOptions::default()
            },
        )
        .await
        .expect("the lab scenario starts");
        let admin: Arc<dyn Coordination> =
            ZkCoordination::connect(&zk.connect_string(), Duration::from_secs(10))
                .await
                .expect("connect");
        let store = Store::new(admin.clone());
        store.init().await.unwrap();
        store.apply(&[hs, mv]).await.unwrap();

        // A client writing to the shard the whole time.
        let acked: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
        let stop_writer = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acked, stop, shard) = (
                acked.clone(),
                stop_writer.clone(),
                scenario.manatee.shard("sdc"),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let payload = format!("kill-test-write-{n}").into_bytes();
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(2), shard.write(&payload)).await
                    {
                        acked.lock().unwrap().push(payload);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        Lab {
            zk,
            scenario,
            admin,
            store,
            logs: tempfile::tempdir().unwrap(),
            spawned: 0,
            acked,
            stop_writer,
            writer: Some(writer),
        }
    }

    fn spawn_controller(&mut self) -> ControllerProc {
        self.spawned += 1;
        let log = File::create(
            self.logs
                .path()
                .join(format!("controller-{}.log", self.spawned)),
        )
        .unwrap();
        let urls = self.scenario.servers.urls();
        let child = Command::new(e2e::tritonctl_bin())
            .args(["--zk", &self.zk.connect_string()])
            .args(["--session-timeout", CONTROLLER_SESSION])
            .arg("controller")
            .args(["--sapi", &urls.sapi])
            .args(["--vmapi", &urls.vmapi])
            .args(["--cnapi", &urls.cnapi])
            .args(["--imgapi", &urls.imgapi])
            .args(["--metrics-addr", "off"])
            .args(["--poll-interval", "1s"])
            .args(["--step-poll", "50ms"])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tritonctl controller");
        ControllerProc { child }
    }

    /// The journal's (step, state) frontier: the first step that has not
    /// succeeded, or the last one that has.
    async fn journal_point(&self) -> Option<(String, String, String)> {
        let path = journal_path(Kind::ManateeVersion, "sdc", "sdc");
        let (data, _) = self.admin.get(&path).await.ok()?;
        let op: serde_json::Value = serde_json::from_slice(&data).ok()?;
        let status = &op["status"];
        let phase = status["phase"].as_str().unwrap_or("?").to_string();
        let steps = status["steps"].as_array()?;
        let state = |s: &serde_json::Value| s["state"].as_str().unwrap_or("?").to_string();
        let name = |s: &serde_json::Value| s["name"].as_str().unwrap_or("?").to_string();
        let mut last_done: Option<&serde_json::Value> = None;
        for s in steps {
            match state(s).as_str() {
                "Succeeded" | "Skipped" => last_done = Some(s),
                "Pending" => {
                    return Some(match last_done {
                        Some(d) => (name(d), state(d), phase),
                        None => ("(planned)".into(), "Pending".into(), phase),
                    });
                }
                _ => return Some((name(s), state(s), phase)),
            }
        }
        last_done.map(|d| (name(d), state(d), phase))
    }

    async fn ready(&self) -> bool {
        matches!(
            self.store.status(Kind::ManateeVersion, "sdc").await,
            Ok(Some(st)) if st.is_true(ConditionType::Ready)
        )
    }

    /// Whether the controller with this PID leads (its identity is in the
    /// lowest election node).
    async fn leads(&self, pid: u32) -> bool {
        let dir = tritonctl::layout::leader_dir();
        let Ok(mut children) = self.admin.children(&dir).await else {
            return false;
        };
        children.sort_by_key(|c| coord::split_sequence(c).map(|(_, s)| s));
        let Some(first) = children.first() else {
            return false;
        };
        match self.admin.get(&format!("{dir}/{first}")).await {
            Ok((data, _)) => String::from_utf8_lossy(&data).ends_with(&format!("pid {pid}")),
            Err(_) => false,
        }
    }

    fn log_tail(&self) -> String {
        let mut out = String::new();
        for i in self.spawned.saturating_sub(1)..=self.spawned {
            let p = self.logs.path().join(format!("controller-{i}.log"));
            if let Ok(s) = std::fs::read_to_string(&p) {
                let lines: Vec<&str> = s.lines().collect();
                out += &format!("--- {} ---\n", p.display());
                out += &lines[lines.len().saturating_sub(15)..].join("\n");
                out += "\n";
            }
        }
        out
    }

    /// The world after convergence: every property the upgrade promises.
    async fn check_world(mut self) {
        self.stop_writer.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            w.await.unwrap();
        }
        let dc = &self.scenario.dc;
        let zones = self.scenario.shards["sdc"].clone();
        // Each zone reprovisioned exactly once.
        let mut reprovisions: HashMap<String, usize> = HashMap::new();
        for job in dc.jobs() {
            if job.name.starts_with("reprovision") {
                let vm = job.params["vm_uuid"].as_str().unwrap_or("?").to_string();
                *reprovisions.entry(vm).or_default() += 1;
            }
        }
        for z in &zones {
            assert_eq!(
                reprovisions.get(z).copied().unwrap_or(0),
                1,
                "zone {z} reprovisioned {:?} times (all: {reprovisions:?})",
                reprovisions.get(z)
            );
            let vm = dc.vm(z).unwrap();
            assert_eq!(
                vm.image_uuid.as_deref(),
                Some(images::MANATEE_V2_NEXT),
                "zone {z} runs the target image"
            );
        }
        assert_eq!(reprovisions.len(), zones.len(), "{reprovisions:?}");
        // The shard: whole, unfrozen, no deposed peer.
        let shard = self.scenario.manatee.shard("sdc");
        let state = shard.state().await.unwrap().expect("cluster state");
        assert!(!state.freeze.is_frozen(), "still frozen: {state:?}");
        assert!(state.deposed.is_empty(), "deposed peers: {state:?}");
        assert!(state.sync.is_some(), "no sync: {state:?}");
        assert!(state.promote.is_none(), "a promote request left: {state:?}");
        // No acknowledged write lost.
        let durable: HashSet<Vec<u8>> = shard.primary_writes().await.unwrap().into_iter().collect();
        let acked = self.acked.lock().unwrap().clone();
        assert!(acked.len() > 20, "the writer barely ran: {}", acked.len());
        let lost: Vec<String> = acked
            .iter()
            .filter(|w| !durable.contains(*w))
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        eprintln!(
            "world: {} zones reprovisioned once each, {} writes acked, 0 lost, generation {}",
            zones.len(),
            acked.len(),
            state.generation
        );
        self.scenario.shutdown().await;
    }
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_controller_killed_at_every_step_boundary_resumes_without_repeating() {
    killed_at_every_step_boundary(crds::manatee::Strategy::Rolling).await;
}

/// The switchover's steps (promote-sync, wait-promoted, the deposed old
/// primary's reprovision and rebuild) killed at every boundary too: no
/// second promote acted on, no zone reprovisioned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_controller_killed_at_every_switchover_step_boundary_resumes_without_repeating() {
    killed_at_every_step_boundary(crds::manatee::Strategy::Switchover).await;
}

async fn killed_at_every_step_boundary(strategy: crds::manatee::Strategy) {
    let mut lab = Lab::start_with(strategy).await;
    let before = lab
        .scenario
        .manatee
        .shard("sdc")
        .state()
        .await
        .unwrap()
        .expect("cluster state")
        .primary
        .zone_id;
    let mut ctl = lab.spawn_controller();
    let started = Instant::now();
    let mut killed_at: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen_order: Vec<(String, String)> = Vec::new();
    let mut kills = 0usize;
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "did not converge within {DEADLINE:?}; killed at {killed_at:?}\n{}",
            lab.log_tail()
        );
        if let Some(status) = ctl.exited() {
            panic!("controller exited by itself: {status}\n{}", lab.log_tail());
        }
        let point = lab.journal_point().await;
        if let Some((step, state, phase)) = &point {
            let p = (step.clone(), state.clone());
            if !seen_order.contains(&p) {
                seen_order.push(p.clone());
            }
            if !killed_at.contains(&p) {
                ctl.kill9();
                kills += 1;
                killed_at.insert(p);
                eprintln!("SIGKILL #{kills} at ({step}, {state}) [operation {phase}]");
                ctl = lab.spawn_controller();
                continue;
            }
            if phase == "Succeeded" && lab.ready().await {
                break;
            }
        }
        sleep_ms(2).await;
    }
    ctl.kill9();
    // Every step the journal holds has a Running and a Succeeded point.
    let path = journal_path(Kind::ManateeVersion, "sdc", "sdc");
    let (data, _) = lab.admin.get(&path).await.unwrap();
    let op: serde_json::Value = serde_json::from_slice(&data).unwrap();
    let steps: Vec<String> = op["status"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let boundaries: BTreeSet<(String, String)> = steps
        .iter()
        .flat_map(|s| {
            [
                (s.clone(), "Running".to_string()),
                (s.clone(), "Succeeded".to_string()),
            ]
        })
        .collect();
    let covered = boundaries.intersection(&killed_at).count();
    let missed: Vec<&(String, String)> = boundaries.difference(&killed_at).collect();
    eprintln!(
        "kill points: {kills} SIGKILLs; {covered} of {} step boundaries (Running/Succeeded of {} steps) covered; missed (passed between two looks): {missed:?}; order seen: {seen_order:?}",
        boundaries.len(),
        steps.len()
    );
    assert!(
        kills >= steps.len(),
        "only {kills} kills for {} steps",
        steps.len()
    );
    // Every step was killed at least once while running or right after it.
    for s in &steps {
        assert!(
            killed_at.iter().any(|(n, _)| n == s),
            "step {s} was never killed at; killed at {killed_at:?}"
        );
    }
    if strategy == crds::manatee::Strategy::Switchover {
        assert_eq!(op["status"]["kind"], "manatee-switchover-upgrade");
        assert!(steps.iter().any(|s| s == "promote-sync"), "{steps:?}");
        // One takeover: the old primary is no longer primary.
        let after = lab
            .scenario
            .manatee
            .shard("sdc")
            .state()
            .await
            .unwrap()
            .unwrap();
        assert_ne!(after.primary.zone_id, before, "{after:?}");
    }
    lab.check_world().await;
}

/// A small deterministic generator (the seed is printed for a re-run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_controller_killed_at_random_instants_converges() {
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("random kills, seed {seed} (re-run with KILL_SEED={seed})");
    let mut rng = Lcg(seed);
    let mut lab = Lab::start().await;
    let mut ctl = lab.spawn_controller();
    let started = Instant::now();
    let mut kills = Vec::new();
    const KILLS: usize = 6;
    while kills.len() < KILLS {
        assert!(
            started.elapsed() < DEADLINE,
            "no convergence; kills {kills:?}\n{}",
            lab.log_tail()
        );
        // Kill only a leader (a standby has nothing to lose), at a random
        // instant of its term: 0..1.5 s after it is seen leading.
        while !lab.leads(ctl.pid()).await {
            if let Some(status) = ctl.exited() {
                // Exit 3 is the documented "session lost, restart me" (a 1 s
                // session can expire on a loaded machine): respawn, as a
                // supervisor would. Any other exit is a failure.
                assert_eq!(
                    status.code(),
                    Some(3),
                    "controller exited by itself: {status}\n{}",
                    lab.log_tail()
                );
                ctl = lab.spawn_controller();
            }
            assert!(started.elapsed() < DEADLINE, "{}", lab.log_tail());
            sleep_ms(5).await;
        }
        sleep_ms(rng.next() % 1500).await;
        if lab.ready().await {
            break;
        }
        let at = lab.journal_point().await;
        ctl.kill9();
        eprintln!("SIGKILL #{} near {at:?}", kills.len() + 1);
        kills.push(at);
        ctl = lab.spawn_controller();
    }
    while !lab.ready().await {
        if let Some(status) = ctl.exited() {
            assert_eq!(
                status.code(),
                Some(3),
                "controller exited by itself: {status}\n{}",
                lab.log_tail()
            );
            ctl = lab.spawn_controller();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no convergence after kills {kills:?}\n{}",
            lab.log_tail()
        );
        sleep_ms(20).await;
    }
    eprintln!("{} random kills, then converged", kills.len());
    assert!(!kills.is_empty(), "the upgrade finished before any kill");
    ctl.kill9();
    lab.check_world().await;
}
