//! The pure plan of one move: the canonical step list (names shared with
//! the review and the measurement), the ring stages, and the rollback of
//! whatever the forward operation started.

use std::collections::BTreeSet;

use crds::ring::pnode_of_shard;
use crds::status::StepState;
use wire::fash::{FashError, Ring};

use super::{CleanupTarget, MoveJob, ReshardAction, RingStage, VnodeMove};
use crate::operation::{Operation, PlannedStep};

/// The canonical step names, in order.
pub const STEPS: [&str; 19] = [
    "preflight",
    "lock-region",
    "freeze-source",
    "add-peers",
    "await-catch-up",
    "provision-morays",
    "build-rings",
    "approval",
    "take-dump-lock",
    "mark-ro",
    "sentinel",
    "detach-peers",
    "install-ring",
    "mark-rw",
    "release-dump-lock",
    "cleanup",
    "verify-counts",
    "unfreeze",
    "release-region-lock",
];

/// The point of no return: installing the ring that maps the moved vnodes
/// to the new shard.
pub const PNR_STEP: &str = "install-ring";

/// The freeze reason of the operation (only this freeze is ever lifted).
pub fn freeze_reason(op_id: &str) -> String {
    format!("tritonctl reshard {op_id}")
}

fn step(
    name: &str,
    description: String,
    touches: Vec<String>,
    a: ReshardAction,
) -> PlannedStep<ReshardAction> {
    PlannedStep {
        irreversible: name == PNR_STEP,
        name: name.to_string(),
        description,
        touches,
        action: a,
    }
}

/// The forward operation of one move (the approval step only when the
/// spec asks for it).
pub fn plan_move(job: &MoveJob) -> Operation<ReshardAction> {
    use ReshardAction as A;
    let (from, to) = (job.mv.from.clone(), job.mv.to.clone());
    let n = job.mv.vnodes.len();
    let reason = freeze_reason(&job.op_id);
    let both = vec![from.clone(), to.clone()];
    let mut steps = vec![
        step(
            "preflight",
            format!(
                "{from} healthy, lag under {}s, every electric-moray reachable and on the live ring {}, ring image readable",
                job.max_lag_secs, job.original_image
            ),
            vec![from.clone()],
            A::Preflight,
        ),
        step(
            "lock-region",
            format!("take the region lock naming {}", job.op_id),
            vec![],
            A::LockRegion,
        ),
        step(
            "freeze-source",
            format!("freeze {from}: \"{reason}\""),
            vec![from.clone()],
            A::FreezeSource,
        ),
        step(
            "add-peers",
            format!(
                "add {} postgres peers for {to} as asyncs of {from} on {}",
                job.new_servers.len(),
                job.new_servers.join(", ")
            ),
            both.clone(),
            A::AddPeers,
        ),
        step(
            "await-catch-up",
            "the new peers restore and catch up".into(),
            both.clone(),
            A::AwaitCatchUp,
        ),
        step(
            "provision-morays",
            format!("provision {} morays for {to}", job.morays),
            vec![to.clone()],
            A::ProvisionMorays,
        ),
        step(
            "build-rings",
            format!(
                "build R1 ({n} vnodes ro on {from}), R2 (mapped to {to}, ro), R3 (R2 writable) and import them into IMGAPI"
            ),
            vec![],
            A::BuildRings,
        ),
    ];
    if job.approval {
        steps.push(step(
            "approval",
            "wait for `tritonctl approve` before the critical section".into(),
            vec![],
            A::Approval,
        ));
    }
    steps.extend([
        step("take-dump-lock", format!("create /pg_dump_lock on {from}"), vec![from.clone()], A::TakeDumpLock),
        step("mark-ro", format!("roll out R1 ({n} vnodes read-only) to every electric-moray, verified through /status"), vec![from.clone()], A::RollOutRing { stage: RingStage::R1 }),
        step("sentinel", "write a sentinel row after the read-only point; see it on every new peer".into(), both.clone(), A::Sentinel),
        step("detach-peers", format!("detach the new peers into {to}, first cluster state frozen \"{reason}\""), both.clone(), A::DetachPeers),
        step(PNR_STEP, format!("POINT OF NO RETURN: roll out R2 ({n} vnodes on {to}, read-only) to every electric-moray, verified"), both.clone(), A::RollOutRing { stage: RingStage::R2 }),
        step("mark-rw", "roll out R3 (moved vnodes writable) to every electric-moray, verified".into(), vec![to.clone()], A::RollOutRing { stage: RingStage::R3 }),
        step("release-dump-lock", format!("delete /pg_dump_lock on {from}"), vec![from.clone()], A::ReleaseDumpLock),
        step("cleanup", format!("delete the {n} moved vnodes' rows on {from} and every other vnode's rows on {to}"), both.clone(), A::Cleanup),
        step("verify-counts", "count rows per vnode: nothing left where it is no longer owned".into(), both.clone(), A::VerifyCounts),
        step("unfreeze", format!("lift the freezes \"{reason}\" (ours only)"), both.clone(), A::Unfreeze),
        step("release-region-lock", "release the region lock".into(), vec![], A::ReleaseRegionLock),
    ]);
    Operation::new(&job.op_id, "shard-reshard", &format!("{from}->{to}"), steps)
}

/// The ring of a stage, from the live ring R0.
pub fn stage_ring(live: &Ring, mv: &VnodeMove, stage: RingStage) -> Result<Ring, FashError> {
    let vnodes: Vec<u32> = mv.vnodes.iter().copied().collect();
    let mut ring = live.clone();
    if stage == RingStage::R0 {
        return Ok(ring);
    }
    ring.set_read_only(&vnodes, true)?;
    if stage == RingStage::R1 {
        return Ok(ring);
    }
    ring.remap_from(&pnode_of_shard(&mv.from), &vnodes, &pnode_of_shard(&mv.to))?;
    if stage == RingStage::R3 {
        ring.set_read_only(&vnodes, false)?;
    }
    Ok(ring)
}

/// The rows each side loses: the source its moved vnodes, the new shard
/// (a copy of the whole source) every vnode that did not move.
pub fn cleanup_targets(job: &MoveJob) -> [CleanupTarget; 2] {
    let moved = job.mv.vnodes.clone();
    let kept: BTreeSet<u32> = (0..job.vnode_count)
        .filter(|v| !moved.contains(v))
        .collect();
    [
        CleanupTarget {
            shard: job.mv.from.clone(),
            drop_vnodes: moved,
            vnode_count: job.vnode_count,
        },
        CleanupTarget {
            shard: job.mv.to.clone(),
            drop_vnodes: kept,
            vnode_count: job.vnode_count,
        },
    ]
}

/// Undo what the forward operation started, in reverse: R0 re-installed
/// and verified (vnodes writable on the old shard), the dump lock
/// released, the new morays and peers removed (and the new shard's state),
/// our freeze lifted, the region lock released. `None` once the point of
/// no return has started.
pub fn rollback_plan(
    job: &MoveJob,
    forward: &Operation<ReshardAction>,
) -> Option<Operation<ReshardAction>> {
    use ReshardAction as A;
    if !forward.status.can_roll_back() {
        return None;
    }
    let started = |pred: &dyn Fn(&ReshardAction) -> bool| {
        forward
            .status
            .steps
            .iter()
            .zip(&forward.actions)
            .any(|(s, a)| s.state != StepState::Pending && pred(a))
    };
    let (from, to) = (job.mv.from.clone(), job.mv.to.clone());
    let mut steps = Vec::new();
    if started(&|a| matches!(a, A::RollOutRing { .. })) {
        steps.push(step("rollback-ring", format!("re-install R0 ({}) on every electric-moray, verified: the vnodes writable on {from} again", job.original_image), vec![from.clone()], A::RollOutRing { stage: RingStage::R0 }));
    }
    if started(&|a| matches!(a, A::TakeDumpLock)) {
        steps.push(step(
            "rollback-release-dump-lock",
            format!("delete /pg_dump_lock on {from}"),
            vec![from.clone()],
            A::ReleaseDumpLock,
        ));
    }
    if started(&|a| matches!(a, A::ProvisionMorays)) {
        steps.push(step(
            "rollback-remove-morays",
            format!("delete the morays provisioned for {to}"),
            vec![to.clone()],
            A::RemoveMorays,
        ));
    }
    if started(&|a| matches!(a, A::AddPeers)) {
        steps.push(step(
            "rollback-remove-peers",
            format!("delete the new peers (and {to}'s cluster state if ours)"),
            vec![from.clone(), to.clone()],
            A::RemovePeers,
        ));
    }
    if started(&|a| matches!(a, A::FreezeSource)) {
        steps.push(step(
            "rollback-unfreeze",
            format!("lift our freeze of {from}"),
            vec![from.clone()],
            A::Unfreeze,
        ));
    }
    if started(&|a| matches!(a, A::LockRegion)) {
        steps.push(step(
            "rollback-release-region-lock",
            "release the region lock".into(),
            vec![],
            A::ReleaseRegionLock,
        ));
    }
    Some(Operation::new(
        &format!("{}-rollback", job.op_id),
        "shard-reshard-rollback",
        &forward.status.target,
        steps,
    ))
}
