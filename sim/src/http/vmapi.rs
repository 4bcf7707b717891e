//! VMAPI routes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use wire::apis::{JobExecution, VmJobResponse};

use super::{Params, QueryParams, finish, json};
use crate::dc::params::flag;
use crate::dc::{Api, ApiError, Datacenter};

pub fn router(dc: &Datacenter) -> Router {
    let r = Router::new()
        .route("/vms", get(list_vms).post(create_vm))
        .route("/vms/{uuid}", get(get_vm).post(vm_action).delete(delete_vm))
        .route("/vms/{uuid}/jobs", get(list_vm_jobs))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{uuid}", get(get_job))
        .route("/jobs/{uuid}/wait", get(wait_job))
        .route("/statuses", get(statuses))
        .route("/ping", get(ping))
        .with_state(dc.clone());
    finish(r, dc, Api::Vmapi)
}

type R = Result<Response, ApiError>;

/// GET (and HEAD: axum drops the body) /vms.
async fn list_vms(State(dc): State<Datacenter>, QueryParams(q): QueryParams) -> R {
    let (vms, total) = dc.vmapi_list_vms(&q)?;
    let mut resp = json(StatusCode::OK, &vms);
    resp.headers_mut()
        .insert("x-joyent-resource-count", HeaderValue::from(total));
    Ok(resp)
}

async fn get_vm(
    State(dc): State<Datacenter>,
    Path(uuid): Path<String>,
    QueryParams(q): QueryParams,
) -> R {
    Ok(json(StatusCode::OK, &dc.vmapi_get_vm(&uuid, &q)?))
}

/// 202 `{vm_uuid, job_uuid}`, after the job finished when `sync=true`.
async fn job_accepted(dc: &Datacenter, r: VmJobResponse, sync: bool) -> R {
    if sync {
        let job = dc.wait_job(&r.job_uuid).await?;
        if job.execution != JobExecution::Succeeded {
            return Err(ApiError::internal(
                job.error_message()
                    .unwrap_or_else(|| format!("job {} failed", job.uuid)),
            ));
        }
    }
    let mut resp = json(StatusCode::ACCEPTED, &r);
    let cfg = dc.config();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "http://workflow.{}.{}",
        cfg.datacenter_name, cfg.dns_domain
    )) {
        resp.headers_mut().insert("workflow-api", v);
    }
    Ok(resp)
}

async fn create_vm(State(dc): State<Datacenter>, p: Params) -> R {
    let r = dc.vmapi_create_vm(&p.all)?;
    job_accepted(&dc, r, flag(&p.all, "sync")).await
}

async fn vm_action(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    let r = dc.vmapi_vm_action(&uuid, &p.all)?;
    job_accepted(&dc, r, flag(&p.all, "sync")).await
}

async fn delete_vm(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    let r = dc.vmapi_delete_vm(&uuid, &p.all)?;
    job_accepted(&dc, r, flag(&p.all, "sync")).await
}

async fn list_vm_jobs(
    State(dc): State<Datacenter>,
    Path(uuid): Path<String>,
    QueryParams(q): QueryParams,
) -> R {
    if dc.vm(&uuid).is_none() {
        return Err(ApiError::not_found("VM not found"));
    }
    Ok(json(StatusCode::OK, &dc.vmapi_list_jobs(&q, Some(&uuid))))
}

async fn list_jobs(State(dc): State<Datacenter>, QueryParams(q): QueryParams) -> R {
    Ok(json(StatusCode::OK, &dc.vmapi_list_jobs(&q, None)))
}

async fn get_job(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    Ok(json(StatusCode::OK, &dc.vmapi_get_job(&uuid)?))
}

async fn wait_job(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    Ok(json(StatusCode::OK, &dc.wait_job(&uuid).await?))
}

async fn statuses(State(dc): State<Datacenter>, QueryParams(q): QueryParams) -> R {
    Ok(json(StatusCode::OK, &dc.vmapi_statuses(&q)?))
}

async fn ping() -> Response {
    json(
        StatusCode::OK,
        &json!({
            "pingErrors": {},
            "pid": std::process::id(),
            "status": "OK",
            "healthy": true,
            "services": {"wfapi": "online", "moray": "online"},
            "initialization": {"moray": {"status": "BUCKETS_REINDEX_DONE"}},
            "dataMigrations": {"latestCompletedMigrations": {"vms": 1}}
        }),
    )
    .into_response()
}
