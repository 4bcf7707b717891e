//! Measurement, not a test of speed: the lab upgrade (three peers) in both
//! orders, `rolling` (sdcadm's: freeze, the primary reprovisioned in place)
//! and `switchover` (the upgraded sync promoted, the old primary rebuilt),
//! each on a fresh lab shard from the same documents, with a client writing
//! throughout, reporting in the same run
//! - the total time from apply to Ready,
//! - the write-unavailable window the client saw,
//! - the critical path: the sum of the reprovision job times the simulator
//!   recorded (one peer at a time, so they cannot overlap), and the
//!   primary's own reprovision (the write outage the freeze cannot avoid).
//!
//! It ends with one line per order:
//! `manatee <order>: lost=<n> outage_ms=<longest write outage> total_ms=<apply to Ready> primary_reprovision_ms=<p>`
//!
//! Run: `cargo test -p e2e --test manatee_measure -- --ignored --nocapture`
//! (`TRITONCTL_MEASURE_REAL_PG=1` runs every manatee zone on a real
//! PostgreSQL 15 server instead of the model).

#[path = "harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use crds::manatee::Strategy;
use crds::{Document, Kind};
use harness::{Lab, Writer, drive, example, job_spans, lost_writes};
use sim::scenario::ScenarioOptions;
use tritonctl::reconcile::reconcile_manatee;

/// What one order's run measured.
struct Measured {
    lost: usize,
    outage: Duration,
    total: Duration,
    primary_job: Duration,
}

async fn measure(strategy: Strategy, order: &str) -> Measured {
    let hs = example("lab/headnodeset.yaml");
    let mut mv = example("lab/manatee.yaml");
    if let Document::ManateeVersion(m) = &mut mv {
        m.spec.strategy = strategy;
    }
    let mut opts = ScenarioOptions::default();
    if std::env::var_os("TRITONCTL_MEASURE_REAL_PG").is_some() {
        let bins = sim::manatee::PgBinaries::find().expect("PostgreSQL 15 server programs");
        opts.real_pg = Some(sim::manatee::RealPostgres::new(bins).expect("real postgres root"));
        // Real servers start and replicate in real time: slow manatee down.
        opts.manatee_time_scale = 0.05;
    }
    let lab = Lab::start(std::slice::from_ref(&hs), opts.clone(), None).await;
    let shard = lab.scenario.manatee.shard("sdc");
    let primary = shard.state().await.unwrap().unwrap().primary.zone_id;
    let writer = Writer::start(shard.clone(), "measure");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    lab.apply(&[hs, mv]).await;
    drive(
        Duration::from_secs(120),
        || reconcile_manatee(&lab.cx, "sdc"),
        || lab.ready(Kind::ManateeVersion, "sdc"),
    )
    .await;
    let total = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = writer.stop().await;
    let spans = job_spans(&lab.scenario.dc, "reprovision");
    let ms = |x: i128| Duration::from_millis(x as u64);
    let critical: Duration = spans.iter().map(|s| ms(s.end - s.start)).sum();
    let primary_job = spans
        .iter()
        .find(|s| s.vm == primary)
        .map(|s| ms(s.end - s.start))
        .unwrap();
    let lost = lost_writes(&shard, &log).await;
    println!(
        "lab upgrade ({order}), dc time scale {}, {}:",
        opts.dc_time_scale,
        if opts.real_pg.is_some() {
            "real PostgreSQL"
        } else {
            "modelled PostgreSQL"
        }
    );
    println!("  reprovisions recorded by the simulator: {}", spans.len());
    println!("  critical path (sum of reprovision jobs): {critical:?}");
    println!(
        "  total time apply -> Ready:               {total:?} ({:.2}x the critical path)",
        total.as_secs_f64() / critical.as_secs_f64()
    );
    println!("  primary reprovision job:                 {primary_job:?}");
    println!(
        "  write-unavailable window (longest):      {:?} ({:.2}x the primary's reprovision); total {:?} over {} outages",
        log.longest_outage(),
        log.longest_outage().as_secs_f64() / primary_job.as_secs_f64(),
        log.total_outage(),
        log.outages.len()
    );
    println!(
        "  writes acked {}, failed attempts {}, lost {lost}",
        log.acked.len(),
        log.failed
    );
    assert_eq!(spans.len(), 3);
    lab.shutdown().await;
    Measured {
        lost,
        outage: log.longest_outage(),
        total,
        primary_job,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn measure_lab_upgrade_against_its_critical_path() {
    let mut lines = Vec::new();
    for (strategy, order) in [
        (Strategy::Rolling, "rolling"),
        (Strategy::Switchover, "switchover"),
    ] {
        let m = measure(strategy, order).await;
        lines.push(format!(
            "manatee {order}: lost={} outage_ms={} total_ms={} primary_reprovision_ms={}",
            m.lost,
            m.outage.as_millis(),
            m.total.as_millis(),
            m.primary_job.as_millis()
        ));
        assert_eq!(m.lost, 0, "{order}: acknowledged writes lost");
    }
    for l in &lines {
        println!("{l}");
    }
}
