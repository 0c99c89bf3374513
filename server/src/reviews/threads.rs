//! The `discussion` document on the server side: the review's state and the comment threads.
//! Only the server writes this document; every function here runs as a job on its owner
//! ([`crate::documents::doc::DocHandle::run`]), checks the command against the document, makes one change
//! in one transaction, and returns the result with the encoded update.
//!
//! Shape (see `docs/schema.md`): root map `review` {title, phase}; root map `threads`:
//! id → map {id, anchor: {start, end, quote} | null, resolved, createdAt, comments: array of
//! maps {id, body, author: {participant, name}, createdAt, editedAt?, deleted}}.

use std::collections::HashMap;

use debrief_proto::schema::discussion::{field, REVIEW, THREADS};
use yrs::types::ToJson;
use yrs::{Any, Array, ArrayPrelim, ArrayRef, Doc, Map, MapPrelim, MapRef, Out, Transact};

use super::basics::{now_ms, random_hex};
use super::problem::{Problem, ProblemKind};

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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// Most concerns on one review's board.
pub const MAX_CONCERNS_PER_REVIEW: u32 = 500;

/// Root map of the concerns board: concern id → concern (a Y.Map).
pub const CONCERNS: &str = "concerns";

/// An anonymous item's place in the discussion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(description = "Where an anonymous item lives in the discussion.")]
pub enum Item {
    /// A comment (the first of an anonymous thread, or an anonymous reply).
    #[schema(title = "CommentItem")]
    Comment {
        /// Its thread's id.
        #[schema(pattern = "^[0-9a-f]{16}$")]
        thread: String,
        /// The comment's id.
        #[schema(pattern = "^[0-9a-f]{16}$")]
        comment: String,
    },
    /// A concern.
    #[schema(title = "ConcernItem")]
    Concern {
        /// The concern's id.
        #[schema(pattern = "^[0-9a-f]{16}$")]
        concern: String,
    },
}

/// A change to the discussion that carries no author, held until its release.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AnonOp {
    /// A new thread opened by an anonymous comment.
    Thread {
        /// Thread id.
        thread: String,
        /// Id of its first comment.
        comment: String,
        /// Text.
        body: String,
        /// Anchor, or none for a general comment.
        anchor: Option<Anchor>,
    },
    /// An anonymous reply.
    Reply {
        /// Thread id.
        thread: String,
        /// Comment id.
        comment: String,
        /// Text.
        body: String,
    },
    /// A new concern.
    Concern {
        /// Concern id.
        concern: String,
        /// Text.
        body: String,
    },
    /// Support for a concern; `vote` is a random id that makes applying it idempotent.
    Vote {
        /// Concern id.
        concern: String,
        /// Random id of this vote.
        vote: String,
    },
    /// New text for an anonymous item.
    Edit {
        /// The item.
        item: Item,
        /// Text.
        body: String,
    },
    /// The author took an anonymous item back.
    Retract {
        /// The item.
        item: Item,
    },
    /// One person's answers to a closed review's culture pulse (`reviews::pulse`). Never
    /// written to the discussion: the release stores it among the review's pulse answers.
    Pulse {
        /// Random id of this answer, which makes storing it idempotent.
        answer: String,
        /// One score from 1 to 7 per statement, in the order of `pulse::STATEMENTS`.
        scores: Vec<u8>,
    },
}

impl AnonOp {
    /// Application order within one release: items exist before they are supported, edited or
    /// retracted.
    pub fn stage(&self) -> u8 {
        match self {
            AnonOp::Thread { .. } | AnonOp::Concern { .. } => 0,
            AnonOp::Reply { .. } => 1,
            AnonOp::Vote { .. } => 2,
            AnonOp::Edit { .. } => 3,
            AnonOp::Retract { .. } => 4,
            AnonOp::Pulse { .. } => 5,
        }
    }
}

/// Applies a batch of held anonymous changes in one transaction, with `at` (the release
/// boundary) as their time. Applying the same op twice changes nothing more, so a release
/// interrupted by a crash can run again.
pub fn release(doc: &Doc, ops: &[AnonOp], at: f64) -> Option<Vec<u8>> {
    let threads = doc.get_or_insert_map(THREADS);
    let concerns = doc.get_or_insert_map(CONCERNS);
    let mut txn = doc.transact_mut();
    for op in ops {
        match op {
            AnonOp::Thread {
                thread,
                comment,
                body,
                anchor,
            } => {
                if threads.get(&txn, thread).is_some()
                    || threads.len(&txn) >= MAX_THREADS_PER_REVIEW
                {
                    continue;
                }
                let t = threads.insert(&mut txn, thread.as_str(), MapPrelim::default());
                t.insert(&mut txn, field::ID, thread.as_str());
                t.insert(&mut txn, field::ANCHOR, anchor_value(anchor.as_ref()));
                t.insert(&mut txn, field::RESOLVED, false);
                t.insert(&mut txn, field::CREATED_AT, at);
                let comments = t.insert(&mut txn, field::COMMENTS, ArrayPrelim::default());
                push_anonymous(&mut txn, &comments, comment, body, at);
            }
            AnonOp::Reply {
                thread,
                comment,
                body,
            } => {
                let Some((_, comments)) = find_thread(&txn, &threads, thread) else {
                    continue;
                };
                if find_comment(&txn, &comments, comment).is_some()
                    || comments.len(&txn) >= MAX_COMMENTS_PER_THREAD
                {
                    continue;
                }
                push_anonymous(&mut txn, &comments, comment, body, at);
            }
            AnonOp::Concern { concern, body } => {
                if concerns.get(&txn, concern).is_some()
                    || concerns.len(&txn) >= MAX_CONCERNS_PER_REVIEW
                {
                    continue;
                }
                let c = concerns.insert(&mut txn, concern.as_str(), MapPrelim::default());
                c.insert(&mut txn, field::ID, concern.as_str());
                c.insert(&mut txn, field::BODY, body.as_str());
                c.insert(&mut txn, field::CREATED_AT, at);
                c.insert(&mut txn, DISCUSSED, false);
                c.insert(&mut txn, HIDDEN, false);
                c.insert(&mut txn, VOTES, ArrayPrelim::default());
            }
            AnonOp::Vote { concern, vote } => {
                let item = Item::Concern {
                    concern: concern.clone(),
                };
                let Some(votes) = anonymous_item(&txn, &threads, &concerns, &item)
                    .and_then(|c| c.get(&txn, VOTES))
                    .and_then(|v| v.cast::<ArrayRef>().ok())
                else {
                    continue;
                };
                let known = votes
                    .iter(&txn)
                    .any(|v| matches!(v, Out::Any(Any::String(s)) if &*s == vote.as_str()));
                if !known {
                    votes.push_back(&mut txn, vote.as_str());
                }
            }
            AnonOp::Edit { item, body } => {
                if let Some(map) = anonymous_item(&txn, &threads, &concerns, item) {
                    map.insert(&mut txn, field::BODY, body.as_str());
                    map.insert(&mut txn, field::EDITED_AT, at);
                }
            }
            AnonOp::Retract { item } => match item {
                Item::Concern { concern } => {
                    if concerns.get(&txn, concern).is_some() {
                        concerns.remove(&mut txn, concern);
                    }
                }
                Item::Comment { .. } => {
                    if let Some(map) = anonymous_item(&txn, &threads, &concerns, item) {
                        map.insert(&mut txn, field::BODY, "");
                        map.insert(&mut txn, field::DELETED, true);
                    }
                }
            },
            // Not the discussion's: the release keeps pulse answers apart.
            AnonOp::Pulse { .. } => {}
        }
    }
    let update = txn.encode_update_v1();
    Some(update)
}

/// Hides an anonymous item for everyone (its text is removed) without touching anything that
/// could tell who wrote it. Only the facilitator calls this.
pub fn hide(doc: &Doc, item: &Item) -> Outcome<()> {
    let threads = doc.get_or_insert_map(THREADS);
    let concerns = doc.get_or_insert_map(CONCERNS);
    let mut txn = doc.transact_mut();
    let Some(map) = anonymous_item(&txn, &threads, &concerns, item) else {
        return (Err(unknown_item()), None);
    };
    map.insert(&mut txn, field::BODY, "");
    map.insert(&mut txn, HIDDEN, true);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Marks a concern discussed (or not).
pub fn set_discussed(doc: &Doc, concern: &str, discussed: bool) -> Outcome<()> {
    let concerns = doc.get_or_insert_map(CONCERNS);
    let mut txn = doc.transact_mut();
    let Some(map) = concerns
        .get(&txn, concern)
        .and_then(|c| c.cast::<MapRef>().ok())
    else {
        return (Err(unknown_item()), None);
    };
    map.insert(&mut txn, DISCUSSED, discussed);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Whether an anonymous item can still be edited (released, not deleted or hidden).
pub fn item_exists(doc: &Doc, item: &Item) -> bool {
    let threads = doc.get_or_insert_map(THREADS);
    let concerns = doc.get_or_insert_map(CONCERNS);
    let txn = doc.transact();
    anonymous_item(&txn, &threads, &concerns, item).is_some()
}

/// True once the concern is on the board (and not hidden).
pub fn concern_exists(doc: &Doc, concern: &str) -> bool {
    let threads = doc.get_or_insert_map(THREADS);
    let concerns = doc.get_or_insert_map(CONCERNS);
    let txn = doc.transact();
    let item = Item::Concern {
        concern: concern.to_owned(),
    };
    anonymous_item(&txn, &threads, &concerns, &item).is_some()
}

/// Whether one more anonymous item of this kind fits (threads, comments in `thread`, concerns);
/// items still held are not counted, so a batch may stop a little past the cap.
pub fn room_for(doc: &Doc, op: &AnonOp) -> bool {
    let threads = doc.get_or_insert_map(THREADS);
    let concerns = doc.get_or_insert_map(CONCERNS);
    let txn = doc.transact();
    match op {
        AnonOp::Thread { .. } => threads.len(&txn) < MAX_THREADS_PER_REVIEW,
        AnonOp::Reply { thread, .. } => find_thread(&txn, &threads, thread)
            .is_some_and(|(_, c)| c.len(&txn) < MAX_COMMENTS_PER_THREAD),
        AnonOp::Concern { .. } => concerns.len(&txn) < MAX_CONCERNS_PER_REVIEW,
        _ => true,
    }
}

/// Whether the thread exists (for anonymous replies).
pub fn thread_exists(doc: &Doc, thread: &str) -> bool {
    let threads = doc.get_or_insert_map(THREADS);
    let txn = doc.transact();
    find_thread(&txn, &threads, thread).is_some()
}

/// Concern field: true once the facilitator marked it discussed.
pub const DISCUSSED: &str = "discussed";
/// Field of anonymous comments and concerns: true once hidden by the facilitator.
pub const HIDDEN: &str = "hidden";
/// Concern field: Y.Array of random vote ids; its length is the support.
pub const VOTES: &str = "votes";
/// Comment field: true for an anonymous comment (its `author` is null).
pub const ANONYMOUS: &str = "anonymous";

fn anchor_value(anchor: Option<&Anchor>) -> Any {
    match anchor {
        Some(a) => Any::from(HashMap::from([
            (field::START.to_owned(), Any::from(a.start.as_str())),
            (field::END.to_owned(), Any::from(a.end.as_str())),
            (field::QUOTE.to_owned(), Any::from(a.quote.as_str())),
        ])),
        None => Any::Null,
    }
}

fn push_anonymous(
    txn: &mut yrs::TransactionMut,
    comments: &ArrayRef,
    id: &str,
    body: &str,
    at: f64,
) {
    let comment = comments.push_back(txn, MapPrelim::default());
    comment.insert(txn, field::ID, id);
    comment.insert(txn, field::BODY, body);
    comment.insert(txn, field::AUTHOR, Any::Null);
    comment.insert(txn, ANONYMOUS, true);
    comment.insert(txn, field::CREATED_AT, at);
    comment.insert(txn, field::DELETED, false);
    comment.insert(txn, HIDDEN, false);
}

fn find_comment<T: yrs::ReadTxn>(txn: &T, comments: &ArrayRef, id: &str) -> Option<MapRef> {
    comments
        .iter(txn)
        .filter_map(|c| c.cast::<MapRef>().ok())
        .find(|c| string_field(txn, c, field::ID).as_deref() == Some(id))
}

/// The map of an anonymous item that is still there (not deleted, retracted or hidden).
fn anonymous_item<T: yrs::ReadTxn>(
    txn: &T,
    threads: &MapRef,
    concerns: &MapRef,
    item: &Item,
) -> Option<MapRef> {
    let flag = |m: &MapRef, key: &str| matches!(m.get(txn, key), Some(Out::Any(Any::Bool(true))));
    match item {
        Item::Comment { thread, comment } => {
            let (_, comments) = find_thread(txn, threads, thread)?;
            let c = find_comment(txn, &comments, comment)?;
            (flag(&c, ANONYMOUS) && !flag(&c, field::DELETED) && !flag(&c, HIDDEN)).then_some(c)
        }
        Item::Concern { concern } => {
            let c = concerns.get(txn, concern)?.cast::<MapRef>().ok()?;
            (!flag(&c, HIDDEN)).then_some(c)
        }
    }
}

fn unknown_item() -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        "unknown_item",
        "there is no such anonymous item (it may not be released yet, or was retracted or hidden)",
    )
}

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
    let anchor_value = anchor_value(anchor);
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
