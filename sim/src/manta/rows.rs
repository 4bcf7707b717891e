//! What a Moray shard does with rows, whatever holds them: the in-memory
//! [`super::ShardStore`] (the default) or a real PostgreSQL primary
//! ([`super::PgShardStore`], opt-in). Electric-moray, the verifier and the
//! load generator go through [`RowStore`] only.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MantaError, Row};

/// One request of a `batch` RPC (e-m allows only `put` and `delete`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "lowercase")]
pub enum BatchOp {
    Put {
        bucket: String,
        key: String,
        value: Value,
    },
    Delete {
        bucket: String,
        key: String,
    },
}

impl BatchOp {
    pub fn bucket(&self) -> &str {
        match self {
            BatchOp::Put { bucket, .. } | BatchOp::Delete { bucket, .. } => bucket,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key, .. } => key,
        }
    }
}

/// A Moray shard's row operations. Writes go to the shard's primary.
#[async_trait]
pub trait RowStore: Send + Sync + std::fmt::Debug {
    fn pnode(&self) -> &str;
    /// putObject: insert, or update keeping `_id`. `vnode` is what e-m
    /// stamped into the value (`None`: the row's `_vnode` is NULL).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        value: Value,
        vnode: Option<u32>,
    ) -> Result<Row, MantaError>;
    async fn get(&self, bucket: &str, key: &str) -> Result<Row, MantaError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<Row, MantaError>;
    /// batch: every request in one transaction. Puts leave `_vnode` NULL,
    /// as moray's batch does (e-m does not stamp batch values). Returns the
    /// etag of each put, `None` for a delete.
    async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<String>>, MantaError>;
    /// createBucket with moray's config (`{index, options, ...}`).
    async fn create_bucket(&self, name: &str, config: &Value) -> Result<(), MantaError>;
    async fn update_bucket(&self, name: &str, config: &Value) -> Result<(), MantaError>;
    async fn delete_bucket(&self, name: &str) -> Result<(), MantaError>;
    /// Every row of every bucket.
    async fn all_rows(&self) -> Result<Vec<Row>, MantaError>;
    /// `SELECT * WHERE _vnode IN (vnodes)`, every bucket.
    async fn rows_in(&self, vnodes: &BTreeSet<u32>) -> Result<Vec<Row>, MantaError>;
    /// Rows exactly as given (ids, etags, `_vnode` kept), as a dump and
    /// restore would; a key present with a different row fails the whole
    /// call. Returns how many were new.
    async fn restore_rows(&self, rows: &[Row]) -> Result<usize, MantaError>;
    /// `DELETE WHERE _vnode IN (vnodes)`, every bucket.
    async fn delete_in(&self, vnodes: &BTreeSet<u32>) -> Result<usize, MantaError>;
}

/// CRC-32 (IEEE 802.3, reflected, as node's `crc` module computes it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The `_value` text moray stores: the value as e-m sent it, with the
/// `vnode` e-m stamped (putObject) or without (batch).
pub fn stored_value(value: &Value, vnode: Option<u32>) -> String {
    match (value, vnode) {
        (Value::Object(m), Some(v)) => {
            let mut m = m.clone();
            m.insert("vnode".into(), Value::from(v));
            Value::Object(m).to_string()
        }
        _ => value.to_string(),
    }
}

/// The value as e-m hands it back: `vnode` stripped.
pub fn client_value(mut stored: Value) -> Value {
    if let Value::Object(m) = &mut stored {
        m.remove("vnode");
    }
    stored
}

/// moray's `_etag`: the CRC-32 of the stored `_value` text, 8 hex digits.
pub fn etag_of(value: &Value, vnode: Option<u32>) -> String {
    format!("{:08X}", crc32(stored_value(value, vnode).as_bytes()))
}

/// moray's bucket-name rule (`^[a-zA-Z]\w*$`), which also keeps names safe
/// to splice into SQL.
pub fn valid_bucket_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard CRC-32 check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn stored_value_stamps_and_strips_vnode() {
        let v = serde_json::json!({"a": 1});
        let s = stored_value(&v, Some(7));
        assert_eq!(s, r#"{"a":1,"vnode":7}"#);
        assert_eq!(client_value(serde_json::from_str(&s).unwrap()), v);
        assert_eq!(stored_value(&v, None), r#"{"a":1}"#);
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("manta"));
        assert!(valid_bucket_name("manta_directory_counts"));
        assert!(!valid_bucket_name("1abc"));
        assert!(!valid_bucket_name("a; DROP TABLE x"));
        assert!(!valid_bucket_name(""));
    }
}
