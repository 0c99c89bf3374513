//! `GET /api/me`: who is signed in on a request, and the review sessions they joined while
//! signed in ([`linked_sessions`], which the home page adds to the sessions a browser holds).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::request::{browser_session, SignedIn};
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::identity::{Person, TRUSTED_HEADER_ISSUER};
use crate::reviews::policy::{Phase, Role};
use crate::reviews::sessions::{ReviewRecord, SessionRecord};

/// The sessions `person` joined while signed in that still exist, with their reviews, newest
/// link first. A store that cannot be read gives none (the page then shows what the browser
/// holds).
pub fn linked_sessions(state: &ApiState, person: &Person) -> Vec<(SessionRecord, ReviewRecord)> {
    let hashes = match state.people.sessions_of(person) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "could not read a person's sessions");
            return Vec::new();
        }
    };
    hashes
        .iter()
        .filter_map(|h| state.reviews.by_hash(h))
        .collect()
}

/// How the person signed in.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum SignInSource {
    /// An authenticating proxy in front of the server named them (`--trusted-identity-header`).
    Proxy,
    /// The server's own OpenID Connect sign-in.
    Oidc,
}

/// A review session the person joined while signed in.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MyReview {
    /// The review's id.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    phase: Phase,
    /// The role of the session.
    role: Role,
    /// The name the session shows.
    #[schema(
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// When the session was opened, milliseconds since the Unix epoch.
    joined_at: u64,
}

/// The signed-in person.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Me {
    source: SignInSource,
    /// The display name their sign-in gives.
    #[schema(min_length = 1, max_length = 60)]
    name: String,
    /// Their e-mail address; null when the sign-in gives none.
    #[schema(required = true, max_length = 256)]
    email: Option<String>,
    /// Their groups, as the sign-in gives them (at most 64).
    #[schema(max_items = 64)]
    groups: Vec<String>,
    /// The review sessions they joined while signed in, newest first.
    reviews: Vec<MyReview>,
    /// Signed in with OpenID Connect (a cookie): the token every state-changing request must
    /// carry in `X-Debrief-CSRF`. Absent behind a proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{64}$", nullable = false)]
    csrf_token: Option<String>,
}

/// `GET /api/me`.
#[utoipa::path(
    get,
    path = "/api/me",
    operation_id = "getMe",
    tag = "sign-in",
    summary = "Who is signed in, and the review sessions they joined while signed in.",
    responses(
        (status = 200, description = "The signed-in person.", body = Me),
        (
            status = 401,
            description = "`not_signed_in`: nobody is signed in on this request (also on a server \
            without sign-in).",
            body = ErrorBody,
        ),
    ),
    security(),
)]
pub(super) async fn me(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    SignedIn(person): SignedIn,
) -> Result<impl IntoResponse, ApiError> {
    let Some(person) = person else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "nobody is signed in on this request",
        ));
    };
    let reviews = linked_sessions(&state, &person)
        .into_iter()
        .map(|(session, review)| MyReview {
            id: review.id,
            title: review.title,
            phase: review.phase,
            role: session.role,
            name: session.name,
            joined_at: session.created_at,
        })
        .collect();
    let proxy = person.issuer == TRUSTED_HEADER_ISSUER;
    let csrf_token = if proxy {
        None
    } else {
        browser_session(&state, &headers).map(|(_, csrf)| csrf)
    };
    // The CSRF token and the claims are this browser's: no cache keeps them.
    let private = [
        (header::CACHE_CONTROL, "no-store"),
        (header::VARY, "Cookie"),
    ];
    Ok((
        private,
        Json(Me {
            csrf_token,
            source: if proxy {
                SignInSource::Proxy
            } else {
                SignInSource::Oidc
            },
            name: person.name,
            email: person.email,
            groups: person.groups,
            reviews,
        }),
    ))
}
