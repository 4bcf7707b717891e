//! An application's `metadata_schema`, checked as SAPI 2.1.3 checks it.
//!
//! SAPI validates with `jsprim.validateJsonObject` (jsprim 2.0.2), which runs
//! the `json-schema` 0.4.0 npm package: the JSON Schema draft-03 dialect
//! (`required: true` inside a property, `type` unions, `disallow`,
//! `extends`, `requires`, `maxDecimal`), not draft-04 or later, so none of
//! the maintained Rust validators (which start at draft 4) reads it the same
//! way. This module implements that dialect's keywords with the package's
//! observable quirks that a schema author could meet: `typeof` rules
//! (`null` and arrays pass `"object"`), `integer` as "value % 1 === 0",
//! `additionalProperties: false` only enforced next to `properties`, and
//! `additionalProperties: true` reported as an invalid definition. Only the
//! first error is reported, worded as jsprim words it:
//! `property "<path>": <reason in lower case>`. Not modelled: `default`
//! writing into the stored metadata, `$schema` self-references, `date`.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
struct SchemaError {
    property: String,
    message: String,
}

/// The message of SAPI's 409 SchemaValidationError, or `None` when valid.
/// `metadata` is `None` when the object has none (then only a missing
/// top-level `required` could complain, and the package skips it).
pub fn validate_metadata(schema: &Value, metadata: Option<&Value>) -> Option<String> {
    if !truthy(schema) {
        return None;
    }
    let mut errors = Vec::new();
    check_prop(metadata, schema, String::new(), &mut errors);
    let first = errors.into_iter().next()?;
    let mut prop = first.property;
    let mut reason = first.message.to_lowercase();
    const PRE: &str = "the property ";
    const POST: &str =
        " is not defined in the schema and the schema does not allow additional properties";
    if let (Some(i), Some(j)) = (reason.find(PRE), reason.find(POST))
        && i + PRE.len() <= j
    {
        let name = reason[i + PRE.len()..j].to_string();
        prop = if prop.is_empty() {
            name
        } else {
            format!("{prop}.{name}")
        };
        reason = "unsupported property".into();
    }
    Some(format!("property \"{prop}\": {reason}"))
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    if path.is_empty() {
        i.to_string()
    } else {
        format!("{path}[{i}]")
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JavaScript's `typeof`.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null | Value::Array(_) | Value::Object(_) => "object",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    }
}

/// JavaScript's `String(v)`.
fn js_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
            Some(f) => f.to_string(),
            None => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                if x.is_null() {
                    String::new()
                } else {
                    js_string(x)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

/// JavaScript's `Number(v)`, enough for `v % 1 === 0`.
fn js_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else {
                t.parse().unwrap_or(f64::NAN)
            }
        }
        Value::Array(a) => match a.as_slice() {
            [] => 0.0,
            [x] => js_number(&Value::String(js_string(x))),
            _ => f64::NAN,
        },
        Value::Object(_) => f64::NAN,
    }
}

fn check_type(ty: &Value, value: &Value, path: &str) -> Vec<SchemaError> {
    match ty {
        Value::String(t) if t != "any" => {
            let mismatch = if t == "null" {
                !value.is_null()
            } else {
                type_of(value) != t
            };
            let ok = !mismatch
                || (value.is_array() && t == "array")
                || (t == "integer" && js_number(value) % 1.0 == 0.0);
            if ok {
                Vec::new()
            } else {
                vec![SchemaError {
                    property: path.to_string(),
                    message: format!(
                        "{} - {} value found, but a {t} is required",
                        js_string(value),
                        type_of(value)
                    ),
                }]
            }
        }
        Value::Array(union) => {
            let mut last = Vec::new();
            for t in union {
                last = check_type(t, value, path);
                if last.is_empty() {
                    break;
                }
            }
            last
        }
        Value::Object(_) => {
            let mut errs = Vec::new();
            check_prop(Some(value), ty, path.to_string(), &mut errs);
            errs
        }
        _ => Vec::new(),
    }
}

fn check_prop(value: Option<&Value>, schema: &Value, path: String, errors: &mut Vec<SchemaError>) {
    let add = |errors: &mut Vec<SchemaError>, message: String| {
        errors.push(SchemaError {
            property: path.clone(),
            message,
        })
    };
    let Value::Object(s) = schema else {
        if truthy(schema) {
            add(
                errors,
                format!("Invalid schema/property definition {}", js_string(schema)),
            );
        }
        return;
    };
    if let Some(ext) = s.get("extends").filter(|e| truthy(e)) {
        check_prop(value, ext, path.clone(), errors);
    }
    let Some(value) = value else {
        if s.get("required").is_some_and(truthy) {
            add(errors, "is missing and it is required".into());
        }
        return;
    };
    if let Some(ty) = s.get("type").filter(|t| truthy(t)) {
        errors.extend(check_type(ty, value, &path));
    }
    if let Some(d) = s.get("disallow").filter(|d| truthy(d))
        && check_type(d, value, &path).is_empty()
    {
        add(errors, " disallowed value was matched".into());
    }
    if value.is_null() {
        return;
    }
    let num = |k: &str| s.get(k).filter(|v| truthy(v)).and_then(Value::as_f64);
    if let Value::Array(items) = value {
        if let Some(def) = s.get("items").filter(|d| truthy(d)) {
            for (i, item) in items.iter().enumerate() {
                let d = match def {
                    Value::Array(tuple) => tuple.get(i).unwrap_or(&Value::Null),
                    one => one,
                };
                check_prop(Some(item), d, index(&path, i), errors);
            }
        }
        if let Some(min) = num("minItems")
            && (items.len() as f64) < min
        {
            add(
                errors,
                format!("There must be a minimum of {} in the array", js_num(min)),
            );
        }
        if let Some(max) = num("maxItems")
            && (items.len() as f64) > max
        {
            add(
                errors,
                format!("There must be a maximum of {} in the array", js_num(max)),
            );
        }
    } else if s.get("properties").is_some_and(truthy)
        || s.get("additionalProperties").is_some_and(truthy)
    {
        check_obj(
            value,
            s.get("properties"),
            &path,
            s.get("additionalProperties"),
            errors,
        );
    }
    if let Value::String(text) = value {
        if let Some(Value::String(p)) = s.get("pattern").filter(|p| truthy(p))
            && regex::Regex::new(p).is_ok_and(|re| !re.is_match(text))
        {
            add(errors, format!("does not match the regex pattern {p}"));
        }
        let len = text.encode_utf16().count() as f64;
        if let Some(max) = num("maxLength")
            && len > max
        {
            add(
                errors,
                format!("may only be {} characters long", js_num(max)),
            );
        }
        if let Some(min) = num("minLength")
            && len < min
        {
            add(
                errors,
                format!("must be at least {} characters long", js_num(min)),
            );
        }
    }
    for (key, below) in [("minimum", true), ("maximum", false)] {
        let Some(bound) = s.get(key) else { continue };
        let out = match (bound, value) {
            (Value::Number(b), Value::Number(v)) => {
                let (b, v) = (b.as_f64().unwrap_or(0.0), v.as_f64().unwrap_or(0.0));
                if below { b > v } else { b < v }
            }
            (Value::String(b), Value::String(v)) => {
                if below {
                    b > v
                } else {
                    b < v
                }
            }
            _ => false,
        };
        if out {
            let word = if below { "minimum" } else { "maximum" };
            add(
                errors,
                format!("must have a {word} value of {}", js_string(bound)),
            );
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        let found = options.iter().any(|o| strict_eq(o, value));
        if !found {
            let list = options
                .iter()
                .map(|o| {
                    if o.is_null() {
                        String::new()
                    } else {
                        js_string(o)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            add(
                errors,
                format!("does not have a value in the enumeration {list}"),
            );
        }
    }
    if let Some(Value::Number(d)) = s.get("maxDecimal")
        && let Some(d) = d.as_u64()
    {
        let text = js_string(value);
        let decimals = text
            .split_once('.')
            .map(|(_, f)| f.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        if decimals as u64 > d {
            add(
                errors,
                format!("may only have {d} digits of decimal places"),
            );
        }
    }
}

fn js_num(f: f64) -> String {
    js_string(&serde_json::json!(f))
}

/// `===`: objects and arrays are never equal to a literal.
fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(_) | Value::Object(_), _) => false,
        _ => a == b,
    }
}

fn check_obj(
    instance: &Value,
    props: Option<&Value>,
    path: &str,
    additional: Option<&Value>,
    errors: &mut Vec<SchemaError>,
) {
    let own = |k: &str| -> Option<&Value> {
        match instance {
            Value::Object(m) => m.get(k),
            _ => None,
        }
    };
    if let Some(p) = props
        && matches!(p, Value::Object(_) | Value::Array(_) | Value::Null)
    {
        if !matches!(instance, Value::Object(_)) {
            errors.push(SchemaError {
                property: path.to_string(),
                message: "an object is required".into(),
            });
        }
        if let Value::Object(defs) = p {
            for (k, def) in defs {
                if k == "__proto__" || k == "constructor" {
                    continue;
                }
                check_prop(own(k), def, child(path, k), errors);
            }
        }
    }
    let keys: Vec<(String, &Value)> = match instance {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    let defs = props.and_then(Value::as_object);
    for (k, v) in keys {
        let def = defs.and_then(|d| d.get(&k));
        if !k.starts_with("__")
            && props.is_some_and(truthy)
            && !def.is_some_and(truthy)
            && additional == Some(&Value::Bool(false))
        {
            errors.push(SchemaError {
                property: path.to_string(),
                message: format!(
                    "The property {k} is not defined in the schema and the schema does not allow additional properties"
                ),
            });
        }
        if let Some(Value::String(req)) = def.and_then(|d| d.get("requires"))
            && own(req).is_none()
        {
            errors.push(SchemaError {
                property: path.to_string(),
                message: format!(
                    "the presence of the property {k} requires that {req} also be present"
                ),
            });
        }
        if let Some(add) = additional.filter(|a| truthy(a))
            && def.is_none()
        {
            check_prop(Some(v), add, child(path, &k), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(schema: Value, md: Value) -> Option<String> {
        validate_metadata(&schema, Some(&md))
    }

    #[test]
    fn draft03_required_types_and_messages() {
        let schema = json!({"type": "object", "properties": {
            "REGION": {"type": "string", "required": true},
            "PORT": {"type": "integer"}
        }});
        assert_eq!(v(schema.clone(), json!({"REGION": "r", "PORT": 5})), None);
        assert_eq!(
            v(schema.clone(), json!({})).as_deref(),
            Some("property \"REGION\": is missing and it is required")
        );
        assert_eq!(
            v(schema.clone(), json!({"REGION": 7})).as_deref(),
            Some("property \"REGION\": 7 - number value found, but a string is required")
        );
        assert_eq!(
            v(schema.clone(), json!({"REGION": "r", "PORT": 1.5})).as_deref(),
            Some("property \"PORT\": 1.5 - number value found, but a integer is required")
        );
        // A metadata-less object is not checked against `required`.
        assert_eq!(validate_metadata(&schema, None), None);
    }

    #[test]
    fn additional_properties_and_nesting() {
        let schema = json!({"properties": {"A": {"type": "object",
            "properties": {"B": {"enum": ["x", "y"]}}, "additionalProperties": false}},
            "additionalProperties": false});
        // jsprim takes the name from the lower-cased message.
        assert_eq!(
            v(schema.clone(), json!({"C": 1})).as_deref(),
            Some("property \"c\": unsupported property")
        );
        assert_eq!(
            v(schema.clone(), json!({"A": {"B": "z"}})).as_deref(),
            Some("property \"A.B\": does not have a value in the enumeration x, y")
        );
        assert_eq!(
            v(schema, json!({"A": {"D": 1}})).as_deref(),
            Some("property \"A.d\": unsupported property")
        );
        // `additionalProperties: false` alone does not constrain (the
        // package only looks at it next to `properties`).
        assert_eq!(
            v(json!({"additionalProperties": false}), json!({"X": 1})),
            None
        );
    }

    #[test]
    fn strings_arrays_and_bounds() {
        let schema = json!({"properties": {
            "S": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"},
            "L": {"type": "array", "items": {"type": "number"}, "maxItems": 2},
            "N": {"type": ["number", "null"], "minimum": 1, "maximum": 9}
        }});
        assert_eq!(
            v(schema.clone(), json!({"S": "ab", "L": [1], "N": null})),
            None
        );
        assert_eq!(
            v(schema.clone(), json!({"S": "a"})).as_deref(),
            Some("property \"S\": must be at least 2 characters long")
        );
        assert_eq!(
            v(schema.clone(), json!({"S": "AB"})).as_deref(),
            Some("property \"S\": does not match the regex pattern ^[a-z]+$")
        );
        assert_eq!(
            v(schema.clone(), json!({"L": [1, "x"]})).as_deref(),
            Some("property \"L[1]\": x - string value found, but a number is required")
        );
        assert_eq!(
            v(schema.clone(), json!({"N": 10})).as_deref(),
            Some("property \"N\": must have a maximum value of 9")
        );
        assert_eq!(
            v(schema, json!({"N": "3"})).as_deref(),
            Some("property \"N\": 3 - string value found, but a null is required")
        );
    }

    #[test]
    fn javascript_typeof_quirks() {
        // null and arrays are `typeof "object"`.
        let obj = json!({"properties": {"O": {"type": "object"}}});
        assert_eq!(v(obj.clone(), json!({"O": null})), None);
        assert_eq!(v(obj, json!({"O": [1]})), None);
        // `additionalProperties: true` is an "invalid definition" there.
        assert_eq!(
            v(
                json!({"properties": {}, "additionalProperties": true}),
                json!({"X": 1})
            )
            .as_deref(),
            Some("property \"X\": invalid schema/property definition true")
        );
        // An empty schema accepts anything.
        assert_eq!(v(json!({}), json!([1, 2])), None);
    }
}
