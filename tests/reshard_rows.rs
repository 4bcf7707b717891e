//! The resharding's row cleanup and per-vnode counts (`world::reshard_rows`,
//! the engine the `cleanup` and `verify-counts` steps call until H3's is
//! merged) on a real PostgreSQL shard primary holding Moray's tables as the
//! simulator's Moray writes them: the dropped vnodes' rows go, in batches,
//! across budgets; NULL-`_vnode` rows (written through `batch`) are placed
//! by key; every other row stays.
//!
//! Needs the PostgreSQL server programs; without them the test says so and
//! passes, unless `TRITONCTL_REQUIRE_PG` is set (as `.ci/run` does).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord::mem::MemEnsemble;
use reconcilers::error::WorldError;
use reconcilers::reshard::{CleanupTarget, ShardRows};
use serde_json::json;
use sim::manatee::{BootOptions, ManateeSim, ManateeSimConfig, PgBinaries, RealPostgres, ZoneSpec};
use sim::manta::{
    BatchOp, ElectricMoray, IndexShard, ManateePrimary, MorayTier, PgShardStore, PrimaryLocator,
};
use tritonctl::world::reshard_rows::{PgRows, PrimaryUrl, Tuning};
use wire::fash::{HashSpace, KeyEncoding, Ring, transform_key};

const T: Duration = Duration::from_secs(120);
const ACCT: &str = "a3829ca2-0966-60ce-9dc3-e4e9060f0950";
const SHARD: &str = "1.moray.test";
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

struct Fixed(String);

#[async_trait]
impl PrimaryUrl for Fixed {
    async fn primary_url(&self, _shard: &str) -> Result<String, WorldError> {
        Ok(self.0.clone())
    }
}

fn vnode_of(key: &str) -> u32 {
    HashSpace::new(VNODES)
        .unwrap()
        .vnode_of(transform_key("manta", key), KeyEncoding::Utf8)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_the_dropped_vnodes_rows_and_places_null_vnode_rows_by_key() {
    let Some(bins) = binaries("cleanup_deletes_only_the_dropped_vnodes_rows") else {
        return;
    };
    let pg = RealPostgres::new(bins).expect("real postgres root");
    let mut cfg = ManateeSimConfig::scaled(0.05);
    cfg.write_timeout = Duration::from_secs(60);
    let sim = ManateeSim::with_real_pg(Arc::new(MemEnsemble::new()), cfg, pg.clone());
    sim.add_zone(
        ZoneSpec::new(&format!("{SHARD}-node1"), "10.0.0.1"),
        BootOptions::new(SHARD).one_node_write_mode(true),
    )
    .await
    .expect("add zone");
    let pnode = format!("tcp://{SHARD}:2020");
    let locator = Arc::new(ManateePrimary {
        sim: sim.clone(),
        shard: SHARD.into(),
    });
    let store = PgShardStore::new(&pnode, locator.clone());
    tokio::time::timeout(T, async {
        while let Err(e) = store.setup_manta().await {
            eprintln!("moray buckets not yet: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("moray buckets");
    let tier = MorayTier::new();
    tier.add_store(store.clone());
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    em.install_ring(Ring::create(VNODES, &[pnode.as_str()]).unwrap());
    em.configure_index_shards(vec![IndexShard::new(SHARD, false)]);

    let keys: Vec<String> = (0..120).map(|i| format!("/{ACCT}/stor/d{i}/o")).collect();
    for k in &keys[..100] {
        em.put_object("manta", k, json!({"k": k}))
            .await
            .expect("put");
    }
    // Batch writes leave `_vnode` NULL.
    let batch: Vec<BatchOp> = keys[100..]
        .iter()
        .map(|k| BatchOp::Put {
            bucket: "manta".into(),
            key: k.clone(),
            value: json!({"k": k}),
        })
        .collect();
    for op in batch {
        em.batch(&[op]).await.expect("batch");
    }
    assert!(
        !store.null_vnode_rows().await.unwrap().is_empty(),
        "batch rows have NULL _vnode"
    );

    let drop: BTreeSet<u32> = (VNODES / 2..VNODES).collect();
    let target = CleanupTarget {
        shard: SHARD.into(),
        drop_vnodes: drop.clone(),
        vnode_count: VNODES,
    };
    let url = locator.primary(&pnode).await.expect("primary conninfo");
    let rows = PgRows {
        primaries: Fixed(url),
        tuning: Tuning {
            batch_size: 7,
            pause: Duration::from_millis(1),
        },
        encoding: KeyEncoding::Utf8,
    };
    let before = rows.verify(&target).await.unwrap();
    assert!(!before.left.is_empty(), "rows in the dropped vnodes before");
    let mut slices = 0;
    loop {
        let p = rows
            .cleanup(&target, Duration::from_millis(20))
            .await
            .unwrap();
        slices += 1;
        if p.done {
            break;
        }
        assert!(slices < 1000, "cleanup makes progress: {p:?}");
    }
    let after = rows.verify(&target).await.unwrap();
    assert!(after.left.is_empty(), "{:?}", after.left);
    for k in &keys {
        let there = em.get_object("manta", k).await.is_ok();
        assert_eq!(
            there,
            !drop.contains(&vnode_of(k)),
            "{k} (vnode {})",
            vnode_of(k)
        );
    }
    sim.shutdown().await;
}
