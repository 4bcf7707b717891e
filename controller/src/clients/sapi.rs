//! SAPI: applications, services, instances. Lists come back as
//! [`Listed`]: each record decoded on its own, since SAPI stores whatever
//! JSON types a client sent (see `listed.rs` for what a caller does with an
//! unreadable one).

use reqwest::Method;
use serde_json::{Map, Value, json};
use wire::apis::{Application, Instance, Service};

use super::listed::Listed;
use super::{ApiError, HttpApi};

#[derive(Clone)]
pub struct Sapi(pub HttpApi);

impl Sapi {
    pub async fn applications(&self, name: &str) -> Result<Listed<Application>, ApiError> {
        self.0
            .list("/applications", &[("name", name.to_string())])
            .await
    }

    pub async fn services(
        &self,
        application_uuid: &str,
        name: Option<&str>,
    ) -> Result<Listed<Service>, ApiError> {
        let mut q = vec![("application_uuid", application_uuid.to_string())];
        if let Some(n) = name {
            q.push(("name", n.to_string()));
        }
        self.0.list("/services", &q).await
    }

    pub async fn instances(&self, service_uuid: &str) -> Result<Listed<Instance>, ApiError> {
        self.0
            .list("/instances", &[("service_uuid", service_uuid.to_string())])
            .await
    }

    pub async fn instance(&self, uuid: &str) -> Result<Instance, ApiError> {
        self.0.get(&format!("/instances/{uuid}"), &[]).await
    }

    /// Reprovision an instance onto another image (UpgradeInstance); the
    /// zone's delegated dataset is kept.
    pub async fn upgrade_instance(
        &self,
        uuid: &str,
        image_uuid: &str,
    ) -> Result<Instance, ApiError> {
        // Synchronous: SAPI answers once the reprovision job ends.
        self.0
            .send_waiting(
                Method::PUT,
                &format!("/instances/{uuid}/upgrade"),
                Some(&json!({"image_uuid": image_uuid})),
                self.0.timeouts().sapi_job,
            )
            .await
    }

    /// Merge (`update`) or remove (`delete`) metadata keys of an instance.
    pub async fn update_instance_metadata(
        &self,
        uuid: &str,
        action: &str,
        metadata: Map<String, Value>,
    ) -> Result<Instance, ApiError> {
        self.0
            .send(
                Method::PUT,
                &format!("/instances/{uuid}"),
                &[],
                Some(&json!({"action": action, "metadata": metadata})),
            )
            .await
    }

    /// CreateInstance with the instance's (and zone's) uuid chosen by the
    /// caller, so that a call whose answer is lost can be looked up.
    /// Synchronous: SAPI answers once the provision job ends.
    pub async fn create_instance(
        &self,
        uuid: &str,
        service_uuid: &str,
        params: Map<String, Value>,
        metadata: Map<String, Value>,
    ) -> Result<Instance, ApiError> {
        self.0
            .send_waiting(
                Method::POST,
                "/instances",
                Some(&json!({"uuid": uuid, "service_uuid": service_uuid,
                             "params": params, "metadata": metadata})),
                self.0.timeouts().sapi_job,
            )
            .await
    }

    /// DeleteInstance. Synchronous: SAPI answers once the destroy job ends.
    pub async fn delete_instance(&self, uuid: &str) -> Result<(), ApiError> {
        let _: Value = self
            .0
            .send_waiting(
                Method::DELETE,
                &format!("/instances/{uuid}"),
                None::<&()>,
                self.0.timeouts().sapi_delete,
            )
            .await?;
        Ok(())
    }

    /// Merge metadata keys into an application (UpdateApplication), e.g.
    /// Manta's `HASH_RING_IMAGE`.
    pub async fn update_application_metadata(
        &self,
        uuid: &str,
        metadata: Map<String, Value>,
    ) -> Result<Application, ApiError> {
        self.0
            .send(
                Method::PUT,
                &format!("/applications/{uuid}"),
                &[],
                Some(&json!({"action": "update", "metadata": metadata})),
            )
            .await
    }
}
