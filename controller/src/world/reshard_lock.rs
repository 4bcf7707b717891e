//! The region's resharding lock, `/tritonctl/v1/locks/reshard`: a
//! persistent node naming the operation id (not manta-reshard's lease-less
//! global lock: the holder is named, survives controller restarts with its
//! journal, and only the holder releases it). Taken with a create behind
//! the leader's fence, so a second operation is refused naming the holder.

use std::sync::Arc;

use coord::{CoordError, Coordination, CreateMode, Expect, Op};
use reconcilers::error::{Refusal, RefusalReason, WorldError};

use crate::layout::{locks_dir, reshard_lock_path};
use crate::store::Fence;

/// The operation id the lock names, if held.
pub async fn holder(coord: &Arc<dyn Coordination>) -> Result<Option<String>, WorldError> {
    match coord.get(&reshard_lock_path()).await {
        Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).to_string())),
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(WorldError::from(e).context("reading the resharding lock")),
    }
}

/// Take the lock for `op_id` (already ours: nothing to do); refused naming
/// the holder when another operation has it.
pub async fn take(
    coord: &Arc<dyn Coordination>,
    fence: Option<&Fence>,
    op_id: &str,
) -> Result<(), WorldError> {
    coord.mkdirp(&locks_dir()).await?;
    let refused = |h: &str| {
        WorldError::from(Refusal::new(
            RefusalReason::ShardLocked,
            format!("another resharding holds the region lock: operation {h}"),
        ))
    };
    match holder(coord).await? {
        Some(h) if h == op_id => return Ok(()),
        Some(h) => return Err(refused(&h)),
        None => {}
    }
    let mut ops: Vec<Op> = fence.iter().map(|f| f.op()).collect();
    ops.push(Op::create(
        reshard_lock_path(),
        op_id.as_bytes().to_vec(),
        CreateMode::Persistent,
    ));
    match coord.multi(ops).await {
        Ok(_) => Ok(()),
        Err(CoordError::MultiFailed { error, .. })
            if matches!(*error, CoordError::NodeExists(_)) =>
        {
            match holder(coord).await? {
                Some(h) if h == op_id => Ok(()),
                Some(h) => Err(refused(&h)),
                None => Err(WorldError::Unexpected(
                    "the resharding lock was created and deleted under us".into(),
                )),
            }
        }
        Err(e) => Err(WorldError::from(e).context("taking the resharding lock")),
    }
}

/// Release the lock if `op_id` holds it.
pub async fn release(
    coord: &Arc<dyn Coordination>,
    fence: Option<&Fence>,
    op_id: &str,
) -> Result<(), WorldError> {
    let path = reshard_lock_path();
    let (data, stat) = match coord.get(&path).await {
        Ok(x) => x,
        Err(CoordError::NoNode(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if data != op_id.as_bytes() {
        return Ok(());
    }
    let mut ops: Vec<Op> = fence.iter().map(|f| f.op()).collect();
    ops.push(Op::delete(path, Expect::Version(stat.version)));
    match coord.multi(ops).await {
        Ok(_) => Ok(()),
        Err(CoordError::MultiFailed { error, .. })
            if matches!(*error, CoordError::NoNode(_) | CoordError::BadVersion(_)) =>
        {
            Ok(())
        }
        Err(e) => Err(WorldError::from(e).context("releasing the resharding lock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_resharding_is_refused_naming_the_holder_and_only_the_holder_releases() {
        let c: Arc<dyn Coordination> = coord::mem::MemEnsemble::new().connect();
        assert_eq!(holder(&c).await.unwrap(), None);
        take(&c, None, "op-1").await.unwrap();
        take(&c, None, "op-1").await.unwrap();
        let e = take(&c, None, "op-2").await.unwrap_err();
        assert_eq!(e.refusal().unwrap().reason, RefusalReason::ShardLocked);
        assert!(e.to_string().contains("op-1"), "{e}");
        release(&c, None, "op-2").await.unwrap();
        assert_eq!(holder(&c).await.unwrap().as_deref(), Some("op-1"));
        release(&c, None, "op-1").await.unwrap();
        assert_eq!(holder(&c).await.unwrap(), None);
        take(&c, None, "op-2").await.unwrap();
        assert_eq!(holder(&c).await.unwrap().as_deref(), Some("op-2"));
    }
}
