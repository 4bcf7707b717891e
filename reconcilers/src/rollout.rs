//! The rollout schedule of a ManateeVersion: which shard's operation starts
//! now and which waits, from the spec's order, canary and parallelism, the
//! operations in flight and each shard's plan.
//!
//! Pure and written once: the controller asks it what to start, the change
//! review (`tritonctl diff`) asks it what would start, and only words differ.

use std::collections::BTreeMap;

use crds::manatee::ManateeVersionSpec;

/// What planning a shard (`plan_shard`) answered, as the schedule needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planned {
    /// Every peer runs the image.
    UpToDate,
    /// An operation is planned and may start.
    Upgrade,
    /// Planning refused the shard (or it cannot be started, e.g. another
    /// document holds its lock): it takes no slot.
    Refused,
    /// Not planned here: not observed, or another strategy (a transplant)
    /// handles it. It takes no slot and is not up to date.
    Unplanned,
}

/// When a shard's operation starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    StartNow,
    /// The canary must be up to date first.
    WaitForCanary {
        canary: String,
    },
    /// Every one of the `parallelism` slots is taken.
    WaitForSlot {
        parallelism: usize,
    },
    /// An operation is already running on the shard.
    InFlight,
    UpToDate,
    Refused,
    Unplanned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub shard: String,
    pub decision: Decision,
}

/// Shards in rollout order: the canary, then `rollout.order`, then the rest
/// of `shards`, each once.
pub fn order(spec: &ManateeVersionSpec) -> Vec<String> {
    let mut out: Vec<String> = spec.rollout.canary.iter().cloned().collect();
    for s in spec.rollout.order.iter().chain(&spec.shards) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Every shard of `spec` in rollout order with its decision.
///
/// `in_flight` names the shard of each unfinished operation of the document
/// (each takes a slot of `rollout.parallelism`, at least 1); `plans` holds
/// the plan of every other shard (a shard missing is [`Planned::Unplanned`]).
/// The canary goes first and alone: an upgrade of any other shard waits
/// until the canary's plan is up to date. A caller that cannot start a
/// shard it was told to start (its lock is held) marks it
/// [`Planned::Refused`] and asks again: the freed slot goes to the next one.
pub fn schedule(
    spec: &ManateeVersionSpec,
    in_flight: &[String],
    plans: &BTreeMap<String, Planned>,
) -> Vec<Scheduled> {
    let parallelism = spec.rollout.parallelism.max(1) as usize;
    let mut running = in_flight.len();
    let canary_ready = |canary: &String| {
        !in_flight.contains(canary) && plans.get(canary) == Some(&Planned::UpToDate)
    };
    order(spec)
        .into_iter()
        .map(|shard| {
            let decision = if in_flight.contains(&shard) {
                Decision::InFlight
            } else {
                match plans.get(&shard).copied().unwrap_or(Planned::Unplanned) {
                    Planned::UpToDate => Decision::UpToDate,
                    Planned::Refused => Decision::Refused,
                    Planned::Unplanned => Decision::Unplanned,
                    Planned::Upgrade => match &spec.rollout.canary {
                        Some(c) if c != &shard && !canary_ready(c) => {
                            Decision::WaitForCanary { canary: c.clone() }
                        }
                        _ if running < parallelism => {
                            running += 1;
                            Decision::StartNow
                        }
                        _ => Decision::WaitForSlot { parallelism },
                    },
                }
            };
            Scheduled { shard, decision }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rollout: serde_json::Value) -> ManateeVersionSpec {
        serde_json::from_value(serde_json::json!({
            "shards": ["a", "b", "c", "d"],
            "image": {"uuid": "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716"},
            "rollout": rollout,
        }))
        .unwrap()
    }

    fn plans(p: &[(&str, Planned)]) -> BTreeMap<String, Planned> {
        p.iter().map(|(s, x)| (s.to_string(), *x)).collect()
    }

    fn decisions(s: &[Scheduled]) -> Vec<(&str, Decision)> {
        s.iter()
            .map(|x| (x.shard.as_str(), x.decision.clone()))
            .collect()
    }

    const ALL_UPGRADE: [(&str, Planned); 4] = [
        ("a", Planned::Upgrade),
        ("b", Planned::Upgrade),
        ("c", Planned::Upgrade),
        ("d", Planned::Upgrade),
    ];

    #[test]
    fn order_is_canary_then_listed_order_then_the_rest_each_once() {
        let s = spec(serde_json::json!({"canary": "c", "order": ["d", "c", "b"]}));
        assert_eq!(order(&s), vec!["c", "d", "b", "a"]);
        let s = spec(serde_json::json!({}));
        assert_eq!(order(&s), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn one_slot_starts_the_first_upgrade_and_the_rest_wait_for_it() {
        let s = spec(serde_json::json!({}));
        let got = schedule(&s, &[], &plans(&ALL_UPGRADE));
        let slot = Decision::WaitForSlot { parallelism: 1 };
        assert_eq!(
            decisions(&got),
            vec![
                ("a", Decision::StartNow),
                ("b", slot.clone()),
                ("c", slot.clone()),
                ("d", slot),
            ]
        );
    }

    #[test]
    fn parallelism_counts_operations_in_flight_and_refusals_take_no_slot() {
        let s = spec(serde_json::json!({"parallelism": 2, "order": ["d"]}));
        let p = plans(&[
            ("a", Planned::Refused),
            ("b", Planned::Upgrade),
            ("c", Planned::Upgrade),
        ]);
        let got = schedule(&s, &["d".to_string()], &p);
        assert_eq!(
            decisions(&got),
            vec![
                ("d", Decision::InFlight),
                ("a", Decision::Refused),
                ("b", Decision::StartNow),
                ("c", Decision::WaitForSlot { parallelism: 2 }),
            ]
        );
        // Zero is read as one.
        let s = spec(serde_json::json!({"parallelism": 0}));
        let got = schedule(&s, &[], &plans(&ALL_UPGRADE));
        assert_eq!(got[1].decision, Decision::WaitForSlot { parallelism: 1 });
    }

    #[test]
    fn the_canary_goes_alone_until_it_is_up_to_date() {
        let s = spec(serde_json::json!({"canary": "c", "parallelism": 4}));
        let wait = Decision::WaitForCanary { canary: "c".into() };
        let got = schedule(&s, &[], &plans(&ALL_UPGRADE));
        assert_eq!(
            decisions(&got),
            vec![
                ("c", Decision::StartNow),
                ("a", wait.clone()),
                ("b", wait.clone()),
                ("d", wait.clone()),
            ]
        );
        // While the canary's operation runs, the others still wait.
        let mut p = plans(&ALL_UPGRADE);
        p.remove("c");
        let got = schedule(&s, &["c".to_string()], &p);
        assert_eq!(got[0].decision, Decision::InFlight);
        assert!(got[1..].iter().all(|x| x.decision == wait));
        // A refused or unplanned canary holds them too.
        for c in [Planned::Refused, Planned::Unplanned] {
            p.insert("c".into(), c);
            let got = schedule(&s, &[], &p);
            assert!(got[1..].iter().all(|x| x.decision == wait));
        }
        // Once the canary is up to date the rest start, up to parallelism.
        p.insert("c".into(), Planned::UpToDate);
        let got = schedule(&s, &[], &p);
        assert_eq!(got[0].decision, Decision::UpToDate);
        assert!(got[1..].iter().all(|x| x.decision == Decision::StartNow));
    }

    #[test]
    fn a_shard_missing_from_the_plans_is_unplanned() {
        let s = spec(serde_json::json!({}));
        let got = schedule(&s, &[], &plans(&[("b", Planned::UpToDate)]));
        assert_eq!(
            decisions(&got),
            vec![
                ("a", Decision::Unplanned),
                ("b", Decision::UpToDate),
                ("c", Decision::Unplanned),
                ("d", Decision::Unplanned),
            ]
        );
    }
}
