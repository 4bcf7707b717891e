//! Golden vectors from research/resharding.md §1.9 (fash README TV1, Manta
//! operator guide TV3, and the derived table), plus key transformation and
//! ring-file validation cases.

use serde_json::{Value, json};
use wire::fash::{
    FashError, HashSpace, KeyEncoding, Ring, SHA256_MAX_HEX, posix_dirname, transform_key,
    vnode_hash_interval,
};

const P1: &str = "tcp://1.moray.emy-11.joyent.us:2020";
const P2: &str = "tcp://2.moray.emy-11.joyent.us:2020";

#[test]
fn tv1_fash_readme() {
    // Given out of order: creation sorts them.
    let ring = Ring::create(6, &[P2, P1]).unwrap();
    assert_eq!(
        ring.interval_hex(),
        "2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
    let node = ring.node("/yunong/yunong.txt", KeyEncoding::Utf8).unwrap();
    assert_eq!((node.pnode, node.vnode, node.data), (P1, 4, &json!(1)));
    assert_eq!(ring.vnodes_of(P1).unwrap(), vec![0, 2, 4]);
    assert_eq!(ring.vnodes_of(P2).unwrap(), vec![1, 3, 5]);
    assert_eq!(ring.pnodes(), &[P1.to_string(), P2.to_string()]);
}

#[test]
fn tv3_operator_guide_object_lookup() {
    // /dap/stor/cmd.tgz is stored under its directory, which for an account's
    // stor root is the root itself: /<uuid>/stor.
    let key = "/bc8cd146-fecb-11e1-bd8a-bb6f54b49808/stor/cmd.tgz";
    let hashed = transform_key("manta", key);
    assert_eq!(hashed, "/bc8cd146-fecb-11e1-bd8a-bb6f54b49808/stor");
    let space = HashSpace::new(10_000_000).unwrap();
    assert_eq!(space.vnode_of(hashed, KeyEncoding::Utf8), Ok(7_336_153));
    let pnodes: Vec<String> = (1..=3)
        .map(|i| format!("tcp://{i}.moray.staging.joyent.us:2020"))
        .collect();
    let ring = Ring::create(10_000_000, &pnodes).unwrap();
    let node = ring.locate("manta", key, KeyEncoding::Utf8).unwrap();
    assert_eq!((node.vnode, node.data), (7_336_153, &json!(1)));
}

#[test]
fn derived_table() {
    let ns = [6u32, 100_000, 131_072, 1_000_000, 10_000_000];
    let rows: [(&str, KeyEncoding, [u32; 5]); 8] = [
        (
            "/yunong/yunong.txt",
            KeyEncoding::Utf8,
            [4, 67331, 88252, 673315, 6733150],
        ),
        ("yunong", KeyEncoding::Utf8, [0, 8356, 10953, 83565, 835656]),
        (
            "/a3829ca2-0966-60ce-9dc3-e4e9060f0950/stor/mydir",
            KeyEncoding::Utf8,
            [1, 32887, 43106, 328878, 3288781],
        ),
        (
            "/a3829ca2-0966-60ce-9dc3-e4e9060f0950/stor",
            KeyEncoding::Utf8,
            [4, 76570, 100363, 765709, 7657090],
        ),
        (
            "/bc8cd146-fecb-11e1-bd8a-bb6f54b49808/stor",
            KeyEncoding::Utf8,
            [4, 73361, 96156, 733615, 7336153],
        ),
        ("", KeyEncoding::Utf8, [5, 88941, 116577, 889415, 8894159]),
        (
            "/café",
            KeyEncoding::Utf8,
            [3, 64143, 84073, 641430, 6414304],
        ),
        (
            "/café",
            KeyEncoding::Latin1Truncate,
            [1, 31443, 41213, 314432, 3144326],
        ),
    ];
    for n_i in 0..ns.len() {
        let space = HashSpace::new(ns[n_i]).unwrap();
        for (key, enc, want) in &rows {
            assert_eq!(
                space.vnode_of(key, *enc),
                Ok(want[n_i]),
                "key {key:?} {enc:?} N={}",
                ns[n_i]
            );
        }
    }
    // ASCII keys hash the same under both encodings.
    let space = HashSpace::new(10_000_000).unwrap();
    assert_eq!(
        space.vnode_of("yunong", KeyEncoding::Latin1Truncate),
        space.vnode_of("yunong", KeyEncoding::Utf8)
    );
}

#[test]
fn interval_values() {
    assert_eq!(
        vnode_hash_interval(100_000).unwrap(),
        "a7c5ac471b4784230fcf80dc33721d53cddd6e04c059210385c67dfe32a0"
    );
    assert_eq!(
        vnode_hash_interval(131_072).unwrap(),
        format!("7{}", "f".repeat(59))
    );
    assert_eq!(
        vnode_hash_interval(1_000_000).unwrap(),
        "10c6f7a0b5ed8d36b4c7f34938583621fafc8b0079a2834d26fa3fcc9ea9"
    );
    assert_eq!(
        vnode_hash_interval(10_000_000).unwrap(),
        "1ad7f29abcaf485787a6520ec08d23699194119a5c37387b71906614310"
    );
    assert_eq!(vnode_hash_interval(1).unwrap(), "f".repeat(64));
    assert_eq!(vnode_hash_interval(0), Err(FashError::BadVnodeCount(0)));
}

#[test]
fn node_posix_dirname() {
    for (input, want) in [
        ("/a/b/c", "/a/b"),
        ("/a/b/", "/a"),
        ("/a/b//", "/a"),
        ("/a", "/"),
        ("/", "/"),
        ("a", "."),
        ("", "."),
        ("/a//b", "/a/"),
        ("//a", "//"),
        ("a/b", "a"),
        ("//", "/"),
    ] {
        assert_eq!(posix_dirname(input), want, "dirname({input:?})");
    }
}

#[test]
fn electric_moray_transform_key() {
    let root = "/a3829ca2-0966-60ce-9dc3-e4e9060f0950/stor";
    // The stor root hashes as itself, its entries by their directory.
    assert_eq!(transform_key("manta", root), root);
    assert_eq!(transform_key("manta", &format!("{root}/mydir")), root);
    assert_eq!(
        transform_key("manta", &format!("{root}/mydir/obj")),
        format!("{root}/mydir")
    );
    assert_eq!(transform_key("testmanta", &format!("{root}/x")), root);
    // Other top-level dirs hash by the account.
    assert_eq!(
        transform_key("manta", "/a3829ca2-0966-60ce-9dc3-e4e9060f0950/public"),
        "/a3829ca2-0966-60ce-9dc3-e4e9060f0950"
    );
    // Upper-case uuids are not the root pattern.
    let upper = "/A3829CA2-0966-60CE-9DC3-E4E9060F0950/stor";
    assert_eq!(
        transform_key("manta", upper),
        "/A3829CA2-0966-60CE-9DC3-E4E9060F0950"
    );
    assert_eq!(transform_key("manta", "nodir"), "nodir");
    assert_eq!(transform_key("manta", "/"), "/");
    // MPU records: split at the first colon, then dirnameOrKey.
    assert_eq!(
        transform_key(
            "manta_uploads",
            &format!("upload-1:{root}/d/obj:with:colons")
        ),
        format!("{root}/d")
    );
    assert_eq!(transform_key("manta_uploads", "no-colon/x"), "no-colon/x");
    assert_eq!(transform_key("manta_uploads", "id:plain"), "plain");
    // Any other bucket: raw key.
    assert_eq!(transform_key("manta_delete_log", "/a/b/c"), "/a/b/c");
}

#[test]
fn serialize_matches_fash_shape() {
    let mut ring = Ring::create(6, &[P1, P2]).unwrap();
    ring.set_read_only(&[4], true).unwrap();
    let v: Value = serde_json::from_str(&ring.to_json()).unwrap();
    assert_eq!(
        v,
        json!({
            "vnodes": 6,
            "pnodeToVnodeMap": {
                P1: {"0": 1, "2": 1, "4": "ro"},
                P2: {"1": 1, "3": 1, "5": 1}
            },
            "algorithm": {
                "NAME": "sha256",
                "MAX": SHA256_MAX_HEX,
                "VNODE_HASH_INTERVAL": "2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            },
            "version": "2.1.0"
        })
    );
    // Key order as fash writes it.
    let s = ring.to_json();
    let pos = |k: &str| s.find(k).unwrap();
    assert!(pos("\"vnodes\"") < pos("\"pnodeToVnodeMap\""));
    assert!(pos("\"pnodeToVnodeMap\"") < pos("\"algorithm\""));
    assert!(pos("\"algorithm\"") < pos("\"version\""));
}

fn ring_json(
    vnodes: Value,
    map: Value,
    interval: &str,
    max: &str,
    name: &str,
    version: &str,
) -> String {
    json!({
        "vnodes": vnodes,
        "pnodeToVnodeMap": map,
        "algorithm": {"NAME": name, "MAX": max, "VNODE_HASH_INTERVAL": interval},
        "version": version
    })
    .to_string()
}

#[test]
fn load_validates() {
    let iv2 = vnode_hash_interval(2).unwrap();
    let good_map = json!({"a": {"0": 1}, "b": {"1": "ro"}});
    let ok = Ring::from_json(&ring_json(
        json!(2),
        good_map.clone(),
        &iv2,
        SHA256_MAX_HEX,
        "sha-256",
        "2.1.0",
    ))
    .unwrap();
    assert_eq!(ok.pnode_of(1), Ok("b"));
    assert!(ok.is_read_only(1));
    assert!(ok.has_data_vnodes());

    let cases: Vec<(String, FashError)> = vec![
        (
            ring_json(
                json!(2),
                good_map.clone(),
                &vnode_hash_interval(3).unwrap(),
                SHA256_MAX_HEX,
                "sha256",
                "2.1.0",
            ),
            FashError::BadInterval {
                stored: vnode_hash_interval(3).unwrap(),
                expected: iv2.clone(),
            },
        ),
        (
            ring_json(json!(2), good_map.clone(), &iv2, "FFFF", "sha256", "2.1.0"),
            FashError::BadMax("FFFF".into()),
        ),
        (
            ring_json(
                json!(2),
                good_map.clone(),
                &iv2,
                SHA256_MAX_HEX,
                "md5",
                "2.1.0",
            ),
            FashError::UnsupportedAlgorithm("md5".into()),
        ),
        (
            ring_json(
                json!(2),
                good_map.clone(),
                &iv2,
                SHA256_MAX_HEX,
                "sha256",
                "3.0.0",
            ),
            FashError::UnsupportedVersion("3.0.0".into()),
        ),
        (
            ring_json(
                json!(2),
                json!({"a": {"0": 1}}),
                &iv2,
                SHA256_MAX_HEX,
                "sha256",
                "2.1.0",
            ),
            FashError::UnassignedVnode(1),
        ),
        (
            ring_json(
                json!(2),
                json!({"a": {"0": 1, "1": 1}, "b": {"1": 1}}),
                &iv2,
                SHA256_MAX_HEX,
                "sha256",
                "2.1.0",
            ),
            FashError::DuplicateVnode(1),
        ),
        (
            ring_json(
                json!(2),
                json!({"a": {"0": 1, "1": 1, "2": 1}}),
                &iv2,
                SHA256_MAX_HEX,
                "sha256",
                "2.1.0",
            ),
            FashError::VnodeOutOfRange {
                vnode: 2,
                vnode_count: 2,
            },
        ),
        (
            ring_json(json!(0), json!({}), &iv2, SHA256_MAX_HEX, "sha256", "2.1.0"),
            FashError::BadVnodeCount(0),
        ),
        (
            json!({
                "vnodes": 2,
                "algorithm": {"NAME": "sha256", "MAX": SHA256_MAX_HEX, "VNODE_HASH_INTERVAL": iv2},
                "version": "2.1.0"
            })
            .to_string(),
            FashError::MissingField("pnodeToVnodeMap"),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Ring::from_json(&text), Err(want), "{text}");
    }
    assert!(matches!(Ring::from_json("[1,2]"), Err(FashError::Json(_))));
}

#[test]
fn load_accepts_map_before_vnode_count() {
    // Field order is not fash's; the pair-collecting path must agree.
    let ring = Ring::create(7, &["x", "y", "z"]).unwrap();
    let v: Value = serde_json::from_str(&ring.to_json()).unwrap();
    let reordered = format!(
        "{{\"version\":\"2.1.0\",\"pnodeToVnodeMap\":{},\"algorithm\":{},\"vnodes\":7,\"vnodeToPnodeMap\":{{}}}}",
        v["pnodeToVnodeMap"], v["algorithm"]
    );
    assert_eq!(Ring::from_json(&reordered).unwrap(), ring);
    let dup = format!(
        "{{\"pnodeToVnodeMap\":{{\"x\":{{\"0\":1,\"1\":1}},\"y\":{{\"1\":1}}}},\"algorithm\":{},\"vnodes\":2,\"version\":\"2.1.0\"}}",
        json!({"NAME": "sha256", "MAX": SHA256_MAX_HEX, "VNODE_HASH_INTERVAL": vnode_hash_interval(2).unwrap()})
    );
    assert_eq!(Ring::from_json(&dup), Err(FashError::DuplicateVnode(1)));
}

#[test]
fn creation_rules() {
    assert_eq!(
        Ring::create(4, &["a", "b", "a"]),
        Err(FashError::DuplicatePnode("a".into()))
    );
    assert_eq!(Ring::create::<&str>(4, &[]), Err(FashError::NoPnodes));
    // UTF-16 order, as JS sorts: U+1F600 is the surrogate pair D83D DE00,
    // which sorts before U+FF5E, although its UTF-8 bytes sort after.
    let ring = Ring::create(2, &["\u{FF5E}", "\u{1F600}"]).unwrap();
    assert_eq!(
        ring.pnodes(),
        &["\u{1F600}".to_string(), "\u{FF5E}".to_string()]
    );
    // Upper case sorts before lower case, as in JS.
    let ring = Ring::create(3, &["b", "a", "C"]).unwrap();
    assert_eq!(ring.pnodes(), &["C".to_string(), "a".into(), "b".into()]);
    assert_eq!(ring.vnodes_of("C").unwrap(), vec![0]);
}

#[test]
fn remap_and_remove() {
    let mut ring = Ring::create(6, &[P1, P2]).unwrap();
    ring.set_read_only(&[2], true).unwrap();
    let p3 = "tcp://3.moray.emy-11.joyent.us:2020";
    let moves = ring.remap(&[2, 3], p3).unwrap();
    assert_eq!(moves.len(), 2);
    assert_eq!(
        (moves[0].from.as_str(), moves[0].vnodes.as_slice()),
        (P1, &[2u32][..])
    );
    assert_eq!(
        (moves[1].from.as_str(), moves[1].vnodes.as_slice()),
        (P2, &[3u32][..])
    );
    assert_eq!(ring.pnodes().last().unwrap(), p3);
    assert_eq!(ring.vnodes_of(p3).unwrap(), vec![2, 3]);
    // Data moves with the vnode.
    assert!(ring.is_read_only(2));
    assert_eq!(
        ring.remap(&[2], p3),
        Err(FashError::AlreadyOnPnode {
            vnode: 2,
            pnode: p3.into()
        })
    );
    assert_eq!(
        ring.remap(&[6], p3),
        Err(FashError::VnodeOutOfRange {
            vnode: 6,
            vnode_count: 6
        })
    );
    assert_eq!(ring.remap(&[0, 0], p3), Err(FashError::DuplicateVnode(0)));
    // All or nothing: vnode 0 did not move although it came first.
    assert!(ring.remap(&[0, 2], p3).is_err());
    assert_eq!(ring.pnode_of(0), Ok(P1));
    assert_eq!(
        ring.remap_from(P2, &[0], p3),
        Err(FashError::WrongOwner {
            vnode: 0,
            expected: P2.into(),
            actual: P1.into()
        })
    );
    assert_eq!(
        ring.remove_pnode(p3),
        Err(FashError::PnodeNotEmpty {
            pnode: p3.into(),
            vnodes: 2
        })
    );
    ring.remap_from(p3, &[2, 3], P1).unwrap();
    ring.remove_pnode(p3).unwrap();
    assert_eq!(ring.pnodes().len(), 2);
    assert_eq!(
        ring.remove_pnode(p3),
        Err(FashError::UnknownPnode(p3.into()))
    );
    // Removing a pnode in the middle keeps the others' vnodes right.
    let mut ring = Ring::create(6, &["a", "b", "c"]).unwrap();
    ring.remap(&[1, 4], "c").unwrap();
    ring.remove_pnode("b").unwrap();
    assert_eq!(ring.vnodes_of("c").unwrap(), vec![1, 2, 4, 5]);
    assert_eq!(ring.vnodes_of("a").unwrap(), vec![0, 3]);
}

#[test]
fn data_semantics() {
    let mut ring = Ring::create(4, &["a"]).unwrap();
    ring.set_data(1, json!({"note": "x"})).unwrap();
    ring.set_data(2, json!("ro")).unwrap();
    assert!(ring.is_read_only(2));
    assert_eq!(ring.data_vnodes().count(), 2);
    // JS-falsy data resets to 1, as addData does.
    for falsy in [json!(null), json!(0), json!(""), json!(false)] {
        ring.set_data(1, falsy).unwrap();
        assert_eq!(ring.data(1), Ok(&json!(1)));
    }
    ring.set_read_only(&[2], false).unwrap();
    assert!(!ring.has_data_vnodes());
    assert!(ring.set_data(4, json!("ro")).is_err());
}

#[test]
fn diff_and_fingerprint() {
    let a = Ring::create(8, &["a", "b"]).unwrap();
    let mut b = a.clone();
    b.remap(&[1, 3], "c").unwrap();
    b.remap(&[0], "b").unwrap();
    b.set_read_only(&[5], true).unwrap();
    let d = a.diff(&b).unwrap();
    assert_eq!(d.moved_vnodes(), 3);
    assert_eq!(d.moves.len(), 2);
    assert_eq!(
        (
            d.moves[0].from.as_str(),
            d.moves[0].to.as_str(),
            d.moves[0].vnodes.clone()
        ),
        ("a", "b", vec![0])
    );
    assert_eq!(
        (
            d.moves[1].from.as_str(),
            d.moves[1].to.as_str(),
            d.moves[1].vnodes.clone()
        ),
        ("b", "c", vec![1, 3])
    );
    assert_eq!(d.pnodes_added, vec!["c".to_string()]);
    assert_eq!(d.data_changes.len(), 1);
    assert!(a.diff(&a).unwrap().is_empty());
    assert!(a.diff(&Ring::create(9, &["a"]).unwrap()).is_err());

    // Same content reached by different histories: same fingerprint even
    // though pnode order differs.
    let mut x = Ring::create(4, &["p", "q"]).unwrap();
    x.remap(&[0, 1, 2, 3], "r").unwrap();
    x.remove_pnode("p").unwrap();
    x.remove_pnode("q").unwrap();
    x.remap(&[0], "q").unwrap();
    let mut y = Ring::create(4, &["q", "r"]).unwrap();
    y.remap(&[2], "r").unwrap();
    assert_ne!(x.to_json(), y.to_json());
    assert_eq!(x.fingerprint(), y.fingerprint());
    assert_eq!(x.fingerprint().len(), 64);
    y.set_read_only(&[1], true).unwrap();
    assert_ne!(x.fingerprint(), y.fingerprint());
}
