//! What a kind's reconcile answers ([`Outcome`]) or could not get past
//! ([`ReconcileError`]), and the trait a kind implements ([`KindReconcile`]).

use std::time::Duration;

use async_trait::async_trait;
use coord::CoordError;
use crds::meta::Resource;
use crds::{Document, Kind, Status};
use reconcilers::error::WorldError;

use super::context::Context;
use super::journal::JournalError;
use crate::runtime::events::EventType;
use crate::store::StoreError;

/// What a reconcile could not get past. It becomes the `Degraded`
/// condition and one Warning event (see [`finish`]), and the queue retries
/// with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The document store (status, journals, locks) failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Coordination(#[from] CoordError),
    /// Observing or acting on the datacenter failed.
    #[error("{0}")]
    World(#[from] WorldError),
    /// A shard's lock could not be read, taken or released.
    #[error("{0}")]
    Lock(#[from] crate::shard_lock::LockError),
    /// An operation journal could not be read.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// The workflow engine could not journal or run a step.
    #[error("{0}")]
    Engine(#[from] reconcilers::operation::EngineError),
}

impl ReconcileError {
    /// The `Degraded` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Store(_)
            | ReconcileError::Coordination(_)
            | ReconcileError::Lock(_) => "StoreError",
            ReconcileError::World(_) | ReconcileError::Journal(_) | ReconcileError::Engine(_) => {
                "ReconcileError"
            }
        }
    }
}

/// A condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Note {
        Note {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Why nothing (or part of the work) goes on, and which event says so the
/// first time (none when the kind recorded its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub note: Note,
    pub event: Option<EventType>,
}

impl Block {
    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Block {
        Block {
            note: Note::new(reason, message),
            event: Some(EventType::Warning),
        }
    }
}

/// What a kind's reconcile found; [`finish`] writes it. `ready` is the
/// Ready condition's reason and message (Ready is False in every outcome
/// but [`Outcome::Ready`]).
#[derive(Debug)]
pub enum Outcome {
    /// The world is what the document asks; look again after `after`.
    Ready { message: String, after: Duration },
    /// Operations are under way (`running`), some perhaps waiting for
    /// `tritonctl approve`, some targets perhaps blocked.
    Progressing {
        ready: Note,
        running: String,
        awaiting_approval: Vec<String>,
        blocked: Option<Block>,
        after: Duration,
    },
    /// Nothing can go on until something changes; `after: None` waits for a
    /// change of the document.
    Blocked {
        ready: Note,
        block: Block,
        after: Option<Duration>,
    },
    /// `tritonctl pause` or `spec.rollout.paused`.
    Paused { why: String },
}

/// One kind's reconcile. Adding a kind: implement this (see
/// ARCHITECTURE.md, "Adding a kind") and register it in the daemon's
/// `Dispatch` with one line.
#[async_trait]
pub trait KindReconcile<W: Send + Sync>: Send + Sync {
    /// The spec type of the kind's documents.
    type Spec: Send + Sync;
    const KIND: Kind;

    /// The document, if it is of this kind.
    fn typed(doc: Document) -> Option<Resource<Self::Spec>>;

    /// A pause declared in the spec (`spec.rollout.paused`).
    fn paused_in_spec(_spec: &Self::Spec) -> bool {
        false
    }

    /// What the Paused condition adds to the pause's reason.
    fn pause_note(why: String) -> String {
        why
    }

    /// Observe, plan and drive. May set `status.operation` (what status
    /// shows of the journals); conditions and the status write are
    /// [`finish`]'s.
    async fn reconcile(
        &self,
        cx: &Context<W>,
        name: &str,
        doc: &Resource<Self::Spec>,
        status: &mut Status,
    ) -> Result<Outcome, ReconcileError>;
}
