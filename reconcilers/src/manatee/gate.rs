//! The rolling upgrade's gates: the maintenance window, a takeover since
//! planning, one peer down at a time, the primary last and only with a
//! whole shard, our own freeze, never rebuilding a primary.

use crds::status::OperationStatus;
use wire::manatee::ClusterState;

use super::plan::preflight_shard_only;
use super::{ManateeAct, ManateeAction, ManateeRunner, Role, ShardObservation, freeze_reason};
use crate::error::{BlockReason, RefusalReason, WaitReason, WorldError};
use crate::gates::{approval_gate, window_gate};
use crate::operation::Gate;

type Gated = Result<Gate, WorldError>;

impl<W: ManateeAct> ManateeRunner<'_, W> {
    /// One step's gate: the window and takeover rules first, then the
    /// step's own.
    pub(super) async fn gate(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &ManateeAction,
    ) -> Gated {
        let obs = self.world.observe(&self.shard).await?;
        if disruptive(op, action, &obs)
            && let Some(gate) = window_gate(self.window.as_ref(), self.clock, &op.steps[step].name)
        {
            return Ok(gate);
        }
        if let Some(gate) = takeover_since_plan(action, &obs) {
            return Ok(gate);
        }
        match action {
            // The image was checked when planning; re-check the shard right
            // before the first disruption.
            ManateeAction::Preflight => Ok(match preflight_shard_only(&obs) {
                Ok(()) => Gate::Open,
                Err(r) => Gate::block(r.reason, r.message),
            }),
            ManateeAction::Reprovision { zone, role, image } => {
                Ok(self.reprovision_gate(&obs, zone, *role, image))
            }
            ManateeAction::Approval { .. } => approval_gate(self, op, step).await,
            ManateeAction::Freeze { reason } => Ok(self.freeze_gate(&obs, reason)),
            ManateeAction::WaitHealthy | ManateeAction::Unfreeze { .. } => Ok(Gate::Open),
            ManateeAction::Rebuild { zone } => self.rebuild_gate(&obs, zone),
            ManateeAction::Promote { primary, image } => {
                Ok(self.promote_gate(&obs, primary, image))
            }
            ManateeAction::WaitPromoted { .. } => Ok(Gate::Open),
        }
    }

    /// One peer down at a time, and the primary only with a whole shard.
    fn reprovision_gate(
        &self,
        obs: &ShardObservation,
        zone: &str,
        role: Role,
        image: &str,
    ) -> Gate {
        let Some(peer) = obs.peer(zone) else {
            return Gate::block(
                BlockReason::PeerGone,
                format!("zone {zone} is no longer a peer of {}", self.shard),
            );
        };
        if peer.image == image {
            return Gate::Open; // already done (e.g. resumed); act is a no-op
        }
        // The world moved (takeover, promotion): this plan no longer fits.
        let now = obs.role_of(zone);
        if now != role {
            return Gate::block(
                BlockReason::Replan,
                format!("{} is now {now:?}, planned as {role:?}", peer.alias),
            );
        }
        // One peer down at a time: everyone else must be healthy.
        let others_ok = obs
            .state
            .as_ref()
            .is_some_and(|st| st.is_one_node_write_mode())
            || obs
                .peers
                .iter()
                .filter(|p| p.zone != zone && obs.role_of(&p.zone) != Role::Unassigned)
                .all(|p| p.active && p.pg_online);
        if !others_ok {
            return Gate::wait(
                WaitReason::PeersUp,
                format!(
                    "waiting for every other peer of {} to be up before disrupting {}",
                    self.shard, peer.alias
                ),
            );
        }
        if role == Role::Primary
            && let Err(e) = self.health(obs)
        {
            return Gate::wait(
                WaitReason::Health,
                format!("primary step waits for full health: {e}"),
            );
        }
        Gate::Open
    }

    /// Our freeze goes on unless someone else froze the shard meanwhile.
    fn freeze_gate(&self, obs: &ShardObservation, reason: &str) -> Gate {
        match obs.freeze_reason() {
            Some(r)
                if r != reason
                    && !obs
                        .state
                        .as_ref()
                        .is_some_and(ClusterState::is_one_node_write_mode) =>
            {
                Gate::block(
                    RefusalReason::FrozenByOther,
                    format!(
                        "shard {} was frozen by someone else meanwhile ({r})",
                        self.shard
                    ),
                )
            }
            _ => Gate::Open,
        }
    }

    /// A deposed peer is rebuilt only from a healthy primary and caught-up
    /// sync, never when it is the primary, and once its zone runs again.
    fn rebuild_gate(&self, obs: &ShardObservation, zone: &str) -> Gated {
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
        if !st.deposed.iter().any(|p| p.zone_id == zone) {
            return Ok(Gate::Open); // rebuilt already; act is a no-op
        }
        if st.primary.zone_id == zone {
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
        Ok(match obs.peer(zone) {
            Some(p) if p.vm_state == "running" && p.active => Gate::Open,
            _ => Gate::wait(
                WaitReason::PeersUp,
                format!("waiting for {zone} to run again"),
            ),
        })
    }
}

/// Disruptive steps start only inside the maintenance window. The primary
/// of a shard we froze is part of the sequence the freeze began inside a
/// window: it goes on rather than leaving the shard frozen until the next
/// one.
fn disruptive(op: &OperationStatus, action: &ManateeAction, obs: &ShardObservation) -> bool {
    match action {
        ManateeAction::Freeze { .. } => true,
        ManateeAction::Promote { primary, .. } => obs
            .state
            .as_ref()
            .is_some_and(|st| &st.primary.zone_id == primary),
        ManateeAction::Reprovision { role, image, zone } => {
            obs.peer(zone).is_none_or(|p| &p.image != image)
                && !(*role == Role::Primary
                    && obs.freeze_reason().as_deref() == Some(freeze_reason(&op.id).as_str()))
        }
        _ => false,
    }
}

/// A takeover since the plan was made (plans are only made with nothing
/// deposed, rebuilds first): neither ask for approval of nor freeze for a
/// primary step that no longer fits.
fn takeover_since_plan(action: &ManateeAction, obs: &ShardObservation) -> Option<Gate> {
    if !matches!(
        action,
        ManateeAction::Approval { .. } | ManateeAction::Freeze { .. }
    ) {
        return None;
    }
    let d = obs.state.as_ref().and_then(|st| st.deposed.first())?;
    Some(Gate::block(
        BlockReason::Replan,
        format!("a takeover deposed {} since this plan was made", d.zone_id),
    ))
}
