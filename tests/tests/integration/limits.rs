//! Every limit, reached through the real server: frame size, document size, connections per
//! document, awareness state size, and the bounded outbox of a client that does not read.

use debrief_server::limits::{Limits, MAX_AWARENESS_STATE_BYTES, MAX_FRAME_BYTES};
use debrief_tests::{flood_presence, wait_socket_end, Client, TestServer};
use futures_util::StreamExt;

#[tokio::test]
async fn a_frame_over_the_limit_gets_1009_and_nothing_stored_is_lost() {
    let server = TestServer::start().await;
    let url = server.ws_url("big");
    let mut good = Client::connect(&url).await;
    good.insert("t", 0, "stored before");
    good.round_trip().await;
    let mut big = Client::connect_silent(&url).await;
    big.send_raw(vec![0u8; MAX_FRAME_BYTES + 1]);
    let closed = big.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason),
        (
            1009,
            format!("frame_too_large: limit is {MAX_FRAME_BYTES} bytes")
        )
    );
    let mut reader = Client::connect(&url).await;
    reader.wait_text("t", "stored before").await;
}

#[tokio::test]
async fn a_document_over_the_size_limit_refuses_writes_and_keeps_what_it_had() {
    let limits = Limits {
        max_document_bytes: 20_000,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let url = server.ws_url("full");
    let mut writer = Client::connect(&url).await;
    writer.wait_synced().await;
    let chunk = "z".repeat(8_000);
    writer.insert("t", 0, &chunk);
    writer.insert("t", 0, &chunk);
    writer.round_trip().await;
    writer.insert("t", 0, &chunk);
    let closed = writer.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4413, "document_too_large: limit is 20000 bytes")
    );
    let server = server.restart().await;
    let mut reader = Client::connect(&server.ws_url("full")).await;
    reader.wait_text("t", &chunk.repeat(2)).await;
}

#[tokio::test]
async fn connections_past_the_per_document_limit_get_1013() {
    let limits = Limits {
        max_connections_per_document: 2,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let url = server.ws_url("crowded");
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.wait_synced().await;
    b.wait_synced().await;
    let mut c = Client::connect(&url).await;
    let closed = c.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1013, "too_many_connections")
    );
    // Another document is not affected, and a freed slot can be taken.
    let mut other = Client::connect(&server.ws_url("elsewhere")).await;
    other.wait_synced().await;
    a.close().await;
    let mut d = Client::connect(&url).await;
    d.wait_synced().await;
}

#[tokio::test]
async fn an_awareness_state_over_the_limit_gets_4431() {
    let server = TestServer::start().await;
    let url = server.ws_url("presence-limit");
    let mut fine = Client::connect(&url).await;
    fine.set_awareness(1, 1, r#"{"user":{"name":"Ada"}}"#);
    fine.wait_awareness(1, Some(r#"{"user":{"name":"Ada"}}"#))
        .await;
    let mut chatty = Client::connect(&url).await;
    let huge = format!(r#"{{"blob":"{}"}}"#, "x".repeat(MAX_AWARENESS_STATE_BYTES));
    chatty.set_awareness(2, 1, &huge);
    let closed = chatty.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason),
        (
            4431,
            format!("awareness_too_large: limit is {MAX_AWARENESS_STATE_BYTES} bytes per state")
        )
    );
    assert!(fine.closed().is_none());
}

/// A client that stops reading is closed once its bounded outbox fills; the writer and the other
/// readers are never stalled by it.
#[tokio::test]
async fn a_client_that_does_not_read_cannot_stall_the_others() {
    let limits = Limits {
        outbox_capacity: 16,
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let url = server.ws_url("slow");
    // A raw socket whose incoming side is never read.
    let (slow, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let mut writer = Client::connect(&url).await;
    let mut reader = Client::connect(&url).await;
    writer.wait_synced().await;
    reader.wait_synced().await;
    flood_presence(server.addr, &mut writer, &mut reader).await;
    assert_eq!(server.metric("debrief_slow_consumers_total").await, 1);
    // The slow socket is closed by the server: reading it now ends, whatever was buffered.
    let (_, incoming) = slow.split();
    wait_socket_end(incoming).await;
    assert!(reader.closed().is_none() && writer.closed().is_none());
    // The writer's edits still flow to the reader.
    writer.insert("t", 0, "still flowing");
    reader.wait_text("t", "still flowing").await;
    server.stop().await;
}

/// Issue 21: started with a low soft open-file limit (1,024 is a common default), the server
/// raises it to the hard limit itself, serves more sockets than the soft limit allowed, and says
/// at start-up that the hard limit is low.
#[tokio::test]
async fn the_server_raises_its_open_file_limit_and_warns_when_the_hard_one_is_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let server = debrief_tests::ChildServer::start_under(
        &["prlimit", "--nofile=128:4096", "--"],
        &data,
        &["--open-access"],
        Some(&log),
    )
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .expect("read the server's limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a line for open files")
        .split_whitespace()
        .collect();
    assert_eq!(
        open_files[3..5],
        ["4096", "4096"],
        "soft limit raised to the hard one"
    );
    let said = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        said.contains("the open-file limit allows about 4032 connections"),
        "warned about the low hard limit: {said}"
    );

    // More sockets than the soft limit it was started with, each synced.
    let url = server.ws_url("many");
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut c = Client::connect(&url).await;
        c.wait_synced().await;
        clients.push(c);
    }
    clients[0].insert("t", 0, "all here");
    clients[0].round_trip().await;
    clients[199].wait_text("t", "all here").await;
}
