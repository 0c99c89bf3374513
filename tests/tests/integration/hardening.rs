//! Issue 16 ("Hardening"): presence queries cannot be used to amplify traffic, request bodies,
//! document names and oversized frames get the documented answers, and every HTTP response
//! carries the security headers.

use debrief_proto::hocuspocus::DocMessage;
use debrief_proto::ywire::Message;
use debrief_server::limits::{Limits, MAX_FRAME_BYTES};
use debrief_tests::api::{request, send};
use debrief_tests::client::{http_get, http_get_with_headers};
use debrief_tests::server::{READER_TOKEN, WRITER_TOKEN};
use debrief_tests::{Client, TestServer};
use serde_json::json;

/// A presence state of a realistic size.
const STATE: &str = r##"{"user":{"name":"Ada Lovelace","color":"#30bced"},"cursor":null}"##;

/// Awareness frames (y-protocols type 1) among `frames`, skipping the Hocuspocus name prefix.
fn awareness_bytes(frames: &[(u64, Vec<u8>)], prefix: usize) -> (usize, usize) {
    let replies: Vec<usize> = frames
        .iter()
        .filter(|(_, f)| f.get(prefix) == Some(&1))
        .map(|(_, f)| f.len())
        .collect();
    (replies.len(), replies.iter().sum())
}

/// One 64 KiB frame holding 65,536 QueryAwareness messages, sent by a read-only observer, used
/// to bring back one full awareness table per message (33 MiB for a 64 KiB frame). It now gets
/// one answer: the first query of an interval is answered, the rest of the interval's are
/// dropped.
#[tokio::test]
async fn issue_16_a_flood_of_presence_queries_is_answered_once_y_websocket() {
    let server = TestServer::with_tokens(Limits::default()).await;
    let url = |token: &str| format!("{}?token={token}", server.ws_url("presence-flood"));
    let mut writer = Client::connect(&url(WRITER_TOKEN)).await;
    writer.wait_synced().await;
    writer.set_awareness(1, 1, STATE);
    writer.wait_awareness(1, Some(STATE)).await;
    let mut observer = Client::connect(&url(READER_TOKEN)).await;
    observer.wait_synced().await;
    observer.wait_awareness(1, Some(STATE)).await;
    let (joined, table) = awareness_bytes(&observer.frames(), 0);
    assert_eq!(joined, 1, "the table arrives once on join");

    let before = observer.frames().len();
    let flood = vec![3u8; 64 * 1024];
    observer.send_raw(flood.clone());
    // Everything the flood caused is queued before the answer to this.
    observer.round_trip().await;
    let (answers, bytes) = awareness_bytes(&observer.frames()[before..], 0);
    assert!(
        (1..=2).contains(&answers) && bytes <= 2 * table,
        "{answers} answers, {bytes} bytes for a {} byte flood (one table is {table} bytes)",
        flood.len()
    );
    assert!(observer.closed().is_none() && writer.closed().is_none());

    // A client that asks once, as on connect, gets its answer.
    let mut asker = Client::connect_silent(&url(READER_TOKEN)).await;
    asker.wait_awareness(1, Some(STATE)).await;
    asker.query_awareness();
    asker.round_trip().await;
    assert_eq!(awareness_bytes(&asker.frames(), 0).0, 2, "join + answer");
}

/// The same flood over `/collab`, where every message is a frame of its own.
#[tokio::test]
async fn issue_16_a_flood_of_presence_queries_is_answered_once_hocuspocus() {
    let server = TestServer::with_tokens(Limits::default()).await;
    let url = server.collab_url();
    let doc = "presence-flood";
    let prefix = doc.len() + 1;
    let mut writer = Client::connect_collab(&url, doc, WRITER_TOKEN).await;
    writer.wait_synced().await;
    writer.set_awareness(1, 1, STATE);
    writer.wait_awareness(1, Some(STATE)).await;
    let mut observer = Client::connect_collab(&url, doc, READER_TOKEN).await;
    observer.wait_synced().await;
    observer.wait_awareness(1, Some(STATE)).await;
    let (_, table) = awareness_bytes(&observer.frames(), prefix);

    let before = observer.frames().len();
    let query = DocMessage::QueryAwareness.encode(doc);
    let queries = 20_000;
    for _ in 0..queries {
        observer.send_raw(query.clone());
    }
    observer.round_trip().await;
    let (answers, bytes) = awareness_bytes(&observer.frames()[before..], prefix);
    assert!(
        (1..=2).contains(&answers) && bytes <= 2 * table,
        "{answers} answers, {bytes} bytes for {} bytes of queries (one table is {table} bytes)",
        queries * query.len()
    );
    assert!(observer.closed().is_none() && writer.closed().is_none());
}

/// A frame far over the limit (over tungstenite's own cap too) is refused like one just over
/// it: close 1009 `frame_too_large`, not a dropped connection.
#[tokio::test]
async fn issue_16_a_9_mib_frame_gets_1009() {
    let server = TestServer::start().await;
    let expected = (
        1009,
        format!("frame_too_large: limit is {MAX_FRAME_BYTES} bytes"),
    );
    let mut big = Client::connect_silent(&server.ws_url("huge")).await;
    big.send_raw(vec![0u8; 9 * 1024 * 1024]);
    let closed = big.wait_closed().await;
    assert_eq!((closed.code, closed.reason), expected.clone());

    let mut big = Client::connect_collab_silent(&server.collab_url(), "huge").await;
    big.send_message(Message::Awareness(&vec![0u8; 9 * 1024 * 1024]));
    let closed = big.wait_closed().await;
    assert_eq!((closed.code, closed.reason), expected);
}

/// A name that is not UTF-8 once percent-decoded gets the same JSON error as any bad name (and
/// an asset path likewise gets the JSON 404).
#[tokio::test]
async fn issue_16_a_name_that_is_not_utf8_gets_400_json() {
    let server = TestServer::start().await;
    for (path, status_wanted, code) in [
        ("/ws/%ff", 400, "invalid_document_name"),
        ("/ws/a%c3%28b", 400, "invalid_document_name"),
        ("/assets/%ff.js", 404, "not_found"),
    ] {
        let (status, headers, body) = http_get_with_headers(server.addr, path).await;
        assert_eq!(status, status_wanted, "{path}: {body}");
        let content_type = headers.iter().find(|(k, _)| k == "content-type");
        assert_eq!(
            content_type.map(|(_, v)| v.as_str()),
            Some("application/json"),
            "{path}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(json["code"], code, "{path}");
    }
}

/// Request bodies of the JSON API are limited to 64 KiB, except creating a review, which may
/// carry a Markdown report (up to 512 KiB) and takes up to 1 MiB.
#[tokio::test]
async fn issue_16_request_bodies_over_64_kib_get_413() {
    let server = TestServer::start().await;
    let padding = "x".repeat(64 * 1024);
    let join = json!({ "invite": padding, "name": "Ada" });
    let reply = request(server.addr, "POST", "/api/join", None, Some(&join)).await;
    let message = reply.assert_error(413, "body_too_large");
    assert!(message.contains("65536"), "{message}");

    // Just under the limit is read (and refused for what it says, not for its size).
    let join = json!({ "invite": "x".repeat(60 * 1024), "name": "Ada" });
    let reply = request(server.addr, "POST", "/api/join", None, Some(&join)).await;
    assert_ne!(reply.status, 413, "{}", reply.body);

    // A review created from a long Markdown report still fits.
    let report = format!("# Summary\n\n{}\n", "word ".repeat(40 * 1024));
    let create = json!({ "title": "Imported", "report_markdown": report });
    let reply = request(server.addr, "POST", "/api/reviews", None, Some(&create)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let too_big = "y".repeat(1024 * 1024 + 1);
    let reply = send(server.addr, "POST", "/api/reviews", None, Some(&too_big)).await;
    reply.assert_error(413, "body_too_large");
}

/// Every response carries the security headers: the app's HTML, its assets, the API, probes and
/// errors.
#[tokio::test]
async fn issue_16_responses_carry_security_headers() {
    let server = TestServer::start().await;
    for path in [
        "/",
        "/join",
        "/assets/missing.js",
        "/api/openapi.json",
        "/api/reviews/nope",
        "/healthz",
        "/metrics",
        "/no-such-page",
        "/ws/%ff",
    ] {
        let (status, headers, _) = http_get_with_headers(server.addr, path).await;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{path} ({status}) has no {name}: {headers:?}"))
        };
        let csp = header("content-security-policy");
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        assert!(directives.contains(&"script-src 'self'"), "{path}: {csp}");
        assert!(
            directives.contains(&"frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(directives.contains(&"object-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    // A plain GET of the health probe still answers as before.
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
}

/// The most a loopback connection can hold between the server's writes and a client that reads
/// nothing and whose receive buffer is fixed at `receive`: the server's send buffer grows up to
/// the kernel's `tcp_wmem` maximum.
fn socket_buffering_bound(receive: usize) -> usize {
    let send_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    // The kernel doubles a requested receive buffer for its own bookkeeping.
    send_max + 2 * receive
}

/// A client whose outbox is more than half full and that sends a message (its reader then waits
/// for half the outbox to be free) must not be closed as a slow consumer until the outbox really
/// holds its bound; it was closed at once, because the waiting reader took every slot freed
/// meanwhile from the owner.
#[tokio::test]
async fn issue_16_a_client_is_not_closed_while_its_outbox_has_room() {
    use debrief_proto::awareness::{decode_update, encode_update, AwarenessEntry};
    use debrief_proto::ywire::decode_frame;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    const CHUNK: usize = 4 * 1024 * 1024 - 4096;
    const RECEIVE: usize = 64 * 1024;
    const MORE: usize = 4;
    // Enough large frames that the socket cannot take them all: the writer is then stuck on one
    // of them, and every later frame stays in the outbox.
    let big = socket_buffering_bound(RECEIVE).div_ceil(CHUNK) + 2;
    let capacity = 2 * (big + MORE + 4);
    let limits = Limits {
        outbox_capacity: capacity,
        max_document_bytes: (big as u64 + 4) * CHUNK as u64,
        // The writer is stuck on a large frame from the first one the socket cannot take until
        // the client reads again, at the end: on a loaded machine that can take longer than the
        // default write timeout, which closes the client as not reading at all (this test failed
        // once that way, under the load of a parallel build).
        write_timeout: std::time::Duration::from_secs(600),
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let url = server.ws_url("half-full");

    // A client that does not read, with a small fixed receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(RECEIVE as u32)
        .expect("SO_RCVBUF");
    let tcp = socket.connect(server.addr).await.expect("connect");
    let (slow, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("handshake");
    let (mut slow_out, mut slow_in) = slow.split();

    let mut writer = Client::connect(&url).await;
    writer.wait_synced().await;
    for i in 0..big {
        writer.insert("t", 0, &"x".repeat(CHUNK - 64));
        writer.round_trip().await;
        assert!(writer.closed().is_none(), "large update {i}");
    }
    // Past half of the outbox, whatever of the large frames the writer has taken.
    let state = |n: u64| format!(r#"{{"n":{n}}}"#);
    let mut clock = 0u64;
    for _ in 0..capacity / 2 + 1 {
        clock += 1;
        writer.set_awareness(77, clock, &state(clock));
        writer.wait_awareness(77, Some(&state(clock))).await;
    }
    // The slow client says something: its reader waits for room before handing it on.
    let mine = r#"{"user":"slow"}"#;
    let payload = encode_update([AwarenessEntry {
        client: 99,
        clock: 1,
        state: mine,
    }]);
    slow_out
        .send(WsMessage::Binary(
            Message::Awareness(&payload).encode().into(),
        ))
        .await
        .expect("send from the slow client");
    // A few more frames, still within the bound.
    for _ in 0..MORE {
        clock += 1;
        writer.set_awareness(77, clock, &state(clock));
        writer.wait_awareness(77, Some(&state(clock))).await;
    }
    let closed = server.metric("debrief_slow_consumers_total").await;
    // It reads again: everything arrives, and then its own message, which was handed on once
    // there was room.
    let own_presence = async {
        while let Some(frame) = slow_in.next().await {
            let bytes = match frame {
                Ok(WsMessage::Binary(bytes)) => bytes,
                Ok(WsMessage::Close(close)) => {
                    eprintln!("the slow client was closed: {close:?}");
                    return false;
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("the slow client's socket failed: {e}");
                    return false;
                }
            };
            let Ok(messages) = decode_frame(&bytes) else {
                continue;
            };
            for m in messages {
                if let Message::Awareness(a) = m {
                    if decode_update(a).is_ok_and(|e| e.iter().any(|e| e.client == 99)) {
                        return true;
                    }
                }
            }
        }
        false
    };
    let heard = closed == 0
        && tokio::time::timeout(debrief_tests::WAIT, own_presence)
            .await
            .unwrap_or(false);
    // Stopped before asserting: a test that fails with this connection open cannot end its
    // runtime until the store is closed.
    server.stop().await;
    assert_eq!(
        closed,
        0,
        "closed with at most {} of {capacity} frames queued",
        big + capacity / 2 + 1 + MORE
    );
    assert!(heard, "the slow client's own presence never came back");
}

/// A shutdown does not wait for a client that stopped reading: its writer, stuck on a frame the
/// socket cannot take, gives up at once and the server stops within its close timeout. (It
/// waited for the whole write timeout, as long as the test harness's patience, so a test that
/// ended with such a client open failed now and then on a loaded machine.) The frames are
/// presence, so that nothing is left to compact at shutdown.
#[tokio::test]
async fn a_shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    const RECEIVE: usize = 64 * 1024;
    let state_bytes = Limits::default().max_awareness_state_bytes - 64;
    let frames = socket_buffering_bound(RECEIVE).div_ceil(state_bytes) + 4;
    let mut server = TestServer::start().await;
    let url = server.ws_url("stuck-reader");

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(RECEIVE as u32)
        .expect("SO_RCVBUF");
    let tcp = socket.connect(server.addr).await.expect("connect");
    let (_stuck, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("handshake");

    let mut writer = Client::connect(&url).await;
    writer.wait_synced().await;
    let filler = "x".repeat(state_bytes - 32);
    for clock in 1..=frames as u64 {
        let state = format!(r#"{{"n":{clock},"f":"{filler}"}}"#);
        writer.set_awareness(77, clock, &state);
        // Heard back: the same change is in the stuck client's outbox too.
        writer.wait_awareness(77, Some(&state)).await;
    }
    // More presence than the stuck client's socket can buffer: its writer is blocked now.
    let stopped =
        tokio::time::timeout(debrief_server::limits::WRITE_TIMEOUT / 2, server.stop()).await;
    assert!(
        stopped.is_ok(),
        "the server did not stop within half the write timeout"
    );
}
