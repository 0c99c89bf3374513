//! A document another cluster node owns, as this node's connections see it (`docs/cluster.md`,
//! "Routing: the internal link"). The registry hands out the same
//! [`crate::documents::command::DocHandle`] as for a document served here, so both dialects
//! attach to it unchanged; behind the handle this task carries every connection attached to the
//! document to the owner over one *lane* (an [`Attachment`]: a sub-stream of the link), each
//! connection a member of it, and brings back what the owner says: y-protocols messages, framed
//! in each connection's dialect, and notices, which its [`crate::documents::peer::Framing`]
//! turns into a message or a close exactly as for a local document. A relay crosses the link
//! once for all the members and is handed to each of them here. Nothing is applied, stored or
//! decided here: the owner relays and acknowledges only after its commit, so a client of this
//! node hears of an update only once it is durable, as on the owner.
//!
//! The documents room does not know the cluster: the composition root gives a
//! [`crate::documents::route::Router`] that says where a document is served, and [`Remote`]s
//! that open lanes.
//!
//! Server code (jobs) cannot run here; they are answered [`JobError::Unavailable`]. The task
//! leaves memory once its last member left, and the registry forgets it as soon as the owner
//! could not be reached or ended the lane, so the next connection is routed again (to a new
//! owner after a failover).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::forward::{self, FromOwner, JoinFailure, Said, WireAccess};
use debrief_proto::ywire::{Message, SyncMessage};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::documents::access::{Access, Denied};
use crate::documents::command::{DocCommand, Incoming, JobError, JoinError, JoinRequest};
use crate::documents::doc::{DocContext, Unload};
use crate::documents::peer::{Delivery, Framed, Notice, Peer};
use crate::documents::queue;
use crate::documents::route::{Attachment, AttachmentSender, Remote};
use crate::metrics::Metrics;

/// What a remote document starts from (the registry's registration of it).
pub(crate) struct RemoteStart {
    pub name: Arc<str>,
    pub generation: u64,
    pub unload: std::sync::Weak<dyn Unload>,
    pub ctx: Arc<DocContext>,
    pub remote: Arc<dyn Remote>,
}

/// How many messages of one connection may wait for the lane while the owner is behind (on top
/// of those on their way, [`forward::WINDOW_MESSAGES`] for the whole lane); one more closes the
/// connection as a slow one.
const PER_MEMBER_QUEUE: usize = 256;

/// Messages waiting for the lane's writer, at most.
const LANE_QUEUE: usize = 4096;

/// How many of the connections' messages may wait for the lane together; joins and leaves keep
/// the rest of [`LANE_QUEUE`] for themselves, so a flood of content never holds them up.
const LANE_CONTENT_QUEUE: usize = 3072;

/// Serves the document's commands through `start.remote` until its last member left or the
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
    let mut lane = Lane {
        name: &name,
        generation,
        unload,
        ctx: &ctx,
        members: HashMap::new(),
        pending: 0,
        joined: false,
        forgotten: false,
        out: None,
        content: Arc::new(AtomicUsize::new(0)),
        window: Arc::new(Window::default()),
    };
    let opened = tokio::select! {
        biased;
        () = ctx.shutdown.cancelled() => None,
        opened = remote.open(&name) => Some(opened),
    };
    let end = match opened {
        None => End::ShuttingDown,
        Some(Err(e)) => {
            tracing::debug!(doc = %name, node = remote.node(), error = %e, "could not reach the owner");
            End::OwnerGone
        }
        Some(Ok(mut att)) => {
            let end = lane.run(&mut *att, &mut rx).await;
            att.close().await;
            end
        }
    };
    lane.end(&end);
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            DocCommand::Join(join) => {
                let refusal = match end {
                    End::ShuttingDown => JoinError::ShuttingDown,
                    _ => JoinError::Unloading,
                };
                let _ = join.reply.send(Err(refusal));
            }
            DocCommand::Job(job) => {
                let _ = job.done.send(Err(JobError::Unavailable));
            }
            _ => {}
        }
    }
    Metrics::dec(&ctx.metrics.documents_forwarded);
    lane.forget();
}

/// Why a lane ended.
#[derive(Debug)]
enum End {
    /// Its last member left, and nothing waits.
    Idle,
    /// The server is shutting down.
    ShuttingDown,
    /// The owner or the link went away (or could not be reached).
    OwnerGone,
    /// The owner closed the lane.
    Closed(u16, String),
    /// The owner said something that is not the lane's protocol.
    Broken,
    /// The owner is so far behind that the lane cannot even say who left.
    Behind,
}

/// A message for the lane's writer, and what it is charged to.
struct Outgoing {
    message: Vec<u8>,
    /// The member whose content it is (joins and leaves are no one's).
    charge: Option<Arc<Queued>>,
}

/// What of one member's content waits for the lane's writer.
#[derive(Debug, Default)]
struct Queued {
    messages: AtomicUsize,
    bytes: AtomicUsize,
}

/// A connection attached through the lane.
struct Joined {
    peer: Peer,
    /// Until the owner's first word: the joiner's answer, and when its join went.
    reply: Option<(oneshot::Sender<Result<(), JoinError>>, Instant)>,
    queued: Arc<Queued>,
}

/// The entry node's side of one lane.
struct Lane<'a> {
    name: &'a Arc<str>,
    generation: u64,
    unload: std::sync::Weak<dyn Unload>,
    ctx: &'a DocContext,
    /// By member number (the connection's id).
    members: HashMap<u64, Joined>,
    /// Members waiting for the owner's first word.
    pending: usize,
    /// Whether any connection joined yet (before that, an empty lane is just starting).
    joined: bool,
    /// Whether the registry forgot this document, so that new connections are routed again.
    forgotten: bool,
    /// To the lane's writer, once the lane is open.
    out: Option<queue::Sender<Outgoing>>,
    /// Content messages waiting for the writer, of every member.
    content: Arc<AtomicUsize>,
    window: Arc<Window>,
}

impl Lane<'_> {
    /// Carries the lane until it ends: commands of the connections go out in the order they
    /// came, what the owner says is handed to the members it is for.
    async fn run(&mut self, att: &mut dyn Attachment, rx: &mut queue::Receiver<DocCommand>) -> End {
        let (out, out_rx) = queue::channel(LANE_QUEUE);
        self.out = Some(out);
        let writer = write(
            out_rx,
            att.sender(),
            self.window.clone(),
            self.content.clone(),
        );
        tokio::pin!(writer);
        // A whole state of the largest document, with room for its message header.
        let limits = &self.ctx.limits;
        let limit = usize::try_from(limits.max_document_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(limits.max_frame_bytes);
        let mut parts = forward::Reassembly::new(limit);
        let mut patience = tokio::time::interval(std::time::Duration::from_secs(1));
        let shutdown = self.ctx.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return End::ShuttingDown,
                () = &mut writer => return End::OwnerGone,
                payload = att.recv() => {
                    let Some(payload) = payload else {
                        return End::OwnerGone;
                    };
                    match parts.feed(payload) {
                        Ok(Some(whole)) => {
                            if let Some(end) = self.owner_said(Bytes::from(whole)) {
                                return end;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(doc = %self.name, error = %e, "the owner's message could not be put together");
                            return End::Broken;
                        }
                    }
                }
                _ = patience.tick(), if self.pending > 0 => {
                    if let Some(end) = self.overdue() {
                        return end;
                    }
                }
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else {
                        return End::Idle;
                    };
                    if let Some(end) = self.command(cmd) {
                        return end;
                    }
                }
            }
            if self.joined && self.members.is_empty() {
                if self.forgotten {
                    return End::Idle;
                }
                if let Some(unload) = self.unload.upgrade() {
                    if unload.unload_if_idle(self.name, self.generation, &|| rx.is_empty()) {
                        return End::Idle;
                    }
                }
            }
        }
    }

    /// Takes one command of a connection; `Some` when the lane ends.
    fn command(&mut self, cmd: DocCommand) -> Option<End> {
        match cmd {
            DocCommand::Join(join) => {
                let JoinRequest { peer, reply } = *join;
                // A member of another node's lane is never passed on again: that node sent it
                // here because its records said this node owns the document, and they were
                // stale. Refused as "unloading", it makes that node look the owner up again
                // (`docs/cluster.md`, "A stale route"), instead of a chain of hops or a loop.
                if peer.framing.seat().is_some() {
                    let _ = reply.send(Err(JoinError::Unloading));
                    // Nobody else may come: leave memory as soon as this task is idle.
                    self.joined = true;
                    return None;
                }
                if self.forgotten {
                    // Routed again: the owner may have changed.
                    let _ = reply.send(Err(JoinError::Unloading));
                    return None;
                }
                let member = peer.conn.0;
                if !self.queue(forward::encode_join(member, peer.credential.expose()), None) {
                    let _ = reply.send(Err(JoinError::Unloading));
                    return Some(End::Behind);
                }
                self.joined = true;
                self.pending += 1;
                self.members.insert(
                    member,
                    Joined {
                        peer,
                        reply: Some((reply, Instant::now())),
                        queued: Arc::default(),
                    },
                );
                None
            }
            DocCommand::Message { conn, msg } => {
                let member = conn.0;
                let budget = 2 * self.ctx.limits.max_frame_bytes;
                let joined = self.members.get(&member)?;
                let message = forward::encode_frame(member, &encode_incoming(&msg));
                let queued = joined.queued.clone();
                let over = queued.messages.load(Ordering::Acquire) >= PER_MEMBER_QUEUE
                    || queued.bytes.load(Ordering::Acquire) + message.len() > budget
                    || self.content.load(Ordering::Acquire) >= LANE_CONTENT_QUEUE;
                if over {
                    // Never waited for here: one connection behind would hold up every other
                    // connection of the document. It is closed as a slow one (it
                    // resynchronises when it comes back).
                    Metrics::inc(&self.ctx.metrics.slow_consumers);
                    joined.peer.kick.kick(
                        close::SLOW_CONSUMER,
                        "slow_consumer: the document's owner is behind; reconnect",
                    );
                    return self.remove(member, true);
                }
                queued.messages.fetch_add(1, Ordering::AcqRel);
                queued.bytes.fetch_add(message.len(), Ordering::AcqRel);
                self.content.fetch_add(1, Ordering::AcqRel);
                if !self.queue(message, Some(queued)) {
                    return Some(End::Behind);
                }
                None
            }
            DocCommand::Leave { conn } => self.remove(conn.0, true),
            // The owner decides access again for its members itself.
            DocCommand::Reauthorize => None,
            DocCommand::Job(job) => {
                let _ = job.done.send(Err(JobError::Unavailable));
                None
            }
        }
    }

    /// Queues `message` for the writer; `false` when it cannot take it.
    fn queue(&self, message: Vec<u8>, charge: Option<Arc<Queued>>) -> bool {
        self.out
            .as_ref()
            .is_some_and(|out| out.try_send(Outgoing { message, charge }).is_ok())
    }

    /// Ends `member` here, and tells the owner unless it ended it itself (`tell_owner`);
    /// `Some` when even that cannot be said.
    fn remove(&mut self, member: u64, tell_owner: bool) -> Option<End> {
        let joined = self.members.remove(&member)?;
        if joined.reply.is_some() {
            self.pending -= 1;
        }
        if tell_owner && !self.queue(forward::encode_leave(member), None) {
            return Some(End::Behind);
        }
        None
    }

    /// Takes one whole message of the owner; `Some` when the lane ends.
    fn owner_said(&mut self, whole: Bytes) -> Option<End> {
        match forward::decode_from_owner(&whole) {
            Err(e) => {
                tracing::debug!(doc = %self.name, error = %e, "undecodable message from the owner");
                Some(End::Broken)
            }
            Ok(FromOwner::Credit { messages, bytes }) => {
                self.window.credit(messages, bytes);
                None
            }
            Ok(FromOwner::Close { code, reason }) => Some(End::Closed(code, reason.to_owned())),
            Ok(FromOwner::All { except, message }) => {
                // One copy, framed once per dialect, for every member attached.
                let mut framed = Framed::new(whole.slice_ref(message));
                let mut dropped = Vec::new();
                for (&member, joined) in &self.members {
                    if joined.reply.is_none()
                        && Some(member) != except
                        && !push(&joined.peer, framed.for_peer(&joined.peer), self.ctx)
                    {
                        dropped.push(member);
                    }
                }
                dropped
                    .into_iter()
                    .find_map(|member| self.remove(member, true))
            }
            Ok(FromOwner::To { member, said }) => self.tell_member(member, said, &whole),
        }
    }

    /// What the owner says to one member: its first word answers its join.
    fn tell_member(&mut self, member: u64, said: Said<'_>, whole: &Bytes) -> Option<End> {
        let joined = self.members.get_mut(&member)?;
        if let Some((reply, _)) = joined.reply.take() {
            self.pending -= 1;
            if let Said::JoinFailed(f) = said {
                let _ = reply.send(Err(join_error(f)));
                self.members.remove(&member);
                // An owner that is unloading or shutting down: route again.
                if matches!(f, JoinFailure::Unloading | JoinFailure::ShuttingDown) {
                    self.forget();
                }
                return None;
            }
            let _ = reply.send(Ok(()));
        }
        let joined = self.members.get(&member)?;
        // The owner ended the member itself when it closes it.
        let ended_there = matches!(said, Said::Close { .. });
        if deliver(&joined.peer, said, whole, self.ctx) {
            return None;
        }
        self.remove(member, !ended_there)
    }

    /// Answers the joins the owner has not answered within [`JOIN_PATIENCE`]: the owner may be
    /// gone, so the document is routed again.
    fn overdue(&mut self) -> Option<End> {
        let late: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, j)| {
                j.reply
                    .as_ref()
                    .is_some_and(|(_, since)| since.elapsed() >= JOIN_PATIENCE)
            })
            .map(|(&member, _)| member)
            .collect();
        if late.is_empty() {
            return None;
        }
        self.forget();
        for member in late {
            if let Some(joined) = self.members.get_mut(&member) {
                if let Some((reply, _)) = joined.reply.take() {
                    self.pending -= 1;
                    let _ = reply.send(Err(JoinError::Unloading));
                }
            }
            if let Some(end) = self.remove(member, true) {
                return Some(end);
            }
        }
        None
    }

    /// Closes every member as `end` says, and answers the joins still waiting.
    fn end(&mut self, end: &End) {
        let (code, reason) = match end {
            End::Idle => return,
            End::ShuttingDown => (close::GOING_AWAY, "server_shutting_down".to_owned()),
            End::OwnerGone => (close::GOING_AWAY, OWNER_GONE.to_owned()),
            End::Closed(code, reason) => (*code, reason.clone()),
            End::Broken => (close::INTERNAL_ERROR, "owner_protocol_error".to_owned()),
            End::Behind => (
                close::SLOW_CONSUMER,
                "slow_consumer: the document's owner is behind; reconnect".to_owned(),
            ),
        };
        if !matches!(end, End::ShuttingDown) {
            self.forget();
        }
        for (_, joined) in self.members.drain() {
            match joined.reply {
                Some((reply, _)) => {
                    let refusal = match end {
                        End::ShuttingDown => JoinError::ShuttingDown,
                        _ => JoinError::Unloading,
                    };
                    let _ = reply.send(Err(refusal));
                }
                None => joined.peer.kick.kick(code, reason.clone()),
            }
        }
        self.pending = 0;
    }

    /// Makes the registry forget this document (once), so that new connections are routed
    /// again.
    fn forget(&mut self) {
        if !self.forgotten {
            self.forgotten = true;
            if let Some(unload) = self.unload.upgrade() {
                unload.stopped(self.name, self.generation);
            }
        }
    }
}

/// The lane's writer: sends what the connections queued, in order, within the owner's window;
/// ends when the lane or its link is gone.
async fn write(
    mut out: queue::Receiver<Outgoing>,
    sender: Arc<dyn AttachmentSender>,
    window: Arc<Window>,
    content: Arc<AtomicUsize>,
) {
    loop {
        window.open().await;
        let Some(Outgoing { message, charge }) = out.recv().await else {
            // Every sender is gone: the lane is ending; wait to be dropped.
            return std::future::pending().await;
        };
        if let Some(queued) = charge {
            queued.messages.fetch_sub(1, Ordering::AcqRel);
            queued.bytes.fetch_sub(message.len(), Ordering::AcqRel);
            content.fetch_sub(1, Ordering::AcqRel);
        }
        window.sent(message.len() as u64);
        for piece in forward::split(message, forward::PART_BYTES) {
            if sender.send(piece).await.is_err() {
                return;
            }
        }
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

/// Why a client of a document served through another node is closed when that node went.
const OWNER_GONE: &str = "owner_gone: the node serving this document went away; reconnect";

/// How long an entry node waits for the owner to answer a join: a load that waits for a lapsed
/// lease and builds a large document, with room to spare.
const JOIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Hands what the owner said to a member to its connection; `false` once the connection is to
/// be closed.
/// `whole` is the owner's message `said` was decoded from (a message is handed on as a slice of it).
fn deliver(peer: &Peer, said: Said<'_>, whole: &Bytes, ctx: &DocContext) -> bool {
    match said {
        Said::Message(message) => push(peer, peer.frame(&whole.slice_ref(message)), ctx),
        Said::Notice(wire) => {
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
        // A join is answered once, first.
        Said::JoinFailed(_) => {
            peer.kick
                .kick(close::INTERNAL_ERROR, "owner_protocol_error");
            false
        }
        Said::Close { code, reason } => {
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
