//! The figures of one (scenario, target) run, and latency summaries.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_micros(mut v: Vec<u32>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() - 1) as f64 * q).round() as usize;
            f64::from(v[i.min(v.len() - 1)]) / 1000.0
        };
        Some(Latency {
            samples: v.len() as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: f64::from(v[v.len() - 1]) / 1000.0,
        })
    }
}

/// Everything measured for one target in one scenario. Absent figures are `None`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurement {
    pub target: String,
    /// Set when the run failed; other figures may then be partial.
    pub error: Option<String>,
    pub docs: u64,
    pub clients: u64,
    /// Measured window: from the first send to the end of the drain (all deliveries in,
    /// or the drain timeout).
    pub window_s: Option<f64>,
    pub sent: u64,
    pub sent_per_s: Option<f64>,
    pub expected_deliveries: u64,
    pub delivered: u64,
    /// delivered / expected.
    pub delivered_ratio: Option<f64>,
    pub delivered_per_s: Option<f64>,
    /// Updates received that matched no logged send (and were no echo).
    pub unmatched: u64,
    /// Own updates the server sent back to their sender (y-websocket-server does).
    pub echoes: u64,
    pub awareness_rx: u64,
    pub latency: Option<Latency>,
    /// Server utime+stime over the measured window.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Load generator (this process) utime+stime over the window.
    pub loadgen_cpu_s: Option<f64>,
    /// Server VmHWM at the end of the run.
    pub peak_rss_bytes: Option<u64>,
    /// Scenario 4: (RSS with all connections open - RSS before) / connections.
    pub rss_per_idle_conn_bytes: Option<f64>,
    pub rss_before_bytes: Option<u64>,
    pub rss_loaded_bytes: Option<u64>,
    /// Scenario 4: server CPU while the connections sit idle, percent of one core.
    pub idle_cpu_pct: Option<f64>,
    /// Time to open (and sync) all connections.
    pub connect_s: Option<f64>,
    /// Apparent size of the files in the data directory after the server stopped.
    pub disk_bytes: Option<u64>,
    /// Allocated blocks of those files.
    pub disk_alloc_bytes: Option<u64>,
    /// Document size in characters and as a Yjs v1 update (scenarios 5, 6).
    pub doc_chars: Option<u64>,
    pub doc_encoded_bytes: Option<u64>,
    /// Every observer ended with the writer's text (and the trace's end content when
    /// the whole trace was replayed).
    pub content_ok: Option<bool>,
    /// Time from opening a connection to holding the full document, in a fresh client.
    pub cold_load_ms: Option<f64>,
    /// Part of cold_load_ms until the SyncStep2 frame had arrived (the rest is the client
    /// decoding and applying it).
    pub cold_load_received_ms: Option<f64>,
    /// How `cold_load_ms` was taken: "after restart", or "in memory, no restart".
    pub cold_load_kind: Option<String>,
    /// Same as cold_load_ms for a second fresh client right after (document in memory).
    pub warm_load_ms: Option<f64>,
    /// Spawn of the restarted server to its "listening" line.
    pub restart_ms: Option<f64>,
    /// How the server stopped (exit status), for the last stop.
    pub stop: Option<String>,
    pub notes: Vec<String>,
}

impl Measurement {
    pub fn new(target: &str) -> Self {
        Measurement {
            target: target.to_string(),
            ..Default::default()
        }
    }
}
