//! A server with `--postgres` is a cluster node (issue 18, `docs/cluster.md`): its lease settings
//! are checked at start-up, `/metrics` shows its lease and what it owns, a review's documents
//! are claimed together, a lost lease stops every write, closes every open document's clients at
//! once and makes it not ready, a `kill -9`'d node's documents are taken only once its lease
//! lapsed, SIGTERM hands them over at once, and SIGTERM during a load waiting for another node's
//! lease stops the server at once.

use std::time::{Duration, Instant};

use debrief_tests::api::Review;
use debrief_tests::postgres::{OwnPostgres, TestDb};
use debrief_tests::server::{refused_with, run_binary};
use debrief_tests::{client, within, within_for, ChildServer, Client, TestServer};

/// Runs the binary with `args` after `--postgres URL`, expecting it to refuse to start.
async fn refused(url: &str, args: &[&str]) -> (Option<i32>, String) {
    refused_with(&[&["--postgres", url], args].concat()).await
}

/// A server on `db` whose node renews its 3 s lease every 200 ms (a lost lease is seen fast).
async fn renewing_often(db: &TestDb) -> TestServer {
    TestServer::with_postgres_lease(
        &db.url(),
        Duration::from_secs(3),
        Duration::from_millis(200),
    )
    .await
}

/// Bad lease settings stop the server before it serves, with the cluster's own words.
#[tokio::test]
async fn bad_lease_settings_are_refused_at_start_up() {
    let db = TestDb::create().await;
    let url = db.url();
    assert_eq!(
        refused(&url, &["--cluster-lease-ms", "50"]).await,
        (
            Some(2),
            "error: the lease must be at least 100 ms, not 50 ms\n".to_owned()
        )
    );
    assert_eq!(
        refused(
            &url,
            &["--cluster-lease-ms", "1000", "--cluster-renew-ms", "1000"]
        )
        .await,
        (
            Some(2),
            "error: the lease must be renewed more often than it lasts: every 1000 ms is not \
             less than the lease of 1000 ms\n"
                .to_owned()
        )
    );
    assert_eq!(
        refused(&url, &["--cluster-renew-ms", "0"]).await,
        (
            Some(2),
            "error: the renewal interval must be more than zero\n".to_owned()
        )
    );
    assert_eq!(
        refused(&url, &["--cluster-advertise", "node-a"]).await,
        (
            Some(2),
            "error: --cluster-advertise: \"node-a\" is not HOST:PORT (a host name or address, \
             a colon and a port from 1 to 65535)\n"
                .to_owned()
        )
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_string_lossy().into_owned();
    let without = run_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--cluster-lease-ms",
        "3000",
    ])
    .await;
    assert_eq!(
        (without.code, without.stderr.as_str()),
        (
            Some(2),
            "error: --cluster-lease-ms, --cluster-renew-ms and --cluster-advertise need --postgres\n"
        )
    );
    assert_eq!(
        db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'nodes'")
            .await,
        vec!["0"],
        "nothing was registered"
    );
}

/// `/metrics` shows the node's lease and counters, and the documents it owns: a plain document
/// alone, a review's three together as soon as one of them is loaded.
#[tokio::test]
async fn metrics_show_the_lease_and_the_documents_owned() {
    let db = TestDb::create().await;
    let server = renewing_often(&db).await;
    let mut writer = Client::connect(&server.ws_url("plain")).await;
    writer.insert("t", 0, "Impact: none");
    writer.round_trip().await;
    assert_eq!(server.metric("debrief_cluster_lease_live").await, 1);
    assert_eq!(server.metric("debrief_cluster_owned_documents").await, 1);
    server
        .wait_metric("debrief_cluster_lease_renewals_total", |n| n >= 2)
        .await;
    for name in [
        "debrief_cluster_renewals_failed_total",
        "debrief_cluster_takeovers_total",
        "debrief_cluster_claims_held_total",
        "debrief_cluster_handed_over_total",
        "debrief_cluster_deadlocks_total",
    ] {
        assert_eq!(server.metric(name).await, 0, "{name}");
    }

    let review = Review::create(server.addr, "Queue outage").await;
    let mut report = Client::connect_collab(
        &server.collab_url(),
        &review.doc("report"),
        &review.sessions["author"],
    )
    .await;
    report.wait_synced().await;
    let owned = db
        .query(
            "SELECT d.name FROM documents d JOIN nodes n ON n.id = d.owner \
             WHERE d.name LIKE 'review.%' ORDER BY d.name",
        )
        .await;
    assert_eq!(
        owned,
        vec![
            review.doc("discussion"),
            review.doc("notes"),
            review.doc("report")
        ],
        "the review's three documents belong to this node"
    );
    assert_eq!(server.metric("debrief_cluster_owned_documents").await, 4);
}

/// A node whose lease the database says has ended is fenced: its clients are closed with
/// `storage_error` and nothing it was sent after that reaches the database.
/// The server then registers again as a new node (a database outage longer than a lease ends
/// the same way) and serves again: a client that reconnects has what was committed, and its
/// writes are committed under the new node.
#[tokio::test]
async fn a_node_whose_lease_expired_in_the_database_stops_writing_and_registers_again() {
    let db = TestDb::create().await;
    let server = renewing_often(&db).await;
    let mut writer = Client::connect_collab(&server.collab_url(), "fenced-node", "any").await;
    writer.wait_synced().await;
    let before = writer.acks();
    writer.insert("t", 0, "committed. ");
    writer.wait_acks(before + 1).await;
    let (status, _) = client::http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        server.metric("debrief_cluster_registrations_total").await,
        1
    );
    let first = db.query("SELECT id FROM nodes").await;
    assert_eq!(first.len(), 1, "one node registered: {first:?}");
    let stored = db
        .query("SELECT count(*) FROM records WHERE name = 'fenced-node'")
        .await;

    db.query("UPDATE nodes SET lease_until = now() - interval '1 s' RETURNING id")
        .await;
    // The node sees its lease end at its next renewal, and registers again at once.
    within("the server to register again", async {
        while server.metric("debrief_cluster_registrations_total").await < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let nodes = db
        .query("SELECT id FROM nodes WHERE lease_until > now() ORDER BY id")
        .await;
    assert_eq!(nodes.len(), 1, "one live node: {nodes:?}");
    assert_ne!(nodes, first, "it registered under a new id");

    // The old node's document was let go: the open client is closed so that it reconnects (at
    // once, see the next test), and what it sends is not committed.
    writer.insert("t", 11, "sent to the old node");
    let closed = writer.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1011, "storage_error")
    );
    assert_eq!(
        db.query("SELECT count(*) FROM records WHERE name = 'fenced-node'")
            .await,
        stored,
        "nothing sent to the fenced node reached the database"
    );

    // The new node serves: ready, the document is loaded again, and new writes are committed.
    within("/readyz to answer ready", async {
        while client::http_get(server.addr, "/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut again = Client::connect_collab(&server.collab_url(), "fenced-node", "any").await;
    again.wait_text("t", "committed. ").await;
    let before = again.acks();
    again.insert("t", 11, "written to the new node");
    again.wait_acks(before + 1).await;
    assert_eq!(
        db.query("SELECT owner FROM documents WHERE name = 'fenced-node'")
            .await,
        nodes,
        "the document is the new node's"
    );
    let mut reader = Client::connect(&server.ws_url("fenced-node")).await;
    reader
        .wait_text("t", "committed. written to the new node")
        .await;
}

/// An open document lets its clients go as soon as the node is fenced, not at their next write:
/// a client that only reads is closed with `storage_error` within a lease of the lease ending in
/// the database, and nothing is written for it.
#[tokio::test]
async fn a_reading_client_is_closed_as_soon_as_the_node_is_fenced() {
    let db = TestDb::create().await;
    let server = renewing_often(&db).await;
    let mut writer = Client::connect_collab(&server.collab_url(), "read-only", "any").await;
    writer.wait_synced().await;
    writer.round_trip().await;
    let before = writer.acks();
    writer.insert("t", 0, "Timeline: 09:14 alert");
    writer.wait_acks(before + 1).await;
    writer.close().await;
    let mut reader = Client::connect(&server.ws_url("read-only")).await;
    reader.wait_text("t", "Timeline: 09:14 alert").await;
    let stored = db
        .query("SELECT count(*) FROM records WHERE name = 'read-only'")
        .await;

    let lease = Duration::from_secs(3);
    db.query("UPDATE nodes SET lease_until = now() - interval '1 s' RETURNING id")
        .await;
    let ended = Instant::now();
    let closed = within_for(lease, "the reader to be closed", reader.wait_closed()).await;
    println!(
        "a reading client was closed {} ms after its node's lease ended (renewals every 200 ms)",
        ended.elapsed().as_millis()
    );
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1011, "storage_error")
    );
    assert_eq!(
        db.query("SELECT count(*) FROM records WHERE name = 'read-only'")
            .await,
        stored,
        "nothing was written for the reader"
    );
}

/// The flags of a child server on `url` with a lease of `lease_ms`, renewed every `renew_ms`.
fn node_args<'a>(url: &'a str, lease_ms: &'a str, renew_ms: &'a str) -> Vec<&'a str> {
    vec![
        "--open-access",
        "--postgres",
        url,
        "--cluster-lease-ms",
        lease_ms,
        "--cluster-renew-ms",
        renew_ms,
    ]
}

/// Writes and has acknowledged (committed) a line to `doc` on `server`.
async fn write_acknowledged(server: &ChildServer, doc: &str, text: &str) -> Client {
    let mut writer = Client::connect_collab(&server.collab_url(), doc, "any").await;
    writer.wait_synced().await;
    // The acknowledgement of this update, not of the client's first sync answer: that one may
    // arrive after the synced answer, but is in once a later question is answered.
    writer.round_trip().await;
    let before = writer.acks();
    writer.insert("t", 0, text);
    writer.wait_acks(before + 1).await;
    writer
}

/// `kill -9` of a node with a 2 s lease: a second node on the same database serves the
/// document only once the first's lease lapsed (it waits for it), with everything acknowledged.
#[tokio::test]
async fn a_killed_nodes_documents_are_served_after_its_lease_lapsed() {
    let db = TestDb::create().await;
    let url = db.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let lease = Duration::from_secs(2);
    let first = ChildServer::start_with(&data, &node_args(&url, "2000", "200"), None).await;
    let writer = write_acknowledged(&first, "crashed", "Impact: 40 minutes").await;
    let owner = db
        .query("SELECT owner FROM documents WHERE name = 'crashed'")
        .await;
    first.kill9().await;
    let killed = Instant::now();
    drop(writer);
    // What was left of the killed node's lease, by the database's clock, when it was killed (or
    // a little later): the second node must not serve its document before that has passed.
    let left = db
        .query(&format!(
            "SELECT greatest(0, floor(extract(epoch FROM lease_until - clock_timestamp()) * 1000)) \
             ::bigint FROM nodes WHERE id = '{}'",
            owner[0]
        ))
        .await;
    let left = Duration::from_millis(left[0].parse().expect("milliseconds"));

    let second = ChildServer::start_with(&data, &node_args(&url, "2000", "200"), None).await;
    let mut reader = Client::connect_collab(&second.collab_url(), "crashed", "any").await;
    within_for(
        4 * lease + debrief_tests::WAIT,
        "the document to be served",
        reader.wait_synced(),
    )
    .await;
    let served = killed.elapsed();
    println!(
        "a killed node's document was served {} ms after kill -9 (lease {} ms, {} ms of it left)",
        served.as_millis(),
        lease.as_millis(),
        left.as_millis()
    );
    // Everything acknowledged is there (the synced answer may come before the content).
    reader.wait_text("t", "Impact: 40 minutes").await;
    // The lease was read after the kill: it ended no sooner than `left` after it, whatever the
    // load of the machine (a renewal late under load only makes `left` smaller).
    assert!(
        left > Duration::ZERO && left <= lease,
        "the killed node's lease had {left:?} left"
    );
    assert!(
        served >= left,
        "served {served:?} after the kill, before the lease lapsed ({left:?} after it)"
    );
    let took = db
        .query("SELECT owner FROM documents WHERE name = 'crashed'")
        .await;
    assert_ne!(took, owner, "the second node owns it now");
    assert_eq!(
        second.metric("debrief_cluster_takeovers_total").await,
        1,
        "taken from a lapsed node"
    );
    let held = second.metric("debrief_cluster_claims_held_total").await;
    assert!(
        held >= 1,
        "the claim found the first node's lease live and waited (claims held: {held})"
    );
    second.kill9().await;
}

/// SIGTERM of a node with a 30 s lease hands its documents over: a second node serves them
/// within a small fraction of the lease, with everything acknowledged.
#[tokio::test]
async fn a_terminated_node_hands_its_documents_over() {
    let db = TestDb::create().await;
    let url = db.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let lease = Duration::from_secs(30);
    let first = ChildServer::start_with(&data, &node_args(&url, "30000", "1000"), None).await;
    let mut writer = write_acknowledged(&first, "handed", "Detection: 3 minutes").await;
    let stopping = Instant::now();
    let status = first.terminate().await;
    assert!(status.success(), "{status:?}");
    writer.wait_closed().await;
    assert_eq!(
        db.query("SELECT count(*) FROM documents WHERE owner IS NOT NULL")
            .await,
        vec!["0"],
        "every document was handed over"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM nodes").await,
        vec!["0"],
        "the node left"
    );

    let second = ChildServer::start_with(&data, &node_args(&url, "30000", "1000"), None).await;
    let mut reader = Client::connect_collab(&second.collab_url(), "handed", "any").await;
    within("the document to be served", reader.wait_synced()).await;
    let served = stopping.elapsed();
    println!(
        "a handed-over document was served {} ms after SIGTERM (lease {} ms)",
        served.as_millis(),
        lease.as_millis()
    );
    // Everything acknowledged is there (the synced answer may come before the content).
    reader.wait_text("t", "Detection: 3 minutes").await;
    assert!(
        served < lease / 3,
        "served {served:?} after SIGTERM: the lease was waited for"
    );
    assert_eq!(
        second.metric("debrief_cluster_claims_held_total").await,
        0,
        "nothing was held"
    );
    second.kill9().await;
}

/// The database stops answering for longer than the lease (its processes are frozen, as in a
/// hung host or a partition): the node misses its renewals and is fenced, and `/readyz` says so.
/// Once the database answers again the server registers as a new node by itself. A client of a
/// document open during the outage has its next write refused and is closed, so it reconnects;
/// then what was committed is served and new writes are committed.
#[tokio::test]
async fn a_node_fenced_by_a_database_outage_registers_again_when_it_is_back() {
    let pg = tokio::task::spawn_blocking(OwnPostgres::start)
        .await
        .expect("start PostgreSQL");
    pg.execute("postgres", "CREATE DATABASE outage").await;
    let url = pg.url("outage");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let server = ChildServer::start_with(
        &dir.path().join("data"),
        &node_args(&url, "1000", "200"),
        Some(&log),
    )
    .await;
    let mut writer = Client::connect_collab(&server.collab_url(), "outage", "any").await;
    writer.wait_synced().await;
    let before = writer.acks();
    writer.insert("t", 0, "before the outage. ");
    writer.wait_acks(before + 1).await;

    pg.freeze();
    let body = within("/readyz to say the node is fenced", async {
        loop {
            let (status, body) = client::http_get(server.addr, "/readyz").await;
            if status == 503 && body.contains("\"node_fenced\"") {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        body.contains("no lease renewal succeeded before the lease ended"),
        "{body}"
    );
    pg.thaw();

    within("the server to register again", async {
        while server.metric("debrief_cluster_registrations_total").await < 2
            || client::http_get(server.addr, "/readyz").await.0 != 200
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The document open during the outage was let go with the old node: the client's next
    // write is refused and the client closed, so that it reconnects.
    writer.insert("t", 19, "sent during the outage");
    let closed = writer.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1011, "storage_error")
    );
    let mut again = Client::connect_collab(&server.collab_url(), "outage", "any").await;
    again.wait_text("t", "before the outage. ").await;
    // Acknowledgements from here on are the insert's (the sync's own is in before a round trip).
    again.round_trip().await;
    let before = again.acks();
    again.insert("t", 19, "after it.");
    again.wait_acks(before + 1).await;
    let mut reader = Client::connect(&server.ws_url("outage")).await;
    reader.wait_text("t", "before the outage. after it.").await;
}

/// A load waiting for another node's lease (here a `kill -9`'d node's 30 s lease) ends at once
/// when the server is told to stop: SIGTERM stops it well within the shutdown grace (10 s), and
/// the waiting client is closed "going away", as every client is at shutdown.
#[tokio::test]
async fn sigterm_during_a_load_waiting_for_a_held_document_stops_at_once() {
    let db = TestDb::create().await;
    let url = db.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let first = ChildServer::start_with(&data, &node_args(&url, "30000", "1000"), None).await;
    let writer = write_acknowledged(&first, "held", "Trigger: a config push").await;
    first.kill9().await;
    drop(writer);

    let second = ChildServer::start_with(&data, &node_args(&url, "30000", "1000"), None).await;
    let mut waiting = Client::connect(&second.ws_url("held")).await;
    within("the load to find the document held", async {
        while second.metric("debrief_cluster_claims_held_total").await < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let stopping = Instant::now();
    let status = within("the server to stop", second.terminate()).await;
    let took = stopping.elapsed();
    println!(
        "a server whose load waited for a 30 s lease stopped {} ms after SIGTERM",
        took.as_millis()
    );
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "stopped {took:?} after SIGTERM: the load's wait held it up"
    );
    let closed = waiting.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server_shutting_down")
    );
}
