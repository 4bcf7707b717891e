//! Moving the rows of a set of vnodes between shards: copy
//! `WHERE _vnode IN (set)`, verify, and delete from the source only when the
//! destination is verified.
//!
//! Safe order, as in manta-reshard: make the vnodes refuse writes on every
//! electric-moray, copy and verify, roll out the ring that maps them to the
//! destination (still refusing writes), allow writes, then delete the source
//! copies (which no ring routes to any more). Rows with a NULL `_vnode` are
//! not selected; [`MoveReport::null_vnode_rows`] counts them so a caller can
//! decide about them explicitly.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{MantaError, Row, ShardStore};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    #[error("source and destination are the same shard {0:?}")]
    SameShard(String),
    /// Some source rows are missing or different on the destination;
    /// nothing was deleted.
    #[error("{missing} of {expected} rows are missing or differ on {pnode:?} (first: {first})")]
    Unverified {
        pnode: String,
        expected: usize,
        missing: usize,
        first: String,
    },
    #[error(transparent)]
    Store(#[from] MantaError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveReport {
    /// Source rows in the vnode set.
    pub selected: usize,
    /// Newly written to the destination (a rerun copies 0).
    pub copied: usize,
    pub verified: usize,
    pub deleted: usize,
    /// Source rows with a NULL `_vnode`, left alone.
    pub null_vnode_rows: usize,
}

fn distinct(src: &ShardStore, dst: &ShardStore) -> Result<(), MoveError> {
    if src.pnode() == dst.pnode() {
        return Err(MoveError::SameShard(src.pnode().into()));
    }
    Ok(())
}

fn unverified(dst: &str, src_rows: &[&Row], missing: &[&Row]) -> MoveError {
    let first = missing
        .first()
        .map(|r| format!("{}::{}", r.bucket, r.key))
        .unwrap_or_default();
    MoveError::Unverified {
        pnode: dst.into(),
        expected: src_rows.len(),
        missing: missing.len(),
        first,
    }
}

/// Copies the set's rows to `dst` (idempotent) and verifies them.
pub fn copy_vnode_rows(
    src: &ShardStore,
    dst: &ShardStore,
    vnodes: &BTreeSet<u32>,
) -> Result<MoveReport, MoveError> {
    distinct(src, dst)?;
    let rows = src.rows_in_vnodes(vnodes);
    let copied = dst.insert_rows(&rows)?;
    let verified = verify_vnode_rows(src, dst, vnodes)?;
    Ok(MoveReport {
        selected: rows.len(),
        copied,
        verified,
        deleted: 0,
        null_vnode_rows: src.null_vnode_rows(),
    })
}

/// Every source row of the set is on `dst`, identical (value, etag, `_id`,
/// `_vnode`). Returns how many were checked.
pub fn verify_vnode_rows(
    src: &ShardStore,
    dst: &ShardStore,
    vnodes: &BTreeSet<u32>,
) -> Result<usize, MoveError> {
    distinct(src, dst)?;
    let rows = src.rows_in_vnodes(vnodes);
    let d = dst.table();
    let refs: Vec<&Row> = rows.iter().collect();
    let missing: Vec<&Row> = refs
        .iter()
        .copied()
        .filter(|r| d.get(&(r.bucket.clone(), r.key.clone())) != Some(*r))
        .collect();
    if !missing.is_empty() {
        return Err(unverified(dst.pnode(), &refs, &missing));
    }
    Ok(rows.len())
}

/// Deletes the set's rows from `src`, but only if every one of them is
/// verified on `dst` at that moment: both tables are locked across the
/// check and the delete, so a write that slipped in after the copy stops
/// the delete instead of being lost.
pub fn delete_verified_vnode_rows(
    src: &ShardStore,
    dst: &ShardStore,
    vnodes: &BTreeSet<u32>,
) -> Result<usize, MoveError> {
    distinct(src, dst)?;
    if src.is_read_only() {
        return Err(MantaError::ReadOnlyPnode {
            pnode: src.pnode().into(),
        }
        .into());
    }
    // Lock in pnode order so two opposite moves cannot deadlock.
    let (mut s, d) = if src.pnode() < dst.pnode() {
        let s = src.table();
        (s, dst.table())
    } else {
        let d = dst.table();
        (src.table(), d)
    };
    let in_set = |r: &Row| r.vnode.is_some_and(|v| vnodes.contains(&v));
    let refs: Vec<&Row> = s.values().filter(|r| in_set(r)).collect();
    let missing: Vec<&Row> = refs
        .iter()
        .copied()
        .filter(|r| d.get(&(r.bucket.clone(), r.key.clone())) != Some(*r))
        .collect();
    if !missing.is_empty() {
        return Err(unverified(dst.pnode(), &refs, &missing));
    }
    let n = refs.len();
    s.retain(|_, r| !in_set(r));
    Ok(n)
}

/// Copy, verify, delete in one call. Only correct once no electric-moray
/// routes these vnodes to `src` and writes to them are refused everywhere.
pub fn move_vnode_rows(
    src: &ShardStore,
    dst: &ShardStore,
    vnodes: &BTreeSet<u32>,
) -> Result<MoveReport, MoveError> {
    let mut report = copy_vnode_rows(src, dst, vnodes)?;
    report.deleted = delete_verified_vnode_rows(src, dst, vnodes)?;
    Ok(report)
}
