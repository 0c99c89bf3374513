//! Counters of leases and ownership, one set per node. Plain atomics: `/metrics` reads them in
//! phase 2 (`docs/cluster.md`, "Readiness and metrics").

use std::sync::atomic::{AtomicU64, Ordering};

/// What a node counts about its lease and its documents.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// Documents this node owns right now (a gauge).
    pub owned_documents: AtomicU64,
    /// Lease renewals that succeeded.
    pub lease_renewals: AtomicU64,
    /// Lease renewals that failed (the database could not be reached, or refused).
    pub renewals_failed: AtomicU64,
    /// Documents taken from a node whose lease had lapsed.
    pub takeovers: AtomicU64,
    /// Claims that found a document held by another node with a live lease (contention, or a
    /// claimer waiting for a lease to lapse).
    pub claims_held: AtomicU64,
    /// Documents this node handed over (released one by one or all at shutdown).
    pub handed_over: AtomicU64,
    /// Claims and handovers that PostgreSQL chose as the victim of a deadlock and that were run
    /// again. Claims and handovers lock rows in name order, so this stays zero unless something
    /// else locks the same rows in another order.
    pub deadlocks: AtomicU64,
}

impl ClusterMetrics {
    /// Reads one counter (for tests and, in phase 2, `/metrics`).
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
