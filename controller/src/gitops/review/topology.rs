//! ShardTopology: the ring a spec describes and the vnodes a change moves.

use std::collections::BTreeSet;

use crds::Kind;
use crds::shards::ShardTopologySpec;
use wire::fash::Ring;

use crds::ring::{planned_moves_with, pnode_of_shard};

use super::common::executed;
use super::types::{ReshardReview, TopologyPlan, VnodeMove};
use crate::gitops::manta::MantaObservation;
use crate::gitops::observed::World;

/// The ring a topology spec describes: the one builder the controller and
/// the simulator use too (`crds::ring::topology_ring`; its docs give the
/// rules).
pub fn desired_ring(spec: &ShardTopologySpec) -> Result<Ring, String> {
    crds::ring::topology_ring(spec).map_err(|e| e.to_string())
}

/// Sorted vnodes as inclusive ranges.
pub fn ranges(vs: &[u32]) -> Vec<String> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in vs {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == v => *hi = v,
            _ => out.push((v, v)),
        }
    }
    out.into_iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect()
}

pub(super) async fn plan_topology(
    old: Option<&ShardTopologySpec>,
    new: &ShardTopologySpec,
    world: Option<&dyn World>,
) -> Result<TopologyPlan, String> {
    let after = desired_ring(new)?;
    let mut notes = Vec::new();
    if !executed(Kind::ShardTopology) {
        notes.push("No reconciler executes ShardTopology in this build: apply stores the document and nothing in the datacenter changes. The operations below are what the resharding reconciler runs for these moves.".to_string());
    }
    let mut moves = Vec::new();
    let (mut added, mut removed, mut shard_changes) = (Vec::new(), Vec::new(), Vec::new());
    match old {
        Some(old) => {
            let before = desired_ring(old)?;
            if before.vnode_count() != after.vnode_count() {
                notes.push(format!(
                    "spec.ring.vnodes changes {} -> {}: a ring's vnode count is fixed for its life; this needs a new ring, not a remap",
                    before.vnode_count(),
                    after.vnode_count()
                ));
            } else {
                let d = before.diff(&after).map_err(|e| e.to_string())?;
                for m in d.moves {
                    moves.push(VnodeMove {
                        count: m.vnodes.len(),
                        vnodes: ranges(&m.vnodes),
                        from: m.from,
                        to: m.to,
                    });
                }
            }
            shard_diff(old, new, &mut added, &mut removed, &mut shard_changes);
        }
        None => {
            notes.push(format!(
                "No ShardTopology {} is stored: the ring is described for the first time ({} vnodes); nothing moves relative to the store.",
                new.region,
                after.vnode_count()
            ));
            added = new.shards.iter().map(|s| s.name.clone()).collect();
        }
    }
    let mut ring_image = None;
    let mut observed = Vec::new();
    let mut operations = Vec::new();
    let mut refusal = Vec::new();
    if let Some(w) = world {
        ring_image = w.ring_image().await.unwrap_or(None);
        match w.manta().await {
            Ok(Some(m)) => match m.live_ring() {
                Ok(live) => {
                    // Against the live ring: what moves is what the live
                    // ring needs, not what the stored document said.
                    match against_live(new, &live, &m) {
                        Ok((planned, ops)) => {
                            moves = planned;
                            operations = ops;
                            if moves.is_empty() {
                                notes.push("The live ring already is this document's ring: no resharding.".into());
                            }
                        }
                        Err(problems) => {
                            moves.clear();
                            refusal = problems;
                        }
                    }
                }
                Err(e) => notes.push(format!(
                    "The live ring is not observed ({e}): the moves shown are the stored document's ring against this one, and no resharding is planned."
                )),
            },
            Ok(None) => notes.push(
                "SAPI has no `manta` application: there is no live ring to plan against.".into(),
            ),
            Err(e) => notes.push(format!("The Manta region is not observed: {e}")),
        }
        for s in &new.shards {
            observed.push(match w.manatee().observe(&s.name).await {
                Ok(o) if o.peers.is_empty() => {
                    format!(
                        "{}: no manatee peers exist yet ({} planned)",
                        s.name,
                        s.peers.len()
                    )
                }
                Ok(o) => format!(
                    "{}: {} peer(s){}",
                    s.name,
                    o.peers.len(),
                    o.state
                        .as_ref()
                        .map(|st| format!(", cluster state generation {}", st.generation))
                        .unwrap_or_else(|| ", no cluster state".into())
                ),
                Err(e) => format!("{}: not observed: {e}", s.name),
            });
        }
    }
    Ok(TopologyPlan {
        executed: executed(Kind::ShardTopology),
        vnodes: new.ring.vnodes,
        ring_after: after
            .vnode_counts()
            .map(|(p, c)| (p.to_string(), c))
            .collect(),
        moves,
        shards_added: added,
        shards_removed: removed,
        shard_changes,
        ring_image,
        observed,
        notes,
        operations,
        refusal,
    })
}

/// The moves `new` asks of the live ring (by pnode, as the ring names
/// them) and the operation each runs; or every disagreement, one line each.
fn against_live(
    new: &ShardTopologySpec,
    live: &Ring,
    m: &MantaObservation,
) -> Result<(Vec<VnodeMove>, Vec<ReshardReview>), Vec<String>> {
    let counts = m.all_vnode_rows();
    // Done moves are recorded in status, which a review does not read:
    // vnodes already on their target are not planned again regardless.
    let planned = planned_moves_with(new, live, &[], &counts).map_err(|d| {
        d.problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    })?;
    let resolved = crds::ring::resolve(new, &counts).map_err(|e| vec![e.to_string()])?;
    let mut used = vec![false; resolved.moves.len()];
    let named: Vec<(String, crds::ring::VnodeMove)> = planned
        .into_iter()
        .map(|p| {
            let k = resolved
                .moves
                .iter()
                .enumerate()
                .position(|(k, r)| !used[k] && r.mv.from == p.from && r.mv.to == p.to);
            let name = match k {
                Some(k) => {
                    used[k] = true;
                    resolved.moves[k].name.clone()
                }
                None => format!("{}-to-{}", p.from, p.to),
            };
            (name, p)
        })
        .collect();
    let moves = named
        .iter()
        .map(|(_, p)| {
            let vs: Vec<u32> = p.vnodes.iter().copied().collect();
            VnodeMove {
                from: pnode_of_shard(&p.from),
                to: pnode_of_shard(&p.to),
                count: vs.len(),
                vnodes: ranges(&vs),
            }
        })
        .collect();
    Ok((moves, super::reshard::operations(new, &named, m)))
}

/// Shards added, removed, and changed in place between two documents.
fn shard_diff(
    old: &ShardTopologySpec,
    new: &ShardTopologySpec,
    added: &mut Vec<String>,
    removed: &mut Vec<String>,
    shard_changes: &mut Vec<String>,
) {
    for s in &new.shards {
        match old.shards.iter().find(|o| o.name == s.name) {
            None => added.push(s.name.clone()),
            Some(o) => {
                let servers = |x: &crds::shards::MetadataShard| -> BTreeSet<String> {
                    x.peers.iter().map(|p| p.server.clone()).collect()
                };
                let (a, b) = (servers(o), servers(s));
                for p in b.difference(&a) {
                    shard_changes.push(format!("{}: + peer on {p}", s.name));
                }
                for p in a.difference(&b) {
                    shard_changes.push(format!("{}: - peer on {p}", s.name));
                }
                if o.roles != s.roles {
                    shard_changes.push(format!("{}: roles {:?} -> {:?}", s.name, o.roles, s.roles));
                }
                if o.morays != s.morays {
                    shard_changes.push(format!("{}: morays {} -> {}", s.name, o.morays, s.morays));
                }
            }
        }
    }
    for o in &old.shards {
        if !new.shards.iter().any(|s| s.name == o.name) {
            removed.push(o.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ring's own tests moved with the builder to crds/src/ring.rs.

    #[test]
    fn vnode_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), vec!["0-2", "5", "7-8"]);
        assert!(ranges(&[]).is_empty());
    }
}
