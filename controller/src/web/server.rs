//! The web view's HTTP routes, served by [`crate::runtime::http::serve`]
//! (header read and idle timeouts, the connection cap, loopback unless
//! allowed). Read-only: every route is a GET, and every request passes
//! [`super::auth`] first.
//!
//! | route | what |
//! |---|---|
//! | `/` | the overview |
//! | `/doc/{kind}/{name}` | a document: spec, conditions, steps |
//! | `/topology`, `/headnodes`, `/plan` | shards and ring, headnodes, the rendered plan |
//! | `/live/overview`, `/live/doc/{kind}/{name}` | the pages' live regions, as HTML |
//! | `/events?object=Kind/name` | server-sent events: one `change` per controller event |
//! | `/api/overview` | the overview as JSON (what `tritonctl status -j` prints) |
//! | `/static/style.css`, `/static/live.js` | the stylesheet and the page script |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use crds::Kind;
use futures::StreamExt;

use super::auth::{self, Refused};
use super::gather;
use super::observe::Observe;
use super::pages;
use super::view::Drift;
use crate::runtime::events::Events;
use crate::store::Store;

/// What the pages read.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    /// How the store is named on the pages.
    pub store_label: String,
    /// The datacenter, when the controller knows its endpoints.
    pub observe: Option<Arc<dyn Observe>>,
    /// The drift of each document as last reviewed (the overview's live
    /// region re-reads the store only).
    drift: Arc<Mutex<BTreeMap<String, Drift>>>,
}

impl WebState {
    pub fn new(store: Store, store_label: String, observe: Option<Arc<dyn Observe>>) -> WebState {
        WebState {
            store,
            store_label,
            observe,
            drift: Arc::default(),
        }
    }
}

/// Keep-alive comments on the event stream, well inside the server's idle
/// timeout so an open page is never cut off.
const SSE_KEEPALIVE: Duration = Duration::from_secs(10);

pub fn router(state: WebState) -> axum::Router {
    axum::Router::new()
        .route("/", get(overview))
        .route("/topology", get(topology))
        .route("/headnodes", get(headnodes))
        .route("/plan", get(plan))
        .route("/doc/{kind}/{name}", get(document))
        .route("/live/overview", get(live_overview))
        .route("/live/doc/{kind}/{name}", get(live_document))
        .route("/events", get(events))
        .route("/api/overview", get(api_overview))
        .route("/static/style.css", get(style))
        .route("/static/live.js", get(script))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Every request: an identity of the role table, or an open tree.
async fn gate(State(st): State<WebState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    match auth::check(st.store.coord(), header.as_deref()).await {
        Ok(_) => {
            let mut resp = next.run(req).await;
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
                ),
            );
            resp
        }
        Err(e @ Refused::Table(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, error_page(&e.to_string())).into_response()
        }
        Err(e) => {
            let mut resp = (StatusCode::UNAUTHORIZED, error_page(&e.to_string())).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tritonctl\", charset=\"UTF-8\""),
            );
            resp
        }
    }
}

fn error_page(msg: &str) -> Html<String> {
    Html(pages::html::page(
        "Not available",
        "",
        &format!("<p>{}</p>", pages::html::esc(msg)),
    ))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, error_page("No such page.")).into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        error_page(&crate::gitops::redact::redact_urls(&e.to_string())),
    )
        .into_response()
}

async fn full(st: &WebState) -> Result<super::view::Overview, String> {
    let o = gather::overview(&st.store, &st.store_label, st.observe.as_deref()).await?;
    let mut drift = st.drift.lock().unwrap_or_else(|p| p.into_inner());
    for d in &o.documents {
        drift.insert(d.key(), d.drift.clone());
    }
    Ok(o)
}

async fn overview(State(st): State<WebState>) -> Response {
    match full(&st).await {
        Ok(o) => Html(pages::overview::render(&o)).into_response(),
        Err(e) => failed(e),
    }
}

async fn api_overview(State(st): State<WebState>) -> Response {
    match full(&st).await {
        Ok(o) => axum::Json(o).into_response(),
        Err(e) => failed(e),
    }
}

async fn topology(State(st): State<WebState>) -> Response {
    match full(&st).await {
        Ok(o) => Html(pages::topology::render(&o)).into_response(),
        Err(e) => failed(e),
    }
}

async fn headnodes(State(st): State<WebState>) -> Response {
    match full(&st).await {
        Ok(o) => Html(pages::headnodes::render(&o)).into_response(),
        Err(e) => failed(e),
    }
}

async fn plan(State(st): State<WebState>) -> Response {
    let body = match &st.observe {
        Some(o) => match gather::review_stored(&st.store, o.as_ref()).await {
            Ok(r) => pages::plan::render(Ok(&r)),
            Err(e) => pages::plan::render(Err(&e)),
        },
        None => pages::plan::render(Err(
            "the datacenter is not observed (the controller was given no endpoints)",
        )),
    };
    Html(body).into_response()
}

async fn load(st: &WebState, kind: &str, name: &str) -> Result<crds::Document, Response> {
    let Some(kind) = Kind::parse(kind) else {
        return Err(not_found().await);
    };
    match st.store.get(kind, name).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err((
            StatusCode::NOT_FOUND,
            error_page(&format!("{kind}/{name} is not stored.")),
        )
            .into_response()),
        Err(e) => Err(failed(e)),
    }
}

async fn document(
    State(st): State<WebState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    match load(&st, &kind, &name).await {
        Ok(d) => Html(pages::document::render(&d)).into_response(),
        Err(r) => r,
    }
}

async fn live_document(
    State(st): State<WebState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    match load(&st, &kind, &name).await {
        Ok(d) => Html(pages::document::live(&d)).into_response(),
        Err(r) => r,
    }
}

async fn live_overview(State(st): State<WebState>) -> Response {
    let now = time::OffsetDateTime::now_utc();
    let docs = match gather::documents(&st.store).await {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let drift = st.drift.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let views: Vec<_> = docs
        .iter()
        .map(|d| {
            let mut v = gather::doc_view(d, now);
            if let Some(x) = drift.get(&v.key()) {
                v.drift = x.clone();
            }
            v
        })
        .collect();
    Html(pages::overview::documents_table(&views)).into_response()
}

/// The newest event's sequence number (the stream starts after it).
async fn newest_event(store: &Store) -> Option<u64> {
    let names = store
        .coord()
        .children(&crate::layout::events_dir())
        .await
        .ok()?;
    names
        .iter()
        .filter_map(|n| coord::split_sequence(n).map(|(_, s)| s))
        .max()
}

async fn events(State(st): State<WebState>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let object = q.get("object").cloned();
    let after = newest_event(&st.store).await;
    let stream = Events::new(st.store.coord().clone())
        .watch(object, after)
        .filter_map(|item| async move {
            match item {
                Ok(rec) => Some(Ok::<_, Infallible>(
                    SseEvent::default()
                        .event("change")
                        .id(rec.seq.to_string())
                        .json_data(&rec.event)
                        .unwrap_or_else(|_| SseEvent::default().event("change")),
                )),
                Err(e) => {
                    tracing::debug!(error = %e, "web view event stream");
                    None
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(SSE_KEEPALIVE))
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/live.js"),
    )
        .into_response()
}
