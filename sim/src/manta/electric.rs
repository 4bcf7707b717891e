//! One electric-moray process.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Serialize;
use serde_json::Value;
use wire::fash::{KeyEncoding, READ_ONLY, Ring, transform_key};

use super::config::IndexShard;
use super::rows::BatchOp;
use super::{Access, MantaError, MorayTier};

/// `_node` as e-m adds it to responses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub pnode: String,
    pub vnode: u32,
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PutResult {
    pub etag: String,
    #[serde(rename = "_node")]
    pub node: NodeInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GetResult {
    pub bucket: String,
    pub key: String,
    pub value: Value,
    #[serde(rename = "_etag")]
    pub etag: String,
    #[serde(rename = "_id")]
    pub id: u64,
    #[serde(rename = "_node")]
    pub node: NodeInfo,
}

/// What e-m's status endpoint reports, plus which ring it runs (the
/// fingerprint stands in for manta-reshard's ring stamp).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmStatus {
    pub name: String,
    pub ring_fingerprint: Option<String>,
    pub vnode_count: Option<u32>,
    pub read_only_vnodes: usize,
    /// The IMGAPI image the loaded ring came from (manta-reshard's
    /// `manta_hash_ring_stamp.json` `image_uuid`); `None` for a ring loaded
    /// by hand.
    pub ring_image: Option<String>,
    /// Why the image `HASH_RING_IMAGE` names could not be loaded (the
    /// previous ring stays in service).
    pub ring_image_error: Option<String>,
    /// `None` when no indexShards config was given (every pnode writable).
    pub index_shards: Option<Vec<(String, bool)>>,
}

struct Loaded {
    ring: Arc<Ring>,
    image: Option<String>,
    /// e-m's `ring.ro_`: the ring had data vnodes when loaded, so bucket
    /// DDL is refused.
    ro: bool,
    /// Hashing a 10M-vnode ring takes a while: only when asked.
    fingerprint: OnceLock<String>,
}

impl Loaded {
    fn fingerprint(&self) -> String {
        self.fingerprint
            .get_or_init(|| self.ring.fingerprint())
            .clone()
    }
}

/// An electric-moray instance: its own ring and config over a shared
/// [`MorayTier`].
pub struct ElectricMoray {
    name: String,
    tier: Arc<MorayTier>,
    encoding: KeyEncoding,
    ring: RwLock<Option<Loaded>>,
    ring_image_error: RwLock<Option<String>>,
    index_shards: RwLock<Option<BTreeMap<String, bool>>>,
    /// The `indexShards` array as configured (for the status endpoint).
    index_config: RwLock<Option<Vec<IndexShard>>>,
}

impl std::fmt::Debug for ElectricMoray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectricMoray")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ElectricMoray {
    pub fn new(name: &str, tier: Arc<MorayTier>, encoding: KeyEncoding) -> Arc<ElectricMoray> {
        Arc::new(ElectricMoray {
            name: name.to_owned(),
            tier,
            encoding,
            ring: RwLock::new(None),
            ring_image_error: RwLock::new(None),
            index_shards: RwLock::new(None),
            index_config: RwLock::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tier(&self) -> &Arc<MorayTier> {
        &self.tier
    }

    /// Loads a ring from fash JSON (the content of the HASH_RING_IMAGE). A
    /// ring that does not validate leaves the current one in place.
    pub fn load_ring(&self, json: &str) -> Result<(), MantaError> {
        self.install_ring(Ring::from_json(json)?);
        Ok(())
    }

    /// Loads an already-parsed ring.
    pub fn install_ring(&self, ring: Ring) {
        self.install(ring, None);
    }

    /// Loads the ring held by IMGAPI image `image` (see
    /// [`super::ring_image`]) and stamps it with the image's uuid.
    pub fn install_ring_image(&self, image: &str, ring: Ring) {
        self.install(ring, Some(image.to_owned()));
        *self.ring_image_error.write().expect("ring lock") = None;
    }

    fn install(&self, ring: Ring, image: Option<String>) {
        *self.ring.write().expect("ring lock") = Some(Loaded {
            ro: ring.has_data_vnodes(),
            ring: Arc::new(ring),
            image,
            fingerprint: OnceLock::new(),
        });
    }

    /// The image the loaded ring came from, if it came from one.
    pub fn ring_image(&self) -> Option<String> {
        self.ring
            .read()
            .expect("ring lock")
            .as_ref()
            .and_then(|l| l.image.clone())
    }

    /// Record (or clear) why the wanted ring image could not be loaded.
    pub fn set_ring_image_error(&self, error: Option<String>) {
        *self.ring_image_error.write().expect("ring lock") = error;
    }

    /// Fingerprint of the loaded ring ([`Ring::fingerprint`]).
    pub fn ring_fingerprint(&self) -> Option<String> {
        self.ring
            .read()
            .expect("ring lock")
            .as_ref()
            .map(Loaded::fingerprint)
    }

    pub fn ring(&self) -> Option<Arc<Ring>> {
        self.ring
            .read()
            .expect("ring lock")
            .as_ref()
            .map(|l| l.ring.clone())
    }

    fn loaded_ring(&self) -> Result<Arc<Ring>, MantaError> {
        self.ring().ok_or(MantaError::NoRing)
    }

    /// The `indexShards` config e-m reads at start: pnode -> readOnly. A
    /// pnode missing from it is read-only, as in e-m. `None` = no config,
    /// every pnode writable.
    pub fn set_index_shards<I, S>(&self, shards: Option<I>)
    where
        I: IntoIterator<Item = (S, bool)>,
        S: Into<String>,
    {
        let map: Option<BTreeMap<String, bool>> =
            shards.map(|s| s.into_iter().map(|(p, ro)| (p.into(), ro)).collect());
        *self.index_config.write().expect("config lock") = map.as_ref().map(|m| {
            m.iter()
                .map(|(p, ro)| IndexShard::for_pnode(p, *ro))
                .collect()
        });
        *self.index_shards.write().expect("config lock") = map;
    }

    /// `ringCfg.indexShards` as config-agent renders it from SAPI's
    /// `INDEX_MORAY_SHARDS`: a host matches pnode `tcp://<host>:2020`.
    pub fn configure_index_shards(&self, shards: Vec<IndexShard>) {
        *self.index_shards.write().expect("config lock") =
            Some(shards.iter().map(|s| (s.pnode(), s.read_only)).collect());
        *self.index_config.write().expect("config lock") = Some(shards);
    }

    /// The `indexShards` array this process runs with (`None`: none given).
    pub fn index_shard_config(&self) -> Option<Vec<IndexShard>> {
        self.index_config.read().expect("config lock").clone()
    }

    /// The ring's pnodes (e-m's moray clients, `client_list`).
    pub fn client_list(&self) -> Vec<String> {
        self.ring().map(|r| r.pnodes().to_vec()).unwrap_or_default()
    }

    pub fn is_read_only_pnode(&self, pnode: &str) -> bool {
        match &*self.index_shards.read().expect("config lock") {
            None => false,
            Some(m) => m.get(pnode).copied().unwrap_or(true),
        }
    }

    pub fn status(&self) -> EmStatus {
        let ring = self.ring.read().expect("ring lock");
        EmStatus {
            name: self.name.clone(),
            ring_fingerprint: ring.as_ref().map(Loaded::fingerprint),
            vnode_count: ring.as_ref().map(|l| l.ring.vnode_count()),
            read_only_vnodes: ring.as_ref().map_or(0, |l| {
                l.ring
                    .data_vnodes()
                    .filter(|(_, d)| *d == READ_ONLY)
                    .count()
            }),
            ring_image: ring.as_ref().and_then(|l| l.image.clone()),
            ring_image_error: self.ring_image_error.read().expect("ring lock").clone(),
            index_shards: self
                .index_shards
                .read()
                .expect("config lock")
                .as_ref()
                .map(|m| m.iter().map(|(p, ro)| (p.clone(), *ro)).collect()),
        }
    }

    /// `getNode(bucket, key)` through the bucket's key transformation.
    pub fn locate(&self, bucket: &str, key: &str) -> Result<NodeInfo, MantaError> {
        let ring = self.loaded_ring()?;
        let node = ring.node(transform_key(bucket, key), self.encoding)?;
        Ok(NodeInfo {
            pnode: node.pnode.to_owned(),
            vnode: node.vnode,
            data: node.data.clone(),
        })
    }

    /// put/del path: ring data `"ro"` first, then the pnode's readOnly.
    fn writable_node(&self, bucket: &str, key: &str) -> Result<NodeInfo, MantaError> {
        let node = self.locate(bucket, key)?;
        if node.data == READ_ONLY {
            return Err(MantaError::ReadOnlyVnode { vnode: node.vnode });
        }
        if self.is_read_only_pnode(&node.pnode) {
            return Err(MantaError::ReadOnlyPnode { pnode: node.pnode });
        }
        Ok(node)
    }

    /// putObject: stamps `_vnode` with the vnode the key routed to.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        value: Value,
    ) -> Result<PutResult, MantaError> {
        let node = self.writable_node(bucket, key)?;
        let store = self.tier.checked_store(&node.pnode, Access::Write).await?;
        let row = store.put(bucket, key, value, Some(node.vnode)).await?;
        Ok(PutResult {
            etag: row.etag,
            node,
        })
    }

    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<GetResult, MantaError> {
        let node = self.locate(bucket, key)?;
        let store = self.tier.checked_store(&node.pnode, Access::Read).await?;
        let row = store.get(bucket, key).await?;
        Ok(GetResult {
            bucket: row.bucket,
            key: row.key,
            value: row.value,
            etag: row.etag,
            id: row.id,
            node,
        })
    }

    pub async fn del_object(&self, bucket: &str, key: &str) -> Result<(), MantaError> {
        let node = self.writable_node(bucket, key)?;
        let store = self.tier.checked_store(&node.pnode, Access::Write).await?;
        store.delete(bucket, key).await?;
        Ok(())
    }

    /// batch (e-m's `getNodeBatch`): only `put` and `delete`, every
    /// request's transformed key equal, routed as one node; refused like a
    /// put on a read-only vnode or pnode. Values are not stamped with the
    /// vnode, so the rows get a NULL `_vnode` (research 3.11-2).
    pub async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<String>>, MantaError> {
        let Some(first) = ops.first() else {
            return Err(MantaError::Invocation {
                message: "batch expects \"requests\" (args[0]) to be an array with at least \
                          one request but received an empty array"
                    .into(),
            });
        };
        let tkey = transform_key(first.bucket(), first.key());
        if ops
            .iter()
            .any(|o| transform_key(o.bucket(), o.key()) != tkey)
        {
            return Err(MantaError::Plain {
                message: "all requests must transform to the same key".into(),
            });
        }
        let node = self.writable_node(first.bucket(), first.key())?;
        let store = self.tier.checked_store(&node.pnode, Access::Write).await?;
        store.batch(ops).await
    }

    /// Bucket DDL's gate: refused while the ring was loaded with data
    /// vnodes, then while any of the ring's pnodes is read-only (all named,
    /// comma-separated, as e-m's `listReadOnlyPnodes`).
    fn ddl_allowed(&self) -> Result<Vec<String>, MantaError> {
        let (ro, pnodes) = {
            let ring = self.ring.read().expect("ring lock");
            let l = ring.as_ref().ok_or(MantaError::NoRing)?;
            (l.ro, l.ring.pnodes().to_vec())
        };
        if ro {
            return Err(MantaError::ReadOnlyRing);
        }
        let read_only: Vec<&str> = pnodes
            .iter()
            .filter(|p| self.is_read_only_pnode(p))
            .map(String::as_str)
            .collect();
        if !read_only.is_empty() {
            return Err(MantaError::ReadOnlyPnode {
                pnode: read_only.join(", "),
            });
        }
        Ok(pnodes)
    }

    /// createBucket / updateBucket / delBucket: fanned out to every shard.
    pub async fn bucket_ddl(&self, ddl: BucketDdl<'_>) -> Result<(), MantaError> {
        for pnode in self.ddl_allowed()? {
            let store = self.tier.checked_store(&pnode, Access::Write).await?;
            match ddl {
                BucketDdl::Create { name, config } => store.create_bucket(name, config).await?,
                BucketDdl::Update { name, config } => store.update_bucket(name, config).await?,
                BucketDdl::Delete { name } => store.delete_bucket(name).await?,
            }
        }
        Ok(())
    }
}

/// One bucket DDL request.
#[derive(Debug, Clone, Copy)]
pub enum BucketDdl<'a> {
    Create { name: &'a str, config: &'a Value },
    Update { name: &'a str, config: &'a Value },
    Delete { name: &'a str },
}
