//! What the per-kind review modules share: peers and windows in words,
//! image records through the world, the "not observed" shard.

use std::collections::BTreeMap;

use crds::Kind;
use reconcilers::manatee::{ImageInfo, Role, ShardObservation};

use super::types::{ShardOutcome, ShardReview};

/// Whether a reconciler in this build executes the kind's operations.
/// HeadnodeSet: its reconciler runs the manatee HA setup of the `sdc` shard
/// (controller::reconcile_ha); its other fields are stored, not executed.
pub fn executed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ManateeVersion | Kind::HeadnodeSet | Kind::ShardTopology
    )
}

pub(super) fn short(s: &str) -> &str {
    s.split(['-', '.']).next().unwrap_or(s)
}

pub(super) fn not_observed(shard: &str, message: String) -> ShardReview {
    ShardReview {
        shard: shard.to_string(),
        outcome: ShardOutcome::NotObserved,
        message: Some(message),
        peers: vec![],
        strategy: None,
        starts: None,
        operation: None,
    }
}

pub(super) fn peers_summary(obs: &ShardObservation) -> Vec<String> {
    let mut v: Vec<(u8, String)> = obs
        .peers
        .iter()
        .map(|p| {
            let role = obs.role_of(&p.zone);
            let rank = match role {
                Role::Primary => 0,
                Role::Sync => 1,
                Role::Async => 2,
                Role::Deposed => 3,
                Role::Unassigned => 4,
            };
            let health = if p.vm_state != "running" {
                format!(", {}", p.vm_state)
            } else if !p.active {
                ", not in the election".to_string()
            } else {
                String::new()
            };
            (
                rank,
                format!(
                    "{} {} on image {}{health}",
                    format!("{role:?}").to_lowercase(),
                    p.alias,
                    short(&p.image)
                ),
            )
        })
        .collect();
    v.sort();
    let mut out: Vec<String> = v.into_iter().map(|(_, s)| s).collect();
    if let Some(st) = &obs.state {
        let mut line = format!("cluster state generation {}", st.generation);
        if let Some(r) = obs.freeze_reason() {
            line.push_str(&format!(", frozen ({r})"));
        }
        if st.is_one_node_write_mode() {
            line.push_str(", one-node-write mode");
        }
        out.push(line);
    }
    out
}

/// The maintenance window in words.
pub(super) fn window_words(w: &crds::manatee::MaintenanceWindow) -> String {
    format!(
        "{} {} UTC for {}",
        if w.days.is_empty() {
            "every day".to_string()
        } else {
            w.days.join(",")
        },
        w.start,
        w.duration
    )
}

/// The IMGAPI records of the images `uuids` through the world.
pub(super) async fn image_records(
    m: &dyn reconcilers::manatee::ManateeObserve,
    uuids: impl Iterator<Item = &String>,
) -> Result<BTreeMap<String, Option<ImageInfo>>, String> {
    let mut out = BTreeMap::new();
    for u in uuids {
        if !u.is_empty() && !out.contains_key(u) {
            out.insert(u.clone(), m.image(u).await?);
        }
    }
    Ok(out)
}
