//! The long-running controller: what `tritonctl controller` runs (and what
//! `tritonctl demo` runs in-process).
//!
//! [`Daemon::run`] on one coordination session:
//!
//! 1. initialises the store layout and serves `/metrics` and `/healthz`
//!    (when an address is given) from the start, so a standby is observable;
//! 2. campaigns for leadership and waits until elected;
//! 3. builds the Triton clients with a [`MutationGuard`] that confirms
//!    leadership with ZooKeeper right before every HTTP mutation, and the
//!    reconcile contexts with the leader's fence for every ZooKeeper write;
//! 4. feeds the work queue from triggers: watches on every document kind,
//!    on each manatee shard's `state` and `election` nodes (registered by the
//!    reconciler once it knows the shards), and SAPI/VMAPI pollers with
//!    change detection (they have no watch);
//! 5. dispatches each key to the reconciler registered for its kind
//!    ([`Dispatch`]);
//! 6. stops on the shutdown future (SIGTERM/SIGINT in the CLI): no new
//!    reconcile starts, the running ones get a grace period, then leadership
//!    is resigned so a standby takes over at once.
//!
//! **Leadership loss ends the daemon with an error** rather than
//! re-campaigning in-process. Losing leadership almost always means the
//! session expired, and an expired session is terminal (see
//! [`crate::runtime::leader`]): a new campaign needs a new session, new
//! trigger watchers and new clients. Rebuilding all of that in-process would
//! duplicate what a process restart does with no state carried over, and
//! the reconciles still in flight could not be trusted anyway. So the
//! daemon aborts its reconciles at once (every write they could still make
//! is fenced or guarded, and their journals let the next leader resume),
//! and returns [`DaemonError::LeadershipLost`]; the CLI exits with status 3
//! and the supervisor (SMF, systemd) starts a fresh process, which
//! campaigns again. controller-runtime does the same ("leader election
//! lost" exits the manager).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coord::Coordination;
use crds::{Document, Kind};
use tokio_util::sync::CancellationToken;

use crate::clients::{Endpoints, MutationGuard, Timeouts, Triton};
use crate::reconcile::headnodes::HeadnodesKind;
use crate::reconcile::manatee_version::ManateeVersionKind;
use crate::reconcile::{Context, KindReconcile, context, run};
use crate::runtime::events::{Event, Events};
use crate::runtime::http::{HttpLimits, NotLoopback, check_bind};
use crate::runtime::leader::{
    IgnoredCandidate, IgnoredHook, LeaderElection, LeaderError, Leadership, LossReason,
};
use crate::runtime::metrics::Metrics;
use crate::runtime::queue::{Action, Config, Controller};
use crate::runtime::triggers::{Triggers, fingerprint};
use crate::store::Store;
use crate::world::manatee::TritonManatee;

/// How to run a controller.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub endpoints: Endpoints,
    /// Stored in the election node: who leads (host and pid by default).
    pub identity: String,
    /// How often SAPI and VMAPI are polled for changes.
    pub poll_interval: Duration,
    /// How often a step's completion check polls (None: the engine default).
    pub step_poll: Option<Duration>,
    /// Reconciles running at once.
    pub concurrency: usize,
    /// Where `/metrics` and `/healthz` are served; None serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Serve them on an address that is not loopback.
    pub metrics_allow_remote: bool,
    /// Timeouts and connection cap of that server.
    pub http_limits: HttpLimits,
    /// How long running reconciles may go on after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Re-queue every known key this often.
    pub resync: Option<Duration>,
    /// How long the Triton clients wait for each kind of call.
    pub timeouts: Timeouts,
    /// Where the web view is served (`crate::web`); None serves nothing.
    pub web_addr: Option<SocketAddr>,
    /// Serve it on an address that is not loopback.
    pub web_allow_remote: bool,
    /// How the web view names the store (`zookeeper HOSTS`).
    pub store_label: String,
}

impl DaemonConfig {
    pub fn new(endpoints: Endpoints) -> DaemonConfig {
        DaemonConfig {
            endpoints,
            identity: default_identity(),
            poll_interval: Duration::from_secs(30),
            step_poll: None,
            concurrency: 4,
            metrics_addr: None,
            metrics_allow_remote: false,
            http_limits: HttpLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            resync: Some(Duration::from_secs(600)),
            timeouts: Timeouts::default(),
            web_addr: None,
            web_allow_remote: false,
            store_label: "ZooKeeper".into(),
        }
    }
}

/// `tritonctl@<hostname> pid <pid>`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("tritonctl@{host} pid {}", std::process::id())
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("initialising the store: {0}")]
    Store(String),
    #[error(
        "serving metrics on {addr}: {source} (is another controller using that address? pick another with --metrics-addr)"
    )]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    MetricsNotLoopback(#[from] NotLoopback),
    #[error(
        "serving the web view on {addr}: {source} (is something else using that address? pick another with --web-addr)"
    )]
    Web {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    WebNotLoopback(#[from] crate::web::NotLoopback),
    #[error("leader campaign failed: {0}")]
    Campaign(LeaderError),
    #[error("leadership lost ({0}); exiting so that the supervisor starts a fresh controller")]
    LeadershipLost(LossReason),
}

/// How the daemon stopped when it stopped cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Shutdown was asked for while campaigning (never led).
    BeforeLeading,
    /// Shutdown was asked for while leading; leadership was resigned.
    Resigned,
}

/// What the daemon is doing, for `/healthz` and for callers (the demo
/// prints the election).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    /// Waiting to be elected.
    Standby,
    /// Leading, with this election node.
    Leading(String),
    Stopping,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Standby => "standby",
            Phase::Leading(_) => "leading",
            Phase::Stopping => "stopping",
        }
    }
}

/// Leadership checked with ZooKeeper right before every HTTP mutation.
pub struct LeaderGuard(pub Arc<Leadership>);

#[async_trait]
impl MutationGuard for LeaderGuard {
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

/// The reconciler of one document kind.
#[async_trait]
pub trait KindReconciler: Send + Sync + 'static {
    /// Reconcile the document `name` (re-read from the store; it may be gone).
    async fn reconcile(&self, name: &str) -> Result<Action, String>;
}

/// Keys to reconcilers, by kind. A kind with no reconciler is logged once
/// and left alone (another engineer's strategy may not be wired yet).
#[derive(Default, Clone)]
pub struct Dispatch {
    by_kind: HashMap<Kind, Arc<dyn KindReconciler>>,
    unhandled: Arc<Mutex<HashSet<Kind>>>,
}

impl Dispatch {
    pub fn register(&mut self, kind: Kind, r: Arc<dyn KindReconciler>) -> &mut Self {
        self.by_kind.insert(kind, r);
        self
    }

    /// Register a [`KindReconcile`] for its kind, on `cx`.
    pub fn add<W, K>(&mut self, cx: Arc<Context<W>>, kind: K) -> &mut Self
    where
        W: Send + Sync + 'static,
        K: KindReconcile<W> + 'static,
    {
        self.register(K::KIND, Arc::new(Registered { cx, kind }))
    }

    pub fn kinds(&self) -> Vec<Kind> {
        let mut v: Vec<Kind> = self.by_kind.keys().copied().collect();
        v.sort_by_key(|k| k.as_str());
        v
    }

    /// Reconcile one queue key (`"<Kind>/<name>"`).
    pub async fn reconcile(&self, key: &str) -> Result<Action, String> {
        let Some((kind, name)) = crate::runtime::parse_key(key) else {
            tracing::warn!(key, "not a document key; ignored");
            return Ok(Action::AwaitChange);
        };
        match self.by_kind.get(&kind) {
            Some(r) => r.reconcile(name).await,
            None => {
                if self.unhandled.lock().unwrap().insert(kind) {
                    tracing::info!(
                        kind = kind.as_str(),
                        "no reconciler for this kind yet; its documents are stored but not acted on"
                    );
                }
                Ok(Action::AwaitChange)
            }
        }
    }
}

/// `ManateeVersion`: registers the shards' ZooKeeper nodes and a SAPI/VMAPI
/// poller as triggers of its key, then runs [`ManateeVersionKind`].
pub struct ManateeReconciler {
    pub cx: Arc<Context<TritonManatee>>,
    pub triggers: Triggers,
    pub poll_interval: Duration,
    polled: Mutex<HashSet<String>>,
}

impl ManateeReconciler {
    pub fn new(
        cx: Arc<Context<TritonManatee>>,
        triggers: Triggers,
        poll_interval: Duration,
    ) -> ManateeReconciler {
        ManateeReconciler {
            cx,
            triggers,
            poll_interval,
            polled: Mutex::default(),
        }
    }

    /// Watch each shard's state and election nodes, and poll the APIs that
    /// have no watch, for this document's key.
    fn register_triggers(&self, name: &str, shards: &[String]) {
        let key = crate::runtime::key(Kind::ManateeVersion, name);
        let wanted: HashSet<String> = shards
            .iter()
            .flat_map(|s| {
                [
                    wire::manatee::state_path(s),
                    wire::manatee::election_path(s),
                ]
            })
            .collect();
        for path in self.triggers.watched_paths(&key) {
            if !wanted.contains(&path) {
                self.triggers.unwatch_path(&path, &key);
            }
        }
        for path in &wanted {
            self.triggers.watch_path(path, &key);
        }
        if self.polled.lock().unwrap().insert(key.clone()) {
            let triton = self.cx.world.triton.clone();
            let roles: Vec<&'static str> = if shards.iter().any(|s| s == "sdc") {
                vec!["manatee", "postgres"]
            } else {
                vec!["postgres"]
            };
            self.triggers.poll(self.poll_interval, key, move || {
                let (triton, roles) = (triton.clone(), roles.clone());
                async move { api_fingerprint(&triton, &roles).await }
            });
        }
    }
}

/// What a manatee reconcile depends on outside ZooKeeper: the zones (VMAPI:
/// state, image, server) and the SAPI instances of the roles.
async fn api_fingerprint(triton: &Triton, roles: &[&str]) -> Result<u64, String> {
    let mut seen: Vec<String> = Vec::new();
    for role in roles {
        // Change detection only: an unreadable record counts by its raw
        // form, so a change to it still triggers a reconcile.
        let (vms, odd) = triton
            .vmapi
            .vms(&[("tag.smartdc_role", role.to_string())])
            .await
            .map_err(|e| e.to_string())?
            .lenient();
        seen.extend(odd.iter().map(|o| format!("odd {}", o.raw)));
        for vm in vms {
            seen.push(format!(
                "vm {} {} {:?} {:?}",
                vm.uuid,
                vm.state.as_str(),
                vm.image_uuid,
                vm.server_uuid
            ));
        }
    }
    for app in ["sdc", "manta"] {
        let Ok(apps) = triton.sapi.applications(app).await else {
            continue;
        };
        let (apps, odd) = apps.lenient();
        seen.extend(odd.iter().map(|o| format!("odd {}", o.raw)));
        for a in apps {
            let (svcs, odd) = triton
                .sapi
                .services(&a.uuid, None)
                .await
                .map_err(|e| e.to_string())?
                .lenient();
            seen.extend(odd.iter().map(|o| format!("odd {}", o.raw)));
            for svc in svcs {
                if !roles.contains(&svc.name.as_str()) {
                    continue;
                }
                let (insts, odd) = triton
                    .sapi
                    .instances(&svc.uuid)
                    .await
                    .map_err(|e| e.to_string())?
                    .lenient();
                seen.extend(odd.iter().map(|o| format!("odd {}", o.raw)));
                for i in insts {
                    seen.push(format!(
                        "inst {} {}",
                        i.uuid,
                        serde_json::to_string(&i.params).unwrap_or_default()
                    ));
                }
            }
        }
    }
    seen.sort();
    Ok(fingerprint(&seen))
}

#[async_trait]
impl KindReconciler for ManateeReconciler {
    async fn reconcile(&self, name: &str) -> Result<Action, String> {
        if let Ok(Some(Document::ManateeVersion(doc))) =
            self.cx.store.get(Kind::ManateeVersion, name).await
        {
            self.register_triggers(name, &doc.spec.shards);
        }
        run(&self.cx, &ManateeVersionKind, name)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Any [`KindReconcile`] on a context, as the daemon dispatches it.
pub struct Registered<W, K> {
    pub cx: Arc<Context<W>>,
    pub kind: K,
}

#[async_trait]
impl<W: Send + Sync + 'static, K: KindReconcile<W> + 'static> KindReconciler for Registered<W, K> {
    async fn reconcile(&self, name: &str) -> Result<Action, String> {
        run(&self.cx, &self.kind, name)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A controller on one session.
pub struct Daemon {
    session: Arc<dyn Coordination>,
    cfg: DaemonConfig,
    metrics: Metrics,
    phase: tokio::sync::watch::Sender<Phase>,
    web: tokio::sync::watch::Sender<Option<SocketAddr>>,
}

impl Daemon {
    pub fn new(session: Arc<dyn Coordination>, cfg: DaemonConfig) -> Daemon {
        Daemon {
            session,
            cfg,
            metrics: Metrics::new(),
            phase: tokio::sync::watch::Sender::new(Phase::Starting),
            web: tokio::sync::watch::Sender::new(None),
        }
    }

    /// The web view's bound address once it serves (port 0 picks one).
    pub fn web_addr(&self) -> tokio::sync::watch::Receiver<Option<SocketAddr>> {
        self.web.subscribe()
    }

    /// Follow the daemon's phase (e.g. wait for `Phase::Leading`).
    pub fn phase(&self) -> tokio::sync::watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Run until `shutdown` resolves (Ok) or leadership is lost (Err).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<Stopped, DaemonError> {
        let Daemon {
            session,
            cfg,
            metrics,
            phase,
            web,
        } = self;
        let phase = Arc::new(phase);
        let store = Store::new(session.clone());
        store
            .init()
            .await
            .map_err(|e| DaemonError::Store(e.to_string()))?;
        let http_stop = CancellationToken::new();
        let _http_stop = http_stop.clone().drop_guard();
        if let Some(addr) = cfg.metrics_addr {
            check_bind(addr, cfg.metrics_allow_remote)?;
            let bound = serve_metrics(
                addr,
                cfg.http_limits,
                metrics.clone(),
                session.clone(),
                phase.clone(),
                http_stop.clone(),
            )
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
            tracing::info!(addr = %bound, "serving /metrics and /healthz");
        }
        if let Some(addr) = cfg.web_addr {
            // Read-only, from the start (a standby shows the datacenter too).
            crate::web::check_bind(addr, cfg.web_allow_remote)?;
            let reader = Store::new(session.clone());
            let observe =
                crate::web::observe::LiveObserve::new(&reader, &cfg.endpoints, &cfg.store_label);
            let state =
                crate::web::WebState::new(reader, cfg.store_label.clone(), Some(Arc::new(observe)));
            let bound = crate::web::serve(addr, state, cfg.http_limits, http_stop.clone())
                .await
                .map_err(|source| DaemonError::Web { addr, source })?;
            tracing::info!(url = %format!("http://{bound}/"), "serving the web view");
            web.send_replace(Some(bound));
        }
        metrics.set_leader(false);
        phase.send_replace(Phase::Standby);
        let mut shutdown = std::pin::pin!(shutdown);

        let election = LeaderElection::new(session.clone(), cfg.identity.clone())
            .on_ignored(report_ignored(session.clone(), metrics.clone()));
        tracing::info!(identity = %cfg.identity, dir = %election.dir(), "campaigning for leadership");
        let leadership = tokio::select! {
            r = election.campaign() => Arc::new(r.map_err(DaemonError::Campaign)?),
            _ = &mut shutdown => {
                phase.send_replace(Phase::Stopping);
                tracing::info!("shutdown before being elected");
                return Ok(Stopped::BeforeLeading);
            }
        };
        tracing::info!(node = %leadership.node(), "elected leader; reconciling");
        metrics.set_leader(true);
        phase.send_replace(Phase::Leading(leadership.node().to_string()));

        let fence = Some(leadership.fence().clone());
        // Every fenced write goes through the tripwire: one refused at the
        // fence ends leadership at once.
        let fenced = leadership.tripwire(session.clone());
        let store = Store::new(fenced.clone());
        let triton = Triton::with_timeouts(
            &cfg.endpoints,
            Arc::new(LeaderGuard(leadership.clone())),
            cfg.timeouts,
        );
        let world = TritonManatee {
            triton,
            coord: fenced.clone(),
            fence: fence.clone(),
        };
        let mut cx = context(store.clone(), world, fence.clone(), cfg.step_poll);
        cx.metrics = Some(metrics.clone());
        // The transplant strategy acts through the same guarded clients.
        cx.transplant = Some(Arc::new(crate::world::transplant::TritonTransplant {
            triton: cx.world.triton.clone(),
            coord: fenced,
            fence,
        }));
        let cx = Arc::new(cx);
        let (triggers, stream) = Triggers::new(session.clone());
        let mut dispatch = Dispatch::default();
        // One line per kind (ManateeVersion also registers its triggers).
        dispatch.add(cx.clone(), HeadnodesKind);
        dispatch.register(
            Kind::ManateeVersion,
            Arc::new(ManateeReconciler::new(
                cx,
                triggers.clone(),
                cfg.poll_interval,
            )),
        );
        for kind in Kind::ALL {
            triggers.watch_documents(kind);
        }
        // A paused reconcile waits for a change; `tritonctl resume` is that change.
        crate::pause::register_triggers(&triggers);

        let controller = Controller::new(Config {
            concurrency: cfg.concurrency.max(1),
            resync: cfg.resync,
            ..Config::default()
        })
        .with_metrics(metrics.clone());
        let stop = CancellationToken::new();
        let dispatch = Arc::new(dispatch);
        let run = controller.run(
            move |key: String| {
                let dispatch = dispatch.clone();
                async move { dispatch.reconcile(&key).await }
            },
            stream,
            stop.clone().cancelled_owned(),
        );
        // Boxed so that dropping it (below) really drops the runner and aborts its tasks.
        let mut run = Box::pin(run);
        let lost = leadership.lost();
        let outcome = tokio::select! {
            _ = &mut run => None,
            _ = &mut shutdown => None,
            reason = lost => Some(reason),
        };
        phase.send_replace(Phase::Stopping);
        stop.cancel();
        drop(triggers);
        metrics.set_leader(false);
        match outcome {
            Some(reason) => {
                // Nothing a running reconcile still does can land; drop them.
                tracing::error!(%reason, "leadership lost; abandoning running reconciles (their journals resume them)");
                Err(DaemonError::LeadershipLost(reason))
            }
            None => {
                tracing::info!(grace = ?cfg.shutdown_grace, "shutting down: no new reconciles; waiting for running ones");
                if tokio::time::timeout(cfg.shutdown_grace, &mut run)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "reconciles still running after the grace period; abandoning them (their journals resume them)"
                    );
                }
                // Dropping the run aborts what is left; then step down so a
                // standby leads at once instead of after our session timeout.
                drop(run);
                match Arc::try_unwrap(leadership) {
                    Ok(l) => l.resign().await,
                    // Clients still hold it; dropping the last one resigns.
                    Err(l) => drop(l),
                }
                tracing::info!("resigned leadership; stopped");
                Ok(Stopped::Resigned)
            }
        }
    }
}

/// What the daemon does with a node the election ignores: count it and
/// record a Warning event (unfenced: a standby reports it too).
fn report_ignored(session: Arc<dyn Coordination>, metrics: Metrics) -> IgnoredHook {
    let events = Events::new(session);
    Arc::new(move |ignored: &IgnoredCandidate| {
        metrics.election_ignored(ignored.reason.as_str());
        let (events, event) = (
            events.clone(),
            Event::warning(ELECTION_OBJECT, "IgnoredCandidate", ignored.to_string()),
        );
        tokio::spawn(async move {
            if let Err(e) = events.record(&event, None).await {
                tracing::warn!(error = %e, "cannot record the IgnoredCandidate event");
            }
        });
    })
}

/// The object of the election's events.
pub const ELECTION_OBJECT: &str = "Leader/election";

/// Serve `/metrics` (OpenMetrics text) and `/healthz` on `addr` within
/// `limits` (see [`crate::runtime::http`]); returns the bound address (port
/// 0 picks one).
async fn serve_metrics(
    addr: SocketAddr,
    limits: HttpLimits,
    metrics: Metrics,
    session: Arc<dyn Coordination>,
    phase: Arc<tokio::sync::watch::Sender<Phase>>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let (session, phase) = (session.clone(), phase.clone());
                async move {
                    let state = session.session_state();
                    let p = phase.borrow().clone();
                    let body = serde_json::json!({
                        "phase": p.name(),
                        "leader": matches!(p, Phase::Leading(_)),
                        "node": match &p { Phase::Leading(n) => Some(n.clone()), _ => None },
                        "session": format!("{state:?}"),
                    });
                    let code = if state.is_terminal() {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    (code, axum::Json(body))
                }
            }),
        );
    crate::runtime::http::serve(addr, router, limits, stop).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(AtomicUsize, Mutex<Vec<String>>);

    #[async_trait]
    impl KindReconciler for Counting {
        async fn reconcile(&self, name: &str) -> Result<Action, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.lock().unwrap().push(name.to_string());
            Ok(Action::RequeueAfter(Duration::from_secs(7)))
        }
    }

    #[tokio::test]
    async fn keys_go_to_the_reconciler_of_their_kind_only() {
        let st = Arc::new(Counting(AtomicUsize::new(0), Mutex::default()));
        let mut d = Dispatch::default();
        d.register(Kind::ShardTopology, st.clone());
        assert_eq!(d.kinds(), [Kind::ShardTopology]);
        assert_eq!(
            d.reconcile("ShardTopology/us-east").await,
            Ok(Action::RequeueAfter(Duration::from_secs(7)))
        );
        // A kind nobody handles yet, and keys that are not document keys,
        // wait for a change and reach no reconciler.
        assert_eq!(
            d.reconcile("HeadnodeSet/lab").await,
            Ok(Action::AwaitChange)
        );
        assert_eq!(d.reconcile("Nope/x").await, Ok(Action::AwaitChange));
        assert_eq!(d.reconcile("no-slash").await, Ok(Action::AwaitChange));
        assert_eq!(st.0.load(Ordering::SeqCst), 1);
        assert_eq!(*st.1.lock().unwrap(), ["us-east"]);
    }
}

#[cfg(test)]
mod adding_a_kind {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::reconcile::{Outcome, ReconcileError};
    use crds::meta::Resource;

    /// A kind as ARCHITECTURE.md's "Adding a kind" describes it.
    struct Topology(Arc<AtomicUsize>);

    #[async_trait]
    impl KindReconcile<()> for Topology {
        type Spec = crds::shards::ShardTopologySpec;
        const KIND: Kind = Kind::ShardTopology;
        fn typed(doc: Document) -> Option<Resource<Self::Spec>> {
            match doc {
                Document::ShardTopology(d) => Some(d),
                _ => None,
            }
        }
        async fn reconcile(
            &self,
            _cx: &Context<()>,
            _name: &str,
            _doc: &Resource<Self::Spec>,
            _status: &mut crds::Status,
        ) -> Result<Outcome, ReconcileError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Outcome::Ready {
                message: "ring as declared".into(),
                after: Duration::from_secs(60),
            })
        }
    }

    /// One trait impl and one registration line: the key reaches the kind
    /// through the shared opening, and finish writes its status.
    #[tokio::test]
    async fn one_impl_and_one_line_register_a_kind() {
        let store = Store::new(coord::MemEnsemble::new().connect());
        store.init().await.unwrap();
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/us-east/shardtopology.yaml"),
        )
        .unwrap();
        let (mut docs, _) = crds::parse_documents("shardtopology.yaml", &text);
        let doc = docs.remove(0).document;
        let name = doc.name().to_string();
        store.apply(&[doc]).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let cx = Arc::new(context(store.clone(), (), None, None));
        let mut d = Dispatch::default();
        d.add(cx, Topology(calls.clone()));
        assert_eq!(d.kinds(), [Kind::ShardTopology]);
        assert_eq!(
            d.reconcile(&format!("ShardTopology/{name}")).await,
            Ok(Action::RequeueAfter(Duration::from_secs(60)))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let st = store.status(Kind::ShardTopology, &name).await.unwrap();
        assert!(st.unwrap().is_true(crds::ConditionType::Ready));
    }
}
