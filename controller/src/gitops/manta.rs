//! The Manta region as the ShardTopology review and `tritonctl export
//! shardtopology` read it: the live ring (the image SAPI `HASH_RING_IMAGE`
//! names, read with `fashdb` as electric-moray loads it), the index tier
//! (`INDEX_MORAY_SHARDS`), the electric-moray zones, and each shard's
//! manatee peers and morays.
//!
//! Where each fact comes from (research/resharding.md §1.3, §3.6):
//! - shards: the `manta` application's `postgres` instances grouped by
//!   their `SERVICE_NAME` metadata (`N.moray.<domain>`; from `SHARD` and the
//!   application's `DNS_DOMAIN` when absent);
//! - a peer's server: VMAPI's `server_uuid` of the zone, not SAPI params
//!   (MANTA-3604: SAPI's copy goes stale after a migration), named by its
//!   CNAPI hostname and datacenter when CNAPI knows it;
//! - morays: the `moray` instances per `SERVICE_NAME`.
//!
//! Observing only: every call here is a GET (and one IMGAPI file read).

use std::collections::BTreeMap;

use crds::ring::{VnodeCounts, render_ranges, vnode_ranges};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wire::fash::{HashSpace, Ring};

use crate::clients::Triton;

/// A ring as a snapshot records it: per pnode, its vnodes as ranges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRing {
    pub vnodes: u32,
    /// Pnodes in ring order with their vnodes (`tcp://<shard>:2020`).
    pub pnodes: Vec<PnodeVnodes>,
    /// Vnodes whose data is `ro` (refusing writes), as ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PnodeVnodes {
    pub pnode: String,
    pub vnodes: Vec<String>,
}

fn range_strings(vs: &[u32]) -> Vec<String> {
    vnode_ranges(vs)
        .into_iter()
        .map(|(a, b)| render_ranges(&[(a, b)], 1))
        .collect()
}

impl ObservedRing {
    pub fn of(ring: &Ring) -> Result<ObservedRing, String> {
        let mut pnodes = Vec::new();
        for p in ring.pnodes() {
            let vs = ring.vnodes_of(p).map_err(|e| e.to_string())?;
            pnodes.push(PnodeVnodes {
                pnode: p.clone(),
                vnodes: range_strings(&vs),
            });
        }
        let ro: Vec<u32> = ring
            .data_vnodes()
            .filter(|(v, _)| ring.is_read_only(*v))
            .map(|(v, _)| v)
            .collect();
        Ok(ObservedRing {
            vnodes: ring.vnode_count(),
            pnodes,
            read_only: range_strings(&ro),
        })
    }

    /// The ring back (owners and `ro` marks; other vnode data is not kept).
    pub fn to_ring(&self) -> Result<Ring, String> {
        let space = HashSpace::new(self.vnodes).map_err(|e| e.to_string())?;
        let mut owner = vec![u16::MAX; self.vnodes as usize];
        let parse = |r: &String| crds::shards::parse_vnode_range(r);
        for (i, p) in self.pnodes.iter().enumerate() {
            for r in &p.vnodes {
                let (lo, hi) = parse(r)?;
                for v in lo..=hi {
                    let slot = owner
                        .get_mut(v as usize)
                        .ok_or_else(|| format!("vnode {v} is beyond the ring"))?;
                    *slot = i as u16;
                }
            }
        }
        let mut data = BTreeMap::new();
        for r in &self.read_only {
            let (lo, hi) = parse(r)?;
            for v in lo..=hi {
                data.insert(v, Value::from(wire::fash::READ_ONLY));
            }
        }
        let pnodes = self.pnodes.iter().map(|p| p.pnode.clone()).collect();
        Ring::from_parts(space, pnodes, owner, data).map_err(|e| e.to_string())
    }
}

/// One manatee peer of a Manta shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MantaPeer {
    /// The SAPI instance (= VM) uuid.
    pub zone: String,
    /// VMAPI's `server_uuid`.
    pub server_uuid: Option<String>,
    /// CNAPI's hostname and datacenter of that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MantaShard {
    pub peers: Vec<MantaPeer>,
    /// `moray` instances serving the shard.
    pub morays: u32,
}

/// One `INDEX_MORAY_SHARDS` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexShardEntry {
    pub host: String,
    #[serde(default)]
    pub read_only: bool,
}

/// The Manta region as observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MantaObservation {
    pub region: Option<String>,
    pub dns_domain: Option<String>,
    /// SAPI `HASH_RING_IMAGE`.
    pub ring_image: Option<String>,
    /// The ring that image holds; None with `ring_error` when it could not be read.
    pub ring: Option<ObservedRing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_error: Option<String>,
    pub index_shards: Vec<IndexShardEntry>,
    /// `MARLIN_MORAY_SHARD` and `STORAGE_MORAY_SHARD` of the manta application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marlin_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_shard: Option<String>,
    /// The `electric-moray` instances (zone uuids), each of which must load a new ring.
    pub electric_morays: Vec<String>,
    /// Shards by name.
    pub shards: BTreeMap<String, MantaShard>,
    /// Rows per vnode by shard, where they were read (`moveHottest`
    /// chooses by them); empty when not read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vnode_rows: BTreeMap<String, VnodeCounts>,
}

impl MantaObservation {
    /// The live ring, or why there is none to plan against.
    pub fn live_ring(&self) -> Result<Ring, String> {
        match (&self.ring, &self.ring_image, &self.ring_error) {
            (Some(r), _, _) => r.to_ring(),
            (None, Some(i), Some(e)) => Err(format!("ring image {i} could not be read: {e}")),
            (None, Some(i), None) => Err(format!("ring image {i} was not read")),
            (None, None, _) => Err("SAPI's manta application names no HASH_RING_IMAGE".into()),
        }
    }

    /// Rows per vnode over every shard (each vnode lives on one).
    pub fn all_vnode_rows(&self) -> VnodeCounts {
        let mut out = VnodeCounts::new();
        for counts in self.vnode_rows.values() {
            for (v, n) in counts {
                *out.entry(*v).or_default() += n;
            }
        }
        out
    }
}

fn meta_str(m: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

/// `INDEX_MORAY_SHARDS` (an array, or the same as JSON text).
fn index_shards(m: &serde_json::Map<String, Value>) -> Result<Vec<IndexShardEntry>, String> {
    let list = match m.get("INDEX_MORAY_SHARDS") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => serde_json::from_str::<Vec<Value>>(s)
            .map_err(|e| format!("INDEX_MORAY_SHARDS is not a JSON array: {e}"))?,
        Some(other) => return Err(format!("INDEX_MORAY_SHARDS is not an array: {other}")),
    };
    list.iter()
        .map(|e| {
            let host = e
                .get("host")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("INDEX_MORAY_SHARDS: an entry has no host: {e}"))?;
            let read_only = match e.get("readOnly") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            };
            Ok(IndexShardEntry {
                host: host.to_string(),
                read_only,
            })
        })
        .collect()
}

/// Observe the Manta region; None when SAPI has no `manta` application.
pub async fn observe(triton: &Triton) -> Result<Option<MantaObservation>, String> {
    let e = |x: crate::clients::ApiError| x.to_string();
    let apps = triton
        .sapi
        .applications("manta")
        .await
        .and_then(|l| l.all())
        .map_err(e)?;
    let Some(app) = apps.into_iter().next() else {
        return Ok(None);
    };
    let m = &app.metadata;
    let dns_domain = meta_str(m, "DNS_DOMAIN");
    let ring_image = meta_str(m, "HASH_RING_IMAGE").filter(|s| !s.is_empty());
    let services = triton
        .sapi
        .services(&app.uuid, None)
        .await
        .and_then(|l| l.all())
        .map_err(e)?;
    let instances_of = |name: &str| {
        services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.uuid.clone())
    };
    let shard_of = |meta: &serde_json::Map<String, Value>| -> Option<String> {
        meta_str(meta, "SERVICE_NAME").or_else(|| {
            let n = meta_str(meta, "SHARD")?;
            Some(format!("{n}.moray.{}", dns_domain.as_deref()?))
        })
    };
    let mut shards: BTreeMap<String, MantaShard> = BTreeMap::new();
    let mut servers: BTreeMap<String, Option<(String, String)>> = BTreeMap::new();
    if let Some(pg) = instances_of("postgres") {
        for i in triton
            .sapi
            .instances(&pg)
            .await
            .and_then(|l| l.all())
            .map_err(e)?
        {
            let Some(shard) = shard_of(&i.metadata) else {
                continue;
            };
            let vm = triton.vmapi.vm(&i.uuid).await.map_err(e)?;
            let (hostname, datacenter) = match &vm.server_uuid {
                Some(s) => {
                    if !servers.contains_key(s) {
                        let known = match triton.cnapi.server(s).await {
                            Ok(srv) => Some((srv.hostname, srv.datacenter)),
                            Err(err) if err.is_not_found() => None,
                            Err(err) => return Err(err.to_string()),
                        };
                        servers.insert(s.clone(), known);
                    }
                    servers[s].clone().unzip()
                }
                None => (None, None),
            };
            shards.entry(shard).or_default().peers.push(MantaPeer {
                zone: i.uuid,
                server_uuid: vm.server_uuid,
                hostname,
                datacenter,
            });
        }
    }
    if let Some(moray) = instances_of("moray") {
        for i in triton
            .sapi
            .instances(&moray)
            .await
            .and_then(|l| l.all())
            .map_err(e)?
        {
            if let Some(shard) = shard_of(&i.metadata) {
                shards.entry(shard).or_default().morays += 1;
            }
        }
    }
    let mut electric_morays = Vec::new();
    if let Some(em) = instances_of("electric-moray") {
        for i in triton
            .sapi
            .instances(&em)
            .await
            .and_then(|l| l.all())
            .map_err(e)?
        {
            electric_morays.push(i.uuid);
        }
    }
    electric_morays.sort();
    for s in shards.values_mut() {
        s.peers.sort_by(|a, b| a.zone.cmp(&b.zone));
    }
    let (ring, ring_error) = match &ring_image {
        None => (None, None),
        Some(uuid) => match read_ring(triton, uuid).await {
            Ok(r) => (Some(r), None),
            Err(err) => (None, Some(err)),
        },
    };
    Ok(Some(MantaObservation {
        region: meta_str(m, "REGION"),
        dns_domain,
        ring_image,
        ring,
        ring_error,
        index_shards: index_shards(m)?,
        marlin_shard: meta_str(m, "MARLIN_MORAY_SHARD"),
        storage_shard: meta_str(m, "STORAGE_MORAY_SHARD"),
        electric_morays,
        shards,
        vnode_rows: BTreeMap::new(),
    }))
}

/// The ring image as electric-moray loads it (fash's load checks, every key).
async fn read_ring(triton: &Triton, uuid: &str) -> Result<ObservedRing, String> {
    let bytes = triton.imgapi.file(uuid).await.map_err(|e| e.to_string())?;
    let id = uuid.to_string();
    let loaded = tokio::task::spawn_blocking(move || fashdb::load_image(&bytes, &id))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    ObservedRing::of(&loaded.ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_ring_reads_back_as_the_same_ring() {
        let mut ring = Ring::create(10, &["tcp://a:2020", "tcp://b:2020"]).unwrap();
        ring.remap(&[3, 4], "tcp://c:2020").unwrap();
        ring.set_read_only(&[3, 8], true).unwrap();
        let rec = ObservedRing::of(&ring).unwrap();
        assert_eq!(rec.pnodes[2].vnodes, vec!["3-4"]);
        assert_eq!(rec.read_only, vec!["3", "8"]);
        let back = rec.to_ring().unwrap();
        assert_eq!(back, ring);
    }

    #[test]
    fn index_shards_read_both_forms() {
        let mut m = serde_json::Map::new();
        m.insert(
            "INDEX_MORAY_SHARDS".into(),
            Value::String(
                r#"[{"host":"2.moray.x","readOnly":"true"},{"host":"3.moray.x","last":true}]"#
                    .into(),
            ),
        );
        let l = index_shards(&m).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l[0].read_only && !l[1].read_only);
    }
}
