//! One enum over every kind, for code that handles documents generically
//! (the store, the CLI, diff).

use std::fmt;

use serde::Serialize;

use crate::headnode::HeadnodeSet;
use crate::manatee::ManateeVersion;
use crate::meta::ObjectMeta;
use crate::shards::ShardTopology;
use crate::status::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    HeadnodeSet,
    ManateeVersion,
    ShardTopology,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::HeadnodeSet, Kind::ManateeVersion, Kind::ShardTopology];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HeadnodeSet => "HeadnodeSet",
            Kind::ManateeVersion => "ManateeVersion",
            Kind::ShardTopology => "ShardTopology",
        }
    }

    /// Short name used on the command line and in paths.
    pub fn short(self) -> &'static str {
        match self {
            Kind::HeadnodeSet => "headnodeset",
            Kind::ManateeVersion => "manateeversion",
            Kind::ShardTopology => "shardtopology",
        }
    }

    /// Accepts the kind name in any case, its plural, and kubectl-style short
    /// names (`hs`, `mv`, `st`).
    pub fn parse(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        let l = l
            .strip_suffix('s')
            .filter(|_| l != "hs" && l != "headnodesets")
            .unwrap_or(&l);
        match l {
            "headnodeset" | "headnodesets" | "hs" | "headnodes" => Some(Kind::HeadnodeSet),
            "manateeversion" | "mv" | "manatee" => Some(Kind::ManateeVersion),
            "shardtopology" | "shardtopologie" | "st" | "shard" | "topology" => {
                Some(Kind::ShardTopology)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document of any kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Document {
    HeadnodeSet(HeadnodeSet),
    ManateeVersion(ManateeVersion),
    ShardTopology(ShardTopology),
}

impl Document {
    pub fn kind(&self) -> Kind {
        match self {
            Document::HeadnodeSet(_) => Kind::HeadnodeSet,
            Document::ManateeVersion(_) => Kind::ManateeVersion,
            Document::ShardTopology(_) => Kind::ShardTopology,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Document::HeadnodeSet(d) => &d.metadata,
            Document::ManateeVersion(d) => &d.metadata,
            Document::ShardTopology(d) => &d.metadata,
        }
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Document::HeadnodeSet(d) => &mut d.metadata,
            Document::ManateeVersion(d) => &mut d.metadata,
            Document::ShardTopology(d) => &mut d.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// `Kind/name`, the key the work queue and events use.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    pub fn status(&self) -> Option<&Status> {
        match self {
            Document::HeadnodeSet(d) => d.status.as_ref(),
            Document::ManateeVersion(d) => d.status.as_ref(),
            Document::ShardTopology(d) => d.status.as_ref(),
        }
    }

    pub fn set_status(&mut self, status: Option<Status>) {
        match self {
            Document::HeadnodeSet(d) => d.status = status,
            Document::ManateeVersion(d) => d.status = status,
            Document::ShardTopology(d) => d.status = status,
        }
    }

    /// The spec alone, as JSON (what generation tracks and diff compares).
    pub fn spec_value(&self) -> serde_json::Value {
        let v = match self {
            Document::HeadnodeSet(d) => serde_json::to_value(&d.spec),
            Document::ManateeVersion(d) => serde_json::to_value(&d.spec),
            Document::ShardTopology(d) => serde_json::to_value(&d.spec),
        };
        v.expect("spec types always serialize")
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("documents always serialize")
    }

    /// Decode a document from JSON whose `kind` is already known to be valid.
    pub fn from_value(kind: Kind, v: serde_json::Value) -> Result<Document, serde_json::Error> {
        Ok(match kind {
            Kind::HeadnodeSet => Document::HeadnodeSet(serde_json::from_value(v)?),
            Kind::ManateeVersion => Document::ManateeVersion(serde_json::from_value(v)?),
            Kind::ShardTopology => Document::ShardTopology(serde_json::from_value(v)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(Kind::parse(k.short()), Some(k));
        }
        assert_eq!(Kind::parse("mv"), Some(Kind::ManateeVersion));
        assert_eq!(Kind::parse("ManateeVersions"), Some(Kind::ManateeVersion));
        assert_eq!(Kind::parse("shardtopologies"), Some(Kind::ShardTopology));
        assert_eq!(Kind::parse("hs"), Some(Kind::HeadnodeSet));
        assert_eq!(Kind::parse("pods"), None);
    }
}
