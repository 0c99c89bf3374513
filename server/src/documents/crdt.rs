//! The yrs operations of the document owner: loading a document from its stored bytes, applying
//! a client's update with panics contained, diffs and state vectors, and folding a log into a
//! snapshot. The owner's core ([`crate::documents::core`]) touches its `yrs::Doc` only through
//! these; server code run as a job ([`crate::documents::command::Job`], e.g. the review domain's
//! commands) reads and writes the document in its own transaction, with panics contained by the
//! core.
//!
//! yrs can panic on malformed updates and leave the document half-applied (`docs/architecture.md`, "yrs facts"), so
//! every decode and apply runs under `catch_unwind`. An update is first decoded and checked
//! without touching the document; only a failure after that point (yrs refusing it part-way, or
//! panicking) may have changed the document, and only then must the caller discard it and load it
//! again from storage ([`ApplyError::may_have_changed_document`]).

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, StateVector, Transact, Update};

use crate::limits::{MAX_CLOCK, MAX_CLOCK_AHEAD};

/// Why an update was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The bytes are not a valid v1 update; the document was not touched.
    #[error("invalid update: {0}")]
    Invalid(String),
    /// The update writes or deletes clocks of `client` too far beyond what the document has of
    /// that client (see [`MAX_CLOCK_AHEAD`] and [`MAX_CLOCK`]); refused before touching the
    /// document.
    #[error("the update claims clocks of client {client} up to {clock}, too far ahead")]
    ClockTooFarAhead {
        /// The client whose clocks were claimed.
        client: u64,
        /// The highest clock claimed (exclusive end of a range).
        clock: u64,
    },
    /// yrs refused the update part-way through applying it; the document may be half-applied.
    #[error("invalid update: {0}")]
    Rejected(String),
    /// yrs panicked while applying; the document may be half-applied.
    #[error("the CRDT library panicked while applying the update")]
    Panicked,
}

impl ApplyError {
    /// Stable name of the failure's class.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_)
            | ApplyError::ClockTooFarAhead { .. }
            | ApplyError::Rejected(_) => "invalid_update",
            ApplyError::Panicked => "update_panicked",
        }
    }

    /// The close reason for a connection whose update failed: the code, and for a refused clock
    /// claim what was wrong with it.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::ClockTooFarAhead { .. } => {
                "invalid_update: clock_too_far_ahead: the update claims another writer's future clocks"
            }
            other => other.code(),
        }
    }

    /// Whether the document may have been changed by the failed update, so that it must be
    /// discarded and loaded again. An update that could not be decoded, or was refused before
    /// it touched the document, changed nothing: reloading for it would only cost CPU (issue 16).
    pub fn may_have_changed_document(&self) -> bool {
        matches!(self, ApplyError::Rejected(_) | ApplyError::Panicked)
    }
}

/// What applying an update changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// The changes the update made, encoded once by yrs (empty when it brought nothing new).
    /// This, not the client's bytes, is what gets stored and relayed, so duplicates sent by
    /// reconnecting clients cost nothing downstream.
    pub effect: Option<Vec<u8>>,
    /// True when parts of the update wait for missing dependencies; the raw update must then be
    /// stored too, so that a restart does not lose what yrs is holding back.
    pub pending: bool,
}

/// A new empty document with the options browsers expect (UTF-16 offsets).
pub fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Loads a document from a snapshot and the updates after it. Stored updates were applied
/// cleanly once, so a failure here means the store is damaged: it is reported, not hidden.
pub fn load<'a>(
    snapshot: Option<&[u8]>,
    updates: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Doc, ApplyError> {
    let doc = new_doc();
    if let Some(s) = snapshot {
        apply_raw(&doc, s)?;
    }
    for u in updates {
        apply_raw(&doc, u)?;
    }
    Ok(doc)
}

/// Applies a client's update and returns its effect. When the error
/// [may have changed the document](ApplyError::may_have_changed_document), it must be discarded.
pub fn apply(doc: &Doc, update: &[u8]) -> Result<Applied, ApplyError> {
    let decoded = admit(doc, update)?;
    guarded(|| {
        let mut txn = doc.transact_mut();
        txn.apply_update(decoded)
            .map_err(|e| ApplyError::Rejected(e.to_string()))?;
        txn.commit();
        let changed = !txn.delete_set().is_empty() || txn.after_state() != txn.before_state();
        let pending = txn.has_missing_updates();
        if pending {
            // Held-back parts are merged into every later encoding, and a malformed one can make
            // that merge panic. Encode once now (cheap: against our own state vector) so such an
            // update is rejected here rather than breaking every later sync.
            let own = txn.state_vector();
            let _ = txn.encode_state_as_update_v1(&own);
        }
        Ok(Applied {
            effect: changed.then(|| txn.encode_update_v1()),
            pending,
        })
    })
}

/// Decodes an update and checks its clocks against the document, without changing it. A panic
/// here (yrs' decoder adds clocks without overflow checks in debug builds) leaves the document
/// as it was, so it counts as an undecodable update.
fn admit(doc: &Doc, update: &[u8]) -> Result<Update, ApplyError> {
    catch_unwind(AssertUnwindSafe(|| {
        let decoded = Update::decode_v1(update).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        check_clocks(&decoded, &doc.transact().state_vector())?;
        Ok(decoded)
    }))
    .unwrap_or_else(|_| Err(ApplyError::Invalid("the update could not be read".into())))
}

/// Refuses an update that inserts or deletes anything of a client beyond [`MAX_CLOCK_AHEAD`]
/// past the document's clock for that client, or at or past [`MAX_CLOCK`].
///
/// Why: yrs keeps structs that arrive ahead of their predecessors as pending, and keeps
/// deletions of clocks it does not have yet, and applies them when the client's own edits reach
/// those clocks. A writer can therefore write into another writer's future (its client id is in
/// presence): at a clock near 2^32 that makes yrs 0.28 panic on the victim's next edit (its clock
/// arithmetic casts to `i32`), which closed the victim instead of the offender (issue 16). A
/// client's own structs arrive ahead of their predecessors only while those are still on their
/// way, so a gap bigger than one person's unsynced writing is never legitimate.
fn check_clocks(update: &Update, known: &StateVector) -> Result<(), ApplyError> {
    let check = |client: &yrs::ClientID, range: &std::ops::Range<u32>| {
        let limit = (u64::from(known.get(client)) + MAX_CLOCK_AHEAD).min(MAX_CLOCK);
        let end = u64::from(range.end);
        // A range whose end wrapped around (yrs adds clocks unchecked in release builds) is as
        // far ahead as a clock can be.
        if range.end < range.start || end > limit {
            return Err(ApplyError::ClockTooFarAhead {
                client: client.get(),
                clock: end.max(u64::from(range.start)),
            });
        }
        Ok(())
    };
    for (client, ranges) in update.insertions(true).iter() {
        for range in ranges.iter() {
            check(client, range)?;
        }
    }
    for (client, ranges) in update.delete_set().iter() {
        for range in ranges.iter() {
            check(client, range)?;
        }
    }
    Ok(())
}

/// Whether `update` would change nothing in `doc`: every item it inserts is already there and
/// every deletion it carries is already applied. Read-only connections may send such updates
/// (a reconnecting reader's SyncStep2 carries the delete set it received); anything else from
/// them is refused. Never panics; an undecodable update is an error.
pub fn contained(doc: &Doc, update: &[u8]) -> Result<bool, ApplyError> {
    guarded(|| {
        let update = Update::decode_v1(update).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        let txn = doc.transact();
        let sv = txn.state_vector();
        for (client, ranges) in update.insertions(true).iter() {
            let known = sv.get(client);
            if ranges.iter().any(|r| r.end > known) {
                return Ok(false);
            }
        }
        let deletes = update.delete_set();
        if deletes.is_empty() {
            return Ok(true);
        }
        let deleted = txn.snapshot().delete_set;
        for (client, ranges) in deletes.iter() {
            let mut have: Vec<std::ops::Range<u32>> =
                match deleted.iter().find(|(c, _)| *c == client) {
                    Some((_, have)) => have.iter().cloned().collect(),
                    None => Vec::new(),
                };
            have.sort_by_key(|r| r.start);
            let covered = |want: &std::ops::Range<u32>| {
                // The last range starting at or before `want.start` must reach its end (the
                // store's ranges are disjoint and squashed).
                let i = have.partition_point(|h| h.start <= want.start);
                i > 0 && have[i - 1].end >= want.end
            };
            if !ranges.iter().all(|want| want.is_empty() || covered(want)) {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// The state vector of the document, encoded.
pub fn state_vector(doc: &Doc) -> Vec<u8> {
    doc.transact().state_vector().encode_v1()
}

/// Everything the holder of `state_vector` lacks, as a v1 update.
pub fn diff(doc: &Doc, state_vector: &[u8]) -> Result<Vec<u8>, ApplyError> {
    guarded(|| {
        let sv =
            StateVector::decode_v1(state_vector).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        Ok(doc.transact().encode_diff_v1(&sv))
    })
}

/// The whole document as one update.
pub fn full_state(doc: &Doc) -> Result<Vec<u8>, ApplyError> {
    guarded(|| {
        Ok(doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default()))
    })
}

/// Folds a snapshot and later updates into one new snapshot, by applying them to a fresh
/// document and encoding its state (`merge_updates` is pathological on many small updates).
pub fn fold(snapshot: Option<&[u8]>, updates: &[&[u8]]) -> Result<Vec<u8>, String> {
    let doc = load(snapshot, updates.iter().copied()).map_err(|e| e.to_string())?;
    full_state(&doc).map_err(|e| e.to_string())
}

fn apply_raw(doc: &Doc, update: &[u8]) -> Result<(), ApplyError> {
    guarded(|| {
        let decoded = Update::decode_v1(update).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        doc.transact_mut()
            .apply_update(decoded)
            .map_err(|e| ApplyError::Invalid(e.to_string()))
    })
}

fn guarded<T>(f: impl FnOnce() -> Result<T, ApplyError>) -> Result<T, ApplyError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(ApplyError::Panicked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, Text};

    fn typed(text: &str) -> Vec<u8> {
        let doc = new_doc();
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, text);
        txn.encode_update_v1()
    }

    #[test]
    fn effect_is_empty_for_a_duplicate() {
        let doc = new_doc();
        let u = typed("héllo 😀");
        let first = apply(&doc, &u).expect("applies");
        assert!(first.effect.is_some());
        let again = apply(&doc, &u).expect("applies");
        assert!(again.effect.is_none(), "nothing new the second time");
        let copy = load(None, [first.effect.as_deref().expect("effect")]).expect("loads");
        let text = copy.get_or_insert_text("t");
        assert_eq!(text.get_string(&copy.transact()), "héllo 😀");
    }

    #[test]
    fn containment_of_inserts_and_deletes() {
        let doc = new_doc();
        let hello = typed("hello");
        apply(&doc, &hello).expect("applies");
        assert_eq!(contained(&doc, &hello), Ok(true));
        assert_eq!(contained(&doc, &[0, 0]), Ok(true), "the empty update");
        assert_eq!(contained(&doc, &typed("other")), Ok(false));

        // A peer that has the document deletes two characters: new until applied.
        let peer = load(None, [&hello[..]]).expect("loads");
        let text = peer.get_or_insert_text("t");
        let sv = peer.transact().state_vector();
        text.remove_range(&mut peer.transact_mut(), 1, 2);
        let delete = peer.transact().encode_diff_v1(&sv);
        assert_eq!(contained(&doc, &delete), Ok(false));
        apply(&doc, &delete).expect("applies");
        assert_eq!(contained(&doc, &delete), Ok(true));
        // A reader's SyncStep2 answer: nothing new, but the whole delete set.
        let reader = load(None, [&hello[..], &delete[..]]).expect("loads");
        let answer = reader
            .transact()
            .encode_diff_v1(&doc.transact().state_vector());
        assert_eq!(contained(&doc, &answer), Ok(true));
        assert!(contained(&doc, &[0xff, 0xff]).is_err());
    }

    /// An update that only deletes `len` clocks of `client` from `start`.
    fn deletion(client: u64, start: u64, len: u64) -> Vec<u8> {
        let mut u = vec![0];
        for v in [1, client, 1, start, len] {
            debrief_proto::lib0::write_var_uint(&mut u, v);
        }
        u
    }

    /// An update with one string item of `client` at `clock` whose left origin is `origin`.
    fn item_at(client: u64, clock: u64, origin: (u64, u64)) -> Vec<u8> {
        let mut u = Vec::new();
        for v in [1, 1, client, clock] {
            debrief_proto::lib0::write_var_uint(&mut u, v);
        }
        u.push(0x84);
        for v in [origin.0, origin.1, 1] {
            debrief_proto::lib0::write_var_uint(&mut u, v);
        }
        u.extend_from_slice(b"x\0");
        u
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/yrs-panic")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    #[test]
    fn claims_on_future_clocks_are_refused_without_touching_the_document() {
        let doc = new_doc();
        apply(&doc, &typed("hello")).expect("applies");
        let client = doc.client_id().get();
        let before = full_state(&doc).expect("encodes");
        let claims = [
            item_at(
                client,
                u64::from(u32::MAX - 1),
                (client, u64::from(u32::MAX - 2)),
            ),
            item_at(client, 5 + MAX_CLOCK_AHEAD + 1, (client, 4)),
            item_at(777, MAX_CLOCK, (777, MAX_CLOCK - 1)),
            deletion(client, 5, u64::from(u32::MAX) - 10),
            deletion(client, (1 << 31) + 5, 1),
        ];
        for claim in claims {
            let e = apply(&doc, &claim).expect_err("refused");
            assert!(
                matches!(e, ApplyError::ClockTooFarAhead { .. }),
                "{e:?} for {claim:x?}"
            );
            assert!(!e.may_have_changed_document());
            assert_eq!(e.code(), "invalid_update");
        }
        assert_eq!(full_state(&doc).expect("encodes"), before);
    }

    #[test]
    fn out_of_order_content_within_the_bound_is_kept_pending() {
        let doc = new_doc();
        apply(&doc, &typed("hello")).expect("applies");
        let client = doc.client_id().get();
        // A struct of a client the document has nothing of yet, far enough ahead to be a
        // reconnecting client's edit that overtook what it wrote offline.
        let ahead = item_at(4242, 100_000, (4242, 99_999));
        let applied = apply(&doc, &ahead).expect("accepted");
        assert!(applied.pending);
        // Deleting content of a client that has not arrived yet, within the bound.
        apply(&doc, &deletion(client, 5, 1000)).expect("accepted");
    }

    #[test]
    fn only_failures_past_decoding_and_checks_need_a_reload() {
        let doc = new_doc();
        let e = apply(&doc, &[0x05, 0x01]).expect_err("undecodable");
        assert!(!e.may_have_changed_document(), "{e:?}");
        // The fixtures' panicking update claims clocks past 2^31: now refused up front.
        apply(&doc, &fixture("base.bin")).expect("applies");
        let e = apply(&doc, &fixture("bad.bin")).expect_err("refused");
        assert!(
            matches!(e, ApplyError::ClockTooFarAhead { client: 101, .. }),
            "{e:?}"
        );
        // One that passes the checks and breaks yrs afterwards still needs a reload.
        let e = apply(&doc, &fixture("bad-pending.bin")).expect_err("panics");
        assert_eq!(e, ApplyError::Panicked);
        assert!(e.may_have_changed_document());
    }

    #[test]
    fn garbage_is_rejected() {
        let doc = new_doc();
        assert!(apply(&doc, &[0xff, 0xff, 0xff]).is_err());
        assert!(diff(&doc, &[0xff]).is_err());
    }
}
