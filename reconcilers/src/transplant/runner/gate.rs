//! The transplant's gates: approvals, the topology it was planned for,
//! never zero morays.

use crds::status::OperationStatus;

use super::{TransplantAct, TransplantRunner};
use crate::error::{BlockReason, WaitReason, WorldError};
use crate::gates::approval_gate;
use crate::operation::Gate;
use crate::transplant::{Topology, TransplantAction, TransplantObs};

impl<W: TransplantAct + ?Sized> TransplantRunner<'_, W> {
    /// One step's gate.
    pub(super) async fn gate(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &TransplantAction,
    ) -> Result<Gate, WorldError> {
        use TransplantAction as T;
        let obs = self.world.observe(&self.shard).await?;
        Ok(match action {
            T::Approval { .. } => approval_gate(self, op, step).await?,
            T::RecordInitialState { topology } => planned_topology(&obs, topology),
            T::UpgradeMoray { zone, .. } => another_moray_online(&obs, zone),
            _ => Gate::Open,
        })
    }
}

/// Step 2: the v1 topology is still the one planned for (or the primary is
/// in one-node-write mode already: the transplant started from it).
fn planned_topology(obs: &TransplantObs, topology: &Topology) -> Gate {
    let now = obs.legacy_topology();
    let same = now.first().map(|z| &z.zone) == Some(&topology.primary)
        && now.get(1).map(|z| &z.zone) == topology.sync.as_ref();
    if same || obs.zone(&topology.primary).is_some_and(|z| z.sitter_onwm) {
        Gate::Open
    } else {
        Gate::block(
            BlockReason::Replan,
            format!(
                "the v1 topology changed since planning (planned primary {}, now {})",
                topology.primary,
                now.first().map_or("none", |z| z.zone.as_str())
            ),
        )
    }
}

/// Step 1: never zero morays; another one serves while `zone` is upgraded.
fn another_moray_online(obs: &TransplantObs, zone: &str) -> Gate {
    let others = obs
        .morays
        .iter()
        .filter(|m| m.zone != zone && m.enabled)
        .count();
    if others == 0 {
        Gate::wait(
            WaitReason::Moray,
            format!(
                "never zero morays: waiting for another moray to be online before disabling {zone}"
            ),
        )
    } else {
        Gate::Open
    }
}
