//! The `debrief` binary: parse configuration, start tracing, bind, open the store, say it is
//! listening, and serve ([`debrief_server::Server`]) until SIGINT or SIGTERM cancels the
//! shutdown token.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use debrief_server::config::{Cli, Command, LogFormat};
use debrief_server::limits::SHUTDOWN_GRACE;
use debrief_server::ops::check::Checked;
use debrief_server::storage::store::StoreError;
use debrief_server::{Config, ServerError};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    for tag in &cli.factor_tags {
        if let Err(refused) = debrief_server::reviews::fields::validate_factor(tag) {
            eprintln!("error: --factor-tags: {tag:?}: {}", refused.message);
            std::process::exit(2);
        }
    }
    if let Some(command) = cli.command.clone() {
        if cli
            .postgres
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
        {
            // Said in one line: the tools below read and write sled's files only.
            eprintln!("error: {}", debrief_server::ops::admin::POSTGRES_BACKUP);
            std::process::exit(2);
        }
        std::process::exit(admin_command(command));
    }
    if let Err(e) = cli.trackers() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if let Err(e) = cli.sign_in() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    match cli.cluster() {
        Ok(options) => {
            // Said in the cluster's own words (the lease and the renewal interval are named).
            if let Err(e) = debrief_server::cluster_settings(&options) {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.workers())
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(cli));
    // `run` already waited for every task it owns; do not let a stray blocking task (a long
    // compaction) hold the exit hostage.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    if let Err(e) = &result {
        if let Some(ServerError::Store(StoreError::Damaged(damage))) = e.downcast_ref() {
            // Said once, plainly, one damaged thing per line.
            eprintln!("error: {damage}");
            std::process::exit(1);
        }
        if let Some(ServerError::Store(refused @ StoreError::Postgres(_))) = e.downcast_ref() {
            // The database could not be reached or refused us: one line saying why.
            eprintln!("error: {refused}");
            std::process::exit(1);
        }
        if let Some(ServerError::Cluster(why)) = e.downcast_ref() {
            eprintln!("error: {why}");
            std::process::exit(1);
        }
        if let Some(ServerError::SignIn(why)) = e.downcast_ref() {
            eprintln!("error: {why}");
            std::process::exit(1);
        }
    }
    result
}

/// Runs `check`, `backup` or `restore`; returns the exit status.
fn admin_command(command: Command) -> i32 {
    match command {
        Command::Check { data_dir } => match debrief_server::ops::check::check(&data_dir) {
            Ok(Checked::Healthy) => {
                println!("ok");
                0
            }
            Ok(Checked::Damaged(lines)) => {
                for line in lines {
                    println!("damaged: {line}");
                }
                1
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Backup { data_dir, to } => match backup(&data_dir, &to) {
            Ok(summary) => {
                println!("backup written to {}: {summary}", to.display());
                0
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        Command::Restore { from, data_dir } => {
            match debrief_server::ops::backup::restore(&from, &data_dir) {
                Ok(summary) => {
                    println!("restored into {}: {summary}", data_dir.display());
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    }
}

/// Through the running server's socket, or directly on a data directory no server runs on.
fn backup(data_dir: &std::path::Path, to: &std::path::Path) -> anyhow::Result<String> {
    let to = std::path::absolute(to).context("resolving the backup path")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let online = runtime
        .block_on(debrief_server::ops::admin::request_backup(data_dir, &to))
        .map_err(|e| anyhow::anyhow!("the server refused the backup: {e}"))?;
    if let Some(summary) = online {
        return Ok(summary);
    }
    let (store, flusher) = debrief_server::storage::store::Store::open(data_dir)
        .with_context(|| format!("opening {} (no server answers on it)", data_dir.display()))?;
    let written = match store.db() {
        Some(db) => debrief_server::ops::backup::write(db, data_dir, &to),
        None => anyhow::bail!("{}", debrief_server::ops::admin::POSTGRES_BACKUP),
    };
    drop(store);
    flusher.run();
    Ok(written?.to_string())
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.log_format);
    raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    // The store opens (sled recovers its log) before the server says it is listening, so that
    // "listening" means connections are served at once.
    let server = debrief_server::Server::open(Config::from(&cli), shutdown)
        .await
        .context("opening the server")?;
    // Tests and scripts read these lines to learn the ports when listening on port 0.
    {
        let mut out = std::io::stdout().lock();
        if let Some(links) = server.link_address() {
            writeln!(out, "debrief links on {links}").context("writing to stdout")?;
        }
        writeln!(out, "debrief listening on {addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    tracing::info!(%addr, data_dir = %cli.data_dir.display(), "listening");
    if cli.open_access {
        tracing::warn!(
            "open access: anyone who reaches this server may read and write every document \
             outside reviews (review documents still follow their review's rules)"
        );
    }
    if !debrief_server::transport::web::built() {
        tracing::warn!("built without the browser app (web/dist); `scripts/run` builds both");
    }
    server.serve(listener).await.context("server failed")
}

/// Open files a server should be able to hold: every connection is one. Ten thousand sockets
/// (bench scenario 10) and the store's files fit, with room.
const WANTED_OPEN_FILES: u64 = 65_536;

/// Raises the soft open-file limit to the hard one (the usual default of 1,024 allows about a
/// thousand connections; issue 21), and says so at start-up when even the hard limit is low.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else {
        return; // unlimited already
    };
    let target = hard.unwrap_or(WANTED_OPEN_FILES.max(soft));
    if target > soft {
        let raised = rustix::process::Rlimit {
            current: Some(target),
            maximum: hard,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(from = soft, to = target, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, soft, "could not raise the open-file limit"),
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if let Some(now) = now.filter(|n| *n < WANTED_OPEN_FILES) {
        tracing::warn!(
            limit = now,
            wanted = WANTED_OPEN_FILES,
            "the open-file limit allows about {} connections; raise the hard limit \
             (`ulimit -Hn`, or LimitNOFILE= in a systemd unit) to serve more",
            now.saturating_sub(64)
        );
    }
}

/// Where log events may come from. Debrief's own events follow `RUST_LOG` at every level: they
/// are written never to carry stored data, request bodies, tokens or anything about an anonymous
/// item (docs/anonymity.md). A dependency's events are another matter: sled's trace events print
/// every stored key and value as a list of numbers, hyper's and tungstenite's print client
/// addresses and raw messages, and a new version of any library may start doing the same. So a
/// filter of its own, applied after the `RUST_LOG` filter so that no directive can bring them
/// back, lets through only:
/// - Debrief's own targets, at the level `RUST_LOG` asks for;
/// - other libraries' warnings and errors, except the targets of [`NEVER_LOGGED`], which are
///   dropped at every level.
const OURS: [&str; 3] = ["debrief", "debrief_server", "debrief_proto"];

/// Library targets dropped at every level: the stores' (keys and values; tokio-postgres prints
/// statement parameters at debug level), and the transport's (client addresses, raw frames,
/// tokens).
const NEVER_LOGGED: [&str; 10] = [
    "sled",
    "pagecache",
    "tokio_postgres",
    "postgres_protocol",
    "axum::serve",
    "hyper",
    "hyper_util",
    "h2",
    "tungstenite",
    "tokio_tungstenite",
];

/// Whether `target` is `module` or a module inside it.
fn within(target: &str, module: &str) -> bool {
    target
        .strip_prefix(module)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Whether an event of `target` at `level` may be logged at all.
fn loggable(target: &str, level: tracing::Level) -> bool {
    if OURS.iter().any(|ours| within(target, ours)) {
        return true;
    }
    !NEVER_LOGGED.iter().any(|quiet| within(target, quiet)) && level <= tracing::Level::WARN
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let never = filter_fn(|meta| loggable(meta.target(), *meta.level()));
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi)
                    .with_filter(never),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(never),
            )
            .init(),
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    /// The default contributing factors are what the review domain would store for them.
    #[test]
    fn the_default_factor_tags_are_valid_and_normal() {
        for tag in debrief_server::config::DEFAULT_FACTOR_TAGS {
            let normal = debrief_server::reviews::fields::validate_factor(tag).expect("valid");
            assert_eq!(normal, tag);
        }
    }

    /// The sign-in flags: header names in lower case, ranges parsed, a bad one named.
    #[test]
    fn sign_in_flags_are_checked_at_start_up() {
        use clap::Parser;
        let cli = debrief_server::config::Cli::parse_from([
            "debrief",
            "--trusted-identity-header",
            "X-Forwarded-User",
            "--trusted-email-header",
            "X-Forwarded-Email",
            "--trusted-proxy",
            "10.0.0.0/8,::1",
            "--trusted-proxy",
            "192.168.1.4",
            "--allowed-email-domain",
            "@Example.com",
        ]);
        let sign_in = cli.sign_in().expect("valid");
        let trusted = sign_in.trusted.as_ref().expect("proxy mode");
        assert_eq!(trusted.identity, "x-forwarded-user");
        assert_eq!(trusted.email.as_deref(), Some("x-forwarded-email"));
        assert_eq!(sign_in.proxies.len(), 3);
        assert_eq!(sign_in.allowed_email_domains, ["example.com"]);
        assert!(sign_in.enabled());
        let bad = debrief_server::config::Cli::parse_from([
            "debrief",
            "--trusted-identity-header",
            "X-Forwarded-User",
            "--trusted-proxy",
            "10.0.0.0/40",
        ]);
        assert_eq!(
            bad.sign_in().expect_err("bad range"),
            "--trusted-proxy: \"10.0.0.0/40\": the prefix length is 0 to 32"
        );
        let bad = debrief_server::config::Cli::parse_from([
            "debrief",
            "--trusted-identity-header",
            "X Forwarded",
        ]);
        assert_eq!(
            bad.sign_in().expect_err("bad header"),
            "--trusted-identity-header: \"X Forwarded\" is not a header name"
        );
        let bad = debrief_server::config::Cli::parse_from([
            "debrief",
            "--trusted-identity-header",
            "X-Forwarded-User",
            "--trusted-proxy",
            "::ffff:10.0.0.0/64",
        ]);
        assert_eq!(
            bad.sign_in()
                .expect_err("mapped range shorter than the mapping"),
            "--trusted-proxy: \"::ffff:10.0.0.0/64\": an IPv4 range written as IPv6 (::ffff:…) \
             needs a prefix length of 96 to 128; write it as IPv4 (10.0.0.0/8)"
        );
        let off = debrief_server::config::Cli::parse_from(["debrief"]);
        assert!(!off.sign_in().expect("valid").enabled());
    }

    #[test]
    fn only_debriefs_own_events_pass_below_warn_and_the_store_never() {
        use super::loggable;
        assert!(loggable("debrief_server::reviews::api", Level::TRACE));
        assert!(loggable("debrief", Level::DEBUG));
        assert!(!loggable("debrief_serverless", Level::TRACE));
        assert!(!loggable("sled::tree", Level::TRACE));
        assert!(!loggable("sled", Level::ERROR));
        assert!(!loggable("pagecache::iobuf", Level::WARN));
        assert!(!loggable("tokio_postgres::query", Level::ERROR));
        assert!(!loggable("postgres_protocol::message", Level::WARN));
        assert!(!loggable("tungstenite::protocol", Level::ERROR));
        assert!(!loggable("axum::serve", Level::WARN));
        assert!(!loggable("hyper_util::client", Level::ERROR));
        assert!(!loggable("tower::buffer", Level::DEBUG));
        assert!(loggable("tower::buffer", Level::WARN));
        assert!(loggable("hyperloglog", Level::ERROR));
        assert!(!loggable("hyperloglog", Level::INFO));
    }
}
