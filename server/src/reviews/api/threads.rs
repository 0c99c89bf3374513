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
use utoipa::ToSchema;

use super::documents::{in_phase, read_doc};
use super::openapi::{self, said, AuthoredComment, Thread};
use super::request::{ApiPath, Comments, JsonBody, Session};
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::policy::{self, Role};
use crate::reviews::problem::Problem;
use crate::reviews::report::{self, AnchorError};
use crate::reviews::sessions::SessionRecord;
use crate::reviews::threads::{self, Anchor, Author, MAX_QUOTE_CHARS};

/// A passage of the report.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AnchorRequest {
    /// Base64 (standard alphabet, padded) of an encoded Yjs relative position in the report.
    #[schema(
        pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    )]
    start: String,
    /// Base64 (standard alphabet, padded) of an encoded Yjs relative position in the report.
    #[schema(
        pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    )]
    end: String,
    /// The quoted text, at most 500 characters.
    #[schema(max_length = 500)]
    quote: String,
}

/// A new thread, named or anonymous; `anchor` absent or null starts a general thread.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ThreadRequest {
    /// The first comment: not only whitespace, at most 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    body: String,
    anchor: Option<AnchorRequest>,
}

/// A comment's text: a reply, an edit, a concern.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CommentRequest {
    /// Not only whitespace, at most 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
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
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/threads",
    operation_id = "addThread",
    tag = "threads",
    summary = "Start a comment thread, anchored to a passage of the report or general.",
    description = "The session and the phase table are checked before the body is read.",
    params(openapi::ReviewIdParam),
    request_body = ThreadRequest,
    responses(
        (status = 201, description = "The new thread with its first comment.", body = Thread),
        (status = 400, description = said::BAD_THREAD, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`too_many_threads`: the review already holds 1,000 threads.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `body_too_long`: the comment is over 4,000 characters; `quote_too_long`: the anchor's \
            quote is over 500 characters; `document_too_large`: the review's discussion, or (for \
            an anchor) its report, is at its size limit: the server runs no more changes or checks \
            on it; `review_quota_exceeded`: the review's documents are at their storage quota (48 \
            MiB together, refused once less than 64 KiB is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 422, description = said::ANCHOR_NOT_IN_REPORT, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/threads/{thread}/comments",
    operation_id = "replyToThread",
    tag = "threads",
    summary = "Add a reply to a thread.",
    params(openapi::ReviewIdParam, openapi::ThreadIdParam),
    request_body = CommentRequest,
    responses(
        (status = 201, description = "The new comment.", body = AuthoredComment),
        (status = 400, description = said::BAD_COMMENT, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER, body = ErrorBody),
        (status = 404, description = said::NO_THREAD, body = ErrorBody),
        (
            status = 409,
            description = "`too_many_comments`: the thread already holds 500 comments.",
            body = ErrorBody,
        ),
        (status = 413, description = said::COMMENT_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    patch,
    path = "/api/reviews/{id}/threads/{thread}/comments/{comment}",
    operation_id = "editComment",
    tag = "threads",
    summary = "Replace the body of one of your own comments.",
    params(openapi::ReviewIdParam, openapi::ThreadIdParam, openapi::CommentIdParam),
    request_body = CommentRequest,
    responses(
        (
            status = 200,
            description = "The edited comment, with `editedAt`.",
            body = AuthoredComment,
        ),
        (status = 400, description = said::BAD_COMMENT, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            the phase table does not let this role comment in the review's phase (authors only in \
            draft; everyone but observers in review and meeting; nobody once closed); \
            `not_author`: only the comment's author can edit it (an anonymous comment is edited \
            with its key: `POST /api/reviews/{id}/anonymous/{item}/edit`).",
            body = ErrorBody,
        ),
        (status = 404, description = said::NO_COMMENT, body = ErrorBody),
        (status = 413, description = said::COMMENT_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    delete,
    path = "/api/reviews/{id}/threads/{thread}/comments/{comment}",
    operation_id = "deleteComment",
    tag = "threads",
    summary = "Delete one of your own comments: its body is emptied and it is marked deleted, \
    keeping its place.",
    params(openapi::ReviewIdParam, openapi::ThreadIdParam, openapi::CommentIdParam),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            the phase table does not let this role comment in the review's phase (authors only in \
            draft; everyone but observers in review and meeting; nobody once closed); \
            `not_author`: only the comment's author can delete it (an anonymous comment is \
            retracted with its key: `POST /api/reviews/{id}/anonymous/{item}/retract`).",
            body = ErrorBody,
        ),
        (status = 404, description = said::NO_COMMENT, body = ErrorBody),
        (status = 413, description = said::DISCUSSION_FULL, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/threads/{thread}/resolve",
    operation_id = "resolveThread",
    tag = "threads",
    summary = "Mark a thread resolved (its author or the facilitator).",
    description = said::TAKES_NO_BODY,
    params(openapi::ReviewIdParam, openapi::ThreadIdParam),
    responses(
        (status = 200, description = "The thread, now resolved.", body = Thread),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_RESOLVER, body = ErrorBody),
        (status = 404, description = said::NO_THREAD, body = ErrorBody),
        (status = 413, description = said::DISCUSSION_FULL, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn resolve(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread)): ApiPath<(String, String)>,
    you: Session<Comments>,
) -> Result<Json<Value>, ApiError> {
    set_resolved(&state, thread, &you, true).await
}

/// `POST /api/reviews/{id}/threads/{thread}/reopen`.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/threads/{thread}/reopen",
    operation_id = "reopenThread",
    tag = "threads",
    summary = "Reopen a resolved thread (its author or the facilitator).",
    description = said::TAKES_NO_BODY,
    params(openapi::ReviewIdParam, openapi::ThreadIdParam),
    responses(
        (status = 200, description = "The thread, now open.", body = Thread),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_RESOLVER, body = ErrorBody),
        (status = 404, description = said::NO_THREAD, body = ErrorBody),
        (status = 413, description = said::DISCUSSION_FULL, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn reopen(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, thread)): ApiPath<(String, String)>,
    you: Session<Comments>,
) -> Result<Json<Value>, ApiError> {
    set_resolved(&state, thread, &you, false).await
}
