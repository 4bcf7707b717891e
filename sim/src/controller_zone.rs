//! Zones of the SAPI `tritonctl` service: each runs the controller binary
//! as a real process, as a Triton zone runs it under SMF, started with the
//! configuration config-agent renders from the zone's SAPI metadata.
//!
//! - Boot (`Provisioned`, `Started`, `Reprovisioned`): the zone's metadata
//!   (application <- service <- instance, as SAPI merges it) plus
//!   config-agent's `auto` keys (`ZONENAME`, `SERVER_UUID`, `PRIMARY_IP`,
//!   `ADMIN_IP`) go through the caller's renderer (the template of
//!   `sapi_manifests/tritonctl/`: the simulator has no mustache engine of its
//!   own, and does not know the controller crate; the binary is an option
//!   too), the result is written to `<root>/<zone>/etc/config.json`, and
//!   `<binary> controller --config <file>` starts, its stderr appended to
//!   `<root>/<zone>/tritonctl.log` (SMF's service log).
//! - Stop: a `stop` or `reboot` job's `Stopping` sends SIGTERM (SMF's stop
//!   method, `:kill`); a `kill` job's, and any `Stopped`, `Reprovisioning` or
//!   `Destroyed` while the process still runs, SIGKILL (the zone halted).
//! - The restarter: a process that exits while its zone runs is started
//!   again (svc.startd restarts a contract service whose processes are
//!   gone; the controller exits 3 after a lost leadership), except after
//!   exit status 1, an invalid configuration, which leaves the service in
//!   maintenance (`smf_state` `maintenance`) until the zone boots again.
//!
//! Not modelled: svc.startd's rate limit on restarts (a crashing service
//! goes to maintenance after several fast failures; here only exit 1 does),
//! config-agent's periodic re-render and `post_cmd` (the file is rendered at
//! each boot), and the network: the process reaches the loopback addresses
//! the metadata names, not the zone's IPs.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::dc::Datacenter;
use crate::dc::events::{DcEvent, VmEventKind, ZoneInfo};

/// The SAPI service whose zones run the controller.
pub const SERVICE: &str = "tritonctl";
/// The SMF service name `smf_state` reports.
pub const FMRI: &str = "tritonctl";
/// Exit status of an invalid configuration (the controller's `EXIT_INVALID`).
pub const EXIT_INVALID_CONFIG: i32 = 1;

/// config-agent's rendering: the zone's metadata in, the file's text out.
pub type Render = Arc<dyn Fn(&Value) -> Result<String, String> + Send + Sync>;

#[derive(Clone)]
pub struct ControllerZoneOptions {
    /// The `tritonctl` binary.
    pub binary: PathBuf,
    pub render: Render,
    /// Each zone's files go under `<root>/<zone>/`.
    pub root: PathBuf,
    /// Extra environment of the processes (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for ControllerZoneOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerZoneOptions")
            .field("binary", &self.binary)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What happened to one zone's controller (for tests and the control API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneRecord {
    /// The running process, if any.
    pub pid: Option<u32>,
    /// Processes started so far.
    pub starts: u64,
    /// Exit statuses seen, in order (`None`: killed by a signal).
    pub exits: Vec<Option<i32>>,
    /// Why the last start did not happen (rendering, spawning).
    pub start_error: Option<String>,
    pub maintenance: bool,
    /// When the running (or last) process was started.
    pub started_at: Option<std::time::SystemTime>,
}

struct ZoneProc {
    child: Option<Child>,
    record: ZoneRecord,
    /// We asked it to stop: its exit is not restarted.
    stopping: bool,
}

/// Every controller zone of one datacenter.
pub struct ControllerZones {
    dc: Datacenter,
    opts: ControllerZoneOptions,
    zones: Mutex<BTreeMap<String, ZoneProc>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn is_controller_zone(z: &ZoneInfo) -> bool {
    z.instance
        .as_ref()
        .is_some_and(|i| i.service_name == SERVICE)
}

/// The metadata config-agent renders a zone's template from.
pub fn render_view(z: &ZoneInfo) -> Value {
    let mut md = z
        .instance
        .as_ref()
        .map(|i| i.metadata.clone())
        .unwrap_or_default();
    md.insert(
        "auto".into(),
        json!({
            "ZONENAME": z.vm.uuid,
            "SERVER_UUID": z.vm.server_uuid,
            "PRIMARY_IP": z.vm.primary_ip().or(z.vm.admin_ip()),
            "ADMIN_IP": z.vm.admin_ip(),
        }),
    );
    Value::Object(md)
}

impl ControllerZones {
    /// Start a controller in every running `tritonctl` zone and follow the
    /// datacenter from then on.
    pub fn start(dc: Datacenter, opts: ControllerZoneOptions) -> Arc<ControllerZones> {
        let me = Arc::new(ControllerZones {
            dc: dc.clone(),
            opts,
            zones: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let mut rx = dc.subscribe();
        for z in dc.zones() {
            if z.vm.state == wire::apis::VmState::Running && is_controller_zone(&z) {
                me.boot(&z);
            }
        }
        let weak = Arc::downgrade(&me);
        let events = tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(me) = weak.upgrade() else { return };
                let DcEvent::Vm(ev) = ev else { continue };
                if !is_controller_zone(&ev.zone) {
                    continue;
                }
                let zone = ev.zone.vm.uuid.clone();
                match ev.kind {
                    VmEventKind::Provisioned
                    | VmEventKind::Started
                    | VmEventKind::Reprovisioned => me.boot(&ev.zone),
                    VmEventKind::Stopping => {
                        let killed = ev
                            .job_uuid
                            .as_deref()
                            .and_then(|j| me.dc.job(j))
                            .is_some_and(|j| j.name.starts_with("kill"));
                        me.signal(&zone, if killed { libc::SIGKILL } else { libc::SIGTERM });
                    }
                    VmEventKind::Stopped | VmEventKind::Reprovisioning | VmEventKind::Destroyed => {
                        me.signal(&zone, libc::SIGKILL)
                    }
                    VmEventKind::Updated => {}
                }
            }
        });
        let weak = Arc::downgrade(&me);
        let restarter = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(me) = weak.upgrade() else { return };
                me.reap();
            }
        });
        me.tasks
            .lock()
            .expect("zones lock")
            .extend([events, restarter]);
        me
    }

    /// Where a zone's files are.
    pub fn zone_dir(&self, zone: &str) -> PathBuf {
        self.opts.root.join(zone)
    }

    pub fn config_path(&self, zone: &str) -> PathBuf {
        self.zone_dir(zone).join("etc/config.json")
    }

    pub fn log_path(&self, zone: &str) -> PathBuf {
        self.zone_dir(zone).join("tritonctl.log")
    }

    /// The record of every zone seen.
    pub fn records(&self) -> BTreeMap<String, ZoneRecord> {
        self.zones
            .lock()
            .expect("zones lock")
            .iter()
            .map(|(z, p)| (z.clone(), p.record.clone()))
            .collect()
    }

    pub fn record(&self, zone: &str) -> Option<ZoneRecord> {
        self.records().remove(zone)
    }

    /// The zone whose controller runs as `pid`.
    pub fn zone_of_pid(&self, pid: u32) -> Option<String> {
        self.records()
            .into_iter()
            .find(|(_, r)| r.pid == Some(pid))
            .map(|(z, _)| z)
    }

    /// Render and start (a boot clears maintenance, as a new zone boot does).
    fn boot(&self, z: &ZoneInfo) {
        let zone = z.vm.uuid.clone();
        let mut zones = self.zones.lock().expect("zones lock");
        let p = zones.entry(zone.clone()).or_insert_with(|| ZoneProc {
            child: None,
            record: ZoneRecord::default(),
            stopping: false,
        });
        if p.child.is_some() {
            return;
        }
        p.record.maintenance = false;
        p.stopping = false;
        match self.spawn(z) {
            Ok(child) => {
                p.record.pid = Some(child.id());
                p.record.starts += 1;
                p.record.start_error = None;
                p.record.started_at = Some(std::time::SystemTime::now());
                p.child = Some(child);
                self.dc.set_smf(&zone, FMRI, "online");
            }
            Err(e) => {
                tracing::warn!(zone = %zone, error = %e, "the controller zone's process did not start");
                p.record.start_error = Some(e);
                self.dc.set_smf(&zone, FMRI, "maintenance");
                p.record.maintenance = true;
            }
        }
    }

    fn spawn(&self, z: &ZoneInfo) -> Result<Child, String> {
        let zone = &z.vm.uuid;
        let text = (self.opts.render)(&render_view(z))
            .map_err(|e| format!("config-agent could not render the template: {e}"))?;
        let config = self.config_path(zone);
        write_file(&config, &text)?;
        let log_path = self.log_path(zone);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = Command::new(&self.opts.binary);
        cmd.arg("controller")
            .arg("--config")
            .arg(&config)
            .current_dir(self.zone_dir(zone))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        cmd.spawn()
            .map_err(|e| format!("{}: {e}", self.opts.binary.display()))
    }

    /// Signal a zone's process, if it runs; it is not restarted after.
    fn signal(&self, zone: &str, sig: libc::c_int) {
        let mut zones = self.zones.lock().expect("zones lock");
        let Some(p) = zones.get_mut(zone) else { return };
        p.stopping = true;
        if let Some(child) = &p.child {
            // SAFETY: kill(2) on the PID of our own unreaped child.
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
        if sig == libc::SIGKILL
            && let Some(mut child) = p.child.take()
        {
            let status = child.wait().ok();
            p.record.exits.push(status.and_then(|s| s.code()));
            p.record.pid = None;
        }
    }

    /// Reap exited processes; restart those whose zone still runs.
    fn reap(&self) {
        let mut restart = Vec::new();
        {
            let mut zones = self.zones.lock().expect("zones lock");
            for (zone, p) in zones.iter_mut() {
                let Some(child) = p.child.as_mut() else {
                    continue;
                };
                let Ok(Some(status)) = child.try_wait() else {
                    continue;
                };
                p.child = None;
                p.record.pid = None;
                p.record.exits.push(status.code());
                if p.stopping {
                    continue;
                }
                if status.code() == Some(EXIT_INVALID_CONFIG) {
                    p.record.maintenance = true;
                    self.dc.set_smf(zone, FMRI, "maintenance");
                    continue;
                }
                restart.push(zone.clone());
            }
        }
        for zone in restart {
            if let Some(z) = self.dc.zone(&zone)
                && z.vm.state == wire::apis::VmState::Running
            {
                tracing::info!(zone = %zone, "the controller exited; restarting it (svc.startd)");
                self.boot(&z);
            }
        }
    }

    /// SIGKILL every process and stop following the datacenter.
    pub fn shutdown(&self) {
        for t in self.tasks.lock().expect("zones lock").drain(..) {
            t.abort();
        }
        let zones: Vec<String> = self
            .zones
            .lock()
            .expect("zones lock")
            .keys()
            .cloned()
            .collect();
        for z in zones {
            self.signal(&z, libc::SIGKILL);
        }
    }
}

impl Drop for ControllerZones {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
