//! The ShardTopology reconcile: the document's ring against the live ring
//! (SAPI `HASH_RING_IMAGE`), one vnode move at a time as a journaled
//! resharding (`reconcilers::reshard`), status and events written at
//! every step boundary.
//!
//! Journals live under `operations/ShardTopology/<name>/reshard-<op>`;
//! a move in flight is always finished (or rolled back) before another is
//! planned. A move that completed is recorded in `reshard-done` so it is
//! never done again; a rolled-back one stops the document (Blocked
//! `RolledBack` with why) until its generation changes. `tritonctl
//! cancel` rolls a move back before the point of no return and is refused
//! after it, with the reason.

use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, Op};
use crds::meta::Resource;
use crds::shards::ShardTopologySpec;
use crds::status::OperationPhase;
use crds::{Document, Kind, Status};
use reconcilers::error::WorldError;
use reconcilers::reshard::{
    MoveJob, Outcome as Driven, ReshardJournal, ReshardObserve, ReshardRunner, ReshardStore,
    Timeouts, drive, moves_from_document, plan_move,
};

use super::context::Context;
use super::decisions::CANCEL_STEP;
use super::outcome::{Block, KindReconcile, Note, Outcome, ReconcileError};
use crate::layout::{journal_dir, status_path};
use crate::runtime::events::Event;
use crate::store::{Fence, upsert_op};
use crate::world::reshard::TritonReshard;

const PREFIX: &str = "reshard-";
const DONE: &str = "reshard-done";

/// The ShardTopology kind.
pub struct ShardTopologyKind;

fn done_path(name: &str) -> String {
    format!("{}/{DONE}", journal_dir(Kind::ShardTopology, name))
}

struct StatusStore<'a> {
    cx: &'a Context<TritonReshard>,
    name: String,
    path: String,
    status: std::sync::Mutex<Status>,
}

#[async_trait]
impl ReshardStore for StatusStore<'_> {
    async fn save(&self, j: &ReshardJournal) -> Result<(), WorldError> {
        let coord = self.cx.store.coord();
        let mut status = self.status.lock().unwrap().clone();
        let mut op = match &j.rollback {
            Some(rb) if j.forward.status.phase == OperationPhase::RollingBack => rb.status.clone(),
            _ => j.forward.status.clone(),
        };
        if op.message.is_none() {
            op.message = Some(j.side().to_string());
        }
        super::journal::operation_conditions(&mut status, &op, &self.cx.now());
        status.operation = Some(op);
        let mut ops: Vec<Op> = self.cx.fence.iter().map(Fence::op).collect();
        ops.push(
            upsert_op(
                coord.as_ref(),
                &self.path,
                serde_json::to_vec(j).expect("journal serializes"),
            )
            .await?,
        );
        ops.push(
            upsert_op(
                coord.as_ref(),
                &status_path(Kind::ShardTopology, &self.name),
                serde_json::to_vec(&status).expect("status serializes"),
            )
            .await?,
        );
        coord.multi(ops).await.map_err(|e| {
            WorldError::from(e)
                .context("saving the resharding journal (is this controller still the leader?)")
        })?;
        *self.status.lock().unwrap() = status;
        Ok(())
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    cx: &Context<TritonReshard>,
    path: &str,
) -> Result<Option<T>, ReconcileError> {
    match cx.store.coord().get(path).await {
        Ok((data, _)) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| ReconcileError::World(WorldError::Malformed(format!("{path}: {e}")))),
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every journal of the document, oldest first (op ids sort by generation).
async fn journals(
    cx: &Context<TritonReshard>,
    name: &str,
) -> Result<Vec<(String, ReshardJournal)>, ReconcileError> {
    let dir = journal_dir(Kind::ShardTopology, name);
    let mut names = match cx.store.coord().children(&dir).await {
        Ok(n) => n,
        Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    names.retain(|n| n.starts_with(PREFIX) && n != DONE);
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let path = format!("{dir}/{n}");
        if let Some(j) = read_json(cx, &path).await? {
            out.push((path, j));
        }
    }
    Ok(out)
}

/// CNAPI server uuids of the new shard's peers (hostnames or uuids).
async fn server_uuids(w: &TritonReshard, names: &[String]) -> Result<Vec<String>, WorldError> {
    let servers = w
        .triton
        .cnapi
        .servers()
        .await
        .map_err(WorldError::from)?
        .all()
        .map_err(WorldError::from)?;
    names
        .iter()
        .map(|n| {
            servers
                .iter()
                .find(|s| s.uuid == *n || s.hostname == *n)
                .map(|s| s.uuid.clone())
                .ok_or_else(|| WorldError::Missing(format!("no server {n} in CNAPI")))
        })
        .collect()
}

fn op_id(name: &str, generation: i64) -> String {
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!("rs-{name}-g{generation}-{}", &short[..8])
}

#[async_trait]
impl KindReconcile<TritonReshard> for ShardTopologyKind {
    type Spec = ShardTopologySpec;
    const KIND: Kind = Kind::ShardTopology;

    fn typed(doc: Document) -> Option<Resource<ShardTopologySpec>> {
        match doc {
            Document::ShardTopology(d) => Some(d),
            _ => None,
        }
    }

    async fn reconcile(
        &self,
        cx: &Context<TritonReshard>,
        name: &str,
        doc: &Resource<ShardTopologySpec>,
        status: &mut Status,
    ) -> Result<Outcome, ReconcileError> {
        let object = format!("ShardTopology/{name}");
        let generation = doc.metadata.generation.unwrap_or(1);
        let resharding = |m: String| Note::new("Resharding", m);
        let all = journals(cx, name).await?;
        let open = all
            .iter()
            .find(|(_, j)| {
                !j.forward.is_finished() && j.forward.status.phase != OperationPhase::RolledBack
            })
            .cloned();
        let (path, mut j) = match open {
            Some(x) => x,
            None => {
                // A rollback of this generation stops the document until it changes.
                if let Some((_, j)) = all.iter().rev().find(|(_, j)| {
                    j.forward.status.phase == OperationPhase::RolledBack
                        && j.job.op_id.contains(&format!("-g{generation}-"))
                }) {
                    return Ok(Outcome::Blocked {
                        ready: resharding(format!("move {} rolled back", j.job.op_id)),
                        block: Block::warning(
                            "RolledBack",
                            format!(
                                "the move of {} vnodes {} -> {} was rolled back ({}); the vnodes are writable on {} again. Fix the cause and re-apply to try again",
                                j.job.mv.vnodes.len(),
                                j.job.mv.from,
                                j.job.mv.to,
                                j.forward.status.message.clone().unwrap_or_default(),
                                j.job.mv.from
                            ),
                        ),
                        after: None,
                    });
                }
                let done: Vec<String> = read_json(cx, &done_path(name)).await?.unwrap_or_default();
                let live = cx.world.live_image().await?;
                let ring = cx.world.ring_of(&live).await?;
                let moves = match moves_from_document(&doc.spec, &ring, &done) {
                    Ok(m) => m,
                    Err(e) => {
                        return Ok(Outcome::Blocked {
                            ready: resharding("the document's ring is refused".into()),
                            block: Block::warning("RingDisagrees", e.to_string()),
                            after: None,
                        });
                    }
                };
                let Some(mv) = moves.into_iter().next() else {
                    return Ok(Outcome::Ready {
                        message: format!("the live ring ({live}) is the document's"),
                        after: Duration::from_secs(60),
                    });
                };
                let to = doc.spec.shards.iter().find(|s| s.name == mv.to);
                let peers: Vec<String> = to
                    .map(|s| s.peers.iter().map(|p| p.server.clone()).collect())
                    .unwrap_or_default();
                let job = MoveJob {
                    op_id: op_id(name, generation),
                    new_servers: server_uuids(&cx.world, &peers).await?,
                    morays: to.map_or(1, |s| s.morays.max(1)),
                    mv,
                    original_image: live,
                    vnode_count: ring.vnode_count(),
                    max_lag_secs: doc.spec.reshard.max_replication_lag_seconds as f64,
                    approval: doc.spec.reshard.approval,
                };
                let forward = plan_move(&job);
                cx.event(
                    Event::normal(
                        &object,
                        "OperationPlanned",
                        format!(
                            "move {} vnodes {} -> {}: {} steps, point of no return at {}",
                            job.mv.vnodes.len(),
                            job.mv.from,
                            job.mv.to,
                            forward.status.steps.len(),
                            reconcilers::reshard::PNR_STEP
                        ),
                    )
                    .with_operation(job.op_id.clone()),
                )
                .await;
                let dir = journal_dir(Kind::ShardTopology, name);
                cx.store.coord().mkdirp(&dir).await?;
                let path = format!("{dir}/{PREFIX}{}", job.op_id);
                (
                    path,
                    ReshardJournal {
                        job,
                        forward,
                        rollback: None,
                    },
                )
            }
        };
        let op = j.job.op_id.clone();
        let cancel = cx.world.approved(&op, CANCEL_STEP).await?;
        let store = StatusStore {
            cx,
            name: name.to_string(),
            path,
            status: std::sync::Mutex::new(status.clone()),
        };
        store.save(&j).await?;
        let runner = ReshardRunner {
            world: &cx.world,
            job: &j.job.clone(),
            clock: cx.clock.as_ref(),
            timeouts: Timeouts::default(),
        };
        let outcome = drive(&mut j, &runner, &store, cancel, cx.poll).await?;
        *status = store.status.lock().unwrap().clone();
        let progress = format!(
            "move {} -> {} ({} vnodes): {:?}; {}",
            j.job.mv.from,
            j.job.mv.to,
            j.job.mv.vnodes.len(),
            j.forward.status.phase,
            j.side()
        );
        Ok(match outcome {
            Driven::Completed => {
                let mut done: Vec<String> =
                    read_json(cx, &done_path(name)).await?.unwrap_or_default();
                let n = reconcilers::reshard::move_name(&j.job.mv);
                if !done.contains(&n) {
                    done.push(n);
                }
                let mut ops: Vec<Op> = cx.fence.iter().map(Fence::op).collect();
                ops.push(
                    upsert_op(
                        cx.store.coord().as_ref(),
                        &done_path(name),
                        serde_json::to_vec(&done).expect("names serialize"),
                    )
                    .await?,
                );
                cx.store.coord().multi(ops).await?;
                cx.event(
                    Event::normal(&object, "MoveCompleted", progress.clone())
                        .with_operation(op.clone()),
                )
                .await;
                // The next move, if any, is planned on the next reconcile.
                Outcome::Progressing {
                    ready: resharding(progress),
                    running: "looking for the next move".into(),
                    awaiting_approval: Vec::new(),
                    blocked: None,
                    after: Duration::from_millis(10),
                }
            }
            Driven::RolledBack { why } => {
                cx.event(
                    Event::warning(&object, "RolledBack", format!("{progress}: {why}"))
                        .with_operation(op.clone()),
                )
                .await;
                Outcome::Progressing {
                    ready: resharding(progress),
                    running: format!("rolled back: {why}"),
                    awaiting_approval: Vec::new(),
                    blocked: None,
                    after: Duration::from_millis(10),
                }
            }
            Driven::Waiting { after, message, .. } => Outcome::Progressing {
                ready: resharding(progress),
                running: message,
                awaiting_approval: Vec::new(),
                blocked: None,
                after,
            },
            Driven::Blocked { reason, message } => Outcome::Blocked {
                ready: resharding(progress),
                block: Block::warning(reason.to_string(), message),
                after: Some(Duration::from_secs(5)),
            },
        })
    }
}
