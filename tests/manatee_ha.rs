//! HA setup end to end: a lab datacenter whose `sdc` shard has one peer (in
//! one-node-write mode) is grown to the three peers its HeadnodeSet names,
//! through the real clients against the simulator, with a client writing
//! to the shard throughout.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::HashSet;
use std::time::Duration;

use crds::Kind;
use harness::{Lab, Writer, drive, example, job_spans, lost_writes, parse};
use sim::scenario::ScenarioOptions;
use tritonctl::reconcile::reconcile_headnodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_peer_shard_grows_to_three_healthy_peers_without_losing_a_write() {
    let full = example("lab/headnodeset.yaml");
    let text = std::fs::read_to_string(e2e::repo().join("examples/lab/headnodeset.yaml"))
        .unwrap()
        .replace(
            "manatee: [headnode0, headnode1, headnode2]",
            "manatee: [headnode0]",
        );
    let one_peer = parse("lab with one manatee", &text);
    let lab = Lab::start(&[one_peer], ScenarioOptions::default(), None).await;
    let shard = lab.scenario.manatee.shard("sdc");
    let before = shard.state().await.unwrap().unwrap();
    assert!(before.is_one_node_write_mode(), "{before:?}");
    let writer = Writer::start(shard.clone(), "ha");

    lab.apply(&[full]).await;
    drive(
        Duration::from_secs(120),
        || reconcile_headnodes(&lab.cx, "lab"),
        || lab.ready(Kind::HeadnodeSet, "lab"),
    )
    .await;
    // Writes go on after the setup, through the new topology.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = writer.stop().await;

    // What the datacenter shows: three peers, placed, healthy.
    let st = shard.state().await.unwrap().unwrap();
    assert!(!st.is_one_node_write_mode(), "{st:?}");
    assert!(!st.is_frozen(), "{st:?}");
    assert!(st.sync.is_some() && st.asyncs.len() == 1, "{st:?}");
    assert!(st.deposed.is_empty());
    let issues = shard.verify().await.unwrap();
    assert!(
        !issues
            .iter()
            .any(|i| i.severity == wire::manatee::Severity::Error),
        "{issues:?}"
    );
    let zones: Vec<String> = [st.primary.zone_id.clone(), st.sync.clone().unwrap().zone_id]
        .into_iter()
        .chain(st.asyncs.iter().map(|a| a.zone_id.clone()))
        .collect();
    let servers: HashSet<String> = zones
        .iter()
        .map(|z| lab.scenario.dc.vm(z).unwrap().server_uuid.unwrap())
        .collect();
    assert_eq!(servers.len(), 3, "one peer per headnode");
    for z in &zones {
        assert!(lab.scenario.manatee.zone(z).unwrap().pg_online(), "{z}");
        let md = lab.scenario.dc.instance(z).unwrap().metadata;
        assert!(!md.contains_key("ONE_NODE_WRITE_MODE"), "{z}: {md:?}");
    }
    // Exactly two zones were created: no retry made a duplicate.
    assert_eq!(job_spans(&lab.scenario.dc, "provision").len(), 2);
    // No acknowledged write lost; the writer really ran.
    assert_eq!(
        lost_writes(&shard, &log).await,
        0,
        "acknowledged writes lost"
    );
    assert!(log.acked.len() > 20, "{} acked", log.acked.len());
    eprintln!(
        "HA setup: {} writes acked, longest write outage {:?}",
        log.acked.len(),
        log.longest_outage()
    );
    lab.shutdown().await;
}
