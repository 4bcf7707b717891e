//! The shard split's calls made as a controller makes them (**driver**):
//! SAPI CreateInstance of `postgres` and `moray` instances tagged with the
//! operation, SAPI UpdateInstance of the metadata manta-reshard changes
//! (`SERVICE_NAME`, `SHARD`, `MANATEE_SHARD_PATH`, alias), and `svcadm` in
//! the zone through CNAPI execute. What the datacenter does in answer is
//! the **world** (`scenario.rs`): a new `postgres` zone boots a sitter in
//! the shard its metadata names, and a sitter started again renders
//! `shardPath` from SAPI then (config-agent).

use std::time::Duration;

use serde_json::{Value, json};
use wire::apis::{ExecuteRequest, Instance, JsonMap};

use crate::dc::Datacenter;
use crate::manatee::Zone;
use crate::manta::split::{SplitCalls, SplitError};

/// The tag manta-reshard puts on the peers (and morays) of a plan.
pub const PLAN_TAG: &str = "manta_reshard_plan";

fn api(call: &'static str, e: impl std::fmt::Display) -> SplitError {
    SplitError::Api {
        call,
        message: e.to_string(),
    }
}

fn obj(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// The short shard name manta-reshard writes into `SHARD` (`7` of
/// `7.moray.<domain>`).
pub fn short_name(shard: &str) -> &str {
    shard.split('.').next().unwrap_or(shard)
}

/// The SAPI metadata that places a postgres or moray zone in `shard`.
pub fn shard_metadata(shard: &str) -> JsonMap {
    obj(json!({
        "SERVICE_NAME": shard,
        "SHARD": short_name(shard),
        "MANATEE_SHARD_PATH": format!("/manatee/{shard}"),
    }))
}

/// SAPI CreateInstance of a `service_uuid` zone (postgres or moray) for
/// `shard` on `server`, tagged with `plan`.
pub async fn create_instance(
    dc: &Datacenter,
    service_uuid: &str,
    shard: &str,
    server: &str,
    alias: &str,
    plan: &str,
) -> Result<Instance, SplitError> {
    let p = obj(json!({
        "service_uuid": service_uuid,
        "params": {
            "server_uuid": server,
            "alias": alias,
            "tags": {PLAN_TAG: plan},
        },
        "metadata": shard_metadata(shard),
    }));
    dc.sapi_create_instance(&p)
        .await
        .map(|(inst, _job)| inst.into_view())
        .map_err(|e| api("sapi CreateInstance", e))
}

/// The split's zone calls through SAPI and CNAPI.
pub struct SapiCalls {
    pub dc: Datacenter,
    /// Real time allowed for the zone to follow a call.
    pub timeout: Duration,
}

impl SapiCalls {
    /// `zlogin <zone> svcadm <action> manatee-sitter` through CNAPI execute.
    pub fn svcadm(&self, zone: &str, action: &str) -> Result<(), SplitError> {
        let server = self
            .dc
            .vm(zone)
            .and_then(|v| v.server_uuid)
            .ok_or_else(|| api("vmapi GetVm", format!("no server for zone {zone}")))?;
        let req = ExecuteRequest {
            script: format!(
                "#!/bin/bash\nset -o errexit\nzlogin {zone} svcadm {action} manatee-sitter\n"
            ),
            json: true,
            ..Default::default()
        };
        let r = self
            .dc
            .cnapi_execute(&server, &req)
            .map_err(|e| api("cnapi execute", e))?;
        if r.exit_code != 0 {
            return Err(api("svcadm", r.stderr));
        }
        Ok(())
    }

    async fn until(&self, what: String, f: impl Fn() -> bool) -> Result<(), SplitError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while !f() {
            if tokio::time::Instant::now() >= deadline {
                return Err(SplitError::Timeout(self.timeout, what));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl SplitCalls for SapiCalls {
    async fn disable_sitter(&self, zone: &Zone) -> Result<(), SplitError> {
        self.svcadm(zone.zone_id(), "disable")?;
        self.until(format!("{} sitter stopping", zone.zone_id()), || {
            !zone.is_running()
        })
        .await
    }

    async fn boot_into(&self, zone: &Zone, new_shard: &str) -> Result<(), SplitError> {
        let z = zone.zone_id();
        let alias = format!(
            "{}.postgres-{}",
            short_name(new_shard),
            &z[..z.len().min(8)]
        );
        let p = obj(json!({
            "action": "update",
            "params": {"alias": alias},
            "metadata": shard_metadata(new_shard),
        }));
        self.dc
            .sapi_update_instance(z, &p)
            .map_err(|e| api("sapi UpdateInstance", e))?;
        self.svcadm(z, "enable")?;
        self.until(format!("{z} sitter booting into {new_shard}"), || {
            zone.is_running() && zone.boot_options().shard == new_shard
        })
        .await
    }
}
