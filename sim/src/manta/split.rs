//! Shard split primitives (issue #15; RFD 103, manta-reshard phases 4 and
//! 9-11, research/resharding.md §3.6): the **driver** side.
//!
//! Everything here is a call a controller can make too: a zone provisioned
//! into the source shard (SAPI CreateInstance of a `postgres` instance;
//! here [`ManateeSim::add_zone`], which the scenario does when SAPI creates
//! one), `svcadm disable manatee-sitter` ([`Zone::stop`]), the SAPI
//! metadata change plus restart/reprovision (the zone boots with the new
//! `MANATEE_SHARD_PATH`: [`Zone::restart`] with the new shard), and the
//! new shard's first cluster state as one ZooKeeper `create`
//! ([`Shard::create_state`]). The **world's** behaviour it relies on is the
//! sitters' own (manatee-state-machine in `sim/src/manatee/`): an added peer
//! joins at the end of the async chain and restores from the primary; a
//! stopped peer leaves the election; a peer whose dataset holds a database
//! never writes a first state and waits for one; a peer named primary by a
//! state takes its own data as it is (real PostgreSQL: streaming stops when
//! its sitter stops, and it starts again as a primary of what it had).

use std::time::Duration;

use wire::manatee::{ClusterState, Freeze, FreezeInfo, PeerIdent};

use crate::manatee::{BootOptions, ManateeSim, PeerRole, SimError, Zone, ZoneSpec};

/// The calls a split makes on a peer's zone, so that the same steps run
/// with the simulation's zone handles ([`Direct`]) or through SAPI and
/// CNAPI as a controller makes them (`split_sapi::SapiCalls`).
pub trait SplitCalls: Sync {
    /// `svcadm disable manatee-sitter` in the zone (postgres stops with it).
    fn disable_sitter(
        &self,
        zone: &Zone,
    ) -> impl std::future::Future<Output = Result<(), SplitError>> + Send;
    /// Make the zone's next boot render `MANATEE_SHARD_PATH=/manatee/<new>`
    /// and start its sitter (metadata update, then enable/restart or
    /// reprovision).
    fn boot_into(
        &self,
        zone: &Zone,
        new_shard: &str,
    ) -> impl std::future::Future<Output = Result<(), SplitError>> + Send;
}

/// The calls made on the simulation's zone handles: a zone's sitter
/// stopped, then restarted with the new shard in its boot options.
pub struct Direct;

impl SplitCalls for Direct {
    async fn disable_sitter(&self, zone: &Zone) -> Result<(), SplitError> {
        zone.stop().await;
        Ok(())
    }
    async fn boot_into(&self, zone: &Zone, new_shard: &str) -> Result<(), SplitError> {
        let boot = BootOptions {
            shard: new_shard.to_string(),
            disable_sitter: false,
            ..zone.boot_options()
        };
        zone.restart(boot).await?;
        Ok(())
    }
}

/// Why a split step cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(transparent)]
    Sim(#[from] SimError),
    /// manta-reshard splits off exactly three peers (primary, sync, async).
    #[error("a split needs exactly 3 new peers, got {0}")]
    PeerCount(usize),
    /// A peer to detach is not a healthy async of the source shard.
    #[error("peer {zone} is not an async of shard {shard} (role {role:?})")]
    NotAsync {
        zone: String,
        shard: String,
        role: PeerRole,
    },
    /// A SAPI or CNAPI call failed.
    #[error("{call}: {message}")]
    Api { call: &'static str, message: String },
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
}

/// The reason the new shard's first state is frozen with (manta-reshard
/// freezes with `reshard plan <uuid>` and unfreezes only that reason).
pub fn freeze_reason(plan: &str) -> String {
    format!("reshard plan {plan}")
}

/// Phase 4 for one peer: provision it into `shard` (it boots with the
/// source shard's `MANATEE_SHARD_PATH`, so its sitter joins the election,
/// is appended to the async chain by the primary and restores from it),
/// then wait until it is an async with postgres online and caught up with
/// the primary's LSN as it was when the peer came up.
pub async fn add_async(
    sim: &ManateeSim,
    shard: &str,
    spec: ZoneSpec,
    timeout: Duration,
) -> Result<Zone, SplitError> {
    add_async_with_progress(sim, shard, spec, timeout)
        .await
        .map(|(z, _)| z)
}

/// A restore's progress as an operator watches it: from the backup
/// server's `GET /restore` (`size`, `completed`) sampled over time, as
/// manta-reshard's `manatee_restore_watch` shows it. Rates and ETA are in
/// modelled time (the simulation's time scale undone).
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreProgress {
    pub mb_done: f64,
    pub mb_total: f64,
    pub mb_per_s: Option<f64>,
    pub eta: Option<Duration>,
    pub done: bool,
}

const MB: f64 = 1024.0 * 1024.0;

/// [`add_async`], also returning every distinct restore progress seen
/// (empty where the restore is not modelled: real PostgreSQL's
/// `pg_basebackup`).
pub async fn add_async_with_progress(
    sim: &ManateeSim,
    shard: &str,
    spec: ZoneSpec,
    timeout: Duration,
) -> Result<(Zone, Vec<RestoreProgress>), SplitError> {
    let zone = sim.add_zone(spec, BootOptions::new(shard)).await?;
    let scale = sim.config().time_scale;
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut seen: Vec<RestoreProgress> = Vec::new();
    loop {
        if let Some(r) = zone.restore_status() {
            let elapsed = scale.modelled(started.elapsed()).as_secs_f64();
            let rate = (elapsed > 0.0 && r.completed > 0).then(|| r.completed as f64 / elapsed);
            let p = RestoreProgress {
                mb_done: r.completed as f64 / MB,
                mb_total: r.size as f64 / MB,
                mb_per_s: rate.map(|b| b / MB),
                eta: rate.map(|b| Duration::from_secs_f64((r.size - r.completed) as f64 / b)),
                done: r.done,
            };
            if seen
                .last()
                .is_none_or(|l| l.mb_done != p.mb_done || l.done != p.done)
            {
                seen.push(p);
            }
        }
        if zone.role() == PeerRole::Async && zone.pg_online() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SplitError::Timeout(
                timeout,
                format!("{} becoming an async of {shard}", zone.zone_id()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_caught_up(sim, shard, &zone, timeout).await?;
    Ok((zone, seen))
}

/// Wait until `zone` is online and its replay position has reached the
/// primary's current position.
pub async fn wait_caught_up(
    sim: &ManateeSim,
    shard: &str,
    zone: &Zone,
    timeout: Duration,
) -> Result<(), SplitError> {
    let s = sim.shard(shard);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut target = None;
    loop {
        if target.is_none()
            && let Some(p) = s.primary_id().await?
            && let Some(pz) = sim.zone_by_peer_id(&p)
        {
            target = pz.lsn();
        }
        if let (Some(t), Some(l)) = (target, zone.lsn())
            && zone.pg_online()
            && l >= t
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SplitError::Timeout(
                timeout,
                format!(
                    "{} catching up (at {:?}, target {target:?})",
                    zone.zone_id(),
                    zone.lsn()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which detached peer takes which role in the new shard. Picked as
/// manta-reshard's phase 9 does: the last peer of the chain is shut down
/// first and becomes the new async, the next the new sync, the last one
/// left (the highest in the chain, so the furthest ahead) the new primary.
#[derive(Clone, Debug)]
pub struct DetachPicks {
    pub primary: Zone,
    pub sync: Zone,
    pub asyncs: Vec<Zone>,
}

impl DetachPicks {
    /// The new shard's first cluster state (phase 11): generation 1,
    /// nobody deposed, `initWal` `0/00000000` (as manta-reshard records),
    /// frozen with `reason`.
    pub fn first_state(&self, reason: &str) -> ClusterState {
        let ident = |z: &Zone| z.ident().clone();
        let mut st = ClusterState::initial(
            ident(&self.primary),
            ident(&self.sync),
            self.asyncs.iter().map(ident).collect(),
        );
        st.generation = 1;
        st.init_wal = "0/00000000".into();
        st.freeze = Freeze::Info(FreezeInfo {
            date: None,
            reason: Some(reason.to_string()),
            extra: Default::default(),
        });
        st
    }
}

/// Phase 9: shut the new peers down, last in the chain first (`svcadm
/// disable manatee-sitter` each, waiting until it has left the source
/// shard's election before the next). Their postgres stops with the
/// sitter: a real standby stops streaming and keeps exactly what it had.
pub async fn shutdown_new_peers(
    sim: &ManateeSim,
    source: &str,
    peers: &[Zone],
    timeout: Duration,
) -> Result<DetachPicks, SplitError> {
    shutdown_new_peers_with(&Direct, sim, source, peers, timeout).await
}

/// [`shutdown_new_peers`] making its calls through `calls`.
pub async fn shutdown_new_peers_with(
    calls: &impl SplitCalls,
    sim: &ManateeSim,
    source: &str,
    peers: &[Zone],
    timeout: Duration,
) -> Result<DetachPicks, SplitError> {
    if peers.len() != 3 {
        return Err(SplitError::PeerCount(peers.len()));
    }
    let s = sim.shard(source);
    let state = s
        .state()
        .await?
        .ok_or_else(|| SimError::Refused(format!("shard {source} has no state")))?;
    // Chain order, from the state's async list.
    let mut ordered = Vec::new();
    for a in &state.asyncs {
        if let Some(z) = peers.iter().find(|z| z.id() == a.id) {
            ordered.push(z.clone());
        }
    }
    if let Some(z) = peers
        .iter()
        .find(|z| !ordered.iter().any(|o| o.id() == z.id()))
    {
        return Err(SplitError::NotAsync {
            zone: z.zone_id().into(),
            shard: source.into(),
            role: z.role(),
        });
    }
    let mut stopped = Vec::new();
    while let Some(z) = ordered.pop() {
        calls.disable_sitter(&z).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        while s.active().await?.iter().any(|a| a.ident.id == z.id()) {
            if tokio::time::Instant::now() >= deadline {
                return Err(SplitError::Timeout(
                    timeout,
                    format!("{} leaving the election of {source}", z.zone_id()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopped.push(z);
    }
    // stopped: [new async, new sync, new primary]
    let primary = stopped.pop().expect("three");
    let sync = stopped.pop().expect("three");
    Ok(DetachPicks {
        primary,
        sync,
        asyncs: stopped,
    })
}

/// Phases 10-11: each peer boots with the new shard's metadata
/// (`MANATEE_SHARD_PATH=/manatee/<new_shard>`: a SAPI metadata update and a
/// restart or same-image reprovision), then the new shard's first state is
/// created, and we wait until the new primary runs it as primary with its
/// sync and asyncs in their planned roles.
pub async fn establish_new_shard(
    sim: &ManateeSim,
    picks: &DetachPicks,
    new_shard: &str,
    reason: &str,
    timeout: Duration,
) -> Result<ClusterState, SplitError> {
    establish_new_shard_with(&Direct, sim, picks, new_shard, reason, timeout).await
}

/// [`establish_new_shard`] making its calls through `calls`.
pub async fn establish_new_shard_with(
    calls: &impl SplitCalls,
    sim: &ManateeSim,
    picks: &DetachPicks,
    new_shard: &str,
    reason: &str,
    timeout: Duration,
) -> Result<ClusterState, SplitError> {
    let all = std::iter::once(&picks.primary)
        .chain(std::iter::once(&picks.sync))
        .chain(picks.asyncs.iter());
    for z in all {
        calls.boot_into(z, new_shard).await?;
    }
    let state = picks.first_state(reason);
    let s = sim.shard(new_shard);
    match s.create_state(&state).await {
        Ok(()) => {}
        // NODE_EXISTS is success (a resumed phase).
        Err(SimError::Coord(coord::CoordError::NodeExists(_))) => {}
        Err(e) => return Err(e.into()),
    }
    picks
        .primary
        .wait_for(timeout, "new primary", |p| p.role == PeerRole::Primary)
        .await?;
    picks
        .sync
        .wait_for(timeout, "new sync", |p| p.role == PeerRole::Sync)
        .await?;
    for a in &picks.asyncs {
        a.wait_for(timeout, "new async", |p| p.role == PeerRole::Async)
            .await?;
    }
    Ok(s.state().await?.unwrap_or(state))
}

/// The peers' identities, for records and tests.
pub fn idents(zones: &[Zone]) -> Vec<PeerIdent> {
    zones.iter().map(|z| z.ident().clone()).collect()
}
