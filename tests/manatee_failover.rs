//! The primary's server dies in the middle of a lab upgrade. The shard takes
//! over by itself (the sync becomes primary, the old primary is deposed);
//! the controller re-observes, drops its plan (Replan), waits while the
//! deposed zone is down, rebuilds it once its server is back, and finishes
//! the upgrade. A client writes throughout; no acknowledged write is lost.

#[path = "harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use crds::status::StepState;
use crds::{ConditionType, Kind};
use harness::{Lab, Writer, drive, example, job_spans, lost_writes};
use sim::scenario::{ScenarioOptions, images};
use tritonctl::reconcile::{load_journals, reconcile_manatee};

async fn until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_server_dies_mid_upgrade_and_the_upgrade_still_converges() {
    let hs = example("lab/headnodeset.yaml");
    // An approval before the primary step gives a deterministic moment at
    // which the shard is whole and the controller waits: the primary's
    // server dies then. (Killed while the sync is away, the shard could not
    // take over at all: a primary is only replaced by a sync with an async.)
    let text = std::fs::read_to_string(e2e::repo().join("examples/lab/manatee.yaml"))
        .unwrap()
        .replace("approval: never", "approval: beforePrimary");
    let mv = harness::parse("lab manatee with approval", &text);
    let lab = Lab::start(std::slice::from_ref(&hs), ScenarioOptions::default(), None).await;
    let shard = lab.scenario.manatee.shard("sdc");
    let old = shard.state().await.unwrap().unwrap();
    let old_primary = old.primary.zone_id.clone();
    let server = lab
        .scenario
        .dc
        .vm(&old_primary)
        .unwrap()
        .server_uuid
        .unwrap();
    let writer = Writer::start(shard.clone(), "failover");
    lab.apply(&[hs, mv]).await;

    let fault = async {
        // Once the async and the sync are done, the primary's server dies.
        until("the approval step", Duration::from_secs(60), || async {
            load_journals(&lab.session, Kind::ManateeVersion, "sdc")
                .await
                .unwrap_or_default()
                .iter()
                .any(|(_, op, _)| {
                    op.status
                        .steps
                        .iter()
                        .any(|s| s.name == "approve-primary" && s.state == StepState::Waiting)
                })
        })
        .await;
        lab.scenario.dc.set_server_dead(&server, true).unwrap();
        // The shard takes over by itself.
        until("the takeover", Duration::from_secs(60), || async {
            shard
                .state()
                .await
                .ok()
                .flatten()
                .is_some_and(|st| st.primary.zone_id != old_primary && !st.deposed.is_empty())
        })
        .await;
        // The controller re-plans and waits for the deposed zone to come back.
        until(
            "the controller to wait for the dead zone",
            Duration::from_secs(60),
            || async {
                lab.store
                    .status(Kind::ManateeVersion, "sdc")
                    .await
                    .unwrap()
                    .and_then(|s| s.condition(ConditionType::Blocked).cloned())
                    .is_some_and(|c| c.reason == "DeposedPeerDown")
            },
        )
        .await;
        // It never touched the dead zone meanwhile.
        let touched = job_spans(&lab.scenario.dc, "reprovision")
            .iter()
            .filter(|s| s.vm == old_primary)
            .count();
        assert_eq!(touched, 0, "the dead primary was reprovisioned");
        // The server comes back (a reboot): its zone boots, deposed.
        lab.scenario.dc.set_server_dead(&server, false).unwrap();
    };
    let converge = drive(
        Duration::from_secs(180),
        || reconcile_manatee(&lab.cx, "sdc"),
        || async {
            // Ready only counts once the fault has run its course.
            lab.ready(Kind::ManateeVersion, "sdc").await
                && !lab.scenario.dc.is_server_dead(&server)
                && shard
                    .state()
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|st| st.primary.zone_id != old_primary)
        },
    );
    tokio::join!(fault, converge);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = writer.stop().await;

    let st = shard.state().await.unwrap().unwrap();
    assert!(st.generation > old.generation, "{st:?}");
    assert!(st.deposed.is_empty(), "{st:?}");
    assert!(!st.is_frozen(), "{st:?}");
    assert!(st.sync.is_some() && st.asyncs.len() == 1, "{st:?}");
    for z in &lab.scenario.shards["sdc"] {
        assert_eq!(
            lab.scenario.dc.vm(z).unwrap().image_uuid.as_deref(),
            Some(images::MANATEE_V2_NEXT),
            "{z}"
        );
    }
    // Never two peers reprovisioning at once (the simulator's record).
    let spans = job_spans(&lab.scenario.dc, "reprovision");
    for w in spans.windows(2) {
        assert!(w[1].start >= w[0].end, "{spans:?}");
    }
    assert_eq!(
        lost_writes(&shard, &log).await,
        0,
        "acknowledged writes lost"
    );
    assert!(log.acked.len() > 20, "{} acked", log.acked.len());
    lab.shutdown().await;
}
