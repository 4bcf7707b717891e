use std::time::Duration;

use crds::status::OperationStatus;

use super::*;
use crate::error::BlockReason;
use crate::manatee::{ImageInfo, PeerObservation};
use crate::operation::{Gate, Progress, StepRunner};
use std::sync::Mutex;
use wire::manatee::{ClusterState, PeerIdent};

fn peer(zone: &str, server: &str, alias: &str) -> PeerObservation {
    PeerObservation {
        zone: zone.into(),
        alias: alias.into(),
        server: server.into(),
        image: "img".into(),
        vm_state: "running".into(),
        active: true,
        pg_online: true,
        lag_seconds: Some(0.0),
        one_node_write_mode: false,
    }
}

fn ident(zone: &str, ip: &str) -> PeerIdent {
    PeerIdent::with_default_ports(zone, ip)
}

/// coal: one peer `z0` on headnode h0, one-node-write mode.
fn coal() -> ShardObservation {
    let mut p = peer("z0", "h0", "manatee0");
    p.one_node_write_mode = true;
    ShardObservation {
        shard: "sdc".into(),
        state: Some(ClusterState::initial_onwm(
            ident("z0", "10.0.0.1"),
            "2026-01-01T00:00:00.000Z",
        )),
        peers: vec![p],
    }
}

fn desired(n: usize) -> Vec<DesiredServer> {
    (0..n)
        .map(|i| DesiredServer {
            name: format!("headnode{i}"),
            uuid: Some(format!("h{i}")),
        })
        .collect()
}

fn names(op: &Operation<HaAction>) -> Vec<&str> {
    op.status.steps.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn plan_follows_ha_manatee_second_peer_sync_then_third() {
    let HaPlan::Grow(op) = plan_ha(&coal(), &desired(3), "manatee", "op1") else {
        panic!()
    };
    assert_eq!(
        names(&op),
        [
            "preflight",
            "create-manatee1",
            "leave-one-node-write-mode",
            "unfreeze-setup",
            "restart-primary-sitter",
            "wait-sync",
            "create-manatee2",
            "wait-healthy"
        ]
    );
    // The second peer goes where the document says, the third on the next.
    assert!(matches!(&op.actions[1], HaAction::CreatePeer { server, .. } if server == "h1"));
    assert!(matches!(&op.actions[6], HaAction::CreatePeer { server, .. } if server == "h2"));
}

#[test]
fn nothing_to_do_refusals_and_resumed_runs() {
    assert_eq!(
        plan_ha(&coal(), &desired(1), "manatee", "op"),
        HaPlan::UpToDate
    );
    assert!(
        matches!(plan_ha(&coal(), &desired(2), "manatee", "op"), HaPlan::Refused(r) if r.reason == RefusalReason::TwoPeers)
    );
    let mut unknown = desired(3);
    unknown[2].uuid = None;
    assert!(
        matches!(plan_ha(&coal(), &unknown, "manatee", "op"), HaPlan::Refused(r) if r.reason == RefusalReason::UnknownServer)
    );
    let mut frozen = coal();
    let st = frozen.state.as_mut().unwrap();
    st.unfreeze().unwrap();
    st.freeze("sdcadm maintenance").unwrap();
    assert!(
        matches!(plan_ha(&frozen, &desired(3), "manatee", "op"), HaPlan::Refused(r) if r.reason == RefusalReason::FrozenByOther)
    );
    // A second peer that joined already (an earlier run) is not created again.
    let mut two = coal();
    let mut p1 = peer("z1", "h1", "manatee1");
    p1.pg_online = false;
    two.peers.push(p1);
    let HaPlan::Grow(op) = plan_ha(&two, &desired(3), "manatee", "op") else {
        panic!()
    };
    assert_eq!(
        names(&op),
        [
            "preflight",
            "leave-one-node-write-mode",
            "unfreeze-setup",
            "restart-primary-sitter",
            "wait-sync",
            "create-manatee2",
            "wait-healthy"
        ]
    );
    // A normal-mode shard missing its third peer only gets that one, as an async.
    let normal = ShardObservation {
        shard: "sdc".into(),
        state: Some(ClusterState::initial(
            ident("z0", "10.0.0.1"),
            ident("z1", "10.0.0.2"),
            vec![],
        )),
        peers: vec![peer("z0", "h0", "manatee0"), peer("z1", "h1", "manatee1")],
    };
    let HaPlan::Grow(op) = plan_ha(&normal, &desired(3), "manatee", "op") else {
        panic!()
    };
    assert_eq!(names(&op), ["preflight", "create-manatee2", "wait-healthy"]);
}

#[derive(Default)]
struct Fake {
    obs: Mutex<Option<ShardObservation>>,
    created: Mutex<Vec<(String, String)>>, // (alias, zone)
    calls: Mutex<Vec<String>>,
    /// `op/step` keys an operator approved.
    approvals: Mutex<Vec<String>>,
}

#[async_trait]
impl ManateeObserve for Fake {
    async fn observe(&self, _: &str) -> Result<ShardObservation, WorldError> {
        Ok(self.obs.lock().unwrap().clone().unwrap())
    }
    async fn image(&self, _: &str) -> Result<Option<ImageInfo>, WorldError> {
        Ok(None)
    }
    async fn approved(&self, op: &str, step: &str) -> Result<bool, WorldError> {
        Ok(self
            .approvals
            .lock()
            .unwrap()
            .contains(&format!("{op}/{step}")))
    }
}

#[async_trait]
impl ManateeAct for Fake {
    async fn reprovision(&self, _: &str, _: &str, _: &str) -> Result<(), WorldError> {
        unreachable!()
    }
    async fn freeze(&self, _: &str, _: &str) -> Result<(), WorldError> {
        unreachable!()
    }
    async fn unfreeze_own(&self, _: &str, reason: &str) -> Result<(), WorldError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("unfreeze {reason}"));
        Ok(())
    }
}

#[async_trait]
impl HaObserve for Fake {
    async fn find_created_peer(
        &self,
        _: &str,
        _: &str,
        alias: &str,
    ) -> Result<Option<String>, WorldError> {
        Ok(self
            .created
            .lock()
            .unwrap()
            .iter()
            .find(|(a, _)| a == alias)
            .map(|(_, z)| z.clone()))
    }
    async fn resolve_servers(&self, _: &[String]) -> Result<Vec<DesiredServer>, WorldError> {
        Ok(desired(3))
    }
}

#[async_trait]
impl HaAct for Fake {
    async fn create_peer(
        &self,
        _: &str,
        server: &str,
        alias: &str,
        _: &str,
    ) -> Result<String, WorldError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("create {alias} on {server}"));
        let zone = format!("new-{alias}");
        self.created
            .lock()
            .unwrap()
            .push((alias.into(), zone.clone()));
        Ok(zone)
    }
    async fn clear_one_node_write_mode(&self, zone: &str) -> Result<(), WorldError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("clear-onwm {zone}"));
        Ok(())
    }
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
        self.calls.lock().unwrap().push(format!("restart {zone}"));
        Ok(())
    }
}

fn runner(w: &Fake) -> HaRunner<'_, Fake> {
    HaRunner {
        world: w,
        shard: "sdc".into(),
        max_lag_seconds: 5.0,
        instance_up_timeout: Duration::from_secs(1),
        catch_up_timeout: Duration::from_secs(1),
        window: None,
        clock: &crate::clock::SystemClock,
    }
}

fn op() -> OperationStatus {
    OperationStatus {
        id: "op1".into(),
        steps: vec![crds::status::StepStatus {
            name: "s".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fake(obs: ShardObservation) -> Fake {
    let f = Fake::default();
    *f.obs.lock().unwrap() = Some(obs);
    f
}

#[tokio::test]
async fn a_timed_out_step_runs_again_only_after_its_attempt_is_approved() {
    let w = fake(coal());
    let mut status = op();
    status.steps[0].state = crds::StepState::Failed;
    status.steps[0].attempts = 1;
    let create = HaAction::CreatePeer {
        server: "h1".into(),
        server_name: "headnode1".into(),
        alias: "manatee1".into(),
    };
    assert!(!runner(&w).may_retry(&status, 0, &create).await.unwrap());
    w.approvals.lock().unwrap().push("op1/s-retry-1".into());
    assert!(runner(&w).may_retry(&status, 0, &create).await.unwrap());
    // That approval answers attempt 1 only.
    status.steps[0].attempts = 2;
    assert!(!runner(&w).may_retry(&status, 0, &create).await.unwrap());
}

#[tokio::test]
async fn a_retried_create_finds_its_peer_instead_of_creating_another() {
    let w = fake(coal());
    let create = HaAction::CreatePeer {
        server: "h1".into(),
        server_name: "headnode1".into(),
        alias: "manatee1".into(),
    };
    runner(&w).act(&op(), 0, &create).await.unwrap();
    // A controller killed after the create and before the journal save
    // runs the step again.
    runner(&w).act(&op(), 0, &create).await.unwrap();
    assert_eq!(*w.calls.lock().unwrap(), ["create manatee1 on h1"]);
}

#[tokio::test]
async fn the_restart_goes_to_whoever_is_primary_now() {
    // The state names z1 as primary (not manatee0, which sdcadm would assume).
    let mut obs = coal();
    let mut p1 = peer("z1", "h1", "manatee1");
    p1.one_node_write_mode = false;
    obs.peers[0].one_node_write_mode = false;
    obs.peers.push(p1);
    obs.state = Some(ClusterState::initial_onwm(
        ident("z1", "10.0.0.2"),
        "2026-01-01T00:00:00.000Z",
    ));
    obs.state.as_mut().unwrap().unfreeze().unwrap();
    let w = fake(obs);
    assert_eq!(
        runner(&w)
            .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
            .await
            .unwrap(),
        Gate::Open
    );
    runner(&w)
        .act(&op(), 0, &HaAction::RestartPrimarySitter)
        .await
        .unwrap();
    assert_eq!(*w.calls.lock().unwrap(), ["restart z1"]);
}

#[tokio::test]
async fn the_restart_waits_for_metadata_a_new_peer_and_no_foreign_freeze() {
    let mut obs = coal();
    obs.peers.push(peer("z1", "h1", "manatee1"));
    let w = fake(obs);
    // Still ONWM in SAPI (and still frozen by the setup freeze): not yet.
    let g = runner(&w)
        .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
        .await
        .unwrap();
    assert!(matches!(g, Gate::Block { .. } | Gate::Wait { .. }), "{g:?}");
    {
        let mut o = w.obs.lock().unwrap();
        let o = o.as_mut().unwrap();
        o.peers[0].one_node_write_mode = false;
        o.state.as_mut().unwrap().unfreeze().unwrap();
        o.peers[1].active = false;
    }
    assert!(matches!(
        runner(&w)
            .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
            .await
            .unwrap(),
        Gate::Wait { message: m, .. } if m.contains("no other active peer")
    ));
    w.obs.lock().unwrap().as_mut().unwrap().peers[1].active = true;
    assert_eq!(
        runner(&w)
            .precondition(&op(), 0, &HaAction::RestartPrimarySitter)
            .await
            .unwrap(),
        Gate::Open
    );
    // Someone else's freeze is never lifted, and blocks the restart.
    w.obs
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .freeze("operator: hands off")
        .unwrap();
    for a in [HaAction::UnfreezeSetup, HaAction::RestartPrimarySitter] {
        assert!(matches!(
            runner(&w).precondition(&op(), 0, &a).await.unwrap(),
            Gate::Block { reason, .. } if reason == BlockReason::Refused(RefusalReason::FrozenByOther)
        ));
    }
    runner(&w)
        .act(&op(), 0, &HaAction::UnfreezeSetup)
        .await
        .unwrap();
    assert!(w.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_third_peer_counts_only_once_placed_and_replicating() {
    // Normal mode, P + S; manatee2 created and up but not yet an async.
    let mut obs = ShardObservation {
        shard: "sdc".into(),
        state: Some(ClusterState::initial(
            ident("z0", "10.0.0.1"),
            ident("z1", "10.0.0.2"),
            vec![],
        )),
        peers: vec![
            peer("z0", "h0", "manatee0"),
            peer("z1", "h1", "manatee1"),
            peer("new-manatee2", "h2", "manatee2"),
        ],
    };
    obs.peers[2].pg_online = false;
    let w = fake(obs);
    w.created
        .lock()
        .unwrap()
        .push(("manatee2".into(), "new-manatee2".into()));
    let create = HaAction::CreatePeer {
        server: "h2".into(),
        server_name: "headnode2".into(),
        alias: "manatee2".into(),
    };
    assert!(matches!(
        runner(&w).check(&op(), 0, &create).await.unwrap(),
        Progress::NotYet(_)
    ));
    {
        let mut o = w.obs.lock().unwrap();
        let o = o.as_mut().unwrap();
        o.state
            .as_mut()
            .unwrap()
            .asyncs
            .push(ident("new-manatee2", "10.0.0.3"));
        o.peers[2].pg_online = true;
    }
    assert_eq!(
        runner(&w).check(&op(), 0, &create).await.unwrap(),
        Progress::Done
    );
}

/// A journal that keeps nothing (the test looks at the operation itself).
struct Discard;

#[async_trait]
impl crate::operation::Journal<HaAction> for Discard {
    async fn save(&self, _: &Operation<HaAction>) -> Result<(), WorldError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_resumed_restart_whose_call_never_went_out_passes_its_window_gate_again() {
    use crate::clock::{Clock, ManualClock, rfc3339};
    use crate::error::WaitReason;
    use crate::operation::{Advance, advance};
    use time::macros::datetime;
    // Ready for the restart (SAPI flag gone, setup freeze lifted, a new
    // peer up), but outside the maintenance window.
    let mut obs = coal();
    obs.peers[0].one_node_write_mode = false;
    obs.state.as_mut().unwrap().unfreeze().unwrap();
    obs.peers.push(peer("z1", "h1", "manatee1"));
    let w = fake(obs);
    // Tuesdays 14:00 for 4h; 2026-01-06 is a Tuesday.
    let clock = ManualClock::new(datetime!(2026-01-06 09:00 UTC));
    let mut r = runner(&w);
    r.window = Some(crds::manatee::MaintenanceWindow {
        days: vec!["Tue".into()],
        start: "14:00".into(),
        duration: "4h".into(),
    });
    r.clock = &clock;
    let mut op = Operation::new(
        "op1",
        "manatee-ha-setup",
        "sdc",
        vec![PlannedStep {
            name: "restart-primary-sitter".into(),
            description: "restart the primary's sitter".into(),
            touches: vec![],
            irreversible: false,
            action: HaAction::RestartPrimarySitter,
        }],
    );
    // A controller killed after journaling the step Running, before its
    // restart went out (the state is still in one-node-write mode). Started
    // a minute ago: a step that acts times out at once, so this never hangs.
    let s = &mut op.status.steps[0];
    s.state = crds::StepState::Running;
    s.attempts = 1;
    s.started_at = Some(rfc3339(clock.now() - Duration::from_secs(60)));
    let out = advance(&mut op, &r, &Discard, &clock, Duration::from_millis(1))
        .await
        .unwrap();
    assert!(
        matches!(
            &out,
            Advance::Waiting {
                reason: WaitReason::Window,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(
        w.calls.lock().unwrap().is_empty(),
        "restarted outside the window"
    );
    // A restart that went out shows as the state leaving one-node-write
    // mode: resumed then, the step is not gated again.
    w.obs
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
        .one_node_write_mode = None;
    assert!(
        r.dispatched(&op.status, 0, &HaAction::RestartPrimarySitter)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_resumed_create_whose_call_never_went_out_passes_its_gate_again() {
    let w = fake(coal());
    let create = HaAction::CreatePeer {
        server: "h1".into(),
        server_name: "headnode1".into(),
        alias: "manatee1".into(),
    };
    assert!(!runner(&w).dispatched(&op(), 0, &create).await.unwrap());
    runner(&w).act(&op(), 0, &create).await.unwrap();
    assert!(runner(&w).dispatched(&op(), 0, &create).await.unwrap());
}
