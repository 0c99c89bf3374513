//! A node of the cluster: its row in `nodes`, its lease, and whether it may still commit.
//!
//! The lease is judged by the database's clock only: the database sets
//! `lease_until = now() + lease` at every renewal, every other node compares it with the
//! database's clock, and a renewal is refused once the lease has ended (by `clock_timestamp()`
//! when the renewal reaches the row), so a lapsed lease stays lapsed. The node itself never reads `lease_until` against its own wall clock. It
//! starts a monotonic timer *before* sending each renewal; the database's `now()` for that
//! renewal is later, so the lease the database granted ends no earlier than the timer. When no
//! renewal succeeded before the timer runs out, the node considers itself fenced at a moment
//! when, by the database's clock, its lease may still be live, never after it lapsed.
//!
//! Renewals run on a connection of their own, so that a claim waiting on a row lock never
//! delays them; a lost connection is opened again within the lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::{Client, Config};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::db::{self, Session};
use super::metrics::ClusterMetrics;
use super::{is_deadlock, ClusterError, Fenced, NodeId, Settings, DEADLOCK_RETRIES, SCHEMA};

/// Whether a node may still commit and serve its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease was renewed in time.
    Live,
    /// The node must stop committing, relaying and acknowledging for every document it owned;
    /// this never changes back (a node that lost its lease registers again as a new node).
    Fenced(Fenced),
}

/// How long lapsed nodes' rows are kept, for an operator who asks who owned what: removed by
/// the next node that registers after that.
const FORGET_LAPSED_NODES_AFTER: &str = "1 day";

/// A registered node. Dropping it stops renewing without handing anything over (like a crash:
/// its documents wait for the lease to lapse); [`Node::shut_down`] hands them over first.
#[derive(Debug)]
pub struct Node {
    pub(super) inner: Arc<Inner>,
    stop: CancellationToken,
}

/// What the node and its renewal task share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) id: NodeId,
    pub(super) address: String,
    pub(super) settings: Settings,
    /// Claims, look-ups and handovers, one at a time.
    pub(super) session: Session,
    pub(super) metrics: Arc<ClusterMetrics>,
    state: watch::Sender<LeaseState>,
    /// The documents this node holds, with the epoch it holds each at.
    owned: Mutex<HashMap<String, i64>>,
}

/// What a node registers with ([`Node::join`]).
#[derive(Debug)]
pub struct Joining<'a> {
    /// How to reach the database.
    pub config: Config,
    /// The node's id, new for this process ([`NodeId::random`]; known before registering so a
    /// storage backend opened first can name its sessions after it).
    pub id: NodeId,
    /// Where other nodes reach this node's internal link (`host:port`; empty while the node
    /// does not listen for links).
    pub address: &'a str,
    /// The lease.
    pub settings: Settings,
    /// Where the node counts.
    pub metrics: Arc<ClusterMetrics>,
    /// Owns the renewal task (the server's tracker, waited for at shutdown); without one it is
    /// spawned on the runtime. The task ends when the node shuts down or is dropped.
    pub tracker: Option<&'a TaskTracker>,
}

impl Node {
    /// Applies the schema, registers a new node reachable at `address` (its internal link),
    /// with a lease of `settings`, and starts renewing it.
    pub async fn register(
        config: Config,
        address: &str,
        settings: Settings,
        metrics: Arc<ClusterMetrics>,
    ) -> Result<Node, ClusterError> {
        Node::join(Joining {
            config,
            id: NodeId::random(),
            address,
            settings,
            metrics,
            tracker: None,
        })
        .await
    }

    /// [`Node::register`], its renewal task owned by `joining.tracker` when one is given.
    pub async fn join(joining: Joining<'_>) -> Result<Node, ClusterError> {
        let Joining {
            config,
            id,
            address,
            settings,
            metrics,
            tracker,
        } = joining;
        let session = Session::open(config, settings.lease()).await?;
        let renewals = db::connect(session.config()).await?;
        let sent = {
            let client = session.client().await?;
            client.batch_execute(SCHEMA).await?;
            client
                .execute(
                    &format!(
                        "DELETE FROM nodes WHERE lease_until < now() - interval '{FORGET_LAPSED_NODES_AFTER}'"
                    ),
                    &[],
                )
                .await?;
            let sent = Instant::now();
            client
                .execute(
                    "INSERT INTO nodes (id, address, lease_until) \
                     VALUES ($1, $2, now() + make_interval(secs => $3))",
                    &[&id.as_str(), &address, &settings.lease().as_secs_f64()],
                )
                .await?;
            sent
        };
        let (state, _) = watch::channel(LeaseState::Live);
        let inner = Arc::new(Inner {
            id,
            address: address.to_owned(),
            settings,
            session,
            metrics,
            state,
            owned: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        let renewing = renew(
            inner.clone(),
            Some(renewals),
            stop.clone(),
            sent + settings.lease(),
        );
        match tracker {
            Some(tracker) => tracker.spawn(renewing),
            None => tokio::spawn(renewing),
        };
        Ok(Node { inner, stop })
    }

    /// This node's id (`nodes.id`, `documents.owner`).
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// Where other nodes reach this node's internal link.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The lease settings.
    pub fn settings(&self) -> Settings {
        self.inner.settings
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Arc<ClusterMetrics> {
        &self.inner.metrics
    }

    /// Whether the node may still commit; document owners watch this and stop when it turns
    /// [`LeaseState::Fenced`].
    pub fn state(&self) -> watch::Receiver<LeaseState> {
        self.inner.watch()
    }

    /// Why the node is fenced, if it is.
    pub fn fenced_because(&self) -> Option<Fenced> {
        match *self.inner.state.borrow() {
            LeaseState::Live => None,
            LeaseState::Fenced(why) => Some(why),
        }
    }

    /// Waits until the node is fenced, and says why.
    pub async fn fenced(&self) -> Fenced {
        // The sender lives in `inner`, which `self` holds: `None` is not reached.
        until_fenced(self.state()).await.unwrap_or(Fenced::Left)
    }

    /// The epoch this node holds `name` at, if it holds it.
    pub fn owns(&self, name: &str) -> Option<i64> {
        self.inner.owned().get(name).copied()
    }

    /// Hands every document of this node over (owner set to NULL, so the next claimer takes it
    /// at once without waiting for the lease) and leaves the cluster (its row is removed). The
    /// node is fenced first, so its owners stop committing before their documents change hands.
    /// Answers how many documents were handed over.
    ///
    /// The rows are locked in name order, the order in which claims lock them, so a handover and
    /// a claim of the same documents cannot deadlock; a handover that PostgreSQL aborted to
    /// break a deadlock all the same is run again, up to [`DEADLOCK_RETRIES`] times.
    pub async fn shut_down(self) -> Result<u64, ClusterError> {
        self.stop.cancel();
        self.inner.fence(Fenced::Left);
        let mut retries = 0;
        let handed = loop {
            match self.inner.hand_over_all().await {
                Err(e) if is_deadlock(&e) && retries < DEADLOCK_RETRIES => {
                    retries += 1;
                    ClusterMetrics::add(&self.inner.metrics.deadlocks, 1);
                    tracing::warn!(node = %self.inner.id, "cluster: the handover was a deadlock's victim; handing over again");
                }
                outcome => break outcome?,
            }
        };
        ClusterMetrics::add(&self.inner.metrics.handed_over, handed);
        Ok(handed)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
        self.inner.fence(Fenced::Left);
    }
}

impl Inner {
    /// Marks the node fenced (once; the first reason stays) and forgets its documents.
    pub(super) fn fence(&self, why: Fenced) {
        let changed = self.state.send_if_modified(|state| {
            if *state == LeaseState::Live {
                *state = LeaseState::Fenced(why);
                true
            } else {
                false
            }
        });
        if changed {
            if why != Fenced::Left {
                tracing::warn!(node = %self.id, reason = %why, "cluster: this node is fenced");
            }
            let mut owned = self.owned();
            owned.clear();
            self.count_owned(&owned);
        }
    }

    /// One try of [`Node::shut_down`]'s transaction: every document of this node set unowned,
    /// and its row removed. Answers how many documents it handed over.
    async fn hand_over_all(&self) -> Result<u64, ClusterError> {
        let me = self.id.as_str();
        let mut client = self.session.client().await?;
        let tx = client.transaction().await?;
        // Not `WHERE owner = $1` alone: that locks rows in the order it finds them in the
        // table, while claims lock them in name order.
        let handed = tx
            .execute(
                "UPDATE documents SET owner = NULL WHERE owner = $1 AND name IN \
                 (SELECT name FROM documents WHERE owner = $1 ORDER BY name FOR UPDATE)",
                &[&me],
            )
            .await?;
        tx.execute("DELETE FROM nodes WHERE id = $1", &[&me])
            .await?;
        tx.commit().await?;
        Ok(handed)
    }

    /// Forgets `name` at `epoch` after a commit found it fenced (another node took it).
    pub(super) fn lost(&self, name: &str, epoch: i64) {
        let mut owned = self.owned();
        if owned.get(name) == Some(&epoch) {
            owned.remove(name);
            self.count_owned(&owned);
        }
    }

    /// A watch of the node's state (see [`Node::state`]).
    pub(super) fn watch(&self) -> watch::Receiver<LeaseState> {
        self.state.subscribe()
    }

    pub(super) fn is_fenced(&self) -> Option<Fenced> {
        match *self.state.borrow() {
            LeaseState::Live => None,
            LeaseState::Fenced(why) => Some(why),
        }
    }

    pub(super) fn owned(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        // Every update is a single insert, remove or clear.
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn count_owned(&self, owned: &HashMap<String, i64>) {
        self.metrics
            .owned_documents
            .store(owned.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits until the node watched by `state` ([`Node::state`]) is fenced, and says why; `None`
/// once the node is gone (dropped without being fenced first).
pub async fn until_fenced(mut state: watch::Receiver<LeaseState>) -> Option<Fenced> {
    loop {
        if let LeaseState::Fenced(why) = *state.borrow_and_update() {
            return Some(why);
        }
        if state.changed().await.is_err() {
            return None;
        }
    }
}

/// What one renewal found.
enum Renewal {
    Renewed,
    /// The database refused: the lease had ended, or the row is gone.
    Refused,
}

/// Renews the lease every `renew_every` until stopped, or until the node is fenced: when the
/// database refuses a renewal, or when `ends` (the earliest the granted lease can end, on the
/// monotonic clock) passes without a successful renewal.
async fn renew(
    inner: Arc<Inner>,
    mut client: Option<Client>,
    stop: CancellationToken,
    mut ends: Instant,
) {
    let settings = inner.settings;
    // After a failure, try again sooner than the next regular renewal.
    let retry = (settings.renew_every() / 4).max(Duration::from_millis(10));
    let mut next = Instant::now() + settings.renew_every();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(ends) => {
                inner.fence(Fenced::RenewalMissed);
                return;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        let attempt = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            outcome = tokio::time::timeout_at(ends, renew_once(&inner, &mut client)) => outcome,
        };
        match attempt {
            Ok(Ok(Renewal::Renewed)) => {
                ClusterMetrics::add(&inner.metrics.lease_renewals, 1);
                ends = sent + settings.lease();
                next = sent + settings.renew_every();
            }
            Ok(Ok(Renewal::Refused)) => {
                ClusterMetrics::add(&inner.metrics.renewals_failed, 1);
                inner.fence(Fenced::LeaseExpired);
                return;
            }
            Ok(Err(e)) => {
                ClusterMetrics::add(&inner.metrics.renewals_failed, 1);
                tracing::warn!(node = %inner.id, error = %e, "cluster: lease renewal failed");
                client = None;
                next = Instant::now() + retry;
            }
            Err(_) => {
                ClusterMetrics::add(&inner.metrics.renewals_failed, 1);
                inner.fence(Fenced::RenewalMissed);
                return;
            }
        }
    }
}

/// One renewal, on the renewal connection (opened again if the server closed it). Refused
/// once the lease has ended by the database's clock: a lapsed node cannot come back.
///
/// The lease is compared with `clock_timestamp()`, the moment the row is looked at, not with
/// `now()`, the moment the statement began: a renewal that waited on the row's lock (a claimer
/// reading the lease holds it in share mode) until after the lease ended would otherwise revive
/// a lease that another node has already seen lapse. The new lease does count from `now()`, no
/// later than the moment the node's timer started, so the node's own reckoning stays the more
/// cautious one.
async fn renew_once(
    inner: &Inner,
    client: &mut Option<Client>,
) -> Result<Renewal, tokio_postgres::Error> {
    let connection = match client.take() {
        Some(c) if !c.is_closed() => c,
        _ => db::connect(inner.session.config()).await?,
    };
    let renewed = connection
        .execute(
            "UPDATE nodes SET lease_until = now() + make_interval(secs => $2), renewed_at = now() \
             WHERE id = $1 AND lease_until > clock_timestamp()",
            &[&inner.id.as_str(), &inner.settings.lease().as_secs_f64()],
        )
        .await;
    *client = Some(connection);
    Ok(if renewed? == 1 {
        Renewal::Renewed
    } else {
        Renewal::Refused
    })
}
