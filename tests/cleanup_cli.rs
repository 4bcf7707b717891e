//! `tritonctl reshard tune`: the cleanup's live settings through the CLI
//! (the engine reading them is `tests/cleanup.rs`).

use e2e::{run, stderr, stdout};

#[test]
fn reshard_tune_shows_sets_and_refuses_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let op = "1.moray-split-7f3a";

    // Nothing set: every tunable at its default.
    let o = run(d, &["reshard", "tune", op]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in ["connections", "batch_size", "pause_ms", "max_read_p99_ms"] {
        assert!(out.contains(name), "{out}");
    }
    assert!(out.starts_with("NAME"), "{out}");

    // Set one; the listing and JSON say so.
    let o = run(d, &["reshard", "tune", op, "batch_size", "5000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("batch_size 2000 -> 5000"),
        "{}",
        stderr(&o)
    );
    let o = run(d, &["reshard", "tune", op, "-j"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["operation"], op);
    assert_eq!(v["tunables"]["batch_size"]["value"], 5000);
    assert_eq!(v["tunables"]["batch_size"]["set"], true);
    assert_eq!(v["tunables"]["connections"]["set"], false);
    assert_eq!(v["tunables"]["pause_ms"]["max"], 60000.0);

    // One tunable, no header.
    let o = run(d, &["reshard", "tune", op, "batch_size", "-H"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    assert!(line.trim_start().starts_with("batch_size"), "{line}");
    assert!(line.contains("5000") && line.contains("yes"), "{line}");

    // Out of range, not a number, unknown: refused (exit 1), nothing changed.
    for (name, value, says) in [
        ("connections", "0", "1..=256"),
        ("batch_size", "lots", "1..=100000"),
        ("pause", "5", "unknown tunable"),
    ] {
        let o = run(d, &["reshard", "tune", op, name, value]);
        assert_eq!(o.status.code(), Some(1), "{name} {value}");
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    let o = run(d, &["reshard", "tune", op, "batch_size", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(d, &["reshard", "tune", op, "-j"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["tunables"]["batch_size"]["value"], 2000);

    // --help teaches: names, ranges, defaults, manta-reshard's.
    let o = run(d, &["reshard", "tune", "--help"]);
    let help = stdout(&o);
    for needle in [
        "connections",
        "1..256",
        "batch_size",
        "1..100000",
        "pause_ms",
        "(1000)",
        "max_read_p99_ms",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
    // A bad operation id is refused before anything is stored.
    let o = run(d, &["reshard", "tune", "../x"]);
    assert_eq!(o.status.code(), Some(1));
}
