//! The electric-moray processes of a datacenter: one per zone of the SAPI
//! `electric-moray` service (VMAPI zones), each an [`ElectricMoray`] served
//! over HTTP ([`super::em_http`]).
//!
//! A process reads its config when it starts, and only then: the
//! `INDEX_MORAY_SHARDS` index shards with their `readOnly` flags (what
//! config-agent renders into `ringCfg.indexShards`) and the ring of the
//! image `HASH_RING_IMAGE` names, both from the zone's merged SAPI metadata.
//! It starts with its zone (provision, boot, reprovision) and restarts on
//! `svcadm restart electric-moray` run in the zone through CNAPI execute, as
//! manta-reshard restarts e-m to apply read-only flags; `svcadm disable` stops
//! it and `svcadm enable` starts it. A SAPI change reaches a process only by
//! a restart.
//!
//! Simplification: a real e-m reads its ring from the LevelDB copy in its
//! zone, written at provision from `HASH_RING_IMAGE` and replaced only by
//! manta-reshard's ring update script; here every start loads the image SAPI
//! names at that moment. An image that cannot be loaded leaves the previous
//! ring in service, reported as `ring_image_error` in [`ElectricMoray::status`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::task::JoinHandle;
use wire::apis::ExecuteResult;
use wire::fash::KeyEncoding;

use super::config::em_config;
use super::em_http::{self, EmStatusBody, RingStamp};
use super::ring_image::load_ring_image;
use super::{ElectricMoray, MantaError, MorayTier};
use crate::dc::Datacenter;
use crate::dc::events::{DcEvent, SvcAction, VmEventKind};

/// The SAPI service name.
pub const EM_SERVICE: &str = "electric-moray";
/// The VMAPI `internal_metadata` key where the simulator records the
/// `host:port` of a zone's electric-moray status server. A real zone's
/// status server listens on its admin IP at port 4021 (the first process,
/// em:smf manifest); on 127.0.0.1 every zone shares one IP, so each gets
/// its own port, and the VM record (where a controller already finds a
/// zone's address) says which. Absent on real Triton.
pub const STATUS_ADDRESS_KEY: &str = "tritonctl:em-status-address";
/// The SMF instance the simulator runs (one per zone).
pub const EM_FMRI: &str = "svc:/smartdc/application/electric-moray:electric-moray-2021";

static NEXT_PID: AtomicU32 = AtomicU32::new(20_000);

#[derive(Debug, Clone)]
struct Running {
    pid: u32,
    start_time: String,
}

/// One electric-moray process in its zone.
pub struct EmProcess {
    zone: String,
    dc: Datacenter,
    em: Arc<ElectricMoray>,
    run: RwLock<Option<Running>>,
    /// Why the last start failed, if it did.
    start_error: RwLock<Option<String>>,
    starts: AtomicU64,
    addr: OnceLock<SocketAddr>,
}

impl std::fmt::Debug for EmProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmProcess")
            .field("zone", &self.zone)
            .field("addr", &self.addr.get())
            .finish_non_exhaustive()
    }
}

impl EmProcess {
    /// The zone (VM uuid) it runs in.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The ElectricMoray behind it (routing state, for in-process callers).
    pub fn em(&self) -> &Arc<ElectricMoray> {
        &self.em
    }

    /// `http://127.0.0.1:<port>`: status and data API.
    pub fn url(&self) -> String {
        format!(
            "http://{}",
            self.addr.get().expect("served before it is handed out")
        )
    }

    pub fn is_running(&self) -> bool {
        self.run.read().expect("run lock").is_some()
    }

    /// How many times it has started.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::SeqCst)
    }

    pub fn start_error(&self) -> Option<String> {
        self.start_error.read().expect("run lock").clone()
    }

    pub(super) fn serving(&self) -> Option<&Arc<ElectricMoray>> {
        self.is_running().then_some(&self.em)
    }

    pub(super) fn not_running(&self) -> MantaError {
        MantaError::NotRunning {
            zone: self.zone.clone(),
        }
    }

    pub(super) fn status_body(&self) -> Option<EmStatusBody> {
        let run = self.run.read().expect("run lock").clone()?;
        Some(EmStatusBody {
            smf_fmri: Some(EM_FMRI.to_owned()),
            pid: run.pid,
            start_time: run.start_time,
            client_list: self.em.client_list(),
            index_shards: self.em.index_shard_config(),
            hash_ring_stamp: self
                .em
                .ring_image()
                .map(|image_uuid| RingStamp { image_uuid }),
        })
    }

    /// Start (or restart): read the config and ring SAPI names now.
    pub fn start(&self) -> Result<(), String> {
        *self.run.write().expect("run lock") = None;
        let md = self
            .dc
            .zone(&self.zone)
            .and_then(|z| z.instance)
            .map(|i| i.metadata)
            .ok_or_else(|| format!("zone {} has no SAPI instance", self.zone))?;
        let res = em_config(&md).map_err(|e| e.to_string()).map(|cfg| {
            self.em.configure_index_shards(cfg.index_shards);
            if let Some(image) = cfg.ring_image
                && self.em.ring_image().as_deref() != Some(image.as_str())
            {
                match load_ring_image(&self.dc, &image) {
                    Ok(ring) => self.em.install_ring_image(&image, ring),
                    Err(e) => self.em.set_ring_image_error(Some(e.to_string())),
                }
            }
        });
        match res {
            Ok(()) => {
                *self.start_error.write().expect("run lock") = None;
                self.starts.fetch_add(1, Ordering::SeqCst);
                *self.run.write().expect("run lock") = Some(Running {
                    pid: NEXT_PID.fetch_add(1, Ordering::SeqCst),
                    start_time: now_iso(),
                });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(zone = %self.zone, error = %e, "electric-moray did not start");
                *self.start_error.write().expect("run lock") = Some(e.clone());
                Err(e)
            }
        }
    }

    pub fn stop(&self) {
        *self.run.write().expect("run lock") = None;
    }
}

/// `svcadm [-v] ACTION [-flags] FMRI` naming an electric-moray service.
fn svcadm_on_em(argv: &[String]) -> Option<(SvcAction, &str)> {
    let mut words = argv.iter().map(String::as_str);
    if words.next().map(|a| a.rsplit('/').next().unwrap_or(a)) != Some("svcadm") {
        return None;
    }
    let mut rest = words.filter(|w| !w.starts_with('-'));
    let action = match rest.next()? {
        "restart" => SvcAction::Restart,
        "enable" => SvcAction::Enable,
        "disable" => SvcAction::Disable,
        "refresh" => SvcAction::Refresh,
        "clear" => SvcAction::Clear,
        _ => return None,
    };
    let fmri = rest.next_back()?;
    fmri.contains("electric-moray").then_some((action, fmri))
}

fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every electric-moray process of one datacenter.
pub struct EmFleet {
    dc: Datacenter,
    tier: Arc<MorayTier>,
    encoding: KeyEncoding,
    procs: Mutex<BTreeMap<String, Arc<EmProcess>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for EmFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmFleet")
            .field("zones", &self.procs.lock().expect("fleet lock").keys())
            .finish_non_exhaustive()
    }
}

fn is_em_zone(dc: &Datacenter, vm: &str) -> bool {
    dc.zone(vm)
        .and_then(|z| z.instance)
        .is_some_and(|i| i.service_name == EM_SERVICE)
}

impl EmFleet {
    /// Starts a process in every running `electric-moray` zone and follows
    /// the datacenter from then on (zones coming and going, `svcadm`).
    pub async fn start(
        dc: Datacenter,
        tier: Arc<MorayTier>,
        encoding: KeyEncoding,
    ) -> std::io::Result<Arc<EmFleet>> {
        let fleet = Arc::new(EmFleet {
            dc: dc.clone(),
            tier,
            encoding,
            procs: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let mut rx = dc.subscribe();
        for z in dc.zones() {
            if z.vm.state == wire::apis::VmState::Running && is_em_zone(&dc, &z.vm.uuid) {
                let p = fleet.adopt(&z.vm.uuid).await?;
                let _ = p.start();
            }
        }
        let weak = Arc::downgrade(&fleet);
        dc.add_exec_handler(Arc::new(move |cmd| {
            let fleet = weak.upgrade()?;
            let zone = cmd.zone.as_ref()?;
            let p = fleet.process(zone)?;
            let (action, fmri) = svcadm_on_em(&cmd.argv)?;
            let smf = |state: &str| fleet.dc.set_smf(zone, fmri, state);
            match action {
                SvcAction::Restart if p.is_running() => {
                    let _ = p.start();
                }
                SvcAction::Disable => {
                    smf("disabled");
                    p.stop();
                }
                SvcAction::Enable | SvcAction::Clear => {
                    smf("online");
                    if !p.is_running() {
                        let _ = p.start();
                    }
                }
                _ => {}
            }
            Some(ExecuteResult {
                stdout: String::new(),
                stderr: String::new(),
                exit_code: 0,
            })
        }));
        let weak = Arc::downgrade(&fleet);
        let task = tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(fleet) = weak.upgrade() else { return };
                let DcEvent::Vm(ev) = ev else { continue };
                let vm = ev.zone.vm.uuid.clone();
                if !is_em_zone(&fleet.dc, &vm) && fleet.process(&vm).is_none() {
                    continue;
                }
                match ev.kind {
                    VmEventKind::Provisioned
                    | VmEventKind::Started
                    | VmEventKind::Reprovisioned => {
                        if let Ok(p) = fleet.adopt(&vm).await {
                            let disabled =
                                fleet.dc.smf_state(&vm, EM_FMRI).as_deref() == Some("disabled");
                            if !disabled {
                                let _ = p.start();
                            }
                        }
                    }
                    VmEventKind::Stopping
                    | VmEventKind::Stopped
                    | VmEventKind::Reprovisioning
                    | VmEventKind::Destroyed => {
                        if let Some(p) = fleet.process(&vm) {
                            p.stop();
                        }
                    }
                    _ => {}
                }
            }
        });
        fleet.tasks.lock().expect("fleet lock").push(task);
        Ok(fleet)
    }

    /// The process of `zone`, created and served (not started) if new.
    async fn adopt(&self, zone: &str) -> std::io::Result<Arc<EmProcess>> {
        if let Some(p) = self.process(zone) {
            return Ok(p);
        }
        let p = Arc::new(EmProcess {
            zone: zone.to_owned(),
            dc: self.dc.clone(),
            em: ElectricMoray::new(zone, self.tier.clone(), self.encoding),
            run: RwLock::new(None),
            start_error: RwLock::new(None),
            starts: AtomicU64::new(0),
            addr: OnceLock::new(),
        });
        let (addr, task) = em_http::serve(p.clone()).await?;
        let _ = p.addr.set(addr);
        self.dc.set_vm_internal_metadata(
            zone,
            STATUS_ADDRESS_KEY,
            serde_json::Value::String(addr.to_string()),
        );
        self.tasks.lock().expect("fleet lock").push(task);
        let mut procs = self.procs.lock().expect("fleet lock");
        Ok(procs.entry(zone.to_owned()).or_insert(p).clone())
    }

    pub fn process(&self, zone: &str) -> Option<Arc<EmProcess>> {
        self.procs.lock().expect("fleet lock").get(zone).cloned()
    }

    /// Every process, by zone.
    pub fn processes(&self) -> Vec<Arc<EmProcess>> {
        self.procs
            .lock()
            .expect("fleet lock")
            .values()
            .cloned()
            .collect()
    }

    /// The running processes' ElectricMorays (for in-process callers).
    pub fn running(&self) -> Vec<Arc<ElectricMoray>> {
        self.processes()
            .iter()
            .filter_map(|p| p.serving().cloned())
            .collect()
    }

    pub fn tier(&self) -> &Arc<MorayTier> {
        &self.tier
    }

    /// Stops every process and the HTTP servers.
    pub fn shutdown(&self) {
        for p in self.processes() {
            p.stop();
        }
        for t in self.tasks.lock().expect("fleet lock").drain(..) {
            t.abort();
        }
    }
}

impl Drop for EmFleet {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("fleet lock").drain(..) {
            t.abort();
        }
    }
}
