//! The controller zone's restarter (`sim::controller_zone`), with a stand-in
//! binary (a shell script that exits with the status its rendered config
//! names): a process that exits while its zone runs is started again, as
//! svc.startd restarts a contract service (the controller exits 3 after a
//! lost leadership); exit 1, an invalid configuration, leaves the service in
//! maintenance instead of restarting it forever.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::controller_zone::{ControllerZoneOptions, ControllerZones, FMRI, SERVICE};
use sim::dc::{Datacenter, DcConfig, InstanceSpec, SdcScenario, seed_sdc};

/// A datacenter with one `tritonctl` zone whose metadata says `EXIT`.
fn dc_with_zone(exit: u8) -> (Datacenter, String) {
    let dc = Datacenter::new(DcConfig::default());
    let seeded = seed_sdc(&dc, &SdcScenario::default());
    let mut params = serde_json::Map::new();
    params.insert("image_uuid".into(), json!(seeded.images["binder"].clone()));
    params.insert("networks".into(), json!(["admin"]));
    let mut meta = serde_json::Map::new();
    meta.insert("EXIT".into(), json!(exit));
    let svc = dc.seed_service(&seeded.app_uuid, SERVICE, params, meta);
    let zone = dc
        .seed_instance(
            &svc,
            InstanceSpec {
                server_uuid: seeded.headnodes[0].clone(),
                alias: Some("tritonctl0".into()),
                ..Default::default()
            },
        )
        .unwrap();
    (dc, zone)
}

fn start(dc: &Datacenter, dir: &std::path::Path) -> Arc<ControllerZones> {
    // `controller --config FILE`: $3 is the rendered file, its text the status.
    let bin = dir.join("fake-tritonctl");
    std::fs::write(&bin, "#!/bin/sh\nsleep 0.1\nexit \"$(cat \"$3\")\"\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    ControllerZones::start(
        dc.clone(),
        ControllerZoneOptions {
            binary: bin,
            render: Arc::new(|view: &Value| {
                assert!(view["auto"]["ZONENAME"].is_string(), "{view}");
                Ok(view["EXIT"].to_string())
            }),
            root: dir.join("zones"),
            env: Vec::new(),
        },
    )
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_controller_that_exits_3_is_started_again() {
    let (dc, zone) = dc_with_zone(3);
    let dir = tempfile::tempdir().unwrap();
    let zones = start(&dc, dir.path());
    until("restarted twice", || {
        zones.record(&zone).is_some_and(|r| r.starts >= 3)
    })
    .await;
    let r = zones.record(&zone).unwrap();
    assert!(r.exits.iter().all(|e| *e == Some(3)), "{r:?}");
    assert!(!r.maintenance, "{r:?}");
    assert_eq!(dc.smf_state(&zone, FMRI).as_deref(), Some("online"));
    assert_eq!(
        std::fs::read_to_string(zones.config_path(&zone)).unwrap(),
        "3"
    );
    zones.shutdown();
}

#[tokio::test]
async fn an_invalid_configuration_leaves_the_service_in_maintenance() {
    let (dc, zone) = dc_with_zone(1);
    let dir = tempfile::tempdir().unwrap();
    let zones = start(&dc, dir.path());
    until("in maintenance", || {
        zones.record(&zone).is_some_and(|r| r.maintenance)
    })
    .await;
    // Given time, it is still not restarted.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = zones.record(&zone).unwrap();
    assert_eq!(r.starts, 1, "{r:?}");
    assert_eq!(r.exits, vec![Some(1)]);
    assert_eq!(r.pid, None);
    assert_eq!(dc.smf_state(&zone, FMRI).as_deref(), Some("maintenance"));
    zones.shutdown();
}
