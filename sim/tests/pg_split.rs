//! The shard split primitives on real PostgreSQL (issue #15's done-when
//! test): three asyncs added to a Moray shard while mlive writes through
//! electric-moray, then detached into a new shard. No acknowledged row is
//! lost, the new shard's rows equal the source's at the detach, and rows
//! written to the source afterwards never reach it (streaming stopped).
//!
//! Needs the PostgreSQL server programs; without them the test says so and
//! passes, unless `TRITONCTL_REQUIRE_PG` is set (as `.ci/run` does).

use std::sync::Arc;
use std::time::Duration;

use coord::mem::MemEnsemble;
use serde_json::json;
use sim::manatee::{BootOptions, ManateeSim, ManateeSimConfig, PgBinaries, ZoneSpec};
use sim::manta::load::StopAfter;
use sim::manta::mlive::{self, MliveConfig};
use sim::manta::split;
use sim::manta::{
    ElectricMoray, EmClient, IndexShard, ManateePrimary, MorayTier, PgShardStore, RowStore,
};
use wire::fash::{KeyEncoding, Ring};

const T: Duration = Duration::from_secs(180);
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

fn store_of(sim: &ManateeSim, shard: &str) -> Arc<PgShardStore> {
    PgShardStore::new(
        &format!("tcp://{shard}:2020"),
        Arc::new(ManateePrimary {
            sim: sim.clone(),
            shard: shard.into(),
        }),
    )
}

/// Retry `f` until it answers (a primary coming up refuses for a while).
async fn until<F, Fut, R, E>(what: &str, f: F) -> R
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
    E: std::fmt::Display,
{
    tokio::time::timeout(T, async {
        loop {
            match f().await {
                Ok(r) => return r,
                Err(e) => {
                    eprintln!("{what}: not yet: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: timed out"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_split_three_asyncs_into_a_new_shard_loses_no_row_and_keeps_the_detach_point() {
    let test = "pg_split_three_asyncs_into_a_new_shard_loses_no_row_and_keeps_the_detach_point";
    let Some(bins) = binaries(test) else {
        return;
    };
    let (src, dst) = ("6.moray.test", "7.moray.test");
    let pg = sim::manatee::RealPostgres::new(bins).expect("real postgres root");
    let mut cfg = ManateeSimConfig::scaled(0.05);
    cfg.write_timeout = Duration::from_secs(60);
    let sim = ManateeSim::with_real_pg(Arc::new(MemEnsemble::new()), cfg, pg.clone());
    for n in 1..=2 {
        sim.add_zone(
            ZoneSpec::new(&format!("{src}-node{n}"), &format!("10.0.0.{n}")),
            BootOptions::new(src),
        )
        .await
        .expect("add zone");
    }
    let store = store_of(&sim, src);
    until("moray buckets", || store.setup_manta()).await;
    let pnode = format!("tcp://{src}:2020");
    let tier = MorayTier::new();
    tier.add_store(store.clone());
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    em.install_ring(Ring::create(64, &[pnode.as_str()]).unwrap());
    em.configure_index_shards(vec![IndexShard::new(src, false)]);
    let ring = em.ring().unwrap();

    // mlive writes through e-m while the three asyncs are added.
    let load = mlive::spawn(
        vec![EmClient::Local(em.clone())],
        &ring,
        MliveConfig {
            workers: 2,
            period: Duration::from_millis(5),
            stop: StopAfter::WritesPerWriter(150),
            account: ACCT.into(),
            ..MliveConfig::default()
        },
    );
    let mut added = Vec::new();
    for n in 3..=5 {
        let spec = ZoneSpec::new(&format!("{src}-node{n}"), &format!("10.0.0.{n}"));
        added.push(
            split::add_async(&sim, src, spec, T)
                .await
                .expect("async added"),
        );
    }
    let report = load.wait().await;
    eprintln!("{}", report.summary());
    assert_eq!(report.writes_acked, 300, "{:?}", report.errors);
    let check = report.verify(&tier, std::slice::from_ref(&em)).await;
    assert_eq!(check.lost(), 0, "{check:?}");

    // The detach point: writes have stopped (manta-reshard has made the
    // shard read-only by now); every added async has caught up.
    for z in &added {
        split::wait_caught_up(&sim, src, z, T).await.unwrap();
    }
    let at_detach = store.all_rows().await.unwrap();
    assert!(at_detach.iter().filter(|r| r.bucket == "manta").count() > 0);

    let picks = split::shutdown_new_peers(&sim, src, &added, T)
        .await
        .expect("shut down the new peers");
    // The source goes on and takes a row the new shard must never see.
    let late = format!("/{ACCT}/stor/late/after-detach");
    until("a write to the source after the detach", || {
        em.put_object(
            "manta",
            &late,
            json!({"dirname": format!("/{ACCT}/stor/late")}),
        )
    })
    .await;

    let reason = split::freeze_reason("7e57");
    let st = split::establish_new_shard(&sim, &picks, dst, &reason, T)
        .await
        .expect("the new shard is established");
    assert_eq!(st.primary.id, added[0].id());

    let new_store = store_of(&sim, dst);
    let got = until("the new shard's rows", || new_store.all_rows()).await;
    assert_eq!(
        got, at_detach,
        "the new shard holds the source's rows at the detach"
    );
    assert!(!got.iter().any(|r| r.key == late));
    // With `check.lost() == 0` on the source at the detach, every
    // acknowledged write is on the new shard too.
    sim.shutdown().await;
}
