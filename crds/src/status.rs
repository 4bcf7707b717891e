//! Status shared by every kind, following the Kubernetes API conventions:
//! `observedGeneration`, typed conditions, and the operation in flight with
//! its full step list, the locks it holds and its point of no return.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Status {
    /// The `metadata.generation` the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The operation in flight, or the last one to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStatus>,
    /// Coordination locks held on behalf of this document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<LockStatus>,
    /// What the controller last observed, in a kind-specific shape
    /// (per-shard images and roles, ring owner counts, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<serde_json::Value>,
}

impl Status {
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == kind)
    }

    pub fn is_true(&self, kind: ConditionType) -> bool {
        self.condition(kind)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// Set a condition; `lastTransitionTime` changes only when `status` flips.
    pub fn set_condition(
        &mut self,
        kind: ConditionType,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: &str,
    ) {
        let observed_generation = self.observed_generation;
        match self.conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now.to_string();
                }
                c.status = status;
                c.reason = reason.to_string();
                c.message = message.to_string();
                c.observed_generation = observed_generation;
            }
            None => self.conditions.push(Condition {
                type_: kind,
                status,
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: now.to_string(),
                observed_generation,
            }),
        }
        self.conditions.sort_by_key(|c| c.type_);
    }
}

/// The condition types every kind reports.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum ConditionType {
    /// The observed world matches the spec.
    Ready,
    /// An operation is converging the world towards the spec.
    Progressing,
    /// Something is wrong that the controller cannot fix by itself.
    Degraded,
    /// `tritonctl pause` stopped the rollout at a safe point.
    Paused,
    /// The next step waits for `tritonctl approve`.
    AwaitingApproval,
    /// A precondition or health gate refuses to let the operation start or go on.
    Blocked,
}

impl ConditionType {
    pub const ALL: [ConditionType; 6] = [
        ConditionType::Ready,
        ConditionType::Progressing,
        ConditionType::Degraded,
        ConditionType::Paused,
        ConditionType::AwaitingApproval,
        ConditionType::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::Paused => "Paused",
            ConditionType::AwaitingApproval => "AwaitingApproval",
            ConditionType::Blocked => "Blocked",
        }
    }

    pub fn parse(s: &str) -> Option<ConditionType> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: ConditionStatus,
    /// One CamelCase word a program can match on, e.g. `DeposedPeer`.
    pub reason: String,
    /// A sentence for a person.
    pub message: String,
    /// RFC 3339 time the status last changed.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An operation: the ordered steps a reconciler runs to converge one target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationStatus {
    /// Unique id; resources the operation creates are tagged with it.
    pub id: String,
    /// What kind of operation, e.g. `manatee-rolling-upgrade`.
    pub kind: String,
    /// What it acts on, e.g. the shard `sdc`.
    pub target: String,
    pub phase: OperationPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub steps: Vec<StepStatus>,
    /// Index of the first irreversible step: before it the operation can be
    /// rolled back, from it on it can only go forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_of_no_return: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl OperationStatus {
    /// Whether rolling back is still possible (no irreversible step has started).
    pub fn can_roll_back(&self) -> bool {
        match self.point_of_no_return {
            None => true,
            Some(p) => self
                .steps
                .get(p)
                .is_none_or(|s| s.state == StepState::Pending),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OperationPhase {
    #[default]
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    RollingBack,
    RolledBack,
    Cancelled,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepStatus {
    /// Stable machine name, e.g. `reprovision-async`.
    pub name: String,
    /// What the step does, for a person.
    pub description: String,
    pub state: StepState,
    /// Zones, peers, vnodes or servers the step touches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepState {
    #[default]
    Pending,
    Running,
    /// Waiting on a gate: approval, maintenance window, pause or health.
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    RolledBack,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockStatus {
    /// The coordination path of the lock, e.g. `/tritonctl/v1/locks/shard/sdc`.
    pub path: String,
    /// Operation id holding it.
    pub holder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquired_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_transition_time_moves_only_on_flip() {
        let mut s = Status::default();
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "Progressing",
            "a",
            "t1",
        );
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "Progressing",
            "b",
            "t2",
        );
        assert_eq!(
            s.condition(ConditionType::Ready)
                .unwrap()
                .last_transition_time,
            "t1"
        );
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            "Converged",
            "c",
            "t3",
        );
        let c = s.condition(ConditionType::Ready).unwrap();
        assert_eq!(
            (c.last_transition_time.as_str(), c.message.as_str()),
            ("t3", "c")
        );
        assert!(s.is_true(ConditionType::Ready));
    }

    #[test]
    fn rollback_possible_until_point_of_no_return_starts() {
        let step = |state| StepStatus {
            name: "s".into(),
            state,
            ..Default::default()
        };
        let mut op = OperationStatus {
            steps: vec![step(StepState::Succeeded), step(StepState::Pending)],
            point_of_no_return: Some(1),
            ..Default::default()
        };
        assert!(op.can_roll_back());
        op.steps[1].state = StepState::Running;
        assert!(!op.can_roll_back());
    }
}
