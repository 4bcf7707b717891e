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
    async fn check(&self, _: &OperationStatus, _: usize, a: &u32) -> Result<Progress, WorldError> {
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
    async fn check(&self, _: &OperationStatus, _: usize, _: &u32) -> Result<Progress, WorldError> {
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
    async fn check(&self, _: &OperationStatus, _: usize, _: &u32) -> Result<Progress, WorldError> {
        Ok(if self.done {
            Progress::Done
        } else {
            Progress::NotYet("not yet".into())
        })
    }
    fn timeout(&self, _: &u32) -> Duration {
        Duration::from_secs(3600)
    }
    async fn dispatched(&self, _: &OperationStatus, _: usize, _: &u32) -> Result<bool, WorldError> {
        Ok(self.dispatched)
    }
    async fn may_retry(&self, _: &OperationStatus, _: usize, _: &u32) -> Result<bool, WorldError> {
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
