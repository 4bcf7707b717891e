//! The long-running commands as processes: `tritonctl controller` (leader
//! election between processes, /healthz and /metrics, SIGTERM hands over at
//! once, a leader stopped past its session exits 3 for its supervisor) and
//! `tritonctl sim serve` (endpoints as JSON, a private ZooKeeper, SIGTERM).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coord::testing::ZkServer;

/// A child process signalled only by its PID; SIGKILLed if still running
/// when dropped.
struct Proc(Child);

impl Proc {
    fn signal(&self, sig: libc::c_int) {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, sig);
        }
    }

    /// Wait for the exit, up to `d`.
    fn wait_exit(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < d {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.signal(libc::SIGCONT);
            self.signal(libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// Start a controller (no documents, so it calls no API) that reports its
/// metrics address on stderr; returns it and that address.
fn controller(zk: &str) -> (Proc, String) {
    let mut child = Command::new(e2e::tritonctl_bin())
        .args(["--zk", zk, "--session-timeout", "1s", "controller"])
        .args([
            "--sapi",
            "http://127.0.0.1:9",
            "--vmapi",
            "http://127.0.0.1:9",
        ])
        .args([
            "--cnapi",
            "http://127.0.0.1:9",
            "--imgapi",
            "http://127.0.0.1:9",
        ])
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--shutdown-grace", "2s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tritonctl controller");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut before = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = v["addr"].as_str()
            {
                let _ = tx.send(Ok(addr.to_string()));
                sent = true;
            } else if !sent {
                before.push(line);
            }
        }
        if !sent {
            let _ = tx.send(Err(before.join("\n")));
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(addr)) => addr,
        Ok(Err(stderr)) => panic!("the controller exited before serving its metrics:\n{stderr}"),
        Err(e) => panic!("the controller logs its metrics address: {e}"),
    };
    (Proc(child), addr)
}

/// A tiny HTTP GET over 127.0.0.1 (status, body).
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn healthz(addr: &str) -> Option<serde_json::Value> {
    let (code, body) = get(addr, "/healthz")?;
    assert_eq!(code, 200, "{body}");
    // Chunked or not, the JSON object is the one line starting with `{`.
    let json = body.lines().find(|l| l.starts_with('{'))?;
    serde_json::from_str(json).ok()
}

fn wait_until(what: &str, d: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < d, "{what}: not within {d:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leads(addr: &str) -> bool {
    healthz(addr).is_some_and(|h| h["leader"] == true)
}

#[test]
fn zk_controller_processes_one_leads_sigterm_hands_over_and_a_stopped_leader_exits_3() {
    let zk = ZkServer::start_blocking().expect("start ZooKeeper");
    let (mut a, a_addr) = controller(&zk.connect_string());
    wait_until(
        "the first controller leads",
        Duration::from_secs(30),
        || leads(&a_addr),
    );
    let (mut b, b_addr) = controller(&zk.connect_string());
    wait_until("the second is a standby", Duration::from_secs(30), || {
        healthz(&b_addr).is_some_and(|h| h["phase"] == "standby")
    });
    assert!(leads(&a_addr) && !leads(&b_addr));
    let (code, metrics) = get(&a_addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("tritonctl_leader 1"), "{metrics}");
    let (_, metrics_b) = get(&b_addr, "/metrics").unwrap();
    assert!(metrics_b.contains("tritonctl_leader 0"), "{metrics_b}");

    // SIGTERM: the leader resigns and exits 0; the standby takes over
    // (resigning deletes the election node, so no session timeout to wait).
    a.signal(libc::SIGTERM);
    let status = a
        .wait_exit(Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    wait_until("the standby takes over", Duration::from_secs(30), || {
        leads(&b_addr)
    });

    // A third controller waits; the leader is stopped past its session
    // timeout, the third takes over, and the old leader, once continued,
    // finds its leadership lost and exits 3 for its supervisor.
    let (_c, c_addr) = controller(&zk.connect_string());
    wait_until("the third is a standby", Duration::from_secs(30), || {
        healthz(&c_addr).is_some_and(|h| h["phase"] == "standby")
    });
    b.signal(libc::SIGSTOP);
    wait_until(
        "the third takes over from the stopped leader",
        Duration::from_secs(30),
        || leads(&c_addr),
    );
    b.signal(libc::SIGCONT);
    let status = b
        .wait_exit(Duration::from_secs(30))
        .expect("a leader that lost its session exits");
    assert_eq!(status.code(), Some(3), "{status}");
}

/// Run a coordination call against `zk` from a synchronous test.
fn on_zk<T>(zk: &str, f: impl AsyncFnOnce(&dyn coord::Coordination) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = coord::ZkCoordination::connect(zk, Duration::from_secs(5))
            .await
            .expect("connect to ZooKeeper");
        let out = f(s.as_ref()).await;
        coord::Coordination::close(s.as_ref()).await;
        out
    })
}

/// `tritonctl --zk ZK ARGS...` (stdout, exit code).
fn tritonctl_zk(zk: &str, args: &[&str]) -> (String, Option<i32>) {
    let o = Command::new(e2e::tritonctl_bin())
        .args(["--zk", zk])
        .args(args)
        .env_remove("TRITONCTL_DATA_DIR")
        .output()
        .expect("run tritonctl");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code(),
    )
}

/// A `set` on the leading controller's own candidate node (before: every
/// fenced write failed "bad version" forever while /healthz said leading
/// and the process never exited): it steps down and exits 3.
#[test]
fn zk_a_controller_whose_candidate_node_is_modified_exits_3() {
    let zk = ZkServer::start_blocking().expect("start ZooKeeper");
    let (mut a, a_addr) = controller(&zk.connect_string());
    wait_until("the controller leads", Duration::from_secs(30), || {
        leads(&a_addr)
    });
    let node = healthz(&a_addr).unwrap()["node"]
        .as_str()
        .expect("a leader names its node")
        .to_string();
    on_zk(&zk.connect_string(), async |s| {
        s.set(&node, b"tampered", coord::Expect::Any)
            .await
            .expect("set the candidate node")
    });
    let status = a
        .wait_exit(Duration::from_secs(30))
        .expect("a leader whose fence can never pass again exits");
    assert_eq!(status.code(), Some(3), "{status}");
}

/// A persistent `candidate-0000000000` (anyone could create it) does not
/// keep the controller on standby, is reported (metric, Warning event), and
/// `tritonctl get leader` does not show it as the leader.
#[test]
fn zk_a_persistent_candidate_node_is_ignored_and_reported() {
    let zk = ZkServer::start_blocking().expect("start ZooKeeper");
    let cs = zk.connect_string();
    on_zk(&cs, async |s| {
        s.mkdirp("/tritonctl/v1/leader").await.unwrap();
        s.create(
            "/tritonctl/v1/leader/candidate-0000000000",
            b"forged",
            coord::CreateMode::Persistent,
        )
        .await
        .unwrap();
    });
    let (_a, a_addr) = controller(&cs);
    wait_until(
        "the controller leads despite the forged node",
        Duration::from_secs(30),
        || leads(&a_addr),
    );
    let (_, metrics) = get(&a_addr, "/metrics").unwrap();
    assert!(
        metrics.contains("tritonctl_election_ignored_candidates_total{reason=\"not_ephemeral\"} 1"),
        "{metrics}"
    );
    let (out, code) = tritonctl_zk(&cs, &["get", "leader", "-o", "json"]);
    assert_eq!(code, Some(0), "{out}");
    let leader: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        leader["identity"]
            .as_str()
            .unwrap()
            .starts_with("tritonctl@"),
        "{leader}"
    );
    assert_ne!(leader["node"], "/tritonctl/v1/leader/candidate-0000000000");
    wait_until(
        "a Warning event names the ignored node",
        Duration::from_secs(30),
        || {
            let (out, _) = tritonctl_zk(&cs, &["events"]);
            out.contains("IgnoredCandidate") && out.contains("candidate-0000000000")
        },
    );
}

/// 100 connections that never send a byte against the controller's
/// /metrics and /healthz: /healthz still answers, and every one of them is
/// closed by the server (the cap evicts the oldest, the header read
/// timeout the rest).
#[test]
fn zk_idle_connections_cannot_hold_the_controller_endpoints() {
    let zk = ZkServer::start_blocking().expect("start ZooKeeper");
    let (_a, addr) = controller(&zk.connect_string());
    wait_until("/healthz answers", Duration::from_secs(30), || {
        healthz(&addr).is_some()
    });
    let mut held: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    assert!(
        healthz(&addr).is_some(),
        "/healthz answers while they are held"
    );
    for (i, s) in held.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("connection {i} is still held: {other:?}"),
        }
    }
}

/// The endpoints bind loopback unless told otherwise.
#[test]
fn a_controller_refuses_a_remote_metrics_address_without_the_flag() {
    let o = Command::new(e2e::tritonctl_bin())
        .args(["--zk", "127.0.0.1:1", "controller"])
        .args([
            "--sapi",
            "http://127.0.0.1:9",
            "--vmapi",
            "http://127.0.0.1:9",
        ])
        .args([
            "--cnapi",
            "http://127.0.0.1:9",
            "--imgapi",
            "http://127.0.0.1:9",
        ])
        .args(["--metrics-addr", "0.0.0.0:0"])
        .output()
        .expect("run tritonctl controller");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--metrics-allow-remote"), "{err}");
}

#[test]
fn zk_sim_serve_prints_its_endpoints_and_stops_its_zookeeper_on_sigterm() {
    let mut child = Command::new(e2e::tritonctl_bin())
        .args(["sim", "serve"])
        .env_remove("TRITONCTL_ZK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tritonctl sim serve");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut sim = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("sim serve prints its endpoints");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    for k in ["sapi", "vmapi", "cnapi", "imgapi", "control"] {
        let url = ready[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in {ready}"));
        assert!(url.starts_with("http://127.0.0.1:"), "{k}: {url}");
    }
    assert_eq!(ready["zk_private"], true);
    assert_eq!(ready["shards"]["sdc"].as_array().map(Vec::len), Some(3));
    let sapi = ready["sapi"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://");
    let (code, _) = get(sapi, "/ping").expect("SAPI answers");
    assert_eq!(code, 200);
    // The private ZooKeeper is usable by another process: the manatee
    // shard's state is there.
    let zk = ready["zk"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = coord::ZkCoordination::connect(&zk, Duration::from_secs(5))
            .await
            .expect("connect to the sim's ZooKeeper");
        use coord::Coordination;
        let (data, _) = s.get("/manatee/sdc/state").await.expect("shard state");
        let state: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert!(state["primary"].is_object(), "{state}");
        s.close().await;
    });

    sim.signal(libc::SIGTERM);
    let status = sim
        .wait_exit(Duration::from_secs(60))
        .expect("sim serve exits on SIGTERM");
    assert!(status.success(), "{status}");
    let errs = errs.join().unwrap();
    let zk_pid: u32 = errs
        .split("(pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the private ZooKeeper's pid is reported: {errs}"));
    wait_until(
        "the private ZooKeeper stops with the simulator",
        Duration::from_secs(15),
        || !std::path::Path::new(&format!("/proc/{zk_pid}")).exists(),
    );
}
