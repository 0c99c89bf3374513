//! What a document owner holds of each connection: an id, a bounded outbox of ready-to-send
//! frames, and a way to ask the connection to close with a code.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

/// Identifies one WebSocket connection for the lifetime of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A request to close a connection: the first request wins, later ones are ignored.
#[derive(Debug, Clone, Default)]
pub struct Kick(Arc<KickInner>);

#[derive(Debug, Default)]
struct KickInner {
    reason: Mutex<Option<(u16, String)>>,
    notify: Notify,
}

impl Kick {
    /// Asks the connection to close with `code` and `reason`.
    pub fn kick(&self, code: u16, reason: impl Into<String>) {
        {
            let mut slot = match self.0.reason.lock() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            if slot.is_some() {
                return;
            }
            *slot = Some((code, reason.into()));
        }
        self.0.notify.notify_one();
    }

    /// Waits until someone asked this connection to close, and returns the code and reason.
    pub async fn kicked(&self) -> (u16, String) {
        loop {
            if let Some(r) = self.peek() {
                return r;
            }
            self.0.notify.notified().await;
        }
    }

    /// The close request, if there is one.
    pub fn peek(&self) -> Option<(u16, String)> {
        match self.0.reason.lock() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A connection as seen by a document owner.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The connection's id.
    pub conn: ConnId,
    /// Frames for this connection, already encoded for its dialect.
    pub outbox: mpsc::Sender<Bytes>,
    /// Closes the connection.
    pub kick: Kick,
}
