//! What a document asks of the live ring: the moves still to make, or the
//! reasons it cannot be planned.
//!
//! The document's ring is read as [`super::resolve`] reads it: its base
//! (the explicit `assignment`, or `fash create`'s round-robin), then its
//! intents in order. The moves already done (their names recorded in
//! status) are applied to the base: that is the ring the live one must be.
//! Every vnode where the live ring differs from it is a disagreement,
//! except a vnode a pending move takes from its source that the live ring
//! already has on that move's target (an operation interrupted after its
//! ring went out but before status recorded it): that vnode is not moved
//! again. A document whose ring disagrees is refused, with the difference
//! per shard as ranges; nothing is planned from a ring nobody wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use wire::fash::Ring;

use super::{RingError, VnodeCounts, pnode_of_shard, render_ranges, resolve, shown, vnode_ranges};
use crate::shards::ShardTopologySpec;

/// One shard-to-shard move of a set of vnodes, as the operation executes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnodeMove {
    /// Shard names (`2.moray.us-east.joyent.us`), not pnodes.
    pub from: String,
    pub to: String,
    pub vnodes: BTreeSet<u32>,
}

/// One reason a document's moves cannot be planned against the live ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingProblem {
    /// The document describes no ring (validation names the field).
    Unusable(RingError),
    /// A ring's vnode count is fixed for its life.
    VnodeCount { document: u32, live: u32 },
    /// The document puts `vnodes` on `shard`; the live ring has them
    /// elsewhere (count per live shard), other than by a requested move.
    Differs {
        shard: String,
        vnodes: Vec<(u32, u32)>,
        count: usize,
        live: BTreeMap<String, usize>,
    },
    /// A pending move takes vnodes its source does not own in the live ring
    /// (nor has the live ring already moved them to its target).
    NotOwned {
        intent: String,
        from: String,
        vnodes: Vec<(u32, u32)>,
        count: usize,
    },
    /// Two pending moves take the same vnodes (one move per vnode per
    /// operation).
    MovedTwice {
        first: String,
        second: String,
        vnodes: Vec<(u32, u32)>,
        count: usize,
    },
}

/// How many ranges a refusal shows per shard before `... N more ranges`.
const SHOWN_RANGES: usize = 8;

impl fmt::Display for RingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingProblem::Unusable(e) => write!(f, "{e}"),
            RingProblem::VnodeCount { document, live } => write!(
                f,
                "spec.ring.vnodes is {document} but the live ring has {live} vnodes: a ring's vnode count is fixed for its life"
            ),
            RingProblem::Differs {
                shard,
                vnodes,
                count,
                live,
            } => {
                let on: Vec<String> = live.iter().map(|(s, n)| format!("`{s}` ({n})")).collect();
                write!(
                    f,
                    "`{shard}`: the document has {count} vnode(s) there that the live ring has on {}: {}",
                    on.join(", "),
                    render_ranges(vnodes, SHOWN_RANGES)
                )
            }
            RingProblem::NotOwned {
                intent,
                from,
                vnodes,
                count,
            } => write!(
                f,
                "{intent}: {count} vnode(s) are not on `{from}` in the live ring: {}",
                render_ranges(vnodes, SHOWN_RANGES)
            ),
            RingProblem::MovedTwice {
                first,
                second,
                vnodes,
                count,
            } => write!(
                f,
                "{second} moves {count} vnode(s) that {first} moves too (one move per vnode): {}",
                render_ranges(vnodes, SHOWN_RANGES)
            ),
        }
    }
}

/// Why a document's moves are refused: every problem found, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingDisagreement {
    pub problems: Vec<RingProblem>,
}

impl fmt::Display for RingDisagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the document's ring disagrees with the live ring other than by its moves: "
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RingDisagreement {}

impl RingDisagreement {
    fn one(p: RingProblem) -> RingDisagreement {
        RingDisagreement { problems: vec![p] }
    }
}

/// The moves a document asks of the live ring (fash ring as `wire::fash`
/// holds it), minus those already done (names in status); Err names every
/// vnode where the document's ring disagrees with the live ring other than
/// by its requested moves. `moveHottest` without row counts takes the
/// highest-numbered vnodes; [`planned_moves_with`] takes counts.
pub fn planned_moves(
    spec: &ShardTopologySpec,
    live: &Ring,
    done: &[String],
) -> Result<Vec<VnodeMove>, RingDisagreement> {
    planned_moves_with(spec, live, done, &VnodeCounts::new())
}

/// [`planned_moves`] with the rows per vnode `moveHottest` chooses by.
pub fn planned_moves_with(
    spec: &ShardTopologySpec,
    live: &Ring,
    done: &[String],
    counts: &VnodeCounts,
) -> Result<Vec<VnodeMove>, RingDisagreement> {
    if spec.ring.vnodes != live.vnode_count() {
        return Err(RingDisagreement::one(RingProblem::VnodeCount {
            document: spec.ring.vnodes,
            live: live.vnode_count(),
        }));
    }
    let r = resolve(spec, counts).map_err(|e| RingDisagreement::one(RingProblem::Unusable(e)))?;
    let label = |i: usize, name: &str| format!("spec.ring.intents[{i}] ({name})");
    // The ring the live one must be: the base with the done moves made.
    let mut expected = r.base.clone();
    let (done_moves, pending): (Vec<_>, Vec<_>) =
        r.moves.iter().partition(|m| done.contains(&m.name));
    for m in &done_moves {
        let vnodes: Vec<u32> = m.mv.vnodes.iter().copied().collect();
        let moved = expected.remap_from(
            &pnode_of_shard(&m.mv.from),
            &vnodes,
            &pnode_of_shard(&m.mv.to),
        );
        if let Err(e) = moved {
            return Err(RingDisagreement::one(RingProblem::Unusable(e.into())));
        }
    }
    let mut problems = Vec::new();
    // A vnode of a pending move -> (move, its target pnode).
    let mut taken: BTreeMap<u32, usize> = BTreeMap::new();
    let mut twice: BTreeMap<(usize, usize), Vec<u32>> = BTreeMap::new();
    for (k, m) in pending.iter().enumerate() {
        for &v in &m.mv.vnodes {
            if let Some(&first) = taken.get(&v) {
                twice.entry((first, k)).or_default().push(v);
            } else {
                taken.insert(v, k);
            }
        }
    }
    for ((a, b), vs) in twice {
        problems.push(RingProblem::MovedTwice {
            first: label(pending[a].index, &pending[a].name),
            second: label(pending[b].index, &pending[b].name),
            count: vs.len(),
            vnodes: vnode_ranges(&vs),
        });
    }
    let targets: Vec<String> = pending.iter().map(|m| pnode_of_shard(&m.mv.to)).collect();
    let sources: Vec<String> = pending.iter().map(|m| pnode_of_shard(&m.mv.from)).collect();
    // Disagreements by the document's shard: vnode -> live shard.
    let mut differs: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    let mut not_owned: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut already: BTreeSet<u32> = BTreeSet::new();
    for v in 0..live.vnode_count() {
        let want = expected.pnode_of(v).expect("same vnode count");
        let have = live.pnode_of(v).expect("same vnode count");
        let pending_move = taken.get(&v).copied();
        if want == have {
            if let Some(k) = pending_move
                && have != sources[k]
            {
                not_owned.entry(k).or_default().push(v);
            }
            continue;
        }
        match pending_move {
            Some(k) if have == targets[k] && want == sources[k] => {
                already.insert(v);
            }
            Some(k) if want == sources[k] => {
                not_owned.entry(k).or_default().push(v);
            }
            _ => differs
                .entry(shown(want).to_string())
                .or_default()
                .push((v, shown(have).to_string())),
        }
    }
    for (shard, vs) in differs {
        let mut live_on: BTreeMap<String, usize> = BTreeMap::new();
        for (_, s) in &vs {
            *live_on.entry(s.clone()).or_default() += 1;
        }
        let list: Vec<u32> = vs.iter().map(|(v, _)| *v).collect();
        problems.push(RingProblem::Differs {
            shard,
            count: list.len(),
            vnodes: vnode_ranges(&list),
            live: live_on,
        });
    }
    for (k, vs) in not_owned {
        problems.push(RingProblem::NotOwned {
            intent: label(pending[k].index, &pending[k].name),
            from: pending[k].mv.from.clone(),
            count: vs.len(),
            vnodes: vnode_ranges(&vs),
        });
    }
    if !problems.is_empty() {
        return Err(RingDisagreement { problems });
    }
    Ok(pending
        .into_iter()
        .map(|m| VnodeMove {
            from: m.mv.from.clone(),
            to: m.mv.to.clone(),
            vnodes: m.mv.vnodes.difference(&already).copied().collect(),
        })
        .filter(|m| !m.vnodes.is_empty())
        .collect())
}
