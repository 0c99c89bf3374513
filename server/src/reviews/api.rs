//! The REST API of reviews under `/api` (described by `openapi.json`, served at
//! `/api/openapi.json`): creating and joining reviews, reading them, moving phases, rotating
//! invite links, and comment threads. Handlers parse and check input, ask [`super::Reviews`],
//! and write documents through the registry; every refusal is an [`ApiError`] with a stable code.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use base64::Engine;
use debrief_proto::schema::{document_name, DocKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::anonymous;
use super::basics::{now_ms, random_hex};
use super::fields::{validate_date, validate_severity, validate_title};
use super::report::{self, AnchorError};
use super::sessions::NewReview;
use super::threads::{self, Anchor, Author, MAX_QUOTE_CHARS};
use super::{policy, Phase, Problem, ProblemKind, ReviewRecord, Role, SessionRecord};
use crate::documents::doc::JobError;
use crate::documents::peer::Credential;
use crate::documents::registry::Registry;
use crate::error::ApiError;

pub use crate::limits::MAX_BODY_BYTES;

/// What the review API's handlers share: the review domain and the open documents.
#[derive(Debug)]
pub struct ApiState {
    /// Open documents.
    pub registry: Arc<Registry>,
    /// Reviews and sessions.
    pub reviews: Arc<super::Reviews>,
    /// The anonymous-item queue.
    pub anonymity: Arc<anonymous::Anonymity>,
    /// Pinned versions, read marks and the library.
    pub records: Arc<super::records::Records>,
    /// Secret needed to create a review, if any.
    pub creation_secret: Option<Credential>,
}

impl ApiState {
    /// What releasing held anonymous items needs.
    pub fn releases(&self) -> anonymous::Releases {
        anonymous::Releases {
            anonymity: self.anonymity.clone(),
            reviews: self.reviews.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// Largest body of `POST /api/reviews`, which may carry a Markdown report to import of up to
/// [`MAX_IMPORT_BYTES`]: twice that leaves room for JSON escapes (newlines, quotes) of a real
/// report. Creating reviews is rate-limited server-wide, so few such bodies are read at once.
pub const MAX_CREATE_BODY_BYTES: usize = 1024 * 1024;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Routes under `/api`, with their state.
pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route(
            "/api/reviews",
            post(create).layer(DefaultBodyLimit::max(MAX_CREATE_BODY_BYTES)),
        )
        .route("/api/join", post(join))
        .route("/api/reviews/{id}", get(read))
        .route("/api/reviews/{id}/phase", post(move_phase))
        .route("/api/reviews/{id}/invites/{role}", post(rotate))
        .route("/api/reviews/{id}/threads", post(add_thread))
        .route("/api/reviews/{id}/threads/{thread}/comments", post(reply))
        .route(
            "/api/reviews/{id}/threads/{thread}/comments/{comment}",
            patch(edit).delete(delete),
        )
        .route("/api/reviews/{id}/threads/{thread}/resolve", post(resolve))
        .route("/api/reviews/{id}/threads/{thread}/reopen", post(reopen))
        .route(
            "/api/reviews/{id}/anonymous/threads",
            post(anonymous_thread),
        )
        .route(
            "/api/reviews/{id}/anonymous/threads/{thread}/comments",
            post(anonymous_reply),
        )
        .route("/api/reviews/{id}/concerns", post(raise_concern))
        .route(
            "/api/reviews/{id}/concerns/{concern}/support",
            post(support),
        )
        .route(
            "/api/reviews/{id}/concerns/{concern}/discussed",
            post(discussed),
        )
        .route("/api/reviews/{id}/anonymous/pending", post(pending))
        .route(
            "/api/reviews/{id}/anonymous/{item}/edit",
            post(anonymous_edit),
        )
        .route(
            "/api/reviews/{id}/anonymous/{item}/retract",
            post(anonymous_retract),
        )
        .route("/api/reviews/{id}/moderation/hide", post(hide))
        .merge(super::api_meeting::routes())
        .layer(axum::middleware::from_fn(json_bodies_only))
        .with_state(state)
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        let status = match p.kind {
            ProblemKind::BadInput => StatusCode::BAD_REQUEST,
            ProblemKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::Conflict => StatusCode::CONFLICT,
            ProblemKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let e = ApiError::new(status, p.code, p.message);
        match p.retry_after {
            Some(wait) => e.retry_after(wait),
            None => e,
        }
    }
}

/// The address a request came from (the proxy's, behind a proxy), for the limits on guessing
/// and flooding; unspecified when the server runs without connection info. Never stored or
/// logged.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        ))
    }
}

/// Refuses a request body that is not declared JSON (415 `unsupported_media_type`): every body
/// the API takes is JSON, and a browser sends a cross-site form (`text/plain`,
/// `application/x-www-form-urlencoded`) without asking the server first. Requests without a body
/// need no type.
async fn json_bodies_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
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

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "document_unavailable",
                "the document cannot be changed right now; try again",
            ),
            JobError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "document_too_large",
                "the review's discussion is at its size limit",
            ),
            JobError::QuotaExceeded => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::documents::quota::CODE,
                "the review's documents are at their storage quota; they can still be read",
            ),
        }
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(super) type Body = Result<Bytes, BytesRejection>;

/// Parses a JSON body of at most [`MAX_BODY_BYTES`], answering every failure with a JSON error.
pub(super) fn parse<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    parse_within(body, MAX_BODY_BYTES)
}

/// Parses a JSON body read under the route's limit `max` (named in the error).
fn parse_within<T: DeserializeOwned>(body: Body, max: usize) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body could not be read (at most {max} bytes): {e}"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid: {e}"),
        )
    })
}

pub(super) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

pub(super) fn session(
    state: &ApiState,
    headers: &HeaderMap,
    review: &str,
) -> Result<(SessionRecord, ReviewRecord), ApiError> {
    Ok(state.reviews.authenticate(bearer(headers), review)?)
}

pub(super) fn documents(id: &str) -> Value {
    json!({
        "report": document_name(id, DocKind::Report),
        "discussion": document_name(id, DocKind::Discussion),
        "notes": document_name(id, DocKind::Notes),
    })
}

pub(super) fn review_view(
    state: &ApiState,
    review: &ReviewRecord,
    you: Option<&SessionRecord>,
) -> Value {
    let counts = state.reviews.counts(&review.id);
    let participants: serde_json::Map<String, Value> = Role::ALL
        .into_iter()
        .map(|r| {
            (
                r.as_str().to_owned(),
                json!(counts.get(&r).copied().unwrap_or(0)),
            )
        })
        .collect();
    let mut v = json!({
        "id": review.id,
        "title": review.title,
        "incident_date": review.incident_date,
        "severity": review.severity,
        "phase": review.phase.as_str(),
        "created_at": review.created_at,
        "participants": participants,
        "documents": documents(&review.id),
        "anonymous": {
            "release": review.release.as_str(),
            "cadence_ms": state.anonymity.cadence().as_millis() as u64,
            "small_group_anonymity": review.small_group_anonymity,
        },
        "read_count": state.records.published_read_count(&review.id),
        "server_time": now_ms(),
    });
    if let Some(s) = you {
        v["you"] = json!({ "role": s.role.as_str(), "participant": s.participant, "name": s.name });
    }
    v
}

fn invite(token: &str) -> Value {
    json!({ "token": token, "link": format!("/join#{token}") })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    title: String,
    incident_date: Option<String>,
    severity: Option<String>,
    anonymous_release: Option<String>,
    small_group_anonymity: Option<bool>,
    report_markdown: Option<String>,
}

/// Largest Markdown report accepted at creation: a long post-mortem is tens of kilobytes.
pub const MAX_IMPORT_BYTES: usize = 512 * 1024;

/// `POST /api/reviews`: creates a review, seeds its documents, returns the invite links.
async fn create(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(secret) = &state.creation_secret {
        state.reviews.guards.may_try_secret(addr)?;
        let given = bearer(&headers).unwrap_or("");
        if !crate::documents::access::same_secret(secret.expose(), given) {
            if let Some(limited) = state.reviews.guards.wrong_secret(addr) {
                return Err(limited.into());
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "creation_not_allowed",
                "creating a review needs the server's creation secret as `Authorization: Bearer <secret>`",
            ));
        }
    }
    let req: CreateRequest = parse_within(body, MAX_CREATE_BODY_BYTES)?;
    let new = NewReview {
        title: validate_title(&req.title)?,
        incident_date: req
            .incident_date
            .as_deref()
            .map(validate_date)
            .transpose()?,
        severity: req.severity.as_deref().map(validate_severity).transpose()?,
        release: match req.anonymous_release.as_deref() {
            None | Some("batch") => super::ReleaseMode::Batch,
            Some("meeting") => super::ReleaseMode::Meeting,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_release",
                    "anonymous_release is \"batch\" (at a fixed cadence) or \"meeting\" (when the meeting starts)",
                ))
            }
        },
        small_group_anonymity: req.small_group_anonymity.unwrap_or(false),
    };
    if req
        .report_markdown
        .as_ref()
        .is_some_and(|md| md.len() > MAX_IMPORT_BYTES)
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "report_too_large",
            format!("a Markdown report is at most {MAX_IMPORT_BYTES} bytes"),
        ));
    }
    state.reviews.guards.may_create(addr)?;
    let id = super::Reviews::new_id();
    // The documents exist before the review does: a crash in between leaves unreachable
    // documents, never a review with an empty report.
    let title = new.title.clone();
    let report = match req.report_markdown {
        Some(md) if md.len() > MAX_IMPORT_BYTES => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "report_too_large",
                format!("a Markdown report is at most {MAX_IMPORT_BYTES} bytes"),
            ))
        }
        Some(md) => {
            state
                .registry
                .open(&document_name(&id, DocKind::Report))
                .run(move |doc| match super::markdown::import(doc, &md) {
                    Ok(update) => (Ok(()), Some(update)),
                    Err(_) => (Err(()), None),
                })
                .await?
        }
        None => {
            state
                .registry
                .open(&document_name(&id, DocKind::Report))
                .run(move |doc| (Ok(()), Some(report::seed(doc, &title))))
                .await?
        }
    };
    if report.is_err() {
        return Err(ApiError::bad_request(
            "invalid_markdown",
            "the Markdown report nests deeper than 32 levels",
        ));
    }
    let title = new.title.clone();
    state
        .registry
        .open(&document_name(&id, DocKind::Discussion))
        .run(move |doc| ((), Some(threads::seed(doc, &title, Phase::Draft.as_str()))))
        .await?;
    let created = state.reviews.insert(id, new).await?;
    tracing::info!(review = %created.review.id, "review created");
    let invites: serde_json::Map<String, Value> = created
        .invites
        .iter()
        .map(|(role, token)| (role.as_str().to_owned(), invite(token)))
        .collect();
    let body = json!({
        "review": review_view(&state, &created.review, None),
        "invites": invites,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    invite: String,
    name: String,
}

/// `POST /api/join`: exchanges an invite token and a display name for a session.
async fn join(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    body: Body,
) -> Result<Response, ApiError> {
    state.reviews.guards.may_join(addr)?;
    let req: JoinRequest = parse(body)?;
    let joined = state.reviews.join(req.invite.trim(), &req.name).await;
    if joined.as_ref().is_err_and(|p| p.code == "invalid_invite") {
        if let Some(limited) = state.reviews.guards.wrong_invite(addr) {
            return Err(limited.into());
        }
    }
    let (session, review, token) = joined?;
    tracing::info!(review = %review.id, role = session.role.as_str(), "joined");
    let people: usize = state.reviews.counts(&review.id).values().sum();
    // The live headcount others see (read count "7 of 9"); the join stands even if this fails.
    let counted = on_discussion(&state, &review.id, move |doc| {
        super::meeting::people(doc, people)
    })
    .await;
    if counted.is_err() {
        tracing::warn!(review = %review.id, "could not update the headcount");
    }
    let body = json!({
        "session": token,
        "review": review_view(&state, &review, Some(&session)),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/reviews/{id}`.
async fn read(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let (session, review) = session(&state, &headers, &id)?;
    Ok(Json(review_view(&state, &review, Some(&session))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseRequest {
    phase: String,
}

/// `POST /api/reviews/{id}/phase`: the facilitator moves the review to its next phase; open
/// connections get their new access at once.
async fn move_phase(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let (session, _) = session(&state, &headers, &id)?;
    let req: PhaseRequest = parse(body)?;
    let Some(to) = Phase::ALL.into_iter().find(|p| p.as_str() == req.phase) else {
        return Err(ApiError::bad_request(
            "invalid_phase",
            "the phase is one of draft, review, meeting, closed",
        ));
    };
    // One move at a time, so the discussion's copy of the phase is written in the same order
    // as the phase itself.
    let _one_move = state.reviews.phase_lock(&id).await;
    let moved = state.reviews.set_phase(&session, to).await;
    // Once the phase changed in memory (even if making it durable failed), open sockets follow
    // it at once; deciding again is harmless when nothing changed.
    reauthorize(&state, &id).await;
    let (review, changed) = moved?;
    if !changed && to == Phase::Draft {
        // Nothing ever follows from being in draft.
        return Ok(Json(review_view(&state, &review, Some(&session))));
    }
    if changed {
        tracing::info!(review = %id, phase = to.as_str(), "phase changed");
    }
    // What follows from the move is safe to repeat, so a retry after a failure completes it: the
    // discussion's copy of the phase, held anonymous items due now, and the pinned version
    // (kept once). These writes are essential: they pass even a full discussion.
    state
        .registry
        .open(&document_name(&id, DocKind::Discussion))
        .run_essential(move |doc| threads::set_phase(doc, to.as_str()))
        .await?
        .map_err(ApiError::from)?;
    let due = to == Phase::Closed
        || (to == Phase::Meeting && review.release == super::ReleaseMode::Meeting);
    if due {
        // The meeting start (in meeting mode) and the close are release boundaries: nothing
        // held is left behind the record.
        let at = state.anonymity.boundary_at(now_ms());
        anonymous::release(&state.releases(), at, Some(&id), to == Phase::Closed).await;
    }
    super::api_meeting::pin_version(&state, &id, to).await?;
    Ok(Json(review_view(&state, &review, Some(&session))))
}

/// Reads one of a review's documents on its owner's task.
pub(super) async fn read_doc<T, F>(
    state: &ApiState,
    review: &str,
    kind: DocKind,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> T + Send + 'static,
{
    Ok(state
        .registry
        .open(&document_name(review, kind))
        .read(f)
        .await?)
}

/// The facilitator's session of review `id`, or the refusal.
pub(super) fn facilitator(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(SessionRecord, ReviewRecord), ApiError> {
    let (session, review) = session(state, headers, id)?;
    policy::may_facilitate(session.role)
        .map_err(|r| Problem::new(ProblemKind::Forbidden, r.code, r.message))?;
    Ok((session, review))
}

/// Tells every open document of a review to decide its connections' access again.
pub(super) async fn reauthorize(state: &ApiState, review: &str) {
    for kind in DocKind::ALL {
        if let Some(handle) = state.registry.get(&document_name(review, kind)) {
            handle.reauthorize().await;
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default)]
    revoke_sessions: bool,
}

/// `POST /api/reviews/{id}/invites/{role}`: replaces a role's invite link.
async fn rotate(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (id, role) = path(p)?;
    let (session, _) = session(&state, &headers, &id)?;
    let Some(role) = Role::parse(&role) else {
        return Err(ApiError::bad_request(
            "invalid_role",
            "the role is one of facilitator, author, participant, observer",
        ));
    };
    let req: RotateRequest = match body {
        Ok(b) if b.is_empty() => RotateRequest::default(),
        other => parse(other)?,
    };
    let rotated = state
        .reviews
        .rotate(&session, role, req.revoke_sessions)
        .await;
    if req.revoke_sessions {
        reauthorize(&state, &id).await;
    }
    let token = rotated?;
    tracing::info!(review = %id, role = role.as_str(), "invite link rotated");
    Ok(Json(
        json!({ "role": role.as_str(), "invite": invite(&token) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorRequest {
    start: String,
    end: String,
    quote: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThreadRequest {
    body: String,
    anchor: Option<AnchorRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentRequest {
    body: String,
}

/// The session of a comment command, once the phase table allows commenting.
fn commenter(
    state: &ApiState,
    headers: &HeaderMap,
    review: &str,
) -> Result<SessionRecord, ApiError> {
    let (session, review) = session(state, headers, review)?;
    policy::may_comment(session.role, review.phase)
        .map_err(|r| Problem::new(ProblemKind::Forbidden, r.code, r.message))?;
    Ok(session)
}

fn author(session: &SessionRecord) -> Author {
    Author {
        participant: session.participant.clone(),
        name: session.name.clone(),
    }
}

/// Decodes and checks an anchor against the report.
async fn anchor(state: &ApiState, review: &str, req: AnchorRequest) -> Result<Anchor, ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let malformed = || {
        ApiError::bad_request(
            "invalid_anchor",
            "anchor.start and anchor.end are base64 of encoded Yjs relative positions",
        )
    };
    let start = b64.decode(req.start.as_bytes()).map_err(|_| malformed())?;
    let end = b64.decode(req.end.as_bytes()).map_err(|_| malformed())?;
    if req.quote.chars().count() > MAX_QUOTE_CHARS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "quote_too_long",
            format!("a quote is at most {MAX_QUOTE_CHARS} characters"),
        ));
    }
    let checked = read_doc(state, review, DocKind::Report, move |doc| {
        report::check_anchor(doc, &start, &end)
    })
    .await?;
    match checked {
        Ok(()) => Ok(Anchor {
            start: req.start,
            end: req.end,
            quote: req.quote,
        }),
        Err(AnchorError::Malformed) => Err(malformed()),
        Err(AnchorError::NotInReport) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "anchor_not_in_report",
            "the anchor does not point into this review's report",
        )),
    }
}

/// Runs a comment command of `commenter` on the review's discussion document, checking the phase
/// table again on the document's task (the phase may have moved since the request began).
async fn as_commenter<T, F>(
    state: &ApiState,
    review: &str,
    commenter: &SessionRecord,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> threads::Outcome<T> + Send + 'static,
{
    let role = commenter.role;
    in_phase(
        state,
        review,
        move |phase| {
            policy::may_comment(role, phase)
                .map_err(|r| Problem::new(ProblemKind::Forbidden, r.code, r.message))
        },
        f,
    )
    .await
}

/// Runs a command on the discussion document once `allowed` accepts the review's phase as it is
/// on the document's task, so that a concurrent phase move cannot let a late command in.
pub(super) async fn in_phase<T, F, A>(
    state: &ApiState,
    review: &str,
    allowed: A,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> threads::Outcome<T> + Send + 'static,
    A: FnOnce(Phase) -> Result<(), Problem> + Send + 'static,
{
    let reviews = state.reviews.clone();
    let id = review.to_owned();
    on_discussion(state, review, move |doc| match reviews.phase(&id) {
        Some(phase) => match allowed(phase) {
            Ok(()) => f(doc),
            Err(p) => (Err(p), None),
        },
        None => (
            Err(Problem::new(
                ProblemKind::NotFound,
                "unknown_review",
                "the review is gone",
            )),
            None,
        ),
    })
    .await
}

/// Runs a thread command on the review's discussion document.
pub(super) async fn on_discussion<T, F>(state: &ApiState, review: &str, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> threads::Outcome<T> + Send + 'static,
{
    let result = state
        .registry
        .open(&document_name(review, DocKind::Discussion))
        .run(move |doc| {
            let (result, update) = f(doc);
            // A refused command changed nothing.
            let update = if result.is_ok() { update } else { None };
            (result, update)
        })
        .await?;
    Ok(result?)
}

/// A new thread's checked text and anchor (named or anonymous alike).
async fn thread_request(
    state: &ApiState,
    id: &str,
    body: Body,
) -> Result<(String, Option<Anchor>), ApiError> {
    let req: ThreadRequest = parse(body)?;
    let text = threads::validate_body(&req.body)?;
    let anchor = match req.anchor {
        Some(a) => Some(anchor(state, id, a).await?),
        None => None,
    };
    Ok((text, anchor))
}

/// `POST /api/reviews/{id}/threads`: a new thread, anchored to the report or general.
async fn add_thread(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let session = commenter(&state, &headers, &id)?;
    let (text, anchor) = thread_request(&state, &id, body).await?;
    let author = author(&session);
    let thread = as_commenter(&state, &id, &session, move |doc| {
        threads::add_thread(doc, &author, &text, anchor.as_ref())
    })
    .await?;
    tracing::debug!(review = %id, "thread added");
    Ok((StatusCode::CREATED, Json(thread)).into_response())
}

/// `POST /api/reviews/{id}/threads/{thread}/comments`: a reply.
async fn reply(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, thread) = path(p)?;
    let session = commenter(&state, &headers, &id)?;
    let req: CommentRequest = parse(body)?;
    let text = threads::validate_body(&req.body)?;
    let author = author(&session);
    let comment = as_commenter(&state, &id, &session, move |doc| {
        threads::reply(doc, &thread, &author, &text)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(comment)).into_response())
}

/// `PATCH /api/reviews/{id}/threads/{thread}/comments/{comment}`: edit your own comment.
async fn edit(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (id, thread, comment) = path(p)?;
    let session = commenter(&state, &headers, &id)?;
    let req: CommentRequest = parse(body)?;
    let text = threads::validate_body(&req.body)?;
    let participant = session.participant.clone();
    let comment = as_commenter(&state, &id, &session, move |doc| {
        threads::edit(doc, &thread, &comment, &participant, &text)
    })
    .await?;
    Ok(Json(comment))
}

/// `DELETE /api/reviews/{id}/threads/{thread}/comments/{comment}`: delete your own comment.
async fn delete(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (id, thread, comment) = path(p)?;
    let session = commenter(&state, &headers, &id)?;
    let participant = session.participant.clone();
    as_commenter(&state, &id, &session, move |doc| {
        threads::delete(doc, &thread, &comment, &participant)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_resolved(
    state: &ApiState,
    headers: &HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    resolved: bool,
) -> Result<Json<Value>, ApiError> {
    let (id, thread) = path(p)?;
    let session = commenter(state, headers, &id)?;
    let participant = session.participant.clone();
    let facilitator = session.role == Role::Facilitator;
    let view = as_commenter(state, &id, &session, move |doc| {
        threads::set_resolved(doc, &thread, &participant, facilitator, resolved)
    })
    .await?;
    Ok(Json(view))
}

/// `POST /api/reviews/{id}/threads/{thread}/resolve`.
async fn resolve(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_resolved(&state, &headers, p, true).await
}

/// `POST /api/reviews/{id}/threads/{thread}/reopen`.
async fn reopen(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_resolved(&state, &headers, p, false).await
}

/// Holds a new anonymous item (once its thread or board has room) and answers with its key.
async fn hold_new(
    state: &ApiState,
    sender: &Sender,
    op: threads::AnonOp,
    item: threads::Item,
) -> Result<Response, ApiError> {
    room(state, &sender.review.id, &op).await?;
    let receipt = state
        .anonymity
        .hold_new(&sender.review.id, &sender.token, op, item.clone())
        .await?;
    Ok(held_reply(state, &sender.review, receipt, Some(item)))
}

/// Refuses a new anonymous item when its thread or board is already full.
async fn room(state: &ApiState, id: &str, op: &threads::AnonOp) -> Result<(), ApiError> {
    let probe = op.clone();
    let fits = read_doc(state, id, DocKind::Discussion, move |doc| {
        threads::room_for(doc, &probe)
    })
    .await?;
    if fits {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "discussion_full",
            "this review holds as many threads, comments or concerns as it can",
        ))
    }
}

/// The answer to an anonymous submission: nothing about who sent it, only when it will appear
/// (at the earliest, and at the latest if it waits for others' items), and the receipt to ask
/// again. A new item also gets its key.
fn held_reply(
    state: &ApiState,
    review: &ReviewRecord,
    receipt: anonymous::Receipt,
    item: Option<threads::Item>,
) -> Response {
    let (release_after, release_by) = match state.anonymity.release_times(review, 0) {
        Some((after, by)) => (json!(after), json!(by)),
        None => (Value::Null, Value::Null),
    };
    let mut body = json!({
        "release": review.release.as_str(),
        "release_after": release_after,
        "release_by": release_by,
        "receipt": receipt.receipt,
    });
    if let (Some(item), Some(key)) = (item, receipt.key) {
        body["item"] = json!(item);
        body["key"] = json!(key);
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Who sends an anonymous submission, in memory for the length of the request only.
struct Sender {
    review: ReviewRecord,
    /// The session token: counts the submission against the rate limit and the batch's mix of
    /// people, and makes the vote record. Never stored, logged or sent.
    token: String,
}

/// The session and review of an anonymous submission, once the phase table, the size of the
/// group and the rate limit allow it. Nothing about the session is logged.
fn anonymous_sender(
    state: &ApiState,
    headers: &HeaderMap,
    review: &str,
) -> Result<Sender, ApiError> {
    let (session, review) = session(state, headers, review)?;
    policy::may_comment(session.role, review.phase)
        .map_err(|r| Problem::new(ProblemKind::Forbidden, r.code, r.message))?;
    anonymous::Anonymity::enough_posters(&review, &state.reviews.counts(&review.id))?;
    let token = bearer(headers).unwrap_or_default().to_owned();
    state.anonymity.rate_limit(&token)?;
    Ok(Sender { review, token })
}

/// `POST /api/reviews/{id}/anonymous/threads`: an anonymous comment, held until its release.
async fn anonymous_thread(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let sender = anonymous_sender(&state, &headers, &id)?;
    let (text, anchor) = thread_request(&state, &id, body).await?;
    let (thread, comment) = (random_hex(8), random_hex(8));
    let item = threads::Item::Comment {
        thread: thread.clone(),
        comment: comment.clone(),
    };
    let op = threads::AnonOp::Thread {
        thread,
        comment,
        body: text,
        anchor,
    };
    hold_new(&state, &sender, op, item).await
}

/// `POST /api/reviews/{id}/anonymous/threads/{thread}/comments`: an anonymous reply.
async fn anonymous_reply(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, thread) = path(p)?;
    let sender = anonymous_sender(&state, &headers, &id)?;
    let req: CommentRequest = parse(body)?;
    let text = threads::validate_body(&req.body)?;
    let probe = thread.clone();
    let exists = read_doc(&state, &id, DocKind::Discussion, move |doc| {
        threads::thread_exists(doc, &probe)
    })
    .await?;
    if !exists {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_thread",
            "this review has no such thread",
        ));
    }
    let comment = random_hex(8);
    let item = threads::Item::Comment {
        thread: thread.clone(),
        comment: comment.clone(),
    };
    let op = threads::AnonOp::Reply {
        thread,
        comment,
        body: text,
    };
    hold_new(&state, &sender, op, item).await
}

/// `POST /api/reviews/{id}/concerns`: a concern for the board; always anonymous.
async fn raise_concern(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let sender = anonymous_sender(&state, &headers, &id)?;
    let req: CommentRequest = parse(body)?;
    let text = threads::validate_body(&req.body)?;
    let concern = random_hex(8);
    let item = threads::Item::Concern {
        concern: concern.clone(),
    };
    let op = threads::AnonOp::Concern {
        concern,
        body: text,
    };
    hold_new(&state, &sender, op, item).await
}

/// `POST /api/reviews/{id}/concerns/{concern}/support`: one vote per session, counted at the
/// next release.
async fn support(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, concern) = path(p)?;
    let sender = anonymous_sender(&state, &headers, &id)?;
    let probe = concern.clone();
    let exists = read_doc(&state, &id, DocKind::Discussion, move |doc| {
        threads::concern_exists(doc, &probe)
    })
    .await?;
    if !exists {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_concern",
            "this review has no such concern",
        ));
    }
    let receipt = state
        .anonymity
        .hold_vote(&id, &sender.token, &concern)
        .await?;
    Ok(held_reply(&state, &sender.review, receipt, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyedEdit {
    key: String,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keyed {
    key: String,
}

/// The item a key unlocks, if it still exists (held or released).
async fn unlocked(
    state: &ApiState,
    review: &str,
    item_id: &str,
    key: &str,
) -> Result<threads::Item, ApiError> {
    let item = state.anonymity.unlock(review, item_id, key)?;
    if state.anonymity.is_held(review, &item) {
        return Ok(item);
    }
    let probe = item.clone();
    let exists = read_doc(state, review, DocKind::Discussion, move |doc| {
        threads::item_exists(doc, &probe)
    })
    .await?;
    if !exists {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_item",
            "this anonymous item is gone (retracted or hidden)",
        ));
    }
    Ok(item)
}

/// `POST /api/reviews/{id}/anonymous/{item}/edit`: new text, with the item's key.
async fn anonymous_edit(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, item_id) = path(p)?;
    let sender = anonymous_sender(&state, &headers, &id)?;
    let req: KeyedEdit = parse(body)?;
    let text = threads::validate_body(&req.body)?;
    let item = unlocked(&state, &id, &item_id, &req.key).await?;
    let receipt = state
        .anonymity
        .hold_edit(&id, &sender.token, item, text)
        .await?;
    Ok(held_reply(&state, &sender.review, receipt, None))
}

/// `POST /api/reviews/{id}/anonymous/{item}/retract`: takes an item back, with its key.
async fn anonymous_retract(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, item_id) = path(p)?;
    let sender = anonymous_sender(&state, &headers, &id)?;
    let req: Keyed = parse(body)?;
    let item = unlocked(&state, &id, &item_id, &req.key).await?;
    let receipt = state
        .anonymity
        .hold_retract(&id, &sender.token, item)
        .await?;
    Ok(held_reply(&state, &sender.review, receipt, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingRequest {
    receipts: Vec<String>,
}

/// Receipts one request may ask about: far more than one person submits between releases.
const MAX_RECEIPTS: usize = 100;

/// `POST /api/reviews/{id}/anonymous/pending`: when the submissions of these receipts will
/// appear, for those still held (a receipt not listed was released). Only the submitting browser
/// has its receipts, so the answer tells nobody else anything.
async fn pending(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let (_, review) = session(&state, &headers, &id)?;
    let req: PendingRequest = parse(body)?;
    if req.receipts.len() > MAX_RECEIPTS {
        return Err(ApiError::bad_request(
            "too_many_receipts",
            format!("ask about at most {MAX_RECEIPTS} receipts at once"),
        ));
    }
    let pending: Vec<Value> = state
        .anonymity
        .pending(&review, &req.receipts)
        .into_iter()
        .map(|(receipt, times)| {
            let (after, by) =
                times.map_or((Value::Null, Value::Null), |(a, b)| (json!(a), json!(b)));
            json!({ "receipt": receipt, "release_after": after, "release_by": by })
        })
        .collect();
    Ok(Json(json!({ "pending": pending })))
}

/// `POST /api/reviews/{id}/moderation/hide`: the facilitator hides an anonymous item for
/// everyone, learning nothing about its author.
async fn hide(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    facilitator(&state, &headers, &id)?;
    let item: threads::Item = parse(body)?;
    let hidden = state
        .registry
        .open(&document_name(&id, DocKind::Discussion))
        .run_essential(move |doc| threads::hide(doc, &item))
        .await?;
    hidden?;
    // A published review must not keep what was just hidden.
    super::api_meeting::refresh_library(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscussedRequest {
    discussed: bool,
}

/// `POST /api/reviews/{id}/concerns/{concern}/discussed`: the facilitator ticks a concern off.
async fn discussed(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (id, concern) = path(p)?;
    facilitator(&state, &headers, &id)?;
    let req: DiscussedRequest = parse(body)?;
    on_discussion(&state, &id, move |doc| {
        threads::set_discussed(doc, &concern, req.discussed)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
