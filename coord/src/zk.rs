//! ZooKeeper-backed coordination through `zookeeper-client`.
//!
//! Restricted to ZooKeeper 3.4 operations because Triton's binder ships 3.4:
//! create (legacy opcode, via `with_server_version(3, 4, 3)`), delete, exists,
//! getData, setData, getChildren, getACL, setACL, multi, auth (`addauth
//! digest`, from [`ZkOptions::auth`], re-sent by the client after every
//! reconnect and sent by the second session too), ping and close. Creates
//! carry the caller's ACL (the open ACL when none is given); a refusal is
//! `CoordError::NoAuth`. Two rules follow:
//!
//! - An un-fired `OneshotWatcher` must never be dropped: its `Drop` sends
//!   RemoveWatches (a 3.5 opcode), and a 3.4 server answers unknown opcodes
//!   with UNIMPLEMENTED and closes the connection
//!   (`UnimplementedRequestProcessor`). Every watcher is therefore moved into
//!   a task that waits for it and forwards the event to our [`Watch`];
//!   dropping a `Watch` only drops the receiving end of that forwarder.
//! - The same holds for a watch call still in flight: if the caller drops
//!   the future of `get_and_watch_data` & co. after the request went out,
//!   the client builds the watcher from the reply, finds nobody to hand it
//!   to, drops it and sends RemoveWatches. So `get_watch`, `exists_watch`
//!   and `children_watch` run the client call in a task of their own
//!   ([`owned_watch_call`]) that always finishes and hands the watcher to a
//!   forwarder; the caller only awaits that task's result. Dropping the
//!   caller's future (a losing `select!` branch, a timeout, a dropped
//!   stream) is therefore always safe: the server-side watch stays, fires
//!   once, and its event goes nowhere.
//! - Session expiry is terminal. The underlying client never re-creates a
//!   session on its own; after `Expired` every call fails with
//!   `SessionExpired`, and so does every call on this handle.
//!
//! Known 3.4 gap in zookeeper-client 0.11.2, confirmed in its source
//! (`src/client/mod.rs`): `Client::create` picks CREATE (1) when the
//! configured server version is below 3.5 and CREATE2 (15) otherwise, but
//! `MultiWriter::add_create` has no such branch: a create inside a multi is
//! always CREATE2 (or CREATE_TTL/CREATE_CONTAINER, both 3.5+ too). The
//! multi's buffer is private and there is no per-request option, so no API
//! path sends a plain CREATE inside a multi. A 3.4 server's
//! `MultiTransactionRecord.deserialize` only knows create/delete/setData/
//! check and throws "Invalid type of op" on 15, which `PrepRequestProcessor`
//! answers with MARSHALLINGERROR for the whole multi: nothing is applied,
//! the session survives. The tests' ZooKeeper 3.8 accepts both opcodes;
//! `tests/zk34_wire.rs` pins all this against a stand-in that answers as
//! 3.4 does.
//!
//! What this backend does about it: at connect it asks the server its
//! version with the `srvr` four-letter word (enabled on 3.4, and the one
//! word 3.5+ whitelists by default). On a server that says it is older than
//! 3.5, a multi containing a create goes over a second session of our own
//! that speaks the wire protocol directly and sends plain CREATE
//! ([`crate::zk34`]). When the version is unknown the multi goes through
//! zookeeper-client; if the server answers MARSHALLINGERROR to a multi with
//! a create (3.4's refusal of CREATE2, before anything is applied), the
//! backend remembers that and re-sends that multi, and every later one with
//! a create, over the second session. Multis without a create always use
//! the main session.
//!
//! On that second session:
//! - an ephemeral create inside a multi is refused (`MultiFailed { index,
//!   Backend(..) }`, nothing sent): the node would belong to the second
//!   session, not to this one. Nothing in tritonctl does that today; make
//!   ephemeral nodes with a plain `create`.
//! - it is used only while the main session is connected: an expired or
//!   closed main session fails the multi with `SessionExpired`/
//!   `SessionClosed` first, as on the main path, and a disconnected one with
//!   `ConnectionLoss` (nothing sent), since the main session may have
//!   expired on the server unbeknown to us. Fenced writes would be safe
//!   anyway (their check op names the leader's ephemeral node, which the
//!   expiry deletes), unfenced ones would not.
//! - a dropped connection reports `ConnectionLoss` (outcome unknown), as the
//!   main path does, and nothing is re-sent.
//! - reads on the main session see the multi's effect: after a successful
//!   multi the main session issues `sync` (a 3.4 operation) before `multi`
//!   returns. Writes need no such step: every write, from either session,
//!   is checked and ordered by the leader, so the multi's checks see
//!   everything the main session wrote before. The second session connects
//!   to the hosts in connect-string order; zookeeper-client does not tell
//!   which server the main session chose, so the sync is what makes the
//!   read-your-writes guarantee, on one server or many.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use zookeeper_client as zkc;

use crate::path::validate_path;
use crate::zk34;
use crate::{
    Acl, CoordError, Coordination, CreateMode, DigestCredentials, Expect, Id, Op, OpResult, Perms,
    Result, SessionState, Stat, Watch, WatchEvent,
};

/// The ZooKeeper release whose protocol we speak (Triton's binder).
const SERVER_VERSION: (u32, u32, u32) = (3, 4, 3);

/// Why an ephemeral create inside a multi cannot go to this server (see
/// module docs).
fn ephemeral_in_multi_refused(version: Option<(u32, u32, u32)>) -> String {
    let server = match version {
        Some((a, b, c)) => format!("ZooKeeper {a}.{b}.{c}"),
        None => "This ZooKeeper (it refused CREATE2 inside a multi, as 3.4 does)".into(),
    };
    format!(
        "{server} takes a create inside a multi-op only over tritonctl's second session \
         (zookeeper-client 0.11 encodes it as CREATE2, a 3.5 opcode), and an ephemeral node \
         made there would belong to that session, not to this one; nothing was applied. \
         Create the ephemeral node with a plain create, or run on ZooKeeper 3.5 or newer"
    )
}

/// Which session carries a multi-op (see module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MultiRoute {
    /// The main session, except a multi with a create on a server older
    /// than 3.5 (said by `srvr`, or learned from its refusal of CREATE2).
    #[default]
    Auto,
    /// Every non-empty multi over the second, wire-protocol session (to test
    /// that path against any server).
    Jute,
}

/// Connection options beyond the connect string and session timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZkOptions {
    pub multi_route: MultiRoute,
    /// `addauth digest user:password` on the session (sent again after
    /// every reconnect) and on the second session. `Debug` never shows
    /// the secret.
    pub auth: Option<DigestCredentials>,
}

fn to_zk_acl(acl: &[Acl]) -> Vec<zkc::Acl> {
    acl.iter()
        .map(|a| {
            let mut perms = zkc::Permission::NONE;
            for (ours, theirs) in [
                (Perms::READ, zkc::Permission::READ),
                (Perms::WRITE, zkc::Permission::WRITE),
                (Perms::CREATE, zkc::Permission::CREATE),
                (Perms::DELETE, zkc::Permission::DELETE),
                (Perms::ADMIN, zkc::Permission::ADMIN),
            ] {
                if a.perms.contains(ours) {
                    perms = perms | theirs;
                }
            }
            zkc::Acl::new(perms, zkc::AuthId::new(&a.id.scheme, &a.id.id))
        })
        .collect()
}

fn from_zk_acl(acl: &[zkc::Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            let mut perms = Perms::NONE;
            for (ours, theirs) in [
                (Perms::READ, zkc::Permission::READ),
                (Perms::WRITE, zkc::Permission::WRITE),
                (Perms::CREATE, zkc::Permission::CREATE),
                (Perms::DELETE, zkc::Permission::DELETE),
                (Perms::ADMIN, zkc::Permission::ADMIN),
            ] {
                if a.permission().has(theirs) {
                    perms |= ours;
                }
            }
            Acl::new(perms, Id::new(a.scheme(), a.id()))
        })
        .collect()
}

/// `Zookeeper version: 3.4.13-2d71af4..., built on ...` -> (3, 4, 13).
pub fn parse_srvr_version(srvr: &str) -> Option<(u32, u32, u32)> {
    let line = srvr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Zookeeper version:"))?;
    let v = line.trim().split(['-', ',', ' ']).next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Ask the first server that answers for its version (`srvr`). `None` when
/// no server answers it (e.g. four-letter words disabled).
pub async fn probe_server_version(connect_string: &str) -> Option<(u32, u32, u32)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // `host:port,host:port/chroot`
    let hosts = connect_string.split('/').next().unwrap_or_default();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let attempt = async {
            let mut conn = tokio::net::TcpStream::connect(host).await.ok()?;
            conn.write_all(b"srvr").await.ok()?;
            let mut out = Vec::new();
            conn.take(64 * 1024).read_to_end(&mut out).await.ok()?;
            parse_srvr_version(&String::from_utf8_lossy(&out))
        };
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
            return Some(v);
        }
    }
    None
}

/// A ZooKeeper session. Dropping it closes the session.
pub struct ZkCoordination {
    /// Taken on `close` so the client drops and sends CloseSession.
    client: Mutex<Option<zkc::Client>>,
    state: Mutex<zkc::StateWatcher>,
    events: watch::Receiver<SessionState>,
    /// `close` was called: calls fail with `SessionClosed`.
    closed: AtomicBool,
    /// `close` was called while the session was alive, so however the
    /// session task ends, we report `Closed`. The server may drop the
    /// connection before the CloseSession reply arrives; the client then
    /// reconnects, hears "expired" and would end in `Expired`.
    closing: Arc<AtomicBool>,
    session_id: i64,
    session_timeout: Duration,
    connect_string: String,
    /// What `srvr` said, if anything.
    server_version: Option<(u32, u32, u32)>,
    options: ZkOptions,
    /// The server refused CREATE2 inside a multi: it is 3.4, whatever
    /// `srvr` said (or did not say).
    refused_create2: AtomicBool,
    /// The second session for multis with creates (connects on first use).
    multi_session: zk34::MultiSession,
}

impl std::fmt::Debug for ZkCoordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkCoordination")
            .field("session_id", &format_args!("{:#x}", self.session_id))
            .field("connect_string", &self.connect_string)
            .field("state", &self.session_state())
            .finish()
    }
}

fn map_state(state: zkc::SessionState) -> SessionState {
    match state {
        zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
            SessionState::Connected
        }
        zkc::SessionState::Disconnected => SessionState::Disconnected,
        // AuthFailed is terminal too (digest authentication never fails,
        // so it means the server rejected the session): treat it like expiry.
        zkc::SessionState::Expired | zkc::SessionState::AuthFailed => SessionState::Expired,
        zkc::SessionState::Closed => SessionState::Closed,
    }
}

fn map_err(err: zkc::Error, path: &str) -> CoordError {
    use zkc::Error as E;
    match err {
        E::NoNode => CoordError::NoNode(path.to_string()),
        E::NodeExists => CoordError::NodeExists(path.to_string()),
        E::BadVersion => CoordError::BadVersion(path.to_string()),
        E::NotEmpty => CoordError::NotEmpty(path.to_string()),
        E::NoChildrenForEphemerals => CoordError::NoChildrenForEphemerals(path.to_string()),
        E::NoAuth => CoordError::NoAuth(path.to_string()),
        E::InvalidAcl => CoordError::InvalidAcl(path.to_string()),
        // The client treats a moved session as expired too.
        E::SessionExpired | E::SessionMoved | E::AuthFailed => CoordError::SessionExpired,
        E::ClientClosed => CoordError::SessionClosed,
        E::ConnectionLoss | E::Timeout | E::NoHosts => CoordError::ConnectionLoss,
        E::BadArguments(why) => CoordError::BadPath(format!("{path}: {why}")),
        other => CoordError::Backend(format!("{path}: {other}")),
    }
}

fn zk_mode(mode: CreateMode) -> zkc::CreateMode {
    match mode {
        CreateMode::Persistent => zkc::CreateMode::Persistent,
        CreateMode::PersistentSequential => zkc::CreateMode::PersistentSequential,
        CreateMode::Ephemeral => zkc::CreateMode::Ephemeral,
        CreateMode::EphemeralSequential => zkc::CreateMode::EphemeralSequential,
    }
}

fn zk_version(expect: Expect) -> Option<i32> {
    match expect {
        Expect::Any => None,
        Expect::Version(v) => Some(v),
    }
}

fn map_stat(s: &zkc::Stat) -> Stat {
    Stat {
        version: s.version,
        cversion: s.cversion,
        ctime_ms: s.ctime,
        mtime_ms: s.mtime,
        ephemeral_owner: s.ephemeral_owner,
        num_children: s.num_children,
        data_length: s.data_length,
    }
}

/// Validate a create path; sequential paths may end in `/` (name = counter).
fn validate_create_path(path: &str, mode: CreateMode) -> Result<()> {
    if mode.is_sequential() {
        validate_path(&format!("{path}0")).map_err(|_| CoordError::BadPath(path.to_string()))
    } else {
        validate_path(path)?;
        if path == "/" {
            // Same answer as the in-process ensemble (the client would refuse
            // with a bad-arguments error instead).
            return Err(CoordError::NodeExists(path.to_string()));
        }
        Ok(())
    }
}

fn validate_op(op: &Op) -> Result<()> {
    match op {
        Op::Create { path, mode, .. } => validate_create_path(path, *mode),
        Op::Delete { path, .. } if path == "/" => Err(CoordError::BadPath(path.clone())),
        other => validate_path(other.path()),
    }
}

/// Hand the watcher to a task that owns it until it fires (see module docs).
fn forward_watch(watcher: zkc::OneshotWatcher, closing: Arc<AtomicBool>) -> Watch {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let event = watcher.changed().await;
        let closing = closing.load(Ordering::SeqCst);
        let mapped = match event.event_type {
            zkc::EventType::NodeCreated => WatchEvent::NodeCreated,
            zkc::EventType::NodeDeleted => WatchEvent::NodeDeleted,
            zkc::EventType::NodeDataChanged => WatchEvent::NodeDataChanged,
            zkc::EventType::NodeChildrenChanged => WatchEvent::NodeChildrenChanged,
            zkc::EventType::Session => match map_state(event.session_state) {
                SessionState::Closed => WatchEvent::SessionClosed,
                _ if closing => WatchEvent::SessionClosed,
                _ => WatchEvent::SessionExpired,
            },
        };
        let _ = tx.send(mapped);
    });
    // The forwarder only disappears without sending if its task died with
    // the runtime; the watch can never fire then.
    Watch::new(async move { rx.await.unwrap_or(WatchEvent::SessionClosed) })
}

/// Run a watch call in a task the backend owns (see module docs): it runs
/// to completion whether or not the caller still waits, and its watcher is
/// always handed to a forwarder. Panics in the call propagate to the caller.
async fn owned_watch_call<T, F>(call: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(call).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down, taking the session with it.
        Err(_) => Err(CoordError::SessionClosed),
    }
}

impl ZkCoordination {
    /// Open a new session. `connect_string` is `host:port[,host:port...]`;
    /// the server may negotiate `session_timeout` into its min/max bounds.
    /// Fails with `ConnectionLoss` if no session is established within about
    /// the session timeout.
    pub async fn connect(
        connect_string: &str,
        session_timeout: Duration,
    ) -> Result<Arc<ZkCoordination>> {
        Self::connect_with(connect_string, session_timeout, ZkOptions::default()).await
    }

    /// [`connect`](Self::connect) with options.
    pub async fn connect_with(
        connect_string: &str,
        session_timeout: Duration,
        options: ZkOptions,
    ) -> Result<Arc<ZkCoordination>> {
        let (major, minor, patch) = SERVER_VERSION;
        let mut connector = zkc::Client::connector();
        connector = connector
            .with_server_version(major, minor, patch)
            .with_session_timeout(session_timeout);
        if let Some(creds) = &options.auth {
            connector = connector.with_auth("digest", &creds.auth_bytes());
        }
        let client = connector
            .connect(connect_string)
            .await
            .map_err(|e| match e {
                zkc::Error::Timeout | zkc::Error::NoHosts | zkc::Error::ConnectionLoss => {
                    CoordError::ConnectionLoss
                }
                other => CoordError::Backend(format!("connect to {connect_string}: {other}")),
            })?;

        // Asked once the session is up: a server still starting answers
        // `srvr` with "not currently serving requests".
        let server_version = probe_server_version(connect_string).await;
        let mut forwarder = client.state_watcher();
        let initial = map_state(client.state());
        let (tx, events) = watch::channel(initial);
        let closing = Arc::new(AtomicBool::new(false));
        let forwarder_closing = closing.clone();
        // Feeds `session_events`. Ends at the first terminal state, which the
        // client always delivers (and it comes when the client is dropped).
        tokio::spawn(async move {
            if initial.is_terminal() {
                return;
            }
            loop {
                let mut state = map_state(forwarder.changed().await);
                if state.is_terminal() && forwarder_closing.load(Ordering::SeqCst) {
                    state = SessionState::Closed;
                }
                tx.send_replace(state);
                if state.is_terminal() {
                    break;
                }
            }
        });

        let session_id = client.session_id().0;
        tracing::debug!(
            session = format_args!("{session_id:#x}"),
            timeout_ms = client.session_timeout().as_millis() as u64,
            "zookeeper session established"
        );
        let session_timeout = client.session_timeout();
        Ok(Arc::new(ZkCoordination {
            state: Mutex::new(client.state_watcher()),
            session_timeout,
            client: Mutex::new(Some(client)),
            events,
            closed: AtomicBool::new(false),
            closing,
            session_id,
            connect_string: connect_string.to_string(),
            server_version,
            refused_create2: AtomicBool::new(false),
            multi_session: zk34::MultiSession::with_auth(
                connect_string,
                session_timeout,
                options.auth.clone(),
            ),
            options,
        }))
    }

    /// The server's version as `srvr` reported it at connect, if it did.
    pub fn server_version(&self) -> Option<(u32, u32, u32)> {
        self.server_version
    }

    /// Whether zookeeper-client's multi (CREATE2 for a create) suits this
    /// server: false when the server said it is older than 3.5, or refused
    /// CREATE2 inside a multi. Multis with a create then go over the second
    /// session (see module docs).
    pub fn accepts_create_in_multi(&self) -> bool {
        !self.refused_create2.load(Ordering::SeqCst)
            && !matches!(self.server_version, Some((maj, min, _)) if (maj, min) < (3, 5))
    }

    /// The second (multi) session: its id once it exists, connections made,
    /// pings sent.
    pub fn multi_session_info(&self) -> zk34::MultiSessionInfo {
        self.multi_session.info()
    }

    /// A multi over the second session: the main session must be alive;
    /// ephemeral creates are refused; a successful multi is followed by a
    /// `sync` on the main session (see module docs).
    async fn multi_over_second_session(&self, ops: &[Op]) -> Result<Vec<OpResult>> {
        let client = self.client()?;
        match self.session_state() {
            SessionState::Expired => return Err(CoordError::SessionExpired),
            SessionState::Closed => return Err(CoordError::SessionClosed),
            // The main session may have expired on the server without our
            // knowing yet; nothing is sent (a fenced multi's check would
            // catch that, an unfenced one would not).
            SessionState::Disconnected => return Err(CoordError::ConnectionLoss),
            SessionState::Connected => {}
        }
        if let Some(index) = ops
            .iter()
            .position(|op| matches!(op, Op::Create { mode, .. } if mode.is_ephemeral()))
        {
            return Err(CoordError::MultiFailed {
                index,
                error: Box::new(CoordError::Backend(ephemeral_in_multi_refused(
                    self.server_version,
                ))),
            });
        }
        let results = self.multi_session.multi(ops).await?;
        // Read-your-writes on the main session, whichever server it is on.
        let patience = self.session_timeout * 2;
        match tokio::time::timeout(patience, client.sync("/")).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                session = format_args!("{:#x}", self.session_id),
                "sync after a multi on the second session failed ({e}); the multi was applied, \
                 but a read on this session may not see it yet"
            ),
            Err(_) => tracing::warn!(
                session = format_args!("{:#x}", self.session_id),
                "sync after a multi on the second session took over {patience:?}; the multi \
                 was applied, but a read on this session may not see it yet"
            ),
        }
        Ok(results)
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    pub fn connect_string(&self) -> &str {
        &self.connect_string
    }

    /// Test/simulation hook: end this session from outside, as the ensemble
    /// would when it expires a session. Another client attaches to the same
    /// session (id and password) and closes it; our reconnect is then
    /// answered with "session expired". Returns once this handle reports a
    /// terminal state, or fails after a few session timeouts.
    ///
    /// The server gives a session to whichever connection presented it last,
    /// and our own client reconnects at once when its connection is taken
    /// away; so an attach can lose the session again before its CloseSession
    /// goes out. Each attempt therefore tries the ensemble once
    /// (`with_fail_eagerly`), and we keep attaching until this handle sees the
    /// end. Every attached client keeps re-sending CloseSession after its own
    /// reconnects until the session is gone, then stops.
    pub async fn expire_from_outside(&self) -> Result<()> {
        let session = self.client()?.session().clone();
        let patience = self.session_timeout * 3 + Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + patience;
        let (major, minor, patch) = SERVER_VERSION;
        let mut events = self.events.clone();
        let mut attempts = 0u32;
        let mut attached = 0u32;
        let mut last_error = None;
        loop {
            if events.borrow().is_terminal() {
                tracing::debug!(
                    session = format_args!("{:#x}", self.session_id),
                    attempts,
                    attached,
                    "session expired from outside"
                );
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoordError::Backend(format!(
                    "session {:#x} not expired within {patience:?} ({attempts} attach attempts, \
                     {attached} attached, last error {last_error:?})",
                    self.session_id
                )));
            }
            attempts += 1;
            let other = zkc::Client::connector()
                .with_server_version(major, minor, patch)
                .with_session(session.clone())
                .with_session_timeout(self.session_timeout)
                .with_fail_eagerly()
                .connect(&self.connect_string)
                .await;
            let wait = match other {
                Ok(other) => {
                    attached += 1;
                    // Dropping the only handle sends CloseSession.
                    drop(other);
                    Duration::from_millis(500)
                }
                // Already ended on the server; our handle learns it on its
                // next reconnect (or by its own timeout).
                Err(zkc::Error::SessionExpired) => patience,
                Err(e) => {
                    last_error = Some(e);
                    Duration::from_millis(2)
                }
            };
            let until = deadline.min(tokio::time::Instant::now() + wait);
            let _ = tokio::time::timeout_at(until, events.wait_for(|s| s.is_terminal())).await;
        }
    }

    /// A clone of the client for one call (cheap: it is a few `Arc`s), or the
    /// reason there is none.
    fn client(&self) -> Result<zkc::Client> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(CoordError::SessionClosed);
        }
        self.client
            .lock()
            .expect("zk client lock poisoned")
            .clone()
            .ok_or(CoordError::SessionClosed)
    }
}

#[async_trait]
impl Coordination for ZkCoordination {
    fn session_id(&self) -> i64 {
        self.session_id
    }

    fn session_state(&self) -> SessionState {
        let state = map_state(
            self.state
                .lock()
                .expect("zk state lock poisoned")
                .peek_state(),
        );
        if self.closing.load(Ordering::SeqCst) {
            return SessionState::Closed;
        }
        state
    }

    fn session_events(&self) -> watch::Receiver<SessionState> {
        self.events.clone()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        self.create_with_acl(path, data, mode, &Acl::open()).await
    }

    async fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: &[Acl],
    ) -> Result<String> {
        validate_create_path(path, mode)?;
        crate::acl::validate_acl(path, acl)?;
        let client = self.client()?;
        let acl = to_zk_acl(acl);
        let options = zk_mode(mode).with_acls(zkc::Acls::new(&acl));
        let (_, sequence) = client
            .create(path, data, &options)
            .await
            .map_err(|e| map_err(e, path))?;
        // The 3.4 create reply carries the path, but the client only hands
        // back the sequence; it formats it as ZooKeeper does (10 digits).
        Ok(if mode.is_sequential() {
            format!("{path}{sequence}")
        } else {
            path.to_string()
        })
    }

    async fn get(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        validate_path(path)?;
        let client = self.client()?;
        let (data, stat) = client.get_data(path).await.map_err(|e| map_err(e, path))?;
        Ok((data, map_stat(&stat)))
    }

    async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        validate_path(path)?;
        let client = self.client()?;
        let (acl, stat) = client.get_acl(path).await.map_err(|e| map_err(e, path))?;
        Ok((from_zk_acl(&acl), map_stat(&stat)))
    }

    async fn set_acl(&self, path: &str, acl: &[Acl], expect: Expect) -> Result<()> {
        validate_path(path)?;
        crate::acl::validate_acl(path, acl)?;
        let client = self.client()?;
        client
            .set_acl(path, &to_zk_acl(acl), zk_version(expect))
            .await
            .map_err(|e| map_err(e, path))?;
        Ok(())
    }

    async fn get_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch)> {
        validate_path(path)?;
        let client = self.client()?;
        let (path, closing) = (path.to_owned(), self.closing.clone());
        owned_watch_call(async move {
            let (data, stat, watcher) = client
                .get_and_watch_data(&path)
                .await
                .map_err(|e| map_err(e, &path))?;
            Ok((data, map_stat(&stat), forward_watch(watcher, closing)))
        })
        .await
    }

    async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        validate_path(path)?;
        let client = self.client()?;
        let stat = client
            .check_stat(path)
            .await
            .map_err(|e| map_err(e, path))?;
        Ok(stat.as_ref().map(map_stat))
    }

    async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, Watch)> {
        validate_path(path)?;
        let client = self.client()?;
        let (path, closing) = (path.to_owned(), self.closing.clone());
        owned_watch_call(async move {
            let (stat, watcher) = client
                .check_and_watch_stat(&path)
                .await
                .map_err(|e| map_err(e, &path))?;
            Ok((stat.as_ref().map(map_stat), forward_watch(watcher, closing)))
        })
        .await
    }

    async fn set(&self, path: &str, data: &[u8], expect: Expect) -> Result<Stat> {
        validate_path(path)?;
        let client = self.client()?;
        let stat = client
            .set_data(path, data, zk_version(expect))
            .await
            .map_err(|e| map_err(e, path))?;
        Ok(map_stat(&stat))
    }

    async fn delete(&self, path: &str, expect: Expect) -> Result<()> {
        validate_path(path)?;
        if path == "/" {
            return Err(CoordError::BadPath(path.to_string()));
        }
        let client = self.client()?;
        client
            .delete(path, zk_version(expect))
            .await
            .map_err(|e| map_err(e, path))
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        let client = self.client()?;
        client
            .list_children(path)
            .await
            .map_err(|e| map_err(e, path))
    }

    async fn children_watch(&self, path: &str) -> Result<(Vec<String>, Watch)> {
        validate_path(path)?;
        let client = self.client()?;
        let (path, closing) = (path.to_owned(), self.closing.clone());
        owned_watch_call(async move {
            let (children, watcher) = client
                .list_and_watch_children(&path)
                .await
                .map_err(|e| map_err(e, &path))?;
            Ok((children, forward_watch(watcher, closing)))
        })
        .await
    }

    async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        let failed = |index: usize, error: CoordError| CoordError::MultiFailed {
            index,
            error: Box::new(error),
        };
        for (index, op) in ops.iter().enumerate() {
            validate_op(op).map_err(|e| failed(index, e))?;
            if let Op::Create {
                path,
                acl: Some(acl),
                ..
            } = op
            {
                crate::acl::validate_acl(path, acl).map_err(|e| failed(index, e))?;
            }
        }
        if ops.is_empty() {
            // Still report a dead session, as a round trip would.
            self.client()?;
            return Ok(Vec::new());
        }
        let has_create = ops.iter().any(|op| matches!(op, Op::Create { .. }));
        if self.options.multi_route == MultiRoute::Jute
            || (has_create && !self.accepts_create_in_multi())
        {
            return self.multi_over_second_session(&ops).await;
        }
        let client = self.client()?;
        let mut writer = client.new_multi_writer();
        let acls: Vec<Option<Vec<zkc::Acl>>> = ops
            .iter()
            .map(|op| match op {
                Op::Create { acl: Some(acl), .. } => Some(to_zk_acl(acl)),
                _ => None,
            })
            .collect();
        for (index, op) in ops.iter().enumerate() {
            let added = match op {
                Op::Create {
                    path, data, mode, ..
                } => writer.add_create(
                    path,
                    data,
                    &zk_mode(*mode).with_acls(match &acls[index] {
                        Some(acl) => zkc::Acls::new(acl),
                        None => zkc::Acls::anyone_all(),
                    }),
                ),
                Op::Set { path, data, expect } => {
                    writer.add_set_data(path, data, zk_version(*expect))
                }
                Op::Delete { path, expect } => writer.add_delete(path, zk_version(*expect)),
                Op::Check { path, expect } => {
                    writer.add_check_version(path, zk_version(*expect).unwrap_or(-1))
                }
            };
            added.map_err(|e| failed(index, map_err(e, op.path())))?;
        }
        let results = match writer.commit().await {
            Ok(results) => results,
            Err(zkc::MultiWriteError::OperationFailed { index, source }) => {
                let path = ops.get(index).map_or("", Op::path);
                return Err(failed(index, map_err(source, path)));
            }
            // 3.4 refusing CREATE2: the multi was refused while being read,
            // before anything was applied, so sending it again with plain
            // CREATE is not a blind retry (see module docs).
            Err(zkc::MultiWriteError::RequestFailed {
                source: zkc::Error::MarshallingError,
            }) if has_create => {
                tracing::info!(
                    session = format_args!("{:#x}", self.session_id),
                    "ZooKeeper refused CREATE2 inside a multi; sending multis with a create \
                     over the wire-protocol session from now on"
                );
                self.refused_create2.store(true, Ordering::SeqCst);
                return self.multi_over_second_session(&ops).await;
            }
            Err(zkc::MultiWriteError::RequestFailed { source }) => {
                return Err(map_err(source, ""));
            }
        };
        if results.len() != ops.len() {
            return Err(CoordError::Backend(format!(
                "multi returned {} results for {} operations",
                results.len(),
                ops.len()
            )));
        }
        results
            .into_iter()
            .map(|r| match r {
                zkc::MultiWriteResult::Check => Ok(OpResult::Checked),
                zkc::MultiWriteResult::Delete => Ok(OpResult::Deleted),
                zkc::MultiWriteResult::Create { path, .. } => Ok(OpResult::Created(path)),
                zkc::MultiWriteResult::SetData { stat } => Ok(OpResult::Set(map_stat(&stat))),
                other => Err(CoordError::Backend(format!(
                    "unexpected multi result {other:?}"
                ))),
            })
            .collect()
    }

    async fn close(&self) {
        // The second session first, while the main one still answers.
        self.multi_session.close().await;
        let client = self.client.lock().expect("zk client lock poisoned").take();
        if let Some(client) = &client
            && !client.state().is_terminated()
        {
            self.closing.store(true, Ordering::SeqCst);
        }
        self.closed.store(true, Ordering::SeqCst);
        let Some(client) = client else {
            return;
        };
        let mut state = client.state_watcher();
        // Dropping the last clone makes the session task send CloseSession;
        // calls still in flight hold clones and delay that until they finish.
        drop(client);
        let patience = self.session_timeout + Duration::from_secs(2);
        let closed = tokio::time::timeout(patience, async {
            while !state.state().is_terminated() {
                state.changed().await;
            }
        })
        .await;
        if closed.is_err() {
            tracing::warn!(
                session = format_args!("{:#x}", self.session_id),
                "zookeeper session did not confirm close in {patience:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srvr_versions_parse() {
        let out = "Zookeeper version: 3.4.13-2d71af4dbe22557fda74f9a9b4309b15a7487f03, built on 06/29/2018 04:05 GMT\nLatency min/avg/max: 0/0/0\nMode: standalone\n";
        assert_eq!(parse_srvr_version(out), Some((3, 4, 13)));
        assert_eq!(
            parse_srvr_version(
                "Zookeeper version: 3.8.4-9316c2a7a97e1666d8f4593f34dd6fc36ecc436c, built on 2024-02-12 22:16 UTC\n"
            ),
            Some((3, 8, 4))
        );
        assert_eq!(
            parse_srvr_version("srvr is not executed because it is not in the whitelist.\n"),
            None
        );
        assert_eq!(parse_srvr_version(""), None);
    }

    #[test]
    fn options_never_show_the_secret() {
        let o = ZkOptions {
            auth: Some(DigestCredentials::new(
                "tritonctl",
                crate::Secret::new("s3cret-value-123456"),
            )),
            ..ZkOptions::default()
        };
        let shown = format!("{o:?}");
        assert!(
            shown.contains("tritonctl") && !shown.contains("s3cret"),
            "{shown}"
        );
        // ACLs go to the client and come back unchanged.
        let acl = vec![
            Acl::new(Perms::READ | Perms::ADMIN, Id::digest("a:h")),
            Acl::new(Perms::ALL, Id::anyone()),
            Acl::new(Perms::DELETE, Id::creator()),
        ];
        assert_eq!(from_zk_acl(&to_zk_acl(&acl)), acl);
    }

    #[test]
    fn the_refusal_says_what_happened_and_what_to_do() {
        let m = ephemeral_in_multi_refused(Some((3, 4, 13)));
        assert!(
            m.contains("ZooKeeper 3.4.13")
                && m.contains("ephemeral")
                && m.contains("nothing was applied")
                && m.contains("plain create"),
            "{m}"
        );
    }
}
