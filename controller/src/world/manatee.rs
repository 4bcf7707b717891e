//! [`ManateeObserve`] and [`ManateeAct`] over Triton's APIs and ZooKeeper.
//!
//! Observing a shard reads what sdcadm reads: the SAPI instances of the
//! manatee service (`sdc`) or of `postgres` with `SHARD` metadata (Manta), the
//! VMs from VMAPI (the image a zone really runs; SAPI params lag behind), the
//! cluster state and election from ZooKeeper, and `manatee-adm pg-status` run
//! in the primary's zone through CNAPI.

use std::sync::Arc;

use async_trait::async_trait;
use coord::{CoordError, Coordination, CreateMode, Expect, Op};
use reconcilers::error::{Refusal, RefusalReason, WorldError};
use reconcilers::manatee::{
    ImageInfo, ManateeAct, ManateeObserve, PeerObservation, ShardObservation,
};
use reconcilers::manatee_ha::{DesiredServer, HaAct, HaObserve};
use wire::manatee::{
    ClusterState, ElectionNodeData, HistoryWriter, PromoteRequest, election_path,
    prepare_state_write, state_path,
};

use crate::clients::Triton;
use crate::store::Fence;
use crate::world::e;
use crate::world::outcome::{SapiCall, sapi_call};

#[derive(Clone)]
pub struct TritonManatee {
    pub triton: Triton,
    pub coord: Arc<dyn Coordination>,
    /// The leader's fence: every ZooKeeper write checks it.
    pub fence: Option<Fence>,
}

impl TritonManatee {
    /// SAPI instances (zones) of a shard.
    async fn shard_instances(&self, shard: &str) -> Result<Vec<wire::apis::Instance>, WorldError> {
        Ok(self.shard_service(shard).await?.1)
    }

    /// The SAPI service holding a shard's zones, and the shard's instances.
    async fn shard_service(
        &self,
        shard: &str,
    ) -> Result<(String, Vec<wire::apis::Instance>), WorldError> {
        let (app, svc) = if shard == "sdc" {
            ("sdc", "manatee")
        } else {
            ("manta", "postgres")
        };
        // A record we cannot read is never taken as absent: an odd
        // application, service, or member of this shard is an error naming
        // it (clients/listed.rs).
        let apps = self
            .triton
            .sapi
            .applications(app)
            .await
            .map_err(e)?
            .all()
            .map_err(e)?;
        let app = apps
            .first()
            .ok_or_else(|| WorldError::Missing(format!("no SAPI application `{app}`")))?;
        let svcs = self
            .triton
            .sapi
            .services(&app.uuid, Some(svc))
            .await
            .map_err(e)?
            .all()
            .map_err(e)?;
        let svc = svcs.first().ok_or_else(|| {
            WorldError::Missing(format!("no SAPI service `{svc}` in `{}`", app.name))
        })?;
        let listed = self.triton.sapi.instances(&svc.uuid).await.map_err(e)?;
        let in_shard = |s: &str| s == shard || shard.starts_with(&format!("{s}."));
        let insts = if shard == "sdc" {
            listed.all()
        } else {
            listed.scoped(
                |i| {
                    i.metadata
                        .get("SHARD")
                        .and_then(|v| v.as_str())
                        .is_some_and(in_shard)
                },
                |odd| odd.raw_str(&["metadata", "SHARD"]).is_none_or(in_shard),
            )
        }
        .map_err(e)?;
        Ok((svc.uuid.clone(), insts))
    }

    async fn read_state(&self, shard: &str) -> Result<Option<(ClusterState, i32)>, WorldError> {
        match self.coord.get(&state_path(shard)).await {
            Ok((data, stat)) => Ok(Some((
                ClusterState::from_json(&data).map_err(e)?,
                stat.version,
            ))),
            Err(CoordError::NoNode(_)) => Ok(None),
            Err(x) => Err(e(x)),
        }
    }

    /// CAS write of a modified state with an admin history node, fenced.
    async fn write_state(
        &self,
        shard: &str,
        edit: impl Fn(&mut ClusterState) -> Result<bool, WorldError>,
    ) -> Result<(), WorldError> {
        for _ in 0..5 {
            let (mut st, version) = self
                .read_state(shard)
                .await?
                .ok_or_else(|| WorldError::Missing(format!("shard {shard} has no state")))?;
            if !edit(&mut st)? {
                return Ok(());
            }
            let w =
                prepare_state_write(shard, &st, Some(version), HistoryWriter::Admin).map_err(e)?;
            let mut ops: Vec<Op> = self.fence.iter().map(Fence::op).collect();
            ops.push(Op::set(
                w.state_path,
                w.data.clone(),
                Expect::Version(version),
            ));
            ops.push(Op::create(
                w.history_prefix,
                w.data,
                CreateMode::PersistentSequential,
            ));
            let fenced = self.fence.is_some();
            match self.coord.multi(ops).await {
                Ok(_) => return Ok(()),
                Err(CoordError::MultiFailed { index, error })
                    if matches!(*error, CoordError::BadVersion(_)) && !(fenced && index == 0) =>
                {
                    continue;
                }
                Err(x) => return Err(e(x).context(format!("writing the state of {shard}"))),
            }
        }
        Err(WorldError::Unexpected(format!(
            "the state of {shard} kept changing under us; giving up for now"
        )))
    }
}

#[async_trait]
impl ManateeObserve for TritonManatee {
    async fn observe(&self, shard: &str) -> Result<ShardObservation, WorldError> {
        let insts = self.shard_instances(shard).await?;
        let state = self.read_state(shard).await?.map(|(s, _)| s);
        let mut active_zones = Vec::new();
        if let Ok(children) = self.coord.children(&election_path(shard)).await {
            for c in children {
                if let Ok((data, _)) = self
                    .coord
                    .get(&format!("{}/{c}", election_path(shard)))
                    .await
                    && let Ok(d) = ElectionNodeData::from_json(&data)
                {
                    active_zones.push(d.zone_id);
                }
            }
        }
        let mut peers = Vec::new();
        for inst in &insts {
            let vm = match self.triton.vmapi.vm(&inst.uuid).await {
                Ok(vm) => vm,
                Err(x) if x.is_not_found() => continue,
                Err(x) => return Err(e(x)),
            };
            peers.push(PeerObservation {
                zone: inst.uuid.clone(),
                alias: vm.alias.clone().unwrap_or_else(|| inst.uuid.clone()),
                server: vm.server_uuid.clone().unwrap_or_default(),
                image: vm.image_uuid.clone().unwrap_or_default(),
                vm_state: vm.state.as_str().to_string(),
                active: active_zones.contains(&inst.uuid),
                pg_online: false,
                lag_seconds: None,
                one_node_write_mode: inst
                    .metadata
                    .get("ONE_NODE_WRITE_MODE")
                    .is_some_and(|v| v == true || v == "true"),
            });
        }
        // pg-status from the primary's zone, the way sdcadm asks.
        if let Some(st) = &state
            && let Some(primary) = peers
                .iter()
                .find(|p| p.zone == st.primary.zone_id)
                .filter(|p| p.vm_state == "running")
        {
            let argv = [
                "manatee-adm",
                "pg-status",
                "-H",
                "-o",
                wire::pgstatus::COLUMNS,
            ];
            if let Ok(out) = self
                .triton
                .cnapi
                .execute(&primary.server.clone(), Some(&primary.zone.clone()), &argv)
                .await
                && out.exit_code == 0
            {
                for row in wire::pgstatus::parse(&out.stdout).map_err(WorldError::Malformed)? {
                    if let Some(p) = peers.iter_mut().find(|p| p.zone == row.peername) {
                        p.pg_online = row.pg_online;
                        p.lag_seconds = row.lag_seconds;
                    }
                }
            }
        }
        Ok(ShardObservation {
            shard: shard.to_string(),
            state,
            peers,
        })
    }

    async fn image(&self, uuid: &str) -> Result<Option<ImageInfo>, WorldError> {
        Ok(self
            .triton
            .imgapi
            .image(uuid)
            .await
            .map_err(e)?
            .map(|m| ImageInfo {
                uuid: m.uuid.clone(),
                name: m.name.clone(),
                version: m.version.clone(),
                state: m.state.as_str().to_string(),
                manatee_major: m
                    .tags
                    .as_ref()
                    .and_then(|t| t.get("manatee_major"))
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                    .map(|v| v as u32),
            }))
    }

    async fn reprovision_in_flight(&self, zone: &str) -> Result<bool, WorldError> {
        self.triton
            .vmapi
            .job_in_flight(zone, "reprovision")
            .await
            .map_err(e)
    }

    async fn approved(&self, op_id: &str, step: &str) -> Result<bool, WorldError> {
        Ok(self
            .coord
            .exists(&super::approval_path(op_id, step))
            .await
            .map_err(e)?
            .is_some())
    }
}

#[async_trait]
impl ManateeAct for TritonManatee {
    async fn reprovision(&self, zone: &str, image: &str, _op_id: &str) -> Result<(), WorldError> {
        // A reprovision already under way (sent by us before a restart, or a
        // call whose answer was lost) is waited for, not sent again; a call
        // whose answer is lost is resolved from the world (`outcome`).
        let call = SapiCall::Upgrade { zone, image };
        sapi_call(&self.triton, call, || {
            self.triton.sapi.upgrade_instance(zone, image)
        })
        .await
    }

    async fn freeze(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        self.write_state(shard, |st| {
            if st.is_frozen() {
                return if st.freeze.reason() == Some(reason) {
                    Ok(false)
                } else {
                    Err(WorldError::Unexpected(format!(
                        "already frozen: {}",
                        st.freeze.reason().unwrap_or("?")
                    )))
                };
            }
            st.freeze(reason).map_err(e)?;
            Ok(true)
        })
        .await
    }

    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        self.write_state(shard, |st| {
            if st.freeze.reason() != Some(reason) {
                return Ok(false); // never lift someone else's freeze
            }
            st.unfreeze_own(reason).map_err(e)?;
            Ok(true)
        })
        .await
    }

    /// `manatee-adm promote -r sync` (§4.7) without its prompts: the
    /// request names the current sync at the state's generation, written
    /// with the same fenced CAS as a freeze; manatee-adm's own refusals
    /// (frozen, one-node-write mode, the zone not the sync) apply.
    async fn promote_sync(
        &self,
        shard: &str,
        sync_zone: &str,
        expire: time::OffsetDateTime,
    ) -> Result<(), WorldError> {
        self.write_state(shard, |st| {
            if st.is_frozen() || st.is_one_node_write_mode() {
                return Err(WorldError::Refused(Refusal::new(
                    RefusalReason::FrozenByOther,
                    format!(
                        "shard {shard} is frozen ({}); no promotion",
                        st.freeze.reason().unwrap_or("no reason given")
                    ),
                )));
            }
            if st.promote.is_some() {
                return Ok(false); // one request at a time: the gate looks at it
            }
            let Some(sync) = st.sync.as_ref().filter(|s| s.zone_id == sync_zone) else {
                return Err(WorldError::Unexpected(format!(
                    "{sync_zone} is no longer the sync of {shard}"
                )));
            };
            let req = PromoteRequest::sync(&sync.id.clone(), st.generation, expire);
            st.set_promote(&req);
            Ok(true)
        })
        .await
    }

    async fn clear_promote(&self, shard: &str) -> Result<(), WorldError> {
        self.write_state(shard, |st| Ok(st.promote.take().is_some()))
            .await
    }

    async fn rebuild(&self, zone: &str) -> Result<(), WorldError> {
        let vm = self.triton.vmapi.vm(zone).await.map_err(e)?;
        let server = vm
            .server_uuid
            .ok_or_else(|| WorldError::Missing(format!("zone {zone} has no server in VMAPI")))?;
        let out = self
            .triton
            .cnapi
            .execute(&server, Some(zone), &["manatee-adm", "rebuild", "-y"])
            .await
            .map_err(e)?;
        if out.exit_code != 0 {
            return Err(WorldError::Command(format!(
                "manatee-adm rebuild in {zone} exited {}: {}",
                out.exit_code,
                out.stderr.trim()
            )));
        }
        Ok(())
    }
}

/// SAPI metadata key tagging a zone with the operation that created it.
pub const CREATED_BY: &str = "TRITONCTL_OPERATION";

fn created_tag(op_id: &str, alias: &str) -> String {
    format!("{op_id}/{alias}")
}

#[async_trait]
impl HaObserve for TritonManatee {
    async fn find_created_peer(
        &self,
        shard: &str,
        op_id: &str,
        alias: &str,
    ) -> Result<Option<String>, WorldError> {
        let tag = created_tag(op_id, alias);
        Ok(self
            .shard_instances(shard)
            .await?
            .into_iter()
            .find(|i| i.metadata.get(CREATED_BY).and_then(|v| v.as_str()) == Some(tag.as_str()))
            .map(|i| i.uuid))
    }

    async fn resolve_servers(&self, names: &[String]) -> Result<Vec<DesiredServer>, WorldError> {
        // A server record we cannot read blocks only when it may be one of
        // the servers named here.
        let named = |uuid: Option<&str>, host: Option<&str>| {
            names
                .iter()
                .any(|n| uuid == Some(n.as_str()) || host == Some(n.as_str()))
        };
        let servers = self
            .triton
            .cnapi
            .servers()
            .await
            .map_err(e)?
            .scoped(
                |_| true,
                |odd| odd.uuid.is_none() || named(odd.uuid.as_deref(), odd.raw_str(&["hostname"])),
            )
            .map_err(e)?;
        Ok(names
            .iter()
            .map(|n| DesiredServer {
                name: n.clone(),
                uuid: servers
                    .iter()
                    .find(|s| &s.uuid == n || &s.hostname == n)
                    .map(|s| s.uuid.clone()),
            })
            .collect())
    }
}

#[async_trait]
impl HaAct for TritonManatee {
    async fn create_peer(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        op_id: &str,
    ) -> Result<String, WorldError> {
        let (svc, _) = self.shard_service(shard).await?;
        let mut params = serde_json::Map::new();
        params.insert("alias".into(), alias.into());
        params.insert("server_uuid".into(), server.into());
        let mut md = serde_json::Map::new();
        md.insert(CREATED_BY.into(), created_tag(op_id, alias).into());
        if shard != "sdc" {
            // A Manta postgres zone names its shard (sdc-manta deploy.js).
            let n = shard.split('.').next().unwrap_or(shard);
            md.insert("SHARD".into(), n.into());
            md.insert("SERVICE_NAME".into(), shard.into());
            md.insert(
                "MANATEE_SHARD_PATH".into(),
                format!("/manatee/{shard}").into(),
            );
        }
        // Our own uuid: a call whose answer is lost is looked up by it.
        let uuid = uuid::Uuid::new_v4().to_string();
        let call = SapiCall::Create { uuid: &uuid };
        sapi_call(&self.triton, call, || {
            self.triton
                .sapi
                .create_instance(&uuid, &svc, params.clone(), md.clone())
        })
        .await
        .map_err(|x| x.context(format!("creating {alias} on server {server} in SAPI")))?;
        Ok(uuid)
    }

    async fn clear_one_node_write_mode(&self, zone: &str) -> Result<(), WorldError> {
        let mut md = serde_json::Map::new();
        md.insert("ONE_NODE_WRITE_MODE".into(), true.into());
        self.triton
            .sapi
            .update_instance_metadata(zone, "delete", md)
            .await
            .map(|_| ())
            .map_err(e)
    }

    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
        let vm = self.triton.vmapi.vm(zone).await.map_err(e)?;
        let server = vm
            .server_uuid
            .ok_or_else(|| WorldError::Missing(format!("zone {zone} has no server in VMAPI")))?;
        let out = self
            .triton
            .cnapi
            .execute(
                &server,
                Some(zone),
                &["svcadm", "restart", "manatee-sitter"],
            )
            .await
            .map_err(e)?;
        if out.exit_code != 0 {
            return Err(WorldError::Command(format!(
                "svcadm restart manatee-sitter in {zone} exited {}: {}",
                out.exit_code,
                out.stderr.trim()
            )));
        }
        Ok(())
    }
}
