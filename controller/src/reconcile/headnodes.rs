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

use async_trait::async_trait;
use crds::headnode::HeadnodeSetSpec;
use crds::meta::Resource;
use crds::{Document, Kind, Status};
use reconcilers::error::RefusalReason;
use reconcilers::manatee_ha::{HaAct, HaAction, HaPlan, HaRunner, plan_ha};
use reconcilers::operation::{Advance, Operation, advance};

use super::context::Context;
use super::finish::run;
use super::journal::{StoreJournal, load_journals_of, with_retry_hint};
use super::outcome::{Block, KindReconcile, Note, Outcome, ReconcileError};
use crate::runtime::events::Event;
use crate::runtime::queue::Action;

/// The Triton manatee shard a HeadnodeSet places.
pub const SDC_SHARD: &str = "sdc";

fn new_op_id(name: &str, generation: i64) -> String {
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!("ha-{name}-sdc-g{generation}-{}", &short[..8])
}

/// The HeadnodeSet reconciler.
pub struct HeadnodesKind;

#[async_trait]
impl<W: HaAct> KindReconcile<W> for HeadnodesKind {
    type Spec = HeadnodeSetSpec;
    const KIND: Kind = Kind::HeadnodeSet;

    fn typed(doc: Document) -> Option<Resource<HeadnodeSetSpec>> {
        match doc {
            Document::HeadnodeSet(d) => Some(d),
            _ => None,
        }
    }

    async fn reconcile(
        &self,
        cx: &Context<W>,
        name: &str,
        doc: &Resource<HeadnodeSetSpec>,
        status: &mut Status,
    ) -> Result<Outcome, ReconcileError> {
        reconcile(cx, name, doc, status).await
    }
}

/// Reconcile one HeadnodeSet's manatee placement.
pub async fn reconcile_headnodes<W: HaAct>(
    cx: &Context<W>,
    name: &str,
) -> Result<Action, ReconcileError> {
    run(cx, &HeadnodesKind, name).await
}

async fn reconcile<W: HaAct>(
    cx: &Context<W>,
    name: &str,
    doc: &Resource<HeadnodeSetSpec>,
    status: &mut Status,
) -> Result<Outcome, ReconcileError> {
    let generation = doc.metadata.generation.unwrap_or(1);
    let object = format!("HeadnodeSet/{name}");
    let shard = SDC_SHARD;
    let converging =
        |what: &str| Note::new("Converging", format!("shard {shard}: HA setup {what}"));
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
                    return Ok(Outcome::Ready {
                        message: format!(
                            "shard {shard} has a peer on each of {}",
                            doc.spec.ha_services.manatee.join(", ")
                        ),
                        after: Duration::from_secs(60),
                    });
                }
                HaPlan::Refused(r) => {
                    return Ok(Outcome::Blocked {
                        ready: converging("refused"),
                        block: Block::warning(r.reason.as_str(), r.message),
                        after: Some(Duration::from_secs(5)),
                    });
                }
                HaPlan::Grow(op) => {
                    if let Some(other) =
                        crate::shard_lock::acquire(cx.coord(), cx.fence.as_ref(), shard, &object)
                            .await?
                    {
                        let message =
                            format!("{other} is working on shard {shard}; waiting for it");
                        return Ok(Outcome::Blocked {
                            ready: converging("waits for the shard's lock"),
                            block: Block::warning(RefusalReason::ShardLocked.as_str(), message),
                            after: Some(Duration::from_secs(2)),
                        });
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
    let journal = StoreJournal::new(
        cx,
        Kind::HeadnodeSet,
        name,
        shard,
        status.clone(),
        op.clone(),
    );
    let r = advance(&mut op, &runner, &journal, cx.clock.as_ref(), cx.poll).await?;
    *status = journal.status();
    status.operation = Some(op.status.clone());
    Ok(match r {
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
            Outcome::Progressing {
                ready: converging("done; checking the shard"),
                running: format!("{shard}: HA setup done"),
                awaiting_approval: Vec::new(),
                blocked: None,
                after: Duration::from_millis(10),
            }
        }
        Advance::Waiting { after, message, .. } => Outcome::Progressing {
            ready: converging("in progress"),
            running: format!("{shard}: {message}"),
            awaiting_approval: Vec::new(),
            blocked: None,
            after,
        },
        Advance::Blocked {
            reason, message, ..
        } => {
            let message = with_retry_hint(Kind::HeadnodeSet, name, &reason, message);
            Outcome::Blocked {
                ready: converging("in progress"),
                block: Block::warning(reason.to_string(), message),
                after: Some(Duration::from_secs(5)),
            }
        }
    })
}
