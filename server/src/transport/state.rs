//! What the transport shares between every request and connection: the open documents, the
//! store (whose health the readiness probe reports), the limits, the counters, and the owners of
//! every task. Built once by the composition root (`lib.rs`); the review API has a state of its
//! own (`reviews::api::ApiState`), so nothing here knows the review domain.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{admission, stateless};
use crate::documents::access;
use crate::documents::peer::ConnId;
use crate::documents::registry::Registry;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::storage::store::{Damage, Store};

/// State shared by every request and connection.
#[derive(Debug)]
pub struct AppState {
    /// Open documents.
    pub registry: Arc<Registry>,
    /// The store.
    pub store: Store,
    /// Limits in force.
    pub limits: Limits,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Owns every connection and document task.
    pub tracker: TaskTracker,
    /// Source of connection ids.
    pub next_conn: AtomicU64,
    /// Who may open which document.
    pub authorizer: Arc<dyn access::Authorizer>,
    /// What answers stateless messages.
    pub stateless: Arc<dyn stateless::StatelessHandler>,
    /// What is damaged, when the store was opened read-only despite damage
    /// (`--on-damage read-only`); `None` when it is healthy.
    pub damage: Option<Damage>,
    /// What clients that have not authenticated may hold (see [`admission`]).
    pub budget: Arc<admission::Budget>,
}

impl AppState {
    /// A fresh connection (or attachment) id.
    pub fn conn_id(&self) -> ConnId {
        ConnId(
            self.next_conn
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )
    }
}
