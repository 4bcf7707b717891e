//! One ring per `ShardTopology`: for every example document, the ring the
//! change review plans against and the ring electric-moray loads from the
//! simulator's `manta-hash-ring` image are the same ring (same pnodes, same
//! owner for every vnode, same per-vnode data), because both come from
//! `crds::ring::topology_ring`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crds::Document;
use crds::ring::{base_ring, pnode_of_shard};
use crds::shards::ShardTopology;
use sim::manta::ring_image::{current_ring_image, sync_ring_image};
use sim::manta::{ElectricMoray, MorayTier};
use sim::scenario::{ScenarioOptions, SimScenario};
use wire::fash::{KeyEncoding, Ring};

/// Every `ShardTopology` under `examples/`, with the file it came from.
fn example_topologies() -> Vec<(PathBuf, ShardTopology)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&e2e::repo().join("examples"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let input = tritonctl::cli::input::read(std::slice::from_ref(&f)).expect("read example");
        assert!(
            !input.has_errors(),
            "{}: {:?}",
            f.display(),
            input.diagnostics
        );
        for d in input.documents {
            if let Document::ShardTopology(t) = d.document {
                out.push((f.clone(), t));
            }
        }
    }
    out
}

/// The ring electric-moray runs in a simulated datacenter started from the
/// document: the image `HASH_RING_IMAGE` names, loaded as e-m loads it.
async fn ring_electric_moray_loads(t: &ShardTopology) -> Ring {
    let ensemble = coord::mem::MemEnsemble::new();
    let scenario = SimScenario::start(
        &[Document::ShardTopology(t.clone())],
        Arc::new(ensemble),
        ScenarioOptions::default(),
    )
    .await
    .expect("the simulated datacenter starts");
    let image = current_ring_image(&scenario.dc)
        .unwrap()
        .expect("the scenario names a ring image in SAPI");
    let em = ElectricMoray::new("em-ring-paths", MorayTier::new(), KeyEncoding::Utf8);
    assert_eq!(
        sync_ring_image(&scenario.dc, &em).unwrap().as_deref(),
        Some(image.as_str())
    );
    let ring = em.ring().expect("electric-moray loaded a ring");
    scenario.shutdown().await;
    (*ring).clone()
}

#[tokio::test]
async fn every_example_ring_is_the_same_through_the_review_and_the_simulator() {
    let topologies = example_topologies();
    assert!(
        topologies.len() >= 2,
        "expected the us-east and split-shard topologies, found {}",
        topologies.len()
    );
    let mut splits = 0;
    for (file, t) in &topologies {
        let what = file.display();
        let review = tritonctl::gitops::review::desired_ring(&t.spec)
            .unwrap_or_else(|e| panic!("{what}: the review builds no ring: {e}"));
        let loaded = ring_electric_moray_loads(t).await;
        assert_eq!(
            loaded.pnodes(),
            review.pnodes(),
            "{what}: pnodes differ between the simulator's ring image and the review"
        );
        assert_eq!(
            loaded.to_canonical_json(),
            review.to_canonical_json(),
            "{what}: the simulator's ring image and the review's ring differ"
        );
        assert_eq!(loaded.fingerprint(), review.fingerprint(), "{what}");
        // Every index shard is known to electric-moray by its Manta pnode name.
        for shard in t.spec.index_shards() {
            let pnode = pnode_of_shard(shard);
            assert!(
                review.pnodes().contains(&pnode),
                "{what}: no pnode {pnode} in the ring"
            );
        }
        // A split intent is applied on both paths: its target holds vnodes
        // that the ring before the intents gave to its source.
        let before = base_ring(&t.spec).unwrap();
        for i in &t.spec.ring.intents {
            splits += 1;
            let s = i.split.as_ref().expect("the examples' intents are splits");
            let (from, to) = (pnode_of_shard(&s.from), pnode_of_shard(&s.to));
            let moved = loaded.vnodes_of(&to).unwrap();
            assert!(
                !moved.is_empty(),
                "{what}: the split onto {to} moved nothing"
            );
            assert!(
                moved
                    .iter()
                    .all(|v| before.pnode_of(*v).unwrap() == from.as_str()),
                "{what}: {to} holds vnodes {from} did not have"
            );
        }
    }
    assert!(splits > 0, "no example has a split intent to check");
}
