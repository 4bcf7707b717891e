//! SAPI's create and upgrade last as long as their VMAPI job. Here every
//! one of them outlasts the client's timeout ([`harness::slow_jobs`] with
//! [`harness::impatient_timeouts`]): the rolling upgrade and the HA setup
//! still converge through the real clients, every lost answer is resolved
//! from the world before anything is decided (no reconcile error, no failed
//! step), and no VM gets a second job (the simulator's own record).
//! The transplant's run is in `transplant.rs`.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use crds::Kind;
use harness::{
    Lab, assert_outlasted, drive_without_errors, example, impatient_timeouts, job_spans, parse,
    slow_jobs, vms_with_repeated_jobs,
};
use reconcilers::manatee::{ManateeAct, ManateeObserve};
use sim::scenario::images;
use tritonctl::reconcile::{reconcile_headnodes, reconcile_manatee};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_whose_reprovisions_outlast_the_client_converges() {
    let lab = Lab::start_with_timeouts(
        &[example("lab/headnodeset.yaml")],
        slow_jobs(),
        None,
        impatient_timeouts(),
    )
    .await;
    lab.apply(&[example("lab/manatee.yaml")]).await;
    drive_without_errors(
        Duration::from_secs(120),
        || reconcile_manatee(&lab.cx, "sdc"),
        || lab.ready(Kind::ManateeVersion, "sdc"),
    )
    .await;

    let obs = lab.cx.world.observe("sdc").await.unwrap();
    assert_eq!(obs.peers.len(), 3);
    assert!(
        obs.peers.iter().all(|p| p.image == images::MANATEE_V2_NEXT),
        "{:#?}",
        obs.peers
    );
    // One reprovision per zone, no more, no fewer, each longer than the
    // client waited.
    let spans = job_spans(&lab.scenario.dc, "reprovision");
    assert_eq!(spans.len(), 3, "{spans:?}");
    assert_outlasted(&spans, impatient_timeouts().sapi_job);
    assert_eq!(
        vms_with_repeated_jobs(&lab.scenario.dc, "reprovision"),
        Vec::<String>::new()
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_setup_whose_provisions_outlast_the_client_converges() {
    let text = std::fs::read_to_string(e2e::repo().join("examples/lab/headnodeset.yaml"))
        .unwrap()
        .replace(
            "manatee: [headnode0, headnode1, headnode2]",
            "manatee: [headnode0]",
        );
    let one_peer = parse("lab with one manatee", &text);
    let lab = Lab::start_with_timeouts(&[one_peer], slow_jobs(), None, impatient_timeouts()).await;
    lab.apply(&[example("lab/headnodeset.yaml")]).await;
    drive_without_errors(
        Duration::from_secs(120),
        || reconcile_headnodes(&lab.cx, "lab"),
        || lab.ready(Kind::HeadnodeSet, "lab"),
    )
    .await;

    let st = lab
        .scenario
        .manatee
        .shard("sdc")
        .state()
        .await
        .unwrap()
        .unwrap();
    assert!(!st.is_one_node_write_mode(), "{st:?}");
    assert!(st.sync.is_some() && st.asyncs.len() == 1, "{st:?}");
    // Exactly two zones were created, each provisioned once, and each
    // has its SAPI instance.
    let provisions = job_spans(&lab.scenario.dc, "provision");
    assert_eq!(provisions.len(), 2, "{provisions:?}");
    assert_outlasted(&provisions, impatient_timeouts().sapi_job);
    assert_eq!(
        vms_with_repeated_jobs(&lab.scenario.dc, "provision"),
        Vec::<String>::new()
    );
    for p in &provisions {
        assert!(lab.scenario.dc.instance(&p.vm).is_some(), "{}", p.vm);
    }
    lab.shutdown().await;
}

/// A lab whose jobs outlast the client, and the zone of its first peer.
async fn slow_lab() -> (Lab, String) {
    let lab = Lab::start_with_timeouts(
        &[example("lab/headnodeset.yaml")],
        slow_jobs(),
        None,
        impatient_timeouts(),
    )
    .await;
    let zone = lab.cx.world.observe("sdc").await.unwrap().peers[0]
        .zone
        .clone();
    (lab, zone)
}

/// SAPI never sees an upgrade whose request is held up on the way longer
/// than the client waits (the connection closes first): no job, no effect,
/// so it is sent again, once, and then done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_lost_before_sapi_saw_it_is_sent_again_once() {
    let (lab, zone) = slow_lab().await;
    lab.scenario.dc.add_fault(held_up_upgrades(1));
    lab.cx
        .world
        .reprovision(&zone, images::MANATEE_V2_NEXT, "op-test")
        .await
        .expect("sent again once, then done");
    let vm = lab.scenario.dc.vm(&zone).unwrap();
    assert_eq!(vm.image_uuid.as_deref(), Some(images::MANATEE_V2_NEXT));
    let jobs: Vec<_> = job_spans(&lab.scenario.dc, "reprovision");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    lab.shutdown().await;
}

/// Lost twice with no trace: it stops with what was seen, and sends no third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_lost_twice_before_sapi_saw_it_stops() {
    let (lab, zone) = slow_lab().await;
    lab.scenario.dc.add_fault(held_up_upgrades(3));
    let err = lab
        .cx
        .world
        .reprovision(&zone, images::MANATEE_V2_NEXT, "op-test")
        .await
        .expect_err("no third send");
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(err.to_string().contains("sent twice"), "{err}");
    let left = lab.scenario.dc.faults();
    assert_eq!(left[0].remaining, Some(1), "exactly two sends: {left:?}");
    assert!(job_spans(&lab.scenario.dc, "reprovision").is_empty());
    lab.shutdown().await;
}

/// The answer is lost while the job runs, and the job then fails: the
/// caller gets the failure SAPI would have answered, not a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upgrade_whose_job_fails_reports_the_failure() {
    let (lab, zone) = slow_lab().await;
    lab.scenario
        .dc
        .fail_next_jobs(1, Some("reprovision"), "zone dataset is busy");
    // The failure comes after the job's queue time (5 ms): hold the job in
    // the queue past the client's timeout by slowing the whole datacenter.
    lab.scenario.dc.set_time_scale(1.0 / 10.0);
    let err = lab
        .cx
        .world
        .reprovision(&zone, images::MANATEE_V2_NEXT, "op-test")
        .await
        .expect_err("the job failed");
    assert!(!err.outcome_unknown(), "{err:?}");
    assert_eq!(err.status(), Some(500), "{err:?}");
    assert!(err.to_string().contains("zone dataset is busy"), "{err}");
    assert_eq!(
        lab.scenario
            .dc
            .jobs()
            .iter()
            .filter(|j| j.task() == Some("reprovision"))
            .count(),
        1
    );
    lab.shutdown().await;
}

/// Upgrades held up for 500 ms before SAPI sees them, `count` times.
fn held_up_upgrades(count: u32) -> sim::dc::FaultRule {
    sim::dc::FaultRule {
        count: Some(count),
        method: Some("PUT".into()),
        ..sim::dc::FaultRule::latency(
            sim::dc::Api::Sapi,
            "/instances/*/upgrade",
            Duration::from_millis(500),
        )
    }
}
