//! `tritonctl controller --config FILE` as a command: an invalid file stops
//! the start (exit 1) naming FILE:LINE:COLUMN, the key and the reason; flags
//! and environment win over the file (`--check-config` prints what was
//! decided, and starts nothing).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const GOOD: &str = r#"{
  "zookeeper": {"servers": [{"host": "10.99.99.11", "port": 2181}], "session_timeout": "4s"},
  "sapi_url": "http://sapi.file",
  "vmapi_url": "http://vmapi.file",
  "cnapi_url": "http://cnapi.file",
  "imgapi_url": "http://imgapi.file",
  "metrics": {"addr": "off"},
  "poll_interval": "5s"
}"#;

fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(e2e::tritonctl_bin());
    for k in [
        "TRITONCTL_ZK",
        "TRITONCTL_SAPI",
        "TRITONCTL_VMAPI",
        "TRITONCTL_CNAPI",
        "TRITONCTL_IMGAPI",
        "TRITONCTL_CONFIG",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let (global, local): (Vec<&str>, Vec<&str>) = (
        args.iter()
            .copied()
            .take_while(|a| *a != "controller")
            .collect(),
        args.iter()
            .copied()
            .skip_while(|a| *a != "controller")
            .skip(1)
            .collect(),
    );
    cmd.args(global)
        .arg("controller")
        .arg("--config")
        .arg(config)
        .args(local)
        .output()
        .unwrap()
}

fn decided(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_invalid_config_stops_the_start_naming_file_line_column_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, GOOD.replace("\"port\": 2181", "\"port\": 0")).unwrap();
    // Not --check-config: the start itself stops, before any connection.
    let out = run(&path, &["controller"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:2:", path.display());
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        stderr.contains("zookeeper.servers[0].port: 0 is not a port"),
        "{stderr}"
    );

    std::fs::write(&path, GOOD.replace("\"poll_interval\"", "\"poll\"")).unwrap();
    let out = run(&path, &["controller"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `poll`"), "{stderr}");

    let out = run(&dir.path().join("none.json"), &["controller"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn flags_and_environment_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, GOOD).unwrap();

    let d = decided(&run(&path, &["controller", "--check-config"], &[]));
    assert_eq!(d["zk"], "10.99.99.11:2181");
    assert_eq!(d["session_timeout"], "4s");
    assert_eq!(d["sapi_url"], "http://sapi.file");
    assert_eq!(d["metrics"]["addr"], "off");
    assert_eq!(d["poll_interval"], "5s");
    assert_eq!(d["concurrency"], 4, "the default");

    let d = decided(&run(
        &path,
        &[
            "--zk",
            "127.0.0.1:2181",
            "--session-timeout",
            "2s",
            "controller",
            "--check-config",
            "--sapi",
            "http://127.0.0.1:1",
            "--poll-interval",
            "1s",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &[
            ("TRITONCTL_VMAPI", "http://127.0.0.1:2"),
            ("RUST_LOG", "debug"),
        ],
    ));
    assert_eq!(d["zk"], "127.0.0.1:2181");
    assert_eq!(d["session_timeout"], "2s");
    assert_eq!(d["sapi_url"], "http://127.0.0.1:1");
    assert_eq!(d["vmapi_url"], "http://127.0.0.1:2", "the environment");
    assert_eq!(d["cnapi_url"], "http://cnapi.file", "still the file");
    assert_eq!(d["poll_interval"], "1s");
    assert_eq!(d["metrics"]["addr"], "127.0.0.1:0");
    assert_eq!(d["log"]["level"], "debug");

    // A flag wins over its own variable too.
    let d = decided(&run(
        &path,
        &["controller", "--check-config", "--sapi", "http://flag"],
        &[("TRITONCTL_SAPI", "http://env")],
    ));
    assert_eq!(d["sapi_url"], "http://flag");
}

#[test]
fn without_a_config_the_missing_setting_is_named_with_its_flag_variable_and_key() {
    let out = Command::new(e2e::tritonctl_bin())
        .args(["controller", "--sapi", "http://s", "--check-config"])
        .env_remove("TRITONCTL_ZK")
        .env_remove("TRITONCTL_CONFIG")
        .env_remove("TRITONCTL_VMAPI")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--zk (or TRITONCTL_ZK), or `zookeeper.servers` in the --config file"),
        "{stderr}"
    );
}
