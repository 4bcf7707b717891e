//! The run loop: generate inputs, run each on a thread of its own with a
//! deadline, a fixed stack and a heap budget, shrink a failure, report.
//!
//! Properties checked for every input, whatever the target asserts itself:
//! - no panic (a target's own assertions are panics too);
//! - no hang: the case must finish within [`Limits::deadline`] (generous:
//!   a debug build, a loaded 2-core machine; it catches loops, not slowness);
//! - bounded stack: the case runs on a thread with [`Limits::stack`] bytes,
//!   tokio's default worker stack, where the controller parses; a stack
//!   overflow aborts the process, and the input is in the crash file;
//! - bounded heap: the case's peak heap must stay within
//!   `heap_per_byte * input length + heap_base` (checked when the test
//!   binary installs [`crate::alloc::Counting`]); past `heap_cap` the
//!   allocation is refused and the process aborts, crash file again.
//!
//! The input being run is written to `$TMPDIR/tritonctl-fuzz/<target>.current`
//! before each case, so an abort (stack overflow, heap cap) leaves it behind.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Once, mpsc};
use std::time::{Duration, Instant};

use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::alloc::Meter;

/// One fuzz target: a name and the function that checks one input.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// How much to run: a number of cases (CI) or a time (a long run by hand).
#[derive(Clone, Debug)]
pub struct Budget {
    pub cases: u64,
    pub time: Option<Duration>,
    pub seed: u64,
}

/// The seed CI uses, so a CI run is the same run every time.
pub const CI_SEED: u64 = 0x7472_6974_6f6e_6374;

impl Budget {
    /// From the environment: `TRITONCTL_FUZZ_SECS` (run each target this
    /// long; cases unlimited), else `TRITONCTL_FUZZ_CASES` or
    /// `PROPTEST_CASES`, else `default_cases`. `TRITONCTL_FUZZ_SEED` picks the
    /// seed (a number, or `random`); CI's is fixed.
    pub fn from_env(default_cases: u64) -> Budget {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let secs = var("TRITONCTL_FUZZ_SECS").and_then(|v| v.trim().parse::<u64>().ok());
        let cases = var("TRITONCTL_FUZZ_CASES")
            .or_else(|| var("PROPTEST_CASES"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let seed = match var("TRITONCTL_FUZZ_SEED").as_deref().map(str::trim) {
            None => CI_SEED,
            Some("random") => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                t.as_nanos() as u64 ^ u64::from(std::process::id())
            }
            Some(n) => n.parse().unwrap_or(CI_SEED),
        };
        match secs {
            Some(s) => Budget {
                cases: cases.unwrap_or(u64::MAX),
                time: Some(Duration::from_secs(s)),
                seed,
            },
            None => Budget {
                cases: cases.unwrap_or(default_cases),
                time: None,
                seed,
            },
        }
    }
}

/// The bounds every case runs under.
#[derive(Clone, Debug)]
pub struct Limits {
    pub deadline: Duration,
    pub stack: usize,
    pub heap_per_byte: usize,
    pub heap_base: usize,
    pub heap_cap: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_secs(
                std::env::var("TRITONCTL_FUZZ_DEADLINE_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(30),
            ),
            stack: 2 << 20,
            heap_per_byte: 1024,
            heap_base: 256 << 20,
            heap_cap: 3 << 30,
        }
    }
}

/// Why a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Panic(String),
    Hang(Duration),
    Heap { peak: usize, budget: usize },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "panicked: {m}"),
            Failure::Hang(d) => write!(f, "did not finish within {d:?}"),
            Failure::Heap { peak, budget } => {
                write!(f, "used {peak} bytes of heap, budget {budget}")
            }
        }
    }
}

/// What one target's run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub elapsed: Duration,
    pub max_peak_heap: usize,
    pub seed: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "fuzz {}: {} execs in {:.1}s ({:.0}/s), max case heap {} KiB, seed {}",
            self.target,
            self.execs,
            secs,
            self.execs as f64 / secs.max(1e-9),
            self.max_peak_heap / 1024,
            self.seed
        )
    }
}

thread_local! {
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A panic hook that records a case's panic quietly (shrinking panics many
/// times) and leaves every other panic to the previous hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(std::cell::Cell::get) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic)".into());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

fn crash_file(target: &str) -> PathBuf {
    std::env::temp_dir()
        .join("tritonctl-fuzz")
        .join(format!("{target}.current"))
}

/// Run `target` on one input under `limits`: Ok(peak heap) or the failure.
pub fn run_case(target: Target, input: &[u8], limits: &Limits) -> Result<usize, Failure> {
    install_hook();
    let _ = std::fs::write(crash_file(target.name), input);
    let data = Arc::new(input.to_vec());
    let cap = limits.heap_cap;
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .stack_size(limits.stack)
        .spawn(move || {
            let meter = Meter::start(cap);
            IN_CASE.with(|c| c.set(true));
            let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&data)));
            IN_CASE.with(|c| c.set(false));
            let peak = meter.peak();
            drop(meter);
            let outcome = result
                .map(|()| peak)
                .map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take().unwrap_or_default()));
            let _ = tx.send(outcome);
        })
        .expect("spawn a fuzz case thread");
    match rx.recv_timeout(limits.deadline) {
        Ok(Ok(peak)) => {
            let _ = spawned.join();
            let budget = limits
                .heap_per_byte
                .saturating_mul(input.len())
                .saturating_add(limits.heap_base);
            if peak > budget {
                return Err(Failure::Heap { peak, budget });
            }
            Ok(peak)
        }
        Ok(Err(msg)) => {
            let _ = spawned.join();
            Err(Failure::Panic(msg))
        }
        Err(_) => Err(Failure::Hang(limits.deadline)),
    }
}

/// A Rust byte string literal of `input`, for a regression test.
pub fn literal(input: &[u8]) -> String {
    format!("b\"{}\"", input.escape_ascii())
}

/// Fuzz `target` with inputs from the strategy `make` builds, within
/// `budget`; panics with the minimized failing input on the first failure.
pub fn fuzz<F>(target: Target, make: F, budget: &Budget) -> Report
where
    F: FnOnce() -> BoxedStrategy<Vec<u8>> + Send + 'static,
{
    // Generators recurse over deep values: give them room.
    let budget = budget.clone();
    std::thread::Builder::new()
        .name(format!("fuzz-driver-{}", target.name))
        .stack_size(256 << 20)
        .spawn(move || drive(target, &make(), &budget))
        .expect("spawn the fuzz driver")
        .join()
        .unwrap_or_else(|e| panic::resume_unwind(e))
}

fn drive(target: Target, strategy: &BoxedStrategy<Vec<u8>>, budget: &Budget) -> Report {
    let limits = Limits::default();
    let _ = std::fs::create_dir_all(crash_file(target.name).parent().expect("a directory"));
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&budget.seed.to_le_bytes());
    seed[8..16].copy_from_slice(&fnv(target.name.as_bytes()).to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let start = Instant::now();
    let mut execs = 0u64;
    let mut max_peak = 0usize;
    while execs < budget.cases && budget.time.is_none_or(|t| start.elapsed() < t) {
        let mut tree = strategy
            .new_tree(&mut runner)
            .expect("fuzz strategies never reject");
        let input = tree.current();
        execs += 1;
        match run_case(target, &input, &limits) {
            Ok(peak) => max_peak = max_peak.max(peak),
            Err(failure) => {
                let (input, failure) = shrink(target, &mut tree, input, failure, &limits);
                panic!(
                    "fuzz target `{}` {failure}\n  after {execs} cases, seed {}\n  \
                     minimized input ({} bytes): {}\n  lossy text: {:?}",
                    target.name,
                    budget.seed,
                    input.len(),
                    literal(&input),
                    String::from_utf8_lossy(&input),
                );
            }
        }
    }
    let report = Report {
        target: target.name,
        execs,
        elapsed: start.elapsed(),
        max_peak_heap: max_peak,
        seed: budget.seed,
    };
    let _ = writeln!(std::io::stderr(), "{report}");
    report
}

/// proptest's shrink loop, over our own case runner. A hang is not shrunk
/// (each try would cost the deadline).
fn shrink(
    target: Target,
    tree: &mut impl ValueTree<Value = Vec<u8>>,
    mut input: Vec<u8>,
    mut failure: Failure,
    limits: &Limits,
) -> (Vec<u8>, Failure) {
    if matches!(failure, Failure::Hang(_)) || !tree.simplify() {
        return (input, failure);
    }
    for _ in 0..2000 {
        let candidate = tree.current();
        match run_case(target, &candidate, limits) {
            Err(f) if !matches!(f, Failure::Hang(_)) => {
                input = candidate;
                failure = f;
                if !tree.simplify() {
                    break;
                }
            }
            _ => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    (input, failure)
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Run every input of `inputs` through `target` under the limits (corpus
/// replay; what a regression test of a finding does).
pub fn replay(target: Target, inputs: &[Vec<u8>]) {
    let limits = Limits::default();
    for input in inputs {
        if let Err(f) = run_case(target, input, &limits) {
            panic!("fuzz target `{}` {f} on {}", target.name, literal(input));
        }
    }
}
