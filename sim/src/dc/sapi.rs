//! SAPI: applications, services, instances, manifests, configs, mode.
//!
//! Records are stored as the client sent them ([`Stored`]: see
//! `sapi_store.rs`); what real SAPI refuses or crashes on is checked first
//! (`sapi_rules.rs`, `sapi_schema.rs`). Instance create/upgrade/delete are
//! synchronous in SAPI: they drive the VMAPI side of the model through a job
//! and wait for it (outside the lock), with the VMAPI and CNAPI rules of
//! `sapi_vm.rs` (an existing VM is not provisioned again, a gone VM's
//! delete error passes through, the `teardown-hook`).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wire::apis::{
    Application, Instance, JobExecution, JsonMap, Manifest, SapiConfig, SapiPing, SapiType,
    Service, codes,
};

use super::Datacenter;
use super::error::ApiError;
use super::ids::is_uuid;
use super::params::{flag, str_param};
use super::sapi_rules::{
    self, Check, SapiCall, WouldCrash, apply_changes, filter_matches, manifest_uuids, parse_action,
    truthy,
};
use super::sapi_schema::validate_metadata;
use super::sapi_store::Stored;
use super::sapi_vm::VmStep;
use super::state::{SapiMode, State, merge_maps};

/// Metadata keys SAPI copies into a zone's `customer_metadata`.
const PASS_THROUGH_METADATA: &[&str] = &[
    "SAPI_URL",
    "sapi_url",
    "SAPI-URL",
    "sapi-url",
    "user-script",
    "assets-ip",
];

/// `validateParams`: a required key is missing when absent (`undefined`);
/// null or `""` count as present.
fn required(p: &JsonMap, keys: &[&str]) -> Result<(), ApiError> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !p.contains_key(*k))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::missing_keys(&missing))
    }
}

/// Copy the keys the endpoint reads from `req.params` (absent stays absent).
fn pick(p: &JsonMap, keys: &[&str]) -> JsonMap {
    keys.iter()
        .filter_map(|k| p.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect()
}

fn no_record(bucket: &str, uuid: &str) -> ApiError {
    ApiError::uncoded(
        500,
        format!("updateObject failed: no record for bucket {bucket} object {uuid}"),
    )
}

/// The schema check SAPI runs when a stored object has both keys.
fn schema_check(raw: &JsonMap) -> Result<(), ApiError> {
    if let (Some(schema), Some(md)) = (raw.get("metadata_schema"), raw.get("metadata"))
        && let Some(msg) = validate_metadata(schema, Some(md))
    {
        return Err(ApiError::new(409, codes::SCHEMA_VALIDATION, msg));
    }
    Ok(())
}

/// The `type` filter of a list (`addVersionFilters`): the query's when
/// truthy, else `vm` below Accept-Version 2.0.0, else none.
fn type_filter(p: &JsonMap, v2: bool) -> JsonMap {
    let mut f = JsonMap::new();
    match p.get("type").filter(|t| truthy(t)) {
        Some(t) => {
            f.insert("type".into(), t.clone());
        }
        None if !v2 => {
            f.insert("type".into(), json!(SapiType::Vm.as_str()));
        }
        None => {}
    }
    f
}

/// `uuid` when the client sent a truthy one, else a new one.
fn uuid_or_new(dc: &Datacenter, raw: &mut JsonMap) -> String {
    match raw.get("uuid") {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        _ => {
            let u = dc.new_uuid();
            raw.insert("uuid".into(), json!(u));
            u
        }
    }
}

impl Datacenter {
    /// Answer a request the real SAPI dies on, and remember it.
    fn would_crash(&self, c: WouldCrash) -> ApiError {
        let e = c.to_error();
        tracing::warn!(call = ?c.call, field = %c.field, "request would crash the real SAPI");
        self.lock().sapi_crashes.push(c);
        e
    }

    fn crash_checks(
        &self,
        checks: impl FnOnce() -> Result<(), WouldCrash>,
    ) -> Result<(), ApiError> {
        checks().map_err(|c| self.would_crash(c))
    }

    /// Requests answered [`codes::SIMULATOR_WOULD_CRASH`] so far.
    pub fn sapi_would_crash(&self) -> Vec<WouldCrash> {
        self.lock().sapi_crashes.clone()
    }

    /// `validManifests`: the named manifests exist (500, no code, if not).
    fn check_manifests(&self, st: &State, manifests: Option<&Value>) -> Result<(), ApiError> {
        let missing: Vec<String> = manifest_uuids(manifests)
            .into_iter()
            .filter(|m| !st.manifests.contains_key(m))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(sapi_rules::unknown_manifests(&missing))
        }
    }

    /// `ensureMasterConfigLoaded` of the List endpoints.
    fn include_master(&self, p: &JsonMap) -> Result<(), ApiError> {
        if p.get("include_master").is_some_and(truthy) && !self.lock().sapi_master_loaded() {
            return Err(ApiError::new(
                503,
                codes::SERVICE_UNAVAILABLE,
                "Parameter 'include_master' has been specified but this SAPI instance \
                 has not yet loaded master details",
            ));
        }
        Ok(())
    }

    /// Whether SAPI has loaded its master DC details (`None`: the default,
    /// loaded in full mode, not in proto mode, as the oracle showed).
    pub fn set_sapi_master_loaded(&self, loaded: Option<bool>) {
        self.lock().sapi_master = loaded;
    }

    // ---- applications ----

    pub fn sapi_create_application(&self, p: &JsonMap) -> Result<Stored<Application>, ApiError> {
        required(p, &["name", "owner_uuid"])?;
        self.crash_checks(|| {
            let c = Check::new(SapiCall::CreateApplication, p);
            c.string("name")?;
            c.string("owner_uuid")?;
            c.optional_objects(&["params", "metadata", "metadata_schema", "manifests"])?;
            c.optional_bool("master")?;
            c.key("uuid")?;
            c.manifest_values()
        })?;
        let mut raw = pick(
            p,
            &[
                "uuid",
                "name",
                "owner_uuid",
                "params",
                "metadata",
                "metadata_schema",
                "manifests",
                "master",
            ],
        );
        let uuid = uuid_or_new(self, &mut raw);
        let mut st = self.lock();
        self.check_manifests(&st, raw.get("manifests"))?;
        schema_check(&raw)?;
        let app = Stored::<Application>::from_raw(raw);
        st.applications.insert(uuid, app.clone());
        Ok(app)
    }

    pub fn sapi_list_applications(&self, p: &JsonMap) -> Vec<Stored<Application>> {
        self.lock()
            .applications
            .values()
            .filter(|a| {
                filter_matches(p, "name", a.raw().get("name"))
                    && filter_matches(p, "owner_uuid", a.raw().get("owner_uuid"))
            })
            .cloned()
            .collect()
    }

    /// `GET /applications` with `include_master` checked.
    pub fn sapi_list_applications_checked(
        &self,
        p: &JsonMap,
    ) -> Result<Vec<Stored<Application>>, ApiError> {
        self.include_master(p)?;
        Ok(self.sapi_list_applications(p))
    }

    pub fn sapi_get_application(&self, uuid: &str) -> Result<Stored<Application>, ApiError> {
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
    ) -> Result<Stored<Application>, ApiError> {
        self.crash_checks(|| Check::new(SapiCall::UpdateApplication, p).action())?;
        let action = parse_action(p)?;
        let mut st = self.lock();
        let app = st
            .applications
            .get_mut(uuid)
            .ok_or_else(|| no_record("sapi_applications", uuid))?;
        let mut raw = app.raw().clone();
        apply_changes(
            &mut raw,
            p,
            &["params", "metadata", "manifests", "metadata_schema"],
            action,
        );
        schema_check(&raw)?;
        // Only a truthy owner_uuid replaces the stored one.
        if let Some(owner) = p.get("owner_uuid").filter(|o| truthy(o)) {
            raw.insert("owner_uuid".into(), owner.clone());
        }
        app.edit(|r| *r = raw);
        Ok(app.clone())
    }

    pub fn sapi_delete_application(&self, uuid: &str) -> Result<(), ApiError> {
        match self.lock().applications.remove(uuid) {
            Some(_) => Ok(()),
            None => Err(ApiError::empty(404)),
        }
    }

    // ---- services ----

    pub fn sapi_create_service(&self, p: &JsonMap) -> Result<Stored<Service>, ApiError> {
        required(p, &["name", "application_uuid"])?;
        self.crash_checks(|| {
            let c = Check::new(SapiCall::CreateService, p);
            c.string("name")?;
            c.string("application_uuid")?;
            c.optional_objects(&["params", "metadata", "manifests"])?;
            c.key("uuid")?;
            // validType asserts a string only for a truthy application_uuid.
            if p.get("application_uuid").is_some_and(truthy)
                && p.get("type").is_some_and(|t| truthy(t) && !t.is_string())
            {
                c.string("type")?;
            }
            c.manifest_values()
        })?;
        let mut raw = pick(
            p,
            &[
                "uuid",
                "name",
                "application_uuid",
                "params",
                "metadata",
                "manifests",
                "master",
                "type",
            ],
        );
        let uuid = uuid_or_new(self, &mut raw);
        if !raw.get("type").is_some_and(truthy) {
            raw.insert("type".into(), json!(SapiType::Vm.as_str()));
        }
        let app_uuid = str_param(&raw, "application_uuid").unwrap_or_default();
        if !app_uuid.is_empty()
            && let Some(Value::String(t)) = raw.get("type")
            && SapiType::parse(t).is_none()
        {
            return Err(ApiError::uncoded(
                500,
                format!("service type is invalid: {t}"),
            ));
        }
        let mut st = self.lock();
        self.check_manifests(&st, raw.get("manifests"))?;
        if !st.applications.contains_key(&app_uuid) {
            return Err(ApiError::not_found(format!(
                "no such application: {app_uuid}"
            )));
        }
        let svc = Stored::<Service>::from_raw(raw);
        st.services.insert(uuid, svc.clone());
        Ok(svc)
    }

    /// `v2`: the request's Accept-Version allows 2.0.0; below it only
    /// `type=vm` services are listed.
    pub fn sapi_list_services(&self, p: &JsonMap, v2: bool) -> Vec<Stored<Service>> {
        let types = type_filter(p, v2);
        self.lock()
            .services
            .values()
            .filter(|s| {
                let raw = s.raw();
                filter_matches(p, "name", raw.get("name"))
                    && filter_matches(p, "application_uuid", raw.get("application_uuid"))
                    && filter_matches(&types, "type", raw.get("type"))
            })
            .cloned()
            .collect()
    }

    /// `GET /services` with `include_master` checked.
    pub fn sapi_list_services_checked(
        &self,
        p: &JsonMap,
        v2: bool,
    ) -> Result<Vec<Stored<Service>>, ApiError> {
        self.include_master(p)?;
        Ok(self.sapi_list_services(p, v2))
    }

    pub fn sapi_get_service(&self, uuid: &str) -> Result<Stored<Service>, ApiError> {
        self.lock()
            .services
            .get(uuid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no such service: {uuid}")))
    }

    pub fn sapi_update_service(
        &self,
        uuid: &str,
        p: &JsonMap,
    ) -> Result<Stored<Service>, ApiError> {
        self.crash_checks(|| Check::new(SapiCall::UpdateService, p).action())?;
        let action = parse_action(p)?;
        let mut st = self.lock();
        let svc = st
            .services
            .get_mut(uuid)
            .ok_or_else(|| no_record("sapi_services", uuid))?;
        let mut raw = svc.raw().clone();
        apply_changes(&mut raw, p, &["params", "metadata", "manifests"], action);
        schema_check(&raw)?;
        svc.edit(|r| *r = raw);
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
    /// for the provision job unless `async=true` (then the job uuid is
    /// returned too). A VM that already exists in VMAPI (in any state, even
    /// destroyed) is not provisioned again. A failed provision deletes the
    /// instance again (500 ProvisionFailedError).
    pub async fn sapi_create_instance(
        &self,
        p: &JsonMap,
    ) -> Result<(Stored<Instance>, Option<String>), ApiError> {
        required(p, &["service_uuid"])?;
        self.crash_checks(|| {
            let c = Check::new(SapiCall::CreateInstance, p);
            c.string("service_uuid")?;
            c.optional_string("uuid")?;
            c.optional_objects(&["params", "metadata", "manifests"])?;
            c.manifest_values()
        })?;
        let run_async = flag(p, "async");
        let svc_uuid = str_param(p, "service_uuid").unwrap_or_default();
        let mut raw = pick(
            p,
            &[
                "uuid",
                "service_uuid",
                "params",
                "metadata",
                "manifests",
                "master",
            ],
        );
        let uuid = uuid_or_new(self, &mut raw);
        let (inst, job) = {
            let mut st = self.lock();
            self.check_manifests(&st, raw.get("manifests"))?;
            let svc = st
                .services
                .get(&svc_uuid)
                .ok_or_else(|| ApiError::not_found(format!("no such service: {svc_uuid}")))?;
            if let Some(t) = svc.raw().get("type") {
                raw.insert("type".into(), t.clone());
            }
            let inst = Stored::<Instance>::from_raw(raw);
            st.instances.insert(uuid.clone(), inst.clone());
            let job = match self.sapi_provision_step(&mut st, &uuid) {
                Ok(VmStep::Job(job)) => Some(job),
                Ok(VmStep::Nothing) => None,
                Err(e) => {
                    st.instances.remove(&uuid);
                    return Err(e);
                }
            };
            (inst, job)
        };
        if let Some(job) = job {
            if run_async {
                return Ok((inst, Some(job)));
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
                self.lock().instances.remove(&uuid);
                let msg = done
                    .error_message()
                    .unwrap_or_else(|| "provision failed".into());
                return Err(ApiError::new(500, codes::PROVISION_FAILED, msg));
            }
        }
        Ok((inst, None))
    }

    /// `v2` as for [`Self::sapi_list_services`]; the type filter is dropped
    /// when `service_uuid` is given.
    pub fn sapi_list_instances(&self, p: &JsonMap, v2: bool) -> Vec<Stored<Instance>> {
        let by_service = p.get("service_uuid").is_some_and(truthy);
        let types = type_filter(p, v2);
        self.lock()
            .instances
            .values()
            .filter(|i| {
                let raw = i.raw();
                if by_service {
                    filter_matches(p, "service_uuid", raw.get("service_uuid"))
                } else {
                    filter_matches(&types, "type", raw.get("type"))
                }
            })
            .cloned()
            .collect()
    }

    /// `GET /instances` with `include_master` checked.
    pub fn sapi_list_instances_checked(
        &self,
        p: &JsonMap,
        v2: bool,
    ) -> Result<Vec<Stored<Instance>>, ApiError> {
        self.include_master(p)?;
        Ok(self.sapi_list_instances(p, v2))
    }

    pub fn sapi_get_instance(&self, uuid: &str) -> Result<Stored<Instance>, ApiError> {
        self.lock()
            .instances
            .get(uuid)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))
    }

    /// `GET /instances/:uuid/payload`: the CreateVm payload SAPI would send
    /// (`{}` for an agent instance).
    pub fn sapi_instance_payload(&self, uuid: &str) -> Result<JsonMap, ApiError> {
        zone_params(&self.lock(), uuid)
    }

    /// `PUT /instances/:uuid`: a metadata write, no VM effect.
    pub fn sapi_update_instance(
        &self,
        uuid: &str,
        p: &JsonMap,
    ) -> Result<Stored<Instance>, ApiError> {
        self.crash_checks(|| Check::new(SapiCall::UpdateInstance, p).action())?;
        let action = parse_action(p)?;
        let mut st = self.lock();
        let inst = st
            .instances
            .get_mut(uuid)
            .ok_or_else(|| no_record("sapi_instances", uuid))?;
        let mut raw = inst.raw().clone();
        apply_changes(&mut raw, p, &["params", "metadata", "manifests"], action);
        schema_check(&raw)?;
        inst.edit(|r| *r = raw);
        Ok(inst.clone())
    }

    /// `PUT /instances/:uuid/upgrade {image_uuid}`: run the teardown hook,
    /// reprovision the zone and wait. The instance object itself is not
    /// modified and is returned as it was before the call.
    pub async fn sapi_upgrade_instance(
        &self,
        uuid: &str,
        p: &JsonMap,
    ) -> Result<Stored<Instance>, ApiError> {
        if !p.get("image_uuid").is_some_and(truthy) {
            return Err(ApiError::new(
                409,
                codes::MISSING_PARAMETER,
                "missing image_uuid",
            ));
        }
        self.crash_checks(|| Check::new(SapiCall::UpgradeInstance, p).string("image_uuid"))?;
        let image = str_param(p, "image_uuid").unwrap_or_default();
        let (inst, vm_work) = {
            let st = self.lock();
            let inst = st
                .instances
                .get(uuid)
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))?;
            let vm_work = is_vm(&inst) && st.mode == SapiMode::Full;
            (inst, vm_work)
        };
        if vm_work {
            self.sapi_teardown_hook(uuid)?;
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

    /// `DELETE /instances/:uuid`: run the teardown hook, destroy the zone
    /// through VMAPI, wait, drop the object. VMAPI's error (e.g. 404 for a
    /// VM that is already gone) is passed through and the object is kept.
    pub async fn sapi_delete_instance(&self, uuid: &str) -> Result<(), ApiError> {
        let vm_work = {
            let st = self.lock();
            let inst = st
                .instances
                .get(uuid)
                .ok_or_else(|| ApiError::not_found(format!("no such instance: {uuid}")))?;
            is_vm(inst) && st.mode == SapiMode::Full
        };
        if vm_work {
            self.sapi_teardown_hook(uuid)?;
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
            master: flag(p, "master").then_some(true),
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
    // No zone for an agent: an empty payload.
    if !is_vm(inst) {
        return Ok(JsonMap::new());
    }
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

/// Whether an instance gets a zone: everything but `type: "agent"`.
pub(crate) fn is_vm(inst: &Stored<Instance>) -> bool {
    inst.raw().get("type").and_then(Value::as_str) != Some(SapiType::Agent.as_str())
}
