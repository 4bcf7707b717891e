//! electric-moray stand-in: routing matches fash, and writes are refused the
//! way electric-moray and moray refuse them.

use std::sync::Arc;

use serde_json::json;
use sim::manta::{ElectricMoray, MantaError, MorayTier, ShardFault, ShardFaults};
use wire::fash::{KeyEncoding, Ring, transform_key};

const A: &str = "tcp://1.moray.coal.joyent.us:2020";
const B: &str = "tcp://2.moray.coal.joyent.us:2020";
const C: &str = "tcp://3.moray.coal.joyent.us:2020";
const ACCT: &str = "/a3829ca2-0966-60ce-9dc3-e4e9060f0950";

fn setup(vnodes: u32, pnodes: &[&str]) -> (Arc<MorayTier>, Arc<ElectricMoray>, Ring) {
    let tier = MorayTier::new();
    for p in pnodes {
        tier.add_shard(p);
    }
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    let ring = Ring::create(vnodes, pnodes).unwrap();
    em.load_ring(&ring.to_json()).unwrap();
    (tier, em, ring)
}

#[tokio::test]
async fn routing_matches_fash() {
    let (tier, em, ring) = setup(1000, &[A, B, C]);
    let mut keys = vec![format!("{ACCT}/stor"), format!("{ACCT}/public/x")];
    for i in 0..150 {
        keys.push(format!("{ACCT}/stor/dir{}/obj{i}", i % 37));
    }
    let mut per_shard = std::collections::BTreeMap::new();
    for key in &keys {
        let put = em
            .put_object("manta", key, json!({"k": key}))
            .await
            .unwrap();
        let want = ring
            .node(transform_key("manta", key), KeyEncoding::Utf8)
            .unwrap();
        assert_eq!(
            (put.node.pnode.as_str(), put.node.vnode),
            (want.pnode, want.vnode),
            "{key}"
        );
        let row = tier.shard(want.pnode).unwrap().get("manta", key).unwrap();
        assert_eq!(row.vnode, Some(want.vnode));
        let got = em.get_object("manta", key).await.unwrap();
        assert_eq!(got.value, json!({"k": key}));
        assert_eq!(got.node, put.node);
        *per_shard.entry(want.pnode.to_owned()).or_insert(0) += 1;
        // Exactly one shard holds it.
        assert_eq!(
            tier.shards()
                .iter()
                .filter(|s| s.contains("manta", key))
                .count(),
            1
        );
    }
    assert_eq!(
        per_shard.len(),
        3,
        "keys spread over every shard: {per_shard:?}"
    );
    // All entries of one directory land on one vnode.
    let v: std::collections::BTreeSet<u32> = (0..5)
        .map(|i| {
            em.locate("manta", &format!("{ACCT}/stor/dir3/o{i}"))
                .unwrap()
                .vnode
        })
        .collect();
    assert_eq!(v.len(), 1);
    em.del_object("manta", &keys[0]).await.unwrap();
    assert_eq!(
        em.get_object("manta", &keys[0]).await.unwrap_err().name(),
        "ObjectNotFoundError"
    );
}

#[tokio::test]
async fn tv3_routes_on_a_production_size_ring() {
    let tier = MorayTier::new();
    let pnodes: Vec<String> = (1..=3)
        .map(|i| format!("tcp://{i}.moray.staging.joyent.us:2020"))
        .collect();
    for p in &pnodes {
        tier.add_shard(p);
    }
    let em = ElectricMoray::new("em-0", tier, KeyEncoding::Utf8);
    em.install_ring(Ring::create(10_000_000, &pnodes).unwrap());
    let node = em
        .locate(
            "manta",
            "/bc8cd146-fecb-11e1-bd8a-bb6f54b49808/stor/cmd.tgz",
        )
        .unwrap();
    assert_eq!(node.vnode, 7_336_153);
    assert_eq!(node.data, json!(1));
}

#[tokio::test]
async fn read_only_vnode_refuses_writes_not_reads() {
    let (_tier, em, mut ring) = setup(64, &[A, B]);
    let key = format!("{ACCT}/stor/d/o1");
    let other = (0..200)
        .map(|i| format!("{ACCT}/stor/e{i}/o"))
        .find(|k| em.locate("manta", k).unwrap().vnode != em.locate("manta", &key).unwrap().vnode)
        .unwrap();
    em.put_object("manta", &key, json!(1)).await.unwrap();
    let vnode = em.locate("manta", &key).unwrap().vnode;
    ring.set_read_only(&[vnode], true).unwrap();
    let before = em.status().ring_fingerprint;
    em.load_ring(&ring.to_json()).unwrap();
    assert_ne!(em.status().ring_fingerprint, before);
    assert_eq!(em.status().read_only_vnodes, 1);

    let err = em.put_object("manta", &key, json!(2)).await.unwrap_err();
    assert_eq!(err, MantaError::ReadOnlyVnode { vnode });
    assert_eq!(
        (err.name(), err.to_string().as_str()),
        ("ReadOnlyError", "some vnodes are in read-only mode")
    );
    assert!(err.is_read_only());
    assert_eq!(
        em.del_object("manta", &key).await.unwrap_err(),
        MantaError::ReadOnlyVnode { vnode }
    );
    // Reads are unaffected, and the value is the one before the refusal.
    assert_eq!(em.get_object("manta", &key).await.unwrap().value, json!(1));
    // Other vnodes still take writes.
    em.put_object("manta", &other, json!(3)).await.unwrap();
}

#[tokio::test]
async fn read_only_pnodes() {
    let (tier, em, _ring) = setup(64, &[A, B]);
    let key_on = |p: &str| {
        (0..500)
            .map(|i| format!("{ACCT}/stor/k{i}/o"))
            .find(|k| em.locate("manta", k).unwrap().pnode == p)
            .unwrap()
    };
    let (ka, kb) = (key_on(A), key_on(B));
    em.put_object("manta", &ka, json!("a")).await.unwrap();

    // e-m config: A read-only; B missing counts as read-only too.
    em.set_index_shards(Some([(A, true)]));
    let err = em.put_object("manta", &ka, json!("x")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pnode \"{A}\" is in read-only mode")
    );
    assert_eq!(err.name(), "ReadOnlyError");
    assert!(matches!(
        em.put_object("manta", &kb, json!("x")).await,
        Err(MantaError::ReadOnlyPnode { .. })
    ));
    assert_eq!(em.get_object("manta", &ka).await.unwrap().value, json!("a"));
    em.set_index_shards(Some([(A, false), (B, false)]));
    em.put_object("manta", &kb, json!("b")).await.unwrap();
    assert_eq!(em.status().index_shards.unwrap().len(), 2);

    // The shard itself read-only.
    tier.shard(B).unwrap().set_read_only(true);
    assert_eq!(
        em.put_object("manta", &kb, json!("y")).await.unwrap_err(),
        MantaError::ReadOnlyPnode { pnode: B.into() }
    );
    assert_eq!(em.get_object("manta", &kb).await.unwrap().value, json!("b"));
    em.put_object("manta", &ka, json!("a2")).await.unwrap();
}

#[tokio::test]
async fn backend_decides_shard_health() {
    let faults = Arc::new(ShardFaults::new());
    let tier = MorayTier::with_backend(faults.clone());
    tier.add_shard(A);
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    em.install_ring(Ring::create(8, &[A]).unwrap());
    em.put_object("manta", "/x/y", json!(1)).await.unwrap();

    faults.set(A, Some(ShardFault::NoPrimary));
    let err = em.put_object("manta", "/x/y", json!(2)).await.unwrap_err();
    assert_eq!(
        (err.name(), err.to_string().as_str()),
        ("NoDatabasePeersError", "no manatee peers available")
    );
    assert_eq!(
        em.get_object("manta", "/x/y").await.unwrap_err().name(),
        "NoDatabasePeersError"
    );

    faults.set(A, Some(ShardFault::WritesHang));
    assert_eq!(
        em.put_object("manta", "/x/y", json!(2))
            .await
            .unwrap_err()
            .name(),
        "QueryTimeoutError"
    );
    assert_eq!(
        em.get_object("manta", "/x/y").await.unwrap().value,
        json!(1)
    );

    faults.set(A, None);
    faults.set_all(Some(ShardFault::NoDatabase));
    assert_eq!(
        em.get_object("manta", "/x/y").await.unwrap_err().name(),
        "NoDatabaseError"
    );
    faults.clear();
    em.put_object("manta", "/x/y", json!(3)).await.unwrap();
}

#[tokio::test]
async fn ring_loading_and_mixed_rings() {
    let tier = MorayTier::new();
    tier.add_shard(A);
    tier.add_shard(B);
    let old = Ring::create(16, &[A]).unwrap();
    let mut new = old.clone();
    new.remap(&(0..8).collect::<Vec<_>>(), B).unwrap();
    let em0 = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    let em1 = ElectricMoray::new("em-1", tier.clone(), KeyEncoding::Utf8);

    assert_eq!(
        em0.put_object("manta", "/k/a", json!(1)).await.unwrap_err(),
        MantaError::NoRing
    );
    assert_eq!(em0.status().ring_fingerprint, None);

    em0.load_ring(&old.to_json()).unwrap();
    em1.load_ring(&new.to_json()).unwrap();
    let (f_old, f_new) = (
        em0.ring_fingerprint().unwrap(),
        em1.ring_fingerprint().unwrap(),
    );
    assert_ne!(f_old, f_new);
    assert_eq!(f_new, new.fingerprint());

    // A bad ring is refused and the loaded one stays.
    let mut bad: serde_json::Value = serde_json::from_str(&new.to_json()).unwrap();
    bad["algorithm"]["VNODE_HASH_INTERVAL"] = json!("1234");
    assert!(matches!(
        em0.load_ring(&bad.to_string()),
        Err(MantaError::Ring(_))
    ));
    assert_eq!(em0.status().ring_fingerprint, Some(f_old));

    // The same key routes differently on the two instances while a rollout
    // is half done.
    let key = (0..100)
        .map(|i| format!("/k{i}/o"))
        .find(|k| em1.locate("manta", k).unwrap().pnode == B)
        .unwrap();
    assert_eq!(em0.locate("manta", &key).unwrap().pnode, A);
    assert_eq!(
        em0.locate("manta", &key).unwrap().vnode,
        em1.locate("manta", &key).unwrap().vnode
    );
    em1.put_object("manta", &key, json!("new")).await.unwrap();
    assert!(tier.shard(B).unwrap().contains("manta", &key));
    assert_eq!(
        em0.get_object("manta", &key).await.unwrap_err().name(),
        "ObjectNotFoundError"
    );

    // A pnode in the ring without a moray shard.
    let mut orphan = Ring::create(4, &[A]).unwrap();
    orphan.remap(&[0, 1, 2, 3], C).unwrap();
    em0.install_ring(orphan);
    assert_eq!(
        em0.put_object("manta", "/z/o", json!(1)).await.unwrap_err(),
        MantaError::UnknownShard { pnode: C.into() }
    );
}

#[tokio::test]
async fn uploads_bucket_co_locates_with_the_object_directory() {
    let (_tier, em, _ring) = setup(4096, &[A, B, C]);
    let dir = format!("{ACCT}/stor/big");
    let obj = em.locate("manta", &format!("{dir}/file")).unwrap();
    let mpu = em
        .locate("manta_uploads", &format!("upload-123:{dir}/file"))
        .unwrap();
    assert_eq!(obj, mpu);
}
