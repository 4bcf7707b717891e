//! The Manta data plane of a scenario: the `electric-moray` SAPI service and
//! its zones, `INDEX_MORAY_SHARDS` on the `manta` application (as
//! `manta-shardadm set -i` writes it), the Moray tier with one in-memory
//! shard per ring pnode, and the electric-moray processes
//! ([`EmFleet`]).

use std::sync::Arc;

use serde_json::json;
use wire::apis::JsonMap;
use wire::fash::KeyEncoding;

use super::config::{INDEX_MORAY_SHARDS, IndexShard, index_moray_shards_value};
use super::fleet::{EM_SERVICE, EmFleet};
use super::{EmClient, MorayTier};
use crate::dc::Datacenter;
use crate::dc::seed::InstanceSpec;

/// The image the scenario's electric-moray zones run.
pub const ELECTRIC_MORAY_IMAGE: &str = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f";

/// Seeds the `electric-moray` service of the `manta` application, `count`
/// zones spread over `servers` (round robin), and `INDEX_MORAY_SHARDS`
/// naming `index_shards` (none read-only). Returns the zones' uuids.
pub fn seed_electric_moray(
    dc: &Datacenter,
    app_uuid: &str,
    index_shards: &[String],
    servers: &[String],
    count: usize,
) -> Result<Vec<String>, String> {
    let shards: Vec<IndexShard> = index_shards
        .iter()
        .map(|s| IndexShard::new(s, false))
        .collect();
    let mut md = JsonMap::new();
    md.insert(INDEX_MORAY_SHARDS.into(), index_moray_shards_value(&shards));
    let mut p = JsonMap::new();
    p.insert("action".into(), json!("update"));
    p.insert("metadata".into(), serde_json::Value::Object(md));
    dc.sapi_update_application(app_uuid, &p)
        .map_err(|e| format!("INDEX_MORAY_SHARDS: {e}"))?;
    if count == 0 || servers.is_empty() {
        return Ok(Vec::new());
    }
    let mut s = crate::dc::seed::ImageSpec::new("manta-electric-moray", "20240327T001755Z");
    s.uuid = Some(ELECTRIC_MORAY_IMAGE.to_owned());
    s.tags.insert("smartdc_service".into(), json!(true));
    if dc.image(ELECTRIC_MORAY_IMAGE).is_none() {
        dc.seed_image(s);
    }
    let params: JsonMap = [
        ("image_uuid".to_owned(), json!(ELECTRIC_MORAY_IMAGE)),
        ("networks".to_owned(), json!(["admin"])),
        ("ram".to_owned(), json!(2048)),
        (
            "tags".to_owned(),
            json!({"manta_role": EM_SERVICE, "smartdc_type": "core"}),
        ),
    ]
    .into_iter()
    .collect();
    let svc = dc.seed_service(app_uuid, EM_SERVICE, params, JsonMap::new());
    (0..count)
        .map(|i| {
            let spec = InstanceSpec {
                server_uuid: servers[i % servers.len()].clone(),
                alias: Some(format!("electric-moray.{i}")),
                ..Default::default()
            };
            dc.seed_instance(&svc, spec).map_err(|e| e.to_string())
        })
        .collect()
}

/// The running data plane.
#[derive(Debug, Clone)]
pub struct MantaPlane {
    pub tier: Arc<MorayTier>,
    pub fleet: Arc<EmFleet>,
}

impl MantaPlane {
    /// A tier with an in-memory shard per pnode and the electric-moray
    /// processes of every zone of the service, started.
    pub async fn start(dc: &Datacenter, pnodes: &[String]) -> Result<MantaPlane, String> {
        let tier = MorayTier::new();
        for p in pnodes {
            tier.add_shard(p);
        }
        let fleet = EmFleet::start(dc.clone(), tier.clone(), KeyEncoding::Utf8)
            .await
            .map_err(|e| format!("electric-moray: {e}"))?;
        Ok(MantaPlane { tier, fleet })
    }

    /// HTTP clients of every process.
    pub fn http_clients(&self, timeout: std::time::Duration) -> Vec<EmClient> {
        self.fleet
            .processes()
            .iter()
            .map(|p| EmClient::http(p, timeout))
            .collect()
    }
}
