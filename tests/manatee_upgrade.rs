//! The ManateeVersion rolling upgrade end to end: CLI documents -> store ->
//! controller (real HTTP clients, leader fence) -> simulated lab datacenter,
//! with a client writing to the shard throughout.

use std::time::Duration;

use crds::manatee::Strategy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_upgrade_loses_no_acknowledged_write() {
    let mut lines = Vec::new();
    let mut out = |l: String| lines.push(l);
    let report = tritonctl::demo::run(&mut out, Duration::from_secs(90), Strategy::Rolling)
        .await
        .expect("the demo converges");
    assert_eq!(report.lost, 0, "acknowledged writes were lost");
    assert_eq!(
        report.sapi_would_crash, 0,
        "our clients sent SAPI a request that crashes the real one"
    );
    assert!(
        report.acked > 10,
        "the writer barely ran: {} acked",
        report.acked
    );
    assert_eq!(
        report.steps, 7,
        "preflight, async, sync, freeze, primary, wait-healthy, unfreeze"
    );
    // The order is the safety rule: asyncs, then the sync, then freeze before the primary.
    let order: Vec<&str> = [
        "reprovision-async",
        "reprovision-sync",
        "[freeze]",
        "reprovision-primary",
        "[unfreeze]",
    ]
    .into_iter()
    .filter(|needle| {
        lines
            .iter()
            .any(|l| l.contains("StepStarted") && l.contains(needle))
    })
    .collect();
    assert_eq!(order.len(), 5, "{lines:#?}");
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains("StepStarted") && l.contains(needle))
            .unwrap()
    };
    assert!(pos("reprovision-async") < pos("reprovision-sync"));
    assert!(pos("reprovision-sync") < pos("[freeze]"));
    assert!(pos("[freeze]") < pos("reprovision-primary"));
    assert!(pos("reprovision-primary") < pos("[unfreeze]"));
    // The primary step is the only write outage; it is bounded.
    assert!(
        report.longest_outage < Duration::from_secs(10),
        "{:?}",
        report.longest_outage
    );
}

/// `tritonctl demo`'s default: the switchover. The primary is never
/// reprovisioned in place and never frozen: the upgraded sync is promoted,
/// then the deposed old primary is reprovisioned and rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_demo_by_switchover_loses_no_write_and_never_freezes() {
    let mut lines = Vec::new();
    let mut out = |l: String| lines.push(l);
    let report = tritonctl::demo::run(&mut out, Duration::from_secs(90), Strategy::Switchover)
        .await
        .expect("the demo converges");
    assert_eq!(report.strategy, Strategy::Switchover);
    assert_eq!(report.lost, 0, "acknowledged writes were lost");
    assert!(report.acked > 10, "the writer barely ran: {}", report.acked);
    let started = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains("StepStarted") && l.contains(needle))
    };
    assert_eq!(
        started("[freeze]"),
        None,
        "a switchover never freezes: {lines:#?}"
    );
    assert_eq!(started("reprovision-primary"), None, "{lines:#?}");
    let order = [
        "reprovision-async",
        "reprovision-sync",
        "promote-sync",
        "reprovision-deposed",
        "rebuild",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|n| started(n).unwrap_or_else(|| panic!("no step {n}: {lines:#?}")))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "out of order {order:?} at {at:?}"
    );
}
