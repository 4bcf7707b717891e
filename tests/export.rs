//! `tritonctl export shardtopology` against the simulated us-east region:
//! the document it writes is valid, names the shards, peers and morays the
//! region runs, holds the live ring as an explicit assignment, and applying
//! it asks for nothing (no move planned against the live ring; `diff`
//! plans no resharding).
//!
//! Needs `cargo build -p tritonctl` first (the binary is run).

use std::sync::Arc;

use crds::Document;
use crds::shards::ShardRole;
use serde_json::{Value, json};
use sim::scenario::{ScenarioOptions, SimScenario};
use tritonctl::clients::{Endpoints, Triton, Unguarded};
use tritonctl::gitops::observed::{Live, StoredView};
use tritonctl::gitops::review::{KindPlan, review};
use tritonctl::world::manatee::TritonManatee;

fn read_dir_docs(dir: &str) -> Vec<Document> {
    let input = tritonctl::cli::input::read(&[e2e::repo().join(dir)]).expect("read examples");
    assert!(!input.has_errors(), "{dir}: {:?}", input.diagnostics);
    input.documents.into_iter().map(|d| d.document).collect()
}

fn map(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// What the us-east scenario leaves out of SAPI but a Manta region has:
/// the marlin/storage shard names and each shard's `moray` instances, one
/// per moray the document gives it, on the shard's peers' servers.
fn complete_manta_sapi(scenario: &SimScenario, topo: &crds::ShardTopology) {
    let dc = &scenario.dc;
    let app = dc.application_by_name("manta").expect("manta application");
    let one = topo
        .spec
        .shards
        .iter()
        .find(|s| !s.roles.contains(&ShardRole::Index))
        .unwrap();
    dc.sapi_update_application(
        &app.uuid,
        &map(json!({"action": "update", "metadata": {
            "MARLIN_MORAY_SHARD": one.name,
            "STORAGE_MORAY_SHARD": one.name,
        }})),
    )
    .unwrap();
    // A zone of the postgres service gives the service (and its params).
    let any_pg = scenario.shards.values().flatten().next().unwrap();
    let pg_svc = dc.instance(any_pg).unwrap().service_uuid;
    let params = dc.service(&pg_svc).unwrap().params;
    // The region's `moray` service (the scenario seeds it; one service of
    // that name per application, as in a real Manta), else a new one.
    let moray = dc
        .sapi_list_services(&Default::default(), false)
        .into_iter()
        .find(|s| s.name == "moray" && s.application_uuid == app.uuid)
        .map(|s| s.uuid.clone())
        .unwrap_or_else(|| dc.seed_service(&app.uuid, "moray", params, Default::default()));
    for s in &topo.spec.shards {
        let zones = &scenario.shards[&s.name];
        for i in 0..s.morays as usize {
            let server = dc.vm(&zones[i % zones.len()]).unwrap().server_uuid.unwrap();
            dc.seed_instance(
                &moray,
                sim::dc::seed::InstanceSpec {
                    server_uuid: server,
                    alias: Some(format!("{}.moray.{i}", s.name)),
                    metadata: map(json!({"SERVICE_NAME": s.name})),
                    ..Default::default()
                },
            )
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_region_applies_as_a_no_op() {
    let docs = read_dir_docs("examples/us-east");
    let topo = docs
        .iter()
        .find_map(|d| match d {
            Document::ShardTopology(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    let ensemble = coord::mem::MemEnsemble::new();
    let scenario = SimScenario::start(
        &docs,
        Arc::new(ensemble.clone()),
        ScenarioOptions::default(),
    )
    .await
    .expect("the simulated datacenter starts");
    complete_manta_sapi(&scenario, &topo);
    let urls = scenario.servers.urls().clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shardtopology.yaml");
    let o = e2e::run(
        &dir.path().join("store"),
        &[
            "export",
            "shardtopology",
            "--region",
            "us-east",
            "-o",
            file.to_str().unwrap(),
            "--sapi",
            &urls.sapi,
            "--vmapi",
            &urls.vmapi,
            "--cnapi",
            &urls.cnapi,
            "--imgapi",
            &urls.imgapi,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("# ShardTopology exported by tritonctl"),
        "{text:.400}"
    );
    let (parsed, diags) = crds::parse_documents("shardtopology.yaml", &text);
    assert!(diags.is_empty(), "{diags:?}");
    let errors: Vec<_> = crds::validate_all(&parsed)
        .into_iter()
        .filter(crds::Diagnostic::is_error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let Document::ShardTopology(exported) = &parsed[0].document else {
        panic!("not a ShardTopology")
    };
    // The shards, roles, morays and peers' servers the region runs.
    assert_eq!(exported.spec.region, "us-east");
    assert_eq!(exported.spec.dns_domain, topo.spec.dns_domain);
    assert_eq!(exported.spec.shards.len(), topo.spec.shards.len());
    for (e, want) in exported.spec.shards.iter().zip(&topo.spec.shards) {
        assert_eq!(e.name, want.name);
        let mut roles = want.roles.clone();
        roles.sort_by_key(|r| format!("{r:?}"));
        let mut got = e.roles.clone();
        got.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(got, roles, "{}", e.name);
        assert_eq!(e.morays, want.morays, "{}", e.name);
        let mut servers: Vec<&str> = e.peers.iter().map(|p| p.server.as_str()).collect();
        let mut wanted: Vec<&str> = want.peers.iter().map(|p| p.server.as_str()).collect();
        servers.sort();
        wanted.sort();
        assert_eq!(servers, wanted, "{}", e.name);
    }
    // Its ring is the live ring: nothing to move.
    let endpoints = Endpoints {
        sapi: urls.sapi.clone(),
        vmapi: urls.vmapi.clone(),
        cnapi: urls.cnapi.clone(),
        imgapi: urls.imgapi.clone(),
    };
    let triton = Triton::new(&endpoints, Arc::new(Unguarded));
    let manta = tritonctl::gitops::manta::observe(&triton)
        .await
        .unwrap()
        .unwrap();
    let live = manta.live_ring().unwrap();
    assert!(
        crds::ring::planned_moves(&exported.spec, &live, &[])
            .unwrap()
            .is_empty()
    );
    // `diff` of the export over the stored us-east documents plans no
    // resharding and refuses nothing.
    let world = Live::new(
        TritonManatee {
            triton,
            coord: ensemble.connect(),
            fence: None,
        },
        "the simulated datacenter".into(),
    );
    let stored = StoredView::of_documents(&docs);
    let r = review(&[parsed[0].document.clone()], &stored, Some(&world))
        .await
        .unwrap();
    let KindPlan::Topology(t) = &r.documents[0].plan else {
        panic!()
    };
    assert!(t.moves.is_empty(), "{:?}", t.moves);
    assert!(t.operations.is_empty());
    assert!(t.refusal.is_empty(), "{:?}", t.refusal);
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("The live ring already is this document's ring")),
        "{:?}",
        t.notes
    );
    scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_without_manta_says_so() {
    let docs = read_dir_docs("examples/lab");
    let ensemble = coord::mem::MemEnsemble::new();
    let scenario = SimScenario::start(&docs, Arc::new(ensemble), ScenarioOptions::default())
        .await
        .unwrap();
    let urls = scenario.servers.urls().clone();
    let dir = tempfile::tempdir().unwrap();
    let o = e2e::run(
        &dir.path().join("store"),
        &[
            "export",
            "shardtopology",
            "--sapi",
            &urls.sapi,
            "--vmapi",
            &urls.vmapi,
            "--cnapi",
            &urls.cnapi,
            "--imgapi",
            &urls.imgapi,
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", e2e::stdout(&o));
    assert!(
        e2e::stderr(&o).contains("no `manta` application"),
        "{}",
        e2e::stderr(&o)
    );
    scenario.shutdown().await;
}
