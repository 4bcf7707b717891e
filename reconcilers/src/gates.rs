//! The gate and retry rules every runner shares, written once.

use crate::clock::{Clock, rfc3339};
use crate::error::{RefusalReason, WaitReason};
use crate::operation::Gate;
use crate::window::{WindowState, window_state};

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
