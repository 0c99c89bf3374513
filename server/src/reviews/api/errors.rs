//! How the review domain's refusals become HTTP errors, in one place: a [`Problem`] by its kind,
//! a document job's failure by what went wrong. (A refusal of the phase table is a `Problem`
//! already: `From<Refusal> for Problem`.)

use axum::http::StatusCode;

use crate::documents::doc::JobError;
use crate::error::ApiError;
use crate::reviews::problem::{Problem, ProblemKind};

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        let status = match p.kind {
            ProblemKind::BadInput => StatusCode::BAD_REQUEST,
            ProblemKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::Conflict => StatusCode::CONFLICT,
            ProblemKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let e = ApiError::new(status, p.code, p.message);
        match p.retry_after {
            Some(wait) => e.retry_after(wait),
            None => e,
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "document_unavailable",
                "the document cannot be changed right now; try again",
            ),
            JobError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "document_too_large",
                "the review's discussion is at its size limit",
            ),
            JobError::QuotaExceeded => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::documents::quota::CODE,
                "the review's documents are at their storage quota; they can still be read",
            ),
        }
    }
}
