//! The HA setup's completion checks.

use crds::status::OperationStatus;

use super::{HaAct, HaAction, HaRunner, ONWM_SETUP_FREEZE};
use crate::error::WorldError;
use crate::manatee::{Role, ShardObservation, shard_health, standby_ok};
use crate::operation::Progress;

impl<W: HaAct> HaRunner<'_, W> {
    /// One step's completion check.
    pub(super) async fn check_step(
        &self,
        op: &OperationStatus,
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
                self.peer_joined(&obs, &zone, alias, onwm)
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
            HaAction::WaitSync => self.sync_caught_up(&obs)?,
            HaAction::WaitHealthy => whole_and_placed(&obs, self.max_lag_seconds),
        })
    }

    /// A created peer is running; outside one-node-write mode it must also
    /// be placed and replicating (in it, a new peer stays unassigned until
    /// the primary leaves it).
    fn peer_joined(&self, obs: &ShardObservation, zone: &str, alias: &str, onwm: bool) -> Progress {
        match obs.peer(zone) {
            None => Progress::NotYet(format!("{alias} ({zone}) has no VM yet")),
            Some(p) if p.vm_state != "running" || !p.active => Progress::NotYet(format!(
                "{alias} is {}; sitter active {}",
                p.vm_state, p.active
            )),
            Some(_) if onwm => Progress::Done,
            Some(p) if obs.role_of(zone) == Role::Unassigned => {
                Progress::NotYet(format!("{} is up but not placed yet", p.alias))
            }
            Some(p) if !standby_ok(p, self.max_lag_seconds) => Progress::NotYet(format!(
                "{} is {:?}, postgres {}, lag {:?}",
                p.alias,
                obs.role_of(zone),
                p.pg_online,
                p.lag_seconds
            )),
            Some(_) => Progress::Done,
        }
    }

    /// Synchronous replication: a caught-up sync and the primary up.
    fn sync_caught_up(&self, obs: &ShardObservation) -> Result<Progress, WorldError> {
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
        Ok(match st.sync.as_ref().and_then(|s| obs.peer(&s.zone_id)) {
            None => Progress::NotYet("no sync yet".into()),
            Some(s) if !standby_ok(s, self.max_lag_seconds) => Progress::NotYet(format!(
                "sync {} not caught up (postgres {}, lag {:?})",
                s.alias, s.pg_online, s.lag_seconds
            )),
            Some(_) => match obs.peer(&st.primary.zone_id) {
                Some(p) if p.active && p.pg_online => Progress::Done,
                _ => Progress::NotYet("primary not up".into()),
            },
        })
    }
}

/// The shard whole and every peer placed.
fn whole_and_placed(obs: &ShardObservation, max_lag_seconds: f64) -> Progress {
    match shard_health(obs, max_lag_seconds) {
        Err(e) => Progress::NotYet(e.0),
        Ok(()) => match obs
            .peers
            .iter()
            .find(|p| obs.role_of(&p.zone) == Role::Unassigned)
        {
            Some(p) => Progress::NotYet(format!("{} is not placed yet", p.alias)),
            None => Progress::Done,
        },
    }
}
