//! Debrief's server as a library: [`run`] serves HTTP and WebSockets on a bound listener until a
//! shutdown token is cancelled, so that tests drive exactly what the binary runs.
//!
//! The rooms, from the network down (`docs/architecture.md`, "Layers"):
//! - [`transport`]: HTTP, the two WebSocket dialects side by side on shared socket machinery,
//!   admission of unauthenticated connections, the web app's files, and the state every
//!   connection shares; sockets are read and written here and nowhere else.
//! - [`reviews`]: the review domain — reviews and sessions, the phase table, comment threads,
//!   anonymous items, the meeting, pinned versions and the library, Markdown — and its REST API
//!   (`reviews/api/`: with the transport and [`error`], the only code that knows axum).
//! - [`documents`]: one owner per open document — a Sans-IO core that decides (apply, hold until
//!   durable, relay, acknowledge) and a task that does its I/O — who may open what, presence,
//!   the bounded queues.
//! - [`storage`]: the storage interface over sled (with its write-ahead file and integrity
//!   manifest) or PostgreSQL.
//! - [`ops`]: `debrief check`, `backup` and `restore`, and the administration socket.
//! - [`cluster`]: cluster mode on PostgreSQL (issue 18): node leases, document ownership with
//!   epochs, takeover, handover and the fence of a commit. A server with `--postgres` is a node:
//!   it registers at start, its store claims and fences through it, and it hands its documents
//!   over at shutdown (`docs/cluster.md`); with `--cluster-listen` it shares the database with
//!   other nodes and serves each document through its owner over the internal links (one node
//!   serves reviews, for now).
//! - Beside them, imported by any room: [`config`] (the command line), [`limits`] (the bounds of
//!   transport, documents and storage, each with its reason), [`metrics`] (counters) and
//!   [`error`] (HTTP errors as one JSON shape).
//!
//! Dependencies run one way: transport → documents → storage, and reviews → documents →
//! storage; the transport never names the review domain (`server/tests/layers.rs` checks this).
//! This file composes them: it opens the store, builds the state each room is given, merges the
//! review API's routes into the transport's router, and owns every task.

pub mod cluster;
pub mod config;
pub mod documents;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod reviews;
pub mod storage;
pub mod transport;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
use documents::registry::Registry;
use documents::{access, doc, peer, reloads};
use limits::SHUTDOWN_GRACE;
use metrics::Metrics;
use ops::admin;
pub use peer::ConnId;
use reviews::anonymous::{self, Anonymity};
use reviews::api::ApiState;
use reviews::records::Records;
use reviews::webhooks::{self, Webhooks};
use storage::store::{Damage, Store, StoreError};
pub use transport::state::AppState;
use transport::{admission, http};

/// How long start-up waits for an OpenID provider that cannot be reached yet (it may be
/// starting beside the server) before giving up.
pub const OIDC_DISCOVERY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or flushed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Serving HTTP failed.
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
    /// OpenID Connect sign-in could not be set up (discovery failed).
    #[error("sign-in: {0}")]
    SignIn(String),
    /// The node could not join the cluster (its settings were refused, or registering failed).
    #[error("cluster: {0}")]
    Cluster(String),
}

/// The lease settings of `options`, the cluster's defaults for what is not given; refused with
/// the cluster's own words (the binary prints them as its one-line start-up error).
pub fn cluster_settings(
    options: &config::ClusterOptions,
) -> Result<cluster::Settings, cluster::SettingsError> {
    let defaults = cluster::Settings::default();
    cluster::Settings::new(
        options.lease.unwrap_or(defaults.lease()),
        options.renew_every.unwrap_or(defaults.renew_every()),
    )
}

/// Serves until `shutdown` is cancelled, then stops accepting, closes every socket with
/// "going away", waits for documents to flush, flushes the store and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    Server::open(config, shutdown).await?.serve(listener).await
}

/// A server whose store is open and whose state is loaded, ready to serve.
pub struct Server {
    state: Arc<AppState>,
    reviewing: Reviewing,
    store: Store,
    flusher: tokio::task::JoinHandle<()>,
    data_dir: std::path::PathBuf,
    /// The administration socket, bound before the server says it is listening, so that
    /// `debrief check` and `debrief backup` see a running server from then on.
    admin: Option<tokio::net::UnixListener>,
    /// With PostgreSQL, this server as a cluster node.
    node: Option<Membership>,
    /// With `--cluster-listen`, the link listener, bound before the node registered (so that
    /// the address it registered has the real port), accepting from [`Server::serve`] on.
    link_listener: Option<TcpListener>,
}

/// This server as a cluster node (with PostgreSQL): the node registered now, and what it takes
/// to register again once it lost its lease.
struct Membership {
    /// The node registered now and the tracker owning its lease renewals (waited for after
    /// the node handed its documents over at shutdown); replaced when the server registers
    /// again, taken at shutdown.
    current: Arc<tokio::sync::Mutex<Option<(cluster::node::Node, TaskTracker)>>>,
    /// The owner the store claims and fences as: filled with each new node.
    slot: Arc<cluster::member::MemberSlot>,
    pg: storage::postgres::PgSettings,
    advertise: String,
    settings: cluster::Settings,
    metrics: Arc<cluster::metrics::ClusterMetrics>,
    /// With `--cluster-listen`, the node's internal links.
    links: Option<LinkHost>,
}

/// The internal links of whichever node this server is registered as now (`docs/cluster.md`,
/// "Routing: the internal link"): a registry per node, since a link proves the node's id, made
/// again when the server registers again.
struct LinkHost {
    secret: cluster::link::ClusterSecret,
    /// What sub-streams peers open go to.
    handler: cluster::links::StreamHandler,
    /// The server's state once it is loaded: forwarded attachments are served from then on.
    /// Weak: the state holds the store, which must be let go at shutdown while links live on.
    serving: Arc<std::sync::OnceLock<std::sync::Weak<AppState>>>,
    /// The node's HTTP router while it serves: requests other nodes pass on are answered by it.
    /// Let go when it stops serving (the router holds the state, and so the store).
    http: Arc<std::sync::Mutex<Option<RouterSwitch>>>,
    /// The registry the listener hands connections to.
    current: Arc<cluster::links::CurrentLinks>,
    /// Every link's tasks. Not the server's tracker: links stay up while documents flush and end
    /// after. (Forwarded attachments end at the shutdown signal, before that flush: their
    /// clients resend what was not acknowledged to the next owner.)
    tracker: TaskTracker,
    /// Cancelled after the documents are flushed; each registry closes with a child of it.
    shutdown: CancellationToken,
}

impl LinkHost {
    /// Reads the cluster secret and binds the link listener at `listen`; answers the address to
    /// register (`--cluster-advertise`, or the address bound). Before the node registers, so a
    /// node never advertises a port it does not hold.
    async fn bind(
        options: &config::ClusterOptions,
        listen: std::net::SocketAddr,
    ) -> Result<(LinkHost, TcpListener, String), ServerError> {
        let secret = cluster::link::ClusterSecret::read(options.secret_file.as_deref())
            .map_err(|e| ServerError::Cluster(e.to_string()))?;
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            ServerError::Cluster(format!("binding the link listener {listen}: {e}"))
        })?;
        let bound = listener.local_addr().map_err(|e| {
            ServerError::Cluster(format!("reading the link listener's address: {e}"))
        })?;
        let advertise = options.advertised(bound).map_err(ServerError::Cluster)?;
        tracing::info!(listen = %bound, advertise = %advertise, "cluster: listening for links");
        let serving = Arc::new(std::sync::OnceLock::<std::sync::Weak<AppState>>::new());
        let http = Arc::new(std::sync::Mutex::new(None));
        let host = LinkHost {
            secret,
            handler: forwarded_handler(serving.clone(), http.clone()),
            serving,
            http,
            current: Arc::new(cluster::links::CurrentLinks::default()),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        Ok((host, listener, advertise))
    }

    /// Makes the links of `node` the current ones, closing those of the node before it.
    async fn start(
        &self,
        node: &cluster::node::Node,
        pg: &storage::postgres::PgSettings,
        metrics: Arc<cluster::metrics::ClusterMetrics>,
    ) -> Result<(), ServerError> {
        let db = pg_config(pg)?;
        let lease = node.settings().lease();
        let defaults = cluster::link::LinkSettings::default();
        let links = cluster::links::Links::open(cluster::links::LinksSetup {
            id: node.id().clone(),
            secret: &self.secret,
            // Silence is judged after a lease, as the design says; the heartbeat beats well
            // within it even for a short lease.
            link: cluster::link::LinkSettings {
                silent_after: lease,
                heartbeat_every: defaults.heartbeat_every.min(lease / 3),
                ..defaults
            },
            config: db,
            lease,
            handler: self.handler.clone(),
            metrics,
            tracker: self.tracker.clone(),
            shutdown: self.shutdown.clone(),
        })
        .await
        .map_err(|e| ServerError::Cluster(e.to_string()))?;
        if let Some(old) = self.current.replace(Some(links)) {
            old.close();
        }
        Ok(())
    }

    /// Answers the requests other nodes pass on with `router` from now on.
    fn serve_http(&self, router: RouterSwitch) {
        *self.http.lock().unwrap_or_else(|e| e.into_inner()) = Some(router);
    }

    /// Answers no more requests other nodes pass on, and lets the router (and with it the
    /// server's state and store) go.
    fn stop_http(&self) {
        self.http.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Closes every link and waits for their tasks (after the documents were flushed).
    async fn shut_down(&self) {
        self.shutdown.cancel();
        self.current.replace(None);
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some internal links did not stop in time");
        }
    }
}

/// Serves each sub-stream a peer opens on the server's task tracker, once the server's state is
/// loaded: a request passed on to this node as the one serving reviews
/// (`transport::forwarded_http`), or else a forwarded attachment. One that comes earlier is
/// closed at once (the peer's client reconnects, or is answered 503).
fn forwarded_handler(
    serving: Arc<std::sync::OnceLock<std::sync::Weak<AppState>>>,
    http: Arc<std::sync::Mutex<Option<RouterSwitch>>>,
) -> cluster::links::StreamHandler {
    Arc::new(move |stream: cluster::link::SubStream| {
        if let Some(state) = serving.get().and_then(std::sync::Weak::upgrade) {
            let tracker = state.tracker.clone();
            if stream.document() == debrief_proto::forward_http::HTTP_STREAM {
                let router = http.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let (Some(router), false) = (router, state.shutdown.is_cancelled()) {
                    tracker.spawn(transport::forwarded_http::serve(
                        router,
                        stream,
                        state.shutdown.clone(),
                    ));
                }
            } else {
                tracker.spawn(transport::forwarded::serve(state, stream));
            }
        }
    })
}

/// A node that `joined`, with its links started when it has any (`links`); a node whose links
/// cannot start leaves again (handing over what it holds) and the error is returned.
async fn with_links(
    joined: Result<(cluster::node::Node, TaskTracker), ServerError>,
    links: Option<&LinkHost>,
    pg: &storage::postgres::PgSettings,
    metrics: &Arc<cluster::metrics::ClusterMetrics>,
) -> Result<(cluster::node::Node, TaskTracker), ServerError> {
    let (node, tasks) = joined?;
    let Some(links) = links else {
        return Ok((node, tasks));
    };
    match links.start(&node, pg, metrics.clone()).await {
        Ok(()) => Ok((node, tasks)),
        Err(e) => {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, node.shut_down()).await;
            tasks.close();
            Err(e)
        }
    }
}

/// The connection configuration of `pg`'s URL.
fn pg_config(pg: &storage::postgres::PgSettings) -> Result<tokio_postgres::Config, ServerError> {
    pg.url.parse().map_err(|e| {
        ServerError::Store(StoreError::Postgres(format!(
            "the connection string does not parse: {e}"
        )))
    })
}

/// The longest wait between two tries to register again after the node lost its lease.
const REJOIN_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);

impl Membership {
    /// Registers a new node whenever the current one is fenced (its lease lapsed: the database
    /// could not be reached for a lease, or ended the lease), until `shutdown`.
    ///
    /// A fenced node stays fenced: the store has let go of its documents (their clients were
    /// closed and reconnect), and nothing is committed in its name. The server then registers
    /// as a new node, retrying with a growing pause while the database cannot be reached, and
    /// the store claims each document again, at a higher epoch, as its clients come back. So a
    /// database outage longer than a lease costs a reconnect, never a restart by hand.
    async fn rejoin(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let state = match self.current.lock().await.as_ref() {
                Some((node, _)) => node.state(),
                None => return,
            };
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                why = cluster::node::until_fenced(state) => match why {
                    Some(why) => why,
                    None => return,
                },
            };
            tracing::warn!(why = %why, "this node lost its lease; its documents were let go, and it registers again as a new node");
            // Its links prove an id that is no node's any more: closed now, not once a new node
            // registered (which takes as long as the database stays away).
            if let Some(links) = &self.links {
                if let Some(old) = links.current.replace(None) {
                    old.close();
                }
            }
            let mut pause = self.settings.renew_every();
            let (node, tasks) = loop {
                let joined = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    joined = Server::join(
                        &self.pg,
                        &self.advertise,
                        self.settings,
                        cluster::NodeId::random(),
                        self.metrics.clone(),
                    ) => joined,
                };
                // Registered but unreachable for links: it left, and tries again.
                let joined = with_links(joined, self.links.as_ref(), &self.pg, &self.metrics).await;
                match joined {
                    Ok(joined) => break joined,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_ms = pause.as_millis() as u64, "could not register again yet");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                        pause = (pause * 2).min(REJOIN_BACKOFF_MAX);
                    }
                }
            };
            self.slot.fill(node.member());
            let old = self.current.lock().await.replace((node, tasks));
            if let Some((old, old_tasks)) = old {
                // Dropping a fenced node ends its renewals; it holds nothing to hand over.
                drop(old);
                old_tasks.close();
                if tokio::time::timeout(SHUTDOWN_GRACE, old_tasks.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!("the old node's lease renewals did not stop in time");
                }
            }
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store (sled recovers its log here) and loads the review state. Connections
    /// are only accepted by [`Server::serve`], so a caller can announce that it is listening
    /// once this returns.
    pub async fn open(config: Config, shutdown: CancellationToken) -> Result<Server, ServerError> {
        // The provider is asked first: a server that cannot sign anyone in does not start.
        let oidc = match &config.oidc {
            Some(settings) => Some(Arc::new(
                reviews::oidc::Oidc::discover(settings.clone(), OIDC_DISCOVERY_PATIENCE)
                    .await
                    .map_err(ServerError::SignIn)?,
            )),
            None => None,
        };
        // The link listener is bound first: a port or secret that cannot be had stops the server
        // before anything is opened, and the node registers the port it really holds.
        let (link_host, link_listener, advertise) = match (&config.postgres, config.cluster.listen)
        {
            (Some(_), Some(listen)) => {
                let (host, listener, advertise) = LinkHost::bind(&config.cluster, listen).await?;
                (Some(host), Some(listener), advertise)
            }
            _ => (None, None, config.cluster.advertise.clone()),
        };
        let started = std::time::Instant::now();
        let data_dir = config.data_dir.clone();
        let data_dir_for_admin = data_dir.clone();
        let on_damage = config.on_damage;
        // A node with links shares its database with other nodes.
        let postgres = config.postgres.clone().map(|mut pg| {
            pg.shared = link_host.is_some();
            pg
        });
        // With PostgreSQL the server is a cluster node: the store is opened for a node id that
        // registers once the store has connected and made its tables.
        let joining = match &postgres {
            Some(_) => {
                let settings = cluster_settings(&config.cluster)
                    .map_err(|e| ServerError::Cluster(e.to_string()))?;
                let id = cluster::NodeId::random();
                let slot = Arc::new(cluster::member::MemberSlot::new(id.clone(), settings));
                Some((settings, id, slot))
            }
            None => None,
        };
        let ownership = joining
            .as_ref()
            .map(|(_, _, slot)| storage::postgres::owner::Ownership {
                owner: slot.clone(),
                group: reviews::claim_group,
            });
        let opened = tokio::task::spawn_blocking(move || match (postgres, ownership) {
            (Some(settings), Some(ownership)) => {
                Store::open_postgres(&settings, &data_dir, ownership)
            }
            _ => Store::open_checked(&data_dir, on_damage),
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        let (store, flusher, damage) = (opened.store, opened.flusher, opened.damage);
        let flusher = tokio::task::spawn_blocking(move || flusher.run());
        // A node of a cluster holds anonymous items in the database, sealed under K_held, so
        // that the node taking the review role over finds them; any other server in its file.
        let held = match &link_host {
            Some(host) => anonymous::HeldPlace::Sealed(anonymous::sealed::HeldKey::new(
                host.secret.held_key(),
            )),
            None => anonymous::HeldPlace::File(config.data_dir.join("held")),
        };
        let node = match (joining, &config.postgres) {
            (Some((settings, id, slot)), Some(pg)) => {
                let metrics = Arc::new(cluster::metrics::ClusterMetrics::default());
                let joined = Server::join(pg, &advertise, settings, id, metrics.clone()).await;
                let joined = with_links(joined, link_host.as_ref(), pg, &metrics).await;
                match joined {
                    Ok((node, tasks)) => {
                        slot.fill(node.member());
                        Some(Membership {
                            current: Arc::new(tokio::sync::Mutex::new(Some((node, tasks)))),
                            slot,
                            pg: pg.clone(),
                            advertise,
                            settings,
                            metrics,
                            links: link_host,
                        })
                    }
                    Err(e) => {
                        drop(store);
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, flusher).await;
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        if let Some(d) = &damage {
            tracing::error!(
                kept = %d.kept.display(),
                damage = %d.lines.join("; "),
                "THE DATA DIRECTORY IS DAMAGED: serving it read-only (--on-damage read-only); \
                 every change is refused"
            );
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        // With links, a document another node owns is served through it.
        let router = node.as_ref().and_then(|n| {
            n.links.as_ref().map(|links| {
                let store = store.clone();
                Arc::new(transport::forwarded::ClusterRouter::new(
                    n.slot.clone(),
                    links.current.clone(),
                    reviews::claim_group,
                    transport::forwarded::ReviewRouting {
                        is_review: is_review_document,
                        role: storage::postgres::REVIEWS_ROLE,
                        here: Box::new(move || store.reviews_open()),
                    },
                )) as Arc<dyn documents::route::Router>
            })
        });
        // A node of a cluster serves reviews if it can take the review role now; otherwise it
        // tries again while it runs (`take_reviews_over`).
        let mut fenced = None;
        if store.is_shared() {
            fenced = Some(store.until_fenced());
            match tokio::time::timeout(TAKE_REVIEWS_PATIENCE, store.take_reviews()).await {
                Ok(Ok(true)) => {
                    tracing::info!("this node holds the review role and serves reviews")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not try the review role"),
                Err(_) => tracing::warn!("trying the review role took too long"),
            }
        }
        match Server::load(config, shutdown, store.clone(), damage, oidc, router, held) {
            Ok((state, mut reviewing)) => {
                reviewing.fenced = fenced.filter(|_| reviewing.api.is_some());
                if let Some(links) = node.as_ref().and_then(|n| n.links.as_ref()) {
                    let _ = links.serving.set(Arc::downgrade(&state));
                }
                Ok(Server {
                    state,
                    reviewing,
                    store,
                    flusher,
                    admin: admin::bind(&data_dir_for_admin),
                    data_dir: data_dir_for_admin,
                    node,
                    link_listener,
                })
            }
            Err(e) => {
                // Stop the flusher: it ends once every handle to the store is gone.
                drop(store);
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, flusher).await;
                Err(e)
            }
        }
    }

    /// Where the cluster link listener listens, with `--cluster-listen`.
    pub fn link_address(&self) -> Option<std::net::SocketAddr> {
        self.link_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Registers this server as a cluster node in the database of `pg`, its lease renewals on a
    /// tracker of their own, counting in `metrics` (kept across registrations).
    async fn join(
        pg: &storage::postgres::PgSettings,
        advertise: &str,
        settings: cluster::Settings,
        id: cluster::NodeId,
        metrics: Arc<cluster::metrics::ClusterMetrics>,
    ) -> Result<(cluster::node::Node, TaskTracker), ServerError> {
        let db = pg_config(pg)?;
        let tasks = TaskTracker::new();
        let joined = tokio::time::timeout(
            pg.timeout,
            cluster::node::Node::join(cluster::node::Joining {
                config: db,
                id,
                address: advertise,
                settings,
                metrics: metrics.clone(),
                tracker: Some(&tasks),
            }),
        )
        .await;
        match joined {
            Ok(Ok(node)) => {
                tracing::info!(node = %node.id(), lease_ms = settings.lease().as_millis() as u64, "joined the cluster");
                // What an earlier node of this server owned was let go when it was fenced.
                metrics
                    .owned_documents
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                cluster::metrics::ClusterMetrics::add(&metrics.registrations, 1);
                Ok((node, tasks))
            }
            Ok(Err(e)) => Err(ServerError::Cluster(format!("registering the node: {e}"))),
            Err(_) => Err(ServerError::Cluster(
                "registering the node: the database did not answer in time".to_owned(),
            )),
        }
    }

    fn load(
        config: Config,
        shutdown: CancellationToken,
        store: Store,
        damage: Option<Damage>,
        oidc: Option<Arc<reviews::oidc::Oidc>>,
        router: Option<Arc<dyn documents::route::Router>>,
        held: anonymous::HeldPlace,
    ) -> Result<(Arc<AppState>, Reviewing), ServerError> {
        let tracker = TaskTracker::new();
        let metrics = Arc::new(Metrics::default());
        if config.sign_in.trusted.is_some() && config.sign_in.proxies.is_empty() {
            tracing::warn!(
                "--trusted-identity-header is set without --trusted-proxy: the header is ignored \
                 on every connection, so nobody can sign in through the proxy"
            );
        }
        // A cluster node that does not serve reviews now may take them over later: its
        // authorizer is switched then (`ReviewSwitch`).
        let serving = store.serves_reviews();
        if !serving {
            tracing::warn!(
                "another node of the cluster serves reviews (it holds the review role); this \
                 node passes review traffic on to it, and takes the role over if it goes"
            );
        }
        // Two views of the same switch: the sockets' (with links, a review's document is let
        // through to be forwarded to the node serving reviews, which decides the token) and the
        // documents' own (a review's document is never served here by a node that does not
        // serve reviews).
        let forwards = router.is_some();
        let switch = Arc::new(ReviewSwitch::new(config.authorizer.clone()));
        let mut authorizer: Arc<dyn access::Authorizer> = Arc::new(SwitchView {
            switch: switch.clone(),
            forwards,
            store: store.clone(),
        });
        let mut owning: Arc<dyn access::Authorizer> = Arc::new(SwitchView {
            switch: switch.clone(),
            forwards: false,
            store: store.clone(),
        });
        if damage.is_some() {
            authorizer = Arc::new(ReadOnlyAccess(authorizer));
            owning = Arc::new(ReadOnlyAccess(owning));
        }
        let registry = Registry::new(
            doc::DocContext {
                store: store.clone(),
                limits: config.limits.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                authorizer: owning,
                reloads: Arc::new(reloads::ReloadLimiter::new(&config.limits)),
                router,
            },
            tracker.clone(),
        );
        let api = if serving {
            let api = review_api(&config, &store, registry.clone(), oidc.clone(), &held)?;
            switch.serve(&api);
            Some(api)
        } else {
            None
        };
        if !config.trackers.is_empty() {
            tracing::info!(patterns = ?config.trackers.describe(), "tracker patterns");
        }
        let state = Arc::new(AppState {
            registry,
            store,
            limits: config.limits.clone(),
            metrics,
            shutdown,
            tracker,
            next_conn: AtomicU64::new(1),
            authorizer,
            stateless: config.stateless.clone(),
            damage,
            budget: admission::Budget::new(&config.limits),
        });
        let reviewing = Reviewing {
            api,
            switch,
            config,
            oidc,
            fenced: None,
            held,
        };
        Ok((state, reviewing))
    }

    /// Serves on `listener` until the shutdown token is cancelled (see [`run`]).
    pub async fn serve(self, listener: TcpListener) -> Result<(), ServerError> {
        let Server {
            state,
            reviewing,
            store,
            flusher,
            data_dir,
            admin,
            node,
            link_listener,
        } = self;
        let shutdown = state.shutdown.clone();
        let tracker = state.tracker.clone();
        let node = node.map(Arc::new);
        if let Some(node) = &node {
            tracker.spawn(node.clone().rejoin(shutdown.clone()));
            if node.links.is_some() {
                tracker.spawn(stop_when_the_store_stops(
                    state.store.clone(),
                    shutdown.clone(),
                ));
            }
            // The listener stops accepting at shutdown; the links it made end after the flush.
            if let (Some(listener), Some(links)) = (link_listener, &node.links) {
                tracker.spawn(cluster::links::listen(
                    listener,
                    links.current.clone(),
                    shutdown.clone(),
                ));
            }
        }
        if let Some(admin) = admin {
            tracker.spawn(admin::serve(
                admin,
                state.store.db().cloned(),
                tracker.clone(),
                data_dir,
                shutdown.clone(),
            ));
        }
        // Every connection is read through its meter (deadlines, the unauthenticated budgets),
        // which also sets TCP_NODELAY.
        let listener =
            admission::MeteredListener::new(listener, state.budget.clone(), state.limits.clone());
        let mut reviewing = reviewing;
        let router = match reviewing.api.take() {
            // Reviews are served here from the start (always, but for a cluster node that found
            // another node holding the review role).
            Some(api) => {
                // Nothing of the review domain may outlive the router: the store's handles in
                // it keep the flusher from ending at shutdown.
                let fenced = reviewing.fenced.take();
                drop(reviewing);
                if state.damage.is_none() {
                    review_work(&state, &api, fenced);
                }
                state.store.reviews_served();
                let mut router = http::router(state.clone(), reviews::api::routes(api));
                if state.damage.is_some() {
                    router = router.layer(axum::middleware::from_fn(refuse_changes));
                }
                if let Some(links) = node.as_ref().and_then(|n| n.links.as_ref()) {
                    links.serve_http(RouterSwitch::new(router.clone()));
                }
                router
            }
            // A cluster node that does not serve reviews (yet): every request goes through a
            // switch that takes the review API in once this node took the role over.
            None => {
                let pass_on = node.as_ref().and_then(|n| {
                    n.links
                        .as_ref()
                        .map(|links| Arc::new(PassOn::new(n.slot.clone(), links.current.clone())))
                });
                let switch =
                    RouterSwitch::new(http::router(state.clone(), axum::Router::new()).layer(
                        axum::middleware::from_fn_with_state(pass_on, reviews_elsewhere),
                    ));
                if let Some(links) = node.as_ref().and_then(|n| n.links.as_ref()) {
                    links.serve_http(switch.clone());
                }
                if let Some(node) = &node {
                    tracker.spawn(take_reviews_over(
                        state.clone(),
                        reviewing,
                        switch.clone(),
                        node.slot.clone(),
                    ));
                }
                axum::Router::new().fallback_service(switch)
            }
        };
        // Connection info gives the WebSocket transports the connection's meter, and the REST
        // limits on guessing and flooding the client's address (as `ConnectInfo<SocketAddr>`).
        let app = router
            .layer(axum::middleware::map_request(client_address))
            .into_make_service_with_connect_info::<admission::Connection>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        // axum does not wait for upgraded WebSockets; the tracker does.
        shutdown.cancel();
        if let Some(links) = node.as_ref().and_then(|n| n.links.as_ref()) {
            links.stop_http();
        }
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections or documents did not stop in time");
        }
        drop(state);
        let flushed = tokio::task::spawn_blocking({
            let store = store.clone();
            move || store.flush_blocking()
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        // A store that stopped writing for good makes the exit an error, though nothing was
        // left to flush.
        let stopped = store.stopped();
        drop(store);
        if tokio::time::timeout(SHUTDOWN_GRACE, flusher).await.is_err() {
            tracing::warn!("the flusher did not stop in time");
        }
        // Documents are flushed: the links have nothing more to carry.
        if let Some(links) = node.as_ref().and_then(|n| n.links.as_ref()) {
            links.shut_down().await;
        }
        // Everything is committed and the store has let go of the database: the node hands its
        // documents over, so another node claims them at once instead of waiting for the lease.
        let current = match node {
            Some(node) => node.current.lock().await.take(),
            None => None,
        };
        if let Some((node, tasks)) = current {
            match tokio::time::timeout(SHUTDOWN_GRACE, node.shut_down()).await {
                Ok(Ok(handed)) => tracing::info!(documents = handed, "handed the documents over"),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not hand the documents over; they are taken once the lease lapses"),
                Err(_) => tracing::warn!("the handover did not finish in time; the documents are taken once the lease lapses"),
            }
            tasks.close();
            if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("the lease renewals did not stop in time");
            }
        }
        served?;
        flushed?;
        if let Some(why) = stopped {
            return Err(ServerError::Store(why));
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Access while the store is damaged and served read-only: whatever the decision, no changes.
#[derive(Debug)]
struct ReadOnlyAccess(Arc<dyn access::Authorizer>);

impl access::Authorizer for ReadOnlyAccess {
    fn authorize(&self, token: &str, document: &str) -> Result<access::Access, access::Denied> {
        self.0
            .authorize(token, document)
            .map(|_| access::Access::ReadOnly)
    }

    fn provisional(&self, document: &str) -> bool {
        self.0.provisional(document)
    }
}

/// In a cluster, a node whose store stopped writing for good (it lost the review role while
/// serving reviews) could serve nothing while it still held a lease that routes documents to
/// it: it shuts down instead (handing its documents over; its exit status is an error, so a
/// supervisor starts it again, and it comes back as a node like the others).
async fn stop_when_the_store_stops(store: Store, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        if let Some(why) = store.stopped() {
            tracing::error!(error = %why, "the store stopped writing; this node shuts down");
            shutdown.cancel();
            return;
        }
    }
}

/// What serving reviews takes, kept by a cluster node that does not serve them yet so that it
/// can take them over while it runs (`take_reviews_over`).
struct Reviewing {
    /// The review domain, once this node serves reviews.
    api: Option<Arc<ApiState>>,
    /// The authorizer documents and sockets ask, switched when reviews are taken over.
    switch: Arc<ReviewSwitch>,
    config: Config,
    oidc: Option<Arc<reviews::oidc::Oidc>>,
    /// In a cluster, the fence of the node that took the review role at start.
    fenced: Option<FenceWatch>,
    /// Where held anonymous items are kept (read when the review domain opens).
    held: anonymous::HeldPlace,
}

/// The review domain over what `store` holds now: reviews, sessions, the anonymous queue,
/// records, webhooks and people, read from the store's trees.
fn review_api(
    config: &Config,
    store: &Store,
    registry: Arc<Registry>,
    oidc: Option<Arc<reviews::oidc::Oidc>>,
    held: &anonymous::HeldPlace,
) -> Result<Arc<ApiState>, ServerError> {
    let reviews = reviews::Reviews::open(store)?;
    let anonymity = Anonymity::open(store, held.clone(), config.anonymous_cadence)?;
    let records = Records::open(store)?;
    let webhooks = Webhooks::open(store, config.webhooks.clone(), config.clock.clone())?;
    let people = reviews::people::People::open(store)?;
    Ok(Arc::new(ApiState {
        registry,
        reviews,
        anonymity,
        records,
        creation_secret: config.creation_secret.clone(),
        actions: Arc::new(reviews::actions::ActionIndex::default()),
        trackers: config.trackers.clone(),
        webhooks,
        factor_tags: config
            .factor_tags
            .iter()
            .filter_map(|t| crate::reviews::fields::validate_factor(t).ok())
            .fold(Vec::new(), |mut tags, t| {
                if !tags.contains(&t) {
                    tags.push(t);
                }
                tags
            }),
        sign_in: reviews::identity::SignIn {
            oidc: oidc.is_some(),
            ..config.sign_in.clone()
        },
        people,
        oidc,
    }))
}

/// The review domain's own work, run where reviews are served: anonymous releases, webhook
/// deliveries, due dates. A cluster node that serves reviews also stops writing once it is
/// fenced: the trees in its memory may hold what the next holder of the role never sees, and a
/// node registering again must not commit them (`stop_when_the_store_stops` then shuts it down).
fn review_work(state: &Arc<AppState>, api: &Arc<ApiState>, fenced: Option<FenceWatch>) {
    let (tracker, shutdown) = (&state.tracker, &state.shutdown);
    tracker.spawn(anonymous::release::release_loop(
        api.releases(),
        api.records.clone(),
        shutdown.clone(),
    ));
    // Held slots in the database tick fast while a document is open here (people are visibly
    // present), slowly otherwise; nothing for the held-items file.
    let registry = api.registry.clone();
    tracker.spawn(anonymous::ticks::tick_loop(
        api.anonymity.clone(),
        Arc::new(move || !registry.is_empty()),
        shutdown.clone(),
    ));
    tracker.spawn(webhooks::deliver::deliver_loop(
        api.webhooks.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(webhooks::dues::scan_loop(
        api.webhooks.clone(),
        shutdown.clone(),
    ));
    if let Some(fenced) = fenced {
        let store = state.store.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                why = fenced => store.stop_writing(format!(
                    "this node lost its lease while serving reviews ({why})"
                )),
            }
        });
    }
}

/// Resolves once the node that took the review role is fenced (made before the role is tried,
/// so that it is that node's fence, even if the server registers again in between).
type FenceWatch = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// On a cluster node that does not serve reviews: tries the review role every renewal interval
/// once the database says nobody holds it (its holder handed it over, or its lease lapsed) and,
/// once it is this node's, opens the review domain from what the database holds and serves it.
/// A review domain that cannot be opened (the database is slow or away) is tried again: the
/// node keeps the role meanwhile, as it would if its requests failed.
async fn take_reviews_over(
    state: Arc<AppState>,
    reviewing: Reviewing,
    switch: RouterSwitch,
    slot: Arc<cluster::member::MemberSlot>,
) {
    use storage::postgres::owner::Owner;
    let shutdown = state.shutdown.clone();
    let poll = slot.poll();
    let fenced = loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
        if state.store.stopped().is_some() {
            return;
        }
        // A read first: a claim is a write, and the holder's commits fence on the same row.
        let held = tokio::time::timeout(poll, slot.owner_of(storage::postgres::REVIEWS_ROLE)).await;
        if matches!(held, Ok(Ok(Some(cluster::ownership::Ownership::Live { node, .. }))) if node != slot.node())
        {
            continue;
        }
        let fenced = state.store.until_fenced();
        let taken = tokio::select! {
            () = shutdown.cancelled() => return,
            taken = tokio::time::timeout(TAKE_REVIEWS_PATIENCE, state.store.take_reviews()) => taken,
        };
        match taken {
            Ok(Ok(true)) => break fenced,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not try the review role"),
            Err(_) => tracing::warn!("trying the review role took too long"),
        }
    };
    let mut pause = poll;
    let mut tries = 0;
    let api = loop {
        tries += 1;
        let opened = tokio::task::spawn_blocking({
            let (config, store, registry, oidc, held) = (
                reviewing.config.clone(),
                state.store.clone(),
                state.registry.clone(),
                reviewing.oidc.clone(),
                reviewing.held.clone(),
            );
            move || review_api(&config, &store, registry, oidc, &held)
        });
        let opened = tokio::select! {
            () = shutdown.cancelled() => return,
            opened = opened => opened,
        };
        let why = match opened {
            Ok(Ok(api)) => break api,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if tries >= OPEN_REVIEWS_TRIES {
            // Something of this node's own (its disk, its held items) rather than the
            // database: it stops, handing the role over to a node that may open it.
            state.store.stop_writing(format!(
                "took the review role over but could not open the review domain in {tries} tries: {why}"
            ));
            return;
        }
        tracing::error!(error = %why, retry_ms = pause.as_millis() as u64, "took the review role over but cannot open the review domain yet");
        if state.store.stopped().is_some() {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(REJOIN_BACKOFF_MAX);
    };
    if shutdown.is_cancelled() {
        return;
    }
    reviewing.switch.serve(&api);
    switch.set(http::router(
        state.clone(),
        reviews::api::routes(api.clone()),
    ));
    review_work(&state, &api, Some(fenced));
    // Said once everything above serves reviews: operators route review traffic by it.
    state.store.reviews_served();
    tracing::info!("this node took the review role over and serves reviews now");
}

/// How often a node that took the review role tries to open the review domain before it
/// stops and hands the role over (tries a growing pause apart, up to 5 s: about 15 s).
const OPEN_REVIEWS_TRIES: u32 = 5;

/// How long one try of the review role may take.
const TAKE_REVIEWS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The authorizer of a node: every document as `config.authorizer` and the reviews say while
/// this node serves reviews; before that (a cluster node another node serves reviews for), a
/// review's documents are not this node's to decide (`SwitchView`).
#[derive(Debug)]
struct ReviewSwitch {
    /// The review domain's authorizer, once this node serves reviews.
    reviews: std::sync::RwLock<Option<Arc<dyn access::Authorizer>>>,
    /// What decides every document outside reviews (`config.authorizer`).
    others: Arc<dyn access::Authorizer>,
}

impl ReviewSwitch {
    /// Not serving reviews yet: `others` decides every other document.
    fn new(others: Arc<dyn access::Authorizer>) -> ReviewSwitch {
        ReviewSwitch {
            reviews: std::sync::RwLock::new(None),
            others,
        }
    }

    /// Authorizes with the review domain `api` from now on.
    fn serve(&self, api: &Arc<ApiState>) {
        let authorizer = Arc::new(reviews::ReviewAuthorizer {
            reviews: api.reviews.clone(),
            others: self.others.clone(),
        });
        *self.reviews.write().unwrap_or_else(|e| e.into_inner()) = Some(authorizer);
    }
}

/// One view of a [`ReviewSwitch`]. While this node does not serve reviews, a review's document
/// is refused (4401 `reviews_elsewhere`), or let through read-only for now: by the sockets of a
/// node that forwards (`forwards`: the node serving reviews decides the token when the
/// connection is forwarded to it, and its decision replaces this one), and by a node that took
/// the review role and is switching to it (its router holds the connection until the switch,
/// and the document decides the token when it joins). Such a connection counts as
/// unauthenticated for this node's budgets until the document opened it
/// ([`access::Authorizer::provisional`]).
#[derive(Debug)]
struct SwitchView {
    switch: Arc<ReviewSwitch>,
    forwards: bool,
    store: Store,
}

impl SwitchView {
    /// Whether, while it does not serve reviews, this node lets a review's documents through
    /// for another decision: it forwards them, or it holds the role and is switching to it.
    fn lets_through(&self) -> bool {
        self.forwards || self.store.holds_review_role()
    }

    /// The review domain's authorizer, once this node serves reviews.
    fn serving(&self) -> Option<Arc<dyn access::Authorizer>> {
        self.switch
            .reviews
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl access::Authorizer for SwitchView {
    fn authorize(&self, token: &str, document: &str) -> Result<access::Access, access::Denied> {
        match self.serving() {
            Some(reviews) => reviews.authorize(token, document),
            None if !is_review_document(document) => self.switch.others.authorize(token, document),
            None if self.lets_through() => Ok(access::Access::ReadOnly),
            None => Err(access::Denied {
                code: REVIEWS_ELSEWHERE.into(),
                message: REVIEWS_ELSEWHERE_MESSAGE.to_owned(),
            }),
        }
    }

    fn provisional(&self, document: &str) -> bool {
        self.serving().is_none() && is_review_document(document) && self.lets_through()
    }
}

/// Whether `document` is one of a review's (served only where reviews are).
fn is_review_document(document: &str) -> bool {
    reviews::claim_group(document).len() > 1
}

/// The whole HTTP router of a node that may take reviews over while it runs: each request goes
/// to the router set last.
#[derive(Clone)]
struct RouterSwitch(Arc<std::sync::RwLock<axum::Router>>);

impl RouterSwitch {
    fn new(router: axum::Router) -> RouterSwitch {
        RouterSwitch(Arc::new(std::sync::RwLock::new(router)))
    }

    fn set(&self, router: axum::Router) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = router;
    }
}

impl tower::Service<axum::extract::Request> for RouterSwitch {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        use tower::ServiceExt;
        let router = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(router.oneshot(request))
    }
}

/// The code of a refusal on a node that does not serve reviews.
const REVIEWS_ELSEWHERE: &str = "reviews_elsewhere";
/// Its sentence.
const REVIEWS_ELSEWHERE_MESSAGE: &str = "reviews are served by another node of this cluster (the \
     one holding the review role), not by this one";

/// How a node that does not serve reviews reaches the one that does.
#[derive(Debug)]
struct PassOn {
    slot: Arc<cluster::member::MemberSlot>,
    links: Arc<cluster::links::CurrentLinks>,
    /// The holder of the review role as last looked up, and when: looked up again after a
    /// renewal interval, or at once after a request could not reach it.
    holder: std::sync::Mutex<Option<(cluster::NodeId, std::time::Instant)>>,
    /// Requests passed on at once (`transport::forwarded_http::CONCURRENT`).
    permits: tokio::sync::Semaphore,
}

impl PassOn {
    fn new(
        slot: Arc<cluster::member::MemberSlot>,
        links: Arc<cluster::links::CurrentLinks>,
    ) -> PassOn {
        PassOn {
            slot,
            links,
            holder: std::sync::Mutex::new(None),
            permits: tokio::sync::Semaphore::new(transport::forwarded_http::CONCURRENT),
        }
    }

    /// The node holding the review role, if another node holds it with a live lease.
    async fn holder(&self) -> Option<cluster::NodeId> {
        use storage::postgres::owner::Owner;
        let fresh_for = self.slot.poll();
        if let Some((node, at)) = self
            .holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            if at.elapsed() < fresh_for {
                return Some(node);
            }
        }
        let looked_up = tokio::time::timeout(
            fresh_for.max(std::time::Duration::from_secs(1)),
            self.slot.owner_of(storage::postgres::REVIEWS_ROLE),
        )
        .await;
        let node = match looked_up {
            Ok(Ok(Some(cluster::ownership::Ownership::Live { node, .. })))
                if node != self.slot.node() =>
            {
                cluster::NodeId::parse(&node)
            }
            _ => None,
        };
        *self.holder.lock().unwrap_or_else(|e| e.into_inner()) =
            node.clone().map(|n| (n, std::time::Instant::now()));
        node
    }

    /// Forgets the holder looked up (a request could not reach it).
    fn forget(&self) {
        self.holder.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// On a node that does not serve reviews, every request of the review API (`/api/…`) and of
/// sign-in (`/auth/…`, which records people) is passed on to the node that serves reviews
/// (`transport::forwarded_http`). It is answered 503 `reviews_elsewhere` when none can be
/// reached or the request was itself passed on to this node, and 504 `outcome_unknown` when it
/// was sent and no answer came back.
async fn reviews_elsewhere(
    axum::extract::State(pass_on): axum::extract::State<Option<Arc<PassOn>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path();
    if !path.starts_with("/api/") && !path.starts_with("/auth/") {
        return next.run(request).await;
    }
    // Every route takes the small body limit but creating a review.
    let limit = if request.method() == axum::http::Method::POST && path == "/api/reviews" {
        limits::MAX_FORWARDED_REQUEST_BYTES
    } else {
        limits::MAX_BODY_BYTES
    };
    let passed_on = request
        .extensions()
        .get::<transport::forwarded_http::Forwarded>()
        .is_some();
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    if let (Some(pass_on), Some(client), false) = (pass_on, client, passed_on) {
        if let Some(node) = pass_on.holder().await {
            let permit = tokio::time::timeout(
                transport::forwarded_http::PATIENCE,
                pass_on.permits.acquire(),
            )
            .await;
            if let Ok(Ok(_permit)) = permit {
                use transport::forwarded_http::{forward, NotForwarded};
                match forward(&pass_on.links, &node, request, client, limit).await {
                    Ok(response) => return response,
                    Err(NotForwarded::NotSent(why)) => {
                        pass_on.forget();
                        tracing::warn!(node = %node, error = %why, "could not pass a request on to the node serving reviews");
                    }
                    Err(NotForwarded::Unknown(why)) => {
                        pass_on.forget();
                        tracing::warn!(node = %node, error = %why, "a request passed on to the node serving reviews was not answered");
                        return error::ApiError::new(
                            axum::http::StatusCode::GATEWAY_TIMEOUT,
                            "outcome_unknown",
                            "the node serving reviews did not answer; the request may have been \
                             carried out, so look before making it again",
                        )
                        .into_response();
                    }
                }
            }
        }
    }
    error::ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        REVIEWS_ELSEWHERE,
        PASS_ON_FAILED,
    )
    .into_response()
}

/// Why a request of the review API could not be passed on to the node serving reviews.
const PASS_ON_FAILED: &str = "reviews are served by another node of this cluster (the one \
     holding the review role), and this node could not pass this request on to it; try again";

/// While the store is damaged and served read-only, every request that could change something
/// (anything but GET and HEAD) is answered 503 `read_only`.
async fn refuse_changes(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return next.run(request).await;
    }
    error::ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "read_only",
        "the data directory is damaged and served read-only; nothing can be changed",
    )
    .into_response()
}

/// Adds the client's address alone to a request, for the extractors that need only that.
async fn client_address(mut request: axum::extract::Request) -> axum::extract::Request {
    let addr = request
        .extensions()
        .get::<axum::extract::ConnectInfo<admission::Connection>>()
        .map(|c| c.0.addr);
    if let Some(addr) = addr {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
    }
    request
}
