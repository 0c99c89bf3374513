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

use super::documents::{on_discussion, read_doc};
use super::records::refresh_library;
use super::request::{ApiPath, Facilitates, JsonBody, Member, PostsAnonymously, Session};
use super::state::ApiState;
use super::threads::{thread_request, CommentRequest, ThreadRequest};
use crate::error::ApiError;
use crate::reviews::anonymous::Receipt;
use crate::reviews::basics::random_hex;
use crate::reviews::policy::ReleaseMode;
use crate::reviews::sessions::ReviewRecord;
use crate::reviews::threads::{self, AnonOp, Item};

/// A held submission asked about, with when it will appear (null like [`Held`]'s times).
#[derive(Debug, Serialize)]
pub(super) struct PendingReceipt {
    receipt: String,
    release_after: Option<u64>,
    release_by: Option<u64>,
}

/// The receipts whose submissions are still held; a receipt not listed was released.
#[derive(Debug, Serialize)]
pub(super) struct PendingResponse {
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
    Ok(held_reply(state, &sender.review, receipt, Some(item)))
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

/// The answer to an anonymous submission: nothing about who sent it, only when it will appear
/// (at the earliest, and at the latest if it waits for others' items; both null while a review
/// that releases at the meeting has not reached it), and the receipt to ask again. A new item
/// also gets its id and key.
#[derive(Debug, Serialize)]
pub(super) struct Held {
    release: ReleaseMode,
    release_after: Option<u64>,
    release_by: Option<u64>,
    receipt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<Item>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn held_reply(
    state: &ApiState,
    review: &ReviewRecord,
    receipt: Receipt,
    item: Option<Item>,
) -> Response {
    let (release_after, release_by) = state.anonymity.release_times(review, 0).unzip();
    // An item and its key go together: a new item always has both.
    let (item, key) = match (item, receipt.key) {
        (Some(item), Some(key)) => (Some(item), Some(key)),
        _ => (None, None),
    };
    let body = Held {
        release: review.release,
        release_after,
        release_by,
        receipt: receipt.receipt,
        item,
        key,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `POST /api/reviews/{id}/anonymous/threads`: an anonymous comment, held until its release.
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
pub(super) async fn anonymous_reply(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, thread)): ApiPath<(String, String)>,
    sender: Session<PostsAnonymously>,
    JsonBody(req): JsonBody<CommentRequest>,
) -> Result<Response, ApiError> {
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
pub(super) async fn support(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, concern)): ApiPath<(String, String)>,
    sender: Session<PostsAnonymously>,
) -> Result<Response, ApiError> {
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
pub(super) struct KeyedEdit {
    key: String,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keyed {
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
    Ok(held_reply(&state, &sender.review, receipt, None))
}

/// `POST /api/reviews/{id}/anonymous/{item}/retract`: takes an item back, with its key.
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
    Ok(held_reply(&state, &sender.review, receipt, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PendingRequest {
    receipts: Vec<String>,
}

/// `POST /api/reviews/{id}/anonymous/pending`: when the submissions of these receipts will
/// appear, for those still held (a receipt not listed was released). Only the submitting browser
/// has its receipts, so the answer tells nobody else anything.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscussedRequest {
    discussed: bool,
}

/// `POST /api/reviews/{id}/concerns/{concern}/discussed`: the facilitator ticks a concern off.
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
