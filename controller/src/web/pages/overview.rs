//! The overview page: leader, documents (conditions, drift, operation in
//! flight), HA posture, the ring, and what could not be observed.

use std::fmt::Write as _;

use super::html::{badge, doc_link, esc, page};
use crate::web::progress::human;
use crate::web::view::{DocView, Overview, Posture, RingView, ShardView};

/// The operation cell: step, state, progress, ETA.
pub fn op_cell(d: &DocView) -> String {
    let Some(op) = &d.operation else {
        return "<span class=\"muted\">none</span>".into();
    };
    let mut s = format!(
        "{} {} <progress max=\"{}\" value=\"{}\" aria-label=\"steps done\"></progress> {}/{}",
        esc(&op.kind),
        badge(&op.phase),
        op.total.max(1),
        op.done,
        op.done,
        op.total
    );
    if let (Some(step), Some(state)) = (&op.current_step, &op.current_state)
        && op.in_flight
    {
        let _ = write!(s, "<br>step <code>{}</code> {}", esc(step), badge(state));
    }
    if let Some(eta) = op.eta_seconds {
        let _ = write!(s, "<br>about {} left", human(eta));
    }
    if op.past_point_of_no_return && op.in_flight {
        s.push_str("<br><strong>past the point of no return</strong>");
    }
    s
}

/// The documents table (the overview's live region).
pub fn documents_table(docs: &[DocView]) -> String {
    if docs.is_empty() {
        return "<p>No documents are stored. Apply some with <code>tritonctl apply -f DIR</code>.</p>"
            .into();
    }
    let mut s = String::from(
        "<table><caption>Documents</caption><thead><tr><th scope=\"col\">Document</th>\
<th scope=\"col\">Generation</th><th scope=\"col\">Conditions</th><th scope=\"col\">Drift</th>\
<th scope=\"col\">Operation</th></tr></thead><tbody>",
    );
    for d in docs {
        let conds: Vec<String> = d.true_conditions().iter().map(|c| badge(c)).collect();
        let observed = d
            .observed_generation
            .map_or("not yet observed".to_string(), |g| format!("observed {g}"));
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td>{} <span class=\"muted\">({})</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            doc_link(&d.kind, &d.name),
            d.generation,
            esc(&observed),
            if conds.is_empty() {
                "<span class=\"muted\">none yet</span>".into()
            } else {
                conds.join(" ")
            },
            esc(&d.drift.label()),
            op_cell(d)
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn lag(l: Option<f64>) -> String {
    l.map_or("-".into(), |l| format!("{l:.1}s"))
}

/// One shard's line: primary, sync, asyncs, lag, freeze.
pub fn shard_row(sh: &ShardView) -> String {
    if let Some(e) = &sh.error {
        return format!(
            "<tr><th scope=\"row\">{}</th><td colspan=\"4\">not observed: {}</td></tr>",
            esc(&sh.name),
            esc(e)
        );
    }
    let names = |role: &str| {
        let v: Vec<String> = sh
            .in_role(role)
            .iter()
            .map(|p| format!("{} (lag {})", esc(&p.alias), lag(p.lag_seconds)))
            .collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    };
    let primary = sh
        .in_role("primary")
        .first()
        .map_or("<strong>none</strong>".into(), |p| esc(&p.alias));
    let frozen = match &sh.frozen {
        Some(r) => format!("frozen: {}", esc(r)),
        None if sh.one_node_write_mode => "one-node-write mode".into(),
        None => "no".into(),
    };
    format!(
        "<tr><th scope=\"row\"><a href=\"/topology#shard-{0}\">{0}</a></th><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td></tr>",
        esc(&sh.name),
        primary,
        names("sync"),
        names("async"),
        frozen
    )
}

fn posture(p: &Posture) -> String {
    let yes = |b: bool| if b { "yes" } else { "<strong>no</strong>" };
    let mut s = format!(
        "<section aria-labelledby=\"ha\"><h2 id=\"ha\">HA posture</h2><ul>\
<li>Headnodes: {} (<a href=\"/headnodes\">instances on each</a>)</li>\
<li>Binder: {} member(s), {} running; quorum {}; HA {}</li>\
<li>Moray (sdc): {} instance(s), {} running; HA {}</li></ul>",
        p.headnodes.len(),
        p.binder.members,
        p.binder.running,
        yes(p.binder.quorum()),
        yes(p.binder.ha()),
        p.moray.members,
        p.moray.running,
        yes(p.moray.ha())
    );
    if !p.shards.is_empty() {
        s.push_str(
            "<table><caption>Manatee shards</caption><thead><tr><th scope=\"col\">Shard</th>\
<th scope=\"col\">Primary</th><th scope=\"col\">Sync</th><th scope=\"col\">Asyncs</th>\
<th scope=\"col\">Freeze</th></tr></thead><tbody>",
        );
        for sh in &p.shards {
            s.push_str(&shard_row(sh));
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
    s
}

/// The ring's share per shard.
pub fn ring_table(r: &RingView) -> String {
    let mut s = format!(
        "<p>{} vnodes, {} read-only; from {}.</p><table><caption>Hash ring</caption><thead><tr>\
<th scope=\"col\">Shard (pnode)</th><th scope=\"col\">Vnodes</th><th scope=\"col\">Share</th>\
<th scope=\"col\">Read-only vnodes</th></tr></thead><tbody>",
        r.vnodes,
        r.read_only,
        esc(&r.source)
    );
    for sh in &r.shards {
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{:.1}%</td><td>{}</td></tr>",
            esc(&sh.pnode),
            sh.vnodes,
            sh.share,
            sh.read_only
        );
    }
    s.push_str("</tbody></table>");
    s
}

pub fn render(o: &Overview) -> String {
    let mut b = String::new();
    let leader = match &o.leader {
        Some(l) => format!(
            "Leader: <strong>{}</strong> since {}",
            esc(&l.identity),
            esc(&l.since)
        ),
        None => "<strong>No controller leads.</strong>".into(),
    };
    let _ = write!(
        b,
        "<p>{leader}. Store: {}. {}</p>",
        esc(&o.store),
        match &o.observed {
            Some(src) => format!("Observed through {}.", esc(src)),
            None => "The datacenter is not observed (store only).".into(),
        }
    );
    let _ = write!(
        b,
        "<section aria-labelledby=\"docs\"><h2 id=\"docs\">Documents <span id=\"live-note\" class=\"muted\" role=\"status\"></span></h2>\
<div data-live=\"/live/overview\" data-events=\"/events\" aria-live=\"polite\">{}</div></section>",
        documents_table(&o.documents)
    );
    if let Some(p) = &o.posture {
        b.push_str(&posture(p));
    }
    if let Some(r) = &o.ring {
        let _ = write!(
            b,
            "<section aria-labelledby=\"ring\"><h2 id=\"ring\">Ring</h2>{}</section>",
            ring_table(r)
        );
    }
    if !o.problems.is_empty() {
        b.push_str(
            "<section aria-labelledby=\"problems\"><h2 id=\"problems\">Not observed</h2><ul>",
        );
        for p in &o.problems {
            let _ = write!(b, "<li>{}</li>", esc(p));
        }
        b.push_str("</ul></section>");
    }
    let _ = write!(b, "<p class=\"muted\">As of {}.</p>", esc(&o.generated_at));
    page("Overview", "/", &b)
}
