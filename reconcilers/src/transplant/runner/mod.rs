//! The transplant's world traits and its step runner.

use std::time::Duration;

use async_trait::async_trait;
use crds::status::OperationStatus;

use super::{MORAY_COMPATIBLE_MIN_VERSION, TransplantAction, TransplantObs, moray_compatible};
use crate::clock::Clock;
use crate::error::{BlockReason, Unhealthy, WaitReason, WorldError};
use crate::operation::{Gate, Progress, StepRunner};

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
