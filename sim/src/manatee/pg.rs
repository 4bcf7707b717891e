//! The postgres model behind each simulated sitter.
//!
//! Each zone has one [`PgNode`]: a dataset (WAL records with LSNs, durable up
//! to `flushed`) and a server that is off, a primary or a standby. Standbys
//! stream from their upstream over the in-process "network" ([`PgNetwork`])
//! at the configured rate, a primary stays read-only until its sync has
//! caught up, a write on a primary with a sync is acknowledged only once the
//! sync has flushed it, and a standby that is not a prefix of its upstream's
//! history (a deposed primary's diverged WAL) cannot replicate.
//!
//! Lock discipline: never hold two node locks at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use wire::manatee::{Lsn, PeerIdent};

use super::config::ManateeSimConfig;
use super::peer::{PgConfig, PgRole};

/// Bytes of the record a primary writes when it starts or is reconfigured
/// (a checkpoint). Matches the state-machine simulator's "+10 on every
/// start/reconfigure", so initWal values line up with its tests.
pub const CHECKPOINT_BYTES: u64 = 0xa;
/// Bytes of a client write: a fixed header plus the payload.
pub const WRITE_HEADER_BYTES: u64 = 0x18;

static NEXT_RECORD_ID: AtomicU64 = AtomicU64::new(1);

/// What a WAL record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Checkpoint,
    Write(Vec<u8>),
}

/// One WAL record. `id` is unique across the whole simulation, so two
/// datasets share history exactly as far as they share record ids.
#[derive(Clone, Debug)]
pub struct WalRecord {
    pub id: u64,
    /// The LSN just past this record.
    pub end: Lsn,
    pub kind: RecordKind,
    pub committed_at: Instant,
}

/// A copy of a peer's durable data (what a ZFS snapshot of the dataset
/// holds): for backups and brain transplants.
#[derive(Clone, Debug)]
pub struct PgBackup {
    /// The zone it was taken from.
    pub source: String,
    pub taken_at: Instant,
    records: Arc<Vec<WalRecord>>,
    setup: bool,
}

impl PgBackup {
    /// A freshly initialised database: one checkpoint, nothing else.
    pub fn initdb() -> PgBackup {
        PgBackup {
            source: "initdb".into(),
            taken_at: Instant::now(),
            records: Arc::new(vec![WalRecord {
                id: NEXT_RECORD_ID.fetch_add(1, Ordering::Relaxed),
                end: Lsn(CHECKPOINT_BYTES),
                kind: RecordKind::Checkpoint,
                committed_at: Instant::now(),
            }]),
            setup: true,
        }
    }

    /// A dataset holding these writes (a copy of a real server's rows):
    /// one checkpoint, then one record per write; its history is shared
    /// with no other dataset.
    pub fn from_writes(source: &str, writes: Vec<Vec<u8>>) -> PgBackup {
        let mut b = PgBackup::initdb();
        b.source = source.to_string();
        let mut records = b.records.as_ref().clone();
        for w in writes {
            let end = b_end(&records).advance(WRITE_HEADER_BYTES + w.len() as u64);
            records.push(WalRecord {
                id: NEXT_RECORD_ID.fetch_add(1, Ordering::Relaxed),
                end,
                kind: RecordKind::Write(w),
                committed_at: Instant::now(),
            });
        }
        b.records = Arc::new(records);
        b
    }

    /// No database at all.
    pub fn empty(source: &str) -> PgBackup {
        PgBackup {
            source: source.to_string(),
            taken_at: Instant::now(),
            records: Arc::new(Vec::new()),
            setup: false,
        }
    }

    /// The LSN the backup ends at.
    pub fn lsn(&self) -> Lsn {
        self.records.last().map(|r| r.end).unwrap_or(Lsn::ZERO)
    }
    /// Whether the dataset held a database at all.
    pub fn has_database(&self) -> bool {
        self.setup
    }
    /// The client writes it contains, in commit order.
    pub fn writes(&self) -> Vec<Vec<u8>> {
        writes_of(&self.records)
    }
    pub fn records(&self) -> &[WalRecord] {
        &self.records
    }
}

fn b_end(records: &[WalRecord]) -> Lsn {
    records.last().map(|r| r.end).unwrap_or(Lsn::ZERO)
}

fn writes_of(records: &[WalRecord]) -> Vec<Vec<u8>> {
    records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Write(p) => Some(p.clone()),
            RecordKind::Checkpoint => None,
        })
        .collect()
}

/// Why a client write was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("no cluster state: the shard is not set up")]
    NoState,
    #[error("primary {0} is not a known zone")]
    UnknownPrimary(String),
    #[error("postgres on the primary is not running")]
    PrimaryOffline,
    #[error("primary is read-only (waiting for its sync to catch up)")]
    ReadOnly,
    /// The record may exist on the primary but was never confirmed by the
    /// sync; the client must treat it as failed.
    #[error("write at {lsn} not acknowledged: {why}")]
    NotAcknowledged { lsn: Lsn, why: String },
    #[error("coordination: {0}")]
    Coord(String),
}

/// A row of this node's `pg_stat_replication`: one connected standby.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DownstreamRow {
    pub id: String,
    pub ip: String,
    pub streaming: bool,
    pub sent: Lsn,
    pub flush: Lsn,
    pub replay: Lsn,
}

struct Inner {
    // The dataset.
    setup: bool,
    wal: Vec<WalRecord>,
    flushed: Lsn,
    replayed: Lsn,
    last_replay_at: Option<Instant>,

    // The server.
    online: bool,
    role: PgRole,
    read_only: bool,
    /// The standby named in `synchronous_standby_names`.
    sync_standby: Option<String>,
    downstreams: Vec<DownstreamRow>,
    upstream: Option<String>,
    standby_error: Option<String>,
    /// Bumped on every reconfigure, stop and crash; helper tasks of an older
    /// epoch stop.
    epoch: u64,
    helpers: Vec<AbortHandle>,
}

impl Inner {
    fn end(&self) -> Lsn {
        self.wal.last().map(|r| r.end).unwrap_or(Lsn::ZERO)
    }

    fn append(&mut self, kind: RecordKind, bytes: u64) -> Lsn {
        let end = self.end().advance(bytes);
        self.wal.push(WalRecord {
            id: NEXT_RECORD_ID.fetch_add(1, Ordering::Relaxed),
            end,
            kind,
            committed_at: Instant::now(),
        });
        end
    }

    fn stop_helpers(&mut self) {
        self.epoch += 1;
        for h in self.helpers.drain(..) {
            h.abort();
        }
    }

    fn durable(&self) -> &[WalRecord] {
        let n = self.wal.partition_point(|r| r.end <= self.flushed);
        &self.wal[..n]
    }
}

/// What `pg-status` needs from one node.
#[derive(Clone, Debug)]
pub(crate) struct NodeStatus {
    pub online: bool,
    pub role: PgRole,
    pub read_only: bool,
    pub sync_standby: Option<String>,
    pub downstreams: Vec<DownstreamRow>,
    pub end: Lsn,
    pub flushed: Lsn,
    pub replayed: Lsn,
    pub last_replay_at: Option<Instant>,
    pub upstream: Option<String>,
    pub standby_error: Option<String>,
}

/// The simulated network: every zone's postgres by peer id.
#[derive(Default)]
pub(crate) struct PgNetwork {
    nodes: Mutex<HashMap<String, Arc<PgNode>>>,
}

impl PgNetwork {
    pub fn register(&self, node: Arc<PgNode>) {
        self.nodes
            .lock()
            .unwrap()
            .insert(node.ident.id.clone(), node);
    }
    pub fn get(&self, id: &str) -> Option<Arc<PgNode>> {
        self.nodes.lock().unwrap().get(id).cloned()
    }
}

pub(crate) struct PgNode {
    pub ident: PeerIdent,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    /// The last restore, as the backup server's `GET /restore` reports it.
    restore: Mutex<Option<RestoreObject>>,
}

/// A restore as the sitter's status server answers `GET /restore`
/// (`{restore: {uuid, dataset, size, completed, done}}`, research/manatee.md):
/// `size` and `completed` in bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestoreObject {
    pub dataset: String,
    /// The peer restored from (the primary's backupUrl).
    pub from: String,
    pub size: u64,
    pub completed: u64,
    pub done: bool,
}

impl PgNode {
    /// A zone's postgres with an empty dataset.
    pub fn new(ident: PeerIdent) -> Arc<PgNode> {
        let inner = Inner {
            setup: false,
            wal: Vec::new(),
            flushed: Lsn::ZERO,
            replayed: Lsn::ZERO,
            last_replay_at: None,
            online: false,
            role: PgRole::None,
            read_only: true,
            sync_standby: None,
            downstreams: Vec::new(),
            upstream: None,
            standby_error: None,
            epoch: 0,
            helpers: Vec::new(),
        };
        Arc::new(PgNode {
            ident,
            inner: Mutex::new(inner),
            changed: watch::channel(0).0,
            restore: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Bytes the dataset holds beyond its base size (its WAL), or None when
    /// it holds no database.
    pub fn wal_bytes(&self) -> Option<u64> {
        let g = self.lock();
        (g.setup || !g.wal.is_empty()).then(|| g.end().0)
    }

    /// `postgresql.conf` exists in the data directory (§3.2 step 2).
    pub fn is_setup(&self) -> bool {
        self.lock().setup
    }

    pub fn is_online(&self) -> bool {
        self.lock().online
    }

    /// `getXLogLocation`: the current LSN on a primary, the replay LSN on a
    /// standby; `None` while postgres is down.
    pub fn xlog_location(&self) -> Option<Lsn> {
        let g = self.lock();
        match (g.online, g.role) {
            (false, _) | (true, PgRole::None) => None,
            (true, PgRole::Primary) => Some(g.end()),
            (true, _) => Some(g.replayed),
        }
    }

    pub fn status(&self) -> NodeStatus {
        let g = self.lock();
        NodeStatus {
            online: g.online,
            role: g.role,
            read_only: g.read_only,
            sync_standby: g.sync_standby.clone(),
            downstreams: g.downstreams.clone(),
            end: g.end(),
            flushed: g.flushed,
            replayed: g.replayed,
            last_replay_at: g.last_replay_at,
            upstream: g.upstream.clone(),
            standby_error: g.standby_error.clone(),
        }
    }

    /// The durable client writes, in commit order.
    pub fn writes(&self) -> Vec<Vec<u8>> {
        writes_of(self.lock().durable())
    }

    pub fn backup(&self, zone: &str) -> PgBackup {
        let g = self.lock();
        PgBackup {
            source: zone.to_string(),
            taken_at: Instant::now(),
            records: Arc::new(g.durable().to_vec()),
            setup: g.setup,
        }
    }

    /// Replace the dataset (postgres must be down).
    pub fn load_backup(&self, b: &PgBackup) {
        let mut g = self.lock();
        g.setup = b.setup;
        g.wal = b.records.as_ref().clone();
        g.flushed = g.end();
        g.replayed = g.flushed;
        g.last_replay_at = None;
        drop(g);
        self.notify();
    }

    /// `zfs destroy` of the dataset (postgres must be down).
    pub fn destroy_data(&self) {
        let mut g = self.lock();
        g.setup = false;
        g.wal.clear();
        g.flushed = Lsn::ZERO;
        g.replayed = Lsn::ZERO;
        g.last_replay_at = None;
        drop(g);
        self.notify();
    }

    fn set_standby_error(&self, e: Option<String>) {
        let mut g = self.lock();
        if g.standby_error != e {
            g.standby_error = e;
            drop(g);
            self.notify();
        }
    }

    /// Drop out of our upstream's `pg_stat_replication`.
    fn leave_upstream(&self, net: &PgNetwork, upstream: Option<String>) {
        if let Some(up) = upstream.and_then(|id| net.get(&id)) {
            let mut g = up.lock();
            g.downstreams.retain(|r| r.id != self.ident.id);
            drop(g);
            up.notify();
        }
    }

    /// Stop postgres cleanly (the sitter was disabled): received WAL is
    /// flushed, connections close.
    pub fn shutdown(&self, net: &PgNetwork) {
        let mut g = self.lock();
        g.stop_helpers();
        g.online = false;
        g.role = PgRole::None;
        g.read_only = true;
        g.sync_standby = None;
        g.downstreams.clear();
        g.flushed = g.end();
        g.replayed = g.flushed;
        let up = g.upstream.take();
        drop(g);
        self.leave_upstream(net, up);
        self.notify();
    }

    /// Power loss: whatever was received but not flushed is gone.
    pub fn crash(&self, net: &PgNetwork) {
        let mut g = self.lock();
        g.stop_helpers();
        g.online = false;
        g.role = PgRole::None;
        g.read_only = true;
        g.sync_standby = None;
        g.downstreams.clear();
        let flushed = g.flushed;
        g.wal.retain(|r| r.end <= flushed);
        g.replayed = g.replayed.min(flushed);
        let up = g.upstream.take();
        drop(g);
        self.leave_upstream(net, up);
        self.notify();
    }

    /// Apply a sitter's configuration (reconfigure, then start or stop), as
    /// manatee's postgresMgr does. Takes `pg_transition` per step.
    pub async fn apply(
        self: &Arc<Self>,
        config: &PgConfig,
        restore_from: Option<&PeerIdent>,
        net: &Arc<PgNetwork>,
        cfg: &Arc<ManateeSimConfig>,
    ) -> Result<(), String> {
        let clock = cfg.time_scale;
        clock.sleep(cfg.pg_transition).await;

        let (was_online, old_upstream) = {
            let mut g = self.lock();
            g.stop_helpers();
            (g.online, g.upstream.take())
        };
        self.leave_upstream(net, old_upstream);

        match config.role {
            PgRole::None => {
                if was_online {
                    clock.sleep(cfg.pg_transition).await;
                }
                let mut g = self.lock();
                g.online = false;
                g.role = PgRole::None;
                g.read_only = true;
                g.sync_standby = None;
                g.downstreams.clear();
                g.flushed = g.end();
                g.replayed = g.flushed;
            }
            PgRole::Primary => {
                if !was_online {
                    clock.sleep(cfg.pg_transition).await;
                }
                let mut g = self.lock();
                if !g.setup {
                    g.setup = true; // initdb
                }
                // Promotion replays everything received.
                g.flushed = g.end();
                g.online = true;
                g.role = PgRole::Primary;
                g.append(RecordKind::Checkpoint, CHECKPOINT_BYTES);
                g.flushed = g.end();
                g.replayed = g.flushed;
                g.standby_error = None;
                g.sync_standby = None;
                // §3.1: read-only until the sync has caught up; an ONWM
                // primary (no downstream) is writable at once.
                g.read_only = config.downstream.is_some();
                if let Some(ds) = &config.downstream {
                    let epoch = g.epoch;
                    let node = self.clone();
                    let id = ds.id.clone();
                    let h = tokio::spawn(async move { node.wait_for_sync(epoch, id).await });
                    g.helpers.push(h.abort_handle());
                }
            }
            PgRole::Sync | PgRole::Async => {
                if !self.is_setup() {
                    self.restore(restore_from, net, cfg).await?;
                }
                if !was_online {
                    clock.sleep(cfg.pg_transition).await;
                }
                let upstream = config
                    .upstream
                    .as_ref()
                    .ok_or("standby configuration without an upstream")?
                    .id
                    .clone();
                let mut g = self.lock();
                g.online = true;
                g.role = config.role;
                g.read_only = true;
                g.sync_standby = None;
                g.standby_error = None;
                g.upstream = Some(upstream.clone());
                let epoch = g.epoch;
                let node = self.clone();
                let net = net.clone();
                let cfg = cfg.clone();
                let h =
                    tokio::spawn(async move { node.replicate(epoch, upstream, net, cfg).await });
                g.helpers.push(h.abort_handle());
            }
        }
        self.notify();
        Ok(())
    }

    /// A full restore from the primary's backup server (§3.1).
    async fn restore(
        &self,
        from: Option<&PeerIdent>,
        net: &PgNetwork,
        cfg: &ManateeSimConfig,
    ) -> Result<(), String> {
        let from = from.ok_or("no primary to restore from")?;
        let source = net
            .get(&from.id)
            .ok_or_else(|| format!("restore: no route to {}", from.id))?;
        if !source.is_online() {
            return Err(format!("restore: backup server of {} is down", from.id));
        }
        // Progress in ten steps, as the backup server's `zfs recv` reports it.
        let size = cfg.dataset_base_bytes + source.xlog_location().map_or(0, |l| l.0);
        let set = |completed: u64, done: bool| {
            *self.restore.lock().unwrap() = Some(RestoreObject {
                dataset: "data/manatee".into(),
                from: from.id.clone(),
                size,
                completed,
                done,
            });
        };
        set(0, false);
        for i in 1..=10u64 {
            cfg.time_scale.sleep(cfg.restore / 10).await;
            set(size * i / 10, false);
        }
        let records = {
            let g = source.lock();
            if !g.online {
                return Err(format!("restore: {} went away during the restore", from.id));
            }
            g.durable().to_vec()
        };
        let mut g = self.lock();
        g.wal = records;
        g.setup = true;
        g.flushed = g.end();
        g.replayed = g.flushed;
        g.last_replay_at = None;
        drop(g);
        set(size, true);
        Ok(())
    }

    /// The last restore into this node (`GET /restore`).
    pub fn restore_status(&self) -> Option<RestoreObject> {
        self.restore.lock().unwrap().clone()
    }

    /// Primary side: become writable once the sync is streaming, has
    /// flushed all it was sent, and has reached our current LSN (§3.1).
    async fn wait_for_sync(self: Arc<Self>, epoch: u64, sync_id: String) {
        loop {
            let mut rx = self.subscribe();
            {
                let mut g = self.lock();
                if g.epoch != epoch || !g.online {
                    return;
                }
                let end = g.end();
                let caught_up = g
                    .downstreams
                    .iter()
                    .any(|r| r.id == sync_id && r.streaming && r.sent == r.flush && r.flush >= end);
                if caught_up {
                    g.sync_standby = Some(sync_id);
                    g.read_only = false;
                    drop(g);
                    self.notify();
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Standby side: stream from `upstream_id` until reconfigured.
    async fn replicate(
        self: Arc<Self>,
        epoch: u64,
        upstream_id: String,
        net: Arc<PgNetwork>,
        cfg: Arc<ManateeSimConfig>,
    ) {
        let mut streaming = false;
        loop {
            let up = net.get(&upstream_id);
            let mut up_rx = up.as_ref().map(|u| u.subscribe());
            let mut my_rx = self.subscribe();
            match self.repl_probe(epoch, up.as_deref(), &mut streaming) {
                Probe::Stopped => return,
                Probe::Work => {
                    cfg.time_scale.sleep(cfg.replication.step).await;
                    if let Some(up) = &up {
                        self.repl_step(epoch, up, cfg.replication.step_budget(), &mut streaming);
                    }
                }
                Probe::Idle => {
                    // Wake on any change upstream (new WAL, restart) or here.
                    tokio::select! {
                        _ = async {
                            match up_rx.as_mut() {
                                Some(rx) => { let _ = rx.changed().await; }
                                None => std::future::pending::<()>().await,
                            }
                        } => {}
                        _ = my_rx.changed() => {}
                    }
                }
            }
        }
    }

    /// Where our history stands against the upstream's.
    fn consistency(mine: &Inner, up: &Inner) -> Result<(), String> {
        let (m, u) = (mine.wal.len(), up.wal.len());
        let shared = m.min(u);
        if shared > 0 && mine.wal[shared - 1].id != up.wal[shared - 1].id {
            return Err("WAL diverged from the upstream's (timeline mismatch)".into());
        }
        if m > u {
            return Err("requested starting point is ahead of the upstream's WAL".into());
        }
        Ok(())
    }

    fn repl_probe(&self, epoch: u64, up: Option<&PgNode>, streaming: &mut bool) -> Probe {
        let (received, flushed) = {
            let g = self.lock();
            if g.epoch != epoch || !g.online {
                return Probe::Stopped;
            }
            (g.end(), g.flushed)
        };
        let Some(up) = up else {
            self.set_standby_error(Some("upstream unreachable".into()));
            return Probe::Idle;
        };
        let verdict = {
            let ug = up.lock();
            if !ug.online {
                Err("upstream not running".to_string())
            } else {
                let g = self.lock();
                Self::consistency(&g, &ug).map(|()| ug.end())
            }
        };
        match verdict {
            Err(e) => {
                *streaming = false;
                self.set_standby_error(Some(e));
                let mut ug = up.lock();
                let before = ug.downstreams.len();
                ug.downstreams.retain(|r| r.id != self.ident.id);
                let removed = ug.downstreams.len() != before;
                drop(ug);
                if removed {
                    up.notify();
                }
                Probe::Idle
            }
            Ok(up_end) => {
                if received < up_end || flushed < received {
                    return Probe::Work;
                }
                // Caught up: make sure the upstream lists us (it may have
                // restarted since we last talked).
                *streaming = true;
                self.set_standby_error(None);
                self.publish_row(up, epoch, *streaming);
                Probe::Idle
            }
        }
    }

    fn repl_step(&self, epoch: u64, up: &PgNode, budget: u64, streaming: &mut bool) {
        // Phase A: what the upstream can send us, if we still share history.
        let (my_len, my_last) = {
            let g = self.lock();
            (g.wal.len(), g.wal.last().map(|r| r.id))
        };
        let (batch, up_end) = {
            let ug = up.lock();
            if !ug.online || ug.wal.len() < my_len {
                return;
            }
            if my_len > 0 && Some(ug.wal[my_len - 1].id) != my_last {
                return;
            }
            let base = if my_len == 0 {
                Lsn::ZERO
            } else {
                ug.wal[my_len - 1].end
            };
            let mut batch = Vec::new();
            for r in &ug.wal[my_len..] {
                if !batch.is_empty() && r.end.bytes_since(base) > budget {
                    break;
                }
                batch.push(r.clone());
            }
            (batch, ug.end())
        };
        // Phase B: flush what the last step received, receive this step's.
        {
            let mut g = self.lock();
            if g.epoch != epoch || !g.online || g.wal.len() != my_len {
                return;
            }
            g.flushed = g.end();
            g.replayed = g.flushed;
            let n = g.wal.partition_point(|r| r.end <= g.flushed);
            if let Some(r) = g.wal[..n]
                .iter()
                .rev()
                .find(|r| matches!(r.kind, RecordKind::Write(_)))
            {
                g.last_replay_at = Some(r.committed_at);
            }
            g.wal.extend(batch);
            g.standby_error = None;
            if g.end() >= up_end {
                *streaming = true;
            }
        }
        // Phase C: tell the upstream where we are.
        self.publish_row(up, epoch, *streaming);
        self.notify();
    }

    fn publish_row(&self, up: &PgNode, epoch: u64, streaming: bool) {
        let row = {
            let g = self.lock();
            if g.epoch != epoch || !g.online {
                return;
            }
            DownstreamRow {
                id: self.ident.id.clone(),
                ip: self.ident.ip.clone(),
                streaming,
                sent: g.end(),
                flush: g.flushed,
                replay: g.replayed,
            }
        };
        let mut ug = up.lock();
        if !ug.online {
            return;
        }
        match ug.downstreams.iter_mut().find(|r| r.id == row.id) {
            Some(r) if *r == row => return,
            Some(r) => *r = row,
            None => ug.downstreams.push(row),
        }
        drop(ug);
        up.notify();
    }

    /// A client write on this node (it must be a writable primary). With a
    /// sync configured, returns only once the sync has flushed the record
    /// (synchronous replication), so an acknowledged write survives a
    /// takeover.
    pub async fn write(&self, payload: &[u8], timeout: Duration) -> Result<Lsn, WriteError> {
        let (lsn, epoch) = {
            let mut g = self.lock();
            if !g.online || g.role != PgRole::Primary {
                return Err(WriteError::PrimaryOffline);
            }
            if g.read_only {
                return Err(WriteError::ReadOnly);
            }
            let lsn = g.append(
                RecordKind::Write(payload.to_vec()),
                WRITE_HEADER_BYTES + payload.len() as u64,
            );
            g.flushed = lsn;
            g.replayed = lsn;
            (lsn, g.epoch)
        };
        self.notify();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut rx = self.subscribe();
            {
                let g = self.lock();
                if g.epoch != epoch || !g.online {
                    return Err(WriteError::NotAcknowledged {
                        lsn,
                        why: "primary stopped or was reconfigured while waiting for the sync"
                            .into(),
                    });
                }
                let confirmed = match &g.sync_standby {
                    // No synchronous standby named: an ONWM primary.
                    None => !g.read_only,
                    Some(s) => g.downstreams.iter().any(|r| &r.id == s && r.flush >= lsn),
                };
                if confirmed {
                    return Ok(lsn);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(WriteError::NotAcknowledged {
                        lsn,
                        why: "the sync did not confirm it in time".into(),
                    });
                }
            }
        }
    }
}

enum Probe {
    Stopped,
    Idle,
    Work,
}

/// The seam between a zone's sitter and its postgres: the modelled server
/// ([`ModelPg`], the default) or a real PostgreSQL
/// ([`super::realpg::RealPg`]). The sitters' state machines only ever see
/// this.
#[async_trait::async_trait]
pub(crate) trait PgServer: Send + Sync {
    /// `postgresql.conf` exists in the data directory (§3.2 step 2).
    fn is_setup(&self) -> bool;
    fn is_online(&self) -> bool;
    /// `getXLogLocation`: current LSN on a primary, replay LSN on a standby.
    fn xlog_location(&self) -> Option<Lsn>;
    /// The last known status (a real server's is refreshed by polling and
    /// by [`PgServer::refresh`]).
    fn status(&self) -> NodeStatus;
    /// Query the server now so that [`PgServer::status`] is current.
    async fn refresh(&self) {}
    /// The durable client writes, in commit order.
    fn writes(&self) -> Vec<Vec<u8>>;
    /// The same, read without blocking the runtime.
    async fn read_writes(&self) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.writes())
    }
    fn wal_bytes(&self) -> Option<u64>;
    /// A libpq connection string to this server, when it is a real one
    /// (Moray shards on real PostgreSQL connect through it).
    fn conninfo(&self) -> Option<String> {
        None
    }
    fn backup(&self, zone: &str) -> PgBackup;
    /// The last restore, as the backup server reports it (`GET /restore`);
    /// `None` where it is not modelled (real PostgreSQL: `pg_basebackup`).
    fn restore_status(&self) -> Option<RestoreObject> {
        None
    }
    /// Replace the dataset (postgres must be down).
    fn load_backup(&self, b: &PgBackup) -> Result<(), String>;
    /// `zfs destroy` of the dataset (postgres must be down).
    fn destroy_data(&self);
    /// Stop postgres cleanly.
    async fn shutdown(&self);
    /// The zone dies under postgres.
    async fn crash(&self);
    /// Apply a sitter's configuration (reconfigure, then start or stop).
    async fn apply(
        &self,
        config: &PgConfig,
        restore_from: Option<&PeerIdent>,
        cfg: &Arc<ManateeSimConfig>,
    ) -> Result<(), String>;
    /// A client write; returns once it is acknowledged.
    async fn write(&self, payload: &[u8], timeout: Duration) -> Result<Lsn, WriteError>;
}

/// The modelled server: a [`PgNode`] on its [`PgNetwork`].
pub(crate) struct ModelPg {
    pub node: Arc<PgNode>,
    pub net: Arc<PgNetwork>,
}

#[async_trait::async_trait]
impl PgServer for ModelPg {
    fn is_setup(&self) -> bool {
        self.node.is_setup()
    }
    fn is_online(&self) -> bool {
        self.node.is_online()
    }
    fn xlog_location(&self) -> Option<Lsn> {
        self.node.xlog_location()
    }
    fn status(&self) -> NodeStatus {
        self.node.status()
    }
    fn writes(&self) -> Vec<Vec<u8>> {
        self.node.writes()
    }
    fn wal_bytes(&self) -> Option<u64> {
        self.node.wal_bytes()
    }
    fn backup(&self, zone: &str) -> PgBackup {
        self.node.backup(zone)
    }
    fn restore_status(&self) -> Option<RestoreObject> {
        self.node.restore_status()
    }
    fn load_backup(&self, b: &PgBackup) -> Result<(), String> {
        self.node.load_backup(b);
        Ok(())
    }
    fn destroy_data(&self) {
        self.node.destroy_data()
    }
    async fn shutdown(&self) {
        self.node.shutdown(&self.net)
    }
    async fn crash(&self) {
        self.node.crash(&self.net)
    }
    async fn apply(
        &self,
        config: &PgConfig,
        restore_from: Option<&PeerIdent>,
        cfg: &Arc<ManateeSimConfig>,
    ) -> Result<(), String> {
        self.node.apply(config, restore_from, &self.net, cfg).await
    }
    async fn write(&self, payload: &[u8], timeout: Duration) -> Result<Lsn, WriteError> {
        self.node.write(payload, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Arc<ManateeSimConfig> {
        Arc::new(ManateeSimConfig::scaled(0.001))
    }

    fn ident(n: u8) -> PeerIdent {
        PeerIdent::with_default_ports(&format!("node{n}"), &format!("10.0.0.{n}"))
    }

    fn config(role: PgRole, up: Option<u8>, down: Option<u8>) -> PgConfig {
        PgConfig {
            role,
            upstream: up.map(ident),
            downstream: down.map(ident),
        }
    }

    async fn until(node: &PgNode, f: impl Fn(&NodeStatus) -> bool) {
        let mut rx = node.subscribe();
        while !f(&node.status()) {
            rx.changed().await.unwrap();
        }
    }

    #[tokio::test]
    async fn primary_waits_for_sync_then_acknowledges_after_sync_flush() {
        let net = Arc::new(PgNetwork::default());
        let (p, s) = (PgNode::new(ident(1)), PgNode::new(ident(2)));
        net.register(p.clone());
        net.register(s.clone());
        let cfg = cfg();
        p.apply(&config(PgRole::Primary, None, Some(2)), None, &net, &cfg)
            .await
            .unwrap();
        assert_eq!(p.xlog_location(), Some(Lsn(CHECKPOINT_BYTES)));
        assert_eq!(
            p.write(b"x", Duration::from_secs(1)).await,
            Err(WriteError::ReadOnly)
        );
        s.apply(
            &config(PgRole::Sync, Some(1), None),
            Some(&ident(1)),
            &net,
            &cfg,
        )
        .await
        .unwrap();
        until(&p, |st| !st.read_only).await;
        let lsn = p.write(b"hello", Duration::from_secs(5)).await.unwrap();
        assert!(s.status().flushed >= lsn);
        assert_eq!(s.writes(), vec![b"hello".to_vec()]);
        assert_eq!(s.xlog_location(), Some(s.status().replayed));
    }

    #[tokio::test]
    async fn diverged_standby_cannot_stream() {
        let net = Arc::new(PgNetwork::default());
        let (p, d) = (PgNode::new(ident(1)), PgNode::new(ident(2)));
        net.register(p.clone());
        net.register(d.clone());
        let cfg = cfg();
        // p alone and writable (no downstream), d an async copy of it.
        p.apply(&config(PgRole::Primary, None, None), None, &net, &cfg)
            .await
            .unwrap();
        p.write(b"common", Duration::from_secs(1)).await.unwrap();
        d.apply(
            &config(PgRole::Async, Some(1), None),
            Some(&ident(1)),
            &net,
            &cfg,
        )
        .await
        .unwrap();
        until(&d, |st| st.flushed == p.status().end).await;
        assert_eq!(d.writes(), vec![b"common".to_vec()]);
        // Both go on alone: their histories fork.
        d.shutdown(&net);
        p.write(b"only on p", Duration::from_secs(1)).await.unwrap();
        d.apply(&config(PgRole::Primary, None, None), None, &net, &cfg)
            .await
            .unwrap();
        p.apply(
            &config(PgRole::Async, Some(2), None),
            Some(&ident(2)),
            &net,
            &cfg,
        )
        .await
        .unwrap();
        until(&p, |st| st.standby_error.is_some()).await;
        assert!(p.status().standby_error.unwrap().contains("diverged"));
        assert!(d.status().downstreams.is_empty());
    }
}
