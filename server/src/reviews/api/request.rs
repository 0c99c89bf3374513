//! What a review API request carries, taken apart once for every handler: the path parameters,
//! the JSON body, the client's address, and the session with what its role and the review's
//! phase allow ([`Session`] with a [`Requirement`]). Every refusal is an [`ApiError`] with the
//! same code and sentence as when each handler did this itself.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::state::ApiState;
use crate::documents::access::same_secret;
use crate::error::ApiError;
use crate::limits::MAX_BODY_BYTES;
use crate::reviews::anonymous::Anonymity;
use crate::reviews::identity::{Header, Person, RepeatedHeader};
use crate::reviews::meeting;
use crate::reviews::oidc::CSRF_HEADER;
use crate::reviews::policy;
use crate::reviews::problem::Problem;
use crate::reviews::sessions::{ReviewRecord, SessionRecord};
use debrief_proto::schema::DocKind;

/// The address of the client a request comes from, for the limits on guessing and flooding:
/// the connection's address ([`PeerAddr`]), or behind a `--trusted-proxy` the client's as the
/// proxies name it in `X-Forwarded-For` ([`crate::reviews::identity::SignIn::client_addr`]).
/// Never stored or logged.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<Arc<ApiState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let Ok(PeerAddr(peer)) = PeerAddr::from_request_parts(parts, state).await;
        let forwarded = parts
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.to_str().ok());
        Ok(ClientAddr(state.sign_in.client_addr(peer, forwarded)))
    }
}

/// `X-Forwarded-For`, where each proxy appends the address it was reached from.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The address of the connection a request came on (the proxy's, behind a proxy);
/// unspecified when the server runs without connection info. Never stored or logged.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        ))
    }
}

/// A route's path parameters; 400 `invalid_path` (with axum's explanation) when they do not
/// decode, for example when one is not UTF-8 once percent-decoded.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// A JSON body of at most `MAX` bytes (the route's limit, which the router enforces and the
/// error names): 413 `body_too_large` when it cannot be read, 400 `invalid_json` when it is not
/// the expected shape.
#[derive(Debug, Clone)]
pub struct JsonBody<T, const MAX: usize = MAX_BODY_BYTES>(pub T);

impl<T, S, const MAX: usize> FromRequest<S> for JsonBody<T, MAX>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body::<S, MAX>(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body stands for the type's default (a command whose fields
/// are all optional may be sent without one).
#[derive(Debug, Clone)]
pub struct JsonOrEmpty<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrEmpty<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body::<S, MAX_BODY_BYTES>(request, state).await?;
        if bytes.is_empty() {
            return Ok(JsonOrEmpty(T::default()));
        }
        parse_json(&bytes).map(JsonOrEmpty)
    }
}

async fn read_body<S: Send + Sync, const MAX: usize>(
    request: Request,
    state: &S,
) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body could not be read (at most {MAX} bytes): {e}"),
        )
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid: {e}"),
        )
    })
}

/// The bearer token of a request, if it sends one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Refuses a request body that is not declared JSON (415 `unsupported_media_type`): every body
/// the API takes is JSON, and a browser sends a cross-site form (`text/plain`,
/// `application/x-www-form-urlencoded`) without asking the server first. Requests without a body
/// need no type.
pub async fn json_bodies_only(request: Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if has_body && !json {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON, with `Content-Type: application/json`",
        )
        .into_response();
    }
    next.run(request).await
}

/// The person signed in on a request, if any: named by a trusted proxy's header (honoured only
/// on a connection from a `--trusted-proxy` range; a request from there that carries one of the
/// configured identity headers more than once is not signed in at all), or by the browser
/// session cookie of OpenID Connect sign-in. A request that changes something (any method but GET and HEAD) and
/// is signed in by the cookie must carry the session's CSRF token in `X-Debrief-CSRF`, or it is
/// refused (403 `csrf_token_invalid`). Never logged.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Option<Person>);

impl FromRequestParts<Arc<ApiState>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let Ok(PeerAddr(peer)) = PeerAddr::from_request_parts(parts, state).await;
        let headers = &parts.headers;
        let from_proxy = state.sign_in.from_proxy(peer, |name| {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Header::Absent,
                (Some(_), Some(_)) => Header::Repeated,
                (Some(v), None) => {
                    std::str::from_utf8(v.as_bytes()).map_or(Header::Absent, Header::Once)
                }
            }
        });
        match from_proxy {
            Ok(Some(person)) => return Ok(SignedIn(Some(person))),
            Ok(None) => {}
            Err(RepeatedHeader(name)) => {
                // The name is the operator's configuration; the values are never logged.
                tracing::debug!(
                    header = %name,
                    "an identity header came more than once from the proxy; the request is \
                     not signed in"
                );
                return Ok(SignedIn(None));
            }
        }
        let Some((person, csrf)) = browser_session(state, headers) else {
            return Ok(SignedIn(None));
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if !safe {
            check_csrf(headers, &csrf)?;
        }
        Ok(SignedIn(Some(person)))
    }
}

/// 403 `csrf_token_invalid`.
/// Refuses a request signed in by the cookie whose `X-Debrief-CSRF` header is not the browser
/// session's token `csrf` (compared in constant time).
pub fn check_csrf(headers: &HeaderMap, csrf: &str) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if same_secret(csrf, sent) {
        Ok(())
    } else {
        Err(csrf_refused())
    }
}

/// 403 `csrf_token_invalid`.
pub fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "this request is signed in by the sign-in cookie, so it must carry the page's CSRF token \
         in the X-Debrief-CSRF header (GET /api/me gives it)",
    )
}

/// The value of cookie `name`, if the request sends it.
///
/// A cookie sent more than once (one set for a parent domain or a longer path beside this
/// server's own) counts as absent: which of them is this server's cannot be told.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.trim());
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(first).filter(|v| !v.is_empty())
}

/// The person and CSRF token of the request's browser session, when OpenID sign-in is set up
/// and the cookie names an open session.
pub fn browser_session(state: &ApiState, headers: &HeaderMap) -> Option<(Person, String)> {
    let oidc = state.oidc.as_ref()?;
    oidc.session(cookie(headers, oidc.session_cookie_name())?)
}

/// The right to create a review: the server's creation secret, when it has one, from an
/// address that has not sent too many wrong ones lately; and when sign-in is set up, a
/// signed-in person the server's rules allow (`--allowed-email-domain`, `--required-group`).
#[derive(Debug, Clone, Copy)]
pub struct MayCreate;

impl FromRequestParts<Arc<ApiState>> for MayCreate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let SignedIn(person) = SignedIn::from_request_parts(parts, state).await?;
        state.sign_in.may_create(person.as_ref())?;
        let Some(secret) = &state.creation_secret else {
            return Ok(MayCreate);
        };
        let Ok(ClientAddr(addr)) = ClientAddr::from_request_parts(parts, state).await;
        state.reviews.guards.may_try_secret(addr)?;
        let given = bearer(&parts.headers).unwrap_or("");
        if same_secret(secret.expose(), given) {
            return Ok(MayCreate);
        }
        if let Some(limited) = state.reviews.guards.wrong_secret(addr) {
            return Err(limited.into());
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "creation_not_allowed",
            "creating a review needs the server's creation secret as `Authorization: Bearer <secret>`",
        ))
    }
}

/// What a [`Session`] must be allowed, checked once the session is known: its role, the
/// review's phase, and for anonymous items the size of the group and the rate limit.
pub trait Requirement {
    /// Refuses what the requirement does not allow to `you` (whatever it was checked for so far).
    fn check<A>(state: &ApiState, you: &Session<A>) -> Result<(), ApiError>;
}

/// Any session of the review.
#[derive(Debug, Clone, Copy)]
pub struct Member;

impl Requirement for Member {
    fn check<A>(_: &ApiState, _: &Session<A>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The review's facilitator (403 from the phase table otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Facilitates;

impl Requirement for Facilitates {
    fn check<A>(_: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        policy::may_facilitate(you.session.role).map_err(Problem::from)?;
        Ok(())
    }
}

/// The facilitator, during the meeting (409 `not_in_meeting` otherwise).
#[derive(Debug, Clone, Copy)]
pub struct ChairsMeeting;

impl Requirement for ChairsMeeting {
    fn check<A>(state: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        Facilitates::check(state, you)?;
        meeting::during_meeting(you.review.phase)?;
        Ok(())
    }
}

/// Someone the phase table lets comment in the review's phase.
#[derive(Debug, Clone, Copy)]
pub struct Comments;

impl Requirement for Comments {
    fn check<A>(_: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        policy::may_comment(you.session.role, you.review.phase).map_err(Problem::from)?;
        Ok(())
    }
}

/// Someone who may comment, in a review with enough people for anonymity, within the rate
/// limit of anonymous submissions (which this counts). Nothing about the session is logged.
#[derive(Debug, Clone, Copy)]
pub struct PostsAnonymously;

impl Requirement for PostsAnonymously {
    fn check<A>(state: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        Comments::check(state, you)?;
        Anonymity::enough_posters(&you.review, &state.reviews.counts(&you.review.id))?;
        state.anonymity.rate_limit(&you.token)?;
        Ok(())
    }
}

/// Someone who may read the report in the review's phase: the report is not for everyone's eyes
/// in draft, and neither are its versions and exports.
#[derive(Debug, Clone, Copy)]
pub struct ReadsReport;

impl Requirement for ReadsReport {
    fn check<A>(_: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        policy::document_access(you.session.role, you.review.phase, DocKind::Report)
            .map_err(Problem::from)?;
        Ok(())
    }
}

/// Someone who may add and change action items: anyone but observers, in review and meeting.
#[derive(Debug, Clone, Copy)]
pub struct WritesActions;

impl Requirement for WritesActions {
    fn check<A>(_: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        meeting::may_write_actions(you.session.role, you.review.phase)?;
        Ok(())
    }
}

/// Someone who may move an action item's status: anyone but observers, from review on (closed
/// reviews included).
#[derive(Debug, Clone, Copy)]
pub struct MovesActions;

impl Requirement for MovesActions {
    fn check<A>(_: &ApiState, you: &Session<A>) -> Result<(), ApiError> {
        meeting::may_move_actions(you.session.role, you.review.phase)?;
        Ok(())
    }
}

/// The review named by the path's `id`.
#[derive(Deserialize)]
struct ReviewId {
    id: String,
}

/// The session a request is made with (`Authorization: Bearer <session token>`), for the
/// review its path names, once `R` allows it.
pub struct Session<R = Member> {
    /// The session.
    pub session: SessionRecord,
    /// Its review, as it was when the request began.
    pub review: ReviewRecord,
    /// The session token: counts anonymous submissions against their rate limit and makes the
    /// records of votes and read marks. Never stored, logged or sent.
    pub token: String,
    allowed: PhantomData<R>,
}

impl<R> std::fmt::Debug for Session<R> {
    // The token is a secret, and who sends an anonymous item must not reach a log: only the
    // review is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("review", &self.review.id)
            .finish_non_exhaustive()
    }
}

impl<R: Requirement> FromRequestParts<Arc<ApiState>> for Session<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let ApiPath(ReviewId { id }) = ApiPath::from_request_parts(parts, state).await?;
        let token = bearer(&parts.headers);
        let (session, review) = state.reviews.authenticate(token, &id)?;
        let you = Session {
            session,
            review,
            token: token.unwrap_or_default().to_owned(),
            allowed: PhantomData,
        };
        R::check(state, &you)?;
        Ok(you)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_sent_twice_counts_as_none() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; debrief_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, "debrief_session"), Some("abc"));
        assert_eq!(cookie(&headers, "debrief"), None);
        headers.append(
            header::COOKIE,
            "debrief_session=planted".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, "debrief_session"), None);
        assert_eq!(cookie(&headers, "a"), Some("1"));
    }
}
