//! Moray shards on real PostgreSQL: each shard's primary is a real
//! PostgreSQL 15 run by the manatee simulation (`ManateeSim::with_real_pg`),
//! holding Moray's tables as Moray creates them; electric-moray writes
//! through them and the ring-wide load generator checks nothing is lost.
//!
//! Needs the PostgreSQL server programs; without them each test says so and
//! passes, unless `TRITONCTL_REQUIRE_PG` is set (as `.ci/run` does).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coord::mem::MemEnsemble;
use serde_json::{Value, json};
use sim::manatee::{
    BootOptions, ManateeSim, ManateeSimConfig, PeerRole, PgBinaries, RealPostgres, ZoneSpec,
};
use sim::manta::load::StopAfter;
use sim::manta::mlive::{self, MliveConfig};
use sim::manta::rows::crc32;
use sim::manta::{
    BatchOp, BucketDdl, ElectricMoray, EmClient, FixedPrimary, IndexShard, ManateePrimary,
    MorayTier, PgShardStore, RowStore,
};
use wire::fash::{KeyEncoding, Ring};

const T: Duration = Duration::from_secs(120);
const ACCT: &str = "a3829ca2-0966-60ce-9dc3-e4e9060f0950";

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

fn config() -> ManateeSimConfig {
    let mut cfg = ManateeSimConfig::scaled(0.05);
    cfg.write_timeout = Duration::from_secs(60);
    cfg
}

/// A manatee shard on real PostgreSQL with `peers` zones, writable.
async fn shard(bins: PgBinaries, name: &str, peers: u8) -> (ManateeSim, Arc<RealPostgres>) {
    let pg = RealPostgres::new(bins).expect("real postgres root");
    let sim = ManateeSim::with_real_pg(Arc::new(MemEnsemble::new()), config(), pg.clone());
    for n in 1..=peers {
        let boot = BootOptions::new(name).one_node_write_mode(peers == 1);
        sim.add_zone(
            ZoneSpec::new(&format!("{name}-node{n}"), &format!("10.0.0.{n}")),
            boot,
        )
        .await
        .expect("add zone");
    }
    let s = sim.shard(name);
    tokio::time::timeout(T, async {
        loop {
            if s.write(b"probe").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the shard takes writes");
    (sim, pg)
}

/// One-pnode ring over one real-PG shard, behind an electric-moray.
async fn moray(
    sim: &ManateeSim,
    shard: &str,
) -> (Arc<PgShardStore>, Arc<MorayTier>, Arc<ElectricMoray>) {
    let pnode = format!("tcp://{shard}:2020");
    let store = PgShardStore::new(
        &pnode,
        Arc::new(ManateePrimary {
            sim: sim.clone(),
            shard: shard.into(),
        }),
    );
    // Until the primary the cluster state names takes connections.
    tokio::time::timeout(T, async {
        loop {
            match store.setup_manta().await {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("moray buckets not yet: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await
    .expect("moray buckets");
    let tier = MorayTier::new();
    tier.add_store(store.clone());
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    em.install_ring(Ring::create(64, &[pnode.as_str()]).unwrap());
    em.configure_index_shards(vec![IndexShard::new(shard, false)]);
    (store, tier, em)
}

fn text(rows: &[tokio_postgres::Row], col: usize) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(col)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_moray_tables_and_rows_are_as_moray_writes_them() {
    let Some(bins) = binaries("pg_moray_tables_and_rows_are_as_moray_writes_them") else {
        return;
    };
    let (sim, _pg) = shard(bins, "1.moray.test", 1).await;
    let (store, _tier, em) = moray(&sim, "1.moray.test").await;

    // The tables Moray and libmanta create.
    let buckets = text(
        &store
            .query("SELECT name FROM buckets_config ORDER BY name")
            .await
            .unwrap(),
        0,
    );
    assert_eq!(
        buckets,
        [
            "manta",
            "manta_delete_log",
            "manta_directory_counts",
            "manta_fastdelete_queue",
            "manta_uploads"
        ]
    );
    let cols = text(
        &store
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = 'manta' ORDER BY ordinal_position",
            )
            .await
            .unwrap(),
        0,
    );
    assert_eq!(
        cols,
        [
            "_id",
            "_txn_snap",
            "_key",
            "_value",
            "_etag",
            "_mtime",
            "_vnode",
            "dirname",
            "name",
            "owner",
            "objectid",
            "type"
        ]
    );
    let idx: BTreeSet<String> = text(
        &store
            .query("SELECT indexname::text FROM pg_indexes WHERE tablename = 'manta'")
            .await
            .unwrap(),
        0,
    )
    .into_iter()
    .collect();
    for i in [
        "manta__vnode_idx",
        "manta__id_idx",
        "manta__etag_idx",
        "manta__mtime_idx",
        "manta_dirname_idx",
        "manta_pkey",
    ] {
        assert!(idx.contains(i), "{i} missing from {idx:?}");
    }

    // putObject through e-m: `_vnode` stamped, `_value` as e-m sent it.
    let dir = format!("/{ACCT}/stor/photos");
    let k1 = format!("{dir}/a.jpg");
    let v1 = json!({"dirname": dir, "name": "a.jpg", "owner": ACCT, "type": "object"});
    let put = em.put_object("manta", &k1, v1.clone()).await.unwrap();
    let rows = store
        .query(&format!(
            "SELECT _value, _etag, _vnode, dirname FROM manta WHERE _key = '{k1}'"
        ))
        .await
        .unwrap();
    let stored: String = rows[0].get(0);
    let etag: String = rows[0].get(1);
    assert_eq!(
        rows[0].get::<_, Option<i64>>(2),
        Some(i64::from(put.node.vnode))
    );
    assert_eq!(rows[0].get::<_, String>(3), dir);
    let sv: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(sv["vnode"], json!(put.node.vnode));
    assert_eq!(etag, format!("{:08X}", crc32(stored.as_bytes())));
    assert_eq!(put.etag, etag);
    // Read back through e-m: `vnode` stripped.
    assert_eq!(em.get_object("manta", &k1).await.unwrap().value, v1);

    // The directory count follows inserts and deletes.
    assert_eq!(store.directory_count(&dir).await.unwrap(), Some(1));
    let k2 = format!("{dir}/b.jpg");
    em.put_object("manta", &k2, json!({"dirname": dir, "name": "b.jpg"}))
        .await
        .unwrap();
    assert_eq!(store.directory_count(&dir).await.unwrap(), Some(2));
    // An update of an existing key keeps `_id` and the count.
    let id = store.get("manta", &k2).await.unwrap().id;
    em.put_object(
        "manta",
        &k2,
        json!({"dirname": dir, "name": "b.jpg", "v": 2}),
    )
    .await
    .unwrap();
    assert_eq!(store.get("manta", &k2).await.unwrap().id, id);
    assert_eq!(store.directory_count(&dir).await.unwrap(), Some(2));
    em.del_object("manta", &k2).await.unwrap();
    assert_eq!(store.directory_count(&dir).await.unwrap(), Some(1));

    // A batch (an MPU commit) leaves `_vnode` NULL, and so does the count
    // row its trigger creates (research 3.11-2).
    let mpu = format!("/{ACCT}/stor/uploads");
    em.batch(&[
        BatchOp::Put {
            bucket: "manta".into(),
            key: format!("{mpu}/big.iso"),
            value: json!({"dirname": mpu, "name": "big.iso"}),
        },
        BatchOp::Put {
            bucket: "manta".into(),
            key: format!("{mpu}/big2.iso"),
            value: json!({"dirname": mpu, "name": "big2.iso"}),
        },
    ])
    .await
    .unwrap();
    let nulls = store.null_vnode_rows().await.unwrap();
    assert_eq!(nulls.get("manta"), Some(&2));
    assert_eq!(nulls.get("manta_directory_counts"), Some(&1));
    assert_eq!(
        store
            .get("manta", &format!("{mpu}/big.iso"))
            .await
            .unwrap()
            .vnode,
        None
    );

    // Bucket DDL through e-m creates a Moray table on the shard.
    em.bucket_ddl(BucketDdl::Create {
        name: "mybucket",
        config: &json!({"index": {"size": {"type": "number"}}}),
    })
    .await
    .unwrap();
    em.put_object("mybucket", "k", json!({"size": 42}))
        .await
        .unwrap();
    let r = store
        .query("SELECT size::text FROM mybucket WHERE _key = 'k'")
        .await
        .unwrap();
    assert_eq!(r[0].get::<_, String>(0), "42");
    let err = em
        .bucket_ddl(BucketDdl::Create {
            name: "mybucket",
            config: &json!({}),
        })
        .await
        .unwrap_err();
    assert_eq!(err.name(), "BucketConflictError");
    assert_eq!(
        em.get_object("nosuchbucket", "k").await.unwrap_err().name(),
        "BucketNotFoundError"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_mlive_over_real_postgres_loses_no_acknowledged_write() {
    let Some(bins) = binaries("pg_mlive_over_real_postgres_loses_no_acknowledged_write") else {
        return;
    };
    let (sim, _pg) = shard(bins, "2.moray.test", 1).await;
    let (_store, tier, em) = moray(&sim, "2.moray.test").await;
    let ring = em.ring().unwrap();
    let cfg = MliveConfig {
        workers: 2,
        period: Duration::from_millis(2),
        stop: StopAfter::WritesPerWriter(60),
        account: ACCT.into(),
        ..MliveConfig::default()
    };
    let report = mlive::run(vec![EmClient::Local(em.clone())], &ring, cfg).await;
    eprintln!("{}", report.summary());
    assert_eq!(report.writes_acked, 120, "{:?}", report.errors);
    assert!(report.reads_ok > 0 && report.deletes_acked > 0);
    assert_eq!(report.reads_mismatched, 0);
    let check = report.verify(&tier, &[em]).await;
    assert_eq!(check.lost(), 0, "{check:?}");
    assert!(check.is_clean(), "{check:?}");
    sim.shutdown().await;
}

/// A peer added to a real-PG shard as an async holds every committed
/// Moray row: restored by `pg_basebackup` from the primary (a physical
/// copy), then streaming what is committed after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_an_added_async_holds_every_committed_moray_row() {
    let Some(bins) = binaries("pg_an_added_async_holds_every_committed_moray_row") else {
        return;
    };
    let name = "3.moray.test";
    let (sim, _pg) = shard(bins, name, 3).await;
    let (store, _tier, em) = moray(&sim, name).await;
    let put = |i: usize| {
        let em = em.clone();
        async move {
            let dir = format!("/{ACCT}/stor/d{}", i % 7);
            em.put_object(
                "manta",
                &format!("{dir}/o{i}"),
                json!({"dirname": dir, "i": i}),
            )
            .await
            .unwrap();
        }
    };
    for i in 0..40 {
        put(i).await;
    }
    // A fourth peer joins the shard: an async at the end of the chain.
    let added = sim
        .add_zone(
            ZoneSpec::new(&format!("{name}-node4"), "10.0.0.4"),
            BootOptions::new(name),
        )
        .await
        .expect("add zone");
    tokio::time::timeout(T, async {
        while added.role() != PeerRole::Async || !added.pg_online() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the added peer becomes an async");
    for i in 40..50 {
        put(i).await;
    }
    let primary_rows = store.all_rows().await.unwrap();
    // Read the added async's own server (a hot standby) directly.
    let standby = PgShardStore::new(
        "standby",
        Arc::new(FixedPrimary(added.pg_conninfo().expect("real pg"))),
    );
    let rows = tokio::time::timeout(T, async {
        loop {
            if let Ok(rows) = standby.all_rows().await
                && rows == primary_rows
            {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the async catches up with every committed row");
    assert_eq!(rows.iter().filter(|r| r.bucket == "manta").count(), 50);
    // Directory counts came along too.
    assert!(rows.iter().any(|r| r.bucket == "manta_directory_counts"));
    sim.shutdown().await;
}

/// A vnode moved between two real-PG shards with `moves`: the rows by
/// `_vnode` and, placed by key, the batch rows and count rows whose
/// `_vnode` is NULL; the copy is identical (`_id`, `_etag`, `_vnode`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_vnode_move_between_real_shards_takes_null_vnode_rows_by_key() {
    use sim::manta::moves::{NullVnodes, copy_rows, delete_moved_rows};
    let Some(bins) = binaries("pg_a_vnode_move_between_real_shards_takes_null_vnode_rows_by_key")
    else {
        return;
    };
    let (sim_b, _pg_b) = shard(bins.clone(), "4.moray.test", 1).await;
    let (sim_c, _pg_c) = shard(bins, "5.moray.test", 1).await;
    let (b, _tier, em) = moray(&sim_b, "4.moray.test").await;
    let (c, _tier_c, _em_c) = moray(&sim_c, "5.moray.test").await;
    let ring = em.ring().unwrap();
    let dir = format!("/{ACCT}/stor/uploads");
    let vnode = em.locate("manta", &format!("{dir}/x")).unwrap().vnode;
    em.put_object("manta", &format!("{dir}/a"), json!({"dirname": dir}))
        .await
        .unwrap();
    // A batch into a directory of its own: its count row has a NULL `_vnode`.
    let mpu_dir = format!("/{ACCT}/stor/mpu");
    let mpu_vnode = em.locate("manta", &format!("{mpu_dir}/x")).unwrap().vnode;
    em.batch(&[BatchOp::Put {
        bucket: "manta".into(),
        key: format!("{mpu_dir}/big.iso"),
        value: json!({"dirname": mpu_dir}),
    }])
    .await
    .unwrap();
    let set: BTreeSet<u32> = [vnode, mpu_vnode].into();
    let before = b.all_rows().await.unwrap();
    let report = copy_rows(b.as_ref(), c.as_ref(), &set, NullVnodes::ByKey(&ring))
        .await
        .unwrap();
    // manta: 2 rows; counts: 2 rows (one with a NULL `_vnode`).
    assert_eq!(report.selected, 4, "{report:?}");
    assert_eq!(report.null_vnode_rows, 0);
    assert_eq!(c.all_rows().await.unwrap(), before);
    // Rerun: nothing new.
    let again = copy_rows(b.as_ref(), c.as_ref(), &set, NullVnodes::ByKey(&ring))
        .await
        .unwrap();
    assert_eq!(again.copied, 0);
    delete_moved_rows(b.as_ref(), &set, NullVnodes::ByKey(&ring))
        .await
        .unwrap();
    assert!(b.all_rows().await.unwrap().is_empty());
    assert_eq!(c.directory_count(&mpu_dir).await.unwrap(), Some(1));
    sim_b.shutdown().await;
    sim_c.shutdown().await;
}
