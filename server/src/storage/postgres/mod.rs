//! The PostgreSQL backend (`--postgres URL`): documents and metadata in tables of a database the
//! operator provides (`schema.sql`), behind the same interface as sled
//! ([`crate::storage::store`]).
//!
//! **One database thread.** tokio-postgres is asynchronous, and most of the store's methods are
//! synchronous and called from the server's async workers, where blocking on a future is not
//! allowed. So one thread of its own (`debrief-postgres`) runs a small current-thread runtime
//! with the one connection, and everything that needs the database is handed to it: group
//! commits through a bounded queue (an owner that finds it full waits, as with sled), and the
//! few calls that must read the database (reading a document just claimed, a compaction, a
//! document's size the first time it is asked for, a metadata tree the first time it is opened)
//! through a queue on which each caller waits for its own answer, so it holds at most one call
//! per thread. Statements run one after the other on that connection. Claims do not: they run
//! on a claim session of their own (below).
//!
//! **Group commit.** [`PgStore::append`] puts the record in the pending batch in memory. The
//! database thread takes every waiting flush request, then every pending record and metadata
//! write, and commits them in one transaction; only then does it answer the requests, so
//! nothing is relayed or acknowledged before COMMIT returned (with `synchronous_commit` on, the
//! commit is on the database's disk, and on a synchronous standby's when one is configured).
//!
//! **Claims and the fence** are the cluster's ([`owner::Owner`], given at open; `docs/cluster.md`,
//! "Leases, epochs and the fence"). The `documents` table records each document's owner (the
//! node's id) and epoch. [`PgStore::load`] (async) claims the document's group (a review's three
//! documents; [`owner::Ownership::group`]) in one short transaction on the store's claim session
//! (`claims.rs`), never on the commit connection, whose commits must not wait on a row lock a
//! claim waits for; the claim gives up on a lock after [`owner::Owner::lock_limit`]. It takes
//! the group only when nobody holds it, this node does, it was handed over, or its owner's lease
//! lapsed by the database's clock, each epoch rising. A group held by another node with a live
//! lease (or locked past the limit) is tried again on a timer of the loading task, which holds
//! no thread meanwhile, until that lease could have lapsed and one renewal more, then the load
//! fails with [`StoreError::Held`] (or [`StoreError::Locked`]). Every group commit runs the fence for each of its documents, in name
//! order, inside its transaction: owner and epoch still this node's, and its lease live; a
//! document that fails it is dropped from the transaction, which is retried without it, and its
//! owner's flush fails with [`StoreError::Fenced`] (counted in `/metrics`). A compaction runs the
//! same check in its own transaction. Once the node itself is fenced (its lease lost), every
//! document it held is fenced at the next commit (or at the first claim or commit under the
//! node the server registers next) and nothing more is written; documents that asked
//! [`PgStore::until_fenced`] close their clients at once.
//!
//! **Failures.** A commit that fails drops the records it carried: their documents are marked
//! failed, so their owners' flushes fail and the owners stop (their clients reconnect and load
//! the document afresh, as after a sled error), and appends to them are refused until they are
//! loaded again; records appended to them while the failed commit ran are dropped too (written
//! alone they would leave a gap in the log). Metadata writes of a failed commit go back into the
//! pending batch and are committed by the next one: a [`PgStore::durable`] that failed has an
//! **unknown outcome** (its writes are visible at once and may be stored later), never "nothing
//! was stored". Every round, read, connection attempt and connection check is bounded by
//! [`PgSettings::timeout`]: past it the connection is dropped (the outcome is unknown, as above).
//! A lost connection is reconnected with backoff; while it is down, commits and loads fail at
//! once and [`PgStore::probe`] fails (`/readyz` answers 503).
//!
//! **One server per database.** Every session first takes a session-level advisory lock: a
//! second server on the same database refuses to start, and a server that cannot take it again
//! after a reconnect stops writing for good (its documents fail, the probe fails). The nodes of
//! a cluster ([`PgSettings::shared`]) take it shared, so they run together and refuse a
//! single-node server beside them, as it refuses them. Every session also sets
//! `synchronous_commit` on, and a database with `fsync` off is refused.
//!
//! **Metadata trees** are read whole into memory the first time they are opened and served from
//! there; a write changes memory at once (visible to every read on this node, as in sled) and
//! goes into the pending batch, durable with the next commit. `put_new` checks and writes under
//! the tree's lock, so it is atomic against every other write of this node, pending ones
//! included. In a cluster one node at a time writes the trees: the one holding the review role
//! ([`REVIEWS_ROLE`], claimed like a document by [`PgStore::take_reviews`], which reads every
//! tree again from the database). Every commit that writes a tree passes the role's fence in
//! the same transaction, so a node that lost the role (paused past its lease, or handed it over)
//! writes none; it stops writing for good instead ([`PgStore::stopped`]).
//!
//! **Anonymity** (`docs/anonymity.md`). This module writes exactly what the sled backend writes,
//! and, for a node of a cluster, the held anonymous items in `held_slots`: bytes sealed by
//! `reviews/anonymous/sealed.rs`, written only as whole ticks of a fixed number of slots, each
//! slot cut into fixed pieces below the TOAST threshold (see `schema.sql`). Without links the
//! held items stay in `held/slots` on the local disk and that table stays empty.
//! The keys, vote records and pulse answers of a release reach the pending batch together (one
//! `MetaTree::apply_together`, under one lock of the batch), so they are written in one
//! transaction, and within it in key order (the batch is ordered by tree and key,
//! and each statement inserts its rows in that order), as sled writes them: the rows' physical
//! order, their transaction id and their place in the write-ahead log say nothing about when each
//! item arrived.

mod claims;
pub mod owner;
mod worker;

#[cfg(test)]
pub(crate) mod testdb;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::storage::types::{
    encode_record, updates_of, Compacted, Entry, StoreError, StoredDoc, TreeWrites,
};
use owner::Ownership;

/// The file that marks a data directory as a PostgreSQL server's (written at every open): sled,
/// its tools (`check`, `backup`, `restore`) and the server without `--postgres` refuse it.
pub const MARKER: &str = "postgres-backend";

/// Refuses (one line) a data directory marked as a PostgreSQL server's, for sled and its tools.
pub fn refuse_marked(dir: &Path) -> Result<(), StoreError> {
    if dir.join(MARKER).exists() {
        return Err(StoreError::Postgres(format!(
            "{} is the data directory of a server that keeps its data in PostgreSQL: start it \
             with --postgres, and back it up with PostgreSQL's tools",
            dir.display()
        )));
    }
    Ok(())
}

/// Flush requests waiting for the database thread. Owners wait when it is full, which only
/// happens when the database cannot keep up; that is the back-pressure we want.
const FLUSH_QUEUE_CAPACITY: usize = 4096;

/// Sizes kept at most by [`PgStore::stored_bytes`]; all are forgotten past it.
const SIZE_CACHE_ENTRIES: usize = 4096;

/// How long start-up waits for a database that cannot be reached yet (it may be starting beside
/// the server) before giving up.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(30);

/// How long a group commit, a read, a connection attempt or a connection check may take before
/// the connection is dropped as hung (a silent partition, a stuck server): what was being
/// committed fails with an error saying its outcome is unknown, and the readiness probe fails
/// until a new connection is made.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Upper bounds of the commit latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How to reach the database.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq connection string: `postgres://user:password@host/db` or `host=… dbname=…`.
    pub url: String,
    /// How long start-up retries a database it cannot reach.
    pub patience: Duration,
    /// How long one statement round may take (see [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Several nodes share the database (a cluster with internal links, `docs/cluster.md`): the
    /// single-node lock is then taken shared, and the node holding the review role
    /// ([`REVIEWS_ROLE`]) serves reviews ([`PgStore::serves_reviews`]).
    pub shared: bool,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The string may hold a password.
        f.debug_struct("PgSettings")
            .field("patience", &self.patience)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Handle to the PostgreSQL store; cheap to clone. The database thread ends once every handle is
/// dropped (after committing what is pending).
#[derive(Debug, Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
    calls: mpsc::UnboundedSender<Call>,
    flushes: mpsc::Sender<FlushWaiter>,
    dir: Arc<Path>,
}

/// The database thread, returned by [`PgStore::open`] so the caller owns and awaits it.
#[derive(Debug)]
pub struct PgFlusher {
    thread: std::thread::JoinHandle<()>,
}

/// A metadata tree kept in memory over the `meta` table (see the module documentation).
#[derive(Debug, Clone)]
pub struct PgTree {
    shared: Arc<Shared>,
    tree: Arc<TreeData>,
}

#[derive(Debug)]
struct TreeData {
    name: String,
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// The review role of a cluster: a row of `documents` no client can name (document names are
/// `A–Z a–z 0–9 . _ : -`), claimed, leased, handed over and fenced like a document. The node
/// that holds it serves reviews and alone writes the metadata trees.
pub const REVIEWS_ROLE: &str = "#reviews";

/// The shortest wait between two tries of a load whose group another node holds.
const MIN_CLAIM_POLL: Duration = Duration::from_millis(5);

/// What the handles and the database thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The node this store writes for: its id is `documents.owner`, and it claims and fences.
    ownership: Ownership,
    /// Where loads claim their groups (never the commit connection).
    claims: claims::ClaimSession,
    /// How long one round, claim or read may take (see [`PgSettings::timeout`]).
    timeout: Duration,
    state: Mutex<State>,
    trees: Mutex<HashMap<String, Arc<TreeData>>>,
    sizes: Mutex<HashMap<String, u64>>,
    /// Whether the connection is up (for the readiness probe).
    up: AtomicBool,
    /// Whether nodes share the database ([`PgSettings::shared`]).
    shared: bool,
    /// Whether this store took the review role, so that this node serves reviews (a store whose
    /// database is not shared always does, whatever this says).
    serves_reviews: AtomicBool,
    /// Whether the server serves reviews from this store now: set once it switched to them
    /// after taking the role ([`PgStore::reviews_served`]), for `/metrics`.
    reviews_served: AtomicBool,
    /// Set once the store stopped writing for good (another Debrief took the database): loads
    /// claim nothing more either.
    stopped: std::sync::OnceLock<StoreError>,
    stats: Stats,
}

/// Everything written and not yet committed, and what this store holds of each document.
#[derive(Debug, Default)]
struct State {
    /// Pending log records per document, by sequence.
    records: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
    /// Pending metadata writes per tree, by key (`None` removes).
    meta: BTreeMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// The epoch each document was claimed with (loaded, or claimed with its group).
    claims: HashMap<String, i64>,
    /// The node `claims` were made by. A node that lost its lease is followed by a new one
    /// (the server registers again); what the earlier one claimed is let go as soon as the
    /// store sees the new id, whether or not a commit ran in between.
    claimed_by: String,
    /// Documents whose records were dropped (fenced, or their commit failed), with why: their
    /// flushes and appends fail until they are loaded again.
    failed: HashMap<String, StoreError>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    failed_commits: AtomicU64,
    fenced: AtomicU64,
    reconnects: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Stats {
    fn commit_took(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A request for a commit.
#[derive(Debug)]
struct FlushWaiter {
    done: oneshot::Sender<Result<(), StoreError>>,
    /// The document asking (its records must have been committed); `None` for metadata.
    doc: Option<Arc<str>>,
}

/// What a compaction reads: the snapshot and the records it folds.
#[derive(Debug, Default)]
struct CompactInput {
    snapshot: Option<Vec<u8>>,
    records: Vec<(u64, Vec<u8>)>,
}

type Reply<T> = std::sync::mpsc::SyncSender<Result<T, StoreError>>;

/// A synchronous call to the database thread; the caller waits for the reply.
#[derive(Debug)]
enum Call {
    /// Reads a document just claimed (see [`PgStore::load`]); answered to an async caller.
    Read {
        name: String,
        reply: oneshot::Sender<Result<StoredDoc, StoreError>>,
    },
    /// Reads a metadata tree.
    Tree {
        name: String,
        reply: Reply<BTreeMap<Vec<u8>, Vec<u8>>>,
    },
    /// Commits what is pending, then reads what a compaction below `upto` folds.
    CompactRead {
        name: String,
        upto: u64,
        reply: Reply<CompactInput>,
    },
    /// Writes a compacted snapshot and deletes the records it covers, behind the fence.
    CompactWrite {
        name: String,
        covers_below: u64,
        snapshot: Vec<u8>,
        reply: Reply<()>,
    },
    /// The bytes of a document's snapshot and records in the database.
    Size { name: String, reply: Reply<u64> },
    /// How many records of a document are in the database.
    Count { name: String, reply: Reply<u64> },
    /// Commits what is pending.
    Flush { reply: Reply<()> },
    /// Stops writing for good, saying why (the node serving reviews lost its lease).
    Stop { why: String },
    /// Reads every held slot (cluster mode, `reviews/anonymous/sealed.rs`).
    HeldRead {
        slots: std::ops::Range<u32>,
        reply: Reply<Vec<(u32, Vec<u8>)>>,
    },
    /// Makes the rows of held slots that have none yet.
    HeldMake {
        slots: Vec<(u32, Vec<u8>)>,
        reply: Reply<()>,
    },
    /// One tick of the held slots: rewrites these slots in one transaction.
    HeldTick {
        writes: Vec<(u32, Vec<u8>)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl PgStore {
    /// Connects (retrying for `settings.patience`), creates the tables when missing, and starts
    /// the database thread, writing for the node of `ownership`. Blocking.
    pub fn open(
        settings: &PgSettings,
        dir: &Path,
        ownership: Ownership,
    ) -> Result<(PgStore, PgFlusher), StoreError> {
        let config: tokio_postgres::Config = settings.url.parse().map_err(|e| {
            StoreError::Postgres(format!("the connection string does not parse: {e}"))
        })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Integrity(format!("{}: {e}", dir.display())))?;
        // sled keeps `conf` and `db` in the directory: a sled server's data would be left behind.
        if dir.join("conf").exists() || dir.join("db").exists() {
            return Err(StoreError::Postgres(format!(
                "{} holds a sled store: give --postgres a data directory of its own",
                dir.display()
            )));
        }
        std::fs::write(
            dir.join(MARKER),
            "This data directory belongs to a Debrief server that keeps its data in PostgreSQL.\n",
        )
        .map_err(|e| StoreError::Integrity(format!("{}: {e}", dir.display())))?;
        let mut config = config;
        worker::configure(&mut config, &ownership.owner.node(), settings.timeout);
        let claimed_by = ownership.owner.node();
        let shared = Arc::new(Shared {
            claims: claims::ClaimSession::new(config.clone()),
            timeout: settings.timeout,
            ownership,
            state: Mutex::new(State {
                claimed_by,
                ..State::default()
            }),
            trees: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            up: AtomicBool::new(false),
            shared: settings.shared,
            serves_reviews: AtomicBool::new(false),
            reviews_served: AtomicBool::new(false),
            stopped: std::sync::OnceLock::new(),
            stats: Stats::default(),
        });
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let (flushes, flushes_rx) = mpsc::channel(FLUSH_QUEUE_CAPACITY);
        let thread = worker::spawn(
            shared.clone(),
            config,
            settings.patience,
            calls_rx,
            flushes_rx,
        )?;
        Ok((
            PgStore {
                shared,
                calls,
                flushes,
                dir: Arc::from(dir),
            },
            PgFlusher { thread },
        ))
    }

    /// This store's id in the `documents` table: its node's.
    pub fn node(&self) -> String {
        self.shared.ownership.owner.node()
    }

    /// The data directory (what stays on local disk).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.to_path_buf()
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Call) -> Result<T, StoreError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.calls
            .send(make(reply))
            .map_err(|_| StoreError::FlusherGone)?;
        answer.recv().map_err(|_| StoreError::FlusherGone)?
    }

    /// Resolves, with why, once the node claiming for this store now is fenced (see
    /// [`owner::Owner::until_fenced`]): an open document asks before it is loaded, and closes
    /// its clients when it resolves.
    pub fn until_fenced(&self) -> owner::Sent<'static, String> {
        self.shared.ownership.owner.until_fenced()
    }

    /// Puts one record into the pending batch; its size. Refused for a document this store has
    /// not loaded, or whose records were dropped since (see the module documentation).
    pub fn append<U: AsRef<[u8]>>(
        &self,
        name: &str,
        seq: u64,
        updates: &[U],
    ) -> Result<u64, StoreError> {
        let record = encode_record(updates);
        let len = record.len() as u64;
        {
            let mut state = lock(&self.shared.state);
            if let Some(e) = state.failed.get(name) {
                return Err(e.clone());
            }
            if !state.claims.contains_key(name) {
                return Err(StoreError::Postgres(format!(
                    "{name}: appended before this node loaded it"
                )));
            }
            state
                .records
                .entry(name.to_owned())
                .or_default()
                .insert(seq, record);
        }
        if let Some(size) = lock(&self.shared.sizes).get_mut(name) {
            *size += len;
        }
        Ok(len)
    }

    /// Asks for a commit; the receiver completes once it is done (see
    /// [`crate::storage::store::Store::request_flush`]).
    pub async fn request_flush(
        &self,
        doc: Option<Arc<str>>,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.flushes
            .send(FlushWaiter { done, doc })
            .await
            .map_err(|_| StoreError::FlusherGone)?;
        Ok(rx)
    }

    /// Waits until everything written so far is committed.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.request_flush(None)
            .await?
            .await
            .map_err(|_| StoreError::FlusherGone)?
    }

    /// Commits everything pending now. Blocking; used at shutdown.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.call(|reply| Call::Flush { reply })
    }

    /// Reads every metadata tree opened so far again from the database, replacing what memory
    /// held: a node taking the review role over sees what the node before it committed.
    /// Blocking. Nothing writes the trees meanwhile (only the role's holder does).
    fn reload_trees(&self) -> Result<(), StoreError> {
        let trees: Vec<Arc<TreeData>> = lock(&self.shared.trees).values().cloned().collect();
        for tree in trees {
            let map = self.call(|reply| Call::Tree {
                name: tree.name.clone(),
                reply,
            })?;
            *tree.map.write().unwrap_or_else(|e| e.into_inner()) = map;
        }
        Ok(())
    }

    /// A metadata tree, read from the database the first time it is opened.
    pub fn meta_tree(&self, name: &str) -> Result<PgTree, StoreError> {
        let mut trees = lock(&self.shared.trees);
        if let Some(tree) = trees.get(name) {
            return Ok(PgTree {
                shared: self.shared.clone(),
                tree: tree.clone(),
            });
        }
        // Read under the lock: a tree is read once, and opening trees happens at start-up.
        let map = self.call(|reply| Call::Tree {
            name: name.to_owned(),
            reply,
        })?;
        let tree = Arc::new(TreeData {
            name: name.to_owned(),
            map: RwLock::new(map),
        });
        trees.insert(name.to_owned(), tree.clone());
        Ok(PgTree {
            shared: self.shared.clone(),
            tree,
        })
    }

    /// Folds the committed records below `upto` into the snapshot (the fold runs on the
    /// caller's thread), then writes the snapshot and deletes those records in one transaction
    /// behind the document's fence. Blocking.
    pub fn compact(
        &self,
        name: &str,
        upto: u64,
        fold: impl FnOnce(Option<&[u8]>, &[&[u8]]) -> Result<Vec<u8>, String>,
    ) -> Result<Compacted, StoreError> {
        let input = self.call(|reply| Call::CompactRead {
            name: name.to_owned(),
            upto,
            reply,
        })?;
        let Some(last) = input.records.last().map(|(seq, _)| *seq) else {
            return Ok(Compacted {
                entries: 0,
                entry_bytes: 0,
                snapshot_bytes: input.snapshot.as_ref().map_or(0, |s| s.len() as u64),
            });
        };
        let updates = updates_of(input.records.iter().map(|(_, r)| &r[..]))?;
        let snapshot = fold(input.snapshot.as_deref(), &updates).map_err(StoreError::Compaction)?;
        let snapshot_bytes = snapshot.len() as u64;
        self.call(|reply| Call::CompactWrite {
            name: name.to_owned(),
            covers_below: last + 1,
            snapshot,
            reply,
        })?;
        let folded: u64 = input.records.iter().map(|(_, r)| r.len() as u64).sum();
        let old_snapshot = input.snapshot.as_ref().map_or(0, |s| s.len() as u64);
        if let Some(size) = lock(&self.shared.sizes).get_mut(name) {
            *size = size.saturating_sub(folded + old_snapshot) + snapshot_bytes;
        }
        Ok(Compacted {
            entries: input.records.len() as u64,
            entry_bytes: input.records.iter().map(|(_, r)| r.len() as u64).sum(),
            snapshot_bytes,
        })
    }

    /// Bytes of a document's snapshot and records, committed or pending. Known from its load
    /// (or read from the database the first time for a document not loaded here), then kept up
    /// to date by appends and compactions.
    pub fn stored_bytes(&self, name: &str) -> Result<u64, StoreError> {
        if let Some(bytes) = lock(&self.shared.sizes).get(name) {
            return Ok(*bytes);
        }
        let stored = self.call(|reply| Call::Size {
            name: name.to_owned(),
            reply,
        })?;
        // A commit between the two reads may count a record twice or not at all; the quota
        // this serves is a bound, not an invoice, and the next compaction reads it again.
        let pending: u64 = lock(&self.shared.state)
            .records
            .get(name)
            .map_or(0, |r| r.values().map(|v| v.len() as u64).sum());
        let bytes = stored + pending;
        remember_size(&self.shared, name, bytes);
        Ok(bytes)
    }

    /// Records of a document, committed or pending (for metrics and tests).
    pub fn log_len(&self, name: &str) -> usize {
        let stored = self
            .call(|reply| Call::Count {
                name: name.to_owned(),
                reply,
            })
            .unwrap_or(0);
        let pending = lock(&self.shared.state)
            .records
            .get(name)
            .map_or(0, BTreeMap::len);
        stored as usize + pending
    }

    /// Whether this store holds a claim of the review role now (from the moment the claim
    /// committed, before the trees are read again), and has not stopped: the node is taking
    /// reviews over or serves them.
    pub fn holds_review_role(&self) -> bool {
        self.shared.stopped.get().is_none()
            && lock(&self.shared.state).claims.contains_key(REVIEWS_ROLE)
    }

    /// Whether the server serves reviews from this store now: always when the database is not
    /// shared; in a cluster, once it took the role and switched to the review domain
    /// ([`PgStore::reviews_served`]), until the store stops.
    pub fn reviews_open(&self) -> bool {
        !self.shared.shared || self.shared.reviews_served.load(Ordering::Acquire)
    }

    /// The server serves reviews from this store now (it took the role and switched to the
    /// review domain): `/metrics` says so from now on, until the store stops.
    pub fn reviews_served(&self) {
        if self.serves_reviews() && self.shared.stopped.get().is_none() {
            self.shared.reviews_served.store(true, Ordering::Release);
        }
    }

    /// Whether several nodes share the database ([`PgSettings::shared`]).
    pub fn is_shared(&self) -> bool {
        self.shared.shared
    }

    /// Stops writing for good, for `why`: what is pending is dropped, every document fails, and
    /// [`PgStore::stopped`] says why. For a node serving reviews that lost its lease: the trees
    /// in its memory may hold writes the next holder of the review role will never see, so it
    /// must not commit any of them under a new registration.
    pub fn stop_writing(&self, why: String) {
        let _ = self.calls.send(Call::Stop { why });
    }

    /// The sealed bytes of the held slots numbered in `slots`, by slot (its pieces put back
    /// together). A slot whose rows are not all there comes back shorter. Blocking.
    pub fn held_slots(
        &self,
        slots: std::ops::Range<u32>,
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        self.call(|reply| Call::HeldRead { slots, reply })
    }

    /// Makes the rows of these slots where there are none (another node may be making them at
    /// the same moment: rows already there are kept). Blocking.
    pub fn make_held_slots(&self, slots: Vec<(u32, Vec<u8>)>) -> Result<(), StoreError> {
        self.call(|reply| Call::HeldMake { slots, reply })
    }

    /// Rewrites these held slots (each as long as when it was made) in one transaction on the
    /// commit connection; done once it committed.
    pub async fn write_held_slots(&self, writes: Vec<(u32, Vec<u8>)>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call::HeldTick { writes, reply })
            .map_err(|_| StoreError::FlusherGone)?;
        answer.await.map_err(|_| StoreError::FlusherGone)?
    }

    /// Why the store stopped writing for good (another Debrief took the database's single-node
    /// lock after a reconnect, or this node lost the review role), once it has.
    pub fn stopped(&self) -> Option<StoreError> {
        self.shared.stopped.get().cloned()
    }

    /// Whether this node serves reviews. Always true when the database is not shared (a store
    /// that cannot take the single-node lock does not open); in a cluster, true once this node
    /// took the review role ([`PgStore::take_reviews`]) and until it stops (`docs/cluster.md`,
    /// "Reviews on one node at a time").
    pub fn serves_reviews(&self) -> bool {
        !self.shared.shared || self.shared.serves_reviews.load(Ordering::Acquire)
    }

    /// Fails while the connection to the database is down, or once the node is fenced.
    pub fn probe(&self) -> Result<(), StoreError> {
        if let Some(why) = self.shared.ownership.owner.fenced() {
            return Err(StoreError::NodeFenced(why));
        }
        if self.shared.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Postgres(
                "the database cannot be reached".to_owned(),
            ))
        }
    }

    /// The backend's lines for `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let s = &self.shared.stats;
        let mut out = String::new();
        let counters = [
            (
                "debrief_postgres_commits_total",
                "Group commits to PostgreSQL.",
                &s.commits,
            ),
            (
                "debrief_postgres_failed_commits_total",
                "Group commits that failed (their documents' owners stopped).",
                &s.failed_commits,
            ),
            (
                "debrief_postgres_fenced_commits_total",
                "Documents whose records were refused by the fence: another node claimed them.",
                &s.fenced,
            ),
            (
                "debrief_postgres_reconnects_total",
                "Connections to PostgreSQL made again after one was lost.",
                &s.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP debrief_postgres_up Whether the connection to PostgreSQL is up."
        );
        let _ = writeln!(out, "# TYPE debrief_postgres_up gauge");
        let _ = writeln!(
            out,
            "debrief_postgres_up {}",
            u8::from(self.shared.up.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP debrief_serves_reviews Whether this node serves reviews (it holds the review \
             role of the cluster, or the database is its own)."
        );
        let _ = writeln!(out, "# TYPE debrief_serves_reviews gauge");
        let _ = writeln!(
            out,
            "debrief_serves_reviews {}",
            u8::from(self.reviews_open())
        );
        let name = "debrief_postgres_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from BEGIN to the end of COMMIT of each group commit."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&s.latency_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = s.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = s.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        out.push_str(&self.shared.ownership.owner.render_metrics());
        out
    }
}

impl PgFlusher {
    /// Waits until the database thread ends (every [`PgStore`] handle is gone and what was
    /// pending is committed). Blocking.
    pub fn run(self) {
        if self.thread.join().is_err() {
            tracing::error!("the PostgreSQL thread panicked");
        }
    }
}

impl PgTree {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        match self.tree.map.read() {
            Ok(guard) => guard,
            // Every write below is whole before the lock is released.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        match self.tree.map.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records writes in the pending batch. Called with the tree's write lock held, so the batch
    /// receives a tree's writes in the order memory took them.
    fn stage(&self, writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) {
        let mut state = lock(&self.shared.state);
        let pending = state.meta.entry(self.tree.name.clone()).or_default();
        for (key, value) in writes {
            pending.insert(key, value);
        }
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut map = self.write();
        map.insert(key.to_vec(), value.to_vec());
        self.stage([(key.to_vec(), Some(value.to_vec()))]);
        Ok(())
    }

    /// Stores `value` under `key` unless the key exists; `false` when it did (atomic).
    pub fn put_new(&self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let mut map = self.write();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.to_vec(), value.to_vec());
        self.stage([(key.to_vec(), Some(value.to_vec()))]);
        Ok(true)
    }

    /// How many keys start with `prefix`.
    pub fn count_prefix(&self, prefix: &[u8]) -> Result<usize, StoreError> {
        Ok(prefixed(&self.read(), prefix).count())
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().get(key).cloned())
    }

    /// Removes `key`.
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut map = self.write();
        map.remove(key);
        self.stage([(key.to_vec(), None)]);
        Ok(())
    }

    /// Writes (`Some`) and removes (`None`) several keys atomically, in key order: one commit
    /// carries all of them.
    pub fn apply(&self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<(), StoreError> {
        let mut map = self.write();
        for (key, value) in &writes {
            match value {
                Some(v) => map.insert(key.clone(), v.clone()),
                None => map.remove(key),
            };
        }
        self.stage(writes);
        Ok(())
    }

    /// [`PgTree::apply`] to several trees at once: every tree's lock is held while the writes
    /// are staged under one lock of the pending batch, so one commit carries all of them or none.
    pub fn apply_together(parts: Vec<(&PgTree, TreeWrites)>) {
        // Locks taken in name order (no other caller holds two trees' locks).
        let mut parts = parts;
        parts.sort_by(|a, b| a.0.tree.name.cmp(&b.0.tree.name));
        let mut maps: Vec<_> = parts.iter().map(|(tree, _)| tree.write()).collect();
        for ((_, writes), map) in parts.iter().zip(maps.iter_mut()) {
            for (key, value) in writes {
                match value {
                    Some(v) => map.insert(key.clone(), v.clone()),
                    None => map.remove(key),
                };
            }
        }
        let Some(shared) = parts.first().map(|(tree, _)| tree.shared.clone()) else {
            return;
        };
        let mut state = lock(&shared.state);
        for (tree, writes) in parts {
            let pending = state.meta.entry(tree.tree.name.clone()).or_default();
            for (key, value) in writes {
                pending.insert(key, value);
            }
        }
        drop(state);
        drop(maps);
    }

    /// Every key, in order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.read().keys().cloned().collect())
    }

    /// The values of every key that starts with `prefix`, in key order.
    pub fn values_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(prefixed(&self.read(), prefix)
            .map(|(_, v)| v.clone())
            .collect())
    }

    /// The first `max` entries whose key starts with `prefix`, in key order.
    pub fn entries_with_prefix(&self, prefix: &[u8], max: usize) -> Result<Vec<Entry>, StoreError> {
        Ok(prefixed(&self.read(), prefix)
            .take(max)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

fn prefixed<'a>(
    map: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &'a [u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    map.range(prefix.to_vec()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl Shared {
    /// Once the node the store writes for has a new id (the server registered again after its
    /// node lost its lease), every document the earlier node claimed is let go: its pending
    /// records are dropped and its owner's next flush or append fails, as when the node was
    /// fenced. Called before every claim and every group commit.
    fn let_go_of_earlier_node(&self, node: &str) {
        let mut state = lock(&self.state);
        if state.claimed_by == node {
            return;
        }
        state.claimed_by = node.to_owned();
        let held_the_role = state.claims.contains_key(REVIEWS_ROLE);
        fence_all(
            &mut state,
            "the node that claimed them lost its lease; this server registered again as a new node",
        );
        drop(state);
        if held_the_role {
            // The trees in memory may hold writes the next holder of the role never sees.
            self.lose_reviews(
                "this node lost its lease while serving reviews; it registered again as a new node",
            );
        }
    }

    /// This node no longer holds the review role: it serves reviews no more and stops writing
    /// for good (the worker sees [`Shared::stopped`] at its next call or round).
    fn lose_reviews(&self, why: &str) {
        self.serves_reviews.store(false, Ordering::Release);
        self.reviews_served.store(false, Ordering::Release);
        let _ = self.stopped.set(StoreError::Postgres(why.to_owned()));
    }
}

/// Every document of `state` is let go because its node is fenced: pending records dropped,
/// the owner's next flush or append failing with the node's reason, nothing held any more.
fn fence_all(state: &mut State, why: &str) {
    let held: Vec<String> = state.claims.drain().map(|(name, _)| name).collect();
    if !held.is_empty() {
        tracing::warn!(
            documents = held.len(),
            reason = %why,
            "this node is fenced: the documents it held are dropped, their pending records not written"
        );
    }
    for name in held {
        state.records.remove(&name);
        state
            .failed
            .insert(name, StoreError::NodeFenced(why.to_owned()));
    }
}

/// Keeps a document's size for [`PgStore::stored_bytes`] (known from a load or a read).
fn remember_size(shared: &Shared, name: &str, bytes: u64) {
    let mut sizes = lock(&shared.sizes);
    if sizes.len() >= SIZE_CACHE_ENTRIES {
        sizes.clear();
    }
    sizes.insert(name.to_owned(), bytes);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        // Every change under these locks is whole before the lock is released.
        Err(poisoned) => poisoned.into_inner(),
    }
}
