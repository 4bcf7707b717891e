//! Identities and their roles: the table kept in ZooKeeper at
//! `layout::roles_path()`, read by every tritonctl that creates a node (to
//! give it its ACL) and written by the admin identity (`tritonctl auth`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use coord::{CoordError, Coordination, Expect, Id};
use serde::{Deserialize, Serialize};

use crate::layout;

/// What an identity may do. ZooKeeper has no groups: each node's ACL names
/// the digest ids of the identities whose roles allow the access
/// ([`super::policy::acl_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The controller's own identity: writes everything it owns (status,
    /// events, journals, locks, leader election, secrets).
    Controller,
    /// Manages identities and roles, and may re-apply ACLs anywhere.
    Admin,
    /// Reads documents, status, events, plans, audit.
    Viewer,
    /// Viewer, and apply, delete, pause, resume, cancel.
    Operator,
    /// Viewer, and approve.
    Approver,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Controller,
        Role::Admin,
        Role::Viewer,
        Role::Operator,
        Role::Approver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One identity: its digest id (`name:base64(sha1(name:secret))`, what
/// ZooKeeper's ACLs name; never the secret) and its roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub digest: String,
    pub roles: BTreeSet<Role>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub added: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub added_by: String,
}

impl Identity {
    pub fn id(&self) -> Id {
        Id::digest(&self.digest)
    }
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The role table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    pub identities: BTreeMap<String, Identity>,
}

/// Why the role table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("{0}")]
    Coord(#[from] CoordError),
    #[error("the role table at {path} is corrupt: {message}")]
    Corrupt { path: String, message: String },
}

impl Roles {
    /// The identities holding `role`.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = (&String, &Identity)> {
        self.identities.iter().filter(move |(_, i)| i.has(role))
    }

    /// Whether `name` is a valid identity name: it becomes a path component
    /// (`audit/<name>`) and the user part of a digest id.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            && name != "."
            && name != ".."
    }

    /// The table and its znode version, `None` when access control was never
    /// set up (an open tree).
    pub async fn load(coord: &Arc<dyn Coordination>) -> Result<Option<(Roles, i32)>, RolesError> {
        let path = layout::roles_path();
        match coord.get(&path).await {
            Ok((data, stat)) => serde_json::from_slice(&data)
                .map(|r| Some((r, stat.version)))
                .map_err(|e| RolesError::Corrupt {
                    path,
                    message: e.to_string(),
                }),
            Err(CoordError::NoNode(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Write the table (created if missing, else version-checked).
    pub async fn store(
        &self,
        coord: &Arc<dyn Coordination>,
        version: Option<i32>,
    ) -> Result<(), RolesError> {
        let data = serde_json::to_vec_pretty(self).expect("roles serialize");
        let path = layout::roles_path();
        match version {
            Some(v) => {
                coord.set(&path, &data, Expect::Version(v)).await?;
            }
            None => {
                coord.mkdirp(&layout::auth_dir()).await?;
                coord
                    .create(&path, &data, coord::CreateMode::Persistent)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_names_are_path_safe() {
        assert_eq!(Role::parse("Operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
        assert!(Roles::valid_name("alice@ops"));
        for bad in ["", "a/b", "..", "a b", "a:b"] {
            assert!(!Roles::valid_name(bad), "{bad}");
        }
    }
}
