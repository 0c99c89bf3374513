//! Process-wide counters, exposed at `GET /metrics` in the Prometheus text format.
//!
//! Only aggregate counts live here — never anything about a person (see DESIGN.md §4).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges of one server instance.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Documents currently loaded in memory.
    pub documents_loaded: AtomicU64,
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 11] = [
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
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
