//! The transplant's actions: each looks at the world first and acts only
//! when its effect is absent, so a resumed step never repeats one.

use super::{TransplantAct, TransplantRunner};
use crate::error::WorldError;
use crate::transplant::{TransplantAction, TransplantObs, ZoneObs, moray_compatible};

/// SAPI metadata that keeps a v2 sitter off and in one-node-write mode.
const V2_SETUP_METADATA: [&str; 2] = ["DISABLE_SITTER", "ONE_NODE_WRITE_MODE"];

fn observed<'o>(obs: &'o TransplantObs, zone: &str) -> Result<&'o ZoneObs, WorldError> {
    obs.zone(zone)
        .ok_or_else(|| WorldError::Missing(format!("zone {zone} gone")))
}

impl<W: TransplantAct + ?Sized> TransplantRunner<'_, W> {
    /// One step's action, by runbook phase.
    pub(super) async fn act_step(&self, action: &TransplantAction) -> Result<(), WorldError> {
        use TransplantAction as T;
        let obs = self.world.observe(&self.shard).await?;
        let w = self.world;
        match action {
            T::CheckMoray
            | T::RecordInitialState { .. }
            | T::Approval { .. }
            | T::WaitPeers { .. } => Ok(()),
            T::UpgradeMoray { zone, image } => self.upgrade_moray(&obs, zone, image).await,
            T::StopWrites => self.set_morays(&obs, false).await,
            T::StartWrites => self.set_morays(&obs, true).await,
            T::DisableSitter { zone } => {
                if obs.zone(zone).is_some_and(|z| z.sitter_enabled) {
                    w.svcadm(zone, false, "manatee-sitter").await?;
                }
                Ok(())
            }
            T::EnableSitter { zone } => {
                if obs.zone(zone).is_some_and(|z| !z.sitter_enabled) {
                    w.svcadm(zone, true, "manatee-sitter").await?;
                }
                Ok(())
            }
            T::PrimaryOnwm { zone } => self.primary_enter_onwm(&obs, zone).await,
            T::PrimaryLeaveOnwm { zone } => self.primary_leave_onwm(&obs, zone).await,
            T::Snapshot { zone, name } => {
                if obs.zone(zone).is_some_and(|z| !z.snapshots.contains(name)) {
                    w.snapshot(zone, name).await?;
                }
                Ok(())
            }
            T::ReleaseSnapshot { zone, name } => {
                if obs.zone(zone).is_some_and(|z| z.snapshots.contains(name)) {
                    w.destroy_snapshot(zone, name).await?;
                }
                Ok(())
            }
            T::SetServiceImage { shard, image } => w.set_service_image(shard, image).await,
            T::CreateV2Instance {
                shard,
                server,
                alias,
            } => self.create_v2_instance(shard, server, alias).await,
            T::ReprovisionV2 { zone, image } => self.reprovision_v2(&obs, zone, image).await,
            T::RevertAsync { zone, image } => self.revert_async(&obs, zone, image).await,
            T::PrepareReceive { zone } => self.prepare_receive(zone).await,
            T::Send { from, snapshot, to } => self.send(from, snapshot, to).await,
            T::WriteOnwmState {
                shard,
                zone,
                reason,
            } => {
                if obs.state.is_none() {
                    let zone = self.need_zone(zone).await?;
                    w.create_onwm_state(shard, &zone, reason).await?;
                }
                Ok(())
            }
            T::DeleteState { shard, reason } => {
                if obs.state.is_some() {
                    w.delete_own_state(shard, reason).await?;
                }
                Ok(())
            }
            T::EnableV2 { zone } => self.enable_v2(zone).await,
            T::ReprovisionPeer { zone, image } => self.reprovision_peer(&obs, zone, image).await,
            T::LeaveOnwm {
                shard,
                zone,
                reason,
            } => self.leave_onwm(shard, zone, reason).await,
            T::RetireZone { zone } => {
                if let Some(zone) = self.zone(zone).await?
                    && obs.zone(&zone).is_some()
                {
                    w.delete_instance(&zone).await?;
                }
                Ok(())
            }
        }
    }

    /// Step 1: take one old moray out and reprovision it.
    async fn upgrade_moray(
        &self,
        obs: &TransplantObs,
        zone: &str,
        image: &str,
    ) -> Result<(), WorldError> {
        if let Some(m) = obs.morays.iter().find(|m| m.zone == zone)
            && !moray_compatible(&m.image_version)
        {
            self.world.set_moray(zone, false).await?;
            self.world.reprovision(zone, image).await?;
        }
        Ok(())
    }

    /// Steps 6 and 7: every moray off (stop writes) or back on.
    async fn set_morays(&self, obs: &TransplantObs, enable: bool) -> Result<(), WorldError> {
        for m in obs.morays.iter().filter(|m| m.enabled != enable) {
            self.world.set_moray(&m.zone, enable).await?;
        }
        Ok(())
    }

    /// Step 3: the v1 primary takes writes alone.
    async fn primary_enter_onwm(&self, obs: &TransplantObs, zone: &str) -> Result<(), WorldError> {
        let z = observed(obs, zone)?;
        if !z.sitter_onwm {
            if z.config_agent_enabled {
                self.world.svcadm(zone, false, "config-agent").await?;
            }
            self.world.set_sitter_onwm(zone, true).await?;
            self.world.restart_sitter(zone).await?;
        }
        Ok(())
    }

    /// Rollback of step 3: config-agent rewrites sitter.json, the sitter
    /// restarts into normal mode.
    async fn primary_leave_onwm(&self, obs: &TransplantObs, zone: &str) -> Result<(), WorldError> {
        let w = self.world;
        if !observed(obs, zone)?.config_agent_enabled {
            w.svcadm(zone, true, "config-agent").await?;
        }
        let now = w.observe(&self.shard).await?;
        let z = now
            .zone(zone)
            .ok_or_else(|| WorldError::Missing("zone gone".into()))?;
        if z.sitter_onwm {
            return Err(WorldError::Unexpected(format!(
                "config-agent did not rewrite sitter.json of {zone} (oneNodeWriteMode still true)"
            )));
        }
        if !z.sitter_enabled {
            w.svcadm(zone, true, "manatee-sitter").await?;
        } else {
            // Running with the ONWM config it started with (or not in the
            // election yet): restart to pick up the change.
            w.restart_sitter(zone).await?;
        }
        Ok(())
    }

    /// Step 5, new instance: on the primary's server, sitter off, ONWM.
    async fn create_v2_instance(
        &self,
        shard: &str,
        server: &str,
        alias: &str,
    ) -> Result<(), WorldError> {
        if self.zone(&format!("alias:{alias}")).await?.is_none() {
            self.world
                .create_instance(
                    shard,
                    server,
                    alias,
                    &[("DISABLE_SITTER", true), ("ONE_NODE_WRITE_MODE", true)],
                )
                .await?;
        }
        Ok(())
    }

    /// Step 5, reprovisioned async: sitter off, ONWM, then the v2 image.
    async fn reprovision_v2(
        &self,
        obs: &TransplantObs,
        zone: &str,
        image: &str,
    ) -> Result<(), WorldError> {
        if observed(obs, zone)?.image != image {
            for k in V2_SETUP_METADATA {
                self.world.set_metadata(zone, k, Some(true)).await?;
            }
            self.world.reprovision(zone, image).await?;
        }
        Ok(())
    }

    /// Rollback of step 5 (reprovisioned async): back onto its v1 image.
    async fn revert_async(
        &self,
        obs: &TransplantObs,
        zone: &str,
        image: &str,
    ) -> Result<(), WorldError> {
        let w = self.world;
        let z = observed(obs, zone)?;
        for k in V2_SETUP_METADATA {
            if z.metadata.contains_key(k) {
                w.set_metadata(zone, k, None).await?;
            }
        }
        if z.image != image {
            w.reprovision(zone, image).await?;
        } else if !z.sitter_enabled {
            w.svcadm(zone, true, "manatee-sitter").await?;
        }
        Ok(())
    }

    /// Step 5: empty the v2 node's dataset for the receive; never while its
    /// sitter runs.
    async fn prepare_receive(&self, key: &str) -> Result<(), WorldError> {
        let zone = self.need_zone(key).await?;
        let obs = self.world.observe(&self.shard).await?;
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
            self.world.destroy_dataset(&zone).await?;
        }
        Ok(())
    }

    /// Step 6: zfs send | zfs recv, once.
    async fn send(&self, from: &str, snapshot: &str, to: &str) -> Result<(), WorldError> {
        let to = self.need_zone(to).await?;
        let obs = self.world.observe(&self.shard).await?;
        let z = obs
            .zone(&to)
            .ok_or_else(|| WorldError::Missing("receiver not observed".into()))?;
        // Started already when the receiving dataset exists (bytes
        // arriving, or done with the snapshot); a failed receive leaves none.
        if z.dataset_bytes.is_none() && !z.snapshots.iter().any(|s| s == snapshot) {
            self.world.send(from, snapshot, &to).await?;
        }
        Ok(())
    }

    /// Step 7, the point of no return: the v2 sitter starts.
    async fn enable_v2(&self, key: &str) -> Result<(), WorldError> {
        let zone = self.need_zone(key).await?;
        let obs = self.world.observe(&self.shard).await?;
        if obs.zone(&zone).is_some_and(|z| !z.sitter_enabled) {
            self.world.svcadm(&zone, true, "manatee-sitter").await?;
        }
        Ok(())
    }

    /// Steps 8 and 9: a v1 peer onto the v2 image, setup metadata cleared.
    async fn reprovision_peer(
        &self,
        obs: &TransplantObs,
        zone: &str,
        image: &str,
    ) -> Result<(), WorldError> {
        let z = observed(obs, zone)?;
        if z.image != image {
            for k in V2_SETUP_METADATA {
                if z.metadata.contains_key(k) {
                    self.world.set_metadata(zone, k, None).await?;
                }
            }
            self.world.reprovision(zone, image).await?;
        }
        Ok(())
    }

    /// Step 8: the v2 primary leaves one-node-write mode.
    async fn leave_onwm(&self, shard: &str, key: &str, reason: &str) -> Result<(), WorldError> {
        let w = self.world;
        let zone = self.need_zone(key).await?;
        let obs = w.observe(&self.shard).await?;
        let z = obs
            .zone(&zone)
            .ok_or_else(|| WorldError::Missing("v2 primary not observed".into()))?;
        let st = obs
            .state
            .as_ref()
            .ok_or_else(|| WorldError::Missing("no cluster state".into()))?;
        if !st.is_one_node_write_mode() {
            return Ok(());
        }
        for k in ["ONE_NODE_WRITE_MODE", "DISABLE_SITTER"] {
            if z.metadata.contains_key(k) {
                w.set_metadata(&zone, k, None).await?;
            }
        }
        // The sitter reads its config only at start: stop it, lift our
        // freeze, start it (manatee user guide, ONWM -> HA).
        if z.sitter_enabled {
            w.svcadm(&zone, false, "manatee-sitter").await?;
        }
        if st.freeze.reason() == Some(reason) {
            w.unfreeze_own(shard, reason).await?;
        }
        w.svcadm(&zone, true, "manatee-sitter").await?;
        Ok(())
    }
}
