//! The ManateeVersion kind: each shard gets the transplant strategy when
//! its image manifests say so (and the context has a transplant world),
//! the rolling upgrade otherwise. Neither strategy module knows the other.

use async_trait::async_trait;
use crds::manatee::ManateeVersionSpec;
use crds::meta::Resource;
use crds::{Document, Kind, Status};
use reconcilers::manatee::ManateeAct;

use super::context::Context;
use super::finish::run;
use super::outcome::{KindReconcile, Outcome, ReconcileError};
use crate::runtime::queue::Action;

/// The ManateeVersion reconciler.
pub struct ManateeVersionKind;

#[async_trait]
impl<W: ManateeAct> KindReconcile<W> for ManateeVersionKind {
    type Spec = ManateeVersionSpec;
    const KIND: Kind = Kind::ManateeVersion;

    fn typed(doc: Document) -> Option<Resource<ManateeVersionSpec>> {
        match doc {
            Document::ManateeVersion(d) => Some(d),
            _ => None,
        }
    }

    fn paused_in_spec(spec: &ManateeVersionSpec) -> bool {
        spec.rollout.paused
    }

    fn pause_note(why: String) -> String {
        format!(
            "{why} (a step already under way finishes in the world; a shard this operation froze stays frozen, so no takeover happens, until resume)"
        )
    }

    async fn reconcile(
        &self,
        cx: &Context<W>,
        name: &str,
        doc: &Resource<ManateeVersionSpec>,
        status: &mut Status,
    ) -> Result<Outcome, ReconcileError> {
        // The pause gate (before this) holds every strategy.
        if let Some(tw) = cx.transplant.clone()
            && let Some(outcome) =
                super::transplant::reconcile(cx, tw.as_ref(), name, doc, status).await?
        {
            return Ok(outcome);
        }
        super::manatee::reconcile(cx, name, doc, status).await
    }
}

/// Reconcile one ManateeVersion.
pub async fn reconcile_manatee<W: ManateeAct>(
    cx: &Context<W>,
    name: &str,
) -> Result<Action, ReconcileError> {
    run(cx, &ManateeVersionKind, name).await
}
