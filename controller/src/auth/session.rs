//! A [`Coordination`] that gives every node it creates under `/tritonctl`
//! the ACL [`super::policy::acl_for`] decides, plain creates, `mkdirp` and
//! creates inside a multi alike. Every tritonctl process talking to a
//! locked-down ZooKeeper goes through one, so code that creates nodes (the
//! store, pauses, approvals, events, journals, the election, nodes added
//! later) never names an ACL and never forgets one.
//!
//! The role table is read again before each create (one read, a create is
//! never hot), so a change of roles applies to the next node at once. With
//! no role table (a tree never locked down) nodes get the open ACL, as
//! before access control existed.

use std::sync::Arc;

use async_trait::async_trait;
use coord::{
    Acl, CoordError, Coordination, CreateMode, Expect, Op, OpResult, Result, SessionState, Stat,
    Watch,
};

use super::policy;
use super::roles::{Roles, RolesError};

pub struct AclSession {
    inner: Arc<dyn Coordination>,
}

impl AclSession {
    pub fn new(inner: Arc<dyn Coordination>) -> Arc<AclSession> {
        Arc::new(AclSession { inner })
    }

    /// The ACL for a node at `path` now, `None` for the backend's default.
    async fn acl(&self, path: &str) -> Result<Option<Vec<Acl>>> {
        if policy::classify(path).is_none() {
            return Ok(None);
        }
        match Roles::load(&self.inner).await {
            Ok(Some((roles, _))) => Ok(policy::acl_for(path, &roles)),
            Ok(None) => Ok(None),
            Err(RolesError::Coord(e)) => Err(e),
            Err(e @ RolesError::Corrupt { .. }) => Err(CoordError::Backend(e.to_string())),
        }
    }
}

#[async_trait]
impl Coordination for AclSession {
    fn session_id(&self) -> i64 {
        self.inner.session_id()
    }
    fn session_state(&self) -> SessionState {
        self.inner.session_state()
    }
    fn session_events(&self) -> tokio::sync::watch::Receiver<SessionState> {
        self.inner.session_events()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        match self.acl(path).await? {
            Some(acl) => self.inner.create_with_acl(path, data, mode, &acl).await,
            None => self.inner.create(path, data, mode).await,
        }
    }

    async fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: &[Acl],
    ) -> Result<String> {
        self.inner.create_with_acl(path, data, mode, acl).await
    }

    async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        self.inner.get_acl(path).await
    }

    async fn set_acl(&self, path: &str, acl: &[Acl], expect: Expect) -> Result<()> {
        self.inner.set_acl(path, acl, expect).await
    }

    async fn get(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        self.inner.get(path).await
    }
    async fn get_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch)> {
        self.inner.get_watch(path).await
    }
    async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        self.inner.exists(path).await
    }
    async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, Watch)> {
        self.inner.exists_watch(path).await
    }
    async fn set(&self, path: &str, data: &[u8], expect: Expect) -> Result<Stat> {
        self.inner.set(path, data, expect).await
    }
    async fn delete(&self, path: &str, expect: Expect) -> Result<()> {
        self.inner.delete(path, expect).await
    }
    async fn children(&self, path: &str) -> Result<Vec<String>> {
        self.inner.children(path).await
    }
    async fn children_watch(&self, path: &str) -> Result<(Vec<String>, Watch)> {
        self.inner.children_watch(path).await
    }

    async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        let mut out = Vec::with_capacity(ops.len());
        let mut roles: Option<Option<Roles>> = None;
        for op in ops {
            match op {
                Op::Create {
                    path,
                    data,
                    mode,
                    acl: None,
                } if policy::classify(&path).is_some() => {
                    if roles.is_none() {
                        roles = Some(match Roles::load(&self.inner).await {
                            Ok(r) => r.map(|(r, _)| r),
                            Err(RolesError::Coord(e)) => return Err(e),
                            Err(e) => return Err(CoordError::Backend(e.to_string())),
                        });
                    }
                    let acl = roles
                        .as_ref()
                        .and_then(Option::as_ref)
                        .and_then(|r| policy::acl_for(&path, r));
                    out.push(Op::Create {
                        path,
                        data,
                        mode,
                        acl,
                    });
                }
                other => out.push(other),
            }
        }
        self.inner.multi(out).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
