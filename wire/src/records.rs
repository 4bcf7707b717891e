//! Lists decoded one record at a time.
//!
//! Real SAPI stores whatever JSON types a client sent (`master: "true"`,
//! `metadata: []`), so a list can hold a record our typed structs cannot
//! read. Decoding the whole array at once would let that one record fail
//! the whole list; [`decode_records`] decodes each element on its own and
//! reports the ones it could not read as [`OddRecord`]s (uuid, field path,
//! serde's words, and the record as sent), so a caller can use the rest and
//! decide what an unreadable record means for it.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A list element that did not decode into the expected record type.
#[derive(Clone, Debug, PartialEq)]
pub struct OddRecord {
    /// The element's `uuid` when it has a string one.
    pub uuid: Option<String>,
    /// Path of the field that failed (`master`, `metadata`,
    /// `nics[0].ip`); empty when the element itself is not an object.
    pub field: String,
    /// What was wrong, in serde's words.
    pub message: String,
    /// The element as the API sent it.
    pub raw: Value,
}

impl OddRecord {
    /// `uuid` or `(no uuid)`, for messages.
    pub fn name(&self) -> &str {
        self.uuid.as_deref().unwrap_or("(no uuid)")
    }

    /// A string field of the record as sent, read without the typed struct
    /// (e.g. a manatee instance's `metadata.SHARD` when `master` is odd).
    pub fn raw_str(&self, path: &[&str]) -> Option<&str> {
        let mut v = &self.raw;
        for k in path {
            v = v.get(k)?;
        }
        v.as_str()
    }
}

impl std::fmt::Display for OddRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "record {}: {}", self.name(), self.message)
        } else {
            write!(
                f,
                "record {} field `{}`: {}",
                self.name(),
                self.field,
                self.message
            )
        }
    }
}

/// A decoded list: the records that decoded, in order, and the ones that
/// did not.
#[derive(Clone, Debug, PartialEq)]
pub struct Records<T> {
    pub ok: Vec<T>,
    pub odd: Vec<OddRecord>,
}

impl<T> Default for Records<T> {
    fn default() -> Self {
        Records {
            ok: Vec::new(),
            odd: Vec::new(),
        }
    }
}

impl<T> Records<T> {
    pub fn is_clean(&self) -> bool {
        self.odd.is_empty()
    }

    /// One line naming every odd record (uuid, field, reason); empty when
    /// there is none.
    pub fn odd_summary(&self) -> String {
        self.odd
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The body was not a JSON array at all (the whole answer is unusable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a JSON array, got {found}")]
pub struct NotAList {
    pub found: &'static str,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decode one element; on failure say which field and why (boxed: the
/// record as sent travels with it).
pub fn decode_record<T: DeserializeOwned>(v: Value) -> Result<T, Box<OddRecord>> {
    match serde_path_to_error::deserialize::<_, T>(&v) {
        Ok(t) => Ok(t),
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let message = e.into_inner().to_string();
            Err(Box::new(OddRecord {
                uuid: v.get("uuid").and_then(Value::as_str).map(str::to_string),
                field,
                message,
                raw: v,
            }))
        }
    }
}

/// Decode a JSON array element by element.
pub fn decode_records<T: DeserializeOwned>(v: Value) -> Result<Records<T>, NotAList> {
    let Value::Array(items) = v else {
        return Err(NotAList { found: kind_of(&v) });
    };
    let mut out = Records::default();
    for item in items {
        match decode_record(item) {
            Ok(t) => out.ok.push(t),
            Err(o) => out.odd.push(*o),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::{Instance, Server, Vm};
    use serde_json::json;

    #[test]
    fn an_odd_record_is_reported_by_uuid_and_field_and_the_rest_decode() {
        let body = json!([
            {"uuid": "a", "service_uuid": "s", "metadata": {"SHARD": "1"}},
            {"uuid": "b", "service_uuid": "s", "master": "true"},
            {"uuid": "c", "service_uuid": "s", "metadata": []},
            {"uuid": "d", "service_uuid": "s", "master": true}
        ]);
        let r: Records<Instance> = decode_records(body).unwrap();
        assert_eq!(
            r.ok.iter().map(|i| i.uuid.as_str()).collect::<Vec<_>>(),
            ["a", "d"]
        );
        assert_eq!(r.odd.len(), 2);
        assert_eq!(r.odd[0].uuid.as_deref(), Some("b"));
        assert_eq!(r.odd[0].field, "master");
        assert_eq!(r.odd[1].uuid.as_deref(), Some("c"));
        assert_eq!(r.odd[1].field, "metadata");
        assert_eq!(r.odd[1].raw["metadata"], json!([]));
        let s = r.odd_summary();
        assert!(s.contains("record b field `master`"), "{s}");
        assert!(s.contains("record c field `metadata`"), "{s}");
    }

    #[test]
    fn raw_fields_stay_readable() {
        let r: Records<Instance> = decode_records(json!([
            {"uuid": "x", "master": 1, "metadata": {"SHARD": "2"}}
        ]))
        .unwrap();
        assert_eq!(r.odd[0].raw_str(&["metadata", "SHARD"]), Some("2"));
        assert_eq!(r.odd[0].raw_str(&["metadata", "NOPE"]), None);
    }

    #[test]
    fn nested_fields_and_non_objects_are_named() {
        let r: Records<Vm> = decode_records(json!([
            {"uuid": "v", "nics": [{"ip": 7}]},
            "not a vm"
        ]))
        .unwrap();
        assert!(r.ok.is_empty());
        assert_eq!(r.odd[0].field, "nics[0].ip");
        assert_eq!(r.odd[1].uuid, None);
        assert_eq!(r.odd[1].field, "");
        assert!(r.odd[1].to_string().starts_with("record (no uuid): "));
        let r: Records<Server> =
            decode_records(json!([{"uuid": "s", "hostname": "hn", "ram": "lots"}])).unwrap();
        assert_eq!(r.odd[0].field, "ram");
    }

    #[test]
    fn a_body_that_is_not_a_list_is_an_error() {
        let e = decode_records::<Instance>(json!({"uuid": "x"})).unwrap_err();
        assert_eq!(e.to_string(), "expected a JSON array, got an object");
    }
}
