//! IMGAPI routes.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::{Params, QueryParams, finish, json};
use crate::dc::{Api, ApiError, Datacenter};

pub fn router(dc: &Datacenter) -> Router {
    let r = Router::new()
        .route("/images", get(list_images))
        .route(
            "/images/{uuid}",
            get(get_image).post(image_action).delete(delete_image),
        )
        .route("/images/{uuid}/file", get(get_file).put(add_file))
        .route("/ping", get(ping))
        .with_state(dc.clone());
    finish(r, dc, Api::Imgapi)
}

type R = Result<Response, ApiError>;

async fn list_images(State(dc): State<Datacenter>, QueryParams(q): QueryParams) -> R {
    Ok(json(StatusCode::OK, &dc.imgapi_list_images(&q)?))
}

async fn get_image(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    Ok(json(StatusCode::OK, &dc.imgapi_get_image(&uuid)?))
}

async fn image_action(State(dc): State<Datacenter>, Path(uuid): Path<String>, p: Params) -> R {
    let body = p.body_object();
    Ok(json(
        StatusCode::OK,
        &dc.imgapi_image_action(&uuid, &p.all, &body)?,
    ))
}

async fn delete_image(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    dc.imgapi_delete_image(&uuid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The body is the raw file, not JSON: only the query carries params.
async fn add_file(
    State(dc): State<Datacenter>,
    Path(uuid): Path<String>,
    QueryParams(q): QueryParams,
    body: Bytes,
) -> R {
    Ok(json(
        StatusCode::OK,
        &dc.imgapi_add_file(&uuid, &q, body.to_vec())?,
    ))
}

async fn get_file(State(dc): State<Datacenter>, Path(uuid): Path<String>) -> R {
    let (bytes, _file) = dc.imgapi_get_file(&uuid)?;
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

async fn ping() -> Response {
    json(
        StatusCode::OK,
        &json!({"ping": "pong", "pid": std::process::id(), "version": "4.13.1",
                "imgapi": true, "state": "running"}),
    )
}
