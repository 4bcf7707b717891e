//! The runbook's rollback, derived from what the forward operation did:
//! each forward step that started is undone, in reverse runbook order.

use crds::status::StepState;

use super::plan::step;
use super::{Topology, TransplantAction, backup_name, migrate_name, onwm_reason};
use crate::operation::{Operation, PlannedStep};

/// The runbook's rollback, for whatever the forward operation did (steps
/// that started). `None` once the point of no return has started: then only
/// an approved reverse transplant or backup restore can go back.
pub fn rollback_plan(forward: &Operation<TransplantAction>) -> Option<Operation<TransplantAction>> {
    if !forward.status.can_roll_back() {
        return None;
    }
    let topo = forward.actions.iter().find_map(|a| match a {
        TransplantAction::RecordInitialState { topology } => Some(topology.clone()),
        _ => None,
    })?;
    let mut u = Undo {
        forward,
        shard: forward.status.target.clone(),
        op_id: &forward.status.id,
        topo,
        steps: Vec::new(),
    };
    u.onwm_state();
    u.v1_primary_and_sync();
    u.writes();
    u.asyncs();
    u.v2_instance();
    u.service_image();
    u.wait_v1();
    u.snapshots();
    Some(Operation::new(
        &format!("{}-rollback", u.op_id),
        "manatee-transplant-rollback",
        &u.shard,
        u.steps,
    ))
}

/// The rollback being built.
struct Undo<'a> {
    forward: &'a Operation<TransplantAction>,
    shard: String,
    op_id: &'a str,
    topo: Topology,
    steps: Vec<PlannedStep<TransplantAction>>,
}

impl Undo<'_> {
    /// Whether a forward step whose action matches `pred` started.
    fn started(&self, pred: impl Fn(&TransplantAction) -> bool) -> bool {
        self.forward
            .status
            .steps
            .iter()
            .zip(&self.forward.actions)
            .any(|(s, a)| s.state != StepState::Pending && pred(a))
    }

    fn push(&mut self, name: &str, description: String, touches: Vec<String>, a: TransplantAction) {
        self.steps.push(step(name, description, touches, a));
    }

    /// The ONWM state written for the v2 node goes (its sitter never ran).
    fn onwm_state(&mut self) {
        if self.started(|a| matches!(a, TransplantAction::WriteOnwmState { .. })) {
            let shard = self.shard.clone();
            self.push(
                "rollback-delete-state",
                "delete the cluster state tritonctl wrote for the v2 node (its sitter never ran)"
                    .into(),
                vec![shard.clone()],
                TransplantAction::DeleteState {
                    shard,
                    reason: onwm_reason(self.op_id),
                },
            );
        }
    }

    /// The v1 primary leaves ONWM; the v1 sync's sitter comes back.
    fn v1_primary_and_sync(&mut self) {
        let p = self.topo.primary.clone();
        if self.started(|a| {
            matches!(a, TransplantAction::PrimaryOnwm { .. })
                || matches!(a, TransplantAction::DisableSitter { zone } if *zone == p)
        }) {
            self.push(
                "rollback-primary",
                "v1 primary: svcadm enable config-agent, wait for oneNodeWriteMode: false in sitter.json, restart (enable) the sitter".into(),
                vec![p.clone()],
                TransplantAction::PrimaryLeaveOnwm { zone: p },
            );
        }
        if let Some(s) = self.topo.sync.clone()
            && self.started(|a| matches!(a, TransplantAction::DisableSitter { zone } if *zone == s))
        {
            self.push(
                "rollback-enable-sync",
                "svcadm enable manatee-sitter in the v1 sync".into(),
                vec![s.clone()],
                TransplantAction::EnableSitter { zone: s },
            );
        }
    }

    /// Morays back on.
    fn writes(&mut self) {
        if self.started(|a| matches!(a, TransplantAction::StopWrites)) {
            self.push(
                "rollback-start-writes",
                "svcadm enable every moray".into(),
                vec![],
                TransplantAction::StartWrites,
            );
        }
    }

    /// From the tail: a reprovisioned async back onto its v1 image, a
    /// stopped one's sitter back on.
    fn asyncs(&mut self) {
        let asyncs = self.topo.asyncs.clone();
        for (i, a) in asyncs.iter().enumerate().rev() {
            if self
                .started(|x| matches!(x, TransplantAction::ReprovisionV2 { zone, .. } if zone == a))
            {
                let image = self
                    .topo
                    .zones
                    .get(a)
                    .map(|z| z.1.clone())
                    .unwrap_or_default();
                self.push(
                    &format!("rollback-revert-async-{i}"),
                    format!("sapiadm reprovision async {a} back onto {image} with DISABLE_SITTER/ONE_NODE_WRITE_MODE cleared (it rebuilds from its upstream)"),
                    vec![a.clone()],
                    TransplantAction::RevertAsync { zone: a.clone(), image },
                );
            } else if self
                .started(|x| matches!(x, TransplantAction::DisableSitter { zone } if zone == a))
            {
                self.push(
                    &format!("rollback-enable-async-{i}"),
                    format!("svcadm enable manatee-sitter in async {a}"),
                    vec![a.clone()],
                    TransplantAction::EnableSitter { zone: a.clone() },
                );
            }
        }
    }

    /// A v2 instance created for the transplant is deleted.
    fn v2_instance(&mut self) {
        let created = self.forward.actions.iter().find_map(|a| match a {
            TransplantAction::CreateV2Instance { alias, .. } => Some(format!("alias:{alias}")),
            _ => None,
        });
        if let Some(key) = created
            && self.started(|a| matches!(a, TransplantAction::CreateV2Instance { .. }))
        {
            self.push(
                "rollback-delete-v2-instance",
                "delete the v2 instance created for the transplant".into(),
                vec![key.clone()],
                TransplantAction::RetireZone { zone: key },
            );
        }
    }

    /// The SAPI service back on the v1 image.
    fn service_image(&mut self) {
        if self.started(|a| matches!(a, TransplantAction::SetServiceImage { .. })) {
            let image = self.topo.service_image.clone();
            self.push(
                "rollback-service-image",
                format!("point the SAPI manatee service back at {image}"),
                vec![],
                TransplantAction::SetServiceImage {
                    shard: self.shard.clone(),
                    image,
                },
            );
        }
    }

    /// Every v1 peer back in the election, the primary taking writes.
    fn wait_v1(&mut self) {
        let n = self.topo.zones.len();
        self.push(
            "rollback-wait-v1",
            format!(
                "wait until the {n} v1 peers are back in the election and the primary takes writes"
            ),
            vec![],
            TransplantAction::WaitPeers {
                shard: self.shard.clone(),
                count: n,
            },
        );
    }

    /// The migrate and backup snapshots released.
    fn snapshots(&mut self) {
        let p = self.topo.primary.clone();
        for (which, name) in [
            ("migrate", migrate_name(self.op_id)),
            ("backup", backup_name(self.op_id)),
        ] {
            if self
                .started(|a| matches!(a, TransplantAction::Snapshot { name: x, .. } if *x == name))
            {
                self.push(
                    &format!("rollback-release-{which}"),
                    format!("destroy snapshot @{name}"),
                    vec![p.clone()],
                    TransplantAction::ReleaseSnapshot {
                        zone: p.clone(),
                        name,
                    },
                );
            }
        }
    }
}
