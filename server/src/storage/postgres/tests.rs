//! The PostgreSQL backend against a real PostgreSQL (see `testdb.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::testdb::{execute, query_text, Holder, TestDb, TestOwner};
use super::{PgFlusher, PgSettings, PgStore};
use crate::storage::types::StoreError;

fn open(db: &TestDb) -> (PgStore, PgFlusher) {
    open_with(db, super::DEFAULT_TIMEOUT)
}

fn open_with(db: &TestDb, timeout: Duration) -> (PgStore, PgFlusher) {
    try_open(db, timeout).expect("open the PostgreSQL store")
}

fn try_open(db: &TestDb, timeout: Duration) -> Result<(PgStore, PgFlusher), StoreError> {
    let dir = tempfile::tempdir().expect("temp dir");
    PgStore::open(
        &PgSettings {
            shared: false,
            url: db.url(),
            patience: Duration::from_secs(5),
            timeout,
        },
        dir.path(),
        TestOwner::ownership(),
    )
}

fn close(store: PgStore, flusher: PgFlusher) {
    drop(store);
    flusher.run();
}

async fn flush(store: &PgStore, doc: &str) -> Result<(), StoreError> {
    store
        .request_flush(Some(Arc::from(doc)))
        .await
        .expect("queued")
        .await
        .expect("answered")
}

fn one(db: &TestDb, query: &str) -> String {
    let rows = query_text(&db.url(), query).expect("query");
    assert_eq!(rows.len(), 1, "{query}: {rows:?}");
    rows[0].clone()
}

/// Waits (polling, bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn appended_records_are_committed_by_a_flush_and_loaded_again() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    let fresh = store.load("a").await.expect("load");
    assert!(fresh.snapshot.is_none() && fresh.log.is_empty());
    assert_eq!(fresh.next_seq, 0);
    store.append("a", 0, &[b"one"]).expect("append");
    store
        .append("a", 1, &[&b"two"[..], &b"three"[..]])
        .expect("append");
    assert_eq!(
        one(&db, "SELECT count(*) FROM records"),
        "0",
        "nothing is written before the flush"
    );
    assert_eq!(store.log_len("a"), 2, "pending records count");
    flush(&store, "a").await.expect("committed");
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 'a'"),
        "2"
    );
    assert_eq!(store.stored_bytes("a").expect("size"), 4 + 10);
    close(store, flusher);

    let (store, flusher) = open(&db);
    let loaded = store.load("a").await.expect("load");
    assert_eq!(
        loaded.updates().expect("decode"),
        vec![&b"one"[..], &b"two"[..], &b"three"[..]]
    );
    assert_eq!(loaded.next_seq, 2);
    assert_eq!(
        one(&db, "SELECT epoch FROM documents WHERE name = 'a'"),
        "2",
        "each load claims the document with a higher epoch"
    );
    close(store, flusher);
}

#[tokio::test]
async fn a_load_includes_records_appended_here_and_not_committed_yet() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("r").await.expect("load");
    store.append("r", 0, &[b"kept"]).expect("append");
    flush(&store, "r").await.expect("committed");
    store.append("r", 1, &[b"pending"]).expect("append");
    // A rebuild after a failed update loads the document again before the next flush.
    let again = store.load("r").await.expect("load");
    assert_eq!(
        again.updates().expect("decode"),
        vec![&b"kept"[..], &b"pending"[..]]
    );
    assert_eq!(again.next_seq, 2);
    flush(&store, "r")
        .await
        .expect("committed under the new epoch");
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 'r'"),
        "2"
    );
    close(store, flusher);
}

#[tokio::test]
async fn compaction_writes_the_snapshot_and_deletes_the_records_it_covers() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("c").await.expect("load");
    for seq in 0..5u64 {
        store.append("c", seq, &[[seq as u8]]).expect("append");
    }
    flush(&store, "c").await.expect("committed");
    let compacted = store
        .compact("c", 3, |snapshot, updates| {
            assert!(snapshot.is_none());
            Ok(updates.concat())
        })
        .expect("compact");
    assert_eq!(
        (compacted.entries, compacted.snapshot_bytes),
        (3, 3),
        "three records folded into three bytes"
    );
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 'c'"),
        "2"
    );
    let loaded = store.load("c").await.expect("load");
    assert_eq!(loaded.snapshot.as_deref(), Some(&[0u8, 1, 2][..]));
    assert_eq!(
        loaded.log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(loaded.next_seq, 5);
    // Records appended and not flushed yet are committed before they are folded.
    store.append("c", 5, &[[5u8]]).expect("append");
    store
        .compact("c", 6, |snapshot, updates| {
            Ok([snapshot.unwrap_or_default(), &updates.concat()].concat())
        })
        .expect("compact");
    let loaded = store.load("c").await.expect("load");
    assert_eq!(loaded.snapshot.as_deref(), Some(&[0u8, 1, 2, 3, 4, 5][..]));
    assert!(loaded.log.is_empty());
    assert_eq!(loaded.next_seq, 6);
    assert_eq!(store.stored_bytes("c").expect("size"), 6);
    close(store, flusher);
}

#[tokio::test]
async fn meta_writes_are_visible_at_once_and_durable_after_the_next_flush() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    let tree = store.meta_tree("reviews").expect("tree");
    tree.put(b"a/1", b"first").expect("put");
    tree.put(b"a/2", b"second").expect("put");
    tree.put(b"b/1", b"other").expect("put");
    tree.put(b"a/3", b"gone").expect("put");
    tree.remove(b"a/3").expect("remove");
    assert_eq!(
        tree.get(b"a/1").expect("get").as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(tree.get(b"a/3").expect("get"), None);
    assert_eq!(
        one(&db, "SELECT count(*) FROM meta"),
        "0",
        "not committed yet"
    );
    assert_eq!(tree.count_prefix(b"a/").expect("count"), 2);
    assert_eq!(
        tree.values_with_prefix(b"a/").expect("values"),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    assert_eq!(
        tree.entries_with_prefix(b"a/", 1).expect("entries"),
        vec![(b"a/1".to_vec(), b"first".to_vec())]
    );
    assert_eq!(tree.keys().expect("keys").len(), 3);
    // Another tree's keys are not this one's.
    let other = store.meta_tree("sessions").expect("tree");
    assert!(other.entries().expect("entries").is_empty());

    // put_new is atomic against pending writes too.
    assert!(!tree.put_new(b"a/1", b"again").expect("put_new"));
    assert!(tree.put_new(b"c/1", b"new").expect("put_new"));
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let tree = tree.clone();
            std::thread::spawn(move || tree.put_new(b"race", &[i]).expect("put_new"))
        })
        .collect();
    let winners = racers
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1, "exactly one put_new of the same key wins");

    let mut batch = BTreeMap::new();
    batch.insert(b"b/1".to_vec(), None);
    batch.insert(b"b/2".to_vec(), Some(b"two".to_vec()));
    tree.apply(batch).expect("apply");
    store.durable().await.expect("durable");
    assert_eq!(
        one(&db, "SELECT string_agg(convert_from(key, 'UTF8'), ',' ORDER BY key) FROM meta WHERE tree = 'reviews'"),
        "a/1,a/2,b/2,c/1,race"
    );
    close(store, flusher);

    let (store, flusher) = open(&db);
    let tree = store.meta_tree("reviews").expect("tree");
    assert_eq!(
        tree.entries()
            .expect("entries")
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).expect("utf-8"))
            .collect::<Vec<_>>(),
        vec!["a/1", "a/2", "b/2", "c/1", "race"]
    );
    close(store, flusher);
}

#[tokio::test]
async fn a_commit_behind_a_changed_epoch_is_fenced_and_writes_nothing() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("d").await.expect("load");
    store.load("e").await.expect("load");
    store.append("d", 0, &[b"mine"]).expect("append");
    flush(&store, "d").await.expect("committed");

    // Another node takes the document over.
    execute(
        &db.url(),
        "UPDATE documents SET owner = 'someone else', epoch = epoch + 1 WHERE name = 'd'",
    )
    .expect("take over");
    store.append("d", 1, &[b"too late"]).expect("append");
    store.append("e", 0, &[b"innocent"]).expect("append");
    let fenced = flush(&store, "d").await;
    assert!(
        matches!(&fenced, Err(StoreError::Fenced { name }) if name == "d"),
        "{fenced:?}"
    );
    flush(&store, "e")
        .await
        .expect("another document's records in the same commit are written");
    assert_eq!(
        one(
            &db,
            "SELECT string_agg(seq::text, ',') FROM records WHERE name = 'd'"
        ),
        "0",
        "nothing of the fenced commit is in the table"
    );
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 'e'"),
        "1"
    );
    assert!(
        matches!(
            store.append("d", 2, &[b"more"]),
            Err(StoreError::Fenced { .. })
        ),
        "a fenced document takes no more appends until it is loaded again"
    );
    let metrics = store.render_metrics();
    assert!(
        metrics.contains("debrief_postgres_fenced_commits_total 1"),
        "{metrics}"
    );
    // A compaction is behind the fence too.
    store.load("e").await.expect("load");
    execute(
        &db.url(),
        "UPDATE documents SET epoch = epoch + 1 WHERE name = 'e'",
    )
    .expect("take over");
    let compacted = store.compact("e", 1, |_, u| Ok(u.concat()));
    assert!(
        matches!(&compacted, Err(StoreError::Fenced { name }) if name == "e"),
        "{compacted:?}"
    );
    assert_eq!(one(&db, "SELECT count(*) FROM snapshots"), "0");
    close(store, flusher);
}

#[tokio::test]
async fn a_fenced_node_fails_its_documents_with_its_own_reason() {
    let db = TestDb::create();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ownership, fence) = TestOwner::fenceable();
    let settings = PgSettings {
        shared: false,
        url: db.url(),
        patience: Duration::from_secs(5),
        timeout: super::DEFAULT_TIMEOUT,
    };
    let (store, flusher) = PgStore::open(&settings, dir.path(), ownership).expect("open");
    store.load("n").await.expect("load");
    store.append("n", 0, &[b"mine"]).expect("append");
    flush(&store, "n").await.expect("committed");

    store.append("n", 1, &[b"after the lease"]).expect("append");
    *fence.lock().expect("not poisoned") = Some("its lease ended".to_owned());
    let refused = flush(&store, "n").await;
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err(
            "this node is fenced (its lease ended); it writes nothing more until it is restarted"
                .to_owned()
        ),
        "the node's reason, not another node's claim"
    );
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 'n'"),
        "1"
    );
    let metrics = store.render_metrics();
    assert!(
        metrics.contains("debrief_postgres_fenced_commits_total 0"),
        "no other node claimed it: {metrics}"
    );
    close(store, flusher);
}

#[tokio::test]
async fn the_store_connects_again_after_its_connection_is_killed() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("k").await.expect("load");
    store.append("k", 0, &[b"before"]).expect("append");
    flush(&store, "k").await.expect("committed");
    let killed = query_text(
        &db.url(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'debrief {}'",
            store.node()
        ),
    )
    .expect("terminate");
    assert_eq!(killed, vec!["t"], "the store's one connection was killed");
    wait_until("the store to connect again", || {
        store
            .render_metrics()
            .contains("debrief_postgres_reconnects_total 1")
    });
    store.probe().expect("ready again");
    let loaded = store.load("k").await.expect("load after reconnecting");
    store
        .append("k", loaded.next_seq, &[b"after"])
        .expect("append");
    flush(&store, "k")
        .await
        .expect("committed after reconnecting");
    let loaded = store.load("k").await.expect("load");
    assert_eq!(
        loaded.updates().expect("decode"),
        vec![&b"before"[..], &b"after"[..]]
    );
    close(store, flusher);
}

/// Waits until the store's connection waits for a lock another session holds.
fn wait_for_lock_wait(db: &TestDb, store: &PgStore) {
    wait_until("the store's statement to wait for the lock", || {
        query_text(
            &db.url(),
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'debrief {}' \
                 AND wait_event_type = 'Lock'",
                store.node()
            ),
        )
        .expect("query")
            == vec!["1"]
    });
}

fn kill_connection(db: &TestDb, store: &PgStore) {
    let killed = query_text(
        &db.url(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'debrief {}'",
            store.node()
        ),
    )
    .expect("terminate");
    assert_eq!(killed, vec!["t"], "the store's one connection was killed");
}

#[tokio::test]
async fn records_appended_during_a_failed_commit_are_never_written() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("f").await.expect("load");
    store.append("f", 0, &[b"kept"]).expect("append");
    flush(&store, "f").await.expect("committed");

    // The next commit waits for the document's row, and dies while it waits.
    let holder = Holder::begin(
        &db.url(),
        "SELECT 1 FROM documents WHERE name = 'f' FOR UPDATE",
    );
    store
        .append("f", 1, &[b"in the failed commit"])
        .expect("append");
    let first = store
        .request_flush(Some(Arc::from("f")))
        .await
        .expect("queued");
    wait_for_lock_wait(&db, &store);
    store
        .append("f", 2, &[b"appended while it ran"])
        .expect("append");
    kill_connection(&db, &store);
    let failed = first.await.expect("answered");
    assert!(matches!(failed, Err(StoreError::Postgres(_))), "{failed:?}");
    holder.release();
    wait_until("the store to connect again", || {
        store
            .render_metrics()
            .contains("debrief_postgres_reconnects_total 1")
    });
    // Another commit (metadata) must not carry record 2 without record 1.
    store.durable().await.expect("the next commit");
    assert_eq!(
        one(
            &db,
            "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM records WHERE name = 'f'"
        ),
        "0",
        "no record after the failed ones is in the table"
    );
    assert!(
        store.append("f", 3, &[b"more"]).is_err(),
        "the document takes no appends until it is loaded again"
    );
    let loaded = store.load("f").await.expect("load");
    assert_eq!(loaded.updates().expect("decode"), vec![&b"kept"[..]]);
    assert_eq!(loaded.next_seq, 1);
    close(store, flusher);
}

#[tokio::test]
async fn while_the_database_is_gone_probes_and_commits_fail() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("g").await.expect("load");
    store.probe().expect("ready");
    let tree = store.meta_tree("t").expect("tree");
    execute(
        &super::testdb::admin(),
        &format!(
            "DROP DATABASE {} WITH (FORCE)",
            db.url().rsplit('=').next().expect("name")
        ),
    )
    .expect("drop the database under the store");
    wait_until("the probe to fail", || store.probe().is_err());
    assert_eq!(
        store
            .stored_bytes("g")
            .expect("known from the load, no round trip"),
        0
    );
    store.append("g", 0, &[b"lost"]).expect("append");
    let failed = flush(&store, "g").await;
    assert!(matches!(failed, Err(StoreError::Postgres(_))), "{failed:?}");
    tree.put(b"k", b"v").expect("a write is kept in memory");
    assert!(store.durable().await.is_err(), "but it is not durable");
    assert!(store.load("g").await.is_err(), "no document loads");
    close(store, flusher);
}

#[test]
fn an_unreachable_database_is_given_up_after_the_patience() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let refused = PgStore::open(
        &PgSettings {
            shared: false,
            url: format!("host={} user=nobody dbname=none", dir.path().display()),
            patience: Duration::from_millis(600),
            timeout: super::DEFAULT_TIMEOUT,
        },
        &dir.path().join("data"),
        TestOwner::ownership(),
    )
    .map(|_| ())
    .expect_err("nothing listens there");
    assert!(started.elapsed() >= Duration::from_millis(600));
    let line = refused.to_string();
    assert!(
        line.starts_with(&format!(
            "postgres: cannot reach PostgreSQL at {} database none as nobody (tried for 0.6 s): ",
            dir.path().display()
        )),
        "{line}"
    );
    assert!(!line.contains('\n'), "one line: {line}");
    let bad = PgStore::open(
        &PgSettings {
            shared: false,
            url: "postgres://localhost:notaport/debrief".to_owned(),
            patience: Duration::from_secs(5),
            timeout: super::DEFAULT_TIMEOUT,
        },
        &dir.path().join("data"),
        TestOwner::ownership(),
    )
    .map(|_| ())
    .expect_err("does not parse");
    assert!(
        bad.to_string()
            .starts_with("postgres: the connection string does not parse: "),
        "{bad}"
    );
}

#[tokio::test]
async fn a_hung_commit_fails_after_the_timeout_and_the_store_connects_again() {
    let db = TestDb::create();
    let (store, flusher) = open_with(&db, Duration::from_secs(1));
    store.load("h").await.expect("load");
    let tree = store.meta_tree("t").expect("tree");
    // The database stops answering the commit (its row is locked by a session that never ends
    // while the commit waits).
    let holder = Holder::begin(
        &db.url(),
        "SELECT 1 FROM documents WHERE name = 'h' FOR UPDATE",
    );
    store.append("h", 0, &[b"stuck"]).expect("append");
    tree.put(b"k", b"v").expect("put");
    let hung = flush(&store, "h").await;
    assert_eq!(
        hung.map_err(|e| e.to_string()),
        Err(
            "postgres: the database did not answer within 1 s; the connection was dropped and \
             what it was writing may or may not have been stored"
                .to_owned()
        )
    );
    assert!(store.probe().is_err(), "not ready once a commit is overdue");
    holder.release();
    wait_until("the store to connect again", || store.probe().is_ok());
    // The metadata write was re-queued: its outcome was unknown, and now it is stored.
    store.durable().await.expect("committed after reconnecting");
    assert_eq!(one(&db, "SELECT count(*) FROM meta WHERE tree = 't'"), "1");
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 'h'"),
        "0",
        "the record of the hung commit was not written (its owner stopped)"
    );
    close(store, flusher);
}

#[tokio::test]
async fn a_second_store_on_the_same_database_refuses_to_start() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    let second = try_open(&db, super::DEFAULT_TIMEOUT).map(|_| ());
    let line = second.expect_err("the database is in use").to_string();
    assert!(
        line.starts_with("postgres: another Debrief uses this database (PostgreSQL at "),
        "{line}"
    );
    assert!(line.ends_with("); stop it first"), "{line}");
    close(store, flusher);
    let (store, flusher) = open(&db);
    close(store, flusher);
}

#[tokio::test]
async fn a_store_that_cannot_take_the_lock_again_after_a_reconnect_stops_writing() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    store.load("s").await.expect("load");
    store.append("s", 0, &[b"before"]).expect("append");
    flush(&store, "s").await.expect("committed");
    // Another server waits for the database, and takes it while this one's connection is down.
    let url = db.url();
    let other = std::thread::spawn(move || {
        Holder::begin(
            &url,
            &format!("SELECT pg_advisory_lock({})", 0x6465_6272_6965_6602_i64),
        )
    });
    wait_until("the other server to wait for the lock", || {
        one(
            &db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        ) == "1"
    });
    kill_connection(&db, &store);
    let other = other.join().expect("the other server took the lock");
    store.append("s", 1, &[b"after"]).expect("append");
    let refused = flush(&store, "s").await;
    assert!(refused.is_err(), "{refused:?}");
    let started = Instant::now();
    loop {
        let loaded = store.load("s").await;
        if loaded.as_ref().is_err_and(|e| {
            e.to_string()
                == "postgres: another Debrief uses this database; this server stopped writing to \
                    it (restart it once the other one is stopped)"
        }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for the store to give up: {loaded:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(other);
    assert!(store.probe().is_err(), "never ready again");
    store
        .meta_tree("m")
        .map(|_| ())
        .expect_err("no tree is read");
    assert_eq!(
        one(&db, "SELECT count(*) FROM records WHERE name = 's'"),
        "1",
        "nothing more was written"
    );
    close(store, flusher);
}

#[tokio::test]
async fn writes_to_several_trees_applied_together_are_one_commit() {
    let db = TestDb::create();
    let (store, flusher) = open(&db);
    let keys = store.meta_tree("anon_keys").expect("tree");
    let votes = store.meta_tree("votes").expect("tree");
    let mut k = BTreeMap::new();
    k.insert(b"k1".to_vec(), Some(b"key".to_vec()));
    let mut v = BTreeMap::new();
    v.insert(b"v1".to_vec(), Some(b"vote".to_vec()));
    v.insert(b"v0".to_vec(), None);
    super::PgTree::apply_together(vec![(&votes, v), (&keys, k)]);
    assert_eq!(keys.get(b"k1").expect("get").as_deref(), Some(&b"key"[..]));
    assert_eq!(
        votes.get(b"v1").expect("get").as_deref(),
        Some(&b"vote"[..])
    );
    store.durable().await.expect("durable");
    assert_eq!(
        one(
            &db,
            "SELECT count(DISTINCT xmin::text) || ' ' || count(*) FROM meta"
        ),
        "1 2",
        "both trees' rows were written by one transaction"
    );
    close(store, flusher);
}

#[tokio::test]
async fn a_load_waiting_when_a_commit_is_due_is_served_before_it() {
    let db = TestDb::create();
    let (store, flusher) = open_with(&db, Duration::from_secs(120));
    for name in ["w", "x", "v"] {
        store.load(name).await.expect("load");
    }
    // The first commit waits for a lock; meanwhile a second commit (which will wait for
    // another lock) and a load are queued.
    let first_lock = Holder::begin(
        &db.url(),
        "SELECT 1 FROM documents WHERE name = 'w' FOR UPDATE",
    );
    store.append("w", 0, &[b"w"]).expect("append");
    let first = store
        .request_flush(Some(Arc::from("w")))
        .await
        .expect("queued");
    wait_for_lock_wait(&db, &store);
    let second_lock = Holder::begin(
        &db.url(),
        "SELECT 1 FROM documents WHERE name = 'v' FOR UPDATE",
    );
    store.append("v", 0, &[b"v"]).expect("append");
    let second = store
        .request_flush(Some(Arc::from("v")))
        .await
        .expect("queued");
    let (reply, loaded) = tokio::sync::oneshot::channel();
    store
        .calls
        .send(super::Call::Read {
            name: "x".to_owned(),
            reply,
        })
        .expect("queued");
    first_lock.release();
    first.await.expect("answered").expect("committed");
    // The read is answered while the second commit would still wait for its lock.
    let loaded = tokio::time::timeout(Duration::from_secs(60), loaded).await;
    assert!(
        matches!(loaded, Ok(Ok(Ok(_)))),
        "the read was served before the next commit: {loaded:?}"
    );
    second_lock.release();
    second.await.expect("answered").expect("committed");
    close(store, flusher);
}

#[test]
fn a_data_directory_belongs_to_one_backend() {
    let db = TestDb::create();
    let sled_dir = tempfile::tempdir().expect("temp dir");
    let (sled, sled_flusher) =
        crate::storage::sled_store::SledStore::open(sled_dir.path()).expect("sled");
    drop(sled);
    sled_flusher.run();
    let settings = PgSettings {
        shared: false,
        url: db.url(),
        patience: Duration::from_secs(5),
        timeout: super::DEFAULT_TIMEOUT,
    };
    let refused = PgStore::open(&settings, sled_dir.path(), TestOwner::ownership())
        .map(|_| ())
        .expect_err("a sled store is there");
    assert_eq!(
        refused.to_string(),
        format!(
            "postgres: {} holds a sled store: give --postgres a data directory of its own",
            sled_dir.path().display()
        )
    );

    let pg_dir = tempfile::tempdir().expect("temp dir");
    let (store, flusher) =
        PgStore::open(&settings, pg_dir.path(), TestOwner::ownership()).expect("open");
    close(store, flusher);
    let refused = crate::storage::sled_store::SledStore::open(pg_dir.path())
        .map(|_| ())
        .expect_err("marked for PostgreSQL");
    let line = format!(
        "postgres: {} is the data directory of a server that keeps its data in PostgreSQL: start \
         it with --postgres, and back it up with PostgreSQL's tools",
        pg_dir.path().display()
    );
    assert_eq!(refused.to_string(), line);
    assert!(
        !pg_dir.path().join("conf").exists(),
        "sled created nothing there"
    );
}

fn open_shared(db: &TestDb, dir: &std::path::Path) -> (PgStore, PgFlusher) {
    PgStore::open(
        &PgSettings {
            shared: true,
            url: db.url(),
            patience: Duration::from_secs(5),
            timeout: super::DEFAULT_TIMEOUT,
        },
        dir,
        TestOwner::ownership(),
    )
    .expect("open a shared store")
}

/// In a shared database only the holder of the review role writes metadata: a store without
/// it has its writes refused; one that took it reads every tree again (it sees what the holder
/// before it committed); and one whose role another node took stops writing for good.
#[tokio::test]
async fn metadata_is_written_only_by_the_holder_of_the_review_role() {
    let db = TestDb::create();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, a_flusher) = open_shared(&db, &dir.path().join("a"));
    let (b, b_flusher) = open_shared(&db, &dir.path().join("b"));
    let b_tree = b.meta_tree("t").expect("tree");
    assert!(!a.serves_reviews() && !b.serves_reviews());

    let a_tree = a.meta_tree("t").expect("tree");
    a_tree.put(b"k", b"before the role").expect("put");
    assert_eq!(
        a.durable().await.expect_err("refused").to_string(),
        "postgres: this node does not serve reviews, so it writes no review metadata"
    );
    assert_eq!(one(&db, "SELECT count(*) FROM meta"), "0");

    assert!(a.take_reviews().await.expect("take"));
    assert!(a.serves_reviews());
    a_tree.put(b"k", b"by the holder").expect("put");
    a.durable().await.expect("committed");
    assert_eq!(one(&db, "SELECT count(*) FROM meta"), "1");

    // B takes the role (this test's owner always wins a claim, as after A's lease lapsed) and
    // reads the tree again.
    assert_eq!(b_tree.get(b"k").expect("get"), None, "read before A wrote");
    assert!(b.take_reviews().await.expect("take"));
    assert_eq!(
        b_tree.get(b"k").expect("get").as_deref(),
        Some(&b"by the holder"[..])
    );

    // A's next write of metadata fails the role's fence: it stops writing for good.
    a_tree.put(b"k", b"after losing the role").expect("put");
    let refused = a.durable().await.expect_err("fenced").to_string();
    assert_eq!(
        refused,
        "postgres: this node no longer holds the review role (document \"#reviews\" is fenced: \
         its owner or epoch changed since it was loaded)"
    );
    assert!(!a.serves_reviews());
    assert_eq!(a.stopped().map(|e| e.to_string()), Some(refused));
    b_tree.put(b"k2", b"by the new holder").expect("put");
    b.durable().await.expect("committed");
    assert_eq!(
        one(
            &db,
            "SELECT convert_from(value, 'UTF8') FROM meta WHERE key = 'k'::bytea"
        ),
        "by the holder"
    );
    close(a, a_flusher);
    close(b, b_flusher);
}
