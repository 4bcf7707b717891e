//! What `ZkCoordination` puts on the wire, against a stand-in server that
//! answers the way ZooKeeper 3.4 does (Triton's binder), since the real
//! ZooKeeper in the other tests is 3.8 and accepts what 3.4 refuses:
//!
//! - a multi-op whose operation type 3.4 does not know (CREATE2 = 15) is
//!   refused as a whole with MARSHALLINGERROR (3.4's
//!   `MultiTransactionRecord.deserialize` throws "Invalid type of op",
//!   `PrepRequestProcessor` turns that into MARSHALLINGERROR);
//! - a request with an opcode 3.4 does not know (RemoveWatches = 18) gets
//!   UNIMPLEMENTED and the connection is closed (`UnimplementedRequestProcessor`).
//!
//! These tests pin the encoded opcodes: if a zookeeper-client upgrade starts
//! sending plain CREATE inside a multi, `the_client_encodes_...` fails and
//! the workaround in `coord/src/zk.rs` can go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord::{CoordError, Coordination, CreateMode, Expect, Op, ZkCoordination};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CREATE: i32 = 1;
const EXISTS: i32 = 3;
const GET_DATA: i32 = 4;
const GET_CHILDREN: i32 = 8;
const PING: i32 = 11;
const GET_CHILDREN2: i32 = 12;
const MULTI: i32 = 14;
const CREATE2: i32 = 15;
const REMOVE_WATCHES: i32 = 18;
const SET_WATCHES: i32 = 101;
const CLOSE_SESSION: i32 = -11;

const NO_NODE: i32 = -101;
const MARSHALLING_ERROR: i32 = -5;
const UNIMPLEMENTED: i32 = -6;

/// What the stand-in saw.
#[derive(Default)]
struct Seen {
    /// Top-level request opcodes, in arrival order.
    opcodes: Vec<i32>,
    /// For each multi: the opcode of each operation.
    multi_ops: Vec<Vec<i32>>,
    /// Session connections accepted (not counting `srvr` probes).
    connections: usize,
    /// Connections the server closed because of an unknown opcode.
    closed_for_unknown: usize,
}

struct Fake34 {
    addr: String,
    seen: Arc<Mutex<Seen>>,
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

fn put_buf(out: &mut Vec<u8>, b: &[u8]) {
    out.extend((b.len() as i32).to_be_bytes());
    out.extend(b);
}

fn stat(data_len: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..4 {
        s.extend(1i64.to_be_bytes()); // czxid, mzxid, ctime, mtime
    }
    s.extend(0i32.to_be_bytes()); // version
    s.extend(0i32.to_be_bytes()); // cversion
    s.extend(0i32.to_be_bytes()); // aversion
    s.extend(0i64.to_be_bytes()); // ephemeralOwner
    s.extend((data_len as i32).to_be_bytes());
    s.extend(0i32.to_be_bytes()); // numChildren
    s.extend(1i64.to_be_bytes()); // pzxid
    s
}

/// A jute string at the start of `b`.
fn read_string(b: &[u8]) -> String {
    let n = be_i32(b) as usize;
    String::from_utf8_lossy(&b[4..4 + n]).into_owned()
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
        let nodes: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, srvr, s.clone(), nodes.clone()));
            }
        });
        Fake34 { addr, seen }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
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
    nodes: Arc<Mutex<HashMap<String, Vec<u8>>>>,
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
    seen.lock().unwrap().connections += 1;
    let mut resp = Vec::new();
    resp.extend(0i32.to_be_bytes());
    resp.extend(timeout.to_be_bytes());
    resp.extend(0x34i64.to_be_bytes());
    put_buf(&mut resp, &[7u8; 16]);
    resp.push(0);
    let mut frame = (resp.len() as i32).to_be_bytes().to_vec();
    frame.extend(resp);
    conn.write_all(&frame).await?;
    loop {
        let f = read_frame(&mut conn).await?;
        let (xid, op, body) = (be_i32(&f), be_i32(&f[4..]), &f[8..]);
        seen.lock().unwrap().opcodes.push(op);
        match op {
            PING | SET_WATCHES => reply(&mut conn, xid, 0, &[]).await?,
            CLOSE_SESSION => {
                reply(&mut conn, xid, 0, &[]).await?;
                return Ok(());
            }
            CREATE => {
                let path = read_string(body);
                nodes.lock().unwrap().insert(path.clone(), Vec::new());
                let mut out = Vec::new();
                put_buf(&mut out, path.as_bytes());
                reply(&mut conn, xid, 0, &out).await?;
            }
            GET_CHILDREN | GET_CHILDREN2 => {
                // No children; GetChildren2 also carries the parent's stat.
                let mut out = Vec::new();
                out.extend(0i32.to_be_bytes());
                if op == GET_CHILDREN2 {
                    out.extend(stat(0));
                }
                reply(&mut conn, xid, 0, &out).await?;
            }
            GET_DATA | EXISTS => {
                let path = read_string(body);
                let data = nodes.lock().unwrap().get(&path).cloned();
                match data {
                    None => reply(&mut conn, xid, NO_NODE, &[]).await?,
                    Some(d) => {
                        let mut out = Vec::new();
                        if op == GET_DATA {
                            put_buf(&mut out, &d);
                        }
                        out.extend(stat(d.len()));
                        reply(&mut conn, xid, 0, &out).await?;
                    }
                }
            }
            MULTI => {
                // MultiHeader {type, done, err} + record, until done. Only the
                // opcodes matter here; 3.4 knows 1, 2, 5 and 13.
                let first = be_i32(body);
                seen.lock().unwrap().multi_ops.push(vec![first]);
                if ![1, 2, 5, 13].contains(&first) {
                    reply(&mut conn, xid, MARSHALLING_ERROR, &[]).await?;
                } else {
                    reply(&mut conn, xid, UNIMPLEMENTED, &[]).await?;
                }
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

const V34: &str = "Zookeeper version: 3.4.13-2d71af4dbe22557fda74f9a9b4309b15a7487f03, built on 06/29/2018 04:05 GMT\nMode: standalone\n";
const WHITELISTED: &str = "srvr is not executed because it is not in the whitelist.\n";

async fn connect(fake: &Fake34) -> Arc<ZkCoordination> {
    ZkCoordination::connect(&fake.addr, Duration::from_secs(10))
        .await
        .expect("connect to the stand-in")
}

/// The pin: plain create is CREATE (1), a create inside a multi is CREATE2
/// (15), which 3.4 refuses; the error says so.
#[tokio::test]
async fn the_client_encodes_plain_create_as_1_and_create_in_multi_as_create2() {
    let fake = Fake34::start(WHITELISTED).await;
    let zk = connect(&fake).await;
    assert_eq!(
        zk.server_version(),
        None,
        "version unknown: the multi is sent"
    );
    zk.create("/a", b"", CreateMode::Persistent).await.unwrap();
    assert!(fake.seen(|s| s.opcodes.contains(&CREATE)));
    assert!(fake.seen(|s| !s.opcodes.contains(&CREATE2)));

    let err = zk
        .multi(vec![Op::create(
            "/a/b",
            b"x".to_vec(),
            CreateMode::Persistent,
        )])
        .await
        .unwrap_err();
    assert_eq!(
        fake.seen(|s| s.multi_ops.clone()),
        vec![vec![CREATE2]],
        "zookeeper-client now encodes a create in a multi differently: revisit coord/src/zk.rs"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("CREATE2") && msg.contains("nothing was applied"),
        "{msg}"
    );
    zk.close().await;
}

/// A server that says it is 3.4: the multi with a create is refused before
/// anything is sent; plain creates and the session are unaffected.
#[tokio::test]
async fn on_a_34_server_a_create_in_a_multi_is_refused_before_sending() {
    let fake = Fake34::start(V34).await;
    let zk = connect(&fake).await;
    assert_eq!(zk.server_version(), Some((3, 4, 13)));
    assert!(!zk.accepts_create_in_multi());
    let err = zk
        .multi(vec![
            Op::check("/", Expect::Any),
            Op::create("/x", b"x".to_vec(), CreateMode::PersistentSequential),
        ])
        .await
        .unwrap_err();
    match &err {
        CoordError::MultiFailed { index, error } => {
            assert_eq!(*index, 1);
            assert!(error.to_string().contains("ZooKeeper 3.4.13"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    zk.create("/x", b"", CreateMode::Persistent).await.unwrap();
    assert!(
        fake.seen(|s| !s.opcodes.contains(&MULTI)),
        "the multi was sent"
    );
    zk.close().await;
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
