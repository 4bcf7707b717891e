//! The adapter from a ShardTopology document to the moves the operation
//! executes. H2's `crds::ring::planned_moves` (which also refuses a
//! document whose ring disagrees with the live ring other than by its
//! moves) replaces the body at merge; the signature is the seam.

use std::collections::BTreeSet;

use crds::ring::{PNODE_PORT, RingError, topology_ring};
use crds::shards::ShardTopologySpec;
use wire::fash::{FashError, Ring};

use super::VnodeMove;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MovesError {
    #[error("{0}")]
    Ring(#[from] RingError),
    #[error("the document's ring and the live ring: {0}")]
    Fash(#[from] FashError),
    #[error("pnode {0:?} is not an index shard's (tcp://<shard>:{PNODE_PORT})")]
    ForeignPnode(String),
}

/// The shard a pnode names.
fn shard_of_pnode(pnode: &str) -> Result<String, MovesError> {
    pnode
        .strip_prefix("tcp://")
        .and_then(|s| s.strip_suffix(&format!(":{PNODE_PORT}")))
        .map(str::to_string)
        .ok_or_else(|| MovesError::ForeignPnode(pnode.to_string()))
}

/// The name a move has in status (`done`): `<from>-><to>`.
pub fn move_name(mv: &VnodeMove) -> String {
    format!("{}->{}", mv.from, mv.to)
}

/// The moves from the live ring to the ring the document describes, minus
/// those named in `done`.
pub fn moves_from_document(
    spec: &ShardTopologySpec,
    live: &Ring,
    done: &[String],
) -> Result<Vec<VnodeMove>, MovesError> {
    let want = topology_ring(spec)?;
    let diff = live.diff(&want)?;
    let mut out = Vec::new();
    for m in diff.moves {
        let mv = VnodeMove {
            from: shard_of_pnode(&m.from)?,
            to: shard_of_pnode(&m.to)?,
            vnodes: m.vnodes.into_iter().collect::<BTreeSet<u32>>(),
        };
        if !done.contains(&move_name(&mv)) {
            out.push(mv);
        }
    }
    Ok(out)
}
