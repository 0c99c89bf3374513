//! `/api/reviews` and `/api/join`: creating a review (its documents seeded first), joining it
//! with an invite link, reading it, moving its phase (and what follows from a move), and
//! rotating its invite links.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use debrief_proto::schema::{document_name, DocKind};
use serde::{Deserialize, Serialize};

use super::documents::{on_discussion, reauthorize};
use super::records::pin_version;
use super::request::{ApiPath, ClientAddr, JsonBody, JsonOrEmpty, MayCreate, Member, Session};
use super::state::ApiState;
use crate::error::ApiError;
use crate::reviews::anonymous::release;
use crate::reviews::basics::now_ms;
use crate::reviews::fields::{validate_date, validate_severity, validate_title};
use crate::reviews::policy::{Phase, ReleaseMode, Role};
use crate::reviews::sessions::{NewReview, ReviewRecord, Reviews, SessionRecord};
use crate::reviews::{markdown, meeting, report, threads};

/// Largest body of `POST /api/reviews`, which may carry a Markdown report to import of up to
/// [`MAX_IMPORT_BYTES`]: twice that leaves room for JSON escapes (newlines, quotes) of a real
/// report. Creating reviews is rate-limited server-wide, so few such bodies are read at once.
pub const MAX_CREATE_BODY_BYTES: usize = 1024 * 1024;

/// Largest Markdown report accepted at creation: a long post-mortem is tens of kilobytes.
pub const MAX_IMPORT_BYTES: usize = 512 * 1024;

/// The names of a review's documents, for the WebSocket endpoints.
#[derive(Debug, Serialize)]
pub(super) struct Documents {
    report: String,
    discussion: String,
    notes: String,
}

/// Number of sessions of each role.
#[derive(Debug, Serialize)]
pub(super) struct Participants {
    facilitator: usize,
    author: usize,
    participant: usize,
    observer: usize,
}

/// How the review releases anonymous items.
#[derive(Debug, Serialize)]
pub(super) struct AnonymousSettings {
    release: ReleaseMode,
    cadence_ms: u64,
    small_group_anonymity: bool,
}

/// The session a review is seen through.
#[derive(Debug, Serialize)]
pub(super) struct You {
    role: Role,
    participant: String,
    name: String,
}

/// A review as the API shows it; `you` when it is read through a session.
#[derive(Debug, Serialize)]
pub(super) struct ReviewView {
    id: String,
    title: String,
    incident_date: Option<String>,
    severity: Option<String>,
    phase: Phase,
    created_at: u64,
    participants: Participants,
    documents: Documents,
    anonymous: AnonymousSettings,
    read_count: u64,
    server_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    you: Option<You>,
}

impl ReviewView {
    fn new(state: &ApiState, review: &ReviewRecord, you: Option<&SessionRecord>) -> Self {
        let counts = state.reviews.counts(&review.id);
        let count = |r: Role| counts.get(&r).copied().unwrap_or(0);
        ReviewView {
            id: review.id.clone(),
            title: review.title.clone(),
            incident_date: review.incident_date.clone(),
            severity: review.severity.clone(),
            phase: review.phase,
            created_at: review.created_at,
            participants: Participants {
                facilitator: count(Role::Facilitator),
                author: count(Role::Author),
                participant: count(Role::Participant),
                observer: count(Role::Observer),
            },
            documents: Documents {
                report: document_name(&review.id, DocKind::Report),
                discussion: document_name(&review.id, DocKind::Discussion),
                notes: document_name(&review.id, DocKind::Notes),
            },
            anonymous: AnonymousSettings {
                release: review.release,
                cadence_ms: state.anonymity.cadence().as_millis() as u64,
                small_group_anonymity: review.small_group_anonymity,
            },
            read_count: state.records.published_read_count(&review.id),
            server_time: now_ms(),
            you: you.map(|s| You {
                role: s.role,
                participant: s.participant.clone(),
                name: s.name.clone(),
            }),
        }
    }
}

/// An invite link for one role.
#[derive(Debug, Serialize)]
pub(super) struct Invite {
    token: String,
    link: String,
}

impl Invite {
    fn new(token: &str) -> Self {
        Invite {
            token: token.to_owned(),
            link: format!("/join#{token}"),
        }
    }
}

/// The answer to `POST /api/reviews`: the review (no `you`: creating opens no session) and one
/// invite link per role, the only copies.
#[derive(Debug, Serialize)]
pub(super) struct CreateResponse {
    review: ReviewView,
    invites: BTreeMap<&'static str, Invite>,
}

/// The answer to `POST /api/join`: the session token (the only copy) and the review.
#[derive(Debug, Serialize)]
pub(super) struct JoinResponse {
    session: String,
    review: ReviewView,
}

/// The answer to rotating an invite link.
#[derive(Debug, Serialize)]
pub(super) struct RotateResponse {
    role: Role,
    invite: Invite,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    title: String,
    incident_date: Option<String>,
    severity: Option<String>,
    anonymous_release: Option<String>,
    small_group_anonymity: Option<bool>,
    report_markdown: Option<String>,
}

/// `POST /api/reviews`: creates a review, seeds its documents, returns the invite links.
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    _: MayCreate,
    JsonBody(req): JsonBody<CreateRequest, MAX_CREATE_BODY_BYTES>,
) -> Result<Response, ApiError> {
    let new = NewReview {
        title: validate_title(&req.title)?,
        incident_date: req
            .incident_date
            .as_deref()
            .map(validate_date)
            .transpose()?,
        severity: req.severity.as_deref().map(validate_severity).transpose()?,
        release: match req.anonymous_release.as_deref() {
            None | Some("batch") => ReleaseMode::Batch,
            Some("meeting") => ReleaseMode::Meeting,
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
    let id = Reviews::new_id();
    // The documents exist before the review does: a crash in between leaves unreachable
    // documents, never a review with an empty report.
    let title = new.title.clone();
    let report_doc = state.registry.open(&document_name(&id, DocKind::Report));
    let seeded = match req.report_markdown {
        Some(md) => {
            report_doc
                .run(move |doc| match markdown::import(doc, &md) {
                    Ok(update) => (Ok(()), Some(update)),
                    Err(_) => (Err(()), None),
                })
                .await?
        }
        None => {
            report_doc
                .run(move |doc| (Ok(()), Some(report::seed(doc, &title))))
                .await?
        }
    };
    if seeded.is_err() {
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
    let body = CreateResponse {
        review: ReviewView::new(&state, &created.review, None),
        invites: created
            .invites
            .iter()
            .map(|(role, token)| (role.as_str(), Invite::new(token)))
            .collect(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinRequest {
    invite: String,
    name: String,
}

/// `POST /api/join`: exchanges an invite token and a display name for a session. The address
/// is counted before the body is read.
pub(super) async fn join(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    body: Result<JsonBody<JoinRequest>, ApiError>,
) -> Result<Response, ApiError> {
    state.reviews.guards.may_join(addr)?;
    let JsonBody(req) = body?;
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
    let counted = on_discussion(&state, &review.id, move |doc| meeting::people(doc, people)).await;
    if counted.is_err() {
        tracing::warn!(review = %review.id, "could not update the headcount");
    }
    let body = JoinResponse {
        session: token,
        review: ReviewView::new(&state, &review, Some(&session)),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/reviews/{id}`.
pub(super) async fn read(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
) -> Json<ReviewView> {
    Json(ReviewView::new(&state, &you.review, Some(&you.session)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PhaseRequest {
    phase: String,
}

/// `POST /api/reviews/{id}/phase`: the facilitator moves the review to its next phase; open
/// connections get their new access at once. (Who may move it is checked by
/// [`Reviews::set_phase`], after the body.)
pub(super) async fn move_phase(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
    JsonBody(req): JsonBody<PhaseRequest>,
) -> Result<Json<ReviewView>, ApiError> {
    let Session { session, .. } = you;
    let id = session.review.clone();
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
        return Ok(Json(ReviewView::new(&state, &review, Some(&session))));
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
    let due =
        to == Phase::Closed || (to == Phase::Meeting && review.release == ReleaseMode::Meeting);
    if due {
        // The meeting start (in meeting mode) and the close are release boundaries: nothing
        // held is left behind the record.
        let at = state.anonymity.boundary_at(now_ms());
        release::release(&state.releases(), at, Some(&id), to == Phase::Closed).await;
    }
    pin_version(&state, &id, to).await?;
    Ok(Json(ReviewView::new(&state, &review, Some(&session))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    #[serde(default)]
    revoke_sessions: bool,
}

/// `POST /api/reviews/{id}/invites/{role}`: replaces a role's invite link. The role is checked
/// before the body, and who may rotate by [`Reviews::rotate`].
pub(super) async fn rotate(
    State(state): State<Arc<ApiState>>,
    ApiPath((id, role)): ApiPath<(String, String)>,
    you: Session<Member>,
    body: Result<JsonOrEmpty<RotateRequest>, ApiError>,
) -> Result<Json<RotateResponse>, ApiError> {
    let Some(role) = Role::parse(&role) else {
        return Err(ApiError::bad_request(
            "invalid_role",
            "the role is one of facilitator, author, participant, observer",
        ));
    };
    let JsonOrEmpty(req) = body?;
    let rotated = state
        .reviews
        .rotate(&you.session, role, req.revoke_sessions)
        .await;
    if req.revoke_sessions {
        reauthorize(&state, &id).await;
    }
    let token = rotated?;
    tracing::info!(review = %id, role = role.as_str(), "invite link rotated");
    Ok(Json(RotateResponse {
        role,
        invite: Invite::new(&token),
    }))
}
