//! The controller side of `strategy: transplant` (and of `auto` when it
//! resolves to it): resolve the strategy per shard from the image
//! manifests, refuse a rolling upgrade across manatee majors, and drive the
//! transplant journal with its rollback, writing status and events.
//!
//! Called from `reconcile::reconcile_manatee` (a small hook) when the
//! context carries a [`TransplantAct`]; shards that resolve to rolling
//! stay with the rolling reconciler.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, Op};
use crds::status::OperationPhase;
use crds::{ConditionStatus, ConditionType, Document, Kind, Status};
use reconcilers::clock::rfc3339;
use reconcilers::error::{RefusalReason, WorldError};
use reconcilers::manatee::ManateeAct;
use reconcilers::transplant::{
    Outcome, Resolved, TransplantAct, TransplantJournal, TransplantRunner, TransplantStore, drive,
    manatee_major, plan_transplant, resolve_strategy,
};

use crate::reconcile::Context;
use crate::runtime::events::Event;
use crate::runtime::queue::Action;
use crate::store::{Fence, ROOT, status_path, upsert_op};

/// Where transplant journals live (apart from the rolling journals).
pub fn transplant_journal_path(name: &str, shard: &str) -> String {
    format!(
        "{ROOT}/transplants/{}/{name}/{shard}",
        Kind::ManateeVersion.short()
    )
}

/// `tritonctl approve <operation> cancel` asks for a rollback.
pub const CANCEL_STEP: &str = "cancel";

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

async fn load(
    cx_coord: &Arc<dyn coord::Coordination>,
    path: &str,
) -> Result<Option<TransplantJournal>, String> {
    match cx_coord.get(path).await {
        Ok((data, _)) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| format!("transplant journal {path}: {e}")),
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Handle the transplant part of a ManateeVersion. `None` when every
/// shard resolves to rolling (the rolling reconciler goes on).
pub async fn reconcile<W: ManateeAct>(
    cx: &Context<W>,
    tw: &dyn TransplantAct,
    name: &str,
) -> Result<Option<Action>, String> {
    let Some(Document::ManateeVersion(doc)) = cx
        .store
        .get(Kind::ManateeVersion, name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let spec = &doc.spec;
    let now = || rfc3339(cx.clock.now());
    let object = format!("ManateeVersion/{name}");
    let mut status = doc.status.clone().unwrap_or_default();
    status.observed_generation = doc.metadata.generation;
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
    let t = now();
    if let Some((shard, reason, message)) = refused {
        let was = status.is_true(ConditionType::Blocked);
        status.set_condition(
            ConditionType::Blocked,
            ConditionStatus::True,
            reason.as_str(),
            &format!("{shard}: {message}"),
            &t,
        );
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "Refused",
            &format!("{shard}: preflight refused ({reason})"),
            &t,
        );
        if !was {
            cx.event_pub(Event::warning(
                &object,
                reason.as_str(),
                format!("{shard}: {message}"),
            ))
            .await;
        }
        cx.store
            .write_status(Kind::ManateeVersion, name, &status, cx.fence.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Some(Action::AwaitChange));
    }
    let Some(shard) = transplant_shards.first().cloned() else {
        return Ok(None);
    };

    // One disruptive operation per shard, across documents and strategies:
    // an HA setup must not grow the shard while it is in one-node-write mode.
    let holder = object.clone();
    if let Some(other) =
        crate::shard_lock::acquire(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?
    {
        let message = format!("{shard}: {other} is working on this shard; waiting for it");
        if !status.is_true(ConditionType::Blocked) {
            cx.event_pub(Event::normal(&object, "ShardLocked", message.clone()))
                .await;
        }
        status.set_condition(
            ConditionType::Blocked,
            ConditionStatus::True,
            RefusalReason::ShardLocked.as_str(),
            &message,
            &t,
        );
        cx.store
            .write_status(Kind::ManateeVersion, name, &status, cx.fence.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Some(Action::RequeueAfter(Duration::from_secs(5))));
    }

    // One shard at a time: a transplant is a long write outage per shard.
    let path = transplant_journal_path(name, &shard);
    let parent = path.rsplit_once('/').map_or(path.as_str(), |(p, _)| p);
    cx.store
        .coord()
        .mkdirp(parent)
        .await
        .map_err(|e| e.to_string())?;
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
                    cx.event_pub(
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
                    status.set_condition(
                        ConditionType::Blocked,
                        ConditionStatus::True,
                        reason.as_str(),
                        &format!("{shard}: {message}"),
                        &t,
                    );
                    cx.store
                        .write_status(Kind::ManateeVersion, name, &status, cx.fence.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(Some(Action::RequeueAfter(Duration::from_secs(30))));
                }
            }
        }
    };
    let cancel = tw.approved(&j.forward.status.id, CANCEL_STEP).await?;
    let store = StatusStore {
        cx,
        name: name.to_string(),
        path,
        status: std::sync::Mutex::new(status),
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
        cx.event_pub(
            Event::normal(&object, "DecisionApproved", format!("{shard}: {d}"))
                .with_operation(j.forward.status.id.clone()),
        )
        .await;
    }
    if j.stops > stops_before
        && let Some(stop) = &j.stopped
    {
        cx.event_pub(
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
    let mut status = store.status.lock().unwrap().clone();
    let t = now();
    if matches!(outcome, Outcome::Completed | Outcome::RolledBack { .. }) {
        crate::shard_lock::release(cx.coord(), cx.fence.as_ref(), &shard, &holder).await?;
    }
    let (ready, blocked, requeue) = match &outcome {
        Outcome::Completed => (true, None, Duration::ZERO),
        Outcome::RolledBack { why } => {
            cx.event_pub(
                Event::warning(&object, "RolledBack", format!("{shard}: {why}"))
                    .with_operation(j.forward.status.id.clone()),
            )
            .await;
            (
                false,
                Some((
                    "RolledBack".to_string(),
                    format!(
                        "{shard}: the transplant was rolled back ({why}); the shard is on its v1 image. Fix the cause and re-apply to try again"
                    ),
                )),
                Duration::from_secs(60),
            )
        }
        Outcome::Waiting { after, .. } => (false, None, *after),
        Outcome::Blocked { reason, message } => (
            false,
            Some((
                reason.to_string(),
                format!("{shard}: {message}")
                    .replace("manateeversion/<name>", &format!("manateeversion/{name}")),
            )),
            Duration::from_secs(5),
        ),
    };
    status.set_condition(
        ConditionType::Ready,
        if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        if ready { "Converged" } else { "Transplanting" },
        &format!(
            "{shard}: transplant {:?}; rollback {}",
            j.forward.status.phase,
            if j.forward.status.can_roll_back() {
                "still possible"
            } else {
                "no longer automatic (past the point of no return)"
            }
        ),
        &t,
    );
    match blocked {
        Some((reason, message)) => status.set_condition(
            ConditionType::Blocked,
            ConditionStatus::True,
            &reason,
            &message,
            &t,
        ),
        None => status.set_condition(
            ConditionType::Blocked,
            ConditionStatus::False,
            "NotBlocked",
            "",
            &t,
        ),
    }
    cx.store
        .write_status(Kind::ManateeVersion, name, &status, cx.fence.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(if ready && transplant_shards.len() > 1 {
        Action::RequeueAfter(Duration::from_millis(10))
    } else if ready {
        Action::RequeueAfter(Duration::from_secs(60))
    } else {
        Action::RequeueAfter(requeue.max(Duration::from_millis(10)))
    }))
}

async fn journals(
    coord: &Arc<dyn coord::Coordination>,
    name: &str,
) -> Result<Vec<(String, TransplantJournal)>, String> {
    let dir = format!("{ROOT}/transplants/{}/{name}", Kind::ManateeVersion.short());
    let children = match coord.children(&dir).await {
        Ok(c) => c,
        Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for c in children {
        if let Some(j) = load(coord, &format!("{dir}/{c}")).await? {
            out.push((c, j));
        }
    }
    Ok(out)
}

/// `tritonctl approve`: the transplant's pending approval step (the write
/// outage). A transplant stopped past its point of no return is not
/// approved this way: `option` goes to [`decide`], and a plain approve
/// leaves it alone.
pub async fn approve(
    coord: &Arc<dyn coord::Coordination>,
    name: &str,
    option: Option<&str>,
) -> Result<Vec<String>, String> {
    use reconcilers::transplant::TransplantAction;
    if let Some(o) = option {
        return decide(coord, name, o).await;
    }
    let mut done = Vec::new();
    for (shard, j) in journals(coord, name).await? {
        if j.forward.is_finished() {
            continue;
        }
        let id = &j.forward.status.id;
        if j.stopped.is_some() {
            // Past the point of no return: only an explicit --option answers.
            continue;
        }
        for (i, s) in j.forward.status.steps.iter().enumerate() {
            if matches!(j.forward.actions[i], TransplantAction::Approval { .. })
                && s.state != crds::status::StepState::Succeeded
            {
                let path = crate::world::approval_path(id, &s.name);
                coord.mkdirp(&path).await.map_err(|e| e.to_string())?;
                done.push(format!("{shard}: {} ({id})", s.name));
                break;
            }
        }
    }
    Ok(done)
}

/// `tritonctl cancel`: roll back a transplant that has not reached its
/// point of no return. Past it, the cancel is refused with the options.
pub async fn cancel(
    coord: &Arc<dyn coord::Coordination>,
    name: &str,
) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for (shard, j) in journals(coord, name).await? {
        if j.forward.is_finished() {
            continue;
        }
        if !j.forward.status.can_roll_back() {
            return Err(reconcilers::transplant::after_pnr_message(
                &j.forward,
                &format!("{shard}: cancel refused"),
            )
            .replace("manateeversion/<name>", &format!("manateeversion/{name}")));
        }
        let path = crate::world::approval_path(&j.forward.status.id, CANCEL_STEP);
        coord.mkdirp(&path).await.map_err(|e| e.to_string())?;
        done.push(format!(
            "{shard}: rollback requested ({})",
            j.forward.status.id
        ));
    }
    Ok(done)
}

/// The transplants of `name` stopped past their point of no return, with
/// the options (for `tritonctl approve` without `--option`).
pub async fn stopped(
    coord: &Arc<dyn coord::Coordination>,
    name: &str,
) -> Result<Vec<String>, String> {
    Ok(journals(coord, name)
        .await?
        .into_iter()
        .filter(|(_, j)| !j.forward.is_finished())
        .filter_map(|(shard, j)| {
            let s = j.stopped.as_ref()?;
            Some(format!(
                "{shard}: the transplant {} is stopped past its point of no return (stop {} at step {}: {}); choose explicitly: tritonctl approve manateeversion/{name} --option resume|reverse-transplant|restore-backup",
                j.forward.status.id,
                s.seq,
                s.step + 1,
                s.name
            ))
        })
        .collect())
}

/// `tritonctl approve manateeversion/NAME --option OPTION`: a person's
/// decision for a transplant stopped past its point of no return. The
/// approval names the stop it answers, so it never carries over to a later
/// one. `resume` is recorded (the controller retries the failed step once);
/// `reverse-transplant` and `restore-backup` are refused with what they
/// would run: tritonctl does not automate them, and says so.
pub async fn decide(
    coord: &Arc<dyn coord::Coordination>,
    name: &str,
    option: &str,
) -> Result<Vec<String>, String> {
    use reconcilers::transplant::{
        DECISIONS, decision_key, restore_backup_plan, reverse_transplant_plan,
    };
    if !DECISIONS.contains(&option) {
        return Err(format!(
            "--option {option}: not an option; choose one of {}",
            DECISIONS.join(", ")
        ));
    }
    let mut done = Vec::new();
    for (shard, j) in journals(coord, name).await? {
        if j.forward.is_finished() {
            continue;
        }
        let Some(stop) = &j.stopped else {
            continue;
        };
        let id = &j.forward.status.id;
        match option {
            "resume" => {
                let path = crate::world::approval_path(id, &decision_key(stop.seq, option));
                coord.mkdirp(&path).await.map_err(|e| e.to_string())?;
                done.push(format!(
                    "{shard}: resume ({id}, stop {}): step {} ({}) will be retried once",
                    stop.seq,
                    stop.step + 1,
                    stop.name
                ));
            }
            other => {
                let plan = if other == "restore-backup" {
                    restore_backup_plan(&j.forward)
                } else {
                    reverse_transplant_plan(&j.forward)
                };
                return Err(format!(
                    "manateeversion/{name} {shard}: `{other}` is not automated; tritonctl refuses to approve it and recorded nothing (the transplant stays stopped). What it takes, by hand: {plan}"
                ));
            }
        }
    }
    if done.is_empty() {
        return Err(format!(
            "manateeversion/{name}: no transplant is stopped past its point of no return; --option answers only such a stop (see `tritonctl describe manateeversion/{name}`)"
        ));
    }
    Ok(done)
}
