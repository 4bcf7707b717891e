//! Bulk Moray rows on a real-PostgreSQL shard, for the resharding cleanup's
//! tests and measurement: many rows fast (one `INSERT ... SELECT
//! generate_series` per directory, through libmanta's directory-count
//! trigger), spread over every vnode of a ring, with the odd rows a cleanup
//! must get right: NULL-`_vnode` rows of `manta` (as e-m's `batch` writes
//! them, and the count rows their trigger makes) and NULL-`_vnode` queue
//! rows in `manta_fastdelete_queue`. The same call on two shards gives the
//! same rows (a split's new shard is a copy of its source).

use std::collections::BTreeMap;

use wire::fash::Ring;

use super::MantaError;
use super::mlive::ring_directories;

/// What [`fill`] writes.
#[derive(Debug, Clone)]
pub struct CleanupData {
    pub account: String,
    /// `manta` rows with their `_vnode` per directory (one directory per
    /// vnode).
    pub rows_per_vnode: u32,
    /// `manta` rows with a NULL `_vnode` per directory (batch writes).
    pub null_rows_per_vnode: u32,
    /// NULL-`_vnode` rows in `manta_fastdelete_queue`.
    pub queue_rows: u32,
}

impl Default for CleanupData {
    fn default() -> CleanupData {
        CleanupData {
            account: "a3829ca2-0966-60ce-9dc3-e4e9060f0950".into(),
            rows_per_vnode: 20,
            null_rows_per_vnode: 2,
            queue_rows: 10,
        }
    }
}

/// What was written, per vnode: `manta` rows with `_vnode`, `manta` rows
/// without, and the directory (whose count row is on the same vnode).
#[derive(Debug, Clone, Default)]
pub struct Filled {
    pub dirs: BTreeMap<u32, String>,
    pub rows: u64,
}

/// Writes the rows on the shard whose primary `conninfo` reaches (its
/// buckets already set up, `PgShardStore::setup_manta`).
pub async fn fill(conninfo: &str, ring: &Ring, d: &CleanupData) -> Result<Filled, MantaError> {
    let dirs = ring_directories(ring, &d.account, ring.vnode_count() as usize);
    let mut sql = String::new();
    for (dir, vnode) in &dirs {
        sql.push_str(&format!(
            "INSERT INTO manta (_key, _value, _etag, _vnode, dirname, name, owner, type) \
             SELECT '{dir}/o' || g, '{{\"type\":\"object\"}}', 'F00DCAFE', {vnode}, '{dir}', \
             'o' || g, '{acct}', 'object' FROM generate_series(1, {n}) g;",
            n = d.rows_per_vnode,
            acct = d.account,
        ));
        if d.null_rows_per_vnode > 0 {
            sql.push_str(&format!(
                "INSERT INTO manta (_key, _value, _etag, _vnode, dirname, name, owner, type) \
                 SELECT '{dir}/b' || g, '{{\"type\":\"object\"}}', 'F00DCAFE', NULL, '{dir}', \
                 'b' || g, '{acct}', 'object' FROM generate_series(1, {n}) g;",
                n = d.null_rows_per_vnode,
                acct = d.account,
            ));
        }
    }
    if d.queue_rows > 0 {
        sql.push_str(&format!(
            "INSERT INTO manta_fastdelete_queue (_key, _value, _etag, _vnode) \
             SELECT 'obj-' || g, '{{}}', 'F00DCAFE', NULL FROM generate_series(1, {}) g;",
            d.queue_rows
        ));
    }
    sql.push_str("ANALYZE;");
    let db = |e: tokio_postgres::Error| MantaError::Database {
        pnode: conninfo.to_owned(),
        message: e.to_string(),
    };
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .map_err(db)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute(&sql).await.map_err(db)?;
    let per = u64::from(d.rows_per_vnode + d.null_rows_per_vnode);
    Ok(Filled {
        rows: per * dirs.len() as u64,
        dirs: dirs.into_iter().map(|(d, v)| (v, d)).collect(),
    })
}
