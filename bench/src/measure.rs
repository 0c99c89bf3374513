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
    /// Hocuspocus dialect: SyncStatus(1) acknowledgements the clients received.
    pub acks: u64,
    pub latency: Option<Latency>,
    /// Server utime+stime over the measured window.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    /// CPU of the server's PostgreSQL cluster in the window (`debrief-pg` targets).
    pub database_cpu_s: Option<f64>,
    /// The same per delivered update.
    pub database_cpu_us_per_delivery: Option<f64>,
    /// The kernel's part of it (stime): system calls, and the loopback delivery they run.
    pub server_kernel_us_per_delivery: Option<f64>,
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
    /// Part of cold_load_received_ms until the WebSocket was open (TCP connect and HTTP
    /// upgrade); the rest is the server reading the document and sending it.
    pub cold_load_connected_ms: Option<f64>,
    /// How `cold_load_ms` was taken: "after restart", or "in memory, no restart".
    pub cold_load_kind: Option<String>,
    /// Same as cold_load_ms for a second fresh client right after (document in memory).
    pub warm_load_ms: Option<f64>,
    /// Spawn of the restarted server to its "listening" line.
    pub restart_ms: Option<f64>,
    /// How the server stopped (exit status), for the last stop.
    pub stop: Option<String>,
    /// Scenario 7: kill -9 right after the last confirmed update, updates sent back to back.
    pub kill_b2b: Option<KillRun>,
    /// Scenario 7: the same with updates paced at a fixed rate.
    pub kill_paced: Option<KillRun>,
    /// Scenario 8: clients the server refused (connect or sync failed).
    pub refused: Option<u64>,
    /// Scenario 8: expected deliveries that never arrived (expected - delivered).
    pub undelivered: Option<u64>,
    /// Scenario 8: frames holding awareness, and their bytes, the clients received in the
    /// measured window; per client per second.
    pub awareness_rx_frames: Option<u64>,
    pub awareness_rx_bytes: Option<u64>,
    pub awareness_frames_per_client_s: Option<f64>,
    pub awareness_bytes_per_client_s: Option<f64>,
    /// Scenario 10: (RSS with all connections open - RSS before) / connections.
    pub rss_per_conn_bytes: Option<f64>,
    /// Scenario 9: one run per storm and variant.
    pub storms: Vec<StormRun>,
    /// Scenario 11: the owner of the documents killed with SIGKILL, its clients reconnecting.
    pub failover: Option<FailoverRun>,
    /// A cluster target: each node's share of the servers' CPU over the measured window, in
    /// the order the nodes started.
    pub node_cpu_share: Vec<f64>,
    /// A cluster target: which node served reviews (its `debrief_serves_reviews` was 1).
    pub review_node: Option<usize>,
    pub notes: Vec<String>,
}

/// One join storm of scenario 9.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StormRun {
    /// Document size asked for (MB of Yjs update) and joiners.
    pub mb: f64,
    pub joiners: u64,
    /// "cold": right after a restart; "warm": after a restart and one change.
    pub variant: String,
    /// Whether the server was restarted before the storm (not the in-memory reference).
    pub restarted: bool,
    /// Building the document (cold run only).
    pub build_s: Option<f64>,
    /// Size of the state a joiner received.
    pub state_bytes: Option<u64>,
    /// From a joiner's connect to its SyncStep2 frame received.
    pub time_to_synced: Option<Latency>,
    /// First joiner's start to the last joiner synced (or failed).
    pub storm_s: Option<f64>,
    pub synced: u64,
    /// Joiners whose received state holds exactly the document's text.
    pub complete: u64,
    pub failed: u64,
    /// Server and load generator CPU from the first joiner's start to the last synced.
    pub server_cpu_s: Option<f64>,
    pub loadgen_cpu_s: Option<f64>,
    pub rss_before_bytes: Option<u64>,
    /// Server VmHWM when every joiner has synced (since the restart).
    pub peak_rss_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

/// One kill -9 run of scenario 7: confirmed updates, then SIGKILL, restart, count.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KillRun {
    /// "back-to-back" or "paced N/s".
    pub mode: String,
    /// What confirmed an update: the server's SyncStatus(1) acknowledgement (Hocuspocus
    /// dialect) or a second client receiving it (y-websocket dialect).
    pub confirmed_by: String,
    pub sent: u64,
    pub confirmed: u64,
    /// Confirmed updates present in the document loaded after the restart.
    pub survived: u64,
    /// confirmed - survived.
    pub lost: u64,
    /// Updates sent but never confirmed that were present after the restart anyway.
    pub unconfirmed_survived: u64,
    /// First send to last confirmation.
    pub send_s: Option<f64>,
    /// Send to confirmation, per update.
    pub confirm_latency: Option<Latency>,
    /// Last confirmation to the SIGKILL.
    pub kill_after_ms: Option<f64>,
    /// Spawn of the restarted server to its "listening" line.
    pub restart_ms: f64,
    /// Characters in the document after the restart.
    pub loaded_chars: u64,
    /// Something went wrong but the kill, restart and count still happened.
    pub notes: Vec<String>,
    /// The run failed; its figures are not reported.
    pub error: Option<String>,
}

/// Scenario 11 (issue 18): kill -9 of the node owning the documents while clients on the other
/// nodes write, and their reconnect storm.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailoverRun {
    /// What confirmed an update: the server's SyncStatus(1) acknowledgement (Hocuspocus
    /// dialect) or another client receiving it (y-websocket dialect).
    pub confirmed_by: String,
    pub sent: u64,
    /// Updates confirmed before the confirming connection ended.
    pub confirmed: u64,
    /// Confirmed updates missing from the documents after the failover (must be 0).
    pub lost: u64,
    /// Updates never confirmed that are in the documents anyway.
    pub unconfirmed_present: u64,
    /// Clients whose connection the owner's death closed.
    pub closed: u64,
    /// Clients synced again, and those that gave up or were never closed.
    pub synced_again: u64,
    pub failed: u64,
    /// Connection attempts of the reconnecting clients, in all.
    pub attempts: u64,
    /// Clients whose first reconnect attempt failed, and why the first of them did.
    pub retried: u64,
    pub first_retry_reason: Option<String>,
    /// From the SIGKILL to the first and to the last client synced again.
    pub first_synced_ms: Option<f64>,
    pub last_synced_ms: Option<f64>,
    /// From each client's first reconnect attempt to its sync.
    pub resync: Option<Latency>,
    pub first_error: Option<String>,
}

impl Measurement {
    pub fn new(target: &str) -> Self {
        Measurement {
            target: target.to_string(),
            ..Default::default()
        }
    }
}
