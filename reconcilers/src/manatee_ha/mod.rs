//! HA setup: grow a one-peer manatee shard to the peers its desired state
//! names (a HeadnodeSet's `haServices.manatee`), the way
//! `sdcadm post-setup ha-manatee` does (research/manatee.md §7.3), as
//! journaled, idempotent steps:
//!
//! preflight -> create the second peer (tagged with the operation id) ->
//! clear `ONE_NODE_WRITE_MODE` from the SAPI metadata -> lift the
//! one-node-write setup freeze -> restart the primary's sitter (it writes
//! the transition to normal mode, picking the new peer as sync) -> wait for
//! synchronous replication -> create each further peer (it joins as an
//! async) -> wait until the shard is whole.
//!
//! The primary is never assumed (sdcadm assumes `manatee0`): every step that
//! touches it reads `state.primary` when it runs. A shard already in normal
//! mode only gets the missing peers, each joining as an async.
//!
//! [`plan_ha`] is pure; [`HaRunner`] executes the steps against a
//! [`HaAct`].

mod check;
mod gate;
mod runner;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Refusal, RefusalReason, WorldError};
use crate::manatee::{FREEZE_PREFIX, ManateeAct, ManateeObserve, ShardObservation};
use crate::operation::{Operation, PlannedStep};

pub use runner::HaRunner;

/// The freeze reason manatee writes with a one-node-write-mode state
/// (`msm:lib/manatee-peer.js` startInitialSetup).
pub const ONWM_SETUP_FREEZE: &str = "manatee setup: one node write mode";

/// What the HA setup observes beyond what an upgrade does.
#[async_trait]
pub trait HaObserve: ManateeObserve {
    /// The zone created by operation `op_id` as `alias`, found by the tag
    /// it was created with (so a retry never creates a second one).
    async fn find_created_peer(
        &self,
        shard: &str,
        op_id: &str,
        alias: &str,
    ) -> Result<Option<String>, WorldError>;
    /// Resolve servers named by a document (CNAPI uuid or hostname).
    async fn resolve_servers(&self, names: &[String]) -> Result<Vec<DesiredServer>, WorldError>;
}

/// What the HA setup changes beyond what an upgrade does.
#[async_trait]
pub trait HaAct: HaObserve + ManateeAct {
    /// SAPI CreateInstance of a new peer of `shard` on `server` (a CNAPI
    /// uuid), tagged with `op_id` and `alias`. Returns the zone uuid.
    async fn create_peer(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        op_id: &str,
    ) -> Result<String, WorldError>;
    /// Remove `ONE_NODE_WRITE_MODE` from a zone's SAPI metadata (and have
    /// config-agent render it into sitter.json).
    async fn clear_one_node_write_mode(&self, zone: &str) -> Result<(), WorldError>;
    /// `svcadm restart manatee-sitter` in the zone.
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError>;
}

/// One typed step of an HA setup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HaAction {
    /// The shard is set up, its primary up, nothing deposed, no foreign freeze.
    Preflight,
    /// Create a peer on `server` (CNAPI uuid; `server_name` as the document names it).
    CreatePeer {
        server: String,
        server_name: String,
        alias: String,
    },
    /// Clear `ONE_NODE_WRITE_MODE` from every peer's SAPI metadata.
    LeaveOneNodeWriteMode,
    /// Lift the freeze manatee wrote with the one-node-write state (only that one).
    UnfreezeSetup,
    /// Restart the current primary's sitter so it leaves one-node-write mode.
    RestartPrimarySitter,
    /// Wait until the primary replicates synchronously to a caught-up sync.
    WaitSync,
    /// Wait until every peer is placed and caught up.
    WaitHealthy,
}

/// The outcome of planning one shard's HA setup.
#[derive(Clone, Debug, PartialEq)]
pub enum HaPlan {
    /// Every desired server has a peer.
    UpToDate,
    Grow(Operation<HaAction>),
    Refused(Refusal),
}

/// A desired peer location: the name the document uses and its CNAPI uuid
/// (`None` when CNAPI does not know it).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredServer {
    pub name: String,
    pub uuid: Option<String>,
}

/// Plan the growth of `obs` to one peer per `desired` server. Pure.
/// `alias_prefix` names new zones `<prefix><n>` (sdc: `manatee`).
pub fn plan_ha(
    obs: &ShardObservation,
    desired: &[DesiredServer],
    alias_prefix: &str,
    op_id: &str,
) -> HaPlan {
    let refuse = |r: RefusalReason, m: String| HaPlan::Refused(Refusal::new(r, m));
    if let Some(d) = desired.iter().find(|d| d.uuid.is_none()) {
        return refuse(
            RefusalReason::UnknownServer,
            format!(
                "server `{}` (haServices.manatee) is not in CNAPI; set it up first or fix the document",
                d.name
            ),
        );
    }
    let missing: Vec<&DesiredServer> = desired
        .iter()
        .filter(|d| !obs.peers.iter().any(|p| Some(&p.server) == d.uuid.as_ref()))
        .collect();
    if missing.is_empty() {
        return HaPlan::UpToDate;
    }
    if desired.len() == 2 {
        return refuse(
            RefusalReason::TwoPeers,
            format!(
                "shard {}: a two-peer shard never fails over; ask for 1 or at least 3 peers",
                obs.shard
            ),
        );
    }
    let Some(st) = &obs.state else {
        return refuse(
            RefusalReason::NoClusterState,
            format!("shard {} has no cluster state in ZooKeeper yet", obs.shard),
        );
    };
    if !st.deposed.is_empty() {
        return refuse(
            RefusalReason::DeposedPeer,
            format!(
                "shard {} has a deposed peer ({}); rebuild it with `manatee-adm rebuild` first",
                obs.shard, st.deposed[0].zone_id
            ),
        );
    }
    if let Some(r) = obs.freeze_reason()
        && r != ONWM_SETUP_FREEZE
        && !r.starts_with(FREEZE_PREFIX)
    {
        return refuse(
            RefusalReason::FrozenByOther,
            format!("shard {} is frozen by someone else ({r})", obs.shard),
        );
    }
    // Zone names: the next free `<prefix><n>`.
    let mut used: Vec<String> = obs.peers.iter().map(|p| p.alias.clone()).collect();
    let mut next_alias = || {
        let a = (0..)
            .map(|n| format!("{alias_prefix}{n}"))
            .find(|a| !used.contains(a))
            .expect("some alias is free");
        used.push(a.clone());
        a
    };
    let step = |name: String, description: String, touches: Vec<String>, action| PlannedStep {
        name,
        description,
        touches,
        irreversible: false,
        action,
    };
    let create = |d: &DesiredServer, alias: String, joins: &str| {
        step(
            format!("create-{alias}"),
            format!(
                "create {alias} on {} (SAPI CreateInstance tagged {op_id}); it joins {joins}",
                d.name
            ),
            vec![alias.clone()],
            HaAction::CreatePeer {
                server: d.uuid.clone().expect("checked"),
                server_name: d.name.clone(),
                alias,
            },
        )
    };
    let mut steps = vec![step(
        "preflight".into(),
        format!(
            "check shard {}: primary up, nothing deposed, no foreign freeze",
            obs.shard
        ),
        vec![],
        HaAction::Preflight,
    )];
    let mut rest = missing.into_iter();
    if st.is_one_node_write_mode() {
        // A peer that joined the one-node shard already (a resumed or earlier
        // run) becomes the sync; otherwise create one.
        let has_second = obs.peers.len() >= 2;
        if !has_second {
            let d = rest.next().expect("missing is not empty");
            steps.push(create(d, next_alias(), "unassigned (one-node-write mode)"));
        }
        steps.push(step(
            "leave-one-node-write-mode".into(),
            "clear ONE_NODE_WRITE_MODE from the SAPI metadata of the primary (found in the state when the step runs)".into(),
            vec![],
            HaAction::LeaveOneNodeWriteMode,
        ));
        steps.push(step(
            "unfreeze-setup".into(),
            format!("lift the one-node-write setup freeze (\"{ONWM_SETUP_FREEZE}\") and no other"),
            vec![obs.shard.clone()],
            HaAction::UnfreezeSetup,
        ));
        steps.push(step(
            "restart-primary-sitter".into(),
            "restart the primary's sitter: it leaves one-node-write mode and picks the new peer as sync (writes pause until it has caught up)".into(),
            vec![obs.shard.clone()],
            HaAction::RestartPrimarySitter,
        ));
        steps.push(step(
            "wait-sync".into(),
            "wait until the primary replicates synchronously to a caught-up sync".into(),
            vec![],
            HaAction::WaitSync,
        ));
    } else if st.sync.is_none() {
        return refuse(
            RefusalReason::NoSync,
            format!(
                "shard {} is in normal mode without a sync; repair it first",
                obs.shard
            ),
        );
    }
    for d in rest {
        steps.push(create(d, next_alias(), "as an async"));
    }
    steps.push(step(
        "wait-healthy".into(),
        format!(
            "wait until every peer of {} is placed and caught up",
            obs.shard
        ),
        vec![],
        HaAction::WaitHealthy,
    ));
    HaPlan::Grow(Operation::new(op_id, "manatee-ha-setup", &obs.shard, steps))
}
