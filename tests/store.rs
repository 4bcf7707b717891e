//! The document store against both coordination backends.

use std::sync::Arc;

use coord::Coordination;
use crds::{Document, Kind, parse_documents};
use tritonctl::store::{ApplyAction, Store, StoreError};

fn lab_manatee() -> Document {
    let text = std::fs::read_to_string(e2e::repo().join("examples/lab/manatee.yaml")).unwrap();
    parse_documents("mv", &text).0.remove(0).document
}

async fn concurrent_applies_with_one_version_have_one_winner(
    a: Arc<dyn Coordination>,
    b: Arc<dyn Coordination>,
) {
    let (sa, sb) = (Store::new(a), Store::new(b));
    sa.init().await.unwrap();
    let doc = lab_manatee();
    sa.apply(std::slice::from_ref(&doc)).await.unwrap();
    for round in 0..20 {
        let current = sa.get(Kind::ManateeVersion, "sdc").await.unwrap().unwrap();
        let rv = current.metadata().resource_version.clone();
        let mut da = doc.clone();
        let mut db = doc.clone();
        for (d, lag) in [(&mut da, 100 + round * 2), (&mut db, 101 + round * 2)] {
            d.metadata_mut().resource_version = rv.clone();
            if let Document::ManateeVersion(mv) = d {
                mv.spec.health.max_replication_lag_seconds = lag;
            }
        }
        let (ra, rb) = tokio::join!(
            sa.apply(std::slice::from_ref(&da)),
            sb.apply(std::slice::from_ref(&db))
        );
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} / {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(loser, Err(StoreError::Conflict { .. })),
            "{loser:?}"
        );
    }
}

async fn generation_and_status(coord: Arc<dyn Coordination>) {
    let s = Store::new(coord);
    s.init().await.unwrap();
    let doc = lab_manatee();
    let out = s.apply(std::slice::from_ref(&doc)).await.unwrap();
    assert_eq!(out[0].action, ApplyAction::Created);
    let mut status = crds::Status {
        observed_generation: Some(1),
        ..Default::default()
    };
    status.set_condition(
        crds::ConditionType::Ready,
        crds::ConditionStatus::True,
        "Converged",
        "ok",
        "2026-11-22T00:00:00Z",
    );
    s.write_status(Kind::ManateeVersion, "sdc", &status, None)
        .await
        .unwrap();
    // Status is apart from spec: re-applying the same spec is a no-op and keeps status.
    let out = s.apply(std::slice::from_ref(&doc)).await.unwrap();
    assert_eq!(out[0].action, ApplyAction::Unchanged);
    let got = s.get(Kind::ManateeVersion, "sdc").await.unwrap().unwrap();
    assert_eq!(got.status(), Some(&status));
    assert_eq!(got.metadata().generation, Some(1));
    assert!(s.delete(Kind::ManateeVersion, "sdc").await.unwrap());
    assert!(s.get(Kind::ManateeVersion, "sdc").await.unwrap().is_none());
    assert!(
        s.status(Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn mem_concurrent_applies_with_one_version_have_one_winner() {
    let e = coord::mem::MemEnsemble::new();
    concurrent_applies_with_one_version_have_one_winner(e.connect(), e.connect()).await;
}

#[tokio::test]
async fn mem_generation_and_status() {
    let e = coord::mem::MemEnsemble::new();
    generation_and_status(e.connect()).await;
}

#[tokio::test]
async fn sqlite_store_survives_a_restart() {
    let d = tempfile::tempdir().unwrap();
    {
        let e = coord::mem::MemEnsemble::open(d.path()).unwrap();
        let s = Store::new(e.connect());
        s.init().await.unwrap();
        s.apply(&[lab_manatee()]).await.unwrap();
    }
    let e = coord::mem::MemEnsemble::open(d.path()).unwrap();
    let s = Store::new(e.connect());
    assert_eq!(s.names(Kind::ManateeVersion).await.unwrap(), ["sdc"]);
}

#[tokio::test]
async fn zk_concurrent_applies_with_one_version_have_one_winner() {
    let zk = coord::testing::ZkServer::start()
        .await
        .expect("ZooKeeper (apt-get install zookeeper)");
    let timeout = std::time::Duration::from_secs(4);
    let a = coord::zk::ZkCoordination::connect(&zk.connect_string(), timeout)
        .await
        .unwrap();
    let b = coord::zk::ZkCoordination::connect(&zk.connect_string(), timeout)
        .await
        .unwrap();
    concurrent_applies_with_one_version_have_one_winner(a, b).await;
}

#[tokio::test]
async fn zk_generation_and_status() {
    let zk = coord::testing::ZkServer::start()
        .await
        .expect("ZooKeeper (apt-get install zookeeper)");
    let c =
        coord::zk::ZkCoordination::connect(&zk.connect_string(), std::time::Duration::from_secs(4))
            .await
            .unwrap();
    generation_and_status(c).await;
}
