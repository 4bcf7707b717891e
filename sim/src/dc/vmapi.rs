//! VMAPI: VMs and workflow jobs.

use serde_json::{Value, json};
use wire::apis::{
    FieldError, Job, JobExecution, JsonMap, Vm, VmJobResponse, VmNic, VmState, codes,
};

use super::error::ApiError;
use super::events::{DataHandle, EventCause, VmEventKind};
use super::ids::is_uuid;
use super::jobs::JobKind;
use super::params::{bool_param, flag, obj_param, scalar_string, str_param, uint_param};
use super::state::{SimVm, State};
use super::{Datacenter, now_iso};

pub const MAX_LIST_VMS_LIMIT: u64 = 1000;
const VALID_BRANDS: &[&str] = &["joyent-minimal", "joyent", "lx", "kvm", "bhyve", "sngl"];
const VALID_LIST_STATES: &[&str] = &["running", "stopped", "active", "destroyed"];
const VALID_ACTIONS: &[&str] = &[
    "start",
    "stop",
    "kill",
    "reboot",
    "reprovision",
    "update",
    "add_nics",
    "update_nics",
    "remove_nics",
    "create_snapshot",
    "rollback_snapshot",
    "delete_snapshot",
    "create_disk",
    "resize_disk",
    "delete_disk",
];
const ALIAS_RE_TEXT: &str = "/^[a-zA-Z0-9][a-zA-Z0-9\\_\\.\\-]*$/";
const RAM_RE_TEXT: &str = "/^0$|^([1-9][0-9]*$)/";

/// Parameters ListVms accepts; anything else is rejected (strict).
const LIST_PARAMS: &[&str] = &[
    "alias",
    "billing_id",
    "brand",
    "create_timestamp",
    "docker",
    "fields",
    "image_uuid",
    "limit",
    "marker",
    "offset",
    "owner_uuid",
    "package_name",
    "package_version",
    "predicate",
    "query",
    "ram",
    "server_uuid",
    "sort",
    "state",
    "uuid",
    "uuids",
];
/// Accepted by VMAPI but not simulated: refused loudly rather than ignored.
const UNSIMULATED_LIST_PARAMS: &[&str] = &["create_timestamp", "marker", "predicate", "query"];

const VM_FIELDS: &[&str] = &[
    "alias",
    "autoboot",
    "billing_id",
    "brand",
    "cpu_cap",
    "create_timestamp",
    "customer_metadata",
    "datasets",
    "destroyed",
    "docker",
    "firewall_enabled",
    "image_uuid",
    "internal_metadata",
    "last_modified",
    "max_physical_memory",
    "nics",
    "owner_uuid",
    "quota",
    "ram",
    "resolvers",
    "server_uuid",
    "snapshots",
    "state",
    "tags",
    "uuid",
    "zone_state",
    "role_tags",
    "sim_data",
];

fn valid_alias(a: &str) -> bool {
    let mut chars = a.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A VM as VMAPI renders it, plus the sim-only `sim_data` (the identity of
/// the zone's data, so callers can check a reprovision kept it).
pub fn render_vm(v: &SimVm) -> Value {
    let mut out = serde_json::to_value(&v.vm).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut out {
        o.insert(
            "sim_data".into(),
            serde_json::to_value(&v.data).unwrap_or(Value::Null),
        );
    }
    out
}

fn project(v: Value, fields: &Option<Vec<String>>) -> Value {
    let (Some(fields), Value::Object(o)) = (fields, &v) else {
        return v;
    };
    if fields.iter().any(|f| f == "*") {
        return v;
    }
    let mut out = JsonMap::new();
    for f in fields {
        if let Some(x) = o.get(f) {
            out.insert(f.clone(), x.clone());
        }
    }
    Value::Object(out)
}

fn parse_fields(p: &JsonMap) -> Result<Option<Vec<String>>, Box<FieldError>> {
    let Some(raw) = str_param(p, "fields") else {
        return Ok(None);
    };
    let list: Vec<String> = raw.split(',').map(str::to_string).collect();
    let ok = !raw.is_empty()
        && list
            .iter()
            .all(|f| f == "*" || VM_FIELDS.contains(&f.as_str()));
    if ok {
        Ok(Some(list))
    } else {
        Err(Box::new(FieldError::new(
            "fields",
            "Invalid",
            Some(format!("Invalid values: {raw}")),
        )))
    }
}

fn invalid(field: &str, msg: impl Into<String>) -> FieldError {
    FieldError::new(field, "Invalid", Some(msg.into()))
}

struct ListFilter {
    eq: Vec<(String, String)>,
    uuids: Option<Vec<String>>,
    brands: Option<Vec<String>>,
    states: Option<Vec<String>>,
    tags: Vec<(String, String)>,
    internal: Vec<(String, String)>,
    docker: Option<bool>,
    ram: Option<u64>,
}

impl ListFilter {
    fn matches(&self, vm: &Vm) -> bool {
        for (k, want) in &self.eq {
            let have = match k.as_str() {
                "uuid" => Some(vm.uuid.as_str()),
                "owner_uuid" => Some(vm.owner_uuid.as_str()),
                "server_uuid" => vm.server_uuid.as_deref(),
                "image_uuid" => vm.image_uuid.as_deref(),
                "billing_id" => vm.billing_id.as_deref(),
                "alias" => vm.alias.as_deref(),
                other => vm.extra.get(other).and_then(Value::as_str),
            };
            if have != Some(want.as_str()) {
                return false;
            }
        }
        if let Some(u) = &self.uuids
            && !u.contains(&vm.uuid)
        {
            return false;
        }
        if let Some(b) = &self.brands
            && !b.contains(&vm.brand)
        {
            return false;
        }
        if let Some(states) = &self.states {
            let ok = states.iter().any(|s| match s.as_str() {
                "active" => vm.state.is_active(),
                other => vm.state.as_str() == other,
            });
            if !ok {
                return false;
            }
        }
        for (k, want) in &self.tags {
            match vm.tags.get(k) {
                None => return false,
                Some(_) if want == "*" => {}
                Some(v) if scalar_string(v) == *want => {}
                Some(_) => return false,
            }
        }
        for (k, want) in &self.internal {
            match vm.internal_metadata.get(k) {
                Some(v) if scalar_string(v) == *want => {}
                _ => return false,
            }
        }
        if let Some(d) = self.docker {
            let is_docker = vm
                .extra
                .get("docker")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if is_docker != d {
                return false;
            }
        }
        if let Some(r) = self.ram
            && vm.max_physical_memory.or(vm.ram) != Some(r)
        {
            return false;
        }
        true
    }
}

fn sort_key(vm: &Vm, field: &str) -> String {
    match field {
        "alias" => vm.alias.clone().unwrap_or_default(),
        "state" => vm.state.as_str().to_string(),
        "create_timestamp" => vm.create_timestamp.clone().unwrap_or_default(),
        "server_uuid" => vm.server_uuid.clone().unwrap_or_default(),
        "image_uuid" => vm.image_uuid.clone().unwrap_or_default(),
        "owner_uuid" => vm.owner_uuid.clone(),
        "billing_id" => vm.billing_id.clone().unwrap_or_default(),
        "ram" | "max_physical_memory" => {
            format!("{:020}", vm.max_physical_memory.or(vm.ram).unwrap_or(0))
        }
        _ => vm.uuid.clone(),
    }
}

/// Parsed `CreateVm` parameters.
#[derive(Clone, Debug, Default)]
pub(crate) struct VmCreate {
    pub uuid: Option<String>,
    pub owner_uuid: String,
    pub server_uuid: Option<String>,
    pub image_uuid: String,
    pub brand: String,
    pub alias: Option<String>,
    pub tags: JsonMap,
    pub customer_metadata: JsonMap,
    pub internal_metadata: JsonMap,
    pub networks: Vec<Value>,
    pub ram: Option<u64>,
    pub quota: Option<u64>,
    pub cpu_cap: Option<u64>,
    pub delegate_dataset: bool,
    pub billing_id: Option<String>,
    pub resolvers: Vec<String>,
}

impl VmCreate {
    pub(crate) fn parse(p: &JsonMap) -> Result<VmCreate, ApiError> {
        let mut errs = Vec::new();
        let missing = |f: &str, errs: &mut Vec<FieldError>| {
            errs.push(FieldError::new(f, codes::MISSING_PARAMETER, None));
        };
        let owner = str_param(p, "owner_uuid");
        match &owner {
            None => missing("owner_uuid", &mut errs),
            Some(o) if !is_uuid(o) => errs.push(invalid("owner_uuid", "Invalid UUID")),
            _ => {}
        }
        let brand = str_param(p, "brand");
        match &brand {
            None => missing("brand", &mut errs),
            Some(b) if !VALID_BRANDS.contains(&b.as_str()) => errs.push(invalid(
                "brand",
                format!("Must be one of: {}", VALID_BRANDS.join(", ")),
            )),
            _ => {}
        }
        let image = str_param(p, "image_uuid");
        match &image {
            None => missing("image_uuid", &mut errs),
            Some(i) if !is_uuid(i) => errs.push(invalid("image_uuid", "Invalid UUID")),
            _ => {}
        }
        let networks: Vec<Value> = match p.get("networks") {
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            Some(Value::String(s)) if !s.is_empty() => s.split(',').map(|x| json!(x)).collect(),
            Some(_) => {
                errs.push(invalid("networks", "Invalid networks"));
                vec![]
            }
            None => {
                missing("networks", &mut errs);
                vec![]
            }
        };
        if let Some(u) = str_param(p, "uuid")
            && !is_uuid(&u)
        {
            errs.push(invalid("uuid", "Invalid UUID"));
        }
        if let Some(s) = str_param(p, "server_uuid")
            && !is_uuid(&s)
        {
            errs.push(invalid("server_uuid", "Invalid UUID"));
        }
        let alias = str_param(p, "alias");
        if let Some(a) = &alias
            && !valid_alias(a)
        {
            errs.push(invalid(
                "alias",
                format!("String does not match regexp: {ALIAS_RE_TEXT}"),
            ));
        }
        let ram = uint_param(p, "ram")
            .ok()
            .flatten()
            .or_else(|| uint_param(p, "max_physical_memory").ok().flatten());
        for key in ["tags", "customer_metadata", "internal_metadata"] {
            if let Some(m) = obj_param(p, key) {
                for (k, v) in &m {
                    if !(v.is_string() || v.is_number() || v.is_boolean()) {
                        errs.push(invalid(&format!("{key}.{k}"), "Forbidden Data Type"));
                    }
                }
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::vmapi_validation("Invalid VM parameters", errs));
        }
        Ok(VmCreate {
            uuid: str_param(p, "uuid"),
            owner_uuid: owner.unwrap_or_default(),
            server_uuid: str_param(p, "server_uuid"),
            image_uuid: image.unwrap_or_default(),
            brand: brand.unwrap_or_default(),
            alias,
            tags: obj_param(p, "tags").unwrap_or_default(),
            customer_metadata: obj_param(p, "customer_metadata").unwrap_or_default(),
            internal_metadata: obj_param(p, "internal_metadata").unwrap_or_default(),
            networks,
            ram,
            quota: uint_param(p, "quota").ok().flatten(),
            cpu_cap: uint_param(p, "cpu_cap").ok().flatten(),
            delegate_dataset: flag(p, "delegate_dataset"),
            billing_id: str_param(p, "billing_id"),
            resolvers: p
                .get("resolvers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

impl Datacenter {
    // ---- VMs ----

    /// `GET /vms`: the page and the total count for `x-joyent-resource-count`.
    pub fn vmapi_list_vms(&self, p: &JsonMap) -> Result<(Vec<Value>, usize), ApiError> {
        let mut errs = Vec::new();
        let mut filter = ListFilter {
            eq: vec![],
            uuids: None,
            brands: None,
            states: None,
            tags: vec![],
            internal: vec![],
            docker: None,
            ram: None,
        };
        for (k, v) in p {
            let sv = scalar_string(v);
            if let Some(tag) = k.strip_prefix("tag.") {
                filter.tags.push((tag.to_string(), sv));
                continue;
            }
            if let Some(key) = k.strip_prefix("internal_metadata.") {
                filter.internal.push((key.to_string(), sv));
                continue;
            }
            if !LIST_PARAMS.contains(&k.as_str()) {
                errs.push(invalid(k, "Invalid parameter"));
                continue;
            }
            if UNSIMULATED_LIST_PARAMS.contains(&k.as_str()) {
                errs.push(invalid(k, "Parameter not supported by this simulator"));
                continue;
            }
            match k.as_str() {
                "owner_uuid" | "server_uuid" | "uuid" | "image_uuid" | "billing_id" => {
                    if is_uuid(&sv) {
                        filter.eq.push((k.clone(), sv));
                    } else {
                        errs.push(invalid(k, "Invalid UUID"));
                    }
                }
                "uuids" => {
                    let list: Vec<String> = sv.split(',').map(str::to_string).collect();
                    if !sv.is_empty() && list.iter().all(|u| is_uuid(u)) {
                        filter.uuids = Some(list);
                    } else {
                        errs.push(invalid("uuids", format!("Invalid values: {sv}")));
                    }
                }
                "brand" => {
                    let list: Vec<String> = sv.split(',').map(str::to_string).collect();
                    if list.iter().all(|b| VALID_BRANDS.contains(&b.as_str())) {
                        filter.brands = Some(list);
                    } else {
                        errs.push(invalid(
                            "brand",
                            format!("Must be one of: {}", VALID_BRANDS.join(", ")),
                        ));
                    }
                }
                "state" => {
                    let list: Vec<String> = sv.split(',').map(str::to_string).collect();
                    if list.iter().all(|s| VALID_LIST_STATES.contains(&s.as_str())) {
                        filter.states = Some(list);
                    } else {
                        errs.push(invalid(
                            "state",
                            format!("Must be one of: {}", VALID_LIST_STATES.join(", ")),
                        ));
                    }
                }
                "alias" => {
                    if valid_alias(&sv) {
                        filter.eq.push(("alias".into(), sv));
                    } else {
                        errs.push(invalid(
                            "alias",
                            format!("String does not match regexp: {ALIAS_RE_TEXT}"),
                        ));
                    }
                }
                "ram" => match sv.parse::<u64>() {
                    Ok(r) if sv == "0" || !sv.starts_with('0') => filter.ram = Some(r),
                    _ => errs.push(invalid(
                        "ram",
                        format!("String does not match regexp: {RAM_RE_TEXT}"),
                    )),
                },
                "docker" => match bool_param(p, "docker") {
                    Ok(d) => filter.docker = d,
                    Err(_) => errs.push(invalid("docker", "Invalid parameter")),
                },
                "package_name" | "package_version" => filter.eq.push((k.clone(), sv)),
                "limit" => match uint_param(p, "limit") {
                    Ok(Some(n)) if (1..=MAX_LIST_VMS_LIMIT).contains(&n) => {}
                    _ => errs.push(invalid(
                        "limit",
                        format!(
                            "Not a valid number: number must be >= 1 and <= {MAX_LIST_VMS_LIMIT}"
                        ),
                    )),
                },
                "offset" if uint_param(p, "offset").is_err() => {
                    errs.push(invalid("offset", "Not a valid number: number must be >= 0"));
                }
                "sort" => {
                    let (field, dir) = sv.split_once('.').unwrap_or((sv.as_str(), "desc"));
                    let fields = [
                        "uuid",
                        "alias",
                        "state",
                        "create_timestamp",
                        "server_uuid",
                        "image_uuid",
                        "owner_uuid",
                        "billing_id",
                        "ram",
                        "max_physical_memory",
                    ];
                    let dir_ok = ["asc", "desc", "ASC", "DESC"].contains(&dir);
                    if !fields.contains(&field) || !dir_ok {
                        errs.push(invalid("sort", format!("Invalid sort param: {sv}")));
                    }
                }
                _ => {}
            }
        }
        let fields = match parse_fields(p) {
            Ok(f) => f,
            Err(e) => {
                errs.push(*e);
                None
            }
        };
        if !errs.is_empty() {
            return Err(ApiError::vmapi_validation("Invalid Parameters", errs));
        }

        let limit = uint_param(p, "limit")
            .ok()
            .flatten()
            .unwrap_or(MAX_LIST_VMS_LIMIT) as usize;
        let offset = uint_param(p, "offset").ok().flatten().unwrap_or(0) as usize;
        let (sort_field, desc) = match str_param(p, "sort") {
            Some(s) => {
                let (f, d) = s.split_once('.').unwrap_or((s.as_str(), "desc"));
                (f.to_string(), d.eq_ignore_ascii_case("desc"))
            }
            None => ("uuid".to_string(), true),
        };

        let st = self.lock();
        let mut hits: Vec<&SimVm> = st.vms.values().filter(|v| filter.matches(&v.vm)).collect();
        hits.sort_by(|a, b| {
            let o = sort_key(&a.vm, &sort_field)
                .cmp(&sort_key(&b.vm, &sort_field))
                .then_with(|| a.vm.uuid.cmp(&b.vm.uuid));
            if desc { o.reverse() } else { o }
        });
        let total = hits.len();
        let page = hits
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|v| project(render_vm(v), &fields))
            .collect();
        Ok((page, total))
    }

    /// `GET /vms/:uuid` (`owner_uuid`, `fields` and `sync` honoured).
    pub fn vmapi_get_vm(&self, uuid: &str, p: &JsonMap) -> Result<Value, ApiError> {
        if !is_uuid(uuid) {
            return Err(ApiError::vmapi_invalid("uuid", "Invalid UUID"));
        }
        let fields = parse_fields(p)
            .map_err(|e| ApiError::vmapi_validation("Invalid Parameters", vec![*e]))?;
        let st = self.lock();
        let v = st
            .vms
            .get(uuid)
            .ok_or_else(|| ApiError::not_found("VM not found"))?;
        if let Some(owner) = str_param(p, "owner_uuid") {
            if !is_uuid(&owner) {
                return Err(ApiError::vmapi_invalid("owner_uuid", "Invalid UUID"));
            }
            if owner != v.vm.owner_uuid {
                return Err(ApiError::not_found("VM not found"));
            }
        }
        Ok(project(render_vm(v), &fields))
    }

    /// `POST /vms`: validate, record a `provisioning` VM, start the job.
    pub fn vmapi_create_vm(&self, p: &JsonMap) -> Result<VmJobResponse, ApiError> {
        let req = VmCreate::parse(p)?;
        let mut st = self.lock();
        let (vm_uuid, job_uuid) = self.provision_locked(&mut st, req)?;
        Ok(VmJobResponse {
            vm_uuid,
            job_uuid,
            extra: JsonMap::new(),
        })
    }

    /// Record a provisioning VM and queue its provision job.
    pub(crate) fn provision_locked(
        &self,
        st: &mut State,
        req: VmCreate,
    ) -> Result<(String, String), ApiError> {
        let uuid = self.insert_vm(st, req, VmState::Provisioning)?;
        let server = st.vms[&uuid].vm.server_uuid.clone();
        let job = self.create_job(
            st,
            JobKind::Provision,
            Some(&uuid),
            server.as_deref(),
            JsonMap::new(),
        );
        Ok((uuid, job))
    }

    /// Validate against the model and record a VM in `state` (seeding
    /// records `running` zones directly, without a job).
    pub(crate) fn insert_vm(
        &self,
        st: &mut State,
        req: VmCreate,
        state: VmState,
    ) -> Result<String, ApiError> {
        let uuid = req.uuid.clone().unwrap_or_else(|| self.new_uuid());
        if st.vms.contains_key(&uuid) {
            return Err(ApiError::vmapi_validation(
                "Invalid VM parameters",
                vec![FieldError::new(
                    "uuid",
                    "Duplicate",
                    Some("Already exists".into()),
                )],
            ));
        }
        if let Some(s) = &req.server_uuid
            && !st.servers.contains_key(s)
        {
            return Err(ApiError::vmapi_invalid(
                "server_uuid",
                "Server does not exist",
            ));
        }
        if !st.images.contains_key(&req.image_uuid) {
            return Err(ApiError::vmapi_invalid(
                "image_uuid",
                "Image does not exist",
            ));
        }
        let nics = self.allocate_nics(st, &req.networks)?;
        let now = now_iso();
        let ram = req.ram.unwrap_or(1024);
        let vm = Vm {
            uuid: uuid.clone(),
            alias: req.alias,
            owner_uuid: req.owner_uuid,
            server_uuid: req.server_uuid,
            image_uuid: Some(req.image_uuid),
            brand: req.brand,
            state,
            zone_state: (state == VmState::Running).then(|| "running".to_string()),
            ram: Some(ram),
            max_physical_memory: Some(ram),
            quota: Some(req.quota.unwrap_or(25)),
            cpu_cap: req.cpu_cap,
            create_timestamp: Some(now.clone()),
            last_modified: Some(now.clone()),
            destroyed: None,
            billing_id: req.billing_id,
            autoboot: Some(true),
            firewall_enabled: Some(false),
            nics,
            tags: req.tags,
            customer_metadata: req.customer_metadata,
            internal_metadata: req.internal_metadata,
            resolvers: req.resolvers,
            snapshots: vec![],
            datasets: if req.delegate_dataset {
                vec![format!("zones/{uuid}/data")]
            } else {
                vec![]
            },
            extra: JsonMap::new(),
        };
        let data = DataHandle {
            id: self.new_uuid(),
            dataset: req.delegate_dataset.then(|| format!("zones/{uuid}/data")),
            created_at: now,
            images: if state == VmState::Running {
                vm.image_uuid.iter().cloned().collect()
            } else {
                vec![]
            },
        };
        st.vms.insert(
            uuid.clone(),
            SimVm {
                vm,
                data,
                smf: Default::default(),
                state_before_outage: None,
            },
        );
        Ok(uuid)
    }

    /// NICs for `networks` entries: `"name"`/`"uuid"` strings or objects
    /// with `uuid`/`ipv4_uuid`/`name`, `primary`, `ip`/`ipv4_ips`. The first
    /// NIC is primary unless one is marked (VMAPI's `validNetworks`).
    pub(crate) fn allocate_nics(
        &self,
        st: &mut State,
        networks: &[Value],
    ) -> Result<Vec<VmNic>, ApiError> {
        let mut nics = Vec::new();
        let mut any_primary = false;
        for (i, n) in networks.iter().enumerate() {
            let (key, primary, ip) = match n {
                Value::String(s) => (s.clone(), false, None),
                Value::Object(o) => {
                    let key = ["uuid", "ipv4_uuid", "name"]
                        .iter()
                        .find_map(|k| o.get(*k).and_then(Value::as_str))
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ApiError::vmapi_invalid(
                                "networks",
                                "Network object must specify a UUID or a name",
                            )
                        })?;
                    let primary = matches!(o.get("primary"), Some(Value::Bool(true)))
                        || o.get("primary").and_then(Value::as_str) == Some("true");
                    let ip = o
                        .get("ip")
                        .and_then(Value::as_str)
                        .or_else(|| {
                            o.get("ipv4_ips")
                                .and_then(Value::as_array)
                                .and_then(|a| a.first())
                                .and_then(Value::as_str)
                        })
                        .map(str::to_string);
                    (key, primary, ip)
                }
                _ => {
                    return Err(ApiError::vmapi_invalid(
                        "networks",
                        "Malformed networks object",
                    ));
                }
            };
            any_primary |= primary;
            st.mac_counter += 1;
            let mac_n = st.mac_counter;
            let net = st.network_by_name_or_uuid(&key).ok_or_else(|| {
                ApiError::vmapi_invalid("networks", &format!("unknown network: {key}"))
            })?;
            let ip = match ip {
                Some(ip) => ip,
                None => net.allocate_ip().ok_or_else(|| {
                    ApiError::new(
                        409,
                        "SubnetFull",
                        format!("network {} has no free addresses", net.name),
                    )
                })?,
            };
            nics.push(VmNic {
                interface: format!("net{i}"),
                mac: format!(
                    "90:b8:d0:{:02x}:{:02x}:{:02x}",
                    (mac_n >> 16) & 0xff,
                    (mac_n >> 8) & 0xff,
                    mac_n & 0xff
                ),
                nic_tag: net.nic_tag.clone(),
                ip,
                netmask: "255.255.255.0".into(),
                gateway: net.gateway.clone(),
                vlan_id: 0,
                primary,
                network_uuid: Some(net.uuid.clone()),
                extra: JsonMap::new(),
            });
        }
        if !any_primary && let Some(first) = nics.first_mut() {
            first.primary = true;
        }
        Ok(nics)
    }

    /// `POST /vms/:uuid?action=...` -> 202 `{vm_uuid, job_uuid}`. The HTTP
    /// layer waits for the job when `sync=true`.
    pub fn vmapi_vm_action(&self, uuid: &str, p: &JsonMap) -> Result<VmJobResponse, ApiError> {
        if !is_uuid(uuid) {
            return Err(ApiError::vmapi_invalid("uuid", "Invalid UUID"));
        }
        let mut st = self.lock();
        let (state, brand) = {
            let v = st
                .vms
                .get(uuid)
                .ok_or_else(|| ApiError::not_found("VM not found"))?;
            (v.vm.state, v.vm.brand.clone())
        };
        let action = str_param(p, "action").ok_or_else(|| ApiError::vmapi_missing("action"))?;
        if !VALID_ACTIONS.contains(&action.as_str()) {
            return Err(ApiError::vmapi_invalid("action", "Invalid parameter"));
        }
        if bool_param(p, "sync").is_err() {
            return Err(ApiError::vmapi_invalid("sync", "Invalid parameter"));
        }
        if state == VmState::Provisioning {
            return Err(ApiError::new(
                409,
                codes::UNALLOCATED_VM,
                format!("Cannot call {action} for a VM that has not been provisioned yet"),
            ));
        }
        let idempotent = || match bool_param(p, "idempotent") {
            Ok(v) => Ok(v.unwrap_or(false)),
            Err(_) => Err(ApiError::vmapi_invalid("idempotent", "Invalid parameter")),
        };
        let kind = match action.as_str() {
            "start" => JobKind::Start {
                idempotent: idempotent()?,
            },
            "stop" => JobKind::Stop {
                idempotent: idempotent()?,
            },
            "kill" => JobKind::Kill {
                idempotent: idempotent()?,
            },
            "reboot" => JobKind::Reboot {
                idempotent: idempotent()?,
            },
            "reprovision" => {
                if !["joyent", "joyent-minimal", "lx"].contains(&brand.as_str()) {
                    return Err(ApiError::new(
                        409,
                        codes::BRAND_NOT_SUPPORTED,
                        "VM 'brand' does not support reprovision",
                    ));
                }
                let image = str_param(p, "image_uuid")
                    .ok_or_else(|| ApiError::vmapi_missing("image_uuid"))?;
                if !is_uuid(&image) {
                    return Err(ApiError::vmapi_invalid("image_uuid", "Invalid UUID"));
                }
                JobKind::Reprovision { image_uuid: image }
            }
            "update" => JobKind::Update {
                changes: update_changes(p)?,
            },
            other => {
                return Err(ApiError::vmapi_invalid(
                    "action",
                    &format!("action {other} is not simulated"),
                ));
            }
        };
        let server = st.vms[uuid].vm.server_uuid.clone();
        let job = self.create_job(&mut st, kind, Some(uuid), server.as_deref(), JsonMap::new());
        Ok(VmJobResponse {
            vm_uuid: uuid.to_string(),
            job_uuid: job,
            extra: JsonMap::new(),
        })
    }

    /// `DELETE /vms/:uuid` -> 202 `{vm_uuid, job_uuid}`.
    pub fn vmapi_delete_vm(&self, uuid: &str, p: &JsonMap) -> Result<VmJobResponse, ApiError> {
        if !is_uuid(uuid) {
            return Err(ApiError::vmapi_invalid("uuid", "Invalid UUID"));
        }
        if bool_param(p, "sync").is_err() {
            return Err(ApiError::vmapi_invalid("sync", "Invalid parameter"));
        }
        let mut st = self.lock();
        let v = st
            .vms
            .get(uuid)
            .ok_or_else(|| ApiError::not_found("VM not found"))?;
        let Some(server) = v.vm.server_uuid.clone() else {
            return Err(ApiError::new(
                409,
                codes::CONFLICT,
                "Cannot delete a VM with no server_uuid",
            ));
        };
        let job = self.create_job(
            &mut st,
            JobKind::Destroy,
            Some(uuid),
            Some(&server),
            JsonMap::new(),
        );
        Ok(VmJobResponse {
            vm_uuid: uuid.to_string(),
            job_uuid: job,
            extra: JsonMap::new(),
        })
    }

    /// `GET /statuses?uuids=a,b` -> `{uuid: state}`; unknown uuids omitted.
    pub fn vmapi_statuses(&self, p: &JsonMap) -> Result<JsonMap, ApiError> {
        let raw = str_param(p, "uuids").ok_or_else(|| ApiError::vmapi_missing("uuids"))?;
        let st = self.lock();
        let mut out = JsonMap::new();
        for u in raw.split(',') {
            if let Some(v) = st.vms.get(u) {
                out.insert(u.to_string(), json!(v.vm.state.as_str()));
            }
        }
        Ok(out)
    }

    // ---- jobs ----

    pub fn vmapi_get_job(&self, uuid: &str) -> Result<Job, ApiError> {
        self.lock()
            .jobs
            .get(uuid)
            .map(|j| j.job.clone())
            .ok_or_else(|| ApiError::not_found("Job not found"))
    }

    /// Block until the job is succeeded, failed or canceled.
    pub async fn wait_job(&self, uuid: &str) -> Result<Job, ApiError> {
        let mut rx = {
            let st = self.lock();
            let j = st
                .jobs
                .get(uuid)
                .ok_or_else(|| ApiError::not_found("Job not found"))?;
            j.tx.subscribe()
        };
        loop {
            if rx.borrow_and_update().is_terminal() {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        self.vmapi_get_job(uuid)
    }

    /// `GET /jobs` and `GET /vms/:uuid/jobs`: newest first, filtered by
    /// `vm_uuid`, `execution`, `task`.
    pub fn vmapi_list_jobs(&self, p: &JsonMap, vm_uuid: Option<&str>) -> Vec<Job> {
        let vm = vm_uuid
            .map(str::to_string)
            .or_else(|| str_param(p, "vm_uuid"));
        let execution = str_param(p, "execution");
        let task = str_param(p, "task");
        let st = self.lock();
        let mut jobs: Vec<Job> = st
            .jobs
            .values()
            .map(|j| j.job.clone())
            .filter(|j| vm.as_deref().is_none_or(|v| j.vm_uuid() == Some(v)))
            .filter(|j| {
                execution
                    .as_deref()
                    .is_none_or(|e| j.execution.as_str() == e)
            })
            .filter(|j| task.as_deref().is_none_or(|t| j.task() == Some(t)))
            .collect();
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.uuid.cmp(&a.uuid)));
        jobs
    }

    /// Execution of a job, or `None` if unknown.
    pub fn job_execution(&self, uuid: &str) -> Option<JobExecution> {
        self.lock().jobs.get(uuid).map(|j| j.job.execution)
    }

    /// Mark a server dead (`true`) or alive. A dead server's status turns
    /// `unknown`, its zones' state `unknown` (VMAPI rewrites it so when the
    /// CN stops heart-beating) with `Stopped` events for those that ran;
    /// jobs touching it fail. Coming back, zones that ran boot again.
    pub fn set_server_dead(&self, server_uuid: &str, dead: bool) -> Result<(), ApiError> {
        let mut st = self.lock();
        let srv = st
            .servers
            .get_mut(server_uuid)
            .ok_or_else(|| ApiError::not_found(format!("Server {server_uuid} not found")))?;
        if srv.dead == dead {
            return Ok(());
        }
        srv.dead = dead;
        srv.server.status = if dead {
            wire::apis::ServerStatus::Unknown
        } else {
            srv.server.last_boot = Some(now_iso());
            wire::apis::ServerStatus::Running
        };
        let on_server: Vec<String> = st
            .vms
            .values()
            .filter(|v| {
                v.vm.server_uuid.as_deref() == Some(server_uuid) && v.vm.state != VmState::Destroyed
            })
            .map(|v| v.vm.uuid.clone())
            .collect();
        let mut events = Vec::new();
        for u in on_server {
            let v = st.vms.get_mut(&u).expect("listed above");
            if dead {
                let before = v.vm.state;
                v.state_before_outage = Some(before);
                v.vm.state = VmState::Unknown;
                if matches!(before, VmState::Running | VmState::Stopping) {
                    events.push((u, VmEventKind::Stopped, EventCause::ServerDown));
                }
            } else {
                let before = v.state_before_outage.take().unwrap_or(VmState::Stopped);
                // Transitional states do not survive a crash.
                let now_state = match before {
                    VmState::Running => VmState::Running,
                    VmState::Stopping => VmState::Stopped,
                    VmState::Provisioning => VmState::Failed,
                    other => other,
                };
                v.vm.state = now_state;
                v.vm.zone_state = Some(
                    match now_state {
                        VmState::Running => "running",
                        _ => "installed",
                    }
                    .into(),
                );
                v.vm.last_modified = Some(now_iso());
                if now_state == VmState::Running {
                    super::state::smf_after_boot(&mut v.smf);
                    events.push((u, VmEventKind::Started, EventCause::ServerUp));
                }
            }
        }
        for (u, kind, cause) in events {
            self.emit_vm(&mut st, &u, kind, cause, None);
        }
        let ev = super::DcEvent::Server(super::ServerEvent {
            server_uuid: server_uuid.to_string(),
            alive: !dead,
        });
        self.emit(&mut st, ev);
        Ok(())
    }
}

/// Parameters of `action=update`, validated like VMAPI does for the few
/// fields it matters for.
fn update_changes(p: &JsonMap) -> Result<JsonMap, ApiError> {
    const UPDATABLE: &[&str] = &[
        "alias",
        "ram",
        "max_physical_memory",
        "max_swap",
        "max_lwps",
        "quota",
        "cpu_cap",
        "zfs_io_priority",
        "billing_id",
        "new_owner_uuid",
        "tags",
        "customer_metadata",
        "internal_metadata",
        "resolvers",
        "limit_priv",
        "fs_allowed",
        "autoboot",
        "firewall_enabled",
    ];
    let mut changes = JsonMap::new();
    let mut errs = Vec::new();
    for key in UPDATABLE {
        let Some(v) = p.get(*key) else { continue };
        match *key {
            "alias" => match v.as_str() {
                Some(a) if valid_alias(a) => {}
                _ => errs.push(invalid(
                    "alias",
                    format!("String does not match regexp: {ALIAS_RE_TEXT}"),
                )),
            },
            "tags" | "customer_metadata" | "internal_metadata" => {
                let Some(m) = obj_param(p, key) else {
                    errs.push(invalid(key, "Invalid parameter"));
                    continue;
                };
                for (k, x) in &m {
                    if !(x.is_string() || x.is_number() || x.is_boolean()) {
                        errs.push(invalid(&format!("{key}.{k}"), "Forbidden Data Type"));
                    }
                }
                changes.insert(key.to_string(), Value::Object(m));
                continue;
            }
            "new_owner_uuid" if !v.as_str().is_some_and(is_uuid) => {
                errs.push(invalid("new_owner_uuid", "Invalid UUID"));
            }
            _ => {}
        }
        changes.insert(key.to_string(), v.clone());
    }
    if !errs.is_empty() {
        return Err(ApiError::vmapi_validation(
            "Invalid VM update parameters",
            errs,
        ));
    }
    Ok(changes)
}
