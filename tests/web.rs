//! The web view in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, which `scripts/test` installs) driven over
//! WebDriver with fantoccini, against `tritonctl demo`'s lab: a simulated
//! datacenter, the controller serving its web view, and a manatee upgrade.
//!
//! Without the browser the test says so and passes, unless
//! `TRITONCTL_REQUIRE_BROWSER` is set (as `.ci/run` does). A screenshot of
//! each page is kept under `target/web-screenshots/`; with
//! `TRITONCTL_BLESS_SCREENSHOTS=1` the overview and the operation in
//! progress are also written to `docs/screenshots/` for the README.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crds::manatee::Strategy;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tritonctl::demo::{DemoOptions, WEB_LINE};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Generous bounds: a wait that runs out means the thing never happened.
const PATIENCE: Duration = Duration::from_secs(90);

fn browser_present(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test}: {} missing (Debian packages chromium and chromium-driver; scripts/test installs them)",
        missing.join(" and ")
    );
    if std::env::var_os("TRITONCTL_REQUIRE_BROWSER").is_some() {
        panic!("TRITONCTL_REQUIRE_BROWSER is set and {why}");
    }
    eprintln!("skipped: {why}");
    false
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::repo().join("target"))
}

/// chromedriver on a free loopback port, and a fresh profile directory.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> (Driver, Client) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        profile: profile.path().to_path_buf(),
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", driver.profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    let deadline = Instant::now() + PATIENCE;
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session from chromedriver at {url}: {e}"),
        }
    };
    (driver, client)
}

async fn screenshot(c: &Client, name: &str) -> Vec<u8> {
    let png = c.screenshot().await.expect("screenshot");
    let dir = target_dir().join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    png
}

fn bless(name: &str, png: &[u8]) {
    if std::env::var_os("TRITONCTL_BLESS_SCREENSHOTS").is_some() {
        let dir = e2e::repo().join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Wait until `f` answers Some, polling the page.
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each step row's state, as the page shows it now.
async fn step_states(c: &Client) -> Vec<String> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('tr[data-step] td.state'))\
             .map(function (td) { return td.getAttribute('data-state'); });",
            vec![],
        )
        .await
        .expect("read the steps");
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_lists_the_lab_and_follows_an_upgrade_step_live() {
    let test = "the_web_view_lists_the_lab_and_follows_an_upgrade_step_live";
    if !browser_present(test) {
        return;
    }
    // The demo with its web view, on a slower datacenter (a 15-minute
    // reprovision takes 3 s) so that a step runs long enough to be seen,
    // kept up until the pages are all looked at.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let demo = tokio::spawn(async move {
        let mut out = move |l: String| {
            let _ = tx.send(l);
        };
        let options = DemoOptions {
            web_addr: Some("127.0.0.1:0".parse().unwrap()),
            dc_time_scale: Some(1.0 / 300.0),
            linger: Some(done_rx),
        };
        tritonctl::demo::run_with(
            &mut out,
            Duration::from_secs(240),
            Strategy::Rolling,
            options,
        )
        .await
    });
    let mut lines = Vec::new();
    let base = loop {
        let line = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("the demo prints its web view's URL")
            .unwrap_or_else(|| panic!("the demo ended early: {lines:#?}"));
        if let Some(url) = line.strip_prefix(WEB_LINE) {
            break url.trim_end_matches('/').to_string();
        }
        lines.push(line);
    };
    let (_driver, c) = start_driver().await;

    // The overview lists the lab's documents.
    c.goto(&format!("{base}/")).await.unwrap();
    let body = c.source().await.unwrap();
    for doc in ["HeadnodeSet/lab", "ManateeVersion/sdc"] {
        assert!(
            body.contains(doc),
            "the overview does not list {doc}:\n{body}"
        );
    }
    assert!(body.contains("<main id=\"main\""), "{body}");
    let png = screenshot(&c, "overview").await;
    bless("overview", &png);

    // A document page: a step seen Running turns Succeeded with no reload.
    c.goto(&format!("{base}/doc/ManateeVersion/sdc"))
        .await
        .unwrap();
    c.execute("window.tritonctlNotReloaded = true; return true;", vec![])
        .await
        .unwrap();
    let running = until("a step of ManateeVersion/sdc shows Running", async || {
        step_states(&c).await.iter().position(|s| s == "Running")
    })
    .await;
    let png = screenshot(&c, "document-step-running").await;
    bless("operation-in-progress", &png);
    until(
        &format!("step {} turns from Running to Succeeded", running + 1),
        async || {
            let states = step_states(&c).await;
            (states.get(running).map(String::as_str) == Some("Succeeded")).then_some(())
        },
    )
    .await;
    let same_page = c
        .execute("return window.tritonctlNotReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same_page,
        Value::Bool(true),
        "the page was reloaded: the step changed by a reload, not live"
    );
    screenshot(&c, "document-step-succeeded").await;

    // Every other page renders, and is kept as an artifact.
    for (path, name, needle) in [
        ("/topology", "topology", "Shard sdc"),
        ("/headnodes", "headnodes", "Core instances"),
        ("/plan", "plan", "tritonctl diff"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let body = c.source().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle:?}:\n{body}");
        screenshot(&c, name).await;
    }
    c.close().await.unwrap();
    let _ = done_tx.send(true);

    let report = demo
        .await
        .expect("the demo task")
        .expect("the demo converges");
    assert_eq!(report.lost, 0);
}

/// The web view binds loopback unless the operator says otherwise: a
/// remote address is refused before anything starts.
#[test]
fn a_controller_refuses_a_remote_web_address_without_the_flag() {
    let o = Command::new(e2e::tritonctl_bin())
        .args(["--zk", "127.0.0.1:1", "controller"])
        .args([
            "--sapi",
            "http://127.0.0.1:1",
            "--vmapi",
            "http://127.0.0.1:1",
        ])
        .args([
            "--cnapi",
            "http://127.0.0.1:1",
            "--imgapi",
            "http://127.0.0.1:1",
        ])
        .args(["--metrics-addr", "off", "--web-addr", "0.0.0.0:0"])
        .env_remove("TRITONCTL_CREDENTIALS")
        .output()
        .expect("run tritonctl controller");
    let err = e2e::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--web-allow-remote"), "{err}");
}
