//! The strategy a ManateeVersion shard resolves to, shared by the review
//! and the snapshot (which records the images a resolution reads).

use std::collections::BTreeMap;

use crds::manatee::ManateeVersionSpec;
use reconcilers::manatee::{ImageInfo, ShardObservation};
use reconcilers::transplant::{Resolved, manatee_major, resolve_strategy};

/// The strategy a shard resolves to, exactly as the controller resolves it
/// (`controller::transplant::reconcile`): the majors of the images the
/// shard's peers run against the target's. `images` maps uuid -> record.
pub fn resolve_shard(
    spec: &ManateeVersionSpec,
    obs: &ShardObservation,
    target: Option<&ImageInfo>,
    images: &BTreeMap<String, Option<ImageInfo>>,
) -> Result<Resolved, reconcilers::error::Refusal> {
    let running: Vec<u32> = obs
        .peers
        .iter()
        .filter_map(|p| images.get(&p.image).and_then(Option::as_ref))
        .filter_map(manatee_major)
        .collect();
    resolve_strategy(
        spec.strategy,
        &running,
        target.and_then(manatee_major),
        &spec.image.uuid,
    )
}
