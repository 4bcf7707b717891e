//! The HA setup's gates: a settled shard, the shard up before a new peer,
//! only the setup freeze lifted, and the primary's restart only inside the
//! window, unfrozen, with a peer there to become its sync.

use crds::status::OperationStatus;
use wire::manatee::ClusterState;

use super::{HaAct, HaAction, HaRunner, ONWM_SETUP_FREEZE};
use crate::error::{BlockReason, RefusalReason, WaitReason, WorldError};
use crate::gates::window_gate;
use crate::manatee::ShardObservation;
use crate::operation::Gate;

impl<W: HaAct> HaRunner<'_, W> {
    /// One step's gate: a settled shard first, then the step's own rule.
    pub(super) async fn gate(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &HaAction,
    ) -> Result<Gate, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        let st = match self.settled(&obs) {
            Ok(st) => st,
            Err(gate) => return Ok(gate),
        };
        let name = op.steps.get(step).map_or("", |s| s.name.as_str());
        Ok(match action {
            HaAction::Preflight => self.shard_up(&obs, "waiting for the shard to be up"),
            HaAction::CreatePeer { .. } => {
                self.shard_up(&obs, "a new peer waits for the shard to be up")
            }
            HaAction::LeaveOneNodeWriteMode | HaAction::UnfreezeSetup => {
                self.only_the_setup_freeze(&obs)
            }
            HaAction::RestartPrimarySitter => self.restart_gate(&obs, st, name),
            HaAction::WaitSync | HaAction::WaitHealthy => Gate::Open,
        })
    }

    /// A cluster state and no deposed peer, or the block that says why not.
    fn settled<'o>(&self, obs: &'o ShardObservation) -> Result<&'o ClusterState, Gate> {
        let Some(st) = &obs.state else {
            return Err(Gate::block(
                RefusalReason::NoClusterState,
                format!("shard {} has no cluster state", self.shard),
            ));
        };
        if let Some(d) = st.deposed.first() {
            return Err(Gate::block(
                RefusalReason::DeposedPeer,
                format!(
                    "shard {} has a deposed peer ({}); rebuild it first",
                    self.shard, d.zone_id
                ),
            ));
        }
        Ok(st)
    }

    /// Every placed peer up, else wait (`why` leads the message).
    fn shard_up(&self, obs: &ShardObservation, why: &str) -> Gate {
        match self.placed_up(obs) {
            Ok(()) => Gate::Open,
            Err(e) => Gate::wait(WaitReason::PeersUp, format!("{why}: {e}")),
        }
    }

    /// tritonctl lifts only the freeze manatee wrote with one-node-write mode.
    fn only_the_setup_freeze(&self, obs: &ShardObservation) -> Gate {
        match obs.freeze_reason() {
            Some(r) if r != ONWM_SETUP_FREEZE => Gate::block(
                RefusalReason::FrozenByOther,
                format!(
                    "shard {} is frozen by someone else ({r}); tritonctl lifts only the one-node-write setup freeze",
                    self.shard
                ),
            ),
            _ => Gate::Open,
        }
    }

    /// The primary's restart (it leaves one-node-write mode): inside the
    /// window, unfrozen, its SAPI flag gone, and another peer active to
    /// become the sync.
    fn restart_gate(&self, obs: &ShardObservation, st: &ClusterState, name: &str) -> Gate {
        if !st.is_one_node_write_mode() {
            return Gate::Open; // done already; act is a no-op
        }
        if let Some(g) = window_gate(self.window.as_ref(), self.clock, name) {
            return g;
        }
        if let Some(r) = obs.freeze_reason() {
            return Gate::Block {
                reason: if r == ONWM_SETUP_FREEZE {
                    BlockReason::StillFrozen
                } else {
                    BlockReason::Refused(RefusalReason::FrozenByOther)
                },
                message: format!(
                    "shard {} is frozen ({r}); the primary cannot leave one-node-write mode while it is",
                    self.shard
                ),
            };
        }
        let primary = obs.peer(&st.primary.zone_id);
        if primary.is_none_or(|p| p.one_node_write_mode) {
            return Gate::wait(
                WaitReason::Settling,
                format!(
                    "the primary {} still has ONE_NODE_WRITE_MODE in SAPI",
                    st.primary.zone_id
                ),
            );
        }
        // The new sync must be there to be picked, or the primary would
        // restart into a shard it cannot leave ONWM in.
        let other = obs
            .peers
            .iter()
            .any(|p| p.zone != st.primary.zone_id && p.active && p.vm_state == "running");
        if !other {
            return Gate::wait(
                WaitReason::Settling,
                "no other active peer yet to become the sync",
            );
        }
        Gate::Open
    }
}
