//! Reconcile, one shape for every kind.
//!
//! [`run`] is the whole life of one reconcile: the shared opening (load the
//! document, note its generation, the pause gate), the kind's own
//! [`KindReconcile::reconcile`], and [`finish`], the one place that turns
//! what the kind found (an [`Outcome`], or the error it met) into
//! conditions, events, the status write and the requeue [`Action`]. A kind
//! never writes conditions itself; its operation journals write the
//! operation (and keep Ready/Progressing truthful at every step boundary,
//! see [`journal::StoreJournal`]) in the same fenced multi-op.
//!
//! The kinds and strategies, one module each:
//! - [`manatee`]: a ManateeVersion's rolling upgrade, shard by shard;
//! - [`transplant`]: a ManateeVersion's v1 -> v2 brain transplant;
//! - [`manatee_version`]: which of the two a ManateeVersion's shard gets;
//! - [`headnodes`]: a HeadnodeSet's manatee HA setup.
//!
//! Shared pieces: [`journal`] (journals saved with the status, loading
//! them), [`decisions`] (what `tritonctl approve` and `cancel` record).

pub mod decisions;
pub mod headnodes;
pub mod journal;
pub mod manatee;
pub mod manatee_version;
pub mod transplant;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, Coordination};
use crds::meta::Resource;
use crds::{ConditionStatus, ConditionType, Document, Kind, Status};
use reconcilers::clock::{Clock, SystemClock, rfc3339};
use reconcilers::error::WorldError;
use reconcilers::operation::POLL;

use crate::runtime::events::{Event, EventType, Events};
use crate::runtime::queue::Action;
use crate::store::{Fence, Store, StoreError};

pub use crate::layout::journal_dir;
pub use decisions::approve;
pub use headnodes::reconcile_headnodes;
pub use journal::{load_journals, load_journals_of, step_kind};
pub use manatee_version::reconcile_manatee;

/// Everything a reconcile needs.
pub struct Context<W> {
    pub store: Store,
    pub events: Events,
    pub world: W,
    pub fence: Option<Fence>,
    pub clock: Arc<dyn Clock>,
    /// How often completion checks poll (scaled down in the simulator).
    pub poll: Duration,
    /// The transplant strategy's world; without it only rolling upgrades run.
    pub transplant: Option<Arc<dyn reconcilers::transplant::TransplantAct>>,
    /// Step durations and event counts for `/metrics` (the daemon sets it).
    pub metrics: Option<crate::runtime::metrics::Metrics>,
}

impl<W> Context<W> {
    pub(crate) fn coord(&self) -> &Arc<dyn Coordination> {
        self.store.coord()
    }

    pub(crate) fn now(&self) -> String {
        rfc3339(self.clock.now())
    }

    pub(crate) async fn event(&self, e: Event) {
        match self.events.record(&e, self.fence.as_ref()).await {
            Ok(_) => {
                if let Some(m) = &self.metrics {
                    m.event_recorded(e.event_type.as_str());
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not record event"),
        }
    }
}

/// Make a context with the wall clock.
pub fn context<W>(
    store: Store,
    world: W,
    fence: Option<Fence>,
    poll: Option<Duration>,
) -> Context<W> {
    let events = Events::new(store.coord().clone());
    Context {
        store,
        events,
        world,
        fence,
        clock: Arc::new(SystemClock),
        poll: poll.unwrap_or(POLL),
        transplant: None,
        metrics: None,
    }
}

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
    /// An operation journal could not be read.
    #[error("{0}")]
    Journal(String),
    /// The workflow engine could not journal or run a step.
    #[error("{0}")]
    Engine(#[from] reconcilers::operation::EngineError),
}

impl From<String> for ReconcileError {
    fn from(s: String) -> Self {
        ReconcileError::Journal(s)
    }
}

impl ReconcileError {
    /// The `Degraded` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Store(_) | ReconcileError::Coordination(_) => "StoreError",
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

/// Reconcile the document `name` of kind `K`: the opening, the kind's
/// reconcile, then [`finish`].
pub async fn run<W: Send + Sync, K: KindReconcile<W>>(
    cx: &Context<W>,
    kind: &K,
    name: &str,
) -> Result<Action, ReconcileError> {
    let Some(doc) = cx.store.get(K::KIND, name).await?.and_then(K::typed) else {
        return Ok(Action::AwaitChange);
    };
    let generation = doc.metadata.generation.unwrap_or(1);
    let mut status = doc.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let outcome = opening_and_reconcile(cx, kind, name, &doc, &mut status).await;
    finish(cx, K::KIND, name, status, outcome).await
}

async fn opening_and_reconcile<W: Send + Sync, K: KindReconcile<W>>(
    cx: &Context<W>,
    kind: &K,
    name: &str,
    doc: &Resource<K::Spec>,
    status: &mut Status,
) -> Result<Outcome, ReconcileError> {
    cx.coord().mkdirp(&journal_dir(K::KIND, name)).await?;
    // Paused by spec or by `tritonctl pause` (a marker beside the document).
    let marker = crate::pause::get(cx.coord(), K::KIND, name).await?;
    if let Some(why) = crate::pause::paused_message(K::paused_in_spec(&doc.spec), marker.as_ref()) {
        return Ok(Outcome::Paused {
            why: K::pause_note(why),
        });
    }
    status.set_condition(
        ConditionType::Paused,
        ConditionStatus::False,
        "Running",
        "",
        &cx.now(),
    );
    kind.reconcile(cx, name, doc, status).await
}

fn set(status: &mut Status, t: &str, c: ConditionType, on: bool, note: &Note) {
    let s = if on {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    status.set_condition(c, s, &note.reason, &note.message, t);
}

/// The one place a reconcile's result becomes status, events and a
/// requeue. An error is the `Degraded` condition with one Warning event
/// when it changes (not one per retry), and is handed back to the queue,
/// which retries with backoff.
pub async fn finish<W>(
    cx: &Context<W>,
    kind: Kind,
    name: &str,
    mut status: Status,
    outcome: Result<Outcome, ReconcileError>,
) -> Result<Action, ReconcileError> {
    let object = format!("{kind}/{name}");
    let t = cx.now();
    let idle = Note::new("Idle", "");
    let not_blocked = Note::new("NotBlocked", "");
    let no_approval = Note::new("NoApprovalNeeded", "");
    // The first time a block shows, say so in the event log.
    let block_event = |status: &Status, b: &Block| {
        let was = status.is_true(ConditionType::Blocked);
        (!was).then_some(()).and(b.event).map(|ty| {
            Event::new(
                ty,
                object.clone(),
                b.note.reason.clone(),
                b.note.message.clone(),
            )
        })
    };
    let mut events = Vec::new();
    let (action, error) = match outcome {
        Err(error) => {
            // A journal saved before the error holds the latest operation.
            if let Ok(Some(stored)) = cx.store.status(kind, name).await {
                status.operation = stored.operation;
            }
            // One Warning event per change of the condition, not per retry.
            let note = Note::new(error.reason(), error.to_string());
            let same = status.condition(ConditionType::Degraded).is_some_and(|c| {
                c.status == ConditionStatus::True
                    && c.reason == note.reason
                    && c.message == note.message
            });
            if !same {
                events.push(Event::warning(&object, &note.reason, &note.message));
            }
            set(&mut status, &t, ConditionType::Degraded, true, &note);
            let unknown = Note::new("ReconcileFailed", "the last reconcile failed; see Degraded");
            status.set_condition(
                ConditionType::Ready,
                ConditionStatus::Unknown,
                &unknown.reason,
                &unknown.message,
                &t,
            );
            (Action::AwaitChange, Some(error))
        }
        Ok(outcome) => {
            if status.condition(ConditionType::Degraded).is_some() {
                let ok = Note::new("Reconciled", "");
                set(&mut status, &t, ConditionType::Degraded, false, &ok);
            }
            let action = match outcome {
                Outcome::Paused { why } => {
                    let note = Note::new("Paused", why);
                    set(&mut status, &t, ConditionType::Paused, true, &note);
                    Action::AwaitChange
                }
                Outcome::Ready { message, after } => {
                    let ready = Note::new("Converged", message);
                    set(&mut status, &t, ConditionType::Ready, true, &ready);
                    set(&mut status, &t, ConditionType::Progressing, false, &idle);
                    set(
                        &mut status,
                        &t,
                        ConditionType::AwaitingApproval,
                        false,
                        &no_approval,
                    );
                    set(&mut status, &t, ConditionType::Blocked, false, &not_blocked);
                    Action::RequeueAfter(after.max(Duration::from_millis(10)))
                }
                Outcome::Progressing {
                    ready,
                    running,
                    awaiting_approval,
                    blocked,
                    after,
                } => {
                    set(&mut status, &t, ConditionType::Ready, false, &ready);
                    let progressing = Note::new("OperationRunning", running);
                    set(
                        &mut status,
                        &t,
                        ConditionType::Progressing,
                        true,
                        &progressing,
                    );
                    let approval = match awaiting_approval.is_empty() {
                        true => no_approval,
                        false => Note::new("AwaitingApproval", awaiting_approval.join("; ")),
                    };
                    let waits = !awaiting_approval.is_empty();
                    set(
                        &mut status,
                        &t,
                        ConditionType::AwaitingApproval,
                        waits,
                        &approval,
                    );
                    match &blocked {
                        Some(b) => {
                            events.extend(block_event(&status, b));
                            set(&mut status, &t, ConditionType::Blocked, true, &b.note);
                        }
                        None => set(&mut status, &t, ConditionType::Blocked, false, &not_blocked),
                    }
                    Action::RequeueAfter(after.max(Duration::from_millis(10)))
                }
                Outcome::Blocked {
                    ready,
                    block,
                    after,
                } => {
                    events.extend(block_event(&status, &block));
                    set(&mut status, &t, ConditionType::Ready, false, &ready);
                    set(&mut status, &t, ConditionType::Progressing, false, &idle);
                    set(&mut status, &t, ConditionType::Blocked, true, &block.note);
                    match after {
                        Some(d) => Action::RequeueAfter(d.max(Duration::from_millis(10))),
                        None => Action::AwaitChange,
                    }
                }
            };
            (action, None)
        }
    };
    for e in events {
        cx.event(e).await;
    }
    cx.store
        .write_status(kind, name, &status, cx.fence.as_ref())
        .await?;
    match error {
        Some(e) => Err(e),
        None => Ok(action),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::runtime::events::EventType;

    /// A ManateeVersion "kind" whose reconcile answers from a script.
    struct Scripted(Mutex<Vec<Result<Outcome, ReconcileError>>>);

    #[async_trait]
    impl KindReconcile<()> for Scripted {
        type Spec = crds::manatee::ManateeVersionSpec;
        const KIND: Kind = Kind::ManateeVersion;
        fn typed(doc: Document) -> Option<Resource<Self::Spec>> {
            match doc {
                Document::ManateeVersion(d) => Some(d),
                _ => None,
            }
        }
        async fn reconcile(
            &self,
            _cx: &Context<()>,
            _name: &str,
            _doc: &Resource<Self::Spec>,
            _status: &mut Status,
        ) -> Result<Outcome, ReconcileError> {
            self.0.lock().unwrap().remove(0)
        }
    }

    async fn lab() -> Context<()> {
        let c: Arc<dyn Coordination> = coord::MemEnsemble::new().connect();
        let store = Store::new(c);
        store.init().await.unwrap();
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab/manatee.yaml"),
        )
        .unwrap();
        let (mut docs, _) = crds::parse_documents("manatee.yaml", &text);
        store.apply(&[docs.remove(0).document]).await.unwrap();
        context(store, (), None, None)
    }

    async fn warnings(cx: &Context<()>) -> Vec<String> {
        cx.events
            .list(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.event.event_type == EventType::Warning)
            .map(|r| format!("{}: {}", r.event.reason, r.event.message))
            .collect()
    }

    /// Issue #12, item 2: an error a reconcile meets is the Degraded
    /// condition (reason and message) in status and one Warning event, not
    /// one per retry; the next good reconcile clears it.
    #[tokio::test]
    async fn a_reconcile_error_is_a_degraded_condition_and_one_warning_event() {
        let cx = lab().await;
        let err = || {
            Err(ReconcileError::World(WorldError::Missing(
                "no SAPI application `manta`".into(),
            )))
        };
        let kind = Scripted(Mutex::new(vec![
            err(),
            err(),
            Ok(Outcome::Ready {
                message: "1/1".into(),
                after: Duration::from_secs(60),
            }),
        ]));
        let name = "sdc";
        assert!(run(&cx, &kind, name).await.is_err(), "the queue retries");
        let st = cx.store.status(Kind::ManateeVersion, name).await.unwrap();
        let st = st.expect("status written although the reconcile failed");
        let d = st.condition(ConditionType::Degraded).unwrap();
        assert_eq!(d.status, ConditionStatus::True);
        assert_eq!(d.reason, "ReconcileError");
        assert!(d.message.contains("no SAPI application `manta`"), "{d:?}");
        assert_eq!(
            st.condition(ConditionType::Ready).unwrap().status,
            ConditionStatus::Unknown
        );
        assert_eq!(st.observed_generation, Some(1));
        assert!(run(&cx, &kind, name).await.is_err());
        assert_eq!(
            warnings(&cx).await,
            ["ReconcileError: no SAPI application `manta`"],
            "one Warning event, not one per retry"
        );
        run(&cx, &kind, name).await.unwrap();
        let st = cx.store.status(Kind::ManateeVersion, name).await.unwrap();
        let st = st.unwrap();
        assert!(!st.is_true(ConditionType::Degraded), "{st:#?}");
        assert!(st.is_true(ConditionType::Ready), "{st:#?}");
    }
}
