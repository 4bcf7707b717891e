//! `tritonctl diff`: per document, the spec change against what is stored
//! and the operation each reconciler would run against the observed world.
//!
//! One module per kind: [`manatee`] (rolling upgrades, and the order every
//! strategy of a ManateeVersion starts in), [`transplant`] (the v1 -> v2
//! brain transplant), [`headnodes`] (a HeadnodeSet and the HA setup of shard
//! sdc), [`topology`] (a ShardTopology and its ring). [`types`] holds the
//! review's data, [`common`] what the kinds share, [`downgrade`] the image
//! age check; `gitops::render` turns a review into text and Markdown. When a
//! rolling upgrade starts is `reconcilers::rollout::schedule`'s answer, the
//! controller's own rules. Siblings import `types` and `common`, never each
//! other's parent, except `manatee` -> `transplant` (one direction).

mod common;
mod downgrade;
mod headnodes;
mod manatee;
mod reshard;
mod topology;
mod transplant;
mod types;

use crds::Document;

pub use common::executed;
pub use reshard::{POINT_OF_NO_RETURN, RESHARD_STEPS};
pub use topology::{desired_ring, ranges};
pub use types::*;

use super::observed::{StoredView, World};
use super::running;

/// Format tag of `diff -o json` and of the review inside a plan.
pub const REVIEW_FORMAT: &str = "tritonctl.review/v1";

// ---------------------------------------------------------------------------

/// The document as YAML for the spec diff: fields sorted, no status, no
/// store bookkeeping (generation, resourceVersion).
pub fn review_yaml(doc: &serde_json::Value) -> String {
    let mut v = doc.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(|x| x.as_object_mut()) {
            meta.remove("generation");
            meta.remove("resourceVersion");
        }
    }
    super::to_yaml(&super::canonical(&v))
}

pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// Plan every document. `world` None: only the spec diffs (no observation).
pub async fn review(
    docs: &[Document],
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<Review, String> {
    let mut out = Vec::new();
    for doc in docs {
        out.push(review_one(doc, stored, world).await?);
    }
    // What is printed (a pull request comment) or saved in a plan never
    // carries a credential: an endpoint's, or one an error message quotes.
    Ok(super::redact::scrubbed(Review {
        format: REVIEW_FORMAT.into(),
        observed: world.map(|w| w.source()),
        documents: out,
    }))
}

async fn review_one(
    doc: &Document,
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<DocReview, String> {
    let kind = doc.kind();
    let name = doc.name();
    let old = stored.get(kind, name);
    let new_yaml = review_yaml(&doc.to_value());
    let (change, spec_diff, rv, generation) = match &old {
        None => (
            Change::Create,
            unified("", &new_yaml, "/dev/null", &format!("new {kind}/{name}")),
            None,
            None,
        ),
        Some((_, s)) => {
            let old_yaml = review_yaml(&s.document);
            let change = if old_yaml == new_yaml {
                Change::Unchanged
            } else {
                Change::Update
            };
            (
                change,
                unified(
                    &old_yaml,
                    &new_yaml,
                    &format!(
                        "stored {kind}/{name} (resourceVersion {}, generation {})",
                        s.resource_version, s.generation
                    ),
                    &format!("new {kind}/{name}"),
                ),
                Some(s.resource_version.clone()),
                Some(s.generation),
            )
        }
    };
    let journals = stored.journals(kind, name);
    let mut running = running::decide_all(doc, stored);
    if let Some(w) = world {
        running::refine_with_observation(&mut running, journals, w.manatee()).await;
    }
    let plan = match doc {
        Document::ManateeVersion(mv) => {
            let generation = match (change, generation) {
                (Change::Create, _) | (_, None) => 1,
                (Change::Update, Some(g)) => g + 1,
                (Change::Unchanged, Some(g)) => g,
            };
            KindPlan::Manatee(
                manatee::plan_manatee(name, &mv.spec, generation, stored, world).await?,
            )
        }
        Document::ShardTopology(st) => {
            let old_spec = old.as_ref().and_then(|(d, _)| match d {
                Document::ShardTopology(o) => Some(&o.spec),
                _ => None,
            });
            KindPlan::Topology(topology::plan_topology(old_spec, &st.spec, world).await?)
        }
        Document::HeadnodeSet(hs) => {
            let old_spec = old.as_ref().and_then(|(d, _)| match d {
                Document::HeadnodeSet(o) => Some(&o.spec),
                _ => None,
            });
            KindPlan::Headnodes(
                headnodes::plan_headnodes(name, old_spec, &hs.spec, stored, world).await?,
            )
        }
    };
    Ok(DocReview {
        kind: kind.as_str().to_string(),
        name: name.to_string(),
        change,
        stored_resource_version: rv,
        stored_generation: generation,
        spec_diff,
        plan,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_yaml_is_sorted_and_leaves_out_status_and_bookkeeping() {
        let v = serde_json::json!({
            "spec": {"b": 1, "a": 2},
            "metadata": {"name": "x", "resourceVersion": "3", "generation": 2},
            "status": {"conditions": []},
            "kind": "K"
        });
        let y = review_yaml(&v);
        assert!(
            !y.contains("status") && !y.contains("resourceVersion") && !y.contains("generation")
        );
        assert!(y.find("kind").unwrap() < y.find("metadata").unwrap());
        assert!(y.find("a: 2").unwrap() < y.find("b: 1").unwrap());
    }
}
