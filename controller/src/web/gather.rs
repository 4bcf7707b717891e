//! Gathering an [`Overview`]: the store (leader, documents, conditions,
//! operations) and, when given, the datacenter through an [`Observe`]
//! (drift from the same review `tritonctl diff` runs, HA posture, the ring).
//! Whatever cannot be learned is named in `problems`, never left out
//! silently.

use crds::{Document, Kind};
use time::OffsetDateTime;

use super::observe::Observe;
use super::progress::op_view;
use super::view::{
    ConditionView, DocView, Drift, LeaderView, Overview, PeerView, Posture, RingView, ShardView,
};
use crate::gitops::observed::{StoredView, shards_of};
use crate::gitops::review::{self, DocReview, KindPlan, Review, ShardOutcome};
use crate::runtime::leader::LeaderElection;
use crate::store::Store;

/// Every stored document, by kind then name.
pub async fn documents(store: &Store) -> Result<Vec<Document>, String> {
    let mut docs = Vec::new();
    for kind in Kind::ALL {
        docs.extend(store.list(kind).await.map_err(|e| e.to_string())?);
    }
    Ok(docs)
}

/// The leading controller, if any (the lowest valid candidate).
pub async fn leader(store: &Store) -> Result<Option<LeaderView>, String> {
    let election = LeaderElection::new(store.coord().clone(), "tritonctl status");
    let found = election.leader().await.map_err(|e| e.to_string())?;
    Ok(found.map(|c| LeaderView {
        identity: String::from_utf8_lossy(&c.data).into_owned(),
        since: OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.stat.ctime_ms) * 1_000_000)
            .map(reconcilers::clock::rfc3339)
            .unwrap_or_default(),
    }))
}

/// A document as the overview lists it (drift filled in later).
pub fn doc_view(doc: &Document, now: OffsetDateTime) -> DocView {
    let status = doc.status();
    DocView {
        kind: doc.kind().as_str().to_string(),
        name: doc.name().to_string(),
        generation: doc.metadata().generation.unwrap_or(0),
        observed_generation: status.and_then(|s| s.observed_generation),
        conditions: status
            .map(|s| {
                s.conditions
                    .iter()
                    .map(|c| ConditionView {
                        type_: c.type_.as_str().to_string(),
                        status: format!("{:?}", c.status),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        since: c.last_transition_time.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        drift: Drift::NotObserved,
        operation: status
            .and_then(|s| s.operation.as_ref())
            .map(|op| op_view(op, now)),
    }
}

/// What the review says of one document, in a line.
pub fn drift_of(d: &DocReview) -> Drift {
    if !d.plan.acts() {
        return Drift::InSync;
    }
    let mut parts = Vec::new();
    let shard = |s: &review::ShardReview| match s.outcome {
        ShardOutcome::Upgrade => Some(format!(
            "shard {} to {}",
            s.shard,
            s.strategy.as_deref().unwrap_or("upgrade")
        )),
        ShardOutcome::Refused => Some(format!(
            "shard {} refused: {}",
            s.shard,
            s.message.as_deref().unwrap_or("")
        )),
        ShardOutcome::InFlight => Some(format!("shard {}: operation in flight", s.shard)),
        _ => None,
    };
    match &d.plan {
        KindPlan::Manatee(m) => parts.extend(m.shards.iter().filter_map(shard)),
        KindPlan::Topology(t) => {
            let n: usize = t.moves.iter().map(|m| m.count).sum();
            parts.push(format!("{n} vnode(s) to move"));
        }
        KindPlan::Headnodes(h) => {
            parts.extend(h.changes.iter().cloned());
            parts.extend(h.manatee.iter().filter_map(shard));
        }
    }
    Drift::WouldAct(parts.join("; "))
}

/// The review of the stored documents against the datacenter: what
/// `tritonctl diff` of the documents as stored would print.
pub async fn review_stored(store: &Store, observe: &dyn Observe) -> Result<Review, String> {
    let stored = StoredView::load(store).await?;
    let docs = documents(store).await?;
    review::review(&docs, &stored, Some(observe.world())).await
}

/// One manatee shard as observed.
pub async fn shard_view(observe: &dyn Observe, shard: &str) -> ShardView {
    match observe.world().manatee().observe(shard).await {
        Err(e) => ShardView {
            name: shard.to_string(),
            error: Some(crate::gitops::redact::redact_urls(&e.to_string())),
            ..ShardView::default()
        },
        Ok(o) => {
            let mut peers: Vec<PeerView> = o
                .peers
                .iter()
                .map(|p| PeerView {
                    zone: p.zone.clone(),
                    alias: p.alias.clone(),
                    server: p.server.clone(),
                    role: format!("{:?}", o.role_of(&p.zone)).to_lowercase(),
                    image: p.image.clone(),
                    vm_state: p.vm_state.clone(),
                    pg_online: p.pg_online,
                    lag_seconds: p.lag_seconds,
                })
                .collect();
            let rank = |r: &str| match r {
                "primary" => 0,
                "sync" => 1,
                "async" => 2,
                "deposed" => 3,
                _ => 4,
            };
            peers.sort_by_key(|p| rank(&p.role));
            ShardView {
                name: shard.to_string(),
                frozen: o.freeze_reason(),
                one_node_write_mode: o
                    .state
                    .as_ref()
                    .and_then(|s| s.one_node_write_mode)
                    .unwrap_or(false),
                generation: o.state.as_ref().map(|s| s.generation),
                peers,
                error: None,
            }
        }
    }
}

/// The ring: the deployed image when SAPI names one, else the one a
/// stored ShardTopology describes.
async fn ring(
    docs: &[Document],
    observe: Option<&dyn Observe>,
    problems: &mut Vec<String>,
) -> Option<RingView> {
    if let Some(o) = observe {
        match o.world().ring_image().await {
            Ok(Some(uuid)) => match o.ring_image(&uuid).await {
                Ok(r) => return Some(RingView::of(&r, format!("ring image {uuid}"))),
                Err(e) => problems.push(format!("ring image {uuid}: {e}")),
            },
            Ok(None) => {}
            Err(e) => problems.push(format!("the ring image (SAPI HASH_RING_IMAGE): {e}")),
        }
    }
    let st = docs.iter().find_map(|d| match d {
        Document::ShardTopology(st) => Some(st),
        _ => None,
    })?;
    match review::desired_ring(&st.spec) {
        Ok(r) => Some(RingView::of(
            &r,
            format!(
                "as ShardTopology/{} describes it (no deployed ring image read)",
                st.metadata.name
            ),
        )),
        Err(e) => {
            problems.push(format!("ShardTopology/{}: {e}", st.metadata.name));
            None
        }
    }
}

async fn posture(docs: &[Document], observe: &dyn Observe, problems: &mut Vec<String>) -> Posture {
    let mut p = Posture::default();
    match observe.headnodes().await {
        Ok(h) => p.headnodes = h,
        Err(e) => problems.push(format!("headnodes (CNAPI, VMAPI): {e}")),
    }
    for (role, slot) in [("binder", &mut p.binder), ("moray", &mut p.moray)] {
        match observe.role(role).await {
            Ok(m) => *slot = m,
            Err(e) => problems.push(format!("{role} instances (VMAPI): {e}")),
        }
    }
    let mut shards: Vec<String> = docs.iter().flat_map(shards_of).collect();
    shards.sort();
    shards.dedup();
    for s in shards {
        p.shards.push(shard_view(observe, &s).await);
    }
    p
}

/// The whole overview. `observe` None: the store only.
pub async fn overview(
    store: &Store,
    store_label: &str,
    observe: Option<&dyn Observe>,
) -> Result<Overview, String> {
    let now = OffsetDateTime::now_utc();
    let docs = documents(store).await?;
    let mut problems = Vec::new();
    let leader = match leader(store).await {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("the leader election: {e}"));
            None
        }
    };
    let mut views: Vec<DocView> = docs.iter().map(|d| doc_view(d, now)).collect();
    let mut posture_view = None;
    if let Some(o) = observe {
        match review_stored(store, o).await {
            Ok(r) => {
                for v in &mut views {
                    let key = v.key();
                    v.drift = match r.documents.iter().find(|d| d.key() == key) {
                        Some(d) => drift_of(d),
                        None => Drift::Unknown("stored after the review was made".into()),
                    };
                }
                problems.extend(r.observation_failures());
            }
            Err(e) => {
                for v in &mut views {
                    v.drift = Drift::Unknown(e.clone());
                }
            }
        }
        posture_view = Some(posture(&docs, o, &mut problems).await);
    }
    let ring = ring(&docs, observe, &mut problems).await;
    Ok(Overview {
        generated_at: reconcilers::clock::rfc3339(now),
        store: store_label.to_string(),
        leader,
        documents: views,
        observed: observe.map(|o| o.source()),
        posture: posture_view,
        ring,
        problems,
    })
}
