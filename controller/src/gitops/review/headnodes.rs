//! HeadnodeSet: membership changes in words, and the HA setup of shard sdc
//! (the same pure `plan_ha` the controller runs).

use std::collections::BTreeSet;

use crds::Kind;
use crds::headnode::HeadnodeSetSpec;
use reconcilers::manatee_ha::{HaAction, HaPlan, plan_ha};
use reconcilers::operation::Operation;

use super::common::{executed, not_observed, peers_summary};
use super::types::{HeadnodePlan, OpReview, Risk, ShardOutcome, ShardReview, StepReview};
use crate::gitops::observed::{StoredView, World};

fn set_changes(what: &str, old: &[String], new: &[String], out: &mut Vec<String>) {
    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
        (old.iter().collect(), new.iter().collect());
    for x in b.difference(&a) {
        out.push(format!("{what}: + {x}"));
    }
    for x in a.difference(&b) {
        out.push(format!("{what}: - {x}"));
    }
}

fn describe_ha_step(action: &HaAction) -> (String, String, Vec<Risk>) {
    match action {
        HaAction::Preflight => (
            "none".into(),
            "the shard is set up: primary up, nothing deposed, no foreign freeze".into(),
            vec![],
        ),
        HaAction::CreatePeer { .. } => (
            "every placed peer up (else waits)".into(),
            "the zone runs and its sitter is in the election; timeout 5m".into(),
            vec![],
        ),
        HaAction::LeaveOneNodeWriteMode => (
            "the shard still in one-node-write mode with a second peer".into(),
            "ONE_NODE_WRITE_MODE gone from the SAPI metadata".into(),
            vec![],
        ),
        HaAction::UnfreezeSetup => (
            "only manatee's own setup freeze is lifted".into(),
            "the setup freeze is gone".into(),
            vec![],
        ),
        HaAction::RestartPrimarySitter => (
            "the new peer is up, the primary found in the cluster state when the step runs".into(),
            "the primary left one-node-write mode and names the new peer as sync".into(),
            vec![Risk::PrimaryDisruption, Risk::WriteOutage],
        ),
        HaAction::WaitSync => (
            "none".into(),
            "the primary replicates synchronously to a caught-up sync; timeout 15m".into(),
            vec![],
        ),
        HaAction::WaitHealthy => (
            "none".into(),
            "every peer placed and caught up; timeout 15m".into(),
            vec![],
        ),
    }
}

fn ha_review(op: &Operation<HaAction>, one_node: bool) -> OpReview {
    let steps: Vec<StepReview> = op
        .status
        .steps
        .iter()
        .zip(&op.actions)
        .map(|(s, a)| {
            let (gate, done_when, risks) = describe_ha_step(a);
            StepReview {
                name: s.name.clone(),
                description: s.description.clone(),
                touches: s.touches.clone(),
                gate,
                done_when,
                irreversible: s.irreversible,
                risks,
            }
        })
        .collect();
    OpReview {
        id: op.status.id.clone(),
        kind: op.status.kind.clone(),
        point_of_no_return: None,
        steps,
        expected_write_outage: if one_node {
            "writes pause from restart-primary-sitter until the new sync has caught up (wait-sync): the primary leaves one-node-write mode and replicates synchronously from then on; bounded by 15m".into()
        } else {
            "none expected: new peers join as asyncs".into()
        },
        waits: vec![
            "no approval and no maintenance window: the HA setup's runner does not gate on them".into(),
            "the shard lock: it starts when no rolling upgrade of a ManateeVersion holds shard sdc (a transplant does not take the lock)".into(),
        ],
        rollback: Some(
            "no automatic rollback; every step is reversible by hand (delete the new zones, set ONE_NODE_WRITE_MODE again)".into(),
        ),
    }
}

pub(super) async fn plan_headnodes(
    name: &str,
    old: Option<&HeadnodeSetSpec>,
    new: &HeadnodeSetSpec,
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<HeadnodePlan, String> {
    let mut changes = Vec::new();
    let mut notes = vec![
        "The HeadnodeSet reconciler executes the manatee placement of shard sdc only (`sdcadm post-setup ha-manatee` as journaled steps: it adds the peers haServices.manatee names, never removes one). Headnode membership, binder, moray and decommission changes are stored; no steps are planned or run for them.".to_string(),
    ];
    let empty = Vec::new();
    match old {
        Some(o) => {
            set_changes("headnodes", &o.headnodes, &new.headnodes, &mut changes);
            if o.primary != new.primary {
                changes.push(format!("primary: {} -> {}", o.primary, new.primary));
            }
            set_changes(
                "binder",
                &o.ha_services.binder,
                &new.ha_services.binder,
                &mut changes,
            );
            set_changes(
                "manatee",
                &o.ha_services.manatee,
                &new.ha_services.manatee,
                &mut changes,
            );
            set_changes(
                "moray",
                &o.ha_services.moray,
                &new.ha_services.moray,
                &mut changes,
            );
            set_changes(
                "decommission",
                &o.decommission,
                &new.decommission,
                &mut changes,
            );
            let removed: Vec<&String> = o
                .ha_services
                .manatee
                .iter()
                .filter(|s| !new.ha_services.manatee.contains(s))
                .collect();
            if !removed.is_empty() {
                notes.push(format!(
                    "manatee peers on {} are not removed: the HA setup only adds peers; the shard keeps them (remove them by hand, one at a time, after the new peer is caught up)",
                    removed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        None => {
            notes.push(format!(
                "No HeadnodeSet for {} is stored: the set is described for the first time.",
                new.datacenter
            ));
            set_changes("headnodes", &empty, &new.headnodes, &mut changes);
            changes.push(format!("primary: {}", new.primary));
            set_changes("binder", &empty, &new.ha_services.binder, &mut changes);
            set_changes("manatee", &empty, &new.ha_services.manatee, &mut changes);
            set_changes("moray", &empty, &new.ha_services.moray, &mut changes);
            set_changes("decommission", &empty, &new.decommission, &mut changes);
        }
    }
    if !new.decommission.is_empty() {
        notes.push(format!(
            "decommission {}: their HA instances would have to move first (binder quorum, manatee primary+sync and one moray kept at every step)",
            new.decommission.join(", ")
        ));
    }
    let (manatee, refusal) = match world {
        None => (None, None),
        Some(w) => {
            let (review, refusal) = plan_sdc_ha(name, new, w).await?;
            (Some(review), refusal)
        }
    };
    if refusal == Some(reconcilers::error::RefusalReason::UnknownServer)
        && let Some(w) = world
        && w.resolve_servers(&new.ha_services.manatee)
            .await
            .is_ok_and(|d| d.iter().all(|x| x.uuid.is_none()))
    {
        notes.push(format!(
            "none of the servers haServices.manatee names is in the reviewed datacenter's CNAPI: this HeadnodeSet (datacenter {}) may belong to another datacenter; review it against that one",
            new.datacenter
        ));
    }
    // The transplant does not take the shard lock (controller::transplant):
    // an HA setup could start on shard sdc while one is in flight.
    for (key, ts) in &stored.transplants {
        for t in ts
            .iter()
            .filter(|t| t.target == "sdc" && !t.journal.forward.is_finished())
        {
            notes.push(format!(
                "{key}: transplant {} is in flight on shard sdc and does not take the shard lock; hold this HeadnodeSet change until it has finished, or the HA setup may start during it",
                t.journal.forward.status.id
            ));
        }
    }
    Ok(HeadnodePlan {
        executed: executed(Kind::HeadnodeSet),
        datacenter: new.datacenter.clone(),
        changes,
        notes,
        manatee,
    })
}

/// The HA setup the HeadnodeSet reconciler would run on shard sdc
/// (controller::reconcile_ha), from the same pure `plan_ha`, and the
/// planner's refusal reason if it refused.
async fn plan_sdc_ha(
    name: &str,
    spec: &HeadnodeSetSpec,
    world: &dyn World,
) -> Result<(ShardReview, Option<reconcilers::error::RefusalReason>), String> {
    const SHARD: &str = "sdc";
    let obs = match world.manatee().observe(SHARD).await {
        Ok(o) => o,
        Err(e) => return Ok((not_observed(SHARD, format!("could not observe: {e}")), None)),
    };
    let desired = match world.resolve_servers(&spec.ha_services.manatee).await {
        Ok(d) => d,
        Err(e) => {
            return Ok((
                not_observed(SHARD, format!("could not resolve servers: {e}")),
                None,
            ));
        }
    };
    let peers = peers_summary(&obs);
    let one_node = obs
        .state
        .as_ref()
        .is_some_and(|s| s.is_one_node_write_mode());
    let op_id = format!("ha-{name}-sdc-planned");
    let strategy = Some("HA setup, sdcadm post-setup ha-manatee".to_string());
    let plan = plan_ha(&obs, &desired, "manatee", &op_id);
    let refusal = match &plan {
        HaPlan::Refused(r) => Some(r.reason),
        _ => None,
    };
    let review = match plan {
        HaPlan::UpToDate => ShardReview {
            shard: SHARD.into(),
            outcome: ShardOutcome::UpToDate,
            message: Some(format!(
                "a peer on each of {}",
                spec.ha_services.manatee.join(", ")
            )),
            peers,
            strategy,
            starts: None,
            operation: None,
        },
        HaPlan::Refused(reconcilers::error::Refusal { reason, message }) => ShardReview {
            shard: SHARD.into(),
            outcome: ShardOutcome::Refused,
            message: Some(format!("{reason}: {message}")),
            peers,
            strategy,
            starts: None,
            operation: None,
        },
        HaPlan::Grow(op) => ShardReview {
            shard: SHARD.into(),
            outcome: ShardOutcome::Upgrade,
            message: Some(format!(
                "grow shard sdc to a peer on each of {}",
                spec.ha_services.manatee.join(", ")
            )),
            peers,
            strategy,
            starts: Some("once shard sdc's lock is free".into()),
            operation: Some(ha_review(&op, one_node)),
        },
    };
    Ok((review, refusal))
}
