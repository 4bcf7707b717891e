//! Shard split primitives on the replication model (fast): three asyncs
//! added to a shard, detached into a new shard that starts frozen at
//! generation 1 with exactly the writes it had.

use std::sync::Arc;
use std::time::Duration;

use coord::mem::MemEnsemble;
use sim::manatee::{BootOptions, ManateeSim, ManateeSimConfig, PeerRole, ZoneSpec};
use sim::manta::split::{self, SplitError};
use wire::manatee::Freeze;

const T: Duration = Duration::from_secs(60);

async fn source(name: &str) -> ManateeSim {
    let sim = ManateeSim::new(Arc::new(MemEnsemble::new()), ManateeSimConfig::scaled(0.02));
    for n in 1..=2 {
        sim.add_zone(
            ZoneSpec::new(&format!("{name}-node{n}"), &format!("10.0.0.{n}")),
            BootOptions::new(name),
        )
        .await
        .unwrap();
    }
    let s = sim.shard(name);
    tokio::time::timeout(T, async {
        while s.write(b"probe").await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the source takes writes");
    sim
}

async fn add_three(sim: &ManateeSim, name: &str) -> Vec<sim::manatee::Zone> {
    let mut added = Vec::new();
    for n in 3..=5 {
        let spec = ZoneSpec::new(&format!("{name}-node{n}"), &format!("10.0.0.{n}"));
        added.push(split::add_async(sim, name, spec, T).await.unwrap());
    }
    added
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_added_asyncs_detach_into_a_frozen_new_shard_with_what_they_had() {
    let (src, dst) = ("1.moray.split", "9.moray.split");
    let sim = source(src).await;
    let s = sim.shard(src);
    for i in 0..20u32 {
        s.write(format!("before-{i}").as_bytes()).await.unwrap();
    }
    let added = add_three(&sim, src).await;
    // Every added peer is an async of the source holding every write.
    let st = s.state().await.unwrap().unwrap();
    assert_eq!(st.asyncs.len(), 3);
    for z in &added {
        assert_eq!(z.role(), PeerRole::Async);
    }
    for i in 0..10u32 {
        s.write(format!("during-{i}").as_bytes()).await.unwrap();
    }
    for z in &added {
        split::wait_caught_up(&sim, src, z, T).await.unwrap();
    }
    let at_detach = s.primary_writes().await.unwrap();

    let picks = split::shutdown_new_peers(&sim, src, &added, T)
        .await
        .unwrap();
    // Chain order: the first added (highest in the chain) is the new primary.
    assert_eq!(picks.primary.zone_id(), added[0].zone_id());
    assert_eq!(picks.sync.zone_id(), added[1].zone_id());
    assert_eq!(picks.asyncs[0].zone_id(), added[2].zone_id());
    // The source goes on without them.
    s.write(b"after-detach").await.unwrap();

    let reason = split::freeze_reason("f00d");
    let st = split::establish_new_shard(&sim, &picks, dst, &reason, T)
        .await
        .unwrap();
    assert_eq!(st.primary.id, added[0].id());
    assert!(st.generation >= 1);
    let Freeze::Info(f) = &st.freeze else {
        panic!("new shard not frozen: {:?}", st.freeze)
    };
    assert_eq!(f.reason.as_deref(), Some(reason.as_str()));
    // The new shard's data is the source's at the detach, and nothing the
    // source took afterwards.
    let d = sim.shard(dst);
    let got = d.primary_writes().await.unwrap();
    assert_eq!(got, at_detach);
    assert!(!got.iter().any(|w| w == b"after-detach"));
    // The new shard takes writes of its own; the source never sees them.
    tokio::time::timeout(T, async {
        while d.write(b"new-shard-only").await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the new shard takes writes");
    assert!(
        !s.primary_writes()
            .await
            .unwrap()
            .iter()
            .any(|w| w == b"new-shard-only")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_refuses_peers_that_are_not_asyncs_of_the_source() {
    let src = "2.moray.split";
    let sim = source(src).await;
    let added = add_three(&sim, src).await;
    let two = &added[..2];
    assert!(matches!(
        split::shutdown_new_peers(&sim, src, two, T).await,
        Err(SplitError::PeerCount(2))
    ));
    // The source's sync is not an async.
    let sync = sim.zone(&format!("{src}-node2")).unwrap();
    let mixed = vec![added[0].clone(), added[1].clone(), sync];
    let err = split::shutdown_new_peers(&sim, src, &mixed, T)
        .await
        .unwrap_err();
    assert!(matches!(err, SplitError::NotAsync { .. }), "{err}");
    // Nothing was stopped.
    assert!(added.iter().all(|z| z.is_running()));
    sim.shutdown().await;
}

/// The dump job honours `/pg_dump_lock`, dumps from the first async, and a
/// dump taken while a reshard plan has the shard frozen is flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dump_job_honours_pg_dump_lock_and_flags_a_dump_taken_mid_split() {
    use coord::{CreateMode, Expect};
    use sim::manta::pg_dump::{DumpOutcome, DumpSchedule, PG_DUMP_LOCK, run_once};
    let src = "3.moray.split";
    let sim = source(src).await;
    // Two peers: the sync dumps.
    let sync = sim.zone(&format!("{src}-node2")).unwrap();
    let r = run_once(&sim, src, 0).await.unwrap();
    assert!(
        matches!(&r.outcome, DumpOutcome::Dumped { peer, .. } if peer == sync.id()),
        "{r:?}"
    );
    assert!(!r.is_mid_split_dump());
    // With an async, the first async dumps.
    let added = add_three(&sim, src).await;
    let r = run_once(&sim, src, 1).await.unwrap();
    assert!(
        matches!(&r.outcome, DumpOutcome::Dumped { peer, .. } if peer == added[0].id()),
        "{r:?}"
    );
    // The lock held: no dump, on every run.
    let c = sim.admin_session().await.unwrap();
    c.create(PG_DUMP_LOCK, b"reshard", CreateMode::Persistent)
        .await
        .unwrap();
    let sched = DumpSchedule::start(sim.clone(), vec![src.into()], Duration::from_millis(20));
    let s = sim.shard(src);
    s.freeze(&split::freeze_reason("d00d")).await.unwrap();
    tokio::time::timeout(T, async {
        while sched.records().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let locked = sched.stop();
    assert!(
        locked
            .iter()
            .all(|r| r.outcome == DumpOutcome::SkippedLocked),
        "{locked:?}"
    );
    // Lock released mid-split (the mistake the lock exists for): the dump
    // happens and the record flags it.
    c.delete(PG_DUMP_LOCK, Expect::Any).await.unwrap();
    let r = run_once(&sim, src, 9).await.unwrap();
    assert!(r.is_mid_split_dump(), "{r:?}");
    assert_eq!(r.mid_split.as_deref(), Some("reshard plan d00d"));
    sim.shutdown().await;
}

/// An added async's restore reports its progress as the backup server
/// does: MB done rising to the whole dataset, a rate and an ETA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_async_restore_reports_mb_done_rate_and_eta() {
    let src = "4.moray.split";
    let sim = source(src).await;
    let spec = ZoneSpec::new(&format!("{src}-node3"), "10.0.0.3");
    let (zone, progress) = split::add_async_with_progress(&sim, src, spec, T)
        .await
        .unwrap();
    assert_eq!(zone.role(), PeerRole::Async);
    let last = progress.last().expect("progress was reported");
    assert!(last.done, "{progress:?}");
    assert_eq!(last.mb_done, last.mb_total);
    assert!(last.mb_total >= 4096.0, "the dataset's base size: {last:?}");
    // It rose in steps, each with a rate and an ETA once bytes moved.
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].mb_done <= w[1].mb_done));
    let mid = progress
        .iter()
        .find(|p| !p.done && p.mb_done > 0.0)
        .expect("a progress sample mid-restore");
    assert!(
        mid.mb_per_s.is_some_and(|r| r > 0.0) && mid.eta.is_some(),
        "{mid:?}"
    );
    sim.shutdown().await;
}
