//! `tritonctl status` as text: one screen for a datacenter or region.

use comfy_table::{ContentArrangement, Table, presets::NOTHING};

use super::listing::trim_lines;
use crate::web::progress::human;
use crate::web::view::{DocView, Overview, Posture, RingView};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn indent(t: &Table) -> String {
    trim_lines(&t.to_string())
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

fn op_cell(d: &DocView) -> String {
    let Some(op) = &d.operation else {
        return "-".into();
    };
    let mut s = format!("{} {} {}/{}", op.kind, op.phase, op.done, op.total);
    if op.in_flight
        && let (Some(step), Some(state)) = (&op.current_step, &op.current_state)
    {
        s += &format!(", step {step} {state}");
    }
    if let Some(eta) = op.eta_seconds {
        s += &format!(", ETA {}", human(eta));
    }
    if op.in_flight && op.past_point_of_no_return {
        s += ", past the point of no return";
    }
    s
}

fn documents(o: &Overview) -> String {
    if o.documents.is_empty() {
        return "  (none stored; `tritonctl apply -f DIR`)\n".into();
    }
    let mut t = table(&["DOCUMENT", "GEN", "CONDITIONS", "DRIFT", "OPERATION"]);
    for d in &o.documents {
        let conds = d.true_conditions();
        t.add_row(vec![
            d.key(),
            match d.observed_generation {
                Some(g) if g == d.generation => g.to_string(),
                Some(g) => format!("{}/{g}", d.generation),
                None => format!("{}/-", d.generation),
            },
            if conds.is_empty() {
                "-".into()
            } else {
                conds.join(",")
            },
            d.drift.label(),
            op_cell(d),
        ]);
    }
    let mut s = indent(&t);
    // Why each stuck document is stuck, from its conditions.
    for d in &o.documents {
        for c in d
            .conditions
            .iter()
            .filter(|c| c.status == "True" && matches!(c.type_.as_str(), "Blocked" | "Degraded"))
        {
            s += &format!("  {} {}: {}: {}\n", d.key(), c.type_, c.reason, c.message);
        }
    }
    s
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn posture(p: &Posture) -> String {
    let mut s = format!(
        "  Headnodes: {}{}\n",
        p.headnodes.len(),
        if p.headnodes.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                p.headnodes
                    .iter()
                    .map(|h| format!(
                        "{} {}, {} core instances",
                        h.hostname,
                        h.status,
                        h.instances.len()
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    );
    s += &format!(
        "  Binder:    {} member(s), {} running; quorum {}, HA {}\n",
        p.binder.members,
        p.binder.running,
        yes(p.binder.quorum()),
        yes(p.binder.ha())
    );
    s += &format!(
        "  Moray:     {} instance(s), {} running; HA {}\n",
        p.moray.members,
        p.moray.running,
        yes(p.moray.ha())
    );
    if p.shards.is_empty() {
        return s;
    }
    let mut t = table(&["SHARD", "PRIMARY", "SYNC", "ASYNCS", "LAG", "FREEZE"]);
    for sh in &p.shards {
        if let Some(e) = &sh.error {
            t.add_row(vec![
                sh.name.clone(),
                format!("not observed: {e}"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        let names = |role: &str| {
            let v: Vec<String> = sh.in_role(role).iter().map(|p| p.alias.clone()).collect();
            if v.is_empty() {
                "-".into()
            } else {
                v.join(",")
            }
        };
        let lag: Vec<String> = sh
            .peers
            .iter()
            .filter(|p| matches!(p.role.as_str(), "sync" | "async"))
            .map(|p| match p.lag_seconds {
                Some(l) => format!("{}={l:.1}s", p.alias),
                None => format!("{}=?", p.alias),
            })
            .collect();
        t.add_row(vec![
            sh.name.clone(),
            names("primary"),
            names("sync"),
            names("async"),
            if lag.is_empty() {
                "-".into()
            } else {
                lag.join(",")
            },
            match &sh.frozen {
                Some(r) => format!("frozen: {r}"),
                None if sh.one_node_write_mode => "one-node-write".into(),
                None => "-".into(),
            },
        ]);
    }
    s + &indent(&t)
}

fn ring(r: &RingView) -> String {
    let mut t = table(&["SHARD", "VNODES", "SHARE", "READ-ONLY"]);
    for sh in &r.shards {
        t.add_row(vec![
            sh.pnode.clone(),
            sh.vnodes.to_string(),
            format!("{:.1}%", sh.share),
            sh.read_only.to_string(),
        ]);
    }
    format!(
        "  {} vnodes, {} read-only; {}\n{}",
        r.vnodes,
        r.read_only,
        r.source,
        indent(&t)
    )
}

/// The whole screen.
pub fn render(o: &Overview) -> String {
    let mut s = format!("Store:    {}\n", o.store);
    s += &match &o.leader {
        Some(l) => format!("Leader:   {} since {}\n", l.identity, l.since),
        None => "Leader:   none (no controller leads)\n".into(),
    };
    s += &match &o.observed {
        Some(src) => format!("Observed: {src}\n"),
        None => "Observed: nothing (give --sapi, --vmapi, --cnapi and --imgapi for drift, HA posture and the deployed ring)\n".into(),
    };
    s += &format!(
        "As of:    {}\n\nDOCUMENTS\n{}",
        o.generated_at,
        documents(o)
    );
    if let Some(p) = &o.posture {
        s += &format!("\nHA POSTURE\n{}", posture(p));
    }
    if let Some(r) = &o.ring {
        s += &format!("\nRING\n{}", ring(r));
    }
    if !o.problems.is_empty() {
        s += "\nNOT OBSERVED\n";
        for p in &o.problems {
            s += &format!("  - {p}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::view::{ConditionView, Drift, Members, OpView};

    #[test]
    fn a_stuck_operation_says_where_and_why() {
        let o = Overview {
            generated_at: "2026-01-01T00:00:00Z".into(),
            store: "zookeeper 10.99.99.11:2181".into(),
            documents: vec![DocView {
                kind: "ManateeVersion".into(),
                name: "sdc".into(),
                generation: 2,
                observed_generation: Some(2),
                conditions: vec![ConditionView {
                    type_: "Blocked".into(),
                    status: "True".into(),
                    reason: "StepFailed".into(),
                    message: "reprovision-sync timed out".into(),
                    since: String::new(),
                }],
                drift: Drift::WouldAct("shard sdc: operation in flight".into()),
                operation: Some(OpView {
                    id: "op-1".into(),
                    kind: "manatee-rolling-upgrade".into(),
                    target: "sdc".into(),
                    phase: "Failed".into(),
                    current_step: Some("reprovision-sync".into()),
                    current_state: Some("Failed".into()),
                    current_message: None,
                    done: 2,
                    total: 7,
                    eta_seconds: Some(125),
                    started_at: None,
                    point_of_no_return: None,
                    past_point_of_no_return: false,
                    in_flight: true,
                }),
            }],
            posture: Some(Posture {
                binder: Members {
                    members: 3,
                    running: 1,
                },
                ..Posture::default()
            }),
            ..Overview::default()
        };
        let text = render(&o);
        for needle in [
            "Leader:   none",
            "ManateeVersion/sdc",
            "step reprovision-sync Failed, ETA 2m05s",
            "ManateeVersion/sdc Blocked: StepFailed: reprovision-sync timed out",
            "drift: shard sdc: operation in flight",
            "Binder:    3 member(s), 1 running; quorum NO, HA NO",
        ] {
            assert!(text.contains(needle), "no {needle:?} in\n{text}");
        }
    }
}
