//! The controller deployed the way Triton runs its own services (issue #22):
//!
//! - `smf/manifests/tritonctl.xml` is valid against SMF's service bundle DTD
//!   (`smf/dtd/`, from illumos-gate), and a manifest missing what the DTD
//!   requires is refused, so the check is not vacuous;
//! - `sapi_manifests/tritonctl/template`, rendered by a mustache
//!   implementation (the `mustache2` crate; config-agent uses hogan.js)
//!   from the metadata the lab simulator's SAPI gives a `tritonctl` zone,
//!   is a file the controller accepts (`--check-config`), and a missing
//!   metadata key is refused naming the key;
//! - `boot/setup.sh` checks the rendered file before it imports and enables
//!   the SMF service;
//! - two controller zones deployed through SAPI: the leader's zone is
//!   killed mid-upgrade, the standby takes over and finishes the manatee
//!   upgrade, each manatee zone reprovisioned exactly once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::testing::ZkServer;
use coord::{Coordination, ZkCoordination};
use crds::{ConditionType, Document, Kind};
use serde_json::{Value, json};
use sim::controller_zone::{ControllerZoneOptions, ControllerZones, Render, render_view};
use sim::manatee::{SessionProvider, ZkProvider};
use sim::scenario::{ScenarioOptions, SimScenario, images};
use tritonctl::config::ConfigFile;
use tritonctl::store::Store;

fn repo_file(path: &str) -> PathBuf {
    e2e::repo().join(path)
}

/// The template, read once (the renderer's provider holds `'static` text).
fn template() -> &'static str {
    static TEMPLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        std::fs::read_to_string(repo_file("sapi_manifests/tritonctl/template")).unwrap()
    })
}

/// config-agent's rendering, with a mustache implementation.
fn mustache_render(template: &'static str, view: &Value) -> Result<String, String> {
    use mustache2::render::{RenderManager, SourceCache, provider::StaticProvider};
    let cache = SourceCache::default();
    let mut renderer = RenderManager::new(
        StaticProvider(HashMap::from([("template", template)])),
        &cache,
    );
    let mut out = String::new();
    renderer
        .render_serde_to(&mut out, "template", view)
        .map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

fn renderer() -> Render {
    Arc::new(|view: &Value| mustache_render(template(), view))
}

fn parse(path: &str) -> Document {
    let text = std::fs::read_to_string(repo_file(path)).unwrap();
    let (mut docs, diags) = crds::parse_documents(path, &text);
    assert!(diags.is_empty(), "{diags:?}");
    docs.remove(0).document
}

fn xmllint() -> &'static str {
    let ok = Command::new("xmllint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "xmllint is missing: install libxml2-utils (scripts/test does)"
    );
    "xmllint"
}

fn validate_smf(manifest: &Path) -> (bool, String) {
    let out = Command::new(xmllint())
        .args(["--noout", "--nonet", "--dtdvalid"])
        .arg(repo_file("smf/dtd/service_bundle.dtd.1"))
        .arg(manifest)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_smf_manifest_is_valid_against_the_service_bundle_dtd() {
    let manifest = repo_file("smf/manifests/tritonctl.xml");
    let (ok, stderr) = validate_smf(&manifest);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");

    // What the service promises, in the manifest itself.
    let text = std::fs::read_to_string(&manifest).unwrap();
    for needle in [
        "svc:/network/physical",
        "svc:/smartdc/application/config-agent",
        "controller --config %{tritonctl/config} &amp;",
        "name=\"stop\" exec=\":kill\"",
        "/opt/smartdc/tritonctl/etc/config.json",
    ] {
        assert!(text.contains(needle), "the manifest lacks {needle}");
    }

    // The DTD bites: a stop method without its timeout, or a dependency
    // with a restart_on SMF does not know, is refused.
    let dir = tempfile::tempdir().unwrap();
    for (from, to, why) in [
        (
            "exec=\":kill\" timeout_seconds=\"60\"",
            "exec=\":kill\"",
            "timeout_seconds",
        ),
        ("restart_on=\"none\"", "restart_on=\"exit3\"", "restart_on"),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = dir.path().join("bad.xml");
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let (ok, stderr) = validate_smf(&bad);
        assert!(!ok, "a manifest with {to} passed");
        assert!(stderr.contains(why), "{stderr}");
    }
}

#[test]
fn the_sapi_manifest_names_the_file_the_smf_service_reads() {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("sapi_manifests/tritonctl/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["name"], "tritonctl");
    assert_eq!(m["path"], "/opt/smartdc/tritonctl/etc/config.json");
    let smf = std::fs::read_to_string(repo_file("smf/manifests/tritonctl.xml")).unwrap();
    assert!(smf.contains(m["path"].as_str().unwrap()));
    let unit = std::fs::read_to_string(repo_file("deploy/tritonctl.service")).unwrap();
    for needle in [
        "ExecStart=/usr/local/bin/tritonctl controller --config /etc/tritonctl/config.json",
        "Restart=always",
        "RestartPreventExitStatus=1",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(needle), "the systemd unit lacks {needle}");
    }
}

/// A simulated lab with its own ZooKeeper.
struct Lab {
    zk: ZkServer,
    scenario: SimScenario,
    http: reqwest::Client,
}

impl Lab {
    async fn start() -> Lab {
        let zk = ZkServer::start().await.expect("start ZooKeeper");
        let provider: Arc<dyn SessionProvider> = Arc::new(ZkProvider {
            connect_string: zk.connect_string(),
            session_timeout: Duration::from_secs(3),
        });
        let scenario = SimScenario::start(
            &[parse("examples/lab/headnodeset.yaml")],
            provider,
            ScenarioOptions {
                dc_time_scale: 1.0 / 1000.0,
                ..ScenarioOptions::default()
            },
        )
        .await
        .expect("the lab scenario starts");
        Lab {
            zk,
            scenario,
            http: tritonctl::clients::http_client(Duration::from_secs(120)),
        }
    }

    async fn sapi(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.scenario.servers.urls().sapi);
        let resp = self.http.post(&url).json(&body).send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    /// What an operator's deploy step puts on the `tritonctl` service:
    /// where the APIs and ZooKeeper are (the simulator's sdc application
    /// carries neither; a real one has ZK_SERVERS and SAPI_URL), and the
    /// knobs the test shortens.
    fn service_metadata(&self) -> Value {
        let urls = self.scenario.servers.urls();
        let port: u16 = self
            .zk
            .connect_string()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        json!({
            "SAPI_URL": urls.sapi,
            "VMAPI_URL": urls.vmapi,
            "CNAPI_URL": urls.cnapi,
            "IMGAPI_URL": urls.imgapi,
            "ZK_SERVERS": [{"host": "127.0.0.1", "port": port, "num": 1, "last": true}],
            "TRITONCTL_ZK_SESSION_TIMEOUT": "1s",
            "TRITONCTL_METRICS_ADDR": "127.0.0.1:0",
            "TRITONCTL_POLL_INTERVAL": "1s",
            "TRITONCTL_STEP_POLL": "50ms",
        })
    }

    /// `sdcadm`'s part: the image, the SAPI service, its instances.
    async fn deploy(&self, metadata: Value, servers: &[String]) -> Vec<String> {
        let dc = &self.scenario.dc;
        let image = dc.seed_image(sim::dc::seed::ImageSpec::new(
            "tritonctl",
            "release-20261206",
        ));
        let app = dc.application_by_name("sdc").expect("the sdc application");
        let svc = self
            .sapi(
                "/services",
                json!({
                    "name": "tritonctl",
                    "application_uuid": app.uuid,
                    "params": {
                        "image_uuid": image,
                        "networks": ["admin"],
                        "ram": 512,
                        "tags": {"smartdc_role": "tritonctl", "smartdc_type": "core"},
                    },
                    "metadata": metadata,
                }),
            )
            .await;
        let mut zones = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let inst = self
                .sapi(
                    "/instances",
                    json!({
                        "service_uuid": svc["uuid"],
                        "params": {"alias": format!("tritonctl{i}"), "server_uuid": server},
                    }),
                )
                .await;
            zones.push(inst["uuid"].as_str().unwrap().to_string());
        }
        zones
    }

    /// Two servers holding manatee zones (the lab's headnodes).
    fn two_servers(&self) -> Vec<String> {
        let mut servers: Vec<String> = self.scenario.shards["sdc"]
            .iter()
            .filter_map(|z| self.scenario.dc.vm(z).and_then(|v| v.server_uuid))
            .collect();
        servers.sort();
        servers.dedup();
        servers.truncate(2);
        assert_eq!(servers.len(), 2, "the lab has two servers at least");
        servers
    }
}

fn check_config(path: &Path) -> std::process::Output {
    Command::new(e2e::tritonctl_bin())
        .args(["controller", "--config"])
        .arg(path)
        .arg("--check-config")
        .env_remove("TRITONCTL_ZK")
        .env_remove("TRITONCTL_SAPI")
        .env_remove("TRITONCTL_VMAPI")
        .env_remove("TRITONCTL_CNAPI")
        .env_remove("TRITONCTL_IMGAPI")
        .env_remove("TRITONCTL_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_rendered_from_the_labs_sapi_metadata_is_a_config_the_controller_accepts() {
    let lab = Lab::start().await;
    let servers = lab.two_servers();
    let zones = lab.deploy(lab.service_metadata(), &servers[..1]).await;
    let zone = lab.scenario.dc.zone(&zones[0]).expect("the zone");
    let view = render_view(&zone);
    assert_eq!(view["auto"]["ZONENAME"], zones[0]);
    let text = mustache_render(template(), &view).unwrap();
    let cfg = ConfigFile::parse("config.json", &text)
        .unwrap_or_else(|e| panic!("{e}\n--- rendered ---\n{text}"));
    let urls = lab.scenario.servers.urls();
    assert_eq!(cfg.sapi_url.unwrap().0, urls.sapi);
    assert_eq!(
        cfg.zookeeper.as_ref().unwrap().servers.connect_string(),
        lab.zk.connect_string()
    );

    // The binary accepts the file and says what it decided.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, &text).unwrap();
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decided: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decided["zk"], lab.zk.connect_string());
    assert_eq!(decided["vmapi_url"], urls.vmapi);
    assert_eq!(decided["log"]["format"], "json");
    assert_eq!(decided["session_timeout"], "1s");
    assert_eq!(decided["step_poll"], "50ms");

    // Without the optional keys the template still renders valid JSON,
    // with the defaults (metrics on the zone's primary IP).
    let mut bare = view.clone();
    for k in ["TRITONCTL_ZK_SESSION_TIMEOUT", "TRITONCTL_METRICS_ADDR"] {
        bare.as_object_mut().unwrap().remove(k);
    }
    let text = mustache_render(template(), &bare).unwrap();
    let cfg = ConfigFile::parse("bare.json", &text)
        .unwrap_or_else(|e| panic!("{e}\n--- rendered ---\n{text}"));
    let ip = zone.vm.primary_ip().or(zone.vm.admin_ip()).unwrap();
    assert_eq!(
        cfg.metrics.unwrap().addr.unwrap().0.unwrap().to_string(),
        format!("{ip}:9464")
    );

    // A metadata key missing: the rendered file is refused naming it.
    let mut missing = view.clone();
    missing.as_object_mut().unwrap().remove("VMAPI_URL");
    let text = mustache_render(template(), &missing).unwrap();
    std::fs::write(&path, &text).unwrap();
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vmapi_url: empty URL"), "{stderr}");
    assert!(stderr.contains("config.json:"), "{stderr}");
    lab.scenario.shutdown().await;
}

/// `boot/setup.sh` with fake `svccfg`/`svcadm`: a bad configuration stops
/// it before the service is imported; a good one imports and enables it.
#[test]
fn the_setup_script_checks_the_config_before_it_enables_the_service() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("fakebin")).unwrap();
    std::os::unix::fs::symlink(e2e::tritonctl_bin(), r.join("bin/tritonctl")).unwrap();
    let calls = r.join("calls");
    for tool in ["svccfg", "svcadm"] {
        let p = r.join("fakebin").join(tool);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{tool} $*\" >> {}\n", calls.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = || {
        Command::new("bash")
            .arg(repo_file("boot/setup.sh"))
            .env("TRITONCTL_ROOT", r)
            .env("TRITONCTL_BOOT_UTIL", r.join("no-util.sh"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    r.join("fakebin").display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env_remove("TRITONCTL_ZK")
            .env_remove("TRITONCTL_CONFIG")
            .output()
            .unwrap()
    };
    std::fs::write(r.join("etc/config.json"), r#"{"sapi_url": ""}"#).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sapi_url: empty URL"), "{stderr}");
    assert!(!calls.exists(), "nothing imported after a bad config");

    std::fs::write(
        r.join("etc/config.json"),
        r#"{"zookeeper": {"servers": [{"host": "127.0.0.1", "port": 2181}]},
            "sapi_url": "http://127.0.0.1:1", "vmapi_url": "http://127.0.0.1:2",
            "cnapi_url": "http://127.0.0.1:3", "imgapi_url": "http://127.0.0.1:4"}"#,
    )
    .unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        calls,
        format!(
            "svccfg import {}/smf/manifests/tritonctl.xml\nsvcadm enable tritonctl\n",
            r.display()
        )
    );
}

fn leader_pid(data: &[u8]) -> Option<u32> {
    String::from_utf8_lossy(data)
        .rsplit_once("pid ")
        .and_then(|(_, p)| p.trim().parse().ok())
}

/// The leading controller's PID, and when its election node was created
/// (ms since the epoch).
async fn leader(admin: &Arc<dyn Coordination>) -> Option<(u32, i64)> {
    let dir = tritonctl::layout::leader_dir();
    let mut children = admin.children(&dir).await.ok()?;
    children.sort_by_key(|c| coord::split_sequence(c).map(|(_, s)| s));
    let first = children.first()?;
    let (data, stat) = admin.get(&format!("{dir}/{first}")).await.ok()?;
    Some((leader_pid(&data)?, stat.ctime_ms))
}

async fn leading_pid(admin: &Arc<dyn Coordination>) -> Option<u32> {
    leader(admin).await.map(|(pid, _)| pid)
}

fn log_tails(zones: &ControllerZones) -> String {
    let mut out = String::new();
    for z in zones.records().keys() {
        let text = std::fs::read_to_string(zones.log_path(z)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out += &format!("--- {z} ---\n");
        out += &lines[lines.len().saturating_sub(12)..].join("\n");
        out += "\n";
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controller_zones_deployed_through_sapi_the_standby_finishes_the_upgrade_when_the_leaders_zone_is_killed()
 {
    let lab = Lab::start().await;
    let root = tempfile::tempdir().unwrap();
    let controllers = ControllerZones::start(
        lab.scenario.dc.clone(),
        ControllerZoneOptions {
            binary: e2e::tritonctl_bin(),
            render: renderer(),
            root: root.path().to_path_buf(),
            env: vec![("RUST_LOG".into(), "info".into())],
        },
    );
    let servers = lab.two_servers();
    let zones = lab.deploy(lab.service_metadata(), &servers).await;
    assert_eq!(zones.len(), 2);

    let admin: Arc<dyn Coordination> =
        ZkCoordination::connect(&lab.zk.connect_string(), Duration::from_secs(10))
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let wait = |what: &str| {
        assert!(
            Instant::now() < deadline,
            "{what}: not by the deadline\n{}",
            log_tails(&controllers)
        );
    };

    // Both zones run a controller; one of them leads.
    let (leader_zone, elected_ms) = loop {
        wait("a controller zone leads");
        if let Some((pid, ctime)) = leader(&admin).await
            && let Some(z) = controllers.zone_of_pid(pid)
        {
            break (z, ctime);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Measured, never asserted: the leader's process start to the creation
    // of its election node (the first candidate leads from then).
    if let Some(started) = controllers.record(&leader_zone).and_then(|r| r.started_at) {
        let started_ms = started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        eprintln!(
            "start to leader: {} ms (process spawned -> its election node created)",
            elected_ms - started_ms
        );
    }
    let standby_zone = zones.iter().find(|z| **z != leader_zone).unwrap().clone();
    let standby_pid = controllers
        .record(&standby_zone)
        .and_then(|r| r.pid)
        .expect("the standby runs");
    for z in &zones {
        let cfg = ConfigFile::read(&controllers.config_path(z)).unwrap();
        assert_eq!(
            cfg.zookeeper.unwrap().servers.connect_string(),
            lab.zk.connect_string()
        );
    }

    // The upgrade, applied as an operator would.
    let store = Store::new(admin.clone());
    store.init().await.unwrap();
    store
        .apply(&[
            parse("examples/lab/headnodeset.yaml"),
            parse("examples/lab/manatee.yaml"),
        ])
        .await
        .unwrap();

    // Mid-upgrade (a manatee zone is being reprovisioned), kill the
    // leader's zone through VMAPI.
    let dc = &lab.scenario.dc;
    loop {
        wait("the upgrade reprovisions a zone");
        if dc.jobs().iter().any(|j| j.name.starts_with("reprovision")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reprovisions_at_kill = dc
        .jobs()
        .iter()
        .filter(|j| j.name.starts_with("reprovision"))
        .count();
    assert!(
        reprovisions_at_kill < lab.scenario.shards["sdc"].len(),
        "the upgrade is not over when the leader's zone is killed"
    );
    let url = format!(
        "{}/vms/{leader_zone}?action=kill",
        lab.scenario.servers.urls().vmapi
    );
    let resp = lab.http.post(&url).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    // The standby leads, and finishes.
    loop {
        wait("the standby leads");
        if leading_pid(&admin).await == Some(standby_pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        wait("the upgrade finishes under the standby");
        if matches!(
            store.status(Kind::ManateeVersion, "sdc").await,
            Ok(Some(st)) if st.is_true(ConditionType::Ready)
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The killed zone's process died by the signal and was not restarted
    // (its zone is down); the standby never restarted.
    let records = controllers.records();
    let killed = &records[&leader_zone];
    assert_eq!(killed.pid, None, "{killed:?}");
    assert_eq!(killed.exits, vec![None], "SIGKILLed: {killed:?}");
    let standby = &records[&standby_zone];
    assert_eq!(standby.starts, 1, "{standby:?}");
    assert_eq!(standby.pid, Some(standby_pid));

    // Every manatee zone runs the target image, reprovisioned exactly once.
    let mut reprovisions: BTreeMap<String, usize> = BTreeMap::new();
    for job in dc.jobs() {
        if job.name.starts_with("reprovision") {
            let vm = job.params["vm_uuid"].as_str().unwrap_or("?").to_string();
            *reprovisions.entry(vm).or_default() += 1;
        }
    }
    for z in &lab.scenario.shards["sdc"] {
        assert_eq!(reprovisions.get(z), Some(&1), "{reprovisions:?}");
        assert_eq!(
            dc.vm(z).unwrap().image_uuid.as_deref(),
            Some(images::MANATEE_V2_NEXT)
        );
    }
    eprintln!(
        "leader zone {leader_zone} killed mid-upgrade; standby {standby_zone} (pid {standby_pid}) finished; reprovisions {reprovisions:?}"
    );
    controllers.shutdown();
    lab.scenario.shutdown().await;
}
