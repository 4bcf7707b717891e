//! Real clients for Triton's HTTP APIs (SAPI, VMAPI, CNAPI, IMGAPI).
//!
//! One small JSON-over-HTTP core: per-request timeout, retries with backoff
//! only for idempotent reads, errors that carry the API's `{code, message}`,
//! and a [`MutationGuard`] consulted right before every mutating request so
//! that only the elected controller changes the datacenter.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reconcilers::error::{Refusal, RefusalReason, WorldError};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod cnapi;
pub mod electric_moray;
pub mod imgapi;
pub mod listed;
pub mod sapi;
pub mod vmapi;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status.
    #[error("{api} {method} {path}: {status} {code}: {message}")]
    Status {
        api: &'static str,
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: the connection failed or broke before a response.
    #[error("{api} {method} {path}: {message}")]
    Transport {
        api: &'static str,
        method: String,
        path: String,
        message: String,
    },
    /// The request timed out: a mutation may or may not have taken effect.
    #[error("{api} {method} {path}: {message}")]
    TimedOut {
        api: &'static str,
        method: String,
        path: String,
        message: String,
    },
    #[error("{api} {path}: unexpected response body: {message}")]
    Decode {
        api: &'static str,
        path: String,
        message: String,
    },
    /// The leadership check before a mutation failed; nothing was sent.
    #[error("not sending {method} {path}: {message}")]
    NotLeader {
        method: String,
        path: String,
        message: String,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    /// The request may have reached the API without our seeing the answer
    /// (a timeout, a connection broken mid-request): a mutation's outcome is
    /// unknown.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ApiError::Transport { .. } | ApiError::TimedOut { .. })
    }
}

/// API errors as the reconcilers see them; the text is unchanged.
impl From<ApiError> for WorldError {
    fn from(e: ApiError) -> WorldError {
        let text = e.to_string();
        match e {
            ApiError::Status {
                api,
                method,
                path,
                status,
                code,
                message,
            } => WorldError::Api {
                what: format!("{api} {method} {path}"),
                status,
                code,
                message,
            },
            ApiError::Transport { .. } => WorldError::Transport(text),
            ApiError::TimedOut { .. } => WorldError::TimedOut(text),
            ApiError::Decode { .. } => WorldError::Malformed(text),
            ApiError::NotLeader { .. } => {
                WorldError::Refused(Refusal::new(RefusalReason::NotLeader, text))
            }
        }
    }
}

/// Consulted right before every mutating request (fencing for HTTP).
#[async_trait]
pub trait MutationGuard: Send + Sync {
    async fn check(&self) -> Result<(), String>;
}

/// A guard that always allows (single-user CLI commands, tests).
pub struct Unguarded;

#[async_trait]
impl MutationGuard for Unguarded {
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// How long each kind of call may take before the client stops waiting.
/// A mutation that times out has an unknown outcome
/// ([`ApiError::TimedOut`]); the world finds out what happened
/// (`world::outcome`) before anything is decided, and never resends blindly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Reads and quick mutations (metadata writes, CNAPI commands).
    pub default: Duration,
    /// SAPI CreateInstance and UpgradeInstance: SAPI answers once the
    /// VMAPI job ends and polls it for up to an hour (720 polls of 5 s).
    pub sapi_job: Duration,
    /// SAPI DeleteInstance: SAPI waits for the destroy job (its socket
    /// timeout is 10 minutes).
    pub sapi_delete: Duration,
    /// After a SAPI call timed out: how long a job it started may still
    /// be waited for.
    pub job_wait: Duration,
    /// How often that job is polled.
    pub job_poll: Duration,
    /// After a SAPI call timed out with no trace in the world: how long to
    /// look again before calling it not started (the request may still be
    /// on its way through SAPI).
    pub settle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            default: Duration::from_secs(30),
            sapi_job: Duration::from_secs(65 * 60),
            sapi_delete: Duration::from_secs(11 * 60),
            job_wait: Duration::from_secs(2 * 60 * 60),
            job_poll: Duration::from_secs(5),
            settle: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct HttpApi {
    api: &'static str,
    base: String,
    http: reqwest::Client,
    guard: Arc<dyn MutationGuard>,
    /// Extra headers sent with every request (SAPI's Accept-Version).
    headers: Vec<(&'static str, String)>,
    retries: u32,
    timeouts: Timeouts,
}

/// The shared reqwest client: rustls with the ring provider, no proxies.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .user_agent(concat!("tritonctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("reqwest client")
}

impl HttpApi {
    pub fn new(
        api: &'static str,
        base: &str,
        http: reqwest::Client,
        guard: Arc<dyn MutationGuard>,
    ) -> HttpApi {
        HttpApi {
            api,
            base: base.trim_end_matches('/').to_string(),
            http,
            guard,
            headers: Vec::new(),
            retries: 3,
            timeouts: Timeouts::default(),
        }
    }

    /// The timeouts this API's calls use (`default` is also the reqwest
    /// client's own).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> HttpApi {
        self.timeouts = timeouts;
        self
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> HttpApi {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        self.request(Method::GET, path, query, None::<&()>, None)
            .await
    }

    pub async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        self.request(method, path, query, body, None).await
    }

    /// A mutation that may take `timeout` rather than the default (SAPI's
    /// synchronous instance calls wait for their VMAPI job).
    pub async fn send_waiting<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        self.request(method, path, &[], body, Some(timeout)).await
    }

    /// A PUT whose body is raw bytes (an image file, IMGAPI AddImageFile),
    /// guarded like every mutation and never retried.
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        bytes: Vec<u8>,
    ) -> Result<T, ApiError> {
        self.guard
            .check()
            .await
            .map_err(|message| ApiError::NotLeader {
                method: "PUT".into(),
                path: path.to_string(),
                message,
            })?;
        let err = |message: String, timed_out: bool| {
            let (api, method, path) = (self.api, "PUT".to_string(), path.to_string());
            if timed_out {
                ApiError::TimedOut {
                    api,
                    method,
                    path,
                    message,
                }
            } else {
                ApiError::Transport {
                    api,
                    method,
                    path,
                    message,
                }
            }
        };
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .query(query)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| err(e.to_string(), e.is_timeout()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| err(e.to_string(), e.is_timeout()))?;
        if !status.is_success() {
            let rest: Option<wire::apis::RestError> = serde_json::from_slice(&body).ok();
            return Err(ApiError::Status {
                api: self.api,
                method: "PUT".into(),
                path: path.to_string(),
                status: status.as_u16(),
                code: rest
                    .as_ref()
                    .and_then(|e| e.code.clone())
                    .unwrap_or_else(|| "Error".into()),
                message: rest
                    .map(|e| e.message)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            api: self.api,
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// A GET whose answer is not JSON (an image file): its bytes.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        self.raw(Method::GET, path, &[], None::<&()>, None).await
    }

    async fn request<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T, ApiError> {
        let bytes = self.raw(method, path, query, body, timeout).await?;
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| ApiError::Decode {
            api: self.api,
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// The request with its guard and retries; a success's body as sent.
    async fn raw<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ApiError> {
        let idempotent = method == Method::GET || method == Method::HEAD;
        if !idempotent {
            self.guard
                .check()
                .await
                .map_err(|message| ApiError::NotLeader {
                    method: method.to_string(),
                    path: path.to_string(),
                    message,
                })?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .query(query);
            for (k, v) in &self.headers {
                req = req.header(*k, v);
            }
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let transport = |e: reqwest::Error| {
                let (api, method, path, message) = (
                    self.api,
                    method.to_string(),
                    path.to_string(),
                    e.to_string(),
                );
                if e.is_timeout() {
                    ApiError::TimedOut {
                        api,
                        method,
                        path,
                        message,
                    }
                } else {
                    ApiError::Transport {
                        api,
                        method,
                        path,
                        message,
                    }
                }
            };
            let err = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.map_err(transport)?;
                    if status.is_success() {
                        return Ok(bytes.to_vec());
                    }
                    let body: Option<wire::apis::RestError> = serde_json::from_slice(&bytes).ok();
                    ApiError::Status {
                        api: self.api,
                        method: method.to_string(),
                        path: path.to_string(),
                        status: status.as_u16(),
                        code: body
                            .as_ref()
                            .and_then(|e| e.code.clone())
                            .unwrap_or_else(|| {
                                status
                                    .canonical_reason()
                                    .unwrap_or("Error")
                                    .replace(' ', "")
                            }),
                        message: body
                            .map(|e| e.message)
                            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
                    }
                }
                Err(e) => transport(e),
            };
            let retryable = idempotent
                && match &err {
                    ApiError::Transport { .. } | ApiError::TimedOut { .. } => true,
                    ApiError::Status { status, .. } => {
                        *status >= 500 || *status == StatusCode::TOO_MANY_REQUESTS.as_u16()
                    }
                    _ => false,
                };
            if !retryable || attempt > self.retries {
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt - 1))).await;
        }
    }
}

/// Endpoints of the four APIs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    pub sapi: String,
    pub vmapi: String,
    pub cnapi: String,
    pub imgapi: String,
}

/// All four clients sharing one HTTP client and guard.
#[derive(Clone)]
pub struct Triton {
    pub sapi: sapi::Sapi,
    pub vmapi: vmapi::Vmapi,
    pub cnapi: cnapi::Cnapi,
    pub imgapi: imgapi::Imgapi,
}

impl Triton {
    pub fn new(e: &Endpoints, guard: Arc<dyn MutationGuard>) -> Triton {
        Triton::with_timeouts(e, guard, Timeouts::default())
    }

    pub fn with_timeouts(e: &Endpoints, guard: Arc<dyn MutationGuard>, t: Timeouts) -> Triton {
        let http = http_client(t.default);
        let api = |name, base: &str| {
            HttpApi::new(name, base, http.clone(), guard.clone()).with_timeouts(t)
        };
        Triton {
            sapi: sapi::Sapi(api("sapi", &e.sapi).with_header("accept-version", "~2")),
            vmapi: vmapi::Vmapi(api("vmapi", &e.vmapi)),
            cnapi: cnapi::Cnapi(api("cnapi", &e.cnapi)),
            imgapi: imgapi::Imgapi(api("imgapi", &e.imgapi)),
        }
    }

    pub fn timeouts(&self) -> &Timeouts {
        self.sapi.0.timeouts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NotLeader;

    #[async_trait]
    impl MutationGuard for NotLeader {
        async fn check(&self) -> Result<(), String> {
            Err("not the leader".into())
        }
    }

    fn api(base: &str, timeout: Duration, guard: Arc<dyn MutationGuard>) -> HttpApi {
        let mut a = HttpApi::new("vmapi", base, http_client(timeout), guard);
        a.retries = 0;
        a
    }

    /// A mutation whose answer never comes may have happened: it maps to
    /// "timed out, outcome unknown", never to a refusal or a plain failure.
    #[tokio::test]
    async fn a_mutation_that_times_out_has_an_unknown_outcome() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Accept and read, never answer.
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                let (c, _) = listener.accept().await.unwrap();
                conns.push(c);
            }
        });
        let a = api(&base, Duration::from_millis(300), Arc::new(Unguarded));
        let e = a
            .send::<_, serde_json::Value>(Method::POST, "/vms/z", &[], Some(&serde_json::json!({})))
            .await
            .unwrap_err();
        held.abort();
        assert!(matches!(e, ApiError::TimedOut { .. }), "{e:?}");
        assert!(e.outcome_unknown());
        let w = WorldError::from(e);
        assert!(matches!(w, WorldError::TimedOut(_)), "{w:?}");
        assert!(w.outcome_unknown());
        assert!(w.refusal().is_none());
    }

    /// A call that waits for a job gets its own, longer timeout; every
    /// other call keeps the client's default.
    #[tokio::test]
    async fn a_waiting_call_outlives_the_default_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Answers every request 300 ms after reading it.
        let slow = tokio::spawn(async move {
            loop {
                let (mut c, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = c
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                });
            }
        });
        let a = api(&base, Duration::from_millis(100), Arc::new(Unguarded));
        let e = a
            .get::<serde_json::Value>("/instances/z", &[])
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::TimedOut { .. }), "{e:?}");
        let v: serde_json::Value = a
            .send_waiting(
                Method::PUT,
                "/instances/z/upgrade",
                Some(&serde_json::json!({})),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!({}));
        slow.abort();
    }

    /// Nothing is sent without leadership: a refusal, with a known outcome.
    #[tokio::test]
    async fn a_mutation_refused_by_the_guard_is_a_refusal() {
        let a = api(
            "http://127.0.0.1:9",
            Duration::from_secs(5),
            Arc::new(NotLeader),
        );
        let e = a
            .send::<_, serde_json::Value>(Method::POST, "/vms/z", &[], Some(&serde_json::json!({})))
            .await
            .unwrap_err();
        let text = e.to_string();
        let w = WorldError::from(e);
        assert_eq!(w.to_string(), text, "the words are unchanged");
        assert_eq!(
            w.refusal().map(|r| r.reason),
            Some(RefusalReason::NotLeader)
        );
        assert!(!w.outcome_unknown());
    }

    /// An API error keeps its status and restify code.
    #[test]
    fn an_api_error_keeps_status_and_code() {
        let e = ApiError::Status {
            api: "sapi",
            method: "PUT".into(),
            path: "/instances/z/upgrade".into(),
            status: 409,
            code: "InvalidState".into(),
            message: "busy".into(),
        };
        let text = e.to_string();
        let w = WorldError::from(e);
        assert_eq!(w.to_string(), text);
        assert_eq!(w.status(), Some(409));
        assert!(
            matches!(&w, WorldError::Api { code, .. } if code == "InvalidState"),
            "{w:?}"
        );
    }
}
