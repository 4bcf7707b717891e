//! Manatee v1 in the simulator: the starting point of the brain transplant.
//! A v1 shard works (election order, writes), a naive reprovision of a v1
//! peer onto v2 leaves it unassigned forever (the v2 sitter never sets up a
//! cluster on an existing database), and the transplant's primitives work:
//! named snapshots, send/recv with progress, morays that stop writes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sim::scenario::{MORAY_FMRI, ScenarioOptions, SimScenario, images};
use wire::apis::JsonMap;

const LAB: &str = include_str!("../../examples/lab/headnodeset.yaml");

async fn lab_v1() -> SimScenario {
    let (mut docs, diags) = crds::parse_documents("lab", LAB);
    assert!(diags.is_empty(), "{diags:?}");
    let doc = docs.remove(0).document;
    SimScenario::start(
        &[doc],
        Arc::new(coord::mem::MemEnsemble::new()),
        ScenarioOptions {
            manatee_image: images::MANATEE_V1.into(),
            ..Default::default()
        },
    )
    .await
    .expect("v1 lab comes up")
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn exec(
    s: &SimScenario,
    zone: Option<&str>,
    server: &str,
    script: &str,
) -> wire::apis::ExecuteResult {
    let req = wire::apis::ExecuteRequest {
        script: match zone {
            Some(z) => format!("#!/bin/bash\nzlogin {z} {script}\n"),
            None => format!("#!/bin/bash\n{script}\n"),
        },
        json: true,
        ..Default::default()
    };
    s.dc.cnapi_execute(server, &req).expect("execute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_shard_has_no_state_and_takes_writes_in_election_order() {
    let s = lab_v1().await;
    let shard = s.manatee.shard("sdc");
    assert!(
        shard.state().await.unwrap().is_none(),
        "v1 writes no /state"
    );
    let order = shard.election_order().await.unwrap();
    assert_eq!(order.len(), 3);
    s.client_write("sdc", b"v1-write").await.unwrap();
    // Synchronous: the sync has it too.
    let sync = s.manatee.zone(&order[1].1).unwrap();
    eventually("the v1 sync has the write", || {
        let w = sync.writes();
        async move { w.contains(&b"v1-write".to_vec()) }
    })
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_reprovision_of_a_v1_peer_onto_v2_never_rejoins() {
    let s = lab_v1().await;
    let shard = s.manatee.shard("sdc");
    let order = shard.election_order().await.unwrap();
    let async_zone = order[2].1.clone();
    let mut p = JsonMap::new();
    p.insert("image_uuid".into(), json!(images::MANATEE_V2_CURRENT));
    s.dc.sapi_upgrade_instance(&async_zone, &p).await.unwrap();
    let z = s.manatee.zone(&async_zone).unwrap();
    // Its v2 sitter runs and joins the election, but finds a database and
    // no cluster state: it stays unassigned with postgres off (msm
    // evalClusterState's set-up guard), and nobody ever writes a state.
    z.wait_for(Duration::from_secs(20), "unassigned", |d| {
        d.role == sim::manatee::PeerRole::Unassigned
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(z.is_running() && !z.pg_online());
    assert!(shard.state().await.unwrap().is_none());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_send_with_progress_and_morays_gate_writes() {
    let s = lab_v1().await;
    let shard = s.manatee.shard("sdc");
    let order = shard.election_order().await.unwrap();
    let (p, a) = (order[0].1.clone(), order[2].1.clone());
    let server = |z: &str| s.dc.vm(z).unwrap().server_uuid.unwrap();
    s.client_write("sdc", b"before-snapshot").await.unwrap();
    let ds = |z: &str| format!("zones/{z}/data/manatee");
    let r = exec(
        &s,
        None,
        &server(&p),
        &format!("zfs snapshot {}@backup", ds(&p)),
    );
    assert_eq!(r.exit_code, 0, "{r:?}");
    let r = exec(
        &s,
        None,
        &server(&p),
        &format!("zfs snapshot {}@backup", ds(&p)),
    );
    assert_ne!(r.exit_code, 0, "a snapshot name is taken once");
    let list = exec(
        &s,
        None,
        &server(&p),
        &format!("zfs list -H -o name -t snapshot -r {}", ds(&p)),
    );
    assert!(list.stdout.contains("@backup"), "{list:?}");

    // The receiver must be stopped and empty.
    let r = exec(
        &s,
        None,
        &server(&p),
        &format!(
            "zfs send {}@backup | nc {} 1337",
            ds(&p),
            s.manatee.zone(&a).unwrap().ident().ip
        ),
    );
    assert_ne!(r.exit_code, 0, "receiving into a running zone: {r:?}");
    assert_eq!(
        exec(&s, Some(&a), &server(&a), "svcadm disable manatee-sitter").exit_code,
        0
    );
    eventually("async sitter stopped", || {
        let z = s.manatee.zone(&a).unwrap();
        async move { !z.is_running() }
    })
    .await;
    assert_eq!(
        exec(&s, None, &server(&a), &format!("zfs destroy -r {}", ds(&a))).exit_code,
        0
    );
    let r = exec(
        &s,
        None,
        &server(&p),
        &format!(
            "zfs send -v {}@backup | nc {} 1337",
            ds(&p),
            s.manatee.zone(&a).unwrap().ident().ip
        ),
    );
    assert_eq!(r.exit_code, 0, "{r:?}");
    let mut seen = Vec::new();
    eventually("the send completes", || {
        let t = s.manatee.transfers();
        let last = t.last().cloned().unwrap();
        seen.push(last.sent_bytes);
        async move { last.done }
    })
    .await;
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress only grows");
    let t = s.manatee.transfers().pop().unwrap();
    assert_eq!(t.sent_bytes, t.total_bytes);
    let received = s.manatee.zone(&a).unwrap();
    assert!(received.snapshots().contains(&"backup".to_string()));
    assert!(received.writes().contains(&b"before-snapshot".to_vec()));

    // Morays: all disabled -> no client writes.
    let morays: Vec<(String, String)> =
        s.dc.instances()
            .into_iter()
            .filter(|i| {
                s.dc.service(&i.service_uuid)
                    .is_some_and(|x| x.name == "moray")
            })
            .map(|i| (i.uuid.clone(), server(&i.uuid)))
            .collect();
    assert_eq!(morays.len(), 3);
    for (vm, srv) in morays {
        assert_eq!(
            exec(
                &s,
                Some(&vm),
                &srv,
                &format!("svcadm disable '{MORAY_FMRI}'")
            )
            .exit_code,
            0
        );
    }
    assert!(!s.moray_online());
    assert!(s.client_write("sdc", b"while-disabled").await.is_err());
    s.shutdown().await;
}
