//! How handlers read and change a review's documents: every job runs on the document's owner
//! (`documents::doc`), a command on the discussion only once the review's phase, as it is on the
//! owner's task, allows it, and a refused command changes nothing.

use debrief_proto::schema::{document_name, DocKind};

use super::state::ApiState;
use crate::error::ApiError;
use crate::reviews::policy::Phase;
use crate::reviews::problem::{Problem, ProblemKind};
use crate::reviews::threads::Outcome;

/// Reads one of a review's documents on its owner's task.
pub async fn read_doc<T, F>(
    state: &ApiState,
    review: &str,
    kind: DocKind,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> T + Send + 'static,
{
    Ok(state
        .registry
        .open(&document_name(review, kind))
        .read(f)
        .await?)
}

/// Runs a command on the review's discussion document.
pub async fn on_discussion<T, F>(state: &ApiState, review: &str, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> Outcome<T> + Send + 'static,
{
    let result = state
        .registry
        .open(&document_name(review, DocKind::Discussion))
        .run(move |doc| {
            let (result, update) = f(doc);
            // A refused command changed nothing.
            let update = if result.is_ok() { update } else { None };
            (result, update)
        })
        .await?;
    Ok(result?)
}

/// Runs a command on the discussion document once `allowed` accepts the review's phase as it is
/// on the document's task, so that a concurrent phase move cannot let a late command in.
pub async fn in_phase<T, F, A>(
    state: &ApiState,
    review: &str,
    allowed: A,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&yrs::Doc) -> Outcome<T> + Send + 'static,
    A: FnOnce(Phase) -> Result<(), Problem> + Send + 'static,
{
    let reviews = state.reviews.clone();
    let id = review.to_owned();
    on_discussion(state, review, move |doc| match reviews.phase(&id) {
        Some(phase) => match allowed(phase) {
            Ok(()) => f(doc),
            Err(p) => (Err(p), None),
        },
        None => (
            Err(Problem::new(
                ProblemKind::NotFound,
                "unknown_review",
                "the review is gone",
            )),
            None,
        ),
    })
    .await
}

/// Tells every open document of a review to decide its connections' access again.
pub async fn reauthorize(state: &ApiState, review: &str) {
    for kind in DocKind::ALL {
        if let Some(handle) = state.registry.get(&document_name(review, kind)) {
            handle.reauthorize().await;
        }
    }
}
