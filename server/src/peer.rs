//! What a document owner holds of each connection: an id, a bounded outbox of ready-to-send
//! frames, the dialect that decides how a message is framed, whether it may write, and a way to
//! ask the connection to close with a code.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// How a connection frames the y-protocols messages an owner produces.
#[derive(Debug, Clone)]
pub enum Dialect {
    /// `/ws/{doc}`: a message is a frame of its own.
    YWebsocket,
    /// `/collab`: a message is preceded by the document's name (its routing key as the client
    /// sent it), and updates are acknowledged with SyncStatus.
    Hocuspocus {
        /// `varString(key)`.
        prefix: Bytes,
    },
}

/// Whether a connection may change a document. Shared with the connection's session, so that a
/// change of access (re-authentication, and later a review's phase) takes effect at once.
#[derive(Debug, Clone)]
pub struct Writable(Arc<AtomicBool>);

impl Writable {
    /// A flag that starts as `writable`.
    pub fn new(writable: bool) -> Self {
        Writable(Arc::new(AtomicBool::new(writable)))
    }

    /// Whether the connection may write now.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Grants or withdraws write access.
    pub fn set(&self, writable: bool) {
        self.0.store(writable, Ordering::Release);
    }
}

/// One attachment of a connection to a document, as seen by the document's owner. A
/// `/collab` socket has one per document it opened, each with its own id.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The attachment's id.
    pub conn: ConnId,
    /// Frames for this connection (shared by every document of a `/collab` socket).
    pub outbox: mpsc::Sender<Bytes>,
    /// Closes the connection.
    pub kick: Kick,
    /// How messages are framed for it.
    pub dialect: Dialect,
    /// Whether it may change the document.
    pub writable: Writable,
}

impl Peer {
    /// The frame that carries the y-protocols message `message` to this peer.
    pub fn frame(&self, message: &Bytes) -> Bytes {
        match &self.dialect {
            Dialect::YWebsocket => message.clone(),
            Dialect::Hocuspocus { prefix } => {
                let mut out = Vec::with_capacity(prefix.len() + message.len());
                out.extend_from_slice(prefix);
                out.extend_from_slice(message);
                Bytes::from(out)
            }
        }
    }

    /// Whether it expects a SyncStatus for each update it sends.
    pub fn wants_acks(&self) -> bool {
        matches!(self.dialect, Dialect::Hocuspocus { .. })
    }
}
