//! The Hocuspocus dialect at `/collab` and access control in both dialects: acknowledgements that
//! survive `kill -9`, tokens, read-only connections, pre-authentication caps, error answers.

use std::time::Duration;

use debrief_proto::close;
use debrief_proto::hocuspocus::{Auth, DocMessage};
use debrief_proto::ywire::{Message, SyncMessage};
use debrief_server::limits::Limits;
use debrief_tests::server::{READER_TOKEN, WRITER_TOKEN};
use debrief_tests::{flood_presence, wait_socket_end, ChildServer, Client, TestServer};
use futures_util::StreamExt;

/// A `/collab` client on `doc`, synced, whose handshake acknowledgement has arrived; returns it
/// and the number of acknowledgements so far.
async fn acked_writer(url: &str, doc: &str) -> (Client, u64) {
    let mut writer = Client::connect_collab(url, doc, "any").await;
    writer.wait_authenticated().await;
    writer.wait_synced().await;
    // Once a SyncStep1 sent now is answered, the acknowledgement of the handshake's SyncStep2
    // (sent before it) has arrived too.
    writer.round_trip().await;
    let acks = writer.acks();
    (writer, acks)
}

/// Sends `n` one-character updates (waiting for each acknowledgement, or sending all at once
/// and then waiting for all), kills the server with SIGKILL right after the last
/// acknowledgement, restarts it, and checks that every acknowledged update is there.
async fn kill_9_after_acknowledgements(n: u64, one_by_one: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ChildServer::start(dir.path()).await;
    let (mut writer, base) = acked_writer(&server.collab_url(), "acked").await;
    let mut expected = String::new();
    for i in 0..n {
        let c = char::from(b'a' + (i % 26) as u8);
        writer.insert("t", i as u32, &c.to_string());
        expected.push(c);
        if one_by_one {
            writer.wait_acks(base + i + 1).await;
        }
    }
    writer.wait_acks(base + n).await;
    assert_eq!(
        writer.closed(),
        None,
        "the writer is slowed down, not closed"
    );
    server.kill9().await;

    let log = dir.path().join("restart.log");
    let server = ChildServer::start_with(dir.path(), &["--open-access"], Some(&log)).await;
    let mut reader = Client::connect(&server.ws_url("acked")).await;
    reader.wait_synced().await;
    assert_eq!(
        reader.text("t"),
        expected,
        "an acknowledged update was lost"
    );
    server.terminate().await;
    // The acknowledgements rested on the write-ahead file: the restart read it back.
    let logged = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        logged.contains("replayed the write-ahead file"),
        "the restart did not replay the write-ahead file:\n{logged}"
    );
}

#[tokio::test]
async fn every_acknowledged_update_survives_kill_9() {
    kill_9_after_acknowledgements(300, true).await;
}

/// A burst far larger than any outbox, sent without waiting.
#[tokio::test]
async fn a_burst_is_acknowledged_in_full_and_survives_kill_9() {
    kill_9_after_acknowledgements(2000, false).await;
}

/// One flush can cover many updates; releasing their relays and acknowledgements at once must
/// not overflow the outbox of a client that reads: the writer is slowed down instead.
#[tokio::test]
async fn a_burst_larger_than_an_outbox_closes_nobody() {
    const N: u64 = 2000;
    let mut server = TestServer::start().await;
    let mut observer = Client::connect(&server.ws_url("burst")).await;
    observer.wait_synced().await;
    let (mut writer, base) = acked_writer(&server.collab_url(), "burst").await;
    for i in 0..N {
        writer.insert("t", i as u32, "x");
    }
    writer.wait_acks(base + N).await;
    observer.wait_updates(N).await;
    assert_eq!((writer.closed(), observer.closed()), (None, None));
    assert_eq!(server.metric("debrief_slow_consumers_total").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn y_websocket_tokens_deny_with_4401_and_read_only_edits_close_with_4403() {
    let mut server = TestServer::with_tokens(Limits::default()).await;
    let mut denied = Client::connect(&format!("{}?token=wrong", server.ws_url("doc"))).await;
    let closed = denied.wait_closed().await;
    assert_eq!(closed.code, close::PERMISSION_DENIED);
    assert!(
        closed.reason.starts_with("invalid_token: "),
        "{}",
        closed.reason
    );
    let mut anonymous = Client::connect(&server.ws_url("doc")).await;
    assert_eq!(anonymous.wait_closed().await.code, close::PERMISSION_DENIED);

    let mut writer =
        Client::connect(&format!("{}?token={WRITER_TOKEN}", server.ws_url("doc"))).await;
    writer.wait_synced().await;
    writer.insert("t", 0, "hello");
    writer.remove("t", 0, 1);
    writer.round_trip().await;

    let mut reader =
        Client::connect(&format!("{}?token={READER_TOKEN}", server.ws_url("doc"))).await;
    reader.wait_synced().await;
    assert_eq!(reader.text("t"), "ello");
    // Its handshake carried the delete set it received; that changes nothing and is accepted.
    reader.round_trip().await;
    assert_eq!(reader.closed(), None);
    writer.insert("t", 4, "!");
    reader.wait_text("t", "ello!").await;

    reader.insert("t", 0, "X");
    let closed = reader.wait_closed().await;
    assert_eq!(closed.code, close::READ_ONLY);
    assert!(
        closed.reason.starts_with("read_only: "),
        "{}",
        closed.reason
    );
    assert_eq!(
        server
            .metric("debrief_updates_refused_read_only_total")
            .await,
        1
    );
    let mut check =
        Client::connect(&format!("{}?token={WRITER_TOKEN}", server.ws_url("doc"))).await;
    check.wait_text("t", "ello!").await;
    server.stop().await;
}

#[tokio::test]
async fn hocuspocus_read_only_refusals_leave_the_document_unchanged() {
    let mut server = TestServer::with_tokens(Limits::default()).await;
    let mut writer = Client::connect_collab(&server.collab_url(), "doc", WRITER_TOKEN).await;
    assert_eq!(writer.wait_authenticated().await, "read-write");
    writer.insert("t", 0, "kept");
    writer.wait_synced().await;
    writer.round_trip().await;

    let mut reader = Client::connect_collab(&server.collab_url(), "doc", READER_TOKEN).await;
    assert_eq!(reader.wait_authenticated().await, "readonly");
    reader.wait_text("t", "kept").await;
    reader.insert("t", 0, "not ");
    reader.wait_refusals(1).await;
    // Awareness from readers is relayed: people reading are present.
    reader.set_awareness(4242, 1, r#"{"user":"reader"}"#);
    writer
        .wait_awareness(4242, Some(r#"{"user":"reader"}"#))
        .await;
    writer.round_trip().await;
    assert_eq!(writer.text("t"), "kept");
    server.stop().await;
    let server = server.restart().await;
    let mut check = Client::connect_collab(&server.collab_url(), "doc", WRITER_TOKEN).await;
    check.wait_text("t", "kept").await;
}

#[tokio::test]
async fn denied_documents_answer_not_authenticated_and_a_retry_on_the_socket_works() {
    let mut server = TestServer::with_tokens(Limits::default()).await;
    let mut client = Client::connect_collab(&server.collab_url(), "doc", "wrong").await;
    // The token, then the SyncStep1 that followed it for the refused document.
    let denials = client.wait_denials(2).await;
    assert!(denials[0].starts_with("invalid_token: "), "{denials:?}");
    assert!(denials[1].starts_with("not_authenticated: "), "{denials:?}");
    client.send_raw(
        DocMessage::Auth(Auth::Token {
            token: Some(WRITER_TOKEN),
            provider_version: None,
        })
        .encode("doc"),
    );
    assert_eq!(client.wait_authenticated().await, "read-write");
    // The first SyncStep1 went unanswered (refused); this one is answered.
    client.send_message(Message::Sync(SyncMessage::Step1(&[0])));
    client.wait_synced().await;
    assert_eq!(client.closed(), None);
    assert!(server.metric("debrief_permission_denied_total").await >= 1);
    server.stop().await;
}

#[tokio::test]
async fn wrong_messages_get_documented_answers_and_close_detaches_one_document() {
    let mut server = TestServer::start().await;
    let url = server.collab_url();
    let mut a = Client::connect_collab(&url, "a", "t").await;
    a.wait_authenticated().await;
    a.wait_synced().await;

    a.send_raw(DocMessage::BroadcastStateless("hi").encode("a"));
    a.send_raw([&[1u8, b'a', 42][..], b"junk"].concat());
    a.send_raw(DocMessage::SyncStatus(1).encode("a"));
    a.send_raw(DocMessage::Stateless(r#"{"type":"nope"}"#).encode("a"));
    let replies = a.wait_stateless(4).await;
    let codes: Vec<String> = replies
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).expect("json");
            assert_eq!(v["type"], "error");
            v["code"].as_str().expect("code").to_owned()
        })
        .collect();
    assert_eq!(
        codes,
        [
            "broadcast_stateless_not_allowed",
            "unknown_message_type",
            "unexpected_message_type",
            "unknown_command"
        ]
    );

    // Close detaches the document: the other side sees the presence go, the socket stays.
    let mut b = Client::connect_collab(&url, "a", "t").await;
    b.wait_synced().await;
    a.set_awareness(7, 1, r#"{"n":"a"}"#);
    b.wait_awareness(7, Some(r#"{"n":"a"}"#)).await;
    a.send_raw(DocMessage::Close(None).encode("a"));
    b.wait_awareness(7, None).await;
    assert_eq!(a.closed(), None);
    a.send_raw(
        DocMessage::Auth(Auth::Token {
            token: Some("t"),
            provider_version: None,
        })
        .encode("a"),
    );
    // As a provider does after its token: SyncStep1, answered once attached.
    a.round_trip().await;
    b.insert("t", 0, "after reopening");
    a.wait_text("t", "after reopening").await;

    // A broken frame closes the socket with 1002 and the decoder's code.
    a.send_raw(vec![5, b'a']);
    let closed = a.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (close::PROTOCOL_ERROR, "length_overrun")
    );
    assert_eq!(b.closed(), None);
    server.stop().await;
}

#[tokio::test]
async fn a_full_document_answers_close_and_the_socket_stays_usable() {
    let limits = Limits {
        max_connections_per_document: 1,
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let url = server.collab_url();
    let mut first = Client::connect_collab(&url, "full", "t").await;
    first.wait_synced().await;
    let mut second = Client::connect_collab(&url, "full", "t").await;
    let reason = second.wait_doc_closed().await;
    assert!(reason.starts_with("too_many_connections"), "{reason}");
    assert_eq!(second.closed(), None);
    // Once there is room, the same socket opens the document.
    drop(first);
    server
        .wait_metric("debrief_collab_documents_open", |n| n == 0)
        .await;
    second.send_raw(
        DocMessage::Auth(Auth::Token {
            token: Some("t"),
            provider_version: None,
        })
        .encode("full"),
    );
    assert_eq!(second.wait_authenticated().await, "read-write");
    second.send_message(Message::Sync(SyncMessage::Step1(&[0])));
    second.wait_synced().await;
    server.stop().await;
}

#[tokio::test]
async fn pre_auth_queues_are_capped_and_time_limited() {
    let limits = Limits {
        max_pending_documents: 4,
        max_pending_bytes: 64 * 1024,
        authentication_deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let url = server.collab_url();

    // Many documents, none authenticated.
    let mut flood = Client::connect_collab_silent(&url, "d0").await;
    for i in 0..10 {
        flood.send_raw(DocMessage::QueryAwareness.encode(&format!("d{i}")));
    }
    let closed = flood.wait_closed().await;
    assert_eq!(closed.code, close::TOO_MANY_PENDING);
    assert!(
        closed.reason.starts_with("pending_documents_exceeded"),
        "{}",
        closed.reason
    );

    // Large frames queued for one document.
    let mut big = Client::connect_collab_silent(&url, "doc").await;
    let blob = vec![0u8; 20 * 1024];
    for _ in 0..5 {
        big.send_message(Message::Sync(SyncMessage::Update(&blob)));
    }
    let closed = big.wait_closed().await;
    assert_eq!(closed.code, close::TOO_MANY_PENDING);
    assert!(
        closed.reason.starts_with("pending_bytes_exceeded"),
        "{}",
        closed.reason
    );

    // A message that waits for a token that never comes.
    let mut idle = Client::connect_collab_silent(&url, "doc").await;
    idle.send_message(Message::QueryAwareness);
    let closed = idle.wait_closed().await;
    assert_eq!(closed.code, close::AUTHENTICATION_TIMEOUT);

    // Messages sent before the token are kept and handled once it is accepted.
    let mut early = Client::connect_collab_silent(&url, "doc").await;
    early.send_message(Message::Sync(SyncMessage::Step1(&[0])));
    early.send_raw(
        DocMessage::Auth(Auth::Token {
            token: Some("t"),
            provider_version: Some("4.7.0"),
        })
        .encode("doc"),
    );
    early.wait_authenticated().await;
    early.wait_synced().await;
    server.stop().await;
}

/// A `/collab` socket that stops reading is closed once its outbox fills; a writer and a reader
/// of the same document carry on.
#[tokio::test]
async fn a_slow_collab_reader_does_not_stall_the_others() {
    let limits = Limits {
        outbox_capacity: 16,
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let url = server.collab_url();
    let (mut slow, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    {
        use futures_util::SinkExt;
        let token = DocMessage::Auth(Auth::Token {
            token: Some("t"),
            provider_version: None,
        })
        .encode("slow");
        slow.send(tokio_tungstenite::tungstenite::Message::Binary(
            token.into(),
        ))
        .await
        .expect("send token");
    }
    let mut writer = Client::connect_collab(&url, "slow", "t").await;
    let mut reader = Client::connect_collab(&url, "slow", "t").await;
    writer.wait_synced().await;
    reader.wait_synced().await;
    flood_presence(server.addr, &mut writer, &mut reader).await;
    assert_eq!(server.metric("debrief_slow_consumers_total").await, 1);
    let (_, incoming) = slow.split();
    wait_socket_end(incoming).await;
    writer.insert("t", 0, "still flowing");
    reader.wait_text("t", "still flowing").await;
    assert!(reader.closed().is_none() && writer.closed().is_none());
    server.stop().await;
}
