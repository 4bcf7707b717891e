//! Counts per vnode, and the verification of a cleanup.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;
use wire::fash::{HashSpace, KeyEncoding, transform_key};

use super::tables::{self, ring_keyed};
use super::{CleanupError, CleanupTarget, VerifyReport, VnodeCounts, db_error};

/// Keys read per page while scanning NULL-`_vnode` rows.
const PAGE: i64 = 10_000;

/// The hash space of the target's ring.
pub(crate) fn space(target: &CleanupTarget) -> Result<HashSpace, CleanupError> {
    HashSpace::new(target.vnode_count).map_err(|_| CleanupError::BadVnodeCount {
        shard: target.shard.clone(),
        count: target.vnode_count,
    })
}

/// The vnode electric-moray routes a bucket's key to (None: the key hashes
/// past the last vnode, which fash refuses to route).
pub fn key_vnode(space: &HashSpace, bucket: &str, key: &str) -> Option<u32> {
    space
        .vnode_of(transform_key(bucket, key), KeyEncoding::Utf8)
        .ok()
}

/// `_vnode` counts of one bucket for `vnodes`.
pub(crate) async fn vnode_counts(
    shard: &str,
    c: &Client,
    bucket: &str,
    vnodes: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, u64>, CleanupError> {
    let v: Vec<i64> = vnodes.iter().map(|v| i64::from(*v)).collect();
    let rows = c
        .query(
            format!("SELECT _vnode, count(*) FROM {bucket} WHERE _vnode = ANY($1) GROUP BY _vnode")
                .as_str(),
            &[&v],
        )
        .await
        .map_err(|e| db_error(shard, &format!("counting {bucket}"), e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, i64>(1) as u64))
        .collect())
}

/// Calls `each` with every NULL-`_vnode` key of a bucket, a page at a time.
pub(crate) async fn null_keys(
    shard: &str,
    c: &Client,
    bucket: &str,
    mut each: impl FnMut(&str),
) -> Result<u64, CleanupError> {
    let sql = format!(
        "SELECT _key FROM {bucket} WHERE _vnode IS NULL AND _key > $1 ORDER BY _key LIMIT $2"
    );
    let mut after = String::new();
    let mut n = 0;
    loop {
        let rows = c
            .query(sql.as_str(), &[&after, &PAGE])
            .await
            .map_err(|e| db_error(shard, &format!("scanning NULL _vnode rows of {bucket}"), e))?;
        for r in &rows {
            let k: &str = r.get(0);
            each(k);
        }
        n += rows.len() as u64;
        match rows.last() {
            Some(r) if rows.len() as i64 == PAGE => after = r.get(0),
            _ => return Ok(n),
        }
    }
}

/// Rows per vnode of `vnodes` on a shard: `_vnode` rows of every bucket
/// and NULL-`_vnode` rows of ring-keyed buckets placed by key; also the
/// NULL-`_vnode` rows of the other buckets, per bucket.
pub(crate) async fn counts_with_unsharded(
    target: &CleanupTarget,
    c: &Client,
    vnodes: &BTreeSet<u32>,
) -> Result<(VnodeCounts, BTreeMap<String, u64>), CleanupError> {
    let space = space(target)?;
    let in_recovery: bool = c
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| db_error(&target.shard, "pg_is_in_recovery()", e))?
        .get(0);
    if in_recovery {
        return Err(CleanupError::InRecovery {
            shard: target.shard.clone(),
        });
    }
    let mut counts = VnodeCounts::new();
    let mut unsharded = BTreeMap::new();
    for b in tables::buckets(&target.shard, c).await? {
        for (v, n) in vnode_counts(&target.shard, c, &b, vnodes).await? {
            *counts.entry(v).or_default() += n;
        }
        if ring_keyed(&b) {
            null_keys(&target.shard, c, &b, |k| {
                if let Some(v) = key_vnode(&space, &b, k).filter(|v| vnodes.contains(v)) {
                    *counts.entry(v).or_default() += 1;
                }
            })
            .await?;
        } else {
            let n: i64 = c
                .query_one(
                    format!("SELECT count(*) FROM {b} WHERE _vnode IS NULL").as_str(),
                    &[],
                )
                .await
                .map_err(|e| db_error(&target.shard, &format!("counting {b}"), e))?
                .get(0);
            if n > 0 {
                unsharded.insert(b, n as u64);
            }
        }
    }
    counts.retain(|_, n| *n > 0);
    Ok((counts, unsharded))
}

/// Rows per vnode of `vnodes` on the shard at `pg_url` (see
/// [`VnodeCounts`]); vnodes without rows are absent. What the owning side
/// is checked with before a cleanup deletes anything.
pub async fn count_vnodes(
    shard: &str,
    pg_url: &str,
    vnodes: &BTreeSet<u32>,
    vnode_count: u32,
) -> Result<VnodeCounts, CleanupError> {
    let t = CleanupTarget {
        shard: shard.to_owned(),
        pg_url: pg_url.to_owned(),
        drop_vnodes: vnodes.clone(),
        vnode_count,
    };
    let c = super::connect(&t).await?;
    Ok(counts_with_unsharded(&t, &c, vnodes).await?.0)
}

/// Counts per dropped vnode after a cleanup: clean when none is left.
pub async fn verify(target: &CleanupTarget) -> Result<VerifyReport, CleanupError> {
    let c = super::connect(target).await?;
    let (left, kept_unsharded) = counts_with_unsharded(target, &c, &target.drop_vnodes).await?;
    Ok(VerifyReport {
        shard: target.shard.clone(),
        left,
        kept_unsharded,
    })
}
