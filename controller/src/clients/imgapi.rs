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
