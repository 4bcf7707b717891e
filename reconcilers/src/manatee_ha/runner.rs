//! [`HaRunner`]: the gates, actions and completion checks of the HA setup's
//! steps.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;

use super::{HaAct, HaAction, ONWM_SETUP_FREEZE};
use crate::clock::Clock;
use crate::error::{BlockReason, RefusalReason, Unhealthy, WaitReason, WorldError};
use crate::gates::{Approvals, retry_approved, window_gate};
use crate::manatee::{Role, ShardObservation, shard_health, standby_ok};
use crate::operation::{Gate, Progress, StepRunner};

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
impl<W: HaAct> Approvals for HaRunner<'_, W> {
    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError> {
        self.world.approved(op_id, key).await
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

    /// As for upgrades, a resumed step passes its gate again unless the
    /// world shows its call went out: a created peer is found by its tag,
    /// the primary's restart shows as the state leaving one-node-write
    /// mode. So a restart interrupted before it was sent never skips the
    /// maintenance window or the freeze gate.
    async fn dispatched(
        &self,
        op: &OperationStatus,
        _step: usize,
        action: &HaAction,
    ) -> Result<bool, WorldError> {
        match action {
            HaAction::CreatePeer { alias, .. } => Ok(self
                .world
                .find_created_peer(&self.shard, &op.id, alias)
                .await?
                .is_some()),
            HaAction::RestartPrimarySitter => {
                let obs = self.world.observe(&self.shard).await?;
                Ok(obs
                    .state
                    .as_ref()
                    .is_some_and(|st| !st.is_one_node_write_mode()))
            }
            _ => Ok(true),
        }
    }

    /// As for upgrades: a step that timed out runs again only once an
    /// operator approves that attempt.
    async fn may_retry(
        &self,
        op: &OperationStatus,
        step: usize,
        _action: &HaAction,
    ) -> Result<bool, WorldError> {
        retry_approved(self, op, step).await
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
