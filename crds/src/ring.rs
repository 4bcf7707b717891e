//! The one hash ring a `ShardTopology` describes: the change review, the
//! controller and the simulator all build it here, so they cannot disagree.
//!
//! Why here: the simulator may depend on nothing of ours but `wire`, `coord`
//! and `crds`, and the controller must not lean on the simulator; `crds` owns
//! the document and `wire` the ring, so `crds` takes a dependency on `wire`
//! (pure, no I/O, like `crds` itself) and turns a spec into a ring in one
//! function. A function in `wire` over plain inputs would leave each caller
//! its own reading of the spec (which shards are pnodes, what a split moves),
//! which is exactly the drift this module ends.
//!
//! The rules, and where they come from (research/resharding.md):
//! - pnodes are named as Manta names them, `tcp://<shard>:2020`
//!   (`manta-adm create-topology`; electric-moray matches a pnode to an
//!   index shard by exactly that string, port 2020: §1.3), so the ring the
//!   review shows is byte for byte the ring image electric-moray loads;
//! - the ring is born as `fash create` makes it, round-robin over the index
//!   shards in fash's sort order (§1.3), leaving out the shards that are only
//!   split targets: a new shard holds nothing until its split moves vnodes
//!   onto it (RFD 103; manta-reshard adds the new pnode by remapping, §3.7);
//! - an explicit `assignment` then remaps its vnodes (`fash remap-vnode`);
//! - each split intent, in order, moves `fraction` of its source's vnodes,
//!   the highest-numbered ones (the document's stated rule, see
//!   [`crate::shards::SplitIntent::fraction`]), and only vnodes its source
//!   owns at that point ([`Ring::remap_from`]).
//!
//! Which vnodes a split takes differs from manta-reshard, which moves every
//! second entry of `fash get-vnodes` (§3.7) and only halves; any subset is
//! safe (rows carry `_vnode`, §1.11), and a contiguous upper block keeps the
//! review and the ghost-row deletion readable.

use wire::fash::{FashError, Ring};

use crate::shards::{ShardTopologySpec, parse_fraction, parse_vnode_range};

/// The port electric-moray expects in an index shard's pnode.
pub const PNODE_PORT: u16 = 2020;

/// The pnode electric-moray knows an index shard by: `tcp://<shard>:2020`.
pub fn pnode_of_shard(shard: &str) -> String {
    format!("tcp://{shard}:{PNODE_PORT}")
}

/// Why a spec describes no ring (validation reports these with field paths;
/// this is for callers that build rings from unvalidated input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("spec.ring.assignment: {0}")]
    BadVnodeRange(String),
    #[error("spec.ring.intents[{index}].split.fraction: {message}")]
    BadFraction { index: usize, message: String },
    #[error("spec.shards: no shard has the `index` role to hold the ring")]
    NoIndexShards,
    #[error("hash ring: {0}")]
    Fash(#[from] FashError),
}

/// The ring before its split intents: `fash create` over the index shards
/// that are not only split targets, then the explicit assignment.
pub fn base_ring(spec: &ShardTopologySpec) -> Result<Ring, RingError> {
    let index = spec.index_shards();
    if index.is_empty() {
        return Err(RingError::NoIndexShards);
    }
    let targets: Vec<&str> = spec
        .ring
        .intents
        .iter()
        .map(|i| i.split.to.as_str())
        .collect();
    let mut born: Vec<&str> = index
        .iter()
        .copied()
        .filter(|s| !targets.contains(s))
        .collect();
    if born.is_empty() {
        born = index;
    }
    let pnodes: Vec<String> = born.into_iter().map(pnode_of_shard).collect();
    let mut ring = Ring::create(spec.ring.vnodes, &pnodes)?;
    for a in spec.ring.assignment.iter().flatten() {
        let to = pnode_of_shard(&a.shard);
        let mut vnodes = Vec::new();
        for r in &a.vnodes {
            let (lo, hi) = parse_vnode_range(r).map_err(RingError::BadVnodeRange)?;
            for v in lo..=hi {
                if ring.pnode_of(v)? != to {
                    vnodes.push(v);
                }
            }
        }
        if !vnodes.is_empty() {
            ring.remap(&vnodes, &to)?;
        }
    }
    Ok(ring)
}

/// The ring the document describes: [`base_ring`], then every split intent
/// in order. The review plans against it, the controller will reshard to
/// it, and the simulator publishes it as the `manta-hash-ring` image.
pub fn topology_ring(spec: &ShardTopologySpec) -> Result<Ring, RingError> {
    let mut ring = base_ring(spec)?;
    for (index, intent) in spec.ring.intents.iter().enumerate() {
        let s = &intent.split;
        let (num, den) = parse_fraction(&s.fraction)
            .map_err(|message| RingError::BadFraction { index, message })?;
        let from = pnode_of_shard(&s.from);
        let vnodes = ring.vnodes_of(&from)?;
        let count = (vnodes.len() as u64 * u64::from(num) / u64::from(den)) as usize;
        let moving = &vnodes[vnodes.len() - count..];
        if !moving.is_empty() {
            ring.remap_from(&from, moving, &pnode_of_shard(&s.to))?;
        }
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(extra: &str) -> ShardTopologySpec {
        let yaml = format!(
            "region: r\ndnsDomain: r.example\nshards:\n  - {{name: 1.moray.r.example, roles: [index], peers: [{{server: a}}]}}\n  - {{name: 2.moray.r.example, roles: [index], peers: [{{server: b}}]}}\n  - {{name: 3.moray.r.example, roles: [index], peers: [{{server: c}}]}}\nring:\n  vnodes: 10\n{extra}"
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    fn of(ring: &Ring, shard: &str) -> Vec<u32> {
        ring.vnodes_of(&pnode_of_shard(shard)).unwrap()
    }

    #[test]
    fn pnodes_are_named_as_electric_moray_matches_them() {
        assert_eq!(
            pnode_of_shard("1.moray.us-east.joyent.us"),
            "tcp://1.moray.us-east.joyent.us:2020"
        );
        let ring = topology_ring(&topology("")).unwrap();
        assert_eq!(
            ring.pnodes(),
            [
                "tcp://1.moray.r.example:2020",
                "tcp://2.moray.r.example:2020",
                "tcp://3.moray.r.example:2020"
            ]
        );
        assert_eq!(of(&ring, "1.moray.r.example"), vec![0, 3, 6, 9]);
    }

    // Moved from controller/src/gitops/diff.rs with the builder.
    #[test]
    fn an_explicit_assignment_is_the_ring() {
        let t = topology(
            "  assignment:\n    - {shard: 1.moray.r.example, vnodes: [\"0-6\"]}\n    - {shard: 2.moray.r.example, vnodes: [\"7-9\"]}\n",
        );
        let ring = topology_ring(&t).unwrap();
        assert_eq!(
            of(&ring, "1.moray.r.example"),
            (0..=6).collect::<Vec<u32>>()
        );
        assert_eq!(of(&ring, "2.moray.r.example"), vec![7, 8, 9]);
        assert!(of(&ring, "3.moray.r.example").is_empty());
    }

    // Moved from controller/src/gitops/diff.rs with the builder.
    #[test]
    fn a_split_moves_the_highest_share_of_the_source_onto_a_target_that_had_none() {
        // 3 is only a split target: the base ring is round-robin over 1 and 2.
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 3.moray.r.example, fraction: 2/5}\n",
        );
        let base = base_ring(&t).unwrap();
        assert_eq!(of(&base, "1.moray.r.example"), vec![0, 2, 4, 6, 8]);
        assert!(
            base.vnodes_of(&pnode_of_shard("3.moray.r.example"))
                .is_err()
        );
        let ring = topology_ring(&t).unwrap();
        // 1 held 0,2,4,6,8; 2/5 of 5 = 2 vnodes, the highest: 6 and 8.
        assert_eq!(of(&ring, "3.moray.r.example"), vec![6, 8]);
        assert_eq!(of(&ring, "1.moray.r.example"), vec![0, 2, 4]);
        assert_eq!(of(&ring, "2.moray.r.example"), vec![1, 3, 5, 7, 9]);
    }

    #[test]
    fn splits_apply_in_order_and_may_split_a_new_shard_again() {
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 2.moray.r.example}\n    - split: {from: 2.moray.r.example, to: 3.moray.r.example}\n",
        );
        // Both 2 and 3 are targets: the ring is born on 1 alone.
        let ring = topology_ring(&t).unwrap();
        assert_eq!(of(&ring, "1.moray.r.example"), vec![0, 1, 2, 3, 4]);
        // 1/2 of 2's five vnodes is two.
        assert_eq!(of(&ring, "2.moray.r.example"), vec![5, 6, 7]);
        assert_eq!(of(&ring, "3.moray.r.example"), vec![8, 9]);
    }

    #[test]
    fn unusable_specs_are_typed_errors() {
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 3.moray.r.example, fraction: 3/2}\n",
        );
        assert!(matches!(
            topology_ring(&t),
            Err(RingError::BadFraction { index: 0, .. })
        ));
        let t = topology("  assignment:\n    - {shard: 1.moray.r.example, vnodes: [\"9-2\"]}\n");
        assert!(matches!(base_ring(&t), Err(RingError::BadVnodeRange(_))));
        let t =
            topology("  intents:\n    - split: {from: 9.moray.r.example, to: 3.moray.r.example}\n");
        assert!(matches!(
            topology_ring(&t),
            Err(RingError::Fash(FashError::UnknownPnode(_)))
        ));
    }
}
