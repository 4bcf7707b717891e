//! The runbook's rollback, derived from what the forward operation did.

use super::plan::step;
use crds::status::StepState;

use super::{TransplantAction, backup_name, migrate_name, onwm_reason};
use crate::operation::Operation;

/// The runbook's rollback, for whatever the forward operation did (steps
/// that started). `None` once the point of no return has started: then only
/// an approved reverse transplant or backup restore can go back.
pub fn rollback_plan(forward: &Operation<TransplantAction>) -> Option<Operation<TransplantAction>> {
    if !forward.status.can_roll_back() {
        return None;
    }
    let started = |pred: &dyn Fn(&TransplantAction) -> bool| {
        forward
            .status
            .steps
            .iter()
            .zip(&forward.actions)
            .any(|(s, a)| s.state != StepState::Pending && pred(a))
    };
    let topo = forward.actions.iter().find_map(|a| match a {
        TransplantAction::RecordInitialState { topology } => Some(topology.clone()),
        _ => None,
    })?;
    let shard = forward.status.target.clone();
    let op_id = &forward.status.id;
    let mut steps = Vec::new();
    if started(&|a| matches!(a, TransplantAction::WriteOnwmState { .. })) {
        steps.push(step(
            "rollback-delete-state",
            "delete the cluster state tritonctl wrote for the v2 node (its sitter never ran)"
                .into(),
            vec![shard.clone()],
            TransplantAction::DeleteState {
                shard: shard.clone(),
                reason: onwm_reason(op_id),
            },
        ));
    }
    let p = topo.primary.clone();
    if started(&|a| {
        matches!(a, TransplantAction::PrimaryOnwm { .. })
            || matches!(a, TransplantAction::DisableSitter { zone } if *zone == p)
    }) {
        steps.push(step(
            "rollback-primary",
            "v1 primary: svcadm enable config-agent, wait for oneNodeWriteMode: false in sitter.json, restart (enable) the sitter".into(),
            vec![p.clone()],
            TransplantAction::PrimaryLeaveOnwm { zone: p.clone() },
        ));
    }
    if let Some(s) = &topo.sync
        && started(&|a| matches!(a, TransplantAction::DisableSitter { zone } if zone == s))
    {
        steps.push(step(
            "rollback-enable-sync",
            "svcadm enable manatee-sitter in the v1 sync".into(),
            vec![s.clone()],
            TransplantAction::EnableSitter { zone: s.clone() },
        ));
    }
    if started(&|a| matches!(a, TransplantAction::StopWrites)) {
        steps.push(step(
            "rollback-start-writes",
            "svcadm enable every moray".into(),
            vec![],
            TransplantAction::StartWrites,
        ));
    }
    for (i, a) in topo.asyncs.iter().enumerate().rev() {
        let reprovisioned =
            started(&|x| matches!(x, TransplantAction::ReprovisionV2 { zone, .. } if zone == a));
        if reprovisioned {
            let image = topo.zones.get(a).map(|z| z.1.clone()).unwrap_or_default();
            steps.push(step(
                &format!("rollback-revert-async-{i}"),
                format!("sapiadm reprovision async {a} back onto {image} with DISABLE_SITTER/ONE_NODE_WRITE_MODE cleared (it rebuilds from its upstream)"),
                vec![a.clone()],
                TransplantAction::RevertAsync { zone: a.clone(), image },
            ));
        } else if started(&|x| matches!(x, TransplantAction::DisableSitter { zone } if zone == a)) {
            steps.push(step(
                &format!("rollback-enable-async-{i}"),
                format!("svcadm enable manatee-sitter in async {a}"),
                vec![a.clone()],
                TransplantAction::EnableSitter { zone: a.clone() },
            ));
        }
    }
    let created = forward.actions.iter().find_map(|a| match a {
        TransplantAction::CreateV2Instance { alias, .. } => Some(format!("alias:{alias}")),
        _ => None,
    });
    if let Some(key) = created
        && started(&|a| matches!(a, TransplantAction::CreateV2Instance { .. }))
    {
        steps.push(step(
            "rollback-delete-v2-instance",
            "delete the v2 instance created for the transplant".into(),
            vec![key.clone()],
            TransplantAction::RetireZone { zone: key },
        ));
    }
    if started(&|a| matches!(a, TransplantAction::SetServiceImage { .. })) {
        steps.push(step(
            "rollback-service-image",
            format!(
                "point the SAPI manatee service back at {}",
                topo.service_image
            ),
            vec![],
            TransplantAction::SetServiceImage {
                shard: shard.clone(),
                image: topo.service_image.clone(),
            },
        ));
    }
    let n = topo.zones.len();
    steps.push(step(
        "rollback-wait-v1",
        format!(
            "wait until the {n} v1 peers are back in the election and the primary takes writes"
        ),
        vec![],
        TransplantAction::WaitPeers {
            shard: shard.clone(),
            count: n,
        },
    ));
    for name in [migrate_name(op_id), backup_name(op_id)] {
        if started(&|a| matches!(a, TransplantAction::Snapshot { name: x, .. } if *x == name)) {
            steps.push(step(
                &format!(
                    "rollback-release-{}",
                    if name.ends_with("backup") {
                        "backup"
                    } else {
                        "migrate"
                    }
                ),
                format!("destroy snapshot @{name}"),
                vec![p.clone()],
                TransplantAction::ReleaseSnapshot {
                    zone: p.clone(),
                    name,
                },
            ));
        }
    }
    Some(Operation::new(
        &format!("{op_id}-rollback"),
        "manatee-transplant-rollback",
        &shard,
        steps,
    ))
}
