//! One electric-moray's status server: `GET /status` (em:lib/status_server.js:
//! `smf_fmri`, `pid`, `start_time`, `client_list`, `index_shards`), and the
//! ring it serves. The real process keeps its ring's stamp
//! (`manta_hash_ring_stamp.json`, manta-reshard's) in its ring directory;
//! the simulator serves it as `hash_ring_stamp` beside the status so one
//! request answers both. The resharding verifies a ring rollout through it:
//! every electric-moray's stamp names the image SAPI names.

use serde::Deserialize;

use super::{ApiError, HttpApi};

/// The stamp of the ring a process loaded.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RingStamp {
    pub image_uuid: String,
}

/// One configured index shard (`ringCfg.indexShards`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct IndexShard {
    pub host: String,
    #[serde(rename = "readOnly", default)]
    pub read_only: bool,
}

/// `GET /status`, the fields the controller reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EmStatus {
    #[serde(default)]
    pub smf_fmri: Option<String>,
    pub pid: u32,
    pub start_time: String,
    #[serde(default)]
    pub index_shards: Option<Vec<IndexShard>>,
    #[serde(default)]
    pub hash_ring_stamp: Option<RingStamp>,
}

impl EmStatus {
    /// The ring image the process serves, if it says.
    pub fn ring_image(&self) -> Option<&str> {
        self.hash_ring_stamp.as_ref().map(|s| s.image_uuid.as_str())
    }
}

/// One electric-moray's status server (reads only).
#[derive(Clone)]
pub struct ElectricMorayStatus(pub HttpApi);

impl ElectricMorayStatus {
    pub async fn status(&self) -> Result<EmStatus, ApiError> {
        self.0.get("/status", &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_body_decodes_with_and_without_a_stamp() {
        let with: EmStatus = serde_json::from_value(serde_json::json!({
            "smf_fmri": "svc:/smartdc/application/electric-moray:electric-moray-2021",
            "pid": 20001,
            "start_time": "2026-01-01T00:00:00Z",
            "client_list": ["tcp://1.moray.coal.joyent.us:2020"],
            "index_shards": [{"host": "1.moray.coal.joyent.us", "readOnly": true}],
            "hash_ring_stamp": {"image_uuid": "0f1c5c2e-0000-4000-8000-000000000001"}
        }))
        .unwrap();
        assert_eq!(
            with.ring_image(),
            Some("0f1c5c2e-0000-4000-8000-000000000001")
        );
        assert!(with.index_shards.unwrap()[0].read_only);
        let without: EmStatus = serde_json::from_value(serde_json::json!({
            "smf_fmri": null, "pid": 1, "start_time": "x", "client_list": [],
            "index_shards": null, "hash_ring_stamp": null
        }))
        .unwrap();
        assert_eq!(without.ring_image(), None);
    }
}
