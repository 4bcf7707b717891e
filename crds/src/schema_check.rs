//! A document's raw value checked against its kind's JSON Schema before the
//! typed decode, so that every unknown field and every type error of a
//! document is reported at once (serde stops at the first).
//!
//! It understands what schemars generates for our types: `$ref` into
//! `$defs`, `type` (one or a list), `properties`, `required`,
//! `additionalProperties` (false or a schema), `items`, `const`, `enum`,
//! `anyOf`/`oneOf` (optional fields and unit enums), and the integer
//! `format`s and `minimum`. The typed decode still runs afterwards and
//! remains the authority: anything this misses, serde reports.

use std::sync::OnceLock;

use serde_json::Value;

use crate::document::Kind;

/// Every unknown field and type error of `raw` as (field path, message), in
/// document order.
pub(crate) fn schema_errors(kind: Kind, raw: &Value) -> Vec<(String, String)> {
    static SCHEMAS: OnceLock<Vec<(Kind, Value)>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                (
                    k,
                    serde_json::from_str(&crate::schema::schema_json(k)).expect("schema is JSON"),
                )
            })
            .collect()
    });
    let root = &schemas
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("every kind has a schema")
        .1;
    let mut out = Vec::new();
    walk(root, root, raw, "", &mut out);
    out
}

fn walk(root: &Value, schema: &Value, v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let schema = resolve(root, schema);
    if let Some(alts) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return alternatives(root, alts, v, path, out);
    }
    if let Some(types) = schema.get("type")
        && !type_matches(types, v)
    {
        out.push((
            path.to_string(),
            format!(
                "invalid type: {}, expected {}",
                describe(v),
                expected(types)
            ),
        ));
        return;
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        out.push((path.to_string(), format!("expected `{}`", plain(c))));
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        out.push((
            path.to_string(),
            match v {
                Value::String(s) => {
                    format!("unknown value `{s}`, expected one of {}", list(values))
                }
                _ => format!(
                    "invalid value: {}, expected one of {}",
                    describe(v),
                    list(values)
                ),
            },
        ));
        return;
    }
    match v {
        Value::Number(n) => integer_range(schema, n, path, out),
        Value::Object(map) => object(root, schema, map, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(root, item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// `anyOf`/`oneOf`: fine if one alternative takes the value; otherwise the
/// errors of the alternative of the value's shape, or one summary.
fn alternatives(
    root: &Value,
    alts: &[Value],
    v: &Value,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    let mut shaped: Option<Vec<(String, String)>> = None;
    for alt in alts {
        let mut errs = Vec::new();
        walk(root, alt, v, path, &mut errs);
        if errs.is_empty() {
            return;
        }
        let alt = resolve(root, alt);
        let same_shape = alt.get("const").is_none()
            && alt.get("type").is_none_or(|t| type_matches(t, v))
            && alt.get("anyOf").or_else(|| alt.get("oneOf")).is_none();
        if same_shape && shaped.is_none() {
            shaped = Some(errs);
        }
    }
    if let Some(errs) = shaped {
        out.extend(errs);
        return;
    }
    // A unit enum: every alternative a constant.
    let consts: Vec<Value> = alts
        .iter()
        .filter_map(|a| resolve(root, a).get("const").cloned())
        .collect();
    let message = if consts.len() == alts.len() {
        match v {
            Value::String(s) => format!("unknown value `{s}`, expected one of {}", list(&consts)),
            _ => format!(
                "invalid type: {}, expected one of {}",
                describe(v),
                list(&consts)
            ),
        }
    } else {
        let kinds: Vec<String> = alts
            .iter()
            .filter_map(|a| resolve(root, a).get("type").map(expected))
            .filter(|t| t != "null")
            .collect();
        let want = if kinds.is_empty() {
            "a map".to_string()
        } else {
            kinds.join(" or ")
        };
        format!("invalid type: {}, expected {want}", describe(v))
    };
    out.push((path.to_string(), message));
}

fn object(
    root: &Value,
    schema: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (k, child) in map {
        let p = join(k);
        match (props.and_then(|ps| ps.get(k)), additional) {
            (Some(s), _) => walk(root, s, child, &p, out),
            (None, Some(Value::Bool(false))) => {
                let mut allowed: Vec<&str> = props
                    .map(|ps| ps.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                allowed.sort();
                out.push((
                    p,
                    format!(
                        "unknown field `{k}`, expected one of {}",
                        allowed.join(", ")
                    ),
                ));
            }
            (None, Some(s)) if s.is_object() => walk(root, s, child, &p, out),
            (None, _) => {}
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.push((path.to_string(), format!("missing field `{r}`")));
            }
        }
    }
}

fn integer_range(
    schema: &Value,
    n: &serde_json::Number,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    if !(n.is_i64() || n.is_u64()) {
        return;
    }
    let (lo, hi): (i128, i128) = match schema.get("format").and_then(Value::as_str) {
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64" | "uint") => (0, u64::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64" | "int") => (i64::MIN.into(), i64::MAX.into()),
        _ => (i128::MIN, i128::MAX),
    };
    let lo = schema
        .get("minimum")
        .and_then(Value::as_i64)
        .map_or(lo, |m| lo.max(m.into()));
    let x: i128 = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .expect("an integer");
    if x < lo || x > hi {
        out.push((
            path.to_string(),
            format!("invalid value: integer `{x}`, expected an integer from {lo} to {hi}"),
        ));
    }
}

fn type_matches(types: &Value, v: &Value) -> bool {
    let one = |t: &str| match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    };
    match types {
        Value::String(t) => one(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(one),
        _ => true,
    }
}

/// The schema type(s) in serde's words, leaving out `null` (an optional field).
fn expected(types: &Value) -> String {
    let word = |t: &str| match t {
        "boolean" => "a boolean",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a sequence",
        "object" => "a map",
        "null" => "null",
        _ => "a value",
    };
    match types {
        Value::String(t) => word(t).to_string(),
        Value::Array(ts) => {
            let words: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .map(word)
                .collect();
            if words.is_empty() {
                "null".into()
            } else {
                words.join(" or ")
            }
        }
        _ => "a value".into(),
    }
}

/// A value the way serde describes one in an error.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn list(values: &[Value]) -> String {
    values.iter().map(plain).collect::<Vec<_>>().join(", ")
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => root
            .get("$defs")
            .and_then(|d| d.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}
