//! Times the ring at production size (10,000,000 vnodes). Every figure is
//! also printed as a ratio to sha256 of the key alone, measured in the same
//! run, so numbers compare across machines.
//!
//! Run: `cargo bench -p wire --bench fash`

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wire::fash::{HashSpace, KeyEncoding, Ring, transform_key};

const N: u32 = 10_000_000;
const KEYS: usize = 1_000_000;

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e9 / n as f64
}

fn main() {
    let keys: Vec<String> = (0..KEYS)
        .map(|i| {
            format!(
                "/{:08x}-fecb-11e1-bd8a-bb6f54b49808/stor/dir{}/obj{}",
                i % 5000,
                i % 977,
                i
            )
        })
        .collect();

    // Warm up caches and the CPU clock before the baseline.
    for k in keys.iter().take(50_000) {
        black_box(Sha256::digest(k.as_bytes()));
    }
    let (_, base) = time(|| {
        for k in &keys {
            black_box(Sha256::digest(black_box(k).as_bytes()));
        }
    });
    let base_ns = per(base, KEYS);
    println!("baseline sha256(key)            {base_ns:9.1} ns/key");

    let space = HashSpace::new(N).unwrap();
    let (_, t) = time(|| {
        for k in &keys {
            black_box(space.vnode_of(black_box(k), KeyEncoding::Utf8).unwrap());
        }
    });
    let ns = per(t, KEYS);
    println!(
        "key -> vnode (utf8)             {ns:9.1} ns/key   x{:.2}",
        ns / base_ns
    );

    let (_, t) = time(|| {
        for k in &keys {
            black_box(
                space
                    .vnode_of(black_box(k), KeyEncoding::Latin1Truncate)
                    .unwrap(),
            );
        }
    });
    let ns = per(t, KEYS);
    println!(
        "key -> vnode (latin1)           {ns:9.1} ns/key   x{:.2}",
        ns / base_ns
    );

    let pnodes: Vec<String> = (1..=4)
        .map(|i| format!("tcp://{i}.moray.us-east.joyent.us:2020"))
        .collect();
    let (mut ring, t) = time(|| Ring::create(N, &pnodes).unwrap());
    let ns = per(t, N as usize);
    println!(
        "ring build N=10M                {:9.1} ms  ({ns:.2} ns/vnode, x{:.3} of one sha256)",
        t.as_secs_f64() * 1e3,
        ns / base_ns
    );

    let (_, t) = time(|| {
        for k in &keys {
            black_box(
                ring.node(transform_key("manta", black_box(k)), KeyEncoding::Utf8)
                    .unwrap(),
            );
        }
    });
    let ns = per(t, KEYS);
    println!(
        "transform + getNode on ring     {ns:9.1} ns/key   x{:.2}",
        ns / base_ns
    );

    let (json, t) = time(|| ring.to_json());
    println!(
        "serialize N=10M                 {:9.1} ms  ({} MB)",
        t.as_secs_f64() * 1e3,
        json.len() / 1_000_000
    );
    let (back, t) = time(|| Ring::from_json(&json).unwrap());
    println!(
        "deserialize + validate N=10M    {:9.1} ms",
        t.as_secs_f64() * 1e3
    );
    assert_eq!(back, ring);
    drop(json);

    let (fp, t) = time(|| ring.fingerprint());
    println!(
        "fingerprint N=10M               {:9.1} ms  ({})",
        t.as_secs_f64() * 1e3,
        &fp[..12]
    );

    let half: Vec<u32> = ring
        .vnodes_of(&pnodes[0])
        .unwrap()
        .into_iter()
        .step_by(2)
        .collect();
    let before = ring.clone();
    let (_, t) = time(|| {
        ring.remap_from(&pnodes[0], &half, "tcp://5.moray.us-east.joyent.us:2020")
            .unwrap()
    });
    println!(
        "remap {} vnodes            {:9.1} ms",
        half.len(),
        t.as_secs_f64() * 1e3
    );
    let (d, t) = time(|| before.diff(&ring).unwrap());
    println!(
        "diff N=10M ({} moved)      {:9.1} ms",
        d.moved_vnodes(),
        t.as_secs_f64() * 1e3
    );
}
