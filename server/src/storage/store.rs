//! The storage interface: documents (an append-only log of group-commit records and a compacted
//! snapshot each), metadata trees and group commit, over one of two backends. This module knows
//! keys and bytes only — never yrs.
//!
//! - sled ([`crate::storage::sled_store`]), the default: one embedded store in the data
//!   directory, with its write-ahead file and integrity manifest.
//! - PostgreSQL ([`crate::storage::postgres`], `--postgres URL`): tables in a database the
//!   operator provides; the data directory keeps only what stays local (the held anonymous
//!   items, the administration socket).
//!
//! Both promise the same thing to the rest of the server: an appended record and a metadata write
//! are visible at once on this node and durable once a flush requested after them has completed
//! (`request_flush`, `durable`); nothing is relayed or acknowledged before that. The backend is
//! an enum, so the sled path costs one match per call and nothing else (it is benchmarked).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::storage::integrity::OnDamage;
use crate::storage::postgres::{PgFlusher, PgSettings, PgStore, PgTree};
use crate::storage::sled_store::{SledFlusher, SledStore, SledTree};
// The types both backends use, named here as before.
pub use crate::storage::types::{Compacted, Damage, Entry, StoreError, StoredDoc};

/// A store opened by [`Store::open_checked`] or [`Store::open_postgres`].
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: Store,
    /// Its group-commit task.
    pub flusher: Flusher,
    /// The damage found, when it was opened read-only despite it.
    pub damage: Option<Damage>,
}

/// Handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store(Backend);

#[derive(Debug, Clone)]
enum Backend {
    Sled(SledStore),
    Postgres(PgStore),
}

/// A metadata tree (see [`Store::meta_tree`]); cheap to clone.
#[derive(Debug, Clone)]
pub struct MetaTree(TreeBackend);

#[derive(Debug, Clone)]
enum TreeBackend {
    Sled(SledTree),
    Postgres(PgTree),
}

/// The group-commit task. Returned by [`Store::open`] so the caller owns and awaits it; it ends
/// once every [`Store`] handle is dropped.
#[derive(Debug)]
pub struct Flusher(FlusherBackend);

#[derive(Debug)]
enum FlusherBackend {
    Sled(SledFlusher),
    Postgres(PgFlusher),
}

impl Store {
    /// Opens (or creates) the sled store in `dir`, refusing a damaged one (see
    /// [`Store::open_checked`]).
    pub fn open(dir: &Path) -> Result<(Store, Flusher), StoreError> {
        let (store, flusher) = SledStore::open(dir)?;
        Ok((
            Store(Backend::Sled(store)),
            Flusher(FlusherBackend::Sled(flusher)),
        ))
    }

    /// Opens (or creates) the sled store in `dir` after checking it against its manifest and its
    /// write-ahead segments (see [`crate::storage::integrity`] and
    /// [`SledStore::open_checked`]).
    pub fn open_checked(dir: &Path, on_damage: OnDamage) -> Result<Opened, StoreError> {
        let (store, flusher, damage) = SledStore::open_checked(dir, on_damage)?;
        Ok(Opened {
            store: Store(Backend::Sled(store)),
            flusher: Flusher(FlusherBackend::Sled(flusher)),
            damage,
        })
    }

    /// Opens the PostgreSQL store (see [`crate::storage::postgres`]): connects, retrying for
    /// `settings.patience`, and creates the tables when missing. Blocking. `dir` keeps what stays
    /// on local disk; `ownership` is the node the store writes for, which claims and fences.
    pub fn open_postgres(
        settings: &PgSettings,
        dir: &Path,
        ownership: crate::storage::postgres::owner::Ownership,
    ) -> Result<Opened, StoreError> {
        let (store, flusher) = PgStore::open(settings, dir, ownership)?;
        Ok(Opened {
            store: Store(Backend::Postgres(store)),
            flusher: Flusher(FlusherBackend::Postgres(flusher)),
            damage: None,
        })
    }

    /// Whether the store was opened read-only because it is damaged (sled only).
    pub fn is_read_only(&self) -> bool {
        match &self.0 {
            Backend::Sled(s) => s.is_read_only(),
            Backend::Postgres(_) => false,
        }
    }

    /// Why the store stopped writing for good, once it has (PostgreSQL: another Debrief took the
    /// database's single-node lock after a reconnect, or this node lost the review role); never
    /// with sled.
    pub fn stopped(&self) -> Option<StoreError> {
        match &self.0 {
            Backend::Sled(_) => None,
            Backend::Postgres(p) => p.stopped(),
        }
    }

    /// Whether this server serves reviews: always with sled; with PostgreSQL shared by several
    /// nodes, only on the node that holds the review role (see
    /// [`crate::storage::postgres::PgStore::serves_reviews`]).
    pub fn serves_reviews(&self) -> bool {
        match &self.0 {
            Backend::Sled(_) => true,
            Backend::Postgres(p) => p.serves_reviews(),
        }
    }

    /// Takes the review role of a cluster if nobody holds it (see
    /// [`crate::storage::postgres::PgStore::take_reviews`]); true once this server serves
    /// reviews (at once with sled or a database of its own).
    pub async fn take_reviews(&self) -> Result<bool, StoreError> {
        match &self.0 {
            Backend::Sled(_) => Ok(true),
            Backend::Postgres(p) => p.take_reviews().await,
        }
    }

    /// Whether this server holds the review role of a cluster now (see
    /// [`crate::storage::postgres::PgStore::holds_review_role`]); never with sled.
    pub fn holds_review_role(&self) -> bool {
        match &self.0 {
            Backend::Sled(_) => false,
            Backend::Postgres(p) => p.holds_review_role(),
        }
    }

    /// Whether the server serves reviews from this store now (see
    /// [`crate::storage::postgres::PgStore::reviews_open`]): always with sled.
    pub fn reviews_open(&self) -> bool {
        match &self.0 {
            Backend::Sled(_) => true,
            Backend::Postgres(p) => p.reviews_open(),
        }
    }

    /// The server serves reviews from this store now (see
    /// [`crate::storage::postgres::PgStore::reviews_served`]); nothing with sled.
    pub fn reviews_served(&self) {
        if let Backend::Postgres(p) = &self.0 {
            p.reviews_served();
        }
    }

    /// Stops writing for good (see [`crate::storage::postgres::PgStore::stop_writing`]);
    /// nothing with sled, where no other node takes reviews over.
    pub fn stop_writing(&self, why: String) {
        if let Backend::Postgres(p) = &self.0 {
            p.stop_writing(why);
        }
    }

    /// Whether several nodes share the database (a cluster with internal links).
    pub fn is_shared(&self) -> bool {
        match &self.0 {
            Backend::Sled(_) => false,
            Backend::Postgres(p) => p.is_shared(),
        }
    }

    /// Whether documents and metadata live in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Backend::Postgres(_))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        match &self.0 {
            Backend::Sled(s) => s.data_dir(),
            Backend::Postgres(p) => p.data_dir(),
        }
    }

    /// The sled database, for backups (every tree, read while the server runs); `None` when the
    /// data lives in PostgreSQL, which is backed up with its own tools.
    pub fn db(&self) -> Option<&sled::Db> {
        match &self.0 {
            Backend::Sled(s) => Some(s.db()),
            Backend::Postgres(_) => None,
        }
    }

    /// Reads a document's snapshot and log: sled's read runs on a blocking thread. With
    /// PostgreSQL this first claims the document's group for this node, waiting on a timer while
    /// another node's live lease holds it (no thread is held meanwhile), and dropping the future
    /// ends the wait (see [`crate::storage::postgres`]).
    pub async fn load(&self, name: &Arc<str>) -> Result<StoredDoc, StoreError> {
        match &self.0 {
            Backend::Sled(s) => {
                let (s, name) = (s.clone(), name.clone());
                tokio::task::spawn_blocking(move || s.load(&name))
                    .await
                    .map_err(|e| StoreError::Compaction(format!("load task failed: {e}")))?
            }
            Backend::Postgres(p) => p.load(name).await,
        }
    }

    /// Resolves, with why, once the node this store writes for is fenced (PostgreSQL; never
    /// with sled). A document asks before it is loaded and, when this resolves, closes its
    /// clients and leaves memory without waiting for its next commit to be refused.
    pub fn until_fenced(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> {
        match &self.0 {
            Backend::Sled(_) => Box::pin(std::future::pending()),
            Backend::Postgres(p) => p.until_fenced(),
        }
    }

    /// Appends one record of updates to a document's log and returns its size. Not durable
    /// until a flush requested after this call has completed.
    pub fn append<U: AsRef<[u8]>>(
        &self,
        name: &str,
        seq: u64,
        updates: &[U],
    ) -> Result<u64, StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.append(name, seq, updates),
            Backend::Postgres(p) => p.append(name, seq, updates),
        }
    }

    /// Asks for a flush on behalf of document `doc` and returns a receiver that completes once
    /// every log record appended before this call is durable. Concurrent requests share one
    /// flush (group commit). With PostgreSQL the answer is an error when `doc`'s records could
    /// not be committed (fenced, or the database failed) even if the others' were.
    pub async fn request_flush(
        &self,
        doc: &Arc<str>,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.request_flush().await,
            Backend::Postgres(p) => p.request_flush(Some(doc.clone())).await,
        }
    }

    /// Makes the pending log records durable on the calling thread when that is cheap (sled:
    /// see [`SledStore::flush_now`]); `None` when the caller should [`Store::request_flush`]
    /// instead, which it always should with PostgreSQL (every commit goes through its flusher).
    pub fn flush_now(&self) -> Option<Result<(), StoreError>> {
        match &self.0 {
            Backend::Sled(s) => s.flush_now(),
            Backend::Postgres(_) => None,
        }
    }

    /// Waits until everything written so far, metadata included, is durable (shared with any
    /// other request waiting at that moment).
    pub async fn durable(&self) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.durable().await,
            Backend::Postgres(p) => p.durable().await,
        }
    }

    /// A tree of its own for metadata (reviews, sessions): keys and values are bytes the caller
    /// encodes; writes are visible at once and become durable with the next flush.
    pub fn meta_tree(&self, name: &str) -> Result<MetaTree, StoreError> {
        Ok(MetaTree(match &self.0 {
            Backend::Sled(s) => TreeBackend::Sled(s.meta_tree(name)?),
            Backend::Postgres(p) => TreeBackend::Postgres(p.meta_tree(name)?),
        }))
    }

    /// Folds the log records below `upto` into the snapshot with `fold(snapshot, updates)`,
    /// then writes the new snapshot and deletes those records atomically. Blocking: run it on a
    /// blocking thread.
    pub fn compact(
        &self,
        name: &str,
        upto: u64,
        fold: impl FnOnce(Option<&[u8]>, &[&[u8]]) -> Result<Vec<u8>, String>,
    ) -> Result<Compacted, StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.compact(name, upto, fold),
            Backend::Postgres(p) => p.compact(name, upto, fold),
        }
    }

    /// Bytes a document holds in the store, counted as the document size limit counts them: its
    /// snapshot plus its log records.
    pub fn stored_bytes(&self, name: &str) -> Result<u64, StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.stored_bytes(name),
            Backend::Postgres(p) => p.stored_bytes(name),
        }
    }

    /// Number of log entries stored for a document (for metrics and tests).
    pub fn log_len(&self, name: &str) -> usize {
        match &self.0 {
            Backend::Sled(s) => s.log_len(name),
            Backend::Postgres(p) => p.log_len(name),
        }
    }

    /// A cheap check that fails when the store is unusable (for the readiness probe); with
    /// PostgreSQL, while the database cannot be reached.
    pub fn probe(&self) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.probe(),
            Backend::Postgres(p) => p.probe(),
        }
    }

    /// Flushes everything now. Blocking; used at shutdown.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sled(s) => s.flush_blocking(),
            Backend::Postgres(p) => p.flush_blocking(),
        }
    }

    /// The held slots numbered in `slots` kept in PostgreSQL (a node of a cluster,
    /// `reviews/anonymous/sealed.rs`), with their sealed bytes. Blocking.
    pub fn held_slots(
        &self,
        slots: std::ops::Range<u32>,
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        match &self.0 {
            Backend::Sled(_) => Err(held_in_postgres_only()),
            Backend::Postgres(p) => p.held_slots(slots),
        }
    }

    /// Makes the rows of held slots that have none yet. Blocking.
    pub fn make_held_slots(&self, slots: Vec<(u32, Vec<u8>)>) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sled(_) => Err(held_in_postgres_only()),
            Backend::Postgres(p) => p.make_held_slots(slots),
        }
    }

    /// Rewrites held slots in one transaction; done once it committed.
    pub async fn write_held_slots(&self, writes: Vec<(u32, Vec<u8>)>) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sled(_) => Err(held_in_postgres_only()),
            Backend::Postgres(p) => p.write_held_slots(writes).await,
        }
    }

    /// The backend's own lines for `/metrics` (Prometheus text; empty for sled).
    pub fn render_metrics(&self) -> String {
        match &self.0 {
            Backend::Sled(_) => String::new(),
            Backend::Postgres(p) => p.render_metrics(),
        }
    }
}

/// Held slots in a table exist only on PostgreSQL; sled keeps them in the held-items file.
fn held_in_postgres_only() -> StoreError {
    StoreError::Corrupt("held slots are kept in PostgreSQL only".to_owned())
}

impl Flusher {
    /// Serves flush requests until every [`Store`] handle is gone. Blocking: run it on a thread
    /// of its own (`spawn_blocking`).
    pub fn run(self) {
        match self.0 {
            FlusherBackend::Sled(f) => f.run(),
            FlusherBackend::Postgres(f) => f.run(),
        }
    }
}

impl MetaTree {
    /// Stores `value` under `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.put(key, value),
            TreeBackend::Postgres(t) => t.put(key, value),
        }
    }

    /// Stores `value` under `key` unless the key exists; `false` when it did (atomic).
    pub fn put_new(&self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.put_new(key, value),
            TreeBackend::Postgres(t) => t.put_new(key, value),
        }
    }

    /// How many keys start with `prefix`.
    pub fn count_prefix(&self, prefix: &[u8]) -> Result<usize, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.count_prefix(prefix),
            TreeBackend::Postgres(t) => t.count_prefix(prefix),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.get(key),
            TreeBackend::Postgres(t) => t.get(key),
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.remove(key),
            TreeBackend::Postgres(t) => t.remove(key),
        }
    }

    /// Writes (`Some`) and removes (`None`) several keys atomically, in key order.
    pub fn apply(&self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<(), StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.apply(writes),
            TreeBackend::Postgres(t) => t.apply(writes),
        }
    }

    /// [`MetaTree::apply`] to several trees of one store at once. On PostgreSQL all of them
    /// reach the pending batch together (one commit carries all or none); on sled each tree's
    /// writes are atomic and the next flush makes them all durable.
    pub fn apply_together(
        parts: Vec<(&MetaTree, crate::storage::types::TreeWrites)>,
    ) -> Result<(), StoreError> {
        let mut pg = Vec::with_capacity(parts.len());
        let mut sled = Vec::new();
        for (tree, writes) in parts {
            match &tree.0 {
                TreeBackend::Postgres(t) => pg.push((t, writes)),
                TreeBackend::Sled(t) => sled.push((t, writes)),
            }
        }
        PgTree::apply_together(pg);
        for (tree, writes) in sled {
            tree.apply(writes)?;
        }
        Ok(())
    }

    /// Every key, in order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.keys(),
            TreeBackend::Postgres(t) => t.keys(),
        }
    }

    /// The values of every key that starts with `prefix`, in key order.
    pub fn values_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.values_with_prefix(prefix),
            TreeBackend::Postgres(t) => t.values_with_prefix(prefix),
        }
    }

    /// The first `max` entries whose key starts with `prefix`, in key order.
    pub fn entries_with_prefix(&self, prefix: &[u8], max: usize) -> Result<Vec<Entry>, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.entries_with_prefix(prefix, max),
            TreeBackend::Postgres(t) => t.entries_with_prefix(prefix, max),
        }
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        match &self.0 {
            TreeBackend::Sled(t) => t.entries(),
            TreeBackend::Postgres(t) => t.entries(),
        }
    }
}
