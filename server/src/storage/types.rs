//! What both storage backends share with the rest of the server: the error, what a document's
//! load and compaction return, and the encoding of a log record.

use std::path::PathBuf;
use std::sync::Arc;

use debrief_proto::lib0::{write_var_uint8_array, Reader};

/// One key and value of a metadata tree.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A storage failure. Storage errors end the affected document (its clients are disconnected and
/// reconnect to a fresh load); they never reach a client as text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error.
    #[error("sled: {0}")]
    Sled(Arc<sled::Error>),
    /// A stored value does not have the layout this module writes.
    #[error("corrupt stored value for key {0:?}")]
    Corrupt(String),
    /// The flusher is gone (the server is shutting down).
    #[error("the flusher has stopped")]
    FlusherGone,
    /// Folding the log into a snapshot failed.
    #[error("compaction failed: {0}")]
    Compaction(String),
    /// Reading or writing the write-ahead file failed.
    #[error("write-ahead file: {0}")]
    Wal(String),
    /// The data directory is damaged (see [`crate::storage::integrity`]); nothing was served.
    #[error("{0}")]
    Damaged(Damage),
    /// The store was opened read-only because it is damaged: nothing may be written.
    #[error("the store is read-only: it is damaged")]
    ReadOnly,
    /// Reading or writing the manifest or a kept copy failed.
    #[error("integrity record: {0}")]
    Integrity(String),
    /// The document's owner changed in the database since this node loaded it (another node
    /// claimed it with a higher epoch): nothing of the commit was written, and this node must
    /// stop serving the document. PostgreSQL only.
    #[error("document {name:?} is fenced: its owner or epoch changed since it was loaded")]
    Fenced {
        /// The document.
        name: String,
    },
    /// This node lost its cluster lease (or left): it writes nothing more, and loads nothing,
    /// until it is restarted as a new node. PostgreSQL only.
    #[error("this node is fenced ({0}); it writes nothing more until it is restarted")]
    NodeFenced(String),
    /// Another node held a document of the group being loaded, and its lease stayed live for
    /// as long as the load waited. PostgreSQL only.
    #[error("document {name:?} is held by node {owner}, whose lease stayed live for the {} ms this node waited", .waited.as_millis())]
    Held {
        /// The document held.
        name: String,
        /// The node holding it.
        owner: String,
        /// How long the load waited.
        waited: std::time::Duration,
    },
    /// A row of the group being loaded stayed locked by another database session (a commit
    /// or claim of another node that does not end) through every try of the load. PostgreSQL
    /// only.
    #[error("document {name:?} stayed locked by another database session for the {} ms this node waited", .waited.as_millis())]
    Locked {
        /// The document being loaded.
        name: String,
        /// How long the load waited.
        waited: std::time::Duration,
    },
    /// PostgreSQL refused a statement, or cannot be reached. PostgreSQL only.
    #[error("postgres: {0}")]
    Postgres(String),
}

/// What is damaged in a data directory, and where copies of the damaged files were kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// One line per damaged thing, naming it.
    pub lines: Vec<String>,
    /// `<data-dir>/damaged/<time>/`, holding the files as they were found.
    pub kept: PathBuf,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the data directory is damaged; copies of the damaged files are kept in {}",
            self.kept.display()
        )?;
        for line in &self.lines {
            write!(f, "\n  damaged: {line}")?;
        }
        Ok(())
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(Arc::new(e))
    }
}

/// What is stored for one document.
#[derive(Debug, Default)]
pub struct StoredDoc {
    /// The compacted state, if the document was ever compacted.
    pub snapshot: Option<sled::IVec>,
    /// Records after the snapshot, in sequence order (see [`StoredDoc::updates`]).
    pub log: Vec<(u64, sled::IVec)>,
    /// The sequence number the next appended update gets.
    pub next_seq: u64,
}

impl StoredDoc {
    /// Every update of the log, in the order it was accepted.
    pub fn updates(&self) -> Result<Vec<&[u8]>, StoreError> {
        updates_of(self.log.iter().map(|(_, record)| &record[..]))
    }

    /// Bytes of the log entries.
    pub fn log_bytes(&self) -> u64 {
        self.log.iter().map(|(_, v)| v.len() as u64).sum()
    }

    /// Bytes of the snapshot.
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.len() as u64)
    }
}

/// The outcome of one compaction.
#[derive(Debug, Clone, Copy)]
pub struct Compacted {
    /// Log entries folded into the snapshot and deleted.
    pub entries: u64,
    /// Bytes of those entries.
    pub entry_bytes: u64,
    /// Size of the new snapshot.
    pub snapshot_bytes: u64,
}

/// The updates of log records, in order.
pub(crate) fn updates_of<'a>(
    records: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<&'a [u8]>, StoreError> {
    let mut out = Vec::new();
    for record in records {
        let mut r = Reader::new(record);
        while !r.is_empty() {
            let update = r
                .read_var_uint8_array()
                .map_err(|e| StoreError::Corrupt(format!("log record: {e}")))?;
            out.push(update);
        }
    }
    Ok(out)
}

/// One log record: each update as a lib0 `varUint8Array`, in order.
pub(crate) fn encode_record<U: AsRef<[u8]>>(updates: &[U]) -> Vec<u8> {
    let mut record = Vec::with_capacity(updates.iter().map(|u| u.as_ref().len() + 4).sum());
    for u in updates {
        write_var_uint8_array(&mut record, u.as_ref());
    }
    record
}

/// Writes (`Some`) and removes (`None`) of a metadata tree, by key.
pub type TreeWrites = std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>;
