//! The ShardTopology resharding end to end through the controller's
//! reconcile (`reconcile::reshard`) and its real clients against a
//! simulated Manta region on real PostgreSQL: a document asks to split
//! half of one index shard's vnodes onto a new shard whose peers go on
//! servers that exist but hold nothing yet. Gated like the other real-PG
//! tests: without PostgreSQL it passes, unless `TRITONCTL_REQUIRE_PG` is
//! set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::Coordination;
use crds::{Document, Kind};
use sim::dc::seed::ServerSpec;
use sim::manatee::{PgBinaries, RealPostgres};
use sim::scenario::{ScenarioOptions, SimScenario};
use tritonctl::clients::{Endpoints, Triton, Unguarded};
use tritonctl::reconcile::reshard::ShardTopologyKind;
use tritonctl::reconcile::{context, run};
use tritonctl::store::Store;
use tritonctl::world::reshard::TritonReshard;
use tritonctl::world::reshard_addr::VmapiAddresses;

const BEFORE: &str = r#"
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: split}
spec:
  region: split
  dnsDomain: split.example.com
  shards:
    - name: 1.moray.split.example.com
      roles: [index]
      peers: [{server: cn01}, {server: cn02}, {server: cn03}]
    - name: 2.moray.split.example.com
      roles: [marlin, storage]
      peers: [{server: cn04}]
  ring:
    vnodes: 64
"#;

const SPLIT: &str = r#"
    - name: 3.moray.split.example.com
      roles: [index]
      morays: 1
      peers: [{server: cn05}, {server: cn06}, {server: cn07}]
  ring:
    vnodes: 64
    intents:
      - split: {from: 1.moray.split.example.com, to: 3.moray.split.example.com, fraction: 1/2}
"#;

fn doc(text: &str) -> Document {
    let (docs, diags) = crds::parse_documents("split.yaml", text);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    docs[0].document.clone()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_converges_through_the_reconcile_on_real_postgres() {
    let Some(bins) = binaries("a_split_converges_through_the_reconcile_on_real_postgres") else {
        return;
    };
    let pg = RealPostgres::new(bins).expect("real postgres root");
    let ensemble = Arc::new(coord::mem::MemEnsemble::new());
    let sc = SimScenario::start(
        &[doc(BEFORE)],
        ensemble.clone(),
        ScenarioOptions {
            real_pg: Some(pg),
            ..ScenarioOptions::default()
        },
    )
    .await
    .unwrap();
    for n in ["cn05", "cn06", "cn07"] {
        sc.dc.seed_server(ServerSpec::compute(n));
    }
    let urls = sc.servers.urls().clone();
    let triton = Triton::new(
        &Endpoints {
            sapi: urls.sapi,
            vmapi: urls.vmapi,
            cnapi: urls.cnapi,
            imgapi: urls.imgapi,
        },
        Arc::new(Unguarded),
    );
    let session: Arc<dyn Coordination> = ensemble.connect();
    let store = Store::new(session.clone());
    store.init().await.unwrap();
    let world = TritonReshard {
        triton: triton.clone(),
        coord: session,
        fence: None,
        addrs: Arc::new(VmapiAddresses { triton }),
        settle: Duration::from_secs(60),
    };
    let cx = context(store.clone(), world, None, Some(Duration::from_millis(50)));
    let after = BEFORE.replace("  ring:\n    vnodes: 64\n", SPLIT);
    store.apply(&[doc(&after)]).await.unwrap();

    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = run(&cx, &ShardTopologyKind, "split").await;
        let st = store.status(Kind::ShardTopology, "split").await.unwrap();
        let ready = st.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == crds::status::ConditionType::Ready
                    && c.status == crds::status::ConditionStatus::True
            })
        }) && st.as_ref().is_some_and(|s| {
            s.operation
                .as_ref()
                .is_some_and(|o| o.phase == crds::status::OperationPhase::Succeeded)
        });
        if ready {
            break;
        }
        let now = st
            .as_ref()
            .and_then(|s| s.operation.as_ref())
            .map(|o| {
                o.steps
                    .iter()
                    .map(|s| format!("{}={:?}", s.name, s.state))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        if now != last {
            eprintln!("{now}\n  last reconcile: {r:?}");
            last = now;
        }
        if Instant::now() > deadline {
            panic!(
                "not Ready: last reconcile {r:?}\nstatus: {}",
                serde_json::to_string_pretty(&st).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new shard exists with its first state, the source is not frozen
    // by us any more, and every electric-moray serves the final ring.
    let new = sc.manatee.shard("3.moray.split.example.com");
    let st = new.state().await.unwrap().expect("the new shard's state");
    assert!(st.generation >= 1);
    let src = sc.manatee.shard("1.moray.split.example.com");
    let sst = src.state().await.unwrap().unwrap();
    assert!(!sst.is_frozen(), "{sst:?}");
    // SAPI names the document's ring (moved vnodes on the new shard, none
    // read-only) and every electric-moray serves it.
    use reconcilers::reshard::ReshardObserve;
    let live = cx.world.live_image().await.unwrap();
    let want = match doc(&after) {
        Document::ShardTopology(d) => crds::ring::topology_ring(&d.spec).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(cx.world.ring_of(&live).await.unwrap(), want);
    for em in cx.world.electric_morays().await.unwrap() {
        assert_eq!(em.ring_image.as_deref(), Some(live.as_str()), "{em:?}");
    }
    assert_eq!(cx.world.region_lock().await.unwrap(), None);
    assert!(!cx.world.dump_lock("").await.unwrap());
    assert_eq!(cx.world.new_morays(&op_id(&store).await).await.unwrap(), 1);
    // Applying the same document again is a no-op: Ready, no new move.
    let before = op_id(&store).await;
    run(&cx, &ShardTopologyKind, "split").await.unwrap();
    assert_eq!(op_id(&store).await, before);
    assert!(sc.dc.sapi_would_crash().is_empty());
}

async fn op_id(store: &Store) -> String {
    store
        .status(Kind::ShardTopology, "split")
        .await
        .unwrap()
        .and_then(|s| s.operation)
        .map(|o| o.id)
        .unwrap_or_default()
}
