//! The embedded backend (the default): durable storage of documents in sled: per document an append-only update log and a compacted
//! snapshot, plus group commit. This module knows keys and bytes only — never yrs.
//!
//! Key layout in the `docs` tree (the NUL cannot occur in a valid document name, so one
//! document's keys never prefix another's):
//! - `name \0 L seq(u64 BE)` → one record: the updates of one group commit, in the order they
//!   were accepted, each as a lib0 `varUint8Array` (one sled write per flush, not per update:
//!   sled's per-insert cost and write amplification dominated bursts). A record longer than
//!   [`CHUNK_BYTES`] is stored in parts instead, `name \0 L seq(u64 BE) part(u32 BE)`;
//! - `name \0 H` → `covers_below(u64 BE)` ++ `length(u64 BE)` ++ `chunks(u32 BE)`, the head of
//!   the snapshot: the state of every log entry whose sequence is below `covers_below`, stored
//!   as `chunks` values `name \0 C index(u32 BE)` of [`CHUNK_BYTES`] each (the last one shorter);
//! - `name \0 S` → `covers_below(u64 BE)` ++ snapshot: the layout before chunks, still read; the
//!   next compaction replaces it.
//!
//! Why chunks: sled stores a tree node larger than about 128 KiB (a quarter of its 512 KiB
//! segment) as a file of its own in `blobs/`, and in tests it never deleted one that a later
//! write replaced, not even across restarts: every compaction of an 8 MiB document left 8 MiB
//! behind (92 MB after ten). Values of at most [`CHUNK_BYTES`] keep every node (at most 17
//! entries before sled splits it) under that size, inside sled's segments, which its segment
//! cleaner reuses.
//!
//! Compaction writes the new snapshot and deletes the entries it covers in one sled batch, so a
//! crash at any point leaves either the old or the new layout, both loadable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use debrief_proto::lib0::write_var_uint8_array;
use tokio::sync::{mpsc, oneshot};

use crate::storage::integrity::{self, Manifest, OnDamage, State};
use crate::storage::types::{updates_of, Compacted, Damage, Entry, StoreError, StoredDoc};
use crate::storage::wal::{self, Wal};

/// Flush requests waiting for the flusher. Owners wait when it is full, which only happens if the
/// disk cannot keep up; that is the back-pressure we want.
const FLUSH_QUEUE_CAPACITY: usize = 4096;

/// A flush slower than this is logged: it delays every relay and acknowledgement it covers.
const SLOW_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

const LOG_TAG: u8 = b'L';
/// The snapshot of the layout before chunks (read, never written).
const SNAPSHOT_TAG: u8 = b'S';
const HEAD_TAG: u8 = b'H';
const CHUNK_TAG: u8 = b'C';

/// Largest value a document writes into sled (see the module documentation): 17 of them, with
/// keys of the longest document name, stay well under sled's blob threshold (about 128 KiB).
pub const CHUNK_BYTES: usize = 4096;

/// A metadata tree in sled (see [`crate::storage::store::Store::meta_tree`]).
#[derive(Debug, Clone)]
pub struct SledTree(sled::Tree, bool);

impl SledTree {
    fn writable(&self) -> Result<(), StoreError> {
        if self.1 {
            return Err(StoreError::ReadOnly);
        }
        Ok(())
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        self.0.insert(key, value)?;
        Ok(())
    }

    /// Stores `value` under `key` unless the key exists; `false` when it did (atomic).
    pub fn put_new(&self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        self.writable()?;
        Ok(self
            .0
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    /// How many keys start with `prefix`.
    pub fn count_prefix(&self, prefix: &[u8]) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.0.scan_prefix(prefix) {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(key)?.map(|v| v.to_vec()))
    }

    /// Removes `key`.
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        self.0.remove(key)?;
        Ok(())
    }

    /// Writes (`Some`) and removes (`None`) several keys atomically, in key order.
    pub fn apply(&self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        self.0.apply_batch(batch)?;
        Ok(())
    }

    /// Every key, in order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.0.iter().keys().map(|k| Ok(k?.to_vec())).collect()
    }

    /// The values of every key that starts with `prefix`, in key order.
    pub fn values_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.0
            .scan_prefix(prefix)
            .map(|kv| Ok(kv?.1.to_vec()))
            .collect()
    }

    /// The first `max` entries whose key starts with `prefix`, in key order.
    pub fn entries_with_prefix(&self, prefix: &[u8], max: usize) -> Result<Vec<Entry>, StoreError> {
        self.0
            .scan_prefix(prefix)
            .take(max)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.0
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }
}

/// A request for a flush.
#[derive(Debug)]
struct FlushWaiter {
    /// Answered once the flush is done.
    done: oneshot::Sender<Result<(), StoreError>>,
    /// Everything written to sled must be durable (metadata), not only document log records
    /// (which the write-ahead file makes durable).
    everything: bool,
}

/// Log records encoded for the write-ahead file, waiting for the next flush.
type Pending = Arc<Mutex<Vec<u8>>>;

/// The write-ahead file, shared by the flusher thread and [`SledStore::flush_now`]. Whoever holds
/// the lock takes the pending records and syncs them, so records taken by one flush are on disk
/// before anyone else can take the lock. `None` once a round has failed: from then on every
/// flush is a sled flush (on the flusher thread), which covers everything sled holds, the
/// records a failed round had taken included.
type SharedWal = Arc<Mutex<Option<Wal>>>;

/// Debrief's side of every sled flush it asks for (see [`crate::storage::integrity`]): a new generation
/// goes into sled before the flush and into the manifest after it. Behind a lock of its own, so
/// that two flushes (the flusher's and the one at shutdown) never interleave their steps.
#[derive(Debug)]
struct Flushes {
    dir: PathBuf,
    generation: u64,
    /// Opened read-only despite damage: the manifest is never rewritten.
    read_only: bool,
}

type SharedFlushes = Arc<Mutex<Flushes>>;

/// Handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    docs: sled::Tree,
    flush_tx: mpsc::Sender<FlushWaiter>,
    pending: Pending,
    wal: SharedWal,
    flushes: SharedFlushes,
    read_only: bool,
    dir: Arc<Path>,
    sizes: SizeCache,
}

/// Sizes of documents read by [`SledStore::stored_bytes`], each forgotten when its document is
/// written, so that the review quota, which asks for the sizes of a review's other documents on
/// every write, reads each from sled (a scan of its log) only once per change.
type SizeCache = Arc<Mutex<HashMap<String, u64>>>;

/// Sizes kept at most; all are forgotten past it.
const SIZE_CACHE_ENTRIES: usize = 4096;

/// The group-commit task. Returned by [`SledStore::open`] so the caller owns and awaits it; it ends
/// once every [`SledStore`] handle is dropped.
#[derive(Debug)]
pub struct SledFlusher {
    db: sled::Db,
    rx: mpsc::Receiver<FlushWaiter>,
    pending: Pending,
    wal: SharedWal,
    flushes: SharedFlushes,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, refusing a damaged one (see
    /// [`SledStore::open_checked`]).
    pub fn open(dir: &Path) -> Result<(SledStore, SledFlusher), StoreError> {
        let (store, flusher, _) = SledStore::open_checked(dir, OnDamage::Refuse)?;
        Ok((store, flusher))
    }

    /// Opens (or creates) the store in `dir` after checking it against its manifest and its
    /// write-ahead segments (see [`crate::storage::integrity`]). Damage is refused with
    /// [`StoreError::Damaged`], or with [`OnDamage::ReadOnly`] the store opens read-only and the
    /// damage is returned. Either way the damaged files are first copied to
    /// `damaged/<time>/`, and nothing is deleted.
    ///
    /// Log records left in the write-ahead file by a crash are put back into sled first (see
    /// [`crate::storage::wal`]).
    pub fn open_checked(
        dir: &Path,
        on_damage: OnDamage,
    ) -> Result<(SledStore, SledFlusher, Option<Damage>), StoreError> {
        crate::storage::postgres::refuse_marked(dir)?;
        std::fs::create_dir_all(dir).map_err(integrity_error)?;
        let wal_dir = dir.join("wal");
        let inspected = inspect(dir, &wal_dir)?;
        let mut lines = inspected.lines;
        if !lines.is_empty() && on_damage == OnDamage::Refuse {
            return Err(refuse(dir, lines, inspected.staged.as_deref()));
        }
        let db = match open_db(dir) {
            Ok(db) => db,
            // Files sled cannot read at all (a lock held by another process is not that).
            Err(StoreError::Sled(e)) if inspected.staged.is_some() && !is_lock_error(&e) => {
                // sled's text ends in an empty backtrace, which says nothing.
                let why = e.to_string();
                let why = why.split(" backtrace ").next().unwrap_or_default();
                lines.push(format!("sled cannot open the store: {why}"));
                return Err(refuse(dir, lines, inspected.staged.as_deref()));
            }
            Err(e) => return Err(e),
        };
        if let (Some(m), None) = (&inspected.manifest, &inspected.staged) {
            // A clean stop whose files are intact; the generation must still agree.
            lines.extend(generation_damage(&db, m)?);
        } else if inspected.staged.is_some() {
            match &inspected.manifest {
                Some(m) => lines.extend(generation_damage(&db, m)?),
                None if lines.is_empty() => {
                    if let Some(g) = integrity::stored_generation(&db)? {
                        lines.push(format!(
                            "manifest is missing, but the store was written by this version \
                             (generation {g}): the manifest was removed"
                        ));
                    }
                }
                None => {}
            }
        }
        let damage = if lines.is_empty() {
            if let Some(staged) = &inspected.staged {
                std::fs::remove_dir_all(staged).map_err(integrity_error)?;
            }
            None
        } else if on_damage == OnDamage::Refuse {
            drop(db);
            return Err(refuse(dir, lines, inspected.staged.as_deref()));
        } else {
            let kept = integrity::keep_aside(dir, &lines, inspected.staged.as_deref())
                .map_err(integrity_error)?;
            Some(Damage { lines, kept })
        };
        let read_only = damage.is_some();
        let docs = db.open_tree("docs")?;
        let generation = inspected
            .manifest
            .as_ref()
            .map_or(0, |m| m.generation)
            .max(integrity::stored_generation(&db)?.unwrap_or(0));
        let flushes = SharedFlushes::new(Mutex::new(Flushes {
            dir: dir.to_path_buf(),
            generation,
            read_only,
        }));
        if inspected.manifest.is_none() && !read_only {
            // Before the first flush writes a generation into sled: a store with a generation
            // and no manifest is then always one whose manifest was removed.
            running_manifest(dir, generation, None).map_err(integrity_error)?;
        }
        replay(&db, &docs, &wal_dir, &flushes)?;
        let wal = if read_only {
            None
        } else {
            let wal = Wal::create(&wal_dir).map_err(wal_error)?;
            sled_flush(&db, &flushes, Some(wal.generation()))?;
            Some(wal)
        };
        let (flush_tx, rx) = mpsc::channel(FLUSH_QUEUE_CAPACITY);
        let pending = Pending::default();
        let wal = SharedWal::new(Mutex::new(wal));
        let flusher = SledFlusher {
            db: db.clone(),
            rx,
            pending: pending.clone(),
            wal: wal.clone(),
            flushes: flushes.clone(),
        };
        let store = SledStore {
            db,
            docs,
            flush_tx,
            pending,
            wal,
            flushes,
            read_only,
            dir: Arc::from(dir),
            sizes: SizeCache::default(),
        };
        Ok((store, flusher, damage))
    }

    /// Whether the store was opened read-only because it is damaged.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.to_path_buf()
    }

    /// The sled database (for backups: every tree, read while the server runs).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Reads a document's snapshot and log.
    pub fn load(&self, name: &str) -> Result<StoredDoc, StoreError> {
        let mut out = StoredDoc::default();
        let snapshot = read_snapshot(&self.docs, name)?;
        let covers_below = snapshot.as_ref().map_or(0, |s| s.covers_below);
        out.snapshot = snapshot.map(|s| s.bytes);
        out.next_seq = covers_below;
        for (seq, _, record) in read_log(&self.docs, name)? {
            if seq >= covers_below {
                out.next_seq = seq + 1;
                out.log.push((seq, record));
            }
        }
        Ok(out)
    }

    /// Appends one record of updates to a document's log and returns its size. Not durable
    /// until a flush requested after this call has completed.
    pub fn append<U: AsRef<[u8]>>(
        &self,
        name: &str,
        seq: u64,
        updates: &[U],
    ) -> Result<u64, StoreError> {
        let mut record = Vec::with_capacity(updates.iter().map(|u| u.as_ref().len() + 4).sum());
        for u in updates {
            write_var_uint8_array(&mut record, u.as_ref());
        }
        let len = record.len() as u64;
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        // Into sled first: the write-ahead file may only hold what sled already has in memory,
        // so that a checkpoint (a sled flush) covers every record of the older segments. A
        // record that fits one value is one plain insert: sled's batches cost far more (bench
        // scenarios 1, 2 and 6 took about 1.6 times the CPU per delivery with a batch for every
        // record).
        if record.len() <= CHUNK_BYTES {
            self.docs.insert(log_key(name, seq), record.as_slice())?;
        } else {
            self.docs.apply_batch(record_batch(name, seq, &record))?;
        }
        lock_sizes(&self.sizes).remove(name);
        let mut pending = lock(&self.pending);
        wal::encode(&mut pending, name, seq, &record);
        Ok(len)
    }

    /// Asks for a flush and returns a receiver that completes once every log record appended
    /// before this call is on disk. Concurrent requests share one flush (group commit).
    pub async fn request_flush(
        &self,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        self.flush_request(false).await
    }

    async fn flush_request(
        &self,
        everything: bool,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.flush_tx
            .send(FlushWaiter { done, everything })
            .await
            .map_err(|_| StoreError::FlusherGone)?;
        Ok(rx)
    }

    /// Syncs the pending log records to the write-ahead file on the calling thread, when no
    /// other flush is running: `None` when one is, or when this flush would need a sled flush (a
    /// checkpoint, or the file was given up), and the caller should [`SledStore::request_flush`]
    /// instead. `Some(Ok)` means every log record appended before this call is on disk.
    ///
    /// Why on the caller's thread: handing a flush to the flusher thread and being woken by it
    /// costs two thread wake-ups, 15–20 µs of CPU each on the test machine, a third of what the
    /// sync itself costs; and the frames waiting for the flush cannot leave before it is done
    /// anyway. It blocks the caller's thread for one sync. Only one thread at a time can be in
    /// one (the lock); a second caller meanwhile queues for the flusher thread, which batches
    /// whatever accumulates (group commit).
    pub fn flush_now(&self) -> Option<Result<(), StoreError>> {
        let mut wal = match self.wal.try_lock() {
            Ok(wal) => wal,
            Err(std::sync::TryLockError::WouldBlock) => return None,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => recover(&self.wal, poisoned),
        };
        let taken = {
            // Checked and taken under one lock: records appended in between would be taken
            // unchecked.
            let mut pending = lock(&self.pending);
            let len = pending.len() as u64;
            if !wal.as_ref().is_some_and(|w| appends(w, len)) {
                return None;
            }
            std::mem::take(&mut *pending)
        };
        Some(timed_round(
            &Round {
                db: &self.db,
                flushes: &self.flushes,
            },
            taken,
            &mut wal,
            false,
            1,
        ))
    }

    /// Waits until everything written so far, metadata included, is flushed (a sled flush,
    /// shared with any other request waiting at that moment).
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.flush_request(true)
            .await?
            .await
            .map_err(|_| StoreError::FlusherGone)?
    }

    /// A tree of its own for metadata (reviews, sessions): keys and values are bytes the caller
    /// encodes; writes become durable with the next flush.
    pub fn meta_tree(&self, name: &str) -> Result<SledTree, StoreError> {
        Ok(SledTree(
            self.db.open_tree(format!("meta.{name}"))?,
            self.read_only,
        ))
    }

    /// Folds the log records below `upto` into the snapshot with `fold(snapshot, updates)`,
    /// then writes the new snapshot and deletes those records in one atomic batch. Blocking: run
    /// it on a blocking thread.
    pub fn compact(
        &self,
        name: &str,
        upto: u64,
        fold: impl FnOnce(Option<&[u8]>, &[&[u8]]) -> Result<Vec<u8>, String>,
    ) -> Result<Compacted, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let old = read_snapshot(&self.docs, name)?;
        let covered = old.as_ref().map_or(0, |s| s.covers_below);
        let mut keys = Vec::new();
        let mut seqs = Vec::new();
        let mut records = Vec::new();
        for (seq, parts, record) in read_log(&self.docs, name)? {
            if seq >= upto {
                break;
            }
            keys.extend(parts);
            if seq >= covered {
                seqs.push(seq);
                records.push(record);
            }
        }
        if seqs.is_empty() {
            return Ok(Compacted {
                entries: 0,
                entry_bytes: 0,
                snapshot_bytes: old.as_ref().map_or(0, |s| s.bytes.len() as u64),
            });
        }
        let updates = updates_of(records.iter().map(|r| &r[..]))?;
        let snapshot =
            fold(old.as_ref().map(|s| &s.bytes[..]), &updates).map_err(StoreError::Compaction)?;
        let covers_below = seqs.last().map_or(upto, |last| last + 1);
        let mut batch = sled::Batch::default();
        let chunks = write_snapshot(&mut batch, name, covers_below, &snapshot);
        for stale in chunks..old.as_ref().map_or(0, |s| s.chunks) {
            batch.remove(chunk_key(name, stale));
        }
        if old.as_ref().is_some_and(|s| s.legacy) {
            batch.remove(snapshot_key(name));
        }
        for key in keys {
            batch.remove(key);
        }
        self.docs.apply_batch(batch)?;
        lock_sizes(&self.sizes).remove(name);
        Ok(Compacted {
            entries: seqs.len() as u64,
            entry_bytes: records.iter().map(|r| r.len() as u64).sum(),
            snapshot_bytes: snapshot.len() as u64,
        })
    }

    /// Bytes a document holds in the store, counted as the document size limit counts them: its
    /// snapshot plus its log records. Reuses a size read less than a second ago.
    pub fn stored_bytes(&self, name: &str) -> Result<u64, StoreError> {
        if let Some(bytes) = lock_sizes(&self.sizes).get(name) {
            return Ok(*bytes);
        }
        let snapshot = match self.docs.get(head_key(name))? {
            Some(head) => split_head(&head).map_or(0, |(_, len, _)| len),
            None => self
                .docs
                .get(snapshot_key(name))?
                .map_or(0, |v| v.len().saturating_sub(8) as u64),
        };
        let mut log = 0u64;
        for item in self.docs.scan_prefix(log_prefix(name)) {
            log += item?.1.len() as u64;
        }
        let bytes = snapshot + log;
        let mut sizes = lock_sizes(&self.sizes);
        if sizes.len() >= SIZE_CACHE_ENTRIES {
            sizes.clear();
        }
        sizes.insert(name.to_owned(), bytes);
        Ok(bytes)
    }

    /// Number of log entries stored for a document (for metrics and tests).
    pub fn log_len(&self, name: &str) -> usize {
        read_log(&self.docs, name).map_or(0, |log| log.len())
    }

    /// A cheap read that fails when the store is unusable (for the readiness probe).
    pub fn probe(&self) -> Result<(), StoreError> {
        self.docs.first()?;
        Ok(())
    }

    /// Flushes everything now, bypassing the group-commit queue. Blocking; used at shutdown.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        let wal = lock_wal(&self.wal);
        let wal_from = wal.as_ref().map(Wal::generation);
        sled_flush(&self.db, &self.flushes, wal_from)
    }
}

impl SledFlusher {
    /// Serves flush requests until every [`SledStore`] handle is gone. Each round takes every
    /// request waiting at that moment and answers all of them with one flush (see `round`).
    ///
    /// Blocking: run it on a thread of its own (`spawn_blocking`). sled's `flush_async` hands
    /// every flush to sled's thread pool, whose queue wakes all its idle threads per job; under
    /// many small flushes that thundering herd cost more CPU than the flushes themselves.
    pub fn run(mut self) {
        let mut waiters: Vec<FlushWaiter> = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            waiters.push(first);
            while let Ok(more) = self.rx.try_recv() {
                waiters.push(more);
            }
            let everything = waiters.iter().any(|w| w.everything);
            let mut wal = lock_wal(&self.wal);
            // Taken under the write-ahead lock: every record in it is already in sled's memory.
            let taken = std::mem::take(&mut *lock(&self.pending));
            let result = timed_round(
                &Round {
                    db: &self.db,
                    flushes: &self.flushes,
                },
                taken,
                &mut wal,
                everything,
                waiters.len(),
            );
            drop(wal);
            for w in waiters.drain(..) {
                // A waiter that went away (its document closed) needs no answer.
                let _ = w.done.send(result.clone());
            }
        }
        // Every handle is gone: leave sled complete, then the segments are not needed, and the
        // manifest can record the store exactly.
        if let Err(e) = close_clean(&self.db, &self.flushes, &self.wal) {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// [`round`], logging a slow or failed one (`requests`: how many flush requests it answers).
/// After a failure the write-ahead file is given up: the records this round took are not on
/// disk, and a later round would not see them, but a sled flush covers them.
fn timed_round(
    db: &Round<'_>,
    taken: Vec<u8>,
    wal: &mut Option<Wal>,
    everything: bool,
    requests: usize,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let result = round(db, taken, wal, everything);
    let elapsed = started.elapsed();
    if elapsed >= SLOW_FLUSH {
        // Every frame waiting for this flush waited this long too.
        tracing::warn!(
            elapsed_ms = elapsed.as_millis() as u64,
            requests,
            "slow group-commit flush"
        );
    }
    if let Err(e) = &result {
        tracing::error!(error = %e, "group commit flush failed");
        if wal.take().is_some() {
            tracing::error!("flushing sled for every group commit from now on");
        }
    }
    result
}

/// One group commit: the log records taken from the pending buffer go to the write-ahead file
/// (or, when `everything` must be durable, sled is flushed, which covers them too). The caller
/// took them while holding the write-ahead lock (`wal`), and holds it for the whole round.
fn round(
    db: &Round<'_>,
    pending: Vec<u8>,
    wal: &mut Option<Wal>,
    everything: bool,
) -> Result<(), StoreError> {
    let Some(w) = wal.as_mut() else {
        return db.flush(None);
    };
    if everything || pending.len() as u64 >= wal::SEGMENT_BYTES {
        return db.flush(Some(w.generation()));
    }
    if pending.is_empty() {
        return Ok(());
    }
    if !appends(w, pending.len() as u64) {
        // Checkpoint: a new segment, then a sled flush that covers every older one (and the
        // pending records), then the older ones can go.
        if let Err(e) = w.rotate() {
            return wal_failed(db, wal, e);
        }
        db.flush(Some(w.generation()))?;
        if let Err(e) = w.remove_older() {
            tracing::warn!(error = %e, "could not remove old write-ahead segments");
        }
        return Ok(());
    }
    match w.append(&pending) {
        Ok(()) => Ok(()),
        Err(e) => wal_failed(db, wal, e),
    }
}

/// Whether `len` bytes of records go into the current segment as a plain append: neither a sled
/// flush (records that big) nor a checkpoint (the segment would overflow) is needed.
fn appends(w: &Wal, len: u64) -> bool {
    len < wal::SEGMENT_BYTES && w.len() + len <= wal::SEGMENT_BYTES
}

/// A write-ahead failure may leave a partial record behind, after which nothing could be
/// replayed; so the file is given up and sled flushes take over (durable, only slower).
fn wal_failed(db: &Round<'_>, wal: &mut Option<Wal>, e: std::io::Error) -> Result<(), StoreError> {
    tracing::error!(error = %e, "write-ahead file failed; flushing sled for every group commit from now on");
    *wal = None;
    db.flush(None)
}

/// What a round flushes: sled, with Debrief's integrity record.
struct Round<'a> {
    db: &'a sled::Db,
    flushes: &'a SharedFlushes,
}

impl Round<'_> {
    fn flush(&self, wal_from: Option<u64>) -> Result<(), StoreError> {
        sled_flush(self.db, self.flushes, wal_from)
    }
}

/// A sled flush with the integrity record around it: a new generation into sled, the flush,
/// then a running manifest with that generation and `wal_from`, the oldest write-ahead segment
/// whose records sled may not hold on disk yet.
fn sled_flush(
    db: &sled::Db,
    flushes: &SharedFlushes,
    wal_from: Option<u64>,
) -> Result<(), StoreError> {
    let mut f = lock_flushes(flushes);
    if f.read_only {
        db.flush()?;
        return Ok(());
    }
    let next = f.generation + 1;
    integrity::store_generation(db, next)?;
    db.flush()?;
    f.generation = next;
    running_manifest(&f.dir, next, wal_from).map_err(integrity_error)
}

fn running_manifest(dir: &Path, generation: u64, wal_from: Option<u64>) -> std::io::Result<()> {
    Manifest {
        state: State::Running,
        generation,
        wal_from,
        held: held_len(dir),
        files: Vec::new(),
        trees: Vec::new(),
    }
    .write(dir)
}

fn held_len(dir: &Path) -> Option<u64> {
    std::fs::metadata(dir.join("held").join("slots"))
        .ok()
        .map(|m| m.len())
}

/// The end of a clean stop: a flush, the segments removed (sled holds their records), and a
/// clean manifest with the size and digest of every sled file and tree.
fn close_clean(db: &sled::Db, flushes: &SharedFlushes, wal: &SharedWal) -> Result<(), StoreError> {
    sled_flush(db, flushes, None)?;
    let f = lock_flushes(flushes);
    if f.read_only {
        return Ok(());
    }
    if let Some(wal) = lock_wal(wal).take() {
        if let Err(e) = wal.remove_all() {
            tracing::warn!(error = %e, "could not remove the write-ahead segments");
            return Ok(());
        }
    }
    let trees = integrity::tree_digests(db)?;
    let files = integrity::hash_files(&f.dir).map_err(integrity_error)?;
    Manifest {
        state: State::Clean,
        generation: f.generation,
        wal_from: None,
        held: held_len(&f.dir),
        files,
        trees,
    }
    .write(&f.dir)
    .map_err(integrity_error)
}

fn lock_sizes(sizes: &SizeCache) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
    match sizes.lock() {
        Ok(guard) => guard,
        // Every insert and removal is whole; a size is never half written.
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn lock_flushes(flushes: &SharedFlushes) -> std::sync::MutexGuard<'_, Flushes> {
    match flushes.lock() {
        Ok(guard) => guard,
        // The generation is advanced only after a flush succeeded; a panic leaves it valid.
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn integrity_error(e: std::io::Error) -> StoreError {
    StoreError::Integrity(e.to_string())
}

/// What [`inspect`] found before sled opened the files.
struct Inspected {
    manifest: Option<Manifest>,
    /// Damage found so far.
    lines: Vec<String>,
    /// A copy of sled's files made before sled opens them, when damage cannot be ruled out
    /// without opening them (sled rewrites what it cannot read).
    staged: Option<PathBuf>,
}

/// Checks the data directory against its manifest without opening sled, and stages a copy of
/// sled's files when opening them is needed to tell.
fn inspect(dir: &Path, wal_dir: &Path) -> Result<Inspected, StoreError> {
    let mut lines = Vec::new();
    let manifest = match Manifest::read(dir) {
        Ok(m) => m,
        Err(line) => {
            lines.push(line);
            None
        }
    };
    let db_exists = dir.join("db").exists();
    let mut stage = false;
    match &manifest {
        Some(m) if !db_exists => lines.push(format!(
            "sled file db is missing (the manifest records generation {} of the store)",
            m.generation
        )),
        Some(m) if m.state == State::Clean => {
            let found = integrity::hash_files(dir).map_err(integrity_error)?;
            let differ = integrity::compare_files(&m.files, &found);
            if !differ.is_empty() {
                stage = true;
                lines.extend(tree_damage(dir, m, differ)?);
            }
        }
        Some(_) => stage = true,
        None => stage = db_exists,
    }
    if let Some(m) = &manifest {
        if let (Some(len), None) = (m.held, held_len(dir)) {
            lines.push(format!(
                "held/slots is missing (the manifest records it at {len} bytes)"
            ));
        }
        if let Some(g) = m.wal_from {
            let name = format!("{g:016x}.seg");
            if !wal_dir.join(&name).exists() {
                lines.push(format!(
                    "write-ahead segment wal/{name} is missing (the manifest says it holds \
                     records sled may not have on disk)"
                ));
            }
        }
    }
    lines.extend(wal_damage(wal_dir)?);
    let staged = if stage {
        let staging = integrity::staging(dir);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(integrity_error)?;
        }
        integrity::copy_tree(dir, &staging, true).map_err(integrity_error)?;
        Some(staging)
    } else {
        None
    };
    Ok(Inspected {
        manifest,
        lines,
        staged,
    })
}

/// When sled's files differ from a clean stop's record: opens a scratch copy of them and
/// compares its trees with the record. Only a difference in the trees is damage (sled may
/// rewrite parts of its files without changing what they hold).
fn tree_damage(dir: &Path, m: &Manifest, differ: Vec<String>) -> Result<Vec<String>, StoreError> {
    let scratch = dir.join(integrity::DAMAGED).join(".scratch");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(integrity_error)?;
    }
    integrity::copy_tree(dir, &scratch, true).map_err(integrity_error)?;
    let found = match sled::Config::new().path(&scratch).open() {
        Ok(db) => integrity::tree_digests(&db).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = std::fs::remove_dir_all(&scratch) {
        tracing::warn!(error = %e, path = %scratch.display(), "could not remove a scratch copy");
    }
    match found {
        Err(e) => Ok(differ
            .into_iter()
            .chain([format!("sled cannot open the store: {e}")])
            .collect()),
        Ok(trees) => {
            let trees = integrity::compare_trees(&m.trees, &trees);
            if trees.is_empty() {
                tracing::warn!(
                    "sled's files differ from the last clean stop, but every tree holds what it \
                     held then"
                );
                return Ok(Vec::new());
            }
            Ok(differ.into_iter().chain(trees).collect())
        }
    }
}

/// A store whose generation is below the manifest's lost writes that a flush had completed.
fn generation_damage(db: &sled::Db, m: &Manifest) -> Result<Vec<String>, StoreError> {
    let stored = integrity::stored_generation(db)?.unwrap_or(0);
    if stored < m.generation {
        return Ok(vec![format!(
            "the store is at generation {stored}, older than generation {} recorded in the \
             manifest: sled lost writes that had been flushed",
            m.generation
        )]);
    }
    Ok(Vec::new())
}

/// Damage in the middle of a write-ahead segment (a torn tail is not damage).
fn wal_damage(wal_dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    for (path, scanned) in wal::scan_all(wal_dir).map_err(wal_error)? {
        if let wal::End::Damaged { at, after } = scanned.end {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            lines.push(format!(
                "write-ahead segment wal/{name}: the record at byte {at} is damaged, and {after} \
                 acknowledged records follow it"
            ));
        }
    }
    Ok(lines)
}

/// Keeps the damaged files aside and builds the refusal.
fn refuse(dir: &Path, lines: Vec<String>, staged: Option<&Path>) -> StoreError {
    match integrity::keep_aside(dir, &lines, staged) {
        Ok(kept) => StoreError::Damaged(Damage { lines, kept }),
        Err(e) => StoreError::Integrity(format!(
            "{} (and copying the damaged files aside failed: {e})",
            lines.join("; ")
        )),
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, Vec<u8>> {
    match pending.lock() {
        Ok(guard) => guard,
        // Encoding into the buffer cannot panic halfway; its contents are whole records.
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn lock_wal(wal: &SharedWal) -> std::sync::MutexGuard<'_, Option<Wal>> {
    match wal.lock() {
        Ok(guard) => guard,
        Err(poisoned) => recover(wal, poisoned),
    }
}

/// A panic during a round may have left a torn record in the segment, behind which later records
/// could not be replayed: the file is given up, and sled flushes take over.
fn recover<'a>(
    wal: &'a SharedWal,
    poisoned: std::sync::PoisonError<std::sync::MutexGuard<'a, Option<Wal>>>,
) -> std::sync::MutexGuard<'a, Option<Wal>> {
    let mut guard = poisoned.into_inner();
    if guard.take().is_some() {
        tracing::error!(
            "a group commit panicked; flushing sled for every group commit from now on"
        );
    }
    wal.clear_poison();
    guard
}

fn wal_error(e: std::io::Error) -> StoreError {
    StoreError::Wal(e.to_string())
}

/// Puts the log records of write-ahead segments left by a crash back into sled, flushes sled,
/// and deletes the segments. A record already folded into its document's snapshot is skipped.
/// A read-only store (damaged) gets the records too, those after a damaged one included, but
/// the segments are kept.
fn replay(
    db: &sled::Db,
    docs: &sled::Tree,
    wal_dir: &Path,
    flushes: &SharedFlushes,
) -> Result<(), StoreError> {
    let scanned = wal::scan_all(wal_dir).map_err(wal_error)?;
    if scanned.is_empty() {
        return Ok(());
    }
    let mut covers: HashMap<String, u64> = HashMap::new();
    let mut replayed = 0usize;
    for (path, segment) in &scanned {
        if let wal::End::TornTail { at } = segment.end {
            tracing::warn!(
                segment = %path.display(),
                at,
                "a write-ahead segment ends in an incomplete record (a write cut short, never acknowledged)"
            );
        }
        for r in &segment.records {
            let below = match covers.get(&r.name) {
                Some(below) => *below,
                None => {
                    let below = covers_below(docs, &r.name)?;
                    covers.insert(r.name.clone(), below);
                    below
                }
            };
            if r.seq >= below {
                docs.apply_batch(record_batch(&r.name, r.seq, &r.record))?;
            }
            replayed += 1;
        }
    }
    if lock_flushes(flushes).read_only {
        tracing::info!(
            records = replayed,
            "replayed the write-ahead file; its segments are kept (read-only)"
        );
        return Ok(());
    }
    sled_flush(db, flushes, None)?;
    for (path, _) in scanned {
        std::fs::remove_file(path).map_err(wal_error)?;
    }
    tracing::info!(records = replayed, "replayed the write-ahead file");
    Ok(())
}

/// How long opening waits for the directory's lock: sled releases it from its background thread
/// a moment after the previous instance in this process closed (a restart), and another process
/// holding it should fail with a clear error, not hang.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
}

fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir).open() {
            Err(e) if is_lock_error(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn log_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 2);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.push(LOG_TAG);
    k
}

fn log_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = log_prefix(name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn snapshot_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 2);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.push(SNAPSHOT_TAG);
    k
}

fn head_key(name: &str) -> Vec<u8> {
    let mut k = snapshot_key(name);
    if let Some(tag) = k.last_mut() {
        *tag = HEAD_TAG;
    }
    k
}

fn chunk_prefix(name: &str) -> Vec<u8> {
    let mut k = snapshot_key(name);
    if let Some(tag) = k.last_mut() {
        *tag = CHUNK_TAG;
    }
    k
}

fn chunk_key(name: &str, index: u32) -> Vec<u8> {
    let mut k = chunk_prefix(name);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The batch that stores one log record: under its key, or in parts of at most
/// [`CHUNK_BYTES`] (see the module documentation). Replaces any parts stored before (a replay).
fn record_batch(name: &str, seq: u64, record: &[u8]) -> sled::Batch {
    let mut batch = sled::Batch::default();
    let key = log_key(name, seq);
    if record.len() <= CHUNK_BYTES {
        batch.insert(key, record);
        return batch;
    }
    for (part, bytes) in (0u32..).zip(record.chunks(CHUNK_BYTES)) {
        let mut k = key.clone();
        k.extend_from_slice(&part.to_be_bytes());
        batch.insert(k, bytes);
    }
    batch
}

/// Every log record of a document, in sequence order: its sequence, its keys and its bytes.
fn read_log(docs: &sled::Tree, name: &str) -> Result<Vec<LogRecord>, StoreError> {
    let prefix = log_prefix(name);
    let mut out: Vec<LogRecord> = Vec::new();
    // Parts of a record being joined: its sequence, keys, bytes and the part expected next.
    let mut parts: Option<(u64, Vec<sled::IVec>, Vec<u8>, u32)> = None;
    for item in docs.scan_prefix(&prefix) {
        let (k, v) = item?;
        let tail = &k[prefix.len()..];
        let seq = tail
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt(name, "log key"))?;
        match tail.len() {
            8 => {
                if let Some((s, keys, bytes, _)) = parts.take() {
                    out.push((s, keys, bytes.into()));
                }
                out.push((seq, vec![k], v));
            }
            12 => {
                let part = u32::from_be_bytes([tail[8], tail[9], tail[10], tail[11]]);
                match &mut parts {
                    Some((s, keys, bytes, next)) if *s == seq && *next == part => {
                        keys.push(k);
                        bytes.extend_from_slice(&v);
                        *next += 1;
                    }
                    _ if part == 0 => {
                        if let Some((s, keys, bytes, _)) = parts.take() {
                            out.push((s, keys, bytes.into()));
                        }
                        parts = Some((seq, vec![k], v.to_vec(), 1));
                    }
                    _ => return Err(corrupt(name, "log record part out of order")),
                }
            }
            _ => return Err(corrupt(name, "log key")),
        }
    }
    if let Some((s, keys, bytes, _)) = parts {
        out.push((s, keys, bytes.into()));
    }
    Ok(out)
}

/// A log record as read: sequence, the keys holding it, its bytes.
type LogRecord = (u64, Vec<sled::IVec>, sled::IVec);

/// A stored snapshot.
struct Snapshot {
    covers_below: u64,
    bytes: sled::IVec,
    /// Chunks it is stored in (0 in the layout before chunks).
    chunks: u32,
    /// Stored in the layout before chunks.
    legacy: bool,
}

fn read_snapshot(docs: &sled::Tree, name: &str) -> Result<Option<Snapshot>, StoreError> {
    let Some(head) = docs.get(head_key(name))? else {
        let Some(v) = docs.get(snapshot_key(name))? else {
            return Ok(None);
        };
        let (covers, _) = split_snapshot(&v).ok_or_else(|| corrupt(name, "snapshot"))?;
        return Ok(Some(Snapshot {
            covers_below: covers,
            bytes: v.subslice(8, v.len() - 8),
            chunks: 0,
            legacy: true,
        }));
    };
    let (covers_below, len, chunks) =
        split_head(&head).ok_or_else(|| corrupt(name, "snapshot head"))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut count = 0u32;
    for item in docs.scan_prefix(chunk_prefix(name)) {
        let (_, v) = item?;
        if count == chunks {
            break;
        }
        bytes.extend_from_slice(&v);
        count += 1;
    }
    if count != chunks || bytes.len() as u64 != len {
        return Err(corrupt(name, "snapshot chunks"));
    }
    Ok(Some(Snapshot {
        covers_below,
        bytes: bytes.into(),
        chunks,
        legacy: docs.contains_key(snapshot_key(name))?,
    }))
}

/// Puts a snapshot's head and chunks into `batch`; the number of chunks.
fn write_snapshot(batch: &mut sled::Batch, name: &str, covers_below: u64, snapshot: &[u8]) -> u32 {
    let mut chunks = 0u32;
    for (index, bytes) in (0u32..).zip(snapshot.chunks(CHUNK_BYTES)) {
        batch.insert(chunk_key(name, index), bytes);
        chunks = index + 1;
    }
    let mut head = Vec::with_capacity(20);
    head.extend_from_slice(&covers_below.to_be_bytes());
    head.extend_from_slice(&(snapshot.len() as u64).to_be_bytes());
    head.extend_from_slice(&chunks.to_be_bytes());
    batch.insert(head_key(name), head);
    chunks
}

fn split_snapshot(v: &[u8]) -> Option<(u64, &[u8])> {
    let head: [u8; 8] = v.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(head), &v[8..]))
}

fn split_head(v: &[u8]) -> Option<(u64, u64, u32)> {
    let covers = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let len = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    let chunks = u32::from_be_bytes(v.get(16..20)?.try_into().ok()?);
    Some((covers, len, chunks))
}

/// The sequence below which a document's log is folded into its snapshot.
fn covers_below(docs: &sled::Tree, name: &str) -> Result<u64, StoreError> {
    if let Some(head) = docs.get(head_key(name))? {
        return Ok(split_head(&head).map_or(0, |(covers, _, _)| covers));
    }
    Ok(match docs.get(snapshot_key(name))? {
        Some(v) => split_snapshot(&v).map_or(0, |(covers, _)| covers),
        None => 0,
    })
}

fn corrupt(name: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("{name}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the store in `dir` with its flusher running (it ends once `store` is dropped).
    fn open(dir: &Path) -> (SledStore, tokio::task::JoinHandle<()>) {
        let (store, flusher) = SledStore::open(dir).expect("open");
        (store, tokio::task::spawn_blocking(move || flusher.run()))
    }

    /// Requests a group commit and waits until it is done.
    async fn log_flush(store: &SledStore) {
        store
            .request_flush()
            .await
            .expect("queued")
            .await
            .expect("answered")
            .expect("flushed");
    }

    #[tokio::test]
    async fn append_load_compact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = open(dir.path());
        for seq in 0..5u64 {
            store.append("a", seq, &[[seq as u8]]).expect("append");
        }
        store
            .append("a:b", 0, &[&b"other"[..], &b"two"[..]])
            .expect("append");
        log_flush(&store).await;
        let loaded = store.load("a").expect("load");
        assert_eq!(loaded.log.len(), 5);
        assert_eq!(loaded.next_seq, 5);
        let c = store
            .compact("a", 3, |snap, ups| {
                assert!(snap.is_none());
                Ok(ups.iter().flat_map(|u| u.to_vec()).collect())
            })
            .expect("compact");
        assert_eq!(c.entries, 3);
        let loaded = store.load("a").expect("load");
        assert_eq!(loaded.snapshot.as_deref(), Some(&[0u8, 1, 2][..]));
        assert_eq!(
            loaded.log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(loaded.next_seq, 5);
        let other = store.load("a:b").expect("load");
        assert_eq!(other.log.len(), 1);
        assert_eq!(
            other.updates().expect("records decode"),
            vec![&b"other"[..], &b"two"[..]]
        );
        drop(store);
        flusher
            .await
            .expect("flusher ends when the store is dropped");
    }

    fn record(updates: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for u in updates {
            write_var_uint8_array(&mut out, u);
        }
        out
    }

    #[test]
    fn records_left_in_the_write_ahead_file_are_replayed_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let (store, flusher) = SledStore::open(dir.path()).expect("open");
            store.append("a", 0, &[b"zero"]).expect("append");
            store.append("a", 1, &[b"one"]).expect("append");
            store
                .compact("a", 2, |_, ups| Ok(ups.concat()))
                .expect("compact");
            drop(store);
            flusher.run();
        }
        assert!(
            wal::segments(&dir.path().join("wal"))
                .expect("list")
                .is_empty(),
            "a clean stop leaves no segment"
        );
        // As if the server had crashed after syncing these to the write-ahead file but before
        // sled wrote them: "a" 1 is already in the snapshot, "a" 2 and "b" 0 are not, and the
        // last write was cut short.
        let mut bytes = Vec::new();
        wal::encode(&mut bytes, "a", 1, &record(&[b"one"]));
        wal::encode(&mut bytes, "a", 2, &record(&[b"two", b"three"]));
        wal::encode(&mut bytes, "b", 0, &record(&[b"bee"]));
        wal::encode(&mut bytes, "b", 1, &record(&[b"torn"]));
        bytes.truncate(bytes.len() - 3);
        std::fs::write(dir.path().join("wal").join("0000000000000009.seg"), &bytes)
            .expect("write segment");

        let (store, flusher) = SledStore::open(dir.path()).expect("reopen");
        let a = store.load("a").expect("load a");
        assert_eq!(a.snapshot.as_deref(), Some(&b"zeroone"[..]));
        assert_eq!(a.log.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2]);
        assert_eq!(
            a.updates().expect("decode"),
            vec![&b"two"[..], &b"three"[..]]
        );
        assert_eq!(a.next_seq, 3);
        let b = store.load("b").expect("load b");
        assert_eq!(b.updates().expect("decode"), vec![&b"bee"[..]]);
        assert_eq!(store.log_len("a"), 1, "the folded record was not put back");
        let segments = wal::segments(&dir.path().join("wal")).expect("list");
        assert_eq!(segments.len(), 1, "replayed segments are deleted");
        let fresh = std::fs::metadata(&segments[0].1).expect("segment");
        assert_eq!(fresh.len(), 0, "the new segment starts empty");
        drop(store);
        flusher.run();
    }

    #[tokio::test]
    async fn a_log_flush_writes_the_write_ahead_file_and_durable_flushes_sled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = open(dir.path());
        store.append("d", 0, &[b"x"]).expect("append");
        log_flush(&store).await;
        let (records, damaged) = wal::read_all(&dir.path().join("wal")).expect("read");
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].name.as_str(), records[0].seq), ("d", 0));
        assert!(damaged.is_empty());
        store.append("d", 1, &[b"y"]).expect("append");
        store.durable().await.expect("durable");
        let (records, _) = wal::read_all(&dir.path().join("wal")).expect("read");
        assert_eq!(
            records.len(),
            1,
            "a sled flush covers the record; it is not written twice"
        );
        drop(store);
        flusher.await.expect("flusher ends");
    }

    #[tokio::test]
    async fn a_flush_on_the_callers_thread_writes_the_file_unless_another_flush_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = open(dir.path());
        store.append("d", 0, &[b"x"]).expect("append");
        assert!(matches!(store.flush_now(), Some(Ok(()))));
        let (records, _) = wal::read_all(&dir.path().join("wal")).expect("read");
        assert_eq!(records.len(), 1, "synced by the caller");

        store.append("d", 1, &[b"y"]).expect("append");
        {
            // Another flush holds the file: the caller must queue instead of waiting.
            let _running = lock_wal(&store.wal);
            assert!(store.flush_now().is_none());
        }
        let (records, _) = wal::read_all(&dir.path().join("wal")).expect("read");
        assert_eq!(records.len(), 1, "nothing written while the file was taken");
        log_flush(&store).await;
        let (records, _) = wal::read_all(&dir.path().join("wal")).expect("read");
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![0, 1]
        );
        drop(store);
        flusher.await.expect("flusher ends");
    }

    #[tokio::test]
    async fn a_panic_during_a_group_commit_gives_the_write_ahead_file_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = open(dir.path());
        let wal = store.wal.clone();
        let panicked = std::thread::spawn(move || {
            let _held = wal.lock();
            panic!("a panic inside a round");
        })
        .join();
        assert!(panicked.is_err());
        store.append("d", 0, &[b"x"]).expect("append");
        assert!(
            store.flush_now().is_none(),
            "the file is given up: the flusher thread's sled flush takes over"
        );
        assert!(lock_wal(&store.wal).is_none());
        log_flush(&store).await;
        drop(store);
        flusher.await.expect("flusher ends");
        let (store, flusher) = open(dir.path());
        assert_eq!(
            store.load("d").expect("load").updates().expect("records"),
            vec![&b"x"[..]]
        );
        drop(store);
        flusher.await.expect("flusher ends");
    }

    fn blob_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir.join("blobs"))
            .map(|files| {
                files
                    .filter_map(|f| f.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    #[test]
    fn large_snapshots_and_records_are_chunked_and_never_become_sled_blobs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = SledStore::open(dir.path()).expect("open");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        store
            .append("d", 0, &[&big[..]])
            .expect("append a large record");
        store.append("d", 1, &[b"small"]).expect("append");
        let loaded = store.load("d").expect("load");
        assert_eq!(
            loaded.updates().expect("decode"),
            vec![&big[..], &b"small"[..]]
        );
        assert_eq!(store.log_len("d"), 2, "a record in parts counts once");
        for round in 0..4u8 {
            let seq = 2 + u64::from(round);
            store.append("d", seq, &[[round]]).expect("append");
            let snapshot: Vec<u8> = big.iter().map(|b| b ^ round).collect();
            let size = snapshot.len() - usize::from(round) * 5000;
            store
                .compact("d", seq + 1, |_, _| Ok(snapshot[..size].to_vec()))
                .expect("compact");
            let loaded = store.load("d").expect("load");
            assert_eq!(loaded.snapshot.as_deref(), Some(&snapshot[..size]));
            assert!(loaded.log.is_empty());
            assert_eq!(loaded.next_seq, seq + 1);
        }
        store.flush_blocking().expect("flush");
        assert_eq!(blob_bytes(dir.path()), 0, "nothing went to sled's blobs/");
        drop(store);
        flusher.run();
    }

    #[test]
    fn a_snapshot_in_the_layout_before_chunks_is_read_and_replaced_at_the_next_compaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = SledStore::open(dir.path()).expect("open");
        let mut legacy = 3u64.to_be_bytes().to_vec();
        legacy.extend_from_slice(b"old state");
        store
            .docs
            .insert(snapshot_key("d"), legacy)
            .expect("insert");
        store.append("d", 3, &[b"x"]).expect("append");
        let loaded = store.load("d").expect("load");
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"old state"[..]));
        assert_eq!(loaded.next_seq, 4);
        store
            .compact("d", 4, |snap, ups| {
                Ok([snap.unwrap_or_default(), &ups.concat()].concat())
            })
            .expect("compact");
        assert!(!store.docs.contains_key(snapshot_key("d")).expect("read"));
        let loaded = store.load("d").expect("load");
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"old statex"[..]));
        assert_eq!(loaded.next_seq, 4);
        drop(store);
        flusher.run();
    }
}
