//! The operation (workflow) engine.
//!
//! A reconciler turns a difference into an [`Operation`]: ordered, typed
//! steps kept as data, so the same plan can be shown in a diff, saved for
//! review, and resumed by another controller. Executing a step is:
//!
//! 1. precondition (a health gate): open, wait, or block;
//! 2. journal "Running" (attempt n) *before* acting;
//! 3. the action, idempotent by construction: check, then act only if the
//!    world does not already show the effect (so a controller killed between
//!    acting and journaling never repeats a side effect);
//! 4. the completion check, polled until done or the step's timeout;
//! 5. journal "Succeeded" *after*.
//!
//! A step that times out stops the operation with what it saw; the engine
//! never skips ahead.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::{OperationPhase, OperationStatus, StepState, StepStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, rfc3339, since};
use crate::error::{BlockReason, WaitReason, WorldError};

/// A planned step before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep<A> {
    pub name: String,
    pub description: String,
    pub touches: Vec<String>,
    pub irreversible: bool,
    pub action: A,
}

/// An operation: its visible status (steps, states, timings) and the typed
/// actions behind the steps. Stored as the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
pub struct Operation<A> {
    pub status: OperationStatus,
    pub actions: Vec<A>,
}

impl<A: Clone> Operation<A> {
    pub fn new(id: &str, kind: &str, target: &str, steps: Vec<PlannedStep<A>>) -> Operation<A> {
        let point_of_no_return = steps.iter().position(|s| s.irreversible);
        let status = OperationStatus {
            id: id.to_string(),
            kind: kind.to_string(),
            target: target.to_string(),
            phase: OperationPhase::Pending,
            started_at: None,
            finished_at: None,
            steps: steps
                .iter()
                .map(|s| StepStatus {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    state: StepState::Pending,
                    touches: s.touches.clone(),
                    irreversible: s.irreversible,
                    ..Default::default()
                })
                .collect(),
            point_of_no_return,
            message: None,
        };
        Operation {
            status,
            actions: steps.into_iter().map(|s| s.action).collect(),
        }
    }

    /// Index of the step to work on next, or None when every step is done.
    pub fn current(&self) -> Option<usize> {
        self.status
            .steps
            .iter()
            .position(|s| !matches!(s.state, StepState::Succeeded | StepState::Skipped))
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self.status.phase,
            OperationPhase::Succeeded
                | OperationPhase::Failed
                | OperationPhase::RolledBack
                | OperationPhase::Cancelled
        )
    }
}

/// What a health gate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Not yet (waiting for approval, a window, a peer to catch up): try again later.
    Wait {
        reason: WaitReason,
        message: String,
    },
    /// Refuse to go on until a person acts (deposed peer, frozen by someone else, ...).
    Block {
        reason: BlockReason,
        message: String,
    },
}

impl Gate {
    pub fn wait(reason: WaitReason, message: impl Into<String>) -> Gate {
        Gate::Wait {
            reason,
            message: message.into(),
        }
    }

    pub fn block(reason: impl Into<BlockReason>, message: impl Into<String>) -> Gate {
        Gate::Block {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What a completion check says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Not yet, with what the check saw (shown to the operator on timeout).
    NotYet(String),
}

/// Runs the actions of one operation type against the world.
#[async_trait]
pub trait StepRunner<A>: Send + Sync {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &A,
    ) -> Result<Gate, WorldError>;
    /// Must be idempotent: look first, act only if the effect is absent.
    async fn act(&self, op: &OperationStatus, step: usize, action: &A) -> Result<(), WorldError>;
    async fn check(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &A,
    ) -> Result<Progress, WorldError>;
    /// How long the completion check may take before the operation stops.
    fn timeout(&self, action: &A) -> Duration;
    /// A step found `Running` when an operation is resumed (after a restart,
    /// or after its action returned an error): whether its action may
    /// already be under way in the world. `false` sends the step through its
    /// gate again before acting, so a resumed step never bypasses its health
    /// gate or window. The default trusts the idempotent action alone.
    async fn dispatched(
        &self,
        _op: &OperationStatus,
        _step: usize,
        _action: &A,
    ) -> Result<bool, WorldError> {
        Ok(true)
    }
    /// A step that failed (its completion check timed out) and whose effect
    /// is still not complete: whether it may be gated and acted on again.
    /// `false` keeps the operation stopped until an operator says so. The
    /// default retries.
    async fn may_retry(
        &self,
        _op: &OperationStatus,
        _step: usize,
        _action: &A,
    ) -> Result<bool, WorldError> {
        Ok(true)
    }
}

/// Where the journal lives (the store, under a fence).
#[async_trait]
pub trait Journal<A>: Send + Sync {
    async fn save(&self, op: &Operation<A>) -> Result<(), WorldError>;
}

/// How far one call to [`advance`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advance {
    /// Every step succeeded.
    Completed,
    /// Waiting: call again after this long.
    Waiting {
        after: Duration,
        reason: WaitReason,
        message: String,
    },
    /// Stopped at a step: a gate blocked, a check timed out or an action kept failing.
    Blocked {
        step: usize,
        reason: BlockReason,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("journal: {0}")]
    Journal(WorldError),
    #[error("step {step} ({name}): {error}")]
    Step {
        step: usize,
        name: String,
        error: WorldError,
    },
}

/// The approval (`tritonctl approve`) that lets attempt `attempts + 1` of a
/// failed step run; runners that stop on a timeout look for it in
/// [`StepRunner::may_retry`].
pub fn retry_key(step: &str, attempts: u32) -> String {
    format!("{step}-retry-{attempts}")
}

/// How often a completion check is polled while it says "not yet".
pub const POLL: Duration = Duration::from_millis(200);

async fn save<A, J: Journal<A>>(journal: &J, op: &Operation<A>) -> Result<(), EngineError> {
    journal.save(op).await.map_err(EngineError::Journal)
}

/// Drive an operation as far as it can go now. Journals before and after
/// every step; returns when it must wait, is blocked, or is done.
pub async fn advance<A, R, J>(
    op: &mut Operation<A>,
    runner: &R,
    journal: &J,
    clock: &dyn Clock,
    poll: Duration,
) -> Result<Advance, EngineError>
where
    A: Clone + Send + Sync,
    R: StepRunner<A>,
    J: Journal<A>,
{
    if op.status.started_at.is_none() {
        op.status.started_at = Some(rfc3339(clock.now()));
    }
    loop {
        let Some(i) = op.current() else {
            op.status.phase = OperationPhase::Succeeded;
            op.status.finished_at = Some(rfc3339(clock.now()));
            op.status.message = None;
            save(journal, op).await?;
            return Ok(Advance::Completed);
        };
        let action = op.actions[i].clone();
        let step = Step {
            i,
            action: &action,
            runner,
            journal,
            clock,
        };
        if op.status.steps[i].state == StepState::Failed {
            match step.failed(op).await? {
                Failed::CompletedMeanwhile => continue,
                Failed::Retry => {}
                Failed::Stop(blocked) => return Ok(blocked),
            }
        }
        if step.needs_gate(op).await? {
            if let Some(stop) = step.pass_gate(op, poll).await? {
                return Ok(stop);
            }
            step.start_attempt(op).await?;
        }
        // Running (just now, or resumed after a restart).
        step.act(op).await?;
        if let Some(timed_out) = step.await_completion(op, poll).await? {
            return Ok(timed_out);
        }
        let s = &mut op.status.steps[i];
        s.state = StepState::Succeeded;
        s.finished_at = Some(rfc3339(clock.now()));
        s.message = None;
        save(journal, op).await?;
    }
}

/// What became of a failed step looked at again.
enum Failed {
    /// The world completed it since: it is journaled as succeeded.
    CompletedMeanwhile,
    /// The runner allows another attempt: gate it and act again.
    Retry,
    /// Stopped until a person allows another attempt.
    Stop(Advance),
}

/// The step [`advance`] works on, with what it works with.
struct Step<'s, A, R, J> {
    i: usize,
    action: &'s A,
    runner: &'s R,
    journal: &'s J,
    clock: &'s dyn Clock,
}

impl<A, R, J> Step<'_, A, R, J>
where
    A: Clone + Send + Sync,
    R: StepRunner<A>,
    J: Journal<A>,
{
    fn err(&self, op: &Operation<A>, error: WorldError) -> EngineError {
        EngineError::Step {
            step: self.i,
            name: op.status.steps[self.i].name.clone(),
            error,
        }
    }

    /// A failed step is looked at before anything is redone: the world may
    /// have completed it since; otherwise it is retried only if the runner
    /// allows it (an operator's approval: `gates::retry_approved`).
    async fn failed(&self, op: &mut Operation<A>) -> Result<Failed, EngineError> {
        let i = self.i;
        let progress = self.runner.check(&op.status, i, self.action).await;
        if progress.map_err(|e| self.err(op, e))? == Progress::Done {
            let s = &mut op.status.steps[i];
            s.state = StepState::Succeeded;
            s.finished_at = Some(rfc3339(self.clock.now()));
            s.message = None;
            save(self.journal, op).await?;
            return Ok(Failed::CompletedMeanwhile);
        }
        let may = self.runner.may_retry(&op.status, i, self.action).await;
        if may.map_err(|e| self.err(op, e))? {
            return Ok(Failed::Retry);
        }
        let s = &op.status.steps[i];
        Ok(Failed::Stop(Advance::Blocked {
            step: i,
            reason: BlockReason::StepFailed,
            message: s
                .message
                .clone()
                .unwrap_or_else(|| format!("step `{}` failed", s.name)),
        }))
    }

    /// Whether the step goes through its gate: a new, waiting or retried
    /// step does, and so does one resumed `Running` whose action the
    /// runner says never went out ([`StepRunner::dispatched`]).
    async fn needs_gate(&self, op: &Operation<A>) -> Result<bool, EngineError> {
        match op.status.steps[self.i].state {
            StepState::Pending | StepState::Waiting | StepState::Failed => Ok(true),
            StepState::Running => {
                let sent = self
                    .runner
                    .dispatched(&op.status, self.i, self.action)
                    .await;
                Ok(!sent.map_err(|e| self.err(op, e))?)
            }
            _ => Ok(false),
        }
    }

    /// The gate: `None` when open; else the step is journaled waiting and
    /// why is returned.
    async fn pass_gate(
        &self,
        op: &mut Operation<A>,
        poll: Duration,
    ) -> Result<Option<Advance>, EngineError> {
        let gate = self
            .runner
            .precondition(&op.status, self.i, self.action)
            .await;
        match gate.map_err(|e| self.err(op, e))? {
            Gate::Open => Ok(None),
            Gate::Wait { reason, message } => {
                let s = &mut op.status.steps[self.i];
                if s.state != StepState::Waiting || s.message.as_deref() != Some(&message) {
                    s.state = StepState::Waiting;
                    s.message = Some(message.clone());
                    op.status.phase = OperationPhase::Waiting;
                    op.status.message = Some(message.clone());
                    save(self.journal, op).await?;
                }
                Ok(Some(Advance::Waiting {
                    after: poll.max(Duration::from_millis(50)) * 5,
                    reason,
                    message,
                }))
            }
            Gate::Block { reason, message } => {
                let s = &mut op.status.steps[self.i];
                s.state = StepState::Waiting;
                s.message = Some(message.clone());
                op.status.phase = OperationPhase::Waiting;
                op.status.message = Some(message.clone());
                save(self.journal, op).await?;
                Ok(Some(Advance::Blocked {
                    step: self.i,
                    reason,
                    message,
                }))
            }
        }
    }

    /// Journal before acting: a restart sees this step as Running and
    /// re-runs the idempotent action, which then finds its effect.
    async fn start_attempt(&self, op: &mut Operation<A>) -> Result<(), EngineError> {
        let now = rfc3339(self.clock.now());
        let i = self.i;
        let s = &mut op.status.steps[i];
        s.state = StepState::Running;
        s.attempts += 1;
        s.started_at = Some(now);
        s.finished_at = None;
        s.message = None;
        op.status.phase = OperationPhase::Running;
        op.status.message = Some(format!("step {}: {}", i + 1, s.description));
        save(self.journal, op).await
    }

    async fn act(&self, op: &Operation<A>) -> Result<(), EngineError> {
        let done = self.runner.act(&op.status, self.i, self.action).await;
        done.map_err(|e| self.err(op, e))
    }

    /// Poll the completion check until done (`None`) or the step's
    /// timeout: then the step is journaled failed and the operation stops.
    async fn await_completion(
        &self,
        op: &mut Operation<A>,
        poll: Duration,
    ) -> Result<Option<Advance>, EngineError> {
        let i = self.i;
        let timeout = self.runner.timeout(self.action);
        loop {
            let progress = self.runner.check(&op.status, i, self.action).await;
            let saw = match progress.map_err(|e| self.err(op, e))? {
                Progress::Done => return Ok(None),
                Progress::NotYet(saw) => saw,
            };
            let started = op.status.steps[i].started_at.clone().unwrap_or_default();
            if since(&started, self.clock.now()) > timeout {
                let name = op.status.steps[i].name.clone();
                let message = format!(
                    "step `{name}` did not complete within {}s; last seen: {saw}",
                    timeout.as_secs()
                );
                let s = &mut op.status.steps[i];
                s.state = StepState::Failed;
                s.message = Some(message.clone());
                op.status.phase = OperationPhase::Waiting;
                op.status.message = Some(message.clone());
                save(self.journal, op).await?;
                return Ok(Some(Advance::Blocked {
                    step: i,
                    reason: BlockReason::StepTimedOut,
                    message,
                }));
            }
            if op.status.steps[i].message.as_deref() != Some(&saw) {
                op.status.steps[i].message = Some(saw);
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests;
