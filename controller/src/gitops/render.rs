//! Rendering a [`Review`]: text (coloured on a terminal), JSON, and
//! Markdown for a pull-request comment.

use std::fmt::Write;

use console::Style;

use super::review::{
    Change, DocReview, HeadnodePlan, KindPlan, ManateePlan, OpReview, ReshardReview, Review, Risk,
    ShardOutcome, ShardReview, TopologyPlan,
};
use super::running::Rule;

fn change_str(c: Change) -> &'static str {
    match c {
        Change::Create => "create",
        Change::Update => "update",
        Change::Unchanged => "unchanged",
    }
}

fn outcome_str(o: ShardOutcome) -> &'static str {
    match o {
        ShardOutcome::UpToDate => "up to date",
        ShardOutcome::Upgrade => "upgrade",
        ShardOutcome::Refused => "REFUSED by preflight",
        ShardOutcome::InFlight => "operation in flight",
        ShardOutcome::NotObserved => "not observed",
    }
}

/// One line per document and the totals.
pub fn summary(r: &Review) -> String {
    let count = |c: Change| r.documents.iter().filter(|d| d.change == c).count();
    let mut ops = 0;
    let mut refused = 0;
    let mut vnodes = 0;
    for d in &r.documents {
        if let KindPlan::Topology(t) = &d.plan {
            vnodes += t.moves.iter().map(|m| m.count).sum::<usize>();
            ops += t.operations.len();
            refused += usize::from(!t.refusal.is_empty());
        }
        if let KindPlan::Manatee(m) = &d.plan {
            ops += m
                .shards
                .iter()
                .filter(|s| s.outcome == ShardOutcome::Upgrade)
                .count();
            refused += m
                .shards
                .iter()
                .filter(|s| s.outcome == ShardOutcome::Refused)
                .count();
        }
        if let KindPlan::Headnodes(h) = &d.plan
            && let Some(s) = &h.manatee
        {
            ops += usize::from(s.outcome == ShardOutcome::Upgrade);
            refused += usize::from(s.outcome == ShardOutcome::Refused);
        }
        refused += usize::from(d.refused());
    }
    format!(
        "{} document(s): {} to create, {} to update, {} unchanged; {ops} shard operation(s) planned, {refused} refused, {vnodes} vnode(s) move",
        r.documents.len(),
        count(Change::Create),
        count(Change::Update),
        count(Change::Unchanged)
    )
}

struct Styles {
    add: Style,
    del: Style,
    hunk: Style,
    head: Style,
    risk: Style,
    warn: Style,
}

impl Styles {
    fn new(color: bool) -> Styles {
        let s = |st: Style| st.force_styling(color);
        Styles {
            add: s(Style::new().green()),
            del: s(Style::new().red()),
            hunk: s(Style::new().cyan()),
            head: s(Style::new().bold()),
            risk: s(Style::new().red().bold()),
            warn: s(Style::new().yellow()),
        }
    }
}

fn risks(r: &[Risk]) -> String {
    r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
}

/// Plain text; `color` adds ANSI colours (a terminal).
pub fn text(r: &Review, color: bool) -> String {
    let st = Styles::new(color);
    let mut o = String::new();
    match &r.observed {
        Some(src) => writeln!(o, "Planned against {src}").unwrap(),
        None => writeln!(
            o,
            "Not observed: spec changes only (give the datacenter endpoints or --observed SNAPSHOT for the operations)"
        )
        .unwrap(),
    }
    writeln!(o, "{}", summary(r)).unwrap();
    for d in &r.documents {
        writeln!(o).unwrap();
        let stored = match (&d.stored_resource_version, d.stored_generation) {
            (Some(rv), Some(g)) => format!(" (stored resourceVersion {rv}, generation {g})"),
            _ => String::new(),
        };
        writeln!(
            o,
            "{}",
            st.head
                .apply_to(format!("{}: {}{stored}", d.key(), change_str(d.change)))
        )
        .unwrap();
        for line in d.spec_diff.lines() {
            let styled = if line.starts_with("+++") || line.starts_with("---") {
                st.head.apply_to(line).to_string()
            } else if line.starts_with('+') {
                st.add.apply_to(line).to_string()
            } else if line.starts_with('-') {
                st.del.apply_to(line).to_string()
            } else if line.starts_with("@@") {
                st.hunk.apply_to(line).to_string()
            } else {
                line.to_string()
            };
            writeln!(o, "  {styled}").unwrap();
        }
        match &d.plan {
            KindPlan::Manatee(m) => text_manatee(&mut o, m, &st),
            KindPlan::Topology(t) => text_topology(&mut o, t),
            KindPlan::Headnodes(h) => text_headnodes(&mut o, h, &st),
        }
        for run in &d.running {
            let line = format!(
                "  running operation {} on {} at {}: {} — {}",
                run.operation,
                run.target,
                run.at,
                run.rule.as_str(),
                run.why
            );
            if run.rule == Rule::Refused {
                writeln!(o, "{}", st.risk.apply_to(line)).unwrap();
            } else {
                writeln!(o, "{line}").unwrap();
            }
        }
    }
    o
}

fn text_manatee(o: &mut String, m: &ManateePlan, st: &Styles) {
    let img = match &m.image_record {
        Some(i) => format!(
            "{} ({} {}, {}{})",
            m.image,
            i.name,
            i.version,
            i.state,
            i.manatee_major
                .map(|v| format!(", manatee major {v}"))
                .unwrap_or_default()
        ),
        None => m.image.clone(),
    };
    writeln!(o, "  image {img}; strategy {}", m.strategy).unwrap();
    for r in &m.rollout {
        writeln!(o, "  rollout {r}").unwrap();
    }
    for w in &m.warnings {
        writeln!(o, "  {}", st.warn.apply_to(format!("warning: {w}"))).unwrap();
    }
    for s in &m.shards {
        text_shard(o, s, st);
    }
}

fn text_shard(o: &mut String, s: &ShardReview, st: &Styles) {
    let starts = s
        .starts
        .as_ref()
        .map(|x| format!(", starts {x}"))
        .unwrap_or_default();
    let strategy = s
        .strategy
        .as_ref()
        .map(|x| format!(" ({x})"))
        .unwrap_or_default();
    writeln!(
        o,
        "  shard {}: {}{strategy}{starts}",
        s.shard,
        outcome_str(s.outcome)
    )
    .unwrap();
    if let Some(msg) = &s.message {
        writeln!(o, "    {msg}").unwrap();
    }
    for p in &s.peers {
        writeln!(o, "    observed: {p}").unwrap();
    }
    if let Some(op) = &s.operation {
        text_op(o, op, st);
    }
}

fn text_op(o: &mut String, op: &OpReview, st: &Styles) {
    writeln!(
        o,
        "    operation {} ({}), {} steps:",
        op.id,
        op.kind,
        op.steps.len()
    )
    .unwrap();
    for (i, s) in op.steps.iter().enumerate() {
        let mark = if s.risks.is_empty() {
            String::new()
        } else {
            format!(" {}", st.risk.apply_to(format!("[{}]", risks(&s.risks))))
        };
        writeln!(o, "      {}. {}{mark}: {}", i + 1, s.name, s.description).unwrap();
        if !s.touches.is_empty() {
            writeln!(o, "         touches: {}", s.touches.join(", ")).unwrap();
        }
        writeln!(o, "         gate: {}", s.gate).unwrap();
        writeln!(o, "         done when: {}", s.done_when).unwrap();
    }
    for w in &op.waits {
        writeln!(o, "    waits on: {w}").unwrap();
    }
    writeln!(o, "    expected write outage: {}", op.expected_write_outage).unwrap();
    writeln!(
        o,
        "    point of no return: {}",
        op.point_of_no_return
            .as_deref()
            .unwrap_or("none (no step is irreversible)")
    )
    .unwrap();
    if let Some(r) = &op.rollback {
        writeln!(o, "    rollback: {r}").unwrap();
    }
}

fn text_topology(o: &mut String, t: &TopologyPlan) {
    for n in &t.notes {
        writeln!(o, "  note: {n}").unwrap();
    }
    for s in &t.shards_added {
        writeln!(o, "  shard + {s}").unwrap();
    }
    for s in &t.shards_removed {
        writeln!(o, "  shard - {s}").unwrap();
    }
    for c in &t.shard_changes {
        writeln!(o, "  {c}").unwrap();
    }
    if t.moves.is_empty() {
        writeln!(o, "  ring: no vnode moves").unwrap();
    }
    for m in &t.moves {
        writeln!(
            o,
            "  ring: {} -> {}: {} vnodes ({})",
            m.from,
            m.to,
            m.count,
            shown(&m.vnodes)
        )
        .unwrap();
    }
    let after: Vec<String> = t
        .ring_after
        .iter()
        .map(|(p, c)| format!("{p} {c}"))
        .collect();
    writeln!(
        o,
        "  ring after ({} vnodes): {}",
        t.vnodes,
        after.join(", ")
    )
    .unwrap();
    if let Some(i) = &t.ring_image {
        writeln!(o, "  deployed ring image: {i}").unwrap();
    }
    if !t.refusal.is_empty() {
        writeln!(
            o,
            "  refused: the document's ring disagrees with the live ring other than by its moves:"
        )
        .unwrap();
        for r in &t.refusal {
            writeln!(o, "    - {r}").unwrap();
        }
    }
    for op in &t.operations {
        text_reshard(o, op);
    }
    for s in &t.observed {
        writeln!(o, "  observed: {s}").unwrap();
    }
}

fn text_reshard(o: &mut String, op: &ReshardReview) {
    writeln!(
        o,
        "  resharding {}: {} -> {}: {} vnodes ({}), {} steps:",
        op.name,
        op.from,
        op.to,
        op.count,
        shown(&op.vnodes),
        op.steps.len()
    )
    .unwrap();
    for (i, s) in op.steps.iter().enumerate() {
        let mut marks = Vec::new();
        if s.name == op.read_only_window.opens_at {
            marks.push("read-only window opens");
        }
        if s.irreversible {
            marks.push("point of no return");
        }
        if s.name == op.read_only_window.closes_at {
            marks.push("read-only window closes");
        }
        let mark = if marks.is_empty() {
            String::new()
        } else {
            format!(" [{}]", marks.join(", "))
        };
        let ro = if s.read_only { "ro " } else { "   " };
        writeln!(
            o,
            "    {ro}{:>2}. {}{mark}: {}",
            i + 1,
            s.name,
            s.description
        )
        .unwrap();
    }
    for w in &op.waits {
        writeln!(o, "    waits on: {w}").unwrap();
    }
    let w = &op.read_only_window;
    writeln!(
        o,
        "    read-only window: the {} moving vnodes only, {} to {} (steps marked ro), about {} s; it rests on:",
        w.vnodes, w.opens_at, w.closes_at, w.estimate_seconds
    )
    .unwrap();
    for r in &w.rests_on {
        writeln!(o, "      - {r}").unwrap();
    }
    writeln!(o, "    point of no return: {}", op.point_of_no_return).unwrap();
    writeln!(o, "    rollback: {}", op.rollback).unwrap();
}

fn shown(ranges: &[String]) -> String {
    const N: usize = 6;
    let mut s = ranges
        .iter()
        .take(N)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ranges.len() > N {
        s.push_str(&format!(", ... {} more ranges", ranges.len() - N));
    }
    s
}

fn text_headnodes(o: &mut String, h: &HeadnodePlan, st: &Styles) {
    for n in &h.notes {
        writeln!(o, "  note: {n}").unwrap();
    }
    for c in &h.changes {
        writeln!(o, "  {c}").unwrap();
    }
    if let Some(s) = &h.manatee {
        text_shard(o, s, st);
    }
}

// ---------------------------------------------------------------------------
// Markdown

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A pull-request comment: one section per document, collapsible step
/// lists, risky steps called out above them.
pub fn markdown(r: &Review) -> String {
    let mut o = String::new();
    writeln!(o, "## tritonctl diff\n").unwrap();
    match &r.observed {
        Some(src) => writeln!(o, "Planned against {src}.\n").unwrap(),
        None => writeln!(o, "**Not observed**: spec changes only.\n").unwrap(),
    }
    writeln!(o, "{}\n", summary(r)).unwrap();
    for d in &r.documents {
        md_doc(&mut o, d);
    }
    o
}

fn md_doc(o: &mut String, d: &DocReview) {
    writeln!(o, "### `{}`: {}\n", d.key(), change_str(d.change)).unwrap();
    if d.refused() {
        writeln!(
            o,
            "> [!CAUTION]\n> **Apply refused**: an operation in flight cannot take this change.\n"
        )
        .unwrap();
    }
    if !d.spec_diff.is_empty() {
        writeln!(
            o,
            "<details><summary>Spec diff</summary>\n\n```diff\n{}```\n\n</details>\n",
            d.spec_diff
        )
        .unwrap();
    }
    match &d.plan {
        KindPlan::Manatee(m) => md_manatee(o, m),
        KindPlan::Topology(t) => md_topology(o, t),
        KindPlan::Headnodes(h) => md_headnodes(o, h),
    }
    if !d.running.is_empty() {
        writeln!(o, "**Running operations**\n").unwrap();
        for run in &d.running {
            let rule = if run.rule == Rule::Refused {
                format!("**{}**", run.rule.as_str())
            } else {
                run.rule.as_str().to_string()
            };
            writeln!(
                o,
                "- `{}` on `{}` at {}: {rule}. {}",
                run.operation, run.target, run.at, run.why
            )
            .unwrap();
        }
        writeln!(o).unwrap();
    }
}

fn md_manatee(o: &mut String, m: &ManateePlan) {
    let img = match &m.image_record {
        Some(i) => format!("`{}` ({} {}, {})", m.image, i.name, i.version, i.state),
        None => format!("`{}`", m.image),
    };
    writeln!(o, "Image {img}, strategy {}.\n", m.strategy).unwrap();
    for r in &m.rollout {
        writeln!(o, "- rollout {r}").unwrap();
    }
    writeln!(o).unwrap();
    for w in &m.warnings {
        writeln!(o, "> [!WARNING]\n> {w}\n").unwrap();
    }
    for s in &m.shards {
        md_shard(o, s);
    }
}

fn md_shard(o: &mut String, s: &ShardReview) {
    {
        let starts = s
            .starts
            .as_ref()
            .map(|x| format!(", starts {x}"))
            .unwrap_or_default();
        let strategy = s
            .strategy
            .as_ref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default();
        writeln!(
            o,
            "#### Shard `{}`: {}{strategy}{starts}\n",
            s.shard,
            outcome_str(s.outcome)
        )
        .unwrap();
        if let Some(msg) = &s.message {
            writeln!(o, "{msg}\n").unwrap();
        }
        if !s.peers.is_empty() {
            writeln!(o, "Observed: {}.\n", s.peers.join("; ")).unwrap();
        }
        if let Some(op) = &s.operation {
            let risky: Vec<String> = op
                .steps
                .iter()
                .filter(|x| !x.risks.is_empty())
                .map(|x| format!("`{}` ({})", x.name, risks(&x.risks)))
                .collect();
            if !risky.is_empty() {
                writeln!(
                    o,
                    "> [!IMPORTANT]\n> **Risky steps**: {}\n",
                    risky.join(", ")
                )
                .unwrap();
            }
            writeln!(o, "- expected write outage: {}", op.expected_write_outage).unwrap();
            writeln!(
                o,
                "- point of no return: {}",
                op.point_of_no_return
                    .as_deref()
                    .map(|p| format!("**`{p}`**"))
                    .unwrap_or_else(|| "none (no step is irreversible)".into())
            )
            .unwrap();
            for w in &op.waits {
                writeln!(o, "- waits on: {w}").unwrap();
            }
            if let Some(r) = &op.rollback {
                writeln!(o, "- rollback: {r}").unwrap();
            }
            writeln!(
                o,
                "\n<details><summary>Operation <code>{}</code>: {} steps</summary>\n",
                op.id,
                op.steps.len()
            )
            .unwrap();
            writeln!(o, "| # | step | touches | gate | done when | risk |").unwrap();
            writeln!(o, "|---|---|---|---|---|---|").unwrap();
            for (i, x) in op.steps.iter().enumerate() {
                let risk = if x.risks.is_empty() {
                    String::new()
                } else {
                    format!("**{}**", risks(&x.risks))
                };
                writeln!(
                    o,
                    "| {} | `{}`: {} | {} | {} | {} | {risk} |",
                    i + 1,
                    x.name,
                    cell(&x.description),
                    cell(&x.touches.join(", ")),
                    cell(&x.gate),
                    cell(&x.done_when)
                )
                .unwrap();
            }
            writeln!(o, "\n</details>\n").unwrap();
        }
    }
}

fn md_topology(o: &mut String, t: &TopologyPlan) {
    for n in &t.notes {
        writeln!(o, "> [!NOTE]\n> {n}\n").unwrap();
    }
    for s in &t.shards_added {
        writeln!(o, "- shard added: `{s}`").unwrap();
    }
    for s in &t.shards_removed {
        writeln!(o, "- shard removed: `{s}`").unwrap();
    }
    for c in &t.shard_changes {
        writeln!(o, "- {c}").unwrap();
    }
    writeln!(o).unwrap();
    if t.moves.is_empty() {
        writeln!(o, "Ring: no vnode moves.\n").unwrap();
    } else {
        writeln!(o, "| vnodes from | to | count |\n|---|---|---|").unwrap();
        for m in &t.moves {
            writeln!(o, "| `{}` | `{}` | {} |", m.from, m.to, m.count).unwrap();
        }
        writeln!(o).unwrap();
        for m in &t.moves {
            writeln!(
                o,
                "<details><summary>{} vnodes {} → {}</summary>\n\n{} (every vnode: `tritonctl diff -o json`)\n\n</details>\n",
                m.count,
                m.from,
                m.to,
                shown(&m.vnodes)
            )
            .unwrap();
        }
    }
    let after: Vec<String> = t
        .ring_after
        .iter()
        .map(|(p, c)| format!("`{p}` {c}"))
        .collect();
    writeln!(
        o,
        "Ring after ({} vnodes): {}.\n",
        t.vnodes,
        after.join(", ")
    )
    .unwrap();
    if let Some(i) = &t.ring_image {
        writeln!(o, "Deployed ring image: `{i}`.\n").unwrap();
    }
    if !t.refusal.is_empty() {
        writeln!(
            o,
            "> [!CAUTION]\n> Refused: the document's ring disagrees with the live ring other than by its moves.\n"
        )
        .unwrap();
        for r in &t.refusal {
            writeln!(o, "- {r}").unwrap();
        }
        writeln!(o).unwrap();
    }
    for op in &t.operations {
        md_reshard(o, op);
    }
    if !t.observed.is_empty() {
        writeln!(o, "<details><summary>Observed shards</summary>\n").unwrap();
        for s in &t.observed {
            writeln!(o, "- {s}").unwrap();
        }
        writeln!(o, "\n</details>\n").unwrap();
    }
}

fn md_reshard(o: &mut String, op: &ReshardReview) {
    let w = &op.read_only_window;
    writeln!(
        o,
        "#### Resharding `{}`: {} vnodes `{}` → `{}`\n",
        op.name, op.count, op.from, op.to
    )
    .unwrap();
    writeln!(
        o,
        "- vnodes: {} (every vnode: `tritonctl diff -o json`)",
        shown(&op.vnodes)
    )
    .unwrap();
    writeln!(
        o,
        "- read-only window: the {} moving vnodes only (every other vnode stays writable), `{}` to `{}`, about **{} s**",
        w.vnodes, w.opens_at, w.closes_at, w.estimate_seconds
    )
    .unwrap();
    writeln!(o, "- point of no return: `{}`", op.point_of_no_return).unwrap();
    writeln!(o, "- rollback: {}", op.rollback).unwrap();
    for x in &op.waits {
        writeln!(o, "- waits on: {x}").unwrap();
    }
    writeln!(
        o,
        "\n| # | step | read-only | description |\n|---|---|---|---|"
    )
    .unwrap();
    for (i, s) in op.steps.iter().enumerate() {
        let name = if s.irreversible {
            format!("**`{}`** (point of no return)", s.name)
        } else {
            format!("`{}`", s.name)
        };
        let ro = if s.read_only { "ro" } else { "" };
        writeln!(
            o,
            "| {} | {name} | {ro} | {} |",
            i + 1,
            cell(&s.description)
        )
        .unwrap();
    }
    writeln!(
        o,
        "\n<details><summary>What the read-only estimate rests on</summary>\n"
    )
    .unwrap();
    for r in &w.rests_on {
        writeln!(o, "- {r}").unwrap();
    }
    writeln!(o, "\n</details>\n").unwrap();
}

fn md_headnodes(o: &mut String, h: &HeadnodePlan) {
    for n in &h.notes {
        writeln!(o, "> [!NOTE]\n> {n}\n").unwrap();
    }
    if !h.changes.is_empty() {
        writeln!(o, "Membership of `{}`:\n", h.datacenter).unwrap();
        for c in &h.changes {
            writeln!(o, "- {c}").unwrap();
        }
        writeln!(o).unwrap();
    }
    if let Some(s) = &h.manatee {
        md_shard(o, s);
    }
}
