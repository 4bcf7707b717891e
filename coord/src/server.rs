//! A private ZooKeeper server on 127.0.0.1: the fixture of the integration
//! tests (re-exported as `coord::testing`) and what `tritonctl sim serve`
//! starts when no ensemble is given.
//!
//! Each [`ZkServer`] is a private standalone ZooKeeper (Debian's `zookeeper`
//! package) listening on a free loopback port, with its config, data and log
//! in its own temporary directory. It is stopped by signalling exactly the PID
//! it spawned: SIGTERM, a grace period, then SIGKILL.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let zk = coord::server::ZkServer::start().await?;
//! let session = coord::zk::ZkCoordination::connect(
//!     &zk.connect_string(),
//!     std::time::Duration::from_secs(2),
//! )
//! .await
//! .unwrap();
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// ZooKeeper's main jar as installed by `apt-get install zookeeper`.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// The package's config dir (holds log4j.properties; on the class path).
const ZOOKEEPER_CONF_DIR: &str = "/etc/zookeeper/conf";
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A running (or stopped) private ZooKeeper server.
pub struct ZkServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl std::fmt::Debug for ZkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn free_port() -> io::Result<u16> {
    // The listener is closed again before ZooKeeper binds; a collision in
    // that window is possible but rare, and shows up as a readiness timeout.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn check_installed(jar: &Path) -> io::Result<()> {
    if jar.exists() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{} is missing: install ZooKeeper with `apt-get install -y zookeeper`",
            jar.display()
        ),
    ))
}

/// Send `ruok`; a healthy server answers `imok`.
fn ruok(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let probe = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(250))?;
        s.set_read_timeout(Some(Duration::from_millis(1000)))?;
        s.set_write_timeout(Some(Duration::from_millis(250)))?;
        s.write_all(b"ruok")?;
        let mut reply = Vec::new();
        s.take(16).read_to_end(&mut reply)?;
        Ok(reply == b"imok")
    };
    probe().unwrap_or(false)
}

fn signal(pid: u32, sig: libc::c_int) {
    // Only ever the PID we spawned (and have not yet reaped, so it cannot
    // have been reused by another process).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

impl ZkServer {
    /// Start a server and wait until it answers `ruok` (up to 20 s).
    pub async fn start() -> io::Result<ZkServer> {
        let mut server = ZkServer::prepare()?;
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Like [`ZkServer::start`], for non-async callers (blocks the thread).
    pub fn start_blocking() -> io::Result<ZkServer> {
        let mut server = ZkServer::prepare()?;
        server.spawn()?;
        server.wait_ready_blocking()?;
        Ok(server)
    }

    fn prepare() -> io::Result<ZkServer> {
        check_installed(Path::new(ZOOKEEPER_JAR))?;
        let dir = tempfile::Builder::new().prefix("coord-zk-").tempdir()?;
        let port = free_port()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        // ACLs are enforced (no `skipACL`, no super digest): the refusals
        // the tests show, and `sim serve`'s, come from the server itself.
        let cfg = format!(
            "tickTime=500\n\
             dataDir={data}\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=ruok,srvr\n\
             minSessionTimeout=1000\n",
            data = data.display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg)?;
        Ok(ZkServer {
            dir,
            port,
            child: None,
        })
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new("java")
            .args([
                "-Xms32m",
                "-Xmx128m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
            ])
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()))
            .arg("-cp")
            .arg(format!("{ZOOKEEPER_CONF_DIR}:{ZOOKEEPER_JAR}"))
            .arg(MAIN_CLASS)
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn java for ZooKeeper: {e}")))?;
        tracing::debug!(pid = child.id(), port = self.port, "zookeeper spawned");
        self.child = Some(child);
        Ok(())
    }

    fn not_ready(&mut self, why: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "ZooKeeper on 127.0.0.1:{} {why}; see {}",
                self.port,
                self.log_path().display()
            ),
        )
    }

    /// Some(err) if the process is gone (it then never gets ready).
    fn exited(&mut self) -> Option<io::Error> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(self.not_ready(&format!("exited with {status} before it was ready")))
            }
            _ => None,
        }
    }

    async fn wait_ready(&mut self) -> io::Result<()> {
        let start = Instant::now();
        loop {
            let port = self.port;
            if tokio::task::spawn_blocking(move || ruok(port))
                .await
                .unwrap_or(false)
            {
                return Ok(());
            }
            if let Some(err) = self.exited() {
                return Err(err);
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready("did not answer ruok within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn wait_ready_blocking(&mut self) -> io::Result<()> {
        let start = Instant::now();
        loop {
            if ruok(self.port) {
                return Ok(());
            }
            if let Some(err) = self.exited() {
                return Err(err);
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready("did not answer ruok within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, for `ZkCoordination::connect`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's stdout/stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("zk.out")
    }

    /// The server's private directory (zoo.cfg, data/, zk.out).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PID of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stop the server (SIGTERM, then SIGKILL after a grace period). Data
    /// stays, so [`ZkServer::restart`] brings back the same tree and, within
    /// their timeout, the same sessions.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < TERM_GRACE {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        signal(child.id(), libc::SIGKILL);
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }

    /// Stop (if running) and start again on the same port and data.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop().await;
        self.spawn()?;
        self.wait_ready().await
    }

    fn stop_blocking(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < TERM_GRACE {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        signal(child.id(), libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_zookeeper_says_how_to_install_it() {
        let err = check_installed(Path::new("/nonexistent/zookeeper.jar")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("apt-get install -y zookeeper"),
            "{err}"
        );
    }

    #[test]
    fn zk_blocking_start_and_drop_stop_the_server() {
        let server = ZkServer::start_blocking().unwrap();
        let pid = server.pid().unwrap();
        assert!(ruok(server.port()));
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
