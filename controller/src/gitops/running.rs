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
//!
//! For a transplant journal (`/tritonctl/v1/transplants/`), the controller
//! (`controller::transplant::reconcile`) drives an open journal to its end
//! on the image and options it was planned with; it never re-reads the spec
//! mid-transplant, and it only looks at the shards `spec.shards` names:
//!
//! | the change | before the point of no return | past it |
//! |---|---|---|
//! | same image and strategy (rollout, health edits) | continues | continues |
//! | a different image | finishes on its image (past its point of no return), then planned again; `tritonctl cancel` first to stop it | **apply refused** |
//! | `strategy` or `transplant` options changed | **apply refused** when it asks for `rolling` (cancel first); otherwise finishes, then planned again | **apply refused** |
//! | `rollout.paused: true` | stops before its next step | stops before its next step; **refused** while writes are stopped (steps stop-writes .. start-writes) |
//! | the shard dropped from `spec.shards` | **apply refused** (nothing would drive it: cancel first) | **apply refused** |
//! | a rollback in progress | runs to its end | - |
//! | `tritonctl delete` of the document ([`guard_delete`]) | **refused** (cancel first) | **refused** |

use crds::manatee::{ManateeVersionSpec, Strategy};
use crds::status::{OperationPhase, StepState};
use crds::{Document, Kind};
use reconcilers::manatee::ManateeAction;
use reconcilers::operation::Operation;
use serde::{Deserialize, Serialize};

use reconcilers::transplant::{PNR_STEP, TransplantAction, TransplantJournal};

use super::observed::{JournalRecord, StoredView, TransplantRecord};

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

/// The image a transplant installs.
pub fn transplant_image(j: &TransplantJournal) -> Option<String> {
    j.forward.actions.iter().find_map(|a| match a {
        TransplantAction::SetServiceImage { image, .. } => Some(image.clone()),
        _ => None,
    })
}

fn transplant_position(j: &TransplantJournal) -> String {
    let op = match &j.rollback {
        Some(rb) if j.forward.status.phase == OperationPhase::RollingBack => rb,
        _ => &j.forward,
    };
    let n = op.status.steps.len();
    let at = match op.current() {
        Some(i) => {
            let s = &op.status.steps[i];
            let state = format!("{:?}", s.state).to_lowercase();
            format!("step {}/{n} {} ({state})", i + 1, s.name)
        }
        None => format!("all {n} steps done"),
    };
    if j.rollback.is_some() {
        format!("rollback {at}")
    } else {
        at
    }
}

/// Writes are stopped: `stop-writes` has started and `start-writes` is not done.
pub fn writes_stopped(j: &TransplantJournal) -> bool {
    let st = &j.forward.status.steps;
    let started = |n: &str| {
        st.iter()
            .find(|s| s.name == n)
            .is_some_and(|s| s.state != StepState::Pending)
    };
    let done = |n: &str| {
        st.iter()
            .find(|s| s.name == n)
            .is_some_and(|s| s.state == StepState::Succeeded)
    };
    j.rollback.is_none() && started("stop-writes") && !done("start-writes")
}

/// The rules for open transplant journals meeting a new spec. `old` is the
/// stored spec (None when the document is new to the store).
pub fn decide_transplants(
    name: &str,
    new: &ManateeVersionSpec,
    old: Option<&ManateeVersionSpec>,
    transplants: &[TransplantRecord],
) -> Vec<RunningDecision> {
    let wanted = &new.image.uuid;
    transplants
        .iter()
        .filter(|t| !t.journal.forward.is_finished())
        .map(|t| {
            let j = &t.journal;
            let f = &j.forward;
            let id = &f.status.id;
            let image = transplant_image(j);
            let past = !f.status.can_roll_back();
            let pnr_n = f
                .status
                .point_of_no_return
                .map_or("?".to_string(), |p| (p + 1).to_string());
            let cancel = format!(
                "`tritonctl cancel manateeversion/{name}` rolls it back (possible until step {pnr_n} {PNR_STEP})"
            );
            let new_image = image.as_ref().is_some_and(|i| i != wanted);
            let strategy_changed = old.is_some_and(|o| {
                o.strategy != new.strategy || o.transplant != new.transplant
            });
            let dropped = !new.shards.contains(&t.target);
            let (rule, why) = if dropped {
                (
                    Rule::Refused,
                    format!(
                        "transplant {id} of shard {} is open and the new spec drops the shard: the controller only drives shards the document names, so the shard would stay mid-transplant (sitters disabled, one-node-write mode, possibly writes stopped) with nothing driving it. {}",
                        t.target,
                        if past {
                            "It is past its point of no return: wait until it finishes, then apply".to_string()
                        } else {
                            format!("Cancel it first ({cancel}), wait for the rollback, then apply")
                        }
                    ),
                )
            } else if j.rollback.is_some() {
                (
                    if new_image {
                        Rule::FinishesThenReplanned
                    } else {
                        Rule::Continues
                    },
                    format!(
                        "transplant {id} is rolling back; the rollback runs to its end, then the shard (on its v1 image) is planned again for this spec"
                    ),
                )
            } else if past && (new_image || strategy_changed) {
                (
                    Rule::Refused,
                    format!(
                        "transplant {id} installs {} and is past its point of no return ({PNR_STEP}, step {pnr_n}); {} cannot be taken by an operation that can only go forward. Wait until it finishes (`tritonctl describe manateeversion {name}`), then apply again",
                        image.as_deref().unwrap_or("?"),
                        if new_image {
                            format!("a new image ({wanted})")
                        } else {
                            "a strategy or transplant-option change".to_string()
                        }
                    ),
                )
            } else if past && new.rollout.paused && writes_stopped(j) {
                (
                    Rule::Refused,
                    format!(
                        "transplant {id} has stopped writes (between stop-writes and start-writes): pausing now would hold the write outage open. Apply the pause once start-writes is done"
                    ),
                )
            } else if new.rollout.paused {
                (
                    Rule::Pauses,
                    "spec.rollout.paused is set: the controller does not drive the transplant until it is cleared".to_string(),
                )
            } else if strategy_changed && new.strategy == Strategy::Rolling {
                (
                    Rule::Refused,
                    format!(
                        "the spec now asks for `strategy: rolling`, but the controller would carry the open transplant {id} on past its point of no return (step {pnr_n}) regardless. Cancel it first ({cancel}), then apply"
                    ),
                )
            } else if new_image || strategy_changed {
                (
                    Rule::FinishesThenReplanned,
                    format!(
                        "transplant {id} runs to its end on {} and the options it was planned with (the controller does not re-read the spec mid-transplant), through its point of no return at step {pnr_n}; then {} is planned again for {wanted}. To stop it instead: {cancel}",
                        image.as_deref().unwrap_or("?"),
                        t.target
                    ),
                )
            } else {
                (
                    Rule::Continues,
                    "the change does not alter what the transplant installs".to_string(),
                )
            };
            RunningDecision {
                target: t.target.clone(),
                operation: id.clone(),
                at: transplant_position(j),
                image,
                past_point_of_no_return: past,
                rule,
                why,
            }
        })
        .collect()
}

/// Every rule for `doc`: its rolling journals and its transplant journals.
pub fn decide_all(doc: &Document, stored: &StoredView) -> Vec<RunningDecision> {
    let mut out = decide(doc, stored.journals(doc.kind(), doc.name()));
    if let Document::ManateeVersion(mv) = doc {
        let old = match stored.get(Kind::ManateeVersion, doc.name()) {
            Some((Document::ManateeVersion(o), _)) => Some(o.spec),
            _ => None,
        };
        out.extend(decide_transplants(
            doc.name(),
            &mv.spec,
            old.as_ref(),
            stored.transplants(doc.name()),
        ));
    }
    out
}

/// Refuse applying `docs` when a rule says so. The message names the
/// document, the operation and what to do.
pub fn check(docs: &[Document], stored: &StoredView) -> Result<(), String> {
    let mut refusals = Vec::new();
    for d in docs {
        if d.kind() != Kind::ManateeVersion {
            continue;
        }
        for r in decide_all(d, stored) {
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
            .map_err(|e| Guard::Error(e.to_string()))?;
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
        let ts = super::observed::load_transplants(store.coord(), d.name())
            .await
            .map_err(Guard::Error)?;
        for t in &ts {
            if !t.journal.forward.is_finished() {
                let path = crate::layout::transplant_journal_path(d.name(), &t.target);
                let version = match store.coord().exists(&path).await {
                    Ok(Some(stat)) => stat.version,
                    Ok(None) => continue,
                    Err(e) => return Err(Guard::Error(e.to_string())),
                };
                ops.push(coord::Op::check(path, coord::Expect::Version(version)));
            }
        }
        view.transplants.insert(d.key(), ts);
        // The stored document, for the strategy comparison.
        if let Some(doc) = store
            .get(d.kind(), d.name())
            .await
            .map_err(|e| Guard::Error(e.to_string()))?
        {
            let mut doc = doc;
            let rv = doc.metadata().resource_version.clone().unwrap_or_default();
            let generation = doc.metadata().generation.unwrap_or(1);
            doc.set_status(None);
            doc.metadata_mut().resource_version = None;
            view.documents.insert(
                d.key(),
                super::observed::StoredDoc {
                    document: super::canonical(&doc.to_value()),
                    resource_version: rv,
                    generation,
                },
            );
        }
    }
    check(docs, &view).map_err(Guard::Refused)?;
    Ok(ops)
}

/// Refuse deleting a ManateeVersion while one of its transplants is open:
/// the controller drives a transplant journal only while its document
/// exists, so the shard would be left mid-transplant (sitters disabled,
/// one-node-write mode, possibly writes stopped) with nothing driving it.
pub async fn guard_delete(
    store: &crate::store::Store,
    kind: Kind,
    name: &str,
) -> Result<(), Guard> {
    // A rolling upgrade or an HA setup in flight: deleting the document
    // would strand it (our freeze, the shard's lock) mid-way.
    let rolling: Vec<String> =
        match kind {
            Kind::ManateeVersion => crate::reconcile::load_journals_of::<
                reconcilers::manatee::ManateeAction,
            >(store.coord(), kind, name)
            .await
            .map_err(|e| Guard::Error(e.to_string()))?
            .into_iter()
            .filter(|(_, op, _)| !op.is_finished())
            .map(|(target, op, _)| format!("{target}: {} ({})", op.status.id, op.status.kind))
            .collect(),
            Kind::HeadnodeSet => crate::reconcile::load_journals_of::<
                reconcilers::manatee_ha::HaAction,
            >(store.coord(), kind, name)
            .await
            .map_err(|e| Guard::Error(e.to_string()))?
            .into_iter()
            .filter(|(_, op, _)| !op.is_finished())
            .map(|(target, op, _)| format!("{target}: {} ({})", op.status.id, op.status.kind))
            .collect(),
            Kind::ShardTopology => Vec::new(),
        };
    if !rolling.is_empty() {
        return Err(Guard::Refused(format!(
            "refused: {kind}/{name} has an operation in flight, and the controller drives it only while the document exists (it may hold the shard's lock or a freeze it made):\n  {}\n`tritonctl pause {}/{name}` stops it at the next step; delete once it has finished",
            rolling.join("\n  "),
            kind.short()
        )));
    }
    if kind != Kind::ManateeVersion {
        return Ok(());
    }
    let ts = super::observed::load_transplants(store.coord(), name)
        .await
        .map_err(Guard::Error)?;
    let open: Vec<String> = ts
        .iter()
        .filter(|t| !t.journal.forward.is_finished())
        .map(|t| {
            let f = &t.journal.forward;
            format!(
                "{}: transplant {} at {} ({})",
                t.target,
                f.status.id,
                transplant_position(&t.journal),
                if f.status.can_roll_back() {
                    format!("before its point of no return: `tritonctl cancel manateeversion/{name}` rolls it back; delete once the rollback is done")
                } else {
                    "past its point of no return: delete once it has finished".to_string()
                }
            )
        })
        .collect();
    if open.is_empty() {
        Ok(())
    } else {
        Err(Guard::Refused(format!(
            "refused: ManateeVersion/{name} has a transplant in flight, and the controller drives it only while the document exists:\n  {}",
            open.join("\n  ")
        )))
    }
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
    world: &dyn reconcilers::manatee::ManateeObserve,
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
