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
//! - each intent, in order, moves vnodes its source owns at that point
//!   ([`Ring::remap_from`]): a `split` the highest-numbered `fraction` of
//!   them (the document's stated rule, see
//!   [`crate::shards::SplitIntent::fraction`]); `splitWays` cuts them into
//!   N contiguous shares by rank, the source keeping the lowest; `move` the
//!   listed ones; `moveHottest` the K with the most rows ([`VnodeCounts`]);
//!   `addIndexShard` none (its shard is born empty, like a split target).
//!
//! [`planned_moves`] turns a document into the moves the resharding
//! operation executes against the live ring (`plan.rs`).
//!
//! Which vnodes a split takes differs from manta-reshard, which moves every
//! second entry of `fash get-vnodes` (§3.7) and only halves; any subset is
//! safe (rows carry `_vnode`, §1.11), and a contiguous upper block keeps the
//! review and the ghost-row deletion readable.

mod plan;
mod ranges;

use std::collections::BTreeMap;

use wire::fash::{FashError, Ring};

use crate::shards::{
    IntentForm, ShardTopologySpec, VnodeAssignment, parse_fraction, parse_vnode_range,
};

pub use plan::{RingDisagreement, RingProblem, VnodeMove, planned_moves, planned_moves_with};
pub use ranges::{render_ranges, vnode_ranges};

/// The port electric-moray expects in an index shard's pnode.
pub const PNODE_PORT: u16 = 2020;

/// Rows per vnode as observed on a shard (`SELECT _vnode, count(*)`): what
/// `moveHottest` chooses by. A vnode absent from the map counts as 0.
pub type VnodeCounts = BTreeMap<u32, u64>;

/// The pnode electric-moray knows an index shard by: `tcp://<shard>:2020`.
pub fn pnode_of_shard(shard: &str) -> String {
    format!("tcp://{shard}:{PNODE_PORT}")
}

/// The shard a pnode names (`tcp://<shard>:2020` -> `<shard>`); None for a
/// pnode of another form (the ring then names something no shard is).
pub fn shard_of_pnode(pnode: &str) -> Option<&str> {
    pnode
        .strip_prefix("tcp://")?
        .strip_suffix(&format!(":{PNODE_PORT}"))
}

/// A pnode shown as its shard when it is one.
fn shown(pnode: &str) -> &str {
    shard_of_pnode(pnode).unwrap_or(pnode)
}

/// Why a spec describes no ring (validation reports these with field paths;
/// this is for callers that build rings from unvalidated input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("spec.ring.assignment: {0}")]
    BadVnodeRange(String),
    #[error("spec.ring.intents[{index}].split.fraction: {message}")]
    BadFraction { index: usize, message: String },
    #[error("spec.ring.intents[{index}]: {message}")]
    BadIntent { index: usize, message: String },
    #[error(
        "spec.ring.intents[{index}].{form}: vnodes {} are not on `{from}` at this point of the ring ({count} vnode(s)); a move takes only vnodes its source owns",
        render_ranges(.vnodes, 8)
    )]
    NotOwned {
        index: usize,
        form: &'static str,
        from: String,
        vnodes: Vec<(u32, u32)>,
        count: usize,
    },
    #[error("spec.shards: no shard has the `index` role to hold the hash ring")]
    NoIndexShards,
    #[error("hash ring: {0}")]
    Fash(#[from] FashError),
}

/// The shards a ring is born without: those its splits create and those it
/// adds to the index tier empty (they hold nothing until a move puts
/// vnodes on them).
fn unborn(spec: &ShardTopologySpec) -> Vec<&str> {
    let mut out = Vec::new();
    for i in &spec.ring.intents {
        match i.form() {
            Ok(f) if f.creates_targets() => out.extend(f.targets()),
            Ok(IntentForm::AddIndexShard(a)) => out.push(a.shard.as_str()),
            _ => {}
        }
    }
    out
}

/// The ring before its intents: `fash create` over the index shards that
/// are not born by an intent, then the explicit assignment.
pub fn base_ring(spec: &ShardTopologySpec) -> Result<Ring, RingError> {
    let index = spec.index_shards();
    if index.is_empty() {
        return Err(RingError::NoIndexShards);
    }
    let targets = unborn(spec);
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

/// One intent's move, resolved against the ring at its point in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedMove {
    /// Index in `spec.ring.intents`.
    pub index: usize,
    /// [`crate::shards::RingIntent::name`]: what status records when done.
    pub name: String,
    pub mv: VnodeMove,
}

/// A document's ring, taken apart: the ring it starts from, each intent's
/// move in order, and the ring after all of them.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub base: Ring,
    pub moves: Vec<ResolvedMove>,
    pub after: Ring,
}

/// [`base_ring`], then every intent in order, each resolved against the
/// ring as the intents before it left it (`counts` choose `moveHottest`'s
/// vnodes).
pub fn resolve(spec: &ShardTopologySpec, counts: &VnodeCounts) -> Result<Resolution, RingError> {
    let base = base_ring(spec)?;
    let mut ring = base.clone();
    let mut moves = Vec::new();
    for (index, intent) in spec.ring.intents.iter().enumerate() {
        let form = intent.form().map_err(|e| RingError::BadIntent {
            index,
            message: e.to_string(),
        })?;
        let name = intent.name();
        for (to, vnodes) in intent_vnodes(&ring, index, form, counts)? {
            if vnodes.is_empty() {
                continue;
            }
            let from = form.from().expect("a form that moves names its source");
            ring.remap_from(&pnode_of_shard(from), &vnodes, &pnode_of_shard(to))?;
            moves.push(ResolvedMove {
                index,
                name: name.clone(),
                mv: VnodeMove {
                    from: from.to_string(),
                    to: to.to_string(),
                    vnodes: vnodes.into_iter().collect(),
                },
            });
        }
    }
    Ok(Resolution {
        base,
        moves,
        after: ring,
    })
}

/// The vnodes one intent moves, per target, chosen in `ring` (the ring as
/// the intents before it left it).
fn intent_vnodes<'a>(
    ring: &Ring,
    index: usize,
    form: IntentForm<'a>,
    counts: &VnodeCounts,
) -> Result<Vec<(&'a str, Vec<u32>)>, RingError> {
    let owned = |shard: &str| ring.vnodes_of(&pnode_of_shard(shard));
    Ok(match form {
        IntentForm::AddIndexShard(_) => Vec::new(),
        IntentForm::Split(s) => {
            let (num, den) = parse_fraction(&s.fraction)
                .map_err(|message| RingError::BadFraction { index, message })?;
            let vnodes = owned(&s.from)?;
            let count = (vnodes.len() as u64 * u64::from(num) / u64::from(den)) as usize;
            vec![(s.to.as_str(), vnodes[vnodes.len() - count..].to_vec())]
        }
        IntentForm::SplitWays(s) => {
            let vnodes = owned(&s.from)?;
            let ways = s.to.len() + 1;
            let cut = |k: usize| vnodes.len() * k / ways;
            s.to.iter()
                .enumerate()
                .map(|(k, to)| (to.as_str(), vnodes[cut(k + 1)..cut(k + 2)].to_vec()))
                .collect()
        }
        IntentForm::Move(m) => {
            let from = pnode_of_shard(&m.from);
            let mut vnodes = Vec::new();
            for r in &m.vnodes {
                let (lo, hi) = parse_vnode_range(r).map_err(|message| RingError::BadIntent {
                    index,
                    message: format!("move.vnodes: {message}"),
                })?;
                if hi >= ring.vnode_count() {
                    return Err(FashError::VnodeOutOfRange {
                        vnode: hi.into(),
                        vnode_count: ring.vnode_count(),
                    }
                    .into());
                }
                vnodes.extend(lo..=hi);
            }
            vnodes.sort_unstable();
            vnodes.dedup();
            let stray: Vec<u32> = vnodes
                .iter()
                .copied()
                .filter(|v| ring.pnode_of(*v).is_ok_and(|p| p != from))
                .collect();
            if !stray.is_empty() {
                return Err(RingError::NotOwned {
                    index,
                    form: "move",
                    from: m.from.clone(),
                    count: stray.len(),
                    vnodes: vnode_ranges(&stray),
                });
            }
            vec![(m.to.as_str(), vnodes)]
        }
        IntentForm::MoveHottest(h) => {
            let mut vnodes = owned(&h.from)?;
            if h.count as usize > vnodes.len() {
                return Err(RingError::BadIntent {
                    index,
                    message: format!(
                        "moveHottest.count: {} vnodes asked of `{}`, which holds {}",
                        h.count,
                        h.from,
                        vnodes.len()
                    ),
                });
            }
            // Most rows first; among equals the highest-numbered.
            vnodes.sort_by_key(|v| std::cmp::Reverse((counts.get(v).copied().unwrap_or(0), *v)));
            vnodes.truncate(h.count as usize);
            vnodes.sort_unstable();
            vec![(h.to.as_str(), vnodes)]
        }
    })
}

/// The ring the document describes: [`base_ring`], then every intent in
/// order. The review plans against it, the controller reshards to it, and
/// the simulator publishes it as the `manta-hash-ring` image. A
/// `moveHottest` without row counts takes the highest-numbered vnodes; use
/// [`topology_ring_with`] when counts are known.
pub fn topology_ring(spec: &ShardTopologySpec) -> Result<Ring, RingError> {
    topology_ring_with(spec, &VnodeCounts::new())
}

/// [`topology_ring`] with observed row counts for `moveHottest`.
pub fn topology_ring_with(
    spec: &ShardTopologySpec,
    counts: &VnodeCounts,
) -> Result<Ring, RingError> {
    Ok(resolve(spec, counts)?.after)
}

/// A ring written as a document's explicit `assignment`: per shard (in ring
/// order), its vnodes as inclusive ranges. What `tritonctl export
/// shardtopology` writes, so that the exported document is the live ring.
/// Pnodes that hold no vnodes are left out.
pub fn assignment_of(ring: &Ring) -> Result<Vec<VnodeAssignment>, RingError> {
    let mut out = Vec::new();
    for p in ring.pnodes() {
        let vnodes = ring.vnodes_of(p)?;
        if vnodes.is_empty() {
            continue;
        }
        out.push(VnodeAssignment {
            shard: shown(p).to_string(),
            vnodes: vnode_ranges(&vnodes)
                .into_iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect(),
        });
    }
    Ok(out)
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

    #[test]
    fn split_ways_cuts_the_source_in_n_shares_by_rank() {
        let t = topology(
            "  intents:\n    - splitWays: {from: 1.moray.r.example, to: [2.moray.r.example, 3.moray.r.example]}\n",
        );
        // 2 and 3 are born by the split: the ring starts on 1 alone.
        let ring = topology_ring(&t).unwrap();
        assert_eq!(of(&ring, "1.moray.r.example"), vec![0, 1, 2]);
        assert_eq!(of(&ring, "2.moray.r.example"), vec![3, 4, 5]);
        assert_eq!(of(&ring, "3.moray.r.example"), vec![6, 7, 8, 9]);
        let r = resolve(&t, &VnodeCounts::new()).unwrap();
        assert_eq!(r.moves.len(), 2);
        assert!(r.moves.iter().all(|m| m.name == "split-ways-1-to-2-3"));
    }

    #[test]
    fn move_takes_listed_vnodes_and_refuses_ones_its_source_does_not_own() {
        let t = topology(
            "  intents:\n    - move: {from: 1.moray.r.example, to: 2.moray.r.example, vnodes: [\"0\", \"3\"]}\n",
        );
        // A move's target is an existing shard: the ring is born on all three.
        let ring = topology_ring(&t).unwrap();
        assert_eq!(of(&ring, "1.moray.r.example"), vec![6, 9]);
        assert_eq!(of(&ring, "2.moray.r.example"), vec![0, 1, 3, 4, 7]);
        let t = topology(
            "  intents:\n    - move: {from: 1.moray.r.example, to: 2.moray.r.example, vnodes: [\"0-2\", \"5\"]}\n",
        );
        let e = topology_ring(&t).unwrap_err();
        assert_eq!(
            e,
            RingError::NotOwned {
                index: 0,
                form: "move",
                from: "1.moray.r.example".into(),
                vnodes: vec![(1, 2), (5, 5)],
                count: 3
            }
        );
        assert!(
            e.to_string()
                .contains("vnodes 1-2, 5 are not on `1.moray.r.example`"),
            "{e}"
        );
    }

    #[test]
    fn move_hottest_takes_the_most_rows_then_the_highest_numbers() {
        let t = topology(
            "  intents:\n    - moveHottest: {from: 1.moray.r.example, to: 3.moray.r.example, count: 2}\n",
        );
        // 1 holds 0, 3, 6, 9; vnode 3 has the most rows, 0 and 9 tie.
        let counts: VnodeCounts = [(0, 50), (3, 900), (6, 10), (9, 50)].into_iter().collect();
        let ring = topology_ring_with(&t, &counts).unwrap();
        assert_eq!(of(&ring, "1.moray.r.example"), vec![0, 6]);
        assert_eq!(of(&ring, "3.moray.r.example"), vec![2, 3, 5, 8, 9]);
        // Without counts: the highest-numbered.
        let ring = topology_ring(&t).unwrap();
        assert_eq!(of(&ring, "1.moray.r.example"), vec![0, 3]);
    }

    #[test]
    fn an_added_index_shard_is_born_empty_and_filled_by_moves() {
        let t = topology(
            "  intents:\n    - addIndexShard: {shard: 3.moray.r.example}\n    - move: {from: 1.moray.r.example, to: 3.moray.r.example, vnodes: [\"8\"]}\n",
        );
        let r = resolve(&t, &VnodeCounts::new()).unwrap();
        assert!(
            r.base
                .vnodes_of(&pnode_of_shard("3.moray.r.example"))
                .is_err()
        );
        assert_eq!(of(&r.after, "3.moray.r.example"), vec![8]);
        assert_eq!(r.moves.len(), 1);
        assert_eq!(r.moves[0].index, 1);
    }

    #[test]
    fn an_assignment_written_from_a_ring_is_that_ring() {
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 3.moray.r.example, fraction: 2/5}\n",
        );
        let ring = topology_ring(&t).unwrap();
        let a = assignment_of(&ring).unwrap();
        assert_eq!(a[0].shard, "1.moray.r.example");
        assert_eq!(a[0].vnodes, vec!["0", "2", "4"]);
        let mut exported = topology("");
        exported.ring.assignment = Some(a);
        let back = topology_ring(&exported).unwrap();
        assert!(ring.diff(&back).unwrap().moves.is_empty());
        assert_eq!(
            shard_of_pnode("tcp://1.moray.r.example:2020"),
            Some("1.moray.r.example")
        );
        assert_eq!(shard_of_pnode("tcp://x:2021"), None);
    }

    fn live_of(extra: &str) -> Ring {
        topology_ring(&topology(extra)).unwrap()
    }

    #[test]
    fn planned_moves_are_the_pending_ones_and_a_done_one_is_not_planned_again() {
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 3.moray.r.example, fraction: 2/5}\n",
        );
        let live = base_ring(&t).unwrap();
        let moves = planned_moves(&t, &live, &[]).unwrap();
        assert_eq!(
            moves,
            vec![VnodeMove {
                from: "1.moray.r.example".into(),
                to: "3.moray.r.example".into(),
                vnodes: [6, 8].into_iter().collect()
            }]
        );
        // Done and recorded: nothing to do against the ring it left.
        let after = topology_ring(&t).unwrap();
        assert!(
            planned_moves(&t, &after, &["split-1-to-3".into()])
                .unwrap()
                .is_empty()
        );
        // Done but not recorded (the ring went out, status did not): the
        // vnodes already on the target are not moved again.
        assert!(planned_moves(&t, &after, &[]).unwrap().is_empty());
    }

    #[test]
    fn a_ring_that_differs_other_than_by_the_moves_is_refused_per_shard() {
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 3.moray.r.example, fraction: 2/5}\n",
        );
        // The live ring has 1 and 2 swapped on vnodes 0 and 1, and vnode 8
        // (a vnode the split takes) on 2.
        let mut live = base_ring(&t).unwrap();
        live.remap(&[0, 8], &pnode_of_shard("2.moray.r.example"))
            .unwrap();
        live.remap(&[1], &pnode_of_shard("1.moray.r.example"))
            .unwrap();
        let e = planned_moves(&t, &live, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`1.moray.r.example`: the document has 1 vnode(s) there that the live ring has on `2.moray.r.example` (1): 0"),
            "{text}"
        );
        assert!(
            text.contains("`2.moray.r.example`: the document has 1 vnode(s) there that the live ring has on `1.moray.r.example` (1): 1"),
            "{text}"
        );
        assert!(
            text.contains("spec.ring.intents[0] (split-1-to-3): 1 vnode(s) are not on `1.moray.r.example` in the live ring: 8"),
            "{text}"
        );
        // A different vnode count is its own refusal.
        let small = live_of("");
        let mut t2 = t.clone();
        t2.ring.vnodes = 20;
        assert!(matches!(
            planned_moves(&t2, &small, &[]).unwrap_err().problems[..],
            [RingProblem::VnodeCount {
                document: 20,
                live: 10
            }]
        ));
    }

    #[test]
    fn two_pending_moves_of_one_vnode_are_refused() {
        let t = topology(
            "  intents:\n    - split: {from: 1.moray.r.example, to: 2.moray.r.example}\n    - split: {from: 2.moray.r.example, to: 3.moray.r.example}\n",
        );
        let live = base_ring(&t).unwrap();
        let e = planned_moves(&t, &live, &[]).unwrap_err();
        assert!(
            matches!(&e.problems[..], [RingProblem::MovedTwice { count: 2, .. }]),
            "{e}"
        );
        // Once the first is done, the second is one move.
        let mid = {
            let mut r = live.clone();
            r.remap(&[5, 6, 7, 8, 9], &pnode_of_shard("2.moray.r.example"))
                .unwrap();
            r
        };
        let moves = planned_moves(&t, &mid, &["split-1-to-2".into()]).unwrap();
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].vnodes, [8, 9].into_iter().collect());
    }
}
