//! Behaviour, not speed: each bound below is generous, and only says that a
//! connection is closed at all (a read sees EOF) or that the count holds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Far longer than any limit used here: the connection is held forever if
/// a read still waits after this.
const GENEROUS: Duration = Duration::from_secs(20);

async fn start(limits: HttpLimits) -> (SocketAddr, CancellationToken) {
    let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let stop = CancellationToken::new();
    let addr = serve("127.0.0.1:0".parse().unwrap(), router, limits, stop.clone())
        .await
        .unwrap();
    (addr, stop)
}

/// True once the server closed the connection (EOF or reset).
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    tokio::time::timeout(GENEROUS, s.read_to_end(&mut buf))
        .await
        .is_ok()
}

async fn healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(GENEROUS, s.read_to_string(&mut out))
        .await
        .expect("/healthz answers")
        .unwrap();
    out
}

fn only(f: impl FnOnce(&mut HttpLimits)) -> HttpLimits {
    let mut l = HttpLimits::none();
    f(&mut l);
    l
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let (addr, _stop) = start(only(|l| {
        l.header_read_timeout = Some(Duration::from_millis(300))
    }))
    .await;
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // One header line every 50 ms, never the blank line that ends them.
    let trickle = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let r = tokio::time::timeout(GENEROUS, rd.read_to_end(&mut buf)).await;
    trickle.abort();
    assert!(r.is_ok(), "a trickling client is held");
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_silent_connection_is_cut_off_by_the_header_timeout() {
    let (addr, _stop) = start(only(|l| {
        l.header_read_timeout = Some(Duration::from_millis(300))
    }))
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut s).await);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let (addr, _stop) = start(only(|l| l.idle_timeout = Some(Duration::from_millis(300)))).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut s).await);
    // A keep-alive connection that goes quiet after a request, too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(GENEROUS, s.read_to_end(&mut buf))
        .await
        .expect("closed once idle")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("ok"));
}

/// At the cap a new connection evicts the oldest: with 10 silent
/// connections held against a cap of 4, the 7 oldest are closed and
/// /healthz still answers.
#[tokio::test]
async fn the_cap_evicts_the_oldest_and_healthz_still_answers() {
    let (addr, _stop) = start(only(|l| l.max_connections = Some(4))).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
    for (i, s) in held.iter_mut().take(7).enumerate() {
        assert!(closed_by_server(s).await, "connection {i} still open");
    }
}

#[tokio::test]
async fn stopping_closes_every_connection() {
    let (addr, stop) = start(HttpLimits::none()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
    stop.cancel();
    assert!(closed_by_server(&mut s).await);
}

#[test]
fn only_loopback_unless_allowed() {
    let lo: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let lo6: SocketAddr = "[::1]:9464".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
    assert_eq!(check_bind(lo, false), Ok(()));
    assert_eq!(check_bind(lo6, false), Ok(()));
    assert_eq!(check_bind(any, false), Err(NotLoopback(any)));
    assert_eq!(check_bind(any, true), Ok(()));
}
