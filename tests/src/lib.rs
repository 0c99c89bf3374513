//! Test support for the integration tests: the real server started in-process on port 0 with a
//! fresh data directory ([`TestServer`]), the real binary as a child process ([`ChildServer`]),
//! and a y-websocket client built on yrs and tokio-tungstenite ([`Client`]).

pub mod api;
pub mod client;
pub mod raw;
pub mod server;

pub use client::{Client, Closed};
pub use server::{ChildServer, TestServer};

use std::future::Future;
use std::time::Duration;

/// An update from `server/tests/fixtures/yrs-panic` (found by mutation fuzzing yrs 0.28.1).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/fixtures/yrs-panic")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(WAIT, what, fut).await
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `patience`.
pub async fn within_for<T>(patience: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(patience, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {patience:?} waiting for {what}"),
    }
}

/// Large awareness states sent by [`flood_presence`]; 400 × 60 KB = 24 MB, far beyond what
/// loopback socket buffers hold, so a connection that does not read fills its outbox.
pub const FLOOD_STATES: u64 = 400;

/// Publishes [`FLOOD_STATES`] large awareness states (client 77) from `writer`, with a round trip
/// after each so that a healthy reader's queue stays short, and waits until `reader` holds the
/// last one. Presence is relayed to every connection of the document, so any connection that
/// stops reading is closed as a slow consumer meanwhile.
pub async fn flood_presence(writer: &mut Client, reader: &mut Client) {
    let blob = "s".repeat(60 * 1024);
    let state = |n: u64| format!(r#"{{"n":{n},"pad":"{blob}"}}"#);
    for clock in 1..=FLOOD_STATES {
        writer.set_awareness(77, clock, &state(clock));
        writer.round_trip().await;
    }
    reader.wait_awareness(77, Some(&state(FLOOD_STATES))).await;
}

/// Waits until a raw socket's incoming side ends (the server closed it), whatever was buffered.
pub async fn wait_socket_end<S, T, E>(mut incoming: S)
where
    S: futures_util::Stream<Item = Result<T, E>> + Unpin,
{
    use futures_util::StreamExt;
    within("the slow socket to end", async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
}
