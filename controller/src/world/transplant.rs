//! [`TransplantWorld`] over Triton's APIs and ZooKeeper: every step of the
//! brain-transplant runbook as the API call or the command an operator runs
//! (CNAPI execute: `svcadm`, `zfs`, `json` on sitter.json, `psql`; SAPI for
//! metadata, service image, reprovision, create and delete).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use coord::{CoordError, Coordination, CreateMode, Expect, Op};
use reconcilers::error::WorldError;
use reconcilers::transplant::{MorayObs, TransplantAct, TransplantObs, TransplantObserve, ZoneObs};
use reqwest::Method;
use serde_json::{Map, Value, json};
use wire::manatee::{
    ClusterState, ElectionNodeData, ElectionNodeName, Freeze, HistoryWriter, PeerIdent,
    election_path, prepare_state_write, state_path,
};

use crate::clients::Triton;
use crate::store::Fence;
use crate::world::e;
use crate::world::outcome::{SapiCall, sapi_call};

/// sitter.json in a manatee zone.
pub const SITTER_JSON: &str = "/opt/smartdc/manatee/etc/sitter.json";
/// The moray services the runbook disables.
pub const MORAY_FMRI: &str = "*moray-202*";

pub struct TritonTransplant {
    pub triton: Triton,
    pub coord: Arc<dyn Coordination>,
    pub fence: Option<Fence>,
}

fn dataset(zone: &str) -> String {
    format!("zones/{zone}/data/manatee")
}

impl TritonTransplant {
    async fn service(&self, app: &str, svc: &str) -> Result<wire::apis::Service, WorldError> {
        // Odd records are errors naming them, never absences
        // (clients/listed.rs).
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
        self.triton
            .sapi
            .services(&app.uuid, Some(svc))
            .await
            .map_err(e)?
            .all()
            .map_err(e)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                WorldError::Missing(format!("no SAPI service `{svc}` in `{}`", app.name))
            })
    }

    async fn manatee_service(&self, shard: &str) -> Result<wire::apis::Service, WorldError> {
        if shard == "sdc" {
            self.service("sdc", "manatee").await
        } else {
            self.service("manta", "postgres").await
        }
    }

    async fn instances(&self, shard: &str) -> Result<Vec<wire::apis::Instance>, WorldError> {
        let svc = self.manatee_service(shard).await?;
        let listed = self.triton.sapi.instances(&svc.uuid).await.map_err(e)?;
        if shard == "sdc" {
            return listed.all().map_err(e);
        }
        listed
            .scoped(
                |i| {
                    i.metadata
                        .get("SERVICE_NAME")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s == shard)
                },
                |odd| {
                    odd.raw_str(&["metadata", "SERVICE_NAME"])
                        .is_none_or(|s| s == shard)
                },
            )
            .map_err(e)
    }

    async fn server_of(&self, zone: &str) -> Result<String, WorldError> {
        self.triton
            .vmapi
            .vm(zone)
            .await
            .map_err(e)?
            .server_uuid
            .ok_or_else(|| WorldError::Missing(format!("zone {zone} has no server")))
    }

    /// Run a command; a non-zero exit is an error naming the command.
    async fn run(
        &self,
        server: &str,
        zone: Option<&str>,
        argv: &[&str],
    ) -> Result<String, WorldError> {
        let r = self
            .triton
            .cnapi
            .execute(server, zone, argv)
            .await
            .map_err(e)?;
        if r.exit_code != 0 {
            return Err(WorldError::Command(format!(
                "`{}` on {} exited {}: {}",
                argv.join(" "),
                zone.unwrap_or(server),
                r.exit_code,
                r.stderr.trim()
            )));
        }
        Ok(r.stdout)
    }

    async fn pipeline(&self, server: &str, stages: &[&[&str]]) -> Result<(), WorldError> {
        let r = self
            .triton
            .cnapi
            .execute_pipeline_bg(server, stages)
            .await
            .map_err(e)?;
        if r.exit_code != 0 {
            return Err(WorldError::Command(format!(
                "pipeline on {server} exited {}: {}",
                r.exit_code,
                r.stderr.trim()
            )));
        }
        Ok(())
    }

    /// Like [`run`], but an exit status is an answer, not an error.
    async fn probe(&self, server: &str, zone: Option<&str>, argv: &[&str]) -> Option<String> {
        let r = self.triton.cnapi.execute(server, zone, argv).await.ok()?;
        (r.exit_code == 0).then_some(r.stdout)
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

    async fn fenced(&self, mut ops: Vec<Op>) -> Result<(), WorldError> {
        let mut all: Vec<Op> = self.fence.iter().map(Fence::op).collect();
        all.append(&mut ops);
        self.coord.multi(all).await.map(|_| ()).map_err(e)
    }

    async fn zone_obs(
        &self,
        inst: &wire::apis::Instance,
        seqs: &BTreeMap<String, u64>,
    ) -> Result<Option<ZoneObs>, WorldError> {
        let vm = match self.triton.vmapi.vm(&inst.uuid).await {
            Ok(vm) => vm,
            Err(x) if x.is_not_found() => return Ok(None),
            Err(x) => return Err(e(x)),
        };
        if vm.state.as_str() == "destroyed" {
            return Ok(None);
        }
        let server = vm.server_uuid.clone().unwrap_or_default();
        let running = vm.state.as_str() == "running";
        let z = inst.uuid.as_str();
        let mut o = ZoneObs {
            zone: z.to_string(),
            alias: vm.alias.clone().unwrap_or_else(|| z.to_string()),
            server: server.clone(),
            image: vm.image_uuid.clone().unwrap_or_default(),
            vm_state: vm.state.as_str().to_string(),
            election_seq: seqs.get(z).copied(),
            metadata: inst
                .metadata
                .iter()
                .filter_map(|(k, v)| {
                    let b = v.as_bool().or_else(|| v.as_str().map(|s| s == "true"))?;
                    matches!(k.as_str(), "ONE_NODE_WRITE_MODE" | "DISABLE_SITTER")
                        .then(|| (k.clone(), b))
                })
                .collect(),
            ..Default::default()
        };
        if running {
            if let Some(out) = self
                .probe(
                    &server,
                    Some(z),
                    &[
                        "svcs",
                        "-H",
                        "-o",
                        "state",
                        "manatee-sitter",
                        "config-agent",
                    ],
                )
                .await
            {
                let mut l = out.lines();
                o.sitter_enabled = l.next() == Some("online");
                o.config_agent_enabled = l.next() == Some("online");
            }
            o.sitter_onwm = self
                .probe(
                    &server,
                    Some(z),
                    &["json", "-f", SITTER_JSON, "postgresMgrCfg.oneNodeWriteMode"],
                )
                .await
                .is_some_and(|s| s.trim() == "true");
            o.writable = self
                .probe(
                    &server,
                    Some(z),
                    &[
                        "psql",
                        "-U",
                        "postgres",
                        "-t",
                        "-A",
                        "-c",
                        "SHOW transaction_read_only",
                    ],
                )
                .await
                .is_some_and(|s| s.trim() == "off");
        }
        let ds = dataset(z);
        if let Some(out) = self
            .probe(
                &server,
                None,
                &[
                    "zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", &ds,
                ],
            )
            .await
        {
            o.snapshots = out
                .lines()
                .filter_map(|l| l.split_once('@').map(|(_, s)| s.trim().to_string()))
                .collect();
        }
        o.dataset_bytes = self
            .probe(
                &server,
                None,
                &["zfs", "list", "-H", "-p", "-o", "used", &ds],
            )
            .await
            .and_then(|s| s.split_whitespace().last()?.parse().ok());
        Ok(Some(o))
    }
}

#[async_trait]
impl TransplantObserve for TritonTransplant {
    async fn observe(&self, shard: &str) -> Result<TransplantObs, WorldError> {
        let state = self.read_state(shard).await?.map(|(s, _)| s);
        let mut seqs = BTreeMap::new();
        if let Ok(children) = self.coord.children(&election_path(shard)).await {
            for c in children {
                let Ok(n) = ElectionNodeName::parse(&c) else {
                    continue;
                };
                if let Ok((data, _)) = self
                    .coord
                    .get(&format!("{}/{c}", election_path(shard)))
                    .await
                    && let Ok(d) = ElectionNodeData::from_json(&data)
                {
                    let s = seqs.entry(d.zone_id).or_insert(n.seq);
                    *s = (*s).max(n.seq);
                }
            }
        }
        let mut zones = Vec::new();
        for inst in self.instances(shard).await? {
            if let Some(z) = self.zone_obs(&inst, &seqs).await? {
                zones.push(z);
            }
        }
        let mut morays = Vec::new();
        if shard == "sdc"
            && let Ok(svc) = self.service("sdc", "moray").await
        {
            for inst in self
                .triton
                .sapi
                .instances(&svc.uuid)
                .await
                .map_err(e)?
                .all()
                .map_err(e)?
            {
                let Ok(vm) = self.triton.vmapi.vm(&inst.uuid).await else {
                    continue;
                };
                let server = vm.server_uuid.clone().unwrap_or_default();
                let image_version = match &vm.image_uuid {
                    Some(i) => self
                        .triton
                        .imgapi
                        .image(i)
                        .await
                        .map_err(e)?
                        .map(|m| m.version)
                        .unwrap_or_default(),
                    None => String::new(),
                };
                let enabled = vm.state.as_str() == "running"
                    && self
                        .probe(
                            &server,
                            Some(&inst.uuid),
                            &["svcs", "-H", "-o", "state", MORAY_FMRI],
                        )
                        .await
                        .is_some_and(|s| s.trim() == "online");
                morays.push(MorayObs {
                    zone: inst.uuid.clone(),
                    server,
                    image_version,
                    enabled,
                });
            }
        }
        Ok(TransplantObs {
            shard: shard.to_string(),
            state,
            zones,
            morays,
        })
    }

    async fn resolve(&self, shard: &str, key: &str) -> Result<Option<String>, WorldError> {
        let Some(alias) = key.strip_prefix("alias:") else {
            return Ok(Some(key.to_string()));
        };
        for inst in self.instances(shard).await? {
            if inst.params.get("alias").and_then(Value::as_str) == Some(alias) {
                return Ok(Some(inst.uuid));
            }
            if let Ok(vm) = self.triton.vmapi.vm(&inst.uuid).await
                && vm.alias.as_deref() == Some(alias)
                && vm.state.as_str() != "destroyed"
            {
                return Ok(Some(inst.uuid));
            }
        }
        Ok(None)
    }

    async fn approved(&self, op_id: &str, step: &str) -> Result<bool, WorldError> {
        // `tritonctl cancel` writes `cancels/<op>` (an operator's, apart
        // from approvals); `approvals/<op>/cancel` still counts.
        if step == crate::reconcile::decisions::CANCEL_STEP
            && self
                .coord
                .exists(&crate::layout::cancel_path(op_id))
                .await
                .map_err(e)?
                .is_some()
        {
            return Ok(true);
        }
        Ok(self
            .coord
            .exists(&super::approval_path(op_id, step))
            .await
            .map_err(e)?
            .is_some())
    }
}

#[async_trait]
impl TransplantAct for TritonTransplant {
    async fn svcadm(&self, zone: &str, enable: bool, fmri: &str) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        let verb = if enable { "enable" } else { "disable" };
        self.run(&server, Some(zone), &["svcadm", verb, fmri])
            .await
            .map(|_| ())
    }

    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        self.run(
            &server,
            Some(zone),
            &["svcadm", "restart", "manatee-sitter"],
        )
        .await
        .map(|_| ())
    }

    async fn set_sitter_onwm(&self, zone: &str, on: bool) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        let expr = format!("this.postgresMgrCfg.oneNodeWriteMode={on}");
        self.run(
            &server,
            Some(zone),
            &["json", "-I", "-f", SITTER_JSON, "-e", &expr],
        )
        .await
        .map(|_| ())
    }

    async fn set_metadata(
        &self,
        zone: &str,
        key: &str,
        value: Option<bool>,
    ) -> Result<(), WorldError> {
        let mut m = Map::new();
        let action = match value {
            Some(v) => {
                m.insert(key.to_string(), json!(v));
                "update"
            }
            None => {
                m.insert(key.to_string(), json!(null));
                "delete"
            }
        };
        self.triton
            .sapi
            .update_instance_metadata(zone, action, m)
            .await
            .map(|_| ())
            .map_err(e)
    }

    async fn set_service_image(&self, shard: &str, image: &str) -> Result<(), WorldError> {
        let svc = self.manatee_service(shard).await?;
        if svc.params.get("image_uuid").and_then(Value::as_str) == Some(image) {
            return Ok(());
        }
        let _: wire::apis::Service = self
            .triton
            .sapi
            .0
            .send(
                Method::PUT,
                &format!("/services/{}", svc.uuid),
                &[],
                Some(&json!({"action": "update", "params": {"image_uuid": image}})),
            )
            .await
            .map_err(e)?;
        Ok(())
    }

    async fn reprovision(&self, zone: &str, image: &str) -> Result<(), WorldError> {
        let call = SapiCall::Upgrade { zone, image };
        sapi_call(&self.triton, call, || {
            self.triton.sapi.upgrade_instance(zone, image)
        })
        .await
    }

    async fn create_instance(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        metadata: &[(&str, bool)],
    ) -> Result<(), WorldError> {
        let svc = self.manatee_service(shard).await?;
        let mut params = Map::new();
        params.insert("alias".into(), json!(alias));
        params.insert("server_uuid".into(), json!(server));
        let md: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let uuid = uuid::Uuid::new_v4().to_string();
        let call = SapiCall::Create { uuid: &uuid };
        sapi_call(&self.triton, call, || {
            self.triton
                .sapi
                .create_instance(&uuid, &svc.uuid, params.clone(), md.clone())
        })
        .await
    }

    async fn delete_instance(&self, zone: &str) -> Result<(), WorldError> {
        let call = SapiCall::Delete { zone };
        let r = sapi_call(&self.triton, call, || {
            self.triton.sapi.delete_instance(zone)
        })
        .await;
        match r {
            Err(x) if x.status() == Some(404) => Ok(()),
            other => other,
        }
    }

    async fn snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        let snap = format!("{}@{name}", dataset(zone));
        self.run(&server, None, &["zfs", "snapshot", &snap])
            .await
            .map(|_| ())
    }

    async fn destroy_snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        let snap = format!("{}@{name}", dataset(zone));
        self.run(&server, None, &["zfs", "destroy", &snap])
            .await
            .map(|_| ())
    }

    async fn destroy_dataset(&self, zone: &str) -> Result<(), WorldError> {
        let server = self.server_of(zone).await?;
        self.run(&server, None, &["zfs", "destroy", "-r", &dataset(zone)])
            .await
            .map(|_| ())
    }

    async fn send(&self, from: &str, snapshot: &str, to: &str) -> Result<(), WorldError> {
        let src = self.server_of(from).await?;
        let dst_vm = self.triton.vmapi.vm(to).await.map_err(e)?;
        let dst = dst_vm.server_uuid.clone().unwrap_or_default();
        let snap = format!("{}@{snapshot}", dataset(from));
        if src == dst {
            // Option 1: donor and recipient on one server, a local pipe.
            self.pipeline(
                &src,
                &[
                    &["zfs", "send", "-v", &snap],
                    &["zfs", "recv", &dataset(to)],
                ],
            )
            .await
        } else {
            // Option 2: the recipient listens, the donor sends over the admin network.
            let ip = dst_vm
                .admin_ip()
                .or_else(|| dst_vm.nics.first().map(|n| n.ip.as_str()))
                .ok_or_else(|| WorldError::Missing(format!("zone {to} has no admin IP")))?
                .to_string();
            self.pipeline(
                &dst,
                &[&["nc", "-l", "1337"], &["zfs", "recv", &dataset(to)]],
            )
            .await?;
            self.pipeline(&src, &[&["zfs", "send", "-v", &snap], &["nc", &ip, "1337"]])
                .await
        }
    }

    async fn set_moray(&self, zone: &str, enable: bool) -> Result<(), WorldError> {
        self.svcadm(zone, enable, MORAY_FMRI).await
    }

    async fn create_onwm_state(
        &self,
        shard: &str,
        zone: &str,
        reason: &str,
    ) -> Result<(), WorldError> {
        let vm = self.triton.vmapi.vm(zone).await.map_err(e)?;
        let ip = vm
            .admin_ip()
            .or_else(|| vm.nics.first().map(|n| n.ip.as_str()))
            .ok_or_else(|| WorldError::Missing(format!("zone {zone} has no admin IP")))?;
        let mut st = ClusterState::initial_onwm(
            PeerIdent::with_default_ports(zone, ip),
            &wire::manatee::iso8601(time::OffsetDateTime::now_utc()),
        );
        st.freeze = Freeze::now(reason);
        let w = prepare_state_write(shard, &st, None, HistoryWriter::Admin).map_err(e)?;
        self.coord
            .mkdirp(&wire::manatee::history_path(shard))
            .await
            .map_err(e)?;
        self.fenced(vec![
            Op::create(w.state_path, w.data.clone(), CreateMode::Persistent),
            Op::create(w.history_prefix, w.data, CreateMode::PersistentSequential),
        ])
        .await
    }

    async fn delete_own_state(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        let Some((st, version)) = self.read_state(shard).await? else {
            return Ok(());
        };
        if st.freeze.reason() != Some(reason) {
            return Err(WorldError::Unexpected(format!(
                "the state of {shard} is not the one tritonctl wrote (freeze {:?}); not deleting it",
                st.freeze.reason()
            )));
        }
        self.fenced(vec![Op::delete(
            state_path(shard),
            Expect::Version(version),
        )])
        .await
    }

    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError> {
        let Some((mut st, version)) = self.read_state(shard).await? else {
            return Err(WorldError::Missing(format!("shard {shard} has no state")));
        };
        if st.freeze.reason() != Some(reason) {
            return Ok(());
        }
        st.unfreeze_own(reason).map_err(e)?;
        let w = prepare_state_write(shard, &st, Some(version), HistoryWriter::Admin).map_err(e)?;
        self.fenced(vec![
            Op::set(w.state_path, w.data.clone(), Expect::Version(version)),
            Op::create(w.history_prefix, w.data, CreateMode::PersistentSequential),
        ])
        .await
    }
}
