//! The document store: desired-state documents, their status, events and
//! operation journals, all kept in a [`Coordination`] under `/tritonctl/v1/`.
//!
//! Layout:
//! - `documents/<kind>/<name>`: `{apiVersion, kind, metadata, spec}`; the
//!   znode's data version is the document's `resourceVersion`.
//! - `status/<kind>/<name>`: the controller-written status, apart from spec so
//!   that users and the controller never overwrite each other.
//! - `events/e-<seq>`: reconcile events, sequential and bounded.
//! - `operations/<kind>/<name>`: operation journals.
//! - `locks/...` and `leader/...`: coordination.
//! - `auth/roles` and `audit/...`: access control and the audit log
//!   ([`crate::auth`]). On ZooKeeper the store's session gives every node
//!   it creates the policy's ACL (`auth::session::AclSession`), and
//!   [`Store::audit`] records who decided what.
//!
//! Every apply is one multi-op: all documents are stored or none is.

use std::sync::Arc;

use coord::{CoordError, Coordination, CreateMode, Expect, Op, OpResult};
use crds::{Document, Kind, Status};
use serde_json::Value;

use crate::auth::{Principal, audit};
use crate::layout;

/// The paths live in [`crate::layout`]; re-exported for older callers.
pub use crate::layout::{ROOT, document_path, kind_dir, status_path};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency failed: someone else changed the document.
    #[error("conflict on {key}: {message}")]
    Conflict { key: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data under {path} is corrupt: {message}")]
    Corrupt { path: String, message: String },
    #[error(transparent)]
    Coord(#[from] CoordError),
}

/// A fencing token: the elected controller's own election node. Every write
/// made under a fence is a multi-op that first checks the node, so a deposed
/// leader whose session expired cannot write anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub path: String,
}

impl Fence {
    /// The Check op to put first in every fenced multi.
    pub fn op(&self) -> Op {
        Op::check(self.path.clone(), Expect::Version(0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyAction {
    Created,
    Configured,
    Unchanged,
}

impl ApplyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyAction::Created => "created",
            ApplyAction::Configured => "configured",
            ApplyAction::Unchanged => "unchanged",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApplyOutcome {
    pub kind: Kind,
    pub name: String,
    pub action: ApplyAction,
    pub generation: i64,
    pub resource_version: String,
}

#[derive(Clone)]
pub struct Store {
    coord: Arc<dyn Coordination>,
    /// Who this process acts as (audit records name it).
    principal: Arc<Principal>,
}

impl Store {
    /// A store acting as the local user (no authentication).
    pub fn new(coord: Arc<dyn Coordination>) -> Store {
        Store {
            coord,
            principal: Arc::new(Principal::of(None)),
        }
    }

    /// The same store acting as `principal`.
    pub fn with_principal(mut self, principal: Principal) -> Store {
        self.principal = Arc::new(principal);
        self
    }

    pub fn coord(&self) -> &Arc<dyn Coordination> {
        &self.coord
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Record a decision in the audit log as this store's principal; a
    /// failure is a warning (the decision is made already).
    pub async fn audit(&self, action: audit::Action, object: &str, decision: &str) {
        audit::record_or_warn(&self.coord, &self.principal, action, object, decision).await;
    }

    /// Every directory of the layout, parents before children.
    pub fn layout_dirs() -> Vec<String> {
        let mut dirs = vec![
            layout::events_dir(),
            format!("{ROOT}/operations"),
            layout::locks_dir(),
            layout::leader_dir(),
            format!("{ROOT}/approvals"),
            layout::cancels_dir(),
            layout::plans_dir(),
            layout::reshard_tuning_dir(),
            format!("{ROOT}/transplants/{}", Kind::ManateeVersion.short()),
            layout::audit_dir(),
        ];
        for kind in Kind::ALL {
            dirs.push(kind_dir(kind));
            dirs.push(layout::status_dir(kind));
            dirs.push(layout::operations_dir(kind));
            dirs.push(layout::pause_dir(kind));
        }
        dirs
    }

    /// Create the layout (idempotent). A directory that exists costs one
    /// read; on a locked-down ZooKeeper only an identity allowed to create
    /// there can make a missing one.
    pub async fn init(&self) -> Result<(), StoreError> {
        for dir in Store::layout_dirs() {
            if self.coord.exists(&dir).await?.is_none() {
                match self.coord.mkdirp(&dir).await {
                    // Not ours to make: what needs it fails on its own,
                    // with the same refusal, if it is ever used.
                    Ok(()) | Err(CoordError::NoAuth(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Store every document or none. `metadata.generation` increases only
    /// when the spec changes; a `resourceVersion` in a document must match the
    /// stored one (a stale one is a conflict); two concurrent applies of the
    /// same version cannot both win because each write is version-checked.
    pub async fn apply(&self, docs: &[Document]) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.apply_with(docs, Vec::new()).await
    }

    /// [`Store::apply`] with `extra` ops in the same transaction, after the
    /// documents' (e.g. the marker of an applied plan: a second apply of the
    /// same plan fails as a whole).
    pub async fn apply_with(
        &self,
        docs: &[Document],
        extra: Vec<Op>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        let mut ops = Vec::new();
        let mut outcomes = Vec::new();
        for doc in docs {
            let (kind, name) = (doc.kind(), doc.name().to_string());
            let key = doc.key();
            let path = document_path(kind, &name);
            let wanted_rv = doc.metadata().resource_version.clone();
            let current = match self.coord.get(&path).await {
                Ok((data, stat)) => Some((decode(&path, &data)?, stat.version)),
                Err(CoordError::NoNode(_)) => None,
                Err(e) => return Err(e.into()),
            };
            match current {
                None => {
                    if let Some(rv) = wanted_rv {
                        return Err(StoreError::Conflict {
                            key,
                            message: format!(
                                "resourceVersion {rv} was given but the document does not exist (it was deleted?); remove metadata.resourceVersion to create it"
                            ),
                        });
                    }
                    let mut stored = doc.clone();
                    strip_for_storage(&mut stored);
                    stored.metadata_mut().generation = Some(1);
                    ops.push(Op::create(path, encode(&stored), CreateMode::Persistent));
                    outcomes.push(ApplyOutcome {
                        kind,
                        name,
                        action: ApplyAction::Created,
                        generation: 1,
                        resource_version: "0".into(),
                    });
                }
                Some((old, version)) => {
                    if let Some(rv) = &wanted_rv
                        && rv != &version.to_string()
                    {
                        return Err(StoreError::Conflict {
                            key,
                            message: format!(
                                "the document was changed since resourceVersion {rv} (now {version}); fetch it again with `tritonctl get {} {} -o yaml` and reapply",
                                kind.short(),
                                doc.name()
                            ),
                        });
                    }
                    let old_generation = old.metadata().generation.unwrap_or(1);
                    let spec_changed = old.spec_value() != doc.spec_value();
                    let meta_changed = old.metadata().labels != doc.metadata().labels
                        || old.metadata().annotations != doc.metadata().annotations;
                    if !spec_changed && !meta_changed {
                        // A no-op apply still fails if someone raced us: check the version.
                        ops.push(Op::check(path, Expect::Version(version)));
                        outcomes.push(ApplyOutcome {
                            kind,
                            name,
                            action: ApplyAction::Unchanged,
                            generation: old_generation,
                            resource_version: version.to_string(),
                        });
                        continue;
                    }
                    let generation = if spec_changed {
                        old_generation + 1
                    } else {
                        old_generation
                    };
                    let mut stored = doc.clone();
                    strip_for_storage(&mut stored);
                    stored.metadata_mut().generation = Some(generation);
                    ops.push(Op::set(path, encode(&stored), Expect::Version(version)));
                    outcomes.push(ApplyOutcome {
                        kind,
                        name,
                        action: ApplyAction::Configured,
                        generation,
                        resource_version: (version + 1).to_string(),
                    });
                }
            }
        }
        ops.extend(extra);
        if ops.is_empty() {
            return Ok(outcomes);
        }
        match self.coord.multi(ops).await {
            Ok(results) => {
                for (o, r) in outcomes.iter_mut().zip(results) {
                    if let OpResult::Set(stat) = r {
                        o.resource_version = stat.version.to_string();
                    }
                }
                Ok(outcomes)
            }
            Err(CoordError::MultiFailed { index, error }) if index >= outcomes.len() => {
                Err(StoreError::Conflict {
                    key: "the transaction".into(),
                    message: format!(
                        "a condition of this apply no longer holds ({error}); nothing was applied"
                    ),
                })
            }
            Err(CoordError::MultiFailed { index, error }) => {
                let o = &outcomes[index];
                let key = format!("{}/{}", o.kind, o.name);
                match *error {
                    CoordError::BadVersion(_) | CoordError::NodeExists(_) | CoordError::NoNode(_) => Err(StoreError::Conflict {
                        key,
                        message: "another writer changed the document during this apply; nothing was applied, try again".into(),
                    }),
                    e => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A stored document with its status and `resourceVersion` filled in.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<Document>, StoreError> {
        let path = document_path(kind, name);
        let (data, stat) = match self.coord.get(&path).await {
            Ok(x) => x,
            Err(CoordError::NoNode(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut doc = decode(&path, &data)?;
        doc.metadata_mut().resource_version = Some(stat.version.to_string());
        doc.set_status(self.status(kind, name).await?);
        Ok(Some(doc))
    }

    /// Names of the stored documents of a kind, sorted.
    pub async fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        match self.coord.children(&kind_dir(kind)).await {
            Ok(mut v) => {
                v.sort();
                Ok(v)
            }
            Err(CoordError::NoNode(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(&self, kind: Kind) -> Result<Vec<Document>, StoreError> {
        let mut out = Vec::new();
        for name in self.names(kind).await? {
            if let Some(d) = self.get(kind, &name).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Delete a document and its status. Returns false when it did not exist.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let path = document_path(kind, name);
        let mut ops = vec![Op::delete(path, Expect::Any)];
        let spath = status_path(kind, name);
        if self.coord.exists(&spath).await?.is_some() {
            ops.push(Op::delete(spath, Expect::Any));
        }
        match self.coord.multi(ops).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.root(), CoordError::NoNode(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn status(&self, kind: Kind, name: &str) -> Result<Option<Status>, StoreError> {
        let path = status_path(kind, name);
        match self.coord.get(&path).await {
            Ok((data, _)) => {
                serde_json::from_slice(&data)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(CoordError::NoNode(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Write a document's status (never its spec), fenced when a fence is given.
    pub async fn write_status(
        &self,
        kind: Kind,
        name: &str,
        status: &Status,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let path = status_path(kind, name);
        let data = serde_json::to_vec(status).expect("status serializes");
        let mut ops: Vec<Op> = fence.map(Fence::op).into_iter().collect();
        ops.push(upsert_op(self.coord.as_ref(), &path, data).await?);
        self.coord.multi(ops).await?;
        Ok(())
    }
}

/// The op that writes `data` at `path` whether or not the node exists yet.
/// Only for nodes a single (fenced) writer owns: status and journals.
pub async fn upsert_op(
    coord: &dyn Coordination,
    path: &str,
    data: Vec<u8>,
) -> Result<Op, CoordError> {
    Ok(match coord.exists(path).await? {
        Some(_) => Op::set(path, data, Expect::Any),
        None => Op::create(path, data, CreateMode::Persistent),
    })
}

/// Status and resourceVersion are not part of the stored document node.
fn strip_for_storage(doc: &mut Document) {
    doc.set_status(None);
    doc.metadata_mut().resource_version = None;
}

fn encode(doc: &Document) -> Vec<u8> {
    serde_json::to_vec(doc).expect("documents serialize")
}

fn decode(path: &str, data: &[u8]) -> Result<Document, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_string(),
        message,
    };
    let v: Value = serde_json::from_slice(data).map_err(|e| corrupt(e.to_string()))?;
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::parse)
        .ok_or_else(|| corrupt("no valid kind".into()))?;
    Document::from_value(kind, v).map_err(|e| corrupt(e.to_string()))
}
