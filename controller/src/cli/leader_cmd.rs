//! `tritonctl get leader`: which controller leads, and since when.
//!
//! The leader is the ephemeral candidate with the lowest sequence under
//! `/tritonctl/v1/leader` (see [`crate::runtime::leader`]); its node holds
//! the controller's identity, and its creation time (ctime) is when that
//! controller started to campaign, that is since when it may lead.

use super::Failure;
use super::listing::Listing;
use crate::runtime::leader;
use crate::store::Store;

pub const COLUMNS: [&str; 3] = ["IDENTITY", "SINCE", "NODE"];

/// The leading controller, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    pub identity: String,
    /// RFC 3339, UTC: the candidate node's ctime.
    pub since: String,
    pub node: String,
}

pub async fn current(store: &Store) -> Result<Option<Leader>, Failure> {
    // Nodes the election ignores (a persistent `candidate-0000000000` anyone
    // could create) are never shown as the leader; they are named on stderr.
    let election = leader::LeaderElection::new(store.coord().clone(), "tritonctl get leader")
        .on_ignored(std::sync::Arc::new(|ignored: &leader::IgnoredCandidate| {
            eprintln!("warning: {ignored}");
        }));
    let found = election
        .leader()
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    Ok(found.map(|c| Leader {
        identity: String::from_utf8_lossy(&c.data).into_owned(),
        since: rfc3339_ms(c.stat.ctime_ms),
        node: c.node,
    }))
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms since the epoch"))
}

pub fn listing(leader: Option<&Leader>) -> Listing {
    let rows = leader
        .map(|l| vec![l.identity.clone(), l.since.clone(), l.node.clone()])
        .into_iter()
        .collect();
    let value = match leader {
        Some(l) => serde_json::json!({"identity": l.identity, "since": l.since, "node": l.node}),
        None => serde_json::Value::Null,
    };
    Listing {
        columns: &COLUMNS,
        narrow: COLUMNS.len(),
        rows,
        names: leader
            .map(|l| format!("leader/{}", l.identity))
            .into_iter()
            .collect(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_the_ctime_in_rfc_3339() {
        assert_eq!(rfc3339_ms(1_764_979_200_000), "2025-12-06T00:00:00Z");
    }
}
