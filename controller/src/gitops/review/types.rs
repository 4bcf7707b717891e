//! The review's data: what `diff -o json` prints and a saved plan holds.

use reconcilers::manatee::ImageInfo;
use serde::{Deserialize, Serialize};

use crate::gitops::running::{self, RunningDecision};

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

    /// What the review asked the datacenter (or a snapshot) and could not
    /// learn, per document and shard. Empty when nothing was to be observed
    /// (no endpoints, no snapshot): that review is spec changes only.
    pub fn observation_failures(&self) -> Vec<String> {
        if self.observed.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for d in &self.documents {
            let shards: Vec<&ShardReview> = match &d.plan {
                KindPlan::Manatee(m) => m.shards.iter().collect(),
                KindPlan::Headnodes(h) => h.manatee.iter().collect(),
                KindPlan::Topology(_) => Vec::new(),
            };
            for s in shards {
                if s.outcome == ShardOutcome::NotObserved {
                    out.push(format!(
                        "{}: shard {}: {}",
                        d.key(),
                        s.shard,
                        s.message.as_deref().unwrap_or("not observed")
                    ));
                }
            }
        }
        out
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
            KindPlan::Topology(t) => !t.moves.is_empty() || !t.refusal.is_empty(),
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
    /// The resharding operations planned against the live ring, one per
    /// move, in order (empty: nothing to do, or not observed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<ReshardReview>,
    /// Why the document is refused against the live ring: each difference
    /// other than by its moves, per shard, as ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusal: Vec<String>,
}

/// One resharding operation: a move of vnodes from one shard to another,
/// its steps (the reconciler's step names), the read-only window and the
/// point of no return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReshardReview {
    /// The change it carries out (`spec.ring.intents[i]`'s name).
    pub name: String,
    /// Shard names.
    pub from: String,
    pub to: String,
    pub count: usize,
    /// Inclusive ranges, ascending.
    pub vnodes: Vec<String>,
    pub steps: Vec<ReshardStepReview>,
    pub read_only_window: ReadOnlyWindow,
    /// The step that cannot be undone.
    pub point_of_no_return: String,
    /// What a cancel or failure does before it, and what going back means after it.
    pub rollback: String,
    /// Approvals it waits on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReshardStepReview {
    /// The canonical step name (`preflight`, `mark-ro`, `install-ring`, ...).
    pub name: String,
    pub description: String,
    /// Inside the read-only window of the moving vnodes.
    pub read_only: bool,
    pub irreversible: bool,
}

/// When the moving vnodes refuse writes, and for about how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadOnlyWindow {
    /// Vnodes that refuse writes in the window (the moving ones only).
    pub vnodes: usize,
    /// First and last step of the window.
    pub opens_at: String,
    pub closes_at: String,
    /// Estimated length in seconds.
    pub estimate_seconds: u64,
    /// What the estimate rests on, one line per step inside the window.
    pub rests_on: Vec<String>,
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
