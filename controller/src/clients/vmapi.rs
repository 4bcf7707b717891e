//! VMAPI: VMs and jobs.

use wire::apis::Vm;

use super::{ApiError, HttpApi};

#[derive(Clone)]
pub struct Vmapi(pub HttpApi);

impl Vmapi {
    pub async fn vm(&self, uuid: &str) -> Result<Vm, ApiError> {
        self.0.get(&format!("/vms/{uuid}"), &[]).await
    }

    /// VMs matching VMAPI's strict filters (e.g. `("tag.smartdc_role", "manatee")`).
    pub async fn vms(&self, filters: &[(&str, String)]) -> Result<Vec<Vm>, ApiError> {
        self.0.get("/vms", filters).await
    }

    pub async fn job(&self, uuid: &str) -> Result<serde_json::Value, ApiError> {
        self.0.get(&format!("/jobs/{uuid}"), &[]).await
    }
}
