//! Sealed held slots: the seal itself, and the slots against a real PostgreSQL (see
//! `storage/postgres/testdb.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use zeroize::Zeroizing;

use super::*;
use crate::storage::postgres::testdb::{execute, query_text, TestDb, TestOwner};
use crate::storage::postgres::PgSettings;
use crate::storage::store::{Flusher, Store};

fn key(byte: u8) -> HeldKey {
    HeldKey::new(Zeroizing::new([byte; 32]))
}

fn open_store(db: &TestDb) -> (Store, Flusher, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opened = Store::open_postgres(
        &PgSettings {
            url: db.url(),
            patience: Duration::from_secs(5),
            timeout: crate::storage::postgres::DEFAULT_TIMEOUT,
            shared: false,
        },
        dir.path(),
        TestOwner::ownership(),
    )
    .expect("open the PostgreSQL store");
    (opened.store, opened.flusher, dir)
}

fn close(slots: SealedSlots, store: Store, flusher: Flusher) {
    drop(slots);
    drop(store);
    flusher.run();
}

/// One tick, as the loop runs it; what it took is answered.
async fn tick(slots: &mut SealedSlots) {
    let Tick { writes, taken } = slots.plan();
    assert_eq!(writes.len(), TICK_WRITES);
    let result = slots.store.write_held_slots(writes).await;
    slots.done(taken, &result);
    result.expect("the tick commits");
}

fn rows(db: &TestDb, query: &str) -> Vec<String> {
    query_text(&db.url(), query).expect("query")
}

/// Every row of the table: (slot, piece) → (xmin, ctid).
fn versions(db: &TestDb) -> BTreeMap<(u32, u32), String> {
    rows(
        db,
        "SELECT slot || ',' || piece || ',' || xmin || ',' || ctid FROM held_slots",
    )
    .into_iter()
    .map(|line| {
        let mut parts = line.splitn(3, ',');
        let slot = parts.next().and_then(|p| p.parse().ok()).expect("slot");
        let piece = parts.next().and_then(|p| p.parse().ok()).expect("piece");
        ((slot, piece), parts.next().unwrap_or_default().to_owned())
    })
    .collect()
}

/// Pieces a slot is cut into (`storage/postgres/worker.rs`).
fn pieces(db: &TestDb) -> usize {
    let count: usize = rows(db, "SELECT count(*) FROM held_slots WHERE slot = 0")[0]
        .parse()
        .expect("count");
    assert!(count > 1, "a slot is cut into pieces");
    count
}

fn toast_rows(db: &TestDb) -> usize {
    let toast = rows(
        db,
        "SELECT coalesce(nullif(reltoastrelid, 0)::regclass::text, '') FROM pg_class \
         WHERE relname = 'held_slots'",
    );
    if toast[0].is_empty() {
        return 0;
    }
    rows(db, &format!("SELECT count(*) FROM {}", toast[0]))[0]
        .parse()
        .expect("count")
}

fn wal_lsn(db: &TestDb) -> String {
    rows(db, "SELECT pg_current_wal_lsn()::text").remove(0)
}

fn wal_since(db: &TestDb, from: &str) -> u64 {
    rows(
        db,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{from}')::bigint"),
    )[0]
    .parse()
    .expect("bytes")
}

#[test]
fn a_sealed_slot_opens_only_in_its_own_slot_under_its_own_key() {
    let mut plain = vec![0u8; SLOT_BYTES];
    held::encode(b"the deploy skipped review", &mut plain);
    let sealed = seal(&key(1), 7, &plain);
    assert_eq!(sealed.len(), SEALED_BYTES);
    assert_eq!(
        seal(&key(1), 7, &vec![0u8; SLOT_BYTES]).len(),
        SEALED_BYTES,
        "an empty slot is sealed at the same size"
    );
    assert!(!sealed.windows(b"deploy".len()).any(|w| w == b"deploy"));
    let opened = unseal(&key(1), 7, &sealed).expect("opens in its slot");
    assert_eq!(
        held::decode(&opened),
        Some(&b"the deploy skipped review"[..])
    );
    assert!(
        unseal(&key(1), 8, &sealed).is_none(),
        "moved to another slot"
    );
    assert!(unseal(&key(2), 7, &sealed).is_none(), "another secret");
    let mut flipped = sealed.clone();
    flipped[SEALED_BYTES / 2] ^= 1;
    assert!(unseal(&key(1), 7, &flipped).is_none(), "changed");
    assert!(
        unseal(&key(1), 7, &sealed[..SEALED_BYTES - 1]).is_none(),
        "cut short"
    );
    assert_ne!(
        seal(&key(1), 7, &plain),
        sealed,
        "every write has a fresh nonce"
    );
    assert_eq!(format!("{:?}", key(1)), "HeldKey(..)");
}

#[tokio::test]
async fn held_items_come_back_after_a_reopen_and_a_moved_slot_is_counted_and_cleared() {
    let db = TestDb::create();
    let (store, flusher, _dir) = open_store(&db);
    let (mut slots, found) = SealedSlots::open(&store, key(3)).expect("open");
    assert!(found.payloads.is_empty() && found.damaged.is_empty());
    let per_slot = pieces(&db);
    assert_eq!(
        rows(&db, "SELECT count(*) FROM held_slots")[0],
        (SLOTS * per_slot).to_string(),
        "every slot's rows are made at once"
    );
    assert_eq!(
        rows(
            &db,
            "SELECT max(octet_length(sealed)) < 2000 FROM held_slots"
        )[0],
        "t",
        "pieces stay below the TOAST threshold"
    );
    let (held, mut written) = slots
        .write(&[b"first item".to_vec(), b"second item".to_vec()])
        .expect("staged");
    assert!(
        written.iter_mut().all(|w| w.try_recv().is_err()),
        "nothing is acknowledged before a tick"
    );
    tick(&mut slots).await;
    for w in written {
        w.await.expect("answered").expect("written");
    }
    slots.wipe(&held[1..]);
    tick(&mut slots).await;
    close(slots, store, flusher);
    let stored = rows(
        &db,
        "SELECT encode(string_agg(sealed, ''), 'hex') FROM held_slots",
    );
    assert!(!stored[0].contains(&hex::encode("first item")));

    // Slot `held[0]` copied over another slot: it does not open there.
    let victim = (held[0] + 1) % SLOTS as u32;
    execute(
        &db.url(),
        &format!(
            "UPDATE held_slots v SET sealed = s.sealed FROM held_slots s \
             WHERE s.slot = {} AND v.slot = {victim} AND s.piece = v.piece",
            held[0]
        ),
    )
    .expect("move a slot");
    let (store, flusher, _dir) = open_store(&db);
    let (mut slots, found) = SealedSlots::open(&store, key(3)).expect("reopen");
    assert_eq!(found.payloads, vec![(held[0], b"first item".to_vec())]);
    assert_eq!(found.damaged, vec![victim]);
    // Under another secret nothing opens: every slot counts as damaged, none is read.
    let (other, found) = SealedSlots::open(&store, key(4)).expect("another key");
    assert_eq!(found.damaged.len(), SLOTS);
    assert!(found.payloads.is_empty());
    drop(other);
    // The damaged slot is among the first writes of the next tick.
    tick(&mut slots).await;
    close(slots, store, flusher);
    let (store, flusher, _dir) = open_store(&db);
    let (slots, found) = SealedSlots::open(&store, key(3)).expect("reopen");
    assert!(found.damaged.is_empty(), "cleared: {:?}", found.damaged);
    assert_eq!(found.payloads, vec![(held[0], b"first item".to_vec())]);
    assert_eq!(toast_rows(&db), 0, "nothing in TOAST");
    close(slots, store, flusher);
}

#[tokio::test]
async fn every_tick_rewrites_the_same_number_of_rows_idle_or_busy() {
    let db = TestDb::create();
    let (store, flusher, _dir) = open_store(&db);
    let (mut slots, _) = SealedSlots::open(&store, key(5)).expect("open");
    let per_slot = pieces(&db);
    let pages = |db: &TestDb| rows(db, "SELECT pg_relation_size('held_slots')").remove(0);
    let size = pages(&db);
    let mut wal = Vec::new();
    for round in 0..6 {
        let busy = round % 2 == 1;
        let mut written = Vec::new();
        if busy {
            let payloads: Vec<Vec<u8>> = (0..TICK_WRITES - 1)
                .map(|i| format!("item {round} {i}").into_bytes())
                .collect();
            written = slots.write(&payloads).expect("staged").1;
        }
        let before = versions(&db);
        let lsn = wal_lsn(&db);
        tick(&mut slots).await;
        wal.push((busy, wal_since(&db, &lsn)));
        let after = versions(&db);
        assert_eq!(before.len(), after.len(), "no row is added or removed");
        let changed: Vec<&(u32, u32)> = after
            .iter()
            .filter(|(k, v)| before.get(k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            changed.len(),
            TICK_WRITES * per_slot,
            "round {round} (busy: {busy}) rewrote {} rows",
            changed.len()
        );
        let mut touched: Vec<u32> = changed.iter().map(|(slot, _)| *slot).collect();
        touched.dedup();
        assert_eq!(touched.len(), TICK_WRITES, "whole slots are rewritten");
        for w in written {
            w.await.expect("answered").expect("written");
        }
    }
    eprintln!("WAL bytes per tick (busy, bytes): {wal:?}");
    assert_eq!(toast_rows(&db), 0, "nothing in TOAST");
    assert_eq!(pages(&db), size, "updated rows stay on their pages");
    close(slots, store, flusher);
}

#[tokio::test]
async fn submissions_beyond_what_ticks_can_take_soon_are_refused_as_full() {
    let db = TestDb::create();
    let (store, flusher, _dir) = open_store(&db);
    let (mut slots, _) = SealedSlots::open(&store, key(6)).expect("open");
    let one = |i: usize| vec![format!("waiting {i}").into_bytes()];
    let mut written = Vec::new();
    for i in 0..MAX_WAITING {
        written.extend(slots.write(&one(i)).expect("staged").1);
    }
    assert!(matches!(slots.write(&one(99)), Err(HeldError::Full)));
    assert!(matches!(
        slots.write(&[vec![0u8; MAX_PAYLOAD + 1]]),
        Err(HeldError::TooLarge)
    ));
    // A tick takes the oldest first; then there is room again.
    tick(&mut slots).await;
    for (i, w) in written.iter_mut().enumerate() {
        match w.try_recv() {
            Ok(result) => {
                assert!(
                    i < TICK_WRITES,
                    "submission {i} was written before older ones"
                );
                result.expect("written");
            }
            Err(_) => assert!(i >= TICK_WRITES, "submission {i} was not written"),
        }
    }
    slots.write(&one(100)).expect("room again");
    close(slots, store, flusher);
}

#[tokio::test]
async fn released_slots_are_wiped_in_slot_order_whatever_order_they_come_in() {
    let db = TestDb::create();
    let (store, flusher, _dir) = open_store(&db);
    let (slots, _) = SealedSlots::open(&store, key(7)).expect("open");
    // A release hands its slots over in the order it wrote their items into the discussion.
    let released = [900, 5, 600, 17, 1000, 2, 300, 42];
    let mut place = crate::reviews::anonymous::Place::Sealed(slots);
    place.wipe(&released).expect("staged");
    let crate::reviews::anonymous::Place::Sealed(mut slots) = place else {
        unreachable!("made sealed above")
    };
    let mut ticks = Vec::new();
    for _ in 0..released.len() / TICK_WRITES {
        let Tick { writes, taken } = slots.plan();
        let mut wiped: Vec<u32> = taken.iter().map(|(slot, _)| *slot).collect();
        let result = slots.store.write_held_slots(writes).await;
        slots.done(taken, &result);
        result.expect("the tick commits");
        wiped.sort_unstable();
        ticks.push(wiped);
    }
    assert_eq!(
        ticks,
        vec![vec![2, 5, 17, 42], vec![300, 600, 900, 1000]],
        "each tick wipes the lowest slots still staged, not the release's order"
    );
    close(slots, store, flusher);
}
