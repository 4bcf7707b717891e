//! `tritonctl pause` and `tritonctl resume` (see [`crate::pause`] for why a
//! pause is a marker beside the document and not a spec edit).

use crds::Kind;

use super::Failure;
use crate::pause::{self, PauseMarker, Paused};
use crate::runtime::events::{Event, Events};
use crate::store::Store;

pub async fn pause(
    store: &Store,
    kind: Kind,
    name: &str,
    by: Option<String>,
    reason: Option<String>,
) -> Result<(), Failure> {
    if store.get(kind, name).await?.is_none() {
        return Err(super::objref::not_found(kind, name));
    }
    let who = store.principal().name().to_string();
    let marker = PauseMarker::new(by.unwrap_or_else(|| who.clone()), reason);
    match pause::pause(store.coord(), kind, name, marker).await? {
        Paused::Now(m) => {
            println!("{}/{name} {}", kind.short(), m.describe());
            let message = match &m.reason {
                Some(r) => format!("paused by {}: {r}", m.by),
                None => format!("paused by {} (no reason given)", m.by),
            };
            record(store, kind, name, "Paused", message.clone()).await;
            store
                .audit(
                    crate::auth::audit::Action::Pause,
                    &format!("{}/{name}", kind.short()),
                    &message,
                )
                .await;
            println!(
                "no new step will start until `tritonctl resume {}/{name}`",
                kind.short()
            );
            Ok(())
        }
        Paused::Already(m) => {
            println!(
                "{}/{name} was already {} (kept)",
                kind.short(),
                m.describe()
            );
            Ok(())
        }
    }
}

pub async fn resume(store: &Store, kind: Kind, name: &str) -> Result<(), Failure> {
    match pause::resume(store.coord(), kind, name).await? {
        Some(m) => {
            println!("{}/{name} resumed ({})", kind.short(), m.describe());
            let message = format!(
                "resumed by {} (it was {})",
                store.principal().name(),
                m.describe()
            );
            record(store, kind, name, "Resumed", message.clone()).await;
            store
                .audit(
                    crate::auth::audit::Action::Resume,
                    &format!("{}/{name}", kind.short()),
                    &message,
                )
                .await;
            if let Some(crds::Document::ManateeVersion(d)) = store.get(kind, name).await?
                && d.spec.rollout.paused
            {
                eprintln!(
                    "note: spec.rollout.paused is still set in the document; it stays paused until that is changed and applied"
                );
            }
            Ok(())
        }
        None => match store.get(kind, name).await? {
            None => Err(super::objref::not_found(kind, name)),
            Some(_) => Err(Failure::invalid(format!(
                "{kind} `{name}` is not paused by `tritonctl pause`; nothing to resume"
            ))),
        },
    }
}

/// An operator's pause or resume, as an event naming who (the local user
/// and host, or `--by`, until access control lands). The marker is written
/// already: a failure to record the event is a warning.
async fn record(store: &Store, kind: Kind, name: &str, reason: &str, message: String) {
    let event = Event::normal(format!("{kind}/{name}"), reason, message);
    if let Err(e) = Events::new(store.coord().clone())
        .record(&event, None)
        .await
    {
        eprintln!("warning: the {reason} event was not recorded: {e}");
    }
}
