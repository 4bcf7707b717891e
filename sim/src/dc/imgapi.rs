//! IMGAPI: image manifests and their files.

use serde_json::Value;
use wire::apis::{ImageFile, ImageManifest, ImageState, JsonMap, codes};

use super::error::ApiError;
use super::ids::is_uuid;
use super::params::{str_param, uint_param};
use super::state::SimImage;
use super::{Datacenter, now_iso};

const MAX_LIMIT: u64 = 1000;
const COMPRESSIONS: &[&str] = &["gzip", "bzip2", "xz", "none"];

/// Lowercase hex SHA-1 of an image file: IMGAPI manifests name files by it
/// (a checksum, never a security check).
pub(super) fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn image_not_found(uuid: &str) -> ApiError {
    ApiError::not_found(format!("image \"{uuid}\" was not found"))
}

/// `name=~sub` substring, otherwise exact.
fn tilde_match(want: &str, have: &str) -> bool {
    match want.strip_prefix('~') {
        Some(sub) => have.contains(sub),
        None => have == want,
    }
}

impl Datacenter {
    /// `GET /images`: filters `owner`, `state` (default `active`), `name`
    /// and `version` (`~` = substring), `public`, `os`, `type` (`!` =
    /// exclude), `tag.<k>`; `limit` + inclusive `marker`; `sort`. Unknown
    /// parameters are ignored, as IMGAPI does.
    pub fn imgapi_list_images(&self, p: &JsonMap) -> Result<Vec<ImageManifest>, ApiError> {
        let limit = match uint_param(p, "limit") {
            Ok(Some(n)) if (1..=MAX_LIMIT).contains(&n) => n as usize,
            Ok(None) => MAX_LIMIT as usize,
            _ => {
                return Err(ApiError::imgapi_invalid(
                    "limit",
                    format!("invalid limit, must be an integer between 1 and {MAX_LIMIT}"),
                ));
            }
        };
        let state = str_param(p, "state").unwrap_or_else(|| "active".into());
        if ![
            "active",
            "unactivated",
            "disabled",
            "all",
            "creating",
            "failed",
        ]
        .contains(&state.as_str())
        {
            return Err(ApiError::imgapi_invalid(
                "state",
                format!("invalid state: \"{state}\""),
            ));
        }
        let desc = match str_param(p, "sort").as_deref() {
            None | Some("published_at") | Some("published_at.asc") => false,
            Some("published_at.desc") => true,
            Some(other) => {
                return Err(ApiError::imgapi_invalid(
                    "sort",
                    format!("invalid sort: \"{other}\""),
                ));
            }
        };
        let public = match str_param(p, "public").as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::imgapi_invalid("public", "invalid public value")),
        };
        let tags: Vec<(String, String)> = p
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("tag.")
                    .map(|t| (t.to_string(), super::params::scalar_string(v)))
            })
            .collect();

        let st = self.lock();
        let mut imgs: Vec<&ImageManifest> = st
            .images
            .values()
            .map(|i| &i.manifest)
            .filter(|m| state == "all" || m.state.as_str() == state)
            .filter(|m| str_param(p, "owner").is_none_or(|o| m.owner == o))
            .filter(|m| str_param(p, "name").is_none_or(|n| tilde_match(&n, &m.name)))
            .filter(|m| str_param(p, "version").is_none_or(|v| tilde_match(&v, &m.version)))
            .filter(|m| str_param(p, "os").is_none_or(|o| m.os == o))
            .filter(|m| {
                str_param(p, "type").is_none_or(|t| match t.strip_prefix('!') {
                    Some(not) => m.kind != not,
                    None => m.kind == t,
                })
            })
            .filter(|m| public.is_none_or(|b| m.public == b))
            .filter(|m| {
                tags.iter().all(|(k, want)| {
                    m.tags
                        .as_ref()
                        .and_then(|t| t.get(k))
                        .is_some_and(|v| super::params::scalar_string(v) == *want)
                })
            })
            .collect();
        let key = |m: &ImageManifest| (m.published_at.clone().unwrap_or_default(), m.uuid.clone());
        imgs.sort_by_key(|m| key(m));
        if desc {
            imgs.reverse();
        }
        // `marker` is inclusive: sdc-clients drops the repeated first entry.
        if let Some(marker) = str_param(p, "marker") {
            let mkey = if is_uuid(&marker) {
                st.images
                    .get(&marker)
                    .map(|i| key(&i.manifest))
                    .unwrap_or((String::new(), marker.clone()))
            } else {
                (marker.clone(), String::new())
            };
            imgs.retain(|m| if desc { key(m) <= mkey } else { key(m) >= mkey });
        }
        Ok(imgs.into_iter().take(limit).cloned().collect())
    }

    pub fn imgapi_get_image(&self, uuid: &str) -> Result<ImageManifest, ApiError> {
        self.lock()
            .images
            .get(uuid)
            .map(|i| i.manifest.clone())
            .ok_or_else(|| image_not_found(uuid))
    }

    /// `POST /images/:uuid?action=...` (import, activate, enable, disable,
    /// update). `body` is the JSON body (the manifest for `import`).
    pub fn imgapi_image_action(
        &self,
        uuid: &str,
        p: &JsonMap,
        body: &JsonMap,
    ) -> Result<ImageManifest, ApiError> {
        let action = str_param(p, "action").unwrap_or_default();
        match action.as_str() {
            "import" => self.imgapi_import(uuid, body),
            "activate" => self.with_image(uuid, |img| {
                if img.manifest.state == ImageState::Active {
                    return Err(ApiError::new(
                        422,
                        codes::IMAGE_ALREADY_ACTIVATED,
                        format!("image \"{uuid}\" is already activated"),
                    ));
                }
                if img.file.is_none() {
                    return Err(ApiError::new(
                        422,
                        codes::NO_ACTIVATION_NO_FILE,
                        format!("image \"{uuid}\" cannot be activated: it has no file"),
                    ));
                }
                img.manifest.state = ImageState::Active;
                img.manifest.disabled = false;
                if img.manifest.published_at.is_none() {
                    img.manifest.published_at = Some(now_iso());
                }
                Ok(())
            }),
            "disable" => self.with_image(uuid, |img| {
                img.manifest.disabled = true;
                if img.manifest.state == ImageState::Active {
                    img.manifest.state = ImageState::Disabled;
                }
                Ok(())
            }),
            "enable" => self.with_image(uuid, |img| {
                img.manifest.disabled = false;
                if img.manifest.state == ImageState::Disabled {
                    img.manifest.state = ImageState::Active;
                }
                Ok(())
            }),
            "update" => self.with_image(uuid, |img| {
                let m = &mut img.manifest;
                for (k, v) in body.iter().chain(p.iter()) {
                    match k.as_str() {
                        "description" => m.description = v.as_str().map(str::to_string),
                        "name" => {
                            if let Some(s) = v.as_str() {
                                m.name = s.to_string()
                            }
                        }
                        "version" => {
                            if let Some(s) = v.as_str() {
                                m.version = s.to_string()
                            }
                        }
                        "public" => m.public = v.as_bool().unwrap_or(v.as_str() == Some("true")),
                        "tags" => m.tags = v.as_object().cloned(),
                        "requirements" => m.requirements = v.as_object().cloned(),
                        "action" | "uuid" | "state" | "files" | "published_at" => {}
                        other => {
                            m.extra.insert(other.to_string(), v.clone());
                        }
                    }
                }
                Ok(())
            }),
            "" => Err(ApiError::imgapi_invalid("action", "no action specified")),
            other => Err(ApiError::imgapi_invalid(
                "action",
                format!("\"{other}\" is not a supported action"),
            )),
        }
    }

    fn with_image(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut SimImage) -> Result<(), ApiError>,
    ) -> Result<ImageManifest, ApiError> {
        let mut st = self.lock();
        let img = st
            .images
            .get_mut(uuid)
            .ok_or_else(|| image_not_found(uuid))?;
        f(img)?;
        Ok(img.manifest.clone())
    }

    /// AdminImportImage: the manifest's uuid must match the path; the image
    /// starts `unactivated` with no files, whatever the manifest said.
    fn imgapi_import(&self, uuid: &str, body: &JsonMap) -> Result<ImageManifest, ApiError> {
        let mut m: ImageManifest = serde_json::from_value(Value::Object(body.clone()))
            .map_err(|e| ApiError::imgapi_invalid("manifest", format!("invalid manifest: {e}")))?;
        if m.uuid != uuid {
            return Err(ApiError::imgapi_invalid(
                "uuid",
                format!("manifest uuid \"{}\" does not match \"{uuid}\"", m.uuid),
            ));
        }
        if m.name.is_empty() || m.version.is_empty() {
            return Err(ApiError::imgapi_invalid(
                "name",
                "name and version are required",
            ));
        }
        let mut st = self.lock();
        if st.images.contains_key(uuid) {
            return Err(ApiError::new(
                409,
                codes::IMAGE_UUID_ALREADY_EXISTS,
                format!("image uuid \"{uuid}\" already exists"),
            ));
        }
        if m.v == 0 {
            m.v = 2;
        }
        m.state = ImageState::Unactivated;
        m.disabled = false;
        m.files.clear();
        st.images.insert(
            uuid.to_string(),
            SimImage {
                manifest: m.clone(),
                file: None,
            },
        );
        Ok(m)
    }

    /// `PUT /images/:uuid/file?compression=...[&sha1=...]`.
    pub fn imgapi_add_file(
        &self,
        uuid: &str,
        p: &JsonMap,
        bytes: Vec<u8>,
    ) -> Result<ImageManifest, ApiError> {
        let compression = str_param(p, "compression").ok_or_else(|| {
            ApiError::imgapi_invalid("compression", "missing \"compression\" parameter")
        })?;
        if !COMPRESSIONS.contains(&compression.as_str()) {
            return Err(ApiError::imgapi_invalid(
                "compression",
                format!("invalid compression \"{compression}\""),
            ));
        }
        let sha1 = sha1_hex(&bytes);
        if let Some(want) = str_param(p, "sha1")
            && want != sha1
        {
            return Err(ApiError::new(
                400,
                codes::UPLOAD,
                format!("checksum error: expected sha1 {want}, got {sha1}"),
            ));
        }
        self.with_image(uuid, |img| {
            if img.manifest.state == ImageState::Active {
                return Err(ApiError::new(
                    422,
                    codes::IMAGE_FILES_IMMUTABLE,
                    format!("cannot modify files on activated image {uuid}"),
                ));
            }
            img.manifest.files = vec![ImageFile {
                sha1,
                size: bytes.len() as u64,
                compression,
                dataset_guid: str_param(p, "dataset_guid"),
                extra: JsonMap::new(),
            }];
            img.file = Some(bytes);
            Ok(())
        })
    }

    /// `GET /images/:uuid/file`: the bytes and their manifest entry.
    pub fn imgapi_get_file(&self, uuid: &str) -> Result<(Vec<u8>, ImageFile), ApiError> {
        let st = self.lock();
        let img = st.images.get(uuid).ok_or_else(|| image_not_found(uuid))?;
        match (&img.file, img.manifest.files.first()) {
            (Some(b), Some(f)) => Ok((b.clone(), f.clone())),
            _ => Err(ApiError::not_found(format!("image \"{uuid}\" has no file"))),
        }
    }

    pub fn imgapi_delete_image(&self, uuid: &str) -> Result<(), ApiError> {
        let mut st = self.lock();
        if !st.images.contains_key(uuid) {
            return Err(image_not_found(uuid));
        }
        let deps: Vec<String> = st
            .images
            .values()
            .filter(|i| i.manifest.origin.as_deref() == Some(uuid))
            .map(|i| i.manifest.uuid.clone())
            .collect();
        if !deps.is_empty() {
            return Err(ApiError::new(
                422,
                "ImageHasDependentImages",
                format!(
                    "image \"{uuid}\" has {} dependent incremental image(s): {}",
                    deps.len(),
                    deps.join(", ")
                ),
            ));
        }
        st.images.remove(uuid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::sha1_hex;

    #[test]
    fn known_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            sha1_hex(&million_a),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }
}
