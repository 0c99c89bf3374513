//! Test support for the integration tests: the real server started in-process on port 0 with a
//! fresh data directory ([`TestServer`]), the real binary as a child process ([`ChildServer`]),
//! and a y-websocket client built on yrs and tokio-tungstenite ([`Client`]).

pub mod client;
pub mod server;

pub use client::{Client, Closed};
pub use server::{ChildServer, TestServer};

use std::future::Future;
use std::time::Duration;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}
