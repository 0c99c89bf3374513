//! The y-websocket dialect at `GET /ws/{doc}`: upgrade, then one task per connection that runs
//! a reader and a writer (from [`crate::transport::socket`]) side by side, and the dialect's
//! [`Framing`] of what a document owner sends.
//!
//! Access: the token is `?token=…` (none is the empty token), decided by the server's
//! [`crate::documents::access::Authorizer`] before the connection joins the document. A refusal closes the
//! socket with 4401 and the reason; a read-only connection that sends a change is closed with
//! 4403 (an update that holds nothing new, such as a reader's SyncStep2 answer, is accepted).
//!
//! The reader decodes every message of each incoming frame and forwards it to the document owner
//! (waiting when the owner is busy, which slows only this client). The writer drains the
//! connection's bounded outbox, one protocol message per frame, and sends the close frame when the
//! owner, the reader or shutdown asks for one. Neither ever blocks another connection.
//!
//! The dialect has no acknowledgements and no message for a change of access: an update is not
//! acknowledged, and a connection whose write access or access is withdrawn is closed with 4403 or
//! 4401 (reconnecting gets the new access).

use std::sync::Arc;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::ywire::{decode_frame, Message};
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::documents::access::Access;
use crate::documents::command::{DocHandle, Incoming, JoinError};
use crate::documents::peer::{ConnId, Credential, Delivery, Framing, Grant, Kick, Notice, Peer};
use crate::documents::presence::QueryGate;
use crate::documents::queue;
use crate::error::ApiError;
use crate::limits::{valid_document_name, MAX_DOCUMENT_NAME_LEN};
use crate::metrics::Metrics;
use crate::transport::admission::{Confirming, Connection, Meter};
use crate::transport::socket::{
    join, meter_of, next_frame, outbox_room, upgrade_required, writer, Sink, Stream, Upgrade,
};
use crate::transport::state::AppState;

/// The query of `GET /ws/{doc}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct WsQuery {
    /// The access token; absent means the empty token.
    #[serde(default)]
    token: String,
}

/// The y-websocket [`Framing`]: every message is a frame of its own, and notices the dialect cannot
/// say are closes.
#[derive(Debug, Clone, Copy, Default)]
pub struct YWebsocket;

impl Framing for YWebsocket {
    fn prefix(&self) -> &[u8] {
        &[]
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        match notice {
            Notice::Opened(_) | Notice::Access(Access::ReadWrite) | Notice::Applied => {
                Delivery::Nothing
            }
            Notice::Access(Access::ReadOnly) => Delivery::Close(
                close::READ_ONLY,
                "read_only: write access was withdrawn; reconnect to read".to_owned(),
            ),
            Notice::Withdrawn(denied) => Delivery::Close(close::PERMISSION_DENIED, denied.reason()),
            Notice::Refused => Delivery::Close(
                close::READ_ONLY,
                "read_only: this connection may not change the document".to_owned(),
            ),
        }
    }
}

/// `GET /ws/{doc}`: validates the name and upgrades.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    doc: Result<Path<String>, PathRejection>,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<Upgrade, ()>,
    conn_info: Result<ConnectInfo<Connection>, ExtensionRejection>,
) -> Response {
    // A segment that does not percent-decode to UTF-8 (`%ff`) is a bad name like any other.
    let doc = doc.map(|Path(doc)| doc).unwrap_or_default();
    if !valid_document_name(&doc) {
        return ApiError::bad_request(
            "invalid_document_name",
            format!(
                "document names are 1 to {MAX_DOCUMENT_NAME_LEN} characters from A-Z a-z 0-9 . _ : -"
            ),
        )
        .into_response();
    }
    let Ok(Query(WsQuery { token })) = query else {
        return ApiError::bad_request(
            "invalid_query",
            "the query string is not valid (expected at most ?token=…)",
        )
        .into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => return upgrade_required("y-websocket"),
    };
    // Decided before the upgrade, but told over the socket: stock clients see close codes, not
    // HTTP statuses, and do not retry a 44xx close.
    let access = state.authorizer.authorize(&token, &doc);
    let credential = Credential::new(&token);
    drop(token);
    let meter = meter_of(conn_info);
    // A grant another node decides again authenticates the socket only once that node opened
    // the document for it (`Confirming`).
    let provisional = access.is_ok() && state.authorizer.provisional(&doc);
    if let (Some(meter), Ok(_), false) = (&meter, &access, provisional) {
        // The token is accepted before the upgrade: nothing this socket reads waits for one.
        meter.authenticated();
    }
    ws.accept(&state.clone(), move |socket| {
        // Split before the connection's future is made: the halves are pointers, and a future
        // keeps room for its arguments for its whole life (every open connection has one).
        let halves = socket.split();
        let conn = state.conn_id();
        let span = tracing::debug_span!("conn", %conn, doc = %doc);
        connection(
            halves,
            doc,
            (access, credential, provisional),
            (conn, meter),
            state,
        )
        .instrument(span)
    })
}

async fn connection(
    (mut sink, stream): (Sink, Stream),
    doc: String,
    (access, credential, provisional): (
        Result<Access, crate::documents::access::Denied>,
        Credential,
        bool,
    ),
    (conn, meter): (ConnId, Option<Arc<Meter>>),
    state: Arc<AppState>,
) {
    Metrics::inc(&state.metrics.connections_open);
    let (outbox, outbox_rx) = queue::channel(state.limits.outbox_capacity);
    let kick = Kick::default();
    let done = state.shutdown.child_token();
    let access = match access {
        Ok(access) => access,
        Err(denied) => {
            Metrics::inc(&state.metrics.permission_denied);
            tracing::debug!(code = %denied.code, "permission denied");
            kick.kick(close::PERMISSION_DENIED, denied.reason());
            writer(&mut sink, outbox_rx, kick, done, &state).await;
            Metrics::dec(&state.metrics.connections_open);
            return;
        }
    };
    let room = outbox.downgrade();
    let framing = Confirming::around(YWebsocket, meter.as_ref(), provisional);
    let peer = Peer {
        conn,
        outbox,
        kick: kick.clone(),
        framing,
        grant: Grant::new(access),
        credential,
    };
    let joined = join(&state, &doc, peer).await;
    match joined {
        Ok(handle) => {
            tracing::debug!("connected");
            tokio::join!(
                writer(&mut sink, outbox_rx, kick.clone(), done.clone(), &state),
                reader(
                    stream,
                    (&handle, conn),
                    (&kick, &done),
                    &state,
                    &room,
                    meter.as_deref()
                ),
            );
            handle.leave(conn).await;
        }
        Err(e) => {
            let (code, reason) = match (super::socket::come_back_later(&e), e) {
                (Some(close), _) => close,
                (None, JoinError::FullForReaders) => (
                    close::TRY_AGAIN_LATER,
                    "too_many_connections: the places left are kept for writers",
                ),
                (None, JoinError::TooManyForSession) => (
                    close::TOO_MANY_PENDING,
                    "too_many_attachments: this session has the document open too many times",
                ),
                (None, _) => (close::TRY_AGAIN_LATER, "too_many_connections"),
            };
            kick.kick(code, reason);
            writer(&mut sink, outbox_rx, kick, done, &state).await;
        }
    }
    tracing::debug!("disconnected");
    Metrics::dec(&state.metrics.connections_open);
}

async fn reader(
    mut stream: Stream,
    (handle, conn): (&DocHandle, ConnId),
    (kick, done): (&Kick, &CancellationToken),
    state: &AppState,
    room: &queue::WeakSender<Bytes>,
    meter: Option<&Meter>,
) {
    let max = state.limits.max_frame_bytes;
    let mut queries = QueryGate::default();
    while let Some(bytes) = next_frame(&mut stream, (done, kick), max, meter).await {
        let messages = match decode_frame(&bytes) {
            Ok(messages) => messages,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable frame");
                kick.kick(close::PROTOCOL_ERROR, e.code());
                break;
            }
        };
        for message in messages {
            let incoming = match message {
                Message::Sync(sync) => Incoming::from_sync(&bytes, sync),
                Message::Awareness(a) => Incoming::Awareness(bytes.slice_ref(a)),
                Message::QueryAwareness if queries.admit(Instant::now()) => {
                    Incoming::QueryAwareness
                }
                Message::QueryAwareness => continue,
                // Clients have no auth message to send in this dialect; ignore it as y-websocket
                // servers do.
                Message::Auth(_) => continue,
            };
            let sent = tokio::select! {
                _ = done.cancelled() => return,
                // Boxed for the same reason as the writer's send.
                sent = Box::pin(async { outbox_room(room).await && handle.send(conn, incoming).await }) => sent,
            };
            if !sent {
                kick.kick(close::INTERNAL_ERROR, "document_closed");
                return;
            }
        }
    }
    done.cancel();
}
