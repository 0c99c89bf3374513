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

use super::documents::{in_phase, on_discussion};
use super::request::{
    ApiPath, ChairsMeeting, Facilitates, JsonBody, ReadsReport, Session, WritesActions,
};
use super::state::ApiState;
use crate::error::ApiError;
use crate::reviews::basics::now_ms;
use crate::reviews::meeting::{
    self, actions_open, during_meeting, ActionInput, Timer, TimerAction, MAX_AGENDA_CHARS,
};
use crate::reviews::policy::Phase;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TimerRequest {
    action: TimerAction,
    minutes: Option<u64>,
}

/// The timebox as the server now holds it, with the server's clock.
#[derive(Debug, Serialize)]
pub(super) struct TimerResponse {
    timer: Timer,
    server_time: u64,
}

/// The answer to "I have read the report".
#[derive(Debug, Serialize)]
pub(super) struct ReadResponse {
    /// Always true: the mark is kept.
    read: bool,
    /// The count everyone sees now (without this mark until the next boundary).
    read_count: u64,
    /// Sessions of the review, every role.
    people: usize,
    /// The boundary at which this mark is counted in what everyone sees.
    counted_after: u64,
}

/// `POST /api/reviews/{id}/timer`: start, pause, resume or extend the timebox.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgendaRequest {
    item: String,
}

/// `POST /api/reviews/{id}/agenda`: where the meeting is.
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
pub(super) async fn add_action(
    State(state): State<Arc<ApiState>>,
    you: Session<WritesActions>,
    JsonBody(input): JsonBody<ActionInput>,
) -> Result<Response, ApiError> {
    let input = input.validate()?;
    let item = in_phase(&state, &you.review.id, actions_open, move |doc| {
        meeting::add_action(doc, &input)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `PATCH /api/reviews/{id}/actions/{action}`: replaces the item's fields.
pub(super) async fn update_action(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    _: Session<WritesActions>,
    JsonBody(input): JsonBody<ActionInput>,
) -> Result<Json<Value>, ApiError> {
    let input = input.validate()?;
    let item = in_phase(&state, &id, actions_open, move |doc| {
        meeting::update_action(doc, &action, &input)
    })
    .await?;
    Ok(Json(item))
}

/// `POST /api/reviews/{id}/read`: "I have read the report"; counted once per session, shown
/// only as a count, at the next release boundary.
pub(super) async fn mark_read(
    State(state): State<Arc<ApiState>>,
    you: Session<ReadsReport>,
) -> Result<Json<ReadResponse>, ApiError> {
    if you.review.phase == Phase::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "review_closed",
            "the review is closed",
        ));
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsRequest {
    hints: bool,
}

/// `POST /api/reviews/{id}/settings`: the facilitator turns blameless-language hints on or off.
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
