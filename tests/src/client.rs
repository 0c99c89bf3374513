//! A Yjs client on yrs and tokio-tungstenite, speaking the wire format through `debrief_proto`
//! the way stock clients do: it answers the server's SyncStep1, sends its own, applies step 2 and
//! updates, forwards every local change, and keeps the awareness it hears.
//!
//! It speaks the y-websocket dialect ([`Client::connect`]) or, for one document, the Hocuspocus
//! dialect ([`Client::connect_collab`]: token first, every message behind the document name,
//! SyncStatus acknowledgements counted, Ping answered).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use debrief_proto::awareness::{decode_update, encode_update, AwarenessEntry};
use debrief_proto::hocuspocus::{self, Auth, DocMessage, Frame};
use debrief_proto::ywire::{decode_frame, AuthMessage, Message, SyncMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update};

/// Origin tag of updates applied from the server, so they are not sent back.
const REMOTE: &str = "remote";

/// How the server closed the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (1006 when the socket ended without a close frame).
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Seen {
    step1_sent: u64,
    step2_received: u64,
    awareness: HashMap<u64, (u64, String)>,
    closed: Option<Closed>,
    updates_received: u64,
    denied: Option<String>,
    scope: Option<String>,
    scopes: Vec<String>,
    /// Every binary frame received, with its arrival time (ms since the epoch).
    frames: Vec<(u64, Vec<u8>)>,
    denials: Vec<String>,
    acks: u64,
    refusals: u64,
    stateless: Vec<String>,
    doc_closed: Option<String>,
}

/// A connected y-websocket client.
#[derive(Debug)]
pub struct Client {
    /// The client's replica of the document.
    pub doc: Doc,
    out: mpsc::UnboundedSender<WsMessage>,
    seen: Arc<Mutex<Seen>>,
    changes: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
    /// `varString(doc)` in the Hocuspocus dialect; empty in the y-websocket one.
    prefix: Arc<[u8]>,
}

impl Client {
    /// Connects to `url` and performs the handshake (the server's SyncStep1 is answered, the
    /// client's own is sent). Use [`Client::wait_synced`] to wait for the server's answer.
    pub async fn connect(url: &str) -> Client {
        Client::connect_with(url, true, None).await
    }

    /// [`Client::connect`] from the local address `from` (another loopback address is another
    /// client for per-address limits).
    pub async fn connect_from(url: &str, from: std::net::IpAddr) -> Client {
        Client::connect_via(url, true, None, Some(from)).await
    }

    /// [`Client::connect_collab`] from the local address `from`.
    pub async fn connect_collab_from(
        url: &str,
        doc: &str,
        token: &str,
        from: std::net::IpAddr,
    ) -> Client {
        let client = Client::connect_via(url, false, Some(doc), Some(from)).await;
        client.send_token(token);
        client.send_step1();
        client
    }

    /// Sends a Hocuspocus token for the client's document.
    pub fn send_token(&self, token: &str) {
        let name = self.prefix_name();
        self.send_raw(
            DocMessage::Auth(Auth::Token {
                token: Some(token),
                provider_version: Some("debrief-tests"),
            })
            .encode(&name),
        );
    }

    /// The document name of a Hocuspocus client (from its prefix).
    fn prefix_name(&self) -> String {
        let mut r = debrief_proto::lib0::Reader::new(&self.prefix);
        r.read_var_string().map(str::to_owned).unwrap_or_default()
    }

    /// Connects without sending anything (for tests of malformed input).
    pub async fn connect_silent(url: &str) -> Client {
        Client::connect_with(url, false, None).await
    }

    /// Connects to a `/collab` URL and opens `doc` with `token`, then sends SyncStep1, as the
    /// stock provider does. Use [`Client::wait_authenticated`] and [`Client::wait_synced`].
    pub async fn connect_collab(url: &str, doc: &str, token: &str) -> Client {
        let client = Client::connect_with(url, false, Some(doc)).await;
        client.send_raw(
            DocMessage::Auth(Auth::Token {
                token: Some(token),
                provider_version: Some("debrief-tests"),
            })
            .encode(doc),
        );
        client.send_step1();
        client
    }

    /// Connects to a `/collab` URL without sending anything; frames sent with
    /// [`Client::send_message`] go to `doc`.
    pub async fn connect_collab_silent(url: &str, doc: &str) -> Client {
        Client::connect_with(url, false, Some(doc)).await
    }

    async fn connect_with(url: &str, handshake: bool, collab_doc: Option<&str>) -> Client {
        Client::connect_via(url, handshake, collab_doc, None).await
    }

    async fn connect_via(
        url: &str,
        handshake: bool,
        collab_doc: Option<&str>,
        from: Option<std::net::IpAddr>,
    ) -> Client {
        Client::try_connect_via(url, handshake, collab_doc, from)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Connects to `url` in the y-websocket dialect, as [`Client::connect`]; `Err` when the server
    /// cannot be reached (a node that is stopping).
    pub async fn try_connect(url: &str) -> Result<Client, String> {
        Client::try_connect_via(url, true, None, None).await
    }

    /// Connects to a `/collab` URL and opens `doc` with `token`, as [`Client::connect_collab`];
    /// `Err` when the server cannot be reached (a node that is stopping).
    pub async fn try_connect_collab(url: &str, doc: &str, token: &str) -> Result<Client, String> {
        let client = Client::try_connect_via(url, false, Some(doc), None).await?;
        client.send_token(token);
        client.send_step1();
        Ok(client)
    }

    async fn try_connect_via(
        url: &str,
        handshake: bool,
        collab_doc: Option<&str>,
        from: Option<std::net::IpAddr>,
    ) -> Result<Client, String> {
        let prefix: Arc<[u8]> = collab_doc
            .map(hocuspocus::name_prefix)
            .unwrap_or_default()
            .into();
        let ws = crate::within("the WebSocket handshake", async {
            match from {
                None => tokio_tungstenite::connect_async(url)
                    .await
                    .map(|(ws, _)| ws),
                Some(from) => {
                    let host = url
                        .split("//")
                        .nth(1)
                        .and_then(|rest| rest.split('/').next())
                        .expect("host in the URL");
                    let target: SocketAddr = host.parse().expect("an IP address and port");
                    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                    socket
                        .bind(SocketAddr::new(from, 0))
                        .expect("bind the client address");
                    let tcp = socket.connect(target).await.expect("connect");
                    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
                    tokio_tungstenite::client_async(url, tcp)
                        .await
                        .map(|(ws, _)| ws)
                }
            }
        })
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let doc = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let (out, mut out_rx) = mpsc::unbounded_channel::<WsMessage>();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (bump, changes) = watch::channel(0u64);
        let bump = Arc::new(bump);

        let local_out = out.clone();
        let local_prefix = prefix.clone();
        doc.observe_update_v1(
            "forward-local",
            move |txn: &yrs::TransactionMut<'_>, e: &yrs::UpdateEvent| {
                let remote = txn
                    .origin()
                    .is_some_and(|o| o.as_ref() == REMOTE.as_bytes());
                if !remote {
                    let frame =
                        framed(&local_prefix, Message::Sync(SyncMessage::Update(&e.update)));
                    let _ = local_out.send(WsMessage::Binary(frame.into()));
                }
            },
        )
        .expect("observe updates");

        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let reader = {
            let doc = doc.clone();
            let seen = seen.clone();
            let out = out.clone();
            let bump = bump.clone();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let closed = loop {
                    match stream.next().await {
                        Some(Ok(WsMessage::Binary(bytes))) => {
                            handle_frame(&doc, &bytes, &seen, &out, &prefix);
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            break frame.map_or(
                                Closed {
                                    code: 1005,
                                    reason: String::new(),
                                },
                                |f| Closed {
                                    code: u16::from(f.code),
                                    reason: f.reason.to_string(),
                                },
                            );
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            break Closed {
                                code: 1006,
                                reason: String::new(),
                            }
                        }
                    }
                    bump.send_modify(|n| *n += 1);
                };
                lock(&seen).closed = Some(closed);
                bump.send_modify(|n| *n += 1);
            })
        };
        let client = Client {
            doc,
            out,
            seen,
            changes,
            tasks: vec![writer, reader],
            prefix,
        };
        if handshake {
            client.send_step1();
        }
        Ok(client)
    }

    /// Sends raw bytes as one binary frame.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.out.send(WsMessage::Binary(bytes.into()));
    }

    /// Sends a text frame.
    pub fn send_text(&self, text: &str) {
        let _ = self.out.send(WsMessage::Text(text.into()));
    }

    /// Sends a y-protocols message in this client's dialect.
    pub fn send_message(&self, message: Message<'_>) {
        self.send_raw(framed(&self.prefix, message));
    }

    /// Sends an update as a sync Update message, bypassing the local document.
    pub fn send_update(&self, update: &[u8]) {
        self.send_message(Message::Sync(SyncMessage::Update(update)));
    }

    /// Publishes this client's awareness state.
    pub fn set_awareness(&self, client: u64, clock: u64, state: &str) {
        let payload = encode_update([AwarenessEntry {
            client,
            clock,
            state,
        }]);
        self.send_message(Message::Awareness(&payload));
    }

    /// Asks the server for every awareness state.
    pub fn query_awareness(&self) {
        self.send_message(Message::QueryAwareness);
    }

    /// Inserts `text` at `index` (UTF-16 units) of the text `name`; the change is sent.
    pub fn insert(&self, name: &str, index: u32, text: &str) {
        let t = self.doc.get_or_insert_text(name);
        let mut txn = self.doc.transact_mut();
        t.insert(&mut txn, index, text);
    }

    /// Removes `len` UTF-16 units at `index` of the text `name`; the change is sent.
    pub fn remove(&self, name: &str, index: u32, len: u32) {
        let t = self.doc.get_or_insert_text(name);
        let mut txn = self.doc.transact_mut();
        t.remove_range(&mut txn, index, len);
    }

    /// The current content of the text `name`.
    pub fn text(&self, name: &str) -> String {
        let t = self.doc.get_or_insert_text(name);
        t.get_string(&self.doc.transact())
    }

    /// Length of the text `name` in UTF-16 units.
    pub fn text_len(&self, name: &str) -> u32 {
        let t = self.doc.get_or_insert_text(name);
        t.len(&self.doc.transact())
    }

    /// Waits until the server answered the client's SyncStep1.
    pub async fn wait_synced(&mut self) {
        self.wait_for("the initial sync", |s| s.synced).await;
    }

    /// Whether the server closed the connection or (Hocuspocus) the document.
    pub fn ended(&self) -> bool {
        let seen = lock(&self.seen);
        seen.closed.is_some() || seen.doc_closed.is_some()
    }

    /// Waits until the server answered the client's SyncStep1 (`None`), or closed the connection
    /// or (Hocuspocus) the document: then why, in words.
    pub async fn synced_or_closed(&mut self) -> Option<String> {
        self.wait_for("the initial sync or a close", |s| {
            s.synced || s.closed || s.doc_closed
        })
        .await;
        let seen = lock(&self.seen);
        if seen.step2_received > 0 {
            None
        } else if let Some(closed) = &seen.closed {
            Some(format!("closed {}: {}", closed.code, closed.reason))
        } else {
            Some(format!("document closed: {:?}", seen.doc_closed))
        }
    }

    /// Sends SyncStep1 again and waits for the answer. The server handles a connection's
    /// messages in order and answers only after flushing, so once this returns every edit this
    /// client sent before is applied and durable on the server.
    pub async fn round_trip(&mut self) {
        let target = self.send_step1();
        self.wait_for("the answer to a SyncStep1", move |s| {
            s.step2_received >= target
        })
        .await;
    }

    /// Sends SyncStep1 and returns how many answers have to arrive until this one is answered.
    fn send_step1(&self) -> u64 {
        let sv = self.doc.transact().state_vector().encode_v1();
        let target = {
            let mut seen = lock(&self.seen);
            seen.step1_sent += 1;
            seen.step1_sent
        };
        self.send_message(Message::Sync(SyncMessage::Step1(&sv)));
        target
    }

    /// Waits until the text `name` equals `expected`; on timeout the failure shows both.
    pub async fn wait_text(&mut self, name: &str, expected: &str) {
        let doc = self.doc.clone();
        let t = doc.get_or_insert_text(name);
        let waited = tokio::time::timeout(crate::WAIT, async {
            loop {
                if t.get_string(&doc.transact()) == expected {
                    return;
                }
                if self.changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        let actual = t.get_string(&doc.transact());
        assert!(
            waited.is_ok() && actual == expected,
            "text {name:?} is {actual:?}, expected {expected:?} (closed: {:?})",
            self.closed()
        );
    }

    /// Waits until the awareness state of `client` is `state` (`None`: until it is gone).
    pub async fn wait_awareness(&mut self, client: u64, state: Option<&str>) {
        let what = format!("awareness of {client} to be {state:?}");
        let state = state.map(str::to_owned);
        self.wait_for(&what, move |s| {
            s.awareness.get(&client).map(|(_, st)| st.clone()) == state
        })
        .await;
    }

    /// Waits until the server closes the connection, and returns how.
    pub async fn wait_closed(&mut self) -> Closed {
        self.wait_for("the server to close the connection", |s| s.closed)
            .await;
        lock(&self.seen).closed.clone().expect("closed")
    }

    /// The close, if the server closed already.
    pub fn closed(&self) -> Option<Closed> {
        lock(&self.seen).closed.clone()
    }

    /// Number of sync Update messages received.
    pub fn updates_received(&self) -> u64 {
        lock(&self.seen).updates_received
    }

    /// Waits until at least `n` sync Update messages arrived.
    pub async fn wait_updates(&mut self, n: u64) {
        self.wait_for(&format!("{n} relayed updates"), move |s| {
            s.updates_received >= n
        })
        .await;
    }

    /// A permission-denied message, if one arrived.
    pub fn denied(&self) -> Option<String> {
        lock(&self.seen).denied.clone()
    }

    /// Hocuspocus: waits for `Authenticated` and returns its scope.
    pub async fn wait_authenticated(&mut self) -> String {
        self.wait_for("Authenticated", |s| s.scope).await;
        lock(&self.seen).scope.clone().expect("scope")
    }

    /// Every binary frame received so far, with its arrival time in ms since the Unix epoch.
    pub fn frames(&self) -> Vec<(u64, Vec<u8>)> {
        lock(&self.seen).frames.clone()
    }

    /// Waits until `cond` holds on the client's replica of the document.
    pub async fn wait_doc(&mut self, what: &str, cond: impl Fn(&Doc) -> bool) {
        let doc = self.doc.clone();
        self.wait_for(what, move |_| cond(&doc)).await;
    }

    /// Hocuspocus: waits until `n` `Authenticated` arrived (a change of access sends another),
    /// and returns their scopes in order.
    pub async fn wait_scopes(&mut self, n: usize) -> Vec<String> {
        self.wait_for(&format!("{n} Authenticated"), move |s| s.scopes >= n)
            .await;
        lock(&self.seen).scopes.clone()
    }

    /// Hocuspocus: waits until `n` `PermissionDenied` arrived, and returns their reasons.
    pub async fn wait_denials(&mut self, n: usize) -> Vec<String> {
        self.wait_for(&format!("{n} PermissionDenied"), move |s| s.denials >= n)
            .await;
        lock(&self.seen).denials.clone()
    }

    /// Hocuspocus: SyncStatus(1) acknowledgements received.
    pub fn acks(&self) -> u64 {
        lock(&self.seen).acks
    }

    /// Waits until the client receives anything more; false once its connection has ended (a
    /// writer that must outlive its server's end waits with this, not with a `wait_…`).
    pub async fn changed(&mut self) -> bool {
        self.changes.changed().await.is_ok()
    }

    /// Hocuspocus: waits until at least `n` SyncStatus(1) arrived.
    pub async fn wait_acks(&mut self, n: u64) {
        self.wait_for(&format!("{n} acknowledgements"), move |s| s.acks >= n)
            .await;
    }

    /// Hocuspocus: waits until at least `n` SyncStatus(0) arrived.
    pub async fn wait_refusals(&mut self, n: u64) {
        self.wait_for(&format!("{n} refusals"), move |s| s.refusals >= n)
            .await;
    }

    /// Hocuspocus: waits until at least `n` stateless messages arrived, and returns them all.
    pub async fn wait_stateless(&mut self, n: usize) -> Vec<String> {
        self.wait_for(&format!("{n} stateless messages"), move |s| {
            s.stateless >= n
        })
        .await;
        lock(&self.seen).stateless.clone()
    }

    /// Hocuspocus: waits for a Close message for the document, and returns its reason.
    pub async fn wait_doc_closed(&mut self) -> String {
        self.wait_for("a Close message", |s| s.doc_closed).await;
        lock(&self.seen).doc_closed.clone().expect("doc closed")
    }

    /// Waits until `cond` holds on what the client has seen.
    async fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&SeenView<'_>) -> bool) {
        let seen = self.seen.clone();
        let changes = &mut self.changes;
        crate::within(what, async {
            loop {
                {
                    let s = lock(&seen);
                    let view = SeenView {
                        synced: s.step2_received > 0,
                        step2_received: s.step2_received,
                        awareness: &s.awareness,
                        closed: s.closed.is_some(),
                        updates_received: s.updates_received,
                        scope: s.scope.is_some(),
                        scopes: s.scopes.len(),
                        denials: s.denials.len(),
                        acks: s.acks,
                        refusals: s.refusals,
                        stateless: s.stateless.len(),
                        doc_closed: s.doc_closed.is_some(),
                    };
                    if cond(&view) {
                        return;
                    }
                }
                if changes.changed().await.is_err() {
                    let closed = lock(&seen).closed.clone();
                    panic!("client stopped while waiting for {what} (closed: {closed:?})");
                }
            }
        })
        .await;
    }

    /// Closes the socket from the client side.
    pub async fn close(mut self) {
        let _ = self.out.send(WsMessage::Close(Some(
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            },
        )));
        let _ = crate::within("the close handshake", self.wait_for_close_or_end()).await;
    }

    async fn wait_for_close_or_end(&mut self) {
        self.wait_for("the socket to close", |s| s.closed).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a wait condition can look at.
#[derive(Debug)]
pub struct SeenView<'a> {
    /// The server answered the client's SyncStep1.
    pub synced: bool,
    /// SyncStep2 answers received.
    pub step2_received: u64,
    /// Awareness states heard: client id → (clock, JSON state).
    pub awareness: &'a HashMap<u64, (u64, String)>,
    /// The connection is closed.
    pub closed: bool,
    /// Sync Update messages received.
    pub updates_received: u64,
    /// Hocuspocus: Authenticated arrived.
    pub scope: bool,
    /// Hocuspocus: Authenticated messages received.
    pub scopes: usize,
    /// Hocuspocus: PermissionDenied messages received.
    pub denials: usize,
    /// Hocuspocus: SyncStatus(1) received.
    pub acks: u64,
    /// Hocuspocus: SyncStatus(0) received.
    pub refusals: u64,
    /// Hocuspocus: stateless messages received.
    pub stateless: usize,
    /// Hocuspocus: a Close message for the document arrived.
    pub doc_closed: bool,
}

/// A y-protocols message in the client's dialect (`prefix` empty: y-websocket).
fn framed(prefix: &[u8], message: Message<'_>) -> Vec<u8> {
    let mut out = prefix.to_vec();
    message.encode_into(&mut out);
    out
}

fn handle_frame(
    doc: &Doc,
    bytes: &[u8],
    seen: &Mutex<Seen>,
    out: &mpsc::UnboundedSender<WsMessage>,
    prefix: &[u8],
) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    lock(seen).frames.push((at, bytes.to_vec()));
    if prefix.is_empty() {
        let messages = decode_frame(bytes).expect("the server sends valid frames");
        assert_eq!(messages.len(), 1, "the server sends one message per frame");
        for m in messages {
            handle_message(doc, m, seen, out, prefix);
        }
        return;
    }
    let frame = hocuspocus::decode_frame(bytes).expect("the server sends valid frames");
    let message = match frame {
        Frame::Ping => {
            let _ = out.send(WsMessage::Binary(Frame::Pong.encode().into()));
            return;
        }
        Frame::Pong => return,
        Frame::Doc { key, message } => {
            assert_eq!(
                hocuspocus::name_prefix(key),
                prefix,
                "a frame for another document"
            );
            message
        }
    };
    let mut s = lock(seen);
    match message {
        DocMessage::Sync(m) | DocMessage::SyncReply(m) => {
            drop(s);
            handle_message(doc, Message::Sync(m), seen, out, prefix);
        }
        DocMessage::Awareness(a) => {
            drop(s);
            handle_message(doc, Message::Awareness(a), seen, out, prefix);
        }
        DocMessage::Auth(Auth::Authenticated(scope)) => {
            s.scope = Some(scope.to_owned());
            s.scopes.push(scope.to_owned());
        }
        DocMessage::Auth(Auth::PermissionDenied(reason)) => s.denials.push(reason.to_owned()),
        DocMessage::SyncStatus(1) => s.acks += 1,
        DocMessage::SyncStatus(_) => s.refusals += 1,
        DocMessage::Stateless(payload) => s.stateless.push(payload.to_owned()),
        DocMessage::Close(reason) => s.doc_closed = Some(reason.unwrap_or_default().to_owned()),
        other => panic!("unexpected message from the server: {other:?}"),
    }
}

fn handle_message(
    doc: &Doc,
    m: Message<'_>,
    seen: &Mutex<Seen>,
    out: &mpsc::UnboundedSender<WsMessage>,
    prefix: &[u8],
) {
    {
        match m {
            Message::Sync(SyncMessage::Step1(sv)) => {
                let sv = StateVector::decode_v1(sv).expect("valid state vector");
                let diff = doc.transact().encode_diff_v1(&sv);
                let frame = framed(prefix, Message::Sync(SyncMessage::Step2(&diff)));
                let _ = out.send(WsMessage::Binary(frame.into()));
            }
            Message::Sync(SyncMessage::Step2(u)) => {
                apply_remote(doc, u);
                lock(seen).step2_received += 1;
            }
            Message::Sync(SyncMessage::Update(u)) => {
                apply_remote(doc, u);
                lock(seen).updates_received += 1;
            }
            Message::Awareness(a) => {
                let entries = decode_update(a).expect("valid awareness");
                let mut s = lock(seen);
                for e in entries {
                    if e.is_removal() {
                        s.awareness.remove(&e.client);
                    } else {
                        s.awareness.insert(e.client, (e.clock, e.state.to_owned()));
                    }
                }
            }
            Message::Auth(AuthMessage::PermissionDenied(reason)) => {
                lock(seen).denied = Some(reason.to_owned());
            }
            Message::QueryAwareness => {}
        }
    }
}

fn apply_remote(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("the server sends valid updates");
    let mut txn = doc.transact_mut_with(REMOTE);
    txn.apply_update(update).expect("apply server update");
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with_headers(addr, path).await;
    (status, body)
}

/// A plain HTTP/1.1 GET; returns the status code, the headers (names in lower case, in order)
/// and the body.
pub async fn http_get_with_headers(
    addr: SocketAddr,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    let (status, headers, body) = http_get_bytes(addr, path, &[]).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A plain HTTP/1.1 GET with the extra request headers `sent`; returns the status code, the
/// response headers (names in lower case, in order) and the body's bytes as they came (no
/// content decoding).
pub async fn http_get_bytes(
    addr: SocketAddr,
    path: &str,
    sent: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect for HTTP");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in sent {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let split = memchr::memmem::find(&raw, b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}
