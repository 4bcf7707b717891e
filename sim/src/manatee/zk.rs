//! The sitter's ZooKeeper side (manatee's zookeeperMgr): sessions, the
//! election node, watches on the state and on the election children, the
//! debounced active-peer list, and the state write multi-op.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, Coordination, CreateMode, OpResult, Watch, WatchEvent};
use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use wire::manatee::{
    self, ClusterState, ElectionNodeData, HistoryWriter, PeerIdent, active_ids, active_peers,
};

use super::config::TimeScale;
use super::peer::Snapshot;
use super::sitter::Event;

/// Ends a session from outside, as the ensemble does when it times out.
pub type Expirer = Arc<dyn Fn() -> BoxFuture<'static, coord::Result<()>> + Send + Sync>;

/// A session plus the backend's hook to expire it.
#[derive(Clone)]
pub struct Session {
    pub coord: Arc<dyn Coordination>,
    pub expire: Expirer,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &format_args!("{:#x}", self.coord.session_id()))
            .field("state", &self.coord.session_state())
            .finish()
    }
}

/// Where sessions come from: the in-process ensemble or a real ZooKeeper.
#[async_trait]
pub trait SessionProvider: Send + Sync + 'static {
    async fn connect(&self) -> coord::Result<Session>;
}

#[async_trait]
impl SessionProvider for coord::mem::MemEnsemble {
    async fn connect(&self) -> coord::Result<Session> {
        let session = coord::mem::MemEnsemble::connect(self);
        let id = session.session_id();
        let ensemble = self.clone();
        Ok(Session {
            coord: session,
            expire: Arc::new(move || {
                ensemble.expire_session(id);
                Box::pin(async { Ok(()) })
            }),
        })
    }
}

/// Sessions on a real ZooKeeper ensemble.
#[derive(Clone, Debug)]
pub struct ZkProvider {
    pub connect_string: String,
    pub session_timeout: Duration,
}

#[async_trait]
impl SessionProvider for ZkProvider {
    async fn connect(&self) -> coord::Result<Session> {
        let zk =
            coord::zk::ZkCoordination::connect(&self.connect_string, self.session_timeout).await?;
        let weak = Arc::downgrade(&zk);
        Ok(Session {
            coord: zk,
            expire: Arc::new(move || {
                let weak = weak.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(zk) => zk.expire_from_outside().await,
                        None => Ok(()),
                    }
                })
            }),
        })
    }
}

/// The session slot shared by the watch loop, state writes and the zone
/// handle (which closes or expires it).
pub(crate) type SessionSlot = Arc<Mutex<Option<Session>>>;

/// Until when a zone cannot reach ZooKeeper (a partition).
pub(crate) type Outage = Arc<Mutex<Option<tokio::time::Instant>>>;

pub(crate) struct ZkCtx {
    pub shard: String,
    pub outage: Outage,
    pub ident: PeerIdent,
    pub provider: Arc<dyn SessionProvider>,
    pub slot: SessionSlot,
    pub clock: TimeScale,
    pub backoff: Duration,
}

fn ended(ev: WatchEvent) -> bool {
    matches!(ev, WatchEvent::SessionExpired | WatchEvent::SessionClosed)
}

/// Read the state node and leave a watch on it (an exists-watch while absent).
pub(crate) async fn read_state(
    c: &dyn Coordination,
    path: &str,
) -> coord::Result<(Option<Snapshot>, Watch)> {
    loop {
        match c.get_watch(path).await {
            Ok((raw, stat, w)) => {
                return Ok((
                    Some(Snapshot {
                        raw,
                        version: stat.version,
                        ctime_ms: stat.ctime_ms,
                    }),
                    w,
                ));
            }
            Err(CoordError::NoNode(_)) => match c.exists_watch(path).await? {
                (None, w) => return Ok((None, w)),
                // Created in between: read it.
                (Some(_), _) => continue,
            },
            Err(e) => return Err(e),
        }
    }
}

/// The election children with their data, as the active-peer list (§2.2).
pub(crate) async fn read_active(
    c: &dyn Coordination,
    election: &str,
    watch: bool,
) -> coord::Result<(Vec<wire::manatee::ActivePeer>, Option<Watch>)> {
    let (names, w) = if watch {
        let (n, w) = c.children_watch(election).await?;
        (n, Some(w))
    } else {
        (c.children(election).await?, None)
    };
    let mut nodes = Vec::with_capacity(names.len());
    for name in names {
        match c.get(&coord::join(election, &name)).await {
            Ok((data, _)) => match ElectionNodeData::from_json(&data) {
                Ok(d) => nodes.push((name, d)),
                Err(e) => tracing::warn!(%name, "ignoring election node with bad data: {e}"),
            },
            // Gone between listing and reading.
            Err(CoordError::NoNode(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((active_peers(nodes), w))
}

/// One sitter's ZooKeeper manager: builds a session, sets up the election
/// node and watches, and forwards `init` / `activeChange` /
/// `clusterStateChange`. On session expiry it builds a new session (a new
/// ephemeral node, higher sequence), as manatee's zookeeperMgr does.
pub(crate) async fn watch_loop(ctx: ZkCtx, tx: UnboundedSender<Event>) {
    let mut first = true;
    let mut last_ids: Option<Vec<String>> = None;
    loop {
        // A partitioned zone cannot build a session until the partition heals.
        let until = *ctx.outage.lock().unwrap();
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        let session = match ctx.provider.connect().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(peer = %ctx.ident.id, "zookeeper connect failed: {e}");
                ctx.clock.sleep(ctx.backoff).await;
                continue;
            }
        };
        *ctx.slot.lock().unwrap() = Some(session.clone());
        let result = run_session(&ctx, &session, &tx, &mut first, &mut last_ids).await;
        if tx.is_closed() {
            return;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::info!(peer = %ctx.ident.id, "zookeeper session lost ({e}); starting a new one");
                // A session that merely hit an error is still alive: close it
                // so it does not leave a second election node behind.
                if !session.coord.session_state().is_terminal() {
                    session.coord.close().await;
                }
                let mut slot = ctx.slot.lock().unwrap();
                if slot
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(&s.coord, &session.coord))
                {
                    *slot = None;
                }
            }
        }
    }
}

async fn run_session(
    ctx: &ZkCtx,
    session: &Session,
    tx: &UnboundedSender<Event>,
    first: &mut bool,
    last_ids: &mut Option<Vec<String>>,
) -> coord::Result<()> {
    let c = session.coord.as_ref();
    let election = manatee::election_path(&ctx.shard);
    let state_path = manatee::state_path(&ctx.shard);
    // zookeeperMgr's setup order: mkdir election, mkdir history, watch
    // state, create the ephemeral node, watch election (§2.2).
    c.mkdirp(&election).await?;
    c.mkdirp(&manatee::history_path(&ctx.shard)).await?;
    let (snap, mut state_watch) = read_state(c, &state_path).await?;
    c.create(
        &manatee::election_prefix(&ctx.shard, &ctx.ident.id),
        &ctx.ident.election_data().to_json(),
        CreateMode::EphemeralSequential,
    )
    .await?;
    let (active, w) = read_active(c, &election, true).await?;
    let mut child_watch = w.expect("watch requested");
    let ids = active_ids(&active);
    let idents: Vec<PeerIdent> = active.into_iter().map(|a| a.ident).collect();
    let send = |ev: Event| tx.send(ev).map_err(|_| CoordError::SessionClosed);
    if *first {
        send(Event::ZkInit {
            state: snap,
            active: idents,
        })?;
        *first = false;
    } else {
        send(Event::StateChange(snap))?;
        if last_ids.as_ref() != Some(&ids) {
            send(Event::ActiveChange(idents))?;
        }
    }
    *last_ids = Some(ids);

    let mut events = c.session_events();
    loop {
        tokio::select! {
            ev = &mut state_watch => {
                if ended(ev) {
                    return Err(CoordError::SessionExpired);
                }
                let (snap, w) = read_state(c, &state_path).await?;
                state_watch = w;
                send(Event::StateChange(snap))?;
            }
            ev = &mut child_watch => {
                if ended(ev) {
                    return Err(CoordError::SessionExpired);
                }
                let (active, w) = read_active(c, &election, true).await?;
                child_watch = w.expect("watch requested");
                let ids = active_ids(&active);
                // activeChange is debounced on the ordered id list (§2.2).
                if last_ids.as_ref() != Some(&ids) {
                    *last_ids = Some(ids);
                    send(Event::ActiveChange(active.into_iter().map(|a| a.ident).collect()))?;
                }
            }
            () = session_over(&mut events) => {
                return Err(CoordError::SessionExpired);
            }
        }
    }
}

/// Resolves once the session reached a terminal state.
async fn session_over(events: &mut tokio::sync::watch::Receiver<coord::SessionState>) {
    // An error means the sender is gone, which only happens after the end.
    let _ = events.wait_for(|s| s.is_terminal()).await.map(|_| ());
}

/// `putClusterState` (§2.5): one multi-op of set-at-version (or create) plus
/// `history/<generation>-` PERSISTENT_SEQUENTIAL with the same data.
/// Returns the new (version, ctime) of the state node.
pub(crate) async fn put_state(
    c: &dyn Coordination,
    shard: &str,
    state: &ClusterState,
    expected: Option<i32>,
    writer: HistoryWriter,
) -> Result<(i32, i64), String> {
    let w =
        manatee::prepare_state_write(shard, state, expected, writer).map_err(|e| e.to_string())?;
    let state_path = w.state_path.clone();
    let results = c
        .multi(super::adm::write_ops(w))
        .await
        .map_err(|e| e.to_string())?;
    match results.first() {
        Some(OpResult::Set(stat)) => Ok((stat.version, stat.ctime_ms)),
        Some(OpResult::Created(_)) => {
            // Learn the new node's ctime so later reads compare correctly;
            // a failure here only costs that precision.
            let ctime = match c.exists(&state_path).await {
                Ok(Some(stat)) if stat.version == 0 => stat.ctime_ms,
                _ => 0,
            };
            Ok((0, ctime))
        }
        other => Err(format!("unexpected multi result {other:?}")),
    }
}
