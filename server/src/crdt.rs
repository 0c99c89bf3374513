//! The only place that touches yrs documents: loading a document from its stored bytes, applying
//! a client's update with panics contained, and folding a log into a snapshot.
//!
//! yrs can panic on malformed updates and leave the document half-applied (`PROTOCOLS.md`), so
//! every decode and apply runs under `catch_unwind`; after a failure the caller must discard the
//! document and load it again from storage.

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, StateVector, Transact, Update};

/// Why an update was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The bytes are not a valid v1 update.
    #[error("invalid update: {0}")]
    Invalid(String),
    /// yrs panicked while decoding or applying; the document must be reloaded.
    #[error("the CRDT library panicked while applying the update")]
    Panicked,
}

impl ApplyError {
    /// Stable name of the failure, used in close reasons.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_) => "invalid_update",
            ApplyError::Panicked => "update_panicked",
        }
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

/// Applies a client's update and returns its effect. On `Err(Panicked)` (and, to be safe, on any
/// error) the document may be half-applied and must be discarded.
pub fn apply(doc: &Doc, update: &[u8]) -> Result<Applied, ApplyError> {
    guarded(|| {
        let decoded = Update::decode_v1(update).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        let mut txn = doc.transact_mut();
        txn.apply_update(decoded)
            .map_err(|e| ApplyError::Invalid(e.to_string()))?;
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

    #[test]
    fn garbage_is_rejected() {
        let doc = new_doc();
        assert!(apply(&doc, &[0xff, 0xff, 0xff]).is_err());
        assert!(diff(&doc, &[0xff]).is_err());
    }
}
