//! A document's page: spec, conditions, and the operation's steps with
//! state, timings and the point of no return. The conditions and the steps
//! are the live region: they are fetched again whenever the event stream
//! says something about this document happened.

use std::fmt::Write as _;

use crds::Document;
use crds::status::OperationStatus;
use reconcilers::clock::parse_rfc3339;

use super::html::{badge, esc, page, seg};
use crate::web::progress::{human, op_view};

fn took(start: Option<&str>, end: Option<&str>) -> String {
    match (start.and_then(parse_rfc3339), end.and_then(parse_rfc3339)) {
        (Some(a), Some(b)) => human((b - a).whole_seconds().max(0) as u64),
        _ => String::new(),
    }
}

fn steps(op: &OperationStatus) -> String {
    let v = op_view(op, time::OffsetDateTime::now_utc());
    let mut s = format!(
        "<h2 id=\"operation\">Operation</h2><p><code>{}</code> {} on <strong>{}</strong>: {} \
<progress max=\"{}\" value=\"{}\" aria-label=\"steps done\"></progress> {} of {} steps done{}.</p>",
        esc(&op.id),
        esc(&op.kind),
        esc(&op.target),
        badge(&v.phase),
        v.total.max(1),
        v.done,
        v.done,
        v.total,
        v.eta_seconds
            .map(|e| format!(", about {} left", human(e)))
            .unwrap_or_default()
    );
    if let Some(m) = &op.message {
        let _ = write!(s, "<p>{}</p>", esc(m));
    }
    let _ = write!(
        s,
        "<p>Rollback: {}</p>",
        if op.can_roll_back() {
            "possible (no irreversible step has started)"
        } else {
            "<strong>not possible: past the point of no return</strong>"
        }
    );
    s.push_str(
        "<table id=\"steps\"><caption>Steps</caption><thead><tr><th scope=\"col\">#</th>\
<th scope=\"col\">Step</th><th scope=\"col\">State</th><th scope=\"col\">Attempts</th>\
<th scope=\"col\">Started</th><th scope=\"col\">Finished</th><th scope=\"col\">Took</th>\
<th scope=\"col\">Detail</th></tr></thead><tbody>",
    );
    for (i, st) in op.steps.iter().enumerate() {
        let mut name = format!("<code>{}</code>", esc(&st.name));
        if op.point_of_no_return == Some(i) {
            name.push_str(" <strong class=\"pnr\">point of no return</strong>");
        } else if st.irreversible {
            name.push_str(" <em>irreversible</em>");
        }
        let state = format!("{:?}", st.state);
        let _ = write!(
            s,
            "<tr data-step=\"{}\"><td>{}</td><th scope=\"row\">{name}</th><td class=\"state\" data-state=\"{state}\">{}</td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&st.name),
            i + 1,
            badge(&state),
            st.attempts,
            esc(st.started_at.as_deref().unwrap_or("")),
            esc(st.finished_at.as_deref().unwrap_or("")),
            took(st.started_at.as_deref(), st.finished_at.as_deref()),
            esc(st.message.as_deref().unwrap_or(&st.description))
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// The live region: conditions and the operation.
pub fn live(doc: &Document) -> String {
    let mut s = String::from("<h2 id=\"conditions\">Conditions</h2>");
    match doc.status().filter(|st| !st.conditions.is_empty()) {
        None => s.push_str("<p>None: the controller has not reconciled this document yet.</p>"),
        Some(st) => {
            s.push_str(
                "<table><caption>Conditions</caption><thead><tr><th scope=\"col\">Type</th>\
<th scope=\"col\">Status</th><th scope=\"col\">Reason</th><th scope=\"col\">Since</th>\
<th scope=\"col\">Message</th></tr></thead><tbody>",
            );
            for c in &st.conditions {
                let _ = write!(
                    s,
                    "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(c.type_.as_str()),
                    badge(&format!("{:?}", c.status)),
                    esc(&c.reason),
                    esc(&c.last_transition_time),
                    esc(&c.message)
                );
            }
            s.push_str("</tbody></table>");
        }
    }
    match doc.status().and_then(|st| st.operation.as_ref()) {
        Some(op) => s.push_str(&steps(op)),
        None => s.push_str("<h2 id=\"operation\">Operation</h2><p>None recorded.</p>"),
    }
    s
}

pub fn render(doc: &Document) -> String {
    let kind = doc.kind().as_str();
    let name = doc.name();
    let object = format!("{kind}/{name}");
    let m = doc.metadata();
    let mut b = format!(
        "<p>Generation {}, observed {}. <span id=\"live-note\" class=\"muted\" role=\"status\"></span></p>",
        m.generation.unwrap_or(0),
        doc.status()
            .and_then(|s| s.observed_generation)
            .map_or("not yet".to_string(), |g| g.to_string())
    );
    let _ = write!(
        b,
        "<div data-live=\"/live/doc/{}/{}\" data-events=\"/events?object={}\" aria-live=\"polite\">{}</div>",
        seg(kind),
        seg(name),
        seg(&object),
        live(doc)
    );
    let _ = write!(
        b,
        "<h2 id=\"spec\">Spec</h2><pre>{}</pre>",
        esc(&crate::gitops::to_yaml(&doc.spec_value()))
    );
    page(&object, "", &b)
}
