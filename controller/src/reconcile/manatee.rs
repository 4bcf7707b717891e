//! A ManateeVersion's rolling upgrade: plan each shard with the pure
//! `reconcilers::manatee::plan_shard_with`, start the operations
//! `reconcilers::rollout::schedule` says may start (canary, parallelism;
//! then the shard's lock), drive them concurrently
//! with the engine, and report what happened as an [`Outcome`].

use std::collections::BTreeMap;
use std::time::Duration;

use coord::{Expect, Op};
use crds::manatee::ManateeVersion;
use crds::status::OperationPhase;
use crds::{Kind, Status};
use reconcilers::error::{BlockReason, RefusalReason, WaitReason};
use reconcilers::manatee::{ManateeAct, ManateeAction, ManateeRunner, ShardPlan, plan_shard_with};
use reconcilers::operation::{Advance, Operation, advance};
use reconcilers::rollout::{self, Decision, Planned};

use super::context::Context;
use super::journal::{StoreJournal, load_journals, with_retry_hint};
use super::outcome::{Block, Note, Outcome, ReconcileError};
use crate::layout::journal_path;
use crate::runtime::events::Event;
use crate::store::Fence;

fn new_op_id(name: &str, shard: &str, generation: i64) -> String {
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "mv-{name}-{}-g{generation}-{}",
        shard.split('.').next().unwrap_or(shard),
        &short[..8]
    )
}

/// The zones of this shard's operation that was cancelled for a re-plan.
fn replanned_zones(
    journals: &[(String, Operation<ManateeAction>, i32)],
    shard: &str,
) -> Vec<String> {
    journals
        .iter()
        .filter(|(s, op, _)| s == shard && op.status.phase == OperationPhase::Cancelled)
        .flat_map(|(_, op, _)| op.actions.iter())
        .filter_map(|a| match a {
            ManateeAction::Reprovision { zone, .. } | ManateeAction::Rebuild { zone } => {
                Some(zone.clone())
            }
            _ => None,
        })
        .collect()
}

/// Reconcile one ManateeVersion's rolling shards.
pub async fn reconcile<W: ManateeAct>(
    cx: &Context<W>,
    name: &str,
    doc: &ManateeVersion,
    status: &mut Status,
) -> Result<Outcome, ReconcileError> {
    let spec = &doc.spec;
    let generation = doc.metadata.generation.unwrap_or(1);
    let object = format!("ManateeVersion/{name}");

    let journals = load_journals(cx.coord(), Kind::ManateeVersion, name).await?;
    let mut active: Vec<(String, Operation<ManateeAction>)> = journals
        .iter()
        .filter(|(_, op, _)| !op.is_finished())
        .map(|(shard, op, _)| (shard.clone(), op.clone()))
        .collect();
    let mut up_to_date = Vec::new();
    let mut refused: Vec<(String, BlockReason, String)> = Vec::new();
    let image = cx.world.image(&spec.image.uuid).await?;
    let holder = object.clone();
    // Plan every shard without an operation in flight ...
    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    let mut upgrades: BTreeMap<String, Operation<ManateeAction>> = BTreeMap::new();
    for shard in rollout::order(spec) {
        if active.iter().any(|(s, _)| s == &shard) {
            continue;
        }
        let obs = cx.world.observe(&shard).await?;
        // Zones our re-planned operation on this shard worked on: a peer a
        // takeover deposed meanwhile may be rebuilt (plan_shard_with).
        let ours = replanned_zones(&journals, &shard);
        match plan_shard_with(
            spec,
            &obs,
            image.as_ref(),
            &new_op_id(name, &shard, generation),
            &ours,
        ) {
            ShardPlan::UpToDate => {
                crate::shard_lock::release(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?;
                planned.insert(shard.clone(), Planned::UpToDate);
                up_to_date.push(shard);
            }
            ShardPlan::Refused(r) => {
                planned.insert(shard.clone(), Planned::Refused);
                refused.push((shard, r.reason.into(), r.message));
            }
            ShardPlan::Upgrade(op) => {
                planned.insert(shard.clone(), Planned::Upgrade);
                upgrades.insert(shard, op);
            }
        }
    }
    // ... then start what the rollout schedule (order, canary, parallelism)
    // says may start. A shard whose lock another document holds is refused
    // and the schedule asked again, so its slot goes to the next shard.
    loop {
        let in_flight: Vec<String> = active.iter().map(|(s, _)| s.clone()).collect();
        let start = rollout::schedule(spec, &in_flight, &planned)
            .into_iter()
            .find(|s| s.decision == Decision::StartNow);
        let Some(rollout::Scheduled { shard, .. }) = start else {
            break;
        };
        let Some(op) = upgrades.remove(&shard) else {
            planned.insert(shard, Planned::Unplanned);
            continue;
        };
        // One disruptive operation per shard, across documents.
        if let Some(other) =
            crate::shard_lock::acquire(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?
        {
            planned.insert(shard.clone(), Planned::Refused);
            refused.push((
                shard,
                RefusalReason::ShardLocked.into(),
                format!("{other} is working on this shard; waiting for it"),
            ));
            continue;
        }
        cx.event(
            Event::normal(
                &object,
                "OperationPlanned",
                format!("{shard}: {} steps", op.status.steps.len()),
            )
            .with_operation(op.status.id.clone()),
        )
        .await;
        planned.remove(&shard);
        active.push((shard, op));
    }

    // Drive every active operation (one per shard) concurrently.
    let runs = active.into_iter().map(|(shard, mut op)| {
        let status = status.clone();
        async move {
            let runner = ManateeRunner {
                world: &cx.world,
                shard: shard.clone(),
                max_lag_seconds: spec.health.max_replication_lag_seconds as f64,
                instance_up_timeout: crds::common::parse_duration(&spec.health.instance_up_timeout)
                    .unwrap_or(Duration::from_secs(300)),
                catch_up_timeout: crds::common::parse_duration(&spec.health.catch_up_timeout)
                    .unwrap_or(Duration::from_secs(900)),
                window: spec.rollout.maintenance_window.clone(),
                clock: cx.clock.as_ref(),
            };
            let journal =
                StoreJournal::new(cx, Kind::ManateeVersion, name, &shard, status, op.clone());
            let r = advance(&mut op, &runner, &journal, cx.clock.as_ref(), cx.poll).await;
            (shard, op, r)
        }
    });
    let results = futures::future::join_all(runs).await;

    let mut requeue: Option<Duration> = None;
    let mut blocked = Vec::new();
    let mut waiting_approval = Vec::new();
    let mut progressing = Vec::new();
    for (shard, op, r) in results {
        match r? {
            Advance::Completed => {
                crate::shard_lock::release(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?;
                cx.event(
                    Event::normal(
                        &object,
                        "OperationSucceeded",
                        format!("{shard} runs {}", spec.image.uuid),
                    )
                    .with_operation(op.status.id.clone()),
                )
                .await;
                up_to_date.push(shard);
                requeue = Some(Duration::ZERO);
            }
            Advance::Waiting {
                after,
                reason,
                message,
            } => {
                if reason == WaitReason::Approval {
                    waiting_approval.push(format!("{shard}: {message}"));
                }
                progressing.push(shard);
                requeue = Some(requeue.map_or(after, |r| r.min(after)));
            }
            Advance::Blocked {
                reason: BlockReason::Replan,
                message,
                ..
            } => {
                // The shard changed under us (takeover, promotion): drop the
                // rest of this plan and plan again from what is there now.
                cx.event(
                    Event::normal(&object, "Replanning", format!("{shard}: {message}"))
                        .with_operation(op.status.id.clone()),
                )
                .await;
                // A freeze this operation made protects a primary step that
                // will not happen now: lift it (only ours, by its reason).
                cx.world
                    .unfreeze_own(&shard, &reconcilers::manatee::freeze_reason(&op.status.id))
                    .await?;
                let mut op = op;
                op.status.phase = OperationPhase::Cancelled;
                op.status.message = Some(format!("replanned: {message}"));
                op.status.finished_at = Some(cx.now());
                let data = serde_json::to_vec(&op).expect("journal serializes");
                let mut ops: Vec<Op> = cx.fence.iter().map(Fence::op).collect();
                ops.push(Op::set(
                    journal_path(Kind::ManateeVersion, name, &shard),
                    data,
                    Expect::Any,
                ));
                cx.coord().multi(ops).await?;
                progressing.push(format!("{shard} (replanning)"));
                requeue = Some(Duration::ZERO);
            }
            Advance::Blocked {
                reason, message, ..
            } => {
                let message = with_retry_hint(Kind::ManateeVersion, name, &reason, message);
                blocked.push((shard, reason, message))
            }
        }
    }
    blocked.extend(refused);

    // Keep the latest operation visible in status (journals hold the rest).
    if let Ok(j) = load_journals(cx.coord(), Kind::ManateeVersion, name).await
        && let Some((_, op, _)) = j
            .iter()
            .max_by_key(|(_, op, _)| op.status.started_at.clone())
    {
        status.operation = Some(op.status.clone());
    }

    let all = spec.shards.len();
    let ready_message = format!(
        "{}/{all} shard(s) on {}",
        up_to_date.len(),
        spec.image.version.as_deref().unwrap_or(&spec.image.uuid)
    );
    let block = blocked.first().map(|(shard, reason, message)| {
        Block::warning(reason.to_string(), format!("{shard}: {message}"))
    });
    let converging = Note::new("Converging", ready_message.clone());
    Ok(if up_to_date.len() == all && progressing.is_empty() {
        Outcome::Ready {
            message: ready_message,
            after: requeue.unwrap_or(Duration::from_secs(60)),
        }
    } else if !progressing.is_empty() || block.is_none() {
        Outcome::Progressing {
            ready: converging,
            running: progressing.join(", "),
            awaiting_approval: waiting_approval,
            blocked: block,
            after: requeue.unwrap_or(Duration::from_secs(60)),
        }
    } else {
        Outcome::Blocked {
            ready: converging,
            block: block.expect("blocked"),
            after: Some(requeue.unwrap_or(Duration::from_secs(5))),
        }
    })
}
