//! Operator pauses (`tritonctl pause|resume KIND/NAME`).
//!
//! A pause is a marker stored beside the document, at
//! `/tritonctl/v1/pauses/<kind>/<name>` (`{"by", "at", "reason"}`), not an
//! edit of the spec. Why: documents come from git; a later `apply` of the
//! unchanged git copy would silently overwrite a `spec.rollout.paused: true`
//! an operator set in an emergency. The marker is outside every document, so
//! no apply touches it, and it records who paused and when.
//!
//! The reconcile treats either as paused: `spec.rollout.paused` (a pause
//! decided in git, reviewed like any change) or the marker (an operator's
//! pause, lifted only by `tritonctl resume`). Paused means no step is
//! started or advanced: the reconcile returns before it plans or drives any
//! operation. A step whose action is already under way in the world (a
//! reprovision job) keeps running there; its completion is checked after
//! the resume. The `Paused` condition says which pause holds and, for the
//! marker, who set it and when.
//!
//! Deleting a document leaves its marker, on purpose: re-applying the
//! document does not un-pause it.

use std::sync::Arc;

use coord::{CoordError, Coordination, CreateMode, Expect};
use crds::Kind;
use serde::{Deserialize, Serialize};

pub use crate::layout::{pause_dir, pause_path};
use crate::runtime::Triggers;
use crate::store::StoreError;

/// Who paused a document, when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseMarker {
    /// `user@host` of the operator, or what `--by` said.
    pub by: String,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PauseMarker {
    pub fn new(by: impl Into<String>, reason: Option<String>) -> PauseMarker {
        PauseMarker {
            by: by.into(),
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .expect("the current time formats as RFC 3339"),
            reason,
        }
    }

    /// `paused by alice@hn0 at 2026-...: reason`.
    pub fn describe(&self) -> String {
        let mut s = format!("paused by {} at {}", self.by, self.at);
        if let Some(r) = &self.reason {
            s += &format!(": {r}");
        }
        s
    }
}

/// The current user as `user@host`, for `PauseMarker::by`.
pub fn current_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown-host".into()
    };
    format!("{user}@{host}")
}

fn corrupt(path: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        path: path.to_string(),
        message: format!("{e}; remove it with `tritonctl resume` once you checked it"),
    }
}

/// The marker of a document, if it is paused by an operator.
pub async fn get(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Option<PauseMarker>, StoreError> {
    let path = pause_path(kind, name);
    match coord.get(&path).await {
        Ok((data, _)) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| corrupt(&path, e)),
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What `pause` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paused {
    Now(PauseMarker),
    /// It was paused already; the first marker is kept.
    Already(PauseMarker),
}

/// Store a pause marker (a plain create: works on ZooKeeper 3.4). A second
/// pause keeps the first marker, so "who paused it" stays true.
pub async fn pause(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
    marker: PauseMarker,
) -> Result<Paused, StoreError> {
    let path = pause_path(kind, name);
    let data = serde_json::to_vec(&marker).expect("pause markers serialize");
    let created = match coord.create(&path, &data, CreateMode::Persistent).await {
        Err(CoordError::NoNode(_)) => {
            coord.mkdirp(&pause_dir(kind)).await?;
            coord.create(&path, &data, CreateMode::Persistent).await
        }
        other => other,
    };
    match created {
        Ok(_) => Ok(Paused::Now(marker)),
        Err(CoordError::NodeExists(_)) => match get(coord, kind, name).await? {
            Some(m) => Ok(Paused::Already(m)),
            // Resumed between our create and our read: try again.
            None => Box::pin(pause(coord, kind, name, marker)).await,
        },
        Err(e) => Err(e.into()),
    }
}

/// Remove the pause marker; returns the marker removed, `None` when there
/// was none.
pub async fn resume(
    coord: &Arc<dyn Coordination>,
    kind: Kind,
    name: &str,
) -> Result<Option<PauseMarker>, StoreError> {
    let path = pause_path(kind, name);
    let marker = match coord.get(&path).await {
        Ok((data, _)) => serde_json::from_slice(&data).ok(),
        Err(CoordError::NoNode(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match coord.delete(&path, Expect::Any).await {
        Ok(()) => Ok(Some(marker.unwrap_or(PauseMarker {
            by: "(unreadable marker)".into(),
            at: String::new(),
            reason: None,
        }))),
        Err(CoordError::NoNode(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Why a document is paused, or `None` when it is not: the `Paused`
/// condition's message.
pub fn paused_message(spec_paused: bool, marker: Option<&PauseMarker>) -> Option<String> {
    match (spec_paused, marker) {
        (_, Some(m)) if spec_paused => Some(format!(
            "{}; spec.rollout.paused is set too; no step will start",
            m.describe()
        )),
        (_, Some(m)) => Some(format!(
            "{} (tritonctl pause); no step will start until `tritonctl resume`",
            m.describe()
        )),
        (true, None) => Some("spec.rollout.paused is set; no step will start".into()),
        (false, None) => None,
    }
}

/// Make a pause or resume trigger a reconcile of the document: the
/// controller registers this beside its document watches (a paused
/// reconcile waits for a change, and a resume is that change).
pub fn register_triggers(triggers: &Triggers) {
    for kind in Kind::ALL {
        triggers.watch_dir(&pause_dir(kind), kind.as_str());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use coord::MemEnsemble;
    use crds::{ConditionStatus, ConditionType, Document};
    use reconcilers::error::WorldError;
    use reconcilers::manatee::{
        ImageInfo, ManateeAct, ManateeObserve, PeerObservation, ShardObservation,
    };
    use wire::manatee::{ClusterState, PeerIdent};

    use super::*;
    use crate::reconcile::{context, load_journals, reconcile_manatee};
    use crate::runtime::Action;
    use crate::store::Store;

    const OLD: &str = "b3a5c1d2-7e8f-4a9b-8c0d-1e2f3a4b5c60";
    const NEW: &str = "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716";

    /// A one-peer shard on the old image; records what it is asked to do.
    struct World {
        calls: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ManateeObserve for World {
        async fn observe(&self, shard: &str) -> Result<ShardObservation, WorldError> {
            let p = PeerIdent::with_default_ports("p", "10.0.0.1");
            Ok(ShardObservation {
                shard: shard.into(),
                state: Some(ClusterState::initial_onwm(p, "2026-01-01T00:00:00.000Z")),
                peers: vec![PeerObservation {
                    zone: "p".into(),
                    alias: "manatee-p".into(),
                    server: "cn-p".into(),
                    image: OLD.into(),
                    vm_state: "running".into(),
                    active: true,
                    pg_online: true,
                    lag_seconds: Some(0.0),
                    one_node_write_mode: false,
                }],
            })
        }
        async fn image(&self, _: &str) -> Result<Option<ImageInfo>, WorldError> {
            Ok(Some(ImageInfo {
                uuid: NEW.into(),
                name: "manatee".into(),
                version: "20251104T182201Z".into(),
                state: "active".into(),
                manatee_major: Some(2),
            }))
        }
        async fn approved(&self, _: &str, _: &str) -> Result<bool, WorldError> {
            Ok(false)
        }
    }

    #[async_trait]
    impl ManateeAct for World {
        async fn reprovision(&self, zone: &str, _: &str, _: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("reprovision {zone}"));
            Ok(())
        }
        async fn freeze(&self, _: &str, r: &str) -> Result<(), WorldError> {
            self.calls.lock().unwrap().push(format!("freeze {r}"));
            Ok(())
        }
        async fn unfreeze_own(&self, _: &str, r: &str) -> Result<(), WorldError> {
            self.calls.lock().unwrap().push(format!("unfreeze {r}"));
            Ok(())
        }
    }

    #[async_trait]
    impl reconcilers::manatee_ha::HaObserve for World {
        async fn find_created_peer(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<String>, WorldError> {
            self.calls.lock().unwrap().push("find_created_peer".into());
            Ok(None)
        }
        async fn resolve_servers(
            &self,
            names: &[String],
        ) -> Result<Vec<reconcilers::manatee_ha::DesiredServer>, WorldError> {
            self.calls.lock().unwrap().push("resolve_servers".into());
            Ok(names
                .iter()
                .map(|n| reconcilers::manatee_ha::DesiredServer {
                    name: n.clone(),
                    uuid: Some(format!("cn-{n}")),
                })
                .collect())
        }
    }

    #[async_trait]
    impl reconcilers::manatee_ha::HaAct for World {
        async fn create_peer(
            &self,
            _: &str,
            server: &str,
            _: &str,
            _: &str,
        ) -> Result<String, WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("create_peer {server}"));
            Ok("new".into())
        }
        async fn clear_one_node_write_mode(&self, zone: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("clear_onwm {zone}"));
            Ok(())
        }
        async fn restart_sitter(&self, zone: &str) -> Result<(), WorldError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("restart_sitter {zone}"));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_paused_headnodeset_plans_and_changes_nothing() {
        let ens = MemEnsemble::new();
        let store = Store::new(ens.connect());
        store.init().await.unwrap();
        let hs = serde_json::json!({
            "apiVersion": crds::API_VERSION,
            "kind": "HeadnodeSet",
            "metadata": {"name": "lab"},
            "spec": {"datacenter": "lab", "headnodes": ["hn0", "hn1", "hn2"], "primary": "hn0",
                     "haServices": {"binder": ["hn0", "hn1", "hn2"], "manatee": ["hn0", "hn1", "hn2"],
                                    "moray": ["hn0"]}},
        });
        store
            .apply(&[Document::from_value(Kind::HeadnodeSet, hs).unwrap()])
            .await
            .unwrap();
        let coord = store.coord().clone();
        pause(
            &coord,
            Kind::HeadnodeSet,
            "lab",
            PauseMarker::new("alice@hn0", None),
        )
        .await
        .unwrap();
        let cx = context(
            store.clone(),
            World {
                calls: Mutex::new(vec![]),
            },
            None,
            Some(Duration::from_millis(5)),
        );
        let action = tokio::time::timeout(
            Duration::from_secs(5),
            crate::reconcile::reconcile_headnodes(&cx, "lab"),
        )
        .await
        .expect("a paused reconcile returns at once")
        .unwrap();
        assert_eq!(action, Action::AwaitChange);
        assert!(
            cx.world.calls.lock().unwrap().is_empty(),
            "{:?}",
            cx.world.calls.lock().unwrap()
        );
        let st = store
            .status(Kind::HeadnodeSet, "lab")
            .await
            .unwrap()
            .unwrap();
        assert!(st.is_true(ConditionType::Paused));
        // Resumed, the same reconcile plans the growth to three peers.
        resume(&coord, Kind::HeadnodeSet, "lab").await.unwrap();
        // (It then drives steps against this fake world; stop it once it plans.)
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            crate::reconcile::reconcile_headnodes(&cx, "lab"),
        )
        .await;
        assert!(
            cx.world
                .calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c == "resolve_servers"),
            "a resumed HeadnodeSet reconciles again"
        );
    }

    fn doc(paused: bool) -> Document {
        let v = serde_json::json!({
            "apiVersion": crds::API_VERSION,
            "kind": "ManateeVersion",
            "metadata": {"name": "sdc"},
            "spec": {"shards": ["sdc"], "image": {"uuid": NEW}, "rollout": {"paused": paused}},
        });
        Document::from_value(Kind::ManateeVersion, v).unwrap()
    }

    #[tokio::test]
    async fn markers_round_trip_and_the_first_pauser_is_kept() {
        let ens = MemEnsemble::new();
        let coord: Arc<dyn Coordination> = ens.connect();
        assert_eq!(
            get(&coord, Kind::ManateeVersion, "sdc").await.unwrap(),
            None
        );
        let a = PauseMarker::new("alice@hn0", Some("incident 42".into()));
        let b = PauseMarker::new("bob@hn1", None);
        assert_eq!(
            pause(&coord, Kind::ManateeVersion, "sdc", a.clone())
                .await
                .unwrap(),
            Paused::Now(a.clone())
        );
        assert_eq!(
            pause(&coord, Kind::ManateeVersion, "sdc", b).await.unwrap(),
            Paused::Already(a.clone())
        );
        // Other kinds and names are not paused.
        assert_eq!(get(&coord, Kind::ShardTopology, "sdc").await.unwrap(), None);
        assert_eq!(
            resume(&coord, Kind::ManateeVersion, "sdc").await.unwrap(),
            Some(a)
        );
        assert_eq!(
            resume(&coord, Kind::ManateeVersion, "sdc").await.unwrap(),
            None
        );
    }

    #[test]
    fn the_condition_message_names_every_pause_that_holds() {
        let m = PauseMarker {
            by: "alice@hn0".into(),
            at: "2026-11-22T12:00:00Z".into(),
            reason: Some("incident 42".into()),
        };
        assert_eq!(paused_message(false, None), None);
        assert!(
            paused_message(true, None)
                .unwrap()
                .contains("spec.rollout.paused")
        );
        let msg = paused_message(false, Some(&m)).unwrap();
        assert!(
            msg.contains("alice@hn0")
                && msg.contains("2026-11-22T12:00:00Z")
                && msg.contains("incident 42"),
            "{msg}"
        );
        let both = paused_message(true, Some(&m)).unwrap();
        assert!(both.contains("alice@hn0") && both.contains("spec.rollout.paused"));
    }

    /// The marker stops the reconcile from starting any step, an `apply` of
    /// the unchanged (unpaused) document does not lift it, and `resume` does.
    #[tokio::test]
    async fn a_pause_marker_stops_steps_and_survives_apply_until_resume() {
        let ens = MemEnsemble::new();
        let store = Store::new(ens.connect());
        store.init().await.unwrap();
        store.apply(&[doc(false)]).await.unwrap();
        let coord = store.coord().clone();
        pause(
            &coord,
            Kind::ManateeVersion,
            "sdc",
            PauseMarker::new("alice@hn0", Some("incident 42".into())),
        )
        .await
        .unwrap();
        let world = World {
            calls: Mutex::new(vec![]),
        };
        let cx = context(store.clone(), world, None, Some(Duration::from_millis(5)));

        for _ in 0..2 {
            let action = reconcile_manatee(&cx, "sdc").await.unwrap();
            assert_eq!(action, Action::AwaitChange);
            // The git copy applied again (spec.rollout.paused false) keeps the pause.
            store.apply(&[doc(false)]).await.unwrap();
        }
        assert!(cx.world.calls.lock().unwrap().is_empty());
        assert!(
            load_journals(&coord, Kind::ManateeVersion, "sdc")
                .await
                .unwrap()
                .is_empty(),
            "no operation was planned while paused"
        );
        let status = store
            .status(Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .unwrap();
        let c = status.condition(ConditionType::Paused).unwrap();
        assert_eq!(c.status, ConditionStatus::True);
        assert!(c.message.contains("alice@hn0"), "{}", c.message);

        resume(&coord, Kind::ManateeVersion, "sdc").await.unwrap();
        reconcile_manatee(&cx, "sdc").await.unwrap();
        let journals = load_journals(&coord, Kind::ManateeVersion, "sdc")
            .await
            .unwrap();
        assert_eq!(journals.len(), 1, "resumed: the upgrade is planned");
        assert!(
            journals[0].1.status.steps.iter().any(|s| s.attempts > 0),
            "resumed: a step started"
        );
        let status = store
            .status(Kind::ManateeVersion, "sdc")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            status.condition(ConditionType::Paused).unwrap().status,
            ConditionStatus::False
        );
    }

    /// The spec flag alone pauses too.
    #[tokio::test]
    async fn spec_paused_alone_also_stops_steps() {
        let ens = MemEnsemble::new();
        let store = Store::new(ens.connect());
        store.init().await.unwrap();
        store.apply(&[doc(true)]).await.unwrap();
        let cx = context(
            store.clone(),
            World {
                calls: Mutex::new(vec![]),
            },
            None,
            Some(Duration::from_millis(5)),
        );
        assert_eq!(
            reconcile_manatee(&cx, "sdc").await.unwrap(),
            Action::AwaitChange
        );
        assert!(
            load_journals(store.coord(), Kind::ManateeVersion, "sdc")
                .await
                .unwrap()
                .is_empty()
        );
    }
}
