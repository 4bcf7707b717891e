//! `tritonctl status` against a real ZooKeeper: the lab datacenter
//! simulated on it, a controller upgrading its manatee shard, and the
//! binary reading it all back (store, leader, operation, HA posture).

use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::testing::ZkServer;
use coord::{Coordination, ZkCoordination};
use crds::{ConditionType, Document, Kind};
use sim::scenario::{ScenarioOptions, SimScenario};
use tritonctl::clients::Endpoints;
use tritonctl::daemon::{Daemon, DaemonConfig};
use tritonctl::store::Store;

const SESSION: Duration = Duration::from_secs(10);

fn example(rel: &str) -> Document {
    let path = e2e::repo().join("examples").join(rel);
    let (mut docs, diags) = crds::parse_documents(rel, &std::fs::read_to_string(path).unwrap());
    assert!(diags.is_empty(), "{rel}: {diags:?}");
    docs.remove(0).document
}

fn status(zk: &str, args: &[&str]) -> (String, String, Option<i32>) {
    let o = std::process::Command::new(e2e::tritonctl_bin())
        .args(["--zk", zk, "status"])
        .args(args)
        .current_dir(e2e::repo())
        .env_remove("TRITONCTL_DATA_DIR")
        .env_remove("TRITONCTL_SAPI")
        .env_remove("TRITONCTL_CREDENTIALS")
        .output()
        .expect("run tritonctl status");
    (e2e::stdout(&o), e2e::stderr(&o), o.status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_on_a_real_zookeeper_shows_leader_documents_operation_and_ha_posture() {
    let zk = ZkServer::start().await.expect("start ZooKeeper");
    let hosts = zk.connect_string();
    let provider = Arc::new(sim::manatee::ZkProvider {
        connect_string: hosts.clone(),
        session_timeout: SESSION,
    });
    let (hs, mv) = (example("lab/headnodeset.yaml"), example("lab/manatee.yaml"));
    let scenario = SimScenario::start(
        std::slice::from_ref(&hs),
        provider,
        ScenarioOptions::default(),
    )
    .await
    .expect("the lab starts");
    let urls = scenario.servers.urls().clone();
    let session: Arc<dyn Coordination> = ZkCoordination::connect(&hosts, SESSION)
        .await
        .expect("connect");
    let store = Store::new(session.clone());
    store.init().await.unwrap();

    // Before any controller: the documents, no leader, nothing observed.
    store.apply(&[hs, mv]).await.unwrap();
    let (out, err, code) = status(&hosts, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Leader:   none"), "{out}");
    assert!(out.contains("ManateeVersion/sdc"), "{out}");
    assert!(out.contains("HeadnodeSet/lab"), "{out}");
    assert!(out.contains("Observed: nothing"), "{out}");

    let mut cfg = DaemonConfig::new(Endpoints {
        sapi: urls.sapi.clone(),
        vmapi: urls.vmapi.clone(),
        cnapi: urls.cnapi.clone(),
        imgapi: urls.imgapi.clone(),
    });
    cfg.identity = "status-test-controller".into();
    cfg.step_poll = Some(Duration::from_millis(20));
    cfg.poll_interval = Duration::from_secs(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(Daemon::new(session.clone(), cfg).run(async move {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = store.status(Kind::ManateeVersion, "sdc").await.unwrap();
        if st.as_ref().is_some_and(|s| s.is_true(ConditionType::Ready)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lab shard never got Ready: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let world = [
        "--sapi",
        urls.sapi.as_str(),
        "--vmapi",
        urls.vmapi.as_str(),
        "--cnapi",
        urls.cnapi.as_str(),
        "--imgapi",
        urls.imgapi.as_str(),
    ];
    let mut args = vec!["-j"];
    args.extend(world);
    let (out, err, code) = status(&hosts, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status -j is JSON");
    assert_eq!(v["leader"]["identity"], "status-test-controller", "{out}");
    assert_eq!(v["store"], format!("zookeeper {hosts}"), "{out}");
    let docs = v["documents"].as_array().unwrap();
    let mvd = docs
        .iter()
        .find(|d| d["kind"] == "ManateeVersion" && d["name"] == "sdc")
        .unwrap_or_else(|| panic!("{out}"));
    let ready = mvd["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True", "{out}");
    let op = &mvd["operation"];
    assert_eq!(op["phase"], "Succeeded", "{out}");
    assert_eq!(op["done"], op["total"], "{out}");
    assert_eq!(op["inFlight"], false, "{out}");
    // The shard is on the document's image: nothing to do.
    assert_eq!(mvd["drift"]["state"], "inSync", "{out}");
    let posture = &v["posture"];
    assert_eq!(posture["headnodes"].as_array().unwrap().len(), 3, "{out}");
    assert!(
        posture["headnodes"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["role"] == "manatee"),
        "{out}"
    );
    assert_eq!(posture["binder"]["members"], 3, "{out}");
    let sdc = posture["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sdc")
        .unwrap_or_else(|| panic!("{out}"));
    let roles: Vec<&str> = sdc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["primary", "sync", "async"], "{out}");
    assert!(sdc["frozen"].is_null(), "{out}");
    assert_eq!(v["problems"], serde_json::json!([]), "{out}");

    // The text screen says the same.
    let (out, err, code) = status(&hosts, &world);
    assert_eq!(code, Some(0), "{out}{err}");
    for needle in [
        "Leader:   status-test-controller",
        "HA POSTURE",
        "Binder:    3 member(s), 3 running; quorum yes, HA yes",
        "in sync",
    ] {
        assert!(out.contains(needle), "no {needle:?} in\n{out}");
    }

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), daemon).await;
    scenario.shutdown().await;
}

#[test]
fn status_refuses_some_endpoints_without_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let o = e2e::run(dir.path(), &["status", "--sapi", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", e2e::stderr(&o));
    assert!(
        e2e::stderr(&o).contains("give all four"),
        "{}",
        e2e::stderr(&o)
    );
    // The embedded store, nothing stored: says so and how to fix it.
    let o = e2e::run(dir.path(), &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    assert!(
        e2e::stdout(&o).contains("none stored"),
        "{}",
        e2e::stdout(&o)
    );
}
