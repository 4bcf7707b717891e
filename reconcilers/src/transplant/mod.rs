//! The manatee v1 -> v2 "brain transplant" (`strategy: transplant`).
//!
//! A manatee v1 shard cannot be rolled onto v2: a v2 sitter that finds a
//! database in its dataset and no `/manatee/<shard>/state` never sets the
//! cluster up (manatee-state-machine `evalClusterState`: "We avoid starting
//! cluster setup if there was already a postgres database here"), so a
//! reprovisioned peer stays unassigned with postgres off. The runbook
//! (seeds/manatee-brain-transplant*, last revision 2015-04-09) moves the data
//! through one-node-write mode (ONWM) and a ZFS send/recv instead. This
//! module is that runbook as typed, journaled, idempotent steps:
//!
//! (1) moray prerequisite; (2) record the starting topology; (3) reduce to
//! ONWM; (4) backup snapshot; (5) the first v2 node (new instance on the
//! primary's server, or the async reprovisioned); (6) stop writes, migrate
//! snapshot, send; (7) **point of no return**: enable the v2 sitter, writes
//! back on; (8) leave ONWM with the old sync as the v2 sync; (9) the last v1
//! peer, release the backup.
//!
//! Where tritonctl differs from the runbook text, and why:
//! - Before enabling the v2 sitter it writes the ONWM cluster state naming
//!   the v2 node (what `manatee-adm state-backfill` + `set-onwm -m on`
//!   leave, frozen with our own reason). The runbook omits this, but the v2
//!   sitter's set-up guard above means the received v1 database would
//!   otherwise leave it unassigned forever.
//! - The backup is a ZFS snapshot kept on the primary's dataset until the
//!   operation ends (the rule), not a `zfs send` to a file in the
//!   global zone; the snapshot is crash-consistent, so the sitter is not
//!   stopped for it (no extra write outage at step 4).
//! - Morays come back right after the v2 primary is up (step 7), not after
//!   the sync is reprovisioned (the runbook's step 8): ONWM accepts writes,
//!   and the outage is then only steps 6-7.
//!
//! [`plan_transplant`] is pure. [`rollback_plan`] derives the runbook's
//! rollback from the forward journal; [`TransplantRunner`] executes either.
//!
//! Past the point of no return a rollback would discard writes, so nothing
//! happens silently there: a failure, a timeout or a blocked gate records a
//! [`PastPnrStop`] in the journal and [`drive`] does nothing more until a
//! person approves an option for that stop (`tritonctl approve
//! manateeversion/NAME --option resume`, an approval bound to the stop's
//! number). `resume` retries the failed step once. `reverse-transplant` and
//! `restore-backup` are described command by command
//! ([`reverse_transplant_plan`], [`restore_backup_plan`]) but not automated:
//! tritonctl refuses to approve them rather than pretend.

mod drive;
mod journal;
mod plan;
mod pnr;
mod rollback;
mod runner;
mod strategy;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::manatee::ClusterState;

use crate::manatee::ImageInfo;

pub use drive::drive;
pub use journal::{Outcome, TransplantJournal, TransplantStore, stop_message};
pub use plan::plan_transplant;
pub use pnr::{
    DECISIONS, PastPnrStop, after_pnr_message, decision_key, restore_backup_plan,
    reverse_transplant_plan,
};
pub use rollback::rollback_plan;
pub use runner::{TransplantAct, TransplantObserve, TransplantRunner};
pub use strategy::{Resolved, resolve_strategy};

/// Image versions from which sdc-manatee images carry manatee v2 (sdcadm's
/// `MIN_V2` gate, research/manatee.md §7.2), used when an image has no
/// `manatee_major` tag.
pub const MANATEE_V2_MIN_VERSION: &str = "20150109T184454Z";
/// Moray images from this version follow `/state` and fall back to
/// `/election` (sdcadm's `V2_TIMESTAMP`): forward/backward compatible.
pub const MORAY_COMPATIBLE_MIN_VERSION: &str = "20141204T233537Z";

/// The manatee major an image carries: its IMGAPI manifest's
/// `tags.manatee_major`, else sdcadm's version-timestamp rule.
pub fn manatee_major(image: &ImageInfo) -> Option<u32> {
    if let Some(m) = image.manatee_major {
        return Some(m);
    }
    let ts = image.version.rsplit('-').next().unwrap_or(&image.version);
    (ts.len() == 16 && ts.as_bytes()[8] == b'T')
        .then(|| if ts >= MANATEE_V2_MIN_VERSION { 2 } else { 1 })
}

/// A zone of the shard as the transplant sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ZoneObs {
    pub zone: String,
    pub alias: String,
    pub server: String,
    pub image: String,
    /// VMAPI state (`running`).
    pub vm_state: String,
    /// `svcs manatee-sitter` is online.
    pub sitter_enabled: bool,
    /// `svcs config-agent` is online.
    pub config_agent_enabled: bool,
    /// `oneNodeWriteMode` in the zone's sitter.json.
    pub sitter_onwm: bool,
    /// Its election node's sequence number, when its sitter is in ZooKeeper.
    pub election_seq: Option<u64>,
    /// SAPI instance metadata.
    pub metadata: BTreeMap<String, bool>,
    /// Snapshots of its manatee dataset (`zfs list -t snapshot`).
    pub snapshots: Vec<String>,
    /// Bytes used by its manatee dataset; None when it does not exist.
    pub dataset_bytes: Option<u64>,
    /// Postgres answers as a writable primary.
    pub writable: bool,
}

/// A moray zone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MorayObs {
    pub zone: String,
    pub server: String,
    pub image_version: String,
    /// `svcs *moray-202*` online.
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransplantObs {
    pub shard: String,
    pub state: Option<ClusterState>,
    pub zones: Vec<ZoneObs>,
    pub morays: Vec<MorayObs>,
}

impl TransplantObs {
    pub fn zone(&self, z: &str) -> Option<&ZoneObs> {
        self.zones.iter().find(|x| x.zone == z)
    }
    /// The v1 topology: sitters in the election ordered by sequence number
    /// (manatee v1's leader order, what `sdc-manatee-stat` printed).
    pub fn legacy_topology(&self) -> Vec<&ZoneObs> {
        let mut v: Vec<&ZoneObs> = self
            .zones
            .iter()
            .filter(|z| z.election_seq.is_some())
            .collect();
        v.sort_by_key(|z| z.election_seq);
        v
    }
}

/// The starting topology, recorded in the journal (the runbook's
/// `initial_manatee_stat.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub primary: String,
    pub sync: Option<String>,
    pub asyncs: Vec<String>,
    /// zone -> (server, image)
    pub zones: BTreeMap<String, (String, String)>,
    pub service_image: String,
}

/// One typed step of the transplant or of its rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TransplantAction {
    /// Step 1: every moray runs an image that follows `/state` and falls back to `/election`.
    CheckMoray,
    /// Step 1 (spec.transplant.morayImage): one moray at a time, never zero.
    UpgradeMoray { zone: String, image: String },
    /// Step 2: the topology as found (checked unchanged, then kept in the journal).
    RecordInitialState { topology: Topology },
    /// `svcadm disable manatee-sitter` in a zone (step 3 for async and sync, step 6 for the primary).
    DisableSitter { zone: String },
    /// `svcadm enable manatee-sitter`.
    EnableSitter { zone: String },
    /// Step 3: on the v1 primary: disable config-agent, set `oneNodeWriteMode`
    /// in sitter.json, restart the sitter; done when it is writable alone.
    PrimaryOnwm { zone: String },
    /// Step 4 / 6: `zfs snapshot zones/<zone>/data/manatee@<name>`.
    Snapshot { zone: String, name: String },
    /// Step 5: `sapiadm update $MANATEE_SVC params.image_uuid=...`.
    SetServiceImage { shard: String, image: String },
    /// Step 5 option 1: a new instance on the primary's server with
    /// `DISABLE_SITTER=true`, `ONE_NODE_WRITE_MODE=true`.
    CreateV2Instance {
        shard: String,
        server: String,
        alias: String,
    },
    /// Step 5 option 2: the async's metadata, then `sapiadm reprovision`.
    ReprovisionV2 { zone: String, image: String },
    /// Step 5: sitter disabled, the dataset destroyed, ready to `zfs recv`.
    PrepareReceive { zone: String },
    /// Step 6: disable every moray (no writes).
    StopWrites,
    /// Step 6: `zfs send <from>@<snapshot> | zfs recv` into `to`'s dataset, with progress.
    Send {
        from: String,
        snapshot: String,
        to: String,
    },
    /// Before step 7: the ONWM cluster state naming the v2 node.
    WriteOnwmState {
        shard: String,
        zone: String,
        reason: String,
    },
    /// Step 7 (point of no return): enable the v2 sitter; done when it is a writable primary.
    EnableV2 { zone: String },
    /// Step 7: enable every moray.
    StartWrites,
    /// Step 8/9: reprovision a v1 peer onto v2 in normal mode.
    ReprovisionPeer { zone: String, image: String },
    /// Step 8: clear ONWM/DISABLE_SITTER in SAPI, restart the v2 primary's sitter, lift our freeze.
    LeaveOnwm {
        shard: String,
        zone: String,
        reason: String,
    },
    /// Wait for this many healthy peers (primary writable, the rest replicating).
    WaitPeers { shard: String, count: usize },
    /// Step 9: destroy the backup snapshot.
    ReleaseSnapshot { zone: String, name: String },
    /// Option 1: the old v1 primary zone, empty of anything but the backup, goes.
    RetireZone { zone: String },
    /// Wait for `tritonctl approve` of this step.
    Approval { what: String },
    // --- rollback only ---
    /// Rollback: config-agent back on in the v1 primary, `oneNodeWriteMode: false`, sitter restarted.
    PrimaryLeaveOnwm { zone: String },
    /// Rollback: the async back on its old image with its metadata cleared.
    RevertAsync { zone: String, image: String },
    /// Rollback: delete the cluster state tritonctl wrote (no v2 sitter has run).
    DeleteState { shard: String, reason: String },
}

/// Names of the steps that are part of the point-of-no-return step.
pub const PNR_STEP: &str = "enable-v2-sitter";

/// Freeze reason of the ONWM state tritonctl writes for the v2 node.
pub fn onwm_reason(op_id: &str) -> String {
    format!("tritonctl {op_id}: transplant one-node-write mode")
}

pub(crate) fn short(z: &str) -> String {
    z.split('-').next().unwrap_or(z).to_string()
}
pub fn backup_name(op_id: &str) -> String {
    format!("tritonctl-{}-backup", short(op_id))
}
pub fn migrate_name(op_id: &str) -> String {
    format!("tritonctl-{}-migrate", short(op_id))
}
pub fn moray_compatible(version: &str) -> bool {
    let ts = version.rsplit('-').next().unwrap_or(version);
    ts >= MORAY_COMPATIBLE_MIN_VERSION
}
