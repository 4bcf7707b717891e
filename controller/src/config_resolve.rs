//! Which value each controller setting takes: a flag, else its environment
//! variable (clap merges those two, the flag winning), else the `--config`
//! file (`config.rs`), else the default. Required settings with no value
//! anywhere are refused, naming all three places to give one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::clients::Endpoints;
use crate::config::ConfigFile;
use crate::logging::LogFormat;

pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_STEP_POLL: Duration = Duration::from_millis(200);
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SAPI_JOB_TIMEOUT: Duration = Duration::from_secs(65 * 60);
pub const DEFAULT_SAPI_DELETE_TIMEOUT: Duration = Duration::from_secs(11 * 60);
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// What the command line and the environment say (None: not given).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub zk: Option<String>,
    pub session_timeout: Option<Duration>,
    pub sapi: Option<String>,
    pub vmapi: Option<String>,
    pub cnapi: Option<String>,
    pub imgapi: Option<String>,
    /// `Some(None)`: `--metrics-addr off`.
    pub metrics_addr: Option<Option<SocketAddr>>,
    pub metrics_allow_remote: Option<bool>,
    pub log_format: Option<LogFormat>,
    /// `RUST_LOG`.
    pub log_level: Option<String>,
    pub poll_interval: Option<Duration>,
    pub step_poll: Option<Duration>,
    pub concurrency: Option<usize>,
    pub shutdown_grace: Option<Duration>,
    pub api_timeout: Option<Duration>,
    pub sapi_job_timeout: Option<Duration>,
    pub sapi_delete_timeout: Option<Duration>,
}

/// Every setting of a controller, decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub zk: String,
    pub session_timeout: Duration,
    pub endpoints: Endpoints,
    /// Used after the environment's credentials (`auth::credentials`).
    pub credentials_file: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_allow_remote: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    pub poll_interval: Duration,
    pub step_poll: Duration,
    pub concurrency: usize,
    pub shutdown_grace: Duration,
    pub api_timeout: Duration,
    pub sapi_job_timeout: Duration,
    pub sapi_delete_timeout: Duration,
}

/// A required setting given nowhere.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no {what}: give {flag} (or {env}), or `{key}` in the --config file{}",
    if *.with_file { "" } else { " (no --config file was given)" }
)]
pub struct Missing {
    pub what: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    pub key: &'static str,
    pub with_file: bool,
}

fn duration_text(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.is_zero() {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

impl Settings {
    /// The decided settings as JSON (`tritonctl controller --check-config`):
    /// no secret is part of them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "zk": self.zk,
            "session_timeout": duration_text(self.session_timeout),
            "sapi_url": self.endpoints.sapi,
            "vmapi_url": self.endpoints.vmapi,
            "cnapi_url": self.endpoints.cnapi,
            "imgapi_url": self.endpoints.imgapi,
            "credentials_file": self.credentials_file,
            "metrics": {
                "addr": self.metrics_addr.map_or("off".to_string(), |a| a.to_string()),
                "allow_remote": self.metrics_allow_remote,
            },
            "log": {
                "level": self.log_level,
                "format": match self.log_format { LogFormat::Json => "json", LogFormat::Text => "text" },
            },
            "poll_interval": duration_text(self.poll_interval),
            "step_poll": duration_text(self.step_poll),
            "concurrency": self.concurrency,
            "shutdown_grace": duration_text(self.shutdown_grace),
            "timeouts": {
                "api": duration_text(self.api_timeout),
                "sapi_job": duration_text(self.sapi_job_timeout),
                "sapi_delete": duration_text(self.sapi_delete_timeout),
            },
        })
    }
}

/// Decide every setting: overrides, then the file, then the defaults.
pub fn resolve(over: Overrides, file: Option<&ConfigFile>) -> Result<Settings, Missing> {
    let with_file = file.is_some();
    let empty = ConfigFile::default();
    let f = file.unwrap_or(&empty);
    let zk_file = f.zookeeper.as_ref();
    let metrics = f.metrics.as_ref();
    let log = f.log.as_ref();
    let timeouts = f.timeouts.as_ref();
    let dur = |o: Option<Duration>, file: Option<Duration>, default: Duration| {
        o.or(file).unwrap_or(default)
    };
    let required = |o: Option<String>,
                    file: Option<&crate::config::HttpUrl>,
                    what,
                    flag,
                    env,
                    key|
     -> Result<String, Missing> {
        o.or_else(|| file.map(|u| u.0.clone())).ok_or(Missing {
            what,
            flag,
            env,
            key,
            with_file,
        })
    };
    let zk = over
        .zk
        .or_else(|| zk_file.map(|z| z.servers.connect_string()))
        .ok_or(Missing {
            what: "ZooKeeper",
            flag: "--zk",
            env: "TRITONCTL_ZK",
            key: "zookeeper.servers",
            with_file,
        })?;
    let sapi = required(
        over.sapi,
        f.sapi_url.as_ref(),
        "SAPI URL",
        "--sapi",
        "TRITONCTL_SAPI",
        "sapi_url",
    )?;
    let vmapi = required(
        over.vmapi,
        f.vmapi_url.as_ref(),
        "VMAPI URL",
        "--vmapi",
        "TRITONCTL_VMAPI",
        "vmapi_url",
    )?;
    let cnapi = required(
        over.cnapi,
        f.cnapi_url.as_ref(),
        "CNAPI URL",
        "--cnapi",
        "TRITONCTL_CNAPI",
        "cnapi_url",
    )?;
    let imgapi = required(
        over.imgapi,
        f.imgapi_url.as_ref(),
        "IMGAPI URL",
        "--imgapi",
        "TRITONCTL_IMGAPI",
        "imgapi_url",
    )?;
    let default_metrics: SocketAddr = DEFAULT_METRICS_ADDR.parse().expect("a socket address");
    Ok(Settings {
        zk,
        session_timeout: dur(
            over.session_timeout,
            zk_file.and_then(|z| z.session_timeout).map(|d| d.0),
            DEFAULT_SESSION_TIMEOUT,
        ),
        endpoints: Endpoints {
            sapi,
            vmapi,
            cnapi,
            imgapi,
        },
        credentials_file: f.credentials_file.as_ref().map(|p| p.0.clone()),
        metrics_addr: over
            .metrics_addr
            .or_else(|| metrics.and_then(|m| m.addr).map(|a| a.0))
            .unwrap_or(Some(default_metrics)),
        metrics_allow_remote: over
            .metrics_allow_remote
            .or_else(|| metrics.and_then(|m| m.allow_remote))
            .unwrap_or(false),
        log_format: over
            .log_format
            .or_else(|| log.and_then(|l| l.format).map(|v| v.0))
            .unwrap_or(LogFormat::Text),
        log_level: over
            .log_level
            .or_else(|| log.and_then(|l| l.level.clone()).map(|l| l.0))
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string()),
        poll_interval: dur(
            over.poll_interval,
            f.poll_interval.map(|d| d.0),
            DEFAULT_POLL_INTERVAL,
        ),
        step_poll: dur(over.step_poll, f.step_poll.map(|d| d.0), DEFAULT_STEP_POLL),
        concurrency: over
            .concurrency
            .or(f.concurrency.map(|c| c.0))
            .unwrap_or(DEFAULT_CONCURRENCY),
        shutdown_grace: dur(
            over.shutdown_grace,
            f.shutdown_grace.map(|d| d.0),
            DEFAULT_SHUTDOWN_GRACE,
        ),
        api_timeout: dur(
            over.api_timeout,
            timeouts.and_then(|t| t.api).map(|d| d.0),
            DEFAULT_API_TIMEOUT,
        ),
        sapi_job_timeout: dur(
            over.sapi_job_timeout,
            timeouts.and_then(|t| t.sapi_job).map(|d| d.0),
            DEFAULT_SAPI_JOB_TIMEOUT,
        ),
        sapi_delete_timeout: dur(
            over.sapi_delete_timeout,
            timeouts.and_then(|t| t.sapi_delete).map(|d| d.0),
            DEFAULT_SAPI_DELETE_TIMEOUT,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
      "zookeeper": {"servers": [{"host": "10.0.0.1", "port": 2181}], "session_timeout": "4s"},
      "sapi_url": "http://sapi.file", "vmapi_url": "http://vmapi.file",
      "cnapi_url": "http://cnapi.file", "imgapi_url": "http://imgapi.file",
      "credentials_file": "/etc/tritonctl/credentials",
      "metrics": {"addr": "off"},
      "log": {"level": "debug", "format": "json"},
      "poll_interval": "5s", "concurrency": 2,
      "timeouts": {"sapi_job": "2h"}
    }"#;

    fn file() -> ConfigFile {
        ConfigFile::parse("f.json", FILE).unwrap()
    }

    #[test]
    fn the_file_fills_what_no_flag_gives_and_defaults_the_rest() {
        let s = resolve(Overrides::default(), Some(&file())).unwrap();
        assert_eq!(s.zk, "10.0.0.1:2181");
        assert_eq!(s.session_timeout, Duration::from_secs(4));
        assert_eq!(s.endpoints.sapi, "http://sapi.file");
        assert_eq!(s.endpoints.imgapi, "http://imgapi.file");
        assert_eq!(
            s.credentials_file.as_deref(),
            Some(std::path::Path::new("/etc/tritonctl/credentials"))
        );
        assert_eq!(s.metrics_addr, None, "`off` in the file");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.sapi_job_timeout, Duration::from_secs(7200));
        // Not in the file: defaults.
        assert_eq!(s.step_poll, DEFAULT_STEP_POLL);
        assert_eq!(s.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(s.api_timeout, DEFAULT_API_TIMEOUT);
        assert_eq!(s.sapi_delete_timeout, DEFAULT_SAPI_DELETE_TIMEOUT);
        assert!(!s.metrics_allow_remote);
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let over = Overrides {
            zk: Some("127.0.0.1:2181".into()),
            session_timeout: Some(Duration::from_secs(1)),
            sapi: Some("http://127.0.0.1:1".into()),
            metrics_addr: Some(Some("127.0.0.1:0".parse().unwrap())),
            log_format: Some(LogFormat::Text),
            log_level: Some("warn".into()),
            poll_interval: Some(Duration::from_secs(1)),
            concurrency: Some(8),
            sapi_job_timeout: Some(Duration::from_secs(60)),
            ..Overrides::default()
        };
        let s = resolve(over, Some(&file())).unwrap();
        assert_eq!(s.zk, "127.0.0.1:2181");
        assert_eq!(s.session_timeout, Duration::from_secs(1));
        assert_eq!(s.endpoints.sapi, "http://127.0.0.1:1");
        assert_eq!(s.endpoints.vmapi, "http://vmapi.file", "not overridden");
        assert_eq!(s.metrics_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.poll_interval, Duration::from_secs(1));
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.sapi_job_timeout, Duration::from_secs(60));
    }

    #[test]
    fn without_a_file_flags_alone_suffice_and_defaults_are_the_old_ones() {
        let over = Overrides {
            zk: Some("127.0.0.1:2181".into()),
            sapi: Some("http://s".into()),
            vmapi: Some("http://v".into()),
            cnapi: Some("http://c".into()),
            imgapi: Some("http://i".into()),
            ..Overrides::default()
        };
        let s = resolve(over, None).unwrap();
        assert_eq!(s.metrics_addr, Some(DEFAULT_METRICS_ADDR.parse().unwrap()));
        assert_eq!(s.session_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(s.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(s.sapi_job_timeout, DEFAULT_SAPI_JOB_TIMEOUT);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.credentials_file, None);
    }

    #[test]
    fn a_required_setting_given_nowhere_names_flag_variable_and_key() {
        let e = resolve(Overrides::default(), None).unwrap_err();
        assert_eq!(e.key, "zookeeper.servers");
        let msg = e.to_string();
        assert!(
            msg.contains("--zk") && msg.contains("TRITONCTL_ZK"),
            "{msg}"
        );
        assert!(msg.contains("no --config file was given"), "{msg}");

        let partial = ConfigFile::parse(
            "p.json",
            r#"{"zookeeper": {"servers": [{"host": "a", "port": 1}]}, "sapi_url": "http://s"}"#,
        )
        .unwrap();
        let e = resolve(Overrides::default(), Some(&partial)).unwrap_err();
        assert_eq!(e.key, "vmapi_url");
        assert!(
            e.to_string().contains("--vmapi (or TRITONCTL_VMAPI)"),
            "{e}"
        );
        assert!(!e.to_string().contains("no --config"), "{e}");
    }

    #[test]
    fn the_decided_settings_print_as_json_with_durations_readable() {
        let s = resolve(Overrides::default(), Some(&file())).unwrap();
        let j = s.to_json();
        assert_eq!(j["zk"], "10.0.0.1:2181");
        assert_eq!(j["metrics"]["addr"], "off");
        assert_eq!(j["step_poll"], "200ms");
        assert_eq!(j["timeouts"]["sapi_job"], "7200s");
    }
}
