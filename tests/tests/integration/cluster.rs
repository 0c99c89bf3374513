//! Several nodes on one PostgreSQL database (issue 18, `docs/cluster.md`): any node serves any
//! client through the document's one owner, over the internal link; an owner that dies is
//! replaced once its lease lapsed, a paused one can commit nothing after that, and nothing a
//! client was told is saved (a relay to another client, a Hocuspocus acknowledgement) is lost.
//!
//! Every node is the real binary ([`Cluster`]); clients are our Rust client in both dialects.

use std::time::{Duration, Instant};

use debrief_tests::cluster::{synced_after_tries, synced_collab, synced_ws, Cluster};
use debrief_tests::server::refused_with;
use debrief_tests::{within, ChildServer, Client};
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

/// Each update crosses to each node once: a node with six clients of both dialects on a
/// document owned by another node gets every update over one lane, and hands it to each of its
/// clients; the owner sends one message per update, not one per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_update_crosses_to_each_node_once() {
    const UPDATES: usize = 40;
    const READERS: usize = 6;
    let cluster = Cluster::start(2, Duration::from_secs(3), Duration::from_secs(1)).await;
    let doc = "once-per-node";
    let writer = synced_ws(cluster.node(0), doc).await;
    assert_eq!(cluster.owner_index(doc).await, Some(0));
    let mut readers = Vec::new();
    for i in 0..READERS {
        let mut reader = if i % 2 == 0 {
            synced_ws(cluster.node(1), doc).await
        } else {
            synced_collab(cluster.node(1), doc).await
        };
        reader.round_trip().await;
        readers.push(reader);
    }
    let owner = cluster.node(0);
    assert_eq!(
        owner.metric("debrief_forwarded_attachments_open").await,
        READERS as u64
    );
    assert_eq!(owner.metric("debrief_forwarded_lanes_open").await, 1);
    let before = owner.metric("debrief_forwarded_messages_sent_total").await;
    for i in 0..UPDATES {
        writer.insert("t", i as u32, "x");
    }
    let expected = "x".repeat(UPDATES);
    for reader in &mut readers {
        reader.wait_text("t", &expected).await;
    }
    let sent = owner.metric("debrief_forwarded_messages_sent_total").await - before;
    eprintln!(
        "{UPDATES} updates to {READERS} clients of another node: the owner sent {sent} messages \
         to that node"
    );
    // One relay per update for the whole node (a group commit may even carry several in one);
    // one per client would be six times as many.
    assert!(
        (1..=UPDATES as u64 + 2).contains(&sent),
        "{sent} messages for {UPDATES} updates to {READERS} clients of one node"
    );
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
    let (stop, progress, writing) = write_until_stopped(writer, before);
    observer.wait_updates(100).await;
    let mut progress = progress;
    within("50 acknowledgements", progress.wait_for(|(_, a)| *a >= 50))
        .await
        .expect("the writer is writing");
    let owner = cluster.take(0);
    // Written and acknowledged just before the kill: updates were on their way.
    let (written_then, acked_then) = *progress.borrow();
    owner.kill9().await;
    let killed = Instant::now();
    drop(opener);
    stop.cancel();
    let (writer, written) = within("the writer to stop", writing)
        .await
        .expect("the writer's task ran");
    let acked = (writer.acks() - before) as usize;
    let seen = observer.text("t").len();
    // Some of what was written before the kill was never acknowledged: it died mid-stream.
    assert!(
        (acked as u64) < u64::from(written_then),
        "the owner was killed after the last update was committed (written before the kill \
         {written_then}, acknowledged {acked} of them at most; {acked_then} just before)"
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
    // The owner paused is not the node serving reviews (the first one): that one, resumed, would
    // stop for having lost the review role (`cluster_reviews.rs`).
    assert_eq!(cluster.review_node().await, 0);
    let doc = "owner-paused";
    let mut writer = synced_collab(cluster.node(1), doc).await;
    assert_eq!(cluster.owner_index(doc).await, Some(1));
    let mut observer = synced_ws(cluster.node(2), doc).await;
    writer.round_trip().await;
    let before = writer.acks();
    writer.insert("t", 0, "relayed before the pause; ");
    writer.wait_acks(before + 1).await;
    observer.wait_text("t", "relayed before the pause; ").await;
    let owner_id = cluster.owner_of(doc).await.expect("an owner");

    let paused = cluster.take(1);
    paused.signal("STOP");
    // Written while the owner is paused: it reaches the owner's socket, not its database.
    writer.insert("t", 0, "written during the pause; ");
    // The observer's link to the paused node falls silent; it is closed and reconnects.
    let closed = observer.wait_closed().await;
    assert_eq!(closed.code, 1001, "{closed:?}");
    let reader = synced_ws(cluster.node(2), doc).await;
    assert_eq!(reader.text("t"), "relayed before the pause; ");
    let taker = cluster.owner_of(doc).await.expect("an owner");
    assert_ne!(taker, owner_id, "another node took the document over");

    paused.signal("CONT");
    // The paused node finds itself fenced: its client is closed, never acknowledged.
    let closed = writer.wait_closed().await;
    assert_eq!(writer.acks(), before + 1, "closed with {closed:?}");
    // Nothing the paused node held was committed after the takeover.
    let mut check = synced_ws(cluster.node(0), doc).await;
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
/// keeping at most a few hundred updates unacknowledged, telling how many it wrote and how many
/// were acknowledged after each; answers the writer and how many it wrote.
#[allow(clippy::type_complexity)]
fn write_until_stopped(
    mut writer: Client,
    before: u64,
) -> (
    CancellationToken,
    watch::Receiver<(u32, u64)>,
    tokio::task::JoinHandle<(Client, u32)>,
) {
    const AHEAD: u64 = 200;
    let stop = CancellationToken::new();
    let (acked_tx, acked_rx) = watch::channel((0u32, 0u64));
    let writing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut written: u32 = 0;
            loop {
                writer.insert("t", written, "y");
                written += 1;
                let acked = writer.acks() - before;
                acked_tx.send_replace((written, acked));
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

/// Every node in turn is stopped with SIGTERM (and a new one started) while clients of both
/// nodes' documents write without pause: nothing is lost, and no client waits anything like a
/// lease to be served again, since a terminated node hands its documents over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_sigterm_of_every_node_loses_nothing_and_never_waits_a_lease() {
    // A long lease: a client that had to wait for one would stand out.
    let lease = Duration::from_secs(10);
    let mut cluster = Cluster::start(3, lease, Duration::from_secs(1)).await;
    let docs = ["rolling-a", "rolling-b", "rolling-c"];
    // Each document is first opened, and so owned, by a different node.
    for (i, doc) in docs.iter().enumerate() {
        let opener = synced_ws(cluster.node(i), doc).await;
        assert_eq!(cluster.owner_index(doc).await, Some(i));
        drop(opener);
    }
    let (urls_tx, urls) = watch::channel(
        (0..3)
            .map(|i| cluster.node(i).collab_url())
            .collect::<Vec<_>>(),
    );
    let stop = CancellationToken::new();
    let (progress_tx, mut progress) = watch::channel(0u64);
    let progress_tx = std::sync::Arc::new(progress_tx);
    let mut writers = tokio::task::JoinSet::new();
    // Two writers per document, starting on different nodes (some forwarded, some not).
    for (w, doc) in docs.iter().chain(docs.iter()).enumerate() {
        writers.spawn(reconnecting_writer(
            doc.to_string(),
            format!("w{w}"),
            w,
            urls.clone(),
            stop.clone(),
            progress_tx.clone(),
        ));
    }
    // Waits until the writers wrote 60 more characters.
    async fn made_progress(progress: &mut watch::Receiver<u64>) {
        let now = *progress.borrow();
        within(
            "the writers to make progress",
            progress.wait_for(|p| *p >= now + 60),
        )
        .await
        .expect("writers are running");
    }
    for round in 0..3 {
        // Every round happens while the writers write.
        made_progress(&mut progress).await;
        let replacement = cluster.start_node().await;
        let mut list: Vec<String> = urls.borrow().clone();
        list.retain(|u| *u != cluster.node(round).collab_url());
        list.push(replacement.collab_url());
        urls_tx.send_replace(list);
        let leaving = cluster.take(round);
        cluster.nodes.push(Some(replacement));
        let status = within("the node to stop", leaving.terminate()).await;
        assert!(status.success(), "node {round} exits cleanly: {status}");
    }
    made_progress(&mut progress).await;
    stop.cancel();
    let mut results = Vec::new();
    while let Some(done) = writers.join_next().await {
        results.push(done.expect("a writer ran"));
    }
    let survivor = cluster.nodes.iter().flatten().next().expect("a node runs");
    for doc in docs {
        let mut reader = synced_collab(survivor, doc).await;
        for (writer_doc, name, written, _) in &results {
            if writer_doc == doc {
                let n = *written;
                reader
                    .wait_doc("every character each writer wrote", |d| {
                        use yrs::{GetString, Transact};
                        d.get_or_insert_text(name.as_str())
                            .get_string(&d.transact())
                            .len()
                            == n as usize
                    })
                    .await;
            }
        }
    }
    let longest = results
        .iter()
        .map(|(_, _, _, stall)| *stall)
        .max()
        .unwrap_or_default();
    let reconnects: usize = results.len();
    eprintln!(
        "rolling SIGTERM of 3 nodes under {reconnects} writers: the longest wait to be served \
         again was {} ms (lease {} ms)",
        longest.as_millis(),
        lease.as_millis()
    );
    assert!(
        longest < lease / 2,
        "a writer waited {longest:?} to be served again: as long as a lease ({lease:?})"
    );
}

/// A writer that writes to its own text of `doc` until `stop`, through whichever node of `urls`
/// it reaches (starting at `first`), and connects again elsewhere when its connection ends,
/// carrying over everything it wrote (a stock client resends what the server lacks). Answers
/// the document, its text's name, how many characters it wrote, and the longest it waited to
/// be served again.
async fn reconnecting_writer(
    doc: String,
    name: String,
    first: usize,
    urls: watch::Receiver<Vec<String>>,
    stop: CancellationToken,
    progress: std::sync::Arc<watch::Sender<u64>>,
) -> (String, String, u32, Duration) {
    use yrs::updates::decoder::Decode;
    use yrs::{ReadTxn, Transact};
    // Each try goes to the next node of those running now: a node that is stopping refuses.
    let connect = |start: usize| {
        let (urls, doc) = (urls.clone(), doc.clone());
        async move {
            let (client, _) = synced_after_tries(|n| {
                let url = {
                    let list = urls.borrow();
                    list[(start + n) % list.len()].clone()
                };
                let doc = doc.clone();
                async move { Client::try_connect_collab(&url, &doc, "any").await }
            })
            .await;
            client
        }
    };
    let mut tries = first;
    let mut client = connect(tries).await;
    let mut written = 0u32;
    let mut longest = Duration::ZERO;
    // Written on the current connection, and its acknowledgements before the first of them.
    let mut written_here = 0u64;
    let mut acked_before = client.acks();
    loop {
        if client.ended() {
            let since = Instant::now();
            let state = client
                .doc
                .transact()
                .encode_state_as_update_v1(&yrs::StateVector::default());
            tries += 1;
            client = connect(tries).await;
            // What the server lacks is sent from here (the client's own changes).
            let update = yrs::Update::decode_v1(&state).expect("its own state");
            client
                .doc
                .transact_mut()
                .apply_update(update)
                .expect("apply its own state");
            longest = longest.max(since.elapsed());
            written_here = 0;
            acked_before = client.acks();
            continue;
        }
        if stop.is_cancelled() {
            // Everything written is acknowledged before the writer reports.
            client.round_trip().await;
            if !client.ended() {
                break;
            }
            continue;
        }
        client.insert(&name, 0, "x");
        written += 1;
        written_here += 1;
        progress.send_modify(|p| *p += 1);
        // At most a few dozen unacknowledged, so that the burst keeps pace with commits.
        if written_here > client.acks() - acked_before + 40 {
            tokio::select! {
                _ = client.changed() => {}
                () = stop.cancelled() => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    (doc, name, written, longest)
}

/// The reconnect storm after a failover: clients of both dialects on the two surviving nodes,
/// on documents the killed node owned, all connect again at once; every one is served with
/// what was acknowledged before, and the time each took to be synced again is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconnect_storm_after_a_failover_is_served() {
    const DOCS: usize = 4;
    const PER_DOC: usize = 20;
    let mut cluster = Cluster::start(3, SHORT_LEASE, RENEW).await;
    let docs: Vec<String> = (0..DOCS).map(|d| format!("storm-{d}")).collect();
    let mut openers = Vec::new();
    for doc in &docs {
        let mut opener = synced_collab(cluster.node(0), doc).await;
        opener.round_trip().await;
        let before = opener.acks();
        opener.insert("t", 0, "acknowledged before the kill");
        opener.wait_acks(before + 1).await;
        openers.push(opener);
    }
    let mut clients = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        for c in 0..PER_DOC {
            let node = cluster.node(1 + (d + c) % 2);
            let client = if c % 2 == 0 {
                synced_ws(node, doc).await
            } else {
                synced_collab(node, doc).await
            };
            clients.push((
                doc.clone(),
                c % 2 == 0,
                node.ws_url(doc),
                node.collab_url(),
                client,
            ));
        }
    }
    let owner = cluster.take(0);
    owner.kill9().await;
    let killed = Instant::now();
    drop(openers);
    let mut storm = tokio::task::JoinSet::new();
    for (doc, ws, ws_url, collab_url, mut client) in clients {
        storm.spawn(async move {
            // The owner's going is told to every client (its node closes it).
            within("the client to be closed", async {
                while !client.ended() {
                    if !client.changed().await {
                        break;
                    }
                }
            })
            .await;
            let (mut client, last_try) = synced_after_tries(|_| async {
                if ws {
                    Client::try_connect(&ws_url).await
                } else {
                    Client::try_connect_collab(&collab_url, &doc, "any").await
                }
            })
            .await;
            let served = killed.elapsed();
            let sync = last_try.elapsed();
            client.wait_text("t", "acknowledged before the kill").await;
            (served, sync)
        });
    }
    let mut served = Vec::new();
    let mut syncs = Vec::new();
    while let Some(done) = within("the storm to be served", storm.join_next()).await {
        let (s, y) = done.expect("a client was served again");
        served.push(s);
        syncs.push(y);
    }
    served.sort();
    syncs.sort();
    let pct = |v: &[Duration], p: usize| v[(v.len() * p / 100).min(v.len() - 1)].as_millis();
    eprintln!(
        "reconnect storm of {} clients after kill -9 of the owner (lease {} ms): served again \
         p50 {} ms, p99 {} ms, last {} ms after the kill; the successful sync took p50 {} ms, \
         p99 {} ms",
        served.len(),
        SHORT_LEASE.as_millis(),
        pct(&served, 50),
        pct(&served, 99),
        served.last().map(|d| d.as_millis()).unwrap_or_default(),
        pct(&syncs, 50),
        pct(&syncs, 99)
    );
    assert_eq!(served.len(), DOCS * PER_DOC);
}

/// A document larger than a link message (4 MiB) reaches new clients of both dialects on other
/// nodes whole: its state goes over the link in parts, and so do large changes both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_larger_than_a_link_message_is_served_through_another_node() {
    let cluster = Cluster::start(3, Duration::from_secs(3), Duration::from_secs(1)).await;
    let doc = "large";
    let mut writer = synced_collab(cluster.node(0), doc).await;
    writer.round_trip().await;
    let before = writer.acks();
    // Two updates of 2.5 MiB each (a frame may hold 4 MiB): a 5 MiB document.
    let half = "x".repeat(5 << 19);
    writer.insert("t", 0, &half);
    writer.insert("t", 0, &half);
    writer.wait_acks(before + 2).await;
    let expected = 2 * half.len();
    let mut ws = synced_ws(cluster.node(1), doc).await;
    let mut collab = synced_collab(cluster.node(2), doc).await;
    for client in [&mut ws, &mut collab] {
        client
            .wait_doc("the whole document", |d| {
                use yrs::{GetString, Transact};
                d.get_or_insert_text("t").get_string(&d.transact()).len() == expected
            })
            .await;
    }
    assert_eq!(cluster.owner_index(doc).await, Some(0));
    assert_eq!(
        cluster.node(1).metric("debrief_documents_forwarded").await,
        1
    );

    // A large change from a client of another node crosses in parts too, while a client of the
    // third node types: its acknowledgements and credits pass between the parts going to it.
    collab.round_trip().await;
    let typed_before = collab.acks();
    let pasted = "y".repeat(3 << 20);
    ws.insert("p", 0, &pasted);
    for i in 0..40 {
        collab.insert("typed", i, "z");
    }
    collab.wait_acks(typed_before + 40).await;
    for client in [&mut writer, &mut collab] {
        client
            .wait_doc("the paste and the typing", |d| {
                use yrs::{GetString, Transact};
                let text = |name| d.get_or_insert_text(name).get_string(&d.transact());
                text("p").len() == pasted.len() && text("typed").len() == 40
            })
            .await;
    }
}

/// The nodes of a cluster take the single-node lock shared: a server without links (one server
/// per database) refuses to start beside them, and once they are gone a cluster node refuses to
/// start beside such a server, so that neither writes what the other believes it alone writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_and_a_cluster_refuse_each_other() {
    let mut cluster = Cluster::start(1, Duration::from_secs(3), Duration::from_secs(1)).await;
    let url = cluster.db.url();
    let (code, stderr) = refused_with(&["--open-access", "--postgres", &url]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_another_debrief(&stderr);
    let status = cluster.take(0).terminate().await;
    assert!(status.success(), "{status}");

    let dir = tempfile::tempdir().expect("temp dir");
    let single = ChildServer::start_with(
        &dir.path().join("data"),
        &["--open-access", "--postgres", &url],
        None,
    )
    .await;
    let (code, stderr) = cluster.refused_node().await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_another_debrief(&stderr);
    assert!(single.terminate().await.success());
}

/// The last line of a start-up refused because another Debrief uses the database.
fn assert_another_debrief(stderr: &str) {
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: postgres: another Debrief uses this database (PostgreSQL at ")
            && line.ends_with("); stop it first"),
        "{stderr}"
    );
}

/// What the owner decides reaches clients of other nodes in their own dialect: a y-websocket
/// client with the read-only token is closed 4403 when it tries to change the document, a
/// Hocuspocus one hears `Authenticated(readonly)` and a refusal, and a bad token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_decisions_reach_clients_of_other_nodes_in_their_dialect() {
    use debrief_tests::cluster::{READER, WRITER};
    let cluster =
        Cluster::start_with_tokens(3, Duration::from_secs(3), Duration::from_secs(1)).await;
    let doc = "decided";
    let mut writer = Client::connect_collab(&cluster.node(0).collab_url(), doc, WRITER).await;
    writer.wait_synced().await;
    assert_eq!(cluster.owner_index(doc).await, Some(0));

    let mut ws_reader =
        Client::connect(&format!("{}?token={READER}", cluster.node(1).ws_url(doc))).await;
    ws_reader.wait_synced().await;
    ws_reader.insert("t", 0, "not allowed");
    let closed = ws_reader.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (
            4403,
            "read_only: this connection may not change the document"
        )
    );

    let mut collab_reader =
        Client::connect_collab(&cluster.node(2).collab_url(), doc, READER).await;
    assert_eq!(collab_reader.wait_authenticated().await, "readonly");
    collab_reader.wait_synced().await;
    collab_reader.insert("t", 0, "not allowed either");
    collab_reader.wait_refusals(1).await;

    let mut stranger = Client::connect_collab(&cluster.node(1).collab_url(), doc, "nope").await;
    let denials = stranger.wait_denials(1).await;
    assert!(
        denials[0].starts_with("invalid_token"),
        "refused with {denials:?}"
    );

    // The writer's change reaches the readers (whose own refused change stays theirs alone);
    // theirs never reached the document.
    writer.insert("t", 0, "written");
    collab_reader
        .wait_doc("the writer's change", |d| {
            use yrs::{GetString, Transact};
            d.get_or_insert_text("t")
                .get_string(&d.transact())
                .contains("written")
        })
        .await;
    let mut check =
        Client::connect(&format!("{}?token={WRITER}", cluster.node(2).ws_url(doc))).await;
    check.wait_synced().await;
    check.wait_text("t", "written").await;
}
