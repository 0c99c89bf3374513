//! The owner's side of a forwarded attachment: a client connected to another node (its entry
//! node) and attached, through a sub-stream of the internal link, to a document this node owns
//! (`docs/cluster.md`, "Routing: the internal link"; the messages are
//! [`debrief_proto::forward`]'s).
//!
//! To the document's owner task a forwarded attachment is a peer like a socket's, with a
//! [`Framing`] of its own, [`Forwarded`]: every message goes out as it is, and every notice as a
//! link message that the entry node turns into its client's dialect. The entry node has decoded
//! the client's dialect already; this side reads y-protocols frames and the token.
//!
//! The token is decided here, by this node's [`crate::documents::access::Authorizer`], since only
//! the owner knows the review's sessions and phase. A refusal is told as a withdrawal
//! ([`Notice::Withdrawn`]), a document that cannot take the attachment as a join failure, and
//! the sub-stream then closes.
//!
//! One task serves an attachment, reading and writing at once: what the document sends goes
//! out as it comes (the document never waits on an outbox: a full one is a slow consumer,
//! closed), and what the entry sends waits only for the document's queue, as a socket's reader
//! does, with credits back to the entry node for what was taken ([`forward::MSG_CREDIT`]).
//!
//! This module also routes: [`ClusterRouter`] tells the registry where a document is served,
//! and reaches other nodes' documents over the links.

use std::sync::Arc;

use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::forward;
use debrief_proto::ywire::{decode_frame, Message};
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::cluster::link::{StreamSender, SubStream};
use crate::cluster::links::CurrentLinks;
use crate::cluster::member::MemberSlot;
use crate::cluster::ownership::{Claims, Ownership};
use crate::cluster::{ClusterError, NodeId};
use crate::documents::command::{DocHandle, Incoming};
use crate::documents::peer::{ConnId, Credential, Delivery, Framing, Grant, Kick, Notice, Peer};
use crate::documents::presence::QueryGate;
use crate::documents::queue;
use crate::documents::remote::{encode_notice, join_failure};
use crate::documents::route::{Attachment, AttachmentSender, Remote, Route, Router};
use crate::metrics::Metrics;
use crate::storage::postgres::owner::Owner;
use crate::transport::socket::join;
use crate::transport::state::AppState;

/// The [`Framing`] of a forwarded attachment: messages as they are, notices as
/// [`forward::MSG_NOTICE`] messages. It never closes on its own account: the entry node decides
/// what a notice means for its client's dialect (a y-websocket client is closed when it becomes
/// read-only, a Hocuspocus client is told).
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarded;

impl Framing for Forwarded {
    fn prefix(&self) -> &[u8] {
        &[]
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        Delivery::Message(Bytes::from(encode_notice(notice)))
    }
}

/// Serves one forwarded attachment until either side ends it or the server shuts down. Runs on
/// the server's task tracker (the composition root spawns it for every sub-stream a link
/// brings).
pub async fn serve(state: Arc<AppState>, mut sub: SubStream) {
    let doc = sub.document().to_owned();
    let first = tokio::select! {
        first = tokio::time::timeout(state.limits.first_token_deadline, sub.recv()) => first,
        () = state.shutdown.cancelled() => return,
    };
    let token = match first {
        Ok(Ok(payload)) => match forward::decode_join(&payload) {
            Ok(token) => token.to_owned(),
            Err(e) => {
                tracing::debug!(doc = %doc, error = %e, "forwarded attachment began without a join");
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
    // As the owner decides: the sockets' authorizer would let a review's document through to
    // be forwarded, and this node is where it was forwarded to.
    let access = match state.registry.authorizer().authorize(&token, &doc) {
        Ok(access) => access,
        Err(denied) => {
            Metrics::inc(&state.metrics.permission_denied);
            let _ = sub.send(encode_notice(&Notice::Withdrawn(denied))).await;
            sub.close().await;
            return;
        }
    };
    let (outbox, mut outbox_rx) = queue::channel(state.limits.outbox_capacity);
    let kick = Kick::default();
    let conn = state.conn_id();
    let peer = Peer {
        conn,
        outbox,
        kick: kick.clone(),
        framing: Arc::new(Forwarded),
        grant: Grant::new(access),
        credential: Credential::new(&token),
    };
    drop(token);
    let handle = match join(&state, &doc, peer).await {
        Ok(handle) => handle,
        Err(e) => {
            let _ = sub.send(forward::encode_join_failed(join_failure(e))).await;
            sub.close().await;
            return;
        }
    };
    Metrics::inc(&state.metrics.forwarded_open);
    let end = pump(&state, &mut sub, (&handle, conn), &mut outbox_rx, &kick).await;
    handle.leave(conn).await;
    Metrics::dec(&state.metrics.forwarded_open);
    match end {
        End::Close(code, reason) => finish(&mut sub, code, &reason).await,
        End::Gone => {}
    }
}

/// How an attachment ended.
enum End {
    /// This side closes it with a code and reason the entry node passes on.
    Close(u16, String),
    /// The entry node closed it, or the link is gone.
    Gone,
}

/// Carries messages both ways until one side ends the attachment: what the document sends
/// goes out as it comes (in parts when it is longer than a link message), and what the entry
/// sends is taken by the document as fast as it takes it, with a credit back for each half
/// window taken, so that neither direction waits on the other.
async fn pump(
    state: &AppState,
    sub: &mut SubStream,
    (handle, conn): (&DocHandle, ConnId),
    outbox: &mut queue::Receiver<Bytes>,
    kick: &Kick,
) -> End {
    let sender = sub.sender();
    let max = state.limits.max_frame_bytes;
    // What the reader took, for the writer to credit: the writer is the only one to send, so a
    // credit never lands between the parts of a message.
    let (grants, mut granted) = tokio::sync::mpsc::channel::<(u64, u64)>(8);
    let reader = async move {
        let mut queries = QueryGate::default();
        // A client's frame, re-encoded by its entry node, with room for the message header.
        let mut parts = forward::Reassembly::new(max + 64);
        // Taken since the last credit: messages, bytes.
        let mut taken = (0u64, 0u64);
        loop {
            let Ok(payload) = sub.recv().await else {
                return End::Gone;
            };
            let whole = match parts.feed(payload) {
                Ok(Some(whole)) => whole,
                Ok(None) => continue,
                Err(e) => {
                    return End::Close(close::MESSAGE_TOO_BIG, format!("frame_too_large: {e}"))
                }
            };
            let len = whole.len() as u64;
            let bytes = Bytes::from(whole);
            if bytes.len() > max {
                return End::Close(
                    close::MESSAGE_TOO_BIG,
                    format!("frame_too_large: limit is {max} bytes"),
                );
            }
            let messages = match decode_frame(&bytes) {
                Ok(messages) => messages,
                Err(e) => return End::Close(close::PROTOCOL_ERROR, e.code().to_owned()),
            };
            for message in messages {
                let incoming = match message {
                    Message::Sync(sync) => Incoming::from_sync(&bytes, sync),
                    Message::Awareness(a) => Incoming::Awareness(bytes.slice_ref(a)),
                    Message::QueryAwareness if queries.admit(Instant::now()) => {
                        Incoming::QueryAwareness
                    }
                    Message::QueryAwareness | Message::Auth(_) => continue,
                };
                // Waits while the document is busy, as a socket's reader does.
                if !handle.send(conn, incoming).await {
                    return End::Close(close::INTERNAL_ERROR, "document_closed".to_owned());
                }
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
                frame = outbox.recv() => {
                    let Some(frame) = frame else {
                        return End::Close(close::INTERNAL_ERROR, "document_closed".to_owned());
                    };
                    for piece in forward::split(frame.to_vec(), forward::PART_BYTES) {
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
        (code, reason) = kick.kicked() => End::Close(code, reason),
        () = state.shutdown.cancelled() => {
            End::Close(close::GOING_AWAY, "server_shutting_down".to_owned())
        }
        end = reader => end,
        end = writer => end,
    }
}

/// Tells the entry node why the attachment ends, then closes the sub-stream.
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
