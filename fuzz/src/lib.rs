//! Fuzzing tritonctl's parsers and decoders (issue #13, "Fuzzing").
//!
//! Targets ([`targets`]): the document parser and validator (`crds`), the
//! manatee cluster state and election node decoders (`wire::manatee`), the
//! SAPI/VMAPI/CNAPI/IMGAPI records (`wire::apis`), the pg-status rows
//! (`wire::pgstatus`), the ZooKeeper 3.4 replies our own session decodes
//! (`coord::jute`) and the fash ring JSON (`wire::fash::Ring::from_json`).
//!
//! # Engines, and why
//!
//! Two engines run the same target functions:
//!
//! - **proptest**, in `tests/fuzz.rs`, through the normal test command
//!   (`scripts/test`, cargo nextest), so CI runs it with no extra tool: a
//!   fixed number of cases per target with a fixed seed (the same run every
//!   time), or a time per target for a long run by hand
//!   (`TRITONCTL_FUZZ_SECS`). Its inputs are structure-aware ([`mutate`],
//!   [`grammar`]): mutations of the real example documents, of API records
//!   and manatee states written from the research notes, and of what our
//!   own encoders produce, plus raw bytes. It checks what a coverage-guided
//!   engine cannot on its own: the heap a case uses ([`alloc`]), its
//!   stack (a 2 MiB thread, tokio's worker stack) and a deadline.
//! - **libFuzzer**, in `fuzz/libfuzzer/` (outside the workspace), for long
//!   coverage-guided runs by hand. The machine has only a stable toolchain,
//!   so `cargo fuzz` with its sanitizers is out; but libFuzzer itself runs
//!   on stable: `libfuzzer-sys` builds it from source, and rustc's stable
//!   `-C passes=sancov-module` and `-C llvm-args=-sanitizer-coverage-*`
//!   options give it coverage and comparison feedback (checked here: it
//!   found a 4-byte magic prefix in seconds). No AddressSanitizer, which
//!   safe Rust needs least; memory is bounded with `-rss_limit_mb` instead.
//!   `fuzz/run-libfuzzer` builds and runs it; see `fuzz/README.md`.
//!
//! # Properties
//!
//! For every input ([`harness`]): no panic, no hang (a deadline per case),
//! bounded stack and heap. Per target ([`targets`]): decode(encode(x)) == x
//! where an encoder exists, locations inside the input, and the invariants
//! of each decoder's output.

pub mod alloc;
pub mod grammar;
pub mod harness;
pub mod jute_enc;
pub mod mutate;
pub mod seeds;
pub mod targets;

pub use harness::{Budget, Target, fuzz, replay};
