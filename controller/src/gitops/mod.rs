//! GitOps change review: `diff`, `snapshot`, saved `plan`s and `apply --plan`.
//!
//! Everything a review needs is read through two views:
//! - [`observed::StoredView`]: the stored documents (spec, generation,
//!   resourceVersion) and their operation journals, loaded from the store or
//!   from a snapshot file;
//! - [`observed::World`]: the datacenter as the reconcilers observe it (the
//!   real clients, or [`observed::Recorded`] over a snapshot file).
//!
//! [`review::review`] turns the documents and both views into a
//! [`review::Review`]: per document the spec change and the operation each
//! reconciler would run (the manatee steps come from the same pure
//! `plan_shard` the controller runs). [`plan`] binds a review to a
//! fingerprint of what it was planned against, and refuses to apply it once
//! the world or the documents moved; [`signature`] signs it with the
//! store's key ([`plan_key`]) so that an edit after review is refused.
//! [`running`] holds the rules for a change that meets an operation in
//! flight.

pub mod export;
pub mod manta;
pub mod observed;
pub mod plan;
pub mod plan_key;
pub mod redact;
pub mod render;
pub mod resolve;
pub mod review;
pub mod running;
pub mod signature;

/// Documents compared as canonical JSON: keys sorted at every level.
pub fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value as YAML (the spec diff's form).
pub fn to_yaml(v: &serde_json::Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}
