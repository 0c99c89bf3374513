//! Counters of leases, ownership and links, one set per node. Plain atomics, rendered into `/metrics`
//! (`docs/cluster.md`, "Readiness and metrics").

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
    /// Times this server registered as a node: once at start, and once more each time it lost
    /// its lease and registered again under a new id.
    pub registrations: AtomicU64,
    /// Internal links open now, both those this node dialled and those it accepted (a gauge).
    pub links: AtomicU64,
    /// Connections to the link listener refused in the handshake (a wrong cluster secret,
    /// something that is not a node, a handshake too slow, or too many at once).
    pub link_refusals: AtomicU64,
}

impl ClusterMetrics {
    /// Reads one counter (for tests and `/metrics`).
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The node's lines for `/metrics`, in the Prometheus text format the server's other lines
    /// use; `live` says whether the lease is live (a gauge, 0 once the node is fenced).
    pub fn render(&self, live: bool) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let lines = [
            (
                "debrief_cluster_lease_live",
                "gauge",
                "Whether this node's lease is live (0 once it is fenced: it writes nothing more).",
                u64::from(live),
            ),
            (
                "debrief_cluster_owned_documents",
                "gauge",
                "Documents this node owns in the database.",
                Self::read(&self.owned_documents),
            ),
            (
                "debrief_cluster_lease_renewals_total",
                "counter",
                "Lease renewals that succeeded.",
                Self::read(&self.lease_renewals),
            ),
            (
                "debrief_cluster_renewals_failed_total",
                "counter",
                "Lease renewals that failed (the database could not be reached, or refused).",
                Self::read(&self.renewals_failed),
            ),
            (
                "debrief_cluster_takeovers_total",
                "counter",
                "Documents taken from a node whose lease had lapsed.",
                Self::read(&self.takeovers),
            ),
            (
                "debrief_cluster_claims_held_total",
                "counter",
                "Claims that found a document held by another node with a live lease.",
                Self::read(&self.claims_held),
            ),
            (
                "debrief_cluster_handed_over_total",
                "counter",
                "Documents this node handed over.",
                Self::read(&self.handed_over),
            ),
            (
                "debrief_cluster_deadlocks_total",
                "counter",
                "Claims and handovers run again after PostgreSQL aborted them to break a deadlock.",
                Self::read(&self.deadlocks),
            ),
            (
                "debrief_cluster_registrations_total",
                "counter",
                "Times this server registered as a node (at start, and again after losing its lease).",
                Self::read(&self.registrations),
            ),
            (
                "debrief_cluster_links",
                "gauge",
                "Internal links to other nodes open now (dialled and accepted).",
                Self::read(&self.links),
            ),
            (
                "debrief_cluster_link_refusals_total",
                "counter",
                "Connections to the link listener refused in the handshake.",
                Self::read(&self.link_refusals),
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes one from a gauge that was raised by one before (never below zero).
    pub(crate) fn sub_one(gauge: &AtomicU64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}
