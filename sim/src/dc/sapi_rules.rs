//! What real SAPI (2.1.3) accepts, refuses, and crashes on, before a record
//! is stored; and the attribute changes of its PUT endpoints.
//!
//! SAPI's model asserts argument types with assert-plus and runs restify
//! with `handleUncaughtExceptions: false`, so a request whose `name` is
//! null, whose `params` is a string, or whose `action` is a number makes
//! the process throw: the client sees its connection dropped, and SAPI
//! restarts under SMF. The simulator answers such a request with
//! [`SIMULATOR_WOULD_CRASH_STATUS`] and code `SimulatorWouldCrash`, saying
//! which call and field, and records it ([`WouldCrash`]) so a test can
//! assert that our clients never send one.

use serde::Serialize;
use serde_json::Value;
use wire::apis::{JsonMap, SIMULATOR_WOULD_CRASH_STATUS, codes};

use super::error::ApiError;

/// The SAPI endpoint a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SapiCall {
    CreateApplication,
    UpdateApplication,
    CreateService,
    UpdateService,
    CreateInstance,
    UpdateInstance,
    UpgradeInstance,
}

/// Why the real process would throw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// `assert.string` on a value that is not a string.
    NotAString,
    /// `assert.optionalObject` on a string, number or boolean.
    NotAnObject,
    /// `assert.optionalBool` on a value that is not a boolean.
    NotABoolean,
    /// `req.params.action.toLowerCase()` on a truthy non-string.
    ActionNotAString,
    /// `params.networks.forEach` on a truthy non-array (zone params).
    NetworksNotAList,
}

impl CrashKind {
    fn words(self) -> &'static str {
        match self {
            CrashKind::NotAString => "is not a string (assert.string throws)",
            CrashKind::NotAnObject => "is not an object (assert.optionalObject throws)",
            CrashKind::NotABoolean => "is not a boolean (assert.optionalBool throws)",
            CrashKind::ActionNotAString => "is not a string (action.toLowerCase throws)",
            CrashKind::NetworksNotAList => "is not an array (networks.forEach throws)",
        }
    }
}

/// One request the real SAPI would have died on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WouldCrash {
    pub call: SapiCall,
    pub field: String,
    pub kind: CrashKind,
    /// The offending value, as JSON.
    pub value: String,
}

impl WouldCrash {
    pub fn to_error(&self) -> ApiError {
        ApiError::new(
            SIMULATOR_WOULD_CRASH_STATUS,
            codes::SIMULATOR_WOULD_CRASH,
            format!(
                "the real SAPI would have dropped the connection (its process throws): \
                 {:?}: `{}` = {} {}",
                self.call,
                self.field,
                self.value,
                self.kind.words()
            ),
        )
    }
}

/// JavaScript truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A request's fields checked in the order the real handler reads them.
pub struct Check<'a> {
    call: SapiCall,
    p: &'a JsonMap,
}

impl<'a> Check<'a> {
    pub fn new(call: SapiCall, p: &'a JsonMap) -> Self {
        Check { call, p }
    }

    fn crash(&self, field: &str, kind: CrashKind) -> Result<(), WouldCrash> {
        Err(WouldCrash {
            call: self.call,
            field: field.to_string(),
            kind,
            value: self
                .p
                .get(field)
                .map(Value::to_string)
                .unwrap_or_else(|| "undefined".into()),
        })
    }

    /// `assert.string`: present (required keys are checked before) and a string.
    pub fn string(&self, field: &str) -> Result<(), WouldCrash> {
        match self.p.get(field) {
            None | Some(Value::String(_)) => Ok(()),
            Some(_) => self.crash(field, CrashKind::NotAString),
        }
    }

    /// `assert.optionalString`: absent, null or a string.
    pub fn optional_string(&self, field: &str) -> Result<(), WouldCrash> {
        match self.p.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
            Some(_) => self.crash(field, CrashKind::NotAString),
        }
    }

    /// `assert.optionalObject`: absent, null, an object or an array.
    pub fn optional_object(&self, field: &str) -> Result<(), WouldCrash> {
        match self.p.get(field) {
            None | Some(Value::Null) | Some(Value::Object(_)) | Some(Value::Array(_)) => Ok(()),
            Some(_) => self.crash(field, CrashKind::NotAnObject),
        }
    }

    pub fn optional_objects(&self, fields: &[&str]) -> Result<(), WouldCrash> {
        fields.iter().try_for_each(|f| self.optional_object(f))
    }

    /// `assert.optionalBool`.
    pub fn optional_bool(&self, field: &str) -> Result<(), WouldCrash> {
        match self.p.get(field) {
            None | Some(Value::Null) | Some(Value::Bool(_)) => Ok(()),
            Some(_) => self.crash(field, CrashKind::NotABoolean),
        }
    }

    /// The PUT endpoints' `action`: falsy means `update`; a truthy
    /// non-string throws; a string is checked case-insensitively.
    pub fn action(&self) -> Result<(), WouldCrash> {
        match self.p.get("action") {
            Some(v) if truthy(v) && !v.is_string() => {
                self.crash("action", CrashKind::ActionNotAString)
            }
            _ => Ok(()),
        }
    }

    /// A truthy record key that is not a string: the storage layer's
    /// `path.join`/moray key assertion throws.
    pub fn key(&self, field: &str) -> Result<(), WouldCrash> {
        match self.p.get(field) {
            Some(v) if truthy(v) && !v.is_string() => self.crash(field, CrashKind::NotAString),
            _ => Ok(()),
        }
    }

    /// `validManifests`: every value of a truthy `manifests` is a string.
    pub fn manifest_values(&self) -> Result<(), WouldCrash> {
        let Some(m) = self.p.get("manifests").filter(|m| truthy(m)) else {
            return Ok(());
        };
        let values: Vec<&Value> = match m {
            Value::Object(o) => o.values().collect(),
            Value::Array(a) => a.iter().collect(),
            _ => Vec::new(),
        };
        if values.iter().all(|v| v.is_string()) {
            Ok(())
        } else {
            Err(WouldCrash {
                call: self.call,
                field: "manifests".into(),
                kind: CrashKind::NotAString,
                value: m.to_string(),
            })
        }
    }
}

/// The manifest uuids a truthy `manifests` names (values already checked
/// to be strings).
pub fn manifest_uuids(manifests: Option<&Value>) -> Vec<String> {
    match manifests.filter(|m| truthy(m)) {
        Some(Value::Object(o)) => o
            .values()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `validManifests` failing: vasync's MultiError, which restify sends as a
/// 500 without a code.
pub fn unknown_manifests(missing: &[String]) -> ApiError {
    let n = missing.len();
    ApiError::uncoded(
        500,
        format!(
            "first of {n} error{}: no such manifest: {}",
            if n == 1 { "" } else { "s" },
            missing[0]
        ),
    )
}

/// The `action` of a PUT (already checked not to crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Update,
    Replace,
    Delete,
}

pub fn parse_action(p: &JsonMap) -> Result<Action, ApiError> {
    match p.get("action") {
        Some(Value::String(s)) if !s.is_empty() => match s.to_lowercase().as_str() {
            "update" => Ok(Action::Update),
            "replace" => Ok(Action::Replace),
            "delete" => Ok(Action::Delete),
            // SAPI really answers with an empty message here.
            _ => Err(ApiError::invalid_argument("")),
        },
        _ => Ok(Action::Update),
    }
}

/// The keys `Object.keys` gives for a change value.
fn change_keys(change: &Value) -> Vec<(String, Value)> {
    match change {
        Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        Value::String(s) => s
            .chars()
            .enumerate()
            .map(|(i, c)| (i.to_string(), Value::String(c.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// SAPI's `applyChange` on a stored record, per field of `fields` whose
/// change is truthy: `update` sets keys (a missing or falsy field starts as
/// `{}`), `replace` stores the change as sent, `delete` removes keys.
pub fn apply_changes(raw: &mut JsonMap, p: &JsonMap, fields: &[&str], action: Action) {
    for field in fields {
        let Some(change) = p.get(*field).filter(|c| truthy(c)) else {
            continue;
        };
        if action == Action::Replace {
            raw.insert((*field).to_string(), change.clone());
            continue;
        }
        let target = raw
            .entry((*field).to_string())
            .or_insert_with(|| Value::Object(JsonMap::new()));
        if !truthy(target) {
            *target = Value::Object(JsonMap::new());
        }
        for (k, v) in change_keys(change) {
            match (action, &mut *target) {
                (Action::Update, Value::Object(o)) => {
                    o.insert(k, v);
                }
                (Action::Delete, Value::Object(o)) => {
                    o.remove(&k);
                }
                (Action::Update, Value::Array(a)) => {
                    // Index keys land in the array; others are dropped
                    // when it is stored as JSON.
                    if let Ok(i) = k.parse::<usize>() {
                        if i < a.len() {
                            a[i] = v;
                        } else if i == a.len() {
                            a.push(v);
                        }
                    }
                }
                // Deleting from an array leaves a hole JSON shows as null.
                (Action::Delete, Value::Array(a)) => {
                    if let Ok(i) = k.parse::<usize>()
                        && i < a.len()
                    {
                        a[i] = Value::Null;
                    }
                }
                _ => {}
            }
        }
    }
}

/// A list filter as SAPI builds it: set only when the query value is
/// truthy, and compared with `===` to the stored field, so a repeated
/// parameter (an array) matches nothing.
pub fn filter_matches(p: &JsonMap, key: &str, stored: Option<&Value>) -> bool {
    match p.get(key).filter(|v| truthy(v)) {
        None => true,
        Some(Value::String(want)) => stored.and_then(Value::as_str) == Some(want.as_str()),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> JsonMap {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn crash_inputs_are_named() {
        let p = m(json!({"name": null, "params": "x", "master": "true", "action": 7}));
        let c = Check::new(SapiCall::CreateApplication, &p);
        let e = c.string("name").unwrap_err();
        assert_eq!((e.field.as_str(), e.kind), ("name", CrashKind::NotAString));
        assert_eq!(e.value, "null");
        assert_eq!(
            c.optional_object("params").unwrap_err().kind,
            CrashKind::NotAnObject
        );
        assert_eq!(
            c.optional_bool("master").unwrap_err().kind,
            CrashKind::NotABoolean
        );
        assert_eq!(c.action().unwrap_err().kind, CrashKind::ActionNotAString);
        let err = c.string("name").unwrap_err().to_error();
        assert_eq!(err.status, 599);
        assert_eq!(err.code(), Some("SimulatorWouldCrash"));
        assert!(err.message().contains("dropped the connection"), "{err}");
        // Falsy actions mean `update`; metadata as an array is fine.
        let ok = m(json!({"action": 0, "metadata": [], "name": ""}));
        let c = Check::new(SapiCall::UpdateInstance, &ok);
        assert!(c.action().is_ok() && c.optional_object("metadata").is_ok());
        assert!(c.string("name").is_ok());
    }

    #[test]
    fn changes_follow_sapi_attributes() {
        let mut raw = m(json!({"metadata": {"A": 1, "B": 2}}));
        apply_changes(
            &mut raw,
            &m(json!({"metadata": {"C": 3}, "params": {"x": 1}})),
            &["params", "metadata"],
            Action::Update,
        );
        assert_eq!(
            Value::Object(raw.clone()),
            json!({"metadata": {"A": 1, "B": 2, "C": 3}, "params": {"x": 1}})
        );
        apply_changes(
            &mut raw,
            &m(json!({"metadata": {"A": null}})),
            &["metadata"],
            Action::Delete,
        );
        assert_eq!(raw["metadata"], json!({"B": 2, "C": 3}));
        apply_changes(
            &mut raw,
            &m(json!({"metadata": []})),
            &["metadata"],
            Action::Replace,
        );
        assert_eq!(raw["metadata"], json!([]));
    }

    #[test]
    fn repeated_filters_match_nothing() {
        let name = json!("moray");
        assert!(filter_matches(&m(json!({})), "name", Some(&name)));
        assert!(filter_matches(&m(json!({"name": ""})), "name", Some(&name)));
        assert!(filter_matches(
            &m(json!({"name": "moray"})),
            "name",
            Some(&name)
        ));
        assert!(!filter_matches(
            &m(json!({"name": ["moray", "moray"]})),
            "name",
            Some(&name)
        ));
    }

    #[test]
    fn unknown_manifest_is_an_uncoded_500() {
        let e = unknown_manifests(&["m1".into()]);
        assert_eq!(e.status, 500);
        assert_eq!(e.code(), None);
        assert_eq!(e.message(), "first of 1 error: no such manifest: m1");
    }
}
