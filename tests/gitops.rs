//! GitOps review end to end: `diff` on every example against the simulated
//! datacenter (snapshot-tested text and Markdown), offline diff equal to
//! online diff, and saved plans: stale after a takeover, applied once,
//! refused when edited.
//!
//! Regenerate the expected outputs with
//! `TRITONCTL_BLESS=1 cargo test -p e2e --test gitops`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coord::Coordination;
use crds::Document;
use reconcilers::manatee::{ManateeAct, ManateeObserve};
use sim::scenario::{ScenarioOptions, SimScenario, images};
use tritonctl::clients::{Endpoints, Triton, Unguarded};
use tritonctl::gitops::observed::{Live, Observed, Recorded, StoredView, World, capture};
use tritonctl::gitops::plan::{self, ApplyError, PlanFile};
use tritonctl::gitops::plan_key::PlanKey;
use tritonctl::gitops::render;
use tritonctl::gitops::review::{Review, review};
use tritonctl::gitops::signature::SignatureRefusal;
use tritonctl::store::Store;
use tritonctl::world::manatee::TritonManatee;

fn repo() -> PathBuf {
    e2e::repo()
}

fn read_dir_docs(dir: &str) -> Vec<Document> {
    let input = tritonctl::cli::input::read(&[repo().join(dir)]).expect("read examples");
    assert!(!input.has_errors(), "{dir}: {:?}", input.diagnostics);
    input.documents.into_iter().map(|d| d.document).collect()
}

/// A simulated datacenter, a store on the same coordination ensemble (its
/// manatee state lives there too, as on a DC's binder), and the live world.
struct Env {
    scenario: SimScenario,
    store: Store,
    world: Live,
}

impl Env {
    async fn start(sim_from: &str, manatee_image: &str) -> Env {
        let ensemble = coord::mem::MemEnsemble::new();
        let docs = read_dir_docs(sim_from);
        let scenario = SimScenario::start(
            &docs,
            Arc::new(ensemble.clone()),
            ScenarioOptions {
                manatee_image: manatee_image.into(),
                ..ScenarioOptions::default()
            },
        )
        .await
        .expect("the simulated datacenter starts");
        let session: Arc<dyn Coordination> = ensemble.connect();
        let store = Store::new(session.clone());
        store.init().await.unwrap();
        let urls = scenario.servers.urls().clone();
        let endpoints = Endpoints {
            sapi: urls.sapi.clone(),
            vmapi: urls.vmapi.clone(),
            cnapi: urls.cnapi.clone(),
            imgapi: urls.imgapi.clone(),
        };
        let world = Live::new(
            TritonManatee {
                triton: Triton::new(&endpoints, Arc::new(Unguarded)),
                coord: session,
                fence: None,
            },
            "the simulated datacenter".into(),
        );
        if manatee_image == images::MANATEE_V1 {
            wait_observed_v1(&world, &scenario).await;
        } else {
            wait_observed_healthy(world.manatee(), &scenario).await;
        }
        Env {
            scenario,
            store,
            world,
        }
    }

    async fn apply_dir(&self, dir: &str) {
        self.store.apply(&read_dir_docs(dir)).await.unwrap();
    }

    async fn stored(&self) -> StoredView {
        StoredView::load(&self.store).await.unwrap()
    }

    async fn online(&self, docs: &[Document]) -> Review {
        review(docs, &self.stored().await, Some(&self.world))
            .await
            .unwrap()
    }

    async fn snapshot(&self, docs: &[Document]) -> Observed {
        capture(
            self.stored().await,
            &self.world,
            docs,
            "2026-01-01T00:00:00Z".into(),
        )
        .await
        .unwrap()
    }
}

/// Until the controller's observation shows every peer of every shard up
/// with postgres online (the sim's `manatee-adm pg-status` answers a moment
/// after its sitters are set up).
async fn wait_observed_healthy(world: &dyn ManateeObserve, scenario: &SimScenario) {
    let shards: Vec<String> = scenario.shards.keys().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for shard in shards {
        loop {
            let o = world.observe(&shard).await;
            if o.as_ref().is_ok_and(|o| {
                !o.peers.is_empty() && o.peers.iter().all(|p| p.active && p.pg_online)
            }) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "shard {shard} is not observed healthy: {o:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Manatee v1 keeps no cluster state: until the transplant's observation
/// shows every zone's sitter in the election and the first one writable.
async fn wait_observed_v1(world: &Live, scenario: &SimScenario) {
    use tritonctl::gitops::observed::World;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for shard in scenario.shards.keys() {
        loop {
            let o = world.transplant(shard).await;
            if o.as_ref().is_ok_and(|o| {
                let t = o.legacy_topology();
                !o.zones.is_empty() && t.len() == o.zones.len() && t[0].writable
            }) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "v1 shard {shard} is not observed whole: {o:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Compare with the expected file, or write it under TRITONCTL_BLESS=1.
fn expect_file(name: &str, actual: &str) {
    let path = repo().join("tests/snapshots/gitops").join(name);
    if std::env::var_os("TRITONCTL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; create it with TRITONCTL_BLESS=1 cargo test -p e2e --test gitops",
            path.display()
        )
    });
    if expected != actual {
        let d = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        panic!(
            "{} differs (bless with TRITONCTL_BLESS=1 if intended):\n{d}",
            path.display()
        );
    }
}

/// Diff `dir` online, snapshot-test text and Markdown, and check the
/// offline diff from a snapshot of the same state is identical.
async fn check_example(env: &Env, name: &str, dir: &str) -> Review {
    check_docs(env, name, &read_dir_docs(dir)).await
}

/// [`check_example`] for documents at hand.
async fn check_docs(env: &Env, name: &str, docs: &[Document]) -> Review {
    let docs = docs.to_vec();
    let online = env.online(&docs).await;
    let observed = env.snapshot(&docs).await;
    // Through the file format, as CI would.
    let text = observed.to_json();
    let recorded = Recorded {
        observed: Observed::from_json(&text, "observed.json").unwrap(),
        origin: "observed.json".into(),
    };
    let offline = review(&docs, &recorded.observed.stored.clone(), Some(&recorded))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&online.documents).unwrap(),
        serde_json::to_value(&offline.documents).unwrap(),
        "{name}: offline diff differs from online diff on the same state"
    );
    let mut shown = online.clone();
    shown.observed = Some("the simulated datacenter".into());
    expect_file(
        &format!("{name}.txt"),
        &normalize(&render::text(&shown, false), &observed),
    );
    expect_file(
        &format!("{name}.md"),
        &normalize(&render::markdown(&shown), &observed),
    );
    online
}

/// Which simulated peer wins which role depends on timing, so the expected
/// outputs name peers by role: `manatee0` -> `manatee[primary]`, and a zone
/// UUID's first segment -> `ZONE`.
fn normalize(text: &str, observed: &Observed) -> String {
    let mut subs: Vec<(String, String)> = Vec::new();
    for rec in observed.shards.values() {
        let Some(o) = &rec.observation else { continue };
        if o.state.is_none() {
            continue; // manatee v1: named by election order below
        }
        for p in &o.peers {
            let role = format!("{:?}", o.role_of(&p.zone)).to_lowercase();
            let prefix = p.alias.trim_end_matches(|c: char| c.is_ascii_digit());
            subs.push((p.alias.clone(), format!("{prefix}[{role}]")));
            let short = p.zone.split('-').next().unwrap_or(&p.zone).to_string();
            subs.push((short, "ZONE".into()));
        }
    }
    // Manatee v1 keeps no roles in ZooKeeper: name its zones by election
    // order, and the moray zones and servers the transplant touches.
    for rec in observed.transplants.values() {
        let Some(t) = &rec.observation else { continue };
        for (i, z) in t.legacy_topology().iter().enumerate() {
            let role = match i {
                0 => "v1-primary",
                1 => "v1-sync",
                _ => "v1-async",
            };
            let prefix = z.alias.trim_end_matches(|c: char| c.is_ascii_digit());
            subs.push((z.alias.clone(), format!("{prefix}[{role}]")));
            let short = z.zone.split('-').next().unwrap_or(&z.zone).to_string();
            subs.push((z.zone.clone(), "ZONE".into()));
            subs.push((short, "ZONE".into()));
            subs.push((z.server.clone(), "SERVER".into()));
        }
        for m in &t.morays {
            let short = m.zone.split('-').next().unwrap_or(&m.zone).to_string();
            subs.push((m.zone.clone(), "MORAY".into()));
            subs.push((short, "MORAY".into()));
        }
    }
    subs.sort();
    subs.dedup();
    // Longest first, through unique tokens, so no replacement feeds another.
    subs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    let mut out = text.to_string();
    for (i, (from, _)) in subs.iter().enumerate() {
        out = out.replace(from.as_str(), &format!("\u{1}{i}\u{2}"));
    }
    for (i, (_, to)) in subs.iter().enumerate() {
        out = out.replace(&format!("\u{1}{i}\u{2}"), to);
    }
    out
}

fn manatee_plan(r: &Review, key: &str) -> tritonctl::gitops::review::ManateePlan {
    let d = r.documents.iter().find(|d| d.key() == key).unwrap();
    match &d.plan {
        tritonctl::gitops::review::KindPlan::Manatee(m) => m.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_lab() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let r = check_example(&env, "lab", "examples/lab").await;
    assert!(r.has_differences());
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    let op = m.shards[0]
        .operation
        .as_ref()
        .expect("an upgrade is planned");
    let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    // Primary last, and frozen around it.
    let pos = |p: &str| names.iter().position(|n| n.starts_with(p)).unwrap();
    assert!(pos("reprovision-async") < pos("reprovision-sync"));
    assert!(pos("reprovision-sync") < pos("freeze"));
    assert!(pos("freeze") < pos("reprovision-primary"));
    assert!(pos("reprovision-primary") < pos("unfreeze"));
    let primary = &op.steps[pos("reprovision-primary")];
    assert!(
        primary
            .risks
            .contains(&tritonctl::gitops::review::Risk::WriteOutage)
    );

    // A maintenance window: the runner gates the freeze and the
    // reprovisions on it, and the review says so (no "not enforced" warning).
    let mut docs = read_dir_docs("examples/lab");
    for d in &mut docs {
        if let Document::ManateeVersion(mv) = d {
            mv.spec.rollout.maintenance_window = Some(crds::manatee::MaintenanceWindow {
                days: vec!["Sat".into()],
                start: "02:00".into(),
                duration: "2h".into(),
            });
        }
    }
    let r = env.online(&docs).await;
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let op = m.shards[0].operation.as_ref().unwrap();
    let gate = |p: &str| {
        op.steps
            .iter()
            .find(|s| s.name.starts_with(p))
            .unwrap()
            .gate
            .clone()
    };
    for p in ["reprovision-async", "reprovision-sync", "freeze"] {
        assert!(
            gate(p).contains("inside the maintenance window (Sat 02:00 UTC for 2h)"),
            "{p}: {}",
            gate(p)
        );
    }
    assert!(!gate("preflight").contains("maintenance"));
    assert!(
        op.waits
            .iter()
            .any(|w| w.starts_with("maintenance window Sat 02:00 UTC for 2h")),
        "{:?}",
        op.waits
    );
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_us_east() {
    let env = Env::start("examples/us-east", images::MANATEE_V2_CURRENT).await;
    let r = check_example(&env, "us-east", "examples/us-east").await;
    // Everything is new, and the shards already run the wanted image.
    assert!(r.has_differences());
    let m = manatee_plan(&r, "ManateeVersion/manta-us-east");
    assert_eq!(m.shards.len(), 4);
    assert!(
        m.shards
            .iter()
            .all(|s| s.outcome == tritonctl::gitops::review::ShardOutcome::UpToDate),
        "{m:#?}"
    );
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_scenario_manatee_upgrade() {
    let env = Env::start("examples/us-east", images::MANATEE_V2_CURRENT).await;
    env.apply_dir("examples/us-east").await;
    let r = check_example(
        &env,
        "scenario-manatee-upgrade",
        "examples/scenarios/manatee-upgrade",
    )
    .await;
    let m = manatee_plan(&r, "ManateeVersion/manta-us-east");
    // The canary goes first and alone; the others wait for it.
    assert_eq!(m.shards[0].shard, "2.moray.us-east.joyent.us");
    assert_eq!(m.shards[0].starts.as_deref(), Some("at once"));
    for s in &m.shards[1..] {
        assert!(s.starts.as_deref().unwrap().contains("canary"), "{s:#?}");
    }
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_scenario_split_shard() {
    let env = Env::start("examples/us-east", images::MANATEE_V2_CURRENT).await;
    env.apply_dir("examples/us-east").await;
    let r = check_example(
        &env,
        "scenario-split-shard",
        "examples/scenarios/split-shard",
    )
    .await;
    let d = r
        .documents
        .iter()
        .find(|d| d.key() == "ShardTopology/us-east")
        .unwrap();
    let tritonctl::gitops::review::KindPlan::Topology(t) = &d.plan else {
        panic!()
    };
    // Exactly the upper half of shard 2's vnodes (every third vnode from 0,
    // round-robin over shards 2, 3, 4) moves to shard 5, and nothing else.
    let two: Vec<u32> = (0..131072u32).filter(|v| v % 3 == 0).collect();
    let moved = &two[two.len() - two.len() / 2..];
    // The ring names shards as electric-moray does (crds::ring).
    assert_eq!(t.moves.len(), 1, "{:?}", t.moves);
    assert_eq!(
        t.moves[0].from,
        crds::ring::pnode_of_shard("2.moray.us-east.joyent.us")
    );
    assert_eq!(
        t.moves[0].to,
        crds::ring::pnode_of_shard("5.moray.us-east.joyent.us")
    );
    assert_eq!(t.moves[0].count, moved.len());
    assert_eq!(
        t.moves[0].vnodes,
        moved.iter().map(u32::to_string).collect::<Vec<_>>()
    );
    assert_eq!(t.shards_added, vec!["5.moray.us-east.joyent.us"]);
    // One resharding, in the canonical steps, the read-only window from
    // mark-ro to mark-rw over the moving vnodes only, install-ring the
    // point of no return.
    assert!(t.refusal.is_empty(), "{:?}", t.refusal);
    assert_eq!(t.operations.len(), 1);
    let op = &t.operations[0];
    assert_eq!(op.name, "split-2-to-5");
    assert_eq!(op.from, "2.moray.us-east.joyent.us");
    assert_eq!(op.to, "5.moray.us-east.joyent.us");
    assert_eq!(op.count, moved.len());
    let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, tritonctl::gitops::review::RESHARD_STEPS);
    assert_eq!(op.point_of_no_return, "install-ring");
    assert_eq!(op.read_only_window.vnodes, moved.len());
    assert_eq!(
        (
            op.read_only_window.opens_at.as_str(),
            op.read_only_window.closes_at.as_str()
        ),
        ("mark-ro", "mark-rw")
    );
    env.scenario.shutdown().await;
}

/// A document whose ring differs from the live ring other than by its
/// moves is refused, and the difference is shown per shard as ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_refuses_a_topology_whose_ring_disagrees_with_the_live_ring() {
    let env = Env::start("examples/us-east", images::MANATEE_V2_CURRENT).await;
    env.apply_dir("examples/us-east").await;
    let mut docs = read_dir_docs("examples/scenarios/split-shard");
    let Document::ShardTopology(t) = &mut docs[0] else {
        panic!()
    };
    // Written as if shard 3 owned vnodes 0-2 (the live ring has them
    // round-robin on 2, 3, 4) and shard 2 the rest.
    t.spec.ring.assignment = Some(vec![
        crds::shards::VnodeAssignment {
            shard: "3.moray.us-east.joyent.us".into(),
            vnodes: vec!["0-2".into()],
        },
        crds::shards::VnodeAssignment {
            shard: "2.moray.us-east.joyent.us".into(),
            vnodes: vec!["3-131071".into()],
        },
    ]);
    let r = env.online(&docs).await;
    let d = &r.documents[0];
    let tritonctl::gitops::review::KindPlan::Topology(t) = &d.plan else {
        panic!()
    };
    assert!(t.operations.is_empty());
    assert!(t.moves.is_empty());
    assert!(
        t.refusal.iter().any(|l| l.starts_with(
            "`3.moray.us-east.joyent.us`: the document has 2 vnode(s) there that the live ring has on `2.moray.us-east.joyent.us` (1), `4.moray.us-east.joyent.us` (1): 0, 2"
        )),
        "{:?}",
        t.refusal
    );
    assert!(r.has_differences());
    let text = render::text(&r, false);
    assert!(
        text.contains("refused: the document's ring disagrees with the live ring"),
        "{text}"
    );
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_scenario_decommission_headnode() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    env.apply_dir("examples/lab").await;
    let r = check_example(
        &env,
        "scenario-decommission-headnode",
        "examples/scenarios/decommission-headnode",
    )
    .await;
    let d = &r.documents[0];
    let tritonctl::gitops::review::KindPlan::Headnodes(h) = &d.plan else {
        panic!()
    };
    assert!(
        h.changes.contains(&"manatee: - headnode2".to_string()),
        "{h:#?}"
    );
    assert!(
        h.changes.contains(&"manatee: + headnode3".to_string()),
        "{h:#?}"
    );
    assert!(h.executed);
    // The manatee part is planned by plan_ha: it only adds the peer on
    // headnode3 (if CNAPI knows it) and says the peer on headnode2 stays.
    assert!(h.manatee.is_some(), "{h:#?}");
    assert!(
        h.notes
            .iter()
            .any(|n| n.contains("headnode2") && n.contains("not removed")),
        "{h:#?}"
    );
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_scenario_transplant() {
    // coal runs manatee v1; the scenario wants v2 with strategy auto.
    let env = Env::start("examples/coal", images::MANATEE_V1).await;
    env.apply_dir("examples/coal").await;
    let r = check_example(&env, "scenario-transplant", "examples/scenarios/transplant").await;
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    // No "not planned" warning any more: the transplant itself is planned.
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let s = &m.shards[0];
    assert_eq!(s.outcome, tritonctl::gitops::review::ShardOutcome::Upgrade);
    assert!(
        s.strategy
            .as_deref()
            .unwrap()
            .starts_with("transplant, manatee v1 -> v2"),
        "{s:#?}"
    );
    let op = s.operation.as_ref().expect("the transplant is planned");
    assert_eq!(op.kind, "manatee-transplant");
    // The full step list from plan_transplant, the point of no return marked.
    let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert_eq!(
        op.point_of_no_return.as_deref(),
        Some(reconcilers::transplant::PNR_STEP)
    );
    let pnr = &op.steps[pos(reconcilers::transplant::PNR_STEP)];
    assert!(pnr.irreversible);
    assert_eq!(
        pnr.risks.first(),
        Some(&tritonctl::gitops::review::Risk::PointOfNoReturn)
    );
    // The write outage spans stop-writes .. start-writes, around the PNR.
    for n in [
        "stop-writes",
        "send-to-v2",
        "enable-v2-sitter",
        "start-writes",
    ] {
        assert!(
            op.steps[pos(n)]
                .risks
                .contains(&tritonctl::gitops::review::Risk::WriteOutage),
            "{n}"
        );
    }
    assert!(
        !op.steps[pos("backup-snapshot")]
            .risks
            .contains(&tritonctl::gitops::review::Risk::WriteOutage)
    );
    assert!(pos("approve-write-outage") < pos("stop-writes"));
    assert!(pos("stop-writes") < pos("enable-v2-sitter"));
    assert!(op.expected_write_outage.contains("stop-writes"), "{op:#?}");
    let rb = op.rollback.as_deref().unwrap();
    assert!(
        rb.contains("tritonctl cancel") && rb.contains("enable-v2-sitter"),
        "{rb}"
    );
    env.scenario.shutdown().await;
}

/// A rolling upgrade across manatee majors is refused in the review, before
/// anything runs, and blocks the whole document as the controller does.
/// The lab shard upgraded by switchover: the review names the strategy,
/// shows the promotion instead of a freeze and the primary's reprovision,
/// and says the write outage is one planned takeover (golden files
/// `lab-switchover.*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_lab_by_switchover_shows_the_promotion_and_its_outage() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let mut docs = read_dir_docs("examples/lab");
    for d in &mut docs {
        if let Document::ManateeVersion(mv) = d {
            mv.spec.strategy = crds::manatee::Strategy::Switchover;
        }
    }
    let r = check_docs(&env, "lab-switchover", &docs).await;
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    let op = m.shards[0]
        .operation
        .as_ref()
        .expect("an upgrade is planned");
    let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    let pos = |p: &str| {
        names
            .iter()
            .position(|n| n.starts_with(p))
            .unwrap_or_else(|| panic!("no step {p} in {names:?}"))
    };
    assert!(pos("reprovision-async") < pos("reprovision-sync"));
    assert!(pos("reprovision-sync") < pos("promote-sync"));
    assert!(pos("promote-sync") < pos("reprovision-deposed"));
    assert!(pos("reprovision-deposed") < pos("rebuild"));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("freeze") || n.starts_with("reprovision-primary")),
        "{names:?}"
    );
    let text = render::text(&r, false);
    // The shard line names the order the planner picked (it said "rolling").
    assert!(text.contains("shard sdc: upgrade (switchover)"), "{text}");
    assert!(text.contains("one planned takeover"), "{text}");
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_refuses_a_rolling_upgrade_across_majors() {
    let env = Env::start("examples/coal", images::MANATEE_V1).await;
    let mut docs = read_dir_docs("examples/scenarios/transplant");
    let Document::ManateeVersion(mv) = &mut docs[0] else {
        panic!()
    };
    mv.spec.strategy = crds::manatee::Strategy::Rolling;
    let r = env.online(&docs).await;
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    assert_eq!(
        m.shards[0].outcome,
        tritonctl::gitops::review::ShardOutcome::Refused
    );
    assert!(
        m.shards[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("MajorVersionChange"),
        "{m:#?}"
    );
    assert!(m.shards[0].operation.is_none());
    assert!(m.warnings.iter().any(|w| w.contains("starts no operation")));
    env.scenario.shutdown().await;
}

/// A HeadnodeSet that adds manatee peers to a one-peer shard shows the HA
/// setup the HeadnodeSet reconciler runs (plan_ha), offline as online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_headnodeset_growing_manatee_shows_the_ha_setup() {
    let text = std::fs::read_to_string(repo().join("examples/lab/headnodeset.yaml"))
        .unwrap()
        .replace(
            "manatee: [headnode0, headnode1, headnode2]",
            "manatee: [headnode0]",
        );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("headnodeset.yaml"), &text).unwrap();
    let one = tritonctl::cli::input::read(&[dir.path().to_path_buf()]).unwrap();
    let one: Vec<Document> = one.documents.into_iter().map(|d| d.document).collect();
    let ensemble = coord::mem::MemEnsemble::new();
    let scenario = SimScenario::start(&one, Arc::new(ensemble.clone()), ScenarioOptions::default())
        .await
        .unwrap();
    let session: Arc<dyn Coordination> = ensemble.connect();
    let store = Store::new(session.clone());
    store.init().await.unwrap();
    store.apply(&one).await.unwrap();
    let urls = scenario.servers.urls().clone();
    let world = Live::new(
        TritonManatee {
            triton: Triton::new(
                &Endpoints {
                    sapi: urls.sapi.clone(),
                    vmapi: urls.vmapi.clone(),
                    cnapi: urls.cnapi.clone(),
                    imgapi: urls.imgapi.clone(),
                },
                Arc::new(Unguarded),
            ),
            coord: session,
            fence: None,
        },
        "the simulated datacenter".into(),
    );
    wait_observed_healthy(world.manatee(), &scenario).await;
    let env = Env {
        scenario,
        store,
        world,
    };
    let full = read_dir_docs("examples/lab");
    let hs: Vec<Document> = full
        .into_iter()
        .filter(|d| d.kind() == crds::Kind::HeadnodeSet)
        .collect();
    let r = check_docs(&env, "headnodeset-grow-manatee", &hs).await;
    let tritonctl::gitops::review::KindPlan::Headnodes(h) = &r.documents[0].plan else {
        panic!()
    };
    assert!(h.executed);
    let m = h.manatee.as_ref().expect("the HA setup is reviewed");
    assert_eq!(
        m.outcome,
        tritonctl::gitops::review::ShardOutcome::Upgrade,
        "{m:#?}"
    );
    let op = m.operation.as_ref().unwrap();
    assert_eq!(op.kind, "manatee-ha-setup");
    let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "preflight",
            "create-manatee1",
            "leave-one-node-write-mode",
            "unfreeze-setup",
            "restart-primary-sitter",
            "wait-sync",
            "create-manatee2",
            "wait-healthy"
        ],
        "{op:#?}"
    );
    assert!(
        h.notes
            .iter()
            .all(|n| !n.contains("No reconciler executes HeadnodeSet"))
    );
    env.scenario.shutdown().await;
}

fn lab_plan_docs() -> Vec<Document> {
    read_dir_docs("examples/lab")
}

async fn make_plan(env: &Env, docs: &[Document]) -> PlanFile {
    let key = PlanKey::load_or_create(env.store.coord().as_ref())
        .await
        .unwrap();
    make_plan_with(env, docs, &key).await
}

async fn make_plan_with(env: &Env, docs: &[Document], key: &PlanKey) -> PlanFile {
    let observed = env.snapshot(docs).await;
    plan::make(
        docs,
        observed,
        "the simulated datacenter",
        "2026-01-01T00:00:00Z".into(),
        key,
    )
    .await
    .unwrap()
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_plan_refused_after_a_manatee_takeover() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let docs = lab_plan_docs();
    let p = make_plan(&env, &docs).await;
    // The primary dies; the sync takes over (a new generation).
    let shard = env.scenario.manatee.shard("sdc");
    let before = shard.state().await.unwrap().unwrap();
    env.scenario
        .manatee
        .zone(&before.primary.zone_id)
        .unwrap()
        .kill()
        .await;
    wait_for("the takeover", || async {
        shard.state().await.ok().flatten().is_some_and(|s| {
            s.generation > before.generation && s.primary.zone_id != before.primary.zone_id
        })
    })
    .await;
    let err = plan::apply(&p, &env.store, &env.world, "now".into())
        .await
        .unwrap_err();
    let ApplyError::Refused(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("stale"), "{msg}");
    assert!(msg.contains("shard sdc: cluster state generation"), "{msg}");
    assert!(msg.contains("takeover"), "{msg}");
    assert!(msg.contains("tritonctl plan -f DIR -o plan.json"), "{msg}");
    // Nothing was stored.
    assert!(
        env.store
            .get(crds::Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .is_none()
    );
    // A new plan against the new state applies.
    let p2 = make_plan(&env, &docs).await;
    plan::apply(&p2, &env.store, &env.world, "now".into())
        .await
        .unwrap();
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_plan_applies_exactly_once() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let docs = lab_plan_docs();
    let p = make_plan(&env, &docs).await;
    let out = plan::apply(&p, &env.store, &env.world, "t1".into())
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    // Exactly the reviewed documents are stored.
    for d in &docs {
        let stored = env.store.get(d.kind(), d.name()).await.unwrap().unwrap();
        assert_eq!(stored.spec_value(), d.spec_value());
    }
    let err = plan::apply(&p, &env.store, &env.world, "t2".into())
        .await
        .unwrap_err();
    let ApplyError::Refused(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("already applied (t1)"), "{msg}");
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_edited_after_planning_is_refused() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let docs = lab_plan_docs();
    let mut p = make_plan(&env, &docs).await;
    let mv = p
        .documents
        .iter_mut()
        .find(|d| d["kind"] == "ManateeVersion")
        .unwrap();
    mv["spec"]["image"]["uuid"] = serde_json::json!(images::MANATEE_V1);
    let err = plan::apply(&p, &env.store, &env.world, "now".into())
        .await
        .unwrap_err();
    let ApplyError::Refused(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("edited after planning"), "{msg}");
    assert!(
        env.store
            .get(crds::Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .is_none()
    );

    // The CLI refuses it too, before contacting anything (exit 1).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    std::fs::write(&file, p.to_json()).unwrap();
    let o = e2e::run(
        &dir.path().join("store"),
        &["apply", "--plan", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    assert!(e2e::stderr(&o).contains("edited after planning"));
    env.scenario.shutdown().await;
}

/// The refusal of a plan whose signature does not verify (nothing stored).
async fn unverified(env: &Env, p: &PlanFile) -> SignatureRefusal {
    let err = plan::apply(p, &env.store, &env.world, "now".into())
        .await
        .unwrap_err();
    let ApplyError::Unverified(r) = err else {
        panic!("{err:?}")
    };
    assert!(
        env.store
            .get(crds::Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .is_none()
    );
    r
}

/// Issue #13: with only an unkeyed sha256, editing the documents and
/// recomputing it made `apply --plan` store what nobody reviewed. Each
/// edit of a signed plan is refused and named; the untouched plan applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_plan_refuses_every_edit_after_review() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let docs = lab_plan_docs();
    let p = make_plan(&env, &docs).await;
    let sig = p.signature.as_ref().expect("plans are signed");
    assert_eq!(sig.algorithm, "hmac-sha256");
    assert_eq!(
        sig.documents.keys().collect::<Vec<_>>(),
        ["documents/HeadnodeSet/lab", "documents/ManateeVersion/sdc"]
    );

    // The attack: edit a document and recompute the unkeyed hash.
    let mut forged = p.clone();
    let mv = forged
        .documents
        .iter_mut()
        .find(|d| d["kind"] == "ManateeVersion")
        .unwrap();
    mv["spec"]["image"]["uuid"] = serde_json::json!(images::MANATEE_V1);
    forged.documents_sha256 = plan::documents_hash(&forged.documents);
    forged
        .verified_documents()
        .expect("the unkeyed hash is fooled");
    let r = unverified(&env, &forged).await;
    let SignatureRefusal::Changed { changed, .. } = &r else {
        panic!("{r:?}")
    };
    assert_eq!(
        changed,
        &["documents/ManateeVersion/sdc changed since review"]
    );
    assert!(r.to_string().contains("nothing was applied"), "{r}");

    // The review edited (an operation hidden from the reader).
    let mut forged = p.clone();
    forged.review.documents[0].plan = forged.review.documents[1].plan.clone();
    let SignatureRefusal::Changed { changed, .. } = unverified(&env, &forged).await else {
        panic!()
    };
    assert_eq!(
        changed,
        ["the review (its operations) changed since review"]
    );

    // The fingerprint edited (to pass a stale plan off as fresh).
    let mut forged = p.clone();
    forged.fingerprint.ring_image = Some("another".into());
    let SignatureRefusal::Changed { changed, .. } = unverified(&env, &forged).await else {
        panic!()
    };
    assert_eq!(
        changed,
        ["the fingerprint (what the plan was planned against) changed since review"]
    );

    // A document added after review.
    let mut forged = p.clone();
    let mut extra = forged.documents[1].clone();
    extra["metadata"]["name"] = serde_json::json!("other");
    forged.documents.push(extra);
    forged.documents_sha256 = plan::documents_hash(&forged.documents);
    let SignatureRefusal::Changed { changed, .. } = unverified(&env, &forged).await else {
        panic!()
    };
    assert_eq!(
        changed,
        ["documents/ManateeVersion/other was added since review"]
    );

    // Re-signed with a key that is not the store's.
    let other = make_plan_with(&env, &docs, &PlanKey::from_bytes([9; 32])).await;
    assert!(matches!(
        unverified(&env, &other).await,
        SignatureRefusal::OtherKey { .. }
    ));

    // Unsigned: a v1 plan (before signatures), or the signature stripped.
    let mut legacy = serde_json::to_value(&p).unwrap();
    legacy["format"] = serde_json::json!("tritonctl.plan/v1");
    legacy.as_object_mut().unwrap().remove("signature");
    let legacy = PlanFile::from_json(&legacy.to_string(), "plan.json").unwrap();
    let r = unverified(&env, &legacy).await;
    assert!(matches!(r, SignatureRefusal::Unsigned { .. }), "{r:?}");
    assert!(
        r.to_string()
            .contains("is not signed (format `tritonctl.plan/v1`)"),
        "{r}"
    );

    // Untouched, it applies.
    let out = plan::apply(&p, &env.store, &env.world, "t1".into())
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    env.scenario.shutdown().await;
}

/// The CLI: a plan made against one store and forged (document edited,
/// unkeyed hash recomputed) is refused with the document named (exit 1);
/// against a store with no key, `apply --plan` says so (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_apply_refuses_a_forged_plan_and_a_store_without_a_key() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let docs = lab_plan_docs();
    let observed = env.snapshot(&docs).await;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("observed.json");
    std::fs::write(&snap, observed.to_json()).unwrap();
    let file = dir.path().join("plan.json");
    let store_dir = dir.path().join("store");
    let o = e2e::run(
        &store_dir,
        &[
            "plan",
            "-f",
            "examples/lab",
            "--observed",
            snap.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    let mut p = PlanFile::from_json(&std::fs::read_to_string(&file).unwrap(), "plan.json").unwrap();
    let mv = p
        .documents
        .iter_mut()
        .find(|d| d["kind"] == "ManateeVersion")
        .unwrap();
    mv["spec"]["image"]["uuid"] = serde_json::json!(images::MANATEE_V1);
    p.documents_sha256 = plan::documents_hash(&p.documents);
    std::fs::write(&file, p.to_json()).unwrap();
    let o = e2e::run(&store_dir, &["apply", "--plan", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    assert!(
        e2e::stderr(&o).contains("documents/ManateeVersion/sdc changed since review"),
        "{}",
        e2e::stderr(&o)
    );
    let o = e2e::run(
        &dir.path().join("another-store"),
        &["apply", "--plan", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    assert!(
        e2e::stderr(&o).contains("this store has no plan signing key"),
        "{}",
        e2e::stderr(&o)
    );
    env.scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_apply_makes_the_plan_stale() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    env.apply_dir("examples/lab").await;
    let mut docs = lab_plan_docs();
    if let Document::ManateeVersion(mv) = &mut docs[1] {
        mv.spec.rollout.approval = crds::manatee::Approval::BeforePrimary;
    }
    let p = make_plan(&env, &docs).await;
    // Someone else applies a change to the same document meanwhile.
    let mut other = lab_plan_docs();
    if let Document::ManateeVersion(mv) = &mut other[1] {
        mv.spec.rollout.paused = true;
    }
    env.store.apply(&other).await.unwrap();
    let err = plan::apply(&p, &env.store, &env.world, "now".into())
        .await
        .unwrap_err();
    let ApplyError::Refused(msg) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("ManateeVersion/sdc: stored resourceVersion 0 -> 1"),
        "{msg}"
    );
    env.scenario.shutdown().await;
}

/// The CLI's offline path: `diff --observed` needs neither a store nor a
/// datacenter, gives exit 1 on differences, and prints the same review as
/// the library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_offline_diff_from_a_snapshot() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let docs = lab_plan_docs();
    let observed = env.snapshot(&docs).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("observed.json");
    std::fs::write(&file, observed.to_json()).unwrap();
    let o = e2e::run(
        &dir.path().join("store"),
        &[
            "diff",
            "-f",
            "examples/lab",
            "--observed",
            file.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    let cli: Review = serde_json::from_str(&e2e::stdout(&o)).unwrap();
    let online = env.online(&docs).await;
    assert_eq!(
        serde_json::to_value(&cli.documents).unwrap(),
        serde_json::to_value(&online.documents).unwrap()
    );
    assert!(
        !Path::new(&dir.path().join("store/lock")).exists(),
        "offline diff opened no store"
    );
    env.scenario.shutdown().await;
}

/// Write a journal for `ManateeVersion/sdc` on shard `sdc`: a two-step
/// operation installing `image` whose first step is irreversible, with that
/// step in `state`.
async fn write_journal(store: &Store, image: &str, state: crds::StepState) {
    use reconcilers::manatee::{ManateeAction, Role};
    use reconcilers::operation::{Operation, PlannedStep};
    let mut op = Operation::new(
        "mv-sdc-sdc-g1-test",
        "manatee-transplant",
        "sdc",
        vec![
            PlannedStep {
                name: "transplant-primary".into(),
                description: "irreversible".into(),
                touches: vec!["manatee0".into()],
                irreversible: true,
                action: ManateeAction::Reprovision {
                    zone: "z0".into(),
                    role: Role::Primary,
                    image: image.into(),
                },
            },
            PlannedStep {
                name: "wait-healthy".into(),
                description: "wait".into(),
                touches: vec![],
                irreversible: false,
                action: ManateeAction::WaitHealthy,
            },
        ],
    );
    op.status.steps[0].state = state;
    op.status.phase = crds::status::OperationPhase::Running;
    write_op(store, &op).await;
}

/// Create or overwrite the node at `path` (its parent made first).
async fn put(store: &Store, path: &str, data: Vec<u8>) {
    let parent = path.rsplit_once('/').unwrap().0;
    store.coord().mkdirp(parent).await.unwrap();
    let op = tritonctl::store::upsert_op(store.coord().as_ref(), path, data)
        .await
        .unwrap();
    store.coord().multi(vec![op]).await.unwrap();
}

/// Store `op` as the journal of `ManateeVersion/sdc` on shard `sdc`.
async fn write_op(
    store: &Store,
    op: &reconcilers::operation::Operation<reconcilers::manatee::ManateeAction>,
) {
    let dir = tritonctl::layout::journal_dir(crds::Kind::ManateeVersion, "sdc");
    put(
        store,
        &format!("{dir}/sdc"),
        serde_json::to_vec(&op).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn a_new_image_is_refused_while_an_operation_is_past_its_point_of_no_return() {
    use tritonctl::gitops::running::{Guard, Rule, guard};
    let ensemble = coord::mem::MemEnsemble::new();
    let store = Store::new(ensemble.connect());
    store.init().await.unwrap();
    let lab = read_dir_docs("examples/lab");
    store.apply(&lab).await.unwrap();
    let mut next = lab.clone();
    if let Document::ManateeVersion(mv) = &mut next[1] {
        mv.spec.image.uuid = images::MANATEE_V1.into();
    }

    // Before the point of no return: the operation finishes, then the shard is re-planned.
    write_journal(&store, images::MANATEE_V2_NEXT, crds::StepState::Pending).await;
    let r = review(&next, &StoredView::load(&store).await.unwrap(), None)
        .await
        .unwrap();
    assert_eq!(r.documents[1].running[0].rule, Rule::FinishesThenReplanned);
    guard(&store, &next)
        .await
        .expect("allowed before the point of no return");

    // Same image: the operation continues.
    let r = review(&lab, &StoredView::load(&store).await.unwrap(), None)
        .await
        .unwrap();
    assert_eq!(r.documents[1].running[0].rule, Rule::Continues);

    // Past it: diff says so and apply is refused, nothing stored.
    write_journal(&store, images::MANATEE_V2_NEXT, crds::StepState::Running).await;
    let r = review(&next, &StoredView::load(&store).await.unwrap(), None)
        .await
        .unwrap();
    assert_eq!(r.documents[1].running[0].rule, Rule::Refused);
    assert!(r.documents[1].refused());
    match guard(&store, &next).await {
        Err(Guard::Refused(m)) => assert!(m.contains("point of no return"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The same image is still accepted (e.g. a health gate edit).
    guard(&store, &lab).await.expect("same image continues");

    // The pins make the apply fail if the journal moves after the check.
    let pins = guard(&store, &lab).await.unwrap();
    write_journal(&store, images::MANATEE_V2_NEXT, crds::StepState::Succeeded).await;
    assert!(matches!(
        store.apply_with(&lab, pins).await,
        Err(tritonctl::store::StoreError::Conflict { .. })
    ));
}

/// Run tritonctl against a ZooKeeper store (the sim's manatee state lives
/// there too, as on a DC's binder), off the async runtime.
async fn run_zk(zk: &str, args: Vec<String>) -> std::process::Output {
    let zk = zk.to_string();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(e2e::tritonctl_bin())
            .arg("--zk")
            .arg(&zk)
            .args(&args)
            .current_dir(repo())
            .env_remove("TRITONCTL_DATA_DIR")
            .output()
            .expect("run tritonctl")
    })
    .await
    .unwrap()
}

/// The README's flow through the binary against the simulator on a real
/// ZooKeeper: diff online, snapshot, diff offline (same review), plan,
/// apply the plan, and the second apply refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_cli_diff_snapshot_plan_apply_flow() {
    let zk = coord::testing::ZkServer::start()
        .await
        .expect("start ZooKeeper");
    let provider = sim::manatee::ZkProvider {
        connect_string: zk.connect_string(),
        session_timeout: Duration::from_secs(4),
    };
    let scenario = SimScenario::start(
        &read_dir_docs("examples/lab"),
        Arc::new(provider),
        ScenarioOptions::default(),
    )
    .await
    .expect("the simulated datacenter starts on ZooKeeper");
    let urls = scenario.servers.urls().clone();
    let watcher = TritonManatee {
        triton: Triton::new(
            &Endpoints {
                sapi: urls.sapi.clone(),
                vmapi: urls.vmapi.clone(),
                cnapi: urls.cnapi.clone(),
                imgapi: urls.imgapi.clone(),
            },
            Arc::new(Unguarded),
        ),
        coord: coord::zk::ZkCoordination::connect(&zk.connect_string(), Duration::from_secs(4))
            .await
            .unwrap(),
        fence: None,
    };
    wait_observed_healthy(&watcher, &scenario).await;
    let world: Vec<String> = [
        ("--sapi", &urls.sapi),
        ("--vmapi", &urls.vmapi),
        ("--cnapi", &urls.cnapi),
        ("--imgapi", &urls.imgapi),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let cs = zk.connect_string();
    let args = |a: &[&str], with_world: bool| {
        let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        if with_world {
            v.extend(world.iter().cloned());
        }
        v
    };

    let o = run_zk(
        &cs,
        args(&["diff", "-f", "examples/lab", "-o", "json"], true),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    let online: Review = serde_json::from_str(&e2e::stdout(&o)).unwrap();
    let m = manatee_plan(&online, "ManateeVersion/sdc");
    assert!(m.shards[0].operation.is_some(), "{m:#?}");

    let snap = path("observed.json");
    let o = run_zk(
        &cs,
        args(&["snapshot", "-f", "examples/lab", "-o", &snap], true),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    let o = run_zk(
        &cs,
        args(
            &[
                "diff",
                "-f",
                "examples/lab",
                "--observed",
                &snap,
                "-o",
                "json",
            ],
            false,
        ),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    let offline: Review = serde_json::from_str(&e2e::stdout(&o)).unwrap();
    assert_eq!(
        serde_json::to_value(&online.documents).unwrap(),
        serde_json::to_value(&offline.documents).unwrap()
    );

    let plan_file = path("plan.json");
    let o = run_zk(
        &cs,
        args(&["plan", "-f", "examples/lab", "-o", &plan_file], true),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    assert!(e2e::stdout(&o).contains("reprovision-primary"));
    let o = run_zk(&cs, args(&["apply", "--plan", &plan_file], true)).await;
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    assert!(
        e2e::stdout(&o).contains("manateeversion/sdc created"),
        "{}",
        e2e::stdout(&o)
    );
    let o = run_zk(&cs, args(&["apply", "--plan", &plan_file], true)).await;
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stdout(&o));
    assert!(
        e2e::stderr(&o).contains("already applied"),
        "{}",
        e2e::stderr(&o)
    );

    // Stored now: the spec is unchanged, the upgrade still to run (no controller here).
    let o = run_zk(
        &cs,
        args(&["diff", "-f", "examples/lab", "-o", "json"], true),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    let after: Review = serde_json::from_str(&e2e::stdout(&o)).unwrap();
    assert!(
        after
            .documents
            .iter()
            .all(|d| d.change == tritonctl::gitops::review::Change::Unchanged)
    );
    scenario.shutdown().await;
}

/// Exit codes of `tritonctl diff` (kubectl's): 0 none, 1 differences, 2 error.
#[test]
fn diff_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = e2e::run(&store, &["diff", "-f", "examples/lab"]);
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
    assert!(e2e::stdout(&o).contains("ManateeVersion/sdc: create"));
    let o = e2e::run(&store, &["apply", "-f", "examples/lab"]);
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stderr(&o));
    let o = e2e::run(&store, &["diff", "-f", "examples/lab"]);
    assert_eq!(o.status.code(), Some(0), "{}", e2e::stdout(&o));
    let o = e2e::run(
        &store,
        &[
            "diff",
            "-f",
            "examples/scenarios/decommission-headnode",
            "-o",
            "markdown",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(e2e::stdout(&o).contains("<details><summary>Spec diff</summary>"));
    // Invalid documents, unreadable input, a bad snapshot: 2.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: tritonctl/v1alpha1\nkind: ManateeVersion\nmetadata: {name: x}\nspec: {shards: []}\n").unwrap();
    let o = e2e::run(&store, &["diff", "-f", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", e2e::stderr(&o));
    let o = e2e::run(&store, &["diff", "-f", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    let snap = dir.path().join("observed.json");
    std::fs::write(&snap, "{\"format\": \"something-else\"}").unwrap();
    let o = e2e::run(
        &store,
        &[
            "diff",
            "-f",
            "examples/lab",
            "--observed",
            snap.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        e2e::stderr(&o).contains("tritonctl.observed/v1"),
        "{}",
        e2e::stderr(&o)
    );
    // Help with examples.
    for cmd in ["diff", "plan", "snapshot", "apply"] {
        let o = e2e::run(&store, &[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        assert!(e2e::stdout(&o).contains("Example"), "{cmd}");
    }
}

/// Whether a type can act on the datacenter (implements `ManateeAct`),
/// asked of concrete types (autoref specialization: the `&&Probe` impl is
/// chosen only when its bound holds).
struct Probe<T: ?Sized>(std::marker::PhantomData<T>);
trait Acts {
    fn acts(&self) -> bool {
        true
    }
}
impl<T: ?Sized + ManateeAct> Acts for &&Probe<T> {}
trait Observes {
    fn acts(&self) -> bool {
        false
    }
}
impl<T: ?Sized> Observes for &Probe<T> {}
macro_rules! acts {
    ($t:ty) => {
        (&&&Probe::<$t>(std::marker::PhantomData)).acts()
    };
}

/// Reviews only observe, and the compiler holds them to it: the live world
/// behind diff/plan/snapshot and a snapshot hand out observing traits only
/// (no reprovision, freeze or unfreeze can even be called through them).
#[tokio::test]
async fn review_worlds_never_change_the_datacenter() {
    let nowhere = Endpoints {
        sapi: "http://127.0.0.1:9".into(),
        vmapi: "http://127.0.0.1:9".into(),
        cnapi: "http://127.0.0.1:9".into(),
        imgapi: "http://127.0.0.1:9".into(),
    };
    let live = Live::new(
        TritonManatee {
            triton: Triton::new(&nowhere, Arc::new(Unguarded)),
            coord: coord::mem::MemEnsemble::new().connect(),
            fence: None,
        },
        "nowhere".into(),
    );
    let recorded = Recorded {
        observed: Observed::from_json(
            &serde_json::json!({
                "format": tritonctl::gitops::observed::SNAPSHOT_FORMAT,
                "capturedAt": "t", "source": "s", "stored": {"documents": {}},
                "shards": {}, "images": {}, "ringImage": null
            })
            .to_string(),
            "observed.json",
        )
        .unwrap(),
        origin: "observed.json".into(),
    };
    // The probe tells an acting world from an observing one...
    assert!(acts!(TritonManatee));
    assert!(!acts!(dyn ManateeObserve));
    // ...and what a review gets from either world cannot act; a snapshot
    // cannot act at all.
    for w in [&live as &dyn World, &recorded as &dyn World] {
        let _only_observes: &dyn ManateeObserve = w.manatee();
    }
    assert!(!acts!(Recorded));
    assert!(!acts!(Live));
    // A snapshot that does not cover a shard says so, and how to fix it.
    let e = recorded
        .manatee()
        .observe("sdc")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not in the snapshot") && e.contains("tritonctl snapshot -f DIR"),
        "{e}"
    );
}

/// A plan is never made over a shard that was not observed (a snapshot
/// taken without the documents under review, say).
#[tokio::test]
async fn no_plan_over_an_unobserved_shard() {
    let docs = read_dir_docs("examples/lab");
    let observed = Observed::from_json(
        &serde_json::json!({
            "format": tritonctl::gitops::observed::SNAPSHOT_FORMAT,
            "capturedAt": "t", "source": "s", "stored": {"documents": {}},
            "shards": {},
            "images": {images::MANATEE_V2_NEXT: {
                "uuid": images::MANATEE_V2_NEXT, "name": "sdc-manatee",
                "version": "20251104T182201Z", "state": "active", "manatee_major": 2}},
            "ringImage": null
        })
        .to_string(),
        "observed.json",
    )
    .unwrap();
    let key = PlanKey::from_bytes([7; 32]);
    let e = plan::make(&docs, observed, "observed.json", "t".into(), &key)
        .await
        .unwrap_err();
    assert!(e.contains("cannot plan what was not observed"), "{e}");
    assert!(e.contains("ManateeVersion/sdc: shard sdc"), "{e}");
}

/// An operation in flight whose shard moved under it (a takeover) is shown
/// as re-planned at its next reprovision step, as the controller's runner
/// does (its gate blocks with `Replan`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_under_a_running_operation_shows_it_replanned() {
    use reconcilers::manatee::{ShardPlan, plan_shard};
    use tritonctl::gitops::running::Rule;
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    env.apply_dir("examples/lab").await;
    let docs = lab_plan_docs();
    let Document::ManateeVersion(mv) = &docs[1] else {
        panic!()
    };
    let m = env.world.manatee();
    let obs = m.observe("sdc").await.unwrap();
    let img = m.image(&mv.spec.image.uuid).await.unwrap();
    let ShardPlan::Upgrade(mut op) = plan_shard(&mv.spec, &obs, img.as_ref(), "mv-sdc-sdc-g1-run")
    else {
        panic!("an upgrade is planned")
    };
    op.status.phase = crds::status::OperationPhase::Running;
    op.status.steps[0].state = crds::StepState::Succeeded;
    write_op(&env.store, &op).await;

    let r = env.online(&docs).await;
    assert_eq!(
        r.documents[1].running[0].rule,
        Rule::Continues,
        "{:?}",
        r.documents[1].running
    );

    let shard = env.scenario.manatee.shard("sdc");
    let before = shard.state().await.unwrap().unwrap();
    env.scenario
        .manatee
        .zone(&before.primary.zone_id)
        .unwrap()
        .kill()
        .await;
    wait_for("the takeover", || async {
        shard.state().await.ok().flatten().is_some_and(|s| {
            s.generation > before.generation && s.primary.zone_id != before.primary.zone_id
        })
    })
    .await;
    let r = env.online(&docs).await;
    let d = &r.documents[1].running[0];
    assert_eq!(d.rule, Rule::ReplannedAtNextStep, "{d:?}");
    assert!(d.why.contains("planned as"), "{}", d.why);
    env.scenario.shutdown().await;
}

/// Store a transplant journal for `ManateeVersion/sdc` on shard `sdc`:
/// the coal transplant as `plan_transplant` plans it, with every step up
/// to (not including) `upto` succeeded and step `upto` in `state`.
async fn write_transplant(store: &Store, upto: &str, state: crds::StepState) {
    use reconcilers::transplant::{
        MorayObs, TransplantJournal, TransplantObs, ZoneObs, plan_transplant,
    };
    let Document::ManateeVersion(mv) = &read_dir_docs("examples/scenarios/transplant")[0] else {
        panic!()
    };
    let obs = TransplantObs {
        shard: "sdc".into(),
        state: None,
        zones: vec![ZoneObs {
            zone: "z0".into(),
            alias: "manatee0".into(),
            server: "s0".into(),
            image: images::MANATEE_V1.into(),
            vm_state: "running".into(),
            sitter_enabled: true,
            config_agent_enabled: true,
            election_seq: Some(1),
            writable: true,
            dataset_bytes: Some(1 << 30),
            ..Default::default()
        }],
        morays: vec![MorayObs {
            zone: "m0".into(),
            server: "s0".into(),
            image_version: "20240327T001755Z".into(),
            enabled: true,
        }],
    };
    let majors = [
        (images::MANATEE_V1.to_string(), 1),
        (mv.spec.image.uuid.clone(), 2),
    ]
    .into_iter()
    .collect();
    let mut forward =
        plan_transplant(&mv.spec, &obs, &majors, "mv-sdc-sdc-transplant-test").unwrap();
    forward.status.phase = crds::status::OperationPhase::Running;
    let at = forward
        .status
        .steps
        .iter()
        .position(|s| s.name == upto)
        .unwrap();
    for s in &mut forward.status.steps[..at] {
        s.state = crds::StepState::Succeeded;
    }
    forward.status.steps[at].state = state;
    let j = TransplantJournal::new(forward);
    let path = tritonctl::layout::transplant_journal_path("sdc", "sdc");
    put(store, &path, serde_json::to_vec(&j).unwrap()).await;
}

/// The rules for a change that meets a transplant in flight: before the
/// point of no return a new image finishes-then-replans and a switch to
/// `rolling` or dropping the shard is refused (cancel first); past it, a
/// new image or a strategy change is refused, and so is a pause while
/// writes are stopped. The apply is pinned to the journal it checked.
#[tokio::test]
async fn changes_meeting_a_transplant_follow_the_rules() {
    use tritonctl::gitops::running::{Guard, Rule, guard};
    let ensemble = coord::mem::MemEnsemble::new();
    let store = Store::new(ensemble.connect());
    store.init().await.unwrap();
    let base = read_dir_docs("examples/scenarios/transplant");
    store.apply(&base).await.unwrap();
    let edit = |f: &dyn Fn(&mut crds::manatee::ManateeVersionSpec)| {
        let mut d = base.clone();
        let Document::ManateeVersion(mv) = &mut d[0] else {
            panic!()
        };
        f(&mut mv.spec);
        d
    };
    let new_image = edit(&|s| s.image.uuid = images::MANATEE_V2_NEXT.into());
    let rolling = edit(&|s| s.strategy = crds::manatee::Strategy::Rolling);
    let explicit = edit(&|s| s.strategy = crds::manatee::Strategy::Transplant);
    let dropped = edit(&|s| s.shards = vec!["other".into()]);
    let paused = edit(&|s| s.rollout.paused = true);
    let rule = |docs: Vec<Document>| {
        let store = &store;
        async move {
            let r = review(&docs, &StoredView::load(store).await.unwrap(), None)
                .await
                .unwrap();
            let d = r.documents[0]
                .running
                .iter()
                .find(|d| d.operation == "mv-sdc-sdc-transplant-test")
                .cloned()
                .expect("the transplant is shown");
            (d.rule, d.why)
        }
    };
    let refused = |docs: Vec<Document>| {
        let store = &store;
        async move {
            match guard(store, &docs).await {
                Err(Guard::Refused(m)) => m,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };

    // Before the point of no return (at the backup snapshot).
    write_transplant(&store, "backup-snapshot", crds::StepState::Running).await;
    assert_eq!(rule(base.clone()).await.0, Rule::Continues);
    let (r, why) = rule(new_image.clone()).await;
    assert_eq!(r, Rule::FinishesThenReplanned, "{why}");
    assert!(why.contains("tritonctl cancel manateeversion/sdc"), "{why}");
    guard(&store, &new_image)
        .await
        .expect("allowed before the PNR");
    assert_eq!(rule(rolling.clone()).await.0, Rule::Refused);
    assert!(refused(rolling.clone()).await.contains("Cancel it first"));
    assert_eq!(rule(explicit.clone()).await.0, Rule::FinishesThenReplanned);
    assert_eq!(rule(dropped.clone()).await.0, Rule::Refused);
    assert!(
        refused(dropped.clone())
            .await
            .contains("nothing driving it")
    );
    assert_eq!(rule(paused.clone()).await.0, Rule::Pauses);

    // Writes stopped, the point of no return running.
    write_transplant(
        &store,
        reconcilers::transplant::PNR_STEP,
        crds::StepState::Running,
    )
    .await;
    assert_eq!(rule(base.clone()).await.0, Rule::Continues);
    guard(&store, &base).await.expect("same spec continues");
    for docs in [new_image.clone(), rolling.clone(), explicit.clone()] {
        assert_eq!(rule(docs.clone()).await.0, Rule::Refused);
        assert!(refused(docs).await.contains("point of no return"));
    }
    assert!(refused(paused.clone()).await.contains("write outage open"));
    assert!(
        refused(dropped.clone())
            .await
            .contains("wait until it finishes")
    );

    // Writes back on: a pause is taken again.
    write_transplant(&store, "release-backup", crds::StepState::Pending).await;
    assert_eq!(rule(paused.clone()).await.0, Rule::Pauses);
    guard(&store, &paused)
        .await
        .expect("a pause after start-writes");

    // Deleting the document would abandon the transplant: refused.
    match tritonctl::gitops::running::guard_delete(&store, crds::Kind::ManateeVersion, "sdc").await
    {
        Err(Guard::Refused(m)) => assert!(m.contains("transplant in flight"), "{m}"),
        other => panic!("{other:?}"),
    }

    // The apply is pinned to the transplant journal it checked.
    let pins = guard(&store, &base).await.unwrap();
    write_transplant(&store, "release-backup", crds::StepState::Running).await;
    assert!(matches!(
        store.apply_with(&base, pins).await,
        Err(tritonctl::store::StoreError::Conflict { .. })
    ));
}

/// Deleting a ManateeVersion whose rolling upgrade is in flight would
/// strand its freeze and the shard's lock: refused until it has finished.
#[tokio::test]
async fn delete_is_refused_while_a_rolling_upgrade_is_in_flight() {
    use reconcilers::manatee::ManateeAction;
    use reconcilers::operation::{Operation, PlannedStep};

    let ens = coord::mem::MemEnsemble::new();
    let store = tritonctl::store::Store::new(ens.connect());
    store.init().await.unwrap();
    let step = |name: &str, action| PlannedStep {
        name: name.into(),
        description: name.into(),
        touches: vec![],
        irreversible: false,
        action,
    };
    let mut op: Operation<ManateeAction> = Operation::new(
        "mv-sdc-sdc-g1-test",
        "manatee-rolling",
        "sdc",
        vec![
            step(
                "freeze",
                ManateeAction::Freeze {
                    reason: "tritonctl test".into(),
                },
            ),
            step("wait-healthy", ManateeAction::WaitHealthy),
        ],
    );
    op.status.steps[0].state = crds::StepState::Succeeded;
    write_op(&store, &op).await;
    match tritonctl::gitops::running::guard_delete(&store, crds::Kind::ManateeVersion, "sdc").await
    {
        Err(tritonctl::gitops::running::Guard::Refused(m)) => {
            assert!(m.contains("mv-sdc-sdc-g1-test"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Finished: the delete goes ahead.
    op.status.steps[1].state = crds::StepState::Succeeded;
    op.status.phase = crds::status::OperationPhase::Succeeded;
    write_op(&store, &op).await;
    tritonctl::gitops::running::guard_delete(&store, crds::Kind::ManateeVersion, "sdc")
        .await
        .expect("a finished operation does not hold the delete");
}

/// Credentials in an endpoint URL (`http://admin:pw@host`) reach neither
/// what `diff` prints (text, Markdown, JSON) nor a snapshot nor a saved
/// plan (issue #12, item 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_endpoints_are_never_printed_or_stored() {
    let env = Env::start("examples/lab", images::MANATEE_V2_CURRENT).await;
    let urls = env.scenario.servers.urls().clone();
    let creds = |u: &str| u.replacen("://", "://admin:s3cret@", 1);
    let e = Endpoints {
        sapi: creds(&urls.sapi),
        vmapi: creds(&urls.vmapi),
        cnapi: creds(&urls.cnapi),
        imgapi: creds(&urls.imgapi),
    };
    let world = Live::new(
        TritonManatee {
            triton: Triton::new(&e, Arc::new(Unguarded)),
            coord: env.store.coord().clone(),
            fence: None,
        },
        format!(
            "SAPI {} VMAPI {} CNAPI {} IMGAPI {}",
            e.sapi, e.vmapi, e.cnapi, e.imgapi
        ),
    );
    let docs = lab_plan_docs();
    let stored = env.stored().await;
    let r = review(&docs, &stored, Some(&world)).await.unwrap();
    let observed = capture(stored, &world, &docs, "t".into()).await.unwrap();
    let key = PlanKey::from_bytes([3; 32]);
    let p = plan::make(&docs, observed.clone(), "observed.json", "t".into(), &key)
        .await
        .unwrap();
    let text = render::text(&r, false);
    for (what, out) in [
        ("text", text.clone()),
        ("markdown", render::markdown(&r)),
        ("json", serde_json::to_string(&r).unwrap()),
        ("snapshot", observed.to_json()),
        ("plan", p.to_json()),
    ] {
        assert!(
            !out.contains("s3cret") && !out.contains("admin:"),
            "{what} carries the credentials:\n{out}"
        );
    }
    assert!(text.contains("SAPI http://***@127.0.0.1"), "{text}");
    // The credentials were still used: the shards were observed.
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    assert!(m.shards[0].operation.is_some(), "{m:#?}");
    env.scenario.shutdown().await;
}

/// A diff that could not observe the datacenter is a failure (exit 2, the
/// reason on stderr), not "differences" (exit 1): CI must tell a change from
/// an outage (issue #12, item 10).
#[test]
fn diff_exits_2_when_the_datacenter_could_not_be_observed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let snap = dir.path().join("observed.json");
    std::fs::write(
        &snap,
        serde_json::json!({
            "format": tritonctl::gitops::observed::SNAPSHOT_FORMAT,
            "capturedAt": "t", "source": "s", "stored": {"documents": {}},
            "shards": {"sdc": {"observation": null,
                "error": "error sending request for url (http://10.99.99.32/applications): connection refused"}},
            "images": {images::MANATEE_V2_NEXT: {
                "uuid": images::MANATEE_V2_NEXT, "name": "sdc-manatee",
                "version": "20251104T182201Z", "state": "active", "manatee_major": 2}},
            "ringImage": null
        })
        .to_string(),
    )
    .unwrap();
    let args = [
        "diff",
        "-f",
        "examples/lab",
        "--observed",
        snap.to_str().unwrap(),
    ];
    for format in ["text", "json", "markdown"] {
        let mut a = args.to_vec();
        a.extend(["-o", format]);
        let o = e2e::run(&store, &a);
        assert_eq!(o.status.code(), Some(2), "{format}: {}", e2e::stdout(&o));
        let err = e2e::stderr(&o);
        assert!(
            err.contains("could not observe") && err.contains("connection refused"),
            "{format}: {err}"
        );
    }
    // Offline on purpose (no endpoints, no snapshot) stays a plain diff.
    let o = e2e::run(&store, &["diff", "-f", "examples/lab"]);
    assert_eq!(o.status.code(), Some(1), "{}", e2e::stderr(&o));
}

/// `diff` warns, in text, Markdown and JSON, when the target image is older
/// (by build time) than the one a shard runs: a downgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_warns_about_an_image_downgrade() {
    let env = Env::start("examples/lab", images::MANATEE_V2_NEXT).await;
    let mut docs = lab_plan_docs();
    for d in &mut docs {
        if let Document::ManateeVersion(mv) = d {
            mv.spec.image.uuid = images::MANATEE_V2_CURRENT.into();
            mv.spec.image.version = Some("20240327T001755Z".into());
        }
    }
    let r = env.online(&docs).await;
    let m = manatee_plan(&r, "ManateeVersion/sdc");
    let warning = format!(
        "DOWNGRADE: image {} is older than image {} that shard(s) sdc run (built 20240327T001755Z, before 20251104T182201Z)",
        images::MANATEE_V2_CURRENT,
        images::MANATEE_V2_NEXT
    );
    assert!(
        m.warnings.iter().any(|w| w.starts_with(&warning)),
        "{:#?}",
        m.warnings
    );
    for (what, out) in [
        ("text", render::text(&r, false)),
        ("markdown", render::markdown(&r)),
        ("json", serde_json::to_string(&r).unwrap()),
    ] {
        assert!(out.contains(&warning), "{what}:\n{out}");
    }
    // The image the shard already runs carries no such warning.
    let r = env.online(&lab_plan_docs()).await;
    assert!(
        manatee_plan(&r, "ManateeVersion/sdc")
            .warnings
            .iter()
            .all(|w| !w.contains("DOWNGRADE")),
    );
    env.scenario.shutdown().await;
}

/// Through the binary: endpoints with credentials that cannot be reached.
/// Nothing the command prints, on either stream, carries the password.
#[test]
fn cli_never_prints_credentials_of_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = "http://admin:s3cret@127.0.0.1:9";
    let mut args = vec!["diff", "-f", "examples/lab"];
    for flag in ["--sapi", "--vmapi", "--cnapi", "--imgapi"] {
        args.extend([flag, url]);
    }
    for format in ["text", "markdown", "json"] {
        let mut a = args.clone();
        a.extend(["-o", format]);
        let o = e2e::run(&store, &a);
        assert_eq!(o.status.code(), Some(2), "{format}: {}", e2e::stderr(&o));
        let all = format!("{}{}", e2e::stdout(&o), e2e::stderr(&o));
        assert!(!all.contains("s3cret"), "{format}: {all}");
    }
    // A snapshot that recorded an endpoint with its credentials (an older
    // tritonctl's, or one edited by hand): diff from it prints none of them.
    let snap = dir.path().join("observed.json");
    std::fs::write(
        &snap,
        serde_json::json!({
            "format": tritonctl::gitops::observed::SNAPSHOT_FORMAT,
            "capturedAt": "t", "source": format!("SAPI {url} VMAPI {url}"),
            "stored": {"documents": {}},
            "shards": {"sdc": {"observation": null,
                "error": format!("error sending request for url ({url}/applications)")}},
            "images": {images::MANATEE_V2_NEXT: {
                "uuid": images::MANATEE_V2_NEXT, "name": "sdc-manatee",
                "version": "20251104T182201Z", "state": "active", "manatee_major": 2}},
            "ringImage": null
        })
        .to_string(),
    )
    .unwrap();
    for format in ["text", "markdown", "json"] {
        let o = e2e::run(
            &store,
            &[
                "diff",
                "-f",
                "examples/lab",
                "--observed",
                snap.to_str().unwrap(),
                "-o",
                format,
            ],
        );
        let all = format!("{}{}", e2e::stdout(&o), e2e::stderr(&o));
        assert!(!all.contains("s3cret"), "{format}: {all}");
        assert!(all.contains("http://***@127.0.0.1:9"), "{format}: {all}");
    }
}
