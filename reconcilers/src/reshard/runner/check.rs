//! The completion checks, with what they saw (restore and cleanup
//! progress with an ETA) for status.

use std::time::Duration;

use super::ReshardRunner;
use crate::error::WorldError;
use crate::operation::Progress;
use crate::reshard::plan::{cleanup_targets, freeze_reason};
use crate::reshard::{ReshardAct, ReshardAction, ShardRows};

fn eta(secs: Option<Duration>) -> String {
    secs.map_or("ETA unknown".into(), |d| format!("ETA {}s", d.as_secs()))
}

fn done_if(done: bool, saw: impl FnOnce() -> String) -> Progress {
    if done {
        Progress::Done
    } else {
        Progress::NotYet(saw())
    }
}

impl<W: ReshardAct + ShardRows + ?Sized> ReshardRunner<'_, W> {
    pub(super) async fn check_of(&self, action: &ReshardAction) -> Result<Progress, WorldError> {
        use ReshardAction as A;
        let job = self.job;
        let (w, op) = (self.world, job.op_id.as_str());
        let reason = freeze_reason(op);
        Ok(match action {
            A::Preflight | A::Approval => Progress::Done,
            A::LockRegion => {
                let h = w.region_lock().await?;
                done_if(h.as_deref() == Some(op), || {
                    format!("region lock held by {h:?}")
                })
            }
            A::FreezeSource => {
                let f = w.shard(&job.mv.from).await?.frozen;
                done_if(f.as_deref() == Some(reason.as_str()), || {
                    format!("{} freeze: {f:?}", job.mv.from)
                })
            }
            A::AddPeers => {
                let have = w.new_peers(op).await?;
                let missing: Vec<&String> = job
                    .new_servers
                    .iter()
                    .filter(|s| !have.iter().any(|p| p.server == **s))
                    .collect();
                done_if(missing.is_empty(), || format!("no peer yet on {missing:?}"))
            }
            A::AwaitCatchUp => {
                let peers = w.new_peers(op).await?;
                let behind: Vec<String> = peers
                    .iter()
                    .filter(|p| !p.caught_up)
                    .map(|p| match &p.restore {
                        Some(r) => format!(
                            "{} restoring {:.0}/{:.0} MB at {:.1} MB/s, {}",
                            p.zone,
                            r.done_mb,
                            r.total_mb,
                            r.mb_per_s,
                            eta(r.eta())
                        ),
                        None => format!("{} not caught up", p.zone),
                    })
                    .collect();
                done_if(!peers.is_empty() && behind.is_empty(), || {
                    if peers.is_empty() {
                        "no new peers".into()
                    } else {
                        behind.join("; ")
                    }
                })
            }
            A::ProvisionMorays => {
                let n = w.new_morays(op).await?;
                done_if(n >= job.morays, || {
                    format!("{n} of {} morays running", job.morays)
                })
            }
            A::BuildRings => {
                let mut missing = Vec::new();
                for s in [
                    crate::reshard::RingStage::R1,
                    crate::reshard::RingStage::R2,
                    crate::reshard::RingStage::R3,
                ] {
                    if w.staged_image(op, s).await?.is_none() {
                        missing.push(s.as_str());
                    }
                }
                done_if(missing.is_empty(), || {
                    format!("not imported: {}", missing.join(", "))
                })
            }
            A::TakeDumpLock => {
                let l = w.dump_lock(&job.mv.from).await?;
                done_if(l, || "no /pg_dump_lock yet".into())
            }
            A::RollOutRing { stage } => {
                let image = self.image_of(*stage).await?;
                let live = w.live_image().await?;
                let not: Vec<String> = w
                    .electric_morays()
                    .await?
                    .into_iter()
                    .filter(|e| e.ring_image.as_deref() != Some(image.as_str()))
                    .map(|e| {
                        format!(
                            "{} on {}",
                            e.zone,
                            e.error.or(e.ring_image).unwrap_or_else(|| "no ring".into())
                        )
                    })
                    .collect();
                done_if(live == image && not.is_empty(), || {
                    format!(
                        "ring {} ({image}): SAPI names {live}; not yet serving it: {}",
                        stage.as_str(),
                        not.join(", ")
                    )
                })
            }
            A::Sentinel => {
                let mut unseen = Vec::new();
                for p in w.new_peers(op).await? {
                    if !w.sentinel_seen(op, &p.zone).await? {
                        unseen.push(p.zone);
                    }
                }
                done_if(unseen.is_empty(), || {
                    format!("sentinel not yet on {}", unseen.join(", "))
                })
            }
            A::DetachPeers => {
                let peers = w.new_peers(op).await?;
                let state = w.new_shard_state(&job.mv.to).await?;
                let pending: Vec<&str> = peers
                    .iter()
                    .filter(|p| p.shard != job.mv.to || !p.running)
                    .map(|p| p.zone.as_str())
                    .collect();
                done_if(pending.is_empty() && state.is_some(), || {
                    format!(
                        "not yet running in {}: {pending:?}; state: {state:?}",
                        job.mv.to
                    )
                })
            }
            A::ReleaseDumpLock => {
                let l = w.dump_lock(&job.mv.from).await?;
                done_if(!l, || "/pg_dump_lock still there".into())
            }
            A::Cleanup => {
                let mut saw = Vec::new();
                let mut all = true;
                for t in cleanup_targets(job) {
                    let p = w.cleanup(&t, self.timeouts.cleanup_slice).await?;
                    all &= p.done;
                    let eta_s = (p.rows_per_s > 0.0)
                        .then(|| Duration::from_secs_f64(p.remaining as f64 / p.rows_per_s));
                    saw.push(format!(
                        "{}: {} deleted, ~{} left, {:.0} rows/s, {}",
                        t.shard,
                        p.deleted,
                        p.remaining,
                        p.rows_per_s,
                        eta(eta_s)
                    ));
                }
                done_if(all, || saw.join("; "))
            }
            A::VerifyCounts => {
                let mut left = Vec::new();
                for t in cleanup_targets(job) {
                    let r = w.verify(&t).await?;
                    if !r.left.is_empty() {
                        left.push(format!("{}: rows left in vnodes {:?}", t.shard, r.left));
                    }
                }
                done_if(left.is_empty(), || left.join("; "))
            }
            A::Unfreeze => {
                let from = w.shard(&job.mv.from).await?.frozen;
                let to = w.new_shard_state(&job.mv.to).await?.and_then(|s| s.frozen);
                let ours = |f: &Option<String>| f.as_deref() == Some(reason.as_str());
                done_if(!ours(&from) && !ours(&to), || {
                    "our freeze is still there".into()
                })
            }
            A::ReleaseRegionLock => {
                let h = w.region_lock().await?;
                done_if(h.as_deref() != Some(op), || "region lock still ours".into())
            }
            A::RemoveMorays => {
                let n = w.new_morays(op).await?;
                done_if(n == 0, || format!("{n} morays left"))
            }
            A::RemovePeers => {
                let n = w.new_peers(op).await?.len();
                done_if(n == 0, || format!("{n} new peers left"))
            }
        })
    }
}
