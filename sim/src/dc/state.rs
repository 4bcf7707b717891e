//! The records the datacenter holds, behind one mutex.

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::watch;
use wire::apis::{
    Application, ImageManifest, Instance, Job, JobExecution, JsonMap, Manifest, Server, Service,
    Vm, VmState,
};

use super::events::{DataHandle, DcEvent, ExecEvent};
use super::sapi_rules::WouldCrash;
use super::sapi_store::Stored;

/// SAPI's storage mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SapiMode {
    Proto,
    #[default]
    Full,
}

impl SapiMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SapiMode::Proto => "proto",
            SapiMode::Full => "full",
        }
    }
}

/// A compute node: its CNAPI record plus whether it is (simulated) dead.
#[derive(Clone, Debug)]
pub struct SimServer {
    pub server: Server,
    pub dead: bool,
}

/// A zone: its VMAPI record plus what only the CN knows.
#[derive(Clone, Debug)]
pub struct SimVm {
    pub vm: Vm,
    pub data: DataHandle,
    /// SMF service states inside the zone changed by `svcadm`
    /// (normalised fmri -> "online" | "disabled" | "disabled-temporary");
    /// absent means online.
    pub smf: BTreeMap<String, String>,
    /// State to restore when a dead server comes back.
    pub state_before_outage: Option<VmState>,
}

#[derive(Clone, Debug)]
pub struct SimImage {
    pub manifest: ImageManifest,
    pub file: Option<Vec<u8>>,
}

/// An IP network VMs get NICs on (a tiny NAPI).
#[derive(Clone, Debug)]
pub struct SimNetwork {
    pub uuid: String,
    pub name: String,
    pub nic_tag: String,
    /// First three octets, e.g. `[10, 99, 99]`: every network is a /24.
    pub prefix: [u8; 3],
    pub gateway: Option<String>,
    pub next_host: u16,
}

impl SimNetwork {
    pub fn allocate_ip(&mut self) -> Option<String> {
        if self.next_host > 254 {
            return None;
        }
        let ip = format!(
            "{}.{}.{}.{}",
            self.prefix[0], self.prefix[1], self.prefix[2], self.next_host
        );
        self.next_host += 1;
        Some(ip)
    }
}

pub struct JobRecord {
    pub job: Job,
    pub tx: watch::Sender<JobExecution>,
}

#[derive(Default)]
pub struct State {
    pub servers: BTreeMap<String, SimServer>,
    pub vms: BTreeMap<String, SimVm>,
    pub images: BTreeMap<String, SimImage>,
    pub networks: BTreeMap<String, SimNetwork>,
    /// SAPI records as stored (see `sapi_store.rs`).
    pub applications: BTreeMap<String, Stored<Application>>,
    pub services: BTreeMap<String, Stored<Service>>,
    pub instances: BTreeMap<String, Stored<Instance>>,
    pub manifests: BTreeMap<String, Manifest>,
    pub jobs: BTreeMap<String, JobRecord>,
    pub mode: SapiMode,
    /// Whether SAPI has loaded its master DC details; `None`: loaded in
    /// full mode, not in proto mode.
    pub sapi_master: Option<bool>,
    /// Requests the real SAPI process would have crashed on.
    pub sapi_crashes: Vec<WouldCrash>,
    pub executions: Vec<ExecEvent>,
    pub recent_events: VecDeque<DcEvent>,
    pub mac_counter: u64,
}

/// How `svcs` shows a recorded state (`-t` disables show as `disabled`).
pub fn smf_display(state: &str) -> &str {
    state.strip_suffix("-temporary").unwrap_or(state)
}

/// A zone boot: temporary (`svcadm -t`) changes are forgotten, persistent
/// disables stay.
pub fn smf_after_boot(smf: &mut BTreeMap<String, String>) {
    smf.retain(|_, s| s == "disabled");
}

/// SAPI's effective-attribute rule: shallow per-key merge, later wins.
pub fn merge_maps<'a>(layers: impl IntoIterator<Item = &'a JsonMap>) -> JsonMap {
    let mut out = JsonMap::new();
    for m in layers {
        for (k, v) in m {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

impl State {
    pub fn network_by_name_or_uuid(&mut self, key: &str) -> Option<&mut SimNetwork> {
        if self.networks.contains_key(key) {
            return self.networks.get_mut(key);
        }
        self.networks.values_mut().find(|n| n.name == key)
    }

    pub fn sapi_master_loaded(&self) -> bool {
        self.sapi_master.unwrap_or(self.mode == SapiMode::Full)
    }

    /// Service and application of an instance, if both exist.
    pub fn lineage(&self, inst: &Instance) -> Option<(&Stored<Service>, &Stored<Application>)> {
        let svc = self.services.get(&inst.service_uuid)?;
        let app = self.applications.get(&svc.application_uuid)?;
        Some((svc, app))
    }
}
