//! The culture pulse over REST: answering it once a review is closed (held and released like an
//! anonymous item, answering 202 with when it counts), reading a review's results, and the trend
//! across its team's reviews. What is read is only ever an aggregate of at least five answers;
//! the session that answers is checked and counted, never stored with the answer, logged or sent
//! (`docs/anonymity.md`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actions::MAX_SESSIONS;
use super::me::linked_sessions;
use super::openapi::{self, said};
use super::request::{JsonBody, Member, Session, SignedIn};
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::basics::review_month;
use crate::reviews::pulse::{self, Aggregate, MIN_ANSWERS, STATEMENTS};

/// One person's answers.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PulseRequest {
    /// One whole number per statement, in the order of `statements` in `GET …/pulse`: from 1
    /// (strongly disagree) to 7 (strongly agree).
    #[schema(min_items = 5, max_items = 5, value_type = Vec<PulseScore>)]
    answers: Vec<i64>,
}

/// One statement's score: 1 (strongly disagree) to 7 (strongly agree). Only in the API's
/// description: answers are read as whole numbers and checked by `pulse::validate_scores`, so
/// that a wrong one gets `invalid_answers` rather than a JSON error.
pub(super) struct PulseScore;

impl utoipa::PartialSchema for PulseScore {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(7))
            .description(Some("1 (strongly disagree) to 7 (strongly agree)."))
            .into()
    }
}

impl ToSchema for PulseScore {}

/// An answer held until its release.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PulseHeld {
    /// The next release boundary, milliseconds since the Unix epoch: the earliest the answer
    /// counts.
    #[schema(required = true)]
    release_after: Option<u64>,
    /// The latest it counts: a batch only one person contributed to waits for someone else's
    /// answers for up to ten boundaries.
    #[schema(required = true)]
    release_by: Option<u64>,
}

/// What the session reading the pulse may do with it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PulseYou {
    /// Whether this session may answer now: the review is closed, it is the facilitator, an
    /// author or a participant who joined before the close, and it has not answered yet.
    may_answer: bool,
    /// Whether this session answered (told only to itself).
    answered: bool,
}

/// A review's pulse: the statements, and the results once at least five people answered.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PulseView {
    /// The statements, in the order answers give their scores.
    #[schema(min_items = 5, max_items = 5)]
    statements: Vec<&'static str>,
    /// Answers needed before results are shown (5).
    min_answers: usize,
    /// The results of the released answers; null until at least 5 people answered (how many
    /// answered until then is not said).
    #[schema(required = true)]
    results: Option<Aggregate>,
    you: PulseYou,
}

/// One month of a team's trend.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PulseMonth {
    /// `YYYY-MM`: the month of a review's incident, or of its creation without an incident day.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}$")]
    month: String,
    /// The team's reviews of the month whose pulse is shown.
    reviews: u32,
    /// Their answers together.
    results: Aggregate,
}

/// The culture pulse across the reviews of a team, month by month.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PulseTrend {
    /// The review's team; null when it has none (then `months` is empty).
    #[schema(required = true, min_length = 1, max_length = 60)]
    team: Option<String>,
    /// Oldest first; only months with a review whose own pulse is shown (at least 5 answers),
    /// and only such reviews count in them.
    months: Vec<PulseMonth>,
}

/// `POST /api/reviews/{id}/pulse`: answers the culture pulse, anonymously.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/pulse",
    operation_id = "answerPulse",
    tag = "pulse",
    summary = "Answer the review's culture pulse, once, anonymously (facilitator, authors and \
    participants who took part, once the review is closed).",
    description = "The session, the phase, the role and the rate limit are checked before the \
    body is read. The answer is held without anything about the session and counted with the \
    release at `release_after` (or later, up to `release_by`, if nobody else answered in the \
    meantime); nothing about who answered is stored with it, logged or returned.",
    params(openapi::ReviewIdParam),
    request_body = PulseRequest,
    responses(
        (status = 202, description = "Held: it counts with a release.", body = PulseHeld),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `invalid_answers`: not one whole number from 1 to \
            7 for each of the 5 statements.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            observers do not answer the pulse, nor does a session that joined after the review \
            closed.",
            body = ErrorBody,
        ),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`not_closed`: the pulse opens once the review is closed; \
            `already_answered`: this session already answered; `too_many_held`: many anonymous \
            submissions of this review are waiting for their release.",
            body = ErrorBody,
        ),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 429, description = said::ANONYMOUS_RATE, body = ErrorBody),
        (status = 503, description = said::HOLD_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub(super) async fn answer(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
    body: Result<JsonBody<PulseRequest>, ApiError>,
) -> Result<Response, ApiError> {
    pulse::may_answer(&you.session, &you.review)?;
    state.anonymity.rate_limit(&you.token)?;
    let JsonBody(req) = body?;
    let scores = pulse::validate_scores(&req.answers)?;
    state
        .anonymity
        .hold_pulse(&you.review.id, &you.token, scores)
        .await?;
    let (release_after, release_by) = state.anonymity.release_times(&you.review, 0).unzip();
    let held = PulseHeld {
        release_after,
        release_by,
    };
    Ok((StatusCode::ACCEPTED, Json(held)).into_response())
}

/// `GET /api/reviews/{id}/pulse`: the statements and, from five answers, the results.
#[utoipa::path(
    get,
    path = "/api/reviews/{id}/pulse",
    operation_id = "getPulse",
    tag = "pulse",
    summary = "Read the review's culture pulse: its statements, and its results once at least 5 \
    people answered (everyone in the review).",
    params(openapi::ReviewIdParam),
    responses(
        (status = 200, description = "The pulse.", body = PulseView),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::OTHER_REVIEW, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
)]
pub(super) async fn read(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
) -> Result<Json<PulseView>, ApiError> {
    let id = &you.review.id;
    let answered = state.anonymity.answered_pulse(id, &you.token)?;
    let results = state
        .anonymity
        .shown_pulse(id, pulse::next_shown)
        .await?
        .as_ref()
        .and_then(Aggregate::from_shown);
    Ok(Json(PulseView {
        statements: STATEMENTS.to_vec(),
        min_answers: MIN_ANSWERS,
        results,
        you: PulseYou {
            may_answer: !answered && pulse::may_answer(&you.session, &you.review).is_ok(),
            answered,
        },
    }))
}

/// Which of the team's other reviews a trend may include: those the asker is in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PulseTrendRequest)]
pub(super) struct TrendRequest {
    /// Other sessions the asker holds (a browser's remembered ones), at most 100; the trend
    /// includes a review of the team only when one of them, the bearer, or (with sign-in) a
    /// session the signed-in person joined belongs to it. Unknown ones and those of other
    /// teams' reviews are left out.
    #[serde(default)]
    #[schema(max_items = 100)]
    sessions: Vec<String>,
}

/// `POST /api/reviews/{id}/pulse/trend`: the pulse across the reviews of this review's team that
/// the asker is in.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/pulse/trend",
    operation_id = "getPulseTrend",
    tag = "pulse",
    summary = "Read the culture pulse across the reviews of this review's team that the asker \
    took part in, per month (everyone in the review).",
    description = "A team is a name a facilitator types, so anyone who creates a review could \
    name any team: the trend therefore shows only reviews whose own results the asker may read \
    (this one, and the team's reviews a session in the body belongs to), never more. A month \
    holds only the reviews whose own pulse is shown (at least 5 answers), so no review's answers \
    are shown before its own results are. POST because the sessions are in the body.",
    params(openapi::ReviewIdParam),
    request_body = TrendRequest,
    responses(
        (status = 200, description = "The team's trend.", body = PulseTrend),
        (
            status = 400,
            description = "`invalid_path`: the review id is not 32 lowercase hexadecimal digits; \
            `invalid_json`: the body is not JSON of the documented shape; `too_many_sessions`: \
            over 100 sessions.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::OTHER_REVIEW, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_UNREADABLE, body = ErrorBody),
    ),
)]
pub(super) async fn trend(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
    SignedIn(person): SignedIn,
    JsonBody(req): JsonBody<TrendRequest>,
) -> Result<Json<PulseTrend>, ApiError> {
    if req.sessions.len() > MAX_SESSIONS {
        return Err(ApiError::bad_request(
            "too_many_sessions",
            format!("send at most {MAX_SESSIONS} sessions"),
        ));
    }
    let Some(team) = you.review.team.clone() else {
        return Ok(Json(PulseTrend {
            team: None,
            months: Vec::new(),
        }));
    };
    // The reviews the asker is in: this one, those of the sessions sent, and with sign-in those
    // the signed-in person joined from any browser.
    let linked = person
        .map(|p| linked_sessions(&state, &p))
        .unwrap_or_default();
    let mut joined: HashSet<String> = req
        .sessions
        .iter()
        .filter_map(|t| state.reviews.by_token(t))
        .chain(linked)
        .map(|(_, review)| review.id)
        .collect();
    joined.insert(you.review.id.clone());
    let mut reviews = Vec::new();
    for review in state
        .reviews
        .of_team(&team)
        .into_iter()
        .filter(|r| joined.contains(&r.id))
    {
        let month = review_month(review.incident_date.as_deref(), review.created_at);
        let shown = state
            .anonymity
            .shown_pulse(&review.id, pulse::next_shown)
            .await?;
        reviews.push((month, shown));
    }
    let months = pulse::trend(reviews)
        .into_iter()
        .map(|m| PulseMonth {
            month: m.month,
            reviews: m.reviews,
            results: m.aggregate,
        })
        .collect();
    Ok(Json(PulseTrend {
        team: Some(team),
        months,
    }))
}
