//! The REST API of reviews under `/api` (described by `openapi.json`, served at
//! `/api/openapi.json`). One file per resource, each with its handlers and request shapes:
//!
//! - [`reviews`]: creating, joining and reading reviews, moving phases, rotating invite links;
//! - [`threads`]: signed comment threads;
//! - [`anonymous`]: anonymous items, concerns, votes, keys, and their moderation;
//! - [`meeting`]: the timebox, the agenda, action items, read marks, hints;
//! - [`records`]: pinned versions, exports, publishing and the library.
//!
//! Beside them: [`request`] takes every request apart once (path, JSON body, session and what
//! its role may do), [`documents`] runs jobs on a review's documents, [`errors`] maps the
//! domain's refusals to HTTP, and [`state`] is what handlers share. Handlers parse and check
//! input, ask the domain, and write documents through the registry; no file here calls back into
//! the one that calls it.

pub mod anonymous;
pub mod documents;
pub mod errors;
pub mod meeting;
pub mod records;
pub mod request;
pub mod reviews;
pub mod state;
pub mod threads;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;

pub use self::state::ApiState;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Routes under `/api`, with their state.
pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route(
            "/api/reviews",
            post(reviews::create).layer(DefaultBodyLimit::max(reviews::MAX_CREATE_BODY_BYTES)),
        )
        .route("/api/join", post(reviews::join))
        .route("/api/reviews/{id}", get(reviews::read))
        .route("/api/reviews/{id}/phase", post(reviews::move_phase))
        .route("/api/reviews/{id}/invites/{role}", post(reviews::rotate))
        .route("/api/reviews/{id}/threads", post(threads::add_thread))
        .route(
            "/api/reviews/{id}/threads/{thread}/comments",
            post(threads::reply),
        )
        .route(
            "/api/reviews/{id}/threads/{thread}/comments/{comment}",
            patch(threads::edit).delete(threads::delete),
        )
        .route(
            "/api/reviews/{id}/threads/{thread}/resolve",
            post(threads::resolve),
        )
        .route(
            "/api/reviews/{id}/threads/{thread}/reopen",
            post(threads::reopen),
        )
        .route(
            "/api/reviews/{id}/anonymous/threads",
            post(anonymous::anonymous_thread),
        )
        .route(
            "/api/reviews/{id}/anonymous/threads/{thread}/comments",
            post(anonymous::anonymous_reply),
        )
        .route("/api/reviews/{id}/concerns", post(anonymous::raise_concern))
        .route(
            "/api/reviews/{id}/concerns/{concern}/support",
            post(anonymous::support),
        )
        .route(
            "/api/reviews/{id}/concerns/{concern}/discussed",
            post(anonymous::discussed),
        )
        .route(
            "/api/reviews/{id}/anonymous/pending",
            post(anonymous::pending),
        )
        .route(
            "/api/reviews/{id}/anonymous/{item}/edit",
            post(anonymous::anonymous_edit),
        )
        .route(
            "/api/reviews/{id}/anonymous/{item}/retract",
            post(anonymous::anonymous_retract),
        )
        .route("/api/reviews/{id}/moderation/hide", post(anonymous::hide))
        .route("/api/reviews/{id}/timer", post(meeting::timer))
        .route("/api/reviews/{id}/agenda", post(meeting::agenda))
        .route("/api/reviews/{id}/actions", post(meeting::add_action))
        .route(
            "/api/reviews/{id}/actions/{action}",
            patch(meeting::update_action),
        )
        .route("/api/reviews/{id}/read", post(meeting::mark_read))
        .route("/api/reviews/{id}/settings", post(meeting::settings))
        .route("/api/reviews/{id}/versions", get(records::versions))
        .route("/api/reviews/{id}/versions/{phase}", get(records::version))
        .route("/api/reviews/{id}/export.md", get(records::export_md))
        .route("/api/reviews/{id}/export.json", get(records::export_json))
        .route("/api/reviews/{id}/publish", post(records::publish))
        .route("/api/library", get(records::library))
        .route("/api/library/{id}", get(records::library_entry))
        .layer(axum::middleware::from_fn(request::json_bodies_only))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
