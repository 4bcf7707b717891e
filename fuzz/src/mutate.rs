//! Input generators: raw bytes, byte-level mutations of the seeds, and
//! structure-aware mutations of the seeds' JSON values (a node replaced by
//! an edge value, deleted, renamed, repeated, nested deep), written back as
//! JSON or YAML; plus generators built from each format's grammar (jute
//! replies, pg-status rows, election node names).
//!
//! Every input is capped at [`MAX_INPUT`] bytes.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::{BoxedStrategy, Union};
use serde_json::{Map, Value};

use crate::seeds;

/// The largest input a generator makes (big enough for the quadratic and
/// nesting cases to show, small enough for thousands of cases a minute).
pub const MAX_INPUT: usize = 256 << 10;

/// Text that tends to sit on an edge of some parser.
pub const TOKENS: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e400",
    "-0",
    "0.1",
    ".nan",
    "NaN",
    "~",
    "null",
    "true",
    "no",
    "[",
    "]",
    "{",
    "}",
    "- ",
    ": ",
    "&a ",
    "*a",
    "!!binary ",
    "<<: *a",
    "---\n",
    "...\n",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "é",
    "\u{feff}",
    "\t",
    "\r\n",
    "202é101T000000Z",
    "2024é101T000000Z",
    "20240101T000000Z",
    "master-20240101T000000Z-g1234567",
    "99999999999999999d",
    "999999999999999d",
    "18446744073709551615s",
    "0m00s",
    "FFFFFFFF/FFFFFFFF",
    "0/0",
    "1/0",
    "1/2",
    "0-4294967294",
    "4294967294-0",
    "0-99",
    "sdc",
    "2.moray.us-east.joyent.us",
    "tritonctl/v1alpha1",
    "ManateeVersion",
    "HeadnodeSet",
    "ShardTopology",
    "2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab",
    "10.77.77.8:5432:12345-0000000003",
    "-0000000000",
    "tcp://postgres@10.0.0.1:5432/postgres",
];

/// JSON values at an edge of some decoder.
fn edge_values() -> Vec<Value> {
    let mut v: Vec<Value> = vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        0.into(),
        (-1).into(),
        1.into(),
        u64::from(u32::MAX).into(),
        (u64::from(u32::MAX) + 1).into(),
        u64::MAX.into(),
        i64::MIN.into(),
        serde_json::json!(1.5),
        serde_json::json!(1e300),
        serde_json::json!(-0.0),
        Value::Array(Vec::new()),
        Value::Object(Map::new()),
        Value::String("a".repeat(4096)),
    ];
    v.extend(TOKENS.iter().map(|t| Value::String(t.to_string())));
    v
}

#[derive(Clone, Debug)]
enum ByteOp {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    /// Replace the word at a position (or insert) with a token.
    Token(Index, Index, bool),
    Delete(Index, usize),
    /// Copy a chunk to another place.
    Copy(Index, usize, Index),
    /// Take a chunk of another seed.
    Splice(Index, Index, usize, Index),
    /// Repeat a chunk many times in place (long lists, deep nesting).
    Repeat(Index, usize, u16),
    Truncate(Index),
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteOp::Flip(i, b)),
        2 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| ByteOp::Insert(i, b)),
        6 => (any::<Index>(), any::<Index>(), any::<bool>()).prop_map(|(i, t, r)| ByteOp::Token(i, t, r)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| ByteOp::Delete(i, n)),
        1 => (any::<Index>(), 1usize..128, any::<Index>()).prop_map(|(i, n, j)| ByteOp::Copy(i, n, j)),
        1 => (any::<Index>(), any::<Index>(), 1usize..256, any::<Index>())
            .prop_map(|(s, i, n, j)| ByteOp::Splice(s, i, n, j)),
        1 => (any::<Index>(), 1usize..32, 2u16..3000).prop_map(|(i, n, k)| ByteOp::Repeat(i, n, k)),
        1 => any::<Index>().prop_map(ByteOp::Truncate),
    ]
}

fn at(i: &Index, len: usize) -> usize {
    if len == 0 { 0 } else { i.index(len + 1) }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-' | b'@')
}

fn apply(buf: &mut Vec<u8>, op: &ByteOp, seeds: &[Vec<u8>]) {
    let len = buf.len();
    match op {
        ByteOp::Flip(i, b) if len > 0 => {
            let p = i.index(len);
            buf[p] ^= b.max(&1);
        }
        ByteOp::Flip(..) => {}
        ByteOp::Insert(i, bytes) => {
            let p = at(i, len);
            buf.splice(p..p, bytes.iter().copied());
        }
        ByteOp::Token(i, t, replace) => {
            let tok = TOKENS[t.index(TOKENS.len())].as_bytes();
            let p = at(i, len);
            let (mut s, mut e) = (p, p);
            if *replace {
                while s > 0 && is_word(buf[s - 1]) {
                    s -= 1;
                }
                while e < len && is_word(buf[e]) {
                    e += 1;
                }
            }
            buf.splice(s..e, tok.iter().copied());
        }
        ByteOp::Delete(i, n) => {
            let p = at(i, len).min(len);
            let e = (p + n).min(len);
            buf.drain(p..e);
        }
        ByteOp::Copy(i, n, j) => {
            let p = at(i, len).min(len);
            let chunk: Vec<u8> = buf[p..(p + n).min(len)].to_vec();
            let q = at(j, len);
            buf.splice(q..q, chunk);
        }
        ByteOp::Splice(s, i, n, j) => {
            let other = &seeds[s.index(seeds.len())];
            let p = at(i, other.len()).min(other.len());
            let chunk = &other[p..(p + n).min(other.len())];
            let q = at(j, len);
            buf.splice(q..q, chunk.iter().copied());
        }
        ByteOp::Repeat(i, n, k) => {
            let p = at(i, len).min(len);
            let chunk: Vec<u8> = buf[p..(p + n).min(len)].to_vec();
            if !chunk.is_empty() {
                let times = usize::from(*k).min(MAX_INPUT / chunk.len());
                let rep: Vec<u8> = chunk.repeat(times);
                buf.splice(p..p, rep);
            }
        }
        ByteOp::Truncate(i) => {
            let p = at(i, len).min(len);
            buf.truncate(p);
        }
    }
    buf.truncate(MAX_INPUT);
}

/// Byte-level mutations of the seeds.
pub fn byte_mutations(seeds: Arc<Vec<Vec<u8>>>) -> BoxedStrategy<Vec<u8>> {
    (any::<Index>(), vec(byte_op(), 1..8))
        .prop_map(move |(s, ops)| {
            let mut buf = seeds[s.index(seeds.len())].clone();
            for op in &ops {
                apply(&mut buf, op, &seeds);
            }
            buf
        })
        .boxed()
}

#[derive(Clone, Debug)]
enum ValueOp {
    Replace(Index, Index),
    Delete(Index),
    Rename(Index, Index),
    /// Repeat an array item or object entry (under new keys) many times.
    Grow(Index, u16),
    /// Wrap a node in `depth` arrays or objects.
    Nest(Index, u16, bool),
    /// Replace a node by a copy of another node of the same document.
    Transplant(Index, Index),
}

fn value_op() -> impl Strategy<Value = ValueOp> {
    prop_oneof![
        6 => (any::<Index>(), any::<Index>()).prop_map(|(n, v)| ValueOp::Replace(n, v)),
        3 => any::<Index>().prop_map(ValueOp::Delete),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(n, t)| ValueOp::Rename(n, t)),
        2 => (any::<Index>(), prop_oneof![2u16..8, 8u16..2000]).prop_map(|(n, k)| ValueOp::Grow(n, k)),
        1 => (any::<Index>(), prop_oneof![Just(63u16), Just(64), Just(65), Just(127), Just(128), Just(129), 1u16..300], any::<bool>())
            .prop_map(|(n, d, a)| ValueOp::Nest(n, d, a)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(n, m)| ValueOp::Transplant(n, m)),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`th node in preorder.
fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|c| nth(c, n)),
        Value::Object(m) => m.values_mut().find_map(|c| nth(c, n)),
        _ => None,
    }
}

fn node<'a>(root: &'a mut Value, i: &Index) -> &'a mut Value {
    let mut n = i.index(count(root));
    nth(root, &mut n).expect("n < count")
}

/// The object holding the `i`th node and its key, when that parent is an
/// object (for delete and rename).
fn parent_entry<'a>(root: &'a mut Value, i: &Index) -> Option<(&'a mut Map<String, Value>, usize)> {
    let objects: usize = {
        fn objs(v: &Value) -> usize {
            match v {
                Value::Array(a) => a.iter().map(objs).sum(),
                Value::Object(m) => 1 + m.values().map(objs).sum::<usize>(),
                _ => 0,
            }
        }
        objs(root)
    };
    if objects == 0 {
        return None;
    }
    let mut k = i.index(objects);
    fn find<'b>(v: &'b mut Value, k: &mut usize) -> Option<&'b mut Map<String, Value>> {
        match v {
            Value::Array(a) => a.iter_mut().find_map(|c| find(c, k)),
            Value::Object(m) => {
                if *k == 0 {
                    return Some(m);
                }
                *k -= 1;
                m.values_mut().find_map(|c| find(c, k))
            }
            _ => None,
        }
    }
    let m = find(root, &mut k)?;
    let len = m.len();
    (len > 0).then(|| (m, i.index(len.max(1))))
}

fn apply_value(root: &mut Value, op: &ValueOp, edges: &[Value]) {
    match op {
        ValueOp::Replace(n, v) => *node(root, n) = edges[v.index(edges.len())].clone(),
        ValueOp::Delete(n) => {
            if let Some((m, k)) = parent_entry(root, n) {
                let key = m.keys().nth(k).cloned().expect("k < len");
                m.shift_remove(&key);
            }
        }
        ValueOp::Rename(n, t) => {
            if let Some((m, k)) = parent_entry(root, n) {
                let key = m.keys().nth(k).cloned().expect("k < len");
                let v = m.shift_remove(&key).expect("present");
                m.insert(TOKENS[t.index(TOKENS.len())].to_string() + &key, v);
            }
        }
        ValueOp::Grow(n, k) => match node(root, n) {
            Value::Array(a) if !a.is_empty() => {
                let item = a[0].clone();
                a.extend(std::iter::repeat_n(item, usize::from(*k)));
            }
            Value::Object(m) if !m.is_empty() => {
                let (key, item) = m
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .expect("non-empty");
                for i in 0..*k {
                    m.insert(format!("{key}{i}"), item.clone());
                }
            }
            Value::String(s) => *s = s.repeat(usize::from(*k).min(MAX_INPUT / s.len().max(1))),
            _ => {}
        },
        ValueOp::Nest(n, depth, array) => {
            let target = node(root, n);
            let mut v = std::mem::take(target);
            for _ in 0..*depth {
                v = if *array {
                    Value::Array(vec![v])
                } else {
                    let mut m = Map::new();
                    m.insert("a".into(), v);
                    Value::Object(m)
                };
            }
            *target = v;
        }
        ValueOp::Transplant(n, m) => {
            let copy = node(root, m).clone();
            *node(root, n) = copy;
        }
    }
}

fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Structure-aware mutations of JSON seed values, written as compact JSON,
/// pretty JSON or YAML.
pub fn value_mutations(values: Arc<Vec<Value>>) -> BoxedStrategy<Vec<u8>> {
    let edges = Arc::new(edge_values());
    (any::<Index>(), vec(value_op(), 1..5), 0u8..3)
        .prop_map(move |(s, ops, format)| {
            let mut v = values[s.index(values.len())].clone();
            for op in &ops {
                apply_value(&mut v, op, &edges);
            }
            // serde_json refuses to write nothing; serde-saphyr's writer
            // recurses, so very deep values go out as JSON, and so does a
            // value too deep for serde_json's own recursion (written by hand).
            let mut out = if nesting(&v) > 100 {
                deep_json(&v)
            } else {
                match format {
                    0 => serde_json::to_vec(&v).expect("JSON"),
                    1 => serde_json::to_vec_pretty(&v).expect("JSON"),
                    _ => serde_saphyr::to_string(&v)
                        .map(String::into_bytes)
                        .unwrap_or_else(|_| serde_json::to_vec(&v).expect("JSON")),
                }
            };
            out.truncate(MAX_INPUT);
            out
        })
        .boxed()
}

/// JSON text of `v` written without recursion (any depth).
pub fn deep_json(v: &Value) -> Vec<u8> {
    enum Step<'a> {
        Open(&'a Value),
        Text(&'static str),
        Key(&'a str),
    }
    let mut out = Vec::new();
    let mut stack = vec![Step::Open(v)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(t) => out.extend_from_slice(t.as_bytes()),
            Step::Key(k) => {
                out.extend(serde_json::to_vec(k).expect("a key"));
                out.push(b':');
            }
            Step::Open(Value::Array(a)) => {
                out.push(b'[');
                stack.push(Step::Text("]"));
                for (i, item) in a.iter().enumerate().rev() {
                    stack.push(Step::Open(item));
                    if i > 0 {
                        stack.push(Step::Text(","));
                    }
                }
            }
            Step::Open(Value::Object(m)) => {
                out.push(b'{');
                stack.push(Step::Text("}"));
                for (i, (k, item)) in m.iter().enumerate().rev() {
                    stack.push(Step::Open(item));
                    stack.push(Step::Key(k));
                    if i > 0 {
                        stack.push(Step::Text(","));
                    }
                }
            }
            Step::Open(scalar) => out.extend(serde_json::to_vec(scalar).expect("a scalar")),
        }
    }
    out
}

/// Arbitrary bytes, short and long.
pub fn raw_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        2 => vec(any::<u8>(), 0..4096),
        1 => vec(prop::sample::select(b"{}[]\":,-0123456789 \n\t&*!|>#?'aeZ".to_vec()), 0..4096),
    ]
    .boxed()
}

/// The generator of one target: raw bytes, seed mutations, and the
/// target's grammar-based generator.
pub fn strategy(target: &str) -> BoxedStrategy<Vec<u8>> {
    let inputs = Arc::new(seeds::inputs(target));
    let values = Arc::new(seeds::values(target));
    let mut alts: Vec<(u32, BoxedStrategy<Vec<u8>>)> =
        vec![(1, raw_bytes()), (4, byte_mutations(inputs))];
    if !values.is_empty() {
        alts.push((5, value_mutations(values)));
    }
    match target {
        "jute" => alts.push((4, crate::grammar::jute_replies())),
        "pgstatus" => alts.push((4, crate::grammar::pg_status())),
        "election" => alts.push((4, crate::grammar::election_names())),
        _ => {}
    }
    Union::new_weighted(alts).boxed()
}
