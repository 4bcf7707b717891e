//! The transplant runner against a fake world.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use crds::status::StepState;

use super::{TransplantAct, TransplantObserve, TransplantRunner};
use crate::clock::{Clock, ManualClock, rfc3339};
use crate::error::{WaitReason, WorldError};
use crate::operation::{Advance, Journal, Operation, PlannedStep, StepRunner, advance};
use crate::transplant::{MorayObs, TransplantAction, TransplantObs};

const OLD_MORAY: &str = "master-20140101T000000Z";
const NEW_MORAY: &str = "master-20150101T000000Z";

#[derive(Default)]
struct Fake {
    obs: Mutex<TransplantObs>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn call(&self, c: String) -> Result<(), WorldError> {
        self.calls.lock().unwrap().push(c);
        Ok(())
    }
}

#[async_trait]
impl TransplantObserve for Fake {
    async fn observe(&self, _: &str) -> Result<TransplantObs, WorldError> {
        Ok(self.obs.lock().unwrap().clone())
    }
    async fn resolve(&self, _: &str, _: &str) -> Result<Option<String>, WorldError> {
        Ok(None)
    }
    async fn approved(&self, _: &str, _: &str) -> Result<bool, WorldError> {
        Ok(false)
    }
}

#[async_trait]
impl TransplantAct for Fake {
    async fn svcadm(&self, zone: &str, enable: bool, fmri: &str) -> Result<(), WorldError> {
        self.call(format!("svcadm {zone} {enable} {fmri}"))
    }
    async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
        self.call(format!("restart {zone}"))
    }
    async fn set_sitter_onwm(&self, zone: &str, on: bool) -> Result<(), WorldError> {
        self.call(format!("onwm {zone} {on}"))
    }
    async fn set_metadata(&self, zone: &str, k: &str, v: Option<bool>) -> Result<(), WorldError> {
        self.call(format!("metadata {zone} {k} {v:?}"))
    }
    async fn set_service_image(&self, shard: &str, image: &str) -> Result<(), WorldError> {
        self.call(format!("service-image {shard} {image}"))
    }
    async fn reprovision(&self, zone: &str, image: &str) -> Result<(), WorldError> {
        self.call(format!("reprovision {zone} {image}"))
    }
    async fn create_instance(
        &self,
        _: &str,
        server: &str,
        alias: &str,
        _: &[(&str, bool)],
    ) -> Result<(), WorldError> {
        self.call(format!("create {alias} on {server}"))
    }
    async fn delete_instance(&self, zone: &str) -> Result<(), WorldError> {
        self.call(format!("delete {zone}"))
    }
    async fn snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError> {
        self.call(format!("snapshot {zone}@{name}"))
    }
    async fn destroy_snapshot(&self, zone: &str, name: &str) -> Result<(), WorldError> {
        self.call(format!("destroy {zone}@{name}"))
    }
    async fn destroy_dataset(&self, zone: &str) -> Result<(), WorldError> {
        self.call(format!("destroy-dataset {zone}"))
    }
    async fn send(&self, from: &str, snapshot: &str, to: &str) -> Result<(), WorldError> {
        self.call(format!("send {from}@{snapshot} {to}"))
    }
    async fn set_moray(&self, zone: &str, enable: bool) -> Result<(), WorldError> {
        self.call(format!("moray {zone} {enable}"))
    }
    async fn create_onwm_state(&self, shard: &str, zone: &str, _: &str) -> Result<(), WorldError> {
        self.call(format!("onwm-state {shard} {zone}"))
    }
    async fn delete_own_state(&self, shard: &str, _: &str) -> Result<(), WorldError> {
        self.call(format!("delete-state {shard}"))
    }
    async fn unfreeze_own(&self, shard: &str, _: &str) -> Result<(), WorldError> {
        self.call(format!("unfreeze {shard}"))
    }
}

/// A journal that keeps nothing (the test looks at the operation itself).
struct Discard;

#[async_trait]
impl Journal<TransplantAction> for Discard {
    async fn save(&self, _: &Operation<TransplantAction>) -> Result<(), WorldError> {
        Ok(())
    }
}

fn moray(zone: &str, version: &str, enabled: bool) -> MorayObs {
    MorayObs {
        zone: zone.into(),
        server: "hn0".into(),
        image_version: version.into(),
        enabled,
    }
}

fn upgrade(zone: &str) -> TransplantAction {
    TransplantAction::UpgradeMoray {
        zone: zone.into(),
        image: "moray-new".into(),
    }
}

#[tokio::test]
async fn a_resumed_moray_upgrade_whose_call_never_went_out_keeps_one_moray_serving() {
    // m1 is old and still serving; the only other moray, m0, went offline
    // while the controller was down.
    let w = Fake::default();
    *w.obs.lock().unwrap() = TransplantObs {
        shard: "1".into(),
        morays: vec![moray("m0", NEW_MORAY, false), moray("m1", OLD_MORAY, true)],
        ..Default::default()
    };
    let clock = ManualClock::new(time::macros::datetime!(2026-01-06 09:00 UTC));
    let r = TransplantRunner {
        world: &w,
        shard: "1".into(),
        // A step that acts would time out at once: the test never hangs.
        step_timeout: Duration::ZERO,
        send_timeout: Duration::ZERO,
        clock: &clock,
    };
    let mut op = Operation::new(
        "op1",
        "manatee-transplant",
        "1",
        vec![PlannedStep {
            name: "upgrade-moray-m1".into(),
            description: "upgrade moray m1".into(),
            touches: vec![],
            irreversible: false,
            action: upgrade("m1"),
        }],
    );
    // Killed after journaling the step Running, before m1 was disabled.
    let s = &mut op.status.steps[0];
    s.state = StepState::Running;
    s.attempts = 1;
    s.started_at = Some(rfc3339(clock.now() - Duration::from_secs(60)));
    let out = advance(&mut op, &r, &Discard, &clock, Duration::from_millis(1))
        .await
        .unwrap();
    assert!(
        matches!(
            &out,
            Advance::Waiting {
                reason: WaitReason::Moray,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(
        w.calls.lock().unwrap().is_empty(),
        "the last moray was disabled"
    );
    // Once m1 is disabled the call went out: resumed then, it is not gated
    // again (its own disruption would close the gate).
    w.obs.lock().unwrap().morays[1].enabled = false;
    assert!(r.dispatched(&op.status, 0, &upgrade("m1")).await.unwrap());
    // And once it is compatible it is done, whatever else is offline.
    w.obs.lock().unwrap().morays[1].image_version = NEW_MORAY.into();
    assert!(r.dispatched(&op.status, 0, &upgrade("m1")).await.unwrap());
}
