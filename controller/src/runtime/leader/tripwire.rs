//! A session whose fenced writes watch the fence: a multi-op refused at the
//! leader's own check op means the fence can never pass again (the node is
//! gone, or its version moved), so leadership is marked lost at once, even
//! if the watch on the node has not fired yet (or never will: a watch is
//! one-shot and a change between two arms of it is seen only on the next
//! read).

use std::sync::Arc;

use async_trait::async_trait;
use coord::{
    Acl, CoordError, Coordination, CreateMode, Expect, Op, OpResult, SessionState, Stat, Watch,
};
use tokio::sync::watch;

use super::LossReason;
use super::leadership::{NodeCheck, judge, loss_of, mark_lost};

pub(super) struct Tripwire {
    pub(super) inner: Arc<dyn Coordination>,
    /// Our election node (the fence's path).
    pub(super) node: String,
    pub(super) lost: Arc<watch::Sender<Option<LossReason>>>,
}

impl Tripwire {
    /// A fenced multi failed at the fence: find out why and mark the loss.
    async fn fence_refused(&self) {
        let check = match self.inner.exists(&self.node).await {
            Ok(stat) => judge(stat.as_ref(), self.inner.session_id()),
            // The session is gone or unreachable: the monitor and the next
            // check decide; the fence already refused this write.
            Err(_) => return,
        };
        if check != NodeCheck::Ours {
            let reason = loss_of(self.inner.as_ref(), &self.node, check).await;
            tracing::error!(node = %self.node, %reason, "a fenced write was refused at the fence; stepping down");
            mark_lost(&self.lost, reason);
        }
    }
}

#[async_trait]
impl Coordination for Tripwire {
    fn session_id(&self) -> i64 {
        self.inner.session_id()
    }

    fn session_state(&self) -> SessionState {
        self.inner.session_state()
    }

    fn session_events(&self) -> tokio::sync::watch::Receiver<SessionState> {
        self.inner.session_events()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> coord::Result<String> {
        self.inner.create(path, data, mode).await
    }

    async fn get(&self, path: &str) -> coord::Result<(Vec<u8>, Stat)> {
        self.inner.get(path).await
    }

    async fn get_watch(&self, path: &str) -> coord::Result<(Vec<u8>, Stat, Watch)> {
        self.inner.get_watch(path).await
    }

    async fn exists(&self, path: &str) -> coord::Result<Option<Stat>> {
        self.inner.exists(path).await
    }

    async fn exists_watch(&self, path: &str) -> coord::Result<(Option<Stat>, Watch)> {
        self.inner.exists_watch(path).await
    }

    async fn set(&self, path: &str, data: &[u8], expect: Expect) -> coord::Result<Stat> {
        self.inner.set(path, data, expect).await
    }

    async fn delete(&self, path: &str, expect: Expect) -> coord::Result<()> {
        self.inner.delete(path, expect).await
    }

    async fn children(&self, path: &str) -> coord::Result<Vec<String>> {
        self.inner.children(path).await
    }

    async fn children_watch(&self, path: &str) -> coord::Result<(Vec<String>, Watch)> {
        self.inner.children_watch(path).await
    }

    async fn multi(&self, ops: Vec<Op>) -> coord::Result<Vec<OpResult>> {
        let fence_at = ops
            .iter()
            .position(|op| matches!(op, Op::Check { path, .. } if *path == self.node));
        let result = self.inner.multi(ops).await;
        if let (Some(at), Err(CoordError::MultiFailed { index, error })) = (fence_at, &result)
            && *index == at
            && matches!(**error, CoordError::BadVersion(_) | CoordError::NoNode(_))
        {
            self.fence_refused().await;
        }
        result
    }

    async fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: &[Acl],
    ) -> coord::Result<String> {
        self.inner.create_with_acl(path, data, mode, acl).await
    }

    async fn get_acl(&self, path: &str) -> coord::Result<(Vec<Acl>, Stat)> {
        self.inner.get_acl(path).await
    }

    async fn set_acl(&self, path: &str, acl: &[Acl], expect: Expect) -> coord::Result<()> {
        self.inner.set_acl(path, acl, expect).await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn mkdirp(&self, path: &str) -> coord::Result<()> {
        self.inner.mkdirp(path).await
    }
}
