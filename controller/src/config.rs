//! `tritonctl controller --config FILE`: the controller's whole
//! configuration in one JSON file, as config-agent renders it from SAPI
//! metadata (`sapi_manifests/tritonctl/template`).
//!
//! Every key is optional in the file; flags and environment override it
//! (`config_resolve.rs`). Unknown keys are refused, and so is any value the
//! controller could not use: each error names the file, the line and
//! column, the key (`zookeeper.servers[0].port`) and the reason, so a
//! mistyped SAPI metadata value stops the start instead of running with a
//! default.
//!
//! ```json
//! {
//!   "zookeeper": {
//!     "servers": [{"host": "10.99.99.11", "port": 2181}],
//!     "session_timeout": "10s"
//!   },
//!   "sapi_url": "http://sapi.coal.example.com",
//!   "vmapi_url": "http://vmapi.coal.example.com",
//!   "cnapi_url": "http://cnapi.coal.example.com",
//!   "imgapi_url": "http://imgapi.coal.example.com",
//!   "credentials_file": "/opt/smartdc/tritonctl/etc/credentials",
//!   "metrics": {"addr": "127.0.0.1:9464", "allow_remote": false},
//!   "log": {"level": "info", "format": "json"},
//!   "poll_interval": "30s",
//!   "step_poll": "200ms",
//!   "concurrency": 4,
//!   "shutdown_grace": "10s",
//!   "timeouts": {"api": "30s", "sapi_job": "65m", "sapi_delete": "11m"}
//! }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::logging::LogFormat;

/// The largest file read (a rendered config is a few hundred bytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The configuration file, as written. Every key may be left out.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub zookeeper: Option<ZookeeperSection>,
    pub sapi_url: Option<HttpUrl>,
    pub vmapi_url: Option<HttpUrl>,
    pub cnapi_url: Option<HttpUrl>,
    pub imgapi_url: Option<HttpUrl>,
    /// A file holding `IDENTITY:SECRET`, mode 0600 (`auth::credentials`).
    pub credentials_file: Option<NonEmptyPath>,
    pub metrics: Option<MetricsSection>,
    pub log: Option<LogSection>,
    pub poll_interval: Option<ConfigDuration>,
    pub step_poll: Option<ConfigDuration>,
    pub concurrency: Option<Concurrency>,
    pub shutdown_grace: Option<ConfigDuration>,
    pub timeouts: Option<TimeoutsSection>,
}

/// `ZK_SERVERS` as SAPI holds it: `[{host, port}]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZookeeperSection {
    pub servers: ZkServers,
    pub session_timeout: Option<ConfigDuration>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "Vec<ZkServer>")]
pub struct ZkServers(pub Vec<ZkServer>);

impl TryFrom<Vec<ZkServer>> for ZkServers {
    type Error = String;
    fn try_from(v: Vec<ZkServer>) -> Result<Self, String> {
        if v.is_empty() {
            return Err(
                "no ZooKeeper server: list at least one {\"host\", \"port\"} \
                 (SAPI's ZK_SERVERS)"
                    .into(),
            );
        }
        Ok(ZkServers(v))
    }
}

impl ZkServers {
    /// `host:port,host:port`, as ZooKeeper clients take it.
    pub fn connect_string(&self) -> String {
        self.0
            .iter()
            .map(|s| {
                if s.host.0.contains(':') {
                    format!("[{}]:{}", s.host.0, s.port.0)
                } else {
                    format!("{}:{}", s.host.0, s.port.0)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZkServer {
    pub host: Host,
    pub port: Port,
}

/// A host name or IP address, without a port.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Host(pub String);

impl TryFrom<String> for Host {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty host (is the SAPI metadata key behind it set?)".into());
        }
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Host(s));
        }
        let ok = s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(Host(s))
        } else {
            Err(format!("`{s}` is not a host name or an IP address"))
        }
    }
}

/// A TCP port, 1..65535.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "u64")]
pub struct Port(pub u16);

impl TryFrom<u64> for Port {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Port(p)),
            _ => Err(format!("{n} is not a port (1..65535)")),
        }
    }
}

/// An `http://` or `https://` URL with a host.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(pub String);

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty URL (is the SAPI metadata key behind it set?)".into());
        }
        let url = reqwest::Url::parse(&s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{s}`: the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{s}` has no host"));
        }
        Ok(HttpUrl(s))
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct NonEmptyPath(pub PathBuf);

impl TryFrom<String> for NonEmptyPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty path".into());
        }
        if !s.starts_with('/') {
            return Err(format!(
                "`{s}` is relative; give an absolute path (SMF starts the controller in /)"
            ));
        }
        Ok(NonEmptyPath(PathBuf::from(s)))
    }
}

/// A duration in the documents' syntax: `90s`, `15m`, `1h30m`, `200ms`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct ConfigDuration(pub Duration);

impl TryFrom<String> for ConfigDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = crds::common::parse_duration(&s)?;
        if d.is_zero() {
            return Err(format!("`{s}`: must be longer than zero"));
        }
        Ok(ConfigDuration(d))
    }
}

/// Reconciles at once, 1..=256.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "u64")]
pub struct Concurrency(pub usize);

impl TryFrom<u64> for Concurrency {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        if (1..=256).contains(&n) {
            Ok(Concurrency(n as usize))
        } else {
            Err(format!("{n}: give 1 to 256 reconciles at once"))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub addr: Option<MetricsAddrValue>,
    pub allow_remote: Option<bool>,
}

/// `HOST:PORT`, or `off` for no metrics server.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct MetricsAddrValue(pub Option<SocketAddr>);

impl TryFrom<String> for MetricsAddrValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "off" {
            return Ok(MetricsAddrValue(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| MetricsAddrValue(Some(a)))
            .map_err(|e| format!("`{s}` is not an address like 127.0.0.1:9464 (or `off`): {e}"))
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: Option<LogLevel>,
    pub format: Option<LogFormatValue>,
}

/// A `RUST_LOG`-style filter: `info`, `debug`, `info,tritonctl=debug`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogLevel(pub String);

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
        if s.trim().is_empty() {
            return Err("empty log level; give trace, debug, info, warn or error".into());
        }
        // A bare word must be a level (a bare target name like `loud`
        // would silently log only that target).
        if !s.contains(['=', ',']) && !LEVELS.contains(&s.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{s}` is not a log level (trace, debug, info, warn, error) or filter"
            ));
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(&s)
            .map(|_| LogLevel(s.clone()))
            .map_err(|e| {
                format!("`{s}` is not a log level (trace, debug, info, warn, error) or filter: {e}")
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogFormatValue(pub LogFormat);

impl TryFrom<String> for LogFormatValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "json" | "bunyan" => Ok(LogFormatValue(LogFormat::Json)),
            "text" => Ok(LogFormatValue(LogFormat::Text)),
            _ => Err(format!(
                "`{s}`: the log format is `json` (bunyan's layout) or `text`"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    pub api: Option<ConfigDuration>,
    pub sapi_job: Option<ConfigDuration>,
    pub sapi_delete: Option<ConfigDuration>,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {message}")]
    Unreadable { path: String, message: String },
    #[error("{path}: {size} bytes; a configuration file is at most {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String, size: u64 },
    /// A key (or the JSON itself) is wrong; `key` is empty for JSON syntax.
    #[error("{path}:{line}:{column}: {}{reason}", key_prefix(.key))]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        key: String,
        reason: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// The key the error is about (empty for a JSON syntax error).
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Invalid { key, .. } => key,
            _ => "",
        }
    }
}

impl ConfigFile {
    /// Parse `text`, read from `path` (only named in errors).
    pub fn parse(path: &str, text: &str) -> Result<ConfigFile, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let parsed: Result<ConfigFile, _> = serde_path_to_error::deserialize(de);
        let file = parsed.map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Invalid {
                path: path.to_string(),
                line: inner.line(),
                column: inner.column(),
                key: if key == "." || key == "?" {
                    String::new()
                } else {
                    key
                },
                reason: reason_of(&inner),
            }
        })?;
        Ok(file)
    }

    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let shown = path.display().to_string();
        let unreadable = |e: std::io::Error| ConfigError::Unreadable {
            path: shown.clone(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: shown,
                size: meta.len(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        ConfigFile::parse(&shown, &text)
    }
}

/// serde_json's message without its own " at line L column C" tail (the
/// error names the position already).
fn reason_of(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        ConfigFile::parse("tritonctl.json", text).unwrap_err()
    }

    #[test]
    fn a_full_file_parses() {
        let text = r#"{
  "zookeeper": {"servers": [{"host": "10.99.99.11", "port": 2181},
                            {"host": "zk2.example.com", "port": 2182}],
                "session_timeout": "5s"},
  "sapi_url": "http://sapi.coal.example.com",
  "vmapi_url": "http://10.99.99.27",
  "cnapi_url": "https://cnapi.coal.example.com:8443",
  "imgapi_url": "http://imgapi.coal.example.com",
  "credentials_file": "/opt/smartdc/tritonctl/etc/credentials",
  "metrics": {"addr": "0.0.0.0:9464", "allow_remote": true},
  "log": {"level": "debug", "format": "json"},
  "poll_interval": "30s", "step_poll": "200ms", "concurrency": 2,
  "shutdown_grace": "10s",
  "timeouts": {"api": "30s", "sapi_job": "65m", "sapi_delete": "11m"}
}"#;
        let f = ConfigFile::parse("x", text).unwrap();
        let zk = f.zookeeper.unwrap();
        assert_eq!(
            zk.servers.connect_string(),
            "10.99.99.11:2181,zk2.example.com:2182"
        );
        assert_eq!(zk.session_timeout.unwrap().0, Duration::from_secs(5));
        assert_eq!(f.concurrency.unwrap().0, 2);
        assert_eq!(f.log.unwrap().format.unwrap().0, LogFormat::Json);
        assert_eq!(
            f.timeouts.unwrap().sapi_job.unwrap().0,
            Duration::from_secs(65 * 60)
        );
        assert_eq!(ConfigFile::parse("x", "{}").unwrap(), ConfigFile::default());
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_position() {
        let e = err("{\n  \"sapi_url\": \"http://sapi\",\n  \"vmapi\": \"http://vmapi\"\n}");
        let msg = e.to_string();
        assert!(msg.starts_with("tritonctl.json:3:"), "{msg}");
        assert!(msg.contains("unknown field `vmapi`"), "{msg}");
        let e = err(r#"{"zookeeper": {"servers": [{"host": "a", "port": 1, "num": 1}]}}"#);
        assert!(e.to_string().contains("unknown field `num`"), "{e}");
        assert_eq!(e.key(), "zookeeper.servers[0].num");
    }

    #[test]
    fn bad_values_name_the_key_and_the_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"sapi_url": ""}"#, "sapi_url", "empty URL"),
            (r#"{"vmapi_url": "ftp://x"}"#, "vmapi_url", "scheme"),
            (r#"{"cnapi_url": "not a url"}"#, "cnapi_url", "not a URL"),
            (
                r#"{"zookeeper": {"servers": []}}"#,
                "zookeeper.servers",
                "no ZooKeeper server",
            ),
            (
                r#"{"zookeeper": {"servers": [{"host": "10.0.0.1", "port": 70000}]}}"#,
                "zookeeper.servers[0].port",
                "not a port",
            ),
            (
                r#"{"zookeeper": {"servers": [{"host": "", "port": 2181}]}}"#,
                "zookeeper.servers[0].host",
                "empty host",
            ),
            (
                r#"{"zookeeper": {"servers": [{"host": "a b", "port": 2181}]}}"#,
                "zookeeper.servers[0].host",
                "not a host name",
            ),
            (r#"{"poll_interval": "soon"}"#, "poll_interval", "duration"),
            (r#"{"step_poll": "0s"}"#, "step_poll", "longer than zero"),
            (r#"{"concurrency": 0}"#, "concurrency", "1 to 256"),
            (
                r#"{"metrics": {"addr": "localhost"}}"#,
                "metrics.addr",
                "not an address",
            ),
            (r#"{"log": {"level": "loud"}}"#, "log.level", "log level"),
            (r#"{"log": {"format": "xml"}}"#, "log.format", "json"),
            (
                r#"{"credentials_file": "etc/credentials"}"#,
                "credentials_file",
                "relative",
            ),
            (
                r#"{"timeouts": {"sapi_job": "forever"}}"#,
                "timeouts.sapi_job",
                "duration",
            ),
            (
                r#"{"metrics": {"allow_remote": "yes"}}"#,
                "metrics.allow_remote",
                "boolean",
            ),
        ];
        for (text, key, reason) in cases {
            let e = err(text);
            assert_eq!(e.key(), *key, "{text}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(reason), "{text}: {msg}");
            assert!(msg.starts_with("tritonctl.json:1:"), "{msg}");
            assert!(msg.contains(&format!("{key}: ")), "{msg}");
        }
    }

    #[test]
    fn broken_json_names_the_position() {
        let e = err("{\n  \"sapi_url\": \"http://sapi\",\n}");
        let msg = e.to_string();
        assert!(msg.starts_with("tritonctl.json:3:1: "), "{msg}");
        assert_eq!(e.key(), "");
        let e = err("");
        assert!(e.to_string().contains("EOF"), "{e}");
    }

    #[test]
    fn unreadable_and_oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        assert!(matches!(
            ConfigFile::read(&missing),
            Err(ConfigError::Unreadable { .. })
        ));
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
        assert!(matches!(
            ConfigFile::read(&big),
            Err(ConfigError::TooLarge { .. })
        ));
    }
}
