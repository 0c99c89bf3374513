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
use utoipa::{IntoParams, ToSchema};

use super::documents::read_doc;
use super::openapi::{self, said, Export};
use super::request::{ApiPath, Facilitates, JsonBody, ReadsReport, Session};
use super::state::ApiState;
use super::webhooks;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::basics::now_ms;
use crate::reviews::policy::Phase;
use crate::reviews::problem::Problem;
use crate::reviews::records::{
    ActionKinds, FactorCounts, Names, Published, Version, EXPORT_FORMAT,
};
use crate::reviews::renaming::Renaming;
use crate::reviews::sessions::ReviewRecord;
use crate::reviews::webhooks::EventType;
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

/// How people call a version: one label per phase, in the order draft, review, meeting, closed.
#[derive(ToSchema)]
#[allow(dead_code)]
enum VersionLabel {
    #[schema(rename = "as drafted")]
    Drafted,
    #[schema(rename = "as sent for review")]
    SentForReview,
    #[schema(rename = "as at the meeting")]
    AtTheMeeting,
    #[schema(rename = "as closed")]
    Closed,
}

/// A pinned version, without its text.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VersionSummary {
    phase: Phase,
    #[schema(value_type = VersionLabel)]
    label: &'static str,
    /// When it was pinned, milliseconds since the Unix epoch.
    at: u64,
}

/// The pinned versions, in phase order.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VersionList {
    /// At most one per phase, in phase order; a review pins none until its first phase change.
    #[schema(max_items = 4)]
    versions: Vec<VersionSummary>,
}

/// A pinned version with its report and notes as Markdown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Version)]
pub(super) struct VersionView {
    phase: Phase,
    #[schema(value_type = VersionLabel)]
    label: &'static str,
    /// When it was pinned, milliseconds since the Unix epoch.
    at: u64,
    /// The report as it was then, as Markdown.
    report: String,
    /// The meeting notes as they were then, as Markdown (empty before the meeting).
    notes: String,
}

/// `GET /api/reviews/{id}/versions`: the pinned versions.
#[utoipa::path(
    get,
    path = "/api/reviews/{id}/versions",
    operation_id = "listVersions",
    tag = "records",
    summary = "List the versions pinned when the review entered each phase.",
    description = said::READ_AS_REPORT,
    params(openapi::ReviewIdParam),
    responses(
        (
            status = 200,
            description = "The pinned versions, without their text.",
            body = VersionList,
        ),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_REPORT_READER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/api/reviews/{id}/versions/{phase}",
    operation_id = "getVersion",
    tag = "records",
    summary = "Read the version pinned when the review entered a phase, its report and notes as \
    Markdown.",
    description = said::READ_AS_REPORT,
    params(openapi::ReviewIdParam, openapi::PhaseParam),
    responses(
        (status = 200, description = "The version.", body = VersionView),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_REPORT_READER, body = ErrorBody),
        (
            status = 404,
            description = "`unknown_review`: no review has this id; `not_found`: the path matches \
            no route; `unknown_version`: no version was pinned for that phase (the review never \
            entered it, or it is not a phase).",
            body = ErrorBody,
        ),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/api/reviews/{id}/export.md",
    operation_id = "exportMarkdown",
    tag = "records",
    summary = "Download the review as one Markdown document: the report, comments, concerns, action \
    items and meeting notes.",
    description = said::EXPORT_READERS,
    params(openapi::ReviewIdParam),
    responses(
        (
            status = 200,
            description = "The Markdown, as an attachment (`Content-Type: text/markdown; \
            charset=utf-8`).",
            body = String,
            content_type = "text/markdown",
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"review-<id>.md\"`.")),
        ),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_REPORT_READER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 413, description = said::EXPORT_TOO_LARGE, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
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
        export::markdown(&parts, None),
    ))
}

/// `GET /api/reviews/{id}/export.json`.
#[utoipa::path(
    get,
    path = "/api/reviews/{id}/export.json",
    operation_id = "exportJson",
    tag = "records",
    summary = "Download the review as one JSON object: the report and notes as Markdown, comments, \
    concerns and action items as data.",
    description = said::EXPORT_READERS,
    params(openapi::ReviewIdParam),
    responses(
        (
            status = 200,
            description = "The JSON, as an attachment.",
            body = Export,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"review-<id>.json\"`.")),
        ),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_REPORT_READER, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 413, description = said::EXPORT_TOO_LARGE, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
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

/// What publishing `review` now puts in the library: its Markdown export, with `names` kept or
/// replaced by roles.
async fn publication(
    state: &ApiState,
    review: ReviewRecord,
    names: Names,
) -> Result<String, ApiError> {
    let renaming = match names {
        Names::Kept => None,
        Names::Roles => Some(Renaming::new(&state.reviews.sessions(&review.id))),
    };
    let parts = parts(state, review).await?;
    Ok(export::markdown(&parts, renaming.as_ref()))
}

/// Rewrites a published review's library entry from its documents (after moderation), with
/// names as it was published.
pub(super) async fn refresh_library(state: &ApiState, id: &str) -> Result<(), ApiError> {
    let Ok(entry) = state.records.published(id) else {
        return Ok(());
    };
    let Some(review) = state.reviews.record(id) else {
        return Ok(());
    };
    state
        .records
        .publish(&Published {
            markdown: publication(state, review, entry.names).await?,
            format: EXPORT_FORMAT,
            ..entry
        })
        .await?;
    Ok(())
}

/// Whether the review is in the library now, and its page there when it is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum PublishResponse {
    /// In the library, at `link`.
    Published {
        /// Always true.
        #[schema(schema_with = openapi::always_true)]
        published: bool,
        /// The path of the review's page in the library.
        #[schema(pattern = "^/library/[0-9a-f]{32}$")]
        link: String,
    },
    /// Not in the library.
    Unpublished {
        /// Always false.
        #[schema(schema_with = openapi::always_false)]
        published: bool,
    },
}

/// Whether the review should be in the library.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishRequest {
    /// True to put the review in the library (again, replacing what was published), false to
    /// take it out.
    published: bool,
    /// When publishing: `kept` (the default) or `roles`, everyone who joined the review shown
    /// as their role instead of their name.
    #[serde(default)]
    names: Names,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PreviewQuery {
    /// `kept` (the default) or `roles`.
    #[serde(default)]
    #[param(inline)]
    names: Names,
}

/// What would be public: the review as the library would show it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Preview {
    /// The Markdown the library would hold.
    markdown: String,
    /// The same as HTML, as the library page shows it (nothing active in it).
    html: String,
}

/// `GET /api/reviews/{id}/publish?names=`: what publishing would put in the library now.
#[utoipa::path(
    get,
    path = "/api/reviews/{id}/publish",
    operation_id = "previewPublication",
    tag = "records",
    summary = "Preview exactly what publishing the review now would make public (facilitator only).",
    description = "Nothing is stored. With `names=roles`, everyone who joined the review appears \
    as their role (\"Facilitator\", \"Participant 2\"): as comment author, and wherever their \
    display name or a word of it (three letters or more, as written) appears in the text. Names of \
    people who never joined are not known to the server and stay.",
    params(openapi::ReviewIdParam, PreviewQuery),
    responses(
        (status = 200, description = "The publication as Markdown and HTML.", body = Preview),
        (
            status = 400,
            description = "`invalid_query`: a query parameter other than `names`, or `names` not \
            `kept` or `roles`; `invalid_id`: the id is not 32 lower-case hex digits.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn preview(
    State(state): State<Arc<ApiState>>,
    you: Session<Facilitates>,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Json<Preview>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "the only query parameter is names, kept or roles",
        ));
    };
    let markdown = publication(&state, you.review, q.names).await?;
    Ok(Json(Preview {
        html: markdown::html::html(&markdown),
        markdown,
    }))
}

/// `POST /api/reviews/{id}/publish`: the facilitator puts a closed review in the library (or
/// takes it out).
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/publish",
    operation_id = "publishReview",
    tag = "records",
    summary = "Put a closed review in the server's library, or take it out (facilitator only).",
    description = "The session and the role are checked before the body is read. Publishing stores \
    the review's Markdown export as it is now (publishing again replaces it); taking a review out \
    is allowed in every phase and succeeds also when it was not published.",
    params(openapi::ReviewIdParam),
    request_body = PublishRequest,
    responses(
        (
            status = 200,
            description = "Whether the review is now in the library, and its page there.",
            body = PublishResponse,
        ),
        (status = 400, description = said::BAD_BODY, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`not_closed`: only a closed review can be published.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `document_too_large`: the review's report, notes or discussion is at its size limit: \
            the server runs no more changes or checks on it, reads included; \
            `review_quota_exceeded`: the review's documents are at their storage quota (48 MiB \
            together, refused once less than 64 KiB is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_OR_DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn publish(
    State(state): State<Arc<ApiState>>,
    you: Session<Facilitates>,
    JsonBody(req): JsonBody<PublishRequest>,
) -> Result<Json<PublishResponse>, ApiError> {
    let review = you.review;
    let review_record = review.clone();
    let id = review.id.clone();
    if !req.published {
        state.records.unpublish(&id).await?;
        return Ok(Json(PublishResponse::Unpublished { published: false }));
    }
    if review.phase != Phase::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_closed",
            "only a closed review can be published",
        ));
    }
    let markdown = publication(&state, review.clone(), req.names).await?;
    let discussion = read_doc(&state, &id, DocKind::Discussion, meeting::snapshot).await?;
    // The event goes into the outbox in the same flush as the library entry.
    let event = webhooks::event(
        &state,
        EventType::Published,
        &review_record,
        serde_json::json!({ "link": format!("/library/{id}") }),
    );
    let staged = state.webhooks.stage(event).map_err(Problem::from)?;
    let published = state
        .records
        .publish(&Published {
            id: id.clone(),
            title: review.title,
            incident_date: review.incident_date,
            severity: review.severity,
            published_at: now_ms(),
            markdown,
            format: EXPORT_FORMAT,
            names: req.names,
            factors: review.factors,
            action_kinds: ActionKinds::count(discussion.get("actions")),
        })
        .await;
    match &published {
        Ok(_) => state.webhooks.commit(&staged),
        Err(_) => state.webhooks.unstage(&staged),
    }
    published?;
    tracing::info!(review = %id, names = ?req.names, "review published");
    Ok(Json(PublishResponse::Published {
        published: true,
        link: format!("/library/{id}"),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LibraryQuery {
    /// Words to look for in titles and text, at most 200 characters; absent or empty: every
    /// published review.
    #[serde(default)]
    #[param(max_length = 200)]
    q: String,
}

/// A published review, as it was when published.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LibraryEntry {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    /// Null when not given.
    #[schema(required = true, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    incident_date: Option<String>,
    /// Null when not given.
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    severity: Option<String>,
    /// When it was (last) published, milliseconds since the Unix epoch.
    published_at: u64,
    /// Its contributing factors, in lower case.
    #[schema(max_items = 12)]
    factors: Vec<String>,
    /// How many of its action items are of each kind, when it was published.
    action_kinds: ActionKinds,
}

/// The published reviews a search found, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LibraryList {
    /// Newest first, at most 100.
    #[schema(max_items = 100)]
    reviews: Vec<LibraryEntry>,
}

/// A published review with its text, as it was when published.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PublishedReview {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    /// Null when not given.
    #[schema(required = true, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    incident_date: Option<String>,
    /// Null when not given.
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    severity: Option<String>,
    /// When it was (last) published, milliseconds since the Unix epoch.
    published_at: u64,
    /// The review's Markdown export when it was published: the report, comments, concerns,
    /// action items and meeting notes (hidden, retracted and deleted items left out).
    markdown: String,
    /// The same as HTML, ready to show (nothing active in it: raw HTML as text, only web and
    /// mail links, images as links).
    html: String,
    /// Whether people's names were kept or replaced by their roles.
    names: Names,
    /// Its contributing factors, in lower case.
    #[schema(max_items = 12)]
    factors: Vec<String>,
    /// How many of its action items are of each kind, when it was published.
    action_kinds: ActionKinds,
}

/// `GET /api/library?q=`: published reviews, searchable by title and text; no session needed.
#[utoipa::path(
    get,
    path = "/api/library",
    operation_id = "searchLibrary",
    tag = "library",
    summary = "List the published reviews whose title or text holds every word of `q`, newest first \
    (no session needed).",
    params(LibraryQuery),
    responses(
        (
            status = 200,
            description = "At most 100 published reviews, without their text.",
            body = LibraryList,
        ),
        (
            status = 400,
            description = "`invalid_query`: a query parameter other than `q`, `q` given twice, or \
            `q` over 200 characters.",
            body = ErrorBody,
        ),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
    security(),
)]
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
            factors: p.factors,
            action_kinds: p.action_kinds,
        })
        .collect();
    Ok(Json(LibraryList { reviews }))
}

/// `GET /api/library/{id}`: a published review as Markdown.
#[utoipa::path(
    get,
    path = "/api/library/{id}",
    operation_id = "getLibraryEntry",
    tag = "library",
    summary = "Read a published review, as Markdown (no session needed).",
    params(openapi::PublishedIdParam),
    responses(
        (status = 200, description = "The published review.", body = PublishedReview),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (
            status = 404,
            description = "`not_published`: no published review has this id; `not_found`: the path \
            matches no route.",
            body = ErrorBody,
        ),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
    security(),
)]
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
        html: markdown::html::html(&p.markdown),
        markdown: p.markdown,
        names: p.names,
        factors: p.factors,
        action_kinds: p.action_kinds,
    }))
}

/// One contributing factor over time.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FactorRow {
    /// The factor, in lower case.
    #[schema(min_length = 1, max_length = 40)]
    factor: String,
    /// Published reviews tagged with it, in all.
    total: u32,
    /// Published reviews tagged with it in each month of `months`, in the same order.
    counts: Vec<u32>,
}

/// How often each contributing factor was tagged on published reviews, month by month.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FactorTrend {
    /// Every month (`YYYY-MM`, UTC) from the first to the last that has a published review,
    /// months without one included. A review's month is its incident's, or the month it was
    /// published when it has no incident day.
    months: Vec<String>,
    /// Each factor tagged on a published review, most frequent first (then by name).
    factors: Vec<FactorRow>,
    /// Published reviews counted, with factors or without.
    reviews: u32,
}

/// `GET /api/library/factors`: recurring contributing factors over published reviews.
#[utoipa::path(
    get,
    path = "/api/library/factors",
    operation_id = "libraryFactors",
    tag = "library",
    summary = "Count how often each contributing factor was tagged on published reviews, per month \
    (no session needed).",
    description = "Only published reviews count, as the library shows them; a review's factors \
    are kept up to date in the library when they are tagged after publishing.",
    responses(
        (status = 200, description = "The months and each factor's counts.", body = FactorTrend),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
    security(),
)]
pub(super) async fn library_factors(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<FactorTrend>, ApiError> {
    let counts = FactorCounts::of(&state.records.all_published()?);
    Ok(Json(FactorTrend {
        months: counts.months,
        factors: counts
            .factors
            .into_iter()
            .map(|(factor, counts)| FactorRow {
                factor,
                total: counts.iter().sum(),
                counts,
            })
            .collect(),
        reviews: counts.reviews,
    }))
}
