//! The PostgreSQL store claiming through a node (`member.rs`), against a real PostgreSQL: a load
//! whose group another node holds waits on a timer (no thread held) while the store serves other
//! loads, fails naming the holder once the lease could have lapsed and a renewal more, and takes
//! the whole group once it is handed over; a claim stuck on a row lock holds up no commit; and
//! the store hears at once when its node is fenced.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::ClusterMetrics;
use super::node::Node;
use super::ownership::{Claim, Ownership};
use super::testdb::TestDb;
use super::Settings;
use crate::storage::postgres::owner::Ownership as StoreOwnership;
use crate::storage::postgres::{PgFlusher, PgSettings, PgStore, DEFAULT_TIMEOUT};
use crate::storage::store::{Store, StoreError};
use futures_util::FutureExt;

/// The longest any step waits for something that should happen much sooner.
const PATIENCE: Duration = Duration::from_secs(15);

async fn register(db: &TestDb, lease_ms: u64, renew_ms: u64) -> Node {
    let settings = Settings::new(
        Duration::from_millis(lease_ms),
        Duration::from_millis(renew_ms),
    )
    .expect("valid settings");
    Node::register(
        db.config(),
        "",
        settings,
        Arc::new(ClusterMetrics::default()),
    )
    .await
    .expect("register a node")
}

/// A review's three documents together, as the server's claim group does.
fn review_group(name: &str) -> Vec<String> {
    match name.strip_prefix("review.r.") {
        Some(_) => ["discussion", "notes", "report"]
            .map(|kind| format!("review.r.{kind}"))
            .to_vec(),
        None => vec![name.to_owned()],
    }
}

/// Runs a blocking store call on a thread of its own, bounded by [`PATIENCE`].
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(f))
        .await
        .expect("the store answered in time")
        .expect("the thread ran")
}

/// A PostgreSQL store on `db` writing for `node` (a review's documents claimed together), and
/// its data directory.
async fn open_store(db: &TestDb, node: &Node) -> (PgStore, PgFlusher, tempfile::TempDir) {
    let ownership = StoreOwnership {
        owner: Arc::new(node.member()),
        group: review_group,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = PgSettings {
        shared: false,
        url: db.url(),
        patience: Duration::from_secs(5),
        timeout: DEFAULT_TIMEOUT,
    };
    let path = dir.path().to_path_buf();
    let (store, flusher) = blocking(move || PgStore::open(&settings, &path, ownership))
        .await
        .expect("open the store");
    (store, flusher, dir)
}

/// Waits (polling, bounded by [`PATIENCE`]) until `cond` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_a_held_group_waits_aside_then_fails_naming_the_holder() {
    let db = TestDb::create().await;
    // The other node keeps its lease for the whole test.
    let holder = register(&db, 10_000, 250).await;
    let Claim::Won(held) = holder.claim("review.r.notes").await.expect("claim") else {
        panic!("the first claim wins");
    };
    // This node waits at most its lease and one renewal: 2.1 s.
    let me = register(&db, 2_000, 100).await;
    let (store, flusher, _dir) = open_store(&db, &me).await;

    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.load("review.r.report").await }
    });
    // Once its claim found the group held, that load is waiting; another document is loaded
    // meanwhile: the database thread is not held.
    let counted = tokio::time::Instant::now() + PATIENCE;
    while ClusterMetrics::read(&me.metrics().claims_held) < 1 {
        assert!(
            tokio::time::Instant::now() < counted,
            "the held load's claim was not counted as held within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let free = tokio::time::timeout(PATIENCE, store.load("free"))
        .await
        .expect("the free load was served in time");
    assert!(free.is_ok(), "{free:?}");
    assert!(
        !waiting.is_finished(),
        "the held load was still waiting when the free one was served"
    );
    let refused = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the held load gave up in time")
        .expect("the task ran");
    let Err(StoreError::Held { waited, .. }) = &refused else {
        panic!("the held load failed as held: {refused:?}");
    };
    assert!(
        *waited >= Duration::from_millis(2_100),
        "it waited its whole patience: {waited:?}"
    );
    assert_eq!(
        refused.as_ref().map(|_| ()).expect_err("held").to_string(),
        format!(
            "document \"review.r.notes\" is held by node {}, whose lease stayed live for the {} \
             ms this node waited",
            holder.id(),
            waited.as_millis()
        )
    );
    assert!(ClusterMetrics::read(&me.metrics().claims_held) >= 2);

    // Handed over: the next load takes the whole group, and the node owns all three.
    assert!(holder
        .release("review.r.notes", held.epoch)
        .await
        .expect("release"));
    tokio::time::timeout(PATIENCE, store.load("review.r.report"))
        .await
        .expect("answered in time")
        .expect("the handed-over group is taken");
    for kind in ["discussion", "notes", "report"] {
        let name = format!("review.r.{kind}");
        match me.owner_of(&name).await.expect("look up") {
            Ownership::Live { node, .. } => assert_eq!(&node, me.id().as_str(), "{name}"),
            other => panic!("{name} is this node's: {other:?}"),
        }
    }
    assert_eq!(ClusterMetrics::read(&me.metrics().owned_documents), 4);
    drop(store);
    blocking(move || flusher.run()).await;
}

/// Review finding 4: a claim runs on the store's claim session, not on its commit connection.
/// While another session holds a document's row for update (as a paused node's claim or commit
/// would), a load of that document waits, and a commit of a document already loaded completes
/// meanwhile. The claim gives up on the lock after a quarter of the lease and tries again; the
/// load fails saying so once its patience is spent, and succeeds once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_stuck_on_a_row_lock_holds_up_no_commit() {
    let db = TestDb::create().await;
    // Claims give up on a lock after 500 ms; loads after 2.1 s.
    let me = register(&db, 2_000, 100).await;
    let (store, flusher, _dir) = open_store(&db, &me).await;
    store.load("open").await.expect("load the open document");

    let mut other = db.client().await;
    other
        .batch_execute("INSERT INTO documents (name, owner, epoch) VALUES ('locked', NULL, 0)")
        .await
        .expect("a row for the locked document");
    let locking = other.transaction().await.expect("begin");
    locking
        .execute(
            "SELECT 1 FROM documents WHERE name = 'locked' FOR UPDATE",
            &[],
        )
        .await
        .expect("lock the row");
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.load("locked").await }
    });
    let watcher = db.client().await;
    until("the claim to wait for the row lock", || async {
        let row = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND application_name LIKE 'debrief % claims'",
                &[],
            )
            .await
            .expect("look at the sessions");
        row.get::<_, i64>(0) == 1
    })
    .await;

    store
        .append("open", 0, &[b"written while a claim waits"])
        .expect("append");
    let committed = tokio::time::timeout(
        PATIENCE,
        store
            .request_flush(Some(Arc::from("open")))
            .await
            .expect("queued"),
    )
    .await
    .expect("the commit was not held up by the waiting claim")
    .expect("answered");
    assert!(committed.is_ok(), "{committed:?}");
    assert!(
        !waiting.is_finished(),
        "the load of the locked document was still waiting when the commit was done"
    );
    let stored = watcher
        .query_one("SELECT count(*) FROM records WHERE name = 'open'", &[])
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(stored, 1, "the commit is in the database");

    let refused = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the load gave up in time")
        .expect("the task ran");
    let Err(StoreError::Locked { waited, .. }) = &refused else {
        panic!("the load failed as locked: {refused:?}");
    };
    assert!(
        *waited >= Duration::from_millis(2_100),
        "it waited its whole patience: {waited:?}"
    );
    assert_eq!(
        refused
            .as_ref()
            .map(|_| ())
            .expect_err("locked")
            .to_string(),
        format!(
            "document \"locked\" stayed locked by another database session for the {} ms this \
             node waited",
            waited.as_millis()
        )
    );

    locking.rollback().await.expect("release the lock");
    tokio::time::timeout(PATIENCE, store.load("locked"))
        .await
        .expect("answered in time")
        .expect("the document loads once its row is free");
    drop(store);
    blocking(move || flusher.run()).await;
}

/// Review finding 3: a load waiting for another node's lease waits on a timer, not on a blocking
/// thread. With twice as many such loads as the runtime has blocking threads, a blocking task
/// (reading a sled document or building any document runs on one) still runs at once, and
/// another document loads, while every held load is still waiting.
#[test]
fn loads_waiting_for_a_held_group_hold_no_blocking_thread() {
    const BLOCKING_THREADS: usize = 2;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let db = TestDb::create().await;
        let holder = register(&db, 10_000, 250).await;
        let names: Vec<String> = (0..2 * BLOCKING_THREADS)
            .map(|i| format!("held.{i}"))
            .collect();
        for name in &names {
            assert!(
                matches!(holder.claim(name).await, Ok(Claim::Won(_))),
                "the holder takes {name}"
            );
        }
        let me = register(&db, 2_000, 100).await;
        // Opened as the server opens it: the documents load through `Store`.
        let ownership = StoreOwnership {
            owner: Arc::new(me.member()),
            group: review_group,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = PgSettings {
            shared: false,
            url: db.url(),
            patience: Duration::from_secs(5),
            timeout: DEFAULT_TIMEOUT,
        };
        let path = dir.path().to_path_buf();
        let opened = blocking(move || Store::open_postgres(&settings, &path, ownership))
            .await
            .expect("open the store");
        let (store, flusher) = (opened.store, opened.flusher);
        let waiting: Vec<_> = names
            .iter()
            .map(|name| {
                let (store, name) = (store.clone(), Arc::<str>::from(name.as_str()));
                tokio::spawn(async move { store.load(&name).await })
            })
            .collect();
        until("every held load to find its group held", || async {
            ClusterMetrics::read(&me.metrics().claims_held) >= names.len() as u64
        })
        .await;

        tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(|| ()))
            .await
            .expect("a blocking thread was free")
            .expect("the blocking task ran");
        let free = tokio::time::timeout(PATIENCE, store.load(&Arc::from("free")))
            .await
            .expect("the free load was served in time");
        assert!(free.is_ok(), "{free:?}");
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "every held load was still waiting meanwhile"
        );
        for load in waiting {
            let refused = tokio::time::timeout(PATIENCE, load)
                .await
                .expect("the held load gave up in time")
                .expect("the task ran");
            assert!(
                matches!(refused, Err(StoreError::Held { .. })),
                "{refused:?}"
            );
        }
        drop(store);
        blocking(move || flusher.run()).await;
    });
}

/// The store hears at once that its node is fenced (its documents close their clients then,
/// without waiting for a write to be refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_hears_when_its_node_is_fenced() {
    let db = TestDb::create().await;
    let me = register(&db, 2_000, 100).await;
    let (store, flusher, _dir) = open_store(&db, &me).await;
    let fenced = store.until_fenced();
    db.client()
        .await
        .execute("UPDATE nodes SET lease_until = now() - interval '1 s'", &[])
        .await
        .expect("end the lease");
    let why = tokio::time::timeout(PATIENCE, fenced)
        .await
        .expect("heard within the patience");
    assert_eq!(why, "the database says the lease has ended");
    assert!(
        store.until_fenced().now_or_never().is_some(),
        "a document that asks later hears at once"
    );
    drop(store);
    blocking(move || flusher.run()).await;
}
