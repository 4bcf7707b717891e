//! Moving the rows of a vnode set between any two shards ([`RowStore`]s:
//! in memory or on real PostgreSQL), including the rows a `_vnode` query
//! cannot see.
//!
//! Rows written by e-m's `batch` (MPU commits) and the directory-count rows
//! their trigger makes have a NULL `_vnode` (research 3.11-2):
//! `WHERE _vnode IN (set)` misses them, so manta-reshard leaves them on the
//! source, where no ring routes any more. [`NullVnodes::ByKey`] places such
//! a row by hashing its key as electric-moray would (`transform_key`, then
//! the ring), for the buckets whose keys are ring keys (`manta`,
//! `manta_uploads`, `manta_directory_counts`); rows of other buckets (the
//! delete queues, keyed by object id) are never moved and are counted, so a
//! caller decides about them explicitly.

use std::collections::BTreeSet;

use wire::fash::{KeyEncoding, Ring, transform_key};

use super::reshard::{MoveError, MoveReport};
use super::{MantaError, Row, RowStore};

/// Buckets whose keys electric-moray hashes onto the ring.
pub const RING_KEYED_BUCKETS: [&str; 3] = ["manta", "manta_uploads", "manta_directory_counts"];

/// What to do with rows whose `_vnode` is NULL.
#[derive(Debug, Clone, Copy)]
pub enum NullVnodes<'a> {
    /// Leave them where they are (manta-reshard's behaviour).
    Leave,
    /// Place them by their key on this ring's vnodes.
    ByKey(&'a Ring),
}

fn keyed_vnode(ring: &Ring, r: &Row) -> Option<u32> {
    if r.vnode.is_some() || !RING_KEYED_BUCKETS.contains(&r.bucket.as_str()) {
        return None;
    }
    ring.vnode_of(transform_key(&r.bucket, &r.key), KeyEncoding::Utf8)
        .ok()
}

/// The rows a move of `vnodes` takes from `src`, and how many NULL-`_vnode`
/// rows it leaves behind (of any vnode).
pub async fn rows_to_move(
    src: &dyn RowStore,
    vnodes: &BTreeSet<u32>,
    nulls: NullVnodes<'_>,
) -> Result<(Vec<Row>, usize), MantaError> {
    let mut rows = src.rows_in(vnodes).await?;
    let all = src.all_rows().await?;
    let mut left = 0;
    for r in all.into_iter().filter(|r| r.vnode.is_none()) {
        match nulls {
            NullVnodes::ByKey(ring)
                if keyed_vnode(ring, &r).is_some_and(|v| vnodes.contains(&v)) =>
            {
                rows.push(r)
            }
            _ => left += 1,
        }
    }
    Ok((rows, left))
}

/// Copies the set's rows to `dst` (idempotent: rows already there and
/// identical are skipped; a different row is a conflict) and verifies each
/// on `dst`.
pub async fn copy_rows(
    src: &dyn RowStore,
    dst: &dyn RowStore,
    vnodes: &BTreeSet<u32>,
    nulls: NullVnodes<'_>,
) -> Result<MoveReport, MoveError> {
    if src.pnode() == dst.pnode() {
        return Err(MoveError::SameShard(src.pnode().into()));
    }
    let (rows, left) = rows_to_move(src, vnodes, nulls).await?;
    let copied = dst.restore_rows(&rows).await?;
    let mut missing = Vec::new();
    for r in &rows {
        match dst.get(&r.bucket, &r.key).await {
            Ok(got) if got == *r => {}
            _ => missing.push(format!("{}::{}", r.bucket, r.key)),
        }
    }
    if let Some(first) = missing.first() {
        return Err(MoveError::Unverified {
            pnode: dst.pnode().into(),
            expected: rows.len(),
            missing: missing.len(),
            first: first.clone(),
        });
    }
    Ok(MoveReport {
        selected: rows.len(),
        copied,
        verified: rows.len(),
        deleted: 0,
        null_vnode_rows: left,
    })
}

/// Deletes the set's rows from `src` (the ghost rows once the new ring is
/// live everywhere), NULL-`_vnode` rows placed by key included.
pub async fn delete_moved_rows(
    src: &dyn RowStore,
    vnodes: &BTreeSet<u32>,
    nulls: NullVnodes<'_>,
) -> Result<usize, MantaError> {
    let keyed: Vec<Row> = match nulls {
        NullVnodes::Leave => Vec::new(),
        NullVnodes::ByKey(ring) => src
            .all_rows()
            .await?
            .into_iter()
            .filter(|r| keyed_vnode(ring, r).is_some_and(|v| vnodes.contains(&v)))
            .collect(),
    };
    let mut n = src.delete_in(vnodes).await?;
    for r in keyed {
        match src.delete(&r.bucket, &r.key).await {
            Ok(_) => n += 1,
            // A trigger may have removed it already (a count row at zero).
            Err(MantaError::ObjectNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
