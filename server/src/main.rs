//! The `debrief` binary: parse configuration, start tracing, bind, and hand over to
//! [`debrief_server::run`] with a shutdown token cancelled by SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use debrief_server::config::{Cli, LogFormat};
use debrief_server::limits::SHUTDOWN_GRACE;
use debrief_server::Config;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve());
    // `run` already waited for every task it owns; do not let a stray blocking task (a long
    // compaction) hold the exit hostage.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

async fn serve() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
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
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    debrief_server::run(listener, Config::from(&cli), shutdown)
        .await
        .context("server failed")
}

/// Library targets whose events carry a client's address or raw message contents (tokens,
/// anonymous texts): never logged, whatever `RUST_LOG` says.
const NEVER_LOGGED: [&str; 5] = [
    "axum::serve=off",
    "hyper=off",
    "hyper_util=off",
    "tungstenite=off",
    "tokio_tungstenite=off",
];

fn init_tracing(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Client addresses and message contents are never logged, at any level
    // (docs/anonymity.md).
    for quiet in NEVER_LOGGED {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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
