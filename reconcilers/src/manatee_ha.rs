//! HA setup: grow a one-peer manatee shard to the peers its desired state
//! names (a HeadnodeSet's `haServices.manatee`), the way
//! `sdcadm post-setup ha-manatee` does (research/manatee.md §7.3), as
//! journaled, idempotent steps:
//!
//! preflight -> create the second peer (tagged with the operation id) ->
//! clear `ONE_NODE_WRITE_MODE` from the SAPI metadata -> lift the
//! one-node-write setup freeze -> restart the primary's sitter (it writes
//! the transition to normal mode, picking the new peer as sync) -> wait for
//! synchronous replication -> create each further peer (it joins as an
//! async) -> wait until the shard is whole.
//!
//! The primary is never assumed (sdcadm assumes `manatee0`): every step that
//! touches it reads `state.primary` when it runs. A shard already in normal
//! mode only gets the missing peers, each joining as an async.
//!
//! [`plan_ha`] is pure; [`HaRunner`] executes the steps against a
//! [`ManateeHaWorld`].

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{BlockReason, Refusal, RefusalReason, Unhealthy, WaitReason, WorldError};
use crate::manatee::{
    FREEZE_PREFIX, ManateeAct, ManateeObserve, Role, ShardObservation, shard_health, standby_ok,
    window_gate,
};
use crate::operation::{Gate, Operation, PlannedStep, Progress, StepRunner};

/// The freeze reason manatee writes with a one-node-write-mode state
/// (`msm:lib/manatee-peer.js` startInitialSetup).
pub const ONWM_SETUP_FREEZE: &str = "manatee setup: one node write mode";

/// What the HA setup observes beyond what an upgrade does.
#[async_trait]
pub trait HaObserve: ManateeObserve {
    /// The zone created by operation `op_id` as `alias`, found by the tag
    /// it was created with (so a retry never creates a second one).
    async fn find_created_peer(
        &self,
        shard: &str,
        op_id: &str,
        alias: &str,
    ) -> Result<Option<String>, WorldError>;
    /// Resolve servers named by a document (CNAPI uuid or hostname).
    async fn resolve_servers(&self, names: &[String]) -> Result<Vec<DesiredServer>, WorldError>;
}

/// What the HA setup changes beyond what an upgrade does.
#[async_trait]
pub trait HaAct: HaObserve + ManateeAct {
    /// SAPI CreateInstance of a new peer of `shard` on `server` (a CNAPI
    /// uuid), tagged with `op_id` and `alias`. Returns the zone uuid.
    async fn create_peer(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        op_id: &str,
    ) -> Result<String, WorldError>;
    /// Remove `ONE_NODE_WRITE_MODE` from a zone's SAPI metadata (and have
    /// config-agent render it into sitter.json).
    async fn clear_one_node_write_mode(&self, zone: &str) -> Result<(), WorldError>;
    /// `svcadm restart manatee-sitter` in the zone.
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError>;
}

/// One typed step of an HA setup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HaAction {
    /// The shard is set up, its primary up, nothing deposed, no foreign freeze.
    Preflight,
    /// Create a peer on `server` (CNAPI uuid; `server_name` as the document names it).
    CreatePeer {
        server: String,
        server_name: String,
        alias: String,
    },
    /// Clear `ONE_NODE_WRITE_MODE` from every peer's SAPI metadata.
    LeaveOneNodeWriteMode,
    /// Lift the freeze manatee wrote with the one-node-write state (only that one).
    UnfreezeSetup,
    /// Restart the current primary's sitter so it leaves one-node-write mode.
    RestartPrimarySitter,
    /// Wait until the primary replicates synchronously to a caught-up sync.
    WaitSync,
    /// Wait until every peer is placed and caught up.
    WaitHealthy,
}

/// The outcome of planning one shard's HA setup.
#[derive(Clone, Debug, PartialEq)]
pub enum HaPlan {
    /// Every desired server has a peer.
    UpToDate,
    Grow(Operation<HaAction>),
    Refused(Refusal),
}

/// A desired peer location: the name the document uses and its CNAPI uuid
/// (`None` when CNAPI does not know it).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredServer {
    pub name: String,
    pub uuid: Option<String>,
}

/// Plan the growth of `obs` to one peer per `desired` server. Pure.
/// `alias_prefix` names new zones `<prefix><n>` (sdc: `manatee`).
pub fn plan_ha(
    obs: &ShardObservation,
    desired: &[DesiredServer],
    alias_prefix: &str,
    op_id: &str,
) -> HaPlan {
    let refuse = |r: RefusalReason, m: String| HaPlan::Refused(Refusal::new(r, m));
    if let Some(d) = desired.iter().find(|d| d.uuid.is_none()) {
        return refuse(
            RefusalReason::UnknownServer,
            format!(
                "server `{}` (haServices.manatee) is not in CNAPI; set it up first or fix the document",
                d.name
            ),
        );
    }
    let missing: Vec<&DesiredServer> = desired
        .iter()
        .filter(|d| !obs.peers.iter().any(|p| Some(&p.server) == d.uuid.as_ref()))
        .collect();
    if missing.is_empty() {
        return HaPlan::UpToDate;
    }
    if desired.len() == 2 {
        return refuse(
            RefusalReason::TwoPeers,
            format!(
                "shard {}: a two-peer shard never fails over; ask for 1 or at least 3 peers",
                obs.shard
            ),
        );
    }
    let Some(st) = &obs.state else {
        return refuse(
            RefusalReason::NoClusterState,
            format!("shard {} has no cluster state in ZooKeeper yet", obs.shard),
        );
    };
    if !st.deposed.is_empty() {
        return refuse(
            RefusalReason::DeposedPeer,
            format!(
                "shard {} has a deposed peer ({}); rebuild it with `manatee-adm rebuild` first",
                obs.shard, st.deposed[0].zone_id
            ),
        );
    }
    if let Some(r) = obs.freeze_reason()
        && r != ONWM_SETUP_FREEZE
        && !r.starts_with(FREEZE_PREFIX)
    {
        return refuse(
            RefusalReason::FrozenByOther,
            format!("shard {} is frozen by someone else ({r})", obs.shard),
        );
    }
    // Zone names: the next free `<prefix><n>`.
    let mut used: Vec<String> = obs.peers.iter().map(|p| p.alias.clone()).collect();
    let mut next_alias = || {
        let a = (0..)
            .map(|n| format!("{alias_prefix}{n}"))
            .find(|a| !used.contains(a))
            .expect("some alias is free");
        used.push(a.clone());
        a
    };
    let step = |name: String, description: String, touches: Vec<String>, action| PlannedStep {
        name,
        description,
        touches,
        irreversible: false,
        action,
    };
    let create = |d: &DesiredServer, alias: String, joins: &str| {
        step(
            format!("create-{alias}"),
            format!(
                "create {alias} on {} (SAPI CreateInstance tagged {op_id}); it joins {joins}",
                d.name
            ),
            vec![alias.clone()],
            HaAction::CreatePeer {
                server: d.uuid.clone().expect("checked"),
                server_name: d.name.clone(),
                alias,
            },
        )
    };
    let mut steps = vec![step(
        "preflight".into(),
        format!(
            "check shard {}: primary up, nothing deposed, no foreign freeze",
            obs.shard
        ),
        vec![],
        HaAction::Preflight,
    )];
    let mut rest = missing.into_iter();
    if st.is_one_node_write_mode() {
        // A peer that joined the one-node shard already (a resumed or earlier
        // run) becomes the sync; otherwise create one.
        let has_second = obs.peers.len() >= 2;
        if !has_second {
            let d = rest.next().expect("missing is not empty");
            steps.push(create(d, next_alias(), "unassigned (one-node-write mode)"));
        }
        steps.push(step(
            "leave-one-node-write-mode".into(),
            "clear ONE_NODE_WRITE_MODE from the SAPI metadata of the primary (found in the state when the step runs)".into(),
            vec![],
            HaAction::LeaveOneNodeWriteMode,
        ));
        steps.push(step(
            "unfreeze-setup".into(),
            format!("lift the one-node-write setup freeze (\"{ONWM_SETUP_FREEZE}\") and no other"),
            vec![obs.shard.clone()],
            HaAction::UnfreezeSetup,
        ));
        steps.push(step(
            "restart-primary-sitter".into(),
            "restart the primary's sitter: it leaves one-node-write mode and picks the new peer as sync (writes pause until it has caught up)".into(),
            vec![obs.shard.clone()],
            HaAction::RestartPrimarySitter,
        ));
        steps.push(step(
            "wait-sync".into(),
            "wait until the primary replicates synchronously to a caught-up sync".into(),
            vec![],
            HaAction::WaitSync,
        ));
    } else if st.sync.is_none() {
        return refuse(
            RefusalReason::NoSync,
            format!(
                "shard {} is in normal mode without a sync; repair it first",
                obs.shard
            ),
        );
    }
    for d in rest {
        steps.push(create(d, next_alias(), "as an async"));
    }
    steps.push(step(
        "wait-healthy".into(),
        format!(
            "wait until every peer of {} is placed and caught up",
            obs.shard
        ),
        vec![],
        HaAction::WaitHealthy,
    ));
    HaPlan::Grow(Operation::new(op_id, "manatee-ha-setup", &obs.shard, steps))
}

/// Runs [`HaAction`]s for one shard.
pub struct HaRunner<'a, W: HaAct> {
    pub world: &'a W,
    pub shard: String,
    pub max_lag_seconds: f64,
    pub instance_up_timeout: Duration,
    pub catch_up_timeout: Duration,
    pub window: Option<crds::manatee::MaintenanceWindow>,
    pub clock: &'a dyn Clock,
}

impl<W: HaAct> HaRunner<'_, W> {
    /// Every placed peer is up.
    fn placed_up(&self, obs: &ShardObservation) -> Result<(), Unhealthy> {
        for p in &obs.peers {
            let role = obs.role_of(&p.zone);
            if role != Role::Unassigned && !(p.active && p.pg_online) {
                return Err(Unhealthy(format!(
                    "{} ({role:?}) is not up (active {}, postgres {})",
                    p.alias, p.active, p.pg_online
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<W: HaAct> StepRunner<HaAction> for HaRunner<'_, W> {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &HaAction,
    ) -> Result<Gate, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        let st = match &obs.state {
            Some(st) => st,
            None => {
                return Ok(Gate::block(
                    RefusalReason::NoClusterState,
                    format!("shard {} has no cluster state", self.shard),
                ));
            }
        };
        if !st.deposed.is_empty() {
            return Ok(Gate::block(
                RefusalReason::DeposedPeer,
                format!(
                    "shard {} has a deposed peer ({}); rebuild it first",
                    self.shard, st.deposed[0].zone_id
                ),
            ));
        }
        let name = op.steps.get(step).map_or("", |s| s.name.as_str());
        match action {
            HaAction::Preflight => Ok(match self.placed_up(&obs) {
                Ok(()) => Gate::Open,
                Err(e) => Gate::wait(
                    WaitReason::PeersUp,
                    format!("waiting for the shard to be up: {e}"),
                ),
            }),
            HaAction::CreatePeer { .. } => Ok(match self.placed_up(&obs) {
                Ok(()) => Gate::Open,
                Err(e) => Gate::wait(
                    WaitReason::PeersUp,
                    format!("a new peer waits for the shard to be up: {e}"),
                ),
            }),
            HaAction::LeaveOneNodeWriteMode | HaAction::UnfreezeSetup => {
                if let Some(r) = obs.freeze_reason()
                    && r != ONWM_SETUP_FREEZE
                {
                    return Ok(Gate::block(
                        RefusalReason::FrozenByOther,
                        format!(
                            "shard {} is frozen by someone else ({r}); tritonctl lifts only the one-node-write setup freeze",
                            self.shard
                        ),
                    ));
                }
                Ok(Gate::Open)
            }
            HaAction::RestartPrimarySitter => {
                if !st.is_one_node_write_mode() {
                    return Ok(Gate::Open); // done already; act is a no-op
                }
                if let Some(g) = window_gate(self.window.as_ref(), self.clock, name) {
                    return Ok(g);
                }
                if let Some(r) = obs.freeze_reason() {
                    return Ok(Gate::Block {
                        reason: if r == ONWM_SETUP_FREEZE {
                            BlockReason::StillFrozen
                        } else {
                            BlockReason::Refused(RefusalReason::FrozenByOther)
                        },
                        message: format!(
                            "shard {} is frozen ({r}); the primary cannot leave one-node-write mode while it is",
                            self.shard
                        ),
                    });
                }
                let primary = obs.peer(&st.primary.zone_id);
                if primary.is_none_or(|p| p.one_node_write_mode) {
                    return Ok(Gate::wait(
                        WaitReason::Settling,
                        format!(
                            "the primary {} still has ONE_NODE_WRITE_MODE in SAPI",
                            st.primary.zone_id
                        ),
                    ));
                }
                // The new sync must be there to be picked, or the primary
                // would restart into a shard it cannot leave ONWM in.
                let other = obs
                    .peers
                    .iter()
                    .any(|p| p.zone != st.primary.zone_id && p.active && p.vm_state == "running");
                if !other {
                    return Ok(Gate::wait(
                        WaitReason::Settling,
                        "no other active peer yet to become the sync",
                    ));
                }
                Ok(Gate::Open)
            }
            HaAction::WaitSync | HaAction::WaitHealthy => Ok(Gate::Open),
        }
    }

    async fn act(
        &self,
        op: &OperationStatus,
        _step: usize,
        action: &HaAction,
    ) -> Result<(), WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        match action {
            HaAction::CreatePeer { server, alias, .. } => {
                let exists = self
                    .world
                    .find_created_peer(&self.shard, &op.id, alias)
                    .await?
                    .is_some();
                if !exists {
                    self.world
                        .create_peer(&self.shard, server, alias, &op.id)
                        .await?;
                }
            }
            HaAction::LeaveOneNodeWriteMode => {
                for p in obs.peers.iter().filter(|p| p.one_node_write_mode) {
                    self.world.clear_one_node_write_mode(&p.zone).await?;
                }
            }
            HaAction::UnfreezeSetup => {
                if obs.freeze_reason().as_deref() == Some(ONWM_SETUP_FREEZE) {
                    self.world
                        .unfreeze_own(&self.shard, ONWM_SETUP_FREEZE)
                        .await?;
                }
            }
            HaAction::RestartPrimarySitter => {
                // Never assume the primary: it is whoever the state names now.
                if let Some(st) = &obs.state
                    && st.is_one_node_write_mode()
                {
                    self.world.restart_sitter(&st.primary.zone_id).await?;
                }
            }
            HaAction::Preflight | HaAction::WaitSync | HaAction::WaitHealthy => {}
        }
        Ok(())
    }

    async fn check(
        &self,
        op: &OperationStatus,
        _step: usize,
        action: &HaAction,
    ) -> Result<Progress, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        let onwm = obs
            .state
            .as_ref()
            .is_some_and(|s| s.is_one_node_write_mode());
        Ok(match action {
            HaAction::Preflight => Progress::Done,
            HaAction::CreatePeer { alias, .. } => {
                let Some(zone) = self
                    .world
                    .find_created_peer(&self.shard, &op.id, alias)
                    .await?
                else {
                    return Ok(Progress::NotYet(format!("{alias} not created yet")));
                };
                match obs.peer(&zone) {
                    None => Progress::NotYet(format!("{alias} ({zone}) has no VM yet")),
                    Some(p) if p.vm_state != "running" || !p.active => Progress::NotYet(format!(
                        "{alias} is {}; sitter active {}",
                        p.vm_state, p.active
                    )),
                    // In one-node-write mode a new peer stays unassigned
                    // until the primary leaves it; otherwise it must be
                    // placed and replicating.
                    Some(_) if onwm => Progress::Done,
                    Some(p) if obs.role_of(&zone) == Role::Unassigned => {
                        Progress::NotYet(format!("{} is up but not placed yet", p.alias))
                    }
                    Some(p) if !standby_ok(p, self.max_lag_seconds) => Progress::NotYet(format!(
                        "{} is {:?}, postgres {}, lag {:?}",
                        p.alias,
                        obs.role_of(&zone),
                        p.pg_online,
                        p.lag_seconds
                    )),
                    Some(_) => Progress::Done,
                }
            }
            HaAction::LeaveOneNodeWriteMode => {
                match obs.peers.iter().find(|p| p.one_node_write_mode) {
                    Some(p) => {
                        Progress::NotYet(format!("{} still has ONE_NODE_WRITE_MODE", p.alias))
                    }
                    None => Progress::Done,
                }
            }
            HaAction::UnfreezeSetup => {
                if obs.freeze_reason().as_deref() == Some(ONWM_SETUP_FREEZE) {
                    Progress::NotYet("the setup freeze is still there".into())
                } else {
                    Progress::Done
                }
            }
            HaAction::RestartPrimarySitter => {
                if onwm {
                    Progress::NotYet("the state is still in one-node-write mode".into())
                } else {
                    Progress::Done
                }
            }
            HaAction::WaitSync => {
                let st = obs
                    .state
                    .as_ref()
                    .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
                match st.sync.as_ref().and_then(|s| obs.peer(&s.zone_id)) {
                    None => Progress::NotYet("no sync yet".into()),
                    Some(s) if !standby_ok(s, self.max_lag_seconds) => Progress::NotYet(format!(
                        "sync {} not caught up (postgres {}, lag {:?})",
                        s.alias, s.pg_online, s.lag_seconds
                    )),
                    Some(_) => match obs.peer(&st.primary.zone_id) {
                        Some(p) if p.active && p.pg_online => Progress::Done,
                        _ => Progress::NotYet("primary not up".into()),
                    },
                }
            }
            HaAction::WaitHealthy => match shard_health(&obs, self.max_lag_seconds) {
                Err(e) => Progress::NotYet(e.0),
                Ok(()) => match obs
                    .peers
                    .iter()
                    .find(|p| obs.role_of(&p.zone) == Role::Unassigned)
                {
                    Some(p) => Progress::NotYet(format!("{} is not placed yet", p.alias)),
                    None => Progress::Done,
                },
            },
        })
    }

    /// As for upgrades: a step that timed out runs again only once an
    /// operator approves that attempt.
    async fn may_retry(
        &self,
        op: &OperationStatus,
        step: usize,
        _action: &HaAction,
    ) -> Result<bool, WorldError> {
        let s = &op.steps[step];
        self.world
            .approved(&op.id, &crate::operation::retry_key(&s.name, s.attempts))
            .await
    }

    fn timeout(&self, action: &HaAction) -> Duration {
        match action {
            HaAction::CreatePeer { .. } => self.instance_up_timeout + self.catch_up_timeout,
            HaAction::RestartPrimarySitter | HaAction::WaitSync | HaAction::WaitHealthy => {
                self.catch_up_timeout
            }
            _ => Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manatee::{ImageInfo, PeerObservation};
    use std::sync::Mutex;
    use wire::manatee::{ClusterState, PeerIdent};

    fn peer(zone: &str, server: &str, alias: &str) -> PeerObservation {
        PeerObservation {
            zone: zone.into(),
            alias: alias.into(),
            server: server.into(),
            image: "img".into(),
            vm_state: "running".into(),
            active: true,
            pg_online: true,
            lag_seconds: Some(0.0),
            one_node_write_mode: false,
        }
    }

    fn ident(zone: &str, ip: &str) -> PeerIdent {
        PeerIdent::with_default_ports(zone, ip)
    }

    /// coal: one peer `z0` on headnode h0, one-node-write mode.
    fn coal() -> ShardObservation {
        let mut p = peer("z0", "h0", "manatee0");
        p.one_node_write_mode = true;
        ShardObservation {
            shard: "sdc".into(),
            state: Some(ClusterState::initial_onwm(
                ident("z0", "10.0.0.1"),
                "2026-01-01T00:00:00.000Z",
            )),
            peers: vec![p],
        }
    }

    fn desired(n: usize) -> Vec<DesiredServer> {
        (0..n)
            .map(|i| DesiredServer {
                name: format!("headnode{i}"),
                uuid: Some(format!("h{i}")),
            })
            .collect()
    }

    fn names(op: &Operation<HaAction>) -> Vec<&str> {
        op.status.steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn plan_follows_ha_manatee_second_peer_sync_then_third() {
        let HaPlan::Grow(op) = plan_ha(&coal(), &desired(3), "manatee", "op1") else {
            panic!()
        };
        assert_eq!(
            names(&op),
            [
                "preflight",
                "create-manatee1",
                "leave-one-node-write-mode",
                "unfreeze-setup",
                "restart-primary-sitter",
                "wait-sync",
                "create-manatee2",
                "wait-healthy"
            ]
        );
        // The second peer goes where the document says, the third on the next.
        assert!(matches!(&op.actions[1], HaAction::CreatePeer { server, .. } if server == "h1"));
        assert!(matches!(&op.actions[6], HaAction::CreatePeer { server, .. } if server == "h2"));
    }

    #[test]
    fn nothing_to_do_refusals_and_resumed_runs() {
        assert_eq!(
            plan_ha(&coal(), &desired(1), "manatee", "op"),
            HaPlan::UpToDate
        );
        assert!(
            matches!(plan_ha(&coal(), &desired(2), "manatee", "op"), HaPlan::Refused(r) if r.reason == RefusalReason::TwoPeers)
        );
        let mut unknown = desired(3);
        unknown[2].uuid = None;
        assert!(
            matches!(plan_ha(&coal(), &unknown, "manatee", "op"), HaPlan::Refused(r) if r.reason == RefusalReason::UnknownServer)
        );
        let mut frozen = coal();
        let st = frozen.state.as_mut().unwrap();
        st.unfreeze().unwrap();
        st.freeze("sdcadm maintenance").unwrap();
        assert!(
            matches!(plan_ha(&frozen, &desired(3), "manatee", "op"), HaPlan::Refused(r) if r.reason == RefusalReason::FrozenByOther)
        );
        // A second peer that joined already (an earlier run) is not created again.
        let mut two = coal();
        let mut p1 = peer("z1", "h1", "manatee1");
        p1.pg_online = false;
        two.peers.push(p1);
        let HaPlan::Grow(op) = plan_ha(&two, &desired(3), "manatee", "op") else {
            panic!()
        };
        assert_eq!(
            names(&op),
            [
                "preflight",
                "leave-one-node-write-mode",
                "unfreeze-setup",
                "restart-primary-sitter",
                "wait-sync",
                "create-manatee2",
                "wait-healthy"
            ]
        );
        // A normal-mode shard missing its third peer only gets that one, as an async.
        let normal = ShardObservation {
            shard: "sdc".into(),
            state: Some(ClusterState::initial(
                ident("z0", "10.0.0.1"),
                ident("z1", "10.0.0.2"),
                vec![],
            )),
            peers: vec![peer("z0", "h0", "manatee0"), peer("z1", "h1", "manatee1")],
        };
        let HaPlan::Grow(op) = plan_ha(&normal, &desired(3), "manatee", "op") else {
            panic!()
        };
        assert_eq!(names(&op), ["preflight", "create-manatee2", "wait-healthy"]);
    }

    #[derive(Default)]
    struct Fake {
        obs: Mutex<Option<ShardObservation>>,
        created: Mutex<Vec<(String, String)>>, // (alias, zone)
        calls: Mutex<Vec<String>>,
        /// `op/step` keys an operator approved.
        approvals: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ManateeObserve for Fake {
        async fn observe(&self, _: &str) -> Result<ShardObservation, WorldError> {
            Ok(self.obs.lock().unwrap().clone().unwrap())
        }
        async fn image(&self, _: &str) -> Result<Option<ImageInfo>, WorldError> {
            Ok(None)
        }
        async fn approved(&self, op: &str, step: &str) -> Result<bool, WorldError> {
            Ok(self
                .approvals
                .lock()
                .unwrap()
                .contains(&format!("{op}/{step}")))
        }
    }

    #[async_trait]
    impl ManateeAct for Fake {
        async fn reprovision(&self, _: &str, _: &str, _: &str) -> Result<(), WorldError> {
            unreachable!()
        }
        async fn freeze(&self, _: &str, _: &str) -> Result<(), WorldError> {
            unreachable!()
        }
        async fn unfreeze_own(&self, _: &str, reason: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("unfreeze {reason}"));
            Ok(())
        }
    }

    #[async_trait]
    impl HaObserve for Fake {
        async fn find_created_peer(
            &self,
            _: &str,
            _: &str,
            alias: &str,
        ) -> Result<Option<String>, WorldError> {
            Ok(self
                .created
                .lock()
                .unwrap()
                .iter()
                .find(|(a, _)| a == alias)
                .map(|(_, z)| z.clone()))
        }
        async fn resolve_servers(&self, _: &[String]) -> Result<Vec<DesiredServer>, WorldError> {
            Ok(desired(3))
        }
    }

    #[async_trait]
    impl HaAct for Fake {
        async fn create_peer(
            &self,
            _: &str,
            server: &str,
            alias: &str,
            _: &str,
        ) -> Result<String, WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("create {alias} on {server}"));
            let zone = format!("new-{alias}");
            self.created
                .lock()
                .unwrap()
                .push((alias.into(), zone.clone()));
            Ok(zone)
        }
        async fn clear_one_node_write_mode(&self, zone: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("clear-onwm {zone}"));
            Ok(())
        }
        async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
            self.calls.lock().unwrap().push(format!("restart {zone}"));
            Ok(())
        }
    }

    fn runner(w: &Fake) -> HaRunner<'_, Fake> {
        HaRunner {
            world: w,
            shard: "sdc".into(),
            max_lag_seconds: 5.0,
            instance_up_timeout: Duration::from_secs(1),
            catch_up_timeout: Duration::from_secs(1),
            window: None,
            clock: &crate::clock::SystemClock,
        }
    }

    fn op() -> OperationStatus {
        OperationStatus {
            id: "op1".into(),
            steps: vec![crds::status::StepStatus {
                name: "s".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn fake(obs: ShardObservation) -> Fake {
        let f = Fake::default();
        *f.obs.lock().unwrap() = Some(obs);
        f
    }

    #[tokio::test]
    async fn a_timed_out_step_runs_again_only_after_its_attempt_is_approved() {
        let w = fake(coal());
        let mut status = op();
        status.steps[0].state = crds::StepState::Failed;
        status.steps[0].attempts = 1;
        let create = HaAction::CreatePeer {
            server: "h1".into(),
            server_name: "headnode1".into(),
            alias: "manatee1".into(),
        };
        assert!(!runner(&w).may_retry(&status, 0, &create).await.unwrap());
        w.approvals.lock().unwrap().push("op1/s-retry-1".into());
        assert!(runner(&w).may_retry(&status, 0, &create).await.unwrap());
        // That approval answers attempt 1 only.
        status.steps[0].attempts = 2;
        assert!(!runner(&w).may_retry(&status, 0, &create).await.unwrap());
    }

    #[tokio::test]
    async fn a_retried_create_finds_its_peer_instead_of_creating_another() {
        let w = fake(coal());
        let create = HaAction::CreatePeer {
            server: "h1".into(),
            server_name: "headnode1".into(),
            alias: "manatee1".into(),
        };
        runner(&w).act(&op(), 0, &create).await.unwrap();
        // A controller killed after the create and before the journal save
        // runs the step again.
        runner(&w).act(&op(), 0, &create).await.unwrap();
        assert_eq!(*w.calls.lock().unwrap(), ["create manatee1 on h1"]);
    }

    #[tokio::test]
    async fn the_restart_goes_to_whoever_is_primary_now() {
        // The state names z1 as primary (not manatee0, which sdcadm would assume).
        let mut obs = coal();
        let mut p1 = peer("z1", "h1", "manatee1");
        p1.one_node_write_mode = false;
        obs.peers[0].one_node_write_mode = false;
        obs.peers.push(p1);
        obs.state = Some(ClusterState::initial_onwm(
            ident("z1", "10.0.0.2"),
            "2026-01-01T00:00:00.000Z",
        ));
        obs.state.as_mut().unwrap().unfreeze().unwrap();
        let w = fake(obs);
        assert_eq!(
            runner(&w)
                .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
                .await
                .unwrap(),
            Gate::Open
        );
        runner(&w)
            .act(&op(), 0, &HaAction::RestartPrimarySitter)
            .await
            .unwrap();
        assert_eq!(*w.calls.lock().unwrap(), ["restart z1"]);
    }

    #[tokio::test]
    async fn the_restart_waits_for_metadata_a_new_peer_and_no_foreign_freeze() {
        let mut obs = coal();
        obs.peers.push(peer("z1", "h1", "manatee1"));
        let w = fake(obs);
        // Still ONWM in SAPI (and still frozen by the setup freeze): not yet.
        let g = runner(&w)
            .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
            .await
            .unwrap();
        assert!(matches!(g, Gate::Block { .. } | Gate::Wait { .. }), "{g:?}");
        {
            let mut o = w.obs.lock().unwrap();
            let o = o.as_mut().unwrap();
            o.peers[0].one_node_write_mode = false;
            o.state.as_mut().unwrap().unfreeze().unwrap();
            o.peers[1].active = false;
        }
        assert!(matches!(
            runner(&w)
                .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
                .await
                .unwrap(),
            Gate::Wait { message: m, .. } if m.contains("no other active peer")
        ));
        w.obs.lock().unwrap().as_mut().unwrap().peers[1].active = true;
        assert_eq!(
            runner(&w)
                .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
                .await
                .unwrap(),
            Gate::Open
        );
        // Someone else's freeze is never lifted, and blocks the restart.
        w.obs
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .state
            .as_mut()
            .unwrap()
            .freeze("operator: hands off")
            .unwrap();
        for a in [HaAction::UnfreezeSetup, HaAction::RestartPrimarySitter] {
            assert!(matches!(
                runner(&w).precondition(&op(), 0, &a).await.unwrap(),
                Gate::Block { reason, .. } if reason == BlockReason::Refused(RefusalReason::FrozenByOther)
            ));
        }
        runner(&w)
            .act(&op(), 0, &HaAction::UnfreezeSetup)
            .await
            .unwrap();
        assert!(w.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_third_peer_counts_only_once_placed_and_replicating() {
        // Normal mode, P + S; manatee2 created and up but not yet an async.
        let mut obs = ShardObservation {
            shard: "sdc".into(),
            state: Some(ClusterState::initial(
                ident("z0", "10.0.0.1"),
                ident("z1", "10.0.0.2"),
                vec![],
            )),
            peers: vec![
                peer("z0", "h0", "manatee0"),
                peer("z1", "h1", "manatee1"),
                peer("new-manatee2", "h2", "manatee2"),
            ],
        };
        obs.peers[2].pg_online = false;
        let w = fake(obs);
        w.created
            .lock()
            .unwrap()
            .push(("manatee2".into(), "new-manatee2".into()));
        let create = HaAction::CreatePeer {
            server: "h2".into(),
            server_name: "headnode2".into(),
            alias: "manatee2".into(),
        };
        assert!(matches!(
            runner(&w).check(&op(), 0, &create).await.unwrap(),
            Progress::NotYet(_)
        ));
        {
            let mut o = w.obs.lock().unwrap();
            let o = o.as_mut().unwrap();
            o.state
                .as_mut()
                .unwrap()
                .asyncs
                .push(ident("new-manatee2", "10.0.0.3"));
            o.peers[2].pg_online = true;
        }
        assert_eq!(
            runner(&w).check(&op(), 0, &create).await.unwrap(),
            Progress::Done
        );
    }
}
