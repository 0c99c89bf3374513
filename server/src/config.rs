//! Server configuration: one struct, parsed from flags with `DEBRIEF_*` environment equivalents.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::limits::Limits;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Command-line configuration of the `debrief` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "debrief",
    version,
    about = "Collaborative blameless post-mortems"
)]
pub struct Cli {
    /// Address to listen on. Port 0 picks a free port (the bound address is printed on stdout).
    #[arg(long, env = "DEBRIEF_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,

    /// Directory of the embedded sled store; created when missing.
    #[arg(long, env = "DEBRIEF_DATA_DIR", default_value = "./debrief-data")]
    pub data_dir: PathBuf,

    /// Log output format; the level is set with RUST_LOG (default `info`).
    #[arg(long, env = "DEBRIEF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// What [`crate::run`] needs, independent of how it was obtained (flags, or a test).
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the sled store.
    pub data_dir: PathBuf,
    /// The bounds in force.
    pub limits: Limits,
}

impl Config {
    /// A configuration with default limits for the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            limits: Limits::default(),
        }
    }
}

impl From<&Cli> for Config {
    fn from(cli: &Cli) -> Self {
        Config::new(cli.data_dir.clone())
    }
}
