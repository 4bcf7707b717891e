//! Seeing the datacenter: the model behind `tritonctl status` and the web
//! view the controller serves on `--web-addr` (issue #21).
//!
//! - [`view`]: the overview as data (leader, documents with conditions,
//!   drift and operations, HA posture, the ring); [`progress`] where an
//!   operation is (current step, steps done, ETA).
//! - [`observe`]: what is read of the datacenter (the review's observing
//!   world, CNAPI and VMAPI reads), never an action; [`gather`] builds the
//!   overview from the store and that.
//! - [`server`]: the routes, live updates by server-sent events from the
//!   controller's event stream; [`auth`]: who may look (HTTP Basic against
//!   the identities of `tritonctl auth`); [`pages`]: the HTML.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod gather;
pub mod observe;
pub mod pages;
pub mod progress;
pub mod server;
pub mod view;

pub use server::WebState;

use crate::runtime::http::HttpLimits;

/// A non-loopback address without the operator's say-so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not a loopback address: the web view binds 127.0.0.1 or ::1 unless --web-allow-remote is given (browsers send identities' secrets to it, in the clear without TLS in front)"
)]
pub struct NotLoopback(pub SocketAddr);

/// Refuse a non-loopback address unless `allow_remote`.
pub fn check_bind(addr: SocketAddr, allow_remote: bool) -> Result<(), NotLoopback> {
    crate::runtime::http::check_bind(addr, allow_remote).map_err(|e| NotLoopback(e.0))
}

/// Serve the web view on `addr` until `stop`; returns the bound address.
/// The caller checks the address first ([`crate::runtime::http::check_bind`]).
pub async fn serve(
    addr: SocketAddr,
    state: WebState,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    crate::runtime::http::serve(addr, server::router(state), limits, stop).await
}

#[cfg(test)]
mod tests;
