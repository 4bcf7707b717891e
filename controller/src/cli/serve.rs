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
use crate::config::ConfigFile;
use crate::config_resolve::{self, Overrides, Settings};
use crate::daemon::{Daemon, DaemonConfig, DaemonError, Stopped};
use crate::logging::{self, LogFormat};

/// Exit status of a controller that lost leadership: restart it.
pub const EXIT_LEADERSHIP_LOST: u8 = 3;

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Read every setting from this JSON file (as config-agent renders it from
    /// SAPI metadata: `sapi_manifests/tritonctl/`); flags and environment win over it.
    #[arg(long, env = "TRITONCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the settings (file, flags, environment), print them as JSON and
    /// exit: 0 when the controller would start with them, 1 when not.
    #[arg(long)]
    pub check_config: bool,
    /// SAPI base URL (config: `sapi_url`).
    #[arg(long, env = "TRITONCTL_SAPI", value_name = "URL")]
    pub sapi: Option<String>,
    /// VMAPI base URL (config: `vmapi_url`).
    #[arg(long, env = "TRITONCTL_VMAPI", value_name = "URL")]
    pub vmapi: Option<String>,
    /// CNAPI base URL (config: `cnapi_url`).
    #[arg(long, env = "TRITONCTL_CNAPI", value_name = "URL")]
    pub cnapi: Option<String>,
    /// IMGAPI base URL (config: `imgapi_url`).
    #[arg(long, env = "TRITONCTL_IMGAPI", value_name = "URL")]
    pub imgapi: Option<String>,
    /// Serve /metrics and /healthz here (port 0 picks a free port; `off` serves nothing)
    /// [default: 127.0.0.1:9464] (config: `metrics.addr`).
    #[arg(long, value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<MetricsAddr>,
    /// Allow --metrics-addr to be an address other than loopback (they serve no credentials, but anyone who reaches them can probe the controller) (config: `metrics.allow_remote`).
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
    /// Log format on stderr: text, or JSON in bunyan's layout (read it with `bunyan`)
    /// [default: text] (config: `log.format`; the level is `log.level`, RUST_LOG wins).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// How often SAPI and VMAPI are polled for changes (they have no watch) [default: 30s] (config: `poll_interval`).
    #[arg(long, value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// How often a running step's completion check polls [default: 200ms] (config: `step_poll`).
    #[arg(long, value_parser = parse_duration)]
    pub step_poll: Option<Duration>,
    /// Reconciles running at once [default: 4] (config: `concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// On SIGTERM/SIGINT, how long running reconciles may go on before they are abandoned
    /// [default: 10s] (config: `shutdown_grace`).
    #[arg(long, value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// How long a read or a quick mutation (metadata, CNAPI commands) may take
    /// [default: 30s] (config: `timeouts.api`).
    #[arg(long, value_parser = parse_duration)]
    pub api_timeout: Option<Duration>,
    /// How long SAPI CreateInstance/UpgradeInstance may take: SAPI answers
    /// once the VMAPI job ends, after up to an hour. A call that runs out
    /// is resolved from VMAPI and SAPI, never resent blindly
    /// [default: 65m] (config: `timeouts.sapi_job`).
    #[arg(long, value_parser = parse_duration)]
    pub sapi_job_timeout: Option<Duration>,
    /// How long SAPI DeleteInstance may take (it waits for the destroy job)
    /// [default: 11m] (config: `timeouts.sapi_delete`).
    #[arg(long, value_parser = parse_duration)]
    pub sapi_delete_timeout: Option<Duration>,
}

impl ControllerArgs {
    /// What the command line and the environment say.
    fn overrides(&self, store: &StoreArgs) -> Overrides {
        Overrides {
            zk: store.zk.clone(),
            session_timeout: store.session_timeout_given.then_some(store.session_timeout),
            sapi: self.sapi.clone(),
            vmapi: self.vmapi.clone(),
            cnapi: self.cnapi.clone(),
            imgapi: self.imgapi.clone(),
            metrics_addr: self.metrics_addr.map(|a| a.0),
            metrics_allow_remote: self.metrics_allow_remote.then_some(true),
            log_format: self.log_format,
            log_level: std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()),
            poll_interval: self.poll_interval,
            step_poll: self.step_poll,
            concurrency: self.concurrency,
            shutdown_grace: self.shutdown_grace,
            api_timeout: self.api_timeout,
            sapi_job_timeout: self.sapi_job_timeout,
            sapi_delete_timeout: self.sapi_delete_timeout,
        }
    }
}

/// The controller's settings from the file, the flags and the environment;
/// an invalid file or a missing setting stops the start (exit 1).
pub fn controller_settings(args: &ControllerArgs, store: &StoreArgs) -> Result<Settings, Failure> {
    let file = match &args.config {
        Some(path) => Some(ConfigFile::read(path).map_err(|e| Failure::invalid(e.to_string()))?),
        None => None,
    };
    let settings = config_resolve::resolve(args.overrides(store), file.as_ref()).map_err(|e| {
        Failure::invalid(format!(
            "tritonctl controller: {e}; it campaigns for leadership and reads each manatee \
             shard's state in the datacenter's ZooKeeper (the embedded store, --data-dir, is for \
             offline edits and `tritonctl demo`)"
        ))
    })?;
    if let Some(addr) = settings.metrics_addr {
        crate::runtime::http::check_bind(addr, settings.metrics_allow_remote)
            .map_err(|e| Failure::invalid(e.to_string()))?;
    }
    Ok(settings)
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
    let settings = controller_settings(&args, store)?;
    if args.check_config {
        println!("{:#}", settings.to_json());
        return Ok(());
    }
    if let Some(addr) = args.web_addr.0 {
        crate::web::check_bind(addr, args.web_allow_remote)
            .map_err(|e| Failure::invalid(e.to_string()))?;
    }
    logging::init_with_level(settings.log_format, &settings.log_level);
    if let Some(path) = &args.config {
        tracing::info!(config = %path.display(), "settings read from the configuration file");
    }
    let hosts = settings.zk.clone();
    // As the identity the environment names (`crate::auth::credentials`),
    // else the configuration's credentials file: the controller's own, on a
    // locked-down ZooKeeper.
    let connected = crate::auth::connect_zk_with(
        &hosts,
        settings.session_timeout,
        settings.credentials_file.as_deref(),
    )
    .await
    .map_err(|e| Failure::error(e.to_string()))?;
    let session: Arc<dyn Coordination> = connected.coord;
    tracing::info!(zk = %hosts, session = format_args!("{:#x}", session.session_id()), identity = %connected.principal, "connected to ZooKeeper");
    let mut cfg = DaemonConfig::new(settings.endpoints.clone());
    cfg.metrics_addr = settings.metrics_addr;
    cfg.metrics_allow_remote = settings.metrics_allow_remote;
    cfg.web_addr = args.web_addr.0;
    cfg.web_allow_remote = args.web_allow_remote;
    cfg.store_label = format!("zookeeper {hosts}");
    cfg.poll_interval = settings.poll_interval;
    cfg.step_poll = Some(settings.step_poll);
    cfg.concurrency = settings.concurrency;
    cfg.shutdown_grace = settings.shutdown_grace;
    cfg.timeouts.default = settings.api_timeout;
    cfg.timeouts.sapi_job = settings.sapi_job_timeout;
    cfg.timeouts.sapi_delete = settings.sapi_delete_timeout;
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
