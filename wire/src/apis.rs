//! Records of the Triton HTTP APIs: SAPI, VMAPI, CNAPI, IMGAPI.
//!
//! Field names are exactly what the services send (mostly snake_case; CNAPI
//! sysinfo uses the platform's "Title Case With Spaces" keys). Every record
//! keeps fields it does not model in `extra`, so a client that reads an
//! object and writes it back never drops what a newer Triton added, and a
//! projected response (`?fields=`) still parses: most fields default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object, as SAPI `params`/`metadata` and VM `tags` are.
pub type JsonMap = Map<String, Value>;

fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------------------
// Errors (restify RestError)
// ---------------------------------------------------------------------------

/// The body of a restify error: `{"code", "message"}`, plus `errors` for
/// validation failures (VMAPI, CNAPI, IMGAPI). Plain `Error`s thrown inside a
/// SAPI handler come out with no `code` at all, hence the `Option`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl RestError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        RestError {
            code: Some(code.into()),
            message: message.into(),
            ..Default::default()
        }
    }

    /// An error with no `code`, as restify renders a plain JS `Error`.
    pub fn uncoded(message: impl Into<String>) -> Self {
        RestError {
            message: message.into(),
            ..Default::default()
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = Some(errors);
        self
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(c) => write!(f, "{c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// One entry of a validation error's `errors` array.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: Option<String>) -> Self {
        FieldError {
            field: field.into(),
            code: code.into(),
            message,
            extra: JsonMap::new(),
        }
    }
}

/// The status the simulator answers with [`codes::SIMULATOR_WOULD_CRASH`]:
/// no real service sends 599, so a client cannot mistake it for an answer.
pub const SIMULATOR_WOULD_CRASH_STATUS: u16 = 599;

/// The `code` strings the four services use.
pub mod codes {
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFound";
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    pub const INVALID_ARGUMENT: &str = "InvalidArgument";
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    pub const INVALID_VERSION: &str = "InvalidVersion";
    pub const INVALID_CONTENT: &str = "InvalidContent";
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailableError";
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    /// SAPI's (restify 4) code for a 405.
    pub const METHOD_NOT_ALLOWED_ERROR: &str = "MethodNotAllowedError";
    /// SAPI: an application's `metadata` fails its `metadata_schema` (409).
    pub const SCHEMA_VALIDATION: &str = "SchemaValidationError";
    /// Not a Triton code: the simulator's answer (status
    /// [`SIMULATOR_WOULD_CRASH_STATUS`]) to a request that makes the real
    /// SAPI process throw and drop the connection.
    pub const SIMULATOR_WOULD_CRASH: &str = "SimulatorWouldCrash";
    pub const CONFLICT: &str = "Conflict";
    pub const UNALLOCATED_VM: &str = "UnallocatedVMError";
    pub const BRAND_NOT_SUPPORTED: &str = "BrandNotSupported";
    pub const PROVISION_FAILED: &str = "ProvisionFailedError";
    pub const REPROVISION_FAILED: &str = "ReprovisionFailedError";
    pub const DESTROY_FAILED: &str = "DestroyFailedError";
    pub const TEARDOWN_HOOK: &str = "TeardownHookError";
    pub const IMAGE_UUID_ALREADY_EXISTS: &str = "ImageUuidAlreadyExists";
    pub const IMAGE_FILES_IMMUTABLE: &str = "ImageFilesImmutable";
    pub const IMAGE_ALREADY_ACTIVATED: &str = "ImageAlreadyActivated";
    pub const NO_ACTIVATION_NO_FILE: &str = "NoActivationNoFile";
    pub const UPLOAD: &str = "Upload";
}

// ---------------------------------------------------------------------------
// SAPI
// ---------------------------------------------------------------------------

/// SAPI service/instance `type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SapiType {
    #[default]
    Vm,
    Agent,
}

impl SapiType {
    pub fn as_str(self) -> &'static str {
        match self {
            SapiType::Vm => "vm",
            SapiType::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<SapiType> {
        match s {
            "vm" => Some(SapiType::Vm),
            "agent" => Some(SapiType::Agent),
            _ => None,
        }
    }
}

/// A SAPI application (`sdc`, `manta`). Returned as stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Application {
    pub uuid: String,
    pub name: String,
    pub owner_uuid: String,
    pub params: JsonMap,
    pub metadata: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_schema: Option<Value>,
    pub manifests: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A SAPI service. `type` is only sent with `Accept-Version` >= 2.0.0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    pub uuid: String,
    pub name: String,
    pub application_uuid: String,
    pub params: JsonMap,
    pub metadata: JsonMap,
    pub manifests: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<SapiType>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A SAPI instance. `job_uuid` only on `POST /instances?async=true`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub uuid: String,
    pub service_uuid: String,
    pub params: JsonMap,
    pub metadata: JsonMap,
    pub manifests: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_uuid: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<SapiType>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A SAPI (config-agent) manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub uuid: String,
    pub name: String,
    pub path: String,
    /// Usually a string; SAPI also accepts a JSON object.
    pub template: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_cmd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_cmd_linux: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// `GET /configs/:uuid`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SapiConfig {
    pub manifests: Vec<Manifest>,
    pub metadata: JsonMap,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// SAPI `GET /ping`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SapiPing {
    pub mode: String,
    #[serde(rename = "storType")]
    pub stor_type: String,
    #[serde(rename = "storAvailable")]
    pub stor_available: bool,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// `action` of SAPI's PUT endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateAction {
    #[default]
    Update,
    Replace,
    Delete,
}

/// Body of `PUT /applications|services|instances/:uuid`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SapiUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<UpdateAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_uuid: Option<String>,
}

// ---------------------------------------------------------------------------
// VMAPI
// ---------------------------------------------------------------------------

/// VM `state`. Values VMAPI may send that are not listed fall back to
/// `Unknown` (which is also a real state: the CN stopped heart-beating).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Running,
    Stopped,
    Stopping,
    Provisioning,
    Ready,
    Incomplete,
    Failed,
    Destroyed,
    Receiving,
    #[default]
    #[serde(other)]
    Unknown,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Stopped => "stopped",
            VmState::Stopping => "stopping",
            VmState::Provisioning => "provisioning",
            VmState::Ready => "ready",
            VmState::Incomplete => "incomplete",
            VmState::Failed => "failed",
            VmState::Destroyed => "destroyed",
            VmState::Receiving => "receiving",
            VmState::Unknown => "unknown",
        }
    }

    /// VMAPI's `state=active`: neither destroyed nor failed.
    pub fn is_active(self) -> bool {
        !matches!(self, VmState::Destroyed | VmState::Failed)
    }
}

/// A VM's NIC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmNic {
    pub interface: String,
    pub mac: String,
    pub nic_tag: String,
    pub ip: String,
    pub netmask: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub vlan_id: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub primary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_uuid: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A VMAPI VM object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Vm {
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub owner_uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_uuid: Option<String>,
    pub brand: String,
    pub state: VmState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_physical_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_cap: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// `null` until destroyed; VMAPI sends the key either way.
    pub destroyed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoboot: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall_enabled: Option<bool>,
    pub nics: Vec<VmNic>,
    pub tags: JsonMap,
    pub customer_metadata: JsonMap,
    pub internal_metadata: JsonMap,
    pub resolvers: Vec<String>,
    pub snapshots: Vec<Value>,
    pub datasets: Vec<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Vm {
    /// Admin IP: the first NIC whose tag is `admin` or `admin_rack_*`
    /// (triton-netconfig's rule, used by sdcadm).
    pub fn admin_ip(&self) -> Option<&str> {
        self.nics
            .iter()
            .find(|n| n.nic_tag == "admin" || n.nic_tag.starts_with("admin_rack_"))
            .map(|n| n.ip.as_str())
    }

    /// The IP of the NIC marked `primary` (manta-adm's "PRIMARY IP").
    pub fn primary_ip(&self) -> Option<&str> {
        self.nics.iter().find(|n| n.primary).map(|n| n.ip.as_str())
    }

    /// A tag's value when it is a string (`manta_role`, `smartdc_role`).
    pub fn tag_str(&self, key: &str) -> Option<&str> {
        self.tags.get(key).and_then(Value::as_str)
    }
}

/// `202 {"vm_uuid", "job_uuid"}` of VM actions, CreateVm and DeleteVm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmJobResponse {
    pub vm_uuid: String,
    pub job_uuid: String,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// `202 {"job_uuid"}` (CNAPI server setup).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobUuidResponse {
    pub job_uuid: String,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// node-workflow job `execution`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobExecution {
    #[default]
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Retried,
    Waiting,
    #[serde(other)]
    Unknown,
}

impl JobExecution {
    pub fn as_str(self) -> &'static str {
        match self {
            JobExecution::Queued => "queued",
            JobExecution::Running => "running",
            JobExecution::Succeeded => "succeeded",
            JobExecution::Failed => "failed",
            JobExecution::Canceled => "canceled",
            JobExecution::Retried => "retried",
            JobExecution::Waiting => "waiting",
            JobExecution::Unknown => "unknown",
        }
    }

    /// Where pollers stop (VMAPI's `pollJob`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobExecution::Succeeded | JobExecution::Failed | JobExecution::Canceled
        )
    }
}

/// One task result of a workflow job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainResult {
    pub name: String,
    pub result: String,
    /// `""` on success; a string or `{name, message}` on failure.
    pub error: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A workflow job as VMAPI `GET /jobs/:uuid` renders it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Job {
    pub uuid: String,
    pub name: String,
    pub execution: JobExecution,
    pub params: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    pub chain_results: Vec<ChainResult>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Job {
    /// The failure message, read the way SAPI reads it: the last chain
    /// result's `error.message`, or the error itself when it is a string.
    pub fn error_message(&self) -> Option<String> {
        let last = self.chain_results.iter().rev().find(|r| match &r.error {
            Value::String(s) => !s.is_empty(),
            Value::Null => false,
            _ => true,
        })?;
        match &last.error {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => Some(
                o.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
            ),
            other => Some(other.to_string()),
        }
    }

    pub fn task(&self) -> Option<&str> {
        self.params.get("task").and_then(Value::as_str)
    }

    pub fn vm_uuid(&self) -> Option<&str> {
        self.params.get("vm_uuid").and_then(Value::as_str)
    }
}

// ---------------------------------------------------------------------------
// CNAPI
// ---------------------------------------------------------------------------

/// CNAPI server `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    Running,
    Rebooting,
    #[default]
    #[serde(other)]
    Unknown,
}

/// An agent entry of `agents` (or sysinfo `SDC Agents`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerAgent {
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// One entry of sysinfo `Network Interfaces`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SysinfoNic {
    #[serde(rename = "MAC Address")]
    pub mac_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip4addr: Option<String>,
    #[serde(rename = "Link Status")]
    pub link_status: String,
    #[serde(rename = "NIC Names")]
    pub nic_names: Vec<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A server's sysinfo, keyed as the platform's `sysinfo` prints it. Only the
/// keys tooling reads are typed; the rest stay in `extra`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sysinfo {
    #[serde(rename = "UUID")]
    pub uuid: String,
    #[serde(rename = "Hostname")]
    pub hostname: String,
    #[serde(rename = "Datacenter Name", skip_serializing_if = "Option::is_none")]
    pub datacenter_name: Option<String>,
    /// `"true"`/`"false"` as a string on real platforms.
    #[serde(rename = "Setup", skip_serializing_if = "Option::is_none")]
    pub setup: Option<Value>,
    #[serde(rename = "Live Image", skip_serializing_if = "Option::is_none")]
    pub live_image: Option<String>,
    #[serde(rename = "Admin NIC Tag", skip_serializing_if = "Option::is_none")]
    pub admin_nic_tag: Option<String>,
    #[serde(rename = "Admin IP", skip_serializing_if = "Option::is_none")]
    pub admin_ip: Option<String>,
    #[serde(rename = "Network Interfaces")]
    pub network_interfaces: BTreeMap<String, SysinfoNic>,
    #[serde(rename = "SDC Agents", skip_serializing_if = "Option::is_none")]
    pub sdc_agents: Option<Vec<ServerAgent>>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Sysinfo {
    /// Admin IP per triton-netconfig: `Admin IP` when it is an IPv4 address,
    /// else `ip4addr` of the interface whose `NIC Names` has the admin tag.
    pub fn admin_ip(&self) -> Option<&str> {
        if let Some(ip) = self.admin_ip.as_deref()
            && ip.parse::<std::net::Ipv4Addr>().is_ok()
        {
            return Some(ip);
        }
        let tag = self.admin_nic_tag.as_deref().unwrap_or("admin");
        self.network_interfaces
            .values()
            .find(|n| n.nic_names.iter().any(|t| t == tag))
            .and_then(|n| n.ip4addr.as_deref())
    }
}

/// A CNAPI server record. `ServerList` without `extras` omits sysinfo, vms,
/// agents, memory/disk figures and last_heartbeat; `ServerGet` has them all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    pub uuid: String,
    pub hostname: String,
    pub datacenter: String,
    pub headnode: bool,
    pub setup: bool,
    pub setting_up: bool,
    pub reserved: bool,
    pub reservoir: bool,
    pub status: ServerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitional_status: Option<String>,
    pub ram: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_platform: Option<String>,
    pub boot_params: JsonMap,
    pub kernel_flags: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_console: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub traits: JsonMap,
    pub rack_identifier: String,
    pub comments: String,
    pub reservation_ratio: f64,
    pub overprovision_ratios: JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_boot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreserved_cpu: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreserved_ram: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreserved_disk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<ServerAgent>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysinfo: Option<Sysinfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vms: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_arc_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_provisionable_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_pool_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_zone_quota_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Server {
    /// Admin IP from sysinfo (see [`Sysinfo::admin_ip`]).
    pub fn admin_ip(&self) -> Option<&str> {
        self.sysinfo.as_ref().and_then(Sysinfo::admin_ip)
    }
}

/// Body of `POST /servers/:uuid/execute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecuteRequest {
    /// A whole script; CNAPI wants it to start with `#!`.
    pub script: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `true`: answer `{stdout, stderr, exitCode}` instead of bare stdout.
    #[serde(skip_serializing_if = "is_false")]
    pub json: bool,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `POST /servers/:uuid/execute` answer with `json: true`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecuteResult {
    pub stdout: String,
    pub stderr: String,
    #[serde(rename = "exitCode")]
    pub exit_code: i32,
}

// ---------------------------------------------------------------------------
// IMGAPI
// ---------------------------------------------------------------------------

/// Image `state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Active,
    #[default]
    Unactivated,
    Disabled,
    Creating,
    Failed,
    #[serde(other)]
    Unknown,
}

impl ImageState {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageState::Active => "active",
            ImageState::Unactivated => "unactivated",
            ImageState::Disabled => "disabled",
            ImageState::Creating => "creating",
            ImageState::Failed => "failed",
            ImageState::Unknown => "unknown",
        }
    }
}

/// One entry of a manifest's `files`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageFile {
    pub sha1: String,
    pub size: u64,
    pub compression: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_guid: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// An IMGAPI image manifest (v2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageManifest {
    pub v: u32,
    pub uuid: String,
    pub owner: String,
    pub name: String,
    pub version: String,
    pub state: ImageState,
    pub disabled: bool,
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub files: Vec<ImageFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirements: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl ImageManifest {
    /// The build stamp inside `version` (`…-<YYYYMMDDTHHMMSSZ>-g<sha>`: the
    /// second-to-last `-` field), as sdcadm's minimum-image check reads it.
    pub fn build_stamp(&self) -> Option<&str> {
        let parts: Vec<&str> = self.version.split('-').collect();
        if parts.len() < 3 {
            return None;
        }
        let stamp = parts[parts.len() - 2];
        let ok = stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && stamp[..8].bytes().all(|b| b.is_ascii_digit())
            && stamp[9..15].bytes().all(|b| b.is_ascii_digit());
        ok.then_some(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rest_error_without_code_stays_without_code() {
        let e: RestError = serde_json::from_value(json!({"message": "boom"})).unwrap();
        assert_eq!(e.code, None);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"message": "boom"})
        );
        let v = json!({"code": "ValidationFailed", "message": "Invalid Parameters",
                       "errors": [{"field": "foo", "code": "Invalid", "message": "Invalid parameter"}]});
        let e: RestError = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(e.errors.as_ref().unwrap()[0].field, "foo");
        assert_eq!(serde_json::to_value(&e).unwrap(), v);
    }

    #[test]
    fn service_type_and_unknown_fields_round_trip() {
        let v = json!({"uuid": "u", "name": "moray", "application_uuid": "a",
                       "params": {"ram": 256}, "metadata": {}, "manifests": {},
                       "type": "vm", "future_field": [1, 2]});
        let s: Service = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(s.kind, Some(SapiType::Vm));
        assert_eq!(s.extra["future_field"], json!([1, 2]));
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
    }

    #[test]
    fn vm_states_and_ips() {
        let vm: Vm = serde_json::from_value(json!({
            "uuid": "x", "state": "receiving", "owner_uuid": "o", "brand": "joyent-minimal",
            "nics": [{"interface": "net0", "nic_tag": "admin", "ip": "10.0.0.2"},
                     {"interface": "net1", "nic_tag": "manta", "ip": "172.27.0.2", "primary": true}],
            "tags": {"manta_role": "moray"}
        }))
        .unwrap();
        assert_eq!(vm.state, VmState::Receiving);
        assert_eq!(vm.admin_ip(), Some("10.0.0.2"));
        assert_eq!(vm.primary_ip(), Some("172.27.0.2"));
        assert_eq!(vm.tag_str("manta_role"), Some("moray"));
        let odd: Vm =
            serde_json::from_value(json!({"uuid": "y", "state": "shutting_down"})).unwrap();
        assert_eq!(odd.state, VmState::Unknown);
        // `destroyed` is always sent, as null while alive.
        assert_eq!(
            serde_json::to_value(&odd).unwrap()["destroyed"],
            Value::Null
        );
    }

    #[test]
    fn job_error_message_reads_last_failed_step() {
        let job: Job = serde_json::from_value(json!({
            "uuid": "j", "name": "provision-8.0.0", "execution": "failed",
            "params": {"task": "provision", "vm_uuid": "v"},
            "chain_results": [
                {"name": "a", "result": "ok", "error": ""},
                {"name": "b", "result": "", "error": {"name": "Error", "message": "no capacity"}}
            ]
        }))
        .unwrap();
        assert!(job.execution.is_terminal());
        assert_eq!(job.error_message().as_deref(), Some("no capacity"));
        assert_eq!(job.task(), Some("provision"));
        assert_eq!(job.vm_uuid(), Some("v"));
    }

    #[test]
    fn sysinfo_keys_and_admin_ip() {
        let s: Server = serde_json::from_value(json!({
            "uuid": "s", "hostname": "headnode", "status": "running",
            "sysinfo": {"UUID": "s", "Hostname": "headnode", "Setup": "true",
                "Network Interfaces": {"ixgbe0": {"MAC Address": "00:10:fe:9b:62:00",
                    "ip4addr": "10.99.99.7", "Link Status": "up", "NIC Names": ["admin"]}},
                "CPU Total Cores": 48}
        }))
        .unwrap();
        assert_eq!(s.status, ServerStatus::Running);
        assert_eq!(s.admin_ip(), Some("10.99.99.7"));
        let si = s.sysinfo.as_ref().unwrap();
        assert_eq!(si.extra["CPU Total Cores"], json!(48));
        let back = serde_json::to_value(si).unwrap();
        assert_eq!(
            back["Network Interfaces"]["ixgbe0"]["NIC Names"],
            json!(["admin"])
        );
    }

    #[test]
    fn image_manifest_build_stamp() {
        let m: ImageManifest = serde_json::from_value(json!({
            "v": 2, "uuid": "i", "name": "mantav2-moray",
            "version": "master-20240101T000000Z-g1234567", "state": "active",
            "type": "zone-dataset", "os": "smartos",
            "files": [{"sha1": "ab", "size": 3, "compression": "gzip"}]
        }))
        .unwrap();
        assert_eq!(m.build_stamp(), Some("20240101T000000Z"));
        assert_eq!(m.state, ImageState::Active);
        assert_eq!(m.files[0].size, 3);
        let plain = ImageManifest {
            version: "1.0.0".into(),
            ..Default::default()
        };
        assert_eq!(plain.build_stamp(), None);
    }

    #[test]
    fn execute_result_uses_exit_code_camel_case() {
        let r = ExecuteResult {
            stdout: "online".into(),
            stderr: String::new(),
            exit_code: 0,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"stdout": "online", "stderr": "", "exitCode": 0})
        );
    }
}
