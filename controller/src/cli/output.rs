//! Rendering documents: tables, YAML, JSON, `describe`.

use comfy_table::{ContentArrangement, Table, presets::NOTHING};
use crds::status::OperationStatus;
use crds::{ConditionType, Document};

use super::OutputFormat;
use super::listing::{self, Listing, Output, trim_lines};
use crate::pause::PauseMarker;

/// Pause markers by document name (`tritonctl pause`), for the PAUSED column.
pub type Pauses = std::collections::BTreeMap<String, PauseMarker>;

pub fn to_yaml(v: &serde_json::Value) -> String {
    listing::to_yaml(v)
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

pub(crate) fn condition_cell(doc: &Document, kind: ConditionType) -> String {
    match doc.status().and_then(|s| s.condition(kind)) {
        Some(c) => format!("{:?}", c.status),
        None => "Unknown".into(),
    }
}

/// One-line summary of what the spec asks for, per kind.
pub(crate) fn summary(doc: &Document) -> String {
    match doc {
        Document::HeadnodeSet(d) => format!(
            "{} headnodes, primary {}",
            d.spec.headnodes.len(),
            d.spec.primary
        ),
        Document::ManateeVersion(d) => format!(
            "{} shard(s) -> {}",
            d.spec.shards.len(),
            d.spec
                .image
                .version
                .as_deref()
                .unwrap_or(&d.spec.image.uuid)
        ),
        Document::ShardTopology(d) => format!(
            "{} shards, {} vnodes",
            d.spec.shards.len(),
            d.spec.ring.vnodes
        ),
    }
}

pub(crate) fn operation_cell(doc: &Document) -> String {
    match doc.status().and_then(|s| s.operation.as_ref()) {
        Some(op) => {
            let done = op
                .steps
                .iter()
                .filter(|s| {
                    matches!(
                        s.state,
                        crds::StepState::Succeeded | crds::StepState::Skipped
                    )
                })
                .count();
            format!("{} {:?} {done}/{}", op.kind, op.phase, op.steps.len())
        }
        None => "-".into(),
    }
}

/// Who paused a document: the operator of a `tritonctl pause` (with the
/// time when `wide`), `spec` for `spec.rollout.paused`, or `-`.
pub(crate) fn paused_cell(doc: &Document, marker: Option<&PauseMarker>, wide: bool) -> String {
    match marker {
        Some(m) if wide => format!("{} since {}", m.by, m.at),
        Some(m) => m.by.clone(),
        None => match doc {
            Document::ManateeVersion(d) if d.spec.rollout.paused => "spec".into(),
            _ => "-".into(),
        },
    }
}

/// The columns of `get` (the first six are the plain table's).
pub const DOC_COLUMNS: [&str; 8] = [
    "NAME",
    "GENERATION",
    "OBSERVED",
    "READY",
    "PROGRESSING",
    "PAUSED",
    "OPERATION",
    "SPEC",
];
pub const DOC_NARROW: usize = 6;

/// Every column of `get` for one document (`wide`: the PAUSED cell says since when).
pub fn doc_row(d: &Document, marker: Option<&PauseMarker>, wide: bool) -> Vec<String> {
    let observed = d
        .status()
        .and_then(|s| s.observed_generation)
        .map_or("-".into(), |g| g.to_string());
    vec![
        d.name().to_string(),
        d.metadata().generation.unwrap_or(0).to_string(),
        observed,
        condition_cell(d, ConditionType::Ready),
        condition_cell(d, ConditionType::Progressing),
        paused_cell(d, marker, wide),
        operation_cell(d),
        summary(d),
    ]
}

/// `kind/name`, as `-o name` prints it.
pub fn doc_name(d: &Document) -> String {
    format!("{}/{}", d.kind().short(), d.name())
}

fn list_value(docs: &[Document]) -> serde_json::Value {
    let items: Vec<_> = docs.iter().map(Document::to_value).collect();
    serde_json::json!({"apiVersion": crds::API_VERSION, "kind": "List", "items": items})
}

/// What `get` shows of some documents; `single`: one named document, whose
/// JSON is the document itself rather than a List.
pub fn doc_listing(docs: &[Document], pauses: &Pauses, wide: bool, single: bool) -> Listing {
    Listing {
        columns: &DOC_COLUMNS,
        narrow: DOC_NARROW,
        rows: docs
            .iter()
            .map(|d| doc_row(d, pauses.get(d.name()), wide))
            .collect(),
        names: docs.iter().map(doc_name).collect(),
        value: match docs {
            [one] if single => one.to_value(),
            _ => list_value(docs),
        },
    }
}

pub fn render_list(docs: &[Document], format: OutputFormat) -> String {
    render_list_with_pauses(docs, format, &Pauses::new())
}

pub fn render_list_with_pauses(docs: &[Document], format: OutputFormat, pauses: &Pauses) -> String {
    let out = format.output();
    let l = doc_listing(docs, pauses, matches!(out, Output::Wide), false);
    listing::render(&l, &out, false).expect("every format of OutputFormat renders")
}

pub fn render_one(doc: &Document, format: OutputFormat) -> String {
    let out = format.output();
    let l = doc_listing(
        std::slice::from_ref(doc),
        &Pauses::new(),
        matches!(out, Output::Wide),
        true,
    );
    listing::render(&l, &out, false).expect("every format of OutputFormat renders")
}

pub fn describe(doc: &Document) -> String {
    describe_with_pause(doc, None)
}

pub fn describe_with_pause(doc: &Document, pause: Option<&PauseMarker>) -> String {
    let mut out = String::new();
    let m = doc.metadata();
    out += &format!("Name:              {}\n", m.name);
    out += &format!("Kind:              {}\n", doc.kind());
    out += &format!("Generation:        {}\n", m.generation.unwrap_or(0));
    out += &format!(
        "Resource version:  {}\n",
        m.resource_version.as_deref().unwrap_or("-")
    );
    let status = doc.status();
    out += &format!(
        "Observed gen.:     {}\n",
        status
            .and_then(|s| s.observed_generation)
            .map_or("-".into(), |g| g.to_string())
    );
    match (pause, paused_cell(doc, None, false).as_str()) {
        (Some(m), _) => {
            out += &format!("Paused:            by {} at {}\n", m.by, m.at);
            if let Some(r) = &m.reason {
                out += &format!("Pause reason:      {r}\n");
            }
            out += "                   (tritonctl pause; lift with `tritonctl resume`)\n";
        }
        (None, "spec") => out += "Paused:            by spec.rollout.paused\n",
        _ => {}
    }
    out += "Spec:\n";
    for line in to_yaml(&doc.spec_value()).lines() {
        out += &format!("  {line}\n");
    }
    out += "Conditions:\n";
    match status.filter(|s| !s.conditions.is_empty()) {
        None => out += "  (none: the controller has not reconciled this document yet)\n",
        Some(s) => {
            let mut t = table();
            t.set_header(vec!["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]);
            for c in &s.conditions {
                t.add_row(vec![
                    c.type_.as_str().to_string(),
                    format!("{:?}", c.status),
                    c.reason.clone(),
                    c.last_transition_time.clone(),
                    c.message.clone(),
                ]);
            }
            for line in trim_lines(&t.to_string()).lines() {
                out += &format!("  {line}\n");
            }
        }
    }
    if let Some(op) = status.and_then(|s| s.operation.as_ref()) {
        out += &describe_operation(op);
    }
    if let Some(s) = status.filter(|s| !s.locks.is_empty()) {
        out += "Locks:\n";
        for l in &s.locks {
            out += &format!("  {} held by {}\n", l.path, l.holder);
        }
    }
    out
}

pub fn describe_operation(op: &OperationStatus) -> String {
    let mut out = format!(
        "Operation:         {} {} on {} ({:?})\n",
        op.kind, op.id, op.target, op.phase
    );
    if let Some(msg) = &op.message {
        out += &format!("  Message: {msg}\n");
    }
    out += &format!(
        "  Rollback:        {}\n",
        if op.can_roll_back() {
            "possible (no irreversible step has started)"
        } else {
            "not possible: past the point of no return"
        }
    );
    let mut t = table();
    t.set_header(vec![
        "#", "STEP", "STATE", "ATTEMPTS", "STARTED", "FINISHED", "DETAIL",
    ]);
    for (i, s) in op.steps.iter().enumerate() {
        let mut name = s.name.clone();
        if op.point_of_no_return == Some(i) {
            name = format!("{name} [point of no return]");
        } else if s.irreversible {
            name = format!("{name} [irreversible]");
        }
        t.add_row(vec![
            (i + 1).to_string(),
            name,
            format!("{:?}", s.state),
            s.attempts.to_string(),
            s.started_at.clone().unwrap_or_default(),
            s.finished_at.clone().unwrap_or_default(),
            s.message.clone().unwrap_or_else(|| s.description.clone()),
        ]);
    }
    out += "  Steps:\n";
    for line in trim_lines(&t.to_string()).lines() {
        out += &format!("    {line}\n");
    }
    out
}
