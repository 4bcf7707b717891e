//! Every Moray shard of a region by pnode, and what decides whether a shard
//! can serve a request right now.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::rows::RowStore;
use super::{Access, AllUp, MantaError, ShardBackend, ShardStore};

/// All Moray shards of a region, by pnode, and what decides their health.
pub struct MorayTier {
    /// The in-memory shards (also in `stores`).
    shards: RwLock<BTreeMap<String, Arc<ShardStore>>>,
    /// Every shard, in memory or on real PostgreSQL.
    stores: RwLock<BTreeMap<String, Arc<dyn RowStore>>>,
    backend: RwLock<Arc<dyn ShardBackend>>,
}

impl std::fmt::Debug for MorayTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MorayTier")
            .field(
                "shards",
                &self
                    .stores
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
            stores: RwLock::new(BTreeMap::new()),
            backend: RwLock::new(backend),
        })
    }

    /// Swaps the health source, e.g. when the manatee simulation starts.
    pub fn set_backend(&self, backend: Arc<dyn ShardBackend>) {
        *self.backend.write().expect("tier lock") = backend;
    }

    /// Adds an in-memory shard (or returns the existing one).
    pub fn add_shard(&self, pnode: &str) -> Arc<ShardStore> {
        let store = self
            .shards
            .write()
            .expect("tier lock")
            .entry(pnode.to_owned())
            .or_insert_with(|| Arc::new(ShardStore::new(pnode)))
            .clone();
        self.stores
            .write()
            .expect("tier lock")
            .insert(pnode.to_owned(), store.clone());
        store
    }

    /// Adds (or replaces) a shard held elsewhere, e.g. on real PostgreSQL.
    pub fn add_store(&self, store: Arc<dyn RowStore>) {
        let pnode = store.pnode().to_owned();
        self.shards.write().expect("tier lock").remove(&pnode);
        self.stores.write().expect("tier lock").insert(pnode, store);
    }

    /// Any shard by pnode, whatever holds it.
    pub fn store(&self, pnode: &str) -> Option<Arc<dyn RowStore>> {
        self.stores.read().expect("tier lock").get(pnode).cloned()
    }

    /// Every shard, in pnode order.
    pub fn stores(&self) -> Vec<Arc<dyn RowStore>> {
        self.stores
            .read()
            .expect("tier lock")
            .values()
            .cloned()
            .collect()
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

    /// Any shard (in memory or not), if it exists and the backend lets
    /// `access` through now.
    pub async fn checked_store(
        &self,
        pnode: &str,
        access: Access,
    ) -> Result<Arc<dyn RowStore>, MantaError> {
        let store = self.store(pnode).ok_or_else(|| MantaError::UnknownShard {
            pnode: pnode.into(),
        })?;
        let backend = self.backend.read().expect("tier lock").clone();
        backend.check(pnode, access).await?;
        Ok(store)
    }

    /// The in-memory shard, if it exists and the backend lets `access`
    /// through now.
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
