//! The journal of one move and [`drive`]: forward; before the point of no
//! return a cancel or a failure rolls back; after it, a stop is Blocked
//! and only goes forward (a failed step retries once `tritonctl approve`
//! allows it; going back is a new resharding in reverse).

use std::time::Duration;

use async_trait::async_trait;
use crds::status::{OperationPhase, StepState};
use serde::{Deserialize, Serialize};

use super::plan::rollback_plan;
use super::{MoveJob, ReshardAct, ReshardAction, ReshardRunner, ShardRows};
use crate::clock::rfc3339;
use crate::error::{BlockReason, WaitReason, WorldError};
use crate::operation::{Advance, EngineError, Journal, Operation, advance};

/// One move as stored: what it works with, the forward operation and,
/// once started, its rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReshardJournal {
    pub job: MoveJob,
    pub forward: Operation<ReshardAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Operation<ReshardAction>>,
}

impl ReshardJournal {
    /// Which side of the point of no return the move is on, in words.
    pub fn side(&self) -> &'static str {
        if self.forward.status.can_roll_back() {
            "before the point of no return (install-ring): a cancel or a failure rolls back"
        } else {
            "past the point of no return (install-ring): it only goes forward; going back is a new resharding in reverse"
        }
    }
}

/// Where [`ReshardJournal`]s are saved.
#[async_trait]
pub trait ReshardStore: Send + Sync {
    async fn save(&self, j: &ReshardJournal) -> Result<(), WorldError>;
}

struct Part<'a, S: ReshardStore> {
    store: &'a S,
    base: std::sync::Mutex<ReshardJournal>,
    rollback: bool,
}

#[async_trait]
impl<S: ReshardStore> Journal<ReshardAction> for Part<'_, S> {
    async fn save(&self, op: &Operation<ReshardAction>) -> Result<(), WorldError> {
        let j = {
            let mut b = self.base.lock().unwrap();
            if self.rollback {
                b.rollback = Some(op.clone());
            } else {
                b.forward = op.clone();
            }
            b.clone()
        };
        self.store.save(&j).await
    }
}

/// How far [`drive`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    RolledBack {
        why: String,
    },
    Waiting {
        after: Duration,
        reason: WaitReason,
        message: String,
    },
    Blocked {
        reason: BlockReason,
        message: String,
    },
}

/// Where the forward phase left the move.
enum Forward {
    Outcome(Outcome),
    RollBack(String),
}

/// An error the same call may not meet again: the API's server failed
/// (5xx), the connection did, or the answer was lost.
fn transient(e: &WorldError) -> bool {
    e.outcome_unknown()
        || e.status().is_some_and(|s| s >= 500)
        || matches!(e.root(), WorldError::Transport(_))
}

/// Drive one move as far as it goes now.
pub async fn drive<W: ReshardAct + ShardRows + ?Sized, S: ReshardStore>(
    j: &mut ReshardJournal,
    runner: &ReshardRunner<'_, W>,
    store: &S,
    cancel: bool,
    poll: Duration,
) -> Result<Outcome, WorldError> {
    if j.rollback.is_none() {
        let why = match forward(j, runner, store, cancel, poll).await? {
            Forward::Outcome(o) => return Ok(o),
            Forward::RollBack(why) => why,
        };
        let Some(rb) = rollback_plan(&j.job, &j.forward) else {
            return Ok(Outcome::Blocked {
                reason: BlockReason::PastPointOfNoReturn,
                message: format!("{why}; {}", j.side()),
            });
        };
        j.forward.status.phase = OperationPhase::RollingBack;
        j.forward.status.message = Some(format!("rolling back: {why}"));
        j.rollback = Some(rb);
        store.save(j).await?;
    }
    roll_back(j, runner, store, poll).await
}

async fn forward<W: ReshardAct + ShardRows + ?Sized, S: ReshardStore>(
    j: &mut ReshardJournal,
    runner: &ReshardRunner<'_, W>,
    store: &S,
    cancel: bool,
    poll: Duration,
) -> Result<Forward, WorldError> {
    if j.forward.is_finished() {
        return Ok(Forward::Outcome(Outcome::Completed));
    }
    if cancel {
        if j.forward.status.can_roll_back() {
            return Ok(Forward::RollBack("cancelled".into()));
        }
        return Ok(Forward::Outcome(Outcome::Blocked {
            reason: BlockReason::PastPointOfNoReturn,
            message: format!("cancel refused: the move is {}", j.side()),
        }));
    }
    let part = Part {
        store,
        base: std::sync::Mutex::new(j.clone()),
        rollback: false,
    };
    let r = advance(&mut j.forward, runner, &part, runner.clock, poll).await;
    let before_pnr = |j: &ReshardJournal| j.forward.status.can_roll_back();
    Ok(match r {
        Ok(Advance::Completed) => Forward::Outcome(Outcome::Completed),
        Ok(Advance::Waiting {
            after,
            reason,
            message,
        }) => Forward::Outcome(Outcome::Waiting {
            after,
            reason,
            message,
        }),
        Ok(Advance::Blocked {
            reason, message, ..
        }) => {
            if before_pnr(j) && reason == BlockReason::StepTimedOut {
                Forward::RollBack(message)
            } else if before_pnr(j) {
                Forward::Outcome(Outcome::Blocked { reason, message })
            } else {
                Forward::Outcome(Outcome::Blocked {
                    reason: BlockReason::PastPointOfNoReturn,
                    message: format!("{reason}: {message}; the move is {}", j.side()),
                })
            }
        }
        Err(EngineError::Journal(e)) => return Err(e),
        Err(EngineError::Step { name, error, .. }) if transient(&error) => {
            // The step stays Running; its act looks before it acts, so the
            // next reconcile resumes it (a 5xx is not a reason to roll back).
            Forward::Outcome(Outcome::Waiting {
                after: poll.max(Duration::from_millis(50)) * 5,
                reason: WaitReason::Settling,
                message: format!("step {name}: {error}; retrying"),
            })
        }
        Err(EngineError::Step { step, name, error }) => {
            let message = error.to_string();
            let s = &mut j.forward.status.steps[step];
            s.state = StepState::Failed;
            s.message = Some(message.clone());
            if before_pnr(j) {
                Forward::RollBack(format!("step {name} failed: {message}"))
            } else {
                j.forward.status.phase = OperationPhase::Waiting;
                j.forward.status.message = Some(format!("step {name} failed: {message}"));
                store.save(j).await?;
                Forward::Outcome(Outcome::Blocked {
                    reason: BlockReason::PastPointOfNoReturn,
                    message: format!(
                        "step {name} failed: {message}; the move is {}; `tritonctl approve` retries the step",
                        j.side()
                    ),
                })
            }
        }
    })
}

async fn roll_back<W: ReshardAct + ShardRows + ?Sized, S: ReshardStore>(
    j: &mut ReshardJournal,
    runner: &ReshardRunner<'_, W>,
    store: &S,
    poll: Duration,
) -> Result<Outcome, WorldError> {
    let mut rb = j.rollback.clone().expect("set by drive");
    if rb.is_finished() && j.forward.status.phase == OperationPhase::RolledBack {
        let why = j.forward.status.message.clone().unwrap_or_default();
        return Ok(Outcome::RolledBack { why });
    }
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
            j.forward.status.finished_at = Some(rfc3339(runner.clock.now()));
            for s in &mut j.forward.status.steps {
                if matches!(
                    s.state,
                    StepState::Succeeded
                        | StepState::Running
                        | StepState::Failed
                        | StepState::Waiting
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
