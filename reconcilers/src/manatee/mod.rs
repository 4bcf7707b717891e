//! `ManateeVersion`: bring every selected shard onto the wanted manatee image.
//!
//! Rolling strategy, after sdcadm's `UpdateManateeV2` (research/manatee.md
//! §7.2) with its safety and more visibility:
//! preflight -> each async from the tail -> the sync -> (approval) -> freeze
//! with our own reason -> the primary -> full health -> unfreeze our freeze.
//! One peer of a shard is disrupted at a time: every reprovision waits behind
//! a gate that needs all other peers up. A one-node shard (one-node-write
//! mode) is a single reprovision that keeps one-node-write mode on.
//!
//! [`plan_shard`] is pure: the same plan is shown by `diff` and run by the
//! controller. [`ManateeRunner`] executes its steps against a [`ManateeAct`].

mod check;
mod gate;
mod plan;
mod runner;
mod switchover;
#[cfg(test)]
mod switchover_tests;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::manatee::ClusterState;

use crate::error::{Refusal, RefusalReason, WorldError};
use crate::operation::Operation;

pub use crate::gates::window_gate;
pub use plan::{plan_shard, plan_shard_with, preflight};
pub use runner::{ManateeRunner, shard_health, standby_ok};
pub use switchover::{PROMOTE_MIN_VERSION, PrimaryMethod, primary_method, promote_capable};

/// Prefix of every freeze reason tritonctl writes; we only ever unfreeze a
/// freeze whose reason is exactly our operation's.
pub const FREEZE_PREFIX: &str = "tritonctl";

pub fn freeze_reason(op_id: &str) -> String {
    format!("{FREEZE_PREFIX} {op_id}: upgrading the primary")
}

/// A manatee zone as the controller sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerObservation {
    /// VM (and SAPI instance) UUID.
    pub zone: String,
    pub alias: String,
    pub server: String,
    /// The image the VM runs, from VMAPI (SAPI params are not kept current).
    pub image: String,
    /// VMAPI state, `running` when up.
    pub vm_state: String,
    /// Whether the sitter is in the shard's election (ZooKeeper).
    pub active: bool,
    /// PostgreSQL answers.
    pub pg_online: bool,
    /// Replication lag behind its upstream, when it is a standby.
    pub lag_seconds: Option<f64>,
    /// SAPI metadata `ONE_NODE_WRITE_MODE`.
    pub one_node_write_mode: bool,
}

/// A shard as the controller sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardObservation {
    pub shard: String,
    /// `/manatee/<shard>/state`, None before the cluster is set up.
    pub state: Option<ClusterState>,
    pub peers: Vec<PeerObservation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Primary,
    Sync,
    Async,
    Deposed,
    Unassigned,
}

impl ShardObservation {
    pub fn role_of(&self, zone: &str) -> Role {
        let Some(st) = &self.state else {
            return Role::Unassigned;
        };
        if st.primary.zone_id == zone {
            Role::Primary
        } else if st.sync.as_ref().is_some_and(|s| s.zone_id == zone) {
            Role::Sync
        } else if st.asyncs.iter().any(|a| a.zone_id == zone) {
            Role::Async
        } else if st.deposed.iter().any(|a| a.zone_id == zone) {
            Role::Deposed
        } else {
            Role::Unassigned
        }
    }

    pub fn peer(&self, zone: &str) -> Option<&PeerObservation> {
        self.peers.iter().find(|p| p.zone == zone)
    }

    /// Freeze reason, if frozen.
    pub fn freeze_reason(&self) -> Option<String> {
        let st = self.state.as_ref()?;
        st.is_frozen().then(|| {
            st.freeze
                .reason()
                .unwrap_or("(no reason given)")
                .to_string()
        })
    }
}

/// What IMGAPI says about an image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub uuid: String,
    pub name: String,
    pub version: String,
    /// `active` when usable.
    pub state: String,
    /// The manatee major version the image carries (tags.manatee_major), if known.
    pub manatee_major: Option<u32>,
}

/// What a ManateeVersion reconciler (and a review) observes. Nothing here
/// changes the datacenter.
#[async_trait]
pub trait ManateeObserve: Send + Sync {
    async fn observe(&self, shard: &str) -> Result<ShardObservation, WorldError>;
    async fn image(&self, uuid: &str) -> Result<Option<ImageInfo>, WorldError>;
    /// Whether a reprovision of the zone is queued or running (dispatched,
    /// outcome not known yet).
    async fn reprovision_in_flight(&self, _zone: &str) -> Result<bool, WorldError> {
        Ok(false)
    }
    /// Whether `tritonctl approve` was given for this operation step.
    async fn approved(&self, op_id: &str, step: &str) -> Result<bool, WorldError>;
}

/// What a ManateeVersion reconciler changes.
#[async_trait]
pub trait ManateeAct: ManateeObserve {
    /// Reprovision a zone onto an image (SAPI UpgradeInstance). Called only
    /// after the runner saw the zone is not on that image yet.
    async fn reprovision(&self, zone: &str, image: &str, op_id: &str) -> Result<(), WorldError>;
    /// Freeze the shard with `reason` (a CAS write with a history node).
    async fn freeze(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
    /// Unfreeze the shard only if its freeze reason is exactly `reason`.
    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
    /// `manatee-adm rebuild -y` in a deposed zone: its data is replaced by
    /// a copy of the primary's and it rejoins as an async.
    async fn rebuild(&self, zone: &str) -> Result<(), WorldError> {
        Err(WorldError::Refused(Refusal::new(
            RefusalReason::ReadOnly,
            format!("rebuilding {zone} is not supported by this world"),
        )))
    }
    /// `manatee-adm promote -r sync` without its prompts: write a promote
    /// request for `sync_zone` (which must be the sync) at the state's
    /// current generation, expiring at `expire`, with a CAS write. Refuses
    /// when the shard is frozen or already holds a promote request.
    async fn promote_sync(
        &self,
        shard: &str,
        sync_zone: &str,
        _expire: time::OffsetDateTime,
    ) -> Result<(), WorldError> {
        Err(WorldError::Refused(Refusal::new(
            RefusalReason::ReadOnly,
            format!("promoting {sync_zone} of {shard} is not supported by this world"),
        )))
    }
    /// `manatee-adm clear-promote`: remove the promote request, if any.
    async fn clear_promote(&self, shard: &str) -> Result<(), WorldError> {
        Err(WorldError::Refused(Refusal::new(
            RefusalReason::ReadOnly,
            format!("clearing the promote request of {shard} is not supported by this world"),
        )))
    }
}

/// One typed step of a manatee upgrade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ManateeAction {
    /// Re-check the preflight rules right before the first disruption.
    Preflight,
    /// Reprovision one peer and wait until it is back in its role.
    Reprovision {
        zone: String,
        role: Role,
        image: String,
    },
    /// Wait for `tritonctl approve`.
    Approval {
        what: String,
    },
    Freeze {
        reason: String,
    },
    /// Wait until the shard is whole again: primary writable, sync caught up, no deposed peer.
    WaitHealthy,
    Unfreeze {
        reason: String,
    },
    /// Switchover: promote the sync (which then runs `image`) through the
    /// cluster state; done when `primary` is no longer the primary. A
    /// request that expires without a takeover is cleared and the step
    /// stops.
    Promote {
        primary: String,
        image: String,
    },
    /// Switchover: wait until the new primary is writable and its new sync
    /// caught up (the old primary `deposed` is still deposed).
    WaitPromoted {
        deposed: String,
    },
    /// Rebuild a peer deposed while our own operation ran (a takeover after
    /// its server died): it holds no acknowledged write the others lack.
    Rebuild {
        zone: String,
    },
}

/// The outcome of planning one shard.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardPlan {
    UpToDate,
    Upgrade(Operation<ManateeAction>),
    /// Refused by preflight.
    Refused(Refusal),
}
