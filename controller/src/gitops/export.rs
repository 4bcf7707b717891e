//! The ShardTopology of a running region, from what [`super::manta`]
//! observed: the document `tritonctl export shardtopology` writes. Its ring
//! is the live ring written as an explicit `assignment`, so applying it
//! asks for no move (`crds::ring::planned_moves` of it against the live
//! ring is empty).

use std::collections::BTreeSet;

use crds::meta::{API_VERSION, ObjectMeta, Resource};
use crds::ring::{assignment_of, shard_of_pnode};
use crds::shards::{
    HashRing, MetadataShard, PeerPlacement, ReshardPolicy, ShardRole, ShardTopology,
    ShardTopologySpec,
};
use serde_json::Value;

use super::manta::MantaObservation;

/// Why a region cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("SAPI has no `manta` application: there is no Manta region here to export")]
    NoManta,
    #[error("the region is `{observed}` (SAPI manta REGION), not `{asked}`")]
    OtherRegion { asked: String, observed: String },
    #[error("SAPI's manta application has no {0}; give it with --region, or fix SAPI")]
    Missing(&'static str),
    #[error("the live ring cannot be read: {0}")]
    Ring(String),
    #[error("the live ring has pnode `{0}`, which names no shard (`tcp://<shard>:2020`)")]
    ForeignPnode(String),
}

/// The document, and what the reader must know about how it was made
/// (written as comments above it).
#[derive(Debug, Clone)]
pub struct Exported {
    pub document: ShardTopology,
    pub notes: Vec<String>,
}

impl Exported {
    pub fn document_value(&self) -> Value {
        serde_json::to_value(&self.document).expect("a document serializes")
    }

    /// The YAML file: where it came from and the notes as comments, then
    /// the document in its fields' order.
    pub fn to_yaml(&self, source: &str) -> String {
        let mut out = format!(
            "# ShardTopology exported by tritonctl from {source}.\n# Applying it unchanged asks for no resharding: its ring is the live ring.\n"
        );
        for n in &self.notes {
            out.push_str(&format!("# {n}\n"));
        }
        out.push_str(
            &serde_saphyr::to_string(&self.document)
                .unwrap_or_else(|e| format!("# cannot render YAML: {e}\n")),
        );
        out
    }
}

/// The ShardTopology `m` describes. `region`: the one asked for (checked
/// against SAPI's), or SAPI's.
pub fn export(m: &MantaObservation, region: Option<&str>) -> Result<Exported, ExportError> {
    let region = match (region, &m.region) {
        (Some(a), Some(o)) if a != o => {
            return Err(ExportError::OtherRegion {
                asked: a.into(),
                observed: o.clone(),
            });
        }
        (Some(a), _) => a.to_string(),
        (None, Some(o)) => o.clone(),
        (None, None) => return Err(ExportError::Missing("REGION")),
    };
    let dns_domain = m
        .dns_domain
        .clone()
        .ok_or(ExportError::Missing("DNS_DOMAIN"))?;
    let live = m.live_ring().map_err(ExportError::Ring)?;
    for p in live.pnodes() {
        if shard_of_pnode(p).is_none() && live.vnodes_of(p).is_ok_and(|v| !v.is_empty()) {
            return Err(ExportError::ForeignPnode(p.clone()));
        }
    }
    let assignment = assignment_of(&live).map_err(|e| ExportError::Ring(e.to_string()))?;
    let mut index: BTreeSet<String> = m.index_shards.iter().map(|e| e.host.clone()).collect();
    index.extend(assignment.iter().map(|a| a.shard.clone()));
    let mut notes = vec![format!(
        "ring: image {} ({} vnodes), written as an explicit assignment",
        m.ring_image.as_deref().unwrap_or("-"),
        live.vnode_count()
    )];
    let mut names: BTreeSet<String> = m.shards.keys().cloned().collect();
    names.extend(index.iter().cloned());
    let mut shards = Vec::new();
    for name in names {
        let observed = m.shards.get(&name).cloned().unwrap_or_default();
        let mut r = Vec::new();
        if index.contains(&name) {
            r.push(ShardRole::Index);
        }
        if m.marlin_shard.as_deref() == Some(name.as_str()) {
            r.push(ShardRole::Marlin);
        }
        if m.storage_shard.as_deref() == Some(name.as_str()) {
            r.push(ShardRole::Storage);
        }
        if r.is_empty() {
            notes.push(format!("{name}: no role found (not in INDEX_MORAY_SHARDS nor MARLIN_MORAY_SHARD/STORAGE_MORAY_SHARD)"));
        }
        if observed.peers.is_empty() {
            notes.push(format!("{name}: no postgres instance in SAPI"));
        }
        if observed.morays == 0 {
            notes.push(format!("{name}: no moray instance in SAPI"));
        }
        let peers = observed
            .peers
            .iter()
            .map(|p| PeerPlacement {
                server: p
                    .hostname
                    .clone()
                    .or_else(|| p.server_uuid.clone())
                    .unwrap_or_default(),
                datacenter: p.datacenter.clone(),
            })
            .collect();
        shards.push(MetadataShard {
            name,
            roles: r,
            peers,
            morays: observed.morays,
        });
    }
    // Shards in fash's order (`N.moray...` by number first).
    shards.sort_by_key(|s| (crds::common::shard_number(&s.name), s.name.clone()));
    let spec = ShardTopologySpec {
        region: region.clone(),
        dns_domain,
        shards,
        ring: HashRing {
            vnodes: live.vnode_count(),
            assignment: Some(assignment),
            intents: Vec::new(),
        },
        reshard: ReshardPolicy::default(),
    };
    Ok(Exported {
        document: Resource {
            api_version: API_VERSION.to_string(),
            kind: "ShardTopology".to_string(),
            metadata: ObjectMeta {
                name: region,
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        },
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::manta::{IndexShardEntry, MantaPeer, MantaShard, ObservedRing};
    use wire::fash::Ring;

    fn observation() -> MantaObservation {
        let ring = Ring::create(
            9,
            &[
                "tcp://2.moray.r.example:2020",
                "tcp://3.moray.r.example:2020",
            ],
        )
        .unwrap();
        let peer = |z: &str, h: &str| MantaPeer {
            zone: z.into(),
            server_uuid: Some(format!("uuid-{h}")),
            hostname: Some(h.into()),
            datacenter: Some("dc1".into()),
        };
        MantaObservation {
            region: Some("r".into()),
            dns_domain: Some("r.example".into()),
            ring_image: Some("img".into()),
            ring: Some(ObservedRing::of(&ring).unwrap()),
            ring_error: None,
            index_shards: vec![
                IndexShardEntry {
                    host: "2.moray.r.example".into(),
                    read_only: false,
                },
                IndexShardEntry {
                    host: "3.moray.r.example".into(),
                    read_only: false,
                },
            ],
            marlin_shard: Some("1.moray.r.example".into()),
            storage_shard: Some("1.moray.r.example".into()),
            electric_morays: vec!["em0".into()],
            shards: [
                (
                    "1.moray.r.example".to_string(),
                    MantaShard {
                        peers: vec![peer("z1", "cn1")],
                        morays: 2,
                    },
                ),
                (
                    "2.moray.r.example".to_string(),
                    MantaShard {
                        peers: vec![peer("z2", "cn2")],
                        morays: 1,
                    },
                ),
                (
                    "3.moray.r.example".to_string(),
                    MantaShard {
                        peers: vec![peer("z3", "cn3")],
                        morays: 1,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            vnode_rows: Default::default(),
        }
    }

    #[test]
    fn the_export_is_the_live_ring_and_plans_no_move() {
        let m = observation();
        let e = export(&m, None).unwrap();
        let spec = &e.document.spec;
        assert_eq!(
            spec.shards[0].roles,
            vec![ShardRole::Marlin, ShardRole::Storage]
        );
        assert_eq!(spec.shards[1].roles, vec![ShardRole::Index]);
        assert_eq!(spec.shards[0].peers[0].server, "cn1");
        assert_eq!(spec.shards[0].morays, 2);
        let live = m.live_ring().unwrap();
        assert!(
            crds::ring::planned_moves(spec, &live, &[])
                .unwrap()
                .is_empty()
        );
        // The exported document is valid as written.
        let yaml = crate::gitops::to_yaml(&e.document_value());
        let (docs, diags) = crds::parse_documents("export.yaml", &yaml);
        assert!(diags.is_empty(), "{diags:?}\n{yaml}");
        let problems: Vec<_> = crds::validate_all(&docs)
            .into_iter()
            .filter(crds::Diagnostic::is_error)
            .collect();
        assert!(problems.is_empty(), "{problems:?}\n{yaml}");
    }

    #[test]
    fn another_region_is_refused() {
        let e = export(&observation(), Some("elsewhere")).unwrap_err();
        assert_eq!(
            e,
            ExportError::OtherRegion {
                asked: "elsewhere".into(),
                observed: "r".into()
            }
        );
    }
}
