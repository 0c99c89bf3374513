//! What a document owner holds of each connection: an id, a bounded outbox of ready-to-send
//! frames, the dialect that decides how a message is framed, what it may do (and the token that
//! decided it), and a way to ask the connection to close with a code.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::documents::access::Access;
use crate::documents::compact;
use crate::documents::queue;

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

/// What a connection may currently do with a document. Shared between the document's owner and
/// the connection's session, so that a change of access (a review's phase, a revoked session)
/// takes effect at once on both sides.
#[derive(Debug, Clone)]
pub struct Grant(Arc<AtomicU8>);

const REVOKED: u8 = 0;
const READ_ONLY: u8 = 1;
const READ_WRITE: u8 = 2;

impl Grant {
    /// A grant that starts as `access`.
    pub fn new(access: Access) -> Self {
        let g = Grant(Arc::new(AtomicU8::new(REVOKED)));
        g.set(Some(access));
        g
    }

    /// Whether the connection may write now.
    pub fn writable(&self) -> bool {
        self.0.load(Ordering::Acquire) == READ_WRITE
    }

    /// Whether access was withdrawn altogether.
    pub fn revoked(&self) -> bool {
        self.0.load(Ordering::Acquire) == REVOKED
    }

    /// The access now, `None` once revoked.
    pub fn get(&self) -> Option<Access> {
        match self.0.load(Ordering::Acquire) {
            READ_WRITE => Some(Access::ReadWrite),
            READ_ONLY => Some(Access::ReadOnly),
            _ => None,
        }
    }

    /// Changes the access; `None` revokes it.
    pub fn set(&self, access: Option<Access>) {
        let v = match access {
            Some(Access::ReadWrite) => READ_WRITE,
            Some(Access::ReadOnly) => READ_ONLY,
            None => REVOKED,
        };
        self.0.store(v, Ordering::Release);
    }
}

/// The token a connection authenticated with, kept so that its access can be decided again when
/// a review changes. A secret: it never appears in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Credential(Arc<str>);

impl Credential {
    /// Wraps a token.
    pub fn new(token: &str) -> Self {
        Credential(Arc::from(token))
    }

    /// The token, for the authorizer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// One attachment of a connection to a document, as seen by the document's owner. A
/// `/collab` socket has one per document it opened, each with its own id.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The attachment's id.
    pub conn: ConnId,
    /// Frames for this connection (shared by every document of a `/collab` socket).
    pub outbox: queue::Sender<Bytes>,
    /// Closes the connection.
    pub kick: Kick,
    /// How messages are framed for it.
    pub dialect: Dialect,
    /// What it may do with the document.
    pub grant: Grant,
    /// The token it authenticated with.
    pub credential: Credential,
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

/// The connections attached to one document, in a vector: a document has a handful of them, so
/// a scan is as quick as a hash lookup, and an idle document with one reader keeps one slot
/// instead of a hash table's four.
#[derive(Debug, Default)]
pub struct Peers(Vec<Peer>);

impl Peers {
    /// The attachment `conn`.
    pub fn get(&self, conn: ConnId) -> Option<&Peer> {
        self.0.iter().find(|p| p.conn == conn)
    }

    /// Whether `conn` is attached.
    pub fn contains(&self, conn: ConnId) -> bool {
        self.get(conn).is_some()
    }

    /// Attaches `peer` (its id must not be attached yet).
    pub fn insert(&mut self, peer: Peer) {
        compact::push(&mut self.0, peer);
    }

    /// Detaches `conn`, returning it if it was attached.
    pub fn remove(&mut self, conn: ConnId) -> Option<Peer> {
        let i = self.0.iter().position(|p| p.conn == conn)?;
        Some(compact::swap_remove(&mut self.0, i))
    }

    /// Every attachment.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.0.iter()
    }

    /// The ids of every attachment.
    pub fn conns(&self) -> Vec<ConnId> {
        self.0.iter().map(|p| p.conn).collect()
    }

    /// How many are attached.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is attached.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Detaches every one.
    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }
}
