//! Anonymous items: the queue that holds them without an author, their release in shuffled
//! batches at a fixed cadence (or when the meeting starts), the keys that let the writing browser
//! edit or retract them, one-per-session votes, and in-memory rate limits.
//!
//! What is stored, and what is not (`docs/anonymity.md`):
//! - Until its release, a submission (item, reply, concern, vote, edit, retraction) lives only in
//!   the held-items file ([`held`]), or on a node of a cluster in sealed slots of the database
//!   written on a clock ([`sealed`], [`ticks`]): a slot at a random position holding the op (text,
//!   anchor, random ids), the hash of the item's key, the hash that refuses a second vote, and
//!   the hash of a receipt. No author, session, time or address; nothing written to sled, whose
//!   log-structured file would keep the arrival order beside the author's named writes.
//! - At the release, in one batch per review (sled applies a batch in key order, and the keys are
//!   random ids and hashes): `meta.anon_keys` (item id → SHA-256 of its key, the review, where the
//!   item lives) and `meta.votes` (SHA-256("vote" ‖ session token ‖ concern id) → nothing). The
//!   store keeps only hashes of session tokens, so without the token nobody can link a vote to a
//!   session. Then the slots are wiped.
//! - In memory only, never written or logged: rate limits and the set of people who submitted in
//!   the current window, both keyed by hashes of session tokens (the latter salted with a secret
//!   that dies with the process).
//!
//! Nothing in this module logs, counts per person, or emits an event about an anonymous item.
//! The held-items file is [`held`]; the release of a batch is [`release`].

pub mod held;
pub mod release;
pub mod sealed;
pub mod ticks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::basics::{locked, now_ms, random_hex, to_json};
use super::policy::{self, Phase, ReleaseMode, Role};
use super::problem::{Problem, ProblemKind};
use super::sessions::ReviewRecord;
use super::threads::{AnonOp, Item};
use crate::storage::store::{MetaTree, Store, StoreError};
use held::{HeldError, HeldFile};
use sealed::{HeldKey, SealedSlots, Written};

/// Anonymous submissions (items, replies, votes, edits, retractions) one session may make per
/// [`RATE_WINDOW`]: generous for a person, small for a script flooding the board.
pub const RATE_LIMIT: u32 = 30;
/// The window of [`RATE_LIMIT`].
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Items of one review waiting for their release: several batches' worth of a busy review,
/// while a flood (or a meeting-mode review held for days) cannot take every slot of the server.
pub const MAX_HELD_PER_REVIEW: usize = 500;
/// Sessions tracked by the rate limiter before old windows are dropped; bounds its memory.
const MAX_TRACKED_SESSIONS: usize = 100_000;
/// People who must be able to post anonymously in a review before it accepts anonymous items,
/// unless its facilitator allowed smaller groups: with two, each knows the other wrote it.
pub const MIN_ANONYMOUS_POSTERS: usize = 3;
/// Boundaries a batch that only one person contributed to waits for someone else's items
/// before it is released anyway (ten minutes at the default cadence): long enough that a busy
/// review mixes, short enough that a comment still appears while it matters.
pub const MAX_CARRY_OVERS: u32 = 10;

/// What the key of an anonymous item unlocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    review: String,
    item: Item,
    hash: String,
}

/// One held submission, as written into its slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldRecord {
    review: String,
    op: AnonOp,
    /// Rises with each edit of the same item, so the latest wins whatever order slots are read.
    #[serde(default)]
    rev: u64,
    /// For a new item: what its key unlocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRecord>,
    /// For a vote: the record that refuses a second vote of the same session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    voter: Option<String>,
    /// SHA-256 of the receipt the submitter got, to ask when it will appear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receipt: Option<String>,
}

impl HeldRecord {
    fn op_key(&self) -> (String, String) {
        let op = match &self.op {
            AnonOp::Thread { .. } | AnonOp::Reply { .. } | AnonOp::Concern { .. } => {
                format!("new:{}", new_item_id(&self.op).unwrap_or_default())
            }
            AnonOp::Vote { vote, .. } => format!("vote:{vote}"),
            AnonOp::Edit { item, .. } => format!("edit:{}", item_id(item)),
            AnonOp::Retract { item } => format!("retract:{}", item_id(item)),
            AnonOp::Pulse { answer, .. } => format!("pulse:{answer}"),
        };
        (self.review.clone(), op)
    }
}

/// Where a server holds anonymous submissions until their release; the composition root chooses.
#[derive(Debug, Clone)]
pub enum HeldPlace {
    /// The held-items file in this directory (sled, and a `--postgres` node without links).
    File(std::path::PathBuf),
    /// Sealed slots in the store's PostgreSQL database, under `K_held` (a node of a cluster,
    /// whose held items must outlive it: [`sealed`]).
    Sealed(HeldKey),
}

/// The slots of the queue, in either place: one queue logic for both.
#[derive(Debug)]
enum Place {
    File(HeldFile),
    Sealed(SealedSlots),
}

impl Place {
    /// Writes each payload into a free slot chosen at random; the slots, and what to wait for
    /// before they are durable (nothing for the file, which is synced when this returns; the
    /// ticks that write them for sealed slots).
    fn write(&mut self, payloads: &[Vec<u8>]) -> Result<(Vec<u32>, Vec<Written>), HeldError> {
        match self {
            Place::File(file) => Ok((file.write(payloads)?, Vec::new())),
            Place::Sealed(sealed) => sealed.write(payloads),
        }
    }

    /// Frees `slots`: the file zeroes and syncs them now, sealed slots are written empty by
    /// later ticks.
    ///
    /// In slot order, whatever order they are given in. A release hands its batch over in the
    /// order it wrote the items into the discussion, which every reader sees; sealed slots are
    /// wiped by ticks four at a time in the order staged, and a copy of the database groups the
    /// rows a tick wrote by transaction id (`docs/cluster.md`, "Anonymity in PostgreSQL"). In
    /// that order, the k-th tick after a release would wipe the items written k-th by fours,
    /// tying each slot (seen written at its submission) to a released item. Slots were chosen
    /// at random among the free ones, so their order says nothing of the discussion's order nor
    /// of arrival. The file is zeroed in the same order: one sync follows, but the order its
    /// writes reach the disk in is not worth a second look.
    fn wipe(&mut self, slots: &[u32]) -> std::io::Result<()> {
        let mut slots = slots.to_vec();
        slots.sort_unstable();
        match self {
            Place::File(file) => file.wipe(&slots),
            Place::Sealed(sealed) => {
                sealed.wipe(&slots);
                Ok(())
            }
        }
    }

    fn sealed(&mut self) -> Option<&mut SealedSlots> {
        match self {
            Place::File(_) => None,
            Place::Sealed(sealed) => Some(sealed),
        }
    }
}

/// The held submissions: their slots and what the slots hold.
#[derive(Debug)]
struct Queue {
    place: Place,
    slots: HashMap<u32, HeldRecord>,
    /// (review, op key) → the slot of its latest version.
    index: HashMap<(String, String), u32>,
    /// Slots a release is writing out: no longer pending for their submitters.
    releasing: HashSet<u32>,
}

impl Queue {
    fn get(&self, review: &str, op: &str) -> Option<&HeldRecord> {
        self.index
            .get(&(review.to_owned(), op.to_owned()))
            .and_then(|slot| self.slots.get(slot))
    }

    fn count(&self, review: &str) -> usize {
        self.slots.values().filter(|r| r.review == review).count()
    }

    /// Writes `add` (each replacing the held op of the same key), then wipes the slots they
    /// replaced and those of `remove`. Durable once every returned receiver answered (at once
    /// for the file).
    fn commit(
        &mut self,
        add: Vec<HeldRecord>,
        remove: &[(String, String)],
    ) -> Result<Vec<Written>, HeldError> {
        let payloads: Vec<Vec<u8>> = add.iter().map(to_json).collect();
        let (slots, written) = self.place.write(&payloads)?;
        let mut old = Vec::new();
        for (record, slot) in add.into_iter().zip(slots) {
            if let Some(prev) = self.index.insert(record.op_key(), slot) {
                old.push(prev);
            }
            self.slots.insert(slot, record);
        }
        for key in remove {
            if let Some(prev) = self.index.remove(key) {
                old.push(prev);
            }
        }
        // The submission is held and durable now. Should the old slots not be wiped, they stay
        // known: a release orders edits by revision and drops what a retraction took back.
        if let Err(e) = self.wipe(&old) {
            tracing::error!(error = %e, "cannot wipe replaced anonymous slots; the release will");
        }
        Ok(written)
    }

    /// Wipes `slots` and forgets what they held. A slot that could not be wiped stays known, so a
    /// release still takes it (releasing twice changes nothing).
    fn wipe(&mut self, slots: &[u32]) -> std::io::Result<()> {
        self.place.wipe(slots)?;
        for slot in slots {
            self.releasing.remove(slot);
            if let Some(record) = self.slots.remove(slot) {
                let key = record.op_key();
                if self.index.get(&key) == Some(slot) {
                    self.index.remove(&key);
                }
            }
        }
        Ok(())
    }
}

/// Who submitted in a review's current window, and how often its batch waited for others.
#[derive(Debug, Default)]
struct Window {
    /// Salted hashes of the submitters' session tokens (in memory only).
    submitters: HashSet<[u8; 32]>,
    /// Boundaries this batch was carried over.
    carried: u32,
}

/// The anonymous-item queue and its secrets.
#[derive(Debug)]
pub struct Anonymity {
    queue: Arc<Mutex<Queue>>,
    keys: MetaTree,
    votes: MetaTree,
    /// Released pulse answers: review ‖ 0 ‖ random answer id → the scores.
    pulses: MetaTree,
    /// What each review's pulse showed last: review → the results (`reviews::pulse::Shown`).
    pulse_shown: MetaTree,
    /// Serialises deciding what a pulse shows, so that two readers cannot move it on by less
    /// than the step between them.
    pulse_showing: tokio::sync::Mutex<()>,
    store: Store,
    cadence: Duration,
    rates: Mutex<HashMap<[u8; 32], (Instant, u32)>>,
    windows: Mutex<HashMap<String, Window>>,
    /// Salts the submitter hashes of [`Window`]; never leaves this process.
    salt: [u8; 32],
    /// Serialises releases and the submissions that rewrite held items, so the cadence loop, a
    /// phase change and an edit never interleave.
    releasing: tokio::sync::Mutex<()>,
}

/// The answer to an accepted submission.
#[derive(Debug)]
pub struct Receipt {
    /// Only the submitting browser gets it; with it, it can ask when the submission will appear.
    pub receipt: String,
    /// For a new item: its key (the only copy).
    pub key: Option<String>,
}

impl Anonymity {
    /// Opens the trees and the held slots in `held` (reading back what they hold), and moves
    /// items an older version held in sled into them. Blocking.
    pub fn open(
        store: &Store,
        held: HeldPlace,
        cadence: Duration,
    ) -> Result<Arc<Anonymity>, StoreError> {
        let (place, found) = match held {
            HeldPlace::File(dir) => {
                let (file, found) =
                    HeldFile::open(&dir).map_err(|e| StoreError::Corrupt(format!("held: {e}")))?;
                (Place::File(file), found)
            }
            HeldPlace::Sealed(key) => {
                let (sealed, found) = SealedSlots::open(store, key)?;
                (Place::Sealed(sealed), found)
            }
        };
        if !found.damaged.is_empty() {
            tracing::error!(
                slots = found.damaged.len(),
                "held anonymous slots failed their checksum and were cleared: interrupted writes \
                 or releases, or damage (an unreleased anonymous item may be lost; no copy is \
                 kept, see docs/anonymity.md)"
            );
        }
        let mut queue = Queue {
            place,
            slots: HashMap::new(),
            index: HashMap::new(),
            releasing: HashSet::new(),
        };
        for (slot, payload) in found.payloads {
            let record: HeldRecord = serde_json::from_slice(&payload).map_err(|e| {
                StoreError::Corrupt(format!("held slot {slot}: {}", unreadable(&e)))
            })?;
            let key = record.op_key();
            let newer = queue
                .get(&key.0, &key.1)
                .is_none_or(|other| other.rev <= record.rev);
            if newer {
                queue.index.insert(key, slot);
            }
            queue.slots.insert(slot, record);
        }
        let anonymity = Anonymity {
            queue: Arc::new(Mutex::new(queue)),
            keys: store.meta_tree("anon_keys")?,
            votes: store.meta_tree("votes")?,
            pulses: store.meta_tree("pulses")?,
            pulse_shown: store.meta_tree("pulse_shown")?,
            pulse_showing: tokio::sync::Mutex::new(()),
            store: store.clone(),
            cadence: cadence.max(Duration::from_millis(100)),
            rates: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            salt: {
                let mut salt = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                salt
            },
            releasing: tokio::sync::Mutex::new(()),
        };
        anonymity.migrate(store)?;
        Ok(Arc::new(anonymity))
    }

    /// Moves what an older version held in sled (`meta.held`) into the held-items file.
    fn migrate(&self, store: &Store) -> Result<(), StoreError> {
        let old = store.meta_tree("held")?;
        let entries = old.entries()?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut add = Vec::new();
        for (key, value) in &entries {
            let Some(split) = key.iter().position(|b| *b == 0) else {
                continue;
            };
            let op: AnonOp = serde_json::from_slice(value)
                .map_err(|e| StoreError::Corrupt(format!("held op: {}", unreadable(&e))))?;
            add.push(HeldRecord {
                review: String::from_utf8_lossy(&key[..split]).into_owned(),
                op,
                rev: 0,
                key: None,
                voter: None,
                receipt: None,
            });
        }
        // Into sealed slots they are written by the ticks; a sled store has the file.
        locked(&self.queue)
            .commit(add, &[])
            .map_err(|e| StoreError::Corrupt(format!("held: {e}")))?;
        for (key, _) in entries {
            old.remove(&key)?;
        }
        store.flush_blocking()
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
        let mut rates = locked(&self.rates);
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

    /// Holds a new anonymous item; answers with its key (the only copy) and a receipt. Durable
    /// when this returns.
    pub async fn hold_new(
        &self,
        review: &str,
        session: &str,
        op: AnonOp,
        item: Item,
    ) -> Result<Receipt, Problem> {
        let key = random_hex(32);
        let record = KeyRecord {
            review: review.to_owned(),
            item,
            hash: hex::encode(Sha256::digest(key.as_bytes())),
        };
        let one_at_a_time = self.releasing.lock().await;
        let mut receipt = self
            .hold_locked(
                one_at_a_time,
                review,
                session,
                op,
                |r| r.key = Some(record),
                &[],
            )
            .await?;
        receipt.key = Some(key);
        Ok(receipt)
    }

    /// Holds support for a concern, once per session. Durable when this returns.
    pub async fn hold_vote(
        &self,
        review: &str,
        session: &str,
        concern: &str,
    ) -> Result<Receipt, Problem> {
        let voter = hex::encode(Sha256::digest(
            format!("vote\0{session}\0{concern}").as_bytes(),
        ));
        let op = AnonOp::Vote {
            concern: concern.to_owned(),
            vote: random_hex(8),
        };
        let already = Problem::new(
            ProblemKind::Conflict,
            "already_supported",
            "you already support this concern",
        );
        self.hold_once(review, session, voter, op, already).await
    }

    /// Holds `op` for `session` unless `voter` (what stands for the session's one chance) was
    /// already held or released; then `already`.
    async fn hold_once(
        &self,
        review: &str,
        session: &str,
        voter: String,
        op: AnonOp,
        already: Problem,
    ) -> Result<Receipt, Problem> {
        if self.voted(&voter)? {
            return Err(already);
        }
        // Again under the lock that releases: a second request may have been held meanwhile.
        let one_at_a_time = self.releasing.lock().await;
        if self.voted(&voter)? {
            return Err(already);
        }
        self.hold_locked(
            one_at_a_time,
            review,
            session,
            op,
            |r| r.voter = Some(voter),
            &[],
        )
        .await
    }

    /// Holds one person's pulse answers for a closed review, once per session. What refuses a
    /// second answer is `SHA-256("pulse" ‖ session token ‖ review)`, held in the slot with the
    /// answer and recorded beside concern votes at the release; the answer itself goes into
    /// [`Anonymity::pulse_answers`] under a random id. Durable when this returns.
    pub async fn hold_pulse(
        &self,
        review: &str,
        session: &str,
        scores: Vec<u8>,
    ) -> Result<Receipt, Problem> {
        let voter = pulse_voter(review, session);
        let op = AnonOp::Pulse {
            answer: random_hex(16),
            scores,
        };
        let already = Problem::new(
            ProblemKind::Conflict,
            "already_answered",
            "you already answered this review's pulse",
        );
        self.hold_once(review, session, voter, op, already).await
    }

    /// Whether the session with token `session` answered the pulse of `review` (held or
    /// released). Only that session is told.
    pub fn answered_pulse(&self, review: &str, session: &str) -> Result<bool, Problem> {
        self.voted(&pulse_voter(review, session))
    }

    /// Whether `voter` was released (recorded with the votes) or is held.
    fn voted(&self, voter: &str) -> Result<bool, Problem> {
        if self.votes.get(voter.as_bytes())?.is_some() {
            return Ok(true);
        }
        Ok(locked(&self.queue)
            .slots
            .values()
            .any(|r| r.voter.as_deref() == Some(voter)))
    }

    /// The released pulse answers of a review, in the order of their random ids.
    pub fn pulse_answers(&self, review: &str) -> Result<Vec<Vec<u8>>, Problem> {
        let mut prefix = review.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for raw in self.pulses.values_with_prefix(&prefix)? {
            // An unreadable record is left out; its content never reaches a log.
            if let Ok(scores) = serde_json::from_slice::<Vec<u8>>(&raw) {
                out.push(scores);
            }
        }
        Ok(out)
    }

    /// What the pulse of `review` shows: `next` decides it from what it showed last and the
    /// released answers (`reviews::pulse::next_shown`). A change is stored and durable before it
    /// is returned: results shown and then forgotten in a crash could otherwise be followed by
    /// results that differ from them by one answer.
    pub async fn shown_pulse<T>(
        &self,
        review: &str,
        next: impl FnOnce(Option<T>, &[Vec<u8>]) -> Option<T>,
    ) -> Result<Option<T>, Problem>
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + Clone,
    {
        let _one_at_a_time = self.pulse_showing.lock().await;
        // An unreadable record shows nothing until enough answers make new results.
        let shown: Option<T> = self
            .pulse_shown
            .get(review.as_bytes())?
            .and_then(|raw| serde_json::from_slice(&raw).ok());
        let now = next(shown.clone(), &self.pulse_answers(review)?);
        if now != shown {
            if let Some(now) = &now {
                self.pulse_shown.put(review.as_bytes(), &to_json(now))?;
                self.store.durable().await?;
            }
        }
        Ok(now)
    }

    /// Holds new text for an item (replacing any edit still held). Durable when this returns.
    pub async fn hold_edit(
        &self,
        review: &str,
        session: &str,
        item: Item,
        body: String,
    ) -> Result<Receipt, Problem> {
        let id = item_id(&item);
        let one_at_a_time = self.releasing.lock().await;
        let rev = locked(&self.queue)
            .get(review, &format!("edit:{id}"))
            .map_or(0, |r| r.rev + 1);
        // Queued even when the item itself is still held: the release applies the item before
        // its edits. If a crash left the item released but still held, the edit still reaches it.
        let op = AnonOp::Edit { item, body };
        self.hold_locked(one_at_a_time, review, session, op, |r| r.rev = rev, &[])
            .await
    }

    /// Takes an item back: a held item and its held edit are dropped, and a retraction is
    /// released at the next boundary. The key stops working at once. Durable when this returns.
    pub async fn hold_retract(
        &self,
        review: &str,
        session: &str,
        item: Item,
    ) -> Result<Receipt, Problem> {
        let id = item_id(&item);
        let dropped = [
            (review.to_owned(), format!("new:{id}")),
            (review.to_owned(), format!("edit:{id}")),
        ];
        let one_at_a_time = self.releasing.lock().await;
        // Queued in any case, for an item a crash left both released and held.
        self.hold_locked(
            one_at_a_time,
            review,
            session,
            AnonOp::Retract { item },
            |_| {},
            &dropped,
        )
        .await
    }

    /// Writes one held record. The caller holds `releasing` (`one_at_a_time`); it is let go
    /// once the record is in the queue, before waiting for the tick that makes it durable, so
    /// that submissions waiting for the same tick do not wait for each other.
    async fn hold_locked(
        &self,
        one_at_a_time: tokio::sync::MutexGuard<'_, ()>,
        review: &str,
        session: &str,
        op: AnonOp,
        fill: impl FnOnce(&mut HeldRecord),
        remove: &[(String, String)],
    ) -> Result<Receipt, Problem> {
        let receipt = random_hex(16);
        let mut record = HeldRecord {
            review: review.to_owned(),
            op,
            rev: 0,
            key: None,
            voter: None,
            receipt: Some(hex::encode(Sha256::digest(receipt.as_bytes()))),
        };
        fill(&mut record);
        if locked(&self.queue).count(review) >= MAX_HELD_PER_REVIEW {
            return Err(Problem::new(
                ProblemKind::Conflict,
                "too_many_held",
                "many anonymous items are waiting for their release; try again after it",
            ));
        }
        let queue = self.queue.clone();
        let remove = remove.to_vec();
        let written =
            tokio::task::spawn_blocking(move || locked(&queue).commit(vec![record], &remove))
                .await
                .map_err(|_| StoreError::Corrupt("held: the writer panicked".to_owned()))?;
        let written = match written {
            Ok(written) => written,
            Err(HeldError::Full) => {
                return Err(Problem::new(
                    ProblemKind::Unavailable,
                    "too_many_held",
                    "the server holds as many anonymous items as it can; try again after the next release",
                ))
            }
            Err(HeldError::TooLarge) => {
                return Err(Problem::new(
                    ProblemKind::TooLarge,
                    "body_too_long",
                    "this text is too long to hold; shorten it",
                ))
            }
            Err(HeldError::Io(e)) => {
                return Err(StoreError::Corrupt(format!("held: {e}")).into());
            }
            Err(HeldError::Store(e)) => return Err(e.into()),
        };
        let submitter: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(session.as_bytes())
            .finalize()
            .into();
        locked(&self.windows)
            .entry(review.to_owned())
            .or_default()
            .submitters
            .insert(submitter);
        drop(one_at_a_time);
        for tick in written {
            tick.await.map_err(|_| StoreError::FlusherGone)??;
        }
        Ok(Receipt { receipt, key: None })
    }

    /// How many of the people counted in `counts` (sessions per role) may post anonymous items
    /// in `phase`: those the phase table lets comment.
    pub fn posters(counts: &HashMap<Role, usize>, phase: Phase) -> usize {
        counts
            .iter()
            .filter(|(role, _)| policy::may_comment(**role, phase).is_ok())
            .map(|(_, n)| n)
            .sum()
    }

    /// Refuses anonymous items while fewer than [`MIN_ANONYMOUS_POSTERS`] people may post them
    /// in the review's phase, unless its facilitator allowed small groups.
    pub fn enough_posters(
        review: &ReviewRecord,
        counts: &HashMap<Role, usize>,
    ) -> Result<(), Problem> {
        if review.small_group_anonymity {
            return Ok(());
        }
        let posters = Anonymity::posters(counts, review.phase);
        if posters < MIN_ANONYMOUS_POSTERS {
            return Err(Problem::new(
                ProblemKind::Conflict,
                "too_few_for_anonymity",
                format!(
                    "anonymous items need at least {MIN_ANONYMOUS_POSTERS} people who may post them \
                     in this review, or the others could tell who wrote them; {posters} can now \
                     (the facilitator can allow smaller groups when creating a review)"
                ),
            ));
        }
        Ok(())
    }

    /// The item a key unlocks, if the key is right and the item was not retracted.
    pub fn unlock(&self, review: &str, item_id_: &str, key: &str) -> Result<Item, Problem> {
        let wrong = || {
            Problem::new(
                ProblemKind::Forbidden,
                "wrong_key",
                "this key does not unlock that anonymous item",
            )
        };
        let held = {
            let queue = locked(&self.queue);
            if queue.get(review, &format!("retract:{item_id_}")).is_some() {
                return Err(wrong());
            }
            queue
                .get(review, &format!("new:{item_id_}"))
                .and_then(|r| r.key.clone())
        };
        let record = match held {
            Some(record) => record,
            None => {
                let Some(raw) = self.keys.get(item_id_.as_bytes())? else {
                    return Err(wrong());
                };
                serde_json::from_slice(&raw).map_err(|e| {
                    StoreError::Corrupt(format!("anonymous key record: {}", unreadable(&e)))
                })?
            }
        };
        let given = hex::encode(Sha256::digest(key.as_bytes()));
        if record.review != review || !crate::documents::access::same_secret(&record.hash, &given) {
            return Err(wrong());
        }
        Ok(record.item)
    }

    /// Whether the item is still waiting for its release (once a release is writing it out, it
    /// is on its way to the discussion, and what is done to it goes there).
    pub fn is_held(&self, review: &str, item: &Item) -> bool {
        let queue = locked(&self.queue);
        queue
            .index
            .get(&(review.to_owned(), format!("new:{}", item_id(item))))
            .is_some_and(|slot| !queue.releasing.contains(slot))
    }

    /// When the submissions of these receipts will appear, for those still held: the next
    /// boundary at the earliest, and the latest boundary a batch waiting for others' items can
    /// be carried to. `None` for a review in meeting mode before its meeting.
    pub fn pending(
        &self,
        review: &ReviewRecord,
        receipts: &[String],
    ) -> Vec<(String, Option<(u64, u64)>)> {
        let hashes: HashMap<String, &String> = receipts
            .iter()
            .map(|r| (hex::encode(Sha256::digest(r.as_bytes())), r))
            .collect();
        let queue = locked(&self.queue);
        let held: Vec<String> = queue
            .slots
            .iter()
            .filter(|(slot, r)| r.review == review.id && !queue.releasing.contains(slot))
            .map(|(_, r)| r)
            .filter_map(|r| r.receipt.as_ref())
            .filter_map(|h| hashes.get(h).map(|r| (*r).clone()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        drop(queue);
        let carried = locked(&self.windows)
            .get(&review.id)
            .map_or(0, |w| w.carried);
        let times = self.release_times(review, carried);
        held.into_iter().map(|r| (r, times)).collect()
    }

    /// The earliest and latest release of what a review holds now, given how often its batch
    /// has waited already.
    pub fn release_times(&self, review: &ReviewRecord, carried: u32) -> Option<(u64, u64)> {
        if review.release == ReleaseMode::Meeting && review.phase < Phase::Meeting {
            return None;
        }
        let next = self.next_boundary(now_ms());
        let waits = if review.small_group_anonymity {
            0
        } else {
            MAX_CARRY_OVERS.saturating_sub(carried)
        };
        Some((next, next + u64::from(waits) * self.cadence_ms()))
    }

    /// Every held record, grouped by review.
    fn all_held(&self) -> BTreeMap<String, Vec<(u32, HeldRecord)>> {
        let mut out: BTreeMap<String, Vec<(u32, HeldRecord)>> = BTreeMap::new();
        for (slot, record) in &locked(&self.queue).slots {
            out.entry(record.review.clone())
                .or_default()
                .push((*slot, record.clone()));
        }
        out
    }

    /// Whether `review`'s batch goes out now: when two or more people contributed to it, when
    /// it already waited [`MAX_CARRY_OVERS`] boundaries, when `force`d, or always when the
    /// review allows small groups. Otherwise it waits one more boundary.
    fn batch_ready(&self, review: &ReviewRecord, force: bool) -> bool {
        let mut windows = locked(&self.windows);
        let window = windows.entry(review.id.clone()).or_default();
        if force
            || review.small_group_anonymity
            || window.submitters.len() >= 2
            || window.carried >= MAX_CARRY_OVERS
        {
            return true;
        }
        window.carried += 1;
        false
    }
}

/// The record that refuses a second pulse answer of the session with token `session`.
fn pulse_voter(review: &str, session: &str) -> String {
    hex::encode(Sha256::digest(
        format!("pulse\0{session}\0{review}").as_bytes(),
    ))
}

/// The id of the item a new-item op creates.
fn new_item_id(op: &AnonOp) -> Option<&str> {
    match op {
        AnonOp::Thread { comment, .. } | AnonOp::Reply { comment, .. } => Some(comment),
        AnonOp::Concern { concern, .. } => Some(concern),
        _ => None,
    }
}

/// Why a stored anonymous record could not be read, without any of its content: serde's own
/// messages quote the value they choke on, and these errors reach the log.
fn unreadable(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {}, column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn item_id(item: &Item) -> String {
    match item {
        Item::Comment { comment, .. } => comment.clone(),
        Item::Concern { concern } => concern.clone(),
    }
}
