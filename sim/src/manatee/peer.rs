//! The peer state machine: manatee-state-machine's rules (research
//! `manatee.md` §3.2–§3.9) as a synchronous reactor.
//!
//! Events go in (ZooKeeper init / active-peer change / cluster-state change,
//! PG init, completions of writes and PG reconfigurations, backoff timers);
//! actions come out (write the state, apply a PG configuration, back off,
//! die). The sitter runtime performs the actions and feeds completions back,
//! so every decision here is made on one thread, in event order, exactly as
//! the JavaScript peer does on its event loop.

use std::collections::HashSet;

use serde::Serialize;
use time::OffsetDateTime;
use wire::manatee::{ClusterState, Lsn, PeerIdent, PromoteRole, iso8601};

/// The peer's own view of its role (`GET :5433/state` `role`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerRole {
    #[default]
    Unknown,
    Primary,
    Sync,
    Async,
    Unassigned,
    Deposed,
}

/// The PG role a configuration asks for (§3.1 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PgRole {
    Primary,
    Sync,
    Async,
    None,
}

/// What the sitter asks postgres to be: `{role, upstream, downstream}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PgConfig {
    pub role: PgRole,
    pub upstream: Option<PeerIdent>,
    pub downstream: Option<PeerIdent>,
}

impl PgConfig {
    pub(crate) fn none() -> PgConfig {
        PgConfig {
            role: PgRole::None,
            upstream: None,
            downstream: None,
        }
    }
}

/// Which of the peer's writes a `Put` is; decides what a completion does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteKind {
    InitialSetup,
    Takeover,
    UpdateAsyncs,
    PromoteReorder,
    DropPromote,
}

/// One read of the state znode.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub raw: Vec<u8>,
    pub version: i32,
    pub ctime_ms: i64,
}

/// Version of the state node the peer last knew: (ctime, data version).
/// A ctime of 0 means "we created it and never read its ctime".
type Known = (i64, i32);

/// Whether `a` is a later version of the state node than `b`: a later
/// incarnation (the node was deleted and created again), or a higher data
/// version of the same one. An unknown ctime (0) compares by version only.
fn newer(a: Known, b: Known) -> bool {
    if a.0 == 0 || b.0 == 0 || a.0 == b.0 {
        a.1 > b.1
    } else {
        a.0 > b.0
    }
}

#[derive(Debug)]
pub(crate) enum Action {
    /// One multi-op: set-at-version (or create) plus `history/<gen>-`.
    Put {
        state: ClusterState,
        expected: Option<i32>,
    },
    /// Reconfigure postgres; standbys without data restore from `restore_from`
    /// (always the primary, §3.1).
    PgApply {
        config: PgConfig,
        restore_from: Option<PeerIdent>,
    },
    /// Wait the (scaled) 1 s backoff, then `on_backoff_elapsed`.
    BackoffThenEval,
    /// Wait the backoff, then `on_pg_retry`.
    BackoffThenPgApply,
    Fatal(String),
}

pub(crate) type XlogSource = Box<dyn Fn() -> Option<Lsn> + Send + Sync>;

pub(crate) struct Peer {
    me: PeerIdent,
    singleton: bool,
    /// Current WAL position when postgres is up (primary: current LSN,
    /// standby: replay LSN), as `getXLogLocation`.
    xlog: XlogSource,

    role: PeerRole,
    /// Last generation processed (`mp_gen`, -1 initially).
    last_gen: Option<u64>,
    updating: bool,
    updating_state: Option<(ClusterState, WriteKind)>,

    zkstate: Option<ClusterState>,
    known: Option<Known>,
    zkpeers: Option<Vec<PeerIdent>>,

    pg_online: Option<bool>,
    pg_setup: bool,
    pg_applied: Option<PgConfig>,
    pg_transitioning: Option<PgConfig>,
    pg_retry_pending: bool,
    pg_upstream: Option<PeerIdent>,

    actions: Vec<Action>,
    dead: bool,
}

/// A copy of the peer's state for status endpoints and tests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerDebug {
    pub id: String,
    pub role: PeerRole,
    pub generation: Option<u64>,
    pub pending: Vec<&'static str>,
    pub zkstate: Option<ClusterState>,
    pub zkpeers: Option<Vec<String>>,
    pub pg_online: Option<bool>,
    pub pg_config: Option<PgConfig>,
}

impl Peer {
    pub(crate) fn new(me: PeerIdent, singleton: bool, xlog: XlogSource) -> Peer {
        Peer {
            me,
            singleton,
            xlog,
            role: PeerRole::Unknown,
            last_gen: None,
            updating: false,
            updating_state: None,
            zkstate: None,
            known: None,
            zkpeers: None,
            pg_online: None,
            pg_setup: false,
            pg_applied: None,
            pg_transitioning: None,
            pg_retry_pending: false,
            pg_upstream: None,
            actions: Vec::new(),
            dead: false,
        }
    }

    pub(crate) fn debug(&self) -> PeerDebug {
        let mut pending = Vec::new();
        if self.pg_transitioning.is_some() {
            pending.push("postgres transition");
        }
        if self.pg_retry_pending {
            pending.push("pg retry");
        }
        if self.updating {
            pending.push("cluster write or wait");
        }
        PeerDebug {
            id: self.me.id.clone(),
            role: self.role,
            generation: self.last_gen,
            pending,
            zkstate: self.zkstate.clone(),
            zkpeers: self
                .zkpeers
                .as_ref()
                .map(|ps| ps.iter().map(|p| p.id.clone()).collect()),
            pg_online: self.pg_online,
            pg_config: self.pg_applied.clone(),
        }
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn fatal(&mut self, why: String) {
        tracing::error!(peer = %self.me.id, "fatal: {why}");
        self.dead = true;
        self.actions.push(Action::Fatal(why));
    }

    /// A deposed peer drops every incoming event until its sitter restarts
    /// (§3.1 table, msm handleEvent). Completions are not events.
    fn drops_events(&self) -> bool {
        self.role == PeerRole::Deposed || self.dead
    }

    /// Parse and validate a state read; validation failures are fatal (§2.3).
    fn accept_snapshot(&mut self, snap: &Snapshot) -> Option<ClusterState> {
        // Our own write may already have told us about this version or a
        // newer one; going back to it would undo a takeover we just made.
        if let Some(k) = self.known
            && !newer((snap.ctime_ms, snap.version), k)
        {
            return None;
        }
        match ClusterState::parse_valid(&snap.raw) {
            Ok(st) => {
                self.known = Some((snap.ctime_ms, snap.version));
                Some(st)
            }
            Err(e) => {
                self.fatal(format!("invalid cluster state: {e}"));
                None
            }
        }
    }

    // ---- events

    pub(crate) fn on_zk_init(
        &mut self,
        state: Option<Snapshot>,
        active: Vec<PeerIdent>,
    ) -> Vec<Action> {
        if self.drops_events() {
            return Vec::new();
        }
        if let Some(snap) = state {
            match self.accept_snapshot(&snap) {
                Some(st) => self.zkstate = Some(st),
                None if self.dead => return self.take_actions(),
                None => {}
            }
        }
        self.zkpeers = Some(active);
        if self.pg_online.is_some() {
            self.eval();
        }
        self.take_actions()
    }

    pub(crate) fn on_active_change(&mut self, active: Vec<PeerIdent>) -> Vec<Action> {
        if self.drops_events() {
            return Vec::new();
        }
        self.zkpeers = Some(active);
        if self.pg_online.is_some() {
            self.eval();
        }
        self.take_actions()
    }

    pub(crate) fn on_state_change(&mut self, snap: Option<Snapshot>) -> Vec<Action> {
        if self.drops_events() {
            return Vec::new();
        }
        let Some(snap) = snap else {
            // Deleted by hand (a documented rollback step). Manatee has no
            // rule for it; keep acting on what we last saw.
            if self.zkstate.is_some() {
                tracing::warn!(peer = %self.me.id, "cluster state node deleted; ignoring");
            }
            return Vec::new();
        };
        let Some(st) = self.accept_snapshot(&snap) else {
            return self.take_actions();
        };
        self.zkstate = Some(st);
        if self.pg_online.is_some() && self.zkpeers.is_some() {
            self.eval();
        }
        self.take_actions()
    }

    pub(crate) fn on_pg_init(&mut self, online: bool, setup: bool) -> Vec<Action> {
        if self.drops_events() {
            return Vec::new();
        }
        self.pg_online = Some(online);
        self.pg_setup = setup;
        if self.zkpeers.is_some() {
            self.eval();
        }
        self.take_actions()
    }

    /// Completion of a `Put`: `Ok((new version, ctime or 0))`.
    pub(crate) fn on_put_done(&mut self, result: Result<(i32, i64), String>) -> Vec<Action> {
        let Some((state, kind)) = self.updating_state.take() else {
            return Vec::new();
        };
        match result {
            Ok((version, ctime)) => {
                self.updating = false;
                // The watch may already have delivered a later write (an
                // operator's freeze or promote right after ours): keep that
                // one rather than going back to what we wrote.
                let ours = (ctime, version);
                let seen_newer = self.known.is_some_and(|k| newer(k, ours));
                if !seen_newer {
                    self.known = Some(ours);
                    self.zkstate = Some(state.clone());
                }
                if kind == WriteKind::Takeover {
                    self.last_gen = Some(state.generation);
                    tracing::info!(peer = %self.me.id, "declared new generation");
                    // assumePrimary re-evaluates to catch what we missed.
                    self.assume_primary();
                } else {
                    self.eval();
                }
            }
            Err(e) => {
                // §3.2 step 7: every failed write backs off 1 s and re-evaluates;
                // `updating` stays set so events are recorded, not acted on.
                tracing::warn!(peer = %self.me.id, ?kind, "state write failed, backing off: {e}");
                self.actions.push(Action::BackoffThenEval);
            }
        }
        self.take_actions()
    }

    pub(crate) fn on_backoff_elapsed(&mut self) -> Vec<Action> {
        if self.dead {
            return Vec::new();
        }
        self.updating = false;
        self.updating_state = None;
        self.eval();
        self.take_actions()
    }

    pub(crate) fn on_pg_applied(&mut self, result: Result<(), String>) -> Vec<Action> {
        let Some(config) = self.pg_transitioning.take() else {
            return Vec::new();
        };
        match result {
            Ok(()) => {
                self.pg_retry_pending = false;
                self.pg_online = Some(config.role != PgRole::None);
                self.pg_applied = Some(config);
                // Apply again in case the wanted configuration moved meanwhile.
                self.pg_apply_config();
            }
            Err(e) => {
                // §3.2 step 7: PG reconfiguration errors retry every 1 s, forever.
                tracing::warn!(peer = %self.me.id, "applying pg config failed: {e}");
                self.pg_retry_pending = true;
                self.actions.push(Action::BackoffThenPgApply);
            }
        }
        self.take_actions()
    }

    pub(crate) fn on_pg_retry(&mut self) -> Vec<Action> {
        self.pg_retry_pending = false;
        self.pg_apply_config();
        self.take_actions()
    }

    // ---- helpers

    fn present(&self, other: &PeerIdent) -> bool {
        other.id == self.me.id
            || self
                .zkpeers
                .as_ref()
                .is_some_and(|ps| ps.iter().any(|p| p.id == other.id))
    }

    fn which_async(&self, st: &ClusterState) -> Option<usize> {
        st.asyncs.iter().position(|p| p.id == self.me.id)
    }

    fn pg_config(&self) -> PgConfig {
        match self.role {
            PeerRole::Primary => PgConfig {
                role: PgRole::Primary,
                upstream: None,
                downstream: self.zkstate.as_ref().and_then(|s| s.sync.clone()),
            },
            PeerRole::Sync | PeerRole::Async => PgConfig {
                role: if self.role == PeerRole::Sync {
                    PgRole::Sync
                } else {
                    PgRole::Async
                },
                upstream: self.pg_upstream.clone(),
                downstream: None,
            },
            PeerRole::Unassigned | PeerRole::Deposed | PeerRole::Unknown => PgConfig::none(),
        }
    }

    fn pg_apply_config(&mut self) {
        if self.pg_transitioning.is_some() || self.pg_online.is_none() {
            return;
        }
        let config = self.pg_config();
        if self.pg_applied.as_ref() == Some(&config) {
            return;
        }
        // Standbys restore from the primary, never their upstream (§3.1).
        let restore_from = match config.role {
            PgRole::Sync | PgRole::Async => self.zkstate.as_ref().map(|s| s.primary.clone()),
            _ => None,
        };
        self.pg_transitioning = Some(config.clone());
        self.actions.push(Action::PgApply {
            config,
            restore_from,
        });
    }

    fn assume_primary(&mut self) {
        tracing::info!(peer = %self.me.id, "assuming role primary");
        self.role = PeerRole::Primary;
        self.pg_upstream = None;
        self.eval();
        self.pg_apply_config();
    }

    fn assume_sync(&mut self) {
        tracing::info!(peer = %self.me.id, "assuming role sync");
        self.role = PeerRole::Sync;
        self.pg_upstream = self.zkstate.as_ref().map(|s| s.primary.clone());
        self.eval();
        self.pg_apply_config();
    }

    fn assume_async(&mut self, i: usize) {
        tracing::info!(peer = %self.me.id, index = i, "assuming role async");
        self.role = PeerRole::Async;
        self.pg_upstream = self
            .zkstate
            .as_ref()
            .and_then(|s| s.async_upstream(i).cloned());
        self.pg_apply_config();
    }

    fn assume_unassigned(&mut self) {
        tracing::info!(peer = %self.me.id, "assuming role unassigned");
        self.role = PeerRole::Unassigned;
        self.pg_upstream = None;
        self.pg_apply_config();
    }

    fn assume_deposed(&mut self) {
        tracing::warn!(peer = %self.me.id, "assuming role deposed");
        self.role = PeerRole::Deposed;
        self.pg_upstream = None;
        self.pg_apply_config();
    }

    // ---- evaluation (§3.2)

    fn eval(&mut self) {
        if self.dead {
            return;
        }
        // Step 1: defer while our own write is in flight (or backing off).
        if self.updating {
            return;
        }
        let Some(peers) = self.zkpeers.as_ref() else {
            return;
        };
        let Some(st) = self.zkstate.clone() else {
            // Step 2 / §3.3: only a peer that never had a database, that is
            // first in the active list, with company (or singleton), sets up.
            let first = peers.first().is_some_and(|p| p.id == self.me.id);
            if !self.pg_setup && first && (self.singleton || peers.len() > 1) {
                self.start_initial_setup();
            } else if self.role != PeerRole::Unassigned {
                self.assume_unassigned();
            }
            return;
        };

        // Step 3.
        if self.singleton && !st.is_one_node_write_mode() {
            self.fatal(
                "configured for one-node-write mode, but found cluster in normal mode".into(),
            );
            return;
        }

        // Step 4 (§3.9).
        if self.handle_promote(&st) {
            return;
        }

        // Step 5: a new generation resets roles; a primary that lost its
        // place is deposed for good.
        if self.last_gen != Some(st.generation) {
            self.last_gen = Some(st.generation);
            if self.role == PeerRole::Primary {
                if st.primary.id != self.me.id {
                    self.assume_deposed();
                }
            } else {
                self.eval_init(&st);
            }
            return;
        }

        // Step 6.
        match self.role {
            PeerRole::Unassigned => {
                if let Some(i) = self.which_async(&st) {
                    self.assume_async(i);
                }
            }
            PeerRole::Async => match self.which_async(&st) {
                None => self.assume_unassigned(),
                Some(i) => {
                    let up = st.async_upstream(i).map(|p| p.id.as_str());
                    if up != self.pg_upstream.as_ref().map(|p| p.id.as_str()) {
                        self.assume_async(i);
                    }
                }
            },
            PeerRole::Sync => {
                // §3.4a: the primary is gone.
                if !self.present(&st.primary) {
                    let min = st.init_wal_lsn().ok();
                    self.start_takeover("primary gone", min);
                }
            }
            PeerRole::Primary => self.eval_primary(&st),
            PeerRole::Unknown | PeerRole::Deposed => {}
        }
    }

    fn eval_init(&mut self, st: &ClusterState) {
        // §3.2 step 5 order: primary, ONWM → unassigned, sync, deposed, async.
        if st.primary.id == self.me.id {
            self.assume_primary();
        } else if st.is_one_node_write_mode() {
            self.assume_unassigned();
        } else if st.sync.as_ref().is_some_and(|s| s.id == self.me.id) {
            self.assume_sync();
        } else if st.deposed.iter().any(|p| p.id == self.me.id) {
            self.assume_deposed();
        } else if let Some(i) = self.which_async(st) {
            self.assume_async(i);
        } else {
            self.assume_unassigned();
        }
    }

    fn eval_primary(&mut self, st: &ClusterState) {
        // §3.8: a normal-configured primary of an ONWM cluster converts it.
        if !self.singleton && st.is_one_node_write_mode() {
            self.start_transition_to_normal();
            return;
        }
        // ONWM primary: ignores new peers, never assigns replicas (§3.8).
        if self.singleton {
            return;
        }
        let Some(sync) = st.sync.clone() else {
            return;
        };
        // §3.4b; while that takeover is pending, async maintenance waits (§3.5).
        if !self.present(&sync) && self.start_takeover("sync gone", None) {
            return;
        }

        // §3.5: drop asyncs that left, append newcomers (not deposed) in
        // active-list order. Same generation.
        let mut placed: HashSet<String> = [st.primary.id.clone(), sync.id.clone()].into();
        let mut asyncs = Vec::new();
        let mut changes = 0;
        for a in &st.asyncs {
            if self.present(a) {
                placed.insert(a.id.clone());
                asyncs.push(a.clone());
            } else {
                changes += 1;
            }
        }
        placed.extend(st.deposed.iter().map(|p| p.id.clone()));
        for p in self.zkpeers.iter().flatten() {
            if placed.insert(p.id.clone()) {
                asyncs.push(p.clone());
                changes += 1;
            }
        }
        if changes == 0 {
            return;
        }
        let new = st.with_asyncs(asyncs);
        self.start_write(new, WriteKind::UpdateAsyncs);
    }

    /// §3.9. Returns true when it started a write (evaluation stops there).
    fn handle_promote(&mut self, st: &ClusterState) -> bool {
        let Some(parsed) = st.promote_request() else {
            return false;
        };
        // Only the primary or sync of a generation we have already taken our
        // role in may act; otherwise the generation change comes first.
        if self.last_gen != Some(st.generation) {
            return false;
        }
        let i_am_primary = self.role == PeerRole::Primary && st.primary.id == self.me.id;
        let i_am_sync =
            self.role == PeerRole::Sync && st.sync.as_ref().is_some_and(|s| s.id == self.me.id);
        if !i_am_primary && !i_am_sync {
            return false;
        }
        let now = OffsetDateTime::now_utc();
        let checked = parsed.and_then(|req| req.check(st, now).map(|()| req));
        let req = match checked {
            Ok(req) => req,
            Err(why) => {
                // Only the primary deletes an invalid request (§2.4).
                if !i_am_primary {
                    return false;
                }
                tracing::info!(peer = %self.me.id, "removing invalid promote request: {why}");
                let mut new = st.clone();
                new.promote = None;
                self.start_write(new, WriteKind::DropPromote);
                return true;
            }
        };
        match req.role {
            // The sync takes over exactly as when the primary is gone,
            // initWal check and active async included; the primary is deposed.
            PromoteRole::Sync if i_am_sync && req.id == self.me.id => {
                let min = st.init_wal_lsn().ok();
                self.start_takeover("operator-requested promotion of the sync", min)
            }
            PromoteRole::Async if i_am_primary => {
                let k = req.async_index.unwrap_or(-1) as usize;
                if k == 0 {
                    // async[0] becomes sync in a new generation; the old sync
                    // leaves the chain and rejoins at its tail as a newcomer.
                    let first = st.asyncs[0].clone();
                    if !self.present(&first) {
                        return false;
                    }
                    let rest: Vec<PeerIdent> = st.asyncs[1..]
                        .iter()
                        .filter(|a| self.present(a))
                        .cloned()
                        .collect();
                    self.start_takeover_with_peer(
                        "operator-requested promotion of async[0]",
                        None,
                        first,
                        rest,
                        st.deposed.clone(),
                    );
                    true
                } else {
                    // async[k] moves up one place: the peer it overtakes
                    // leaves the chain and rejoins at the tail. Same
                    // generation, works while frozen (§3.7).
                    let mut asyncs = st.asyncs.clone();
                    asyncs.remove(k - 1);
                    let new = st.with_asyncs(asyncs);
                    self.start_write(new, WriteKind::PromoteReorder);
                    true
                }
            }
            _ => false,
        }
    }

    /// §3.4a/b: pick the first active async as the new sync.
    fn start_takeover(&mut self, reason: &str, min_wal: Option<Lsn>) -> bool {
        let Some(st) = self.zkstate.clone() else {
            return false;
        };
        let Some(i) = st.asyncs.iter().position(|a| self.present(a)) else {
            tracing::warn!(peer = %self.me.id, "would take over ({reason}), but no async peers present");
            return false;
        };
        let sync = st.asyncs[i].clone();
        let asyncs: Vec<PeerIdent> = st
            .asyncs
            .iter()
            .enumerate()
            .filter(|(j, a)| *j != i && self.present(a))
            .map(|(_, a)| a.clone())
            .collect();
        let mut deposed = st.deposed.clone();
        if st.primary.id != self.me.id {
            deposed.push(st.primary.clone());
        }
        self.start_takeover_with_peer(reason, min_wal, sync, asyncs, deposed);
        true
    }

    /// §3.8: any other active peer becomes sync (none has data to lose).
    fn start_transition_to_normal(&mut self) {
        let others: Vec<PeerIdent> = self
            .zkpeers
            .iter()
            .flatten()
            .filter(|p| p.id != self.me.id)
            .cloned()
            .collect();
        let Some((sync, asyncs)) = others.split_first() else {
            tracing::info!(peer = %self.me.id, "would leave one-node-write mode, but no other peers present");
            return;
        };
        self.start_takeover_with_peer(
            "transitioning to normal mode",
            None,
            sync.clone(),
            asyncs.to_vec(),
            Vec::new(),
        );
    }

    /// §3.4: declare generation+1 with ourselves as primary. Checks freeze,
    /// postgres and WAL position first; any failure backs off 1 s with
    /// `updating` held.
    fn start_takeover_with_peer(
        &mut self,
        reason: &str,
        min_wal: Option<Lsn>,
        sync: PeerIdent,
        asyncs: Vec<PeerIdent>,
        deposed: Vec<PeerIdent>,
    ) {
        let Some(st) = self.zkstate.clone() else {
            return;
        };
        // The same checks, in the same order, as msm's takeover pipeline.
        let wal = if self.pg_online == Some(true) && self.pg_transitioning.is_none() {
            (self.xlog)()
        } else {
            None
        };
        let blocked = if st.is_frozen() {
            Some("cluster is frozen".to_string())
        } else {
            match (wal, min_wal) {
                (None, _) => Some("postgres is offline".to_string()),
                (Some(wal), Some(min)) if wal < min => Some(format!(
                    "not caught up to primary yet (want {min}, found {wal})"
                )),
                _ => None,
            }
        };
        if let Some(why) = blocked {
            tracing::info!(peer = %self.me.id, "would take over ({reason}), but {why}; backing off");
            // Held during the backoff so events are recorded, not acted on.
            self.updating = true;
            self.actions.push(Action::BackoffThenEval);
            return;
        }
        let wal = wal.expect("checked above");
        let new = st.next_generation(self.me.clone(), sync, asyncs, deposed, wal);
        if let Err(e) = new.validate() {
            self.fatal(format!("built an invalid state: {e}"));
            return;
        }
        tracing::info!(peer = %self.me.id, generation = new.generation, "declaring new generation ({reason})");
        self.start_write(new, WriteKind::Takeover);
    }

    fn start_initial_setup(&mut self) {
        let Some(peers) = self.zkpeers.clone() else {
            return;
        };
        let state = if self.singleton {
            ClusterState::initial_onwm(self.me.clone(), &iso8601(OffsetDateTime::now_utc()))
        } else {
            ClusterState::initial(self.me.clone(), peers[1].clone(), peers[2..].to_vec())
        };
        tracing::info!(peer = %self.me.id, singleton = self.singleton, "creating initial cluster state");
        self.known = None;
        self.start_write(state, WriteKind::InitialSetup);
    }

    fn start_write(&mut self, state: ClusterState, kind: WriteKind) {
        debug_assert!(!self.updating && self.updating_state.is_none());
        let expected = match kind {
            WriteKind::InitialSetup => None,
            _ => self.known.map(|(_, v)| v),
        };
        self.updating = true;
        self.updating_state = Some((state.clone(), kind));
        self.actions.push(Action::Put { state, expected });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn ident(n: u8) -> PeerIdent {
        PeerIdent::with_default_ports(&format!("node{n}"), &format!("10.0.0.{n}"))
    }

    fn snap(st: &ClusterState, version: i32) -> Snapshot {
        Snapshot {
            raw: st.to_json(),
            version,
            ctime_ms: 1,
        }
    }

    fn peer(n: u8, singleton: bool, lsn: Arc<Mutex<Option<Lsn>>>) -> Peer {
        Peer::new(ident(n), singleton, Box::new(move || *lsn.lock().unwrap()))
    }

    fn puts(actions: &[Action]) -> Vec<&ClusterState> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Put { state, .. } => Some(state),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_active_peer_sets_up_with_company() {
        let lsn = Arc::new(Mutex::new(None));
        let mut p = peer(1, false, lsn);
        assert!(p.on_pg_init(false, false).is_empty());
        let a = p.on_zk_init(None, vec![ident(1)]);
        // Alone: unassigned, PG configured off.
        assert!(puts(&a).is_empty());
        assert_eq!(p.role, PeerRole::Unassigned);
        let a = p.on_active_change(vec![ident(1), ident(2), ident(3)]);
        let st = puts(&a)[0].clone();
        assert_eq!(st.generation, 1);
        assert_eq!(st.primary.id, ident(1).id);
        assert_eq!(st.sync.as_ref().unwrap().id, ident(2).id);
        assert_eq!(st.asyncs, vec![ident(3)]);
        // Events while writing are deferred.
        assert!(puts(&p.on_active_change(vec![ident(1), ident(2)])).is_empty());
        p.on_put_done(Ok((0, 0)));
        assert_eq!(p.role, PeerRole::Primary);
        // The "off" configuration of the unassigned phase finishes first;
        // then the primary configuration is applied.
        let a = p.on_pg_applied(Ok(()));
        assert!(a.iter().any(
            |a| matches!(a, Action::PgApply { config, .. } if config.role == PgRole::Primary)
        ));
    }

    #[test]
    fn existing_database_never_sets_up() {
        let mut p = peer(1, false, Arc::new(Mutex::new(None)));
        p.on_pg_init(false, true);
        let a = p.on_zk_init(None, vec![ident(1), ident(2)]);
        assert!(puts(&a).is_empty());
        assert_eq!(p.role, PeerRole::Unassigned);
    }

    #[test]
    fn sync_takes_over_only_when_caught_up_and_unfrozen() {
        let lsn = Arc::new(Mutex::new(Some(Lsn(5))));
        let mut p = peer(2, false, lsn.clone());
        let mut st = ClusterState::initial(ident(1), ident(2), vec![ident(3)]);
        st.init_wal = Lsn(10).to_string();
        p.on_pg_init(false, true);
        p.on_zk_init(Some(snap(&st, 3)), vec![ident(1), ident(2), ident(3)]);
        assert_eq!(p.role, PeerRole::Sync);
        p.on_pg_applied(Ok(()));
        // Primary gone, replay LSN 5 < initWal 10: back off.
        let a = p.on_active_change(vec![ident(2), ident(3)]);
        assert!(puts(&a).is_empty());
        assert!(a.iter().any(|a| matches!(a, Action::BackoffThenEval)));
        *lsn.lock().unwrap() = Some(Lsn(10));
        let a = p.on_backoff_elapsed();
        let new = puts(&a)[0].clone();
        assert_eq!(new.generation, 2);
        assert_eq!(new.primary.id, ident(2).id);
        assert_eq!(new.sync.as_ref().unwrap().id, ident(3).id);
        assert_eq!(new.deposed, vec![ident(1)]);
        assert_eq!(new.init_wal_lsn().unwrap(), Lsn(10));
        let a = p.on_put_done(Ok((4, 1)));
        assert_eq!(p.role, PeerRole::Primary);
        assert!(!a.is_empty());
        // A stale read of version 3 is ignored, never deposes us.
        p.on_state_change(Some(snap(&st, 3)));
        assert_eq!(p.role, PeerRole::Primary);
    }

    #[test]
    fn onwm_config_with_normal_state_is_fatal() {
        let mut p = peer(1, true, Arc::new(Mutex::new(None)));
        p.on_pg_init(false, true);
        let st = ClusterState::initial(ident(1), ident(2), vec![]);
        let a = p.on_zk_init(Some(snap(&st, 0)), vec![ident(1)]);
        assert!(a.iter().any(|a| matches!(a, Action::Fatal(_))));
    }

    #[test]
    fn invalid_state_is_fatal() {
        let mut p = peer(1, false, Arc::new(Mutex::new(None)));
        p.on_pg_init(false, true);
        let a = p.on_zk_init(
            Some(Snapshot {
                raw: br#"{"generation":1,"primary":{"id":"x"}}"#.to_vec(),
                version: 0,
                ctime_ms: 1,
            }),
            vec![ident(1)],
        );
        assert!(a.iter().any(|a| matches!(a, Action::Fatal(_))));
    }
}
