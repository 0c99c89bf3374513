//! A document another cluster node owns, as this node's connections see it (`docs/cluster.md`,
//! "Routing: the internal link"). The registry hands out the same
//! [`crate::documents::command::DocHandle`] as for a document served here, so both dialects
//! attach to it unchanged; behind the handle this task carries each attachment to the owner
//! over an [`Attachment`] (a sub-stream of the link) and brings back what the owner says:
//! y-protocols messages, framed in the connection's dialect, and notices, which its
//! [`crate::documents::peer::Framing`] turns into a message or a close exactly as for a local
//! document. Nothing is applied, stored or decided here: the owner relays and acknowledges only
//! after its commit, so a client of this node hears of an update only once it is durable, as on
//! the owner.
//!
//! The documents room does not know the cluster: the composition root gives a
//! [`crate::documents::route::Router`] that says where a document is served, and [`Remote`]s
//! that open attachments.
//!
//! Server code (jobs) cannot run here; they are answered [`JobError::Unavailable`]. The task
//! leaves memory once its last attachment ended, and the registry forgets it as soon as an
//! attachment could not reach the owner, so the next connection is routed again (to a new owner
//! after a failover).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::forward::{self, FromOwner, JoinFailure, WireAccess};
use debrief_proto::ywire::{Message, SyncMessage};
use tokio::task::JoinSet;

use crate::documents::access::{Access, Denied};
use crate::documents::command::{DocCommand, Incoming, JobError, JoinError, JoinRequest};
use crate::documents::doc::{DocContext, Unload};
use crate::documents::peer::{ConnId, Delivery, Notice, Peer};
use crate::documents::queue;
use crate::documents::route::{Attachment, Remote};
use crate::metrics::Metrics;

/// What a remote document starts from (the registry's registration of it).
pub(crate) struct RemoteStart {
    pub name: Arc<str>,
    pub generation: u64,
    pub unload: std::sync::Weak<dyn Unload>,
    pub ctx: Arc<DocContext>,
    pub remote: Arc<dyn Remote>,
}

/// How many messages of one connection wait for its attachment while the owner is behind (on
/// top of those on their way, [`forward::WINDOW_MESSAGES`]); one more closes the connection as
/// a slow one.
const PER_ATTACHMENT_QUEUE: usize = 256;

/// Serves the document's commands through `start.remote` until its last attachment ended or the
/// server shuts down.
pub(crate) async fn serve(start: RemoteStart, mut rx: queue::Receiver<DocCommand>) {
    let RemoteStart {
        name,
        generation,
        unload,
        ctx,
        remote,
    } = start;
    tracing::debug!(doc = %name, node = remote.node(), "document served by another node");
    Metrics::inc(&ctx.metrics.documents_forwarded);
    // Each attachment's queue, its connection, and the bytes waiting in the queue.
    let mut attachments: HashMap<ConnId, (queue::Sender<Incoming>, Peer, Arc<AtomicUsize>)> =
        HashMap::new();
    // What one connection's messages may hold on this node while its owner is behind.
    let budget = 2 * ctx.limits.max_frame_bytes;
    // Each attachment ends with its connection and whether the owner could be reached.
    let mut running: JoinSet<(ConnId, bool)> = JoinSet::new();
    // Set once an attachment found the owner unreachable: the registry forgets this task, so
    // that new connections are routed again, while those attached go on until they end.
    let mut forgotten = false;
    let shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(ended) = running.join_next() => {
                let reached = match ended {
                    Ok((conn, reached)) => {
                        attachments.remove(&conn);
                        reached
                    }
                    Err(_) => false,
                };
                if !reached && !forgotten {
                    // The owner may have died: another node takes its documents once its lease
                    // lapsed, and the next connection is routed there.
                    if let Some(unload) = unload.upgrade() {
                        unload.stopped(&name, generation);
                    }
                    forgotten = true;
                }
                if running.is_empty() {
                    if forgotten {
                        break;
                    }
                    if let Some(unload) = unload.upgrade() {
                        if unload.unload_if_idle(&name, generation, &|| rx.is_empty()) {
                            break;
                        }
                    }
                }
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    DocCommand::Join(join) => {
                        let JoinRequest { peer, reply } = *join;
                        let conn = peer.conn;
                        let (tx, incoming) = queue::channel(PER_ATTACHMENT_QUEUE);
                        let queued = Arc::new(AtomicUsize::new(0));
                        attachments.insert(conn, (tx, peer.clone(), queued.clone()));
                        let attach = Attach {
                            doc: name.clone(),
                            remote: remote.clone(),
                            ctx: ctx.clone(),
                            queued,
                        };
                        running.spawn(async move { (conn, attach.run(peer, reply, incoming).await) });
                    }
                    DocCommand::Message { conn, msg } => {
                        let full = match attachments.get(&conn) {
                            Some((tx, _, queued)) => {
                                let len = incoming_len(&msg);
                                if queued.load(Ordering::Acquire) + len > budget {
                                    true
                                } else {
                                    queued.fetch_add(len, Ordering::AcqRel);
                                    tx.try_send(msg).is_err()
                                }
                            }
                            None => false,
                        };
                        if full {
                            // Never waited for here: one attachment behind would hold up every
                            // other connection of the document. Its connection is closed as a
                            // slow one (it resynchronises when it comes back).
                            if let Some((_, peer, _)) = attachments.remove(&conn) {
                                Metrics::inc(&ctx.metrics.slow_consumers);
                                peer.kick.kick(
                                    close::SLOW_CONSUMER,
                                    "slow_consumer: the document's owner is behind; reconnect",
                                );
                            }
                        }
                    }
                    DocCommand::Leave { conn } => {
                        // Its attachment sees its queue close and ends.
                        attachments.remove(&conn);
                    }
                    // The owner decides access again for its attachments itself.
                    DocCommand::Reauthorize => {}
                    DocCommand::Job(job) => {
                        let _ = job.done.send(Err(JobError::Unavailable));
                    }
                }
            }
        }
    }
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            DocCommand::Join(join) => {
                let _ = join.reply.send(Err(JoinError::Unloading));
            }
            DocCommand::Job(job) => {
                let _ = job.done.send(Err(JobError::Unavailable));
            }
            _ => {}
        }
    }
    drop(attachments);
    // Each attachment closes its connection "going away" at shutdown, or sees its queue close.
    while running.join_next().await.is_some() {}
    Metrics::dec(&ctx.metrics.documents_forwarded);
    if !forgotten {
        if let Some(unload) = unload.upgrade() {
            unload.stopped(&name, generation);
        }
    }
}

/// One connection's attachment through the owner.
struct Attach {
    doc: Arc<str>,
    remote: Arc<dyn Remote>,
    ctx: Arc<DocContext>,
    /// Bytes of the connection's messages waiting in its queue.
    queued: Arc<AtomicUsize>,
}

/// The bytes a client's message holds (what its queue counts).
fn incoming_len(msg: &Incoming) -> usize {
    match msg {
        Incoming::Step1(b) | Incoming::Update(b) | Incoming::Awareness(b) => b.len(),
        Incoming::QueryAwareness => 0,
    }
}

impl Attach {
    /// Serves the attachment until it ends; `false` when the owner could not be reached (or
    /// went away), so that the document is routed again.
    async fn run(
        self,
        peer: Peer,
        reply: tokio::sync::oneshot::Sender<Result<(), JoinError>>,
        mut incoming: queue::Receiver<Incoming>,
    ) -> bool {
        let mut att = match self.remote.open(&self.doc).await {
            Ok(att) => att,
            Err(e) => {
                tracing::debug!(doc = %self.doc, node = self.remote.node(), error = %e, "could not reach the owner");
                let _ = reply.send(Err(JoinError::Unloading));
                return false;
            }
        };
        if att
            .send(forward::encode_join(peer.credential.expose()))
            .await
            .is_err()
        {
            let _ = reply.send(Err(JoinError::Unloading));
            return false;
        }
        // A whole state of the largest document, with room for its message header.
        let limits = &self.ctx.limits;
        let limit = usize::try_from(limits.max_document_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(limits.max_frame_bytes);
        let mut parts = forward::Reassembly::new(limit);
        // The owner's first word decides the join. The owner may take a while (it loads the
        // document, perhaps waiting for another node's lease): bounded, but generously.
        let first = tokio::select! {
            first = tokio::time::timeout(JOIN_PATIENCE, next_whole(&mut *att, &mut parts)) => first,
            () = self.ctx.shutdown.cancelled() => {
                let _ = reply.send(Err(JoinError::ShuttingDown));
                return true;
            }
        };
        let Ok(Some(first)) = first else {
            let _ = reply.send(Err(JoinError::Unloading));
            return false;
        };
        match forward::decode_from_owner(&first) {
            Ok(FromOwner::JoinFailed(f)) => {
                let _ = reply.send(Err(join_error(f)));
                // An owner that is unloading or shutting down: route again.
                return !matches!(f, JoinFailure::Unloading | JoinFailure::ShuttingDown);
            }
            Ok(decoded) => {
                let _ = reply.send(Ok(()));
                if !deliver(&peer, decoded, &self.ctx) {
                    att.close().await;
                    return true;
                }
            }
            Err(e) => {
                tracing::debug!(doc = %self.doc, error = %e, "undecodable message from the owner");
                let _ = reply.send(Err(JoinError::Unloading));
                return false;
            }
        }
        // Read and written at once: what the owner sends is handed on while the client's
        // messages wait for the owner's credit.
        let sender = att.sender();
        let window = Window::default();
        let reader = async {
            loop {
                let Some(bytes) = next_whole(&mut *att, &mut parts).await else {
                    // The owner or the link went away: the client reconnects, routed again.
                    peer.kick.kick(close::GOING_AWAY, OWNER_GONE);
                    return false;
                };
                match forward::decode_from_owner(&bytes) {
                    Ok(FromOwner::Credit { messages, bytes }) => window.credit(messages, bytes),
                    Ok(decoded) => {
                        if !deliver(&peer, decoded, &self.ctx) {
                            return true;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(doc = %self.doc, error = %e, "undecodable message from the owner");
                        peer.kick
                            .kick(close::INTERNAL_ERROR, "owner_protocol_error");
                        return true;
                    }
                }
            }
        };
        let writer = async {
            loop {
                window.open().await;
                // The connection left: the attachment ends.
                let Some(msg) = incoming.recv().await else {
                    return true;
                };
                self.queued.fetch_sub(incoming_len(&msg), Ordering::AcqRel);
                let message = encode_incoming(&msg);
                window.sent(message.len() as u64);
                for piece in forward::split(message, forward::PART_BYTES) {
                    if sender.send(piece).await.is_err() {
                        peer.kick.kick(close::GOING_AWAY, OWNER_GONE);
                        return false;
                    }
                }
            }
        };
        let reached = tokio::select! {
            biased;
            () = self.ctx.shutdown.cancelled() => {
                peer.kick.kick(close::GOING_AWAY, "server_shutting_down");
                true
            }
            reached = reader => reached,
            reached = writer => reached,
        };
        if reached {
            att.close().await;
        }
        reached
    }
}

/// What of a connection's messages is on its way to the owner (messages, bytes), within
/// [`forward::WINDOW_MESSAGES`] and [`forward::WINDOW_BYTES`]; the owner's credits take it back.
#[derive(Debug, Default)]
struct Window {
    messages: AtomicU64,
    bytes: AtomicU64,
    credited: tokio::sync::Notify,
}

impl Window {
    /// Waits until another message may go.
    async fn open(&self) {
        loop {
            let credited = self.credited.notified();
            if self.messages.load(Ordering::Acquire) < forward::WINDOW_MESSAGES
                && self.bytes.load(Ordering::Acquire) < forward::WINDOW_BYTES
            {
                return;
            }
            credited.await;
        }
    }

    /// A message of `len` bytes went.
    fn sent(&self, len: u64) {
        self.messages.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(len, Ordering::AcqRel);
    }

    /// The owner took `messages` of `bytes`.
    fn credit(&self, messages: u64, bytes: u64) {
        let less = |n: u64, by: u64| n.saturating_sub(by);
        let _ = self
            .messages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(less(n, messages))
            });
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(less(n, bytes))
            });
        self.credited.notify_waiters();
    }
}

/// The next whole message from the owner (put together from its parts); `None` once the
/// attachment ended or the owner sent parts that do not make a message.
async fn next_whole(att: &mut dyn Attachment, parts: &mut forward::Reassembly) -> Option<Vec<u8>> {
    loop {
        let payload = att.recv().await?;
        match parts.feed(payload) {
            Ok(Some(whole)) => return Some(whole),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "the owner's message could not be put together");
                return None;
            }
        }
    }
}

/// Why a client of a document served through another node is closed when that node went.
const OWNER_GONE: &str = "owner_gone: the node serving this document went away; reconnect";

/// How long an entry node waits for the owner to answer a join: a load that waits for a lapsed
/// lease and builds a large document, with room to spare.
const JOIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Hands what the owner said to the connection; `false` once the connection is to be closed.
fn deliver(peer: &Peer, decoded: FromOwner<'_>, ctx: &DocContext) -> bool {
    match decoded {
        FromOwner::Message(message) => {
            push(peer, peer.frame(&Bytes::copy_from_slice(message)), ctx)
        }
        FromOwner::Notice(wire) => {
            let notice = notice_of(wire);
            match &notice {
                Notice::Opened(a) | Notice::Access(a) => peer.grant.set(Some(*a)),
                Notice::Withdrawn(_) => peer.grant.set(None),
                Notice::Applied | Notice::Refused => {}
            }
            let withdrawn = matches!(notice, Notice::Withdrawn(_));
            match peer.notice(&notice) {
                Delivery::Nothing => !withdrawn,
                Delivery::Message(m) => push(peer, peer.frame(&m), ctx) && !withdrawn,
                Delivery::Close(code, reason) => {
                    peer.kick.kick(code, reason);
                    false
                }
            }
        }
        FromOwner::JoinFailed(_) => {
            peer.kick
                .kick(close::INTERNAL_ERROR, "owner_protocol_error");
            false
        }
        // Taken by the attachment's loop; harmless anywhere else.
        FromOwner::Credit { .. } => true,
        FromOwner::Close { code, reason } => {
            peer.kick.kick(code, reason);
            false
        }
    }
}

/// Puts a frame in the connection's outbox; a full outbox closes it as a slow consumer, as a
/// local document does.
fn push(peer: &Peer, frame: Bytes, ctx: &DocContext) -> bool {
    match peer.outbox.try_send(frame) {
        Ok(()) => true,
        Err(queue::TrySendError::Full(_)) => {
            Metrics::inc(&ctx.metrics.slow_consumers);
            peer.kick.kick(
                close::SLOW_CONSUMER,
                "slow_consumer: reconnect to resynchronise",
            );
            false
        }
        Err(queue::TrySendError::Closed(_)) => false,
    }
}

/// The y-protocols message that carries `msg` to the owner.
fn encode_incoming(msg: &Incoming) -> Vec<u8> {
    match msg {
        Incoming::Step1(sv) => Message::Sync(SyncMessage::Step1(sv)).encode(),
        Incoming::Update(update) => Message::Sync(SyncMessage::Update(update)).encode(),
        Incoming::Awareness(a) => Message::Awareness(a).encode(),
        Incoming::QueryAwareness => Message::QueryAwareness.encode(),
    }
}

/// A notice as the owner said it.
pub fn notice_of(notice: forward::Notice<'_>) -> Notice {
    let access = |a: WireAccess| match a {
        WireAccess::ReadWrite => Access::ReadWrite,
        WireAccess::ReadOnly => Access::ReadOnly,
    };
    match notice {
        forward::Notice::Opened(a) => Notice::Opened(access(a)),
        forward::Notice::Access(a) => Notice::Access(access(a)),
        forward::Notice::Withdrawn { code, message } => Notice::Withdrawn(Denied {
            code: code.to_owned().into(),
            message: message.to_owned(),
        }),
        forward::Notice::Applied => Notice::Applied,
        forward::Notice::Refused => Notice::Refused,
    }
}

/// The wire form of `notice`.
pub fn encode_notice(notice: &Notice) -> Vec<u8> {
    let access = |a: &Access| match a {
        Access::ReadWrite => WireAccess::ReadWrite,
        Access::ReadOnly => WireAccess::ReadOnly,
    };
    let wire = match notice {
        Notice::Opened(a) => forward::Notice::Opened(access(a)),
        Notice::Access(a) => forward::Notice::Access(access(a)),
        Notice::Withdrawn(denied) => forward::Notice::Withdrawn {
            code: &denied.code,
            message: &denied.message,
        },
        Notice::Applied => forward::Notice::Applied,
        Notice::Refused => forward::Notice::Refused,
    };
    forward::encode_notice(&wire)
}

/// The wire form of a join refusal.
pub fn join_failure(e: JoinError) -> JoinFailure {
    match e {
        JoinError::Unloading => JoinFailure::Unloading,
        JoinError::Full => JoinFailure::Full,
        JoinError::FullForReaders => JoinFailure::FullForReaders,
        JoinError::TooManyForSession => JoinFailure::TooManyForSession,
        JoinError::ShuttingDown => JoinFailure::ShuttingDown,
        // The entry node routes the connection again.
        JoinError::Unavailable => JoinFailure::Unloading,
    }
}

/// A join refusal from its wire form.
pub fn join_error(f: JoinFailure) -> JoinError {
    match f {
        JoinFailure::Unloading => JoinError::Unloading,
        JoinFailure::Full => JoinError::Full,
        JoinFailure::FullForReaders => JoinError::FullForReaders,
        JoinFailure::TooManyForSession => JoinError::TooManyForSession,
        JoinFailure::ShuttingDown => JoinError::ShuttingDown,
    }
}
