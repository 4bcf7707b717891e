//! `tritonctl pause` and `tritonctl resume` (see [`crate::pause`] for why a
//! pause is a marker beside the document and not a spec edit).

use crds::Kind;

use super::Failure;
use crate::pause::{self, PauseMarker, Paused};
use crate::store::Store;

pub async fn pause(
    store: &Store,
    kind: Kind,
    name: &str,
    by: Option<String>,
    reason: Option<String>,
) -> Result<(), Failure> {
    if store.get(kind, name).await?.is_none() {
        return Err(Failure::invalid(format!(
            "{kind} `{name}` not found; nothing to pause (`tritonctl get {}` lists what is stored)",
            kind.short()
        )));
    }
    let marker = PauseMarker::new(by.unwrap_or_else(pause::current_user), reason);
    match pause::pause(store.coord(), kind, name, marker).await? {
        Paused::Now(m) => {
            println!("{}/{name} {}", kind.short(), m.describe());
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
            if let Some(crds::Document::ManateeVersion(d)) = store.get(kind, name).await?
                && d.spec.rollout.paused
            {
                eprintln!(
                    "note: spec.rollout.paused is still set in the document; it stays paused until that is changed and applied"
                );
            }
            Ok(())
        }
        None => Err(Failure::invalid(format!(
            "{kind} `{name}` is not paused by `tritonctl pause`; nothing to resume"
        ))),
    }
}
