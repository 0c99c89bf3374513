//! The OpenAPI document of this API, derived from the handlers' `#[utoipa::path]` attributes and
//! their request and response types; served at `/api/openapi.json`.
//!
//! Besides the document itself, this holds what only the document needs: the path parameters
//! (handlers take them as tuples), and the shapes of the answers that are read out of a review's
//! discussion document (threads, comments, action items) or built as JSON by the export. Those
//! shapes deserialize with `deny_unknown_fields`, and the tests below read real answers into
//! them, so they cannot drift from what the documents hold.

use serde::Deserialize;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayItems, Object, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::{
    actions, anonymous, auth, home, learning, me, meeting, pulse, records, reviews, threads,
    webhooks,
};
use crate::reviews::meeting::{ActionKind, ActionStatus, StatusChange};
use crate::reviews::policy::{Phase, Role};

/// What the document says before its operations.
const INTRO: &str = "The REST API of reviews: creating, joining and reading reviews, moving their \
    phases, rotating invite links, comment threads, anonymous comments, concerns and their \
    moderation; the meeting (timebox, agenda, action items, read count, blameless-language hints), \
    action items across reviews, pinned versions, exports, and the library of published reviews, which needs no session. \
    Request bodies are JSON, declared as `Content-Type: application/json` (at most 65,536 bytes; \
    1,048,576 to create a review, which may carry a Markdown report). Every error is `{\"code\", \
    \"message\"}` (schema `Error`): a body that does not parse as the documented shape is 400 \
    `invalid_json`, an oversize one 413 `body_too_large`, a body of another type 415 \
    `unsupported_media_type`, a method a path does not have 405 `method_not_allowed`, and a path \
    no route matches 404 `not_found`. Anonymous submissions answer 202: they are held without an \
    author and released at the next boundary of the server's cadence (or, in a review whose \
    release is `meeting`, when the meeting starts); nothing about who sent them is stored, logged \
    or returned.";

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Debrief reviews API", version = "1", description = INTRO),
    paths(
        super::serve_openapi,
        reviews::create,
        reviews::look_up_invite,
        reviews::join,
        reviews::read,
        reviews::move_phase,
        reviews::rotate,
        threads::add_thread,
        threads::reply,
        threads::edit,
        threads::delete,
        threads::resolve,
        threads::reopen,
        anonymous::anonymous_thread,
        anonymous::anonymous_reply,
        anonymous::raise_concern,
        anonymous::support,
        anonymous::discussed,
        anonymous::pending,
        anonymous::anonymous_edit,
        anonymous::anonymous_retract,
        anonymous::hide,
        meeting::timer,
        meeting::agenda,
        meeting::add_action,
        meeting::update_action,
        meeting::mark_read,
        meeting::settings,
        actions::list_actions,
        actions::search_actions,
        actions::move_status,
        home::home,
        records::versions,
        records::version,
        records::export_md,
        records::export_json,
        records::publish,
        records::preview,
        records::library,
        records::library_entry,
        webhooks::create,
        webhooks::list,
        webhooks::delete,
        records::library_factors,
        learning::set_factors,
        learning::set_team,
        pulse::answer,
        pulse::read,
        pulse::trend,
        me::me,
        auth::offer,
        auth::login,
        auth::callback,
        auth::logout,
    ),
    modifiers(&Bearer, &Closed),
    security(("bearer" = [])),
    tags(
        (name = "reviews", description = "Reviews, sessions, phases and invite links."),
        (name = "threads", description = "Comment threads in a review's discussion document."),
        (
            name = "anonymous",
            description = "Anonymous comments, replies, concerns and votes: held without an author, \
            released in shuffled batches, edited or retracted with the key their submission returned."
        ),
        (
            name = "moderation",
            description = "What the facilitator does with anonymous items, without learning who \
            wrote them."
        ),
        (
            name = "meeting",
            description = "The meeting, which the server keeps in the review's discussion document: \
            the timebox, the agenda, action items, the read count and the blameless-language hints."
        ),
        (
            name = "actions",
            description = "Action items across reviews: the list behind the action items page, \
            and moving an item's status, recorded with who and when."
        ),
        (
            name = "home",
            description = "The reviews a person is in, with what waits for them: the start page."
        ),
        (
            name = "records",
            description = "What a review keeps besides its live documents: versions pinned at each \
            phase change, exports, and publishing to the library."
        ),
        (
            name = "library",
            description = "Published reviews, readable and searchable without a session."
        ),
        (
            name = "webhooks",
            description = "Events told to other systems: set up by a review's facilitator for \
            that review, or by the server's admin (the creation secret) for every review; signed, \
            retried from a durable outbox, and listed with their recent attempts."
        ),
        (
            name = "pulse",
            description = "The culture pulse of a closed review: answered anonymously, once, by \
            those who took part; shown only as aggregates of at least five answers, per review and \
            per month across a team's reviews."
        ),
        (
            name = "sign-in",
            description = "Who is signed in, when the server has sign-in set up (an \
            authenticating proxy's headers, or OpenID Connect)."
        ),
        (name = "meta", description = "This document."),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Error descriptions that many operations share, one per status and set of codes.
pub(super) mod said {
    /// 400 for a body that is not JSON of the operation's shape.
    pub const BAD_JSON: &str =
        "`invalid_json`: the body is not JSON of the documented shape (syntax, types, a missing or \
        unknown field).";
    /// 401 for an invite token that opens nothing.
    pub const BAD_INVITE: &str =
        "`invalid_invite`: the invite token is not valid (it may have been rotated).";
    /// 404 for an invite whose review is gone.
    pub const INVITE_REVIEW_GONE: &str = "`unknown_review`: the invite's review no longer exists.";
    /// 401 for a request without a valid session.
    pub const NO_SESSION: &str =
        "`missing_token`: no `Authorization: Bearer <session token>` header; `invalid_token`: the \
        session token is unknown or revoked.";
    /// 415 for a body that is not declared JSON.
    pub const NOT_JSON: &str =
        "`unsupported_media_type`: the request has a body that is not declared `Content-Type: \
        application/json` (a form or plain text, as a cross-site form would send).";
    /// 404 for a review that does not exist.
    pub const NO_REVIEW: &str =
        "`unknown_review`: no review has this id; `not_found`: the path matches no route.";
    /// 404 on an action item's path.
    pub const NO_ACTION: &str = "`unknown_review`: no review has this id; `not_found`: the path \
        matches no route; `unknown_action`: the review has no such action item.";
    /// 503 when the review's document is busy.
    pub const DOCUMENT_BUSY: &str =
        "`document_unavailable`: the review's document cannot be changed right now; try again.";
    /// 400 for a path parameter that does not decode.
    pub const BAD_PATH: &str =
        "`invalid_path`: a path parameter is not valid (for example, not UTF-8 once \
        percent-decoded).";
    /// 403 for a session that is not the review's facilitator.
    pub const NOT_FACILITATOR: &str =
        "`other_review`: the session belongs to another review; `not_allowed`: only the \
        facilitator can do this.";
    /// 413 for a body or a discussion that is too large.
    pub const DISCUSSION_FULL_OR_BODY: &str =
        "`body_too_large`: the request body is over 65,536 bytes; `document_too_large`: the \
        review's discussion is at its size limit, so the server writes nothing more into it; \
        `review_quota_exceeded`: the review's documents are at their storage quota (48 MiB \
        together, refused once less than 64 KiB is left); they can still be read.";
    /// 403 for a session the phase table does not let comment.
    pub const NOT_COMMENTER: &str =
        "`other_review`: the session belongs to another review; `not_allowed`: the phase table \
        does not let this role comment in the review's phase (authors only in draft; everyone \
        but observers in review and meeting; nobody once closed).";
    /// 429 for too many anonymous submissions.
    pub const ANONYMOUS_RATE: &str =
        "`rate_limited`: this session already made 30 anonymous submissions (new items, replies, \
        votes, edits, retractions) in the current minute; try again shortly. Counted, in memory \
        only, for every request whose session and phase are accepted, before its body is read.";
    /// 503 when an anonymous item cannot be held.
    pub const HOLD_UNAVAILABLE: &str =
        "`document_unavailable`: the review's document cannot be changed right now; try again; \
        `store_unavailable`: the store cannot be written; try again; `too_many_held`: the server \
        holds as many anonymous items as it can; try again after the next release.";
    /// 400 for a comment body that is not valid.
    pub const BAD_COMMENT: &str =
        "`invalid_path`: a path parameter is not valid (for example, not UTF-8 once \
        percent-decoded); `invalid_json`: the body is not JSON of the documented shape (syntax, \
        types, a missing or unknown field); `invalid_body`: the body is empty or only \
        whitespace.";
    /// 404 for a thread that does not exist.
    pub const NO_THREAD: &str =
        "`unknown_review`: no review has this id; `not_found`: the path matches no route; \
        `unknown_thread`: the review has no such thread.";
    /// 400 for a path or body that does not parse.
    pub const BAD_BODY: &str =
        "`invalid_path`: a path parameter is not valid (for example, not UTF-8 once \
        percent-decoded); `invalid_json`: the body is not JSON of the documented shape (syntax, \
        types, a missing or unknown field).";
    /// 403 for a session the report is not open to.
    pub const NOT_REPORT_READER: &str =
        "`other_review`: the session belongs to another review; `not_allowed`: the report is not \
        open to this role in this phase (participants and observers, while the review is in \
        draft).";
    /// 503 when the store cannot be read.
    pub const STORE_UNREADABLE: &str = "`store_unavailable`: the store cannot be read; try again.";
    /// 503 when the store or the document cannot be written.
    pub const STORE_OR_DOCUMENT_BUSY: &str =
        "`store_unavailable`: the store cannot be written; try again; `document_unavailable`: the \
        review's document cannot be changed right now; try again.";
    /// 413 for a discussion that is full.
    pub const DISCUSSION_FULL: &str =
        "`document_too_large`: the review's discussion is at its size limit, so the server writes \
        nothing more into it; `review_quota_exceeded`: the review's documents are at their \
        storage quota (48 MiB together, refused once less than 64 KiB is left); they can still \
        be read.";
    /// 202 for a new anonymous item.
    pub const HELD_NEW_ITEM: &str =
        "Held: the item appears, without an author, with the release at `release_after` (while \
        that is null, when the meeting starts), in shuffled order among the items released with \
        it. `item` says where it will live; `key` (the only copy: the server keeps only its \
        hash) edits or retracts it.";
    /// What an anonymous submission checks before it reads its body, and what it does not keep.
    pub const ANONYMOUS_CHECKS: &str =
        "The session, the phase table (the same as for signed comments) and the rate limit are \
        checked before the body is read. Nothing about the session is stored with the item or \
        logged.";
    /// 413 for a body over 65,536 bytes, where nothing else can be too large.
    pub const BODY_TOO_LARGE: &str = "`body_too_large`: the request body is over 65,536 bytes.";
    /// 503 when the store cannot be written.
    pub const STORE_UNWRITABLE: &str =
        "`store_unavailable`: the store cannot be written; try again.";
    /// 403 for a session of another review, where any role of the review may ask.
    pub const OTHER_REVIEW: &str = "`other_review`: the session belongs to another review.";
    /// 400 for a new thread whose path, body or anchor is not valid.
    pub const BAD_THREAD: &str =
        "`invalid_path`: a path parameter is not valid (for example, not UTF-8 once \
        percent-decoded); `invalid_json`: the body is not JSON of the documented shape (syntax, \
        types, a missing or unknown field); `invalid_body`: the body is empty or only whitespace; \
        `invalid_anchor`: `anchor.start` or `anchor.end` is not base64 of an encoded Yjs relative \
        position.";
    /// 422 for an anchor that does not point into the report.
    pub const ANCHOR_NOT_IN_REPORT: &str =
        "`anchor_not_in_report`: the anchor decodes but does not point into this review's report.";
    /// 413 for a body or comment that is too long, or a discussion that is full.
    pub const COMMENT_TOO_LARGE: &str =
        "`body_too_large`: the request body is over 65,536 bytes; `body_too_long`: the comment is \
        over 4,000 characters; `document_too_large`: the review's discussion is at its size \
        limit, so the server writes nothing more into it; `review_quota_exceeded`: the review's \
        documents are at their storage quota (48 MiB together, refused once less than 64 KiB is \
        left); they can still be read.";
    /// 404 for a comment that does not exist, or was deleted.
    pub const NO_COMMENT: &str =
        "`unknown_review`: no review has this id; `not_found`: the path matches no route; \
        `unknown_thread`: the review has no such thread; `unknown_comment`: the thread has no \
        such comment, or it was deleted.";
    /// An operation that reads no request body.
    pub const TAKES_NO_BODY: &str = "Takes no request body (any body is ignored).";
    /// 403 for a session that may not resolve or reopen the thread.
    pub const NOT_RESOLVER: &str =
        "`other_review`: the session belongs to another review; `not_allowed`: the phase table \
        does not let this role comment in the review's phase (authors only in draft; everyone but \
        observers in review and meeting; nobody once closed); `not_allowed`: only the thread's \
        author or the facilitator can resolve or reopen it (a thread opened anonymously: only the \
        facilitator).";
    /// 403 for a session that may not comment, or a key that does not unlock the item.
    pub const NOT_COMMENTER_OR_WRONG_KEY: &str =
        "`other_review`: the session belongs to another review; `not_allowed`: the phase table \
        does not let this role comment in the review's phase (authors only in draft; everyone but \
        observers in review and meeting; nobody once closed); `wrong_key`: the key does not \
        unlock this item in this review (a wrong key, an unknown item id, or a retracted item, \
        whose key stopped working).";
    /// 404 for an anonymous item that was released and is gone since.
    pub const ITEM_GONE: &str =
        "`unknown_review`: no review has this id; `not_found`: the path matches no route; \
        `unknown_item`: the item was released and is gone since (retracted, or hidden by the \
        facilitator), or its release could not place it.";
    /// 409 for an anonymous change while anonymity is not possible or too many items are held.
    pub const TOO_FEW_OR_TOO_MANY_HELD: &str =
        "`too_few_for_anonymity`: fewer than three people may post anonymously in this review's \
        phase and its facilitator did not allow small groups at creation; `too_many_held`: many \
        anonymous items of this review are waiting for their release.";
    /// What a meeting write checks before it reads its body.
    pub const ROLE_AND_PHASE_FIRST: &str =
        "The session, the role and the phase are checked before the body is read.";
    /// 400 for an action item whose path or fields are not valid.
    pub const BAD_ACTION: &str =
        "`invalid_path`: a path parameter is not valid (for example, not UTF-8 once \
        percent-decoded); `invalid_json`: the body is not JSON of the documented shape (syntax, \
        types, a missing or unknown field); `invalid_what`, `invalid_why`, `invalid_owner`: that \
        text is empty once trimmed or over its length (300, 500, 100 characters); `invalid_link`: \
        the link is neither an http or https URL with a host name (no user name or password, at \
        most 2,000 bytes, without whitespace or control characters) nor an issue key that one of \
        the server's tracker patterns matches whole; `invalid_due`: the due day is not a calendar day written YYYY-MM-DD.";
    /// 403 for a session that may not write action items.
    pub const NOT_ACTION_WRITER: &str =
        "`other_review`: the session belongs to another review; `not_allowed`: action items are \
        written by everyone but observers, while the review is in review or meeting.";
    /// Who may read a review's records.
    pub const READ_AS_REPORT: &str =
        "Readable by whoever may read the report in the review's current phase.";
    /// Who may read an export, and what it leaves out.
    pub const EXPORT_READERS: &str =
        "Readable by whoever may read the report in the review's current phase. Hidden, retracted \
        and deleted items are left out; anonymous ones are attributed to `Anonymous`.";
    /// 413 for an export of a review whose documents are at their size limit or quota.
    pub const EXPORT_TOO_LARGE: &str =
        "`document_too_large`: the review's report, notes or discussion is at its size limit: the \
        server runs no more changes or checks on it, reads included; `review_quota_exceeded`: the \
        review's documents are at their storage quota (48 MiB together, refused once less than 64 \
        KiB is left); they can still be read.";
}

/// The one security scheme: a bearer token.
#[derive(Debug)]
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "`Authorization: Bearer <token>`. For a review's endpoints the token is the session \
             token (`dbs_…`) that `POST /api/join` returns; for `POST /api/reviews` it is the \
             server's creation secret, needed only when the server was started with one."
                .to_owned(),
        );
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Closes every object schema that lists its properties (`additionalProperties: false`): the
/// request types deny unknown fields (utoipa says so already), and the response types are structs
/// that serialise exactly their fields, so neither side of the API has others.
#[derive(Debug)]
struct Closed;

impl Modify for Closed {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            components.schemas.values_mut().for_each(close);
        }
    }
}

fn close(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(object) => {
            if !object.properties.is_empty() && object.additional_properties.is_none() {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
            object.properties.values_mut().for_each(close);
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                close(items);
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(close),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(close),
        // The parts of an `allOf` only describe the whole together: none of them is closed.
        _ => {}
    }
}

/// The document as served, pretty-printed JSON.
pub fn document() -> String {
    // Serialising a document of plain maps and strings cannot fail; should it ever, the
    // answer is still JSON.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    unwrap_lines(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"))
}

/// Joins the lines of every description: doc comments wrap at the source's width, and a
/// description is prose, where a single line break means nothing.
fn unwrap_lines(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text
                            .split('\n')
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(" ");
                    }
                    _ => unwrap_lines(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_lines),
        _ => {}
    }
}

/// `{id}`: a review.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ReviewIdParam {
    /// The review's id (32 hex digits).
    #[param(pattern = "^[0-9a-f]{32}$")]
    id: String,
}

/// `{thread}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ThreadIdParam {
    /// The thread's id (16 hex digits).
    #[param(pattern = "^[0-9a-f]{16}$")]
    thread: String,
}

/// `{comment}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct CommentIdParam {
    /// The comment's id (16 hex digits).
    #[param(pattern = "^[0-9a-f]{16}$")]
    comment: String,
}

/// `{role}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct RoleParam {
    /// The role whose invite link to replace.
    role: Role,
}

/// `{concern}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ConcernIdParam {
    /// The concern's id (16 hex digits): `item.concern` in the answer to its submission.
    #[param(pattern = "^[0-9a-f]{16}$")]
    concern: String,
}

/// `{item}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ItemIdParam {
    /// The anonymous item's id (16 hex digits): `item.comment` or `item.concern` in the answer
    /// to its submission.
    #[param(pattern = "^[0-9a-f]{16}$")]
    item: String,
}

/// `{action}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ActionIdParam {
    /// The action item's id (16 hex digits).
    #[param(pattern = "^[0-9a-f]{16}$")]
    action: String,
}

/// `{webhook}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct WebhookIdParam {
    /// The webhook's id (`wh_` and 32 hex digits).
    #[param(pattern = "^wh_[0-9a-f]{32}$")]
    webhook: String,
}

/// `{phase}` of a version.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct PhaseParam {
    /// The phase whose version to read: the one pinned when the review entered it.
    phase: Phase,
}

/// `{id}`: a published review.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct PublishedIdParam {
    /// The published review's id (32 hex digits).
    #[param(pattern = "^[0-9a-f]{32}$")]
    id: String,
}

/// Who wrote a comment, stamped by the server from the session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct Author {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    participant: String,
    #[schema(
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
}

/// A signed comment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct AuthoredComment {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    id: String,
    /// Empty once deleted.
    #[schema(max_length = 4000)]
    body: String,
    author: Author,
    /// Milliseconds since the Unix epoch.
    created_at: f64,
    /// The last edit, milliseconds since the Unix epoch; absent if never edited.
    #[serde(default)]
    #[schema(nullable = false)]
    edited_at: Option<f64>,
    deleted: bool,
}

/// An anonymous comment as released: it has no author.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct AnonymousComment {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    id: String,
    /// Empty once retracted or hidden.
    #[schema(max_length = 4000)]
    body: String,
    /// Always null.
    #[schema(required = true, schema_with = null_schema)]
    author: Option<()>,
    /// Always true.
    #[schema(schema_with = always_true)]
    anonymous: bool,
    /// The release boundary it appeared at, milliseconds since the Unix epoch.
    created_at: f64,
    /// The release boundary of its last edit; absent if never edited.
    #[serde(default)]
    #[schema(nullable = false)]
    edited_at: Option<f64>,
    /// True once its writer retracted it.
    deleted: bool,
    /// True once the facilitator hid it.
    hidden: bool,
}

/// A boolean that is always true.
pub(super) fn always_true() -> Object {
    constant(true)
}

/// A boolean that is always false.
pub(super) fn always_false() -> Object {
    constant(false)
}

fn constant(value: bool) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
        .build()
}

/// The body `supportConcern` takes, if any: an empty object (the vote needs nothing else, and
/// the handler reads no body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EmptyRequest {}

fn null_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Null)
        .description(Some("Always null."))
        .build()
}

/// A comment in a thread: signed, or anonymous (then `author` is null and `anonymous` true).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum Comment {
    Authored(AuthoredComment),
    Anonymous(AnonymousComment),
}

/// The passage of the report a thread is about.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct ThreadAnchor {
    /// Base64 (standard alphabet, padded) of an encoded Yjs relative position in the report.
    #[schema(
        pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    )]
    start: String,
    /// Base64 (standard alphabet, padded) of an encoded Yjs relative position in the report.
    #[schema(
        pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    )]
    end: String,
    /// The quoted text, at most 500 characters.
    #[schema(max_length = 500)]
    quote: String,
}

/// A comment thread.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct Thread {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    id: String,
    /// The passage of the report the thread is about; null for a general thread.
    #[schema(required = true)]
    anchor: Option<ThreadAnchor>,
    resolved: bool,
    /// Milliseconds since the Unix epoch.
    created_at: f64,
    /// In order; the first one started the thread (an anonymous one for a thread opened
    /// anonymously).
    #[schema(min_items = 1, max_items = 500)]
    comments: Vec<Comment>,
}

/// An action item as the discussion document keeps it (`actions`), its text trimmed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct ActionItem {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    id: String,
    #[schema(min_length = 1, max_length = 300)]
    what: String,
    #[schema(min_length = 1, max_length = 500)]
    why: String,
    kind: ActionKind,
    #[schema(min_length = 1, max_length = 100)]
    owner: String,
    /// Null when none.
    #[schema(required = true, pattern = "^https?://")]
    link: Option<String>,
    /// Null when none.
    #[schema(required = true, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    due: Option<String>,
    status: ActionStatus,
    /// Milliseconds since the Unix epoch.
    created_at: f64,
    /// The last write (creation or change), milliseconds since the Unix epoch.
    updated_at: f64,
    /// Who set each status and when, oldest first: the status it was added with, then each
    /// change (the first entry and the latest 19 are kept). Absent on items added before
    /// statuses were recorded.
    #[serde(default)]
    #[schema(max_items = 20)]
    history: Vec<StatusChange>,
}

/// The review in an export.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct ExportedReview {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    #[schema(required = true, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    incident_date: Option<String>,
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    severity: Option<String>,
    phase: Phase,
}

/// A comment in an export.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct ExportedComment {
    /// The author's display name, or `Anonymous`.
    author: String,
    #[schema(min_length = 1)]
    body: String,
    /// Milliseconds since the Unix epoch.
    created_at: f64,
}

/// A thread in an export.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct ExportedThread {
    /// The quoted passage of the report; null for a general thread.
    #[schema(required = true)]
    quote: Option<String>,
    resolved: bool,
    /// The visible comments, in order (deleted, retracted and hidden ones left out).
    #[schema(min_items = 1)]
    comments: Vec<ExportedComment>,
}

/// A concern in an export.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct ExportedConcern {
    #[schema(min_length = 1)]
    body: String,
    /// How many sessions support it (votes released so far).
    support: u64,
    discussed: bool,
}

/// An action item in an export.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct ExportedAction {
    what: String,
    why: String,
    kind: ActionKind,
    owner: String,
    #[schema(required = true)]
    link: Option<String>,
    #[schema(required = true, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    due: Option<String>,
    status: ActionStatus,
}

/// A review as one JSON object: what the Markdown export holds, as data.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct Export {
    review: ExportedReview,
    /// The report as Markdown.
    report_markdown: String,
    /// Threads with at least one visible comment, oldest first.
    threads: Vec<ExportedThread>,
    /// Concerns on the board (retracted and hidden ones left out), most supported first.
    concerns: Vec<ExportedConcern>,
    /// Action items, oldest first.
    actions: Vec<ExportedAction>,
    /// The meeting notes as Markdown.
    notes_markdown: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::crdt::new_doc;
    use crate::reviews::meeting::ActionInput;
    use crate::reviews::sessions::ReviewRecord;
    use crate::reviews::threads::{self as discussion, AnonOp};
    use crate::reviews::{export, meeting as agenda};

    fn ok<T>(outcome: discussion::Outcome<T>) -> T {
        outcome.0.expect("the command succeeds")
    }

    fn shape<T: serde::de::DeserializeOwned>(what: &str, value: &serde_json::Value) -> T {
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{what} does not have its documented shape ({e}): {value}"))
    }

    /// The answers read out of the discussion document, and the JSON export, have exactly the
    /// fields their documented types list (which deny any other).
    #[test]
    fn answers_made_from_documents_have_their_documented_shapes() {
        let doc = new_doc();
        let ann = discussion::Author {
            participant: "a".repeat(32),
            name: "Ann".into(),
        };
        let thread = ok(discussion::add_thread(&doc, &ann, "first", None));
        let _: Thread = shape("a new thread", &thread);
        let id = thread["id"].as_str().expect("a thread id").to_owned();
        let comment = ok(discussion::reply(&doc, &id, &ann, "a reply"));
        let _: AuthoredComment = shape("a reply", &comment);
        let comment_id = comment["id"].as_str().expect("a comment id").to_owned();
        let edited = ok(discussion::edit(
            &doc,
            &id,
            &comment_id,
            &ann.participant,
            "edited",
        ));
        let edited: AuthoredComment = shape("an edited comment", &edited);
        assert!(edited.edited_at.is_some());
        let released = [
            AnonOp::Reply {
                thread: id.clone(),
                comment: "b".repeat(16),
                body: "anonymous".into(),
            },
            AnonOp::Concern {
                concern: "c".repeat(16),
                body: "a concern".into(),
            },
        ];
        discussion::release(&doc, &released, 1.0);
        let resolved = ok(discussion::set_resolved(
            &doc,
            &id,
            &ann.participant,
            true,
            true,
        ));
        let resolved: Thread = shape("a resolved thread", &resolved);
        assert!(matches!(
            resolved.comments.last(),
            Some(Comment::Anonymous(_))
        ));
        let input = ActionInput {
            what: "Alert on queue depth".into(),
            why: "The backlog grew unnoticed".into(),
            kind: ActionKind::Detect,
            owner: "SRE".into(),
            link: Some("https://example.com/1".into()),
            due: None,
            status: ActionStatus::Open,
        };
        let action = ok(agenda::add_action(&doc, &input, "Ann"));
        let _: ActionItem = shape("an action item", &action);
        let parts = export::Parts {
            review: ReviewRecord {
                id: "d".repeat(32),
                title: "Queue outage".into(),
                incident_date: Some("2024-02-29".into()),
                severity: None,
                phase: Phase::Closed,
                created_at: 0,
                release: Default::default(),
                small_group_anonymity: false,
                team: None,
                factors: Vec::new(),
                closed_at: None,
                phase_changed_at: None,
                invites: Default::default(),
                sign_in_invites: Vec::new(),
            },
            report: "# Report".into(),
            notes: String::new(),
            discussion: agenda::snapshot(&doc),
        };
        let exported: Export = shape("the JSON export", &export::json(&parts));
        assert_eq!(exported.threads.len(), 1);
        assert_eq!(exported.concerns.len(), 1);
        assert_eq!(exported.actions.len(), 1);
    }

    /// The version labels the document lists are the ones versions get, in phase order.
    #[test]
    fn the_documented_version_labels_are_the_real_ones() {
        let doc: serde_json::Value =
            serde_json::from_str(&document()).expect("the document is JSON");
        let documented = &doc["components"]["schemas"]["VersionLabel"]["enum"];
        let real: Vec<&str> = Phase::ALL
            .into_iter()
            .map(crate::reviews::records::Version::label)
            .collect();
        assert_eq!(documented, &serde_json::json!(real));
    }

    /// The served document is OpenAPI 3.1 with every route's operation.
    #[test]
    fn the_document_lists_every_operation() {
        let doc: serde_json::Value =
            serde_json::from_str(&document()).expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let operations: usize = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|path| path.as_object().map_or(0, |methods| methods.len()))
            .sum();
        assert_eq!(operations, 54);
    }
}
