//! The `debrief` binary: parse configuration, start tracing, bind, open the store, say it is
//! listening, and serve ([`debrief_server::Server`]) until SIGINT or SIGTERM cancels the
//! shutdown token.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use debrief_server::config::{Cli, LogFormat};
use debrief_server::limits::SHUTDOWN_GRACE;
use debrief_server::Config;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.workers))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(cli));
    // `run` already waited for every task it owns; do not let a stray blocking task (a long
    // compaction) hold the exit hostage.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.log_format);
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
    // Tests and scripts read this line to learn the port when listening on port 0.
    {
        let mut out = std::io::stdout().lock();
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
    if !debrief_server::web::built() {
        tracing::warn!("built without the browser app (web/dist); `scripts/run` builds both");
    }
    server.serve(listener).await.context("server failed")
}

/// Library targets whose events carry a client's address or raw message contents (tokens,
/// anonymous texts): never logged, whatever `RUST_LOG` says (docs/anonymity.md). A filter of its
/// own drops them after the `RUST_LOG` filter, so no directive can bring them back.
const NEVER_LOGGED: [&str; 5] = [
    "axum::serve",
    "hyper",
    "hyper_util",
    "tungstenite",
    "tokio_tungstenite",
];

/// Whether events of `target` may be logged at all.
fn loggable(target: &str) -> bool {
    !NEVER_LOGGED.iter().any(|quiet| {
        target
            .strip_prefix(quiet)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let never = filter_fn(|meta| loggable(meta.target()));
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
    #[test]
    fn library_targets_with_addresses_or_messages_are_never_logged() {
        assert!(!super::loggable("tungstenite::protocol"));
        assert!(!super::loggable("axum::serve"));
        assert!(!super::loggable("hyper_util::client"));
        assert!(super::loggable("debrief_server::reviews::api"));
        assert!(super::loggable("hyperloglog"));
    }
}
