//! [`HaRunner`]: the HA setup's steps against an [`HaAct`]; the gates are
//! in `gate.rs`, the completion checks in `check.rs`.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;

use super::{HaAct, HaAction, ONWM_SETUP_FREEZE};
use crate::clock::Clock;
use crate::error::{Unhealthy, WorldError};
use crate::gates::{Approvals, retry_approved};
use crate::manatee::{Role, ShardObservation};
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
    pub(super) fn placed_up(&self, obs: &ShardObservation) -> Result<(), Unhealthy> {
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
        self.gate(op, step, action).await
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
        self.check_step(op, action).await
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
