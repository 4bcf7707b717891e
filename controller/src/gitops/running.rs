//! Where a change meets an operation in flight.
//!
//! The rules, per operation journal that has not finished, for a new
//! `ManateeVersion` spec:
//!
//! | the change | before the point of no return | past it |
//! |---|---|---|
//! | same image (rollout, health, approval edits) | continues | continues |
//! | `rollout.paused: true` | stops before its next step | stops before its next step |
//! | a different image | finishes on its image, then the shard is planned again for the new one | **apply refused** |
//! | the shard's roles moved since planning (a takeover) | re-planned at its next reprovision step | the same, unless refused above |
//!
//! "Finishes, then planned again" is what the controller does: it drives an
//! unfinished journal to its end (its steps name their image) and plans a
//! shard anew only when no journal of it is open. Past the point of no return
//! the operation can only go forward, and a second image queued behind an
//! irreversible step (a transplant) is refused: wait for it to finish, then
//! apply.

use crds::status::{OperationPhase, StepState};
use crds::{Document, Kind};
use reconcilers::manatee::ManateeAction;
use reconcilers::operation::Operation;
use serde::{Deserialize, Serialize};

use super::observed::{JournalRecord, StoredView};

/// What happens to a running operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Rule {
    Continues,
    /// Stops before its next step and waits (spec.rollout.paused).
    Pauses,
    /// Runs to its end on its own image; then the shard is planned again.
    FinishesThenReplanned,
    /// The shard moved under it (a takeover): its next reprovision step
    /// stops it and the shard is planned again from what is there.
    ReplannedAtNextStep,
    /// The apply is refused.
    Refused,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Continues => "continues",
            Rule::Pauses => "pauses before its next step",
            Rule::FinishesThenReplanned => "finishes, then the shard is planned again",
            Rule::ReplannedAtNextStep => "re-planned at its next reprovision step",
            Rule::Refused => "apply refused",
        }
    }
}

/// The decision for one running operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningDecision {
    pub target: String,
    pub operation: String,
    /// The step it is at: `N/M name (state)`.
    pub at: String,
    /// The image its steps install, if it installs one.
    pub image: Option<String>,
    pub past_point_of_no_return: bool,
    pub rule: Rule,
    pub why: String,
}

/// The image an operation's steps install.
pub fn operation_image(op: &Operation<ManateeAction>) -> Option<String> {
    op.actions.iter().find_map(|a| match a {
        ManateeAction::Reprovision { image, .. } => Some(image.clone()),
        _ => None,
    })
}

/// Whether an irreversible step has started.
pub fn past_point_of_no_return(op: &Operation<ManateeAction>) -> bool {
    op.status.point_of_no_return.is_some_and(|i| {
        op.status
            .steps
            .get(i)
            .is_some_and(|s| !matches!(s.state, StepState::Pending))
    })
}

fn is_open(op: &Operation<ManateeAction>) -> bool {
    !op.is_finished() && op.status.phase != OperationPhase::Succeeded
}

fn position(op: &Operation<ManateeAction>) -> String {
    let n = op.status.steps.len();
    match op.current() {
        Some(i) => {
            let s = &op.status.steps[i];
            let state = format!("{:?}", s.state).to_lowercase();
            format!("step {}/{n} {} ({state})", i + 1, s.name)
        }
        None => format!("all {n} steps done"),
    }
}

/// Decide for every unfinished journal of `doc`.
pub fn decide(doc: &Document, journals: &[JournalRecord]) -> Vec<RunningDecision> {
    let Document::ManateeVersion(mv) = doc else {
        return Vec::new();
    };
    let wanted = &mv.spec.image.uuid;
    journals
        .iter()
        .filter(|j| is_open(&j.operation))
        .map(|j| {
            let op = &j.operation;
            let image = operation_image(op);
            let ponr = past_point_of_no_return(op);
            let (rule, why) = if image.as_ref().is_some_and(|i| i != wanted) {
                if ponr {
                    (
                        Rule::Refused,
                        format!(
                            "operation {} installs {} and is past its point of no return ({}); a new image cannot be queued behind an irreversible step. Wait until it finishes (`tritonctl describe manateeversion {}`), then apply again",
                            op.status.id,
                            image.as_deref().unwrap_or("?"),
                            op.status
                                .point_of_no_return
                                .and_then(|i| op.status.steps.get(i))
                                .map_or("?", |s| s.name.as_str()),
                            mv.metadata.name
                        ),
                    )
                } else {
                    (
                        Rule::FinishesThenReplanned,
                        format!(
                            "operation {} installs {}; it runs to its end (every step is reversible), then {} is planned again for {wanted}",
                            op.status.id,
                            image.as_deref().unwrap_or("?"),
                            j.target
                        ),
                    )
                }
            } else if mv.spec.rollout.paused {
                (
                    Rule::Pauses,
                    "spec.rollout.paused is set: the controller starts no further step".to_string(),
                )
            } else {
                (
                    Rule::Continues,
                    "the change does not alter what the operation installs".to_string(),
                )
            };
            RunningDecision {
                target: j.target.clone(),
                operation: op.status.id.clone(),
                at: position(op),
                image,
                past_point_of_no_return: ponr,
                rule,
                why,
            }
        })
        .collect()
}

/// Refuse applying `docs` when a rule says so. The message names the
/// document, the operation and what to do.
pub fn check(docs: &[Document], stored: &StoredView) -> Result<(), String> {
    let mut refusals = Vec::new();
    for d in docs {
        if d.kind() != Kind::ManateeVersion {
            continue;
        }
        for r in decide(d, stored.journals(d.kind(), d.name())) {
            if r.rule == Rule::Refused {
                refusals.push(format!("{} ({}): {}", d.key(), r.target, r.why));
            }
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "refused, an operation in flight cannot take this change:\n  {}",
            refusals.join("\n  ")
        ))
    }
}

/// Check `docs` against the journals in the store and return the ops that
/// pin those journals for the apply's transaction: if an operation moves
/// (e.g. past its point of no return) between this check and the write, the
/// apply fails as a conflict instead of slipping through.
pub async fn guard(
    store: &crate::store::Store,
    docs: &[Document],
) -> Result<Vec<coord::Op>, Guard> {
    let mut view = StoredView::default();
    let mut ops = Vec::new();
    for d in docs.iter().filter(|d| d.kind() == Kind::ManateeVersion) {
        let js = crate::reconcile::load_journals(store.coord(), d.kind(), d.name())
            .await
            .map_err(Guard::Error)?;
        let dir = crate::reconcile::journal_dir(d.kind(), d.name());
        let mut records = Vec::new();
        for (target, operation, version) in js {
            if !operation.is_finished() {
                ops.push(coord::Op::check(
                    format!("{dir}/{target}"),
                    coord::Expect::Version(version),
                ));
            }
            records.push(JournalRecord { target, operation });
        }
        view.journals.insert(d.key(), records);
    }
    check(docs, &view).map_err(Guard::Refused)?;
    Ok(ops)
}

/// Why [`guard`] stopped an apply.
#[derive(Debug)]
pub enum Guard {
    Refused(String),
    Error(String),
}

/// Refine decisions with what the shard looks like now: the controller's
/// runner stops an operation at a reprovision step whose peer no longer has
/// the role it was planned for (`Replan`), cancels it and plans the shard
/// again. Diff shows that ahead of time. A refusal stays a refusal.
pub async fn refine_with_observation(
    decisions: &mut [RunningDecision],
    journals: &[JournalRecord],
    world: &dyn reconcilers::manatee::ManateeWorld,
) {
    for d in decisions.iter_mut() {
        if d.rule == Rule::Refused {
            continue;
        }
        let Some(j) = journals
            .iter()
            .find(|j| j.operation.status.id == d.operation)
        else {
            continue;
        };
        let Ok(obs) = world.observe(&j.target).await else {
            continue;
        };
        let op = &j.operation;
        let from = op.current().unwrap_or(op.actions.len());
        for a in &op.actions[from..] {
            let ManateeAction::Reprovision { zone, role, image } = a else {
                continue;
            };
            let Some(peer) = obs.peer(zone) else { break };
            if &peer.image == image {
                continue; // done already: its gate opens
            }
            let now = obs.role_of(zone);
            if now != *role {
                d.rule = Rule::ReplannedAtNextStep;
                d.why = format!(
                    "shard {} changed since operation {} was planned: {} is now {now:?}, planned as {role:?}. Its next reprovision step stops it and the controller plans the shard again from what is there",
                    j.target, op.status.id, peer.alias
                );
            }
            break;
        }
    }
}
