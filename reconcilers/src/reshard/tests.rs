//! The resharding against a fake world that checks the safety rules as
//! the operation goes: the rings served together never let two shards (or
//! the old shard after the sentinel) accept a write for a moved vnode,
//! unmoved vnodes are never read-only, R3 only after R2 is on every
//! electric-moray, rows deleted only once every electric-moray serves R3.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use crds::status::{OperationPhase, StepState};
use wire::fash::Ring;

use super::*;
use crate::clock::SystemClock;
use crate::error::{BlockReason, RefusalReason, WorldError};

const FROM: &str = "1.moray";
const TO: &str = "3.moray";
const OP: &str = "op-1";

fn pnode(s: &str) -> String {
    crds::ring::pnode_of_shard(s)
}

fn live_ring() -> Ring {
    Ring::create(8, &[pnode(FROM), pnode("2.moray")]).unwrap()
}

fn job(approval: bool) -> MoveJob {
    MoveJob {
        op_id: OP.into(),
        mv: VnodeMove {
            from: FROM.into(),
            to: TO.into(),
            vnodes: [4, 6].into(),
        },
        original_image: "img-r0".into(),
        vnode_count: 8,
        new_servers: vec!["cn4".into(), "cn5".into()],
        morays: 2,
        max_lag_secs: 5.0,
        approval,
    }
}

#[derive(Default)]
struct State {
    live: String,
    images: BTreeMap<String, Ring>,
    staged: BTreeMap<RingStage, String>,
    ems: Vec<(String, Option<String>)>,
    stuck_em: Option<String>,
    lock: Option<String>,
    dump_lock: bool,
    frozen: BTreeMap<String, String>,
    primary_up: bool,
    kill_primary_on: Option<&'static str>,
    peers: Vec<PeerObs>,
    never_catch_up: bool,
    never_see_sentinel: bool,
    morays: u32,
    sentinel: bool,
    new_state: Option<NewShardState>,
    rows: BTreeMap<String, BTreeMap<u32, u64>>,
    leave_rows: bool,
    /// SAPI answers 503 to this many HASH_RING_IMAGE updates.
    sapi_5xx: u32,
    approvals: BTreeSet<String>,
    violations: Vec<String>,
    calls: Vec<String>,
}

struct Fake(Mutex<State>);

impl Fake {
    fn new() -> Fake {
        let ring = live_ring();
        let mut rows = BTreeMap::new();
        for shard in [FROM, "2.moray"] {
            let vs = ring.vnodes_of(&pnode(shard)).unwrap();
            rows.insert(shard.to_string(), vs.into_iter().map(|v| (v, 10)).collect());
        }
        let s = State {
            live: "img-r0".into(),
            images: [("img-r0".to_string(), ring)].into(),
            ems: vec![
                ("em-a".into(), Some("img-r0".into())),
                ("em-b".into(), Some("img-r0".into())),
            ],
            primary_up: true,
            rows,
            ..Default::default()
        };
        Fake(Mutex::new(s))
    }

    fn with(self, f: impl FnOnce(&mut State)) -> Fake {
        f(&mut self.0.lock().unwrap());
        self
    }

    fn state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.0.lock().unwrap())
    }

    fn call(&self, s: &mut State, what: &str) {
        s.calls.push(what.to_string());
        if s.kill_primary_on.is_some_and(|k| what.starts_with(k)) {
            s.primary_up = false;
        }
    }

    /// The safety rules over the rings served right now.
    fn judge(s: &mut State) {
        let moved: BTreeSet<u32> = [4, 6].into();
        let rings: Vec<&Ring> = s
            .ems
            .iter()
            .filter_map(|(_, i)| i.as_ref())
            .map(|i| &s.images[i])
            .collect();
        let mut bad = Vec::new();
        for v in 0..8u32 {
            let writers: BTreeSet<String> = rings
                .iter()
                .filter(|r| !r.is_read_only(v))
                .map(|r| r.pnode_of(v).unwrap().to_string())
                .collect();
            if writers.len() > 1 {
                bad.push(format!("vnode {v} writable on {writers:?} at once"));
            }
            if !moved.contains(&v) && writers.is_empty() && !rings.is_empty() {
                bad.push(format!("unmoved vnode {v} refuses writes"));
            }
            if moved.contains(&v) && s.sentinel && writers.contains(&pnode(FROM)) {
                bad.push(format!(
                    "moved vnode {v} writable on the old shard after the sentinel"
                ));
            }
        }
        s.violations.extend(bad);
    }

    fn stage_of(s: &State, image: &str) -> Option<RingStage> {
        s.staged
            .iter()
            .find(|(_, i)| *i == image)
            .map(|(st, _)| *st)
    }
}

#[async_trait]
impl ReshardObserve for Fake {
    async fn shard(&self, shard: &str) -> Result<ShardObs, WorldError> {
        let s = self.0.lock().unwrap();
        Ok(ShardObs {
            name: shard.into(),
            problem: None,
            lag_secs: Some(0.5),
            frozen: s.frozen.get(shard).cloned(),
            primary_up: s.primary_up,
        })
    }
    async fn electric_morays(&self) -> Result<Vec<EmObs>, WorldError> {
        let s = self.0.lock().unwrap();
        Ok(s.ems
            .iter()
            .map(|(z, i)| EmObs {
                zone: z.clone(),
                ring_image: i.clone(),
                error: i.is_none().then(|| "connection refused".into()),
            })
            .collect())
    }
    async fn live_image(&self) -> Result<String, WorldError> {
        Ok(self.0.lock().unwrap().live.clone())
    }
    async fn ring_of(&self, image: &str) -> Result<Ring, WorldError> {
        let s = self.0.lock().unwrap();
        s.images
            .get(image)
            .cloned()
            .ok_or_else(|| WorldError::Missing(image.into()))
    }
    async fn staged_image(
        &self,
        _op: &str,
        stage: RingStage,
    ) -> Result<Option<String>, WorldError> {
        Ok(self.0.lock().unwrap().staged.get(&stage).cloned())
    }
    async fn region_lock(&self) -> Result<Option<String>, WorldError> {
        Ok(self.0.lock().unwrap().lock.clone())
    }
    async fn dump_lock(&self, _shard: &str) -> Result<bool, WorldError> {
        Ok(self.0.lock().unwrap().dump_lock)
    }
    async fn new_peers(&self, _op: &str) -> Result<Vec<PeerObs>, WorldError> {
        Ok(self.0.lock().unwrap().peers.clone())
    }
    async fn new_morays(&self, _op: &str) -> Result<u32, WorldError> {
        Ok(self.0.lock().unwrap().morays)
    }
    async fn sentinel_seen(&self, _op: &str, _zone: &str) -> Result<bool, WorldError> {
        let s = self.0.lock().unwrap();
        Ok(s.sentinel && !s.never_see_sentinel)
    }
    async fn new_shard_state(&self, _shard: &str) -> Result<Option<NewShardState>, WorldError> {
        Ok(self.0.lock().unwrap().new_state.clone())
    }
    async fn approved(&self, _op: &str, key: &str) -> Result<bool, WorldError> {
        Ok(self.0.lock().unwrap().approvals.contains(key))
    }
}

#[async_trait]
impl ReshardAct for Fake {
    async fn take_region_lock(&self, op: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "take_region_lock");
        if let Some(h) = s.lock.clone()
            && h != op
        {
            return Err(WorldError::Unexpected(format!("held by {h}")));
        }
        s.lock = Some(op.into());
        Ok(())
    }
    async fn release_region_lock(&self, op: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "release_region_lock");
        if s.lock.as_deref() == Some(op) {
            s.lock = None;
        }
        Ok(())
    }
    async fn freeze(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "freeze");
        s.frozen.insert(shard.into(), reason.into());
        Ok(())
    }
    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "unfreeze_own");
        if s.frozen.get(shard).is_some_and(|r| r == reason) {
            s.frozen.remove(shard);
        }
        if shard == TO
            && let Some(st) = &mut s.new_state
            && st.frozen.as_deref() == Some(reason)
        {
            st.frozen = None;
        }
        Ok(())
    }
    async fn add_peer(&self, _op: &str, source: &str, server: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "add_peer");
        let caught_up = !s.never_catch_up;
        let n = s.peers.len();
        s.peers.push(PeerObs {
            zone: format!("pg-{n}"),
            server: server.into(),
            shard: source.into(),
            caught_up,
            restore: (!caught_up).then_some(RestoreProgress {
                done_mb: 10.0,
                total_mb: 100.0,
                mb_per_s: 0.0,
            }),
            running: true,
        });
        Ok(())
    }
    async fn remove_peer(&self, zone: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "remove_peer");
        s.peers.retain(|p| p.zone != zone);
        Ok(())
    }
    async fn provision_moray(&self, _op: &str, _shard: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "provision_moray");
        s.morays += 1;
        Ok(())
    }
    async fn remove_morays(&self, _op: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "remove_morays");
        s.morays = 0;
        Ok(())
    }
    async fn import_ring(
        &self,
        _op: &str,
        stage: RingStage,
        ring: &Ring,
    ) -> Result<String, WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "import_ring");
        let id = format!("img-{}", stage.as_str().to_lowercase());
        s.images.insert(id.clone(), ring.clone());
        s.staged.insert(stage, id.clone());
        Ok(id)
    }
    async fn set_live_image(&self, image: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        if s.sapi_5xx > 0 {
            s.sapi_5xx -= 1;
            return Err(WorldError::Api {
                what: "sapi PUT /applications/manta".into(),
                status: 503,
                code: "ServiceUnavailableError".into(),
                message: "try again".into(),
            });
        }
        self.call(&mut s, &format!("set_live_image {image}"));
        if image == "img-r0" {
            // A rollback: the move is abandoned, the old shard owns its
            // vnodes again (the sentinel rule is the forward path's).
            s.sentinel = false;
        }
        s.live = image.into();
        Ok(())
    }
    async fn restart_electric_moray(&self, zone: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, &format!("restart {zone}"));
        let live = s.live.clone();
        // R3 on any electric-moray only once every one serves R2 or R3.
        if Fake::stage_of(&s, &live) == Some(RingStage::R3) {
            let r2 = s.staged[&RingStage::R2].clone();
            let r3 = s.staged[&RingStage::R3].clone();
            if s.ems
                .iter()
                .any(|(_, i)| i.as_ref().is_none_or(|i| *i != r2 && *i != r3))
            {
                s.violations
                    .push("R3 served before R2 was on every electric-moray".into());
            }
        }
        let stuck = s.stuck_em.as_deref() == Some(zone);
        for (z, i) in &mut s.ems {
            if *z == zone {
                *i = (!stuck).then(|| live.clone());
            }
        }
        Fake::judge(&mut s);
        Ok(())
    }
    async fn take_dump_lock(&self, _shard: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "take_dump_lock");
        s.dump_lock = true;
        Ok(())
    }
    async fn release_dump_lock(&self, _shard: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "release_dump_lock");
        s.dump_lock = false;
        Ok(())
    }
    async fn write_sentinel(&self, _op: &str, _shard: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "write_sentinel");
        s.sentinel = true;
        Fake::judge(&mut s);
        Ok(())
    }
    async fn detach_peer(&self, zone: &str, to: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "detach_peer");
        if !s.sentinel {
            s.violations
                .push("a peer detached before the sentinel".into());
        }
        let copy = s.rows[FROM].clone();
        s.rows.entry(to.to_string()).or_insert(copy);
        for p in &mut s.peers {
            if p.zone == zone {
                p.shard = to.into();
            }
        }
        Ok(())
    }
    async fn write_new_shard_state(
        &self,
        _shard: &str,
        _peers: &[String],
        reason: &str,
    ) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "write_new_shard_state");
        s.new_state = Some(NewShardState {
            generation: 1,
            frozen: Some(reason.into()),
        });
        Ok(())
    }
    async fn delete_new_shard_state(&self, _shard: &str, reason: &str) -> Result<(), WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, "delete_new_shard_state");
        if s.new_state
            .as_ref()
            .is_some_and(|st| st.frozen.as_deref() == Some(reason))
        {
            s.new_state = None;
        }
        Ok(())
    }
}

#[async_trait]
impl ShardRows for Fake {
    async fn cleanup(
        &self,
        t: &CleanupTarget,
        _budget: Duration,
    ) -> Result<CleanupProgress, WorldError> {
        let mut s = self.0.lock().unwrap();
        self.call(&mut s, &format!("cleanup {}", t.shard));
        let r3 = s.staged.get(&RingStage::R3).cloned();
        if s.ems.iter().any(|(_, i)| *i != r3) || Some(&s.live) != r3.as_ref() {
            s.violations.push(format!(
                "rows deleted on {} before R3 was on every electric-moray",
                t.shard
            ));
        }
        if s.leave_rows {
            return Ok(CleanupProgress {
                done: true,
                ..Default::default()
            });
        }
        let rows = s.rows.entry(t.shard.clone()).or_default();
        // One vnode a slice, to show progress.
        let next = rows.keys().copied().find(|v| t.drop_vnodes.contains(v));
        let deleted = next.and_then(|v| rows.remove(&v)).unwrap_or(0);
        let remaining: u64 = rows
            .iter()
            .filter(|(v, _)| t.drop_vnodes.contains(*v))
            .map(|(_, n)| n)
            .sum();
        Ok(CleanupProgress {
            deleted,
            remaining,
            rows_per_s: 100.0,
            done: remaining == 0,
        })
    }
    async fn verify(&self, t: &CleanupTarget) -> Result<VerifyReport, WorldError> {
        let s = self.0.lock().unwrap();
        let left = s
            .rows
            .get(&t.shard)
            .map(|r| {
                r.iter()
                    .filter(|(v, _)| t.drop_vnodes.contains(*v))
                    .map(|(v, n)| (*v, *n))
                    .collect()
            })
            .unwrap_or_default();
        Ok(VerifyReport { left })
    }
}

/// A store that keeps the last saved journal and can fail the n-th save
/// (the controller killed right there).
struct Store {
    saved: Mutex<Option<ReshardJournal>>,
    saves: Mutex<u32>,
    fail_at: Option<u32>,
}

impl Store {
    fn new(fail_at: Option<u32>) -> Store {
        Store {
            saved: Mutex::new(None),
            saves: Mutex::new(0),
            fail_at,
        }
    }
}

#[async_trait]
impl ReshardStore for Store {
    async fn save(&self, j: &ReshardJournal) -> Result<(), WorldError> {
        let mut n = self.saves.lock().unwrap();
        *n += 1;
        if self.fail_at == Some(*n) {
            return Err(WorldError::Transport("controller killed".into()));
        }
        *self.saved.lock().unwrap() = Some(j.clone());
        Ok(())
    }
}

fn timeouts() -> Timeouts {
    Timeouts {
        step: Duration::from_millis(80),
        catch_up: Duration::from_millis(80),
        cleanup: Duration::from_secs(30),
        cleanup_slice: Duration::from_millis(1),
    }
}

const POLL: Duration = Duration::from_millis(2);

fn journal(job: &MoveJob) -> ReshardJournal {
    ReshardJournal {
        job: job.clone(),
        forward: plan_move(job),
        rollback: None,
    }
}

/// Drive until the outcome is not Waiting (or a few rounds passed).
async fn run(
    w: &Fake,
    j: &mut ReshardJournal,
    store: &Store,
    cancel: bool,
) -> Result<Outcome, WorldError> {
    let job = j.job.clone();
    let clock = SystemClock;
    let runner = ReshardRunner {
        world: w,
        job: &job,
        clock: &clock,
        timeouts: timeouts(),
    };
    let mut out = drive(j, &runner, store, cancel, POLL).await?;
    for _ in 0..5 {
        if !matches!(out, Outcome::Waiting { .. }) {
            break;
        }
        out = drive(j, &runner, store, cancel, POLL).await?;
    }
    Ok(out)
}

fn assert_safe(w: &Fake) {
    let v = w.state(|s| s.violations.clone());
    assert!(v.is_empty(), "safety violations: {v:#?}");
}

#[test]
fn the_plan_is_the_canonical_step_list_with_the_point_of_no_return_at_install_ring() {
    let op = plan_move(&job(true));
    let names: Vec<&str> = op.status.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, STEPS);
    assert_eq!(
        op.status.steps[op.status.point_of_no_return.unwrap()].name,
        PNR_STEP
    );
    let without: Vec<String> = plan_move(&job(false))
        .status
        .steps
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(
        !without.contains(&"approval".to_string()),
        "approval is off by default"
    );
}

#[test]
fn the_ring_stages_mark_only_the_moving_vnodes() {
    let live = live_ring();
    let mv = job(false).mv;
    let r1 = stage_ring(&live, &mv, RingStage::R1).unwrap();
    let r2 = stage_ring(&live, &mv, RingStage::R2).unwrap();
    let r3 = stage_ring(&live, &mv, RingStage::R3).unwrap();
    for v in 0..8 {
        let moved = mv.vnodes.contains(&v);
        assert_eq!(r1.is_read_only(v), moved);
        assert_eq!(r1.pnode_of(v).unwrap(), live.pnode_of(v).unwrap());
        assert_eq!(r2.is_read_only(v), moved);
        assert!(!r3.is_read_only(v));
        let want = if moved {
            pnode(TO)
        } else {
            live.pnode_of(v).unwrap().to_string()
        };
        assert_eq!(r2.pnode_of(v).unwrap(), want);
        assert_eq!(r3.pnode_of(v).unwrap(), want);
    }
}

#[tokio::test]
async fn a_move_completes_keeping_every_safety_rule() {
    let w = Fake::new();
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    assert_eq!(out, Outcome::Completed, "{:?}", j.forward.status.message);
    assert_safe(&w);
    assert!(
        j.forward
            .status
            .steps
            .iter()
            .all(|s| s.state == StepState::Succeeded && s.finished_at.is_some())
    );
    w.state(|s| {
        assert_eq!(s.live, "img-r3");
        assert!(s.ems.iter().all(|(_, i)| i.as_deref() == Some("img-r3")));
        assert_eq!(s.lock, None);
        assert!(!s.dump_lock);
        assert!(s.frozen.is_empty(), "our freeze lifted");
        assert_eq!(s.new_state.as_ref().unwrap().frozen, None);
        // No row on two shards: the old side lost the moved vnodes, the new
        // side everything else.
        assert_eq!(s.rows[FROM].keys().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(s.rows[TO].keys().copied().collect::<Vec<_>>(), vec![4, 6]);
        // The order: R1 verified before the sentinel, the sentinel before
        // the detach, R2 before R3.
        let at = |c: &str| {
            s.calls
                .iter()
                .position(|x| x == c)
                .unwrap_or_else(|| panic!("{c} never called"))
        };
        assert!(at("set_live_image img-r1") < at("write_sentinel"));
        assert!(at("write_sentinel") < at("detach_peer"));
        assert!(at("detach_peer") < at("set_live_image img-r2"));
        assert!(at("set_live_image img-r2") < at("set_live_image img-r3"));
        assert!(at("set_live_image img-r3") < at("cleanup 1.moray"));
    });
}

#[tokio::test]
async fn an_electric_moray_that_never_restarts_rolls_back_before_the_point_of_no_return() {
    let w = Fake::new().with(|s| s.stuck_em = Some("em-b".into()));
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    // mark-ro timed out; the rollback re-installs R0 but em-b stays down:
    // blocked in the rollback, naming it.
    match &out {
        Outcome::Blocked { reason, message } => {
            assert_eq!(
                *reason,
                BlockReason::Rollback(Box::new(BlockReason::StepTimedOut))
            );
            assert!(message.contains("em-b"), "{message}");
            assert!(message.contains("mark-ro"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    assert_safe(&w);
    w.state(|s| {
        assert_eq!(s.live, "img-r0");
        assert_eq!(
            s.ems[0].1.as_deref(),
            Some("img-r0"),
            "em-a writable on the old ring again"
        );
        assert!(!s.calls.iter().any(|c| c == "write_sentinel"));
    });
    // em-b comes back and the operator approves another attempt of the
    // timed-out rollback step: the rollback completes.
    {
        let mut s = w.0.lock().unwrap();
        s.stuck_em = None;
        s.approvals
            .insert(crate::operation::retry_key("rollback-ring", 1));
    }
    let out = run(&w, &mut j, &store, false).await.unwrap();
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
    assert_eq!(j.forward.status.phase, OperationPhase::RolledBack);
    w.state(|s| {
        assert!(
            s.peers.is_empty()
                && s.morays == 0
                && s.lock.is_none()
                && !s.dump_lock
                && s.frozen.is_empty()
        );
    });
    assert_safe(&w);
}

#[tokio::test]
async fn a_peer_that_never_catches_up_rolls_back_with_its_progress() {
    let w = Fake::new().with(|s| s.never_catch_up = true);
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    match &out {
        Outcome::RolledBack { why } => {
            assert!(
                why.contains("await-catch-up") && why.contains("10/100 MB"),
                "{why}"
            )
        }
        o => panic!("{o:?}"),
    }
    w.state(|s| assert!(s.peers.is_empty() && s.lock.is_none() && s.frozen.is_empty()));
}

#[tokio::test]
async fn a_sentinel_never_seen_rolls_back_to_r0_verified_everywhere() {
    let w = Fake::new().with(|s| s.never_see_sentinel = true);
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
    assert_safe(&w);
    w.state(|s| {
        assert_eq!(s.live, "img-r0");
        assert!(s.ems.iter().all(|(_, i)| i.as_deref() == Some("img-r0")));
        assert!(!s.dump_lock && s.peers.is_empty() && s.frozen.is_empty() && s.lock.is_none());
    });
    let rb: Vec<&str> = j
        .rollback
        .as_ref()
        .unwrap()
        .status
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(rb[0], "rollback-ring");
}

#[tokio::test]
async fn sapi_5xx_waits_and_retries_the_step_without_rolling_back() {
    let w = Fake::new().with(|s| s.sapi_5xx = 2);
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let job = j.job.clone();
    let clock = SystemClock;
    let runner = ReshardRunner {
        world: &w,
        job: &job,
        clock: &clock,
        timeouts: timeouts(),
    };
    let out = drive(&mut j, &runner, &store, false, POLL).await.unwrap();
    match &out {
        Outcome::Waiting { message, .. } => assert!(
            message.contains("mark-ro") && message.contains("503"),
            "{message}"
        ),
        o => panic!("{o:?}"),
    }
    assert!(j.rollback.is_none());
    let out = run(&w, &mut j, &store, false).await.unwrap();
    assert_eq!(out, Outcome::Completed);
    assert_safe(&w);
}

#[tokio::test]
async fn cancel_before_the_point_of_no_return_rolls_back() {
    let w = Fake::new();
    let store = Store::new(None);
    let mut j = journal(&job(true));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    assert!(
        matches!(
            out,
            Outcome::Waiting {
                reason: crate::error::WaitReason::Approval,
                ..
            }
        ),
        "{out:?}"
    );
    let out = run(&w, &mut j, &store, true).await.unwrap();
    assert_eq!(
        out,
        Outcome::RolledBack {
            why: "rolling back: cancelled".into()
        }
    );
    w.state(|s| {
        assert!(s.peers.is_empty() && s.morays == 0 && s.lock.is_none() && s.frozen.is_empty())
    });
}

#[tokio::test]
async fn past_the_point_of_no_return_nothing_rolls_back_and_cancel_is_refused() {
    let w = Fake::new().with(|s| s.leave_rows = true);
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    match &out {
        Outcome::Blocked { reason, message } => {
            assert_eq!(*reason, BlockReason::PastPointOfNoReturn);
            assert!(message.contains("verify-counts"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    let out = run(&w, &mut j, &store, true).await.unwrap();
    match &out {
        Outcome::Blocked { reason, message } => {
            assert_eq!(*reason, BlockReason::PastPointOfNoReturn);
            assert!(message.starts_with("cancel refused"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    assert!(j.rollback.is_none());
    w.state(|s| assert_eq!(s.live, "img-r3"));
    assert_safe(&w);
}

#[tokio::test]
async fn the_source_primary_dying_mid_operation_stops_blocked_with_the_reason() {
    let w = Fake::new().with(|s| s.kill_primary_on = Some("take_dump_lock"));
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    match &out {
        Outcome::Blocked { reason, message } => {
            assert_eq!(*reason, BlockReason::Refused(RefusalReason::PrimaryDown));
            assert!(message.contains("1.moray"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    w.state(|s| {
        assert_eq!(s.live, "img-r0", "nothing read-only while stopped");
        assert!(s.ems.iter().all(|(_, i)| i.as_deref() == Some("img-r0")));
    });
}

#[tokio::test]
async fn a_second_resharding_is_refused_naming_the_holder() {
    let w = Fake::new().with(|s| s.lock = Some("op-other".into()));
    let store = Store::new(None);
    let mut j = journal(&job(false));
    let out = run(&w, &mut j, &store, false).await.unwrap();
    match &out {
        Outcome::Blocked { reason, message } => {
            assert_eq!(*reason, BlockReason::Refused(RefusalReason::ShardLocked));
            assert!(message.contains("op-other"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    w.state(|s| assert!(s.calls.is_empty(), "nothing changed: {:?}", s.calls));
}

/// The controller killed at every journal save (every step boundary and
/// every attempt start): a new controller resumes from the last saved
/// journal and reaches the same end, safely.
#[tokio::test]
async fn killed_at_every_step_boundary_the_move_resumes_to_the_same_end() {
    let total = {
        let w = Fake::new();
        let store = Store::new(None);
        let mut j = journal(&job(false));
        assert_eq!(
            run(&w, &mut j, &store, false).await.unwrap(),
            Outcome::Completed
        );
        *store.saves.lock().unwrap()
    };
    assert!(total >= 2 * 18, "{total} saves");
    for kill in 1..=total {
        let w = Fake::new();
        let first = Store::new(Some(kill));
        let mut j = journal(&job(false));
        let r = run(&w, &mut j, &first, false).await;
        assert!(
            r.is_err(),
            "kill point {kill}: the store failed, drive must stop"
        );
        let mut j = first
            .saved
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| journal(&job(false)));
        let again = Store::new(None);
        let out = run(&w, &mut j, &again, false).await.unwrap();
        assert_eq!(out, Outcome::Completed, "kill point {kill}");
        assert_safe(&w);
        w.state(|s| {
            assert_eq!(s.live, "img-r3");
            assert_eq!(s.rows[FROM].keys().copied().collect::<Vec<_>>(), vec![0, 2]);
            assert_eq!(s.rows[TO].keys().copied().collect::<Vec<_>>(), vec![4, 6]);
            assert_eq!(s.peers.len(), 2, "kill point {kill}: no peer added twice");
            assert_eq!(s.morays, 2, "kill point {kill}: no moray provisioned twice");
            assert!(s.lock.is_none() && s.frozen.is_empty() && !s.dump_lock);
        });
    }
}

#[test]
fn a_split_intent_becomes_one_move_of_the_upper_half() {
    let shard = |n: &str, server: &str| serde_json::json!({"name": n, "roles": ["index"], "peers": [{"server": server}]});
    let spec: crds::shards::ShardTopologySpec = serde_json::from_value(serde_json::json!({
        "region": "r",
        "dnsDomain": "r",
        "shards": [shard("1.moray", "a"), shard("2.moray", "b"), shard("3.moray", "c")],
        "ring": {"vnodes": 8, "intents": [{"split": {"from": "1.moray", "to": "3.moray", "fraction": "1/2"}}]},
    }))
    .unwrap();
    let moves = moves_from_document(&spec, &live_ring(), &[]).unwrap();
    assert_eq!(moves, vec![job(false).mv]);
    assert!(
        moves_from_document(&spec, &live_ring(), &["1.moray->3.moray".into()])
            .unwrap()
            .is_empty()
    );
}

/// A document whose ring differs from the live ring other than by its
/// requested moves is refused with the difference, never turned into a
/// move (the adapter before `crds::ring::planned_moves` turned any
/// difference into a move: this document moved vnode 1 onto 1.moray).
#[test]
fn a_document_whose_ring_disagrees_with_the_live_ring_is_refused_not_moved() {
    let shard = |n: &str, server: &str| serde_json::json!({"name": n, "roles": ["index"], "peers": [{"server": server}]});
    let spec: crds::shards::ShardTopologySpec = serde_json::from_value(serde_json::json!({
        "region": "r",
        "dnsDomain": "r",
        "shards": [shard("1.moray", "a"), shard("2.moray", "b")],
        "ring": {"vnodes": 8, "assignment": [
            {"shard": "1.moray", "vnodes": ["0-2", "4", "6"]},
            {"shard": "2.moray", "vnodes": ["3", "5", "7"]},
        ]},
    }))
    .unwrap();
    match moves_from_document(&spec, &live_ring(), &[]) {
        Err(e @ super::MovesError::Disagrees(_)) => {
            assert!(e.to_string().contains("disagrees"), "{e}")
        }
        other => panic!("expected a refusal naming the difference, got {other:?}"),
    }
}
