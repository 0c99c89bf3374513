//! Several Debrief nodes on one PostgreSQL database (issue 18, `docs/cluster.md`): each node is
//! the real binary in a child process, with a data directory of its own, a link listener on
//! loopback port 0, the same cluster secret, and short test leases, so that tests can `kill -9`,
//! stop and terminate them.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Client;
use crate::postgres::TestDb;
use crate::server::ChildServer;

/// How long a client waits before it connects again after the server closed it.
const RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// A cluster of nodes on one fresh database.
#[derive(Debug)]
pub struct Cluster {
    /// The database every node shares.
    pub db: TestDb,
    dir: tempfile::TempDir,
    secret: PathBuf,
    lease: Duration,
    renew: Duration,
    /// The nodes, by index; `None` once a test stopped one.
    pub nodes: Vec<Option<ChildServer>>,
    started: usize,
    /// Who may open documents outside reviews.
    access: Vec<String>,
}

/// The read-write token of [`Cluster::start_with_tokens`].
pub const WRITER: &str = "cluster-writer";
/// Its read-only token.
pub const READER: &str = "cluster-reader";

impl Cluster {
    /// Starts `n` nodes on a fresh database, with a lease of `lease` renewed every `renew`, open
    /// to anyone (`--open-access`).
    pub async fn start(n: usize, lease: Duration, renew: Duration) -> Cluster {
        Cluster::start_as(n, lease, renew, vec!["--open-access".to_owned()]).await
    }

    /// [`Cluster::start`] with more flags for every node (`extra`).
    pub async fn start_with_args(
        n: usize,
        lease: Duration,
        renew: Duration,
        extra: &[&str],
    ) -> Cluster {
        let mut args = vec!["--open-access".to_owned()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Cluster::start_as(n, lease, renew, args).await
    }

    /// [`Cluster::start`] with the shared tokens [`WRITER`] (read-write) and [`READER`]
    /// (read-only) instead of open access.
    pub async fn start_with_tokens(n: usize, lease: Duration, renew: Duration) -> Cluster {
        let access = ["--token", WRITER, "--read-only-token", READER]
            .map(str::to_owned)
            .to_vec();
        Cluster::start_as(n, lease, renew, access).await
    }

    async fn start_as(n: usize, lease: Duration, renew: Duration, access: Vec<String>) -> Cluster {
        let db = TestDb::create().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("cluster-secret");
        std::fs::write(&secret, hex::encode(rand::random::<[u8; 32]>())).expect("write secret");
        set_owner_only(&secret);
        let mut cluster = Cluster {
            db,
            dir,
            secret,
            lease,
            renew,
            nodes: Vec::new(),
            started: 0,
            access,
        };
        for _ in 0..n {
            let node = cluster.start_node().await;
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    /// The lease the nodes hold.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Starts one more node process (with a data directory of its own) and returns it.
    pub async fn start_node(&mut self) -> ChildServer {
        self.started += 1;
        let data = self.dir.path().join(format!("node-{}", self.started));
        let args = self.node_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ChildServer::start_with(&data, &args, None).await
    }

    /// The flags of a node of this cluster.
    fn node_args(&self) -> Vec<String> {
        let mut args = self.access.clone();
        args.extend([
            "--postgres".to_owned(),
            self.db.url(),
            "--cluster-lease-ms".to_owned(),
            self.lease.as_millis().to_string(),
            "--cluster-renew-ms".to_owned(),
            self.renew.as_millis().to_string(),
            "--cluster-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--cluster-secret-file".to_owned(),
            self.secret.to_string_lossy().into_owned(),
        ]);
        args
    }

    /// Starts one more node expecting it to refuse to start: its exit code and what it wrote on
    /// stderr.
    pub async fn refused_node(&mut self) -> (Option<i32>, String) {
        let args = self.node_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::server::refused_with(&args).await
    }

    /// Node `i`, which must be running.
    pub fn node(&self, i: usize) -> &ChildServer {
        self.nodes[i].as_ref().expect("the node is running")
    }

    /// Takes node `i` out of the cluster's hands (to kill or stop it).
    pub fn take(&mut self, i: usize) -> ChildServer {
        self.nodes[i].take().expect("the node is running")
    }

    /// The node id that owns `doc` in the database, if any.
    pub async fn owner_of(&self, doc: &str) -> Option<String> {
        let rows = self
            .db
            .query(&format!(
                "SELECT coalesce(owner, '') FROM documents WHERE name = '{doc}'"
            ))
            .await;
        rows.into_iter().next().filter(|o| !o.is_empty())
    }

    /// The index of the running node registered as `id` (a node registers again under a new
    /// id after losing its lease; its link listener stays, and `nodes` records its address).
    pub async fn index_of(&self, id: &str) -> Option<usize> {
        let address = self
            .db
            .query(&format!("SELECT address FROM nodes WHERE id = '{id}'"))
            .await
            .into_iter()
            .next()?;
        self.nodes.iter().position(|node| {
            node.as_ref()
                .and_then(|n| n.links)
                .is_some_and(|links| links.to_string() == address)
        })
    }

    /// The index of the running node that serves reviews (`debrief_serves_reviews 1`), waited
    /// for: after its holder went, another node takes the review role within a lease and a
    /// renewal.
    pub async fn review_node(&self) -> usize {
        crate::within("a node to serve reviews", async {
            loop {
                for (i, node) in self.nodes.iter().enumerate() {
                    if let Some(node) = node {
                        if node.metric("debrief_serves_reviews").await == 1 {
                            return i;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// The index of the node that owns `doc`.
    pub async fn owner_index(&self, doc: &str) -> Option<usize> {
        let owner = self.owner_of(doc).await?;
        self.index_of(&owner).await
    }
}

/// Connects with `attempt(n)`, for n = 0, 1, …, until a connection is synced, waiting a stock
/// client's reconnect delay between tries (a document whose owner died is served again once its
/// lease lapsed; until then its connections are closed and stock clients reconnect). Answers the
/// synced client and when its try began.
pub async fn synced_after_tries<F, Fut>(mut attempt: F) -> (Client, Instant)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Client, String>>,
{
    crate::within("a synced connection", async {
        let mut n = 0;
        loop {
            let began = Instant::now();
            if let Ok(mut client) = attempt(n).await {
                if client.synced_or_closed().await.is_none() {
                    return (client, began);
                }
            }
            n += 1;
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    })
    .await
}

/// A Hocuspocus client of `doc` on `node`, synced (see [`synced_after_tries`]).
pub async fn synced_collab(node: &ChildServer, doc: &str) -> Client {
    synced_collab_at(&node.collab_url(), doc).await
}

/// [`synced_collab`] by the node's `/collab` URL.
pub async fn synced_collab_at(url: &str, doc: &str) -> Client {
    synced_after_tries(|_| Client::try_connect_collab(url, doc, "any"))
        .await
        .0
}

/// A y-websocket client of `doc` on `node`, synced (see [`synced_after_tries`]).
pub async fn synced_ws(node: &ChildServer, doc: &str) -> Client {
    let url = node.ws_url(doc);
    synced_after_tries(|_| Client::try_connect(&url)).await.0
}

fn set_owner_only(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the secret");
}
