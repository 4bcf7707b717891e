//! What `ZkCoordination` puts on the wire, against a stand-in server that
//! answers the way ZooKeeper 3.4 does (Triton's binder), since the real
//! ZooKeeper in the other tests is 3.8 and accepts what 3.4 refuses:
//!
//! - a multi-op whose operation type 3.4 does not know (CREATE2 = 15) is
//!   refused as a whole with MARSHALLINGERROR (3.4's
//!   `MultiTransactionRecord.deserialize` throws "Invalid type of op",
//!   `PrepRequestProcessor` turns that into MARSHALLINGERROR);
//! - a multi of create (1), delete (2), setData (5) and check (13) is
//!   applied all or nothing; the reply header's err is 0 and each result is
//!   the operation's record, or on failure an error result per operation:
//!   0 before the failing one, its code, then RUNTIMEINCONSISTENCY (3.4's
//!   `DataTree.processTxn` and `FinalRequestProcessor`);
//! - a request with an opcode 3.4 does not know (RemoveWatches = 18) gets
//!   UNIMPLEMENTED and the connection is closed (`UnimplementedRequestProcessor`);
//! - a re-attach to a session it no longer knows is answered with timeout 0.
//!
//! The stand-in decodes requests with its own code (not the crate's
//! encoders), so these tests check our encoding against an independent
//! reading of the format. They pin the encoded opcodes: if a
//! zookeeper-client upgrade starts sending plain CREATE inside a multi,
//! `the_client_encodes_...` fails and the second session in
//! `coord/src/zk34.rs` may no longer be needed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord::{
    CoordError, Coordination, CreateMode, Expect, Op, OpResult, SessionState, ZkCoordination,
};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CREATE: i32 = 1;
const DELETE: i32 = 2;
const EXISTS: i32 = 3;
const GET_DATA: i32 = 4;
const SET_DATA: i32 = 5;
const GET_CHILDREN: i32 = 8;
const SYNC: i32 = 9;
const PING: i32 = 11;
const GET_CHILDREN2: i32 = 12;
const CHECK: i32 = 13;
const MULTI: i32 = 14;
const CREATE2: i32 = 15;
const REMOVE_WATCHES: i32 = 18;
const SET_WATCHES: i32 = 101;
const CLOSE_SESSION: i32 = -11;

const RUNTIME_INCONSISTENCY: i32 = -2;
const MARSHALLING_ERROR: i32 = -5;
const UNIMPLEMENTED: i32 = -6;
const NO_NODE: i32 = -101;
const BAD_VERSION: i32 = -103;
const NODE_EXISTS: i32 = -110;
const NOT_EMPTY: i32 = -111;

/// What the stand-in saw.
#[derive(Default)]
struct Seen {
    /// Top-level request opcodes, in arrival order.
    opcodes: Vec<i32>,
    /// (connection, opcode) of every request.
    requests: Vec<(usize, i32)>,
    /// For each multi: the opcode of each operation.
    multi_ops: Vec<Vec<i32>>,
    /// For each multi: the connection it came on.
    multi_conns: Vec<usize>,
    /// Session connections accepted (not counting `srvr` probes).
    connections: usize,
    /// Per connection: (session id asked for, session id granted; 0 if refused).
    sessions: Vec<(i64, i64)>,
    /// Connections the server closed because of an unknown opcode.
    closed_for_unknown: usize,
    /// Session ids asked for on connections refused by `refuse_connections`.
    refused: Vec<i64>,
}

impl Seen {
    fn on(&self, conn: usize, op: i32) -> usize {
        self.requests.iter().filter(|r| **r == (conn, op)).count()
    }
    /// The connection that carries `session`, the latest one.
    fn conn_of(&self, session: i64) -> Option<usize> {
        self.sessions.iter().rposition(|s| s.1 == session)
    }
}

/// How the stand-in misbehaves on the next multi.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drop {
    No,
    /// Apply it, then close the connection without replying.
    AfterApplying,
    /// Close the connection without reading further or applying it.
    BeforeApplying,
}

#[derive(Clone, Debug)]
struct Node {
    data: Vec<u8>,
    version: i32,
    cversion: i32,
}

type Tree = BTreeMap<String, Node>;

struct Knobs {
    drop_next_multi: Mutex<Drop>,
    /// Accept session connections and close them at once.
    refuse_connections: AtomicBool,
    /// Connections to cut now (by index); each serving loop watches this.
    cut: tokio::sync::watch::Sender<Vec<usize>>,
    /// Answer re-attaches with timeout 0 (session unknown).
    forget_sessions: AtomicBool,
    next_session: AtomicI64,
}

struct Fake34 {
    addr: String,
    seen: Arc<Mutex<Seen>>,
    tree: Arc<Mutex<Tree>>,
    knobs: Arc<Knobs>,
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().unwrap())
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend(v.to_be_bytes());
}

fn put_buf(out: &mut Vec<u8>, b: &[u8]) {
    put_i32(out, b.len() as i32);
    out.extend(b);
}

fn stat(node: &Node, children: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..4 {
        s.extend(1i64.to_be_bytes()); // czxid, mzxid, ctime, mtime
    }
    put_i32(&mut s, node.version);
    put_i32(&mut s, node.cversion);
    put_i32(&mut s, 0); // aversion
    s.extend(0i64.to_be_bytes()); // ephemeralOwner
    put_i32(&mut s, node.data.len() as i32);
    put_i32(&mut s, children as i32);
    s.extend(1i64.to_be_bytes()); // pzxid
    s
}

/// Reads jute values off the front of a request.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn i32(&mut self) -> i32 {
        let v = be_i32(self.0);
        self.0 = &self.0[4..];
        v
    }
    fn bool(&mut self) -> bool {
        let v = self.0[0] != 0;
        self.0 = &self.0[1..];
        v
    }
    fn buf(&mut self) -> Vec<u8> {
        let n = self.i32();
        if n < 0 {
            return Vec::new();
        }
        let v = self.0[..n as usize].to_vec();
        self.0 = &self.0[n as usize..];
        v
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.buf()).unwrap()
    }
}

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => path[..i].into(),
        None => "/".into(),
    }
}

fn children_of(tree: &Tree, path: &str) -> Vec<String> {
    let prefix = if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    };
    tree.keys()
        .filter(|k| k.len() > prefix.len() && k.starts_with(&prefix))
        .filter(|k| !k[prefix.len()..].contains('/'))
        .map(|k| k[prefix.len()..].to_string())
        .collect()
}

/// One write, as 3.4 checks and applies it. Ok: (result type, record).
enum Write {
    Create {
        path: String,
        data: Vec<u8>,
        flags: i32,
    },
    Delete {
        path: String,
        version: i32,
    },
    Set {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
}

impl Write {
    /// The request record of `op` (after its header), as 3.4 reads it.
    fn read(op: i32, r: &mut Rd<'_>) -> Option<Write> {
        Some(match op {
            CREATE => {
                let path = r.string();
                let data = r.buf();
                let acls = r.i32();
                for _ in 0..acls {
                    let perms = r.i32();
                    let (scheme, id) = (r.string(), r.string());
                    assert_eq!(
                        (perms, scheme.as_str(), id.as_str()),
                        (31, "world", "anyone")
                    );
                }
                Write::Create {
                    path,
                    data,
                    flags: r.i32(),
                }
            }
            DELETE => Write::Delete {
                path: r.string(),
                version: r.i32(),
            },
            SET_DATA => Write::Set {
                path: r.string(),
                data: r.buf(),
                version: r.i32(),
            },
            CHECK => Write::Check {
                path: r.string(),
                version: r.i32(),
            },
            _ => return None,
        })
    }

    fn apply(self, tree: &mut Tree) -> Result<(i32, Vec<u8>), i32> {
        let version_ok = |want: i32, node: &Node| want == -1 || want == node.version;
        match self {
            Write::Create { path, data, flags } => {
                let parent = parent_of(&path);
                let cv = tree.get(&parent).ok_or(NO_NODE)?.cversion;
                let path = if flags & 2 != 0 {
                    format!("{path}{cv:010}")
                } else {
                    path
                };
                if tree.contains_key(&path) {
                    return Err(NODE_EXISTS);
                }
                tree.insert(
                    path.clone(),
                    Node {
                        data,
                        version: 0,
                        cversion: 0,
                    },
                );
                tree.get_mut(&parent).unwrap().cversion += 1;
                let mut rec = Vec::new();
                put_buf(&mut rec, path.as_bytes());
                Ok((CREATE, rec))
            }
            Write::Delete { path, version } => {
                let node = tree.get(&path).ok_or(NO_NODE)?;
                if !version_ok(version, node) {
                    return Err(BAD_VERSION);
                }
                if !children_of(tree, &path).is_empty() {
                    return Err(NOT_EMPTY);
                }
                tree.remove(&path);
                tree.get_mut(&parent_of(&path)).unwrap().cversion += 1;
                Ok((DELETE, Vec::new()))
            }
            Write::Set {
                path,
                data,
                version,
            } => {
                let kids = children_of(tree, &path).len();
                let node = tree.get_mut(&path).ok_or(NO_NODE)?;
                if !version_ok(version, node) {
                    return Err(BAD_VERSION);
                }
                node.data = data;
                node.version += 1;
                Ok((SET_DATA, stat(node, kids)))
            }
            Write::Check { path, version } => {
                let node = tree.get(&path).ok_or(NO_NODE)?;
                if !version_ok(version, node) {
                    return Err(BAD_VERSION);
                }
                Ok((CHECK, Vec::new()))
            }
        }
    }
}

async fn reply(conn: &mut TcpStream, xid: i32, err: i32, body: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend(xid.to_be_bytes());
    out.extend(7i64.to_be_bytes());
    out.extend(err.to_be_bytes());
    out.extend(body);
    let mut frame = (out.len() as i32).to_be_bytes().to_vec();
    frame.extend(out);
    conn.write_all(&frame).await
}

async fn read_frame(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).await?;
    Ok(body)
}

impl Fake34 {
    /// `srvr` answers with `srvr` (e.g. a 3.4 version line, or the 3.5+
    /// "not in the whitelist" refusal).
    async fn start(srvr: &'static str) -> Fake34 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut root = Tree::new();
        root.insert(
            "/".into(),
            Node {
                data: Vec::new(),
                version: 0,
                cversion: 0,
            },
        );
        let tree = Arc::new(Mutex::new(root));
        let knobs = Arc::new(Knobs {
            drop_next_multi: Mutex::new(Drop::No),
            refuse_connections: AtomicBool::new(false),
            cut: tokio::sync::watch::channel(Vec::new()).0,
            forget_sessions: AtomicBool::new(false),
            next_session: AtomicI64::new(0x3400),
        });
        let (s, t, k) = (seen.clone(), tree.clone(), knobs.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, srvr, s.clone(), t.clone(), k.clone()));
            }
        });
        Fake34 {
            addr,
            seen,
            tree,
            knobs,
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    fn node(&self, path: &str) -> Option<Node> {
        self.tree.lock().unwrap().get(path).cloned()
    }

    async fn until(&self, what: &str, f: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.seen(&f) {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn serve(
    mut conn: TcpStream,
    srvr: &'static str,
    seen: Arc<Mutex<Seen>>,
    tree: Arc<Mutex<Tree>>,
    knobs: Arc<Knobs>,
) -> std::io::Result<()> {
    let mut head = [0u8; 4];
    conn.read_exact(&mut head).await?;
    if &head == b"srvr" {
        conn.write_all(srvr.as_bytes()).await?;
        return Ok(());
    }
    // ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, readOnly.
    let mut req = vec![0u8; be_i32(&head) as usize];
    conn.read_exact(&mut req).await?;
    let timeout = be_i32(&req[12..]);
    let asked = be_i64(&req[16..]);
    if knobs.refuse_connections.load(Ordering::SeqCst) {
        seen.lock().unwrap().refused.push(asked);
        return Ok(());
    }
    let granted = if asked == 0 {
        knobs.next_session.fetch_add(1, Ordering::SeqCst)
    } else if knobs.forget_sessions.load(Ordering::SeqCst) {
        0
    } else {
        asked
    };
    let me = {
        let mut s = seen.lock().unwrap();
        s.connections += 1;
        s.sessions.push((asked, granted));
        s.sessions.len() - 1
    };
    let mut resp = Vec::new();
    put_i32(&mut resp, 0);
    put_i32(&mut resp, if granted == 0 { 0 } else { timeout });
    resp.extend(granted.to_be_bytes());
    put_buf(&mut resp, &[7u8; 16]);
    resp.push(0);
    let mut frame = (resp.len() as i32).to_be_bytes().to_vec();
    frame.extend(resp);
    conn.write_all(&frame).await?;
    if granted == 0 {
        return Ok(());
    }
    let mut cut = knobs.cut.subscribe();
    loop {
        let f = tokio::select! {
            f = read_frame(&mut conn) => f?,
            _ = cut.wait_for(|c| c.contains(&me)) => return Ok(()),
        };
        let (xid, op, body) = (be_i32(&f), be_i32(&f[4..]), &f[8..]);
        {
            let mut s = seen.lock().unwrap();
            s.opcodes.push(op);
            s.requests.push((me, op));
        }
        match op {
            PING | SET_WATCHES => reply(&mut conn, xid, 0, &[]).await?,
            CLOSE_SESSION => {
                reply(&mut conn, xid, 0, &[]).await?;
                return Ok(());
            }
            SYNC => {
                let path = Rd(body).string();
                let mut out = Vec::new();
                put_buf(&mut out, path.as_bytes());
                reply(&mut conn, xid, 0, &out).await?;
            }
            CREATE | DELETE | SET_DATA => {
                let w = Write::read(op, &mut Rd(body)).unwrap();
                let r = w.apply(&mut tree.lock().unwrap());
                match r {
                    Ok((_, rec)) => reply(&mut conn, xid, 0, &rec).await?,
                    Err(e) => reply(&mut conn, xid, e, &[]).await?,
                }
            }
            GET_CHILDREN | GET_CHILDREN2 => {
                let path = Rd(body).string();
                let found = {
                    let t = tree.lock().unwrap();
                    t.get(&path).map(|n| {
                        (
                            children_of(&t, &path),
                            stat(n, children_of(&t, &path).len()),
                        )
                    })
                };
                match found {
                    None => reply(&mut conn, xid, NO_NODE, &[]).await?,
                    Some((kids, st)) => {
                        let mut out = Vec::new();
                        put_i32(&mut out, kids.len() as i32);
                        for k in kids {
                            put_buf(&mut out, k.as_bytes());
                        }
                        if op == GET_CHILDREN2 {
                            out.extend(st);
                        }
                        reply(&mut conn, xid, 0, &out).await?;
                    }
                }
            }
            GET_DATA | EXISTS => {
                let path = Rd(body).string();
                let found = {
                    let t = tree.lock().unwrap();
                    t.get(&path)
                        .map(|n| (n.data.clone(), stat(n, children_of(&t, &path).len())))
                };
                match found {
                    None => reply(&mut conn, xid, NO_NODE, &[]).await?,
                    Some((d, st)) => {
                        let mut out = Vec::new();
                        if op == GET_DATA {
                            put_buf(&mut out, &d);
                        }
                        out.extend(st);
                        reply(&mut conn, xid, 0, &out).await?;
                    }
                }
            }
            MULTI => {
                // MultiHeader {type, done, err} + record, until done.
                let mut r = Rd(body);
                let mut writes = Vec::new();
                let mut types = Vec::new();
                let mut known = true;
                loop {
                    let (ty, done, _err) = (r.i32(), r.bool(), r.i32());
                    if done {
                        break;
                    }
                    types.push(ty);
                    match Write::read(ty, &mut r) {
                        Some(w) => writes.push(w),
                        // 3.4: "Invalid type of op"; the rest is unreadable.
                        None => {
                            known = false;
                            break;
                        }
                    }
                }
                {
                    let mut s = seen.lock().unwrap();
                    s.multi_ops.push(types);
                    s.multi_conns.push(me);
                }
                if !known {
                    reply(&mut conn, xid, MARSHALLING_ERROR, &[]).await?;
                    continue;
                }
                let drop = std::mem::replace(&mut *knobs.drop_next_multi.lock().unwrap(), Drop::No);
                if drop == Drop::BeforeApplying {
                    return Ok(());
                }
                let out = apply_multi(&mut tree.lock().unwrap(), writes);
                if drop == Drop::AfterApplying {
                    return Ok(());
                }
                reply(&mut conn, xid, 0, &out).await?;
            }
            _ => {
                // 3.4's UnimplementedRequestProcessor: error, then close.
                reply(&mut conn, xid, UNIMPLEMENTED, &[]).await?;
                seen.lock().unwrap().closed_for_unknown += 1;
                return Ok(());
            }
        }
    }
}

/// All or nothing; the MultiResponse body.
fn apply_multi(tree: &mut Tree, writes: Vec<Write>) -> Vec<u8> {
    let n = writes.len();
    let mut scratch = tree.clone();
    let mut records = Vec::new();
    let mut failed = None;
    for (i, w) in writes.into_iter().enumerate() {
        match w.apply(&mut scratch) {
            Ok(rec) => records.push(rec),
            Err(code) => {
                failed = Some((i, code));
                break;
            }
        }
    }
    let mut out = Vec::new();
    let header = |out: &mut Vec<u8>, ty: i32, done: bool, err: i32| {
        put_i32(out, ty);
        out.push(u8::from(done));
        put_i32(out, err);
    };
    match failed {
        None => {
            *tree = scratch;
            for (ty, rec) in records {
                header(&mut out, ty, false, 0);
                out.extend(rec);
            }
        }
        Some((at, code)) => {
            for i in 0..n {
                let err = match i.cmp(&at) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Equal => code,
                    std::cmp::Ordering::Greater => RUNTIME_INCONSISTENCY,
                };
                header(&mut out, -1, false, err);
                put_i32(&mut out, err);
            }
        }
    }
    header(&mut out, -1, true, -1);
    out
}

const V34: &str = "Zookeeper version: 3.4.13-2d71af4dbe22557fda74f9a9b4309b15a7487f03, built on 06/29/2018 04:05 GMT\nMode: standalone\n";
const WHITELISTED: &str = "srvr is not executed because it is not in the whitelist.\n";

async fn connect(fake: &Fake34) -> Arc<ZkCoordination> {
    connect_for(fake, Duration::from_secs(10)).await
}

async fn connect_for(fake: &Fake34, timeout: Duration) -> Arc<ZkCoordination> {
    ZkCoordination::connect(&fake.addr, timeout)
        .await
        .expect("connect to the stand-in")
}

/// The stand-in's connection carrying the main session / the multi session.
fn main_conn(fake: &Fake34, zk: &ZkCoordination) -> usize {
    fake.seen(|s| s.conn_of(zk.session_id()).expect("main session seen"))
}

fn multi_conn(fake: &Fake34, zk: &ZkCoordination) -> usize {
    let id = zk.multi_session_info().session_id;
    assert_ne!(id, 0, "no multi session yet");
    fake.seen(|s| s.conn_of(id).expect("multi session seen"))
}

fn create(path: &str, data: &str) -> Op {
    Op::create(path, data, CreateMode::Persistent)
}

/// The pin: plain create is CREATE (1), a create inside a multi is CREATE2
/// (15), which 3.4 refuses. With the version unknown, the refusal is how
/// the backend learns it talks to 3.4: it re-sends that multi as plain
/// CREATE on its second session, and sends later ones there directly.
#[tokio::test]
async fn the_client_encodes_plain_create_as_1_and_create_in_multi_as_create2() {
    let fake = Fake34::start(WHITELISTED).await;
    let zk = connect(&fake).await;
    assert_eq!(
        zk.server_version(),
        None,
        "version unknown: the multi is sent"
    );
    assert!(zk.accepts_create_in_multi());
    zk.create("/a", b"", CreateMode::Persistent).await.unwrap();
    assert!(fake.seen(|s| s.opcodes.contains(&CREATE)));
    assert!(fake.seen(|s| !s.opcodes.contains(&CREATE2)));

    let results = zk.multi(vec![create("/a/b", "x")]).await.unwrap();
    assert_eq!(results, vec![OpResult::Created("/a/b".into())]);
    assert_eq!(
        fake.seen(|s| s.multi_ops.clone()),
        vec![vec![CREATE2], vec![CREATE]],
        "zookeeper-client now encodes a create in a multi differently: revisit coord/src/zk.rs"
    );
    let (main, side) = (main_conn(&fake, &zk), multi_conn(&fake, &zk));
    assert_ne!(main, side);
    assert_eq!(fake.seen(|s| s.multi_conns.clone()), vec![main, side]);
    assert!(!zk.accepts_create_in_multi());
    assert_eq!(fake.node("/a/b").unwrap().data, b"x");
    assert_eq!(zk.get("/a/b").await.unwrap().0, b"x");

    // Learned: the next multi with a create goes straight to the second session.
    zk.multi(vec![create("/a/c", "")]).await.unwrap();
    assert_eq!(fake.seen(|s| s.multi_ops.len()), 3);
    assert_eq!(fake.seen(|s| s.multi_ops[2].clone()), vec![CREATE]);
    assert_eq!(fake.seen(|s| s.multi_conns[2]), side);
    zk.close().await;
}

/// A server that says it is 3.4: a multi with creates goes over the second
/// session as 1/2/5/13 inside 14, succeeds as a whole, and the main session
/// syncs before `multi` returns, then reads it.
#[tokio::test]
async fn on_a_34_server_a_multi_with_creates_goes_as_plain_create() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    assert_eq!(zk.server_version(), Some((3, 4, 13)));
    assert!(!zk.accepts_create_in_multi());
    zk.create("/t", b"", CreateMode::Persistent).await.unwrap();
    zk.create("/t/x", b"x0", CreateMode::Persistent)
        .await
        .unwrap();

    let results = zk
        .multi(vec![
            Op::check("/t", Expect::Version(0)),
            create("/t/a", "a"),
            Op::create("/t/s-", "", CreateMode::PersistentSequential),
            Op::set("/t/x", "x1", Expect::Version(0)),
            create("/t/gone", ""),
            Op::delete("/t/gone", Expect::Version(0)),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(results[0], OpResult::Checked);
    assert_eq!(results[1], OpResult::Created("/t/a".into()));
    assert_eq!(results[2], OpResult::Created("/t/s-0000000002".into()));
    match &results[3] {
        OpResult::Set(st) => assert_eq!((st.version, st.data_length), (1, 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(results[4], OpResult::Created("/t/gone".into()));
    assert_eq!(results[5], OpResult::Deleted);

    let (main, side) = (main_conn(&fake, &zk), multi_conn(&fake, &zk));
    assert_ne!(main, side, "the multi went over the main session");
    assert_ne!(zk.multi_session_info().session_id, zk.session_id());
    fake.seen(|s| {
        assert_eq!(
            s.multi_ops,
            vec![vec![CHECK, CREATE, CREATE, SET_DATA, CREATE, DELETE]]
        );
        assert_eq!(s.on(side, MULTI), 1);
        assert_eq!(s.on(main, MULTI), 0);
        assert!(!s.opcodes.contains(&CREATE2));
        // Read-your-writes: the main session synced after the multi.
        let multi_at = s.requests.iter().position(|r| *r == (side, MULTI)).unwrap();
        let sync_at = s.requests.iter().rposition(|r| *r == (main, SYNC));
        assert!(sync_at.is_some_and(|at| at > multi_at), "{:?}", s.requests);
    });
    assert_eq!(zk.get("/t/x").await.unwrap().0, b"x1");
    assert_eq!(zk.exists("/t/gone").await.unwrap(), None);
    let mut kids = zk.children("/t").await.unwrap();
    kids.sort();
    assert_eq!(kids, ["a", "s-0000000002", "x"]);
    // Multis without a create stay on the main session.
    zk.multi(vec![Op::set("/t/a", "a1", Expect::Version(0))])
        .await
        .unwrap();
    assert_eq!(fake.seen(|s| s.on(main, MULTI)), 1);
    zk.close().await;
}

/// A failing multi on the second session reports the index of the failing
/// operation with the right error, as the main path does, and applies
/// nothing.
#[tokio::test]
async fn a_failing_multi_reports_the_failing_index_and_applies_nothing() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    for p in ["/f", "/f/x", "/f/full", "/f/full/kid"] {
        zk.create(p, b"", CreateMode::Persistent).await.unwrap();
    }
    let cases: Vec<(Vec<Op>, usize, CoordError)> = vec![
        (
            vec![create("/f/new", ""), create("/f/missing/child", "")],
            1,
            CoordError::NoNode("/f/missing/child".into()),
        ),
        (
            vec![create("/f/dup", ""), create("/f/dup", "")],
            1,
            CoordError::NodeExists("/f/dup".into()),
        ),
        (
            vec![
                create("/f/new", ""),
                Op::check("/f", Expect::Any),
                Op::set("/f/x", "y", Expect::Version(5)),
            ],
            2,
            CoordError::BadVersion("/f/x".into()),
        ),
        (
            vec![
                create("/f/new", ""),
                Op::check("/f/x", Expect::Version(0)),
                Op::delete("/f/full", Expect::Any),
                create("/f/after", ""),
            ],
            2,
            CoordError::NotEmpty("/f/full".into()),
        ),
        (
            vec![Op::check("/f/nope", Expect::Any), create("/f/new", "")],
            0,
            CoordError::NoNode("/f/nope".into()),
        ),
    ];
    let before: Vec<(String, Vec<u8>, i32, i32)> = snapshot(&fake);
    for (ops, want_index, want_error) in cases {
        let err = zk.multi(ops.clone()).await.unwrap_err();
        assert_eq!(
            err,
            CoordError::MultiFailed {
                index: want_index,
                error: Box::new(want_error)
            },
            "{ops:?}"
        );
        assert_eq!(snapshot(&fake), before, "{ops:?} applied something");
    }
    assert_eq!(fake.seen(|s| s.multi_ops.len()), 5);
    assert!(fake.seen(|s| {
        s.multi_ops
            .iter()
            .flatten()
            .all(|o| [1, 2, 5, 13].contains(o))
    }));
    // The session is fine afterwards.
    zk.multi(vec![create("/f/new", "")]).await.unwrap();
    assert_eq!(zk.session_state(), SessionState::Connected);
    zk.close().await;
}

fn snapshot(fake: &Fake34) -> Vec<(String, Vec<u8>, i32, i32)> {
    fake.tree
        .lock()
        .unwrap()
        .iter()
        .map(|(p, n)| (p.clone(), n.data.clone(), n.version, n.cversion))
        .collect()
}

/// An ephemeral node made on the second session would belong to it, not to
/// the caller's session: refused before anything is sent.
#[tokio::test]
async fn an_ephemeral_create_in_a_multi_is_refused_on_34() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    for mode in [CreateMode::Ephemeral, CreateMode::EphemeralSequential] {
        let err = zk
            .multi(vec![
                Op::check("/", Expect::Any),
                Op::create("/e", "", mode),
            ])
            .await
            .unwrap_err();
        match &err {
            CoordError::MultiFailed { index: 1, error } => {
                let msg = error.to_string();
                assert!(
                    msg.contains("ZooKeeper 3.4.13")
                        && msg.contains("ephemeral")
                        && msg.contains("nothing was applied"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    fake.seen(|s| {
        assert!(s.multi_ops.is_empty(), "a multi was sent");
        assert_eq!(s.connections, 1, "a second session was made");
    });
    // A plain ephemeral create is fine.
    zk.create("/e", b"", CreateMode::Ephemeral).await.unwrap();
    zk.close().await;
}

/// A connection lost with a multi in flight: `ConnectionLoss` (the outcome
/// is unknown, whether or not the server applied it), never re-sent; the
/// next multi re-attaches to the same session.
#[tokio::test]
async fn a_lost_multi_is_connection_loss_and_never_resent() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    zk.multi(vec![create("/d1", "")]).await.unwrap();
    let session = zk.multi_session_info().session_id;

    *fake.knobs.drop_next_multi.lock().unwrap() = Drop::AfterApplying;
    let err = zk.multi(vec![create("/d2", "")]).await.unwrap_err();
    assert_eq!(err, CoordError::ConnectionLoss);
    assert!(fake.node("/d2").is_some(), "the stand-in applied it");

    *fake.knobs.drop_next_multi.lock().unwrap() = Drop::BeforeApplying;
    let err = zk.multi(vec![create("/d3", "")]).await.unwrap_err();
    assert_eq!(err, CoordError::ConnectionLoss);
    assert!(fake.node("/d3").is_none());

    zk.multi(vec![create("/d4", "")]).await.unwrap();
    fake.seen(|s| {
        // d1, d2, d3, d4: each sent once.
        assert_eq!(s.multi_ops, vec![vec![CREATE]; 4]);
        // Two re-attaches to the same session, no new session.
        let on_session: Vec<_> = s.sessions.iter().filter(|x| x.1 == session).collect();
        assert_eq!(
            on_session,
            [&(0, session), &(session, session), &(session, session)]
        );
    });
    assert_eq!(zk.multi_session_info().connections, 3);
    assert_eq!(zk.session_state(), SessionState::Connected);
    zk.close().await;
}

/// A second session the server no longer knows is replaced by a new one
/// (it owns nothing, so nothing is lost).
#[tokio::test]
async fn a_forgotten_multi_session_is_replaced() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    zk.multi(vec![create("/g1", "")]).await.unwrap();
    let first = zk.multi_session_info().session_id;
    fake.knobs.forget_sessions.store(true, Ordering::SeqCst);
    *fake.knobs.drop_next_multi.lock().unwrap() = Drop::BeforeApplying;
    assert_eq!(
        zk.multi(vec![create("/g2", "")]).await.unwrap_err(),
        CoordError::ConnectionLoss
    );
    zk.multi(vec![create("/g3", "")]).await.unwrap();
    let second = zk.multi_session_info().session_id;
    assert_ne!(second, first);
    fake.seen(|s| {
        let tail: Vec<_> = s.sessions[s.sessions.len() - 2..].to_vec();
        assert_eq!(tail, [(first, 0), (0, second)]);
    });
    assert!(fake.node("/g3").is_some() && fake.node("/g2").is_none());
    zk.close().await;
}

/// Pings keep the second session's connection alive while it is idle.
#[tokio::test]
async fn pings_keep_the_multi_session_alive() {
    let fake = Fake34::start(V34).await;
    let zk = connect_for(&fake, Duration::from_secs(3)).await;
    zk.multi(vec![create("/p1", "")]).await.unwrap();
    let side = multi_conn(&fake, &zk);
    fake.until("three pings on the multi session", |s| {
        s.on(side, PING) >= 3
    })
    .await;
    zk.multi(vec![create("/p2", "")]).await.unwrap();
    assert_eq!(fake.seen(|s| s.multi_conns.clone()), vec![side, side]);
    let info = zk.multi_session_info();
    assert_eq!(info.connections, 1, "the connection was re-made");
    assert!(info.pings >= 3, "{info:?}");
    zk.close().await;
}

/// While the main session is disconnected (it may have expired on the
/// server unbeknown to us), a multi with a create is not sent over the
/// second session: `ConnectionLoss`, nothing sent.
#[tokio::test]
async fn no_multi_over_the_second_session_while_the_main_one_is_disconnected() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    let main = main_conn(&fake, &zk);
    let mut events = zk.session_events();
    fake.knobs.refuse_connections.store(true, Ordering::SeqCst);
    fake.knobs.cut.send_modify(|c| c.push(main));
    tokio::time::timeout(
        Duration::from_secs(30),
        events.wait_for(|s| *s == SessionState::Disconnected),
    )
    .await
    .expect("the main session notices the cut")
    .unwrap();
    assert_eq!(
        zk.multi(vec![create("/x", "")]).await.unwrap_err(),
        CoordError::ConnectionLoss
    );
    fake.seen(|s| {
        assert!(s.multi_ops.is_empty(), "a multi was sent");
        // Only the main session tried to come back; nobody asked for a new one.
        assert!(!s.refused.contains(&0), "{:?}", s.refused);
        assert_eq!(s.sessions.len(), 1);
    });
    fake.knobs.refuse_connections.store(false, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(30),
        events.wait_for(|s| *s == SessionState::Connected),
    )
    .await
    .expect("the main session comes back")
    .unwrap();
    zk.multi(vec![create("/x", "")]).await.unwrap();
    assert!(fake.node("/x").is_some());
    zk.close().await;
}

/// Close ends the second session too, and so does dropping the handle.
#[tokio::test]
async fn close_and_drop_end_the_multi_session() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    zk.multi(vec![create("/c1", "")]).await.unwrap();
    let (main, side) = (main_conn(&fake, &zk), multi_conn(&fake, &zk));
    zk.close().await;
    fake.until("CloseSession on both sessions", |s| {
        s.on(side, CLOSE_SESSION) == 1 && s.on(main, CLOSE_SESSION) == 1
    })
    .await;
    assert_eq!(
        zk.multi(vec![create("/c2", "")]).await.unwrap_err(),
        CoordError::SessionClosed
    );

    let zk = connect(&fake).await;
    zk.multi(vec![create("/c3", "")]).await.unwrap();
    let side = multi_conn(&fake, &zk);
    drop(zk);
    fake.until("CloseSession on the dropped multi session", |s| {
        s.on(side, CLOSE_SESSION) == 1
    })
    .await;
}

/// Watch calls whose caller stops waiting mid-flight: the backend finishes
/// them itself and keeps their watchers, so no RemoveWatches (a 3.5 opcode,
/// which 3.4 answers by closing the connection) is ever sent.
#[tokio::test]
async fn dropped_watch_calls_send_no_remove_watches() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    const N: usize = 30;
    for i in 0..N {
        zk.create(&format!("/n{i}"), b"", CreateMode::Persistent)
            .await
            .unwrap();
    }
    for i in 0..N {
        let path = format!("/n{i}");
        // Polled exactly once (the request goes out), then dropped.
        let pending = match i % 3 {
            0 => zk.get_watch(&path).now_or_never().is_none(),
            1 => zk.exists_watch(&path).now_or_never().is_none(),
            _ => zk.children_watch(&path).now_or_never().is_none(),
        };
        assert!(
            pending,
            "call {i} finished on its first poll; it should be in flight"
        );
    }
    fake.until("every dropped watch call reached the server", |s| {
        s.opcodes
            .iter()
            .filter(|o| [GET_DATA, EXISTS, GET_CHILDREN, GET_CHILDREN2].contains(o))
            .count()
            >= N
    })
    .await;
    // Two more round trips: anything the drops queued has gone out by now.
    for _ in 0..2 {
        zk.exists("/n0").await.unwrap();
    }
    fake.seen(|s| {
        assert!(
            !s.opcodes.contains(&REMOVE_WATCHES),
            "RemoveWatches was sent: {:?}",
            s.opcodes
        );
        assert_eq!(s.closed_for_unknown, 0);
        assert_eq!(s.connections, 1, "the connection was lost and re-made");
    });
    assert_eq!(zk.session_state(), coord::SessionState::Connected);
    zk.close().await;
}
