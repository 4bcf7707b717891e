//! ManateeVersion across majors: the v1 -> v2 brain transplant in words.

use std::collections::BTreeMap;

use crds::manatee::{ManateeVersionSpec, Strategy};
use crds::status::OperationPhase;
use reconcilers::manatee::ImageInfo;
use reconcilers::operation::Operation;
use reconcilers::transplant::{
    MORAY_COMPATIBLE_MIN_VERSION, PNR_STEP, TransplantAction, TransplantJournal, TransplantObs,
    manatee_major, plan_transplant,
};

use super::common::{image_records, not_observed, short, window_words};
use super::types::{OpReview, Risk, ShardOutcome, ShardReview, StepReview};
use crate::gitops::observed::World;

/// The v1 shard as the transplant sees it: the election order.
pub(super) fn transplant_peers(obs: &TransplantObs) -> Vec<String> {
    let topo = obs.legacy_topology();
    let mut out: Vec<String> = topo
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let role = match i {
                0 => "v1 primary",
                1 => "v1 sync",
                _ => "v1 async",
            };
            format!(
                "{role} {} on image {}{}",
                z.alias,
                short(&z.image),
                if z.sitter_onwm {
                    ", one-node-write mode"
                } else {
                    ""
                }
            )
        })
        .collect();
    for z in obs.zones.iter().filter(|z| z.election_seq.is_none()) {
        out.push(format!(
            "{} on image {}, not in the election",
            z.alias,
            short(&z.image)
        ));
    }
    out.push(match &obs.state {
        Some(st) => format!("cluster state generation {}", st.generation),
        None => "no cluster state (manatee v1 keeps none)".into(),
    });
    if !obs.morays.is_empty() {
        out.push(format!(
            "morays: {}",
            obs.morays
                .iter()
                .map(|m| format!(
                    "{} ({}{})",
                    short(&m.zone),
                    m.image_version,
                    if m.enabled { "" } else { ", disabled" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

fn bytes_words(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A transplant step's gate, when it is done, and its risks.
fn describe_transplant_step(
    name: &str,
    doc: &str,
    action: &TransplantAction,
    in_outage: bool,
) -> (String, String, Vec<Risk>) {
    use TransplantAction as T;
    let mut risks = Vec::new();
    if in_outage {
        risks.push(Risk::WriteOutage);
    }
    let (gate, done) = match action {
        T::Approval { .. } => (
            format!("`tritonctl approve manateeversion/{doc}` for step {name}"),
            "approved".to_string(),
        ),
        T::CheckMoray => (
            "none".into(),
            format!(
                "every moray runs an image from {MORAY_COMPATIBLE_MIN_VERSION} on; else blocked (set spec.transplant.morayImage to upgrade them first)"
            ),
        ),
        T::UpgradeMoray { .. } => (
            "another moray online (never zero morays)".into(),
            "the moray runs the new image and is online".into(),
        ),
        T::RecordInitialState { .. } => (
            "the v1 topology (primary, sync) unchanged since planning; else the transplant is planned again".into(),
            "recorded in the journal".into(),
        ),
        T::DisableSitter { .. } => ("none".into(), "the sitter is disabled and out of the election".into()),
        T::EnableSitter { .. } => ("none".into(), "the sitter is online".into()),
        T::PrimaryOnwm { .. } => {
            risks.push(Risk::PrimaryDisruption);
            (
                "none".into(),
                "the v1 primary takes writes alone in one-node-write mode (its sitter restarted)".into(),
            )
        }
        T::Snapshot { .. } => ("none".into(), "the snapshot exists".into()),
        T::SetServiceImage { .. } => ("none".into(), "SAPI's manatee service names the image".into()),
        T::CreateV2Instance { .. } | T::ReprovisionV2 { .. } => (
            "none".into(),
            "the v2 zone runs with its sitter disabled (DISABLE_SITTER, ONE_NODE_WRITE_MODE)".into(),
        ),
        T::PrepareReceive { .. } => (
            "none".into(),
            "the v2 node's sitter is off and its dataset empty".into(),
        ),
        T::StopWrites => ("none".into(), "every moray is disabled".into()),
        T::Send { .. } => (
            "none".into(),
            "the v2 node holds the migrate snapshot (progress in bytes and an ETA in status); timeout 6h".into(),
        ),
        T::WriteOnwmState { .. } => (
            "none".into(),
            "the one-node-write cluster state naming the v2 node is in ZooKeeper, frozen with our reason".into(),
        ),
        T::EnableV2 { .. } => (
            "none".into(),
            "the v2 node is a writable primary".into(),
        ),
        T::StartWrites => ("none".into(), "every moray is online; writes go to the v2 primary".into()),
        T::ReprovisionPeer { .. } => (
            "none".into(),
            "the zone runs the v2 image".into(),
        ),
        T::LeaveOnwm { .. } => {
            risks.push(Risk::PrimaryDisruption);
            (
                "none".into(),
                "ONE_NODE_WRITE_MODE and DISABLE_SITTER cleared in SAPI, the v2 primary's sitter restarted, our freeze lifted".into(),
            )
        }
        T::WaitPeers { count, .. } => (
            "none".into(),
            format!("{count} healthy v2 peers: the primary writable, the others placed, nothing deposed"),
        ),
        T::ReleaseSnapshot { .. } => ("none".into(), "the backup snapshot is destroyed".into()),
        T::RetireZone { .. } => ("none".into(), "the old v1 primary zone is deleted".into()),
        T::PrimaryLeaveOnwm { .. } | T::RevertAsync { .. } | T::DeleteState { .. } => {
            ("none".into(), "rolled back".into())
        }
    };
    (gate, done, risks)
}

pub(super) fn transplant_review(
    spec: &ManateeVersionSpec,
    doc: &str,
    tobs: &TransplantObs,
    op: &Operation<TransplantAction>,
) -> OpReview {
    let pos = |n: &str| op.status.steps.iter().position(|s| s.name == n);
    let (stop, start) = (pos("stop-writes"), pos("start-writes"));
    let pnr = op.status.point_of_no_return;
    let mut steps = Vec::new();
    let mut waits = Vec::new();
    for (i, s) in op.status.steps.iter().enumerate() {
        let action = &op.actions[i];
        let in_outage = matches!((stop, start), (Some(a), Some(b)) if a <= i && i <= b);
        let (gate, done_when, mut risks) =
            describe_transplant_step(&s.name, doc, action, in_outage);
        if s.irreversible || pnr == Some(i) {
            risks.insert(0, Risk::PointOfNoReturn);
        }
        if let TransplantAction::Approval { what } = action {
            waits.push(format!(
                "approval of {what}: `tritonctl approve manateeversion/{doc}`"
            ));
        }
        steps.push(StepReview {
            name: s.name.clone(),
            description: s.description.clone(),
            touches: s.touches.clone(),
            gate,
            done_when,
            irreversible: s.irreversible,
            risks,
        });
    }
    if let Some(w) = &spec.rollout.maintenance_window {
        waits.push(format!(
            "maintenance window {}: NOT applied to the transplant (its runner does not gate on spec.rollout.maintenanceWindow); hold it with approval or spec.rollout.paused",
            window_words(w)
        ));
    }
    let primary = tobs.legacy_topology().first().map(|z| (*z).clone());
    let size = primary
        .as_ref()
        .and_then(|p| p.dataset_bytes)
        .map(|b| format!(" ({} observed on the v1 primary)", bytes_words(b)))
        .unwrap_or_default();
    let n = |i: Option<usize>| i.map_or("?".to_string(), |i| (i + 1).to_string());
    let restarts: Vec<&str> = ["primary-one-node-write-mode", "leave-one-node-write-mode"]
        .into_iter()
        .filter(|x| pos(x).is_some())
        .collect();
    let outage = format!(
        "writes stop from step {} stop-writes to step {} start-writes (the runbook's steps 6-7): the v1 primary's sitter stops, its migrate snapshot is sent to the v2 node{size}, and the v2 sitter comes up as primary; bounded by the send timeout (6h) plus {} + {}.{}",
        n(stop),
        n(start),
        spec.health.instance_up_timeout,
        spec.health.catch_up_timeout,
        if restarts.is_empty() {
            String::new()
        } else {
            format!(
                " The sitter restart of {} pauses writes briefly",
                restarts.join(" and ")
            )
        }
    );
    let pnr_name = pnr
        .and_then(|i| op.status.steps.get(i))
        .map(|s| s.name.clone());
    let rollback = Some(format!(
        "before step {} {}: `tritonctl cancel manateeversion/{doc}` (or a step that fails or times out) rolls back as the runbook says: the cluster state tritonctl wrote deleted, the v1 primary out of one-node-write mode with config-agent back, the sitters re-enabled sync first, the async back on its old image or the new zone deleted. From step {} on: forward only; a failure stops Blocked, and the reverse transplant or the backup restore is a person's decision (`tritonctl approve`)",
        n(pnr),
        pnr_name.as_deref().unwrap_or(PNR_STEP),
        n(pnr)
    ));
    OpReview {
        id: op.status.id.clone(),
        kind: op.status.kind.clone(),
        point_of_no_return: pnr_name,
        steps,
        expected_write_outage: outage,
        waits,
        rollback,
    }
}
/// Where a transplant journal is, in words.
pub(super) fn transplant_position(j: &TransplantJournal) -> String {
    let op = match &j.rollback {
        Some(rb) if j.forward.status.phase == OperationPhase::RollingBack => rb,
        _ => &j.forward,
    };
    let n = op.status.steps.len();
    let at = match op.current() {
        Some(i) => {
            let s = &op.status.steps[i];
            format!(
                "step {}/{n} {} ({})",
                i + 1,
                s.name,
                format!("{:?}", s.state).to_lowercase()
            )
        }
        None => format!("all {n} steps done"),
    };
    if j.rollback.is_some() {
        format!("rolling back, {at}")
    } else {
        at
    }
}

/// A shard whose transplant journal is open: the controller drives it on.
pub(super) fn transplant_in_flight(
    name: &str,
    shard: &str,
    journal: &TransplantJournal,
) -> ShardReview {
    let f = &journal.forward;
    let rb = if f.status.can_roll_back() {
        format!(
            "rollback still possible (`tritonctl cancel manateeversion/{name}`), until step {}",
            f.status
                .point_of_no_return
                .map_or("?".into(), |p| (p + 1).to_string())
        )
    } else {
        "past its point of no return: forward only".into()
    };
    ShardReview {
        shard: shard.to_string(),
        outcome: ShardOutcome::InFlight,
        message: Some(format!(
            "transplant {} is at {}; {rb}. The controller drives it to its end before planning anything else for this document (see running operations)",
            f.status.id,
            transplant_position(journal)
        )),
        peers: vec![],
        strategy: Some("transplant (in flight)".into()),
        starts: None,
        operation: None,
    }
}

/// The transplant a shard resolved to across majors, planned with the
/// controller's pure `plan_transplant`; `starts` says when it would start.
pub(super) async fn plan_transplant_shard(
    world: &dyn World,
    spec: &ManateeVersionSpec,
    name: &str,
    shard: &str,
    image: Option<&ImageInfo>,
    starts: String,
) -> Result<ShardReview, String> {
    let m = world.manatee();
    let tobs = match world.transplant(shard).await {
        Ok(t) => t,
        Err(e) => {
            return Ok(not_observed(
                shard,
                format!("could not observe the shard for the transplant: {e}"),
            ));
        }
    };
    let zone_images = image_records(m, tobs.zones.iter().map(|z| &z.image)).await?;
    let mut majors: BTreeMap<String, u32> = zone_images
        .iter()
        .filter_map(|(u, i)| Some((u.clone(), manatee_major(i.as_ref()?)?)))
        .collect();
    if let Some(t) = image.and_then(manatee_major) {
        majors.insert(spec.image.uuid.clone(), t);
    }
    let from = tobs
        .zones
        .iter()
        .filter_map(|z| majors.get(&z.image))
        .min()
        .copied()
        .unwrap_or(1);
    let to = image.and_then(manatee_major).unwrap_or(2);
    let why = format!(
        "transplant, manatee v{from} -> v{to}{}",
        if spec.strategy == Strategy::Auto {
            ", strategy auto across majors"
        } else {
            ""
        }
    );
    let op_id = format!("mv-{name}-{shard}-transplant-planned");
    let peers = transplant_peers(&tobs);
    Ok(match plan_transplant(spec, &tobs, &majors, &op_id) {
        Ok(op) => ShardReview {
            operation: Some(transplant_review(spec, name, &tobs, &op)),
            shard: shard.to_string(),
            outcome: ShardOutcome::Upgrade,
            message: op.status.message.clone(),
            peers,
            strategy: Some(why),
            starts: Some(starts),
        },
        Err(reconcilers::error::Refusal { reason, message }) => ShardReview {
            shard: shard.to_string(),
            outcome: ShardOutcome::Refused,
            message: Some(format!("{reason}: {message}")),
            peers,
            strategy: Some(why),
            starts: None,
            operation: None,
        },
    })
}
