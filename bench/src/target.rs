//! Servers under test. A [`Target`] knows how to start its server on a free loopback
//! port, which URL serves a document, which process to measure, and how to stop it.
//!
//! Adding a server kind (e.g. Hocuspocus) means: a [`TargetKind`] variant, its command
//! line and "ready" line in [`Target::spawn`], its URL in [`Target::url`], and, if it
//! speaks another framing of the Yjs messages, a [`Dialect`] variant handled by
//! `client.rs`.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Debrief,
    Reference,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Debrief => "debrief",
            TargetKind::Reference => "reference",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "debrief" => Ok(TargetKind::Debrief),
            "reference" | "ref" | "y-websocket" => Ok(TargetKind::Reference),
            other => bail!("unknown target {other:?} (known: debrief, reference)"),
        }
    }
}

/// Where the servers' programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub debrief_bin: PathBuf,
    pub node: PathBuf,
    pub reference_script: PathBuf,
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
        let data_dir = match kind {
            TargetKind::Debrief => Some(work_dir.join("data")),
            TargetKind::Reference => None,
        };
        Ok(Target {
            kind,
            programs: programs.clone(),
            data_dir,
            log_path: work_dir.join(format!("{}.log", kind.name())),
            running: None,
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.kind {
            TargetKind::Debrief | TargetKind::Reference => Dialect::YWebsocket,
        }
    }

    /// Whether the server keeps documents across a restart.
    pub fn persistent(&self) -> bool {
        matches!(self.kind, TargetKind::Debrief)
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

    /// WebSocket URL of document `doc`.
    pub fn url(&self, doc: &str) -> Result<String> {
        let addr = self
            .running
            .as_ref()
            .map(|r| r.addr)
            .ok_or_else(|| anyhow!("{} is not running", self.kind.name()))?;
        // Both servers take the document from the path; y-websocket-server names the room
        // after the whole path ("ws/<doc>"), Debrief after the segment after /ws/.
        Ok(format!("ws://{addr}/ws/{doc}"))
    }

    /// Starts the server; returns the time from spawn until it said it was listening.
    pub async fn start(&mut self) -> Result<Duration> {
        if self.running.is_some() {
            bail!("{} already running", self.kind.name());
        }
        if let Some(d) = &self.data_dir {
            std::fs::create_dir_all(d)?;
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
            TargetKind::Debrief => {
                let bin = &self.programs.debrief_bin;
                if !bin.exists() {
                    bail!(
                        "Debrief binary {} not found (cargo build --release -p debrief-server, \
                         or pass --debrief-bin)",
                        bin.display()
                    );
                }
                cmd = Command::new(bin);
                cmd.arg("--listen").arg("127.0.0.1:0").arg("--data-dir");
                cmd.arg(self.data_dir.as_deref().unwrap_or(Path::new(".")));
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
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.kind.name()))?;
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

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

/// A port that was free a moment ago (the reference server needs one chosen for it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
