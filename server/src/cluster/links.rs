//! A node's internal links (`docs/cluster.md`, "Routing: the internal link"): the accept loop
//! of its link listener, and the registry of the links it dialled, one per peer, at the address
//! the peer registered in `nodes`. It decides nothing about documents and reads no client's
//! socket: every sub-stream a peer opens goes to the [`StreamHandler`] the server gives.
//!
//! A registry belongs to one registered node: its [`Endpoint`] proves that node's id, so a
//! server that registers again under a new id makes a new registry and closes the old one
//! (peers know the old id as a lapsed node). Links end when the registry is closed, when the
//! peer closes them or goes silent, and are then forgotten; the next [`Links::get`] dials again.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::db::Session;
use super::link::{ClusterSecret, Endpoint, Incoming, Link, LinkError, LinkSettings, SubStream};
use super::metrics::ClusterMetrics;
use super::NodeId;

/// What the server does with a sub-stream a peer opened (the owner side of a forwarded
/// connection, later). It is called on the task that accepts the link's sub-streams, so it must
/// not wait: it hands the sub-stream to a task of its own or closes it.
pub type StreamHandler = Arc<dyn Fn(SubStream) + Send + Sync>;

/// How long looking a peer's address up (the database, then the name's resolution) may take
/// before a dial gives up: as long as a link's handshake may take, so that a caller waits at
/// most about twice that for a link however the peer or the database misbehave.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// How long the accept loop pauses after the listener failed to accept (out of file
/// descriptors, most likely): long enough not to spin, short enough that links come back soon.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Why no link to a node could be had. Each message names the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinksError {
    /// No row in `nodes` has this id.
    #[error("node {0} is not registered in the cluster")]
    Unknown(NodeId),
    /// Its lease has ended by the database's clock: it is dead or fenced.
    #[error("node {0} has no live lease (it stopped, or lost its lease)")]
    Lapsed(NodeId),
    /// It registered without an address: it does not listen for links.
    #[error("node {0} registered no link address (it does not listen for links)")]
    NoAddress(NodeId),
    /// Its address does not resolve to a socket address.
    #[error("node {node}'s link address {address:?} does not resolve: {why}")]
    Unresolved {
        /// The node.
        node: NodeId,
        /// The address it registered.
        address: String,
        /// Why.
        why: String,
    },
    /// The database could not be asked in time, or refused.
    #[error("looking node {node} up in the database: {why}")]
    Db {
        /// The node.
        node: NodeId,
        /// Why.
        why: String,
    },
    /// The connection or the link's handshake failed.
    #[error("dialling node {node} at {address}: {why}")]
    Dial {
        /// The node.
        node: NodeId,
        /// Where it was dialled.
        address: SocketAddr,
        /// Why (the link's error).
        why: String,
    },
    /// The registry is closed: the server is stopping, or registered again as a new node.
    #[error("this node's links are closed")]
    Closed,
    /// The node's endpoint or its database session could not be set up.
    #[error("setting up the node's links: {0}")]
    Setup(String),
}

/// What a registry is made of ([`Links::open`]).
pub struct LinksSetup<'a> {
    /// The node the links prove to be (its registered id).
    pub id: NodeId,
    /// The cluster secret.
    pub secret: &'a ClusterSecret,
    /// The links' time limits and queues.
    pub link: LinkSettings,
    /// The database where peers' addresses are looked up.
    pub config: tokio_postgres::Config,
    /// The lease: the longest a transaction of the look-up session may stay idle.
    pub lease: Duration,
    /// What receives the sub-streams peers open.
    pub handler: StreamHandler,
    /// Where links are counted (`debrief_cluster_links`, `…_link_refusals_total`).
    pub metrics: Arc<ClusterMetrics>,
    /// Owns every task of the links (handshakes, readers, writers, sub-stream acceptors).
    pub tracker: TaskTracker,
    /// Cancelling it closes the registry ([`Links::close`] cancels a child of it).
    pub shutdown: CancellationToken,
}

impl fmt::Debug for LinksSetup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration may hold a password, and the secret shows no byte anyway.
        f.debug_struct("LinksSetup")
            .field("id", &self.id)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// One peer's place in the registry: a dial in progress (callers wait for its outcome) or a
/// link.
enum Peer {
    Dialing(watch::Receiver<Option<Dialled>>),
    Live(Arc<Link>),
}

/// What a dial ended with, as every caller waiting for it receives it.
type Dialled = Result<Arc<Link>, LinksError>;

/// A registered node's links: those it accepts on its listener and those it dialled.
pub struct Links {
    endpoint: Endpoint,
    session: Session,
    handler: StreamHandler,
    metrics: Arc<ClusterMetrics>,
    /// At most one entry per peer: a dial in progress or its live link.
    peers: Mutex<HashMap<NodeId, Peer>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl fmt::Debug for Links {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Links")
            .field("id", self.endpoint.id())
            .field("peers", &self.peers().len())
            .finish_non_exhaustive()
    }
}

impl Links {
    /// A registry for node `setup.id`: its endpoint (a certificate made now) and a database
    /// session for looking peers up, connected now.
    pub async fn open(setup: LinksSetup<'_>) -> Result<Arc<Links>, LinksError> {
        let shutdown = setup.shutdown.child_token();
        let endpoint = Endpoint::new(
            setup.id,
            setup.secret,
            setup.link,
            setup.tracker.clone(),
            shutdown.clone(),
        )
        .map_err(|e| LinksError::Setup(e.to_string()))?;
        let session = Session::open(setup.config, setup.lease)
            .await
            .map_err(|e| LinksError::Setup(format!("database: {e}")))?;
        Ok(Arc::new(Links {
            endpoint,
            session,
            handler: setup.handler,
            metrics: setup.metrics,
            peers: Mutex::new(HashMap::new()),
            tracker: setup.tracker,
            shutdown,
        }))
    }

    /// The node these links prove to be.
    pub fn id(&self) -> &NodeId {
        self.endpoint.id()
    }

    /// Closes every link of the registry and refuses new ones; their tasks end on their own
    /// (the tracker the registry was given waits for them).
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    /// A live link to `node`, dialled now if there is none: at the address `nodes` holds for
    /// it, which must have a live lease. Callers asking for the same peer while it is dialled
    /// wait for that one dial and share its outcome; a failed dial is not remembered (the next
    /// call dials again), and neither is a link once it closed.
    pub async fn get(self: &Arc<Self>, node: &NodeId) -> Result<Arc<Link>, LinksError> {
        let mut outcome = {
            let mut peers = self.peers();
            match peers.get(node) {
                Some(Peer::Live(link)) if !link.is_closed() => return Ok(link.clone()),
                Some(Peer::Dialing(outcome)) => outcome.clone(),
                _ => {
                    if self.shutdown.is_cancelled() {
                        return Err(LinksError::Closed);
                    }
                    let (tx, rx) = watch::channel(None);
                    peers.insert(node.clone(), Peer::Dialing(rx.clone()));
                    // On a task of its own, so that a caller that gives up does not abandon
                    // the others waiting for the same dial.
                    self.tracker.spawn(self.clone().dial(node.clone(), tx));
                    rx
                }
            }
        };
        let dialled = match outcome.wait_for(Option::is_some).await {
            Ok(dialled) => dialled.clone(),
            // The dial's task ended without an outcome: only a runtime shutting down does that.
            Err(_) => None,
        };
        dialled.unwrap_or(Err(LinksError::Closed))
    }

    /// Runs the handshake on a connection the listener accepted, on a task of the registry's
    /// tracker, and serves the link if it succeeds. A connection refused in the handshake is
    /// counted; the endpoint bounds how many handshakes run at once.
    pub fn accept(self: &Arc<Self>, tcp: TcpStream, from: SocketAddr) {
        let links = self.clone();
        self.tracker.spawn(async move {
            match links.endpoint.accept(tcp).await {
                Ok(link) => links.serve_accepted(link).await,
                // The registry closed during the handshake: nobody was refused.
                Err(LinkError::LinkClosed(_)) => {}
                Err(e) => {
                    ClusterMetrics::add(&links.metrics.link_refusals, 1);
                    // Not a warning: whoever reaches the port can make as many of these.
                    tracing::debug!(from = %from, error = %e, "cluster: refused a link");
                }
            }
        });
    }

    /// Passes the sub-streams the peer opens on an accepted link to the handler until the link
    /// closes; the link lives as long as this.
    async fn serve_accepted(&self, mut link: Link) {
        ClusterMetrics::add(&self.metrics.links, 1);
        let peer = link.peer().clone();
        tracing::info!(peer = %peer, "cluster: accepted a link");
        let why = loop {
            match link.accept_stream().await {
                Ok(stream) => (self.handler)(stream),
                Err(why) => break why,
            }
        };
        ClusterMetrics::sub_one(&self.metrics.links);
        tracing::info!(peer = %peer, reason = %why, "cluster: an accepted link closed");
    }

    /// Dials `node`, publishes the outcome to every caller waiting for it, and then serves the
    /// link until it closes, forgetting it then.
    async fn dial(self: Arc<Self>, node: NodeId, outcome: watch::Sender<Option<Dialled>>) {
        let connected = self.connect(&node).await;
        let (link, incoming) = {
            let mut peers = self.peers();
            match connected {
                Ok((link, incoming)) => {
                    let link = Arc::new(link);
                    peers.insert(node.clone(), Peer::Live(link.clone()));
                    (link, incoming)
                }
                Err(e) => {
                    // The entry is this dial's: only a dial replaces a `Dialing` entry.
                    peers.remove(&node);
                    drop(peers);
                    tracing::debug!(peer = %node, error = %e, "cluster: could not dial a link");
                    outcome.send_replace(Some(Err(e)));
                    return;
                }
            }
        };
        ClusterMetrics::add(&self.metrics.links, 1);
        tracing::info!(peer = %node, "cluster: dialled a link");
        outcome.send_replace(Some(Ok(link.clone())));
        let why = serve_incoming(incoming, &self.handler).await;
        {
            let mut peers = self.peers();
            if matches!(peers.get(&node), Some(Peer::Live(l)) if Arc::ptr_eq(l, &link)) {
                peers.remove(&node);
            }
        }
        ClusterMetrics::sub_one(&self.metrics.links);
        tracing::info!(peer = %node, reason = %why, "cluster: a dialled link closed");
    }

    /// Looks `node` up and runs the link's handshake with it.
    async fn connect(&self, node: &NodeId) -> Result<(Link, Incoming), LinksError> {
        let looked_up = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Err(LinksError::Closed),
            found = tokio::time::timeout(LOOKUP_LIMIT, self.address_of(node)) => found,
        };
        let address = looked_up.unwrap_or_else(|_| {
            Err(LinksError::Db {
                node: node.clone(),
                why: format!(
                    "no answer within {} ms (the look-up gave up)",
                    LOOKUP_LIMIT.as_millis()
                ),
            })
        })?;
        let mut link = self
            .endpoint
            .connect(address, node)
            .await
            .map_err(|e| match e {
                LinkError::LinkClosed(_) => LinksError::Closed,
                e => LinksError::Dial {
                    node: node.clone(),
                    address,
                    why: e.to_string(),
                },
            })?;
        let incoming = link.take_incoming();
        Ok((link, incoming))
    }

    /// Where `node` listens for links: its registered address, resolved, while its lease is
    /// live by the database's clock.
    async fn address_of(&self, node: &NodeId) -> Result<SocketAddr, LinksError> {
        let db = |e: tokio_postgres::Error| LinksError::Db {
            node: node.clone(),
            why: e.to_string(),
        };
        let row = {
            let client = self.session.client().await.map_err(db)?;
            client
                .query_opt(
                    "SELECT address, lease_until > clock_timestamp() FROM nodes WHERE id = $1",
                    &[&node.as_str()],
                )
                .await
                .map_err(db)?
        };
        let Some(row) = row else {
            return Err(LinksError::Unknown(node.clone()));
        };
        let address: String = row.try_get(0).map_err(db)?;
        let live: bool = row.try_get(1).map_err(db)?;
        if !live {
            return Err(LinksError::Lapsed(node.clone()));
        }
        if address.is_empty() {
            return Err(LinksError::NoAddress(node.clone()));
        }
        let unresolved = |why: String| LinksError::Unresolved {
            node: node.clone(),
            address: address.clone(),
            why,
        };
        let mut found = tokio::net::lookup_host(address.as_str())
            .await
            .map_err(|e| unresolved(e.to_string()))?;
        found
            .next()
            .ok_or_else(|| unresolved("no address".to_owned()))
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, Peer>> {
        // Every change is one insert or remove: a panic elsewhere leaves the map consistent.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Passes every sub-stream the peer opens to `handler` until the link closes, and says why it
/// closed.
async fn serve_incoming(
    mut incoming: Incoming,
    handler: &StreamHandler,
) -> super::link::LinkClosed {
    loop {
        match incoming.accept().await {
            Ok(stream) => handler(stream),
            Err(why) => return why,
        }
    }
}

/// The registry of the node registered now, which the listener hands its connections to; empty
/// while the server registers again (a connection then is closed at once).
#[derive(Debug, Default)]
pub struct CurrentLinks(Mutex<Option<Arc<Links>>>);

impl CurrentLinks {
    /// The registry of the node registered now.
    pub fn get(&self) -> Option<Arc<Links>> {
        self.slot().clone()
    }

    /// Puts `links` in place and returns the registry it replaces (for the caller to close).
    pub fn replace(&self, links: Option<Arc<Links>>) -> Option<Arc<Links>> {
        std::mem::replace(&mut *self.slot(), links)
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Links>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections on the link listener until `shutdown`, handing each to the current
/// registry ([`Links::accept`]: its handshake runs on a task of its own, so a slow peer never
/// holds up the next connection).
pub async fn listen(
    listener: TcpListener,
    current: Arc<CurrentLinks>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, from)) => match current.get() {
                Some(links) => links.accept(tcp, from),
                None => {
                    tracing::debug!(from = %from, "cluster: a link connection came while this server registers again; closed");
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cluster: the link listener could not accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
    }
}
