//! Loading a document: its group is claimed on the store's claim session, a connection of its
//! own, and the document is then read on the database thread. Never on the commit connection:
//! a claim may wait on a row lock another node holds (its commit, its claim, a transaction of a
//! paused node), and the commits of every document this node serves must not wait with it.
//!
//! The claim session sets `lock_timeout` ([`super::owner::Owner::lock_limit`]): a claim that
//! waited that long for a lock gives up and counts as held, and the load tries again, as it
//! does while another node's live lease holds the group. The waits between tries are tokio
//! timers on the loading task, so a load that waits holds no thread, and dropping the load
//! (the server shutting down) ends the wait at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::owner::{ClaimError, Claimed};
use super::{lock, Call, PgStore, Shared, MIN_CLAIM_POLL};
use crate::storage::types::{StoreError, StoredDoc};

/// The claim session: one connection, made when a load first needs it and again after it
/// broke, used by one claim at a time.
#[derive(Debug)]
pub(super) struct ClaimSession {
    config: tokio_postgres::Config,
    open: tokio::sync::Mutex<Option<Open>>,
}

/// An open connection of the claim session and the task driving it (ended with it).
struct Open {
    client: Client,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open").finish_non_exhaustive()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one try of a claim found.
enum Tried {
    /// The group is this node's now.
    Won,
    /// Another node's live lease holds `name`.
    Held {
        name: String,
        owner: String,
        lease_left: Duration,
    },
    /// A row of the group stayed locked by another session for the claim's lock limit.
    Locked,
}

impl ClaimSession {
    /// A session on `config` (the store's, named after the node with " claims" added, so the
    /// store's clean-up of its own stale sessions never ends it).
    pub(super) fn new(mut config: tokio_postgres::Config) -> ClaimSession {
        let name = format!(
            "{} claims",
            config.get_application_name().unwrap_or("debrief")
        );
        config.application_name(name);
        ClaimSession {
            config,
            open: tokio::sync::Mutex::new(None),
        }
    }
}

impl PgStore {
    /// Claims the document's group for this node and reads its snapshot and log, with the
    /// records appended here and not committed yet. While another node holds the group with a
    /// live lease (or a row of it stays locked past the claim session's lock limit), the load
    /// waits on a timer and tries again, at the lease's end by the database's reckoning and at
    /// least once a renewal interval, for at most the owner's patience (a lease and a
    /// renewal); then it fails with [`StoreError::Held`] or [`StoreError::Locked`]. Dropping
    /// the future ends the wait.
    pub async fn load(&self, name: &str) -> Result<StoredDoc, StoreError> {
        let owner = &self.shared.ownership.owner;
        let started = Instant::now();
        let deadline = started + owner.patience();
        loop {
            let tried = claim_group(&self.shared, name).await?;
            let lease_left = match &tried {
                Tried::Won => return self.read(name).await,
                Tried::Held { lease_left, .. } => *lease_left,
                Tried::Locked => Duration::ZERO,
            };
            let now = Instant::now();
            if now >= deadline {
                let waited = now - started;
                return Err(match tried {
                    Tried::Held { name, owner, .. } => StoreError::Held {
                        name,
                        owner,
                        waited,
                    },
                    _ => StoreError::Locked {
                        name: name.to_owned(),
                        waited,
                    },
                });
            }
            if let Tried::Held {
                name: held,
                owner: holder,
                ..
            } = &tried
            {
                tracing::debug!(doc = %name, held = %held, owner = %holder, "the document's group is held by another node; waiting");
            } else {
                tracing::debug!(doc = %name, "a row of the document's group is locked by another session; waiting");
            }
            // Looked at again when the lease would end, and at least once a renewal interval.
            tokio::time::sleep(
                lease_left
                    .max(MIN_CLAIM_POLL)
                    .min(owner.poll())
                    .min(deadline - now),
            )
            .await;
        }
    }

    /// Takes the review role ([`super::REVIEWS_ROLE`]) if nobody holds it (never claimed, handed
    /// over, or its holder's lease lapsed), in one try, and then reads every metadata tree
    /// again, so this node serves reviews from what the node before it committed. True once
    /// this node serves reviews; false while another node's live lease holds the role. A tree
    /// that cannot be read again leaves the role taken but not served: the next call claims it
    /// again (a higher epoch) and reads again.
    pub async fn take_reviews(&self) -> Result<bool, StoreError> {
        if self.serves_reviews() {
            return Ok(true);
        }
        match claim_group(&self.shared, super::REVIEWS_ROLE).await? {
            Tried::Won => {}
            Tried::Held { .. } | Tried::Locked => return Ok(false),
        }
        // Recorded only if the node that claimed is still the one the store writes for (it may
        // have registered again meanwhile).
        if !lock(&self.shared.state)
            .claims
            .contains_key(super::REVIEWS_ROLE)
        {
            return Ok(false);
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.reload_trees())
            .await
            .map_err(|e| StoreError::Postgres(format!("reading the metadata again: {e}")))??;
        self.shared
            .serves_reviews
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(true)
    }

    /// Reads a document this node has just claimed, on the database thread.
    async fn read(&self, name: &str) -> Result<StoredDoc, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.calls
            .send(Call::Read {
                name: name.to_owned(),
                reply,
            })
            .map_err(|_| StoreError::FlusherGone)?;
        answer.await.map_err(|_| StoreError::FlusherGone)?
    }
}

/// One try: claims `name` with the documents of its group that this node does not hold yet (or
/// whose records were dropped), on the claim session, bounded by the store's timeout. A sibling
/// this node holds may be open here, and claiming it again would raise its epoch under its
/// owner. `name` itself is claimed every time, as a document is loaded only when nothing here
/// serves it, so commits of an older load are fenced.
async fn claim_group(shared: &Arc<Shared>, name: &str) -> Result<Tried, StoreError> {
    if let Some(stopped) = shared.stopped.get() {
        return Err(stopped.clone());
    }
    let owner = shared.ownership.owner.clone();
    if let Some(why) = owner.fenced() {
        return Err(StoreError::NodeFenced(why));
    }
    // What an earlier node of this store claimed is not this node's.
    let node = owner.node();
    shared.let_go_of_earlier_node(&node);
    let group = (shared.ownership.group)(name);
    let names: Vec<String> = {
        let state = lock(&shared.state);
        let mut names: Vec<String> = group
            .into_iter()
            .filter(|g| {
                g != name && (!state.claims.contains_key(g) || state.failed.contains_key(g))
            })
            .collect();
        names.push(name.to_owned());
        names
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let session = &shared.claims;
    let mut open = session.open.lock().await;
    let claimed = tokio::time::timeout(shared.timeout, async {
        let client = match open.as_mut() {
            Some(o) if !o.client.is_closed() => &mut o.client,
            _ => {
                *open = None;
                &mut open.insert(connect(&session.config, &*owner).await?).client
            }
        };
        owner.claim(client, &names).await.map_err(|e| match e {
            ClaimError::Db(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                ClaimFailed::Locked
            }
            ClaimError::Db(e) => ClaimFailed::Store(StoreError::Postgres(super::worker::why(&e))),
            ClaimError::Fenced(why) => ClaimFailed::Store(StoreError::NodeFenced(why)),
            ClaimError::Other(line) => ClaimFailed::Store(StoreError::Postgres(line)),
        })
    })
    .await;
    let claimed = match claimed {
        Ok(Ok(claimed)) => claimed,
        Ok(Err(ClaimFailed::Locked)) => return Ok(Tried::Locked),
        Ok(Err(ClaimFailed::Store(e))) => return Err(e),
        Err(_) => {
            // The session may be hung: made again by the next claim.
            *open = None;
            return Err(super::worker::overdue_error(shared.timeout));
        }
    };
    drop(open);
    match claimed {
        Claimed::Won(epochs) => {
            let mut state = lock(&shared.state);
            // Claimed by the node the store writes for now (it cannot have changed back).
            if state.claimed_by == node {
                for (name, epoch) in epochs {
                    state.claims.insert(name, epoch);
                }
            }
            Ok(Tried::Won)
        }
        Claimed::Held {
            name,
            owner,
            lease_left,
        } => Ok(Tried::Held {
            name,
            owner,
            lease_left,
        }),
    }
}

/// Why a claim did not come back.
enum ClaimFailed {
    /// It waited for a lock for the session's lock limit (SQLSTATE `55P03`).
    Locked,
    Store(StoreError),
}

impl From<tokio_postgres::Error> for ClaimFailed {
    fn from(e: tokio_postgres::Error) -> Self {
        ClaimFailed::Store(StoreError::Postgres(super::worker::why(&e)))
    }
}

/// Opens the claim session's connection, set up as the store's others are (commits on disk
/// before they are acknowledged, a transaction left idle ended after the node's lease) and with
/// the owner's lock limit.
async fn connect(
    config: &tokio_postgres::Config,
    owner: &dyn super::owner::Owner,
) -> Result<Open, ClaimFailed> {
    let (client, connection) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %super::worker::why(&e), "the claim session's connection ended");
        }
    });
    let open = Open { client, task };
    let mut setup = "SET synchronous_commit = on;".to_owned();
    if let Some(limit) = owner.idle_limit() {
        setup.push_str(&format!(
            " SET idle_in_transaction_session_timeout = {};",
            limit.as_millis().max(1)
        ));
    }
    if let Some(limit) = owner.lock_limit() {
        setup.push_str(&format!(
            " SET lock_timeout = {};",
            limit.as_millis().max(1)
        ));
    }
    open.client.batch_execute(&setup).await?;
    Ok(open)
}
