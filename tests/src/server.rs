//! Starting the server under test: in-process through `debrief_server::run` (the same code the
//! binary runs), or as the real `debrief` binary in a child process for crash tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use debrief_server::documents::access::{Authorizer, StaticTokens};
use debrief_server::limits::{Limits, SHUTDOWN_GRACE};
use debrief_server::storage::postgres::PgSettings;
use debrief_server::Config;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The server running in this process on an ephemeral port.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    dir: TempDir,
    config: Config,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), debrief_server::ServerError>>>,
}

impl TestServer {
    /// Starts with default limits and a fresh data directory.
    pub async fn start() -> TestServer {
        TestServer::with_limits(Limits::default()).await
    }

    /// Starts with the given limits and a fresh data directory.
    pub async fn with_limits(limits: Limits) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer::start_in(dir, limits, Arc::new(StaticTokens::open())).await
    }

    /// Starts with default limits and open access, documents and metadata in PostgreSQL at
    /// `url` (a fresh database: [`crate::postgres::TestDb`]), and a fresh data directory for what
    /// stays on disk.
    pub async fn with_postgres(url: &str) -> TestServer {
        TestServer::with_postgres_node(url, debrief_server::config::ClusterOptions::default()).await
    }

    /// [`TestServer::with_postgres`], its node's lease and renewal interval set (`docs/cluster.md`).
    pub async fn with_postgres_lease(
        url: &str,
        lease: std::time::Duration,
        renew_every: std::time::Duration,
    ) -> TestServer {
        let cluster = debrief_server::config::ClusterOptions {
            lease: Some(lease),
            renew_every: Some(renew_every),
            ..Default::default()
        };
        TestServer::with_postgres_node(url, cluster).await
    }

    async fn with_postgres_node(
        url: &str,
        cluster: debrief_server::config::ClusterOptions,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            postgres: Some(PgSettings {
                shared: false,
                url: url.to_owned(),
                patience: crate::WAIT,
                timeout: debrief_server::storage::postgres::DEFAULT_TIMEOUT,
            }),
            cluster,
            ..Config::new(dir.path().join("data"))
        };
        TestServer::start_with(dir, config).await
    }

    /// Starts with shared tokens instead of open access: [`WRITER_TOKEN`] reads and writes,
    /// [`READER_TOKEN`] only reads, any other token is refused.
    pub async fn with_tokens(limits: Limits) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = StaticTokens::new(
            false,
            Some(WRITER_TOKEN.to_owned()),
            Some(READER_TOKEN.to_owned()),
        );
        TestServer::start_in(dir, limits, Arc::new(tokens)).await
    }

    async fn start_in(dir: TempDir, limits: Limits, authorizer: Arc<dyn Authorizer>) -> TestServer {
        let config = Config {
            limits,
            authorizer,
            ..Config::new(dir.path().join("data"))
        };
        TestServer::start_with(dir, config).await
    }

    /// Starts with `config`, its data directory replaced by one inside `dir`.
    pub async fn start_with(dir: TempDir, config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..config
        };
        let task = tokio::spawn(debrief_server::run(
            listener,
            config.clone(),
            shutdown.clone(),
        ));
        TestServer {
            addr,
            dir,
            config,
            shutdown,
            task: Some(task),
        }
    }

    /// `ws://…/ws/{doc}`.
    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }

    /// `ws://…/collab`.
    pub fn collab_url(&self) -> String {
        format!("ws://{}/collab", self.addr)
    }

    /// `http://…{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The sled directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Cancels the shutdown token and waits for `run` to return, which it must do cleanly.
    ///
    /// The server bounds its own shutdown: its connections and documents get
    /// [`SHUTDOWN_GRACE`], and so does the flusher after the final flush. The harness waits that
    /// bound and [`crate::WAIT`] on top, not `WAIT` alone: a document's last compaction (16 MB
    /// of text, in a debug build on a loaded 2-core machine) may use seconds of the grace, and a
    /// server that keeps its own bound must not fail a test.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let patience = 2 * SHUTDOWN_GRACE + crate::WAIT;
            let result = crate::within_for(patience, "the server to stop", task).await;
            result.expect("server task").expect("server stops cleanly");
        }
    }

    /// Stops and starts again on the same data directory (and a new port).
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let TestServer { dir, config, .. } = self;
        TestServer::start_with(dir, config).await
    }

    /// Reads one metric from `GET /metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        metric_at(self.addr, name).await
    }

    /// Waits until a metric satisfies `pred`, polling the endpoint.
    pub async fn wait_metric(&self, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
        wait_metric_at(self.addr, name, pred).await
    }
}

/// Waits until the metric `name` of the server at `addr` satisfies `pred`, polling its
/// endpoint (a metric has no event to wait on).
async fn wait_metric_at(addr: SocketAddr, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
    crate::within(&format!("metric {name}"), async {
        loop {
            let v = metric_at(addr, name).await;
            if pred(v) {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Reads the metric `name` from `GET /metrics` of the server at `addr`; a metric that is missing
/// or not a whole number fails the test.
async fn metric_at(addr: SocketAddr, name: &str) -> u64 {
    let body = crate::client::http_get(addr, "/metrics").await.1;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from {body}"))
}

/// The read-write token of [`TestServer::with_tokens`].
pub const WRITER_TOKEN: &str = "writer-secret";
/// The read-only token of [`TestServer::with_tokens`].
pub const READER_TOKEN: &str = "reader-secret";

/// The real `debrief` binary in a child process.
#[derive(Debug)]
pub struct ChildServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its cluster link listener listens (`--cluster-listen`), as it printed before its
    /// listening line.
    pub links: Option<SocketAddr>,
    child: Child,
}

/// Path of the debug `debrief` binary (built by the test command before the tests run), or
/// `DEBRIEF_BIN`.
pub fn binary_path() -> PathBuf {
    if let Ok(p) = std::env::var("DEBRIEF_BIN") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("..").join("target"));
    target.join("debug").join("debrief")
}

impl ChildServer {
    /// Reads one metric from `GET /metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        metric_at(self.addr, name).await
    }

    /// Waits until a metric satisfies `pred`, polling the endpoint.
    pub async fn wait_metric(&self, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
        wait_metric_at(self.addr, name, pred).await
    }

    /// Starts the binary on port 0 with `data_dir` and waits for its "listening" line.
    pub async fn start(data_dir: &Path) -> ChildServer {
        ChildServer::start_with(data_dir, &["--open-access"], None).await
    }

    /// Starts the binary with extra `args`; with `log`, its stderr goes to that file with
    /// `RUST_LOG=trace` (for tests that read everything the server logged).
    pub async fn start_with(data_dir: &Path, args: &[&str], log: Option<&Path>) -> ChildServer {
        ChildServer::start_under(&[], data_dir, args, log).await
    }

    /// As [`ChildServer::start_with`], run by the command `wrapper` (e.g. `prlimit …`), which
    /// must exec the binary it is given last.
    pub async fn start_under(
        wrapper: &[&str],
        data_dir: &Path,
        args: &[&str],
        log: Option<&Path>,
    ) -> ChildServer {
        let bin = binary_path();
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        command
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the log file");
                command.stderr(file).env("RUST_LOG", "trace");
            }
            None => {
                command.stderr(Stdio::inherit());
            }
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (run `cargo build -p debrief-server`)",
                bin.display()
            )
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut links = None;
        let addr = crate::within("the listening line", async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read stdout")
                    .expect("server exited before listening");
                if let Some(addr) = line.strip_prefix("debrief links on ") {
                    links = Some(addr.parse().expect("socket address"));
                }
                if let Some(addr) = line.strip_prefix("debrief listening on ") {
                    return addr.parse().expect("socket address");
                }
            }
        })
        .await;
        ChildServer { addr, links, child }
    }

    /// `ws://…/ws/{doc}`.
    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }

    /// `ws://…/collab`.
    pub fn collab_url(&self) -> String {
        format!("ws://{}/collab", self.addr)
    }

    /// `http://…{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// A line of `/proc/<pid>/status` in KiB, e.g. `VmRSS` or `VmHWM` (the peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} missing from the status"))
    }

    /// Sends `signal` (a name `kill` knows: `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        if signal == "STOP" {
            // A stop is delivered to each thread on its own: the process may still run for a
            // moment after `kill` returned. Waited for until every thread is stopped, so that
            // nothing a test sends from now on is handled before the process goes on.
            let tasks = std::path::PathBuf::from(format!("/proc/{pid}/task"));
            let started = std::time::Instant::now();
            while !all_stopped(&tasks) {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "the process did not stop"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// Waits for the process to exit by itself, and returns its status.
    pub async fn exited(mut self) -> std::process::ExitStatus {
        crate::within("the server to exit by itself", self.child.wait())
            .await
            .expect("wait")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("kill -9");
        self.child.wait().await.expect("reap");
    }

    /// SIGTERM, and wait for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        crate::within("the server to exit", self.child.wait())
            .await
            .expect("wait")
    }
}

/// What a run of the binary to its end printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Runs the `debrief` binary with `args` until it exits (for commands, and for a server that
/// must refuse to start).
pub async fn run_binary(args: &[&str]) -> Finished {
    let bin = binary_path();
    let output = crate::within(
        &format!("debrief {} to exit", args.join(" ")),
        Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Starts the binary as a server with `args` on a fresh data directory (port 0), expecting it to
/// refuse to start: its exit code and what it wrote on stderr.
pub async fn refused_with(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let mut all = vec!["--listen", "127.0.0.1:0", "--data-dir", &data];
    all.extend_from_slice(args);
    let finished = run_binary(&all).await;
    (finished.code, finished.stderr)
}

/// Starts the binary as a server on `data_dir` (port 0) and expects it to exit without serving.
pub async fn refused_start(data_dir: &Path) -> Finished {
    let dir = data_dir.to_string_lossy().into_owned();
    run_binary(&[
        "--open-access",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir,
    ])
    .await
}

/// Whether every thread under `tasks` (`/proc/PID/task`) is stopped (state `T` or `t`).
fn all_stopped(tasks: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return false;
    };
    entries.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}
