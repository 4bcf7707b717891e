//! The pure planner: the runbook's nine steps for one shard, point of no
//! return marked. [`plan_transplant`] checks the shard, then a [`Runbook`]
//! appends the steps phase by phase, one method per runbook step.

use std::collections::BTreeMap;

use crds::manatee::{Approval, FirstV2Node, ManateeVersionSpec, TransplantOptions};

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
    let topo = whole_v1_shard(obs, majors)?;
    let opts = spec.transplant.clone().unwrap_or(TransplantOptions {
        first_v2_node: FirstV2Node::default(),
        moray_image: None,
    });
    let primary = topo[0];
    let sync = topo.get(1).copied();
    let asyncs: Vec<&ZoneObs> = topo.iter().skip(2).copied().collect();
    let option = first_v2_node(opts.first_v2_node, obs, &topo, &asyncs)?;
    let mut r = Runbook {
        spec,
        obs,
        op_id,
        shard: obs.shard.clone(),
        target: &spec.image.uuid,
        primary,
        sync,
        asyncs,
        option,
        steps: Vec::new(),
    };
    r.approve_start();
    r.moray(opts.moray_image.as_deref()); // 1
    r.record_initial_state(); // 2
    r.reduce_to_onwm(); // 3
    r.backup(); // 4
    let v2 = r.first_v2_node(); // 5
    r.approve_outage();
    r.stop_writes_and_send(&v2.key); // 6
    r.point_of_no_return(&v2.key); // 7
    r.sync_onto_v2(&v2.key); // 8
    r.last_peers(topo.len(), &v2.alias); // 9
    let mut op = Operation::new(op_id, "manatee-transplant", &r.shard, r.steps);
    op.status.message = Some(format!(
        "strategy transplant (v1 -> v{}), first v2 node: {option:?}",
        majors.get(&spec.image.uuid).copied().unwrap_or(2)
    ));
    Ok(op)
}

/// The preflight: a v1 shard, no v2 state, every zone on v1 and in the
/// election. Returns the v1 topology (election order, primary first).
fn whole_v1_shard<'o>(
    obs: &'o TransplantObs,
    majors: &BTreeMap<String, u32>,
) -> Result<Vec<&'o ZoneObs>, Refusal> {
    if obs.state.is_some() {
        return Err(Refusal::new(
            RefusalReason::ClusterStateExists,
            format!(
                "shard {} already has a v2 cluster state in ZooKeeper; the transplant starts from a v1 shard (use `rolling`)",
                obs.shard
            ),
        ));
    }
    let topo = obs.legacy_topology();
    if topo.is_empty() {
        return Err(Refusal::new(
            RefusalReason::NoActivePeer,
            format!(
                "no manatee sitter of shard {} is in the election; nothing to transplant from",
                obs.shard
            ),
        ));
    }
    let not_v1: Vec<&str> = obs
        .zones
        .iter()
        .filter(|z| majors.get(&z.image) != Some(&1))
        .map(|z| z.alias.as_str())
        .collect();
    if !not_v1.is_empty() {
        return Err(Refusal::new(
            RefusalReason::MixedMajors,
            format!(
                "zones {} of shard {} are not on a manatee v1 image; a half-done transplant needs a person",
                not_v1.join(", "),
                obs.shard
            ),
        ));
    }
    if let Some(z) = obs.zones.iter().find(|z| z.election_seq.is_none()) {
        return Err(Refusal::new(
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
        ));
    }
    Ok(topo)
}

/// `firstV2Node`, refused when it asks for an async the shard lacks.
fn first_v2_node(
    wanted: FirstV2Node,
    obs: &TransplantObs,
    topo: &[&ZoneObs],
    asyncs: &[&ZoneObs],
) -> Result<FirstV2Node, Refusal> {
    match (wanted, asyncs.last()) {
        (FirstV2Node::ReprovisionAsync, None) => Err(Refusal::new(
            RefusalReason::NoAsync,
            format!(
                "firstV2Node: reprovisionAsync needs an async peer, and shard {} has {} peer(s); use newInstanceOnPrimaryServer",
                obs.shard,
                topo.len()
            ),
        )),
        (o, _) => Ok(o),
    }
}

/// The first v2 node: its zone key (a zone uuid, or `alias:<alias>` for an
/// instance not created yet) and the alias a new instance gets.
struct V2Node {
    key: String,
    alias: String,
}

/// The steps of one shard's transplant, appended in runbook order.
struct Runbook<'a> {
    spec: &'a ManateeVersionSpec,
    obs: &'a TransplantObs,
    op_id: &'a str,
    shard: String,
    target: &'a str,
    primary: &'a ZoneObs,
    sync: Option<&'a ZoneObs>,
    asyncs: Vec<&'a ZoneObs>,
    option: FirstV2Node,
    steps: Vec<PlannedStep<TransplantAction>>,
}

impl Runbook<'_> {
    fn push(&mut self, name: &str, description: String, touches: Vec<String>, a: TransplantAction) {
        self.steps.push(step(name, description, touches, a));
    }

    fn approval(&mut self, name: &str, description: String, what: String) {
        self.push(
            name,
            description,
            vec![],
            TransplantAction::Approval { what },
        );
    }

    fn moray_zones(&self) -> Vec<String> {
        self.obs.morays.iter().map(|m| m.zone.clone()).collect()
    }

    /// `approval: beforeEachShard`: a person starts each shard.
    fn approve_start(&mut self) {
        if self.spec.rollout.approval == Approval::BeforeEachShard {
            let shard = self.shard.clone();
            self.approval(
                "approve-transplant",
                format!(
                    "wait for `tritonctl approve` before the transplant of shard {shard} starts"
                ),
                format!("the transplant of shard {shard}"),
            );
        }
    }

    /// Step 1: every moray must follow `/state`: upgrade the old ones (when
    /// `morayImage` says onto what), then check.
    fn moray(&mut self, moray_image: Option<&str>) {
        let stale: Vec<&MorayObs> = self
            .obs
            .morays
            .iter()
            .filter(|m| !moray_compatible(&m.image_version))
            .collect();
        if let Some(img) = moray_image {
            for m in stale {
                self.push(
                    &format!("upgrade-moray-{}", short(&m.zone)),
                    format!(
                        "disable moray {} and reprovision it onto {img}; the other morays keep serving",
                        m.zone
                    ),
                    vec![m.zone.clone()],
                    TransplantAction::UpgradeMoray {
                        zone: m.zone.clone(),
                        image: img.to_string(),
                    },
                );
            }
        }
        self.push(
            "check-moray",
            format!(
                "check every moray runs an image from {MORAY_COMPATIBLE_MIN_VERSION} on (follows /state, falls back to /election)"
            ),
            vec![],
            TransplantAction::CheckMoray,
        );
    }

    /// Step 2: the v1 topology, kept in the journal for the rollback.
    fn record_initial_state(&mut self) {
        let obs = self.obs;
        let topology = Topology {
            primary: self.primary.zone.clone(),
            sync: self.sync.map(|z| z.zone.clone()),
            asyncs: self.asyncs.iter().map(|z| z.zone.clone()).collect(),
            zones: obs
                .zones
                .iter()
                .map(|z| (z.zone.clone(), (z.server.clone(), z.image.clone())))
                .collect(),
            service_image: obs
                .zones
                .first()
                .map(|z| z.image.clone())
                .unwrap_or_default(),
        };
        let asyncs = if self.asyncs.is_empty() {
            "-".to_string()
        } else {
            self.asyncs
                .iter()
                .map(|z| z.alias.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        self.push(
            "record-initial-state",
            format!(
                "record the v1 topology in the journal: primary {}, sync {}, async {asyncs}",
                self.primary.alias,
                self.sync.map_or("-", |z| z.alias.as_str()),
            ),
            vec![],
            TransplantAction::RecordInitialState { topology },
        );
    }

    /// Step 3: reduce to the primary alone, in one-node-write mode.
    fn reduce_to_onwm(&mut self) {
        for a in self.asyncs.clone().iter().rev() {
            self.push(
                &format!("disable-async-sitter-{}", short(&a.zone)),
                format!("svcadm disable manatee-sitter in async {}", a.alias),
                vec![a.alias.clone()],
                TransplantAction::DisableSitter {
                    zone: a.zone.clone(),
                },
            );
        }
        if let Some(s) = self.sync {
            self.push(
                &format!("disable-sync-sitter-{}", short(&s.zone)),
                format!("svcadm disable manatee-sitter in sync {}", s.alias),
                vec![s.alias.clone()],
                TransplantAction::DisableSitter {
                    zone: s.zone.clone(),
                },
            );
        }
        let p = self.primary;
        self.push(
            "primary-one-node-write-mode",
            format!(
                "on primary {}: disable config-agent, set oneNodeWriteMode in sitter.json, restart the sitter; wait until it takes writes alone",
                p.alias
            ),
            vec![p.alias.clone()],
            TransplantAction::PrimaryOnwm {
                zone: p.zone.clone(),
            },
        );
    }

    /// Step 4: the backup, a snapshot of the primary's dataset, kept to the end.
    fn backup(&mut self) {
        let p = self.primary;
        self.push(
            "backup-snapshot",
            format!(
                "zfs snapshot of primary {}'s manatee dataset @{}, kept until the operation ends",
                p.alias,
                backup_name(self.op_id)
            ),
            vec![p.alias.clone()],
            TransplantAction::Snapshot {
                zone: p.zone.clone(),
                name: backup_name(self.op_id),
            },
        );
    }

    /// Step 5: the service onto v2, and the first v2 node ready to receive.
    fn first_v2_node(&mut self) -> V2Node {
        let target = self.target.to_string();
        self.push(
            "set-service-image",
            format!("point the SAPI manatee service at {target}"),
            vec![],
            TransplantAction::SetServiceImage {
                shard: self.shard.clone(),
                image: target.clone(),
            },
        );
        let p = self.primary;
        let alias = format!("{}-v2", p.alias);
        let key = match self.option {
            FirstV2Node::NewInstanceOnPrimaryServer => {
                self.push(
                    "create-v2-instance",
                    format!(
                        "create {alias} on the primary's server {} with DISABLE_SITTER and ONE_NODE_WRITE_MODE (local copy)",
                        p.server
                    ),
                    vec![alias.clone()],
                    TransplantAction::CreateV2Instance {
                        shard: self.shard.clone(),
                        server: p.server.clone(),
                        alias: alias.clone(),
                    },
                );
                format!("alias:{alias}")
            }
            FirstV2Node::ReprovisionAsync => {
                let a = *self.asyncs.last().expect("checked");
                self.push(
                    &format!("reprovision-async-v2-{}", short(&a.zone)),
                    format!(
                        "set DISABLE_SITTER and ONE_NODE_WRITE_MODE on async {} and reprovision it onto {target}",
                        a.alias
                    ),
                    vec![a.alias.clone()],
                    TransplantAction::ReprovisionV2 {
                        zone: a.zone.clone(),
                        image: target.clone(),
                    },
                );
                a.zone.clone()
            }
        };
        self.push(
            "prepare-receive",
            "on the v2 node: check the sitter is disabled, destroy its manatee dataset, ready for zfs recv".into(),
            vec![key.clone()],
            TransplantAction::PrepareReceive { zone: key.clone() },
        );
        V2Node { key, alias }
    }

    /// Unless `approval: never`, a person allows the write outage.
    fn approve_outage(&mut self) {
        if self.spec.rollout.approval != Approval::Never {
            let shard = self.shard.clone();
            self.approval(
                "approve-write-outage",
                format!(
                    "wait for `tritonctl approve` before stopping writes to shard {shard} (steps 6-7)"
                ),
                format!("the write outage of shard {shard}"),
            );
        }
    }

    /// Step 6: writes stop; the v1 primary's data goes to the v2 node, which
    /// gets the ONWM state naming it.
    fn stop_writes_and_send(&mut self, v2: &str) {
        let p = self.primary;
        let migrate = migrate_name(self.op_id);
        self.push(
            "stop-writes",
            "svcadm disable every moray: no writes from here to step 7".into(),
            self.moray_zones(),
            TransplantAction::StopWrites,
        );
        self.push(
            "disable-primary-sitter",
            format!("svcadm disable manatee-sitter in v1 primary {}", p.alias),
            vec![p.alias.clone()],
            TransplantAction::DisableSitter {
                zone: p.zone.clone(),
            },
        );
        self.push(
            "migrate-snapshot",
            format!("zfs snapshot @{migrate} of the v1 primary's dataset"),
            vec![p.alias.clone()],
            TransplantAction::Snapshot {
                zone: p.zone.clone(),
                name: migrate.clone(),
            },
        );
        self.push(
            "send-to-v2",
            format!(
                "zfs send {}@{migrate} | zfs recv on the v2 node (progress in bytes)",
                p.alias
            ),
            vec![p.alias.clone(), v2.to_string()],
            TransplantAction::Send {
                from: p.zone.clone(),
                snapshot: migrate,
                to: v2.to_string(),
            },
        );
        self.push(
            "write-onwm-state",
            "write the one-node-write-mode cluster state naming the v2 node (state-backfill + set-onwm)".into(),
            vec![self.shard.clone()],
            TransplantAction::WriteOnwmState {
                shard: self.shard.clone(),
                zone: v2.to_string(),
                reason: onwm_reason(self.op_id),
            },
        );
    }

    /// Step 7, the point of no return: the v2 sitter starts; writes come back.
    fn point_of_no_return(&mut self, v2: &str) {
        let mut pnr = step(
            PNR_STEP,
            "POINT OF NO RETURN: svcadm enable manatee-sitter on the v2 node; wait until it is a writable primary".into(),
            vec![v2.to_string()],
            TransplantAction::EnableV2 { zone: v2.to_string() },
        );
        pnr.irreversible = true;
        self.steps.push(pnr);
        self.push(
            "start-writes",
            "svcadm enable every moray; writes go to the v2 primary".into(),
            self.moray_zones(),
            TransplantAction::StartWrites,
        );
    }

    /// Step 8: the old sync becomes the v2 sync; the primary leaves ONWM.
    fn sync_onto_v2(&mut self, v2: &str) {
        let Some(s) = self.sync else {
            return;
        };
        let shard = self.shard.clone();
        self.push(
            &format!("reprovision-sync-{}", short(&s.zone)),
            format!("reprovision v1 sync {} onto {}", s.alias, self.target),
            vec![s.alias.clone()],
            TransplantAction::ReprovisionPeer {
                zone: s.zone.clone(),
                image: self.target.to_string(),
            },
        );
        self.push(
            "leave-one-node-write-mode",
            "clear ONE_NODE_WRITE_MODE and DISABLE_SITTER in SAPI, restart the v2 primary's sitter, lift our freeze".into(),
            vec![v2.to_string()],
            TransplantAction::LeaveOnwm {
                shard: shard.clone(),
                zone: v2.to_string(),
                reason: onwm_reason(self.op_id),
            },
        );
        self.push(
            "wait-two-peers",
            format!("wait for a healthy two-peer v2 shard {shard}"),
            vec![],
            TransplantAction::WaitPeers { shard, count: 2 },
        );
    }

    /// Step 9: the last v1 peers onto v2, the backup released, an old primary
    /// whose data lives on in a new instance retired.
    fn last_peers(&mut self, want: usize, v2_alias: &str) {
        let p = self.primary;
        let mut last: Vec<&ZoneObs> = Vec::new();
        match self.option {
            FirstV2Node::NewInstanceOnPrimaryServer => last.extend(self.asyncs.iter().copied()),
            FirstV2Node::ReprovisionAsync => {
                last.extend(self.asyncs.iter().take(self.asyncs.len() - 1).copied());
                last.push(p);
            }
        }
        for z in last {
            self.push(
                &format!("reprovision-last-{}", short(&z.zone)),
                format!("reprovision v1 peer {} onto {}", z.alias, self.target),
                vec![z.alias.clone()],
                TransplantAction::ReprovisionPeer {
                    zone: z.zone.clone(),
                    image: self.target.to_string(),
                },
            );
        }
        if want > 2 {
            self.push(
                "wait-all-peers",
                format!("wait for {want} healthy v2 peers"),
                vec![],
                TransplantAction::WaitPeers {
                    shard: self.shard.clone(),
                    count: want,
                },
            );
        }
        self.push(
            "release-backup",
            format!("destroy the backup snapshot @{}", backup_name(self.op_id)),
            vec![p.alias.clone()],
            TransplantAction::ReleaseSnapshot {
                zone: p.zone.clone(),
                name: backup_name(self.op_id),
            },
        );
        if self.option == FirstV2Node::NewInstanceOnPrimaryServer {
            self.push(
                "retire-v1-primary",
                format!(
                    "delete the old v1 primary zone {} (its data lives on in {v2_alias})",
                    p.alias
                ),
                vec![p.alias.clone()],
                TransplantAction::RetireZone {
                    zone: p.zone.clone(),
                },
            );
        }
    }
}
