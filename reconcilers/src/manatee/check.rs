//! The rolling upgrade's completion checks.

use wire::manatee::ClusterState;

use super::{ManateeAct, ManateeAction, ManateeRunner, Role, ShardObservation};
use crate::error::WorldError;
use crate::operation::Progress;

impl<W: ManateeAct> ManateeRunner<'_, W> {
    /// One step's completion check.
    pub(super) async fn check_step(&self, action: &ManateeAction) -> Result<Progress, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        Ok(match action {
            ManateeAction::Reprovision { zone, role, image } => {
                self.reprovisioned(&obs, zone, *role, image)
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
            ManateeAction::Rebuild { zone } => self.rebuilt(&obs, zone),
            ManateeAction::Promote { primary, .. } => self.promoted(&obs, primary).await?,
            ManateeAction::WaitPromoted { deposed } => self.promoted_settled(&obs, deposed),
        })
    }

    /// Back on the image, running, replicating, and the shard whole.
    fn reprovisioned(
        &self,
        obs: &ShardObservation,
        zone: &str,
        role: Role,
        image: &str,
    ) -> Progress {
        let Some(p) = obs.peer(zone) else {
            return Progress::NotYet(format!("zone {zone} not found"));
        };
        if p.image != image || p.vm_state != "running" {
            return Progress::NotYet(format!(
                "{} is {} on image {}",
                p.alias, p.vm_state, p.image
            ));
        }
        // The old primary our switchover deposed stays deposed (postgres
        // off) until its rebuild: back on the image with its sitter up is done.
        if role == Role::Deposed && p.active {
            return Progress::Done;
        }
        if !p.active || !p.pg_online {
            return Progress::NotYet(format!(
                "{} is running; sitter active {}, postgres online {}",
                p.alias, p.active, p.pg_online
            ));
        }
        // A reprovisioned sync comes back as an async: while it was away
        // the primary promoted the first async (§3.4b), as sdcadm expects.
        // So the test is "back, replicating, and the shard whole", not "same role".
        let now = obs.role_of(zone);
        let placed = matches!(now, Role::Primary | Role::Sync | Role::Async);
        match self.health(obs) {
            Ok(()) if placed && (role == Role::Primary || self.standby_ok(p)) => Progress::Done,
            Ok(()) => Progress::NotYet(format!("{} is {now:?}, lag {:?}", p.alias, p.lag_seconds)),
            // A takeover deposed another peer meanwhile (its server
            // died): this peer is back, and waiting cannot heal the
            // shard; the next gate re-plans.
            Err(_)
                if placed
                    && obs
                        .state
                        .as_ref()
                        .is_some_and(|st| st.deposed.iter().any(|d| d.zone_id != zone)) =>
            {
                Progress::Done
            }
            Err(e) => Progress::NotYet(format!("{} is {now:?}; shard not whole yet: {e}", p.alias)),
        }
    }

    /// No longer deposed: an async again, caught up.
    fn rebuilt(&self, obs: &ShardObservation, zone: &str) -> Progress {
        let deposed = obs
            .state
            .as_ref()
            .is_some_and(|st| st.deposed.iter().any(|p| p.zone_id == zone));
        match obs.peer(zone) {
            _ if deposed => Progress::NotYet(format!("{zone} is still deposed")),
            Some(p) if obs.role_of(zone) == Role::Async && self.standby_ok(p) => Progress::Done,
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
}
