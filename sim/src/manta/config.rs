//! What an electric-moray process reads at start from its SAPI config
//! (config-agent renders `etc/config.json` from the `manta` application's
//! metadata, em:sapi_manifests/electric-moray/template): the index shards
//! with their `readOnly` flags, and which ring image to run.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wire::apis::JsonMap;

use super::ring_image::HASH_RING_IMAGE;

/// SAPI metadata key on the `manta` application: the index shards.
pub const INDEX_MORAY_SHARDS: &str = "INDEX_MORAY_SHARDS";

/// One `ringCfg.indexShards` entry: `{"host": ..., "readOnly": true}`; the
/// template writes `readOnly` only when it is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexShard {
    pub host: String,
    #[serde(
        rename = "readOnly",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_only: bool,
}

impl IndexShard {
    pub fn new(host: &str, read_only: bool) -> IndexShard {
        IndexShard {
            host: host.to_owned(),
            read_only,
        }
    }

    /// The pnode e-m matches this entry against (`isReadOnlyPnode`).
    pub fn pnode(&self) -> String {
        format!("tcp://{}:2020", self.host)
    }

    /// The entry for a pnode given by name: its host when the pnode has
    /// e-m's `tcp://<host>:2020` form, else the pnode itself.
    pub fn for_pnode(pnode: &str, read_only: bool) -> IndexShard {
        let host = pnode
            .strip_prefix("tcp://")
            .and_then(|h| h.strip_suffix(":2020"))
            .unwrap_or(pnode);
        IndexShard::new(host, read_only)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("SAPI metadata has no {0}")]
    Missing(&'static str),
    #[error("SAPI metadata {key} is malformed: {message}")]
    Malformed { key: &'static str, message: String },
}

/// The config an e-m process starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmConfig {
    pub index_shards: Vec<IndexShard>,
    /// `HASH_RING_IMAGE`; `None` when SAPI names none.
    pub ring_image: Option<String>,
}

/// Parses `INDEX_MORAY_SHARDS` (`[{host, readOnly?, last?}]`, as
/// `manta-shardadm` and manta-reshard write it; `readOnly` may be a bool or
/// the string "true") and `HASH_RING_IMAGE` from merged SAPI metadata.
pub fn em_config(metadata: &JsonMap) -> Result<EmConfig, ConfigError> {
    let shards = metadata
        .get(INDEX_MORAY_SHARDS)
        .ok_or(ConfigError::Missing(INDEX_MORAY_SHARDS))?;
    let malformed = |message: String| ConfigError::Malformed {
        key: INDEX_MORAY_SHARDS,
        message,
    };
    let list = match shards {
        Value::Array(a) => a.clone(),
        // SAPI metadata values are sometimes stored as JSON text.
        Value::String(s) => serde_json::from_str::<Vec<Value>>(s)
            .map_err(|e| malformed(format!("not a JSON array: {e}")))?,
        other => return Err(malformed(format!("not an array: {other}"))),
    };
    let index_shards = list
        .iter()
        .map(|e| {
            let host = e
                .get("host")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(format!("an entry has no host: {e}")))?;
            let read_only = match e.get("readOnly") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                Some(other) => return Err(malformed(format!("readOnly {other} of {host}"))),
            };
            Ok(IndexShard::new(host, read_only))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ring_image = metadata
        .get(HASH_RING_IMAGE)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(EmConfig {
        index_shards,
        ring_image,
    })
}

/// `INDEX_MORAY_SHARDS` as SAPI holds it: the `last` flag on the final
/// entry (the mustache template needs it), `readOnly` only when true.
pub fn index_moray_shards_value(shards: &[IndexShard]) -> Value {
    let n = shards.len();
    Value::Array(
        shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut e = serde_json::json!({"host": s.host});
                if s.read_only {
                    e["readOnly"] = Value::Bool(true);
                }
                if i + 1 == n {
                    e["last"] = Value::Bool(true);
                }
                e
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_index_moray_shards() {
        let mut md = JsonMap::new();
        md.insert(
            INDEX_MORAY_SHARDS.into(),
            json!([{"host": "1.moray.x"}, {"host": "2.moray.x", "readOnly": true, "last": true}]),
        );
        md.insert(HASH_RING_IMAGE.into(), json!("img"));
        let c = em_config(&md).unwrap();
        assert_eq!(
            c.index_shards,
            vec![
                IndexShard::new("1.moray.x", false),
                IndexShard::new("2.moray.x", true)
            ]
        );
        assert_eq!(c.ring_image.as_deref(), Some("img"));
        assert_eq!(c.index_shards[1].pnode(), "tcp://2.moray.x:2020");
        assert_eq!(
            index_moray_shards_value(&c.index_shards),
            json!([{"host": "1.moray.x"}, {"host": "2.moray.x", "readOnly": true, "last": true}])
        );
    }

    #[test]
    fn missing_or_malformed() {
        assert_eq!(
            em_config(&JsonMap::new()),
            Err(ConfigError::Missing(INDEX_MORAY_SHARDS))
        );
        let mut md = JsonMap::new();
        md.insert(INDEX_MORAY_SHARDS.into(), json!([{"readOnly": true}]));
        assert!(matches!(em_config(&md), Err(ConfigError::Malformed { .. })));
    }
}
