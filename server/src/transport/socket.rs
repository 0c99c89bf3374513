//! The WebSocket machinery both dialects share, and nothing of either dialect: socket settings,
//! the writer that drains a connection's bounded outbox into the socket (and sends the close frame
//! someone asked for), the reader of the next binary frame with the close code each violation
//! gets, the wait for outbox room that slows a client which does not read, and attaching a
//! connection to a document through the registry.
//!
//! `ws.rs` (y-websocket) and `collab.rs` (Hocuspocus) build on this module; neither imports the
//! other. Frames are opaque bytes here: decoding and encoding them is the dialects' job.

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use debrief_proto::close;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::documents::command::{DocHandle, JoinError};
use crate::documents::peer::{Kick, Peer};
use crate::documents::queue;
use crate::error::ApiError;
use crate::limits::CLOSE_TIMEOUT;
use crate::transport::admission::{Connection, Failure, Meter};
use crate::transport::state::AppState;

/// tungstenite allocates its read buffer eagerly (128 KiB by default) and keeps it for the life
/// of the connection, so it is a large part of an idle connection's memory. Typing and presence
/// frames are a few hundred bytes; a larger frame gets a buffer of its exact size and arrives in
/// reads of this size (a 1 MiB frame, such as an offline client's catch-up: about 2,000 reads,
/// a few milliseconds).
const READ_BUFFER_BYTES: usize = 512;

/// How many times a connection retries opening a document that was unloading as it joined.
const JOIN_ATTEMPTS: usize = 5;

/// Frames written before one flush; bounds the bytes buffered for a single system call.
const WRITE_BATCH: usize = 64;

/// tungstenite writes its buffered frames to the socket once they pass this size, and at every
/// flush. With 0 every frame would be a system call of its own; with this, a batch of queued
/// frames (an update and the presence behind it, a writer's pipelined updates) goes out in one.
/// The buffer keeps its capacity (up to twice this after a burst of small frames, or the size of
/// the largest frame), so it is kept small: at 4 KiB a batch of typing updates is still one call.
const WRITE_BUFFER_BYTES: usize = 4 << 10;

/// A message larger than this goes out in WebSocket fragments of this size (RFC 6455 §5.4; every
/// client reassembles them). tungstenite copies a whole frame into its write buffer, keeps that
/// buffer's capacity for the life of the connection and shifts what is left of it after each
/// partial write: sent whole, a 20 MB document to 150 joiners held 3 GB of copies (issue 21),
/// and cost time quadratic in the frame's size. In fragments, every joiner's message is the one
/// shared encoding, and a connection buffers at most one fragment of it.
const FRAGMENT_BYTES: usize = 64 << 10;

/// An upgraded connection speaking WebSocket.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A WebSocket upgrade request (RFC 6455 §4.2.1), answered by [`Upgrade::accept`]. Debrief
/// upgrades connections itself rather than through axum's wrapper, which can send a message
/// only whole (see [`FRAGMENT_BYTES`]). Not an upgrade request: rejected with `()`, which each
/// endpoint answers with [`upgrade_required`].
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ();

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ()> {
        let headers = &parts.headers;
        let has = |name: header::HeaderName, wanted: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|token| token.trim().eq_ignore_ascii_case(wanted))
                })
            })
        };
        let upgrade = parts.method == Method::GET
            && has(header::CONNECTION, "upgrade")
            && has(header::UPGRADE, "websocket")
            && headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v == "13");
        let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
        match (upgrade, key) {
            (true, Some(key)) => {
                let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(())?;
                Ok(Upgrade { key, on_upgrade })
            }
            _ => Err(()),
        }
    }
}

impl Upgrade {
    /// Answers 101 Switching Protocols; once the connection has switched, `serve` runs on it,
    /// tracked by the server's task tracker (its shutdown waits for it).
    pub(crate) fn accept<F, Fut>(self, state: &AppState, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let config = config(state);
        let tracker: &TaskTracker = &state.tracker;
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tracker.spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            serve(socket).await;
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// Socket settings shared by both dialects.
fn config(state: &AppState) -> WebSocketConfig {
    // tungstenite enforces our limit itself: it refuses an oversized frame from its header, before
    // buffering any of it, and `next_frame` answers that refusal with 1009 (issue 16: a cap of
    // twice the limit buffered up to 8 MiB of a frame that was refused anyway, and a larger frame
    // got a bare transport error).
    let max = state.limits.max_frame_bytes;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
}

/// The meter of the request's connection; absent only when the router is served without
/// [`crate::transport::admission::MeteredListener`].
pub(crate) fn meter_of(
    connection: Result<ConnectInfo<Connection>, ExtensionRejection>,
) -> Option<Arc<Meter>> {
    connection.ok().map(|ConnectInfo(c)| c.meter)
}

/// The HTTP answer to a plain request on a WebSocket endpoint.
pub(crate) fn upgrade_required(dialect: &str) -> Response {
    ApiError::new(
        StatusCode::UPGRADE_REQUIRED,
        "websocket_upgrade_required",
        format!("this endpoint speaks the {dialect} protocol over a WebSocket"),
    )
    .into_response()
}

/// Why a connection to a document served nowhere this node can reach now is closed (1013; in a
/// cluster, a review's document while no node serves reviews).
pub(crate) const UNAVAILABLE: &str =
    "reviews_unavailable: no node of this cluster can serve this document now; try again";

/// The close of the whole socket for a join that failed only for now: the node or the document
/// is going away, or no node of the cluster can serve the document yet. The client comes back by
/// connecting again. A Hocuspocus socket is closed whole for these too, not only for the document:
/// the stock provider re-attaches a document only when its socket opens again, and takes a
/// per-document Close as the document's end (`docs/cluster.md`, "Routing: the internal link").
/// `None` for a refusal of this one client (the document is full, the session holds it too often).
pub(crate) fn come_back_later(e: &JoinError) -> Option<(u16, &'static str)> {
    match e {
        JoinError::ShuttingDown | JoinError::Unloading => {
            Some((close::GOING_AWAY, "server_shutting_down"))
        }
        JoinError::Unavailable => Some((close::TRY_AGAIN_LATER, UNAVAILABLE)),
        JoinError::Full | JoinError::FullForReaders | JoinError::TooManyForSession => None,
    }
}

/// Attaches `peer` to the document `doc`, opening it when needed.
pub(crate) async fn join(state: &AppState, doc: &str, peer: Peer) -> Result<DocHandle, JoinError> {
    let mut last = JoinError::Unloading;
    for _ in 0..JOIN_ATTEMPTS {
        let handle = state.registry.open(doc);
        match handle.join(peer.clone()).await {
            Ok(()) => return Ok(handle),
            Err(JoinError::Unloading) => last = JoinError::Unloading,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

pub(crate) type Sink = futures_util::stream::SplitSink<Socket, WsMessage>;
pub(crate) type Stream = futures_util::stream::SplitStream<Socket>;

/// Drains `outbox` into the socket until the connection is done, then sends the close frame
/// someone asked for (or "going away" at shutdown).
pub(crate) async fn writer(
    sink: &mut Sink,
    mut outbox: queue::Receiver<Bytes>,
    kick: Kick,
    done: CancellationToken,
    state: &AppState,
) {
    let write_timeout = state.limits.write_timeout;
    // Made once, not per frame: each of these registers a waiter when first polled.
    let kicked = kick.kicked();
    let stopping = state.shutdown.cancelled();
    let finished = done.cancelled();
    tokio::pin!(kicked, stopping, finished);
    let close_with = loop {
        let frame = tokio::select! {
            biased;
            (code, reason) = &mut kicked => break Some((code, reason)),
            () = &mut stopping => break Some((close::GOING_AWAY, "server_shutting_down".to_owned())),
            () = &mut finished => break None,
            frame = outbox.recv() => match frame {
                Some(frame) => frame,
                None => break Some((close::INTERNAL_ERROR, "document_closed".to_owned())),
            },
        };
        // Boxed: a write is short-lived, and the connection's future would otherwise keep room
        // for it while idle.
        let mut send = Box::pin(send_batch(sink, frame, &mut outbox));
        // Most writes complete at once; only one that has to wait for the client gets a timer.
        let sent = match (&mut send).now_or_never() {
            Some(sent) => Ok(sent),
            // A write blocks while the client does not read; neither a close request nor a
            // shutdown waits for it.
            None => tokio::select! {
                biased;
                (code, reason) = &mut kicked => break Some((code, reason)),
                () = &mut stopping => break Some((close::GOING_AWAY, "server_shutting_down".to_owned())),
                sent = Box::pin(tokio::time::timeout(write_timeout, send)) => sent,
            },
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break None,
            Err(_) => {
                break Some((
                    close::SLOW_CONSUMER,
                    "slow_consumer: write timed out".to_owned(),
                ))
            }
        }
    };
    if let Some((code, reason)) = close_with {
        tracing::debug!(code, reason = %reason, "closing connection");
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        // Best effort: a client that stopped reading may never take the close frame.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(WsMessage::Close(Some(frame)))).await;
    }
    done.cancel();
}

/// Writes `first` and every frame already queued behind it, then flushes once: under load, one
/// system call carries many frames.
async fn send_batch(
    sink: &mut Sink,
    first: Bytes,
    outbox: &mut queue::Receiver<Bytes>,
) -> Result<(), WsError> {
    feed(sink, first).await?;
    for _ in 1..WRITE_BATCH {
        match outbox.try_recv() {
            Ok(frame) => feed(sink, frame).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// Queues one message for the socket: whole, or past [`FRAGMENT_BYTES`] in fragments that share
/// its bytes. Each `feed` first waits until what is buffered has gone out, so the connection
/// buffers at most one fragment.
async fn feed(sink: &mut Sink, mut message: Bytes) -> Result<(), WsError> {
    if message.len() <= FRAGMENT_BYTES {
        return sink.feed(WsMessage::Binary(message)).await;
    }
    let mut opcode = OpCode::Data(Data::Binary);
    while !message.is_empty() {
        let part = message.split_to(FRAGMENT_BYTES.min(message.len()));
        let last = message.is_empty();
        sink.feed(WsMessage::Frame(Frame::message(part, opcode, last)))
            .await?;
        opcode = OpCode::Data(Data::Continue);
    }
    Ok(())
}

/// The next binary frame, or `None` once the connection is done; protocol violations (a text
/// frame, a transport error, an oversized frame) and a connection whose meter failed its reads (a
/// deadline, a budget) ask for the matching close first. Tells the meter what each message
/// completed.
pub(crate) async fn next_frame(
    stream: &mut Stream,
    (done, kick): (&CancellationToken, &Kick),
    max: usize,
    meter: Option<&Meter>,
) -> Option<Bytes> {
    loop {
        let next = tokio::select! {
            _ = done.cancelled() => return None,
            next = stream.next() => next,
        };
        match &next {
            Some(Ok(WsMessage::Ping(p) | WsMessage::Pong(p))) => {
                meter.inspect(|m| m.control(p.len()));
            }
            Some(Ok(_)) => {
                meter.inspect(|m| m.message());
            }
            _ => {}
        }
        let bytes = match next {
            Some(Ok(WsMessage::Binary(bytes))) => bytes,
            Some(Ok(WsMessage::Text(_))) => {
                kick.kick(
                    close::UNSUPPORTED_DATA,
                    "text_frame: the protocol is binary",
                );
                return None;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
            Some(Ok(WsMessage::Close(_))) | None => return None,
            Some(Err(e)) if too_large(&e) => {
                kick.kick(
                    close::MESSAGE_TOO_BIG,
                    format!("frame_too_large: limit is {max} bytes"),
                );
                return None;
            }
            Some(Err(e)) => {
                match meter.and_then(Meter::failure) {
                    Some(Failure::Busy(busy)) => kick.kick(close::SERVER_BUSY, busy.reason()),
                    Some(Failure::Timeout) => kick.kick(
                        close::TIMEOUT,
                        "frame_timeout: a frame did not arrive in full in time",
                    ),
                    None => {
                        tracing::debug!(error = %e, "transport error");
                        kick.kick(close::PROTOCOL_ERROR, "transport_error");
                    }
                }
                return None;
            }
        };
        if bytes.len() > max {
            kick.kick(
                close::MESSAGE_TOO_BIG,
                format!("frame_too_large: limit is {max} bytes"),
            );
            return None;
        }
        return Some(bytes);
    }
}

/// Whether a transport error is tungstenite refusing a frame or message over the size limit.
fn too_large(e: &WsError) -> bool {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    matches!(e, WsError::Capacity(CapacityError::MessageTooLong { .. }))
}

/// Waits until at least half of a connection's outbox is free before the connection hands its
/// next message to the owner, so that the frames the message causes (its acknowledgement, an
/// answer) find room. A client that sends faster than it reads is slowed down (its socket is not
/// read meanwhile) instead of being closed as a slow consumer. The wait takes no slots, so the
/// owner can still fill the outbox up to its bound meanwhile: only a client whose outbox really
/// holds [`crate::limits::OUTBOX_CAPACITY`] frames is closed (issue 16). `false` once the outbox
/// is gone.
pub(crate) async fn outbox_room(outbox: &queue::WeakSender<Bytes>) -> bool {
    let Some(outbox) = outbox.upgrade() else {
        return false;
    };
    let half = (outbox.max_capacity() / 2).max(1);
    let room = outbox.reserve_many(half).await.is_ok();
    room
}
