//! Where an operation is: its current step, steps done, and an ETA from the
//! durations of the steps done so far (the mean of those, for each step
//! left, less what the running step has already taken). Pure.

use crds::status::{OperationPhase, OperationStatus, StepState};
use reconcilers::clock::parse_rfc3339;
use time::OffsetDateTime;

use super::view::OpView;

fn done(s: StepState) -> bool {
    matches!(s, StepState::Succeeded | StepState::Skipped)
}

/// Whether the operation still has work to do.
pub fn in_flight(phase: OperationPhase) -> bool {
    matches!(
        phase,
        OperationPhase::Pending
            | OperationPhase::Running
            | OperationPhase::Waiting
            | OperationPhase::RollingBack
    )
}

/// The step an operator looks at: the running or waiting one, else a
/// failed one, else the next pending one.
fn current(op: &OperationStatus) -> Option<usize> {
    let find = |f: &dyn Fn(StepState) -> bool| op.steps.iter().position(|s| f(s.state));
    find(&|s| matches!(s, StepState::Running | StepState::Waiting))
        .or_else(|| find(&|s| s == StepState::Failed))
        .or_else(|| find(&|s| s == StepState::Pending))
}

/// Seconds left, estimated at `now`; None while no step has finished (no
/// basis) or when nothing is left.
pub fn eta_seconds(op: &OperationStatus, now: OffsetDateTime) -> Option<u64> {
    if !in_flight(op.phase) {
        return None;
    }
    let durations: Vec<f64> = op
        .steps
        .iter()
        .filter(|s| s.state == StepState::Succeeded)
        .filter_map(|s| {
            let a = parse_rfc3339(s.started_at.as_deref()?)?;
            let b = parse_rfc3339(s.finished_at.as_deref()?)?;
            Some((b - a).as_seconds_f64().max(0.0))
        })
        .collect();
    if durations.is_empty() {
        return None;
    }
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    let mut left = 0.0;
    for s in op.steps.iter().filter(|s| !done(s.state)) {
        let spent = match (s.state, s.started_at.as_deref().and_then(parse_rfc3339)) {
            (StepState::Running | StepState::Waiting, Some(t)) => {
                (now - t).as_seconds_f64().max(0.0)
            }
            _ => 0.0,
        };
        left += (mean - spent).max(0.0);
    }
    Some(left.round() as u64)
}

/// The operation as the overview shows it.
pub fn op_view(op: &OperationStatus, now: OffsetDateTime) -> OpView {
    let cur = current(op).and_then(|i| op.steps.get(i));
    let pnr = op.point_of_no_return.and_then(|i| op.steps.get(i));
    OpView {
        id: op.id.clone(),
        kind: op.kind.clone(),
        target: op.target.clone(),
        phase: format!("{:?}", op.phase),
        current_step: cur.map(|s| s.name.clone()),
        current_state: cur.map(|s| format!("{:?}", s.state)),
        current_message: cur.map(|s| s.message.clone().unwrap_or_else(|| s.description.clone())),
        done: op.steps.iter().filter(|s| done(s.state)).count(),
        total: op.steps.len(),
        eta_seconds: eta_seconds(op, now),
        started_at: op.started_at.clone(),
        point_of_no_return: pnr.map(|s| s.name.clone()),
        past_point_of_no_return: !op.can_roll_back(),
        in_flight: in_flight(op.phase),
    }
}

/// `1h02m`, `3m05s`, `42s`.
pub fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::status::StepStatus;

    fn step(name: &str, state: StepState, start: Option<&str>, end: Option<&str>) -> StepStatus {
        StepStatus {
            name: name.into(),
            description: format!("do {name}"),
            state,
            started_at: start.map(|s| format!("2026-01-01T00:{s}Z")),
            finished_at: end.map(|s| format!("2026-01-01T00:{s}Z")),
            ..StepStatus::default()
        }
    }

    fn op(steps: Vec<StepStatus>, phase: OperationPhase) -> OperationStatus {
        OperationStatus {
            id: "op-1".into(),
            kind: "manatee-rolling-upgrade".into(),
            target: "sdc".into(),
            phase,
            steps,
            point_of_no_return: Some(2),
            ..OperationStatus::default()
        }
    }

    fn at(s: &str) -> OffsetDateTime {
        parse_rfc3339(&format!("2026-01-01T00:{s}Z")).unwrap()
    }

    #[test]
    fn eta_is_the_mean_step_time_for_each_step_left_less_time_spent() {
        let o = op(
            vec![
                step("a", StepState::Succeeded, Some("00:00"), Some("01:00")),
                step("b", StepState::Succeeded, Some("01:00"), Some("04:00")),
                step("c", StepState::Running, Some("04:00"), None),
                step("d", StepState::Pending, None, None),
            ],
            OperationPhase::Running,
        );
        // Mean 120 s; c has run 30 s (90 left), d 120: 210 s.
        assert_eq!(eta_seconds(&o, at("04:30")), Some(210));
        // A step running longer than the mean counts as nearly done.
        assert_eq!(eta_seconds(&o, at("09:00")), Some(120));
        let v = op_view(&o, at("04:30"));
        assert_eq!(v.current_step.as_deref(), Some("c"));
        assert_eq!(v.current_state.as_deref(), Some("Running"));
        assert_eq!((v.done, v.total), (2, 4));
        assert_eq!(v.point_of_no_return.as_deref(), Some("c"));
        assert!(
            v.past_point_of_no_return,
            "c (the point of no return) started"
        );
        assert!(v.in_flight);
    }

    #[test]
    fn no_eta_without_a_finished_step_or_once_finished() {
        let o = op(
            vec![
                step("a", StepState::Running, Some("00:00"), None),
                step("b", StepState::Pending, None, None),
            ],
            OperationPhase::Running,
        );
        assert_eq!(eta_seconds(&o, at("00:10")), None);
        let mut fin = op(
            vec![step(
                "a",
                StepState::Succeeded,
                Some("00:00"),
                Some("00:10"),
            )],
            OperationPhase::Succeeded,
        );
        assert_eq!(eta_seconds(&fin, at("00:20")), None);
        fin.phase = OperationPhase::Failed;
        assert!(!op_view(&fin, at("00:20")).in_flight);
    }

    #[test]
    fn the_current_step_is_the_running_one_else_a_failed_one_else_the_next() {
        let o = op(
            vec![
                step("a", StepState::Succeeded, None, None),
                step("b", StepState::Failed, None, None),
                step("c", StepState::Pending, None, None),
            ],
            OperationPhase::Failed,
        );
        assert_eq!(op_view(&o, at("00:00")).current_step.as_deref(), Some("b"));
        assert_eq!(human(3725), "1h02m");
        assert_eq!(human(185), "3m05s");
        assert_eq!(human(42), "42s");
    }
}
