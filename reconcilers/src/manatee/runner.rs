//! [`ManateeRunner`]: the gates, actions and completion checks of a rolling
//! upgrade's steps.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;
use wire::manatee::ClusterState;

use super::plan::preflight_shard_only;
use super::{ManateeAct, ManateeAction, PeerObservation, Role, ShardObservation, freeze_reason};
use crate::clock::Clock;
use crate::error::{BlockReason, RefusalReason, Unhealthy, WaitReason, WorldError};
use crate::gates::{Approvals, approval_gate, retry_approved, window_gate};
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
    fn standby_ok(&self, p: &PeerObservation) -> bool {
        standby_ok(p, self.max_lag_seconds)
    }

    fn health(&self, obs: &ShardObservation) -> Result<(), Unhealthy> {
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
        let obs = self.world.observe(&self.shard).await?;
        // Disruptive steps start only inside the maintenance window. The
        // primary of a shard we froze is part of the sequence the freeze
        // began inside a window: it goes on rather than leaving the shard
        // frozen until the next one.
        let disruptive = match action {
            ManateeAction::Freeze { .. } => true,
            ManateeAction::Reprovision { role, image, zone } => {
                obs.peer(zone).is_none_or(|p| &p.image != image)
                    && !(*role == Role::Primary
                        && obs.freeze_reason().as_deref() == Some(freeze_reason(&op.id).as_str()))
            }
            _ => false,
        };
        if disruptive
            && let Some(gate) = window_gate(self.window.as_ref(), self.clock, &op.steps[step].name)
        {
            return Ok(gate);
        }
        // A takeover since the plan was made (plans are only made with
        // nothing deposed, rebuilds first): neither ask for approval of nor
        // freeze for a primary step that no longer fits.
        if matches!(
            action,
            ManateeAction::Approval { .. } | ManateeAction::Freeze { .. }
        ) && let Some(d) = obs.state.as_ref().and_then(|st| st.deposed.first())
        {
            return Ok(Gate::block(
                BlockReason::Replan,
                format!("a takeover deposed {} since this plan was made", d.zone_id),
            ));
        }
        match action {
            // The image was checked when planning; re-check the shard right
            // before the first disruption.
            ManateeAction::Preflight => Ok(match preflight_shard_only(&obs) {
                Ok(()) => Gate::Open,
                Err(r) => Gate::block(r.reason, r.message),
            }),
            ManateeAction::Reprovision { zone, role, image } => {
                let Some(peer) = obs.peer(zone) else {
                    return Ok(Gate::block(
                        BlockReason::PeerGone,
                        format!("zone {zone} is no longer a peer of {}", self.shard),
                    ));
                };
                if &peer.image == image {
                    return Ok(Gate::Open); // already done (e.g. resumed); act is a no-op
                }
                // The world moved (takeover, promotion): this plan no longer fits.
                let now = obs.role_of(zone);
                if now != *role {
                    return Ok(Gate::block(
                        BlockReason::Replan,
                        format!("{} is now {now:?}, planned as {role:?}", peer.alias),
                    ));
                }
                // One peer down at a time: everyone else must be healthy.
                let others_ok = obs
                    .state
                    .as_ref()
                    .is_some_and(|st| st.is_one_node_write_mode())
                    || obs
                        .peers
                        .iter()
                        .filter(|p| &p.zone != zone && obs.role_of(&p.zone) != Role::Unassigned)
                        .all(|p| p.active && p.pg_online);
                if !others_ok {
                    return Ok(Gate::wait(
                        WaitReason::PeersUp,
                        format!(
                            "waiting for every other peer of {} to be up before disrupting {}",
                            self.shard, peer.alias
                        ),
                    ));
                }
                if *role == Role::Primary
                    && let Err(e) = self.health(&obs)
                {
                    return Ok(Gate::wait(
                        WaitReason::Health,
                        format!("primary step waits for full health: {e}"),
                    ));
                }
                Ok(Gate::Open)
            }
            ManateeAction::Approval { .. } => approval_gate(self, op, step).await,
            ManateeAction::Freeze { reason } => match obs.freeze_reason() {
                Some(r)
                    if &r != reason
                        && !obs
                            .state
                            .as_ref()
                            .is_some_and(ClusterState::is_one_node_write_mode) =>
                {
                    Ok(Gate::block(
                        RefusalReason::FrozenByOther,
                        format!(
                            "shard {} was frozen by someone else meanwhile ({r})",
                            self.shard
                        ),
                    ))
                }
                _ => Ok(Gate::Open),
            },
            ManateeAction::WaitHealthy | ManateeAction::Unfreeze { .. } => Ok(Gate::Open),
            ManateeAction::Rebuild { zone } => {
                let st = obs
                    .state
                    .as_ref()
                    .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
                if !st.deposed.iter().any(|p| &p.zone_id == zone) {
                    return Ok(Gate::Open); // rebuilt already; act is a no-op
                }
                if &st.primary.zone_id == zone {
                    return Ok(Gate::block(
                        BlockReason::RebuildPrimary,
                        format!("{zone} is the primary; a primary is never rebuilt"),
                    ));
                }
                // Its data is thrown away: the primary and a caught-up sync
                // must hold everything.
                let sync_ok = st
                    .sync
                    .as_ref()
                    .and_then(|s| obs.peer(&s.zone_id))
                    .is_some_and(|s| self.standby_ok(s));
                let primary_ok = obs
                    .peer(&st.primary.zone_id)
                    .is_some_and(|p| p.active && p.pg_online);
                if !(sync_ok && primary_ok) {
                    return Ok(Gate::wait(
                        WaitReason::Health,
                        format!("rebuilding {zone} waits for a healthy primary and caught-up sync"),
                    ));
                }
                match obs.peer(zone) {
                    Some(p) if p.vm_state == "running" && p.active => Ok(Gate::Open),
                    _ => Ok(Gate::wait(
                        WaitReason::PeersUp,
                        format!("waiting for {zone} to run again"),
                    )),
                }
            }
        }
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
            ManateeAction::Preflight
            | ManateeAction::Approval { .. }
            | ManateeAction::WaitHealthy => {}
        }
        Ok(())
    }

    async fn check(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<Progress, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        Ok(match action {
            ManateeAction::Reprovision { zone, role, image } => {
                let Some(p) = obs.peer(zone) else {
                    return Ok(Progress::NotYet(format!("zone {zone} not found")));
                };
                if &p.image != image || p.vm_state != "running" {
                    Progress::NotYet(format!(
                        "{} is {} on image {}",
                        p.alias, p.vm_state, p.image
                    ))
                } else if !p.active || !p.pg_online {
                    Progress::NotYet(format!(
                        "{} is running; sitter active {}, postgres online {}",
                        p.alias, p.active, p.pg_online
                    ))
                } else {
                    // A reprovisioned sync comes back as an async: while it was away
                    // the primary promoted the first async (§3.4b), as sdcadm expects.
                    // So the test is "back, replicating, and the shard whole", not "same role".
                    let now = obs.role_of(zone);
                    let placed = matches!(now, Role::Primary | Role::Sync | Role::Async);
                    match self.health(&obs) {
                        Ok(()) if placed && (*role == Role::Primary || self.standby_ok(p)) => {
                            Progress::Done
                        }
                        Ok(()) => Progress::NotYet(format!(
                            "{} is {now:?}, lag {:?}",
                            p.alias, p.lag_seconds
                        )),
                        // A takeover deposed another peer meanwhile (its server
                        // died): this peer is back, and waiting cannot heal
                        // the shard; the next gate re-plans.
                        Err(_)
                            if placed
                                && obs.state.as_ref().is_some_and(|st| {
                                    st.deposed.iter().any(|d| &d.zone_id != zone)
                                }) =>
                        {
                            Progress::Done
                        }
                        Err(e) => Progress::NotYet(format!(
                            "{} is {now:?}; shard not whole yet: {e}",
                            p.alias
                        )),
                    }
                }
            }
            ManateeAction::Freeze { reason } => {
                if obs.freeze_reason().as_deref() == Some(reason)
                    || obs
                        .state
                        .as_ref()
                        .is_some_and(ClusterState::is_one_node_write_mode)
                {
                    Progress::Done
                } else {
                    Progress::NotYet("freeze not visible yet".into())
                }
            }
            ManateeAction::Unfreeze { reason } => {
                if obs.freeze_reason().as_deref() == Some(reason) {
                    Progress::NotYet("still frozen by us".into())
                } else {
                    Progress::Done
                }
            }
            ManateeAction::WaitHealthy => match self.health(&obs) {
                Ok(()) => Progress::Done,
                Err(e) => Progress::NotYet(e.0),
            },
            ManateeAction::Preflight | ManateeAction::Approval { .. } => Progress::Done,
            ManateeAction::Rebuild { zone } => {
                let deposed = obs
                    .state
                    .as_ref()
                    .is_some_and(|st| st.deposed.iter().any(|p| &p.zone_id == zone));
                match obs.peer(zone) {
                    _ if deposed => Progress::NotYet(format!("{zone} is still deposed")),
                    Some(p) if obs.role_of(zone) == Role::Async && self.standby_ok(p) => {
                        Progress::Done
                    }
                    Some(p) => Progress::NotYet(format!(
                        "{} is {:?}, postgres {}, lag {:?}",
                        p.alias,
                        obs.role_of(zone),
                        p.pg_online,
                        p.lag_seconds
                    )),
                    None => Progress::NotYet(format!("{zone} not found")),
                }
            }
        })
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
            ManateeAction::WaitHealthy => self.catch_up_timeout,
            ManateeAction::Rebuild { .. } => self.instance_up_timeout + self.catch_up_timeout,
            _ => Duration::from_secs(60),
        }
    }
}
