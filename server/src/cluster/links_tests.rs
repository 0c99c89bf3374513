//! The registry of dialled links ([`Links`]) against a real PostgreSQL (`testdb.rs`), with real
//! links on loopback: nodes registered in `nodes`, one dialling another by its id. Every wait is
//! on an event with a timeout; nodes have leases of seconds, so a loaded machine fences none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::{ClusterSecret, LinkSettings, SubStream};
use super::links::{Links, LinksError, LinksSetup, StreamHandler};
use super::metrics::ClusterMetrics;
use super::node::Node;
use super::testdb::TestDb;
use super::{NodeId, Settings};

/// The longest any test waits for something that should happen much sooner.
const PATIENCE: Duration = Duration::from_secs(15);

/// A lease no renewal on a loaded machine misses.
fn steady() -> Settings {
    Settings::new(Duration::from_secs(10), Duration::from_millis(250)).expect("valid settings")
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(t) => t,
        Err(_) => panic!("{what} did not happen within {PATIENCE:?}"),
    }
}

/// Waits until `check` holds, looking every few milliseconds.
async fn until(what: &str, check: impl Fn() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A node registered in `db` at `address`, and its links with a handler that hands every
/// sub-stream a peer opens to `handled`.
struct Member {
    node: Node,
    links: Arc<Links>,
    metrics: Arc<ClusterMetrics>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Member {
    async fn join(db: &TestDb, address: &str, handled: Option<mpsc::Sender<SubStream>>) -> Member {
        let metrics = Arc::new(ClusterMetrics::default());
        let node = Node::register(db.config(), address, steady(), metrics.clone())
            .await
            .expect("register a node");
        let handler: StreamHandler = Arc::new(move |stream| {
            if let Some(handled) = &handled {
                let _ = handled.try_send(stream);
            }
        });
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let links = Links::open(LinksSetup {
            id: node.id().clone(),
            secret: &ClusterSecret::new(vec![7; 32]).expect("long enough"),
            link: LinkSettings {
                handshake_limit: Duration::from_secs(5),
                silent_after: Duration::from_secs(5),
                ..LinkSettings::default()
            },
            config: db.config(),
            lease: steady().lease(),
            handler,
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        })
        .await
        .expect("the node's links");
        Member {
            node,
            links,
            metrics,
            tracker,
            shutdown,
        }
    }

    fn live_links(&self) -> u64 {
        ClusterMetrics::read(&self.metrics.links)
    }

    /// Closes the links and waits for every task of theirs.
    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        within("the links' tasks to end", self.tracker.wait()).await;
    }
}

/// A node that accepts links on a listener of its own, counting the connections made to it.
async fn accepting(db: &TestDb) -> (Member, Arc<AtomicUsize>, mpsc::Receiver<SubStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (handled, streams) = mpsc::channel(16);
    let member = Member::join(db, &addr.to_string(), Some(handled)).await;
    let connections = Arc::new(AtomicUsize::new(0));
    let (links, counted, stop) = (
        member.links.clone(),
        connections.clone(),
        member.shutdown.clone(),
    );
    member.tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, from)) = accepted else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            links.accept(tcp, from);
        }
    });
    (member, connections, streams)
}

#[tokio::test]
async fn concurrent_callers_share_one_dial_and_a_closed_link_is_dialled_again() {
    let db = TestDb::create().await;
    let (b, connections, mut streams) = accepting(&db).await;
    let a = Member::join(&db, "", None).await;
    let b_id = b.node.id().clone();

    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (links, id) = (a.links.clone(), b_id.clone());
        callers.spawn(async move { links.get(&id).await });
    }
    let mut got = Vec::new();
    while let Some(joined) = within("the callers", callers.join_next()).await {
        got.push(joined.expect("caller").expect("a link to b"));
    }
    assert!(
        got.iter().all(|l| Arc::ptr_eq(l, &got[0])),
        "every caller has the same link"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1, "b was dialled once");
    assert_eq!(got[0].peer(), &b_id);
    assert_eq!(a.live_links(), 1);
    until("b counts the link it accepted", || b.live_links() == 1).await;

    // A sub-stream a opens reaches the handler b was given.
    let _opened = got[0].open("review.r1.report").await.expect("open");
    let handled = within("b's handler", streams.recv())
        .await
        .expect("a sub-stream");
    assert_eq!(handled.document(), "review.r1.report");

    // A closed link is forgotten; the next caller dials again and gets a new one.
    let first = got.remove(0);
    got.clear();
    first.close();
    until("a forgets the closed link", || a.live_links() == 0).await;
    until("b sees the link closed", || b.live_links() == 0).await;
    let again = within("a second dial", a.links.get(&b_id))
        .await
        .expect("a new link to b");
    assert!(!Arc::ptr_eq(&again, &first), "a new link");
    assert!(!again.is_closed());
    assert_eq!(connections.load(Ordering::SeqCst), 2, "b was dialled again");
    assert_eq!(a.live_links(), 1);
    let same = a.links.get(&b_id).await.expect("the same link");
    assert!(
        Arc::ptr_eq(&again, &same),
        "a live link is not dialled again"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    drop((again, same, first));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_lapsed_and_unlistening_nodes_are_errors_naming_them() {
    let db = TestDb::create().await;
    let a = Member::join(&db, "", None).await;

    let stranger = NodeId::random();
    let unknown = a.links.get(&stranger).await.expect_err("no such node");
    assert_eq!(unknown, LinksError::Unknown(stranger.clone()));
    assert_eq!(
        unknown.to_string(),
        format!("node {stranger} is not registered in the cluster")
    );

    let silent = Member::join(&db, "", None).await;
    let id = silent.node.id().clone();
    assert_eq!(
        a.links.get(&id).await.expect_err("no address").to_string(),
        format!("node {id} registered no link address (it does not listen for links)")
    );

    // A node whose lease ended is not dialled, whatever address it registered.
    let (lapsed, connections, _streams) = accepting(&db).await;
    let id = lapsed.node.id().clone();
    db.client()
        .await
        .execute(
            "UPDATE nodes SET lease_until = now() - interval '1 s' WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .expect("end the lease");
    assert_eq!(
        a.links.get(&id).await.expect_err("lapsed").to_string(),
        format!("node {id} has no live lease (it stopped, or lost its lease)")
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing was dialled");

    // Closed links refuse every caller.
    a.links.close();
    assert_eq!(
        a.links.get(&id).await.expect_err("closed").to_string(),
        "this node's links are closed"
    );
    a.stop().await;
    silent.stop().await;
    lapsed.stop().await;
}
