//! [`ReshardAct`] over Triton's APIs and ZooKeeper: the resharding's
//! changes, each one safe to repeat (the runner looks first; what is
//! created is tagged with the operation).
//!
//! - peers and morays: SAPI CreateInstance of `postgres` / `moray` with
//!   the shard's metadata (`SERVICE_NAME`, `SHARD`, `MANATEE_SHARD_PATH`,
//!   as manta-reshard writes them) and `params.tags` naming the operation;
//! - detach: `svcadm disable manatee-sitter` in the zone through CNAPI
//!   execute, wait until it left the source's election, SAPI
//!   UpdateInstance to the new shard, `svcadm enable manatee-sitter`, wait
//!   until it is in the new shard's election;
//! - ring images: fashdb packs the ring (LevelDB in node-fash's layout,
//!   with manta-reshard's stamp) and IMGAPI imports it (import, file,
//!   activate), tagged with the operation and the stage;
//! - rollout: SAPI UpdateApplication `HASH_RING_IMAGE`, `svcadm restart
//!   electric-moray` in each zone through CNAPI execute;
//! - ZooKeeper: the region lock, `/pg_dump_lock`, the freeze (through the
//!   manatee world's fenced CAS), the new shard's first cluster state.

use std::time::Duration;

use async_trait::async_trait;
use coord::{CoordError, CreateMode, Expect, Op};
use reconcilers::error::WorldError;
use reconcilers::manatee::ManateeAct;
use reconcilers::reshard::{ReshardAct, ReshardObserve, RingStage};
use serde_json::{Map, Value, json};
use wire::fash::Ring;
use wire::manatee::{
    ClusterState, ElectionNodeData, ElectionNodeName, Freeze, FreezeInfo, PeerIdent, election_path,
    shard_path, state_path,
};

use crate::world::e;
use crate::world::reshard::{OP_TAG, PG_DUMP_LOCK, STAGE_TAG, TritonReshard, shard_of};
use crate::world::{reshard_lock, reshard_sentinel};

/// manta-reshard's short shard name (`7` of `7.moray.<domain>`).
fn short_name(shard: &str) -> &str {
    shard.split('.').next().unwrap_or(shard)
}

/// The SAPI metadata that places a postgres or moray zone in `shard`.
fn shard_metadata(shard: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("SERVICE_NAME".into(), json!(shard));
    m.insert("SHARD".into(), json!(short_name(shard)));
    m.insert(
        "MANATEE_SHARD_PATH".into(),
        json!(format!("/manatee/{shard}")),
    );
    m
}

impl TritonReshard {
    async fn server_of(&self, zone: &str) -> Result<String, WorldError> {
        self.triton
            .vmapi
            .vm(zone)
            .await
            .map_err(e)?
            .server_uuid
            .ok_or_else(|| WorldError::Missing(format!("zone {zone} has no server in VMAPI")))
    }

    /// `svcadm <action> <fmri>` in the zone through CNAPI execute.
    async fn svcadm(&self, zone: &str, action: &str, fmri: &str) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        let r = self
            .triton
            .cnapi
            .execute(&server, Some(zone), &["svcadm", action, fmri])
            .await
            .map_err(e)?;
        if r.exit_code != 0 {
            return Err(WorldError::Command(format!(
                "svcadm {action} {fmri} in {zone}: exit {}: {}",
                r.exit_code,
                r.stderr.trim()
            )));
        }
        Ok(())
    }

    /// The election of a shard: zone id → peer ident.
    async fn election(&self, shard: &str) -> Result<Vec<PeerIdent>, WorldError> {
        let dir = election_path(shard);
        let names = match self.coord.children(&dir).await {
            Ok(n) => n,
            Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
            Err(x) => return Err(e(x)),
        };
        let mut out = Vec::new();
        for n in names {
            let Ok(name) = ElectionNodeName::parse(&n) else {
                continue;
            };
            match self.coord.get(&format!("{dir}/{n}")).await {
                Ok((data, _)) => {
                    if let Ok(d) = ElectionNodeData::from_json(&data) {
                        out.push(d.into_ident(&name.id));
                    }
                }
                Err(CoordError::NoNode(_)) => {}
                Err(x) => return Err(e(x)),
            }
        }
        Ok(out)
    }

    /// Wait (up to `settle`) until `zone` is in (`present`) or out of a
    /// shard's election.
    async fn await_election(
        &self,
        shard: &str,
        zone: &str,
        present: bool,
    ) -> Result<(), WorldError> {
        let deadline = tokio::time::Instant::now() + self.settle;
        loop {
            let there = self
                .election(shard)
                .await?
                .iter()
                .any(|p| p.zone_id == zone);
            if there == present {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                // Waits and is looked at again: the zone may still follow.
                return Err(WorldError::Transport(format!(
                    "{zone} has not {} the election of {shard} yet",
                    if present { "joined" } else { "left" }
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_tagged(
        &self,
        service: &str,
        op_id: &str,
        shard: &str,
        server: &str,
    ) -> Result<(), WorldError> {
        let svc = self.service(service).await?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let mut params = Map::new();
        params.insert("server_uuid".into(), json!(server));
        params.insert(
            "alias".into(),
            json!(format!("{}.{service}-{}", short_name(shard), &uuid[..8])),
        );
        params.insert("tags".into(), json!({ OP_TAG: op_id }));
        self.triton
            .sapi
            .create_instance(&uuid, &svc, params, shard_metadata(shard))
            .await
            .map_err(e)?;
        Ok(())
    }

    async fn fenced(&self, op: Op) -> Result<(), CoordError> {
        let mut ops: Vec<Op> = self.fence.iter().map(|f| f.op()).collect();
        ops.push(op);
        self.coord.multi(ops).await.map(|_| ())
    }
}

fn exists_already(x: &CoordError) -> bool {
    match x {
        CoordError::NodeExists(_) => true,
        CoordError::MultiFailed { error, .. } => matches!(**error, CoordError::NodeExists(_)),
        _ => false,
    }
}

fn gone_already(x: &CoordError) -> bool {
    match x {
        CoordError::NoNode(_) => true,
        CoordError::MultiFailed { error, .. } => matches!(**error, CoordError::NoNode(_)),
        _ => false,
    }
}

#[async_trait]
impl ReshardAct for TritonReshard {
    async fn take_region_lock(&self, op_id: &str) -> Result<(), WorldError> {
        reshard_lock::take(&self.coord, self.fence.as_ref(), op_id).await
    }

    async fn release_region_lock(&self, op_id: &str) -> Result<(), WorldError> {
        reshard_lock::release(&self.coord, self.fence.as_ref(), op_id).await
    }

    async fn freeze(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        self.manatee().freeze(shard, reason).await
    }

    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        if self.cluster_state(shard).await?.is_none() {
            return Ok(());
        }
        self.manatee().unfreeze_own(shard, reason).await
    }

    async fn add_peer(&self, op_id: &str, source: &str, server: &str) -> Result<(), WorldError> {
        self.create_tagged("postgres", op_id, source, server).await
    }

    async fn remove_peer(&self, zone: &str) -> Result<(), WorldError> {
        match self.triton.sapi.delete_instance(zone).await {
            Ok(()) => Ok(()),
            Err(x) if x.is_not_found() => Ok(()),
            Err(x) => Err(e(x)),
        }
    }

    async fn provision_moray(&self, op_id: &str, shard: &str) -> Result<(), WorldError> {
        let peers = self.new_peers(op_id).await?;
        let have = self.new_morays(op_id).await? as usize;
        let server = match peers.get(have % peers.len().max(1)) {
            Some(p) => p.server.clone(),
            None => {
                return Err(WorldError::Missing(format!(
                    "no peer of operation {op_id} to place a moray of {shard} beside"
                )));
            }
        };
        self.create_tagged("moray", op_id, shard, &server).await
    }

    async fn remove_morays(&self, op_id: &str) -> Result<(), WorldError> {
        for i in self.tagged("moray", op_id).await? {
            self.remove_peer(&i.uuid).await?;
        }
        Ok(())
    }

    async fn import_ring(
        &self,
        op_id: &str,
        stage: RingStage,
        ring: &Ring,
    ) -> Result<String, WorldError> {
        let live = self.live_image().await?;
        let owner = self
            .triton
            .imgapi
            .image(&live)
            .await
            .map_err(e)?
            .map(|m| m.owner)
            .ok_or_else(|| WorldError::Missing(format!("live ring image {live} not in IMGAPI")))?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let stamp = fashdb::Stamp::now(&uuid, "tritonctl");
        let file = fashdb::pack_ring(ring, Some(&stamp))
            .map_err(|x| WorldError::Unexpected(format!("packing ring {}: {x}", stage.as_str())))?;
        let mut tags = Map::new();
        tags.insert(OP_TAG.into(), json!(op_id));
        tags.insert(STAGE_TAG.into(), json!(stage.as_str()));
        let manifest = fashdb::image::manifest(&uuid, &owner, &stamp.date, &file, tags);
        let sha1 = fashdb::image::sha1_hex(&file);
        let im = &self.triton.imgapi;
        im.import(&uuid, &manifest).await.map_err(e)?;
        let done = async {
            im.add_file(&uuid, file, &sha1).await?;
            im.activate(&uuid).await
        }
        .await;
        if let Err(x) = done {
            // A half-made image is never left behind to be found by its tags.
            let _ = im.delete(&uuid).await;
            return Err(e(x));
        }
        Ok(uuid)
    }

    async fn set_live_image(&self, image: &str) -> Result<(), WorldError> {
        let (app, _) = self.manta_app().await?;
        let mut md = Map::new();
        md.insert("HASH_RING_IMAGE".into(), json!(image));
        self.triton
            .sapi
            .update_application_metadata(&app, md)
            .await
            .map_err(e)?;
        Ok(())
    }

    async fn restart_electric_moray(&self, zone: &str) -> Result<(), WorldError> {
        self.svcadm(zone, "restart", "electric-moray").await
    }

    async fn take_dump_lock(&self, _shard: &str) -> Result<(), WorldError> {
        match self
            .fenced(Op::create(
                PG_DUMP_LOCK.to_string(),
                Vec::new(),
                CreateMode::Persistent,
            ))
            .await
        {
            Ok(()) => Ok(()),
            Err(x) if exists_already(&x) => Ok(()),
            Err(x) => Err(e(x)),
        }
    }

    async fn release_dump_lock(&self, _shard: &str) -> Result<(), WorldError> {
        match self
            .fenced(Op::delete(PG_DUMP_LOCK.to_string(), Expect::Any))
            .await
        {
            Ok(()) => Ok(()),
            Err(x) if gone_already(&x) => Ok(()),
            Err(x) => Err(e(x)),
        }
    }

    async fn write_sentinel(&self, op_id: &str, shard: &str) -> Result<(), WorldError> {
        let primary = self.primary_zone(shard).await?;
        reshard_sentinel::write(&self.addrs.pg_conninfo(&primary).await?, op_id).await?;
        Ok(())
    }

    async fn detach_peer(&self, zone: &str, to: &str) -> Result<(), WorldError> {
        let inst = self.triton.sapi.instance(zone).await.map_err(e)?;
        let from = shard_of(&inst);
        if from != to {
            self.svcadm(zone, "disable", "manatee-sitter").await?;
            self.await_election(&from, zone, false).await?;
            self.triton
                .sapi
                .update_instance_metadata(zone, "update", shard_metadata(to))
                .await
                .map_err(e)?;
        }
        self.svcadm(zone, "enable", "manatee-sitter").await?;
        self.await_election(to, zone, true).await
    }

    async fn write_new_shard_state(
        &self,
        shard: &str,
        peers: &[String],
        reason: &str,
    ) -> Result<(), WorldError> {
        let elected = self.election(shard).await?;
        let ident = |z: &String| {
            elected
                .iter()
                .find(|p| p.zone_id == *z)
                .cloned()
                .ok_or_else(|| {
                    WorldError::Transport(format!("{z} is not in the election of {shard} yet"))
                })
        };
        let idents = peers.iter().map(ident).collect::<Result<Vec<_>, _>>()?;
        let [primary, sync, asyncs @ ..] = idents.as_slice() else {
            return Err(WorldError::Unexpected(format!(
                "the new shard {shard} needs at least two peers, has {}",
                idents.len()
            )));
        };
        let mut st = ClusterState::initial(primary.clone(), sync.clone(), asyncs.to_vec());
        st.generation = 1;
        st.init_wal = "0/00000000".into();
        st.freeze = Freeze::Info(FreezeInfo {
            date: None,
            reason: Some(reason.to_string()),
            extra: Default::default(),
        });
        self.coord.mkdirp(&shard_path(shard)).await.map_err(e)?;
        match self
            .fenced(Op::create(
                state_path(shard),
                st.to_json(),
                CreateMode::Persistent,
            ))
            .await
        {
            Ok(()) => Ok(()),
            Err(x) if exists_already(&x) => Ok(()),
            Err(x) => Err(e(x)),
        }
    }

    async fn delete_new_shard_state(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        let Some((st, version)) = self.cluster_state(shard).await? else {
            return Ok(());
        };
        if st.freeze.reason() != Some(reason) {
            return Ok(()); // never someone else's
        }
        match self
            .fenced(Op::delete(state_path(shard), Expect::Version(version)))
            .await
        {
            Ok(()) => Ok(()),
            Err(x) if gone_already(&x) => Ok(()),
            Err(x) => Err(e(x)),
        }
    }
}
