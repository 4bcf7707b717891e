//! The manatee v1 -> v2 brain transplant end to end: a simulated coal or lab
//! datacenter on manatee v1, the `transplant` strategy driven through the
//! real SAPI/VMAPI/CNAPI/IMGAPI clients and ZooKeeper, a client writing
//! through moray the whole time.
//!
//! Measure both options in one run:
//! `cargo test -p e2e --test transplant measure_both_options -- --nocapture`

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coord::Coordination;
use crds::Document;
use crds::manatee::ManateeVersionSpec;
use crds::status::{OperationPhase, StepState};
use reconcilers::clock::SystemClock;
use reconcilers::error::{BlockReason, WorldError};
use reconcilers::transplant::{
    Outcome, TransplantAct, TransplantJournal, TransplantObs, TransplantObserve, TransplantRunner,
    TransplantStore, drive, plan_transplant,
};
use sim::scenario::{ScenarioOptions, SimScenario, images};
use tritonctl::clients::{Endpoints, Timeouts, Triton, Unguarded};
use tritonctl::world::transplant::TritonTransplant;

const COAL: &str = include_str!("../examples/coal/headnodeset.yaml");
const LAB: &str = include_str!("../examples/lab/headnodeset.yaml");
const SCENARIO: &str = include_str!("../examples/scenarios/transplant/manatee.yaml");

fn doc(name: &str, text: &str) -> Document {
    let (mut docs, diags) = crds::parse_documents(name, text);
    assert!(diags.is_empty(), "{diags:?}");
    docs.remove(0).document
}

fn spec(first: &str) -> ManateeVersionSpec {
    let Document::ManateeVersion(mv) = doc("examples/scenarios/transplant/manatee.yaml", SCENARIO)
    else {
        panic!("the transplant scenario is a ManateeVersion")
    };
    let mut s = mv.spec;
    s.rollout.approval = crds::manatee::Approval::Never;
    s.transplant.as_mut().unwrap().first_v2_node =
        serde_json::from_value(serde_json::json!(first)).unwrap();
    s
}

/// What the client writing through moray saw.
#[derive(Default)]
struct WriteLog {
    acked: Vec<Vec<u8>>,
    outages: Vec<(Duration, Duration)>,
}

struct Harness {
    scenario: Arc<SimScenario>,
    world: TritonTransplant,
    log: Arc<Mutex<WriteLog>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn start(hs: &str) -> Harness {
        Self::start_with(hs, ScenarioOptions::default(), Timeouts::default()).await
    }

    /// `opts` with the v1 image, the clients giving up after `timeouts`.
    async fn start_with(hs: &str, opts: ScenarioOptions, timeouts: Timeouts) -> Harness {
        let ensemble = coord::mem::MemEnsemble::new();
        let scenario = SimScenario::start(
            &[doc("headnodeset.yaml", hs)],
            Arc::new(ensemble.clone()),
            ScenarioOptions {
                manatee_image: images::MANATEE_V1.into(),
                ..opts
            },
        )
        .await
        .expect("the v1 datacenter comes up");
        let urls = scenario.servers.urls().clone();
        let triton = Triton::with_timeouts(
            &Endpoints {
                sapi: urls.sapi.clone(),
                vmapi: urls.vmapi.clone(),
                cnapi: urls.cnapi.clone(),
                imgapi: urls.imgapi.clone(),
            },
            Arc::new(Unguarded),
            timeouts,
        );
        let session: Arc<dyn Coordination> = ensemble.connect();
        let world = TritonTransplant {
            triton,
            coord: session,
            fence: None,
        };
        let scenario = Arc::new(scenario);
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (log, stop, s) = (log.clone(), stop.clone(), scenario.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                let mut n = 0u64;
                let mut down: Option<Duration> = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let payload = format!("w-{n}").into_bytes();
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        s.client_write("sdc", &payload),
                    )
                    .await;
                    let at = t0.elapsed();
                    {
                        let mut l = log.lock().unwrap();
                        if matches!(r, Ok(Ok(()))) {
                            l.acked.push(payload);
                            if let Some(start) = down.take() {
                                l.outages.push((start, at));
                            }
                        } else {
                            down.get_or_insert(at);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                if let Some(start) = down {
                    log.lock().unwrap().outages.push((start, t0.elapsed()));
                }
            })
        };
        Harness {
            scenario,
            world,
            log,
            stop,
            writer: Some(writer),
        }
    }

    fn runner(&self) -> TransplantRunner<'_, TritonTransplant> {
        TransplantRunner {
            world: &self.world,
            shard: "sdc".into(),
            step_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(20),
            clock: &SystemClock,
        }
    }

    async fn plan(&self, first: &str, op_id: &str) -> TransplantJournal {
        let obs = self.world.observe("sdc").await.unwrap();
        let majors: BTreeMap<String, u32> = [
            (images::MANATEE_V1.to_string(), 1),
            (images::MANATEE_V2_CURRENT.to_string(), 2),
        ]
        .into();
        let forward = plan_transplant(&spec(first), &obs, &majors, op_id)
            .unwrap_or_else(|e| panic!("plan refused: {e:?}"));
        TransplantJournal::new(forward)
    }

    /// Stop the writer; every acknowledged write must be on the primary.
    async fn finish(&mut self) -> (usize, usize, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            w.await.unwrap();
        }
        let durable: HashSet<Vec<u8>> = self
            .scenario
            .manatee
            .shard("sdc")
            .primary_writes()
            .await
            .unwrap()
            .into_iter()
            .collect();
        let l = self.log.lock().unwrap();
        let lost = l.acked.iter().filter(|w| !durable.contains(*w)).count();
        let longest = l
            .outages
            .iter()
            .map(|(a, b)| *b - *a)
            .max()
            .unwrap_or_default();
        (l.acked.len(), lost, longest)
    }
}

/// Saves every journal; optionally "kills the controller" right after each
/// save (the drive call fails as a crashed process would stop there).
#[derive(Default)]
struct Saves {
    all: Mutex<Vec<TransplantJournal>>,
    kill_after_save: bool,
    /// Stop (as a killed controller) once this forward step is in this state.
    stop_at: Option<(String, StepState)>,
}

#[async_trait]
impl TransplantStore for Saves {
    async fn save(&self, j: &TransplantJournal) -> Result<(), WorldError> {
        self.all.lock().unwrap().push(j.clone());
        if self.kill_after_save {
            return Err(WorldError::Unexpected("controller killed".into()));
        }
        if let Some((name, state)) = &self.stop_at
            && j.rollback.is_none()
            && j.forward
                .status
                .steps
                .iter()
                .any(|s| &s.name == name && s.state == *state)
        {
            return Err(WorldError::Unexpected("stopped for the test".into()));
        }
        Ok(())
    }
}

/// Drive forward until the store stops it at its `stop_at` point; returns
/// the journal as saved there.
async fn drive_until_stopped(h: &Harness, j: &mut TransplantJournal, store: &Saves) {
    if let Some((name, _)) = &store.stop_at {
        assert!(
            j.forward.status.steps.iter().any(|s| &s.name == name),
            "stop point {name} is not a step of this plan: {:?}",
            j.forward
                .status
                .steps
                .iter()
                .map(|s| &s.name)
                .collect::<Vec<_>>()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        match drive(j, &h.runner(), store, false, Duration::from_millis(20)).await {
            Err(e) if e.to_string().contains("stopped for the test") => {
                *j = store.all.lock().unwrap().last().cloned().unwrap();
                return;
            }
            Ok(Outcome::Waiting { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other:?}: {:#?}", j.forward.status),
        }
        assert!(Instant::now() < deadline, "never reached the stop point");
    }
}

async fn drive_to_end(
    h: &Harness,
    j: &mut TransplantJournal,
    store: &Saves,
    cancel: bool,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let r = drive(j, &h.runner(), store, cancel, Duration::from_millis(20)).await;
        match r {
            Ok(Outcome::Waiting { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(o) => return o,
            Err(e) => panic!("drive: {e}"),
        }
        assert!(Instant::now() < deadline, "the transplant did not finish");
    }
}

async fn assert_all_v2(h: &Harness, peers: usize) {
    let obs = h.world.observe("sdc").await.unwrap();
    let st = obs.state.clone().expect("a v2 cluster state");
    assert_eq!(obs.zones.len(), peers, "{:#?}", obs.zones);
    assert!(
        obs.zones
            .iter()
            .all(|z| z.image == images::MANATEE_V2_CURRENT),
        "{:#?}",
        obs.zones
    );
    let placed = 1 + usize::from(st.sync.is_some()) + st.asyncs.len();
    assert_eq!(placed, peers, "{st:?}");
    assert!(obs.morays.iter().all(|m| m.enabled));
    // Our clients never sent SAPI a request that crashes the real one.
    assert_eq!(h.scenario.dc.sapi_would_crash(), vec![]);
    assert!(
        obs.zones.iter().all(|z| z.snapshots.is_empty()
            || z.zone != st.primary.zone_id
            || !z.snapshots.iter().any(|s| s.ends_with("backup"))),
        "the backup is released at the end"
    );
}

struct Measured {
    total: Duration,
    outage: Duration,
    acked: usize,
    lost: usize,
}

async fn transplant(hs: &str, first: &str, peers: usize) -> Measured {
    let mut h = Harness::start(hs).await;
    let mut j = h.plan(first, "op-transplant").await;
    let store = Saves::default();
    let t0 = Instant::now();
    let out = drive_to_end(&h, &mut j, &store, false).await;
    let total = t0.elapsed();
    assert_eq!(out, Outcome::Completed, "{:#?}", j.forward.status);
    let (acked, lost, outage) = h.finish().await;
    assert_all_v2(&h, peers).await;
    Measured {
        total,
        outage,
        acked,
        lost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coal_transplant_new_instance_loses_no_acknowledged_write() {
    let m = transplant(COAL, "newInstanceOnPrimaryServer", 1).await;
    assert_eq!(m.lost, 0);
    assert!(m.acked > 10, "the writer barely ran");
    assert!(m.outage > Duration::ZERO && m.outage < m.total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_transplant_both_options_lose_no_acknowledged_write() {
    for first in ["newInstanceOnPrimaryServer", "reprovisionAsync"] {
        let m = transplant(LAB, first, 3).await;
        assert_eq!(m.lost, 0, "{first}");
        assert!(m.acked > 10, "{first}: the writer barely ran");
        assert!(m.outage < m.total, "{first}");
    }
}

/// Every SAPI create, upgrade and delete outlasts the client's timeout
/// (a reprovision takes 2.25 s, a provision 300 ms, the client waits
/// 100 ms): both options still complete without a rollback or a stop, no
/// step ever fails, and no zone gets a second job of a kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_transplant_whose_sapi_calls_outlast_the_client_completes() {
    let slow = ScenarioOptions {
        dc_time_scale: 1.0 / 400.0,
        ..ScenarioOptions::default()
    };
    let impatient = Timeouts {
        sapi_job: Duration::from_millis(100),
        sapi_delete: Duration::from_millis(100),
        job_poll: Duration::from_millis(20),
        settle: Duration::from_millis(50),
        ..Timeouts::default()
    };
    for first in ["reprovisionAsync", "newInstanceOnPrimaryServer"] {
        let mut h = Harness::start_with(LAB, slow.clone(), impatient).await;
        let mut j = h.plan(first, "op-slow").await;
        let store = Saves::default();
        let out = drive_to_end(&h, &mut j, &store, false).await;
        assert_eq!(out, Outcome::Completed, "{first}: {:#?}", j.forward.status);
        for saved in store.all.lock().unwrap().iter() {
            assert!(saved.rollback.is_none(), "{first}: rolled back");
            assert!(
                saved
                    .forward
                    .status
                    .steps
                    .iter()
                    .all(|s| s.state != StepState::Failed),
                "{first}: a step failed: {:#?}",
                saved.forward.status
            );
        }
        let (_, lost, _) = h.finish().await;
        assert_eq!(lost, 0, "{first}");
        assert_all_v2(&h, 3).await;
        let dc = &h.scenario.dc;
        let mut reprovisioned = 0;
        for task in ["reprovision", "provision", "destroy"] {
            let mut per_vm: BTreeMap<String, usize> = BTreeMap::new();
            for job in dc.jobs().iter().filter(|j| j.task() == Some(task)) {
                *per_vm
                    .entry(job.vm_uuid().unwrap().to_string())
                    .or_default() += 1;
            }
            assert!(
                per_vm.values().all(|n| *n == 1),
                "{first}: {task} jobs per zone: {per_vm:?}"
            );
            if task == "reprovision" {
                reprovisioned = per_vm.len();
            }
        }
        assert!(reprovisioned >= 1, "{first}: no reprovision ran");
    }
}

/// `cargo test -p e2e --test transplant measure_both_options -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_both_options() {
    let mut lines = Vec::new();
    for (name, hs, peers) in [("coal", COAL, 1), ("lab", LAB, 3)] {
        for first in ["newInstanceOnPrimaryServer", "reprovisionAsync"] {
            if peers == 1 && first == "reprovisionAsync" {
                continue; // a one-node shard has no async to reprovision
            }
            let m = transplant(hs, first, peers).await;
            assert_eq!(m.lost, 0);
            // Simulator time: manatee (sitters, postgres, zfs send) runs at
            // x1/100, datacenter jobs (reprovision, provision) at x1/3000.
            lines.push(format!(
                "{name:<4} {first:<28} total {:>6.2}s  write outage {:>5.2}s  acked {:>4} lost {}",
                m.total.as_secs_f64(),
                m.outage.as_secs_f64(),
                m.acked,
                m.lost
            ));
        }
    }
    for l in &lines {
        println!("{l}");
    }
}

/// The controller killed right after every journal save resumes from that
/// save; a step resumed in `Running` re-runs its act, which finds its effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_transplant_resumes_from_every_journal_point() {
    let mut h = Harness::start(LAB).await;
    let mut j = h.plan("reprovisionAsync", "op-resume").await;
    let store = Saves {
        kill_after_save: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut kills = 0;
    let mut replays = 0;
    let mut finished = 0;
    loop {
        match drive(
            &mut j,
            &h.runner(),
            &store,
            false,
            Duration::from_millis(20),
        )
        .await
        {
            Err(e) if e.to_string().contains("controller killed") => {
                kills += 1;
                // A new controller loads the last saved journal...
                let saves = store.all.lock().unwrap().clone();
                let last = saves.last().cloned().unwrap();
                j = last.clone();
                // ...but when that save finished a step, the crash may as well
                // have come after the act and before the save: resume from the
                // step's Running save, so its act runs again against a world
                // that already shows its effect.
                let just_done = last.forward.status.steps.iter().position(|s| {
                    s.state == StepState::Succeeded
                        && saves.len() >= 2
                        && saves[saves.len() - 2]
                            .forward
                            .status
                            .steps
                            .iter()
                            .any(|p| p.name == s.name && p.state == StepState::Running)
                });
                if just_done.is_some() {
                    finished += 1;
                }
                if let Some(i) = just_done
                    && finished % 2 == 1
                    && saves[saves.len() - 2].rollback.is_none()
                {
                    j = saves[saves.len() - 2].clone();
                    assert_eq!(j.forward.status.steps[i].state, StepState::Running);
                    replays += 1;
                }
            }
            Ok(Outcome::Completed) => break,
            Ok(Outcome::Waiting { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other:?}: {:#?}", j.forward.status),
        }
        assert!(
            Instant::now() < deadline,
            "did not converge across restarts"
        );
    }
    let steps = j.forward.status.steps.len();
    assert!(kills >= 2 * steps, "{kills} kills for {steps} steps");
    assert!(
        replays >= steps / 2 - 1,
        "{replays} act replays for {steps} steps"
    );
    assert!(
        j.forward
            .status
            .steps
            .iter()
            .all(|s| s.state == StepState::Succeeded),
        "{:#?}",
        j.forward.status
    );
    let (_, lost, _) = h.finish().await;
    assert_eq!(lost, 0);
    assert_all_v2(&h, 3).await;
}

/// Cancel after each step before the point of no return: the runbook's
/// rollback brings back the v1 shard with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_cancel_before_the_point_of_no_return_rolls_back_from_every_step() {
    let probe = Harness::start(LAB).await;
    let plan = probe.plan("reprovisionAsync", "op-rb").await;
    let pnr = plan.forward.status.point_of_no_return.unwrap();
    drop(probe);
    for k in 0..pnr {
        let mut h = Harness::start(LAB).await;
        let mut j = h.plan("reprovisionAsync", "op-rb").await;
        // Run forward until step k has succeeded, then cancel.
        let stop_at = j.forward.status.steps[k].name.clone();
        let store = Saves {
            stop_at: Some((stop_at.clone(), StepState::Succeeded)),
            ..Default::default()
        };
        drive_until_stopped(&h, &mut j, &store).await;
        let store = Saves::default();
        let out = drive_to_end(&h, &mut j, &store, true).await;
        assert!(
            matches!(out, Outcome::RolledBack { .. }),
            "cancel after {stop_at}: {out:?}\n{:#?}",
            j.rollback.as_ref().map(|r| &r.status)
        );
        assert_eq!(j.forward.status.phase, OperationPhase::RolledBack);
        let (acked, lost, _) = h.finish().await;
        assert_eq!(lost, 0, "after {stop_at}");
        assert!(acked > 0);
        let obs = h.world.observe("sdc").await.unwrap();
        assert!(obs.state.is_none(), "after {stop_at}: a v2 state was left");
        assert_eq!(
            obs.legacy_topology().len(),
            3,
            "after {stop_at}: {:#?}",
            obs.zones
        );
        assert!(
            obs.zones
                .iter()
                .all(|z| z.image == images::MANATEE_V1 && !z.sitter_onwm),
            "after {stop_at}: {:#?}",
            obs.zones
        );
        assert!(obs.morays.iter().all(|m| m.enabled));
        h.scenario
            .client_write("sdc", b"after-rollback")
            .await
            .unwrap();
    }
}

/// The world with a failure armed: the next mutating call fails once.
struct Faulty<'a> {
    inner: &'a TritonTransplant,
    armed: std::sync::atomic::AtomicBool,
    fired: Mutex<Option<String>>,
    /// Only this kind of call trips (None: any mutation).
    only: Option<&'static str>,
}

impl Faulty<'_> {
    fn trip(&self, what: &str) -> Result<(), WorldError> {
        if self.only.is_some_and(|o| o != what) {
            return Ok(());
        }
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            *self.fired.lock().unwrap() = Some(what.to_string());
            return Err(WorldError::Unexpected(format!(
                "injected failure in {what}"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl TransplantObserve for Faulty<'_> {
    async fn observe(&self, shard: &str) -> Result<TransplantObs, WorldError> {
        self.inner.observe(shard).await
    }
    async fn resolve(&self, shard: &str, key: &str) -> Result<Option<String>, WorldError> {
        self.inner.resolve(shard, key).await
    }
    async fn approved(&self, op_id: &str, step: &str) -> Result<bool, WorldError> {
        self.inner.approved(op_id, step).await
    }
}

#[async_trait]
impl TransplantAct for Faulty<'_> {
    async fn svcadm(&self, zone: &str, enable: bool, fmri: &str) -> Result<(), WorldError> {
        self.trip("svcadm")?;
        self.inner.svcadm(zone, enable, fmri).await
    }
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
        self.trip("restart_sitter")?;
        self.inner.restart_sitter(zone).await
    }
    async fn set_sitter_onwm(&self, zone: &str, on: bool) -> Result<(), WorldError> {
        self.trip("set_sitter_onwm")?;
        self.inner.set_sitter_onwm(zone, on).await
    }
    async fn set_metadata(
        &self,
        zone: &str,
        key: &str,
        value: Option<bool>,
    ) -> Result<(), WorldError> {
        self.trip("set_metadata")?;
        self.inner.set_metadata(zone, key, value).await
    }
    async fn set_service_image(&self, shard: &str, image: &str) -> Result<(), WorldError> {
        self.trip("set_service_image")?;
        self.inner.set_service_image(shard, image).await
    }
    async fn reprovision(&self, zone: &str, image: &str) -> Result<(), WorldError> {
        self.trip("reprovision")?;
        self.inner.reprovision(zone, image).await
    }
    async fn create_instance(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        metadata: &[(&str, bool)],
    ) -> Result<(), WorldError> {
        self.trip("create_instance")?;
        self.inner
            .create_instance(shard, server, alias, metadata)
            .await
    }
    async fn delete_instance(&self, zone: &str) -> Result<(), WorldError> {
        self.trip("delete_instance")?;
        self.inner.delete_instance(zone).await
    }
    async fn snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError> {
        self.trip("snapshot")?;
        self.inner.snapshot(zone, name).await
    }
    async fn destroy_snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError> {
        self.trip("destroy_snapshot")?;
        self.inner.destroy_snapshot(zone, name).await
    }
    async fn destroy_dataset(&self, zone: &str) -> Result<(), WorldError> {
        self.trip("destroy_dataset")?;
        self.inner.destroy_dataset(zone).await
    }
    async fn send(&self, from: &str, snapshot: &str, to: &str) -> Result<(), WorldError> {
        self.trip("send")?;
        self.inner.send(from, snapshot, to).await
    }
    async fn set_moray(&self, zone: &str, enable: bool) -> Result<(), WorldError> {
        self.trip(if enable {
            "set_moray_on"
        } else {
            "set_moray_off"
        })?;
        self.inner.set_moray(zone, enable).await
    }
    async fn create_onwm_state(
        &self,
        shard: &str,
        zone: &str,
        reason: &str,
    ) -> Result<(), WorldError> {
        self.trip("create_onwm_state")?;
        self.inner.create_onwm_state(shard, zone, reason).await
    }
    async fn delete_own_state(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        self.inner.delete_own_state(shard, reason).await
    }
    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        self.trip("unfreeze_own")?;
        self.inner.unfreeze_own(shard, reason).await
    }
}

/// A failure injected into the first mutation of each step before the
/// point of no return makes the operation roll back cleanly; the same at
/// the point of no return or after it stops Blocked with the options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_failure_at_every_step_rolls_back_before_the_point_of_no_return_and_blocks_after() {
    let probe = Harness::start(LAB).await;
    let plan = probe.plan("newInstanceOnPrimaryServer", "op-f").await;
    let pnr = plan.forward.status.point_of_no_return.unwrap();
    let steps = plan.forward.status.steps.len();
    drop(probe);
    let mut fired_in = Vec::new();
    for k in 0..pnr + 2 {
        let mut h = Harness::start(LAB).await;
        let mut j = h.plan("newInstanceOnPrimaryServer", "op-f").await;
        // Step names carry zone ids, and which v1 zone is primary, sync or
        // async depends on the order the sitters joined the election, which
        // varies between datacenters (on a loaded machine especially): name
        // the steps of this datacenter's own plan, by position.
        assert_eq!(j.forward.status.steps.len(), steps);
        assert_eq!(j.forward.status.point_of_no_return, Some(pnr));
        let names: Vec<String> = j
            .forward
            .status
            .steps
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let name = &names[k];
        if k > 0 {
            let store = Saves {
                stop_at: Some((names[k - 1].clone(), StepState::Succeeded)),
                ..Default::default()
            };
            drive_until_stopped(&h, &mut j, &store).await;
        }
        let faulty = Faulty {
            inner: &h.world,
            armed: std::sync::atomic::AtomicBool::new(true),
            fired: Mutex::new(None),
            only: None,
        };
        let runner = TransplantRunner {
            world: &faulty as &dyn TransplantAct,
            shard: "sdc".into(),
            step_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(20),
            clock: &SystemClock,
        };
        let store = Saves::default();
        let out = loop {
            match drive(&mut j, &runner, &store, false, Duration::from_millis(20)).await {
                Ok(Outcome::Waiting { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(o) => break o,
                Err(e) => panic!("{e}"),
            }
        };
        let fired = faulty.fired.lock().unwrap().clone();
        let failed_at = j
            .forward
            .status
            .steps
            .iter()
            .position(|s| s.message.as_deref().is_some_and(|m| m.contains("injected")));
        fired_in.push(format!("{name}: {fired:?} -> {failed_at:?}"));
        match failed_at {
            Some(f) if f < pnr => {
                assert!(
                    matches!(out, Outcome::RolledBack { .. }),
                    "fault at {name}: {out:?}"
                );
                let obs = h.world.observe("sdc").await.unwrap();
                assert!(obs.state.is_none(), "fault at {name}");
                assert_eq!(
                    obs.legacy_topology().len(),
                    3,
                    "fault at {name}: {:#?}",
                    obs.zones
                );
                assert_eq!(obs.zones.len(), 3, "fault at {name}: the new zone is gone");
                assert!(
                    obs.zones
                        .iter()
                        .all(|z| z.image == images::MANATEE_V1 && !z.sitter_onwm)
                );
            }
            Some(_) => match &out {
                Outcome::Blocked { reason, message } => {
                    assert_eq!(*reason, BlockReason::PastPointOfNoReturn, "fault at {name}");
                    assert!(
                        message.contains("injected failure") && message.contains("restore-backup")
                    );
                    // Stopped: driving again neither retries nor rolls back.
                    let stop = j.stopped.clone().expect("a recorded stop");
                    let attempts = j.forward.status.steps[stop.step].attempts;
                    let again = drive(&mut j, &runner, &store, false, Duration::from_millis(20))
                        .await
                        .unwrap();
                    assert!(matches!(again, Outcome::Blocked { .. }), "{again:?}");
                    assert_eq!(j.forward.status.steps[stop.step].attempts, attempts);
                    assert!(j.rollback.is_none());
                }
                o => panic!("fault at {name} past the point of no return: {o:?}"),
            },
            None => panic!("fault at {name} never fired: {out:?}"),
        }
        let (_, lost, _) = h.finish().await;
        assert_eq!(lost, 0, "fault at {name}");
    }
    println!("{fired_in:#?}");
    assert!(fired_in.len() > pnr, "{fired_in:#?}");
}

/// A send that breaks half-way (before the point of no return) rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_rolls_back_and_a_failure_after_the_point_of_no_return_blocks() {
    let mut h = Harness::start(LAB).await;
    h.scenario
        .manatee
        .fail_next_send("cannot receive: I/O error");
    let mut j = h.plan("newInstanceOnPrimaryServer", "op-fail").await;
    let store = Saves::default();
    let runner = TransplantRunner {
        step_timeout: Duration::from_secs(20),
        send_timeout: Duration::from_secs(3),
        ..h.runner()
    };
    let out = loop {
        match drive(&mut j, &runner, &store, false, Duration::from_millis(20)).await {
            Ok(Outcome::Waiting { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(o) => break o,
            Err(e) => panic!("{e}"),
        }
    };
    let Outcome::RolledBack { why } = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("send-to-v2"), "{why}");
    let (_, lost, _) = h.finish().await;
    assert_eq!(lost, 0);
    let obs = h.world.observe("sdc").await.unwrap();
    assert!(obs.state.is_none());
    assert_eq!(
        obs.zones.len(),
        3,
        "the new v2 instance is deleted: {:#?}",
        obs.zones
    );

    // After the point of no return: a cancel is refused with the options.
    let mut h = Harness::start(COAL).await;
    let mut j = h.plan("newInstanceOnPrimaryServer", "op-pnr").await;
    let store = Saves {
        stop_at: Some((
            reconcilers::transplant::PNR_STEP.to_string(),
            StepState::Succeeded,
        )),
        ..Default::default()
    };
    drive_until_stopped(&h, &mut j, &store).await;
    assert!(!j.forward.status.can_roll_back());
    let store = Saves::default();
    let out = drive(&mut j, &h.runner(), &store, true, Duration::from_millis(20))
        .await
        .unwrap();
    match out {
        Outcome::Blocked { reason, message } => {
            assert_eq!(reason, BlockReason::PastPointOfNoReturn);
            assert!(message.contains("reverse-transplant") && message.contains("restore-backup"));
        }
        o => panic!("{o:?}"),
    }
    let _ = h.finish().await;
}

/// Through the controller's reconcile: `strategy: auto` picks the
/// transplant for a v1 shard, `describe` shows every step with the point
/// of no return before anything runs, the write outage waits for
/// `tritonctl approve`, and the document ends Ready. A rolling strategy
/// across the major boundary is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coal_reconcile_picks_transplant_and_refuses_rolling_across_majors() {
    use tritonctl::reconcile::{context, reconcile_manatee};
    use tritonctl::store::Store;
    use tritonctl::world::manatee::TritonManatee;

    let mut h = Harness::start(COAL).await;
    let session = h.world.coord.clone();
    let store = Store::new(session.clone());
    store.init().await.unwrap();
    let mut refused = doc("examples/scenarios/transplant/manatee.yaml", SCENARIO);
    if let Document::ManateeVersion(mv) = &mut refused {
        mv.spec.strategy = crds::manatee::Strategy::Rolling;
    }
    store.apply(&[refused]).await.unwrap();
    let mk = || TritonTransplant {
        triton: h.world.triton.clone(),
        coord: session.clone(),
        fence: None,
    };
    let manatee_world = TritonManatee {
        triton: h.world.triton.clone(),
        coord: session.clone(),
        fence: None,
    };
    let mut cx = context(
        store.clone(),
        manatee_world,
        None,
        Some(Duration::from_millis(20)),
    );
    cx.transplant = Some(Arc::new(mk()));
    reconcile_manatee(&cx, "sdc").await.unwrap();
    let st = store
        .status(crds::Kind::ManateeVersion, "sdc")
        .await
        .unwrap()
        .unwrap();
    let b = st.condition(crds::ConditionType::Blocked).unwrap();
    assert_eq!(b.reason, "MajorVersionChange", "{b:?}");
    assert!(
        h.world.observe("sdc").await.unwrap().state.is_none(),
        "nothing ran"
    );

    // auto (the example as written), while another operation (an HA setup
    // of the same shard) holds the shard's lock: the transplant waits,
    // Blocked ShardLocked, and plans nothing.
    store
        .apply(&[doc("examples/scenarios/transplant/manatee.yaml", SCENARIO)])
        .await
        .unwrap();
    assert_eq!(
        tritonctl::shard_lock::acquire(&session, None, "sdc", "HeadnodeSet/coal")
            .await
            .unwrap(),
        None
    );
    reconcile_manatee(&cx, "sdc").await.unwrap();
    let st = store
        .status(crds::Kind::ManateeVersion, "sdc")
        .await
        .unwrap()
        .unwrap();
    let b = st.condition(crds::ConditionType::Blocked).unwrap();
    assert_eq!(b.reason, "ShardLocked", "{b:?}");
    assert!(
        session
            .exists(&tritonctl::layout::transplant_journal_path("sdc", "sdc"))
            .await
            .unwrap()
            .is_none(),
        "no transplant was planned while the shard was locked"
    );
    tritonctl::shard_lock::release(&session, None, "sdc", "HeadnodeSet/coal")
        .await
        .unwrap();

    // `tritonctl pause` holds the transplant as it holds a rolling upgrade.
    tritonctl::pause::pause(
        &session,
        crds::Kind::ManateeVersion,
        "sdc",
        tritonctl::pause::PauseMarker::new("alice@hn0", None),
    )
    .await
    .unwrap();
    reconcile_manatee(&cx, "sdc").await.unwrap();
    let st = store
        .status(crds::Kind::ManateeVersion, "sdc")
        .await
        .unwrap()
        .unwrap();
    assert!(st.is_true(crds::ConditionType::Paused), "{st:#?}");
    assert!(
        session
            .exists(&tritonctl::layout::transplant_journal_path("sdc", "sdc"))
            .await
            .unwrap()
            .is_none(),
        "no transplant was planned while paused"
    );
    tritonctl::pause::resume(&session, crds::Kind::ManateeVersion, "sdc")
        .await
        .unwrap();

    // Then: plan shown, then waits for approval.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut approved = false;
    loop {
        reconcile_manatee(&cx, "sdc").await.unwrap();
        let st = store
            .status(crds::Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .unwrap();
        let op = st.operation.clone().expect("the plan is in status");
        assert_eq!(op.kind, "manatee-transplant");
        let text = tritonctl::cli::output::describe_operation(&op);
        assert!(text.contains("[point of no return]"), "{text}");
        if st.is_true(crds::ConditionType::Ready) {
            assert!(approved);
            break;
        }
        let waiting = op
            .steps
            .iter()
            .any(|s| s.name == "approve-write-outage" && s.state == StepState::Waiting);
        if waiting && !approved {
            assert!(text.contains("Rollback:        possible"), "{text}");
            // Nothing disruptive for writes has run yet.
            assert!(h.scenario.moray_online());
            let done = tritonctl::reconcile::approve(&session, crds::Kind::ManateeVersion, "sdc")
                .await
                .unwrap();
            assert_eq!(done.len(), 1, "{done:?}");
            approved = true;
        }
        assert!(Instant::now() < deadline, "{:#?}", st);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        tritonctl::shard_lock::acquire(&session, None, "sdc", "HeadnodeSet/coal")
            .await
            .unwrap(),
        None,
        "the finished transplant released the shard's lock"
    );
    let (_, lost, _) = h.finish().await;
    assert_eq!(lost, 0);
    assert_all_v2(&h, 1).await;
}

/// Store the journal where `tritonctl approve` finds it (as the controller
/// would), so the CLI's decision path reads the real stop.
async fn publish(coord: &Arc<dyn Coordination>, j: &TransplantJournal) {
    let path = tritonctl::layout::transplant_journal_path("sdc", "sdc");
    coord
        .mkdirp(path.rsplit_once('/').unwrap().0)
        .await
        .unwrap();
    let op = tritonctl::store::upsert_op(coord.as_ref(), &path, serde_json::to_vec(j).unwrap())
        .await
        .unwrap();
    coord.multi(vec![op]).await.unwrap();
}

/// Past the point of no return a failure stops the transplant Blocked and
/// then nothing happens (no retry, no rollback) until a person approves an
/// option for that very stop. `restore-backup` and `reverse-transplant` are
/// refused with what they would run (nothing recorded); `resume` retries
/// the failed step once; a second failure is a new stop that the first
/// approval does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coal_failure_past_the_point_of_no_return_waits_for_an_explicit_decision() {
    use reconcilers::transplant::{PNR_STEP, decision_key};
    let mut h = Harness::start(COAL).await;
    let mut j = h.plan("newInstanceOnPrimaryServer", "op-decide").await;
    let store = Saves {
        stop_at: Some((PNR_STEP.to_string(), StepState::Succeeded)),
        ..Default::default()
    };
    drive_until_stopped(&h, &mut j, &store).await;
    let faulty = Faulty {
        inner: &h.world,
        armed: std::sync::atomic::AtomicBool::new(true),
        fired: Mutex::new(None),
        only: None,
    };
    let runner = TransplantRunner {
        world: &faulty as &dyn TransplantAct,
        shard: "sdc".into(),
        step_timeout: Duration::from_secs(20),
        send_timeout: Duration::from_secs(20),
        clock: &SystemClock,
    };
    let store = Saves::default();
    macro_rules! drive_once {
        ($j:expr) => {
            drive($j, &runner, &store, false, Duration::from_millis(20))
        };
    }
    // The next mutation (start-writes enabling a moray) fails: stop 1.
    let out = loop {
        match drive_once!(&mut j).await.unwrap() {
            Outcome::Waiting { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            o => break o,
        }
    };
    let Outcome::Blocked { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(*reason, BlockReason::PastPointOfNoReturn);
    assert!(message.contains("injected failure"), "{message}");
    assert!(message.contains("--option"), "{message}");
    let stop = j.stopped.clone().expect("the stop is in the journal");
    assert_eq!((stop.seq, stop.name.as_str()), (1, "start-writes"));
    assert!(faulty.fired.lock().unwrap().is_some());
    let attempts = j.forward.status.steps[stop.step].attempts;

    // Nothing happens without an approval, however often it is driven
    // (the fault is disarmed: a retry would now succeed, and must not run).
    for _ in 0..5 {
        let again = drive_once!(&mut j).await.unwrap();
        assert!(
            matches!(&again, Outcome::Blocked { reason, .. } if *reason == BlockReason::PastPointOfNoReturn),
            "{again:?}"
        );
        assert_eq!(j.forward.status.steps[stop.step].attempts, attempts);
        assert!(!h.scenario.moray_online(), "a retry ran without approval");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        j.rollback.is_none(),
        "no rollback past the point of no return"
    );
    // A plain approve does not answer it.
    let coord = h.world.coord.clone();
    publish(&coord, &j).await;
    let plain = tritonctl::reconcile::approve(&coord, crds::Kind::ManateeVersion, "sdc")
        .await
        .unwrap();
    assert!(plain.is_empty(), "{plain:?}");
    let hint = tritonctl::reconcile::decisions::stopped(&coord, "sdc")
        .await
        .unwrap();
    assert!(hint[0].contains("--option resume"), "{hint:?}");

    // restore-backup and reverse-transplant: refused, nothing recorded.
    let id = j.forward.status.id.clone();
    for option in ["restore-backup", "reverse-transplant"] {
        let e = tritonctl::reconcile::decisions::decide(&coord, "sdc", option)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                tritonctl::reconcile::decisions::DecisionError::Refused(_)
            ),
            "{e}"
        );
        assert!(e.to_string().contains("not automated"), "{e}");
        assert!(
            !h.world
                .approved(&id, &decision_key(stop.seq, option))
                .await
                .unwrap()
        );
    }
    let e = tritonctl::reconcile::decisions::decide(&coord, "sdc", "restore-backup")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zfs rollback -r") && e.contains("DISCARDS every write"),
        "{e}"
    );
    assert!(matches!(
        drive_once!(&mut j).await.unwrap(),
        Outcome::Blocked { .. }
    ));
    assert!(!h.scenario.moray_online());

    // resume, with a second fault armed: the retry fails again -> stop 2,
    // which the first approval does not answer.
    let done = tritonctl::reconcile::decisions::decide(&coord, "sdc", "resume")
        .await
        .unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    faulty
        .armed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let out = drive_once!(&mut j).await.unwrap();
    assert!(matches!(&out, Outcome::Blocked { .. }), "{out:?}");
    let stop2 = j.stopped.clone().expect("a second stop");
    assert_eq!(stop2.seq, 2);
    assert_eq!(j.decisions.len(), 1, "{:?}", j.decisions);
    assert_eq!(
        j.forward.status.steps[stop.step].attempts,
        attempts + 1,
        "resume retried the step exactly once"
    );
    let attempts = j.forward.status.steps[stop.step].attempts;
    for _ in 0..3 {
        assert!(matches!(
            drive_once!(&mut j).await.unwrap(),
            Outcome::Blocked { .. }
        ));
        assert_eq!(j.forward.status.steps[stop.step].attempts, attempts);
    }
    publish(&coord, &j).await;
    tritonctl::reconcile::decisions::decide(&coord, "sdc", "resume")
        .await
        .unwrap();
    let out = loop {
        match drive_once!(&mut j).await.unwrap() {
            Outcome::Waiting { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            o => break o,
        }
    };
    assert_eq!(out, Outcome::Completed, "{:#?}", j.forward.status);
    assert_eq!(j.decisions.len(), 2, "{:?}", j.decisions);
    assert!(j.stopped.is_none());
    let (acked, lost, outage) = h.finish().await;
    assert_eq!(lost, 0);
    assert!(acked > 10);
    println!("outage while stopped past the point of no return: {outage:?}");
    assert_all_v2(&h, 1).await;
}

/// `tritonctl controller`'s path, not only the library driver: the daemon
/// (elected, leader-guarded clients, triggers, `Dispatch`) picks the
/// transplant for `strategy: auto` and runs the coal shard to Ready with the
/// writer running; no acknowledged write is lost and the write outage is
/// reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coal_controller_daemon_runs_the_transplant_to_ready_with_the_writer_running() {
    use tritonctl::daemon::{Daemon, DaemonConfig, Phase};
    use tritonctl::store::Store;

    let mut h = Harness::start(COAL).await;
    let session = h.world.coord.clone();
    let urls = h.scenario.servers.urls().clone();
    let mut cfg = DaemonConfig::new(Endpoints {
        sapi: urls.sapi.clone(),
        vmapi: urls.vmapi.clone(),
        cnapi: urls.cnapi.clone(),
        imgapi: urls.imgapi.clone(),
    });
    cfg.identity = "transplant-test-controller".into();
    cfg.step_poll = Some(Duration::from_millis(20));
    cfg.poll_interval = Duration::from_secs(1);
    cfg.shutdown_grace = Duration::from_secs(5);
    let daemon = Daemon::new(session.clone(), cfg);
    let mut phase = daemon.phase();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(daemon.run(async move {
        let _ = stop_rx.await;
    }));
    tokio::time::timeout(
        Duration::from_secs(60),
        phase.wait_for(|p| matches!(p, Phase::Leading(_))),
    )
    .await
    .expect("the controller is elected")
    .unwrap();

    let store = Store::new(session.clone());
    store.init().await.unwrap();
    let mut mv = doc("examples/scenarios/transplant/manatee.yaml", SCENARIO);
    if let Document::ManateeVersion(m) = &mut mv {
        m.spec.rollout.approval = crds::manatee::Approval::Never;
    }
    let t0 = Instant::now();
    store.apply(&[mv]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(st) = store
            .status(crds::Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
        {
            if st.is_true(crds::ConditionType::Ready) {
                let op = st.operation.expect("the transplant is in status");
                assert_eq!(op.kind, "manatee-transplant");
                assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
                break;
            }
            if let Some(b) = st.condition(crds::ConditionType::Blocked)
                && b.status == crds::ConditionStatus::True
            {
                panic!("the controller stopped Blocked: {b:?}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "not Ready in time: {:#?}",
            store.status(crds::Kind::ManateeVersion, "sdc").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = t0.elapsed();
    let (acked, lost, outage) = h.finish().await;
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("the controller stops")
        .unwrap()
        .expect("a clean stop");
    println!(
        "controller path, coal transplant: total {:.2}s, write outage {:.2}s, acked {acked}, lost {lost}",
        total.as_secs_f64(),
        outage.as_secs_f64()
    );
    assert_eq!(lost, 0, "an acknowledged write was lost");
    assert!(acked > 10, "the writer barely ran");
    assert!(
        outage > Duration::ZERO && outage < total,
        "writes stop for steps 6-7 only: {outage:?} of {total:?}"
    );
    assert_all_v2(&h, 1).await;
    let events = tritonctl::runtime::events::Events::new(session.clone())
        .list(Some("ManateeVersion/sdc"))
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.reason == "OperationPlanned" && e.event.message.contains("transplant")),
        "{events:#?}"
    );
}

/// Through the controller's reconcile: a failure past the point of no
/// return stops the document Blocked; `describe` and the events say so with
/// the exact command; reconciling again changes nothing; `approve --option
/// resume` (the CLI's path) lets it finish Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coal_reconcile_stops_past_the_point_of_no_return_until_resume_is_approved() {
    use tritonctl::reconcile::{context, reconcile_manatee};
    use tritonctl::store::Store;
    use tritonctl::world::manatee::TritonManatee;

    let mut h = Harness::start(COAL).await;
    let session = h.world.coord.clone();
    let store = Store::new(session.clone());
    store.init().await.unwrap();
    let mut mv = doc("examples/scenarios/transplant/manatee.yaml", SCENARIO);
    if let Document::ManateeVersion(m) = &mut mv {
        m.spec.rollout.approval = crds::manatee::Approval::Never;
    }
    store.apply(&[mv]).await.unwrap();
    // start-writes (the first moray enable, right after the point of no
    // return) fails once.
    let inner: &'static TritonTransplant = Box::leak(Box::new(TritonTransplant {
        triton: h.world.triton.clone(),
        coord: session.clone(),
        fence: None,
    }));
    let faulty = Arc::new(Faulty {
        inner,
        armed: std::sync::atomic::AtomicBool::new(true),
        fired: Mutex::new(None),
        only: Some("set_moray_on"),
    });
    let mut cx = context(
        store.clone(),
        TritonManatee {
            triton: h.world.triton.clone(),
            coord: session.clone(),
            fence: None,
        },
        None,
        Some(Duration::from_millis(20)),
    );
    cx.transplant = Some(faulty.clone());
    let status = || async {
        store
            .status(crds::Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        reconcile_manatee(&cx, "sdc").await.unwrap();
        let st = status().await;
        if st
            .condition(crds::ConditionType::Blocked)
            .is_some_and(|b| b.status == crds::ConditionStatus::True)
        {
            break;
        }
        assert!(
            !st.is_true(crds::ConditionType::Ready),
            "the fault never fired"
        );
        assert!(Instant::now() < deadline, "{st:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = status().await;
    let b = st.condition(crds::ConditionType::Blocked).unwrap();
    assert_eq!(b.reason, "PastPointOfNoReturn", "{b:?}");
    assert!(
        b.message
            .contains("tritonctl approve manateeversion/sdc --option"),
        "{}",
        b.message
    );
    let text = tritonctl::cli::output::describe_operation(st.operation.as_ref().unwrap());
    assert!(
        text.contains("manateeversion/sdc --option") && text.contains("Stop 1"),
        "{text}"
    );
    let events = tritonctl::runtime::events::Events::new(session.clone());
    let reasons = |l: Vec<tritonctl::runtime::events::EventRecord>| {
        l.into_iter().map(|e| e.event.reason).collect::<Vec<_>>()
    };
    let r = reasons(events.list(Some("ManateeVersion/sdc")).await.unwrap());
    assert_eq!(
        r.iter().filter(|x| *x == "PastPointOfNoReturn").count(),
        1,
        "{r:?}"
    );
    // Reconciling again does nothing (no retry, no second stop).
    for _ in 0..3 {
        reconcile_manatee(&cx, "sdc").await.unwrap();
        assert!(!h.scenario.moray_online(), "a retry ran without approval");
    }
    let r = reasons(events.list(Some("ManateeVersion/sdc")).await.unwrap());
    assert_eq!(r.iter().filter(|x| *x == "PastPointOfNoReturn").count(), 1);

    tritonctl::reconcile::decisions::approve_transplant(&session, "sdc", Some("resume"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        reconcile_manatee(&cx, "sdc").await.unwrap();
        if status().await.is_true(crds::ConditionType::Ready) {
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", status().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = reasons(events.list(Some("ManateeVersion/sdc")).await.unwrap());
    assert!(r.iter().any(|x| x == "DecisionApproved"), "{r:?}");
    let (_, lost, outage) = h.finish().await;
    assert_eq!(lost, 0);
    println!("write outage including the stop: {outage:?}");
    assert_all_v2(&h, 1).await;
}
