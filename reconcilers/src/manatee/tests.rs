use std::time::Duration;

use crds::manatee::{Approval, ManateeVersionSpec};
use crds::status::OperationStatus;

use super::*;
use crate::error::BlockReason;
use crate::operation::{Gate, StepRunner};
use wire::manatee::PeerIdent;

pub(crate) fn ident(zone: &str, ip: &str) -> PeerIdent {
    PeerIdent::with_default_ports(zone, ip)
}

pub(super) fn peer(zone: &str, image: &str) -> PeerObservation {
    PeerObservation {
        zone: zone.into(),
        alias: format!("manatee-{zone}"),
        server: format!("cn-{zone}"),
        image: image.into(),
        vm_state: "running".into(),
        active: true,
        pg_online: true,
        lag_seconds: Some(0.0),
        one_node_write_mode: false,
    }
}

pub(super) fn three_peers(image: &str) -> ShardObservation {
    let st = ClusterState::initial(
        ident("p", "10.0.0.1"),
        ident("s", "10.0.0.2"),
        vec![ident("a", "10.0.0.3")],
    );
    ShardObservation {
        shard: "sdc".into(),
        state: Some(st),
        peers: vec![peer("p", image), peer("s", image), peer("a", image)],
    }
}

pub(super) fn spec(approval: Approval) -> ManateeVersionSpec {
    let approval = serde_json::to_value(approval).unwrap();
    // These tests are about sdcadm's order; `auto` would pick the
    // switchover for these images (switchover_tests.rs).
    serde_json::from_value(serde_json::json!({"shards": ["sdc"], "image": {"uuid": NEW}, "strategy": "rolling", "rollout": {"approval": approval}})).unwrap()
}

pub(super) const OLD: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";
pub(super) const NEW: &str = "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716";

pub(super) fn image() -> ImageInfo {
    ImageInfo {
        uuid: NEW.into(),
        name: "manatee".into(),
        version: "20251104T182201Z".into(),
        state: "active".into(),
        manatee_major: Some(2),
    }
}

#[test]
fn plan_orders_async_sync_freeze_primary_unfreeze() {
    let ShardPlan::Upgrade(op) = plan_shard(
        &spec(Approval::BeforePrimary),
        &three_peers(OLD),
        Some(&image()),
        "op1",
    ) else {
        panic!()
    };
    let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "preflight",
            "reprovision-async-a",
            "reprovision-sync-s",
            "approve-primary",
            "freeze",
            "reprovision-primary-p",
            "wait-healthy",
            "unfreeze"
        ]
    );
}

#[test]
fn refuses_deposed_peers_unknown_images_and_foreign_freezes() {
    let mut obs = three_peers(OLD);
    obs.state
        .as_mut()
        .unwrap()
        .deposed
        .push(ident("d", "10.0.0.9"));
    assert!(
        matches!(plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op"), ShardPlan::Refused(r) if r.reason == RefusalReason::DeposedPeer)
    );
    assert!(
        matches!(plan_shard(&spec(Approval::Never), &three_peers(OLD), None, "op"), ShardPlan::Refused(r) if r.reason == RefusalReason::UnknownImage)
    );
    let mut obs = three_peers(OLD);
    obs.state
        .as_mut()
        .unwrap()
        .freeze("sdcadm /var/sdcadm/updates/x")
        .unwrap();
    assert!(
        matches!(plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op"), ShardPlan::Refused(r) if r.reason == RefusalReason::FrozenByOther)
    );
    let mut obs = three_peers(OLD);
    obs.state.as_mut().unwrap().sync = None;
    assert!(matches!(
        plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op"),
        ShardPlan::Refused(..)
    ));
}

#[test]
fn up_to_date_shards_plan_nothing_and_done_peers_are_skipped() {
    assert_eq!(
        plan_shard(
            &spec(Approval::Never),
            &three_peers(NEW),
            Some(&image()),
            "op"
        ),
        ShardPlan::UpToDate
    );
    let mut obs = three_peers(OLD);
    obs.peers[2].image = NEW.into(); // the async is done already
    let ShardPlan::Upgrade(op) = plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op")
    else {
        panic!()
    };
    assert!(
        !op.status
            .steps
            .iter()
            .any(|s| s.name.starts_with("reprovision-async"))
    );
}

#[test]
fn one_node_shards_do_not_freeze() {
    let st = ClusterState::initial_onwm(ident("p", "10.0.0.1"), "2026-01-01T00:00:00.000Z");
    let obs = ShardObservation {
        shard: "sdc".into(),
        state: Some(st),
        peers: vec![peer("p", OLD)],
    };
    let ShardPlan::Upgrade(op) = plan_shard(&spec(Approval::Never), &obs, Some(&image()), "op")
    else {
        panic!()
    };
    let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["preflight", "reprovision-primary-p", "wait-healthy"]
    );
}

/// A world that only records what the runner asks of it.
pub(super) struct FakeWorld {
    pub(super) obs: std::sync::Mutex<ShardObservation>,
    pub(super) calls: std::sync::Mutex<Vec<String>>,
    /// A reprovision job VMAPI reports queued or running.
    pub(super) in_flight: std::sync::Mutex<bool>,
}

#[async_trait]
impl ManateeObserve for FakeWorld {
    async fn observe(&self, _: &str) -> Result<ShardObservation, WorldError> {
        Ok(self.obs.lock().unwrap().clone())
    }
    async fn image(&self, _: &str) -> Result<Option<ImageInfo>, WorldError> {
        Ok(Some(image()))
    }
    async fn approved(&self, _: &str, _: &str) -> Result<bool, WorldError> {
        Ok(false)
    }
    async fn reprovision_in_flight(&self, _: &str) -> Result<bool, WorldError> {
        Ok(*self.in_flight.lock().unwrap())
    }
}

#[async_trait]
impl ManateeAct for FakeWorld {
    async fn reprovision(&self, zone: &str, _: &str, _: &str) -> Result<(), WorldError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("reprovision {zone}"));
        Ok(())
    }
    async fn freeze(&self, _: &str, reason: &str) -> Result<(), WorldError> {
        self.calls.lock().unwrap().push(format!("freeze {reason}"));
        Ok(())
    }
    async fn unfreeze_own(&self, _: &str, reason: &str) -> Result<(), WorldError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("unfreeze {reason}"));
        Ok(())
    }
    async fn promote_sync(
        &self,
        _: &str,
        zone: &str,
        expire: time::OffsetDateTime,
    ) -> Result<(), WorldError> {
        self.calls.lock().unwrap().push(format!("promote {zone}"));
        let mut obs = self.obs.lock().unwrap();
        let st = obs.state.as_mut().unwrap();
        let id = st.sync.as_ref().unwrap().id.clone();
        let req = wire::manatee::PromoteRequest::sync(&id, st.generation, expire);
        st.set_promote(&req);
        Ok(())
    }
    async fn clear_promote(&self, _: &str) -> Result<(), WorldError> {
        self.calls.lock().unwrap().push("clear-promote".into());
        self.obs.lock().unwrap().state.as_mut().unwrap().promote = None;
        Ok(())
    }
}

pub(super) fn world(obs: ShardObservation) -> FakeWorld {
    FakeWorld {
        obs: std::sync::Mutex::new(obs),
        calls: std::sync::Mutex::new(vec![]),
        in_flight: std::sync::Mutex::new(false),
    }
}

#[tokio::test]
async fn a_resumed_reprovision_counts_as_dispatched_only_if_the_world_shows_it() {
    let w = world(three_peers(OLD));
    let zone = w.obs.lock().unwrap().peers[0].zone.clone();
    let a = reprovision(&zone, Role::Primary);
    let st = op_status("op1");
    // Never went out: back through the gate.
    assert!(!runner(&w).dispatched(&st, 0, &a).await.unwrap());
    // Its job runs: not gated again (its own disruption would close the gate).
    *w.in_flight.lock().unwrap() = true;
    assert!(runner(&w).dispatched(&st, 0, &a).await.unwrap());
    // Done already.
    *w.in_flight.lock().unwrap() = false;
    w.obs.lock().unwrap().peers[0].image = NEW.into();
    assert!(runner(&w).dispatched(&st, 0, &a).await.unwrap());
    // A timed-out step needs an operator's approval (none here).
    assert!(!runner(&w).may_retry(&st, 0, &a).await.unwrap());
}

pub(super) fn runner(w: &FakeWorld) -> ManateeRunner<'_, FakeWorld> {
    ManateeRunner {
        world: w,
        shard: "sdc".into(),
        max_lag_seconds: 5.0,
        instance_up_timeout: Duration::from_secs(1),
        catch_up_timeout: Duration::from_secs(1),
        window: None,
        clock: &crate::clock::SystemClock,
    }
}

fn reprovision(zone: &str, role: Role) -> ManateeAction {
    ManateeAction::Reprovision {
        zone: zone.into(),
        role,
        image: NEW.into(),
    }
}

pub(super) fn op_status(id: &str) -> OperationStatus {
    OperationStatus {
        id: id.into(),
        steps: vec![crds::status::StepStatus {
            name: "the-step".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) async fn gate(w: &FakeWorld, a: &ManateeAction) -> Gate {
    runner(w)
        .precondition(&op_status("op1"), 0, a)
        .await
        .unwrap()
}

#[tokio::test]
async fn never_two_peers_of_a_shard_down_at_once() {
    let mut obs = three_peers(OLD);
    obs.peers[2].active = false; // the async is away
    let w = world(obs);
    assert!(matches!(
        gate(&w, &reprovision("s", Role::Sync)).await,
        Gate::Wait { .. }
    ));
    w.obs.lock().unwrap().peers[2].active = true;
    assert_eq!(gate(&w, &reprovision("s", Role::Sync)).await, Gate::Open);
}

#[tokio::test]
async fn the_primary_waits_until_its_sync_has_caught_up() {
    let mut obs = three_peers(OLD);
    obs.peers[1].lag_seconds = Some(60.0);
    let w = world(obs);
    assert!(
        matches!(gate(&w, &reprovision("p", Role::Primary)).await, Gate::Wait { message: m, .. } if m.contains("not caught up"))
    );
    w.obs.lock().unwrap().peers[1].lag_seconds = Some(0.0);
    assert_eq!(gate(&w, &reprovision("p", Role::Primary)).await, Gate::Open);
}

#[tokio::test]
async fn a_role_change_under_the_plan_asks_for_a_replan() {
    // Planned as async, but a takeover made it the sync meanwhile.
    let w = world(three_peers(OLD));
    assert!(
        matches!(gate(&w, &reprovision("s", Role::Async)).await, Gate::Block { reason, .. } if reason == BlockReason::Replan)
    );
}

#[tokio::test]
async fn only_our_own_freeze_is_ever_lifted() {
    let mut obs = three_peers(NEW);
    obs.state
        .as_mut()
        .unwrap()
        .freeze("sdcadm /var/sdcadm/updates/x")
        .unwrap();
    let w = world(obs);
    let ours = ManateeAction::Unfreeze {
        reason: freeze_reason("op1"),
    };
    runner(&w)
        .act(&OperationStatus::default(), 0, &ours)
        .await
        .unwrap();
    assert!(
        w.calls.lock().unwrap().is_empty(),
        "lifted someone else's freeze"
    );
    // A foreign freeze appearing before ours blocks instead of being overwritten.
    let freeze = ManateeAction::Freeze {
        reason: freeze_reason("op1"),
    };
    assert!(
        matches!(gate(&w, &freeze).await, Gate::Block { reason, .. } if reason == BlockReason::Refused(RefusalReason::FrozenByOther))
    );
    // Our own freeze is lifted.
    w.obs
        .lock()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .unfreeze()
        .unwrap();
    w.obs
        .lock()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .freeze(&freeze_reason("op1"))
        .unwrap();
    runner(&w)
        .act(&OperationStatus::default(), 0, &ours)
        .await
        .unwrap();
    assert_eq!(
        *w.calls.lock().unwrap(),
        [format!("unfreeze {}", freeze_reason("op1"))]
    );
}

#[tokio::test]
async fn a_peer_already_on_the_image_is_not_reprovisioned_again() {
    // Resuming after a crash between the reprovision and the journal save.
    let mut obs = three_peers(OLD);
    obs.peers[2].image = NEW.into();
    let w = world(obs);
    runner(&w)
        .act(
            &OperationStatus::default(),
            0,
            &reprovision("a", Role::Async),
        )
        .await
        .unwrap();
    assert!(w.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn disruptive_steps_wait_for_the_maintenance_window() {
    use crate::clock::ManualClock;
    use time::macros::datetime;
    let w = world(three_peers(OLD));
    // Tuesdays 14:00 for 4h; 2026-01-06 is a Tuesday.
    let clock = ManualClock::new(datetime!(2026-01-06 09:00 UTC));
    let mut r = runner(&w);
    r.window = Some(crds::manatee::MaintenanceWindow {
        days: vec!["Tue".into()],
        start: "14:00".into(),
        duration: "4h".into(),
    });
    r.clock = &clock;
    let op = op_status("op1");
    let freeze = ManateeAction::Freeze {
        reason: freeze_reason("op1"),
    };
    let g = r
        .precondition(&op, 0, &reprovision("a", Role::Async))
        .await
        .unwrap();
    assert!(
        matches!(&g, Gate::Wait { message: m, .. } if m.contains("2026-01-06T14:00:00Z")),
        "{g:?}"
    );
    assert!(matches!(
        r.precondition(&op, 0, &freeze).await.unwrap(),
        Gate::Wait { .. }
    ));
    // Non-disruptive steps are not held back.
    assert_eq!(
        r.precondition(&op, 0, &ManateeAction::WaitHealthy)
            .await
            .unwrap(),
        Gate::Open
    );
    // Inside the window the step may start.
    clock.advance(Duration::from_secs(5 * 3600 + 60));
    assert_eq!(
        r.precondition(&op, 0, &reprovision("a", Role::Async))
            .await
            .unwrap(),
        Gate::Open
    );
    // After it closes the next is next Tuesday...
    clock.advance(Duration::from_secs(4 * 3600));
    let g = r.precondition(&op, 0, &freeze).await.unwrap();
    assert!(
        matches!(&g, Gate::Wait { message: m, .. } if m.contains("2026-01-13T14:00:00Z")),
        "{g:?}"
    );
    // ...but a primary whose shard we froze inside the window goes on
    // rather than leaving the shard frozen for a week.
    w.obs
        .lock()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .freeze(&freeze_reason("op1"))
        .unwrap();
    assert_eq!(
        r.precondition(&op, 0, &reprovision("p", Role::Primary))
            .await
            .unwrap(),
        Gate::Open
    );
}

/// After a takeover deposed the primary (its server died mid-upgrade).
fn after_takeover() -> ShardObservation {
    // Planned: p primary, s sync, a async. Now s is primary, a sync, p deposed.
    let mut st = ClusterState::initial(ident("s", "10.0.0.2"), ident("a", "10.0.0.3"), vec![]);
    st.generation = 2;
    st.deposed.push(ident("p", "10.0.0.1"));
    let mut obs = three_peers(OLD);
    obs.state = Some(st);
    obs.peers[2].image = NEW.into(); // the async was done before
    obs
}

#[test]
fn a_peer_deposed_during_our_upgrade_is_rebuilt_others_refuse() {
    let ours = vec!["p".to_string(), "s".to_string(), "a".to_string()];
    let sp = spec(Approval::Never);
    // Not ours (no journal names it): refused as before.
    assert!(matches!(
        plan_shard_with(&sp, &after_takeover(), Some(&image()), "op2", &[]),
        ShardPlan::Refused(r) if r.reason == RefusalReason::DeposedPeer
    ));
    // Ours but its zone is down (the server is still dead): wait for it.
    let mut down = after_takeover();
    down.peers[0].vm_state = "unknown".into();
    down.peers[0].active = false;
    assert!(matches!(
        plan_shard_with(&sp, &down, Some(&image()), "op2", &ours),
        ShardPlan::Refused(r) if r.reason == RefusalReason::DeposedPeerDown
    ));
    // Ours and back: rebuild first, then upgrade it as an async, then the
    // new primary (s) last.
    let ShardPlan::Upgrade(op) =
        plan_shard_with(&sp, &after_takeover(), Some(&image()), "op2", &ours)
    else {
        panic!()
    };
    let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rebuild-p",
            "preflight",
            "reprovision-async-p",
            "freeze",
            "reprovision-primary-s",
            "wait-healthy",
            "unfreeze"
        ]
    );
}

#[tokio::test]
async fn a_rebuild_needs_a_healthy_primary_and_sync_and_never_touches_the_primary() {
    let mut obs = after_takeover();
    obs.peers[2].lag_seconds = Some(60.0); // the new sync lags
    let w = world(obs);
    let rebuild = ManateeAction::Rebuild { zone: "p".into() };
    assert!(matches!(gate(&w, &rebuild).await, Gate::Wait { .. }));
    w.obs.lock().unwrap().peers[2].lag_seconds = Some(0.0);
    assert_eq!(gate(&w, &rebuild).await, Gate::Open);
    let primary = ManateeAction::Rebuild { zone: "s".into() };
    w.obs
        .lock()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .deposed
        .push(ident("s", "10.0.0.2"));
    assert!(matches!(
        gate(&w, &primary).await,
        Gate::Block { reason, .. } if reason == BlockReason::RebuildPrimary
    ));
}

#[tokio::test]
async fn a_takeover_while_awaiting_approval_replans_instead_of_freezing() {
    let w = world(after_takeover());
    for a in [
        ManateeAction::Approval {
            what: "primary".into(),
        },
        ManateeAction::Freeze {
            reason: freeze_reason("op1"),
        },
    ] {
        assert!(
            matches!(gate(&w, &a).await, Gate::Block { reason, .. } if reason == BlockReason::Replan),
            "{a:?}"
        );
    }
}

/// A standby whose lag manatee-adm could not read (`?`, an unknown unit) is
/// never caught up: the sync must not pass for caught up before its primary
/// is disrupted. It passed before `parse_lag` read such a lag as the largest.
#[test]
fn a_standby_whose_lag_cannot_be_read_is_not_caught_up() {
    for shown in ["?", "5x", ""] {
        let mut p = peer("s", "img");
        p.lag_seconds = wire::pgstatus::parse_lag(shown);
        assert!(!standby_ok(&p, 5.0), "lag shown as {shown:?}");
    }
    let mut p = peer("s", "img");
    p.lag_seconds = wire::pgstatus::parse_lag("0m03s");
    assert!(standby_ok(&p, 5.0));
    let mut obs = three_peers("img");
    for p in &mut obs.peers {
        if p.zone == "s" {
            p.lag_seconds = wire::pgstatus::parse_lag("?");
        }
    }
    assert!(shard_health(&obs, 5.0).is_err());
}
