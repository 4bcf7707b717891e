//! ManateeVersion: the rolling upgrade of each shard (the same pure
//! `plan_shard` the controller runs), and the order, canary and parallelism
//! every strategy of the document starts by.

use std::collections::BTreeMap;

use crds::Kind;
use crds::manatee::{Approval, ManateeVersionSpec, Strategy};
use reconcilers::error::Refusal;
use reconcilers::manatee::{
    ManateeAction, PrimaryMethod, Role, ShardObservation, ShardPlan, plan_shard, primary_method,
};
use reconcilers::rollout::{self, Decision, Planned};
use reconcilers::transplant::Resolved;

use super::common::{image_records, not_observed, peers_summary, window_words};
use super::downgrade;
use super::transplant::{plan_transplant_shard, transplant_in_flight};
use super::types::{ManateePlan, OpReview, Risk, ShardOutcome, ShardReview, StepReview};
use crate::gitops::observed::{StoredView, World};
use crate::gitops::resolve::resolve_shard;

fn describe_step(
    spec: &ManateeVersionSpec,
    name: &str,
    action: &ManateeAction,
    one_node: bool,
) -> (String, String, Vec<Risk>) {
    let h = &spec.health;
    let lag = h.max_replication_lag_seconds;
    match action {
        ManateeAction::Preflight => (
            "no deposed peer, a sync present, every placed peer active with postgres online, not frozen by someone else".into(),
            "immediately".into(),
            vec![],
        ),
        ManateeAction::Reprovision { role, .. } => {
            let back = format!(
                "zone running on the new image, sitter active, postgres online, shard whole (sync lag <= {lag}s); timeout {} + {}",
                h.instance_up_timeout, h.catch_up_timeout
            );
            match role {
                Role::Primary if one_node => (
                    "none besides the plan's order (the only peer)".into(),
                    back,
                    vec![Risk::PrimaryDisruption, Risk::WriteOutage, Risk::ShardDown],
                ),
                Role::Primary => (
                    format!(
                        "every other peer up, and full health: primary up, sync caught up (lag <= {lag}s), asyncs caught up"
                    ),
                    back,
                    vec![Risk::PrimaryDisruption, Risk::WriteOutage],
                ),
                _ => (
                    "every other peer of the shard up (one peer down at a time); still in its planned role, else the rest is re-planned".into(),
                    back,
                    vec![],
                ),
            }
        }
        ManateeAction::Approval { .. } => (
            format!(
                "`tritonctl approve manateeversion/<name>` for step {name}"
            ),
            "approved".into(),
            vec![],
        ),
        ManateeAction::Freeze { .. } => (
            "not frozen by someone else meanwhile".into(),
            "our freeze visible in the cluster state; timeout 1m".into(),
            vec![],
        ),
        ManateeAction::WaitHealthy => (
            "none".into(),
            format!(
                "primary up, sync caught up (lag <= {lag}s), no deposed peer; timeout {}",
                h.catch_up_timeout
            ),
            vec![],
        ),
        ManateeAction::Unfreeze { .. } => (
            "none (lifts only our own freeze)".into(),
            "freeze gone; timeout 1m".into(),
            vec![],
        ),
        ManateeAction::Promote { .. } => (
            format!(
                "full health: primary up, the sync on the new image and caught up (lag <= {lag}s), an active async, not frozen, no other promote request"
            ),
            format!(
                "the sync took over (manatee-adm promote, {} s expiry); an expired request is cleared (clear-promote) and the step stops",
                wire::manatee::PROMOTE_EXPIRY.as_secs()
            ),
            vec![Risk::PrimaryDisruption, Risk::WriteOutage],
        ),
        ManateeAction::WaitPromoted { .. } => (
            "none".into(),
            format!(
                "the new primary writable and its new sync caught up (lag <= {lag}s); timeout {}",
                h.catch_up_timeout
            ),
            vec![],
        ),
        ManateeAction::Rebuild { .. } => (
            "the deposed peer's zone running again, a healthy primary and a caught-up sync; never the primary".into(),
            format!(
                "`manatee-adm rebuild` done: the peer is back as a standby, no deposed peer left; timeout {}",
                h.catch_up_timeout
            ),
            vec![],
        ),
    }
}

fn op_review(
    spec: &ManateeVersionSpec,
    name: &str,
    obs: &ShardObservation,
    op: &reconcilers::operation::Operation<ManateeAction>,
) -> OpReview {
    let one_node = obs
        .state
        .as_ref()
        .is_some_and(|s| s.is_one_node_write_mode());
    let window = spec.rollout.maintenance_window.as_ref();
    let mut steps = Vec::new();
    let mut waits = Vec::new();
    let mut outage = "none expected: the primary is not touched".to_string();
    for (i, s) in op.status.steps.iter().enumerate() {
        let action = &op.actions[i];
        let (gate, done_when, mut risks) = describe_step(spec, &s.name, action, one_node);
        let mut gate = gate.replace("<name>", name);
        // The runner's window gate (reconcilers::manatee, precondition):
        // the freeze and every reprovision start only inside the window,
        // except a primary whose shard our own freeze already holds.
        if let Some(w) = window {
            match action {
                ManateeAction::Freeze { .. } => {
                    gate = format!(
                        "inside the maintenance window ({}); {gate}",
                        window_words(w)
                    )
                }
                ManateeAction::Reprovision {
                    role: Role::Primary,
                    ..
                } if !one_node => {
                    gate = format!(
                        "{gate}; goes on under our freeze (taken inside the maintenance window), else waits for the window"
                    )
                }
                ManateeAction::Reprovision { .. } => {
                    gate = format!(
                        "inside the maintenance window ({}); {gate}",
                        window_words(w)
                    )
                }
                _ => {}
            }
        }
        if s.irreversible {
            risks.insert(0, Risk::PointOfNoReturn);
        }
        if let ManateeAction::Approval { what } = action {
            waits.push(format!(
                "approval of {what}: `tritonctl approve manateeversion/{name}`"
            ));
        }
        if let ManateeAction::Promote { .. } = action {
            let alias = s.touches.first().cloned().unwrap_or_default();
            outage = format!(
                "switchover: writes stop for one planned takeover (the upgraded sync becomes primary, {alias} is deposed) until the new sync has caught up; {alias} is then reprovisioned and rebuilt while the shard runs on two peers"
            );
        }
        if let ManateeAction::Reprovision {
            role: Role::Primary,
            ..
        } = action
        {
            let alias = s.touches.first().cloned().unwrap_or_default();
            outage = if one_node {
                format!(
                    "the whole shard is down while its only peer {alias} is reprovisioned: up to {} (instanceUpTimeout) plus postgres start",
                    spec.health.instance_up_timeout
                )
            } else {
                format!(
                    "writes stop while primary {alias} is reprovisioned (the shard is frozen, no takeover) until it is back and its sync caught up: bounded by {} + {}",
                    spec.health.instance_up_timeout, spec.health.catch_up_timeout
                )
            };
        }
        steps.push(StepReview {
            name: s.name.clone(),
            description: s.description.clone(),
            touches: s.touches.clone(),
            gate,
            done_when,
            irreversible: s.irreversible,
            risks,
        });
    }
    if let Some(w) = window {
        waits.push(format!(
            "maintenance window {}: the freeze and each reprovision start only inside it; outside, the step waits for the next opening (status says until when)",
            window_words(w)
        ));
    }
    OpReview {
        id: op.status.id.clone(),
        kind: op.status.kind.clone(),
        point_of_no_return: op
            .status
            .point_of_no_return
            .and_then(|i| op.status.steps.get(i))
            .map(|s| s.name.clone()),
        steps,
        expected_write_outage: outage,
        waits,
        rollback: None,
    }
}

pub(super) async fn plan_manatee(
    name: &str,
    spec: &ManateeVersionSpec,
    generation: i64,
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<ManateePlan, String> {
    let mut rollout = vec![format!("order: {}", rollout::order(spec).join(", "))];
    rollout.push(format!(
        "parallelism: {} shard(s) at once, one peer per shard at a time",
        spec.rollout.parallelism.max(1)
    ));
    if let Some(c) = &spec.rollout.canary {
        rollout.push(format!(
            "canary: {c} first, alone; the rest wait until it is up to date"
        ));
    }
    rollout.push(format!(
        "approval: {}",
        match spec.rollout.approval {
            Approval::Never => "never",
            Approval::BeforePrimary =>
                "before each shard's primary step (a transplant: before its write outage)",
            Approval::BeforeEachShard =>
                "before each shard (a rolling upgrade: before its primary step; a transplant: before it starts and before its write outage)",
        }
    ));
    if let Some(w) = &spec.rollout.maintenance_window {
        rollout.push(format!(
            "maintenance window: {} (rolling upgrades start their freeze and reprovisions only inside it)",
            window_words(w)
        ));
    }
    if spec.rollout.paused {
        rollout.push("paused: no step will start until spec.rollout.paused is cleared".into());
    }
    let mut warnings = Vec::new();
    let strategy = match spec.strategy {
        Strategy::Auto => "auto",
        Strategy::Rolling => "rolling",
        Strategy::Switchover => "switchover",
        Strategy::Transplant => "transplant",
    };
    let Some(world) = world else {
        return Ok(ManateePlan {
            image: spec.image.uuid.clone(),
            image_record: None,
            strategy: strategy.into(),
            rollout,
            shards: spec
                .shards
                .iter()
                .map(|s| not_observed(s,
                    "not observed: give the datacenter (--sapi/--vmapi/--cnapi/--imgapi and --zk) or --observed SNAPSHOT to see the operation".into()))
                .collect(),
            warnings,
        });
    };
    let m = world.manatee();
    let image = m.image(&spec.image.uuid).await?;
    if let (Some(img), Some(v)) = (&image, &spec.image.version)
        && &img.version != v
    {
        warnings.push(format!(
            "spec.image.version is {v} but IMGAPI says image {} is version {}",
            spec.image.uuid, img.version
        ));
    }
    let journals = stored.journals(Kind::ManateeVersion, name);
    let transplants = stored.transplants(name);
    let open_transplant = |s: &str| {
        transplants
            .iter()
            .find(|t| t.target == s && !t.journal.forward.is_finished())
    };

    // What the controller does first (controller::transplant::reconcile),
    // in spec.shards order: an open transplant journal is driven on; every
    // other shard's strategy is resolved, and one refusal blocks the whole
    // document; then transplants run one shard at a time, before any
    // rolling upgrade of the document.
    let mut observations: BTreeMap<String, Result<ShardObservation, String>> = BTreeMap::new();
    let mut resolved: BTreeMap<String, Result<Resolved, Refusal>> = BTreeMap::new();
    let mut transplant_queue: Vec<String> = Vec::new();
    let mut blocked_by: Option<(String, String)> = None;
    let mut downgrades: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for shard in &spec.shards {
        if open_transplant(shard).is_some() {
            transplant_queue.push(shard.clone());
            continue;
        }
        let obs = m.observe(shard).await;
        if let Ok(o) = &obs {
            let imgs = image_records(m, o.peers.iter().map(|p| &p.image)).await?;
            if let Some(target) = &image {
                for running in imgs.values().flatten() {
                    if let Some(why) = downgrade::older(target, running) {
                        downgrades
                            .entry((running.uuid.clone(), why))
                            .or_default()
                            .push(shard.clone());
                    }
                }
            }
            let r = resolve_shard(spec, o, image.as_ref(), &imgs);
            match &r {
                Ok(Resolved::Transplant) => transplant_queue.push(shard.clone()),
                Ok(Resolved::Rolling) => {}
                Err(refusal) => {
                    blocked_by.get_or_insert((shard.clone(), refusal.reason.to_string()));
                }
            }
            resolved.insert(shard.clone(), r);
        }
        observations.insert(shard.clone(), obs.map_err(String::from));
    }
    for ((running, why), on) in &downgrades {
        warnings.push(format!(
            "DOWNGRADE: image {} is older than image {running} that shard(s) {} run ({why}); applying this rolls them back to the older image",
            spec.image.uuid,
            on.join(", ")
        ));
    }
    if let Some((s, reason)) = &blocked_by {
        warnings.push(format!(
            "shard {s} is refused ({reason}) before anything runs: the controller starts no operation of this document, on any shard, until the document is fixed"
        ));
    }

    // Each shard in rollout order: its review, and what its plan is to the
    // schedule (reconcilers::rollout, the controller's rules). The schedule
    // says when a rolling upgrade starts; the review only words it.
    let in_flight: Vec<String> = journals
        .iter()
        .filter(|j| !j.operation.is_finished())
        .map(|j| j.target.clone())
        .collect();
    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    let mut shards: Vec<ShardReview> = Vec::new();
    let mut rolling_planned = false;
    let global = Global {
        name,
        blocked_by: blocked_by.as_ref(),
        transplant_queue: &transplant_queue,
    };
    for shard in rollout::order(spec) {
        if let Some(t) = open_transplant(&shard) {
            shards.push(transplant_in_flight(name, &shard, &t.journal));
            continue;
        }
        if let Some(j) = journals
            .iter()
            .find(|j| j.target == shard && !j.operation.is_finished())
        {
            shards.push(ShardReview {
                shard: shard.clone(),
                outcome: ShardOutcome::InFlight,
                message: Some(format!(
                    "operation {} is running; no new operation is planned for this shard until it ends (see running operations)",
                    j.operation.status.id
                )),
                peers: vec![],
                strategy: None,
                starts: None,
                operation: None,
            });
            continue;
        }
        let obs = match observations.remove(&shard) {
            Some(o) => o,
            None => m.observe(&shard).await.map_err(String::from),
        };
        let obs = match obs {
            Ok(o) => o,
            Err(e) => {
                shards.push(not_observed(&shard, format!("could not observe: {e}")));
                continue;
            }
        };
        let peers = peers_summary(&obs);
        let resolution = match resolved.remove(&shard) {
            Some(r) => r,
            None => {
                let imgs = image_records(m, obs.peers.iter().map(|p| &p.image)).await?;
                resolve_shard(spec, &obs, image.as_ref(), &imgs)
            }
        };
        match resolution {
            Err(Refusal { reason, message }) => {
                planned.insert(shard.clone(), Planned::Refused);
                shards.push(ShardReview {
                    shard,
                    outcome: ShardOutcome::Refused,
                    message: Some(format!("{reason}: {message}")),
                    peers,
                    strategy: Some(format!("{strategy}: refused")),
                    starts: None,
                    operation: None,
                });
                continue;
            }
            Ok(Resolved::Transplant) => {
                let starts = global.starts_transplant(spec, &shard);
                shards.push(
                    plan_transplant_shard(world, spec, name, &shard, image.as_ref(), starts)
                        .await?,
                );
                continue;
            }
            Ok(Resolved::Rolling) => {}
        }
        let op_id = format!(
            "mv-{name}-{}-g{generation}-planned",
            shard.split('.').next().unwrap_or(&shard)
        );
        // The order the planner picks for the primary, by the same rule.
        let method = obs
            .state
            .as_ref()
            .map(|st| primary_method(spec.strategy, st, image.as_ref()));
        let rolling = Some(
            match method {
                Some(Ok(PrimaryMethod::Switchover)) => "switchover",
                _ => "rolling",
            }
            .to_string(),
        );
        match plan_shard(spec, &obs, image.as_ref(), &op_id) {
            ShardPlan::UpToDate => {
                planned.insert(shard.clone(), Planned::UpToDate);
                shards.push(ShardReview {
                    shard,
                    outcome: ShardOutcome::UpToDate,
                    message: None,
                    peers,
                    strategy: None,
                    starts: None,
                    operation: None,
                });
            }
            ShardPlan::Refused(Refusal { reason, message }) => {
                planned.insert(shard.clone(), Planned::Refused);
                shards.push(ShardReview {
                    shard,
                    outcome: ShardOutcome::Refused,
                    message: Some(format!("{reason}: {message}")),
                    peers,
                    strategy: rolling,
                    starts: None,
                    operation: None,
                })
            }
            ShardPlan::Upgrade(op) => {
                rolling_planned = true;
                planned.insert(shard.clone(), Planned::Upgrade);
                shards.push(ShardReview {
                    operation: Some(op_review(spec, name, &obs, &op)),
                    shard,
                    outcome: ShardOutcome::Upgrade,
                    message: None,
                    peers,
                    strategy: rolling,
                    starts: None,
                });
            }
        }
    }
    let schedule = rollout::schedule(spec, &in_flight, &planned);
    for s in shards
        .iter_mut()
        .filter(|s| s.outcome == ShardOutcome::Upgrade && s.starts.is_none())
    {
        let decision = schedule
            .iter()
            .find(|x| x.shard == s.shard)
            .map(|x| &x.decision);
        s.starts = Some(global.starts_rolling(spec, decision));
    }
    if rolling_planned && spec.rollout.approval == Approval::BeforeEachShard {
        warnings.push(
            "approval beforeEachShard: the rolling planner (plan_shard) asks once per shard, before its primary step, as beforePrimary does; the steps before it (asyncs, sync) run without approval".into(),
        );
    }
    Ok(ManateePlan {
        image: spec.image.uuid.clone(),
        image_record: image,
        strategy: strategy.into(),
        rollout,
        shards,
        warnings,
    })
}

/// What holds every operation of the document, whatever the schedule says:
/// a shard refused before anything runs, and the transplants (run first).
struct Global<'a> {
    name: &'a str,
    blocked_by: Option<&'a (String, String)>,
    transplant_queue: &'a [String],
}

impl Global<'_> {
    fn blocked(&self) -> Option<String> {
        self.blocked_by.map(|b| {
            format!(
                "not while shard {} is refused ({}): the controller runs nothing of this document",
                b.0, b.1
            )
        })
    }

    /// When a planned transplant of `shard` starts: one at a time, in spec order.
    fn starts_transplant(&self, spec: &ManateeVersionSpec, shard: &str) -> String {
        if let Some(b) = self.blocked() {
            return b;
        }
        if spec.rollout.paused {
            return "paused (spec.rollout.paused)".to_string();
        }
        match self.transplant_queue.iter().position(|s| s == shard) {
            Some(0) | None => {
                "at once (one transplant at a time, before any rolling upgrade of this document)"
                    .to_string()
            }
            Some(i) => format!(
                "after the transplant of {} ends (one transplant at a time)",
                self.transplant_queue[i - 1]
            ),
        }
    }

    /// When a planned rolling upgrade starts: the schedule's answer in words.
    fn starts_rolling(&self, spec: &ManateeVersionSpec, decision: Option<&Decision>) -> String {
        if let Some(b) = self.blocked() {
            return b;
        }
        if spec.rollout.paused {
            return "paused (spec.rollout.paused)".to_string();
        }
        if !self.transplant_queue.is_empty() {
            return format!(
                "after the transplant of {} ends (the controller runs transplants first)",
                self.transplant_queue.join(", ")
            );
        }
        match decision {
            Some(Decision::StartNow) => "at once".to_string(),
            Some(Decision::WaitForCanary { canary }) => {
                format!("after the canary {canary} is up to date")
            }
            Some(Decision::WaitForSlot { parallelism }) => {
                format!("when one of the {parallelism} running shard operation(s) ends")
            }
            other => format!("not scheduled ({other:?}) for ManateeVersion/{}", self.name),
        }
    }
}
