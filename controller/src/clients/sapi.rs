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
        self.0
            .send(
                Method::PUT,
                &format!("/instances/{uuid}/upgrade"),
                &[],
                Some(&json!({"image_uuid": image_uuid})),
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

    pub async fn create_instance(
        &self,
        service_uuid: &str,
        params: Map<String, Value>,
        metadata: Map<String, Value>,
    ) -> Result<Instance, ApiError> {
        self.0
            .send(
                Method::POST,
                "/instances",
                &[],
                Some(
                    &json!({"service_uuid": service_uuid, "params": params, "metadata": metadata}),
                ),
            )
            .await
    }
}
