//! HTTP routes: the router, health and readiness probes, metrics, the browser app ([`crate::transport::web`])
//! and the fallback error, and the security headers every response carries. WebSocket upgrades are
//! handed to [`crate::transport::ws`] and [`crate::transport::collab`]; the review API's routes
//! come from the composition root, so the transport does not know the review domain.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::limits::MAX_BODY_BYTES;
use crate::storage::store::StoreError;
use crate::transport::state::AppState;

/// The whole HTTP surface of the server: the transport's own routes, and `api` (the review
/// domain's REST routes, with their state already given by the composition root) beside them.
pub fn router(state: Arc<AppState>, api: Router) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ws/{doc}", get(crate::transport::ws::upgrade))
        .route("/collab", get(crate::transport::collab::upgrade))
        .route("/", get(crate::transport::web::shell))
        .route("/join", get(crate::transport::web::shell))
        .route("/r/{id}", get(crate::transport::web::shell))
        .route("/library/{id}", get(crate::transport::web::shell))
        .route("/actions", get(crate::transport::web::shell))
        .route("/assets/{*file}", get(crate::transport::web::asset))
        .with_state(state)
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
}

/// The browser may run only the app's own scripts (no inline script, no `eval`), load and connect
/// only to this origin (`'self'` covers the app's WebSocket to the same host), and no page may
/// frame the app (clickjacking). Styles may be inline: the editor injects its base stylesheet as
/// a `<style>` element and colours collaborators' carets with `style` attributes. Images may be
/// `data:` URLs (the empty favicon).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every response: the app's HTML and assets, the API, probes and
/// errors alike (issue 16). `X-Frame-Options` repeats `frame-ancestors` for browsers that predate
/// it; `nosniff` keeps a browser from running a response as something its type does not say; and
/// `no-referrer` keeps a review's URL out of the requests its page makes.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The store is open and answers reads. A damaged store served read-only
/// (`--on-damage read-only`) answers 200 with status `read-only` and what is damaged. A cluster
/// node (`--postgres`) that lost its lease answers 503 `node_fenced` with the reason.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.store.probe() {
        Ok(()) if state.damage.is_some() => Ok(Json(serde_json::json!({
            "status": "read-only",
            "damaged": state.damage.as_ref().map(|d| d.lines.clone()),
        }))),
        Ok(()) => Ok(Json(serde_json::json!({ "status": "ready" }))),
        Err(StoreError::NodeFenced(why)) => {
            // Said to the load balancer and the operator: this node serves nothing until it
            // has registered again as a new node (docs/cluster.md, "Readiness and metrics").
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_fenced",
                format!(
                    "this node lost its cluster lease ({why}); it registers again as a new node \
                     as soon as the database lets it"
                ),
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "readiness probe failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the document store cannot be read",
            ))
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.metrics.fresh_store_size().is_none() {
        let dir = state.store.data_dir();
        let measured =
            tokio::task::spawn_blocking(move || crate::metrics::StoreSize::measure(&dir)).await;
        match measured {
            Ok(Ok(size)) => state.metrics.set_store_size(size),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not measure the data directory"),
            Err(e) => tracing::warn!(error = %e, "measuring the data directory failed"),
        }
    }
    let mut body = state.metrics.render();
    // What sockets that have not authenticated yet hold (issue 16's budgets bound it).
    body.push_str(&format!(
        "# HELP debrief_unauthenticated_bytes Bytes held for sockets that have not authenticated yet.\n\
         # TYPE debrief_unauthenticated_bytes gauge\n\
         debrief_unauthenticated_bytes {}\n",
        state.budget.total()
    ));
    body.push_str(&state.store.render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}
