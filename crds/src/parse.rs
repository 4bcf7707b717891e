//! Reading documents from YAML or JSON text, keeping where every field came
//! from so that every error can name `file:line:column` and the field path.
//!
//! One span-aware YAML parse builds both a JSON value and an index from field
//! path (`spec.shards[1].peers[0].server`) to source location; the typed
//! decode then runs on the JSON value with `serde_path_to_error`, and any
//! path it reports is looked up in the index.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::document::{Document, Kind};
use crate::meta::API_VERSION;
use crate::validate::{Diagnostic, Severity};

/// A place in a source file. Lines and columns count from 1; line 0 stands
/// for the whole file (or input), e.g. one that holds no documents.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceLocation {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Field path -> (line, column) for one document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocationIndex {
    file: String,
    root: (u64, u64),
    at: HashMap<String, (u64, u64)>,
}

impl LocationIndex {
    /// The location of `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> SourceLocation {
        let mut p = path;
        loop {
            if let Some(&(line, column)) = self.at.get(p) {
                return self.loc(line, column);
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return self.loc(self.root.0, self.root.1),
            }
        }
    }

    fn loc(&self, line: u64, column: u64) -> SourceLocation {
        SourceLocation {
            file: self.file.clone(),
            line,
            column,
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> None.
fn parent_path(p: &str) -> Option<&str> {
    if p.is_empty() {
        return None;
    }
    let cut = p.rfind(['.', '['])?;
    Some(&p[..cut])
}

/// A document read from a file, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedDocument {
    pub document: Document,
    /// The document exactly as written (JSON form), for diffs.
    pub raw: Value,
    pub index: LocationIndex,
    /// Position of the document within its file (0-based).
    pub position: usize,
}

impl ParsedDocument {
    pub fn locate(&self, path: &str) -> SourceLocation {
        self.index.locate(path)
    }
}

/// YAML node with spans, decoded through serde-saphyr's `Spanned`.
enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::I64(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::U64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::F64(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = a.next_key::<Spanned<KeyString>>()? {
                    let v = a.next_value::<Spanned<Node>>()?;
                    let k = Spanned::new(k.value.0, k.referenced, k.defined);
                    entries.push((k, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key; YAML allows non-string scalar keys, we read them as text.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyString, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

fn lc(s: &serde_saphyr::Location) -> (u64, u64) {
    (s.line(), s.column())
}

/// The most bytes of field paths one document's location index keeps. Each
/// path repeats its parent's, so a long key above a long list would cost key
/// length × items (quadratic in the input); past this budget deeper nodes are
/// not indexed and are located at their nearest indexed ancestor. Real
/// documents use a few KiB.
pub const INDEX_PATH_BUDGET: usize = 4 << 20;

/// Builds one document's index within [`INDEX_PATH_BUDGET`].
struct Indexer {
    at: HashMap<String, (u64, u64)>,
    spent: usize,
}

impl Indexer {
    /// The path of a child, recorded at `loc`, or None once over budget
    /// (then nothing below it is indexed either).
    fn child(
        &mut self,
        parent: Option<&str>,
        part: std::fmt::Arguments<'_>,
        part_len: usize,
        loc: (u64, u64),
    ) -> Option<String> {
        let parent = parent?;
        let len = parent.len() + 1 + part_len;
        if self.spent + len > INDEX_PATH_BUDGET {
            return None;
        }
        self.spent += len;
        let p = format!("{parent}{part}");
        self.at.insert(p.clone(), loc);
        Some(p)
    }
}

/// Convert to JSON, recording the location of every map key and list item
/// (within the index budget).
fn to_value(node: Node, path: Option<&str>, ix: &mut Indexer) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::I64(n) => Value::from(n),
        Node::U64(n) => Value::from(n),
        Node::F64(n) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = ix.child(path, format_args!("[{i}]"), 22, lc(&item.referenced));
                    to_value(item.value, p.as_deref(), ix)
                })
                .collect(),
        ),
        Node::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                let p = match path {
                    Some("") => ix.child(
                        Some(""),
                        format_args!("{}", k.value),
                        k.value.len(),
                        lc(&k.referenced),
                    ),
                    _ => ix.child(
                        path,
                        format_args!(".{}", k.value),
                        k.value.len(),
                        lc(&k.referenced),
                    ),
                };
                m.insert(k.value, to_value(v.value, p.as_deref(), ix));
            }
            Value::Object(m)
        }
    }
}

/// The deepest nesting a document may have. Ours go six levels deep
/// (`spec.shards[0].peers[0].server`); serde-saphyr's default of 64 nested
/// mappings takes more than the 2 MiB stack of a tokio worker in a debug
/// build (found by fuzzing), 32 about half of it.
pub const MAX_DEPTH: usize = 32;

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parse every document in one file (YAML with `---` separators, or JSON).
/// Returns the documents that decoded and the diagnostics of those that did
/// not; callers must refuse to act on anything when diagnostics has errors.
pub fn parse_documents(file: &str, text: &str) -> (Vec<ParsedDocument>, Vec<Diagnostic>) {
    let mut docs = Vec::new();
    let mut diags = Vec::new();
    let nodes: Vec<Spanned<Node>> = match serde_saphyr::from_multiple_with_options(text, options())
    {
        Ok(n) => n,
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            diags.push(Diagnostic {
                location: SourceLocation {
                    file: file.to_string(),
                    line,
                    column,
                },
                path: String::new(),
                message: format!("malformed YAML: {}", first_line(&e.to_string())),
                severity: Severity::Error,
            });
            return (docs, diags);
        }
    };
    for (position, node) in nodes.into_iter().enumerate() {
        let mut ix = Indexer {
            at: HashMap::new(),
            spent: 0,
        };
        let root = lc(&node.referenced);
        let raw = to_value(node.value, Some(""), &mut ix);
        let index = LocationIndex {
            file: file.to_string(),
            root,
            at: ix.at,
        };
        match decode(&raw, &index) {
            Ok(document) => docs.push(ParsedDocument {
                document,
                raw,
                index,
                position,
            }),
            Err(d) => diags.extend(d),
        }
    }
    (docs, diags)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn decode(raw: &Value, index: &LocationIndex) -> Result<Document, Vec<Diagnostic>> {
    let err = |path: &str, message: String| Diagnostic {
        location: index.locate(path),
        path: path.to_string(),
        message,
        severity: Severity::Error,
    };
    let one = |path: &str, message: String| vec![err(path, message)];
    let obj = raw.as_object().ok_or_else(|| {
        one(
            "",
            "a document must be a mapping with apiVersion, kind, metadata and spec".into(),
        )
    })?;
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(one(
                "apiVersion",
                format!("unsupported apiVersion `{other}`, expected `{API_VERSION}`"),
            ));
        }
        None => {
            return Err(one(
                "apiVersion",
                format!("missing apiVersion (expected `{API_VERSION}`)"),
            ));
        }
    }
    let kind_name = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| one("kind", "missing kind".into()))?;
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind_name)
        .ok_or_else(|| one("kind", format!("unknown kind `{kind_name}`; expected one of HeadnodeSet, ManateeVersion, ShardTopology")))?;
    // Report every unknown field and type error, not just the first one
    // serde trips on; the typed decode below then finds nothing else.
    let errors = crate::schema_check::schema_errors(kind, raw);
    if !errors.is_empty() {
        let mut diags: Vec<Diagnostic> = errors
            .into_iter()
            .map(|(path, message)| err(&path, message))
            .collect();
        diags.sort_by(|a, b| a.location.cmp(&b.location));
        return Err(diags);
    }
    let result = match kind {
        Kind::HeadnodeSet => serde_path_to_error::deserialize(raw).map(Document::HeadnodeSet),
        Kind::ManateeVersion => serde_path_to_error::deserialize(raw).map(Document::ManateeVersion),
        Kind::ShardTopology => serde_path_to_error::deserialize(raw).map(Document::ShardTopology),
    };
    result.map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let message = e.inner().to_string();
        // For a typo the interesting place is the unknown key itself.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            let p = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            if index.at.contains_key(&p) {
                path = p;
            }
        }
        vec![err(&path, message)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MV: &str = "\
apiVersion: tritonctl/v1alpha1
kind: ManateeVersion
metadata:
  name: sdc
spec:
  shards: [sdc]
  image:
    uuid: 2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab
  rollout:
    parallelizm: 2
";

    #[test]
    fn unknown_field_is_located_at_the_typo() {
        let (docs, diags) = parse_documents("mv.yaml", MV);
        assert!(docs.is_empty());
        assert_eq!(diags.len(), 1, "{diags:?}");
        let d = &diags[0];
        assert_eq!(d.path, "spec.rollout.parallelizm");
        assert_eq!((d.location.line, d.location.column), (10, 5));
        assert!(
            d.message.contains("unknown field `parallelizm`"),
            "{}",
            d.message
        );
    }

    #[test]
    fn several_documents_and_their_positions() {
        let two = format!(
            "{}---\n{}",
            MV.replace("parallelizm", "parallelism"),
            MV.replace("parallelizm", "parallelism")
                .replace("name: sdc", "name: other")
        );
        let (docs, diags) = parse_documents("two.yaml", &two);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].document.name(), "other");
        assert_eq!(docs[1].locate("metadata").line, 14);
        assert_eq!(docs[1].locate("metadata.name").line, 15);
    }

    #[test]
    fn every_unknown_field_is_reported_at_once() {
        let two = MV.replace("  image:\n", "  imagee: {}\n  image:\n");
        let (_, diags) = parse_documents("mv.yaml", &two);
        let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.imagee", "spec.rollout.parallelizm"],
            "{diags:?}"
        );
        assert_eq!(diags[0].location.line, 7);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let (_, diags) = parse_documents(
            "mv.yaml",
            &MV.replace("parallelizm: 2", "parallelism: lots"),
        );
        assert_eq!(diags[0].path, "spec.rollout.parallelism");
        assert_eq!(diags[0].location.line, 10);
    }

    #[test]
    fn malformed_yaml_has_a_location() {
        let (docs, diags) = parse_documents("bad.yaml", "kind: [unclosed\nspec: {");
        assert!(docs.is_empty());
        assert!(
            diags[0].message.starts_with("malformed YAML"),
            "{}",
            diags[0].message
        );
        assert!(diags[0].location.line >= 1);
    }

    #[test]
    fn json_documents_parse_too() {
        let json = r#"{"apiVersion":"tritonctl/v1alpha1","kind":"ManateeVersion","metadata":{"name":"x"},"spec":{"shards":["sdc"],"image":{"uuid":"2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab"}}}"#;
        let (docs, diags) = parse_documents("x.json", json);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(docs[0].document.kind(), Kind::ManateeVersion);
    }

    #[test]
    fn unknown_kind_and_api_version() {
        let (_, d) = parse_documents("k.yaml", &MV.replace("kind: ManateeVersion", "kind: Pod"));
        assert!(d[0].message.contains("unknown kind `Pod`"));
        assert_eq!(d[0].location.line, 2);
        let (_, d) = parse_documents("k.yaml", &MV.replace("tritonctl/v1alpha1", "v1"));
        assert!(d[0].message.contains("unsupported apiVersion"));
    }

    #[test]
    fn every_type_error_and_unknown_field_of_a_document_at_once() {
        let bad = MV
            .replace(
                "parallelizm: 2",
                "parallelism: lots\n    paused: maybe\n    approval: [x]",
            )
            .replace(
                "  image:\n",
                "  strategy: sideways\n  imagee: {}\n  image:\n",
            )
            .replace("name: sdc", "name: 7\n  labels: {a: [1]}");
        let (docs, diags) = parse_documents("mv.yaml", &bad);
        assert!(docs.is_empty());
        let got: Vec<(&str, u64)> = diags
            .iter()
            .map(|d| (d.path.as_str(), d.location.line))
            .collect();
        assert_eq!(
            got,
            [
                ("metadata.name", 4),
                ("metadata.labels.a", 5),
                ("spec.strategy", 8),
                ("spec.imagee", 9),
                ("spec.rollout.parallelism", 13),
                ("spec.rollout.paused", 14),
                ("spec.rollout.approval", 15),
            ],
            "{diags:#?}"
        );
        let msg = |p: &str| &diags.iter().find(|d| d.path == p).unwrap().message;
        assert_eq!(
            msg("spec.rollout.parallelism"),
            "invalid type: string \"lots\", expected an integer"
        );
        assert_eq!(
            msg("spec.strategy"),
            "unknown value `sideways`, expected one of auto, rolling, switchover, transplant"
        );
        assert_eq!(
            msg("spec.rollout.approval"),
            "invalid type: sequence, expected one of never, beforePrimary, beforeEachShard"
        );
    }

    #[test]
    fn missing_fields_and_out_of_range_integers_with_the_rest() {
        let bad = MV
            .replace(
                "    uuid: 2a3d1f0e-9b8c-4d7e-a6f5-0123456789ab\n",
                "    version: 1.2.3\n",
            )
            .replace("parallelizm: 2", "parallelism: -1")
            .replace("  shards: [sdc]\n", "");
        let (_, diags) = parse_documents("mv.yaml", &bad);
        let got: Vec<(&str, &str)> = diags
            .iter()
            .map(|d| (d.path.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("spec", "missing field `shards`"),
                ("spec.image", "missing field `uuid`"),
                (
                    "spec.rollout.parallelism",
                    "invalid value: integer `-1`, expected an integer from 0 to 4294967295"
                ),
            ],
            "{diags:#?}"
        );
    }
}
