//! The transplant's world traits and its step runner.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;

use super::{TransplantAction, TransplantObs, moray_compatible};
use crate::clock::Clock;
use crate::error::{Unhealthy, WorldError};
use crate::gates::Approvals;
use crate::operation::{Gate, Progress, StepRunner};

mod act;
mod check;
mod gate;
#[cfg(test)]
mod tests;

/// What the transplant (and a review) observes. Nothing here changes the
/// datacenter.
#[async_trait]
pub trait TransplantObserve: Send + Sync {
    async fn observe(&self, shard: &str) -> Result<TransplantObs, WorldError>;
    /// Resolve `alias:<alias>` keys to zone uuids (None while it does not exist).
    async fn resolve(&self, shard: &str, key: &str) -> Result<Option<String>, WorldError>;
    async fn approved(&self, op_id: &str, step: &str) -> Result<bool, WorldError>;
}

/// What the transplant changes.
#[async_trait]
pub trait TransplantAct: TransplantObserve {
    async fn svcadm(&self, zone: &str, enable: bool, fmri: &str) -> Result<(), WorldError>;
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError>;
    /// Edit `oneNodeWriteMode` in the zone's sitter.json (config-agent disabled).
    async fn set_sitter_onwm(&self, zone: &str, on: bool) -> Result<(), WorldError>;
    /// SAPI instance metadata: set a boolean, or delete the key with None.
    async fn set_metadata(
        &self,
        zone: &str,
        key: &str,
        value: Option<bool>,
    ) -> Result<(), WorldError>;
    async fn set_service_image(&self, shard: &str, image: &str) -> Result<(), WorldError>;
    async fn reprovision(&self, zone: &str, image: &str) -> Result<(), WorldError>;
    async fn create_instance(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        metadata: &[(&str, bool)],
    ) -> Result<(), WorldError>;
    async fn delete_instance(&self, zone: &str) -> Result<(), WorldError>;
    async fn snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError>;
    async fn destroy_snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError>;
    async fn destroy_dataset(&self, zone: &str) -> Result<(), WorldError>;
    async fn send(&self, from: &str, snapshot: &str, to: &str) -> Result<(), WorldError>;
    async fn set_moray(&self, zone: &str, enable: bool) -> Result<(), WorldError>;
    async fn create_onwm_state(
        &self,
        shard: &str,
        zone: &str,
        reason: &str,
    ) -> Result<(), WorldError>;
    /// Delete the state only if it is frozen with exactly `reason`.
    async fn delete_own_state(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
}

/// Runs [`TransplantAction`]s for one shard.
pub struct TransplantRunner<'a, W: TransplantAct + ?Sized> {
    pub world: &'a W,
    pub shard: String,
    pub step_timeout: Duration,
    /// A send may take this long (JPC: 30+ minutes over the admin network).
    pub send_timeout: Duration,
    pub clock: &'a dyn Clock,
}

impl<W: TransplantAct + ?Sized> TransplantRunner<'_, W> {
    async fn zone(&self, key: &str) -> Result<Option<String>, WorldError> {
        if key.starts_with("alias:") {
            self.world.resolve(&self.shard, key).await
        } else {
            Ok(Some(key.to_string()))
        }
    }
    async fn need_zone(&self, key: &str) -> Result<String, WorldError> {
        self.zone(key)
            .await?
            .ok_or_else(|| WorldError::Missing(format!("{key} does not exist yet")))
    }

    /// Healthy v2 peers: the state's primary writable, the others in the state.
    fn v2_peers_ok(obs: &TransplantObs, count: usize) -> Result<(), Unhealthy> {
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| Unhealthy("no cluster state".into()))?;
        let p = obs
            .zone(&st.primary.zone_id)
            .ok_or_else(|| Unhealthy("primary zone unknown".into()))?;
        if !p.writable {
            return Err(Unhealthy(format!("primary {} not writable yet", p.alias)));
        }
        let placed = 1 + usize::from(st.sync.is_some()) + st.asyncs.len();
        if placed < count {
            return Err(Unhealthy(format!("{placed} of {count} peers placed")));
        }
        if !st.deposed.is_empty() {
            return Err(Unhealthy(format!("deposed peer {}", st.deposed[0].zone_id)));
        }
        Ok(())
    }

    /// v1 shard whole: `count` sitters in the election, the first takes writes.
    fn v1_peers_ok(obs: &TransplantObs, count: usize) -> Result<(), Unhealthy> {
        let t = obs.legacy_topology();
        if t.len() < count {
            return Err(Unhealthy(format!(
                "{} of {count} v1 peers in the election",
                t.len()
            )));
        }
        if !t[0].writable {
            return Err(Unhealthy(format!(
                "v1 primary {} not writable yet",
                t[0].alias
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl<W: TransplantAct + ?Sized> Approvals for TransplantRunner<'_, W> {
    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError> {
        self.world.approved(op_id, key).await
    }
}

/// The transplant keeps the engine's default [`StepRunner::may_retry`]:
/// before the point of no return a failed step rolls the transplant back
/// rather than retrying it, and past it [`drive`] runs nothing until a
/// person approves `resume` for that very stop, which is the approval of
/// the retry.
///
/// [`drive`]: super::drive
#[async_trait]
impl<W: TransplantAct + ?Sized> StepRunner<TransplantAction> for TransplantRunner<'_, W> {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &TransplantAction,
    ) -> Result<Gate, WorldError> {
        self.gate(op, step, action).await
    }

    async fn act(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &TransplantAction,
    ) -> Result<(), WorldError> {
        self.act_step(action).await
    }

    async fn check(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &TransplantAction,
    ) -> Result<Progress, WorldError> {
        self.check_step(op, step, action).await
    }

    /// As for the other runners, a resumed step passes its gate again
    /// unless the world shows its call went out. The one gate that guards
    /// a disruption is "never zero morays": a moray upgrade counts as sent
    /// once its moray is compatible or disabled (its first call).
    async fn dispatched(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &TransplantAction,
    ) -> Result<bool, WorldError> {
        match action {
            TransplantAction::UpgradeMoray { zone, .. } => {
                let obs = self.world.observe(&self.shard).await?;
                Ok(obs
                    .morays
                    .iter()
                    .find(|m| &m.zone == zone)
                    .is_none_or(|m| moray_compatible(&m.image_version) || !m.enabled))
            }
            _ => Ok(true),
        }
    }

    fn timeout(&self, action: &TransplantAction) -> Duration {
        match action {
            TransplantAction::Send { .. } => self.send_timeout,
            _ => self.step_timeout,
        }
    }
}
