//! Which tables a cleanup deletes from, in which order.

use tokio_postgres::Client;

use super::{CleanupError, RING_KEYED, db_error};

/// The bucket whose rows libmanta's directory-count trigger maintains; it
/// goes first (manta-reshard, mr:lib/phase_delete_data.js).
pub const DIRECTORY_COUNTS: &str = "manta_directory_counts";

/// A bucket name safe to put in SQL: Moray's rule (a letter, then letters,
/// digits and `_`), at most 63 bytes.
pub fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// Bucket names in cleanup order: `manta_directory_counts` first, then the
/// rest sorted.
pub fn ordered(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    if let Some(i) = names.iter().position(|n| n == DIRECTORY_COUNTS) {
        let d = names.remove(i);
        names.insert(0, d);
    }
    names
}

/// The bucket's NULL-`_vnode` rows have a vnode by their key.
pub fn ring_keyed(bucket: &str) -> bool {
    RING_KEYED.contains(&bucket)
}

/// The shard's buckets from `buckets_config`, in cleanup order.
pub async fn buckets(shard: &str, c: &Client) -> Result<Vec<String>, CleanupError> {
    let rows = c
        .query("SELECT name FROM buckets_config", &[])
        .await
        .map_err(|e| db_error(shard, "listing buckets_config", e))?;
    let mut names = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.get(0);
        if !plain_identifier(&name) {
            return Err(CleanupError::BadBucketName {
                shard: shard.to_owned(),
                name,
            });
        }
        names.push(name);
    }
    Ok(ordered(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_counts_first_then_sorted() {
        let got = ordered(
            [
                "manta",
                "manta_uploads",
                "manta_directory_counts",
                "a_bucket",
                "manta",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(
            got,
            [
                "manta_directory_counts",
                "a_bucket",
                "manta",
                "manta_uploads"
            ]
        );
    }

    #[test]
    fn only_plain_identifiers_reach_sql() {
        assert!(plain_identifier("manta_uploads"));
        assert!(!plain_identifier("manta; DROP TABLE x"));
        assert!(!plain_identifier("_x"));
        assert!(!plain_identifier(""));
        assert!(!plain_identifier(&"a".repeat(64)));
    }
}
