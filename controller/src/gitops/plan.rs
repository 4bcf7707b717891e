//! Saved plans: `tritonctl plan -f DIR -o plan.json` and
//! `tritonctl apply --plan plan.json`.
//!
//! A plan holds the documents as reviewed, the review (the operations), and
//! a [`Fingerprint`] of what it was planned against: the stored
//! resourceVersions of its documents, the operations in flight, every
//! manatee shard's cluster state generation, roles and freeze, the instance
//! set and the image each runs, the IMGAPI state of the images, and the ring
//! image. It is signed ([`super::signature`]: HMAC-SHA256 of each part
//! with the store's plan key, [`super::plan_key`]). `apply --plan` refuses
//! a plan whose documents were edited (their hash, checked before anything
//! is contacted), an unsigned plan or one whose signature does not verify
//! (naming what changed), a plan already applied (a marker written in the
//! same transaction as the documents), and a stale plan (it observes again
//! and lists what moved). A fresh plan stores exactly its documents, each
//! on top of the resourceVersion it was planned against, so a concurrent
//! apply conflicts.

use std::collections::BTreeMap;

use coord::{CoordError, CreateMode, Op};
use crds::{Document, Kind};
use serde::{Deserialize, Serialize};

use super::observed::{Observed, Recorded, StoredView, World, capture};
use super::plan_key::{KeyError, PlanKey};
use super::review::{Review, review};
use super::signature::{self, Signature, SignatureRefusal};
use crate::store::{ApplyOutcome, Store, StoreError};

/// Signed plans. A v1 plan (unsigned) is read only to be refused.
pub const PLAN_FORMAT: &str = "tritonctl.plan/v2";
const UNSIGNED_FORMAT: &str = "tritonctl.plan/v1";

pub use crate::layout::{plan_marker_path as marker_path, plans_dir};

/// One manatee peer in a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancePrint {
    pub alias: String,
    pub image: String,
    pub server: String,
}

/// One shard in a fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPrint {
    pub generation: Option<u64>,
    pub primary: Option<String>,
    pub sync: Option<String>,
    pub asyncs: Vec<String>,
    pub deposed: Vec<String>,
    pub freeze: Option<String>,
    pub one_node_write_mode: bool,
    /// Zone -> what runs there.
    pub instances: BTreeMap<String, InstancePrint>,
    /// Why it could not be observed.
    pub error: Option<String>,
}

/// What a plan was planned against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    /// `Kind/name` of each planned document -> stored resourceVersion (None: not stored).
    pub stored: BTreeMap<String, Option<String>>,
    /// `Kind/name target` -> id of each operation in flight.
    pub in_flight: BTreeMap<String, String>,
    pub shards: BTreeMap<String, ShardPrint>,
    /// Image UUID -> IMGAPI state (None: not in IMGAPI).
    pub images: BTreeMap<String, Option<String>>,
    pub ring_image: Option<String>,
}

impl Fingerprint {
    pub fn of(observed: &Observed, docs: &[Document]) -> Fingerprint {
        let mut f = Fingerprint {
            ring_image: observed.ring_image.clone(),
            ..Default::default()
        };
        for d in docs {
            let key = d.key();
            f.stored.insert(
                key.clone(),
                observed
                    .stored
                    .documents
                    .get(&key)
                    .map(|s| s.resource_version.clone()),
            );
            for j in observed.stored.journals(d.kind(), d.name()) {
                if !j.operation.is_finished() {
                    f.in_flight
                        .insert(format!("{key} {}", j.target), j.operation.status.id.clone());
                }
            }
            if d.kind() == crds::Kind::ManateeVersion {
                for t in observed.stored.transplants(d.name()) {
                    if !t.journal.forward.is_finished() {
                        f.in_flight.insert(
                            format!("{key} {} (transplant)", t.target),
                            t.journal.forward.status.id.clone(),
                        );
                    }
                }
            }
        }
        for (name, rec) in &observed.shards {
            let mut p = ShardPrint {
                error: rec.error.clone(),
                ..Default::default()
            };
            if let Some(o) = &rec.observation {
                let alias = |z: &str| o.peer(z).map_or(z.to_string(), |p| p.alias.clone());
                if let Some(st) = &o.state {
                    p.generation = Some(st.generation);
                    p.primary = Some(alias(&st.primary.zone_id));
                    p.sync = st.sync.as_ref().map(|s| alias(&s.zone_id));
                    p.asyncs = st.asyncs.iter().map(|a| alias(&a.zone_id)).collect();
                    p.deposed = st.deposed.iter().map(|a| alias(&a.zone_id)).collect();
                    p.freeze = o.freeze_reason();
                    p.one_node_write_mode = st.is_one_node_write_mode();
                }
                for peer in &o.peers {
                    p.instances.insert(
                        peer.zone.clone(),
                        InstancePrint {
                            alias: peer.alias.clone(),
                            image: peer.image.clone(),
                            server: peer.server.clone(),
                        },
                    );
                }
            }
            // A manatee v1 shard keeps no cluster state: its roles are the
            // election order the transplant planned from.
            if p.generation.is_none()
                && let Some(t) = observed
                    .transplants
                    .get(name)
                    .and_then(|t| t.observation.as_ref())
            {
                let topo = t.legacy_topology();
                p.primary = topo.first().map(|z| z.alias.clone());
                p.sync = topo.get(1).map(|z| z.alias.clone());
                p.asyncs = topo.iter().skip(2).map(|z| z.alias.clone()).collect();
            }
            f.shards.insert(name.clone(), p);
        }
        for (uuid, rec) in &observed.images {
            f.images
                .insert(uuid.clone(), rec.as_ref().map(|i| i.state.clone()));
        }
        f
    }

    /// What moved from `self` (planned) to `now`, in words. Only what the
    /// plan recorded is compared.
    pub fn moved(&self, now: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
        for (key, rv) in &self.stored {
            let cur = now.stored.get(key).cloned().flatten();
            if rv != &cur {
                out.push(match (rv, &cur) {
                    (None, Some(c)) => format!("{key} was created in the store (resourceVersion {c}) after the plan"),
                    (Some(r), None) => format!("{key} was deleted from the store (it was resourceVersion {r})"),
                    (Some(r), Some(c)) => format!("{key}: stored resourceVersion {r} -> {c} (applied by someone else since the plan)"),
                    (None, None) => unreachable!(),
                });
            }
        }
        for (k, id) in &self.in_flight {
            if now.in_flight.get(k) != Some(id) {
                out.push(format!("{k}: operation {id} was in flight and has ended"));
            }
        }
        for (k, id) in &now.in_flight {
            if !self.in_flight.contains_key(k) && self.stored.keys().any(|s| k.starts_with(s)) {
                out.push(format!("{k}: operation {id} started after the plan"));
            }
        }
        for (name, p) in &self.shards {
            let Some(n) = now.shards.get(name) else {
                out.push(format!("shard {name}: no longer observed"));
                continue;
            };
            if p.error != n.error {
                out.push(format!(
                    "shard {name}: observation error {} -> {}",
                    show(&p.error),
                    show(&n.error)
                ));
            }
            if p.generation != n.generation {
                out.push(format!(
                    "shard {name}: cluster state generation {} -> {}",
                    p.generation.map_or("none".into(), |g| g.to_string()),
                    n.generation.map_or("none".into(), |g| g.to_string())
                ));
            }
            if p.primary != n.primary {
                out.push(format!(
                    "shard {name}: primary {} -> {} (a takeover)",
                    show(&p.primary),
                    show(&n.primary)
                ));
            }
            if p.sync != n.sync {
                out.push(format!(
                    "shard {name}: sync {} -> {}",
                    show(&p.sync),
                    show(&n.sync)
                ));
            }
            if p.asyncs != n.asyncs {
                out.push(format!(
                    "shard {name}: asyncs [{}] -> [{}]",
                    p.asyncs.join(", "),
                    n.asyncs.join(", ")
                ));
            }
            if p.deposed != n.deposed {
                out.push(format!(
                    "shard {name}: deposed [{}] -> [{}]",
                    p.deposed.join(", "),
                    n.deposed.join(", ")
                ));
            }
            if p.freeze != n.freeze {
                out.push(format!(
                    "shard {name}: freeze {} -> {}",
                    p.freeze.as_deref().unwrap_or("not frozen"),
                    n.freeze.as_deref().unwrap_or("not frozen")
                ));
            }
            if p.one_node_write_mode != n.one_node_write_mode {
                out.push(format!(
                    "shard {name}: one-node-write mode {} -> {}",
                    p.one_node_write_mode, n.one_node_write_mode
                ));
            }
            for (zone, i) in &p.instances {
                match n.instances.get(zone) {
                    None => out.push(format!(
                        "shard {name}: instance {} ({zone}) is gone",
                        i.alias
                    )),
                    Some(j) if j.image != i.image => out.push(format!(
                        "shard {name}: {} now runs image {} (planned against {})",
                        i.alias, j.image, i.image
                    )),
                    Some(j) if j.server != i.server => out.push(format!(
                        "shard {name}: {} moved from server {} to {}",
                        i.alias, i.server, j.server
                    )),
                    _ => {}
                }
            }
            for (zone, j) in &n.instances {
                if !p.instances.contains_key(zone) {
                    out.push(format!("shard {name}: new instance {} ({zone})", j.alias));
                }
            }
        }
        for (uuid, st) in &self.images {
            if let Some(cur) = now.images.get(uuid)
                && cur != st
            {
                out.push(format!(
                    "image {uuid}: IMGAPI state {} -> {}",
                    st.as_deref().unwrap_or("absent"),
                    cur.as_deref().unwrap_or("absent")
                ));
            }
        }
        if self.ring_image != now.ring_image {
            out.push(format!(
                "ring image (HASH_RING_IMAGE) {} -> {}",
                show(&self.ring_image),
                show(&now.ring_image)
            ));
        }
        out
    }
}

/// A saved plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    pub format: String,
    pub id: String,
    pub created_at: String,
    pub tritonctl_version: String,
    /// The documents exactly as they will be stored, each carrying the
    /// resourceVersion it was planned against (absent: it must not exist yet).
    pub documents: Vec<serde_json::Value>,
    /// sha256 over the canonical JSON of `documents`.
    pub documents_sha256: String,
    pub fingerprint: Fingerprint,
    pub review: Review,
    /// MACs of the documents, the review, the fingerprint and the whole
    /// (None: unsigned, refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

pub fn documents_hash(docs: &[serde_json::Value]) -> String {
    let canon: Vec<serde_json::Value> = docs.iter().map(super::canonical).collect();
    super::sha256_hex(&serde_json::to_vec(&canon).expect("documents serialize"))
}

impl PlanFile {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plans serialize") + "\n"
    }

    pub fn from_json(text: &str, origin: &str) -> Result<PlanFile, String> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("{origin}: not a tritonctl plan: {e}"))?;
        let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != PLAN_FORMAT && format != UNSIGNED_FORMAT {
            return Err(format!(
                "{origin}: plan format `{format}` is not `{PLAN_FORMAT}`; make the plan again with this tritonctl"
            ));
        }
        serde_json::from_value(v).map_err(|e| format!("{origin}: {e}"))
    }

    /// Check the signature with `key` (see [`signature::verify`]).
    pub fn verify_signature(&self, key: &PlanKey) -> Result<(), SignatureRefusal> {
        signature::verify(self, key)
    }

    /// The documents, decoded, after checking their unkeyed hash (an
    /// accidental edit, found with no key; the signature is what proves
    /// them reviewed).
    pub fn verified_documents(&self) -> Result<Vec<Document>, String> {
        let now = documents_hash(&self.documents);
        if now != self.documents_sha256 {
            return Err(format!(
                "the documents in plan {} were edited after planning (sha256 {} now, {} when planned); nothing was applied. Make a new plan from the edited files (`tritonctl plan -f DIR -o plan.json`) and review it",
                self.id,
                &now[..12],
                &self.documents_sha256[..12.min(self.documents_sha256.len())]
            ));
        }
        self.documents
            .iter()
            .map(|v| {
                let kind = v
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .and_then(Kind::parse)
                    .ok_or_else(|| format!("plan {}: a document has no valid kind", self.id))?;
                Document::from_value(kind, v.clone())
                    .map_err(|e| format!("plan {}: document of kind {kind}: {e}", self.id))
            })
            .collect()
    }
}

/// Observe, review, bind the review to what was observed, and sign it all
/// with `key`. The review is planned against the recorded observation, so
/// the operations and the fingerprint describe the same moment.
pub async fn make(
    docs: &[Document],
    observed: Observed,
    origin: &str,
    now: String,
    key: &PlanKey,
) -> Result<PlanFile, String> {
    let fingerprint = Fingerprint::of(&observed, docs);
    let stored = observed.stored.clone();
    let recorded = Recorded {
        observed,
        origin: origin.to_string(),
    };
    let review = review(docs, &stored, Some(&recorded)).await?;
    // A plan binds every operation to what was observed: a shard it could
    // not observe would be applied unreviewed.
    let unobserved: Vec<String> = review
        .documents
        .iter()
        .filter_map(|d| match &d.plan {
            super::review::KindPlan::Manatee(m) => Some((d.key(), m)),
            _ => None,
        })
        .flat_map(|(key, m)| {
            m.shards
                .iter()
                .filter(|s| s.outcome == super::review::ShardOutcome::NotObserved)
                .map(move |s| {
                    format!(
                        "{key}: shard {}: {}",
                        s.shard,
                        s.message.clone().unwrap_or_default()
                    )
                })
        })
        .collect();
    if !unobserved.is_empty() {
        return Err(format!(
            "cannot plan what was not observed:\n  {}",
            unobserved.join("\n  ")
        ));
    }
    let documents: Vec<serde_json::Value> = docs
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.set_status(None);
            let rv = stored
                .documents
                .get(&d.key())
                .map(|s| s.resource_version.clone());
            d.metadata_mut().generation = None;
            d.metadata_mut().resource_version = rv;
            super::canonical(&d.to_value())
        })
        .collect();
    let mut plan = PlanFile {
        format: PLAN_FORMAT.into(),
        id: format!("plan-{}", uuid::Uuid::new_v4().simple()),
        created_at: now,
        tritonctl_version: env!("CARGO_PKG_VERSION").into(),
        documents_sha256: documents_hash(&documents),
        documents,
        fingerprint,
        review,
        signature: None,
    };
    plan.signature = Some(signature::sign(&plan, key));
    Ok(plan)
}

/// Why `apply --plan` did not apply.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// Refused by a rule (edited, applied, stale, conflict, running operation): exit 1.
    Refused(String),
    /// Unsigned, or its signature does not verify: exit 1.
    Unverified(SignatureRefusal),
    /// The plan key could not be had: exit 1 when the store has none (no
    /// plan was signed against it), 2 otherwise.
    Key(KeyError),
    /// Could not check (store or datacenter unreachable, ...): exit 2.
    Error(String),
}

/// Apply a saved plan: check it, observe again, then store its documents
/// (with resourceVersion preconditions) and the plan's applied marker in one
/// transaction.
pub async fn apply(
    plan: &PlanFile,
    store: &Store,
    world: &dyn World,
    now: String,
) -> Result<Vec<ApplyOutcome>, ApplyError> {
    let docs = plan.verified_documents().map_err(ApplyError::Refused)?;
    let coord = store.coord();
    let key = PlanKey::load(coord.as_ref())
        .await
        .map_err(ApplyError::Key)?;
    plan.verify_signature(&key)
        .map_err(ApplyError::Unverified)?;
    let marker = marker_path(&plan.id);
    match coord.get(&marker).await {
        Ok((data, _)) => {
            let at = serde_json::from_slice::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| {
                    v.get("appliedAt")
                        .and_then(|a| a.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "an earlier time".into());
            return Err(ApplyError::Refused(format!(
                "plan {} was already applied ({at}); a plan applies once. To change the datacenter again, make a new plan (`tritonctl plan -f DIR -o plan.json`)",
                plan.id
            )));
        }
        Err(CoordError::NoNode(_)) => {}
        Err(e) => return Err(ApplyError::Error(e.to_string())),
    }
    let stored = StoredView::load(store).await.map_err(ApplyError::Error)?;
    let live = capture(stored.clone(), world, &docs, now.clone())
        .await
        .map_err(ApplyError::Error)?;
    let fp = Fingerprint::of(&live, &docs);
    let moved = plan.fingerprint.moved(&fp);
    if !moved.is_empty() {
        return Err(ApplyError::Refused(format!(
            "plan {} is stale: what it was planned against has moved, so it may no longer do what was reviewed:\n  - {}\nNothing was applied. Make a new plan (`tritonctl plan -f DIR -o plan.json`), review it, and apply that",
            plan.id,
            moved.join("\n  - ")
        )));
    }
    let mut extra = super::running::guard(store, &docs)
        .await
        .map_err(|g| match g {
            super::running::Guard::Refused(m) => ApplyError::Refused(m),
            super::running::Guard::Error(m) => ApplyError::Error(m),
        })?;
    coord
        .mkdirp(&plans_dir())
        .await
        .map_err(|e| ApplyError::Error(e.to_string()))?;
    let record = serde_json::json!({
        "appliedAt": now,
        "documentsSha256": plan.documents_sha256,
        "documents": docs.iter().map(Document::key).collect::<Vec<_>>(),
    });
    extra.push(Op::create(
        marker,
        serde_json::to_vec(&record).expect("json"),
        CreateMode::Persistent,
    ));
    store.apply_with(&docs, extra).await.map_err(|e| match e {
        StoreError::Conflict { .. } => ApplyError::Refused(format!(
            "{e}. The plan's documents are applied only on top of the versions it was planned against; make a new plan"
        )),
        other => ApplyError::Error(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_hash_ignores_key_order_and_sees_values() {
        let a = serde_json::json!({"kind": "K", "spec": {"x": 1, "y": 2}});
        let b = serde_json::json!({"spec": {"y": 2, "x": 1}, "kind": "K"});
        let c = serde_json::json!({"spec": {"y": 2, "x": 3}, "kind": "K"});
        assert_eq!(
            documents_hash(std::slice::from_ref(&a)),
            documents_hash(&[b])
        );
        assert_ne!(documents_hash(&[a]), documents_hash(&[c]));
    }

    #[test]
    fn moved_names_what_changed() {
        let mut planned = Fingerprint::default();
        planned
            .stored
            .insert("ManateeVersion/sdc".into(), Some("3".into()));
        planned.shards.insert(
            "sdc".into(),
            ShardPrint {
                generation: Some(4),
                primary: Some("manatee0".into()),
                ..Default::default()
            },
        );
        assert!(planned.moved(&planned.clone()).is_empty());
        let mut now = planned.clone();
        now.stored
            .insert("ManateeVersion/sdc".into(), Some("4".into()));
        let s = now.shards.get_mut("sdc").unwrap();
        s.generation = Some(5);
        s.primary = Some("manatee1".into());
        s.freeze = Some("someone".into());
        let m = planned.moved(&now).join("\n");
        assert!(
            m.contains("ManateeVersion/sdc: stored resourceVersion 3 -> 4"),
            "{m}"
        );
        assert!(
            m.contains("shard sdc: cluster state generation 4 -> 5"),
            "{m}"
        );
        assert!(
            m.contains("primary manatee0 -> manatee1 (a takeover)"),
            "{m}"
        );
        assert!(m.contains("freeze not frozen -> someone"), "{m}");
        // A document created by someone else after a plan that saw none.
        let mut fresh = Fingerprint::default();
        fresh.stored.insert("HeadnodeSet/lab".into(), None);
        let mut later = fresh.clone();
        later
            .stored
            .insert("HeadnodeSet/lab".into(), Some("0".into()));
        assert!(fresh.moved(&later)[0].contains("was created in the store"));
    }
}
