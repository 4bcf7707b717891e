//! What fuzzing found, kept: each minimized input replayed through its
//! target under the harness's limits (no panic, no hang, 2 MiB stack,
//! bounded heap), and the size checks that go with them.

use fuzz::alloc::Meter;
use fuzz::harness::{Target, run_case};
use fuzz::targets;

#[global_allocator]
static ALLOC: fuzz::alloc::Counting = fuzz::alloc::Counting;

fn clean(target: Target, input: &[u8]) {
    let limits = fuzz::harness::Limits::default();
    if let Err(f) = run_case(target, input, &limits) {
        panic!(
            "{} {f} on {} bytes: {:.200}",
            target.name,
            input.len(),
            String::from_utf8_lossy(input)
        );
    }
}

/// 100,000 levels of nesting, in every shape a parser here reads: refused
/// (serde-saphyr's depth budget, serde_json's recursion limit) on a 2 MiB
/// stack, never a stack overflow.
#[test]
fn deep_nesting_is_refused_on_a_small_stack() {
    const DEPTH: usize = 100_000;
    let shapes: Vec<Vec<u8>> = vec![
        "[".repeat(DEPTH).into_bytes(),
        format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH)).into_bytes(),
        "{\"a\":".repeat(DEPTH).into_bytes(),
        format!("{}1{}", "{a: ".repeat(DEPTH), "}".repeat(DEPTH)).into_bytes(),
        (0..2000)
            .map(|i| format!("{}- x\n", " ".repeat(i)))
            .collect::<String>()
            .into_bytes(),
        (0..2000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>()
            .into_bytes(),
        format!("spec: {}", "[".repeat(DEPTH)).into_bytes(),
    ];
    for target in targets::ALL {
        for input in &shapes {
            clean(target, input);
        }
    }
}

/// YAML aliases that expand exponentially ("billion laughs") are refused
/// by the parser's alias budget rather than materialized.
#[test]
fn alias_expansion_is_bounded() {
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    clean(targets::DOCUMENTS, doc.as_bytes());
}

/// The peak heap of parsing `input` as documents, and the first diagnostic.
fn parse_heap(input: &str) -> (usize, String) {
    let input = input.to_string();
    std::thread::spawn(move || {
        let meter = Meter::start(usize::MAX >> 1);
        let (_, diags) = crds::parse_documents("x.yaml", &input);
        let first = diags.first().map(|d| d.message.clone()).unwrap_or_default();
        drop(diags);
        (meter.peak(), first)
    })
    .join()
    .expect("parse")
}

/// A key of n bytes (explicit: an implicit key stops at 1024) holding a
/// list of n items.
fn long_key_many_items(n: usize) -> String {
    format!("? {}\n: [{}]\n", "k".repeat(n), "0,".repeat(n))
}

/// Found by fuzzing: the location index kept the full field path of every
/// node, so a long key above a long list cost key length × items (a 1 MB
/// key over 100,000 items: 100 GB). The index is now bounded; the heap
/// grows linearly with the input.
#[test]
fn the_location_index_grows_linearly_with_the_input() {
    let (small, d) = parse_heap(&long_key_many_items(4_000));
    assert!(d.starts_with("missing apiVersion"), "{d}");
    let (large, d) = parse_heap(&long_key_many_items(16_000));
    assert!(d.starts_with("missing apiVersion"), "{d}");
    assert!(
        large <= small * 8,
        "4x the input took {large} bytes against {small}: not linear"
    );
}

/// A ring that declares 2^28 vnodes but lists few of them is refused
/// without an owner table of 2^28 slots (512 MiB): found by the heap budget
/// of the `fash_ring` target; the table is built once the map is complete.
#[test]
fn a_ring_that_only_declares_many_vnodes_allocates_by_what_it_lists() {
    let n: u32 = 1 << 28;
    let interval = wire::fash::vnode_hash_interval(n).expect("a valid count");
    let algorithm = format!(
        r#""algorithm":{{"NAME":"sha256","MAX":"{}","VNODE_HASH_INTERVAL":"{interval}"}},"version":"2.1.0""#,
        "F".repeat(64)
    );
    let map = r#""pnodeToVnodeMap":{"tcp://1.moray.x:2020":{"0":1,"1":1}}"#;
    for input in [
        format!(r#"{{"vnodes":{n}}}"#),
        format!(r#"{{"vnodes":{n},{map},{algorithm}}}"#),
        format!(r#"{{{map},"vnodes":{n},{algorithm}}}"#),
    ] {
        assert!(wire::fash::Ring::from_json(&input).is_err());
        clean(targets::FASH_RING, input.as_bytes());
    }
}
