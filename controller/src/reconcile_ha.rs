//! The HeadnodeSet reconcile, manatee part: grow the `sdc` shard to one
//! peer per `spec.haServices.manatee` server (`sdcadm post-setup
//! ha-manatee`, research/manatee.md §7.3).
//!
//! Why the HeadnodeSet owns it and not the ManateeVersion: how many peers a
//! shard has and on which servers is placement, which the HeadnodeSet
//! declares (DESIGN.md: the HeadnodeSet reconciler covers ha-binder,
//! ha-manatee and ha-moray); a ManateeVersion only says which image the
//! peers run and exists for DCs that never change their layout. The two
//! never act on a shard at once: both take the shard's lock
//! ([`crate::shard_lock`]) before an operation starts. A one-peer shard a
//! ManateeVersion upgrades while a HeadnodeSet grows it therefore gets one
//! operation after the other, whichever took the lock first.
//!
//! Binder and moray placement are not handled here yet.

use std::time::Duration;

use crds::status::OperationPhase;
use crds::{ConditionStatus, ConditionType, Document, Kind};
use reconcilers::clock::rfc3339;
use reconcilers::manatee_ha::{HaAct, HaAction, HaPlan, HaRunner, plan_ha};
use reconcilers::operation::{Advance, Operation, advance};

use crate::reconcile::{Context, StoreJournal, journal_dir, load_journals_of};
use crate::runtime::events::Event;
use crate::runtime::queue::Action;

/// The Triton manatee shard a HeadnodeSet places.
pub const SDC_SHARD: &str = "sdc";

fn new_op_id(name: &str, generation: i64) -> String {
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!("ha-{name}-sdc-g{generation}-{}", &short[..8])
}

/// Reconcile one HeadnodeSet's manatee placement.
pub async fn reconcile_headnodes<W: HaAct>(cx: &Context<W>, name: &str) -> Result<Action, String> {
    let Some(Document::HeadnodeSet(doc)) = cx
        .store
        .get(Kind::HeadnodeSet, name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Action::AwaitChange);
    };
    let generation = doc.metadata.generation.unwrap_or(1);
    let object = format!("HeadnodeSet/{name}");
    let now = || rfc3339(cx.clock.now());
    let mut status = doc.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let dir = journal_dir(Kind::HeadnodeSet, name);
    cx.coord().mkdirp(&dir).await.map_err(|e| e.to_string())?;
    let shard = SDC_SHARD;

    // `tritonctl pause headnodeset/NAME` holds the HA setup too.
    let marker = crate::pause::get(cx.coord(), Kind::HeadnodeSet, name)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(why) = crate::pause::paused_message(false, marker.as_ref()) {
        status.set_condition(
            ConditionType::Paused,
            ConditionStatus::True,
            "Paused",
            &why,
            &now(),
        );
        cx.store
            .write_status(Kind::HeadnodeSet, name, &status, cx.fence.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Action::AwaitChange);
    }
    status.set_condition(
        ConditionType::Paused,
        ConditionStatus::False,
        "Running",
        "",
        &now(),
    );
    let journals = load_journals_of::<HaAction>(cx.coord(), Kind::HeadnodeSet, name).await?;
    let resumed = journals
        .into_iter()
        .find(|(s, op, _)| s == shard && !op.is_finished())
        .map(|(_, op, _)| op);
    let mut op: Operation<HaAction> = match resumed {
        Some(op) => op,
        None => {
            let obs = cx.world.observe(shard).await?;
            let desired = cx
                .world
                .resolve_servers(&doc.spec.ha_services.manatee)
                .await?;
            match plan_ha(&obs, &desired, "manatee", &new_op_id(name, generation)) {
                HaPlan::UpToDate => {
                    crate::shard_lock::release(cx.coord(), cx.fence.as_ref(), shard, &object)
                        .await?;
                    let t = now();
                    status.set_condition(
                        ConditionType::Ready,
                        ConditionStatus::True,
                        "Converged",
                        &format!(
                            "shard {shard} has a peer on each of {}",
                            doc.spec.ha_services.manatee.join(", ")
                        ),
                        &t,
                    );
                    status.set_condition(
                        ConditionType::Progressing,
                        ConditionStatus::False,
                        "Idle",
                        "",
                        &t,
                    );
                    status.set_condition(
                        ConditionType::Blocked,
                        ConditionStatus::False,
                        "NotBlocked",
                        "",
                        &t,
                    );
                    write(cx, name, &status).await?;
                    return Ok(Action::RequeueAfter(Duration::from_secs(60)));
                }
                HaPlan::Refused(r) => {
                    block(cx, &object, &mut status, r.reason.as_str(), &r.message).await;
                    write(cx, name, &status).await?;
                    return Ok(Action::RequeueAfter(Duration::from_secs(5)));
                }
                HaPlan::Grow(op) => {
                    if let Some(other) =
                        crate::shard_lock::acquire(cx.coord(), cx.fence.as_ref(), shard, &object)
                            .await?
                    {
                        let message =
                            format!("{other} is working on shard {shard}; waiting for it");
                        block(
                            cx,
                            &object,
                            &mut status,
                            reconcilers::error::RefusalReason::ShardLocked.as_str(),
                            &message,
                        )
                        .await;
                        write(cx, name, &status).await?;
                        return Ok(Action::RequeueAfter(Duration::from_secs(2)));
                    }
                    cx.event(
                        Event::normal(
                            &object,
                            "OperationPlanned",
                            format!("{shard}: HA setup, {} steps", op.status.steps.len()),
                        )
                        .with_operation(op.status.id.clone()),
                    )
                    .await;
                    op
                }
            }
        }
    };

    let runner = HaRunner {
        world: &cx.world,
        shard: shard.to_string(),
        max_lag_seconds: 10.0,
        instance_up_timeout: Duration::from_secs(300),
        catch_up_timeout: Duration::from_secs(900),
        window: None,
        clock: cx.clock.as_ref(),
    };
    let journal = StoreJournal {
        cx,
        kind: Kind::HeadnodeSet,
        name: name.to_string(),
        path: format!("{dir}/{shard}"),
        status: std::sync::Mutex::new(status.clone()),
        last: std::sync::Mutex::new(Some(op.clone())),
    };
    let r = advance(&mut op, &runner, &journal, cx.clock.as_ref(), cx.poll)
        .await
        .map_err(|e| e.to_string())?;
    let mut status = journal.status.lock().unwrap().clone();
    let t = now();
    let action = match r {
        Advance::Completed => {
            crate::shard_lock::release(cx.coord(), cx.fence.as_ref(), shard, &object).await?;
            cx.event(
                Event::normal(
                    &object,
                    "OperationSucceeded",
                    format!("{shard}: HA setup done"),
                )
                .with_operation(op.status.id.clone()),
            )
            .await;
            // Requeue at once: the next pass observes and reports Ready.
            Action::RequeueAfter(Duration::from_millis(10))
        }
        Advance::Waiting { after, message, .. } => {
            status.set_condition(
                ConditionType::Progressing,
                ConditionStatus::True,
                "OperationRunning",
                &format!("{shard}: {message}"),
                &t,
            );
            Action::RequeueAfter(after.max(Duration::from_millis(10)))
        }
        Advance::Blocked {
            reason, message, ..
        } => {
            let message =
                crate::reconcile::with_retry_hint(Kind::HeadnodeSet, name, &reason, message);
            block(cx, &object, &mut status, &reason.to_string(), &message).await;
            Action::RequeueAfter(Duration::from_secs(5))
        }
    };
    if op.status.phase != OperationPhase::Succeeded {
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "Converging",
            &format!("shard {shard}: HA setup in progress"),
            &t,
        );
    }
    status.operation = Some(op.status.clone());
    write(cx, name, &status).await?;
    Ok(action)
}

async fn write<W>(cx: &Context<W>, name: &str, status: &crds::Status) -> Result<(), String> {
    cx.store
        .write_status(Kind::HeadnodeSet, name, status, cx.fence.as_ref())
        .await
        .map_err(|e| e.to_string())
}

async fn block<W>(
    cx: &Context<W>,
    object: &str,
    status: &mut crds::Status,
    reason: &str,
    message: &str,
) {
    let was = status.is_true(ConditionType::Blocked);
    status.set_condition(
        ConditionType::Blocked,
        ConditionStatus::True,
        reason,
        message,
        &rfc3339(cx.clock.now()),
    );
    if !was {
        cx.event(Event::warning(
            object,
            reason.to_string(),
            message.to_string(),
        ))
        .await;
    }
}
