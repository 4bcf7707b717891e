//! A real PostgreSQL server behind a simulated manatee zone: the opt-in
//! backend of the [`PgServer`] seam (the model, [`super::pg::PgNode`], is
//! the default and needs nothing installed).
//!
//! [`RealPostgres`] owns a temporary directory and the postmasters it
//! starts: one per zone, each on its own 127.0.0.1 port, run as the
//! `postgres` user when we are root (PostgreSQL refuses root). Each
//! postmaster runs in its own process group; only those groups are ever
//! signalled.
//!
//! A sitter's configuration is applied the way manatee's postgresMgr does
//! it (research `manatee.md` §3.1), through a `manatee.conf` included from
//! `postgresql.conf` and rewritten on every reconfigure:
//!
//! - primary: writable at once with no downstream (one-node-write mode);
//!   with a sync it starts with `default_transaction_read_only = on`, polls
//!   `pg_stat_replication` until the sync streams with `sent == flush`, then
//!   sets `synchronous_standby_names = '"<sync id>"'`, turns read-only off
//!   and reloads. A write is acknowledged only once the sync has flushed
//!   it (`synchronous_commit = on`). A running standby is promoted with
//!   `pg_promote()`.
//! - sync / async: `standby.signal` and `primary_conninfo` to the upstream
//!   (the primary for the sync, the previous peer for an async: manatee
//!   chains), `application_name` = the peer's manatee id,
//!   `synchronous_commit = off`, `recovery_target_timeline = 'latest'` so a
//!   standby follows its upstream's promotion. A standby without a
//!   database is built first with `pg_basebackup` from the peer the sitter
//!   names (always the primary, §3.1).
//!
//! Status (`pg_stat_replication`, LSNs, read-only, the WAL receiver) is
//! polled from the server every 50 ms and on demand ([`PgServer::refresh`]).
//! Client writes go through tokio-postgres into table `manatee_writes`.
//!
//! `fsync = off`: the faults the simulator injects kill processes, never
//! the machine, so the kernel's page cache survives them; durability
//! against power loss is not what these servers are for.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use tokio_postgres::{Client, NoTls};
use wire::manatee::{Lsn, PeerIdent};

use super::config::ManateeSimConfig;
use super::peer::{PgConfig, PgRole};
use super::pg::{DownstreamRow, NodeStatus, PgBackup, PgServer, WriteError};

/// How long a postmaster may take to start, stop or promote (real time).
const PG_DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);

static NEXT_ROOT: AtomicU64 = AtomicU64::new(0);

/// Where the PostgreSQL server programs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
}

impl PgBinaries {
    /// Debian's `postgresql-15` package.
    pub const DEFAULT_DIR: &'static str = "/usr/lib/postgresql/15/bin";
    const NEEDED: [&'static str; 3] = ["postgres", "initdb", "pg_basebackup"];

    /// `$TRITONCTL_PG_BIN`, else [`PgBinaries::DEFAULT_DIR`], else the
    /// newest `/usr/lib/postgresql/<major>/bin`: the first that holds
    /// `postgres`, `initdb` and `pg_basebackup`.
    pub fn find() -> Result<PgBinaries, String> {
        let complete = |dir: &Path| Self::NEEDED.iter().all(|p| dir.join(p).is_file());
        if let Some(dir) = std::env::var_os("TRITONCTL_PG_BIN").map(PathBuf::from) {
            return if complete(&dir) {
                Ok(PgBinaries { bin_dir: dir })
            } else {
                Err(format!(
                    "TRITONCTL_PG_BIN={}: {:?} not all found there",
                    dir.display(),
                    Self::NEEDED
                ))
            };
        }
        let default = PathBuf::from(Self::DEFAULT_DIR);
        if complete(&default) {
            return Ok(PgBinaries { bin_dir: default });
        }
        let mut majors: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse().ok()?;
                Some((major, e.path().join("bin")))
            })
            .filter(|(m, dir)| *m >= 13 && complete(dir))
            .collect();
        majors.sort();
        majors
            .pop()
            .map(|(_, bin_dir)| PgBinaries { bin_dir })
            .ok_or_else(|| {
                format!(
                    "PostgreSQL server programs {:?} not found in {} nor any \
                     /usr/lib/postgresql/<13 or later>/bin (install the postgresql-15 package, \
                     or set TRITONCTL_PG_BIN to the directory holding them)",
                    Self::NEEDED,
                    Self::DEFAULT_DIR
                )
            })
    }

    fn path(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }
}

/// The postmasters of one simulation and the directory they live in.
pub struct RealPostgres {
    bins: PgBinaries,
    root: PathBuf,
    /// uid/gid the servers run as (`postgres` when we are root).
    owner: Option<(u32, u32)>,
    /// Manatee peer id -> port, so standbys find their upstream.
    routes: Mutex<HashMap<String, u16>>,
}

impl std::fmt::Debug for RealPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealPostgres")
            .field("bin_dir", &self.bins.bin_dir)
            .field("root", &self.root)
            .finish()
    }
}

impl RealPostgres {
    /// A fresh temporary directory for the servers' data and logs.
    pub fn new(bins: PgBinaries) -> Result<Arc<RealPostgres>, String> {
        let owner = if current_uid() == Some(0) {
            Some(postgres_user().ok_or(
                "running as root, and PostgreSQL refuses root, but there is no `postgres` \
                 user in /etc/passwd to run it as",
            )?)
        } else {
            None
        };
        let root = std::env::temp_dir().join(format!(
            "tritonctl-pg-{}-{}",
            std::process::id(),
            NEXT_ROOT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", root.display()))?;
        let pg = RealPostgres {
            bins,
            root,
            owner,
            routes: Mutex::default(),
        };
        pg.chown(&pg.root)?;
        Ok(Arc::new(pg))
    }

    /// Where data directories and logs are (`<zone>/data`, `<zone>.log`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn chown(&self, path: &Path) -> Result<(), String> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &str) -> Result<(), String> {
        fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))?;
        self.chown(path)
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(self.bins.path(program));
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.current_dir(&self.root)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .await
            .map_err(|e| format!("running {program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn port_of(&self, peer_id: &str) -> Option<u16> {
        self.routes.lock().unwrap().get(peer_id).copied()
    }

    /// A zone's server, its dataset empty or (with a `dataset` that holds a
    /// database) freshly initialised. A modelled dataset with writes in it
    /// cannot be loaded into a real server.
    pub(crate) async fn server(
        self: &Arc<Self>,
        zone_id: &str,
        ident: PeerIdent,
        dataset: Option<&PgBackup>,
    ) -> Result<Arc<dyn PgServer>, String> {
        let port = free_port()?;
        let dir = self.root.join(zone_id);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.chown(&dir)?;
        let pg = Arc::new_cyclic(|me| RealPg {
            me: me.clone(),
            cluster: self.clone(),
            ident: ident.clone(),
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            port,
            state: Mutex::new(RState::default()),
            op: tokio::sync::Mutex::new(()),
        });
        if let Some(d) = dataset {
            pg.load_dataset(d).await?;
        }
        self.routes.lock().unwrap().insert(ident.id.clone(), port);
        Ok(pg)
    }
}

impl Drop for RealPostgres {
    fn drop(&mut self) {
        // Every RealPg holds an Arc to us, so their postmasters are gone.
        // TRITONCTL_PG_KEEP=1 keeps the data and logs for a post-mortem.
        if std::env::var_os("TRITONCTL_PG_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn current_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == "postgres")
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    Ok(l.local_addr()
        .map_err(|e| format!("free port: {e}"))?
        .port())
}

fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the process group of a postmaster we spawned
    // with process_group(0), so its pgid is its pid.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a postmaster we spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn lsn(s: Option<String>) -> Option<Lsn> {
    s.and_then(|s| s.parse().ok())
}

#[derive(Default)]
struct RState {
    postmaster: Option<Child>,
    role: Option<PgRole>,
    upstream: Option<String>,
    status: Option<NodeStatus>,
    helpers: Vec<AbortHandle>,
    /// The last reason a start or query failed, for status.
    standby_error: Option<String>,
}

pub(crate) struct RealPg {
    me: Weak<RealPg>,
    cluster: Arc<RealPostgres>,
    ident: PeerIdent,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    state: Mutex<RState>,
    /// Serialises apply, shutdown and crash.
    op: tokio::sync::Mutex<()>,
}

impl Drop for RealPg {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap();
        for h in st.helpers.drain(..) {
            h.abort();
        }
        if let Some(mut child) = st.postmaster.take() {
            signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl RealPg {
    fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(&self.conn_string(), NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    fn running(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        match st.postmaster.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    async fn load_dataset(&self, d: &PgBackup) -> Result<(), String> {
        if !d.has_database() {
            return Ok(());
        }
        if !d.writes().is_empty() {
            return Err(format!(
                "a real PostgreSQL server cannot load a modelled dataset with {} writes \
                 (from {}); provision real-PG zones empty or with a fresh database",
                d.writes().len(),
                d.source
            ));
        }
        self.initdb().await
    }

    async fn initdb(&self) -> Result<(), String> {
        let data = self.data.to_string_lossy().into_owned();
        self.cluster
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await?;
        let conf = self.data.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| format!("opening {}: {e}", conf.display()))?;
        writeln!(f, "\ninclude_if_exists = 'manatee.conf'")
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;
        Ok(())
    }

    /// `manatee.conf` for a role.
    fn write_conf(
        &self,
        role: PgRole,
        upstream_port: Option<u16>,
        read_only: bool,
        sync: Option<&str>,
    ) -> Result<(), String> {
        let mut c = format!(
            "# Written by the tritonctl simulator for {id} ({role:?}).\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = ''\n\
             fsync = off\n\
             shared_buffers = 16MB\n\
             max_connections = 100\n\
             wal_level = replica\n\
             max_wal_senders = 10\n\
             wal_keep_size = '512MB'\n\
             hot_standby = on\n\
             wal_receiver_status_interval = 1s\n\
             wal_retrieve_retry_interval = 200ms\n\
             recovery_target_timeline = 'latest'\n\
             log_min_messages = warning\n",
            id = self.ident.id,
            port = self.port,
        );
        match role {
            PgRole::Primary => {
                c += &format!(
                    "synchronous_commit = on\n\
                     default_transaction_read_only = {}\n\
                     synchronous_standby_names = '{}'\n",
                    if read_only { "on" } else { "off" },
                    sync.map(|s| format!("\"{s}\"")).unwrap_or_default()
                );
            }
            PgRole::Sync | PgRole::Async => {
                c += &format!(
                    "synchronous_commit = off\n\
                     default_transaction_read_only = on\n\
                     primary_conninfo = 'host=127.0.0.1 port={} user=postgres \
                     application_name={} connect_timeout=2'\n",
                    upstream_port.unwrap_or(1),
                    self.ident.id
                );
            }
            PgRole::None => {}
        }
        self.cluster.write_file(&self.data.join("manatee.conf"), &c)
    }

    async fn start_postmaster(self: &Arc<Self>) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        // A postmaster.pid left by a killed server is harmless: its pid is
        // dead and we killed its whole process group.
        let mut cmd = std::process::Command::new(self.cluster.bins.path("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .current_dir(&self.cluster.root)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        if let Some((uid, gid)) = self.cluster.owner {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting postgres for {}: {e}", self.ident.id))?;
        self.state.lock().unwrap().postmaster = Some(child);
        let deadline = Instant::now() + PG_DEADLINE;
        loop {
            if !self.running() {
                self.state.lock().unwrap().postmaster = None;
                return Err(format!(
                    "postgres for {} exited at start; {}:\n{}",
                    self.ident.id,
                    self.log.display(),
                    self.log_tail()
                ));
            }
            if self.connect().await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres for {} did not accept connections within {PG_DEADLINE:?}; {}:\n{}",
                    self.ident.id,
                    self.log.display(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    fn stop_helpers(&self) {
        for h in self.state.lock().unwrap().helpers.drain(..) {
            h.abort();
        }
    }

    /// Stop the postmaster: `fast` (SIGINT) or a kill of its process group.
    async fn stop_postmaster(&self, kill: bool) {
        self.stop_helpers();
        let child = self.state.lock().unwrap().postmaster.take();
        if let Some(mut child) = child {
            let pid = child.id();
            if kill {
                signal_group(pid, libc::SIGKILL);
            } else {
                signal(pid, libc::SIGINT);
            }
            let deadline = Instant::now() + PG_DEADLINE;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        signal_group(pid, libc::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(POLL).await,
                }
            }
        }
        let mut st = self.state.lock().unwrap();
        st.role = None;
        st.upstream = None;
        st.status = None;
    }

    /// Query the server and cache what `pg-status` needs.
    async fn poll(&self, client: &Client) -> Result<NodeStatus, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), \
                        current_setting('default_transaction_read_only'), \
                        current_setting('synchronous_standby_names'), \
                        CASE WHEN pg_is_in_recovery() \
                             THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text \
                             ELSE pg_current_wal_lsn()::text END, \
                        CASE WHEN pg_is_in_recovery() \
                             THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text \
                             ELSE pg_current_wal_flush_lsn()::text END, \
                        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text \
                             ELSE pg_current_wal_lsn()::text END, \
                        extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, \
                        (SELECT status FROM pg_stat_wal_receiver LIMIT 1)",
                &[],
            )
            .await?;
        let rows = client
            .query(
                "SELECT application_name, state, sent_lsn::text, flush_lsn::text, \
                        replay_lsn::text FROM pg_stat_replication ORDER BY application_name",
                &[],
            )
            .await?;
        let in_recovery: bool = row.get(0);
        let read_only = in_recovery || row.get::<_, String>(1) == "on";
        let sync_names: String = row.get(2);
        let sync_standby =
            Some(sync_names.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty());
        let end = lsn(row.get(3)).unwrap_or(Lsn::ZERO);
        let flushed = lsn(row.get(4)).unwrap_or(Lsn::ZERO);
        let replayed = lsn(row.get(5)).unwrap_or(Lsn::ZERO);
        let age: Option<f64> = row.get(6);
        let receiver: Option<String> = row.get(7);
        let downstreams = rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                let ip = id.split(':').next().unwrap_or_default().to_string();
                DownstreamRow {
                    ip,
                    streaming: r.get::<_, Option<String>>(1).as_deref() == Some("streaming"),
                    sent: lsn(r.get(2)).unwrap_or(Lsn::ZERO),
                    flush: lsn(r.get(3)).unwrap_or(Lsn::ZERO),
                    replay: lsn(r.get(4)).unwrap_or(Lsn::ZERO),
                    id,
                }
            })
            .collect();
        let st = self.state.lock().unwrap();
        let role = st.role.unwrap_or(PgRole::None);
        let standby_error = match role {
            PgRole::Sync | PgRole::Async if receiver.as_deref() != Some("streaming") => {
                Some(st.standby_error.clone().unwrap_or_else(|| {
                    format!(
                        "not streaming from {} (WAL receiver: {}); see {}",
                        st.upstream.as_deref().unwrap_or("?"),
                        receiver.as_deref().unwrap_or("none"),
                        self.log.display()
                    )
                }))
            }
            _ => None,
        };
        Ok(NodeStatus {
            online: true,
            role,
            read_only,
            sync_standby,
            downstreams,
            end,
            flushed,
            replayed,
            last_replay_at: age
                .filter(|a| *a >= 0.0)
                .and_then(|a| Instant::now().checked_sub(Duration::from_secs_f64(a))),
            upstream: st.upstream.clone(),
            standby_error,
        })
    }

    async fn poll_once(&self) {
        if !self.running() {
            self.state.lock().unwrap().status = None;
            return;
        }
        let r = match self.connect().await {
            Ok(c) => self.poll(&c).await,
            Err(e) => Err(e),
        };
        if let Ok(s) = r {
            self.state.lock().unwrap().status = Some(s);
        }
    }

    /// Manatee's primary: read-only until the sync streams with
    /// `sent == flush`, then synchronous replication to it, read-write.
    async fn wait_for_sync(self: Arc<Self>, sync_id: String) {
        loop {
            tokio::time::sleep(POLL).await;
            let Ok(c) = self.connect().await else {
                continue;
            };
            let caught_up = c
                .query(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 \
                     AND state = 'streaming' AND sent_lsn = flush_lsn",
                    &[&sync_id],
                )
                .await
                .is_ok_and(|r| !r.is_empty());
            if !caught_up {
                continue;
            }
            if let Err(e) = self.write_conf(PgRole::Primary, None, false, Some(&sync_id)) {
                tracing::warn!(peer = %self.ident.id, "writing manatee.conf: {e}");
                continue;
            }
            if c.execute("SELECT pg_reload_conf()", &[]).await.is_err() {
                continue;
            }
            // Writable once a new session sees it.
            loop {
                if let Ok(c) = self.connect().await
                    && let Ok(r) = c
                        .query_one(
                            "SELECT current_setting('default_transaction_read_only')",
                            &[],
                        )
                        .await
                    && r.get::<_, String>(0) == "off"
                {
                    self.poll_once().await;
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }

    async fn apply_inner(
        self: &Arc<Self>,
        config: &PgConfig,
        restore_from: Option<&PeerIdent>,
    ) -> Result<(), String> {
        self.stop_helpers();
        let r = self.apply_role(config, restore_from).await;
        // The status poller lives as long as the postmaster, whatever the
        // outcome of the reconfigure.
        if self.running() {
            let h = tokio::spawn(monitor(Arc::downgrade(self)));
            self.state.lock().unwrap().helpers.push(h.abort_handle());
        }
        self.poll_once().await;
        r
    }

    async fn reload(&self) -> Result<(), String> {
        let c = self.connect().await.map_err(|e| e.to_string())?;
        c.execute("SELECT pg_reload_conf()", &[])
            .await
            .map_err(|e| format!("pg_reload_conf on {}: {e}", self.ident.id))?;
        Ok(())
    }

    async fn apply_role(
        self: &Arc<Self>,
        config: &PgConfig,
        restore_from: Option<&PeerIdent>,
    ) -> Result<(), String> {
        let running = self.running();
        let was_role = self.state.lock().unwrap().role;
        match config.role {
            PgRole::None => {
                self.stop_postmaster(false).await;
            }
            PgRole::Primary => {
                if !self.is_setup() {
                    self.initdb().await?;
                }
                // Read-only until the sync has caught up. Naming the new
                // sync at once (not clearing the name) keeps a commit that
                // was waiting for a previous sync unacknowledged until the
                // new one has it.
                let sync = config.downstream.as_ref().map(|d| d.id.clone());
                self.write_conf(PgRole::Primary, None, sync.is_some(), sync.as_deref())?;
                match (running, was_role) {
                    (true, Some(PgRole::Sync | PgRole::Async)) => {
                        self.reload().await?;
                        let c = self.connect().await.map_err(|e| e.to_string())?;
                        let ok: bool = c
                            .query_one("SELECT pg_promote(true, 60)", &[])
                            .await
                            .map_err(|e| format!("pg_promote on {}: {e}", self.ident.id))?
                            .get(0);
                        if !ok {
                            return Err(format!(
                                "pg_promote on {} did not finish in 60 s",
                                self.ident.id
                            ));
                        }
                    }
                    // A new sync (or none): a reload, as manatee does.
                    (true, Some(PgRole::Primary)) => self.reload().await?,
                    _ => {
                        if running {
                            self.stop_postmaster(false).await;
                        }
                        let _ = fs::remove_file(self.data.join("standby.signal"));
                        self.start_postmaster().await?;
                    }
                }
                {
                    let mut st = self.state.lock().unwrap();
                    st.role = Some(PgRole::Primary);
                    st.upstream = None;
                    st.standby_error = None;
                }
                let c = self.connect().await.map_err(|e| e.to_string())?;
                let create = async {
                    c.batch_execute(
                        "SET default_transaction_read_only = off; SET synchronous_commit = local",
                    )
                    .await?;
                    c.batch_execute(
                        "CREATE TABLE IF NOT EXISTS manatee_writes \
                         (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
                    )
                    .await
                };
                create
                    .await
                    .map_err(|e| format!("creating manatee_writes on {}: {e}", self.ident.id))?;
                if let Some(sync) = sync {
                    let h = tokio::spawn(self.clone().wait_for_sync(sync));
                    self.state.lock().unwrap().helpers.push(h.abort_handle());
                }
            }
            PgRole::Sync | PgRole::Async => {
                let upstream = config
                    .upstream
                    .as_ref()
                    .ok_or("standby configuration without an upstream")?;
                let up_port = self
                    .cluster
                    .port_of(&upstream.id)
                    .ok_or_else(|| format!("no route to upstream {}", upstream.id))?;
                if !self.is_setup() {
                    self.basebackup(restore_from).await?;
                }
                self.write_conf(config.role, Some(up_port), true, None)?;
                if running && matches!(was_role, Some(PgRole::Sync | PgRole::Async)) {
                    // primary_conninfo and the rest reload without a restart.
                    self.reload().await?;
                } else {
                    if running {
                        self.stop_postmaster(false).await;
                    }
                    self.cluster
                        .write_file(&self.data.join("standby.signal"), "")?;
                    self.start_postmaster().await?;
                }
                let mut st = self.state.lock().unwrap();
                st.role = Some(config.role);
                st.upstream = Some(upstream.id.clone());
                st.standby_error = None;
            }
        }
        Ok(())
    }

    /// A full restore: `pg_basebackup` from `from` (manatee: the primary).
    async fn basebackup(&self, from: Option<&PeerIdent>) -> Result<(), String> {
        let from = from.ok_or("no primary to restore from")?;
        let port = self
            .cluster
            .port_of(&from.id)
            .ok_or_else(|| format!("restore: no route to {}", from.id))?;
        let _ = fs::remove_dir_all(&self.data);
        let data = self.data.to_string_lossy().into_owned();
        let port = port.to_string();
        let r = self
            .cluster
            .run(
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-D",
                    &data,
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
            )
            .await;
        if let Err(e) = r {
            let _ = fs::remove_dir_all(&self.data);
            return Err(format!("restore from {}: {e}", from.id));
        }
        // The copy carries the source's postmaster.pid-free data, its
        // manatee.conf (rewritten next) and no standby.signal.
        Ok(())
    }

    async fn read_writes_now(&self) -> Result<Vec<Vec<u8>>, String> {
        if !self.running() {
            return Err(format!("postgres on {} is not running", self.ident.id));
        }
        let c = self.connect().await.map_err(|e| e.to_string())?;
        let rows = c
            .query("SELECT payload FROM manatee_writes ORDER BY id", &[])
            .await
            .map_err(|e| format!("reading manatee_writes on {}: {e}", self.ident.id))?;
        Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
    }
}

async fn monitor(weak: Weak<RealPg>) {
    loop {
        let Some(pg) = weak.upgrade() else { return };
        pg.poll_once().await;
        drop(pg);
        tokio::time::sleep(POLL).await;
    }
}

#[async_trait::async_trait]
impl PgServer for RealPg {
    fn conninfo(&self) -> Option<String> {
        Some(self.conn_string())
    }

    fn is_setup(&self) -> bool {
        self.data.join("PG_VERSION").is_file()
    }

    fn is_online(&self) -> bool {
        self.running() && self.state.lock().unwrap().role.is_some()
    }

    fn xlog_location(&self) -> Option<Lsn> {
        let st = self.status();
        match (st.online, st.role) {
            (false, _) | (true, PgRole::None) => None,
            (true, PgRole::Primary) => Some(st.end),
            (true, _) => Some(st.replayed),
        }
    }

    fn status(&self) -> NodeStatus {
        let online = self.running();
        let st = self.state.lock().unwrap();
        match (&st.status, online) {
            (Some(s), true) => s.clone(),
            _ => NodeStatus {
                online: false,
                role: PgRole::None,
                read_only: true,
                sync_standby: None,
                downstreams: Vec::new(),
                end: Lsn::ZERO,
                flushed: Lsn::ZERO,
                replayed: Lsn::ZERO,
                last_replay_at: None,
                upstream: None,
                standby_error: None,
            },
        }
    }

    async fn refresh(&self) {
        self.poll_once().await;
    }

    /// Reads the server from a thread of its own (this is called from
    /// synchronous code inside the runtime); empty when it is down.
    fn writes(&self) -> Vec<Vec<u8>> {
        let conninfo = self.conn_string();
        if !self.running() {
            return Vec::new();
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let (c, conn) = tokio_postgres::connect(&conninfo, NoTls).await.ok()?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let rows = c
                        .query("SELECT payload FROM manatee_writes ORDER BY id", &[])
                        .await
                        .ok()?;
                    Some(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
                })
            })
            .join()
            .ok()
            .flatten()
            .unwrap_or_default()
        })
    }

    async fn read_writes(&self) -> Result<Vec<Vec<u8>>, String> {
        self.read_writes_now().await
    }

    fn wal_bytes(&self) -> Option<u64> {
        self.is_setup().then(|| self.status().end.0)
    }

    /// The rows as a modelled dataset (for snapshots); its history is not
    /// shared with any other dataset's.
    fn backup(&self, zone: &str) -> PgBackup {
        let mut b = PgBackup::from_writes(zone, self.writes());
        if !self.is_setup() {
            b = PgBackup::empty(zone);
        }
        b
    }

    fn load_backup(&self, b: &PgBackup) -> Result<(), String> {
        if !b.has_database() {
            self.destroy_data();
            return Ok(());
        }
        Err(format!(
            "a real PostgreSQL server cannot load a modelled dataset (from {}); \
             rebuild the peer from its primary instead",
            b.source
        ))
    }

    fn destroy_data(&self) {
        let _ = fs::remove_dir_all(&self.data);
    }

    async fn shutdown(&self) {
        let _op = self.op.lock().await;
        self.stop_postmaster(false).await;
    }

    async fn crash(&self) {
        let _op = self.op.lock().await;
        self.stop_postmaster(true).await;
    }

    async fn apply(
        &self,
        config: &PgConfig,
        restore_from: Option<&PeerIdent>,
        _cfg: &Arc<ManateeSimConfig>,
    ) -> Result<(), String> {
        let _op = self.op.lock().await;
        let me = self.me.upgrade().ok_or("server dropped")?;
        me.apply_inner(config, restore_from).await
    }

    async fn write(&self, payload: &[u8], timeout: Duration) -> Result<Lsn, WriteError> {
        let work = async {
            let c = self
                .connect()
                .await
                .map_err(|_| WriteError::PrimaryOffline)?;
            let classify = |e: tokio_postgres::Error| match e.code() {
                Some(c) if *c == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => {
                    WriteError::ReadOnly
                }
                _ => WriteError::NotAcknowledged {
                    lsn: Lsn::ZERO,
                    why: e.to_string(),
                },
            };
            c.execute(
                "INSERT INTO manatee_writes (payload) VALUES ($1)",
                &[&payload],
            )
            .await
            .map_err(classify)?;
            let r = c
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await
                .map_err(classify)?;
            Ok(lsn(r.get(0)).unwrap_or(Lsn::ZERO))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::NotAcknowledged {
                lsn: Lsn::ZERO,
                why: "the sync did not confirm it in time".into(),
            }),
        }
    }
}
