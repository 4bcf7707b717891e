//! Leader election with a fencing token, in ZooKeeper 3.4 operations only
//! (create, getChildren, exists with a watch, delete).
//!
//! Each candidate creates an ephemeral sequential node
//! `<dir>/candidate-<seq>`; the lowest sequence leads. Every other candidate
//! watches only its predecessor (never the whole directory, so a change
//! wakes one candidate, not the herd) and re-lists when it fires, since the
//! predecessor may have left without the leader leaving.
//!
//! The leader's own node is its fence ([`Fence`]): every mutating ZooKeeper
//! write it makes is a multi-op that checks the node first, so once its
//! session has expired (and the node is gone) no write of it can land, however
//! late it wakes up. Mutations outside ZooKeeper (HTTP) call
//! [`Leadership::check`] right before they are sent.
//!
//! Session expiry is terminal: leadership ends with it and is never regained
//! on that handle. A new campaign needs a new session.
//!
//! Nobody can wedge it from outside (issue #13):
//! - the leader checks its own node, which must exist, be ephemeral, be
//!   owned by its session, and keep the version it was created with (the
//!   one the fence checks); the moment it does not (a watch on it, or a
//!   fenced write refused at the fence, see [`Leadership::tripwire`]),
//!   leadership is lost and the daemon exits 3;
//! - a node under the election directory that no candidate would create (a
//!   persistent node, or a name no sequential create makes) is ignored by
//!   the election and reported ([`IgnoredCandidate`]), so it cannot keep
//!   every controller on standby.
//!
//! [`Fence`]: crate::store::Fence

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coord::{
    CoordError, Coordination, CreateMode, Expect, SessionState, WatchEvent, split_sequence,
};
use tokio::sync::watch;

use super::detached;

/// Where candidates register: `/tritonctl/v1/leader`.
pub fn default_dir() -> String {
    crate::layout::leader_dir()
}

const PREFIX: &str = "candidate-";

/// Pause before retrying a call that failed with a connection loss.
const RETRY: Duration = Duration::from_millis(200);

/// Why leadership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// The session expired (e.g. the process was stopped past the timeout).
    SessionExpired,
    /// The session was closed by its owner.
    SessionClosed,
    /// The election node disappeared while the session seemed alive:
    /// deleted by hand, or the session was ended from outside while this
    /// client was still connected (it may see the deletion before the
    /// expiry).
    NodeVanished,
    /// The election node was changed by another client (its version moved,
    /// e.g. a `set` from zkCli): every fenced write checks version 0, so
    /// none could ever pass again.
    NodeModified,
    /// A node of that name exists but is not ours (persistent, or owned by
    /// another session): it was deleted and re-created by someone else.
    NodeReplaced,
    /// Given up with [`Leadership::resign`] or by dropping the [`Leadership`].
    Resigned,
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossReason::SessionExpired => "session expired",
            LossReason::SessionClosed => "session closed",
            LossReason::NodeVanished => "election node vanished",
            LossReason::NodeModified => {
                "election node modified by another client (the fence can never pass again)"
            }
            LossReason::NodeReplaced => "election node replaced by one this session does not own",
            LossReason::Resigned => "resigned",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaderError {
    /// The session is gone; a new campaign needs a new session.
    #[error("coordination session ended ({0:?}); a new campaign needs a new session")]
    SessionEnded(SessionState),
    /// Leadership was held and is no more.
    #[error("leadership lost: {0}")]
    Lost(LossReason),
    /// Our candidate node disappeared while we were waiting.
    #[error("candidate node {0} vanished during the campaign")]
    CandidateVanished(String),
    /// A coordination call failed (e.g. connection loss: leadership is then
    /// unknown, and a mutation must not be sent).
    #[error(transparent)]
    Coord(#[from] CoordError),
}

fn session_loss(state: SessionState) -> LossReason {
    match state {
        SessionState::Closed => LossReason::SessionClosed,
        _ => LossReason::SessionExpired,
    }
}

/// Our node is gone: because the session ended (closing or expiry deletes
/// it), or not. The deletion can be reported before the session state
/// changes (a client resuming after a stop learns both at once), so ask the
/// server once more: a dead session fails that call.
async fn node_loss(coord: &dyn Coordination, node: &str) -> LossReason {
    let state = coord.session_state();
    if state.is_terminal() {
        return session_loss(state);
    }
    match coord.exists(node).await {
        Err(e) if e.is_session_lost() => match e.root() {
            CoordError::SessionClosed => LossReason::SessionClosed,
            _ => LossReason::SessionExpired,
        },
        _ => match coord.session_state() {
            s if s.is_terminal() => session_loss(s),
            _ => LossReason::NodeVanished,
        },
    }
}

fn watch_loss(event: WatchEvent) -> Option<LossReason> {
    match event {
        WatchEvent::SessionExpired => Some(LossReason::SessionExpired),
        WatchEvent::SessionClosed => Some(LossReason::SessionClosed),
        _ => None,
    }
}

/// Resolves when the session reaches a terminal state, with that state.
async fn session_ended(mut events: watch::Receiver<SessionState>) -> SessionState {
    match events.wait_for(|s| s.is_terminal()).await {
        Ok(s) => *s,
        // The sender only goes away with the session.
        Err(_) => SessionState::Closed,
    }
}

/// A candidate for leadership on one session.
#[derive(Clone)]
pub struct LeaderElection {
    coord: Arc<dyn Coordination>,
    dir: String,
    identity: String,
    on_ignored: Option<IgnoredHook>,
    reported: Arc<std::sync::Mutex<HashSet<IgnoredCandidate>>>,
}

impl std::fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElection")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .finish()
    }
}

/// Where the registering task leaves our candidate node, and whether the
/// campaign was abandoned meanwhile. Shared so that whichever side comes
/// second (the task finishing or the campaign being dropped) deletes it.
#[derive(Default)]
struct Registration {
    node: Option<String>,
    abandoned: bool,
}

/// Deletes the candidate node if the campaign is abandoned (its future
/// dropped), so the candidates behind it are not stuck behind a ghost.
struct CandidateGuard {
    coord: Arc<dyn Coordination>,
    slot: Arc<std::sync::Mutex<Registration>>,
}

impl CandidateGuard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registration> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node stays (we lead, or it is gone with the session).
    fn disarm(&self) {
        self.lock().node = None;
    }
}

impl Drop for CandidateGuard {
    fn drop(&mut self) {
        let node = {
            let mut reg = self.lock();
            reg.abandoned = true;
            reg.node.take()
        };
        let Some(node) = node else { return };
        let coord = self.coord.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = coord.delete(&node, Expect::Any).await;
            });
        }
    }
}

impl LeaderElection {
    /// `identity` is stored in the candidate node (who leads: host, pid).
    pub fn new(coord: Arc<dyn Coordination>, identity: impl Into<String>) -> LeaderElection {
        LeaderElection {
            coord,
            dir: default_dir(),
            identity: identity.into(),
            on_ignored: None,
            reported: Arc::default(),
        }
    }

    /// Campaign under another directory (tests, several controllers per store).
    pub fn with_dir(mut self, dir: impl Into<String>) -> LeaderElection {
        self.dir = dir.into();
        self
    }

    /// Be told of each node the election ignores (once per node).
    pub fn on_ignored(mut self, hook: IgnoredHook) -> LeaderElection {
        self.on_ignored = Some(hook);
        self
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    fn report(&self, ignored: IgnoredCandidate) {
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ignored.clone());
        if first {
            tracing::warn!(node = %ignored.node, reason = ignored.reason.as_str(), "{ignored}");
            if let Some(hook) = &self.on_ignored {
                hook(&ignored);
            }
        }
    }

    /// Wait until this session leads. Cancel-safe: dropping the future
    /// withdraws the candidacy. Fails at once if the session is over.
    pub async fn campaign(&self) -> Result<Leadership, LeaderError> {
        let state = self.coord.session_state();
        if state.is_terminal() {
            return Err(LeaderError::SessionEnded(state));
        }
        self.coord.mkdirp(&self.dir).await?;
        // Registered in its own task, so that a campaign dropped while the
        // create is in flight still learns of the node and deletes it.
        let guard = CandidateGuard {
            coord: self.coord.clone(),
            slot: Arc::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (this, slot) = (self.clone(), guard.slot.clone());
        tokio::spawn(async move {
            let registered = this.register().await.map(|node| {
                let mut reg = slot.lock().unwrap_or_else(|p| p.into_inner());
                if reg.abandoned {
                    Err(node)
                } else {
                    reg.node = Some(node.clone());
                    Ok(node)
                }
            });
            match registered {
                Ok(Err(orphan)) => {
                    let _ = this.coord.delete(&orphan, Expect::Any).await;
                }
                Ok(Ok(node)) => {
                    let _ = tx.send(Ok(node));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let node = match rx.await {
            Ok(registered) => registered?,
            // The task died with the runtime.
            Err(_) => return Err(LeaderError::SessionEnded(self.coord.session_state())),
        };
        let name = node.rsplit('/').next().unwrap_or_default().to_string();
        let (_, my_seq) = split_sequence(&name).expect("sequential node names end in 10 digits");
        let ended = session_ended(self.coord.session_events());
        tokio::pin!(ended);
        'campaign: loop {
            let candidates = match self.candidates().await {
                Ok(c) => c,
                Err(e) => {
                    self.pause_or_fail(e).await?;
                    continue;
                }
            };
            if !candidates.iter().any(|(s, _)| *s == my_seq) {
                guard.disarm();
                return Err(LeaderError::CandidateVanished(node));
            }
            // The nearest live predecessor, walking down: one that is gone
            // or not ephemeral (anyone could have created it) does not count.
            let mut predecessor = None;
            for (_, name) in candidates.iter().rev().filter(|(s, _)| *s < my_seq) {
                let path = format!("{}/{name}", self.dir);
                match detached::exists_watch(&self.coord, &path).await {
                    Ok((None, _)) => continue,
                    Ok((Some(stat), _)) if stat.ephemeral_owner == 0 => {
                        self.report(IgnoredCandidate {
                            node: path,
                            reason: IgnoredReason::NotEphemeral,
                        });
                    }
                    Ok((Some(_), w)) => {
                        predecessor = Some((path, w));
                        break;
                    }
                    Err(e) => {
                        self.pause_or_fail(e).await?;
                        continue 'campaign;
                    }
                }
            }
            let Some((path, watch)) = predecessor else {
                break;
            };
            tracing::debug!(node = %node, waiting_for = %path, "not leader yet; watching the predecessor");
            tokio::select! {
                event = watch => {
                    if let Some(reason) = watch_loss(event) {
                        guard.disarm();
                        return Err(LeaderError::SessionEnded(match reason {
                            LossReason::SessionClosed => SessionState::Closed,
                            _ => SessionState::Expired,
                        }));
                    }
                }
                state = &mut ended => {
                    guard.disarm();
                    return Err(LeaderError::SessionEnded(state));
                }
            }
        }
        guard.disarm();
        tracing::info!(node = %node, identity = %self.identity, "elected leader");
        Ok(Leadership::start(self.coord.clone(), node))
    }

    /// Create our candidate node. A connection loss leaves it unknown whether
    /// the create happened, so look for a node our session owns first.
    async fn register(&self) -> Result<String, LeaderError> {
        let prefix = format!("{}/{PREFIX}", self.dir);
        loop {
            match self
                .coord
                .create(
                    &prefix,
                    self.identity.as_bytes(),
                    CreateMode::EphemeralSequential,
                )
                .await
            {
                Ok(node) => return Ok(node),
                Err(CoordError::ConnectionLoss) => {
                    tokio::time::sleep(RETRY).await;
                    if let Some(node) = self.owned_node().await? {
                        return Ok(node);
                    }
                }
                Err(e) if e.is_session_lost() => {
                    return Err(LeaderError::SessionEnded(self.coord.session_state()));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A candidate node owned by our session, if any.
    async fn owned_node(&self) -> Result<Option<String>, LeaderError> {
        let me = self.coord.session_id();
        loop {
            let result: Result<Option<String>, CoordError> = async {
                for (_, name) in self.candidates().await? {
                    let path = format!("{}/{name}", self.dir);
                    if let Some(stat) = self.coord.exists(&path).await?
                        && stat.ephemeral_owner == me
                    {
                        return Ok(Some(path));
                    }
                }
                Ok(None)
            }
            .await;
            match result {
                Ok(found) => return Ok(found),
                Err(e) => self.pause_or_fail(e).await?,
            }
        }
    }

    /// Candidates named as a sequential create names them, sorted by
    /// sequence; any other child is reported and ignored.
    async fn candidates(&self) -> Result<Vec<(u64, String)>, CoordError> {
        let names = self.coord.children(&self.dir).await?;
        let (candidates, ignored) = sort_candidates(&self.dir, names);
        for i in ignored {
            self.report(i);
        }
        Ok(candidates)
    }

    /// Connection loss: wait and let the caller retry. Anything else ends
    /// the campaign.
    async fn pause_or_fail(&self, e: CoordError) -> Result<(), LeaderError> {
        if e.is_session_lost() {
            return Err(LeaderError::SessionEnded(self.coord.session_state()));
        }
        if e == CoordError::ConnectionLoss {
            tokio::time::sleep(RETRY).await;
            return Ok(());
        }
        Err(e.into())
    }

    /// The leading candidate: the lowest-numbered ephemeral one. Nodes the
    /// election ignores are reported, never returned.
    pub async fn leader(&self) -> Result<Option<Candidate>, CoordError> {
        let candidates = match self.candidates().await {
            Ok(c) => c,
            Err(CoordError::NoNode(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        for (_, name) in candidates {
            let node = format!("{}/{name}", self.dir);
            match self.coord.get(&node).await {
                Ok((_, stat)) if stat.ephemeral_owner == 0 => self.report(IgnoredCandidate {
                    node,
                    reason: IgnoredReason::NotEphemeral,
                }),
                Ok((data, stat)) => return Ok(Some(Candidate { node, data, stat })),
                // Left between the listing and the read: the next one leads.
                Err(CoordError::NoNode(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Who leads now: the data (identity) of the leading candidate, if any.
    pub async fn current_leader(&self) -> Result<Option<String>, CoordError> {
        Ok(self
            .leader()
            .await?
            .map(|c| String::from_utf8_lossy(&c.data).into_owned()))
    }
}

mod candidates;
mod leadership;
mod tripwire;
use candidates::sort_candidates;
pub use candidates::{Candidate, IgnoredCandidate, IgnoredHook, IgnoredReason};
pub use leadership::Leadership;

#[cfg(test)]
mod tests;
