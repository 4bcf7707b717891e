//! One disruptive operation per manatee shard, whichever document asks for
//! it (a ManateeVersion upgrade, a HeadnodeSet's HA setup): a lock node
//! `/tritonctl/v1/locks/shard/<shard>` holding the owner's key
//! (`ManateeVersion/sdc`). Taken before an operation starts, released when it
//! completes; kept across controller restarts (the journal resumes under it).

use std::sync::Arc;

use coord::{CoordError, Coordination, CreateMode, Expect, Op};

use crate::layout::{shard_lock_path as lock_path, shard_locks_dir};
use crate::store::Fence;

/// The shard lock could not be read, taken or released.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{0}")]
    Coordination(#[from] CoordError),
    #[error("taking the lock of shard {shard}: {source}")]
    Take { shard: String, source: CoordError },
    #[error("releasing the lock of shard {shard}: {source}")]
    Release { shard: String, source: CoordError },
    /// Created and deleted under us three times in a row.
    #[error("the lock of shard {0} keeps changing")]
    Churning(String),
}

/// Take the shard's lock for `holder`. `Ok(None)` when held by `holder`
/// (now or already), `Ok(Some(other))` when someone else holds it.
pub async fn acquire(
    coord: &Arc<dyn Coordination>,
    fence: Option<&Fence>,
    shard: &str,
    holder: &str,
) -> Result<Option<String>, LockError> {
    let path = lock_path(shard);
    coord.mkdirp(&shard_locks_dir()).await?;
    for _ in 0..3 {
        match coord.get(&path).await {
            Ok((data, _)) => {
                let owner = String::from_utf8_lossy(&data).to_string();
                return Ok((owner != holder).then_some(owner));
            }
            Err(CoordError::NoNode(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut ops: Vec<Op> = fence.iter().map(|f| f.op()).collect();
        ops.push(Op::create(
            path.clone(),
            holder.as_bytes().to_vec(),
            CreateMode::Persistent,
        ));
        match coord.multi(ops).await {
            Ok(_) => return Ok(None),
            Err(CoordError::MultiFailed { error, .. })
                if matches!(*error, CoordError::NodeExists(_)) =>
            {
                continue; // raced: read who won
            }
            Err(source) => {
                return Err(LockError::Take {
                    shard: shard.to_string(),
                    source,
                });
            }
        }
    }
    Err(LockError::Churning(shard.to_string()))
}

/// Release the shard's lock if `holder` holds it.
pub async fn release(
    coord: &Arc<dyn Coordination>,
    fence: Option<&Fence>,
    shard: &str,
    holder: &str,
) -> Result<(), LockError> {
    let path = lock_path(shard);
    let (data, stat) = match coord.get(&path).await {
        Ok(x) => x,
        Err(CoordError::NoNode(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if data != holder.as_bytes() {
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
        Err(source) => Err(LockError::Release {
            shard: shard.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_shard() {
        let c: Arc<dyn Coordination> = coord::mem::MemEnsemble::new().connect();
        assert_eq!(
            acquire(&c, None, "sdc", "ManateeVersion/sdc")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            acquire(&c, None, "sdc", "ManateeVersion/sdc")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            acquire(&c, None, "sdc", "HeadnodeSet/lab").await.unwrap(),
            Some("ManateeVersion/sdc".into())
        );
        // Only the holder releases.
        release(&c, None, "sdc", "HeadnodeSet/lab").await.unwrap();
        assert!(
            acquire(&c, None, "sdc", "HeadnodeSet/lab")
                .await
                .unwrap()
                .is_some()
        );
        release(&c, None, "sdc", "ManateeVersion/sdc")
            .await
            .unwrap();
        assert_eq!(
            acquire(&c, None, "sdc", "HeadnodeSet/lab").await.unwrap(),
            None
        );
    }
}
