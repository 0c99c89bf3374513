//! Several nodes on one PostgreSQL database (issue 18, `docs/cluster.md`): any node serves any
//! client through the document's one owner, over the internal link; an owner that dies is
//! replaced once its lease lapsed, a paused one can commit nothing after that, and nothing a
//! client was told is saved (a relay to another client, a Hocuspocus acknowledgement) is lost.
//!
//! Every node is the real binary ([`Cluster`]); clients are our Rust client in both dialects.

use std::time::{Duration, Instant};

use debrief_tests::cluster::{synced_collab, synced_ws, Cluster};
use debrief_tests::{within, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Leases of the tests that kill or stop a node: short, so that a takeover comes quickly.
const SHORT_LEASE: Duration = Duration::from_secs(2);
/// Renewals of those leases.
const RENEW: Duration = Duration::from_millis(200);

/// Three nodes, one document, clients of both dialects on every node: each client's change
/// reaches every other, one node owns the document, and the others serve their clients
/// through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_converges_across_three_nodes_in_both_dialects() {
    let cluster = Cluster::start(3, Duration::from_secs(3), Duration::from_secs(1)).await;
    let doc = "converge";
    // The first client's node loads the document, and so owns it.
    let mut a = synced_ws(cluster.node(0), doc).await;
    assert_eq!(cluster.owner_index(doc).await, Some(0));
    let mut b = synced_collab(cluster.node(1), doc).await;
    let mut c = synced_ws(cluster.node(2), doc).await;
    let mut d = synced_collab(cluster.node(2), doc).await;
    b.round_trip().await;
    d.round_trip().await;
    let (b_acks, d_acks) = (b.acks(), d.acks());
    a.insert("a", 0, "Timeline: 09:12 alert fired");
    b.insert("b", 0, "Impact: checkout errors for 14 minutes");
    c.insert("c", 0, "Contributing factor: a retry storm");
    d.insert("d", 0, "Action: cap retries");
    let expected = [
        ("a", "Timeline: 09:12 alert fired"),
        ("b", "Impact: checkout errors for 14 minutes"),
        ("c", "Contributing factor: a retry storm"),
        ("d", "Action: cap retries"),
    ];
    for client in [&mut a, &mut b, &mut c, &mut d] {
        for (name, text) in expected {
            client.wait_text(name, text).await;
        }
    }
    // Hocuspocus clients on other nodes hear their acknowledgement from the owner.
    b.wait_acks(b_acks + 1).await;
    d.wait_acks(d_acks + 1).await;
    // One owner; the other nodes hold no copy of the document, only their clients' attachments.
    assert_eq!(cluster.owner_index(doc).await, Some(0));
    assert_eq!(
        cluster
            .node(0)
            .metric("debrief_forwarded_attachments_open")
            .await,
        3
    );
    for i in [1, 2] {
        let node = cluster.node(i);
        assert_eq!(node.metric("debrief_documents_forwarded").await, 1);
        assert_eq!(node.metric("debrief_documents_loaded").await, 0);
    }
    // A client that comes later to any node gets everything.
    // (The synced answer may come before the updates that follow the shared state.)
    let mut late = synced_ws(cluster.node(1), doc).await;
    for (name, text) in expected {
        late.wait_text(name, text).await;
    }
}

/// `kill -9` of a document's owner while a client of another node writes without pause: once
/// the owner's lease lapsed another node serves the document, with every update the writer had
/// acknowledged and every update an observer on the third node had received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_owner_mid_burst_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(3, SHORT_LEASE, RENEW).await;
    let doc = "owner-killed";
    let opener = synced_ws(cluster.node(0), doc).await;
    assert_eq!(cluster.owner_index(doc).await, Some(0));
    let mut writer = synced_collab(cluster.node(1), doc).await;
    let mut observer = synced_ws(cluster.node(2), doc).await;
    writer.round_trip().await;
    let before = writer.acks();
    let (stop, acked_rx, writing) = write_until_stopped(writer, before);
    observer.wait_updates(100).await;
    let mut acked_rx = acked_rx;
    within("50 acknowledgements", acked_rx.wait_for(|a| *a >= 50))
        .await
        .expect("the writer is writing");
    let owner = cluster.take(0);
    owner.kill9().await;
    let killed = Instant::now();
    drop(opener);
    stop.cancel();
    let (writer, written) = within("the writer to stop", writing)
        .await
        .expect("the writer's task ran");
    let acked = (writer.acks() - before) as usize;
    let seen = observer.text("t").len();
    assert!(
        acked < written as usize,
        "the owner was killed after the last update was committed (written {written}, \
         acknowledged {acked})"
    );
    // Clients reconnect; the document is served again once the lease lapsed.
    let reader = synced_collab(cluster.node(1), doc).await;
    let served = killed.elapsed();
    let recovered = reader.text("t").len();
    assert!(
        recovered >= acked && recovered >= seen,
        "acknowledged {acked}, observed {seen}, only {recovered} survived the owner"
    );
    let new_owner = cluster.owner_index(doc).await;
    assert!(
        matches!(new_owner, Some(1 | 2)),
        "a surviving node owns the document ({new_owner:?})"
    );
    eprintln!(
        "owner killed mid-burst: served again {} ms after the kill (lease {} ms); acknowledged \
         {acked} and observed {seen} of {written}, all present",
        served.as_millis(),
        SHORT_LEASE.as_millis()
    );
}

/// `SIGSTOP` of a document's owner past its lease, then `SIGCONT`: another node took the
/// document over meanwhile, so what the paused owner still had to commit is fenced: its client
/// is not acknowledged and the update is not in the database; everything a client had received
/// before is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_once_another_node_took_over() {
    let mut cluster = Cluster::start(3, SHORT_LEASE, RENEW).await;
    let doc = "owner-paused";
    let mut writer = synced_collab(cluster.node(0), doc).await;
    assert_eq!(cluster.owner_index(doc).await, Some(0));
    let mut observer = synced_ws(cluster.node(1), doc).await;
    writer.round_trip().await;
    let before = writer.acks();
    writer.insert("t", 0, "relayed before the pause; ");
    writer.wait_acks(before + 1).await;
    observer.wait_text("t", "relayed before the pause; ").await;
    let owner_id = cluster.owner_of(doc).await.expect("an owner");

    let paused = cluster.take(0);
    paused.signal("STOP");
    // Written while the owner is paused: it reaches the owner's socket, not its database.
    writer.insert("t", 0, "written during the pause; ");
    // The observer's link to the paused node falls silent; it is closed and reconnects.
    let closed = observer.wait_closed().await;
    assert_eq!(closed.code, 1001, "{closed:?}");
    let reader = synced_ws(cluster.node(1), doc).await;
    assert_eq!(reader.text("t"), "relayed before the pause; ");
    let taker = cluster.owner_of(doc).await.expect("an owner");
    assert_ne!(taker, owner_id, "another node took the document over");

    paused.signal("CONT");
    // The paused node finds itself fenced: its client is closed, never acknowledged.
    let closed = writer.wait_closed().await;
    assert_eq!(writer.acks(), before + 1, "closed with {closed:?}");
    // Nothing the paused node held was committed after the takeover.
    let mut check = synced_ws(cluster.node(2), doc).await;
    check.round_trip().await;
    assert_eq!(check.text("t"), "relayed before the pause; ");
    assert_eq!(cluster.owner_of(doc).await, Some(taker));
    let status = paused.terminate().await;
    assert!(
        status.success(),
        "the resumed node exits cleanly on SIGTERM: {status}"
    );
}

/// Writes one character at a time from a task of its own until `stop` (and once more after),
/// keeping at most a few hundred updates unacknowledged; answers the writer and how many it
/// wrote.
#[allow(clippy::type_complexity)]
fn write_until_stopped(
    mut writer: Client,
    before: u64,
) -> (
    CancellationToken,
    watch::Receiver<u64>,
    tokio::task::JoinHandle<(Client, u32)>,
) {
    const AHEAD: u64 = 200;
    let stop = CancellationToken::new();
    let (acked_tx, acked_rx) = watch::channel(0u64);
    let writing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut written: u32 = 0;
            loop {
                writer.insert("t", written, "y");
                written += 1;
                let acked = writer.acks() - before;
                acked_tx.send_replace(acked);
                if stop.is_cancelled() {
                    break;
                }
                if u64::from(written) >= acked + AHEAD {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        alive = writer.changed() => if !alive { stop.cancelled().await },
                    }
                } else {
                    tokio::task::yield_now().await;
                }
            }
            (writer, written)
        }
    });
    (stop, acked_rx, writing)
}
