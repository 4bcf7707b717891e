//! Moray instances as SAPI holds them (**world** behaviour): a shard is
//! reachable by electric-moray only through the `moray` zones that serve
//! it. Each `moray` instance names its shard in SAPI metadata
//! (`SERVICE_NAME`, as manta-deployment writes it and manta-reshard's
//! phase 12 sets for a new shard); e-m's moray client for `tcp://<shard>:2020`
//! resolves the shard's name to those zones, so with none running it has
//! no connection and every request to that pnode fails.

use std::sync::Arc;

use async_trait::async_trait;

use super::MantaError;
use super::backend::{Access, ShardBackend};
use crate::dc::Datacenter;

/// The SAPI service of Moray zones.
pub const MORAY_SERVICE: &str = "moray";

/// The shard host of a pnode (`tcp://<host>:2020` -> `<host>`).
pub fn shard_of_pnode(pnode: &str) -> &str {
    pnode
        .strip_prefix("tcp://")
        .and_then(|h| h.strip_suffix(":2020"))
        .unwrap_or(pnode)
}

/// Running `moray` zones serving `shard`.
pub fn moray_zones(dc: &Datacenter, shard: &str) -> Vec<String> {
    dc.instances()
        .into_iter()
        .filter(|i| {
            dc.service(&i.service_uuid)
                .is_some_and(|s| s.name == MORAY_SERVICE)
                && i.metadata.get("SERVICE_NAME").and_then(|v| v.as_str()) == Some(shard)
        })
        .filter(|i| {
            dc.vm(&i.uuid)
                .is_some_and(|v| v.state.as_str() == "running")
        })
        .map(|i| i.uuid)
        .collect()
}

/// A [`ShardBackend`] that refuses a pnode with no running Moray zone of
/// its shard in SAPI, then asks `inner`.
pub struct MorayInstances {
    pub dc: Datacenter,
    pub inner: Arc<dyn ShardBackend>,
}

#[async_trait]
impl ShardBackend for MorayInstances {
    async fn check(&self, pnode: &str, access: Access) -> Result<(), MantaError> {
        let shard = shard_of_pnode(pnode);
        if moray_zones(&self.dc, shard).is_empty() {
            return Err(MantaError::NoDatabase {
                pnode: pnode.to_string(),
            });
        }
        self.inner.check(pnode, access).await
    }
}
