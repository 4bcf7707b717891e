//! Ring directories as fash lays them out (research/resharding.md §1.7,
//! §1.9): the fash README's six-vnode ring key by key, a ring written and
//! read back bit for bit, Snappy blocks, and errors that name the directory
//! and the key at fault.

use std::path::Path;

use fashdb::{Inconsistency, RingDbError, entries, load, write_ring};
use rusty_leveldb::compressor::{CompressorId, SnappyCompressor};
use rusty_leveldb::{DB, Options, WriteBatch};
use serde_json::json;
use wire::fash::{FashError, KeyEncoding, Ring};

const P1: &str = "tcp://1.moray.emy-11.joyent.us:2020";
const P2: &str = "tcp://2.moray.emy-11.joyent.us:2020";
const P3: &str = "tcp://3.moray.emy-11.joyent.us:2020";

fn text(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                String::from_utf8(v.clone()).unwrap(),
            )
        })
        .collect()
}

/// Writes `kvs` as a LevelDB (in one batch) with the given compressor.
fn raw_db(dir: &Path, kvs: &[(String, String)], compressor: u8) {
    let opt = Options {
        compressor,
        ..Options::default()
    };
    let mut db = DB::open(dir, opt).unwrap();
    let mut b = WriteBatch::default();
    for (k, v) in kvs {
        b.put(k.as_bytes(), v.as_bytes());
    }
    db.write(b, true).unwrap();
    db.close().unwrap();
}

fn tv1_entries() -> Vec<(String, String)> {
    let interval = "2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let q = |s: &str| format!("\"{s}\"");
    let mut e: Vec<(String, String)> = vec![
        ("/PNODE".into(), format!("[{},{}]", q(P1), q(P2))),
        (format!("/PNODE/{P1}"), "[0,2,4]".into()),
        (format!("/PNODE/{P1}/0"), "1".into()),
        (format!("/PNODE/{P1}/2"), "1".into()),
        (format!("/PNODE/{P1}/4"), "1".into()),
        (format!("/PNODE/{P2}"), "[1,3,5]".into()),
        (format!("/PNODE/{P2}/1"), "1".into()),
        (format!("/PNODE/{P2}/3"), "1".into()),
        (format!("/PNODE/{P2}/5"), "1".into()),
    ];
    for v in 0..6 {
        e.push((format!("/VNODE/{v}"), q(if v % 2 == 0 { P1 } else { P2 })));
    }
    e.push((
        "ALGORITHM".into(),
        format!(
            "{{\"NAME\":\"sha256\",\"MAX\":\"{}\",\"VNODE_HASH_INTERVAL\":\"{interval}\"}}",
            "F".repeat(64)
        ),
    ));
    e.push(("COMPLETE".into(), "1".into()));
    e.push(("VERSION".into(), "\"2.1.0\"".into()));
    e.push(("VNODE_COUNT".into(), "6".into()));
    e.push(("VNODE_DATA".into(), "[]".into()));
    e
}

/// The fash README ring (`fash create -v 6 -p P1,P2 -b leveldb`): every key
/// and value as fash writes them, and `get-node /yunong/yunong.txt`.
#[test]
fn tv1_the_fash_readme_ring_key_by_key() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("hash_ring");
    // Given out of order: creation sorts them.
    write_ring(&dir, &Ring::create(6, &[P2, P1]).unwrap()).unwrap();
    assert_eq!(text(&entries(&dir).unwrap()), tv1_entries());
    let ring = load(&dir).unwrap();
    let node = ring.node("/yunong/yunong.txt", KeyEncoding::Utf8).unwrap();
    assert_eq!((node.pnode, node.vnode, node.data), (P1, 4, &json!(1)));
    // The smoke test electric-moray's setup runs after installing a ring.
    assert_eq!(ring.node("yunong", KeyEncoding::Utf8).unwrap().vnode, 0);
}

/// A ring with remaps, a new pnode and per-vnode data: written, read back,
/// written again: every key and value equal, and the same ring.
#[test]
fn a_ring_written_and_read_back_is_the_same_bit_for_bit() {
    let mut ring = Ring::create(5000, &[P1, P2]).unwrap();
    let moved: Vec<u32> = ring.vnodes_of(P2).unwrap().into_iter().step_by(2).collect();
    ring.remap_from(P2, &moved, P3).unwrap();
    ring.set_read_only(&moved[..10], true).unwrap();
    ring.set_data(7, json!({"note": "hot", "n": 2})).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    write_ring(&a, &ring).unwrap();
    let back = load(&a).unwrap();
    assert_eq!(back, ring);
    assert_eq!(back.pnodes(), ring.pnodes(), "/PNODE order is kept");
    assert_eq!(back.fingerprint(), ring.fingerprint());
    write_ring(&b, &back).unwrap();
    let (ea, eb) = (entries(&a).unwrap(), entries(&b).unwrap());
    // Two keys per vnode, one list per pnode, /PNODE and five more.
    assert_eq!(ea.len(), 2 * 5000 + 3 + 1 + 5);
    assert_eq!(ea, eb);
    let kv = text(&ea);
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).unwrap().1.clone();
    assert_eq!(get(&format!("/PNODE/{P3}/{}", moved[0])), "\"ro\"");
    assert_eq!(get(&format!("/VNODE/{}", moved[0])), format!("\"{P3}\""));
    // Vnode 7 is P2's (round robin); P2's data keys keep the object as set.
    assert_eq!(get(&format!("/PNODE/{P2}/7")), "{\"note\":\"hot\",\"n\":2}");
    // VNODE_DATA as fash's deserialize writes it: pnode by pnode.
    let mut want: Vec<u32> = vec![7];
    want.extend(&moved[..10]);
    assert_eq!(ring.pnode_of(7).unwrap(), P2);
    assert_eq!(get("VNODE_DATA"), serde_json::to_string(&want).unwrap());
    assert!(load(&a).unwrap().has_data_vnodes());
}

/// Snappy-compressed tables (as electric-moray's own compactions leave
/// them) read like uncompressed ones.
#[test]
fn snappy_compressed_blocks_are_read() {
    let ring = Ring::create(3000, &[P1, P2, P3]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("plain");
    write_ring(&plain, &ring).unwrap();
    let kvs = text(&entries(&plain).unwrap());
    let snappy = d.path().join("snappy");
    raw_db(&snappy, &kvs, SnappyCompressor::ID);
    assert_eq!(load(&snappy).unwrap(), ring);
}

fn without(kvs: &[(String, String)], key: &str) -> Vec<(String, String)> {
    kvs.iter().filter(|(k, _)| k != key).cloned().collect()
}

fn with(kvs: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut out = without(kvs, key);
    out.push((key.into(), value.into()));
    out
}

fn load_err(kvs: &[(String, String)]) -> (String, RingDbError) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ring");
    raw_db(&dir, kvs, 0);
    let e = load(&dir).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&dir.display().to_string()), "{msg}");
    (msg, e)
}

#[test]
fn what_fash_refuses_to_load_is_refused_naming_the_key() {
    let good = tv1_entries();
    let (msg, e) = load_err(&without(&good, "COMPLETE"));
    assert!(
        matches!(e, RingDbError::MissingKey { ref key, .. } if key == "COMPLETE"),
        "{e:?}"
    );
    assert!(
        msg.contains("no COMPLETE key: the ring was never finished"),
        "{msg}"
    );

    let (msg, e) = load_err(&with(&good, "VERSION", "\"3.0.0\""));
    assert!(
        matches!(e, RingDbError::Ring { ref key, source: FashError::UnsupportedVersion(ref v), .. } if key == "VERSION" && v == "3.0.0"),
        "{e:?}"
    );
    assert!(
        msg.contains("key VERSION: unsupported ring version \"3.0.0\""),
        "{msg}"
    );

    let (msg, _) = load_err(&without(&good, "/VNODE/5"));
    assert!(
        msg.contains("no /VNODE/5 key: the last vnode has no pnode"),
        "{msg}"
    );

    let (msg, _) = load_err(&with(&good, "VNODE_COUNT", "\"six\""));
    assert!(
        msg.contains("key VNODE_COUNT: expected a vnode count, found \"six\""),
        "{msg}"
    );

    let bad_interval = good
        .iter()
        .map(|(k, v)| (k.clone(), v.replace("2aaaaaaa", "2aaaaaab")))
        .collect::<Vec<_>>();
    let (msg, e) = load_err(&bad_interval);
    assert!(
        matches!(
            e,
            RingDbError::Ring {
                source: FashError::BadInterval { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("key ALGORITHM: VNODE_HASH_INTERVAL"), "{msg}");
}

#[test]
fn a_ring_whose_keys_disagree_is_refused_naming_the_key() {
    let good = tv1_entries();
    let p1_2 = format!("/PNODE/{P1}/2");
    let (msg, e) = load_err(&without(&good, &p1_2));
    assert!(
        matches!(e, RingDbError::Inconsistent { ref key, problem: Inconsistency::NoData { .. }, .. } if *key == p1_2),
        "{e:?}"
    );
    assert!(msg.contains(&format!("key {p1_2}: missing")), "{msg}");

    // vnode 2 moved to P2 in /VNODE only.
    let (_, e) = load_err(&with(&good, "/VNODE/2", &format!("\"{P2}\"")));
    assert!(
        matches!(
            e,
            RingDbError::Inconsistent {
                problem: Inconsistency::DataOnOtherPnode { .. },
                ..
            }
        ),
        "{e:?}"
    );

    let (msg, e) = load_err(&with(&good, "/VNODE/2", "\"tcp://9.moray:2020\""));
    assert!(
        matches!(
            e,
            RingDbError::Inconsistent {
                problem: Inconsistency::UnknownPnode(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.contains("key /VNODE/2: names pnode \"tcp://9.moray:2020\""),
        "{msg}"
    );

    let (_, e) = load_err(&with(&good, &format!("/PNODE/{P1}"), "[0,2]"));
    assert!(
        matches!(
            e,
            RingDbError::Inconsistent {
                problem: Inconsistency::OwnedButNotListed { vnode: 4 },
                ..
            }
        ),
        "{e:?}"
    );

    let (msg, e) = load_err(&with(&good, &format!("/PNODE/{P1}/4"), "\"ro\""));
    assert!(
        matches!(
            e,
            RingDbError::Inconsistent {
                problem: Inconsistency::DataList { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("key VNODE_DATA"), "{msg}");
    // With VNODE_DATA naming it, the same ring loads, vnode 4 read-only.
    let d = tempfile::tempdir().unwrap();
    let ro = with(
        &with(&good, &format!("/PNODE/{P1}/4"), "\"ro\""),
        "VNODE_DATA",
        "[4]",
    );
    raw_db(&d.path().join("r"), &ro, 0);
    assert!(load(&d.path().join("r")).unwrap().is_read_only(4));

    let (_, e) = load_err(&with(&good, "/PNODE/tcp://gone:2020/1", "1"));
    assert!(
        matches!(
            e,
            RingDbError::Inconsistent {
                problem: Inconsistency::StrayKey,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn directories_that_are_not_rings() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, RingDbError::NoSuchDirectory { .. }));
    assert_eq!(
        e.to_string(),
        format!("{}: no such directory", missing.display())
    );
    let e = load(d.path()).unwrap_err();
    assert!(
        e.to_string()
            .contains("not a LevelDB directory (no CURRENT file)"),
        "{e}"
    );
    std::fs::write(d.path().join("x"), "x").unwrap();
    let e = write_ring(d.path(), &Ring::create(6, &[P1]).unwrap()).unwrap_err();
    assert!(matches!(e, RingDbError::NotEmpty { .. }), "{e:?}");
}
