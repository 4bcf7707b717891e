//! How long `tritonctl diff` takes: on the three-datacenter example
//! (examples/us-east) and on a generated region ten times larger (30
//! datacenters, 40 shards, a 1,310,720-vnode ring), against a snapshot of
//! observed state (offline, so the network is not what is measured).
//!
//! The baseline, measured in the same run on the same documents, is
//! reading them: parsing the YAML with locations and validating every
//! safety rule (what `tritonctl validate` does). Each workload is reported
//! as time and as a multiple of that baseline.
//!
//! Two workloads per region:
//! - `steady`: the documents as stored, the shards on an older image: every
//!   shard gets a planned upgrade, no spec changes;
//! - `change`: a new manatee image and a shard split (a new shard, half of
//!   shard 2's vnodes moving): spec diffs, upgrades and the exact vnode moves.
//!
//! `cargo bench -p tritonctl --bench gitops_diff`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use crds::Document;
use reconcilers::manatee::{ImageInfo, PeerObservation, ShardObservation};
use tritonctl::gitops::observed::{Observed, Recorded, SNAPSHOT_FORMAT, ShardRecord, StoredView};
use tritonctl::gitops::render;
use tritonctl::gitops::review::review;
use wire::manatee::{ClusterState, PeerIdent};

const CURRENT: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";
const NEXT: &str = "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716";
const OLD: &str = "6d8a6f1e-1b2c-4c3d-9e4f-5a6b7c8d9e01";

/// (file name, text) pairs.
type Files = Vec<(String, String)>;

fn read_dir(dir: &Path) -> Files {
    let mut v: Files = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A us-east-like region `k` times the example: 3k datacenters, 4k shards,
/// 131072k vnodes. `change`: the next image and shard 2 split onto a new shard.
fn generate(k: u32, change: bool) -> Files {
    let dcs = 3 * k;
    let shards = 4 * k;
    let mut files = Vec::new();
    for d in 1..=dcs {
        let hn: Vec<String> = (0..3).map(|i| format!("us-east-{d}-hn{i}")).collect();
        let list = format!("[{}]", hn.join(", "));
        files.push((
            format!("headnodeset-us-east-{d}.yaml"),
            format!(
                "apiVersion: tritonctl/v1alpha1\nkind: HeadnodeSet\nmetadata:\n  name: us-east-{d}\nspec:\n  datacenter: us-east-{d}\n  headnodes: {list}\n  primary: {}\n  haServices:\n    binder: {list}\n    manatee: {list}\n    moray: {list}\n  restore:\n    backupServices: [sapi, imgapi, ufds]\n    backupInterval: 1h\n",
                hn[0]
            ),
        ));
    }
    let names: Vec<String> = (1..=shards)
        .map(|s| format!("{s}.moray.us-east.joyent.us"))
        .collect();
    files.push((
        "manatee.yaml".into(),
        format!(
            "apiVersion: tritonctl/v1alpha1\nkind: ManateeVersion\nmetadata:\n  name: manta-us-east\nspec:\n  shards:\n{}  image:\n    uuid: {}\n  rollout:\n    parallelism: 2\n    canary: 2.moray.us-east.joyent.us\n    approval: beforePrimary\n",
            names.iter().map(|n| format!("    - {n}\n")).collect::<String>(),
            if change { NEXT } else { CURRENT }
        ),
    ));
    let total = if change { shards + 1 } else { shards };
    let mut topo = String::from(
        "apiVersion: tritonctl/v1alpha1\nkind: ShardTopology\nmetadata:\n  name: us-east\nspec:\n  region: us-east\n  dnsDomain: us-east.joyent.us\n  shards:\n",
    );
    for s in 1..=total {
        let roles = if s == 1 {
            "[marlin, storage]"
        } else {
            "[index]"
        };
        topo.push_str(&format!(
            "    - name: {s}.moray.us-east.joyent.us\n      roles: {roles}\n      morays: 3\n      peers:\n"
        ));
        for i in 0..3 {
            let d = (s + i) % dcs + 1;
            topo.push_str(&format!(
                "        - {{server: us-east-{d}-cn{s:03}, datacenter: us-east-{d}}}\n"
            ));
        }
    }
    topo.push_str(&format!("  ring:\n    vnodes: {}\n", 131072 * k));
    if change {
        topo.push_str(&format!(
            "    intents:\n      - split: {{from: 2.moray.us-east.joyent.us, to: {total}.moray.us-east.joyent.us, fraction: 1/2}}\n"
        ));
    }
    files.push(("shardtopology.yaml".into(), topo));
    files
}

/// The baseline: parse with locations and validate (`tritonctl validate`).
fn parse_validate(files: &Files) -> Vec<Document> {
    let mut parsed = Vec::new();
    for (name, text) in files {
        let (docs, diags) = crds::parse_documents(name, text);
        assert!(diags.is_empty(), "{diags:?}");
        parsed.extend(docs);
    }
    let diags = crds::validate_all(&parsed);
    assert!(!diags.iter().any(|d| d.is_error()), "{:?}", diags.first());
    parsed.into_iter().map(|d| d.document).collect()
}

/// Every shard of `docs` observed healthy with three peers on `image`.
fn observed(docs: &[Document], stored: StoredView, image: &str) -> Observed {
    let mut shards = BTreeMap::new();
    for d in docs {
        if let Document::ManateeVersion(mv) = d {
            for (n, s) in mv.spec.shards.iter().enumerate() {
                let zones: Vec<String> = (0..3)
                    .map(|i| format!("{n:08x}-0000-4000-8000-{i:012x}"))
                    .collect();
                let ident =
                    |i: usize| PeerIdent::with_default_ports(&zones[i], &format!("10.1.{n}.{i}"));
                let state = ClusterState::initial(ident(0), ident(1), vec![ident(2)]);
                let peers = (0..3)
                    .map(|i| PeerObservation {
                        zone: zones[i].clone(),
                        alias: format!("{s}-pg{i}"),
                        server: format!("cn-{n}-{i}"),
                        image: image.into(),
                        vm_state: "running".into(),
                        active: true,
                        pg_online: true,
                        lag_seconds: Some(0.0),
                        one_node_write_mode: false,
                    })
                    .collect();
                shards.insert(
                    s.clone(),
                    ShardRecord {
                        observation: Some(ShardObservation {
                            shard: s.clone(),
                            state: Some(state),
                            peers,
                        }),
                        error: None,
                    },
                );
            }
        }
        if let Document::ShardTopology(t) = d {
            for s in &t.spec.shards {
                shards.entry(s.name.clone()).or_insert(ShardRecord {
                    observation: Some(ShardObservation {
                        shard: s.name.clone(),
                        state: None,
                        peers: vec![],
                    }),
                    error: None,
                });
            }
        }
    }
    let img = |uuid: &str, version: &str| {
        (
            uuid.to_string(),
            Some(ImageInfo {
                uuid: uuid.into(),
                name: "sdc-manatee".into(),
                version: version.into(),
                state: "active".into(),
                manatee_major: Some(2),
            }),
        )
    };
    Observed {
        format: SNAPSHOT_FORMAT.into(),
        captured_at: "2026-01-01T00:00:00Z".into(),
        source: "benchmark".into(),
        stored,
        shards,
        images: [
            img(CURRENT, "20240327T001755Z"),
            img(NEXT, "20251104T182201Z"),
            img(OLD, "20230101T000000Z"),
        ]
        .into_iter()
        .collect(),
        ring_image: None,
        manta: None,
        transplants: Default::default(),
        // Every server a HeadnodeSet names is known to CNAPI.
        servers: docs
            .iter()
            .filter_map(|d| match d {
                Document::HeadnodeSet(h) => Some(h.spec.ha_services.manatee.clone()),
                _ => None,
            })
            .flatten()
            .map(|n| (n.clone(), Some(format!("uuid-{n}"))))
            .collect(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> Duration {
    black_box(f()); // warm up
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:>9.2} ms", d.as_secs_f64() * 1000.0)
}

fn measure(
    rt: &tokio::runtime::Runtime,
    name: &str,
    stored_files: &Files,
    new_files: &Files,
    rounds: usize,
) {
    let stored_docs = parse_validate(stored_files);
    let docs = parse_validate(new_files);
    // steady: shards observed on an older image; change: on the current one.
    let image = if stored_files == new_files {
        OLD
    } else {
        CURRENT
    };
    let recorded = Recorded {
        observed: observed(&docs, StoredView::of_documents(&stored_docs), image),
        origin: "bench".into(),
    };
    let stored = recorded.observed.stored.clone();
    let r = rt
        .block_on(review(&docs, &stored, Some(&recorded)))
        .unwrap();
    let moved: usize = r
        .documents
        .iter()
        .filter_map(|d| match &d.plan {
            tritonctl::gitops::review::KindPlan::Topology(t) => {
                Some(t.moves.iter().map(|m| m.count).sum::<usize>())
            }
            _ => None,
        })
        .sum();

    let base = time(rounds, || parse_validate(new_files));
    let plan = time(rounds, || {
        rt.block_on(review(&docs, &stored, Some(&recorded)))
            .unwrap()
    });
    let text = time(rounds, || render::text(&r, false));
    let md = time(rounds, || render::markdown(&r));
    let json = time(rounds, || serde_json::to_string(&r).unwrap());
    let full = time(rounds, || {
        let d = parse_validate(new_files);
        let r = rt.block_on(review(&d, &stored, Some(&recorded))).unwrap();
        render::text(&r, false)
    });
    let x = |d: Duration| format!("{:>6.2}x", d.as_secs_f64() / base.as_secs_f64());
    println!(
        "[{name}] {} documents, {} shard operations, {moved} vnodes moving; median of {rounds}",
        docs.len(),
        r.documents
            .iter()
            .filter_map(|d| match &d.plan {
                tritonctl::gitops::review::KindPlan::Manatee(m) =>
                    Some(m.shards.iter().filter(|s| s.operation.is_some()).count()),
                _ => None,
            })
            .sum::<usize>()
    );
    println!("  baseline parse+validate:       {} {}", ms(base), x(base));
    println!("  review (plan every document):  {} {}", ms(plan), x(plan));
    println!("  render text:                   {} {}", ms(text), x(text));
    println!("  render markdown:               {} {}", ms(md), x(md));
    println!("  render json:                   {} {}", ms(json), x(json));
    println!(
        "  diff end to end (parse, validate, review, text): {} {}",
        ms(full),
        x(full)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let us_east = read_dir(&root.join("examples/us-east"));
    // The example with its two scenarios applied over it.
    let mut us_east_change: Files = us_east
        .iter()
        .filter(|(n, _)| !n.ends_with("manatee.yaml") && !n.ends_with("shardtopology.yaml"))
        .cloned()
        .collect();
    us_east_change.extend(read_dir(&root.join("examples/scenarios/manatee-upgrade")));
    us_east_change.extend(read_dir(&root.join("examples/scenarios/split-shard")));

    measure(&rt, "examples/us-east, steady", &us_east, &us_east, 51);
    measure(
        &rt,
        "examples/us-east + manatee-upgrade + split-shard",
        &us_east,
        &us_east_change,
        51,
    );
    let big = generate(10, false);
    let big_change = generate(10, true);
    measure(&rt, "generated region x10, steady", &big, &big, 25);
    measure(&rt, "generated region x10, change", &big, &big_change, 25);
}
