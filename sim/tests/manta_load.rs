//! The load generator: windows of write unavailability are measured, runs
//! always end by themselves, and acknowledged writes are verified.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sim::manta::load::{self, LoadConfig, StopAfter};
use sim::manta::{ElectricMoray, MorayTier, ShardFault, ShardFaults};
use wire::fash::{KeyEncoding, Ring};

const A: &str = "tcp://1.moray.coal.joyent.us:2020";
const B: &str = "tcp://2.moray.coal.joyent.us:2020";

fn region(faults: Arc<ShardFaults>, ems: usize) -> (Arc<MorayTier>, Vec<Arc<ElectricMoray>>) {
    let tier = MorayTier::with_backend(faults);
    tier.add_shard(A);
    tier.add_shard(B);
    let ring = Ring::create(256, &[A, B]).unwrap().to_json();
    let ems = (0..ems)
        .map(|i| {
            let em = ElectricMoray::new(&format!("em-{i}"), tier.clone(), KeyEncoding::Utf8);
            em.load_ring(&ring).unwrap();
            em
        })
        .collect();
    (tier, ems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_outage_shows_as_one_window_and_nothing_is_lost() {
    let faults = Arc::new(ShardFaults::new());
    let (tier, ems) = region(faults.clone(), 2);
    let cfg = LoadConfig {
        writers: 4,
        period: Duration::from_millis(4),
        stop: StopAfter::Elapsed(Duration::from_millis(900)),
        ..LoadConfig::default()
    };
    let handle = load::spawn(ems.clone(), cfg);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let injected = Instant::now();
    faults.set_all(Some(ShardFault::NoPrimary));
    tokio::time::sleep(Duration::from_millis(200)).await;
    faults.set_all(None);
    let outage = injected.elapsed();
    let report = handle.wait().await;
    println!("{}", report.summary());

    assert!(
        report.acked > 100 && report.failed > 10,
        "{}",
        report.summary()
    );
    assert_eq!(
        report.errors.keys().collect::<Vec<_>>(),
        vec!["NoDatabasePeersError"]
    );
    assert_eq!(report.windows.len(), 1, "{:?}", report.windows);
    let w = report.windows[0];
    let slack = Duration::from_millis(40);
    assert!(
        w.len() + slack >= outage && w.len() <= outage + slack,
        "window {:?} vs outage {outage:?}",
        w.len()
    );
    assert!(w.start >= Duration::from_millis(280), "{w:?}");
    assert_eq!(report.longest_unavailable, w.len());
    assert_eq!(report.unavailable_total, w.len());
    // A read-back can only fail when the fault starts between a write and
    // its read: at most once per writer.
    assert_eq!(report.reads_mismatched, 0);
    assert!(report.reads_failed <= 4, "{}", report.summary());

    let v = report.verify(&tier, &ems).await;
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.lost.len() + v.duplicated.len(), 0);
    assert_eq!(v.checked as u64, report.acked);
    // Failed writes were not applied.
    let stored: usize = tier.shards().iter().map(|s| s.len()).sum();
    assert_eq!(stored as u64, report.acked);
}

#[tokio::test]
async fn count_bounded_run_stops_by_itself() {
    let (tier, ems) = region(Arc::new(ShardFaults::new()), 1);
    let cfg = LoadConfig {
        writers: 3,
        period: Duration::from_millis(1),
        stop: StopAfter::WritesPerWriter(25),
        ..LoadConfig::default()
    };
    let report = load::run(ems.clone(), cfg).await;
    assert_eq!(report.attempts.len(), 75);
    assert_eq!((report.acked, report.failed, report.reads_ok), (75, 0, 75));
    assert!(report.windows.is_empty());
    assert_eq!(report.unavailable_total, Duration::ZERO);
    // Attempts are ordered by start and spread over every writer.
    assert!(report.attempts.windows(2).all(|p| p[0].start <= p[1].start));
    let v = report.verify(&tier, &ems).await;
    assert!(v.is_clean() && v.ok == 75, "{v:?}");
}

#[tokio::test]
async fn hung_shard_cannot_keep_a_run_going() {
    let faults = Arc::new(ShardFaults::new());
    faults.set_all(Some(ShardFault::Latency(Duration::from_secs(30))));
    let (tier, ems) = region(faults, 1);
    let cfg = LoadConfig {
        writers: 2,
        period: Duration::from_millis(5),
        stop: StopAfter::Elapsed(Duration::from_millis(150)),
        op_timeout: Duration::from_millis(50),
        ..LoadConfig::default()
    };
    let t = Instant::now();
    let report = load::run(ems, cfg).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        report.failed >= 2 && report.acked == 0,
        "{}",
        report.summary()
    );
    assert_eq!(
        report.errors.keys().collect::<Vec<_>>(),
        vec!["TimeoutError"]
    );
    assert_eq!(tier.shards().iter().map(|s| s.len()).sum::<usize>(), 0);
}

#[tokio::test]
async fn early_stop_and_partial_outage() {
    let faults = Arc::new(ShardFaults::new());
    let (tier, ems) = region(faults.clone(), 1);
    // Only shard B is down: writes routed to A keep succeeding.
    faults.set(B, Some(ShardFault::WritesHang));
    let cfg = LoadConfig {
        writers: 2,
        period: Duration::from_millis(2),
        stop: StopAfter::Elapsed(Duration::from_secs(60)),
        ..LoadConfig::default()
    };
    let handle = load::spawn(ems.clone(), cfg);
    tokio::time::sleep(Duration::from_millis(150)).await;
    handle.stop();
    let report = handle.wait().await;
    assert!(report.elapsed < Duration::from_secs(5));
    assert!(
        report.acked > 0 && report.failed > 0,
        "{}",
        report.summary()
    );
    assert!(
        report
            .attempts
            .iter()
            .all(|a| a.outcome.is_ok() == (a.pnode.as_deref() == Some(A)))
    );
    assert!(report.verify(&tier, &ems).await.is_clean());
}

fn attempt(start_ms: u64, ok: bool) -> sim::manta::WriteAttempt {
    sim::manta::WriteAttempt {
        writer: 0,
        seq: start_ms,
        em: "em-0".into(),
        bucket: "manta".into(),
        key: format!("/k/{start_ms}"),
        value: serde_json::json!(start_ms),
        start: Duration::from_millis(start_ms),
        end: Duration::from_millis(start_ms + 1),
        pnode: Some(A.into()),
        vnode: Some(0),
        outcome: if ok {
            Ok("E".into())
        } else {
            Err(sim::manta::MantaError::NoDatabasePeers { pnode: A.into() })
        },
        read: None,
    }
}

#[test]
fn window_merging_rules() {
    use sim::manta::unavailable_windows;
    let gap = Duration::from_millis(5);
    let ms = Duration::from_millis;
    // Failures 10..=30 every 5 ms, a stall (no attempts) until 50, more
    // failures, a success at 70, then an isolated failure at 100.
    let mut atts: Vec<_> = [10, 15, 20, 25, 30, 50, 55]
        .iter()
        .map(|t| attempt(*t, false))
        .collect();
    atts.push(attempt(70, true));
    atts.push(attempt(100, false));
    atts.push(attempt(0, true));
    let w = unavailable_windows(&atts, gap);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!((w[0].start, w[0].end, w[0].failures), (ms(10), ms(56), 7));
    assert_eq!((w[1].start, w[1].end, w[1].failures), (ms(100), ms(101), 1));
    // A success inside the stall splits it.
    atts.push(attempt(40, true));
    let w = unavailable_windows(&atts, gap);
    assert_eq!(w.len(), 3, "{w:?}");
    assert_eq!(w[0].len(), ms(21));
    assert!(unavailable_windows(&[attempt(1, true)], gap).is_empty());
}
