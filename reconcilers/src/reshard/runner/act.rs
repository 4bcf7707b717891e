//! The acts: each looks at the world first and does only what is missing,
//! so a step resumed after a crash converges without repeating itself.

use super::ReshardRunner;
use crate::error::WorldError;
use crate::reshard::plan::{freeze_reason, stage_ring};
use crate::reshard::{ReshardAct, ReshardAction, RingStage, ShardRows};

impl<W: ReshardAct + ShardRows + ?Sized> ReshardRunner<'_, W> {
    pub(super) async fn act_on(&self, action: &ReshardAction) -> Result<(), WorldError> {
        use ReshardAction as A;
        let job = self.job;
        let (w, op) = (self.world, job.op_id.as_str());
        let reason = freeze_reason(op);
        match action {
            A::Preflight | A::AwaitCatchUp | A::Approval | A::Cleanup | A::VerifyCounts => {}
            A::LockRegion => {
                if w.region_lock().await?.as_deref() != Some(op) {
                    w.take_region_lock(op).await?;
                }
            }
            A::FreezeSource => {
                if w.shard(&job.mv.from).await?.frozen.as_deref() != Some(reason.as_str()) {
                    w.freeze(&job.mv.from, &reason).await?;
                }
            }
            A::AddPeers => {
                let have = w.new_peers(op).await?;
                for server in &job.new_servers {
                    if !have.iter().any(|p| p.server == *server) {
                        w.add_peer(op, &job.mv.from, server).await?;
                    }
                }
            }
            A::ProvisionMorays => {
                for _ in w.new_morays(op).await?..job.morays {
                    w.provision_moray(op, &job.mv.to).await?;
                }
            }
            A::BuildRings => {
                let live = w.ring_of(&job.original_image).await?;
                for stage in [RingStage::R1, RingStage::R2, RingStage::R3] {
                    if w.staged_image(op, stage).await?.is_none() {
                        let ring = stage_ring(&live, &job.mv, stage).map_err(|e| {
                            WorldError::Unexpected(format!("ring {}: {e}", stage.as_str()))
                        })?;
                        w.import_ring(op, stage, &ring).await?;
                    }
                }
            }
            A::TakeDumpLock => {
                if !w.dump_lock(&job.mv.from).await? {
                    w.take_dump_lock(&job.mv.from).await?;
                }
            }
            A::RollOutRing { stage } => {
                let image = self.image_of(*stage).await?;
                if w.live_image().await? != image {
                    w.set_live_image(&image).await?;
                }
                for em in w.electric_morays().await? {
                    if em.ring_image.as_deref() != Some(image.as_str()) {
                        w.restart_electric_moray(&em.zone).await?;
                    }
                }
            }
            A::Sentinel => w.write_sentinel(op, &job.mv.from).await?,
            A::DetachPeers => {
                let peers = w.new_peers(op).await?;
                for p in &peers {
                    if p.shard != job.mv.to {
                        w.detach_peer(&p.zone, &job.mv.to).await?;
                    }
                }
                if w.new_shard_state(&job.mv.to).await?.is_none() {
                    let zones: Vec<String> = peers.iter().map(|p| p.zone.clone()).collect();
                    w.write_new_shard_state(&job.mv.to, &zones, &reason).await?;
                }
            }
            A::ReleaseDumpLock => {
                if w.dump_lock(&job.mv.from).await? {
                    w.release_dump_lock(&job.mv.from).await?;
                }
            }
            A::Unfreeze => {
                w.unfreeze_own(&job.mv.from, &reason).await?;
                w.unfreeze_own(&job.mv.to, &reason).await?;
            }
            A::ReleaseRegionLock => {
                if w.region_lock().await?.as_deref() == Some(op) {
                    w.release_region_lock(op).await?;
                }
            }
            A::RemoveMorays => w.remove_morays(op).await?,
            A::RemovePeers => {
                for p in w.new_peers(op).await? {
                    w.remove_peer(&p.zone).await?;
                }
                w.delete_new_shard_state(&job.mv.to, &reason).await?;
            }
        }
        Ok(())
    }
}
