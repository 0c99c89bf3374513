//! Anonymous items: the queue that holds them without an author, their release in shuffled
//! batches at a fixed cadence (or when the meeting starts), the keys that let the writing browser
//! edit or retract them, one-per-session votes, and in-memory rate limits.
//!
//! What is stored, and what is not (`docs/anonymity.md`):
//! - `meta.held`: review id + op key → the op ([`AnonOp`]): text, anchor and random ids only.
//!   Op keys are random or derived from random item ids, so their order says nothing about when
//!   they arrived; nothing records a time.
//! - `meta.anon_keys`: item id → SHA-256 of the item's key, the review and where the item lives.
//! - `meta.votes`: SHA-256("vote" ‖ session token ‖ concern id) → nothing. The store keeps only
//!   hashes of session tokens, so without the token itself nobody can link a vote to a session.
//! - Rate limits: a map in memory keyed by a hash of the session token, never written or logged.
//!
//! Nothing in this module logs, counts per person, or emits an event about an anonymous item.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use debrief_proto::schema::{document_name, DocKind};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::threads::{self, AnonOp, Item};
use super::{now_ms, random_hex, to_json, Problem, ProblemKind};
use crate::store::{MetaTree, Store, StoreError};
use crate::AppState;

/// Anonymous submissions (items, replies, votes, edits, retractions) one session may make per
/// [`RATE_WINDOW`]: generous for a person, small for a script flooding the board.
pub const RATE_LIMIT: u32 = 30;
/// The window of [`RATE_LIMIT`].
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Default release cadence: often enough that a comment appears while it matters, rarely enough
/// that a batch holds several people's items.
pub const DEFAULT_CADENCE: Duration = Duration::from_secs(60);
/// Items of one review waiting for their release: several batches' worth of a busy review,
/// while a flood (or a meeting-mode review held for days) cannot grow the queue without bound.
pub const MAX_HELD_PER_REVIEW: usize = 1_000;
/// Sessions tracked by the rate limiter before old windows are dropped; bounds its memory.
const MAX_TRACKED_SESSIONS: usize = 100_000;

/// When a review releases its held anonymous items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseMode {
    /// At every cadence boundary.
    #[default]
    Batch,
    /// All at once when the meeting starts (and at every boundary after that).
    Meeting,
}

impl ReleaseMode {
    /// Name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseMode::Batch => "batch",
            ReleaseMode::Meeting => "meeting",
        }
    }
}

/// A held op and its key in the queue.
type HeldOp = (Vec<u8>, AnonOp);

/// What the key of an anonymous item unlocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    review: String,
    item: Item,
    hash: String,
}

/// The anonymous-item queue and its secrets.
#[derive(Debug)]
pub struct Anonymity {
    held: MetaTree,
    keys: MetaTree,
    votes: MetaTree,
    store: Store,
    cadence: Duration,
    rates: Mutex<HashMap<[u8; 32], (Instant, u32)>>,
    /// Serialises releases, so the cadence loop and a phase change never release one op twice.
    releasing: tokio::sync::Mutex<()>,
}

impl Anonymity {
    /// Opens the trees.
    pub fn open(store: &Store, cadence: Duration) -> Result<Arc<Anonymity>, StoreError> {
        Ok(Arc::new(Anonymity {
            held: store.meta_tree("held")?,
            keys: store.meta_tree("anon_keys")?,
            votes: store.meta_tree("votes")?,
            store: store.clone(),
            cadence: cadence.max(Duration::from_millis(100)),
            rates: Mutex::new(HashMap::new()),
            releasing: tokio::sync::Mutex::new(()),
        }))
    }

    /// The release cadence.
    pub fn cadence(&self) -> Duration {
        self.cadence
    }

    /// The next release boundary after `now` (ms since the epoch).
    pub fn next_boundary(&self, now: u64) -> u64 {
        let c = self.cadence_ms();
        (now / c + 1) * c
    }

    /// The boundary at or before `now`: the time stamped on items released now.
    pub fn boundary_at(&self, now: u64) -> u64 {
        let c = self.cadence_ms();
        now / c * c
    }

    fn cadence_ms(&self) -> u64 {
        (self.cadence.as_millis() as u64).max(1)
    }

    /// Counts one anonymous submission of the session with token `session`; refuses past the
    /// limit. Kept in memory only.
    pub fn rate_limit(&self, session: &str) -> Result<(), Problem> {
        let key: [u8; 32] = Sha256::digest(format!("rate\0{session}").as_bytes()).into();
        let mut rates = self.rates();
        let now = Instant::now();
        if rates.len() >= MAX_TRACKED_SESSIONS {
            rates.retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
        }
        let entry = rates.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= RATE_LIMIT {
            return Err(Problem::new(
                ProblemKind::TooManyRequests,
                "rate_limited",
                format!("at most {RATE_LIMIT} anonymous submissions per minute; try again shortly"),
            ));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Holds a new anonymous item and returns its key (the only copy). Durable when this
    /// returns.
    pub async fn hold_new(&self, review: &str, op: AnonOp, item: Item) -> Result<String, Problem> {
        self.room_to_hold(review)?;
        let key = random_hex(32);
        let record = KeyRecord {
            review: review.to_owned(),
            item: item.clone(),
            hash: hex::encode(Sha256::digest(key.as_bytes())),
        };
        self.keys
            .put(item_id(&item).as_bytes(), &to_json(&record))?;
        self.held.put(
            &held_key(review, &format!("new:{}", item_id(&item))),
            &to_json(&op),
        )?;
        self.store.durable().await?;
        Ok(key)
    }

    /// Holds support for a concern, once per session. Durable when this returns.
    pub async fn hold_vote(
        &self,
        review: &str,
        session: &str,
        concern: &str,
    ) -> Result<(), Problem> {
        let voter: [u8; 32] =
            Sha256::digest(format!("vote\0{session}\0{concern}").as_bytes()).into();
        if !self.votes.put_new(&voter, &[])? {
            return Err(Problem::new(
                ProblemKind::Conflict,
                "already_supported",
                "you already support this concern",
            ));
        }
        let vote = random_hex(8);
        let op = AnonOp::Vote {
            concern: concern.to_owned(),
            vote: vote.clone(),
        };
        self.held
            .put(&held_key(review, &format!("vote:{vote}")), &to_json(&op))?;
        self.store.durable().await?;
        Ok(())
    }

    fn room_to_hold(&self, review: &str) -> Result<(), Problem> {
        if self.held.count_prefix(&held_key(review, ""))? >= MAX_HELD_PER_REVIEW {
            return Err(Problem::new(
                ProblemKind::Conflict,
                "too_many_held",
                "many anonymous items are waiting for their release; try again after it",
            ));
        }
        Ok(())
    }

    /// The item a key unlocks, if the key is right.
    pub fn unlock(&self, review: &str, item_id_: &str, key: &str) -> Result<Item, Problem> {
        let wrong = || {
            Problem::new(
                ProblemKind::Forbidden,
                "wrong_key",
                "this key does not unlock that anonymous item",
            )
        };
        let Some(raw) = self.keys.get(item_id_.as_bytes())? else {
            return Err(wrong());
        };
        let record: KeyRecord = serde_json::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("anonymous key record: {e}")))?;
        let given = hex::encode(Sha256::digest(key.as_bytes()));
        if record.review != review || !crate::access::same_secret(&record.hash, &given) {
            return Err(wrong());
        }
        Ok(record.item)
    }

    /// Holds new text for an item (replacing any edit still held). When the item itself is still
    /// held, its text is replaced in place. Durable when this returns.
    pub async fn hold_edit(&self, review: &str, item: Item, body: String) -> Result<(), Problem> {
        // A release in progress must not take the held item while it is rewritten here.
        let _no_release = self.releasing.lock().await;
        let id = item_id(&item);
        let new_key = held_key(review, &format!("new:{id}"));
        if let Some(raw) = self.held.get(&new_key)? {
            let mut op: AnonOp = serde_json::from_slice(&raw)
                .map_err(|e| StoreError::Corrupt(format!("held op: {e}")))?;
            match &mut op {
                AnonOp::Thread { body: b, .. }
                | AnonOp::Reply { body: b, .. }
                | AnonOp::Concern { body: b, .. } => *b = body.clone(),
                _ => {}
            }
            self.held.put(&new_key, &to_json(&op))?;
        }
        // Queued in any case: if a crash left the item released but still held, the edit still
        // reaches it (applying it to an item that is not there changes nothing).
        let op = AnonOp::Edit { item, body };
        self.held
            .put(&held_key(review, &format!("edit:{id}")), &to_json(&op))?;
        self.store.durable().await?;
        Ok(())
    }

    /// Takes an item back: a held item is dropped, and a retraction is released at the next
    /// boundary. The key stops working. Durable when this returns.
    pub async fn hold_retract(&self, review: &str, item: Item) -> Result<(), Problem> {
        let _no_release = self.releasing.lock().await;
        let id = item_id(&item);
        let new_key = held_key(review, &format!("new:{id}"));
        self.held.remove(&held_key(review, &format!("edit:{id}")))?;
        self.held.remove(&new_key)?;
        // Queued in any case, for an item a crash left both released and held.
        let op = AnonOp::Retract { item };
        self.held
            .put(&held_key(review, &format!("retract:{id}")), &to_json(&op))?;
        self.keys.remove(id.as_bytes())?;
        self.store.durable().await?;
        Ok(())
    }

    /// Whether the item is still waiting for its release.
    pub fn is_held(&self, review: &str, item: &Item) -> Result<bool, Problem> {
        Ok(self
            .held
            .get(&held_key(review, &format!("new:{}", item_id(item))))?
            .is_some())
    }

    /// Every held op, grouped by review.
    fn all_held(&self) -> Result<BTreeMap<String, Vec<HeldOp>>, StoreError> {
        let mut out: BTreeMap<String, Vec<HeldOp>> = BTreeMap::new();
        for (key, value) in self.held.entries()? {
            let Some(split) = key.iter().position(|b| *b == 0) else {
                continue;
            };
            let review = String::from_utf8_lossy(&key[..split]).into_owned();
            let op: AnonOp = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("held op: {e}")))?;
            out.entry(review).or_default().push((key, op));
        }
        Ok(out)
    }

    fn rates(&self) -> MutexGuard<'_, HashMap<[u8; 32], (Instant, u32)>> {
        self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Releases what every review may release now, stamped with boundary `at`: shuffled, written in
/// one transaction per review with the server's client id, and only then removed from the queue.
/// `only` limits it to one review (a phase change).
pub async fn release(state: &AppState, at: u64, only: Option<&str>) {
    let anonymity = &state.anonymity;
    let _one_at_a_time = anonymity.releasing.lock().await;
    let held = match anonymity.all_held() {
        Ok(held) => held,
        Err(e) => {
            tracing::error!(error = %e, "cannot read held anonymous items");
            return;
        }
    };
    for (review, mut ops) in held {
        if only.is_some_and(|o| o != review) {
            continue;
        }
        if !state.reviews.may_release(&review) {
            continue;
        }
        ops.shuffle(&mut rand::thread_rng());
        ops.sort_by_key(|(_, op)| op.stage());
        let keys: Vec<Vec<u8>> = ops.iter().map(|(k, _)| k.clone()).collect();
        let ops: Vec<AnonOp> = ops.into_iter().map(|(_, op)| op).collect();
        let written = state
            .registry
            .open(&document_name(&review, DocKind::Discussion))
            .run_essential(move |doc| ((), threads::release(doc, &ops, at as f64)))
            .await;
        if written.is_err() {
            // Kept in the queue: the next boundary tries again (applying is idempotent).
            tracing::warn!(review = %review, "anonymous release postponed: discussion unavailable");
            continue;
        }
        for key in keys {
            if let Err(e) = anonymity.held.remove(&key) {
                tracing::error!(error = %e, "cannot clear released anonymous items");
            }
        }
        if let Err(e) = anonymity.store.durable().await {
            tracing::error!(error = %e, "cannot flush the release of anonymous items");
        }
    }
}

/// Releases at every cadence boundary until the server stops.
pub async fn release_loop(state: Arc<AppState>) {
    loop {
        let now = now_ms();
        let next = state.anonymity.next_boundary(now);
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(next.saturating_sub(now))) => {}
        }
        release(&state, next, None).await;
    }
}

fn item_id(item: &Item) -> String {
    match item {
        Item::Comment { comment, .. } => comment.clone(),
        Item::Concern { concern } => concern.clone(),
    }
}

fn held_key(review: &str, op: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(review.len() + op.len() + 1);
    k.extend_from_slice(review.as_bytes());
    k.push(0);
    k.extend_from_slice(op.as_bytes());
    k
}
