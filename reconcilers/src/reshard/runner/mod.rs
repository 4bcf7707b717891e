//! The resharding step runner: gates (`gate.rs`), acts (`act.rs`) and
//! completion checks (`check.rs`) over the world traits.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;

use super::{MoveJob, ReshardAct, ReshardAction, RingStage, ShardRows};
use crate::clock::Clock;
use crate::error::WorldError;
use crate::gates::{Approvals, retry_approved};
use crate::operation::{Gate, Progress, StepRunner};

mod act;
mod check;
mod gate;

/// How long steps may take before the operation stops.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub step: Duration,
    /// The new peers' restore and catch-up.
    pub catch_up: Duration,
    /// The row cleanup, all of it.
    pub cleanup: Duration,
    /// The work one cleanup check does before it reports progress.
    pub cleanup_slice: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            step: Duration::from_secs(600),
            catch_up: Duration::from_secs(24 * 3600),
            cleanup: Duration::from_secs(7 * 24 * 3600),
            cleanup_slice: Duration::from_secs(5),
        }
    }
}

/// Runs the [`ReshardAction`]s of one move.
pub struct ReshardRunner<'a, W: ReshardAct + ShardRows + ?Sized> {
    pub world: &'a W,
    pub job: &'a MoveJob,
    pub clock: &'a dyn Clock,
    pub timeouts: Timeouts,
}

struct WorldApprovals<'a, W: ?Sized>(&'a W);

#[async_trait]
impl<W: ReshardAct + ?Sized> Approvals for WorldApprovals<'_, W> {
    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError> {
        self.0.approved(op_id, key).await
    }
}

/// Whether the operation is a rollback (its gates are open: going back
/// must not wait on what made it go back).
fn is_rollback(op: &OperationStatus) -> bool {
    op.id.ends_with("-rollback")
}

impl<W: ReshardAct + ShardRows + ?Sized> ReshardRunner<'_, W> {
    /// The image of a ring stage: R0 is the image the move was planned on.
    async fn image_of(&self, stage: RingStage) -> Result<String, WorldError> {
        if stage == RingStage::R0 {
            return Ok(self.job.original_image.clone());
        }
        self.world
            .staged_image(&self.job.op_id, stage)
            .await?
            .ok_or_else(|| {
                WorldError::Missing(format!(
                    "ring image {} of operation {} was never imported",
                    stage.as_str(),
                    self.job.op_id
                ))
            })
    }
}

#[async_trait]
impl<W: ReshardAct + ShardRows + ?Sized> StepRunner<ReshardAction> for ReshardRunner<'_, W> {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &ReshardAction,
    ) -> Result<Gate, WorldError> {
        if is_rollback(op) {
            return Ok(Gate::Open);
        }
        if *action == ReshardAction::Approval {
            return crate::gates::approval_gate(&WorldApprovals(self.world), op, step).await;
        }
        self.gate(action).await
    }

    async fn act(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ReshardAction,
    ) -> Result<(), WorldError> {
        self.act_on(action).await
    }

    async fn check(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ReshardAction,
    ) -> Result<Progress, WorldError> {
        self.check_of(action).await
    }

    fn timeout(&self, action: &ReshardAction) -> Duration {
        match action {
            ReshardAction::AwaitCatchUp => self.timeouts.catch_up,
            ReshardAction::Cleanup => self.timeouts.cleanup,
            _ => self.timeouts.step,
        }
    }

    async fn may_retry(
        &self,
        op: &OperationStatus,
        step: usize,
        _action: &ReshardAction,
    ) -> Result<bool, WorldError> {
        retry_approved(&WorldApprovals(self.world), op, step).await
    }
}
