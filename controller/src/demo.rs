//! `tritonctl demo`: the whole loop in one process, on nothing but the build.
//!
//! A simulated lab datacenter (three headnodes, a three-peer `sdc` manatee
//! shard) comes up on 127.0.0.1; the lab documents are applied to an
//! embedded store; a controller wins the leader election and upgrades the
//! shard through the real SAPI/VMAPI/CNAPI/IMGAPI clients, while a client
//! writes to the shard throughout. Events stream as the shard converges; a
//! summary reports the steps, time, writes lost and the write outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::Coordination;
use crds::manatee::Strategy;
use crds::{ConditionType, Document, Kind};
use sim::scenario::{ScenarioOptions, SimScenario};

use crate::clients::Endpoints;
use crate::daemon::{Daemon, DaemonConfig, Phase};
use crate::runtime::events::Events;
use crate::store::Store;

const LAB_HEADNODES: &str = include_str!("../../examples/lab/headnodeset.yaml");
const LAB_MANATEE: &str = include_str!("../../examples/lab/manatee.yaml");

/// What the client writing through the upgrade saw.
#[derive(Default)]
struct WriteLog {
    acked: Vec<Vec<u8>>,
    failed: u64,
    /// (first failure, last failure) of each run of failures.
    outages: Vec<(Duration, Duration)>,
}

pub struct DemoReport {
    pub strategy: Strategy,
    pub steps: usize,
    pub elapsed: Duration,
    pub acked: usize,
    pub lost: usize,
    pub failed_writes: u64,
    pub longest_outage: Duration,
    pub total_outage: Duration,
    /// Requests the simulator answered 599 `SimulatorWouldCrash`: ones the
    /// real SAPI process would have died on (always 0 for our clients).
    pub sapi_would_crash: usize,
}

/// The strategy as the document spells it.
pub fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Auto => "auto",
        Strategy::Rolling => "rolling",
        Strategy::Switchover => "switchover",
        Strategy::Transplant => "transplant",
    }
}

fn parse(name: &str, text: &str) -> Result<Document, String> {
    let (mut docs, diags) = crds::parse_documents(name, text);
    if let Some(d) = diags.first() {
        return Err(d.to_string());
    }
    Ok(docs.remove(0).document)
}

/// What else the demo may do.
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Serve the controller's web view here for the demo's duration (port
    /// 0 picks one); its URL is printed as `web view: http://ADDR/`.
    pub web_addr: Option<std::net::SocketAddr>,
    /// The simulated datacenter's durations multiplier (None: the default).
    pub dc_time_scale: Option<f64>,
    /// Once the shard is Ready, keep the controller (and its web view) up
    /// until this turns true or its sender goes away.
    pub linger: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The line that names the web view's URL.
pub const WEB_LINE: &str = "web view: ";

/// Run the demo; `out` receives the live lines (stdout in the CLI).
/// `strategy` replaces the lab document's `spec.strategy` (`rolling`, as
/// sdcadm does it, or `switchover`, one planned takeover).
pub async fn run(
    out: &mut (dyn FnMut(String) + Send),
    timeout: Duration,
    strategy: Strategy,
) -> Result<DemoReport, String> {
    run_with(out, timeout, strategy, DemoOptions::default()).await
}

/// [`run`], with a web view or a slower datacenter.
pub async fn run_with(
    out: &mut (dyn FnMut(String) + Send),
    timeout: Duration,
    strategy: Strategy,
    options: DemoOptions,
) -> Result<DemoReport, String> {
    let started = Instant::now();
    let hs = parse("examples/lab/headnodeset.yaml", LAB_HEADNODES)?;
    let mut mv = parse("examples/lab/manatee.yaml", LAB_MANATEE)?;
    if let Document::ManateeVersion(m) = &mut mv {
        m.spec.strategy = strategy;
    }
    out(format!(
        "upgrading with strategy {}",
        strategy_name(strategy)
    ));

    out(
        "starting the simulated lab datacenter (3 headnodes, manatee shard `sdc` with 3 peers)"
            .into(),
    );
    let ensemble = coord::mem::MemEnsemble::new();
    let mut scenario_options = ScenarioOptions::default();
    if let Some(scale) = options.dc_time_scale {
        scenario_options.dc_time_scale = scale;
    }
    let scenario = SimScenario::start(
        std::slice::from_ref(&hs),
        Arc::new(ensemble.clone()),
        scenario_options,
    )
    .await?;
    let urls = scenario.servers.urls().clone();
    out(format!(
        "  SAPI {}  VMAPI {}  CNAPI {}  IMGAPI {}",
        urls.sapi, urls.vmapi, urls.cnapi, urls.imgapi
    ));

    let session: Arc<dyn Coordination> = ensemble.connect();
    let store = Store::new(session.clone());
    store.init().await.map_err(|e| e.to_string())?;
    for o in store.apply(&[hs, mv]).await.map_err(|e| e.to_string())? {
        out(format!(
            "applied {}/{} ({})",
            o.kind.short(),
            o.name,
            o.action.as_str()
        ));
    }

    // The controller: the same daemon as `tritonctl controller`, in-process.
    let endpoints = Endpoints {
        sapi: urls.sapi.clone(),
        vmapi: urls.vmapi.clone(),
        cnapi: urls.cnapi.clone(),
        imgapi: urls.imgapi.clone(),
    };
    let mut cfg = DaemonConfig::new(endpoints);
    cfg.identity = "demo-controller".into();
    cfg.step_poll = Some(Duration::from_millis(20));
    cfg.poll_interval = Duration::from_secs(1);
    cfg.concurrency = 2;
    cfg.shutdown_grace = Duration::from_secs(5);
    cfg.web_addr = options.web_addr;
    cfg.store_label = "the demo's embedded store".into();
    let daemon = Daemon::new(session.clone(), cfg);
    let mut phase = daemon.phase();
    let mut web = daemon.web_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut runner = tokio::spawn(daemon.run(async move {
        let _ = stop_rx.await;
    }));
    let node = tokio::select! {
        p = phase.wait_for(|p| matches!(p, Phase::Leading(_))) => match p.as_deref() {
            Ok(Phase::Leading(node)) => node.clone(),
            _ => return Err("the controller stopped before it was elected".into()),
        },
        r = &mut runner => return Err(match r {
            Ok(Err(e)) => e.to_string(),
            _ => "the controller stopped before it was elected".into(),
        }),
    };
    out(format!("controller elected leader ({node})"));
    if options.web_addr.is_some() {
        // The web view serves from the daemon's start, before the election.
        if let Ok(addr) = web.wait_for(Option::is_some).await.map(|a| *a) {
            out(format!("{WEB_LINE}http://{}/", addr.expect("waited for")));
        }
    }

    // A client writing to the shard the whole time.
    let shard = scenario.manatee.shard("sdc");
    let log = Arc::new(std::sync::Mutex::new(WriteLog::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop, shard) = (log.clone(), stop.clone(), shard.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut n = 0u64;
            let mut in_outage: Option<Duration> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let payload = format!("demo-write-{n}").into_bytes();
                let r = tokio::time::timeout(Duration::from_secs(2), shard.write(&payload)).await;
                let at = t0.elapsed();
                {
                    let mut l = log.lock().unwrap();
                    match r {
                        Ok(Ok(_)) => {
                            l.acked.push(payload);
                            if let Some(start) = in_outage.take() {
                                l.outages.push((start, at));
                            }
                        }
                        _ => {
                            l.failed += 1;
                            in_outage.get_or_insert(at);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Some(start) = in_outage {
                log.lock().unwrap().outages.push((start, t0.elapsed()));
            }
        })
    };

    // Stream events until the document is Ready.
    let events = Events::new(session.clone());
    let mut seen = 0u64;
    let deadline = Instant::now() + timeout;
    let mut ready = false;
    let mut blocked_since: Option<Instant> = None;
    while Instant::now() < deadline {
        for rec in events.list(None).await.map_err(|e| e.to_string())? {
            if rec.seq >= seen {
                seen = rec.seq + 1;
                let e = &rec.event;
                let step = e
                    .step
                    .as_deref()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default();
                out(format!(
                    "{:>7.2}s  {:<7} {:<18} {}{step}",
                    started.elapsed().as_secs_f64(),
                    e.event_type.as_str(),
                    e.reason,
                    e.message
                ));
            }
        }
        if let Some(st) = store
            .status(Kind::ManateeVersion, "sdc")
            .await
            .map_err(|e| e.to_string())?
            && st.is_true(ConditionType::Ready)
        {
            ready = true;
            break;
        }
        // A block can clear by itself (a peer catching up); give up only on one that stays.
        match store
            .status(Kind::ManateeVersion, "sdc")
            .await
            .map_err(|e| e.to_string())?
        {
            Some(st) if st.is_true(ConditionType::Blocked) => {
                let c = st.condition(ConditionType::Blocked).unwrap();
                let since = blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(15) {
                    return Err(format!(
                        "the upgrade is blocked: {}: {}",
                        c.reason, c.message
                    ));
                }
            }
            _ => blocked_since = None,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.await;
    if let Some(mut linger) = options.linger.clone() {
        let _ = linger.wait_for(|done| *done).await;
    }
    let _ = stop_tx.send(());
    // The daemon waits for running reconciles up to its grace period, then
    // abandons them (their journals resume them) and resigns.
    match tokio::time::timeout(Duration::from_secs(15), &mut runner).await {
        Ok(Ok(Err(e))) => out(format!("controller stopped with an error: {e}")),
        Ok(_) => {}
        Err(_) => runner.abort(),
    }
    if !ready {
        return Err(format!(
            "the shard did not converge within {}s",
            timeout.as_secs()
        ));
    }

    // Every acknowledged write must be on the primary now.
    let durable = shard.primary_writes().await.map_err(|e| e.to_string())?;
    let durable: std::collections::HashSet<&Vec<u8>> = durable.iter().collect();
    let status = store
        .status(Kind::ManateeVersion, "sdc")
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let report = {
        let log = log.lock().unwrap();
        DemoReport {
            strategy,
            steps: status.operation.as_ref().map_or(0, |o| o.steps.len()),
            elapsed: started.elapsed(),
            acked: log.acked.len(),
            lost: log.acked.iter().filter(|w| !durable.contains(w)).count(),
            failed_writes: log.failed,
            longest_outage: log
                .outages
                .iter()
                .map(|(a, b)| *b - *a)
                .max()
                .unwrap_or_default(),
            total_outage: log.outages.iter().map(|(a, b)| *b - *a).sum(),
            sapi_would_crash: scenario.dc.sapi_would_crash().len(),
        }
    };
    scenario.shutdown().await;
    Ok(report)
}
