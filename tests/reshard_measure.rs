//! Measurement, not a test of speed (issue #16 "Measure it side by side"):
//! in one simulated Manta region (electric-morays over HTTP, every manatee
//! zone and every Moray shard on real PostgreSQL 15), with the ring-wide
//! load running, two index shards of the same size are each split once:
//! one in manta-reshard's order (the whole source and new shard read-only
//! from its phase 8 to 16, zone reconfiguration and moray provisioning
//! inside the window, halves by list position) and one in tritonctl's
//! (everything prepared first; only the moving vnodes `ro`). Drivers:
//! `sim::manta::measure_split` (tritonctl's is a `SplitOrder`, so the same
//! split can later run through the controller process). Each split's ghost
//! rows are then deleted with `tritonctl::cleanup` and the load's
//! acknowledged writes checked: none lost, none on two shards.
//!
//! Then, on real PostgreSQL, the cleanup engine itself: a shard of
//! `CLEANUP_ROWS` rows over 1024 vnodes, half of them dropped, with a
//! reader doing point reads throughout: read p99 without a cleanup (the
//! baseline), manta-reshard's defaults (10 rows a batch, 1 s pause, 10
//! connections) for a while, then tritonctl's settings (with the read
//! ceiling at 1.5x the baseline) to the end, on the same data.
//!
//! Time: the datacenter's durations (a zone provision 120 s, a reprovision
//! 15 min: `sim::dc::SimDurations`; moray provisioning is a provision; an
//! electric-moray restart [`EM_RESTART`]) are real-world durations spent
//! on the datacenter's clock at one scale, [`DC_TIME_SCALE`], so inside
//! each window they keep their real proportions (research/resharding.md
//! 3.6: manta-reshard's window holds the reprovisions and the moray
//! provisioning, "minutes to hours"). Manatee's sitters run on their own
//! scale (`manatee_time_scale`), the same for both orders. The drain
//! before the sentinel ([`Region::drain`]) is real time: it bounds the
//! simulator's own in-flight requests, not a datacenter duration.
//!
//! Definitions (per order):
//! - `blocked_key_seconds`: from a per-vnode write prober
//!   (`sim::manta::measure_probe`), one key directory per vnode of the
//!   ring (every vnode of every shard), each written every
//!   [`PROBE_PERIOD`] through the electric-morays in turn: the sum over
//!   vnodes of the time from a probe write refused as read-only to the
//!   vnode's next acknowledged probe (or the end of the run). Independent
//!   of how many mlive workers run and which keys they retry.
//! - `moved_outage_ms`: the longest such interval of one moved vnode.
//! - `unmoved_blocked_writes`: writes of unmoved vnodes refused because a
//!   vnode or shard was read-only (`ReadOnlyError`), mlive's and the
//!   prober's. Other failures (a 503 while an electric-moray restarts, a
//!   timeout) are not refusals: they are printed on stderr, not counted.
//! - `lost`, `duplicated`: mlive's acknowledged writes (its ring-wide load
//!   of writes, reads and deletes) missing, or readable from two shards,
//!   after the cleanup.
//! - `total_ms`: the order's driver from its first step to read-write.
//!
//! It ends with one line per order and one for the cleanup:
//! `reshard <order>: lost=<n> duplicated=<n> unmoved_blocked_writes=<n> moved_outage_ms=<longest> blocked_key_seconds=<x> total_ms=<t>`
//! `cleanup: rows_per_s=<r> read_p99_ms=<p> baseline_read_p99_ms=<b> manta_reshard_defaults_rows_per_s=<m>`
//!
//! Run: `cargo build -p tritonctl && cargo test -p e2e --test reshard_measure -- --ignored --nocapture`

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coord::mem::MemEnsemble;
use sim::manatee::{PgBinaries, RealPostgres};
use sim::manta::load::StopAfter;
use sim::manta::measure_probe::{self, ProbeConfig};
use sim::manta::measure_split::{
    AtDetach, MantaReshardOrder, Region, SplitJob, SplitOrder, TritonctlOrder,
    halves_by_list_position,
};
use sim::manta::mlive::{self, MliveConfig, OpMix};
use sim::manta::{ManateePrimary, PgShardStore};
use sim::scenario::{ScenarioOptions, SimScenario};
use tritonctl::cleanup::{
    CleanupTarget, OwnerCheck, Tuning, TuningSource, cleanup_for, count_vnodes, verify,
};
use wire::fash::Ring;

const T: Duration = Duration::from_secs(300);
const VNODES: u32 = 256;
const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
/// The datacenter's time scale: a 15 min reprovision takes 15 s.
const DC_TIME_SCALE: f64 = 1.0 / 60.0;
/// A real `svcadm restart electric-moray`, online and checked through its
/// `/status` (manta-reshard phase 8 polls it, retrying every 15 s:
/// research/resharding.md 3, table row 8).
const EM_RESTART: Duration = Duration::from_secs(15);
/// Time between two probe writes of one vnode.
const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// Rows of the cleanup measurement's shard.
const CLEANUP_ROWS: u32 = 400_000;

const TOPOLOGY: &str = r#"
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: measure}
spec:
  region: measure
  dnsDomain: measure.example.com
  shards:
    - name: 1.moray.measure.example.com
      roles: [index, marlin, storage]
      peers: [{server: cn01}, {server: cn02}]
    - name: 2.moray.measure.example.com
      roles: [index]
      peers: [{server: cn03}, {server: cn04}]
  ring:
    vnodes: 256
"#;

fn pnode(shard: &str) -> String {
    format!("tcp://{shard}:2020")
}

fn pg_store(sc: &SimScenario, shard: &str) -> Arc<PgShardStore> {
    PgShardStore::new(
        &pnode(shard),
        Arc::new(ManateePrimary {
            sim: sc.manatee.clone(),
            shard: shard.into(),
        }),
    )
}

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
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: timed out"))
}

async fn conninfo(sc: &SimScenario, shard: &str) -> String {
    until(&format!("{shard} primary"), || async {
        let id = sc
            .manatee
            .shard(shard)
            .primary_id()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no primary")?;
        sc.manatee
            .zone_by_peer_id(&id)
            .and_then(|z| z.pg_conninfo())
            .ok_or_else(|| "no conninfo".to_string())
    })
    .await
}

/// One order's line.
async fn run_order(
    sc: &SimScenario,
    region: &Region,
    order: &impl SplitOrder,
    source: &str,
    target: &str,
    index: &[String],
) -> String {
    let fleet = &region.plane.fleet;
    let ring: Ring = (*fleet.processes()[0].em().ring().expect("e-m has a ring")).clone();
    let moved = halves_by_list_position(&ring, source).unwrap();
    let server = sc
        .dc
        .vm(&sc.shards[source][0])
        .and_then(|v| v.server_uuid)
        .unwrap();
    let job = SplitJob {
        plan: format!("measure-{}", order.name()),
        source: source.into(),
        target: target.into(),
        moved: moved.clone(),
        server,
        index: index.to_vec(),
        ring: ring.clone(),
        at_detach: Some(Arc::new(AtDetach::default())),
    };
    // The new shard's rows are on real PostgreSQL once it exists.
    region.plane.tier.add_store(pg_store(sc, target));

    let load = mlive::spawn(
        region.plane.http_clients(Duration::from_secs(5)),
        &ring,
        MliveConfig {
            workers: 6,
            period: Duration::from_millis(10),
            stop: StopAfter::Elapsed(Duration::from_secs(3600)),
            mix: OpMix {
                write: 6,
                read: 3,
                delete: 1,
            },
            op_timeout: Duration::from_secs(5),
            ..MliveConfig::default()
        },
    );
    let probe_defaults = MliveConfig::default();
    let probe = measure_probe::spawn(
        region.plane.http_clients(Duration::from_secs(5)),
        &ring,
        ProbeConfig {
            period: PROBE_PERIOD,
            op_timeout: Duration::from_secs(5),
            bucket: probe_defaults.bucket,
            account: probe_defaults.account,
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // At the detach point, while the moved vnodes are read-only on both
    // sides: the new shard's counts, the owner check of the source's
    // cleanup (deletes acknowledged later make them drop).
    let hook = job.at_detach.clone().expect("set");
    let counter = {
        let sc_target = target.to_string();
        let moved = moved.clone();
        let manatee = sc.manatee.clone();
        tokio::spawn(async move {
            hook.detached.notified().await;
            let deadline = Instant::now() + T;
            let counts = loop {
                let info = match manatee.shard(&sc_target).primary_id().await {
                    Ok(Some(id)) => manatee.zone_by_peer_id(&id).and_then(|z| z.pg_conninfo()),
                    _ => None,
                };
                let got = match info {
                    Some(info) => count_vnodes(&sc_target, &info, &moved, VNODES)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err("no primary yet".to_string()),
                };
                match got {
                    Ok(c) => break c,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("counts at the detach: not yet: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("counts at the detach: {e}"),
                }
            };
            hook.resume.notify_one();
            counts
        })
    };
    let times = order.run(region, &job).await.expect("the split");
    let owner = counter.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop();
    probe.stop();
    let report = load.wait().await;
    let probes = probe.wait().await;
    eprintln!("{}: {times:?}; {}", order.name(), report.summary());

    // The ghost rows, each side, with the cleanup engine.
    let src_info = conninfo(sc, source).await;
    let dst_info = conninfo(sc, target).await;
    let src_vnodes: BTreeSet<u32> = ring
        .vnodes_of(&pnode(source))
        .unwrap()
        .into_iter()
        .collect();
    let kept: BTreeSet<u32> = src_vnodes.difference(&moved).copied().collect();
    let tuning = TuningSource::Fixed(Tuning::default());
    for (target, owner) in [
        (
            CleanupTarget {
                shard: source.into(),
                pg_url: src_info,
                drop_vnodes: moved.clone(),
                vnode_count: VNODES,
            },
            OwnerCheck::Counts(owner),
        ),
        (
            CleanupTarget {
                shard: target.into(),
                pg_url: dst_info,
                drop_vnodes: kept,
                vnode_count: VNODES,
            },
            OwnerCheck::CopyOfOwner,
        ),
    ] {
        let mut target = target;
        loop {
            let p = match cleanup_for(&target, &owner, &tuning, T).await {
                Ok(p) => p,
                // The owner lacks rows this side has: those vnodes are not
                // deleted (the check's whole point); the acknowledged writes
                // among them show as lost below.
                Err(tritonctl::cleanup::CleanupError::OwnerMissingRows { vnodes, .. }) => {
                    eprintln!(
                        "{}: the owner side lacks rows of {vnodes:?} (vnode, ours, owner): kept",
                        target.shard
                    );
                    for (v, _, _) in vnodes {
                        target.drop_vnodes.remove(&v);
                    }
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            if p.done {
                break;
            }
        }
        let v = verify(&target).await.unwrap();
        assert!(v.is_clean(), "{v:?}");
    }
    let check = report.verify(&region.plane.tier, &fleet.running()).await;
    let (_, u) = report.blocked_split(&moved);
    let (pm, pu) = probes.split(&moved);
    eprintln!(
        "{}: probes: moved {pm:?}; unmoved {pu:?}; mlive unmoved: {} refused (read-only), {} failed otherwise",
        order.name(),
        u.refused_writes,
        u.failed_writes
    );
    // Unmoved vnodes' failures that are not read-only refusals (a 503
    // while an electric-moray restarts, a timeout): shown, not counted.
    for o in report.failures() {
        if !moved.contains(&o.vnode) && !o.error.as_ref().is_some_and(|e| e.is_read_only()) {
            eprintln!("{}: unmoved vnode {} failure: {o:?}", order.name(), o.vnode);
        }
    }
    format!(
        "reshard {}: lost={} duplicated={} unmoved_blocked_writes={} moved_outage_ms={} blocked_key_seconds={:.3} total_ms={}",
        order.name(),
        check.lost(),
        check.on_two_shards(),
        u.refused_writes + pu.read_only_refusals,
        pm.longest.as_millis(),
        pm.blocked_key_seconds + pu.blocked_key_seconds,
        times.total.as_millis()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run by hand with --ignored --nocapture"]
async fn reshard_measure() {
    let bins = PgBinaries::find().expect("PostgreSQL 15 server programs");
    let pg = RealPostgres::new(bins.clone()).expect("real postgres root");
    let (docs, diags) = crds::parse_documents("measure.yaml", TOPOLOGY);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let opts = ScenarioOptions {
        real_pg: Some(pg.clone()),
        manatee_time_scale: 0.05,
        dc_time_scale: DC_TIME_SCALE,
        electric_morays: 3,
        ..ScenarioOptions::default()
    };
    let sc = SimScenario::start(
        &[docs[0].document.clone()],
        Arc::new(MemEnsemble::new()),
        opts,
    )
    .await
    .unwrap();
    let (s1, s2) = ("1.moray.measure.example.com", "2.moray.measure.example.com");
    let plane = sc.manta.clone().expect("a Manta scenario");
    for s in [s1, s2] {
        let store = pg_store(&sc, s);
        until(&format!("{s} moray buckets"), || store.setup_manta()).await;
        plane.tier.add_store(store);
    }
    let region = Region {
        dc: sc.dc.clone(),
        manatee: sc.manatee.clone(),
        plane: plane.clone(),
        owner: OWNER.into(),
        imgapi: Some(sc.servers.urls().imgapi.clone()),
        timeout: T,
        drain: Duration::from_secs(3),
        em_restart: EM_RESTART,
    };
    let index = vec![s1.to_string(), s2.to_string()];
    let a = run_order(
        &sc,
        &region,
        &MantaReshardOrder,
        s1,
        "4.moray.measure.example.com",
        &index,
    )
    .await;
    eprintln!("{a}");
    let index2 = vec![
        s1.to_string(),
        s2.to_string(),
        "4.moray.measure.example.com".to_string(),
    ];
    let b = run_order(
        &sc,
        &region,
        &TritonctlOrder,
        s2,
        "5.moray.measure.example.com",
        &index2,
    )
    .await;
    sc.shutdown().await;
    drop(pg);

    let c = cleanup_line(bins).await;
    println!("{a}");
    println!("{b}");
    println!("{c}");
}

// ---------------------------------------------------------------------------
// The cleanup engine on real PostgreSQL.

async fn client(conninfo: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Point reads of kept rows by key until stopped; their latencies.
fn reader(
    conninfo: String,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let c = client(&conninfo).await;
        let mut lat = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let k = &keys[i % keys.len()];
            i = i.wrapping_add(7919);
            let t0 = Instant::now();
            c.query_opt("SELECT _value FROM manta WHERE _key = $1", &[k])
                .await
                .expect("read");
            lat.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat
    })
}

fn p99_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    mlive::percentile(&v, 99.0)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(f64::NAN)
}

async fn read_p99_while(
    conninfo: &str,
    keys: &[String],
    f: impl std::future::Future<Output = ()>,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let r = reader(conninfo.to_string(), keys.to_vec(), stop.clone());
    f.await;
    stop.store(true, Ordering::SeqCst);
    p99_ms(r.await.unwrap())
}

async fn cleanup_line(bins: PgBinaries) -> String {
    use sim::manatee::{BootOptions, ManateeSim, ManateeSimConfig, ZoneSpec};
    use sim::manta::cleanup_data::{self, CleanupData};
    let pg = RealPostgres::new(bins).expect("real postgres root");
    let mut cfg = ManateeSimConfig::scaled(0.05);
    cfg.write_timeout = Duration::from_secs(60);
    let sim = ManateeSim::with_real_pg(Arc::new(MemEnsemble::new()), cfg, pg.clone());
    sim.add_zone(
        ZoneSpec::new("cleanup-node1", "10.0.0.1"),
        BootOptions::new("1.moray").one_node_write_mode(true),
    )
    .await
    .unwrap();
    let src = until("the cleanup shard", || async {
        let id = sim
            .shard("1.moray")
            .primary_id()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no primary")?;
        let info = sim
            .zone_by_peer_id(&id)
            .and_then(|z| z.pg_conninfo())
            .ok_or("no conninfo")?;
        let _connected = tokio_postgres::connect(&info, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(info)
    })
    .await;
    client(&src)
        .await
        .batch_execute("CREATE DATABASE newshard")
        .await
        .unwrap();
    let dst = src.replace("dbname=postgres", "dbname=newshard");
    let vnodes = 1024u32;
    let ring = Ring::create(vnodes, &["tcp://1.moray:2020"]).unwrap();
    let data = CleanupData {
        rows_per_vnode: CLEANUP_ROWS / vnodes,
        null_rows_per_vnode: 4,
        queue_rows: 1000,
        ..CleanupData::default()
    };
    for (p, info) in [("tcp://1.moray:2020", &src), ("tcp://3.moray:2020", &dst)] {
        let store = PgShardStore::new(p, Arc::new(sim::manta::FixedPrimary(info.clone())));
        store.setup_manta().await.unwrap();
        cleanup_data::fill(info, &ring, &data).await.unwrap();
    }
    let moved: BTreeSet<u32> = (0..vnodes).filter(|v| v % 2 == 0).collect();
    let kept: BTreeSet<u32> = (0..vnodes).filter(|v| v % 2 == 1).collect();
    // Keys the reader reads: rows of kept vnodes (they stay).
    let keys: Vec<String> = client(&src)
        .await
        .query(
            "SELECT _key FROM manta WHERE _vnode % 2 = 1 ORDER BY _key LIMIT 5000",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!keys.is_empty());
    let target = CleanupTarget {
        shard: "1.moray".into(),
        pg_url: src.clone(),
        drop_vnodes: moved.clone(),
        vnode_count: vnodes,
    };
    let owner = OwnerCheck::Counts(count_vnodes("3.moray", &dst, &moved, vnodes).await.unwrap());
    let baseline = read_p99_while(&src, &keys, tokio::time::sleep(Duration::from_secs(8))).await;

    // manta-reshard's defaults for a while.
    let mut defaults_rate = 0.0;
    let d_p99 = read_p99_while(&src, &keys, async {
        let p = cleanup_for(
            &target,
            &owner,
            &TuningSource::Fixed(Tuning::manta_reshard_defaults()),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        defaults_rate = p.rows_per_s;
    })
    .await;
    eprintln!("defaults: {defaults_rate:.1} rows/s, read p99 {d_p99:.2} ms");

    // tritonctl's settings to the end.
    let good = Tuning {
        max_read_p99_ms: Some((baseline * 1.5).max(1.0)),
        ..Tuning::default()
    };
    let mut deleted = 0u64;
    let mut secs = 0.0;
    let p99 = read_p99_while(&src, &keys, async {
        let t0 = Instant::now();
        loop {
            let p = cleanup_for(&target, &owner, &TuningSource::Fixed(good), T)
                .await
                .unwrap();
            deleted += p.deleted;
            eprintln!(
                "tritonctl settings: deleted {} ({:.0} rows/s), {} left, read p99 (probe) {:?}, throttled {}, effective {:?}",
                p.deleted, p.rows_per_s, p.remaining_estimate, p.read_p99_ms, p.throttled, p.effective
            );
            if p.done {
                break;
            }
        }
        secs = t0.elapsed().as_secs_f64();
    })
    .await;
    let v = verify(&target).await.unwrap();
    assert!(v.is_clean(), "{v:?}");
    let left = count_vnodes("1.moray", &src, &kept, vnodes).await.unwrap();
    assert_eq!(left.len(), kept.len(), "the kept vnodes keep their rows");
    sim.shutdown().await;
    format!(
        "cleanup: rows_per_s={:.0} read_p99_ms={p99:.2} baseline_read_p99_ms={baseline:.2} manta_reshard_defaults_rows_per_s={defaults_rate:.1}",
        deleted as f64 / secs
    )
}
