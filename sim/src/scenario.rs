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
    BootOptions, ManateeSim, ManateeSimConfig, RealPostgres, SessionProvider, TimeScale, ZoneSpec,
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
#[derive(Clone)]
pub struct ScenarioOptions {
    /// Datacenter durations multiplier (a 15-minute reprovision takes 15 min × this).
    pub dc_time_scale: f64,
    /// Manatee durations multiplier (sitter backoff, restore, PG transitions).
    pub manatee_time_scale: f64,
    /// Image the manatee zones start on.
    pub manatee_image: String,
    pub seed: u64,
    /// electric-moray zones in a Manta scenario (one with a ShardTopology).
    pub electric_morays: usize,
    /// Run every manatee zone on a real PostgreSQL server (opt-in; the
    /// model otherwise). Slow it down with `manatee_time_scale`.
    pub real_pg: Option<Arc<RealPostgres>>,
}

impl std::fmt::Debug for ScenarioOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioOptions")
            .field("dc_time_scale", &self.dc_time_scale)
            .field("manatee_time_scale", &self.manatee_time_scale)
            .field("manatee_image", &self.manatee_image)
            .field("seed", &self.seed)
            .field("electric_morays", &self.electric_morays)
            .field("real_pg", &self.real_pg.is_some())
            .finish()
    }
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions {
            dc_time_scale: 1.0 / 3000.0,
            manatee_time_scale: 1.0 / 100.0,
            manatee_image: images::MANATEE_V2_CURRENT.into(),
            seed: 1,
            electric_morays: 2,
            real_pg: None,
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
    /// The Manta data plane (electric-moray processes over the Moray tier),
    /// in a scenario with a ShardTopology.
    pub manta: Option<crate::manta::plane::MantaPlane>,
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
        // (manta app, index shards, servers): electric-moray is seeded once
        // its ring image exists (and so after every uuid drawn before).
        let mut em_seed: Option<(String, Vec<String>, Vec<String>)> = None;
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
            let index: Vec<String> = t
                .spec
                .shards
                .iter()
                .filter(|s| s.roles.contains(&crds::shards::ShardRole::Index))
                .map(|s| s.name.clone())
                .collect();
            let mut em_servers: Vec<String> = t
                .spec
                .shards
                .iter()
                .flat_map(|s| s.peers.iter().map(|p| by_name[&p.server].clone()))
                .collect();
            em_servers.sort();
            em_servers.dedup();
            em_seed = Some((app, index, em_servers));
        }

        let cfg = ManateeSimConfig {
            time_scale: TimeScale::new(opts.manatee_time_scale),
            ..Default::default()
        };
        let major = image_major(&dc, &opts.manatee_image);
        let manatee = match &opts.real_pg {
            Some(pg) => ManateeSim::with_real_pg(coord, cfg, pg.clone()),
            None => ManateeSim::new(coord, cfg),
        };
        let mut shards: HashMap<String, Vec<String>> = HashMap::new();
        for (vm, shard, onwm) in &zones {
            let ip = dc
                .vm(vm)
                .and_then(|v| v.nics.first().map(|n| n.ip.clone()))
                .ok_or_else(|| format!("zone {vm} has no NIC"))?;
            let zone = manatee
                .add_zone(
                    ZoneSpec::new(vm, &ip),
                    BootOptions::new(shard)
                        .one_node_write_mode(*onwm)
                        .major(major),
                )
                .await
                .map_err(|e| e.to_string())?;
            publish_pg_address(&dc, &zone);
            shards.entry(shard.clone()).or_default().push(vm.clone());
        }
        // Wait for every shard to set itself up (state with all its peers placed).
        for (shard, members) in &shards {
            let want = members.len();
            let s = manatee.shard(shard);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            if major == 1 {
                // v1: no cluster state; whole when every sitter is in the
                // election and the first one takes writes.
                loop {
                    let order = s.election_order().await.unwrap_or_default();
                    let writable = order
                        .first()
                        .and_then(|(_, z)| manatee.zone(z))
                        .is_some_and(|z| z.pg_online() && !z.pg_read_only());
                    let replicas_up = order
                        .iter()
                        .skip(1)
                        .filter_map(|(_, z)| manatee.zone(z))
                        .all(|z| z.pg_online());
                    if order.len() == want && writable && replicas_up {
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!("v1 shard {shard} did not come up within 30s"));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
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
        install_manatee_adm(&dc, zone_shard.clone(), status, manatee.clone());
        install_zfs_and_sitter_config(&dc, &manatee);
        let servers = SimServers::start(dc.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut manta = None;
        if let Some(t) = topo {
            // The ring goes into IMGAPI and SAPI names it, as create-topology does.
            use crate::manta::ring_image;
            let ring = ring_image::ring_for_topology(&t.spec)?;
            ring_image::publish_ring_image(&dc, &ring, &owner, JsonMap::new())
                .and_then(|i| ring_image::set_ring_image(&dc, &i, Some(&servers.urls().imgapi)))
                .map_err(|e| format!("hash ring image: {e}"))?;
            // electric-moray zones come once their ring image exists.
            if let Some((app, index, em_servers)) = &em_seed {
                crate::manta::plane::seed_electric_moray(
                    &dc,
                    app,
                    index,
                    em_servers,
                    opts.electric_morays,
                )?;
            }
            manta = Some(crate::manta::plane::MantaPlane::start(&dc, ring.pnodes()).await?);
            // Manta's `moray` service (its zones are created by a split;
            // the scenario's shards are reached without them). Seeded last,
            // so the uuids drawn before it (the ring image's) stay as they were.
            if let Some((app, _, _)) = &em_seed {
                dc.seed_service(
                    app,
                    "moray",
                    svc_params(images::MORAY, "moray"),
                    JsonMap::new(),
                );
            }
        }
        tasks.shrink_to_fit();
        Ok(SimScenario {
            dc,
            servers,
            manatee,
            shards,
            manta,
            tasks,
        })
    }

    /// Whether any moray serves: a running moray zone whose moray services
    /// (`*moray-202*`) are not disabled.
    pub fn moray_online(&self) -> bool {
        morays(&self.dc).iter().any(|(vm, _)| {
            self.dc
                .vm(vm)
                .is_some_and(|v| v.state.as_str() == "running")
                && self.dc.smf_state(vm, MORAY_FMRI).as_deref() != Some("disabled")
        })
    }

    /// A client write the way the stack makes one: through a moray. Fails
    /// while every moray is disabled (the transplant's steps 6-7).
    pub async fn client_write(&self, shard: &str, payload: &[u8]) -> Result<(), String> {
        if !self.moray_online() {
            return Err("no moray online".into());
        }
        self.manatee
            .shard(shard)
            .write(payload)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Stop sitters and background tasks.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(m) = &self.manta {
            m.fleet.shutdown();
        }
        self.manatee.shutdown().await;
    }
}

/// Zone -> shard of every manatee zone the scenario knows.
type ZoneShards = Arc<Mutex<HashMap<String, String>>>;

/// The moray services' FMRI pattern the runbook disables (`*moray-202*`).
pub const MORAY_FMRI: &str = "*moray-202*";

/// Moray zones: (vm uuid, server uuid).
fn morays(dc: &Datacenter) -> Vec<(String, String)> {
    dc.instances()
        .into_iter()
        .filter(|i| {
            dc.service(&i.service_uuid)
                .is_some_and(|s| s.name == "moray")
        })
        .filter_map(|i| {
            let vm = dc.vm(&i.uuid)?;
            Some((i.uuid.clone(), vm.server_uuid.clone().unwrap_or_default()))
        })
        .collect()
}

/// The manatee major an image carries (IMGAPI `tags.manatee_major`, 2 if untagged).
fn image_major(dc: &Datacenter, uuid: &str) -> u32 {
    dc.image(uuid)
        .and_then(|m| m.tags)
        .and_then(|t| t.get("manatee_major").and_then(serde_json::Value::as_u64))
        .map_or(2, |m| m as u32)
}

fn flag(md: &JsonMap, k: &str) -> bool {
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

/// The shard config-agent renders into sitter.json (`shardPath`) from the
/// instance's SAPI metadata now: a SAPI metadata change followed by a
/// sitter restart or reprovision moves the peer (a shard split's detach).
fn rendered_shard(dc: &Datacenter, vm: &str) -> Option<String> {
    let inst = dc.instance(vm)?;
    inst.metadata
        .get("MANATEE_SHARD_PATH")
        .and_then(|v| v.as_str())
        .and_then(|p| p.strip_prefix("/manatee/"))
        .map(str::to_string)
}

/// What config-agent renders into sitter.json from SAPI metadata.
fn rendered_onwm(dc: &Datacenter, vm: &str) -> Option<bool> {
    let inst = dc.instance(vm)?;
    Some(flag(&inst.metadata, "ONE_NODE_WRITE_MODE"))
}

fn config_agent_online(dc: &Datacenter, vm: &str) -> bool {
    dc.smf_state(vm, "config-agent").as_deref() != Some("disabled")
}

/// Zones stop and boot with their VM; the sitter follows.
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
                let vm = ev.zone.vm.uuid.clone();
                let md = ev
                    .zone
                    .instance
                    .as_ref()
                    .map(|i| i.metadata.clone())
                    .unwrap_or_default();
                let image = ev.zone.vm.image_uuid.clone().unwrap_or_default();
                let boots = matches!(
                    ev.kind,
                    VmEventKind::Started | VmEventKind::Reprovisioned | VmEventKind::Provisioned
                );
                let Some(zone) = manatee.zone(&vm) else {
                    // A new manatee instance (SAPI CreateInstance): its sitter
                    // boots with the zone, from its metadata.
                    let Some(inst) = ev.zone.instance.as_ref() else {
                        continue;
                    };
                    let Some(shard) = shard_of(inst) else {
                        continue;
                    };
                    if !boots {
                        continue;
                    }
                    let Some(ip) = ev.zone.vm.nics.first().map(|n| n.ip.clone()) else {
                        continue;
                    };
                    let disabled = flag(&md, "DISABLE_SITTER");
                    dc.set_smf(
                        &vm,
                        "manatee-sitter",
                        if disabled { "disabled" } else { "online" },
                    );
                    let boot = BootOptions::new(&shard)
                        .one_node_write_mode(flag(&md, "ONE_NODE_WRITE_MODE"))
                        .disable_sitter(disabled)
                        .major(image_major(&dc, &image));
                    zone_shard.lock().unwrap().insert(vm.clone(), shard);
                    match manatee.add_zone(ZoneSpec::new(&vm, &ip), boot).await {
                        Ok(zone) => publish_pg_address(&dc, &zone),
                        Err(e) => {
                            tracing::warn!(zone = %vm, error = %e, "new manatee zone did not boot")
                        }
                    }
                    continue;
                };
                match ev.kind {
                    // A halting zone takes its sitter down without a clean
                    // ZooKeeper close: the session expires.
                    VmEventKind::Stopping
                    | VmEventKind::Reprovisioning
                    | VmEventKind::Destroyed
                    | VmEventKind::Stopped => zone.kill().await,
                    VmEventKind::Started | VmEventKind::Reprovisioned => {
                        // boot/configure.sh: DISABLE_SITTER decides the sitter's SMF state.
                        let disabled = flag(&md, "DISABLE_SITTER");
                        dc.set_smf(
                            &vm,
                            "manatee-sitter",
                            if disabled { "disabled" } else { "online" },
                        );
                        let onwm = if config_agent_online(&dc, &vm) {
                            flag(&md, "ONE_NODE_WRITE_MODE")
                        } else {
                            zone.boot_options().one_node_write_mode
                        };
                        let mut boot = zone
                            .boot_options()
                            .one_node_write_mode(onwm)
                            .disable_sitter(disabled)
                            .major(image_major(&dc, &image));
                        if config_agent_online(&dc, &vm)
                            && let Some(shard) = rendered_shard(&dc, &vm)
                        {
                            zone_shard.lock().unwrap().insert(vm.clone(), shard.clone());
                            boot.shard = shard;
                        }
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
                let Some(zone) = manatee.zone(z) else {
                    continue;
                };
                use crate::dc::events::SvcAction;
                if svc.fmri.contains("config-agent") {
                    // config-agent renders sitter.json from SAPI at once when it starts.
                    if svc.action == SvcAction::Enable
                        && let Some(on) = rendered_onwm(&dc, z)
                    {
                        zone.set_sitter_onwm(on);
                    }
                    continue;
                }
                if !svc.fmri.contains("manatee-sitter") && !svc.fmri.contains("manatee/sitter") {
                    continue;
                }
                let render = |zone: &crate::manatee::Zone| {
                    if config_agent_online(&dc, z)
                        && let Some(on) = rendered_onwm(&dc, z)
                    {
                        zone.set_sitter_onwm(on);
                    }
                };
                match svc.action {
                    SvcAction::Disable => zone.stop().await,
                    SvcAction::Enable if !zone.is_running() => {
                        render(&zone);
                        let mut boot = zone.boot_options().disable_sitter(false);
                        if config_agent_online(&dc, z)
                            && let Some(shard) = rendered_shard(&dc, z)
                        {
                            zone_shard.lock().unwrap().insert(z.clone(), shard.clone());
                            boot.shard = shard;
                        }
                        let _ = zone.restart(boot).await;
                    }
                    // SMF restarts only an enabled service.
                    SvcAction::Restart if zone.is_running() => {
                        render(&zone);
                        let mut boot = zone.boot_options();
                        if config_agent_online(&dc, z)
                            && let Some(shard) = rendered_shard(&dc, z)
                        {
                            zone_shard.lock().unwrap().insert(z.clone(), shard.clone());
                            boot.shard = shard;
                        }
                        let _ = zone.restart(boot).await;
                    }
                    _ => {}
                }
            }
            DcEvent::Server(_) => {}
        }
    }
}

/// `zfs` on manatee datasets and `json` on sitter.json, in a manatee zone
/// or its server's global zone.
fn install_zfs_and_sitter_config(dc: &Datacenter, manatee: &ManateeSim) {
    let (dc2, m) = (dc.clone(), manatee.clone());
    dc.add_exec_handler(Arc::new(move |cmd| {
        let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
        let res = |code: i32, out: String, err: String| {
            Some(ExecuteResult {
                stdout: out,
                stderr: err,
                exit_code: code,
            })
        };
        let ok = |out: String| res(0, out, String::new());
        let fail = |e: String| res(1, String::new(), format!("{e}\n"));
        // zones/<uuid>/data/manatee[@snap]
        let dataset = |a: &str| -> Option<(crate::manatee::Zone, Option<String>)> {
            let rest = a.strip_prefix("zones/")?;
            let (uuid, tail) = rest.split_once('/')?;
            let (path, snap) = match tail.split_once('@') {
                Some((p, s)) => (p, Some(s.to_string())),
                None => (tail, None),
            };
            (path == "data/manatee").then_some(())?;
            Some((m.zone(uuid)?, snap))
        };
        match argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)) {
            Some("zfs") => {
                let ds_arg = argv.iter().rev().find(|a| a.starts_with("zones/")).copied();
                let sub = argv.get(1).copied().unwrap_or("");
                if sub == "send" {
                    // zfs send [-v] <src>@<snap> | zfs recv [-F] <dst>   (same server)
                    // zfs send [-v] <src>@<snap> | nc <ip> <port>        (the receiver listens)
                    let src = argv
                        .iter()
                        .find(|a| a.contains('@'))
                        .and_then(|a| dataset(a));
                    let Some((src, Some(snap))) = src else {
                        return fail("zfs send: a snapshot is required".into());
                    };
                    let pipe = argv.iter().position(|a| *a == "|");
                    let rest = pipe.map(|p| &argv[p + 1..]).unwrap_or(&[]);
                    let dst = match rest.first().copied() {
                        Some("zfs") => rest.iter().find_map(|a| dataset(a)).map(|(z, _)| (z, true)),
                        Some("nc") => rest.get(1).and_then(|ip| {
                            m.zones()
                                .into_iter()
                                .find(|z| z.ident().ip == *ip)
                                .map(|z| {
                                    let same = dc2.vm(z.zone_id()).and_then(|v| v.server_uuid)
                                        == dc2.vm(src.zone_id()).and_then(|v| v.server_uuid);
                                    (z, same)
                                })
                        }),
                        _ => None,
                    };
                    let Some((dst, same)) = dst else {
                        return fail(
                            "zfs send: no receiver (pipe into `zfs recv` or `nc <ip> <port>`)"
                                .into(),
                        );
                    };
                    return match m.send(src.zone_id(), &snap, dst.zone_id(), same) {
                        Ok(()) => ok(String::new()),
                        Err(e) => fail(e.to_string()),
                    };
                }
                let (zone, snap) = ds_arg.and_then(dataset)?;
                match (sub, snap) {
                    ("snapshot", Some(s)) => match zone.snapshot(&s) {
                        Ok(()) => ok(String::new()),
                        Err(e) => fail(e.to_string()),
                    },
                    ("destroy", Some(s)) => match zone.destroy_snapshot(&s) {
                        Ok(()) => ok(String::new()),
                        Err(e) => fail(e.to_string()),
                    },
                    ("destroy", None) => match zone.destroy_data_now() {
                        Ok(()) => ok(String::new()),
                        Err(e) => fail(e.to_string()),
                    },
                    ("list", None) if argv.contains(&"snapshot") => ok(zone
                        .snapshots()
                        .iter()
                        .map(|s| format!("{}@{s}\n", zone.dataset()))
                        .collect()),
                    ("list", None) => {
                        let used = m.receiving_bytes(zone.zone_id()).or(zone.dataset_bytes());
                        match used {
                            Some(b) => ok(format!("{}\t{b}\n", zone.dataset())),
                            None => fail(format!(
                                "cannot open '{}': dataset does not exist",
                                zone.dataset()
                            )),
                        }
                    }
                    _ => None,
                }
            }
            // `psql -c 'SHOW transaction_read_only'`: `off` only on a writable primary.
            Some("psql") => {
                let zone = m.zone(cmd.zone.as_ref()?)?;
                if !zone.pg_online() {
                    return res(
                        2,
                        String::new(),
                        "psql: could not connect to server: Connection refused\n".into(),
                    );
                }
                let ro = zone.pg_read_only() || zone.pg_role() != crate::manatee::PgRole::Primary;
                ok(format!("{}\n", if ro { "on" } else { "off" }))
            }
            Some("json") => {
                let zone = m.zone(cmd.zone.as_ref()?)?;
                let f = argv.iter().position(|a| *a == "-f")?;
                if !argv.get(f + 1)?.ends_with("sitter.json") {
                    return None;
                }
                if let Some(e) = argv.iter().position(|a| *a == "-e") {
                    let expr = argv.get(e + 1)?;
                    let on = expr.contains("oneNodeWriteMode=true")
                        || expr.contains("oneNodeWriteMode = true");
                    // config-agent rewrites the file from SAPI on its next run.
                    if !config_agent_online(&dc2, zone.zone_id()) {
                        zone.set_sitter_onwm(on);
                    }
                    ok(String::new())
                } else {
                    ok(format!("{}\n", zone.boot_options().one_node_write_mode))
                }
            }
            _ => None,
        }
    }));
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

/// The VMAPI `internal_metadata` key where the simulator records the
/// connection string of a zone's real PostgreSQL. A controller reaches a
/// real peer's PostgreSQL at its admin IP, port 5432 (the cluster state's
/// `pgUrl`); the simulator's servers all listen on 127.0.0.1, each on its
/// own port, so the VM record says where. Absent under the model and on
/// real Triton.
pub const PG_CONNINFO_KEY: &str = "tritonctl:pg-conninfo";

fn publish_pg_address(dc: &Datacenter, zone: &crate::manatee::Zone) {
    if let Some(c) = zone.pg_conninfo() {
        dc.set_vm_internal_metadata(
            zone.zone_id(),
            PG_CONNINFO_KEY,
            serde_json::Value::String(c),
        );
    }
}
