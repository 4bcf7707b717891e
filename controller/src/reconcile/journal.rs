//! Operation journals in the store: loading them, and saving one together
//! with the document's status in one fenced multi-op (the engine's
//! [`Journal`]), with an event for every step that changed state.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, Coordination, Op};
use crds::status::{OperationPhase, OperationStatus, StepState};
use crds::{ConditionStatus, ConditionType, Kind, Status};
use reconcilers::error::{BlockReason, WorldError};
use reconcilers::manatee::ManateeAction;
use reconcilers::operation::{Journal, Operation};
use reconcilers::transplant::TransplantJournal;

use super::context::Context;
use crate::layout::{journal_dir, status_path, transplant_dir};
use crate::runtime::events::Event;
use crate::store::{Fence, upsert_op};

impl<W> Context<W> {
    /// A step reached an end state: observe its duration under its step
    /// kind (the name without the per-zone suffix, to bound label values).
    fn step_ended(&self, kind: Kind, step: &crds::status::StepStatus) {
        let Some(m) = &self.metrics else { return };
        let outcome = match step.state {
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            _ => return,
        };
        let elapsed = match (
            step.started_at
                .as_deref()
                .and_then(reconcilers::clock::parse_rfc3339),
            step.finished_at
                .as_deref()
                .and_then(reconcilers::clock::parse_rfc3339),
        ) {
            (Some(a), Some(b)) if b >= a => (b - a).unsigned_abs(),
            _ => Duration::ZERO,
        };
        m.step_finished(kind.as_str(), step_kind(&step.name), outcome, elapsed);
    }
}

/// `reprovision-async-cbf0d377` -> `reprovision-async`: step names carry a
/// short zone id so they are unique; metrics want the kind of step.
pub fn step_kind(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((head, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// A journal that could not be read from the store.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{0}")]
    Coordination(#[from] CoordError),
    /// The stored journal does not parse (`what` names the kind of journal).
    #[error("{what} {path}: {source}")]
    Malformed {
        what: &'static str,
        path: String,
        source: serde_json::Error,
    },
}

/// Load every operation journal of a document, by target.
pub async fn load_journals(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<(String, Operation<ManateeAction>, i32)>, JournalError> {
    load_journals_of(coord, kind, name).await
}

/// [`load_journals`] for operations of any step type.
pub async fn load_journals_of<A: serde::de::DeserializeOwned + serde::Serialize>(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<(String, Operation<A>, i32)>, JournalError> {
    let dir = journal_dir(kind, name);
    let children = match coord.children(&dir).await {
        Ok(c) => c,
        Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for c in children {
        let path = format!("{dir}/{c}");
        let (data, stat) = coord.get(&path).await?;
        let op: Operation<A> =
            serde_json::from_slice(&data).map_err(|source| JournalError::Malformed {
                what: "journal",
                path,
                source,
            })?;
        out.push((c, op, stat.version));
    }
    Ok(out)
}

/// One transplant journal, if there is one at `path`.
pub async fn load_transplant(
    coord: &Arc<dyn Coordination>,
    path: &str,
) -> Result<Option<TransplantJournal>, JournalError> {
    match coord.get(path).await {
        Ok((data, _)) => {
            serde_json::from_slice(&data)
                .map(Some)
                .map_err(|source| JournalError::Malformed {
                    what: "transplant journal",
                    path: path.to_string(),
                    source,
                })
        }
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every transplant journal of a ManateeVersion, by shard.
pub async fn transplant_journals(
    coord: &Arc<dyn Coordination>,
    name: &str,
) -> Result<Vec<(String, TransplantJournal)>, JournalError> {
    let dir = transplant_dir(name);
    let children = match coord.children(&dir).await {
        Ok(c) => c,
        Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for c in children {
        if let Some(j) = load_transplant(coord, &format!("{dir}/{c}")).await? {
            out.push((c, j));
        }
    }
    Ok(out)
}

/// Ready and Progressing as an operation stands, written with its journal
/// at every step boundary (issue #12, item 1): from the moment an
/// operation is planned until it succeeds, Ready is False and Progressing
/// True naming the step. A stopped operation leaves Ready False (finish
/// says why); a succeeded one leaves the conditions to finish.
pub(crate) fn operation_conditions(status: &mut Status, op: &OperationStatus, now: &str) {
    let n = op.steps.len();
    let at = op
        .steps
        .iter()
        .position(|s| !matches!(s.state, StepState::Succeeded | StepState::Skipped));
    let step = at.map_or_else(
        || format!("{}: all {n} steps done", op.target),
        |i| {
            let s = &op.steps[i];
            format!(
                "{}: step {}/{n} {} ({:?})",
                op.target,
                i + 1,
                s.name,
                s.state
            )
        },
    );
    match op.phase {
        OperationPhase::Pending
        | OperationPhase::Running
        | OperationPhase::Waiting
        | OperationPhase::RollingBack => {
            let ready = format!("{}: operation {} in progress", op.target, op.id);
            status.set_condition(
                ConditionType::Ready,
                ConditionStatus::False,
                "Converging",
                &ready,
                now,
            );
            status.set_condition(
                ConditionType::Progressing,
                ConditionStatus::True,
                "OperationRunning",
                &step,
                now,
            );
        }
        OperationPhase::Failed | OperationPhase::RolledBack | OperationPhase::Cancelled => {
            let ready = format!("{}: operation {} stopped at {step}", op.target, op.id);
            status.set_condition(
                ConditionType::Ready,
                ConditionStatus::False,
                "OperationStopped",
                &ready,
                now,
            );
        }
        OperationPhase::Succeeded => {}
    }
}

/// Saves one operation's journal together with the document's status, and
/// records an event for every step that changed state.
pub(crate) struct StoreJournal<'a, W, A = ManateeAction> {
    pub(crate) cx: &'a Context<W>,
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) status: std::sync::Mutex<Status>,
    pub(crate) last: std::sync::Mutex<Option<Operation<A>>>,
}

impl<'a, W, A> StoreJournal<'a, W, A> {
    pub(crate) fn new(
        cx: &'a Context<W>,
        kind: Kind,
        name: &str,
        target: &str,
        status: Status,
        op: Operation<A>,
    ) -> Self {
        StoreJournal {
            cx,
            kind,
            name: name.to_string(),
            path: crate::layout::journal_path(kind, name, target),
            status: std::sync::Mutex::new(status),
            last: std::sync::Mutex::new(Some(op)),
        }
    }

    /// The status as last saved.
    pub(crate) fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }
}

#[async_trait]
impl<W: Send + Sync, A: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync>
    Journal<A> for StoreJournal<'_, W, A>
{
    async fn save(&self, op: &Operation<A>) -> Result<(), WorldError> {
        let coord = self.cx.coord();
        let mut status = self.status.lock().unwrap().clone();
        status.operation = Some(op.status.clone());
        operation_conditions(&mut status, &op.status, &self.cx.now());
        let spath = status_path(self.kind, &self.name);
        let mut ops: Vec<Op> = self.cx.fence.iter().map(Fence::op).collect();
        let jdata = serde_json::to_vec(op).expect("journal serializes");
        let sdata = serde_json::to_vec(&status).expect("status serializes");
        ops.push(upsert_op(coord.as_ref(), &self.path, jdata).await?);
        ops.push(upsert_op(coord.as_ref(), &spath, sdata).await?);
        coord.multi(ops).await.map_err(|e| {
            WorldError::from(e).context("saving the journal (is this controller still the leader?)")
        })?;
        *self.status.lock().unwrap() = status;
        // Events for what changed since the last save.
        let prev = self.last.lock().unwrap().replace(op.clone());
        let object = format!("{}/{}", self.kind, self.name);
        for (i, s) in op.status.steps.iter().enumerate() {
            let before = prev
                .as_ref()
                .and_then(|p| p.status.steps.get(i))
                .map(|p| (p.state, p.message.clone()));
            if before.as_ref().map(|b| b.0) == Some(s.state)
                && (s.state != StepState::Waiting
                    || before.as_ref().and_then(|b| b.1.clone()) == s.message)
            {
                continue;
            }
            self.cx.step_ended(self.kind, s);
            let detail = s.message.clone().unwrap_or_else(|| s.description.clone());
            let ev = match s.state {
                StepState::Running => Event::normal(
                    &object,
                    "StepStarted",
                    format!("{}: {detail}", op.status.target),
                ),
                StepState::Succeeded => Event::normal(
                    &object,
                    "StepSucceeded",
                    format!("{}: {}", op.status.target, s.description),
                ),
                StepState::Waiting => Event::normal(
                    &object,
                    "StepWaiting",
                    format!("{}: {detail}", op.status.target),
                ),
                StepState::Failed => Event::warning(
                    &object,
                    "StepFailed",
                    format!("{}: {detail}", op.status.target),
                ),
                _ => continue,
            };
            self.cx
                .event(
                    ev.with_operation(op.status.id.clone())
                        .with_step(s.name.clone()),
                )
                .await;
        }
        Ok(())
    }
}

/// A step stopped by a timeout is never retried on its own; say how to.
pub(crate) fn with_retry_hint(
    kind: Kind,
    name: &str,
    reason: &BlockReason,
    message: String,
) -> String {
    if reason.needs_retry_approval() {
        format!(
            "{message}; nothing is retried on its own: fix the cause, then `tritonctl approve {}/{name}` to try the step again",
            kind.as_str().to_lowercase()
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::step_kind;

    #[test]
    fn step_kind_drops_only_the_zone_suffix() {
        assert_eq!(step_kind("reprovision-async-cbf0d377"), "reprovision-async");
        assert_eq!(step_kind("wait-healthy"), "wait-healthy");
        assert_eq!(step_kind("preflight"), "preflight");
        // Not an 8-hex-digit suffix: kept whole.
        assert_eq!(step_kind("create-peer-manatee2"), "create-peer-manatee2");
    }
}
