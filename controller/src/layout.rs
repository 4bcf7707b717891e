//! Every path tritonctl keeps under `/tritonctl/v1/` in the coordination
//! store, in one place. Stored data must stay readable across versions, so
//! these builders are the on-disk format: change one only with a migration.
//!
//! ```text
//! /tritonctl/v1/
//!   documents/<kind>/<name>            spec (znode version = resourceVersion)
//!   status/<kind>/<name>               controller-written status
//!   events/e-<seq>                     reconcile events (sequential, bounded)
//!   operations/<kind>/<name>/<target>  rolling and HA operation journals
//!   transplants/<kind>/<name>/<shard>  transplant journals (forward + rollback)
//!   approvals/<operation>/<step>       `tritonctl approve` answers
//!   pauses/<kind>/<name>               `tritonctl pause` markers
//!   locks/shard/<shard>                one disruptive operation per shard
//!   plans/<id>                         saved plans applied (`apply --plan`)
//!   leader/candidate-<seq>             leader election (the fence)
//!   cancels/<operation>                `tritonctl cancel` requests
//!   auth/roles                         identities and roles (access control)
//!   audit/<identity>/r-<seq>           who decided what (`events --audit`)
//!   secrets/plan-key                   the key saved plans are signed with
//!   tuning/reshard/<operation>         a resharding's cleanup tuning (`reshard tune`)
//! ```

use crds::Kind;

/// The root of everything tritonctl stores.
pub const ROOT: &str = "/tritonctl/v1";

/// `documents/<kind>`: every document of one kind.
pub fn kind_dir(kind: Kind) -> String {
    format!("{ROOT}/documents/{}", kind.short())
}

/// `documents/<kind>/<name>`: one document's spec.
pub fn document_path(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind_dir(kind))
}

/// `status/<kind>`.
pub fn status_dir(kind: Kind) -> String {
    format!("{ROOT}/status/{}", kind.short())
}

/// `status/<kind>/<name>`: the status the controller writes for a document.
pub fn status_path(kind: Kind, name: &str) -> String {
    format!("{}/{name}", status_dir(kind))
}

/// `events`: the event log.
pub fn events_dir() -> String {
    format!("{ROOT}/events")
}

/// `operations/<kind>`.
pub fn operations_dir(kind: Kind) -> String {
    format!("{ROOT}/operations/{}", kind.short())
}

/// `operations/<kind>/<name>`: a document's operation journals, one per target.
pub fn journal_dir(kind: Kind, name: &str) -> String {
    format!("{}/{name}", operations_dir(kind))
}

/// `operations/<kind>/<name>/<target>`: one operation journal.
pub fn journal_path(kind: Kind, name: &str, target: &str) -> String {
    format!("{}/{target}", journal_dir(kind, name))
}

/// `transplants/mv/<name>`: a ManateeVersion's transplant journals.
pub fn transplant_dir(name: &str) -> String {
    format!("{ROOT}/transplants/{}/{name}", Kind::ManateeVersion.short())
}

/// `transplants/mv/<name>/<shard>`: one shard's transplant journal (apart
/// from the rolling journals).
pub fn transplant_journal_path(name: &str, shard: &str) -> String {
    format!("{}/{shard}", transplant_dir(name))
}

/// `approvals/<operation>/<step>`: where `tritonctl approve` records an
/// approval, one node per operation step (or retry key, or decision key).
pub fn approval_path(op_id: &str, step: &str) -> String {
    format!("{ROOT}/approvals/{op_id}/{step}")
}

/// `pauses/<kind>`.
pub fn pause_dir(kind: Kind) -> String {
    format!("{ROOT}/pauses/{}", kind.short())
}

/// `pauses/<kind>/<name>`: the pause marker of one document.
pub fn pause_path(kind: Kind, name: &str) -> String {
    format!("{}/{name}", pause_dir(kind))
}

/// `locks`.
pub fn locks_dir() -> String {
    format!("{ROOT}/locks")
}

/// `locks/shard`.
pub fn shard_locks_dir() -> String {
    format!("{}/shard", locks_dir())
}

/// `locks/shard/<shard>`: who works on a manatee shard now.
pub fn shard_lock_path(shard: &str) -> String {
    format!("{}/{shard}", shard_locks_dir())
}

/// `locks/reshard`: the one resharding of the region, its node naming the
/// operation id (taken with a create, released at the end).
pub fn reshard_lock_path() -> String {
    format!("{}/reshard", locks_dir())
}

/// `plans`: markers of saved plans already applied.
pub fn plans_dir() -> String {
    format!("{ROOT}/plans")
}

/// `plans/<id>`.
pub fn plan_marker_path(id: &str) -> String {
    format!("{}/{id}", plans_dir())
}

/// `secrets/plan-key`: the HMAC key of saved plans (32 random bytes,
/// created on first use; only tritonctl's identity may read it).
pub fn plan_key_path() -> String {
    format!("{ROOT}/secrets/plan-key")
}

/// `leader`: where controller candidates register.
pub fn leader_dir() -> String {
    format!("{ROOT}/leader")
}

/// `cancels`: `tritonctl cancel` requests, apart from approvals so that
/// ZooKeeper's ACLs can let an operator cancel without letting them approve.
pub fn cancels_dir() -> String {
    format!("{ROOT}/cancels")
}

/// `cancels/<operation>`: a rollback requested for one operation.
pub fn cancel_path(op_id: &str) -> String {
    format!("{}/{op_id}", cancels_dir())
}

/// `auth`: access control.
pub fn auth_dir() -> String {
    format!("{ROOT}/auth")
}

/// `auth/roles`: the identities, their digest ids and roles (JSON).
pub fn roles_path() -> String {
    format!("{}/roles", auth_dir())
}

/// `audit`: one directory per identity.
pub fn audit_dir() -> String {
    format!("{ROOT}/audit")
}

/// `audit/<identity>`: where only that identity may create records.
pub fn audit_identity_dir(identity: &str) -> String {
    format!("{}/{identity}", audit_dir())
}

/// `tuning/reshard`: live tuning of resharding cleanups.
pub fn reshard_tuning_dir() -> String {
    format!("{ROOT}/tuning/reshard")
}

/// `tuning/reshard/<operation>`: the operator's cleanup settings of one
/// resharding (JSON object of the tunables set; `tritonctl reshard tune`).
pub fn reshard_tuning_path(op_id: &str) -> String {
    format!("{}/{op_id}", reshard_tuning_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-for-byte paths of stored data (a change here strands it).
    #[test]
    fn paths_are_the_stored_format() {
        let mv = Kind::ManateeVersion;
        let short = mv.short();
        assert_eq!(
            document_path(mv, "sdc"),
            format!("/tritonctl/v1/documents/{short}/sdc")
        );
        assert_eq!(
            status_path(mv, "sdc"),
            format!("/tritonctl/v1/status/{short}/sdc")
        );
        assert_eq!(events_dir(), "/tritonctl/v1/events");
        assert_eq!(
            journal_path(mv, "sdc", "1.moray"),
            format!("/tritonctl/v1/operations/{short}/sdc/1.moray")
        );
        assert_eq!(
            transplant_journal_path("sdc", "sdc"),
            format!("/tritonctl/v1/transplants/{short}/sdc/sdc")
        );
        assert_eq!(approval_path("op", "s"), "/tritonctl/v1/approvals/op/s");
        assert_eq!(
            pause_path(mv, "sdc"),
            format!("/tritonctl/v1/pauses/{short}/sdc")
        );
        assert_eq!(shard_lock_path("sdc"), "/tritonctl/v1/locks/shard/sdc");
        assert_eq!(plan_marker_path("p1"), "/tritonctl/v1/plans/p1");
        assert_eq!(leader_dir(), "/tritonctl/v1/leader");
        assert_eq!(cancel_path("op"), "/tritonctl/v1/cancels/op");
        assert_eq!(roles_path(), "/tritonctl/v1/auth/roles");
        assert_eq!(audit_identity_dir("al"), "/tritonctl/v1/audit/al");
        assert_eq!(plan_key_path(), "/tritonctl/v1/secrets/plan-key");
        assert_eq!(reshard_tuning_path("op"), "/tritonctl/v1/tuning/reshard/op");
    }
}
