//! What `tritonctl status` and the web view show: one datacenter or region
//! at a glance, as plain data (serialized for `status -j`). Gathered by
//! [`super::gather`]; rendered as text by `cli::status_text` and as HTML
//! by [`super::pages`].

use serde::Serialize;

/// Everything on the overview.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// The store (`zookeeper HOSTS`, `embedded store DIR`).
    pub store: String,
    pub leader: Option<LeaderView>,
    pub documents: Vec<DocView>,
    /// What the datacenter was observed through; None: the store only.
    pub observed: Option<String>,
    pub posture: Option<Posture>,
    pub ring: Option<RingView>,
    /// What could not be learned, each naming what and why.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    pub identity: String,
    pub since: String,
}

/// One stored document.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocView {
    pub kind: String,
    pub name: String,
    pub generation: i64,
    pub observed_generation: Option<i64>,
    pub conditions: Vec<ConditionView>,
    pub drift: Drift,
    pub operation: Option<OpView>,
}

impl DocView {
    /// `Kind/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The conditions that hold (status True), by type.
    pub fn true_conditions(&self) -> Vec<&str> {
        self.conditions
            .iter()
            .filter(|c| c.status == "True")
            .map(|c| c.type_.as_str())
            .collect()
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub since: String,
}

/// What `tritonctl diff` of the stored document would report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "camelCase")]
pub enum Drift {
    /// The datacenter was not observed (no endpoints given).
    NotObserved,
    /// The datacenter is as the document says.
    InSync,
    /// A reconciler would act: the plan in a line.
    WouldAct(String),
    /// The review could not be made.
    Unknown(String),
}

impl Drift {
    pub fn label(&self) -> String {
        match self {
            Drift::NotObserved => "not observed".into(),
            Drift::InSync => "in sync".into(),
            Drift::WouldAct(s) => format!("drift: {s}"),
            Drift::Unknown(e) => format!("unknown: {e}"),
        }
    }
}

/// An operation and where it is.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpView {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub phase: String,
    /// The step running or waiting now (else the next pending one).
    pub current_step: Option<String>,
    pub current_state: Option<String>,
    pub current_message: Option<String>,
    /// Steps done (succeeded or skipped) and in all.
    pub done: usize,
    pub total: usize,
    /// Estimated time left, from the steps done so far.
    pub eta_seconds: Option<u64>,
    pub started_at: Option<String>,
    /// The first irreversible step, and whether it has started.
    pub point_of_no_return: Option<String>,
    pub past_point_of_no_return: bool,
    pub in_flight: bool,
}

/// HA posture (RFD 67's "are binder, manatee and moray HA yet").
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Posture {
    pub headnodes: Vec<HeadnodeView>,
    pub binder: Members,
    pub moray: Members,
    pub shards: Vec<ShardView>,
}

/// Instances of one core service: how many, how many running.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Members {
    pub members: usize,
    pub running: usize,
}

impl Members {
    /// A ZooKeeper ensemble keeps quorum while a majority runs.
    pub fn quorum(&self) -> bool {
        self.members > 0 && self.running * 2 > self.members
    }
    /// Highly available: at least three, all running.
    pub fn ha(&self) -> bool {
        self.members >= 3 && self.running == self.members
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadnodeView {
    pub hostname: String,
    pub uuid: String,
    pub status: String,
    /// Core instances (VMs with a `smartdc_role`) on it.
    pub instances: Vec<InstanceView>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub alias: String,
    pub role: String,
    pub state: String,
    pub uuid: String,
}

/// One manatee shard.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardView {
    pub name: String,
    pub peers: Vec<PeerView>,
    /// The freeze reason, when frozen.
    pub frozen: Option<String>,
    pub one_node_write_mode: bool,
    pub generation: Option<u64>,
    pub error: Option<String>,
}

impl ShardView {
    pub fn in_role(&self, role: &str) -> Vec<&PeerView> {
        self.peers.iter().filter(|p| p.role == role).collect()
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    pub zone: String,
    pub alias: String,
    pub server: String,
    /// primary, sync, async, deposed, unassigned.
    pub role: String,
    pub image: String,
    pub vm_state: String,
    pub pg_online: bool,
    pub lag_seconds: Option<f64>,
}

/// The hash ring.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RingView {
    /// `ring image UUID`, or the ShardTopology the ring was built from.
    pub source: String,
    pub vnodes: u32,
    pub shards: Vec<RingShard>,
    pub read_only: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RingShard {
    pub pnode: String,
    pub vnodes: usize,
    /// Percent of the ring.
    pub share: f64,
    pub read_only: usize,
}

impl RingView {
    /// Count the vnodes of each pnode of `ring`.
    pub fn of(ring: &wire::fash::Ring, source: String) -> RingView {
        let total = ring.vnode_count();
        let shards: Vec<RingShard> = ring
            .pnodes()
            .iter()
            .map(|p| {
                let vs = ring.vnodes_of(p).unwrap_or_default();
                let ro = vs.iter().filter(|v| ring.is_read_only(**v)).count();
                RingShard {
                    pnode: p.clone(),
                    vnodes: vs.len(),
                    share: if total == 0 {
                        0.0
                    } else {
                        vs.len() as f64 * 100.0 / f64::from(total)
                    },
                    read_only: ro,
                }
            })
            .collect();
        RingView {
            source,
            vnodes: total,
            read_only: shards.iter().map(|s| s.read_only).sum(),
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_view_counts_vnodes_share_and_read_only_vnodes_per_shard() {
        let mut ring =
            wire::fash::Ring::create(8, &["tcp://1.moray:2020", "tcp://2.moray:2020"]).unwrap();
        let first = ring.vnodes_of("tcp://1.moray:2020").unwrap();
        ring.set_read_only(&first[..2], true).unwrap();
        let v = RingView::of(&ring, "ring image x".into());
        assert_eq!(v.vnodes, 8);
        assert_eq!(v.read_only, 2);
        let one = &v.shards[0];
        assert_eq!(one.pnode, "tcp://1.moray:2020");
        assert_eq!(one.vnodes, first.len());
        assert_eq!(one.read_only, 2);
        assert_eq!(v.shards.iter().map(|s| s.vnodes).sum::<usize>(), 8);
        assert!((v.shards.iter().map(|s| s.share).sum::<f64>() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn quorum_is_a_majority_and_ha_is_three_all_running() {
        let m = |members, running| Members { members, running };
        assert!(m(3, 2).quorum() && !m(3, 2).ha());
        assert!(!m(3, 1).quorum());
        assert!(m(3, 3).ha());
        assert!(!m(1, 1).ha() && m(1, 1).quorum());
        assert!(!m(0, 0).quorum());
    }
}
