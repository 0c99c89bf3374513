//! `/api/webhooks`: setting up, listing and removing webhooks. A review's facilitator manages the
//! hooks of that review with their session token; the server's admin manages hooks for every
//! review with the server's creation secret as bearer (a server without one has no such hooks).
//! Beside the handlers: what the rest of the API calls when something happens that a hook is
//! told ([`told`] and the helpers after it).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{self, said};
use super::request::{bearer, ApiPath, ClientAddr, JsonBody};
use super::state::ApiState;
use crate::documents::access::same_secret;
use crate::error::{ApiError, ErrorBody};
use crate::reviews::basics::locked;
use crate::reviews::policy::{self, Phase};
use crate::reviews::problem::Problem;
use crate::reviews::sessions::{unknown_review, ReviewRecord};
use crate::reviews::urls::WebUrl;
use crate::reviews::webhooks::{
    parse_format, unknown_webhook, validate_url, Attempt, Event, EventType, Format, HookRecord,
};

/// Who asks.
enum Caller {
    /// The server's admin (the creation secret).
    Admin,
    /// The facilitator of the review named.
    Facilitator,
}

/// 401 for a request that needs the admin's secret and lacks it.
const NOT_ADMIN: &str =
    "webhooks for every review need the server's creation secret as `Authorization: Bearer <secret>`";
/// 403 when the server has no secret at all.
const NO_ADMIN: &str = "webhooks for every review need the server's creation secret, and this server was started without one (--creation-secret); set up a webhook for one review instead";

/// Decides who the caller is, for hooks of `review` (`None`: of every review).
fn caller(
    state: &ApiState,
    headers: &HeaderMap,
    addr: IpAddr,
    review: Option<&str>,
) -> Result<Caller, ApiError> {
    let token = bearer(headers);
    let admin = |t: Option<&str>| {
        state
            .creation_secret
            .as_ref()
            .is_some_and(|s| t.is_some_and(|t| same_secret(s.expose(), t)))
    };
    if let Some(review) = review {
        let refused = match state.reviews.authenticate(token, review) {
            Ok((session, _)) => {
                policy::may_facilitate(session.role).map_err(Problem::from)?;
                return Ok(Caller::Facilitator);
            }
            Err(refused) => refused,
        };
        // Not a session: perhaps the admin's secret, tried under the same limit on guessing as
        // everywhere the secret is checked.
        if refused.code == "invalid_token" && state.creation_secret.is_some() {
            state.reviews.guards.may_try_secret(addr)?;
            if admin(token) {
                if state.reviews.record(review).is_none() {
                    return Err(unknown_review(review).into());
                }
                return Ok(Caller::Admin);
            }
            if let Some(limited) = state.reviews.guards.wrong_secret(addr) {
                return Err(limited.into());
            }
        }
        return Err(refused.into());
    }
    if state.creation_secret.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_not_configured",
            NO_ADMIN,
        ));
    }
    state.reviews.guards.may_try_secret(addr)?;
    if admin(token) {
        return Ok(Caller::Admin);
    }
    if let Some(limited) = state.reviews.guards.wrong_secret(addr) {
        return Err(limited.into());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "not_admin",
        NOT_ADMIN,
    ))
}

/// A new webhook.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateWebhookRequest)]
pub(super) struct CreateRequest {
    /// The review whose events it gets (the caller is its facilitator); absent or null: every
    /// review (the caller sends the server's creation secret).
    #[schema(pattern = "^[0-9a-f]{32}$")]
    review: Option<String>,
    /// Where deliveries are posted: an `http://` or `https://` URL with a host, at most 2,000
    /// bytes once trimmed, without credentials, whitespace or control characters.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9._:\[\]-]+([/?#][^\s\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    url: String,
    /// `json` (the event, the default) or `slack` (`{"text": …}`, for Slack or Mattermost).
    #[schema(value_type = Option<Format>)]
    format: Option<String>,
}

/// A webhook, as its owner sees it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Webhook)]
pub(super) struct WebhookView {
    /// `wh_` and 32 hex digits.
    #[schema(pattern = "^wh_[0-9a-f]{32}$")]
    id: String,
    /// Its review; null: every review.
    #[schema(required = true, pattern = "^[0-9a-f]{32}$")]
    review: Option<String>,
    /// Where deliveries are posted: in full when it was just set up; in lists only its scheme,
    /// host, port and a short first path segment, then `…` (a Slack or Mattermost URL's path is
    /// its secret).
    url: String,
    format: Format,
    /// When it was set up, milliseconds since the Unix epoch.
    created_at: u64,
    /// Deliveries waiting (not yet delivered or given up).
    waiting: usize,
    /// The last 20 attempts, newest first.
    attempts: Vec<Attempt>,
}

impl WebhookView {
    fn new(hook: HookRecord, attempts: Vec<Attempt>, waiting: usize) -> WebhookView {
        WebhookView {
            id: hook.id,
            review: hook.review,
            url: WebUrl::parse(&hook.url).map_or_else(String::new, |u| u.shown()),
            format: hook.format,
            created_at: hook.created_at,
            waiting,
            attempts,
        }
    }
}

/// A webhook just set up, with the only copy of its signing secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedWebhook)]
pub(super) struct CreatedView {
    webhook: WebhookView,
    /// Signs every delivery (`X-Debrief-Signature`); shown only now.
    #[schema(pattern = "^whsec_[0-9a-f]{64}$")]
    secret: String,
}

/// 401 for a caller who sets up or lists hooks without a valid credential.
const NOT_OWNER_401: &str = "`missing_token`, `invalid_token`: for one review, no valid session \
    token; `not_admin`: for every review, the bearer is not the server's creation secret.";
/// 403 for a caller who may not set up or list hooks.
const NOT_OWNER_403: &str = "`other_review`: the session belongs to another review; \
    `not_allowed`: only the facilitator can do this; `admin_not_configured`: for every review, \
    and the server has no creation secret.";

/// `POST /api/webhooks`.
#[utoipa::path(
    post,
    path = "/api/webhooks",
    operation_id = "createWebhook",
    tag = "webhooks",
    summary = "Set up a webhook for one review (its facilitator) or for every review (the server's \
    admin); the answer holds the only copy of its signing secret.",
    description = "The body is read first (it names the review), then the caller is checked, then \
    `url` and `format`, then the number of hooks. For one review, the bearer is the facilitator's \
    session token (or the server's creation secret); for every review, the server's creation \
    secret. Deliveries are posted as JSON with `X-Debrief-Signature: t=<unix seconds>,v1=<hex \
    HMAC-SHA256 of \"<t>.<body>\" keyed with the secret>`, `X-Debrief-Event-Id` and \
    `X-Debrief-Event`; the body is the event (`WebhookEvent`) or, in the `slack` format, \
    `{\"text\": …}`.",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The webhook and its secret.", body = CreatedView),
        (
            status = 400,
            description = "`invalid_json`: the body is not JSON of the documented shape (syntax, \
            types, a missing or unknown field); `invalid_url`: the URL is not an http or https \
            URL with a host, at most 2,000 bytes, without credentials or spaces; `private_url`: \
            it points at this machine or a private network and the server was not started with \
            `--webhooks-allow-private`; `invalid_format`: `format` is neither `json` nor `slack`.",
            body = ErrorBody,
        ),
        (status = 401, description = NOT_OWNER_401, body = ErrorBody),
        (status = 403, description = NOT_OWNER_403, body = ErrorBody),
        (status = 404, description = "`unknown_review`: no review has this id.", body = ErrorBody),
        (
            status = 409,
            description = "`too_many_webhooks`: the review has 5 webhooks, or the server 20 for \
            every review.",
            body = ErrorBody,
        ),
        (status = 413, description = said::BODY_TOO_LARGE, body = ErrorBody),
        (status = 415, description = said::NOT_JSON, body = ErrorBody),
        (
            status = 429,
            description = "`rate_limited`: this address sent 5 wrong creation secrets in the last \
            minute (here or when creating reviews); the `Retry-After` header says how many \
            seconds to wait.",
            body = ErrorBody,
        ),
        (status = 503, description = said::STORE_UNWRITABLE, body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    caller(&state, &headers, addr, req.review.as_deref())?;
    let url = validate_url(&req.url, state.webhooks.settings.allow_private)?;
    let format = parse_format(req.format.as_deref())?;
    let created = state.webhooks.create(req.review, url, format).await?;
    tracing::info!(webhook = %created.hook.id, review = ?created.hook.review, "webhook set up");
    let secret = created.hook.secret.clone();
    let body = CreatedView {
        webhook: WebhookView {
            // Its owner just gave it; lists shorten it.
            url: created.hook.url.clone(),
            ..WebhookView::new(created.hook, Vec::new(), 0)
        },
        secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Whose webhooks to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The review whose webhooks to list (its facilitator's session, or the creation secret);
    /// absent: every webhook of the server (the creation secret only).
    review: Option<String>,
}

/// The webhooks asked for.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookList)]
pub(super) struct ListView {
    /// Oldest first.
    webhooks: Vec<WebhookView>,
}

/// `GET /api/webhooks?review=`.
#[utoipa::path(
    get,
    path = "/api/webhooks",
    operation_id = "listWebhooks",
    tag = "webhooks",
    summary = "List a review's webhooks (its facilitator) or every webhook (the server's admin), \
    each with its recent delivery attempts.",
    params(ListQuery),
    responses(
        (status = 200, description = "The webhooks, without their secrets.", body = ListView),
        (
            status = 400,
            description = "`invalid_query`: a query parameter other than `review`, or `review` \
            given twice.",
            body = ErrorBody,
        ),
        (status = 401, description = NOT_OWNER_401, body = ErrorBody),
        (status = 403, description = NOT_OWNER_403, body = ErrorBody),
        (status = 404, description = "`unknown_review`: no review has this id.", body = ErrorBody),
        (
            status = 429,
            description = "`rate_limited`: this address sent 5 wrong creation secrets in the last \
            minute; the `Retry-After` header says how many seconds to wait.",
            body = ErrorBody,
        ),
    ),
)]
pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListView>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "the only query parameter is review",
        ));
    };
    caller(&state, &headers, addr, q.review.as_deref())?;
    let webhooks = state
        .webhooks
        .list(q.review.as_deref())
        .into_iter()
        .map(|(h, a, w)| WebhookView::new(h, a, w))
        .collect();
    Ok(Json(ListView { webhooks }))
}

/// `DELETE /api/webhooks/{webhook}`.
#[utoipa::path(
    delete,
    path = "/api/webhooks/{webhook}",
    operation_id = "deleteWebhook",
    tag = "webhooks",
    summary = "Remove a webhook with its waiting deliveries (its review's facilitator, or the \
    server's admin).",
    description = said::TAKES_NO_BODY,
    params(openapi::WebhookIdParam),
    responses(
        (status = 204, description = "Removed; nothing more is delivered to it."),
        (status = 400, description = said::BAD_PATH, body = ErrorBody),
        (
            status = 401,
            description = "`missing_token`, `invalid_token`: for a review's webhook, no valid \
            session token; `not_admin`: for a webhook of every review, the bearer is not the \
            server's creation secret.",
            body = ErrorBody,
        ),
        (
            status = 403,
            description = "`other_review`: the session belongs to another review; `not_allowed`: \
            only the facilitator can do this; `admin_not_configured`: a webhook of every review, \
            and the server has no creation secret.",
            body = ErrorBody,
        ),
        (
            status = 404,
            description = "`unknown_webhook`: no webhook has this id; `not_found`: the path \
            matches no route.",
            body = ErrorBody,
        ),
        (
            status = 429,
            description = "`rate_limited`: this address sent 5 wrong creation secrets in the last \
            minute; the `Retry-After` header says how many seconds to wait.",
            body = ErrorBody,
        ),
        (status = 503, description = said::STORE_UNWRITABLE, body = ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let hook = state.webhooks.hook(&id).ok_or_else(unknown_webhook)?;
    caller(&state, &headers, addr, hook.review.as_deref())?;
    state.webhooks.delete(&id).await?;
    tracing::info!(webhook = %id, "webhook removed");
    Ok(StatusCode::NO_CONTENT)
}

/// An event about `review`.
pub(super) fn event(
    state: &ApiState,
    kind: EventType,
    review: &ReviewRecord,
    data: serde_json::Value,
) -> Event {
    Event::new(&state.webhooks.clock, kind, &review.id, &review.title, data)
}

/// The events of a move to `to` from the phase before it.
pub(super) fn phase_events(state: &ApiState, review: &ReviewRecord, to: Phase) -> Vec<Event> {
    let from = Phase::ALL
        .into_iter()
        .find(|p| p.next() == Some(to))
        .map_or("", |p| p.as_str());
    let mut events = vec![event(
        state,
        EventType::PhaseChanged,
        review,
        serde_json::json!({ "from": from, "to": to.as_str() }),
    )];
    let follow = match to {
        Phase::Review => Some(EventType::ReportReady),
        Phase::Meeting => Some(EventType::MeetingStarting),
        _ => None,
    };
    if let Some(kind) = follow {
        events.push(event(
            state,
            kind,
            review,
            serde_json::json!({ "phase": to.as_str() }),
        ));
    }
    events
}

/// What an event says of an action item: no more than its fields (nobody's name is in one).
fn action_data(item: &serde_json::Value) -> serde_json::Value {
    let field = |k: &str| item.get(k).cloned().unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": field("id"),
        "what": field("what"),
        "owner": field("owner"),
        "kind": field("kind"),
        "due": field("due"),
        "status": field("status"),
        "link": field("link"),
    })
}

/// The deliveries an action item's job staged, shared between the job and the handler that
/// waits for it.
pub(super) type Staged = Arc<std::sync::Mutex<Vec<u64>>>;

/// Inside the job that added an action item (`before` is `None`) or changed it (it was
/// `before`): keeps its due day for the scan and stages its event in the outbox, so that the
/// flush that makes the change durable makes them durable too, in the order the document took
/// the changes. `outcome` is the job's; when staging fails, the change is refused (503) and not
/// applied.
pub(super) fn record_action(
    state: &ApiState,
    review: &ReviewRecord,
    staged: &Staged,
    before: Option<&serde_json::Value>,
    outcome: crate::reviews::threads::Outcome<serde_json::Value>,
) -> crate::reviews::threads::Outcome<serde_json::Value> {
    let (Ok(item), update) = outcome else {
        return outcome;
    };
    let data = action_data(&item);
    let kind = match before {
        None => Some(EventType::ActionCreated),
        Some(b) if b["status"] != "done" && item["status"] == "done" => Some(EventType::ActionDone),
        Some(_) => None,
    };
    let stored = (|| {
        state
            .webhooks
            .dues
            .update(&review.id, &review.title, &data)?;
        match kind {
            Some(kind) => {
                let event = event(state, kind, review, serde_json::json!({ "action": data }));
                state.webhooks.stage(event)
            }
            None => Ok(Vec::new()),
        }
    })();
    match stored {
        Ok(seqs) => {
            locked(staged).extend(seqs);
            (Ok(item), update)
        }
        Err(e) => (Err(Problem::from(e)), None),
    }
}

/// After an action item's job: lets the deliveries it staged go out once the change is durable
/// (`in_phase` answered), or takes them back when it was refused.
pub(super) fn settle_action(
    state: &ApiState,
    staged: &Staged,
    result: Result<serde_json::Value, ApiError>,
) -> Result<serde_json::Value, ApiError> {
    let seqs = std::mem::take(&mut *locked(staged));
    match &result {
        Ok(_) => state.webhooks.commit(&seqs),
        Err(_) => state.webhooks.unstage(&seqs),
    }
    result
}
