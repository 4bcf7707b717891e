//! One electric-moray process over real HTTP on 127.0.0.1.
//!
//! - `GET /status`: the body of e-m's status server (em:lib/status_server.js:
//!   `smf_fmri`, `pid`, `start_time`, `client_list`, `index_shards` as
//!   configured), plus `hash_ring_stamp`: what the ring's
//!   `manta_hash_ring_stamp.json` says (`{image_uuid}`; `null` for a ring
//!   not loaded from an image). The real process has no such field (the
//!   stamp is a file in its ring directory, which manta-reshard reads in the
//!   zone); it is served here so a controller can check both through one
//!   request.
//! - A small data API in place of e-m's fast RPCs, one `POST /<rpc>` per
//!   method with a JSON body: `putObject {bucket, key, value}`,
//!   `getObject {bucket, key}`, `delObject {bucket, key}`,
//!   `batch {requests: [{operation, bucket, key, value?}]}`,
//!   `createBucket {bucket, config}`, `updateBucket {bucket, config}`,
//!   `delBucket {bucket}`. Success is 200 with the RPC's result; an error is
//!   `{name, message}` (e-m's error names) with 404 for
//!   `ObjectNotFoundError`, 503 while the process is not running, else 500.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::config::IndexShard;
use super::fleet::EmProcess;
use super::rows::BatchOp;
use super::{BucketDdl, MantaError};

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmStatusBody {
    pub smf_fmri: Option<String>,
    pub pid: u32,
    pub start_time: String,
    pub client_list: Vec<String>,
    pub index_shards: Option<Vec<IndexShard>>,
    pub hash_ring_stamp: Option<RingStamp>,
}

/// `manta_hash_ring_stamp.json` (the fields the simulator knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingStamp {
    pub image_uuid: String,
}

/// An RPC error on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub name: String,
    pub message: String,
}

impl From<&MantaError> for WireError {
    fn from(e: &MantaError) -> WireError {
        WireError {
            name: e.name().to_owned(),
            message: e.to_string(),
        }
    }
}

fn fail(e: &MantaError) -> Response {
    let status = match e {
        MantaError::ObjectNotFound { .. } => StatusCode::NOT_FOUND,
        MantaError::NotRunning { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(WireError::from(e))).into_response()
}

fn reply<T: Serialize>(r: Result<T, MantaError>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => fail(&e),
    }
}

#[derive(Deserialize)]
struct ObjReq {
    bucket: String,
    key: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct BatchReq {
    requests: Vec<BatchOp>,
}

#[derive(Deserialize)]
struct BucketReq {
    bucket: String,
    #[serde(default)]
    config: Value,
}

type S = State<Arc<EmProcess>>;

async fn status(State(p): S) -> Response {
    match p.status_body() {
        Some(b) => (StatusCode::OK, axum::Json(b)).into_response(),
        None => fail(&p.not_running()),
    }
}

async fn put_object(State(p): S, axum::Json(r): axum::Json<ObjReq>) -> Response {
    let Some(em) = p.serving() else {
        return fail(&p.not_running());
    };
    reply(em.put_object(&r.bucket, &r.key, r.value).await)
}

async fn get_object(State(p): S, axum::Json(r): axum::Json<ObjReq>) -> Response {
    let Some(em) = p.serving() else {
        return fail(&p.not_running());
    };
    reply(em.get_object(&r.bucket, &r.key).await)
}

async fn del_object(State(p): S, axum::Json(r): axum::Json<ObjReq>) -> Response {
    let Some(em) = p.serving() else {
        return fail(&p.not_running());
    };
    reply(em.del_object(&r.bucket, &r.key).await.map(|()| json!({})))
}

async fn batch(State(p): S, axum::Json(r): axum::Json<BatchReq>) -> Response {
    let Some(em) = p.serving() else {
        return fail(&p.not_running());
    };
    reply(
        em.batch(&r.requests)
            .await
            .map(|etags| json!({"etags": etags})),
    )
}

async fn ddl(p: Arc<EmProcess>, r: BucketReq, kind: &str) -> Response {
    let Some(em) = p.serving() else {
        return fail(&p.not_running());
    };
    let d = match kind {
        "create" => BucketDdl::Create {
            name: &r.bucket,
            config: &r.config,
        },
        "update" => BucketDdl::Update {
            name: &r.bucket,
            config: &r.config,
        },
        _ => BucketDdl::Delete { name: &r.bucket },
    };
    reply(em.bucket_ddl(d).await.map(|()| json!({})))
}

async fn create_bucket(State(p): S, axum::Json(r): axum::Json<BucketReq>) -> Response {
    ddl(p, r, "create").await
}

async fn update_bucket(State(p): S, axum::Json(r): axum::Json<BucketReq>) -> Response {
    ddl(p, r, "update").await
}

async fn del_bucket(State(p): S, axum::Json(r): axum::Json<BucketReq>) -> Response {
    ddl(p, r, "delete").await
}

/// Serves `p` on a fresh 127.0.0.1 port until the task is aborted.
pub(super) async fn serve(p: Arc<EmProcess>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let app = Router::new()
        .route("/status", get(status))
        .route("/putObject", post(put_object))
        .route("/getObject", post(get_object))
        .route("/delObject", post(del_object))
        .route("/batch", post(batch))
        .route("/createBucket", post(create_bucket))
        .route("/updateBucket", post(update_bucket))
        .route("/delBucket", post(del_bucket))
        .with_state(p);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "electric-moray HTTP server stopped");
        }
    });
    Ok((addr, task))
}
