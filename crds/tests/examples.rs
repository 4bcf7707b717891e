//! Every example directory is a valid desired-state set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crds::{parse_documents, validate_all};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "json") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_is_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(files.len() >= 10, "examples/ went missing: {files:?}");
    let mut by_dir: BTreeMap<PathBuf, Vec<_>> = BTreeMap::new();
    for f in files {
        let (docs, diags) = parse_documents(
            &f.display().to_string(),
            &std::fs::read_to_string(&f).unwrap(),
        );
        assert!(diags.is_empty(), "{diags:?}");
        by_dir
            .entry(f.parent().unwrap().to_path_buf())
            .or_default()
            .extend(docs);
    }
    for (dir, docs) in by_dir {
        let diags = validate_all(&docs);
        assert!(diags.is_empty(), "{}: {diags:#?}", dir.display());
    }
}

#[test]
fn the_region_example_has_four_shards_on_three_datacenters() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/us-east/shardtopology.yaml");
    let (docs, _) = parse_documents("st", &std::fs::read_to_string(root).unwrap());
    let crds::Document::ShardTopology(st) = &docs[0].document else {
        panic!("not a topology")
    };
    assert_eq!(st.spec.shards.len(), 4);
    assert_eq!(st.spec.index_shards().len(), 3);
    for s in &st.spec.shards {
        let dcs: std::collections::HashSet<_> =
            s.peers.iter().map(|p| p.datacenter.clone()).collect();
        assert_eq!(dcs.len(), 3, "{} peers must span 3 DCs", s.name);
    }
}
