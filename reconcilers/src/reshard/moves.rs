//! The adapter from a ShardTopology document to the moves the operation
//! executes. H2's `crds::ring::planned_moves` (which also refuses a
//! document whose ring disagrees with the live ring other than by its
//! moves) replaces the body at merge; the signature is the seam.

use crds::ring::{PNODE_PORT, RingDisagreement, RingError};
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
    /// The document's ring differs from the live ring other than by its
    /// requested moves: refused, naming the difference per shard.
    #[error("{0}")]
    Disagrees(#[from] RingDisagreement),
}

/// The name a move has in status (`done`): `<from>-><to>`.
pub fn move_name(mv: &VnodeMove) -> String {
    format!("{}->{}", mv.from, mv.to)
}

/// The moves from the live ring to the ring the document describes, minus
/// those named in `done` (by [`move_name`] or by the document's change
/// name). `crds::ring::planned_moves` decides them, the same function the
/// review (`diff`) calls, so the controller and the pull request cannot
/// read one document two ways; a document whose ring differs from the
/// live ring other than by its requested moves is refused with the
/// difference ([`MovesError::Disagrees`]), never turned into moves.
pub fn moves_from_document(
    spec: &ShardTopologySpec,
    live: &Ring,
    done: &[String],
) -> Result<Vec<VnodeMove>, MovesError> {
    let planned = crds::ring::planned_moves(spec, live, done)?;
    Ok(planned
        .into_iter()
        .map(|m| VnodeMove {
            from: m.from,
            to: m.to,
            vnodes: m.vnodes,
        })
        .filter(|mv| !done.contains(&move_name(mv)))
        .collect())
}
