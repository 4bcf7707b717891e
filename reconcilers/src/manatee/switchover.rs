//! The `switchover` strategy: the primary is upgraded by a planned
//! promotion of the (already upgraded) sync instead of a reprovision in
//! place, so a shard's write outage is one takeover.
//!
//! asyncs from the tail -> the sync -> (approval) -> promote the sync
//! through the cluster state (`manatee-adm promote -r sync`: lag under the
//! threshold, an active async present, the request's generation and
//! expiry; research/manatee.md §3.9, §4.7) -> the new primary writable and
//! its new sync caught up -> reprovision the deposed old primary -> rebuild
//! it (`manatee-adm rebuild`) so it rejoins as an async -> full health.

use std::time::Duration;

use crds::manatee::{Approval, ManateeVersionSpec, Strategy};
use time::OffsetDateTime;
use wire::manatee::{ClusterState, PROMOTE_EXPIRY, PromoteInvalid};

use super::plan::{self, short};
use super::{ImageInfo, ManateeAct, ManateeAction, ManateeRunner, Role, ShardObservation};
use crate::error::{BlockReason, Refusal, RefusalReason, WaitReason, WorldError};
use crate::operation::{Gate, PlannedStep, Progress};

/// The first manatee with planned promotion: manatee commit 6e80258
/// (2019-05-07 17:32 UTC, "MANATEE-380 would like `manatee-adm promote`",
/// version 2.1.0 -> package pinned to manatee-state-machine ff78e759,
/// 2019-04-29, the commit that teaches the sitter `promote`). A sitter
/// built before it ignores a promote request, so an sdc-manatee image
/// whose version timestamp is older cannot switch over.
pub const PROMOTE_MIN_VERSION: &str = "20190507T173206Z";

/// How long past a request's expiry the step waits before it stops.
const PROMOTE_GRACE: Duration = Duration::from_secs(10);

/// How a shard's primary is upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryMethod {
    /// sdcadm's order: freeze, reprovision the primary in place, unfreeze.
    Rolling,
    /// A planned promotion of the upgraded sync; the old primary is deposed,
    /// reprovisioned and rebuilt.
    Switchover,
}

/// Whether the image's sitter acts on a promote request: manatee v2 built
/// at or after [`PROMOTE_MIN_VERSION`]. Only the target image matters: a
/// sync promotion is acted on by the sync alone (§3.9), and the sync runs
/// the target image by the time it is promoted (it is upgraded first).
pub fn promote_capable(image: &ImageInfo) -> bool {
    if crate::transplant::manatee_major(image).is_some_and(|m| m != 2) {
        return false;
    }
    image
        .version
        .split('-')
        .find(|s| s.len() == 16 && s.as_bytes()[8] == b'T')
        .is_some_and(|ts| ts >= PROMOTE_MIN_VERSION)
}

/// The method for the shard's primary. `auto` picks the switchover for a
/// shard of three or more peers (an async to become the new sync) whose
/// image acts on a promote request, and sdcadm's order otherwise; an
/// explicit `switchover` that cannot run is refused.
pub fn primary_method(
    strategy: Strategy,
    st: &ClusterState,
    image: Option<&ImageInfo>,
) -> Result<PrimaryMethod, Refusal> {
    let three = !st.is_one_node_write_mode() && st.sync.is_some() && !st.asyncs.is_empty();
    let capable = image.is_some_and(promote_capable);
    match strategy {
        Strategy::Auto if three && capable => Ok(PrimaryMethod::Switchover),
        Strategy::Switchover if !three => Err(Refusal::new(
            RefusalReason::SwitchoverNeedsAsync,
            format!(
                "`strategy: switchover` needs a shard of three or more peers (primary {} has {} sync and {} async): an async becomes the new sync; use `rolling` or `auto`",
                st.primary.zone_id,
                usize::from(st.sync.is_some()),
                st.asyncs.len()
            ),
        )),
        Strategy::Switchover if !capable => Err(Refusal::new(
            RefusalReason::PromoteUnsupported,
            format!(
                "`strategy: switchover` needs a manatee that acts on a promote request (v2 built at or after {PROMOTE_MIN_VERSION}); image {} is {}; use `rolling` or `auto`",
                image.map_or("?", |i| i.uuid.as_str()),
                image.map_or("not in IMGAPI", |i| i.version.as_str())
            ),
        )),
        Strategy::Switchover => Ok(PrimaryMethod::Switchover),
        _ => Ok(PrimaryMethod::Rolling),
    }
}

/// The primary's steps of a switchover.
pub(super) fn steps(
    spec: &ManateeVersionSpec,
    obs: &ShardObservation,
    st: &ClusterState,
    steps: &mut Vec<PlannedStep<ManateeAction>>,
) {
    let primary = &st.primary.zone_id;
    let alias = obs
        .peer(primary)
        .map_or(primary.clone(), |p| p.alias.clone());
    let wanted = &spec.image.uuid;
    if spec.rollout.approval != Approval::Never {
        steps.push(PlannedStep {
            name: "approve-primary".into(),
            description: format!(
                "wait for `tritonctl approve` before the switchover of {} (one takeover: writes pause while the sync takes over)",
                obs.shard
            ),
            touches: vec![],
            irreversible: false,
            action: ManateeAction::Approval {
                what: format!("the switchover of shard {}", obs.shard),
            },
        });
    }
    steps.push(PlannedStep {
        name: "promote-sync".into(),
        description: format!(
            "promote the upgraded sync of {} through the cluster state (manatee-adm promote: sync caught up, an active async, generation, {} s expiry); {alias} is deposed, writes pause for one takeover",
            obs.shard,
            PROMOTE_EXPIRY.as_secs()
        ),
        touches: vec![alias.clone(), obs.shard.clone()],
        irreversible: false,
        action: ManateeAction::Promote {
            primary: primary.clone(),
            image: wanted.clone(),
        },
    });
    steps.push(PlannedStep {
        name: "wait-promoted".into(),
        description: format!(
            "wait until the new primary of {} is writable and its new sync caught up",
            obs.shard
        ),
        touches: vec![],
        irreversible: false,
        action: ManateeAction::WaitPromoted {
            deposed: primary.clone(),
        },
    });
    steps.push(plan::reprovision_step(
        obs,
        st,
        primary,
        Role::Deposed,
        wanted,
    ));
    steps.push(PlannedStep {
        name: format!("rebuild-{}", short(primary)),
        description: format!(
            "rebuild {alias}, deposed by our switchover (manatee-adm rebuild); it rejoins as an async"
        ),
        touches: vec![alias],
        irreversible: false,
        action: ManateeAction::Rebuild {
            zone: primary.clone(),
        },
    });
    steps.push(PlannedStep {
        name: "wait-healthy".into(),
        description: format!(
            "wait until shard {} is whole: primary writable, sync caught up, no deposed peer",
            obs.shard
        ),
        touches: vec![],
        irreversible: false,
        action: ManateeAction::WaitHealthy,
    });
}

/// Whether a promote request in the state is one we may wait on: for the
/// current sync, at the current generation.
fn ours(st: &ClusterState) -> bool {
    matches!(
        st.promote_request(),
        Some(Ok(r)) if st.sync.as_ref().is_some_and(|s| s.id == r.id) && r.generation == st.generation
    )
}

impl<W: ManateeAct> ManateeRunner<'_, W> {
    /// Never promote a sync that is not caught up or not on the image,
    /// never without an active async, a deposed peer or a frozen shard;
    /// every other peer healthy, since the shard runs on two peers while
    /// the old primary is rebuilt.
    pub(super) fn promote_gate(&self, obs: &ShardObservation, primary: &str, image: &str) -> Gate {
        let Some(st) = &obs.state else {
            return Gate::wait(WaitReason::Settling, "no cluster state");
        };
        if st.primary.zone_id != primary {
            return Gate::Open; // taken over already; act is a no-op
        }
        if let Some(d) = st.deposed.first() {
            return Gate::block(
                BlockReason::Replan,
                format!("a takeover deposed {} since this plan was made", d.zone_id),
            );
        }
        if st.is_frozen() {
            return Gate::block(
                RefusalReason::FrozenByOther,
                format!(
                    "shard {} is frozen ({}); manatee-adm refuses to promote in a frozen shard",
                    self.shard,
                    st.freeze.reason().unwrap_or("no reason given")
                ),
            );
        }
        if st.promote.is_some() {
            if ours(st) {
                return Gate::Open; // written before a restart; act is a no-op
            }
            return Gate::block(
                RefusalReason::PromotePending,
                format!(
                    "shard {} holds a promote request we did not write ({}); clear it (manatee-adm clear-promote) or let it act",
                    self.shard,
                    st.promote
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ),
            );
        }
        let Some(sync) = st.sync.as_ref().and_then(|s| obs.peer(&s.zone_id)) else {
            return Gate::block(BlockReason::Replan, format!("{} has no sync", self.shard));
        };
        if sync.image != image {
            return Gate::block(
                BlockReason::Replan,
                format!(
                    "sync {} runs image {}, not {image}; it would take over on the old image",
                    sync.alias, sync.image
                ),
            );
        }
        if let Err(e) = self.health(obs) {
            return Gate::wait(
                WaitReason::Health,
                format!(
                    "switchover waits for full health (the shard runs on two peers while the old primary is rebuilt): {e}"
                ),
            );
        }
        let active_async = st
            .asyncs
            .iter()
            .filter_map(|a| obs.peer(&a.zone_id))
            .any(|p| p.active && p.pg_online);
        if !active_async {
            return Gate::wait(
                WaitReason::Settling,
                format!(
                    "switchover waits for an active async in {} to become the new sync",
                    self.shard
                ),
            );
        }
        Gate::Open
    }

    /// Write the promote request unless the takeover happened or our
    /// request is already there.
    pub(super) async fn promote_act(
        &self,
        obs: &ShardObservation,
        primary: &str,
    ) -> Result<(), WorldError> {
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
        if st.primary.zone_id != primary || st.promote.is_some() {
            return Ok(());
        }
        let sync = st
            .sync
            .as_ref()
            .ok_or_else(|| WorldError::Missing(format!("{} has no sync", self.shard)))?;
        // The sitters judge expireTime on their own (wall) clocks, as
        // manatee-adm writes it: never the runner's clock, which a
        // maintenance window may shift.
        let expire = OffsetDateTime::now_utc() + PROMOTE_EXPIRY;
        self.world
            .promote_sync(&self.shard, &sync.zone_id, expire)
            .await
    }

    /// Done once the old primary is no longer primary. A request that
    /// expired (or whose generation passed) without a takeover is cleared,
    /// as `manatee-adm clear-promote`, and never acted on again; the step
    /// then stops at its timeout with what was seen.
    pub(super) async fn promoted(
        &self,
        obs: &ShardObservation,
        primary: &str,
    ) -> Result<Progress, WorldError> {
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
        if st.primary.zone_id != primary {
            return Ok(Progress::Done);
        }
        let seen = seen(obs, st);
        let Some(req) = st.promote_request() else {
            return Ok(Progress::NotYet(format!(
                "no promote request in the state and {primary} is still primary ({seen})"
            )));
        };
        let now = OffsetDateTime::now_utc(); // as the sitters see it

        match req.and_then(|r| r.check(st, now).map(|()| r)) {
            Ok(r) => Ok(Progress::NotYet(format!(
                "promote request of {} (expires {}) not acted on yet ({seen})",
                r.id, r.expire_time
            ))),
            Err(why @ (PromoteInvalid::Expired(_) | PromoteInvalid::WrongGeneration { .. }))
                if ours_or_stale(st) =>
            {
                self.world.clear_promote(&self.shard).await?;
                Ok(Progress::NotYet(format!(
                    "the promote request did not take effect ({why}); cleared it (clear-promote); {seen}"
                )))
            }
            Err(why) => Ok(Progress::NotYet(format!(
                "the promote request is invalid ({why}); the primary removes it ({seen})"
            ))),
        }
    }

    /// The new primary writable and its new sync caught up.
    pub(super) fn promoted_settled(&self, obs: &ShardObservation, deposed: &str) -> Progress {
        let Some(st) = &obs.state else {
            return Progress::NotYet("no cluster state".into());
        };
        if st.primary.zone_id == deposed {
            return Progress::NotYet(format!("{deposed} is still primary"));
        }
        let primary_up = obs
            .peer(&st.primary.zone_id)
            .is_some_and(|p| p.active && p.pg_online);
        let sync_ok = st
            .sync
            .as_ref()
            .and_then(|s| obs.peer(&s.zone_id))
            .is_some_and(|s| self.standby_ok(s));
        if primary_up && sync_ok {
            Progress::Done
        } else {
            Progress::NotYet(format!(
                "new primary up {primary_up}, new sync caught up {sync_ok} ({})",
                seen(obs, st)
            ))
        }
    }

    /// Timeout of the promote step: the request's expiry and a grace.
    pub(super) fn promote_timeout(&self) -> Duration {
        PROMOTE_EXPIRY + PROMOTE_GRACE
    }
}

/// A request for the peer that is sync, or one left from an older
/// generation: either may be cleared once it is past use.
fn ours_or_stale(st: &ClusterState) -> bool {
    match st.promote_request() {
        Some(Ok(r)) => {
            r.generation != st.generation || st.sync.as_ref().is_some_and(|s| s.id == r.id)
        }
        _ => false,
    }
}

/// What the check saw, for the operator.
fn seen(obs: &ShardObservation, st: &ClusterState) -> String {
    let who = |z: &str| obs.peer(z).map_or(z.to_string(), |p| p.alias.clone());
    let sync = st.sync.as_ref().map(|s| {
        let lag = obs.peer(&s.zone_id).and_then(|p| p.lag_seconds);
        format!("sync {} lag {lag:?}", who(&s.zone_id))
    });
    format!(
        "generation {}, primary {}, {}, asyncs [{}]",
        st.generation,
        who(&st.primary.zone_id),
        sync.unwrap_or_else(|| "no sync".into()),
        st.asyncs
            .iter()
            .map(|a| who(&a.zone_id))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
