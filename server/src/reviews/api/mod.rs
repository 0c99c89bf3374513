//! The REST API of reviews under `/api`. Its OpenAPI document is generated from the handlers'
//! `#[utoipa::path]` attributes and their request and response types ([`openapi`]), served at
//! `/api/openapi.json`, and copied for the web app's generated types. One file per resource, each
//! with its handlers and request and response shapes:
//!
//! - [`reviews`]: creating, joining and reading reviews, moving phases, rotating invite links;
//! - [`threads`]: signed comment threads;
//! - [`anonymous`]: anonymous items, concerns, votes, keys, and their moderation;
//! - [`meeting`]: the timebox, the agenda, action items, read marks, hints;
//! - [`actions`]: action items across reviews, and moving their status;
//! - [`records`]: pinned versions, exports, publishing and the library;
//! - [`webhooks`]: setting up webhooks, and the events the other handlers tell them;
//! - [`learning`]: contributing factors and teams, read across reviews;
//! - [`pulse`]: the anonymous culture pulse of a closed review, and its team's trend;
//! - [`me`]: who is signed in, and the review sessions they joined;
//! - [`auth`]: OpenID Connect sign-in in the browser (`/auth/…`) and which sign-in is offered.
//!
//! Beside them: [`openapi`] assembles the document, [`request`] takes every request apart once
//! (path, JSON body, session and what its role may do), [`documents`] runs jobs on a review's documents, [`errors`] maps the
//! domain's refusals to HTTP, and [`state`] is what handlers share. Handlers parse and check
//! input, ask the domain, and write documents through the registry; no file here calls back into
//! the one that calls it.

pub mod actions;
pub mod anonymous;
pub mod auth;
pub mod documents;
pub mod errors;
pub mod home;
pub mod learning;
pub mod me;
pub mod meeting;
pub mod openapi;
pub mod pulse;
pub mod records;
pub mod request;
pub mod reviews;
pub mod state;
pub mod threads;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::Router;

pub use self::state::ApiState;

/// Routes under `/api`, with their state.
pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(serve_openapi))
        .route(
            "/api/reviews",
            post(reviews::create).layer(DefaultBodyLimit::max(reviews::MAX_CREATE_BODY_BYTES)),
        )
        .route("/api/invite", post(reviews::look_up_invite))
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
        .route(
            "/api/reviews/{id}/actions/{action}/status",
            post(actions::move_status),
        )
        .route("/api/actions", get(actions::list_actions))
        .route("/api/actions/search", post(actions::search_actions))
        .route("/api/home", post(home::home))
        .route("/api/reviews/{id}/read", post(meeting::mark_read))
        .route("/api/reviews/{id}/settings", post(meeting::settings))
        .route("/api/reviews/{id}/factors", post(learning::set_factors))
        .route("/api/reviews/{id}/team", post(learning::set_team))
        .route(
            "/api/reviews/{id}/pulse",
            post(pulse::answer).get(pulse::read),
        )
        .route("/api/reviews/{id}/pulse/trend", post(pulse::trend))
        .route("/api/reviews/{id}/versions", get(records::versions))
        .route("/api/reviews/{id}/versions/{phase}", get(records::version))
        .route("/api/reviews/{id}/export.md", get(records::export_md))
        .route("/api/reviews/{id}/export.json", get(records::export_json))
        .route(
            "/api/reviews/{id}/publish",
            post(records::publish).get(records::preview),
        )
        .route("/api/library", get(records::library))
        .route("/api/library/factors", get(records::library_factors))
        .route("/api/library/{id}", get(records::library_entry))
        .route("/api/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/api/webhooks/{webhook}", delete(webhooks::delete))
        .route("/api/me", get(me::me))
        .route("/api/sign-in", get(auth::offer))
        .route("/auth/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/logout", post(auth::logout))
        .layer(axum::middleware::from_fn(request::json_bodies_only))
        .with_state(state)
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "getOpenApi",
    tag = "meta",
    summary = "This OpenAPI description of the REST API.",
    responses(
        (
            status = 200,
            description = "The OpenAPI 3.1 document, generated from the server's code.",
            body = Object,
        ),
    ),
    security(),
)]
async fn serve_openapi() -> Response {
    /// Made once, on the first request.
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(openapi::document);
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The web app's copy of the document, which `npm run api-types` turns into its REST types.
    fn web_copy() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src/generated/openapi.json")
    }

    /// The served document and the web app's copy are the same contract: this fails when one
    /// changed without the other. `DEBRIEF_WRITE_OPENAPI=1 cargo test -p debrief-server openapi`
    /// writes the copy (then `cd web && npm run api-types` writes the types).
    #[test]
    fn openapi_document_matches_the_web_copy() {
        let served: serde_json::Value = serde_json::from_str(&super::openapi::document())
            .expect("the OpenAPI document is JSON");
        let text = serde_json::to_string_pretty(&served).expect("a JSON value serialises") + "\n";
        if std::env::var_os("DEBRIEF_WRITE_OPENAPI").is_some() {
            std::fs::write(web_copy(), &text).expect("write the web copy");
            return;
        }
        let committed = std::fs::read_to_string(web_copy()).expect("read the web copy");
        assert!(
            committed == text,
            "web/src/generated/openapi.json differs from the served document: run \
             `DEBRIEF_WRITE_OPENAPI=1 cargo test -p debrief-server openapi`, then \
             `cd web && npm run api-types`"
        );
    }
}
