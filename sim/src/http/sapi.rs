//! SAPI routes, with restify's Accept-Version handling (server versions
//! 1.0.0 and 2.0.0; no header means `~1`).

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde_json::Value;
use wire::apis::{Instance, JsonMap, Service, codes};

use super::{Params, QueryParams, finish, json};
use crate::dc::sapi_store::{INSTANCE_KEYS, SERVICE_KEYS, Stored, render};
use crate::dc::{Api, ApiError, Datacenter};

/// Whether the request's Accept-Version admits 2.0.0 (then `type` is
/// rendered and list filters are not forced to `type=vm`).
#[derive(Clone, Copy, Debug)]
struct V2(bool);

pub fn router(dc: &Datacenter) -> Router {
    let r = Router::new()
        .route("/applications", get(list_apps).post(create_app))
        .route(
            "/applications/{uuid}",
            get(get_app).put(update_app).delete(delete_app),
        )
        .route("/services", get(list_services).post(create_service))
        .route(
            "/services/{uuid}",
            get(get_service).put(update_service).delete(delete_service),
        )
        .route("/instances", get(list_instances).post(create_instance))
        .route(
            "/instances/{uuid}",
            get(get_instance)
                .put(update_instance)
                .delete(delete_instance),
        )
        .route("/instances/{uuid}/payload", get(instance_payload))
        .route("/instances/{uuid}/upgrade", put(upgrade_instance))
        .route("/manifests", get(list_manifests).post(create_manifest))
        .route(
            "/manifests/{uuid}",
            get(get_manifest).delete(delete_manifest),
        )
        .route("/configs/{uuid}", get(get_configs))
        .route("/mode", get(get_mode).post(set_mode))
        .route("/ping", get(ping))
        .layer(axum::middleware::from_fn(version_layer))
        .with_state(dc.clone());
    finish(r, dc, Api::Sapi)
}

async fn version_layer(mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get("accept-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("~1")
        .to_string();
    let v1 = satisfies(&header, (1, 0, 0));
    let v2 = satisfies(&header, (2, 0, 0));
    if !v1 && !v2 {
        return ApiError::new(
            400,
            codes::INVALID_VERSION,
            format!(
                "{header} is not supported by {} {}",
                req.method(),
                req.uri().path()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(V2(v2));
    next.run(req).await
}

type Version = (u64, u64, u64);

/// A node-semver subset: `*`/`x`, exact and partial versions, `~`, `^`,
/// comparators, space-separated conjunctions and `||` alternatives.
fn satisfies(range: &str, v: Version) -> bool {
    range
        .split("||")
        .any(|alt| alt.split_whitespace().all(|c| comparator(c, v)))
}

fn parse_partial(s: &str) -> Option<(u64, Option<u64>, Option<u64>)> {
    let s = s.trim_start_matches(['v', '=']);
    let mut it = s.split('.');
    let part = |p: Option<&str>| -> Option<Option<u64>> {
        match p {
            None | Some("x") | Some("X") | Some("*") => Some(None),
            Some(n) => n.parse().ok().map(Some),
        }
    };
    let major = it.next()?.parse().ok()?;
    let minor = part(it.next())?;
    let patch = part(it.next())?;
    Some((major, minor, patch))
}

fn comparator(c: &str, v: Version) -> bool {
    if matches!(c, "*" | "x" | "X" | "") {
        return true;
    }
    let (op, rest) = ["<=", ">=", "<", ">", "~", "^", "="]
        .iter()
        .find_map(|op| c.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", c));
    let Some((maj, min, pat)) = parse_partial(rest) else {
        return false;
    };
    let lo = (maj, min.unwrap_or(0), pat.unwrap_or(0));
    // Exclusive upper bound of a partial or tilde/caret range.
    let next_minor = (maj, min.unwrap_or(0) + 1, 0);
    let next_major = (maj + 1, 0, 0);
    match op {
        ">=" => v >= lo,
        ">" => v > lo,
        "<=" => v <= lo,
        "<" => v < lo,
        "~" => {
            v >= lo
                && v < if min.is_some() {
                    next_minor
                } else {
                    next_major
                }
        }
        "^" => v >= lo && v < next_major,
        _ => match (min, pat) {
            (None, _) => v >= lo && v < next_major,
            (Some(_), None) => v >= lo && v < next_minor,
            (Some(_), Some(_)) => v == lo,
        },
    }
}

/// A service as SAPI's `serialize` sends it (stored types, unset keys out).
fn render_service(s: &Stored<Service>, v2: bool) -> Value {
    Value::Object(render(s.raw(), SERVICE_KEYS, v2, None))
}

/// An instance as SAPI's `serialize` sends it.
fn render_instance(i: &Stored<Instance>, v2: bool, job_uuid: Option<&str>) -> Value {
    Value::Object(render(i.raw(), INSTANCE_KEYS, v2, job_uuid))
}

/// An application is sent as stored.
fn raw<T>(s: &Stored<T>) -> &JsonMap {
    s.raw()
}

type R = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(v: &T) -> R {
    Ok(json(StatusCode::OK, v))
}

// ---- applications ----

async fn create_app(State(dc): State<Datacenter>, p: Params) -> R {
    ok(raw(&dc.sapi_create_application(&p.all)?))
}

async fn list_apps(State(dc): State<Datacenter>, QueryParams(q): QueryParams) -> R {
    let list: Vec<JsonMap> = dc
        .sapi_list_applications_checked(&q)?
        .iter()
        .map(|a| raw(a).clone())
        .collect();
    ok(&list)
}

async fn get_app(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    ok(raw(&dc.sapi_get_application(&uuid)?))
}

async fn update_app(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    ok(raw(&dc.sapi_update_application(&uuid, &p.all)?))
}

async fn delete_app(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    dc.sapi_delete_application(&uuid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- services ----

async fn create_service(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    p: Params,
) -> R {
    ok(&render_service(&dc.sapi_create_service(&p.all)?, v2))
}

async fn list_services(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    QueryParams(q): QueryParams,
) -> R {
    let list: Vec<Value> = dc
        .sapi_list_services_checked(&q, v2)?
        .iter()
        .map(|s| render_service(s, v2))
        .collect();
    ok(&list)
}

async fn get_service(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    Path(uuid): Path<String>,
) -> R {
    ok(&render_service(&dc.sapi_get_service(&uuid)?, v2))
}

async fn update_service(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    Path(uuid): Path<String>,
    p: Params,
) -> R {
    ok(&render_service(&dc.sapi_update_service(&uuid, &p.all)?, v2))
}

async fn delete_service(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    dc.sapi_delete_service(&uuid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- instances ----
//
// Create, upgrade and delete hold the answer until their VMAPI job ends
// and run detached from the handler: a client that goes away mid-call
// leaves the call to finish as real SAPI would (`dc::sapi_sync`).

async fn create_instance(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    p: Params,
) -> R {
    let call = dc.clone();
    let (inst, job) = dc
        .sapi_detached(async move { call.sapi_create_instance(&p.all).await })
        .await?;
    ok(&render_instance(&inst, v2, job.as_deref()))
}

async fn list_instances(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    QueryParams(q): QueryParams,
) -> R {
    let list: Vec<Value> = dc
        .sapi_list_instances_checked(&q, v2)?
        .iter()
        .map(|i| render_instance(i, v2, None))
        .collect();
    ok(&list)
}

async fn get_instance(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    Path(uuid): Path<String>,
) -> R {
    ok(&render_instance(&dc.sapi_get_instance(&uuid)?, v2, None))
}

async fn instance_payload(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    ok(&dc.sapi_instance_payload(&uuid)?)
}

async fn update_instance(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    Path(uuid): Path<String>,
    p: Params,
) -> R {
    ok(&render_instance(
        &dc.sapi_update_instance(&uuid, &p.all)?,
        v2,
        None,
    ))
}

async fn upgrade_instance(
    State(dc): State<Datacenter>,
    Extension(V2(v2)): Extension<V2>,
    Path(uuid): Path<String>,
    p: Params,
) -> R {
    let call = dc.clone();
    let inst = dc
        .sapi_detached(async move { call.sapi_upgrade_instance(&uuid, &p.all).await })
        .await?;
    ok(&render_instance(&inst, v2, None))
}

async fn delete_instance(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    let call = dc.clone();
    dc.sapi_detached(async move { call.sapi_delete_instance(&uuid).await })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- manifests, configs ----

async fn create_manifest(State(dc): State<Datacenter>, p: Params) -> R {
    ok(&dc.sapi_create_manifest(&p.all)?)
}

async fn list_manifests(State(dc): State<Datacenter>) -> R {
    ok(&dc.sapi_list_manifests())
}

async fn get_manifest(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    ok(&dc.sapi_get_manifest(&uuid)?)
}

async fn delete_manifest(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    dc.sapi_delete_manifest(&uuid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_configs(
    State(dc): State<Datacenter>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
) -> R {
    let (cfg, etag) = dc.sapi_get_configs(&uuid)?;
    let quoted = format!("\"{etag}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == quoted || v.trim() == etag);
    let mut resp = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json(StatusCode::OK, &cfg)
    };
    if let Ok(v) = HeaderValue::from_str(&quoted) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

// ---- mode, ping ----

async fn get_mode(State(dc): State<Datacenter>) -> R {
    ok(&dc.sapi_mode().as_str())
}

async fn set_mode(State(dc): State<Datacenter>, p: Params) -> R {
    dc.sapi_set_mode(&p.all)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ping(State(dc): State<Datacenter>) -> R {
    ok(&dc.sapi_ping())
}

#[cfg(test)]
mod tests {
    use super::satisfies;

    #[test]
    fn accept_version_ranges() {
        for (range, v1, v2) in [
            ("~1", true, false),
            ("~2", false, true),
            ("2.0.0", false, true),
            ("1.0.0", true, false),
            ("*", true, true),
            (">=1", true, true),
            (">=2.0.0", false, true),
            ("~1 || ~2", true, true),
            ("^2", false, true),
            ("~3", false, false),
            ("2.x", false, true),
            ("<2", true, false),
        ] {
            assert_eq!(satisfies(range, (1, 0, 0)), v1, "{range} vs 1.0.0");
            assert_eq!(satisfies(range, (2, 0, 0)), v2, "{range} vs 2.0.0");
        }
    }
}
