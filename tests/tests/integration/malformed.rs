//! Bad input: every decode error class, text frames, bad updates, bad document names, and an
//! update that makes yrs panic. The offender is closed with a documented code; others carry on.

use debrief_tests::client::http_get;
use debrief_tests::fixture;
use debrief_tests::{Client, TestServer};

/// Frames and the close reason each must get (close code 1002, reason = the error's code).
const BROKEN_FRAMES: &[(&str, &[u8])] = &[
    ("empty_frame", &[]),
    ("truncated", &[0x00]),
    ("unknown_message_type", &[0x07]),
    ("unknown_sync_step", &[0x00, 0x05, 0x00]),
    ("length_overrun", &[0x00, 0x02, 0x10, 0x01]),
    (
        "varint_overflow",
        &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ),
    ("unknown_auth_type", &[0x02, 0x03]),
    ("invalid_utf8", &[0x02, 0x00, 0x02, 0xc3, 0x28]),
];

#[tokio::test]
async fn each_decode_error_closes_only_the_offender() {
    let server = TestServer::start().await;
    let url = server.ws_url("robust");
    let mut bystander = Client::connect(&url).await;
    bystander.wait_synced().await;
    for (i, (code, frame)) in BROKEN_FRAMES.iter().enumerate() {
        let mut bad = Client::connect_silent(&url).await;
        bad.send_raw(frame.to_vec());
        let closed = bad.wait_closed().await;
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (1002, *code),
            "frame {frame:?}"
        );
        // The bystander keeps syncing through every failure.
        let mut peer = Client::connect(&url).await;
        bystander.insert("t", 0, &i.to_string());
        bystander.round_trip().await;
        let expected = bystander.text("t");
        peer.wait_text("t", &expected).await;
    }
    assert!(bystander.closed().is_none());
}

#[tokio::test]
async fn text_frames_are_refused() {
    let server = TestServer::start().await;
    let mut c = Client::connect_silent(&server.ws_url("text")).await;
    c.send_text("hello");
    let closed = c.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1003, "text_frame: the protocol is binary")
    );
}

#[tokio::test]
async fn garbage_updates_are_rejected_and_nothing_is_kept() {
    let server = TestServer::start().await;
    let url = server.ws_url("garbage");
    let mut good = Client::connect(&url).await;
    good.insert("t", 0, "before");
    good.round_trip().await;
    let mut bad = Client::connect_silent(&url).await;
    bad.send_update(&[0x05, 0x01]);
    let closed = bad.wait_closed().await;
    assert_eq!(closed.code, 4422);
    assert!(
        ["invalid_update", "update_panicked"].contains(&closed.reason.as_str()),
        "reason {:?}",
        closed.reason
    );
    let state_vector_garbage = [0x00, 0x00, 0x03, 0xff, 0xff, 0xff];
    let mut bad_sv = Client::connect_silent(&url).await;
    bad_sv.send_raw(state_vector_garbage.to_vec());
    let closed = bad_sv.wait_closed().await;
    assert_eq!(closed.code, 1002);
    assert!(
        closed.reason.starts_with("invalid_state_vector"),
        "{closed:?}"
    );
    good.insert("t", 6, " and after");
    let mut reader = Client::connect(&url).await;
    reader.wait_text("t", "before and after").await;
}

/// `bad.bin` made yrs panic half-way through applying it (its GC struct claims clock
/// 2,542,729,543 of a client the document has at 80); it is now refused before it touches the
/// document (issue 16), and the half-applied text it carries must still never appear.
#[tokio::test]
async fn an_update_that_panics_yrs_is_contained() {
    let (base, bad) = (fixture("base.bin"), fixture("bad.bin"));

    let server = TestServer::start().await;
    let url = server.ws_url("panic");
    let mut author = Client::connect(&url).await;
    author.wait_synced().await;
    author.send_update(&base);
    author.round_trip().await;
    let mut other = Client::connect(&url).await;
    other.wait_synced().await;
    let base_state = other.doc.transact().state_vector();

    author.send_update(&bad);
    let closed = author.wait_closed().await;
    assert_eq!(closed.code, 4422);
    assert!(
        closed
            .reason
            .starts_with("invalid_update: clock_too_far_ahead"),
        "{closed:?}"
    );
    assert_eq!(server.metric("debrief_documents_reloaded_total").await, 0);

    // The others carry on.
    let mut third = Client::connect(&url).await;
    third.wait_synced().await;
    other.insert("after", 0, "still syncing");
    third.wait_text("after", "still syncing").await;

    // Nothing of the bad update was kept, in memory or on disk.
    let server = server.restart().await;
    let mut reader = Client::connect(&server.ws_url("panic")).await;
    reader.wait_text("after", "still syncing").await;
    use yrs::{ReadTxn, Transact};
    let sv = reader.doc.transact().state_vector();
    let clean_writer = other.doc.client_id();
    for (client, clock) in sv.iter() {
        if *client != clean_writer {
            let before = base_state.get(client);
            assert!(
                *clock <= before,
                "client {client} at clock {clock}, base had {before}"
            );
        }
    }
}

#[tokio::test]
async fn bad_document_names_get_400_json() {
    let server = TestServer::start().await;
    let long = "x".repeat(201);
    for name in ["bad%20name", "a%2Fb", long.as_str()] {
        let (status, body) = http_get(server.addr, &format!("/ws/{name}")).await;
        assert_eq!(status, 400, "{name}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(json["code"], "invalid_document_name");
        assert!(json["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 to 200")));
    }
}

/// An update that yrs accepts but parks as pending, in a form that makes every later encoding
/// panic: it must be refused up front, or the document could never be synced again.
#[tokio::test]
async fn a_pending_update_that_breaks_encoding_is_refused() {
    let (base, bad) = (fixture("base.bin"), fixture("bad-pending.bin"));

    let server = TestServer::start().await;
    let url = server.ws_url("pending");
    let mut author = Client::connect(&url).await;
    author.wait_synced().await;
    author.send_update(&base);
    author.round_trip().await;
    author.send_update(&bad);
    let closed = author.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4422, "update_panicked")
    );
    // yrs took it in before the encoding broke: the document was rebuilt from storage.
    assert_eq!(server.metric("debrief_documents_reloaded_total").await, 1);

    // The document still syncs, for newcomers and after a restart.
    let mut other = Client::connect(&url).await;
    other.wait_synced().await;
    other.insert("after", 0, "fine");
    other.round_trip().await;
    let server = server.restart().await;
    let mut reader = Client::connect(&server.ws_url("pending")).await;
    reader.wait_text("after", "fine").await;
}
