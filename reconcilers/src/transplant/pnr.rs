//! Past the point of no return: the decisions a person chooses from, the
//! stop they answer, and the two manual ways back, described command by
//! command.

use serde::{Deserialize, Serialize};

use crds::status::StepState;

use super::{Topology, TransplantAction, backup_name, short};
use crate::operation::Operation;

/// The options a person chooses from once the transplant stops past its
/// point of no return (`tritonctl approve ... --option <one>`).
pub const DECISIONS: [&str; 3] = ["resume", "reverse-transplant", "restore-backup"];

/// The approval a person gives to answer stop number `seq` with `option`:
/// bound to that stop, so an approval never carries over to a later one.
pub fn decision_key(seq: u32, option: &str) -> String {
    format!("after-pnr-{seq}-{option}")
}

/// A stop past the point of no return, waiting for a person's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PastPnrStop {
    /// 1 for the operation's first such stop, 2 for the next, ...
    pub seq: u32,
    /// The forward step that failed, timed out or was blocked.
    pub step: usize,
    pub name: String,
    /// What went wrong.
    pub cause: String,
    pub at: String,
}

fn topology_of(forward: &Operation<TransplantAction>) -> Option<Topology> {
    forward.actions.iter().find_map(|a| match a {
        TransplantAction::RecordInitialState { topology } => Some(topology.clone()),
        _ => None,
    })
}

fn step_started(
    forward: &Operation<TransplantAction>,
    pred: &dyn Fn(&TransplantAction) -> bool,
) -> bool {
    forward
        .status
        .steps
        .iter()
        .zip(&forward.actions)
        .any(|(s, a)| s.state != StepState::Pending && pred(a))
}

/// The v2 node's key (`alias:<alias>` for a new instance, else the zone).
fn v2_node(forward: &Operation<TransplantAction>) -> String {
    forward
        .actions
        .iter()
        .find_map(|a| match a {
            TransplantAction::EnableV2 { zone } => Some(zone.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

/// Why the backup can no longer be restored, if it cannot.
fn backup_gone(forward: &Operation<TransplantAction>, topo: &Topology) -> Option<String> {
    let p = topo.primary.clone();
    if step_started(
        forward,
        &|a| matches!(a, TransplantAction::ReleaseSnapshot { name, .. } if name.ends_with("-backup")),
    ) {
        return Some("the backup snapshot was already released (step 9)".into());
    }
    if step_started(
        forward,
        &|a| matches!(a, TransplantAction::ReprovisionPeer { zone, .. } if *zone == p),
    ) {
        return Some(format!(
            "the v1 primary {p} holding the backup was already reprovisioned onto v2 (step 9)"
        ));
    }
    None
}

/// What `restore-backup` would run, command by command. tritonctl does not
/// run it (not automated yet): a person does, knowing it discards writes.
pub fn restore_backup_plan(forward: &Operation<TransplantAction>) -> String {
    let id = &forward.status.id;
    let Some(t) = topology_of(forward) else {
        return "restore-backup: impossible, the starting topology was never recorded".into();
    };
    if let Some(why) = backup_gone(forward, &t) {
        return format!("restore-backup: impossible, {why}");
    }
    let p = &t.primary;
    let taken = forward
        .status
        .steps
        .iter()
        .zip(&forward.actions)
        .find(|(_, a)| matches!(a, TransplantAction::Snapshot { name, .. } if name.ends_with("-backup")))
        .and_then(|(s, _)| s.finished_at.clone())
        .unwrap_or_else(|| "?".into());
    let others: Vec<&str> = t.sync.iter().chain(&t.asyncs).map(String::as_str).collect();
    format!(
        "restore-backup (DISCARDS every write acknowledged since the backup snapshot @{b} taken at {taken}; \
count them before deciding: rows on the v2 primary {v2} that are not in @{b}): \
1. svcadm disable '*moray-202*' in every moray zone (writes stop); \
2. svcadm disable manatee-sitter in the v2 node {v2} and in every peer already on v2; \
3. delete /manatee/{shard}/state in ZooKeeper (v1 keeps no state); \
4. on {p}'s server: zfs rollback -r zones/{p}/data/manatee@{b}; \
5. in {p}: svcadm enable config-agent (sitter.json oneNodeWriteMode back to false), svcadm enable manatee-sitter; \
6. sapiadm update the manatee service params.image_uuid={img}; reprovision {others} onto {img} with their datasets destroyed so they rebuild from {p}; delete the v2 instance if tritonctl created it; \
7. svcadm enable '*moray-202*'",
        b = backup_name(id),
        v2 = v2_node(forward),
        shard = forward.status.target,
        img = t.service_image,
        others = if others.is_empty() {
            "-".to_string()
        } else {
            others.join(", ")
        },
    )
}

/// What `reverse-transplant` would run. Not automated yet either.
pub fn reverse_transplant_plan(forward: &Operation<TransplantAction>) -> String {
    let id = &forward.status.id;
    let Some(t) = topology_of(forward) else {
        return "reverse-transplant: impossible, the starting topology was never recorded".into();
    };
    let p = &t.primary;
    let v2 = v2_node(forward);
    if step_started(
        forward,
        &|a| matches!(a, TransplantAction::ReprovisionPeer { zone, .. } if zone == p),
    ) {
        return format!(
            "reverse-transplant: every v1 peer is gone ({p} was reprovisioned onto v2); a v1 zone must be provisioned first"
        );
    }
    format!(
        "reverse-transplant (keeps every write): 1. svcadm disable '*moray-202*' (writes stop); \
2. svcadm disable manatee-sitter in {v2}; zfs snapshot zones/{v2}/data/manatee@tritonctl-{s}-reverse; \
3. zfs destroy -r zones/{p}/data/manatee; zfs send ...{v2}@tritonctl-{s}-reverse | zfs recv zones/{p}/data/manatee; \
4. in {p}: config-agent disabled, oneNodeWriteMode true in sitter.json; delete /manatee/{shard}/state; svcadm enable manatee-sitter; \
5. svcadm enable '*moray-202*'; 6. the runbook's rollback from one-node-write mode: re-enable the v1 sync and asyncs with emptied datasets so they rebuild from {p}, then leave one-node-write mode",
        s = short(id),
        shard = forward.status.target,
    )
}

/// What a person must decide once the point of no return has passed and
/// something stops the transplant: the situation and every way on or back.
pub fn after_pnr_message(forward: &Operation<TransplantAction>, what: &str) -> String {
    let id = &forward.status.id;
    format!(
        "{what}. The transplant {id} is past its point of no return: the v2 primary may have accepted writes the v1 peers do not have, so tritonctl neither retries nor rolls back by itself; it waits for a person to choose one option, explicitly, with `tritonctl approve manateeversion/<name> --option <option>`. Options: \
(1) resume: fix the cause first; the failed step is retried once and the transplant goes forward (keeps every write); \
(2) {}. Not automated: tritonctl refuses to approve it; a person runs it by hand; \
(3) {}. Not automated: tritonctl refuses to approve it; a person runs it by hand",
        reverse_transplant_plan(forward),
        restore_backup_plan(forward),
    )
}
