//! The owner of one open document: a task that alone holds the `yrs::Doc`, applies updates,
//! appends them to the store, and releases every frame that carries document content only after
//! the group-commit flush containing that content has completed ("relay after flush"), so that
//! nothing any client has seen can be lost to a crash.
//!
//! It never holds a yrs transaction across `.await` and never touches a socket: it talks to
//! connections through their bounded outboxes ([`Peer`]), and speaks no dialect: it sends
//! y-protocols messages and [`Notice`]s, which each connection's framing encodes.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use debrief_proto::awareness::decode_update;
use debrief_proto::close;
use debrief_proto::ywire::{Message, SyncMessage, EMPTY_STATE_VECTOR};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use yrs::Doc;

use crate::documents::access::Authorizer;
use crate::documents::crdt;
use crate::documents::peer::{ConnId, Delivery, Notice, Peer, Peers};
use crate::documents::presence::Presence;
use crate::documents::queue;
use crate::documents::registry::Registry;
use crate::documents::reloads::ReloadLimiter;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::storage::store::{Compacted, Store, StoreError, StoredDoc};

/// Commands processed per wake-up before the owner asks for a flush; bounds how long one batch
/// can delay the flush that releases it.
const COMMANDS_PER_BATCH: usize = 64;

/// Frames (relays and acknowledgements) may wait for flushes up to this fraction of a
/// connection's outbox; past it the owner takes no new commands until a flush releases them.
/// One flush then releases at most a quarter of an outbox (plus the two frames of one command)
/// to any connection, so a burst from one writer slows that writer (its socket stops being read)
/// instead of overflowing the outboxes of readers that keep up.
const UNRELEASED_PER_OUTBOX: usize = 4;

/// A message from a connection to a document.
#[derive(Debug)]
pub enum Incoming {
    /// The client's state vector: answer with what it lacks.
    Step1(Bytes),
    /// A step-2 or update payload.
    Update(Bytes),
    /// An awareness update.
    Awareness(Bytes),
    /// A request for every awareness state.
    QueryAwareness,
}

impl Incoming {
    /// The command for a sync message whose payload borrows from `frame`.
    pub fn from_sync(frame: &Bytes, sync: SyncMessage<'_>) -> Incoming {
        match sync {
            SyncMessage::Step1(sv) => Incoming::Step1(frame.slice_ref(sv)),
            SyncMessage::Step2(u) | SyncMessage::Update(u) => Incoming::Update(frame.slice_ref(u)),
        }
    }
}

/// Why a connection could not join a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The document is being unloaded; open it again.
    #[error("document is unloading")]
    Unloading,
    /// The document has the maximum number of connections.
    #[error("too many connections to this document")]
    Full,
    /// A read-only connection, and the places left are kept for read-write ones.
    #[error("the places left on this document are kept for writers")]
    FullForReaders,
    /// The session token has the document open as often as it may.
    #[error("too many attachments of one session to this document")]
    TooManyForSession,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

/// Commands a document owner understands.
#[derive(Debug)]
pub enum DocCommand {
    /// Attach a connection (boxed: a queue slot is as large as its largest command, and every
    /// open document has a queue).
    Join(Box<JoinRequest>),
    /// A message from an attached connection.
    Message {
        /// Who sent it.
        conn: ConnId,
        /// What it said.
        msg: Incoming,
    },
    /// Detach a connection (it closed).
    Leave {
        /// The connection.
        conn: ConnId,
    },
    /// Decide every attached connection's access again (a review changed phase, or sessions
    /// were revoked), and tell each connection whose access changed.
    Reauthorize,
    /// Run server code against the document (see [`DocHandle::run`]); boxed like `Join`.
    Job(Box<JobRequest>),
}

/// A connection asking to attach to a document: the owner tells it the access it is attached with
/// ([`Notice::Opened`]), then sends the server's SyncStep1 and current awareness.
#[derive(Debug)]
pub struct JoinRequest {
    /// The connection.
    pub peer: Peer,
    /// Answered once the connection is attached or refused.
    pub reply: oneshot::Sender<Result<(), JoinError>>,
}

/// Server code to run against a document.
#[derive(Debug)]
pub struct JobRequest {
    /// Reads the document and returns the update it made, if any.
    pub job: Job,
    /// False for a job that only reads, or makes an essential change: it runs even when the
    /// document is at its size limit.
    pub writes: bool,
    /// Answered once the update (if any) is on disk and relayed, or at once with the reason the
    /// job did not run.
    pub done: oneshot::Sender<Result<(), JobError>>,
}

/// Server code run by a document's owner: it may read the document and make one change, and
/// returns that change as an encoded v1 update (`None` when it changed nothing).
pub struct Job(Box<JobFn>);

type JobFn = dyn FnOnce(&Doc) -> Option<Vec<u8>> + Send;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job(..)")
    }
}

/// Why server code could not run against a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The document's owner stopped (shutdown, or a storage failure).
    #[error("the document is not available")]
    Unavailable,
    /// The document is past its size limit: server code may not grow it either.
    #[error("the document is at its size limit")]
    TooLarge,
    /// The document's review is past its storage quota (see [`crate::documents::quota`]).
    #[error("the review is at its storage quota")]
    QuotaExceeded,
}

/// Sender side of a document owner's command queue.
#[derive(Debug, Clone)]
pub struct DocHandle {
    pub(crate) tx: queue::Sender<DocCommand>,
}

impl DocHandle {
    /// Attaches `peer`; `Err(Unloading)` also covers an owner that already stopped.
    pub async fn join(&self, peer: Peer) -> Result<(), JoinError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(DocCommand::Join(Box::new(JoinRequest { peer, reply })))
            .await
            .map_err(|_| JoinError::Unloading)?;
        rx.await.unwrap_or(Err(JoinError::Unloading))
    }

    /// Sends a message; `false` when the owner is gone.
    pub async fn send(&self, conn: ConnId, msg: Incoming) -> bool {
        self.tx
            .send(DocCommand::Message { conn, msg })
            .await
            .is_ok()
    }

    /// Detaches a connection. An owner that already stopped needs no notice.
    pub async fn leave(&self, conn: ConnId) {
        let _ = self.tx.send(DocCommand::Leave { conn }).await;
    }

    /// Asks the owner to decide its connections' access again. An owner that stopped has none.
    pub async fn reauthorize(&self) {
        let _ = self.tx.send(DocCommand::Reauthorize).await;
    }

    /// Runs `f` on the owner's task, against the built document. `f` returns its result and the
    /// update it made (from its own transaction, written with the server's client id); the
    /// result comes back once that update is durably stored and relayed to every connection,
    /// like a client's update. `f` must be quick: the document waits for it.
    pub async fn run<R, F>(&self, f: F) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> (R, Option<Vec<u8>>) + Send + 'static,
    {
        self.job(f, true).await
    }

    /// Like [`DocHandle::run`], but for writes that must pass even a document at its size limit
    /// (moderation, the phase, releasing held items): small, server-chosen changes.
    pub async fn run_essential<R, F>(&self, f: F) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> (R, Option<Vec<u8>>) + Send + 'static,
    {
        self.job(f, false).await
    }

    /// Runs `f` on the owner's task to read the document (it may not change it); it runs even
    /// when the document is at its size limit.
    pub async fn read<R, F>(&self, f: F) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> R + Send + 'static,
    {
        self.job(move |doc| (f(doc), None), false).await
    }

    async fn job<R, F>(&self, f: F, writes: bool) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> (R, Option<Vec<u8>>) + Send + 'static,
    {
        let (result_tx, result_rx) = oneshot::channel();
        let job = Job(Box::new(move |doc| {
            let (result, update) = f(doc);
            let _ = result_tx.send(result);
            update
        }));
        let (done, done_rx) = oneshot::channel();
        self.tx
            .send(DocCommand::Job(Box::new(JobRequest { job, writes, done })))
            .await
            .map_err(|_| JobError::Unavailable)?;
        done_rx.await.map_err(|_| JobError::Unavailable)??;
        result_rx.await.map_err(|_| JobError::Unavailable)
    }
}

/// Everything an owner shares with the rest of the server.
#[derive(Debug, Clone)]
pub struct DocContext {
    /// The store.
    pub store: Store,
    /// Limits in force.
    pub limits: Limits,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Decides connections' access again when asked to ([`DocCommand::Reauthorize`]).
    pub authorizer: Arc<dyn Authorizer>,
    /// The reloads each token caused lately; a token past its allowance may not write.
    pub reloads: Arc<ReloadLimiter>,
}

/// A frame whose release waits for a flush.
#[derive(Debug)]
enum Deferred {
    /// To every peer except the one that caused it (if any).
    Broadcast {
        except: Option<ConnId>,
        frame: Bytes,
    },
    /// To one peer.
    To { conn: ConnId, frame: Bytes },
    /// A notice that its peer's dialect can only say by closing it.
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// Tells server code that its change is durable.
    Done(oneshot::Sender<Result<(), JobError>>),
}

/// A requested flush and the frames it will release.
type InFlight = (oneshot::Receiver<Result<(), StoreError>>, Vec<Deferred>);

/// What an owner starts from.
struct Start {
    name: Arc<str>,
    generation: u64,
    registry: std::sync::Weak<Registry>,
    ctx: Arc<DocContext>,
}

pub(crate) struct Owner {
    name: Arc<str>,
    generation: u64,
    registry: std::sync::Weak<Registry>,
    ctx: Arc<DocContext>,
    /// The document; an empty placeholder while `loading` is running.
    doc: Doc,
    /// The document being built from its stored bytes, at first load or after a failed update
    /// damaged it. Until it is done, joins, awareness and a cold joiner's SyncStep1 (answered
    /// from `fresh_sync`) are served; the first command that needs the document waits in
    /// `blocked`, and no further command is taken.
    loading: Option<JoinHandle<Result<Doc, StoreError>>>,
    /// A failed update damaged the document and its reload waits for the running compaction
    /// to end: a compaction's batch landing between the reload's snapshot read and its log scan
    /// would hide records from it. Commands that need the document wait as during `loading`.
    reload_wanted: bool,
    blocked: Option<DocCommand>,
    /// Attached while loading: they get the server's SyncStep1 once the document is built.
    awaiting_step1: Vec<ConnId>,
    presence: Presence,
    peers: Peers,
    /// The stored snapshot as a ready SyncStep2 frame, valid until the first change after load.
    /// A client that joins with nothing (every cold load) gets it without any yrs encoding.
    fresh_sync: Option<Bytes>,
    next_seq: u64,
    log_entries: u64,
    log_bytes: u64,
    snapshot_bytes: u64,
    /// Updates applied since the last log record was written; written as one record when the
    /// next flush is requested.
    unwritten: Vec<Vec<u8>>,
    unwritten_bytes: u64,
    /// Frames waiting for a flush not requested yet (content applied since the last request).
    unrequested: Vec<Deferred>,
    dirty: bool,
    in_flight: VecDeque<InFlight>,
    compaction: Option<JoinHandle<Result<Compacted, StoreError>>>,
    compaction_upto: u64,
    shutting_down: bool,
    /// A storage failure closed the document: nothing more is written.
    failed: bool,
    /// The compaction on the way out was started.
    final_compaction: bool,
}

impl Owner {
    /// Loads the document and serves commands until it is unloaded or the server stops.
    ///
    /// Memory: the task's future lives as long as the document is open, so it holds only
    /// pointers. The owner is boxed, and loading runs in a future of its own that is freed once
    /// it is done (a future is as large as its largest state, and every loaded document has one).
    pub(crate) fn run(
        name: Arc<str>,
        generation: u64,
        registry: std::sync::Weak<Registry>,
        ctx: Arc<DocContext>,
        rx: queue::Receiver<DocCommand>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // A debug span: an enabled span would be allocated for every open document and entered
        // on every poll; warnings and errors name the document themselves.
        let span = tracing::debug_span!("doc", doc = %name);
        let start = Box::new(Start {
            name,
            generation,
            registry,
            ctx,
        });
        Owner::start(start, rx).instrument(span)
    }

    async fn start(start: Box<Start>, rx: queue::Receiver<DocCommand>) {
        let loaded = Box::pin(Owner::load(&start)).await;
        match loaded {
            Ok(owner) => {
                drop(start);
                owner.serve(rx).await;
            }
            Err(e) => {
                tracing::error!(doc = %start.name, error = %e, "could not load document");
                if let Some(registry) = start.registry.upgrade() {
                    registry.remove_if(&start.name, start.generation);
                }
                drop(start);
                Owner::refuse_all(rx).await;
            }
        }
    }

    async fn load(start: &Start) -> Result<Box<Owner>, StoreError> {
        let Start {
            name,
            generation,
            registry,
            ctx,
        } = start;
        let started = std::time::Instant::now();
        let (stored, meta) = read_blocking(ctx.store.clone(), name.clone()).await?;
        Metrics::inc(&ctx.metrics.documents_loaded);
        tracing::debug!(
            log_entries = meta.log_entries,
            snapshot_bytes = meta.snapshot_bytes,
            elapsed_us = started.elapsed().as_micros() as u64,
            "document read"
        );
        let loading = Some(build_blocking(name.clone(), stored));
        Ok(Box::new(Owner {
            name: name.clone(),
            generation: *generation,
            registry: registry.clone(),
            ctx: ctx.clone(),
            doc: crdt::new_doc(),
            loading,
            reload_wanted: false,
            blocked: None,
            awaiting_step1: Vec::new(),
            presence: Presence::default(),
            peers: Peers::default(),
            fresh_sync: meta.fresh_sync,
            next_seq: meta.next_seq,
            log_entries: meta.log_entries,
            log_bytes: meta.log_bytes,
            snapshot_bytes: meta.snapshot_bytes,
            unwritten: Vec::new(),
            unwritten_bytes: 0,
            unrequested: Vec::new(),
            dirty: false,
            in_flight: VecDeque::new(),
            compaction: None,
            compaction_upto: 0,
            shutting_down: false,
            failed: false,
            final_compaction: false,
        }))
    }

    async fn serve(mut self: Box<Self>, mut rx: queue::Receiver<DocCommand>) {
        let shutdown = self.ctx.shutdown.clone();
        let max_unreleased = (self.ctx.limits.outbox_capacity / UNRELEASED_PER_OUTBOX).max(1);
        loop {
            let idle = self.peers.is_empty()
                && self.in_flight.is_empty()
                && !self.dirty
                && self.compaction.is_none()
                && !self.building();
            if self.shutting_down
                && self.in_flight.is_empty()
                && !self.dirty
                && self.compaction.is_none()
                && !self.building()
            {
                // Leave a compact document behind, so the next cold load reads one snapshot.
                if !self.failed && self.log_entries > 0 && !self.final_compaction {
                    self.final_compaction = true;
                    self.start_compaction();
                    continue;
                }
                break;
            }
            tokio::select! {
                biased;
                done = async { (&mut self.in_flight.front_mut().expect("guarded by the branch condition").0).await }, if !self.in_flight.is_empty() => {
                    let (_, frames) = self.in_flight.pop_front().expect("front exists");
                    if self.in_flight.is_empty() {
                        // Give the capacity back: most documents are idle most of the time.
                        self.in_flight = VecDeque::new();
                    }
                    if !self.flushed(matches!(done, Ok(Ok(()))), frames) {
                        break;
                    }
                }
                res = async { self.compaction.as_mut().expect("guarded by the branch condition").await }, if self.compaction.is_some() => {
                    self.compaction = None;
                    self.on_compacted(res);
                    self.start_wanted_reload();
                }
                built = async { self.loading.as_mut().expect("guarded by the branch condition").await }, if self.loading.is_some() => {
                    self.loading = None;
                    match built {
                        Ok(Ok(doc)) => self.on_built(doc),
                        Ok(Err(e)) => {
                            tracing::error!(doc = %self.name, error = %e, "could not build the document");
                            self.fail_all();
                        }
                        Err(e) => {
                            tracing::error!(doc = %self.name, error = %e, "the build task failed");
                            self.fail_all();
                        }
                    }
                }
                cmd = rx.recv(), if self.blocked.is_none() && self.unreleased() < max_unreleased => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    for _ in 1..COMMANDS_PER_BATCH {
                        if self.blocked.is_some() || self.unreleased() >= max_unreleased {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep(self.ctx.limits.idle_unload_after), if idle && !self.shutting_down => {
                    if self.log_entries > 0 {
                        // Compact first; the next idle period unloads.
                        self.start_compaction();
                    } else if self.try_unload(&mut rx) {
                        Metrics::dec(&self.ctx.metrics.documents_loaded);
                        return;
                    }
                }
                _ = shutdown.cancelled(), if !self.shutting_down => {
                    self.shutting_down = true;
                }
            }
            if self.dirty {
                self.request_flush().await;
            }
            self.maybe_compact();
        }
        Metrics::dec(&self.ctx.metrics.documents_loaded);
        if let Some(registry) = self.registry.upgrade() {
            registry.remove_if(&self.name, self.generation);
        }
    }

    /// Frames held back until flushes complete.
    fn unreleased(&self) -> usize {
        self.unrequested.len() + self.in_flight.iter().map(|(_, f)| f.len()).sum::<usize>()
    }

    /// Answers every queued join with a refusal when the document could not be loaded.
    async fn refuse_all(mut rx: queue::Receiver<DocCommand>) {
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let DocCommand::Join(join) = cmd {
                let JoinRequest { peer, reply } = *join;
                peer.kick
                    .kick(close::INTERNAL_ERROR, "document could not be loaded");
                let _ = reply.send(Err(JoinError::Unloading));
            }
        }
    }

    fn handle(&mut self, cmd: DocCommand) {
        if self.building() && self.needs_doc(&cmd) {
            self.blocked = Some(cmd);
            return;
        }
        match cmd {
            DocCommand::Join(join) => {
                let JoinRequest { peer, reply } = *join;
                let result = self.join(peer);
                let _ = reply.send(result);
            }
            DocCommand::Leave { conn } => self.remove_peer(conn),
            DocCommand::Reauthorize => {
                let conns = self.peers.conns();
                for conn in conns {
                    self.reauthorize(conn);
                }
            }
            DocCommand::Job(request) => {
                let JobRequest { job, writes, done } = *request;
                self.run_job(job, writes, done);
            }
            DocCommand::Message { conn, msg } => {
                if !self.peers.contains(conn) {
                    // A connection that was closed by this owner may still have frames in flight.
                    return;
                }
                match msg {
                    Incoming::Step1(sv) => self.on_step1(conn, &sv),
                    Incoming::Update(u) => self.on_update(conn, &u),
                    Incoming::Awareness(a) => self.on_awareness(conn, &a),
                    Incoming::QueryAwareness => {
                        if let Some(all) = self.presence.snapshot() {
                            // In order with the content, as presence changes are.
                            self.defer(Deferred::To {
                                conn,
                                frame: awareness_frame(&all),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Runs server code and treats its change like a client's update from nobody: stored, and
    /// relayed to every connection once on disk.
    fn run_job(&mut self, job: Job, writes: bool, done: oneshot::Sender<Result<(), JobError>>) {
        if self.failed {
            return;
        }
        let size = self.snapshot_bytes + self.log_bytes + self.unwritten_bytes;
        if writes && size > self.ctx.limits.max_document_bytes {
            let _ = done.send(Err(JobError::TooLarge));
            return;
        }
        let quota = self.ctx.limits.max_review_bytes;
        let needs = size + crate::documents::quota::JOB_HEADROOM;
        if writes && crate::documents::quota::exceeded(&self.ctx.store, &self.name, needs, quota) {
            Metrics::inc(&self.ctx.metrics.review_quota_refusals);
            let _ = done.send(Err(JobError::QuotaExceeded));
            return;
        }
        let update = guarded_job(job, &self.doc);
        match update {
            Ok(Some(update)) if !update.is_empty() => {
                self.fresh_sync = None;
                Metrics::inc(&self.ctx.metrics.updates_applied);
                let frame = sync_frame(SyncMessage::Update(&update));
                self.keep(update);
                self.defer(Deferred::Broadcast {
                    except: None,
                    frame,
                });
            }
            Ok(_) => {}
            Err(()) => {
                tracing::error!(doc = %self.name, "server code panicked on the document; reloading it");
                self.reload();
                return;
            }
        }
        self.defer(Deferred::Done(done));
    }

    /// Decides a connection's access again and tells it what changed ([`Notice::Access`], or
    /// [`Notice::Withdrawn`] and it is detached).
    fn reauthorize(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        let decision = self
            .ctx
            .authorizer
            .authorize(peer.credential.expose(), &self.name);
        let before = peer.grant.get();
        match decision {
            Ok(access) if Some(access) == before => {}
            Ok(access) => {
                peer.grant.set(Some(access));
                self.notify(conn, Notice::Access(access));
            }
            Err(denied) => {
                peer.grant.set(None);
                Metrics::inc(&self.ctx.metrics.permission_denied);
                self.notify(conn, Notice::Withdrawn(denied));
                self.remove_peer(conn);
            }
        }
    }

    /// Tells a connection something now, in its dialect.
    fn notify(&mut self, conn: ConnId, notice: Notice) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        match peer.notice(&notice) {
            Delivery::Nothing => {}
            Delivery::Message(message) => self.send_to(conn, message),
            Delivery::Close(code, reason) => self.reject(conn, code, &reason),
        }
    }

    /// Tells a connection something behind the flush that covers what was applied so far.
    fn defer_notice(&mut self, conn: ConnId, notice: Notice) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        match peer.notice(&notice) {
            Delivery::Nothing => {}
            Delivery::Message(frame) => self.defer(Deferred::To { conn, frame }),
            Delivery::Close(code, reason) => self.defer(Deferred::Close { conn, code, reason }),
        }
    }

    /// Whether handling `cmd` needs the built document.
    fn needs_doc(&self, cmd: &DocCommand) -> bool {
        match cmd {
            DocCommand::Job(_) => true,
            DocCommand::Message {
                msg: Incoming::Update(_),
                ..
            } => true,
            DocCommand::Message {
                msg: Incoming::Step1(sv),
                ..
            } => !(self.fresh_sync.is_some() && &sv[..] == EMPTY_STATE_VECTOR),
            _ => false,
        }
    }

    /// The document is built: send the SyncStep1 that joiners waited for, then take the command
    /// that waited for it.
    fn on_built(&mut self, doc: Doc) {
        self.doc = doc;
        let sv = crdt::state_vector(&self.doc);
        let step1 = sync_frame(SyncMessage::Step1(&sv));
        for conn in std::mem::take(&mut self.awaiting_step1) {
            self.send_to(conn, step1.clone());
        }
        if let Some(cmd) = self.blocked.take() {
            self.handle(cmd);
        }
    }

    fn join(&mut self, peer: Peer) -> Result<(), JoinError> {
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        self.admits(&peer)?;
        let conn = peer.conn;
        let opened = peer.grant.get();
        self.peers.insert(peer);
        if let Some(access) = opened {
            self.notify(conn, Notice::Opened(access));
        }
        if self.building() {
            self.awaiting_step1.push(conn);
        } else {
            let sv = crdt::state_vector(&self.doc);
            self.send_to(conn, sync_frame(SyncMessage::Step1(&sv)));
        }
        if let Some(all) = self.presence.snapshot() {
            self.send_to(conn, awareness_frame(&all));
        }
        // Access was decided before the join reached this queue; a phase change in between must
        // not leave the connection with the old access.
        self.reauthorize(conn);
        Ok(())
    }

    /// Whether `peer` may join: the document's cap; for a read-only peer, the places kept for
    /// writers; for a review document, the cap per session token (issue 16).
    fn admits(&self, peer: &Peer) -> Result<(), JoinError> {
        let limits = &self.ctx.limits;
        if self.peers.len() >= limits.max_connections_per_document {
            return Err(JoinError::Full);
        }
        if !peer.grant.writable() {
            let readers = self.peers.iter().filter(|p| !p.grant.writable()).count();
            let places = limits
                .max_connections_per_document
                .saturating_sub(limits.connections_reserved_for_writers);
            if readers >= places {
                return Err(JoinError::FullForReaders);
            }
        }
        // Review documents are opened with personal session tokens; other tokens are shared.
        if debrief_proto::schema::parse_document_name(&self.name).is_some() {
            let token = peer.credential.expose();
            let mine = self
                .peers
                .iter()
                .filter(|p| crate::documents::access::same_secret(p.credential.expose(), token))
                .count();
            if mine >= limits.max_attachments_per_session {
                return Err(JoinError::TooManyForSession);
            }
        }
        Ok(())
    }

    fn on_step1(&mut self, conn: ConnId, sv: &[u8]) {
        if let (Some(frame), EMPTY_STATE_VECTOR) = (&self.fresh_sync, sv) {
            let frame = frame.clone();
            self.defer(Deferred::To { conn, frame });
            return;
        }
        match crdt::diff(&self.doc, sv) {
            Ok(diff) => {
                let frame = sync_frame(SyncMessage::Step2(&diff));
                self.defer(Deferred::To { conn, frame });
            }
            Err(e) => self.reject(
                conn,
                close::PROTOCOL_ERROR,
                &format!("invalid_state_vector: {}", e.code()),
            ),
        }
    }

    fn on_update(&mut self, conn: ConnId, update: &[u8]) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        if peer.kick.peek().is_some() {
            // The connection is being closed (on a `/collab` socket, perhaps by another
            // document): nothing more of it is applied, so one socket cannot make several
            // documents fail, and reload, before its close takes effect.
            return;
        }
        if !peer.grant.writable() {
            self.on_read_only_update(conn, update);
            return;
        }
        let credential = peer.credential.clone();
        if self.ctx.reloads.exhausted(credential.expose()) {
            Metrics::inc(&self.ctx.metrics.updates_rejected);
            tracing::warn!(doc = %self.name, %conn, "update refused: this token's updates made documents reload too often");
            self.reject(
                conn,
                close::TOO_MANY_FAILED_UPDATES,
                &format!(
                    "too_many_failed_updates: this session's updates failed {} times within {} s; try again later",
                    self.ctx.limits.max_reloads_per_token,
                    self.ctx.limits.reload_window.as_secs()
                ),
            );
            return;
        }
        let size = self.snapshot_bytes + self.log_bytes + self.unwritten_bytes;
        if size + update.len() as u64 > self.ctx.limits.max_document_bytes {
            Metrics::inc(&self.ctx.metrics.updates_rejected);
            self.reject(
                conn,
                close::DOCUMENT_TOO_LARGE,
                &format!(
                    "document_too_large: limit is {} bytes",
                    self.ctx.limits.max_document_bytes
                ),
            );
            return;
        }
        let quota = self.ctx.limits.max_review_bytes;
        let after = size + update.len() as u64;
        if crate::documents::quota::exceeded(&self.ctx.store, &self.name, after, quota)
            && !matches!(crdt::contained(&self.doc, update), Ok(true))
        {
            // Refused only when it holds something new: a reconnecting client's handshake
            // repeats what the document has, and reading must keep working.
            Metrics::inc(&self.ctx.metrics.review_quota_refusals);
            self.reject(
                conn,
                close::DOCUMENT_TOO_LARGE,
                &crate::documents::quota::message(quota),
            );
            return;
        }
        let applied = match crdt::apply(&self.doc, update) {
            Ok(applied) => applied,
            Err(e) => {
                Metrics::inc(&self.ctx.metrics.updates_rejected);
                self.reject(conn, close::UPDATE_REJECTED, e.reason());
                if e.may_have_changed_document() {
                    tracing::warn!(doc = %self.name, %conn, reason = e.code(), "update failed part-way; reloading the document");
                    self.ctx.reloads.record(credential.expose());
                    self.reload();
                } else {
                    tracing::debug!(%conn, error = %e, "update refused before it touched the document");
                }
                return;
            }
        };
        if applied.effect.is_some() || applied.pending {
            self.fresh_sync = None;
        }
        if let Some(effect) = applied.effect {
            Metrics::inc(&self.ctx.metrics.updates_applied);
            let frame = sync_frame(SyncMessage::Update(&effect));
            self.keep(effect);
            self.defer(Deferred::Broadcast {
                except: Some(conn),
                frame,
            });
        }
        if applied.pending {
            self.keep(update.to_vec());
        }
        // Behind the flush that covers this update (or, when it brought nothing new, the
        // content it duplicates): the acknowledgement means "on disk".
        self.defer_notice(conn, Notice::Applied);
    }

    /// A read-only connection sent an update: harmless when it holds nothing new (a reader's
    /// SyncStep2 answer carries the delete set it was sent), refused otherwise, and the client is
    /// told either way. Nothing of it is applied or stored.
    fn on_read_only_update(&mut self, conn: ConnId, update: &[u8]) {
        match crdt::contained(&self.doc, update) {
            Ok(true) => self.defer_notice(conn, Notice::Applied),
            Ok(false) => {
                Metrics::inc(&self.ctx.metrics.updates_refused_read_only);
                self.notify(conn, Notice::Refused);
            }
            Err(e) => {
                Metrics::inc(&self.ctx.metrics.updates_rejected);
                self.reject(conn, close::UPDATE_REJECTED, e.code());
            }
        }
    }

    fn on_awareness(&mut self, conn: ConnId, payload: &[u8]) {
        let entries = match decode_update(payload) {
            Ok(entries) => entries,
            Err(e) => {
                self.reject(
                    conn,
                    close::PROTOCOL_ERROR,
                    &format!("invalid_awareness: {}", e.code()),
                );
                return;
            }
        };
        let max = self.ctx.limits.max_awareness_state_bytes;
        if entries.iter().any(|e| e.state.len() > max) {
            self.reject(
                conn,
                close::AWARENESS_TOO_LARGE,
                &format!("awareness_too_large: limit is {max} bytes per state"),
            );
            return;
        }
        if self.presence.apply(conn, &entries) > 0 {
            // Echoed to the sender too: a lone y-websocket client that hears nothing reconnects.
            self.defer_presence(awareness_frame(payload));
        }
    }

    /// Holds an update for the next log record; it is written when the next flush is requested.
    fn keep(&mut self, update: Vec<u8>) {
        self.unwritten_bytes += update.len() as u64;
        self.unwritten.push(update);
        self.dirty = true;
    }

    /// Writes the kept updates as one log record; `false` (and the document is closed) when the
    /// store fails.
    fn write_unwritten(&mut self) -> bool {
        if self.unwritten.is_empty() {
            return true;
        }
        match self
            .ctx
            .store
            .append(&self.name, self.next_seq, &self.unwritten)
        {
            Ok(bytes) => {
                self.next_seq += 1;
                self.log_entries += 1;
                self.log_bytes += bytes;
                // Not `clear`: an idle document should not keep the capacity.
                self.unwritten = Vec::new();
                self.unwritten_bytes = 0;
                true
            }
            Err(e) => {
                tracing::error!(doc = %self.name, error = %e, "append failed; closing the document");
                self.fail_all();
                false
            }
        }
    }

    /// Discards the in-memory document after a failed update (or server code) may have changed
    /// it, and builds it again from storage, which holds exactly the updates that applied cleanly
    /// (appended ones included, flushed or not). Connected clients keep their state: they never
    /// received anything the reload lacks. The build runs on a blocking thread, like the first
    /// load: a large document takes long enough to build that doing it here stalled every socket
    /// and document this worker serves (issue 16); meanwhile this document's commands wait.
    fn reload(&mut self) {
        Metrics::inc(&self.ctx.metrics.documents_reloaded);
        if !self.write_unwritten() {
            return;
        }
        self.fresh_sync = None;
        self.reload_wanted = true;
        self.start_wanted_reload();
    }

    /// Starts the reload asked for by [`Owner::reload`] once no compaction is running.
    fn start_wanted_reload(&mut self) {
        if !self.reload_wanted || self.compaction.is_some() {
            return;
        }
        self.reload_wanted = false;
        if self.failed {
            return;
        }
        // The damaged document is freed on the blocking thread too (a large one takes a while).
        let damaged = std::mem::replace(&mut self.doc, crdt::new_doc());
        let store = self.ctx.store.clone();
        let name = self.name.clone();
        self.loading = Some(tokio::task::spawn_blocking(move || {
            drop(damaged);
            let stored = store.load(&name)?;
            build(&name, stored)
        }));
    }

    /// Whether the document is being built (loaded, or reloaded after a failed update).
    fn building(&self) -> bool {
        self.loading.is_some() || self.reload_wanted
    }

    /// Closes one connection with a code, and detaches it.
    fn reject(&mut self, conn: ConnId, code: u16, reason: &str) {
        if let Some(peer) = self.peers.get(conn) {
            peer.kick.kick(code, reason);
        }
        self.remove_peer(conn);
    }

    /// Closes every connection after a storage failure; they reconnect to a fresh load.
    fn fail_all(&mut self) {
        for peer in self.peers.iter() {
            peer.kick.kick(close::INTERNAL_ERROR, "storage_error");
        }
        self.peers.clear();
        self.shutting_down = true;
        self.failed = true;
        self.dirty = false;
        self.unwritten.clear();
        self.unwritten_bytes = 0;
        self.unrequested.clear();
        self.in_flight.clear();
    }

    fn remove_peer(&mut self, conn: ConnId) {
        if self.peers.remove(conn).is_none() {
            return;
        }
        if let Some(gone) = self.presence.remove_conn(conn) {
            self.defer_presence(awareness_frame(&gone));
        }
    }

    /// Relays a presence change in order with the content: behind the updates that wait for a
    /// flush, so that a caret does not reach the other clients before the text it points at (it
    /// could not be placed). With nothing waiting it goes out at once; otherwise it leaves in
    /// the same write as those updates. (A departure is safe either way: its clock is above any
    /// state of that client still queued, so clients drop the older state.)
    fn defer_presence(&mut self, frame: Bytes) {
        self.defer(Deferred::Broadcast {
            except: None,
            frame,
        });
    }

    /// Queues a content-carrying frame behind the flush that covers everything applied so far.
    fn defer(&mut self, frame: Deferred) {
        if self.dirty {
            self.unrequested.push(frame);
        } else if let Some((_, frames)) = self.in_flight.back_mut() {
            frames.push(frame);
        } else {
            self.release(vec![frame]);
        }
    }

    async fn request_flush(&mut self) {
        if !self.write_unwritten() {
            return;
        }
        if self.in_flight.is_empty() {
            // Nothing of this document is waiting for the flusher, so the frames can leave as
            // soon as this flush is done, in order. Let the other tasks that are ready on this
            // thread run first: documents that receive updates in the same moment then append
            // theirs, and one sync covers them all (the others find nothing left to sync).
            tokio::task::yield_now().await;
            if let Some(result) = self.ctx.store.flush_now() {
                self.dirty = false;
                let frames = std::mem::take(&mut self.unrequested);
                self.flushed(result.is_ok(), frames);
                return;
            }
        }
        match self.ctx.store.request_flush().await {
            Ok(rx) => {
                self.dirty = false;
                let frames = std::mem::take(&mut self.unrequested);
                self.in_flight.push_back((rx, frames));
            }
            Err(e) => {
                tracing::error!(doc = %self.name, error = %e, "cannot request a flush; closing the document");
                self.fail_all();
            }
        }
    }

    /// Releases the frames a completed flush covered; a failed flush closes the document
    /// (`false`).
    fn flushed(&mut self, ok: bool, frames: Vec<Deferred>) -> bool {
        if ok {
            Metrics::inc(&self.ctx.metrics.flushes);
            self.release(frames);
        } else {
            tracing::error!(doc = %self.name, "flush failed; closing the document");
            self.fail_all();
        }
        ok
    }

    fn release(&mut self, frames: Vec<Deferred>) {
        for d in frames {
            match d {
                Deferred::Broadcast { except, frame } => self.broadcast_now(except, frame),
                Deferred::To { conn, frame } => self.send_to(conn, frame),
                Deferred::Close { conn, code, reason } => self.reject(conn, code, &reason),
                Deferred::Done(done) => {
                    let _ = done.send(Ok(()));
                }
            }
        }
    }

    fn send_to(&mut self, conn: ConnId, frame: Bytes) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        if !self.push(peer, frame) {
            self.remove_peer(conn);
        }
    }

    fn broadcast_now(&mut self, except: Option<ConnId>, frame: Bytes) {
        let mut dropped = Vec::new();
        for peer in self.peers.iter() {
            if Some(peer.conn) != except && !self.push(peer, frame.clone()) {
                dropped.push(peer.conn);
            }
        }
        for conn in dropped {
            self.remove_peer(conn);
        }
    }

    /// Puts a frame in a peer's outbox; `false` when the peer must be detached (outbox full: it
    /// is closed as a slow consumer and resynchronises on reconnect; or already closed).
    fn push(&self, peer: &Peer, frame: Bytes) -> bool {
        match peer.outbox.try_send(peer.frame(&frame)) {
            Ok(()) => true,
            Err(queue::TrySendError::Full(_)) => {
                Metrics::inc(&self.ctx.metrics.slow_consumers);
                tracing::debug!(conn = %peer.conn, "outbox full; closing slow consumer");
                peer.kick.kick(
                    close::SLOW_CONSUMER,
                    "slow_consumer: reconnect to resynchronise",
                );
                false
            }
            Err(queue::TrySendError::Closed(_)) => false,
        }
    }

    fn maybe_compact(&mut self) {
        let limits = &self.ctx.limits;
        // The byte threshold grows with the snapshot, so rewriting the snapshot costs at most as
        // much as the log it replaces (bounded write amplification for large documents).
        let byte_threshold = limits.compact_after_bytes.max(self.snapshot_bytes);
        if self.log_entries < limits.compact_after_entries && self.log_bytes < byte_threshold {
            return;
        }
        self.start_compaction();
    }

    /// Folds the whole log into the snapshot in the background, unless one is running already.
    fn start_compaction(&mut self) {
        // A failed document is closing; what it has is left as it is in storage.
        // Nor while the document is being built: a reload reads the store (see `reload_wanted`).
        if self.failed || self.compaction.is_some() || self.log_entries == 0 || self.building() {
            return;
        }
        let store = self.ctx.store.clone();
        let name = self.name.clone();
        let upto = self.next_seq;
        self.compaction_upto = upto;
        self.compaction = Some(tokio::task::spawn_blocking(move || {
            store.compact(&name, upto, crdt::fold)
        }));
    }

    fn on_compacted(&mut self, res: Result<Result<Compacted, StoreError>, tokio::task::JoinError>) {
        match res {
            Ok(Ok(c)) => {
                Metrics::inc(&self.ctx.metrics.compactions);
                self.log_entries = self.log_entries.saturating_sub(c.entries);
                self.log_bytes = self.log_bytes.saturating_sub(c.entry_bytes);
                self.snapshot_bytes = c.snapshot_bytes;
                tracing::debug!(
                    entries = c.entries,
                    snapshot_bytes = c.snapshot_bytes,
                    upto = self.compaction_upto,
                    "log compacted"
                );
            }
            Ok(Err(e)) => {
                tracing::error!(doc = %self.name, error = %e, "compaction failed; the log is kept")
            }
            Err(e) => {
                tracing::error!(doc = %self.name, error = %e, "compaction task failed; the log is kept")
            }
        }
    }

    /// Removes this document from the registry if nothing is waiting for it. Joins that raced
    /// with the removal are answered `Unloading`, and their connections open a fresh instance.
    fn try_unload(&mut self, rx: &mut queue::Receiver<DocCommand>) -> bool {
        let Some(registry) = self.registry.upgrade() else {
            return false;
        };
        if !registry.remove_if_idle(&self.name, self.generation, || rx.is_empty()) {
            return false;
        }
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            if let DocCommand::Join(join) = cmd {
                let _ = join.reply.send(Err(JoinError::Unloading));
            }
        }
        tracing::debug!("idle document unloaded");
        true
    }
}

struct LoadedMeta {
    /// The SyncStep2 frame for a client that has nothing, when the store held only a snapshot.
    fresh_sync: Option<Bytes>,
    next_seq: u64,
    log_entries: u64,
    log_bytes: u64,
    snapshot_bytes: u64,
}

/// Reads a document's stored bytes (no yrs work), on a blocking thread.
async fn read_blocking(
    store: Store,
    name: Arc<str>,
) -> Result<(StoredDoc, LoadedMeta), StoreError> {
    tokio::task::spawn_blocking(move || {
        let stored = store.load(&name)?;
        let fresh_sync = match (&stored.snapshot, stored.log.is_empty()) {
            (Some(snapshot), true) => Some(sync_frame(SyncMessage::Step2(snapshot))),
            _ => None,
        };
        let meta = LoadedMeta {
            fresh_sync,
            next_seq: stored.next_seq,
            log_entries: stored.log.len() as u64,
            log_bytes: stored.log_bytes(),
            snapshot_bytes: stored.snapshot_bytes(),
        };
        Ok((stored, meta))
    })
    .await
    .map_err(|e| StoreError::Compaction(format!("load task failed: {e}")))?
}

/// Builds the in-memory document from its stored bytes, on a blocking thread.
fn build_blocking(name: Arc<str>, stored: StoredDoc) -> JoinHandle<Result<Doc, StoreError>> {
    tokio::task::spawn_blocking(move || build(&name, stored))
}

/// Builds the in-memory document from its stored bytes (slow for a large document: call it on a
/// blocking thread).
fn build(name: &str, stored: StoredDoc) -> Result<Doc, StoreError> {
    let started = std::time::Instant::now();
    let doc = crdt::load(stored.snapshot.as_deref(), stored.updates()?)
        .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
    tracing::debug!(
        elapsed_us = started.elapsed().as_micros() as u64,
        "document built"
    );
    Ok(doc)
}

/// Runs a job with panics contained: a panic inside yrs may leave the document half-changed, so
/// the caller reloads it.
fn guarded_job(job: Job, doc: &Doc) -> Result<Option<Vec<u8>>, ()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.0)(doc))).map_err(|_| ())
}

fn sync_frame(msg: SyncMessage<'_>) -> Bytes {
    Bytes::from(Message::Sync(msg).encode())
}

fn awareness_frame(payload: &[u8]) -> Bytes {
    Bytes::from(Message::Awareness(payload).encode())
}
