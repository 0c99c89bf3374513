//! The per-review storage quota: a review's documents (report, discussion, notes) together may
//! occupy at most [`crate::limits::MAX_REVIEW_BYTES`], counted as the document size limit counts
//! (compacted state plus the log since). Documents that belong to no review have only the
//! document size limit.

use debrief_proto::schema::{document_name, parse_document_name, DocKind};

use crate::storage::store::Store;

/// Room a server write (a REST request: a comment, a thread) needs left in the quota: the
/// largest request body. How much a job adds is known only once it has run on the document, so
/// it is refused beforehand when less than that is left, and REST writes never pass the quota.
pub const JOB_HEADROOM: u64 = 64 * 1024;

/// The reason a refused write is closed with (after close code 4413) and the REST error code.
pub const CODE: &str = "review_quota_exceeded";

/// Whether `name`'s review would pass `limit` bytes once `name` itself holds `own` bytes: the
/// other documents of the review are read from the store (see
/// [`Store::stored_bytes`]). A store error is logged and lets the write through: the quota
/// bounds disk use, it must not make a document unwritable when a size cannot be read.
pub fn exceeded(store: &Store, name: &str, own: u64, limit: u64) -> bool {
    let Some((review, _)) = parse_document_name(name) else {
        return false;
    };
    let mut total = own;
    for kind in DocKind::ALL {
        let other = document_name(review, kind);
        if other == name {
            continue;
        }
        match store.stored_bytes(&other) {
            Ok(bytes) => total = total.saturating_add(bytes),
            Err(e) => {
                tracing::warn!(doc = %other, error = %e, "could not read a document's size for the review quota");
                return false;
            }
        }
    }
    total > limit
}

/// The close reason and REST message of a refusal.
pub fn message(limit: u64) -> String {
    format!("{CODE}: the review's documents may hold at most {limit} bytes together")
}
