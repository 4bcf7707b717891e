//! [`drive`]: forward, past-PNR stops and decisions, rollback, as four
//! named phases.

use std::time::Duration;

use crds::status::{OperationPhase, StepState};

use super::journal::{Outcome, Part, TransplantJournal, TransplantStore, stop_message};
use super::pnr::{after_pnr_message, decision_key};
use super::rollback::rollback_plan;
use super::runner::{TransplantAct, TransplantRunner};
use crate::clock::rfc3339;
use crate::error::{BlockReason, WorldError};
use crate::operation::{Advance, EngineError, advance};

/// Drive a transplant: forward until done; before the point of no return a
/// failure or a cancel rolls back; after it, a failure, a timeout or a
/// blocked gate records a [`PastPnrStop`] and nothing more runs, not even a
/// retry, until a person approves an option for that stop
/// ([`decision_key`]): `resume` retries the step once. The other options
/// are described ([`reverse_transplant_plan`], [`restore_backup_plan`]) and
/// refused by tritonctl: they are not automated.
///
/// [`PastPnrStop`]: super::PastPnrStop
/// [`reverse_transplant_plan`]: super::reverse_transplant_plan
/// [`restore_backup_plan`]: super::restore_backup_plan
pub async fn drive<W: TransplantAct + ?Sized, S: TransplantStore>(
    j: &mut TransplantJournal,
    runner: &TransplantRunner<'_, W>,
    store: &S,
    cancel: bool,
    poll: Duration,
) -> Result<Outcome, WorldError> {
    if j.rollback.is_none() {
        if let Some(blocked) = answer_stop(j, runner, store).await? {
            return Ok(blocked);
        }
        let why = match forward(j, runner, store, cancel, poll).await? {
            Forward::Outcome(out) => return Ok(out),
            Forward::RollBack(why) => why,
        };
        if let Some(blocked) = start_rollback(j, store, why).await? {
            return Ok(blocked);
        }
    }
    roll_back(j, runner, store, poll).await
}

/// Where the forward phase left the transplant.
enum Forward {
    /// Done, waiting, or stopped: report this.
    Outcome(Outcome),
    /// Before the point of no return something failed or a cancel came:
    /// roll back, for this reason.
    RollBack(String),
}

/// Stopped past the point of no return: nothing runs, not even a retry,
/// until a person approves an option for this very stop. `None` when
/// there is no stop or `resume` was approved for it (recorded, and the
/// stop cleared).
async fn answer_stop<W: TransplantAct + ?Sized, S: TransplantStore>(
    j: &mut TransplantJournal,
    runner: &TransplantRunner<'_, W>,
    store: &S,
) -> Result<Option<Outcome>, WorldError> {
    let Some(stop) = j.stopped.clone() else {
        return Ok(None);
    };
    if j.forward.is_finished() {
        return Ok(None);
    }
    let id = j.forward.status.id.clone();
    let key = decision_key(stop.seq, "resume");
    if !runner.world.approved(&id, &key).await? {
        return Ok(Some(Outcome::Blocked {
            reason: BlockReason::PastPointOfNoReturn,
            message: stop_message(&j.forward, &stop),
        }));
    }
    let now = rfc3339(runner.clock.now());
    j.decisions.push(format!(
        "{now}: stop {} at step {} ({}): resume approved ({key}); retrying the step",
        stop.seq,
        stop.step + 1,
        stop.name
    ));
    j.stopped = None;
    j.forward.status.message = Some(format!(
        "resume approved for stop {}: retrying step {} ({})",
        stop.seq,
        stop.step + 1,
        stop.name
    ));
    store.save(j).await?;
    Ok(None)
}

/// The forward operation, as far as it goes now. A cancel before the
/// point of no return rolls back; after it, it is refused.
async fn forward<W: TransplantAct + ?Sized, S: TransplantStore>(
    j: &mut TransplantJournal,
    runner: &TransplantRunner<'_, W>,
    store: &S,
    cancel: bool,
    poll: Duration,
) -> Result<Forward, WorldError> {
    if cancel {
        if j.forward.status.can_roll_back() {
            return Ok(Forward::RollBack("cancelled".into()));
        } else if !j.forward.is_finished() {
            return Ok(Forward::Outcome(Outcome::Blocked {
                reason: BlockReason::PastPointOfNoReturn,
                message: after_pnr_message(&j.forward, "Cancel requested"),
            }));
        }
    }
    if j.forward.is_finished() {
        return Ok(Forward::Outcome(Outcome::Completed));
    }
    let part = Part {
        store,
        base: std::sync::Mutex::new(j.clone()),
        rollback: false,
    };
    let r = advance(&mut j.forward, runner, &part, runner.clock, poll).await;
    let before_pnr =
        |j: &TransplantJournal, step| j.forward.status.point_of_no_return.is_none_or(|p| step < p);
    let (step, stop_cause) = match r {
        Ok(Advance::Completed) => return Ok(Forward::Outcome(Outcome::Completed)),
        Ok(Advance::Waiting {
            after,
            reason,
            message,
        }) => {
            return Ok(Forward::Outcome(Outcome::Waiting {
                after,
                reason,
                message,
            }));
        }
        Ok(Advance::Blocked {
            reason,
            message,
            step,
        }) => {
            if before_pnr(j, step) {
                return Ok(if reason == BlockReason::StepTimedOut {
                    Forward::RollBack(message)
                } else {
                    Forward::Outcome(Outcome::Blocked { reason, message })
                });
            }
            (step, format!("{reason}: {message}"))
        }
        Err(EngineError::Journal(e)) => return Err(e),
        Err(EngineError::Step { step, name, error }) => {
            let message = error.to_string();
            let s = &mut j.forward.status.steps[step];
            s.state = StepState::Failed;
            s.message = Some(message.clone());
            if before_pnr(j, step) {
                return Ok(Forward::RollBack(format!("step {name} failed: {message}")));
            }
            (step, format!("step failed: {message}"))
        }
    };
    let now = rfc3339(runner.clock.now());
    let out = j.stop_past_pnr(step, stop_cause, now);
    store.save(j).await?;
    Ok(Forward::Outcome(out))
}

/// Plan the rollback of what the forward operation did and journal it;
/// `Some` (blocked) when there is none: the point of no return started.
async fn start_rollback<S: TransplantStore>(
    j: &mut TransplantJournal,
    store: &S,
    why: String,
) -> Result<Option<Outcome>, WorldError> {
    let Some(rb) = rollback_plan(&j.forward) else {
        return Ok(Some(Outcome::Blocked {
            reason: BlockReason::PastPointOfNoReturn,
            message: after_pnr_message(&j.forward, &why),
        }));
    };
    j.forward.status.phase = OperationPhase::RollingBack;
    j.forward.status.message = Some(format!("rolling back: {why}"));
    j.rollback = Some(rb);
    store.save(j).await?;
    Ok(None)
}

/// The rollback, as far as it goes now; once complete, the forward
/// operation's started steps read as rolled back.
async fn roll_back<W: TransplantAct + ?Sized, S: TransplantStore>(
    j: &mut TransplantJournal,
    runner: &TransplantRunner<'_, W>,
    store: &S,
    poll: Duration,
) -> Result<Outcome, WorldError> {
    let mut rb = j.rollback.clone().expect("set above");
    let part = Part {
        store,
        base: std::sync::Mutex::new(j.clone()),
        rollback: true,
    };
    let r = advance(&mut rb, runner, &part, runner.clock, poll).await;
    j.rollback = Some(rb);
    let why = j.forward.status.message.clone().unwrap_or_default();
    match r {
        Ok(Advance::Completed) => {
            j.forward.status.phase = OperationPhase::RolledBack;
            for s in &mut j.forward.status.steps {
                if matches!(
                    s.state,
                    StepState::Succeeded | StepState::Running | StepState::Failed
                ) {
                    s.state = StepState::RolledBack;
                }
            }
            store.save(j).await?;
            Ok(Outcome::RolledBack { why })
        }
        Ok(Advance::Waiting {
            after,
            reason,
            message,
        }) => Ok(Outcome::Waiting {
            after,
            reason,
            message,
        }),
        Ok(Advance::Blocked {
            reason, message, ..
        }) => Ok(Outcome::Blocked {
            reason: BlockReason::Rollback(Box::new(reason)),
            message: format!("the rollback ({why}) stopped: {message}"),
        }),
        Err(e) => Ok(Outcome::Blocked {
            reason: BlockReason::Rollback(Box::new(BlockReason::StepFailed)),
            message: format!("the rollback ({why}) stopped: {e}; it resumes on the next reconcile"),
        }),
    }
}
