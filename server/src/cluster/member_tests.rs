//! The PostgreSQL store claiming through a node (`member.rs`), against a real PostgreSQL: a load
//! whose group another node holds waits on its own thread while the store serves other loads,
//! fails naming the holder once the lease could have lapsed and a renewal more, and takes the
//! whole group once it is handed over.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::ClusterMetrics;
use super::node::Node;
use super::ownership::{Claim, Ownership};
use super::testdb::TestDb;
use super::Settings;
use crate::storage::postgres::owner::Ownership as StoreOwnership;
use crate::storage::postgres::{PgSettings, PgStore, DEFAULT_TIMEOUT};
use crate::storage::store::StoreError;

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
    let ownership = StoreOwnership {
        owner: Arc::new(me.member()),
        group: review_group,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = PgSettings {
        url: db.url(),
        patience: Duration::from_secs(5),
        timeout: DEFAULT_TIMEOUT,
    };
    let path = dir.path().to_path_buf();
    let (store, flusher) = blocking(move || PgStore::open(&settings, &path, ownership))
        .await
        .expect("open the store");

    let waiting = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.load("review.r.report")
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
    let free = blocking({
        let store = store.clone();
        move || store.load("free")
    })
    .await;
    assert!(free.is_ok(), "{free:?}");
    assert!(
        !waiting.is_finished(),
        "the held load was still waiting when the free one was served"
    );
    let refused = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the held load gave up in time")
        .expect("the thread ran");
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
    blocking({
        let store = store.clone();
        move || store.load("review.r.report")
    })
    .await
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
