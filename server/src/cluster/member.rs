//! The node as the owner the PostgreSQL backend writes for
//! ([`crate::storage::postgres::owner::Owner`]): the backend's database thread runs this room's
//! claim ([`super::ownership::claim_on`]) and fence ([`super::ownership::fence`]) on its own
//! connection, so a document is claimed and a commit fenced by one piece of SQL, whoever runs
//! it, and the node's view of what it owns and its counters stay whole.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use super::node::{Inner, Node};
use super::ownership::{claim_on, fence, Claims};
use super::ClusterError;
use crate::storage::postgres::owner::{ClaimError, Claimed, Local, Owner};

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
    fn node(&self) -> &str {
        self.inner.id.as_str()
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

    fn claim<'a>(
        &'a self,
        client: &'a mut Client,
        names: &'a [&'a str],
    ) -> Local<'a, Result<Claimed, ClaimError>> {
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
#[derive(Debug)]
pub struct MemberSlot {
    id: super::NodeId,
    settings: super::Settings,
    member: std::sync::OnceLock<Member>,
}

/// Why a slot refuses before its node registered.
const NOT_REGISTERED: &str = "the node has not registered yet";

impl MemberSlot {
    /// A slot for the node that will register as `id` with a lease of `settings`.
    pub fn new(id: super::NodeId, settings: super::Settings) -> MemberSlot {
        MemberSlot {
            id,
            settings,
            member: std::sync::OnceLock::new(),
        }
    }

    /// The node registered: from now on the slot is this member. Filled once; a second member
    /// is ignored.
    pub fn fill(&self, member: Member) {
        let _ = self.member.set(member);
    }
}

impl Owner for MemberSlot {
    fn node(&self) -> &str {
        self.id.as_str()
    }

    fn fenced(&self) -> Option<String> {
        match self.member.get() {
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

    fn claim<'a>(
        &'a self,
        client: &'a mut Client,
        names: &'a [&'a str],
    ) -> Local<'a, Result<Claimed, ClaimError>> {
        match self.member.get() {
            Some(member) => member.claim(client, names),
            None => Box::pin(async { Err(ClaimError::Fenced(NOT_REGISTERED.to_owned())) }),
        }
    }

    fn fence<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        name: &'a str,
        epoch: i64,
    ) -> Local<'a, Result<bool, tokio_postgres::Error>> {
        match self.member.get() {
            Some(member) => member.fence(tx, name, epoch),
            None => Box::pin(async { Ok(false) }),
        }
    }

    fn lost(&self, name: &str, epoch: i64) {
        if let Some(member) = self.member.get() {
            member.lost(name, epoch);
        }
    }

    fn render_metrics(&self) -> String {
        self.member
            .get()
            .map_or_else(String::new, Owner::render_metrics)
    }
}
