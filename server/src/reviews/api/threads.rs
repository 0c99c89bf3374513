//! `/api/reviews/{id}/threads`: signed comment threads in the review's discussion: starting one
//! (anchored to the report or general), replying, editing and deleting your own comments, and
//! resolving and reopening. Also the request shapes and checks anonymous threads share.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use debrief_proto::schema::DocKind;
use serde::Deserialize;
use serde_json::Value;

use super::documents::{in_phase, read_doc};
use super::request::{ApiPath, Comments, JsonBody, Session};
use super::state::ApiState;
use crate::error::ApiError;
use crate::reviews::policy::{self, Role};
use crate::reviews::problem::Problem;
use crate::reviews::report::{self, AnchorError};
use crate::reviews::sessions::SessionRecord;
use crate::reviews::threads::{self, Anchor, Author, MAX_QUOTE_CHARS};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnchorRequest {
    start: String,
    end: String,
    quote: String,
}

/// A new thread, named or anonymous.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThreadRequest {
    body: String,
    anchor: Option<AnchorRequest>,
}

/// A comment's text: a reply, an edit, a concern.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommentRequest {
    pub(super) body: String,
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

/// A new thread's checked text and anchor (named or anonymous alike).
pub(super) async fn thread_request(
    state: &ApiState,
    id: &str,
    req: ThreadRequest,
) -> Result<(String, Option<Anchor>), ApiError> {
    let text = threads::validate_body(&req.body)?;
    let anchor = match req.anchor {
        Some(a) => Some(anchor(state, id, a).await?),
        None => None,
    };
    Ok((text, anchor))
}

/// Runs a comment command of `commenter` on the review's discussion document, checking the phase
/// table again on the document's task (the phase may have moved since the request began).
async fn as_commenter<T, F>(
    state: &ApiState,
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
        &commenter.review,
        move |phase| policy::may_comment(role, phase).map_err(Problem::from),
        f,
    )
    .await
}

/// `POST /api/reviews/{id}/threads`: a new thread, anchored to the report or general.
pub(super) async fn add_thread(
    State(state): State<Arc<ApiState>>,
    you: Session<Comments>,
    JsonBody(req): JsonBody<ThreadRequest>,
) -> Result<Response, ApiError> {
    let id = you.review.id.clone();
    let (text, anchor) = thread_request(&state, &id, req).await?;
    let author = author(&you.session);
    let thread = as_commenter(&state, &you.session, move |doc| {
        threads::add_thread(doc, &author, &text, anchor.as_ref())
    })
    .await?;
    tracing::debug!(review = %id, "thread added");
    Ok((StatusCode::CREATED, Json(thread)).into_response())
}

/// `POST /api/reviews/{id}/threads/{thread}/comments`: a reply.
pub(super) async fn reply(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread)): ApiPath<(String, String)>,
    you: Session<Comments>,
    JsonBody(req): JsonBody<CommentRequest>,
) -> Result<Response, ApiError> {
    let text = threads::validate_body(&req.body)?;
    let author = author(&you.session);
    let comment = as_commenter(&state, &you.session, move |doc| {
        threads::reply(doc, &thread, &author, &text)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(comment)).into_response())
}

/// `PATCH /api/reviews/{id}/threads/{thread}/comments/{comment}`: edit your own comment.
pub(super) async fn edit(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread, comment)): ApiPath<(String, String, String)>,
    you: Session<Comments>,
    JsonBody(req): JsonBody<CommentRequest>,
) -> Result<Json<Value>, ApiError> {
    let text = threads::validate_body(&req.body)?;
    let participant = you.session.participant.clone();
    let comment = as_commenter(&state, &you.session, move |doc| {
        threads::edit(doc, &thread, &comment, &participant, &text)
    })
    .await?;
    Ok(Json(comment))
}

/// `DELETE /api/reviews/{id}/threads/{thread}/comments/{comment}`: delete your own comment.
pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread, comment)): ApiPath<(String, String, String)>,
    you: Session<Comments>,
) -> Result<StatusCode, ApiError> {
    let participant = you.session.participant.clone();
    as_commenter(&state, &you.session, move |doc| {
        threads::delete(doc, &thread, &comment, &participant)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_resolved(
    state: &ApiState,
    thread: String,
    you: &Session<Comments>,
    resolved: bool,
) -> Result<Json<Value>, ApiError> {
    let participant = you.session.participant.clone();
    let facilitator = you.session.role == Role::Facilitator;
    let view = as_commenter(state, &you.session, move |doc| {
        threads::set_resolved(doc, &thread, &participant, facilitator, resolved)
    })
    .await?;
    Ok(Json(view))
}

/// `POST /api/reviews/{id}/threads/{thread}/resolve`.
pub(super) async fn resolve(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread)): ApiPath<(String, String)>,
    you: Session<Comments>,
) -> Result<Json<Value>, ApiError> {
    set_resolved(&state, thread, &you, true).await
}

/// `POST /api/reviews/{id}/threads/{thread}/reopen`.
pub(super) async fn reopen(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread)): ApiPath<(String, String)>,
    you: Session<Comments>,
) -> Result<Json<Value>, ApiError> {
    set_resolved(&state, thread, &you, false).await
}
