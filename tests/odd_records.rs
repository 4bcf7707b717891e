//! A SAPI record the controller cannot read (real SAPI stores whatever JSON
//! types a client sent) is never taken as absent: a manatee instance with
//! `metadata: []` blocks its shard's reconcile with a reason naming the
//! instance and the field, and nothing is reprovisioned meanwhile.

#[path = "harness/mod.rs"]
mod harness;

use crds::{ConditionType, Kind};
use harness::{Lab, example, job_spans};
use reconcilers::error::WorldError;
use reconcilers::manatee::ManateeObserve;
use serde_json::json;
use sim::scenario::ScenarioOptions;
use tritonctl::reconcile::reconcile_manatee;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_manatee_instance_blocks_the_shard_naming_it() {
    let lab = Lab::start(
        &[example("lab/headnodeset.yaml")],
        ScenarioOptions::default(),
        None,
    )
    .await;
    let odd = lab.scenario.shards["sdc"][1].clone();
    assert!(lab.cx.world.observe("sdc").await.is_ok());

    // A client stores metadata as an array, which real SAPI accepts.
    let url = format!("{}/instances/{odd}", lab.scenario.servers.urls().sapi);
    let resp = tritonctl::clients::http_client(std::time::Duration::from_secs(10))
        .put(url)
        .header("accept-version", "~2")
        .json(&json!({"action": "replace", "metadata": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Observing the shard is an error naming the record and the field.
    let err = lab.cx.world.observe("sdc").await.unwrap_err();
    assert!(matches!(err, WorldError::Malformed(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("record {odd} field `metadata`")),
        "{text}"
    );

    // The reconcile stops there and says so; no zone is touched.
    lab.apply(&[example("lab/manatee.yaml")]).await;
    let _ = reconcile_manatee(&lab.cx, "sdc").await;
    let status = lab
        .store
        .status(Kind::ManateeVersion, "sdc")
        .await
        .unwrap()
        .expect("a status");
    assert!(!status.is_true(ConditionType::Ready));
    let degraded = status
        .condition(ConditionType::Degraded)
        .expect("a Degraded condition");
    assert!(
        degraded.message.contains(&odd) && degraded.message.contains("`metadata`"),
        "{degraded:?}"
    );
    let events = lab.cx.events.list(None).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| format!("{:?}", e.event).contains(&odd)),
        "a Warning event names the record: {events:#?}"
    );
    assert!(job_spans(&lab.scenario.dc, "reprovision").is_empty());
    lab.shutdown().await;
}
