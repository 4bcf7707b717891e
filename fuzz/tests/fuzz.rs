//! The fuzz run: one test per target. CI runs [`CI_CASES`] cases per
//! target with a fixed seed; a long run by hand sets `TRITONCTL_FUZZ_SECS`
//! (see fuzz/README.md). Every seed input is replayed first.

use fuzz::harness::Target;
use fuzz::targets;
use fuzz::{Budget, mutate, seeds};

#[global_allocator]
static ALLOC: fuzz::alloc::Counting = fuzz::alloc::Counting;

/// Cases per target in CI: about a minute for all seven on a 2-core
/// machine in a debug build.
const CI_CASES: u64 = 1500;

fn run(target: Target) {
    fuzz::replay(target, &seeds::inputs(target.name));
    let budget = Budget::from_env(CI_CASES);
    let report = fuzz::fuzz(target, move || mutate::strategy(target.name), &budget);
    assert!(report.execs > 0);
}

#[test]
fn fuzz_documents() {
    run(targets::DOCUMENTS);
}

#[test]
fn fuzz_manatee_state() {
    run(targets::MANATEE_STATE);
}

#[test]
fn fuzz_election() {
    run(targets::ELECTION);
}

#[test]
fn fuzz_apis() {
    run(targets::APIS);
}

#[test]
fn fuzz_pgstatus() {
    run(targets::PGSTATUS);
}

#[test]
fn fuzz_jute() {
    run(targets::JUTE);
}

#[test]
fn fuzz_fash_ring() {
    run(targets::FASH_RING);
}

#[test]
fn the_heap_meter_is_installed() {
    let _ = vec![0u8; 1024];
    assert!(fuzz::alloc::Meter::installed());
    let meter = fuzz::alloc::Meter::start(1 << 30);
    let v = vec![1u8; 4 << 20];
    assert!(meter.peak() >= 4 << 20);
    drop(v);
}
