//! Four Manta shards (examples/us-east) upgraded by one ManateeVersion with
//! parallelism 2, a canary and an approval before each primary, inside its
//! maintenance window, with a client writing to every shard throughout.
//! The rules are checked against the simulator's own record of
//! reprovision jobs, not against what the controller reports.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::Kind;
use harness::{JobSpan, Lab, Writer, drive, example, job_spans, lost_writes, parse};
use reconcilers::clock::ShiftedClock;
use sim::scenario::{ScenarioOptions, images};
use tritonctl::reconcile::{approve, reconcile_manatee};

fn now_ms() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_two_at_a_time_one_peer_each_and_no_primary_before_approval() {
    let topo = example("us-east/shardtopology.yaml");
    // The example keeps the shards on the current image; ask for the next one.
    let text = std::fs::read_to_string(e2e::repo().join("examples/us-east/manatee.yaml"))
        .unwrap()
        .replace(images::MANATEE_V2_CURRENT, images::MANATEE_V2_NEXT)
        .replace("20240327T001755Z", "20251104T182201Z");
    let mv = parse("us-east manatee", &text);
    // Its window is Tue-Thu 14:00 for 4h: run on a clock inside it
    // (2026-01-06 is a Tuesday).
    let clock = Arc::new(ShiftedClock::starting_at(time::macros::datetime!(
        2026-01-06 14:05 UTC
    )));
    let lab = Lab::start(
        std::slice::from_ref(&topo),
        ScenarioOptions::default(),
        Some(clock),
    )
    .await;
    let shard_of: HashMap<String, String> = lab
        .scenario
        .shards
        .iter()
        .flat_map(|(s, zs)| zs.iter().map(move |z| (z.clone(), s.clone())))
        .collect();
    let names: Vec<String> = (1..=4)
        .map(|n| format!("{n}.moray.us-east.joyent.us"))
        .collect();
    let writers: Vec<(String, Writer)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                Writer::start(lab.scenario.manatee.shard(n), &format!("w{n}")),
            )
        })
        .collect();
    lab.apply(&[topo, mv]).await;

    // The operator: approves each shard's primary step a while after it
    // starts waiting, noting when, and which zone was primary then.
    let approvals: Arc<Mutex<HashMap<String, (i128, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let approver = {
        let (coord, approvals, stop) = (lab.session.clone(), approvals.clone(), stop.clone());
        let manatee = lab.scenario.manatee.clone();
        let dc = lab.scenario.dc.clone();
        tokio::spawn(async move {
            let mut seen_waiting: HashMap<String, std::time::Instant> = HashMap::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let journals = tritonctl::reconcile::load_journals(
                    &coord,
                    Kind::ManateeVersion,
                    "manta-us-east",
                )
                .await
                .unwrap_or_default();
                let mut due = false;
                for (shard, op, _) in &journals {
                    let waiting = !op.is_finished()
                        && op.current().is_some_and(|i| {
                            op.status.steps[i].name == "approve-primary"
                                && op.status.steps[i].state == crds::status::StepState::Waiting
                        });
                    if waiting {
                        let t = seen_waiting
                            .entry(shard.clone())
                            .or_insert_with(std::time::Instant::now);
                        // Long enough for a controller that ignored the gate to act.
                        due |= t.elapsed() > Duration::from_millis(300);
                    }
                }
                if due {
                    let at = now_ms();
                    let mut primaries = HashMap::new();
                    for (shard, _, _) in &journals {
                        if let Ok(Some(st)) = manatee.shard(shard).state().await {
                            primaries.insert(shard.clone(), st.primary.zone_id.clone());
                        }
                    }
                    for line in approve(&coord, Kind::ManateeVersion, "manta-us-east")
                        .await
                        .unwrap()
                    {
                        let shard = line.split(':').next().unwrap().to_string();
                        let primary = primaries[&shard].clone();
                        // Nothing touched this primary before the approval.
                        assert!(
                            !job_spans(&dc, "reprovision")
                                .iter()
                                .any(|s| s.vm == primary),
                            "{shard}: primary {primary} reprovisioned before approval"
                        );
                        approvals
                            .lock()
                            .unwrap()
                            .entry(shard.clone())
                            .or_insert((at, primary));
                        seen_waiting.remove(&shard);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    drive(
        Duration::from_secs(240),
        || reconcile_manatee(&lab.cx, "manta-us-east"),
        || lab.ready(Kind::ManateeVersion, "manta-us-east"),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    approver.await.expect("the approver's checks hold");

    // The simulator's record.
    let spans = job_spans(&lab.scenario.dc, "reprovision");
    let mut by_shard: HashMap<String, Vec<JobSpan>> = HashMap::new();
    for s in &spans {
        by_shard
            .entry(shard_of[&s.vm].clone())
            .or_default()
            .push(s.clone());
    }
    let approvals = approvals.lock().unwrap().clone();
    for n in &names {
        let jobs = &by_shard[n];
        assert_eq!(jobs.len(), 3, "{n}: one reprovision per peer: {jobs:?}");
        // Never two peers of one shard disrupted at once.
        for w in jobs.windows(2) {
            assert!(
                w[1].start >= w[0].end,
                "{n}: {} started before {} finished",
                w[1].vm,
                w[0].vm
            );
        }
        // The primary went last, and only after its approval.
        let (approved_at, primary) = approvals
            .get(n)
            .unwrap_or_else(|| panic!("{n} was never approved"));
        let last = jobs.last().unwrap();
        assert_eq!(&last.vm, primary, "{n}: the primary is the last step");
        assert!(last.start >= *approved_at, "{n}: primary before approval");
        for z in &lab.scenario.shards[n] {
            assert_eq!(
                lab.scenario.dc.vm(z).unwrap().image_uuid.as_deref(),
                Some(images::MANATEE_V2_NEXT)
            );
        }
    }
    // Never more than two shards in flight; the canary (shard 2) alone first.
    let flight: Vec<(String, i128, i128)> = names
        .iter()
        .map(|n| {
            let j = &by_shard[n];
            (n.clone(), j.first().unwrap().start, j.last().unwrap().end)
        })
        .collect();
    for (n, start, _) in &flight {
        let overlapping = flight
            .iter()
            .filter(|(_, s, e)| s <= start && start < e)
            .count();
        assert!(
            overlapping <= 2,
            "{n}: {overlapping} shards in flight at once"
        );
    }
    let canary = flight.iter().find(|f| f.0.starts_with("2.")).unwrap();
    for f in flight.iter().filter(|f| !f.0.starts_with("2.")) {
        assert!(
            f.1 >= canary.2,
            "{} started before the canary finished",
            f.0
        );
    }
    let mut peak = 0;
    for (_, start, _) in &flight {
        peak = peak.max(
            flight
                .iter()
                .filter(|(_, s, e)| s <= start && start < e)
                .count(),
        );
    }
    assert_eq!(peak, 2, "parallelism 2 was used");

    for (n, w) in writers {
        let log = w.stop().await;
        let shard = lab.scenario.manatee.shard(&n);
        assert_eq!(
            lost_writes(&shard, &log).await,
            0,
            "{n}: acknowledged writes lost"
        );
        assert!(log.acked.len() > 10, "{n}: {} acked", log.acked.len());
    }
    lab.shutdown().await;
}
