//! The meeting over REST: the timebox and the agenda (the facilitator, during the meeting),
//! action items (the team, in review and meeting), "I have read the report", and the
//! blameless-language hints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::actions::change_action;
use super::documents::{in_phase, on_discussion};
use super::openapi::{self, said, ActionItem};
use super::request::{
    ApiPath, ChairsMeeting, Facilitates, JsonBody, ReadsReport, Session, WritesActions,
};
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::basics::now_ms;
use crate::reviews::meeting::{
    self, actions_open, during_meeting, ActionInput, Timer, TimerAction, MAX_AGENDA_CHARS,
};

/// What to do with the timebox: `start` and `extend` need `minutes` (a whole number from 1 to
/// 240); `pause` and `resume` ignore it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TimerRequest {
    action: TimerAction,
    /// For `start` and `extend`: a whole number from 1 to 240. Ignored by `pause` and `resume`.
    minutes: Option<u64>,
}

/// The timebox as the server now holds it, with the server's clock.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TimerResponse {
    timer: Timer,
    /// The server's clock when it answered, milliseconds since the Unix epoch.
    server_time: u64,
}

/// The answer to "I have read the report".
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReadResponse {
    /// Always true: the mark is kept (once per session).
    #[schema(schema_with = openapi::always_true)]
    read: bool,
    /// The read count everyone sees now. Marks join it together at the next release boundary, so
    /// that a change tells nobody who just read: it does not count this mark yet.
    read_count: u64,
    /// How many sessions the review has (every role).
    people: usize,
    /// The release boundary (milliseconds since the Unix epoch) at which this mark is counted in
    /// what everyone sees.
    counted_after: u64,
}

/// `POST /api/reviews/{id}/timer`: start, pause, resume or extend the timebox.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/timer",
    operation_id = "controlTimer",
    tag = "meeting",
    summary = "Start, pause, resume or extend the meeting's timebox on the server's clock \
    (facilitator, during the meeting).",
    description = "The session, the role and the phase are checked before the body is read. The new \
    timebox is also written to the discussion document, so every open client follows it.",
    params(openapi::ReviewIdParam),
    request_body = TimerRequest,
    responses(
        (
            status = 200,
            description = "The timebox after the action, and the server's clock.",
            body = TimerResponse,
        ),
        (
            status = 400,
            description = "`invalid_path`: a path parameter is not valid (for example, not UTF-8 \
            once percent-decoded); `invalid_json`: the body is not JSON of the documented shape \
            (syntax, types, a missing or unknown field); `invalid_minutes`: `start`, or `extend` \
            of a running or paused timebox, with `minutes` absent, null or outside 1 to 240 (a \
            negative or fractional number is `invalid_json`).",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`not_in_meeting`: the review is not in phase `meeting` (checked before \
            the body is read); `invalid_timer_action`: the timebox cannot do this now (`pause` \
            unless running, `resume` unless paused, `extend` before the first start).",
            body = ErrorBody,
        ),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn timer(
    State(state): State<Arc<ApiState>>,
    you: Session<ChairsMeeting>,
    JsonBody(req): JsonBody<TimerRequest>,
) -> Result<Json<TimerResponse>, ApiError> {
    let timer = in_phase(&state, &you.review.id, during_meeting, move |doc| {
        meeting::timer(doc, req.action, req.minutes)
    })
    .await?;
    Ok(Json(TimerResponse {
        timer,
        server_time: now_ms(),
    }))
}

/// Where the meeting is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AgendaRequest {
    /// The agenda item the meeting is on, at most 200 characters, kept as sent; empty clears it.
    #[schema(max_length = 200)]
    item: String,
}

/// `POST /api/reviews/{id}/agenda`: where the meeting is.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/agenda",
    operation_id = "setAgendaItem",
    tag = "meeting",
    summary = "Set the agenda item the meeting is on (facilitator, during the meeting).",
    description = said::ROLE_AND_PHASE_FIRST,
    params(openapi::ReviewIdParam),
    request_body = AgendaRequest,
    responses(
        (status = 204, description = "Set (in the discussion document's `meeting.agenda`)."),
        (
            status = 400,
            description = "`invalid_path`: a path parameter is not valid (for example, not UTF-8 \
            once percent-decoded); `invalid_json`: the body is not JSON of the documented shape \
            (syntax, types, a missing or unknown field); `invalid_agenda_item`: the item is over \
            200 characters.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`not_in_meeting`: the review is not in phase `meeting` (checked before \
            the body is read).",
            body = ErrorBody,
        ),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn agenda(
    State(state): State<Arc<ApiState>>,
    you: Session<ChairsMeeting>,
    JsonBody(req): JsonBody<AgendaRequest>,
) -> Result<StatusCode, ApiError> {
    if req.item.chars().count() > MAX_AGENDA_CHARS {
        return Err(ApiError::bad_request(
            "invalid_agenda_item",
            format!("an agenda item is at most {MAX_AGENDA_CHARS} characters"),
        ));
    }
    in_phase(&state, &you.review.id, during_meeting, move |doc| {
        meeting::agenda(doc, &req.item)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/reviews/{id}/actions`.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/actions",
    operation_id = "addActionItem",
    tag = "meeting",
    summary = "Add an action item (everyone but observers, in review and meeting).",
    description = said::ROLE_AND_PHASE_FIRST,
    params(openapi::ReviewIdParam),
    request_body = ActionInput,
    responses(
        (status = 201, description = "The new action item.", body = ActionItem),
        (status = 400, description = said::BAD_ACTION, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_ACTION_WRITER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`too_many_actions`: the review already holds 200 action items.",
            body = ErrorBody,
        ),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn add_action(
    State(state): State<Arc<ApiState>>,
    you: Session<WritesActions>,
    JsonBody(input): JsonBody<ActionInput>,
) -> Result<Response, ApiError> {
    let input = input.validate(&state.trackers)?;
    let by = you.session.name.clone();
    let item = change_action(&state, &you.review, actions_open, move |doc| {
        (None, meeting::add_action(doc, &input, &by))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `PATCH /api/reviews/{id}/actions/{action}`: replaces the item's fields.
#[utoipa::path(
    patch,
    path = "/api/reviews/{id}/actions/{action}",
    operation_id = "updateActionItem",
    tag = "meeting",
    summary = "Replace an action item's fields (everyone but observers, in review and meeting).",
    description = "The session, the role and the phase are checked before the body is read. Every \
    field is replaced, as for a new item (`status` absent: `open`); `id`, `createdAt` and \
    `history` stay, and a new status is added to `history` with the session's name and the time.",
    params(openapi::ReviewIdParam, openapi::ActionIdParam),
    request_body = ActionInput,
    responses(
        (status = 200, description = "The action item as changed.", body = ActionItem),
        (status = 400, description = said::BAD_ACTION, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_ACTION_WRITER, body = ErrorBody),
        (status = 404, description = said::NO_ACTION, body = ErrorBody),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn update_action(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, action)): ApiPath<(String, String)>,
    you: Session<WritesActions>,
    JsonBody(input): JsonBody<ActionInput>,
) -> Result<Json<Value>, ApiError> {
    let input = input.validate(&state.trackers)?;
    let by = you.session.name.clone();
    let item = change_action(&state, &you.review, actions_open, move |doc| {
        let before = meeting::action(doc, &action);
        (before, meeting::update_action(doc, &action, &input, &by))
    })
    .await?;
    Ok(Json(item))
}

/// `POST /api/reviews/{id}/read`: "I have read the report"; counted once per session, shown
/// only as a count, at the next release boundary.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/read",
    operation_id = "markReportRead",
    tag = "meeting",
    summary = "Mark the report read by this session, once; it is counted in what everyone sees at \
    the next release boundary.",
    description = "Takes no request body (any body is ignored). Any role, in every phase but \
    `closed`. Only a hash of the session token is kept, and only the count is shown (also in the \
    discussion document's `meeting.readCount`), updated at release boundaries with every mark made \
    since the last one.",
    params(openapi::ReviewIdParam),
    responses(
        (
            status = 200,
            description = "The mark is kept; the count everyone sees now (without this mark until \
            `counted_after`), and the review's number of sessions.",
            body = ReadResponse,
        ),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            participants and observers cannot open the report in draft.",
            body = ErrorBody,
        ),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 409, description = "`review_closed`: the review is closed.", body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_OR_DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn mark_read(
    State(state): State<Arc<ApiState>>,
    you: Session<ReadsReport>,
) -> Result<Json<ReadResponse>, ApiError> {
    meeting::reading_open(you.review.phase)?;
    let id = &you.review.id;
    let shown = state.records.mark_read(id, &you.token).await?;
    let people: usize = state.reviews.counts(id).values().sum();
    Ok(Json(ReadResponse {
        read: true,
        read_count: shown,
        people,
        counted_after: state.anonymity.next_boundary(now_ms()),
    }))
}

/// The review's settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsRequest {
    /// Blameless-language hints on (true) or off (false) for everyone in the review.
    hints: bool,
}

/// `POST /api/reviews/{id}/settings`: the facilitator turns blameless-language hints on or off.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/settings",
    operation_id = "changeSettings",
    tag = "meeting",
    summary = "Turn the blameless-language hints on or off for everyone in the review (facilitator \
    only).",
    description = "The session and the role are checked before the body is read. Allowed in every \
    phase; the setting is the discussion document's `review.hints`.",
    params(openapi::ReviewIdParam),
    request_body = SettingsRequest,
    responses(
        (status = 204, description = "Set."),
        (status = 400, description = said::BAD_BODY, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn settings(
    State(state): State<Arc<ApiState>>,
    you: Session<Facilitates>,
    JsonBody(req): JsonBody<SettingsRequest>,
) -> Result<StatusCode, ApiError> {
    on_discussion(&state, &you.review.id, move |doc| {
        meeting::hints(doc, req.hints)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
