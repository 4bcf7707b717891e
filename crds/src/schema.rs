//! JSON Schemas of the kinds (generated with schemars, checked in under `manifests/`).

use crate::document::Kind;
use crate::{HeadnodeSet, ManateeVersion, ShardTopology};

/// The JSON Schema of one kind, pretty-printed with a trailing newline.
pub fn schema_json(kind: Kind) -> String {
    let schema = match kind {
        Kind::HeadnodeSet => schemars::schema_for!(HeadnodeSet),
        Kind::ManateeVersion => schemars::schema_for!(ManateeVersion),
        Kind::ShardTopology => schemars::schema_for!(ShardTopology),
    };
    let mut v = schema.to_value();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("title".into(), kind.as_str().into());
        obj.insert(
            "$id".into(),
            format!(
                "https://tritonctl.dev/schemas/v1alpha1/{}.json",
                kind.short()
            )
            .into(),
        );
    }
    let mut s = serde_json::to_string_pretty(&v).expect("schemas serialize");
    s.push('\n');
    s
}

/// File name of a kind's schema under `manifests/`.
pub fn schema_file_name(kind: Kind) -> String {
    format!("{}.schema.json", kind.short())
}
