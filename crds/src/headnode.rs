//! `HeadnodeSet`: the headnodes of one datacenter and how the HA core
//! services spread over them (RFD 67 headnode resilience).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Resource;

pub type HeadnodeSet = Resource<HeadnodeSetSpec>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadnodeSetSpec {
    /// The datacenter name as CNAPI reports it (`datacenter` on server records).
    pub datacenter: String,
    /// Servers that are headnodes: CNAPI server UUIDs or hostnames.
    pub headnodes: Vec<String>,
    /// The headnode that runs the non-HA services (sapi, imgapi, ...). Must be in `headnodes`.
    pub primary: String,
    /// Where the HA services run: one instance per listed headnode.
    pub ha_services: HaServices,
    /// How non-HA services are recovered when their headnode is lost.
    #[serde(default)]
    pub restore: RestorePolicy,
    /// Servers to drain and remove from the set: their HA instances are
    /// migrated first (quorum kept at every step), then they are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decommission: Vec<String>,
}

/// Placement of the services that run one instance per headnode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HaServices {
    /// binder (ZooKeeper) ensemble members: 1 on a single-headnode DC, otherwise an odd number >= 3.
    pub binder: Vec<String>,
    /// manatee peers of the `sdc` shard: 1 (one-node-write mode) or >= 3 (a 2-peer shard never fails over).
    pub manatee: Vec<String>,
    /// moray instances: at least 1.
    pub moray: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestorePolicy {
    /// Non-HA services whose data is backed up for restore on another headnode
    /// (e.g. `imgapi`, `sapi`). Services not listed are redeployed empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_services: Vec<String>,
    /// How often to take backups, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_interval: Option<String>,
    /// Restore automatically when the primary headnode is lost (otherwise wait for approval).
    #[serde(default)]
    pub automatic: bool,
}
