//! A second, minimal ZooKeeper session of our own, speaking the wire
//! protocol directly (records in [`crate::jute`]), used for one thing: a
//! multi-op that contains a create, on a ZooKeeper older than 3.5.
//!
//! zookeeper-client 0.11 always encodes a create inside a multi as CREATE2
//! (opcode 15), which a 3.4 server refuses with MARSHALLINGERROR for the
//! whole multi (see `zk.rs`). This session sends the plain CREATE (1), with
//! delete (2), setData (5) and check (13), inside multi (14), which is what
//! a 3.4 server's `MultiTransactionRecord` reads.
//!
//! What it does, and why it is enough:
//! - **Handshake**: `ConnectRequest` with the main session's timeout; the
//!   server grants a session (id, password, timeout) of its own.
//! - **Authentication**: with credentials, an auth packet (`addauth digest
//!   user:password`, xid -4, opcode 100) right after every handshake, its
//!   reply awaited before any request, so every multi here carries the same
//!   identity as the main session (the server checks ACLs per session).
//! - **Keepalive**: a ping (xid -2, opcode 11) every third of the granted
//!   timeout; a connection that brings no packet (ping replies included)
//!   for two thirds of it is dead.
//! - **Requests**: xids count up from 1 (wrapping back to 1), one request
//!   per xid; the server answers a connection's requests in order, so
//!   replies must come back in the order sent: a reply whose xid is not the
//!   oldest outstanding one is a protocol violation and ends the connection.
//! - **Lost connection**: every request still outstanding fails with
//!   [`Lost`], which the backend reports as `CoordError::ConnectionLoss`
//!   (outcome unknown; the multi may or may not have been applied), exactly
//!   as the main session reports a dropped multi. Nothing is ever re-sent.
//!   The next request reconnects, re-attaching to the same session (id and
//!   password, trying each host in turn); a server that no longer knows
//!   the session answers with timeout 0 and we start a fresh one. That is
//!   safe only because this session owns nothing: no watches, and no
//!   ephemeral nodes (the backend refuses an ephemeral create on this path,
//!   because the node would belong to this session and vanish with it, not
//!   with the caller's session).
//! - **Close**: CloseSession (-11) on `close`, and also when the handle is
//!   dropped (the writer task sends it when its request channel closes).
//!
//! Ordering with the main session is the backend's job: it syncs the main
//! session after a successful multi here (see `ZkCoordination::multi`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::jute::{self, MultiOp, MultiResult, ReplyHeader, code, op, xid};
use crate::{Acl, CoordError, CreateMode, DigestCredentials, Expect, Op, OpResult, Result};

/// The connection dropped before the reply came: the request may or may
/// not have been applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost;

/// Largest reply we accept (ZooKeeper's default jute.maxbuffer is 1 MiB;
/// a multi's reply is far smaller).
const MAX_PACKET: usize = 16 << 20;

type Reply = std::result::Result<(ReplyHeader, Vec<u8>), Lost>;

struct Outgoing {
    opcode: i32,
    body: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// Requests sent and not yet answered, oldest first.
#[derive(Default)]
struct Pending {
    dead: bool,
    queue: VecDeque<(i32, oneshot::Sender<Reply>)>,
}

/// State one connection's reader and writer tasks share.
struct Shared {
    pending: Mutex<Pending>,
    /// Set once the connection is dead; tells the writer to stop.
    dead_tx: watch::Sender<bool>,
    last_zxid: Arc<AtomicI64>,
    pings: Arc<AtomicU64>,
}

impl Shared {
    /// Record a request about to be written; false (and the caller told
    /// `Lost`) if the connection is already dead.
    fn push(&self, xid: i32, reply: oneshot::Sender<Reply>) -> bool {
        let mut p = self.pending.lock().expect("pending lock poisoned");
        if p.dead {
            let _ = reply.send(Err(Lost));
            return false;
        }
        p.queue.push_back((xid, reply));
        true
    }

    /// The connection is gone: fail everything outstanding, stop the writer.
    fn kill(&self) {
        let drained = {
            let mut p = self.pending.lock().expect("pending lock poisoned");
            p.dead = true;
            std::mem::take(&mut p.queue)
        };
        for (_, reply) in drained {
            let _ = reply.send(Err(Lost));
        }
        self.dead_tx.send_replace(true);
    }

    fn is_dead(&self) -> bool {
        *self.dead_tx.borrow()
    }
}

/// One TCP connection carrying the session.
struct Conn {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

impl Conn {
    fn alive(&self) -> bool {
        !self.shared.is_dead() && !self.tx.is_closed()
    }

    /// Queue one request; the reply (or `Lost`) comes through the receiver.
    fn send(&self, opcode: i32, body: Vec<u8>) -> oneshot::Receiver<Reply> {
        let (reply, rx) = oneshot::channel();
        // If the writer is gone, `reply` is dropped with the message and the
        // receiver reads that as `Lost`.
        let _ = self.tx.send(Outgoing {
            opcode,
            body,
            reply,
        });
        rx
    }
}

/// Why a connection attempt failed.
enum OpenError {
    /// The server does not know the session we presented.
    Expired,
    Io(String),
}

struct Opened {
    conn: Conn,
    session_id: i64,
    passwd: Vec<u8>,
    timeout: Duration,
}

async fn read_packet(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await?;
    let n = i32::from_be_bytes(len);
    if n < 0 || n as usize > MAX_PACKET {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("packet length {n}"),
        ));
    }
    let mut body = vec![0u8; n as usize];
    rd.read_exact(&mut body).await?;
    Ok(body)
}

async fn open(
    host: &str,
    session: Option<&(i64, Vec<u8>)>,
    timeout: Duration,
    last_zxid: &Arc<AtomicI64>,
    pings: &Arc<AtomicU64>,
    auth: Option<&DigestCredentials>,
) -> std::result::Result<Opened, OpenError> {
    let io = |e: std::io::Error| OpenError::Io(format!("{host}: {e}"));
    let (id, passwd) = match session {
        Some((id, passwd)) => (*id, passwd.clone()),
        None => (0, vec![0u8; 16]),
    };
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let handshake = async {
        let stream = TcpStream::connect(host).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let (mut rd, mut wr) = stream.into_split();
        let request =
            jute::connect_request(last_zxid.load(Ordering::SeqCst), timeout_ms, id, &passwd);
        wr.write_all(&jute::frame(&request)).await.map_err(io)?;
        let body = read_packet(&mut rd).await.map_err(io)?;
        let resp = jute::ConnectResponse::decode(&body)
            .map_err(|e| OpenError::Io(format!("{host}: {e}")))?;
        if resp.is_expired() {
            return Err(OpenError::Expired);
        }
        if let Some(creds) = auth {
            let packet = jute::auth_packet("digest", &creds.auth_bytes());
            let request = jute::request(xid::AUTH, op::AUTH, &packet);
            wr.write_all(&jute::frame(&request)).await.map_err(io)?;
            let body = read_packet(&mut rd).await.map_err(io)?;
            let (header, _) =
                jute::reply(&body).map_err(|e| OpenError::Io(format!("{host}: {e}")))?;
            if header.xid != xid::AUTH || header.err != code::OK {
                return Err(OpenError::Io(format!(
                    "{host}: authentication as {} refused ({})",
                    creds.user,
                    code::name(header.err)
                )));
            }
        }
        Ok((rd, wr, resp))
    };
    // Bounded like the main client's connection attempts: one session
    // timeout per host.
    let (rd, wr, resp) = tokio::time::timeout(timeout.max(Duration::from_secs(1)), handshake)
        .await
        .map_err(|_| OpenError::Io(format!("{host}: no ConnectResponse within {timeout:?}")))??;
    let granted = Duration::from_millis(resp.timeout_ms as u64);
    let (dead_tx, dead_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        dead_tx,
        last_zxid: last_zxid.clone(),
        pings: pings.clone(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(reader(rd, shared.clone(), granted * 2 / 3));
    tokio::spawn(writer(wr, rx, shared.clone(), dead_rx, granted / 3));
    Ok(Opened {
        conn: Conn { tx, shared },
        session_id: resp.session_id,
        passwd: resp.passwd,
        timeout: granted,
    })
}

async fn reader(mut rd: OwnedReadHalf, shared: Arc<Shared>, read_timeout: Duration) {
    loop {
        let packet = match tokio::time::timeout(read_timeout, read_packet(&mut rd)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!("zookeeper multi session: connection ended: {e}");
                break;
            }
            Err(_) => {
                tracing::debug!("zookeeper multi session: nothing heard in {read_timeout:?}");
                break;
            }
        };
        let Ok((header, body)) = jute::reply(&packet) else {
            break;
        };
        if header.zxid > 0 {
            shared.last_zxid.fetch_max(header.zxid, Ordering::SeqCst);
        }
        if header.xid == xid::PING || header.xid == xid::NOTIFICATION {
            continue;
        }
        let oldest = shared
            .pending
            .lock()
            .expect("pending lock poisoned")
            .queue
            .pop_front();
        match oldest {
            Some((want, reply)) if want == header.xid => {
                let _ = reply.send(Ok((header, body.to_vec())));
            }
            Some((want, reply)) => {
                tracing::warn!(
                    "zookeeper multi session: reply xid {} while {want} was oldest; dropping the connection",
                    header.xid
                );
                let _ = reply.send(Err(Lost));
                break;
            }
            None => {
                tracing::warn!(
                    "zookeeper multi session: reply xid {} with nothing outstanding",
                    header.xid
                );
                break;
            }
        }
    }
    shared.kill();
}

async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
    mut dead: watch::Receiver<bool>,
    ping_every: Duration,
) {
    let mut next_xid: i32 = 1;
    let mut take_xid = move || {
        let x = next_xid;
        next_xid = if next_xid == i32::MAX {
            1
        } else {
            next_xid + 1
        };
        x
    };
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + ping_every,
        ping_every.max(Duration::from_millis(10)),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let packet = tokio::select! {
            () = async { let _ = dead.wait_for(|d| *d).await; } => break,
            msg = rx.recv() => match msg {
                Some(Outgoing { opcode, body, reply }) => {
                    let x = take_xid();
                    if !shared.push(x, reply) {
                        break;
                    }
                    jute::request(x, opcode, &body)
                }
                // Every handle is gone: end the session politely. The reply
                // (and the server closing) ends the reader.
                None => {
                    let x = take_xid();
                    let close = jute::request(x, op::CLOSE_SESSION, &[]);
                    let _ = wr.write_all(&jute::frame(&close)).await;
                    break;
                }
            },
            _ = ticker.tick() => {
                shared.pings.fetch_add(1, Ordering::Relaxed);
                jute::request(xid::PING, op::PING, &[])
            }
        };
        if let Err(e) = wr.write_all(&jute::frame(&packet)).await {
            tracing::debug!("zookeeper multi session: write failed: {e}");
            shared.kill();
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// `host:port,host:port/chroot` -> hosts and chroot ("" for none).
pub fn parse_connect_string(connect_string: &str) -> (Vec<String>, String) {
    let (hosts, chroot) = match connect_string.find('/') {
        Some(i) => (&connect_string[..i], &connect_string[i..]),
        None => (connect_string, ""),
    };
    let chroot = chroot.trim_end_matches('/').to_string();
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    (hosts, chroot)
}

/// Diagnostics of the multi session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSessionInfo {
    /// The session id the server granted (0 before the first multi).
    pub session_id: i64,
    /// Connections made so far (first connect and every reconnect).
    pub connections: u64,
    /// Pings sent so far.
    pub pings: u64,
    /// A connection is up (as far as its reader knows).
    pub connected: bool,
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    session: Option<(i64, Vec<u8>)>,
    timeout: Option<Duration>,
    closed: bool,
}

pub struct MultiSession {
    hosts: Vec<String>,
    /// Sent after every handshake (the main session's credentials).
    auth: Option<DigestCredentials>,
    chroot: String,
    timeout: Duration,
    state: tokio::sync::Mutex<State>,
    last_zxid: Arc<AtomicI64>,
    pings: Arc<AtomicU64>,
    connections: AtomicU64,
    session_id: AtomicI64,
    /// The current connection's shared state, for `info` (which cannot
    /// wait for the async state lock).
    connected: Mutex<Option<Arc<Shared>>>,
}

impl MultiSession {
    /// No connection is made until the first request.
    pub fn new(connect_string: &str, timeout: Duration) -> MultiSession {
        MultiSession::with_auth(connect_string, timeout, None)
    }

    /// A session that authenticates with `auth` on every connection.
    pub fn with_auth(
        connect_string: &str,
        timeout: Duration,
        auth: Option<DigestCredentials>,
    ) -> MultiSession {
        let (hosts, chroot) = parse_connect_string(connect_string);
        MultiSession {
            auth,
            hosts,
            chroot,
            timeout,
            state: tokio::sync::Mutex::default(),
            last_zxid: Arc::default(),
            pings: Arc::default(),
            connections: AtomicU64::new(0),
            session_id: AtomicI64::new(0),
            connected: Mutex::new(None),
        }
    }

    pub fn info(&self) -> MultiSessionInfo {
        MultiSessionInfo {
            session_id: self.session_id.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
            pings: self.pings.load(Ordering::Relaxed),
            connected: self
                .connected
                .lock()
                .expect("connected lock poisoned")
                .as_ref()
                .is_some_and(|c| !c.is_dead()),
        }
    }

    /// The live connection, made (or re-made) if needed.
    async fn connection(&self) -> Result<Arc<Conn>> {
        let mut st = self.state.lock().await;
        if st.closed {
            return Err(CoordError::SessionClosed);
        }
        if let Some(c) = &st.conn
            && c.alive()
        {
            return Ok(c.clone());
        }
        st.conn = None;
        let mut last_error = String::from("no hosts in the connect string");
        for host in &self.hosts {
            // Re-attach first; a server that no longer knows the session
            // gets a fresh one (this session owns nothing, see module docs).
            let mut attempts = 0;
            loop {
                attempts += 1;
                match open(
                    host,
                    st.session.as_ref(),
                    st.timeout.unwrap_or(self.timeout),
                    &self.last_zxid,
                    &self.pings,
                    self.auth.as_ref(),
                )
                .await
                {
                    Ok(opened) => {
                        self.connections.fetch_add(1, Ordering::SeqCst);
                        self.session_id.store(opened.session_id, Ordering::SeqCst);
                        if st.session.as_ref().map(|s| s.0) != Some(opened.session_id) {
                            tracing::debug!(
                                session = format_args!("{:#x}", opened.session_id),
                                host,
                                "zookeeper multi session established"
                            );
                        }
                        st.session = Some((opened.session_id, opened.passwd));
                        st.timeout = Some(opened.timeout);
                        *self.connected.lock().expect("connected lock poisoned") =
                            Some(opened.conn.shared.clone());
                        let conn = Arc::new(opened.conn);
                        st.conn = Some(conn.clone());
                        return Ok(conn);
                    }
                    Err(OpenError::Expired) if st.session.is_some() && attempts == 1 => {
                        tracing::debug!(host, "zookeeper multi session expired; starting anew");
                        st.session = None;
                        st.timeout = None;
                    }
                    Err(OpenError::Expired) => {
                        last_error = format!("{host} refused a new session");
                        break;
                    }
                    Err(OpenError::Io(e)) => {
                        last_error = e;
                        break;
                    }
                }
            }
        }
        tracing::debug!("zookeeper multi session: no server reachable: {last_error}");
        Err(CoordError::ConnectionLoss)
    }

    /// One request and its reply. `ConnectionLoss` when no server could be
    /// reached (nothing sent) or the connection dropped before the reply
    /// (outcome unknown); never re-sent.
    async fn call(&self, opcode: i32, body: Vec<u8>) -> Result<(ReplyHeader, Vec<u8>)> {
        let conn = self.connection().await?;
        match conn.send(opcode, body).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(Lost)) | Err(_) => Err(CoordError::ConnectionLoss),
        }
    }

    fn chrooted(&self, path: &str) -> String {
        if self.chroot.is_empty() {
            path.to_string()
        } else if path == "/" {
            self.chroot.clone()
        } else {
            format!("{}{path}", self.chroot)
        }
    }

    fn unchrooted(&self, path: String) -> String {
        if self.chroot.is_empty() {
            return path;
        }
        match path.strip_prefix(&self.chroot) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => path,
        }
    }

    /// Send `ops` as one multi (opcodes 1/2/5/13 inside 14) and map the
    /// reply as the main backend does. The caller has validated the ops and
    /// refused ephemeral creates.
    pub async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>> {
        let version = |e: &Expect| match e {
            Expect::Any => -1,
            Expect::Version(v) => *v,
        };
        let paths: Vec<String> = ops.iter().map(|o| self.chrooted(o.path())).collect();
        let open = Acl::open();
        let wire: Vec<MultiOp<'_>> = ops
            .iter()
            .zip(&paths)
            .map(|(o, path)| match o {
                Op::Create {
                    data, mode, acl, ..
                } => MultiOp::Create {
                    path,
                    data,
                    acl: acl.as_deref().unwrap_or(&open),
                    flags: create_flags(*mode),
                },
                Op::Set { data, expect, .. } => MultiOp::SetData {
                    path,
                    data,
                    version: version(expect),
                },
                Op::Delete { expect, .. } => MultiOp::Delete {
                    path,
                    version: version(expect),
                },
                Op::Check { expect, .. } => MultiOp::Check {
                    path,
                    version: version(expect),
                },
            })
            .collect();
        let (header, body) = self.call(op::MULTI, jute::multi_request(&wire)).await?;
        if header.err != code::OK {
            return Err(match header.err {
                // Our own session's trouble, not the caller's: the caller's
                // session is fine. The next multi starts a new session.
                code::SESSION_EXPIRED | code::SESSION_MOVED => {
                    self.forget_session().await;
                    CoordError::ConnectionLoss
                }
                other => code_error(other, ""),
            });
        }
        let results = jute::multi_response(&body).map_err(|e| {
            CoordError::Backend(format!(
                "{e}; the server accepted the multi-op, so it was applied, but its results \
                 could not be read"
            ))
        })?;
        map_results(ops, results, |p| self.unchrooted(p))
    }

    async fn forget_session(&self) {
        let mut st = self.state.lock().await;
        st.conn = None;
        st.session = None;
        st.timeout = None;
    }

    /// End the session (CloseSession), waiting at most about its timeout.
    pub async fn close(&self) {
        let conn = {
            let mut st = self.state.lock().await;
            st.closed = true;
            st.session = None;
            st.conn.take()
        };
        let Some(conn) = conn.filter(|c| c.alive()) else {
            return;
        };
        let reply = conn.send(op::CLOSE_SESSION, Vec::new());
        let patience = self.timeout + Duration::from_secs(2);
        if tokio::time::timeout(patience, reply).await.is_err() {
            tracing::warn!("zookeeper multi session did not confirm close in {patience:?}");
        }
    }
}

fn create_flags(mode: CreateMode) -> i32 {
    let mut flags = 0;
    if mode.is_ephemeral() {
        flags |= jute::FLAG_EPHEMERAL;
    }
    if mode.is_sequential() {
        flags |= jute::FLAG_SEQUENTIAL;
    }
    flags
}

/// A ZooKeeper error code as ours, the way `zk.rs` maps the client's errors.
pub fn code_error(err: i32, path: &str) -> CoordError {
    let path = path.to_string();
    match err {
        code::NO_NODE => CoordError::NoNode(path),
        code::NODE_EXISTS => CoordError::NodeExists(path),
        code::BAD_VERSION => CoordError::BadVersion(path),
        code::NOT_EMPTY => CoordError::NotEmpty(path),
        code::NO_CHILDREN_FOR_EPHEMERALS => CoordError::NoChildrenForEphemerals(path),
        code::NO_AUTH => CoordError::NoAuth(path),
        code::INVALID_ACL => CoordError::InvalidAcl(path),
        code::SESSION_EXPIRED | code::SESSION_MOVED | code::AUTH_FAILED => {
            CoordError::SessionExpired
        }
        code::CONNECTION_LOSS | code::OPERATION_TIMEOUT => CoordError::ConnectionLoss,
        code::BAD_ARGUMENTS => CoordError::BadPath(format!("{path}: bad arguments")),
        other => CoordError::Backend(format!("{path}: {} ({other})", code::name(other))),
    }
}

/// A multi response as our results: the first operation with a non-zero
/// error code is the failed one (those before it carry 0, those after it
/// RUNTIMEINCONSISTENCY), as zookeeper-client reports it for the main path.
pub fn map_results(
    ops: &[Op],
    results: Vec<MultiResult>,
    unchroot: impl Fn(String) -> String,
) -> Result<Vec<OpResult>> {
    if let Some((index, err)) = results.iter().enumerate().find_map(|(i, r)| match r {
        MultiResult::Error(e) if *e != code::OK => Some((i, *e)),
        _ => None,
    }) {
        let path = ops.get(index).map_or("", Op::path);
        return Err(CoordError::MultiFailed {
            index,
            error: Box::new(code_error(err, path)),
        });
    }
    if results.len() != ops.len() {
        return Err(CoordError::Backend(format!(
            "multi returned {} results for {} operations",
            results.len(),
            ops.len()
        )));
    }
    ops.iter()
        .zip(results)
        .enumerate()
        .map(|(index, (o, r))| match (o, r) {
            (Op::Create { .. }, MultiResult::Create(path)) => Ok(OpResult::Created(unchroot(path))),
            (Op::Set { .. }, MultiResult::SetData(stat)) => Ok(OpResult::Set(stat)),
            (Op::Delete { .. }, MultiResult::Delete) => Ok(OpResult::Deleted),
            (Op::Check { .. }, MultiResult::Check) => Ok(OpResult::Checked),
            (o, r) => Err(CoordError::Backend(format!(
                "multi result {index} is {r:?} for operation {o:?}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_split_into_hosts_and_chroot() {
        assert_eq!(
            parse_connect_string("a:1, b:2/x/y/"),
            (
                vec!["a:1".to_string(), "b:2".to_string()],
                "/x/y".to_string()
            )
        );
        assert_eq!(
            parse_connect_string("a:1"),
            (vec!["a:1".to_string()], String::new())
        );
        assert_eq!(parse_connect_string("a:1/").1, "");
    }

    #[test]
    fn chroot_is_added_and_removed() {
        let s = MultiSession::new("127.0.0.1:1/r", Duration::from_secs(1));
        assert_eq!(s.chrooted("/"), "/r");
        assert_eq!(s.chrooted("/a/b"), "/r/a/b");
        assert_eq!(s.unchrooted("/r/a".into()), "/a");
        assert_eq!(s.unchrooted("/r".into()), "/");
        let plain = MultiSession::new("127.0.0.1:1", Duration::from_secs(1));
        assert_eq!(plain.chrooted("/a"), "/a");
    }

    #[test]
    fn the_first_nonzero_error_is_the_failed_operation() {
        let ops = vec![
            Op::create("/a", "", CreateMode::Persistent),
            Op::set("/b", "", Expect::Any),
            Op::check("/c", Expect::Version(3)),
            Op::delete("/d", Expect::Any),
        ];
        let results = vec![
            MultiResult::Error(0),
            MultiResult::Error(0),
            MultiResult::Error(code::BAD_VERSION),
            MultiResult::Error(code::RUNTIME_INCONSISTENCY),
        ];
        assert_eq!(
            map_results(&ops, results, |p| p).unwrap_err(),
            CoordError::MultiFailed {
                index: 2,
                error: Box::new(CoordError::BadVersion("/c".into()))
            }
        );
        let ok = map_results(
            &ops,
            vec![
                MultiResult::Create("/a".into()),
                MultiResult::SetData(crate::Stat::default()),
                MultiResult::Check,
                MultiResult::Delete,
            ],
            |p| p,
        )
        .unwrap();
        assert_eq!(ok[0], OpResult::Created("/a".into()));
        assert_eq!(ok[3], OpResult::Deleted);
        // Results that do not match their operations are not papered over.
        assert!(map_results(&ops[..1], vec![MultiResult::Check], |p| p).is_err());
    }

    #[test]
    fn create_modes_become_flags() {
        assert_eq!(create_flags(CreateMode::Persistent), 0);
        assert_eq!(create_flags(CreateMode::Ephemeral), 1);
        assert_eq!(create_flags(CreateMode::PersistentSequential), 2);
        assert_eq!(create_flags(CreateMode::EphemeralSequential), 3);
    }
}
