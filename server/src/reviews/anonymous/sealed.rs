//! Held anonymous items of a cluster node, kept in PostgreSQL (`docs/cluster.md`, "Anonymity in
//! PostgreSQL"): the slots of the held-items file ([`super::held`], same number, same size, same
//! layout inside), each sealed with ChaCha20-Poly1305 under `K_held` (a key of the cluster secret
//! that never reaches the database), and written only on a clock.
//!
//! The AEAD is ring's (already the TLS provider of the server): a node unseals all 1,024 slots
//! (20 MiB) when it opens, and ring's assembly does that in milliseconds in every build, where
//! the pure-Rust `chacha20poly1305` crate, generic code compiled into this crate, took 2.2 ms a
//! slot (over 2 s a start) in the debug builds the tests run.
//!
//! Why a clock: PostgreSQL records the order of writes in transaction ids, heap positions and its
//! write-ahead log. So nothing is written when a submission arrives. Every tick rewrites exactly
//! [`TICK_WRITES`] slots in one transaction: submissions waiting go into the free slots they were
//! given, wipes of released slots come next, and the rest re-seal slots chosen at random with
//! their content unchanged under a fresh nonce. A copy of the database sees the same number of
//! row versions change at every tick, busy or idle, and random bytes in each. A submission is
//! acknowledged once the tick that wrote it committed.
//!
//! This module knows slots, bytes and the key; `ticks.rs` runs the clock and `mod.rs` says what a
//! payload means. It never logs a slot number, a review or the time of a submission.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::held::{self, HeldError, Recovered, MAX_PAYLOAD, SLOTS, SLOT_BYTES};
use crate::storage::store::{Store, StoreError};

/// Slots every tick rewrites, busy or idle: how many submissions a second a busy node
/// acknowledges at most, against WAL volume (each slot is about 20 KiB of it; see
/// `docs/cluster.md` for the measured figures).
pub const TICK_WRITES: usize = 4;
/// The tick while a document is open on this node: people are visibly present, and a
/// submission is acknowledged within about a second.
pub const BUSY_TICK: Duration = Duration::from_secs(1);
/// The tick otherwise: the rows keep changing on a clock, at a small cost when nobody is there.
pub const IDLE_TICK: Duration = Duration::from_secs(30);
/// Submissions waiting for a tick, at most: a burst of a large meeting is written within
/// `MAX_WAITING / TICK_WRITES` busy ticks (16 s); past it a submission is refused as when every
/// slot is taken, rather than waiting longer than a person would.
pub const MAX_WAITING: usize = 64;

const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Bytes of a sealed slot: nonce, the slot's bytes encrypted, tag. Every slot, empty or not.
pub const SEALED_BYTES: usize = NONCE_BYTES + SLOT_BYTES + TAG_BYTES;

/// Slots read from the database at a time when the block is opened (1.3 MiB sealed).
const READ_SLOTS: u32 = 64;
/// What the associated data of a slot starts with (the slot number follows), so that a sealed
/// slot cannot be moved to another slot, nor a sealed value of another use taken for one.
const AAD_DOMAIN: &[u8] = b"debrief held slot v1";

/// `K_held` (derived from the cluster secret by the composition root): every copy is wiped from
/// memory when dropped; its `Debug` shows no byte of it.
#[derive(Clone)]
pub struct HeldKey(Zeroizing<[u8; 32]>);

impl HeldKey {
    /// The key of these bytes.
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> HeldKey {
        HeldKey(bytes)
    }

    /// The AEAD key, made for each use so that no copy outlives the call.
    fn cipher(&self) -> Option<LessSafeKey> {
        UnboundKey::new(&CHACHA20_POLY1305, self.0.as_slice())
            .ok()
            .map(LessSafeKey::new)
    }
}

impl std::fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldKey(..)")
    }
}

fn aad(slot: u32) -> Vec<u8> {
    let mut out = AAD_DOMAIN.to_vec();
    out.extend_from_slice(&slot.to_le_bytes());
    out
}

/// Seals a slot's bytes ([`SLOT_BYTES`], the held file's layout) for `slot`, under a fresh
/// random nonce (96 random bits: at one tick a second, a repeated nonce is a matter of billions
/// of years).
pub fn seal(key: &HeldKey, slot: u32, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(SEALED_BYTES);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    // Sealing fails only for a key of the wrong length or a message beyond 256 GiB: neither
    // happens; an empty result would be refused at the next open like a damaged slot.
    let sealed = key.cipher().is_some_and(|cipher| {
        cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(slot)),
                &mut out[NONCE_BYTES..],
            )
            .map(|tag| out.extend_from_slice(tag.as_ref()))
            .is_ok()
    });
    if !sealed {
        out.clear();
    }
    out
}

/// The slot's bytes, if `sealed` was sealed for `slot` under `key` and is whole.
pub fn unseal(key: &HeldKey, slot: u32, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() != SEALED_BYTES {
        return None;
    }
    let nonce: [u8; NONCE_BYTES] = sealed[..NONCE_BYTES].try_into().ok()?;
    let mut body = Zeroizing::new(sealed[NONCE_BYTES..].to_vec());
    let plain_len = key
        .cipher()?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(slot)),
            &mut body,
        )
        .ok()?
        .len();
    body.truncate(plain_len);
    (plain_len == SLOT_BYTES).then_some(body)
}

/// Answered once the tick that wrote a submission committed (or failed).
pub(super) type Written = oneshot::Receiver<Result<(), StoreError>>;
type Ack = oneshot::Sender<Result<(), StoreError>>;

/// A slot's next content, waiting for a tick.
#[derive(Debug)]
pub(super) struct Staged {
    /// `None` wipes it.
    payload: Option<Vec<u8>>,
    /// The submissions to answer once it is written.
    acks: Vec<Ack>,
}

/// The held slots in the database, as this node writes them.
pub(super) struct SealedSlots {
    pub(super) store: Store,
    key: HeldKey,
    /// What each slot holds, as written or staged (`None`: free).
    contents: Vec<Option<Vec<u8>>>,
    staged: HashMap<u32, Staged>,
    /// Staged slots in the order they were staged: submissions are written first, in this order.
    order: VecDeque<u32>,
}

impl std::fmt::Debug for SealedSlots {
    /// Counts only: the contents are held items in the clear.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSlots")
            .field(
                "held",
                &self.contents.iter().filter(|c| c.is_some()).count(),
            )
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

/// What one tick writes, and the staged contents it takes.
#[derive(Debug)]
pub(super) struct Tick {
    pub(super) writes: Vec<(u32, Vec<u8>)>,
    pub(super) taken: Vec<(u32, Staged)>,
}

impl SealedSlots {
    /// Reads and unseals every slot, making the rows of the table the first time (every slot
    /// sealed empty). A slot that does not unseal (damaged, or sealed under another secret) is
    /// reported and wiped by a later tick. Blocking.
    pub fn open(store: &Store, key: HeldKey) -> Result<(SealedSlots, Recovered), StoreError> {
        let mut slots = SealedSlots {
            store: store.clone(),
            key,
            contents: vec![None; SLOTS],
            staged: HashMap::new(),
            order: VecDeque::new(),
        };
        let mut found = Recovered::default();
        // A few slots at a time: the whole block is 20 MiB sealed, and read at once it stayed
        // in the process's memory long after it was freed.
        for from in (0..SLOTS as u32).step_by(READ_SLOTS as usize) {
            let to = (from + READ_SLOTS).min(SLOTS as u32);
            let read = slots.read(from..to)?;
            for slot in from..to {
                let plain = read
                    .get(&slot)
                    .and_then(|sealed| unseal(&slots.key, slot, sealed));
                let Some(plain) = plain else {
                    found.damaged.push(slot);
                    continue;
                };
                if plain.iter().all(|b| *b == 0) {
                    continue;
                }
                match held::decode(&plain) {
                    Some(payload) => {
                        slots.contents[slot as usize] = Some(payload.to_vec());
                        found.payloads.push((slot, payload.to_vec()));
                    }
                    None => found.damaged.push(slot),
                }
            }
        }
        // Cleared by later ticks, like any wipe.
        let damaged = found.damaged.clone();
        slots.wipe(&damaged);
        Ok((slots, found))
    }

    /// The sealed bytes of the slots numbered in `range`, making the rows of those that have none
    /// (sealed empty: the first node to open the table). A slot whose rows are there but not
    /// whole comes back short, and does not unseal. Blocking.
    fn read(&self, range: std::ops::Range<u32>) -> Result<HashMap<u32, Vec<u8>>, StoreError> {
        let read: HashMap<u32, Vec<u8>> =
            self.store.held_slots(range.clone())?.into_iter().collect();
        let empty = vec![0u8; SLOT_BYTES];
        let made: Vec<(u32, Vec<u8>)> = range
            .clone()
            .filter(|slot| !read.contains_key(slot))
            .map(|slot| (slot, seal(&self.key, slot, &empty)))
            .collect();
        if made.is_empty() {
            return Ok(read);
        }
        self.store.make_held_slots(made)?;
        // Made here or by another node at the same moment: read again.
        Ok(self.store.held_slots(range)?.into_iter().collect())
    }

    /// Stages each payload for a free slot chosen at random; answers the slots (in the order
    /// of `payloads`) and one receiver per payload, answered once a tick wrote it. Refused
    /// without staging anything when a payload is too large, when there are not enough free
    /// slots, or when [`MAX_WAITING`] submissions wait already.
    pub fn write(&mut self, payloads: &[Vec<u8>]) -> Result<(Vec<u32>, Vec<Written>), HeldError> {
        if payloads.iter().any(|p| p.len() > MAX_PAYLOAD) {
            return Err(HeldError::TooLarge);
        }
        let waiting = self.staged.values().filter(|s| s.payload.is_some()).count();
        let mut free: Vec<u32> = (0..SLOTS as u32)
            .filter(|i| self.contents[*i as usize].is_none())
            .collect();
        if free.len() < payloads.len() || waiting + payloads.len() > MAX_WAITING {
            return Err(HeldError::Full);
        }
        let mut rng = rand::rngs::OsRng;
        let mut slots = Vec::with_capacity(payloads.len());
        let mut written = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let slot = free.swap_remove(rng.gen_range(0..free.len()));
            let (ack, answer) = oneshot::channel();
            self.stage(slot, Some(payload.clone()), Some(ack));
            slots.push(slot);
            written.push(answer);
        }
        Ok((slots, written))
    }

    /// Frees `slots` at once; later ticks write them empty.
    pub fn wipe(&mut self, slots: &[u32]) {
        for slot in slots {
            self.stage(*slot, None, None);
        }
    }

    fn stage(&mut self, slot: u32, payload: Option<Vec<u8>>, ack: Option<Ack>) {
        let Some(content) = self.contents.get_mut(slot as usize) else {
            return;
        };
        content.clone_from(&payload);
        // A slot staged again is staged anew: it keeps the answers still owed, and goes to the
        // back of the line.
        let mut acks = match self.staged.remove(&slot) {
            Some(old) => {
                self.order.retain(|s| *s != slot);
                old.acks
            }
            None => Vec::new(),
        };
        acks.extend(ack);
        self.staged.insert(slot, Staged { payload, acks });
        self.order.push_back(slot);
    }

    /// Whether a submission or a wipe waits for a tick.
    pub(super) fn anything_waiting(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Chooses and seals what the next tick writes: [`TICK_WRITES`] distinct slots, first
    /// staged submissions (oldest first), then staged wipes, then slots chosen at random among
    /// the others, re-sealed as they are; in random order.
    pub(super) fn plan(&mut self) -> Tick {
        let mut chosen: Vec<u32> = self
            .order
            .iter()
            .copied()
            .filter(|s| self.staged.get(s).is_some_and(|s| s.payload.is_some()))
            .take(TICK_WRITES)
            .collect();
        let wipes: Vec<u32> = self
            .order
            .iter()
            .copied()
            .filter(|s| self.staged.get(s).is_some_and(|s| s.payload.is_none()))
            .take(TICK_WRITES - chosen.len())
            .collect();
        chosen.extend(wipes);
        let mut taken = Vec::with_capacity(chosen.len());
        for slot in &chosen {
            if let Some(staged) = self.staged.remove(slot) {
                taken.push((*slot, staged));
            }
        }
        self.order.retain(|s| !chosen.contains(s));
        let mut rng = rand::rngs::OsRng;
        let others: Vec<u32> = (0..SLOTS as u32)
            .filter(|s| !chosen.contains(s) && !self.staged.contains_key(s))
            .collect();
        let need = TICK_WRITES.saturating_sub(chosen.len());
        chosen.extend(others.choose_multiple(&mut rng, need).copied());
        chosen.shuffle(&mut rng);
        let mut plain = vec![0u8; SLOT_BYTES];
        let writes = chosen
            .into_iter()
            .map(|slot| {
                match &self.contents[slot as usize] {
                    Some(payload) => held::encode(payload, &mut plain),
                    None => plain.fill(0),
                }
                (slot, seal(&self.key, slot, &plain))
            })
            .collect();
        plain.fill(0);
        Tick { writes, taken }
    }

    /// After a tick: its submissions are answered. When it failed, what it took is staged again
    /// (unless the slot was staged anew meanwhile), and the submissions are told it failed.
    pub(super) fn done(&mut self, taken: Vec<(u32, Staged)>, result: &Result<(), StoreError>) {
        for (slot, staged) in taken.into_iter().rev() {
            if result.is_err() && !self.staged.contains_key(&slot) {
                self.staged.insert(
                    slot,
                    Staged {
                        payload: staged.payload,
                        acks: Vec::new(),
                    },
                );
                self.order.push_front(slot);
            }
            for ack in staged.acks {
                let _ = ack.send(result.clone());
            }
        }
    }

    /// Fails every submission still waiting (the node stops before a tick wrote it).
    pub(super) fn give_up(&mut self) {
        for staged in self.staged.values_mut() {
            for ack in staged.acks.drain(..) {
                let _ = ack.send(Err(StoreError::Postgres(
                    "the server stopped before the submission was written; it may be lost"
                        .to_owned(),
                )));
            }
        }
    }
}

#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
