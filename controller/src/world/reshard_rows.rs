//! The resharding's row cleanup and per-vnode counts on a shard's primary,
//! over a direct PostgreSQL connection (as manta-reshard does,
//! research/resharding.md §3.8): a straightforward engine until H3's tuned
//! one (`controller/src/cleanup/`) replaces it behind the same
//! [`ShardRows`] calls.
//!
//! Every Moray bucket (`buckets_config`) loses its rows in the target's
//! dropped vnodes, `batch_size` rows per statement with `pause` between
//! statements, for up to the budget: idempotent and resumable (it deletes
//! what is there). Rows whose `_vnode` is NULL (written through a batch)
//! are placed by key, as electric-moray's key transform would route them,
//! in the buckets whose keys are ring keys (`manta`, `manta_uploads`,
//! `manta_directory_counts`); other buckets' NULL rows are left alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reconcilers::error::WorldError;
use reconcilers::reshard::{CleanupProgress, CleanupTarget, ShardRows, VerifyReport};
use wire::fash::{HashSpace, KeyEncoding, transform_key};

/// The buckets whose keys electric-moray hashes onto the ring.
pub const RING_KEYED_BUCKETS: [&str; 3] = ["manta", "manta_uploads", "manta_directory_counts"];

/// Where a shard's primary takes connections now (from manatee's cluster
/// state in the controller).
#[async_trait]
pub trait PrimaryUrl: Send + Sync {
    async fn primary_url(&self, shard: &str) -> Result<String, WorldError>;
}

/// How hard the cleanup pushes.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub batch_size: u32,
    pub pause: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            batch_size: 1000,
            pause: Duration::ZERO,
        }
    }
}

/// [`ShardRows`] over PostgreSQL.
pub struct PgRows<P> {
    pub primaries: P,
    pub tuning: Tuning,
    pub encoding: KeyEncoding,
}

fn pg(e: tokio_postgres::Error, what: &str) -> WorldError {
    WorldError::Transport(format!("{what}: {e}"))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, WorldError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| pg(e, "connecting to the shard primary"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "cleanup connection closed");
        }
    });
    Ok(client)
}

async fn buckets(c: &tokio_postgres::Client) -> Result<Vec<String>, WorldError> {
    // A shard Moray never set up has no buckets, so no rows to move.
    let set_up: bool = c
        .query_one("SELECT to_regclass('buckets_config') IS NOT NULL", &[])
        .await
        .map_err(|e| pg(e, "looking for buckets_config"))?
        .get(0);
    if !set_up {
        return Ok(Vec::new());
    }
    let rows = c
        .query("SELECT name FROM buckets_config ORDER BY name", &[])
        .await
        .map_err(|e| pg(e, "listing buckets_config"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

impl<P: PrimaryUrl> PgRows<P> {
    /// NULL-`_vnode` rows of a ring-keyed bucket whose key falls in the
    /// dropped vnodes: (`_key`, vnode).
    async fn null_rows_in(
        &self,
        c: &tokio_postgres::Client,
        bucket: &str,
        t: &CleanupTarget,
    ) -> Result<Vec<(String, u32)>, WorldError> {
        if !RING_KEYED_BUCKETS.contains(&bucket) {
            return Ok(Vec::new());
        }
        let space = HashSpace::new(t.vnode_count)
            .map_err(|e| WorldError::Malformed(format!("vnode count {}: {e}", t.vnode_count)))?;
        let sql = format!("SELECT _key FROM {} WHERE _vnode IS NULL", ident(bucket));
        let rows = c.query(&sql, &[]).await.map_err(|e| pg(e, &sql))?;
        let mut out = Vec::new();
        for r in rows {
            let key: String = r.get(0);
            let v = space
                .vnode_of(transform_key(bucket, &key), self.encoding)
                .map_err(|e| WorldError::Malformed(format!("{bucket} key {key:?}: {e}")))?;
            if t.drop_vnodes.contains(&v) {
                out.push((key, v));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl<P: PrimaryUrl> ShardRows for PgRows<P> {
    async fn cleanup(
        &self,
        t: &CleanupTarget,
        budget: Duration,
    ) -> Result<CleanupProgress, WorldError> {
        let c = connect(&self.primaries.primary_url(&t.shard).await?).await?;
        let drop: Vec<i64> = t.drop_vnodes.iter().map(|v| i64::from(*v)).collect();
        let limit = i64::from(self.tuning.batch_size.max(1));
        let started = Instant::now();
        let mut deleted = 0u64;
        let mut out_of_time = false;
        for b in buckets(&c).await? {
            let sql = format!(
                "DELETE FROM {0} WHERE _key IN (SELECT _key FROM {0} WHERE _vnode = ANY($1) LIMIT $2)",
                ident(&b)
            );
            loop {
                if started.elapsed() >= budget {
                    out_of_time = true;
                    break;
                }
                let n = c
                    .execute(&sql, &[&drop, &limit])
                    .await
                    .map_err(|e| pg(e, &sql))?;
                deleted += n;
                if n < limit as u64 {
                    break;
                }
                tokio::time::sleep(self.tuning.pause).await;
            }
            if out_of_time {
                break;
            }
            let keys: Vec<String> = self
                .null_rows_in(&c, &b, t)
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            for chunk in keys.chunks(limit as usize) {
                let sql = format!("DELETE FROM {} WHERE _key = ANY($1)", ident(&b));
                deleted += c
                    .execute(&sql, &[&chunk.to_vec()])
                    .await
                    .map_err(|e| pg(e, &sql))?;
            }
        }
        let left = self.verify(t).await?;
        let remaining: u64 = left.left.iter().map(|(_, n)| n).sum();
        let secs = started.elapsed().as_secs_f64();
        Ok(CleanupProgress {
            deleted,
            remaining,
            rows_per_s: if secs > 0.0 {
                deleted as f64 / secs
            } else {
                0.0
            },
            done: remaining == 0,
        })
    }

    async fn verify(&self, t: &CleanupTarget) -> Result<VerifyReport, WorldError> {
        let c = connect(&self.primaries.primary_url(&t.shard).await?).await?;
        let drop: Vec<i64> = t.drop_vnodes.iter().map(|v| i64::from(*v)).collect();
        let mut left: BTreeMap<u32, u64> = BTreeMap::new();
        for b in buckets(&c).await? {
            let sql = format!(
                "SELECT _vnode, count(*) FROM {} WHERE _vnode = ANY($1) GROUP BY _vnode",
                ident(&b)
            );
            for r in c.query(&sql, &[&drop]).await.map_err(|e| pg(e, &sql))? {
                let (v, n): (i64, i64) = (r.get(0), r.get(1));
                *left.entry(v as u32).or_default() += n as u64;
            }
            for (_, v) in self.null_rows_in(&c, &b, t).await? {
                *left.entry(v).or_default() += 1;
            }
        }
        Ok(VerifyReport {
            left: left.into_iter().collect(),
        })
    }
}
