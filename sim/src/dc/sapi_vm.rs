//! The VMAPI and CNAPI rules behind SAPI's instance calls (sdc-sapi
//! `model.js`: `provisionZone`, `runTeardownHook`, `verifyZoneExists`).
//!
//! - CreateInstance asks VMAPI for the VM first: one that exists, in any
//!   state (VMAPI still answers for a destroyed VM), is left alone and
//!   nothing is provisioned; only a 404 leads to CreateVm.
//! - Upgrade and delete run the merged `teardown-hook` param first, through
//!   CNAPI `POST /servers/:server/execute` as
//!   `/usr/sbin/zlogin <zone> "<script>"`; the zone must exist in VMAPI
//!   (409 InvalidArgument `no such zone`), and a failed execute is
//!   500 TeardownHookError. The CNAPI fault rules of the control API apply
//!   to this internal call as to an HTTP one, so a test can make the hook
//!   fail with `FaultRule::error(Api::Cnapi, "POST", "/servers/*/execute",
//!   500, 1)`; so does a command that exits non-zero in the zone.
//! - Delete passes VMAPI's error through (a VM VMAPI does not know is its
//!   404) and keeps the instance.

use serde_json::Value;
use wire::apis::{ExecuteRequest, codes};

use super::Datacenter;
use super::error::ApiError;
use super::faults::Api;
use super::sapi::{is_vm, zone_params};
use super::state::{SapiMode, State};
use super::vmapi::VmCreate;

/// What CreateInstance does on the VMAPI side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmStep {
    /// An agent instance, proto mode, or a VM that already exists.
    Nothing,
    /// A provision job was started.
    Job(String),
}

impl Datacenter {
    /// `deployInstance` for a stored instance, under the lock.
    pub(crate) fn sapi_provision_step(
        &self,
        st: &mut State,
        uuid: &str,
    ) -> Result<VmStep, ApiError> {
        let Some(inst) = st.instances.get(uuid) else {
            return Ok(VmStep::Nothing);
        };
        if !is_vm(inst) || st.mode != SapiMode::Full || st.vms.contains_key(uuid) {
            return Ok(VmStep::Nothing);
        }
        let req = zone_params(st, uuid).and_then(|payload| VmCreate::parse(&payload))?;
        let (_, job) = self.provision_locked(st, req)?;
        Ok(VmStep::Job(job))
    }

    /// `runTeardownHook`: nothing without a `teardown-hook` param.
    pub(crate) fn sapi_teardown_hook(&self, uuid: &str) -> Result<(), ApiError> {
        let (script, server) = {
            let st = self.lock();
            let params = zone_params(&st, uuid)?;
            let script = match params.get("teardown-hook") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(true) | Value::Array(_))) => v.to_string(),
                Some(Value::Object(_)) => "[object Object]".into(),
                _ => return Ok(()),
            };
            let vm = st
                .vms
                .get(uuid)
                .ok_or_else(|| ApiError::invalid_argument(format!("no such zone: {uuid}")))?;
            (script, vm.vm.server_uuid.clone().unwrap_or_default())
        };
        let hook_error = |message: &str| ApiError::new(500, codes::TEARDOWN_HOOK, message);
        let decision = self.decide_fault(Api::Cnapi, "POST", &format!("/servers/{server}/execute"));
        if let Some(e) = decision.error {
            return Err(hook_error(e.message()));
        }
        let req = ExecuteRequest {
            // The simulated CNAPI wants a `#!` line; the command is SAPI's.
            script: format!("#!/bin/bash\n/usr/sbin/zlogin {uuid} \"{script}\"\n"),
            ..Default::default()
        };
        match self.cnapi_execute(&server, &req) {
            Err(e) => Err(hook_error(e.message())),
            // CNAPI's answer to a non-zero exit without `json`.
            Ok(r) if r.exit_code != 0 => Err(hook_error("Error executing on remote system")),
            Ok(_) => Ok(()),
        }
    }
}
