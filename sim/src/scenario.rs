//! A whole simulated datacenter in one call, built from the same documents
//! as `examples/` (a `HeadnodeSet` gives the headnodes and the `sdc` shard; a
//! `ShardTopology` gives the Manta compute nodes and metadata shards).
//!
//! It ties the parts together the way a real datacenter does:
//! - every manatee/postgres zone gets a sitter on the shared coordination
//!   ensemble, booted from its SAPI metadata (`ONE_NODE_WRITE_MODE`,
//!   `DISABLE_SITTER`);
//! - when VMAPI stops, reprovisions or destroys a zone, its sitter dies with
//!   it (its ZooKeeper session expires) and boots again with the zone;
//! - `svcadm disable|enable manatee-sitter` run through CNAPI stops or starts it;
//! - `manatee-adm pg-status` run in a manatee zone through CNAPI answers
//!   from the simulated shard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::Document;
use serde_json::json;
use tokio::task::JoinHandle;
use wire::apis::{ExecuteResult, JsonMap};
use wire::manatee::PgStatusReport;

use crate::dc::events::{DcEvent, VmEventKind};
use crate::dc::seed::{ImageSpec, InstanceSpec, ServerSpec};
use crate::dc::{Datacenter, DcConfig};
use crate::http::SimServers;
use crate::manatee::{
    BootOptions, ManateeSim, ManateeSimConfig, SessionProvider, TimeScale, ZoneSpec,
};

/// Images every scenario's IMGAPI holds. The examples refer to these UUIDs.
pub mod images {
    /// manatee 1.0 (2014 vintage): a shard on it needs the transplant to reach v2.
    pub const MANATEE_V1: &str = "6d8a6f1e-1b2c-4c3d-9e4f-5a6b7c8d9e01";
    /// The manatee v2 image the scenarios start on.
    pub const MANATEE_V2_CURRENT: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";
    /// A newer manatee v2 image (the lab upgrade's target).
    pub const MANATEE_V2_NEXT: &str = "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716";
    pub const MORAY: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    pub const BINDER: &str = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e";
}

/// Knobs of a scenario.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// Datacenter durations multiplier (a 15-minute reprovision takes 15 min × this).
    pub dc_time_scale: f64,
    /// Manatee durations multiplier (sitter backoff, restore, PG transitions).
    pub manatee_time_scale: f64,
    /// Image the manatee zones start on.
    pub manatee_image: String,
    pub seed: u64,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions {
            dc_time_scale: 1.0 / 3000.0,
            manatee_time_scale: 1.0 / 100.0,
            manatee_image: images::MANATEE_V2_CURRENT.into(),
            seed: 1,
        }
    }
}

/// A running simulated datacenter.
pub struct SimScenario {
    pub dc: Datacenter,
    pub servers: SimServers,
    pub manatee: ManateeSim,
    /// Shard name -> its zones (VM uuids).
    pub shards: HashMap<String, Vec<String>>,
    tasks: Vec<JoinHandle<()>>,
}

fn meta(pairs: &[(&str, serde_json::Value)]) -> JsonMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn image(dc: &Datacenter, uuid: &str, name: &str, version: &str, major: Option<u32>) {
    let mut s = ImageSpec::new(name, version);
    s.uuid = Some(uuid.to_string());
    s.tags.insert("smartdc_service".into(), json!(true));
    if let Some(m) = major {
        s.tags.insert("manatee_major".into(), json!(m));
    }
    dc.seed_image(s);
}

/// A server's uuid by hostname, seeding it when new.
fn server(
    dc: &Datacenter,
    by_name: &mut HashMap<String, String>,
    hostname: &str,
    headnode: bool,
) -> String {
    if let Some(u) = by_name.get(hostname) {
        return u.clone();
    }
    let spec = if headnode {
        ServerSpec::headnode(hostname)
    } else {
        ServerSpec::compute(hostname)
    };
    let uuid = dc.seed_server(spec);
    by_name.insert(hostname.to_string(), uuid.clone());
    uuid
}

impl SimScenario {
    /// Build and start a datacenter from documents (HeadnodeSet and/or
    /// ShardTopology); manatee sitters coordinate through `coord`.
    pub async fn start(
        docs: &[Document],
        coord: Arc<dyn SessionProvider>,
        opts: ScenarioOptions,
    ) -> Result<SimScenario, String> {
        let hs = docs.iter().find_map(|d| match d {
            Document::HeadnodeSet(h) => Some(h),
            _ => None,
        });
        let topo = docs.iter().find_map(|d| match d {
            Document::ShardTopology(t) => Some(t),
            _ => None,
        });
        let dc_name = hs
            .map(|h| h.spec.datacenter.clone())
            .unwrap_or_else(|| "dc0".into());
        let dc = Datacenter::new(DcConfig {
            datacenter_name: dc_name,
            time_scale: opts.dc_time_scale,
            seed: opts.seed,
            ..Default::default()
        });
        image(
            &dc,
            images::MANATEE_V1,
            "sdc-manatee",
            "20141118T223437Z",
            Some(1),
        );
        image(
            &dc,
            images::MANATEE_V2_CURRENT,
            "sdc-manatee",
            "20240327T001755Z",
            Some(2),
        );
        image(
            &dc,
            images::MANATEE_V2_NEXT,
            "sdc-manatee",
            "20251104T182201Z",
            Some(2),
        );
        image(&dc, images::MORAY, "sdc-moray", "20240327T001755Z", None);
        image(&dc, images::BINDER, "sdc-binder", "20240327T001755Z", None);

        let owner = dc.new_uuid();
        let mut by_name = HashMap::new();
        let mut zones: Vec<(String, String, bool)> = Vec::new(); // (vm uuid, shard, onwm)
        let svc_params = |img: &str, role: &str| {
            meta(&[
                ("image_uuid", json!(img)),
                ("networks", json!(["admin"])),
                ("ram", json!(4096)),
                ("delegate_dataset", json!(true)),
                (
                    "tags",
                    json!({"smartdc_role": role, "smartdc_type": "core"}),
                ),
            ])
        };
        if let Some(hs) = hs {
            for h in &hs.spec.headnodes {
                server(&dc, &mut by_name, h, true);
            }
            let app = dc.seed_application(
                "sdc",
                &owner,
                JsonMap::new(),
                meta(&[("datacenter_name", json!(hs.spec.datacenter))]),
            );
            let manatee_svc = dc.seed_service(
                &app,
                "manatee",
                svc_params(&opts.manatee_image, "manatee"),
                meta(&[
                    ("SHARD", json!("sdc")),
                    ("MANATEE_SHARD_PATH", json!("/manatee/sdc")),
                ]),
            );
            let moray_svc = dc.seed_service(
                &app,
                "moray",
                svc_params(images::MORAY, "moray"),
                JsonMap::new(),
            );
            let binder_svc = dc.seed_service(
                &app,
                "binder",
                svc_params(images::BINDER, "binder"),
                JsonMap::new(),
            );
            let onwm = hs.spec.ha_services.manatee.len() == 1;
            for (i, h) in hs.spec.ha_services.manatee.iter().enumerate() {
                let mut m = JsonMap::new();
                if onwm {
                    m.insert("ONE_NODE_WRITE_MODE".into(), json!(true));
                }
                let spec = InstanceSpec {
                    server_uuid: by_name[h].clone(),
                    alias: Some(format!("manatee{i}")),
                    metadata: m,
                    ..Default::default()
                };
                let uuid = dc
                    .seed_instance(&manatee_svc, spec)
                    .map_err(|e| e.to_string())?;
                zones.push((uuid, "sdc".into(), onwm));
            }
            for (svc, list, name) in [
                (&moray_svc, &hs.spec.ha_services.moray, "moray"),
                (&binder_svc, &hs.spec.ha_services.binder, "binder"),
            ] {
                for (i, h) in list.iter().enumerate() {
                    let spec = InstanceSpec {
                        server_uuid: by_name[h].clone(),
                        alias: Some(format!("{name}{i}")),
                        ..Default::default()
                    };
                    dc.seed_instance(svc, spec).map_err(|e| e.to_string())?;
                }
            }
        }
        if let Some(t) = topo {
            let app = dc.seed_application(
                "manta",
                &owner,
                JsonMap::new(),
                meta(&[
                    ("REGION", json!(t.spec.region)),
                    ("DNS_DOMAIN", json!(t.spec.dns_domain)),
                ]),
            );
            let pg = dc.seed_service(
                &app,
                "postgres",
                svc_params(&opts.manatee_image, "postgres"),
                JsonMap::new(),
            );
            for shard in &t.spec.shards {
                let n = crds::common::shard_number(&shard.name).unwrap_or(0);
                let onwm = shard.peers.len() == 1;
                for (i, p) in shard.peers.iter().enumerate() {
                    let srv = server(&dc, &mut by_name, &p.server, false);
                    let mut m = meta(&[
                        ("SHARD", json!(n.to_string())),
                        ("SERVICE_NAME", json!(shard.name)),
                        (
                            "MANATEE_SHARD_PATH",
                            json!(format!("/manatee/{}", shard.name)),
                        ),
                    ]);
                    if onwm {
                        m.insert("ONE_NODE_WRITE_MODE".into(), json!(true));
                    }
                    let spec = InstanceSpec {
                        server_uuid: srv,
                        alias: Some(format!("{n}.postgres.{i}")),
                        metadata: m,
                        ..Default::default()
                    };
                    let uuid = dc.seed_instance(&pg, spec).map_err(|e| e.to_string())?;
                    zones.push((uuid, shard.name.clone(), onwm));
                }
            }
        }

        let cfg = ManateeSimConfig {
            time_scale: TimeScale::new(opts.manatee_time_scale),
            ..Default::default()
        };
        let manatee = ManateeSim::new(coord, cfg);
        let mut shards: HashMap<String, Vec<String>> = HashMap::new();
        for (vm, shard, onwm) in &zones {
            let ip = dc
                .vm(vm)
                .and_then(|v| v.nics.first().map(|n| n.ip.clone()))
                .ok_or_else(|| format!("zone {vm} has no NIC"))?;
            manatee
                .add_zone(
                    ZoneSpec::new(vm, &ip),
                    BootOptions::new(shard).one_node_write_mode(*onwm),
                )
                .await
                .map_err(|e| e.to_string())?;
            shards.entry(shard.clone()).or_default().push(vm.clone());
        }
        // Wait for every shard to set itself up (state with all its peers placed).
        for (shard, members) in &shards {
            let want = members.len();
            let s = manatee.shard(shard);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(st)) = s.state().await {
                    let placed = 1 + usize::from(st.sync.is_some()) + st.asyncs.len();
                    if placed == want || (st.is_one_node_write_mode() && want == 1) {
                        break;
                    }
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("shard {shard} did not set itself up within 30s"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // ...and healthy as `manatee-adm verify` sees it (replication established).
            loop {
                match s.verify().await {
                    Ok(issues)
                        if !issues
                            .iter()
                            .any(|i| i.severity == wire::manatee::Severity::Error) =>
                    {
                        break;
                    }
                    _ if tokio::time::Instant::now() > deadline => {
                        return Err(format!("shard {shard} did not become healthy within 30s"));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }

        let status: Arc<Mutex<HashMap<String, PgStatusReport>>> = Arc::default();
        let zone_shard: ZoneShards = Arc::new(Mutex::new(
            shards
                .iter()
                .flat_map(|(s, zs)| zs.iter().map(move |z| (z.clone(), s.clone())))
                .collect(),
        ));
        let mut tasks = vec![
            tokio::spawn(bridge_vm_events(
                dc.clone(),
                manatee.clone(),
                zone_shard.clone(),
            )),
            tokio::spawn(refresh_pg_status(
                manatee.clone(),
                shards.keys().cloned().collect(),
                status.clone(),
            )),
        ];
        install_manatee_adm(&dc, zone_shard, status, manatee.clone());
        let servers = SimServers::start(dc.clone())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(t) = topo {
            // The ring goes into IMGAPI and SAPI names it, as create-topology does.
            use crate::manta::ring_image;
            let ring = ring_image::ring_for_topology(&t.spec)?;
            ring_image::publish_ring_image(&dc, &ring, &owner, JsonMap::new())
                .and_then(|i| ring_image::set_ring_image(&dc, &i, Some(&servers.urls().imgapi)))
                .map_err(|e| format!("hash ring image: {e}"))?;
        }
        tasks.shrink_to_fit();
        Ok(SimScenario {
            dc,
            servers,
            manatee,
            shards,
            tasks,
        })
    }

    /// Stop sitters and background tasks.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.manatee.shutdown().await;
    }
}

/// Zone uuid -> the shard its sitter belongs to (zones provisioned later join).
type ZoneShards = Arc<Mutex<HashMap<String, String>>>;

fn md_flag(md: &JsonMap, k: &str) -> bool {
    md.get(k)
        .is_some_and(|v| v == &json!(true) || v == &json!("true"))
}

/// The shard a zone's SAPI metadata puts it in (what sitter.json's
/// `shardPath` is rendered from), for manatee and Manta postgres zones.
fn shard_of(info: &crate::dc::events::InstanceInfo) -> Option<String> {
    if info.service_name != "manatee" && info.service_name != "postgres" {
        return None;
    }
    info.metadata
        .get("MANATEE_SHARD_PATH")
        .and_then(|v| v.as_str())
        .and_then(|p| p.strip_prefix("/manatee/"))
        .map(str::to_string)
}

/// Zones stop and boot with their VM; the sitter follows. A manatee or
/// postgres zone provisioned through SAPI gets a sitter of its own, booted
/// from its metadata, and joins its shard.
async fn bridge_vm_events(dc: Datacenter, manatee: ManateeSim, zone_shard: ZoneShards) {
    let mut rx = dc.subscribe();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        match ev {
            DcEvent::Vm(ev) => {
                if ev.kind == VmEventKind::Provisioned
                    && manatee.zone(&ev.zone.vm.uuid).is_none()
                    && let Some(info) = &ev.zone.instance
                    && let Some(shard) = shard_of(info)
                    && let Some(ip) = ev.zone.vm.nics.first().map(|n| n.ip.clone())
                {
                    let boot = BootOptions::new(&shard)
                        .one_node_write_mode(md_flag(&info.metadata, "ONE_NODE_WRITE_MODE"))
                        .disable_sitter(md_flag(&info.metadata, "DISABLE_SITTER"));
                    zone_shard
                        .lock()
                        .unwrap()
                        .insert(ev.zone.vm.uuid.clone(), shard);
                    if let Err(e) = manatee
                        .add_zone(ZoneSpec::new(&ev.zone.vm.uuid, &ip), boot)
                        .await
                    {
                        tracing::warn!(zone = %ev.zone.vm.uuid, error = %e, "new manatee zone did not boot");
                    }
                    continue;
                }
                let Some(zone) = manatee.zone(&ev.zone.vm.uuid) else {
                    continue;
                };
                match ev.kind {
                    // A halting zone takes its sitter down without a clean
                    // ZooKeeper close: the session expires.
                    VmEventKind::Stopping
                    | VmEventKind::Reprovisioning
                    | VmEventKind::Destroyed => zone.kill().await,
                    VmEventKind::Stopped => zone.kill().await,
                    VmEventKind::Started | VmEventKind::Reprovisioned => {
                        let md = ev
                            .zone
                            .instance
                            .as_ref()
                            .map(|i| i.metadata.clone())
                            .unwrap_or_default();
                        let flag = |k: &str| md_flag(&md, k);
                        let boot = zone
                            .boot_options()
                            .one_node_write_mode(flag("ONE_NODE_WRITE_MODE"))
                            .disable_sitter(flag("DISABLE_SITTER"));
                        if let Err(e) = zone.restart(boot).await {
                            tracing::warn!(zone = %zone.zone_id(), error = %e, "sitter did not restart with its zone");
                        }
                    }
                    _ => {}
                }
            }
            DcEvent::Exec(ex) => {
                let (Some(z), Some(svc)) = (ex.zone.as_ref(), ex.svcadm.as_ref()) else {
                    continue;
                };
                if !svc.fmri.contains("manatee-sitter") && !svc.fmri.contains("manatee/sitter") {
                    continue;
                }
                let Some(zone) = manatee.zone(z) else {
                    continue;
                };
                use crate::dc::events::SvcAction;
                // The sitter reads sitter.json when it starts; config-agent
                // has rendered it from the zone's current SAPI metadata (as
                // sdcadm runs config-agent before restarting the sitter).
                let rendered = || {
                    let md = dc
                        .zone(z)
                        .and_then(|i| i.instance)
                        .map(|i| i.metadata)
                        .unwrap_or_default();
                    zone.boot_options()
                        .one_node_write_mode(md_flag(&md, "ONE_NODE_WRITE_MODE"))
                };
                match svc.action {
                    SvcAction::Disable => zone.stop().await,
                    SvcAction::Enable if !zone.is_running() => {
                        let _ = zone.restart(rendered()).await;
                    }
                    SvcAction::Restart => {
                        let _ = zone.restart(rendered()).await;
                    }
                    _ => {}
                }
            }
            DcEvent::Server(_) => {}
        }
    }
}

/// Keep a recent `pg-status` per shard for the (synchronous) exec handler.
async fn refresh_pg_status(
    manatee: ManateeSim,
    shards: Vec<String>,
    out: Arc<Mutex<HashMap<String, PgStatusReport>>>,
) {
    loop {
        for s in &shards {
            if let Ok(r) = manatee.shard(s).pg_status().await {
                out.lock().unwrap().insert(s.clone(), r);
            } else {
                out.lock().unwrap().remove(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn install_manatee_adm(
    dc: &Datacenter,
    zone_shard: ZoneShards,
    status: Arc<Mutex<HashMap<String, PgStatusReport>>>,
    manatee: ManateeSim,
) {
    dc.add_exec_handler(Arc::new(move |cmd| {
        let zone = cmd.zone.as_ref()?;
        let shard = zone_shard.lock().unwrap().get(zone)?.clone();
        let shard = &shard;
        let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
        if argv.first() != Some(&"manatee-adm") {
            return None;
        }
        let report = status.lock().unwrap().get(shard).cloned();
        Some(match (argv.get(1).copied(), report) {
            // `manatee-adm rebuild -y` (§4.8), started in the background (the
            // real command blocks; callers poll the shard either way). The
            // simulated rebuild refuses the primary.
            (Some("rebuild"), _) => {
                let z = manatee.zone(zone)?;
                let sh = manatee.shard(shard);
                tokio::spawn(async move {
                    if let Err(e) = sh.rebuild(&z).await {
                        tracing::warn!(zone = %z.zone_id(), error = %e, "manatee-adm rebuild failed");
                    }
                });
                ExecuteResult {
                    stdout: "rebuild started\n".into(),
                    stderr: String::new(),
                    exit_code: 0,
                }
            }
            (Some("pg-status"), Some(r)) => ExecuteResult {
                stdout: wire::pgstatus::render(&r),
                stderr: String::new(),
                exit_code: 0,
            },
            (Some("pg-status"), None) => ExecuteResult {
                stdout: String::new(),
                stderr: format!("manatee-adm: no state object exists for shard: \"{shard}\"\n"),
                exit_code: 1,
            },
            (Some(other), _) => ExecuteResult {
                stdout: String::new(),
                stderr: format!("manatee-adm: subcommand `{other}` is not simulated\n"),
                exit_code: 2,
            },
            (None, _) => ExecuteResult {
                stdout: String::new(),
                stderr: "usage: manatee-adm SUBCOMMAND\n".into(),
                exit_code: 2,
            },
        })
    }));
}
