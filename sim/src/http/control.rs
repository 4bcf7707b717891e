//! The simulator's own control API: faults, failed jobs, dead servers,
//! the time scale, and what happened (executions, events). Not part of
//! Triton, so faults never apply to it.
//!
//! | method + path | body | answer |
//! | --- | --- | --- |
//! | GET /faults | | installed rules |
//! | POST /faults | [`FaultRule`] | `{"id"}` |
//! | DELETE /faults | | 204, every rule and pending job failure removed |
//! | DELETE /faults/{id} | | 204, or 404 |
//! | GET /jobs/fail-next | | pending job failures |
//! | POST /jobs/fail-next | `{count, task?, message?}` | 204 |
//! | POST /servers/{uuid}/dead, /alive | | 204, or 404 |
//! | GET, PUT /time-scale | `{scale}` | `{scale}` |
//! | GET /executions | | commands run through CNAPI execute |
//! | GET /events | | recent datacenter events |
//! | GET /sapi/would-crash | | requests the real SAPI would have died on (answered 599 `SimulatorWouldCrash`) |
//! | GET /ping | | `{"ok": true}` |

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::json;
use crate::dc::{ApiError, Datacenter, FaultRule};

pub fn router(dc: &Datacenter) -> Router {
    Router::new()
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/jobs/fail-next", get(pending_failures).post(fail_next))
        .route("/servers/{uuid}/dead", post(server_dead))
        .route("/servers/{uuid}/alive", post(server_alive))
        .route("/time-scale", get(get_scale).put(set_scale))
        .route("/executions", get(executions))
        .route("/events", get(events))
        .route("/sapi/would-crash", get(would_crash))
        .route(
            "/ping",
            get(|| async { json(StatusCode::OK, &json!({"ok": true})) }),
        )
        .with_state(dc.clone())
}

type R = Result<Response, ApiError>;

fn bad_body(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(400, "InvalidContent", format!("Invalid JSON: {e}"))
}

async fn list_faults(State(dc): State<Datacenter>) -> Response {
    json(StatusCode::OK, &dc.faults())
}

async fn add_fault(State(dc): State<Datacenter>, body: axum::body::Bytes) -> R {
    let rule: FaultRule = serde_json::from_slice(&body).map_err(bad_body)?;
    if let Some(p) = rule.probability
        && !(0.0..=1.0).contains(&p)
    {
        return Err(ApiError::invalid_argument(
            "probability must be within [0, 1]",
        ));
    }
    let id = dc.add_fault(rule);
    Ok(json(StatusCode::OK, &json!({"id": id})))
}

async fn clear_faults(State(dc): State<Datacenter>) -> Response {
    dc.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_fault(State(dc): State<Datacenter>, Path(id): Path<u64>) -> R {
    if dc.remove_fault(id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no such fault: {id}")))
    }
}

#[derive(Deserialize)]
struct FailNext {
    count: u32,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

async fn pending_failures(State(dc): State<Datacenter>) -> Response {
    json(StatusCode::OK, &dc.pending_job_failures())
}

async fn fail_next(State(dc): State<Datacenter>, body: axum::body::Bytes) -> R {
    let f: FailNext = serde_json::from_slice(&body).map_err(bad_body)?;
    dc.fail_next_jobs(
        f.count,
        f.task.as_deref(),
        f.message.as_deref().unwrap_or("injected job failure"),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn server_dead(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    dc.set_server_dead(&uuid, true)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn server_alive(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    dc.set_server_dead(&uuid, false)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct Scale {
    scale: f64,
}

async fn get_scale(State(dc): State<Datacenter>) -> Response {
    json(StatusCode::OK, &json!({"scale": dc.time_scale()}))
}

async fn set_scale(State(dc): State<Datacenter>, Json(s): Json<Scale>) -> Response {
    dc.set_time_scale(s.scale);
    json(StatusCode::OK, &json!({"scale": dc.time_scale()}))
}

async fn executions(State(dc): State<Datacenter>) -> Response {
    json(StatusCode::OK, &dc.executions())
}

async fn events(State(dc): State<Datacenter>) -> Response {
    json(StatusCode::OK, &dc.recent_events())
}

async fn would_crash(State(dc): State<Datacenter>) -> Response {
    json(StatusCode::OK, &dc.sapi_would_crash())
}
