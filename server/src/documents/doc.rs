//! The task of one open document: it runs the document's [`Core`] and does only the I/O the core
//! asks for ([`Effect`]): reading the document (a load that waits for another node's lease waits
//! on a timer, and ends at shutdown) and building it on a blocking thread, appending to the log,
//! requesting group-commit flushes and waiting for them, compacting the log, the idle timer,
//! shutdown, the node's fence (its clients are closed at once), and leaving the registry. Every decision (what to apply, when a frame may leave:
//! only after the flush that makes its content durable) is the core's.
//!
//! It never holds a yrs transaction across `.await` and never touches a socket: frames reach
//! connections through their bounded outboxes ([`crate::documents::peer::Peer`]). It reports
//! leaving memory through [`Unload`], which the registry implements, so it never names the
//! registry that spawns it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use debrief_proto::close;
use debrief_proto::ywire::SyncMessage;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use yrs::Doc;

use crate::documents::access::Authorizer;
// The commands live with their handle in `command`; callers name them here as before.
pub use crate::documents::command::{
    DocCommand, DocHandle, Incoming, Job, JobError, JobRequest, JoinError, JoinRequest,
};
use crate::documents::core::{sync_frame, Core, Effect, ReviewSizes, Shared, StoredMeta};
use crate::documents::crdt;
use crate::documents::queue;
use crate::documents::quota;
use crate::documents::reloads::ReloadLimiter;
use crate::documents::route::Router;
use crate::limits::{Limits, PRESENCE_TICK};
use crate::metrics::Metrics;
use crate::storage::store::{Compacted, Store, StoreError, StoredDoc};

/// Commands processed per wake-up before the owner asks for a flush; bounds how long one batch
/// can delay the flush that releases it.
const COMMANDS_PER_BATCH: usize = 64;

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
    /// In a cluster, where each document is served (asked before loading one); `None` on a
    /// single node, where every document is served here.
    pub router: Option<Arc<dyn Router>>,
}

impl DocContext {
    /// What the cores of every document share (made once, by the registry).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
            authorizer: self.authorizer.clone(),
            reloads: self.reloads.clone(),
            sizes: Arc::new(self.store.clone()),
        })
    }
}

impl ReviewSizes for Store {
    fn review_exceeds(&self, doc: &str, own: u64, limit: u64) -> bool {
        quota::exceeded(self, doc, own, limit)
    }
}

/// Where an owner reports that it leaves memory. The registry, which spawns owners, implements
/// it; an owner holds it weakly.
pub trait Unload: Send + Sync {
    /// The owner of `name` started as `generation` stopped (its load or storage failed, or the
    /// server shut down): forget it if it is still the registered one.
    fn stopped(&self, name: &str, generation: u64);

    /// The owner of `name` (`generation`) has been idle: forget it if it is still the registered
    /// one and `idle()` holds while no new handle can be handed out; `true` when forgotten.
    fn unload_if_idle(&self, name: &str, generation: u64, idle: &dyn Fn() -> bool) -> bool;
}

/// What an owner starts from.
pub(crate) struct Start {
    /// The document.
    pub name: Arc<str>,
    /// Which registration of the name this owner is.
    pub generation: u64,
    /// Told when the owner leaves memory.
    pub unload: Weak<dyn Unload>,
    /// The store, the shutdown token, limits.
    pub ctx: Arc<DocContext>,
    /// What the core needs.
    pub shared: Arc<Shared>,
}

/// A document being read and built: polled by the owner's task, the building itself on a
/// blocking thread.
type Building = Pin<Box<dyn Future<Output = Result<Doc, StoreError>> + Send>>;

/// Resolves, with why, once the node the store writes for is fenced ([`Store::until_fenced`]).
type NodeFenced = Pin<Box<dyn Future<Output = String> + Send>>;

pub(crate) struct Owner {
    name: Arc<str>,
    generation: u64,
    unload: Weak<dyn Unload>,
    ctx: Arc<DocContext>,
    core: Core,
    /// The requested flushes, oldest first: one per [`Core::flushes_in_flight`].
    flushes: VecDeque<oneshot::Receiver<Result<(), StoreError>>>,
    /// The document being built (first load), or read again and built ([`Effect::Rebuild`]).
    loading: Option<Building>,
    /// The running compaction ([`Effect::Compact`]).
    compaction: Option<JoinHandle<Result<Compacted, StoreError>>>,
    /// When presence changes are next relayed, while the core relays them in ticks.
    presence_tick: Option<tokio::time::Instant>,
}

impl Owner {
    /// Loads the document and serves commands until it is unloaded or the server stops.
    ///
    /// Memory: the task's future lives as long as the document is open, so it holds only
    /// pointers. The owner is boxed, and loading runs in a future of its own that is freed once
    /// it is done (a future is as large as its largest state, and every loaded document has one).
    pub(crate) fn run(
        start: Start,
        rx: queue::Receiver<DocCommand>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // A debug span: an enabled span would be allocated for every open document and entered
        // on every poll; warnings and errors name the document themselves.
        let span = tracing::debug_span!("doc", doc = %start.name);
        Owner::start(Box::new(start), rx).instrument(span)
    }

    async fn start(start: Box<Start>, rx: queue::Receiver<DocCommand>) {
        // Asked before the load claims the document: if the node that claims it is fenced from
        // here on (or already was), the document lets its clients go at once.
        let fenced = start.ctx.store.until_fenced();
        let shutdown = start.ctx.shutdown.clone();
        // A load may wait up to a lease and a renewal for another node's lease (PostgreSQL):
        // shutdown does not wait for it.
        let loaded = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            loaded = Box::pin(Owner::load(&start)) => Some(loaded),
        };
        match loaded {
            Some(Ok(owner)) => {
                drop(start);
                owner.serve(rx, fenced).await;
            }
            Some(Err(e)) => {
                tracing::error!(doc = %start.name, error = %e, "could not load document");
                if let Some(unload) = start.unload.upgrade() {
                    unload.stopped(&start.name, start.generation);
                }
                drop(start);
                Owner::refuse_all(rx, Refusal::NotLoaded).await;
            }
            None => {
                tracing::debug!("the server is shutting down; the document's load is abandoned");
                if let Some(unload) = start.unload.upgrade() {
                    unload.stopped(&start.name, start.generation);
                }
                drop(start);
                Owner::refuse_all(rx, Refusal::ShuttingDown).await;
            }
        }
    }

    async fn load(start: &Start) -> Result<Box<Owner>, StoreError> {
        let Start {
            name,
            generation,
            unload,
            ctx,
            shared,
        } = start;
        let started = std::time::Instant::now();
        let (stored, meta) = read(&ctx.store, name).await?;
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
            unload: unload.clone(),
            ctx: ctx.clone(),
            core: Core::new(name.clone(), shared.clone(), meta),
            flushes: VecDeque::new(),
            loading,
            compaction: None,
            presence_tick: None,
        }))
    }

    async fn serve(
        mut self: Box<Self>,
        mut rx: queue::Receiver<DocCommand>,
        mut fenced: NodeFenced,
    ) {
        let shutdown = self.ctx.shutdown.clone();
        loop {
            while let Some(effect) = self.core.poll_effect() {
                if self.perform(effect, &mut rx).await {
                    Metrics::dec(&self.ctx.metrics.documents_loaded);
                    return;
                }
                self.forget_dropped_flushes();
            }
            if self.core.finished() {
                break;
            }
            let idle = self.core.idle() && !self.core.shutting_down();
            if !self.core.presence_ticking() {
                self.presence_tick = None;
            } else if self.presence_tick.is_none() {
                self.presence_tick = Some(tokio::time::Instant::now() + PRESENCE_TICK);
            }
            tokio::select! {
                biased;
                done = async { (&mut *self.flushes.front_mut().expect("guarded by the branch condition")).await }, if !self.flushes.is_empty() => {
                    self.flushes.pop_front();
                    if self.flushes.is_empty() {
                        // Give the capacity back: most documents are idle most of the time.
                        self.flushes = VecDeque::new();
                    }
                    if !self.core.flush_completed(matches!(done, Ok(Ok(())))) {
                        break;
                    }
                }
                res = async { self.compaction.as_mut().expect("guarded by the branch condition").await }, if self.compaction.is_some() => {
                    self.compaction = None;
                    let outcome = match res {
                        Ok(Ok(c)) => Some(c),
                        Ok(Err(e)) => {
                            tracing::error!(doc = %self.name, error = %e, "compaction failed; the log is kept");
                            None
                        }
                        Err(e) => {
                            tracing::error!(doc = %self.name, error = %e, "compaction task failed; the log is kept");
                            None
                        }
                    };
                    self.core.compacted(outcome);
                }
                built = async { self.loading.as_mut().expect("guarded by the branch condition").await }, if self.loading.is_some() => {
                    self.loading = None;
                    let doc = match built {
                        Ok(doc) => Some(doc),
                        Err(e) => {
                            tracing::error!(doc = %self.name, error = %e, "could not build the document");
                            None
                        }
                    };
                    self.core.built(doc);
                }
                why = &mut fenced, if !self.core.shutting_down() => {
                    // Every write would be refused from now on: the clients are closed as a
                    // refused commit closes them, so they reconnect to whoever serves next.
                    tracing::warn!(doc = %self.name, reason = %why, "this node is fenced: the document's clients are closed and it leaves memory");
                    self.core.storage_failed();
                }
                cmd = rx.recv(), if self.core.accepts_commands() => {
                    let Some(cmd) = cmd else { break };
                    self.core.handle(cmd);
                    for _ in 1..COMMANDS_PER_BATCH {
                        if !self.core.accepts_commands() {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(cmd) => self.core.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep_until(self.presence_tick.unwrap_or_else(tokio::time::Instant::now)), if self.presence_tick.is_some() => {
                    self.presence_tick = None;
                    self.core.presence_tick();
                }
                _ = tokio::time::sleep(self.ctx.limits.idle_unload_after), if idle => {
                    self.core.idle_elapsed();
                }
                _ = shutdown.cancelled(), if !self.core.shutting_down() => {
                    self.core.shut_down();
                }
            }
            self.forget_dropped_flushes();
        }
        Metrics::dec(&self.ctx.metrics.documents_loaded);
        if let Some(unload) = self.unload.upgrade() {
            unload.stopped(&self.name, self.generation);
        }
    }

    /// A storage failure makes the core drop the frames of every flush in flight; their
    /// receivers go too.
    fn forget_dropped_flushes(&mut self) {
        self.flushes.truncate(self.core.flushes_in_flight());
    }

    /// Does what the core asked for; `true` when the document left memory.
    async fn perform(&mut self, effect: Effect, rx: &mut queue::Receiver<DocCommand>) -> bool {
        match effect {
            Effect::Append { seq, updates } => {
                // Into sled's memory: quick, and durable only with the flush that follows.
                let appended = self.ctx.store.append(&self.name, seq, &updates);
                self.core.appended(appended);
            }
            Effect::Flush { at_once } => self.flush(at_once).await,
            Effect::Compact { upto } => {
                let store = self.ctx.store.clone();
                let name = self.name.clone();
                self.compaction = Some(tokio::task::spawn_blocking(move || {
                    store.compact(&name, upto, crdt::fold)
                }));
            }
            Effect::Rebuild { damaged } => {
                // Built on a blocking thread, like the first load: a large document takes long
                // enough to build that doing it here stalled every socket and document this
                // worker serves (issue 16). The damaged document is freed there too.
                let store = self.ctx.store.clone();
                let name = self.name.clone();
                self.loading = Some(Box::pin(async move {
                    // Freed on a blocking thread too: a large document takes long to free.
                    let _ = tokio::task::spawn_blocking(move || drop(damaged)).await;
                    let stored = store.load(&name).await?;
                    build_blocking(name, stored).await
                }));
            }
            Effect::Unload => return self.try_unload(rx),
        }
        false
    }

    async fn flush(&mut self, at_once: bool) {
        if at_once {
            // Nothing of this document is waiting for the flusher, so the frames can leave as
            // soon as this flush is done, in order. Let the other tasks that are ready on this
            // thread run first: documents that receive updates in the same moment then append
            // theirs, and one sync covers them all (the others find nothing left to sync).
            tokio::task::yield_now().await;
            if let Some(result) = self.ctx.store.flush_now() {
                self.core.flushed_at_once(result.is_ok());
                return;
            }
        }
        match self.ctx.store.request_flush(&self.name).await {
            Ok(rx) => {
                self.core.flush_requested();
                self.flushes.push_back(rx);
            }
            Err(e) => {
                tracing::error!(doc = %self.name, error = %e, "cannot request a flush; closing the document");
                self.core.storage_failed();
            }
        }
    }

    /// Removes this document from the registry if nothing is waiting for it. Joins that raced
    /// with the removal are answered `Unloading`, and their connections open a fresh instance.
    fn try_unload(&mut self, rx: &mut queue::Receiver<DocCommand>) -> bool {
        let Some(unload) = self.unload.upgrade() else {
            return false;
        };
        if !unload.unload_if_idle(&self.name, self.generation, &|| rx.is_empty()) {
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

    /// Answers every queued join with a refusal when the document could not be loaded, or
    /// (`shutting_down`) when the server stopped while it was loading: those connections close
    /// "going away", as every other does at shutdown.
    pub(crate) async fn refuse_all(mut rx: queue::Receiver<DocCommand>, why: Refusal) {
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let DocCommand::Join(join) = cmd {
                let JoinRequest { peer, reply } = *join;
                let (code, reason) = match &why {
                    Refusal::ShuttingDown => {
                        let _ = reply.send(Err(JoinError::ShuttingDown));
                        continue;
                    }
                    Refusal::NotLoaded => (close::INTERNAL_ERROR, "document could not be loaded"),
                    Refusal::Unavailable(reason) => (close::TRY_AGAIN_LATER, reason.as_str()),
                };
                peer.kick.kick(code, reason);
                let _ = reply.send(Err(match why {
                    Refusal::Unavailable(_) => JoinError::Unavailable,
                    _ => JoinError::Unloading,
                }));
            }
        }
    }
}

/// Why the joins of a document that is not served are refused ([`Owner::refuse_all`]).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The server is shutting down.
    ShuttingDown,
    /// Loading it failed.
    NotLoaded,
    /// It is served nowhere this node can reach now, for the reason given (sent to clients).
    Unavailable(String),
}

/// Reads a document's stored bytes (no yrs work; see [`Store::load`]).
async fn read(store: &Store, name: &Arc<str>) -> Result<(StoredDoc, StoredMeta), StoreError> {
    let stored = store.load(name).await?;
    // The sync answer copies the snapshot: done on a blocking thread, like the read it follows.
    tokio::task::spawn_blocking(move || {
        let fresh_sync = match (&stored.snapshot, stored.log.is_empty()) {
            (Some(snapshot), true) => Some(sync_frame(SyncMessage::Step2(snapshot))),
            _ => None,
        };
        let meta = StoredMeta {
            fresh_sync,
            next_seq: stored.next_seq,
            log_entries: stored.log.len() as u64,
            log_bytes: stored.log_bytes(),
            snapshot_bytes: stored.snapshot_bytes(),
        };
        (stored, meta)
    })
    .await
    .map_err(|e| StoreError::Compaction(format!("load task failed: {e}")))
}

/// Builds the in-memory document from its stored bytes, on a blocking thread.
fn build_blocking(name: Arc<str>, stored: StoredDoc) -> Building {
    let building = tokio::task::spawn_blocking(move || build(&name, stored));
    Box::pin(async move {
        building
            .await
            .map_err(|e| StoreError::Compaction(format!("the build task failed: {e}")))?
    })
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
