//! A client of one electric-moray: in process, or over its HTTP data API
//! ([`super::em_http`]). Errors are what the wire carries: a `name` and a
//! `message`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::em_http::WireError;
use super::{ElectricMoray, EmProcess, MantaError};

#[derive(Clone)]
pub enum EmClient {
    Local(Arc<ElectricMoray>),
    Http {
        name: String,
        url: String,
        http: reqwest::Client,
    },
}

impl std::fmt::Debug for EmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EmClient").field(&self.name()).finish()
    }
}

impl EmClient {
    /// Over HTTP to a fleet process.
    pub fn http(p: &EmProcess, timeout: Duration) -> EmClient {
        EmClient::Http {
            name: p.zone().to_owned(),
            url: p.url(),
            http: http_client(timeout),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            EmClient::Local(em) => em.name(),
            EmClient::Http { name, .. } => name,
        }
    }

    async fn rpc(&self, method: &str, body: Value) -> Result<Value, WireError> {
        let EmClient::Http { url, http, .. } = self else {
            unreachable!("rpc is only called for HTTP clients")
        };
        let r = http
            .post(format!("{url}/{method}"))
            .json(&body)
            .send()
            .await
            .map_err(|e| WireError {
                name: if e.is_timeout() {
                    "TimeoutError"
                } else {
                    "NoConnectionError"
                }
                .into(),
                message: e.to_string(),
            })?;
        let ok = r.status().is_success();
        let v: Value = r.json().await.map_err(|e| WireError {
            name: "InternalError".into(),
            message: format!("unreadable response: {e}"),
        })?;
        if ok {
            Ok(v)
        } else {
            serde_json::from_value(v.clone())
                .map_err(|_| WireError {
                    name: "InternalError".into(),
                    message: v.to_string(),
                })
                .and_then(Err)
        }
    }

    /// putObject; the etag on success.
    pub async fn put(&self, bucket: &str, key: &str, value: &Value) -> Result<String, WireError> {
        match self {
            EmClient::Local(em) => em
                .put_object(bucket, key, value.clone())
                .await
                .map(|p| p.etag)
                .map_err(|e| WireError::from(&e)),
            EmClient::Http { .. } => {
                let v = self
                    .rpc(
                        "putObject",
                        json!({"bucket": bucket, "key": key, "value": value}),
                    )
                    .await?;
                Ok(v["etag"].as_str().unwrap_or_default().to_owned())
            }
        }
    }

    /// getObject; the value on success.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Value, WireError> {
        match self {
            EmClient::Local(em) => em
                .get_object(bucket, key)
                .await
                .map(|g| g.value)
                .map_err(|e| WireError::from(&e)),
            EmClient::Http { .. } => {
                let v = self
                    .rpc("getObject", json!({"bucket": bucket, "key": key}))
                    .await?;
                Ok(v["value"].clone())
            }
        }
    }

    pub async fn del(&self, bucket: &str, key: &str) -> Result<(), WireError> {
        match self {
            EmClient::Local(em) => em
                .del_object(bucket, key)
                .await
                .map_err(|e| WireError::from(&e)),
            EmClient::Http { .. } => self
                .rpc("delObject", json!({"bucket": bucket, "key": key}))
                .await
                .map(|_| ()),
        }
    }
}

impl WireError {
    pub fn is_read_only(&self) -> bool {
        self.name == "ReadOnlyError"
    }

    pub fn timeout(after: Duration) -> WireError {
        WireError::from(&MantaError::ClientTimeout {
            millis: after.as_millis() as u64,
        })
    }
}

/// A plain-HTTP client (reqwest wants a TLS crypto provider installed even
/// for `http://`).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .expect("an HTTP client with no TLS configuration builds")
}
