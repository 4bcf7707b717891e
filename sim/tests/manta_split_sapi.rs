//! The shard split made through SAPI and CNAPI as a controller makes it
//! (`split_sapi::SapiCalls`), against a Manta scenario: three `postgres`
//! instances tagged with the plan join the shard as asyncs, then are
//! detached into a new shard by a SAPI metadata update and `svcadm` in the
//! zone, and the new shard's first state is written to ZooKeeper.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sim::manatee::PeerRole;
use sim::manta::split;
use sim::manta::split_sapi::{self, PLAN_TAG, SapiCalls};
use wire::apis::JsonMap;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_added_by_sapi_detach_into_a_new_shard_by_sapi_metadata_and_svcadm() {
    let text = r#"
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: split}
spec:
  region: split
  dnsDomain: split.example.com
  shards:
    - name: 1.moray.split.example.com
      roles: [index]
      peers: [{server: cn01}, {server: cn02}]
    - name: 2.moray.split.example.com
      roles: [marlin, storage]
      peers: [{server: cn03}]
  ring:
    vnodes: 64
"#;
    let (src, dst) = ("1.moray.split.example.com", "4.moray.split.example.com");
    let (docs, diags) = crds::parse_documents("split.yaml", text);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let sc = sim::scenario::SimScenario::start(
        &[docs[0].document.clone()],
        Arc::new(coord::mem::MemEnsemble::new()),
        sim::scenario::ScenarioOptions::default(),
    )
    .await
    .unwrap();
    let dc = sc.dc.clone();
    let s = sc.manatee.shard(src);
    for i in 0..10u32 {
        s.write(format!("w{i}").as_bytes()).await.unwrap();
    }
    let pg_svc = dc
        .sapi_list_services(&JsonMap::new(), false)
        .into_iter()
        .find(|svc| svc.name == "postgres")
        .unwrap();
    let server = dc
        .vm(&sc.shards[src][0])
        .and_then(|v| v.server_uuid)
        .unwrap();
    let mut added = Vec::new();
    for n in 0..3 {
        let inst = split_sapi::create_instance(
            &dc,
            &pg_svc.uuid,
            src,
            &server,
            &format!("1.postgres.split-{n}"),
            "5e1f",
        )
        .await
        .unwrap();
        assert_eq!(inst.params["tags"][PLAN_TAG], json!("5e1f"));
        let zone = tokio::time::timeout(T, async {
            loop {
                if let Some(z) = sc.manatee.zone(&inst.uuid) {
                    return z;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the new instance's sitter boots");
        zone.wait_for(T, "async", |p| p.role == PeerRole::Async)
            .await
            .unwrap();
        split::wait_caught_up(&sc.manatee, src, &zone, T)
            .await
            .unwrap();
        added.push(zone);
    }
    let at_detach = s.primary_writes().await.unwrap();

    let calls = SapiCalls {
        dc: dc.clone(),
        timeout: T,
    };
    let picks = split::shutdown_new_peers_with(&calls, &sc.manatee, src, &added, T)
        .await
        .unwrap();
    // svcadm disable through CNAPI left the sitter's SMF state disabled.
    for z in &added {
        assert_eq!(
            dc.smf_state(z.zone_id(), "manatee-sitter").as_deref(),
            Some("disabled")
        );
    }
    s.write(b"after-detach").await.unwrap();
    let reason = split::freeze_reason("5e1f");
    let st = split::establish_new_shard_with(&calls, &sc.manatee, &picks, dst, &reason, T)
        .await
        .unwrap();
    assert_eq!(st.primary.id, added[0].id());
    // SAPI holds the new shard's metadata and alias.
    for z in &added {
        let inst = dc.instance(z.zone_id()).unwrap();
        assert_eq!(inst.metadata["SERVICE_NAME"], json!(dst));
        assert_eq!(inst.metadata["SHARD"], json!("4"));
        assert_eq!(
            inst.metadata["MANATEE_SHARD_PATH"],
            json!(format!("/manatee/{dst}"))
        );
        assert!(
            inst.params["alias"]
                .as_str()
                .unwrap()
                .starts_with("4.postgres-")
        );
    }
    let got = sc.manatee.shard(dst).primary_writes().await.unwrap();
    assert_eq!(got, at_detach);
    assert!(!got.iter().any(|w| w == b"after-detach"));
    sc.shutdown().await;
}

/// Electric-moray reaches a new shard only once SAPI has a running `moray`
/// instance for it (manta-reshard phase 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_shard_is_reachable_only_once_its_moray_instances_exist() {
    use sim::manta::moray_sapi::{MORAY_SERVICE, MorayInstances, moray_zones};
    use sim::manta::{Access, AllUp, MantaError};
    let text = r#"
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: mor}
spec:
  region: mor
  dnsDomain: mor.example.com
  shards:
    - name: 1.moray.mor.example.com
      roles: [index, marlin, storage]
      peers: [{server: cn01}]
  ring:
    vnodes: 16
"#;
    let (docs, _) = crds::parse_documents("mor.yaml", text);
    let sc = sim::scenario::SimScenario::start(
        &[docs[0].document.clone()],
        Arc::new(coord::mem::MemEnsemble::new()),
        sim::scenario::ScenarioOptions::default(),
    )
    .await
    .unwrap();
    let dc = sc.dc.clone();
    let (new_shard, other) = ("2.moray.mor.example.com", "3.moray.mor.example.com");
    let pnode = format!("tcp://{new_shard}:2020");
    let tier = sc.manta.clone().unwrap().tier;
    tier.add_shard(&pnode);
    tier.set_backend(Arc::new(MorayInstances {
        dc: dc.clone(),
        inner: Arc::new(AllUp),
    }));
    let refused = tier.checked_store(&pnode, Access::Read).await.unwrap_err();
    assert!(
        matches!(refused, MantaError::NoDatabase { .. }),
        "{refused}"
    );
    // The moray service, then instances for another shard and for this one.
    let pg_svc = dc
        .sapi_list_services(&JsonMap::new(), false)
        .into_iter()
        .find(|svc| svc.name == "postgres")
        .unwrap();
    let mut p = JsonMap::new();
    p.insert("name".into(), json!(MORAY_SERVICE));
    p.insert("application_uuid".into(), json!(pg_svc.application_uuid));
    p.insert("params".into(), json!(pg_svc.params));
    let moray = dc.sapi_create_service(&p).unwrap();
    let server = dc
        .vm(&sc.shards["1.moray.mor.example.com"][0])
        .and_then(|v| v.server_uuid)
        .unwrap();
    split_sapi::create_instance(&dc, &moray.uuid, other, &server, "3.moray-a", "0b0e")
        .await
        .unwrap();
    assert!(tier.checked_store(&pnode, Access::Write).await.is_err());
    let inst =
        split_sapi::create_instance(&dc, &moray.uuid, new_shard, &server, "2.moray-a", "0b0e")
            .await
            .unwrap();
    assert_eq!(inst.metadata["SHARD"], json!("2"));
    assert_eq!(moray_zones(&dc, new_shard), vec![inst.uuid.clone()]);
    tier.checked_store(&pnode, Access::Write).await.unwrap();
    sc.shutdown().await;
}
