//! Who owns which document: claims, look-ups, handover, and the fence a commit runs.
//!
//! A document's row in `documents` names its owner (a node id, or NULL when nobody holds it)
//! and an epoch that rises by one every time the document is claimed. A claim locks the row
//! (`SELECT … FOR UPDATE`) before it decides, so two claimers of one document are serialised by
//! the database: the second sees what the first wrote. A commit of the owner runs [`fence`]
//! inside its own transaction, which takes the same row in share mode; so a commit and a claim
//! never overlap, and a commit of an owner whose epoch has moved on finds nothing and is rolled
//! back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::{Client, Transaction};

use super::metrics::ClusterMetrics;
use super::node::{Inner, Node};
use super::{is_deadlock, ClusterError, Fenced, NodeId, DEADLOCK_RETRIES};

/// The outcome of a claim of several documents together.
#[derive(Debug, Clone, PartialEq)]
pub enum Claims {
    /// This node owns every one of them now: each name with its epoch, in name order.
    Won(Vec<(String, Won)>),
    /// Another node holds one of them with a live lease; none was taken.
    Held(Held),
}

/// The outcome of one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This node owns the document now, at `epoch`.
    Won(Won),
    /// Another node holds the document with a live lease.
    Held(Held),
}

/// A won claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Won {
    /// The epoch this node owns the document at; every commit is fenced with it.
    pub epoch: i64,
    /// Who had the document before.
    pub from: Previous,
}

/// Who held a document before a claim won it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// Nobody: the document had no row yet.
    New,
    /// Nobody: its owner handed it over (or it was never owned).
    Unowned,
    /// A node whose lease had lapsed (a takeover).
    Lapsed(String),
    /// This node itself, at an older epoch (for example a document loaded again after it was
    /// unloaded): the older epoch's commits are fenced from now on.
    Myself,
}

/// A claim that found the document held.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The document (of those claimed together, one that is held).
    pub name: String,
    /// The node that holds it.
    pub owner: String,
    /// Its internal link, where this node forwards sockets and writes for the document.
    pub address: String,
    /// The epoch it holds the document at.
    pub epoch: i64,
    /// How long its lease lasts from the moment of the claim, by the database's clock, unless it
    /// renews.
    pub lease_left: Duration,
}

/// Who owns a document, as the database says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The document has no row.
    Absent,
    /// Nobody holds it.
    Unowned {
        /// Its current epoch.
        epoch: i64,
    },
    /// A node holds it with a live lease.
    Live {
        /// The owner.
        node: String,
        /// The owner's internal link.
        address: String,
        /// The epoch it holds the document at.
        epoch: i64,
    },
    /// Its owner's lease has lapsed (or the owner's row is gone): the next claim takes it.
    Lapsed {
        /// The owner of record.
        node: String,
        /// The epoch it held the document at.
        epoch: i64,
    },
}

/// The shortest wait between two tries of a waiting claim.
const MIN_CLAIM_POLL: Duration = Duration::from_millis(5);

impl Node {
    /// Claims `name` once: takes it if it has no row, nobody holds it, its owner's lease lapsed,
    /// or this node holds it already; always at a higher epoch. Refused when this node is fenced
    /// or its own lease has ended by the database's clock.
    pub async fn claim(&self, name: &str) -> Result<Claim, ClusterError> {
        match self.claim_all(&[name]).await? {
            Claims::Won(mut won) => match won.pop() {
                Some((_, won)) => Ok(Claim::Won(won)),
                None => Err(ClusterError::Vanished(vec![name.to_owned()])),
            },
            Claims::Held(held) => Ok(Claim::Held(held)),
        }
    }

    /// Claims several documents together, all or none, in one transaction: the documents a
    /// review keeps on one node. Each is taken on the terms of [`Node::claim`] and its epoch
    /// rises; if any is held by another node with a live lease, none is taken. Rows are locked
    /// in name order, so claimers of overlapping sets cannot deadlock. Answers in name order.
    ///
    /// A claim that PostgreSQL chose as the victim of a deadlock (with something that locks the
    /// same rows in another order) is run again, up to [`DEADLOCK_RETRIES`] times.
    pub async fn claim_all(&self, names: &[&str]) -> Result<Claims, ClusterError> {
        claim_all(&self.inner, names).await
    }

    /// Claims `name`, waiting up to `patience` for a live owner's lease to lapse (or for it to
    /// hand the document over); see [`Node::claim_all_within`].
    pub async fn claim_within(&self, name: &str, patience: Duration) -> Result<Won, ClusterError> {
        let mut won = self.claim_all_within(&[name], patience).await?;
        match won.pop() {
            Some((_, won)) => Ok(won),
            None => Err(ClusterError::Vanished(vec![name.to_owned()])),
        }
    }

    /// Claims `names` together, waiting up to `patience` while another node holds one of them
    /// with a live lease. Looks again when that lease would end by the database's reckoning, and
    /// at least once per renewal interval (an owner that hands over is seen at the next look);
    /// an owner that keeps renewing keeps its documents.
    pub async fn claim_all_within(
        &self,
        names: &[&str],
        patience: Duration,
    ) -> Result<Vec<(String, Won)>, ClusterError> {
        let started = Instant::now();
        let deadline = started + patience;
        loop {
            let held = match self.claim_all(names).await? {
                Claims::Won(won) => return Ok(won),
                Claims::Held(held) => held,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ClusterError::StillHeld {
                    name: held.name,
                    owner: held.owner,
                    waited: now - started,
                });
            }
            let wait = held
                .lease_left
                .max(MIN_CLAIM_POLL)
                .min(self.inner.settings.renew_every())
                .min(deadline - now);
            tokio::time::sleep(wait).await;
        }
    }

    /// Who owns `name` now, by the database's clock.
    pub async fn owner_of(&self, name: &str) -> Result<Ownership, ClusterError> {
        owner_of(&self.inner, name).await
    }

    /// Hands `name` over if this node still holds it at `epoch` (owner set to NULL, so the
    /// next claimer takes it at once). Answers whether it did.
    pub async fn release(&self, name: &str, epoch: i64) -> Result<bool, ClusterError> {
        let inner = &self.inner;
        let released = {
            let client = inner.session.client().await?;
            client
                .execute(
                    "UPDATE documents SET owner = NULL WHERE name = $1 AND owner = $2 AND epoch = $3",
                    &[&name, &inner.id.as_str(), &epoch],
                )
                .await?
                == 1
        };
        let mut owned = inner.owned();
        if owned.get(name) == Some(&epoch) {
            owned.remove(name);
            inner.count_owned(&owned);
        }
        if released {
            ClusterMetrics::add(&inner.metrics.handed_over, 1);
        }
        Ok(released)
    }

    /// Forgets `name` at `epoch` after a commit found it fenced (another node took it).
    pub fn lost(&self, name: &str, epoch: i64) {
        self.inner.lost(name, epoch);
    }

    /// [`fence`] for this node; false at once when the node knows it is fenced.
    pub async fn fence(
        &self,
        tx: &Transaction<'_>,
        name: &str,
        epoch: i64,
    ) -> Result<bool, tokio_postgres::Error> {
        if self.inner.is_fenced().is_some() {
            return Ok(false);
        }
        fence(tx, name, &self.inner.id, epoch).await
    }
}

/// Claims `names` on `client` (the node's session, or the storage backend's connection: one
/// piece of SQL for both; `docs/cluster.md`, "Leases, epochs and the fence"), and keeps the
/// node's view of what it owns and its counters. A claim that PostgreSQL chose as the victim of
/// a deadlock is run again, up to [`DEADLOCK_RETRIES`] times.
pub(super) async fn claim_on(
    inner: &Inner,
    client: &mut Client,
    names: &[&str],
) -> Result<Claims, ClusterError> {
    let mut retries = 0;
    loop {
        match claim_once(inner, client, names).await {
            Err(e) if is_deadlock(&e) && retries < DEADLOCK_RETRIES => {
                retries += 1;
                ClusterMetrics::add(&inner.metrics.deadlocks, 1);
                tracing::warn!(node = %inner.id, "cluster: a claim was a deadlock's victim; claiming again");
            }
            outcome => return outcome,
        }
    }
}

/// One try of [`claim_on`], in one transaction.
async fn claim_once(
    inner: &Inner,
    client: &mut Client,
    names: &[&str],
) -> Result<Claims, ClusterError> {
    if let Some(why) = inner.is_fenced() {
        return Err(ClusterError::Fenced(why));
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let me = inner.id.as_str();
    let tx = client.transaction().await?;
    let live: Option<bool> = tx
        .query_opt(
            "SELECT lease_until > clock_timestamp() FROM nodes WHERE id = $1",
            &[&me],
        )
        .await?
        .map(|row| row.get(0));
    if live != Some(true) {
        drop(tx);
        inner.fence(Fenced::LeaseExpired);
        return Err(ClusterError::Fenced(Fenced::LeaseExpired));
    }
    // Create the rows that are missing (nobody's, epoch 0). A concurrent claimer inserting
    // the same name waits for this transaction and then finds the row.
    let created: HashSet<String> = tx
        .query(
            "INSERT INTO documents (name, owner, epoch) \
             SELECT name, NULL, 0 FROM unnest($1::text[]) AS name ORDER BY name \
             ON CONFLICT (name) DO NOTHING RETURNING name",
            &[&sorted],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Lock every row, in name order, and see who holds each.
    let rows = tx
        .query(
            "SELECT name, owner, epoch FROM documents WHERE name = ANY($1) \
             ORDER BY name FOR UPDATE",
            &[&sorted],
        )
        .await?;
    let mut from: Vec<(String, Previous)> = Vec::with_capacity(rows.len());
    let mut others: Vec<String> = Vec::new();
    for row in &rows {
        let name: String = row.get(0);
        let owner: Option<String> = row.get(1);
        let previous = match owner {
            None if created.contains(&name) => Previous::New,
            None => Previous::Unowned,
            Some(owner) if owner == me => Previous::Myself,
            Some(owner) => {
                others.push(owner.clone());
                Previous::Lapsed(owner)
            }
        };
        from.push((name, previous));
    }
    if rows.len() != sorted.len() {
        // Only a document deleted between the insert and the lock can be missing.
        return Err(ClusterError::Vanished(
            sorted.iter().map(|n| n.to_string()).collect(),
        ));
    }
    if !others.is_empty() {
        // A fresh snapshot (a new statement), share-locked so that a renewal in flight
        // finishes first and is seen.
        let leases = tx
            .query(
                "SELECT id, address, greatest(extract(epoch FROM lease_until - clock_timestamp()), 0)::float8 \
                 FROM nodes WHERE id = ANY($1) AND lease_until > clock_timestamp() \
                 ORDER BY id FOR SHARE",
                &[&others],
            )
            .await?;
        if let Some(lease) = leases.first() {
            let owner: String = lease.get(0);
            let (name, epoch) = rows
                .iter()
                .map(|row| {
                    (
                        row.get::<_, String>(0),
                        row.get::<_, Option<String>>(1),
                        row.get::<_, i64>(2),
                    )
                })
                .find(|(_, o, _)| o.as_deref() == Some(owner.as_str()))
                .map(|(name, _, epoch)| (name, epoch))
                .unwrap_or_default();
            ClusterMetrics::add(&inner.metrics.claims_held, 1);
            return Ok(Claims::Held(Held {
                name,
                owner,
                address: lease.get(1),
                epoch,
                lease_left: Duration::from_secs_f64(lease.get::<_, f64>(2)),
            }));
        }
    }
    let epochs: HashMap<String, i64> = tx
        .query(
            "UPDATE documents SET owner = $2, epoch = epoch + 1, claimed_at = now() WHERE name = ANY($1) \
             RETURNING name, epoch",
            &[&sorted, &me],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    if epochs.len() != sorted.len() {
        return Err(ClusterError::Vanished(
            sorted.iter().map(|n| n.to_string()).collect(),
        ));
    }
    tx.commit().await?;

    let mut won = Vec::with_capacity(from.len());
    let mut owned = inner.owned();
    // A node fenced while the claim committed owns nothing: its commits are refused.
    let keep = inner.is_fenced().is_none();
    for (name, previous) in from {
        let epoch = epochs.get(&name).copied().unwrap_or_default(); // all present, checked above
        if matches!(previous, Previous::Lapsed(_)) {
            ClusterMetrics::add(&inner.metrics.takeovers, 1);
        }
        if keep {
            owned.insert(name.clone(), epoch);
        }
        won.push((
            name,
            Won {
                epoch,
                from: previous,
            },
        ));
    }
    inner.count_owned(&owned);
    Ok(Claims::Won(won))
}

/// The fence of a commit, run inside the committing transaction before it commits: true while
/// `owner` still holds `name` at `epoch` and its lease is live by the database's clock. On false
/// the caller rolls the whole transaction back and reports the document fenced.
///
/// The document's row is taken in share mode until the transaction ends, so a claim (which
/// takes it for update) waits for the commit, and a commit waits for a claim under way and then
/// sees its new epoch. `clock_timestamp()`, not `now()`: `now()` is when the caller's
/// transaction began, which may be before the lease ended.
pub async fn fence(
    tx: &Transaction<'_>,
    name: &str,
    owner: &NodeId,
    epoch: i64,
) -> Result<bool, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM documents d \
             WHERE d.name = $1 AND d.owner = $2 AND d.epoch = $3 \
             AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = $2 AND n.lease_until > clock_timestamp()) \
             FOR SHARE OF d",
            &[&name, &owner.as_str(), &epoch],
        )
        .await?;
    Ok(row.is_some())
}

/// Who owns `name` now, by the database's clock, asked on `inner`'s session.
pub(super) async fn owner_of(inner: &Inner, name: &str) -> Result<Ownership, ClusterError> {
    let client = inner.session.client().await?;
    let row = client
        .query_opt(
            "SELECT d.owner, d.epoch, n.address, coalesce(n.lease_until > clock_timestamp(), false) \
             FROM documents d LEFT JOIN nodes n ON n.id = d.owner WHERE d.name = $1",
            &[&name],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Ownership::Absent);
    };
    let owner: Option<String> = row.get(0);
    let epoch: i64 = row.get(1);
    let address: Option<String> = row.get(2);
    let live: bool = row.get(3);
    Ok(match (owner, address) {
        (None, _) => Ownership::Unowned { epoch },
        (Some(node), Some(address)) if live => Ownership::Live {
            node,
            address,
            epoch,
        },
        (Some(node), _) => Ownership::Lapsed { node, epoch },
    })
}

/// [`Node::claim_all`] for `inner`'s node, on its session.
pub(super) async fn claim_all(inner: &Inner, names: &[&str]) -> Result<Claims, ClusterError> {
    if let Some(why) = inner.is_fenced() {
        return Err(ClusterError::Fenced(why));
    }
    let mut client = inner.session.client().await?;
    claim_on(inner, &mut client, names).await
}
