//! Losing the PostgreSQL primary (issue 18): with a synchronous standby, everything a client was
//! told is saved — an update relayed to another client, a Hocuspocus acknowledgement — survives
//! `kill -9` of the primary together with the Debrief node, once the standby is promoted and a
//! node starts on it. The primary and its standby are this test's own
//! ([`PrimaryAndStandby`], `scripts/postgres standby`), on Unix sockets.

use debrief_tests::postgres::PrimaryAndStandby;
use debrief_tests::{ChildServer, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How many updates a writer may have sent that are not acknowledged yet: enough that the
/// primary always has commits in flight, few enough that the stream keeps pace with them.
const AHEAD: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_acknowledged_survives_losing_the_primary_and_the_node() {
    let pair = tokio::task::spawn_blocking(PrimaryAndStandby::start)
        .await
        .expect("start PostgreSQL");
    pair.execute_on_primary("postgres", "CREATE DATABASE failover")
        .await;
    // Every commit waits for the standby: the guarantee rests on this, so it is asserted.
    assert_eq!(
        pair.query_primary("postgres", "SHOW synchronous_standby_names")
            .await,
        vec!["debrief_standby"]
    );
    assert_eq!(
        pair.query_primary(
            "postgres",
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'debrief_standby'"
        )
        .await,
        vec!["sync"]
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let url = pair.url("failover");
    let args = ["--open-access", "--postgres", url.as_str()];
    let server = ChildServer::start_with(dir.path(), &args, None).await;
    let mut writer = Client::connect(&server.ws_url("primary-loss")).await;
    let mut observer = Client::connect(&server.ws_url("primary-loss")).await;
    let mut collab =
        Client::connect_collab(&server.collab_url(), "primary-loss-collab", "any").await;
    writer.wait_synced().await;
    observer.wait_synced().await;
    collab.wait_synced().await;
    // The sync's own acknowledgement, if any, has arrived once a later question is answered:
    // what is acknowledged from here on is the burst's.
    collab.round_trip().await;
    let before = collab.acks();
    // Each insert is an update of its own, and Hocuspocus acknowledges each once committed, in
    // order: the first k acknowledgements are the first k characters. The writers write from a
    // task of their own until they are told to stop, after the primary is killed, and once more
    // then: the primary always dies mid-stream, however fast the machine commits.
    let stop = CancellationToken::new();
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let writing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut written: u32 = 0;
            loop {
                writer.insert("t", written, "x");
                collab.insert("t", written, "y");
                written += 1;
                let acked = collab.acks() - before;
                acked_tx.send_replace(acked);
                if stop.is_cancelled() {
                    break;
                }
                if u64::from(written) >= acked + AHEAD {
                    // The connection ends once the node finds the primary gone: the writers
                    // wait for the stop then.
                    tokio::select! {
                        () = stop.cancelled() => {}
                        alive = collab.changed() => if !alive { stop.cancelled().await },
                    }
                } else {
                    tokio::task::yield_now().await;
                }
            }
            (writer, collab, written)
        }
    });
    // The primary dies in the middle of the stream (the writers go on writing on the other
    // worker thread while it is killed), then the node.
    observer.wait_updates(120).await;
    debrief_tests::within("60 acknowledgements", acked_rx.wait_for(|a| *a >= 60))
        .await
        .expect("the writers are writing");
    pair.kill_primary();
    stop.cancel();
    let (_writer, collab, written) = debrief_tests::within("the writers to stop", writing)
        .await
        .expect("the writers' task ran");
    let seen = observer.text("t").len();
    let acked = (collab.acks() - before) as usize;
    // Both writers' characters reach the observer; each acknowledgement is one of collab's.
    assert!(
        seen < 2 * written as usize && acked < written as usize,
        "the primary was killed after the last update was committed (written {written} by each \
         writer, seen {seen}, acknowledged {acked})"
    );
    server.kill9().await;

    pair.promote().await;
    let server = ChildServer::start_with(dir.path(), &args, None).await;
    let mut reader = Client::connect(&server.ws_url("primary-loss")).await;
    reader.wait_synced().await;
    let recovered = reader.text("t").len();
    assert!(
        recovered >= seen,
        "an observer saw {seen} characters, only {recovered} survived the primary"
    );
    let mut collab_reader =
        Client::connect_collab(&server.collab_url(), "primary-loss-collab", "any").await;
    collab_reader.wait_synced().await;
    let recovered = collab_reader.text("t").len();
    assert!(
        recovered >= acked,
        "{acked} updates were acknowledged, only {recovered} survived the primary"
    );
    eprintln!(
        "primary lost mid-stream: seen {seen} of {} and acknowledged {acked} of {written}; all of them survived",
        2 * written
    );
    let status = debrief_tests::within("exit after SIGTERM", server.terminate()).await;
    assert!(status.success(), "exit status {status}");
}
