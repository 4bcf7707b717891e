//! Moray shards as in-memory tables.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Access, AllUp, MantaError, ShardBackend};

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
}

fn etag_of(value: &Value) -> String {
    let d = Sha256::digest(value.to_string().as_bytes());
    d[..4].iter().map(|b| format!("{b:02X}")).collect()
}

pub(super) type Table = BTreeMap<(String, String), Row>;

/// One metadata shard's rows.
#[derive(Debug)]
pub struct ShardStore {
    pnode: String,
    rows: Mutex<Table>,
    read_only: AtomicBool,
    next_id: AtomicU64,
}

impl ShardStore {
    pub fn new(pnode: &str) -> ShardStore {
        ShardStore {
            pnode: pnode.to_owned(),
            rows: Mutex::new(BTreeMap::new()),
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
        let k = (bucket.to_owned(), key.to_owned());
        let id = match t.get(&k) {
            Some(old) => old.id,
            None => self.next_id.fetch_add(1, Ordering::SeqCst),
        };
        let row = Row {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag_of(&value),
            value,
            vnode,
            id,
        };
        t.insert(k, row.clone());
        Ok(row)
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

/// All Moray shards of a region, by pnode, and what decides their health.
pub struct MorayTier {
    shards: RwLock<BTreeMap<String, Arc<ShardStore>>>,
    backend: RwLock<Arc<dyn ShardBackend>>,
}

impl std::fmt::Debug for MorayTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MorayTier")
            .field(
                "shards",
                &self
                    .shards
                    .read()
                    .expect("tier lock")
                    .keys()
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl MorayTier {
    /// A tier whose shards are always up.
    pub fn new() -> Arc<MorayTier> {
        MorayTier::with_backend(Arc::new(AllUp))
    }

    pub fn with_backend(backend: Arc<dyn ShardBackend>) -> Arc<MorayTier> {
        Arc::new(MorayTier {
            shards: RwLock::new(BTreeMap::new()),
            backend: RwLock::new(backend),
        })
    }

    /// Swaps the health source, e.g. when the manatee simulation starts.
    pub fn set_backend(&self, backend: Arc<dyn ShardBackend>) {
        *self.backend.write().expect("tier lock") = backend;
    }

    /// Adds a shard (or returns the existing one).
    pub fn add_shard(&self, pnode: &str) -> Arc<ShardStore> {
        self.shards
            .write()
            .expect("tier lock")
            .entry(pnode.to_owned())
            .or_insert_with(|| Arc::new(ShardStore::new(pnode)))
            .clone()
    }

    pub fn shard(&self, pnode: &str) -> Option<Arc<ShardStore>> {
        self.shards.read().expect("tier lock").get(pnode).cloned()
    }

    pub fn shards(&self) -> Vec<Arc<ShardStore>> {
        self.shards
            .read()
            .expect("tier lock")
            .values()
            .cloned()
            .collect()
    }

    /// The shard, if it exists and the backend lets `access` through now.
    pub async fn checked(
        &self,
        pnode: &str,
        access: Access,
    ) -> Result<Arc<ShardStore>, MantaError> {
        let store = self.shard(pnode).ok_or_else(|| MantaError::UnknownShard {
            pnode: pnode.into(),
        })?;
        let backend = self.backend.read().expect("tier lock").clone();
        backend.check(pnode, access).await?;
        Ok(store)
    }
}
