//! The ring-wide load generator over the HTTP API of a datacenter's
//! electric-moray processes, through a vnode move done the manta-reshard
//! way (read-only in SAPI, restart every e-m, copy, new ring image, restart,
//! read-write, restart, delete the ghost rows): no acknowledged write is
//! lost, ghost rows show as rows on two shards until deleted, and refusals
//! land only on the read-only pnode's vnodes, split into moved and unmoved.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sim::dc::seed::ServerSpec;
use sim::dc::{Datacenter, DcConfig};
use sim::manta::IndexShard;
use sim::manta::config::{INDEX_MORAY_SHARDS, index_moray_shards_value};
use sim::manta::load::StopAfter;
use sim::manta::mlive::{self, MliveConfig};
use sim::manta::plane::{MantaPlane, seed_electric_moray};
use sim::manta::reshard::copy_vnode_rows;
use sim::manta::ring_image::{publish_ring_image, set_ring_image};
use wire::apis::{ExecuteRequest, JsonMap};
use wire::fash::Ring;

const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
const HA: &str = "1.moray.test";
const HB: &str = "2.moray.test";
const HC: &str = "3.moray.test";

fn pnode(h: &str) -> String {
    format!("tcp://{h}:2020")
}

struct Fx {
    dc: Datacenter,
    app: String,
    plane: MantaPlane,
}

impl Fx {
    fn index_shards(&self, shards: &[(&str, bool)]) {
        let s: Vec<IndexShard> = shards
            .iter()
            .map(|(h, ro)| IndexShard::new(h, *ro))
            .collect();
        let mut md = JsonMap::new();
        md.insert(INDEX_MORAY_SHARDS.into(), index_moray_shards_value(&s));
        let mut p = JsonMap::new();
        p.insert("action".into(), json!("update"));
        p.insert("metadata".into(), Value::Object(md));
        self.dc.sapi_update_application(&self.app, &p).unwrap();
    }

    /// `svcadm restart electric-moray` in every e-m zone through CNAPI,
    /// then each process's status must show what SAPI says.
    fn restart_all(&self) {
        for p in self.plane.fleet.processes() {
            let server = self.dc.vm(p.zone()).unwrap().server_uuid.unwrap();
            let req = ExecuteRequest {
                script: format!(
                    "#!/bin/bash\nsvcadm -z {} restart electric-moray\n",
                    p.zone()
                ),
                ..Default::default()
            };
            assert_eq!(self.dc.cnapi_execute(&server, &req).unwrap().exit_code, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlive_through_a_vnode_move_loses_nothing_and_splits_refusals() {
    let dc = Datacenter::new(DcConfig::default());
    let app = dc.seed_application("manta", OWNER, JsonMap::new(), JsonMap::new());
    let servers: Vec<String> = (0..3)
        .map(|i| dc.seed_server(ServerSpec::compute(&format!("cn{i}"))))
        .collect();
    seed_electric_moray(&dc, &app, &[HA.into(), HB.into()], &servers, 3).unwrap();
    let (a, b, c) = (pnode(HA), pnode(HB), pnode(HC));
    let ring = Ring::create(128, &[a.as_str(), b.as_str()]).unwrap();
    let img = publish_ring_image(&dc, &ring, OWNER, JsonMap::new()).unwrap();
    set_ring_image(&dc, &img, None).unwrap();
    let plane = MantaPlane::start(&dc, &[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    let fx = Fx { dc, app, plane };
    assert_eq!(fx.plane.fleet.running().len(), 3);

    let cfg = MliveConfig {
        workers: 4,
        period: Duration::from_millis(2),
        stop: StopAfter::Elapsed(Duration::from_secs(600)),
        ..MliveConfig::default()
    };
    let clients = fx.plane.http_clients(Duration::from_secs(5));
    let run = mlive::spawn(clients, &ring, cfg);
    tokio::time::sleep(Duration::from_millis(150)).await;

    // manta-reshard phases 7-8: both shards read-only, every e-m restarted.
    fx.index_shards(&[(HA, false), (HB, true), (HC, true)]);
    fx.restart_all();
    // Keep the window open long enough for some writes to meet it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Every second vnode of B moves to C (manta-reshard's choice).
    let b_vnodes = ring.vnodes_of(&b).unwrap();
    let moved: BTreeSet<u32> = b_vnodes.iter().copied().step_by(2).collect();
    let (sb, sc) = (
        fx.plane.tier.shard(&b).unwrap(),
        fx.plane.tier.shard(&c).unwrap(),
    );
    let copied = copy_vnode_rows(&sb, &sc, &moved).unwrap();
    let mut next = ring.clone();
    next.remap(&moved.iter().copied().collect::<Vec<_>>(), &c)
        .unwrap();
    let img2 = publish_ring_image(&fx.dc, &next, OWNER, JsonMap::new()).unwrap();
    set_ring_image(&fx.dc, &img2, None).unwrap();
    fx.restart_all();
    for p in fx.plane.fleet.processes() {
        assert_eq!(p.em().ring_image().as_deref(), Some(img2.as_str()));
    }
    // Read-write again.
    fx.index_shards(&[(HA, false), (HB, false), (HC, false)]);
    fx.restart_all();
    tokio::time::sleep(Duration::from_millis(150)).await;
    run.stop();
    let report = run.wait().await;
    eprintln!("{}", report.summary());
    eprintln!("copied {copied:?}");
    let via = fx.plane.fleet.running();

    // Before the ghost rows go: the moved rows are on two shards.
    let before = report.verify(&fx.plane.tier, &via).await;
    assert_eq!(before.lost(), 0, "{before:?}");
    if copied.selected > 20 {
        assert!(before.on_two_shards() > 0, "{before:?}");
    }
    // Phase 19: the ghost rows go from B (no ring routes there any more).
    sb.delete_vnodes(&moved).unwrap();
    let after = report.verify(&fx.plane.tier, &via).await;
    assert_eq!(after.lost(), 0, "{after:?}");
    assert_eq!(after.on_two_shards(), 0, "{after:?}");
    assert!(after.is_clean(), "{after:?}");

    // Refusals only where a pnode was read-only: B's vnodes, moved or not.
    let b_set: BTreeSet<u32> = b_vnodes.iter().copied().collect();
    for (v, blk) in &report.blocked {
        if blk.refused > 0 {
            assert!(b_set.contains(v), "vnode {v} of A was refused: {blk:?}");
        }
    }
    // Anything else that failed did so while a process restarted.
    for f in report.failures() {
        let name = &f.error.as_ref().unwrap().name;
        assert!(
            name == "ReadOnlyError" || name == "ServiceUnavailableError",
            "{f:?}"
        );
    }
    let (m, u) = report.blocked_split(&moved);
    let refused: u64 = report.blocked.values().map(|b| b.refused).sum();
    assert_eq!(m.refused_writes + u.refused_writes, refused);
    assert!(refused > 0, "no write met the read-only window");
    eprintln!("moved: {m:?}\nunmoved: {u:?}");
    assert!(report.writes_acked > 0 && report.reads_ok > 0);
    assert!(report.read_p50.is_some() && report.read_p99 >= report.read_p50);
    assert_eq!(report.reads_mismatched, 0);
    fx.plane.fleet.shutdown();
}
