//! Disk use (issue 16 item 8): the data directory stays within its documented bound across
//! compactions, clean restarts and `kill -9`; `/metrics` reports its size; a review's documents
//! share a storage quota whose refusal is clear and leaves reading intact.

use std::path::Path;

use debrief_server::limits::Limits;
use debrief_tests::api::Review;
use debrief_tests::client::http_get;
use debrief_tests::{ChildServer, Client, TestServer};
use serde_json::json;

/// The documented bound (README, "Disk use"): sled's files hold at most this many times the
/// bytes the documents hold at their largest (snapshot plus log, as the size limit counts), plus
/// [`BOUND_SLACK`]; the write-ahead segments come on top.
const BOUND_FACTOR: u64 = 10;
/// sled's fixed overhead.
const BOUND_SLACK: u64 = 8 << 20;
/// The log reaches this before it is compacted (`COMPACT_AFTER_BYTES`).
const LOG_AT_MOST: u64 = 4 << 20;

/// Bytes by top-level entry, for the failure message.
fn breakdown(path: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(path)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                dir_bytes(&e.path()),
            )
        })
        .filter(|(_, bytes)| *bytes > 4096)
        .collect();
    out.sort();
    out
}

fn dir_bytes(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).expect("stat");
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .expect("list")
        .map(|e| dir_bytes(&e.expect("entry").path()))
        .sum()
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    let body = http_get(addr, "/metrics").await.1;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the server has completed more than `after` compactions.
async fn wait_compactions(server: &ChildServer, after: u64) -> u64 {
    debrief_tests::within("a compaction", async {
        loop {
            let n = metric(server.addr, "debrief_compactions_total")
                .await
                .unwrap_or(0);
            if n > after {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Inserts 1 MiB in front of the document in four updates and deletes it again: the log grows
/// by about 1 MiB, the document's content stays the same.
async fn churn(client: &mut Client, cycles: usize) {
    let piece = "x".repeat(256 << 10);
    for _ in 0..cycles {
        for _ in 0..4 {
            client.insert("t", 0, &piece);
        }
        client.round_trip().await;
        client.remove("t", 0, 4 * (256 << 10));
        client.round_trip().await;
    }
}

/// A benchmark-like run: a 2 MiB document, 1 MiB of inserted and deleted text at a time (a
/// compaction every 4 MiB of log), clean stops, a `kill -9`, and the data directory measured after
/// each stop. Before chunked snapshots, each compaction left the whole snapshot behind in sled's
/// `blobs/`, and every large log record too.
#[tokio::test]
async fn the_data_directory_stays_within_its_bound_across_compactions_restarts_and_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let base = "b".repeat(2 << 20);
    let live = base.len() as u64;
    let held = live + LOG_AT_MOST;
    let bound = BOUND_FACTOR * held + BOUND_SLACK;
    let mut sizes = Vec::new();

    let server = ChildServer::start(&data).await;
    let mut client = Client::connect(&server.ws_url("big")).await;
    client.wait_synced().await;
    for piece in base.as_bytes().chunks(256 << 10) {
        client.insert(
            "t",
            client.text_len("t"),
            std::str::from_utf8(piece).expect("ascii"),
        );
    }
    client.round_trip().await;
    churn(&mut client, 12).await;
    wait_compactions(&server, 2).await;
    client.close().await;
    assert!(server.terminate().await.success());
    sizes.push(("first clean stop", dir_bytes(&data), breakdown(&data)));

    for round in 0..2 {
        let server = ChildServer::start(&data).await;
        let mut client = Client::connect(&server.ws_url("big")).await;
        client.wait_synced().await;
        assert_eq!(client.text_len("t") as u64, live);
        churn(&mut client, 8).await;
        wait_compactions(&server, 1).await;
        client.close().await;
        if round == 0 {
            sizes.push((
                "running, before kill -9",
                dir_bytes(&data),
                breakdown(&data),
            ));
            server.kill9().await;
        } else {
            assert!(server.terminate().await.success());
            sizes.push((
                "clean stop after the kill -9",
                dir_bytes(&data),
                breakdown(&data),
            ));
        }
    }

    let server = ChildServer::start(&data).await;
    let mut client = Client::connect(&server.ws_url("big")).await;
    client.wait_synced().await;
    assert_eq!(client.text_len("t") as u64, live, "nothing was lost");
    client.close().await;
    assert!(server.terminate().await.success());
    sizes.push(("last clean stop", dir_bytes(&data), breakdown(&data)));
    eprintln!("document {live} bytes, bound {bound} plus wal/: {sizes:?}");
    for (when, bytes, parts) in sizes {
        let wal = parts
            .iter()
            .find(|(name, _)| name == "wal")
            .map_or(0, |(_, b)| *b);
        assert!(
            bytes - wal <= bound,
            "{when}: the data directory holds {bytes} bytes ({wal} of them write-ahead), over \
             the bound of {bound} ({BOUND_FACTOR} × {held} + {BOUND_SLACK}): {parts:?}"
        );
    }
    assert_eq!(dir_bytes(&data.join("blobs")), 0, "sled wrote no blob");
}

#[tokio::test]
async fn metrics_report_the_size_of_the_data_directory() {
    let server = TestServer::start().await;
    let empty = server.wait_metric("debrief_store_bytes", |v| v > 0).await;
    assert_eq!(server.metric("debrief_store_blob_bytes").await, 0);
    assert_eq!(server.metric("debrief_store_damaged_bytes").await, 0);
    let mut client = Client::connect(&server.ws_url("grows")).await;
    client.wait_synced().await;
    client.insert("t", 0, &"g".repeat(1 << 20));
    client.round_trip().await;
    // Cached for at most a second: wait for a measurement that includes the write.
    let grown = server
        .wait_metric("debrief_store_bytes", |v| v >= empty + (1 << 20))
        .await;
    let on_disk = dir_bytes(&server.data_dir());
    assert!(
        grown <= on_disk + (1 << 20) && on_disk <= grown + (4 << 20),
        "reported {grown}, the directory holds {on_disk}"
    );
    assert!(server.metric("debrief_store_wal_bytes").await >= 1 << 20);
}

#[tokio::test]
async fn a_review_over_its_storage_quota_refuses_writes_with_a_clear_error_and_stays_readable() {
    let limits = Limits {
        max_review_bytes: 100_000,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let review = Review::create(server.addr, "Quota").await;
    let thread = json!({ "body": "before the quota" });
    let made = review
        .call("author", "POST", "/threads", Some(thread))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let author = review.sessions["author"].clone();
    let report_url = format!("{}?token={author}", server.ws_url(&review.doc("report")));
    let notes_url = format!("{}?token={author}", server.ws_url(&review.doc("notes")));

    let mut writer = Client::connect(&report_url).await;
    writer.wait_synced().await;
    let chunk = "q".repeat(20_000);
    for _ in 0..4 {
        writer.insert("t", 0, &chunk);
        writer.round_trip().await;
    }
    // Less than one request body (64 KiB) is left: the server's own writes stop.
    let refused = review
        .call(
            "author",
            "POST",
            "/threads",
            Some(json!({ "body": "one more" })),
        )
        .await;
    assert_eq!(
        refused.assert_error(413, "review_quota_exceeded"),
        "the review's documents are at their storage quota; they can still be read"
    );
    writer.insert("t", 0, &chunk);
    let closed = writer.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (
            4413,
            "review_quota_exceeded: the review's documents may hold at most 100000 bytes together"
        )
    );

    // Reads work: a new connection syncs what was stored, and its handshake is not refused.
    let mut reader = Client::connect(&report_url).await;
    reader.wait_text("t", &"q".repeat(80_000)).await;
    reader.round_trip().await;
    assert!(reader.closed().is_none(), "a reader is not closed");
    let read = review.call("author", "GET", "", None).await;
    assert_eq!(read.status, 200, "{}", read.body);

    // The quota is the review's: another of its documents is refused too.
    review.move_to("review").await;
    review.move_to("meeting").await;
    let mut notes = Client::connect(&notes_url).await;
    notes.wait_synced().await;
    notes.insert("t", 0, &chunk);
    let closed = notes.wait_closed().await;
    assert_eq!(closed.code, 4413);
    assert!(closed.reason.starts_with("review_quota_exceeded: "));
    assert_eq!(
        server.metric("debrief_review_quota_refusals_total").await,
        3
    );
}
