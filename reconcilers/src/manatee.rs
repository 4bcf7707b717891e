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

use std::time::Duration;

use async_trait::async_trait;
use crds::manatee::{Approval, ManateeVersionSpec};
use crds::status::OperationStatus;
use serde::{Deserialize, Serialize};
use wire::manatee::ClusterState;

use crate::clock::{Clock, rfc3339};
use crate::error::{BlockReason, Refusal, RefusalReason, Unhealthy, WaitReason, WorldError};
use crate::operation::{Gate, Operation, PlannedStep, Progress, StepRunner};
use crate::window::{WindowState, window_state};

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

/// Preflight rules (research/manatee.md §7.2 step 6, and DESIGN.md invariant 1).
pub fn preflight(
    obs: &ShardObservation,
    image: Option<&ImageInfo>,
    wanted: &str,
) -> Result<(), Refusal> {
    let refuse = |r: RefusalReason, m: String| Err(Refusal::new(r, m));
    let Some(image) = image else {
        return refuse(
            RefusalReason::UnknownImage,
            format!(
                "image {wanted} is not in IMGAPI; import it first (sdc-imgadm import {wanted})"
            ),
        );
    };
    if image.state != "active" {
        return refuse(
            RefusalReason::ImageNotActive,
            format!("image {wanted} is {} in IMGAPI, not active", image.state),
        );
    }
    let Some(st) = &obs.state else {
        return refuse(
            RefusalReason::NoClusterState,
            format!("shard {} has no cluster state in ZooKeeper yet", obs.shard),
        );
    };
    if !st.deposed.is_empty() {
        let ids: Vec<&str> = st.deposed.iter().map(|p| p.zone_id.as_str()).collect();
        return refuse(
            RefusalReason::DeposedPeer,
            format!(
                "shard {} has deposed peer(s) {}; rebuild them with `manatee-adm rebuild` first",
                obs.shard,
                ids.join(", ")
            ),
        );
    }
    if let Some(reason) = obs.freeze_reason()
        && !reason.starts_with(FREEZE_PREFIX)
        && !st.is_one_node_write_mode()
    {
        return refuse(
            RefusalReason::FrozenByOther,
            format!(
                "shard {} is frozen by someone else ({reason}); tritonctl only lifts its own freeze",
                obs.shard
            ),
        );
    }
    if !st.is_one_node_write_mode() {
        if st.sync.is_none() {
            return refuse(
                RefusalReason::NoSync,
                format!(
                    "shard {} has no sync; complete the HA setup first",
                    obs.shard
                ),
            );
        }
        for p in &obs.peers {
            let role = obs.role_of(&p.zone);
            if role != Role::Unassigned && (!p.active || !p.pg_online) {
                return refuse(
                    RefusalReason::UnhealthyPeer,
                    format!(
                        "peer {} ({:?}) is not healthy (active {}, postgres online {})",
                        p.alias, role, p.active, p.pg_online
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Plan the upgrade of one shard. Pure.
pub fn plan_shard(
    spec: &ManateeVersionSpec,
    obs: &ShardObservation,
    image: Option<&ImageInfo>,
    op_id: &str,
) -> ShardPlan {
    plan_shard_with(spec, obs, image, op_id, &[])
}

/// [`plan_shard`], where `ours` are zones our own previous operation on
/// this shard worked on (from its journal, cancelled by a re-plan). A peer
/// among them that a takeover deposed meanwhile (its server died) is
/// rebuilt first instead of refusing: a deposed former primary holds no
/// acknowledged write the new primary and sync lack. Any other deposed peer
/// still refuses. Pure.
pub fn plan_shard_with(
    spec: &ManateeVersionSpec,
    obs: &ShardObservation,
    image: Option<&ImageInfo>,
    op_id: &str,
    ours: &[String],
) -> ShardPlan {
    let wanted = &spec.image.uuid;
    let stale: Vec<&PeerObservation> = obs.peers.iter().filter(|p| &p.image != wanted).collect();
    let deposed: Vec<String> = obs
        .state
        .as_ref()
        .map(|st| st.deposed.iter().map(|p| p.zone_id.clone()).collect())
        .unwrap_or_default();
    if stale.is_empty() && !deposed.iter().any(|z| ours.contains(z)) {
        return ShardPlan::UpToDate;
    }
    let mut rebuild = Vec::new();
    if !deposed.is_empty() && deposed.iter().all(|z| ours.contains(z)) {
        for z in &deposed {
            match obs.peer(z) {
                Some(p) if p.vm_state == "running" && p.active => rebuild.push(z.clone()),
                other => {
                    return ShardPlan::Refused(Refusal::new(
                        RefusalReason::DeposedPeerDown,
                        format!(
                            "{} was deposed by a takeover during our upgrade of {} and is not up ({}); it is rebuilt once its zone runs again",
                            other.map_or(z.as_str(), |p| p.alias.as_str()),
                            obs.shard,
                            other.map_or("no VM".to_string(), |p| format!(
                                "VM {}, sitter active {}",
                                p.vm_state, p.active
                            ))
                        ),
                    ));
                }
            }
        }
    }
    // Check the rest of the shard as if the rebuilt peers were not there;
    // they are planned as asyncs at the tail, where they rejoin.
    let mut view = obs.clone();
    if let Some(st) = view.state.as_mut() {
        st.deposed.retain(|p| !rebuild.contains(&p.zone_id));
    }
    let obs = &view;
    if let Err(r) = preflight(obs, image, wanted) {
        return ShardPlan::Refused(r);
    }
    let st = obs.state.as_ref().expect("preflight checked");
    let short = |z: &str| z.split('-').next().unwrap_or(z).to_string();
    let rebuild_steps: Vec<PlannedStep<ManateeAction>> = rebuild
        .iter()
        .map(|z| {
            let alias = obs.peer(z).map_or(z.clone(), |p| p.alias.clone());
            PlannedStep {
                name: format!("rebuild-{}", short(z)),
                description: format!(
                    "rebuild {alias}, deposed by a takeover during our upgrade (manatee-adm rebuild); it rejoins as an async"
                ),
                touches: vec![alias],
                irreversible: false,
                action: ManateeAction::Rebuild { zone: z.clone() },
            }
        })
        .collect();
    let mut steps: Vec<PlannedStep<ManateeAction>> = vec![PlannedStep {
        name: "preflight".into(),
        description: format!(
            "check shard {} is healthy: no deposed peer, sync present, image active",
            obs.shard
        ),
        touches: vec![],
        irreversible: false,
        action: ManateeAction::Preflight,
    }];
    // Rebuilds come before the preflight, which then finds nothing deposed.
    steps.splice(0..0, rebuild_steps);
    let reprovision = |zone: &str, role: Role| {
        let alias = obs.peer(zone).map_or(zone.to_string(), |p| p.alias.clone());
        PlannedStep {
            name: format!(
                "reprovision-{}-{}",
                format!("{role:?}").to_lowercase(),
                short(zone)
            ),
            description: match role {
                Role::Primary if st.is_one_node_write_mode() => format!(
                    "reprovision the only peer {alias} onto {wanted} (the shard is down meanwhile) and keep one-node-write mode"
                ),
                Role::Primary => format!(
                    "reprovision primary {alias}; the frozen shard keeps it primary, writes pause until its sync catches up"
                ),
                Role::Sync => format!(
                    "reprovision sync {alias}; wait until the primary reports it as synchronous standby again"
                ),
                _ => format!("reprovision async {alias}; wait until it is back and replicating"),
            },
            touches: vec![alias],
            irreversible: false,
            action: ManateeAction::Reprovision {
                zone: zone.to_string(),
                role,
                image: wanted.clone(),
            },
        }
    };
    // Asyncs from the tail of the chain, then the sync.
    let tail_first = rebuild
        .iter()
        .rev()
        .chain(st.asyncs.iter().rev().map(|a| &a.zone_id));
    for z in tail_first {
        if obs.peer(z).is_some_and(|p| &p.image != wanted) {
            steps.push(reprovision(z, Role::Async));
        }
    }
    if let Some(s) = &st.sync
        && obs.peer(&s.zone_id).is_some_and(|p| &p.image != wanted)
    {
        steps.push(reprovision(&s.zone_id, Role::Sync));
    }
    let primary_stale = obs
        .peer(&st.primary.zone_id)
        .is_some_and(|p| &p.image != wanted);
    if primary_stale {
        if spec.rollout.approval != Approval::Never {
            steps.push(PlannedStep {
                name: "approve-primary".into(),
                description: format!("wait for `tritonctl approve` before touching the primary of {} (the write outage)", obs.shard),
                touches: vec![],
                irreversible: false,
                action: ManateeAction::Approval { what: format!("the primary step of shard {}", obs.shard) },
            });
        }
        let ha = !st.is_one_node_write_mode();
        let reason = freeze_reason(op_id);
        if ha {
            steps.push(PlannedStep {
                name: "freeze".into(),
                description: format!("freeze shard {} (reason \"{reason}\") so no takeover happens while the primary is away", obs.shard),
                touches: vec![obs.shard.clone()],
                irreversible: false,
                action: ManateeAction::Freeze { reason: reason.clone() },
            });
        }
        steps.push(reprovision(&st.primary.zone_id, Role::Primary));
        steps.push(PlannedStep {
            name: "wait-healthy".into(),
            description: format!(
                "wait until shard {} is whole: primary writable, sync caught up, no deposed peer",
                obs.shard
            ),
            touches: vec![],
            irreversible: false,
            action: ManateeAction::WaitHealthy,
        });
        if ha {
            steps.push(PlannedStep {
                name: "unfreeze".into(),
                description: format!("lift our freeze of shard {}", obs.shard),
                touches: vec![obs.shard.clone()],
                irreversible: false,
                action: ManateeAction::Unfreeze { reason },
            });
        }
    }
    ShardPlan::Upgrade(Operation::new(
        op_id,
        "manatee-rolling-upgrade",
        &obs.shard,
        steps,
    ))
}

/// Runs [`ManateeAction`]s for one shard.
pub struct ManateeRunner<'a, W: ManateeAct> {
    pub world: &'a W,
    pub shard: String,
    pub max_lag_seconds: f64,
    pub instance_up_timeout: Duration,
    pub catch_up_timeout: Duration,
    /// `spec.rollout.maintenanceWindow`: disruptive steps start only inside it.
    pub window: Option<crds::manatee::MaintenanceWindow>,
    pub clock: &'a dyn Clock,
}

/// The maintenance-window gate before a disruptive step: `None` when the
/// step may start now, else why it waits and until when.
pub fn window_gate(
    window: Option<&crds::manatee::MaintenanceWindow>,
    clock: &dyn Clock,
    step: &str,
) -> Option<Gate> {
    let w = window?;
    Some(match window_state(w, clock.now()) {
        Ok(WindowState::Open { .. }) => return None,
        Ok(WindowState::Closed { opens }) => Gate::wait(
            WaitReason::Window,
            format!(
                "outside the maintenance window: step `{step}` waits until {}",
                rfc3339(opens)
            ),
        ),
        Err(e) => Gate::block(RefusalReason::InvalidMaintenanceWindow, e.to_string()),
    })
}

/// Healthy standby: active, postgres online and within the lag threshold.
pub fn standby_ok(p: &PeerObservation, max_lag_seconds: f64) -> bool {
    p.active && p.pg_online && p.lag_seconds.is_none_or(|l| l <= max_lag_seconds)
}

/// Whether the shard is whole: primary up, no deposed peer, and (unless in
/// one-node-write mode) a sync and every async caught up. The error says
/// what is missing.
pub fn shard_health(obs: &ShardObservation, max_lag_seconds: f64) -> Result<(), Unhealthy> {
    let st = obs
        .state
        .as_ref()
        .ok_or(Unhealthy::new("no cluster state"))?;
    if !st.deposed.is_empty() {
        return Err(Unhealthy(format!("deposed peer {}", st.deposed[0].zone_id)));
    }
    let primary = obs
        .peer(&st.primary.zone_id)
        .ok_or(Unhealthy::new("primary zone unknown"))?;
    if !(primary.active && primary.pg_online) {
        return Err(Unhealthy(format!(
            "primary {} not up (active {}, pg {})",
            primary.alias, primary.active, primary.pg_online
        )));
    }
    if st.is_one_node_write_mode() {
        return Ok(());
    }
    let sync = st
        .sync
        .as_ref()
        .and_then(|s| obs.peer(&s.zone_id))
        .ok_or(Unhealthy::new("no sync"))?;
    if !standby_ok(sync, max_lag_seconds) {
        return Err(Unhealthy(format!(
            "sync {} not caught up (active {}, pg {}, lag {:?})",
            sync.alias, sync.active, sync.pg_online, sync.lag_seconds
        )));
    }
    for a in &st.asyncs {
        if let Some(p) = obs.peer(&a.zone_id)
            && !standby_ok(p, max_lag_seconds)
        {
            return Err(Unhealthy(format!(
                "async {} not caught up (lag {:?})",
                p.alias, p.lag_seconds
            )));
        }
    }
    Ok(())
}

impl<W: ManateeAct> ManateeRunner<'_, W> {
    fn standby_ok(&self, p: &PeerObservation) -> bool {
        standby_ok(p, self.max_lag_seconds)
    }

    fn health(&self, obs: &ShardObservation) -> Result<(), Unhealthy> {
        shard_health(obs, self.max_lag_seconds)
    }
}

#[async_trait]
impl<W: ManateeAct> StepRunner<ManateeAction> for ManateeRunner<'_, W> {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &ManateeAction,
    ) -> Result<Gate, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        // Disruptive steps start only inside the maintenance window. The
        // primary of a shard we froze is part of the sequence the freeze
        // began inside a window: it goes on rather than leaving the shard
        // frozen until the next one.
        let disruptive = match action {
            ManateeAction::Freeze { .. } => true,
            ManateeAction::Reprovision { role, image, zone } => {
                obs.peer(zone).is_none_or(|p| &p.image != image)
                    && !(*role == Role::Primary
                        && obs.freeze_reason().as_deref() == Some(freeze_reason(&op.id).as_str()))
            }
            _ => false,
        };
        if disruptive
            && let Some(gate) = window_gate(self.window.as_ref(), self.clock, &op.steps[step].name)
        {
            return Ok(gate);
        }
        // A takeover since the plan was made (plans are only made with
        // nothing deposed, rebuilds first): neither ask for approval of nor
        // freeze for a primary step that no longer fits.
        if matches!(
            action,
            ManateeAction::Approval { .. } | ManateeAction::Freeze { .. }
        ) && let Some(d) = obs.state.as_ref().and_then(|st| st.deposed.first())
        {
            return Ok(Gate::block(
                BlockReason::Replan,
                format!("a takeover deposed {} since this plan was made", d.zone_id),
            ));
        }
        match action {
            // The image was checked when planning; re-check the shard right
            // before the first disruption.
            ManateeAction::Preflight => Ok(match preflight_shard_only(&obs) {
                Ok(()) => Gate::Open,
                Err(r) => Gate::block(r.reason, r.message),
            }),
            ManateeAction::Reprovision { zone, role, image } => {
                let Some(peer) = obs.peer(zone) else {
                    return Ok(Gate::block(
                        BlockReason::PeerGone,
                        format!("zone {zone} is no longer a peer of {}", self.shard),
                    ));
                };
                if &peer.image == image {
                    return Ok(Gate::Open); // already done (e.g. resumed); act is a no-op
                }
                // The world moved (takeover, promotion): this plan no longer fits.
                let now = obs.role_of(zone);
                if now != *role {
                    return Ok(Gate::block(
                        BlockReason::Replan,
                        format!("{} is now {now:?}, planned as {role:?}", peer.alias),
                    ));
                }
                // One peer down at a time: everyone else must be healthy.
                let others_ok = obs
                    .state
                    .as_ref()
                    .is_some_and(|st| st.is_one_node_write_mode())
                    || obs
                        .peers
                        .iter()
                        .filter(|p| &p.zone != zone && obs.role_of(&p.zone) != Role::Unassigned)
                        .all(|p| p.active && p.pg_online);
                if !others_ok {
                    return Ok(Gate::wait(
                        WaitReason::PeersUp,
                        format!(
                            "waiting for every other peer of {} to be up before disrupting {}",
                            self.shard, peer.alias
                        ),
                    ));
                }
                if *role == Role::Primary
                    && let Err(e) = self.health(&obs)
                {
                    return Ok(Gate::wait(
                        WaitReason::Health,
                        format!("primary step waits for full health: {e}"),
                    ));
                }
                Ok(Gate::Open)
            }
            ManateeAction::Approval { .. } => {
                let name = &op.steps[step].name;
                Ok(if self.world.approved(&op.id, name).await? {
                    Gate::Open
                } else {
                    Gate::wait(
                        WaitReason::Approval,
                        format!(
                            "awaiting approval: run `tritonctl approve` for operation {} step {name}",
                            op.id
                        ),
                    )
                })
            }
            ManateeAction::Freeze { reason } => match obs.freeze_reason() {
                Some(r)
                    if &r != reason
                        && !obs
                            .state
                            .as_ref()
                            .is_some_and(ClusterState::is_one_node_write_mode) =>
                {
                    Ok(Gate::block(
                        RefusalReason::FrozenByOther,
                        format!(
                            "shard {} was frozen by someone else meanwhile ({r})",
                            self.shard
                        ),
                    ))
                }
                _ => Ok(Gate::Open),
            },
            ManateeAction::WaitHealthy | ManateeAction::Unfreeze { .. } => Ok(Gate::Open),
            ManateeAction::Rebuild { zone } => {
                let st = obs
                    .state
                    .as_ref()
                    .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
                if !st.deposed.iter().any(|p| &p.zone_id == zone) {
                    return Ok(Gate::Open); // rebuilt already; act is a no-op
                }
                if &st.primary.zone_id == zone {
                    return Ok(Gate::block(
                        BlockReason::RebuildPrimary,
                        format!("{zone} is the primary; a primary is never rebuilt"),
                    ));
                }
                // Its data is thrown away: the primary and a caught-up sync
                // must hold everything.
                let sync_ok = st
                    .sync
                    .as_ref()
                    .and_then(|s| obs.peer(&s.zone_id))
                    .is_some_and(|s| self.standby_ok(s));
                let primary_ok = obs
                    .peer(&st.primary.zone_id)
                    .is_some_and(|p| p.active && p.pg_online);
                if !(sync_ok && primary_ok) {
                    return Ok(Gate::wait(
                        WaitReason::Health,
                        format!("rebuilding {zone} waits for a healthy primary and caught-up sync"),
                    ));
                }
                match obs.peer(zone) {
                    Some(p) if p.vm_state == "running" && p.active => Ok(Gate::Open),
                    _ => Ok(Gate::wait(
                        WaitReason::PeersUp,
                        format!("waiting for {zone} to run again"),
                    )),
                }
            }
        }
    }

    async fn act(
        &self,
        op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<(), WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        match action {
            ManateeAction::Reprovision { zone, image, .. } => {
                let peer = obs
                    .peer(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} vanished")))?;
                if &peer.image != image {
                    self.world.reprovision(zone, image, &op.id).await?;
                }
            }
            ManateeAction::Freeze { reason } => {
                if obs.freeze_reason().as_deref() != Some(reason) {
                    self.world.freeze(&self.shard, reason).await?;
                }
            }
            ManateeAction::Unfreeze { reason } => {
                if obs.freeze_reason().as_deref() == Some(reason) {
                    self.world.unfreeze_own(&self.shard, reason).await?;
                }
            }
            ManateeAction::Rebuild { zone } => {
                if obs
                    .state
                    .as_ref()
                    .is_some_and(|st| st.deposed.iter().any(|p| &p.zone_id == zone))
                {
                    self.world.rebuild(zone).await?;
                }
            }
            ManateeAction::Preflight
            | ManateeAction::Approval { .. }
            | ManateeAction::WaitHealthy => {}
        }
        Ok(())
    }

    async fn check(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<Progress, WorldError> {
        let obs = self.world.observe(&self.shard).await?;
        Ok(match action {
            ManateeAction::Reprovision { zone, role, image } => {
                let Some(p) = obs.peer(zone) else {
                    return Ok(Progress::NotYet(format!("zone {zone} not found")));
                };
                if &p.image != image || p.vm_state != "running" {
                    Progress::NotYet(format!(
                        "{} is {} on image {}",
                        p.alias, p.vm_state, p.image
                    ))
                } else if !p.active || !p.pg_online {
                    Progress::NotYet(format!(
                        "{} is running; sitter active {}, postgres online {}",
                        p.alias, p.active, p.pg_online
                    ))
                } else {
                    // A reprovisioned sync comes back as an async: while it was away
                    // the primary promoted the first async (§3.4b), as sdcadm expects.
                    // So the test is "back, replicating, and the shard whole", not "same role".
                    let now = obs.role_of(zone);
                    let placed = matches!(now, Role::Primary | Role::Sync | Role::Async);
                    match self.health(&obs) {
                        Ok(()) if placed && (*role == Role::Primary || self.standby_ok(p)) => {
                            Progress::Done
                        }
                        Ok(()) => Progress::NotYet(format!(
                            "{} is {now:?}, lag {:?}",
                            p.alias, p.lag_seconds
                        )),
                        // A takeover deposed another peer meanwhile (its server
                        // died): this peer is back, and waiting cannot heal
                        // the shard; the next gate re-plans.
                        Err(_)
                            if placed
                                && obs.state.as_ref().is_some_and(|st| {
                                    st.deposed.iter().any(|d| &d.zone_id != zone)
                                }) =>
                        {
                            Progress::Done
                        }
                        Err(e) => Progress::NotYet(format!(
                            "{} is {now:?}; shard not whole yet: {e}",
                            p.alias
                        )),
                    }
                }
            }
            ManateeAction::Freeze { reason } => {
                if obs.freeze_reason().as_deref() == Some(reason)
                    || obs
                        .state
                        .as_ref()
                        .is_some_and(ClusterState::is_one_node_write_mode)
                {
                    Progress::Done
                } else {
                    Progress::NotYet("freeze not visible yet".into())
                }
            }
            ManateeAction::Unfreeze { reason } => {
                if obs.freeze_reason().as_deref() == Some(reason) {
                    Progress::NotYet("still frozen by us".into())
                } else {
                    Progress::Done
                }
            }
            ManateeAction::WaitHealthy => match self.health(&obs) {
                Ok(()) => Progress::Done,
                Err(e) => Progress::NotYet(e.0),
            },
            ManateeAction::Preflight | ManateeAction::Approval { .. } => Progress::Done,
            ManateeAction::Rebuild { zone } => {
                let deposed = obs
                    .state
                    .as_ref()
                    .is_some_and(|st| st.deposed.iter().any(|p| &p.zone_id == zone));
                match obs.peer(zone) {
                    _ if deposed => Progress::NotYet(format!("{zone} is still deposed")),
                    Some(p) if obs.role_of(zone) == Role::Async && self.standby_ok(p) => {
                        Progress::Done
                    }
                    Some(p) => Progress::NotYet(format!(
                        "{} is {:?}, postgres {}, lag {:?}",
                        p.alias,
                        obs.role_of(zone),
                        p.pg_online,
                        p.lag_seconds
                    )),
                    None => Progress::NotYet(format!("{zone} not found")),
                }
            }
        })
    }

    /// A resumed reprovision goes through its gate again unless the zone is
    /// already on the image or a reprovision job for it is under way: a
    /// primary step interrupted before its call went out must not skip the
    /// "sync caught up" gate, and one whose job runs must not be sent twice.
    async fn dispatched(
        &self,
        _op: &OperationStatus,
        _step: usize,
        action: &ManateeAction,
    ) -> Result<bool, WorldError> {
        match action {
            ManateeAction::Reprovision { zone, image, .. } => {
                let obs = self.world.observe(&self.shard).await?;
                if obs.peer(zone).is_some_and(|p| &p.image == image) {
                    return Ok(true);
                }
                self.world.reprovision_in_flight(zone).await
            }
            _ => Ok(true),
        }
    }

    /// A step that timed out stops the operation; only an operator's
    /// `tritonctl approve` (recorded per attempt) lets it run again.
    async fn may_retry(
        &self,
        op: &OperationStatus,
        step: usize,
        _action: &ManateeAction,
    ) -> Result<bool, WorldError> {
        let s = &op.steps[step];
        self.world
            .approved(&op.id, &crate::operation::retry_key(&s.name, s.attempts))
            .await
    }

    fn timeout(&self, action: &ManateeAction) -> Duration {
        match action {
            ManateeAction::Reprovision { .. } => self.instance_up_timeout + self.catch_up_timeout,
            ManateeAction::WaitHealthy => self.catch_up_timeout,
            ManateeAction::Rebuild { .. } => self.instance_up_timeout + self.catch_up_timeout,
            _ => Duration::from_secs(60),
        }
    }
}

/// The preflight rules that depend on the shard alone (the image was checked when planning).
fn preflight_shard_only(obs: &ShardObservation) -> Result<(), Refusal> {
    let fake = ImageInfo {
        uuid: String::new(),
        name: String::new(),
        version: String::new(),
        state: "active".into(),
        manatee_major: None,
    };
    preflight(obs, Some(&fake), "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::manatee::PeerIdent;

    pub(crate) fn ident(zone: &str, ip: &str) -> PeerIdent {
        PeerIdent::with_default_ports(zone, ip)
    }

    fn peer(zone: &str, image: &str) -> PeerObservation {
        PeerObservation {
            zone: zone.into(),
            alias: format!("manatee-{zone}"),
            server: format!("cn-{zone}"),
            image: image.into(),
            vm_state: "running".into(),
            active: true,
            pg_online: true,
            lag_seconds: Some(0.0),
            one_node_write_mode: false,
        }
    }

    fn three_peers(image: &str) -> ShardObservation {
        let st = ClusterState::initial(
            ident("p", "10.0.0.1"),
            ident("s", "10.0.0.2"),
            vec![ident("a", "10.0.0.3")],
        );
        ShardObservation {
            shard: "sdc".into(),
            state: Some(st),
            peers: vec![peer("p", image), peer("s", image), peer("a", image)],
        }
    }

    fn spec(approval: Approval) -> ManateeVersionSpec {
        let approval = serde_json::to_value(approval).unwrap();
        serde_json::from_value(serde_json::json!({"shards": ["sdc"], "image": {"uuid": NEW}, "rollout": {"approval": approval}})).unwrap()
    }

    const OLD: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";
    const NEW: &str = "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716";

    fn image() -> ImageInfo {
        ImageInfo {
            uuid: NEW.into(),
            name: "manatee".into(),
            version: "20251104T182201Z".into(),
            state: "active".into(),
            manatee_major: Some(2),
        }
    }

    #[test]
    fn plan_orders_async_sync_freeze_primary_unfreeze() {
        let ShardPlan::Upgrade(op) = plan_shard(
            &spec(Approval::BeforePrimary),
            &three_peers(OLD),
            Some(&image()),
            "op1",
        ) else {
            panic!()
        };
        let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "preflight",
                "reprovision-async-a",
                "reprovision-sync-s",
                "approve-primary",
                "freeze",
                "reprovision-primary-p",
                "wait-healthy",
                "unfreeze"
            ]
        );
    }

    #[test]
    fn refuses_deposed_peers_unknown_images_and_foreign_freezes() {
        let mut obs = three_peers(OLD);
        obs.state
            .as_mut()
            .unwrap()
            .deposed
            .push(ident("d", "10.0.0.9"));
        assert!(
            matches!(plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op"), ShardPlan::Refused(r) if r.reason == RefusalReason::DeposedPeer)
        );
        assert!(
            matches!(plan_shard(&spec(Approval::Never), &three_peers(OLD), None, "op"), ShardPlan::Refused(r) if r.reason == RefusalReason::UnknownImage)
        );
        let mut obs = three_peers(OLD);
        obs.state
            .as_mut()
            .unwrap()
            .freeze("sdcadm /var/sdcadm/updates/x")
            .unwrap();
        assert!(
            matches!(plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op"), ShardPlan::Refused(r) if r.reason == RefusalReason::FrozenByOther)
        );
        let mut obs = three_peers(OLD);
        obs.state.as_mut().unwrap().sync = None;
        assert!(matches!(
            plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op"),
            ShardPlan::Refused(..)
        ));
    }

    #[test]
    fn up_to_date_shards_plan_nothing_and_done_peers_are_skipped() {
        assert_eq!(
            plan_shard(
                &spec(Approval::Never),
                &three_peers(NEW),
                Some(&image()),
                "op"
            ),
            ShardPlan::UpToDate
        );
        let mut obs = three_peers(OLD);
        obs.peers[2].image = NEW.into(); // the async is done already
        let ShardPlan::Upgrade(op) = plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op")
        else {
            panic!()
        };
        assert!(
            !op.status
                .steps
                .iter()
                .any(|s| s.name.starts_with("reprovision-async"))
        );
    }

    #[test]
    fn one_node_shards_do_not_freeze() {
        let st = ClusterState::initial_onwm(ident("p", "10.0.0.1"), "2026-01-01T00:00:00.000Z");
        let obs = ShardObservation {
            shard: "sdc".into(),
            state: Some(st),
            peers: vec![peer("p", OLD)],
        };
        let ShardPlan::Upgrade(op) = plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op")
        else {
            panic!()
        };
        let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["preflight", "reprovision-primary-p", "wait-healthy"]
        );
    }

    /// A world that only records what the runner asks of it.
    struct FakeWorld {
        obs: std::sync::Mutex<ShardObservation>,
        calls: std::sync::Mutex<Vec<String>>,
        /// A reprovision job VMAPI reports queued or running.
        in_flight: std::sync::Mutex<bool>,
    }

    #[async_trait]
    impl ManateeObserve for FakeWorld {
        async fn observe(&self, _: &str) -> Result<ShardObservation, WorldError> {
            Ok(self.obs.lock().unwrap().clone())
        }
        async fn image(&self, _: &str) -> Result<Option<ImageInfo>, WorldError> {
            Ok(Some(image()))
        }
        async fn approved(&self, _: &str, _: &str) -> Result<bool, WorldError> {
            Ok(false)
        }
        async fn reprovision_in_flight(&self, _: &str) -> Result<bool, WorldError> {
            Ok(*self.in_flight.lock().unwrap())
        }
    }

    #[async_trait]
    impl ManateeAct for FakeWorld {
        async fn reprovision(&self, zone: &str, _: &str, _: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("reprovision {zone}"));
            Ok(())
        }
        async fn freeze(&self, _: &str, reason: &str) -> Result<(), WorldError> {
            self.calls.lock().unwrap().push(format!("freeze {reason}"));
            Ok(())
        }
        async fn unfreeze_own(&self, _: &str, reason: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("unfreeze {reason}"));
            Ok(())
        }
    }

    fn world(obs: ShardObservation) -> FakeWorld {
        FakeWorld {
            obs: std::sync::Mutex::new(obs),
            calls: std::sync::Mutex::new(vec![]),
            in_flight: std::sync::Mutex::new(false),
        }
    }

    #[tokio::test]
    async fn a_resumed_reprovision_counts_as_dispatched_only_if_the_world_shows_it() {
        let w = world(three_peers(OLD));
        let zone = w.obs.lock().unwrap().peers[0].zone.clone();
        let a = reprovision(&zone, Role::Primary);
        let st = op_status("op1");
        // Never went out: back through the gate.
        assert!(!runner(&w).dispatched(&st, 0, &a).await.unwrap());
        // Its job runs: not gated again (its own disruption would close the gate).
        *w.in_flight.lock().unwrap() = true;
        assert!(runner(&w).dispatched(&st, 0, &a).await.unwrap());
        // Done already.
        *w.in_flight.lock().unwrap() = false;
        w.obs.lock().unwrap().peers[0].image = NEW.into();
        assert!(runner(&w).dispatched(&st, 0, &a).await.unwrap());
        // A timed-out step needs an operator's approval (none here).
        assert!(!runner(&w).may_retry(&st, 0, &a).await.unwrap());
    }

    fn runner(w: &FakeWorld) -> ManateeRunner<'_, FakeWorld> {
        ManateeRunner {
            world: w,
            shard: "sdc".into(),
            max_lag_seconds: 5.0,
            instance_up_timeout: Duration::from_secs(1),
            catch_up_timeout: Duration::from_secs(1),
            window: None,
            clock: &crate::clock::SystemClock,
        }
    }

    fn reprovision(zone: &str, role: Role) -> ManateeAction {
        ManateeAction::Reprovision {
            zone: zone.into(),
            role,
            image: NEW.into(),
        }
    }

    fn op_status(id: &str) -> OperationStatus {
        OperationStatus {
            id: id.into(),
            steps: vec![crds::status::StepStatus {
                name: "the-step".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    async fn gate(w: &FakeWorld, a: &ManateeAction) -> Gate {
        runner(w)
            .precondition(&op_status("op1"), 0, a)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn never_two_peers_of_a_shard_down_at_once() {
        let mut obs = three_peers(OLD);
        obs.peers[2].active = false; // the async is away
        let w = world(obs);
        assert!(matches!(
            gate(&w, &reprovision("s", Role::Sync)).await,
            Gate::Wait { .. }
        ));
        w.obs.lock().unwrap().peers[2].active = true;
        assert_eq!(gate(&w, &reprovision("s", Role::Sync)).await, Gate::Open);
    }

    #[tokio::test]
    async fn the_primary_waits_until_its_sync_has_caught_up() {
        let mut obs = three_peers(OLD);
        obs.peers[1].lag_seconds = Some(60.0);
        let w = world(obs);
        assert!(
            matches!(gate(&w, &reprovision("p", Role::Primary)).await, Gate::Wait { message: m, .. } if m.contains("not caught up"))
        );
        w.obs.lock().unwrap().peers[1].lag_seconds = Some(0.0);
        assert_eq!(gate(&w, &reprovision("p", Role::Primary)).await, Gate::Open);
    }

    #[tokio::test]
    async fn a_role_change_under_the_plan_asks_for_a_replan() {
        // Planned as async, but a takeover made it the sync meanwhile.
        let w = world(three_peers(OLD));
        assert!(
            matches!(gate(&w, &reprovision("s", Role::Async)).await, Gate::Block { reason, .. } if reason == BlockReason::Replan)
        );
    }

    #[tokio::test]
    async fn only_our_own_freeze_is_ever_lifted() {
        let mut obs = three_peers(NEW);
        obs.state
            .as_mut()
            .unwrap()
            .freeze("sdcadm /var/sdcadm/updates/x")
            .unwrap();
        let w = world(obs);
        let ours = ManateeAction::Unfreeze {
            reason: freeze_reason("op1"),
        };
        runner(&w)
            .act(&OperationStatus::default(), 0, &ours)
            .await
            .unwrap();
        assert!(
            w.calls.lock().unwrap().is_empty(),
            "lifted someone else's freeze"
        );
        // A foreign freeze appearing before ours blocks instead of being overwritten.
        let freeze = ManateeAction::Freeze {
            reason: freeze_reason("op1"),
        };
        assert!(
            matches!(gate(&w, &freeze).await, Gate::Block { reason, .. } if reason == BlockReason::Refused(RefusalReason::FrozenByOther))
        );
        // Our own freeze is lifted.
        w.obs
            .lock()
            .unwrap()
            .state
            .as_mut()
            .unwrap()
            .unfreeze()
            .unwrap();
        w.obs
            .lock()
            .unwrap()
            .state
            .as_mut()
            .unwrap()
            .freeze(&freeze_reason("op1"))
            .unwrap();
        runner(&w)
            .act(&OperationStatus::default(), 0, &ours)
            .await
            .unwrap();
        assert_eq!(
            *w.calls.lock().unwrap(),
            [format!("unfreeze {}", freeze_reason("op1"))]
        );
    }

    #[tokio::test]
    async fn a_peer_already_on_the_image_is_not_reprovisioned_again() {
        // Resuming after a crash between the reprovision and the journal save.
        let mut obs = three_peers(OLD);
        obs.peers[2].image = NEW.into();
        let w = world(obs);
        runner(&w)
            .act(
                &OperationStatus::default(),
                0,
                &reprovision("a", Role::Async),
            )
            .await
            .unwrap();
        assert!(w.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn disruptive_steps_wait_for_the_maintenance_window() {
        use crate::clock::ManualClock;
        use time::macros::datetime;
        let w = world(three_peers(OLD));
        // Tuesdays 14:00 for 4h; 2026-01-06 is a Tuesday.
        let clock = ManualClock::new(datetime!(2026-01-06 09:00 UTC));
        let mut r = runner(&w);
        r.window = Some(crds::manatee::MaintenanceWindow {
            days: vec!["Tue".into()],
            start: "14:00".into(),
            duration: "4h".into(),
        });
        r.clock = &clock;
        let op = op_status("op1");
        let freeze = ManateeAction::Freeze {
            reason: freeze_reason("op1"),
        };
        let g = r
            .precondition(&op, 0, &reprovision("a", Role::Async))
            .await
            .unwrap();
        assert!(
            matches!(&g, Gate::Wait { message: m, .. } if m.contains("2026-01-06T14:00:00Z")),
            "{g:?}"
        );
        assert!(matches!(
            r.precondition(&op, 0, &freeze).await.unwrap(),
            Gate::Wait { .. }
        ));
        // Non-disruptive steps are not held back.
        assert_eq!(
            r.precondition(&op, 0, &ManateeAction::WaitHealthy)
                .await
                .unwrap(),
            Gate::Open
        );
        // Inside the window the step may start.
        clock.advance(Duration::from_secs(5 * 3600 + 60));
        assert_eq!(
            r.precondition(&op, 0, &reprovision("a", Role::Async))
                .await
                .unwrap(),
            Gate::Open
        );
        // After it closes the next is next Tuesday...
        clock.advance(Duration::from_secs(4 * 3600));
        let g = r.precondition(&op, 0, &freeze).await.unwrap();
        assert!(
            matches!(&g, Gate::Wait { message: m, .. } if m.contains("2026-01-13T14:00:00Z")),
            "{g:?}"
        );
        // ...but a primary whose shard we froze inside the window goes on
        // rather than leaving the shard frozen for a week.
        w.obs
            .lock()
            .unwrap()
            .state
            .as_mut()
            .unwrap()
            .freeze(&freeze_reason("op1"))
            .unwrap();
        assert_eq!(
            r.precondition(&op, 0, &reprovision("p", Role::Primary))
                .await
                .unwrap(),
            Gate::Open
        );
    }

    /// After a takeover deposed the primary (its server died mid-upgrade).
    fn after_takeover() -> ShardObservation {
        // Planned: p primary, s sync, a async. Now s is primary, a sync, p deposed.
        let mut st = ClusterState::initial(ident("s", "10.0.0.2"), ident("a", "10.0.0.3"), vec![]);
        st.generation = 2;
        st.deposed.push(ident("p", "10.0.0.1"));
        let mut obs = three_peers(OLD);
        obs.state = Some(st);
        obs.peers[2].image = NEW.into(); // the async was done before
        obs
    }

    #[test]
    fn a_peer_deposed_during_our_upgrade_is_rebuilt_others_refuse() {
        let ours = vec!["p".to_string(), "s".to_string(), "a".to_string()];
        let sp = spec(Approval::Never);
        // Not ours (no journal names it): refused as before.
        assert!(matches!(
            plan_shard_with(&sp, &after_takeover(), Some(&image()), "op2", &[]),
            ShardPlan::Refused(r) if r.reason == RefusalReason::DeposedPeer
        ));
        // Ours but its zone is down (the server is still dead): wait for it.
        let mut down = after_takeover();
        down.peers[0].vm_state = "unknown".into();
        down.peers[0].active = false;
        assert!(matches!(
            plan_shard_with(&sp, &down, Some(&image()), "op2", &ours),
            ShardPlan::Refused(r) if r.reason == RefusalReason::DeposedPeerDown
        ));
        // Ours and back: rebuild first, then upgrade it as an async, then the
        // new primary (s) last.
        let ShardPlan::Upgrade(op) =
            plan_shard_with(&sp, &after_takeover(), Some(&image()), "op2", &ours)
        else {
            panic!()
        };
        let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rebuild-p",
                "preflight",
                "reprovision-async-p",
                "freeze",
                "reprovision-primary-s",
                "wait-healthy",
                "unfreeze"
            ]
        );
    }

    #[tokio::test]
    async fn a_rebuild_needs_a_healthy_primary_and_sync_and_never_touches_the_primary() {
        let mut obs = after_takeover();
        obs.peers[2].lag_seconds = Some(60.0); // the new sync lags
        let w = world(obs);
        let rebuild = ManateeAction::Rebuild { zone: "p".into() };
        assert!(matches!(gate(&w, &rebuild).await, Gate::Wait { .. }));
        w.obs.lock().unwrap().peers[2].lag_seconds = Some(0.0);
        assert_eq!(gate(&w, &rebuild).await, Gate::Open);
        let primary = ManateeAction::Rebuild { zone: "s".into() };
        w.obs
            .lock()
            .unwrap()
            .state
            .as_mut()
            .unwrap()
            .deposed
            .push(ident("s", "10.0.0.2"));
        assert!(matches!(
            gate(&w, &primary).await,
            Gate::Block { reason, .. } if reason == BlockReason::RebuildPrimary
        ));
    }

    #[tokio::test]
    async fn a_takeover_while_awaiting_approval_replans_instead_of_freezing() {
        let w = world(after_takeover());
        for a in [
            ManateeAction::Approval {
                what: "primary".into(),
            },
            ManateeAction::Freeze {
                reason: freeze_reason("op1"),
            },
        ] {
            assert!(
                matches!(gate(&w, &a).await, Gate::Block { reason, .. } if reason == BlockReason::Replan),
                "{a:?}"
            );
        }
    }
}
