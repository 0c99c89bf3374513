//! Unit tests of the document core ([`crate::documents::core`]), driven by hand: no socket, no
//! timer, no disk. The log is a list in memory, connections are bounded queues with two test
//! framings (one that says every notice as a message, like Hocuspocus, and one that can only close,
//! like y-websocket), and every append, flush, build and compaction is answered by the test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use debrief_proto::close;
use debrief_proto::ywire::{decode_frame, Message, SyncMessage, EMPTY_STATE_VECTOR};
use tokio::sync::oneshot;
use yrs::updates::decoder::Decode;
use yrs::{GetString, Text, Transact, Update};

use crate::documents::access::{Access, Authorizer, Denied};
use crate::documents::command::{
    DocCommand, Incoming, Job, JobError, JobRequest, JoinError, JoinRequest,
};
use crate::documents::core::{sync_frame, Core, Effect, ReviewSizes, Shared, StoredMeta};
use crate::documents::crdt;
use crate::documents::peer::{
    ConnId, Credential, Delivery, Framing, Grant, Kick, Notice, Peer, Seat,
};
use crate::documents::queue;
use crate::documents::reloads::ReloadLimiter;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::storage::store::{Compacted, StoreError};
use futures_util::FutureExt;

/// The log, in memory.
#[derive(Debug, Default)]
struct MemLog {
    records: Mutex<Vec<(u64, Vec<Vec<u8>>)>>,
    fail: AtomicBool,
    over_quota: AtomicBool,
}

impl MemLog {
    fn records(&self) -> Vec<(u64, Vec<Vec<u8>>)> {
        self.records.lock().expect("log lock").clone()
    }
}

impl MemLog {
    fn append(&self, seq: u64, updates: Vec<Vec<u8>>) -> Result<u64, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Wal("test: the disk is gone".to_owned()));
        }
        let bytes = updates.iter().map(|u| u.len() as u64).sum();
        self.records.lock().expect("log lock").push((seq, updates));
        Ok(bytes)
    }
}

impl ReviewSizes for MemLog {
    fn review_exceeds(&self, _doc: &str, _own: u64, _limit: u64) -> bool {
        self.over_quota.load(Ordering::SeqCst)
    }
}

/// Read-write for every token unless told otherwise.
#[derive(Debug, Default)]
struct Tokens(Mutex<HashMap<String, Result<Access, Denied>>>);

impl Tokens {
    fn set(&self, token: &str, decision: Result<Access, Denied>) {
        self.0
            .lock()
            .expect("tokens lock")
            .insert(token.to_owned(), decision);
    }
}

impl Authorizer for Tokens {
    fn authorize(&self, token: &str, _document: &str) -> Result<Access, Denied> {
        self.0
            .lock()
            .expect("tokens lock")
            .get(token)
            .cloned()
            .unwrap_or(Ok(Access::ReadWrite))
    }
}

/// Says every notice as a message of its own (as Hocuspocus does).
#[derive(Debug)]
struct Telling;

impl Framing for Telling {
    fn prefix(&self) -> &[u8] {
        &[]
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        let text = match notice {
            Notice::Opened(a) => format!("opened:{a:?}"),
            Notice::Access(a) => format!("access:{a:?}"),
            Notice::Withdrawn(d) => format!("withdrawn:{}", d.code),
            Notice::Applied => "applied".to_owned(),
            Notice::Refused => "refused".to_owned(),
        };
        Delivery::Message(Bytes::from(text))
    }
}

/// Has no words for notices: closes or says nothing (as y-websocket).
#[derive(Debug)]
struct Closing;

impl Framing for Closing {
    fn prefix(&self) -> &[u8] {
        &[]
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        match notice {
            Notice::Opened(_) | Notice::Access(Access::ReadWrite) | Notice::Applied => {
                Delivery::Nothing
            }
            Notice::Access(Access::ReadOnly) | Notice::Refused => {
                Delivery::Close(close::READ_ONLY, "read_only".to_owned())
            }
            Notice::Withdrawn(d) => Delivery::Close(close::PERMISSION_DENIED, d.reason()),
        }
    }
}

struct Harness {
    core: Core,
    log: Arc<MemLog>,
    tokens: Arc<Tokens>,
    metrics: Arc<Metrics>,
    outbox: usize,
}

struct Client {
    conn: ConnId,
    rx: queue::Receiver<Bytes>,
    kick: Kick,
    grant: Grant,
}

impl Client {
    /// Every frame queued for this client so far.
    fn frames(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Ok(frame) = self.rx.try_recv() {
            out.push(frame);
        }
        out
    }

    fn closed_with(&self) -> Option<u16> {
        self.kick.peek().map(|(code, _)| code)
    }
}

/// A core whose document is still being built.
fn loading(limits: Limits, meta: StoredMeta) -> Harness {
    let log = Arc::new(MemLog::default());
    let tokens = Arc::new(Tokens::default());
    let metrics = Arc::new(Metrics::default());
    let outbox = limits.outbox_capacity;
    let shared = Arc::new(Shared {
        reloads: Arc::new(ReloadLimiter::new(&limits)),
        limits,
        metrics: metrics.clone(),
        authorizer: tokens.clone(),
        sizes: log.clone(),
    });
    Harness {
        core: Core::new(Arc::from("doc"), shared, meta),
        log,
        tokens,
        metrics,
        outbox,
    }
}

/// A core with a built, empty document.
fn ready_with(limits: Limits) -> Harness {
    let mut h = loading(limits, StoredMeta::default());
    h.core.built(Some(crdt::new_doc()));
    h
}

fn ready() -> Harness {
    ready_with(Limits {
        outbox_capacity: 64,
        ..Limits::default()
    })
}

impl Harness {
    fn try_join(
        &mut self,
        id: u64,
        token: &str,
        access: Access,
        framing: Arc<dyn Framing>,
    ) -> (Result<(), JoinError>, Client) {
        let (outbox, rx) = queue::channel(self.outbox);
        let kick = Kick::default();
        let grant = Grant::new(access);
        let peer = Peer {
            conn: ConnId(id),
            outbox,
            kick: kick.clone(),
            framing,
            grant: grant.clone(),
            credential: Credential::new(token),
        };
        let (reply, mut answer) = oneshot::channel();
        self.core
            .handle(DocCommand::Join(Box::new(JoinRequest { peer, reply })));
        let result = answer.try_recv().expect("a join is answered at once");
        let client = Client {
            conn: ConnId(id),
            rx,
            kick,
            grant,
        };
        (result, client)
    }

    /// Joins with a token the authorizer agrees with, and drops the greeting frames.
    fn join(&mut self, id: u64, access: Access, framing: Arc<dyn Framing>) -> Client {
        let token = format!("token-{id}");
        self.tokens.set(&token, Ok(access));
        let (result, mut client) = self.try_join(id, &token, access, framing);
        assert_eq!(result, Ok(()));
        client.frames();
        client
    }

    fn send(&mut self, client: &Client, msg: Incoming) {
        self.core.handle(DocCommand::Message {
            conn: client.conn,
            msg,
        });
    }

    fn update(&mut self, client: &Client, update: &[u8]) {
        self.send(client, Incoming::Update(Bytes::copy_from_slice(update)));
    }

    /// The next effect, with appends answered from the log in memory (they are checked through
    /// the log's records).
    fn poll(&mut self) -> Option<Effect> {
        loop {
            match self.core.poll_effect() {
                Some(Effect::Append { seq, updates }) => {
                    let appended = self.log.append(seq, updates);
                    self.core.appended(appended);
                }
                other => return other,
            }
        }
    }

    /// Expects a flush to be asked for, requests it, and returns to the test before it completes.
    fn request_flush(&mut self) {
        match self.poll() {
            Some(Effect::Flush { .. }) => self.core.flush_requested(),
            other => panic!("expected a flush, got {other:?}"),
        }
    }

    /// The durable step: the asked-for flush, requested and completed.
    fn flush(&mut self) {
        self.request_flush();
        assert!(self.core.flush_completed(true));
    }

    fn run_job(
        &mut self,
        writes: bool,
        job: impl FnOnce(&yrs::Doc) -> Option<Vec<u8>> + Send + 'static,
    ) -> oneshot::Receiver<Result<(), JobError>> {
        let (done, rx) = oneshot::channel();
        self.core.handle(DocCommand::Job(Box::new(JobRequest {
            job: Job::new(job),
            writes,
            done,
        })));
        rx
    }
}

fn typed(text: &str) -> Vec<u8> {
    let doc = crdt::new_doc();
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

/// The text of the document a sequence of relayed frames builds.
fn text_of(frames: &[Bytes]) -> String {
    let doc = crdt::new_doc();
    let t = doc.get_or_insert_text("t");
    for frame in frames {
        for msg in decode_frame(frame).expect("y-protocols frames") {
            if let Message::Sync(SyncMessage::Update(u) | SyncMessage::Step2(u)) = msg {
                let update = Update::decode_v1(u).expect("a valid update");
                doc.transact_mut().apply_update(update).expect("applies");
            }
        }
    }
    let txn = doc.transact();
    t.get_string(&txn)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/yrs-panic")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn nothing_is_relayed_or_acknowledged_before_the_flush_completes() {
    let mut h = ready();
    let mut writer = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let mut reader = h.join(2, Access::ReadWrite, Arc::new(Closing));

    h.update(&writer, &typed("hello"));
    assert!(writer.frames().is_empty(), "no acknowledgement yet");
    assert!(reader.frames().is_empty(), "no relay yet");

    // The update is appended, then flushed; the flush is the first one, so it may be done at once.
    assert!(matches!(
        h.core.poll_effect(),
        Some(Effect::Append { seq: 0, ref updates }) if updates.len() == 1
    ));
    h.core.appended(Ok(10));
    assert!(writer.frames().is_empty(), "appended is not durable");
    assert!(reader.frames().is_empty(), "appended is not durable");
    assert!(matches!(
        h.core.poll_effect(),
        Some(Effect::Flush { at_once: true })
    ));
    h.core.flush_requested();
    assert_eq!(h.core.flushes_in_flight(), 1);
    assert!(h.poll().is_none());
    assert!(writer.frames().is_empty(), "requested is not durable");
    assert!(reader.frames().is_empty(), "requested is not durable");

    assert!(h.core.flush_completed(true));
    let relayed = reader.frames();
    assert_eq!(text_of(&relayed), "hello");
    assert_eq!(
        writer.frames(),
        vec![Bytes::from("applied")],
        "acked, not echoed"
    );
    assert_eq!(count(&h.metrics.flushes), 1);
}

#[test]
fn a_flush_done_at_once_releases_its_frames() {
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let mut reader = h.join(2, Access::ReadWrite, Arc::new(Telling));
    h.update(&writer, &typed("x"));
    assert!(matches!(h.poll(), Some(Effect::Flush { at_once: true })));
    assert!(reader.frames().is_empty());
    h.core.flushed_at_once(true);
    assert_eq!(text_of(&reader.frames()), "x");
}

#[test]
fn flushes_release_their_frames_in_order() {
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let mut reader = h.join(2, Access::ReadWrite, Arc::new(Closing));
    h.update(&writer, &typed("a"));
    h.request_flush();
    h.update(&writer, &typed("b"));
    // Another flush is in flight: this one must wait for the flusher.
    assert!(matches!(h.poll(), Some(Effect::Flush { at_once: false })));
    h.core.flush_requested();
    assert_eq!(h.core.flushes_in_flight(), 2);
    assert!(h.core.flush_completed(true));
    let first = reader.frames();
    assert_eq!(first.len(), 1, "only what the first flush covered");
    assert!(h.core.flush_completed(true));
    assert_eq!(reader.frames().len(), 1);
    assert_eq!(h.log.records().len(), 2);
}

#[test]
fn presence_waits_behind_the_content_it_may_point_at() {
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let mut reader = h.join(2, Access::ReadWrite, Arc::new(Closing));
    h.update(&writer, &typed("hi"));
    let mut awareness = Vec::new();
    for v in [1u64, 7, 1] {
        debrief_proto::lib0::write_var_uint(&mut awareness, v);
    }
    debrief_proto::lib0::write_var_string(&mut awareness, "{\"cursor\":1}");
    h.send(&writer, Incoming::Awareness(Bytes::from(awareness)));
    assert!(reader.frames().is_empty(), "the caret waits for the text");
    h.flush();
    let frames = reader.frames();
    assert_eq!(frames.len(), 2);
    assert!(matches!(
        decode_frame(&frames[0]).expect("frame")[..],
        [Message::Sync(SyncMessage::Update(_))]
    ));
    assert!(matches!(
        decode_frame(&frames[1]).expect("frame")[..],
        [Message::Awareness(_)]
    ));
}

/// An awareness update of one client.
fn awareness(client: u64, clock: u64, state: &str) -> Incoming {
    Incoming::Awareness(Bytes::from(debrief_proto::awareness::encode_update([
        debrief_proto::awareness::AwarenessEntry {
            client,
            clock,
            state,
        },
    ])))
}

/// The (client, clock, state) entries of the awareness frames among `frames`.
fn presence_in(frames: &[Bytes]) -> Vec<Vec<(u64, u64, String)>> {
    frames
        .iter()
        .flat_map(|f| decode_frame(f).expect("frame"))
        .filter_map(|m| match m {
            Message::Awareness(a) => Some(
                debrief_proto::awareness::decode_update(a)
                    .expect("valid awareness")
                    .into_iter()
                    .map(|e| (e.client, e.clock, e.state.to_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn presence_is_relayed_at_most_once_per_tick_with_each_clients_latest_state() {
    let mut h = ready();
    let a = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let b = h.join(2, Access::ReadOnly, Arc::new(Closing));
    let mut watcher = h.join(3, Access::ReadOnly, Arc::new(Closing));
    assert!(!h.core.presence_ticking());

    h.send(&a, awareness(10, 1, "{\"cursor\":1}"));
    assert_eq!(
        presence_in(&watcher.frames()),
        vec![vec![(10, 1, "{\"cursor\":1}".to_owned())]],
        "the first change after a quiet tick goes out at once"
    );
    assert!(h.core.presence_ticking());

    for clock in 2..=6 {
        h.send(&a, awareness(10, clock, &format!("{{\"cursor\":{clock}}}")));
    }
    h.send(&b, awareness(20, 1, "{}"));
    assert!(
        watcher.frames().is_empty(),
        "changes within a tick wait for its end"
    );
    h.core.presence_tick();
    assert_eq!(
        presence_in(&watcher.frames()),
        vec![vec![
            (10, 6, "{\"cursor\":6}".to_owned()),
            (20, 1, "{}".to_owned())
        ]],
        "one relay, each client's latest state"
    );
    assert!(h.core.presence_ticking());

    h.core.presence_tick();
    assert!(watcher.frames().is_empty());
    assert!(!h.core.presence_ticking(), "a quiet tick ends the ticking");
    h.core.handle(DocCommand::Leave { conn: b.conn });
    assert_eq!(
        presence_in(&watcher.frames()),
        vec![vec![(20, 2, "null".to_owned())]],
        "a departure after a quiet tick goes out at once"
    );
}

#[test]
fn joiners_with_nothing_share_one_encoding_of_the_document() {
    /// Frames every message behind a prefix, as Hocuspocus does with the document's name.
    #[derive(Debug)]
    struct Prefixed;
    impl Framing for Prefixed {
        fn prefix(&self) -> &[u8] {
            b"P"
        }
        fn notice(&self, _: &Notice) -> Delivery {
            Delivery::Nothing
        }
    }
    fn step2_of(h: &mut Harness, id: u64, framing: Arc<dyn Framing>) -> (Client, Vec<Bytes>) {
        let mut c = h.join(id, Access::ReadOnly, framing);
        h.send(&c, Incoming::Step1(Bytes::from_static(EMPTY_STATE_VECTOR)));
        let frames = c.frames();
        (c, frames)
    }
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let first = typed("shared");
    h.update(&writer, &first);
    h.flush();

    let (_a, a) = step2_of(&mut h, 2, Arc::new(Closing));
    let (_b, b) = step2_of(&mut h, 3, Arc::new(Closing));
    assert_eq!(text_of(&a), "shared");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].as_ptr(), b[0].as_ptr(), "one encoding, shared");
    let (_c, c) = step2_of(&mut h, 4, Arc::new(Prefixed));
    let (_d, d) = step2_of(&mut h, 5, Arc::new(Prefixed));
    assert_eq!(c[0][0], b'P');
    assert_eq!(&c[0][1..], &a[0][..]);
    assert_eq!(c[0].as_ptr(), d[0].as_ptr(), "framed once per prefix");
    // A few prefixes are kept; a client's own routing keys past them cost a copy each, which
    // the shared state does not keep.
    #[derive(Debug)]
    struct Keyed(Vec<u8>);
    impl Framing for Keyed {
        fn prefix(&self) -> &[u8] {
            &self.0
        }
        fn notice(&self, _: &Notice) -> Delivery {
            Delivery::Nothing
        }
    }
    let (_k1, k1) = step2_of(&mut h, 20, Arc::new(Keyed(b"K1".to_vec())));
    let (_k2, k2) = step2_of(&mut h, 21, Arc::new(Keyed(b"K1".to_vec())));
    assert_eq!(k1[0].as_ptr(), k2[0].as_ptr(), "a second prefix is kept");
    let (_k3, k3) = step2_of(&mut h, 22, Arc::new(Keyed(b"K3".to_vec())));
    let (_k4, k4) = step2_of(&mut h, 23, Arc::new(Keyed(b"K3".to_vec())));
    assert_ne!(k3[0].as_ptr(), k4[0].as_ptr(), "past the prefixes kept");
    assert_eq!(&k3[0][2..], &a[0][..]);

    // After a change the shared state is kept, and carries the change behind it.
    let more = {
        let doc = crdt::load(None, [first.as_slice()]).expect("loads");
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 6, "!");
        txn.encode_update_v1()
    };
    h.update(&writer, &more);
    h.flush();
    let (_e, e) = step2_of(&mut h, 6, Arc::new(Closing));
    assert_eq!(e[0].as_ptr(), a[0].as_ptr());
    assert_eq!(e.len(), 2, "the state, then the change");
    assert_eq!(text_of(&e), "shared!");

    // Past its bound on changes carried, the next joiner gets a new encoding of its own.
    let base = crdt::load(None, [first.as_slice(), more.as_slice()]).expect("loads");
    for i in 0..80u32 {
        let update = {
            let t = base.get_or_insert_text("t");
            let mut txn = base.transact_mut();
            t.insert(&mut txn, 0, &i.to_string());
            txn.encode_update_v1()
        };
        h.update(&writer, &update);
        h.flush();
    }
    let (_f, f) = step2_of(&mut h, 7, Arc::new(Closing));
    assert_eq!(f.len(), 1);
    assert_ne!(f[0].as_ptr(), a[0].as_ptr());
    let expected = base.get_or_insert_text("t").get_string(&base.transact());
    assert_eq!(text_of(&f), expected);
}

#[test]
fn a_failed_flush_closes_every_connection_and_releases_nothing() {
    let mut h = ready();
    let mut writer = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let mut reader = h.join(2, Access::ReadWrite, Arc::new(Telling));
    h.update(&writer, &typed("lost"));
    h.request_flush();
    assert!(!h.core.flush_completed(false));
    assert!(writer.frames().is_empty() && reader.frames().is_empty());
    assert_eq!(writer.closed_with(), Some(close::INTERNAL_ERROR));
    assert_eq!(reader.closed_with(), Some(close::INTERNAL_ERROR));
    assert_eq!(h.core.peers(), 0);
    assert!(h.core.finished(), "a failed document stops");
}

#[test]
fn a_failed_append_closes_the_document_before_anything_is_flushed() {
    let mut h = ready();
    let mut writer = h.join(1, Access::ReadWrite, Arc::new(Telling));
    h.log.fail.store(true, Ordering::SeqCst);
    h.update(&writer, &typed("lost"));
    assert!(h.poll().is_none(), "nothing to flush");
    assert!(writer.frames().is_empty());
    assert_eq!(writer.closed_with(), Some(close::INTERNAL_ERROR));
    assert!(h.core.finished());
}

#[test]
fn a_read_only_connection_is_refused_in_its_dialect_and_nothing_is_stored() {
    let mut h = ready();
    let mut told = h.join(1, Access::ReadOnly, Arc::new(Telling));
    let closed = h.join(2, Access::ReadOnly, Arc::new(Closing));

    h.update(&told, &typed("no"));
    assert_eq!(told.frames(), vec![Bytes::from("refused")], "told at once");
    assert!(told.closed_with().is_none(), "and stays open");

    h.update(&closed, &typed("no"));
    assert_eq!(closed.closed_with(), Some(close::READ_ONLY));
    assert_eq!(h.core.peers(), 1, "the closed one is detached");

    assert!(h.poll().is_none(), "nothing applied, nothing stored");
    assert!(h.log.records().is_empty());
    assert_eq!(count(&h.metrics.updates_refused_read_only), 2);
}

#[test]
fn a_read_only_update_with_nothing_new_is_acknowledged() {
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let mut reader = h.join(2, Access::ReadOnly, Arc::new(Telling));
    let hello = typed("hello");
    h.update(&writer, &hello);
    h.flush();
    reader.frames();
    // A reader's SyncStep2 answer repeats what the document has.
    h.update(&reader, &hello);
    assert_eq!(reader.frames(), vec![Bytes::from("applied")]);
    assert!(h.poll().is_none());
}

#[test]
fn access_changed_on_an_open_connection_is_told_or_closes_it() {
    let mut h = ready();
    let mut told = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let closed = h.join(2, Access::ReadWrite, Arc::new(Closing));
    h.tokens.set("token-1", Ok(Access::ReadOnly));
    h.tokens.set("token-2", Ok(Access::ReadOnly));
    h.core.handle(DocCommand::Reauthorize);

    assert_eq!(told.frames(), vec![Bytes::from("access:ReadOnly")]);
    assert_eq!(told.grant.get(), Some(Access::ReadOnly));
    assert_eq!(closed.closed_with(), Some(close::READ_ONLY));
    assert_eq!(h.core.peers(), 1);

    // Unchanged access says nothing.
    h.core.handle(DocCommand::Reauthorize);
    assert!(told.frames().is_empty());
    // And the new access holds: its update is refused.
    h.update(&told, &typed("late"));
    assert_eq!(told.frames(), vec![Bytes::from("refused")]);
}

#[test]
fn access_withdrawn_on_an_open_connection_detaches_it() {
    let mut h = ready();
    let mut told = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let closed = h.join(2, Access::ReadWrite, Arc::new(Closing));
    let mut stays = h.join(3, Access::ReadWrite, Arc::new(Telling));
    let denied = Denied {
        code: "session_revoked".into(),
        message: "gone".to_owned(),
    };
    h.tokens.set("token-1", Err(denied.clone()));
    h.tokens.set("token-2", Err(denied));
    h.core.handle(DocCommand::Reauthorize);

    assert_eq!(
        told.frames(),
        vec![Bytes::from("withdrawn:session_revoked")]
    );
    assert!(told.grant.revoked());
    assert!(
        told.closed_with().is_none(),
        "the socket may carry other documents"
    );
    assert_eq!(closed.closed_with(), Some(close::PERMISSION_DENIED));
    assert_eq!(h.core.peers(), 1);
    assert_eq!(count(&h.metrics.permission_denied), 2);

    // Nothing of a detached connection is applied any more.
    h.update(&told, &typed("ghost"));
    assert!(h.poll().is_none());
    let writer = &stays;
    h.update(writer, &typed("ok"));
    h.flush();
    assert_eq!(stays.frames(), vec![Bytes::from("applied")]);
    assert!(
        told.frames().is_empty(),
        "nothing reaches a withdrawn connection"
    );
}

#[test]
fn a_join_is_greeted_with_its_access_then_sync_then_presence() {
    let mut h = ready();
    h.tokens.set("t", Ok(Access::ReadOnly));
    let (result, mut client) = h.try_join(1, "t", Access::ReadOnly, Arc::new(Telling));
    assert_eq!(result, Ok(()));
    let frames = client.frames();
    assert_eq!(frames[0], Bytes::from("opened:ReadOnly"));
    assert!(matches!(
        decode_frame(&frames[1]).expect("frame")[..],
        [Message::Sync(SyncMessage::Step1(_))]
    ));
    assert_eq!(frames.len(), 2, "no presence yet");

    // Access decided again at the join, before anything is sent: a phase change in between is
    // not missed, and a decision made elsewhere for now (a review's document let through to the
    // node serving reviews) is replaced.
    h.tokens.set("u", Ok(Access::ReadOnly));
    let (_, mut late) = h.try_join(2, "u", Access::ReadWrite, Arc::new(Telling));
    let frames = late.frames();
    assert_eq!(frames[0], Bytes::from("opened:ReadOnly"));
    assert_eq!(frames.len(), 2, "opened once, then the sync: {frames:?}");
}

/// A join let through for now elsewhere (in a cluster, a review's document the node serving
/// reviews decides) whose token this document refuses is told so and sent nothing else: no
/// state, and none of the participants' presence.
#[test]
fn a_join_refused_at_the_document_is_sent_nothing_but_the_refusal() {
    let mut h = ready();
    let a = h.join(1, Access::ReadWrite, Arc::new(Closing));
    h.send(&a, awareness(10, 1, "{\"name\":\"Zelda\"}"));
    h.tokens.set(
        "stranger",
        Err(Denied {
            code: "invalid_token".into(),
            message: "unknown".to_owned(),
        }),
    );
    let (result, mut stranger) = h.try_join(2, "stranger", Access::ReadOnly, Arc::new(Telling));
    assert_eq!(result, Ok(()));
    assert_eq!(
        stranger.frames(),
        vec![Bytes::from("withdrawn:invalid_token")]
    );
    assert!(stranger.grant.revoked());
}

#[test]
fn joins_past_the_caps_are_refused() {
    let mut h = ready_with(Limits {
        max_connections_per_document: 2,
        connections_reserved_for_writers: 1,
        ..Limits::default()
    });
    h.join(1, Access::ReadOnly, Arc::new(Closing));
    let (result, _) = h.try_join(2, "r2", Access::ReadOnly, Arc::new(Closing));
    assert_eq!(result, Err(JoinError::FullForReaders));
    h.join(3, Access::ReadWrite, Arc::new(Closing));
    let (result, _) = h.try_join(4, "w", Access::ReadWrite, Arc::new(Closing));
    assert_eq!(result, Err(JoinError::Full));
    h.core.shut_down();
    h.core.handle(DocCommand::Leave { conn: ConnId(1) });
    let (result, _) = h.try_join(5, "w", Access::ReadWrite, Arc::new(Closing));
    assert_eq!(result, Err(JoinError::ShuttingDown));
}

#[test]
fn compaction_starts_past_the_threshold_and_once_at_a_time() {
    let mut h = ready_with(Limits {
        compact_after_entries: 2,
        ..Limits::default()
    });
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    h.update(&writer, &typed("a"));
    h.flush();
    assert!(h.poll().is_none(), "one record: below the threshold");
    h.update(&writer, &typed("b"));
    h.flush();
    assert!(matches!(h.poll(), Some(Effect::Compact { upto: 2 })));
    h.update(&writer, &typed("c"));
    h.flush();
    assert!(h.poll().is_none(), "one compaction at a time");
    h.core.compacted(Some(Compacted {
        entries: 2,
        entry_bytes: 10,
        snapshot_bytes: 5,
    }));
    assert_eq!(count(&h.metrics.compactions), 1);
    assert!(h.poll().is_none(), "one record left: below again");
}

#[test]
fn an_idle_document_compacts_then_unloads() {
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    h.update(&writer, &typed("a"));
    assert!(!h.core.idle(), "a connection is attached");
    h.core.handle(DocCommand::Leave { conn: writer.conn });
    assert!(!h.core.idle(), "content waits for a flush");
    h.flush();
    assert!(h.core.idle());
    h.core.idle_elapsed();
    assert!(matches!(h.poll(), Some(Effect::Compact { upto: 1 })));
    assert!(!h.core.idle(), "compacting");
    h.core.compacted(None);
    // A failed compaction keeps the log: the next idle period tries again.
    h.core.idle_elapsed();
    assert!(matches!(h.poll(), Some(Effect::Compact { .. })));
    h.core.compacted(Some(Compacted {
        entries: 1,
        entry_bytes: 3,
        snapshot_bytes: 3,
    }));
    h.core.idle_elapsed();
    assert!(matches!(h.poll(), Some(Effect::Unload)));
    assert!(h.poll().is_none());
}

#[test]
fn shutdown_leaves_a_compact_document_behind() {
    let mut h = ready();
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    h.update(&writer, &typed("a"));
    h.core.shut_down();
    assert!(!h.core.finished(), "an update waits for its flush");
    h.flush();
    assert!(matches!(h.poll(), Some(Effect::Compact { upto: 1 })));
    assert!(!h.core.finished());
    h.core.compacted(Some(Compacted {
        entries: 1,
        entry_bytes: 3,
        snapshot_bytes: 3,
    }));
    assert!(h.poll().is_none(), "only one compaction on the way out");
    assert!(h.core.finished());
}

#[test]
fn a_panicking_update_is_contained_and_the_document_keeps_serving() {
    let mut h = ready();
    let mut bad = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let mut good = h.join(2, Access::ReadWrite, Arc::new(Telling));
    let mut reader = h.join(3, Access::ReadWrite, Arc::new(Closing));
    h.update(&bad, &fixture("base.bin"));
    h.flush();
    bad.frames();
    good.frames();
    reader.frames();

    // yrs panics part-way through this one: the sender is closed, and the document is
    // discarded and built again from the log.
    h.update(&bad, &fixture("bad-pending.bin"));
    assert_eq!(bad.closed_with(), Some(close::UPDATE_REJECTED));
    assert_eq!(count(&h.metrics.documents_reloaded), 1);
    assert!(bad.frames().is_empty(), "nothing acknowledged");
    let Some(Effect::Rebuild { damaged }) = h.poll() else {
        panic!("expected a rebuild");
    };
    drop(damaged);

    // While it is built, commands that need the document wait, and no more are taken.
    assert!(h.core.accepts_commands());
    h.update(&good, &typed("after"));
    assert!(
        !h.core.accepts_commands(),
        "the update waits for the document"
    );
    // A join is served meanwhile, its SyncStep1 comes once the document is built.
    let (result, mut joiner) = h.try_join(4, "j", Access::ReadWrite, Arc::new(Closing));
    assert_eq!(result, Ok(()));
    assert!(joiner.frames().is_empty());

    // Only what applied cleanly was stored: the rebuilt document loads from it.
    let records = h.log.records();
    assert_eq!(records.len(), 1);
    let updates: Vec<&[u8]> = records
        .iter()
        .flat_map(|(_, u)| u.iter().map(Vec::as_slice))
        .collect();
    let rebuilt = crdt::load(None, updates).expect("the log loads");
    h.core.built(Some(rebuilt));
    assert!(h.core.accepts_commands());
    assert_eq!(joiner.frames().len(), 1, "the SyncStep1 it waited for");

    // The update that waited is applied and relayed after its flush, like any other.
    h.flush();
    assert_eq!(good.frames(), vec![Bytes::from("applied")]);
    assert_eq!(text_of(&reader.frames()), "after");
    assert_eq!(h.core.peers(), 3);
}

#[test]
fn what_applied_before_a_failure_is_appended_before_the_rebuild_reads_the_log() {
    let mut h = ready();
    let bad = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let good = h.join(2, Access::ReadWrite, Arc::new(Closing));
    h.update(&bad, &fixture("base.bin"));
    h.flush();
    // One batch: a clean update, then one that breaks the document.
    h.update(&good, &typed("kept"));
    h.update(&bad, &fixture("bad-pending.bin"));
    assert!(matches!(
        h.core.poll_effect(),
        Some(Effect::Append { seq: 1, ref updates }) if updates.len() == 1
    ));
    h.core.appended(Ok(4));
    assert!(matches!(h.core.poll_effect(), Some(Effect::Rebuild { .. })));
    // The clean update is still flushed and relayed as usual.
    assert!(matches!(h.core.poll_effect(), Some(Effect::Flush { .. })));
}

#[test]
fn a_token_whose_updates_keep_breaking_documents_is_stopped() {
    let mut h = ready_with(Limits {
        max_reloads_per_token: 1,
        ..Limits::default()
    });
    let (_, first) = h.try_join(1, "same", Access::ReadWrite, Arc::new(Closing));
    h.update(&first, &fixture("base.bin"));
    h.flush();
    h.update(&first, &fixture("bad-pending.bin"));
    let Some(Effect::Rebuild { .. }) = h.poll() else {
        panic!("expected a rebuild");
    };
    h.core.built(Some(crdt::new_doc()));
    let (_, again) = h.try_join(2, "same", Access::ReadWrite, Arc::new(Closing));
    h.update(&again, &typed("x"));
    assert_eq!(again.closed_with(), Some(close::TOO_MANY_FAILED_UPDATES));
    assert!(h.poll().is_none(), "nothing applied");
}

#[test]
fn server_code_is_relayed_and_answered_after_its_flush_and_its_panic_is_contained() {
    let mut h = ready();
    let mut reader = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let mut done = h.run_job(true, |doc| {
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, "from the server");
        Some(txn.encode_update_v1())
    });
    assert!(done.try_recv().is_err(), "not durable yet");
    assert!(reader.frames().is_empty());
    h.flush();
    assert_eq!(done.try_recv(), Ok(Ok(())));
    assert_eq!(text_of(&reader.frames()), "from the server");

    let mut panicked = h.run_job(true, |_| panic!("server code broke"));
    assert!(matches!(
        panicked.try_recv(),
        Err(oneshot::error::TryRecvError::Closed)
    ));
    assert!(matches!(h.poll(), Some(Effect::Rebuild { .. })));
    assert_eq!(h.core.peers(), 1, "connections stay");
}

#[test]
fn jobs_respect_the_size_limit_and_the_quota_unless_essential() {
    let mut h = ready_with(Limits {
        max_document_bytes: 4,
        ..Limits::default()
    });
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    h.update(&writer, &typed("ab"));
    // Past the limit now (the update is larger than 4 bytes)? It was refused.
    assert_eq!(writer.closed_with(), Some(close::DOCUMENT_TOO_LARGE));
    let mut big = h.run_job(true, |_| None);
    assert_eq!(
        big.try_recv(),
        Ok(Ok(())),
        "an empty document is under the limit"
    );

    let mut h = ready();
    h.log.over_quota.store(true, Ordering::SeqCst);
    let mut refused = h.run_job(true, |_| None);
    assert_eq!(refused.try_recv(), Ok(Err(JobError::QuotaExceeded)));
    let mut essential = h.run_job(false, |_| None);
    assert_eq!(essential.try_recv(), Ok(Ok(())));
}

#[test]
fn a_slow_reader_is_closed_instead_of_holding_the_others_back() {
    let mut h = ready_with(Limits {
        outbox_capacity: 4,
        ..Limits::default()
    });
    let writer = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let slow = h.join(2, Access::ReadWrite, Arc::new(Closing));
    let mut fast = h.join(3, Access::ReadWrite, Arc::new(Closing));
    for i in 0..6 {
        h.update(&writer, &typed(&i.to_string()));
        h.flush();
        fast.frames();
    }
    assert_eq!(slow.closed_with(), Some(close::SLOW_CONSUMER));
    assert!(fast.closed_with().is_none());
    assert_eq!(h.core.peers(), 2);
}

#[test]
fn commands_wait_while_too_many_frames_wait_for_flushes() {
    let mut h = ready_with(Limits {
        outbox_capacity: 8,
        ..Limits::default()
    });
    let writer = h.join(1, Access::ReadWrite, Arc::new(Telling));
    let _reader = h.join(2, Access::ReadWrite, Arc::new(Closing));
    assert!(h.core.accepts_commands());
    // Each update holds back a relay and an acknowledgement: 2 of 8 / 4 allowed.
    h.update(&writer, &typed("a"));
    assert!(!h.core.accepts_commands());
    h.flush();
    assert!(h.core.accepts_commands());
}

#[test]
fn a_cold_joiner_is_served_from_the_stored_snapshot_before_the_document_is_built() {
    let snapshot = typed("stored");
    let fresh = sync_frame(SyncMessage::Step2(&snapshot));
    let mut h = loading(
        Limits::default(),
        StoredMeta {
            fresh_sync: Some(fresh.clone()),
            next_seq: 1,
            snapshot_bytes: snapshot.len() as u64,
            ..StoredMeta::default()
        },
    );
    let (result, mut cold) = h.try_join(1, "t", Access::ReadWrite, Arc::new(Closing));
    assert_eq!(result, Ok(()));
    assert!(
        cold.frames().is_empty(),
        "no SyncStep1 before the document is built"
    );
    h.send(
        &cold,
        Incoming::Step1(Bytes::from_static(EMPTY_STATE_VECTOR)),
    );
    assert_eq!(cold.frames(), vec![fresh], "answered without the document");
    assert!(h.core.accepts_commands());

    // A state vector that is not empty needs the document: it waits.
    let (_, mut warm) = h.try_join(2, "u", Access::ReadWrite, Arc::new(Closing));
    h.send(&warm, Incoming::Step1(Bytes::from_static(&[1, 5, 1])));
    assert!(!h.core.accepts_commands());
    let doc = crdt::load(Some(&snapshot), []).expect("loads");
    h.core.built(Some(doc));
    assert_eq!(cold.frames().len(), 1, "its SyncStep1");
    let frames = warm.frames();
    assert_eq!(frames.len(), 2, "its SyncStep1, then the answer to its own");
    assert_eq!(text_of(&frames), "stored");
}

#[test]
fn a_document_that_cannot_be_built_closes_its_connections() {
    let mut h = loading(Limits::default(), StoredMeta::default());
    let (_, client) = h.try_join(1, "t", Access::ReadWrite, Arc::new(Closing));
    h.core.built(None);
    assert_eq!(client.closed_with(), Some(close::INTERNAL_ERROR));
    assert!(h.core.finished());
}

#[test]
fn hostile_awareness_and_state_vectors_close_only_their_sender() {
    let mut h = ready_with(Limits {
        max_awareness_state_bytes: 8,
        ..Limits::default()
    });
    let broken = h.join(1, Access::ReadWrite, Arc::new(Closing));
    let large = h.join(2, Access::ReadWrite, Arc::new(Closing));
    let bad_sv = h.join(3, Access::ReadWrite, Arc::new(Closing));
    let fine = h.join(4, Access::ReadWrite, Arc::new(Closing));
    h.send(&broken, Incoming::Awareness(Bytes::from_static(&[5])));
    assert_eq!(broken.closed_with(), Some(close::PROTOCOL_ERROR));
    let mut awareness = Vec::new();
    for v in [1u64, 9, 1] {
        debrief_proto::lib0::write_var_uint(&mut awareness, v);
    }
    debrief_proto::lib0::write_var_string(&mut awareness, "{\"name\":\"a long one\"}");
    h.send(&large, Incoming::Awareness(Bytes::from(awareness)));
    assert_eq!(large.closed_with(), Some(close::AWARENESS_TOO_LARGE));
    h.send(&bad_sv, Incoming::Step1(Bytes::from_static(&[0xff])));
    assert_eq!(bad_sv.closed_with(), Some(close::PROTOCOL_ERROR));
    assert!(fine.closed_with().is_none());
    assert_eq!(h.core.peers(), 1);
}

/// A member of a lane, as a forwarded attachment is: frames tagged with its member number in an
/// outbox it shares, and a broadcast tagged `1000 + 1 + except` (or `1000`: for every member).
#[derive(Debug)]
struct LaneMember(Seat);

impl Framing for LaneMember {
    fn prefix(&self) -> &[u8] {
        &[]
    }

    fn notice(&self, _: &Notice) -> Delivery {
        Delivery::Nothing
    }

    fn seat(&self) -> Option<Seat> {
        Some(self.0)
    }

    fn to_lane(&self, except: Option<u64>) -> u64 {
        1000 + except.map_or(0, |m| m + 1)
    }
}

/// Joins connection `id` to the lane `seat` whose outbox is `lane`; its kick comes back.
fn join_lane(h: &mut Harness, id: u64, lane: &queue::Sender<Bytes>, seat: Seat) -> Kick {
    let kick = Kick::default();
    let peer = Peer {
        conn: ConnId(id),
        outbox: lane.tagged(seat.member),
        kick: kick.clone(),
        framing: Arc::new(LaneMember(seat)),
        grant: Grant::new(Access::ReadWrite),
        credential: Credential::new("lane"),
    };
    let (reply, mut answer) = oneshot::channel();
    h.core
        .handle(DocCommand::Join(Box::new(JoinRequest { peer, reply })));
    assert_eq!(answer.try_recv(), Ok(Ok(())));
    kick
}

/// What a lane's outbox holds now, with tags.
fn lane_frames(rx: &mut queue::Receiver<Bytes>) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    while let Some(item) = rx.recv_tagged().now_or_never().flatten() {
        out.push(item);
    }
    out
}

#[test]
fn a_relay_goes_to_each_lane_once_and_skips_only_its_writer() {
    let mut h = ready();
    let (lane, mut lane_rx) = queue::channel(64);
    let (other, mut other_rx) = queue::channel(64);
    for member in 1..=3 {
        join_lane(&mut h, 10 + member, &lane, Seat { lane: 7, member });
    }
    // Member numbers are the entry node's: another lane may use the same.
    join_lane(&mut h, 21, &other, Seat { lane: 8, member: 1 });
    let mut local = h.join(30, Access::ReadWrite, Arc::new(Closing));
    let greetings = lane_frames(&mut lane_rx);
    assert!(
        greetings.iter().all(|(tag, _)| (1..=3).contains(tag)),
        "greetings go to each member: {greetings:?}"
    );
    lane_frames(&mut other_rx);

    // Member 2 writes: its lane gets the relay once, for every member but 2; the other lane
    // once, for all; the local socket its own copy.
    let writer = Client {
        conn: ConnId(12),
        rx: queue::channel(1).1,
        kick: Kick::default(),
        grant: Grant::new(Access::ReadWrite),
    };
    h.update(&writer, &typed("once per lane"));
    h.flush();
    let relays = lane_frames(&mut lane_rx);
    assert_eq!(relays.len(), 1, "{relays:?}");
    assert_eq!(relays[0].0, 1000 + 3, "all but member 2");
    assert_eq!(text_of(&[relays[0].1.clone()]), "once per lane");
    let others = lane_frames(&mut other_rx);
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].0, 1000, "all of the other lane");
    assert_eq!(text_of(&local.frames()), "once per lane");

    // The local socket writes: each lane once, for every member.
    h.update(&local, &typed("from here"));
    h.flush();
    let relays = lane_frames(&mut lane_rx);
    assert_eq!(
        relays.iter().map(|(tag, _)| *tag).collect::<Vec<_>>(),
        vec![1000]
    );
    assert_eq!(lane_frames(&mut other_rx).len(), 1);
}

#[test]
fn a_lane_that_cannot_take_a_relay_closes_every_member() {
    let mut h = ready();
    let (lane, mut lane_rx) = queue::channel(8);
    let kicks: Vec<Kick> = (1..=2)
        .map(|member| join_lane(&mut h, 10 + member, &lane, Seat { lane: 7, member }))
        .collect();
    let mut local = h.join(30, Access::ReadWrite, Arc::new(Closing));
    lane_frames(&mut lane_rx);
    // The entry node stopped reading: the lane's outbox fills up.
    while lane.try_send(Bytes::from_static(b"x")).is_ok() {}
    h.update(&local, &typed("too much"));
    h.flush();
    for kick in &kicks {
        assert_eq!(
            kick.peek().map(|(code, _)| code),
            Some(close::SLOW_CONSUMER)
        );
    }
    assert_eq!(local.closed_with(), None);
    assert_eq!(text_of(&local.frames()), "");
    // Detached: the next relay does not try the lane again.
    lane_frames(&mut lane_rx);
    h.update(&local, &typed("more"));
    h.flush();
    assert!(lane_frames(&mut lane_rx).is_empty());
}
