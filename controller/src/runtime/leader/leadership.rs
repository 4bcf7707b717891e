//! Holding leadership: the fence, the self-check of our own node, stepping
//! down.

use std::sync::Arc;

use coord::{CoordError, Coordination, Expect, SessionState, Stat, WatchEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{LeaderError, LossReason, RETRY, node_loss, session_ended, session_loss, watch_loss};
use crate::runtime::detached;
use crate::store::Fence;

/// The version our node is created with, and the one every fenced write
/// checks ([`Fence::op`]). Any `set` on the node moves it.
pub(super) const CREATED_VERSION: i32 = 0;

/// What our node's stat says about our leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeCheck {
    /// Ephemeral, owned by our session, unchanged.
    Ours,
    /// No such node.
    Gone,
    /// Persistent or owned by another session.
    NotOurs,
    /// Ours, but its version moved: the fence can never pass again.
    Modified,
}

pub(super) fn judge(stat: Option<&Stat>, me: i64) -> NodeCheck {
    match stat {
        None => NodeCheck::Gone,
        Some(s) if s.ephemeral_owner != me || me == 0 => NodeCheck::NotOurs,
        Some(s) if s.version != CREATED_VERSION => NodeCheck::Modified,
        Some(_) => NodeCheck::Ours,
    }
}

/// Why leadership is lost, given a check that was not [`NodeCheck::Ours`].
pub(super) async fn loss_of(coord: &dyn Coordination, node: &str, check: NodeCheck) -> LossReason {
    match check {
        NodeCheck::Modified => LossReason::NodeModified,
        NodeCheck::Gone | NodeCheck::Ours => node_loss(coord, node).await,
        NodeCheck::NotOurs => match node_loss(coord, node).await {
            LossReason::NodeVanished => LossReason::NodeReplaced,
            other => other,
        },
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

pub(super) fn mark_lost(lost: &watch::Sender<Option<LossReason>>, reason: LossReason) {
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
    pub(super) fn start(coord: Arc<dyn Coordination>, node: String) -> Leadership {
        let leadership = Leadership::unmonitored(coord, node);
        tokio::spawn(monitor(
            leadership.coord.clone(),
            leadership.fence.path.clone(),
            leadership.lost.clone(),
            leadership.stop.clone(),
        ));
        leadership
    }

    /// Without the watch on our node (tests of the other ways a loss is
    /// noticed).
    pub(super) fn unmonitored(coord: Arc<dyn Coordination>, node: String) -> Leadership {
        let (tx, _) = watch::channel(None);
        Leadership {
            coord,
            fence: Fence { path: node },
            lost: Arc::new(tx),
            stop: CancellationToken::new(),
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

    /// `inner` (our session) with a tripwire: a multi-op refused at this
    /// leadership's fence check marks leadership lost at once, whatever the
    /// watch on our node has seen so far. Give it to everything that writes
    /// under the fence.
    pub fn tripwire(&self, inner: Arc<dyn Coordination>) -> Arc<dyn Coordination> {
        Arc::new(super::tripwire::Tripwire {
            inner,
            node: self.fence.path.clone(),
            lost: self.lost.clone(),
        })
    }

    /// Resolves once leadership is lost (session expired or closed, node
    /// vanished, modified or replaced, resigned). Can be called many times
    /// and outlive `self`.
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
    /// that no fence protects (HTTP calls): our node exists, is ephemeral,
    /// owned by our session and unchanged. An error means: do not send it.
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
            Ok(stat) => match judge(stat.as_ref(), self.coord.session_id()) {
                NodeCheck::Ours => Ok(()),
                check => {
                    let reason = loss_of(self.coord.as_ref(), &self.fence.path, check).await;
                    mark_lost(&self.lost, reason);
                    Err(LeaderError::Lost(reason))
                }
            },
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

/// Watches our node and the session; marks leadership lost when either goes
/// or the node stops being ours and unchanged.
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
            Ok((stat, w)) => match judge(stat.as_ref(), me) {
                NodeCheck::Ours => w,
                check => {
                    mark_lost(&lost, loss_of(coord.as_ref(), &node, check).await);
                    return;
                }
            },
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
                    // Data changed (nobody should): re-arm; the check on
                    // the fresh stat says whether it is still ours.
                }
            },
        }
    }
}
