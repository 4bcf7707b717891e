//! Properties of the ring: serialization round-trips, and a remap moves a
//! key's vnode to another pnode without ever changing the vnode.

use proptest::prelude::*;
use wire::fash::{KeyEncoding, Ring};

/// A ring built by a random history of remaps, data edits and removals.
fn arb_ring() -> impl Strategy<Value = Ring> {
    let op = prop_oneof![
        (prop::collection::vec(0u32..512, 1..20), 0usize..6).prop_map(|(v, p)| (0u8, v, p)),
        (prop::collection::vec(0u32..512, 1..5), 0usize..6).prop_map(|(v, p)| (1u8, v, p)),
        (Just(vec![]), 0usize..6).prop_map(|(v, p)| (2u8, v, p)),
    ];
    (1u32..512, 1usize..5, prop::collection::vec(op, 0..12)).prop_map(|(n, p, ops)| {
        let names: Vec<String> = (0..6)
            .map(|i| format!("tcp://{i}.moray.test:2020"))
            .collect();
        let mut ring = Ring::create(n, &names[..p]).unwrap();
        for (kind, vnodes, target) in ops {
            let vnodes: Vec<u32> = vnodes.into_iter().map(|v| v % n).collect();
            match kind {
                // Errors (duplicates, already there) leave the ring as it was.
                0 => {
                    let _ = ring.remap(&vnodes, &names[target]);
                }
                1 => ring.set_read_only(&vnodes, target % 2 == 0).unwrap(),
                _ => {
                    let _ = ring.remove_pnode(&names[target]);
                }
            }
        }
        ring
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn json_round_trips(ring in arb_ring()) {
        let back = Ring::from_json(&ring.to_json()).unwrap();
        prop_assert_eq!(&back, &ring);
        prop_assert_eq!(back.to_json(), ring.to_json());
        let canon = Ring::from_json(&ring.to_canonical_json()).unwrap();
        prop_assert_eq!(canon.fingerprint(), ring.fingerprint());
        prop_assert!(canon.diff(&ring).unwrap().is_empty());
        // Also through serde, as when a ring is embedded in a document.
        let v = serde_json::to_value(&ring).unwrap();
        let via_serde: Ring = serde_json::from_value(v).unwrap();
        prop_assert_eq!(via_serde, ring);
    }

    #[test]
    fn remap_changes_pnode_never_vnode(
        ring in arb_ring(),
        keys in prop::collection::vec("\\PC{0,24}", 1..40),
        pick in prop::collection::vec(any::<prop::sample::Index>(), 1..30),
        enc in prop_oneof![Just(KeyEncoding::Utf8), Just(KeyEncoding::Latin1Truncate)],
    ) {
        let target = "tcp://new.moray.test:2020";
        let mut moved = pick.iter().map(|i| i.index(ring.vnode_count() as usize) as u32).collect::<Vec<_>>();
        moved.sort_unstable();
        moved.dedup();
        let mut after = ring.clone();
        let moves = after.remap(&moved, target).unwrap();
        prop_assert_eq!(moves.iter().map(|m| m.vnodes.len()).sum::<usize>(), moved.len());
        for key in &keys {
            let (b, a) = (ring.node(key, enc).unwrap(), after.node(key, enc).unwrap());
            prop_assert_eq!(b.vnode, a.vnode);
            prop_assert_eq!(b.data, a.data);
            if moved.binary_search(&b.vnode).is_ok() {
                prop_assert_eq!(a.pnode, target);
            } else {
                prop_assert_eq!(a.pnode, b.pnode);
            }
        }
        // The diff reports exactly the remap.
        let d = ring.diff(&after).unwrap();
        prop_assert_eq!(d.moved_vnodes(), moved.len());
        prop_assert!(d.data_changes.is_empty());
    }
}
