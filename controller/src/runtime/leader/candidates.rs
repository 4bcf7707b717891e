//! What is under the election directory: candidates, and the nodes the
//! election ignores because no controller would have created them.

use std::sync::Arc;

use coord::{Stat, split_sequence};

use super::PREFIX;

/// Why a node under the election directory takes no part in the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IgnoredReason {
    /// Persistent (ephemeral owner 0): no candidate creates one, so someone
    /// else did; it would block every election until deleted by hand.
    NotEphemeral,
    /// Not named `candidate-<10 digits>`, as a sequential create names it.
    NotSequential,
}

impl IgnoredReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoredReason::NotEphemeral => "not_ephemeral",
            IgnoredReason::NotSequential => "not_sequential",
        }
    }
}

/// A node under the election directory that the election ignores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IgnoredCandidate {
    /// Full path.
    pub node: String,
    pub reason: IgnoredReason,
}

impl std::fmt::Display for IgnoredCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            IgnoredReason::NotEphemeral => write!(
                f,
                "{} is not ephemeral (no controller creates such a node; someone else did): ignored by the election; delete it",
                self.node
            ),
            IgnoredReason::NotSequential => write!(
                f,
                "{} is not a sequential candidate node ({PREFIX}<10 digits>): ignored by the election; delete it",
                self.node
            ),
        }
    }
}

/// Called once per ignored node and process (the daemon counts it and
/// records a Warning event).
pub type IgnoredHook = Arc<dyn Fn(&IgnoredCandidate) + Send + Sync>;

/// A candidate as the election sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    pub data: Vec<u8>,
    pub stat: Stat,
}

/// Split the election directory's children into candidates (sorted by
/// sequence) and the names no sequential create would make.
pub(super) fn sort_candidates(
    dir: &str,
    names: Vec<String>,
) -> (Vec<(u64, String)>, Vec<IgnoredCandidate>) {
    let mut ignored = Vec::new();
    let mut out: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| match split_sequence(&name) {
            Some((PREFIX, seq)) => Some((seq, name)),
            _ => {
                ignored.push(IgnoredCandidate {
                    node: format!("{dir}/{name}"),
                    reason: IgnoredReason::NotSequential,
                });
                None
            }
        })
        .collect();
    out.sort();
    (out, ignored)
}
