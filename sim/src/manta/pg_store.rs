//! A Moray shard on real PostgreSQL: the opt-in [`RowStore`] (the in-memory
//! [`super::ShardStore`] is the default, so nothing needs PostgreSQL
//! installed unless asked).
//!
//! Tables are laid out as Moray creates them (moray:lib/buckets/creat.js):
//! a `buckets_config` row per bucket (`name, index, pre, post, options,
//! mtime`), a `<bucket>_serial` sequence, and the bucket table
//! `(_id BIGINT DEFAULT nextval('<bucket>_serial'), _txn_snap INTEGER,
//! _key TEXT PRIMARY KEY, _value TEXT NOT NULL, _etag CHAR(8) NOT NULL,
//! _mtime BIGINT, _vnode BIGINT, <index columns>)` with a partial BTREE
//! index `<bucket>_<col>_idx ... WHERE <col> IS NOT NULL` on every
//! non-unique index column and on `_id`, `_etag`, `_mtime`, `_vnode`. Index
//! columns are filled from the value's fields of the same name, as Moray
//! does. [`PgShardStore::setup_manta`] creates the buckets libmanta's
//! `setupMantaBuckets` creates (`manta` indexed on `dirname, name, owner,
//! objectId, type`; `manta_uploads`, `manta_delete_log`,
//! `manta_fastdelete_queue`, `manta_directory_counts` with `entries`) and a
//! directory-count trigger on `manta` (written for this simulator with the
//! semantics of libmanta's `count_manta_directories_v3`: an insert bumps the
//! count row of the row's `dirname`, created with the row's `_vnode`; a
//! delete lowers it and removes it at zero).
//!
//! Writes go to the shard's current primary, found through a
//! [`PrimaryLocator`] each time the connection is (re)made: a fixed server,
//! or the manatee simulation's primary ([`ManateePrimary`]), so a takeover
//! moves the shard's writes with it and a shard without a writable primary
//! fails them. `_value` is stored as e-m sent it (with the `vnode` e-m
//! stamps on putObject); rows come back with `vnode` stripped, as e-m
//! returns them. `_etag` is the CRC-32 of `_value`, as Moray computes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_postgres::{Client, GenericClient, NoTls};

use super::rows::{BatchOp, RowStore, client_value, etag_of, stored_value, valid_bucket_name};
use super::{MantaError, Row};
use crate::manatee::ManateeSim;

/// Where the shard's writable primary is now: a libpq connection string.
#[async_trait]
pub trait PrimaryLocator: Send + Sync + std::fmt::Debug {
    async fn primary(&self, pnode: &str) -> Result<String, MantaError>;
}

/// A server that is always the primary.
#[derive(Debug, Clone)]
pub struct FixedPrimary(pub String);

#[async_trait]
impl PrimaryLocator for FixedPrimary {
    async fn primary(&self, _pnode: &str) -> Result<String, MantaError> {
        Ok(self.0.clone())
    }
}

/// The primary of a manatee shard run by the simulation on real PostgreSQL
/// (what Moray finds through the shard's ZooKeeper state).
#[derive(Clone)]
pub struct ManateePrimary {
    pub sim: ManateeSim,
    pub shard: String,
}

impl std::fmt::Debug for ManateePrimary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManateePrimary")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PrimaryLocator for ManateePrimary {
    async fn primary(&self, pnode: &str) -> Result<String, MantaError> {
        let none = || MantaError::NoDatabasePeers {
            pnode: pnode.to_owned(),
        };
        let id = self
            .sim
            .shard(&self.shard)
            .primary_id()
            .await
            .ok()
            .flatten()
            .ok_or_else(none)?;
        // The server the cluster state names; if it is down or not yet
        // promoted, connecting or writing fails as it would for Moray.
        let zone = self.sim.zone_by_peer_id(&id).ok_or_else(none)?;
        zone.pg_conninfo().ok_or_else(|| MantaError::NoDatabase {
            pnode: pnode.to_owned(),
        })
    }
}

/// One bucket's index columns: (name, PostgreSQL type).
type Columns = Vec<(String, &'static str)>;

/// A Moray shard whose rows live in real PostgreSQL.
pub struct PgShardStore {
    pnode: String,
    locator: Arc<dyn PrimaryLocator>,
    conn: tokio::sync::Mutex<Option<(String, Client)>>,
    columns: Mutex<BTreeMap<String, Columns>>,
}

impl std::fmt::Debug for PgShardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgShardStore")
            .field("pnode", &self.pnode)
            .field("locator", &self.locator)
            .finish_non_exhaustive()
    }
}

/// libmanta's buckets (node-libmanta:lib/moray.js `setupMantaBuckets`).
pub fn manta_buckets() -> Vec<(&'static str, Value)> {
    let s = json!({"type": "string"});
    vec![
        (
            "manta",
            json!({"index": {"dirname": s, "name": s, "owner": s, "objectId": s, "type": s},
                   "options": {"version": 2}}),
        ),
        (
            "manta_uploads",
            json!({"index": {"finalizingType": s, "uploadId": s}, "options": {"version": 1}}),
        ),
        (
            "manta_delete_log",
            json!({"index": {"objectId": s}, "options": {"version": 1}}),
        ),
        ("manta_fastdelete_queue", json!({"options": {"version": 1}})),
        (
            "manta_directory_counts",
            json!({"index": {"entries": {"type": "number"}}, "options": {"version": 1}}),
        ),
    ]
}

const BUCKETS_CONFIG: &str = "CREATE TABLE IF NOT EXISTS buckets_config (\
     name text PRIMARY KEY, index text NOT NULL, pre text NOT NULL, post text NOT NULL, \
     options text, mtime timestamp without time zone DEFAULT now() NOT NULL)";

/// The directory-count trigger on `manta` (see the module docs).
const DIRCOUNT_TRIGGER: &str = r#"
CREATE OR REPLACE FUNCTION tritonctl_sim_count_directories() RETURNS TRIGGER AS $f$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.dirname IS NOT NULL THEN
            INSERT INTO manta_directory_counts (_key, _value, _etag, _vnode, entries)
                VALUES (NEW.dirname, '{}', '_trigger', NEW._vnode, 1)
                ON CONFLICT (_key) DO UPDATE
                SET entries = manta_directory_counts.entries + 1;
        END IF;
    ELSIF OLD.dirname IS NOT NULL THEN
        UPDATE manta_directory_counts SET entries = entries - 1 WHERE _key = OLD.dirname;
        DELETE FROM manta_directory_counts WHERE _key = OLD.dirname AND entries <= 0;
    END IF;
    RETURN NULL;
END;
$f$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS count_directories ON manta;
CREATE TRIGGER count_directories AFTER INSERT OR DELETE ON manta
    FOR EACH ROW EXECUTE FUNCTION tritonctl_sim_count_directories();
"#;

fn pg_type(t: &str) -> Option<&'static str> {
    match t {
        "string" => Some("TEXT"),
        "number" => Some("NUMERIC"),
        "boolean" => Some("BOOLEAN"),
        _ => None,
    }
}

/// The bucket config's index as (column, type, unique).
fn index_of(bucket: &str, config: &Value) -> Result<Vec<(String, &'static str, bool)>, MantaError> {
    let Some(index) = config.get("index").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    index
        .iter()
        .map(|(col, spec)| {
            let t = spec.get("type").and_then(Value::as_str).unwrap_or("");
            let ty = pg_type(t)
                .filter(|_| valid_bucket_name(col))
                .ok_or_else(|| MantaError::Invocation {
                    message: format!("{bucket}: index {col} of type {t:?} is not simulated"),
                })?;
            let unique = spec.get("unique").and_then(Value::as_bool).unwrap_or(false);
            Ok((col.clone(), ty, unique))
        })
        .collect()
}

/// A value's field as the text bound to an index column (NULL if absent).
fn column_text(value: &Value, col: &str) -> Option<String> {
    match value.get(col)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn vnode_param(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

impl PgShardStore {
    pub fn new(pnode: &str, locator: Arc<dyn PrimaryLocator>) -> Arc<PgShardStore> {
        Arc::new(PgShardStore {
            pnode: pnode.to_owned(),
            locator,
            conn: tokio::sync::Mutex::new(None),
            columns: Mutex::new(BTreeMap::new()),
        })
    }

    fn db_err(&self, e: tokio_postgres::Error) -> MantaError {
        MantaError::Database {
            pnode: self.pnode.clone(),
            message: match e.as_db_error() {
                Some(d) => format!("{}: {}", d.code().code(), d.message()),
                None => e.to_string(),
            },
        }
    }

    /// The connection to the current primary, (re)made when needed.
    async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<(String, Client)>>, MantaError> {
        let mut g = self.conn.lock().await;
        let want = self.locator.primary(&self.pnode).await?;
        let stale = match &*g {
            Some((at, c)) => *at != want || c.is_closed(),
            None => true,
        };
        if stale {
            *g = None;
            let (client, conn) = tokio_postgres::connect(&want, NoTls).await.map_err(|e| {
                MantaError::NoDatabase {
                    pnode: format!("{}: {e}", self.pnode),
                }
            })?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *g = Some((want, client));
        }
        Ok(g)
    }

    /// Creates `buckets_config` and libmanta's buckets with the
    /// directory-count trigger; buckets already there are kept.
    pub async fn setup_manta(&self) -> Result<(), MantaError> {
        {
            let g = self.client().await?;
            let c = &g.as_ref().expect("connected").1;
            c.batch_execute(BUCKETS_CONFIG)
                .await
                .map_err(|e| self.db_err(e))?;
        }
        for (name, config) in manta_buckets() {
            match self.create_bucket(name, &config).await {
                Ok(()) | Err(MantaError::BucketConflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        c.batch_execute(DIRCOUNT_TRIGGER)
            .await
            .map_err(|e| self.db_err(e))
    }

    /// The bucket's index columns, from `buckets_config`.
    async fn columns_of<C: GenericClient + Sync>(
        &self,
        c: &C,
        bucket: &str,
    ) -> Result<Columns, MantaError> {
        if let Some(cols) = self.columns.lock().expect("columns lock").get(bucket) {
            return Ok(cols.clone());
        }
        if !valid_bucket_name(bucket) {
            return Err(MantaError::InvalidBucketName {
                bucket: bucket.into(),
            });
        }
        let row = c
            .query_opt(
                "SELECT index FROM buckets_config WHERE name = $1",
                &[&bucket],
            )
            .await
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| MantaError::BucketNotFound {
                bucket: bucket.into(),
            })?;
        let index: String = row.get(0);
        let index: Value = serde_json::from_str(&index).unwrap_or(Value::Null);
        let cols: Columns = index_of(bucket, &json!({ "index": index }))?
            .into_iter()
            .map(|(c, t, _)| (c, t))
            .collect();
        self.columns
            .lock()
            .expect("columns lock")
            .insert(bucket.to_owned(), cols.clone());
        Ok(cols)
    }

    async fn buckets<C: GenericClient + Sync>(&self, c: &C) -> Result<Vec<String>, MantaError> {
        let rows = c
            .query("SELECT name FROM buckets_config ORDER BY name", &[])
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    /// Insert or update one row (`_id` kept on update); `id`/`etag` given
    /// when restoring a copied row.
    #[allow(clippy::too_many_arguments)]
    async fn upsert<C: GenericClient + Sync>(
        &self,
        c: &C,
        bucket: &str,
        key: &str,
        value: &Value,
        vnode: Option<u32>,
        restore: Option<&Row>,
    ) -> Result<Row, MantaError> {
        let cols = self.columns_of(c, bucket).await?;
        let stored = stored_value(value, vnode);
        let etag = match restore {
            Some(r) => r.etag.clone(),
            None => etag_of(value, vnode),
        };
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000;
        let vn = vnode_param(vnode);
        let texts: Vec<Option<String>> = cols
            .iter()
            .map(|(n, _)| match restore {
                Some(r) => r.columns.get(n).cloned(),
                None => column_text(value, n),
            })
            .collect();
        let mut names = vec!["_key", "_value", "_etag", "_mtime", "_vnode"];
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&key, &stored, &etag, &mtime, &vn];
        let mut placeholders: Vec<String> = (1..=5).map(|i| format!("${i}")).collect();
        let id = restore.map(|r| r.id as i64);
        if let Some(id) = &id {
            names.push("_id");
            params.push(id);
            placeholders.push(format!("${}", params.len()));
        }
        for ((n, ty), t) in cols.iter().zip(&texts) {
            names.push(n);
            params.push(t);
            placeholders.push(format!("${}::text::{ty}", params.len()));
        }
        let updates: Vec<String> = names
            .iter()
            .filter(|n| **n != "_key" && **n != "_id")
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let sql = format!(
            "INSERT INTO {bucket} ({}) VALUES ({}) ON CONFLICT (_key) DO UPDATE SET {} \
             RETURNING _id",
            names.join(", "),
            placeholders.join(", "),
            updates.join(", ")
        );
        let row = c
            .query_one(sql.as_str(), &params)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(Row {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            value: value.clone(),
            vnode,
            etag,
            id: row.get::<_, i64>(0) as u64,
            columns: cols
                .iter()
                .zip(texts)
                .filter_map(|((n, _), t)| Some((n.clone(), t?)))
                .collect(),
        })
    }

    fn to_row(&self, bucket: &str, cols: &Columns, r: &tokio_postgres::Row) -> Row {
        let value: String = r.get("_value");
        Row {
            columns: cols
                .iter()
                .filter_map(|(n, _)| Some((n.clone(), r.get::<_, Option<String>>(n.as_str())?)))
                .collect(),
            bucket: bucket.to_owned(),
            key: r.get("_key"),
            value: client_value(serde_json::from_str(&value).unwrap_or(Value::String(value))),
            vnode: r.get::<_, Option<i64>>("_vnode").map(|v| v as u32),
            etag: r.get::<_, String>("_etag").trim_end().to_owned(),
            id: r.get::<_, Option<i64>>("_id").unwrap_or_default() as u64,
        }
    }

    /// The select list of a bucket's rows: Moray's columns, then the index
    /// columns as text.
    fn select_list(cols: &Columns) -> String {
        let mut s = String::from("_key, _id, _value, _etag, _vnode");
        for (n, _) in cols {
            s.push_str(&format!(", {n}::text AS \"{n}\""));
        }
        s
    }

    async fn delete_one<C: GenericClient + Sync>(
        &self,
        c: &C,
        bucket: &str,
        key: &str,
    ) -> Result<Row, MantaError> {
        let cols = self.columns_of(c, bucket).await?;
        let sql = format!(
            "DELETE FROM {bucket} WHERE _key = $1 RETURNING {}",
            Self::select_list(&cols)
        );
        let r = c
            .query_opt(sql.as_str(), &[&key])
            .await
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| MantaError::ObjectNotFound {
                bucket: bucket.into(),
                key: key.into(),
            })?;
        Ok(self.to_row(bucket, &cols, &r))
    }

    /// Runs a query on the primary (tests look at the tables directly).
    pub async fn query(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        c.query(sql, &[]).await.map_err(|e| self.db_err(e))
    }

    /// `manta_directory_counts.entries` of a directory.
    pub async fn directory_count(&self, dir: &str) -> Result<Option<i64>, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        let r = c
            .query_opt(
                "SELECT entries::bigint FROM manta_directory_counts WHERE _key = $1",
                &[&dir],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(r.map(|r| r.get(0)))
    }

    /// Rows with a NULL `_vnode`, per bucket.
    pub async fn null_vnode_rows(&self) -> Result<BTreeMap<String, i64>, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        let mut out = BTreeMap::new();
        for b in self.buckets(c).await? {
            let n: i64 = c
                .query_one(
                    format!("SELECT count(*) FROM {b} WHERE _vnode IS NULL").as_str(),
                    &[],
                )
                .await
                .map_err(|e| self.db_err(e))?
                .get(0);
            if n > 0 {
                out.insert(b, n);
            }
        }
        Ok(out)
    }

    async fn select_rows(&self, filter: Option<&BTreeSet<u32>>) -> Result<Vec<Row>, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        let vnodes: Vec<i64> = filter
            .map(|f| f.iter().map(|v| i64::from(*v)).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for b in self.buckets(c).await? {
            let columns = self.columns_of(c, &b).await?;
            let cols = Self::select_list(&columns);
            let rows = match filter {
                None => {
                    c.query(
                        format!("SELECT {cols} FROM {b} ORDER BY _key").as_str(),
                        &[],
                    )
                    .await
                }
                Some(_) => {
                    c.query(
                        format!("SELECT {cols} FROM {b} WHERE _vnode = ANY($1) ORDER BY _key")
                            .as_str(),
                        &[&vnodes],
                    )
                    .await
                }
            }
            .map_err(|e| self.db_err(e))?;
            out.extend(rows.iter().map(|r| self.to_row(&b, &columns, r)));
        }
        Ok(out)
    }
}

#[async_trait]
impl RowStore for PgShardStore {
    fn pnode(&self) -> &str {
        &self.pnode
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        value: Value,
        vnode: Option<u32>,
    ) -> Result<Row, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        self.upsert(c, bucket, key, &value, vnode, None).await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Row, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        let cols = self.columns_of(c, bucket).await?;
        let sql = format!(
            "SELECT {} FROM {bucket} WHERE _key = $1",
            Self::select_list(&cols)
        );
        let r = c
            .query_opt(sql.as_str(), &[&key])
            .await
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| MantaError::ObjectNotFound {
                bucket: bucket.into(),
                key: key.into(),
            })?;
        Ok(self.to_row(bucket, &cols, &r))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<Row, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        self.delete_one(c, bucket, key).await
    }

    async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<String>>, MantaError> {
        let mut g = self.client().await?;
        let c = &mut g.as_mut().expect("connected").1;
        let tx = c.transaction().await.map_err(|e| self.db_err(e))?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                BatchOp::Put { bucket, key, value } => {
                    let row = self.upsert(&tx, bucket, key, value, None, None).await?;
                    out.push(Some(row.etag));
                }
                BatchOp::Delete { bucket, key } => {
                    self.delete_one(&tx, bucket, key).await?;
                    out.push(None);
                }
            }
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(out)
    }

    async fn create_bucket(&self, name: &str, config: &Value) -> Result<(), MantaError> {
        if !valid_bucket_name(name) {
            return Err(MantaError::InvalidBucketName {
                bucket: name.into(),
            });
        }
        let index = index_of(name, config)?;
        let mut g = self.client().await?;
        let c = &mut g.as_mut().expect("connected").1;
        let tx = c.transaction().await.map_err(|e| self.db_err(e))?;
        let index_json = config
            .get("index")
            .cloned()
            .unwrap_or(json!({}))
            .to_string();
        let options = config
            .get("options")
            .cloned()
            .unwrap_or(json!({}))
            .to_string();
        let pre = config.get("pre").cloned().unwrap_or(json!([])).to_string();
        let post = config.get("post").cloned().unwrap_or(json!([])).to_string();
        if let Err(e) = tx
            .execute(
                "INSERT INTO buckets_config (name, index, pre, post, options) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&name, &index_json, &pre, &post, &options],
            )
            .await
        {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                return Err(MantaError::BucketConflict {
                    bucket: name.into(),
                });
            }
            return Err(self.db_err(e));
        }
        let extra: String = index
            .iter()
            .map(|(c, t, u)| format!(", {c} {t}{}", if *u { " UNIQUE" } else { "" }))
            .collect();
        let mut sql = format!(
            "CREATE SEQUENCE {name}_serial; \
             CREATE TABLE {name} (_id BIGINT DEFAULT nextval('{name}_serial'), \
             _txn_snap INTEGER, _key TEXT PRIMARY KEY, _value TEXT NOT NULL, \
             _etag CHAR(8) NOT NULL, \
             _mtime BIGINT DEFAULT CAST (EXTRACT (EPOCH FROM NOW()) * 1000 AS BIGINT), \
             _vnode BIGINT{extra});"
        );
        let indexed = index
            .iter()
            .filter(|(_, _, u)| !u)
            .map(|(c, _, _)| c.as_str())
            .chain(["_id", "_etag", "_mtime", "_vnode"]);
        for col in indexed {
            sql.push_str(&format!(
                " CREATE INDEX {name}_{col}_idx ON {name} USING BTREE ({col}) \
                 WHERE {col} IS NOT NULL;"
            ));
        }
        tx.batch_execute(&sql).await.map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        self.columns.lock().expect("columns lock").insert(
            name.to_owned(),
            index.into_iter().map(|(c, t, _)| (c, t)).collect(),
        );
        Ok(())
    }

    async fn update_bucket(&self, name: &str, config: &Value) -> Result<(), MantaError> {
        // Only the stored config changes; new index columns are not added.
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        let index_json = config
            .get("index")
            .cloned()
            .unwrap_or(json!({}))
            .to_string();
        let options = config
            .get("options")
            .cloned()
            .unwrap_or(json!({}))
            .to_string();
        let n = c
            .execute(
                "UPDATE buckets_config SET index = $2, options = $3, mtime = now() \
                 WHERE name = $1",
                &[&name, &index_json, &options],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            return Err(MantaError::BucketNotFound {
                bucket: name.into(),
            });
        }
        Ok(())
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), MantaError> {
        if !valid_bucket_name(name) {
            return Err(MantaError::InvalidBucketName {
                bucket: name.into(),
            });
        }
        let mut g = self.client().await?;
        let c = &mut g.as_mut().expect("connected").1;
        let tx = c.transaction().await.map_err(|e| self.db_err(e))?;
        let n = tx
            .execute("DELETE FROM buckets_config WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            return Err(MantaError::BucketNotFound {
                bucket: name.into(),
            });
        }
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; DROP SEQUENCE IF EXISTS {name}_serial;"
        ))
        .await
        .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        self.columns.lock().expect("columns lock").remove(name);
        Ok(())
    }

    async fn all_rows(&self) -> Result<Vec<Row>, MantaError> {
        self.select_rows(None).await
    }

    async fn rows_in(&self, vnodes: &BTreeSet<u32>) -> Result<Vec<Row>, MantaError> {
        self.select_rows(Some(vnodes)).await
    }

    async fn restore_rows(&self, rows: &[Row]) -> Result<usize, MantaError> {
        let mut g = self.client().await?;
        let c = &mut g.as_mut().expect("connected").1;
        let tx = c.transaction().await.map_err(|e| self.db_err(e))?;
        // A restore copies rows as they are: no trigger runs (the copied
        // directory counts come as rows of their own).
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .await
            .map_err(|e| self.db_err(e))?;
        let mut added = 0;
        let mut touched = BTreeSet::new();
        for r in rows {
            let cols = self.columns_of(&tx, &r.bucket).await?;
            let sql = format!(
                "SELECT {} FROM {} WHERE _key = $1",
                Self::select_list(&cols),
                r.bucket
            );
            let old = tx
                .query_opt(sql.as_str(), &[&r.key])
                .await
                .map_err(|e| self.db_err(e))?;
            match old {
                Some(o) if self.to_row(&r.bucket, &cols, &o) == *r => {}
                Some(_) => {
                    return Err(MantaError::RowConflict {
                        pnode: self.pnode.clone(),
                        bucket: r.bucket.clone(),
                        key: r.key.clone(),
                    });
                }
                None => {
                    self.upsert(&tx, &r.bucket, &r.key, &r.value, r.vnode, Some(r))
                        .await?;
                    touched.insert(r.bucket.clone());
                    added += 1;
                }
            }
        }
        // Later local inserts must not reuse a copied `_id`.
        for b in touched {
            tx.batch_execute(&format!(
                "SELECT setval('{b}_serial', GREATEST((SELECT COALESCE(max(_id), 1) FROM {b}), \
                 (SELECT last_value FROM {b}_serial)))"
            ))
            .await
            .map_err(|e| self.db_err(e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(added)
    }

    async fn delete_in(&self, vnodes: &BTreeSet<u32>) -> Result<usize, MantaError> {
        let g = self.client().await?;
        let c = &g.as_ref().expect("connected").1;
        let v: Vec<i64> = vnodes.iter().map(|v| i64::from(*v)).collect();
        let mut n = 0;
        for b in self.buckets(c).await? {
            n += c
                .execute(
                    format!("DELETE FROM {b} WHERE _vnode = ANY($1)").as_str(),
                    &[&v],
                )
                .await
                .map_err(|e| self.db_err(e))? as usize;
        }
        Ok(n)
    }
}
