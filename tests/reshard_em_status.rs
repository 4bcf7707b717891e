//! Contract: the controller's electric-moray status client
//! (`clients::electric_moray`) against the simulator's electric-moray
//! processes over HTTP: the ring stamp it reads is the image SAPI
//! `HASH_RING_IMAGE` named when the process last started (what the
//! resharding verifies a rollout by), a stopped process is an error with
//! the status code, not a stale answer.

use std::sync::Arc;

use sim::dc::seed::ServerSpec;
use sim::dc::{Datacenter, DcConfig};
use sim::manta::plane::{MantaPlane, seed_electric_moray};
use sim::manta::ring_image::{publish_ring_image, set_ring_image};
use tritonctl::clients::electric_moray::ElectricMorayStatus;
use tritonctl::clients::{HttpApi, Unguarded, http_client};
use wire::apis::JsonMap;
use wire::fash::Ring;

const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
const HOSTS: [&str; 2] = ["1.moray.coal.joyent.us", "2.moray.coal.joyent.us"];

fn client(url: &str) -> ElectricMorayStatus {
    let http = http_client(std::time::Duration::from_secs(10));
    ElectricMorayStatus(HttpApi::new(
        "electric-moray",
        url,
        http,
        Arc::new(Unguarded),
    ))
}

#[tokio::test]
async fn the_status_client_reads_the_ring_each_process_loaded_at_its_last_start() {
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

    for z in &zones {
        let st = client(&plane.fleet.process(z).unwrap().url())
            .status()
            .await
            .unwrap();
        assert_eq!(st.ring_image(), Some(r0.as_str()), "{z}");
        assert!(st.pid > 0);
    }

    // A new ring named in SAPI reaches a process only by a restart.
    let mut ro = ring.clone();
    ro.set_read_only(&[1, 2], true).unwrap();
    let r1 = publish_ring_image(&dc, &ro, OWNER, JsonMap::new()).unwrap();
    set_ring_image(&dc, &r1, None).unwrap();
    let p0 = plane.fleet.process(&zones[0]).unwrap();
    p0.stop();
    let down = client(&p0.url()).status().await.unwrap_err();
    assert_eq!(down.status(), Some(503), "{down}");
    p0.start().unwrap();
    let st0 = client(&p0.url()).status().await.unwrap();
    let st1 = client(&plane.fleet.process(&zones[1]).unwrap().url())
        .status()
        .await
        .unwrap();
    assert_eq!(st0.ring_image(), Some(r1.as_str()));
    assert_eq!(
        st1.ring_image(),
        Some(r0.as_str()),
        "not restarted: still the old ring"
    );
    plane.fleet.shutdown();
}
