//! REST for the meeting and after it: the timebox, the agenda, action items, the read count,
//! blameless-language hints, pinned versions, exports, and the library of published reviews.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use debrief_proto::schema::DocKind;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::ApiState;
use super::api::{
    bearer, facilitator, in_phase, on_discussion, parse, path, read_doc, session, Body,
};
use super::meeting::{self, ActionInput, TimerAction};
use super::records::{Published, Version};
use super::{export, markdown, policy, Phase, Problem, ProblemKind, ReviewRecord, Role};
use crate::error::ApiError;

/// Longest agenda label.
const MAX_AGENDA_CHARS: usize = 200;
/// Most results of one library search.
const MAX_LIBRARY_RESULTS: usize = 100;

/// Routes of this module.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/api/reviews/{id}/timer", post(timer))
        .route("/api/reviews/{id}/agenda", post(agenda))
        .route("/api/reviews/{id}/actions", post(add_action))
        .route("/api/reviews/{id}/actions/{action}", patch(update_action))
        .route("/api/reviews/{id}/read", post(mark_read))
        .route("/api/reviews/{id}/settings", post(settings))
        .route("/api/reviews/{id}/versions", get(versions))
        .route("/api/reviews/{id}/versions/{phase}", get(version))
        .route("/api/reviews/{id}/export.md", get(export_md))
        .route("/api/reviews/{id}/export.json", get(export_json))
        .route("/api/reviews/{id}/publish", post(publish))
        .route("/api/library", get(library))
        .route("/api/library/{id}", get(library_entry))
}

fn forbidden(r: policy::Refusal) -> ApiError {
    Problem::new(ProblemKind::Forbidden, r.code, r.message).into()
}

/// The facilitator's session, during the meeting.
fn facilitator_in_meeting(state: &ApiState, headers: &HeaderMap, id: &str) -> Result<(), ApiError> {
    let (_, review) = facilitator(state, headers, id)?;
    during_meeting(review.phase)?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerRequest {
    action: TimerAction,
    minutes: Option<u64>,
}

/// `POST /api/reviews/{id}/timer`: start, pause, resume or extend the timebox.
async fn timer(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    facilitator_in_meeting(&state, &headers, &id)?;
    let req: TimerRequest = parse(body)?;
    let timer = in_phase(&state, &id, during_meeting, move |doc| {
        meeting::timer(doc, req.action, req.minutes)
    })
    .await?;
    Ok(Json(
        json!({ "timer": timer, "server_time": super::basics::now_ms() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgendaRequest {
    item: String,
}

/// `POST /api/reviews/{id}/agenda`: where the meeting is.
async fn agenda(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    facilitator_in_meeting(&state, &headers, &id)?;
    let req: AgendaRequest = parse(body)?;
    if req.item.chars().count() > MAX_AGENDA_CHARS {
        return Err(ApiError::bad_request(
            "invalid_agenda_item",
            format!("an agenda item is at most {MAX_AGENDA_CHARS} characters"),
        ));
    }
    in_phase(&state, &id, during_meeting, move |doc| {
        meeting::agenda(doc, &req.item)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn during_meeting(phase: Phase) -> Result<(), Problem> {
    if phase == Phase::Meeting {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::Conflict,
            "not_in_meeting",
            "this is done during the meeting",
        ))
    }
}

fn actions_open(phase: Phase) -> Result<(), Problem> {
    if matches!(phase, Phase::Review | Phase::Meeting) {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "action items are written by the team during review and the meeting",
        ))
    }
}

/// Who may add and change action items: anyone but observers, in review and meeting.
fn action_writer(state: &ApiState, headers: &HeaderMap, id: &str) -> Result<(), ApiError> {
    let (session, review) = session(state, headers, id)?;
    if session.role == Role::Observer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            "observers read along; action items are written by the team",
        ));
    }
    actions_open(review.phase)?;
    Ok(())
}

/// `POST /api/reviews/{id}/actions`.
async fn add_action(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    action_writer(&state, &headers, &id)?;
    let input: ActionInput = parse::<ActionInput>(body)?.validate()?;
    let item = in_phase(&state, &id, actions_open, move |doc| {
        meeting::add_action(doc, &input)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `PATCH /api/reviews/{id}/actions/{action}`: replaces the item's fields.
async fn update_action(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (id, action) = path(p)?;
    action_writer(&state, &headers, &id)?;
    let input: ActionInput = parse::<ActionInput>(body)?.validate()?;
    let item = in_phase(&state, &id, actions_open, move |doc| {
        meeting::update_action(doc, &action, &input)
    })
    .await?;
    Ok(Json(item))
}

/// `POST /api/reviews/{id}/read`: "I have read the report"; counted once per session, shown
/// only as a count.
async fn mark_read(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let (s, review) = session(&state, &headers, &id)?;
    readable(&s, &review)?;
    if review.phase == Phase::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "review_closed",
            "the review is closed",
        ));
    }
    let token = bearer(&headers).unwrap_or_default();
    let shown = state.records.mark_read(&id, token).await?;
    let people: usize = state.reviews.counts(&id).values().sum();
    Ok(Json(json!({
        "read": true,
        "read_count": shown,
        "people": people,
        "counted_after": state.anonymity.next_boundary(super::basics::now_ms()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    hints: bool,
}

/// `POST /api/reviews/{id}/settings`: the facilitator turns blameless-language hints on or off.
async fn settings(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    facilitator(&state, &headers, &id)?;
    let req: SettingsRequest = parse(body)?;
    on_discussion(&state, &id, move |doc| meeting::hints(doc, req.hints)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads one document's Markdown (report or notes).
async fn doc_markdown(state: &ApiState, id: &str, kind: DocKind) -> Result<String, ApiError> {
    read_doc(state, id, kind, markdown::to_markdown).await
}

/// Pins every document's state when the review enters `phase`.
pub(super) async fn pin_version(state: &ApiState, id: &str, phase: Phase) -> Result<(), ApiError> {
    async fn full(state: &ApiState, id: &str, kind: DocKind) -> Result<Vec<u8>, ApiError> {
        read_doc(state, id, kind, |doc| {
            use yrs::{ReadTxn, StateVector, Transact};
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        })
        .await
    }
    let report = full(state, id, DocKind::Report).await?;
    let notes = full(state, id, DocKind::Notes).await?;
    let version = Version {
        phase,
        at: super::basics::now_ms(),
        report,
        notes,
    };
    state.records.pin(id, &version).await?;
    Ok(())
}

fn render(state: &[u8]) -> String {
    let doc = crate::documents::crdt::new_doc();
    if crate::documents::crdt::apply(&doc, state).is_err() {
        return String::new();
    }
    markdown::to_markdown(&doc)
}

/// `GET /api/reviews/{id}/versions`: the pinned versions.
async fn versions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let (s, review) = session(&state, &headers, &id)?;
    readable(&s, &review)?;
    let list: Vec<Value> = state
        .records
        .versions(&id)?
        .iter()
        .map(|v| json!({ "phase": v.phase.as_str(), "label": Version::label(v.phase), "at": v.at }))
        .collect();
    Ok(Json(json!({ "versions": list })))
}

/// The report is not for everyone's eyes in draft; neither are its versions and exports.
fn readable(s: &super::SessionRecord, review: &ReviewRecord) -> Result<(), ApiError> {
    policy::document_access(s.role, review.phase, DocKind::Report)
        .map(|_| ())
        .map_err(forbidden)
}

/// `GET /api/reviews/{id}/versions/{phase}`: one version as Markdown.
async fn version(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, phase) = path(p)?;
    let (s, review) = session(&state, &headers, &id)?;
    readable(&s, &review)?;
    let found = state
        .records
        .versions(&id)?
        .into_iter()
        .find(|v| v.phase.as_str() == phase)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_version",
                "no version was pinned for that phase",
            )
        })?;
    Ok(Json(json!({
        "phase": found.phase.as_str(),
        "label": Version::label(found.phase),
        "at": found.at,
        "report": render(&found.report),
        "notes": render(&found.notes),
    })))
}

async fn parts(state: &ApiState, review: ReviewRecord) -> Result<export::Parts, ApiError> {
    let id = review.id.clone();
    let report = doc_markdown(state, &id, DocKind::Report).await?;
    let notes = doc_markdown(state, &id, DocKind::Notes).await?;
    let discussion = read_doc(state, &id, DocKind::Discussion, meeting::snapshot).await?;
    Ok(export::Parts {
        review,
        report,
        notes,
        discussion,
    })
}

fn attachment(id: &str, ext: &str, content_type: &'static str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"review-{id}.{ext}\"");
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/reviews/{id}/export.md`.
async fn export_md(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    export_as(&state, &headers, id, Format::Markdown).await
}

/// `GET /api/reviews/{id}/export.json`.
async fn export_json(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    export_as(&state, &headers, id, Format::Json).await
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Markdown,
    Json,
}

async fn export_as(
    state: &ApiState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    format: Format,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let (s, review) = session(state, headers, &id)?;
    readable(&s, &review)?;
    let parts = parts(state, review).await?;
    Ok(match format {
        Format::Markdown => attachment(
            &id,
            "md",
            "text/markdown; charset=utf-8",
            export::markdown(&parts),
        ),
        Format::Json => attachment(
            &id,
            "json",
            "application/json",
            export::json(&parts).to_string(),
        ),
    })
}

/// Rewrites a published review's library entry from its documents (after moderation).
pub(super) async fn refresh_library(state: &ApiState, id: &str) -> Result<(), ApiError> {
    let Ok(entry) = state.records.published(id) else {
        return Ok(());
    };
    let Some(review) = state.reviews.record(id) else {
        return Ok(());
    };
    let parts = parts(state, review).await?;
    state
        .records
        .publish(&Published {
            markdown: export::markdown(&parts),
            format: super::records::EXPORT_FORMAT,
            ..entry
        })
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    published: bool,
}

/// `POST /api/reviews/{id}/publish`: the facilitator puts a closed review in the library (or
/// takes it out).
async fn publish(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let (_, review) = facilitator(&state, &headers, &id)?;
    let req: PublishRequest = parse(body)?;
    if !req.published {
        state.records.unpublish(&id).await?;
        return Ok(Json(json!({ "published": false })));
    }
    if review.phase != Phase::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_closed",
            "only a closed review can be published",
        ));
    }
    let parts = parts(&state, review.clone()).await?;
    state
        .records
        .publish(&Published {
            id: id.clone(),
            title: review.title,
            incident_date: review.incident_date,
            severity: review.severity,
            published_at: super::basics::now_ms(),
            markdown: export::markdown(&parts),
            format: super::records::EXPORT_FORMAT,
        })
        .await?;
    tracing::info!(review = %id, "review published");
    Ok(Json(
        json!({ "published": true, "link": format!("/library/{id}") }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryQuery {
    #[serde(default)]
    q: String,
}

/// `GET /api/library?q=`: published reviews, searchable by title and text; no session needed.
async fn library(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<LibraryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "the only query parameter is q",
        ));
    };
    if q.q.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "a search is at most 200 characters",
        ));
    }
    let found: Vec<Value> = state
        .records
        .search(&q.q)?
        .into_iter()
        .take(MAX_LIBRARY_RESULTS)
        .map(|p| {
            json!({
                "id": p.id, "title": p.title, "incident_date": p.incident_date,
                "severity": p.severity, "published_at": p.published_at,
            })
        })
        .collect();
    Ok(Json(json!({ "reviews": found })))
}

/// `GET /api/library/{id}`: a published review as Markdown.
async fn library_entry(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let mut p = state.records.published(&id)?;
    if p.is_stale() {
        // Published by an older export (before issue 16: unescaped text): written again from
        // the review's documents, once, before anyone is served it.
        refresh_library(&state, &id).await?;
        p = state.records.published(&id)?;
    }
    Ok(Json(json!({
        "id": p.id, "title": p.title, "incident_date": p.incident_date, "severity": p.severity,
        "published_at": p.published_at, "markdown": p.markdown,
    })))
}
