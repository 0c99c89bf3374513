//! The decisions of one open document's owner, without I/O (Sans-IO): applying updates, holding
//! everything that carries content until the flush that makes it durable has completed ("relay
//! after flush", kept in a [`Holdback`]), relaying and acknowledging, access changes on open
//! connections, compaction triggers, and containing a failed or panicking update.
//!
//! [`Core`] takes a command ([`Core::handle`]) or the outcome of I/O it asked for
//! ([`Core::flush_completed`], [`Core::built`], [`Core::compacted`], …) and changes its state.
//! What needs I/O comes back as [`Effect`]s, one at a time from [`Core::poll_effect`]: they are
//! state the core keeps (at most one of each kind pending), so the effect queue is bounded by
//! construction. Frames go into the connections' bounded outboxes (in-memory queues); the one
//! thing of storage it asks synchronously is how large a review's other documents are
//! ([`ReviewSizes`], a seam tests fake). It never writes, sleeps, spawns, awaits or touches a
//! socket or a disk: [`crate::documents::doc`] does that around it, and the tests in
//! `core_tests.rs` drive it by hand.
//!
//! It speaks no dialect: connections are told things with [`Notice`]s, which their [`Framing`]
//! encodes (see [`crate::documents::peer`]).
//!
//! [`Framing`]: crate::documents::peer::Framing

use std::sync::Arc;

use bytes::Bytes;
use debrief_proto::awareness::decode_update;
use debrief_proto::close;
use debrief_proto::ywire::{Message, SyncMessage, EMPTY_STATE_VECTOR};
use tokio::sync::oneshot;
use yrs::Doc;

use crate::documents::access::{same_secret, Authorizer};
use crate::documents::command::{
    DocCommand, Incoming, Job, JobError, JobRequest, JoinError, JoinRequest,
};
use crate::documents::crdt;
use crate::documents::holdback::{Deferred, Holdback};
use crate::documents::peer::{ConnId, Delivery, Framed, Notice, Peer, Peers, Seat};
use crate::documents::presence::Presence;
use crate::documents::queue;
use crate::documents::quota;
use crate::documents::reloads::ReloadLimiter;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::storage::store::{Compacted, StoreError};

/// Frames (relays and acknowledgements) may wait for flushes up to this fraction of a
/// connection's outbox; past it the owner takes no new commands until a flush releases them.
/// One flush then releases at most a quarter of an outbox (plus the two frames of one command)
/// to any connection, so a burst from one writer slows that writer (its socket stops being read)
/// instead of overflowing the outboxes of readers that keep up.
const UNRELEASED_PER_OUTBOX: usize = 4;

/// Updates applied after the shared full state ([`FullState`]) was made that it carries for new
/// joiners, at most; past this (or [`FULL_STATE_TAIL_BYTES`]) it is made again for the next one.
const FULL_STATE_TAIL_FRAMES: usize = 64;

/// Bytes of the updates a [`FullState`] carries, at most (or an eighth of its own size, when that
/// is more): a joiner then receives little more than the document, and a busy document is encoded
/// again at most once per this much typing.
const FULL_STATE_TAIL_BYTES: usize = 64 << 10;

/// The sizes of a review's documents, for the review quota: read from memory the store keeps.
/// Implemented for the store by [`crate::documents::doc`]; faked in tests.
pub trait ReviewSizes: Send + Sync + std::fmt::Debug {
    /// Whether `doc`'s review would pass `limit` bytes once `doc` holds `own` bytes (see
    /// [`crate::documents::quota::exceeded`]).
    fn review_exceeds(&self, doc: &str, own: u64, limit: u64) -> bool;
}

/// What every core shares: limits, counters, the access seam, the reload allowance, sizes.
#[derive(Debug)]
pub struct Shared {
    /// Limits in force.
    pub limits: Limits,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Decides connections' access again when asked to ([`DocCommand::Reauthorize`]).
    pub authorizer: Arc<dyn Authorizer>,
    /// The reloads each token caused lately; a token past its allowance may not write.
    pub reloads: Arc<ReloadLimiter>,
    /// The sizes of other documents of a review.
    pub sizes: Arc<dyn ReviewSizes>,
}

/// What the store held of the document when it was read (its yrs document is built separately).
#[derive(Debug, Default)]
pub struct StoredMeta {
    /// The SyncStep2 frame for a client that has nothing, when the store held only a snapshot.
    pub fresh_sync: Option<Bytes>,
    /// The sequence number of the next log record.
    pub next_seq: u64,
    /// Records in the log after the snapshot.
    pub log_entries: u64,
    /// Bytes of those records.
    pub log_bytes: u64,
    /// Bytes of the snapshot.
    pub snapshot_bytes: u64,
}

/// I/O the core asks for. Each is answered by calling the core back, as each variant says, before
/// the next effect is polled.
pub enum Effect {
    /// Append `updates` (applied cleanly, in order) to the document's log as the record `seq`, in
    /// the store's memory; durability is the [`Effect::Flush`] that follows. Answer
    /// [`Core::appended`].
    Append {
        /// The record's sequence number.
        seq: u64,
        /// The v1 updates the record holds.
        updates: Vec<Vec<u8>>,
    },
    /// Log records were appended: make them durable (a group commit). When `at_once`, nothing
    /// else of this document waits for the flusher and a flush may be done on the spot: answer
    /// [`Core::flushed_at_once`]. Otherwise (or when it cannot be done at once) request one and
    /// answer [`Core::flush_requested`], then [`Core::flush_completed`] when it completes, in
    /// order; a request that fails is answered [`Core::storage_failed`]. No other effect is
    /// polled, and no command handled, in between.
    Flush {
        /// Nothing of this document is in flight.
        at_once: bool,
    },
    /// Fold the log below sequence `upto` into the snapshot in the background; answer
    /// [`Core::compacted`].
    Compact {
        /// The first sequence number not folded.
        upto: u64,
    },
    /// The document may have been changed part-way by a failed update or server code: free
    /// `damaged`, build the document again from storage, and answer [`Core::built`].
    Rebuild {
        /// The discarded document.
        damaged: Doc,
    },
    /// The document has been idle with an empty log: remove it from memory if nothing is
    /// waiting for it.
    Unload,
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Append { seq, updates } => {
                write!(f, "Append {{ seq: {seq}, updates: {} }}", updates.len())
            }
            Effect::Flush { at_once } => write!(f, "Flush {{ at_once: {at_once} }}"),
            Effect::Compact { upto } => write!(f, "Compact {{ upto: {upto} }}"),
            Effect::Rebuild { .. } => f.write_str("Rebuild"),
            Effect::Unload => f.write_str("Unload"),
        }
    }
}

/// The state and decisions of one open document.
pub struct Core {
    name: Arc<str>,
    shared: Arc<Shared>,
    /// The document; an empty placeholder while it is being built.
    doc: Doc,
    /// The document is being built from its stored bytes (first load, or [`Effect::Rebuild`]).
    /// Until it is done, joins, awareness and a cold joiner's SyncStep1 (answered from
    /// `full_state`) are served; the first command that needs the document waits in `blocked`,
    /// and no further command is taken.
    loading: bool,
    /// A failed update damaged the document and its rebuild waits for the running compaction
    /// to end: a compaction's batch landing between the rebuild's snapshot read and its log scan
    /// would hide records from it. Commands that need the document wait as during `loading`.
    reload_wanted: bool,
    blocked: Option<DocCommand>,
    /// Attached while building: they get the server's SyncStep1 once the document is built.
    awaiting_step1: Vec<ConnId>,
    presence: Presence,
    peers: Peers,
    /// The whole document as one SyncStep2 message for clients that join with nothing, made
    /// once and shared by every such joiner (issue 21: a join storm encoded the document once per
    /// joiner, one after another). After a load it is the stored snapshot as it is.
    full_state: Option<FullState>,
    /// Presence changes are being relayed in ticks: one relay went out lately, so changes wait
    /// for [`Core::presence_tick`].
    presence_ticking: bool,
    next_seq: u64,
    log_entries: u64,
    log_bytes: u64,
    snapshot_bytes: u64,
    /// Updates applied since the last log record was written; handed out as one record
    /// ([`Effect::Append`]) once the commands at hand are handled, before the flush.
    unwritten: Vec<Vec<u8>>,
    unwritten_bytes: u64,
    /// Frames that carry content, held until the flush that makes it durable.
    held: Holdback,
    /// A compaction is running.
    compacting: bool,
    /// A compaction was asked for regardless of the thresholds (the document went idle).
    compact_wanted: bool,
    compaction_upto: u64,
    unload_wanted: bool,
    shutting_down: bool,
    /// A storage failure closed the document: nothing more is written.
    failed: bool,
    /// The compaction on the way out was started.
    final_compaction: bool,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("peers", &self.peers.len())
            .field("next_seq", &self.next_seq)
            .field("in_flight", &self.held.in_flight())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// The core of the document `name` as the store held it; its yrs document is being built
    /// (answer [`Core::built`] when it is).
    pub fn new(name: Arc<str>, shared: Arc<Shared>, meta: StoredMeta) -> Core {
        Core {
            name,
            shared,
            doc: crdt::new_doc(),
            loading: true,
            reload_wanted: false,
            blocked: None,
            awaiting_step1: Vec::new(),
            presence: Presence::default(),
            peers: Peers::default(),
            full_state: meta.fresh_sync.map(FullState::new),
            presence_ticking: false,
            next_seq: meta.next_seq,
            log_entries: meta.log_entries,
            log_bytes: meta.log_bytes,
            snapshot_bytes: meta.snapshot_bytes,
            unwritten: Vec::new(),
            unwritten_bytes: 0,
            held: Holdback::default(),
            compacting: false,
            compact_wanted: false,
            compaction_upto: 0,
            unload_wanted: false,
            shutting_down: false,
            failed: false,
            final_compaction: false,
        }
    }

    // ---- what the task around the core asks ----

    /// Whether the next command may be taken: none waits for the document to be built, and the
    /// frames held back for flushes are below their bound (`UNRELEASED_PER_OUTBOX`).
    pub fn accepts_commands(&self) -> bool {
        let max = (self.shared.limits.outbox_capacity / UNRELEASED_PER_OUTBOX).max(1);
        self.blocked.is_none() && self.held.held() < max
    }

    /// Nothing attached and nothing in progress: the idle timer may run.
    pub fn idle(&self) -> bool {
        self.peers.is_empty() && self.quiet()
    }

    /// Whether shutdown (or a storage failure) began.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Shutting down and nothing left to do: the task may end.
    pub fn finished(&self) -> bool {
        self.shutting_down
            && self.quiet()
            && (self.failed || self.log_entries == 0 || self.final_compaction)
    }

    /// Requested flushes not completed yet (the task keeps their receivers, in the same order).
    pub fn flushes_in_flight(&self) -> usize {
        self.held.in_flight()
    }

    /// Connections attached.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// The next I/O to do, if any (see [`Effect`]).
    pub fn poll_effect(&mut self) -> Option<Effect> {
        // First: a rebuild reads the log, and must find every update that applied cleanly.
        if !self.unwritten.is_empty() {
            // Not `clear`: an idle document should not keep the capacity.
            let updates = std::mem::take(&mut self.unwritten);
            return Some(Effect::Append {
                seq: self.next_seq,
                updates,
            });
        }
        if let Some(damaged) = self.start_wanted_reload() {
            return Some(Effect::Rebuild { damaged });
        }
        if let Some(at_once) = self.held.ask_flush() {
            return Some(Effect::Flush { at_once });
        }
        if let Some(upto) = self.compaction_due() {
            return Some(Effect::Compact { upto });
        }
        if std::mem::take(&mut self.unload_wanted) {
            return Some(Effect::Unload);
        }
        None
    }

    // ---- inputs ----

    /// Handles one command.
    pub fn handle(&mut self, cmd: DocCommand) {
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
                for conn in self.peers.conns() {
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

    /// The record of [`Effect::Append`] is in the log and takes `bytes` (`Err`: the store
    /// failed, and the document is closed).
    pub fn appended(&mut self, bytes: Result<u64, StoreError>) {
        match bytes {
            Ok(bytes) => {
                self.next_seq += 1;
                self.log_entries += 1;
                self.log_bytes += bytes;
                self.unwritten_bytes = 0;
            }
            Err(e) => {
                tracing::error!(doc = %self.name, error = %e, "append failed; closing the document");
                self.fail_all();
            }
        }
    }

    /// The flush of [`Effect::Flush`] was done on the spot; `ok` is its outcome.
    pub fn flushed_at_once(&mut self, ok: bool) {
        let frames = self.held.flushed_at_once();
        self.release_flushed(ok, frames);
    }

    /// The flush of [`Effect::Flush`] was requested; [`Core::flush_completed`] follows.
    pub fn flush_requested(&mut self) {
        self.held.requested();
    }

    /// The oldest requested flush completed; `false` (and the document is closed) when it
    /// failed.
    pub fn flush_completed(&mut self, ok: bool) -> bool {
        let frames = self.held.completed();
        self.release_flushed(ok, frames)
    }

    /// Storage failed (a flush could not be requested, the document could not be built): every
    /// connection is closed and nothing more is written.
    pub fn storage_failed(&mut self) {
        self.fail_all();
    }

    /// The document is built (`None`: building failed, and the document is closed). The
    /// joiners that waited get the server's SyncStep1, then the command that waited is taken.
    pub fn built(&mut self, doc: Option<Doc>) {
        self.loading = false;
        let Some(doc) = doc else {
            self.fail_all();
            return;
        };
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

    /// The compaction ended (`None`: it failed, and the log is kept).
    pub fn compacted(&mut self, outcome: Option<Compacted>) {
        self.compacting = false;
        let Some(c) = outcome else { return };
        Metrics::inc(&self.shared.metrics.compactions);
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

    /// The document stayed [`Core::idle`] for the idle period: compact its log first, unload it
    /// the next time.
    pub fn idle_elapsed(&mut self) {
        // Nobody is here to join with it; the next joiner makes it again.
        self.full_state = None;
        if self.log_entries > 0 {
            self.compact_wanted = true;
        } else {
            self.unload_wanted = true;
        }
    }

    /// Presence changes wait for [`Core::presence_tick`]: the task calls it
    /// [`crate::limits::PRESENCE_TICK`] after this became true.
    pub fn presence_ticking(&self) -> bool {
        self.presence_ticking
    }

    /// A presence tick passed: relays what changed meanwhile, or ends the ticking when nothing
    /// did (the next change goes out at once).
    pub fn presence_tick(&mut self) {
        match self.presence.take_changes() {
            Some(changes) => self.defer_presence(awareness_frame(&changes)),
            None => self.presence_ticking = false,
        }
    }

    /// The server is shutting down: no more joins; the task ends once [`Core::finished`].
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    // ---- commands ----

    fn join(&mut self, peer: Peer) -> Result<(), JoinError> {
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        self.admits(&peer)?;
        let conn = peer.conn;
        // Decided again here, before the connection is sent anything: access was decided
        // before the join reached this queue (a phase change in between must not leave it with
        // the old access), and in a cluster that decision may have been provisional (a review's
        // document let through to the node serving reviews, which decides here).
        let decision = self
            .shared
            .authorizer
            .authorize(peer.credential.expose(), &self.name);
        let grant = peer.grant.clone();
        self.peers.insert(peer);
        match decision {
            Ok(access) => {
                grant.set(Some(access));
                self.notify(conn, Notice::Opened(access));
            }
            Err(denied) => {
                grant.set(None);
                Metrics::inc(&self.shared.metrics.permission_denied);
                self.notify(conn, Notice::Withdrawn(denied));
                self.remove_peer(conn);
                return Ok(());
            }
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
        Ok(())
    }

    /// Whether `peer` may join: the document's cap; for a read-only peer, the places kept for
    /// writers; for a review document, the cap per session token (issue 16).
    fn admits(&self, peer: &Peer) -> Result<(), JoinError> {
        let limits = &self.shared.limits;
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
                .filter(|p| same_secret(p.credential.expose(), token))
                .count();
            if mine >= limits.max_attachments_per_session {
                return Err(JoinError::TooManyForSession);
            }
        }
        Ok(())
    }

    /// Decides a connection's access again and tells it what changed ([`Notice::Access`], or
    /// [`Notice::Withdrawn`] and it is detached).
    fn reauthorize(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        let decision = self
            .shared
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
                Metrics::inc(&self.shared.metrics.permission_denied);
                self.notify(conn, Notice::Withdrawn(denied));
                self.remove_peer(conn);
            }
        }
    }

    /// Runs server code and treats its change like a client's update from nobody: stored, and
    /// relayed to every connection once on disk.
    fn run_job(&mut self, job: Job, writes: bool, done: oneshot::Sender<Result<(), JobError>>) {
        if self.failed {
            return;
        }
        let size = self.size();
        let limits = &self.shared.limits;
        if writes && size > limits.max_document_bytes {
            let _ = done.send(Err(JobError::TooLarge));
            return;
        }
        let quota = limits.max_review_bytes;
        let needs = size + quota::JOB_HEADROOM;
        if writes && self.shared.sizes.review_exceeds(&self.name, needs, quota) {
            Metrics::inc(&self.shared.metrics.review_quota_refusals);
            let _ = done.send(Err(JobError::QuotaExceeded));
            return;
        }
        match job.run_guarded(&self.doc) {
            Ok(Some(update)) if !update.is_empty() => {
                Metrics::inc(&self.shared.metrics.updates_applied);
                let frame = sync_frame(SyncMessage::Update(&update));
                self.changed(&frame);
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
            } => !(self.full_state.is_some() && &sv[..] == EMPTY_STATE_VECTOR),
            _ => false,
        }
    }

    fn on_step1(&mut self, conn: ConnId, sv: &[u8]) {
        if sv == EMPTY_STATE_VECTOR {
            self.send_full_state(conn);
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
        let limits = &self.shared.limits;
        if self.shared.reloads.exhausted(credential.expose()) {
            Metrics::inc(&self.shared.metrics.updates_rejected);
            tracing::warn!(doc = %self.name, %conn, "update refused: this token's updates made documents reload too often");
            let reason = format!(
                "too_many_failed_updates: this session's updates failed {} times within {} s; try again later",
                limits.max_reloads_per_token,
                limits.reload_window.as_secs()
            );
            self.reject(conn, close::TOO_MANY_FAILED_UPDATES, &reason);
            return;
        }
        let size = self.size();
        if size + update.len() as u64 > limits.max_document_bytes {
            Metrics::inc(&self.shared.metrics.updates_rejected);
            let reason = format!(
                "document_too_large: limit is {} bytes",
                limits.max_document_bytes
            );
            self.reject(conn, close::DOCUMENT_TOO_LARGE, &reason);
            return;
        }
        let quota = limits.max_review_bytes;
        let after = size + update.len() as u64;
        if self.shared.sizes.review_exceeds(&self.name, after, quota)
            && !matches!(crdt::contained(&self.doc, update), Ok(true))
        {
            // Refused only when it holds something new: a reconnecting client's handshake
            // repeats what the document has, and reading must keep working.
            Metrics::inc(&self.shared.metrics.review_quota_refusals);
            self.reject(conn, close::DOCUMENT_TOO_LARGE, &quota::message(quota));
            return;
        }
        let applied = match crdt::apply(&self.doc, update) {
            Ok(applied) => applied,
            Err(e) => {
                Metrics::inc(&self.shared.metrics.updates_rejected);
                self.reject(conn, close::UPDATE_REJECTED, e.reason());
                if e.may_have_changed_document() {
                    tracing::warn!(doc = %self.name, %conn, reason = e.code(), "update failed part-way; reloading the document");
                    self.shared.reloads.record(credential.expose());
                    self.reload();
                } else {
                    tracing::debug!(%conn, error = %e, "update refused before it touched the document");
                }
                return;
            }
        };
        if applied.pending {
            // Kept, but not part of the document's state until what it needs arrives.
            self.full_state = None;
        }
        if let Some(effect) = applied.effect {
            Metrics::inc(&self.shared.metrics.updates_applied);
            let frame = sync_frame(SyncMessage::Update(&effect));
            self.changed(&frame);
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
                Metrics::inc(&self.shared.metrics.updates_refused_read_only);
                self.notify(conn, Notice::Refused);
            }
            Err(e) => {
                Metrics::inc(&self.shared.metrics.updates_rejected);
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
        let max = self.shared.limits.max_awareness_state_bytes;
        if entries.iter().any(|e| e.state.len() > max) {
            self.reject(
                conn,
                close::AWARENESS_TOO_LARGE,
                &format!("awareness_too_large: limit is {max} bytes per state"),
            );
            return;
        }
        if self.presence.apply(conn, &entries) > 0 {
            self.relay_presence();
        }
    }

    /// Sends a client that joined with nothing the document's whole state: the shared
    /// [`FullState`] (made now if there is none), then the updates applied since it was made.
    fn send_full_state(&mut self, conn: ConnId) {
        if self.full_state.is_none() {
            match crdt::diff(&self.doc, EMPTY_STATE_VECTOR) {
                Ok(state) => {
                    let message = sync_frame(SyncMessage::Step2(&state));
                    self.full_state = Some(FullState::new(message));
                }
                Err(e) => {
                    tracing::error!(doc = %self.name, error = %e, "could not encode the document");
                    self.reject(conn, close::INTERNAL_ERROR, "encode_failed");
                    return;
                }
            }
        }
        let (Some(full), Some(peer)) = (self.full_state.as_mut(), self.peers.get(conn)) else {
            return;
        };
        let mut frames = vec![Deferred::Framed {
            conn,
            frame: full.step2.for_peer(peer),
        }];
        frames.extend(full.since.iter().map(|frame| Deferred::To {
            conn,
            frame: frame.clone(),
        }));
        for frame in frames {
            self.defer(frame);
        }
    }

    /// The document changed by the update `frame` carries: the shared full state carries it too,
    /// or is dropped once it carries too much.
    fn changed(&mut self, frame: &Bytes) {
        let Some(full) = &mut self.full_state else {
            return;
        };
        let budget = FULL_STATE_TAIL_BYTES.max(full.step2.len() / 8);
        if full.since.len() >= FULL_STATE_TAIL_FRAMES || full.since_bytes + frame.len() > budget {
            self.full_state = None;
            return;
        }
        full.since_bytes += frame.len();
        full.since.push(frame.clone());
    }

    /// Relays the presence changes not relayed yet: at once when none went out lately, else at
    /// the next [`Core::presence_tick`], so that a document relays presence at most once per tick
    /// however many clients move (issue 21), each client's latest state only. Echoed to the
    /// sender too: a lone y-websocket client that hears nothing reconnects.
    fn relay_presence(&mut self) {
        if self.presence_ticking {
            return;
        }
        if let Some(changes) = self.presence.take_changes() {
            self.defer_presence(awareness_frame(&changes));
            self.presence_ticking = true;
        }
    }

    // ---- the log, building, compaction ----

    /// The document's size as the size limit counts it.
    fn size(&self) -> u64 {
        self.snapshot_bytes + self.log_bytes + self.unwritten_bytes
    }

    /// Holds an update for the next log record ([`Effect::Append`]).
    fn keep(&mut self, update: Vec<u8>) {
        self.unwritten_bytes += update.len() as u64;
        self.unwritten.push(update);
        self.held.applied();
    }

    /// Discards the in-memory document after a failed update (or server code) may have changed
    /// it, and has it built again from storage, which holds exactly the updates that applied
    /// cleanly (appended ones included, flushed or not). Connected clients keep their state: they
    /// never received anything the rebuilt document lacks. Meanwhile this document's commands
    /// that need it wait (a large document takes long to build: issue 16).
    fn reload(&mut self) {
        Metrics::inc(&self.shared.metrics.documents_reloaded);
        self.full_state = None;
        self.reload_wanted = true;
    }

    /// Starts the rebuild asked for by [`Core::reload`] once no compaction is running (and, by
    /// the order of [`Core::poll_effect`], once what applied cleanly before is appended); the
    /// damaged document, to be freed off this task (a large one takes a while).
    fn start_wanted_reload(&mut self) -> Option<Doc> {
        if !self.reload_wanted || self.compacting {
            return None;
        }
        self.reload_wanted = false;
        if self.failed {
            return None;
        }
        self.loading = true;
        Some(std::mem::replace(&mut self.doc, crdt::new_doc()))
    }

    /// Whether the document is being built (loaded, or reloaded after a failed update).
    fn building(&self) -> bool {
        self.loading || self.reload_wanted
    }

    /// Nothing waits for storage: no flush, no compaction, no build.
    fn quiet(&self) -> bool {
        self.held.quiet() && !self.compacting && !self.building()
    }

    /// The compaction to start now, if any: on the way out (leave a compact document behind, so
    /// the next cold load reads one snapshot), when asked for, or past the thresholds.
    fn compaction_due(&mut self) -> Option<u64> {
        if self.shutting_down
            && self.quiet()
            && !self.failed
            && self.log_entries > 0
            && !self.final_compaction
        {
            self.final_compaction = true;
            return self.start_compaction();
        }
        if std::mem::take(&mut self.compact_wanted) {
            return self.start_compaction();
        }
        let limits = &self.shared.limits;
        // The byte threshold grows with the snapshot, so rewriting the snapshot costs at most as
        // much as the log it replaces (bounded write amplification for large documents).
        let byte_threshold = limits.compact_after_bytes.max(self.snapshot_bytes);
        if self.log_entries < limits.compact_after_entries && self.log_bytes < byte_threshold {
            return None;
        }
        self.start_compaction()
    }

    /// Folds the whole log into the snapshot, unless a compaction is running already.
    fn start_compaction(&mut self) -> Option<u64> {
        // A failed document is closing; what it has is left as it is in storage.
        // Nor while the document is being built: a rebuild reads the store (see `reload_wanted`).
        if self.failed || self.compacting || self.log_entries == 0 || self.building() {
            return None;
        }
        self.compacting = true;
        self.compaction_upto = self.next_seq;
        Some(self.next_seq)
    }

    // ---- connections ----

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
        self.unwritten.clear();
        self.unwritten_bytes = 0;
        self.held.clear();
    }

    fn remove_peer(&mut self, conn: ConnId) {
        if self.peers.remove(conn).is_none() {
            return;
        }
        if self.presence.remove_conn(conn) {
            self.relay_presence();
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
        if let Some(now) = self.held.hold(frame) {
            self.release(vec![now]);
        }
    }

    /// Releases the frames a completed flush covered; a failed flush closes the document
    /// (`false`).
    fn release_flushed(&mut self, ok: bool, frames: Vec<Deferred>) -> bool {
        if ok {
            Metrics::inc(&self.shared.metrics.flushes);
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
                Deferred::Framed { conn, frame } => {
                    if let Some(peer) = self.peers.get(conn) {
                        if !self.push(peer, frame) {
                            self.remove_peer(conn);
                        }
                    }
                }
                Deferred::Close { conn, code, reason } => self.reject(conn, code, &reason),
                Deferred::Done(done) => {
                    let _ = done.send(Ok(()));
                }
            }
        }
    }

    fn send_to(&mut self, conn: ConnId, message: Bytes) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        if !self.push(peer, peer.frame(&message)) {
            self.remove_peer(conn);
        }
    }

    /// Sends `message` to every connection but `except`. The members of a lane (the forwarded
    /// attachments of one entry node) get it once for all of them, under their lane's tag, and
    /// the entry node hands it to each member but `except`; a lane that cannot take it closes
    /// every member as a slow consumer.
    fn broadcast_now(&mut self, except: Option<ConnId>, message: Bytes) {
        let mut dropped = Vec::new();
        let mut framed = Framed::new(message);
        // The writer's seat, looked up at the first lane met: a document without lanes (every
        // document of a single server) pays no search for it.
        let mut except_seat: Option<Option<Seat>> = None;
        // Lanes served by this broadcast, and those whose outbox was full.
        let mut lanes: Vec<u64> = Vec::new();
        let mut slow_lanes: Vec<u64> = Vec::new();
        for peer in self.peers.iter() {
            if Some(peer.conn) == except {
                continue;
            }
            let Some(seat) = peer.framing.seat() else {
                if !self.push(peer, framed.for_peer(peer)) {
                    dropped.push(peer.conn);
                }
                continue;
            };
            if lanes.contains(&seat.lane) {
                continue;
            }
            lanes.push(seat.lane);
            let skip = except_seat
                .get_or_insert_with(|| {
                    except
                        .and_then(|conn| self.peers.get(conn))
                        .and_then(|peer| peer.framing.seat())
                })
                .filter(|s| s.lane == seat.lane)
                .map(|s| s.member);
            let tag = peer.framing.to_lane(skip);
            if !self.push_as(peer, tag, framed.for_peer(peer)) {
                slow_lanes.push(seat.lane);
            }
        }
        for peer in self.peers.iter() {
            if let Some(seat) = peer.framing.seat() {
                if slow_lanes.contains(&seat.lane) {
                    peer.kick.kick(
                        close::SLOW_CONSUMER,
                        "slow_consumer: reconnect to resynchronise",
                    );
                    dropped.push(peer.conn);
                }
            }
        }
        for conn in dropped {
            self.remove_peer(conn);
        }
    }

    /// Puts a frame (in the peer's dialect) in its outbox; `false` when the peer must be detached (outbox full: it
    /// is closed as a slow consumer and resynchronises on reconnect; or already closed).
    fn push(&self, peer: &Peer, frame: Bytes) -> bool {
        self.push_as(peer, peer.outbox.tag(), frame)
    }

    /// [`Core::push`] under the outbox tag `tag` (a lane's broadcast).
    fn push_as(&self, peer: &Peer, tag: u64, frame: Bytes) -> bool {
        match peer.outbox.try_send_as(tag, frame) {
            Ok(()) => true,
            Err(queue::TrySendError::Full(_)) => {
                Metrics::inc(&self.shared.metrics.slow_consumers);
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
}

/// A y-protocols sync message, as every dialect carries it.
pub fn sync_frame(msg: SyncMessage<'_>) -> Bytes {
    Bytes::from(Message::Sync(msg).encode())
}

/// The document's whole state for clients that join with nothing (see [`Core::send_full_state`]).
#[derive(Debug)]
struct FullState {
    /// The SyncStep2 message, framed once per dialect prefix.
    step2: Framed,
    /// Update messages applied after it was made, in order.
    since: Vec<Bytes>,
    /// Their bytes.
    since_bytes: usize,
}

impl FullState {
    fn new(step2: Bytes) -> Self {
        FullState {
            step2: Framed::new(step2),
            since: Vec::new(),
            since_bytes: 0,
        }
    }
}

fn awareness_frame(payload: &[u8]) -> Bytes {
    Bytes::from(Message::Awareness(payload).encode())
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
