//! The switchover strategy: its plan, when `auto` picks it, the promote
//! step's safety rules.

use crds::manatee::{Approval, ManateeVersionSpec, Strategy};
use time::OffsetDateTime;
use wire::manatee::PromoteRequest;

use super::tests::{FakeWorld, NEW, OLD, gate, image, op_status, runner, spec, three_peers, world};
use super::*;
use crate::error::{BlockReason, RefusalReason, WaitReason};
use crate::operation::{Gate, Progress, StepRunner};

fn with(strategy: Strategy) -> ManateeVersionSpec {
    let mut s = spec(Approval::Never);
    s.strategy = strategy;
    s
}

fn names(plan: ShardPlan) -> (String, Vec<String>) {
    let ShardPlan::Upgrade(op) = plan else {
        panic!("{plan:?}")
    };
    (
        op.status.kind.clone(),
        op.status.steps.iter().map(|s| s.name.clone()).collect(),
    )
}

fn versioned(version: &str) -> ImageInfo {
    ImageInfo {
        version: version.into(),
        manatee_major: None,
        ..image()
    }
}

#[test]
fn auto_switches_over_a_three_peer_shard_whose_manatee_acts_on_promote() {
    for s in [Strategy::Auto, Strategy::Switchover] {
        let (kind, steps) = names(plan_shard(
            &with(s),
            &three_peers(OLD),
            Some(&image()),
            "op",
        ));
        assert_eq!(kind, "manatee-switchover-upgrade");
        assert_eq!(
            steps,
            [
                "preflight",
                "reprovision-async-a",
                "reprovision-sync-s",
                "promote-sync",
                "wait-promoted",
                "reprovision-deposed-p",
                "rebuild-p",
                "wait-healthy"
            ]
        );
    }
    // An approval goes before the takeover.
    let mut s = with(Strategy::Switchover);
    s.rollout.approval = Approval::BeforePrimary;
    let (_, steps) = names(plan_shard(&s, &three_peers(OLD), Some(&image()), "op"));
    assert_eq!(steps[3..5], ["approve-primary", "promote-sync"]);
}

#[test]
fn auto_keeps_sdcadm_order_below_three_peers_or_before_promote_existed() {
    // An image built before manatee learnt `promote`.
    let old = versioned("master-20190401T000000Z-g1234567");
    let (kind, steps) = names(plan_shard(
        &with(Strategy::Auto),
        &three_peers(OLD),
        Some(&old),
        "op",
    ));
    assert_eq!(kind, "manatee-rolling-upgrade");
    assert!(steps.contains(&"freeze".to_string()));
    assert!(matches!(
        plan_shard(&with(Strategy::Switchover), &three_peers(OLD), Some(&old), "op"),
        ShardPlan::Refused(r) if r.reason == RefusalReason::PromoteUnsupported
    ));
    // Two peers: no async to become the new sync.
    let mut two = three_peers(OLD);
    two.state.as_mut().unwrap().asyncs.clear();
    two.peers.retain(|p| p.zone != "a");
    let (kind, _) = names(plan_shard(
        &with(Strategy::Auto),
        &two,
        Some(&image()),
        "op",
    ));
    assert_eq!(kind, "manatee-rolling-upgrade");
    assert!(matches!(
        plan_shard(&with(Strategy::Switchover), &two, Some(&image()), "op"),
        ShardPlan::Refused(r) if r.reason == RefusalReason::SwitchoverNeedsAsync
    ));
    // `rolling` keeps sdcadm's order for operators who want it.
    let (kind, _) = names(plan_shard(
        &with(Strategy::Rolling),
        &three_peers(OLD),
        Some(&image()),
        "op",
    ));
    assert_eq!(kind, "manatee-rolling-upgrade");
    // The version rule.
    assert!(promote_capable(&versioned(PROMOTE_MIN_VERSION)));
    assert!(promote_capable(&versioned(
        "master-20240327T001755Z-gabcdef0"
    )));
    assert!(!promote_capable(&versioned("20190507T173205Z")));
    assert!(!promote_capable(&versioned("2.1.1")));
    assert!(!promote_capable(&ImageInfo {
        manatee_major: Some(1),
        ..image()
    }));
}

/// Asyncs and sync done: the shard as the promote step finds it.
fn ready() -> FakeWorld {
    let mut obs = three_peers(OLD);
    for p in obs.peers.iter_mut().filter(|p| p.zone != "p") {
        p.image = NEW.into();
    }
    world(obs)
}

fn promote() -> ManateeAction {
    ManateeAction::Promote {
        primary: "p".into(),
        image: NEW.into(),
    }
}

fn is_wait(g: &Gate, reason: WaitReason) -> bool {
    matches!(g, Gate::Wait { reason: r, .. } if *r == reason)
}

fn is_block(g: &Gate, reason: BlockReason) -> bool {
    matches!(g, Gate::Block { reason: r, .. } if *r == reason)
}

#[tokio::test]
async fn never_promotes_a_sync_not_caught_up_or_with_an_unhealthy_peer() {
    let w = ready();
    assert_eq!(gate(&w, &promote()).await, Gate::Open);
    // The sync lags.
    w.obs.lock().unwrap().peers[1].lag_seconds = Some(30.0);
    assert!(is_wait(&gate(&w, &promote()).await, WaitReason::Health));
    w.obs.lock().unwrap().peers[1].lag_seconds = Some(0.0);
    // The async (the new sync-to-be) is down: the shard would run on one peer.
    w.obs.lock().unwrap().peers[2].pg_online = false;
    assert!(is_wait(&gate(&w, &promote()).await, WaitReason::Health));
    w.obs.lock().unwrap().peers[2].pg_online = true;
    // The sync is not on the image: it would take over on the old one.
    w.obs.lock().unwrap().peers[1].image = OLD.into();
    assert!(is_block(&gate(&w, &promote()).await, BlockReason::Replan));
    w.obs.lock().unwrap().peers[1].image = NEW.into();
    // Frozen: manatee-adm refuses to promote.
    w.obs
        .lock()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .freeze("someone")
        .unwrap();
    assert!(is_block(
        &gate(&w, &promote()).await,
        BlockReason::Refused(RefusalReason::FrozenByOther)
    ));
    w.obs
        .lock()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .unfreeze_own("someone")
        .unwrap();
    // Someone else's promote request (the async) is pending.
    {
        let mut obs = w.obs.lock().unwrap();
        let st = obs.state.as_mut().unwrap();
        let id = st.asyncs[0].id.clone();
        let req = PromoteRequest::async_at(&id, 0, st.generation, OffsetDateTime::now_utc());
        st.set_promote(&req);
    }
    assert!(is_block(
        &gate(&w, &promote()).await,
        BlockReason::Refused(RefusalReason::PromotePending)
    ));
    assert!(w.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_promote_is_cleared_never_left_to_act() {
    let w = ready();
    let st = op_status("op1");
    // Not sent yet: back through the gate on resume.
    assert!(!runner(&w).dispatched(&st, 0, &promote()).await.unwrap());
    runner(&w).act(&st, 0, &promote()).await.unwrap();
    assert_eq!(*w.calls.lock().unwrap(), ["promote s"]);
    // Sent: a resumed step waits for it, never sends a second one.
    assert!(runner(&w).dispatched(&st, 0, &promote()).await.unwrap());
    runner(&w).act(&st, 0, &promote()).await.unwrap();
    assert_eq!(w.calls.lock().unwrap().len(), 1);
    let p = runner(&w).check(&st, 0, &promote()).await.unwrap();
    assert!(
        matches!(p, Progress::NotYet(ref m) if m.contains("not acted on yet")),
        "{p:?}"
    );
    // It expires without a takeover: cleared, and the step does not finish.
    {
        let mut obs = w.obs.lock().unwrap();
        let s = obs.state.as_mut().unwrap();
        let id = s.sync.as_ref().unwrap().id.clone();
        let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        s.set_promote(&PromoteRequest::sync(&id, s.generation, past));
    }
    let p = runner(&w).check(&st, 0, &promote()).await.unwrap();
    assert!(
        matches!(p, Progress::NotYet(ref m) if m.contains("cleared")),
        "{p:?}"
    );
    assert_eq!(w.calls.lock().unwrap().last().unwrap(), "clear-promote");
    assert!(
        w.obs
            .lock()
            .unwrap()
            .state
            .as_ref()
            .unwrap()
            .promote
            .is_none()
    );
    // A stale one (an older generation) is cleared too.
    {
        let mut obs = w.obs.lock().unwrap();
        let s = obs.state.as_mut().unwrap();
        let id = s.sync.as_ref().unwrap().id.clone();
        let later = OffsetDateTime::now_utc() + time::Duration::seconds(30);
        s.set_promote(&PromoteRequest::sync(&id, s.generation - 1, later));
    }
    let p = runner(&w).check(&st, 0, &promote()).await.unwrap();
    assert!(
        matches!(p, Progress::NotYet(ref m) if m.contains("cleared")),
        "{p:?}"
    );
    assert!(runner(&w).timeout(&promote()) > wire::manatee::PROMOTE_EXPIRY);
}

#[tokio::test]
async fn the_promote_is_done_once_the_sync_took_over_and_settles_with_its_new_sync() {
    let w = ready();
    let st = op_status("op1");
    {
        let mut obs = w.obs.lock().unwrap();
        let old = obs.state.clone().unwrap();
        let mut new =
            ClusterState::initial(old.sync.clone().unwrap(), old.asyncs[0].clone(), vec![]);
        new.generation = old.generation + 1;
        new.deposed = vec![old.primary.clone()];
        obs.state = Some(new);
        obs.peers[2].lag_seconds = Some(12.0); // the new sync catches up
    }
    assert!(runner(&w).dispatched(&st, 0, &promote()).await.unwrap());
    assert_eq!(gate(&w, &promote()).await, Gate::Open);
    assert_eq!(
        runner(&w).check(&st, 0, &promote()).await.unwrap(),
        Progress::Done
    );
    let settle = ManateeAction::WaitPromoted {
        deposed: "p".into(),
    };
    assert!(matches!(
        runner(&w).check(&st, 0, &settle).await.unwrap(),
        Progress::NotYet(_)
    ));
    w.obs.lock().unwrap().peers[2].lag_seconds = Some(0.0);
    assert_eq!(
        runner(&w).check(&st, 0, &settle).await.unwrap(),
        Progress::Done
    );
    // The deposed old primary is reprovisioned in its deposed role.
    let re = ManateeAction::Reprovision {
        zone: "p".into(),
        role: Role::Deposed,
        image: NEW.into(),
    };
    assert_eq!(gate(&w, &re).await, Gate::Open);
    {
        // Deposed: its postgres stays off until the rebuild.
        let mut obs = w.obs.lock().unwrap();
        obs.peers[0].image = NEW.into();
        obs.peers[0].pg_online = false;
        obs.peers[0].lag_seconds = None;
    }
    assert_eq!(runner(&w).check(&st, 0, &re).await.unwrap(), Progress::Done);
}
