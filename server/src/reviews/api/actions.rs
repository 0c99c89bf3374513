//! Action items across reviews (issue 20): the list behind the action items page, and moving an
//! item's status from it, recorded with who and when.
//!
//! Who sees what. There is no sign-in: a person is a session per review, and a browser holds one
//! session for each review it joined. The list is therefore asked for with **every session the
//! browser holds**: `POST /api/actions/search` takes them in its body (at most 100). A body keeps
//! the tokens out of addresses (which proxies and browsers log and keep in their history), and
//! a list of credentials has no standard place in `Authorization`, which carries one. `GET
//! /api/actions` answers the same for one session (`Authorization: Bearer`) or none. Each
//! answer holds the items of the reviews those sessions may read the discussion of, plus those
//! of published reviews, which are public anyway (names replaced by roles where the review was
//! published so, for whoever did not join it).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use debrief_proto::schema::DocKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::documents::{in_phase, read_doc};
use super::openapi::{self, said, ActionItem};
use super::request::{bearer, ApiPath, JsonBody, MovesActions, Session};
use super::state::ApiState;
use super::webhooks;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::actions::{owned_by, ActionCounts, Indexed};
use crate::reviews::basics::{day_of, now_ms};
use crate::reviews::meeting::{self, statuses_open, ActionKind, ActionStatus, StatusChange};
use crate::reviews::policy::{self, Phase};
use crate::reviews::records::Names;
use crate::reviews::renaming::Renaming;
use crate::reviews::sessions::{ReviewRecord, SessionRecord};
use crate::reviews::trackers::{Reference, TrackerLink};

/// Most sessions one search carries.
pub const MAX_SESSIONS: usize = 100;
/// Most items one answer lists (`limit`'s largest value).
pub const MAX_ITEMS: u32 = 500;
/// Items listed when `limit` is not given.
pub const DEFAULT_ITEMS: u32 = 200;
/// Most reviews an answer sums up.
pub const MAX_REVIEWS: usize = 200;

/// 503 of the lists.
const UNREADABLE: &str = "`store_unavailable`: the store cannot be read; try again; \
    `document_unavailable`: a review's discussion cannot be read right now; try again.";

/// The filters, as query parameters of `GET /api/actions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ActionQuery {
    /// Only items with this status.
    status: Option<ActionStatus>,
    /// Only items this team owns (the item's `owner`, compared without regard to case or the
    /// spaces around it): 1 to 100 characters.
    #[param(min_length = 1, max_length = 100)]
    team: Option<String>,
    /// `true`: only overdue items (not done, due before today on the server's clock); `false`:
    /// only the others.
    overdue: Option<bool>,
    /// Only the items of this review (its id).
    #[param(pattern = "^[0-9a-f]{32}$")]
    review: Option<String>,
    /// Only items of this kind.
    kind: Option<ActionKind>,
    /// At most this many items (1 to 500; default 200).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The sessions a browser holds and the filters, for `POST /api/actions/search`.
// Not `Debug`: the tokens are secrets and must not reach a log.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionSearch {
    /// The session tokens this browser holds, one per review it joined (at most 100). Tokens that
    /// are no session (revoked, or of a review that is gone) are left out and counted in
    /// `ignored_sessions`.
    #[schema(max_items = 100)]
    sessions: Vec<String>,
    /// Only items with this status.
    #[serde(default)]
    status: Option<ActionStatus>,
    /// Only items this team owns (compared without regard to case or surrounding spaces): 1 to
    /// 100 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    team: Option<String>,
    /// `true`: only overdue items; `false`: only the others.
    #[serde(default)]
    overdue: Option<bool>,
    /// Only the items of this review.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-f]{32}$")]
    review: Option<String>,
    /// Only items of this kind.
    #[serde(default)]
    kind: Option<ActionKind>,
    /// At most this many items (1 to 500; default 200).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The review an item came from.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ItemReview {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    phase: Phase,
}

/// An action item in the list.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ListedAction {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    id: String,
    review: ItemReview,
    #[schema(min_length = 1, max_length = 300)]
    what: String,
    #[schema(min_length = 1, max_length = 500)]
    why: String,
    kind: ActionKind,
    /// The owning team.
    #[schema(min_length = 1, max_length = 100)]
    owner: String,
    /// Null when none.
    #[schema(required = true, pattern = "^https?://")]
    link: Option<String>,
    /// The tracker the link points into, with its name; null without a link.
    #[schema(required = true)]
    tracker: Option<TrackerLink>,
    /// Issue keys in `what` that the server's tracker patterns turn into links, in order.
    #[schema(max_items = 10)]
    references: Vec<Reference>,
    /// Due day; null when none.
    #[schema(required = true, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    due: Option<String>,
    status: ActionStatus,
    /// Not done and due before `today`.
    overdue: bool,
    /// Whole days since it was added (server clock).
    age_days: u64,
    /// When it was added, milliseconds since the Unix epoch.
    created_at: f64,
    /// Its last change, milliseconds since the Unix epoch.
    updated_at: f64,
    /// Who set each status and when, oldest first (its first entry and the latest 19 kept).
    #[schema(max_items = 20)]
    history: Vec<StatusChange>,
    /// Whether one of the sessions sent may move its status (`POST
    /// /api/reviews/{id}/actions/{action}/status` with that review's session).
    may_change: bool,
}

/// A review whose items the answer may hold, with how many of them are done.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ListedReview {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    phase: Phase,
    /// How many of its action items are done (all of them, whatever the filters).
    actions: ActionCounts,
    /// Whether one of the sessions sent belongs to it (else it is published).
    joined: bool,
}

/// Action items across reviews.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ActionList {
    /// Today on the server's clock (UTC), YYYY-MM-DD: an item due before it is overdue.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    today: String,
    /// The items that match, most urgent first: overdue ones by due day, then the other open
    /// and in-progress ones by due day (none last), then done ones; newest first among equals.
    #[schema(max_items = 500)]
    items: Vec<ListedAction>,
    /// How many items match (`items` holds the first `limit` of them).
    total: usize,
    /// The reviews the sessions may read and the published ones that have items, joined ones
    /// first (at most 200), whatever the filters.
    #[schema(max_items = 200)]
    reviews: Vec<ListedReview>,
    /// Sessions sent that are no session (revoked, or of a review that is gone), left out.
    ignored_sessions: usize,
    /// Reviews in scope whose items cannot be read right now (the store or the review's document
    /// is busy or damaged), left out of `items` and `reviews`; asking again may find them.
    unavailable: Vec<String>,
}

/// One review in the scope of a request.
struct Scope {
    review: ReviewRecord,
    /// The caller's session in it, when joined.
    session: Option<SessionRecord>,
    /// Names replaced by roles: a review published so, read by someone who did not join it.
    renaming: Option<Renaming>,
}

/// The checked filters.
struct Filters {
    status: Option<ActionStatus>,
    team: Option<String>,
    overdue: Option<bool>,
    review: Option<String>,
    kind: Option<ActionKind>,
    limit: usize,
}

impl Filters {
    fn new(
        status: Option<ActionStatus>,
        team: Option<String>,
        overdue: Option<bool>,
        review: Option<String>,
        kind: Option<ActionKind>,
        limit: Option<u32>,
    ) -> Result<Filters, ApiError> {
        let team = match team {
            Some(t) => {
                let t = t.trim();
                if t.is_empty() || t.chars().count() > 100 {
                    return Err(ApiError::bad_request(
                        "invalid_team",
                        "a team is 1 to 100 characters",
                    ));
                }
                Some(t.to_lowercase())
            }
            None => None,
        };
        if let Some(r) = &review {
            if r.len() != 32 || !r.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(ApiError::bad_request(
                    "invalid_review",
                    "a review id is 32 lowercase hexadecimal digits",
                ));
            }
        }
        let limit = limit.unwrap_or(DEFAULT_ITEMS);
        if !(1..=MAX_ITEMS).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit is a whole number from 1 to {MAX_ITEMS}"),
            ));
        }
        Ok(Filters {
            status,
            team,
            overdue,
            review,
            kind,
            limit: limit as usize,
        })
    }
}

/// Puts `review`'s items in the index if they are not there yet (read on its document's task).
pub(super) async fn ensure_indexed(state: &ApiState, review: &str) -> Result<(), ApiError> {
    if state.actions.filled(review) {
        return Ok(());
    }
    let index = state.actions.clone();
    let id = review.to_owned();
    read_doc(state, review, DocKind::Discussion, move |doc| {
        index.fill(&id, &meeting::actions_json(doc));
    })
    .await
}

/// How many of a review's items are done (0 of 0 when they cannot be read now).
pub(super) async fn counts(state: &ApiState, review: &str) -> ActionCounts {
    if ensure_indexed(state, review).await.is_err() {
        return ActionCounts::default();
    }
    state.actions.counts(review).unwrap_or_default()
}

/// The reviews `sessions` may read the action items of, and the published ones; the number of
/// tokens that are no session.
fn scope(state: &ApiState, sessions: &[String]) -> Result<(Vec<Scope>, usize), ApiError> {
    let mut joined: HashMap<String, Scope> = HashMap::new();
    let mut ignored = 0;
    for token in sessions.iter().collect::<HashSet<_>>() {
        let Some((session, review)) = state.reviews.by_token(token) else {
            ignored += 1;
            continue;
        };
        if policy::document_access(session.role, review.phase, DocKind::Discussion).is_err() {
            continue;
        }
        // Of two sessions of one review, the one that may move statuses counts.
        let better = joined.get(&review.id).is_none_or(|s| {
            s.session.as_ref().is_some_and(|s| {
                meeting::may_move_actions(s.role, review.phase).is_err()
                    && meeting::may_move_actions(session.role, review.phase).is_ok()
            })
        });
        if better {
            joined.insert(
                review.id.clone(),
                Scope {
                    review,
                    session: Some(session),
                    renaming: None,
                },
            );
        }
    }
    let mut out: Vec<Scope> = joined.into_values().collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.review.created_at));
    for (id, names) in state.records.published_names()? {
        if out.iter().any(|s| s.review.id == id) {
            continue;
        }
        let Some(review) = state.reviews.record(&id) else {
            continue;
        };
        let renaming = (names == Names::Roles).then(|| Renaming::new(&state.reviews.sessions(&id)));
        out.push(Scope {
            review,
            session: None,
            renaming,
        });
    }
    Ok((out, ignored))
}

fn listed(state: &ApiState, scope: &Scope, item: Indexed, today: &str, now: u64) -> ListedAction {
    let rename = |s: &str| match &scope.renaming {
        Some(r) => r.text(s),
        None => s.to_owned(),
    };
    let overdue =
        item.status != ActionStatus::Done && item.due.as_deref().is_some_and(|d| d < today);
    let what = rename(&item.what);
    ListedAction {
        references: state.trackers.references(&what),
        tracker: item.link.as_deref().and_then(|l| state.trackers.link(l)),
        id: item.id,
        review: ItemReview {
            id: scope.review.id.clone(),
            title: scope.review.title.clone(),
            phase: scope.review.phase,
        },
        what,
        why: rename(&item.why),
        kind: item.kind,
        owner: rename(&item.owner),
        link: item.link,
        due: item.due,
        status: item.status,
        overdue,
        age_days: now.saturating_sub(item.created_at.max(0.0) as u64) / 86_400_000,
        created_at: item.created_at,
        updated_at: item.updated_at,
        history: item
            .history
            .into_iter()
            .map(|c| StatusChange {
                by: rename(&c.by),
                ..c
            })
            .collect(),
        may_change: scope
            .session
            .as_ref()
            .is_some_and(|s| meeting::may_move_actions(s.role, scope.review.phase).is_ok()),
    }
}

/// The list for `sessions` and `filters`.
async fn list(
    state: &ApiState,
    sessions: &[String],
    filters: Filters,
) -> Result<ActionList, ApiError> {
    if sessions.len() > MAX_SESSIONS {
        return Err(ApiError::bad_request(
            "too_many_sessions",
            format!("send at most {MAX_SESSIONS} sessions"),
        ));
    }
    let (scopes, ignored_sessions) = scope(state, sessions)?;
    // Today by the server's clock of due days (the one webhooks tell "overdue" by; tests move
    // it). An item's age counts from its `createdAt`, which the system clock stamped.
    let today = day_of(state.webhooks.clock.now_ms());
    let now = now_ms();
    let mut items = Vec::new();
    let mut reviews = Vec::new();
    let mut unavailable = Vec::new();
    for scope in &scopes {
        // One review that cannot be read now (its document busy or damaged) leaves the others
        // listed, and is named.
        if ensure_indexed(state, &scope.review.id).await.is_err() {
            unavailable.push(scope.review.id.clone());
            continue;
        }
        let Some(all) = state.actions.items(&scope.review.id) else {
            continue;
        };
        let counts = ActionCounts::of(&all);
        if reviews.len() < MAX_REVIEWS && (scope.session.is_some() || counts.total > 0) {
            reviews.push(ListedReview {
                id: scope.review.id.clone(),
                title: scope.review.title.clone(),
                phase: scope.review.phase,
                actions: counts,
                joined: scope.session.is_some(),
            });
        }
        if filters
            .review
            .as_ref()
            .is_some_and(|r| *r != scope.review.id)
        {
            continue;
        }
        for item in all {
            let item = listed(state, scope, item, &today, now);
            let keep = filters.status.is_none_or(|s| s == item.status)
                && filters.kind.is_none_or(|k| k == item.kind)
                && filters.overdue.is_none_or(|o| o == item.overdue)
                && filters
                    .team
                    .as_ref()
                    .is_none_or(|t| owned_by(&item.owner, t));
            if keep {
                items.push(item);
            }
        }
    }
    items.sort_by(|a, b| {
        let rank = |i: &ListedAction| match (i.status, i.overdue) {
            (ActionStatus::Done, _) => 2,
            (_, true) => 0,
            _ => 1,
        };
        rank(a)
            .cmp(&rank(b))
            .then_with(|| match (&a.due, &b.due) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| b.created_at.total_cmp(&a.created_at))
    });
    let total = items.len();
    items.truncate(filters.limit);
    Ok(ActionList {
        today,
        items,
        total,
        reviews,
        ignored_sessions,
        unavailable,
    })
}

/// `GET /api/actions`: the action items one session (or none) may see.
#[utoipa::path(
    get,
    path = "/api/actions",
    operation_id = "listActionItems",
    tag = "actions",
    summary = "List action items across reviews: those of the session's review (with \
    `Authorization: Bearer <session>`) and of every published review, most urgent first.",
    description = "A browser that joined several reviews asks with all of its sessions through \
    `POST /api/actions/search`. The session is optional; a published review's items are public, \
    with names replaced by roles when it was published so.",
    params(ActionQuery),
    responses(
        (status = 200, description = "The matching items and the reviews they come from.", body = ActionList),
        (
            status = 400,
            description = "`invalid_query`: a query parameter that is not one of `status`, `team`, \
            `overdue`, `review`, `kind`, `limit`, or a value of the wrong type (an unknown status \
            or kind, `overdue` other than true or false, `limit` not a whole number); \
            `invalid_team`: `team` is empty once trimmed or over 100 characters; \
            `invalid_review`: `review` is not 32 lowercase hexadecimal digits; `invalid_limit`: \
            `limit` is outside 1 to 500.",
            body = ErrorBody,
        ),
        (
            status = 401,
            description = "`invalid_token`: the bearer token sent is no session (revoked, or of a \
            review that is gone).",
            body = ErrorBody,
        ),
        (status = 503, description = UNREADABLE, body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn list_actions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: Result<Query<ActionQuery>, QueryRejection>,
) -> Result<Json<ActionList>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "the query parameters are status (open, in_progress, done), team, overdue (true or \
             false), review, kind (prevent, detect, mitigate, process) and limit (a whole number)",
        ));
    };
    let filters = Filters::new(q.status, q.team, q.overdue, q.review, q.kind, q.limit)?;
    let sessions: Vec<String> = bearer(&headers)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .into_iter()
        .collect();
    let answer = list(&state, &sessions, filters).await?;
    if answer.ignored_sessions > 0 {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is no session: it was revoked, or its review is gone",
        ));
    }
    Ok(Json(answer))
}

/// `POST /api/actions/search`: the action items every session of a browser may see.
#[utoipa::path(
    post,
    path = "/api/actions/search",
    operation_id = "searchActionItems",
    tag = "actions",
    summary = "List action items across every review a browser joined (its sessions in the body) \
    and every published review, most urgent first.",
    description = "Needs no `Authorization`: the sessions are in the body. For each session, the \
    items of its review, if its role may read the review's discussion in its phase (in draft only \
    facilitators and authors, and a review in draft has no items).",
    request_body = ActionSearch,
    responses(
        (status = 200, description = "The matching items and the reviews they come from.", body = ActionList),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field, an unknown status or kind); `too_many_sessions`: \
            over 100 sessions; `invalid_team`: `team` is empty once trimmed or over 100 \
            characters; `invalid_review`: `review` is not 32 lowercase hexadecimal digits; \
            `invalid_limit`: `limit` is outside 1 to 500.",
            body = ErrorBody,
        ),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = UNREADABLE, body = ErrorBody),
    ),
    security(),
)]
pub(super) async fn search_actions(
    State(state): State<Arc<ApiState>>,
    JsonBody(req): JsonBody<ActionSearch>,
) -> Result<Json<ActionList>, ApiError> {
    let filters = Filters::new(
        req.status,
        req.team,
        req.overdue,
        req.review,
        req.kind,
        req.limit,
    )?;
    Ok(Json(list(&state, &req.sessions, filters).await?))
}

/// The status to move an item to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusRequest {
    status: ActionStatus,
}

/// `POST /api/reviews/{id}/actions/{action}/status`.
#[utoipa::path(
    post,
    path = "/api/reviews/{id}/actions/{action}/status",
    operation_id = "moveActionItem",
    tag = "actions",
    summary = "Move an action item to open, in progress or done (everyone but observers, from \
    review on, closed reviews included); recorded in its history with the session's name and \
    the time.",
    description = "The session, the role and the phase are checked before the body is read. The \
    same status again changes nothing and adds no history entry.",
    params(openapi::ReviewIdParam, openapi::ActionIdParam),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The action item as it is now.", body = ActionItem),
        (status = 400, description = said::BAD_BODY, body = ErrorBody),
        (status = 401, description = said::NO_SESSION, body = ErrorBody),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            observers cannot move action items, and a review in draft has none.",
            body = ErrorBody,
        ),
        (status = 404, description = said::NO_ACTION, body = ErrorBody),
        (status = 413, description = said::DISCUSSION_FULL_OR_BODY, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (status = 503, description = said::DOCUMENT_BUSY, body = ErrorBody),
    ),
)]
pub(super) async fn move_status(
    State(state): State<Arc<ApiState>>,
    ApiPath((_, action)): ApiPath<(String, String)>,
    you: Session<MovesActions>,
    JsonBody(req): JsonBody<StatusRequest>,
) -> Result<Json<Value>, ApiError> {
    let by = you.session.name.clone();
    let item = change_action(&state, &you.review, statuses_open, move |doc| {
        let before = meeting::action(doc, &action);
        (before, meeting::set_status(doc, &action, req.status, &by))
    })
    .await?;
    Ok(Json(item))
}

/// Adds or changes an action item in the discussion's job: `f` changes it and returns what the
/// item was before (`None` for a new one) and the job's outcome. In the same job the item goes
/// into the index and its due day and event are staged, so they are durable with the change and
/// in the document's order; the event goes out once the change is durable.
pub(super) async fn change_action<A, F>(
    state: &Arc<ApiState>,
    review: &ReviewRecord,
    allowed: A,
    f: F,
) -> Result<Value, ApiError>
where
    A: FnOnce(Phase) -> Result<(), crate::reviews::problem::Problem> + Send + 'static,
    F: FnOnce(&yrs::Doc) -> (Option<Value>, crate::reviews::threads::Outcome<Value>)
        + Send
        + 'static,
{
    let staged = webhooks::Staged::default();
    let (st, record, job_staged) = (state.clone(), review.clone(), staged.clone());
    let changed = in_phase(state, &review.id, allowed, move |doc| {
        let (before, outcome) = f(doc);
        let outcome = indexed(&st.actions, &record.id, outcome);
        webhooks::record_action(&st, &record, &job_staged, before.as_ref(), outcome)
    })
    .await;
    webhooks::settle_action(state, &staged, changed)
}

/// Puts an item a job wrote into the index (inside that job: see `reviews::actions`).
pub(super) fn indexed(
    index: &crate::reviews::actions::ActionIndex,
    review: &str,
    outcome: crate::reviews::threads::Outcome<Value>,
) -> crate::reviews::threads::Outcome<Value> {
    if let (Ok(item), _) = &outcome {
        index.put(review, item);
    }
    outcome
}
