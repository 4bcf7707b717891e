//! Typed errors and reasons shared by every reconciler and the world
//! implementations: what went wrong talking to the datacenter
//! ([`WorldError`]), why a planner refuses ([`Refusal`]), why the engine
//! stopped ([`BlockReason`]) or waits ([`WaitReason`]).
//!
//! Decisions are taken on these enums, never on message text. Their
//! `as_str()` / `Display` are the exact reason strings that appear in status
//! conditions, events and the review's golden files.

use std::fmt;

use coord::CoordError;

/// Why a planner (or a gate) refuses to go on until a person acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    // Rolling upgrade preflight (`manatee::preflight`, `plan_shard_with`).
    UnknownImage,
    ImageNotActive,
    NoClusterState,
    DeposedPeer,
    DeposedPeerDown,
    FrozenByOther,
    NoSync,
    UnhealthyPeer,
    InvalidMaintenanceWindow,
    // Strategy resolution (`transplant::resolve_strategy`).
    MajorDowngrade,
    MajorVersionChange,
    NoMajorChange,
    UnknownMajor,
    // Transplant preflight (`transplant::plan_transplant`).
    ClusterStateExists,
    NoActivePeer,
    MixedMajors,
    NoAsync,
    // HA setup (`manatee_ha::plan_ha`).
    UnknownServer,
    TwoPeers,
    // Switchover (`manatee::switchover`).
    /// A planned promotion needs an async to become the new sync.
    SwitchoverNeedsAsync,
    /// The image's manatee does not act on a promote request.
    PromoteUnsupported,
    /// A promote request someone else wrote is still in the cluster state.
    PromotePending,
    // The controller: another document's operation holds the shard.
    ShardLocked,
    /// The mutation guard: this process is not the elected leader; nothing was sent.
    NotLeader,
    /// A world that only observes (a recorded snapshot) was asked to act.
    ReadOnly,
    // Resharding (`reshard`).
    /// The server of the source shard's primary is down.
    PrimaryDown,
    /// An electric-moray is unreachable or not on the live ring at preflight.
    ElectricMorayNotReady,
    /// The live ring image cannot be read.
    RingUnreadable,
    /// A ring rollout would put non-adjacent ring stages in service together.
    MixedRing,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        use RefusalReason::*;
        match self {
            UnknownImage => "UnknownImage",
            ImageNotActive => "ImageNotActive",
            NoClusterState => "NoClusterState",
            DeposedPeer => "DeposedPeer",
            DeposedPeerDown => "DeposedPeerDown",
            FrozenByOther => "FrozenByOther",
            NoSync => "NoSync",
            UnhealthyPeer => "UnhealthyPeer",
            InvalidMaintenanceWindow => "InvalidMaintenanceWindow",
            MajorDowngrade => "MajorDowngrade",
            MajorVersionChange => "MajorVersionChange",
            NoMajorChange => "NoMajorChange",
            UnknownMajor => "UnknownMajor",
            ClusterStateExists => "ClusterStateExists",
            NoActivePeer => "NoActivePeer",
            MixedMajors => "MixedMajors",
            NoAsync => "NoAsync",
            UnknownServer => "UnknownServer",
            TwoPeers => "TwoPeers",
            SwitchoverNeedsAsync => "SwitchoverNeedsAsync",
            PromoteUnsupported => "PromoteUnsupported",
            PromotePending => "PromotePending",
            ShardLocked => "ShardLocked",
            NotLeader => "NotLeader",
            ReadOnly => "ReadOnly",
            PrimaryDown => "PrimaryDown",
            ElectricMorayNotReady => "ElectricMorayNotReady",
            RingUnreadable => "RingUnreadable",
            MixedRing => "MixedRing",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the typed reason and the words for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// Shows the message (the reason travels separately, as a condition's reason).
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// Why the engine (or a runner's gate) stopped an operation at a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// A failed step that may not be retried without an operator's approval.
    StepFailed,
    /// A step's completion check did not finish within its timeout.
    StepTimedOut,
    /// The shard changed under the plan (takeover, promotion): plan again.
    Replan,
    /// A peer the plan works on is gone.
    PeerGone,
    /// A rebuild would target the primary.
    RebuildPrimary,
    /// The HA setup's own freeze is still there when it should be gone.
    StillFrozen,
    /// A transplant stopped past its point of no return: a person decides.
    PastPointOfNoReturn,
    /// A refusal of the kind planners make (frozen by someone else, ...).
    Refused(RefusalReason),
    /// The rollback of a transplant stopped for this reason.
    Rollback(Box<BlockReason>),
    /// Test runners.
    Test,
}

impl BlockReason {
    /// Stopped by a failure or timeout of a step: retried only once an
    /// operator approves (`tritonctl approve`).
    pub fn needs_retry_approval(&self) -> bool {
        matches!(self, BlockReason::StepFailed | BlockReason::StepTimedOut)
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::StepFailed => f.write_str("StepFailed"),
            BlockReason::StepTimedOut => f.write_str("StepTimedOut"),
            BlockReason::Replan => f.write_str("Replan"),
            BlockReason::PeerGone => f.write_str("PeerGone"),
            BlockReason::RebuildPrimary => f.write_str("RebuildPrimary"),
            BlockReason::StillFrozen => f.write_str("StillFrozen"),
            BlockReason::PastPointOfNoReturn => f.write_str("PastPointOfNoReturn"),
            BlockReason::Refused(r) => f.write_str(r.as_str()),
            BlockReason::Rollback(r) => write!(f, "Rollback{r}"),
            BlockReason::Test => f.write_str("Test"),
        }
    }
}

impl From<RefusalReason> for BlockReason {
    fn from(r: RefusalReason) -> BlockReason {
        BlockReason::Refused(r)
    }
}

/// Why a gate says "not yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// The step needs `tritonctl approve`.
    Approval,
    /// Outside the maintenance window.
    Window,
    /// Peers are not all up yet (a zone to run again, the shard to be whole).
    PeersUp,
    /// Replication is not healthy enough yet (sync catching up, primary health).
    Health,
    /// The cluster is still settling into the shape the step needs (one
    /// node write mode lifted, another active peer to become sync).
    Settling,
    /// Never zero morays: another moray must be online first.
    Moray,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Approval => "Approval",
            WaitReason::Window => "Window",
            WaitReason::PeersUp => "PeersUp",
            WaitReason::Health => "Health",
            WaitReason::Settling => "Settling",
            WaitReason::Moray => "Moray",
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What keeps a shard from being whole (`manatee::shard_health`): the words
/// shown while a step waits for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unhealthy(pub String);

impl Unhealthy {
    pub fn new(what: &str) -> Unhealthy {
        Unhealthy(what.to_string())
    }
}

/// A maintenance window that cannot be read; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidWindow(pub String);

/// What went wrong observing or changing the datacenter. `Display` is the
/// message an operator sees (unchanged from the strings used before).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// The request never got an answer (connection refused, reset before a
    /// response, DNS, ...). For an idempotent read nothing changed.
    #[error("{0}")]
    Transport(String),
    /// A request (a mutation, typically) timed out: it may or may not have
    /// taken effect. Look at the world before doing anything again.
    #[error("{0}")]
    TimedOut(String),
    /// An API answered with an error status and a restify `{code, message}`.
    #[error("{what}: {status} {code}: {message}")]
    Api {
        /// `api METHOD path`.
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    /// ZooKeeper.
    #[error(transparent)]
    Coord(#[from] CoordError),
    /// Refused before anything was sent (not the leader, a read-only world).
    #[error("{0}")]
    Refused(Refusal),
    /// The world answered with something we cannot read (a bad body, a
    /// record missing a field it must have).
    #[error("{0}")]
    Malformed(String),
    /// Something the operation needs is not there (an instance, a zone the
    /// plan names, a server), or not in a recorded snapshot.
    #[error("{0}")]
    Missing(String),
    /// The datacenter is in a state the step cannot go on from (a check
    /// that found the world contradicting the plan).
    #[error("{0}")]
    Unexpected(String),
    /// A command run in a zone or on a server failed.
    #[error("{0}")]
    Command(String),
    /// An error recorded in a snapshot as text (its kind was not kept).
    #[error("{0}")]
    Recorded(String),
    /// A world error with what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        context: String,
        source: Box<WorldError>,
    },
}

impl WorldError {
    /// Wraps the error with what was being done (`"{context}: {self}"`).
    pub fn context(self, context: impl Into<String>) -> WorldError {
        WorldError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, past every [`WorldError::Context`].
    pub fn root(&self) -> &WorldError {
        match self {
            WorldError::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// A mutation that may or may not have happened.
    pub fn outcome_unknown(&self) -> bool {
        match self.root() {
            WorldError::TimedOut(_) => true,
            WorldError::Coord(e) => matches!(e, CoordError::ConnectionLoss),
            _ => false,
        }
    }

    /// The API status code, if an API answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self.root() {
            WorldError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The refusal, if the call was refused before anything was sent.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self.root() {
            WorldError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

impl From<Refusal> for WorldError {
    fn from(r: Refusal) -> WorldError {
        WorldError::Refused(r)
    }
}

/// For the CLI edge and the review, which report errors as text.
impl From<WorldError> for String {
    fn from(e: WorldError) -> String {
        e.to_string()
    }
}

/// Adds context to a `Result<_, WorldError>`.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T, WorldError>;
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T, WorldError>;
}

impl<T, E: Into<WorldError>> Context<T> for Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T, WorldError> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T, WorldError> {
        self.map_err(|e| e.into().context(f()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_before() {
        assert_eq!(
            RefusalReason::MajorVersionChange.to_string(),
            "MajorVersionChange"
        );
        assert_eq!(
            BlockReason::Refused(RefusalReason::FrozenByOther).to_string(),
            "FrozenByOther"
        );
        assert_eq!(
            BlockReason::Rollback(Box::new(BlockReason::StepFailed)).to_string(),
            "RollbackStepFailed"
        );
        assert!(BlockReason::StepTimedOut.needs_retry_approval());
        assert!(!BlockReason::Replan.needs_retry_approval());
    }

    #[test]
    fn a_timed_out_mutation_is_not_a_refusal() {
        let t =
            WorldError::TimedOut("vmapi POST /vms/z: timed out".into()).context("reprovision z");
        assert!(t.outcome_unknown());
        assert!(t.refusal().is_none());
        assert_eq!(t.to_string(), "reprovision z: vmapi POST /vms/z: timed out");
        let r = WorldError::from(Refusal::new(RefusalReason::NotLeader, "not the leader"));
        assert!(!r.outcome_unknown());
        assert_eq!(r.refusal().unwrap().reason, RefusalReason::NotLeader);
    }
}
