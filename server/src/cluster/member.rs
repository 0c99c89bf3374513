//! The node as the owner the PostgreSQL backend writes for
//! ([`crate::storage::postgres::owner::Owner`]): the backend runs this room's claim
//! ([`super::ownership::claim_on`]) on its claim session and its fence
//! ([`super::ownership::fence`]) on its commit connection, so a document is claimed and a commit
//! fenced by one piece of SQL, whoever runs it, and the node's view of what it owns and its
//! counters stay whole. The backend's documents watch the node's lease through it
//! ([`Owner::until_fenced`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use super::node::{Inner, Node};
use super::ownership::{claim_on, fence, Claims};
use super::{ClusterError, Fenced};
use crate::storage::postgres::owner::{ClaimError, Claimed, Local, Owner, Sent};

/// A handle on a registered node for the storage backend; cheap to clone. It does not keep the
/// node registered: once the [`super::node::Node`] shuts down or is dropped, the handle sees it
/// fenced and claims nothing more.
#[derive(Debug, Clone)]
pub struct Member {
    inner: Arc<Inner>,
}

impl Node {
    /// The node as the PostgreSQL backend's owner: it claims and fences on the backend's own
    /// connection, with this node's id, lease and counters.
    pub fn member(&self) -> Member {
        Member {
            inner: self.inner.clone(),
        }
    }
}

impl Owner for Member {
    fn node(&self) -> String {
        self.inner.id.as_str().to_owned()
    }

    fn fenced(&self) -> Option<String> {
        self.inner.is_fenced().map(|why| why.to_string())
    }

    /// A live owner's lease lapses within one lease of the claim that found it; one renewal
    /// interval more lets the claim look once after that.
    fn patience(&self) -> Duration {
        self.inner.settings.lease() + self.inner.settings.renew_every()
    }

    fn poll(&self) -> Duration {
        self.inner.settings.renew_every()
    }

    fn idle_limit(&self) -> Option<Duration> {
        Some(self.inner.settings.lease())
    }

    fn lock_limit(&self) -> Option<Duration> {
        Some(lock_limit(&self.inner.settings))
    }

    fn until_fenced(&self) -> Sent<'static, String> {
        let state = self.inner.watch();
        Box::pin(async move {
            // The node lives as long as this watch's sender: `None` only once it is gone.
            super::node::until_fenced(state)
                .await
                .unwrap_or(Fenced::Left)
                .to_string()
        })
    }

    fn claim<'a>(
        &'a self,
        client: &'a mut Client,
        names: &'a [&'a str],
    ) -> Sent<'a, Result<Claimed, ClaimError>> {
        Box::pin(async move {
            match claim_on(&self.inner, client, names).await {
                Ok(Claims::Won(won)) => Ok(Claimed::Won(
                    won.into_iter()
                        .map(|(name, won)| (name, won.epoch))
                        .collect(),
                )),
                Ok(Claims::Held(held)) => Ok(Claimed::Held {
                    name: held.name,
                    owner: held.owner,
                    lease_left: held.lease_left,
                }),
                Err(ClusterError::Db(e)) => Err(ClaimError::Db(e)),
                Err(ClusterError::Fenced(why)) => Err(ClaimError::Fenced(why.to_string())),
                Err(other) => Err(ClaimError::Other(other.to_string())),
            }
        })
    }

    fn fence<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        name: &'a str,
        epoch: i64,
    ) -> Local<'a, Result<bool, tokio_postgres::Error>> {
        Box::pin(async move {
            if self.inner.is_fenced().is_some() {
                return Ok(false);
            }
            fence(tx, name, &self.inner.id, epoch).await
        })
    }

    fn lost(&self, name: &str, epoch: i64) {
        self.inner.lost(name, epoch);
    }

    fn render_metrics(&self) -> String {
        self.inner.metrics.render(self.inner.is_fenced().is_none())
    }
}

/// The owner a PostgreSQL store is opened with before its node registers: the store connects,
/// takes its locks and creates its tables first (so a database that cannot be used is reported
/// as the store reports it), then the node registers in it and [`MemberSlot::fill`] hands the
/// node over. Until then it claims nothing and the store is not ready.
///
/// A node that lost its lease stays fenced for good; the server registers a new one and fills
/// the slot again, and from then on the store claims and fences as the new node. Documents the
/// old node held were let go when it was fenced, so each is claimed again (at a higher epoch)
/// before anything more of it is committed.
#[derive(Debug)]
pub struct MemberSlot {
    settings: super::Settings,
    current: std::sync::RwLock<Current>,
}

/// The node a slot stands for now.
#[derive(Debug)]
struct Current {
    /// Its id (known before it registers).
    id: super::NodeId,
    /// The registered node; `None` until it registered.
    member: Option<Member>,
}

/// Why a slot refuses before its node registered.
const NOT_REGISTERED: &str = "the node has not registered yet";

/// How long the store's claim may wait for a row lock: a quarter of the lease. Any commit or
/// claim that is not stuck holds a row for milliseconds; one that holds it longer belongs to a
/// paused node (PostgreSQL ends its transaction within a lease), and the claim session, which
/// serves every load of the store one claim at a time, must not wait that long for it.
fn lock_limit(settings: &super::Settings) -> Duration {
    settings.lease() / 4
}

impl MemberSlot {
    /// A slot for the node that will register as `id` with a lease of `settings`.
    pub fn new(id: super::NodeId, settings: super::Settings) -> MemberSlot {
        MemberSlot {
            settings,
            current: std::sync::RwLock::new(Current { id, member: None }),
        }
    }

    /// A node registered: from now on the slot is this member (at start, and again each time
    /// the server registered anew after losing its lease).
    pub fn fill(&self, member: Member) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        current.id = member.inner.id.clone();
        current.member = Some(member);
    }

    /// The member now, if one registered.
    fn member(&self) -> Option<Member> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .member
            .clone()
    }
}

impl Owner for MemberSlot {
    fn node(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .id
            .as_str()
            .to_owned()
    }

    fn fenced(&self) -> Option<String> {
        match self.member() {
            Some(member) => member.fenced(),
            None => Some(NOT_REGISTERED.to_owned()),
        }
    }

    fn patience(&self) -> Duration {
        self.settings.lease() + self.settings.renew_every()
    }

    fn poll(&self) -> Duration {
        self.settings.renew_every()
    }

    /// Known before the node registers: the store's first session is set up before it.
    fn idle_limit(&self) -> Option<Duration> {
        Some(self.settings.lease())
    }

    fn lock_limit(&self) -> Option<Duration> {
        Some(lock_limit(&self.settings))
    }

    /// The node registered now; one not registered yet counts as fenced.
    fn until_fenced(&self) -> Sent<'static, String> {
        match self.member() {
            Some(member) => member.until_fenced(),
            None => Box::pin(std::future::ready(NOT_REGISTERED.to_owned())),
        }
    }

    fn claim<'a>(
        &'a self,
        client: &'a mut Client,
        names: &'a [&'a str],
    ) -> Sent<'a, Result<Claimed, ClaimError>> {
        match self.member() {
            Some(member) => Box::pin(async move { member.claim(client, names).await }),
            None => Box::pin(async { Err(ClaimError::Fenced(NOT_REGISTERED.to_owned())) }),
        }
    }

    fn fence<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        name: &'a str,
        epoch: i64,
    ) -> Local<'a, Result<bool, tokio_postgres::Error>> {
        match self.member() {
            Some(member) => Box::pin(async move { member.fence(tx, name, epoch).await }),
            None => Box::pin(async { Ok(false) }),
        }
    }

    fn lost(&self, name: &str, epoch: i64) {
        if let Some(member) = self.member() {
            member.lost(name, epoch);
        }
    }

    fn render_metrics(&self) -> String {
        self.member()
            .map_or_else(String::new, |member| member.render_metrics())
    }
}

impl MemberSlot {
    /// Who owns `name` now, by the database's clock, asked on the registered node's session;
    /// `Ok(None)` before a node registered. The routing of a document another node owns asks
    /// this before loading it.
    pub async fn owner_of(
        &self,
        name: &str,
    ) -> Result<Option<super::ownership::Ownership>, ClusterError> {
        match self.member() {
            Some(member) => super::ownership::owner_of(&member.inner, name)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Claims `names` together now, as the registered node (see
    /// [`super::node::Node::claim_all`]); `Ok(None)` before a node registered. The routing of a
    /// document nobody serves claims it before loading it, so that of two nodes taking it over at
    /// once the loser forwards to the winner at once instead of waiting for its lease.
    pub async fn claim_all(
        &self,
        names: &[&str],
    ) -> Result<Option<super::ownership::Claims>, ClusterError> {
        match self.member() {
            Some(member) => super::ownership::claim_all(&member.inner, names)
                .await
                .map(Some),
            None => Ok(None),
        }
    }
}
