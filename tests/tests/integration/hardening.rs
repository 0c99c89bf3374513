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
