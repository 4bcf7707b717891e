//! Properties of `crds::ring::planned_moves` over random rings and moves.

use std::collections::BTreeSet;

use crds::ring::{assignment_of, planned_moves, pnode_of_shard, topology_ring, vnode_ranges};
use crds::shards::{
    HashRing, MetadataShard, MoveIntent, PeerPlacement, RingIntent, ShardRole, ShardTopologySpec,
};
use proptest::prelude::*;
use wire::fash::Ring;

fn shard(n: usize) -> String {
    format!("{n}.moray.r.example")
}

fn spec(shards: usize, vnodes: u32) -> ShardTopologySpec {
    ShardTopologySpec {
        region: "r".into(),
        dns_domain: "r.example".into(),
        shards: (1..=shards)
            .map(|n| MetadataShard {
                name: shard(n),
                roles: vec![ShardRole::Index],
                peers: vec![PeerPlacement {
                    server: format!("cn{n}"),
                    datacenter: None,
                }],
                morays: 1,
            })
            .collect(),
        ring: HashRing {
            vnodes,
            assignment: None,
            intents: Vec::new(),
        },
        reshard: Default::default(),
    }
}

/// A live ring: `vnodes` vnodes, each on one of `shards` shards as `owners` says.
fn live_ring(shards: usize, owners: &[usize]) -> Ring {
    let pnodes: Vec<String> = (1..=shards).map(|n| pnode_of_shard(&shard(n))).collect();
    let mut ring = Ring::create(owners.len() as u32, &pnodes).unwrap();
    for (v, &o) in owners.iter().enumerate() {
        let to = pnode_of_shard(&shard(o + 1));
        if ring.pnode_of(v as u32).unwrap() != to {
            ring.remap(&[v as u32], &to).unwrap();
        }
    }
    ring
}

/// The document `tritonctl export shardtopology` writes for a ring.
fn exported(shards: usize, live: &Ring) -> ShardTopologySpec {
    let mut s = spec(shards, live.vnode_count());
    s.ring.assignment = Some(assignment_of(live).unwrap());
    s
}

fn same_owners(a: &Ring, b: &Ring) -> bool {
    (0..a.vnode_count()).all(|v| a.pnode_of(v).unwrap() == b.pnode_of(v).unwrap())
}

fn apply(live: &Ring, moves: &[crds::ring::VnodeMove]) -> Ring {
    let mut r = live.clone();
    for m in moves {
        let vs: Vec<u32> = m.vnodes.iter().copied().collect();
        r.remap_from(&pnode_of_shard(&m.from), &vs, &pnode_of_shard(&m.to))
            .unwrap();
    }
    r
}

fn arb_ring() -> impl Strategy<Value = (usize, Vec<usize>)> {
    (2usize..5)
        .prop_flat_map(|shards| (Just(shards), prop::collection::vec(0..shards, shards..120)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(16), ..ProptestConfig::default() })]

    /// A document exported from a ring plans no move against it.
    #[test]
    fn an_exported_document_plans_no_move((shards, owners) in arb_ring()) {
        let live = live_ring(shards, &owners);
        let doc = exported(shards, &live);
        prop_assert!(planned_moves(&doc, &live, &[]).unwrap().is_empty());
        prop_assert!(same_owners(&topology_ring(&doc).unwrap(), &live));
    }

    /// Applying the planned moves to the live ring gives the document's ring,
    /// and once they are recorded done nothing more is planned.
    #[test]
    fn applying_the_planned_moves_gives_the_documents_ring(
        (shards, owners) in arb_ring(),
        picks in prop::collection::vec((0usize..4, 0usize..4, prop::collection::btree_set(0u32..120, 1..20)), 1..4),
    ) {
        let live = live_ring(shards, &owners);
        let mut doc = exported(shards, &live);
        // Moves from a shard's vnodes (in the ring as earlier moves leave
        // it) to another shard, each vnode moved at most once.
        let mut ring = live.clone();
        let mut used = BTreeSet::new();
        for (i, (from, to, want)) in picks.into_iter().enumerate() {
            let (from, to) = (from % shards, to % shards);
            if from == to { continue; }
            let own: Vec<u32> = ring.vnodes_of(&pnode_of_shard(&shard(from + 1))).unwrap_or_default();
            let vs: Vec<u32> = own.into_iter().filter(|v| want.contains(v) && !used.contains(v)).collect();
            if vs.is_empty() { continue; }
            used.extend(vs.iter().copied());
            ring.remap(&vs, &pnode_of_shard(&shard(to + 1))).unwrap();
            doc.ring.intents.push(RingIntent {
                name: Some(format!("m{i}")),
                move_vnodes: Some(MoveIntent {
                    from: shard(from + 1),
                    to: shard(to + 1),
                    vnodes: vnode_ranges(&vs).into_iter().map(|(a, b)| format!("{a}-{b}")).collect(),
                }),
                ..RingIntent::default()
            });
        }
        let moves = planned_moves(&doc, &live, &[]).unwrap();
        let after = apply(&live, &moves);
        let want = topology_ring(&doc).unwrap();
        prop_assert!(same_owners(&after, &want));
        let names: Vec<String> = doc.ring.intents.iter().map(RingIntent::name).collect();
        prop_assert!(planned_moves(&doc, &after, &names).unwrap().is_empty());
        prop_assert!(planned_moves(&doc, &after, &[]).unwrap().is_empty());
    }

    /// A live ring that differs from the document anywhere a move does not
    /// explain is refused, naming that vnode.
    #[test]
    fn any_unexplained_difference_is_refused((shards, owners) in arb_ring(), at in 0usize..120) {
        let live = live_ring(shards, &owners);
        let doc = exported(shards, &live);
        let v = (at % owners.len()) as u32;
        let mut other = live.clone();
        let now = other.pnode_of(v).unwrap().to_string();
        let to = (1..=shards).map(|n| pnode_of_shard(&shard(n))).find(|p| *p != now).unwrap();
        other.remap(&[v], &to).unwrap();
        let e = planned_moves(&doc, &other, &[]).unwrap_err();
        prop_assert_eq!(e.problems.len(), 1);
        prop_assert!(e.to_string().ends_with(&format!(": {v}")), "{}", e);
    }
}
