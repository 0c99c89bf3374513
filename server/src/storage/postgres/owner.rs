//! What the PostgreSQL backend asks of the node it writes for: claiming documents (on the
//! backend's claim session) and fencing a commit (on its commit connection, inside the commit's
//! transaction), whether the node may still write, and a wait for the moment it may not.
//!
//! The cluster room implements [`Owner`] (`cluster::member::Member`) and the composition root
//! hands it in, so the claim and the fence are one piece of SQL that the node and this backend
//! both run (`docs/cluster.md`, "Leases, epochs and the fence"). Storage never names the cluster
//! (`server/tests/layers.rs`), and never learns how documents group: which documents are claimed
//! together is the [`Ownership::group`] function it is given.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

/// A future run on the database thread (never sent to another thread).
pub type Local<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A future run on the server's runtime, by the task that loads a document.
pub type Sent<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of a claim of a group of documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Every document claimed is this node's now: each name with the epoch its commits are
    /// fenced with.
    Won(Vec<(String, i64)>),
    /// Another node holds one of them with a live lease; none was taken.
    Held {
        /// The document that is held.
        name: String,
        /// The node holding it.
        owner: String,
        /// How long its lease lasts unless it renews, by the database's clock.
        lease_left: Duration,
    },
}

/// Why a claim failed.
#[derive(Debug)]
pub enum ClaimError {
    /// A statement failed (the connection may be gone).
    Db(tokio_postgres::Error),
    /// This node is fenced (its lease lapsed or it left): said in words.
    Fenced(String),
    /// Anything else, said in one line.
    Other(String),
}

/// The node this backend writes for.
pub trait Owner: Send + Sync + fmt::Debug {
    /// The node's id: `documents.owner` of what it claims. It may change while the store runs:
    /// a node that lost its lease registers again under a new id.
    fn node(&self) -> String;

    /// Why the node may no longer write, once it may not; `None` while its lease is live.
    fn fenced(&self) -> Option<String>;

    /// How long a load waits for another node's live lease to lapse or be handed over before
    /// it gives up.
    fn patience(&self) -> Duration;

    /// The longest wait between two tries of a waiting load (a handover is seen within it).
    fn poll(&self) -> Duration;

    /// How long a transaction of the store may stay idle before PostgreSQL ends it (the node's
    /// lease: a node paused mid-commit must not keep its row locks from a claimer for longer);
    /// `None` leaves the server's setting.
    fn idle_limit(&self) -> Option<Duration>;

    /// How long a claim may wait for a row lock another session holds before PostgreSQL
    /// ends it (`lock_timeout` of the claim session); `None` leaves the server's setting. The
    /// claim session serves every load of the store one claim at a time, so a claim stuck
    /// behind a paused node's transaction must give up well within a lease and try again.
    fn lock_limit(&self) -> Option<Duration>;

    /// Claims `names` together, in one short transaction on `client` (the store's claim
    /// session): all or none.
    fn claim<'a>(
        &'a self,
        client: &'a mut Client,
        names: &'a [&'a str],
    ) -> Sent<'a, Result<Claimed, ClaimError>>;

    /// Resolves, with why, once the node claiming now is fenced (at once if it is already):
    /// the documents it claimed are let go then, without waiting for their next commit to be
    /// refused. A document that asks before its claim and is claimed by a later node (the
    /// server registered again in between) hears of the earlier node's fence, which only
    /// closes it early.
    fn until_fenced(&self) -> Sent<'static, String>;

    /// Inside a commit's transaction: true while this node still holds `name` at `epoch` with a
    /// live lease. The row stays share-locked until the transaction ends.
    fn fence<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        name: &'a str,
        epoch: i64,
    ) -> Local<'a, Result<bool, tokio_postgres::Error>>;

    /// A commit found `name` fenced at `epoch`: the node no longer holds it.
    fn lost(&self, name: &str, epoch: i64);

    /// The node's lines for `/metrics`.
    fn render_metrics(&self) -> String;
}

/// Who the backend writes for, and which documents are claimed together.
#[derive(Clone)]
pub struct Ownership {
    /// The node.
    pub owner: Arc<dyn Owner>,
    /// The documents claimed together with a document that is loaded (the document itself
    /// among them): a review's three documents go to one node (`docs/cluster.md`, "One owner per
    /// review"). Given by the layer that knows document names.
    pub group: fn(&str) -> Vec<String>,
}

impl fmt::Debug for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ownership")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}
