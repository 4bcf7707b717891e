use std::collections::BTreeMap;

use crds::manatee::{ManateeVersionSpec, Strategy};
use crds::status::StepState;

use super::*;
use crate::error::RefusalReason;
use crate::operation::Operation;

const V1: &str = "6d8a6f1e-1b2c-4c3d-9e4f-5a6b7c8d9e01";
const V2: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";

fn zone(n: u64) -> ZoneObs {
    ZoneObs {
        zone: format!("z{n}-uuid"),
        alias: format!("manatee{n}"),
        server: format!("hn{n}"),
        image: V1.into(),
        vm_state: "running".into(),
        sitter_enabled: true,
        config_agent_enabled: true,
        election_seq: Some(n),
        writable: n == 0,
        ..Default::default()
    }
}

fn obs(n: u64) -> TransplantObs {
    TransplantObs {
        shard: "sdc".into(),
        zones: (0..n).map(zone).collect(),
        morays: vec![MorayObs {
            zone: "moray0".into(),
            image_version: "20240327T001755Z".into(),
            enabled: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn majors() -> BTreeMap<String, u32> {
    [(V1.to_string(), 1), (V2.to_string(), 2)].into()
}

fn spec(first: &str) -> ManateeVersionSpec {
    serde_json::from_value(serde_json::json!({
        "shards": ["sdc"], "image": {"uuid": V2}, "strategy": "auto",
        "rollout": {"approval": "never"},
        "transplant": {"firstV2Node": first}
    }))
    .unwrap()
}

fn names(op: &Operation<TransplantAction>) -> Vec<&str> {
    op.status.steps.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn auto_picks_transplant_across_majors_and_rolling_is_refused() {
    assert_eq!(
        resolve_strategy(Strategy::Auto, &[1, 1, 1], Some(2), V2),
        Ok(Resolved::Transplant)
    );
    assert_eq!(
        resolve_strategy(Strategy::Auto, &[2, 2], Some(2), V2),
        Ok(Resolved::Rolling)
    );
    assert!(matches!(
        resolve_strategy(Strategy::Rolling, &[1, 1, 1], Some(2), V2),
        Err(r) if r.reason == RefusalReason::MajorVersionChange
    ));
    assert!(matches!(
        resolve_strategy(Strategy::Auto, &[2], Some(1), V1),
        Err(r) if r.reason == RefusalReason::MajorDowngrade
    ));
    assert!(matches!(
        resolve_strategy(Strategy::Transplant, &[2], Some(2), V2),
        Err(r) if r.reason == RefusalReason::NoMajorChange
    ));
}

#[test]
fn the_manifest_says_the_major_by_tag_or_by_sdcadm_version_rule() {
    let mut i = ImageInfo {
        uuid: V1.into(),
        name: "sdc-manatee".into(),
        version: "master-20141118T223437Z-g1234567".into(),
        state: "active".into(),
        manatee_major: None,
    };
    assert_eq!(
        manatee_major(&i),
        None,
        "a git-describe version is not a timestamp"
    );
    i.version = "20141118T223437Z".into();
    assert_eq!(manatee_major(&i), Some(1));
    i.version = "20150320T174220Z".into();
    assert_eq!(manatee_major(&i), Some(2));
    i.manatee_major = Some(1);
    assert_eq!(manatee_major(&i), Some(1), "the tag wins");
}

#[test]
fn lab_plan_option_new_instance_marks_the_point_of_no_return() {
    let op = plan_transplant(
        &spec("newInstanceOnPrimaryServer"),
        &obs(3),
        &majors(),
        "op1",
    )
    .unwrap();
    assert_eq!(
        names(&op),
        [
            "check-moray",
            "record-initial-state",
            "disable-async-sitter-z2",
            "disable-sync-sitter-z1",
            "primary-one-node-write-mode",
            "backup-snapshot",
            "set-service-image",
            "create-v2-instance",
            "prepare-receive",
            "stop-writes",
            "disable-primary-sitter",
            "migrate-snapshot",
            "send-to-v2",
            "write-onwm-state",
            "enable-v2-sitter",
            "start-writes",
            "reprovision-sync-z1",
            "leave-one-node-write-mode",
            "wait-two-peers",
            "reprovision-last-z2",
            "wait-all-peers",
            "release-backup",
            "retire-v1-primary",
        ]
    );
    let pnr = op.status.point_of_no_return.unwrap();
    assert_eq!(op.status.steps[pnr].name, PNR_STEP);
    assert_eq!(op.status.steps.iter().filter(|s| s.irreversible).count(), 1);
    // Writes stop only right before the copy.
    let stop = names(&op).iter().position(|n| *n == "stop-writes").unwrap();
    let start = names(&op)
        .iter()
        .position(|n| *n == "start-writes")
        .unwrap();
    assert!(stop < pnr && pnr < start);
}

#[test]
fn lab_plan_option_reprovision_async_ends_with_the_old_primary() {
    let op = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
    let n = names(&op);
    assert!(n.contains(&"reprovision-async-v2-z2"));
    assert!(!n.contains(&"create-v2-instance"));
    assert!(n.contains(&"reprovision-last-z0"));
    assert!(!n.contains(&"retire-v1-primary"));
    match &op.actions[n.iter().position(|x| *x == "send-to-v2").unwrap()] {
        TransplantAction::Send { from, to, .. } => {
            assert_eq!((from.as_str(), to.as_str()), ("z0-uuid", "z2-uuid"))
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn coal_plan_has_no_sync_to_disable_and_refuses_reprovision_async() {
    let op = plan_transplant(
        &spec("newInstanceOnPrimaryServer"),
        &obs(1),
        &majors(),
        "op1",
    )
    .unwrap();
    let n = names(&op);
    assert!(
        !n.iter()
            .any(|x| x.starts_with("disable-sync") || x.starts_with("disable-async"))
    );
    assert!(
        !n.contains(&"leave-one-node-write-mode"),
        "a one-node shard stays in ONWM"
    );
    assert!(matches!(
        plan_transplant(&spec("reprovisionAsync"), &obs(1), &majors(), "op1"),
        Err(r) if r.reason == RefusalReason::NoAsync
    ));
}

#[test]
fn refuses_a_shard_with_v2_state_or_a_missing_peer() {
    let mut o = obs(3);
    o.zones[2].election_seq = None;
    assert!(matches!(
        plan_transplant(&spec("reprovisionAsync"), &o, &majors(), "op"),
        Err(r) if r.reason == RefusalReason::UnhealthyPeer
    ));
    let mut o = obs(3);
    o.zones[1].image = V2.into();
    assert!(matches!(
        plan_transplant(&spec("reprovisionAsync"), &o, &majors(), "op"),
        Err(r) if r.reason == RefusalReason::MixedMajors
    ));
}

fn mark(op: &mut Operation<TransplantAction>, upto: &str) {
    let k = op.status.steps.iter().position(|s| s.name == upto).unwrap();
    for s in &mut op.status.steps[..=k] {
        s.state = StepState::Succeeded;
    }
}

#[test]
fn rollback_follows_the_runbook_for_what_was_done() {
    let mut op = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
    mark(&mut op, "send-to-v2");
    let rb = rollback_plan(&op).unwrap();
    assert_eq!(
        names(&rb),
        [
            "rollback-primary",
            "rollback-enable-sync",
            "rollback-start-writes",
            "rollback-revert-async-0",
            "rollback-service-image",
            "rollback-wait-v1",
            "rollback-release-migrate",
            "rollback-release-backup",
        ]
    );
    // Nothing done yet: nothing to undo but the wait.
    let fresh = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
    assert_eq!(names(&rollback_plan(&fresh).unwrap()), ["rollback-wait-v1"]);
}

#[test]
fn no_rollback_plan_once_the_point_of_no_return_started() {
    let mut op = plan_transplant(
        &spec("newInstanceOnPrimaryServer"),
        &obs(3),
        &majors(),
        "op1",
    )
    .unwrap();
    mark(&mut op, "write-onwm-state");
    assert!(rollback_plan(&op).is_some());
    let rb = rollback_plan(&op).unwrap();
    assert_eq!(rb.status.steps[0].name, "rollback-delete-state");
    assert!(names(&rb).contains(&"rollback-delete-v2-instance"));
    let pnr = op.status.point_of_no_return.unwrap();
    op.status.steps[pnr].state = StepState::Running;
    assert!(rollback_plan(&op).is_none());
    let m = after_pnr_message(&op, "step x failed");
    assert!(
        m.contains("reverse-transplant")
            && m.contains("restore-backup")
            && m.contains("neither retries nor rolls back by itself")
            && m.contains("--option"),
        "{m}"
    );
    assert!(m.contains("zfs rollback -r zones/z0-uuid/data/manatee@tritonctl-op1-backup"));
}

#[test]
fn restore_backup_is_impossible_once_the_backup_is_gone() {
    let mut op = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
    mark(&mut op, "enable-v2-sitter");
    assert!(restore_backup_plan(&op).contains("zfs rollback"));
    assert!(reverse_transplant_plan(&op).contains("keeps every write"));
    mark(&mut op, "reprovision-last-z0");
    assert!(
        restore_backup_plan(&op).contains("impossible"),
        "{}",
        restore_backup_plan(&op)
    );
    assert!(reverse_transplant_plan(&op).contains("every v1 peer is gone"));
    assert_ne!(decision_key(1, "resume"), decision_key(2, "resume"));
}
