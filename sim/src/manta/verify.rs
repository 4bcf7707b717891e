//! The check behind "no row lost, none left on two shards": every
//! acknowledged write must be on exactly one shard, with the value last
//! acknowledged, and readable through every electric-moray given.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{ElectricMoray, MorayTier};

/// A write the client saw succeed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AckedWrite {
    pub bucket: String,
    pub key: String,
    pub value: Value,
}

/// Findings, each as `bucket::key`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Distinct keys checked.
    pub checked: usize,
    pub ok: usize,
    /// On no shard.
    pub lost: Vec<String>,
    /// On more than one shard, with the shards.
    pub duplicated: Vec<(String, Vec<String>)>,
    /// On one shard, but not with the last acknowledged value.
    pub wrong_value: Vec<String>,
    /// Stored, but a read through an electric-moray failed or returned
    /// something else (e.g. its ring routes elsewhere), with the error.
    pub unreadable: Vec<(String, String)>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.wrong_value.is_empty()
            && self.unreadable.is_empty()
    }
}

/// Checks `writes` (in acknowledgement order: a later write of a key
/// supersedes an earlier one) against the shards, and reads each through
/// every instance in `via`.
pub async fn verify_acked(
    writes: &[AckedWrite],
    tier: &MorayTier,
    via: &[Arc<ElectricMoray>],
) -> Verification {
    let mut latest: BTreeMap<(&str, &str), &Value> = BTreeMap::new();
    for w in writes {
        latest.insert((&w.bucket, &w.key), &w.value);
    }
    let shards = tier.stores();
    let mut out = Verification {
        checked: latest.len(),
        ..Verification::default()
    };
    for ((bucket, key), value) in latest {
        let name = format!("{bucket}::{key}");
        let mut holders = Vec::new();
        for s in &shards {
            if let Ok(row) = s.get(bucket, key).await {
                holders.push((s.pnode().to_owned(), row));
            }
        }
        match holders.len() {
            0 => {
                out.lost.push(name);
                continue;
            }
            1 => {}
            _ => {
                out.duplicated
                    .push((name, holders.into_iter().map(|(p, _)| p).collect()));
                continue;
            }
        }
        if holders[0].1.value != *value {
            out.wrong_value.push(name);
            continue;
        }
        let mut readable = true;
        for em in via {
            match em.get_object(bucket, key).await {
                Ok(got) if got.value == *value => {}
                Ok(got) => {
                    readable = false;
                    out.unreadable.push((
                        name.clone(),
                        format!("{}: read {} from {}", em.name(), got.value, got.node.pnode),
                    ));
                }
                Err(e) => {
                    readable = false;
                    out.unreadable
                        .push((name.clone(), format!("{}: {}: {e}", em.name(), e.name())));
                }
            }
        }
        if readable {
            out.ok += 1;
        }
    }
    out
}
