//! What happens in the datacenter, for the other simulated parts.
//!
//! A manatee sitter (or any in-zone daemon) subscribes with
//! [`Datacenter::subscribe`](super::Datacenter::subscribe) and follows its
//! zone: it stops on `Stopping`/`Reprovisioning`/`Destroyed` (and on
//! `Stopped`, which also covers a dead server), and (re)starts on `Started`,
//! `Provisioned` and `Reprovisioned`, reading the image and SAPI metadata the
//! zone now has from the event. Commands run in zones through CNAPI (e.g.
//! `svcadm disable manatee-sitter`) arrive as [`DcEvent::Exec`].

use serde::{Deserialize, Serialize};
use wire::apis::{JsonMap, Vm};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DcEvent {
    /// Boxed: a zone snapshot is much larger than the other variants.
    Vm(Box<VmEvent>),
    Exec(ExecEvent),
    Server(ServerEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmEventKind {
    /// The zone exists and is running for the first time.
    Provisioned,
    /// The zone is shutting down (stop, reboot, kill or destroy began).
    Stopping,
    /// The zone is down (also sent when its server died).
    Stopped,
    /// The zone is running again (start, reboot, or its server came back).
    Started,
    /// The zone halted to have its image replaced.
    Reprovisioning,
    /// The zone runs the new image; delegated data was kept.
    Reprovisioned,
    /// `update` changed alias, tags or metadata.
    Updated,
    /// The zone is gone.
    Destroyed,
}

/// Why a VM event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventCause {
    /// A workflow job (its uuid is in `job_uuid`).
    Job,
    /// The zone's server stopped heart-beating.
    ServerDown,
    /// The zone's server came back and the zone booted.
    ServerUp,
    /// Created by the scenario seeder.
    Seed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmEvent {
    pub kind: VmEventKind,
    pub cause: EventCause,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uuid: Option<String>,
    pub zone: ZoneInfo,
}

/// A zone as seen from inside: its VM record, its delegated data and the
/// SAPI instance it belongs to (with effective metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneInfo {
    pub vm: Vm,
    pub data: DataHandle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceInfo>,
}

/// Identity of a zone's persistent data. A reprovision keeps it when the
/// zone has a delegated dataset (same `id`, one more entry in `images`);
/// without one, the data is recreated (new `id`), as on a real CN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataHandle {
    pub id: String,
    /// `zones/<uuid>/data` when delegated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub created_at: String,
    /// Every image that has run on this data, oldest first.
    pub images: Vec<String>,
}

/// The SAPI instance behind a zone, with metadata and params merged
/// application <- service <- instance (what config-agent renders from).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub uuid: String,
    pub service_uuid: String,
    pub service_name: String,
    pub application_uuid: String,
    pub application_name: String,
    pub metadata: JsonMap,
    pub params: JsonMap,
}

/// One command run through CNAPI `POST /servers/:uuid/execute`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecEvent {
    pub server_uuid: String,
    /// The zone it ran in (`zlogin <zone>` / `svcadm -z <zone>`); `None` for
    /// the global zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svcadm: Option<SvcadmCommand>,
    pub exit_code: i32,
    pub time: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SvcAction {
    Enable,
    Disable,
    Restart,
    Refresh,
    Clear,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvcadmCommand {
    pub action: SvcAction,
    /// As given (`manatee-sitter`, `svc:/manatee/sitter:default`).
    pub fmri: String,
    /// `-t`: until next reboot only.
    pub temporary: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEvent {
    pub server_uuid: String,
    pub alive: bool,
}
