//! The sitter process: glues the peer state machine to its ZooKeeper manager
//! and its postgres, one event at a time.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use wire::manatee::{HistoryWriter, PeerIdent};

use super::config::ManateeSimConfig;
use super::peer::{Action, Peer, PeerDebug, Snapshot};
use super::pg::PgServer;
use super::zk::{self, SessionProvider, SessionSlot, ZkCtx};

#[derive(Debug)]
pub(crate) enum Event {
    ZkInit {
        state: Option<Snapshot>,
        active: Vec<PeerIdent>,
    },
    ActiveChange(Vec<PeerIdent>),
    StateChange(Option<Snapshot>),
    PutDone(Result<(i32, i64), String>),
    BackoffElapsed,
    PgApplied(Result<(), String>),
    PgRetry,
}

pub(crate) struct SitterParams {
    pub shard: String,
    pub ident: PeerIdent,
    pub one_node_write_mode: bool,
    pub provider: Arc<dyn SessionProvider>,
    pub pg: Arc<dyn PgServer>,
    pub cfg: Arc<ManateeSimConfig>,
    pub slot: SessionSlot,
    pub outage: zk::Outage,
    pub status: watch::Sender<PeerDebug>,
}

/// Run a sitter until it dies. Returns the fatal error that killed it.
/// Dropping the future (aborting its task) stops everything it started.
pub(crate) async fn run(p: SitterParams) -> String {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks: JoinSet<()> = JoinSet::new();
    tasks.spawn(zk::watch_loop(
        ZkCtx {
            shard: p.shard.clone(),
            outage: p.outage.clone(),
            ident: p.ident.clone(),
            provider: p.provider.clone(),
            slot: p.slot.clone(),
            clock: p.cfg.time_scale,
            backoff: p.cfg.backoff,
        },
        tx.clone(),
    ));

    let xlog_node = p.pg.clone();
    let mut peer = Peer::new(
        p.ident.clone(),
        p.one_node_write_mode,
        Box::new(move || xlog_node.xlog_location()),
    );
    // Postgres is the sitter's child: it is never running when the sitter
    // starts; `setup` is whether the dataset already holds a database.
    let mut actions = peer.on_pg_init(false, p.pg.is_setup());
    loop {
        for action in actions.drain(..) {
            if let Some(why) = perform(&p, action, &tx, &mut tasks) {
                p.status.send_replace(peer.debug());
                return why;
            }
        }
        p.status.send_replace(peer.debug());
        while tasks.try_join_next().is_some() {}
        let Some(ev) = rx.recv().await else {
            return "event channel closed".into();
        };
        actions = match ev {
            Event::ZkInit { state, active } => peer.on_zk_init(state, active),
            Event::ActiveChange(active) => peer.on_active_change(active),
            Event::StateChange(snap) => peer.on_state_change(snap),
            Event::PutDone(r) => peer.on_put_done(r),
            Event::BackoffElapsed => peer.on_backoff_elapsed(),
            Event::PgApplied(r) => peer.on_pg_applied(r),
            Event::PgRetry => peer.on_pg_retry(),
        };
    }
}

/// Start one action; returns the fatal error if the action is `Fatal`.
fn perform(
    p: &SitterParams,
    action: Action,
    tx: &mpsc::UnboundedSender<Event>,
    tasks: &mut JoinSet<()>,
) -> Option<String> {
    let tx = tx.clone();
    match action {
        Action::Fatal(why) => return Some(why),
        Action::Put { state, expected } => {
            let slot = p.slot.clone();
            let shard = p.shard.clone();
            tasks.spawn(async move {
                let session = slot.lock().unwrap().clone();
                let result = match session {
                    Some(s) => {
                        zk::put_state(
                            s.coord.as_ref(),
                            &shard,
                            &state,
                            expected,
                            HistoryWriter::Sitter,
                        )
                        .await
                    }
                    None => Err("no zookeeper session".to_string()),
                };
                let _ = tx.send(Event::PutDone(result));
            });
        }
        Action::PgApply {
            config,
            restore_from,
        } => {
            let (pg, cfg) = (p.pg.clone(), p.cfg.clone());
            tasks.spawn(async move {
                let r = pg.apply(&config, restore_from.as_ref(), &cfg).await;
                if let Err(e) = &r {
                    tracing::warn!(role = ?config.role, "applying the postgres configuration: {e}");
                }
                let _ = tx.send(Event::PgApplied(r));
            });
        }
        Action::BackoffThenEval | Action::BackoffThenPgApply => {
            let ev_is_eval = matches!(action, Action::BackoffThenEval);
            let (clock, backoff) = (p.cfg.time_scale, p.cfg.backoff);
            tasks.spawn(async move {
                clock.sleep(backoff).await;
                let _ = tx.send(if ev_is_eval {
                    Event::BackoffElapsed
                } else {
                    Event::PgRetry
                });
            });
        }
    }
    None
}
