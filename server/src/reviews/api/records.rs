//! What a review keeps, over REST: versions pinned at each phase change, the Markdown and JSON
//! exports, publishing to the library, and the library itself (open without a session). Also
//! what other handlers call when they change a review's record: pinning a version at a phase
//! move, and rewriting a published entry after moderation.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use debrief_proto::schema::DocKind;
use serde::{Deserialize, Serialize};

use super::documents::read_doc;
use super::request::{ApiPath, Facilitates, JsonBody, ReadsReport, Session};
use super::state::ApiState;
use crate::error::ApiError;
use crate::reviews::basics::now_ms;
use crate::reviews::policy::Phase;
use crate::reviews::records::{Published, Version, EXPORT_FORMAT};
use crate::reviews::sessions::ReviewRecord;
use crate::reviews::{export, markdown, meeting};

/// Most results of one library search.
const MAX_LIBRARY_RESULTS: usize = 100;
/// Longest library search, in characters.
const MAX_QUERY_CHARS: usize = 200;

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
        at: now_ms(),
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

/// A pinned version, without its text.
#[derive(Debug, Serialize)]
pub(super) struct VersionSummary {
    phase: Phase,
    label: &'static str,
    at: u64,
}

/// The pinned versions, in phase order.
#[derive(Debug, Serialize)]
pub(super) struct VersionList {
    versions: Vec<VersionSummary>,
}

/// A pinned version with its report and notes as Markdown.
#[derive(Debug, Serialize)]
pub(super) struct VersionView {
    phase: Phase,
    label: &'static str,
    at: u64,
    report: String,
    notes: String,
}

/// `GET /api/reviews/{id}/versions`: the pinned versions.
pub(super) async fn versions(
    State(state): State<Arc<ApiState>>,
    you: Session<ReadsReport>,
) -> Result<Json<VersionList>, ApiError> {
    let versions = state
        .records
        .versions(&you.review.id)?
        .iter()
        .map(|v| VersionSummary {
            phase: v.phase,
            label: Version::label(v.phase),
            at: v.at,
        })
        .collect();
    Ok(Json(VersionList { versions }))
}

/// `GET /api/reviews/{id}/versions/{phase}`: one version as Markdown.
pub(super) async fn version(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, phase)): ApiPath<(String, String)>,
    _: Session<ReadsReport>,
) -> Result<Json<VersionView>, ApiError> {
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
    Ok(Json(VersionView {
        phase: found.phase,
        label: Version::label(found.phase),
        at: found.at,
        report: render(&found.report),
        notes: render(&found.notes),
    }))
}

/// Everything an export holds, read from the review's documents.
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
pub(super) async fn export_md(
    State(state): State<Arc<ApiState>>,
    you: Session<ReadsReport>,
) -> Result<Response, ApiError> {
    let id = you.review.id.clone();
    let parts = parts(&state, you.review).await?;
    Ok(attachment(
        &id,
        "md",
        "text/markdown; charset=utf-8",
        export::markdown(&parts),
    ))
}

/// `GET /api/reviews/{id}/export.json`.
pub(super) async fn export_json(
    State(state): State<Arc<ApiState>>,
    you: Session<ReadsReport>,
) -> Result<Response, ApiError> {
    let id = you.review.id.clone();
    let parts = parts(&state, you.review).await?;
    Ok(attachment(
        &id,
        "json",
        "application/json",
        export::json(&parts).to_string(),
    ))
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
            format: EXPORT_FORMAT,
            ..entry
        })
        .await?;
    Ok(())
}

/// Whether the review is in the library now, and its page there when it is.
#[derive(Debug, Serialize)]
pub(super) struct PublishResponse {
    published: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
    published: bool,
}

/// `POST /api/reviews/{id}/publish`: the facilitator puts a closed review in the library (or
/// takes it out).
pub(super) async fn publish(
    State(state): State<Arc<ApiState>>,
    you: Session<Facilitates>,
    JsonBody(req): JsonBody<PublishRequest>,
) -> Result<Json<PublishResponse>, ApiError> {
    let review = you.review;
    let id = review.id.clone();
    if !req.published {
        state.records.unpublish(&id).await?;
        return Ok(Json(PublishResponse {
            published: false,
            link: None,
        }));
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
            published_at: now_ms(),
            markdown: export::markdown(&parts),
            format: EXPORT_FORMAT,
        })
        .await?;
    tracing::info!(review = %id, "review published");
    Ok(Json(PublishResponse {
        published: true,
        link: Some(format!("/library/{id}")),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LibraryQuery {
    #[serde(default)]
    q: String,
}

/// A published review, as it was when published.
#[derive(Debug, Serialize)]
pub(super) struct LibraryEntry {
    id: String,
    title: String,
    incident_date: Option<String>,
    severity: Option<String>,
    published_at: u64,
}

/// The published reviews a search found, newest first.
#[derive(Debug, Serialize)]
pub(super) struct LibraryList {
    reviews: Vec<LibraryEntry>,
}

/// A published review with its Markdown.
#[derive(Debug, Serialize)]
pub(super) struct PublishedReview {
    id: String,
    title: String,
    incident_date: Option<String>,
    severity: Option<String>,
    published_at: u64,
    markdown: String,
}

/// `GET /api/library?q=`: published reviews, searchable by title and text; no session needed.
pub(super) async fn library(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<LibraryQuery>, QueryRejection>,
) -> Result<Json<LibraryList>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "the only query parameter is q",
        ));
    };
    if q.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            "a search is at most 200 characters",
        ));
    }
    let reviews = state
        .records
        .search(&q.q)?
        .into_iter()
        .take(MAX_LIBRARY_RESULTS)
        .map(|p| LibraryEntry {
            id: p.id,
            title: p.title,
            incident_date: p.incident_date,
            severity: p.severity,
            published_at: p.published_at,
        })
        .collect();
    Ok(Json(LibraryList { reviews }))
}

/// `GET /api/library/{id}`: a published review as Markdown.
pub(super) async fn library_entry(
    State(state): State<Arc<ApiState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PublishedReview>, ApiError> {
    let mut p = state.records.published(&id)?;
    if p.is_stale() {
        // Published by an older export (before issue 16: unescaped text): written again from
        // the review's documents, once, before anyone is served it.
        refresh_library(&state, &id).await?;
        p = state.records.published(&id)?;
    }
    Ok(Json(PublishedReview {
        id: p.id,
        title: p.title,
        incident_date: p.incident_date,
        severity: p.severity,
        published_at: p.published_at,
        markdown: p.markdown,
    }))
}
