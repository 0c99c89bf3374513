//! Durability: restart, compaction, idle unload, graceful shutdown and `kill -9`.

use debrief_server::limits::Limits;
use debrief_server::storage::store::Store;
use debrief_tests::{within, ChildServer, Client, TestServer};

#[tokio::test]
async fn restart_keeps_every_document() {
    let server = TestServer::start().await;
    let mut a = Client::connect(&server.ws_url("report")).await;
    let mut b = Client::connect(&server.ws_url("notes")).await;
    a.insert("t", 0, "Impact: 12 minutes of 502s 😀");
    b.insert("t", 0, "Action: alert on queue depth");
    a.remove("t", 0, 8);
    a.round_trip().await;
    b.round_trip().await;
    let server = server.restart().await;
    let mut a2 = Client::connect(&server.ws_url("report")).await;
    a2.wait_text("t", "12 minutes of 502s 😀").await;
    let mut b2 = Client::connect(&server.ws_url("notes")).await;
    b2.wait_text("t", "Action: alert on queue depth").await;
}

#[tokio::test]
async fn compaction_trims_the_log_and_keeps_the_content() {
    // A log record holds the updates of one group commit; a round trip after every tenth edit
    // makes 40 records.
    let limits = Limits {
        compact_after_entries: 10,
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let mut writer = Client::connect(&server.ws_url("compact")).await;
    writer.wait_synced().await;
    let mut expected = String::new();
    for i in 0..400u32 {
        let c = char::from(b'a' + (i % 26) as u8);
        writer.insert("t", i, &c.to_string());
        expected.push(c);
        if i % 10 == 9 {
            writer.round_trip().await;
        }
    }
    server
        .wait_metric("debrief_compactions_total", |n| n >= 1)
        .await;
    drop(writer);
    server.stop().await;
    {
        let (store, _flusher) = Store::open(&server.data_dir()).expect("open the store");
        let stored = store
            .load(&std::sync::Arc::from("compact"))
            .await
            .expect("load");
        assert!(stored.snapshot.is_some(), "a snapshot was written");
        assert!(
            stored.log.len() < 10,
            "the log was trimmed to {} entries",
            stored.log.len()
        );
    }
    let server = server.restart().await;
    let mut reader = Client::connect(&server.ws_url("compact")).await;
    reader.wait_text("t", &expected).await;
}

#[tokio::test]
async fn idle_documents_are_unloaded_and_reload_intact() {
    let limits = Limits {
        idle_unload_after: std::time::Duration::from_millis(100),
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let mut writer = Client::connect(&server.ws_url("idle")).await;
    writer.insert("t", 0, "Detection took 9 minutes");
    writer.round_trip().await;
    assert_eq!(server.metric("debrief_documents_loaded").await, 1);
    writer.close().await;
    server
        .wait_metric("debrief_documents_loaded", |n| n == 0)
        .await;
    let mut reader = Client::connect(&server.ws_url("idle")).await;
    reader.wait_text("t", "Detection took 9 minutes").await;
    assert_eq!(server.metric("debrief_documents_loaded").await, 1);
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_with_going_away() {
    let mut server = TestServer::start().await;
    let mut a = Client::connect(&server.ws_url("bye")).await;
    a.insert("t", 0, "kept");
    a.round_trip().await;
    server.stop().await;
    let closed = a.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server_shutting_down")
    );
    let server = server.restart().await;
    let mut b = Client::connect(&server.ws_url("bye")).await;
    b.wait_text("t", "kept").await;
}

/// Whatever an observer has seen must survive `kill -9`: updates are relayed only after the
/// flush that contains them.
#[tokio::test]
async fn kill_9_loses_nothing_any_client_has_seen() {
    kill_9_mid_burst(&["--open-access"]).await;
}

/// Starts the binary with `args` (sled, or `--postgres` for the PostgreSQL backend), kills it
/// with SIGKILL while a burst of 400 updates is being relayed, starts it again, and checks that
/// everything an observer had received is there.
pub(super) async fn kill_9_mid_burst(args: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ChildServer::start_with(dir.path(), args, None).await;
    let url = server.ws_url("crash");
    let mut writer = Client::connect(&url).await;
    let mut observer = Client::connect(&url).await;
    writer.wait_synced().await;
    observer.wait_synced().await;
    for i in 0..400u32 {
        writer.insert("t", i, "x");
    }
    // Kill while the burst is still being relayed.
    observer.wait_updates(150).await;
    server.kill9().await;
    let seen = observer.text("t");
    assert!(seen.len() >= 150, "observer saw {} characters", seen.len());

    let server = ChildServer::start_with(dir.path(), args, None).await;
    let mut reader = Client::connect(&server.ws_url("crash")).await;
    reader.wait_synced().await;
    let recovered = reader.text("t");
    assert!(
        recovered.len() >= seen.len(),
        "observer saw {} characters, only {} survived",
        seen.len(),
        recovered.len()
    );
    let status = within("exit after SIGTERM", server.terminate()).await;
    assert!(status.success(), "exit status {status}");
}
