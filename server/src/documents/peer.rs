//! What a document owner holds of each connection: an id, a bounded outbox of ready-to-send
//! frames, the [`Framing`] its transport gave it, what it may do (and the token that decided it),
//! and a way to ask the connection to close with a code.
//!
//! The owner speaks no dialect. It hands each connection y-protocols messages (sync, awareness:
//! the content both dialects carry alike) and dialect-free [`Notice`]s ("applied, durable",
//! "access changed to read-only", …); the connection's [`Framing`], implemented once per dialect
//! by the transports, decides the bytes or the close each becomes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::documents::access::{Access, Denied};
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

/// What a document owner tells one connection about its own standing, in no dialect's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The connection is attached with this access: the first thing it hears of the document.
    Opened(Access),
    /// The connection's access changed to this (a review changed phase).
    Access(Access),
    /// Access to the document was withdrawn (a revoked session, a phase that hides the
    /// document); the owner detaches the connection.
    Withdrawn(Denied),
    /// An update from the connection is applied and durable, or held nothing new. Sent behind
    /// the flush that covers it.
    Applied,
    /// An update from the connection held something new and was refused: it may only read.
    Refused,
}

/// How a [`Notice`] reaches a connection in its dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The dialect has no word for it: nothing is sent.
    Nothing,
    /// A message (type and body, like a y-protocols message), framed by [`Framing::message`].
    Message(Bytes),
    /// The dialect can only say it by closing the connection with this code and reason.
    Close(u16, String),
}

/// One dialect's encoding of what an owner sends a connection. Implemented by each transport
/// (`/ws` and `/collab`); the owner never sees dialect bytes.
pub trait Framing: Send + Sync + std::fmt::Debug {
    /// The bytes that go before every message (a y-protocols message, or a
    /// [`Delivery::Message`]) to make its frame; empty when a message is its own frame. Framings
    /// with equal prefixes frame alike, so one broadcast makes one copy per distinct prefix.
    fn prefix(&self) -> &[u8];

    /// How `notice` reaches the connection.
    fn notice(&self, notice: &Notice) -> Delivery;

    /// The lane this connection is a member of, if it shares its outbox with others: the
    /// forwarded attachments of one entry node to one document (`docs/cluster.md`, "Each update
    /// crosses to each node once"). A broadcast goes to a lane once, under the tag
    /// [`Framing::to_lane`] gives, and the entry node hands it to each of its members. `None`
    /// (every socket): the connection's outbox is its own.
    fn seat(&self) -> Option<Seat> {
        None
    }

    /// The outbox tag ([`crate::documents::queue::Sender::tagged`]) under which a broadcast
    /// reaches every member of this connection's lane but the member `except`. Asked only of
    /// connections with a [`Framing::seat`].
    fn to_lane(&self, except: Option<u64>) -> u64 {
        let _ = except;
        0
    }
}

/// A connection's place in a lane ([`Framing::seat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    /// The lane, unique on this node.
    pub lane: u64,
    /// The connection within it.
    pub member: u64,
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
    /// How messages and notices are framed for it (its dialect).
    pub framing: Arc<dyn Framing>,
    /// What it may do with the document.
    pub grant: Grant,
    /// The token it authenticated with.
    pub credential: Credential,
}

impl Peer {
    /// The frame that carries the message `message` to this peer.
    pub fn frame(&self, message: &Bytes) -> Bytes {
        Framed::new(message.clone()).for_peer(self)
    }

    /// How `notice` reaches this peer.
    pub fn notice(&self, notice: &Notice) -> Delivery {
        self.framing.notice(notice)
    }
}

/// Distinct prefixes a [`Framed`] keeps frames for; peers with other prefixes get a copy each.
/// A document's Hocuspocus clients all use its name, as stock providers do.
const FRAMED_PREFIXES_KEPT: usize = 2;

/// One message and its frames, made once for each distinct [`Framing::prefix`] among the peers it
/// goes to: a broadcast to a thousand Hocuspocus sockets of one document, or one state sent to
/// every joiner of a storm, shares one copy instead of making one per peer.
#[derive(Debug, Clone)]
pub struct Framed {
    message: Bytes,
    /// Frames made so far, by prefix (a document has one or two).
    made: Vec<(Box<[u8]>, Bytes)>,
}

impl Framed {
    /// `message`, not framed yet.
    pub fn new(message: Bytes) -> Self {
        Framed {
            message,
            made: Vec::new(),
        }
    }

    /// Bytes of the message.
    pub fn len(&self) -> usize {
        self.message.len()
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
    }

    /// The frame for `peer`.
    pub fn for_peer(&mut self, peer: &Peer) -> Bytes {
        let prefix = peer.framing.prefix();
        if prefix.is_empty() {
            return self.message.clone();
        }
        if let Some((_, frame)) = self.made.iter().find(|(p, _)| **p == *prefix) {
            return frame.clone();
        }
        let mut frame = Vec::with_capacity(prefix.len() + self.message.len());
        frame.extend_from_slice(prefix);
        frame.extend_from_slice(&self.message);
        let frame = Bytes::from(frame);
        // Kept for a few prefixes only: a shared full state lives on, and routing keys
        // (`name\0n`) are the client's choice, so each new one would otherwise keep a copy of
        // the whole document.
        if self.made.len() < FRAMED_PREFIXES_KEPT {
            self.made.push((prefix.into(), frame.clone()));
        }
        frame
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
