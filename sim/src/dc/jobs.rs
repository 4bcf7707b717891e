//! Workflow jobs: queued -> running -> succeeded | failed, taking scaled
//! time, changing VMs and servers as they go and emitting lifecycle events.
//!
//! Jobs on one VM are serialised (VMAPI's VM tickets). A job's effects are
//! applied under the state lock in short critical sections between scaled
//! sleeps, so readers see intermediate states (`stopping`, `provisioning`).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use wire::apis::{ChainResult, ImageState, Job, JobExecution, JsonMap, VmState};

use super::events::{EventCause, VmEventKind};
use super::state::{JobRecord, State};
use super::{Datacenter, now_iso};

#[derive(Clone, Debug)]
pub(crate) enum JobKind {
    Provision,
    Start { idempotent: bool },
    Stop { idempotent: bool },
    Kill { idempotent: bool },
    Reboot { idempotent: bool },
    Update { changes: JsonMap },
    Reprovision { image_uuid: String },
    Destroy,
    ServerSetup { hostname: Option<String> },
}

impl JobKind {
    pub(crate) fn task(&self) -> &'static str {
        match self {
            JobKind::Provision => "provision",
            JobKind::Start { .. } => "start",
            JobKind::Stop { .. } => "stop",
            JobKind::Kill { .. } => "kill",
            JobKind::Reboot { .. } => "reboot",
            JobKind::Update { .. } => "update",
            JobKind::Reprovision { .. } => "reprovision",
            JobKind::Destroy => "destroy",
            JobKind::ServerSetup { .. } => "server-setup",
        }
    }

    /// Workflow name and version, as VMAPI/CNAPI register them.
    fn workflow(&self) -> &'static str {
        match self {
            JobKind::Provision => "provision-8.7.0",
            JobKind::Start { .. } => "start-7.0.8",
            JobKind::Stop { .. } => "stop-7.0.9",
            JobKind::Kill { .. } => "kill-7.0.3",
            JobKind::Reboot { .. } => "reboot-7.0.8",
            JobKind::Update { .. } => "update-7.3.0",
            JobKind::Reprovision { .. } => "reprovision-7.0.4",
            JobKind::Destroy => "destroy-7.3.1",
            JobKind::ServerSetup { .. } => "server-setup-3.0.0",
        }
    }

    fn timeout(&self) -> u64 {
        match self {
            JobKind::Provision => 3810,
            JobKind::ServerSetup { .. } => 7200,
            JobKind::Reprovision { .. } => 180,
            _ => 300,
        }
    }
}

/// What happens at the end of a phase.
#[derive(Clone, Copy, Debug)]
enum Step {
    FinishProvision,
    Stopped,
    Started,
    ApplyUpdate,
    FinishReprovision,
    Destroyed,
    FinishSetup,
}

struct Phase {
    name: &'static str,
    duration: Duration,
    step: Step,
}

struct Target {
    vm: Option<String>,
    server: Option<String>,
}

impl Datacenter {
    /// Create a job and start running it. Needs a Tokio runtime.
    pub(crate) fn create_job(
        &self,
        st: &mut State,
        kind: JobKind,
        vm_uuid: Option<&str>,
        server_uuid: Option<&str>,
        extra_params: JsonMap,
    ) -> String {
        let uuid = self.new_uuid();
        let task = kind.task();
        let mut params = JsonMap::new();
        params.insert("task".into(), json!(task));
        if let Some(v) = vm_uuid {
            params.insert("vm_uuid".into(), json!(v));
            params.insert("target".into(), json!(format!("/{task}-{v}")));
            if let Some(vm) = st.vms.get(v) {
                params.insert("owner_uuid".into(), json!(vm.vm.owner_uuid));
            }
        }
        if let Some(s) = server_uuid {
            params.insert("server_uuid".into(), json!(s));
            if vm_uuid.is_none() {
                params.insert("target".into(), json!(format!("/{task}-{s}")));
            }
        }
        if let JobKind::Reprovision { image_uuid } = &kind {
            params.insert("image_uuid".into(), json!(image_uuid));
        }
        for (k, v) in extra_params {
            params.entry(k).or_insert(v);
        }
        let now = now_iso();
        let job = Job {
            uuid: uuid.clone(),
            name: kind.workflow().to_string(),
            execution: JobExecution::Queued,
            params,
            exec_after: Some(now.clone()),
            created_at: Some(now),
            timeout: Some(kind.timeout()),
            chain_results: Vec::new(),
            extra: JsonMap::new(),
        };
        let (tx, _) = watch::channel(JobExecution::Queued);
        st.jobs.insert(uuid.clone(), JobRecord { job, tx });

        let injected = self.take_job_failure(task);
        let target = Target {
            vm: vm_uuid.map(str::to_string),
            server: server_uuid.map(str::to_string),
        };
        tokio::spawn(self.clone().run_job(uuid.clone(), kind, target, injected));
        uuid
    }

    async fn run_job(self, uuid: String, kind: JobKind, target: Target, injected: Option<String>) {
        self.sleep(self.clock().durations().job_queue).await;
        let _ticket = match &target.vm {
            Some(v) => Some(self.vm_ticket(v).lock_owned().await),
            None => None,
        };

        let phases = {
            let mut st = self.lock();
            set_execution(&mut st, &uuid, JobExecution::Running);
            push_result(
                &mut st,
                &uuid,
                "common.validate_params",
                None,
                Ok("All parameters OK!"),
            );
            if let Some(msg) = injected {
                self.fail_job(&mut st, &uuid, &kind, &target, "common.setup_request", &msg);
                return;
            }
            match self.begin(&mut st, &uuid, &kind, &target) {
                Ok(p) => p,
                Err((step, msg)) => {
                    self.fail_job(&mut st, &uuid, &kind, &target, step, &msg);
                    return;
                }
            }
        };

        for phase in phases {
            let started = now_iso();
            self.sleep(phase.duration).await;
            let mut st = self.lock();
            if let Err(msg) = self.apply(&mut st, &uuid, &kind, &target, phase.step) {
                self.fail_job(&mut st, &uuid, &kind, &target, phase.name, &msg);
                return;
            }
            push_result(&mut st, &uuid, phase.name, Some(started), Ok("OK"));
        }

        let mut st = self.lock();
        let last = if matches!(kind, JobKind::ServerSetup { .. }) {
            ("cnapi.update_server", "server updated")
        } else {
            ("vmapi.put_vm", "VM updated")
        };
        push_result(&mut st, &uuid, last.0, None, Ok(last.1));
        set_execution(&mut st, &uuid, JobExecution::Succeeded);
    }

    fn fail_job(
        &self,
        st: &mut State,
        uuid: &str,
        kind: &JobKind,
        target: &Target,
        step: &str,
        msg: &str,
    ) {
        // A provision that fails leaves a failed VM behind, as VMAPI's
        // job_results handler does.
        if let (JobKind::Provision, Some(v)) = (kind, &target.vm)
            && let Some(vm) = st.vms.get_mut(v)
        {
            vm.vm.state = VmState::Failed;
            vm.vm.zone_state = None;
            vm.vm.last_modified = Some(now_iso());
        }
        if let (JobKind::ServerSetup { .. }, Some(s)) = (kind, &target.server)
            && let Some(srv) = st.servers.get_mut(s)
        {
            srv.server.setting_up = false;
            srv.server.transitional_status = None;
        }
        push_result(st, uuid, step, None, Err(msg));
        set_execution(st, uuid, JobExecution::Failed);
    }

    /// Checks and first effects; returns the timed phases that follow.
    fn begin(
        &self,
        st: &mut State,
        uuid: &str,
        kind: &JobKind,
        target: &Target,
    ) -> Result<Vec<Phase>, (&'static str, String)> {
        let d = self.clock().durations().clone();
        if let JobKind::ServerSetup { .. } = kind {
            let s = target.server.as_deref().unwrap_or_default();
            let srv = st
                .servers
                .get_mut(s)
                .ok_or(("cnapi.server_setup", format!("Server {s} not found")))?;
            if srv.dead {
                return Err((
                    "cnapi.server_setup",
                    format!("server {s} is not responding"),
                ));
            }
            srv.server.setting_up = true;
            srv.server.transitional_status = Some("setting_up".into());
            return Ok(vec![Phase {
                name: "cnapi.server_setup",
                duration: d.server_setup,
                step: Step::FinishSetup,
            }]);
        }

        let vm_uuid = target.vm.clone().unwrap_or_default();
        let Some(vm) = st.vms.get(&vm_uuid) else {
            return Err(("common.setup_request", format!("VM {vm_uuid} not found")));
        };
        let state = vm.vm.state;
        let server_uuid = vm.vm.server_uuid.clone();

        if let JobKind::Provision = kind {
            let server = match server_uuid {
                Some(s) => s,
                None => allocate_server(st).ok_or((
                    "cnapi.allocate",
                    "No compute resources available".to_string(),
                ))?,
            };
            match st.servers.get(&server) {
                None => return Err(("cnapi.provision_vm", format!("Server {server} not found"))),
                Some(s) if s.dead => {
                    return Err((
                        "cnapi.provision_vm",
                        format!("server {server} is not responding"),
                    ));
                }
                Some(s) if !s.server.setup => {
                    return Err((
                        "cnapi.provision_vm",
                        format!("server {server} is not setup"),
                    ));
                }
                Some(_) => {}
            }
            let image = st.vms[&vm_uuid].vm.image_uuid.clone().unwrap_or_default();
            check_image_active(st, &image).map_err(|m| ("cnapi.ensure_image", m))?;
            let vm = st.vms.get_mut(&vm_uuid).expect("checked above");
            vm.vm.server_uuid = Some(server.clone());
            if let Some(j) = st.jobs.get_mut(uuid) {
                j.job.params.insert("server_uuid".into(), json!(server));
            }
            return Ok(vec![Phase {
                name: "cnapi.provision_vm",
                duration: d.provision,
                step: Step::FinishProvision,
            }]);
        }

        if state == VmState::Destroyed {
            if let JobKind::Destroy = kind {
                return Ok(vec![]);
            }
            return Err(("cnapi.acquire_vm_ticket", format!("VM {vm_uuid} not found")));
        }
        let server = server_uuid.unwrap_or_default();
        if st.servers.get(&server).is_none_or(|s| s.dead) {
            return Err((
                "cnapi.wait_task",
                format!("server {server} is not responding"),
            ));
        }

        let not_running = || ("cnapi.wait_task", format!("VM {vm_uuid} is not running"));
        match kind {
            JobKind::Start { idempotent } => match state {
                VmState::Running if *idempotent => Ok(vec![]),
                VmState::Running => Err((
                    "cnapi.wait_task",
                    format!("VM {vm_uuid} is already running"),
                )),
                _ => Ok(vec![Phase {
                    name: "cnapi.start_vm",
                    duration: d.start,
                    step: Step::Started,
                }]),
            },
            JobKind::Stop { idempotent } | JobKind::Kill { idempotent } => {
                let dur = if matches!(kind, JobKind::Kill { .. }) {
                    d.kill
                } else {
                    d.stop
                };
                match state {
                    VmState::Running => {
                        set_vm_state(st, &vm_uuid, VmState::Stopping, Some("shutting_down"));
                        self.emit_vm(
                            st,
                            &vm_uuid,
                            VmEventKind::Stopping,
                            EventCause::Job,
                            Some(uuid),
                        );
                        Ok(vec![Phase {
                            name: "cnapi.stop_vm",
                            duration: dur,
                            step: Step::Stopped,
                        }])
                    }
                    _ if *idempotent => Ok(vec![]),
                    _ => Err(not_running()),
                }
            }
            JobKind::Reboot { idempotent } => match state {
                VmState::Running => {
                    set_vm_state(st, &vm_uuid, VmState::Stopping, Some("shutting_down"));
                    self.emit_vm(
                        st,
                        &vm_uuid,
                        VmEventKind::Stopping,
                        EventCause::Job,
                        Some(uuid),
                    );
                    Ok(vec![
                        Phase {
                            name: "cnapi.reboot_vm",
                            duration: d.reboot / 2,
                            step: Step::Stopped,
                        },
                        Phase {
                            name: "cnapi.wait_task",
                            duration: d.reboot / 2,
                            step: Step::Started,
                        },
                    ])
                }
                _ if *idempotent => Ok(vec![Phase {
                    name: "cnapi.start_vm",
                    duration: d.start,
                    step: Step::Started,
                }]),
                _ => Err(not_running()),
            },
            JobKind::Update { .. } => Ok(vec![Phase {
                name: "cnapi.update_vm",
                duration: d.update,
                step: Step::ApplyUpdate,
            }]),
            JobKind::Reprovision { image_uuid } => {
                check_image_active(st, image_uuid).map_err(|m| ("cnapi.ensure_image", m))?;
                set_vm_state(st, &vm_uuid, VmState::Provisioning, Some("installed"));
                self.emit_vm(
                    st,
                    &vm_uuid,
                    VmEventKind::Reprovisioning,
                    EventCause::Job,
                    Some(uuid),
                );
                Ok(vec![Phase {
                    name: "cnapi.reprovision_vm",
                    duration: d.reprovision,
                    step: Step::FinishReprovision,
                }])
            }
            JobKind::Destroy => {
                if state == VmState::Running {
                    set_vm_state(st, &vm_uuid, VmState::Stopping, Some("shutting_down"));
                    self.emit_vm(
                        st,
                        &vm_uuid,
                        VmEventKind::Stopping,
                        EventCause::Job,
                        Some(uuid),
                    );
                }
                Ok(vec![Phase {
                    name: "cnapi.destroy_vm",
                    duration: d.destroy,
                    step: Step::Destroyed,
                }])
            }
            JobKind::Provision | JobKind::ServerSetup { .. } => unreachable!("handled above"),
        }
    }

    fn apply(
        &self,
        st: &mut State,
        uuid: &str,
        kind: &JobKind,
        target: &Target,
        step: Step,
    ) -> Result<(), String> {
        if let Step::FinishSetup = step {
            let s = target.server.as_deref().unwrap_or_default();
            let srv = st
                .servers
                .get_mut(s)
                .ok_or_else(|| format!("Server {s} not found"))?;
            if srv.dead {
                return Err(format!("server {s} is not responding"));
            }
            let hostname = match kind {
                JobKind::ServerSetup { hostname } => hostname.clone(),
                _ => None,
            };
            srv.server.setup = true;
            srv.server.setting_up = false;
            srv.server.transitional_status = None;
            if let Some(h) = hostname {
                srv.server.hostname = h.clone();
                if let Some(si) = srv.server.sysinfo.as_mut() {
                    si.hostname = h;
                }
            }
            if let Some(si) = srv.server.sysinfo.as_mut() {
                si.setup = Some(json!("true"));
            }
            return Ok(());
        }

        let vm_uuid = target.vm.clone().unwrap_or_default();
        let server = st
            .vms
            .get(&vm_uuid)
            .and_then(|v| v.vm.server_uuid.clone())
            .unwrap_or_default();
        if st.servers.get(&server).is_none_or(|s| s.dead) {
            return Err(format!("server {server} is not responding"));
        }
        let Some(vm) = st.vms.get_mut(&vm_uuid) else {
            return Err(format!("VM {vm_uuid} not found"));
        };
        let now = now_iso();
        vm.vm.last_modified = Some(now.clone());
        let event = match step {
            Step::FinishProvision => {
                vm.vm.state = VmState::Running;
                vm.vm.zone_state = Some("running".into());
                let image = vm.vm.image_uuid.clone().unwrap_or_default();
                vm.data.images = vec![image];
                Some(VmEventKind::Provisioned)
            }
            Step::Stopped => {
                vm.vm.state = VmState::Stopped;
                vm.vm.zone_state = Some("installed".into());
                Some(VmEventKind::Stopped)
            }
            Step::Started => {
                vm.vm.state = VmState::Running;
                vm.vm.zone_state = Some("running".into());
                super::state::smf_after_boot(&mut vm.smf);
                Some(VmEventKind::Started)
            }
            Step::ApplyUpdate => {
                if let JobKind::Update { changes } = kind {
                    apply_vm_update(&mut vm.vm, changes);
                }
                Some(VmEventKind::Updated)
            }
            Step::FinishReprovision => {
                let JobKind::Reprovision { image_uuid } = kind else {
                    unreachable!("FinishReprovision only follows a reprovision")
                };
                vm.vm.image_uuid = Some(image_uuid.clone());
                vm.vm.state = VmState::Running;
                vm.vm.zone_state = Some("running".into());
                if vm.data.dataset.is_some() {
                    vm.data.images.push(image_uuid.clone());
                } else {
                    // No delegated dataset: the zone root, and its data, is new.
                    vm.data.id = self.new_uuid();
                    vm.data.created_at = now.clone();
                    vm.data.images = vec![image_uuid.clone()];
                }
                // Services come back up with the new image.
                vm.smf.clear();
                Some(VmEventKind::Reprovisioned)
            }
            Step::Destroyed => {
                vm.vm.state = VmState::Destroyed;
                vm.vm.zone_state = Some("destroyed".into());
                vm.vm.destroyed = Some(now);
                Some(VmEventKind::Destroyed)
            }
            Step::FinishSetup => None,
        };
        if let Some(k) = event {
            self.emit_vm(st, &vm_uuid, k, EventCause::Job, Some(uuid));
        }
        Ok(())
    }
}

fn set_execution(st: &mut State, uuid: &str, ex: JobExecution) {
    if let Some(j) = st.jobs.get_mut(uuid) {
        j.job.execution = ex;
        j.tx.send_replace(ex);
    }
}

/// Record a task result; `started` is when the task began (now if `None`).
fn push_result(
    st: &mut State,
    uuid: &str,
    name: &str,
    started: Option<String>,
    outcome: Result<&str, &str>,
) {
    if let Some(j) = st.jobs.get_mut(uuid) {
        let now = now_iso();
        let (result, error) = match outcome {
            Ok(r) => (r.to_string(), json!("")),
            Err(m) => (String::new(), json!({"name": "Error", "message": m})),
        };
        j.job.chain_results.push(ChainResult {
            name: name.to_string(),
            result,
            error,
            started_at: Some(started.unwrap_or_else(|| now.clone())),
            finished_at: Some(now),
            extra: JsonMap::new(),
        });
    }
}

fn set_vm_state(st: &mut State, vm: &str, state: VmState, zone_state: Option<&str>) {
    if let Some(v) = st.vms.get_mut(vm) {
        v.vm.state = state;
        v.vm.zone_state = zone_state.map(str::to_string);
        v.vm.last_modified = Some(now_iso());
    }
}

fn check_image_active(st: &State, image: &str) -> Result<(), String> {
    match st.images.get(image) {
        Some(i) if i.manifest.state == ImageState::Active => Ok(()),
        Some(i) => Err(format!(
            "image {image} is not active (state: {})",
            i.manifest.state.as_str()
        )),
        None => Err(format!("image {image} not found")),
    }
}

/// A tiny DAPI: setup, live, unreserved non-headnodes first, fewest zones.
fn allocate_server(st: &State) -> Option<String> {
    let load = |s: &str| {
        st.vms
            .values()
            .filter(|v| v.vm.server_uuid.as_deref() == Some(s) && v.vm.state.is_active())
            .count()
    };
    st.servers
        .values()
        .filter(|s| !s.dead && s.server.setup && !s.server.reserved)
        .min_by_key(|s| {
            (
                s.server.headnode,
                load(&s.server.uuid),
                s.server.uuid.clone(),
            )
        })
        .map(|s| s.server.uuid.clone())
}

/// VMAPI `update`: scalars are set, `tags`/`customer_metadata`/
/// `internal_metadata` replace the whole map.
pub(crate) fn apply_vm_update(vm: &mut wire::apis::Vm, changes: &JsonMap) {
    for (k, v) in changes {
        match k.as_str() {
            "alias" => vm.alias = v.as_str().map(str::to_string),
            "ram" | "max_physical_memory" => {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                vm.ram = n;
                vm.max_physical_memory = n;
            }
            "quota" => {
                vm.quota = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }
            "cpu_cap" => {
                vm.cpu_cap = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }
            "billing_id" => vm.billing_id = v.as_str().map(str::to_string),
            "new_owner_uuid" => {
                if let Some(o) = v.as_str() {
                    vm.owner_uuid = o.to_string();
                }
            }
            "tags" => vm.tags = v.as_object().cloned().unwrap_or_default(),
            "customer_metadata" => {
                vm.customer_metadata = v.as_object().cloned().unwrap_or_default()
            }
            "internal_metadata" => {
                vm.internal_metadata = v.as_object().cloned().unwrap_or_default()
            }
            "resolvers" => {
                vm.resolvers = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            }
            "autoboot" => vm.autoboot = v.as_bool(),
            "firewall_enabled" => vm.firewall_enabled = v.as_bool(),
            _ => {
                vm.extra.insert(k.clone(), v.clone());
            }
        }
    }
}
