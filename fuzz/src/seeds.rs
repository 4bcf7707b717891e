//! Real inputs to start from: the example documents in `examples/`, the
//! API records and manatee state of `fuzz/seeds/` (written from the records
//! in research/triton-apis.md and research/manatee.md), and what our own
//! encoders produce (fash rings of the example topologies, jute replies).

use std::path::{Path, PathBuf};

use coord::Stat;
use coord::jute::{ConnectResponse, MultiResult};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()))
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// The example documents (`examples/**/*.yaml`).
pub fn example_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files_under(&root().join("examples"), "yaml", &mut out);
    out
}

fn seed_file(name: &str) -> Vec<u8> {
    read(&root().join("fuzz").join("seeds").join(name))
}

fn seed_files(prefixes: &[&str]) -> Vec<Vec<u8>> {
    let dir = root().join("fuzz").join("seeds");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    names.iter().map(|n| seed_file(n)).collect()
}

/// Seed inputs of one target (by its name in [`crate::targets`]).
pub fn inputs(target: &str) -> Vec<Vec<u8>> {
    match target {
        "documents" => {
            let mut out: Vec<Vec<u8>> = example_paths().iter().map(|p| read(p)).collect();
            // The same documents as JSON, which the parser also takes.
            let json: Vec<Vec<u8>> = values("documents")
                .iter()
                .map(|v| serde_json::to_vec_pretty(v).expect("JSON"))
                .collect();
            out.extend(json);
            out
        }
        "manatee_state" => seed_files(&["manatee-state"]),
        "election" => seed_files(&["election"]),
        "apis" => seed_files(&["sapi-", "vmapi-", "cnapi-", "imgapi-", "rest-"]),
        "pgstatus" => seed_files(&["pgstatus"]),
        "jute" => jute_replies(),
        "fash_ring" => rings(),
        other => panic!("no seeds for target {other}"),
    }
}

/// The JSON values of a target's seeds, for structure-aware mutation.
pub fn values(target: &str) -> Vec<Value> {
    match target {
        "documents" => example_paths()
            .iter()
            .flat_map(|p| {
                let text = String::from_utf8(read(p)).expect("examples are UTF-8");
                let (docs, diags) = crds::parse_documents(&p.to_string_lossy(), &text);
                assert!(diags.is_empty(), "{}: {diags:?}", p.display());
                docs.into_iter().map(|d| d.raw)
            })
            .collect(),
        "jute" | "pgstatus" => Vec::new(),
        other => inputs(other)
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect(),
    }
}

/// Replies a ZooKeeper 3.4 server sends: a connect response, and a multi
/// response with every result type.
fn jute_replies() -> Vec<Vec<u8>> {
    let stat = Stat {
        version: 7,
        cversion: 1,
        ctime_ms: 1_714_564_800_000,
        mtime_ms: 1_714_564_801_000,
        ephemeral_owner: 0x0100_0000_0000_0042,
        num_children: 0,
        data_length: 512,
    };
    let multi = crate::jute_enc::multi_response(&[
        MultiResult::Create("/tritonctl/v1/leader/candidate-0000000004".into()),
        MultiResult::SetData(stat),
        MultiResult::Delete,
        MultiResult::Check,
        MultiResult::Error(0),
        MultiResult::Error(coord::jute::code::BAD_VERSION),
    ]);
    let connect = crate::jute_enc::connect_response(
        &ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 0x0100_0000_0000_0042,
            passwd: vec![7; 16],
        },
        Some(false),
    );
    let mut reply = Vec::new();
    coord::jute::put_i32(&mut reply, 5);
    coord::jute::put_i64(&mut reply, 0x1_0000_0002);
    coord::jute::put_i32(&mut reply, 0);
    reply.extend_from_slice(&multi);
    vec![multi, connect, reply]
}

/// fash rings of the example topologies, shrunk to a few vnodes so that a
/// case stays small (the ring format does not change with the count).
fn rings() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in example_paths() {
        let text = String::from_utf8(read(&p)).expect("UTF-8");
        let (docs, _) = crds::parse_documents("x.yaml", &text);
        for d in docs {
            let crds::Document::ShardTopology(t) = d.document else {
                continue;
            };
            for vnodes in [8, 64] {
                let mut spec = t.spec.clone();
                spec.ring.vnodes = vnodes;
                spec.ring.assignment = None;
                if let Ok(ring) = crds::ring::topology_ring(&spec) {
                    out.push(ring.to_json().into_bytes());
                }
            }
        }
    }
    assert!(!out.is_empty(), "the examples hold a ShardTopology");
    out
}
