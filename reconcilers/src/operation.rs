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
        let step_err = |error: WorldError, op: &Operation<A>| EngineError::Step {
            step: i,
            name: op.status.steps[i].name.clone(),
            error,
        };

        // A failed step is looked at before anything is redone: the world
        // may have completed it since; otherwise it is retried only if the
        // runner allows it (an operator's approval, for manatee).
        if op.status.steps[i].state == StepState::Failed {
            if runner
                .check(&op.status, i, &action)
                .await
                .map_err(|e| step_err(e, op))?
                == Progress::Done
            {
                let s = &mut op.status.steps[i];
                s.state = StepState::Succeeded;
                s.finished_at = Some(rfc3339(clock.now()));
                s.message = None;
                save(journal, op).await?;
                continue;
            }
            if !runner
                .may_retry(&op.status, i, &action)
                .await
                .map_err(|e| step_err(e, op))?
            {
                let s = &op.status.steps[i];
                return Ok(Advance::Blocked {
                    step: i,
                    reason: BlockReason::StepFailed,
                    message: s
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("step `{}` failed", s.name)),
                });
            }
        }
        let resumed_undispatched = op.status.steps[i].state == StepState::Running
            && !runner
                .dispatched(&op.status, i, &action)
                .await
                .map_err(|e| step_err(e, op))?;
        if resumed_undispatched
            || matches!(
                op.status.steps[i].state,
                StepState::Pending | StepState::Waiting | StepState::Failed
            )
        {
            match runner
                .precondition(&op.status, i, &action)
                .await
                .map_err(|e| step_err(e, op))?
            {
                Gate::Open => {}
                Gate::Wait { reason, message } => {
                    let s = &mut op.status.steps[i];
                    if s.state != StepState::Waiting || s.message.as_deref() != Some(&message) {
                        s.state = StepState::Waiting;
                        s.message = Some(message.clone());
                        op.status.phase = OperationPhase::Waiting;
                        op.status.message = Some(message.clone());
                        save(journal, op).await?;
                    }
                    return Ok(Advance::Waiting {
                        after: poll.max(Duration::from_millis(50)) * 5,
                        reason,
                        message,
                    });
                }
                Gate::Block { reason, message } => {
                    let s = &mut op.status.steps[i];
                    s.state = StepState::Waiting;
                    s.message = Some(message.clone());
                    op.status.phase = OperationPhase::Waiting;
                    op.status.message = Some(message.clone());
                    save(journal, op).await?;
                    return Ok(Advance::Blocked {
                        step: i,
                        reason,
                        message,
                    });
                }
            }
            // Journal before acting: a restart sees this step as Running and
            // re-runs the idempotent action, which then finds its effect.
            let now = rfc3339(clock.now());
            let s = &mut op.status.steps[i];
            s.state = StepState::Running;
            s.attempts += 1;
            s.started_at = Some(now);
            s.finished_at = None;
            s.message = None;
            op.status.phase = OperationPhase::Running;
            op.status.message = Some(format!("step {}: {}", i + 1, s.description));
            save(journal, op).await?;
        }

        // Running (just now, or resumed after a restart).
        runner
            .act(&op.status, i, &action)
            .await
            .map_err(|e| step_err(e, op))?;
        let timeout = runner.timeout(&action);
        loop {
            match runner
                .check(&op.status, i, &action)
                .await
                .map_err(|e| step_err(e, op))?
            {
                Progress::Done => break,
                Progress::NotYet(saw) => {
                    let started = op.status.steps[i].started_at.clone().unwrap_or_default();
                    let elapsed = since(&started, clock.now());
                    if elapsed > timeout {
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
                        save(journal, op).await?;
                        return Ok(Advance::Blocked {
                            step: i,
                            reason: BlockReason::StepTimedOut,
                            message,
                        });
                    }
                    if op.status.steps[i].message.as_deref() != Some(&saw) {
                        op.status.steps[i].message = Some(saw);
                    }
                    tokio::time::sleep(poll).await;
                }
            }
        }
        let s = &mut op.status.steps[i];
        s.state = StepState::Succeeded;
        s.finished_at = Some(rfc3339(clock.now()));
        s.message = None;
        save(journal, op).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use std::sync::Mutex;

    /// A world of counters: `act` increments a counter once per step, as a
    /// side effect that must never repeat.
    struct Counters {
        effects: Mutex<Vec<u32>>,
        blocked_at: Option<usize>,
    }

    #[async_trait]
    impl StepRunner<u32> for Counters {
        async fn precondition(
            &self,
            _: &OperationStatus,
            step: usize,
            _: &u32,
        ) -> Result<Gate, WorldError> {
            Ok(if self.blocked_at == Some(step) {
                Gate::block(BlockReason::Test, "blocked")
            } else {
                Gate::Open
            })
        }
        async fn act(&self, _: &OperationStatus, _: usize, a: &u32) -> Result<(), WorldError> {
            let mut e = self.effects.lock().unwrap();
            if !e.contains(a) {
                e.push(*a);
            }
            Ok(())
        }
        async fn check(
            &self,
            _: &OperationStatus,
            _: usize,
            a: &u32,
        ) -> Result<Progress, WorldError> {
            Ok(if self.effects.lock().unwrap().contains(a) {
                Progress::Done
            } else {
                Progress::NotYet("nothing".into())
            })
        }
        fn timeout(&self, _: &u32) -> Duration {
            Duration::from_secs(1)
        }
    }

    struct Saved(Mutex<Vec<Operation<u32>>>);

    #[async_trait]
    impl Journal<u32> for Saved {
        async fn save(&self, op: &Operation<u32>) -> Result<(), WorldError> {
            self.0.lock().unwrap().push(op.clone());
            Ok(())
        }
    }

    fn plan(n: u32) -> Operation<u32> {
        let steps = (0..n)
            .map(|i| PlannedStep {
                name: format!("s{i}"),
                description: format!("step {i}"),
                touches: vec![],
                irreversible: i == 2,
                action: i,
            })
            .collect();
        Operation::new("op-1", "test", "t", steps)
    }

    #[tokio::test]
    async fn runs_every_step_once_and_journals_before_and_after() {
        let w = Counters {
            effects: Mutex::new(vec![]),
            blocked_at: None,
        };
        let j = Saved(Mutex::new(vec![]));
        let mut op = plan(4);
        assert_eq!(op.status.point_of_no_return, Some(2));
        let r = advance(&mut op, &w, &j, &SystemClock, Duration::from_millis(1))
            .await
            .unwrap();
        assert_eq!(r, Advance::Completed);
        assert_eq!(*w.effects.lock().unwrap(), vec![0, 1, 2, 3]);
        let saves = j.0.lock().unwrap();
        // before + after per step, plus the final save.
        assert_eq!(saves.len(), 9);
        assert_eq!(saves[0].status.steps[0].state, StepState::Running);
        assert_eq!(saves[1].status.steps[0].state, StepState::Succeeded);
    }

    #[tokio::test]
    async fn resuming_from_every_journal_point_repeats_no_effect() {
        // Record every journal state of a full run, then restart from each one
        // (as a controller killed right after that save would) against a world
        // that already has the effects made up to that point.
        let w = Counters {
            effects: Mutex::new(vec![]),
            blocked_at: None,
        };
        let j = Saved(Mutex::new(vec![]));
        let mut op = plan(4);
        advance(&mut op, &w, &j, &SystemClock, Duration::from_millis(1))
            .await
            .unwrap();
        let saves = j.0.lock().unwrap().clone();
        for (k, snapshot) in saves.iter().enumerate() {
            // Effects present at that save: steps Succeeded, and a Running step
            // may or may not have acted; test the worse case (it did).
            let done: Vec<u32> = snapshot
                .status
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s.state, StepState::Succeeded | StepState::Running))
                .map(|(i, _)| i as u32)
                .collect();
            let w2 = Counters {
                effects: Mutex::new(done),
                blocked_at: None,
            };
            let mut resumed = snapshot.clone();
            let r = advance(
                &mut resumed,
                &w2,
                &Saved(Mutex::new(vec![])),
                &SystemClock,
                Duration::from_millis(1),
            )
            .await
            .unwrap();
            assert_eq!(r, Advance::Completed, "resume from save {k}");
            assert_eq!(
                *w2.effects.lock().unwrap(),
                vec![0, 1, 2, 3],
                "resume from save {k} repeated or skipped an effect"
            );
        }
    }

    #[tokio::test]
    async fn a_blocked_gate_stops_without_skipping_ahead() {
        let w = Counters {
            effects: Mutex::new(vec![]),
            blocked_at: Some(1),
        };
        let j = Saved(Mutex::new(vec![]));
        let mut op = plan(3);
        let r = advance(&mut op, &w, &j, &SystemClock, Duration::from_millis(1))
            .await
            .unwrap();
        assert!(matches!(r, Advance::Blocked { step: 1, .. }));
        assert_eq!(*w.effects.lock().unwrap(), vec![0]);
        assert_eq!(op.status.steps[2].state, StepState::Pending);
    }

    struct NeverDone;
    #[async_trait]
    impl StepRunner<u32> for NeverDone {
        async fn precondition(
            &self,
            _: &OperationStatus,
            _: usize,
            _: &u32,
        ) -> Result<Gate, WorldError> {
            Ok(Gate::Open)
        }
        async fn act(&self, _: &OperationStatus, _: usize, _: &u32) -> Result<(), WorldError> {
            Ok(())
        }
        async fn check(
            &self,
            _: &OperationStatus,
            _: usize,
            _: &u32,
        ) -> Result<Progress, WorldError> {
            Ok(Progress::NotYet("peer 10.0.0.3 lag 42s".into()))
        }
        fn timeout(&self, _: &u32) -> Duration {
            Duration::from_millis(30)
        }
    }

    #[tokio::test]
    async fn a_timed_out_check_blocks_with_what_it_saw() {
        let j = Saved(Mutex::new(vec![]));
        let mut op = plan(2);
        let r = advance(
            &mut op,
            &NeverDone,
            &j,
            &SystemClock,
            Duration::from_millis(5),
        )
        .await
        .unwrap();
        match r {
            Advance::Blocked {
                step: 0, message, ..
            } => assert!(message.contains("lag 42s"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(op.status.steps[0].state, StepState::Failed);
        assert_eq!(op.status.steps[1].state, StepState::Pending);
    }

    /// A runner whose gate, dispatch knowledge and retry permission are set
    /// by the test; it counts every `act`.
    struct Gated {
        gate_open: bool,
        dispatched: bool,
        may_retry: bool,
        done: bool,
        acts: Mutex<u32>,
    }

    #[async_trait]
    impl StepRunner<u32> for Gated {
        async fn precondition(
            &self,
            _: &OperationStatus,
            _: usize,
            _: &u32,
        ) -> Result<Gate, WorldError> {
            Ok(if self.gate_open {
                Gate::Open
            } else {
                Gate::wait(WaitReason::Health, "sync not caught up")
            })
        }
        async fn act(&self, _: &OperationStatus, _: usize, _: &u32) -> Result<(), WorldError> {
            *self.acts.lock().unwrap() += 1;
            Ok(())
        }
        async fn check(
            &self,
            _: &OperationStatus,
            _: usize,
            _: &u32,
        ) -> Result<Progress, WorldError> {
            Ok(if self.done {
                Progress::Done
            } else {
                Progress::NotYet("not yet".into())
            })
        }
        fn timeout(&self, _: &u32) -> Duration {
            Duration::from_secs(3600)
        }
        async fn dispatched(
            &self,
            _: &OperationStatus,
            _: usize,
            _: &u32,
        ) -> Result<bool, WorldError> {
            Ok(self.dispatched)
        }
        async fn may_retry(
            &self,
            _: &OperationStatus,
            _: usize,
            _: &u32,
        ) -> Result<bool, WorldError> {
            Ok(self.may_retry)
        }
    }

    fn gated(gate_open: bool, dispatched: bool, may_retry: bool, done: bool) -> Gated {
        Gated {
            gate_open,
            dispatched,
            may_retry,
            done,
            acts: Mutex::new(0),
        }
    }

    /// One `advance` with a throwaway journal and a 1 ms poll.
    async fn run(op: &mut Operation<u32>, w: &Gated) -> Result<Advance, EngineError> {
        advance(
            op,
            w,
            &Saved(Mutex::new(vec![])),
            &SystemClock,
            Duration::from_millis(1),
        )
        .await
    }

    fn with_first_step(state: StepState) -> Operation<u32> {
        let mut op = plan(1);
        op.status.steps[0].state = state;
        op.status.steps[0].attempts = 1;
        op.status.steps[0].started_at = Some(rfc3339(SystemClock.now()));
        op
    }

    #[tokio::test]
    async fn a_resumed_step_whose_action_never_went_out_passes_its_gate_again() {
        // Journaled Running, then the controller died before the call went
        // out; meanwhile the gate closed. Nothing may be sent.
        let w = gated(false, false, true, false);
        let mut op = with_first_step(StepState::Running);
        let r = tokio::time::timeout(Duration::from_secs(5), run(&mut op, &w)).await;
        assert_eq!(*w.acts.lock().unwrap(), 0, "acted past a closed gate");
        let r = r.expect("returns at the closed gate").unwrap();
        assert!(matches!(r, Advance::Waiting { .. }), "{r:?}");
        assert_eq!(*w.acts.lock().unwrap(), 0, "acted past a closed gate");
        // Once the gate opens it runs, once.
        let w = gated(true, false, true, true);
        let r = run(&mut op, &w).await.unwrap();
        assert_eq!(r, Advance::Completed);
        assert_eq!(*w.acts.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_resumed_step_already_under_way_is_not_gated_again() {
        // Its job runs: the gate (which its own disruption closes) must not
        // hold it; the idempotent action and the check carry on.
        let w = gated(false, true, true, true);
        let mut op = with_first_step(StepState::Running);
        let r = run(&mut op, &w).await.unwrap();
        assert_eq!(r, Advance::Completed);
    }

    #[tokio::test]
    async fn a_failed_step_is_not_retried_without_permission_but_completes_if_the_world_did() {
        let w = gated(true, true, false, false);
        let mut op = with_first_step(StepState::Failed);
        let r = run(&mut op, &w).await.unwrap();
        assert!(
            matches!(&r, Advance::Blocked { reason, .. } if *reason == BlockReason::StepFailed),
            "{r:?}"
        );
        assert_eq!(
            *w.acts.lock().unwrap(),
            0,
            "retried a failed step on its own"
        );
        // The world finished it meanwhile: done, without acting.
        let w = gated(true, true, false, true);
        let r = run(&mut op, &w).await.unwrap();
        assert_eq!(r, Advance::Completed);
        assert_eq!(*w.acts.lock().unwrap(), 0);
        // With permission, a failed step is gated and acted on again.
        let w = gated(true, true, true, false);
        let mut op = with_first_step(StepState::Failed);
        let _ = tokio::time::timeout(Duration::from_millis(200), run(&mut op, &w)).await;
        assert_eq!(*w.acts.lock().unwrap(), 1);
    }
}
