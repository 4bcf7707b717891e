//! `tritonctl diff`: per document, the spec change against what is stored
//! and the operation each reconciler would run against the observed world.

use std::collections::{BTreeMap, BTreeSet};

use crds::headnode::HeadnodeSetSpec;
use crds::manatee::{Approval, ManateeVersionSpec, Strategy};
use crds::shards::ShardTopologySpec;
use crds::status::OperationPhase;
use crds::{Document, Kind};
use reconcilers::manatee::{
    ImageInfo, ManateeAction, Role, ShardObservation, ShardPlan, plan_shard,
};
use reconcilers::manatee_ha::{HaAction, HaPlan, plan_ha};
use reconcilers::operation::Operation;
use reconcilers::transplant::{
    MORAY_COMPATIBLE_MIN_VERSION, PNR_STEP, Resolved, TransplantAction, TransplantJournal,
    TransplantObs, manatee_major, plan_transplant, resolve_strategy,
};
use serde::{Deserialize, Serialize};
use wire::fash::Ring;

use super::observed::{StoredView, World};
use super::running::{self, RunningDecision};

/// Format tag of `diff -o json` and of the review inside a plan.
pub const REVIEW_FORMAT: &str = "tritonctl.review/v1";

/// Whether a reconciler in this build executes the kind's operations.
/// HeadnodeSet: its reconciler runs the manatee HA setup of the `sdc` shard
/// (controller::reconcile_ha); its other fields are stored, not executed.
pub fn executed(kind: Kind) -> bool {
    matches!(kind, Kind::ManateeVersion | Kind::HeadnodeSet)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub format: String,
    /// What the operations were planned against; None when nothing was observed.
    pub observed: Option<String>,
    pub documents: Vec<DocReview>,
}

impl Review {
    /// A spec differs from the store, or a reconciler would act (or refuse).
    pub fn has_differences(&self) -> bool {
        self.documents.iter().any(DocReview::has_differences)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    Create,
    Update,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocReview {
    /// The kind's name, e.g. `ManateeVersion`.
    pub kind: String,
    pub name: String,
    pub change: Change,
    /// resourceVersion and generation of the stored document.
    pub stored_resource_version: Option<String>,
    pub stored_generation: Option<i64>,
    /// Unified diff of the YAML (fields sorted, status left out); empty when unchanged.
    pub spec_diff: String,
    pub plan: KindPlan,
    /// Operations in flight and what this change does to them.
    pub running: Vec<RunningDecision>,
}

impl DocReview {
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    pub fn has_differences(&self) -> bool {
        self.change != Change::Unchanged || self.plan.acts() || !self.running.is_empty()
    }

    /// Whether applying this document is refused.
    pub fn refused(&self) -> bool {
        self.running
            .iter()
            .any(|r| r.rule == running::Rule::Refused)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum KindPlan {
    Manatee(ManateePlan),
    Topology(TopologyPlan),
    Headnodes(HeadnodePlan),
}

impl KindPlan {
    /// Whether something would be done (or refused) in the datacenter.
    pub fn acts(&self) -> bool {
        match self {
            KindPlan::Manatee(m) => m.shards.iter().any(|s| {
                matches!(
                    s.outcome,
                    ShardOutcome::Upgrade | ShardOutcome::Refused | ShardOutcome::InFlight
                )
            }),
            KindPlan::Topology(t) => !t.moves.is_empty(),
            KindPlan::Headnodes(h) => {
                !h.changes.is_empty()
                    || h.manatee.as_ref().is_some_and(|m| {
                        matches!(m.outcome, ShardOutcome::Upgrade | ShardOutcome::Refused)
                    })
            }
        }
    }
}

// ---------------------------------------------------------------------------
// ManateeVersion

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManateePlan {
    pub image: String,
    /// IMGAPI's record of the image (None: not in IMGAPI, or not observed).
    pub image_record: Option<ImageInfo>,
    pub strategy: String,
    /// Rollout policy in words: order, parallelism, canary, approval, window.
    pub rollout: Vec<String>,
    pub shards: Vec<ShardReview>,
    /// Things the reviewer must know (strategy not planned, window not enforced, ...).
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ShardOutcome {
    UpToDate,
    Upgrade,
    Refused,
    /// An operation is already running on the shard.
    InFlight,
    NotObserved,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardReview {
    pub shard: String,
    pub outcome: ShardOutcome,
    /// Why refused / not observed, or the in-flight note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `primary manatee0 (img), sync ..., async ...` as observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The strategy the shard resolves to (`rolling`, `transplant (manatee v1 -> v2)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// When it starts: at once, after the canary, when a slot frees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OpReview>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpReview {
    pub id: String,
    pub kind: String,
    pub steps: Vec<StepReview>,
    /// The first irreversible step, if any: before it the operation can be rolled back.
    pub point_of_no_return: Option<String>,
    pub expected_write_outage: String,
    /// Approvals and windows it will wait on.
    pub waits: Vec<String>,
    /// Whether and until when it can be rolled back, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Risk {
    PointOfNoReturn,
    PrimaryDisruption,
    WriteOutage,
    ShardDown,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::PointOfNoReturn => "point of no return",
            Risk::PrimaryDisruption => "primary disruption",
            Risk::WriteOutage => "write outage",
            Risk::ShardDown => "shard down",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReview {
    pub name: String,
    pub description: String,
    pub touches: Vec<String>,
    /// The health gate in front of the step.
    pub gate: String,
    /// When the step counts as done (and its timeout).
    pub done_when: String,
    pub irreversible: bool,
    pub risks: Vec<Risk>,
}

// ---------------------------------------------------------------------------
// ShardTopology

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyPlan {
    /// Whether a reconciler executes this kind in this build.
    pub executed: bool,
    pub vnodes: u32,
    /// Vnodes per index shard after the change.
    pub ring_after: Vec<(String, u32)>,
    /// Vnode moves, per source -> destination shard.
    pub moves: Vec<VnodeMove>,
    pub shards_added: Vec<String>,
    pub shards_removed: Vec<String>,
    /// Peer placement, role and moray changes per shard.
    pub shard_changes: Vec<String>,
    /// The deployed ring image (SAPI HASH_RING_IMAGE), when observed.
    pub ring_image: Option<String>,
    /// What the world has for each shard of the new spec.
    pub observed: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnodeMove {
    pub from: String,
    pub to: String,
    pub count: usize,
    /// Inclusive ranges, ascending (`7`, `10-12`).
    pub vnodes: Vec<String>,
}

// ---------------------------------------------------------------------------
// HeadnodeSet

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadnodePlan {
    pub executed: bool,
    pub datacenter: String,
    /// Membership changes in words: `+ headnode3`, `binder: - headnode2`, ...
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    /// The HA setup of the `sdc` shard (`plan_ha`), when observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manatee: Option<ShardReview>,
}

// ---------------------------------------------------------------------------

/// The document as YAML for the spec diff: fields sorted, no status, no
/// store bookkeeping (generation, resourceVersion).
pub fn review_yaml(doc: &serde_json::Value) -> String {
    let mut v = doc.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(|x| x.as_object_mut()) {
            meta.remove("generation");
            meta.remove("resourceVersion");
        }
    }
    crate::cli::output::to_yaml(&super::canonical(&v))
}

pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// Plan every document. `world` None: only the spec diffs (no observation).
pub async fn review(
    docs: &[Document],
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<Review, String> {
    let mut out = Vec::new();
    for doc in docs {
        out.push(review_one(doc, stored, world).await?);
    }
    Ok(Review {
        format: REVIEW_FORMAT.into(),
        observed: world.map(|w| w.source()),
        documents: out,
    })
}

async fn review_one(
    doc: &Document,
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<DocReview, String> {
    let kind = doc.kind();
    let name = doc.name();
    let old = stored.get(kind, name);
    let new_yaml = review_yaml(&doc.to_value());
    let (change, spec_diff, rv, generation) = match &old {
        None => (
            Change::Create,
            unified("", &new_yaml, "/dev/null", &format!("new {kind}/{name}")),
            None,
            None,
        ),
        Some((_, s)) => {
            let old_yaml = review_yaml(&s.document);
            let change = if old_yaml == new_yaml {
                Change::Unchanged
            } else {
                Change::Update
            };
            (
                change,
                unified(
                    &old_yaml,
                    &new_yaml,
                    &format!(
                        "stored {kind}/{name} (resourceVersion {}, generation {})",
                        s.resource_version, s.generation
                    ),
                    &format!("new {kind}/{name}"),
                ),
                Some(s.resource_version.clone()),
                Some(s.generation),
            )
        }
    };
    let journals = stored.journals(kind, name);
    let mut running = running::decide_all(doc, stored);
    if let Some(w) = world {
        running::refine_with_observation(&mut running, journals, w.manatee()).await;
    }
    let plan = match doc {
        Document::ManateeVersion(mv) => {
            let generation = match (change, generation) {
                (Change::Create, _) | (_, None) => 1,
                (Change::Update, Some(g)) => g + 1,
                (Change::Unchanged, Some(g)) => g,
            };
            KindPlan::Manatee(plan_manatee(name, &mv.spec, generation, stored, world).await?)
        }
        Document::ShardTopology(st) => {
            let old_spec = old.as_ref().and_then(|(d, _)| match d {
                Document::ShardTopology(o) => Some(&o.spec),
                _ => None,
            });
            KindPlan::Topology(plan_topology(old_spec, &st.spec, world).await?)
        }
        Document::HeadnodeSet(hs) => {
            let old_spec = old.as_ref().and_then(|(d, _)| match d {
                Document::HeadnodeSet(o) => Some(&o.spec),
                _ => None,
            });
            KindPlan::Headnodes(plan_headnodes(name, old_spec, &hs.spec, stored, world).await?)
        }
    };
    Ok(DocReview {
        kind: kind.as_str().to_string(),
        name: name.to_string(),
        change,
        stored_resource_version: rv,
        stored_generation: generation,
        spec_diff,
        plan,
        running,
    })
}

/// Shards in the reconciler's rollout order: the canary, then `order`, then the rest.
pub fn rollout_order(spec: &ManateeVersionSpec) -> Vec<String> {
    let mut out: Vec<String> = spec.rollout.canary.iter().cloned().collect();
    for s in spec.rollout.order.iter().chain(&spec.shards) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

fn short(s: &str) -> &str {
    s.split(['-', '.']).next().unwrap_or(s)
}

fn peers_summary(obs: &ShardObservation) -> Vec<String> {
    let mut v: Vec<(u8, String)> = obs
        .peers
        .iter()
        .map(|p| {
            let role = obs.role_of(&p.zone);
            let rank = match role {
                Role::Primary => 0,
                Role::Sync => 1,
                Role::Async => 2,
                Role::Deposed => 3,
                Role::Unassigned => 4,
            };
            let health = if p.vm_state != "running" {
                format!(", {}", p.vm_state)
            } else if !p.active {
                ", not in the election".to_string()
            } else {
                String::new()
            };
            (
                rank,
                format!(
                    "{} {} on image {}{health}",
                    format!("{role:?}").to_lowercase(),
                    p.alias,
                    short(&p.image)
                ),
            )
        })
        .collect();
    v.sort();
    let mut out: Vec<String> = v.into_iter().map(|(_, s)| s).collect();
    if let Some(st) = &obs.state {
        let mut line = format!("cluster state generation {}", st.generation);
        if let Some(r) = obs.freeze_reason() {
            line.push_str(&format!(", frozen ({r})"));
        }
        if st.is_one_node_write_mode() {
            line.push_str(", one-node-write mode");
        }
        out.push(line);
    }
    out
}

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

/// The maintenance window in words.
fn window_words(w: &crds::manatee::MaintenanceWindow) -> String {
    format!(
        "{} {} UTC for {}",
        if w.days.is_empty() {
            "every day".to_string()
        } else {
            w.days.join(",")
        },
        w.start,
        w.duration
    )
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

/// The strategy a shard resolves to, exactly as the controller resolves it
/// (`controller::transplant::reconcile`): the majors of the images the
/// shard's peers run against the target's. `images` maps uuid -> record.
pub fn resolve_shard(
    spec: &ManateeVersionSpec,
    obs: &ShardObservation,
    target: Option<&ImageInfo>,
    images: &BTreeMap<String, Option<ImageInfo>>,
) -> Result<Resolved, reconcilers::error::Refusal> {
    let running: Vec<u32> = obs
        .peers
        .iter()
        .filter_map(|p| images.get(&p.image).and_then(Option::as_ref))
        .filter_map(manatee_major)
        .collect();
    resolve_strategy(
        spec.strategy,
        &running,
        target.and_then(manatee_major),
        &spec.image.uuid,
    )
}

/// The IMGAPI records of the images `uuids` through the world.
async fn image_records(
    m: &dyn reconcilers::manatee::ManateeObserve,
    uuids: impl Iterator<Item = &String>,
) -> Result<BTreeMap<String, Option<ImageInfo>>, String> {
    let mut out = BTreeMap::new();
    for u in uuids {
        if !u.is_empty() && !out.contains_key(u) {
            out.insert(u.clone(), m.image(u).await?);
        }
    }
    Ok(out)
}

/// The v1 shard as the transplant sees it: the election order.
fn transplant_peers(obs: &TransplantObs) -> Vec<String> {
    let topo = obs.legacy_topology();
    let mut out: Vec<String> = topo
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let role = match i {
                0 => "v1 primary",
                1 => "v1 sync",
                _ => "v1 async",
            };
            format!(
                "{role} {} on image {}{}",
                z.alias,
                short(&z.image),
                if z.sitter_onwm {
                    ", one-node-write mode"
                } else {
                    ""
                }
            )
        })
        .collect();
    for z in obs.zones.iter().filter(|z| z.election_seq.is_none()) {
        out.push(format!(
            "{} on image {}, not in the election",
            z.alias,
            short(&z.image)
        ));
    }
    out.push(match &obs.state {
        Some(st) => format!("cluster state generation {}", st.generation),
        None => "no cluster state (manatee v1 keeps none)".into(),
    });
    if !obs.morays.is_empty() {
        out.push(format!(
            "morays: {}",
            obs.morays
                .iter()
                .map(|m| format!(
                    "{} ({}{})",
                    short(&m.zone),
                    m.image_version,
                    if m.enabled { "" } else { ", disabled" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

fn bytes_words(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A transplant step's gate, when it is done, and its risks.
fn describe_transplant_step(
    name: &str,
    doc: &str,
    action: &TransplantAction,
    in_outage: bool,
) -> (String, String, Vec<Risk>) {
    use TransplantAction as T;
    let mut risks = Vec::new();
    if in_outage {
        risks.push(Risk::WriteOutage);
    }
    let (gate, done) = match action {
        T::Approval { .. } => (
            format!("`tritonctl approve manateeversion/{doc}` for step {name}"),
            "approved".to_string(),
        ),
        T::CheckMoray => (
            "none".into(),
            format!(
                "every moray runs an image from {MORAY_COMPATIBLE_MIN_VERSION} on; else blocked (set spec.transplant.morayImage to upgrade them first)"
            ),
        ),
        T::UpgradeMoray { .. } => (
            "another moray online (never zero morays)".into(),
            "the moray runs the new image and is online".into(),
        ),
        T::RecordInitialState { .. } => (
            "the v1 topology (primary, sync) unchanged since planning; else the transplant is planned again".into(),
            "recorded in the journal".into(),
        ),
        T::DisableSitter { .. } => ("none".into(), "the sitter is disabled and out of the election".into()),
        T::EnableSitter { .. } => ("none".into(), "the sitter is online".into()),
        T::PrimaryOnwm { .. } => {
            risks.push(Risk::PrimaryDisruption);
            (
                "none".into(),
                "the v1 primary takes writes alone in one-node-write mode (its sitter restarted)".into(),
            )
        }
        T::Snapshot { .. } => ("none".into(), "the snapshot exists".into()),
        T::SetServiceImage { .. } => ("none".into(), "SAPI's manatee service names the image".into()),
        T::CreateV2Instance { .. } | T::ReprovisionV2 { .. } => (
            "none".into(),
            "the v2 zone runs with its sitter disabled (DISABLE_SITTER, ONE_NODE_WRITE_MODE)".into(),
        ),
        T::PrepareReceive { .. } => (
            "none".into(),
            "the v2 node's sitter is off and its dataset empty".into(),
        ),
        T::StopWrites => ("none".into(), "every moray is disabled".into()),
        T::Send { .. } => (
            "none".into(),
            "the v2 node holds the migrate snapshot (progress in bytes and an ETA in status); timeout 6h".into(),
        ),
        T::WriteOnwmState { .. } => (
            "none".into(),
            "the one-node-write cluster state naming the v2 node is in ZooKeeper, frozen with our reason".into(),
        ),
        T::EnableV2 { .. } => (
            "none".into(),
            "the v2 node is a writable primary".into(),
        ),
        T::StartWrites => ("none".into(), "every moray is online; writes go to the v2 primary".into()),
        T::ReprovisionPeer { .. } => (
            "none".into(),
            "the zone runs the v2 image".into(),
        ),
        T::LeaveOnwm { .. } => {
            risks.push(Risk::PrimaryDisruption);
            (
                "none".into(),
                "ONE_NODE_WRITE_MODE and DISABLE_SITTER cleared in SAPI, the v2 primary's sitter restarted, our freeze lifted".into(),
            )
        }
        T::WaitPeers { count, .. } => (
            "none".into(),
            format!("{count} healthy v2 peers: the primary writable, the others placed, nothing deposed"),
        ),
        T::ReleaseSnapshot { .. } => ("none".into(), "the backup snapshot is destroyed".into()),
        T::RetireZone { .. } => ("none".into(), "the old v1 primary zone is deleted".into()),
        T::PrimaryLeaveOnwm { .. } | T::RevertAsync { .. } | T::DeleteState { .. } => {
            ("none".into(), "rolled back".into())
        }
    };
    (gate, done, risks)
}

fn transplant_review(
    spec: &ManateeVersionSpec,
    doc: &str,
    tobs: &TransplantObs,
    op: &Operation<TransplantAction>,
) -> OpReview {
    let pos = |n: &str| op.status.steps.iter().position(|s| s.name == n);
    let (stop, start) = (pos("stop-writes"), pos("start-writes"));
    let pnr = op.status.point_of_no_return;
    let mut steps = Vec::new();
    let mut waits = Vec::new();
    for (i, s) in op.status.steps.iter().enumerate() {
        let action = &op.actions[i];
        let in_outage = matches!((stop, start), (Some(a), Some(b)) if a <= i && i <= b);
        let (gate, done_when, mut risks) =
            describe_transplant_step(&s.name, doc, action, in_outage);
        if s.irreversible || pnr == Some(i) {
            risks.insert(0, Risk::PointOfNoReturn);
        }
        if let TransplantAction::Approval { what } = action {
            waits.push(format!(
                "approval of {what}: `tritonctl approve manateeversion/{doc}`"
            ));
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
    if let Some(w) = &spec.rollout.maintenance_window {
        waits.push(format!(
            "maintenance window {}: NOT applied to the transplant (its runner does not gate on spec.rollout.maintenanceWindow); hold it with approval or spec.rollout.paused",
            window_words(w)
        ));
    }
    let primary = tobs.legacy_topology().first().map(|z| (*z).clone());
    let size = primary
        .as_ref()
        .and_then(|p| p.dataset_bytes)
        .map(|b| format!(" ({} observed on the v1 primary)", bytes_words(b)))
        .unwrap_or_default();
    let n = |i: Option<usize>| i.map_or("?".to_string(), |i| (i + 1).to_string());
    let restarts: Vec<&str> = ["primary-one-node-write-mode", "leave-one-node-write-mode"]
        .into_iter()
        .filter(|x| pos(x).is_some())
        .collect();
    let outage = format!(
        "writes stop from step {} stop-writes to step {} start-writes (the runbook's steps 6-7): the v1 primary's sitter stops, its migrate snapshot is sent to the v2 node{size}, and the v2 sitter comes up as primary; bounded by the send timeout (6h) plus {} + {}.{}",
        n(stop),
        n(start),
        spec.health.instance_up_timeout,
        spec.health.catch_up_timeout,
        if restarts.is_empty() {
            String::new()
        } else {
            format!(
                " The sitter restart of {} pauses writes briefly",
                restarts.join(" and ")
            )
        }
    );
    let pnr_name = pnr
        .and_then(|i| op.status.steps.get(i))
        .map(|s| s.name.clone());
    let rollback = Some(format!(
        "before step {} {}: `tritonctl cancel manateeversion/{doc}` (or a step that fails or times out) rolls back as the runbook says: the cluster state tritonctl wrote deleted, the v1 primary out of one-node-write mode with config-agent back, the sitters re-enabled sync first, the async back on its old image or the new zone deleted. From step {} on: forward only; a failure stops Blocked, and the reverse transplant or the backup restore is a person's decision (`tritonctl approve`)",
        n(pnr),
        pnr_name.as_deref().unwrap_or(PNR_STEP),
        n(pnr)
    ));
    OpReview {
        id: op.status.id.clone(),
        kind: op.status.kind.clone(),
        point_of_no_return: pnr_name,
        steps,
        expected_write_outage: outage,
        waits,
        rollback,
    }
}

fn not_observed(shard: &str, message: String) -> ShardReview {
    ShardReview {
        shard: shard.to_string(),
        outcome: ShardOutcome::NotObserved,
        message: Some(message),
        peers: vec![],
        strategy: None,
        starts: None,
        operation: None,
    }
}

/// Where a transplant journal is, in words.
fn transplant_position(j: &TransplantJournal) -> String {
    let op = match &j.rollback {
        Some(rb) if j.forward.status.phase == OperationPhase::RollingBack => rb,
        _ => &j.forward,
    };
    let n = op.status.steps.len();
    let at = match op.current() {
        Some(i) => {
            let s = &op.status.steps[i];
            format!(
                "step {}/{n} {} ({})",
                i + 1,
                s.name,
                format!("{:?}", s.state).to_lowercase()
            )
        }
        None => format!("all {n} steps done"),
    };
    if j.rollback.is_some() {
        format!("rolling back, {at}")
    } else {
        at
    }
}

async fn plan_manatee(
    name: &str,
    spec: &ManateeVersionSpec,
    generation: i64,
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<ManateePlan, String> {
    let mut rollout = vec![format!("order: {}", rollout_order(spec).join(", "))];
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
    let mut resolved: BTreeMap<String, Result<Resolved, reconcilers::error::Refusal>> =
        BTreeMap::new();
    let mut transplant_queue: Vec<String> = Vec::new();
    let mut blocked_by: Option<(String, String)> = None;
    for shard in &spec.shards {
        if open_transplant(shard).is_some() {
            transplant_queue.push(shard.clone());
            continue;
        }
        let obs = m.observe(shard).await;
        if let Ok(o) = &obs {
            let imgs = image_records(m, o.peers.iter().map(|p| &p.image)).await?;
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
    if let Some((s, reason)) = &blocked_by {
        warnings.push(format!(
            "shard {s} is refused ({reason}) before anything runs: the controller starts no operation of this document, on any shard, until the document is fixed"
        ));
    }

    let mut active = journals
        .iter()
        .filter(|j| !j.operation.is_finished())
        .count();
    let parallelism = spec.rollout.parallelism.max(1) as usize;
    let mut up_to_date: Vec<String> = Vec::new();
    let mut shards = Vec::new();
    let mut rolling_planned = false;
    let blocked_start = |b: &(String, String)| {
        format!(
            "not while shard {} is refused ({}): the controller runs nothing of this document",
            b.0, b.1
        )
    };
    for shard in rollout_order(spec) {
        if let Some(t) = open_transplant(&shard) {
            let f = &t.journal.forward;
            let rb = if f.status.can_roll_back() {
                format!(
                    "rollback still possible (`tritonctl cancel manateeversion/{name}`), until step {}",
                    f.status
                        .point_of_no_return
                        .map_or("?".into(), |p| (p + 1).to_string())
                )
            } else {
                "past its point of no return: forward only".into()
            };
            shards.push(ShardReview {
                shard: shard.clone(),
                outcome: ShardOutcome::InFlight,
                message: Some(format!(
                    "transplant {} is at {}; {rb}. The controller drives it to its end before planning anything else for this document (see running operations)",
                    f.status.id,
                    transplant_position(&t.journal)
                )),
                peers: vec![],
                strategy: Some("transplant (in flight)".into()),
                starts: None,
                operation: None,
            });
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
            Err(reconcilers::error::Refusal { reason, message }) => {
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
                let tobs = match world.transplant(&shard).await {
                    Ok(t) => t,
                    Err(e) => {
                        shards.push(not_observed(
                            &shard,
                            format!("could not observe the shard for the transplant: {e}"),
                        ));
                        continue;
                    }
                };
                let zone_images = image_records(m, tobs.zones.iter().map(|z| &z.image)).await?;
                let mut majors: BTreeMap<String, u32> = zone_images
                    .iter()
                    .filter_map(|(u, i)| Some((u.clone(), manatee_major(i.as_ref()?)?)))
                    .collect();
                if let Some(t) = image.as_ref().and_then(manatee_major) {
                    majors.insert(spec.image.uuid.clone(), t);
                }
                let from = tobs
                    .zones
                    .iter()
                    .filter_map(|z| majors.get(&z.image))
                    .min()
                    .copied()
                    .unwrap_or(1);
                let to = image.as_ref().and_then(manatee_major).unwrap_or(2);
                let why = format!(
                    "transplant, manatee v{from} -> v{to}{}",
                    if spec.strategy == Strategy::Auto {
                        ", strategy auto across majors"
                    } else {
                        ""
                    }
                );
                let op_id = format!("mv-{name}-{shard}-transplant-planned");
                let peers = transplant_peers(&tobs);
                match plan_transplant(spec, &tobs, &majors, &op_id) {
                    Ok(op) => {
                        let starts = if let Some(b) = &blocked_by {
                            blocked_start(b)
                        } else if spec.rollout.paused {
                            "paused (spec.rollout.paused)".to_string()
                        } else {
                            match transplant_queue.iter().position(|s| s == &shard) {
                                Some(0) | None => "at once (one transplant at a time, before any rolling upgrade of this document)".to_string(),
                                Some(i) => format!(
                                    "after the transplant of {} ends (one transplant at a time)",
                                    transplant_queue[i - 1]
                                ),
                            }
                        };
                        shards.push(ShardReview {
                            operation: Some(transplant_review(spec, name, &tobs, &op)),
                            shard,
                            outcome: ShardOutcome::Upgrade,
                            message: op.status.message.clone(),
                            peers,
                            strategy: Some(why),
                            starts: Some(starts),
                        });
                    }
                    Err(reconcilers::error::Refusal { reason, message }) => {
                        shards.push(ShardReview {
                            shard,
                            outcome: ShardOutcome::Refused,
                            message: Some(format!("{reason}: {message}")),
                            peers,
                            strategy: Some(why),
                            starts: None,
                            operation: None,
                        })
                    }
                }
                continue;
            }
            Ok(Resolved::Rolling) => {}
        }
        let op_id = format!(
            "mv-{name}-{}-g{generation}-planned",
            shard.split('.').next().unwrap_or(&shard)
        );
        let rolling = Some("rolling".to_string());
        match plan_shard(spec, &obs, image.as_ref(), &op_id) {
            ShardPlan::UpToDate => {
                up_to_date.push(shard.clone());
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
            ShardPlan::Refused(reconcilers::error::Refusal { reason, message }) => {
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
                let canary_pending = spec
                    .rollout
                    .canary
                    .as_ref()
                    .is_some_and(|c| c != &shard && !up_to_date.contains(c));
                let starts = if let Some(b) = &blocked_by {
                    blocked_start(b)
                } else if spec.rollout.paused {
                    "paused (spec.rollout.paused)".to_string()
                } else if !transplant_queue.is_empty() {
                    format!(
                        "after the transplant of {} ends (the controller runs transplants first)",
                        transplant_queue.join(", ")
                    )
                } else if canary_pending {
                    format!(
                        "after the canary {} is up to date",
                        spec.rollout.canary.as_deref().unwrap_or("")
                    )
                } else if active < parallelism {
                    active += 1;
                    "at once".to_string()
                } else {
                    format!("when one of the {parallelism} running shard operation(s) ends")
                };
                shards.push(ShardReview {
                    operation: Some(op_review(spec, name, &obs, &op)),
                    shard,
                    outcome: ShardOutcome::Upgrade,
                    message: None,
                    peers,
                    strategy: rolling,
                    starts: Some(starts),
                });
            }
        }
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

// ---------------------------------------------------------------------------
// Rings

/// The ring a topology spec describes: the one builder the controller and
/// the simulator use too (`crds::ring::topology_ring`; its docs give the
/// rules).
pub fn desired_ring(spec: &ShardTopologySpec) -> Result<Ring, String> {
    crds::ring::topology_ring(spec).map_err(|e| e.to_string())
}

/// Sorted vnodes as inclusive ranges.
pub fn ranges(vs: &[u32]) -> Vec<String> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in vs {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == v => *hi = v,
            _ => out.push((v, v)),
        }
    }
    out.into_iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect()
}

async fn plan_topology(
    old: Option<&ShardTopologySpec>,
    new: &ShardTopologySpec,
    world: Option<&dyn World>,
) -> Result<TopologyPlan, String> {
    let after = desired_ring(new)?;
    let mut notes = vec![format!(
        "No reconciler executes ShardTopology in this build: apply stores the document and nothing in the datacenter changes. The moves below are exactly what the new ring changes; no resharding steps are planned or run."
    )];
    let mut moves = Vec::new();
    let (mut added, mut removed, mut shard_changes) = (Vec::new(), Vec::new(), Vec::new());
    match old {
        Some(old) => {
            let before = desired_ring(old)?;
            if before.vnode_count() != after.vnode_count() {
                notes.push(format!(
                    "spec.ring.vnodes changes {} -> {}: a ring's vnode count is fixed for its life; this needs a new ring, not a remap",
                    before.vnode_count(),
                    after.vnode_count()
                ));
            } else {
                let d = before.diff(&after).map_err(|e| e.to_string())?;
                for m in d.moves {
                    moves.push(VnodeMove {
                        count: m.vnodes.len(),
                        vnodes: ranges(&m.vnodes),
                        from: m.from,
                        to: m.to,
                    });
                }
            }
            for s in &new.shards {
                match old.shards.iter().find(|o| o.name == s.name) {
                    None => added.push(s.name.clone()),
                    Some(o) => {
                        let servers = |x: &crds::shards::MetadataShard| -> BTreeSet<String> {
                            x.peers.iter().map(|p| p.server.clone()).collect()
                        };
                        let (a, b) = (servers(o), servers(s));
                        for p in b.difference(&a) {
                            shard_changes.push(format!("{}: + peer on {p}", s.name));
                        }
                        for p in a.difference(&b) {
                            shard_changes.push(format!("{}: - peer on {p}", s.name));
                        }
                        if o.roles != s.roles {
                            shard_changes
                                .push(format!("{}: roles {:?} -> {:?}", s.name, o.roles, s.roles));
                        }
                        if o.morays != s.morays {
                            shard_changes
                                .push(format!("{}: morays {} -> {}", s.name, o.morays, s.morays));
                        }
                    }
                }
            }
            for o in &old.shards {
                if !new.shards.iter().any(|s| s.name == o.name) {
                    removed.push(o.name.clone());
                }
            }
        }
        None => {
            notes.push(format!(
                "No ShardTopology {} is stored: the ring is described for the first time ({} vnodes); nothing moves relative to the store.",
                new.region,
                after.vnode_count()
            ));
            added = new.shards.iter().map(|s| s.name.clone()).collect();
        }
    }
    let mut ring_image = None;
    let mut observed = Vec::new();
    if let Some(w) = world {
        ring_image = w.ring_image().await.unwrap_or(None);
        if old.is_none() && ring_image.is_some() {
            notes.push(format!(
                "A ring image {} is deployed but no ShardTopology is stored: the deployed ring's contents are not compared here.",
                ring_image.as_deref().unwrap_or("")
            ));
        }
        for s in &new.shards {
            observed.push(match w.manatee().observe(&s.name).await {
                Ok(o) if o.peers.is_empty() => {
                    format!(
                        "{}: no manatee peers exist yet ({} planned)",
                        s.name,
                        s.peers.len()
                    )
                }
                Ok(o) => format!(
                    "{}: {} peer(s){}",
                    s.name,
                    o.peers.len(),
                    o.state
                        .as_ref()
                        .map(|st| format!(", cluster state generation {}", st.generation))
                        .unwrap_or_else(|| ", no cluster state".into())
                ),
                Err(e) => format!("{}: not observed: {e}", s.name),
            });
        }
    }
    Ok(TopologyPlan {
        executed: executed(Kind::ShardTopology),
        vnodes: new.ring.vnodes,
        ring_after: after
            .vnode_counts()
            .map(|(p, c)| (p.to_string(), c))
            .collect(),
        moves,
        shards_added: added,
        shards_removed: removed,
        shard_changes,
        ring_image,
        observed,
        notes,
    })
}

fn set_changes(what: &str, old: &[String], new: &[String], out: &mut Vec<String>) {
    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
        (old.iter().collect(), new.iter().collect());
    for x in b.difference(&a) {
        out.push(format!("{what}: + {x}"));
    }
    for x in a.difference(&b) {
        out.push(format!("{what}: - {x}"));
    }
}

fn describe_ha_step(action: &HaAction) -> (String, String, Vec<Risk>) {
    match action {
        HaAction::Preflight => (
            "none".into(),
            "the shard is set up: primary up, nothing deposed, no foreign freeze".into(),
            vec![],
        ),
        HaAction::CreatePeer { .. } => (
            "every placed peer up (else waits)".into(),
            "the zone runs and its sitter is in the election; timeout 5m".into(),
            vec![],
        ),
        HaAction::LeaveOneNodeWriteMode => (
            "the shard still in one-node-write mode with a second peer".into(),
            "ONE_NODE_WRITE_MODE gone from the SAPI metadata".into(),
            vec![],
        ),
        HaAction::UnfreezeSetup => (
            "only manatee's own setup freeze is lifted".into(),
            "the setup freeze is gone".into(),
            vec![],
        ),
        HaAction::RestartPrimarySitter => (
            "the new peer is up, the primary found in the cluster state when the step runs".into(),
            "the primary left one-node-write mode and names the new peer as sync".into(),
            vec![Risk::PrimaryDisruption, Risk::WriteOutage],
        ),
        HaAction::WaitSync => (
            "none".into(),
            "the primary replicates synchronously to a caught-up sync; timeout 15m".into(),
            vec![],
        ),
        HaAction::WaitHealthy => (
            "none".into(),
            "every peer placed and caught up; timeout 15m".into(),
            vec![],
        ),
    }
}

fn ha_review(op: &Operation<HaAction>, one_node: bool) -> OpReview {
    let steps: Vec<StepReview> = op
        .status
        .steps
        .iter()
        .zip(&op.actions)
        .map(|(s, a)| {
            let (gate, done_when, risks) = describe_ha_step(a);
            StepReview {
                name: s.name.clone(),
                description: s.description.clone(),
                touches: s.touches.clone(),
                gate,
                done_when,
                irreversible: s.irreversible,
                risks,
            }
        })
        .collect();
    OpReview {
        id: op.status.id.clone(),
        kind: op.status.kind.clone(),
        point_of_no_return: None,
        steps,
        expected_write_outage: if one_node {
            "writes pause from restart-primary-sitter until the new sync has caught up (wait-sync): the primary leaves one-node-write mode and replicates synchronously from then on; bounded by 15m".into()
        } else {
            "none expected: new peers join as asyncs".into()
        },
        waits: vec![
            "no approval and no maintenance window: the HA setup's runner does not gate on them".into(),
            "the shard lock: it starts when no rolling upgrade of a ManateeVersion holds shard sdc (a transplant does not take the lock)".into(),
        ],
        rollback: Some(
            "no automatic rollback; every step is reversible by hand (delete the new zones, set ONE_NODE_WRITE_MODE again)".into(),
        ),
    }
}

async fn plan_headnodes(
    name: &str,
    old: Option<&HeadnodeSetSpec>,
    new: &HeadnodeSetSpec,
    stored: &StoredView,
    world: Option<&dyn World>,
) -> Result<HeadnodePlan, String> {
    let mut changes = Vec::new();
    let mut notes = vec![
        "The HeadnodeSet reconciler executes the manatee placement of shard sdc only (`sdcadm post-setup ha-manatee` as journaled steps: it adds the peers haServices.manatee names, never removes one). Headnode membership, binder, moray and decommission changes are stored; no steps are planned or run for them.".to_string(),
    ];
    let empty = Vec::new();
    match old {
        Some(o) => {
            set_changes("headnodes", &o.headnodes, &new.headnodes, &mut changes);
            if o.primary != new.primary {
                changes.push(format!("primary: {} -> {}", o.primary, new.primary));
            }
            set_changes(
                "binder",
                &o.ha_services.binder,
                &new.ha_services.binder,
                &mut changes,
            );
            set_changes(
                "manatee",
                &o.ha_services.manatee,
                &new.ha_services.manatee,
                &mut changes,
            );
            set_changes(
                "moray",
                &o.ha_services.moray,
                &new.ha_services.moray,
                &mut changes,
            );
            set_changes(
                "decommission",
                &o.decommission,
                &new.decommission,
                &mut changes,
            );
            let removed: Vec<&String> = o
                .ha_services
                .manatee
                .iter()
                .filter(|s| !new.ha_services.manatee.contains(s))
                .collect();
            if !removed.is_empty() {
                notes.push(format!(
                    "manatee peers on {} are not removed: the HA setup only adds peers; the shard keeps them (remove them by hand, one at a time, after the new peer is caught up)",
                    removed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        None => {
            notes.push(format!(
                "No HeadnodeSet for {} is stored: the set is described for the first time.",
                new.datacenter
            ));
            set_changes("headnodes", &empty, &new.headnodes, &mut changes);
            changes.push(format!("primary: {}", new.primary));
            set_changes("binder", &empty, &new.ha_services.binder, &mut changes);
            set_changes("manatee", &empty, &new.ha_services.manatee, &mut changes);
            set_changes("moray", &empty, &new.ha_services.moray, &mut changes);
            set_changes("decommission", &empty, &new.decommission, &mut changes);
        }
    }
    if !new.decommission.is_empty() {
        notes.push(format!(
            "decommission {}: their HA instances would have to move first (binder quorum, manatee primary+sync and one moray kept at every step)",
            new.decommission.join(", ")
        ));
    }
    let (manatee, refusal) = match world {
        None => (None, None),
        Some(w) => {
            let (review, refusal) = plan_sdc_ha(name, new, w).await?;
            (Some(review), refusal)
        }
    };
    if refusal == Some(reconcilers::error::RefusalReason::UnknownServer)
        && let Some(w) = world
        && w.resolve_servers(&new.ha_services.manatee)
            .await
            .is_ok_and(|d| d.iter().all(|x| x.uuid.is_none()))
    {
        notes.push(format!(
            "none of the servers haServices.manatee names is in the reviewed datacenter's CNAPI: this HeadnodeSet (datacenter {}) may belong to another datacenter; review it against that one",
            new.datacenter
        ));
    }
    // The transplant does not take the shard lock (controller::transplant):
    // an HA setup could start on shard sdc while one is in flight.
    for (key, ts) in &stored.transplants {
        for t in ts
            .iter()
            .filter(|t| t.target == "sdc" && !t.journal.forward.is_finished())
        {
            notes.push(format!(
                "{key}: transplant {} is in flight on shard sdc and does not take the shard lock; hold this HeadnodeSet change until it has finished, or the HA setup may start during it",
                t.journal.forward.status.id
            ));
        }
    }
    Ok(HeadnodePlan {
        executed: executed(Kind::HeadnodeSet),
        datacenter: new.datacenter.clone(),
        changes,
        notes,
        manatee,
    })
}

/// The HA setup the HeadnodeSet reconciler would run on shard sdc
/// (controller::reconcile_ha), from the same pure `plan_ha`.
/// The review of shard sdc's HA setup, and the planner's refusal reason if it refused.
async fn plan_sdc_ha(
    name: &str,
    spec: &HeadnodeSetSpec,
    world: &dyn World,
) -> Result<(ShardReview, Option<reconcilers::error::RefusalReason>), String> {
    const SHARD: &str = "sdc";
    let obs = match world.manatee().observe(SHARD).await {
        Ok(o) => o,
        Err(e) => return Ok((not_observed(SHARD, format!("could not observe: {e}")), None)),
    };
    let desired = match world.resolve_servers(&spec.ha_services.manatee).await {
        Ok(d) => d,
        Err(e) => {
            return Ok((
                not_observed(SHARD, format!("could not resolve servers: {e}")),
                None,
            ));
        }
    };
    let peers = peers_summary(&obs);
    let one_node = obs
        .state
        .as_ref()
        .is_some_and(|s| s.is_one_node_write_mode());
    let op_id = format!("ha-{name}-sdc-planned");
    let strategy = Some("HA setup, sdcadm post-setup ha-manatee".to_string());
    let plan = plan_ha(&obs, &desired, "manatee", &op_id);
    let refusal = match &plan {
        HaPlan::Refused(r) => Some(r.reason),
        _ => None,
    };
    let review = match plan {
        HaPlan::UpToDate => ShardReview {
            shard: SHARD.into(),
            outcome: ShardOutcome::UpToDate,
            message: Some(format!(
                "a peer on each of {}",
                spec.ha_services.manatee.join(", ")
            )),
            peers,
            strategy,
            starts: None,
            operation: None,
        },
        HaPlan::Refused(reconcilers::error::Refusal { reason, message }) => ShardReview {
            shard: SHARD.into(),
            outcome: ShardOutcome::Refused,
            message: Some(format!("{reason}: {message}")),
            peers,
            strategy,
            starts: None,
            operation: None,
        },
        HaPlan::Grow(op) => ShardReview {
            shard: SHARD.into(),
            outcome: ShardOutcome::Upgrade,
            message: Some(format!(
                "grow shard sdc to a peer on each of {}",
                spec.ha_services.manatee.join(", ")
            )),
            peers,
            strategy,
            starts: Some("once shard sdc's lock is free".into()),
            operation: Some(ha_review(&op, one_node)),
        },
    };
    Ok((review, refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnode_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), vec!["0-2", "5", "7-8"]);
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn spec_yaml_is_sorted_and_leaves_out_status_and_bookkeeping() {
        let v = serde_json::json!({
            "spec": {"b": 1, "a": 2},
            "metadata": {"name": "x", "resourceVersion": "3", "generation": 2},
            "status": {"conditions": []},
            "kind": "K"
        });
        let y = review_yaml(&v);
        assert!(
            !y.contains("status") && !y.contains("resourceVersion") && !y.contains("generation")
        );
        assert!(y.find("kind").unwrap() < y.find("metadata").unwrap());
        assert!(y.find("a: 2").unwrap() < y.find("b: 1").unwrap());
    }
}
