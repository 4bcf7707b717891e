//! The transplant's journal: forward operation, rollback, stops past the
//! point of no return and the decisions taken on them.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationPhase;
use serde::{Deserialize, Serialize};

use super::TransplantAction;
use super::pnr::{PastPnrStop, after_pnr_message};
use crate::error::{BlockReason, WaitReason, WorldError};
use crate::operation::{Journal, Operation};

/// The transplant of one shard as stored: the forward operation and, once
/// started, its rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransplantJournal {
    pub forward: Operation<TransplantAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Operation<TransplantAction>>,
    /// Set while the transplant is stopped past its point of no return:
    /// nothing runs until a person approves one of [`DECISIONS`](super::DECISIONS) for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<PastPnrStop>,
    /// How many such stops there were (numbers the next one).
    #[serde(default)]
    pub stops: u32,
    /// Every decision taken on such a stop, oldest first (the audit trail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<String>,
}

impl TransplantJournal {
    pub fn new(forward: Operation<TransplantAction>) -> TransplantJournal {
        TransplantJournal {
            forward,
            rollback: None,
            stopped: None,
            stops: 0,
            decisions: Vec::new(),
        }
    }

    /// Record a stop past the point of no return; returns its outcome.
    pub(super) fn stop_past_pnr(&mut self, step: usize, cause: String, now: String) -> Outcome {
        self.stops += 1;
        let stop = PastPnrStop {
            seq: self.stops,
            step,
            name: self.forward.status.steps[step].name.clone(),
            cause,
            at: now,
        };
        let message = stop_message(&self.forward, &stop);
        self.forward.status.phase = OperationPhase::Waiting;
        self.forward.status.message = Some(message.clone());
        self.stopped = Some(stop);
        Outcome::Blocked {
            reason: BlockReason::PastPointOfNoReturn,
            message,
        }
    }
}

/// The Blocked message of a stop past the point of no return.
pub fn stop_message(forward: &Operation<TransplantAction>, stop: &PastPnrStop) -> String {
    after_pnr_message(
        forward,
        &format!(
            "Stop {} at step {} ({}): {}",
            stop.seq,
            stop.step + 1,
            stop.name,
            stop.cause
        ),
    )
}

/// Where [`TransplantJournal`]s are saved.
#[async_trait]
pub trait TransplantStore: Send + Sync {
    async fn save(&self, j: &TransplantJournal) -> Result<(), WorldError>;
}

pub(super) struct Part<'a, S: TransplantStore> {
    pub(super) store: &'a S,
    pub(super) base: std::sync::Mutex<TransplantJournal>,
    pub(super) rollback: bool,
}

#[async_trait]
impl<S: TransplantStore> Journal<TransplantAction> for Part<'_, S> {
    async fn save(&self, op: &Operation<TransplantAction>) -> Result<(), WorldError> {
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

/// How far [`drive`](super::drive) got.
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
