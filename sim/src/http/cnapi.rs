//! CNAPI routes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use wire::apis::ExecuteRequest;

use super::{Params, QueryParams, finish, json};
use crate::dc::params::{flag, str_param, uint_param};
use crate::dc::{Api, ApiError, Datacenter};

pub fn router(dc: &Datacenter) -> Router {
    let r = Router::new()
        .route("/servers", get(list_servers))
        .route("/servers/{uuid}", get(get_server).post(update_server))
        .route("/servers/{uuid}/setup", put(setup_server))
        .route("/servers/{uuid}/execute", post(execute))
        .route("/ping", get(ping))
        .with_state(dc.clone());
    finish(r, dc, Api::Cnapi)
}

type R = Result<Response, ApiError>;

async fn list_servers(State(dc): State<Datacenter>, QueryParams(q): QueryParams) -> R {
    Ok(json(StatusCode::OK, &dc.cnapi_list_servers(&q)?))
}

async fn get_server(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    Ok(json(StatusCode::OK, &dc.cnapi_get_server(&uuid)?))
}

async fn update_server(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    dc.cnapi_update_server(&uuid, &p.all)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 202 `{job_uuid}`, or 204 when the server is already set up.
async fn setup_server(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    Ok(match dc.cnapi_setup_server(&uuid, &p.all)? {
        Some(job) => json(StatusCode::ACCEPTED, &job),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `json: true` -> `{stdout, stderr, exitCode}`; otherwise the trimmed
/// stdout as the body, and a non-zero exit becomes a 500.
async fn execute(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    let a = &p.all;
    let req = ExecuteRequest {
        script: str_param(a, "script").unwrap_or_default(),
        args: a
            .get("args")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        env: a
            .get("env")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), crate::dc::params::scalar_string(v)))
                    .collect()
            })
            .unwrap_or_default(),
        json: flag(a, "json"),
        timeout: uint_param(a, "timeout").ok().flatten(),
    };
    let out = dc.cnapi_execute(&uuid, &req)?;
    if req.json {
        return Ok(json(StatusCode::OK, &out));
    }
    if out.exit_code != 0 {
        return Err(ApiError::internal("Error executing on remote system"));
    }
    Ok(json(StatusCode::OK, out.stdout.trim()))
}

async fn ping() -> Response {
    json(
        StatusCode::OK,
        &json!({"ready": true, "connected": {"moray": true}, "healthy": true}),
    )
}
