//! Contract: the resharding's world (`world::reshard`, `world::reshard_act`)
//! through the controller's real clients against the simulator over HTTP:
//! each electric-moray's status found through VMAPI (its zone's address),
//! a ring image imported into IMGAPI as IMGAPI's admin import does it
//! (manifest, file, activate) and found again by its operation and stage
//! tags, `HASH_RING_IMAGE` set in SAPI and one electric-moray restarted
//! through CNAPI execute (the other still serves the old ring: a rollout
//! is verified per process), and `/pg_dump_lock` taken and released.

use std::sync::Arc;
use std::time::Duration;

use coord::Coordination;
use reconcilers::reshard::{ReshardAct, ReshardObserve, RingStage};
use sim::dc::seed::ServerSpec;
use sim::dc::{Datacenter, DcConfig};
use sim::http::SimServers;
use sim::manta::plane::{MantaPlane, seed_electric_moray};
use sim::manta::ring_image::{publish_ring_image, set_ring_image};
use tritonctl::clients::{Endpoints, Triton, Unguarded};
use tritonctl::world::reshard::TritonReshard;
use tritonctl::world::reshard_addr::VmapiAddresses;
use wire::apis::JsonMap;
use wire::fash::Ring;

const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
const HOSTS: [&str; 2] = ["1.moray.coal.joyent.us", "2.moray.coal.joyent.us"];

#[tokio::test]
async fn the_world_finds_electric_morays_imports_rings_and_rolls_one_out_per_process() {
    let pnodes: Vec<String> = HOSTS.iter().map(|h| format!("tcp://{h}:2020")).collect();
    let ring = Ring::create(64, &pnodes).unwrap();
    let dc = Datacenter::new(DcConfig::default());
    let app = dc.seed_application("manta", OWNER, JsonMap::new(), JsonMap::new());
    let servers: Vec<String> = (0..2)
        .map(|i| dc.seed_server(ServerSpec::compute(&format!("cn{i}"))))
        .collect();
    let hosts: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    let zones = seed_electric_moray(&dc, &app, &hosts, &servers, 2).unwrap();
    let r0 = publish_ring_image(&dc, &ring, OWNER, JsonMap::new()).unwrap();
    set_ring_image(&dc, &r0, None).unwrap();
    let plane = MantaPlane::start(&dc, ring.pnodes()).await.unwrap();
    let servers = SimServers::start(dc.clone()).await.unwrap();
    let urls = servers.urls().clone();
    let triton = Triton::new(
        &Endpoints {
            sapi: urls.sapi,
            vmapi: urls.vmapi,
            cnapi: urls.cnapi,
            imgapi: urls.imgapi,
        },
        Arc::new(Unguarded),
    );
    let coord: Arc<dyn Coordination> = coord::mem::MemEnsemble::new().connect();
    let w = TritonReshard {
        triton: triton.clone(),
        coord,
        fence: None,
        addrs: Arc::new(VmapiAddresses { triton }),
        settle: Duration::from_secs(10),
    };

    // Every electric-moray, found through VMAPI, serves R0.
    let ems = w.electric_morays().await.unwrap();
    assert_eq!(ems.len(), zones.len());
    for em in &ems {
        assert_eq!(em.ring_image.as_deref(), Some(r0.as_str()), "{em:?}");
    }
    assert_eq!(w.live_image().await.unwrap(), r0);
    assert_eq!(w.ring_of(&r0).await.unwrap(), ring);

    // R1 imported over HTTP, found by its tags, read back as the same ring.
    let mut r1_ring = ring.clone();
    r1_ring.set_read_only(&[1, 2], true).unwrap();
    assert_eq!(w.staged_image("op-1", RingStage::R1).await.unwrap(), None);
    let r1 = w
        .import_ring("op-1", RingStage::R1, &r1_ring)
        .await
        .unwrap();
    assert_eq!(
        w.staged_image("op-1", RingStage::R1)
            .await
            .unwrap()
            .as_deref(),
        Some(r1.as_str())
    );
    assert_eq!(w.staged_image("op-2", RingStage::R1).await.unwrap(), None);
    assert_eq!(w.staged_image("op-1", RingStage::R2).await.unwrap(), None);
    assert_eq!(w.ring_of(&r1).await.unwrap(), r1_ring);

    // SAPI names R1; only the restarted process serves it.
    w.set_live_image(&r1).await.unwrap();
    assert_eq!(w.live_image().await.unwrap(), r1);
    w.restart_electric_moray(&zones[0]).await.unwrap();
    let ems = w.electric_morays().await.unwrap();
    let on = |z: &str| {
        ems.iter()
            .find(|e| e.zone == z)
            .and_then(|e| e.ring_image.clone())
    };
    assert_eq!(on(&zones[0]).as_deref(), Some(r1.as_str()));
    assert_eq!(on(&zones[1]).as_deref(), Some(r0.as_str()));

    // A stopped process is reported with why, never as on some ring.
    plane.fleet.process(&zones[1]).unwrap().stop();
    let ems = w.electric_morays().await.unwrap();
    let down = ems.iter().find(|e| e.zone == zones[1]).unwrap();
    assert_eq!(down.ring_image, None);
    assert!(down.error.is_some(), "{down:?}");

    // The dump lock and the region lock.
    assert!(!w.dump_lock("1.moray").await.unwrap());
    w.take_dump_lock("1.moray").await.unwrap();
    w.take_dump_lock("1.moray").await.unwrap();
    assert!(w.dump_lock("1.moray").await.unwrap());
    w.release_dump_lock("1.moray").await.unwrap();
    w.release_dump_lock("1.moray").await.unwrap();
    assert!(!w.dump_lock("1.moray").await.unwrap());
    w.take_region_lock("op-1").await.unwrap();
    assert_eq!(w.region_lock().await.unwrap().as_deref(), Some("op-1"));
    assert!(w.take_region_lock("op-2").await.is_err());
    w.release_region_lock("op-1").await.unwrap();
    assert_eq!(w.region_lock().await.unwrap(), None);
    assert_eq!(dc.sapi_would_crash().len(), 0);
    plane.fleet.shutdown();
}
