//! Preflight and the pure rolling plan of one shard.

use crds::manatee::{Approval, ManateeVersionSpec};
use wire::manatee::ClusterState;

use super::switchover::PrimaryMethod;
use super::{
    FREEZE_PREFIX, ImageInfo, ManateeAction, Role, ShardObservation, ShardPlan, freeze_reason,
};
use crate::error::{Refusal, RefusalReason};
use crate::operation::{Operation, PlannedStep};

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
    let deposed: Vec<String> = obs
        .state
        .as_ref()
        .map(|st| st.deposed.iter().map(|p| p.zone_id.clone()).collect())
        .unwrap_or_default();
    if obs.peers.iter().all(|p| &p.image == wanted) && !deposed.iter().any(|z| ours.contains(z)) {
        return ShardPlan::UpToDate;
    }
    let rebuild = match rebuilds(obs, &deposed, ours) {
        Ok(r) => r,
        Err(r) => return ShardPlan::Refused(r),
    };
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
    let method = match super::switchover::primary_method(spec.strategy, st, image) {
        Ok(m) => m,
        Err(r) => return ShardPlan::Refused(r),
    };
    // Rebuilds come before the preflight, which then finds nothing deposed.
    let mut steps: Vec<PlannedStep<ManateeAction>> =
        rebuild.iter().map(|z| rebuild_step(obs, z)).collect();
    steps.push(PlannedStep {
        name: "preflight".into(),
        description: format!(
            "check shard {} is healthy: no deposed peer, sync present, image active",
            obs.shard
        ),
        touches: vec![],
        irreversible: false,
        action: ManateeAction::Preflight,
    });
    // Asyncs from the tail of the chain, then the sync.
    let tail_first = rebuild
        .iter()
        .rev()
        .chain(st.asyncs.iter().rev().map(|a| &a.zone_id));
    for z in tail_first {
        if obs.peer(z).is_some_and(|p| &p.image != wanted) {
            steps.push(reprovision_step(obs, st, z, Role::Async, wanted));
        }
    }
    if let Some(s) = &st.sync
        && obs.peer(&s.zone_id).is_some_and(|p| &p.image != wanted)
    {
        steps.push(reprovision_step(obs, st, &s.zone_id, Role::Sync, wanted));
    }
    if obs
        .peer(&st.primary.zone_id)
        .is_some_and(|p| &p.image != wanted)
    {
        match method {
            PrimaryMethod::Rolling => primary_steps(spec, obs, st, op_id, &mut steps),
            PrimaryMethod::Switchover => super::switchover::steps(spec, obs, st, &mut steps),
        }
    }
    ShardPlan::Upgrade(Operation::new(
        op_id,
        match method {
            PrimaryMethod::Rolling => "manatee-rolling-upgrade",
            PrimaryMethod::Switchover => "manatee-switchover-upgrade",
        },
        &obs.shard,
        steps,
    ))
}

pub(super) fn short(z: &str) -> String {
    z.split('-').next().unwrap_or(z).to_string()
}

/// The deposed peers to rebuild: only when every one was deposed during
/// our own upgrade (`ours`), and each runs again; otherwise none (the
/// preflight refuses), or a refusal naming the one still down.
fn rebuilds(
    obs: &ShardObservation,
    deposed: &[String],
    ours: &[String],
) -> Result<Vec<String>, Refusal> {
    if deposed.is_empty() || !deposed.iter().all(|z| ours.contains(z)) {
        return Ok(Vec::new());
    }
    let mut rebuild = Vec::new();
    for z in deposed {
        match obs.peer(z) {
            Some(p) if p.vm_state == "running" && p.active => rebuild.push(z.clone()),
            other => {
                return Err(Refusal::new(
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
    Ok(rebuild)
}

fn rebuild_step(obs: &ShardObservation, z: &str) -> PlannedStep<ManateeAction> {
    let alias = obs.peer(z).map_or(z.to_string(), |p| p.alias.clone());
    PlannedStep {
        name: format!("rebuild-{}", short(z)),
        description: format!(
            "rebuild {alias}, deposed by a takeover during our upgrade (manatee-adm rebuild); it rejoins as an async"
        ),
        touches: vec![alias],
        irreversible: false,
        action: ManateeAction::Rebuild {
            zone: z.to_string(),
        },
    }
}

pub(super) fn reprovision_step(
    obs: &ShardObservation,
    st: &ClusterState,
    zone: &str,
    role: Role,
    wanted: &str,
) -> PlannedStep<ManateeAction> {
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
            Role::Deposed => format!(
                "reprovision {alias}, the old primary our switchover deposed, onto {wanted}; it stays deposed until rebuilt"
            ),
            _ => format!("reprovision async {alias}; wait until it is back and replicating"),
        },
        touches: vec![alias],
        irreversible: false,
        action: ManateeAction::Reprovision {
            zone: zone.to_string(),
            role,
            image: wanted.to_string(),
        },
    }
}

/// The primary last: (approval) -> freeze with our reason -> reprovision
/// -> full health -> lift our freeze; no freeze in one-node-write mode.
fn primary_steps(
    spec: &ManateeVersionSpec,
    obs: &ShardObservation,
    st: &ClusterState,
    op_id: &str,
    steps: &mut Vec<PlannedStep<ManateeAction>>,
) {
    if spec.rollout.approval != Approval::Never {
        steps.push(PlannedStep {
            name: "approve-primary".into(),
            description: format!(
                "wait for `tritonctl approve` before touching the primary of {} (the write outage)",
                obs.shard
            ),
            touches: vec![],
            irreversible: false,
            action: ManateeAction::Approval {
                what: format!("the primary step of shard {}", obs.shard),
            },
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
    steps.push(reprovision_step(
        obs,
        st,
        &st.primary.zone_id,
        Role::Primary,
        &spec.image.uuid,
    ));
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

/// The preflight rules that depend on the shard alone (the image was checked when planning).
pub(super) fn preflight_shard_only(obs: &ShardObservation) -> Result<(), Refusal> {
    let fake = ImageInfo {
        uuid: String::new(),
        name: String::new(),
        version: String::new(),
        state: "active".into(),
        manatee_major: None,
    };
    preflight(obs, Some(&fake), "")
}
