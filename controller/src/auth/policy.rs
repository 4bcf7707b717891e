//! Who may do what to each node tritonctl creates: decided here, once, by
//! `layout` path. [`acl_for`] turns a path and the role table into the
//! node's ZooKeeper ACL; every create of every node under `/tritonctl` gets
//! it ([`super::session::AclSession`]), and `tritonctl auth` re-applies it
//! over the tree when roles change ([`super::tree`]).
//!
//! | area | controller | admin | readers | operator | approver |
//! |---|---|---|---|---|---|
//! | `/tritonctl`, `/tritonctl/v1`, any path not below | all | ra | r | | |
//! | `documents`, `status`, `events`, `operations`, `transplants`, `locks`, `leader`, `approvals`, `pauses`, `plans`, `cancels` (the directories) | all | ra | r | as below | as below |
//! | `documents/<kind>` | all | ra | r | cd | |
//! | `documents/<kind>/<name>` | all | ra | r | w | |
//! | `status/<kind>` | all | ra | r | d (with the document) | |
//! | `events` | all | ra | r | cd | cd |
//! | `approvals`, `approvals/<op>` | all | ra | r | | c |
//! | `pauses/<kind>` | all | ra | r | cd | |
//! | `pauses/<kind>/<name>` | all | ra | r | w | |
//! | `cancels`, `plans` | all | ra | r | c | |
//! | `tuning`, `tuning/reshard` | all | ra | r | c | |
//! | `tuning/reshard/<op>` (`reshard tune`; the controller reads it) | all | ra | r | w | |
//! | `secrets` | all | ra | | | |
//! | `secrets/<name>` | all | a | | | |
//! | `auth`, `auth/roles` | r | all | r | | |
//! | `audit` | rad | all | r | | |
//! | `audit/<identity>` | rad | ra | r | c if it is theirs | c if it is theirs |
//! | `audit/<identity>/<record>` | ra | ra | r | | |
//!
//! "readers" is every identity in the table; nobody else (no `world`
//! entry) may read anything under `/tritonctl`. An audit record also gets
//! `auth:` with `d` alone (a permission that means nothing on a leaf): the
//! server replaces it with the creating session's digest id, so the record
//! names its author in a way the author cannot forge ([`super::audit`]).
//! Everything else below a known area (statuses, events, journals, locks,
//! election nodes, approvals, plans' markers) is the controller's to write
//! and everyone's to read. A path nobody knew when this table was written
//! (a colleague's new node) falls to the first row: the controller writes,
//! identities read.

use std::collections::BTreeMap;

use coord::{Acl, Id, Perms};

use super::roles::{Role, Roles};
use crate::layout::ROOT;

const R: Perms = Perms::READ;
const W: Perms = Perms::WRITE;
const C: Perms = Perms::CREATE;
const D: Perms = Perms::DELETE;
const A: Perms = Perms::ADMIN;
const ALL: Perms = Perms::ALL;

/// The top of tritonctl's tree (the parent of `ROOT`).
pub const TOP: &str = "/tritonctl";

/// What a path holds, as far as access goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Area {
    /// `/tritonctl`, `/tritonctl/v1`, the area directories, and anything
    /// not named below.
    Tree,
    KindDocuments,
    Document,
    KindStatus,
    Events,
    ApprovalsDir,
    PausesKind,
    Pause,
    /// `cancels` and `plans`: an operator creates the children.
    OperatorCreates,
    /// `tuning`, `tuning/reshard`: an operator creates a resharding's
    /// tuning node (`tritonctl reshard tune`).
    TuningDir,
    /// `tuning/reshard/<op>`: an operator rewrites it; the controller's
    /// cleanup reads it while it runs.
    Tuning,
    SecretsDir,
    Secret,
    Auth,
    AuditDir,
    AuditIdentity(String),
    AuditRecord(String),
}

/// Who a grant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Role(Role),
    /// Every identity in the table.
    Readers,
    /// The identity named by the path (`audit/<identity>`).
    Owner,
    /// The creating session, recorded by the server (`auth:`).
    Creator,
}

/// Classify a path under `/tritonctl`; `None` for paths that are not
/// tritonctl's (they keep the open ACL: not ours to lock).
pub fn classify(path: &str) -> Option<Area> {
    if path != TOP && !path.starts_with("/tritonctl/") {
        return None;
    }
    let Some(rest) = path.strip_prefix(ROOT) else {
        return Some(Area::Tree);
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    Some(match parts.as_slice() {
        ["documents", _] => Area::KindDocuments,
        ["documents", _, _, ..] => Area::Document,
        ["status", _] => Area::KindStatus,
        ["events"] => Area::Events,
        ["approvals"] | ["approvals", _] => Area::ApprovalsDir,
        ["pauses", _] => Area::PausesKind,
        ["pauses", _, _, ..] => Area::Pause,
        ["cancels"] | ["plans"] => Area::OperatorCreates,
        ["tuning"] | ["tuning", "reshard"] => Area::TuningDir,
        ["tuning", "reshard", _, ..] => Area::Tuning,
        ["secrets"] => Area::SecretsDir,
        ["secrets", _, ..] => Area::Secret,
        ["auth", ..] => Area::Auth,
        ["audit"] => Area::AuditDir,
        ["audit", who] => Area::AuditIdentity((*who).to_string()),
        ["audit", who, _, ..] => Area::AuditRecord((*who).to_string()),
        _ => Area::Tree,
    })
}

fn grants(area: &Area) -> Vec<(Who, Perms)> {
    use Who::*;
    let base = |extra: &[(Who, Perms)]| {
        let mut g = vec![
            (Role(self::Role::Controller), ALL),
            (Role(self::Role::Admin), R | A),
            (Readers, R),
        ];
        g.extend_from_slice(extra);
        g
    };
    let operator = Role(self::Role::Operator);
    let approver = Role(self::Role::Approver);
    match area {
        Area::Tree => base(&[]),
        Area::KindDocuments => base(&[(operator, C | D)]),
        Area::Document => base(&[(operator, W)]),
        Area::KindStatus => base(&[(operator, D)]),
        Area::Events => base(&[(operator, C | D), (approver, C | D)]),
        Area::ApprovalsDir => base(&[(approver, C)]),
        Area::PausesKind => base(&[(operator, C | D)]),
        Area::Pause => base(&[(operator, W)]),
        Area::OperatorCreates => base(&[(operator, C)]),
        Area::TuningDir => base(&[(operator, C)]),
        Area::Tuning => base(&[(operator, W)]),
        Area::SecretsDir => vec![
            (Role(self::Role::Controller), ALL),
            (Role(self::Role::Admin), R | A),
        ],
        Area::Secret => vec![
            (Role(self::Role::Controller), ALL),
            (Role(self::Role::Admin), A),
        ],
        Area::Auth => vec![
            (Role(self::Role::Admin), ALL),
            (Role(self::Role::Controller), R),
            (Readers, R),
        ],
        Area::AuditDir => vec![
            (Role(self::Role::Admin), ALL),
            (Role(self::Role::Controller), R | A | D),
            (Readers, R),
        ],
        Area::AuditIdentity(_) => vec![
            (Role(self::Role::Admin), R | A),
            (Role(self::Role::Controller), R | A | D),
            (Readers, R),
            (Owner, C),
        ],
        Area::AuditRecord(_) => vec![
            (Role(self::Role::Admin), R | A),
            (Role(self::Role::Controller), R | A),
            (Readers, R),
            (Creator, D),
        ],
    }
}

/// The ACL a node at `path` gets, `None` for a path that is not
/// tritonctl's. One entry per identity (their permissions merged), in name
/// order, then the creator entry of an audit record.
pub fn acl_for(path: &str, roles: &Roles) -> Option<Vec<Acl>> {
    let area = classify(path)?;
    let owner = match &area {
        Area::AuditIdentity(o) | Area::AuditRecord(o) => Some(o.as_str()),
        _ => None,
    };
    let mut per_identity: BTreeMap<&str, Perms> = BTreeMap::new();
    let mut creator = Perms::NONE;
    for (who, perms) in grants(&area) {
        match who {
            Who::Creator => creator |= perms,
            Who::Readers => {
                for name in roles.identities.keys() {
                    *per_identity.entry(name).or_default() |= perms;
                }
            }
            Who::Role(role) => {
                for (name, _) in roles.with_role(role) {
                    *per_identity.entry(name).or_default() |= perms;
                }
            }
            Who::Owner => {
                if let Some(o) = owner
                    && roles.identities.contains_key(o)
                {
                    *per_identity.entry(o).or_default() |= perms;
                }
            }
        }
    }
    let mut acl: Vec<Acl> = per_identity
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(name, perms)| Acl::new(perms, roles.identities[name].id()))
        .collect();
    if !creator.is_empty() {
        acl.push(Acl::new(creator, Id::creator()));
    }
    Some(acl)
}

/// The entries the server wrote for an `auth:` grant when the node was
/// made (an audit record's author): kept when ACLs are re-applied.
pub fn creator_entries(path: &str, current: &[Acl]) -> Vec<Acl> {
    match classify(path) {
        Some(Area::AuditRecord(_)) => current
            .iter()
            .filter(|a| a.perms == D && a.id.scheme == "digest")
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// The ACL a node should have now: the policy's (with an `auth:` entry
/// replaced by the authors the server recorded).
pub fn wanted_acl(path: &str, roles: &Roles, current: &[Acl]) -> Option<Vec<Acl>> {
    let mut acl = acl_for(path, roles)?;
    acl.retain(|a| a.id != Id::creator());
    acl.extend(creator_entries(path, current));
    Some(acl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::Identity;
    use crate::layout;
    use crds::Kind;

    fn roles() -> Roles {
        let mut r = Roles::default();
        for (name, role) in [
            ("tritonctl", Role::Controller),
            ("admin", Role::Admin),
            ("vera", Role::Viewer),
            ("otto", Role::Operator),
            ("anna", Role::Approver),
        ] {
            r.identities.insert(
                name.into(),
                Identity {
                    digest: format!("{name}:hash"),
                    roles: [role].into(),
                    added: String::new(),
                    added_by: String::new(),
                },
            );
        }
        r
    }

    fn perms_of(acl: &[Acl], who: &str) -> Perms {
        acl.iter()
            .find(|a| a.id.digest_user() == Some(who))
            .map(|a| a.perms)
            .unwrap_or_default()
    }

    #[test]
    fn each_area_grants_what_its_roles_need_and_nothing_to_the_world() {
        let r = roles();
        let mv = Kind::ManateeVersion;
        let doc = acl_for(&layout::document_path(mv, "sdc"), &r).unwrap();
        assert_eq!(perms_of(&doc, "otto"), R | W);
        assert_eq!(perms_of(&doc, "anna"), R);
        assert_eq!(perms_of(&doc, "tritonctl"), ALL);
        assert_eq!(perms_of(&doc, "admin"), R | A);
        let status = acl_for(&layout::status_path(mv, "sdc"), &r).unwrap();
        assert_eq!(perms_of(&status, "otto"), R);
        let approval = acl_for(&layout::approval_path("op", "s"), &r).unwrap();
        assert_eq!(perms_of(&approval, "anna"), R);
        let op_dir = acl_for("/tritonctl/v1/approvals/op", &r).unwrap();
        assert_eq!(perms_of(&op_dir, "anna"), R | C);
        assert_eq!(perms_of(&op_dir, "otto"), R);
        let cancels = acl_for(&layout::cancels_dir(), &r).unwrap();
        assert_eq!(perms_of(&cancels, "otto"), R | C);
        assert_eq!(perms_of(&cancels, "anna"), R);
        let tuning_dir = acl_for(&layout::reshard_tuning_dir(), &r).unwrap();
        assert_eq!(perms_of(&tuning_dir, "otto"), R | C);
        assert_eq!(perms_of(&tuning_dir, "vera"), R);
        let tuning = acl_for(&layout::reshard_tuning_path("op"), &r).unwrap();
        assert_eq!(perms_of(&tuning, "otto"), R | W);
        assert_eq!(perms_of(&tuning, "vera"), R);
        assert_eq!(perms_of(&tuning, "tritonctl"), ALL);
        let secret = acl_for("/tritonctl/v1/secrets/plan-key", &r).unwrap();
        assert_eq!(perms_of(&secret, "tritonctl"), ALL);
        assert_eq!(perms_of(&secret, "admin"), A);
        assert_eq!(perms_of(&secret, "vera"), Perms::NONE);
        let audit = acl_for(&layout::audit_identity_dir("otto"), &r).unwrap();
        assert_eq!(perms_of(&audit, "otto"), R | C);
        assert_eq!(perms_of(&audit, "anna"), R);
        assert_eq!(perms_of(&audit, "tritonctl"), R | A | D);
        let record = acl_for("/tritonctl/v1/audit/otto/r-0000000001", &r).unwrap();
        assert!(record.contains(&Acl::new(D, Id::creator())));
        // A node nobody planned for: controller writes, readers read.
        let new = acl_for("/tritonctl/v1/something-new/x", &r).unwrap();
        assert_eq!(perms_of(&new, "tritonctl"), ALL);
        assert_eq!(perms_of(&new, "otto"), R);
        for path in [
            "/tritonctl",
            "/tritonctl/v1/leader/candidate-0000000001",
            "/tritonctl/v1/events/e-0000000001",
        ] {
            let acl = acl_for(path, &r).unwrap();
            assert!(acl.iter().all(|a| a.id.scheme == "digest"), "{path}");
        }
        assert_eq!(acl_for("/manatee/sdc/state", &r), None);
        assert_eq!(acl_for("/tritonctlx", &r), None);
    }
}
