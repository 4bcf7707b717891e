//! The transplant's completion checks: what the world must show before a
//! step counts as done, and what it showed otherwise.

use crds::status::OperationStatus;

use super::{TransplantAct, TransplantRunner};
use crate::error::WorldError;
use crate::operation::Progress;
use crate::transplant::{
    MORAY_COMPATIBLE_MIN_VERSION, TransplantAction, TransplantObs, ZoneObs, moray_compatible,
};

type Checked = Result<Progress, WorldError>;

fn not_yet(saw: String) -> Checked {
    Ok(Progress::NotYet(saw))
}

fn vanished(zone: &str) -> Checked {
    Err(WorldError::Missing(format!("zone {zone} vanished")))
}

/// Done when `done` holds for the zone, else what it shows.
fn zone_shows(
    obs: &TransplantObs,
    zone: &str,
    done: impl Fn(&ZoneObs) -> bool,
    saw: impl Fn(&ZoneObs) -> String,
) -> Checked {
    match obs.zone(zone) {
        Some(z) if done(z) => Ok(Progress::Done),
        Some(z) => not_yet(saw(z)),
        None => vanished(zone),
    }
}

impl<W: TransplantAct + ?Sized> TransplantRunner<'_, W> {
    /// One step's completion check, by runbook phase.
    pub(super) async fn check_step(
        &self,
        op: &OperationStatus,
        step: usize,
        action: &TransplantAction,
    ) -> Checked {
        use TransplantAction as T;
        let obs = self.world.observe(&self.shard).await?;
        match action {
            T::CheckMoray => check_moray(&obs),
            T::UpgradeMoray { zone, .. } => self.moray_upgraded(&obs, zone).await,
            T::RecordInitialState { .. } | T::Approval { .. } | T::SetServiceImage { .. } => {
                Ok(Progress::Done)
            }
            T::DisableSitter { .. }
            | T::EnableSitter { .. }
            | T::PrimaryOnwm { .. }
            | T::PrimaryLeaveOnwm { .. } => sitter_shows(&obs, action),
            T::Snapshot { zone, name } => match obs.zone(zone) {
                Some(z) if z.snapshots.contains(name) => Ok(Progress::Done),
                _ => not_yet(format!("snapshot @{name} not listed yet")),
            },
            T::ReleaseSnapshot { zone, name } => match obs.zone(zone) {
                Some(z) if z.snapshots.contains(name) => {
                    not_yet(format!("snapshot @{name} still listed"))
                }
                _ => Ok(Progress::Done),
            },
            T::CreateV2Instance { alias, .. } => self.v2_instance_created(&obs, alias).await,
            T::ReprovisionV2 { zone, image } => reprovisioned_v2(&obs, zone, image),
            T::RevertAsync { zone, image } => reverted_async(&obs, zone, image),
            T::PrepareReceive { zone } => {
                let zone = self.need_zone(zone).await?;
                zone_shows(
                    &obs,
                    &zone,
                    |z| !z.sitter_enabled && z.dataset_bytes.is_none_or(|b| b == 0),
                    |z| {
                        format!(
                            "{}: dataset still holds {:?} bytes",
                            z.alias, z.dataset_bytes
                        )
                    },
                )
            }
            T::StopWrites => morays_all(&obs, false, "morays still online"),
            T::StartWrites => morays_all(&obs, true, "morays still offline"),
            T::Send { from, snapshot, to } => self.sent(op, step, &obs, from, snapshot, to).await,
            T::WriteOnwmState { zone, .. } => self.onwm_state_written(&obs, zone).await,
            T::DeleteState { .. } => match &obs.state {
                None => Ok(Progress::Done),
                Some(_) => not_yet("state still present".into()),
            },
            T::EnableV2 { zone } => self.v2_primary_up(&obs, zone).await,
            T::ReprovisionPeer { zone, image } => zone_shows(
                &obs,
                zone,
                |z| &z.image == image && z.vm_state == "running" && z.election_seq.is_some(),
                |z| format!("{} is {} on {}", z.alias, z.vm_state, z.image),
            ),
            T::LeaveOnwm { zone, .. } => self.left_onwm(&obs, zone).await,
            T::WaitPeers { count, .. } => {
                let r = if obs.state.is_some() {
                    Self::v2_peers_ok(&obs, *count)
                } else {
                    Self::v1_peers_ok(&obs, *count)
                };
                match r {
                    Ok(()) => Ok(Progress::Done),
                    Err(e) => not_yet(e.0),
                }
            }
            T::RetireZone { zone } => match self.zone(zone).await? {
                Some(z) if obs.zone(&z).is_some() => not_yet(format!("{z} still present")),
                _ => Ok(Progress::Done),
            },
        }
    }

    /// Step 1: the upgraded moray is compatible and back online (this
    /// check turns it back on once its reprovision is through).
    async fn moray_upgraded(&self, obs: &TransplantObs, zone: &str) -> Checked {
        match obs.morays.iter().find(|m| m.zone == zone) {
            Some(m) if moray_compatible(&m.image_version) && m.enabled => Ok(Progress::Done),
            Some(m) if moray_compatible(&m.image_version) => {
                self.world.set_moray(zone, true).await?;
                not_yet(format!("moray {zone} reprovisioned, enabling"))
            }
            _ => not_yet(format!("moray {zone} reprovisioning")),
        }
    }

    /// Step 5, new instance: running with its sitter off.
    async fn v2_instance_created(&self, obs: &TransplantObs, alias: &str) -> Checked {
        let Some(z) = self.zone(&format!("alias:{alias}")).await? else {
            return not_yet(format!("{alias} not created yet"));
        };
        match obs.zone(&z) {
            // Right after boot the sitter's SMF state is not settled yet
            // (the zone's setup applies DISABLE_SITTER after the VM reports
            // running): wait; the step's timeout stops a sitter that stays
            // online.
            Some(o) if o.vm_state == "running" => {
                if o.sitter_enabled {
                    not_yet(format!(
                        "the new v2 instance {alias} is running with its sitter online: DISABLE_SITTER not applied (yet)"
                    ))
                } else {
                    Ok(Progress::Done)
                }
            }
            Some(o) => not_yet(format!("{alias} is {}", o.vm_state)),
            None => not_yet(format!("{alias} provisioning")),
        }
    }

    /// Step 6: the receiver holds the snapshot; until then, the progress.
    async fn sent(
        &self,
        op: &OperationStatus,
        step: usize,
        obs: &TransplantObs,
        from: &str,
        snapshot: &str,
        to: &str,
    ) -> Checked {
        let to = self.need_zone(to).await?;
        let Some(r) = obs.zone(&to) else {
            return Err(WorldError::Missing(format!("receiver {to} vanished")));
        };
        if r.snapshots.iter().any(|s| s == snapshot) {
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
        not_yet(format!(
            "zfs send {from}@{snapshot} -> {to}: {sent} of {total} bytes ({pct:.0}%){eta}"
        ))
    }

    /// The ONWM state names the v2 node as primary.
    async fn onwm_state_written(&self, obs: &TransplantObs, key: &str) -> Checked {
        let zone = self.need_zone(key).await?;
        match &obs.state {
            Some(st) if st.primary.zone_id == zone && st.is_one_node_write_mode() => {
                Ok(Progress::Done)
            }
            Some(st) => Err(WorldError::Unexpected(format!(
                "shard {} has a cluster state naming {} as primary, not the v2 node {zone}",
                self.shard, st.primary.zone_id
            ))),
            None => not_yet("state not written yet".into()),
        }
    }

    /// Step 7: the v2 node is the state's primary and takes writes.
    async fn v2_primary_up(&self, obs: &TransplantObs, key: &str) -> Checked {
        let zone = self.need_zone(key).await?;
        match (&obs.state, obs.zone(&zone)) {
            (Some(st), Some(z)) if st.primary.zone_id == zone && z.writable => Ok(Progress::Done),
            (_, Some(z)) => not_yet(format!(
                "v2 node {}: sitter {}, in election {}, writable {}",
                z.alias,
                z.sitter_enabled,
                z.election_seq.is_some(),
                z.writable
            )),
            _ => Err(WorldError::Missing(format!("v2 zone {zone} vanished"))),
        }
    }

    /// Step 8: out of one-node-write mode with the v2 node still primary.
    async fn left_onwm(&self, obs: &TransplantObs, key: &str) -> Checked {
        let zone = self.need_zone(key).await?;
        match &obs.state {
            Some(st) if !st.is_one_node_write_mode() && st.primary.zone_id == zone => {
                Ok(Progress::Done)
            }
            Some(st) if !st.is_one_node_write_mode() => Err(WorldError::Unexpected(format!(
                "shard {} left one-node-write mode with {} as primary, not {zone}",
                self.shard, st.primary.zone_id
            ))),
            _ => not_yet("still in one-node-write mode".into()),
        }
    }
}

/// Step 1: every moray follows `/state` (or the transplant cannot start).
fn check_moray(obs: &TransplantObs) -> Checked {
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

/// Steps 6 and 7: every moray `enabled` (writes on) or every one off.
fn morays_all(obs: &TransplantObs, enabled: bool, still: &str) -> Checked {
    let wrong: Vec<&str> = obs
        .morays
        .iter()
        .filter(|m| m.enabled != enabled)
        .map(|m| m.zone.as_str())
        .collect();
    if wrong.is_empty() {
        Ok(Progress::Done)
    } else {
        not_yet(format!("{still}: {}", wrong.join(", ")))
    }
}

/// Step 5, reprovisioned async: on the v2 image and running, sitter off.
fn reprovisioned_v2(obs: &TransplantObs, zone: &str, image: &str) -> Checked {
    match obs.zone(zone) {
        Some(z) if z.image == image && z.vm_state == "running" => {
            if z.sitter_enabled {
                // As for a new instance: SMF settles after the VM runs.
                not_yet(format!(
                    "{} came back with its sitter online: DISABLE_SITTER not applied (yet)",
                    z.alias
                ))
            } else {
                Ok(Progress::Done)
            }
        }
        Some(z) => not_yet(format!("{} is {} on {}", z.alias, z.vm_state, z.image)),
        None => vanished(zone),
    }
}

/// Rollback of step 5: back on the v1 image and in the election.
fn reverted_async(obs: &TransplantObs, zone: &str, image: &str) -> Checked {
    match obs.zone(zone) {
        Some(z) if z.image == image && z.vm_state == "running" => {
            if z.election_seq.is_some() {
                Ok(Progress::Done)
            } else {
                not_yet(format!(
                    "{} back on {image}, sitter not in the election yet",
                    z.alias
                ))
            }
        }
        Some(z) => not_yet(format!("{} is {} on {}", z.alias, z.vm_state, z.image)),
        None => vanished(zone),
    }
}

/// Steps 3 and 7 and their rollback: a sitter off or on, in or out of
/// one-node-write mode, as the action wants.
fn sitter_shows(obs: &TransplantObs, action: &TransplantAction) -> Checked {
    use TransplantAction as T;
    match action {
        T::DisableSitter { zone } => zone_shows(
            obs,
            zone,
            |z| !z.sitter_enabled && z.election_seq.is_none(),
            |z| {
                format!(
                    "{}: sitter enabled {}, in election {}",
                    z.alias,
                    z.sitter_enabled,
                    z.election_seq.is_some()
                )
            },
        ),
        T::EnableSitter { zone } => zone_shows(
            obs,
            zone,
            |z| z.sitter_enabled && z.election_seq.is_some(),
            |z| {
                format!(
                    "{}: sitter enabled {}, not in the election yet",
                    z.alias, z.sitter_enabled
                )
            },
        ),
        T::PrimaryOnwm { zone } => zone_shows(
            obs,
            zone,
            |z| z.sitter_onwm && z.sitter_enabled && z.writable,
            |z| {
                format!(
                    "{}: oneNodeWriteMode {}, sitter {}, writable {}",
                    z.alias, z.sitter_onwm, z.sitter_enabled, z.writable
                )
            },
        ),
        T::PrimaryLeaveOnwm { zone } => zone_shows(
            obs,
            zone,
            |z| {
                !z.sitter_onwm
                    && z.sitter_enabled
                    && z.config_agent_enabled
                    && z.election_seq.is_some()
            },
            |z| {
                format!(
                    "{}: oneNodeWriteMode {}, sitter {}",
                    z.alias, z.sitter_onwm, z.sitter_enabled
                )
            },
        ),
        _ => unreachable!("not a sitter step: {action:?}"),
    }
}
