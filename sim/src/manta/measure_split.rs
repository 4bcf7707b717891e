//! The two orders of a shard split the resharding measurement compares
//! (`tests/reshard_measure.rs`, issue #16 "Measure it side by side"),
//! written as drivers over the simulator's split primitives (`split.rs`,
//! `split_sapi.rs`, the ring image and the e-m fleet), making the calls a
//! controller makes: SAPI, CNAPI execute, IMGAPI, ZooKeeper.
//!
//! - [`manta_reshard_order`]: manta-reshard's phases 4-16. The ring is
//!   built first (phase 6), then the whole source shard and the new one go
//!   read-only in `INDEX_MORAY_SHARDS` (phases 7-8), and inside that window:
//!   the sentinel on each new peer, the peers shut down and reprovisioned
//!   into the new shard (SAPI metadata, then `sapi reprovision`: phase 10), its first state, its morays provisioned, the new
//!   ring installed and every e-m restarted onto it, then read-write
//!   (phases 9-16). The moved vnodes are every second one of the source's
//!   list (by list position).
//! - [`tritonctl_order`]: the step list of tritonctl's resharding, all the
//!   preparation first (peers caught up, morays provisioned, the three ring
//!   images built, the new shard listed in `INDEX_MORAY_SHARDS`), then the
//!   critical section marks only the moving vnodes `ro` (R1), checks the
//!   sentinel on each peer, detaches them into the new shard, rolls out R2
//!   (moved to the new shard, still `ro`) and R3 (writable). A
//!   [`SplitOrder`] so the measurement can run the same split through the
//!   controller process instead.
//!
//! Both leave the ghost rows for the cleanup (`tritonctl::cleanup`), and
//! report the instants the measurement needs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wire::apis::{ExecuteRequest, JsonMap};
use wire::fash::Ring;

use super::IndexShard;
use super::config::{INDEX_MORAY_SHARDS, index_moray_shards_value};
use super::plane::MantaPlane;
use super::ring_image::{publish_ring_image, set_ring_image};
use super::split::{self, DetachPicks, SplitCalls, SplitError};
use super::split_sapi::{self, PLAN_TAG, SapiCalls};
use crate::dc::Datacenter;
use crate::manatee::{ManateeSim, PeerRole, Zone};

/// The region a split runs in.
#[derive(Clone)]
pub struct Region {
    pub dc: Datacenter,
    pub manatee: ManateeSim,
    pub plane: MantaPlane,
    /// Owner of the ring images.
    pub owner: String,
    /// The IMGAPI URL e-m fetches ring images from.
    pub imgapi: Option<String>,
    /// Real time allowed for each wait.
    pub timeout: Duration,
    /// How long a write electric-moray accepted before it went read-only
    /// may still take to commit (the bound on in-flight requests): the
    /// sentinel is taken only after it, or such a write can commit on the
    /// source after the new peers' copy point.
    pub drain: Duration,
    /// What one `svcadm restart electric-moray` costs in a real datacenter
    /// (the process restarted, its ring loaded, online and its `/status`
    /// checked); spent on the datacenter's clock (scaled like a zone
    /// reprovision or a provision) after each restart.
    pub em_restart: Duration,
}

/// One split: `moved` vnodes of `source` go to the new shard `target`,
/// whose three peers are provisioned on `server`.
#[derive(Clone, Debug)]
pub struct SplitJob {
    pub plan: String,
    pub source: String,
    pub target: String,
    pub moved: BTreeSet<u32>,
    pub server: String,
    /// The index shards as `INDEX_MORAY_SHARDS` lists them before.
    pub index: Vec<String>,
    /// The live ring before.
    pub ring: Ring,
    /// Told once the new shard is established and still read-only for
    /// the moved vnodes; the split waits for `resume` (the caller takes
    /// the new shard's counts per vnode then, for the cleanup's check).
    pub at_detach: Option<Arc<AtDetach>>,
}

/// The pause at the detach point (see [`SplitJob::at_detach`]).
#[derive(Debug, Default)]
pub struct AtDetach {
    pub detached: tokio::sync::Notify,
    pub resume: tokio::sync::Notify,
}

async fn pause_at_detach(job: &SplitJob) {
    if let Some(h) = &job.at_detach {
        h.detached.notify_one();
        h.resume.notified().await;
    }
}

impl SplitJob {
    fn pnode(shard: &str) -> String {
        format!("tcp://{shard}:2020")
    }

    /// The ring after the split.
    pub fn remapped(&self) -> Result<Ring, String> {
        let mut r = self.ring.clone();
        let moved: Vec<u32> = self.moved.iter().copied().collect();
        r.remap(&moved, &Self::pnode(&self.target))
            .map_err(|e| e.to_string())?;
        Ok(r)
    }
}

/// Every second vnode of `shard`'s list on `ring`, as manta-reshard picks.
pub fn halves_by_list_position(ring: &Ring, shard: &str) -> Result<BTreeSet<u32>, String> {
    Ok(ring
        .vnodes_of(&SplitJob::pnode(shard))
        .map_err(|e| e.to_string())?
        .into_iter()
        .step_by(2)
        .collect())
}

/// The instants of one run, from its start.
#[derive(Clone, Debug, Default)]
pub struct OrderTimes {
    /// Writes first blocked (any vnode).
    pub window_open: Duration,
    /// Writes accepted again everywhere.
    pub window_closed: Duration,
    /// Start to writes accepted everywhere.
    pub total: Duration,
}

/// A way to run a split (the driver here, or the controller process).
#[allow(async_fn_in_trait)]
pub trait SplitOrder {
    fn name(&self) -> &'static str;
    async fn run(&self, region: &Region, job: &SplitJob) -> Result<OrderTimes, String>;
}

/// manta-reshard's order.
pub struct MantaReshardOrder;
/// tritonctl's order, driven directly over the simulator's primitives.
pub struct TritonctlOrder;

impl SplitOrder for MantaReshardOrder {
    fn name(&self) -> &'static str {
        "manta-reshard"
    }
    async fn run(&self, region: &Region, job: &SplitJob) -> Result<OrderTimes, String> {
        manta_reshard_order(region, job).await
    }
}

impl SplitOrder for TritonctlOrder {
    fn name(&self) -> &'static str {
        "tritonctl"
    }
    async fn run(&self, region: &Region, job: &SplitJob) -> Result<OrderTimes, String> {
        tritonctl_order(region, job).await
    }
}

fn err(what: &str) -> impl Fn(String) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn manta_app(dc: &Datacenter) -> Result<String, String> {
    let mut q = JsonMap::new();
    q.insert("name".into(), json!("manta"));
    dc.sapi_list_applications(&q)
        .into_iter()
        .next()
        .map(|a| a.into_view().uuid)
        .ok_or_else(|| "no manta application".to_string())
}

fn service_uuid(dc: &Datacenter, name: &str) -> Option<(String, String, JsonMap)> {
    dc.sapi_list_services(&JsonMap::new(), false)
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| (s.uuid.clone(), s.application_uuid.clone(), s.params.clone()))
}

/// `INDEX_MORAY_SHARDS` as given (SAPI UpdateApplication).
pub fn set_index(region: &Region, shards: &[(String, bool)]) -> Result<(), String> {
    let s: Vec<IndexShard> = shards
        .iter()
        .map(|(h, ro)| IndexShard::new(h, *ro))
        .collect();
    let mut md = JsonMap::new();
    md.insert(INDEX_MORAY_SHARDS.into(), index_moray_shards_value(&s));
    let mut p = JsonMap::new();
    p.insert("action".into(), json!("update"));
    p.insert("metadata".into(), Value::Object(md));
    let app = manta_app(&region.dc)?;
    region
        .dc
        .sapi_update_application(&app, &p)
        .map(|_| ())
        .map_err(|e| format!("INDEX_MORAY_SHARDS: {e}"))
}

/// `svcadm restart electric-moray` in every e-m zone through CNAPI
/// execute, one at a time, each costing [`Region::em_restart`] on the
/// datacenter's clock, then checked: its index shards and ring image as
/// given.
pub async fn restart_ems(
    region: &Region,
    index: Option<&[(String, bool)]>,
    ring_image: Option<&str>,
) -> Result<(), String> {
    for p in region.plane.fleet.processes() {
        let server = region
            .dc
            .vm(p.zone())
            .and_then(|v| v.server_uuid)
            .ok_or_else(|| format!("no server for e-m zone {}", p.zone()))?;
        let req = ExecuteRequest {
            script: format!(
                "#!/bin/bash\nsvcadm -z {} restart electric-moray\n",
                p.zone()
            ),
            ..Default::default()
        };
        let r = region
            .dc
            .cnapi_execute(&server, &req)
            .map_err(|e| format!("cnapi execute: {e}"))?;
        if r.exit_code != 0 {
            return Err(format!("svcadm restart in {}: {}", p.zone(), r.stderr));
        }
        tokio::time::sleep(region.dc.clock().scaled(region.em_restart)).await;
        if let Some(want) = index {
            let got: Vec<(String, bool)> = p
                .em()
                .index_shard_config()
                .unwrap_or_default()
                .iter()
                .map(|s| (s.host.clone(), s.read_only))
                .collect();
            if got != want {
                return Err(format!("{}: index shards {got:?}, want {want:?}", p.zone()));
            }
        }
        if let Some(want) = ring_image
            && p.em().ring_image().as_deref() != Some(want)
        {
            return Err(format!(
                "{}: ring image {:?}, want {want}",
                p.zone(),
                p.em().ring_image()
            ));
        }
    }
    Ok(())
}

fn tags(job: &SplitJob, transition: &str) -> JsonMap {
    let mut t = JsonMap::new();
    t.insert(PLAN_TAG.into(), json!(job.plan));
    t.insert("manta_reshard_transition".into(), json!(transition));
    t
}

/// Publishes `ring` as a tagged image (not yet named by SAPI).
pub fn build_ring(
    region: &Region,
    job: &SplitJob,
    ring: &Ring,
    what: &str,
) -> Result<String, String> {
    publish_ring_image(&region.dc, ring, &region.owner, tags(job, what))
        .map_err(|e| format!("ring image {what}: {e}"))
}

/// `HASH_RING_IMAGE = image`, every e-m restarted and checked on it.
pub async fn install_ring(region: &Region, image: &str) -> Result<(), String> {
    set_ring_image(&region.dc, image, region.imgapi.as_deref())
        .map_err(|e| format!("HASH_RING_IMAGE: {e}"))?;
    restart_ems(region, None, Some(image)).await
}

/// manta-reshard phase 4: three `postgres` instances tagged with the plan
/// on the job's server, each an async of the source, caught up.
pub async fn add_peers(region: &Region, job: &SplitJob) -> Result<Vec<Zone>, String> {
    let (pg_svc, _, _) =
        service_uuid(&region.dc, "postgres").ok_or("no postgres service in SAPI")?;
    let mut added = Vec::new();
    for n in 0..3 {
        let inst = split_sapi::create_instance(
            &region.dc,
            &pg_svc,
            &job.source,
            &job.server,
            &format!(
                "{}.postgres.{}-{n}",
                split_sapi::short_name(&job.source),
                job.plan
            ),
            &job.plan,
        )
        .await
        .map_err(|e| format!("postgres instance: {e}"))?;
        let deadline = Instant::now() + region.timeout;
        let zone = loop {
            if let Some(z) = region.manatee.zone(&inst.uuid) {
                break z;
            }
            if Instant::now() >= deadline {
                return Err(format!("{}: no sitter booted", inst.uuid));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        zone.wait_for(region.timeout, "async", |p| p.role == PeerRole::Async)
            .await
            .map_err(|e| format!("{}: {e}", inst.uuid))?;
        split::wait_caught_up(&region.manatee, &job.source, &zone, region.timeout)
            .await
            .map_err(|e| e.to_string())?;
        added.push(zone);
    }
    Ok(added)
}

/// manta-reshard phase 12: a `moray` instance for the new shard, tagged
/// (the `moray` service created first when the region has none).
pub async fn provision_morays(region: &Region, job: &SplitJob) -> Result<(), String> {
    let svc = match service_uuid(&region.dc, "moray") {
        Some((uuid, _, _)) => uuid,
        None => {
            let (_, app, params) =
                service_uuid(&region.dc, "postgres").ok_or("no postgres service in SAPI")?;
            let mut p = JsonMap::new();
            p.insert("name".into(), json!("moray"));
            p.insert("application_uuid".into(), json!(app));
            p.insert("params".into(), Value::Object(params));
            region
                .dc
                .sapi_create_service(&p)
                .map_err(|e| format!("moray service: {e}"))?
                .uuid
                .clone()
        }
    };
    split_sapi::create_instance(
        &region.dc,
        &svc,
        &job.target,
        &job.server,
        &format!("{}.moray.{}", split_sapi::short_name(&job.target), job.plan),
        &job.plan,
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("moray instance: {e}"))
}

/// The sentinel after the read-only point: once writes accepted before it
/// have drained ([`Region::drain`], then
/// [`wait_writes_accepted_before_read_only`]), each new peer has replayed
/// everything the source's primary had committed by then.
pub async fn sentinel(region: &Region, job: &SplitJob, peers: &[Zone]) -> Result<(), String> {
    tokio::time::sleep(region.drain).await;
    wait_writes_accepted_before_read_only(region, job).await?;
    for z in peers {
        split::wait_caught_up(&region.manatee, &job.source, z, region.timeout)
            .await
            .map_err(|e| format!("sentinel on {}: {e}", z.zone_id()))?;
    }
    Ok(())
}

/// manta-reshard's phase 10 as it makes it: the SAPI metadata and alias,
/// then `sapi reprovision` of the zone to its own image (the zone boots
/// with the new `MANATEE_SHARD_PATH`), where tritonctl restarts the sitter
/// (`svcadm enable`, [`SapiCalls`]).
pub struct ReprovisionCalls(pub SapiCalls);

impl SplitCalls for ReprovisionCalls {
    async fn disable_sitter(&self, zone: &Zone) -> Result<(), SplitError> {
        self.0.disable_sitter(zone).await
    }

    async fn boot_into(&self, zone: &Zone, new_shard: &str) -> Result<(), SplitError> {
        let dc = &self.0.dc;
        let z = zone.zone_id();
        let api = |call: &'static str, e: String| SplitError::Api { call, message: e };
        let alias = format!(
            "{}.postgres-{}",
            split_sapi::short_name(new_shard),
            &z[..z.len().min(8)]
        );
        let mut p = JsonMap::new();
        p.insert("action".into(), json!("update"));
        p.insert("params".into(), json!({ "alias": alias }));
        p.insert(
            "metadata".into(),
            Value::Object(split_sapi::shard_metadata(new_shard)),
        );
        dc.sapi_update_instance(z, &p)
            .map_err(|e| api("sapi UpdateInstance", e.to_string()))?;
        let image = dc
            .vm(z)
            .and_then(|v| v.image_uuid)
            .ok_or_else(|| api("vmapi GetVm", format!("{z}: no image")))?;
        let mut up = JsonMap::new();
        up.insert("image_uuid".into(), json!(image));
        dc.sapi_upgrade_instance(z, &up)
            .await
            .map_err(|e| api("sapi reprovision", e.to_string()))?;
        let deadline = Instant::now() + self.0.timeout;
        while !(zone.is_running() && zone.boot_options().shard == new_shard) {
            if Instant::now() >= deadline {
                return Err(SplitError::Timeout(
                    self.0.timeout,
                    format!("{z} booting into {new_shard} after its reprovision"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Waits until no transaction that started before now (a point after the
/// read-only ring or index config is verified on every electric-moray) is
/// open on the source's primary.
///
/// Why: electric-moray checks read-only when it accepts a write, not when
/// the write commits. A write it accepted just before going read-only can
/// still be in its transaction on the source (waiting for the sync standby
/// to confirm) after the rollout is verified. A sentinel or copy point
/// taken then is seen by the new peers before that write commits; the
/// write is acknowledged to its client and lands on the source only, and
/// after the detach it is lost from the new shard (found by the
/// measurement's verification: acknowledged writes missing). Waiting for
/// every such transaction to end first puts each of them before the
/// sentinel, so the new peers replay them.
pub async fn wait_writes_accepted_before_read_only(
    region: &Region,
    job: &SplitJob,
) -> Result<(), String> {
    let s = region.manatee.shard(&job.source);
    let id = s
        .primary_id()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no primary")?;
    let info = region
        .manatee
        .zone_by_peer_id(&id)
        .and_then(|z| z.pg_conninfo())
        .ok_or("the source primary has no PostgreSQL")?;
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("source primary: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let db = |e: tokio_postgres::Error| format!("source primary: {e}");
    let since: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .map_err(db)?
        .get(0);
    let deadline = Instant::now() + region.timeout;
    loop {
        let open: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                 AND backend_type = 'client backend' AND state <> 'idle' \
                 AND xact_start < $1::text::timestamptz",
                &[&since],
            )
            .await
            .map_err(db)?
            .get(0);
        if open == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{open} transaction(s) still open on the source"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Phases 9-11: the peers shut down, reconfigured into the new shard
/// through SAPI and CNAPI (reprovisioned, as manta-reshard does, or their
/// sitter restarted), and its first state (frozen with the plan).
pub async fn detach(
    region: &Region,
    job: &SplitJob,
    peers: &[Zone],
    reprovision: bool,
) -> Result<DetachPicks, String> {
    let calls = SapiCalls {
        dc: region.dc.clone(),
        timeout: region.timeout,
    };
    if reprovision {
        detach_with(&ReprovisionCalls(calls), region, job, peers).await
    } else {
        detach_with(&calls, region, job, peers).await
    }
}

async fn detach_with(
    calls: &impl SplitCalls,
    region: &Region,
    job: &SplitJob,
    peers: &[Zone],
) -> Result<DetachPicks, String> {
    let picks =
        split::shutdown_new_peers_with(calls, &region.manatee, &job.source, peers, region.timeout)
            .await
            .map_err(|e| format!("shutdown new peers: {e}"))?;
    let reason = split::freeze_reason(&job.plan);
    split::establish_new_shard_with(
        calls,
        &region.manatee,
        &picks,
        &job.target,
        &reason,
        region.timeout,
    )
    .await
    .map_err(|e| format!("establish {}: {e}", job.target))?;
    Ok(picks)
}

fn index_with(job: &SplitJob, ro: &[&str], with_target: bool) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = job
        .index
        .iter()
        .map(|s| (s.clone(), ro.contains(&s.as_str())))
        .collect();
    if with_target {
        v.push((job.target.clone(), ro.contains(&job.target.as_str())));
    }
    v
}

/// manta-reshard's phases 4-16 (see the module docs).
pub async fn manta_reshard_order(region: &Region, job: &SplitJob) -> Result<OrderTimes, String> {
    let t0 = Instant::now();
    // Phase 4: the peers.
    let peers = add_peers(region, job).await?;
    // Phase 6: the new ring image (not yet installed).
    let image = build_ring(region, job, &job.remapped()?, "split")?;
    // Phases 7-8: both shards read-only, every e-m restarted and checked.
    let ro = index_with(job, &[job.source.as_str(), job.target.as_str()], true);
    set_index(region, &ro)?;
    let window_open = t0.elapsed();
    restart_ems(region, Some(&ro), None)
        .await
        .map_err(err("read-only"))?;
    // Phase 9: the sentinel through the read-only shard, then 9-11.
    sentinel(region, job, &peers).await?;
    detach(region, job, &peers, true).await?;
    pause_at_detach(job).await;
    // Phase 12: the new shard's morays.
    provision_morays(region, job).await?;
    // Phases 13-14: the ring.
    install_ring(region, &image)
        .await
        .map_err(err("install ring"))?;
    // Phases 15-16: read-write.
    let rw = index_with(job, &[], true);
    set_index(region, &rw)?;
    restart_ems(region, Some(&rw), Some(&image))
        .await
        .map_err(err("read-write"))?;
    let window_closed = t0.elapsed();
    Ok(OrderTimes {
        window_open,
        window_closed,
        total: window_closed,
    })
}

/// tritonctl's order (see the module docs).
pub async fn tritonctl_order(region: &Region, job: &SplitJob) -> Result<OrderTimes, String> {
    let t0 = Instant::now();
    let moved: Vec<u32> = job.moved.iter().copied().collect();
    // add-peers, await-catch-up, provision-morays, build-rings: nothing
    // blocked yet.
    let peers = add_peers(region, job).await?;
    provision_morays(region, job).await?;
    let mut r1 = job.ring.clone();
    r1.set_read_only(&moved, true).map_err(|e| e.to_string())?;
    let mut r2 = job.remapped()?;
    r2.set_read_only(&moved, true).map_err(|e| e.to_string())?;
    let r3 = job.remapped()?;
    let i1 = build_ring(region, job, &r1, "R1: moving vnodes read-only")?;
    let i2 = build_ring(region, job, &r2, "R2: moved, read-only")?;
    let i3 = build_ring(region, job, &r3, "R3: moved, writable")?;
    // The new shard listed (writable; no vnode maps to it yet).
    let listed = index_with(job, &[], true);
    set_index(region, &listed)?;
    restart_ems(region, Some(&listed), None)
        .await
        .map_err(err("list the new shard"))?;
    // mark-ro: R1 on every e-m, checked.
    let window_open = t0.elapsed();
    install_ring(region, &i1).await.map_err(err("mark-ro"))?;
    sentinel(region, job, &peers).await?;
    detach(region, job, &peers, false).await?;
    pause_at_detach(job).await;
    // install-ring (point of no return), then mark-rw.
    install_ring(region, &i2)
        .await
        .map_err(err("install-ring"))?;
    install_ring(region, &i3).await.map_err(err("mark-rw"))?;
    let window_closed = t0.elapsed();
    Ok(OrderTimes {
        window_open,
        window_closed,
        total: window_closed,
    })
}
