//! The simulated datacenter: servers, zones, images, SAPI objects and
//! workflow jobs, with the rules that tie them together.
//!
//! One [`State`] sits behind one mutex that is never held across an await:
//! every operation locks, mutates, unlocks, and sleeps (scaled) outside.
//! Mutations drive each other as in Triton: SAPI CreateInstance provisions a
//! VM through a VMAPI job, UpgradeInstance reprovisions it, VM actions run
//! as jobs (queued -> running -> succeeded|failed) that take scaled time,
//! and every lifecycle change is broadcast as a [`DcEvent`].
//!
//! The HTTP routers in [`crate::http`] are thin: they turn requests into
//! restify-style params and call the `sapi_*`, `vmapi_*`, `cnapi_*` and
//! `imgapi_*` methods here, which return the exact bodies and
//! [`ApiError`]s the real services send.

pub mod clock;
pub mod cnapi;
pub mod error;
pub mod events;
pub mod faults;
pub mod ids;
pub mod imgapi;
mod jobs;
pub mod params;
pub mod sapi;
pub mod sapi_rules;
pub mod sapi_schema;
pub mod sapi_store;
pub mod sapi_sync;
pub mod sapi_vm;
pub mod seed;
pub mod state;
pub mod vmapi;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use wire::apis::{Application, ExecuteResult, ImageManifest, Instance, Job, Server, Service, Vm};

pub use clock::{Clock, SimDurations, now_iso};
pub use cnapi::ZoneCommand;
pub use error::ApiError;
pub use events::{
    DataHandle, DcEvent, EventCause, ExecEvent, InstanceInfo, ServerEvent, SvcAction,
    SvcadmCommand, VmEvent, VmEventKind, ZoneInfo,
};
pub use faults::{Api, FaultDecision, FaultRule, InstalledFault, JobFailure};
pub use seed::{ImageSpec, InstanceSpec, SdcScenario, SeededSdc, ServerSpec, seed_sdc};
pub use state::{SapiMode, State};

use faults::Faults;
use ids::UuidSource;
use state::SimNetwork;

/// A /24 network zones get NICs on.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    pub name: String,
    pub nic_tag: String,
    pub prefix: [u8; 3],
    pub gateway: Option<String>,
    /// First host number handed out.
    pub first_host: u16,
}

impl NetworkSpec {
    pub fn new(name: &str, nic_tag: &str, prefix: [u8; 3], gateway_host: Option<u8>) -> Self {
        NetworkSpec {
            name: name.to_string(),
            nic_tag: nic_tag.to_string(),
            prefix,
            gateway: gateway_host.map(|h| format!("{}.{}.{}.{h}", prefix[0], prefix[1], prefix[2])),
            first_host: 10,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DcConfig {
    /// `datacenter_name` (`dc0`): CNAPI `datacenter`, sysinfo `Datacenter Name`.
    pub datacenter_name: String,
    pub dns_domain: String,
    /// Multiplier applied to every simulated duration (1/6000 turns a
    /// 15-minute reprovision into 150 ms).
    pub time_scale: f64,
    pub durations: SimDurations,
    /// Seeds uuids, MACs and fault dice.
    pub seed: u64,
    pub networks: Vec<NetworkSpec>,
    pub sapi_mode: SapiMode,
    /// Broadcast buffer; a subscriber lagging further behind loses events.
    pub event_capacity: usize,
    /// Events kept for `recent_events` / the control API.
    pub event_log: usize,
}

impl Default for DcConfig {
    fn default() -> Self {
        DcConfig {
            datacenter_name: "dc0".into(),
            dns_domain: "example.com".into(),
            time_scale: 1.0 / 6000.0,
            durations: SimDurations::default(),
            seed: 1,
            networks: vec![
                NetworkSpec::new("admin", "admin", [10, 99, 99], Some(7)),
                NetworkSpec::new("external", "external", [10, 88, 88], Some(1)),
                NetworkSpec::new("manta", "manta", [172, 27, 10], None),
            ],
            sapi_mode: SapiMode::Full,
            event_capacity: 4096,
            event_log: 1000,
        }
    }
}

/// Answers a command run in a zone through CNAPI execute before the
/// built-in behaviour does (another sim part, e.g. `manatee-adm status`).
pub type ExecHandler = Arc<dyn Fn(&ZoneCommand) -> Option<ExecuteResult> + Send + Sync>;

/// Handle to the datacenter; cheap to clone.
#[derive(Clone)]
pub struct Datacenter {
    inner: Arc<Inner>,
}

struct Inner {
    config: DcConfig,
    state: Mutex<State>,
    events: broadcast::Sender<DcEvent>,
    ids: UuidSource,
    clock: Clock,
    faults: Mutex<Faults>,
    exec_handlers: RwLock<Vec<ExecHandler>>,
    /// VMAPI's VM tickets: jobs on one VM run one at a time.
    tickets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Datacenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datacenter")
            .field("name", &self.inner.config.datacenter_name)
            .finish_non_exhaustive()
    }
}

impl Default for Datacenter {
    fn default() -> Self {
        Self::new(DcConfig::default())
    }
}

impl Datacenter {
    pub fn new(config: DcConfig) -> Self {
        let ids = UuidSource::new(config.seed);
        let mut st = State {
            mode: config.sapi_mode,
            ..Default::default()
        };
        for n in &config.networks {
            let uuid = ids.next();
            st.networks.insert(
                uuid.clone(),
                SimNetwork {
                    uuid,
                    name: n.name.clone(),
                    nic_tag: n.nic_tag.clone(),
                    prefix: n.prefix,
                    gateway: n.gateway.clone(),
                    next_host: n.first_host,
                },
            );
        }
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Datacenter {
            inner: Arc::new(Inner {
                clock: Clock::new(config.time_scale, config.durations.clone()),
                faults: Mutex::new(Faults::new(config.seed)),
                state: Mutex::new(st),
                events,
                ids,
                exec_handlers: RwLock::new(Vec::new()),
                tickets: Mutex::new(HashMap::new()),
                config,
            }),
        }
    }

    pub fn config(&self) -> &DcConfig {
        &self.inner.config
    }

    /// The state lock. Poisoning is ignored: a panicking test thread must
    /// not wedge every other request.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults_lock(&self) -> MutexGuard<'_, Faults> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn new_uuid(&self) -> String {
        self.inner.ids.next()
    }

    // ---- time ----

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn time_scale(&self) -> f64 {
        self.inner.clock.scale()
    }

    pub fn set_time_scale(&self, scale: f64) {
        self.inner.clock.set_scale(scale)
    }

    /// A real-world duration as the simulator spends it.
    pub fn scaled(&self, real: Duration) -> Duration {
        self.inner.clock.scaled(real)
    }

    /// Sleep for the scaled equivalent of a real-world duration.
    pub async fn sleep(&self, real: Duration) {
        self.inner.clock.sleep(real).await
    }

    // ---- events ----

    pub fn subscribe(&self) -> broadcast::Receiver<DcEvent> {
        self.inner.events.subscribe()
    }

    /// The last `event_log` events, oldest first.
    pub fn recent_events(&self) -> Vec<DcEvent> {
        self.lock().recent_events.iter().cloned().collect()
    }

    pub(crate) fn emit(&self, st: &mut State, ev: DcEvent) {
        if st.recent_events.len() >= self.inner.config.event_log.max(1) {
            st.recent_events.pop_front();
        }
        st.recent_events.push_back(ev.clone());
        // No subscribers is fine: nobody is following the zone.
        let _ = self.inner.events.send(ev);
    }

    pub(crate) fn emit_vm(
        &self,
        st: &mut State,
        vm_uuid: &str,
        kind: VmEventKind,
        cause: EventCause,
        job_uuid: Option<&str>,
    ) {
        if let Some(zone) = zone_info(st, vm_uuid) {
            let ev = DcEvent::Vm(Box::new(VmEvent {
                kind,
                cause,
                job_uuid: job_uuid.map(str::to_string),
                zone,
            }));
            self.emit(st, ev);
        }
    }

    // ---- reads (for tests and other sim parts) ----

    pub fn vm(&self, uuid: &str) -> Option<Vm> {
        self.lock().vms.get(uuid).map(|v| v.vm.clone())
    }

    /// Record one `internal_metadata` key of a VM (what the simulator's
    /// loopback services publish about a zone: see
    /// [`crate::manta::fleet`] `STATUS_ADDRESS_KEY`). No event: the zone's
    /// running state does not change.
    pub fn set_vm_internal_metadata(&self, uuid: &str, key: &str, value: serde_json::Value) {
        if let Some(v) = self.lock().vms.get_mut(uuid) {
            v.vm.internal_metadata.insert(key.to_string(), value);
        }
    }

    pub fn vms(&self) -> Vec<Vm> {
        self.lock().vms.values().map(|v| v.vm.clone()).collect()
    }

    pub fn zone(&self, uuid: &str) -> Option<ZoneInfo> {
        zone_info(&self.lock(), uuid)
    }

    /// Every zone that is not destroyed, with its instance and data.
    pub fn zones(&self) -> Vec<ZoneInfo> {
        let st = self.lock();
        st.vms
            .iter()
            .filter(|(_, v)| v.vm.state != wire::apis::VmState::Destroyed)
            .filter_map(|(u, _)| zone_info(&st, u))
            .collect()
    }

    pub fn server(&self, uuid: &str) -> Option<Server> {
        let st = self.lock();
        st.servers.get(uuid).map(|s| cnapi::full_server(&st, s))
    }

    pub fn servers(&self) -> Vec<Server> {
        let st = self.lock();
        st.servers
            .values()
            .map(|s| cnapi::full_server(&st, s))
            .collect()
    }

    pub fn is_server_dead(&self, uuid: &str) -> bool {
        self.lock().servers.get(uuid).is_some_and(|s| s.dead)
    }

    pub fn image(&self, uuid: &str) -> Option<ImageManifest> {
        self.lock().images.get(uuid).map(|i| i.manifest.clone())
    }

    pub fn job(&self, uuid: &str) -> Option<Job> {
        self.lock().jobs.get(uuid).map(|j| j.job.clone())
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.lock().jobs.values().map(|j| j.job.clone()).collect()
    }

    pub fn application(&self, uuid: &str) -> Option<Application> {
        self.lock().applications.get(uuid).map(|a| a.view().clone())
    }

    pub fn application_by_name(&self, name: &str) -> Option<Application> {
        self.lock()
            .applications
            .values()
            .find(|a| a.name == name)
            .map(|a| a.view().clone())
    }

    pub fn service(&self, uuid: &str) -> Option<Service> {
        self.lock().services.get(uuid).map(|s| s.view().clone())
    }

    pub fn instance(&self, uuid: &str) -> Option<Instance> {
        self.lock().instances.get(uuid).map(|i| i.view().clone())
    }

    pub fn instances(&self) -> Vec<Instance> {
        self.lock()
            .instances
            .values()
            .map(|i| i.view().clone())
            .collect()
    }

    /// Commands run through CNAPI execute, oldest first.
    pub fn executions(&self) -> Vec<ExecEvent> {
        self.lock().executions.clone()
    }

    /// An SMF service's state inside a zone: "online" unless `svcadm`
    /// changed it.
    pub fn smf_state(&self, vm_uuid: &str, fmri: &str) -> Option<String> {
        let st = self.lock();
        let v = st.vms.get(vm_uuid)?;
        Some(
            v.smf
                .get(&cnapi::normalize_fmri(fmri))
                .map(|s| state::smf_display(s).to_string())
                .unwrap_or_else(|| "online".into()),
        )
    }

    /// Set an SMF service's state inside a zone, as a boot script's
    /// `svcadm enable|disable` does (e.g. `DISABLE_SITTER` in configure.sh).
    pub fn set_smf(&self, vm_uuid: &str, fmri: &str, state: &str) {
        if let Some(v) = self.lock().vms.get_mut(vm_uuid) {
            v.smf.insert(cnapi::normalize_fmri(fmri), state.to_string());
        }
    }

    /// The SAPI mode (`proto` | `full`).
    pub fn sapi_mode(&self) -> SapiMode {
        self.lock().mode
    }

    // ---- faults ----

    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.faults_lock().add(rule)
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        self.faults_lock().remove(id)
    }

    /// Remove every HTTP fault and pending job failure.
    pub fn clear_faults(&self) {
        self.faults_lock().clear()
    }

    pub fn faults(&self) -> Vec<InstalledFault> {
        self.faults_lock().list()
    }

    /// Make the next `count` jobs (of `task`, or any) fail with `message`.
    pub fn fail_next_jobs(&self, count: u32, task: Option<&str>, message: &str) {
        self.faults_lock()
            .fail_next_jobs(count, task.map(str::to_string), message.to_string())
    }

    pub fn pending_job_failures(&self) -> Vec<JobFailure> {
        self.faults_lock().pending_job_failures()
    }

    /// What the HTTP layer must do to one request.
    pub fn decide_fault(&self, api: Api, method: &str, path: &str) -> FaultDecision {
        self.faults_lock().decide(api, method, path)
    }

    pub(crate) fn take_job_failure(&self, task: &str) -> Option<String> {
        self.faults_lock().take_job_failure(task)
    }

    /// Register a handler consulted for every command run in a zone.
    pub fn add_exec_handler(&self, handler: ExecHandler) {
        self.inner
            .exec_handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler);
    }

    pub(crate) fn exec_handlers(&self) -> Vec<ExecHandler> {
        self.inner
            .exec_handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn vm_ticket(&self, vm_uuid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .tickets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(vm_uuid.to_string())
            .or_default()
            .clone()
    }
}

/// A zone's view of itself, built under the lock.
pub(crate) fn zone_info(st: &State, vm_uuid: &str) -> Option<ZoneInfo> {
    let v = st.vms.get(vm_uuid)?;
    Some(ZoneInfo {
        vm: v.vm.clone(),
        data: v.data.clone(),
        instance: instance_info(st, vm_uuid),
    })
}

pub(crate) fn instance_info(st: &State, inst_uuid: &str) -> Option<InstanceInfo> {
    let inst = st.instances.get(inst_uuid)?;
    let (svc, app) = st.lineage(inst)?;
    Some(InstanceInfo {
        uuid: inst.uuid.clone(),
        service_uuid: svc.uuid.clone(),
        service_name: svc.name.clone(),
        application_uuid: app.uuid.clone(),
        application_name: app.name.clone(),
        metadata: state::merge_maps([&app.metadata, &svc.metadata, &inst.metadata]),
        params: state::merge_maps([&app.params, &svc.params, &inst.params]),
    })
}
