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

use std::sync::Arc;
use std::time::Duration;

use coord::{
    CoordError, Coordination, CreateMode, Expect, SessionState, WatchEvent, split_sequence,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::detached;
use crate::store::Fence;

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
    /// Given up with [`Leadership::resign`] or by dropping the [`Leadership`].
    Resigned,
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossReason::SessionExpired => "session expired",
            LossReason::SessionClosed => "session closed",
            LossReason::NodeVanished => "election node vanished",
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
        }
    }

    /// Campaign under another directory (tests, several controllers per store).
    pub fn with_dir(mut self, dir: impl Into<String>) -> LeaderElection {
        self.dir = dir.into();
        self
    }

    pub fn dir(&self) -> &str {
        &self.dir
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
        loop {
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
            let Some((_, predecessor)) = candidates.iter().rev().find(|(s, _)| *s < my_seq) else {
                break;
            };
            let path = format!("{}/{predecessor}", self.dir);
            let watch = match detached::exists_watch(&self.coord, &path).await {
                // Gone already: look again (the next one down may still live).
                Ok((None, _)) => continue,
                Ok((Some(_), w)) => w,
                Err(e) => {
                    self.pause_or_fail(e).await?;
                    continue;
                }
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

    /// Candidates sorted by sequence.
    async fn candidates(&self) -> Result<Vec<(u64, String)>, CoordError> {
        let mut out: Vec<(u64, String)> = self
            .coord
            .children(&self.dir)
            .await?
            .into_iter()
            .filter_map(|name| match split_sequence(&name) {
                Some((PREFIX, seq)) => Some((seq, name)),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
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

    /// Who leads now: the data (identity) of the lowest candidate, if any.
    pub async fn current_leader(&self) -> Result<Option<String>, CoordError> {
        let candidates = match self.candidates().await {
            Ok(c) => c,
            Err(CoordError::NoNode(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        for (_, name) in candidates {
            match self.coord.get(&format!("{}/{name}", self.dir)).await {
                Ok((data, _)) => return Ok(Some(String::from_utf8_lossy(&data).into_owned())),
                // Left between the listing and the read: the next one leads.
                Err(CoordError::NoNode(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Held while this session leads.
///
/// Dropping it resigns (deletes the election node), so a leader that stops
/// leading for any reason never blocks its successor until session expiry.
pub struct Leadership {
    coord: Arc<dyn Coordination>,
    fence: Fence,
    lost: Arc<watch::Sender<Option<LossReason>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("node", &self.fence.path)
            .field("lost", &*self.lost.borrow())
            .finish()
    }
}

fn mark_lost(lost: &watch::Sender<Option<LossReason>>, reason: LossReason) {
    // The first reason sticks.
    let marked = lost.send_if_modified(|r| {
        if r.is_none() {
            *r = Some(reason);
            true
        } else {
            false
        }
    });
    if marked {
        tracing::warn!(%reason, "leadership lost");
    }
}

impl Leadership {
    fn start(coord: Arc<dyn Coordination>, node: String) -> Leadership {
        let (tx, _) = watch::channel(None);
        let lost = Arc::new(tx);
        let stop = CancellationToken::new();
        tokio::spawn(monitor(
            coord.clone(),
            node.clone(),
            lost.clone(),
            stop.clone(),
        ));
        Leadership {
            coord,
            fence: Fence { path: node },
            lost,
            stop,
        }
    }

    /// The fencing token for every mutating write made as leader.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Our election node.
    pub fn node(&self) -> &str {
        &self.fence.path
    }

    /// Resolves once leadership is lost (session expired or closed, node
    /// vanished, resigned). Can be called many times and outlive `self`.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        let mut rx = self.lost.subscribe();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(r) => r.expect("waited for Some"),
                Err(_) => LossReason::Resigned,
            }
        }
    }

    /// Why leadership was lost, if it was (as far as this process knows).
    pub fn lost_reason(&self) -> Option<LossReason> {
        *self.lost.borrow()
    }

    /// Confirm with the server that we still lead, right before a mutation
    /// that no fence protects (HTTP calls). An error means: do not send it.
    /// A connection loss is an error here but not a loss of leadership.
    pub async fn check(&self) -> Result<(), LeaderError> {
        if let Some(reason) = self.lost_reason() {
            return Err(LeaderError::Lost(reason));
        }
        match self.coord.session_state() {
            SessionState::Connected => {}
            SessionState::Disconnected => return Err(CoordError::ConnectionLoss.into()),
            terminal => {
                let reason = session_loss(terminal);
                mark_lost(&self.lost, reason);
                return Err(LeaderError::Lost(reason));
            }
        }
        match self.coord.exists(&self.fence.path).await {
            Ok(Some(stat)) if stat.ephemeral_owner == self.coord.session_id() => Ok(()),
            Ok(_) => {
                let reason = node_loss(self.coord.as_ref(), &self.fence.path).await;
                mark_lost(&self.lost, reason);
                Err(LeaderError::Lost(reason))
            }
            Err(e) if e.is_session_lost() => {
                let reason = session_loss(self.coord.session_state());
                mark_lost(&self.lost, reason);
                Err(LeaderError::Lost(reason))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Step down: delete the election node so the next candidate leads now.
    pub async fn resign(self) {
        self.stop.cancel();
        mark_lost(&self.lost, LossReason::Resigned);
        let _ = self.coord.delete(&self.fence.path, Expect::Any).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if self.stop.is_cancelled() {
            return; // resigned already
        }
        self.stop.cancel();
        mark_lost(&self.lost, LossReason::Resigned);
        let (coord, node) = (self.coord.clone(), self.fence.path.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = coord.delete(&node, Expect::Any).await;
            });
        }
    }
}

/// Watches our node and the session; marks leadership lost when either goes.
async fn monitor(
    coord: Arc<dyn Coordination>,
    node: String,
    lost: Arc<watch::Sender<Option<LossReason>>>,
    stop: CancellationToken,
) {
    let ended = session_ended(coord.session_events());
    tokio::pin!(ended);
    let me = coord.session_id();
    loop {
        let armed = tokio::select! {
            _ = stop.cancelled() => return,
            state = &mut ended => {
                mark_lost(&lost, session_loss(state));
                return;
            }
            armed = detached::exists_watch(&coord, &node) => armed,
        };
        let watch = match armed {
            Ok((Some(stat), w)) if stat.ephemeral_owner == me => w,
            Ok(_) => {
                mark_lost(&lost, node_loss(coord.as_ref(), &node).await);
                return;
            }
            Err(e) if e.is_session_lost() => {
                mark_lost(&lost, session_loss(coord.session_state()));
                return;
            }
            Err(e) => {
                // Connection loss: the session (and with it our node) may be
                // alive; the session watch above decides.
                tracing::debug!(error = %e, "re-arming the leadership watch");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            state = &mut ended => {
                mark_lost(&lost, session_loss(state));
                return;
            }
            event = watch => match event {
                WatchEvent::NodeDeleted => {
                    mark_lost(&lost, node_loss(coord.as_ref(), &node).await);
                    return;
                }
                other => {
                    if let Some(reason) = watch_loss(other) {
                        mark_lost(&lost, reason);
                        return;
                    }
                    // Data changed (nobody should): re-arm and re-check.
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use coord::MemEnsemble;
    use futures::FutureExt;

    use super::*;

    async fn leads_soon(e: &LeaderElection) -> Leadership {
        tokio::time::timeout(Duration::from_secs(5), e.campaign())
            .await
            .expect("campaign timed out")
            .expect("campaign failed")
    }

    /// Polls the campaign a while; true if it is still waiting.
    async fn still_waiting<F: Future>(f: &mut std::pin::Pin<Box<F>>) -> bool {
        tokio::time::timeout(Duration::from_millis(100), f.as_mut())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn lowest_candidate_leads_and_successors_follow_in_order() {
        let ens = MemEnsemble::new();
        let (a, b, c) = (ens.connect(), ens.connect(), ens.connect());
        let ea = LeaderElection::new(a.clone(), "a");
        let eb = LeaderElection::new(b.clone(), "b");
        let ec = LeaderElection::new(c.clone(), "c");
        let la = leads_soon(&ea).await;
        assert_eq!(ea.current_leader().await.unwrap().as_deref(), Some("a"));
        let mut fb = Box::pin(eb.campaign());
        assert!(still_waiting(&mut fb).await);
        let mut fc = Box::pin(ec.campaign());
        assert!(still_waiting(&mut fc).await);

        // The middle candidate leaves: c must now wait for a, not lead.
        drop(fb);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(still_waiting(&mut fc).await);
        assert_eq!(a.children(&default_dir()).await.unwrap().len(), 2);

        // The leader resigns: c leads.
        let lost = la.lost();
        la.resign().await;
        assert_eq!(lost.await, LossReason::Resigned);
        let lc = tokio::time::timeout(Duration::from_secs(5), fc)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ec.current_leader().await.unwrap().as_deref(), Some("c"));
        lc.check().await.unwrap();
    }

    #[tokio::test]
    async fn an_abandoned_campaign_leaves_no_candidate_behind() {
        let ens = MemEnsemble::new();
        let a = ens.connect();
        let _la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
        let eb = LeaderElection::new(ens.connect(), "b");
        // Dropped mid-registration, and dropped while waiting.
        for polls in [1, 2, 3] {
            let mut f = Box::pin(eb.campaign());
            for _ in 0..polls {
                assert!(futures::poll!(f.as_mut()).is_pending());
                tokio::task::yield_now().await;
            }
            drop(f);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                a.children(&default_dir()).await.unwrap().len(),
                1,
                "after {polls} polls"
            );
        }
        let mut f = Box::pin(eb.campaign());
        assert!(still_waiting(&mut f).await);
        assert_eq!(a.children(&default_dir()).await.unwrap().len(), 2);
        drop(f);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.children(&default_dir()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn expiry_loses_leadership_for_good() {
        let ens = MemEnsemble::new();
        let a = ens.connect();
        let ea = LeaderElection::new(a.clone(), "a");
        let la = leads_soon(&ea).await;
        la.check().await.unwrap();
        let lost = la.lost();
        assert!(ens.expire_session(a.session_id()));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), lost)
                .await
                .unwrap(),
            LossReason::SessionExpired
        );
        assert_eq!(
            la.check().await,
            Err(LeaderError::Lost(LossReason::SessionExpired))
        );
        // Never regained on this session.
        assert!(matches!(
            ea.campaign().await,
            Err(LeaderError::SessionEnded(SessionState::Expired))
        ));
        // Another session takes over; the old fence is dead.
        let b = ens.connect();
        let lb = leads_soon(&LeaderElection::new(b.clone(), "b")).await;
        let store = crate::store::Store::new(b.clone());
        store.init().await.unwrap();
        let status = crds::Status::default();
        assert!(
            store
                .write_status(crds::Kind::ManateeVersion, "x", &status, Some(la.fence()))
                .await
                .is_err()
        );
        store
            .write_status(crds::Kind::ManateeVersion, "x", &status, Some(lb.fence()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_deleted_node_is_a_lost_leadership() {
        let ens = MemEnsemble::new();
        let a = ens.connect();
        let la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
        let admin = ens.connect();
        admin.delete(la.node(), Expect::Any).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), la.lost())
                .await
                .unwrap(),
            LossReason::NodeVanished
        );
        assert!(la.check().await.is_err());
    }

    #[tokio::test]
    async fn dropping_leadership_resigns_and_a_campaign_waiting_on_a_dead_session_fails() {
        let ens = MemEnsemble::new();
        let (a, b) = (ens.connect(), ens.connect());
        let la = leads_soon(&LeaderElection::new(a.clone(), "a")).await;
        let eb = LeaderElection::new(b.clone(), "b");
        let mut fb = Box::pin(eb.campaign());
        assert!(still_waiting(&mut fb).await);
        drop(la);
        let lb = tokio::time::timeout(Duration::from_secs(5), fb)
            .await
            .unwrap()
            .unwrap();
        assert!(lb.lost().now_or_never().is_none());

        let c = ens.connect();
        let ec = LeaderElection::new(c.clone(), "c");
        let mut fc = Box::pin(ec.campaign());
        assert!(still_waiting(&mut fc).await);
        ens.expire_session(c.session_id());
        let r = tokio::time::timeout(Duration::from_secs(5), fc)
            .await
            .unwrap();
        assert!(matches!(r, Err(LeaderError::SessionEnded(_))), "{r:?}");
    }
}
