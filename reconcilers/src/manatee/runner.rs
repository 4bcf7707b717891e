//! [`ManateeRunner`]: a rolling upgrade's steps against a [`ManateeAct`];
//! the gates are in `gate.rs`, the completion checks in `check.rs`.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;

use super::{ManateeAct, ManateeAction, PeerObservation, ShardObservation};
use crate::clock::Clock;
use crate::error::{Unhealthy, WorldError};
use crate::gates::{Approvals, retry_approved};
use crate::operation::{Gate, Progress, StepRunner};

/// Runs [`ManateeAction`]s for one shard.
pub struct ManateeRunner<'a, W: ManateeAct> {
    pub world: &'a W,
    pub shard: String,
    pub max_lag_seconds: f64,
    pub instance_up_timeout: Duration,
    pub catch_up_timeout: Duration,
    /// `spec.rollout.maintenanceWindow`: disruptive steps start only inside it.
    pub window: Option<crds::manatee::MaintenanceWindow>,
    pub clock: &'a dyn Clock,
}

/// Healthy standby: active, postgres online and within the lag threshold.
pub fn standby_ok(p: &PeerObservation, max_lag_seconds: f64) -> bool {
    p.active && p.pg_online && p.lag_seconds.is_none_or(|l| l <= max_lag_seconds)
}

/// Whether the shard is whole: primary up, no deposed peer, and (unless in
/// one-node-write mode) a sync and every async caught up. The error says
/// what is missing.
pub fn shard_health(obs: &ShardObservation, max_lag_seconds: f64) -> Result<(), Unhealthy> {
    let st = obs
        .state
        .as_ref()
        .ok_or(Unhealthy::new("no cluster state"))?;
    if !st.deposed.is_empty() {
        return Err(Unhealthy(format!("deposed peer {}", st.deposed[0].zone_id)));
    }
    let primary = obs
        .peer(&st.primary.zone_id)
        .ok_or(Unhealthy::new("primary zone unknown"))?;
    if !(primary.active && primary.pg_online) {
        return Err(Unhealthy(format!(
            "primary {} not up (active {}, pg {})",
            primary.alias, primary.active, primary.pg_online
        )));
    }
    if st.is_one_node_write_mode() {
        return Ok(());
    }
    let sync = st
        .sync
        .as_ref()
        .and_then(|s| obs.peer(&s.zone_id))
        .ok_or(Unhealthy::new("no sync"))?;
    if !standby_ok(sync, max_lag_seconds) {
        return Err(Unhealthy(format!(
            "sync {} not caught up (active {}, pg {}, lag {:?})",
            sync.alias, sync.active, sync.pg_online, sync.lag_seconds
        )));
    }
    for a in &st.asyncs {
        if let Some(p) = obs.peer(&a.zone_id)
            && !standby_ok(p, max_lag_seconds)
        {
            return Err(Unhealthy(format!(
                "async {} not caught up (lag {:?})",
                p.alias, p.lag_seconds
            )));
        }
    }
    Ok(())
}

impl<W: ManateeAct> ManateeRunner<'_, W> {
    pub(super) fn standby_ok(&self, p: &PeerObservation) -> bool {
        standby_ok(p, self.max_lag_seconds)
    }

    pub(super) fn health(&self, obs: &ShardObservation) -> Result<(), Unhealthy> {
        shard_health(obs, self.max_lag_seconds)
    }
}

#[async_trait]
impl<W: ManateeAct> Approvals for ManateeRunner<'_, W> {
    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError> {
        self.world.approved(op_id, key).await
    }
}

#[async_trait]
impl<W: ManateeAct> StepRunner<ManateeAction> for ManateeRunner<'_, W> {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &ManateeAction,
    ) -> Result<Gate, WorldError> {
        self.gate(op, step, action).await
    }

    async fn act(
        &self,
        op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<(), WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        match action {
            ManateeAction::Reprovision { zone, image, .. } => {
                let peer = obs
                    .peer(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} vanished")))?;
                if &peer.image != image {
                    self.world.reprovision(zone, image, &op.id).await?;
                }
            }
            ManateeAction::Freeze { reason } => {
                if obs.freeze_reason().as_deref() != Some(reason) {
                    self.world.freeze(&self.shard, reason).await?;
                }
            }
            ManateeAction::Unfreeze { reason } => {
                if obs.freeze_reason().as_deref() == Some(reason) {
                    self.world.unfreeze_own(&self.shard, reason).await?;
                }
            }
            ManateeAction::Rebuild { zone } => {
                if obs
                    .state
                    .as_ref()
                    .is_some_and(|st| st.deposed.iter().any(|p| &p.zone_id == zone))
                {
                    self.world.rebuild(zone).await?;
                }
            }
            ManateeAction::Promote { primary, .. } => self.promote_act(&obs, primary).await?,
            ManateeAction::Preflight
            | ManateeAction::Approval { .. }
            | ManateeAction::WaitHealthy
            | ManateeAction::WaitPromoted { .. } => {}
        }
        Ok(())
    }

    async fn check(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<Progress, WorldError> {
        self.check_step(action).await
    }

    /// A resumed reprovision goes through its gate again unless the zone is
    /// already on the image or a reprovision job for it is under way: a
    /// primary step interrupted before its call went out must not skip the
    /// "sync caught up" gate, and one whose job runs must not be sent twice.
    async fn dispatched(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<bool, WorldError> {
        match action {
            ManateeAction::Reprovision { zone, image, .. } => {
                let obs = self.world.observe(&self.shard).await?;
                if obs.peer(zone).is_some_and(|p| &p.image == image) {
                    return Ok(true);
                }
                self.world.reprovision_in_flight(zone).await
            }
            // A promote goes out again (through its gate) only when none is
            // in the state and the takeover has not happened.
            ManateeAction::Promote { primary, .. } => {
                let obs = self.world.observe(&self.shard).await?;
                Ok(obs
                    .state
                    .as_ref()
                    .is_none_or(|st| &st.primary.zone_id != primary || st.promote.is_some()))
            }
            _ => Ok(true),
        }
    }

    /// A step that timed out stops the operation; only an operator's
    /// `tritonctl approve` (recorded per attempt) lets it run again.
    async fn may_retry(
        &self,
        op: &OperationStatus,
        step: usize,
        _action: &ManateeAction,
    ) -> Result<bool, WorldError> {
        retry_approved(self, op, step).await
    }

    fn timeout(&self, action: &ManateeAction) -> Duration {
        match action {
            ManateeAction::Reprovision { .. } => self.instance_up_timeout + self.catch_up_timeout,
            ManateeAction::WaitHealthy | ManateeAction::WaitPromoted { .. } => {
                self.catch_up_timeout
            }
            ManateeAction::Promote { .. } => self.promote_timeout(),
            ManateeAction::Rebuild { .. } => self.instance_up_timeout + self.catch_up_timeout,
            _ => Duration::from_secs(60),
        }
    }
}
