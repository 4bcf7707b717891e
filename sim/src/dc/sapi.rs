//! SAPI: applications, services, instances, manifests, configs, mode.
//!
//! Instance create/upgrade/delete are synchronous in SAPI: they drive the
//! VMAPI side of the model through a job and wait for it (outside the lock).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wire::apis::{
    Application, Instance, JobExecution, JsonMap, Manifest, SapiConfig, SapiPing, SapiType,
    Service, UpdateAction, VmState, codes,
};

use super::Datacenter;
use super::error::ApiError;
use super::ids::is_uuid;
use super::params::{flag, obj_param, str_param};
use super::state::{SapiMode, State, merge_maps};
use super::vmapi::VmCreate;

/// Metadata keys SAPI copies into a zone's `customer_metadata`.
const PASS_THROUGH_METADATA: &[&str] = &[
    "SAPI_URL",
    "sapi_url",
    "SAPI-URL",
    "sapi-url",
    "user-script",
    "assets-ip",
];

fn required(p: &JsonMap, keys: &[&str]) -> Result<(), ApiError> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| str_param(p, k).is_none_or(|v| v.is_empty()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::missing_keys(&missing))
    }
}

fn parse_action(p: &JsonMap) -> Result<UpdateAction, ApiError> {
    match str_param(p, "action").map(|a| a.to_ascii_lowercase()) {
        None => Ok(UpdateAction::Update),
        Some(a) if a == "update" => Ok(UpdateAction::Update),
        Some(a) if a == "replace" => Ok(UpdateAction::Replace),
        Some(a) if a == "delete" => Ok(UpdateAction::Delete),
        // SAPI really answers with an empty message here.
        Some(_) => Err(ApiError::invalid_argument("")),
    }
}

/// SAPI's per-field update rule (`attributes.js`).
fn apply_change(target: &mut JsonMap, changes: &JsonMap, action: UpdateAction) {
    match action {
        UpdateAction::Update => {
            for (k, v) in changes {
                target.insert(k.clone(), v.clone());
            }
        }
        UpdateAction::Replace => *target = changes.clone(),
        UpdateAction::Delete => {
            for k in changes.keys() {
                target.remove(k);
            }
        }
    }
}

fn update_attrs(
    params: &mut JsonMap,
    metadata: &mut JsonMap,
    manifests: &mut JsonMap,
    p: &JsonMap,
    action: UpdateAction,
) {
    for (field, target) in [
        ("params", params),
        ("metadata", metadata),
        ("manifests", manifests),
    ] {
        if let Some(ch) = obj_param(p, field) {
            apply_change(target, &ch, action);
        }
    }
}

fn no_record(bucket: &str, uuid: &str) -> ApiError {
    ApiError::uncoded(
        500,
        format!("updateObject failed: no record for bucket {bucket} object {uuid}"),
    )
}

fn master(p: &JsonMap) -> Option<bool> {
    flag(p, "master").then_some(true)
}

fn filter_eq(p: &JsonMap, key: &str, have: &str) -> bool {
    str_param(p, key).is_none_or(|want| want == have)
}

impl Datacenter {
    // ---- applications ----

    pub fn sapi_create_application(&self, p: &JsonMap) -> Result<Application, ApiError> {
        required(p, &["name", "owner_uuid"])?;
        let app = Application {
            uuid: str_param(p, "uuid").unwrap_or_else(|| self.new_uuid()),
            name: str_param(p, "name").unwrap_or_default(),
            owner_uuid: str_param(p, "owner_uuid").unwrap_or_default(),
            params: obj_param(p, "params").unwrap_or_default(),
            metadata: obj_param(p, "metadata").unwrap_or_default(),
            metadata_schema: p.get("metadata_schema").cloned(),
            manifests: obj_param(p, "manifests").unwrap_or_default(),
            master: master(p),
            extra: JsonMap::new(),
        };
        self.lock()
            .applications
            .insert(app.uuid.clone(), app.clone());
        Ok(app)
    }

    pub fn sapi_list_applications(&self, p: &JsonMap) -> Vec<Application> {
        self.lock()
            .applications
            .values()
            .filter(|a| filter_eq(p, "name", &a.name) && filter_eq(p, "owner_uuid", &a.owner_uuid))
            .cloned()
            .collect()
    }

    pub fn sapi_get_application(&self, uuid: &str) -> Result<Application, ApiError> {
        self.lock()
            .applications
            .get(uuid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no such application: {uuid}")))
    }

    pub fn sapi_update_application(
        &self,
        uuid: &str,
        p: &JsonMap,
    ) -> Result<Application, ApiError> {
        let action = parse_action(p)?;
        let mut st = self.lock();
        let app = st
            .applications
            .get_mut(uuid)
            .ok_or_else(|| no_record("sapi_applications", uuid))?;
        update_attrs(
            &mut app.params,
            &mut app.metadata,
            &mut app.manifests,
            p,
            action,
        );
        if let Some(schema) = p.get("metadata_schema") {
            match action {
                UpdateAction::Delete => app.metadata_schema = None,
                _ => app.metadata_schema = Some(schema.clone()),
            }
        }
        if let Some(owner) = str_param(p, "owner_uuid") {
            app.owner_uuid = owner;
        }
        Ok(app.clone())
    }

    pub fn sapi_delete_application(&self, uuid: &str) -> Result<(), ApiError> {
        match self.lock().applications.remove(uuid) {
            Some(_) => Ok(()),
            None => Err(ApiError::empty(404)),
        }
    }

    // ---- services ----

    pub fn sapi_create_service(&self, p: &JsonMap) -> Result<Service, ApiError> {
        required(p, &["name", "application_uuid"])?;
        let kind = match str_param(p, "type") {
            None => SapiType::Vm,
            Some(t) => SapiType::parse(&t)
                .ok_or_else(|| ApiError::uncoded(500, format!("service type is invalid: {t}")))?,
        };
        let app_uuid = str_param(p, "application_uuid").unwrap_or_default();
        let mut st = self.lock();
        if !st.applications.contains_key(&app_uuid) {
            return Err(ApiError::not_found(format!(
                "no such application: {app_uuid}"
            )));
        }
        let svc = Service {
            uuid: str_param(p, "uuid").unwrap_or_else(|| self.new_uuid()),
            name: str_param(p, "name").unwrap_or_default(),
            application_uuid: app_uuid,
            params: obj_param(p, "params").unwrap_or_default(),
            metadata: obj_param(p, "metadata").unwrap_or_default(),
            manifests: obj_param(p, "manifests").unwrap_or_default(),
            master: master(p),
            kind: Some(kind),
            extra: JsonMap::new(),
        };
        st.services.insert(svc.uuid.clone(), svc.clone());
        Ok(svc)
    }

    /// `v2`: the request's Accept-Version allows 2.0.0; below it only
    /// `type=vm` services are listed.
    pub fn sapi_list_services(&self, p: &JsonMap, v2: bool) -> Vec<Service> {
        let type_filter = if v2 {
            str_param(p, "type")
        } else {
            Some("vm".to_string())
        };
        self.lock()
            .services
            .values()
            .filter(|s| {
                filter_eq(p, "name", &s.name)
                    && filter_eq(p, "application_uuid", &s.application_uuid)
                    && type_filter
                        .as_deref()
                        .is_none_or(|t| s.kind.unwrap_or_default().as_str() == t)
            })
            .cloned()
            .collect()
    }

    pub fn sapi_get_service(&self, uuid: &str) -> Result<Service, ApiError> {
        self.lock()
            .services
            .get(uuid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no such service: {uuid}")))
    }

    pub fn sapi_update_service(&self, uuid: &str, p: &JsonMap) -> Result<Service, ApiError> {
        let action = parse_action(p)?;
        let mut st = self.lock();
        let svc = st
            .services
            .get_mut(uuid)
            .ok_or_else(|| no_record("sapi_services", uuid))?;
        update_attrs(
            &mut svc.params,
            &mut svc.metadata,
            &mut svc.manifests,
            p,
            action,
        );
        Ok(svc.clone())
    }

    pub fn sapi_delete_service(&self, uuid: &str) -> Result<(), ApiError> {
        match self.lock().services.remove(uuid) {
            Some(_) => Ok(()),
            None => Err(ApiError::empty(404)),
        }
    }

    // ---- instances ----

    /// `POST /instances`: store the instance and provision its zone; waits
    /// for the provision job unless `async=true` (then `job_uuid` is set).
    /// A failed provision deletes the instance again (500 ProvisionFailedError).
    pub async fn sapi_create_instance(&self, p: &JsonMap) -> Result<Instance, ApiError> {
        required(p, &["service_uuid"])?;
        let run_async = flag(p, "async");
        let svc_uuid = str_param(p, "service_uuid").unwrap_or_default();
        let (mut inst, job) = {
            let mut st = self.lock();
            let svc = st
                .services
                .get(&svc_uuid)
                .ok_or_else(|| ApiError::not_found(format!("no such service: {svc_uuid}")))?;
            let kind = svc.kind.unwrap_or_default();
            let manifests = obj_param(p, "manifests").unwrap_or_default();
            for m in manifests.values() {
                let m = m.as_str().unwrap_or_default();
                if !st.manifests.contains_key(m) {
                    return Err(ApiError::not_found(format!("no such manifest: {m}")));
                }
            }
            let inst = Instance {
                uuid: str_param(p, "uuid").unwrap_or_else(|| self.new_uuid()),
                service_uuid: svc_uuid.clone(),
                params: obj_param(p, "params").unwrap_or_default(),
                metadata: obj_param(p, "metadata").unwrap_or_default(),
                manifests,
                master: master(p),
                job_uuid: None,
                kind: Some(kind),
                extra: JsonMap::new(),
            };
            st.instances.insert(inst.uuid.clone(), inst.clone());
            let needs_vm = kind == SapiType::Vm
                && st.mode == SapiMode::Full
                && st
                    .vms
                    .get(&inst.uuid)
                    .is_none_or(|v| v.vm.state == VmState::Destroyed);
            let job = if needs_vm {
                let provisioned = zone_params(&st, &inst.uuid)
                    .and_then(|payload| VmCreate::parse(&payload))
                    .and_then(|req| self.provision_locked(&mut st, req));
                match provisioned {
                    Ok((_, job)) => Some(job),
                    Err(e) => {
                        st.instances.remove(&inst.uuid);
                        return Err(e);
                    }
                }
            } else {
                None
            };
            (inst, job)
        };
        if let Some(job) = job {
            if run_async {
                inst.job_uuid = Some(job);
                return Ok(inst);
            }
            // On any failure, waiting included, SAPI deletes the instance again.
            let done = match self.sapi_wait_job(&job).await {
                Ok(done) => done,
                Err(e) => {
                    self.lock().instances.remove(&inst.uuid);
                    return Err(e);
                }
            };
            if done.execution != JobExecution::Succeeded {
                self.lock().instances.remove(&inst.uuid);
                let msg = done
                    .error_message()
                    .unwrap_or_else(|| "provision failed".into());
                return Err(ApiError::new(500, codes::PROVISION_FAILED, msg));
            }
        }
        Ok(inst)
    }

    /// `v2` as for [`Self::sapi_list_services`]; the type filter is dropped
    /// when `service_uuid` is given.
    pub fn sapi_list_instances(&self, p: &JsonMap, v2: bool) -> Vec<Instance> {
        let svc = str_param(p, "service_uuid");
        let type_filter = if svc.is_some() {
            None
        } else if v2 {
            str_param(p, "type")
        } else {
            Some("vm".to_string())
        };
        self.lock()
            .instances
            .values()
            .filter(|i| {
                svc.as_deref().is_none_or(|s| i.service_uuid == s)
                    && type_filter
                        .as_deref()
                        .is_none_or(|t| i.kind.unwrap_or_default().as_str() == t)
            })
            .cloned()
            .collect()
    }

    pub fn sapi_get_instance(&self, uuid: &str) -> Result<Instance, ApiError> {
        self.lock()
            .instances
            .get(uuid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))
    }

    /// `GET /instances/:uuid/payload`: the CreateVm payload SAPI would send.
    pub fn sapi_instance_payload(&self, uuid: &str) -> Result<JsonMap, ApiError> {
        zone_params(&self.lock(), uuid)
    }

    /// `PUT /instances/:uuid`: a metadata write, no VM effect.
    pub fn sapi_update_instance(&self, uuid: &str, p: &JsonMap) -> Result<Instance, ApiError> {
        let action = parse_action(p)?;
        let mut st = self.lock();
        let inst = st
            .instances
            .get_mut(uuid)
            .ok_or_else(|| no_record("sapi_instances", uuid))?;
        update_attrs(
            &mut inst.params,
            &mut inst.metadata,
            &mut inst.manifests,
            p,
            action,
        );
        Ok(inst.clone())
    }

    /// `PUT /instances/:uuid/upgrade {image_uuid}`: reprovision the zone and
    /// wait. The instance object itself is not modified and is returned as
    /// it was before the call.
    pub async fn sapi_upgrade_instance(
        &self,
        uuid: &str,
        p: &JsonMap,
    ) -> Result<Instance, ApiError> {
        let image = str_param(p, "image_uuid")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::new(409, codes::MISSING_PARAMETER, "missing image_uuid"))?;
        let (inst, vm_work) = {
            let st = self.lock();
            let inst = st
                .instances
                .get(uuid)
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))?;
            let vm_work =
                inst.kind.unwrap_or_default() == SapiType::Vm && st.mode == SapiMode::Full;
            (inst, vm_work)
        };
        if vm_work {
            let mut req = JsonMap::new();
            req.insert("action".into(), json!("reprovision"));
            req.insert("image_uuid".into(), json!(image));
            let resp = self.vmapi_vm_action(uuid, &req)?;
            let done = self.sapi_wait_job(&resp.job_uuid).await?;
            if done.execution != JobExecution::Succeeded {
                let msg = done
                    .error_message()
                    .unwrap_or_else(|| "reprovision failed".into());
                return Err(ApiError::new(500, codes::REPROVISION_FAILED, msg));
            }
        }
        Ok(inst)
    }

    /// `DELETE /instances/:uuid`: destroy the zone, wait, drop the object.
    pub async fn sapi_delete_instance(&self, uuid: &str) -> Result<(), ApiError> {
        let destroy = {
            let st = self.lock();
            let inst = st
                .instances
                .get(uuid)
                .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))?;
            inst.kind.unwrap_or_default() == SapiType::Vm
                && st.mode == SapiMode::Full
                && st
                    .vms
                    .get(uuid)
                    .is_some_and(|v| v.vm.state != VmState::Destroyed)
        };
        if destroy {
            let resp = self.vmapi_delete_vm(uuid, &JsonMap::new())?;
            let done = self.sapi_wait_job(&resp.job_uuid).await?;
            if done.execution != JobExecution::Succeeded {
                let msg = done.error_message().unwrap_or_default();
                // SAPI ignores "already gone" from the destroy job.
                if !msg.contains("not found") {
                    return Err(ApiError::new(500, codes::DESTROY_FAILED, msg));
                }
            }
        }
        self.lock().instances.remove(uuid);
        Ok(())
    }

    // ---- manifests ----

    pub fn sapi_create_manifest(&self, p: &JsonMap) -> Result<Manifest, ApiError> {
        let missing: Vec<&str> = ["name", "path", "template"]
            .into_iter()
            .filter(|k| {
                p.get(*k)
                    .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
            })
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::missing_keys(&missing));
        }
        let m = Manifest {
            uuid: str_param(p, "uuid").unwrap_or_else(|| self.new_uuid()),
            name: str_param(p, "name").unwrap_or_default(),
            path: str_param(p, "path").unwrap_or_default(),
            template: p.get("template").cloned().unwrap_or(Value::Null),
            post_cmd: str_param(p, "post_cmd"),
            post_cmd_linux: str_param(p, "post_cmd_linux"),
            version: str_param(p, "version").unwrap_or_else(|| "1.0.0".into()),
            master: master(p),
            extra: JsonMap::new(),
        };
        self.lock().manifests.insert(m.uuid.clone(), m.clone());
        Ok(m)
    }

    pub fn sapi_list_manifests(&self) -> Vec<Manifest> {
        self.lock().manifests.values().cloned().collect()
    }

    pub fn sapi_get_manifest(&self, uuid: &str) -> Result<Manifest, ApiError> {
        self.lock()
            .manifests
            .get(uuid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no such manifest: {uuid}")))
    }

    pub fn sapi_delete_manifest(&self, uuid: &str) -> Result<(), ApiError> {
        match self.lock().manifests.remove(uuid) {
            Some(_) => Ok(()),
            None => Err(ApiError::empty(404)),
        }
    }

    // ---- configs, mode, ping ----

    /// `GET /configs/:uuid`: resolved manifests and effective metadata, and
    /// the Etag config-agent polls with.
    pub fn sapi_get_configs(&self, uuid: &str) -> Result<(SapiConfig, String), ApiError> {
        let st = self.lock();
        let inst = st
            .instances
            .get(uuid)
            .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))?;
        let (svc, app) = st.lineage(inst).ok_or_else(|| {
            ApiError::not_found(format!("no such service: {}", inst.service_uuid))
        })?;
        let manifest_ids = merge_maps([&app.manifests, &svc.manifests, &inst.manifests]);
        let manifests = manifest_ids
            .values()
            .filter_map(|m| m.as_str().and_then(|m| st.manifests.get(m)).cloned())
            .collect();
        let mut metadata = merge_maps([&app.metadata, &svc.metadata, &inst.metadata]);
        let params = merge_maps([&app.params, &svc.params, &inst.params]);
        let server = params
            .get("server_uuid")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| st.vms.get(uuid).and_then(|v| v.vm.server_uuid.clone()));
        if let Some(s) = server {
            metadata.insert("SERVER_UUID".into(), json!(s));
        }
        metadata.insert("ZONE_UUID".into(), json!(uuid));
        metadata.insert("INSTANCE_UUID".into(), json!(uuid));
        metadata.remove("user-script");
        let cfg = SapiConfig {
            manifests,
            metadata,
            extra: JsonMap::new(),
        };
        let body = serde_json::to_vec(&cfg).unwrap_or_default();
        let etag = Sha256::digest(&body)
            .iter()
            .take(20)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((cfg, etag))
    }

    pub fn sapi_set_mode(&self, p: &JsonMap) -> Result<(), ApiError> {
        let mode = str_param(p, "mode").ok_or_else(|| ApiError::missing_keys(&["mode"]))?;
        if mode != "full" {
            return Err(ApiError::invalid_argument(format!("invalid mode: {mode}")));
        }
        self.lock().mode = SapiMode::Full;
        Ok(())
    }

    pub fn sapi_ping(&self) -> SapiPing {
        let full = self.lock().mode == SapiMode::Full;
        SapiPing {
            mode: if full { "full" } else { "proto" }.into(),
            stor_type: if full {
                "MorayLocalStorage"
            } else {
                "LocalStorage"
            }
            .into(),
            stor_available: true,
            extra: JsonMap::new(),
        }
    }
}

/// SAPI's `generateZoneParams`: merged params, owner from the application,
/// forced brand, networks by name or uuid, and only the pass-through
/// metadata keys as `customer_metadata`.
pub(crate) fn zone_params(st: &State, inst_uuid: &str) -> Result<JsonMap, ApiError> {
    let inst = st
        .instances
        .get(inst_uuid)
        .ok_or_else(|| ApiError::not_found(format!("no such instance: {inst_uuid}")))?;
    let svc = st
        .services
        .get(&inst.service_uuid)
        .ok_or_else(|| ApiError::not_found(format!("no such service: {}", inst.service_uuid)))?;
    let app = st.applications.get(&svc.application_uuid).ok_or_else(|| {
        ApiError::not_found(format!("no such application: {}", svc.application_uuid))
    })?;
    let mut params = merge_maps([&app.params, &svc.params, &inst.params]);
    params.insert("owner_uuid".into(), json!(app.owner_uuid));
    params.insert("uuid".into(), json!(inst.uuid));
    params.insert("brand".into(), json!("joyent-minimal"));
    if let Some(Value::Array(nets)) = params.get("networks").cloned() {
        let nets: Vec<Value> = nets
            .into_iter()
            .map(|n| match n {
                Value::String(s) if is_uuid(&s) => json!({"uuid": s}),
                Value::String(s) => json!({"name": s}),
                other => other,
            })
            .collect();
        params.insert("networks".into(), Value::Array(nets));
    }
    let metadata = merge_maps([&app.metadata, &svc.metadata, &inst.metadata]);
    let mut pass: Vec<String> = PASS_THROUGH_METADATA
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(Value::Array(extra)) = metadata.get("pass_vmapi_metadata_keys") {
        pass.extend(extra.iter().filter_map(Value::as_str).map(str::to_string));
    }
    let mut cm = JsonMap::new();
    for k in pass {
        if let Some(v) = metadata.get(&k) {
            cm.insert(k, v.clone());
        }
    }
    params.insert("customer_metadata".into(), Value::Object(cm));
    Ok(params)
}
