//! A manatee v1 sitter (2014 vintage), enough of it to be the starting point
//! of the v1 -> v2 transplant and to make a naive rolling upgrade fail.
//!
//! v1 keeps no `/manatee/<shard>/state`: each sitter joins
//! `/manatee/<shard>/election` with an ephemeral sequential node and the
//! topology is the election in **sequence order** (research manatee.md §2.2
//! and §4.9: manatee-adm's legacy view and `state-backfill` order by seq):
//! the first is the primary, the second its synchronous standby, each later
//! one replicates from the one before and restores from it when its dataset
//! is empty. A primary with no standby keeps waiting for one (writes block)
//! unless `oneNodeWriteMode` is set in its sitter.json, when it takes writes
//! alone. Moray clients of the compatible vintage fall back to the same
//! order when `/state` is absent (`node-manatee` `_childrenToUrls`).

use std::sync::Arc;

use coord::{CoordError, CreateMode};
use wire::manatee::{self, ElectionNodeData, ElectionNodeName, PeerIdent};

use super::peer::{PeerDebug, PeerRole, PgConfig, PgRole};
use super::sitter::SitterParams;

/// The election in sequence order: (seq, peer).
pub(crate) fn by_seq(nodes: Vec<(String, ElectionNodeData)>) -> Vec<(u64, PeerIdent)> {
    let mut v: Vec<(u64, PeerIdent)> = nodes
        .into_iter()
        .filter_map(|(name, d)| {
            let n = ElectionNodeName::parse(&name).ok()?;
            Some((n.seq, d.into_ident(&n.id)))
        })
        .collect();
    v.sort_by_key(|(s, _)| *s);
    // A restart inside the session timeout leaves an old node: keep the newest.
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(u64, PeerIdent)> = v
        .into_iter()
        .rev()
        .filter(|(_, p)| seen.insert(p.id.clone()))
        .collect();
    out.reverse();
    out
}

pub(crate) async fn read_election(
    c: &dyn coord::Coordination,
    election: &str,
    watch: bool,
) -> coord::Result<(Vec<(u64, PeerIdent)>, Option<coord::Watch>)> {
    let (names, w) = if watch {
        let (n, w) = c.children_watch(election).await?;
        (n, Some(w))
    } else {
        (c.children(election).await?, None)
    };
    let mut nodes = Vec::new();
    for name in names {
        match c.get(&coord::join(election, &name)).await {
            Ok((data, _)) => {
                if let Ok(d) = ElectionNodeData::from_json(&data) {
                    nodes.push((name, d));
                }
            }
            Err(CoordError::NoNode(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((by_seq(nodes), w))
}

/// What a v1 sitter asks of postgres at `index` in the election order.
fn config(order: &[(u64, PeerIdent)], index: usize, onwm: bool) -> (PgConfig, PeerRole) {
    if index == 0 {
        let downstream = match order.get(1) {
            Some((_, p)) => Some(p.clone()),
            // No standby: only one-node-write mode takes writes alone; a
            // normal v1 primary keeps synchronous_standby_names and blocks.
            None if onwm => None,
            None => Some(PeerIdent::new("(no standby)", "0.0.0.0", 0, 0)),
        };
        (
            PgConfig {
                role: PgRole::Primary,
                upstream: None,
                downstream,
            },
            PeerRole::Primary,
        )
    } else {
        let (role, prole) = if index == 1 {
            (PgRole::Sync, PeerRole::Sync)
        } else {
            (PgRole::Async, PeerRole::Async)
        };
        (
            PgConfig {
                role,
                upstream: Some(order[index - 1].1.clone()),
                downstream: order.get(index + 1).map(|(_, p)| p.clone()),
            },
            prole,
        )
    }
}

/// Run a v1 sitter until it dies.
pub(crate) async fn run(p: SitterParams) -> String {
    let election = manatee::election_path(&p.shard);
    loop {
        let session = match p.provider.connect().await {
            Ok(s) => s,
            Err(e) => {
                p.cfg.time_scale.sleep(p.cfg.backoff).await;
                tracing::warn!(peer = %p.ident.id, "v1 sitter: zookeeper connect failed: {e}");
                continue;
            }
        };
        *p.slot.lock().unwrap() = Some(session.clone());
        let c = session.coord.clone();
        let r: coord::Result<()> = async {
            c.mkdirp(&election).await?;
            c.create(
                &manatee::election_prefix(&p.shard, &p.ident.id),
                &p.ident.election_data().to_json(),
                CreateMode::EphemeralSequential,
            )
            .await?;
            let mut applied: Option<PgConfig> = None;
            loop {
                let (order, w) = read_election(c.as_ref(), &election, true).await?;
                let w = w.expect("watch requested");
                let Some(index) = order.iter().position(|(_, x)| x.id == p.ident.id) else {
                    return Err(CoordError::SessionExpired);
                };
                let (cfg, role) = config(&order, index, p.one_node_write_mode);
                if applied.as_ref() != Some(&cfg) {
                    let restore = cfg.upstream.clone();
                    match p.pg.apply(&cfg, restore.as_ref(), &p.cfg).await {
                        Ok(()) => applied = Some(cfg.clone()),
                        Err(e) => {
                            tracing::warn!(peer = %p.ident.id, "v1 sitter: applying pg config: {e}");
                            p.cfg.time_scale.sleep(p.cfg.backoff).await;
                            continue;
                        }
                    }
                }
                p.status.send_replace(PeerDebug {
                    id: p.ident.id.clone(),
                    role,
                    zkpeers: Some(order.iter().map(|(_, x)| x.id.clone()).collect()),
                    pg_online: Some(p.pg.is_online()),
                    pg_config: applied.clone(),
                    ..Default::default()
                });
                let ev = w.await;
                if matches!(
                    ev,
                    coord::WatchEvent::SessionExpired | coord::WatchEvent::SessionClosed
                ) {
                    return Err(CoordError::SessionExpired);
                }
            }
        }
        .await;
        if let Err(e) = r {
            tracing::info!(peer = %p.ident.id, "v1 sitter: session lost ({e}); starting a new one");
            if !session.coord.session_state().is_terminal() {
                session.coord.close().await;
            }
            let mut slot = p.slot.lock().unwrap();
            if slot
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(&s.coord, &session.coord))
            {
                *slot = None;
            }
        }
    }
}
