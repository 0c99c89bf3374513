//! Learning across reviews, over REST: a review's contributing factors (tagged by the
//! facilitator and authors, from the server's list or their own) and its team (set by the
//! facilitator), which the library's recurring-factors view and the culture pulse's trend read.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::{self, said};
use super::request::{Facilitates, JsonBody, Member, Session};
use super::reviews::ReviewWithYou;
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::fields::{validate_factors, validate_team};
use crate::reviews::records::Published;

/// A review's contributing factors, all of them (to change one, send the list without it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FactorsRequest {
    /// At most 12 once normalised (trimmed, inner whitespace collapsed, lower case) and with
    /// duplicates dropped; each 1 to 40 characters of letters, digits, spaces and - / & ' . ( ).
    /// From the server's `factor_choices` or free tags. An empty list takes every factor off.
    #[schema(max_items = 64)]
    factors: Vec<String>,
}

/// Most factors a request may send before duplicates are dropped: a form sends a few; this
/// bounds the work of a flood.
const MAX_FACTORS_SENT: usize = 64;

/// `POST /api/reviews/{id}/factors`: the facilitator or an author sets the contributing factors.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/factors",
    operation_id = "setFactors",
    tag = "reviews",
    summary = "Set the review's contributing factors (facilitator and authors, in every phase).",
    description = "The session and the role are checked before the body is read. A published \
    review's library entry takes the new factors at once.",
    params(openapi::ReviewIdParam),
    request_body = FactorsRequest,
    responses(
        (status = 200, description = "The review with its factors, as seen by the caller.", body = ReviewWithYou),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `invalid_factor`: a factor is empty once trimmed, \
            over 40 characters, or holds a character other than letters, digits, spaces and - / & \
            ' . ( ); `too_many_factors`: more than 12 different factors (or more than 64 sent).",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            only the facilitator and authors tag contributing factors.",
            body = ErrorBody,
        ),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_UNWRITABLE, body = ErrorBody),
    ),
)]
pub(super) async fn set_factors(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
    body: Result<JsonBody<FactorsRequest>, ApiError>,
) -> Result<Json<ReviewWithYou>, ApiError> {
    crate::reviews::policy::may_tag_factors(you.session.role)
        .map_err(crate::reviews::problem::Problem::from)?;
    let JsonBody(req) = body?;
    if req.factors.len() > MAX_FACTORS_SENT {
        return Err(ApiError::bad_request(
            "too_many_factors",
            "a review has at most 12 contributing factors",
        ));
    }
    let factors = validate_factors(&req.factors)?;
    let review = state
        .reviews
        .set_factors(&you.session, factors.clone())
        .await?;
    if let Ok(entry) = state.records.published(&review.id) {
        state
            .records
            .publish(&Published { factors, ..entry })
            .await?;
    }
    Ok(Json(
        ReviewWithYou::new(&state, &review, &you.session).await,
    ))
}

/// The review's team.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamRequest {
    /// 1 to 60 characters once trimmed (inner whitespace collapsed), without control characters;
    /// null: no team.
    #[schema(
        required = true,
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    team: Option<String>,
}

/// `POST /api/reviews/{id}/team`: the facilitator sets or clears the review's team.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/team",
    operation_id = "setTeam",
    tag = "reviews",
    summary = "Set or clear the team the review belongs to (facilitator only, in every phase).",
    description = "The session and the role are checked before the body is read. The team decides \
    which trend the review's culture pulse joins (`GET /api/reviews/{id}/pulse/trend`).",
    params(openapi::ReviewIdParam),
    request_body = TeamRequest,
    responses(
        (status = 200, description = "The review with its team, as seen by the caller.", body = ReviewWithYou),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `invalid_team`: the team, trimmed with its inner \
            whitespace collapsed, is empty, over 60 characters or holds control characters.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_UNWRITABLE, body = ErrorBody),
    ),
)]
pub(super) async fn set_team(
    State(state): State<Arc<ApiState>>,
    you: Session<Facilitates>,
    JsonBody(req): JsonBody<TeamRequest>,
) -> Result<Json<ReviewWithYou>, ApiError> {
    let team = req.team.as_deref().map(validate_team).transpose()?;
    let review = state.reviews.set_team(&you.session, team).await?;
    Ok(Json(
        ReviewWithYou::new(&state, &review, &you.session).await,
    ))
}
