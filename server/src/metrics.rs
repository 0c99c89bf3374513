//! Process-wide counters, exposed at `GET /metrics` in the Prometheus text format.
//!
//! Only aggregate counts live here — never anything about a person (see `docs/architecture.md`, "Nothing about a person in aggregates").

use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a measured store size is reused by `/metrics`. Measuring lists the data directory
/// (a handful of files: sled's `db`, `conf` and `snap.*`, the write-ahead segments, kept copies)
/// and reads their sizes; reusing it for a second bounds that to once a second however often
/// the endpoint is scraped, and scrapers poll every 15 s or more.
pub const STORE_SIZE_MAX_AGE: Duration = Duration::from_secs(1);

/// Counters and gauges of one server instance.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Documents currently loaded in memory.
    pub documents_loaded: AtomicU64,
    /// Documents another node owns that this node's connections are attached to.
    pub documents_forwarded: AtomicU64,
    /// WebSocket connections currently open.
    pub connections_open: AtomicU64,
    /// Updates that changed a document.
    pub updates_applied: AtomicU64,
    /// Updates refused (malformed, too large, or the CRDT library failed on them).
    pub updates_rejected: AtomicU64,
    /// Documents reloaded from storage after a failed update.
    pub documents_reloaded: AtomicU64,
    /// Completed group-commit flush rounds requested by documents.
    pub flushes: AtomicU64,
    /// Completed compactions.
    pub compactions: AtomicU64,
    /// Connections closed because they did not read fast enough.
    pub slow_consumers: AtomicU64,
    /// Updates with new content from read-only connections, refused.
    pub updates_refused_read_only: AtomicU64,
    /// Authentications refused (both dialects).
    pub permission_denied: AtomicU64,
    /// Documents attached to `/collab` sockets right now.
    pub collab_documents_open: AtomicU64,
    /// Writes refused because their review was at its storage quota.
    pub review_quota_refusals: AtomicU64,
    /// Attachments of clients of other nodes, forwarded to documents this node owns.
    pub forwarded_open: AtomicU64,
    /// Messages this node sent to entry nodes on lanes, relays once per lane.
    pub lane_messages: AtomicU64,
    /// Lanes (one per document and entry node) this node serves as the owner.
    pub lanes_open: AtomicU64,
    /// The data directory's size, as last measured.
    store_size: Mutex<Option<(Instant, StoreSize)>>,
}

/// Bytes of the files in a data directory, by what holds them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreSize {
    /// Every file.
    pub total: u64,
    /// sled's large values (`blobs/`).
    pub blobs: u64,
    /// Write-ahead segments (`wal/`).
    pub wal: u64,
    /// Copies kept aside because they were damaged (`damaged/`).
    pub damaged: u64,
}

impl StoreSize {
    /// Measures `dir` (the apparent size of each file, as `ls -l` shows it).
    pub fn measure(dir: &Path) -> std::io::Result<StoreSize> {
        let mut size = StoreSize::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let bytes = tree_bytes(&entry.path())?;
            size.total += bytes;
            match entry.file_name().to_str() {
                Some("blobs") => size.blobs += bytes,
                Some("wal") => size.wal += bytes,
                Some(crate::storage::integrity::DAMAGED) => size.damaged += bytes,
                _ => {}
            }
        }
        Ok(size)
    }
}

fn tree_bytes(path: &Path) -> std::io::Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Removed while being listed (a write-ahead segment at a checkpoint).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        total += tree_bytes(&entry?.path())?;
    }
    Ok(total)
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one from a gauge.
    pub fn dec(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// The store size measured less than [`STORE_SIZE_MAX_AGE`] ago, if any.
    pub fn fresh_store_size(&self) -> Option<StoreSize> {
        let held = self.store_size.lock().ok()?;
        let (at, size) = (*held)?;
        (at.elapsed() < STORE_SIZE_MAX_AGE).then_some(size)
    }

    /// Records a measured store size.
    pub fn set_store_size(&self, size: StoreSize) {
        if let Ok(mut held) = self.store_size.lock() {
            *held = Some((Instant::now(), size));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 16] = [
            (
                "debrief_documents_loaded",
                "gauge",
                "Documents in memory.",
                &self.documents_loaded,
            ),
            (
                "debrief_connections_open",
                "gauge",
                "Open WebSocket connections.",
                &self.connections_open,
            ),
            (
                "debrief_updates_applied_total",
                "counter",
                "Updates that changed a document.",
                &self.updates_applied,
            ),
            (
                "debrief_updates_rejected_total",
                "counter",
                "Updates refused.",
                &self.updates_rejected,
            ),
            (
                "debrief_documents_reloaded_total",
                "counter",
                "Documents reloaded after a failed update.",
                &self.documents_reloaded,
            ),
            (
                "debrief_flushes_total",
                "counter",
                "Group-commit flushes completed.",
                &self.flushes,
            ),
            (
                "debrief_compactions_total",
                "counter",
                "Log compactions completed.",
                &self.compactions,
            ),
            (
                "debrief_slow_consumers_total",
                "counter",
                "Connections closed for not reading.",
                &self.slow_consumers,
            ),
            (
                "debrief_updates_refused_read_only_total",
                "counter",
                "Changes from read-only connections, refused.",
                &self.updates_refused_read_only,
            ),
            (
                "debrief_permission_denied_total",
                "counter",
                "Authentications refused.",
                &self.permission_denied,
            ),
            (
                "debrief_collab_documents_open",
                "gauge",
                "Documents attached to /collab sockets.",
                &self.collab_documents_open,
            ),
            (
                "debrief_review_quota_refusals_total",
                "counter",
                "Writes refused because their review was at its storage quota.",
                &self.review_quota_refusals,
            ),
            (
                "debrief_forwarded_attachments_open",
                "gauge",
                "Attachments forwarded by other nodes to documents this node owns.",
                &self.forwarded_open,
            ),
            (
                "debrief_forwarded_lanes_open",
                "gauge",
                "Lanes (one per document and entry node) this node serves to other nodes.",
                &self.lanes_open,
            ),
            (
                "debrief_forwarded_messages_sent_total",
                "counter",
                "Messages this node sent to other nodes' clients on lanes; a relay is one per lane, however many clients it has.",
                &self.lane_messages,
            ),
            (
                "debrief_documents_forwarded",
                "gauge",
                "Documents another node owns that this node's connections are attached to.",
                &self.documents_forwarded,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let stored = self.store_size.lock().ok().and_then(|held| *held);
        if let Some((_, size)) = stored {
            let gauges = [
                (
                    "debrief_store_bytes",
                    "Bytes of every file in the data directory.",
                    size.total,
                ),
                (
                    "debrief_store_blob_bytes",
                    "Bytes of sled's blobs/ (none are written; older stores may hold some).",
                    size.blobs,
                ),
                (
                    "debrief_store_wal_bytes",
                    "Bytes of the write-ahead segments.",
                    size.wal,
                ),
                (
                    "debrief_store_damaged_bytes",
                    "Bytes of damaged files kept aside in damaged/.",
                    size.damaged,
                ),
            ];
            for (name, help, value) in gauges {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}
