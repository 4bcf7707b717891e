//! What `manatee-adm` does to ZooKeeper (research `manatee.md` §4.2): every
//! write is read-modify-CAS on the whole state plus a `history/0-` copy, in
//! one multi-op; a version mismatch re-reads and retries.

use coord::{CoordError, Coordination, CreateMode, Expect, Op, Stat};
use wire::manatee::{
    self, ActivePeer, ClusterState, FreezeError, HistoryNodeName, HistoryWriter, PromoteRequest,
    StateWrite,
};

use super::SimError;

/// The ops of one state write (set-at-version or create, plus history).
pub(crate) fn write_ops(w: StateWrite) -> Vec<Op> {
    let first = match w.expected_version {
        Some(v) => Op::set(&w.state_path, w.data.clone(), Expect::Version(v)),
        None => Op::create(&w.state_path, w.data.clone(), CreateMode::Persistent),
    };
    vec![
        first,
        Op::create(&w.history_prefix, w.data, CreateMode::PersistentSequential),
    ]
}

/// `manatee-adm zk-state`: the state and its stat, `None` if absent.
pub async fn get_state(
    c: &dyn Coordination,
    shard: &str,
) -> Result<Option<(ClusterState, Stat)>, SimError> {
    match c.get(&manatee::state_path(shard)).await {
        Ok((data, stat)) => Ok(Some((ClusterState::from_json(&data)?, stat))),
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Create the state where none exists (state-backfill, or the direct write
/// manta-reshard does), with a `history/0-` copy.
pub async fn create_state(
    c: &dyn Coordination,
    shard: &str,
    state: &ClusterState,
) -> Result<(), SimError> {
    let w = manatee::prepare_state_write(shard, state, None, HistoryWriter::Admin)?;
    c.mkdirp(&manatee::history_path(shard)).await?;
    c.multi(write_ops(w)).await?;
    Ok(())
}

/// Read-modify-CAS with retry on a version mismatch. `f` may refuse.
pub async fn update_state<F>(
    c: &dyn Coordination,
    shard: &str,
    mut f: F,
) -> Result<ClusterState, SimError>
where
    F: FnMut(&mut ClusterState) -> Result<(), SimError> + Send,
{
    loop {
        let (mut state, stat) = get_state(c, shard)
            .await?
            .ok_or_else(|| SimError::NoState(shard.to_string()))?;
        f(&mut state)?;
        let w =
            manatee::prepare_state_write(shard, &state, Some(stat.version), HistoryWriter::Admin)?;
        match c.multi(write_ops(w)).await {
            Ok(_) => return Ok(state),
            Err(e) if matches!(e.root(), CoordError::BadVersion(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `manatee-adm freeze -r REASON`.
pub async fn freeze(
    c: &dyn Coordination,
    shard: &str,
    reason: &str,
) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| Ok(s.freeze(reason)?)).await
}

/// `manatee-adm unfreeze`.
pub async fn unfreeze(c: &dyn Coordination, shard: &str) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| {
        s.unfreeze().map(|_| ()).map_err(SimError::from)
    })
    .await
}

/// Unfreeze only a freeze with exactly this reason.
pub async fn unfreeze_own(
    c: &dyn Coordination,
    shard: &str,
    reason: &str,
) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| {
        s.unfreeze_own(reason).map(|_| ()).map_err(SimError::from)
    })
    .await
}

/// `manatee-adm reap`: drop a peer from `deposed[]`.
pub async fn reap(
    c: &dyn Coordination,
    shard: &str,
    peer_id: &str,
) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| {
        let before = s.deposed.len();
        s.deposed.retain(|p| p.id != peer_id);
        if s.deposed.len() == before {
            return Err(SimError::Refused(format!(
                "{peer_id} not in deposed or does not exist"
            )));
        }
        Ok(())
    })
    .await
}

/// `manatee-adm set-onwm -m on|off -y`.
pub async fn set_onwm(
    c: &dyn Coordination,
    shard: &str,
    on: bool,
) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| {
        match (on, s.one_node_write_mode) {
            (true, Some(true)) => {
                return Err(SimError::Refused(
                    "One node write mode already enabled".into(),
                ));
            }
            (false, None) => {
                return Err(SimError::Refused(
                    "One node write mode already disabled".into(),
                ));
            }
            _ => {}
        }
        s.one_node_write_mode = on.then_some(true);
        Ok(())
    })
    .await
}

/// Write a promote request (`manatee-adm promote` without its prompts).
pub async fn promote(
    c: &dyn Coordination,
    shard: &str,
    req: &PromoteRequest,
) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| {
        s.set_promote(req);
        Ok(())
    })
    .await
}

/// `manatee-adm clear-promote`.
pub async fn clear_promote(c: &dyn Coordination, shard: &str) -> Result<ClusterState, SimError> {
    update_state(c, shard, |s| {
        if s.promote.take().is_none() {
            return Err(SimError::Refused(
                "cluster has no outstanding promotion request".into(),
            ));
        }
        Ok(())
    })
    .await
}

/// One `/history` child (`manatee-adm history -j`).
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    pub name: String,
    pub node: HistoryNodeName,
    pub ctime_ms: i64,
    /// `None` for a v1 entry or unparseable data.
    pub state: Option<ClusterState>,
}

/// Every history entry, sorted by ZooKeeper sequence.
pub async fn history(c: &dyn Coordination, shard: &str) -> Result<Vec<HistoryEntry>, SimError> {
    let dir = manatee::history_path(shard);
    let names = match c.children(&dir).await {
        Ok(n) => n,
        Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let (data, stat) = match c.get(&coord::join(&dir, &name)).await {
            Ok(x) => x,
            Err(CoordError::NoNode(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(HistoryEntry {
            node: HistoryNodeName::parse(&name),
            name,
            ctime_ms: stat.ctime_ms,
            state: ClusterState::from_json(&data).ok(),
        });
    }
    out.sort_by_key(|e| e.node.seq());
    Ok(out)
}

/// `manatee-adm zk-active`, deduplicated and ordered as the sitters see it.
pub async fn active(c: &dyn Coordination, shard: &str) -> Result<Vec<ActivePeer>, SimError> {
    match super::zk::read_active(c, &manatee::election_path(shard), false).await {
        Ok((peers, _)) => Ok(peers),
        Err(CoordError::NoNode(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

impl From<FreezeError> for SimError {
    fn from(e: FreezeError) -> Self {
        SimError::Freeze(e)
    }
}
