//! The resharding operation a ShardTopology's moves run, as a review shows
//! it: the steps by their canonical names (shared with the reconciler and
//! the measurement), the read-only window of the moving vnodes with an
//! estimate of its length and what that rests on, and the point of no
//! return.

use crds::ring::{VnodeMove, render_ranges, vnode_ranges};
use crds::shards::ShardTopologySpec;

use super::types::{ReadOnlyWindow, ReshardReview, ReshardStepReview};
use crate::gitops::manta::MantaObservation;

/// The resharding operation's steps, in order: the reconciler's own list
/// (it journals them under these names; the measurement reports them), so
/// the review cannot show steps the controller does not run.
pub const RESHARD_STEPS: [&str; 19] = reconcilers::reshard::STEPS;

/// The step that cannot be undone: the ring mapping the moved vnodes to
/// the new shard (the reconciler's point of no return).
pub const POINT_OF_NO_RETURN: &str = reconcilers::reshard::PNR_STEP;
/// The read-only window of the moving vnodes: from R1 (`ro`) going out to
/// R3 (without `ro`) verified everywhere.
pub const WINDOW_OPENS: &str = "mark-ro";
pub const WINDOW_CLOSES: &str = "mark-rw";

/// Assumed, not measured here: one electric-moray restart (SMF restart,
/// the ring's LevelDB loaded) and its `/status` read.
const EM_RESTART_S: u64 = 5;
/// Assumed: one new peer detached (sitter disabled, SAPI metadata
/// updated, restarted into the new shard).
const DETACH_PEER_S: u64 = 10;
/// A sentinel row written and read back on peers already caught up, and
/// the new shard's first cluster state written: about a second each.
const ONE_WRITE_S: u64 = 1;

/// One operation per move, in order. `name` is the change each comes from.
pub(super) fn operations(
    spec: &ShardTopologySpec,
    moves: &[(String, VnodeMove)],
    manta: &MantaObservation,
) -> Vec<ReshardReview> {
    moves
        .iter()
        .map(|(name, m)| operation(spec, name, m, manta))
        .collect()
}

fn operation(
    spec: &ShardTopologySpec,
    name: &str,
    m: &VnodeMove,
    manta: &MantaObservation,
) -> ReshardReview {
    let (from, to) = (m.from.as_str(), m.to.as_str());
    let count = m.vnodes.len();
    let list: Vec<u32> = m.vnodes.iter().copied().collect();
    let ranges = vnode_ranges(&list);
    let e = manta.electric_morays.len() as u64;
    let target = spec.shards.iter().find(|s| s.name == to);
    let peers: Vec<&str> = target
        .map(|s| s.peers.iter().map(|p| p.server.as_str()).collect())
        .unwrap_or_default();
    let n = peers.len() as u64;
    let morays = target.map_or(0, |s| s.morays);
    let lag = spec.reshard.max_replication_lag_seconds;
    let image = manta.ring_image.as_deref().unwrap_or("(none)");
    let ems = format!("each of the {e} electric-moray(s)");
    let step = |name: &str, description: String| ReshardStepReview {
        name: name.to_string(),
        description,
        read_only: false,
        irreversible: false,
    };
    let mut steps = vec![
        step("preflight", format!("`{from}` healthy with replication lag under {lag} s; {ems} reachable and on the live ring (image {image}); the ring image readable")),
        step("lock-region", "ZooKeeper lock /tritonctl/v1/locks/reshard naming this operation; a second resharding in the region is refused, naming the holder".into()),
        step("freeze-source", format!("manatee freeze of `{from}`, reason `tritonctl reshard <op-id>` (only this freeze is ever lifted)")),
        step("add-peers", format!("{n} peer(s) of `{to}` added as asyncs of `{from}` (SAPI postgres instances tagged with the operation) on {}", peers.join(", "))),
        step("await-catch-up", format!("the new peers restore `{from}` and catch up to under {lag} s (progress: MB done, MB/s, ETA)")),
        step("provision-morays", format!("{morays} moray instance(s) of `{to}`, tagged")),
        step("build-rings", format!("three ring images built with fashdb and imported into IMGAPI, tagged: R1 = the live ring with the {count} moving vnodes `ro`; R2 = those vnodes on `{to}`, still `ro`; R3 = R2 without `ro`")),
        step("approval", if spec.reshard.approval {
            "waits for `tritonctl approve` (spec.reshard.approval)".to_string()
        } else {
            "off (spec.reshard.approval is false): passes at once".to_string()
        }),
        step("take-dump-lock", format!("/pg_dump_lock taken: no dump of `{from}` runs across the detach")),
        step("mark-ro", format!("SAPI HASH_RING_IMAGE=R1, {ems} restarted and verified through its /status: from here the {count} moving vnodes refuse writes; every other vnode stays writable")),
        step("sentinel", format!("a sentinel row written after the read-only point and seen on each of the {n} new peer(s) before they detach")),
        step("detach-peers", format!("the new peers' sitters disabled, SAPI metadata to `{to}`, restarted into it; `{to}`'s first cluster state (generation 1, frozen with this operation's reason)")),
        step("install-ring", format!("POINT OF NO RETURN: HASH_RING_IMAGE=R2 rolled out and verified on {ems}: the moved vnodes now map to `{to}`")),
        step("mark-rw", format!("HASH_RING_IMAGE=R3 rolled out and verified on {ems}: the moved vnodes accept writes on `{to}`")),
        step("release-dump-lock", "/pg_dump_lock released".into()),
        step("cleanup", format!("rows each side no longer owns deleted on both shards (on `{from}` the {count} moved vnodes, on `{to}` every other vnode), batched, live-tuned (`tritonctl reshard tune`), throttled by read latency; NULL `_vnode` rows placed by key")),
        step("verify-counts", format!("counts per vnode: no moved vnode's row left on `{from}`, nothing else of `{from}`'s on `{to}`")),
        step("unfreeze", format!("`{from}` and `{to}` unfrozen (only this operation's freezes)")),
        step("release-region-lock", "the region lock released".into()),
    ];
    debug_assert!(steps.iter().map(|s| s.name.as_str()).eq(RESHARD_STEPS));
    let opens = RESHARD_STEPS
        .iter()
        .position(|s| *s == WINDOW_OPENS)
        .expect("listed");
    let closes = RESHARD_STEPS
        .iter()
        .position(|s| *s == WINDOW_CLOSES)
        .expect("listed");
    for (i, s) in steps.iter_mut().enumerate() {
        s.read_only = (opens..=closes).contains(&i);
        s.irreversible = s.name == POINT_OF_NO_RETURN;
    }
    let rollout = e * EM_RESTART_S;
    let rests_on = vec![
        format!("mark-ro, install-ring, mark-rw: {e} electric-moray restart(s) each, one at a time, ~{EM_RESTART_S} s per restart and /status check (assumed, not measured) = {rollout} s each"),
        format!("sentinel: one row written and seen on {n} peer(s) already within {lag} s of the source: ~{ONE_WRITE_S} s"),
        format!("detach-peers: {n} peer(s) x ~{DETACH_PEER_S} s (sitter disabled, SAPI update, restart; assumed) + ~{ONE_WRITE_S} s for the cluster state = {} s", n * DETACH_PEER_S + ONE_WRITE_S),
        "outside the window: add-peers, await-catch-up, provision-morays and build-rings before it; cleanup and verify-counts after it (manta-reshard keeps both whole shards read-only across its phases 8 to 16)".into(),
    ];
    let estimate = 3 * rollout + ONE_WRITE_S + n * DETACH_PEER_S + ONE_WRITE_S;
    ReshardReview {
        name: name.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        count,
        vnodes: ranges
            .iter()
            .map(|r| render_ranges(std::slice::from_ref(r), 1))
            .collect(),
        steps,
        read_only_window: ReadOnlyWindow {
            vnodes: count,
            opens_at: WINDOW_OPENS.into(),
            closes_at: WINDOW_CLOSES.into(),
            estimate_seconds: estimate,
            rests_on,
        },
        point_of_no_return: POINT_OF_NO_RETURN.into(),
        rollback: format!(
            "before install-ring, `tritonctl cancel` or a failure rolls back: the original ring re-installed and verified on every electric-moray (the vnodes writable on `{from}` again), the new peers removed, /pg_dump_lock released, this operation's freeze lifted; after it, going back is a new resharding in reverse (moving the vnodes from `{to}` to `{from}`), which loses nothing"
        ),
        waits: if spec.reshard.approval {
            vec!["approval before take-dump-lock (`tritonctl approve`)".into()]
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(approval: bool) -> ShardTopologySpec {
        let mut s: ShardTopologySpec = serde_saphyr::from_str(
            "region: r\ndnsDomain: r.example\nshards:\n  - {name: 1.moray.r.example, roles: [index], peers: [{server: a}]}\n  - {name: 2.moray.r.example, roles: [index], morays: 2, peers: [{server: b}, {server: c}, {server: d}]}\nring: {vnodes: 10}\n",
        )
        .unwrap();
        s.reshard.approval = approval;
        s
    }

    fn manta(ems: usize) -> MantaObservation {
        MantaObservation {
            region: None,
            dns_domain: None,
            ring_image: Some("img".into()),
            ring: None,
            ring_error: None,
            index_shards: vec![],
            marlin_shard: None,
            storage_shard: None,
            electric_morays: (0..ems).map(|i| format!("em{i}")).collect(),
            shards: Default::default(),
            vnode_rows: Default::default(),
        }
    }

    fn mv() -> VnodeMove {
        VnodeMove {
            from: "1.moray.r.example".into(),
            to: "2.moray.r.example".into(),
            vnodes: [1, 2, 3, 7].into_iter().collect(),
        }
    }

    #[test]
    fn the_steps_are_the_canonical_list_with_the_window_and_the_point_of_no_return() {
        let ops = operations(&spec(false), &[("m".into(), mv())], &manta(2));
        let op = &ops[0];
        let names: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, RESHARD_STEPS);
        let window: Vec<&str> = op
            .steps
            .iter()
            .filter(|s| s.read_only)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            window,
            [
                "mark-ro",
                "sentinel",
                "detach-peers",
                "install-ring",
                "mark-rw"
            ]
        );
        let pnr: Vec<&str> = op
            .steps
            .iter()
            .filter(|s| s.irreversible)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(pnr, ["install-ring"]);
        assert_eq!(op.vnodes, vec!["1-3", "7"]);
        assert_eq!(op.count, 4);
        assert!(op.waits.is_empty());
    }

    #[test]
    fn the_estimate_follows_the_electric_morays_and_the_peers_it_rests_on() {
        // 3 rollouts x 2 e-ms x 5 s + 1 s sentinel + 3 peers x 10 s + 1 s.
        let op = &operations(&spec(true), &[("m".into(), mv())], &manta(2))[0];
        assert_eq!(op.read_only_window.estimate_seconds, 30 + 1 + 30 + 1);
        let op4 = &operations(&spec(true), &[("m".into(), mv())], &manta(4))[0];
        assert_eq!(op4.read_only_window.estimate_seconds, 60 + 1 + 30 + 1);
        assert!(op.read_only_window.rests_on[0].contains("2 electric-moray restart(s)"));
        assert_eq!(op.waits.len(), 1);
        assert!(
            op.steps[7]
                .description
                .contains("waits for `tritonctl approve`")
        );
    }
}
