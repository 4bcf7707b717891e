//! IMGAPI: image manifests and files.

use wire::apis::ImageManifest;

use super::{ApiError, HttpApi};

#[derive(Clone)]
pub struct Imgapi(pub HttpApi);

impl Imgapi {
    /// The image, or None when IMGAPI does not have it.
    pub async fn image(&self, uuid: &str) -> Result<Option<ImageManifest>, ApiError> {
        match self.0.get(&format!("/images/{uuid}"), &[]).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The image's file (`GET /images/:uuid/file`), e.g. a ring image's
    /// gzip tar.
    pub async fn file(&self, uuid: &str) -> Result<Vec<u8>, ApiError> {
        self.0.get_bytes(&format!("/images/{uuid}/file")).await
    }
}

/// Creating an image as IMGAPI's admin import does it (`POST
/// /images/:uuid?action=import` with the manifest, `PUT
/// /images/:uuid/file`, `POST /images/:uuid?action=activate`): how
/// `sdc-imgadm import` and manta-adm publish a ring image.
impl Imgapi {
    /// Images matching IMGAPI's filters (`name`, `state`, `tag.<k>`).
    pub async fn images(&self, filters: &[(&str, String)]) -> Result<Vec<ImageManifest>, ApiError> {
        self.0.get("/images", filters).await
    }

    pub async fn import(
        &self,
        uuid: &str,
        manifest: &serde_json::Value,
    ) -> Result<ImageManifest, ApiError> {
        self.0
            .send(
                reqwest::Method::POST,
                &format!("/images/{uuid}"),
                &[("action", "import".to_string())],
                Some(manifest),
            )
            .await
    }

    pub async fn add_file(
        &self,
        uuid: &str,
        bytes: Vec<u8>,
        sha1: &str,
    ) -> Result<ImageManifest, ApiError> {
        self.0
            .put_bytes(
                &format!("/images/{uuid}/file"),
                &[
                    ("compression", "gzip".to_string()),
                    ("sha1", sha1.to_string()),
                ],
                bytes,
            )
            .await
    }

    pub async fn activate(&self, uuid: &str) -> Result<ImageManifest, ApiError> {
        self.0
            .send(
                reqwest::Method::POST,
                &format!("/images/{uuid}"),
                &[("action", "activate".to_string())],
                None::<&()>,
            )
            .await
    }
}

impl Imgapi {
    /// DeleteImage (a half-made image is removed).
    pub async fn delete(&self, uuid: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .0
            .send(
                reqwest::Method::DELETE,
                &format!("/images/{uuid}"),
                &[],
                None::<&()>,
            )
            .await?;
        Ok(())
    }
}
