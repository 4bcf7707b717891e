//! The gate and retry rules every runner shares, written once:
//!
//! - an approval step opens only once `tritonctl approve` was given for it
//!   ([`approval_gate`]);
//! - a step that failed (its completion check timed out) runs again only
//!   once a person approved that very attempt ([`retry_approved`]; the
//!   engine asks through [`StepRunner::may_retry`](crate::operation::StepRunner::may_retry));
//! - a disruptive step starts only inside the maintenance window
//!   ([`window_gate`]);
//! - a step found `Running` on resume whose call never went out passes its
//!   gate again: the engine asks [`StepRunner::dispatched`](crate::operation::StepRunner::dispatched),
//!   and a runner whose step has a gate worth keeping answers `true` only
//!   when the world shows the effect or the call in flight.

use async_trait::async_trait;
use crds::status::OperationStatus;

use crate::clock::{Clock, rfc3339};
use crate::error::{RefusalReason, WaitReason, WorldError};
use crate::operation::{Gate, retry_key};
use crate::window::{WindowState, window_state};

/// Where a runner looks up `tritonctl approve` answers: the approval
/// recorded for operation `op_id` under `key` (a step name, a
/// [`retry_key`], a transplant decision).
#[async_trait]
pub trait Approvals: Send + Sync {
    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError>;
}

/// The gate of an approval step: open once `tritonctl approve` was given
/// for this step of this operation.
pub async fn approval_gate(
    approvals: &dyn Approvals,
    op: &OperationStatus,
    step: usize,
) -> Result<Gate, WorldError> {
    let name = &op.steps[step].name;
    Ok(if approvals.approved(&op.id, name).await? {
        Gate::Open
    } else {
        Gate::wait(
            WaitReason::Approval,
            format!(
                "awaiting approval: run `tritonctl approve` for operation {} step {name}",
                op.id
            ),
        )
    })
}

/// Whether a failed step may run again: only once a person approved its
/// next attempt (`tritonctl approve` records [`retry_key`] of the step and
/// its attempts so far), so a timeout stops the operation rather than
/// retrying on its own.
pub async fn retry_approved(
    approvals: &dyn Approvals,
    op: &OperationStatus,
    step: usize,
) -> Result<bool, WorldError> {
    let s = &op.steps[step];
    approvals
        .approved(&op.id, &retry_key(&s.name, s.attempts))
        .await
}

/// The maintenance-window gate before a disruptive step: `None` when the
/// step may start now, else why it waits and until when.
pub fn window_gate(
    window: Option<&crds::manatee::MaintenanceWindow>,
    clock: &dyn Clock,
    step: &str,
) -> Option<Gate> {
    let w = window?;
    Some(match window_state(w, clock.now()) {
        Ok(WindowState::Open { .. }) => return None,
        Ok(WindowState::Closed { opens }) => Gate::wait(
            WaitReason::Window,
            format!(
                "outside the maintenance window: step `{step}` waits until {}",
                rfc3339(opens)
            ),
        ),
        Err(e) => Gate::block(RefusalReason::InvalidMaintenanceWindow, e.to_string()),
    })
}
