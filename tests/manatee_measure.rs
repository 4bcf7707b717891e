//! Measurement, not a test of speed: one lab upgrade (three peers, rolling)
//! with a client writing throughout, reporting in the same run
//! - the total time from apply to Ready,
//! - the write-unavailable window the client saw,
//! - the critical path: the sum of the reprovision job times the simulator
//!   recorded (one peer at a time, so they cannot overlap), and the
//!   primary's own reprovision (the write outage the freeze cannot avoid).
//!
//! Run: `cargo test -p e2e --test manatee_measure -- --ignored --nocapture`

#[path = "harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use crds::Kind;
use harness::{Lab, Writer, drive, example, job_spans, lost_writes};
use sim::scenario::ScenarioOptions;
use tritonctl::reconcile::reconcile_manatee;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn measure_lab_upgrade_against_its_critical_path() {
    let hs = example("lab/headnodeset.yaml");
    let mv = example("lab/manatee.yaml");
    let opts = ScenarioOptions::default();
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
    println!("lab upgrade, dc time scale {}:", opts.dc_time_scale);
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
    assert_eq!(lost, 0);
    assert_eq!(spans.len(), 3);
    lab.shutdown().await;
}
