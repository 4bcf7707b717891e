//! A reprovision is sent at most once per step: a controller that resumes
//! (or whose first call failed in transit) while the zone's reprovision job
//! is still running finds that job and sends nothing. Judged from the
//! simulator's own job records.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::{Lab, example, job_spans};
use reconcilers::manatee::{ManateeAct, ManateeObserve};
use sim::scenario::{ScenarioOptions, images};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprovision_under_way_is_never_sent_twice() {
    let lab = Lab::start(
        &[example("lab/headnodeset.yaml")],
        ScenarioOptions::default(),
        None,
    )
    .await;
    let obs = lab.cx.world.observe("sdc").await.unwrap();
    let zone = obs
        .peers
        .iter()
        .find(|p| p.image != images::MANATEE_V2_NEXT)
        .expect("a peer on the old image")
        .zone
        .clone();

    // The first call blocks until its job ends (SAPI UpgradeInstance waits),
    // like a call whose controller is killed, or whose HTTP timeout fires,
    // while the job runs.
    let first = {
        let world = lab.cx.world.clone();
        let zone = zone.clone();
        tokio::spawn(async move {
            world
                .reprovision(&zone, images::MANATEE_V2_NEXT, "op-test")
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !lab.cx.world.reprovision_in_flight(&zone).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reprovision job never showed up in VMAPI"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The resumed step's action, while the job runs: sends nothing.
    lab.cx
        .world
        .reprovision(&zone, images::MANATEE_V2_NEXT, "op-test")
        .await
        .unwrap();
    first.await.unwrap().unwrap();
    let jobs: Vec<_> = job_spans(&lab.scenario.dc, "reprovision")
        .into_iter()
        .filter(|j| j.vm == zone)
        .collect();
    assert_eq!(jobs.len(), 1, "reprovision jobs for {zone}: {jobs:?}");
    assert!(!lab.cx.world.reprovision_in_flight(&zone).await.unwrap());
}
