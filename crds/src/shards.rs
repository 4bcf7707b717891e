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
    /// How the resharding operation that carries out `ring.intents` runs.
    #[serde(default, skip_serializing_if = "ReshardPolicy::is_default")]
    pub reshard: ReshardPolicy,
}

/// The resharding operation's gates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReshardPolicy {
    /// Wait for `tritonctl approve` before the critical section (the
    /// `approval` step, before `take-dump-lock`). Off by default.
    #[serde(default)]
    pub approval: bool,
    /// Largest replication lag (seconds) at which the source shard counts
    /// as healthy at preflight and the new peers as caught up.
    #[serde(default = "default_reshard_lag")]
    pub max_replication_lag_seconds: u64,
}

fn default_reshard_lag() -> u64 {
    10
}

impl Default for ReshardPolicy {
    fn default() -> Self {
        ReshardPolicy {
            approval: false,
            max_replication_lag_seconds: default_reshard_lag(),
        }
    }
}

impl ReshardPolicy {
    pub fn is_default(&self) -> bool {
        *self == ReshardPolicy::default()
    }
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

/// One change to the ring, written as exactly one of its forms (`split`,
/// `splitWays`, `move`, `moveHottest`, `addIndexShard`). Changes apply in
/// order; each is one move (or, for `splitWays`, one move per new shard) the
/// resharding operation executes and records in status by [`RingIntent::name`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingIntent {
    /// The name status records this change under once it is done (a change
    /// done is never done again). Default: derived from the form and its
    /// shards, e.g. `split-2-to-5`, `move-3-to-4`; set it when two changes
    /// would derive the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Move a share of one shard's vnodes onto another index shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitIntent>,
    /// Split one shard N ways: it keeps the lowest 1/N of its vnodes and each
    /// shard of `to` receives the next 1/N, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_ways: Option<SplitWaysIntent>,
    /// Move the listed vnodes from one shard to another.
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub move_vnodes: Option<MoveIntent>,
    /// Move the K vnodes of a shard that hold the most rows (row counts as
    /// observed; among equal counts the highest-numbered vnodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_hottest: Option<MoveHottestIntent>,
    /// Add a shard to the index tier (`INDEX_MORAY_SHARDS`) holding no vnodes
    /// yet; later moves put vnodes on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_index_shard: Option<AddIndexShardIntent>,
}

/// Which form a [`RingIntent`] is written in: what decisions match on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IntentForm<'a> {
    Split(&'a SplitIntent),
    SplitWays(&'a SplitWaysIntent),
    Move(&'a MoveIntent),
    MoveHottest(&'a MoveHottestIntent),
    AddIndexShard(&'a AddIndexShardIntent),
}

impl<'a> IntentForm<'a> {
    /// The form's key in the document (`split`, `splitWays`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            IntentForm::Split(_) => "split",
            IntentForm::SplitWays(_) => "splitWays",
            IntentForm::Move(_) => "move",
            IntentForm::MoveHottest(_) => "moveHottest",
            IntentForm::AddIndexShard(_) => "addIndexShard",
        }
    }

    /// The shard giving up vnodes (none for `addIndexShard`).
    pub fn from(self) -> Option<&'a str> {
        match self {
            IntentForm::Split(s) => Some(&s.from),
            IntentForm::SplitWays(s) => Some(&s.from),
            IntentForm::Move(s) => Some(&s.from),
            IntentForm::MoveHottest(s) => Some(&s.from),
            IntentForm::AddIndexShard(_) => None,
        }
    }

    /// The shards receiving vnodes, in order.
    pub fn targets(self) -> Vec<&'a str> {
        match self {
            IntentForm::Split(s) => vec![s.to.as_str()],
            IntentForm::SplitWays(s) => s.to.iter().map(String::as_str).collect(),
            IntentForm::Move(s) => vec![s.to.as_str()],
            IntentForm::MoveHottest(s) => vec![s.to.as_str()],
            IntentForm::AddIndexShard(_) => vec![],
        }
    }

    /// Whether its targets are born by it: a split's targets (and an added
    /// index shard) hold no vnodes before it, so the ring is created
    /// without them.
    pub fn creates_targets(&self) -> bool {
        matches!(self, IntentForm::Split(_) | IntentForm::SplitWays(_))
    }
}

/// A written intent has no form, or more than one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "write exactly one of split, splitWays, move, moveHottest, addIndexShard (found {})",
    found_list(.found)
)]
pub struct FormError {
    pub found: Vec<&'static str>,
}

fn found_list(found: &[&str]) -> String {
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

impl RingIntent {
    /// The one form this intent is written in.
    pub fn form(&self) -> Result<IntentForm<'_>, FormError> {
        let mut forms = Vec::new();
        if let Some(s) = &self.split {
            forms.push(IntentForm::Split(s));
        }
        if let Some(s) = &self.split_ways {
            forms.push(IntentForm::SplitWays(s));
        }
        if let Some(s) = &self.move_vnodes {
            forms.push(IntentForm::Move(s));
        }
        if let Some(s) = &self.move_hottest {
            forms.push(IntentForm::MoveHottest(s));
        }
        if let Some(s) = &self.add_index_shard {
            forms.push(IntentForm::AddIndexShard(s));
        }
        match forms.as_slice() {
            [one] => Ok(*one),
            _ => Err(FormError {
                found: forms.iter().map(IntentForm::key).collect(),
            }),
        }
    }

    /// The name status records it under: `name`, or one derived from its
    /// form and shards (`split-2-to-5`, `split-ways-2-to-5-6`, `move-2-to-5`,
    /// `move-hottest-2-to-5`, `add-index-shard-5`; a shard by its number).
    pub fn name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let short = |s: &str| s.split('.').next().unwrap_or(s).to_string();
        match self.form() {
            Ok(IntentForm::AddIndexShard(a)) => format!("add-index-shard-{}", short(&a.shard)),
            Ok(f) => {
                let prefix = match f {
                    IntentForm::Split(_) => "split",
                    IntentForm::SplitWays(_) => "split-ways",
                    IntentForm::Move(_) => "move",
                    _ => "move-hottest",
                };
                let to: Vec<String> = f.targets().into_iter().map(short).collect();
                format!(
                    "{prefix}-{}-to-{}",
                    short(f.from().unwrap_or_default()),
                    to.join("-")
                )
            }
            Err(_) => "unnamed".into(),
        }
    }

    /// An intent of the `split` form.
    pub fn of_split(split: SplitIntent) -> RingIntent {
        RingIntent {
            split: Some(split),
            ..RingIntent::default()
        }
    }
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplitWaysIntent {
    /// The shard being split; it keeps the lowest-numbered share of its vnodes.
    pub from: String,
    /// The new shards, each receiving the next share: N-1 shards for an N-way split.
    pub to: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveIntent {
    /// The shard that owns these vnodes in the live ring.
    pub from: String,
    /// The index shard receiving them; must be in `shards`.
    pub to: String,
    /// Vnodes as numbers or inclusive ranges: `["7", "100-199"]`.
    pub vnodes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveHottestIntent {
    /// The shard giving up its busiest vnodes.
    pub from: String,
    /// The index shard receiving them; must be in `shards`.
    pub to: String,
    /// How many vnodes to move (K >= 1).
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddIndexShardIntent {
    /// The shard joining the index tier; must be in `shards` with the `index` role.
    pub shard: String,
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
