//! A Yjs sync client: sync handshake, update and awareness exchange, and the
//! bookkeeping that turns received updates into deliveries and fan-out latencies.
//!
//! One client type serves both dialects (y-websocket and Hocuspocus): only the framing
//! (`wire.rs`) and the Hocuspocus extras differ — the auth step before sync, the server's
//! SyncStatus acknowledgements (counted, and timed when [`YClient::track_acks`] is set),
//! and answering its Ping.
//!
//! Matching a received update to its send: the update a server relays need not be the
//! bytes that were sent (the reference re-encodes the update of its own transaction, and
//! a server may merge several). So a send is identified by content: an update inserting
//! text is keyed by the first ID it inserts (client, clock); a delete-only update by the
//! smallest ID it deletes. A received update delivers every logged send whose key falls
//! in the ID ranges it inserts (or, for deletes, deletes).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{
    ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact,
    Update,
};

use crate::target::{Dialect, DocAddr};
use crate::trace::LocalEdit;
use crate::wire::{self, Incoming};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Name of the shared text type every client edits.
pub const TEXT_NAME: &str = "text";

const KIND_INS: u8 = 0;
const KIND_DEL: u8 = 1;

/// Identity of a sent update: (kind, client, clock).
type Key = (u8, u64, u32);

/// Send times of the updates sent to one document during the measured window.
#[derive(Debug, Default)]
pub struct SentLog {
    sent: Mutex<BTreeMap<Key, Instant>>,
}

impl SentLog {
    fn insert(&self, key: Key, at: Instant) {
        if let Ok(mut m) = self.sent.lock() {
            m.entry(key).or_insert(at);
        }
    }
}

/// Counters shared by all clients of a run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Deliveries expected: for each update sent while recording, the number of peers.
    pub expected: AtomicU64,
    /// Deliveries seen while recording.
    pub delivered: AtomicU64,
    /// Updates sent while recording.
    pub sent: AtomicU64,
    /// Signalled on every delivery (used by windowed writers).
    pub progress: Notify,
    /// When the latest delivery happened, as nanoseconds since [`epoch`].
    pub last_delivery_ns: AtomicU64,
    /// Writers that may still send in the measured window (see [`Counters::writer`]).
    pub writers_in_window: AtomicU64,
}

/// A writer that may still send in the measured window, until [`InWindow::done`] or drop. The
/// drain after the window waits for every writer to be done: a writer whose last tick fell just
/// before the window's end may send after the controller woke, and that update's deliveries
/// must be waited for, not counted as undelivered.
#[derive(Debug)]
pub struct InWindow(Option<Arc<Counters>>);

impl InWindow {
    /// This writer sends nothing more in the window.
    pub fn done(&mut self) {
        if let Some(c) = self.0.take() {
            c.writers_in_window.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InWindow {
    fn drop(&mut self) {
        self.done();
    }
}

/// A fixed instant that delivery times are measured from.
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Counters {
    /// Time of the latest delivery, if any.
    pub fn last_delivery(&self) -> Option<Instant> {
        match self.last_delivery_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(epoch() + Duration::from_nanos(ns)),
        }
    }

    /// Registers a writer that may still send in the measured window.
    pub fn writer(self: &Arc<Self>) -> InWindow {
        self.writers_in_window.fetch_add(1, Ordering::SeqCst);
        InWindow(Some(self.clone()))
    }

    pub fn outstanding(&self) -> u64 {
        self.expected
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered.load(Ordering::Relaxed))
    }
}

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct ClientStats {
    pub sent: u64,
    pub delivered: u64,
    pub echoes: u64,
    pub unmatched: u64,
    pub awareness_rx: u64,
    pub awareness_tx: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Frames holding awareness received while recording, and their bytes.
    pub awareness_rx_frames_rec: u64,
    pub awareness_rx_bytes_rec: u64,
    pub latencies_us: Vec<u32>,
    /// Hocuspocus SyncStatus(1) acknowledgements received.
    pub acks: u64,
    /// Send-to-acknowledgement times of the updates sent while `track_acks` was set.
    pub ack_latencies_us: Vec<u32>,
}

impl ClientStats {
    pub fn merge(&mut self, o: ClientStats) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.echoes += o.echoes;
        self.unmatched += o.unmatched;
        self.awareness_rx += o.awareness_rx;
        self.awareness_tx += o.awareness_tx;
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.awareness_rx_frames_rec += o.awareness_rx_frames_rec;
        self.awareness_rx_bytes_rec += o.awareness_rx_bytes_rec;
        self.latencies_us.extend(o.latencies_us);
        self.acks += o.acks;
        self.ack_latencies_us.extend(o.ack_latencies_us);
    }
}

/// What reading one frame produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Something other than the below (awareness, pong, an echo, ...).
    Other,
    /// The server's SyncStep2 was applied: the client has the document.
    Synced,
    /// An update from another client was applied; `n` logged sends matched.
    Update { matched: u32 },
    /// The server acknowledged one of this client's updates (Hocuspocus SyncStatus 1).
    Acked,
    /// The connection is closed.
    Closed,
}

/// Settings shared by the clients of a run.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub dialect: Dialect,
    pub counters: Arc<Counters>,
}

#[derive(Debug)]
pub struct YClient {
    ws: Ws,
    dialect: Dialect,
    /// Document name, sent in every Hocuspocus message.
    doc_name: String,
    /// Hocuspocus: the server accepted the token.
    pub authenticated: bool,
    doc: Doc,
    text: TextRef,
    client_id: u64,
    synced: bool,
    log: Arc<SentLog>,
    pub counters: Arc<Counters>,
    /// Peers expected to receive each of this client's updates.
    peers: u64,
    own_del_keys: HashSet<Key>,
    seen: HashSet<Key>,
    /// When true, sends are logged and counted, deliveries and latencies recorded.
    pub recording: bool,
    /// When true, received updates are neither applied nor matched, only counted as
    /// echoes (a lone writer whose updates were encoded elsewhere).
    pub discard_updates: bool,
    /// When true, received updates are decoded and matched but not integrated into the
    /// local document (an observer that only watches).
    pub skip_apply: bool,
    /// When true, the server's SyncStep2 is not applied but kept in [`Self::sync_payload`]
    /// (a joiner that only checks what it received).
    pub keep_sync_payload: bool,
    pub sync_payload: Option<Vec<u8>>,
    /// With [`Self::keep_sync_payload`]: the updates received after the SyncStep2, kept too (a
    /// server may send the state it shares among joiners and then the changes made since).
    pub sync_tail: Vec<Vec<u8>>,
    /// The connection accepts a read-only scope (and presents the read-only token unless it
    /// has a session's).
    read_only: bool,
    /// A review session's token, presented instead of the benchmark's own.
    session: Option<String>,
    /// When the latest awareness state was sent.
    pub awareness_sent_at: Instant,
    pub stats: ClientStats,
    awareness_clock: u32,
    name: String,
    frame_at: Option<Instant>,
    /// When the frame carrying the server's SyncStep2 arrived (before decoding it).
    pub synced_frame_at: Option<Instant>,
    /// When the WebSocket handshake completed.
    pub connected_at: Instant,
    /// When set, each update sent is queued here until its acknowledgement, which is then
    /// timed (acknowledgements come in order). Set it only once the handshake has settled,
    /// so that no acknowledgement of the handshake's SyncStep2 is still on its way.
    pub track_acks: bool,
    ack_waiting: VecDeque<Instant>,
    /// Acknowledgements received while `track_acks` was set, and when the latest came.
    pub tracked_acks: u64,
    pub last_ack_at: Option<Instant>,
}

fn ws_config() -> WebSocketConfig {
    // Small read buffers: scenario 4 holds thousands of connections in this process.
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20))
}

impl YClient {
    /// Connects and starts the handshake: sends (Hocuspocus only) the auth token, then
    /// SyncStep1 and, if `awareness` is set, the local awareness state. Does not wait for
    /// the server's answer (see [`Self::wait_synced`]).
    pub async fn connect(
        addr: &DocAddr,
        cfg: &ClientConfig,
        log: Arc<SentLog>,
        peers: u64,
        name: String,
        awareness: bool,
    ) -> Result<Self> {
        let url = addr.url.as_str();
        let (ws, _resp) =
            tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
                .await
                .with_context(|| format!("connecting to {url}"))?;
        let connected_at = Instant::now();
        let doc = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Default::default()
        });
        let text = doc.get_or_insert_text(TEXT_NAME);
        let client_id = doc.client_id().get();
        let mut c = YClient {
            ws,
            dialect: cfg.dialect,
            doc_name: addr.doc.clone(),
            authenticated: false,
            doc,
            text,
            client_id,
            synced: false,
            log,
            counters: cfg.counters.clone(),
            peers,
            own_del_keys: HashSet::new(),
            seen: HashSet::new(),
            recording: false,
            discard_updates: false,
            skip_apply: false,
            keep_sync_payload: false,
            sync_payload: None,
            sync_tail: Vec::new(),
            read_only: addr.read_only,
            session: addr.token.clone(),
            awareness_sent_at: connected_at,
            stats: ClientStats::default(),
            awareness_clock: 0,
            name,
            frame_at: None,
            synced_frame_at: None,
            connected_at,
            track_acks: false,
            ack_waiting: VecDeque::new(),
            tracked_acks: 0,
            last_ack_at: None,
        };
        if c.dialect == Dialect::Hocuspocus {
            let frame = wire::hp_auth_token(&c.doc_name, c.token());
            c.send_frame(frame).await?;
        }
        let sv = c.doc.transact().state_vector();
        c.send_msg(&Message::Sync(SyncMessage::SyncStep1(sv)))
            .await?;
        if awareness {
            c.send_awareness(0).await?;
        }
        Ok(c)
    }

    fn token(&self) -> &str {
        if let Some(session) = &self.session {
            session
        } else if self.read_only {
            wire::READ_ONLY_TOKEN
        } else {
            wire::TOKEN
        }
    }

    /// Sets the number of peers each later update is expected to reach.
    pub fn set_peers(&mut self, peers: u64) {
        self.peers = peers;
    }

    pub fn text_len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    pub fn text_string(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Size of the document's full state as a v1 update.
    pub fn encoded_len(&self) -> usize {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
            .len()
    }

    async fn send_msg(&mut self, msg: &Message) -> Result<()> {
        let bytes = wire::encode(self.dialect, &self.doc_name, msg);
        self.send_frame(bytes).await
    }

    async fn send_frame(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.stats.tx_bytes += bytes.len() as u64;
        self.ws
            .send(WsMessage::Binary(bytes.into()))
            .await
            .context("websocket send")
    }

    /// Reads frames until the server has answered a presence query, or `max` passed: every
    /// frame the server sent before the answer has then been processed (servers answer a query
    /// behind what they sent before it; one that does not answer costs `max`).
    pub async fn drain_until_presence_answer(&mut self, max: Duration) -> Result<()> {
        self.send_msg(&Message::AwarenessQuery).await?;
        let before = self.stats.awareness_rx;
        let read = async {
            while self.stats.awareness_rx == before {
                let frame = self.recv_frame().await;
                if self.process(frame).await? == Event::Closed {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        match tokio::time::timeout(max, read).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }

    /// Publishes the local awareness state with the cursor at `cursor`.
    pub async fn send_awareness(&mut self, cursor: u32) -> Result<()> {
        self.awareness_clock += 1;
        let json = format!(
            r##"{{"user":{{"name":"{}","color":"#30bced"}},"cursor":{{"anchor":{cursor},"head":{cursor}}}}}"##,
            self.name
        );
        let mut clients = HashMap::new();
        clients.insert(
            ClientID::new(self.client_id),
            AwarenessUpdateEntry {
                clock: self.awareness_clock,
                json: json.into(),
            },
        );
        self.stats.awareness_tx += 1;
        self.awareness_sent_at = Instant::now();
        self.send_msg(&Message::Awareness(AwarenessUpdate { clients }))
            .await
    }

    /// Applies `edits` in one local transaction and sends the resulting update.
    /// Returns false (and sends nothing) when the edits changed nothing.
    pub async fn edit(&mut self, edits: &[LocalEdit<'_>]) -> Result<bool> {
        let update = {
            let mut txn = self.doc.transact_mut();
            for e in edits {
                if e.del > 0 {
                    self.text.remove_range(&mut txn, e.pos, e.del);
                }
                if !e.ins.is_empty() {
                    self.text.insert(&mut txn, e.pos, e.ins);
                }
            }
            txn.encode_update_v1()
        };
        self.send_update(update).await
    }

    /// Sends an already encoded v1 update (logged like a local edit's update).
    pub async fn send_update(&mut self, update: Vec<u8>) -> Result<bool> {
        if update.as_slice() == Update::EMPTY_V1 {
            return Ok(false);
        }
        if self.recording {
            let decoded = Update::decode_v1(&update).context("decoding own update")?;
            if let Some(key) = sent_key(&decoded) {
                if key.0 == KIND_DEL {
                    self.own_del_keys.insert(key);
                }
                self.log.insert(key, Instant::now());
            }
            self.stats.sent += 1;
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            self.counters
                .expected
                .fetch_add(self.peers, Ordering::Relaxed);
        }
        let msg = Message::Sync(SyncMessage::Update(update));
        self.send_msg(&msg).await?;
        if self.track_acks {
            self.ack_waiting.push_back(Instant::now());
        }
        Ok(true)
    }

    /// Waits for the next frame. Cancel-safe: use it in `select!`, then [`Self::process`].
    pub async fn recv_frame(&mut self) -> Option<Result<WsMessage>> {
        self.ws
            .next()
            .await
            .map(|r| r.map_err(|e| anyhow!(e).context("websocket receive")))
    }

    /// A frame already received, if any, without waiting.
    pub fn try_recv_frame(&mut self) -> Option<Option<Result<WsMessage>>> {
        use futures_util::FutureExt;
        self.recv_frame().now_or_never()
    }

    /// Reads and handles one frame.
    pub async fn next_event(&mut self) -> Result<Event> {
        let frame = self.recv_frame().await;
        self.process(frame).await
    }

    /// Handles what [`Self::recv_frame`] returned.
    pub async fn process(&mut self, frame: Option<Result<WsMessage>>) -> Result<Event> {
        let bytes = match frame {
            None => return Ok(Event::Closed),
            Some(Err(e)) => return Err(e),
            Some(Ok(WsMessage::Binary(b))) => b,
            Some(Ok(WsMessage::Close(Some(f))))
                if f.code != tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal =>
            {
                bail!("server closed the connection: {} {}", f.code, f.reason)
            }
            Some(Ok(WsMessage::Close(_))) => return Ok(Event::Closed),
            Some(Ok(WsMessage::Text(_))) => bail!("unexpected text frame"),
            Some(Ok(_)) => return Ok(Event::Other),
        };
        self.stats.rx_bytes += bytes.len() as u64;
        self.frame_at = Some(Instant::now());
        let mut event = Event::Other;
        let awareness_before = self.stats.awareness_rx;
        for msg in wire::decode(self.dialect, &self.doc_name, &bytes)? {
            match self.handle(msg).await? {
                Event::Other => {}
                e => event = e,
            }
        }
        if self.recording && self.stats.awareness_rx != awareness_before {
            self.stats.awareness_rx_frames_rec += 1;
            self.stats.awareness_rx_bytes_rec += bytes.len() as u64;
        }
        Ok(event)
    }

    async fn handle(&mut self, msg: Incoming) -> Result<Event> {
        let msg = match msg {
            Incoming::Y(m) => m,
            // As Sync, except that its SyncStep1 is not answered.
            Incoming::SyncReply(SyncMessage::SyncStep1(_)) => return Ok(Event::Other),
            Incoming::SyncReply(m) => Message::Sync(m),
            Incoming::Authenticated(scope) => {
                let accepted = scope == "read-write" || (self.read_only && scope == "readonly");
                if !accepted {
                    bail!("authenticated with scope {scope:?}, need read-write");
                }
                self.authenticated = true;
                return Ok(Event::Other);
            }
            Incoming::PermissionDenied(reason) => bail!("permission denied: {reason}"),
            Incoming::TokenRequest => {
                let frame = wire::hp_auth_token(&self.doc_name, self.token());
                self.send_frame(frame).await?;
                return Ok(Event::Other);
            }
            Incoming::SyncStatus(true) => {
                self.stats.acks += 1;
                if self.track_acks {
                    let now = Instant::now();
                    if let Some(at) = self.ack_waiting.pop_front() {
                        self.stats.ack_latencies_us.push(micros(now - at));
                    }
                    self.tracked_acks += 1;
                    self.last_ack_at = Some(now);
                }
                return Ok(Event::Acked);
            }
            Incoming::SyncStatus(false) => bail!("the server refused an update (SyncStatus 0)"),
            Incoming::Ping => {
                self.send_frame(wire::hp_pong()).await?;
                return Ok(Event::Other);
            }
            // the server ended this document's session (the socket may stay open)
            Incoming::Close(reason) => bail!("the server closed the document: {reason}"),
            Incoming::Pong | Incoming::Stateless | Incoming::Ignored => return Ok(Event::Other),
        };
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = self.doc.transact().encode_diff_v1(&sv);
                self.send_msg(&Message::Sync(SyncMessage::SyncStep2(diff)))
                    .await?;
                Ok(Event::Other)
            }
            Message::Sync(SyncMessage::SyncStep2(u)) if self.keep_sync_payload => {
                if self.synced {
                    return Ok(Event::Other);
                }
                self.sync_payload = Some(u);
                self.synced = true;
                self.synced_frame_at = self.frame_at;
                Ok(Event::Synced)
            }
            Message::Sync(SyncMessage::SyncStep2(u)) => {
                let update = Update::decode_v1(&u).context("decoding SyncStep2")?;
                self.doc
                    .transact_mut()
                    .apply_update(update)
                    .context("applying SyncStep2")?;
                self.synced = true;
                self.synced_frame_at = self.frame_at;
                Ok(Event::Synced)
            }
            Message::Sync(SyncMessage::Update(_)) if self.discard_updates => {
                self.stats.echoes += 1;
                Ok(Event::Other)
            }
            Message::Sync(SyncMessage::Update(u)) => {
                let update = Update::decode_v1(&u).context("decoding update")?;
                let ev = self.account(&update);
                if self.keep_sync_payload && self.synced {
                    self.sync_tail.push(u.to_vec());
                }
                if self.skip_apply || self.keep_sync_payload {
                    return Ok(ev);
                }
                self.doc
                    .transact_mut()
                    .apply_update(update)
                    .context("applying update")?;
                Ok(ev)
            }
            Message::Awareness(_) => {
                self.stats.awareness_rx += 1;
                Ok(Event::Other)
            }
            Message::AwarenessQuery => {
                self.send_awareness(0).await?;
                Ok(Event::Other)
            }
            Message::Auth(_) | Message::Custom(..) => Ok(Event::Other),
        }
    }

    /// Matches a received update to logged sends; records deliveries and latencies.
    fn account(&mut self, update: &Update) -> Event {
        let now = Instant::now();
        let mut matched: u32 = 0;
        let mut echo = false;
        {
            let Ok(log) = self.log.sent.lock() else {
                return Event::Other;
            };
            let ins = update.insertions(true);
            for (client, ranges) in ins.iter() {
                let c = client.get();
                if c == self.client_id {
                    echo = true;
                    continue;
                }
                for r in ranges.iter() {
                    for (key, at) in log.range((KIND_INS, c, r.start)..(KIND_INS, c, r.end)) {
                        if self.seen.insert(*key) {
                            matched += 1;
                            self.stats.latencies_us.push(micros(now - *at));
                        }
                    }
                }
            }
            for (client, ranges) in update.delete_set().iter() {
                let c = client.get();
                for r in ranges.iter() {
                    for (key, at) in log.range((KIND_DEL, c, r.start)..(KIND_DEL, c, r.end)) {
                        if self.own_del_keys.contains(key) {
                            echo = true;
                        } else if self.seen.insert(*key) {
                            matched += 1;
                            self.stats.latencies_us.push(micros(now - *at));
                        }
                    }
                }
            }
        }
        if matched == 0 {
            if echo {
                self.stats.echoes += 1;
            } else if self.recording {
                self.stats.unmatched += 1;
            }
            return Event::Other;
        }
        // Counted whether or not this client has seen the window start yet: the log holds only
        // updates sent in the window, and a receiver whose task had not yet noticed the start
        // when such an update arrived (its select took the frame before the phase change) lost
        // the delivery from the count — scenario 10's "deliveries outstanding", on every server.
        self.stats.delivered += u64::from(matched);
        self.counters
            .delivered
            .fetch_add(u64::from(matched), Ordering::Relaxed);
        let ns = u64::try_from((now - epoch()).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.counters
            .last_delivery_ns
            .fetch_max(ns, Ordering::Relaxed);
        self.counters.progress.notify_one();
        Event::Update { matched }
    }

    /// Handles frames until the server's SyncStep2 has been applied.
    pub async fn wait_synced(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.synced {
            match tokio::time::timeout_at(deadline, self.next_event()).await {
                Err(_) => bail!("not synced after {timeout:?}"),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Event::Closed)) => bail!("closed before sync"),
                Ok(Ok(_)) => {}
            }
        }
        if self.dialect == Dialect::Hocuspocus && !self.authenticated {
            bail!("synced without an Authenticated message");
        }
        Ok(())
    }

    pub async fn close(mut self) -> ClientStats {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
        self.stats
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Key of an update as sent: its first inserted ID, or else its smallest deleted ID.
fn sent_key(u: &Update) -> Option<Key> {
    let first = |set: &yrs::IdSet, kind: u8| -> Option<Key> {
        set.iter()
            .filter_map(|(client, ranges)| {
                ranges
                    .iter()
                    .map(|r| r.start)
                    .min()
                    .map(|clock| (kind, client.get(), clock))
            })
            .min()
    };
    first(&u.insertions(true), KIND_INS).or_else(|| first(u.delete_set(), KIND_DEL))
}
