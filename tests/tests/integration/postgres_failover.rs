//! Losing the PostgreSQL primary (issue 18): with a synchronous standby, everything a client was
//! told is saved — an update relayed to another client, a Hocuspocus acknowledgement — survives
//! `kill -9` of the primary together with the Debrief node, once the standby is promoted and a
//! node starts on it. The primary and its standby are this test's own
//! ([`PrimaryAndStandby`], `scripts/postgres standby`), on Unix sockets.

use debrief_tests::postgres::PrimaryAndStandby;
use debrief_tests::{ChildServer, Client};

#[tokio::test]
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
    // order: the first k acknowledgements are the first k characters.
    const BURST: u32 = 2000;
    for i in 0..BURST {
        writer.insert("t", i, "x");
        collab.insert("t", i, "y");
    }
    // The primary dies in the middle of the burst, then the node.
    observer.wait_updates(120).await;
    collab.wait_acks(before + 60).await;
    pair.kill_primary();
    let seen = observer.text("t").len();
    let acked = (collab.acks() - before) as usize;
    assert!(
        seen < BURST as usize && acked < BURST as usize,
        "the primary was killed after the burst ended (seen {seen}, acknowledged {acked})"
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
        "primary lost mid-burst: seen {seen} and acknowledged {acked} of {BURST}; all of them survived"
    );
    let status = debrief_tests::within("exit after SIGTERM", server.terminate()).await;
    assert!(status.success(), "exit status {status}");
}
