//! The controller runtime: what turns stored documents into reconciles.
//!
//! Modelled on kube-runtime's scheduler/runner (see DESIGN.md "Runtime"),
//! re-implemented for ZooKeeper:
//!
//! - [`queue`]: the level-triggered work queue and the [`queue::Controller`]
//!   runner (one slot per key, earliest deadline wins, never two reconciles
//!   of one key at once, a global concurrency cap, per-key backoff, resync).
//! - [`triggers`]: ZooKeeper watches and API pollers turned into keys.
//! - [`leader`]: leader election with a fencing token ([`crate::store::Fence`]).
//! - [`events`]: bounded, streamable reconcile events.
//! - [`metrics`]: Prometheus metrics in an explicit registry.
//! - [`http`]: the server behind `/metrics` and `/healthz` (timeouts, a
//!   connection cap, loopback unless told otherwise).
//!
//! Keys are `"<Kind>/<name>"`, e.g. `ManateeVersion/sdc`.

pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod triggers;

pub use events::{Event, EventRecord, EventType, Events};
pub use leader::{LeaderElection, LeaderError, Leadership, LossReason};
pub use metrics::Metrics;
pub use queue::{Action, Config, Controller, WorkQueue};
pub use triggers::{TriggerStream, Triggers};

/// Calls that leave a ZooKeeper watch, run to completion in their own task
/// even when the caller stops waiting (a `select!` branch losing, a stream
/// dropped mid-call). zookeeper-client answers a watch call abandoned
/// mid-flight by sending RemoveWatches, a ZooKeeper 3.5 request that a 3.4
/// server (Triton's binder) answers by closing the connection. A finished
/// call hands its watch to coord's forwarder, which is always safe to drop.
pub(crate) mod detached {
    use std::future::Future;
    use std::sync::Arc;

    use coord::{CoordError, Coordination, Stat, Watch};

    async fn run<T, F>(call: F) -> coord::Result<T>
    where
        F: Future<Output = coord::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        match tokio::spawn(call).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime is shutting down.
            Err(_) => Err(CoordError::SessionClosed),
        }
    }

    pub(crate) fn exists_watch(
        coord: &Arc<dyn Coordination>,
        path: &str,
    ) -> impl Future<Output = coord::Result<(Option<Stat>, Watch)>> + Send + 'static {
        let (coord, path) = (coord.clone(), path.to_string());
        run(async move { coord.exists_watch(&path).await })
    }

    pub(crate) fn children_watch(
        coord: &Arc<dyn Coordination>,
        path: &str,
    ) -> impl Future<Output = coord::Result<(Vec<String>, Watch)>> + Send + 'static {
        let (coord, path) = (coord.clone(), path.to_string());
        run(async move { coord.children_watch(&path).await })
    }
}

/// The key of a document: `"<Kind>/<name>"`.
pub fn key(kind: crds::Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

/// The kind part of a key (`"ManateeVersion"` for `"ManateeVersion/sdc"`):
/// the metrics label, since names would make label cardinality unbounded.
pub fn key_kind(key: &str) -> &str {
    key.split_once('/').map_or(key, |(kind, _)| kind)
}

/// Split a key into its kind and name, if the kind is known.
pub fn parse_key(key: &str) -> Option<(crds::Kind, &str)> {
    let (kind, name) = key.split_once('/')?;
    let kind = crds::Kind::ALL.into_iter().find(|k| k.as_str() == kind)?;
    Some((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = key(crds::Kind::ManateeVersion, "sdc");
        assert_eq!(k, "ManateeVersion/sdc");
        assert_eq!(key_kind(&k), "ManateeVersion");
        assert_eq!(parse_key(&k), Some((crds::Kind::ManateeVersion, "sdc")));
        assert_eq!(parse_key("Nope/x"), None);
        assert_eq!(key_kind("bare"), "bare");
    }
}
