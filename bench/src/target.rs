//! Servers under test. A [`Target`] knows how to start its server on a free loopback
//! port, which URL serves a document, which process to measure, and how to stop it.
//!
//! Targets:
//! - `debrief`: Debrief, y-websocket dialect at `/ws/<doc>`;
//! - `reference`: `@y/websocket-server`, y-websocket dialect, in memory only;
//! - `debrief-collab`: the same Debrief binary, Hocuspocus dialect at `/collab`;
//! - `hocuspocus`: `@hocuspocus/server` with `@hocuspocus/extension-sqlite`
//!   (`js/hocuspocus-server.mjs`), Hocuspocus dialect;
//! - `debrief-pg`, `debrief-pg-collab`: Debrief in each dialect with its data in PostgreSQL
//!   (`--postgres`), a fresh database of the cluster `--postgres` names for each run, dropped
//!   afterwards; the cluster's CPU is measured beside the server's;
//! - `debrief-cluster`, `debrief-cluster-collab`: three Debrief nodes on one fresh database
//!   (issue 18), with the same secret and the default lease; clients are spread over the nodes
//!   round-robin, CPU and RSS are the nodes' sums.
//!
//! Adding a server kind means: a [`TargetKind`] variant, its command line and "ready" line
//! in [`Target::spawn`], its address in [`Target::addr`], and, if it speaks another framing
//! of the Yjs messages, a [`Dialect`] variant handled by `wire.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How Yjs sync/awareness messages are framed on the websocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// y-websocket: one y-protocols message per binary frame, the document named by the URL.
    YWebsocket,
    /// Hocuspocus: every message starts with the document name; auth before sync; the
    /// server acknowledges each update with a SyncStatus message.
    Hocuspocus,
}

/// Where a client finds one document.
#[derive(Debug, Clone)]
pub struct DocAddr {
    pub url: String,
    /// Document name (in the URL for y-websocket, in every message for Hocuspocus).
    pub doc: String,
    /// The client presents the read-only token ([`crate::wire::READ_ONLY_TOKEN`]) and
    /// accepts a read-only scope.
    pub read_only: bool,
    /// A review session's token the client presents instead of the benchmark's own tokens (in
    /// the URL's `?token=` for y-websocket, already there; in the auth message for Hocuspocus).
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Debrief,
    Reference,
    DebriefCollab,
    Hocuspocus,
    DebriefPg,
    DebriefPgCollab,
    DebriefCluster,
    DebriefClusterCollab,
}

/// Nodes of a cluster target: the fewest where a node's death leaves more than one survivor
/// to spread the reconnecting clients over (issue 18).
pub const CLUSTER_NODES: usize = 3;

/// The lease a cluster target's nodes hold and how often they renew it: the server's defaults,
/// passed explicitly so that the failover figure is what an operator gets out of the box.
const CLUSTER_LEASE_MS: u32 = 3000;
const CLUSTER_RENEW_MS: u32 = 1000;

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Debrief => "debrief",
            TargetKind::Reference => "reference",
            TargetKind::DebriefCollab => "debrief-collab",
            TargetKind::Hocuspocus => "hocuspocus",
            TargetKind::DebriefPg => "debrief-pg",
            TargetKind::DebriefPgCollab => "debrief-pg-collab",
            TargetKind::DebriefCluster => "debrief-cluster",
            TargetKind::DebriefClusterCollab => "debrief-cluster-collab",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "debrief" => Ok(TargetKind::Debrief),
            "reference" | "ref" | "y-websocket" => Ok(TargetKind::Reference),
            "debrief-collab" | "collab" => Ok(TargetKind::DebriefCollab),
            "hocuspocus" | "hp" => Ok(TargetKind::Hocuspocus),
            "debrief-pg" | "pg" => Ok(TargetKind::DebriefPg),
            "debrief-pg-collab" | "pg-collab" => Ok(TargetKind::DebriefPgCollab),
            "debrief-cluster" | "cluster" => Ok(TargetKind::DebriefCluster),
            "debrief-cluster-collab" | "cluster-collab" => Ok(TargetKind::DebriefClusterCollab),
            other => bail!(
                "unknown target {other:?} (known: debrief, reference, debrief-collab, hocuspocus, \
                 debrief-pg, debrief-pg-collab, debrief-cluster, debrief-cluster-collab)"
            ),
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            TargetKind::Debrief
            | TargetKind::Reference
            | TargetKind::DebriefPg
            | TargetKind::DebriefCluster => Dialect::YWebsocket,
            TargetKind::DebriefCollab
            | TargetKind::Hocuspocus
            | TargetKind::DebriefPgCollab
            | TargetKind::DebriefClusterCollab => Dialect::Hocuspocus,
        }
    }

    /// Whether this is the Debrief binary (on either backend).
    pub fn is_debrief(self) -> bool {
        matches!(
            self,
            TargetKind::Debrief
                | TargetKind::DebriefCollab
                | TargetKind::DebriefPg
                | TargetKind::DebriefPgCollab
                | TargetKind::DebriefCluster
                | TargetKind::DebriefClusterCollab
        )
    }

    /// Whether the server keeps its data in PostgreSQL.
    pub fn on_postgres(self) -> bool {
        matches!(
            self,
            TargetKind::DebriefPg
                | TargetKind::DebriefPgCollab
                | TargetKind::DebriefCluster
                | TargetKind::DebriefClusterCollab
        )
    }

    /// Whether this target is several nodes on one database.
    pub fn is_cluster(self) -> bool {
        matches!(
            self,
            TargetKind::DebriefCluster | TargetKind::DebriefClusterCollab
        )
    }

    /// Server processes the target runs.
    pub fn nodes(self) -> usize {
        if self.is_cluster() {
            CLUSTER_NODES
        } else {
            1
        }
    }

    /// Whether the server keeps documents across a restart.
    pub fn persistent(self) -> bool {
        !matches!(self, TargetKind::Reference)
    }
}

/// Where the servers' programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub debrief_bin: PathBuf,
    pub node: PathBuf,
    pub reference_script: PathBuf,
    pub hocuspocus_script: PathBuf,
    /// Soft RLIMIT_NOFILE Debrief is started with (None: this process's, as the node
    /// servers get it). Debrief must raise it itself to what its connections need.
    pub debrief_nofile: Option<u64>,
    /// A superuser's connection string to the PostgreSQL cluster of the `debrief-pg` targets.
    pub postgres: Option<String>,
}

#[derive(Debug)]
struct Running {
    /// Which of the target's nodes this is (0 for a single server): the order they started in.
    node: usize,
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

/// The node the `n`-th client of a target with `nodes` running nodes connects to: round-robin,
/// so every scenario's clients (writers and observers alike, in the order they connect) are
/// spread evenly over a cluster's nodes.
pub fn spread(n: usize, nodes: usize) -> usize {
    n % nodes.max(1)
}

#[derive(Debug)]
pub struct Target {
    pub kind: TargetKind,
    programs: Programs,
    /// Data directory (persistent targets only); kept across restarts.
    data_dir: Option<PathBuf>,
    log_path: PathBuf,
    /// The running nodes, in the order they started (empty: stopped). A cluster node killed on
    /// its own ([`Target::kill_node`]) leaves the list while the others keep running.
    running: Vec<Running>,
    /// Clients handed an address so far ([`Target::addr`] spreads them over the nodes).
    clients: AtomicUsize,
    /// The cluster targets' shared secret file, written at the first start.
    secret: Option<PathBuf>,
    /// Debrief is started with `--read-only-token` [`crate::wire::READ_ONLY_TOKEN`].
    pub read_only_token: bool,
    /// Debrief trusts `X-Forwarded-For` from loopback (`--trusted-proxy 127.0.0.1`), so that the
    /// setup of many reviews can count as many clients for the limits on creations and joins.
    pub trust_loopback: bool,
    /// The `debrief-pg` targets' database, made at the first start, kept across restarts and
    /// dropped with the target.
    database: Option<Database>,
}

/// The processes a measurement counts: the servers (one, or a cluster target's nodes), and
/// for the targets on PostgreSQL the postmaster of its cluster (whose processes' CPU is the
/// database's).
#[derive(Debug, Clone)]
pub struct Processes {
    pub servers: Vec<u32>,
    pub database: Option<u32>,
}

impl Processes {
    /// The servers' resident set sizes, summed.
    pub fn rss_bytes(&self) -> Result<u64> {
        self.servers
            .iter()
            .map(|p| crate::procstat::rss_bytes(*p))
            .sum()
    }

    /// The servers' peak resident set sizes, summed: for a cluster an upper bound of the
    /// peak of the sum, since the nodes need not peak at the same moment.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        self.servers
            .iter()
            .map(|p| crate::procstat::peak_rss_bytes(*p))
            .sum()
    }
}

/// What a stop observed.
#[derive(Debug, Clone)]
pub struct StopInfo {
    pub status: Option<ExitStatus>,
    pub took: Duration,
    pub killed: bool,
}

impl Target {
    /// `work_dir` is a fresh directory for this (scenario, target): data and log go there.
    pub fn new(kind: TargetKind, programs: &Programs, work_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(work_dir)?;
        let data_dir = kind.persistent().then(|| work_dir.join("data"));
        Ok(Target {
            kind,
            programs: programs.clone(),
            data_dir,
            log_path: work_dir.join(format!("{}.log", kind.name())),
            running: Vec::new(),
            clients: AtomicUsize::new(0),
            secret: kind.is_cluster().then(|| work_dir.join("cluster-secret")),
            read_only_token: false,
            trust_loopback: false,
            database: None,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.kind.dialect()
    }

    /// Whether the server keeps documents across a restart.
    pub fn persistent(&self) -> bool {
        self.kind.persistent()
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// The server logs: one, or one per node of a cluster.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        (0..self.kind.nodes())
            .map(|node| self.node_log_path(node))
            .collect()
    }

    fn node_log_path(&self, node: usize) -> PathBuf {
        if self.kind.is_cluster() {
            self.log_path
                .with_file_name(format!("{}-node-{node}.log", self.kind.name()))
        } else {
            self.log_path.clone()
        }
    }

    /// Where document `doc` is served to the next client: on a cluster target the next node
    /// round-robin ([`spread`]), else the server.
    pub fn addr(&self, doc: &str) -> Result<DocAddr> {
        if self.running.is_empty() {
            bail!("{} is not running", self.kind.name());
        }
        let n = self.clients.fetch_add(1, Ordering::Relaxed);
        let node = self.running[spread(n, self.running.len())].node;
        self.addr_on(doc, node)
    }

    /// Where node `node` (0 for a single server) serves document `doc`.
    pub fn addr_on(&self, doc: &str, node: usize) -> Result<DocAddr> {
        let addr = self
            .running
            .iter()
            .find(|r| r.node == node)
            .map(|r| r.addr)
            .ok_or_else(|| anyhow!("{} node {node} is not running", self.kind.name()))?;
        let url = match self.kind.dialect() {
            // Both y-websocket servers take the document from the path; y-websocket-server
            // names the room after the whole path ("ws/<doc>"), Debrief after the segment
            // after /ws/.
            Dialect::YWebsocket => format!("ws://{addr}/ws/{doc}"),
            // One endpoint for all documents (Hocuspocus itself accepts any path).
            Dialect::Hocuspocus => format!("ws://{addr}/collab"),
        };
        Ok(DocAddr {
            url,
            doc: doc.to_string(),
            read_only: false,
            token: None,
        })
    }

    /// Where document `doc` is served to the next client presenting a review session's `token`
    /// (round-robin over a cluster's nodes, as [`Target::addr`]); `read_only` for a session
    /// whose role may only read the document.
    pub fn session_addr(&self, doc: &str, token: &str, read_only: bool) -> Result<DocAddr> {
        let mut a = self.addr(doc)?;
        a.read_only = read_only;
        if self.dialect() == Dialect::YWebsocket {
            a.url = format!("{}?token={token}", a.url);
        }
        a.token = Some(token.to_owned());
        Ok(a)
    }

    /// The HTTP address of each running node, in the order they started.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.running.iter().map(|r| r.addr).collect()
    }

    /// Where document `doc` is served to an observer: with the read-only token where the
    /// server was started with one (y-websocket: `?token=`, Hocuspocus: the auth message).
    pub fn observer_addr(&self, doc: &str) -> Result<DocAddr> {
        let mut a = self.addr(doc)?;
        a.read_only = true;
        if self.dialect() == Dialect::YWebsocket {
            a.url = format!("{}?token={}", a.url, crate::wire::READ_ONLY_TOKEN);
        }
        Ok(a)
    }

    /// Starts the server; returns the time from spawn until it said it was listening.
    /// A cluster target's nodes start one after another, so the first serves reviews (as the
    /// first node started does) and the time is until the last one listens.
    pub async fn start(&mut self) -> Result<Duration> {
        if !self.running.is_empty() {
            bail!("{} already running", self.kind.name());
        }
        if let Some(d) = &self.data_dir {
            std::fs::create_dir_all(d)?;
        }
        if self.kind.on_postgres() && self.database.is_none() {
            let admin = self.programs.postgres.as_deref().ok_or_else(|| {
                anyhow!(
                    "{} needs a PostgreSQL: pass --postgres (a superuser's connection string; \
                     `scripts/postgres start` makes a throwaway one)",
                    self.kind.name()
                )
            })?;
            self.database = Some(Database::create(admin).await?);
        }
        if let Some(secret) = &self.secret {
            if !secret.exists() {
                write_secret(secret)?;
            }
        }
        let t0 = Instant::now();
        for node in 0..self.kind.nodes() {
            match self.spawn(node).await {
                Ok(running) => self.running.push(running),
                Err(e) => {
                    // no half-started cluster: the nodes already up go with the error
                    for mut r in self.running.drain(..) {
                        let _ = r.child.start_kill();
                    }
                    return Err(e);
                }
            }
        }
        Ok(t0.elapsed())
    }

    /// The data directory of node `node`: the target's own for a single server, a folder in it
    /// for each node of a cluster.
    fn node_data_dir(&self, node: usize) -> PathBuf {
        let root = self.data_dir.as_deref().unwrap_or(Path::new("."));
        if self.kind.is_cluster() {
            root.join(format!("node-{node}"))
        } else {
            root.to_path_buf()
        }
    }

    async fn spawn(&self, node: usize) -> Result<Running> {
        let log_path = self.node_log_path(node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd;
        let ready_prefix: &str;
        let mut fixed_addr = None;
        match self.kind {
            TargetKind::Debrief
            | TargetKind::DebriefCollab
            | TargetKind::DebriefPg
            | TargetKind::DebriefPgCollab
            | TargetKind::DebriefCluster
            | TargetKind::DebriefClusterCollab => {
                let bin = &self.programs.debrief_bin;
                if !bin.exists() {
                    bail!(
                        "Debrief binary {} not found (cargo build --release -p debrief-server, \
                         or pass --debrief-bin)",
                        bin.display()
                    );
                }
                cmd = Command::new(bin);
                // The benchmark names its own documents: open access to documents outside reviews.
                cmd.arg("--open-access");
                cmd.arg("--listen").arg("127.0.0.1:0").arg("--data-dir");
                let data = self.node_data_dir(node);
                std::fs::create_dir_all(&data)?;
                cmd.arg(data);
                if self.read_only_token {
                    cmd.arg("--read-only-token")
                        .arg(crate::wire::READ_ONLY_TOKEN);
                }
                if self.trust_loopback {
                    cmd.arg("--trusted-proxy").arg("127.0.0.1");
                }
                if let Some(db) = &self.database {
                    cmd.arg("--postgres").arg(db.url());
                }
                if let Some(secret) = &self.secret {
                    cmd.arg("--cluster-listen")
                        .arg("127.0.0.1:0")
                        .arg("--cluster-secret-file")
                        .arg(secret)
                        .arg("--cluster-lease-ms")
                        .arg(CLUSTER_LEASE_MS.to_string())
                        .arg("--cluster-renew-ms")
                        .arg(CLUSTER_RENEW_MS.to_string());
                }
                ready_prefix = "debrief listening on ";
            }
            TargetKind::Reference => {
                let script = &self.programs.reference_script;
                if !script.exists() {
                    bail!(
                        "reference server {} not found (npm ci --prefix bench/js)",
                        script.display()
                    );
                }
                let port = free_port()?;
                cmd = Command::new(&self.programs.node);
                cmd.arg(script)
                    .env("HOST", "127.0.0.1")
                    .env("PORT", port.to_string());
                // Nothing is persisted: YPERSISTENCE must stay unset.
                cmd.env_remove("YPERSISTENCE");
                ready_prefix = "running at ";
                fixed_addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
            }
            TargetKind::Hocuspocus => {
                let script = &self.programs.hocuspocus_script;
                let modules = script
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("node_modules/@hocuspocus/server");
                if !script.exists() || !modules.exists() {
                    bail!(
                        "Hocuspocus server {} or its modules not found (npm ci --prefix bench/js)",
                        script.display()
                    );
                }
                let db = self
                    .data_dir
                    .as_deref()
                    .unwrap_or(Path::new("."))
                    .join("hocuspocus.sqlite");
                cmd = Command::new(&self.programs.node);
                cmd.arg(script)
                    .arg("--host")
                    .arg("127.0.0.1")
                    .arg("--port")
                    .arg("0")
                    .arg("--db")
                    .arg(db);
                ready_prefix = "hocuspocus listening on ";
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .kill_on_drop(true);
        // Debrief starts with the soft open-file limit an operator's shell would give it (the
        // child inherits this process's limits at spawn, so they are lowered around it).
        let nofile = match self.kind.is_debrief() {
            true => self.programs.debrief_nofile,
            false => None,
        };
        let restore = match nofile {
            Some(n) => Some(crate::procstat::set_soft_nofile(n)?),
            None => None,
        };
        let spawned = cmd.spawn();
        if let Some(old) = restore {
            crate::procstat::set_soft_nofile(old)?;
        }
        let mut child = spawned.with_context(|| format!("spawning {}", self.kind.name()))?;
        let pid = child.id().ok_or_else(|| anyhow!("child has no pid"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut log_out = tokio::fs::File::from_std(log);
        let wait_ready = async {
            while let Some(line) = lines.next_line().await? {
                log_out.write_all(line.as_bytes()).await?;
                log_out.write_all(b"\n").await?;
                if let Some(rest) = line.strip_prefix(ready_prefix) {
                    let addr = match fixed_addr {
                        Some(a) => a,
                        None => rest
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .parse::<SocketAddr>()
                            .with_context(|| format!("parsing address in {line:?}"))?,
                    };
                    return Ok::<_, anyhow::Error>(addr);
                }
            }
            bail!("server closed stdout before saying it was listening")
        };
        let addr = match tokio::time::timeout(Duration::from_secs(60), wait_ready).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = child.start_kill();
                return Err(e.context(format!(
                    "{} did not start; see {}",
                    self.kind.name(),
                    log_path.display()
                )));
            }
            Err(_) => {
                let _ = child.start_kill();
                bail!(
                    "{} not listening after 60 s; see {}",
                    self.kind.name(),
                    log_path.display()
                );
            }
        };
        // Keep draining stdout into the log so the child never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log_out.write_all(line.as_bytes()).await;
                let _ = log_out.write_all(b"\n").await;
            }
        });
        Ok(Running {
            node,
            child,
            pid,
            addr,
        })
    }

    /// SIGTERM to every node at once, then waits for each (SIGKILL after 20 s). The status is
    /// the first unsuccessful one (else the last), the time that of the slowest node.
    pub async fn stop(&mut self) -> Result<StopInfo> {
        if self.running.is_empty() {
            bail!("{} is not running", self.kind.name());
        }
        let t0 = Instant::now();
        let nodes: Vec<Running> = self.running.drain(..).collect();
        for r in &nodes {
            if let Err(e) = signal(r.pid, Signal::SIGTERM) {
                eprintln!("warning: SIGTERM to {} failed: {e:#}", r.pid);
            }
        }
        let mut info = StopInfo {
            status: None,
            took: Duration::ZERO,
            killed: false,
        };
        for mut r in nodes {
            let left = Duration::from_secs(20).saturating_sub(t0.elapsed());
            let status = match tokio::time::timeout(left, r.child.wait()).await {
                Ok(status) => Some(status?),
                Err(_) => {
                    r.child.start_kill()?;
                    info.killed = true;
                    r.child.wait().await.ok()
                }
            };
            if info.status.is_none_or(|s| s.success()) {
                info.status = status.or(info.status);
            }
        }
        info.took = t0.elapsed();
        Ok(info)
    }

    /// SIGKILL to every node, then waits for them to be gone. Returns when the signal was
    /// sent (to the first node).
    pub async fn kill(&mut self) -> Result<Instant> {
        if self.running.is_empty() {
            bail!("{} is not running", self.kind.name());
        }
        let nodes: Vec<usize> = self.running.iter().map(|r| r.node).collect();
        let mut first = None;
        for node in nodes {
            let at = self.kill_node(node).await?;
            first.get_or_insert(at);
        }
        first.ok_or_else(|| anyhow!("{} is not running", self.kind.name()))
    }

    /// SIGKILL to node `node` alone (0 for a single server), then waits for it to be gone;
    /// the other nodes keep running. Returns when the signal was sent.
    pub async fn kill_node(&mut self, node: usize) -> Result<Instant> {
        let i = self
            .running
            .iter()
            .position(|r| r.node == node)
            .ok_or_else(|| anyhow!("{} node {node} is not running", self.kind.name()))?;
        let mut running = self.running.remove(i);
        let at = Instant::now();
        signal(running.pid, Signal::SIGKILL)?;
        running.child.wait().await?;
        Ok(at)
    }

    /// The processes whose CPU a measurement of this target counts.
    pub fn processes(&self) -> Result<Processes> {
        if self.running.is_empty() {
            bail!("{} is not running", self.kind.name());
        }
        Ok(Processes {
            servers: self.running.iter().map(|r| r.pid).collect(),
            database: self.database.as_ref().map(|db| db.postmaster),
        })
    }

    /// Whether any node runs.
    pub fn is_running(&self) -> bool {
        !self.running.is_empty()
    }
}

fn signal(pid: u32, sig: Signal) -> Result<()> {
    nix::sys::signal::kill(Pid::from_raw(i32::try_from(pid)?), sig)
        .with_context(|| format!("{sig} to {pid}"))
}

/// Writes a fresh cluster secret (64 hex characters) readable by its owner only, as the server
/// requires of `--cluster-secret-file`.
fn write_secret(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let hex: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(hex.as_bytes())?;
    Ok(())
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(db) = self.database.take() {
            db.drop_now();
        }
    }
}

/// A database of its own for one `debrief-pg` target.
#[derive(Debug)]
struct Database {
    admin: String,
    name: String,
    /// The cluster's postmaster, whose processes' CPU is the database's.
    postmaster: u32,
}

impl Database {
    async fn create(admin: &str) -> Result<Database> {
        let name = format!("bench_{:016x}", rand::random::<u64>());
        let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .context("connecting to --postgres")?;
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let dir: String = client
            .query_one("SELECT current_setting('data_directory')", &[])
            .await
            .context("reading the cluster's data directory (needs a superuser)")?
            .get(0);
        drop(client);
        let _ = task.await;
        let pid_file = Path::new(&dir).join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .parse::<u32>()
            .with_context(|| format!("the postmaster's pid in {}", pid_file.display()))?;
        Ok(Database {
            admin: admin.to_owned(),
            name,
            postmaster,
        })
    }

    fn url(&self) -> String {
        format!("{} dbname={}", self.admin, self.name)
    }

    /// Drops the database, on a thread with a runtime of its own (a drop may run inside or
    /// outside the bench's runtime).
    fn drop_now(self) {
        let Database { admin, name, .. } = self;
        let dropped = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
                let task = tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                drop(client);
                let _ = task.await;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop a benchmark database: {dropped:?}");
        }
    }
}

/// A port that was free a moment ago (the reference server needs one chosen for it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_targets_parse_by_name_and_short_name() {
        for (name, kind, dialect) in [
            (
                "debrief-cluster",
                TargetKind::DebriefCluster,
                Dialect::YWebsocket,
            ),
            ("cluster", TargetKind::DebriefCluster, Dialect::YWebsocket),
            (
                "debrief-cluster-collab",
                TargetKind::DebriefClusterCollab,
                Dialect::Hocuspocus,
            ),
            (
                "cluster-collab",
                TargetKind::DebriefClusterCollab,
                Dialect::Hocuspocus,
            ),
        ] {
            let parsed = TargetKind::parse(name).expect("parses");
            assert_eq!(parsed, kind);
            assert_eq!(parsed.dialect(), dialect);
            assert_eq!(
                TargetKind::parse(parsed.name()).expect("its own name parses"),
                kind
            );
            assert!(parsed.on_postgres() && parsed.is_debrief() && parsed.persistent());
            assert_eq!(parsed.nodes(), 3);
        }
        assert_eq!(TargetKind::DebriefPg.nodes(), 1);
        assert_eq!(
            TargetKind::parse("clusters")
                .expect_err("not a target")
                .to_string(),
            "unknown target \"clusters\" (known: debrief, reference, debrief-collab, hocuspocus, \
             debrief-pg, debrief-pg-collab, debrief-cluster, debrief-cluster-collab)"
        );
    }

    /// A target whose "nodes" are `sleep` processes with made-up addresses: what `addr`
    /// hands out and what `kill_node` leaves, without starting Debrief.
    async fn fake_cluster(dir: &Path) -> Target {
        let programs = Programs {
            debrief_bin: PathBuf::from("debrief"),
            node: PathBuf::from("node"),
            reference_script: PathBuf::new(),
            hocuspocus_script: PathBuf::new(),
            debrief_nofile: None,
            postgres: None,
        };
        let mut target = Target::new(TargetKind::DebriefCluster, &programs, dir).expect("works");
        for node in 0..CLUSTER_NODES {
            let child = Command::new("sleep")
                .arg("60")
                .kill_on_drop(true)
                .spawn()
                .expect("works");
            target.running.push(Running {
                node,
                pid: child.id().expect("works"),
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + node as u16)),
            });
        }
        target
    }

    fn port(a: &DocAddr) -> String {
        a.url
            .split(':')
            .nth(2)
            .and_then(|rest| rest.split('/').next())
            .expect("works")
            .to_owned()
    }

    #[tokio::test]
    async fn clients_are_spread_over_the_nodes_round_robin_and_over_survivors_after_a_kill() {
        let dir = std::env::temp_dir().join(format!("bench-spread-{}", std::process::id()));
        let mut target = fake_cluster(&dir).await;
        let ports: Vec<String> = (0..7)
            .map(|i| port(&target.addr(&format!("doc-{i}")).expect("works")))
            .collect();
        assert_eq!(
            ports,
            ["1000", "1001", "1002", "1000", "1001", "1002", "1000"]
        );
        // observers go round the same way
        assert_eq!(port(&target.observer_addr("doc").expect("works")), "1001");
        assert_eq!(port(&target.addr_on("doc", 2).expect("works")), "1002");
        assert_eq!(target.processes().expect("works").servers.len(), 3);

        target.kill_node(2).await.expect("works");
        let ports: Vec<String> = (0..4)
            .map(|_| port(&target.addr("doc").expect("works")))
            .collect();
        assert_eq!(ports.iter().filter(|p| *p == "1000").count(), 2);
        assert_eq!(ports.iter().filter(|p| *p == "1001").count(), 2);
        assert_eq!(
            target
                .addr_on("doc", 2)
                .expect_err("node 2 was killed")
                .to_string(),
            "debrief-cluster node 2 is not running"
        );
        assert_eq!(target.processes().expect("works").servers.len(), 2);
        target.kill().await.expect("works");
        assert!(!target.is_running());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cluster_secret_is_64_hex_characters_only_its_owner_may_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bench-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("works");
        let path = dir.join("cluster-secret");
        write_secret(&path).expect("works");
        let secret = std::fs::read_to_string(&path).expect("works");
        assert_eq!(secret.len(), 64);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path)
            .expect("works")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
