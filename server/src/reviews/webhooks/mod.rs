//! Webhooks: what happens in reviews, told to the team's chat or tracker. A hook belongs to one
//! review (set up by its facilitator) or to every review (set up by the server's admin, who holds
//! the creation secret). Each event is written to a durable outbox in the store, one entry per
//! hook it goes to, before the request that caused it is answered; a background task
//! ([`deliver::deliver_loop`]) posts each entry, signed, and retries with backoff until the
//! receiver answers 2xx or the attempts run out. Entries of one hook and one review go out in
//! order: the next waits until the one before was delivered or given up.
//!
//! What an event may carry: the review's id and title and a small payload about reviews, phases
//! and action items. Nothing anonymous: no event names a comment, a concern, a vote or who wrote
//! anything. Signing secrets are generated here, returned once at creation, and never logged or
//! listed again.
//!
//! Files: [`clock`] (the injectable clock and calendar days), [`deliver`] (signing, the two body
//! formats and the HTTP client), [`dues`] (the index of action items with a due day and the scan
//! that tells when one is due soon or overdue).

pub mod clock;
pub mod deliver;
pub mod dues;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::reviews::basics::{locked, now_ms, random_hex, to_json};
use crate::reviews::problem::{Problem, ProblemKind};
use crate::reviews::urls::{self, WebUrl, MAX_URL_BYTES};
use crate::storage::store::{MetaTree, Store, StoreError};

pub use clock::Clock;

/// The store's trees of this module, named in one place (`docs/schema.md`).
pub mod trees {
    /// Hooks, by id.
    pub const HOOKS: &str = "webhooks";
    /// Deliveries not yet done, by sequence number (big-endian u64).
    pub const OUTBOX: &str = "webhook_outbox";
    /// The recent attempts of each hook, by hook id and sequence number.
    pub const ATTEMPTS: &str = "webhook_attempts";
    /// Action items with what was already told about their due day, by review and item id.
    pub const DUES: &str = "webhook_dues";
}

/// Most hooks of one review: a chat channel or two and a tracker, with room to spare.
pub const MAX_HOOKS_PER_REVIEW: usize = 5;
/// Most hooks for every review (the admin's).
pub const MAX_SERVER_HOOKS: usize = 20;
/// Most deliveries waiting in the outbox, all hooks together: beyond it a new event is dropped
/// for the hooks whose receivers are that far behind, and their attempts say so.
pub const MAX_OUTBOX: usize = 10_000;
/// Most deliveries waiting for one hook, so that one dead receiver cannot fill the outbox for
/// the others.
pub const MAX_OUTBOX_PER_HOOK: usize = 1_000;
/// Recent attempts kept and shown per hook.
pub const ATTEMPTS_SHOWN: usize = 20;

/// How deliveries are retried and bounded; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The wait after the first failed attempt; it doubles after each further one.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// How long one attempt may take (connect, send, status line).
    pub timeout: Duration,
    /// How often action items are checked for due days when the clock is not moved by hand.
    pub scan_every: Duration,
    /// Deliveries under way at once, all hooks together.
    pub concurrency: usize,
    /// Whether a hook may target this machine or a private network (`--webhooks-allow-private`);
    /// off by default, so that whoever may add a hook cannot make the server reach what only it
    /// can reach (an internal service, a cloud's metadata address).
    pub allow_private: bool,
}

impl Default for WebhookSettings {
    /// 14 attempts over about 22 hours: 30 s, then doubling, at most 4 h apart.
    fn default() -> Self {
        WebhookSettings {
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_secs(4 * 3600),
            max_attempts: 14,
            timeout: Duration::from_secs(10),
            scan_every: Duration::from_secs(60),
            concurrency: 8,
            allow_private: false,
        }
    }
}

impl WebhookSettings {
    /// The wait after `failed` failed attempts (1 for the first).
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32 << failed.saturating_sub(1).min(20);
        self.first_retry.saturating_mul(factor).min(self.max_retry)
    }
}

/// The body a hook's receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WebhookFormat)]
pub enum Format {
    /// The event as JSON (see the README's "Webhooks").
    Json,
    /// `{"text": "…"}`, which Slack's and Mattermost's incoming webhooks accept as is.
    Slack,
}

/// A hook as stored. The secret is kept to sign deliveries; it leaves the server only in the
/// answer that created the hook. (Its `Debug` shows neither the secret nor the URL, which for
/// Slack is a secret too.)
#[derive(Clone, Serialize, Deserialize)]
pub struct HookRecord {
    /// `wh_` and 128 random bits, hex.
    pub id: String,
    /// The review it belongs to; `None`: every review (the admin's).
    pub review: Option<String>,
    /// Where deliveries are posted.
    pub url: String,
    /// Body format.
    pub format: Format,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for HookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRecord")
            .field("id", &self.id)
            .field("review", &self.review)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// What happened, as the event's `type` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookEventType)]
pub enum EventType {
    /// A review was created.
    #[serde(rename = "review.created")]
    ReviewCreated,
    /// A review moved to its next phase.
    #[serde(rename = "review.phase_changed")]
    PhaseChanged,
    /// The report is ready to read: the review entered the review phase.
    #[serde(rename = "review.report_ready")]
    ReportReady,
    /// The meeting is starting: the review entered the meeting phase.
    #[serde(rename = "review.meeting_starting")]
    MeetingStarting,
    /// An action item was added.
    #[serde(rename = "action.created")]
    ActionCreated,
    /// An action item that is not done is due within two days.
    #[serde(rename = "action.due_soon")]
    ActionDueSoon,
    /// An action item that is not done is past its due day.
    #[serde(rename = "action.overdue")]
    ActionOverdue,
    /// An action item was marked done.
    #[serde(rename = "action.done")]
    ActionDone,
    /// A closed review was published to the library.
    #[serde(rename = "review.published")]
    Published,
}

impl EventType {
    /// The name in `type` and in `X-Debrief-Event`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ReviewCreated => "review.created",
            EventType::PhaseChanged => "review.phase_changed",
            EventType::ReportReady => "review.report_ready",
            EventType::MeetingStarting => "review.meeting_starting",
            EventType::ActionCreated => "action.created",
            EventType::ActionDueSoon => "action.due_soon",
            EventType::ActionOverdue => "action.overdue",
            EventType::ActionDone => "action.done",
            EventType::Published => "review.published",
        }
    }
}

/// The review an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookEventReview)]
pub struct EventReview {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
}

/// One event, as the `json` format posts it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookEvent)]
pub struct Event {
    /// Unique (`evt_` and 128 random bits, hex); a retried delivery carries the same id, so a
    /// receiver drops what it has seen.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub at: String,
    /// The review.
    pub review: EventReview,
    /// What the type says more: `phase` / `from` and `to` for phase changes, `action` for
    /// action items, `link` for publishing.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl Event {
    /// A new event of `kind` about `review`, stamped by `clock`.
    pub fn new(
        clock: &Clock,
        kind: EventType,
        review_id: &str,
        title: &str,
        data: serde_json::Value,
    ) -> Event {
        Event {
            id: format!("evt_{}", random_hex(16)),
            kind,
            at: clock::timestamp(clock.now_ms()),
            review: EventReview {
                id: review_id.to_owned(),
                title: title.to_owned(),
            },
            data,
        }
    }
}

/// One delivery waiting in the outbox: an event for one hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// The hook.
    pub hook: String,
    /// The event.
    pub event: Event,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time, ms since the Unix epoch.
    pub next_at: u64,
}

/// One attempt to deliver, as its hook's owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct Attempt {
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: EventType,
    /// The receiver's HTTP status; null when none came.
    #[schema(required = true)]
    pub status: Option<u16>,
    /// What went wrong without a status (connection refused, timeout, …) or the outbox was
    /// full; null otherwise.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Whether the event was delivered (a 2xx status).
    pub delivered: bool,
    /// When it is tried again, ms since the Unix epoch; null when delivered or given up.
    #[schema(required = true)]
    pub next_retry: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    hooks: BTreeMap<String, HookRecord>,
    outbox: BTreeMap<u64, Delivery>,
    next_seq: u64,
    /// Per hook, its recent attempts with their keys, oldest first.
    attempts: HashMap<String, VecDeque<(u64, Attempt)>>,
    next_attempt: u64,
    /// Lanes (hook, review) with a delivery under way.
    in_flight: HashSet<(String, String)>,
    /// Deliveries staged whose cause is not durable yet ([`Webhooks::commit`]): not sent, and
    /// the later deliveries of their lane wait behind them.
    staged: HashSet<u64>,
}

/// Every hook, the outbox and the recent attempts: in memory, written through to the store.
#[derive(Debug)]
pub struct Webhooks {
    inner: Mutex<Inner>,
    hooks_tree: MetaTree,
    outbox_tree: MetaTree,
    attempts_tree: MetaTree,
    /// The due days of action items.
    pub dues: dues::Dues,
    store: Store,
    /// Woken when a delivery is added.
    added: Notify,
    /// Retries and bounds.
    pub settings: WebhookSettings,
    /// The clock of events and due days.
    pub clock: Clock,
}

/// A hook just created, with the only copy of its secret the API returns.
#[derive(Debug)]
pub struct Created {
    /// The hook.
    pub hook: HookRecord,
}

impl Webhooks {
    /// Loads the hooks, the outbox and the attempts from the store.
    pub fn open(
        store: &Store,
        settings: WebhookSettings,
        clock: Clock,
    ) -> Result<Arc<Webhooks>, StoreError> {
        let hooks_tree = store.meta_tree(trees::HOOKS)?;
        let outbox_tree = store.meta_tree(trees::OUTBOX)?;
        let attempts_tree = store.meta_tree(trees::ATTEMPTS)?;
        let mut inner = Inner::default();
        for (key, value) in hooks_tree.entries()? {
            let hook: HookRecord = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("webhook {key:?}: {e}")))?;
            inner.hooks.insert(hook.id.clone(), hook);
        }
        for (key, value) in outbox_tree.entries()? {
            let seq = seq_of(&key)?;
            let delivery: Delivery = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("webhook delivery {seq}: {e}")))?;
            inner.next_seq = inner.next_seq.max(seq + 1);
            inner.outbox.insert(seq, delivery);
        }
        for (key, value) in attempts_tree.entries()? {
            let Some((hook, seq)) = key.split_last_chunk::<8>().map(|(h, s)| {
                (
                    String::from_utf8_lossy(h).into_owned(),
                    u64::from_be_bytes(*s),
                )
            }) else {
                return Err(StoreError::Corrupt("webhook attempt key".to_owned()));
            };
            let attempt: Attempt = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("webhook attempt: {e}")))?;
            inner.next_attempt = inner.next_attempt.max(seq + 1);
            inner
                .attempts
                .entry(hook)
                .or_default()
                .push_back((seq, attempt));
        }
        for list in inner.attempts.values_mut() {
            list.make_contiguous().sort_by_key(|(seq, _)| *seq);
        }
        Ok(Arc::new(Webhooks {
            inner: Mutex::new(inner),
            hooks_tree,
            outbox_tree,
            attempts_tree,
            dues: dues::Dues::open(store)?,
            store: store.clone(),
            added: Notify::new(),
            settings,
            clock,
        }))
    }

    /// Adds a hook for `review` (`None`: every review). Durable when this returns.
    pub async fn create(
        &self,
        review: Option<String>,
        url: String,
        format: Format,
    ) -> Result<Created, Problem> {
        let hook = HookRecord {
            id: format!("wh_{}", random_hex(16)),
            review,
            url,
            format,
            secret: format!("whsec_{}", random_hex(32)),
            created_at: now_ms(),
        };
        {
            let mut inner = self.lock();
            let same_scope = inner
                .hooks
                .values()
                .filter(|h| h.review == hook.review)
                .count();
            let (max, whose) = match hook.review {
                Some(_) => (MAX_HOOKS_PER_REVIEW, "a review has"),
                None => (MAX_SERVER_HOOKS, "the server has"),
            };
            let scope = if hook.review.is_some() {
                ""
            } else {
                " for all reviews"
            };
            if same_scope >= max {
                return Err(Problem::new(
                    ProblemKind::Conflict,
                    "too_many_webhooks",
                    format!("{whose} at most {max} webhooks{scope}; remove one first"),
                ));
            }
            self.hooks_tree.put(hook.id.as_bytes(), &to_json(&hook))?;
            inner.hooks.insert(hook.id.clone(), hook.clone());
        }
        self.store.durable().await?;
        Ok(Created { hook })
    }

    /// The hook `id`, if it exists.
    pub fn hook(&self, id: &str) -> Option<HookRecord> {
        self.lock().hooks.get(id).cloned()
    }

    /// The hooks of `review` (`Some`), or every hook (`None`), oldest first, each with its
    /// recent attempts (newest first) and how many deliveries wait.
    pub fn list(&self, review: Option<&str>) -> Vec<(HookRecord, Vec<Attempt>, usize)> {
        let inner = self.lock();
        let mut hooks: Vec<HookRecord> = inner
            .hooks
            .values()
            .filter(|h| review.is_none() || h.review.as_deref() == review)
            .cloned()
            .collect();
        hooks.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        hooks
            .into_iter()
            .map(|h| {
                let attempts = inner
                    .attempts
                    .get(&h.id)
                    .map(|l| l.iter().rev().map(|(_, a)| a.clone()).collect())
                    .unwrap_or_default();
                let waiting = inner.outbox.values().filter(|d| d.hook == h.id).count();
                (h, attempts, waiting)
            })
            .collect()
    }

    /// Removes a hook, its waiting deliveries and its attempts. Durable when this returns.
    pub async fn delete(&self, id: &str) -> Result<(), Problem> {
        {
            let mut inner = self.lock();
            if !inner.hooks.contains_key(id) {
                return Err(unknown_webhook());
            }
            let seqs: Vec<u64> = inner
                .outbox
                .iter()
                .filter(|(_, d)| d.hook == id)
                .map(|(s, _)| *s)
                .collect();
            let writes = seqs
                .iter()
                .map(|s| (s.to_be_bytes().to_vec(), None))
                .collect();
            self.outbox_tree.apply(writes)?;
            let attempt_keys = inner
                .attempts
                .get(id)
                .map(|l| l.iter().map(|(s, _)| (attempt_key(id, *s), None)).collect())
                .unwrap_or_default();
            self.attempts_tree.apply(attempt_keys)?;
            self.hooks_tree.remove(id.as_bytes())?;
            for s in seqs {
                inner.outbox.remove(&s);
            }
            inner.attempts.remove(id);
            inner.hooks.remove(id);
        }
        self.store.durable().await?;
        Ok(())
    }

    /// Puts `event` in the outbox for every hook it goes to (its review's and every review's),
    /// in the store's memory: durable with the caller's next [`Store::durable`], which must come
    /// before the cause of the event is acknowledged. Returns the outbox keys written, for
    /// [`Webhooks::unstage`] should the cause fail.
    pub fn stage(&self, event: Event) -> Result<Vec<u64>, StoreError> {
        let mut inner = self.lock();
        let targets: Vec<String> = inner
            .hooks
            .values()
            .filter(|h| h.review.is_none() || h.review.as_deref() == Some(&event.review.id))
            .map(|h| h.id.clone())
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut writes = BTreeMap::new();
        let mut added = Vec::new();
        let mut dropped = Vec::new();
        let mut total = inner.outbox.len();
        for hook in targets {
            let waiting = inner.outbox.values().filter(|d| d.hook == hook).count();
            if total >= MAX_OUTBOX || waiting >= MAX_OUTBOX_PER_HOOK {
                dropped.push(hook);
                continue;
            }
            let seq = inner.next_seq + added.len() as u64;
            let delivery = Delivery {
                hook,
                event: event.clone(),
                attempts: 0,
                next_at: 0,
            };
            writes.insert(seq.to_be_bytes().to_vec(), Some(to_json(&delivery)));
            added.push((seq, delivery));
            total += 1;
        }
        self.outbox_tree.apply(writes)?;
        inner.next_seq += added.len() as u64;
        let seqs: Vec<u64> = added.iter().map(|(s, _)| *s).collect();
        inner.outbox.extend(added);
        inner.staged.extend(seqs.iter().copied());
        for hook in dropped {
            tracing::warn!(hook = %hook, event = event.kind.as_str(), "webhook outbox full: event dropped");
            let attempt = Attempt {
                at: now_ms(),
                event_id: event.id.clone(),
                event_type: event.kind,
                status: None,
                error: Some("not queued: too many deliveries wait for this webhook".to_owned()),
                delivered: false,
                next_retry: None,
            };
            self.record_attempt(&mut inner, &hook, attempt)?;
        }
        Ok(seqs)
    }

    /// Lets deliveries [`Webhooks::stage`] wrote go out, once what caused them is durable: a
    /// receiver is never told of something a crash or a failure could still undo.
    pub fn commit(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for s in seqs {
            inner.staged.remove(s);
        }
        drop(inner);
        self.added.notify_one();
    }

    /// Takes back deliveries [`Webhooks::stage`] wrote, when what caused them did not happen.
    pub fn unstage(&self, seqs: &[u64]) {
        let mut inner = self.lock();
        let writes = seqs
            .iter()
            .map(|s| (s.to_be_bytes().to_vec(), None))
            .collect();
        if let Err(e) = self.outbox_tree.apply(writes) {
            tracing::warn!(error = %e, "webhook deliveries could not be taken back");
        }
        for s in seqs {
            inner.outbox.remove(s);
            inner.staged.remove(s);
        }
    }

    /// [`Webhooks::stage`], then waits until the outbox is durable: for causes that became
    /// durable on their own (the documents' changes).
    pub async fn emit(&self, event: Event) -> Result<(), StoreError> {
        let seqs = self.stage(event)?;
        if !seqs.is_empty() {
            self.store.durable().await?;
            self.commit(&seqs);
        }
        Ok(())
    }

    /// Waits until everything written so far (the due days included) is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.store.durable().await
    }

    /// The deliveries to start now: the first waiting one of each lane (hook and review) that
    /// has none under way, when its time has come; at most `room`. Marks their lanes busy.
    /// Also returns when the next waiting one is due, if any waits.
    fn due(&self, now: u64, room: usize) -> (Vec<(u64, Delivery, HookRecord)>, Option<u64>) {
        let mut inner = self.lock();
        let mut seen = HashSet::new();
        let mut start = Vec::new();
        let mut next: Option<u64> = None;
        for (seq, d) in &inner.outbox {
            let lane = (d.hook.clone(), d.event.review.id.clone());
            if !seen.insert(lane.clone())
                || inner.in_flight.contains(&lane)
                || inner.staged.contains(seq)
            {
                continue;
            }
            if d.next_at > now {
                next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
                continue;
            }
            if start.len() < room {
                if let Some(hook) = inner.hooks.get(&d.hook) {
                    start.push((*seq, d.clone(), hook.clone()));
                }
            }
        }
        for (_, d, _) in &start {
            inner
                .in_flight
                .insert((d.hook.clone(), d.event.review.id.clone()));
        }
        (start, next)
    }

    /// Records the outcome of an attempt at delivery `seq`: done (delivered or given up) leaves
    /// the outbox, otherwise it waits for its next try.
    fn finished(&self, seq: u64, lane: &(String, String), outcome: Result<u16, String>) {
        let mut inner = self.lock();
        let Some(mut delivery) = inner.outbox.get(&seq).cloned() else {
            // The hook was removed meanwhile.
            inner.in_flight.remove(lane);
            return;
        };
        inner
            .in_flight
            .remove(&(delivery.hook.clone(), delivery.event.review.id.clone()));
        delivery.attempts += 1;
        let now = now_ms();
        let delivered = matches!(outcome, Ok(s) if (200..300).contains(&s));
        let gave_up = !delivered && delivery.attempts >= self.settings.max_attempts;
        let next_retry = (!delivered && !gave_up)
            .then(|| now + self.settings.backoff(delivery.attempts).as_millis() as u64);
        let (status, error) = match outcome {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let error = if gave_up {
            Some(match error {
                Some(e) => format!("{e}; given up after {} attempts", delivery.attempts),
                None => format!("given up after {} attempts", delivery.attempts),
            })
        } else {
            error
        };
        let attempt = Attempt {
            at: now,
            event_id: delivery.event.id.clone(),
            event_type: delivery.event.kind,
            status,
            error,
            delivered,
            next_retry,
        };
        let stored = match next_retry {
            Some(at) => {
                delivery.next_at = at;
                let written = self
                    .outbox_tree
                    .put(&seq.to_be_bytes(), &to_json(&delivery));
                inner.outbox.insert(seq, delivery.clone());
                written
            }
            None => {
                inner.outbox.remove(&seq);
                self.outbox_tree.remove(&seq.to_be_bytes())
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "a webhook delivery's outcome could not be stored");
        }
        if gave_up {
            tracing::warn!(hook = %delivery.hook, event = %delivery.event.id, "webhook delivery given up");
        }
        let hook = delivery.hook.clone();
        if let Err(e) = self.record_attempt(&mut inner, &hook, attempt) {
            tracing::warn!(error = %e, "a webhook attempt could not be stored");
        }
    }

    /// Lets a lane go without an outcome (the delivery was stopped by the shutdown): it is
    /// tried again after the restart.
    fn abandoned(&self, lane: &(String, String)) {
        self.lock().in_flight.remove(lane);
    }

    fn record_attempt(
        &self,
        inner: &mut Inner,
        hook: &str,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        if !inner.hooks.contains_key(hook) {
            return Ok(());
        }
        let seq = inner.next_attempt;
        inner.next_attempt += 1;
        let list = inner.attempts.entry(hook.to_owned()).or_default();
        let mut writes = BTreeMap::new();
        writes.insert(attempt_key(hook, seq), Some(to_json(&attempt)));
        list.push_back((seq, attempt));
        while list.len() > ATTEMPTS_SHOWN {
            if let Some((old, _)) = list.pop_front() {
                writes.insert(attempt_key(hook, old), None);
            }
        }
        self.attempts_tree.apply(writes)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        locked(&self.inner)
    }
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("webhook outbox key".to_owned()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn attempt_key(hook: &str, seq: u64) -> Vec<u8> {
    let mut key = hook.as_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// 404 `unknown_webhook`.
pub fn unknown_webhook() -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        "unknown_webhook",
        "no webhook has this id",
    )
}

/// Checks a target URL: trimmed, an `http://` or `https://` URL with a host (see
/// [`WebUrl::parse`]); unless `private` allows it, not a name of this machine or an address
/// that is not public (a name is checked again, looked up, at each delivery).
pub fn validate_url(url: &str, private: bool) -> Result<String, Problem> {
    let url = url.trim();
    let target = WebUrl::parse(url).ok_or_else(|| {
        Problem::new(
            ProblemKind::BadInput,
            "invalid_url",
            format!(
                "the webhook URL is an http or https URL with a host, at most {MAX_URL_BYTES} bytes, without credentials or spaces"
            ),
        )
    })?;
    let local = urls::local_name(&target.host)
        || target.address().is_some_and(|ip| !urls::public_address(ip));
    if local && !private {
        return Err(Problem::new(
            ProblemKind::BadInput,
            "private_url",
            "the webhook URL points at this machine or a private network, which this server does not send to (its operator can allow it with --webhooks-allow-private)",
        ));
    }
    Ok(url.to_owned())
}

/// Parses a format name.
pub fn parse_format(name: Option<&str>) -> Result<Format, Problem> {
    match name {
        None | Some("json") => Ok(Format::Json),
        Some("slack") => Ok(Format::Slack),
        Some(_) => Err(Problem::new(
            ProblemKind::BadInput,
            "invalid_format",
            "format is \"json\" (the event as JSON) or \"slack\" (a text message for Slack or Mattermost)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let s = WebhookSettings::default();
        assert_eq!(s.backoff(1), Duration::from_secs(30));
        assert_eq!(s.backoff(2), Duration::from_secs(60));
        assert_eq!(s.backoff(10), Duration::from_secs(4 * 3600));
        let total: Duration = (1..s.max_attempts).map(|n| s.backoff(n)).sum();
        assert!(
            total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(24 * 3600),
            "{total:?}"
        );
    }

    #[test]
    fn urls_are_checked() {
        for good in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            " https://8.8.8.8/hook ",
            "http://[2606:4700::1]:9/",
        ] {
            assert_eq!(validate_url(good, false), Ok(good.trim().to_owned()));
        }
        for bad in ["ftp://example.com/", "https://user:pw@example.com/", ""] {
            assert_eq!(
                validate_url(bad, true).map_err(|p| p.code),
                Err("invalid_url"),
                "{bad}"
            );
        }
        for local in [
            "http://127.0.0.1:8080/hook?x=1",
            "http://[::1]:9/",
            "http://localhost/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.7/",
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert_eq!(
                validate_url(local, false).map_err(|p| p.code),
                Err("private_url"),
                "{local}"
            );
            assert!(validate_url(local, true).is_ok(), "{local}");
        }
    }

    /// Unless allowed, a delivery is not sent to a name that looks up to this machine.
    #[tokio::test]
    async fn deliveries_to_private_addresses_are_refused_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // By name before any lookup, and by the address a lookup gives.
        for host in ["localhost", "127.0.0.1", "127.1", "[::ffff:127.0.0.1]"] {
            let url = format!("http://{host}:{port}/hook");
            let refused = deliver::post(&url, &[], Vec::new(), Duration::from_secs(5), false).await;
            assert_eq!(
                refused,
                Err("not sent: the host is this machine or on a private network, which this server does not send to (its operator can allow it with --webhooks-allow-private)".to_owned()),
                "{host}"
            );
        }
        let answering = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let url = format!("http://127.0.0.1:{port}/hook");
        let sent = deliver::post(&url, &[], Vec::new(), Duration::from_secs(5), true).await;
        assert_eq!(sent, Ok(204));
        answering.await.expect("receiver");
    }

    /// A delivery staged for a cause that is not durable yet is not sent, and holds back the
    /// later ones of its lane; committed, it goes out first.
    #[tokio::test]
    async fn staged_deliveries_wait_for_their_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = Store::open(dir.path()).expect("open");
        let flusher = tokio::task::spawn_blocking(move || flusher.run());
        let hooks =
            Webhooks::open(&store, WebhookSettings::default(), Clock::system()).expect("webhooks");
        hooks
            .create(Some("r".into()), "http://127.0.0.1:9/".into(), Format::Json)
            .await
            .expect("hook");
        let event = |title: &str| {
            Event::new(
                &hooks.clock,
                EventType::PhaseChanged,
                "r",
                title,
                serde_json::json!({}),
            )
        };
        let first = hooks.stage(event("first")).expect("staged");
        hooks.emit(event("second")).await.expect("emitted");
        let (start, _) = hooks.due(u64::MAX, 10);
        assert!(start.is_empty(), "nothing goes out before the first commit");
        hooks.commit(&first);
        let (start, _) = hooks.due(u64::MAX, 10);
        let titles: Vec<&str> = start
            .iter()
            .map(|(_, d, _)| d.event.review.title.as_str())
            .collect();
        assert_eq!(titles, ["first"]);
        drop(hooks);
        drop(store);
        flusher.await.expect("flusher");
    }
}
