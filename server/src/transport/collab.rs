//! The Hocuspocus dialect at `GET /collab`: one socket carries many documents, each opened with
//! its own token, each attached to the same document owner that `/ws/{doc}` clients of that name
//! use (so both dialects converge on one document).
//!
//! Per document (keyed by the name field as sent, which may be a `name\0session` routing key):
//!
//! - messages that arrive before its token wait in a queue; so do those that arrive while the
//!   document is loading after the token was accepted. Waiting is bounded per socket (documents,
//!   messages, bytes; [`crate::limits`]) and in time: past a cap the socket is closed with 4429,
//!   past the deadline with 4408.
//! - the token is decided by the [`crate::documents::access::Authorizer`]. Accepted: `Authenticated(scope)`,
//!   then the server's SyncStep1 and the current awareness, then the queued messages in order.
//!   Refused: `PermissionDenied(reason)`, the queue is dropped, later messages for the document
//!   are answered `PermissionDenied("not_authenticated: …")` until a new token is accepted on the
//!   same socket.
//! - every Update or SyncStep2 is answered with SyncStatus(1) once the flush that holds it has
//!   completed, or SyncStatus(0) when a read-only connection sent something new (not applied).
//! - Stateless goes to the [`crate::transport::stateless::StatelessHandler`]; BroadcastStateless, types
//!   clients must not send and unknown types are answered with a stateless JSON error.
//! - Close detaches that one document; the socket stays open.
//!
//! - a socket must send a token within [`crate::limits::FIRST_TOKEN_DEADLINE`] (4408); queued
//!   messages count against the unauthenticated budgets of [`crate::transport::admission`] (4503), and a new
//!   socket is refused with 4503 while they are full.
//! - one document is attached at most [`crate::limits::MAX_ATTACHMENTS_PER_SOCKET`] times per
//!   socket (a Close message for the key past it).
//!
//! A frame that cannot be decoded closes the socket with 1002 and the decoder's error code.

use std::sync::Arc;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::hocuspocus::{
    decode_frame, document_of, name_prefix, Auth, DocMessage, Frame, MSG_PING, MSG_PONG,
    SCOPE_READ_ONLY, SCOPE_READ_WRITE, SYNC_STATUS_APPLIED, SYNC_STATUS_REFUSED,
};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::documents::access::Access;
use crate::documents::command::{DocHandle, Incoming, JoinError};
use crate::documents::compact;
use crate::documents::peer::{ConnId, Credential, Delivery, Framing, Grant, Kick, Notice, Peer};
use crate::documents::presence::QueryGate;
use crate::documents::queue;
use crate::limits::{valid_document_name, MAX_DOCUMENT_NAME_LEN, PING_INTERVAL, STATELESS_TIMEOUT};
use crate::metrics::Metrics;
use crate::transport::admission::{Busy, Confirming, Connection, Meter};
use crate::transport::socket::{
    come_back_later, join, meter_of, next_frame, outbox_room, upgrade_required, writer, Sink,
    Stream, Upgrade,
};
use crate::transport::state::AppState;
use crate::transport::stateless::{error_json, StatelessRequest};

/// The Hocuspocus [`Framing`] of one document of a socket: every message behind the document's
/// name (its routing key as the client sent it); access is told with `Authenticated(scope)` or
/// `PermissionDenied(reason)`, and updates are acknowledged with SyncStatus.
#[derive(Debug, Clone)]
pub struct Hocuspocus {
    /// `varString(key)`.
    prefix: Bytes,
}

impl Hocuspocus {
    /// The framing for the document named `key` on a socket.
    pub fn new(key: &str) -> Self {
        Hocuspocus {
            prefix: Bytes::from(name_prefix(key)),
        }
    }
}

/// The scope an `Authenticated` answer names for `access`.
fn scope(access: Access) -> &'static str {
    match access {
        Access::ReadWrite => SCOPE_READ_WRITE,
        Access::ReadOnly => SCOPE_READ_ONLY,
    }
}

impl Framing for Hocuspocus {
    fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        let body = match notice {
            Notice::Opened(access) | Notice::Access(access) => {
                DocMessage::Auth(Auth::Authenticated(scope(*access))).encode_body()
            }
            Notice::Withdrawn(denied) => {
                DocMessage::Auth(Auth::PermissionDenied(&denied.reason())).encode_body()
            }
            Notice::Applied => return Delivery::Message(Bytes::from_static(SYNC_STATUS_APPLIED)),
            Notice::Refused => return Delivery::Message(Bytes::from_static(SYNC_STATUS_REFUSED)),
        };
        Delivery::Message(Bytes::from(body))
    }
}

/// `GET /collab`: upgrades to a Hocuspocus session.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ws: Result<Upgrade, ()>,
    conn_info: Result<ConnectInfo<Connection>, ExtensionRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => return upgrade_required("Hocuspocus"),
    };
    let meter = meter_of(conn_info);
    // Refused over the socket, like every other refusal: stock clients see close codes.
    let admitted = meter.as_ref().map_or(Ok(()), |m| m.admit());
    ws.accept(&state.clone(), move |socket| {
        // Split before the session's future is made: the halves are pointers, and a future keeps
        // room for its arguments for its whole life (every open socket has one).
        let halves = socket.split();
        let conn = state.conn_id();
        let span = tracing::debug_span!("collab", %conn);
        session(halves, state, (meter, admitted)).instrument(span)
    })
}

async fn session(
    (mut sink, stream): (Sink, Stream),
    state: Arc<AppState>,
    (meter, admitted): (Option<Arc<Meter>>, Result<(), Busy>),
) {
    Metrics::inc(&state.metrics.connections_open);
    let (outbox, outbox_rx) = queue::channel(state.limits.outbox_capacity);
    let kick = Kick::default();
    let done = state.shutdown.child_token();
    if let Err(busy) = admitted {
        tracing::debug!("refused: the unauthenticated budget is full");
        kick.kick(close::SERVER_BUSY, busy.reason());
        writer(&mut sink, outbox_rx, kick, done, &state).await;
        Metrics::dec(&state.metrics.connections_open);
        return;
    }
    let mut session = Session {
        state: state.clone(),
        outbox,
        kick: kick.clone(),
        entries: Entries::default(),
        joins: FuturesUnordered::new(),
        pending_messages: 0,
        pending_bytes: 0,
        first_token_by: Some(Instant::now() + state.limits.first_token_deadline),
        meter,
    };
    tokio::join!(
        writer(&mut sink, outbox_rx, kick, done.clone(), &state),
        session.run(stream, &done),
    );
    session.detach_all().await;
    tracing::debug!("disconnected");
    Metrics::dec(&state.metrics.connections_open);
}

/// Messages of one document waiting for its authentication.
#[derive(Debug, Default)]
struct Queue {
    frames: Vec<Bytes>,
    since: Option<Instant>,
}

/// Where one document of the socket stands.
#[derive(Debug)]
enum Entry {
    /// Messages came before any token.
    Waiting(Queue),
    /// The token was accepted; the attachment `attempt` is being made (the document may be
    /// loading).
    Joining { attempt: ConnId, queue: Queue },
    /// Attached as `conn`.
    Open {
        conn: ConnId,
        handle: DocHandle,
        /// Shared with the owner, which may change it when the review changes.
        grant: Grant,
        /// Which presence queries are answered.
        queries: QueryGate,
    },
    /// The last token was refused.
    Denied,
}

/// Which per-socket cap on waiting for authentication was exceeded.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Documents,
    Messages,
    Bytes,
}

/// The documents of one socket by routing key, in a small vector: the browser app opens three,
/// a hash table would start at four buckets, and even a socket at the cap of
/// `max_documents_per_socket` (256) costs a scan of a few microseconds per frame.
#[derive(Debug, Default)]
struct Entries(Vec<(String, Entry)>);

impl Entries {
    fn index(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }

    fn get(&self, key: &str) -> Option<&Entry> {
        self.index(key).map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.index(key).map(|i| &mut self.0[i].1)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.index(key).is_some()
    }

    /// Sets `key`'s entry, returning the one it replaced.
    fn insert(&mut self, key: String, entry: Entry) -> Option<Entry> {
        match self.index(&key) {
            Some(i) => Some(std::mem::replace(&mut self.0[i].1, entry)),
            None => {
                compact::push(&mut self.0, (key, entry));
                None
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let i = self.index(key)?;
        Some(compact::swap_remove(&mut self.0, i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter().map(|(_, e)| e)
    }
}

impl IntoIterator for Entries {
    type Item = (String, Entry);
    type IntoIter = std::vec::IntoIter<(String, Entry)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

type JoinResult = (String, ConnId, Grant, Result<DocHandle, JoinError>);

struct Session {
    state: Arc<AppState>,
    outbox: queue::Sender<Bytes>,
    kick: Kick,
    entries: Entries,
    joins: FuturesUnordered<BoxFuture<'static, JoinResult>>,
    pending_messages: usize,
    pending_bytes: usize,
    /// Until the socket sends its first token: when it must have.
    first_token_by: Option<Instant>,
    /// The connection's meter (deadlines, the unauthenticated budgets).
    meter: Option<Arc<Meter>>,
}

impl Session {
    async fn run(&mut self, mut stream: Stream, done: &CancellationToken) {
        let max = self.state.limits.max_frame_bytes;
        let kick = self.kick.clone();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.earliest_deadline();
            let keep_going = tokio::select! {
                biased;
                _ = done.cancelled() => false,
                // Handling a frame or a join is boxed: the session's future lives as long as the
                // socket, and would otherwise keep room for them while idle.
                Some(joined) = self.joins.next(), if !self.joins.is_empty() => {
                    Box::pin(self.joined(joined, done)).await
                }
                frame = next_frame(&mut stream, (done, &kick), max, self.meter.as_deref()) => match frame {
                    Some(frame) => Box::pin(self.on_frame(frame, done)).await,
                    None => false,
                },
                _ = sleep_until(deadline) => {
                    let reason = if self.first_token_by.is_some_and(|by| Instant::now() >= by) {
                        "authentication_timeout: the socket sent no token in time"
                    } else {
                        "authentication_timeout: messages waited too long for a document's token"
                    };
                    kick.kick(close::AUTHENTICATION_TIMEOUT, reason);
                    false
                }
                _ = ping.tick() => self.send(Bytes::from_static(&[MSG_PING])),
            };
            if !keep_going {
                break;
            }
        }
        done.cancel();
    }

    async fn on_frame(&mut self, frame: Bytes, done: &CancellationToken) -> bool {
        let decoded = match decode_frame(&frame) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable frame");
                self.kick.kick(close::PROTOCOL_ERROR, e.code());
                return false;
            }
        };
        let (key, message) = match decoded {
            Frame::Ping => return self.send(Bytes::from_static(&[MSG_PONG])),
            Frame::Pong => return true,
            Frame::Doc { key, message } => (key, message),
        };
        match message {
            DocMessage::Auth(Auth::Token { token, .. }) => {
                self.first_token_by = None;
                return self.authenticate(key, token.unwrap_or_default()).await;
            }
            DocMessage::Close(_) => {
                self.detach(key).await;
                return true;
            }
            _ => {}
        }
        match self.entries.get(key) {
            None | Some(Entry::Waiting(_)) | Some(Entry::Joining { .. }) => {
                self.enqueue(key, frame.clone())
            }
            Some(Entry::Denied) => self.reply(
                key,
                DocMessage::Auth(Auth::PermissionDenied(
                    "not_authenticated: send a token this document accepts first",
                )),
            ),
            Some(Entry::Open { .. }) => self.forward(key, &frame, message, done).await,
        }
    }

    /// Decides a token for `key` and starts attaching when it is accepted.
    async fn authenticate(&mut self, key: &str, token: &str) -> bool {
        let document = document_of(key);
        // A new token replaces whatever the document had on this socket.
        let queue = match self.entries.remove(key) {
            Some(Entry::Waiting(queue)) | Some(Entry::Joining { queue, .. }) => queue,
            Some(open @ Entry::Open { .. }) => {
                self.leave(open).await;
                Queue::default()
            }
            Some(Entry::Denied) | None => Queue::default(),
        };
        if self.entries.len() >= self.state.limits.max_documents_per_socket {
            self.kick.kick(
                close::TOO_MANY_PENDING,
                format!(
                    "too_many_documents: at most {} per socket",
                    self.state.limits.max_documents_per_socket
                ),
            );
            return false;
        }
        let decision = if valid_document_name(document) {
            self.state.authorizer.authorize(token, document)
        } else {
            Err(crate::documents::access::Denied {
                code: "invalid_document_name".into(),
                message: format!(
                    "document names are 1 to {MAX_DOCUMENT_NAME_LEN} characters from A-Z a-z 0-9 . _ : -"
                ),
            })
        };
        // A grant another node decides again authenticates the socket only once that node
        // opened the document for it (`Confirming`). Asked once: the answer changes when this
        // node starts serving reviews.
        let provisional = decision.is_ok() && self.state.authorizer.provisional(document);
        let access = match decision {
            Ok(access) => {
                if let (Some(meter), false) = (&self.meter, provisional) {
                    meter.authenticated();
                }
                access
            }
            Err(denied) => {
                Metrics::inc(&self.state.metrics.permission_denied);
                tracing::debug!(code = %denied.code, "permission denied");
                self.forget(&queue);
                self.entries.insert(key.to_owned(), Entry::Denied);
                let reason = denied.reason();
                return self.reply(key, DocMessage::Auth(Auth::PermissionDenied(&reason)));
            }
        };
        if queue.since.is_none()
            && self.pending_documents() >= self.state.limits.max_pending_documents
        {
            return self.too_many_pending(Pending::Documents);
        }
        let per_socket = self.state.limits.max_attachments_per_socket;
        if self.attachments(document) >= per_socket {
            // Like a full document: this one is refused, the socket and its others go on.
            self.forget(&queue);
            let reason = format!(
                "too_many_attachments: at most {per_socket} attachments to one document per socket"
            );
            return self.reply(key, DocMessage::Close(Some(&reason)));
        }
        let attempt = self.state.conn_id();
        let grant = Grant::new(access);
        let peer = Peer {
            conn: attempt,
            outbox: self.outbox.clone(),
            kick: self.kick.clone(),
            framing: Confirming::around(Hocuspocus::new(key), self.meter.as_ref(), provisional),
            grant: grant.clone(),
            credential: Credential::new(token),
        };
        let state = self.state.clone();
        let key_owned = key.to_owned();
        let document = document.to_owned();
        self.joins.push(Box::pin(async move {
            let joined = join(&state, &document, peer).await;
            (key_owned, attempt, grant, joined)
        }));
        let queue = Queue {
            since: Some(queue.since.unwrap_or_else(Instant::now)),
            frames: queue.frames,
        };
        self.entries
            .insert(key.to_owned(), Entry::Joining { attempt, queue });
        true
    }

    /// An attachment finished: open the document and replay what waited, or report why not.
    async fn joined(&mut self, joined: JoinResult, done: &CancellationToken) -> bool {
        let (key, attempt, grant, result) = joined;
        let current = matches!(
            self.entries.get(&key),
            Some(Entry::Joining { attempt: a, .. }) if *a == attempt
        );
        if !current {
            // Superseded by a new token or a Close while it was loading.
            if let Ok(handle) = result {
                handle.leave(attempt).await;
            }
            return true;
        }
        let Some(Entry::Joining { queue, .. }) = self.entries.remove(&key) else {
            return true;
        };
        self.forget(&queue);
        let handle = match result {
            Ok(handle) => handle,
            Err(e) => {
                let reason = match (come_back_later(&e), e) {
                    // The node or the document is going away, or nobody can serve it yet: the
                    // whole socket, so that the stock provider connects again and re-attaches it.
                    (Some((code, reason)), _) => {
                        self.kick.kick(code, reason);
                        return false;
                    }
                    (None, JoinError::FullForReaders) => {
                        "too_many_connections: the places left on this document are kept for writers; try later"
                    }
                    (None, JoinError::TooManyForSession) => {
                        "too_many_attachments: this session has the document open too many times"
                    }
                    (None, _) => "too_many_connections: the document is full; try later",
                };
                return self.reply(&key, DocMessage::Close(Some(reason)));
            }
        };
        Metrics::inc(&self.state.metrics.collab_documents_open);
        self.entries.insert(
            key.clone(),
            Entry::Open {
                conn: attempt,
                handle,
                grant,
                queries: QueryGate::default(),
            },
        );
        for frame in queue.frames {
            // Queued frames decoded once already; tokens and closes were never queued.
            let Ok(Frame::Doc { message, .. }) = decode_frame(&frame) else {
                continue;
            };
            if !self.forward(&key, &frame, message, done).await {
                return false;
            }
        }
        true
    }

    /// Hands a message of an open document to its owner, or answers it here.
    async fn forward(
        &mut self,
        key: &str,
        frame: &Bytes,
        message: DocMessage<'_>,
        done: &CancellationToken,
    ) -> bool {
        let Some(Entry::Open {
            conn,
            handle,
            grant,
            ..
        }) = self.entries.get(key)
        else {
            return true;
        };
        let (conn, handle) = (*conn, handle.clone());
        let Some(access) = grant.get() else {
            // The owner withdrew access (a revoked session) and already told the client.
            if let Some(entry) = self.entries.insert(key.to_owned(), Entry::Denied) {
                self.leave(entry).await;
            }
            return self.reply(
                key,
                DocMessage::Auth(Auth::PermissionDenied(
                    "not_authenticated: access to this document was withdrawn",
                )),
            );
        };
        let incoming = match message {
            DocMessage::Sync(sync) | DocMessage::SyncReply(sync) => {
                Incoming::from_sync(frame, sync)
            }
            DocMessage::Awareness(a) => Incoming::Awareness(frame.slice_ref(a)),
            DocMessage::QueryAwareness if self.admit_query(key) => Incoming::QueryAwareness,
            DocMessage::QueryAwareness => return true,
            DocMessage::Stateless(payload) => return self.stateless(key, access, payload).await,
            DocMessage::BroadcastStateless(_) => {
                return self.reply_error(
                    key,
                    "broadcast_stateless_not_allowed",
                    "BroadcastStateless is for servers; clients send Stateless",
                )
            }
            DocMessage::SyncStatus(_)
            | DocMessage::Auth(Auth::PermissionDenied(_) | Auth::Authenticated(_)) => {
                return self.reply_error(
                    key,
                    "unexpected_message_type",
                    "this message type goes from the server to clients only",
                )
            }
            DocMessage::Unknown(kind) => {
                return self.reply_error(
                    key,
                    "unknown_message_type",
                    &format!("message type {kind} is not part of the protocol"),
                )
            }
            // Handled before anything is queued or forwarded.
            DocMessage::Auth(Auth::Token { .. }) | DocMessage::Close(_) => return true,
        };
        let room = self.outbox.downgrade();
        let sent = tokio::select! {
            _ = done.cancelled() => return false,
            sent = async { outbox_room(&room).await && handle.send(conn, incoming).await } => sent,
        };
        if !sent {
            self.kick.kick(close::INTERNAL_ERROR, "document_closed");
        }
        sent
    }

    /// Whether a presence query for the open document `key` is answered (see [`QueryGate`]).
    fn admit_query(&mut self, key: &str) -> bool {
        match self.entries.get_mut(key) {
            Some(Entry::Open { queries, .. }) => queries.admit(Instant::now()),
            _ => false,
        }
    }

    async fn stateless(&mut self, key: &str, access: Access, payload: &str) -> bool {
        let request = StatelessRequest {
            document: document_of(key),
            access,
            payload,
        };
        let handler = self.state.stateless.clone();
        match tokio::time::timeout(STATELESS_TIMEOUT, handler.handle(request)).await {
            Ok(Some(reply)) => self.reply(key, DocMessage::Stateless(&reply)),
            Ok(None) => true,
            Err(_) => self.reply_error(key, "command_timeout", "the command took too long"),
        }
    }

    /// Queues a message of a document that is not open yet, within the socket's caps.
    fn enqueue(&mut self, key: &str, frame: Bytes) -> bool {
        let limits = &self.state.limits;
        if self.pending_messages + 1 > limits.max_pending_messages {
            return self.too_many_pending(Pending::Messages);
        }
        if self.pending_bytes + frame.len() > limits.max_pending_bytes {
            return self.too_many_pending(Pending::Bytes);
        }
        if !self.entries.contains_key(key) {
            if self.entries.len() >= limits.max_documents_per_socket {
                return self.too_many_pending(Pending::Documents);
            }
            if self.pending_documents() >= limits.max_pending_documents {
                return self.too_many_pending(Pending::Documents);
            }
            self.entries
                .insert(key.to_owned(), Entry::Waiting(Queue::default()));
        }
        let queue = match self.entries.get_mut(key) {
            Some(Entry::Waiting(queue)) | Some(Entry::Joining { queue, .. }) => queue,
            _ => return true,
        };
        if let Some(meter) = &self.meter {
            if let Err(busy) = meter.charge_pending(frame.len()) {
                self.kick.kick(close::SERVER_BUSY, busy.reason());
                return false;
            }
        }
        queue.since.get_or_insert_with(Instant::now);
        self.pending_messages += 1;
        self.pending_bytes += frame.len();
        // A copy: the frame may be a slice of a much larger read buffer, which it would keep.
        queue.frames.push(Bytes::copy_from_slice(&frame));
        true
    }

    fn too_many_pending(&self, what: Pending) -> bool {
        let limits = &self.state.limits;
        let (name, limit) = match what {
            Pending::Documents => ("documents", limits.max_pending_documents),
            Pending::Messages => ("messages", limits.max_pending_messages),
            Pending::Bytes => ("bytes", limits.max_pending_bytes),
        };
        self.kick.kick(
            close::TOO_MANY_PENDING,
            format!("pending_{name}_exceeded: at most {limit} may wait for authentication"),
        );
        false
    }

    /// Takes a dropped or replayed queue off the socket's pending totals.
    fn forget(&mut self, queue: &Queue) {
        let bytes = queue.frames.iter().map(Bytes::len).sum::<usize>();
        self.pending_messages -= queue.frames.len();
        self.pending_bytes -= bytes;
        if let Some(meter) = &self.meter {
            meter.release_pending(bytes);
        }
    }

    /// Attachments of this socket to `document` (made or being made), whatever their keys.
    fn attachments(&self, document: &str) -> usize {
        self.entries
            .0
            .iter()
            .filter(|(k, e)| {
                matches!(e, Entry::Joining { .. } | Entry::Open { .. })
                    && document_of(k) == document
            })
            .count()
    }

    fn pending_documents(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::Waiting(_) | Entry::Joining { .. }))
            .count()
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        let deadline = self.state.limits.authentication_deadline;
        let queued = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Waiting(q) | Entry::Joining { queue: q, .. } => q.since,
                _ => None,
            })
            .min()
            .map(|since| since + deadline);
        queued.into_iter().chain(self.first_token_by).min()
    }

    /// Detaches one document (the client's Close); the socket stays open.
    async fn detach(&mut self, key: &str) {
        match self.entries.remove(key) {
            Some(Entry::Waiting(queue)) | Some(Entry::Joining { queue, .. }) => self.forget(&queue),
            Some(open @ Entry::Open { .. }) => self.leave(open).await,
            Some(Entry::Denied) | None => {}
        }
    }

    async fn leave(&mut self, entry: Entry) {
        if let Entry::Open { conn, handle, .. } = entry {
            handle.leave(conn).await;
            Metrics::dec(&self.state.metrics.collab_documents_open);
        }
    }

    /// Detaches everything when the socket is gone, including attachments still being made.
    async fn detach_all(&mut self) {
        for (_, entry) in std::mem::take(&mut self.entries) {
            self.leave(entry).await;
        }
        while let Some((_, attempt, _, result)) = self.joins.next().await {
            if let Ok(handle) = result {
                handle.leave(attempt).await;
            }
        }
    }

    fn reply(&self, key: &str, message: DocMessage<'_>) -> bool {
        self.send(Bytes::from(message.encode(key)))
    }

    fn reply_error(&self, key: &str, code: &str, message: &str) -> bool {
        let payload = error_json(code, message);
        self.reply(key, DocMessage::Stateless(&payload))
    }

    /// Queues a frame of the session's own; a client that lets the outbox fill is closed.
    fn send(&self, frame: Bytes) -> bool {
        match self.outbox.try_send(frame) {
            Ok(()) => true,
            Err(queue::TrySendError::Full(_)) => {
                Metrics::inc(&self.state.metrics.slow_consumers);
                self.kick.kick(
                    close::SLOW_CONSUMER,
                    "slow_consumer: reconnect to resynchronise",
                );
                false
            }
            Err(queue::TrySendError::Closed(_)) => false,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
