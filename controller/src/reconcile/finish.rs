//! The life of one reconcile: the shared opening, the kind's reconcile,
//! and [`finish`], the one place that writes conditions, events and status
//! and turns the answer into a requeue.

use std::time::Duration;

use crds::meta::Resource;
use crds::{ConditionStatus, ConditionType, Kind, Status};

use super::context::Context;
use super::outcome::{Block, KindReconcile, Note, Outcome, ReconcileError};
use crate::layout::journal_dir;
use crate::runtime::events::Event;
use crate::runtime::queue::Action;

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
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use coord::Coordination;
    use crds::Document;
    use reconcilers::error::WorldError;

    use super::super::context::context;
    use super::*;
    use crate::runtime::events::EventType;
    use crate::store::Store;

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
