//! `/api/reviews` and `/api/join`: creating a review (its documents seeded first), joining it
//! with an invite link, reading it, moving its phase (and what follows from a move), and
//! rotating its invite links.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use debrief_proto::schema::{document_name, DocKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actions::counts as action_counts;
use super::documents::{on_discussion, reauthorize};
use super::openapi::{self, said};
use super::records::pin_version;
use super::request::{
    ApiPath, ClientAddr, JsonBody, JsonOrEmpty, MayCreate, Member, Session, SignedIn,
};
use super::state::ApiState;
use super::webhooks;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::actions::ActionCounts;
use crate::reviews::anonymous::{release, Anonymity};
use crate::reviews::basics::now_ms;
use crate::reviews::fields::{validate_date, validate_severity, validate_team, validate_title};
use crate::reviews::identity::sign_in_not_configured;
use crate::reviews::policy::{self, Phase, ReleaseMode, Role};
use crate::reviews::problem::Problem;
use crate::reviews::sessions::{NewReview, ReviewRecord, Reviews, SessionRecord};
use crate::reviews::webhooks::{Event, EventType};
use crate::reviews::{markdown, meeting, report, threads};

/// Largest body of `POST /api/reviews`, which may carry a Markdown report to import of up to
/// [`MAX_IMPORT_BYTES`]: twice that leaves room for JSON escapes (newlines, quotes) of a real
/// report. Creating reviews is rate-limited server-wide, so few such bodies are read at once.
pub const MAX_CREATE_BODY_BYTES: usize = 1024 * 1024;
// A node that does not serve reviews passes a creation on whole.
const _: () = assert!(MAX_CREATE_BODY_BYTES < crate::limits::MAX_FORWARDED_REQUEST_BYTES);

/// Largest Markdown report accepted at creation: a long post-mortem is tens of kilobytes.
pub const MAX_IMPORT_BYTES: usize = 512 * 1024;

/// The names of a review's documents, for the WebSocket endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Documents {
    #[schema(pattern = r"^review\.[0-9a-f]{32}\.report$")]
    report: String,
    #[schema(pattern = r"^review\.[0-9a-f]{32}\.discussion$")]
    discussion: String,
    #[schema(pattern = r"^review\.[0-9a-f]{32}\.notes$")]
    notes: String,
}

/// Number of sessions of each role.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Participants {
    facilitator: usize,
    author: usize,
    participant: usize,
    observer: usize,
}

/// How the review releases anonymous items.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AnonymousSettings {
    release: ReleaseMode,
    /// The server's release cadence, in milliseconds: a release happens at every multiple of it
    /// since the Unix epoch.
    #[schema(minimum = 100)]
    cadence_ms: u64,
    /// Whether the facilitator allowed anonymity in a small group when creating the review:
    /// anonymous items are then taken with fewer than three people who may post them, and a
    /// batch only one person contributed to is released all the same.
    small_group_anonymity: bool,
    /// How many people in the review may post anonymous items in each phase (those who may
    /// comment in it): below three, anonymous items are refused unless `small_group_anonymity`.
    posters: PhaseCounts,
}

/// A number for each phase.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PhaseCounts {
    draft: usize,
    review: usize,
    meeting: usize,
    closed: usize,
}

impl PhaseCounts {
    fn new(count: impl Fn(Phase) -> usize) -> Self {
        PhaseCounts {
            draft: count(Phase::Draft),
            review: count(Phase::Review),
            meeting: count(Phase::Meeting),
            closed: count(Phase::Closed),
        }
    }
}

/// The session a review is seen through.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct You {
    role: Role,
    /// The random id that stands for this person as a comment's author.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    participant: String,
    /// The display name given when joining.
    #[schema(
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// What this session may do in each phase, as the server enforces it: the app shows a
    /// control only when it will work.
    may: PhaseAbilities,
}

/// How a role may use one of the review's documents in a phase.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum DocumentUse {
    /// Read and change it.
    Write,
    /// Read it.
    Read,
    /// It cannot be opened.
    None,
}

impl DocumentUse {
    fn of(role: Role, phase: Phase, kind: DocKind) -> Self {
        match policy::document_access(role, phase, kind) {
            Ok(access) if access.writable() => DocumentUse::Write,
            Ok(_) => DocumentUse::Read,
            Err(_) => DocumentUse::None,
        }
    }
}

/// What a role may do in one phase, decided by the same checks the server applies to each
/// request and connection.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Abilities {
    report: DocumentUse,
    notes: DocumentUse,
    /// Add, reply to, edit, resolve and reopen comments; raise and support concerns (anonymous
    /// items also need enough people who may post them).
    comment: bool,
    /// Add and change action items.
    actions: bool,
    /// Mark the report read.
    mark_read: bool,
    /// Read pinned versions and export the review.
    records: bool,
    /// Move the phase, replace invite links, moderate, change settings, publish when closed.
    facilitate: bool,
    /// Run the timebox and the agenda.
    chair: bool,
}

impl Abilities {
    fn new(role: Role, phase: Phase) -> Self {
        let reads = policy::document_access(role, phase, DocKind::Report).is_ok();
        let facilitate = policy::may_facilitate(role).is_ok();
        Abilities {
            report: DocumentUse::of(role, phase, DocKind::Report),
            notes: DocumentUse::of(role, phase, DocKind::Notes),
            comment: policy::may_comment(role, phase).is_ok(),
            actions: meeting::may_write_actions(role, phase).is_ok(),
            mark_read: reads && meeting::reading_open(phase).is_ok(),
            records: reads,
            facilitate,
            chair: facilitate && meeting::during_meeting(phase).is_ok(),
        }
    }
}

/// A role's [`Abilities`] in every phase, so a page knows them before the phase changes.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PhaseAbilities {
    draft: Abilities,
    review: Abilities,
    meeting: Abilities,
    closed: Abilities,
}

impl PhaseAbilities {
    fn new(role: Role) -> Self {
        PhaseAbilities {
            draft: Abilities::new(role, Phase::Draft),
            review: Abilities::new(role, Phase::Review),
            meeting: Abilities::new(role, Phase::Meeting),
            closed: Abilities::new(role, Phase::Closed),
        }
    }
}

/// A review as the API shows it; `you` when it is read through a session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Review)]
pub(super) struct ReviewView {
    /// Unguessable id: 128 random bits as hex.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    /// The day of the incident, YYYY-MM-DD; null when not given.
    #[schema(required = true, pattern = r"^\d{4}-\d{2}-\d{2}$")]
    incident_date: Option<String>,
    /// The severity label; null when not given.
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    severity: Option<String>,
    phase: Phase,
    /// When the review was created, milliseconds since the Unix epoch.
    created_at: u64,
    participants: Participants,
    documents: Documents,
    anonymous: AnonymousSettings,
    /// How many sessions marked the report read (each once).
    read_count: u64,
    /// How many of its action items are done ("3 of 5 actions done").
    actions: ActionCounts,
    /// The team the review belongs to (its culture pulse joins the team's trend); null when
    /// none was given.
    #[schema(
        required = true,
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    team: Option<String>,
    /// The contributing factors tagged on the review: each 1 to 40 characters of letters,
    /// digits, spaces and - / & ' . ( ), in lower case.
    #[schema(max_items = 12)]
    factors: Vec<String>,
    /// The contributing factors this server offers for tagging (`--factor-tags`); other tags
    /// may be added beside them.
    factor_choices: Vec<String>,
    /// The server's clock when it answered, milliseconds since the Unix epoch (for timers).
    server_time: u64,
    /// The session the review is read through; absent when creating it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    you: Option<You>,
}

impl ReviewView {
    fn new(
        state: &ApiState,
        review: &ReviewRecord,
        you: Option<&SessionRecord>,
        actions: ActionCounts,
    ) -> Self {
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
                posters: PhaseCounts::new(|phase| Anonymity::posters(&counts, phase)),
            },
            read_count: state.records.published_read_count(&review.id),
            actions,
            team: review.team.clone(),
            factors: review.factors.clone(),
            factor_choices: state.factor_tags.clone(),
            server_time: now_ms(),
            you: you.map(|s| You {
                role: s.role,
                participant: s.participant.clone(),
                name: s.name.clone(),
                may: PhaseAbilities::new(s.role),
            }),
        }
    }
}

/// A review read through a session: a [`ReviewView`] whose `you` is always there.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(super) struct ReviewWithYou(ReviewView);

impl ReviewWithYou {
    pub(super) async fn new(state: &ApiState, review: &ReviewRecord, you: &SessionRecord) -> Self {
        let actions = action_counts(state, &review.id).await;
        ReviewWithYou(ReviewView::new(state, review, Some(you), actions))
    }
}

impl utoipa::PartialSchema for ReviewWithYou {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder};
        use utoipa::openapi::Ref;
        AllOfBuilder::new()
            .item(Ref::from_schema_name(ReviewView::name()))
            .item(ObjectBuilder::new().required("you"))
            .description(Some(
                "A review read through a session: `you` is always there.",
            ))
            .into()
    }
}

impl ToSchema for ReviewWithYou {
    fn name() -> std::borrow::Cow<'static, str> {
        "ReviewWithYou".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((ReviewView::name().into_owned(), ReviewView::schema()));
        ReviewView::schemas(schemas);
    }
}

/// An invite link for one role.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(super) struct Invite {
    /// The invite token: `dbi_` and 256 random bits as hex.
    #[schema(pattern = "^dbi_[0-9a-f]{64}$")]
    token: String,
    /// The join page's path, with the token in its fragment.
    #[schema(pattern = "^/join#dbi_[0-9a-f]{64}$")]
    link: String,
    /// Present and true when joining through this link needs the person to be signed in (their
    /// name is then the one their sign-in gives); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    sign_in_required: bool,
}

/// One invite link per role: the only copies (the server keeps their hashes).
#[derive(Debug, Default, Serialize, ToSchema)]
pub(super) struct Invites {
    author: Invite,
    facilitator: Invite,
    observer: Invite,
    participant: Invite,
}

impl Invites {
    fn new(tokens: &[(Role, String)], review: &ReviewRecord) -> Self {
        let mut invites = Invites::default();
        for (role, token) in tokens {
            let slot = match role {
                Role::Author => &mut invites.author,
                Role::Facilitator => &mut invites.facilitator,
                Role::Observer => &mut invites.observer,
                Role::Participant => &mut invites.participant,
            };
            *slot = Invite::new(token, review.invite_needs_sign_in(*role));
        }
        invites
    }
}

impl Invite {
    fn new(token: &str, sign_in_required: bool) -> Self {
        Invite {
            token: token.to_owned(),
            link: format!("/join#{token}"),
            sign_in_required,
        }
    }
}

/// The answer to `POST /api/reviews`: the review (no `you`: creating opens no session) and one
/// invite link per role, the only copies.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreateReviewResponse)]
pub(super) struct CreateResponse {
    review: ReviewView,
    invites: Invites,
}

/// The answer to `POST /api/join`: the session token (the only copy) and the review, with `you`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JoinResponse {
    /// The session token: `dbs_` and 256 random bits as hex.
    #[schema(pattern = "^dbs_[0-9a-f]{64}$")]
    session: String,
    review: ReviewWithYou,
}

/// The answer to rotating an invite link.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RotateResponse {
    role: Role,
    invite: Invite,
}

/// A new review. Its text fields are checked once trimmed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateReviewRequest)]
pub(super) struct CreateRequest {
    /// 1 to 200 characters once trimmed, without control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    /// A calendar day written YYYY-MM-DD.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}$")]
    incident_date: Option<String>,
    /// 1 to 32 characters once trimmed, without control characters (`SEV1`, `critical`, …).
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    severity: Option<String>,
    /// When anonymous items are released (see `ReleaseMode`); absent or null: `batch`.
    #[schema(value_type = Option<ReleaseMode>)]
    anonymous_release: Option<String>,
    /// Allow anonymous items in a small group (absent or null: false). Without it, a review
    /// refuses anonymous items while fewer than three people may post them (409
    /// `too_few_for_anonymity`), and holds a batch only one person contributed to until someone
    /// else's items join it (for up to ten release boundaries).
    small_group_anonymity: Option<bool>,
    /// The team the review belongs to: 1 to 60 characters once trimmed (inner whitespace
    /// collapsed), without control characters; absent or null: none.
    #[schema(
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    team: Option<String>,
    /// A report to import, in Markdown (at most 524,288 bytes, nested at most 32 levels deep);
    /// absent or null: the report starts from the server's template.
    report_markdown: Option<String>,
    /// The roles whose invite links need the person joining to be signed in (their name is
    /// then the one their sign-in gives); absent or null: none. Only on a server with sign-in.
    #[schema(max_items = 4)]
    sign_in_required: Option<Vec<Role>>,
}

/// `POST /api/reviews`: creates a review, seeds its documents, returns the invite links.
#[utoipa::path(
    post,
    path = "/api/reviews",
    operation_id = "createReview",
    tag = "reviews",
    summary = "Create a review, seed its report and discussion, and return its four invite links.",
    description = "Open to anyone who reaches the server, unless it was started with a creation \
    secret: then the secret must be sent as `Authorization: Bearer <secret>` (the same bearer \
    scheme as session tokens, with the secret in place of a token). On a server with sign-in, the \
    person must be signed in (and allowed by the server's e-mail domains and group, when set); \
    that is checked first.",
    request_body = CreateRequest,
    responses(
        (
            status = 201,
            description = "The review, in phase `draft`, with the only copies of its invite tokens \
            (one per role).",
            body = CreateResponse,
        ),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `invalid_title`: the trimmed title is empty, over \
            200 characters or holds control characters; `invalid_incident_date`: not a calendar \
            day written YYYY-MM-DD; `invalid_severity`: the trimmed severity is empty, over 32 \
            characters or holds control characters; `invalid_release`: `anonymous_release` is \
            neither `batch` nor `meeting`; `invalid_team`: the team, trimmed with its inner \
            whitespace collapsed, is empty, over 60 characters or holds control characters; `invalid_markdown`: `report_markdown` nests deeper than \
            32 levels.",
            body = ErrorBody,
        ),
        (
            status = 401,
            description = "`sign_in_required`: the server has sign-in set up and nobody is signed \
            in on the request; `creation_not_allowed`: the server was started with a creation \
            secret (`--creation-secret`) and the request does not carry it as `Authorization: \
            Bearer <secret>`. Checked before the body is read.",
            body = ErrorBody,
        ),
        (
            status = 403,
            description = "`email_domain_not_allowed`: the server allows creating reviews only to \
            e-mail addresses in some domains (`--allowed-email-domain`), and the signed-in person's \
            is not in one; `group_required`: the server allows it only to members of a group \
            (`--required-group`), and the signed-in person is not one. Checked before the body is \
            read.",
            body = ErrorBody,
        ),
        (
            status = 409,
            description = "`sign_in_not_configured`: `sign_in_required` names a role, but the \
            server has no sign-in set up.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 1,048,576 bytes; \
            `report_too_large`: `report_markdown` is over 524,288 bytes.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (
            status = 429,
            description = "`rate_limited`: this address sent 5 wrong creation secrets in the last \
            minute (checked first; even the right secret is refused meanwhile), or created 10 \
            reviews in the last minute (checked once the body parses and its title, incident_date, \
            severity, anonymous_release and team are valid, before `report_markdown` is checked). Each \
            limit makes the address wait a minute, twice as long each time it floods again; the \
            `Retry-After` header says how many seconds.",
            body = ErrorBody,
        ),
        (
            status = 503,
            description = "`document_unavailable`: the review's document cannot be changed right \
            now; try again; `store_unavailable`: the store cannot be written; try again.",
            body = ErrorBody,
        ),
    ),
    security((), ("bearer" = [])),
)]
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
        team: req.team.as_deref().map(validate_team).transpose()?,
        sign_in_invites: Role::ALL
            .into_iter()
            .filter(|r| req.sign_in_required.as_ref().is_some_and(|s| s.contains(r)))
            .collect(),
    };
    if !new.sign_in_invites.is_empty() && !state.sign_in.enabled() {
        return Err(sign_in_not_configured().into());
    }
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
    // The event goes into the outbox in the same flush as the review.
    let event = Event::new(
        &state.webhooks.clock,
        EventType::ReviewCreated,
        &id,
        &new.title,
        serde_json::json!({ "phase": Phase::Draft.as_str() }),
    );
    let staged = state.webhooks.stage(event).map_err(Problem::from)?;
    let created = match state.reviews.insert(id, new).await {
        Ok(created) => {
            state.webhooks.commit(&staged);
            created
        }
        Err(e) => {
            state.webhooks.unstage(&staged);
            return Err(e.into());
        }
    };
    tracing::info!(review = %created.review.id, "review created");
    state.actions.fill_empty(&created.review.id);
    let body = CreateResponse {
        review: ReviewView::new(&state, &created.review, None, ActionCounts::default()),
        invites: Invites::new(&created.invites, &created.review),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// An invite token to look up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InviteRequest {
    /// An invite token (`dbi_…`); whitespace around it is ignored.
    invite: String,
}

/// What an invite link joins, shown on the join page before anyone gives a name.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InviteView)]
pub(super) struct InviteView {
    /// The review's title.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    title: String,
    phase: Phase,
    /// The role the link joins with.
    role: Role,
    /// Present and true when joining through the link needs the person to be signed in (the
    /// name is then the one their sign-in gives, and a typed name is ignored); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    sign_in_required: bool,
}

/// `POST /api/invite`: the review and role an invite token joins, without joining. Wrong
/// tokens count against the address like wrong joins.
#[utoipa::path(
    post,
    path = "/api/invite",
    operation_id = "lookUpInvite",
    tag = "reviews",
    summary = "Name the review and the role an invite token joins, without joining.",
    request_body = InviteRequest,
    responses(
        (status = 200, description = "The review's title and phase, and the invite's role.", body = InviteView),
        (status = 400, description = said::BAD_JSON, body = ErrorBody),
        (status = 401, description = said::BAD_INVITE, body = ErrorBody),
        (status = 404, description = said::INVITE_REVIEW_GONE, body = ErrorBody),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (
            status = 429,
            description = "`rate_limited`: this address sent 10 wrong invite tokens (to this or \
            to joining); it waits a minute, twice as long each time it floods again. The \
            `Retry-After` header says how many seconds to wait.",
            body = ErrorBody,
        ),
    ),
    security(),
)]
pub(super) async fn look_up_invite(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    body: Result<JsonBody<InviteRequest>, ApiError>,
) -> Result<Json<InviteView>, ApiError> {
    state.reviews.guards.may_look_up_invite(addr)?;
    let JsonBody(req) = body?;
    let found = state.reviews.invite(req.invite.trim());
    if found.as_ref().is_err_and(|p| p.code == "invalid_invite") {
        if let Some(limited) = state.reviews.guards.wrong_invite(addr) {
            return Err(limited.into());
        }
    }
    let (review, role) = found?;
    Ok(Json(InviteView {
        sign_in_required: review.invite_needs_sign_in(role),
        title: review.title,
        phase: review.phase,
        role,
    }))
}

/// An invite and the name to join with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinRequest {
    /// An invite token (`dbi_…`); whitespace around it is ignored.
    invite: String,
    /// The display name: 1 to 60 characters once trimmed, without control characters. Ignored
    /// when the invite link needs sign-in: the name is then the one the sign-in gives.
    #[schema(
        min_length = 1,
        max_length = 60,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
}

/// `POST /api/join`: exchanges an invite token and a display name for a session. The address
/// is counted before the body is read.
#[utoipa::path(
    post,
    path = "/api/join",
    operation_id = "joinReview",
    tag = "reviews",
    summary = "Exchange an invite token and a display name for a session in the invite's review and \
    role.",
    request_body = JoinRequest,
    responses(
        (
            status = 201,
            description = "The session token (the only copy: send it as `Authorization: Bearer \
            <token>`) and the review as seen by the new session.",
            body = JoinResponse,
        ),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `invalid_name`: the normalised name (NFKC, \
            invisible characters and bidi controls removed, whitespace collapsed and trimmed) is \
            empty, over 60 characters or holds control characters, or looks like \"Anonymous\" \
            (checked before the invite).",
            body = ErrorBody,
        ),
        (
            status = 401,
            description = "`invalid_invite`: the invite token is unknown or was rotated; \
            `sign_in_required`: the invite link needs the person to be signed in, and nobody is \
            signed in on the request.",
            body = ErrorBody,
        ),
        (status = 404, description = said::INVITE_REVIEW_GONE, body = ErrorBody),
        (
            status = 409,
            description = "`review_full`: the review already holds 1,000 sessions, or 950 \
            participants and observers when joining with one of their links (the other 50 places \
            are kept for facilitators and authors).",
            body = ErrorBody,
        ),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (
            status = 429,
            description = "`rate_limited`: this address made 60 joins in the last minute, or sent \
            10 wrong invite tokens (it waits a minute, twice as long each time it floods again; \
            even a right invite is refused meanwhile), or this invite link made 30 sessions in the \
            last minute. The `Retry-After` header says how many seconds to wait.",
            body = ErrorBody,
        ),
        (status = 503, description = said::STORE_UNWRITABLE, body = ErrorBody),
    ),
    security(),
)]
pub(super) async fn join(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    SignedIn(person): SignedIn,
    body: Result<JsonBody<JoinRequest>, ApiError>,
) -> Result<Response, ApiError> {
    state.reviews.guards.may_join(addr)?;
    let JsonBody(req) = body?;
    let signed_in = person.as_ref().map(|p| p.name.as_str());
    let joined = state
        .reviews
        .join(req.invite.trim(), &req.name, signed_in)
        .await;
    if joined.as_ref().is_err_and(|p| p.code == "invalid_invite") {
        if let Some(limited) = state.reviews.guards.wrong_invite(addr) {
            return Err(limited.into());
        }
    }
    let (session, review, token) = joined?;
    if let Some(person) = &person {
        // The person finds the review again from any browser they sign in with. The session
        // stands without it (the browser that joined holds it), so a failure is only logged.
        let live = |hash: &[u8; 32]| state.reviews.by_hash(hash).is_some();
        if let Err(e) = state.people.link(person, &token, &review.id, live).await {
            tracing::warn!(review = %review.id, error = e.code, "could not link a session to its person");
        }
    }
    tracing::info!(review = %review.id, role = session.role.as_str(), "joined");
    let people: usize = state.reviews.counts(&review.id).values().sum();
    // The live headcount others see (read count "7 of 9"); the join stands even if this fails.
    let counted = on_discussion(&state, &review.id, move |doc| meeting::people(doc, people)).await;
    if counted.is_err() {
        tracing::warn!(review = %review.id, "could not update the headcount");
    }
    let body = JoinResponse {
        session: token,
        review: ReviewWithYou::new(&state, &review, &session).await,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/reviews/{id}`.
#[utoipa::path(
    get,
    path = "/api/reviews/{id}",
    operation_id = "getReview",
    tag = "reviews",
    summary = "Read a review as seen by the caller's session.",
    params(openapi::ReviewIdParam),
    responses(
        (
            status = 200,
            description = "The review, with the caller's role, participant id and name in `you`.",
            body = ReviewWithYou,
        ),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::OTHER_REVIEW, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
    ),
)]
pub(super) async fn read(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
) -> Json<ReviewWithYou> {
    Json(ReviewWithYou::new(&state, &you.review, &you.session).await)
}

/// The phase to move to: the review's next one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PhaseRequest {
    #[schema(value_type = Phase)]
    phase: String,
}

/// `POST /api/reviews/{id}/phase`: the facilitator moves the review to its next phase; open
/// connections get their new access at once. (Who may move it is checked by
/// [`Reviews::set_phase`], after the body.)
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/phase",
    operation_id = "moveReviewPhase",
    tag = "reviews",
    summary = "Move the review to its next phase (facilitator only); open connections get their new \
    access at once. Moving to the phase it is already in changes nothing and succeeds, so a move \
    can be retried.",
    description = "The session is checked before the body is read. Moving a review whose anonymous \
    items are released at the meeting (`anonymous.release` = `meeting`) into `meeting` releases \
    what it holds. Entering a phase pins a version of the report and the notes (`GET \
    /api/reviews/{id}/versions`).",
    params(openapi::ReviewIdParam),
    request_body = PhaseRequest,
    responses(
        (
            status = 200,
            description = "The review in its new phase, as seen by the caller; also when it already \
            was in the requested phase (the move is idempotent).",
            body = ReviewWithYou,
        ),
        (
            status = 400,
            description = "`invalid_path`: a path parameter is not valid (for example, not UTF-8 \
            once percent-decoded); `invalid_json`: the body is not JSON of the documented shape \
            (syntax, types, a missing or unknown field); `invalid_phase`: the phase is not one of \
            draft, review, meeting, closed.",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`illegal_transition`: phases only move forward one step (draft → review \
            → meeting → closed); the requested phase is neither the current one nor the next one.",
            body = ErrorBody,
        ),
        (
            status = 413,
            description = "`body_too_large`: the request body is over 65,536 bytes; \
            `document_too_large`: the review's discussion, report or notes is at its size limit, \
            so the server cannot record the move in the discussion or pin the phase's version (the \
            phase itself has moved; a retry repeats what follows the move); \
            `review_quota_exceeded`: the review's documents are at their storage quota (48 MiB \
            together, refused once less than 64 KiB is left); they can still be read.",
            body = ErrorBody,
        ),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_OR_DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn move_phase(
    State(state): State<Arc<ApiState>>,
    you: Session<Member>,
    JsonBody(req): JsonBody<PhaseRequest>,
) -> Result<Json<ReviewWithYou>, ApiError> {
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
    // A move that will happen puts its events into the outbox first, so that the flush that
    // makes the phase durable covers them; they are taken back if it does not happen.
    let mut staged = Vec::new();
    let current = state.reviews.record(&id);
    if let Some(current) = current
        .filter(|r| r.phase.next() == Some(to) && policy::may_facilitate(session.role).is_ok())
    {
        for event in webhooks::phase_events(&state, &current, to) {
            match state.webhooks.stage(event) {
                Ok(seqs) => staged.extend(seqs),
                Err(e) => {
                    state.webhooks.unstage(&staged);
                    return Err(Problem::from(e).into());
                }
            }
        }
    }
    let moved = state.reviews.set_phase(&session, to).await;
    // Refused, or already there: nothing happened. (A store that failed to flush may have
    // moved it all the same: its events stay.)
    let happened = match &moved {
        Ok((_, changed)) => *changed,
        Err(p) => p.code == "store_unavailable",
    };
    if !happened {
        state.webhooks.unstage(&staged);
    } else if moved.is_ok() {
        // Durable: the receivers may hear of it. (A move whose flush failed keeps its events
        // in the outbox unsent; they go out after a restart if the move survived it.)
        state.webhooks.commit(&staged);
    }
    // Once the phase changed in memory (even if making it durable failed), open sockets follow
    // it at once; deciding again is harmless when nothing changed.
    reauthorize(&state, &id).await;
    let (review, changed) = moved?;
    if !changed && to == Phase::Draft {
        // Nothing ever follows from being in draft.
        return Ok(Json(ReviewWithYou::new(&state, &review, &session).await));
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
    Ok(Json(ReviewWithYou::new(&state, &review, &session).await))
}

/// What else rotating does; the body may be left out.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// Also end every session of this role except the caller's.
    #[serde(default)]
    #[schema(default = false)]
    revoke_sessions: bool,
    /// Whether the new link needs the person joining to be signed in; absent or null: as the
    /// old link did. Only on a server with sign-in.
    sign_in_required: Option<bool>,
}

/// `POST /api/reviews/{id}/invites/{role}`: replaces a role's invite link. The role is checked
/// before the body, and who may rotate by [`Reviews::rotate`].
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/invites/{role}",
    operation_id = "rotateInvite",
    tag = "reviews",
    summary = "Replace a role's invite link (facilitator only), optionally ending that role's other \
    sessions.",
    params(openapi::ReviewIdParam, openapi::RoleParam),
    request_body(content = Option<RotateRequest>, description = "Optional: an empty body is the same as `{}`."),
    responses(
        (
            status = 200,
            description = "The role and its new invite link; the old link stops working.",
            body = RotateResponse,
        ),
        (
            status = 400,
            description = "`invalid_path`: a path parameter is not valid (for example, not UTF-8 \
            once percent-decoded); `invalid_role`: the role is not one of facilitator, author, \
            participant, observer (checked after the session); `invalid_json`: the body is not \
            JSON of the documented shape (syntax, types, a missing or unknown field).",
            body = ErrorBody,
        ),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (status = 403, description = said::NOT_FACILITATOR, body = ErrorBody),
        (status = 404, description = said::NO_REVIEW, body = ErrorBody),
        (
            status = 409,
            description = "`sign_in_not_configured`: `sign_in_required` is true, but the server \
            has no sign-in set up (checked after the caller is known to be the facilitator).",
            body = ErrorBody,
        ),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::STORE_UNWRITABLE, body = ErrorBody),
    ),
)]
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
    if req.sign_in_required == Some(true) && !state.sign_in.enabled() {
        policy::may_facilitate(you.session.role).map_err(Problem::from)?;
        return Err(sign_in_not_configured().into());
    }
    let rotated = state
        .reviews
        .rotate(
            &you.session,
            role,
            req.revoke_sessions,
            req.sign_in_required,
        )
        .await;
    if req.revoke_sessions {
        reauthorize(&state, &id).await;
    }
    let (token, sign_in_required) = rotated?;
    tracing::info!(review = %id, role = role.as_str(), "invite link rotated");
    Ok(Json(RotateResponse {
        role,
        invite: Invite::new(&token, sign_in_required),
    }))
}
