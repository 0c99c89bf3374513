//! Why the review domain refuses a request: a [`Problem`] of a [`ProblemKind`], with a stable
//! code and one human sentence. The domain knows no HTTP; the API maps each kind to one status
//! (`api/errors.rs`). Every refusal of the phase table is a 403 problem ([`Refusal`]).

use crate::reviews::policy::Refusal;
use crate::storage::store::StoreError;

/// What kind of failure a [`Problem`] is; the API maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request is malformed or a value is out of range (400).
    BadInput,
    /// No valid credential (401).
    Unauthenticated,
    /// The credential does not allow this (403).
    Forbidden,
    /// The thing named does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// A value is too large (413).
    TooLarge,
    /// Too many requests in a short time (429).
    TooManyRequests,
    /// A referenced value does not resolve (422).
    Unprocessable,
    /// The server cannot do it now (503).
    Unavailable,
}

/// A refused request: kind, stable code and one human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Maps to the HTTP status.
    pub kind: ProblemKind,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
    /// For a refusal that ends: how long until trying again makes sense.
    pub retry_after: Option<std::time::Duration>,
}

impl Problem {
    /// A problem of `kind`.
    pub fn new(kind: ProblemKind, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `rate_limited`, to try again after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Problem {
            retry_after: Some(wait),
            ..Problem::new(ProblemKind::TooManyRequests, "rate_limited", message)
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "review store failed");
        Problem::new(
            ProblemKind::Unavailable,
            "store_unavailable",
            "the store cannot be written; try again",
        )
    }
}

impl From<Refusal> for Problem {
    /// The phase table refused: 403 with the table's code and sentence.
    fn from(r: Refusal) -> Self {
        Problem::new(ProblemKind::Forbidden, r.code, r.message)
    }
}
