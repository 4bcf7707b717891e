//! SAPI objects as real SAPI stores them: the JSON a client sent, types and
//! all (`master: "true"`, `metadata: []`, `name: ""`), with keys never set
//! left out. The simulator's other parts (zone params, configs, sitters)
//! read a typed view of each record; a field whose JSON type the view cannot
//! hold is left at its default there, and the HTTP answers always render
//! what is stored.

use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wire::apis::JsonMap;

/// One stored SAPI record: `raw` is the truth, `view` is derived from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored<T> {
    raw: JsonMap,
    view: T,
}

impl<T: DeserializeOwned + Serialize + Default> Stored<T> {
    /// A record as a client sent it.
    pub fn from_raw(raw: JsonMap) -> Self {
        let view = lenient_view(&raw);
        Stored { raw, view }
    }

    /// A record the simulator made itself (seeding): stored as its JSON.
    pub fn from_view(view: T) -> Self {
        let raw = match serde_json::to_value(&view) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        };
        Self::from_raw(raw)
    }

    /// Change what is stored; the view follows.
    pub fn edit(&mut self, f: impl FnOnce(&mut JsonMap)) {
        f(&mut self.raw);
        self.view = lenient_view(&self.raw);
    }
}

impl<T> Stored<T> {
    pub fn raw(&self) -> &JsonMap {
        &self.raw
    }

    pub fn view(&self) -> &T {
        &self.view
    }

    pub fn into_view(self) -> T {
        self.view
    }
}

impl<T> Deref for Stored<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.view
    }
}

/// The typed view: every stored key whose JSON type the struct can hold;
/// the others are left at their defaults.
fn lenient_view<T: DeserializeOwned + Default>(raw: &JsonMap) -> T {
    if let Ok(t) = serde_json::from_value(Value::Object(raw.clone())) {
        return t;
    }
    let mut kept = JsonMap::new();
    for (k, v) in raw {
        kept.insert(k.clone(), v.clone());
        if serde_json::from_value::<T>(Value::Object(kept.clone())).is_err() {
            kept.remove(k);
        }
    }
    serde_json::from_value(Value::Object(kept)).unwrap_or_default()
}

/// The object `key` holds, or an empty one when it holds something else
/// (how SAPI's `assemble` reads a layer: `Object.keys` of a non-object adds
/// nothing the simulator models).
pub fn map_field(raw: &JsonMap, key: &str) -> JsonMap {
    match raw.get(key) {
        Some(Value::Object(m)) => m.clone(),
        _ => JsonMap::new(),
    }
}

/// The answer for a service or instance: the serialised keys in SAPI's
/// order, each only when stored (`undefined` is left out of JSON), `type`
/// only for Accept-Version >= 2.0.0, `job_uuid` when the create set it.
pub fn render(raw: &JsonMap, keys: &[&str], v2: bool, job_uuid: Option<&str>) -> JsonMap {
    let mut out = JsonMap::new();
    for k in keys {
        if let Some(v) = raw.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    if let Some(j) = job_uuid {
        out.insert("job_uuid".into(), Value::String(j.to_string()));
    }
    if v2 && let Some(t) = raw.get("type") {
        out.insert("type".into(), t.clone());
    }
    out
}

/// `serialize` of SAPI's services endpoint (before `type`).
pub const SERVICE_KEYS: &[&str] = &[
    "uuid",
    "name",
    "application_uuid",
    "params",
    "metadata",
    "manifests",
    "master",
];

/// `serialize` of SAPI's instances endpoint (before `job_uuid`, `type`).
pub const INSTANCE_KEYS: &[&str] = &[
    "uuid",
    "service_uuid",
    "params",
    "metadata",
    "manifests",
    "master",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wire::apis::Instance;

    fn m(v: Value) -> JsonMap {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn odd_types_are_stored_and_the_view_keeps_what_it_can() {
        let s: Stored<Instance> = Stored::from_raw(m(json!({
            "uuid": "i", "service_uuid": "s", "master": "true",
            "metadata": [], "params": {"alias": "a"}
        })));
        assert_eq!(s.raw()["master"], json!("true"));
        assert_eq!(s.raw()["metadata"], json!([]));
        assert_eq!(s.uuid, "i");
        assert_eq!(s.master, None);
        assert!(s.metadata.is_empty());
        assert_eq!(s.params["alias"], json!("a"));
    }

    #[test]
    fn never_set_fields_stay_out_of_the_answer() {
        let raw = m(json!({"uuid": "i", "service_uuid": "s", "type": "vm"}));
        assert_eq!(
            Value::Object(render(&raw, INSTANCE_KEYS, true, None)),
            json!({"uuid": "i", "service_uuid": "s", "type": "vm"})
        );
        assert_eq!(
            Value::Object(render(&raw, INSTANCE_KEYS, false, Some("j"))),
            json!({"uuid": "i", "service_uuid": "s", "job_uuid": "j"})
        );
    }

    #[test]
    fn edits_update_the_view() {
        let mut s: Stored<Instance> = Stored::from_view(Instance {
            uuid: "i".into(),
            ..Default::default()
        });
        s.edit(|r| {
            r.insert("metadata".into(), json!({"A": 1}));
        });
        assert_eq!(s.metadata["A"], json!(1));
    }
}
