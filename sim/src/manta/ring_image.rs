//! The hash ring as Manta ships it: an IMGAPI image that the `manta` SAPI
//! application's `HASH_RING_IMAGE` metadata names (research/triton-apis.md
//! §4.3, research/resharding.md §1.7 and §2).
//!
//! The image file is what Manta keeps there (`fashdb::image`): a gzip tar
//! of fash's LevelDB ring directory `hash_ring/` (the layout electric-moray
//! serves from, written by `fashdb::write_ring`), with manta-reshard's stamp
//! `hash_ring/manta_hash_ring_stamp.json` (`{image_uuid, date,
//! source_zone}`) naming the image. The manifest is the one `manta-adm
//! create-topology` and manta-reshard write: name `manta-hash-ring`, type
//! and os `other`, not public, one `gzip` file, tags when given (manta-reshard
//! tags its rings with `manta_reshard_plan`); uploaded through import,
//! add-file and activate, so the image is listable and fetchable through
//! the simulated IMGAPI like any other. (The fash `serialize()` JSON stays
//! the offline form: documents, plans and reviews.)
//!
//! Loading: [`follow_ring_image`] plays the part of electric-moray's setup
//! and of manta-reshard's ring update script for one e-m: whenever
//! `HASH_RING_IMAGE` names an image other than the one the e-m's ring came
//! from (its stamp, [`ElectricMoray::ring_image`]), it fetches the image file,
//! parses the ring and installs it. An image that cannot be loaded leaves the
//! previous ring in service and is reported in the e-m's status
//! (`ring_image_error`), as a failed update script leaves the old LevelDB in
//! place. SAPI has no change notification, so the follower reads SAPI every
//! `every` (as config-agent polls SAPI).

use std::sync::Arc;
use std::time::Duration;

use fashdb::image::{LoadedImage, Stamp};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use wire::apis::JsonMap;
use wire::fash::Ring;

use super::ElectricMoray;
use crate::dc::Datacenter;

/// SAPI metadata key on the `manta` application.
pub const HASH_RING_IMAGE: &str = fashdb::image::HASH_RING_IMAGE;
/// SAPI metadata key: the IMGAPI the image lives in.
pub const HASH_RING_IMGAPI_SERVICE: &str = fashdb::image::HASH_RING_IMGAPI_SERVICE;
/// The image name `manta-adm create-topology` gives ring images.
pub const RING_IMAGE_NAME: &str = fashdb::image::RING_IMAGE_NAME;
/// The `source_zone` of the stamps the simulator writes.
pub const SIM_SOURCE_ZONE: &str = "tritonctl-sim";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingImageError {
    #[error("SAPI has no `manta` application")]
    NoMantaApplication,
    #[error("IMGAPI: {0}")]
    Imgapi(String),
    #[error("SAPI: {0}")]
    Sapi(String),
    #[error("image {image} does not hold a fash ring: {message}")]
    NotARing { image: String, message: String },
}

fn manta_app(dc: &Datacenter) -> Result<wire::apis::Application, RingImageError> {
    let mut q = JsonMap::new();
    q.insert("name".into(), json!("manta"));
    dc.sapi_list_applications(&q)
        .into_iter()
        .next()
        .map(|a| a.into_view())
        .ok_or(RingImageError::NoMantaApplication)
}

/// The image uuid `HASH_RING_IMAGE` names now, if set.
pub fn current_ring_image(dc: &Datacenter) -> Result<Option<String>, RingImageError> {
    let app = manta_app(dc)?;
    Ok(app
        .metadata
        .get(HASH_RING_IMAGE)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned))
}

/// Point `HASH_RING_IMAGE` (and `HASH_RING_IMGAPI_SERVICE`, when given) at
/// an image, as `manta-adm create-topology` and manta-reshard's install step
/// do (a SAPI UpdateApplication, action update).
pub fn set_ring_image(
    dc: &Datacenter,
    image: &str,
    imgapi_url: Option<&str>,
) -> Result<(), RingImageError> {
    let app = manta_app(dc)?;
    let mut md = JsonMap::new();
    md.insert(HASH_RING_IMAGE.into(), json!(image));
    if let Some(u) = imgapi_url {
        md.insert(HASH_RING_IMGAPI_SERVICE.into(), json!(u));
    }
    let mut p = JsonMap::new();
    p.insert("action".into(), json!("update"));
    p.insert("metadata".into(), Value::Object(md));
    dc.sapi_update_application(&app.uuid, &p)
        .map(|_| ())
        .map_err(|e| RingImageError::Sapi(e.to_string()))
}

/// The pnode electric-moray knows an index shard by (`manta-adm
/// create-topology`: `tcp://<shard host>:2020`).
pub use crds::ring::pnode_of_shard;

/// The ring a `ShardTopology` describes, as [`crds::ring::topology_ring`]
/// builds it for the review and the controller too: a scenario starts the
/// datacenter as its documents describe it, split intents done. (A scenario
/// that needs the ring before a split starts from the document without the
/// intent, as `examples/scenarios/split-shard` applies over `us-east`.)
pub fn ring_for_topology(spec: &crds::shards::ShardTopologySpec) -> Result<Ring, String> {
    crds::ring::topology_ring(spec).map_err(|e| e.to_string())
}

/// Store `ring` as a new active `manta-hash-ring` image (import, add file,
/// activate); returns its uuid. The file is the gzip tar of the ring's
/// LevelDB directory with a stamp naming the image; `tags` go into the
/// manifest (manta-reshard tags its rings with `manta_reshard_plan`).
pub fn publish_ring_image(
    dc: &Datacenter,
    ring: &Ring,
    owner: &str,
    tags: JsonMap,
) -> Result<String, RingImageError> {
    let uuid = dc.new_uuid();
    let stamp = Stamp::now(&uuid, SIM_SOURCE_ZONE);
    let file = fashdb::pack_ring(ring, Some(&stamp)).map_err(|e| RingImageError::NotARing {
        image: uuid.clone(),
        message: e.to_string(),
    })?;
    let Value::Object(manifest) = fashdb::image::manifest(&uuid, owner, &stamp.date, &file, tags)
    else {
        unreachable!("a manifest is a JSON object")
    };
    let imgapi = |e: crate::dc::error::ApiError| RingImageError::Imgapi(e.to_string());
    let action = |a: &str| {
        let mut p = JsonMap::new();
        p.insert("action".into(), json!(a));
        p
    };
    dc.imgapi_image_action(&uuid, &action("import"), &manifest)
        .map_err(imgapi)?;
    let mut params = JsonMap::new();
    params.insert("compression".into(), json!("gzip"));
    params.insert("sha1".into(), json!(fashdb::image::sha1_hex(&file)));
    let stored = dc
        .imgapi_add_file(&uuid, &params, file)
        .and_then(|_| dc.imgapi_image_action(&uuid, &action("activate"), &JsonMap::new()));
    if let Err(e) = stored {
        // manta-adm rolls back a half-made image.
        let _ = dc.imgapi_delete_image(&uuid);
        return Err(imgapi(e));
    }
    Ok(uuid)
}

/// Fetch an image's file, extract its `hash_ring/` and load the ring as
/// electric-moray does (fash's load checks, then the whole ring), with the
/// stamp when the image has one.
pub fn load_ring_image_stamped(
    dc: &Datacenter,
    image: &str,
) -> Result<LoadedImage, RingImageError> {
    let (bytes, _file) = dc
        .imgapi_get_file(image)
        .map_err(|e| RingImageError::Imgapi(e.to_string()))?;
    fashdb::load_image(&bytes, image).map_err(|e| RingImageError::NotARing {
        image: image.to_owned(),
        message: e.to_string(),
    })
}

/// Fetch and load the ring image `image` holds.
pub fn load_ring_image(dc: &Datacenter, image: &str) -> Result<Ring, RingImageError> {
    load_ring_image_stamped(dc, image).map(|l| l.ring)
}

/// One round of the follower: load the image `HASH_RING_IMAGE` names into
/// `em` unless its ring already came from that image. Returns the image
/// loaded, `None` when nothing changed.
pub fn sync_ring_image(
    dc: &Datacenter,
    em: &ElectricMoray,
) -> Result<Option<String>, RingImageError> {
    let Some(want) = current_ring_image(dc)? else {
        return Ok(None);
    };
    if em.ring_image().as_deref() == Some(want.as_str()) {
        return Ok(None);
    }
    match load_ring_image(dc, &want) {
        Ok(ring) => {
            em.install_ring_image(&want, ring);
            Ok(Some(want))
        }
        Err(e) => {
            em.set_ring_image_error(Some(e.to_string()));
            Err(e)
        }
    }
}

/// Keep `em` on the ring `HASH_RING_IMAGE` names, checking every `every`
/// (the first check at once). Stops when the handle is aborted.
pub fn follow_ring_image(
    dc: Datacenter,
    em: Arc<ElectricMoray>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<RingImageError> = None;
        loop {
            ticker.tick().await;
            match sync_ring_image(&dc, &em) {
                Ok(Some(image)) => {
                    tracing::info!(em = %em.name(), %image, "hash ring loaded from IMGAPI");
                    last_error = None;
                }
                Ok(None) => {}
                Err(e) => {
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(em = %em.name(), error = %e, "hash ring image not loaded; the previous ring stays");
                    }
                    last_error = Some(e);
                }
            }
        }
    })
}
