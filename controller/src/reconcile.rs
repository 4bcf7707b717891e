//! The controller side of each reconciler: read the document, load or plan
//! operations, drive them with the engine, and write status and events.
//! Journals and status are written together in one fenced multi-op.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, Coordination, Expect, Op};
use crds::manatee::ManateeVersionSpec;
use crds::status::{OperationPhase, StepState};
use crds::{ConditionStatus, ConditionType, Document, Kind, Status};
use reconcilers::clock::{Clock, SystemClock, rfc3339};
use reconcilers::error::{BlockReason, RefusalReason, WaitReason, WorldError};
use reconcilers::manatee::{ManateeAct, ManateeAction, ManateeRunner, ShardPlan, plan_shard_with};
use reconcilers::operation::{Advance, Journal, Operation, POLL, advance};

use crate::runtime::events::{Event, Events};
use crate::runtime::queue::Action;
use crate::store::{Fence, ROOT, Store, status_path, upsert_op};

pub fn journal_dir(kind: Kind, name: &str) -> String {
    format!("{ROOT}/operations/{}/{name}", kind.short())
}

/// Everything a reconcile needs.
pub struct Context<W> {
    pub store: Store,
    pub events: Events,
    pub world: W,
    pub fence: Option<Fence>,
    pub clock: Arc<dyn Clock>,
    /// How often completion checks poll (scaled down in the simulator).
    pub poll: Duration,
    /// The transplant strategy's world; without it only rolling upgrades run.
    pub transplant: Option<Arc<dyn reconcilers::transplant::TransplantAct>>,
    /// Step durations and event counts for `/metrics` (the daemon sets it).
    pub metrics: Option<crate::runtime::metrics::Metrics>,
}

impl<W> Context<W> {
    pub(crate) fn coord(&self) -> &Arc<dyn Coordination> {
        self.store.coord()
    }

    pub(crate) async fn event_pub(&self, e: Event) {
        self.event(e).await
    }

    pub(crate) async fn event(&self, e: Event) {
        match self.events.record(&e, self.fence.as_ref()).await {
            Ok(_) => {
                if let Some(m) = &self.metrics {
                    m.event_recorded(e.event_type.as_str());
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not record event"),
        }
    }

    /// A step reached an end state: observe its duration under its step
    /// kind (the name without the per-zone suffix, to bound label values).
    fn step_ended(&self, kind: Kind, step: &crds::status::StepStatus) {
        let Some(m) = &self.metrics else { return };
        let outcome = match step.state {
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            _ => return,
        };
        let elapsed = match (
            step.started_at
                .as_deref()
                .and_then(reconcilers::clock::parse_rfc3339),
            step.finished_at
                .as_deref()
                .and_then(reconcilers::clock::parse_rfc3339),
        ) {
            (Some(a), Some(b)) if b >= a => (b - a).unsigned_abs(),
            _ => Duration::ZERO,
        };
        m.step_finished(kind.as_str(), step_kind(&step.name), outcome, elapsed);
    }
}

/// `reprovision-async-cbf0d377` -> `reprovision-async`: step names carry a
/// short zone id so they are unique; metrics want the kind of step.
pub fn step_kind(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((head, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// Load every operation journal of a document, by target.
pub async fn load_journals(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<(String, Operation<ManateeAction>, i32)>, String> {
    load_journals_of(coord, kind, name).await
}

/// [`load_journals`] for operations of any step type.
pub async fn load_journals_of<A: serde::de::DeserializeOwned + serde::Serialize>(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<(String, Operation<A>, i32)>, String> {
    let dir = journal_dir(kind, name);
    let children = match coord.children(&dir).await {
        Ok(c) => c,
        Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for c in children {
        let (data, stat) = coord
            .get(&format!("{dir}/{c}"))
            .await
            .map_err(|e| e.to_string())?;
        let op: Operation<A> =
            serde_json::from_slice(&data).map_err(|e| format!("journal {dir}/{c}: {e}"))?;
        out.push((c, op, stat.version));
    }
    Ok(out)
}

/// Saves one operation's journal together with the document's status, and
/// records an event for every step that changed state.
pub(crate) struct StoreJournal<'a, W, A = ManateeAction> {
    pub(crate) cx: &'a Context<W>,
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) status: std::sync::Mutex<Status>,
    pub(crate) last: std::sync::Mutex<Option<Operation<A>>>,
}

#[async_trait]
impl<W: Send + Sync, A: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync>
    Journal<A> for StoreJournal<'_, W, A>
{
    async fn save(&self, op: &Operation<A>) -> Result<(), WorldError> {
        let coord = self.cx.coord();
        let mut status = self.status.lock().unwrap().clone();
        status.operation = Some(op.status.clone());
        let spath = status_path(self.kind, &self.name);
        let mut ops: Vec<Op> = self.cx.fence.iter().map(Fence::op).collect();
        let jdata = serde_json::to_vec(op).expect("journal serializes");
        let sdata = serde_json::to_vec(&status).expect("status serializes");
        ops.push(upsert_op(coord.as_ref(), &self.path, jdata).await?);
        ops.push(upsert_op(coord.as_ref(), &spath, sdata).await?);
        coord.multi(ops).await.map_err(|e| {
            WorldError::from(e).context("saving the journal (is this controller still the leader?)")
        })?;
        *self.status.lock().unwrap() = status;
        // Events for what changed since the last save.
        let prev = self.last.lock().unwrap().replace(op.clone());
        let object = format!("{}/{}", self.kind, self.name);
        for (i, s) in op.status.steps.iter().enumerate() {
            let before = prev
                .as_ref()
                .and_then(|p| p.status.steps.get(i))
                .map(|p| (p.state, p.message.clone()));
            if before.as_ref().map(|b| b.0) == Some(s.state)
                && (s.state != StepState::Waiting
                    || before.as_ref().and_then(|b| b.1.clone()) == s.message)
            {
                continue;
            }
            self.cx.step_ended(self.kind, s);
            let detail = s.message.clone().unwrap_or_else(|| s.description.clone());
            let ev = match s.state {
                StepState::Running => Event::normal(
                    &object,
                    "StepStarted",
                    format!("{}: {detail}", op.status.target),
                ),
                StepState::Succeeded => Event::normal(
                    &object,
                    "StepSucceeded",
                    format!("{}: {}", op.status.target, s.description),
                ),
                StepState::Waiting => Event::normal(
                    &object,
                    "StepWaiting",
                    format!("{}: {detail}", op.status.target),
                ),
                StepState::Failed => Event::warning(
                    &object,
                    "StepFailed",
                    format!("{}: {detail}", op.status.target),
                ),
                _ => continue,
            };
            self.cx
                .event(
                    ev.with_operation(op.status.id.clone())
                        .with_step(s.name.clone()),
                )
                .await;
        }
        Ok(())
    }
}

/// A step stopped by a timeout is never retried on its own; say how to.
pub(crate) fn with_retry_hint(
    kind: Kind,
    name: &str,
    reason: &BlockReason,
    message: String,
) -> String {
    if reason.needs_retry_approval() {
        format!(
            "{message}; nothing is retried on its own: fix the cause, then `tritonctl approve {}/{name}` to try the step again",
            kind.as_str().to_lowercase()
        )
    } else {
        message
    }
}

/// Shards in rollout order: the canary, then `order`, then the rest.
fn rollout_order(spec: &ManateeVersionSpec) -> Vec<String> {
    let mut out: Vec<String> = spec.rollout.canary.iter().cloned().collect();
    for s in spec.rollout.order.iter().chain(&spec.shards) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

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

/// Reconcile one ManateeVersion.
pub async fn reconcile_manatee<W: ManateeAct>(
    cx: &Context<W>,
    name: &str,
) -> Result<Action, String> {
    let Some(Document::ManateeVersion(doc)) = cx
        .store
        .get(Kind::ManateeVersion, name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Action::AwaitChange);
    };
    let spec = &doc.spec;
    let generation = doc.metadata.generation.unwrap_or(1);
    let now = || rfc3339(cx.clock.now());
    let object = format!("ManateeVersion/{name}");
    let mut status = doc.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let dir = journal_dir(Kind::ManateeVersion, name);
    cx.coord().mkdirp(&dir).await.map_err(|e| e.to_string())?;

    // Paused by spec or by `tritonctl pause` (a marker beside the document).
    let marker = crate::pause::get(cx.coord(), Kind::ManateeVersion, name).await;
    let marker = marker.map_err(|e| e.to_string())?;
    if let Some(why) = crate::pause::paused_message(spec.rollout.paused, marker.as_ref()) {
        status.set_condition(
            ConditionType::Paused,
            ConditionStatus::True,
            "Paused",
            &format!(
                "{why} (a step already under way finishes in the world; a shard this operation froze stays frozen, so no takeover happens, until resume)"
            ),
            &now(),
        );
        cx.store
            .write_status(Kind::ManateeVersion, name, &status, cx.fence.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Action::AwaitChange);
    }
    // The pause above holds every strategy, the transplant included.
    if let Some(tw) = cx.transplant.clone()
        && let Some(action) = crate::transplant::reconcile(cx, tw.as_ref(), name).await?
    {
        return Ok(action);
    }
    status.set_condition(
        ConditionType::Paused,
        ConditionStatus::False,
        "Running",
        "",
        &now(),
    );

    let journals = load_journals(cx.coord(), Kind::ManateeVersion, name).await?;
    let mut active: Vec<(String, Operation<ManateeAction>)> = journals
        .iter()
        .filter(|(_, op, _)| !op.is_finished())
        .map(|(shard, op, _)| (shard.clone(), op.clone()))
        .collect();
    let parallelism = spec.rollout.parallelism.max(1) as usize;
    let mut up_to_date = Vec::new();
    let mut refused: Vec<(String, BlockReason, String)> = Vec::new();
    let image = cx.world.image(&spec.image.uuid).await?;
    let holder = object.clone();
    for shard in rollout_order(spec) {
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
                up_to_date.push(shard)
            }
            ShardPlan::Refused(r) => refused.push((shard, r.reason.into(), r.message)),
            ShardPlan::Upgrade(op) => {
                let canary_pending = spec
                    .rollout
                    .canary
                    .as_ref()
                    .is_some_and(|c| c != &shard && !up_to_date.contains(c));
                if active.len() < parallelism && !canary_pending {
                    // One disruptive operation per shard, across documents.
                    if let Some(other) =
                        crate::shard_lock::acquire(cx.coord(), cx.fence.as_ref(), &shard, &holder)
                            .await?
                    {
                        refused.push((
                            shard.clone(),
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
                    active.push((shard, op));
                }
            }
        }
    }

    // Drive every active operation (one per shard) concurrently.
    let runs = active.into_iter().map(|(shard, mut op)| {
        let status = status.clone();
        let dir = &dir;
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
            let journal = StoreJournal {
                cx,
                kind: Kind::ManateeVersion,
                name: name.to_string(),
                path: format!("{dir}/{shard}"),
                status: std::sync::Mutex::new(status),
                last: std::sync::Mutex::new(Some(op.clone())),
            };
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
        match r.map_err(|e| e.to_string())? {
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
                op.status.finished_at = Some(now());
                let data = serde_json::to_vec(&op).expect("journal serializes");
                let mut ops: Vec<Op> = cx.fence.iter().map(Fence::op).collect();
                ops.push(Op::set(format!("{dir}/{shard}"), data, Expect::Any));
                cx.coord().multi(ops).await.map_err(|e| e.to_string())?;
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

    // Conditions.
    let t = now();
    let all = spec.shards.len();
    let ready = up_to_date.len() == all && progressing.is_empty();
    status.set_condition(
        ConditionType::Ready,
        if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        if ready { "Converged" } else { "Converging" },
        &format!(
            "{}/{all} shard(s) on {}",
            up_to_date.len(),
            spec.image.version.as_deref().unwrap_or(&spec.image.uuid)
        ),
        &t,
    );
    status.set_condition(
        ConditionType::Progressing,
        if progressing.is_empty() {
            ConditionStatus::False
        } else {
            ConditionStatus::True
        },
        if progressing.is_empty() {
            "Idle"
        } else {
            "OperationRunning"
        },
        &progressing.join(", "),
        &t,
    );
    status.set_condition(
        ConditionType::AwaitingApproval,
        if waiting_approval.is_empty() {
            ConditionStatus::False
        } else {
            ConditionStatus::True
        },
        if waiting_approval.is_empty() {
            "NoApprovalNeeded"
        } else {
            "AwaitingApproval"
        },
        &waiting_approval.join("; "),
        &t,
    );
    match blocked.first() {
        Some((shard, reason, message)) => {
            let was = status.is_true(ConditionType::Blocked);
            status.set_condition(
                ConditionType::Blocked,
                ConditionStatus::True,
                &reason.to_string(),
                &format!("{shard}: {message}"),
                &t,
            );
            if !was {
                cx.event(Event::warning(
                    &object,
                    reason.to_string(),
                    format!("{shard}: {message}"),
                ))
                .await;
            }
        }
        None => status.set_condition(
            ConditionType::Blocked,
            ConditionStatus::False,
            "NotBlocked",
            "",
            &t,
        ),
    }
    // Keep the latest operation visible in status (journals hold the rest).
    if let Ok(j) = load_journals(cx.coord(), Kind::ManateeVersion, name).await
        && let Some((_, op, _)) = j
            .iter()
            .max_by_key(|(_, op, _)| op.status.started_at.clone())
    {
        status.operation = Some(op.status.clone());
    }
    cx.store
        .write_status(Kind::ManateeVersion, name, &status, cx.fence.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(match requeue {
        Some(d) => Action::RequeueAfter(d.max(Duration::from_millis(10))),
        None if !blocked.is_empty() => Action::RequeueAfter(Duration::from_secs(5)),
        None => Action::RequeueAfter(Duration::from_secs(60)),
    })
}

/// Make a context with the wall clock.
pub fn context<W>(
    store: Store,
    world: W,
    fence: Option<Fence>,
    poll: Option<Duration>,
) -> Context<W> {
    let events = Events::new(store.coord().clone());
    Context {
        store,
        events,
        world,
        fence,
        clock: Arc::new(SystemClock),
        poll: poll.unwrap_or(POLL),
        transplant: None,
        metrics: None,
    }
}

/// Record approval for every operation step of a document that waits for one.
pub async fn approve(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<String>, String> {
    let mut approved = Vec::new();
    // A step stopped by a timeout, in an operation of any kind: approve one
    // more attempt (the actions are not needed, so read them untyped).
    let mut retried = std::collections::HashSet::new();
    for (target, op, _) in load_journals_of::<serde_json::Value>(coord, kind, name).await? {
        if op.is_finished() {
            continue;
        }
        if let Some(s) = op
            .status
            .steps
            .iter()
            .find(|s| s.state == StepState::Failed)
        {
            let key = reconcilers::operation::retry_key(&s.name, s.attempts);
            let path = crate::world::approval_path(&op.status.id, &key);
            coord.mkdirp(&path).await.map_err(|e| e.to_string())?;
            approved.push(format!(
                "{target}: retry of {} (attempt {}) ({})",
                s.name,
                s.attempts + 1,
                op.status.id
            ));
            retried.insert(op.status.id.clone());
        }
    }
    if kind != Kind::ManateeVersion {
        return Ok(approved);
    }
    for (shard, op, _) in load_journals(coord, kind, name).await? {
        if op.is_finished() || retried.contains(&op.status.id) {
            continue;
        }
        for (i, s) in op.status.steps.iter().enumerate() {
            if matches!(op.actions[i], ManateeAction::Approval { .. })
                && !matches!(s.state, StepState::Succeeded)
            {
                let path = crate::world::approval_path(&op.status.id, &s.name);
                coord.mkdirp(&path).await.map_err(|e| e.to_string())?;
                approved.push(format!("{shard}: {} ({})", s.name, op.status.id));
                break;
            }
        }
    }
    approved.extend(crate::transplant::approve(coord, name, None).await?);
    Ok(approved)
}

#[cfg(test)]
mod tests {
    use super::step_kind;

    /// `tritonctl approve` on a HeadnodeSet whose HA step timed out records
    /// the approval of exactly the next attempt (not only ManateeVersions).
    #[tokio::test]
    async fn approve_allows_one_more_attempt_of_a_timed_out_step_of_any_kind() {
        use reconcilers::manatee_ha::HaAction;
        use reconcilers::operation::{Operation, PlannedStep, retry_key};
        let ens = coord::MemEnsemble::new();
        let c: std::sync::Arc<dyn coord::Coordination> = ens.connect();
        let mut op: Operation<HaAction> = Operation::new(
            "ha-lab-sdc-g1-test",
            "manatee-ha",
            "sdc",
            vec![PlannedStep {
                name: "wait-healthy".into(),
                description: "wait".into(),
                touches: vec![],
                irreversible: false,
                action: HaAction::WaitHealthy,
            }],
        );
        op.status.steps[0].state = crds::StepState::Failed;
        op.status.steps[0].attempts = 1;
        let dir = super::journal_dir(crds::Kind::HeadnodeSet, "lab");
        c.mkdirp(&dir).await.unwrap();
        c.create(
            &format!("{dir}/sdc"),
            &serde_json::to_vec(&op).unwrap(),
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
        let done = super::approve(&c, crds::Kind::HeadnodeSet, "lab")
            .await
            .unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let key = retry_key("wait-healthy", 1);
        assert!(
            c.exists(&crate::world::approval_path("ha-lab-sdc-g1-test", &key))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn step_kind_drops_only_the_zone_suffix() {
        assert_eq!(step_kind("reprovision-async-cbf0d377"), "reprovision-async");
        assert_eq!(step_kind("wait-healthy"), "wait-healthy");
        assert_eq!(step_kind("preflight"), "preflight");
        // Not an 8-hex-digit suffix: kept whole.
        assert_eq!(step_kind("create-peer-manatee2"), "create-peer-manatee2");
    }
}
