//! The controller side of `strategy: transplant` (and of `auto` when it
//! resolves to it): resolve the strategy per shard from the image
//! manifests, refuse a rolling upgrade across manatee majors, and drive the
//! transplant journal with its rollback, writing status and events.
//!
//! Called from [`super::manatee_version`] when the
//! context carries a [`TransplantAct`]; shards that resolve to rolling
//! stay with the rolling reconciler.

use std::time::Duration;

use async_trait::async_trait;
use coord::Op;
use crds::manatee::ManateeVersion;
use crds::status::OperationPhase;
use crds::{Kind, Status};
use reconcilers::error::{RefusalReason, WorldError};
use reconcilers::manatee::ManateeAct;
use reconcilers::transplant::{
    Outcome as Driven, Resolved, TransplantAct, TransplantJournal, TransplantRunner,
    TransplantStore, drive, manatee_major, plan_transplant, resolve_strategy,
};

use super::context::Context;
use super::decisions::CANCEL_STEP;
use super::journal::load_transplant as load;
use super::outcome::{Block, Note, Outcome, ReconcileError};
use crate::layout::{status_path, transplant_journal_path};
use crate::runtime::events::{Event, EventType};
use crate::store::{Fence, upsert_op};

struct StatusStore<'a, W> {
    cx: &'a Context<W>,
    name: String,
    path: String,
    status: std::sync::Mutex<Status>,
}

#[async_trait]
impl<W: Send + Sync> TransplantStore for StatusStore<'_, W> {
    async fn save(&self, j: &TransplantJournal) -> Result<(), WorldError> {
        let coord = self.cx.store.coord();
        let mut status = self.status.lock().unwrap().clone();
        let mut op = match &j.rollback {
            Some(rb) if j.forward.status.phase == OperationPhase::RollingBack => rb.status.clone(),
            _ => j.forward.status.clone(),
        };
        // `describe` shows the exact command of a stop past the point of no return.
        op.message = op.message.map(|m| {
            m.replace(
                "manateeversion/<name>",
                &format!("manateeversion/{}", self.name),
            )
        });
        super::journal::operation_conditions(&mut status, &op, &self.cx.now());
        status.operation = Some(op);
        let mut ops: Vec<Op> = self.cx.fence.iter().map(Fence::op).collect();
        ops.push(
            upsert_op(
                coord.as_ref(),
                &self.path,
                serde_json::to_vec(j).expect("journal serializes"),
            )
            .await?,
        );
        ops.push(
            upsert_op(
                coord.as_ref(),
                &status_path(Kind::ManateeVersion, &self.name),
                serde_json::to_vec(&status).expect("status serializes"),
            )
            .await?,
        );
        coord.multi(ops).await.map_err(|e| {
            WorldError::from(e)
                .context("saving the transplant journal (is this controller still the leader?)")
        })?;
        *self.status.lock().unwrap() = status;
        Ok(())
    }
}

/// Handle the transplant part of a ManateeVersion. `None` when every
/// shard resolves to rolling (the rolling reconcile goes on).
pub async fn reconcile<W: ManateeAct>(
    cx: &Context<W>,
    tw: &dyn TransplantAct,
    name: &str,
    doc: &ManateeVersion,
    status: &mut Status,
) -> Result<Option<Outcome>, ReconcileError> {
    let spec = &doc.spec;
    let object = format!("ManateeVersion/{name}");
    let image = cx.world.image(&spec.image.uuid).await?;
    let target = image.as_ref().and_then(manatee_major);

    let mut transplant_shards = Vec::new();
    let mut refused = None;
    for shard in &spec.shards {
        let path = transplant_journal_path(name, shard);
        if let Some(j) = load(cx.store.coord(), &path).await?
            && !j.forward.is_finished()
        {
            transplant_shards.push(shard.clone()); // in flight: finish it
            continue;
        }
        let obs = cx.world.observe(shard).await?;
        let mut running = Vec::new();
        for p in &obs.peers {
            if let Some(i) = cx.world.image(&p.image).await?
                && let Some(m) = manatee_major(&i)
            {
                running.push(m);
            }
        }
        match resolve_strategy(spec.strategy, &running, target, &spec.image.uuid) {
            Ok(Resolved::Rolling) => {}
            Ok(Resolved::Transplant) => transplant_shards.push(shard.clone()),
            Err(reconcilers::error::Refusal { reason, message }) => {
                refused.get_or_insert((shard.clone(), reason, message));
            }
        }
    }
    if let Some((shard, reason, message)) = refused {
        return Ok(Some(Outcome::Blocked {
            ready: Note::new("Refused", format!("{shard}: preflight refused ({reason})")),
            block: Block::warning(reason.as_str(), format!("{shard}: {message}")),
            after: None,
        }));
    }
    let Some(shard) = transplant_shards.first().cloned() else {
        return Ok(None);
    };
    let transplanting = |message: String| Note::new("Transplanting", message);

    // One disruptive operation per shard, across documents and strategies:
    // an HA setup must not grow the shard while it is in one-node-write mode.
    let holder = object.clone();
    if let Some(other) =
        crate::shard_lock::acquire(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?
    {
        let message = format!("{shard}: {other} is working on this shard; waiting for it");
        return Ok(Some(Outcome::Blocked {
            ready: transplanting(message.clone()),
            block: Block {
                note: Note::new(RefusalReason::ShardLocked.as_str(), message),
                event: Some(EventType::Normal),
            },
            after: Some(Duration::from_secs(5)),
        }));
    }

    // One shard at a time: a transplant is a long write outage per shard.
    let path = transplant_journal_path(name, &shard);
    let parent = path.rsplit_once('/').map_or(path.as_str(), |(p, _)| p);
    cx.store.coord().mkdirp(parent).await?;
    let mut j = match load(cx.store.coord(), &path).await? {
        Some(j) if !j.forward.is_finished() => j,
        _ => {
            let obs = tw.observe(&shard).await?;
            let mut majors = std::collections::BTreeMap::new();
            for z in &obs.zones {
                if let Some(i) = cx.world.image(&z.image).await?
                    && let Some(m) = manatee_major(&i)
                {
                    majors.insert(z.image.clone(), m);
                }
            }
            if let Some(m) = target {
                majors.insert(spec.image.uuid.clone(), m);
            }
            let short = uuid::Uuid::new_v4().simple().to_string();
            let op_id = format!("mv-{name}-{shard}-transplant-{}", &short[..8]);
            match plan_transplant(spec, &obs, &majors, &op_id) {
                Ok(forward) => {
                    cx.event(
                        Event::normal(
                            &object,
                            "OperationPlanned",
                            format!(
                                "{shard}: transplant, {} steps, point of no return at step {}",
                                forward.status.steps.len(),
                                forward.status.point_of_no_return.map_or(0, |p| p + 1)
                            ),
                        )
                        .with_operation(op_id.clone()),
                    )
                    .await;
                    TransplantJournal::new(forward)
                }
                Err(reconcilers::error::Refusal { reason, message }) => {
                    let message = format!("{shard}: {message}");
                    return Ok(Some(Outcome::Blocked {
                        ready: transplanting(message.clone()),
                        block: Block {
                            note: Note::new(reason.as_str(), message),
                            event: None,
                        },
                        after: Some(Duration::from_secs(30)),
                    }));
                }
            }
        }
    };
    let cancel = tw.approved(&j.forward.status.id, CANCEL_STEP).await?;
    let store = StatusStore {
        cx,
        name: name.to_string(),
        path,
        status: std::sync::Mutex::new(status.clone()),
    };
    store.save(&j).await?;
    let runner = TransplantRunner {
        world: tw,
        shard: shard.clone(),
        step_timeout: crds::common::parse_duration(&spec.health.instance_up_timeout)
            .unwrap_or(Duration::from_secs(300))
            + crds::common::parse_duration(&spec.health.catch_up_timeout)
                .unwrap_or(Duration::from_secs(900)),
        send_timeout: Duration::from_secs(6 * 3600),
        clock: cx.clock.as_ref(),
    };
    let (stops_before, decisions_before) = (j.stops, j.decisions.len());
    let outcome = drive(&mut j, &runner, &store, cancel, cx.poll).await?;
    // Decisions past the point of no return are events, both ways.
    for d in &j.decisions[decisions_before.min(j.decisions.len())..] {
        cx.event(
            Event::normal(&object, "DecisionApproved", format!("{shard}: {d}"))
                .with_operation(j.forward.status.id.clone()),
        )
        .await;
    }
    if j.stops > stops_before
        && let Some(stop) = &j.stopped
    {
        cx.event(
            Event::warning(
                &object,
                "PastPointOfNoReturn",
                format!(
                    "{shard}: stop {} at step {} ({}): {}; nothing runs until `tritonctl approve {object} --option resume|reverse-transplant|restore-backup`",
                    stop.seq,
                    stop.step + 1,
                    stop.name,
                    stop.cause
                ),
            )
            .with_operation(j.forward.status.id.clone()),
        )
        .await;
    }
    *status = store.status.lock().unwrap().clone();
    if matches!(outcome, Driven::Completed | Driven::RolledBack { .. }) {
        crate::shard_lock::release(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?;
    }
    let progress = format!(
        "{shard}: transplant {:?}; rollback {}",
        j.forward.status.phase,
        if j.forward.status.can_roll_back() {
            "still possible"
        } else {
            "no longer automatic (past the point of no return)"
        }
    );
    let blocked = |reason: String, message: String, after: u64| Outcome::Blocked {
        ready: transplanting(progress.clone()),
        block: Block {
            note: Note::new(reason, message),
            event: None,
        },
        after: Some(Duration::from_secs(after)),
    };
    Ok(Some(match outcome {
        Driven::Completed if transplant_shards.len() > 1 => Outcome::Progressing {
            ready: transplanting(progress.clone()),
            running: format!("{shard}: transplant done; the next shard follows"),
            awaiting_approval: Vec::new(),
            blocked: None,
            after: Duration::from_millis(10),
        },
        Driven::Completed => Outcome::Ready {
            message: progress,
            after: Duration::from_secs(60),
        },
        Driven::RolledBack { why } => {
            cx.event(
                Event::warning(&object, "RolledBack", format!("{shard}: {why}"))
                    .with_operation(j.forward.status.id.clone()),
            )
            .await;
            blocked(
                "RolledBack".to_string(),
                format!(
                    "{shard}: the transplant was rolled back ({why}); the shard is on its v1 image. Fix the cause and re-apply to try again"
                ),
                60,
            )
        }
        Driven::Waiting { after, .. } => Outcome::Progressing {
            ready: transplanting(progress.clone()),
            running: format!("{shard}: transplant"),
            awaiting_approval: Vec::new(),
            blocked: None,
            after,
        },
        Driven::Blocked { reason, message } => blocked(
            reason.to_string(),
            format!("{shard}: {message}")
                .replace("manateeversion/<name>", &format!("manateeversion/{name}")),
            5,
        ),
    }))
}
