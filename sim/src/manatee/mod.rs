//! Simulated manatee: one sitter per manatee zone, following
//! manatee-state-machine's rules literally against a
//! [`coord::Coordination`] (research `manatee.md` §2, §3, §9), with a
//! postgres replication model underneath.
//!
//! - [`ManateeSim`] holds the zones of one datacenter (or region), their
//!   postgres datasets and the simulated network between them, and hands out
//!   ZooKeeper sessions through a [`SessionProvider`] (the in-process
//!   [`coord::mem::MemEnsemble`] or a real ZooKeeper, [`ZkProvider`]).
//! - [`Zone`] is one manatee zone: start/stop/kill/restart its sitter,
//!   expire its session, back up or replace its dataset.
//! - [`Shard`] is what `manatee-adm` and clients see of one shard: the state,
//!   `pg-status`, `verify`, client writes, history, admin writes.
//!
//! Every duration is modelled time, scaled by [`TimeScale`].
//!
//! LAG in `pg-status`: a standby that has replayed everything its upstream
//! has reports `0m00s`; otherwise the time since its last replayed commit
//! (PostgreSQL's formula). Real PostgreSQL keeps counting on an idle shard;
//! the simulation has no background writes, so it reports caught up as 0.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use coord::{CoordError, Coordination, Stat};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wire::manatee::{
    self, ActivePeer, AdmRole, ClusterState, FreezeError, Issue, Lsn, PeerIdent, PeerPgStatus,
    PgStatusReport, PromoteRequest, ReplicationRow, StateError,
};

pub mod adm;
mod config;
mod legacy;
mod peer;
mod pg;
mod realpg;
mod sitter;
mod zk;

pub use adm::HistoryEntry;
pub use config::{ManateeSimConfig, ReplicationModel, TimeScale};
pub use peer::{PeerDebug, PeerRole, PgConfig, PgRole};
pub use pg::{
    CHECKPOINT_BYTES, PgBackup, RecordKind, RestoreObject, WRITE_HEADER_BYTES, WalRecord,
    WriteError,
};
pub use zk::{Expirer, Session, SessionProvider, ZkProvider};

use pg::{ModelPg, PgNetwork, PgNode, PgServer};
pub use realpg::{PgBinaries, RealPostgres};
use zk::SessionSlot;

/// Errors of the simulation's control surface.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("coordination: {0}")]
    Coord(#[from] CoordError),
    #[error("shard {0:?} has no cluster state")]
    NoState(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Freeze(FreezeError),
    #[error("zone or peer {0:?} already exists")]
    ZoneExists(String),
    #[error("no zone {0:?}")]
    NoZone(String),
    #[error("{0}")]
    Refused(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// How a zone boots: the parts of its SAPI metadata / sitter.json that the
/// state machine reads (§5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// The shard name (`/manatee/<shard>`).
    pub shard: String,
    /// `postgresMgrCfg.oneNodeWriteMode` (`ONE_NODE_WRITE_MODE`).
    pub one_node_write_mode: bool,
    /// `DISABLE_SITTER`: the zone boots but the sitter is not started.
    pub disable_sitter: bool,
    /// The manatee major the zone's image carries: 1 runs the v1 sitter
    /// (election order, no cluster state), 2 the v2 state machine.
    pub major: u32,
}

impl BootOptions {
    pub fn new(shard: &str) -> BootOptions {
        BootOptions {
            shard: shard.to_string(),
            one_node_write_mode: false,
            disable_sitter: false,
            major: 2,
        }
    }
    pub fn major(mut self, major: u32) -> BootOptions {
        self.major = major;
        self
    }
    pub fn one_node_write_mode(mut self, on: bool) -> BootOptions {
        self.one_node_write_mode = on;
        self
    }
    pub fn disable_sitter(mut self, on: bool) -> BootOptions {
        self.disable_sitter = on;
        self
    }
}

/// A manatee zone's identity and its dataset at provisioning time.
#[derive(Clone, Debug)]
pub struct ZoneSpec {
    pub zone_id: String,
    pub ip: String,
    pub pg_port: u16,
    pub backup_port: u16,
    /// The dataset the zone is provisioned with; `None` is an empty one.
    /// A peer whose dataset holds a database (v1 migration, a copied
    /// dataset) never creates the first state (§3.2 step 2).
    pub dataset: Option<PgBackup>,
}

impl ZoneSpec {
    pub fn new(zone_id: &str, ip: &str) -> ZoneSpec {
        ZoneSpec {
            zone_id: zone_id.to_string(),
            ip: ip.to_string(),
            pg_port: manatee::DEFAULT_PG_PORT,
            backup_port: manatee::DEFAULT_BACKUP_PORT,
            dataset: None,
        }
    }
    /// Provisioned with a database of its own (a fresh initdb).
    pub fn with_database(mut self) -> ZoneSpec {
        self.dataset = Some(PgBackup::initdb());
        self
    }
    /// Provisioned with a copy of `dataset` (peers that are replicas of one
    /// another share its history).
    pub fn with_dataset(mut self, dataset: PgBackup) -> ZoneSpec {
        self.dataset = Some(dataset);
        self
    }
    pub fn ident(&self) -> PeerIdent {
        PeerIdent::new(&self.zone_id, &self.ip, self.pg_port, self.backup_port)
    }
}

struct SimInner {
    provider: Arc<dyn SessionProvider>,
    cfg: Arc<ManateeSimConfig>,
    net: Arc<PgNetwork>,
    /// Set: every zone's postgres is a real server ([`RealPostgres`]);
    /// unset: the model ([`PgNode`]).
    real_pg: Option<Arc<RealPostgres>>,
    zones: Mutex<BTreeMap<String, Zone>>,
    admin: tokio::sync::Mutex<Option<Session>>,
    transfers: Arc<Mutex<Vec<Transfer>>>,
    send_fault: Mutex<Option<String>>,
}

/// A `zfs send | zfs recv` of a snapshot into another zone's dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub from: String,
    pub snapshot: String,
    pub to: String,
    pub total_bytes: u64,
    pub sent_bytes: u64,
    pub done: bool,
    pub error: Option<String>,
}

/// The manatee zones of one simulated datacenter. Cloning gives another
/// handle. Sitters run as tokio tasks until [`ManateeSim::shutdown`] (or
/// the runtime ends).
#[derive(Clone)]
pub struct ManateeSim {
    inner: Arc<SimInner>,
}

impl std::fmt::Debug for ManateeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManateeSim")
            .field(
                "zones",
                &self.inner.zones.lock().unwrap().keys().collect::<Vec<_>>(),
            )
            .field("config", &self.inner.cfg)
            .finish()
    }
}

impl ManateeSim {
    pub fn new(provider: Arc<dyn SessionProvider>, cfg: ManateeSimConfig) -> ManateeSim {
        ManateeSim::build(provider, cfg, None)
    }

    fn build(
        provider: Arc<dyn SessionProvider>,
        cfg: ManateeSimConfig,
        real_pg: Option<Arc<RealPostgres>>,
    ) -> ManateeSim {
        ManateeSim {
            inner: Arc::new(SimInner {
                provider,
                cfg: Arc::new(cfg),
                net: Arc::new(PgNetwork::default()),
                real_pg,
                zones: Mutex::new(BTreeMap::new()),
                admin: tokio::sync::Mutex::new(None),
                transfers: Arc::default(),
                send_fault: Mutex::new(None),
            }),
        }
    }

    /// Every zone's postgres a real PostgreSQL server run by `pg` (instead
    /// of the model). Zones must then be provisioned empty or with a fresh
    /// database ([`ZoneSpec::with_database`]).
    pub fn with_real_pg(
        provider: Arc<dyn SessionProvider>,
        cfg: ManateeSimConfig,
        pg: Arc<RealPostgres>,
    ) -> ManateeSim {
        ManateeSim::build(provider, cfg, Some(pg))
    }

    /// Whether zones run real PostgreSQL.
    pub fn real_pg(&self) -> Option<&Arc<RealPostgres>> {
        self.inner.real_pg.as_ref()
    }

    /// On the in-process ensemble.
    pub fn with_mem(ensemble: coord::mem::MemEnsemble, cfg: ManateeSimConfig) -> ManateeSim {
        ManateeSim::new(Arc::new(ensemble), cfg)
    }

    pub fn config(&self) -> &ManateeSimConfig {
        &self.inner.cfg
    }

    /// Provision a zone and boot it (its sitter starts unless disabled).
    pub async fn add_zone(&self, spec: ZoneSpec, boot: BootOptions) -> Result<Zone, SimError> {
        let ident = spec.ident();
        let exists = |zones: &BTreeMap<String, Zone>| {
            zones.contains_key(&spec.zone_id) || zones.values().any(|z| z.id() == ident.id)
        };
        if exists(&self.inner.zones.lock().unwrap()) {
            return Err(SimError::ZoneExists(spec.zone_id));
        }
        let pg: Arc<dyn PgServer> = match &self.inner.real_pg {
            Some(real) => real
                .server(&spec.zone_id, ident.clone(), spec.dataset.as_ref())
                .await
                .map_err(SimError::Refused)?,
            None => {
                let node = PgNode::new(ident.clone());
                if let Some(d) = &spec.dataset {
                    node.load_backup(d);
                }
                self.inner.net.register(node.clone());
                Arc::new(ModelPg {
                    node,
                    net: self.inner.net.clone(),
                })
            }
        };
        let zone = {
            let mut zones = self.inner.zones.lock().unwrap();
            if exists(&zones) {
                return Err(SimError::ZoneExists(spec.zone_id));
            }
            let zone = Zone {
                inner: Arc::new(ZoneInner {
                    zone_id: spec.zone_id.clone(),
                    ident,
                    pg,
                    boot: Mutex::new(boot),
                    running: tokio::sync::Mutex::new(None),
                    slot: Arc::new(Mutex::new(None)),
                    outage: Arc::new(Mutex::new(None)),
                    status: watch::channel(PeerDebug::default()).0,
                    fatal: Arc::new(Mutex::new(None)),
                    alive: Arc::new(Mutex::new(false)),
                    snapshots: Mutex::new(BTreeMap::new()),
                }),
                sim: Arc::downgrade(&self.inner),
            };
            zones.insert(spec.zone_id, zone.clone());
            zone
        };
        zone.start().await?;
        Ok(zone)
    }

    pub fn zone(&self, zone_id: &str) -> Option<Zone> {
        self.inner.zones.lock().unwrap().get(zone_id).cloned()
    }

    /// The zone whose manatee id (`ip:pgPort:backupPort`) is `peer_id`.
    pub fn zone_by_peer_id(&self, peer_id: &str) -> Option<Zone> {
        self.inner
            .zones
            .lock()
            .unwrap()
            .values()
            .find(|z| z.id() == peer_id)
            .cloned()
    }

    pub fn zones(&self) -> Vec<Zone> {
        self.inner.zones.lock().unwrap().values().cloned().collect()
    }

    pub fn shard(&self, name: &str) -> Shard {
        Shard {
            sim: self.clone(),
            name: name.to_string(),
        }
    }

    /// A session for reading and for operator writes (manatee-adm's), built
    /// again if it expired.
    pub async fn admin_session(&self) -> Result<Arc<dyn Coordination>, SimError> {
        let mut admin = self.inner.admin.lock().await;
        if let Some(s) = admin.as_ref()
            && !s.coord.session_state().is_terminal()
        {
            return Ok(s.coord.clone());
        }
        let s = self.inner.provider.connect().await?;
        let c = s.coord.clone();
        *admin = Some(s);
        Ok(c)
    }

    /// Stop every sitter and close the admin session.
    pub async fn shutdown(&self) {
        for z in self.zones() {
            z.stop().await;
        }
        if let Some(s) = self.inner.admin.lock().await.take() {
            s.coord.close().await;
        }
    }
}

struct Running {
    task: JoinHandle<()>,
}

struct ZoneInner {
    zone_id: String,
    ident: PeerIdent,
    pg: Arc<dyn PgServer>,
    boot: Mutex<BootOptions>,
    /// Serialises start/stop/kill.
    running: tokio::sync::Mutex<Option<Running>>,
    slot: SessionSlot,
    outage: zk::Outage,
    status: watch::Sender<PeerDebug>,
    fatal: Arc<Mutex<Option<String>>>,
    alive: Arc<Mutex<bool>>,
    /// ZFS snapshots of the manatee dataset, by name.
    snapshots: Mutex<BTreeMap<String, PgBackup>>,
}

/// One manatee zone.
#[derive(Clone)]
pub struct Zone {
    inner: Arc<ZoneInner>,
    sim: Weak<SimInner>,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("zone_id", &self.inner.zone_id)
            .field("id", &self.inner.ident.id)
            .field("running", &self.is_running())
            .finish()
    }
}

/// A session left behind by a zone that died without its session expiring
/// yet (a crash inside the session timeout). Expire it to model the timeout.
pub struct DanglingSession(Session);

impl DanglingSession {
    pub fn session_id(&self) -> i64 {
        self.0.coord.session_id()
    }
    /// The ensemble times the session out: its election node disappears.
    pub async fn expire(self) -> Result<(), SimError> {
        (self.0.expire)().await?;
        Ok(())
    }
}

impl Zone {
    pub fn zone_id(&self) -> &str {
        &self.inner.zone_id
    }
    /// The manatee id, `ip:pgPort:backupPort`.
    pub fn id(&self) -> &str {
        &self.inner.ident.id
    }
    pub fn ident(&self) -> &PeerIdent {
        &self.inner.ident
    }
    pub fn boot_options(&self) -> BootOptions {
        self.inner.boot.lock().unwrap().clone()
    }

    fn sim(&self) -> Option<Arc<SimInner>> {
        self.sim.upgrade()
    }

    /// Boot with the current options; a no-op when running or disabled.
    pub async fn start(&self) -> Result<(), SimError> {
        let sim = self
            .sim()
            .ok_or_else(|| SimError::Refused("simulation dropped".into()))?;
        let mut running = self.inner.running.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        let boot = self.boot_options();
        if boot.disable_sitter {
            return Ok(());
        }
        *self.inner.fatal.lock().unwrap() = None;
        // A new process: its view starts empty (role unknown).
        self.inner.status.send_replace(PeerDebug::default());
        let params = sitter::SitterParams {
            shard: boot.shard.clone(),
            ident: self.inner.ident.clone(),
            one_node_write_mode: boot.one_node_write_mode,
            provider: sim.provider.clone(),
            pg: self.inner.pg.clone(),
            cfg: sim.cfg.clone(),
            slot: self.inner.slot.clone(),
            outage: self.inner.outage.clone(),
            status: self.inner.status.clone(),
        };
        let (pg, slot, fatal, alive) = (
            self.inner.pg.clone(),
            self.inner.slot.clone(),
            self.inner.fatal.clone(),
            self.inner.alive.clone(),
        );
        *alive.lock().unwrap() = true;
        let zone_id = self.inner.zone_id.clone();
        let major = boot.major;
        let task = tokio::spawn(async move {
            let why = if major == 1 {
                legacy::run(params).await
            } else {
                sitter::run(params).await
            };
            // The sitter process died: its postgres child goes with it and
            // the connection closes. SMF would restart it; we leave it dead
            // so the failure stays visible.
            tracing::error!(zone = %zone_id, "sitter exited: {why}");
            pg.shutdown().await;
            let session = slot.lock().unwrap().take();
            if let Some(s) = session {
                s.coord.close().await;
            }
            *fatal.lock().unwrap() = Some(why);
            *alive.lock().unwrap() = false;
        });
        *running = Some(Running { task });
        Ok(())
    }

    async fn halt(&self) -> Option<Session> {
        let mut running = self.inner.running.lock().await;
        if let Some(r) = running.take() {
            r.task.abort();
            let _ = r.task.await;
        }
        *self.inner.alive.lock().unwrap() = false;
        self.inner.status.send_replace(PeerDebug::default());
        self.inner.slot.lock().unwrap().take()
    }

    /// `svcadm disable manatee-sitter`: the session is closed (its election
    /// node goes at once) and postgres stops.
    pub async fn stop(&self) {
        let session = self.halt().await;
        self.inner.pg.shutdown().await;
        if let Some(s) = session {
            s.coord.close().await;
        }
    }

    /// The zone dies: postgres loses what it had not flushed, and the
    /// session expires through the backend's expiry hook.
    pub async fn kill(&self) {
        if let Some(d) = self.kill_keep_session().await
            && let Err(e) = d.expire().await
        {
            tracing::warn!(zone = %self.inner.zone_id, "expiring the dead zone's session: {e}");
        }
    }

    /// The zone dies but its session has not timed out yet: its election
    /// node stays until the returned handle is expired.
    pub async fn kill_keep_session(&self) -> Option<DanglingSession> {
        let session = self.halt().await;
        self.inner.pg.crash().await;
        session.map(DanglingSession)
    }

    /// Stop, change the boot options, start (a config change plus sitter
    /// restart, or a reprovision that kept the dataset).
    pub async fn restart(&self, boot: BootOptions) -> Result<(), SimError> {
        self.stop().await;
        *self.inner.boot.lock().unwrap() = boot;
        self.start().await
    }

    /// Fault injection: the ensemble expires this zone's session while the
    /// zone lives on; its sitter builds a new session. Returns false if it
    /// had none.
    pub async fn expire_session(&self) -> Result<bool, SimError> {
        let session = self.inner.slot.lock().unwrap().clone();
        match session {
            Some(s) => {
                (s.expire)().await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Fault injection: the zone loses ZooKeeper for `outage` (modelled
    /// time) while postgres keeps running. Its session expires now and the
    /// sitter can build a new one only when the partition heals.
    pub async fn partition(&self, outage: Duration) -> Result<bool, SimError> {
        let cfg = self
            .sim()
            .map(|s| s.cfg.clone())
            .ok_or_else(|| SimError::Refused("simulation dropped".into()))?;
        let until = tokio::time::Instant::now() + cfg.time_scale.real(outage);
        *self.inner.outage.lock().unwrap() = Some(until);
        self.expire_session().await
    }

    pub fn session_id(&self) -> Option<i64> {
        self.inner
            .slot
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.coord.session_id())
    }

    /// Whether the sitter process is running.
    pub fn is_running(&self) -> bool {
        *self.inner.alive.lock().unwrap()
    }

    /// Why the sitter died, if it did.
    pub fn fatal_error(&self) -> Option<String> {
        self.inner.fatal.lock().unwrap().clone()
    }

    /// The sitter's own view (`GET :5433/state`).
    pub fn peer(&self) -> PeerDebug {
        self.inner.status.borrow().clone()
    }

    pub fn role(&self) -> PeerRole {
        self.inner.status.borrow().role
    }

    /// Wait until the sitter's view satisfies `pred` (real-time `timeout`).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&PeerDebug) -> bool,
    ) -> Result<PeerDebug, SimError> {
        let mut rx = self.inner.status.subscribe();
        let r = tokio::time::timeout(timeout, async {
            loop {
                let cur = rx.borrow_and_update().clone();
                if pred(&cur) {
                    return cur;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        r.map_err(|_| SimError::Timeout(timeout, format!("{}: {what}", self.inner.zone_id)))
    }

    pub fn pg_online(&self) -> bool {
        self.inner.pg.is_online()
    }

    /// The sitter's backup server's `GET /restore`: the last restore into
    /// this zone, with its progress (model only).
    pub fn restore_status(&self) -> Option<RestoreObject> {
        self.inner.pg.restore_status()
    }

    /// Whether the primary refuses writes (waiting for its sync).
    pub fn pg_read_only(&self) -> bool {
        self.inner.pg.status().read_only
    }

    /// A connection string to this zone's real PostgreSQL (`None` under
    /// the model).
    pub fn pg_conninfo(&self) -> Option<String> {
        self.inner.pg.conninfo()
    }

    /// The role postgres is running in (`None` when it is down).
    pub fn pg_role(&self) -> PgRole {
        self.inner.pg.status().role
    }

    /// Why this standby is not replicating (diverged WAL, upstream down).
    pub fn replication_error(&self) -> Option<String> {
        self.inner.pg.status().standby_error
    }

    /// How far this zone's WAL is durable.
    pub fn flushed_lsn(&self) -> Lsn {
        self.inner.pg.status().flushed
    }

    /// `getXLogLocation` (current LSN on a primary, replay LSN on a standby).
    pub fn lsn(&self) -> Option<Lsn> {
        self.inner.pg.xlog_location()
    }

    /// The durable client writes in this zone's dataset.
    pub fn writes(&self) -> Vec<Vec<u8>> {
        self.inner.pg.writes()
    }

    pub fn has_database(&self) -> bool {
        self.inner.pg.is_setup()
    }

    /// A snapshot copy of the dataset (durable data only).
    pub fn backup(&self) -> PgBackup {
        self.inner.pg.backup(&self.inner.zone_id)
    }

    async fn require_stopped(&self, what: &str) -> Result<(), SimError> {
        let running = self.inner.running.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) || self.pg_online() {
            return Err(SimError::Refused(format!(
                "{what}: the sitter of {} is running",
                self.inner.zone_id
            )));
        }
        Ok(())
    }

    /// Replace the dataset with a backup (the sitter must be stopped).
    pub async fn load_backup(&self, backup: &PgBackup) -> Result<(), SimError> {
        self.require_stopped("load backup").await?;
        self.inner.pg.load_backup(backup).map_err(SimError::Refused)
    }

    /// Destroy the dataset (the sitter must be stopped); the next start
    /// restores from the primary.
    pub async fn destroy_data(&self) -> Result<(), SimError> {
        self.require_stopped("destroy data").await?;
        self.inner.pg.destroy_data();
        self.inner.snapshots.lock().unwrap().clear();
        Ok(())
    }

    /// `zfs destroy -r` of the dataset from outside the sitter's control
    /// (refused while the sitter or postgres runs).
    pub fn destroy_data_now(&self) -> Result<(), SimError> {
        if self.is_running() || self.pg_online() {
            return Err(SimError::Refused(format!(
                "cannot destroy '{}': dataset is busy",
                self.dataset()
            )));
        }
        self.inner.pg.destroy_data();
        self.inner.snapshots.lock().unwrap().clear();
        Ok(())
    }

    /// Set `oneNodeWriteMode` in sitter.json; the running sitter reads it
    /// only when it starts again.
    pub fn set_sitter_onwm(&self, on: bool) {
        self.inner.boot.lock().unwrap().one_node_write_mode = on;
    }

    /// `zfs snapshot .../data/manatee@<name>`: a named copy of the durable
    /// data, taken atomically (crash-consistent) whether or not the sitter runs.
    pub fn snapshot(&self, name: &str) -> Result<(), SimError> {
        let mut snaps = self.inner.snapshots.lock().unwrap();
        if snaps.contains_key(name) {
            return Err(SimError::Refused(format!(
                "cannot create snapshot '{}@{name}': dataset already exists",
                self.dataset()
            )));
        }
        if self.inner.pg.wal_bytes().is_none() {
            return Err(SimError::Refused(format!(
                "cannot open '{}': dataset does not exist",
                self.dataset()
            )));
        }
        snaps.insert(name.to_string(), self.backup());
        Ok(())
    }

    pub fn destroy_snapshot(&self, name: &str) -> Result<(), SimError> {
        self.inner
            .snapshots
            .lock()
            .unwrap()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| {
                SimError::Refused(format!(
                    "could not find any snapshots to destroy; check snapshot names ({}@{name})",
                    self.dataset()
                ))
            })
    }

    pub fn snapshots(&self) -> Vec<String> {
        self.inner
            .snapshots
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    pub fn snapshot_data(&self, name: &str) -> Option<PgBackup> {
        self.inner.snapshots.lock().unwrap().get(name).cloned()
    }

    /// `zfs list -o used` of the dataset: None when it holds no database.
    pub fn dataset_bytes(&self) -> Option<u64> {
        let base = self.sim().map_or(0, |s| s.cfg.dataset_base_bytes);
        self.inner.pg.wal_bytes().map(|w| base + w)
    }

    /// The delegated dataset's name.
    pub fn dataset(&self) -> String {
        format!("zones/{}/data/manatee", self.inner.zone_id)
    }
}

impl ManateeSim {
    /// Fault injection: the next `zfs send` breaks half-way with `why`.
    pub fn fail_next_send(&self, why: &str) {
        *self.inner.send_fault.lock().unwrap() = Some(why.to_string());
    }

    /// Transfers started, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.inner.transfers.lock().unwrap().clone()
    }

    /// `zfs send <from>@<snapshot> | zfs recv <to>`: runs in the background
    /// at the local or network rate; the receiver's sitter must be stopped
    /// and its dataset empty. Progress is in [`ManateeSim::transfers`]; the
    /// received dataset carries the snapshot.
    pub fn send(
        &self,
        from: &str,
        snapshot: &str,
        to: &str,
        same_server: bool,
    ) -> Result<(), SimError> {
        let src = self
            .zone(from)
            .ok_or_else(|| SimError::NoZone(from.into()))?;
        let dst = self.zone(to).ok_or_else(|| SimError::NoZone(to.into()))?;
        let data = src.snapshot_data(snapshot).ok_or_else(|| {
            SimError::Refused(format!(
                "cannot open '{}@{snapshot}': dataset does not exist",
                src.dataset()
            ))
        })?;
        if dst.is_running() || dst.pg_online() {
            return Err(SimError::Refused(format!(
                "cannot receive into '{}': its manatee-sitter is running",
                dst.dataset()
            )));
        }
        if dst.inner.pg.wal_bytes().is_some() {
            return Err(SimError::Refused(format!(
                "cannot receive new filesystem stream: destination '{}' exists",
                dst.dataset()
            )));
        }
        let cfg = self.inner.cfg.clone();
        let total = cfg.dataset_base_bytes + data.lsn().0;
        let rate = if same_server {
            cfg.local_send_rate
        } else {
            cfg.network_send_rate
        }
        .max(1);
        let fault = self.inner.send_fault.lock().unwrap().take();
        let idx = {
            let mut t = self.inner.transfers.lock().unwrap();
            t.push(Transfer {
                from: from.into(),
                snapshot: snapshot.into(),
                to: to.into(),
                total_bytes: total,
                sent_bytes: 0,
                done: false,
                error: None,
            });
            t.len() - 1
        };
        let transfers = self.inner.transfers.clone();
        let name = snapshot.to_string();
        tokio::spawn(async move {
            // Twenty progress ticks, as `zfs send -v` prints once a second.
            let tick = Duration::from_secs_f64(total as f64 / rate as f64 / 20.0);
            for i in 1..=20u64 {
                cfg.time_scale.sleep(tick).await;
                let sent = total * i / 20;
                if let Some(why) = &fault
                    && i == 10
                {
                    let mut t = transfers.lock().unwrap();
                    t[idx].sent_bytes = sent;
                    t[idx].error = Some(why.clone());
                    return; // a partial full receive leaves nothing behind
                }
                transfers.lock().unwrap()[idx].sent_bytes = sent;
            }
            if let Err(e) = dst.inner.pg.load_backup(&data) {
                transfers.lock().unwrap()[idx].error = Some(e);
                return;
            }
            dst.inner.snapshots.lock().unwrap().insert(name, data);
            transfers.lock().unwrap()[idx].done = true;
        });
        Ok(())
    }

    /// The receiving side's view while a receive is in flight (`zfs list`
    /// shows the bytes received so far).
    pub fn receiving_bytes(&self, to: &str) -> Option<u64> {
        self.inner
            .transfers
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|t| t.to == to && !t.done && t.error.is_none())
            .map(|t| t.sent_bytes)
    }
}

/// One shard as `manatee-adm` and clients see it.
#[derive(Clone, Debug)]
pub struct Shard {
    sim: ManateeSim,
    name: String,
}

impl Shard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Zones booted into this shard.
    pub fn zones(&self) -> Vec<Zone> {
        self.sim
            .zones()
            .into_iter()
            .filter(|z| z.boot_options().shard == self.name)
            .collect()
    }

    async fn admin(&self) -> Result<Arc<dyn Coordination>, SimError> {
        self.sim.admin_session().await
    }

    pub async fn state_with_stat(&self) -> Result<Option<(ClusterState, Stat)>, SimError> {
        adm::get_state(self.admin().await?.as_ref(), &self.name).await
    }

    pub async fn state(&self) -> Result<Option<ClusterState>, SimError> {
        Ok(self.state_with_stat().await?.map(|(s, _)| s))
    }

    /// Wait (real-time `timeout`) until the state exists and satisfies
    /// `pred`, driven by a watch on the state node.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&ClusterState) -> bool,
    ) -> Result<ClusterState, SimError> {
        let c = self.admin().await?;
        let path = manatee::state_path(&self.name);
        let r = tokio::time::timeout(timeout, async {
            loop {
                let (snap, w) = zk::read_state(c.as_ref(), &path).await?;
                if let Some(snap) = snap
                    && let Ok(st) = ClusterState::from_json(&snap.raw)
                    && pred(&st)
                {
                    return Ok::<_, SimError>(st);
                }
                w.await;
            }
        })
        .await;
        match r {
            Ok(r) => r,
            Err(_) => {
                let last = self.state().await.ok().flatten();
                Err(SimError::Timeout(
                    timeout,
                    format!(
                        "shard {}: {what}; last state: {}",
                        self.name,
                        last.map(|s| String::from_utf8_lossy(&s.to_json()).into_owned())
                            .unwrap_or_else(|| "none".into())
                    ),
                ))
            }
        }
    }

    /// The active peers as the sitters see them (deduplicated, by id).
    pub async fn active(&self) -> Result<Vec<ActivePeer>, SimError> {
        adm::active(self.admin().await?.as_ref(), &self.name).await
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, SimError> {
        adm::history(self.admin().await?.as_ref(), &self.name).await
    }

    /// `manatee-adm pg-status`: one row per assigned peer.
    pub async fn pg_status(&self) -> Result<PgStatusReport, SimError> {
        let state = self
            .state()
            .await?
            .ok_or_else(|| SimError::NoState(self.name.clone()))?;
        let sim = self.sim.inner.clone();
        // A real server answers now, not from its last poll.
        for z in self.zones() {
            z.inner.pg.refresh().await;
        }
        let now = Instant::now();
        let mut chain: Vec<(AdmRole, PeerIdent, Option<&PeerIdent>)> = Vec::new();
        chain.push((AdmRole::Primary, state.primary.clone(), state.sync.as_ref()));
        if let Some(s) = &state.sync {
            chain.push((AdmRole::Sync, s.clone(), state.asyncs.first()));
        }
        for (i, a) in state.asyncs.iter().enumerate() {
            chain.push((AdmRole::Async, a.clone(), state.asyncs.get(i + 1)));
        }
        for d in &state.deposed {
            chain.push((AdmRole::Deposed, d.clone(), None));
        }
        let peers = chain
            .into_iter()
            .map(|(role, ident, downstream)| {
                self.probe(&sim, role, ident, downstream.map(|d| d.id.as_str()), now)
            })
            .collect();
        Ok(PgStatusReport { state, peers })
    }

    fn probe(
        &self,
        sim: &SimInner,
        role: AdmRole,
        peer: PeerIdent,
        downstream: Option<&str>,
        now: Instant,
    ) -> PeerPgStatus {
        let row = |pg_error: &str| PeerPgStatus {
            role,
            peer: peer.clone(),
            pg_error: Some(pg_error.to_string()),
            repl: None,
            lag: None,
        };
        // manatee-adm does not query deposed peers (§4.3).
        if role == AdmRole::Deposed {
            return row("not probed (deposed)");
        }
        let Some(zone) = self.sim.zone_by_peer_id(&peer.id) else {
            return row("ENOTFOUND");
        };
        let st = zone.inner.pg.status();
        if !st.online {
            return row("ECONNREFUSED");
        }
        let pick = st
            .downstreams
            .iter()
            .find(|r| Some(r.id.as_str()) == downstream)
            .or_else(|| st.downstreams.first());
        let repl = pick.map(|r| ReplicationRow {
            client_addr: r.ip.clone(),
            state: if r.streaming { "streaming" } else { "catchup" }.to_string(),
            sync_state: if st.sync_standby.as_deref() == Some(r.id.as_str()) {
                "sync"
            } else {
                "async"
            }
            .to_string(),
            sent: r.sent,
            write: r.sent,
            flush: r.flush,
            replay: r.replay,
        });
        let lag = if role == AdmRole::Primary {
            None
        } else {
            let up_end = st
                .upstream
                .as_ref()
                .and_then(|u| self.sim.zone_by_peer_id(u))
                .map(|u| u.inner.pg.status().end);
            match (up_end, st.last_replay_at) {
                // Caught up: no lag (see the module docs on LAG).
                (Some(end), _) if st.replayed >= end => Some(Duration::ZERO),
                (_, Some(at)) => Some(sim.cfg.time_scale.modelled(now.duration_since(at))),
                _ => None,
            }
        };
        PeerPgStatus {
            role,
            peer,
            pg_error: None,
            repl,
            lag,
        }
    }

    /// `manatee-adm verify`: the issues, errors first; empty when healthy.
    pub async fn verify(&self) -> Result<Vec<Issue>, SimError> {
        Ok(self.pg_status().await?.verify())
    }

    /// A client write (Moray's): sent to whatever `state.primary` names.
    /// Returns the LSN once it is acknowledged, i.e. flushed by the sync
    /// unless the shard is in one-node-write mode.
    pub async fn write(&self, payload: &[u8]) -> Result<Lsn, WriteError> {
        let primary = self
            .primary_id()
            .await
            .map_err(|e| WriteError::Coord(e.to_string()))?
            .ok_or(WriteError::NoState)?;
        let sim = &self.sim.inner;
        let node = self
            .sim
            .zone_by_peer_id(&primary)
            .ok_or_else(|| WriteError::UnknownPrimary(primary.clone()))?;
        node.inner
            .pg
            .write(payload, sim.cfg.time_scale.real(sim.cfg.write_timeout))
            .await
    }

    /// Where clients send writes: `state.primary`, or with no state (a v1
    /// shard) the first election node by sequence, as Moray's node-manatee
    /// falls back to (`_childrenToUrls`).
    pub async fn primary_id(&self) -> Result<Option<String>, SimError> {
        if let Some(st) = self.state().await? {
            return Ok(Some(st.primary.id));
        }
        let c = self.admin().await?;
        let order =
            match legacy::read_election(c.as_ref(), &manatee::election_path(&self.name), false)
                .await
            {
                Ok((o, _)) => o,
                Err(CoordError::NoNode(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(order.first().map(|(_, p)| p.id.clone()))
    }

    /// The election in sequence order (the v1 topology): (seq, zone id).
    pub async fn election_order(&self) -> Result<Vec<(u64, String)>, SimError> {
        let c = self.admin().await?;
        match legacy::read_election(c.as_ref(), &manatee::election_path(&self.name), false).await {
            Ok((o, _)) => Ok(o.into_iter().map(|(s, p)| (s, p.zone_id)).collect()),
            Err(CoordError::NoNode(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The durable writes on the current primary.
    pub async fn primary_writes(&self) -> Result<Vec<Vec<u8>>, SimError> {
        let id = self
            .primary_id()
            .await?
            .ok_or_else(|| SimError::NoState(self.name.clone()))?;
        let zone = self
            .sim
            .zone_by_peer_id(&id)
            .ok_or_else(|| SimError::NoZone(id.clone()))?;
        zone.inner
            .pg
            .read_writes()
            .await
            .map_err(|e| SimError::Refused(format!("reading the writes on {id}: {e}")))
    }

    /// Create the state (state-backfill, or a direct write as manta-reshard does).
    pub async fn create_state(&self, state: &ClusterState) -> Result<(), SimError> {
        adm::create_state(self.admin().await?.as_ref(), &self.name, state).await
    }

    /// Read-modify-CAS with `history/0-`, as every manatee-adm write.
    pub async fn update_state<F>(&self, f: F) -> Result<ClusterState, SimError>
    where
        F: FnMut(&mut ClusterState) -> Result<(), SimError> + Send,
    {
        adm::update_state(self.admin().await?.as_ref(), &self.name, f).await
    }

    pub async fn freeze(&self, reason: &str) -> Result<ClusterState, SimError> {
        adm::freeze(self.admin().await?.as_ref(), &self.name, reason).await
    }

    pub async fn unfreeze(&self) -> Result<ClusterState, SimError> {
        adm::unfreeze(self.admin().await?.as_ref(), &self.name).await
    }

    pub async fn promote(&self, req: &PromoteRequest) -> Result<ClusterState, SimError> {
        adm::promote(self.admin().await?.as_ref(), &self.name, req).await
    }

    pub async fn reap(&self, peer_id: &str) -> Result<ClusterState, SimError> {
        adm::reap(self.admin().await?.as_ref(), &self.name, peer_id).await
    }

    /// `manatee-adm rebuild` on `zone` (§4.8): never the primary; stop the
    /// sitter, destroy the dataset, leave `deposed[]`, start again so the
    /// peer restores from the primary and rejoins as a new async.
    pub async fn rebuild(&self, zone: &Zone) -> Result<(), SimError> {
        let state = self
            .state()
            .await?
            .ok_or_else(|| SimError::NoState(self.name.clone()))?;
        if state.primary.id == zone.id() {
            return Err(SimError::Refused(
                "Will not rebuild: this peer is the primary".into(),
            ));
        }
        let deposed = state.deposed.iter().any(|p| p.id == zone.id());
        zone.stop().await;
        zone.destroy_data().await?;
        if deposed {
            let id = zone.id().to_string();
            self.update_state(move |s| {
                s.deposed.retain(|p| p.id != id);
                Ok(())
            })
            .await?;
        }
        zone.start().await
    }
}
