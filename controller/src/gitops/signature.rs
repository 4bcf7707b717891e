//! A saved plan's signature: HMAC-SHA256 ([`super::plan_key`]) of each
//! part of the plan, so that `apply --plan` stores only what was reviewed.
//!
//! Each part is MAC'd on its own, in the plan's context (format, plan id,
//! part name): every document (`documents/<Kind>/<name>`), the `review`
//! and the `fingerprint`. A refusal can then name what was changed, even
//! when whoever changed it recomputed the unkeyed `documentsSha256`. One
//! more MAC, `plan`, covers the whole plan but its signature (id, creation
//! time, order of the documents, `documentsSha256`, ...).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::plan::PlanFile;
use super::plan_key::{ALGORITHM, PlanKey};

/// The MACs of a plan, hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// `hmac-sha256`.
    pub algorithm: String,
    /// Which key signed it ([`PlanKey::id`]), to tell "another key" from "changed".
    pub key_id: String,
    /// `documents/<Kind>/<name>` -> MAC of that document.
    pub documents: BTreeMap<String, String>,
    pub review: String,
    pub fingerprint: String,
    /// MAC of the whole plan but this signature.
    pub plan: String,
}

/// Why a plan's signature does not let it be applied. Nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    #[error(
        "plan {id} is not signed (format `{format}`): only a signed plan shows that it is what was reviewed, so nothing was applied. Make a new plan with this tritonctl (`tritonctl plan -f DIR -o plan.json`), review it, and apply that"
    )]
    Unsigned { id: String, format: String },
    #[error(
        "plan {id} was signed with another key (key {signed}; this store's key is {ours}): it was not made against this store, or the key was replaced since. Nothing was applied; make a new plan against this store"
    )]
    OtherKey {
        id: String,
        signed: String,
        ours: String,
    },
    #[error(
        "plan {id} was changed since review: {}. Its signature does not verify, so nothing was applied. Make a new plan from the intended files (`tritonctl plan -f DIR -o plan.json`), review it, and apply that",
        changed.join("; ")
    )]
    Changed { id: String, changed: Vec<String> },
}

/// The part name of a document: `documents/<Kind>/<name>`.
pub fn document_part(doc: &serde_json::Value) -> String {
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("?");
    format!("documents/{kind}/{name}")
}

/// The bytes MAC'd for a value: its canonical JSON.
fn content(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&super::canonical(v)).expect("JSON values serialize")
}

fn value<T: Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).expect("plans serialize")
}

/// The whole plan but its signature.
fn unsigned_content(plan: &PlanFile) -> Vec<u8> {
    let mut v = value(plan);
    if let Some(m) = v.as_object_mut() {
        m.remove("signature");
    }
    content(&v)
}

/// Sign `plan` (its own signature, if any, is not covered).
pub fn sign(plan: &PlanFile, key: &PlanKey) -> Signature {
    let id = &plan.id;
    Signature {
        algorithm: ALGORITHM.into(),
        key_id: key.id(),
        documents: plan
            .documents
            .iter()
            .map(|d| {
                let part = document_part(d);
                let tag = key.sign(&part, id, &content(d));
                (part, tag)
            })
            .collect(),
        review: key.sign("review", id, &content(&value(&plan.review))),
        fingerprint: key.sign("fingerprint", id, &content(&value(&plan.fingerprint))),
        plan: key.sign("plan", id, &unsigned_content(plan)),
    }
}

/// Check `plan`'s signature with `key`, naming what was changed.
pub fn verify(plan: &PlanFile, key: &PlanKey) -> Result<(), SignatureRefusal> {
    let id = &plan.id;
    let Some(sig) = &plan.signature else {
        return Err(SignatureRefusal::Unsigned {
            id: id.clone(),
            format: plan.format.clone(),
        });
    };
    if sig.key_id != key.id() {
        return Err(SignatureRefusal::OtherKey {
            id: id.clone(),
            signed: sig.key_id.clone(),
            ours: key.id(),
        });
    }
    let mut changed = Vec::new();
    if sig.algorithm != ALGORITHM {
        changed.push(format!(
            "the signature's algorithm (`{}`, not `{ALGORITHM}`)",
            sig.algorithm
        ));
    }
    let mut seen = BTreeSet::new();
    for d in &plan.documents {
        let part = document_part(d);
        match sig.documents.get(&part) {
            _ if !seen.insert(part.clone()) => {
                changed.push(format!("{part} appears twice"));
            }
            Some(tag) if key.verify(&part, id, &content(d), tag) => {}
            Some(_) => changed.push(format!("{part} changed since review")),
            None => changed.push(format!("{part} was added since review")),
        }
    }
    for part in sig.documents.keys().filter(|p| !seen.contains(*p)) {
        changed.push(format!("{part} was removed since review"));
    }
    if !key.verify("review", id, &content(&value(&plan.review)), &sig.review) {
        changed.push("the review (its operations) changed since review".into());
    }
    if !key.verify(
        "fingerprint",
        id,
        &content(&value(&plan.fingerprint)),
        &sig.fingerprint,
    ) {
        changed.push(
            "the fingerprint (what the plan was planned against) changed since review".into(),
        );
    }
    if changed.is_empty() && !key.verify("plan", id, &unsigned_content(plan), &sig.plan) {
        changed.push(
            "the plan's other fields (id, format, creation time, order of the documents, documentsSha256) changed since review"
                .into(),
        );
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(SignatureRefusal::Changed {
            id: id.clone(),
            changed,
        })
    }
}
