//! Contract tests: electric-moray's refusals and status, pinned to
//! electric-moray's source (em:lib/server.js, em:lib/errors.js,
//! em:lib/ring.js, em:lib/status_server.js), in process and over the HTTP
//! API of the processes a datacenter runs (SAPI `electric-moray` zones,
//! config read at start, `svcadm restart` through CNAPI execute).

use std::sync::Arc;

use serde_json::{Value, json};
use sim::dc::seed::ServerSpec;
use sim::dc::{Datacenter, DcConfig};
use sim::manta::config::{INDEX_MORAY_SHARDS, index_moray_shards_value};
use sim::manta::em_http::{EmStatusBody, WireError};
use sim::manta::plane::{MantaPlane, seed_electric_moray};
use sim::manta::ring_image::{publish_ring_image, set_ring_image};
use sim::manta::{BatchOp, BucketDdl, ElectricMoray, IndexShard, MantaError, MorayTier};
use wire::apis::{ExecuteRequest, JsonMap};
use wire::fash::{KeyEncoding, Ring};

const HOST_A: &str = "1.moray.coal.joyent.us";
const HOST_B: &str = "2.moray.coal.joyent.us";
const A: &str = "tcp://1.moray.coal.joyent.us:2020";
const B: &str = "tcp://2.moray.coal.joyent.us:2020";
const ACCT: &str = "/a3829ca2-0966-60ce-9dc3-e4e9060f0950";
const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";

fn setup(ring: &Ring) -> (Arc<MorayTier>, Arc<ElectricMoray>) {
    let tier = MorayTier::new();
    for p in ring.pnodes() {
        tier.add_shard(p);
    }
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    em.install_ring(ring.clone());
    em.configure_index_shards(vec![
        IndexShard::new(HOST_A, false),
        IndexShard::new(HOST_B, false),
    ]);
    (tier, em)
}

/// A key in a directory the ring puts on `pnode`.
fn key_on(em: &ElectricMoray, pnode: &str) -> String {
    (0..10_000)
        .map(|i| format!("{ACCT}/stor/d{i}/obj"))
        .find(|k| em.locate("manta", k).unwrap().pnode == pnode)
        .expect("a key on the pnode")
}

fn wire(e: &MantaError) -> (String, String) {
    (e.name().to_owned(), e.to_string())
}

fn read_only_vnodes() -> (String, String) {
    (
        "ReadOnlyError".into(),
        "some vnodes are in read-only mode".into(),
    )
}

#[tokio::test]
async fn a_read_only_vnode_refuses_put_delete_and_batch_but_not_reads() {
    let ring = Ring::create(64, &[A, B]).unwrap();
    let (_tier, em) = setup(&ring);
    let key = key_on(&em, A);
    em.put_object("manta", &key, json!({"v": 1})).await.unwrap();
    let vnode = em.locate("manta", &key).unwrap().vnode;
    let mut ro = ring.clone();
    ro.set_read_only(&[vnode], true).unwrap();
    em.install_ring(ro);

    let put = em
        .put_object("manta", &key, json!({"v": 2}))
        .await
        .unwrap_err();
    assert_eq!(wire(&put), read_only_vnodes());
    let del = em.del_object("manta", &key).await.unwrap_err();
    assert_eq!(wire(&del), read_only_vnodes());
    let batch = em
        .batch(&[BatchOp::Put {
            bucket: "manta".into(),
            key: key.clone(),
            value: json!({"v": 3}),
        }])
        .await
        .unwrap_err();
    assert_eq!(wire(&batch), read_only_vnodes());
    // Reads are never refused for it.
    assert_eq!(
        em.get_object("manta", &key).await.unwrap().value,
        json!({"v": 1})
    );
    // Other vnodes still take writes.
    let other = (0..10_000)
        .map(|i| format!("{ACCT}/stor/e{i}/obj"))
        .find(|k| em.locate("manta", k).unwrap().vnode != vnode)
        .unwrap();
    em.put_object("manta", &other, json!(1)).await.unwrap();
}

#[tokio::test]
async fn a_read_only_pnode_refuses_writes_and_names_itself() {
    let ring = Ring::create(64, &[A, B]).unwrap();
    let (_tier, em) = setup(&ring);
    let (ka, kb) = (key_on(&em, A), key_on(&em, B));
    em.put_object("manta", &kb, json!(1)).await.unwrap();
    em.configure_index_shards(vec![
        IndexShard::new(HOST_A, false),
        IndexShard::new(HOST_B, true),
    ]);
    let want = (
        "ReadOnlyError".to_owned(),
        format!("pnode \"{B}\" is in read-only mode"),
    );
    let put = em.put_object("manta", &kb, json!(2)).await.unwrap_err();
    assert_eq!(wire(&put), want);
    assert_eq!(wire(&em.del_object("manta", &kb).await.unwrap_err()), want);
    let batch = em
        .batch(&[BatchOp::Delete {
            bucket: "manta".into(),
            key: kb.clone(),
        }])
        .await
        .unwrap_err();
    assert_eq!(wire(&batch), want);
    assert_eq!(em.get_object("manta", &kb).await.unwrap().value, json!(1));
    em.put_object("manta", &ka, json!(1)).await.unwrap();
}

#[tokio::test]
async fn a_pnode_missing_from_index_shards_is_read_only() {
    let ring = Ring::create(64, &[A, B]).unwrap();
    let (_tier, em) = setup(&ring);
    let kb = key_on(&em, B);
    em.put_object("manta", &kb, json!(1)).await.unwrap();
    em.configure_index_shards(vec![IndexShard::new(HOST_A, false)]);
    let err = em.put_object("manta", &kb, json!(2)).await.unwrap_err();
    assert_eq!(
        wire(&err),
        (
            "ReadOnlyError".into(),
            format!("pnode \"{B}\" is in read-only mode")
        )
    );
    assert!(em.is_read_only_pnode(B));
    // An empty indexShards makes every pnode read-only.
    em.configure_index_shards(vec![]);
    assert!(em.is_read_only_pnode(A));
    assert_eq!(em.get_object("manta", &kb).await.unwrap().value, json!(1));
}

#[tokio::test]
async fn bucket_ddl_is_refused_while_any_pnode_is_read_only() {
    let ring = Ring::create(64, &[A, B]).unwrap();
    let (tier, em) = setup(&ring);
    let cfg = json!({"index": {"owner": {"type": "string"}}});
    em.configure_index_shards(vec![
        IndexShard::new(HOST_A, true),
        IndexShard::new(HOST_B, true),
    ]);
    let want = (
        "ReadOnlyError".to_owned(),
        format!("pnode \"{A}, {B}\" is in read-only mode"),
    );
    for ddl in [
        BucketDdl::Create {
            name: "mybucket",
            config: &cfg,
        },
        BucketDdl::Update {
            name: "mybucket",
            config: &cfg,
        },
        BucketDdl::Delete { name: "mybucket" },
    ] {
        assert_eq!(wire(&em.bucket_ddl(ddl).await.unwrap_err()), want);
    }
    // One read-only pnode is enough.
    em.configure_index_shards(vec![
        IndexShard::new(HOST_A, false),
        IndexShard::new(HOST_B, true),
    ]);
    let err = em
        .bucket_ddl(BucketDdl::Create {
            name: "mybucket",
            config: &cfg,
        })
        .await
        .unwrap_err();
    assert_eq!(
        wire(&err),
        (
            "ReadOnlyError".into(),
            format!("pnode \"{B}\" is in read-only mode")
        )
    );
    assert!(tier.shard(A).unwrap().buckets().is_empty());
    // All writable: fanned out to every shard.
    em.configure_index_shards(vec![
        IndexShard::new(HOST_A, false),
        IndexShard::new(HOST_B, false),
    ]);
    em.bucket_ddl(BucketDdl::Create {
        name: "mybucket",
        config: &cfg,
    })
    .await
    .unwrap();
    for p in [A, B] {
        assert_eq!(tier.shard(p).unwrap().buckets()["mybucket"], cfg);
    }
}

#[tokio::test]
async fn bucket_ddl_is_refused_when_the_ring_was_loaded_with_data_vnodes() {
    let mut ring = Ring::create(64, &[A, B]).unwrap();
    ring.set_read_only(&[3], true).unwrap();
    let (_tier, em) = setup(&ring);
    let err = em
        .bucket_ddl(BucketDdl::Delete { name: "manta" })
        .await
        .unwrap_err();
    assert_eq!(wire(&err), read_only_vnodes());
    assert_eq!(err, MantaError::ReadOnlyRing);
}

#[tokio::test]
async fn batch_routes_one_transformed_key_and_leaves_vnode_null() {
    let ring = Ring::create(64, &[A, B]).unwrap();
    let (tier, em) = setup(&ring);
    let dir = format!("{ACCT}/stor/mpu");
    let (k1, k2) = (format!("{dir}/a"), format!("{dir}/b"));
    let etags = em
        .batch(&[
            BatchOp::Put {
                bucket: "manta".into(),
                key: k1.clone(),
                value: json!({"x": 1}),
            },
            BatchOp::Put {
                bucket: "manta".into(),
                key: k2.clone(),
                value: json!({"x": 2}),
            },
        ])
        .await
        .unwrap();
    assert_eq!(etags.len(), 2);
    let pnode = em.locate("manta", &k1).unwrap().pnode;
    let shard = tier.shard(&pnode).unwrap();
    // e-m does not stamp batch values: `_vnode` is NULL (research 3.11-2).
    assert_eq!(shard.get("manta", &k1).unwrap().vnode, None);
    assert_eq!(shard.null_vnode_rows(), 2);
    // A put through putObject is stamped.
    em.put_object("manta", &k1, json!({"x": 3})).await.unwrap();
    assert!(shard.get("manta", &k1).unwrap().vnode.is_some());

    let err = em.batch(&[]).await.unwrap_err();
    assert_eq!(err.name(), "InvocationError");
    assert_eq!(
        err.to_string(),
        "batch expects \"requests\" (args[0]) to be an array with at least one request but \
         received an empty array"
    );
    let other = (0..1000)
        .map(|i| format!("{ACCT}/stor/x{i}/o"))
        .find(|k| em.locate("manta", k).unwrap().vnode != em.locate("manta", &k1).unwrap().vnode)
        .unwrap();
    let err = em
        .batch(&[
            BatchOp::Delete {
                bucket: "manta".into(),
                key: k1.clone(),
            },
            BatchOp::Delete {
                bucket: "manta".into(),
                key: other,
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(
        wire(&err),
        (
            "Error".into(),
            "all requests must transform to the same key".into()
        )
    );
    // Nothing of a failed batch is applied.
    assert!(shard.contains("manta", &k1));
}

// ---- the processes of a datacenter, over HTTP ----

struct Dc {
    dc: Datacenter,
    app: String,
    plane: MantaPlane,
    zones: Vec<String>,
    http: reqwest::Client,
}

async fn datacenter(ring: &Ring) -> Dc {
    let dc = Datacenter::new(DcConfig::default());
    let app = dc.seed_application("manta", OWNER, JsonMap::new(), JsonMap::new());
    let servers: Vec<String> = (0..2)
        .map(|i| dc.seed_server(ServerSpec::compute(&format!("cn{i}"))))
        .collect();
    let zones = seed_electric_moray(
        &dc,
        &app,
        &[HOST_A.to_owned(), HOST_B.to_owned()],
        &servers,
        3,
    )
    .unwrap();
    let img = publish_ring_image(&dc, ring, OWNER, JsonMap::new()).unwrap();
    set_ring_image(&dc, &img, None).unwrap();
    let plane = MantaPlane::start(&dc, ring.pnodes()).await.unwrap();
    Dc {
        dc,
        app,
        plane,
        zones,
        http: sim::manta::em_client::http_client(std::time::Duration::from_secs(10)),
    }
}

impl Dc {
    fn url(&self, zone: &str) -> String {
        self.plane.fleet.process(zone).unwrap().url()
    }

    async fn status(&self, zone: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/status", self.url(zone)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn rpc(&self, zone: &str, method: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/{method}", self.url(zone)))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn set_index_shards(&self, shards: &[IndexShard]) {
        let mut md = JsonMap::new();
        md.insert(INDEX_MORAY_SHARDS.into(), index_moray_shards_value(shards));
        let mut p = JsonMap::new();
        p.insert("action".into(), json!("update"));
        p.insert("metadata".into(), Value::Object(md));
        self.dc.sapi_update_application(&self.app, &p).unwrap();
    }

    /// `svcadm <action> electric-moray` in the zone, through CNAPI execute.
    fn svcadm(&self, zone: &str, action: &str) {
        let server = self.dc.vm(zone).unwrap().server_uuid.unwrap();
        let req = ExecuteRequest {
            script: format!("#!/bin/bash\nsvcadm -z {zone} {action} electric-moray\n"),
            ..Default::default()
        };
        let r = self.dc.cnapi_execute(&server, &req).unwrap();
        assert_eq!(r.exit_code, 0, "{r:?}");
    }
}

#[tokio::test]
async fn every_process_serves_its_status_and_rereads_sapi_only_when_restarted() {
    let ring = Ring::create(64, &[A, B]).unwrap();
    let d = datacenter(&ring).await;
    assert_eq!(d.plane.fleet.processes().len(), 3);
    let img =
        d.dc.application(&d.app)
            .unwrap()
            .metadata
            .get("HASH_RING_IMAGE")
            .cloned()
            .unwrap();
    let mut pids = Vec::new();
    for z in &d.zones {
        let (code, body) = d.status(z).await;
        assert_eq!(code, 200);
        let st: EmStatusBody = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(
            st.smf_fmri.as_deref(),
            Some("svc:/smartdc/application/electric-moray:electric-moray-2021")
        );
        assert_eq!(st.client_list, vec![A.to_owned(), B.to_owned()]);
        // index_shards as the config template renders them: readOnly only when true.
        assert_eq!(
            body["index_shards"],
            json!([{"host": HOST_A}, {"host": HOST_B}])
        );
        assert_eq!(body["hash_ring_stamp"]["image_uuid"], img);
        pids.push(st.pid);
    }

    // SAPI marks shard B read-only: nothing changes until a restart.
    d.set_index_shards(&[
        IndexShard::new(HOST_A, false),
        IndexShard::new(HOST_B, true),
    ]);
    let kb = key_on(d.plane.fleet.processes()[0].em(), B);
    let (code, _) = d
        .rpc(
            &d.zones[0],
            "putObject",
            json!({"bucket": "manta", "key": kb, "value": {"v": 1}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        d.status(&d.zones[0]).await.1["index_shards"],
        json!([{"host": HOST_A}, {"host": HOST_B}])
    );

    // `svcadm restart electric-moray` in zone 0 through CNAPI execute.
    d.svcadm(&d.zones[0], "restart");
    let (_, body) = d.status(&d.zones[0]).await;
    assert_eq!(
        body["index_shards"],
        json!([{"host": HOST_A}, {"host": HOST_B, "readOnly": true}])
    );
    assert_ne!(body["pid"], json!(pids[0]));
    // Zone 1 was not restarted: still the old config, still writable.
    assert_eq!(
        d.status(&d.zones[1]).await.1["index_shards"],
        json!([{"host": HOST_A}, {"host": HOST_B}])
    );
    let (code, _) = d
        .rpc(
            &d.zones[1],
            "putObject",
            json!({"bucket": "manta", "key": kb, "value": {"v": 2}}),
        )
        .await;
    assert_eq!(code, 200);

    // Zone 0 refuses the write with e-m's error, and still reads.
    let (code, body) = d
        .rpc(
            &d.zones[0],
            "putObject",
            json!({"bucket": "manta", "key": kb, "value": {"v": 3}}),
        )
        .await;
    assert_eq!(code, 500);
    let err: WireError = serde_json::from_value(body).unwrap();
    assert_eq!(err.name, "ReadOnlyError");
    assert_eq!(err.message, format!("pnode \"{B}\" is in read-only mode"));
    let (code, body) = d
        .rpc(
            &d.zones[0],
            "getObject",
            json!({"bucket": "manta", "key": kb}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["value"], json!({"v": 2}));
    assert_eq!(body["_node"]["pnode"], json!(B));
    // Bucket DDL through zone 0: refused while B is read-only.
    let (code, body) = d
        .rpc(
            &d.zones[0],
            "createBucket",
            json!({"bucket": "b2", "config": {}}),
        )
        .await;
    assert_eq!((code, body["name"].clone()), (500, json!("ReadOnlyError")));
    // The restart is recorded as the command CNAPI ran.
    assert!(d.dc.executions().iter().any(|e| {
        e.zone.as_deref() == Some(d.zones[0].as_str()) && e.argv.iter().any(|a| a == "restart")
    }));
}

#[tokio::test]
async fn a_disabled_process_answers_nothing_until_enabled() {
    let ring = Ring::create(16, &[A, B]).unwrap();
    let d = datacenter(&ring).await;
    let z = &d.zones[2];
    d.svcadm(z, "disable");
    let (code, body) = d.status(z).await;
    assert_eq!(
        (code, body["name"].clone()),
        (503, json!("ServiceUnavailableError"))
    );
    assert_eq!(
        d.dc.smf_state(z, "electric-moray").as_deref(),
        Some("disabled")
    );
    assert_eq!(d.plane.fleet.running().len(), 2);
    d.svcadm(z, "enable");
    assert_eq!(d.status(z).await.0, 200);
    assert_eq!(d.plane.fleet.running().len(), 3);
}

#[tokio::test]
async fn a_process_started_with_a_bad_ring_image_keeps_no_ring_and_says_why() {
    let ring = Ring::create(16, &[A, B]).unwrap();
    let d = datacenter(&ring).await;
    let good = d.plane.fleet.processes()[0].em().ring_fingerprint();
    set_ring_image(&d.dc, "00000000-0000-0000-0000-000000000000", None).unwrap();
    d.svcadm(&d.zones[0], "restart");
    let em = d.plane.fleet.processes()[0].em().clone();
    // The ring in service stays; the status says what failed.
    assert_eq!(em.ring_fingerprint(), good);
    assert!(em.status().ring_image_error.is_some());
}

#[tokio::test]
async fn a_manta_scenario_runs_electric_moray_in_sapi_zones() {
    let text = r#"
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: small}
spec:
  region: small
  dnsDomain: small.example.com
  shards:
    - name: 1.moray.small.example.com
      roles: [marlin, storage]
      peers: [{server: cn01}]
    - name: 2.moray.small.example.com
      roles: [index]
      peers: [{server: cn02}]
    - name: 3.moray.small.example.com
      roles: [index]
      peers: [{server: cn03}]
  ring:
    vnodes: 64
"#;
    let (docs, diags) = crds::parse_documents("small.yaml", text);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let sc = sim::scenario::SimScenario::start(
        &[docs[0].document.clone()],
        Arc::new(coord::mem::MemEnsemble::new()),
        sim::scenario::ScenarioOptions {
            electric_morays: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let plane = sc.manta.clone().expect("a Manta scenario has a data plane");
    // SAPI instances of the electric-moray service, each a VMAPI zone.
    let em_instances: Vec<_> = sc
        .dc
        .instances()
        .into_iter()
        .filter(|i| {
            sc.dc
                .service(&i.service_uuid)
                .is_some_and(|s| s.name == "electric-moray")
        })
        .collect();
    assert_eq!(em_instances.len(), 3);
    assert!(em_instances.iter().all(|i| sc.dc.vm(&i.uuid).is_some()));
    let image = sim::manta::ring_image::current_ring_image(&sc.dc)
        .unwrap()
        .unwrap();
    let http = sim::manta::em_client::http_client(std::time::Duration::from_secs(10));
    let procs = plane.fleet.processes();
    assert_eq!(procs.len(), 3);
    for p in &procs {
        let st: EmStatusBody = http
            .get(format!("{}/status", p.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // INDEX_MORAY_SHARDS names the index shards only.
        assert_eq!(
            st.index_shards,
            Some(vec![
                IndexShard::new("2.moray.small.example.com", false),
                IndexShard::new("3.moray.small.example.com", false),
            ])
        );
        assert_eq!(st.hash_ring_stamp.unwrap().image_uuid, image);
        assert_eq!(st.client_list.len(), 2);
    }
    // A write through one process reads back through another.
    let clients = plane.http_clients(std::time::Duration::from_secs(10));
    let key = format!("{ACCT}/stor/scenario/o1");
    clients[0]
        .put("manta", &key, &json!({"v": 1}))
        .await
        .unwrap();
    assert_eq!(
        clients[2].get("manta", &key).await.unwrap(),
        json!({"v": 1})
    );
    sc.shutdown().await;
}
