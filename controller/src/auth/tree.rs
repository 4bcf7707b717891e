//! Re-applying the policy over the whole `/tritonctl` tree (setACL), after
//! a change of roles and when an open tree is locked down; with a dry run
//! that lists what would change and changes nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use coord::{Acl, CoordError, Coordination, Expect};

use super::policy::{self, TOP};
use super::roles::Roles;

/// One node whose ACL differs from the policy's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclChange {
    pub path: String,
    pub from: Vec<Acl>,
    pub to: Vec<Acl>,
}

impl std::fmt::Display for AclChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |acl: &[Acl]| {
            acl.iter()
                .map(|a| match a.id.digest_user() {
                    Some(u) => format!("{u}:{}", a.perms),
                    None => a.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(&self.from),
            show(&self.to)
        )
    }
}

fn same(a: &[Acl], b: &[Acl]) -> bool {
    let key = |acl: &[Acl]| {
        let mut v: Vec<(String, String, i32)> = acl
            .iter()
            .map(|x| (x.id.scheme.clone(), x.id.id.clone(), x.perms.0))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    key(a) == key(b)
}

/// Every node under `/tritonctl` whose ACL is not the policy's, parents
/// before children; unless `dry_run`, each is set as it is found (so the
/// caller keeps the read and admin rights it needs to walk on). A node
/// gone meanwhile is skipped.
pub async fn reapply(
    coord: &Arc<dyn Coordination>,
    roles: &Roles,
    dry_run: bool,
) -> Result<Vec<AclChange>, CoordError> {
    let mut changes = Vec::new();
    let mut queue = VecDeque::from([TOP.to_string()]);
    while let Some(path) = queue.pop_front() {
        let (current, stat) = match coord.get_acl(&path).await {
            Ok(x) => x,
            Err(CoordError::NoNode(_)) => continue,
            Err(e) => return Err(e),
        };
        if let Some(wanted) = policy::wanted_acl(&path, roles, &current)
            && !same(&current, &wanted)
        {
            if !dry_run {
                match coord.set_acl(&path, &wanted, Expect::Any).await {
                    Ok(()) | Err(CoordError::NoNode(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            changes.push(AclChange {
                path: path.clone(),
                from: current,
                to: wanted,
            });
        }
        if stat.num_children == 0 {
            continue;
        }
        let mut children = match coord.children(&path).await {
            Ok(c) => c,
            Err(CoordError::NoNode(_)) => continue,
            Err(e) => return Err(e),
        };
        children.sort();
        queue.extend(children.into_iter().map(|c| coord::join(&path, &c)));
    }
    Ok(changes)
}
