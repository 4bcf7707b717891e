//! Where `tritonctl ring` reads a ring from: a LevelDB ring directory (as
//! electric-moray serves it), a `manta-hash-ring` image in IMGAPI (fetched
//! and extracted as electric-moray's setup does), or a fash `serialize()`
//! JSON file (the offline form plans keep).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fashdb::image::Stamp;
use wire::fash::Ring;

use super::Failure;
use crate::clients::imgapi::Imgapi;
use crate::clients::{HttpApi, Unguarded, http_client};
use crate::gitops::redact::Endpoint;

/// A ring to read.
#[derive(Debug, Clone)]
pub enum RingSource {
    /// A LevelDB ring directory.
    Dir(PathBuf),
    /// fash's `serialize()` JSON.
    Json(PathBuf),
    /// An IMGAPI image, by uuid.
    Image { uuid: String, imgapi: Endpoint },
}

/// A ring as read, with what says where it came from.
pub struct Loaded {
    pub ring: Ring,
    pub stamp: Option<Stamp>,
    /// The directory, file or `image UUID`.
    pub label: String,
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl RingSource {
    /// `-l DIR` or `--image UUID` (with `--imgapi`).
    pub fn from_flags(
        location: Option<&Path>,
        image: Option<&str>,
        imgapi: Option<&Endpoint>,
    ) -> Result<RingSource, Failure> {
        match (location, image) {
            (Some(dir), None) => Ok(RingSource::Dir(dir.to_path_buf())),
            (None, Some(uuid)) => RingSource::image(uuid, imgapi),
            _ => Err(Failure::invalid(
                "name the ring: -l DIR (a ring directory) or --image UUID (with --imgapi URL)",
            )),
        }
    }

    fn image(uuid: &str, imgapi: Option<&Endpoint>) -> Result<RingSource, Failure> {
        if !looks_like_uuid(uuid) {
            return Err(Failure::invalid(format!(
                "--image {uuid:?}: not an image UUID"
            )));
        }
        let imgapi = imgapi.cloned().ok_or_else(|| {
            Failure::invalid(format!(
                "image {uuid}: give --imgapi URL (or TRITONCTL_IMGAPI) to fetch it from"
            ))
        })?;
        Ok(RingSource::Image {
            uuid: uuid.into(),
            imgapi,
        })
    }

    /// A positional ring: an existing directory (LevelDB), an existing file
    /// (fash JSON), or an image UUID.
    pub fn from_arg(arg: &str, imgapi: Option<&Endpoint>) -> Result<RingSource, Failure> {
        let p = Path::new(arg);
        if p.is_dir() {
            Ok(RingSource::Dir(p.to_path_buf()))
        } else if p.is_file() {
            Ok(RingSource::Json(p.to_path_buf()))
        } else if looks_like_uuid(arg) {
            RingSource::image(arg, imgapi)
        } else {
            Err(Failure::invalid(format!(
                "{arg}: no such ring directory or ring JSON file, and not an image UUID"
            )))
        }
    }

    pub fn label(&self) -> String {
        match self {
            RingSource::Dir(p) | RingSource::Json(p) => p.display().to_string(),
            RingSource::Image { uuid, .. } => format!("image {uuid}"),
        }
    }

    /// Reads the ring (a directory or image the way electric-moray loads
    /// one: fash's load checks, then every key).
    pub async fn load(&self) -> Result<Loaded, Failure> {
        let label = self.label();
        let (ring, stamp) = match self {
            RingSource::Dir(dir) => {
                let dir = dir.clone();
                let ring = tokio::task::spawn_blocking(move || fashdb::load(&dir))
                    .await
                    .map_err(|e| Failure::error(e.to_string()))?
                    .map_err(|e| Failure::error(e.to_string()))?;
                (ring, None)
            }
            RingSource::Json(file) => {
                let bytes = std::fs::read(file)
                    .map_err(|e| Failure::error(format!("{}: {e}", file.display())))?;
                let ring = Ring::from_json_slice(&bytes).map_err(|e| {
                    Failure::error(format!("{}: not a fash ring JSON: {e}", file.display()))
                })?;
                (ring, None)
            }
            RingSource::Image { uuid, imgapi } => {
                let api = Imgapi(HttpApi::new(
                    "imgapi",
                    imgapi.secret_url(),
                    http_client(Duration::from_secs(300)),
                    Arc::new(Unguarded),
                ));
                let bytes = api.file(uuid).await.map_err(|e| {
                    Failure::error(crate::gitops::redact::redact_urls(&e.to_string()))
                })?;
                let uuid = uuid.clone();
                let loaded = tokio::task::spawn_blocking(move || fashdb::load_image(&bytes, &uuid))
                    .await
                    .map_err(|e| Failure::error(e.to_string()))?
                    .map_err(|e| Failure::error(e.to_string()))?;
                (loaded.ring, loaded.stamp)
            }
        };
        Ok(Loaded { ring, stamp, label })
    }
}
