//! `ManateeVersion`: the manatee image a set of shards must run, and how to
//! get there (rolling upgrade or the v1-to-v2 transplant).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Resource;

pub type ManateeVersion = Resource<ManateeVersionSpec>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManateeVersionSpec {
    /// Shards this version applies to: `sdc`, or Manta shards like `2.moray.us-east.joyent.us`.
    /// A shard may be selected by one ManateeVersion only.
    pub shards: Vec<String>,
    /// The manatee image wanted.
    pub image: ImageRef,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub rollout: RolloutPolicy,
    #[serde(default)]
    pub health: HealthGates,
    /// Options of the transplant strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transplant: Option<TransplantOptions>,
}

/// An IMGAPI image: by UUID, optionally with the version it should carry (a
/// cross-check: the apply is refused if IMGAPI disagrees).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRef {
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Transplant when the image crosses v1 -> v2; within a major, switchover for a shard of three or more
    /// peers when the image acts on a promote request, rolling otherwise.
    #[default]
    Auto,
    /// asyncs from the tail, then the sync, then freeze, then the primary.
    Rolling,
    /// asyncs from the tail, then the sync, then a planned promotion of the
    /// (upgraded) sync through the cluster state; the deposed old primary
    /// is reprovisioned and rebuilt as an async. `auto` picks it for a
    /// shard of three or more peers whose image acts on a promote request.
    Switchover,
    /// The "brain transplant" through one-node-write mode and a ZFS send/recv.
    Transplant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPolicy {
    /// How many shards are upgraded at once. One peer per shard is disrupted at a time regardless.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Shard order; shards not listed follow in `shards` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// A shard upgraded first, alone; the rest wait until it is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    #[serde(default)]
    pub approval: Approval,
    /// When disruptive steps may run. Outside it, the operation waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// Stop at the next safe point and wait.
    #[serde(default)]
    pub paused: bool,
}

fn one() -> u32 {
    1
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            parallelism: 1,
            order: Vec::new(),
            canary: None,
            approval: Approval::default(),
            maintenance_window: None,
            paused: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Approval {
    /// Never wait for `tritonctl approve`.
    Never,
    /// Wait for approval before each shard's primary is touched (the write outage).
    #[default]
    BeforePrimary,
    /// Wait for approval before each shard starts.
    BeforeEachShard,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Days the window opens, e.g. `[Sat, Sun]`; empty means every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// UTC start time `HH:MM`.
    pub start: String,
    /// Length, e.g. `4h`.
    pub duration: String,
}

/// Health gates between steps. A gate that does not pass within its timeout
/// stops the operation (Blocked) with what it saw; it never continues blindly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthGates {
    /// Largest replication lag (seconds) at which a peer counts as caught up.
    #[serde(default = "default_lag")]
    pub max_replication_lag_seconds: u64,
    /// How long a reprovisioned peer may take to rejoin and catch up (sdcadm: 15m).
    #[serde(default = "default_catch_up")]
    pub catch_up_timeout: String,
    /// How long a zone may take to come back up after a reprovision (sdcadm: 5m).
    #[serde(default = "default_instance_up")]
    pub instance_up_timeout: String,
}

fn default_lag() -> u64 {
    10
}
fn default_catch_up() -> String {
    "15m".into()
}
fn default_instance_up() -> String {
    "5m".into()
}

impl Default for HealthGates {
    fn default() -> Self {
        HealthGates {
            max_replication_lag_seconds: default_lag(),
            catch_up_timeout: default_catch_up(),
            instance_up_timeout: default_instance_up(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransplantOptions {
    /// Where the first v2 node comes from.
    #[serde(default)]
    pub first_v2_node: FirstV2Node,
    /// Upgrade moray first (one instance at a time) to this image when it is
    /// not forward/backward compatible yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moray_image: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FirstV2Node {
    /// A new instance on the primary's server: the data copy stays local (faster).
    #[default]
    NewInstanceOnPrimaryServer,
    /// Reprovision the async onto v2.
    ReprovisionAsync,
}
