//! Anonymous items over REST: anonymous threads and replies, concerns and support for them,
//! edits and retractions with an item's key, when held submissions will appear, and the
//! facilitator's moderation (hiding an item, ticking a concern off), which learns nothing about
//! who wrote what.
//!
//! Every submission answers 202 with when it will appear, never with anything about its
//! sender: the session is only checked and counted ([`PostsAnonymously`]), never stored, logged
//! or sent (`docs/anonymity.md`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use debrief_proto::schema::{document_name, DocKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::documents::{on_discussion, read_doc};
use super::openapi::{self, said};
use super::records::refresh_library;
use super::request::{ApiPath, Facilitates, JsonBody, Member, PostsAnonymously, Session};
use super::state::ApiState;
use super::threads::{thread_request, CommentRequest, ThreadRequest};
use crate::error::{ApiError, ErrorBody};
use crate::reviews::anonymous::Receipt;
use crate::reviews::basics::random_hex;
use crate::reviews::policy::ReleaseMode;
use crate::reviews::sessions::ReviewRecord;
use crate::reviews::threads::{self, AnonOp, Item};

/// A held submission asked about, with when it will appear (null like [`Held`]'s times).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PendingReceipt {
    /// One of the receipts asked about.
    receipt: String,
    /// The next release boundary, milliseconds since the Unix epoch: the earliest the submission
    /// appears. Null while a review whose release is `meeting` has not reached its meeting.
    #[schema(required = true)]
    release_after: Option<u64>,
    /// The latest it appears: a batch only one person contributed to waits for someone else's
    /// items for up to ten boundaries (equal to `release_after` in a review that allows small
    /// groups). Null like `release_after`.
    #[schema(required = true)]
    release_by: Option<u64>,
}

/// The receipts whose submissions are still held; a receipt not listed was released.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PendingResponse {
    /// The receipts whose submissions are still held, with when they will appear; a receipt not
    /// listed was released (or is unknown).
    pending: Vec<PendingReceipt>,
}

/// Receipts one request may ask about: far more than one person submits between releases.
const MAX_RECEIPTS: usize = 100;

/// Holds a new anonymous item (once its thread or board has room) and answers with its key.
async fn hold_new(
    state: &ApiState,
    sender: &Session<PostsAnonymously>,
    op: AnonOp,
    item: Item,
) -> Result<Response, ApiError> {
    room(state, &sender.review.id, &op).await?;
    let receipt = state
        .anonymity
        .hold_new(&sender.review.id, &sender.token, op, item.clone())
        .await?;
    let key = receipt.key.clone();
    let held = held(state, &sender.review, receipt);
    // An item and its key go together: a new item always has both.
    let Some(key) = key else {
        return Ok((StatusCode::ACCEPTED, Json(held)).into_response());
    };
    let body = HeldItem {
        release: held.release,
        release_after: held.release_after,
        release_by: held.release_by,
        receipt: held.receipt,
        item,
        key,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Refuses a new anonymous item when its thread or board is already full.
async fn room(state: &ApiState, id: &str, op: &AnonOp) -> Result<(), ApiError> {
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

/// Refuses with 404 `code` unless `exists` finds what the request names in the review's
/// discussion document.
async fn found<F>(
    state: &ApiState,
    review: &str,
    exists: F,
    code: &'static str,
    message: &'static str,
) -> Result<(), ApiError>
where
    F: FnOnce(&yrs::Doc) -> bool + Send + 'static,
{
    if read_doc(state, review, DocKind::Discussion, exists).await? {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, code, message))
    }
}

/// The answer to an anonymous submission: nothing about who sent it, only when it will appear
/// (at the earliest, and at the latest if it waits for others' items; both null while a review
/// that releases at the meeting has not reached it), and the receipt to ask again.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Held {
    release: ReleaseMode,
    /// The next release boundary, milliseconds since the Unix epoch: the earliest the submission
    /// appears. Null while a review whose release is `meeting` has not reached its meeting.
    #[schema(required = true)]
    release_after: Option<u64>,
    /// The latest it appears: a batch only one person contributed to waits for someone else's
    /// items for up to ten boundaries (equal to `release_after` in a review that allows small
    /// groups). Null like `release_after`.
    #[schema(required = true)]
    release_by: Option<u64>,
    /// A random receipt (the only copy): `POST /api/reviews/{id}/anonymous/pending` with it
    /// tells when the submission will appear. Only its hash is held, with the submission, until
    /// the release.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    receipt: String,
}

/// The answer to a new anonymous item: [`Held`]'s fields, where the item will be, and its key.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HeldItem {
    release: ReleaseMode,
    /// The next release boundary, milliseconds since the Unix epoch: the earliest the submission
    /// appears. Null while a review whose release is `meeting` has not reached its meeting.
    #[schema(required = true)]
    release_after: Option<u64>,
    /// The latest it appears: a batch only one person contributed to waits for someone else's
    /// items for up to ten boundaries (equal to `release_after` in a review that allows small
    /// groups). Null like `release_after`.
    #[schema(required = true)]
    release_by: Option<u64>,
    /// A random receipt (the only copy): `POST /api/reviews/{id}/anonymous/pending` with it
    /// tells when the submission will appear. Only its hash is held, with the submission, until
    /// the release.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    receipt: String,
    item: Item,
    /// The item's key (256 random bits as hex; the only copy), to edit or retract it.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    key: String,
}

fn held(state: &ApiState, review: &ReviewRecord, receipt: Receipt) -> Held {
    let (release_after, release_by) = state.anonymity.release_times(review, 0).unzip();
    Held {
        release: review.release,
        release_after,
        release_by,
        receipt: receipt.receipt,
    }
}

fn held_reply(state: &ApiState, review: &ReviewRecord, receipt: Receipt) -> Response {
    (StatusCode::ACCEPTED, Json(held(state, review, receipt))).into_response()
}

/// `POST /api/reviews/{id}/anonymous/threads`: an anonymous comment, held until its release.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/anonymous/threads",
    operation_id = "addAnonymousThread",
    tag = "anonymous",
    summary = "Start a thread with an anonymous comment, anchored to a passage of the report or \
    general; held until its release.",
    description = said::ANONYMOUS_CHECKS,
    params(openapi::ReviewIdParam),
    request_body = ThreadRequest,
    responses(
        (status = 202, description = said::HELD_NEW_ITEM, body = HeldItem),
        (status = 400, description = said::BAD_THREAD, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`too_few_for_anonymity`: fewer than three people may post anonymously in \
            this review's phase and its facilitator did not allow small groups at creation; \
            `discussion_full`: the review already holds 1,000 threads (items still held are not \
            counted); `too_many_held`: many anonymous items of this review are waiting for their \
            release.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `body_too_long`: the comment is over 4,000 characters; `quote_too_long`: the anchor's \
            quote is over 500 characters; `document_too_large`: the review's report (to check the \
            anchor) or its discussion (to check there is room) is at its size limit: the server \
            runs no more changes or checks on it; `review_quota_exceeded`: the review's documents \
            are at their storage quota (48 MiB together, refused once less than 64 KiB is left); \
            they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 422, description = said::ANCHOR_NOT_IN_REPORT, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn anonymous_thread(
    State(state): State<Arc<ApiState>>,
    sender: Session<PostsAnonymously>,
    JsonBody(req): JsonBody<ThreadRequest>,
) -> Result<Response, ApiError> {
    let (text, anchor) = thread_request(&state, &sender.review.id, req).await?;
    let (thread, comment) = (random_hex(8), random_hex(8));
    let item = Item::Comment {
        thread: thread.clone(),
        comment: comment.clone(),
    };
    let op = AnonOp::Thread {
        thread,
        comment,
        body: text,
        anchor,
    };
    hold_new(&state, &sender, op, item).await
}

/// `POST /api/reviews/{id}/anonymous/threads/{thread}/comments`: an anonymous reply.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/anonymous/threads/{thread}/comments",
    operation_id = "replyAnonymously",
    tag = "anonymous",
    summary = "Add an anonymous reply to a thread; held until its release.",
    description = said::ANONYMOUS_CHECKS,
    params(openapi::ReviewIdParam, openapi::ThreadIdParam),
    request_body = CommentRequest,
    responses(
        (status = 202, description = said::HELD_NEW_ITEM, body = HeldItem),
        (status = 400, description = said::BAD_COMMENT, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER, body = ErrorBody),
        (status = 404, description = said::NO_THREAD, body = ErrorBody),
        (
            status = 409,
            description = "`too_few_for_anonymity`: fewer than three people may post anonymously in \
            this review's phase and its facilitator did not allow small groups at creation; \
            `discussion_full`: the thread already holds 500 comments (items still held are not \
            counted); `too_many_held`: many anonymous items of this review are waiting for their \
            release.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `body_too_long`: the comment is over 4,000 characters; `document_too_large`: the \
            review's discussion is at its size limit: the server runs no more changes or checks on \
            it; `review_quota_exceeded`: the review's documents are at their storage quota (48 MiB \
            together, refused once less than 64 KiB is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn anonymous_reply(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, thread)): ApiPath<(String, String)>,
    sender: Session<PostsAnonymously>,
    JsonBody(req): JsonBody<CommentRequest>,
) -> Result<Response, ApiError> {
    let text = threads::validate_body(&req.body)?;
    let probe = thread.clone();
    let exists = move |doc: &yrs::Doc| threads::thread_exists(doc, &probe);
    found(
        &state,
        &id,
        exists,
        "unknown_thread",
        "this review has no such thread",
    )
    .await?;
    let comment = random_hex(8);
    let item = Item::Comment {
        thread: thread.clone(),
        comment: comment.clone(),
    };
    let op = AnonOp::Reply {
        thread,
        comment,
        body: text,
    };
    hold_new(&state, &sender, op, item).await
}

/// `POST /api/reviews/{id}/concerns`: a concern for the board; always anonymous.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/concerns",
    operation_id = "raiseConcern",
    tag = "anonymous",
    summary = "Raise a concern for the review's concerns board (always anonymous); held until its \
    release.",
    description = said::ANONYMOUS_CHECKS,
    params(openapi::ReviewIdParam),
    request_body = CommentRequest,
    responses(
        (status = 202, description = said::HELD_NEW_ITEM, body = HeldItem),
        (status = 400, description = said::BAD_COMMENT, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`too_few_for_anonymity`: fewer than three people may post anonymously in \
            this review's phase and its facilitator did not allow small groups at creation; \
            `discussion_full`: the review's board already holds 500 concerns (items still held are \
            not counted); `too_many_held`: many anonymous items of this review are waiting for \
            their release.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `body_too_long`: the concern is over 4,000 characters; `document_too_large`: the \
            review's discussion is at its size limit: the server runs no more changes or checks on \
            it; `review_quota_exceeded`: the review's documents are at their storage quota (48 MiB \
            together, refused once less than 64 KiB is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn raise_concern(
    State(state): State<Arc<ApiState>>,
    sender: Session<PostsAnonymously>,
    JsonBody(req): JsonBody<CommentRequest>,
) -> Result<Response, ApiError> {
    let text = threads::validate_body(&req.body)?;
    let concern = random_hex(8);
    let item = Item::Concern {
        concern: concern.clone(),
    };
    let op = AnonOp::Concern {
        concern,
        body: text,
    };
    hold_new(&state, &sender, op, item).await
}

/// `POST /api/reviews/{id}/concerns/{concern}/support`: one vote per session, counted at the
/// next release.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/concerns/{concern}/support",
    operation_id = "supportConcern",
    tag = "anonymous",
    summary = "Support a concern on the board: one vote per session, counted at the next release.",
    description = "The session, the phase table (the same as for comments) and the rate limit are \
    checked first.",
    params(openapi::ReviewIdParam, openapi::ConcernIdParam),
    request_body = Option<openapi::EmptyRequest>,
    responses(
        (
            status = 202,
            description = "Held: the vote is counted with the release at `release_after` (while \
            that is null, when the meeting starts). Only a hash of the session token and the \
            concern records that this session voted; nothing links the vote to the session.",
            body = Held,
        ),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER, body = ErrorBody),
        (
            status = 404,
            description = "`unknown_review`: no review has this id; `not_found`: the path matches \
            no route; `unknown_concern`: the review has no such concern on its board (it may not \
            be released yet, or it was retracted or hidden by the facilitator).",
            body = ErrorBody,
        ),
        (
            status = 409,
            description = "`too_few_for_anonymity`: fewer than three people may post anonymously in \
            this review's phase and its facilitator did not allow small groups at creation; \
            `already_supported`: this session already supports this concern; `too_many_held`: many \
            anonymous items of this review are waiting for their release.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`document_too_large`: the review's discussion is at its size limit: the \
            server runs no more changes or checks on it; `review_quota_exceeded`: the review's \
            documents are at their storage quota (48 MiB together, refused once less than 64 KiB \
            is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn support(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, concern)): ApiPath<(String, String)>,
    sender: Session<PostsAnonymously>,
) -> Result<Response, ApiError> {
    let probe = concern.clone();
    let exists = move |doc: &yrs::Doc| threads::concern_exists(doc, &probe);
    found(
        &state,
        &id,
        exists,
        "unknown_concern",
        "this review has no such concern",
    )
    .await?;
    let receipt = state
        .anonymity
        .hold_vote(&id, &sender.token, &concern)
        .await?;
    Ok(held_reply(&state, &sender.review, receipt))
}

/// New text for an anonymous item, with its key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AnonymousEditRequest)]
pub(super) struct KeyedEdit {
    /// The item's key, from the answer to its submission.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    key: String,
    /// The new text: not only whitespace, at most 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    body: String,
}

/// An anonymous item's key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AnonymousRetractRequest)]
pub(super) struct Keyed {
    /// The item's key, from the answer to its submission.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    key: String,
}

/// The item a key unlocks, if it still exists (held or released).
async fn unlocked(
    state: &ApiState,
    review: &str,
    item_id: &str,
    key: &str,
) -> Result<Item, ApiError> {
    let item = state.anonymity.unlock(review, item_id, key)?;
    if state.anonymity.is_held(review, &item) {
        return Ok(item);
    }
    let probe = item.clone();
    let exists = move |doc: &yrs::Doc| threads::item_exists(doc, &probe);
    found(
        state,
        review,
        exists,
        "unknown_item",
        "this anonymous item is gone (retracted or hidden)",
    )
    .await?;
    Ok(item)
}

/// `POST /api/reviews/{id}/anonymous/{item}/edit`: new text, with the item's key.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/anonymous/{item}/edit",
    operation_id = "editAnonymousItem",
    tag = "anonymous",
    summary = "Replace the text of an anonymous comment or concern, with the key returned when it \
    was submitted.",
    description = said::ANONYMOUS_CHECKS,
    params(openapi::ReviewIdParam, openapi::ItemIdParam),
    request_body = KeyedEdit,
    responses(
        (
            status = 202,
            description = "Held: the new text appears with the release at `release_after` (while \
            that is null, when the meeting starts), and the item's `editedAt` is that release's \
            boundary. An item not released yet has its held text replaced at once.",
            body = Held,
        ),
        (status = 400, description = said::BAD_COMMENT, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER_OR_WRONG_KEY, body = ErrorBody),
        (status = 404, description = said::ITEM_GONE, body = ErrorBody),
        (status = 409, description = said::TOO_FEW_OR_TOO_MANY_HELD, body = ErrorBody),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `body_too_long`: the text is over 4,000 characters; `document_too_large`: the review's \
            discussion is at its size limit: the server runs no more changes or checks on it; \
            `review_quota_exceeded`: the review's documents are at their storage quota (48 MiB \
            together, refused once less than 64 KiB is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn anonymous_edit(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, item_id)): ApiPath<(String, String)>,
    sender: Session<PostsAnonymously>,
    JsonBody(req): JsonBody<KeyedEdit>,
) -> Result<Response, ApiError> {
    let text = threads::validate_body(&req.body)?;
    let item = unlocked(&state, &id, &item_id, &req.key).await?;
    let receipt = state
        .anonymity
        .hold_edit(&id, &sender.token, item, text)
        .await?;
    Ok(held_reply(&state, &sender.review, receipt))
}

/// `POST /api/reviews/{id}/anonymous/{item}/retract`: takes an item back, with its key.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/anonymous/{item}/retract",
    operation_id = "retractAnonymousItem",
    tag = "anonymous",
    summary = "Take back an anonymous comment or concern, with the key returned when it was \
    submitted; the key then stops working.",
    description = said::ANONYMOUS_CHECKS,
    params(openapi::ReviewIdParam, openapi::ItemIdParam),
    request_body = Keyed,
    responses(
        (
            status = 202,
            description = "Held: a released item is retracted with the release at `release_after` \
            (a comment keeps its place, emptied and marked deleted; a concern leaves the board). \
            An item not released yet is dropped at once and never appears.",
            body = Held,
        ),
        (status = 400, description = said::BAD_BODY, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_COMMENTER_OR_WRONG_KEY, body = ErrorBody),
        (status = 404, description = said::ITEM_GONE, body = ErrorBody),
        (status = 409, description = said::TOO_FEW_OR_TOO_MANY_HELD, body = ErrorBody),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `document_too_large`: the review's discussion is at its size limit: the server runs no \
            more changes or checks on it; `review_quota_exceeded`: the review's documents are at \
            their storage quota (48 MiB together, refused once less than 64 KiB is left); they can \
            still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn anonymous_retract(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, item_id)): ApiPath<(String, String)>,
    sender: Session<PostsAnonymously>,
    JsonBody(req): JsonBody<Keyed>,
) -> Result<Response, ApiError> {
    let item = unlocked(&state, &id, &item_id, &req.key).await?;
    let receipt = state
        .anonymity
        .hold_retract(&id, &sender.token, item)
        .await?;
    Ok(held_reply(&state, &sender.review, receipt))
}

/// Receipts to ask about.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PendingRequest {
    /// Receipts of this browser's anonymous submissions, at most 100.
    #[schema(schema_with = receipts_schema)]
    receipts: Vec<String>,
}

/// The receipts' schema: an array of at most [`MAX_RECEIPTS`] strings of at most 200
/// characters (a receipt is 32 characters; longer text is simply not one).
fn receipts_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(200)),
        )
        .max_items(Some(MAX_RECEIPTS))
        .description(Some(
            "Receipts of this browser's anonymous submissions, at most 100.",
        ))
        .build()
}

/// `POST /api/reviews/{id}/anonymous/pending`: when the submissions of these receipts will
/// appear, for those still held (a receipt not listed was released). Only the submitting browser
/// has its receipts, so the answer tells nobody else anything.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/anonymous/pending",
    operation_id = "anonymousPending",
    tag = "anonymous",
    summary = "When this browser's held anonymous submissions will appear, by their receipts.",
    description = "Any role. Only the submitting browser holds a receipt, so the answer tells \
    nobody else anything; it changes only at release boundaries.",
    params(openapi::ReviewIdParam),
    request_body = PendingRequest,
    responses(
        (
            status = 200,
            description = "The receipts still held, and when they will appear.",
            body = PendingResponse,
        ),
        (
            status = 400,
            description = "`invalid_path`: a path parameter is not valid (for example, not UTF-8 \
            once percent-decoded); `invalid_json`: the body is not JSON of the documented shape \
            (syntax, types, a missing or unknown field); `too_many_receipts`: more than 100 \
            receipts.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::OTHER_REVIEW, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 1,048,576 bytes.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
    ),
)]
pub(super) async fn pending(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
    JsonBody(req): JsonBody<PendingRequest>,
) -> Result<Json<PendingResponse>, ApiError> {
    if req.receipts.len() > MAX_RECEIPTS {
        return Err(ApiError::bad_request(
            "too_many_receipts",
            format!("ask about at most {MAX_RECEIPTS} receipts at once"),
        ));
    }
    let pending = state
        .anonymity
        .pending(&you.review, &req.receipts)
        .into_iter()
        .map(|(receipt, times)| {
            let (release_after, release_by) = times.unzip();
            PendingReceipt {
                receipt,
                release_after,
                release_by,
            }
        })
        .collect();
    Ok(Json(PendingResponse { pending }))
}

/// `POST /api/reviews/{id}/moderation/hide`: the facilitator hides an anonymous item for
/// everyone, learning nothing about its author.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/moderation/hide",
    operation_id = "hideAnonymousItem",
    tag = "moderation",
    summary = "Hide a released anonymous comment or concern for everyone (facilitator only): its \
    text is removed and it is marked hidden.",
    description = "The session and the role are checked before the body is read. Allowed in every \
    phase; hiding needs no knowledge of the author and reveals none.",
    params(openapi::ReviewIdParam),
    request_body = Item,
    responses(
        (status = 204, description = "Hidden."),
        (
            status = 400,
            description = "`invalid_path`: a path parameter is not valid (for example, not UTF-8 \
            once percent-decoded); `invalid_json`: the body is not JSON of the documented shape \
            (syntax, types, an unknown `kind`, a missing field, or an unknown one, including the \
            other kind's: `thread` with a concern, `concern` with a comment).",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (
            status = 404,
            description = "`unknown_review`: no review has this id; `not_found`: the path matches \
            no route; `unknown_item`: there is no such anonymous item (not released yet, or \
            already retracted or hidden; signed comments cannot be hidden).",
            body = ErrorBody,
        ),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn hide(
    State(state): State<Arc<ApiState>>,
    you: Session<Facilitates>,
    JsonBody(item): JsonBody<Item>,
) -> Result<StatusCode, ApiError> {
    let id = you.review.id;
    let hidden = state
        .registry
        .open(&document_name(&id, DocKind::Discussion))
        .run_essential(move |doc| threads::hide(doc, &item))
        .await?;
    hidden?;
    // A published review must not keep what was just hidden.
    refresh_library(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a concern was discussed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscussedRequest {
    /// True to tick the concern off, false to undo it.
    discussed: bool,
}

/// `POST /api/reviews/{id}/concerns/{concern}/discussed`: the facilitator ticks a concern off.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/concerns/{concern}/discussed",
    operation_id = "markConcernDiscussed",
    tag = "moderation",
    summary = "Mark a concern on the board discussed, or not (facilitator only).",
    description = "The session and the role are checked before the body is read. Allowed in every \
    phase.",
    params(openapi::ReviewIdParam, openapi::ConcernIdParam),
    request_body = DiscussedRequest,
    responses(
        (status = 204, description = "Done (also when the concern already was in that state)."),
        (status = 400, description = said::BAD_BODY, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (
            status = 404,
            description = "`unknown_review`: no review has this id; `not_found`: the path matches \
            no route; `unknown_item`: the review has no such concern on its board (it may not be \
            released yet, or was retracted).",
            body = ErrorBody,
        ),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn discussed(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, concern)): ApiPath<(String, String)>,
    _: Session<Facilitates>,
    JsonBody(req): JsonBody<DiscussedRequest>,
) -> Result<StatusCode, ApiError> {
    on_discussion(&state, &id, move |doc| {
        threads::set_discussed(doc, &concern, req.discussed)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
