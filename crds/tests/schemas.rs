//! The JSON Schemas checked into `manifests/` must match the types.
//! Regenerate with `TRITONCTL_BLESS=1 cargo test -p crds --test schemas`.

use std::path::PathBuf;

use crds::Kind;
use crds::schema::{schema_file_name, schema_json};

fn manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

#[test]
fn checked_in_schemas_are_current() {
    let bless = std::env::var_os("TRITONCTL_BLESS").is_some();
    let mut stale = Vec::new();
    for kind in Kind::ALL {
        let path = manifests().join(schema_file_name(kind));
        let want = schema_json(kind);
        if bless {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas {stale:?}: run TRITONCTL_BLESS=1 cargo test -p crds --test schemas"
    );
}

#[test]
fn schemas_reject_unknown_fields() {
    // deny_unknown_fields must reach the schema, or editors would accept typos.
    let v: serde_json::Value = serde_json::from_str(&schema_json(Kind::ManateeVersion)).unwrap();
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
    assert_eq!(v["title"], "ManateeVersion");
}
