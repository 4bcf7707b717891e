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

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use crds::manatee::{FirstV2Node, ManateeVersionSpec, Strategy};
use crds::status::{OperationPhase, OperationStatus, StepState};
use serde::{Deserialize, Serialize};
use wire::manatee::ClusterState;

use crate::clock::Clock;
use crate::error::{BlockReason, Refusal, RefusalReason, Unhealthy, WaitReason, WorldError};
use crate::manatee::ImageInfo;
use crate::operation::{
    Advance, EngineError, Gate, Journal, Operation, PlannedStep, Progress, StepRunner, advance,
};

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

/// Which strategy a ManateeVersion resolves to for a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolved {
    Rolling,
    Transplant,
}

/// Resolve `strategy` given the majors the shard's zones run and the target's.
/// `Err` is a preflight refusal.
pub fn resolve_strategy(
    strategy: Strategy,
    running: &[u32],
    target: Option<u32>,
    image: &str,
) -> Result<Resolved, Refusal> {
    let crosses = |t: u32| running.iter().any(|&r| r != t);
    match (strategy, target) {
        (_, Some(t)) if running.iter().any(|&r| r > t) => Err(Refusal::new(
            RefusalReason::MajorDowngrade,
            format!(
                "image {image} carries manatee v{t} but the shard runs v{}; going back a major is the reverse transplant, which tritonctl only plans on explicit approval",
                running.iter().max().unwrap_or(&0)
            ),
        )),
        (Strategy::Rolling, Some(t)) if crosses(t) => Err(Refusal::new(
            RefusalReason::MajorVersionChange,
            format!(
                "a rolling upgrade cannot cross manatee majors (v{} -> v{t}): a v2 sitter never sets up a cluster on a v1 database and the reprovisioned peer would stay unassigned; use `strategy: transplant` (or `auto`)",
                running.iter().min().unwrap_or(&0)
            ),
        )),
        (Strategy::Auto, Some(t)) if crosses(t) => Ok(Resolved::Transplant),
        (Strategy::Transplant, Some(t)) if !crosses(t) => Err(Refusal::new(
            RefusalReason::NoMajorChange,
            format!(
                "`strategy: transplant` moves a shard from manatee v1 to v2, but the shard already runs v{t}; use `rolling` or `auto`"
            ),
        )),
        (Strategy::Transplant, None) => Err(Refusal::new(
            RefusalReason::UnknownMajor,
            format!(
                "image {image} does not say which manatee major it carries (IMGAPI tags.manatee_major or an sdc-manatee version timestamp); tag it"
            ),
        )),
        (Strategy::Transplant, Some(_)) => Ok(Resolved::Transplant),
        _ => Ok(Resolved::Rolling),
    }
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

fn step(
    name: &str,
    description: String,
    touches: Vec<String>,
    action: TransplantAction,
) -> PlannedStep<TransplantAction> {
    PlannedStep {
        name: name.to_string(),
        description,
        touches,
        irreversible: false,
        action,
    }
}

/// Freeze reason of the ONWM state tritonctl writes for the v2 node.
pub fn onwm_reason(op_id: &str) -> String {
    format!("tritonctl {op_id}: transplant one-node-write mode")
}

/// Plan the transplant of one shard. Pure. `majors` maps image uuid -> major.
pub fn plan_transplant(
    spec: &ManateeVersionSpec,
    obs: &TransplantObs,
    majors: &BTreeMap<String, u32>,
    op_id: &str,
) -> Result<Operation<TransplantAction>, Refusal> {
    let refuse = |r: RefusalReason, m: String| Err(Refusal::new(r, m));
    let target = &spec.image.uuid;
    if obs.state.is_some() {
        return refuse(
            RefusalReason::ClusterStateExists,
            format!(
                "shard {} already has a v2 cluster state in ZooKeeper; the transplant starts from a v1 shard (use `rolling`)",
                obs.shard
            ),
        );
    }
    let topo = obs.legacy_topology();
    if topo.is_empty() {
        return refuse(
            RefusalReason::NoActivePeer,
            format!(
                "no manatee sitter of shard {} is in the election; nothing to transplant from",
                obs.shard
            ),
        );
    }
    let not_v1: Vec<&str> = obs
        .zones
        .iter()
        .filter(|z| majors.get(&z.image) != Some(&1))
        .map(|z| z.alias.as_str())
        .collect();
    if !not_v1.is_empty() {
        return refuse(
            RefusalReason::MixedMajors,
            format!(
                "zones {} of shard {} are not on a manatee v1 image; a half-done transplant needs a person",
                not_v1.join(", "),
                obs.shard
            ),
        );
    }
    if let Some(z) = obs.zones.iter().find(|z| z.election_seq.is_none()) {
        return refuse(
            RefusalReason::UnhealthyPeer,
            format!(
                "manatee zone {} ({}) is not in the election (sitter {}); fix it before the transplant",
                z.alias,
                z.zone,
                if z.sitter_enabled {
                    "online"
                } else {
                    "disabled"
                }
            ),
        );
    }
    let opts = spec
        .transplant
        .clone()
        .unwrap_or(crds::manatee::TransplantOptions {
            first_v2_node: FirstV2Node::default(),
            moray_image: None,
        });
    let primary = topo[0];
    let sync = topo.get(1).copied();
    let asyncs: Vec<&ZoneObs> = topo.iter().skip(2).copied().collect();
    let option = match (opts.first_v2_node, asyncs.last()) {
        (FirstV2Node::ReprovisionAsync, None) => {
            return refuse(
                RefusalReason::NoAsync,
                format!(
                    "firstV2Node: reprovisionAsync needs an async peer, and shard {} has {} peer(s); use newInstanceOnPrimaryServer",
                    obs.shard,
                    topo.len()
                ),
            );
        }
        (o, _) => o,
    };
    let service_image = obs
        .zones
        .first()
        .map(|z| z.image.clone())
        .unwrap_or_default();
    let topology = Topology {
        primary: primary.zone.clone(),
        sync: sync.map(|z| z.zone.clone()),
        asyncs: asyncs.iter().map(|z| z.zone.clone()).collect(),
        zones: obs
            .zones
            .iter()
            .map(|z| (z.zone.clone(), (z.server.clone(), z.image.clone())))
            .collect(),
        service_image,
    };
    let shard = obs.shard.clone();
    let mut steps = Vec::new();
    if spec.rollout.approval == crds::manatee::Approval::BeforeEachShard {
        steps.push(step(
            "approve-transplant",
            format!("wait for `tritonctl approve` before the transplant of shard {shard} starts"),
            vec![],
            TransplantAction::Approval {
                what: format!("the transplant of shard {shard}"),
            },
        ));
    }

    // 1. moray.
    let stale_morays: Vec<&MorayObs> = obs
        .morays
        .iter()
        .filter(|m| !moray_compatible(&m.image_version))
        .collect();
    if let (Some(img), false) = (&opts.moray_image, stale_morays.is_empty()) {
        for m in &stale_morays {
            steps.push(step(
                &format!("upgrade-moray-{}", short(&m.zone)),
                format!(
                    "disable moray {} and reprovision it onto {img}; the other morays keep serving",
                    m.zone
                ),
                vec![m.zone.clone()],
                TransplantAction::UpgradeMoray {
                    zone: m.zone.clone(),
                    image: img.clone(),
                },
            ));
        }
    }
    steps.push(step(
        "check-moray",
        format!(
            "check every moray runs an image from {MORAY_COMPATIBLE_MIN_VERSION} on (follows /state, falls back to /election)"
        ),
        vec![],
        TransplantAction::CheckMoray,
    ));
    // 2.
    steps.push(step(
        "record-initial-state",
        format!(
            "record the v1 topology in the journal: primary {}, sync {}, async {}",
            primary.alias,
            sync.map_or("-", |z| z.alias.as_str()),
            if asyncs.is_empty() {
                "-".to_string()
            } else {
                asyncs
                    .iter()
                    .map(|z| z.alias.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        ),
        vec![],
        TransplantAction::RecordInitialState {
            topology: topology.clone(),
        },
    ));
    // 3.
    for a in asyncs.iter().rev() {
        steps.push(step(
            &format!("disable-async-sitter-{}", short(&a.zone)),
            format!("svcadm disable manatee-sitter in async {}", a.alias),
            vec![a.alias.clone()],
            TransplantAction::DisableSitter {
                zone: a.zone.clone(),
            },
        ));
    }
    if let Some(s) = sync {
        steps.push(step(
            &format!("disable-sync-sitter-{}", short(&s.zone)),
            format!("svcadm disable manatee-sitter in sync {}", s.alias),
            vec![s.alias.clone()],
            TransplantAction::DisableSitter {
                zone: s.zone.clone(),
            },
        ));
    }
    steps.push(step(
        "primary-one-node-write-mode",
        format!(
            "on primary {}: disable config-agent, set oneNodeWriteMode in sitter.json, restart the sitter; wait until it takes writes alone",
            primary.alias
        ),
        vec![primary.alias.clone()],
        TransplantAction::PrimaryOnwm { zone: primary.zone.clone() },
    ));
    // 4.
    steps.push(step(
        "backup-snapshot",
        format!(
            "zfs snapshot of primary {}'s manatee dataset @{}, kept until the operation ends",
            primary.alias,
            backup_name(op_id)
        ),
        vec![primary.alias.clone()],
        TransplantAction::Snapshot {
            zone: primary.zone.clone(),
            name: backup_name(op_id),
        },
    ));
    // 5.
    steps.push(step(
        "set-service-image",
        format!("point the SAPI manatee service at {target}"),
        vec![],
        TransplantAction::SetServiceImage {
            shard: shard.clone(),
            image: target.clone(),
        },
    ));
    let v2_alias = format!("{}-v2", primary.alias);
    let v2_zone_key: String = match option {
        FirstV2Node::NewInstanceOnPrimaryServer => {
            steps.push(step(
                "create-v2-instance",
                format!(
                    "create {v2_alias} on the primary's server {} with DISABLE_SITTER and ONE_NODE_WRITE_MODE (local copy)",
                    primary.server
                ),
                vec![v2_alias.clone()],
                TransplantAction::CreateV2Instance {
                    shard: shard.clone(),
                    server: primary.server.clone(),
                    alias: v2_alias.clone(),
                },
            ));
            format!("alias:{v2_alias}")
        }
        FirstV2Node::ReprovisionAsync => {
            let a = asyncs.last().expect("checked");
            steps.push(step(
                &format!("reprovision-async-v2-{}", short(&a.zone)),
                format!(
                    "set DISABLE_SITTER and ONE_NODE_WRITE_MODE on async {} and reprovision it onto {target}",
                    a.alias
                ),
                vec![a.alias.clone()],
                TransplantAction::ReprovisionV2 { zone: a.zone.clone(), image: target.clone() },
            ));
            a.zone.clone()
        }
    };
    steps.push(step(
        "prepare-receive",
        "on the v2 node: check the sitter is disabled, destroy its manatee dataset, ready for zfs recv".into(),
        vec![v2_zone_key.clone()],
        TransplantAction::PrepareReceive { zone: v2_zone_key.clone() },
    ));
    if spec.rollout.approval != crds::manatee::Approval::Never {
        steps.push(step(
            "approve-write-outage",
            format!(
                "wait for `tritonctl approve` before stopping writes to shard {shard} (steps 6-7)"
            ),
            vec![],
            TransplantAction::Approval {
                what: format!("the write outage of shard {shard}"),
            },
        ));
    }
    // 6.
    steps.push(step(
        "stop-writes",
        "svcadm disable every moray: no writes from here to step 7".into(),
        obs.morays.iter().map(|m| m.zone.clone()).collect(),
        TransplantAction::StopWrites,
    ));
    steps.push(step(
        "disable-primary-sitter",
        format!(
            "svcadm disable manatee-sitter in v1 primary {}",
            primary.alias
        ),
        vec![primary.alias.clone()],
        TransplantAction::DisableSitter {
            zone: primary.zone.clone(),
        },
    ));
    steps.push(step(
        "migrate-snapshot",
        format!(
            "zfs snapshot @{} of the v1 primary's dataset",
            migrate_name(op_id)
        ),
        vec![primary.alias.clone()],
        TransplantAction::Snapshot {
            zone: primary.zone.clone(),
            name: migrate_name(op_id),
        },
    ));
    steps.push(step(
        "send-to-v2",
        format!(
            "zfs send {}@{} | zfs recv on the v2 node (progress in bytes)",
            primary.alias,
            migrate_name(op_id)
        ),
        vec![primary.alias.clone(), v2_zone_key.clone()],
        TransplantAction::Send {
            from: primary.zone.clone(),
            snapshot: migrate_name(op_id),
            to: v2_zone_key.clone(),
        },
    ));
    steps.push(step(
        "write-onwm-state",
        "write the one-node-write-mode cluster state naming the v2 node (state-backfill + set-onwm)".into(),
        vec![shard.clone()],
        TransplantAction::WriteOnwmState {
            shard: shard.clone(),
            zone: v2_zone_key.clone(),
            reason: onwm_reason(op_id),
        },
    ));
    // 7.
    let mut pnr = step(
        PNR_STEP,
        "POINT OF NO RETURN: svcadm enable manatee-sitter on the v2 node; wait until it is a writable primary".into(),
        vec![v2_zone_key.clone()],
        TransplantAction::EnableV2 { zone: v2_zone_key.clone() },
    );
    pnr.irreversible = true;
    steps.push(pnr);
    steps.push(step(
        "start-writes",
        "svcadm enable every moray; writes go to the v2 primary".into(),
        obs.morays.iter().map(|m| m.zone.clone()).collect(),
        TransplantAction::StartWrites,
    ));
    // 8.
    if let Some(s) = sync {
        steps.push(step(
            &format!("reprovision-sync-{}", short(&s.zone)),
            format!("reprovision v1 sync {} onto {target}", s.alias),
            vec![s.alias.clone()],
            TransplantAction::ReprovisionPeer {
                zone: s.zone.clone(),
                image: target.clone(),
            },
        ));
        steps.push(step(
            "leave-one-node-write-mode",
            "clear ONE_NODE_WRITE_MODE and DISABLE_SITTER in SAPI, restart the v2 primary's sitter, lift our freeze".into(),
            vec![v2_zone_key.clone()],
            TransplantAction::LeaveOnwm {
                shard: shard.clone(),
                zone: v2_zone_key.clone(),
                reason: onwm_reason(op_id),
            },
        ));
        steps.push(step(
            "wait-two-peers",
            format!("wait for a healthy two-peer v2 shard {shard}"),
            vec![],
            TransplantAction::WaitPeers {
                shard: shard.clone(),
                count: 2,
            },
        ));
    }
    // 9.
    let mut last: Vec<&ZoneObs> = Vec::new();
    match option {
        FirstV2Node::NewInstanceOnPrimaryServer => last.extend(asyncs.iter().copied()),
        FirstV2Node::ReprovisionAsync => {
            last.extend(asyncs.iter().take(asyncs.len() - 1).copied());
            last.push(primary);
        }
    }
    for z in &last {
        steps.push(step(
            &format!("reprovision-last-{}", short(&z.zone)),
            format!("reprovision v1 peer {} onto {target}", z.alias),
            vec![z.alias.clone()],
            TransplantAction::ReprovisionPeer {
                zone: z.zone.clone(),
                image: target.clone(),
            },
        ));
    }
    let want = topo.len();
    if want > 2 {
        steps.push(step(
            "wait-all-peers",
            format!("wait for {want} healthy v2 peers"),
            vec![],
            TransplantAction::WaitPeers {
                shard: shard.clone(),
                count: want,
            },
        ));
    }
    steps.push(step(
        "release-backup",
        format!("destroy the backup snapshot @{}", backup_name(op_id)),
        vec![primary.alias.clone()],
        TransplantAction::ReleaseSnapshot {
            zone: primary.zone.clone(),
            name: backup_name(op_id),
        },
    ));
    if option == FirstV2Node::NewInstanceOnPrimaryServer {
        steps.push(step(
            "retire-v1-primary",
            format!(
                "delete the old v1 primary zone {} (its data lives on in {v2_alias})",
                primary.alias
            ),
            vec![primary.alias.clone()],
            TransplantAction::RetireZone {
                zone: primary.zone.clone(),
            },
        ));
    }
    let mut op = Operation::new(op_id, "manatee-transplant", &shard, steps);
    op.status.message = Some(format!(
        "strategy transplant (v1 -> v{}), first v2 node: {option:?}",
        majors.get(target).copied().unwrap_or(2)
    ));
    Ok(op)
}

fn short(z: &str) -> String {
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

/// The runbook's rollback, for whatever the forward operation did (steps
/// that started). `None` once the point of no return has started: then only
/// an approved reverse transplant or backup restore can go back.
pub fn rollback_plan(forward: &Operation<TransplantAction>) -> Option<Operation<TransplantAction>> {
    if !forward.status.can_roll_back() {
        return None;
    }
    let started = |pred: &dyn Fn(&TransplantAction) -> bool| {
        forward
            .status
            .steps
            .iter()
            .zip(&forward.actions)
            .any(|(s, a)| s.state != StepState::Pending && pred(a))
    };
    let topo = forward.actions.iter().find_map(|a| match a {
        TransplantAction::RecordInitialState { topology } => Some(topology.clone()),
        _ => None,
    })?;
    let shard = forward.status.target.clone();
    let op_id = &forward.status.id;
    let mut steps = Vec::new();
    if started(&|a| matches!(a, TransplantAction::WriteOnwmState { .. })) {
        steps.push(step(
            "rollback-delete-state",
            "delete the cluster state tritonctl wrote for the v2 node (its sitter never ran)"
                .into(),
            vec![shard.clone()],
            TransplantAction::DeleteState {
                shard: shard.clone(),
                reason: onwm_reason(op_id),
            },
        ));
    }
    let p = topo.primary.clone();
    if started(&|a| {
        matches!(a, TransplantAction::PrimaryOnwm { .. })
            || matches!(a, TransplantAction::DisableSitter { zone } if *zone == p)
    }) {
        steps.push(step(
            "rollback-primary",
            "v1 primary: svcadm enable config-agent, wait for oneNodeWriteMode: false in sitter.json, restart (enable) the sitter".into(),
            vec![p.clone()],
            TransplantAction::PrimaryLeaveOnwm { zone: p.clone() },
        ));
    }
    if let Some(s) = &topo.sync
        && started(&|a| matches!(a, TransplantAction::DisableSitter { zone } if zone == s))
    {
        steps.push(step(
            "rollback-enable-sync",
            "svcadm enable manatee-sitter in the v1 sync".into(),
            vec![s.clone()],
            TransplantAction::EnableSitter { zone: s.clone() },
        ));
    }
    if started(&|a| matches!(a, TransplantAction::StopWrites)) {
        steps.push(step(
            "rollback-start-writes",
            "svcadm enable every moray".into(),
            vec![],
            TransplantAction::StartWrites,
        ));
    }
    for (i, a) in topo.asyncs.iter().enumerate().rev() {
        let reprovisioned =
            started(&|x| matches!(x, TransplantAction::ReprovisionV2 { zone, .. } if zone == a));
        if reprovisioned {
            let image = topo.zones.get(a).map(|z| z.1.clone()).unwrap_or_default();
            steps.push(step(
                &format!("rollback-revert-async-{i}"),
                format!("sapiadm reprovision async {a} back onto {image} with DISABLE_SITTER/ONE_NODE_WRITE_MODE cleared (it rebuilds from its upstream)"),
                vec![a.clone()],
                TransplantAction::RevertAsync { zone: a.clone(), image },
            ));
        } else if started(&|x| matches!(x, TransplantAction::DisableSitter { zone } if zone == a)) {
            steps.push(step(
                &format!("rollback-enable-async-{i}"),
                format!("svcadm enable manatee-sitter in async {a}"),
                vec![a.clone()],
                TransplantAction::EnableSitter { zone: a.clone() },
            ));
        }
    }
    let created = forward.actions.iter().find_map(|a| match a {
        TransplantAction::CreateV2Instance { alias, .. } => Some(format!("alias:{alias}")),
        _ => None,
    });
    if let Some(key) = created
        && started(&|a| matches!(a, TransplantAction::CreateV2Instance { .. }))
    {
        steps.push(step(
            "rollback-delete-v2-instance",
            "delete the v2 instance created for the transplant".into(),
            vec![key.clone()],
            TransplantAction::RetireZone { zone: key },
        ));
    }
    if started(&|a| matches!(a, TransplantAction::SetServiceImage { .. })) {
        steps.push(step(
            "rollback-service-image",
            format!(
                "point the SAPI manatee service back at {}",
                topo.service_image
            ),
            vec![],
            TransplantAction::SetServiceImage {
                shard: shard.clone(),
                image: topo.service_image.clone(),
            },
        ));
    }
    let n = topo.zones.len();
    steps.push(step(
        "rollback-wait-v1",
        format!(
            "wait until the {n} v1 peers are back in the election and the primary takes writes"
        ),
        vec![],
        TransplantAction::WaitPeers {
            shard: shard.clone(),
            count: n,
        },
    ));
    for name in [migrate_name(op_id), backup_name(op_id)] {
        if started(&|a| matches!(a, TransplantAction::Snapshot { name: x, .. } if *x == name)) {
            steps.push(step(
                &format!(
                    "rollback-release-{}",
                    if name.ends_with("backup") {
                        "backup"
                    } else {
                        "migrate"
                    }
                ),
                format!("destroy snapshot @{name}"),
                vec![p.clone()],
                TransplantAction::ReleaseSnapshot {
                    zone: p.clone(),
                    name,
                },
            ));
        }
    }
    Some(Operation::new(
        &format!("{op_id}-rollback"),
        "manatee-transplant-rollback",
        &shard,
        steps,
    ))
}

/// The options a person chooses from once the transplant stops past its
/// point of no return (`tritonctl approve ... --option <one>`).
pub const DECISIONS: [&str; 3] = ["resume", "reverse-transplant", "restore-backup"];

/// The approval a person gives to answer stop number `seq` with `option`:
/// bound to that stop, so an approval never carries over to a later one.
pub fn decision_key(seq: u32, option: &str) -> String {
    format!("after-pnr-{seq}-{option}")
}

/// A stop past the point of no return, waiting for a person's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PastPnrStop {
    /// 1 for the operation's first such stop, 2 for the next, ...
    pub seq: u32,
    /// The forward step that failed, timed out or was blocked.
    pub step: usize,
    pub name: String,
    /// What went wrong.
    pub cause: String,
    pub at: String,
}

fn topology_of(forward: &Operation<TransplantAction>) -> Option<Topology> {
    forward.actions.iter().find_map(|a| match a {
        TransplantAction::RecordInitialState { topology } => Some(topology.clone()),
        _ => None,
    })
}

fn step_started(
    forward: &Operation<TransplantAction>,
    pred: &dyn Fn(&TransplantAction) -> bool,
) -> bool {
    forward
        .status
        .steps
        .iter()
        .zip(&forward.actions)
        .any(|(s, a)| s.state != StepState::Pending && pred(a))
}

/// The v2 node's key (`alias:<alias>` for a new instance, else the zone).
fn v2_node(forward: &Operation<TransplantAction>) -> String {
    forward
        .actions
        .iter()
        .find_map(|a| match a {
            TransplantAction::EnableV2 { zone } => Some(zone.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

/// Why the backup can no longer be restored, if it cannot.
fn backup_gone(forward: &Operation<TransplantAction>, topo: &Topology) -> Option<String> {
    let p = topo.primary.clone();
    if step_started(
        forward,
        &|a| matches!(a, TransplantAction::ReleaseSnapshot { name, .. } if name.ends_with("-backup")),
    ) {
        return Some("the backup snapshot was already released (step 9)".into());
    }
    if step_started(
        forward,
        &|a| matches!(a, TransplantAction::ReprovisionPeer { zone, .. } if *zone == p),
    ) {
        return Some(format!(
            "the v1 primary {p} holding the backup was already reprovisioned onto v2 (step 9)"
        ));
    }
    None
}

/// What `restore-backup` would run, command by command. tritonctl does not
/// run it (not automated yet): a person does, knowing it discards writes.
pub fn restore_backup_plan(forward: &Operation<TransplantAction>) -> String {
    let id = &forward.status.id;
    let Some(t) = topology_of(forward) else {
        return "restore-backup: impossible, the starting topology was never recorded".into();
    };
    if let Some(why) = backup_gone(forward, &t) {
        return format!("restore-backup: impossible, {why}");
    }
    let p = &t.primary;
    let taken = forward
        .status
        .steps
        .iter()
        .zip(&forward.actions)
        .find(|(_, a)| matches!(a, TransplantAction::Snapshot { name, .. } if name.ends_with("-backup")))
        .and_then(|(s, _)| s.finished_at.clone())
        .unwrap_or_else(|| "?".into());
    let others: Vec<&str> = t.sync.iter().chain(&t.asyncs).map(String::as_str).collect();
    format!(
        "restore-backup (DISCARDS every write acknowledged since the backup snapshot @{b} taken at {taken}; \
count them before deciding: rows on the v2 primary {v2} that are not in @{b}): \
1. svcadm disable '*moray-202*' in every moray zone (writes stop); \
2. svcadm disable manatee-sitter in the v2 node {v2} and in every peer already on v2; \
3. delete /manatee/{shard}/state in ZooKeeper (v1 keeps no state); \
4. on {p}'s server: zfs rollback -r zones/{p}/data/manatee@{b}; \
5. in {p}: svcadm enable config-agent (sitter.json oneNodeWriteMode back to false), svcadm enable manatee-sitter; \
6. sapiadm update the manatee service params.image_uuid={img}; reprovision {others} onto {img} with their datasets destroyed so they rebuild from {p}; delete the v2 instance if tritonctl created it; \
7. svcadm enable '*moray-202*'",
        b = backup_name(id),
        v2 = v2_node(forward),
        shard = forward.status.target,
        img = t.service_image,
        others = if others.is_empty() {
            "-".to_string()
        } else {
            others.join(", ")
        },
    )
}

/// What `reverse-transplant` would run. Not automated yet either.
pub fn reverse_transplant_plan(forward: &Operation<TransplantAction>) -> String {
    let id = &forward.status.id;
    let Some(t) = topology_of(forward) else {
        return "reverse-transplant: impossible, the starting topology was never recorded".into();
    };
    let p = &t.primary;
    let v2 = v2_node(forward);
    if step_started(
        forward,
        &|a| matches!(a, TransplantAction::ReprovisionPeer { zone, .. } if zone == p),
    ) {
        return format!(
            "reverse-transplant: every v1 peer is gone ({p} was reprovisioned onto v2); a v1 zone must be provisioned first"
        );
    }
    format!(
        "reverse-transplant (keeps every write): 1. svcadm disable '*moray-202*' (writes stop); \
2. svcadm disable manatee-sitter in {v2}; zfs snapshot zones/{v2}/data/manatee@tritonctl-{s}-reverse; \
3. zfs destroy -r zones/{p}/data/manatee; zfs send ...{v2}@tritonctl-{s}-reverse | zfs recv zones/{p}/data/manatee; \
4. in {p}: config-agent disabled, oneNodeWriteMode true in sitter.json; delete /manatee/{shard}/state; svcadm enable manatee-sitter; \
5. svcadm enable '*moray-202*'; 6. the runbook's rollback from one-node-write mode: re-enable the v1 sync and asyncs with emptied datasets so they rebuild from {p}, then leave one-node-write mode",
        s = short(id),
        shard = forward.status.target,
    )
}

/// What a person must decide once the point of no return has passed and
/// something stops the transplant: the situation and every way on or back.
pub fn after_pnr_message(forward: &Operation<TransplantAction>, what: &str) -> String {
    let id = &forward.status.id;
    format!(
        "{what}. The transplant {id} is past its point of no return: the v2 primary may have accepted writes the v1 peers do not have, so tritonctl neither retries nor rolls back by itself; it waits for a person to choose one option, explicitly, with `tritonctl approve manateeversion/<name> --option <option>`. Options: \
(1) resume: fix the cause first; the failed step is retried once and the transplant goes forward (keeps every write); \
(2) {}. Not automated: tritonctl refuses to approve it; a person runs it by hand; \
(3) {}. Not automated: tritonctl refuses to approve it; a person runs it by hand",
        reverse_transplant_plan(forward),
        restore_backup_plan(forward),
    )
}

/// What the transplant (and a review) observes. Nothing here changes the
/// datacenter.
#[async_trait]
pub trait TransplantObserve: Send + Sync {
    async fn observe(&self, shard: &str) -> Result<TransplantObs, WorldError>;
    /// Resolve `alias:<alias>` keys to zone uuids (None while it does not exist).
    async fn resolve(&self, shard: &str, key: &str) -> Result<Option<String>, WorldError>;
    async fn approved(&self, op_id: &str, step: &str) -> Result<bool, WorldError>;
}

/// What the transplant changes.
#[async_trait]
pub trait TransplantAct: TransplantObserve {
    async fn svcadm(&self, zone: &str, enable: bool, fmri: &str) -> Result<(), WorldError>;
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError>;
    /// Edit `oneNodeWriteMode` in the zone's sitter.json (config-agent disabled).
    async fn set_sitter_onwm(&self, zone: &str, on: bool) -> Result<(), WorldError>;
    /// SAPI instance metadata: set a boolean, or delete the key with None.
    async fn set_metadata(
        &self,
        zone: &str,
        key: &str,
        value: Option<bool>,
    ) -> Result<(), WorldError>;
    async fn set_service_image(&self, shard: &str, image: &str) -> Result<(), WorldError>;
    async fn reprovision(&self, zone: &str, image: &str) -> Result<(), WorldError>;
    async fn create_instance(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
        metadata: &[(&str, bool)],
    ) -> Result<(), WorldError>;
    async fn delete_instance(&self, zone: &str) -> Result<(), WorldError>;
    async fn snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError>;
    async fn destroy_snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError>;
    async fn destroy_dataset(&self, zone: &str) -> Result<(), WorldError>;
    async fn send(&self, from: &str, snapshot: &str, to: &str) -> Result<(), WorldError>;
    async fn set_moray(&self, zone: &str, enable: bool) -> Result<(), WorldError>;
    async fn create_onwm_state(
        &self,
        shard: &str,
        zone: &str,
        reason: &str,
    ) -> Result<(), WorldError>;
    /// Delete the state only if it is frozen with exactly `reason`.
    async fn delete_own_state(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
    async fn unfreeze_own(&self, shard: &str, reason: &str) -> Result<(), WorldError>;
}

/// Runs [`TransplantAction`]s for one shard.
pub struct TransplantRunner<'a, W: TransplantAct + ?Sized> {
    pub world: &'a W,
    pub shard: String,
    pub step_timeout: Duration,
    /// A send may take this long (JPC: 30+ minutes over the admin network).
    pub send_timeout: Duration,
    pub clock: &'a dyn Clock,
}

impl<W: TransplantAct + ?Sized> TransplantRunner<'_, W> {
    async fn zone(&self, key: &str) -> Result<Option<String>, WorldError> {
        if key.starts_with("alias:") {
            self.world.resolve(&self.shard, key).await
        } else {
            Ok(Some(key.to_string()))
        }
    }
    async fn need_zone(&self, key: &str) -> Result<String, WorldError> {
        self.zone(key)
            .await?
            .ok_or_else(|| WorldError::Missing(format!("{key} does not exist yet")))
    }

    /// Healthy v2 peers: the state's primary writable, the others in the state.
    fn v2_peers_ok(obs: &TransplantObs, count: usize) -> Result<(), Unhealthy> {
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| Unhealthy("no cluster state".into()))?;
        let p = obs
            .zone(&st.primary.zone_id)
            .ok_or_else(|| Unhealthy("primary zone unknown".into()))?;
        if !p.writable {
            return Err(Unhealthy(format!("primary {} not writable yet", p.alias)));
        }
        let placed = 1 + usize::from(st.sync.is_some()) + st.asyncs.len();
        if placed < count {
            return Err(Unhealthy(format!("{placed} of {count} peers placed")));
        }
        if !st.deposed.is_empty() {
            return Err(Unhealthy(format!("deposed peer {}", st.deposed[0].zone_id)));
        }
        Ok(())
    }

    /// v1 shard whole: `count` sitters in the election, the first takes writes.
    fn v1_peers_ok(obs: &TransplantObs, count: usize) -> Result<(), Unhealthy> {
        let t = obs.legacy_topology();
        if t.len() < count {
            return Err(Unhealthy(format!(
                "{} of {count} v1 peers in the election",
                t.len()
            )));
        }
        if !t[0].writable {
            return Err(Unhealthy(format!(
                "v1 primary {} not writable yet",
                t[0].alias
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl<W: TransplantAct + ?Sized> StepRunner<TransplantAction> for TransplantRunner<'_, W> {
    async fn precondition(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &TransplantAction,
    ) -> Result<Gate, WorldError> {
        use TransplantAction as T;
        let obs = self.world.observe(&self.shard).await?;
        Ok(match action {
            T::Approval { .. } => {
                let name = &op.steps[step].name;
                if self.world.approved(&op.id, name).await? {
                    Gate::Open
                } else {
                    Gate::wait(
                        WaitReason::Approval,
                        format!(
                            "awaiting approval: run `tritonctl approve` for operation {} step {name}",
                            op.id
                        ),
                    )
                }
            }
            T::RecordInitialState { topology } => {
                let now = obs.legacy_topology();
                let same = now.first().map(|z| &z.zone) == Some(&topology.primary)
                    && now.get(1).map(|z| &z.zone) == topology.sync.as_ref();
                if same || obs.zone(&topology.primary).is_some_and(|z| z.sitter_onwm) {
                    Gate::Open
                } else {
                    Gate::block(
                        BlockReason::Replan,
                        format!(
                            "the v1 topology changed since planning (planned primary {}, now {})",
                            topology.primary,
                            now.first().map_or("none", |z| z.zone.as_str())
                        ),
                    )
                }
            }
            T::UpgradeMoray { zone, .. } => {
                let others = obs
                    .morays
                    .iter()
                    .filter(|m| &m.zone != zone && m.enabled)
                    .count();
                if others == 0 {
                    Gate::wait(
                        WaitReason::Moray,
                        format!(
                            "never zero morays: waiting for another moray to be online before disabling {zone}"
                        ),
                    )
                } else {
                    Gate::Open
                }
            }
            _ => Gate::Open,
        })
    }

    async fn act(
        &self,
        op: &OperationStatus,
        _step: usize,
        action: &TransplantAction,
    ) -> Result<(), WorldError> {
        use TransplantAction as T;
        let obs = self.world.observe(&self.shard).await?;
        let w = self.world;
        match action {
            T::CheckMoray
            | T::RecordInitialState { .. }
            | T::Approval { .. }
            | T::WaitPeers { .. } => {}
            T::UpgradeMoray { zone, image } => {
                if let Some(m) = obs.morays.iter().find(|m| &m.zone == zone)
                    && !moray_compatible(&m.image_version)
                {
                    w.set_moray(zone, false).await?;
                    w.reprovision(zone, image).await?;
                }
            }
            T::DisableSitter { zone } => {
                if obs.zone(zone).is_some_and(|z| z.sitter_enabled) {
                    w.svcadm(zone, false, "manatee-sitter").await?;
                }
            }
            T::EnableSitter { zone } => {
                if obs.zone(zone).is_some_and(|z| !z.sitter_enabled) {
                    w.svcadm(zone, true, "manatee-sitter").await?;
                }
            }
            T::PrimaryOnwm { zone } => {
                let z = obs
                    .zone(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} gone")))?;
                if !z.sitter_onwm {
                    if z.config_agent_enabled {
                        w.svcadm(zone, false, "config-agent").await?;
                    }
                    w.set_sitter_onwm(zone, true).await?;
                    w.restart_sitter(zone).await?;
                }
            }
            T::PrimaryLeaveOnwm { zone } => {
                let z = obs
                    .zone(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} gone")))?;
                if !z.config_agent_enabled {
                    w.svcadm(zone, true, "config-agent").await?;
                }
                let z = self.world.observe(&self.shard).await?;
                let z = z
                    .zone(zone)
                    .ok_or_else(|| WorldError::Missing("zone gone".into()))?;
                if z.sitter_onwm {
                    return Err(WorldError::Unexpected(format!(
                        "config-agent did not rewrite sitter.json of {zone} (oneNodeWriteMode still true)"
                    )));
                }
                if !z.sitter_enabled {
                    w.svcadm(zone, true, "manatee-sitter").await?;
                } else if !z.writable || z.election_seq.is_none() {
                    w.restart_sitter(zone).await?;
                } else {
                    // Running with the ONWM config it started with: restart to pick up the change.
                    w.restart_sitter(zone).await?;
                }
            }
            T::Snapshot { zone, name } => {
                if obs.zone(zone).is_some_and(|z| !z.snapshots.contains(name)) {
                    w.snapshot(zone, name).await?;
                }
            }
            T::ReleaseSnapshot { zone, name } => {
                if obs.zone(zone).is_some_and(|z| z.snapshots.contains(name)) {
                    w.destroy_snapshot(zone, name).await?;
                }
            }
            T::SetServiceImage { shard, image } => w.set_service_image(shard, image).await?,
            T::CreateV2Instance {
                shard,
                server,
                alias,
            } => {
                if self.zone(&format!("alias:{alias}")).await?.is_none() {
                    w.create_instance(
                        shard,
                        server,
                        alias,
                        &[("DISABLE_SITTER", true), ("ONE_NODE_WRITE_MODE", true)],
                    )
                    .await?;
                }
            }
            T::ReprovisionV2 { zone, image } => {
                let z = obs
                    .zone(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} gone")))?;
                if &z.image != image {
                    w.set_metadata(zone, "DISABLE_SITTER", Some(true)).await?;
                    w.set_metadata(zone, "ONE_NODE_WRITE_MODE", Some(true))
                        .await?;
                    w.reprovision(zone, image).await?;
                }
            }
            T::RevertAsync { zone, image } => {
                let z = obs
                    .zone(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} gone")))?;
                if z.metadata.contains_key("DISABLE_SITTER") {
                    w.set_metadata(zone, "DISABLE_SITTER", None).await?;
                }
                if z.metadata.contains_key("ONE_NODE_WRITE_MODE") {
                    w.set_metadata(zone, "ONE_NODE_WRITE_MODE", None).await?;
                }
                if &z.image != image {
                    w.reprovision(zone, image).await?;
                } else if !z.sitter_enabled {
                    w.svcadm(zone, true, "manatee-sitter").await?;
                }
            }
            T::PrepareReceive { zone } => {
                let zone = self.need_zone(zone).await?;
                let obs = w.observe(&self.shard).await?;
                let z = obs
                    .zone(&zone)
                    .ok_or_else(|| WorldError::Missing("zone not observed".into()))?;
                if z.sitter_enabled {
                    return Err(WorldError::Unexpected(format!(
                        "the sitter of v2 node {} is online; it must be disabled (DISABLE_SITTER) before its dataset is replaced",
                        z.alias
                    )));
                }
                if z.dataset_bytes.is_some_and(|b| b > 0) {
                    w.destroy_dataset(&zone).await?;
                }
            }
            T::StopWrites => {
                for m in obs.morays.iter().filter(|m| m.enabled) {
                    w.set_moray(&m.zone, false).await?;
                }
            }
            T::StartWrites => {
                for m in obs.morays.iter().filter(|m| !m.enabled) {
                    w.set_moray(&m.zone, true).await?;
                }
            }
            T::Send { from, snapshot, to } => {
                let to = self.need_zone(to).await?;
                let obs = w.observe(&self.shard).await?;
                let z = obs
                    .zone(&to)
                    .ok_or_else(|| WorldError::Missing("receiver not observed".into()))?;
                // Started already when the receiving dataset exists (bytes
                // arriving, or done with the snapshot); a failed receive leaves none.
                if z.dataset_bytes.is_none() && !z.snapshots.contains(snapshot) {
                    w.send(from, snapshot, &to).await?;
                }
            }
            T::WriteOnwmState {
                shard,
                zone,
                reason,
            } => {
                if obs.state.is_none() {
                    let zone = self.need_zone(zone).await?;
                    w.create_onwm_state(shard, &zone, reason).await?;
                }
            }
            T::DeleteState { shard, reason } => {
                if obs.state.is_some() {
                    w.delete_own_state(shard, reason).await?;
                }
            }
            T::EnableV2 { zone } => {
                let zone = self.need_zone(zone).await?;
                let obs = w.observe(&self.shard).await?;
                if obs.zone(&zone).is_some_and(|z| !z.sitter_enabled) {
                    w.svcadm(&zone, true, "manatee-sitter").await?;
                }
            }
            T::ReprovisionPeer { zone, image } => {
                let z = obs
                    .zone(zone)
                    .ok_or_else(|| WorldError::Missing(format!("zone {zone} gone")))?;
                if &z.image != image {
                    for k in ["DISABLE_SITTER", "ONE_NODE_WRITE_MODE"] {
                        if z.metadata.contains_key(k) {
                            w.set_metadata(zone, k, None).await?;
                        }
                    }
                    w.reprovision(zone, image).await?;
                }
            }
            T::LeaveOnwm {
                shard,
                zone,
                reason,
            } => {
                let zone = self.need_zone(zone).await?;
                let obs = w.observe(&self.shard).await?;
                let z = obs
                    .zone(&zone)
                    .ok_or_else(|| WorldError::Missing("v2 primary not observed".into()))?;
                let st = obs
                    .state
                    .as_ref()
                    .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
                if st.is_one_node_write_mode() {
                    for k in ["ONE_NODE_WRITE_MODE", "DISABLE_SITTER"] {
                        if z.metadata.contains_key(k) {
                            w.set_metadata(&zone, k, None).await?;
                        }
                    }
                    // The sitter reads its config only at start: stop it,
                    // lift our freeze, start it (manatee user guide, ONWM -> HA).
                    if z.sitter_enabled {
                        w.svcadm(&zone, false, "manatee-sitter").await?;
                    }
                    if st.freeze.reason() == Some(reason.as_str()) {
                        w.unfreeze_own(shard, reason).await?;
                    }
                    w.svcadm(&zone, true, "manatee-sitter").await?;
                }
            }
            T::RetireZone { zone } => {
                if let Some(zone) = self.zone(zone).await?
                    && obs.zone(&zone).is_some()
                {
                    w.delete_instance(&zone).await?;
                }
            }
        }
        let _ = op;
        Ok(())
    }

    async fn check(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &TransplantAction,
    ) -> Result<Progress, WorldError> {
        use TransplantAction as T;
        let obs = self.world.observe(&self.shard).await?;
        let nf = |s: String| Ok(Progress::NotYet(s));
        match action {
            T::CheckMoray => {
                let bad: Vec<String> = obs
                    .morays
                    .iter()
                    .filter(|m| !moray_compatible(&m.image_version))
                    .map(|m| format!("{} ({})", m.zone, m.image_version))
                    .collect();
                if bad.is_empty() {
                    Ok(Progress::Done)
                } else {
                    Err(WorldError::Unexpected(format!(
                        "moray zones {} run images older than {MORAY_COMPATIBLE_MIN_VERSION}; set spec.transplant.morayImage to upgrade them first",
                        bad.join(", ")
                    )))
                }
            }
            T::UpgradeMoray { zone, .. } => match obs.morays.iter().find(|m| &m.zone == zone) {
                Some(m) if moray_compatible(&m.image_version) && m.enabled => Ok(Progress::Done),
                Some(m) if moray_compatible(&m.image_version) => {
                    self.world.set_moray(zone, true).await?;
                    nf(format!("moray {zone} reprovisioned, enabling"))
                }
                _ => nf(format!("moray {zone} reprovisioning")),
            },
            T::RecordInitialState { .. } | T::Approval { .. } => Ok(Progress::Done),
            T::DisableSitter { zone } => match obs.zone(zone) {
                Some(z) if !z.sitter_enabled && z.election_seq.is_none() => Ok(Progress::Done),
                Some(z) => nf(format!(
                    "{}: sitter enabled {}, in election {}",
                    z.alias,
                    z.sitter_enabled,
                    z.election_seq.is_some()
                )),
                None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
            },
            T::EnableSitter { zone } => match obs.zone(zone) {
                Some(z) if z.sitter_enabled && z.election_seq.is_some() => Ok(Progress::Done),
                Some(z) => nf(format!(
                    "{}: sitter enabled {}, not in the election yet",
                    z.alias, z.sitter_enabled
                )),
                None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
            },
            T::PrimaryOnwm { zone } => match obs.zone(zone) {
                Some(z) if z.sitter_onwm && z.sitter_enabled && z.writable => Ok(Progress::Done),
                Some(z) => nf(format!(
                    "{}: oneNodeWriteMode {}, sitter {}, writable {}",
                    z.alias, z.sitter_onwm, z.sitter_enabled, z.writable
                )),
                None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
            },
            T::PrimaryLeaveOnwm { zone } => match obs.zone(zone) {
                Some(z)
                    if !z.sitter_onwm
                        && z.sitter_enabled
                        && z.config_agent_enabled
                        && z.election_seq.is_some() =>
                {
                    Ok(Progress::Done)
                }
                Some(z) => nf(format!(
                    "{}: oneNodeWriteMode {}, sitter {}",
                    z.alias, z.sitter_onwm, z.sitter_enabled
                )),
                None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
            },
            T::Snapshot { zone, name } => match obs.zone(zone) {
                Some(z) if z.snapshots.contains(name) => Ok(Progress::Done),
                _ => nf(format!("snapshot @{name} not listed yet")),
            },
            T::ReleaseSnapshot { zone, name } => match obs.zone(zone) {
                Some(z) if z.snapshots.contains(name) => {
                    nf(format!("snapshot @{name} still listed"))
                }
                _ => Ok(Progress::Done),
            },
            T::SetServiceImage { .. } => Ok(Progress::Done),
            T::CreateV2Instance { alias, .. } => {
                match self.zone(&format!("alias:{alias}")).await? {
                    Some(z) => match obs.zone(&z) {
                        // Right after boot the sitter's SMF state is not
                        // settled yet (the zone's setup applies
                        // DISABLE_SITTER after the VM reports running): wait;
                        // the step's timeout stops a sitter that stays online.
                        Some(o) if o.vm_state == "running" => {
                            if o.sitter_enabled {
                                nf(format!(
                                    "the new v2 instance {alias} is running with its sitter online: DISABLE_SITTER not applied (yet)"
                                ))
                            } else {
                                Ok(Progress::Done)
                            }
                        }
                        Some(o) => nf(format!("{alias} is {}", o.vm_state)),
                        None => nf(format!("{alias} provisioning")),
                    },
                    None => nf(format!("{alias} not created yet")),
                }
            }
            T::ReprovisionV2 { zone, image } | T::RevertAsync { zone, image } => {
                match obs.zone(zone) {
                    Some(z) if &z.image == image && z.vm_state == "running" => {
                        if matches!(action, T::ReprovisionV2 { .. }) {
                            if z.sitter_enabled {
                                // As above: SMF settles after the VM runs.
                                nf(format!(
                                    "{} came back with its sitter online: DISABLE_SITTER not applied (yet)",
                                    z.alias
                                ))
                            } else {
                                Ok(Progress::Done)
                            }
                        } else if z.election_seq.is_some() {
                            Ok(Progress::Done)
                        } else {
                            nf(format!(
                                "{} back on {image}, sitter not in the election yet",
                                z.alias
                            ))
                        }
                    }
                    Some(z) => nf(format!("{} is {} on {}", z.alias, z.vm_state, z.image)),
                    None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
                }
            }
            T::PrepareReceive { zone } => {
                let zone = self.need_zone(zone).await?;
                match obs.zone(&zone) {
                    Some(z) if !z.sitter_enabled && z.dataset_bytes.is_none_or(|b| b == 0) => {
                        Ok(Progress::Done)
                    }
                    Some(z) => nf(format!(
                        "{}: dataset still holds {:?} bytes",
                        z.alias, z.dataset_bytes
                    )),
                    None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
                }
            }
            T::StopWrites => {
                let on: Vec<&str> = obs
                    .morays
                    .iter()
                    .filter(|m| m.enabled)
                    .map(|m| m.zone.as_str())
                    .collect();
                if on.is_empty() {
                    Ok(Progress::Done)
                } else {
                    nf(format!("morays still online: {}", on.join(", ")))
                }
            }
            T::StartWrites => {
                let off: Vec<&str> = obs
                    .morays
                    .iter()
                    .filter(|m| !m.enabled)
                    .map(|m| m.zone.as_str())
                    .collect();
                if off.is_empty() {
                    Ok(Progress::Done)
                } else {
                    nf(format!("morays still offline: {}", off.join(", ")))
                }
            }
            T::Send { from, snapshot, to } => {
                let to = self.need_zone(to).await?;
                let Some(r) = obs.zone(&to) else {
                    return Err(WorldError::Missing(format!("receiver {to} vanished")));
                };
                if r.snapshots.contains(snapshot) {
                    return Ok(Progress::Done);
                }
                let total = obs.zone(from).and_then(|z| z.dataset_bytes).unwrap_or(0);
                let sent = r.dataset_bytes.unwrap_or(0);
                let pct = sent as f64 * 100.0 / total.max(1) as f64;
                let started = op.steps[step].started_at.clone().unwrap_or_default();
                let elapsed = crate::clock::since(&started, self.clock.now()).as_secs_f64();
                let eta = if sent > 0 && elapsed > 0.0 {
                    format!(
                        ", ETA {:.0}s",
                        elapsed * total.saturating_sub(sent) as f64 / sent as f64
                    )
                } else {
                    String::new()
                };
                nf(format!(
                    "zfs send {from}@{snapshot} -> {to}: {sent} of {total} bytes ({pct:.0}%){eta}"
                ))
            }
            T::WriteOnwmState { zone, .. } => {
                let zone = self.need_zone(zone).await?;
                match &obs.state {
                    Some(st) if st.primary.zone_id == zone && st.is_one_node_write_mode() => {
                        Ok(Progress::Done)
                    }
                    Some(st) => Err(WorldError::Unexpected(format!(
                        "shard {} has a cluster state naming {} as primary, not the v2 node {zone}",
                        self.shard, st.primary.zone_id
                    ))),
                    None => nf("state not written yet".into()),
                }
            }
            T::DeleteState { .. } => match &obs.state {
                None => Ok(Progress::Done),
                Some(_) => nf("state still present".into()),
            },
            T::EnableV2 { zone } => {
                let zone = self.need_zone(zone).await?;
                match (&obs.state, obs.zone(&zone)) {
                    (Some(st), Some(z)) if st.primary.zone_id == zone && z.writable => {
                        Ok(Progress::Done)
                    }
                    (_, Some(z)) => nf(format!(
                        "v2 node {}: sitter {}, in election {}, writable {}",
                        z.alias,
                        z.sitter_enabled,
                        z.election_seq.is_some(),
                        z.writable
                    )),
                    _ => Err(WorldError::Missing(format!("v2 zone {zone} vanished"))),
                }
            }
            T::ReprovisionPeer { zone, image } => match obs.zone(zone) {
                Some(z)
                    if &z.image == image && z.vm_state == "running" && z.election_seq.is_some() =>
                {
                    Ok(Progress::Done)
                }
                Some(z) => nf(format!("{} is {} on {}", z.alias, z.vm_state, z.image)),
                None => Err(WorldError::Missing(format!("zone {zone} vanished"))),
            },
            T::LeaveOnwm { zone, .. } => {
                let zone = self.need_zone(zone).await?;
                match &obs.state {
                    Some(st) if !st.is_one_node_write_mode() && st.primary.zone_id == zone => {
                        Ok(Progress::Done)
                    }
                    Some(st) if !st.is_one_node_write_mode() => {
                        Err(WorldError::Unexpected(format!(
                            "shard {} left one-node-write mode with {} as primary, not {zone}",
                            self.shard, st.primary.zone_id
                        )))
                    }
                    _ => nf("still in one-node-write mode".into()),
                }
            }
            T::WaitPeers { count, .. } => {
                let r = if obs.state.is_some() {
                    Self::v2_peers_ok(&obs, *count)
                } else {
                    Self::v1_peers_ok(&obs, *count)
                };
                match r {
                    Ok(()) => Ok(Progress::Done),
                    Err(e) => nf(e.0),
                }
            }
            T::RetireZone { zone } => match self.zone(zone).await? {
                Some(z) if obs.zone(&z).is_some() => nf(format!("{z} still present")),
                _ => Ok(Progress::Done),
            },
        }
    }

    fn timeout(&self, action: &TransplantAction) -> Duration {
        match action {
            TransplantAction::Send { .. } => self.send_timeout,
            _ => self.step_timeout,
        }
    }
}

/// The transplant of one shard as stored: the forward operation and, once
/// started, its rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransplantJournal {
    pub forward: Operation<TransplantAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Operation<TransplantAction>>,
    /// Set while the transplant is stopped past its point of no return:
    /// nothing runs until a person approves one of [`DECISIONS`] for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<PastPnrStop>,
    /// How many such stops there were (numbers the next one).
    #[serde(default)]
    pub stops: u32,
    /// Every decision taken on such a stop, oldest first (the audit trail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<String>,
}

impl TransplantJournal {
    pub fn new(forward: Operation<TransplantAction>) -> TransplantJournal {
        TransplantJournal {
            forward,
            rollback: None,
            stopped: None,
            stops: 0,
            decisions: Vec::new(),
        }
    }

    /// Record a stop past the point of no return; returns its outcome.
    fn stop_past_pnr(&mut self, step: usize, cause: String, now: String) -> Outcome {
        self.stops += 1;
        let stop = PastPnrStop {
            seq: self.stops,
            step,
            name: self.forward.status.steps[step].name.clone(),
            cause,
            at: now,
        };
        let message = stop_message(&self.forward, &stop);
        self.forward.status.phase = OperationPhase::Waiting;
        self.forward.status.message = Some(message.clone());
        self.stopped = Some(stop);
        Outcome::Blocked {
            reason: BlockReason::PastPointOfNoReturn,
            message,
        }
    }
}

/// The Blocked message of a stop past the point of no return.
pub fn stop_message(forward: &Operation<TransplantAction>, stop: &PastPnrStop) -> String {
    after_pnr_message(
        forward,
        &format!(
            "Stop {} at step {} ({}): {}",
            stop.seq,
            stop.step + 1,
            stop.name,
            stop.cause
        ),
    )
}

/// Where [`TransplantJournal`]s are saved.
#[async_trait]
pub trait TransplantStore: Send + Sync {
    async fn save(&self, j: &TransplantJournal) -> Result<(), WorldError>;
}

struct Part<'a, S: TransplantStore> {
    store: &'a S,
    base: std::sync::Mutex<TransplantJournal>,
    rollback: bool,
}

#[async_trait]
impl<S: TransplantStore> Journal<TransplantAction> for Part<'_, S> {
    async fn save(&self, op: &Operation<TransplantAction>) -> Result<(), WorldError> {
        let j = {
            let mut b = self.base.lock().unwrap();
            if self.rollback {
                b.rollback = Some(op.clone());
            } else {
                b.forward = op.clone();
            }
            b.clone()
        };
        self.store.save(&j).await
    }
}

/// How far [`drive`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    RolledBack {
        why: String,
    },
    Waiting {
        after: Duration,
        reason: WaitReason,
        message: String,
    },
    Blocked {
        reason: BlockReason,
        message: String,
    },
}

/// Drive a transplant: forward until done; before the point of no return a
/// failure or a cancel rolls back; after it, a failure, a timeout or a
/// blocked gate records a [`PastPnrStop`] and nothing more runs, not even a
/// retry, until a person approves an option for that stop
/// ([`decision_key`]): `resume` retries the step once. The other options
/// are described ([`reverse_transplant_plan`], [`restore_backup_plan`]) and
/// refused by tritonctl: they are not automated.
pub async fn drive<W: TransplantAct + ?Sized, S: TransplantStore>(
    j: &mut TransplantJournal,
    runner: &TransplantRunner<'_, W>,
    store: &S,
    cancel: bool,
    poll: Duration,
) -> Result<Outcome, WorldError> {
    if j.rollback.is_none() {
        // Stopped past the point of no return: nothing runs, not even a
        // retry, until a person approves an option for this very stop.
        if let Some(stop) = j.stopped.clone()
            && !j.forward.is_finished()
        {
            let id = j.forward.status.id.clone();
            let key = decision_key(stop.seq, "resume");
            if !runner.world.approved(&id, &key).await? {
                return Ok(Outcome::Blocked {
                    reason: BlockReason::PastPointOfNoReturn,
                    message: stop_message(&j.forward, &stop),
                });
            }
            let now = crate::clock::rfc3339(runner.clock.now());
            j.decisions.push(format!(
                "{now}: stop {} at step {} ({}): resume approved ({key}); retrying the step",
                stop.seq,
                stop.step + 1,
                stop.name
            ));
            j.stopped = None;
            j.forward.status.message = Some(format!(
                "resume approved for stop {}: retrying step {} ({})",
                stop.seq,
                stop.step + 1,
                stop.name
            ));
            store.save(j).await?;
        }
        let mut why: Option<String> = None;
        if cancel {
            if j.forward.status.can_roll_back() {
                why = Some("cancelled".into());
            } else if !j.forward.is_finished() {
                let m = after_pnr_message(&j.forward, "Cancel requested");
                return Ok(Outcome::Blocked {
                    reason: BlockReason::PastPointOfNoReturn,
                    message: m,
                });
            }
        }
        if why.is_none() && !j.forward.is_finished() {
            let part = Part {
                store,
                base: std::sync::Mutex::new(j.clone()),
                rollback: false,
            };
            let r = advance(&mut j.forward, runner, &part, runner.clock, poll).await;
            match r {
                Ok(Advance::Completed) => return Ok(Outcome::Completed),
                Ok(Advance::Waiting {
                    after,
                    reason,
                    message,
                }) => {
                    return Ok(Outcome::Waiting {
                        after,
                        reason,
                        message,
                    });
                }
                Ok(Advance::Blocked {
                    reason,
                    message,
                    step,
                }) => {
                    let before_pnr = j.forward.status.point_of_no_return.is_none_or(|p| step < p);
                    if reason == BlockReason::StepTimedOut && before_pnr {
                        why = Some(message);
                    } else if before_pnr {
                        return Ok(Outcome::Blocked { reason, message });
                    } else {
                        let now = crate::clock::rfc3339(runner.clock.now());
                        let out = j.stop_past_pnr(step, format!("{reason}: {message}"), now);
                        store.save(j).await?;
                        return Ok(out);
                    }
                }
                Err(EngineError::Journal(e)) => return Err(e),
                Err(EngineError::Step { step, name, error }) => {
                    let message = error.to_string();
                    let before_pnr = j.forward.status.point_of_no_return.is_none_or(|p| step < p);
                    let s = &mut j.forward.status.steps[step];
                    s.state = StepState::Failed;
                    s.message = Some(message.clone());
                    if before_pnr {
                        why = Some(format!("step {name} failed: {message}"));
                    } else {
                        let now = crate::clock::rfc3339(runner.clock.now());
                        let out = j.stop_past_pnr(step, format!("step failed: {message}"), now);
                        store.save(j).await?;
                        return Ok(out);
                    }
                }
            }
        }
        let Some(why) = why else {
            return Ok(Outcome::Completed);
        };
        let Some(rb) = rollback_plan(&j.forward) else {
            return Ok(Outcome::Blocked {
                reason: BlockReason::PastPointOfNoReturn,
                message: after_pnr_message(&j.forward, &why),
            });
        };
        j.forward.status.phase = OperationPhase::RollingBack;
        j.forward.status.message = Some(format!("rolling back: {why}"));
        j.rollback = Some(rb);
        store.save(j).await?;
    }
    // Rolling back.
    let mut rb = j.rollback.clone().expect("set above");
    let part = Part {
        store,
        base: std::sync::Mutex::new(j.clone()),
        rollback: true,
    };
    let r = advance(&mut rb, runner, &part, runner.clock, poll).await;
    j.rollback = Some(rb);
    let why = j.forward.status.message.clone().unwrap_or_default();
    match r {
        Ok(Advance::Completed) => {
            j.forward.status.phase = OperationPhase::RolledBack;
            for s in &mut j.forward.status.steps {
                if matches!(
                    s.state,
                    StepState::Succeeded | StepState::Running | StepState::Failed
                ) {
                    s.state = StepState::RolledBack;
                }
            }
            store.save(j).await?;
            Ok(Outcome::RolledBack { why })
        }
        Ok(Advance::Waiting {
            after,
            reason,
            message,
        }) => Ok(Outcome::Waiting {
            after,
            reason,
            message,
        }),
        Ok(Advance::Blocked {
            reason, message, ..
        }) => Ok(Outcome::Blocked {
            reason: BlockReason::Rollback(Box::new(reason)),
            message: format!("the rollback ({why}) stopped: {message}"),
        }),
        Err(e) => Ok(Outcome::Blocked {
            reason: BlockReason::Rollback(Box::new(BlockReason::StepFailed)),
            message: format!("the rollback ({why}) stopped: {e}; it resumes on the next reconcile"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "6d8a6f1e-1b2c-4c3d-9e4f-5a6b7c8d9e01";
    const V2: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";

    fn zone(n: u64) -> ZoneObs {
        ZoneObs {
            zone: format!("z{n}-uuid"),
            alias: format!("manatee{n}"),
            server: format!("hn{n}"),
            image: V1.into(),
            vm_state: "running".into(),
            sitter_enabled: true,
            config_agent_enabled: true,
            election_seq: Some(n),
            writable: n == 0,
            ..Default::default()
        }
    }

    fn obs(n: u64) -> TransplantObs {
        TransplantObs {
            shard: "sdc".into(),
            zones: (0..n).map(zone).collect(),
            morays: vec![MorayObs {
                zone: "moray0".into(),
                image_version: "20240327T001755Z".into(),
                enabled: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn majors() -> BTreeMap<String, u32> {
        [(V1.to_string(), 1), (V2.to_string(), 2)].into()
    }

    fn spec(first: &str) -> ManateeVersionSpec {
        serde_json::from_value(serde_json::json!({
            "shards": ["sdc"], "image": {"uuid": V2}, "strategy": "auto",
            "rollout": {"approval": "never"},
            "transplant": {"firstV2Node": first}
        }))
        .unwrap()
    }

    fn names(op: &Operation<TransplantAction>) -> Vec<&str> {
        op.status.steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn auto_picks_transplant_across_majors_and_rolling_is_refused() {
        assert_eq!(
            resolve_strategy(Strategy::Auto, &[1, 1, 1], Some(2), V2),
            Ok(Resolved::Transplant)
        );
        assert_eq!(
            resolve_strategy(Strategy::Auto, &[2, 2], Some(2), V2),
            Ok(Resolved::Rolling)
        );
        assert!(matches!(
            resolve_strategy(Strategy::Rolling, &[1, 1, 1], Some(2), V2),
            Err(r) if r.reason == RefusalReason::MajorVersionChange
        ));
        assert!(matches!(
            resolve_strategy(Strategy::Auto, &[2], Some(1), V1),
            Err(r) if r.reason == RefusalReason::MajorDowngrade
        ));
        assert!(matches!(
            resolve_strategy(Strategy::Transplant, &[2], Some(2), V2),
            Err(r) if r.reason == RefusalReason::NoMajorChange
        ));
    }

    #[test]
    fn the_manifest_says_the_major_by_tag_or_by_sdcadm_version_rule() {
        let mut i = ImageInfo {
            uuid: V1.into(),
            name: "sdc-manatee".into(),
            version: "master-20141118T223437Z-g1234567".into(),
            state: "active".into(),
            manatee_major: None,
        };
        assert_eq!(
            manatee_major(&i),
            None,
            "a git-describe version is not a timestamp"
        );
        i.version = "20141118T223437Z".into();
        assert_eq!(manatee_major(&i), Some(1));
        i.version = "20150320T174220Z".into();
        assert_eq!(manatee_major(&i), Some(2));
        i.manatee_major = Some(1);
        assert_eq!(manatee_major(&i), Some(1), "the tag wins");
    }

    #[test]
    fn lab_plan_option_new_instance_marks_the_point_of_no_return() {
        let op = plan_transplant(
            &spec("newInstanceOnPrimaryServer"),
            &obs(3),
            &majors(),
            "op1",
        )
        .unwrap();
        assert_eq!(
            names(&op),
            [
                "check-moray",
                "record-initial-state",
                "disable-async-sitter-z2",
                "disable-sync-sitter-z1",
                "primary-one-node-write-mode",
                "backup-snapshot",
                "set-service-image",
                "create-v2-instance",
                "prepare-receive",
                "stop-writes",
                "disable-primary-sitter",
                "migrate-snapshot",
                "send-to-v2",
                "write-onwm-state",
                "enable-v2-sitter",
                "start-writes",
                "reprovision-sync-z1",
                "leave-one-node-write-mode",
                "wait-two-peers",
                "reprovision-last-z2",
                "wait-all-peers",
                "release-backup",
                "retire-v1-primary",
            ]
        );
        let pnr = op.status.point_of_no_return.unwrap();
        assert_eq!(op.status.steps[pnr].name, PNR_STEP);
        assert_eq!(op.status.steps.iter().filter(|s| s.irreversible).count(), 1);
        // Writes stop only right before the copy.
        let stop = names(&op).iter().position(|n| *n == "stop-writes").unwrap();
        let start = names(&op)
            .iter()
            .position(|n| *n == "start-writes")
            .unwrap();
        assert!(stop < pnr && pnr < start);
    }

    #[test]
    fn lab_plan_option_reprovision_async_ends_with_the_old_primary() {
        let op = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
        let n = names(&op);
        assert!(n.contains(&"reprovision-async-v2-z2"));
        assert!(!n.contains(&"create-v2-instance"));
        assert!(n.contains(&"reprovision-last-z0"));
        assert!(!n.contains(&"retire-v1-primary"));
        match &op.actions[n.iter().position(|x| *x == "send-to-v2").unwrap()] {
            TransplantAction::Send { from, to, .. } => {
                assert_eq!((from.as_str(), to.as_str()), ("z0-uuid", "z2-uuid"))
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn coal_plan_has_no_sync_to_disable_and_refuses_reprovision_async() {
        let op = plan_transplant(
            &spec("newInstanceOnPrimaryServer"),
            &obs(1),
            &majors(),
            "op1",
        )
        .unwrap();
        let n = names(&op);
        assert!(
            !n.iter()
                .any(|x| x.starts_with("disable-sync") || x.starts_with("disable-async"))
        );
        assert!(
            !n.contains(&"leave-one-node-write-mode"),
            "a one-node shard stays in ONWM"
        );
        assert!(matches!(
            plan_transplant(&spec("reprovisionAsync"), &obs(1), &majors(), "op1"),
            Err(r) if r.reason == RefusalReason::NoAsync
        ));
    }

    #[test]
    fn refuses_a_shard_with_v2_state_or_a_missing_peer() {
        let mut o = obs(3);
        o.zones[2].election_seq = None;
        assert!(matches!(
            plan_transplant(&spec("reprovisionAsync"), &o, &majors(), "op"),
            Err(r) if r.reason == RefusalReason::UnhealthyPeer
        ));
        let mut o = obs(3);
        o.zones[1].image = V2.into();
        assert!(matches!(
            plan_transplant(&spec("reprovisionAsync"), &o, &majors(), "op"),
            Err(r) if r.reason == RefusalReason::MixedMajors
        ));
    }

    fn mark(op: &mut Operation<TransplantAction>, upto: &str) {
        let k = op.status.steps.iter().position(|s| s.name == upto).unwrap();
        for s in &mut op.status.steps[..=k] {
            s.state = StepState::Succeeded;
        }
    }

    #[test]
    fn rollback_follows_the_runbook_for_what_was_done() {
        let mut op = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
        mark(&mut op, "send-to-v2");
        let rb = rollback_plan(&op).unwrap();
        assert_eq!(
            names(&rb),
            [
                "rollback-primary",
                "rollback-enable-sync",
                "rollback-start-writes",
                "rollback-revert-async-0",
                "rollback-service-image",
                "rollback-wait-v1",
                "rollback-release-migrate",
                "rollback-release-backup",
            ]
        );
        // Nothing done yet: nothing to undo but the wait.
        let fresh = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
        assert_eq!(names(&rollback_plan(&fresh).unwrap()), ["rollback-wait-v1"]);
    }

    #[test]
    fn no_rollback_plan_once_the_point_of_no_return_started() {
        let mut op = plan_transplant(
            &spec("newInstanceOnPrimaryServer"),
            &obs(3),
            &majors(),
            "op1",
        )
        .unwrap();
        mark(&mut op, "write-onwm-state");
        assert!(rollback_plan(&op).is_some());
        let rb = rollback_plan(&op).unwrap();
        assert_eq!(rb.status.steps[0].name, "rollback-delete-state");
        assert!(names(&rb).contains(&"rollback-delete-v2-instance"));
        let pnr = op.status.point_of_no_return.unwrap();
        op.status.steps[pnr].state = StepState::Running;
        assert!(rollback_plan(&op).is_none());
        let m = after_pnr_message(&op, "step x failed");
        assert!(
            m.contains("reverse-transplant")
                && m.contains("restore-backup")
                && m.contains("neither retries nor rolls back by itself")
                && m.contains("--option"),
            "{m}"
        );
        assert!(m.contains("zfs rollback -r zones/z0-uuid/data/manatee@tritonctl-op1-backup"));
    }

    #[test]
    fn restore_backup_is_impossible_once_the_backup_is_gone() {
        let mut op = plan_transplant(&spec("reprovisionAsync"), &obs(3), &majors(), "op1").unwrap();
        mark(&mut op, "enable-v2-sitter");
        assert!(restore_backup_plan(&op).contains("zfs rollback"));
        assert!(reverse_transplant_plan(&op).contains("keeps every write"));
        mark(&mut op, "reprovision-last-z0");
        assert!(
            restore_backup_plan(&op).contains("impossible"),
            "{}",
            restore_backup_plan(&op)
        );
        assert!(reverse_transplant_plan(&op).contains("every v1 peer is gone"));
        assert_ne!(decision_key(1, "resume"), decision_key(2, "resume"));
    }
}
