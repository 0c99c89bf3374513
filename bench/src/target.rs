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
//!   afterwards; the cluster's CPU is measured beside the server's.
//!
//! Adding a server kind means: a [`TargetKind`] variant, its command line and "ready" line
//! in [`Target::spawn`], its address in [`Target::addr`], and, if it speaks another framing
//! of the Yjs messages, a [`Dialect`] variant handled by `wire.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
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
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Debrief => "debrief",
            TargetKind::Reference => "reference",
            TargetKind::DebriefCollab => "debrief-collab",
            TargetKind::Hocuspocus => "hocuspocus",
            TargetKind::DebriefPg => "debrief-pg",
            TargetKind::DebriefPgCollab => "debrief-pg-collab",
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
            other => bail!(
                "unknown target {other:?} (known: debrief, reference, debrief-collab, hocuspocus, \
                 debrief-pg, debrief-pg-collab)"
            ),
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            TargetKind::Debrief | TargetKind::Reference | TargetKind::DebriefPg => {
                Dialect::YWebsocket
            }
            TargetKind::DebriefCollab | TargetKind::Hocuspocus | TargetKind::DebriefPgCollab => {
                Dialect::Hocuspocus
            }
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
        )
    }

    /// Whether the server keeps its data in PostgreSQL.
    pub fn on_postgres(self) -> bool {
        matches!(self, TargetKind::DebriefPg | TargetKind::DebriefPgCollab)
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
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

#[derive(Debug)]
pub struct Target {
    pub kind: TargetKind,
    programs: Programs,
    /// Data directory (persistent targets only); kept across restarts.
    data_dir: Option<PathBuf>,
    log_path: PathBuf,
    running: Option<Running>,
    /// Debrief is started with `--read-only-token` [`crate::wire::READ_ONLY_TOKEN`].
    pub read_only_token: bool,
    /// The `debrief-pg` targets' database, made at the first start, kept across restarts and
    /// dropped with the target.
    database: Option<Database>,
}

/// The processes a measurement counts: the server, and for the `debrief-pg` targets the
/// postmaster of its PostgreSQL cluster (whose processes' CPU is the database's).
#[derive(Debug, Clone, Copy)]
pub struct Processes {
    pub server: u32,
    pub database: Option<u32>,
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
            running: None,
            read_only_token: false,
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

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> Result<u32> {
        self.running
            .as_ref()
            .map(|r| r.pid)
            .ok_or_else(|| anyhow!("{} is not running", self.kind.name()))
    }

    /// Where document `doc` is served.
    pub fn addr(&self, doc: &str) -> Result<DocAddr> {
        let addr = self
            .running
            .as_ref()
            .map(|r| r.addr)
            .ok_or_else(|| anyhow!("{} is not running", self.kind.name()))?;
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
        })
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
    pub async fn start(&mut self) -> Result<Duration> {
        if self.running.is_some() {
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
        let t0 = Instant::now();
        let running = self.spawn().await?;
        let took = t0.elapsed();
        self.running = Some(running);
        Ok(took)
    }

    async fn spawn(&self) -> Result<Running> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut cmd;
        let ready_prefix: &str;
        let mut fixed_addr = None;
        match self.kind {
            TargetKind::Debrief
            | TargetKind::DebriefCollab
            | TargetKind::DebriefPg
            | TargetKind::DebriefPgCollab => {
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
                cmd.arg(self.data_dir.as_deref().unwrap_or(Path::new(".")));
                if self.read_only_token {
                    cmd.arg("--read-only-token")
                        .arg(crate::wire::READ_ONLY_TOKEN);
                }
                if let Some(db) = &self.database {
                    cmd.arg("--postgres").arg(db.url());
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
                    self.log_path.display()
                )));
            }
            Err(_) => {
                let _ = child.start_kill();
                bail!(
                    "{} not listening after 60 s; see {}",
                    self.kind.name(),
                    self.log_path.display()
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
        Ok(Running { child, pid, addr })
    }

    /// SIGTERM, then waits (SIGKILL after 20 s).
    pub async fn stop(&mut self) -> Result<StopInfo> {
        let Some(mut running) = self.running.take() else {
            bail!("{} is not running", self.kind.name());
        };
        let t0 = Instant::now();
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = i32::try_from(running.pid)?;
        if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
            eprintln!("warning: SIGTERM to {} failed: {e}", running.pid);
        }
        match tokio::time::timeout(Duration::from_secs(20), running.child.wait()).await {
            Ok(status) => Ok(StopInfo {
                status: Some(status?),
                took: t0.elapsed(),
                killed: false,
            }),
            Err(_) => {
                running.child.start_kill()?;
                let status = running.child.wait().await.ok();
                Ok(StopInfo {
                    status,
                    took: t0.elapsed(),
                    killed: true,
                })
            }
        }
    }

    /// SIGKILL, then waits for the process to be gone. Returns when the signal was sent.
    pub async fn kill(&mut self) -> Result<Instant> {
        let Some(mut running) = self.running.take() else {
            bail!("{} is not running", self.kind.name());
        };
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let at = Instant::now();
        kill(Pid::from_raw(i32::try_from(running.pid)?), Signal::SIGKILL)
            .with_context(|| format!("SIGKILL to {}", running.pid))?;
        running.child.wait().await?;
        Ok(at)
    }

    /// The processes whose CPU a measurement of this target counts.
    pub fn processes(&self) -> Result<Processes> {
        Ok(Processes {
            server: self.pid()?,
            database: self.database.as_ref().map(|db| db.postmaster),
        })
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
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
