//! `ShardTopology`: a Manta region's metadata shards and the electric-moray
//! hash ring that maps vnodes onto the index shards (RFD 103).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Resource;

pub type ShardTopology = Resource<ShardTopologySpec>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardTopologySpec {
    /// The Manta region, e.g. `us-east`.
    pub region: String,
    /// DNS domain of the region's shards, e.g. `us-east.joyent.us`: shard N is `N.moray.<dnsDomain>`.
    pub dns_domain: String,
    /// Metadata shards, each a manatee cluster with its morays.
    pub shards: Vec<MetadataShard>,
    /// The electric-moray hash ring over the `index` shards.
    pub ring: HashRing,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataShard {
    /// Full shard name, `N.moray.<dnsDomain>`.
    pub name: String,
    /// What the shard stores.
    pub roles: Vec<ShardRole>,
    /// Manatee peers: 1 (one-node-write mode) or >= 3; never two on one server.
    pub peers: Vec<PeerPlacement>,
    /// Moray instances serving this shard.
    #[serde(default = "default_morays")]
    pub morays: u32,
}

fn default_morays() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShardRole {
    /// Directory metadata, routed by electric-moray through the hash ring.
    Index,
    /// Marlin (jobs) state.
    Marlin,
    /// Storage node records (minnow).
    Storage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerPlacement {
    /// The server (CNAPI UUID or hostname) running this peer.
    pub server: String,
    /// The datacenter of that server, for spreading peers across a multi-DC region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashRing {
    /// Number of vnodes; fixed for the life of the ring (coal 100000, lab 131072).
    pub vnodes: u32,
    /// Explicit vnode -> shard assignment. When absent the ring is created
    /// round-robin over the index shards sorted by name, as `fash create` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Vec<VnodeAssignment>>,
    /// Changes to make to the current ring, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<RingIntent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VnodeAssignment {
    /// Shard name that owns these vnodes.
    pub shard: String,
    /// Vnodes as numbers or inclusive ranges: `["0-43689", "131071"]`.
    pub vnodes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingIntent {
    /// Move part of one shard's vnodes onto another (new) index shard.
    pub split: SplitIntent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplitIntent {
    /// The shard giving up vnodes.
    pub from: String,
    /// The shard receiving them; must be an index shard in `shards`.
    pub to: String,
    /// Share of `from`'s vnodes to move, as `N/D` (e.g. `1/2`); the highest-numbered vnodes move.
    #[serde(default = "half")]
    pub fraction: String,
}

fn half() -> String {
    "1/2".into()
}

/// Parse one vnode range string (`"7"` or `"0-99"`, inclusive) into (start, end).
pub fn parse_vnode_range(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a vnode number or an inclusive range like `0-99`");
    match s.split_once('-') {
        None => s.trim().parse().map(|v| (v, v)).map_err(|_| bad()),
        Some((a, b)) => {
            let a: u32 = a.trim().parse().map_err(|_| bad())?;
            let b: u32 = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(format!("`{s}`: range start is after its end"));
            }
            Ok((a, b))
        }
    }
}

/// Parse `N/D` with 0 < N/D < 1.
pub fn parse_fraction(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a fraction N/D between 0 and 1, e.g. `1/2`");
    let (n, d) = s.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let d: u32 = d.trim().parse().map_err(|_| bad())?;
    if n == 0 || d == 0 || n >= d {
        return Err(bad());
    }
    Ok((n, d))
}

impl ShardTopologySpec {
    /// Names of the shards with the `index` role, sorted as fash sorts pnodes.
    pub fn index_shards(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .shards
            .iter()
            .filter(|s| s.roles.contains(&ShardRole::Index))
            .map(|s| s.name.as_str())
            .collect();
        v.sort();
        v
    }
}
