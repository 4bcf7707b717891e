//! Reading restify `req.params`: query-string values arrive as strings,
//! JSON-body values as whatever JSON type was sent, so every reader here
//! accepts both spellings.

use serde_json::Value;
use wire::apis::JsonMap;

/// A parameter present but not of the expected shape; callers turn it into
/// the service's own validation error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadParam;

impl std::fmt::Display for BadParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid parameter value")
    }
}

impl std::error::Error for BadParam {}

/// A scalar as a string (`"5"` and `5` both give `"5"`); `None` if absent,
/// null, or an array/object.
pub fn str_param(p: &JsonMap, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `true`/`"true"` -> Some(true), `false`/`"false"` -> Some(false), absent
/// -> None, anything else -> Err(BadParam) so callers can report it.
pub fn bool_param(p: &JsonMap, key: &str) -> Result<Option<bool>, BadParam> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(_) => Err(BadParam),
    }
}

/// Lenient truthiness for flags restify code tests with `if (x)`.
pub fn flag(p: &JsonMap, key: &str) -> bool {
    match p.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

pub fn obj_param(p: &JsonMap, key: &str) -> Option<JsonMap> {
    match p.get(key)? {
        Value::Object(o) => Some(o.clone()),
        // A query-string value may carry JSON (`?tags={"a":1}`).
        Value::String(s) => serde_json::from_str::<JsonMap>(s).ok(),
        _ => None,
    }
}

/// A non-negative integer; strings are parsed like `parseInt` (leading digits).
pub fn uint_param(p: &JsonMap, key: &str) -> Result<Option<u64>, BadParam> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(BadParam),
        Some(Value::String(s)) => {
            let digits: String = s
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if digits.is_empty() {
                Err(BadParam)
            } else {
                digits.parse().map(Some).map_err(|_| BadParam)
            }
        }
        Some(_) => Err(BadParam),
    }
}

/// A scalar for loose equality against query strings (`tag.x=true`).
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
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
    fn both_spellings() {
        let p =
            m(json!({"a": "true", "b": false, "n": "12", "k": 7, "x": "abc", "o": "{\"k\":1}"}));
        assert_eq!(bool_param(&p, "a"), Ok(Some(true)));
        assert_eq!(bool_param(&p, "b"), Ok(Some(false)));
        assert_eq!(bool_param(&p, "x"), Err(BadParam));
        assert_eq!(bool_param(&p, "zz"), Ok(None));
        assert_eq!(uint_param(&p, "n"), Ok(Some(12)));
        assert_eq!(uint_param(&p, "k"), Ok(Some(7)));
        assert_eq!(uint_param(&p, "x"), Err(BadParam));
        assert_eq!(str_param(&p, "k").as_deref(), Some("7"));
        assert_eq!(obj_param(&p, "o").unwrap()["k"], json!(1));
        assert!(flag(&p, "a") && !flag(&p, "b"));
    }
}
