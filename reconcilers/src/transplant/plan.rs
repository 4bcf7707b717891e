//! The pure planner: the runbook's nine steps for one shard, point of no
//! return marked.

use std::collections::BTreeMap;

use crds::manatee::{FirstV2Node, ManateeVersionSpec};

use super::{
    MORAY_COMPATIBLE_MIN_VERSION, MorayObs, PNR_STEP, Topology, TransplantAction, TransplantObs,
    ZoneObs, backup_name, migrate_name, moray_compatible, onwm_reason, short,
};
use crate::error::{Refusal, RefusalReason};
use crate::operation::{Operation, PlannedStep};

pub(super) fn step(
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
