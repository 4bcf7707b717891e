//! Moray shards as in-memory tables (the default; [`super::PgShardStore`]
//! holds them in real PostgreSQL).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use super::MantaError;
use super::rows::{BatchOp, RowStore, etag_of, valid_bucket_name};

/// One Moray row. `vnode` is the indexed `_vnode` column: `None` for rows
/// written without e-m's stamp (batch, direct inserts), which a vnode move
/// cannot see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub bucket: String,
    pub key: String,
    pub value: Value,
    #[serde(rename = "_vnode")]
    pub vnode: Option<u32>,
    #[serde(rename = "_etag")]
    pub etag: String,
    #[serde(rename = "_id")]
    pub id: u64,
    /// The bucket's index columns as PostgreSQL holds them (as text), for
    /// rows of a real-PostgreSQL shard: a physical copy keeps them even
    /// when the value lacks the field (trigger-made count rows). Empty in
    /// memory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
}

pub(super) type Table = BTreeMap<(String, String), Row>;

/// One metadata shard's rows.
#[derive(Debug)]
pub struct ShardStore {
    pnode: String,
    rows: Mutex<Table>,
    /// Bucket configs created through createBucket (rows may be put into
    /// any bucket, created or not: the model does not check).
    buckets: Mutex<BTreeMap<String, Value>>,
    read_only: AtomicBool,
    next_id: AtomicU64,
}

impl ShardStore {
    pub fn new(pnode: &str) -> ShardStore {
        ShardStore {
            pnode: pnode.to_owned(),
            rows: Mutex::new(BTreeMap::new()),
            buckets: Mutex::new(BTreeMap::new()),
            read_only: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn pnode(&self) -> &str {
        &self.pnode
    }

    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::SeqCst);
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::SeqCst)
    }

    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.rows.lock().expect("shard table lock")
    }

    fn writable(&self) -> Result<(), MantaError> {
        if self.is_read_only() {
            return Err(MantaError::ReadOnlyPnode {
                pnode: self.pnode.clone(),
            });
        }
        Ok(())
    }

    /// Insert or update; an update keeps `_id`, as Moray's UPDATE does.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        value: Value,
        vnode: Option<u32>,
    ) -> Result<Row, MantaError> {
        self.writable()?;
        let mut t = self.table();
        Ok(self.put_locked(&mut t, bucket, key, value, vnode))
    }

    fn put_locked(
        &self,
        t: &mut Table,
        bucket: &str,
        key: &str,
        value: Value,
        vnode: Option<u32>,
    ) -> Row {
        let k = (bucket.to_owned(), key.to_owned());
        let id = match t.get(&k) {
            Some(old) => old.id,
            None => self.next_id.fetch_add(1, Ordering::SeqCst),
        };
        let row = Row {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag_of(&value, vnode),
            value,
            vnode,
            id,
            columns: BTreeMap::new(),
        };
        t.insert(k, row.clone());
        row
    }

    /// batch: all requests or none. Puts leave `_vnode` NULL.
    pub fn batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<String>>, MantaError> {
        self.writable()?;
        let mut t = self.table();
        let mut staged = t.clone();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                BatchOp::Put { bucket, key, value } => {
                    let row = self.put_locked(&mut staged, bucket, key, value.clone(), None);
                    out.push(Some(row.etag));
                }
                BatchOp::Delete { bucket, key } => {
                    staged
                        .remove(&(bucket.clone(), key.clone()))
                        .ok_or_else(|| MantaError::ObjectNotFound {
                            bucket: bucket.clone(),
                            key: key.clone(),
                        })?;
                    out.push(None);
                }
            }
        }
        *t = staged;
        Ok(out)
    }

    /// Buckets created through createBucket, with their configs.
    pub fn buckets(&self) -> BTreeMap<String, Value> {
        self.buckets.lock().expect("buckets lock").clone()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Row, MantaError> {
        self.table()
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
            .ok_or_else(|| MantaError::ObjectNotFound {
                bucket: bucket.into(),
                key: key.into(),
            })
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<Row, MantaError> {
        self.writable()?;
        self.table()
            .remove(&(bucket.to_owned(), key.to_owned()))
            .ok_or_else(|| MantaError::ObjectNotFound {
                bucket: bucket.into(),
                key: key.into(),
            })
    }

    pub fn contains(&self, bucket: &str, key: &str) -> bool {
        self.table()
            .contains_key(&(bucket.to_owned(), key.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every row, in (bucket, key) order.
    pub fn rows(&self) -> Vec<Row> {
        self.table().values().cloned().collect()
    }

    /// `SELECT * WHERE _vnode IN (vnodes)`.
    pub fn rows_in_vnodes(&self, vnodes: &BTreeSet<u32>) -> Vec<Row> {
        self.table()
            .values()
            .filter(|r| r.vnode.is_some_and(|v| vnodes.contains(&v)))
            .cloned()
            .collect()
    }

    /// Rows with a NULL `_vnode`: invisible to a vnode move.
    pub fn null_vnode_rows(&self) -> usize {
        self.table().values().filter(|r| r.vnode.is_none()).count()
    }

    /// Inserts rows exactly as given (ids and etags kept), as a dump and
    /// restore would. A key already present with a different row is an
    /// error and nothing is written.
    pub fn insert_rows(&self, rows: &[Row]) -> Result<usize, MantaError> {
        self.writable()?;
        let mut t = self.table();
        for r in rows {
            if let Some(old) = t.get(&(r.bucket.clone(), r.key.clone()))
                && old != r
            {
                return Err(MantaError::RowConflict {
                    pnode: self.pnode.clone(),
                    bucket: r.bucket.clone(),
                    key: r.key.clone(),
                });
            }
        }
        let mut added = 0;
        for r in rows {
            if t.insert((r.bucket.clone(), r.key.clone()), r.clone())
                .is_none()
            {
                added += 1;
            }
            // Later local inserts must not reuse a copied id.
            self.next_id.fetch_max(r.id + 1, Ordering::SeqCst);
        }
        Ok(added)
    }

    /// `DELETE WHERE _vnode IN (vnodes)`; returns how many rows went.
    pub fn delete_vnodes(&self, vnodes: &BTreeSet<u32>) -> Result<usize, MantaError> {
        self.writable()?;
        let mut t = self.table();
        let before = t.len();
        t.retain(|_, r| !r.vnode.is_some_and(|v| vnodes.contains(&v)));
        Ok(before - t.len())
    }
}

#[async_trait]
impl RowStore for ShardStore {
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
        ShardStore::put(self, bucket, key, value, vnode)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Row, MantaError> {
        ShardStore::get(self, bucket, key)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<Row, MantaError> {
        ShardStore::delete(self, bucket, key)
    }

    async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<String>>, MantaError> {
        ShardStore::batch(self, ops)
    }

    async fn create_bucket(&self, name: &str, config: &Value) -> Result<(), MantaError> {
        if !valid_bucket_name(name) {
            return Err(MantaError::InvalidBucketName {
                bucket: name.into(),
            });
        }
        self.writable()?;
        let mut b = self.buckets.lock().expect("buckets lock");
        if b.contains_key(name) {
            return Err(MantaError::BucketConflict {
                bucket: name.into(),
            });
        }
        b.insert(name.to_owned(), config.clone());
        Ok(())
    }

    async fn update_bucket(&self, name: &str, config: &Value) -> Result<(), MantaError> {
        self.writable()?;
        let mut b = self.buckets.lock().expect("buckets lock");
        let slot = b.get_mut(name).ok_or_else(|| MantaError::BucketNotFound {
            bucket: name.into(),
        })?;
        *slot = config.clone();
        Ok(())
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), MantaError> {
        self.writable()?;
        self.buckets
            .lock()
            .expect("buckets lock")
            .remove(name)
            .ok_or_else(|| MantaError::BucketNotFound {
                bucket: name.into(),
            })?;
        self.table().retain(|(b, _), _| b != name);
        Ok(())
    }

    async fn all_rows(&self) -> Result<Vec<Row>, MantaError> {
        Ok(self.rows())
    }

    async fn rows_in(&self, vnodes: &BTreeSet<u32>) -> Result<Vec<Row>, MantaError> {
        Ok(self.rows_in_vnodes(vnodes))
    }

    async fn restore_rows(&self, rows: &[Row]) -> Result<usize, MantaError> {
        self.insert_rows(rows)
    }

    async fn delete_in(&self, vnodes: &BTreeSet<u32>) -> Result<usize, MantaError> {
        self.delete_vnodes(vnodes)
    }
}
