//! The gates: preflight (as Vitess's `canSwitch`: everything that must be
//! true before anything changes) and the ring-order gates that keep a
//! mixed ring from ever accepting a write for a moved vnode.

use super::ReshardRunner;
use crate::error::{RefusalReason, WaitReason, WorldError};
use crate::operation::Gate;
use crate::reshard::plan::freeze_reason;
use crate::reshard::{ReshardAct, ReshardAction, RingStage, ShardRows};

impl<W: ReshardAct + ShardRows + ?Sized> ReshardRunner<'_, W> {
    pub(super) async fn gate(&self, action: &ReshardAction) -> Result<Gate, WorldError> {
        use ReshardAction as A;
        let needs_primary = !matches!(
            action,
            A::Preflight
                | A::LockRegion
                | A::Cleanup
                | A::VerifyCounts
                | A::Unfreeze
                | A::ReleaseRegionLock
                | A::ReleaseDumpLock
                | A::RemoveMorays
                | A::RemovePeers
        );
        if needs_primary && let Some(g) = self.primary_gate().await? {
            return Ok(g);
        }
        match action {
            A::Preflight => self.preflight().await,
            A::LockRegion => self.lock_gate().await,
            A::FreezeSource => {
                let s = self.world.shard(&self.job.mv.from).await?;
                Ok(match s.frozen {
                    Some(r) if r != freeze_reason(&self.job.op_id) => Gate::block(
                        RefusalReason::FrozenByOther,
                        format!("{} is frozen by someone else: \"{r}\"", self.job.mv.from),
                    ),
                    _ => Gate::Open,
                })
            }
            A::RollOutRing { stage } => self.ring_order_gate(*stage).await,
            A::Cleanup => self.ring_order_gate_for_cleanup().await,
            _ => Ok(Gate::Open),
        }
    }

    /// The source's primary must be up for every step that changes it or
    /// depends on it: a dead primary stops the operation where it is.
    async fn primary_gate(&self) -> Result<Option<Gate>, WorldError> {
        let s = self.world.shard(&self.job.mv.from).await?;
        Ok((!s.primary_up).then(|| {
            Gate::block(
                RefusalReason::PrimaryDown,
                format!(
                    "the server of {}'s primary is down: the operation stops here until it is back (a takeover changes the shard under the move)",
                    self.job.mv.from
                ),
            )
        }))
    }

    async fn lock_gate(&self) -> Result<Gate, WorldError> {
        Ok(match self.world.region_lock().await? {
            Some(holder) if holder != self.job.op_id => Gate::block(
                RefusalReason::ShardLocked,
                format!("another resharding holds the region lock: operation {holder}"),
            ),
            _ => Gate::Open,
        })
    }

    /// Shard healthy, lag under the threshold, every electric-moray
    /// reachable and on the live ring, the ring image readable, no other
    /// resharding in the region.
    async fn preflight(&self) -> Result<Gate, WorldError> {
        let job = self.job;
        let s = self.world.shard(&job.mv.from).await?;
        if let Some(p) = s.problem {
            return Ok(Gate::block(
                RefusalReason::UnhealthyPeer,
                format!("{} is not healthy: {p}", job.mv.from),
            ));
        }
        if !s.primary_up {
            return Ok(self.primary_gate().await?.unwrap_or(Gate::Open));
        }
        if let Some(r) = &s.frozen
            && *r != freeze_reason(&job.op_id)
        {
            return Ok(Gate::block(
                RefusalReason::FrozenByOther,
                format!("{} is frozen by someone else: \"{r}\"", job.mv.from),
            ));
        }
        match s.lag_secs {
            Some(l) if l <= job.max_lag_secs => {}
            lag => {
                let saw = lag.map_or("unknown".to_string(), |l| format!("{l:.1}s"));
                return Ok(Gate::wait(
                    WaitReason::Health,
                    format!(
                        "replication lag of {} is {saw}, over the {}s threshold",
                        job.mv.from, job.max_lag_secs
                    ),
                ));
            }
        }
        let live = self.world.live_image().await?;
        if live != job.original_image {
            return Ok(Gate::block(
                RefusalReason::MixedRing,
                format!(
                    "SAPI HASH_RING_IMAGE is {live}, not the ring {} the move was planned on",
                    job.original_image
                ),
            ));
        }
        if let Err(e) = self.world.ring_of(&live).await {
            return Ok(Gate::block(
                RefusalReason::RingUnreadable,
                format!("ring image {live}: {e}"),
            ));
        }
        for em in self.world.electric_morays().await? {
            if em.ring_image.as_deref() != Some(live.as_str()) {
                let saw = em
                    .error
                    .clone()
                    .or(em.ring_image.clone())
                    .unwrap_or_else(|| "no ring".into());
                return Ok(Gate::block(
                    RefusalReason::ElectricMorayNotReady,
                    format!(
                        "electric-moray {} is not on the live ring {live}: {saw}",
                        em.zone
                    ),
                ));
            }
        }
        self.lock_gate().await
    }

    /// A rollout of `stage` starts only when every electric-moray is on the
    /// stage before it or already on this one: R0 -> R1 -> R2 -> R3, so
    /// at most two adjacent rings are ever live together, and no pair of
    /// adjacent rings both accepts writes for a moved vnode on different
    /// shards (R0/R1: old shard or refused; R1/R2: refused; R2/R3: refused
    /// or new shard).
    async fn ring_order_gate(&self, stage: RingStage) -> Result<Gate, WorldError> {
        let before = match stage {
            RingStage::R0 => return Ok(Gate::Open),
            RingStage::R1 => RingStage::R0,
            RingStage::R2 => RingStage::R1,
            RingStage::R3 => RingStage::R2,
        };
        let ok = [self.image_of(before).await?, self.image_of(stage).await?];
        self.all_on(&ok, stage).await
    }

    /// Rows are deleted only once the owning side is verified: every
    /// electric-moray serves R3.
    async fn ring_order_gate_for_cleanup(&self) -> Result<Gate, WorldError> {
        let r3 = self.image_of(RingStage::R3).await?;
        self.all_on(&[r3], RingStage::R3).await
    }

    async fn all_on(&self, ok: &[String], stage: RingStage) -> Result<Gate, WorldError> {
        for em in self.world.electric_morays().await? {
            if !em.ring_image.as_ref().is_some_and(|i| ok.contains(i)) {
                let saw = em
                    .error
                    .clone()
                    .or(em.ring_image.clone())
                    .unwrap_or_else(|| "no ring".into());
                return Ok(Gate::block(
                    RefusalReason::MixedRing,
                    format!(
                        "electric-moray {} serves {saw}, not one of {} (before {}): the ring order would break",
                        em.zone,
                        ok.join(", "),
                        stage.as_str()
                    ),
                ));
            }
        }
        Ok(Gate::Open)
    }
}
