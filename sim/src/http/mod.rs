//! The simulated datacenter over HTTP: one axum router per API, each bound
//! to its own loopback listener (in Triton every API is a separate zone),
//! plus a control API for faults and time.
//!
//! Requests are turned into restify-style params (query and JSON body
//! merged, the query winning, as restify's `mapParams` does) and handed to
//! the model in [`crate::dc`]. Every API router shares: fault injection
//! (latency, injected errors), restify's response headers (`Server`,
//! `x-request-id`, `x-server-name`), and restify's 404/405 bodies for
//! unknown routes.

pub mod cnapi;
pub mod control;
pub mod imgapi;
pub mod sapi;
pub mod vmapi;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wire::apis::{JsonMap, codes};

use crate::dc::{Api, ApiError, Datacenter};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match self.body {
            Some(b) => json(status, &b),
            None => status.into_response(),
        }
    }
}

/// A JSON response as restify writes it.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn query_map(uri: &Uri) -> Result<JsonMap, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::new(400, codes::INVALID_CONTENT, format!("Invalid query: {e}")))?;
    let mut out = JsonMap::new();
    for (k, v) in pairs {
        match out.get_mut(&k) {
            // Repeated keys become an array, as node's querystring does.
            Some(Value::Array(a)) => a.push(Value::String(v)),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, Value::String(v)]);
            }
            None => {
                out.insert(k, Value::String(v));
            }
        }
    }
    Ok(out)
}

/// Query-string params only (GET handlers).
pub struct QueryParams(pub JsonMap);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        query_map(&parts.uri).map(QueryParams)
    }
}

/// restify `req.params`: query and JSON body merged (query wins), plus the
/// parsed body on its own.
pub struct Params {
    pub all: JsonMap,
    pub body: Option<Value>,
}

impl Params {
    pub fn body_object(&self) -> JsonMap {
        match &self.body {
            Some(Value::Object(o)) => o.clone(),
            _ => JsonMap::new(),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let mut all = query_map(req.uri())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(400, codes::INVALID_CONTENT, e.to_string()))?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                ApiError::new(400, codes::INVALID_CONTENT, format!("Invalid JSON: {e}"))
            })?)
        };
        if let Some(Value::Object(o)) = &body {
            for (k, v) in o {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Ok(Params { all, body })
    }
}

#[derive(Clone)]
struct Ctx {
    dc: Datacenter,
    api: Api,
    server: &'static str,
    server_name: String,
}

/// Faults, then the handler, then restify's standard headers.
async fn api_layer(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let decision = ctx
        .dc
        .decide_fault(ctx.api, req.method().as_str(), req.uri().path());
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let mut resp = match decision.error {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(ctx.server));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.server_name) {
        h.insert("x-server-name", v);
    }
    resp
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("{} does not exist", uri.path()))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        405,
        codes::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed"),
    )
}

/// SAPI's restify 4 names its 405 `MethodNotAllowedError`.
async fn sapi_method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        405,
        codes::METHOD_NOT_ALLOWED_ERROR,
        format!("{method} is not allowed"),
    )
}

/// Wrap an API router with the shared layers.
fn finish(router: Router, dc: &Datacenter, api: Api) -> Router {
    let server = match api {
        Api::Sapi => "sapi/2.1.3",
        Api::Vmapi => "vmapi/9.16.0",
        Api::Cnapi => "cnapi/1.26.6",
        Api::Imgapi => "imgapi/4.13.1",
    };
    let ctx = Ctx {
        dc: dc.clone(),
        api,
        server,
        server_name: uuid::Uuid::new_v4().to_string(),
    };
    let router = router.fallback(not_found);
    let router = match api {
        Api::Sapi => router.method_not_allowed_fallback(sapi_method_not_allowed),
        _ => router.method_not_allowed_fallback(method_not_allowed),
    };
    router.layer(axum::middleware::from_fn_with_state(ctx, api_layer))
}

/// Where each API listens (all `127.0.0.1:0` by default).
#[derive(Clone, Copy, Debug)]
pub struct SimAddrs {
    pub sapi: SocketAddr,
    pub vmapi: SocketAddr,
    pub cnapi: SocketAddr,
    pub imgapi: SocketAddr,
    pub control: SocketAddr,
}

impl Default for SimAddrs {
    fn default() -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        SimAddrs {
            sapi: any,
            vmapi: any,
            cnapi: any,
            imgapi: any,
            control: any,
        }
    }
}

/// Base URLs (`http://127.0.0.1:PORT`, no trailing slash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimUrls {
    pub sapi: String,
    pub vmapi: String,
    pub cnapi: String,
    pub imgapi: String,
    pub control: String,
}

/// The four APIs and the control API, each on its own listener.
pub struct SimServers {
    urls: SimUrls,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimServers {
    /// Bind every API on its own `127.0.0.1:0` listener.
    pub async fn start(dc: Datacenter) -> io::Result<SimServers> {
        Self::start_on(dc, SimAddrs::default()).await
    }

    pub async fn start_on(dc: Datacenter, addrs: SimAddrs) -> io::Result<SimServers> {
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let routers = [
            (addrs.sapi, sapi::router(&dc)),
            (addrs.vmapi, vmapi::router(&dc)),
            (addrs.cnapi, cnapi::router(&dc)),
            (addrs.imgapi, imgapi::router(&dc)),
            (addrs.control, control::router(&dc)),
        ];
        let mut urls = Vec::new();
        for (addr, router) in routers {
            if !addr.ip().is_loopback() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the simulator listens on loopback only, not {addr}"),
                ));
            }
            let listener = tokio::net::TcpListener::bind(addr).await?;
            urls.push(format!("http://{}", listener.local_addr()?));
            let mut rx = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    while !*rx.borrow_and_update() {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::warn!(error = %e, "simulated API server stopped");
                }
            }));
        }
        let mut it = urls.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let urls = SimUrls {
            sapi: next(),
            vmapi: next(),
            cnapi: next(),
            imgapi: next(),
            control: next(),
        };
        Ok(SimServers { urls, stop, tasks })
    }

    pub fn urls(&self) -> &SimUrls {
        &self.urls
    }

    /// Stop accepting, let in-flight requests finish (a few seconds at
    /// most: a waiting `/jobs/:uuid/wait` is cut off after that).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SimServers {
    fn drop(&mut self) {
        // Dropped without `shutdown`: stop the listeners anyway.
        let _ = self.stop.send(true);
    }
}
