//! Building a datacenter programmatically: servers, images, SAPI objects
//! and running zones, without going through jobs (a seeded DC is one that
//! has been running for a while).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wire::apis::{
    Application, ImageManifest, ImageState, Instance, JsonMap, SapiType, Server, ServerAgent,
    ServerStatus, Service, Sysinfo, SysinfoNic, VmState,
};

use super::error::ApiError;
use super::events::{EventCause, VmEventKind};
use super::imgapi::sha1_hex;
use super::sapi::zone_params;
use super::sapi_store::Stored;
use super::state::{SimImage, SimServer};
use super::vmapi::VmCreate;
use super::{Datacenter, now_iso};

const PLATFORM: &str = "20240418T000000Z";

#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub uuid: Option<String>,
    pub hostname: String,
    pub headnode: bool,
    pub setup: bool,
    pub reserved: bool,
    pub ram_mib: u64,
    pub rack_identifier: String,
    pub traits: JsonMap,
}

impl ServerSpec {
    pub fn headnode(hostname: &str) -> Self {
        ServerSpec {
            uuid: None,
            hostname: hostname.to_string(),
            headnode: true,
            setup: true,
            reserved: false,
            ram_mib: 262_030,
            rack_identifier: String::new(),
            traits: JsonMap::new(),
        }
    }

    pub fn compute(hostname: &str) -> Self {
        ServerSpec {
            headnode: false,
            ..Self::headnode(hostname)
        }
    }

    /// A CN that booted but was never set up (hostname is its MAC-ish name).
    pub fn unsetup(hostname: &str) -> Self {
        ServerSpec {
            setup: false,
            ..Self::compute(hostname)
        }
    }
}

#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub uuid: Option<String>,
    pub name: String,
    pub version: String,
    pub owner: Option<String>,
    pub state: ImageState,
    pub published_at: Option<String>,
    /// IMGAPI `type`.
    pub kind: String,
    pub os: String,
    pub tags: JsonMap,
    /// The image file; its sha1 and size go into `files`.
    pub file: Vec<u8>,
}

impl ImageSpec {
    pub fn new(name: &str, version: &str) -> Self {
        ImageSpec {
            uuid: None,
            name: name.to_string(),
            version: version.to_string(),
            owner: None,
            state: ImageState::Active,
            published_at: None,
            kind: "zone-dataset".into(),
            os: "smartos".into(),
            tags: JsonMap::new(),
            file: format!("{name}@{version}").into_bytes(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct InstanceSpec {
    pub uuid: Option<String>,
    pub server_uuid: String,
    pub alias: Option<String>,
    /// Extra instance params (merged over the service's).
    pub params: JsonMap,
    pub metadata: JsonMap,
    /// Seed the zone in this state (default running).
    pub state: Option<VmState>,
}

impl Datacenter {
    /// Add a server with sysinfo (one admin NIC) and agents.
    pub fn seed_server(&self, spec: ServerSpec) -> String {
        let uuid = spec.uuid.clone().unwrap_or_else(|| self.new_uuid());
        let mut st = self.lock();
        let admin_ip = st
            .network_by_name_or_uuid("admin")
            .and_then(|n| n.allocate_ip());
        st.mac_counter += 1;
        let m = st.mac_counter;
        let mac = format!(
            "00:10:fe:{:02x}:{:02x}:{:02x}",
            (m >> 16) & 0xff,
            (m >> 8) & 0xff,
            m & 0xff
        );
        let dc = self.config().datacenter_name.clone();
        let agents = vec![
            ServerAgent {
                name: "cn-agent".into(),
                version: "2.0.2".into(),
                image_uuid: Some(self.new_uuid()),
                uuid: Some(self.new_uuid()),
                extra: JsonMap::new(),
            },
            ServerAgent {
                name: "vm-agent".into(),
                version: "1.7.0".into(),
                image_uuid: Some(self.new_uuid()),
                uuid: Some(self.new_uuid()),
                extra: JsonMap::new(),
            },
        ];
        let mut nics = BTreeMap::new();
        nics.insert(
            "ixgbe0".to_string(),
            SysinfoNic {
                mac_address: mac.clone(),
                ip4addr: admin_ip.clone(),
                link_status: "up".into(),
                nic_names: vec!["admin".into()],
                extra: JsonMap::new(),
            },
        );
        let mut sys_extra = JsonMap::new();
        sys_extra.insert("Boot Time".into(), json!("1713398400"));
        sys_extra.insert("MiB of Memory".into(), json!(spec.ram_mib.to_string()));
        sys_extra.insert("CPU Total Cores".into(), json!(48));
        sys_extra.insert("Zpool".into(), json!("zones"));
        sys_extra.insert("Virtual Network Interfaces".into(), json!({}));
        sys_extra.insert(
            "Boot Parameters".into(),
            json!({"hostname": spec.hostname, "admin_nic": mac}),
        );
        let sysinfo = Sysinfo {
            uuid: uuid.clone(),
            hostname: spec.hostname.clone(),
            datacenter_name: Some(dc.clone()),
            setup: Some(json!(if spec.setup { "true" } else { "false" })),
            live_image: Some(PLATFORM.into()),
            admin_nic_tag: None,
            admin_ip: None,
            network_interfaces: nics,
            sdc_agents: Some(agents.clone()),
            extra: sys_extra,
        };
        let now = now_iso();
        let server = Server {
            uuid: uuid.clone(),
            hostname: spec.hostname,
            datacenter: dc,
            headnode: spec.headnode,
            setup: spec.setup,
            setting_up: false,
            reserved: spec.reserved,
            reservoir: false,
            status: ServerStatus::Running,
            transitional_status: None,
            ram: spec.ram_mib,
            current_platform: Some(PLATFORM.into()),
            boot_platform: Some(PLATFORM.into()),
            boot_params: JsonMap::new(),
            kernel_flags: JsonMap::new(),
            default_console: Some("serial".into()),
            serial: Some("ttyb".into()),
            traits: spec.traits,
            rack_identifier: spec.rack_identifier,
            comments: String::new(),
            reservation_ratio: 0.15,
            overprovision_ratios: json!({"ram": 1}).as_object().cloned().unwrap_or_default(),
            created: Some(now.clone()),
            last_boot: Some(now),
            unreserved_cpu: Some(4800),
            unreserved_ram: Some(spec.ram_mib),
            unreserved_disk: Some(3_800_000),
            agents: Some(agents),
            sysinfo: Some(sysinfo),
            ..Default::default()
        };
        st.servers.insert(
            uuid.clone(),
            SimServer {
                server,
                dead: false,
            },
        );
        uuid
    }

    /// Add an image (with a file, so `GET /images/:uuid/file` works).
    pub fn seed_image(&self, spec: ImageSpec) -> String {
        let uuid = spec.uuid.clone().unwrap_or_else(|| self.new_uuid());
        let owner = spec
            .owner
            .clone()
            .unwrap_or_else(|| "930896af-bf8c-48d4-885c-6573a94b1853".into());
        let manifest = ImageManifest {
            v: 2,
            uuid: uuid.clone(),
            owner,
            name: spec.name,
            version: spec.version,
            state: spec.state,
            disabled: spec.state == ImageState::Disabled,
            public: false,
            published_at: Some(spec.published_at.unwrap_or_else(now_iso)),
            kind: spec.kind,
            os: spec.os,
            origin: None,
            files: vec![wire::apis::ImageFile {
                sha1: sha1_hex(&spec.file),
                size: spec.file.len() as u64,
                compression: "gzip".into(),
                dataset_guid: None,
                extra: JsonMap::new(),
            }],
            requirements: None,
            tags: (!spec.tags.is_empty()).then_some(spec.tags),
            description: None,
            channels: None,
            extra: JsonMap::new(),
        };
        self.lock().images.insert(
            uuid.clone(),
            SimImage {
                manifest,
                file: Some(spec.file),
            },
        );
        uuid
    }

    pub fn seed_application(
        &self,
        name: &str,
        owner_uuid: &str,
        params: JsonMap,
        metadata: JsonMap,
    ) -> String {
        let app = Application {
            uuid: self.new_uuid(),
            name: name.to_string(),
            owner_uuid: owner_uuid.to_string(),
            params,
            metadata,
            ..Default::default()
        };
        let uuid = app.uuid.clone();
        self.lock()
            .applications
            .insert(uuid.clone(), Stored::from_view(app));
        uuid
    }

    pub fn seed_service(
        &self,
        app_uuid: &str,
        name: &str,
        params: JsonMap,
        metadata: JsonMap,
    ) -> String {
        let svc = Service {
            uuid: self.new_uuid(),
            name: name.to_string(),
            application_uuid: app_uuid.to_string(),
            params,
            metadata,
            kind: Some(SapiType::Vm),
            ..Default::default()
        };
        let uuid = svc.uuid.clone();
        self.lock()
            .services
            .insert(uuid.clone(), Stored::from_view(svc));
        uuid
    }

    /// Add a SAPI instance and its zone, already running on its server.
    /// Emits `Provisioned` (cause `Seed`) so early subscribers see it.
    pub fn seed_instance(
        &self,
        service_uuid: &str,
        spec: InstanceSpec,
    ) -> Result<String, ApiError> {
        let uuid = spec.uuid.clone().unwrap_or_else(|| self.new_uuid());
        let mut params = spec.params.clone();
        params.insert("server_uuid".into(), json!(spec.server_uuid));
        if let Some(a) = &spec.alias {
            params.insert("alias".into(), json!(a));
        }
        let inst = Instance {
            uuid: uuid.clone(),
            service_uuid: service_uuid.to_string(),
            params,
            metadata: spec.metadata.clone(),
            kind: Some(SapiType::Vm),
            ..Default::default()
        };
        let mut st = self.lock();
        if !st.services.contains_key(service_uuid) {
            return Err(ApiError::not_found(format!(
                "no such service: {service_uuid}"
            )));
        }
        st.instances.insert(uuid.clone(), Stored::from_view(inst));
        let made = zone_params(&st, &uuid)
            .and_then(|payload| VmCreate::parse(&payload))
            .and_then(|req| self.insert_vm(&mut st, req, VmState::Running));
        if let Err(e) = made {
            st.instances.remove(&uuid);
            return Err(e);
        }
        let state = spec.state.unwrap_or(VmState::Running);
        if let Some(v) = st.vms.get_mut(&uuid) {
            v.vm.state = state;
            v.vm.zone_state = Some(
                if state == VmState::Running {
                    "running"
                } else {
                    "installed"
                }
                .into(),
            );
        }
        self.emit_vm(
            &mut st,
            &uuid,
            VmEventKind::Provisioned,
            EventCause::Seed,
            None,
        );
        Ok(uuid)
    }
}

/// A Triton `sdc` application with HA-ish core services.
#[derive(Clone, Debug)]
pub struct SdcScenario {
    pub headnodes: usize,
    pub computes: usize,
    pub unsetup_computes: usize,
    pub manatees: usize,
    pub morays: usize,
    pub binders: usize,
}

impl Default for SdcScenario {
    /// One headnode and two CNs; three manatees (one per server), two
    /// morays and three binders.
    fn default() -> Self {
        SdcScenario {
            headnodes: 1,
            computes: 2,
            unsetup_computes: 0,
            manatees: 3,
            morays: 2,
            binders: 3,
        }
    }
}

/// What [`seed_sdc`] created.
#[derive(Clone, Debug, Default)]
pub struct SeededSdc {
    /// The `ufds_admin_uuid`: owner of the app and every core zone.
    pub owner_uuid: String,
    pub app_uuid: String,
    pub headnodes: Vec<String>,
    pub computes: Vec<String>,
    pub unsetup: Vec<String>,
    /// `manatee`, `manatee-next` (a newer, active manatee image), `moray`,
    /// `binder` -> image uuid.
    pub images: BTreeMap<String, String>,
    /// Service name -> uuid.
    pub services: BTreeMap<String, String>,
    /// Instance alias (`manatee0`, ...) -> instance (= zone) uuid.
    pub instances: BTreeMap<String, String>,
}

impl SeededSdc {
    pub fn instance(&self, alias: &str) -> &str {
        self.instances
            .get(alias)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no seeded instance {alias}"))
    }
}

/// Seed servers, images and the `sdc` application with `manatee`, `moray`
/// and `binder` services and running instances. Instance `i` of each service
/// goes on server `i mod n` (headnodes first), so three manatees on three
/// servers never share one. Manatee instances carry `SHARD=sdc` and
/// `MANATEE_SHARD_PATH=/manatee/sdc`; the app's `ZK_SERVERS` lists the
/// binders.
pub fn seed_sdc(dc: &Datacenter, sc: &SdcScenario) -> SeededSdc {
    let cfg = dc.config().clone();
    let mut out = SeededSdc {
        owner_uuid: dc.new_uuid(),
        ..Default::default()
    };
    for i in 0..sc.headnodes.max(1) {
        let name = if i == 0 {
            "headnode".to_string()
        } else {
            format!("headnode{i}")
        };
        out.headnodes
            .push(dc.seed_server(ServerSpec::headnode(&name)));
    }
    for i in 0..sc.computes {
        out.computes
            .push(dc.seed_server(ServerSpec::compute(&format!("cn{i}"))));
    }
    for i in 0..sc.unsetup_computes {
        out.unsetup
            .push(dc.seed_server(ServerSpec::unsetup(&format!("unsetup{i}"))));
    }
    let mut tags = JsonMap::new();
    tags.insert("smartdc_service".into(), json!(true));
    let owner = out.owner_uuid.clone();
    let image = |name: &str, stamp: &str, published: &str| {
        let mut s = ImageSpec::new(name, &format!("release-{stamp}-g{}", &stamp[..7]));
        s.owner = Some(owner.clone());
        s.published_at = Some(published.to_string());
        s.tags = tags.clone();
        dc.seed_image(s)
    };
    let images = [
        (
            "manatee",
            "sdc-manatee",
            "20230601T000000Z",
            "2023-06-01T00:00:00.000Z",
        ),
        (
            "manatee-next",
            "sdc-manatee",
            "20240301T000000Z",
            "2024-03-01T00:00:00.000Z",
        ),
        (
            "moray",
            "sdc-moray",
            "20230601T000000Z",
            "2023-06-01T00:00:00.000Z",
        ),
        (
            "binder",
            "sdc-binder",
            "20230601T000000Z",
            "2023-06-01T00:00:00.000Z",
        ),
    ];
    for (key, name, stamp, published) in images {
        out.images
            .insert(key.to_string(), image(name, stamp, published));
    }

    let domain = format!("{}.{}", cfg.datacenter_name, cfg.dns_domain);
    let mut app_meta = JsonMap::new();
    app_meta.insert("datacenter_name".into(), json!(cfg.datacenter_name));
    app_meta.insert("dns_domain".into(), json!(cfg.dns_domain));
    app_meta.insert("ufds_admin_uuid".into(), json!(out.owner_uuid));
    app_meta.insert("sapi-url".into(), json!(format!("http://sapi.{domain}")));
    app_meta.insert("SAPI_URL".into(), json!(format!("http://sapi.{domain}")));
    out.app_uuid = dc.seed_application("sdc", &out.owner_uuid, JsonMap::new(), app_meta);

    let servers: Vec<String> = out.headnodes.iter().chain(&out.computes).cloned().collect();
    let (image_ids, app_uuid) = (out.images.clone(), out.app_uuid.clone());
    let svc = |name: &str, image_key: &str, ram: u64, delegate: bool, extra_meta: JsonMap| {
        let mut params = JsonMap::new();
        params.insert("image_uuid".into(), json!(image_ids[image_key]));
        params.insert("networks".into(), json!(["admin"]));
        params.insert("ram".into(), json!(ram));
        params.insert("quota".into(), json!(25));
        params.insert("delegate_dataset".into(), json!(delegate));
        params.insert(
            "tags".into(),
            json!({"smartdc_role": name, "smartdc_type": "core"}),
        );
        let mut meta = extra_meta;
        meta.insert("SERVICE_NAME".into(), json!(format!("{name}.{domain}")));
        meta.insert("SERVICE_DOMAIN".into(), json!(format!("{name}.{domain}")));
        dc.seed_service(&app_uuid, name, params, meta)
    };
    let mut manatee_meta = JsonMap::new();
    manatee_meta.insert("SHARD".into(), json!("sdc"));
    manatee_meta.insert("MANATEE_SHARD_PATH".into(), json!("/manatee/sdc"));
    let layout = [
        (
            "binder",
            "binder",
            1024u64,
            true,
            JsonMap::new(),
            sc.binders,
        ),
        ("manatee", "manatee", 2048, true, manatee_meta, sc.manatees),
        ("moray", "moray", 1024, false, JsonMap::new(), sc.morays),
    ];
    let mut zk_servers = Vec::new();
    for (name, image_key, ram, delegate, meta, count) in layout {
        let svc_uuid = svc(name, image_key, ram, delegate, meta);
        out.services.insert(name.to_string(), svc_uuid.clone());
        for i in 0..count {
            let alias = format!("{name}{i}");
            let mut metadata = JsonMap::new();
            if name == "binder" {
                metadata.insert("ZK_ID".into(), json!(i + 1));
            }
            let inst = dc
                .seed_instance(
                    &svc_uuid,
                    InstanceSpec {
                        server_uuid: servers[i % servers.len()].clone(),
                        alias: Some(alias.clone()),
                        metadata,
                        ..Default::default()
                    },
                )
                .expect("seeding a core instance");
            if name == "binder" {
                let ip = dc
                    .vm(&inst)
                    .and_then(|v| v.admin_ip().map(str::to_string))
                    .unwrap_or_default();
                zk_servers.push(json!({"host": ip, "port": 2181, "num": i + 1}));
            }
            out.instances.insert(alias, inst);
        }
    }
    if let Some(Value::Object(last)) = zk_servers.last_mut() {
        last.insert("last".into(), json!(true));
    }
    if let Some(app) = dc.lock().applications.get_mut(&out.app_uuid) {
        app.edit(|raw| {
            if let Some(Value::Object(md)) = raw.get_mut("metadata") {
                md.insert("ZK_SERVERS".into(), Value::Array(zk_servers));
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dc::DcConfig;

    #[test]
    fn seeding_is_deterministic_and_spreads_peers() {
        let a = seed_sdc(
            &Datacenter::new(DcConfig::default()),
            &SdcScenario::default(),
        );
        let dc = Datacenter::new(DcConfig::default());
        let b = seed_sdc(&dc, &SdcScenario::default());
        assert_eq!(a.instances, b.instances);
        assert_eq!(a.images, b.images);

        let servers: std::collections::BTreeSet<String> = ["manatee0", "manatee1", "manatee2"]
            .iter()
            .map(|m| dc.vm(b.instance(m)).unwrap().server_uuid.unwrap())
            .collect();
        assert_eq!(servers.len(), 3, "one manatee per server");

        let zone = dc.zone(b.instance("manatee1")).unwrap();
        let info = zone.instance.unwrap();
        assert_eq!(info.application_name, "sdc");
        assert_eq!(info.metadata["SHARD"], "sdc");
        assert_eq!(
            zone.data.dataset,
            Some(format!("zones/{}/data", zone.vm.uuid))
        );
        assert_eq!(zone.data.images, vec![b.images["manatee"].clone()]);
        let app = dc.application_by_name("sdc").unwrap();
        let zk = app.metadata["ZK_SERVERS"].as_array().unwrap();
        assert_eq!(zk.len(), 3);
        assert_eq!(zk[2]["last"], true);
        assert_eq!(dc.zones().len(), 8);
    }
}
