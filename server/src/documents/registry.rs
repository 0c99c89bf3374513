//! The registry of open documents: at most one in-memory owner per document name.
//!
//! Opening is check-and-insert under one short lock that is never held across `.await`, so many
//! sockets opening the same unloaded document at the same moment all get the same owner (it loads
//! while their joins wait in its queue).
//!
//! The registry spawns owners ([`crate::documents::doc`]) and learns that one left memory through
//! the [`Unload`] notice it implements; owners never name the registry. In a cluster it asks the
//! router first, and a document another node owns is served through it
//! ([`crate::documents::remote`]) behind the same kind of handle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio_util::task::TaskTracker;

use crate::documents::command::DocHandle;
use crate::documents::core::Shared;
use crate::documents::doc::{DocContext, Owner, Refusal, Start, Unload};
use crate::documents::queue;
use crate::documents::remote::{self, RemoteStart};
use crate::documents::route::Route;
use crate::limits::DOC_COMMAND_CAPACITY;

#[derive(Debug)]
struct Entry {
    generation: u64,
    handle: DocHandle,
}

/// All documents currently in memory.
#[derive(Debug)]
pub struct Registry {
    docs: Mutex<HashMap<Arc<str>, Entry>>,
    next_generation: AtomicU64,
    ctx: Arc<DocContext>,
    /// What every owner's core shares, made once.
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl Registry {
    /// An empty registry whose owners are spawned on `tracker`.
    pub fn new(ctx: DocContext, tracker: TaskTracker) -> Arc<Registry> {
        Arc::new(Registry {
            docs: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            shared: ctx.shared(),
            ctx: Arc::new(ctx),
            tracker,
        })
    }

    /// The owner of `name`, spawning (and loading) it if it is not in memory.
    pub fn open(self: &Arc<Self>, name: &str) -> DocHandle {
        let mut docs = self.lock();
        if let Some(entry) = docs.get(name) {
            if !entry.handle.is_closed() {
                return entry.handle.clone();
            }
        }
        let name: Arc<str> = Arc::from(name);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = queue::channel(DOC_COMMAND_CAPACITY);
        let handle = DocHandle::new(tx);
        docs.insert(
            name.clone(),
            Entry {
                generation,
                handle: handle.clone(),
            },
        );
        drop(docs);
        let unload: Weak<dyn Unload> = Arc::downgrade(self) as Weak<Registry>;
        let start = Start {
            name,
            generation,
            unload,
            ctx: self.ctx.clone(),
            shared: self.shared.clone(),
        };
        match self.ctx.router.clone() {
            None => {
                self.tracker.spawn(Owner::run(start, rx));
            }
            // In a cluster the document may be another node's: ask first, on the task.
            Some(router) => {
                self.tracker.spawn(async move {
                    let route = tokio::select! {
                        route = router.route(&start.name) => route,
                        // The connections waiting for it are answered "shutting down".
                        () = start.ctx.shutdown.cancelled() => {
                            Owner::refuse_all(rx, Refusal::ShuttingDown).await;
                            return;
                        }
                    };
                    match route {
                        Route::Here => Owner::run(start, rx).await,
                        Route::Unavailable(reason) => {
                            // Forgotten, so that the next connection is routed again.
                            if let Some(unload) = start.unload.upgrade() {
                                unload.stopped(&start.name, start.generation);
                            }
                            Owner::refuse_all(rx, Refusal::Unavailable(reason)).await;
                        }
                        Route::There(remote) => {
                            let Start {
                                name,
                                generation,
                                unload,
                                ctx,
                                shared: _,
                            } = start;
                            let start = RemoteStart {
                                name,
                                generation,
                                unload,
                                ctx,
                                remote,
                            };
                            remote::serve(start, rx).await
                        }
                    }
                });
            }
        }
        handle
    }

    /// The authorizer the documents this node owns decide with (in a cluster, stricter than the
    /// sockets': a review's document is not this node's to serve unless it serves reviews).
    pub fn authorizer(&self) -> &Arc<dyn crate::documents::access::Authorizer> {
        &self.ctx.authorizer
    }

    /// The owner of `name` if it is in memory; never loads it.
    pub fn get(&self, name: &str) -> Option<DocHandle> {
        self.lock()
            .get(name)
            .filter(|e| !e.handle.is_closed())
            .map(|e| e.handle.clone())
    }

    /// Number of documents in memory.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no document is in memory.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // The map stays consistent even if a holder panicked: every update is a single insert
        // or remove.
        self.docs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Unload for Registry {
    fn stopped(&self, name: &str, generation: u64) {
        let mut docs = self.lock();
        if docs.get(name).is_some_and(|e| e.generation == generation) {
            docs.remove(name);
        }
    }

    fn unload_if_idle(&self, name: &str, generation: u64, idle: &dyn Fn() -> bool) -> bool {
        // `idle()` is asked under the lock, so no new handle can be handed out in between.
        let mut docs = self.lock();
        if docs.get(name).is_some_and(|e| e.generation == generation) && idle() {
            docs.remove(name);
            return true;
        }
        false
    }
}
