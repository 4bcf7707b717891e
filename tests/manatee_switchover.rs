//! The ManateeVersion `switchover` strategy end to end in the lab: the
//! controller's reconcile over the real clients against the simulated
//! datacenter, a client writing throughout. The datacenter's own records
//! (cluster state, jobs) are the judge.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use crds::{Document, Kind};
use harness::{Lab, Writer, drive, example, job_spans, lost_writes};
use sim::scenario::ScenarioOptions;
use tritonctl::reconcile::reconcile_manatee;

pub fn with_strategy(mut doc: Document, s: crds::manatee::Strategy) -> Document {
    if let Document::ManateeVersion(mv) = &mut doc {
        mv.spec.strategy = s;
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_switchover_promotes_the_upgraded_sync_and_rebuilds_the_old_primary() {
    let hs = example("lab/headnodeset.yaml");
    // `auto` picks the switchover: three peers, an image that acts on promote.
    let mv = with_strategy(example("lab/manatee.yaml"), crds::manatee::Strategy::Auto);
    let lab = Lab::start(std::slice::from_ref(&hs), ScenarioOptions::default(), None).await;
    let shard = lab.scenario.manatee.shard("sdc");
    let before = shard.state().await.unwrap().unwrap();
    let writer = Writer::start(shard.clone(), "switchover");
    tokio::time::sleep(Duration::from_millis(100)).await;
    lab.apply(&[hs, mv]).await;
    drive(
        Duration::from_secs(100),
        || reconcile_manatee(&lab.cx, "sdc"),
        || lab.ready(Kind::ManateeVersion, "sdc"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = writer.stop().await;
    assert_eq!(lost_writes(&shard, &log).await, 0);
    let after = shard.state().await.unwrap().unwrap();
    // The upgraded sync took over by promotion; the old primary was
    // rebuilt and is back as a standby; nothing deposed, never frozen.
    assert_ne!(after.primary.zone_id, before.primary.zone_id);
    assert!(after.deposed.is_empty(), "{after:?}");
    assert!(after.promote.is_none());
    assert!(!after.is_frozen());
    let standbys: Vec<&str> = after
        .sync
        .iter()
        .chain(after.asyncs.iter())
        .map(|p| p.zone_id.as_str())
        .collect();
    assert!(
        standbys.contains(&before.primary.zone_id.as_str()),
        "{after:?}"
    );
    assert_eq!(standbys.len(), 2);
    // One reprovision per peer, the old primary's after the takeover.
    let spans = job_spans(&lab.scenario.dc, "reprovision");
    assert_eq!(spans.len(), 3);
    // The journal names the switchover and its steps ran in order.
    let status = lab
        .store
        .status(Kind::ManateeVersion, "sdc")
        .await
        .unwrap()
        .unwrap();
    let op = status.operation.clone().expect("the last operation");
    assert_eq!(op.kind, "manatee-switchover-upgrade");
    let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    let promote = names.iter().position(|n| *n == "promote-sync").unwrap();
    assert!(
        names[promote + 1..]
            .iter()
            .any(|n| n.starts_with("reprovision-deposed"))
    );
    assert!(!names.contains(&"freeze"));
    println!(
        "switchover: longest write outage {:?} over {} outages",
        log.longest_outage(),
        log.outages.len()
    );
    lab.shutdown().await;
}
