//! VMAPI: VMs and jobs.

use wire::apis::{Job, JobExecution, Vm};

use super::listed::Listed;
use super::{ApiError, HttpApi};

#[derive(Clone)]
pub struct Vmapi(pub HttpApi);

impl Vmapi {
    pub async fn vm(&self, uuid: &str) -> Result<Vm, ApiError> {
        self.0.get(&format!("/vms/{uuid}"), &[]).await
    }

    /// VMs matching VMAPI's strict filters (e.g. `("tag.smartdc_role", "manatee")`).
    /// Each VM decoded on its own (see `listed.rs`).
    pub async fn vms(&self, filters: &[(&str, String)]) -> Result<Listed<Vm>, ApiError> {
        self.0.list("/vms", filters).await
    }

    pub async fn job(&self, uuid: &str) -> Result<serde_json::Value, ApiError> {
        self.0.get(&format!("/jobs/{uuid}"), &[]).await
    }

    /// One job, typed.
    pub async fn get_job(&self, uuid: &str) -> Result<Job, ApiError> {
        self.0.get(&format!("/jobs/{uuid}"), &[]).await
    }

    /// The VM's jobs, newest first (VMAPI ListVmJobs).
    pub async fn vm_jobs(&self, vm: &str) -> Result<Vec<Job>, ApiError> {
        self.0.get(&format!("/vms/{vm}/jobs"), &[]).await
    }

    /// Whether a job of `task` (e.g. `reprovision`) is queued or running on
    /// the VM: a mutation already dispatched, whose outcome is not known yet.
    pub async fn job_in_flight(&self, vm: &str, task: &str) -> Result<bool, ApiError> {
        Ok(self.vm_jobs(vm).await?.iter().any(|j| {
            j.task() == Some(task)
                && matches!(j.execution, JobExecution::Queued | JobExecution::Running)
        }))
    }
}
