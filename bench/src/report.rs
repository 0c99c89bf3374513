//! The comparison table printed at the end of a run.
//!
//! One column per target, then one ratio column per pair that ran: `deb/ref` is
//! `debrief` (y-websocket dialect) over `reference` (@y/websocket-server), `collab/hp` is
//! `debrief-collab` (Hocuspocus dialect) over `hocuspocus` (@hocuspocus/server); `pg/sled` and
//! `pgc/sledc` are Debrief on PostgreSQL (`debrief-pg`, `debrief-pg-collab`) over Debrief on
//! sled in the same dialect; `3n/1n-pg` and `3nc/1nc-pg` are three Debrief nodes on one
//! database (`debrief-cluster`, `debrief-cluster-collab`) over one node on PostgreSQL in the same
//! dialect.

use std::fmt::Write;

use crate::measure::{KillRun, Measurement, StormRun};

#[derive(Debug)]
pub struct ScenarioView<'a> {
    pub id: u32,
    pub name: &'a str,
    pub description: &'a str,
    pub results: &'a [Measurement],
}

type Get = fn(&Measurement) -> Option<f64>;

const MIB: f64 = 1024.0 * 1024.0;

fn rows() -> Vec<(&'static str, Get)> {
    vec![
        ("clients", |m| Some(m.clients as f64).filter(|v| *v > 0.0)),
        ("connect + sync all (s)", |m| m.connect_s),
        ("window (s)", |m| m.window_s),
        ("sent updates/s", |m| m.sent_per_s),
        ("delivered updates/s", |m| m.delivered_per_s),
        ("delivered of expected (%)", |m| {
            m.delivered_ratio.map(|r| r * 100.0)
        }),
        ("fan-out latency p50 (ms)", |m| m.latency.map(|l| l.p50_ms)),
        ("fan-out latency p99 (ms)", |m| m.latency.map(|l| l.p99_ms)),
        ("fan-out latency max (ms)", |m| m.latency.map(|l| l.max_ms)),
        ("server CPU in window (s)", |m| m.server_cpu_s),
        ("server CPU per delivery (us)", |m| {
            m.server_cpu_us_per_delivery
        }),
        ("  of which in the kernel (us)", |m| {
            m.server_kernel_us_per_delivery
        }),
        ("database CPU in window (s)", |m| m.database_cpu_s),
        ("database CPU per delivery (us)", |m| {
            m.database_cpu_us_per_delivery
        }),
        ("load generator CPU (s)", |m| m.loadgen_cpu_s),
        ("busiest node's CPU share (%)", |m| {
            m.node_cpu_share
                .iter()
                .copied()
                .reduce(f64::max)
                .map(|s| s * 100.0)
        }),
        ("review node's CPU share (%)", |m| {
            m.review_node
                .and_then(|n| m.node_cpu_share.get(n))
                .map(|s| s * 100.0)
        }),
        ("server peak RSS (MiB)", |m| {
            m.peak_rss_bytes.map(|b| b as f64 / MIB)
        }),
        ("RSS per idle connection (KiB)", |m| {
            m.rss_per_idle_conn_bytes.map(|b| b / 1024.0)
        }),
        ("idle server CPU (% of a core)", |m| m.idle_cpu_pct),
        ("RSS per connection (KiB)", |m| {
            m.rss_per_conn_bytes.map(|b| b / 1024.0)
        }),
        ("clients refused", |m| m.refused.map(|v| v as f64)),
        ("updates NOT delivered", |m| m.undelivered.map(|v| v as f64)),
        ("awareness frames rx /client/s", |m| {
            m.awareness_frames_per_client_s
        }),
        ("awareness bytes rx /client/s", |m| {
            m.awareness_bytes_per_client_s
        }),
        ("document (chars)", |m| m.doc_chars.map(|v| v as f64)),
        ("document as Yjs update (KiB)", |m| {
            m.doc_encoded_bytes.map(|v| v as f64 / 1024.0)
        }),
        ("data dir after run (MiB)", |m| {
            m.disk_bytes.map(|v| v as f64 / MIB)
        }),
        ("restart to listening (ms)", |m| m.restart_ms),
        ("cold load: socket open (ms)", |m| m.cold_load_connected_ms),
        ("cold load: bytes received (ms)", |m| {
            m.cold_load_received_ms
        }),
        ("cold load: doc applied (ms)", |m| m.cold_load_ms),
        ("warm load: doc applied (ms)", |m| m.warm_load_ms),
        ("content correct (1 = yes)", |m| {
            m.content_ok.map(|b| if b { 1.0 } else { 0.0 })
        }),
        ("b2b: updates confirmed", |m| {
            kill(&m.kill_b2b, |k| k.confirmed as f64)
        }),
        ("b2b: confirmed/s", |m| {
            kill(&m.kill_b2b, |k| {
                k.send_s.map_or(f64::NAN, |s| k.confirmed as f64 / s)
            })
            .filter(|v| v.is_finite())
        }),
        ("b2b: confirm latency p50 (ms)", |m| {
            m.kill_b2b
                .as_ref()
                .and_then(|k| k.confirm_latency)
                .map(|l| l.p50_ms)
        }),
        ("b2b: confirm latency p99 (ms)", |m| {
            m.kill_b2b
                .as_ref()
                .and_then(|k| k.confirm_latency)
                .map(|l| l.p99_ms)
        }),
        ("b2b: survived kill -9", |m| {
            kill(&m.kill_b2b, |k| k.survived as f64)
        }),
        ("b2b: LOST (confirmed, gone)", |m| {
            kill(&m.kill_b2b, |k| k.lost as f64)
        }),
        ("paced: updates confirmed", |m| {
            kill(&m.kill_paced, |k| k.confirmed as f64)
        }),
        ("paced: confirm latency p50 (ms)", |m| {
            m.kill_paced
                .as_ref()
                .and_then(|k| k.confirm_latency)
                .map(|l| l.p50_ms)
        }),
        ("paced: confirm latency p99 (ms)", |m| {
            m.kill_paced
                .as_ref()
                .and_then(|k| k.confirm_latency)
                .map(|l| l.p99_ms)
        }),
        ("paced: survived kill -9", |m| {
            kill(&m.kill_paced, |k| k.survived as f64)
        }),
        ("paced: LOST (confirmed, gone)", |m| {
            kill(&m.kill_paced, |k| k.lost as f64)
        }),
        ("failover: clients closed", |m| {
            m.failover.as_ref().map(|f| f.closed as f64)
        }),
        ("failover: clients synced again", |m| {
            m.failover.as_ref().map(|f| f.synced_again as f64)
        }),
        ("failover: kill to 1st sync (ms)", |m| {
            m.failover.as_ref().and_then(|f| f.first_synced_ms)
        }),
        ("failover: kill to last sync (ms)", |m| {
            m.failover.as_ref().and_then(|f| f.last_synced_ms)
        }),
        ("failover: resync p50 (ms)", |m| {
            m.failover.as_ref().and_then(|f| f.resync).map(|l| l.p50_ms)
        }),
        ("failover: resync p99 (ms)", |m| {
            m.failover.as_ref().and_then(|f| f.resync).map(|l| l.p99_ms)
        }),
        ("failover: connect attempts", |m| {
            m.failover.as_ref().map(|f| f.attempts as f64)
        }),
        ("failover: updates confirmed", |m| {
            m.failover.as_ref().map(|f| f.confirmed as f64)
        }),
        ("failover: LOST (confirmed, gone)", |m| {
            m.failover.as_ref().map(|f| f.lost as f64)
        }),
    ]
}

/// Scenario 9: rows per storm (in the order of the first result that has them).
fn storm_rows(results: &[Measurement]) -> Vec<(String, Vec<Option<f64>>)> {
    let Some(first) = results.iter().find(|m| !m.storms.is_empty()) else {
        return Vec::new();
    };
    type StormGet = fn(&StormRun) -> Option<f64>;
    let figures: [(&str, StormGet); 7] = [
        ("synced p50 (ms)", |r| r.time_to_synced.map(|l| l.p50_ms)),
        ("synced p99 (ms)", |r| r.time_to_synced.map(|l| l.p99_ms)),
        ("synced max (ms)", |r| r.time_to_synced.map(|l| l.max_ms)),
        ("peak RSS (MiB)", |r| {
            r.peak_rss_bytes.map(|b| b as f64 / MIB)
        }),
        ("complete joiners", |r| Some(r.complete as f64)),
        ("server CPU (s)", |r| r.server_cpu_s),
        ("load generator CPU (s)", |r| r.loadgen_cpu_s),
    ];
    let mut out = Vec::new();
    for (i, st) in first.storms.iter().enumerate() {
        let head = format!(
            "{}MB×{} {}",
            st.mb,
            st.joiners,
            if st.variant == "warm" { "warm" } else { "cold" }
        );
        for (label, get) in &figures {
            let vals = results
                .iter()
                .map(|m| {
                    m.storms
                        .get(i)
                        .filter(|r| r.mb == st.mb && r.joiners == st.joiners)
                        .and_then(get)
                })
                .collect();
            out.push((format!("{head}: {label}"), vals));
        }
    }
    out
}

/// A figure of a scenario-7 run that completed.
fn kill(run: &Option<KillRun>, f: fn(&KillRun) -> f64) -> Option<f64> {
    run.as_ref().filter(|k| k.error.is_none()).map(f)
}

/// Ratio columns: (numerator target, denominator target, header).
const RATIOS: [(&str, &str, &str); 6] = [
    ("debrief", "reference", "deb/ref"),
    ("debrief-collab", "hocuspocus", "collab/hp"),
    ("debrief-pg", "debrief", "pg/sled"),
    ("debrief-pg-collab", "debrief-collab", "pgc/sledc"),
    ("debrief-cluster", "debrief-pg", "3n/1n-pg"),
    ("debrief-cluster-collab", "debrief-pg-collab", "3nc/1nc-pg"),
];

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e12 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

pub fn table(scenarios: &[ScenarioView<'_>]) -> String {
    let mut out = String::new();
    for s in scenarios {
        let _ = writeln!(out, "=== {}. {} — {}", s.id, s.name, s.description);
        let names: Vec<&str> = s.results.iter().map(|m| m.target.as_str()).collect();
        let pos = |n: &str| s.results.iter().position(|m| m.target == n);
        let ratios: Vec<(usize, usize, &str)> = RATIOS
            .iter()
            .filter_map(|(a, b, h)| Some((pos(a)?, pos(b)?, *h)))
            .collect();
        let width = names.iter().map(|n| n.len() + 2).max().unwrap_or(0).max(12);
        let mut header = format!("{:<32}", "");
        for n in &names {
            let _ = write!(header, "{n:>width$}");
        }
        for (_, _, h) in &ratios {
            let _ = write!(header, "{h:>width$}");
        }
        let _ = writeln!(out, "{header}");
        let mut lines: Vec<(String, Vec<Option<f64>>)> = rows()
            .into_iter()
            .map(|(label, get)| (label.to_string(), s.results.iter().map(get).collect()))
            .collect();
        lines.extend(storm_rows(s.results));
        for (label, vals) in lines {
            if vals.iter().all(Option::is_none) {
                continue;
            }
            let mut line = format!("{label:<32}");
            for v in &vals {
                let _ = write!(line, "{:>width$}", num(*v));
            }
            for (a, b, _) in &ratios {
                let q = match (vals[*a], vals[*b]) {
                    (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
                    _ => "-".into(),
                };
                let _ = write!(line, "{q:>width$}");
            }
            let _ = writeln!(out, "{line}");
        }
        for m in s.results {
            for k in [&m.kill_b2b, &m.kill_paced].into_iter().flatten() {
                if let Some(e) = &k.error {
                    let _ = writeln!(out, "  {}: {}: ERROR {e}", m.target, k.mode);
                    continue;
                }
                let _ = writeln!(
                    out,
                    "  {}: {}: sent {}, confirmed {} (by {}), survived {}, lost {}, \
                     unconfirmed but present {}; killed {} after the last confirmation",
                    m.target,
                    k.mode,
                    k.sent,
                    k.confirmed,
                    k.confirmed_by,
                    k.survived,
                    k.lost,
                    k.unconfirmed_survived,
                    k.kill_after_ms
                        .map_or("-".into(), |ms| format!("{ms:.1} ms"))
                );
                for n in &k.notes {
                    let _ = writeln!(out, "  {}: {}: {n}", m.target, k.mode);
                }
            }
        }
        for m in s.results {
            for r in &m.storms {
                if let Some(e) = &r.error {
                    let _ = writeln!(
                        out,
                        "  {}: {} MB × {} {}: ERROR {e}",
                        m.target, r.mb, r.joiners, r.variant
                    );
                }
                for n in &r.notes {
                    let _ = writeln!(
                        out,
                        "  {}: {} MB × {} {}: {n}",
                        m.target, r.mb, r.joiners, r.variant
                    );
                }
            }
        }
        for m in s.results {
            if let Some(f) = &m.failover {
                let _ = writeln!(
                    out,
                    "  {}: failover: sent {}, confirmed {} (by {}), lost {}, unconfirmed but \
                     present {}",
                    m.target, f.sent, f.confirmed, f.confirmed_by, f.lost, f.unconfirmed_present
                );
                if let Some(e) = &f.first_retry_reason {
                    let _ = writeln!(
                        out,
                        "  {}: failover: {} clients tried again; the first one's failure: {e}",
                        m.target, f.retried
                    );
                }
                if let Some(e) = &f.first_error {
                    let _ = writeln!(out, "  {}: failover: first client error: {e}", m.target);
                }
            }
        }
        for m in s.results {
            if let Some(kind) = &m.cold_load_kind {
                let _ = writeln!(out, "  {}: cold load {kind}", m.target);
            }
            if let Some(e) = &m.error {
                let _ = writeln!(out, "  {}: ERROR {e}", m.target);
            }
            for n in &m.notes {
                let _ = writeln!(out, "  {}: {n}", m.target);
            }
        }
        let _ = writeln!(out);
    }
    out
}
