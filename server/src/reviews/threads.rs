//! The `discussion` document on the server side: the review's state and the comment threads.
//! Only the server writes this document; every function here runs as a job on its owner
//! ([`crate::doc::DocHandle::run`]), checks the command against the document, makes one change
//! in one transaction, and returns the result with the encoded update.
//!
//! Shape (see `docs/schema.md`): root map `review` {title, phase}; root map `threads`:
//! id → map {id, anchor: {start, end, quote} | null, resolved, createdAt, comments: array of
//! maps {id, body, author: {participant, name}, createdAt, editedAt?, deleted}}.

use std::collections::HashMap;

use debrief_proto::schema::discussion::{field, REVIEW, THREADS};
use yrs::types::ToJson;
use yrs::{Any, Array, ArrayPrelim, ArrayRef, Doc, Map, MapPrelim, MapRef, Out, Transact};

use super::{now_ms, random_hex, Problem, ProblemKind};

/// Most threads in one review: far above any real review, low enough that a flood cannot grow
/// the discussion document without bound.
pub const MAX_THREADS_PER_REVIEW: u32 = 1_000;
/// Most comments in one thread.
pub const MAX_COMMENTS_PER_THREAD: u32 = 500;
/// Longest comment body, in characters.
pub const MAX_BODY_CHARS: usize = 4_000;
/// Longest quoted text of an anchor, in characters.
pub const MAX_QUOTE_CHARS: usize = 500;

/// Who wrote a comment, stamped by the server from the session.
#[derive(Debug, Clone)]
pub struct Author {
    /// The session's participant id.
    pub participant: String,
    /// The session's display name.
    pub name: String,
}

/// A validated anchor: the two ends as the client encoded them (base64) and the quote.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// Base64 of the start position.
    pub start: String,
    /// Base64 of the end position.
    pub end: String,
    /// The quoted text.
    pub quote: String,
}

/// Result of a job on the discussion: the value for the client, and the update it made.
pub type Outcome<T> = (Result<T, Problem>, Option<Vec<u8>>);

/// Writes the review's state into a new discussion document.
pub fn seed(doc: &Doc, title: &str, phase: &str) -> Vec<u8> {
    let review = doc.get_or_insert_map(REVIEW);
    doc.get_or_insert_map(THREADS);
    let mut txn = doc.transact_mut();
    review.insert(&mut txn, field::TITLE, title);
    review.insert(&mut txn, field::PHASE, phase);
    txn.encode_update_v1()
}

/// Records the review's new phase, for clients that follow the discussion document.
pub fn set_phase(doc: &Doc, phase: &str) -> Outcome<()> {
    let review = doc.get_or_insert_map(REVIEW);
    let mut txn = doc.transact_mut();
    review.insert(&mut txn, field::PHASE, phase);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Checks a comment body's length.
pub fn validate_body(body: &str) -> Result<String, Problem> {
    if body.trim().is_empty() {
        return Err(Problem::new(
            ProblemKind::BadInput,
            "invalid_body",
            "a comment needs some text",
        ));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(Problem::new(
            ProblemKind::TooLarge,
            "body_too_long",
            format!("a comment is at most {MAX_BODY_CHARS} characters"),
        ));
    }
    Ok(body.to_owned())
}

/// Starts a thread with its first comment.
pub fn add_thread(
    doc: &Doc,
    author: &Author,
    body: &str,
    anchor: Option<&Anchor>,
) -> Outcome<serde_json::Value> {
    let threads = doc.get_or_insert_map(THREADS);
    let mut txn = doc.transact_mut();
    if threads.len(&txn) >= MAX_THREADS_PER_REVIEW {
        return (
            Err(Problem::new(
                ProblemKind::Conflict,
                "too_many_threads",
                format!("a review holds at most {MAX_THREADS_PER_REVIEW} threads"),
            )),
            None,
        );
    }
    let id = random_hex(8);
    let now = now_ms() as f64;
    let anchor_value = match anchor {
        Some(a) => Any::from(HashMap::from([
            (field::START.to_owned(), Any::from(a.start.as_str())),
            (field::END.to_owned(), Any::from(a.end.as_str())),
            (field::QUOTE.to_owned(), Any::from(a.quote.as_str())),
        ])),
        None => Any::Null,
    };
    let thread = threads.insert(&mut txn, id.as_str(), MapPrelim::default());
    thread.insert(&mut txn, field::ID, id.as_str());
    thread.insert(&mut txn, field::ANCHOR, anchor_value);
    thread.insert(&mut txn, field::RESOLVED, false);
    thread.insert(&mut txn, field::CREATED_AT, now);
    let comments = thread.insert(&mut txn, field::COMMENTS, ArrayPrelim::default());
    push_comment(&mut txn, &comments, author, body, now);
    let view = thread.to_json(&txn);
    (Ok(to_value(view)), Some(txn.encode_update_v1()))
}

/// Adds a reply to a thread.
pub fn reply(
    doc: &Doc,
    thread_id: &str,
    author: &Author,
    body: &str,
) -> Outcome<serde_json::Value> {
    let threads = doc.get_or_insert_map(THREADS);
    let mut txn = doc.transact_mut();
    let Some((thread, comments)) = find_thread(&txn, &threads, thread_id) else {
        return (Err(unknown_thread()), None);
    };
    if comments.len(&txn) >= MAX_COMMENTS_PER_THREAD {
        return (
            Err(Problem::new(
                ProblemKind::Conflict,
                "too_many_comments",
                format!("a thread holds at most {MAX_COMMENTS_PER_THREAD} comments"),
            )),
            None,
        );
    }
    let comment = push_comment(&mut txn, &comments, author, body, now_ms() as f64);
    let _ = thread;
    let view = comment.to_json(&txn);
    (Ok(to_value(view)), Some(txn.encode_update_v1()))
}

/// Replaces the body of the caller's own comment.
pub fn edit(
    doc: &Doc,
    thread_id: &str,
    comment_id: &str,
    participant: &str,
    body: &str,
) -> Outcome<serde_json::Value> {
    let threads = doc.get_or_insert_map(THREADS);
    let mut txn = doc.transact_mut();
    let comment = match own_comment(&txn, &threads, thread_id, comment_id, participant) {
        Ok(c) => c,
        Err(p) => return (Err(p), None),
    };
    comment.insert(&mut txn, field::BODY, body);
    comment.insert(&mut txn, field::EDITED_AT, now_ms() as f64);
    let view = comment.to_json(&txn);
    (Ok(to_value(view)), Some(txn.encode_update_v1()))
}

/// Deletes the caller's own comment: its body is removed and it is marked deleted, so replies
/// keep their place in the thread.
pub fn delete(doc: &Doc, thread_id: &str, comment_id: &str, participant: &str) -> Outcome<()> {
    let threads = doc.get_or_insert_map(THREADS);
    let mut txn = doc.transact_mut();
    let comment = match own_comment(&txn, &threads, thread_id, comment_id, participant) {
        Ok(c) => c,
        Err(p) => return (Err(p), None),
    };
    comment.insert(&mut txn, field::BODY, "");
    comment.insert(&mut txn, field::DELETED, true);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Resolves or reopens a thread; allowed to the thread's author, or to anyone when
/// `facilitator` is true.
pub fn set_resolved(
    doc: &Doc,
    thread_id: &str,
    participant: &str,
    facilitator: bool,
    resolved: bool,
) -> Outcome<serde_json::Value> {
    let threads = doc.get_or_insert_map(THREADS);
    let mut txn = doc.transact_mut();
    let Some((thread, comments)) = find_thread(&txn, &threads, thread_id) else {
        return (Err(unknown_thread()), None);
    };
    let started_by = comments
        .get(&txn, 0)
        .and_then(|c| c.cast::<MapRef>().ok())
        .and_then(|c| author_of(&txn, &c));
    if !facilitator && started_by.as_deref() != Some(participant) {
        return (
            Err(Problem::new(
                ProblemKind::Forbidden,
                "not_allowed",
                "only the thread's author or the facilitator can resolve or reopen it",
            )),
            None,
        );
    }
    thread.insert(&mut txn, field::RESOLVED, resolved);
    let view = thread.to_json(&txn);
    (Ok(to_value(view)), Some(txn.encode_update_v1()))
}

fn push_comment(
    txn: &mut yrs::TransactionMut,
    comments: &ArrayRef,
    author: &Author,
    body: &str,
    now: f64,
) -> MapRef {
    let id = random_hex(8);
    let comment = comments.push_back(txn, MapPrelim::default());
    comment.insert(txn, field::ID, id.as_str());
    comment.insert(txn, field::BODY, body);
    comment.insert(
        txn,
        field::AUTHOR,
        Any::from(HashMap::from([
            (
                field::PARTICIPANT.to_owned(),
                Any::from(author.participant.as_str()),
            ),
            (field::NAME.to_owned(), Any::from(author.name.as_str())),
        ])),
    );
    comment.insert(txn, field::CREATED_AT, now);
    comment.insert(txn, field::DELETED, false);
    comment
}

fn find_thread<T: yrs::ReadTxn>(
    txn: &T,
    threads: &MapRef,
    thread_id: &str,
) -> Option<(MapRef, ArrayRef)> {
    let thread = threads.get(txn, thread_id)?.cast::<MapRef>().ok()?;
    let comments = thread.get(txn, field::COMMENTS)?.cast::<ArrayRef>().ok()?;
    Some((thread, comments))
}

fn own_comment<T: yrs::ReadTxn>(
    txn: &T,
    threads: &MapRef,
    thread_id: &str,
    comment_id: &str,
    participant: &str,
) -> Result<MapRef, Problem> {
    let (_, comments) = find_thread(txn, threads, thread_id).ok_or_else(unknown_thread)?;
    let comment = comments
        .iter(txn)
        .filter_map(|c| c.cast::<MapRef>().ok())
        .find(|c| string_field(txn, c, field::ID).as_deref() == Some(comment_id))
        .filter(|c| !matches!(c.get(txn, field::DELETED), Some(Out::Any(Any::Bool(true)))))
        .ok_or_else(|| {
            Problem::new(
                ProblemKind::NotFound,
                "unknown_comment",
                "this thread has no such comment (it may have been deleted)",
            )
        })?;
    if author_of(txn, &comment).as_deref() != Some(participant) {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "not_author",
            "only the author of a comment can edit or delete it",
        ));
    }
    Ok(comment)
}

fn author_of<T: yrs::ReadTxn>(txn: &T, comment: &MapRef) -> Option<String> {
    match comment.get(txn, field::AUTHOR)? {
        Out::Any(Any::Map(m)) => match m.get(field::PARTICIPANT)? {
            Any::String(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn string_field<T: yrs::ReadTxn>(txn: &T, map: &MapRef, key: &str) -> Option<String> {
    match map.get(txn, key)? {
        Out::Any(Any::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn unknown_thread() -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        "unknown_thread",
        "this review has no such thread",
    )
}

fn to_value(any: Any) -> serde_json::Value {
    serde_json::to_value(any).unwrap_or(serde_json::Value::Null)
}
