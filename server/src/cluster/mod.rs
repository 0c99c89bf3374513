//! Cluster mode on PostgreSQL (issue 18): which node owns which document.
//!
//! `docs/cluster.md` is the design of the whole cluster mode. A server with `--postgres` runs
//! as a node of it: it registers at start, its storage backend claims and fences through
//! [`member::Member`], and it hands its documents over at shutdown. With links, documents
//! another node owns are served through it (the transport's `forwarded` and the documents'
//! `remote`, routed by [`member::MemberSlot::owner_of`] and [`links::Links::get`]):
//!
//! - [`node`]: a node registers in the `nodes` table (`schema.sql`) and renews its lease on a
//!   timer. The lease's expiry is judged only by the database's clock. A node that cannot renew
//!   before its lease ends considers itself fenced: [`node::Node::state`] tells its document
//!   owners to stop committing and serving.
//! - [`ownership`]: claiming a document (taking it only when nobody holds it, its owner's lease
//!   lapsed, or its owner handed it over, always raising its epoch), looking up its owner,
//!   handing documents over, and [`ownership::fence`], the check a commit runs inside its own
//!   transaction.
//! - [`link`]: the authenticated internal link between two nodes, with a sub-stream per
//!   document, bounded queues and a heartbeat.
//! - [`links`]: a node's links: the listener's accept loop, and the registry of links this node
//!   dialled (one per peer, dialled at the address `nodes` holds). Sub-streams peers open go to a
//!   handler the server gives (the owner side of forwarded attachments).
//! - [`member`]: the node as the owner the PostgreSQL backend writes for: the backend claims a
//!   document's group and fences each commit with this room's SQL, on its own connection.
//! - [`metrics`]: counters of leases and ownership, rendered into `/metrics`.
//!
//! The room refers to nothing else of the server but `limits` (the link's frame size) and the
//! storage backend's [`crate::storage::postgres::owner::Owner`], which it implements: it is given
//! a connection configuration and the address of the node's internal link, and answers in its
//! own types.

pub mod link;
pub mod links;
pub mod member;
pub mod metrics;
pub mod node;
pub mod ownership;

mod db;

#[cfg(test)]
mod links_tests;
#[cfg(test)]
mod member_tests;
#[cfg(test)]
mod testdb;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

/// The `nodes` table, applied by [`node::Node::register`] (idempotent; it never touches the
/// `documents` table, which the storage backend creates).
pub const SCHEMA: &str = include_str!("schema.sql");

/// Lease length and renewal interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    lease: Duration,
    renew_every: Duration,
}

/// A lease shorter than this cannot be renewed reliably over a network.
pub const MIN_LEASE: Duration = Duration::from_millis(100);

impl Default for Settings {
    /// A 3 s lease renewed every second: a node may miss two renewals before it is fenced, and a
    /// dead node's documents are taken over within about 4 s (the lease plus one poll), inside
    /// the 5 s target.
    fn default() -> Settings {
        Settings {
            lease: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
        }
    }
}

/// Why lease settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The lease is too short to renew.
    #[error("the lease must be at least {} ms, not {} ms", MIN_LEASE.as_millis(), .0.as_millis())]
    LeaseTooShort(Duration),
    /// Renewing no more often than the lease lasts lets it lapse between renewals.
    #[error(
        "the lease must be renewed more often than it lasts: every {} ms is not less than the lease of {} ms",
        .renew_every.as_millis(),
        .lease.as_millis()
    )]
    RenewalTooRare {
        /// The lease asked for.
        lease: Duration,
        /// The renewal interval asked for.
        renew_every: Duration,
    },
    /// A zero interval would renew in a busy loop.
    #[error("the renewal interval must be more than zero")]
    ZeroRenewal,
}

impl Settings {
    /// A lease of `lease`, renewed every `renew_every` (which must be shorter).
    pub fn new(lease: Duration, renew_every: Duration) -> Result<Settings, SettingsError> {
        if lease < MIN_LEASE {
            return Err(SettingsError::LeaseTooShort(lease));
        }
        if renew_every.is_zero() {
            return Err(SettingsError::ZeroRenewal);
        }
        if renew_every >= lease {
            return Err(SettingsError::RenewalTooRare { lease, renew_every });
        }
        Ok(Settings { lease, renew_every })
    }

    /// How long a lease lasts after each renewal, by the database's clock.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often the node renews its lease; also how often a waiting claimer looks again.
    pub fn renew_every(&self) -> Duration {
        self.renew_every
    }
}

/// A node's id: random for every process start, so a restarted process is a new node and never
/// mistakes the leases or documents of its previous life for its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// A fresh random id (128 bits, hex).
    pub fn random() -> NodeId {
        NodeId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// An id read back from `nodes.id` (to dial that node), when it has the form every node's
    /// id has: 32 lowercase hex digits. Anything else is no node's id, and a link would refuse it.
    pub fn parse(id: &str) -> Option<NodeId> {
        link::valid_node_id(id).then(|| NodeId(id.to_owned()))
    }

    /// The id as stored in `nodes.id` and `documents.owner`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many times a claim or a handover that PostgreSQL aborted to break a deadlock is run
/// again before the error is returned.
pub(crate) const DEADLOCK_RETRIES: u32 = 3;

/// Whether PostgreSQL aborted the transaction to break a deadlock (SQLSTATE 40P01).
pub(crate) fn is_deadlock(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Db(e)
        if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED))
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// This node's lease lapsed or it left: it may not claim, and owns nothing.
    #[error("this node is fenced: {0}")]
    Fenced(Fenced),
    /// A document's row disappeared while it was being claimed.
    #[error("a document was removed while it was being claimed (one of {0:?})")]
    Vanished(Vec<String>),
    /// The database did not answer within the time the caller gave it.
    #[error("the database did not answer in time")]
    Overdue,
    /// A claim waited as long as it was allowed to while another node's lease stayed live.
    #[error("document {name} is still held by node {owner} after waiting {} ms", .waited.as_millis())]
    StillHeld {
        /// The document.
        name: String,
        /// The node that holds it.
        owner: String,
        /// How long the claim waited.
        waited: Duration,
    },
}

/// Why a node stopped being allowed to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// No renewal succeeded before the lease ended (the database could not be reached in time).
    RenewalMissed,
    /// The database answered that the lease had already ended, or that the node's row is gone.
    LeaseExpired,
    /// The node handed its documents over and left (shutdown).
    Left,
}

impl fmt::Display for Fenced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fenced::RenewalMissed => "no lease renewal succeeded before the lease ended",
            Fenced::LeaseExpired => "the database says the lease has ended",
            Fenced::Left => "the node handed its documents over and left",
        })
    }
}
