//! [`ReshardObserve`] over Triton's APIs, ZooKeeper and PostgreSQL: what
//! the resharding reads (the acts are in `reshard_act.rs`).
//!
//! - SAPI: the Manta application's `HASH_RING_IMAGE`, the `postgres` and
//!   `moray` instances tagged with the operation (`params.tags`), the
//!   `electric-moray` zones;
//! - VMAPI: the server and state of each zone (not SAPI params);
//! - IMGAPI: ring images tagged with the operation and stage, and their
//!   files (loaded with fashdb as electric-moray loads them);
//! - ZooKeeper: the shards (through the manatee world), the region lock,
//!   `/pg_dump_lock`, the new shard's cluster state, approvals;
//! - each electric-moray's `/status` and each peer's PostgreSQL, at the
//!   addresses [`ZoneAddresses`] gives.

use std::sync::Arc;

use async_trait::async_trait;
use coord::{CoordError, Coordination};
use reconcilers::error::WorldError;
use reconcilers::manatee::{ManateeObserve, Role, shard_health};
use reconcilers::reshard::{EmObs, NewShardState, PeerObs, ReshardObserve, RingStage, ShardObs};
use serde_json::Value;
use wire::apis::{Instance, VmState};
use wire::fash::Ring;
use wire::manatee::{ClusterState, state_path};

use crate::clients::electric_moray::ElectricMorayStatus;
use crate::clients::{HttpApi, Triton, Unguarded, http_client};
use crate::store::Fence;
use crate::world::e;
use crate::world::manatee::TritonManatee;
use crate::world::reshard_addr::ZoneAddresses;
use crate::world::{reshard_lock, reshard_sentinel};

/// The SAPI/VMAPI tag naming the operation a zone or image belongs to.
pub const OP_TAG: &str = "tritonctl_reshard_op";
/// The IMGAPI tag naming a ring image's stage (R1, R2, R3).
pub const STAGE_TAG: &str = "tritonctl_reshard_stage";
/// manatee's dump lock: the dump job skips while it exists.
pub const PG_DUMP_LOCK: &str = "/pg_dump_lock";

/// The resharding's world.
#[derive(Clone)]
pub struct TritonReshard {
    pub triton: Triton,
    pub coord: Arc<dyn Coordination>,
    pub fence: Option<Fence>,
    pub addrs: Arc<dyn ZoneAddresses>,
    /// How long an act waits for a zone to follow it (a sitter leaving or
    /// joining an election).
    pub settle: std::time::Duration,
}

impl TritonReshard {
    pub(crate) fn manatee(&self) -> TritonManatee {
        TritonManatee {
            triton: self.triton.clone(),
            coord: self.coord.clone(),
            fence: self.fence.clone(),
        }
    }

    /// The `manta` application's uuid and metadata.
    pub(crate) async fn manta_app(
        &self,
    ) -> Result<(String, serde_json::Map<String, Value>), WorldError> {
        let apps = self
            .triton
            .sapi
            .applications("manta")
            .await
            .map_err(e)?
            .all()
            .map_err(e)?;
        let app = apps
            .first()
            .ok_or_else(|| WorldError::Missing("no SAPI application `manta`".into()))?;
        Ok((app.uuid.clone(), app.metadata.clone()))
    }

    /// The uuid of a Manta SAPI service.
    pub(crate) async fn service(&self, name: &str) -> Result<String, WorldError> {
        let (app, _) = self.manta_app().await?;
        let svcs = self
            .triton
            .sapi
            .services(&app, Some(name))
            .await
            .map_err(e)?
            .all()
            .map_err(e)?;
        svcs.first()
            .map(|s| s.uuid.clone())
            .ok_or_else(|| WorldError::Missing(format!("no SAPI service `{name}` in manta")))
    }

    /// A service's instances tagged with the operation.
    pub(crate) async fn tagged(
        &self,
        service: &str,
        op_id: &str,
    ) -> Result<Vec<Instance>, WorldError> {
        let svc = self.service(service).await?;
        let listed = self.triton.sapi.instances(&svc).await.map_err(e)?;
        let ours = |i: &Instance| tag_of(i) == Some(op_id);
        listed
            .scoped(ours, |odd| {
                odd.raw_str(&["params", "tags", OP_TAG])
                    .is_none_or(|t| t == op_id)
            })
            .map_err(e)
    }

    /// Zones of a service: (instance, server, running).
    pub(crate) async fn zones_of(
        &self,
        insts: &[Instance],
    ) -> Result<Vec<(Instance, String, bool)>, WorldError> {
        let mut out = Vec::new();
        for i in insts {
            match self.triton.vmapi.vm(&i.uuid).await {
                Ok(vm) if vm.state != VmState::Destroyed => out.push((
                    i.clone(),
                    vm.server_uuid.clone().unwrap_or_default(),
                    vm.state == VmState::Running,
                )),
                Ok(_) => {}
                Err(x) if x.is_not_found() => {}
                Err(x) => return Err(e(x)),
            }
        }
        Ok(out)
    }

    pub(crate) async fn cluster_state(
        &self,
        shard: &str,
    ) -> Result<Option<(ClusterState, i32)>, WorldError> {
        match self.coord.get(&state_path(shard)).await {
            Ok((data, stat)) => Ok(Some((
                ClusterState::from_json(&data).map_err(e)?,
                stat.version,
            ))),
            Err(CoordError::NoNode(_)) => Ok(None),
            Err(x) => Err(e(x)),
        }
    }

    /// The zone of a shard's primary, per its cluster state.
    pub(crate) async fn primary_zone(&self, shard: &str) -> Result<String, WorldError> {
        self.cluster_state(shard)
            .await?
            .map(|(st, _)| st.primary.zone_id)
            .ok_or_else(|| WorldError::Missing(format!("shard {shard} has no cluster state")))
    }

    fn status_client(&self, url: &str) -> ElectricMorayStatus {
        let t = self.triton.timeouts().default;
        ElectricMorayStatus(HttpApi::new(
            "electric-moray",
            url,
            http_client(t),
            Arc::new(Unguarded),
        ))
    }
}

/// The operation an instance is tagged with.
pub(crate) fn tag_of(i: &Instance) -> Option<&str> {
    i.params
        .get("tags")
        .and_then(|t| t.get(OP_TAG))
        .and_then(Value::as_str)
}

/// The shard a postgres or moray instance's metadata places it in.
pub(crate) fn shard_of(i: &Instance) -> String {
    i.metadata
        .get("SERVICE_NAME")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[async_trait]
impl ReshardObserve for TritonReshard {
    async fn shard(&self, shard: &str) -> Result<ShardObs, WorldError> {
        let obs = self.manatee().observe(shard).await?;
        let st = obs.state.as_ref();
        let primary_up = match st {
            Some(st) => match obs.peers.iter().find(|p| p.zone == st.primary.zone_id) {
                Some(p) => match self.triton.cnapi.server(&p.server).await {
                    Ok(s) => {
                        s.status == wire::apis::ServerStatus::Running && p.vm_state == "running"
                    }
                    Err(x) if x.is_not_found() => false,
                    Err(x) => return Err(e(x)),
                },
                None => false,
            },
            None => false,
        };
        let lag_secs = obs
            .peers
            .iter()
            .filter(|p| matches!(obs.role_of(&p.zone), Role::Sync | Role::Async))
            .map(|p| p.lag_seconds.unwrap_or(f64::INFINITY))
            .reduce(f64::max);
        Ok(ShardObs {
            name: shard.to_string(),
            problem: shard_health(&obs, f64::INFINITY)
                .err()
                .map(|u| u.to_string()),
            lag_secs: lag_secs.or(Some(0.0)),
            frozen: st
                .filter(|s| s.is_frozen())
                .map(|s| s.freeze.reason().unwrap_or("").to_string()),
            primary_up,
        })
    }

    async fn electric_morays(&self) -> Result<Vec<EmObs>, WorldError> {
        let svc = self.service("electric-moray").await?;
        let insts = self
            .triton
            .sapi
            .instances(&svc)
            .await
            .map_err(e)?
            .all()
            .map_err(e)?;
        let mut out = Vec::new();
        for (i, _server, _running) in self.zones_of(&insts).await? {
            let status = match self.addrs.em_status_url(&i.uuid).await {
                Ok(url) => self.status_client(&url).status().await.map_err(e),
                Err(x) => Err(x),
            };
            out.push(match status {
                Ok(s) => EmObs {
                    zone: i.uuid.clone(),
                    ring_image: s.ring_image().map(str::to_string),
                    error: s
                        .ring_image()
                        .is_none()
                        .then(|| "its status names no ring image".into()),
                },
                Err(x) => EmObs {
                    zone: i.uuid.clone(),
                    ring_image: None,
                    error: Some(x.to_string()),
                },
            });
        }
        Ok(out)
    }

    async fn live_image(&self) -> Result<String, WorldError> {
        let (_, md) = self.manta_app().await?;
        md.get("HASH_RING_IMAGE")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| WorldError::Missing("SAPI manta has no HASH_RING_IMAGE".into()))
    }

    async fn ring_of(&self, image: &str) -> Result<Ring, WorldError> {
        let bytes = self.triton.imgapi.file(image).await.map_err(e)?;
        fashdb::image::load_image(&bytes, image)
            .map(|l| l.ring)
            .map_err(|x| WorldError::Malformed(format!("ring image {image}: {x}")))
    }

    async fn staged_image(
        &self,
        op_id: &str,
        stage: RingStage,
    ) -> Result<Option<String>, WorldError> {
        let imgs = self
            .triton
            .imgapi
            .images(&[
                (&format!("tag.{OP_TAG}"), op_id.to_string()),
                (&format!("tag.{STAGE_TAG}"), stage.as_str().to_string()),
            ])
            .await
            .map_err(e)?;
        Ok(imgs.into_iter().next().map(|i| i.uuid))
    }

    async fn region_lock(&self) -> Result<Option<String>, WorldError> {
        reshard_lock::holder(&self.coord).await
    }

    async fn dump_lock(&self, _shard: &str) -> Result<bool, WorldError> {
        Ok(self.coord.exists(PG_DUMP_LOCK).await.map_err(e)?.is_some())
    }

    async fn new_peers(&self, op_id: &str) -> Result<Vec<PeerObs>, WorldError> {
        let insts = self.tagged("postgres", op_id).await?;
        let mut out = Vec::new();
        let mut shards = std::collections::BTreeMap::new();
        for (i, server, _running) in self.zones_of(&insts).await? {
            let shard = shard_of(&i);
            if !shards.contains_key(&shard) {
                shards.insert(shard.clone(), self.manatee().observe(&shard).await?);
            }
            let obs = &shards[&shard];
            let peer = obs.peers.iter().find(|p| p.zone == i.uuid);
            let caught_up = obs.role_of(&i.uuid) == Role::Async
                && peer.is_some_and(|p| {
                    p.active && p.pg_online && p.lag_seconds.is_some_and(|l| l <= 1.0)
                });
            out.push(PeerObs {
                zone: i.uuid.clone(),
                server,
                shard,
                caught_up,
                restore: None,
                running: peer.is_some_and(|p| p.active),
            });
        }
        Ok(out)
    }

    async fn new_morays(&self, op_id: &str) -> Result<u32, WorldError> {
        let insts = self.tagged("moray", op_id).await?;
        Ok(self.zones_of(&insts).await?.iter().filter(|z| z.2).count() as u32)
    }

    async fn sentinel_seen(&self, op_id: &str, zone: &str) -> Result<bool, WorldError> {
        let src = self
            .new_peers(op_id)
            .await?
            .into_iter()
            .find(|p| p.zone == zone)
            .map(|p| p.shard)
            .ok_or_else(|| {
                WorldError::Missing(format!("peer {zone} is not of operation {op_id}"))
            })?;
        let primary = self.primary_zone(&src).await?;
        let want = reshard_sentinel::read(&self.addrs.pg_conninfo(&primary).await?, op_id).await?;
        let have = reshard_sentinel::read(&self.addrs.pg_conninfo(zone).await?, op_id).await?;
        Ok(want.is_some() && want == have)
    }

    async fn new_shard_state(&self, shard: &str) -> Result<Option<NewShardState>, WorldError> {
        Ok(self
            .cluster_state(shard)
            .await?
            .map(|(st, _)| NewShardState {
                generation: st.generation,
                frozen: st
                    .is_frozen()
                    .then(|| st.freeze.reason().unwrap_or("").to_string()),
            }))
    }

    async fn approved(&self, op_id: &str, key: &str) -> Result<bool, WorldError> {
        Ok(self
            .coord
            .exists(&super::approval_path(op_id, key))
            .await
            .map_err(e)?
            .is_some())
    }
}

/// A shard's primary, for the row cleanup: the zone manatee's cluster
/// state names, at the address [`ZoneAddresses`] gives.
#[async_trait]
impl crate::world::reshard_rows::PrimaryUrl for TritonReshard {
    async fn primary_url(&self, shard: &str) -> Result<String, WorldError> {
        let zone = self.primary_zone(shard).await?;
        self.addrs.pg_conninfo(&zone).await
    }
}

/// The cleanup and verify-counts over PostgreSQL on each shard's primary
/// (`reshard_rows`; H3's tuned engine replaces it at merge).
#[async_trait]
impl reconcilers::reshard::ShardRows for TritonReshard {
    async fn cleanup(
        &self,
        target: &reconcilers::reshard::CleanupTarget,
        budget: std::time::Duration,
    ) -> Result<reconcilers::reshard::CleanupProgress, WorldError> {
        self.rows().cleanup(target, budget).await
    }

    async fn verify(
        &self,
        target: &reconcilers::reshard::CleanupTarget,
    ) -> Result<reconcilers::reshard::VerifyReport, WorldError> {
        self.rows().verify(target).await
    }
}

impl TritonReshard {
    fn rows(&self) -> crate::world::reshard_rows::PgRows<TritonReshard> {
        crate::world::reshard_rows::PgRows {
            primaries: self.clone(),
            tuning: Default::default(),
            encoding: Default::default(),
        }
    }
}
