//! electric-moray loads its hash ring from the IMGAPI image that SAPI's
//! `HASH_RING_IMAGE` names, and switches when that metadata changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sim::dc::{Datacenter, DcConfig};
use sim::manta::ring_image::{
    HASH_RING_IMAGE, HASH_RING_IMGAPI_SERVICE, current_ring_image, follow_ring_image,
    load_ring_image, load_ring_image_stamped, pnode_of_shard, publish_ring_image,
    ring_for_topology, set_ring_image,
};
use sim::manta::{ElectricMoray, MorayTier};
use sim::scenario::{ScenarioOptions, SimScenario};
use wire::apis::JsonMap;
use wire::fash::{KeyEncoding, Ring, transform_key};

const A: &str = "tcp://1.moray.coal.joyent.us:2020";
const B: &str = "tcp://2.moray.coal.joyent.us:2020";
const C: &str = "tcp://3.moray.coal.joyent.us:2020";
const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
const PATIENCE: Duration = Duration::from_secs(30);

/// Poll a condition until it holds, with a generous deadline.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn owner_of(ring: &Ring, key: &str) -> String {
    ring.node(transform_key("manta", key), KeyEncoding::Utf8)
        .unwrap()
        .pnode
        .to_owned()
}

#[tokio::test]
async fn the_ring_comes_from_the_image_hash_ring_image_names_and_follows_it() {
    let dc = Datacenter::new(DcConfig::default());
    dc.seed_application("manta", OWNER, JsonMap::new(), JsonMap::new());
    // Ring one: two shards. Ring two: half of shard 2's vnodes moved to shard 3.
    let one = Ring::create(1000, &[A, B]).unwrap();
    let mut two = one.clone();
    let moved: Vec<u32> = (500..1000)
        .filter(|v| one.vnode_node(*v).unwrap().pnode == B)
        .collect();
    two.remap(&moved, C).unwrap();
    let img_one = publish_ring_image(&dc, &one, OWNER, JsonMap::new()).unwrap();
    let img_two = publish_ring_image(&dc, &two, OWNER, JsonMap::new()).unwrap();
    // The images are ordinary active IMGAPI images.
    let m = dc.imgapi_get_image(&img_one).unwrap();
    assert_eq!(m.name, "manta-hash-ring");
    // As manta-adm and manta-reshard make them: a gzip tar of hash_ring/,
    // the LevelDB ring, with a stamp naming the image.
    assert_eq!(m.files[0].compression, "gzip");
    assert_eq!(
        (m.kind.as_str(), m.os.as_str(), m.public),
        ("other", "other", false)
    );
    let (file, _) = dc.imgapi_get_file(&img_one).unwrap();
    let x = tempfile::tempdir().unwrap();
    let stamp = fashdb::unpack(&file, &img_one, x.path())
        .unwrap()
        .expect("a stamp");
    assert_eq!(stamp.image_uuid, img_one);
    assert!(
        x.path().join("CURRENT").is_file(),
        "hash_ring/ holds a LevelDB"
    );
    assert_eq!(fashdb::load(x.path()).unwrap(), one);
    assert_eq!(
        load_ring_image_stamped(&dc, &img_two)
            .unwrap()
            .stamp
            .unwrap()
            .image_uuid,
        img_two
    );
    assert_eq!(
        load_ring_image(&dc, &img_two).unwrap().fingerprint(),
        two.fingerprint()
    );

    let tier = MorayTier::new();
    for p in [A, B, C] {
        tier.add_shard(p);
    }
    let em = ElectricMoray::new("em-0", tier.clone(), KeyEncoding::Utf8);
    let follower = follow_ring_image(dc.clone(), em.clone(), Duration::from_millis(5));
    // No HASH_RING_IMAGE yet: no ring.
    assert_eq!(current_ring_image(&dc).unwrap(), None);
    assert!(em.ring().is_none());

    set_ring_image(&dc, &img_one, Some("http://imgapi.test")).unwrap();
    until("ring one loaded", || {
        em.ring_image().as_deref() == Some(&img_one)
    })
    .await;
    let st = em.status();
    assert_eq!(st.ring_fingerprint, Some(one.fingerprint()));
    assert_eq!(st.ring_image.as_deref(), Some(img_one.as_str()));
    let app = dc.sapi_list_applications(&JsonMap::new()).remove(0);
    assert_eq!(
        app.metadata[HASH_RING_IMGAPI_SERVICE],
        json!("http://imgapi.test")
    );

    // A key on a vnode the second ring moves: it routes where ring one says.
    let key = (0..10_000)
        .map(|i| format!("/acct/stor/dir/obj{i}"))
        .find(|k| owner_of(&one, k) == B && owner_of(&two, k) == C)
        .expect("some key moves from shard 2 to shard 3");
    let put = em.put_object("manta", &key, json!({"v": 1})).await.unwrap();
    assert_eq!(put.node.pnode, B);
    assert!(tier.shard(B).unwrap().contains("manta", &key));
    assert!(!tier.shard(C).unwrap().contains("manta", &key));

    // HASH_RING_IMAGE changes: the e-m switches to the ring of the new image.
    set_ring_image(&dc, &img_two, None).unwrap();
    until("ring two loaded", || {
        em.ring_image().as_deref() == Some(&img_two)
    })
    .await;
    assert_eq!(em.status().ring_fingerprint, Some(two.fingerprint()));
    assert_eq!(em.locate("manta", &key).unwrap().pnode, C);

    // An image that holds no ring: the ring in service stays, the error shows.
    let junk = dc.new_uuid();
    let mut p = JsonMap::new();
    p.insert("action".into(), json!("import"));
    let manifest = json!({"v": 2, "uuid": junk, "owner": OWNER, "name": "manta-hash-ring",
        "version": "1", "type": "other", "os": "other"});
    dc.imgapi_image_action(&junk, &p, manifest.as_object().unwrap())
        .unwrap();
    let mut f = JsonMap::new();
    f.insert("compression".into(), json!("none"));
    dc.imgapi_add_file(&junk, &f, b"not a ring".to_vec())
        .unwrap();
    set_ring_image(&dc, &junk, None).unwrap();
    until("the bad image is reported", || {
        em.status()
            .ring_image_error
            .is_some_and(|e| e.contains(&junk))
    })
    .await;
    assert_eq!(em.ring_image().as_deref(), Some(img_two.as_str()));
    assert_eq!(em.locate("manta", &key).unwrap().pnode, C);
    follower.abort();
}

/// A scenario with a ShardTopology publishes the ring it describes and
/// points HASH_RING_IMAGE at it.
#[tokio::test]
async fn a_topology_scenario_publishes_its_ring_image() {
    let text = r#"
apiVersion: tritonctl/v1alpha1
kind: ShardTopology
metadata: {name: small}
spec:
  region: small
  dnsDomain: small.example.com
  shards:
    - name: 1.moray.small.example.com
      roles: [marlin, storage]
      peers: [{server: cn01}]
    - name: 2.moray.small.example.com
      roles: [index]
      peers: [{server: cn02}]
    - name: 3.moray.small.example.com
      roles: [index]
      peers: [{server: cn03}]
  ring:
    vnodes: 64
    assignment:
      - {shard: 3.moray.small.example.com, vnodes: ["0-9"]}
"#;
    let (docs, diags) = crds::parse_documents("small.yaml", text);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let doc = docs[0].document.clone();
    let crds::Document::ShardTopology(t) = &doc else {
        panic!("not a topology")
    };
    let want = ring_for_topology(&t.spec).unwrap();
    let two = pnode_of_shard("2.moray.small.example.com");
    let three = pnode_of_shard("3.moray.small.example.com");
    assert!((0..10).all(|v| want.vnode_node(v).unwrap().pnode == three));
    assert_eq!(
        want.vnode_node(10).unwrap().pnode,
        two,
        "round-robin after the assignment"
    );

    let ens = coord::mem::MemEnsemble::new();
    let sc = SimScenario::start(&[doc], Arc::new(ens), ScenarioOptions::default())
        .await
        .unwrap();
    let image = current_ring_image(&sc.dc)
        .unwrap()
        .expect("HASH_RING_IMAGE set");
    let app = sc
        .dc
        .sapi_list_applications(&JsonMap::new())
        .into_iter()
        .find(|a| a.name == "manta")
        .unwrap();
    assert_eq!(app.metadata[HASH_RING_IMAGE], json!(image));
    assert_eq!(
        app.metadata[HASH_RING_IMGAPI_SERVICE],
        json!(sc.servers.urls().imgapi)
    );
    assert_eq!(
        load_ring_image(&sc.dc, &image).unwrap().fingerprint(),
        want.fingerprint()
    );
    sc.shutdown().await;
}
