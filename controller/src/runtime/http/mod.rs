//! The controller's own HTTP endpoints (`/metrics`, `/healthz`), served so
//! that nobody can hold them hostage (issue #13: 300 slowloris connections
//! were held for 40 s):
//!
//! - a **header read timeout** (hyper's, which runs whenever a connection
//!   waits for a request head, the first one or the next keep-alive one):
//!   a client trickling its headers, or sending none, is cut off;
//! - an **idle timeout**: a connection that moves no byte either way for
//!   that long is closed (a client that never reads its response);
//! - a **connection cap**: at the cap, a new connection evicts the oldest
//!   open one, so the newest (a health probe) is served even while someone
//!   holds every slot; the count never exceeds the cap;
//! - **loopback only** unless the operator says otherwise
//!   ([`check_bind`], `--metrics-allow-remote`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

mod idle;

use idle::{Activity, IdleIo};

/// Limits of one HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a request's head may take to arrive, counted from when the
    /// connection starts waiting for it. None: forever.
    pub header_read_timeout: Option<Duration>,
    /// How long a connection may move no byte at all. None: forever.
    pub idle_timeout: Option<Duration>,
    /// Open connections at most; a new one evicts the oldest. None: no cap.
    pub max_connections: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Some(Duration::from_secs(5)),
            idle_timeout: Some(Duration::from_secs(30)),
            max_connections: Some(32),
        }
    }
}

impl HttpLimits {
    /// No limit at all: what the endpoints had before (for measurements).
    pub fn none() -> HttpLimits {
        HttpLimits {
            header_read_timeout: None,
            idle_timeout: None,
            max_connections: None,
        }
    }
}

/// A non-loopback address without the operator's say-so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not a loopback address: /metrics and /healthz bind 127.0.0.1 or ::1 unless --metrics-allow-remote is given"
)]
pub struct NotLoopback(pub SocketAddr);

/// Refuse a non-loopback address unless `allow_remote`.
pub fn check_bind(addr: SocketAddr, allow_remote: bool) -> Result<(), NotLoopback> {
    if allow_remote || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(NotLoopback(addr))
    }
}

/// Open connections, oldest first (ids only grow).
#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, CancellationToken>,
}

impl Open {
    /// Admit a connection, evicting the oldest ones beyond `cap`.
    fn admit(&mut self, token: CancellationToken, cap: Option<usize>) -> u64 {
        if let Some(cap) = cap {
            while self.by_age.len() >= cap.max(1) {
                let Some((_, oldest)) = self.by_age.pop_first() else {
                    break;
                };
                oldest.cancel();
            }
        }
        let id = self.next;
        self.next += 1;
        self.by_age.insert(id, token);
        id
    }
}

/// Serve `router` on `addr` with `limits` until `stop`; returns the bound
/// address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    router: axum::Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let open = Arc::new(Mutex::new(Open::default()));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let token = stop.child_token();
            let id = lock(&open).admit(token.clone(), limits.max_connections);
            let (open, router) = (open.clone(), router.clone());
            tokio::spawn(async move {
                connection(stream, router, limits, token).await;
                lock(&open).by_age.remove(&id);
            });
        }
    });
    Ok(bound)
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection, until it ends, times out, or is evicted or stopped
/// (dropping the connection closes the socket).
async fn connection(
    stream: tokio::net::TcpStream,
    router: axum::Router,
    limits: HttpLimits,
    token: CancellationToken,
) {
    let activity = Activity::new();
    let io = TokioIo::new(IdleIo::new(stream, activity.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    builder.header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    loop {
        let idle_check = async {
            match limits.idle_timeout {
                Some(idle) => tokio::time::sleep(activity.until_idle(idle)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = token.cancelled() => return,
            _ = idle_check => {
                if limits.idle_timeout.is_some_and(|idle| activity.until_idle(idle).is_zero()) {
                    tracing::debug!("closing an idle HTTP connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
