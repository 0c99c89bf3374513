//! OpenID Connect sign-in in the browser: `/auth/login` sends the browser to the provider,
//! `/auth/callback` takes it back and opens a browser session (a cookie), `/auth/logout` ends
//! it; `GET /api/sign-in` tells the app which sign-in the server offers. The flow itself is in
//! `reviews/oidc`; nothing here logs a code, token, cookie or claim.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::request::{browser_session, check_csrf, cookie, ClientAddr};
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::oidc::{Oidc, LOGIN_TIMEOUT};

/// Where a login returns to.
#[derive(Deserialize, IntoParams)]
pub(super) struct LoginQuery {
    /// A path on this server to return to once signed in (`/review/…`); anything else (another
    /// host, `//host`) returns to `/`.
    #[serde(rename = "return")]
    #[param(rename = "return", max_length = 512)]
    return_to: Option<String>,
}

/// What the provider sends the browser back with.
#[derive(Deserialize, IntoParams)]
pub(super) struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The login's `state`.
    state: Option<String>,
    /// The provider's error code, when it did not sign the person in.
    error: Option<String>,
}

/// Which sign-in the server offers.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SignInOffer {
    /// Whether `/auth/login` signs people in with OpenID Connect.
    oidc: bool,
    /// Whether an authenticating proxy in front of the server signs people in.
    proxy: bool,
    /// Whether creating a review needs a signed-in person (true with either sign-in).
    required_to_create: bool,
}

fn oidc_of(state: &ApiState) -> Result<&Arc<Oidc>, ApiError> {
    state.oidc.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "oidc_not_configured",
            "this server has no OpenID Connect sign-in set up",
        )
    })
}

fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// 404 on the sign-in routes of a server without OpenID Connect.
const NO_OIDC: &str = "`oidc_not_configured`: the server has no OpenID Connect sign-in.";

/// `GET /auth/login`.
#[utoipa::path(
    get,
    path = "/auth/login",
    operation_id = "signIn",
    tag = "sign-in",
    summary = "Begin signing in with the OpenID provider: sends the browser there.",
    params(LoginQuery),
    responses(
        (
            status = 303,
            description = "To the provider's authorization endpoint (the authorization code flow \
            with PKCE), with a short-lived cookie that ties the login to this browser.",
        ),
        (status = 400, description = "`invalid_query`: the query does not decode.", body = ErrorBody),
        (status = 404, description = NO_OIDC, body = ErrorBody),
        (
            status = 429,
            description = "`rate_limited`: this address began 30 sign-ins in the last minute \
            (`Retry-After` says when to try again).",
            body = ErrorBody,
        ),
    ),
    security(),
)]
pub(super) async fn login(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&state)?;
    let Query(query) = query.map_err(bad_query)?;
    state.reviews.guards.may_begin_sign_in(addr)?;
    let begun = oidc.begin(query.return_to.as_deref());
    let cookie = oidc.set_cookie(
        oidc.login_cookie_name(),
        &begun.browser,
        LOGIN_TIMEOUT,
        "/auth",
    );
    Ok(with_cookies(see_other(&begun.redirect), &[cookie]))
}

/// `GET /auth/callback`.
#[utoipa::path(
    get,
    path = "/auth/callback",
    operation_id = "signInCallback",
    tag = "sign-in",
    summary = "Where the provider sends the browser back: opens a browser session.",
    description = "The redirect URL to register at the provider is the server's public URL with \
    this path. Checks the login's state, that it was begun in this browser and within ten \
    minutes, exchanges the code with its PKCE verifier, and checks the ID token (signature, \
    issuer, audience, expiry, nonce). A new session id is made at every sign-in; the one the \
    browser had ends.",
    params(CallbackQuery),
    responses(
        (
            status = 303,
            description = "Back to the path the login began with, with the session cookie \
            (`HttpOnly`, `SameSite=Lax`, `Secure` when the public URL is https).",
        ),
        (
            status = 400,
            description = "`invalid_query`: the query does not decode; `sign_in_failed`: the \
            provider refused the sign-in, or the login is unknown, expired or from another \
            browser, or the code or ID token did not pass the checks.",
            body = ErrorBody,
        ),
        (status = 404, description = NO_OIDC, body = ErrorBody),
    ),
    security(),
)]
pub(super) async fn callback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&state)?;
    let Query(query) = query.map_err(bad_query)?;
    let failed = |message: String| ApiError::bad_request("sign_in_failed", message);
    if let Some(error) = &query.error {
        // The provider's error code, shown only when it looks like one.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(failed(format!("the provider did not sign you in ({code})")));
    }
    let (Some(code), Some(login)) = (&query.code, &query.state) else {
        return Err(failed(
            "the provider's answer has no code and state; sign in again".to_owned(),
        ));
    };
    let opened = oidc
        .finish(
            login,
            code,
            cookie(&headers, oidc.login_cookie_name()),
            cookie(&headers, oidc.session_cookie_name()),
        )
        .await?;
    tracing::info!("signed in");
    let cookies = [
        oidc.session_cookie(&opened.cookie),
        oidc.clear_cookie(oidc.login_cookie_name(), "/auth"),
    ];
    Ok(with_cookies(see_other(&opened.return_to), &cookies))
}

/// `POST /auth/logout`.
#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "signOut",
    tag = "sign-in",
    summary = "Sign out: ends the browser session on the server and removes its cookie.",
    description = "Signed in by the cookie, the request must carry the session's CSRF token in \
    `X-Debrief-CSRF`. Without a session it changes nothing and succeeds.",
    responses(
        (status = 204, description = "Signed out (or was not signed in)."),
        (
            status = 403,
            description = "`csrf_token_invalid`: the request is signed in by the cookie and does \
            not carry its CSRF token.",
            body = ErrorBody,
        ),
        (status = 404, description = NO_OIDC, body = ErrorBody),
    ),
    security(),
)]
pub(super) async fn logout(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&state)?;
    if let Some((_, csrf)) = browser_session(&state, &headers) {
        check_csrf(&headers, &csrf)?;
        if let Some(value) = cookie(&headers, oidc.session_cookie_name()) {
            oidc.end(value);
        }
        tracing::info!("signed out");
    }
    // The cookie is cleared only where it came with the request: a cross-site form, which the
    // SameSite cookie does not come with, cannot make a browser drop its sign-in.
    if cookie(&headers, oidc.session_cookie_name()).is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let clear = oidc.clear_cookie(oidc.session_cookie_name(), "/");
    Ok(with_cookies(
        StatusCode::NO_CONTENT.into_response(),
        &[clear],
    ))
}

/// `GET /api/sign-in`.
#[utoipa::path(
    get,
    path = "/api/sign-in",
    operation_id = "getSignInOffer",
    tag = "sign-in",
    summary = "Which sign-in the server offers, for the app's header.",
    responses((status = 200, description = "The sign-in the server offers.", body = SignInOffer)),
    security(),
)]
pub(super) async fn offer(State(state): State<Arc<ApiState>>) -> Json<SignInOffer> {
    Json(SignInOffer {
        oidc: state.oidc.is_some(),
        proxy: state.sign_in.trusted.is_some(),
        required_to_create: state.sign_in.enabled(),
    })
}
