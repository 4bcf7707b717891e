//! [`drive`]: forward, past-PNR stops and decisions, rollback.

use std::time::Duration;

use crds::status::{OperationPhase, StepState};

use super::journal::{Outcome, Part, TransplantJournal, TransplantStore, stop_message};
use super::pnr::{after_pnr_message, decision_key};
use super::rollback::rollback_plan;
use super::runner::{TransplantAct, TransplantRunner};
use crate::error::{BlockReason, WorldError};
use crate::operation::{Advance, EngineError, advance};

/// Drive a transplant: forward until done; before the point of no return a
/// failure or a cancel rolls back; after it, a failure, a timeout or a
/// blocked gate records a [`PastPnrStop`] and nothing more runs, not even a
/// retry, until a person approves an option for that stop
/// ([`decision_key`]): `resume` retries the step once. The other options
/// are described ([`reverse_transplant_plan`], [`restore_backup_plan`]) and
/// refused by tritonctl: they are not automated.
pub async fn drive<W: TransplantAct + ?Sized, S: TransplantStore>(
    j: &mut TransplantJournal,
    runner: &TransplantRunner<'_, W>,
    store: &S,
    cancel: bool,
    poll: Duration,
) -> Result<Outcome, WorldError> {
    if j.rollback.is_none() {
        // Stopped past the point of no return: nothing runs, not even a
        // retry, until a person approves an option for this very stop.
        if let Some(stop) = j.stopped.clone()
            && !j.forward.is_finished()
        {
            let id = j.forward.status.id.clone();
            let key = decision_key(stop.seq, "resume");
            if !runner.world.approved(&id, &key).await? {
                return Ok(Outcome::Blocked {
                    reason: BlockReason::PastPointOfNoReturn,
                    message: stop_message(&j.forward, &stop),
                });
            }
            let now = crate::clock::rfc3339(runner.clock.now());
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
        }
        let mut why: Option<String> = None;
        if cancel {
            if j.forward.status.can_roll_back() {
                why = Some("cancelled".into());
            } else if !j.forward.is_finished() {
                let m = after_pnr_message(&j.forward, "Cancel requested");
                return Ok(Outcome::Blocked {
                    reason: BlockReason::PastPointOfNoReturn,
                    message: m,
                });
            }
        }
        if why.is_none() && !j.forward.is_finished() {
            let part = Part {
                store,
                base: std::sync::Mutex::new(j.clone()),
                rollback: false,
            };
            let r = advance(&mut j.forward, runner, &part, runner.clock, poll).await;
            match r {
                Ok(Advance::Completed) => return Ok(Outcome::Completed),
                Ok(Advance::Waiting {
                    after,
                    reason,
                    message,
                }) => {
                    return Ok(Outcome::Waiting {
                        after,
                        reason,
                        message,
                    });
                }
                Ok(Advance::Blocked {
                    reason,
                    message,
                    step,
                }) => {
                    let before_pnr = j.forward.status.point_of_no_return.is_none_or(|p| step < p);
                    if reason == BlockReason::StepTimedOut && before_pnr {
                        why = Some(message);
                    } else if before_pnr {
                        return Ok(Outcome::Blocked { reason, message });
                    } else {
                        let now = crate::clock::rfc3339(runner.clock.now());
                        let out = j.stop_past_pnr(step, format!("{reason}: {message}"), now);
                        store.save(j).await?;
                        return Ok(out);
                    }
                }
                Err(EngineError::Journal(e)) => return Err(e),
                Err(EngineError::Step { step, name, error }) => {
                    let message = error.to_string();
                    let before_pnr = j.forward.status.point_of_no_return.is_none_or(|p| step < p);
                    let s = &mut j.forward.status.steps[step];
                    s.state = StepState::Failed;
                    s.message = Some(message.clone());
                    if before_pnr {
                        why = Some(format!("step {name} failed: {message}"));
                    } else {
                        let now = crate::clock::rfc3339(runner.clock.now());
                        let out = j.stop_past_pnr(step, format!("step failed: {message}"), now);
                        store.save(j).await?;
                        return Ok(out);
                    }
                }
            }
        }
        let Some(why) = why else {
            return Ok(Outcome::Completed);
        };
        let Some(rb) = rollback_plan(&j.forward) else {
            return Ok(Outcome::Blocked {
                reason: BlockReason::PastPointOfNoReturn,
                message: after_pnr_message(&j.forward, &why),
            });
        };
        j.forward.status.phase = OperationPhase::RollingBack;
        j.forward.status.message = Some(format!("rolling back: {why}"));
        j.rollback = Some(rb);
        store.save(j).await?;
    }
    // Rolling back.
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
