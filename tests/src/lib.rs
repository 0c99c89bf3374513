//! Test support for the integration tests: the real server started in-process on port 0 with a
//! fresh data directory ([`TestServer`]), the real binary as a child process ([`ChildServer`]),
//! a y-websocket client built on yrs and tokio-tungstenite ([`Client`]), and a fresh PostgreSQL
//! database per test ([`postgres::TestDb`]), and several nodes on one database
//! ([`cluster::Cluster`]).

pub mod api;
pub mod client;
pub mod cluster;
pub mod postgres;
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

/// Most large awareness states [`flood_presence`] sends: 4,000 × 60 KB = 240 MB, far beyond what
/// loopback socket buffers hold.
pub const FLOOD_STATES: u64 = 4_000;

/// Publishes large awareness states (client 77) from `writer`, with a round trip after each so
/// that a healthy reader's queue stays short, until the server at `addr` counts a slow consumer
/// (a connection of the document that stops reading fills its outbox and is closed), then waits
/// until `reader` holds the last state. Presence is coalesced per tick (issue 21): superseded
/// states are dropped, so how many states fill a stalled connection's socket buffers and outbox
/// depends on timing, and the flood goes on until the server says so rather than for a count.
pub async fn flood_presence(addr: std::net::SocketAddr, writer: &mut Client, reader: &mut Client) {
    let blob = "s".repeat(60 * 1024);
    let state = |n: u64| format!(r#"{{"n":{n},"pad":"{blob}"}}"#);
    let slow_consumers = || async {
        let body = client::http_get(addr, "/metrics").await.1;
        body.lines()
            .find_map(|l| {
                l.strip_prefix("debrief_slow_consumers_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let last = within_for(
        Duration::from_secs(60),
        "a slow consumer to be closed",
        async {
            let mut clock = 0;
            while clock < FLOOD_STATES {
                for _ in 0..20 {
                    clock += 1;
                    writer.set_awareness(77, clock, &state(clock));
                    writer.round_trip().await;
                }
                if slow_consumers().await > 0 {
                    break;
                }
            }
            clock
        },
    )
    .await;
    reader.wait_awareness(77, Some(&state(last))).await;
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
