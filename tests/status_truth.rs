//! Status tells the truth (issue #12, items 1 and 2), against the lab
//! through the real clients: Ready and Progressing at every step boundary
//! of an upgrade, and a reconcile error in status and the event log.

#[path = "harness/mod.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coord::{Coordination, CreateMode, Expect, Op, OpResult, SessionState, Stat, Watch};
use crds::status::OperationPhase;
use crds::{ConditionStatus, ConditionType, Kind, Status};
use harness::{Lab, drive, example};
use sim::scenario::{ScenarioOptions, images};
use tritonctl::reconcile::{context, reconcile_manatee};
use tritonctl::runtime::events::{EventType, Events};
use tritonctl::store::Store;
use tritonctl::world::manatee::TritonManatee;

/// A session that keeps every status written together with an operation
/// journal: the status a reader sees at each step boundary.
struct Recording {
    inner: Arc<dyn Coordination>,
    samples: Mutex<Vec<Status>>,
}

#[async_trait]
impl Coordination for Recording {
    fn session_id(&self) -> i64 {
        self.inner.session_id()
    }
    fn session_state(&self) -> SessionState {
        self.inner.session_state()
    }
    fn session_events(&self) -> tokio::sync::watch::Receiver<SessionState> {
        self.inner.session_events()
    }
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> coord::Result<String> {
        self.inner.create(path, data, mode).await
    }
    async fn get(&self, path: &str) -> coord::Result<(Vec<u8>, Stat)> {
        self.inner.get(path).await
    }
    async fn get_watch(&self, path: &str) -> coord::Result<(Vec<u8>, Stat, Watch)> {
        self.inner.get_watch(path).await
    }
    async fn exists(&self, path: &str) -> coord::Result<Option<Stat>> {
        self.inner.exists(path).await
    }
    async fn exists_watch(&self, path: &str) -> coord::Result<(Option<Stat>, Watch)> {
        self.inner.exists_watch(path).await
    }
    async fn set(&self, path: &str, data: &[u8], expect: Expect) -> coord::Result<Stat> {
        self.inner.set(path, data, expect).await
    }
    async fn delete(&self, path: &str, expect: Expect) -> coord::Result<()> {
        self.inner.delete(path, expect).await
    }
    async fn children(&self, path: &str) -> coord::Result<Vec<String>> {
        self.inner.children(path).await
    }
    async fn children_watch(&self, path: &str) -> coord::Result<(Vec<String>, Watch)> {
        self.inner.children_watch(path).await
    }
    async fn multi(&self, ops: Vec<Op>) -> coord::Result<Vec<OpResult>> {
        let status_path = tritonctl::layout::status_path(Kind::ManateeVersion, "sdc");
        let journal_dir = tritonctl::layout::journal_dir(Kind::ManateeVersion, "sdc");
        let with_journal = ops.iter().any(|o| o.path().starts_with(&journal_dir));
        let status = ops.iter().find_map(|o| match o {
            Op::Create { path, data, .. } | Op::Set { path, data, .. } if *path == status_path => {
                Some(serde_json::from_slice::<Status>(data).unwrap())
            }
            _ => None,
        });
        let r = self.inner.multi(ops).await;
        if r.is_ok()
            && with_journal
            && let Some(s) = status
        {
            self.samples.lock().unwrap().push(s);
        }
        r
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

fn lab_manatee(image: &str) -> crds::Document {
    let text = std::fs::read_to_string(e2e::repo().join("examples/lab/manatee.yaml"))
        .unwrap()
        .replace(images::MANATEE_V2_NEXT, image);
    harness::parse("lab manatee", &text)
}

/// Issue #12, item 1: from the moment an operation for the new generation
/// is planned until it succeeds, every status a reader can see says Ready
/// False and Progressing True with the step, for that generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_an_upgrade_shows_ready_false_and_the_step() {
    let hs = example("lab/headnodeset.yaml");
    let lab = Lab::start(std::slice::from_ref(&hs), ScenarioOptions::default(), None).await;
    let rec = Arc::new(Recording {
        inner: lab.session.clone(),
        samples: Mutex::default(),
    });
    let session: Arc<dyn Coordination> = rec.clone();
    let fence = Some(lab.leadership.fence().clone());
    let world = TritonManatee {
        triton: lab.cx.world.triton.clone(),
        coord: session.clone(),
        fence: fence.clone(),
    };
    let cx = context(
        Store::new(session),
        world,
        fence,
        Some(Duration::from_millis(20)),
    );
    // Generation 1 asks for what runs: Ready, no operation.
    lab.apply(&[hs, lab_manatee(images::MANATEE_V2_CURRENT)])
        .await;
    drive(
        Duration::from_secs(60),
        || reconcile_manatee(&cx, "sdc"),
        || lab.ready(Kind::ManateeVersion, "sdc"),
    )
    .await;
    assert!(rec.samples.lock().unwrap().is_empty(), "no operation ran");
    // Generation 2: the upgrade.
    lab.apply(&[lab_manatee(images::MANATEE_V2_NEXT)]).await;
    drive(
        Duration::from_secs(180),
        || reconcile_manatee(&cx, "sdc"),
        || async {
            lab.store
                .status(Kind::ManateeVersion, "sdc")
                .await
                .unwrap()
                .is_some_and(|s| {
                    s.observed_generation == Some(2) && s.is_true(ConditionType::Ready)
                })
        },
    )
    .await;
    let samples = rec.samples.lock().unwrap().clone();
    let running: Vec<&Status> = samples
        .iter()
        .filter(|s| {
            s.operation.as_ref().is_some_and(|o| {
                matches!(
                    o.phase,
                    OperationPhase::Pending | OperationPhase::Running | OperationPhase::Waiting
                )
            })
        })
        .collect();
    assert!(
        running.len() >= 7,
        "a save before and after each step: {} samples",
        running.len()
    );
    for s in running {
        let op = s.operation.as_ref().unwrap();
        let ready = s.condition(ConditionType::Ready);
        let progressing = s.condition(ConditionType::Progressing);
        assert_eq!(s.observed_generation, Some(2), "{s:#?}");
        assert_eq!(
            ready.map(|c| c.status),
            Some(ConditionStatus::False),
            "Ready while {op:?} runs: {s:#?}"
        );
        let p = progressing.expect("Progressing reported");
        assert_eq!(p.status, ConditionStatus::True, "{s:#?}");
        // The step under way (or, in the last save before the operation
        // is marked done, that all steps are).
        match op
            .steps
            .iter()
            .find(|st| st.state != crds::StepState::Succeeded)
        {
            Some(step) => assert!(p.message.contains(&step.name), "{p:?} names {}", step.name),
            None => assert!(p.message.contains("steps done"), "{p:?}"),
        }
        assert_eq!(p.observed_generation, Some(2), "{p:?}");
    }
    lab.shutdown().await;
}

/// Issue #12, item 2: the manatee-upgrade scenario applied to the lab (no
/// Manta there) is a Degraded condition naming the cause, and one Warning
/// event however often the reconcile is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_error_reaches_status_and_one_warning_event() {
    let hs = example("lab/headnodeset.yaml");
    let lab = Lab::start(std::slice::from_ref(&hs), ScenarioOptions::default(), None).await;
    let mv = example("scenarios/manatee-upgrade/manatee.yaml");
    let name = mv.name().to_string();
    lab.apply(&[hs, mv]).await;
    for _ in 0..3 {
        let e = reconcile_manatee(&lab.cx, &name).await.unwrap_err();
        assert!(e.to_string().contains("manta"), "{e}");
    }
    let st = lab
        .store
        .status(Kind::ManateeVersion, &name)
        .await
        .unwrap()
        .expect("status written: not `not reconciled yet`");
    let d = st
        .condition(ConditionType::Degraded)
        .expect("Degraded reported");
    assert_eq!(d.status, ConditionStatus::True, "{d:?}");
    assert!(d.message.contains("manta"), "{d:?}");
    let warnings: Vec<_> = Events::new(lab.session.clone())
        .list(Some(&format!("ManateeVersion/{name}")))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.event_type == EventType::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].event.message, d.message);
    lab.shutdown().await;
}
