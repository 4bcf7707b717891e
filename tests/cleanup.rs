//! The resharding cleanup engine (`tritonctl::cleanup`) on real
//! PostgreSQL: two Moray shards as two databases of one PostgreSQL 15
//! server run by the manatee simulation, holding the same rows (a split's
//! new shard is a copy of its source), each then cleaned of the vnodes it
//! no longer owns.
//!
//! Needs the PostgreSQL server programs; without them each test says so and
//! passes, unless `TRITONCTL_REQUIRE_PG` is set (as `.ci/run` does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use coord::Coordination;
use coord::mem::MemEnsemble;
use sim::manatee::{BootOptions, ManateeSim, ManateeSimConfig, PgBinaries, RealPostgres, ZoneSpec};
use sim::manta::cleanup_data::{self, CleanupData};
use sim::manta::{FixedPrimary, PgShardStore};
use tritonctl::cleanup::{
    CleanupError, CleanupTarget, OwnerCheck, Tuning, TuningSource, cleanup_for, count_vnodes,
    verify,
};
use wire::fash::{HashSpace, Ring};

const T: Duration = Duration::from_secs(120);
const VNODES: u32 = 64;

fn binaries(test: &str) -> Option<PgBinaries> {
    match PgBinaries::find() {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("TRITONCTL_REQUIRE_PG").is_some() => {
            panic!("{test}: TRITONCTL_REQUIRE_PG is set and {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

/// Two shards with the same rows: `src` keeps the odd vnodes (the even
/// ones moved to `dst`), `dst` keeps the even ones.
struct Pair {
    _sim: ManateeSim,
    _pg: Arc<RealPostgres>,
    src: String,
    dst: String,
    moved: BTreeSet<u32>,
    kept: BTreeSet<u32>,
}

impl Pair {
    fn src_target(&self) -> CleanupTarget {
        CleanupTarget {
            shard: "1.moray".into(),
            pg_url: self.src.clone(),
            drop_vnodes: self.moved.clone(),
            vnode_count: VNODES,
        }
    }

    fn dst_target(&self) -> CleanupTarget {
        CleanupTarget {
            shard: "3.moray".into(),
            pg_url: self.dst.clone(),
            drop_vnodes: self.kept.clone(),
            vnode_count: VNODES,
        }
    }
}

async fn client(conninfo: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

async fn pair(test: &str, data: CleanupData) -> Option<Pair> {
    let bins = binaries(test)?;
    let pg = RealPostgres::new(bins).expect("real postgres root");
    let mut cfg = ManateeSimConfig::scaled(0.05);
    cfg.write_timeout = Duration::from_secs(60);
    let sim = ManateeSim::with_real_pg(Arc::new(MemEnsemble::new()), cfg, pg.clone());
    sim.add_zone(
        ZoneSpec::new("pg-node1", "10.0.0.1"),
        BootOptions::new("1.moray").one_node_write_mode(true),
    )
    .await
    .expect("add zone");
    let src = tokio::time::timeout(T, async {
        loop {
            let primary = sim.shard("1.moray").primary_id().await.ok().flatten();
            if let Some(info) = primary
                .and_then(|id| sim.zone_by_peer_id(&id))
                .and_then(|z| z.pg_conninfo())
                && tokio_postgres::connect(&info, tokio_postgres::NoTls)
                    .await
                    .is_ok()
            {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the primary takes connections");
    client(&src)
        .await
        .batch_execute("CREATE DATABASE newshard")
        .await
        .expect("second database");
    let dst = src.replace("dbname=postgres", "dbname=newshard");
    assert_ne!(src, dst, "conninfo names its database");
    let ring = Ring::create(VNODES, &["tcp://1.moray:2020"]).unwrap();
    for (pnode, info) in [("tcp://1.moray:2020", &src), ("tcp://3.moray:2020", &dst)] {
        let store = PgShardStore::new(pnode, Arc::new(FixedPrimary(info.clone())));
        store.setup_manta().await.expect("moray buckets");
        cleanup_data::fill(info, &ring, &data).await.expect("rows");
    }
    let moved: BTreeSet<u32> = (0..VNODES).filter(|v| v % 2 == 0).collect();
    let kept: BTreeSet<u32> = (0..VNODES).filter(|v| v % 2 == 1).collect();
    Some(Pair {
        _sim: sim,
        _pg: pg,
        src,
        dst,
        moved,
        kept,
    })
}

/// Every row of a shard: (bucket, key, vnode by `_vnode` or else by key for
/// ring-keyed buckets; None for the queue rows).
async fn rows(conninfo: &str) -> Vec<(String, String, Option<u32>)> {
    let c = client(conninfo).await;
    let space = HashSpace::new(VNODES).unwrap();
    let mut out = Vec::new();
    for b in [
        "manta",
        "manta_directory_counts",
        "manta_uploads",
        "manta_fastdelete_queue",
        "manta_delete_log",
    ] {
        for r in c
            .query(format!("SELECT _key, _vnode FROM {b}").as_str(), &[])
            .await
            .unwrap()
        {
            let key: String = r.get(0);
            let vnode = r.get::<_, Option<i64>>(1).map(|v| v as u32).or_else(|| {
                tritonctl::cleanup::RING_KEYED
                    .contains(&b)
                    .then(|| tritonctl::cleanup::verify::key_vnode(&space, b, &key))
                    .flatten()
            });
            out.push((b.to_string(), key, vnode));
        }
    }
    out
}

/// Runs the cleanup until it says done.
async fn to_the_end(target: &CleanupTarget, owner: &OwnerCheck, tuning: Tuning) {
    for _ in 0..100 {
        let p = cleanup_for(target, owner, &TuningSource::Fixed(tuning), T)
            .await
            .expect("cleanup");
        if p.done {
            assert_eq!(p.remaining_estimate, 0);
            return;
        }
    }
    panic!("{}: the cleanup never finished", target.shard);
}

/// `manta_directory_counts.entries` equals the `manta` rows of the
/// directory, for every count row left.
async fn directory_counts_consistent(conninfo: &str) {
    let c = client(conninfo).await;
    let bad = c
        .query(
            "SELECT d._key, d.entries::bigint, (SELECT count(*) FROM manta m WHERE m.dirname = d._key) \
             FROM manta_directory_counts d \
             WHERE d.entries <> (SELECT count(*) FROM manta m WHERE m.dirname = d._key)",
            &[],
        )
        .await
        .unwrap();
    let bad: Vec<(String, i64, i64)> = bad.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert!(bad.is_empty(), "{conninfo}: directory counts off: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_exactly_the_dropped_vnodes_rows_including_null_vnode_rows_by_key() {
    let test = "cleanup_deletes_exactly_the_dropped_vnodes_rows_including_null_vnode_rows_by_key";
    let Some(p) = pair(test, CleanupData::default()).await else {
        return;
    };
    let before_src = rows(&p.src).await;
    let nulls_before = before_src
        .iter()
        .filter(|(b, k, _)| b == "manta" && k.contains("/b"))
        .count();
    assert_eq!(
        nulls_before,
        VNODES as usize * 2,
        "NULL _vnode rows written"
    );

    // The owners' counts, taken before either side deletes anything.
    let src_owns = count_vnodes("1.moray", &p.src, &p.kept, VNODES)
        .await
        .unwrap();
    let dst_owns = count_vnodes("3.moray", &p.dst, &p.moved, VNODES)
        .await
        .unwrap();
    assert_eq!(dst_owns.len(), p.moved.len());
    let tuning = Tuning {
        batch_size: 7,
        ..Tuning::default()
    };
    to_the_end(&p.src_target(), &OwnerCheck::Counts(dst_owns), tuning).await;
    // The new shard's copy of the source's own vnodes: checked by counts
    // too here (nothing was written since the copy).
    to_the_end(&p.dst_target(), &OwnerCheck::Counts(src_owns), tuning).await;

    for (side, info, keep) in [("source", &p.src, &p.kept), ("new", &p.dst, &p.moved)] {
        let after = rows(info).await;
        let expect: Vec<_> = before_src
            .iter()
            .filter(|(_, _, v)| v.is_none_or(|v| keep.contains(&v)))
            .cloned()
            .collect();
        let mut a = after.clone();
        let mut e = expect.clone();
        a.sort();
        e.sort();
        assert_eq!(
            a, e,
            "{side}: exactly the rows of the vnodes it owns are left"
        );
        directory_counts_consistent(info).await;
    }
    let v = verify(&p.src_target()).await.unwrap();
    assert!(v.is_clean(), "{v:?}");
    // The unsharded queue rows are kept on both sides, and said so.
    assert_eq!(
        v.kept_unsharded,
        BTreeMap::from([("manta_fastdelete_queue".to_string(), 10)])
    );
    assert!(verify(&p.dst_target()).await.unwrap().is_clean());

    // No ring-keyed row readable from two shards.
    let src_keys: BTreeSet<_> = rows(&p.src)
        .await
        .into_iter()
        .filter(|(_, _, v)| v.is_some())
        .collect();
    let dst_keys: BTreeSet<_> = rows(&p.dst)
        .await
        .into_iter()
        .filter(|(_, _, v)| v.is_some())
        .collect();
    assert!(src_keys.is_disjoint(&dst_keys));
    assert_eq!(
        src_keys.len() + dst_keys.len(),
        before_src.iter().filter(|(_, _, v)| v.is_some()).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_refuses_to_delete_when_the_owner_side_is_missing_rows() {
    let test = "cleanup_refuses_to_delete_when_the_owner_side_is_missing_rows";
    let Some(p) = pair(test, CleanupData::default()).await else {
        return;
    };
    // The new shard lost one row of moved vnode 4.
    client(&p.dst)
        .await
        .batch_execute(
            "DELETE FROM manta WHERE _key = (SELECT _key FROM manta WHERE _vnode = 4 LIMIT 1)",
        )
        .await
        .unwrap();
    let dst_owns = count_vnodes("3.moray", &p.dst, &p.moved, VNODES)
        .await
        .unwrap();
    let before = rows(&p.src).await;
    let ours = count_vnodes("1.moray", &p.src, &BTreeSet::from([4]), VNODES)
        .await
        .unwrap()[&4];
    let err = cleanup_for(
        &p.src_target(),
        &OwnerCheck::Counts(dst_owns.clone()),
        &TuningSource::Fixed(Tuning::default()),
        T,
    )
    .await
    .expect_err("refused");
    match &err {
        CleanupError::OwnerMissingRows { vnodes, .. } => {
            assert_eq!(vnodes, &vec![(4, ours, ours - 1)]);
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(err.to_string().contains("vnode 4"), "{err}");
    assert_eq!(rows(&p.src).await, before, "nothing deleted");
    // A vnode the owner has no count for at all is refused too.
    let mut partial = dst_owns.clone();
    partial.remove(&8);
    partial.insert(4, ours);
    match cleanup_for(
        &p.src_target(),
        &OwnerCheck::Counts(partial),
        &TuningSource::Fixed(Tuning::default()),
        T,
    )
    .await
    {
        Err(CleanupError::OwnerMissingRows { vnodes, .. }) => {
            assert_eq!(vnodes.iter().map(|v| v.0).collect::<Vec<_>>(), vec![8]);
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(rows(&p.src).await, before, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_resumes_after_being_stopped_mid_batch() {
    let test = "cleanup_resumes_after_being_stopped_mid_batch";
    let data = CleanupData {
        rows_per_vnode: 200,
        ..CleanupData::default()
    };
    let Some(p) = pair(test, data).await else {
        return;
    };
    let dst_owns = count_vnodes("3.moray", &p.dst, &p.moved, VNODES)
        .await
        .unwrap();
    let total: u64 = dst_owns.values().sum();
    let dst_owns = OwnerCheck::Counts(dst_owns);
    let kept_before = count_vnodes("1.moray", &p.src, &p.kept, VNODES)
        .await
        .unwrap();
    let slow = Tuning {
        connections: 3,
        batch_size: 5,
        pause_ms: 5,
        max_read_p99_ms: None,
    };
    // Killed once rows are being deleted (the task dropped mid-batch).
    let target = p.src_target();
    let owner = dst_owns.clone();
    let run = tokio::spawn(async move {
        cleanup_for(
            &target,
            &owner,
            &TuningSource::Fixed(slow),
            Duration::from_secs(600),
        )
        .await
    });
    let left = |c: BTreeMap<u32, u64>| c.values().sum::<u64>();
    tokio::time::timeout(T, async {
        loop {
            let now = left(
                count_vnodes("1.moray", &p.src, &p.moved, VNODES)
                    .await
                    .unwrap(),
            );
            if now < total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("rows are being deleted");
    run.abort();
    let _ = run.await;
    let mid = left(
        count_vnodes("1.moray", &p.src, &p.moved, VNODES)
            .await
            .unwrap(),
    );
    assert!(
        mid < total && mid > 0,
        "stopped part way: {mid} of {total} left"
    );

    // A call with a budget too short to finish stops by itself and says
    // what is left; the next one goes on from there.
    let p1 = cleanup_for(
        &p.src_target(),
        &dst_owns,
        &TuningSource::Fixed(slow),
        Duration::from_millis(1),
    )
    .await
    .unwrap();
    assert!(!p1.done || p1.remaining_estimate == 0);
    to_the_end(&p.src_target(), &dst_owns, Tuning::default()).await;
    assert!(verify(&p.src_target()).await.unwrap().is_clean());
    assert_eq!(
        count_vnodes("1.moray", &p.src, &p.kept, VNODES)
            .await
            .unwrap(),
        kept_before,
        "the kept vnodes are untouched"
    );
    directory_counts_consistent(&p.src).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_tuning_changes_take_effect_while_running() {
    let test = "cleanup_tuning_changes_take_effect_while_running";
    let Some(p) = pair(test, CleanupData::default()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ens = MemEnsemble::open_shared(dir.path(), coord::SharedOptions::default()).unwrap();
    let coord: Arc<dyn Coordination> = ens.connect();
    let op = "1.moray-split-test";
    // Settings under which the cleanup would take hours: one row a minute.
    let crawl = Tuning {
        connections: 1,
        batch_size: 1,
        pause_ms: 60_000,
        max_read_p99_ms: None,
    };
    let source = TuningSource::Stored {
        coord: coord.clone(),
        path: tritonctl::layout::reshard_tuning_path(op),
        base: crawl,
    };
    let dst_owns = count_vnodes("3.moray", &p.dst, &p.moved, VNODES)
        .await
        .unwrap();
    let total: u64 = dst_owns.values().sum();
    let target = p.src_target();
    let owner = OwnerCheck::Counts(dst_owns);
    let run = tokio::spawn(async move {
        cleanup_for(&target, &owner, &source, Duration::from_secs(600)).await
    });
    // Running, and crawling: its first row is gone.
    tokio::time::timeout(T, async {
        loop {
            let now: u64 = count_vnodes("1.moray", &p.src, &p.moved, VNODES)
                .await
                .unwrap()
                .values()
                .sum();
            if now < total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cleanup runs");
    // The operator speeds it up through the CLI, while it runs.
    let data_dir = dir.path();
    for (name, value) in [
        ("batch_size", "5000"),
        ("connections", "3"),
        ("pause_ms", "0"),
    ] {
        let o = e2e::run(data_dir, &["reshard", "tune", op, name, value]);
        assert!(o.status.success(), "{}", e2e::stderr(&o));
    }
    let progress = run.await.unwrap().expect("cleanup");
    assert!(progress.done, "{progress:?}");
    assert_eq!(progress.effective.batch_size, 5000);
    assert_eq!(progress.effective.connections, 3);
    assert_eq!(progress.effective.pause_ms, 0);
    assert!(verify(&p.src_target()).await.unwrap().is_clean());
}
