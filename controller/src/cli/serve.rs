//! The long-running commands: `tritonctl controller` and `tritonctl sim serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use coord::Coordination;
use sim::manatee::SessionProvider;
use sim::scenario::{ScenarioOptions, SimScenario};

use super::{Failure, StoreArgs, input, parse_duration};
use crate::clients::Endpoints;
use crate::daemon::{Daemon, DaemonConfig, DaemonError, Stopped};
use crate::logging::{self, LogFormat};

/// Exit status of a controller that lost leadership: restart it.
pub const EXIT_LEADERSHIP_LOST: u8 = 3;

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// SAPI base URL.
    #[arg(long, env = "TRITONCTL_SAPI", value_name = "URL")]
    pub sapi: String,
    /// VMAPI base URL.
    #[arg(long, env = "TRITONCTL_VMAPI", value_name = "URL")]
    pub vmapi: String,
    /// CNAPI base URL.
    #[arg(long, env = "TRITONCTL_CNAPI", value_name = "URL")]
    pub cnapi: String,
    /// IMGAPI base URL.
    #[arg(long, env = "TRITONCTL_IMGAPI", value_name = "URL")]
    pub imgapi: String,
    /// Serve /metrics and /healthz here (port 0 picks a free port; `off` serves nothing).
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_addr)]
    pub metrics_addr: MetricsAddr,
    /// Allow --metrics-addr to be an address other than loopback (they serve no credentials, but anyone who reaches them can probe the controller).
    #[arg(long)]
    pub metrics_allow_remote: bool,
    /// Serve the read-only web view here (overview, documents updating live,
    /// shard topology, headnodes, plan), e.g. 127.0.0.1:9465 (port 0 picks a
    /// free port; `off`, the default, serves nothing). When access control
    /// is set up, browsers sign in as a tritonctl identity (any role).
    #[arg(long, default_value = "off", value_parser = parse_metrics_addr)]
    pub web_addr: MetricsAddr,
    /// Allow --web-addr to be an address other than loopback (HTTP Basic sends
    /// the identity's secret in the clear: put TLS in front or use a tunnel).
    #[arg(long)]
    pub web_allow_remote: bool,
    /// Log format on stderr: text, or JSON in bunyan's layout (read it with `bunyan`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How often SAPI and VMAPI are polled for changes (they have no watch).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How often a running step's completion check polls.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub step_poll: Duration,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// On SIGTERM/SIGINT, how long running reconciles may go on before they are abandoned.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How long a read or a quick mutation (metadata, CNAPI commands) may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub api_timeout: Duration,
    /// How long SAPI CreateInstance/UpgradeInstance may take: SAPI answers
    /// once the VMAPI job ends, after up to an hour. A call that runs out
    /// is resolved from VMAPI and SAPI, never resent blindly.
    #[arg(long, default_value = "65m", value_parser = parse_duration)]
    pub sapi_job_timeout: Duration,
    /// How long SAPI DeleteInstance may take (it waits for the destroy job).
    #[arg(long, default_value = "11m", value_parser = parse_duration)]
    pub sapi_delete_timeout: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct MetricsAddr(pub Option<SocketAddr>);

/// `--web-addr`: an address, or `off`; only loopback (the demo).
pub fn parse_web_addr(s: &str) -> Result<MetricsAddr, String> {
    let a = parse_metrics_addr(s)?;
    match a.0 {
        Some(addr) if !addr.ip().is_loopback() => Err(format!(
            "{addr}: the demo serves its web view on loopback only (127.0.0.1 or ::1)"
        )),
        _ => Ok(a),
    }
}

fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    if s == "off" {
        return Ok(MetricsAddr(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|e| format!("`{s}` is not an address like 127.0.0.1:9464 (or `off`): {e}"))
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Run a simulated datacenter until SIGTERM/SIGINT; print its endpoints as JSON when ready.
    #[command(
        after_help = "Starts SAPI, VMAPI, CNAPI, IMGAPI and the control API on 127.0.0.1 (free ports),\n\
and one manatee sitter per manatee zone. With --zk the sitters use that ZooKeeper;\n\
without it a private ZooKeeper is started on 127.0.0.1 (needs /usr/share/java/zookeeper.jar)\n\
so that a separate `tritonctl controller` process can share it. When ready, one JSON\n\
object is printed on stdout: {\"sapi\", \"vmapi\", \"cnapi\", \"imgapi\", \"control\", \"zk\",\n\
\"zk_private\", \"shards\"}.\n\
Exit status: 0 stopped by SIGTERM/SIGINT, 1 invalid arguments, 2 error.\n\n\
Examples:\n  tritonctl sim serve > sim.json\n  tritonctl sim serve --scenario examples/lab --zk 127.0.0.1:2181\n  \
tritonctl --zk \"$(jq -r .zk sim.json)\" apply -f examples/lab/\n  \
tritonctl --zk \"$(jq -r .zk sim.json)\" controller --sapi \"$(jq -r .sapi sim.json)\" \\\n      \
--vmapi \"$(jq -r .vmapi sim.json)\" --cnapi \"$(jq -r .cnapi sim.json)\" --imgapi \"$(jq -r .imgapi sim.json)\""
    )]
    Serve(SimServeArgs),
}

#[derive(Args, Debug)]
pub struct SimServeArgs {
    /// A directory of documents (HeadnodeSet and/or ShardTopology) describing the
    /// datacenter; default: the built-in examples/lab.
    #[arg(long, value_name = "DIR")]
    pub scenario: Option<PathBuf>,
    /// Datacenter durations multiplier (default 1/3000: a 15-minute reprovision takes 300 ms).
    #[arg(long)]
    pub dc_time_scale: Option<f64>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

const LAB_HEADNODES: &str = include_str!("../../../examples/lab/headnodeset.yaml");

/// SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

pub async fn controller(args: ControllerArgs, store: &StoreArgs) -> Result<(), Failure> {
    logging::init(args.log_format);
    if let Some(addr) = args.metrics_addr.0 {
        crate::runtime::http::check_bind(addr, args.metrics_allow_remote)
            .map_err(|e| Failure::invalid(e.to_string()))?;
    }
    if let Some(addr) = args.web_addr.0 {
        crate::web::check_bind(addr, args.web_allow_remote)
            .map_err(|e| Failure::invalid(e.to_string()))?;
    }
    let Some(hosts) = store.zk.clone() else {
        return Err(Failure::invalid(
            "tritonctl controller needs --zk HOSTS (or TRITONCTL_ZK): it campaigns for leadership \
             and reads each manatee shard's state in the datacenter's ZooKeeper; the embedded \
             store (--data-dir) is for offline edits and `tritonctl demo`",
        ));
    };
    // As the identity the environment names (`crate::auth::credentials`):
    // the controller's own, on a locked-down ZooKeeper.
    let connected = crate::auth::connect_zk(&hosts, store.session_timeout)
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    let session: Arc<dyn Coordination> = connected.coord;
    tracing::info!(zk = %hosts, session = format_args!("{:#x}", session.session_id()), identity = %connected.principal, "connected to ZooKeeper");
    let mut cfg = DaemonConfig::new(Endpoints {
        sapi: args.sapi,
        vmapi: args.vmapi,
        cnapi: args.cnapi,
        imgapi: args.imgapi,
    });
    cfg.metrics_addr = args.metrics_addr.0;
    cfg.metrics_allow_remote = args.metrics_allow_remote;
    cfg.web_addr = args.web_addr.0;
    cfg.web_allow_remote = args.web_allow_remote;
    cfg.store_label = format!("zookeeper {hosts}");
    cfg.poll_interval = args.poll_interval;
    cfg.step_poll = Some(args.step_poll);
    cfg.concurrency = args.concurrency;
    cfg.shutdown_grace = args.shutdown_grace;
    cfg.timeouts.default = args.api_timeout;
    cfg.timeouts.sapi_job = args.sapi_job_timeout;
    cfg.timeouts.sapi_delete = args.sapi_delete_timeout;
    let result = Daemon::new(session.clone(), cfg).run(terminated()).await;
    session.close().await;
    match result {
        Ok(Stopped::BeforeLeading | Stopped::Resigned) => Ok(()),
        Err(e @ DaemonError::LeadershipLost(_)) => Err(Failure {
            code: EXIT_LEADERSHIP_LOST,
            message: e.to_string(),
        }),
        Err(e) => Err(Failure::error(e.to_string())),
    }
}

pub async fn sim(cmd: SimCommand, store: &StoreArgs) -> Result<(), Failure> {
    let SimCommand::Serve(args) = cmd;
    logging::init(args.log_format);
    let docs = match &args.scenario {
        Some(dir) => {
            let input = input::read(std::slice::from_ref(dir))?;
            for d in &input.diagnostics {
                eprintln!("{d}");
            }
            if input.has_errors() {
                return Err(Failure::invalid(format!(
                    "the scenario in {} has errors (above); fix them and start again",
                    dir.display()
                )));
            }
            input
                .documents
                .into_iter()
                .map(|d| d.document)
                .collect::<Vec<_>>()
        }
        None => {
            let (docs, diags) =
                crds::parse_documents("examples/lab/headnodeset.yaml", LAB_HEADNODES);
            if let Some(d) = diags.first() {
                return Err(Failure::error(d.to_string()));
            }
            docs.into_iter().map(|d| d.document).collect()
        }
    };
    if !docs.iter().any(|d| {
        matches!(
            d,
            crds::Document::HeadnodeSet(_) | crds::Document::ShardTopology(_)
        )
    }) {
        return Err(Failure::invalid(
            "the scenario has no HeadnodeSet or ShardTopology document, so there is no datacenter \
             to simulate; point --scenario at a directory like examples/lab",
        ));
    }

    // Without --zk, a private ZooKeeper so that other processes can share it.
    let (zk_hosts, private_zk) = match &store.zk {
        Some(hosts) => (hosts.clone(), None),
        None => {
            eprintln!("no --zk given: starting a private ZooKeeper on 127.0.0.1");
            let server = coord::server::ZkServer::start()
                .await
                .map_err(|e| Failure::error(format!("cannot start ZooKeeper: {e}")))?;
            eprintln!(
                "private ZooKeeper at {} (pid {}, files in {})",
                server.connect_string(),
                server.pid().unwrap_or_default(),
                server.dir().display()
            );
            (server.connect_string(), Some(server))
        }
    };
    let provider: Arc<dyn SessionProvider> = Arc::new(sim::manatee::ZkProvider {
        connect_string: zk_hosts.clone(),
        session_timeout: store.session_timeout,
    });
    let mut opts = ScenarioOptions::default();
    if let Some(s) = args.dc_time_scale {
        if !(s > 0.0 && s.is_finite()) {
            return Err(Failure::invalid(format!(
                "--dc-time-scale {s}: must be a positive number (1 = real time)"
            )));
        }
        opts.dc_time_scale = s;
    }
    let scenario = SimScenario::start(&docs, provider, opts)
        .await
        .map_err(|e| Failure::error(format!("the simulated datacenter did not start: {e}")))?;
    let urls = scenario.servers.urls().clone();
    let shards: std::collections::BTreeMap<&String, &Vec<String>> =
        scenario.shards.iter().collect();
    let ready = serde_json::json!({
        "sapi": urls.sapi,
        "vmapi": urls.vmapi,
        "cnapi": urls.cnapi,
        "imgapi": urls.imgapi,
        "control": urls.control,
        "zk": zk_hosts,
        "zk_private": private_zk.is_some(),
        "shards": shards,
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ready}");
        let _ = out.flush();
    }
    tracing::info!("simulated datacenter ready; stop with SIGTERM or SIGINT");
    terminated().await;
    tokio::time::timeout(Duration::from_secs(20), scenario.shutdown())
        .await
        .ok();
    drop(private_zk);
    Ok(())
}
