//! The owner's side of forwarding: clients connected to another node (their entry node) and
//! attached, through a *lane* of the internal link, to a document this node owns
//! (`docs/cluster.md`, "Routing: the internal link"; the messages are
//! [`debrief_proto::forward`]'s). A lane is one sub-stream per document and entry node, and
//! carries every client of that node attached to the document: its members.
//!
//! To the document's owner task each member is a peer like a socket's, with a [`Framing`] of its
//! own, [`Forwarded`]: every message goes out as it is, and every notice as a link message that
//! the entry node turns into its client's dialect. The members of a lane share one outbox: each
//! member's sender tags what it queues with the member, and a broadcast goes into it once for
//! the whole lane ([`Framing::seat`]), so an update crosses to each entry node once. The lane's
//! writer sends what the outbox holds in the order the document queued it, as
//! [`forward::MSG_TO`] or [`forward::MSG_ALL`] messages.
//!
//! A member's token is decided here, by this node's [`crate::documents::access::Authorizer`],
//! since only the owner knows the review's sessions and phase. A refusal is told to the member
//! as a withdrawal ([`Notice::Withdrawn`]), a document that cannot take it as a join failure.
//!
//! One task serves a lane, reading and writing at once: what the document sends goes out as it
//! comes (the document never waits on the outbox: a full one closes every member as a slow
//! consumer), and what the entry sends waits only for the document's queue, as a socket's
//! reader does, with credits back to the entry node for what was taken
//! ([`forward::MSG_CREDIT`]).
//!
//! This module also routes: [`ClusterRouter`] tells the registry where a document is served,
//! and reaches other nodes' documents over the links.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::forward::{self, FromEntry};
use debrief_proto::ywire::{decode_frame, Message};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::link::{StreamSender, SubStream};
use crate::cluster::links::CurrentLinks;
use crate::cluster::member::MemberSlot;
use crate::cluster::ownership::{Claims, Ownership};
use crate::cluster::{ClusterError, NodeId};
use crate::documents::command::{DocHandle, Incoming};
use crate::documents::peer::{
    ConnId, Credential, Delivery, Framing, Grant, Kick, Notice, Peer, Seat,
};
use crate::documents::presence::QueryGate;
use crate::documents::queue;
use crate::documents::remote::{encode_notice, join_failure};
use crate::documents::route::{Attachment, AttachmentSender, Remote, Route, Router};
use crate::metrics::Metrics;
use crate::storage::postgres::owner::Owner;
use crate::transport::socket::join;
use crate::transport::state::AppState;

/// The outbox tag of a broadcast to a lane; below this bit, one more than the member it skips
/// (0: none). A member's own tag is its number, which is below 2^53 (a varUint).
const TO_ALL: u64 = 1 << 63;

/// A lane's outbox holds this many times a socket's: it is shared by up to a document's
/// connections, each of which gets a few messages when it joins.
const LANE_OUTBOX_FACTOR: usize = 16;

/// The [`Framing`] of a member of a lane: messages as they are, notices as
/// [`forward::MSG_NOTICE`] messages, and a seat in its lane. It never closes on its own account:
/// the entry node decides what a notice means for its client's dialect (a y-websocket client is
/// closed when it becomes read-only, a Hocuspocus client is told).
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    seat: Seat,
}

impl Framing for Forwarded {
    fn prefix(&self) -> &[u8] {
        &[]
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        Delivery::Message(Bytes::from(encode_notice(notice)))
    }

    fn seat(&self) -> Option<Seat> {
        Some(self.seat)
    }

    fn to_lane(&self, except: Option<u64>) -> u64 {
        TO_ALL | except.map_or(0, |m| m.saturating_add(1))
    }
}

/// The link message for what a lane's outbox held under `tag`.
fn lane_message(tag: u64, frame: &[u8]) -> Vec<u8> {
    if tag & TO_ALL != 0 {
        forward::encode_all((tag & !TO_ALL).checked_sub(1), frame)
    } else {
        forward::encode_to(tag, frame)
    }
}

/// A member of a lane, as the owner holds it.
struct Member {
    conn: ConnId,
    handle: DocHandle,
    /// Ends the watch on its kick once it left.
    left: CancellationToken,
    queries: QueryGate,
}

/// Serves one lane until the entry node ends it, its link goes, or the server shuts down. Runs
/// on the server's task tracker (the composition root spawns it for every sub-stream a link
/// brings).
pub async fn serve(state: Arc<AppState>, mut sub: SubStream) {
    let doc = sub.document().to_owned();
    let first = tokio::select! {
        first = tokio::time::timeout(state.limits.first_token_deadline, sub.recv()) => first,
        () = state.shutdown.cancelled() => return,
    };
    let first = match first {
        Ok(Ok(payload)) => match forward::decode_from_entry(&payload) {
            Ok(FromEntry::Join { .. }) => payload,
            Ok(_) => {
                tracing::debug!(doc = %doc, "a lane began without a join");
                finish(&mut sub, close::PROTOCOL_ERROR, "lane_without_join").await;
                return;
            }
            Err(e) => {
                tracing::debug!(doc = %doc, error = %e, "a lane began without a join");
                finish(&mut sub, close::PROTOCOL_ERROR, e.code()).await;
                return;
            }
        },
        Ok(Err(_)) => return,
        Err(_) => {
            finish(
                &mut sub,
                close::AUTHENTICATION_TIMEOUT,
                "authentication_timeout",
            )
            .await;
            return;
        }
    };
    let capacity = state
        .limits
        .outbox_capacity
        .saturating_mul(LANE_OUTBOX_FACTOR);
    let (outbox, mut outbox_rx) = queue::channel(capacity);
    let mut lane = Lane {
        state: &state,
        doc: &doc,
        id: state.conn_id().0,
        outbox,
        members: HashMap::new(),
        kicks: FuturesUnordered::new(),
    };
    Metrics::inc(&state.metrics.lanes_open);
    let end = lane.pump(&mut sub, first, &mut outbox_rx).await;
    for (_, member) in lane.members.drain() {
        member.left.cancel();
        member.handle.leave(member.conn).await;
        Metrics::dec(&state.metrics.forwarded_open);
    }
    Metrics::dec(&state.metrics.lanes_open);
    match end {
        End::Close(code, reason) => finish(&mut sub, code, &reason).await,
        End::Gone => {}
    }
}

/// How a lane ended.
enum End {
    /// This side closes it with a code and reason the entry node passes on to every member.
    Close(u16, String),
    /// The entry node closed it, or the link is gone.
    Gone,
}

/// A member's kick, watched until it left: the member, its connection, and the close asked for.
type KickWatch = BoxFuture<'static, (u64, ConnId, Option<(u16, String)>)>;

/// One lane's state on the owner.
struct Lane<'a> {
    state: &'a AppState,
    doc: &'a str,
    /// Unique on this node (the documents tell lanes apart by it).
    id: u64,
    /// The members' shared outbox.
    outbox: queue::Sender<Bytes>,
    members: HashMap<u64, Member>,
    kicks: FuturesUnordered<KickWatch>,
}

impl Lane<'_> {
    /// Carries messages both ways until one side ends the lane: what the document sends goes out
    /// as it comes (in parts when it is longer than a link message), and what the entry sends
    /// is taken by the document as fast as it takes it, with a credit back for each quarter
    /// window taken, so that neither direction waits on the other.
    async fn pump(
        &mut self,
        sub: &mut SubStream,
        first: Vec<u8>,
        outbox: &mut queue::Receiver<Bytes>,
    ) -> End {
        let sender = sub.sender();
        let max = self.state.limits.max_frame_bytes;
        let state = self.state;
        // What the reader took, for the writer to credit: the writer is the only one to send, so
        // a credit never lands between the parts of a message.
        let (grants, mut granted) = tokio::sync::mpsc::channel::<(u64, u64)>(8);
        let reader = async move {
            // A member's frame, re-encoded by its entry node, with room for the message header.
            let mut parts = forward::Reassembly::new(max + 64);
            // Taken since the last credit: messages, bytes.
            let mut taken = (0u64, 0u64);
            let mut next = Some(first);
            loop {
                let whole = match next.take() {
                    Some(whole) => whole,
                    None => tokio::select! {
                        biased;
                        Some((member, conn, kicked)) = self.kicks.next(), if !self.kicks.is_empty() => {
                            if let Some((code, reason)) = kicked {
                                if let Some(end) = self.kicked(member, conn, code, &reason).await {
                                    return end;
                                }
                            }
                            continue;
                        }
                        payload = sub.recv() => {
                            let Ok(payload) = payload else {
                                return End::Gone;
                            };
                            match parts.feed(payload) {
                                Ok(Some(whole)) => whole,
                                Ok(None) => continue,
                                Err(e) => {
                                    return End::Close(
                                        close::MESSAGE_TOO_BIG,
                                        format!("frame_too_large: {e}"),
                                    )
                                }
                            }
                        }
                    },
                };
                let len = whole.len() as u64;
                if let Some(end) = self.take(Bytes::from(whole)).await {
                    return end;
                }
                taken = (taken.0 + 1, taken.1 + len);
                if taken.0 >= forward::WINDOW_MESSAGES / 4 || taken.1 >= forward::WINDOW_BYTES / 4 {
                    if grants.send(taken).await.is_err() {
                        return End::Gone;
                    }
                    taken = (0, 0);
                }
            }
        };
        let writer = async {
            loop {
                // Whole messages, one after another; credits between them.
                tokio::select! {
                    biased;
                    grant = granted.recv() => {
                        let Some((messages, bytes)) = grant else {
                            return End::Gone;
                        };
                        if sender.send(forward::encode_credit(messages, bytes)).await.is_err() {
                            return End::Gone;
                        }
                    }
                    frame = outbox.recv_tagged() => {
                        let Some((tag, frame)) = frame else {
                            return End::Close(close::INTERNAL_ERROR, "document_closed".to_owned());
                        };
                        Metrics::inc(&state.metrics.lane_messages);
                        for piece in forward::split(lane_message(tag, &frame), forward::PART_BYTES) {
                            if sender.send(piece).await.is_err() {
                                return End::Gone;
                            }
                        }
                    }
                }
            }
        };
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => {
                End::Close(close::GOING_AWAY, "server_shutting_down".to_owned())
            }
            end = reader => end,
            end = writer => end,
        }
    }

    /// Takes one whole message of the entry node; `Some` when the lane ends.
    async fn take(&mut self, whole: Bytes) -> Option<End> {
        let decoded = match forward::decode_from_entry(&whole) {
            Ok(decoded) => decoded,
            Err(e) => return Some(End::Close(close::PROTOCOL_ERROR, e.code().to_owned())),
        };
        match decoded {
            FromEntry::Join { member, token } => self.join(member, token).await,
            FromEntry::Frame { member, frame } => {
                let frame = whole.slice_ref(frame);
                self.frame(member, frame).await
            }
            FromEntry::Leave { member } => {
                self.leave(member).await;
                None
            }
        }
    }

    /// Tells `member` `said` (one of [`forward::Said`]'s forms) behind everything queued for it;
    /// `Some` when the outbox is full (the lane is closed as a slow consumer).
    fn tell(&self, member: u64, said: Vec<u8>) -> Option<End> {
        match self.outbox.try_send_as(member, Bytes::from(said)) {
            Ok(()) => None,
            Err(_) => {
                Metrics::inc(&self.state.metrics.slow_consumers);
                Some(End::Close(
                    close::SLOW_CONSUMER,
                    "slow_consumer: reconnect to resynchronise".to_owned(),
                ))
            }
        }
    }

    /// A member joins: its token is decided here, then the document takes it.
    async fn join(&mut self, member: u64, token: &str) -> Option<End> {
        if self.members.contains_key(&member) {
            return Some(End::Close(
                close::PROTOCOL_ERROR,
                "member_joined_twice".to_owned(),
            ));
        }
        let state = self.state;
        // As the owner decides: the sockets' authorizer would let a review's document through
        // to be forwarded, and this node is where it was forwarded to.
        let access = match state.registry.authorizer().authorize(token, self.doc) {
            Ok(access) => access,
            Err(denied) => {
                Metrics::inc(&state.metrics.permission_denied);
                return self.tell(member, encode_notice(&Notice::Withdrawn(denied)));
            }
        };
        let kick = Kick::default();
        let conn = state.conn_id();
        let peer = Peer {
            conn,
            outbox: self.outbox.tagged(member),
            kick: kick.clone(),
            framing: Arc::new(Forwarded {
                seat: Seat {
                    lane: self.id,
                    member,
                },
            }),
            grant: Grant::new(access),
            credential: Credential::new(token),
        };
        let handle = match join(state, self.doc, peer).await {
            Ok(handle) => handle,
            Err(e) => {
                return self.tell(member, forward::encode_join_failed(join_failure(e)));
            }
        };
        Metrics::inc(&state.metrics.forwarded_open);
        let left = CancellationToken::new();
        let watch = left.clone();
        self.kicks.push(Box::pin(async move {
            tokio::select! {
                kicked = kick.kicked() => (member, conn, Some(kicked)),
                () = watch.cancelled() => (member, conn, None),
            }
        }));
        self.members.insert(
            member,
            Member {
                conn,
                handle,
                left,
                queries: QueryGate::default(),
            },
        );
        None
    }

    /// A member's frame goes to the document, waiting while the document is busy.
    async fn frame(&mut self, member: u64, frame: Bytes) -> Option<End> {
        let max = self.state.limits.max_frame_bytes;
        // A member that left (or was refused) may still have had frames on their way.
        let m = self.members.get_mut(&member)?;
        if frame.len() > max {
            let reason = format!("frame_too_large: limit is {max} bytes");
            return self.close(member, close::MESSAGE_TOO_BIG, &reason).await;
        }
        let messages = match decode_frame(&frame) {
            Ok(messages) => messages,
            Err(e) => return self.close(member, close::PROTOCOL_ERROR, e.code()).await,
        };
        for message in messages {
            let incoming = match message {
                Message::Sync(sync) => Incoming::from_sync(&frame, sync),
                Message::Awareness(a) => Incoming::Awareness(frame.slice_ref(a)),
                Message::QueryAwareness if m.queries.admit(Instant::now()) => {
                    Incoming::QueryAwareness
                }
                Message::QueryAwareness | Message::Auth(_) => continue,
            };
            if !m.handle.send(m.conn, incoming).await {
                return self
                    .close(member, close::INTERNAL_ERROR, "document_closed")
                    .await;
            }
        }
        None
    }

    /// The document asked to close `member`'s connection (`conn`, as long as it is still that
    /// member's).
    async fn kicked(&mut self, member: u64, conn: ConnId, code: u16, reason: &str) -> Option<End> {
        if self.members.get(&member).map(|m| m.conn) != Some(conn) {
            return None;
        }
        self.close(member, code, reason).await
    }

    /// Ends `member` here and tells the entry node to close its client with `code`.
    async fn close(&mut self, member: u64, code: u16, reason: &str) -> Option<End> {
        self.leave(member).await;
        self.tell(member, forward::encode_close(code, reason))
    }

    /// Ends `member` here (the entry node said it left, or this side closes it).
    async fn leave(&mut self, member: u64) {
        if let Some(m) = self.members.remove(&member) {
            m.left.cancel();
            m.handle.leave(m.conn).await;
            Metrics::dec(&self.state.metrics.forwarded_open);
        }
    }
}

/// Tells the entry node why the lane ends, then closes the sub-stream.
async fn finish(sub: &mut SubStream, code: u16, reason: &str) {
    let _ = sub.send(forward::encode_close(code, reason)).await;
    sub.close().await;
}

/// Routes documents in a cluster: one whose owner of record is another node with a live lease
/// is served through that node; one nobody serves (no row yet, handed over, or its owner's
/// lease lapsed) is claimed by this node and served here, or, if another node claimed it first,
/// served through that one.
#[derive(Debug)]
pub struct ClusterRouter {
    /// This node as the store's owner: its id now, and look-ups of owners.
    slot: Arc<MemberSlot>,
    /// The node's links now.
    links: Arc<CurrentLinks>,
    /// The documents claimed together with one (a review's three).
    group: fn(&str) -> Vec<String>,
    /// Where reviews are served: their documents go to the node holding the review role.
    reviews: ReviewRouting,
}

/// How a cluster router sends a review's documents to the node that serves reviews.
pub struct ReviewRouting {
    /// Whether a document is a review's.
    pub is_review: fn(&str) -> bool,
    /// The review role's row in `documents` (its owner serves reviews).
    pub role: &'static str,
    /// Whether this node serves reviews now.
    pub here: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for ReviewRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewRouting")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ClusterRouter {
    /// A router for the node of `slot`, reaching others through `links`, claiming each document
    /// with the others of its `group`, and sending a review's documents where `reviews` says.
    pub fn new(
        slot: Arc<MemberSlot>,
        links: Arc<CurrentLinks>,
        group: fn(&str) -> Vec<String>,
        reviews: ReviewRouting,
    ) -> ClusterRouter {
        ClusterRouter {
            slot,
            links,
            group,
            reviews,
        }
    }

    /// Where `doc` is served by the database's records: here, or by which node. A review's
    /// document on a node that does not serve reviews goes to the holder of the review role,
    /// and waits while nobody holds it.
    async fn target(&self, doc: &str) -> Target {
        let me = self.slot.node();
        let patience = self.slot.patience();
        if (self.reviews.is_review)(doc) && !(self.reviews.here)() {
            let looked_up = tokio::time::timeout(patience, self.slot.owner_of(self.reviews.role))
                .await
                .unwrap_or_else(|_| Err(ClusterError::Overdue));
            return match looked_up {
                Ok(Some(Ownership::Live { node, .. })) if node != me => Target::Node(node),
                // This node holds the role and is about to serve reviews; anything else means
                // nobody does now.
                Ok(_) => Target::Wait("no node of the cluster serves reviews now".to_owned()),
                Err(e) => Target::Wait(format!("looking up the node serving reviews: {e}")),
            };
        }
        // A database that does not answer within a claim's patience: the document is served
        // here, where loading it fails or waits within the store's own bounds.
        let looked_up = tokio::time::timeout(patience, self.slot.owner_of(doc))
            .await
            .unwrap_or_else(|_| Err(ClusterError::Overdue));
        match looked_up {
            Ok(Some(Ownership::Live { node, .. })) if node != me => Target::Node(node),
            Ok(Some(Ownership::Live { .. }) | None) => Target::Here,
            // Nobody serves it: claimed now, so that of two nodes taking it over at once the
            // loser forwards to the winner instead of waiting for a lease.
            Ok(Some(_)) => {
                let group = (self.group)(doc);
                let names: Vec<&str> = group.iter().map(String::as_str).collect();
                let claimed = tokio::time::timeout(patience, self.slot.claim_all(&names))
                    .await
                    .unwrap_or_else(|_| Err(ClusterError::Overdue));
                match claimed {
                    Ok(Some(Claims::Held(held))) => Target::Node(held.owner),
                    Ok(_) => Target::Here,
                    Err(e) => {
                        tracing::debug!(doc = %doc, error = %e, "could not claim the document before loading it");
                        Target::Here
                    }
                }
            }
            Err(e) => {
                // Served here: loading claims it, and waits while another node holds it.
                tracing::warn!(doc = %doc, error = %e, "could not look the document's owner up");
                Target::Here
            }
        }
    }
}

/// Where the records say a document is served.
enum Target {
    Here,
    Node(String),
    /// Nowhere yet (a review's document while no node serves reviews): looked at again.
    Wait(String),
}

impl Router for ClusterRouter {
    /// An owner that cannot be reached (it died, and its lease has not lapsed yet) is looked up
    /// again every renewal interval, for as long as a claim would wait for it: the document is
    /// then served here (taken over) as soon as the lease lapsed, and the connections that wait
    /// for it are served then instead of being refused. A review's document is never served
    /// here by a node that does not serve reviews: past that patience it is unavailable.
    fn route<'a>(&'a self, doc: &'a str) -> BoxFuture<'a, Route> {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let review = (self.reviews.is_review)(doc);
            loop {
                let why = match self.target(doc).await {
                    Target::Here => return Route::Here,
                    Target::Wait(why) => why,
                    Target::Node(node) => match NodeId::parse(&node) {
                        None if review => format!("the node serving reviews has a bad id {node:?}"),
                        None => return Route::Here,
                        Some(node) => match self.reach(&node).await {
                            Ok(()) => {
                                return Route::There(Arc::new(LinkRemote {
                                    node,
                                    links: self.links.clone(),
                                }))
                            }
                            Err(e) => format!("node {node} cannot be reached: {e}"),
                        },
                    },
                };
                if started.elapsed() < self.slot.patience() {
                    tracing::debug!(doc = %doc, why = %why, "the document's owner cannot be reached; looking again");
                    tokio::time::sleep(self.slot.poll()).await;
                } else if review {
                    tracing::warn!(doc = %doc, why = %why, "a review's document cannot be served from this node now");
                    return Route::Unavailable(crate::transport::socket::UNAVAILABLE.to_owned());
                } else {
                    tracing::warn!(doc = %doc, why = %why, "the document's owner cannot be reached; loading it here");
                    return Route::Here;
                }
            }
        })
    }
}

impl ClusterRouter {
    /// Dials `node` (or finds its link), within a renewal interval and at least a second: a
    /// node that stopped (SIGSTOP) accepts the connection but never finishes the handshake.
    async fn reach(&self, node: &NodeId) -> Result<(), String> {
        let dial_limit = self.slot.poll().max(std::time::Duration::from_secs(1));
        match self.links.get() {
            Some(links) => match tokio::time::timeout(dial_limit, links.get(node)).await {
                Ok(linked) => linked.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err("the dial did not finish in time".to_owned()),
            },
            None => Err("this node has no links now (it is registering again)".to_owned()),
        }
    }
}

/// Another node, reached over this node's link to it.
#[derive(Debug)]
struct LinkRemote {
    node: NodeId,
    links: Arc<CurrentLinks>,
}

impl Remote for LinkRemote {
    fn node(&self) -> &str {
        self.node.as_str()
    }

    fn open<'a>(&'a self, doc: &'a str) -> BoxFuture<'a, Result<Box<dyn Attachment>, String>> {
        Box::pin(async move {
            let links = self
                .links
                .get()
                .ok_or_else(|| "this node has no links now (it is registering again)".to_owned())?;
            let link = links.get(&self.node).await.map_err(|e| e.to_string())?;
            let stream = link.open(doc).await.map_err(|e| e.to_string())?;
            Ok(Box::new(LinkAttachment(stream)) as Box<dyn Attachment>)
        })
    }
}

/// Sends on an attachment's sub-stream.
#[derive(Debug)]
struct LinkSender(StreamSender);

impl AttachmentSender for LinkSender {
    fn send(&self, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.send(message).await.map_err(|e| e.to_string()) })
    }
}

/// An attachment carried by a link sub-stream.
#[derive(Debug)]
struct LinkAttachment(SubStream);

impl Attachment for LinkAttachment {
    fn send(&self, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.send(message).await.map_err(|e| e.to_string()) })
    }

    fn sender(&self) -> Arc<dyn AttachmentSender> {
        Arc::new(LinkSender(self.0.sender()))
    }

    fn recv(&mut self) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move { self.0.recv().await.ok() })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.close())
    }
}
