//! HTTP routes: the router, health and readiness probes, metrics, the browser app ([`crate::web`])
//! and the fallback error. WebSocket upgrades are handed to [`crate::ws`] and [`crate::collab`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::AppState;

/// The whole HTTP surface of the server.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ws/{doc}", get(crate::ws::upgrade))
        .route("/collab", get(crate::collab::upgrade))
        .route("/", get(crate::web::shell))
        .route("/join", get(crate::web::shell))
        .route("/r/{id}", get(crate::web::shell))
        .route("/library/{id}", get(crate::web::shell))
        .route("/assets/{*file}", get(crate::web::asset))
        .merge(crate::reviews::api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::reviews::api::MAX_BODY_BYTES,
        ))
        .with_state(state)
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The store is open and answers reads.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.store.probe() {
        Ok(()) => Ok(Json(serde_json::json!({ "status": "ready" }))),
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
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
