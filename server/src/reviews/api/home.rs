//! `POST /api/home` (issue 19): the reviews a person is in, newest first, with what waits for
//! them in each, behind the start page.
//!
//! Like the action items page, it is asked for with every session the browser holds (in the
//! body, at most 100): a person is a session per review. [`sessions_to_look_at`] is the one place
//! that says which sessions are looked at. Tokens that are no session are answered back, so the
//! browser can forget them, instead of failing the whole list.
//!
//! Nothing here is counted per person that could tell who wrote what: no anonymous item, reply,
//! concern or vote is looked at. What waits for a person is their own read mark, the open action
//! items owned by their display name or by the review's team (action items carry an owning team
//! as text, and are not anonymous), and for the facilitator the step the review waits on them
//! for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use debrief_proto::schema::DocKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actions::{ensure_indexed, MAX_SESSIONS};
use super::me::linked_sessions;
use super::openapi::said;
use super::request::{JsonBody, SignedIn};
use super::state::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::actions::{open_owned_by, ActionCounts};
use crate::reviews::policy::{self, Phase, Role};
use crate::reviews::sessions::{ReviewRecord, SessionRecord};

/// Longest search text, in characters (a title is at most 200).
pub const MAX_SEARCH_CHARS: usize = 200;

/// The sessions a browser holds, for `POST /api/home`.
// Not `Debug`: the tokens are secrets and must not reach a log.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HomeRequest {
    /// The session tokens this browser holds, one per review it joined (at most 100). Tokens that
    /// are no session (revoked, or of a review that is gone) are answered back in
    /// `unknown_sessions`.
    #[schema(max_items = 100)]
    sessions: Vec<String>,
    /// Only the reviews whose title contains this text, without regard to case (at most 200
    /// characters; spaces around it are ignored; empty lists every review).
    #[serde(default)]
    #[schema(max_length = 200)]
    search: Option<String>,
}

/// The session a listed review is seen through.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HomeYou {
    role: Role,
    /// The display name given when joining.
    #[schema(min_length = 1, max_length = 60)]
    name: String,
}

/// What the review waits on its facilitator for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum NextStep {
    /// In draft: send the report for review.
    SendForReview,
    /// In review: start the meeting (see `read_count` for how far the reading is).
    StartMeeting,
    /// In the meeting: close the review.
    Close,
    /// Closed and not in the library: publish it.
    Publish,
}

/// What a review waits on its facilitator for; present only for the reviews one facilitates.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Facilitation {
    /// The next step only the facilitator takes; null when there is none left (closed and
    /// published).
    #[schema(required = true)]
    next: Option<NextStep>,
    /// How many sessions marked the report read, as everyone sees it (it changes only at the
    /// server's release boundaries, so it does not tell who just read).
    read_count: u64,
    /// How many sessions the review has (everyone who joined, the facilitator included).
    people: usize,
}

/// What waits for the person in a review.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Waiting {
    /// The report is out for reading (review or meeting), the session may read it, and it has
    /// not marked it read.
    unread_report: bool,
    /// Action items not done yet (open or in progress) whose owner is the session's display name
    /// or the review's team, compared without regard to case or the spaces around them.
    my_actions: usize,
}

/// One review a session belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HomeReview {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    phase: Phase,
    /// The day of the incident, YYYY-MM-DD; null when not given.
    #[schema(required = true, pattern = r"^\d{4}-\d{2}-\d{2}$")]
    incident_date: Option<String>,
    /// The severity label; null when not given.
    #[schema(required = true, min_length = 1, max_length = 32)]
    severity: Option<String>,
    /// The review's team; null when none.
    #[schema(required = true, min_length = 1, max_length = 60)]
    team: Option<String>,
    /// When the review was created, milliseconds since the Unix epoch.
    created_at: u64,
    /// Its last change the server keeps a time of, milliseconds since the Unix epoch: the latest
    /// of its creation, its last phase move and its action items' last changes (edits of the
    /// report, notes and comments do not count).
    changed_at: u64,
    you: HomeYou,
    waiting: Waiting,
    /// How many of its action items are done (0 of 0 for a session that cannot read the
    /// discussion in this phase).
    actions: ActionCounts,
    /// Present (not null) exactly for the reviews the session facilitates: what the review
    /// waits on them for.
    #[schema(required = true)]
    facilitator: Option<Facilitation>,
}

/// The home page's list.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Home {
    /// The reviews the sessions belong to that match the search, last changed first (at most
    /// 100: one per session).
    #[schema(max_items = 100)]
    reviews: Vec<HomeReview>,
    /// How many reviews the sessions belong to, whatever the search.
    joined: usize,
    /// The tokens sent that are no session (revoked, or of a review that is gone): the browser
    /// may forget them.
    #[schema(max_items = 100)]
    unknown_sessions: Vec<String>,
    /// Listed reviews whose action items cannot be read right now (the store or the review's
    /// discussion is busy or damaged): their `actions` and `my_actions` show 0; asking again
    /// may find them.
    #[schema(max_items = 100)]
    unavailable: Vec<String>,
}

/// The session tokens whose reviews the home page lists: each one the browser sent, once, in
/// its order. The one place that decides which sessions are looked at.
fn sessions_to_look_at(sent: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    sent.into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// One review a token belongs to, or a session the signed-in person joined (whose token this
/// browser may not hold: `None`).
struct Membership {
    token: Option<String>,
    session: SessionRecord,
    review: ReviewRecord,
}

/// The review of each token, one membership per review (of two sessions in one review, the
/// one with the role listed first: facilitator, author, participant, observer), and the tokens
/// that are no session.
///
/// With sign-in, the sessions the signed-in person joined (`linked`, from any browser, newest
/// first) are added; a session this browser sent the token of is seen through that token. At
/// most [`MAX_SESSIONS`] reviews: those of the tokens sent first, then the newest links.
fn memberships(
    state: &ApiState,
    tokens: Vec<String>,
    linked: Vec<(SessionRecord, ReviewRecord)>,
) -> (Vec<Membership>, Vec<String>) {
    let rank = |r: Role| Role::ALL.iter().position(|x| *x == r).unwrap_or(usize::MAX);
    let mut by_review: HashMap<String, Membership> = HashMap::new();
    let mut unknown = Vec::new();
    let sent = tokens
        .into_iter()
        .filter_map(|token| match state.reviews.by_token(&token) {
            Some((session, review)) => Some((Some(token), session, review)),
            None => {
                unknown.push(token);
                None
            }
        });
    let sent: Vec<_> = sent.collect();
    let linked = linked
        .into_iter()
        .map(|(session, review)| (None, session, review));
    for (token, session, review) in sent.into_iter().chain(linked) {
        if by_review.len() >= MAX_SESSIONS && !by_review.contains_key(&review.id) {
            continue;
        }
        let better = by_review
            .get(&review.id)
            .is_none_or(|m| rank(session.role) < rank(m.session.role));
        if better {
            by_review.insert(
                review.id.clone(),
                Membership {
                    token,
                    session,
                    review,
                },
            );
        }
    }
    (by_review.into_values().collect(), unknown)
}

/// The search text, checked and lowercased; `None` lists everything.
fn search_text(search: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = search else {
        return Ok(None);
    };
    let text = text.trim();
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(ApiError::bad_request(
            "invalid_search",
            format!("the search text is at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok((!text.is_empty()).then(|| text.to_lowercase()))
}

fn next_step(phase: Phase, published: bool) -> Option<NextStep> {
    match phase {
        Phase::Draft => Some(NextStep::SendForReview),
        Phase::Review => Some(NextStep::StartMeeting),
        Phase::Meeting => Some(NextStep::Close),
        Phase::Closed => (!published).then_some(NextStep::Publish),
    }
}

/// One listed review.
async fn listed(
    state: &ApiState,
    m: Membership,
    published: &HashSet<String>,
    unavailable: &mut bool,
) -> Result<HomeReview, ApiError> {
    let Membership {
        token,
        session,
        review,
    } = m;
    let phase = review.phase;
    let mut changed_at = review
        .created_at
        .max(review.phase_changed_at.unwrap_or(0))
        .max(review.closed_at.unwrap_or(0));
    let (actions, my_actions) =
        if policy::document_access(session.role, phase, DocKind::Discussion).is_ok() {
            if ensure_indexed(state, &review.id).await.is_err() {
                // Its discussion cannot be read now: listed all the same, and named.
                *unavailable = true;
            }
            let items = state.actions.items(&review.id).unwrap_or_default();
            let last = items.iter().map(|i| i.updated_at).fold(0.0, f64::max);
            changed_at = changed_at.max(last.max(0.0) as u64);
            let mut owners = vec![session.name.as_str()];
            owners.extend(review.team.as_deref());
            (ActionCounts::of(&items), open_owned_by(&items, &owners))
        } else {
            (ActionCounts::default(), 0)
        };
    let reads = policy::document_access(session.role, phase, DocKind::Report).is_ok();
    let unread_report = reads
        && matches!(phase, Phase::Review | Phase::Meeting)
        && match &token {
            Some(token) => !state.records.has_read(&review.id, token)?,
            // Read marks are kept under the session's token, which only the browser that
            // joined holds: from another browser, the report is not said to wait.
            None => false,
        };
    let facilitator = (session.role == Role::Facilitator).then(|| Facilitation {
        next: next_step(phase, published.contains(&review.id)),
        read_count: state.records.published_read_count(&review.id),
        people: state.reviews.counts(&review.id).values().sum(),
    });
    Ok(HomeReview {
        id: review.id,
        title: review.title,
        phase,
        incident_date: review.incident_date,
        severity: review.severity,
        team: review.team,
        created_at: review.created_at,
        changed_at,
        you: HomeYou {
            role: session.role,
            name: session.name,
        },
        waiting: Waiting {
            unread_report,
            my_actions,
        },
        actions,
        facilitator,
    })
}

/// `POST /api/home`: the reviews a browser's sessions belong to.
#[utoipa::path(
    post,
    path = "/api/home",
    operation_id = "home",
    tag = "home",
    summary = "List the reviews a browser joined (its sessions in the body), last changed first, \
    each with the session's role and name and what waits for it: the report unread, its open \
    action items, and for the facilitator the next step.",
    description = "Needs no `Authorization`: the sessions are in the body. Tokens that are no \
    session are not an error: they come back in `unknown_sessions`. My action items are the \
    ones not done whose owner is my display name or the review's team. Nothing about anonymous \
    items, concerns or votes is counted here. On a server with sign-in, the review sessions the \
    signed-in person joined (from any browser) are listed too; for one whose token the body does \
    not carry, `waiting.unread_report` is false (read marks are kept under the session's token).",
    request_body = HomeRequest,
    responses(
        (status = 200, description = "The reviews, and the tokens that are no session.", body = Home),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `too_many_sessions`: over 100 sessions; \
            `invalid_search`: the search text is over 200 characters.",
            body = ErrorBody,
        ),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (
            status = 503,
            description = "`store_unavailable`: the store cannot be read (the library's list or \
            a read mark); try again.",
            body = ErrorBody,
        ),
    ),
    security(),
)]
pub(super) async fn home(
    State(state): State<Arc<ApiState>>,
    SignedIn(person): SignedIn,
    JsonBody(req): JsonBody<HomeRequest>,
) -> Result<Json<Home>, ApiError> {
    if req.sessions.len() > MAX_SESSIONS {
        return Err(ApiError::bad_request(
            "too_many_sessions",
            format!("send at most {MAX_SESSIONS} sessions"),
        ));
    }
    let search = search_text(req.search)?;
    let linked = person
        .as_ref()
        .map(|p| linked_sessions(&state, p))
        .unwrap_or_default();
    let (joined, unknown_sessions) = memberships(&state, sessions_to_look_at(req.sessions), linked);
    let published: HashSet<String> = state
        .records
        .published_names()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let total = joined.len();
    let mut reviews = Vec::new();
    let mut unavailable = Vec::new();
    for m in joined {
        let matches = search
            .as_ref()
            .is_none_or(|s| m.review.title.to_lowercase().contains(s));
        if matches {
            let mut busy = false;
            let review = listed(&state, m, &published, &mut busy).await?;
            if busy {
                unavailable.push(review.id.clone());
            }
            reviews.push(review);
        }
    }
    reviews.sort_by(|a, b| {
        b.changed_at
            .cmp(&a.changed_at)
            .then_with(|| b.created_at.cmp(&a.created_at))
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(Json(Home {
        reviews,
        joined: total,
        unknown_sessions,
        unavailable,
    }))
}
