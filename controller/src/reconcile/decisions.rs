//! What a person answers, recorded for the controller to read: approvals
//! of steps that wait for one, one more attempt of a step stopped by a
//! timeout, and a transplant's cancel and its decisions past the point of
//! no return (`tritonctl approve`, `approve --option`, `cancel`).

use std::sync::Arc;

use coord::Coordination;
use crds::Kind;
use crds::status::StepState;
use reconcilers::manatee::ManateeAction;

use super::journal::{
    JournalError, load_journals, load_journals_of, transplant_journals as journals,
};
use crate::layout::approval_path;

/// Why an answer was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Coordination(#[from] coord::CoordError),
    /// The answer does not fit the operations as they stand; nothing was
    /// recorded (the message says what would, or what to do instead).
    #[error("{0}")]
    Refused(String),
}

/// The step name a cancel answers to (`cancels/<operation>`, or the older
/// `approvals/<operation>/cancel`).
pub const CANCEL_STEP: &str = "cancel";

/// Record approval for every operation step of a document that waits for one.
pub async fn approve(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Vec<String>, DecisionError> {
    let mut approved = Vec::new();
    // A step stopped by a timeout, in an operation of any kind: approve one
    // more attempt (the actions are not needed, so read them untyped).
    let mut retried = std::collections::HashSet::new();
    for (target, op, _) in load_journals_of::<serde_json::Value>(coord, kind, name).await? {
        if op.is_finished() {
            continue;
        }
        if let Some(s) = op
            .status
            .steps
            .iter()
            .find(|s| s.state == StepState::Failed)
        {
            let key = reconcilers::operation::retry_key(&s.name, s.attempts);
            let path = approval_path(&op.status.id, &key);
            coord.mkdirp(&path).await?;
            approved.push(format!(
                "{target}: retry of {} (attempt {}) ({})",
                s.name,
                s.attempts + 1,
                op.status.id
            ));
            retried.insert(op.status.id.clone());
        }
    }
    if kind != Kind::ManateeVersion {
        return Ok(approved);
    }
    for (shard, op, _) in load_journals(coord, kind, name).await? {
        if op.is_finished() || retried.contains(&op.status.id) {
            continue;
        }
        for (i, s) in op.status.steps.iter().enumerate() {
            if matches!(op.actions[i], ManateeAction::Approval { .. })
                && !matches!(s.state, StepState::Succeeded)
            {
                let path = approval_path(&op.status.id, &s.name);
                coord.mkdirp(&path).await?;
                approved.push(format!("{shard}: {} ({})", s.name, op.status.id));
                break;
            }
        }
    }
    approved.extend(approve_transplant(coord, name, None).await?);
    Ok(approved)
}

/// `tritonctl approve`: the transplant's pending approval step (the write
/// outage). A transplant stopped past its point of no return is not
/// approved this way: `option` goes to [`decide`], and a plain approve
/// leaves it alone.
pub async fn approve_transplant(
    coord: &Arc<dyn Coordination>,
    name: &str,
    option: Option<&str>,
) -> Result<Vec<String>, DecisionError> {
    use reconcilers::transplant::TransplantAction;
    if let Some(o) = option {
        return decide(coord, name, o).await;
    }
    let mut done = Vec::new();
    for (shard, j) in journals(coord, name).await? {
        if j.forward.is_finished() {
            continue;
        }
        let id = &j.forward.status.id;
        if j.stopped.is_some() {
            // Past the point of no return: only an explicit --option answers.
            continue;
        }
        for (i, s) in j.forward.status.steps.iter().enumerate() {
            if matches!(j.forward.actions[i], TransplantAction::Approval { .. })
                && s.state != StepState::Succeeded
            {
                let path = approval_path(id, &s.name);
                coord.mkdirp(&path).await?;
                done.push(format!("{shard}: {} ({id})", s.name));
                break;
            }
        }
    }
    Ok(done)
}

/// `tritonctl cancel`: roll back a transplant that has not reached its
/// point of no return. Past it, the cancel is refused with the options.
pub async fn cancel(
    coord: &Arc<dyn Coordination>,
    name: &str,
) -> Result<Vec<String>, DecisionError> {
    let mut done = Vec::new();
    for (shard, j) in journals(coord, name).await? {
        if j.forward.is_finished() {
            continue;
        }
        if !j.forward.status.can_roll_back() {
            return Err(DecisionError::Refused(
                reconcilers::transplant::after_pnr_message(
                    &j.forward,
                    &format!("{shard}: cancel refused"),
                )
                .replace("manateeversion/<name>", &format!("manateeversion/{name}")),
            ));
        }
        // Apart from approvals, so that ZooKeeper's ACLs let an operator
        // cancel without letting them approve (see `auth::policy`).
        let path = crate::layout::cancel_path(&j.forward.status.id);
        coord.mkdirp(&path).await?;
        done.push(format!(
            "{shard}: rollback requested ({})",
            j.forward.status.id
        ));
    }
    Ok(done)
}

/// The transplants of `name` stopped past their point of no return, with
/// the options (for `tritonctl approve` without `--option`).
pub async fn stopped(
    coord: &Arc<dyn Coordination>,
    name: &str,
) -> Result<Vec<String>, DecisionError> {
    Ok(journals(coord, name)
        .await?
        .into_iter()
        .filter(|(_, j)| !j.forward.is_finished())
        .filter_map(|(shard, j)| {
            let s = j.stopped.as_ref()?;
            Some(format!(
                "{shard}: the transplant {} is stopped past its point of no return (stop {} at step {}: {}); choose explicitly: tritonctl approve manateeversion/{name} --option resume|reverse-transplant|restore-backup",
                j.forward.status.id,
                s.seq,
                s.step + 1,
                s.name
            ))
        })
        .collect())
}

/// `tritonctl approve manateeversion/NAME --option OPTION`: a person's
/// decision for a transplant stopped past its point of no return. The
/// approval names the stop it answers, so it never carries over to a later
/// one. `resume` is recorded (the controller retries the failed step once);
/// `reverse-transplant` and `restore-backup` are refused with what they
/// would run: tritonctl does not automate them, and says so.
pub async fn decide(
    coord: &Arc<dyn Coordination>,
    name: &str,
    option: &str,
) -> Result<Vec<String>, DecisionError> {
    use reconcilers::transplant::{
        DECISIONS, decision_key, restore_backup_plan, reverse_transplant_plan,
    };
    if !DECISIONS.contains(&option) {
        return Err(DecisionError::Refused(format!(
            "--option {option}: not an option; choose one of {}",
            DECISIONS.join(", ")
        )));
    }
    let mut done = Vec::new();
    for (shard, j) in journals(coord, name).await? {
        if j.forward.is_finished() {
            continue;
        }
        let Some(stop) = &j.stopped else {
            continue;
        };
        let id = &j.forward.status.id;
        match option {
            "resume" => {
                let path = approval_path(id, &decision_key(stop.seq, option));
                coord.mkdirp(&path).await?;
                done.push(format!(
                    "{shard}: resume ({id}, stop {}): step {} ({}) will be retried once",
                    stop.seq,
                    stop.step + 1,
                    stop.name
                ));
            }
            other => {
                let plan = if other == "restore-backup" {
                    restore_backup_plan(&j.forward)
                } else {
                    reverse_transplant_plan(&j.forward)
                };
                return Err(DecisionError::Refused(format!(
                    "manateeversion/{name} {shard}: `{other}` is not automated; tritonctl refuses to approve it and recorded nothing (the transplant stays stopped). What it takes, by hand: {plan}"
                )));
            }
        }
    }
    if done.is_empty() {
        return Err(DecisionError::Refused(format!(
            "manateeversion/{name}: no transplant is stopped past its point of no return; --option answers only such a stop (see `tritonctl describe manateeversion/{name}`)"
        )));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tritonctl approve` on a HeadnodeSet whose HA step timed out records
    /// the approval of exactly the next attempt (not only ManateeVersions).
    #[tokio::test]
    async fn approve_allows_one_more_attempt_of_a_timed_out_step_of_any_kind() {
        use reconcilers::manatee_ha::HaAction;
        use reconcilers::operation::{Operation, PlannedStep, retry_key};
        let ens = coord::MemEnsemble::new();
        let c: std::sync::Arc<dyn coord::Coordination> = ens.connect();
        let mut op: Operation<HaAction> = Operation::new(
            "ha-lab-sdc-g1-test",
            "manatee-ha",
            "sdc",
            vec![PlannedStep {
                name: "wait-healthy".into(),
                description: "wait".into(),
                touches: vec![],
                irreversible: false,
                action: HaAction::WaitHealthy,
            }],
        );
        op.status.steps[0].state = crds::StepState::Failed;
        op.status.steps[0].attempts = 1;
        let dir = crate::layout::journal_dir(crds::Kind::HeadnodeSet, "lab");
        c.mkdirp(&dir).await.unwrap();
        c.create(
            &format!("{dir}/sdc"),
            &serde_json::to_vec(&op).unwrap(),
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
        let done = super::approve(&c, crds::Kind::HeadnodeSet, "lab")
            .await
            .unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let key = retry_key("wait-healthy", 1);
        assert!(
            c.exists(&approval_path("ha-lab-sdc-g1-test", &key))
                .await
                .unwrap()
                .is_some()
        );
    }
}
