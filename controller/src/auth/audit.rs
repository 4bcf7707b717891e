//! The audit log: every approve, pause, resume, cancel, apply, delete, plan
//! application and change of roles, naming the identity and what was
//! decided (`tritonctl events --audit`).
//!
//! Records live at `audit/<identity>/r-<seq>`. On a locked-down ZooKeeper
//! the identity is verified by the server, twice: only `<identity>` may
//! create in `audit/<identity>` (its ACL, which only the admin can change),
//! and each record is created with an `auth:` ACL entry that the server
//! replaces with the creating session's digest id, which `events --audit`
//! reads back with getACL. On the embedded store (no authentication) and on
//! a tree never locked down, the identity is the local user
//! (`$USER@hostname`), as the process asserts it: shown as unverified.

use std::sync::Arc;

use coord::{CoordError, Coordination, CreateMode, DigestCredentials, Perms};
use serde::{Deserialize, Serialize};

use crate::layout;

/// Who this process acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Authenticated to ZooKeeper (digest).
    Authenticated { identity: String },
    /// No credentials: the local user, as the process asserts it.
    Local { user: String },
}

impl Principal {
    pub fn of(credentials: Option<&DigestCredentials>) -> Principal {
        match credentials {
            Some(c) => Principal::Authenticated {
                identity: c.user.clone(),
            },
            None => Principal::Local {
                user: crate::pause::current_user(),
            },
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::Authenticated { identity } => identity,
            Principal::Local { user } => user,
        }
    }

    /// The audit directory name: the identity, or the local user made
    /// path-safe.
    fn dir_name(&self) -> String {
        path_safe(self.name())
    }
}

fn path_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Authenticated { identity } => write!(f, "{identity}"),
            Principal::Local { user } => write!(f, "{user} (local user, not authenticated)"),
        }
    }
}

/// What was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Apply,
    ApplyPlan,
    Delete,
    Approve,
    Cancel,
    Pause,
    Resume,
    /// `tritonctl auth` (init, add, remove).
    Auth,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::ApplyPlan => "apply-plan",
            Action::Delete => "delete",
            Action::Approve => "approve",
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Auth => "auth",
        }
    }
}

/// One audit record as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    pub identity: String,
    pub action: Action,
    pub object: String,
    pub decision: String,
}

/// How far a record's identity can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// ZooKeeper recorded the creator's authenticated id, and it is the
    /// identity the record and its directory name.
    Verified,
    /// Nothing recorded by the server: the embedded store, or a tree never
    /// locked down. The identity is what the process said.
    SelfAsserted,
    /// The server recorded someone else (or the record names another
    /// identity than its directory): not to be trusted.
    Mismatch(String),
}

impl Verification {
    pub fn as_str(&self) -> &str {
        match self {
            Verification::Verified => "verified",
            Verification::SelfAsserted => "unverified",
            Verification::Mismatch(_) => "MISMATCH",
        }
    }
}

/// A record read back, with where it is and how far it is trusted.
#[derive(Clone, Debug)]
pub struct Listed {
    pub path: String,
    pub record: Record,
    pub verification: Verification,
}

const PREFIX: &str = "r-";

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Record a decision. Returns the record's path.
pub async fn record(
    coord: &Arc<dyn Coordination>,
    who: &Principal,
    action: Action,
    object: &str,
    decision: &str,
) -> Result<String, CoordError> {
    let record = Record {
        time: now(),
        identity: who.name().to_string(),
        action,
        object: object.to_string(),
        decision: decision.to_string(),
    };
    let data = serde_json::to_vec(&record).expect("audit records serialize");
    let dir = layout::audit_identity_dir(&who.dir_name());
    let prefix = format!("{dir}/{PREFIX}");
    match coord
        .create(&prefix, &data, CreateMode::PersistentSequential)
        .await
    {
        Err(CoordError::NoNode(_)) => {
            coord.mkdirp(&dir).await?;
            coord
                .create(&prefix, &data, CreateMode::PersistentSequential)
                .await
        }
        other => other,
    }
}

/// Record a decision already made: a failure is a warning on stderr (the
/// decision stands).
pub async fn record_or_warn(
    coord: &Arc<dyn Coordination>,
    who: &Principal,
    action: Action,
    object: &str,
    decision: &str,
) {
    if let Err(e) = record(coord, who, action, object, decision).await {
        eprintln!(
            "warning: the {} of {object} was not recorded in the audit log: {e}",
            action.as_str()
        );
    }
}

/// How far `record` at `path` (in `audit/<dir>`) can be trusted.
async fn verify(
    coord: &Arc<dyn Coordination>,
    path: &str,
    dir: &str,
    record: &Record,
) -> Result<Verification, CoordError> {
    if record.identity != dir && path_safe(&record.identity) != dir {
        return Ok(Verification::Mismatch(format!(
            "names {} but is filed under {dir}",
            record.identity
        )));
    }
    let (acl, _) = coord.get_acl(path).await?;
    let authors: Vec<&str> = acl
        .iter()
        .filter(|a| a.perms == Perms::DELETE)
        .filter_map(|a| a.id.digest_user())
        .collect();
    Ok(match authors.as_slice() {
        [] => Verification::SelfAsserted,
        a if a.contains(&record.identity.as_str()) => Verification::Verified,
        a => Verification::Mismatch(format!("created by {}", a.join(", "))),
    })
}

/// Every audit record the caller may read, oldest first.
pub async fn list(coord: &Arc<dyn Coordination>) -> Result<Vec<Listed>, CoordError> {
    let mut out = Vec::new();
    let dirs = match coord.children(&layout::audit_dir()).await {
        Ok(d) => d,
        Err(CoordError::NoNode(_)) => return Ok(out),
        Err(e) => return Err(e),
    };
    for dir in dirs {
        let dir_path = layout::audit_identity_dir(&dir);
        let names = match coord.children(&dir_path).await {
            Ok(n) => n,
            Err(CoordError::NoNode(_)) => continue,
            Err(e) => return Err(e),
        };
        for name in names {
            let path = format!("{dir_path}/{name}");
            let data = match coord.get(&path).await {
                Ok((d, _)) => d,
                Err(CoordError::NoNode(_)) => continue,
                Err(e) => return Err(e),
            };
            let Ok(record) = serde_json::from_slice::<Record>(&data) else {
                continue;
            };
            let verification = verify(coord, &path, &dir, &record).await?;
            out.push(Listed {
                path,
                record,
                verification,
            });
        }
    }
    out.sort_by(|a, b| (&a.record.time, &a.path).cmp(&(&b.record.time, &b.path)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_store_records_the_local_user_unverified() {
        let coord: Arc<dyn Coordination> = coord::MemEnsemble::new().connect();
        let who = Principal::Local {
            user: "ops/1@host".into(),
        };
        record(&coord, &who, Action::Pause, "mv/sdc", "paused: INC-1")
            .await
            .unwrap();
        let listed = list(&coord).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].record.identity, "ops/1@host");
        assert_eq!(listed[0].record.action, Action::Pause);
        assert!(
            listed[0]
                .path
                .starts_with("/tritonctl/v1/audit/ops_1@host/r-")
        );
        assert_eq!(listed[0].verification, Verification::SelfAsserted);
    }
}
