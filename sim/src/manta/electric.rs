//! One electric-moray process.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Serialize;
use serde_json::Value;
use wire::fash::{KeyEncoding, READ_ONLY, Ring, transform_key};

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
        *self.index_shards.write().expect("config lock") =
            shards.map(|s| s.into_iter().map(|(p, ro)| (p.into(), ro)).collect());
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
        let store = self.tier.checked(&node.pnode, Access::Write).await?;
        let row = store.put(bucket, key, value, Some(node.vnode))?;
        Ok(PutResult {
            etag: row.etag,
            node,
        })
    }

    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<GetResult, MantaError> {
        let node = self.locate(bucket, key)?;
        let store = self.tier.checked(&node.pnode, Access::Read).await?;
        let row = store.get(bucket, key)?;
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
        let store = self.tier.checked(&node.pnode, Access::Write).await?;
        store.delete(bucket, key)?;
        Ok(())
    }
}
