//! debrief-bench: runs each scenario against Debrief's two endpoints and the two servers
//! they are compared with — the reference y-websocket server (for `/ws`) and Hocuspocus
//! (for `/collab`) — prints a comparison table and writes a JSON report.

mod audience;
mod client;
mod failover;
mod measure;
mod procstat;
mod report;
mod reviews;
mod scenarios;
mod synth;
mod target;
mod trace;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use crate::audience::{AllHandsCfg, BuiltDoc, Storm, StormCfg};
use crate::failover::FailoverCfg;
use crate::measure::Measurement;
use crate::reviews::MeetingsCfg;
use crate::scenarios::{IdleCfg, KillCfg, ReplayCfg, TypingCfg};
use crate::target::{Programs, Target, TargetKind};
use crate::trace::{single_char_edits, Trace};

/// Benchmark Debrief against the reference y-websocket server and Hocuspocus.
#[derive(Debug, Parser)]
#[command(name = "debrief-bench", version)]
struct Cli {
    /// Small sizes for a smoke run (under ~2 minutes in all).
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, e.g. "1,2,5" (1 one doc/many clients, 2 200 docs×5, 3 1000 docs×2,
    /// 4 idle connections, 5 cold load of a 100k-edit doc, 6 automerge-paper replay,
    /// 7 kill -9 after confirmed updates, 8 all-hands, 9 join storm, 10 ten thousand sockets,
    /// 11 failover: kill -9 of a cluster node owning the documents; cluster targets only,
    /// 12 review meetings: real reviews, writers and observers on their notes; Debrief only).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6,7,8,9,10")]
    scenarios: Vec<u32>,
    /// Targets, in order: debrief (y-websocket at /ws), reference (@y/websocket-server),
    /// debrief-collab (Hocuspocus dialect at /collab), hocuspocus (@hocuspocus/server),
    /// debrief-pg and debrief-pg-collab (Debrief's two dialects on PostgreSQL; need --postgres),
    /// debrief-cluster and debrief-cluster-collab (three Debrief nodes on one PostgreSQL
    /// database, clients spread over them round-robin; need --postgres).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "debrief,reference,debrief-collab,hocuspocus"
    )]
    targets: Vec<String>,
    /// Workspace root (default: the parent of this crate's directory).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Folder of the shared editing traces (default: <workspace>/../shared/data).
    #[arg(long, env = "DEBRIEF_BENCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Trace file inside --data-dir.
    #[arg(long, default_value = "automerge-paper.json.gz")]
    trace: String,
    /// Debrief binary (default: `debrief` next to this executable, else
    /// <workspace>/target/release/debrief).
    #[arg(long, env = "DEBRIEF_BIN")]
    debrief_bin: Option<PathBuf>,
    /// Soft RLIMIT_NOFILE Debrief is started with, as from a default shell (0: this
    /// process's, which is raised to its hard limit). Debrief raises it itself.
    #[arg(long, default_value_t = 1024)]
    debrief_nofile: u64,
    /// A superuser's connection string to a PostgreSQL cluster for the `debrief-pg` targets;
    /// each run gets a fresh database in it (`scripts/postgres start` makes a throwaway
    /// cluster; `scripts/postgres env DIR` prints this string).
    #[arg(long, env = "DEBRIEF_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Node.js executable for the reference server.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Reference server script (default:
    /// <workspace>/bench/js/node_modules/@y/websocket-server/src/server.js).
    #[arg(long)]
    reference_script: Option<PathBuf>,
    /// Hocuspocus server script (default: <workspace>/bench/js/hocuspocus-server.mjs).
    #[arg(long)]
    hocuspocus_script: Option<PathBuf>,
    /// Where JSON reports go (default: <workspace>/bench/results).
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Scratch folder for data directories and server logs
    /// (default: <workspace>/target/bench-work/<timestamp>).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the scratch folder (data directories, server logs) after the run.
    #[arg(long)]
    keep_work: bool,
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,

    /// Seconds of typing in scenarios 1-3 [full 30, quick 5].
    #[arg(long)]
    duration: Option<f64>,
    /// Scenario 1: clients on the one document [50, quick 20].
    #[arg(long)]
    s1_clients: Option<usize>,
    /// Scenario 1: edits per second per client [5].
    #[arg(long, default_value_t = 5.0)]
    s1_rate: f64,
    /// Scenario 2: documents [200, quick 40] (5 clients each).
    #[arg(long)]
    s2_docs: Option<usize>,
    #[arg(long, default_value_t = 5)]
    s2_clients: usize,
    /// Scenario 2: edits per second per client [1].
    #[arg(long, default_value_t = 1.0)]
    s2_rate: f64,
    /// Scenario 3: documents [1000, quick 200] (2 clients each).
    #[arg(long)]
    s3_docs: Option<usize>,
    #[arg(long, default_value_t = 2)]
    s3_clients: usize,
    /// Scenario 3: edits per second per client [0.5].
    #[arg(long, default_value_t = 0.5)]
    s3_rate: f64,
    /// Characters of text in each document before typing starts (scenarios 1-3).
    #[arg(long, default_value_t = 2000)]
    initial_chars: usize,
    /// Cursor awareness update every N edits (0: only on connect).
    #[arg(long, default_value_t = 4)]
    awareness_every: u32,
    /// Scenario 4: idle connections [5000, quick 500].
    #[arg(long)]
    s4_conns: Option<usize>,
    /// Scenario 4: seconds the connections are held idle while CPU is measured [10, quick 2].
    #[arg(long)]
    s4_hold: Option<f64>,
    /// Scenario 5: single-character edits building the document [100000, quick 20000].
    #[arg(long)]
    s5_edits: Option<usize>,
    /// Scenario 6: trace transactions replayed [all, quick 20000].
    #[arg(long)]
    s6_txns: Option<usize>,
    /// Scenarios 5, 6: observers of the writer [5: 1, 6: 3].
    #[arg(long, default_value_t = 3)]
    s6_observers: usize,
    /// Scenarios 5, 6: max updates in flight (sent, not yet at every observer).
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Scenario 7: confirmed one-character updates before the kill -9 [2000, quick 500].
    #[arg(long)]
    s7_updates: Option<usize>,
    /// Scenario 7: rate of the paced run, updates per second [100].
    #[arg(long, default_value_t = 100.0)]
    s7_rate: f64,
    /// Scenario 7, back-to-back run: max updates sent but not yet confirmed (0: no limit).
    #[arg(long, default_value_t = 0)]
    s7_window: u64,
    /// Scenario 8: writers [10, quick 5].
    #[arg(long)]
    s8_writers: Option<usize>,
    /// Scenario 8: read-only observers [1000, quick 200].
    #[arg(long)]
    s8_observers: Option<usize>,
    /// Scenario 8: edits per second per writer (each with its caret) [2].
    #[arg(long, default_value_t = 2.0)]
    s8_rate: f64,
    /// Scenario 8: seconds measured [30, quick 16].
    #[arg(long)]
    s8_duration: Option<f64>,
    /// Scenarios 8, 10: seconds after which a client renews an unchanged awareness state [15].
    #[arg(long, default_value_t = audience::STOCK_RENEW_S)]
    renew: f64,
    /// Scenario 9: storms as MB:JOINERS [4:150,4:500,20:150; quick 4:150].
    #[arg(long, value_delimiter = ',')]
    s9_storms: Option<Vec<String>>,
    /// Scenario 9: joiners start evenly spread over this many seconds [1].
    #[arg(long, default_value_t = 1.0)]
    s9_spread: f64,
    /// Scenario 10: connections [10000, quick 2000].
    #[arg(long)]
    s10_conns: Option<usize>,
    /// Scenario 10: documents [2000, quick 400]; one connection in each five edits.
    #[arg(long)]
    s10_docs: Option<usize>,
    /// Scenario 10: edits per second per editing connection [1].
    #[arg(long, default_value_t = 1.0)]
    s10_rate: f64,
    /// Scenario 10: seconds measured [30, quick 10].
    #[arg(long)]
    s10_duration: Option<f64>,
    /// Scenario 11: clients, spread over the nodes that survive [300, quick 60].
    #[arg(long)]
    s11_clients: Option<usize>,
    /// Scenario 11: documents, all owned by the node that is killed [6].
    #[arg(long, default_value_t = 6)]
    s11_docs: usize,
    /// Scenario 11: updates per second per client [0.5].
    #[arg(long, default_value_t = 0.5)]
    s11_rate: f64,
    /// Scenario 11: seconds of writing before the kill [5, quick 3].
    #[arg(long)]
    s11_write: Option<f64>,
    /// Scenario 11: milliseconds a client waits before each reconnect, plus up to as much
    /// again at random [50].
    #[arg(long, default_value_t = 50)]
    s11_reconnect_ms: u64,
    /// Scenario 12: reviews in their meeting at once [12, quick 4].
    #[arg(long)]
    s12_reviews: Option<usize>,
    /// Scenario 12: participants of each review typing into its notes [5, quick 3].
    #[arg(long)]
    s12_writers: Option<usize>,
    /// Scenario 12: observers of each review watching its notes [40, quick 16].
    #[arg(long)]
    s12_observers: Option<usize>,
    /// Scenario 12: edits per second per writer [1].
    #[arg(long, default_value_t = 1.0)]
    s12_rate: f64,
    /// Scenario 12: seconds measured [30, quick 8].
    #[arg(long)]
    s12_duration: Option<f64>,
    /// Scenario 12: the same shape on documents outside reviews (the control).
    #[arg(long)]
    s12_plain: bool,
}

#[derive(Debug, Serialize)]
struct ScenarioReport {
    id: u32,
    name: String,
    description: String,
    config: serde_json::Value,
    results: Vec<Measurement>,
}

#[derive(Debug, Serialize)]
struct Report {
    started: String,
    quick: bool,
    seed: u64,
    machine: serde_json::Value,
    trace: String,
    nofile_limit: u64,
    scenarios: Vec<ScenarioReport>,
    total_s: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let started = SystemTime::now();
    let stamp = timestamp(started);
    let workspace = match &cli.workspace {
        Some(w) => w.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| workspace.join("../shared/data"));
    let programs = Programs {
        debrief_bin: cli
            .debrief_bin
            .clone()
            .unwrap_or_else(|| default_debrief_bin(&workspace)),
        node: cli.node.clone(),
        reference_script: cli.reference_script.clone().unwrap_or_else(|| {
            workspace.join("bench/js/node_modules/@y/websocket-server/src/server.js")
        }),
        hocuspocus_script: cli
            .hocuspocus_script
            .clone()
            .unwrap_or_else(|| workspace.join("bench/js/hocuspocus-server.mjs")),
        debrief_nofile: (cli.debrief_nofile > 0).then_some(cli.debrief_nofile),
        postgres: cli.postgres.clone(),
    };
    let results_dir = cli
        .results_dir
        .clone()
        .unwrap_or_else(|| workspace.join("bench/results"));
    let work_dir = cli
        .work_dir
        .clone()
        .unwrap_or_else(|| workspace.join("target/bench-work").join(&stamp));
    let targets: Vec<TargetKind> = cli
        .targets
        .iter()
        .map(|t| TargetKind::parse(t.trim()))
        .collect::<Result<_>>()?;
    if targets.is_empty() {
        bail!("no targets");
    }

    let nofile = procstat::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let trace_path = data_dir.join(&cli.trace);
    eprintln!("loading {}", trace_path.display());
    let trace = Arc::new(Trace::load(&trace_path)?);
    eprintln!(
        "trace: {} transactions, {} patches, {} chars at the end",
        trace.txns.len(),
        trace.patch_count(),
        trace.end_content.chars().count()
    );

    let q = cli.quick;
    let duration = cli.duration.unwrap_or(if q { 5.0 } else { 30.0 });
    let s4_conns = cli.s4_conns.unwrap_or(if q { 500 } else { 5000 });
    let s10_conns = cli.s10_conns.unwrap_or(if q { 2000 } else { 10_000 });
    for (id, conns) in [(4, s4_conns), (10, s10_conns)] {
        let need_fds = conns as u64 + 200;
        if cli.scenarios.contains(&id) && nofile < need_fds {
            eprintln!(
                "warning: RLIMIT_NOFILE is {nofile}, scenario {id} needs ~{need_fds} in this \
                 process and in the server"
            );
        }
    }

    let mut report = Report {
        started: stamp.clone(),
        quick: q,
        seed: cli.seed,
        machine: machine_info(),
        trace: trace_path.display().to_string(),
        nofile_limit: nofile,
        scenarios: Vec::new(),
        total_s: 0.0,
    };
    let t_all = Instant::now();

    for &id in &cli.scenarios {
        let (name, description, config, runner): (&str, String, serde_json::Value, Runner) =
            match id {
                1..=3 => {
                    let (docs, clients, rate) = match id {
                        1 => (
                            1,
                            cli.s1_clients.unwrap_or(if q { 20 } else { 50 }),
                            cli.s1_rate,
                        ),
                        2 => (
                            cli.s2_docs.unwrap_or(if q { 40 } else { 200 }),
                            cli.s2_clients,
                            cli.s2_rate,
                        ),
                        _ => (
                            cli.s3_docs.unwrap_or(if q { 200 } else { 1000 }),
                            cli.s3_clients,
                            cli.s3_rate,
                        ),
                    };
                    let cfg = TypingCfg {
                        docs,
                        clients_per_doc: clients,
                        rate,
                        duration_s: duration,
                        initial_chars: cli.initial_chars,
                        awareness_every: cli.awareness_every,
                        max_drain_s: 15.0,
                        writers_per_doc: 0,
                        renew_s: 0.0,
                        connect_concurrency: 64,
                        measure_rss: false,
                    };
                    let name = match id {
                        1 => "one-doc-many-clients",
                        2 => "many-docs-5-clients",
                        _ => "many-docs-2-clients",
                    };
                    let desc = format!(
                    "{docs} doc(s) x {clients} clients, each typing trace edits at {rate}/s for {duration} s"
                );
                    (name, desc, serde_json::to_value(&cfg)?, Runner::Typing(cfg))
                }
                4 => {
                    let cfg = IdleCfg {
                        connections: s4_conns,
                        initial_chars: 200,
                        hold_s: cli.s4_hold.unwrap_or(if q { 2.0 } else { 10.0 }),
                    };
                    let desc = format!(
                        "{} idle connections, each on its own {}-char document",
                        cfg.connections, cfg.initial_chars
                    );
                    (
                        "idle-connections",
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::Idle(cfg),
                    )
                }
                5 => {
                    let n = cli.s5_edits.unwrap_or(if q { 20_000 } else { 100_000 });
                    let cfg = ReplayCfg {
                        observers: 1,
                        window: cli.window,
                        max_wait_s: 30.0,
                    };
                    let desc = format!(
                    "build a doc from {n} single-char edits (1 writer, 1 observer), restart, load it"
                );
                    let mut v = serde_json::to_value(&cfg)?;
                    v["edits"] = n.into();
                    let txns: Vec<Vec<trace::Patch>> =
                        single_char_edits(n, S5_JUMP, S5_BACKSPACE, cli.seed)
                            .into_iter()
                            .map(|p| vec![p])
                            .collect();
                    let (updates, text) = encode(&txns, cli.seed);
                    let runner = Runner::Replay { updates, text, cfg };
                    ("cold-load-100k-edits", desc, v, runner)
                }
                6 => {
                    let n = cli
                        .s6_txns
                        .unwrap_or(if q { 20_000 } else { usize::MAX })
                        .min(trace.txns.len());
                    let cfg = ReplayCfg {
                        observers: cli.s6_observers,
                        window: cli.window,
                        max_wait_s: 30.0,
                    };
                    let desc = format!(
                    "replay {n} of {} automerge-paper txns (1 writer, {} observers), restart, load it",
                    trace.txns.len(),
                    cfg.observers
                );
                    let mut v = serde_json::to_value(&cfg)?;
                    v["txns"] = n.into();
                    let (updates, text) = encode(&trace.txns[..n], cli.seed);
                    if n == trace.txns.len() && *text != trace.end_content {
                        bail!("replaying the whole trace does not give its endContent");
                    }
                    let runner = Runner::Replay { updates, text, cfg };
                    ("automerge-paper-replay", desc, v, runner)
                }
                7 => {
                    let cfg = KillCfg {
                        updates: cli.s7_updates.unwrap_or(if q { 500 } else { 2000 }),
                        paced_rate: cli.s7_rate,
                        window: cli.s7_window,
                        max_wait_s: 30.0,
                    };
                    if cfg.updates > scenarios::KILL_MAX_UPDATES {
                        bail!("--s7-updates: at most {}", scenarios::KILL_MAX_UPDATES);
                    }
                    let desc = format!(
                        "{} confirmed 1-char updates (back to back, then paced at {}/s), \
                         kill -9, restart, count survivors",
                        cfg.updates, cfg.paced_rate
                    );
                    (
                        "kill-9-after-confirm",
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::Kill(cfg),
                    )
                }
                8 => {
                    let cfg = AllHandsCfg {
                        writers: cli.s8_writers.unwrap_or(if q { 5 } else { 10 }).max(1),
                        observers: cli.s8_observers.unwrap_or(if q { 200 } else { 1000 }),
                        rate: cli.s8_rate,
                        duration_s: cli.s8_duration.unwrap_or(if q { 16.0 } else { 30.0 }),
                        renew_s: cli.renew,
                        initial_chars: cli.initial_chars,
                        max_drain_s: 15.0,
                    };
                    let desc = format!(
                        "1 doc, {} writers at {}/s (caret with each edit), {} read-only observers \
                         (presence renewed every {} s), {} s",
                        cfg.writers, cfg.rate, cfg.observers, cfg.renew_s, cfg.duration_s
                    );
                    let text: Arc<str> = trace.end_content.as_str().into();
                    (
                        "all-hands",
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::AllHands { cfg, text },
                    )
                }
                9 => {
                    let specs = cli.s9_storms.clone().unwrap_or_else(|| {
                        let d: &[&str] = if q {
                            &["4:150"]
                        } else {
                            &["4:150", "4:500", "20:150"]
                        };
                        d.iter().map(|s| s.to_string()).collect()
                    });
                    let storms: Vec<Storm> = specs
                        .iter()
                        .map(|s| Storm::parse(s))
                        .collect::<Result<_>>()?;
                    let cfg = StormCfg {
                        storms,
                        spread_s: cli.s9_spread,
                        max_wait_s: 120.0,
                    };
                    let mut docs: Vec<Arc<BuiltDoc>> = Vec::new();
                    for st in &cfg.storms {
                        if docs.iter().any(|d| d.mb == st.mb) {
                            continue;
                        }
                        let t0 = Instant::now();
                        let d = audience::build_doc(st.mb, &trace.end_content, cli.seed)?;
                        eprintln!(
                            "built a {} MB document: {} chars, {} updates ({} bytes) in {:.1} s",
                            st.mb,
                            d.text.chars().count(),
                            d.updates.len(),
                            d.updates.iter().map(Vec::len).sum::<usize>(),
                            t0.elapsed().as_secs_f64()
                        );
                        docs.push(Arc::new(d));
                    }
                    let desc = format!(
                        "{} joiners within {} s onto a document after a restart (cold), and after \
                         a restart and one change (warm)",
                        specs.join(", ").replace(':', " MB × "),
                        cfg.spread_s
                    );
                    (
                        "join-storm",
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::Storm { cfg, docs },
                    )
                }
                10 => {
                    let docs = cli.s10_docs.unwrap_or(if q { 400 } else { 2000 }).max(1);
                    let per_doc = (s10_conns / docs).max(1);
                    let cfg = TypingCfg {
                        docs,
                        clients_per_doc: per_doc,
                        rate: cli.s10_rate,
                        duration_s: cli.s10_duration.unwrap_or(if q { 10.0 } else { 30.0 }),
                        initial_chars: 200,
                        awareness_every: cli.awareness_every,
                        max_drain_s: 15.0,
                        writers_per_doc: 1,
                        renew_s: cli.renew,
                        connect_concurrency: 64,
                        measure_rss: true,
                    };
                    let desc = format!(
                        "{} connections over {docs} docs ({per_doc} each), one per doc typing at {}/s, \
                         presence renewed every {} s, {} s",
                        docs * per_doc,
                        cfg.rate,
                        cfg.renew_s,
                        cfg.duration_s
                    );
                    (
                        "ten-thousand-sockets",
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::Typing(cfg),
                    )
                }
                11 => {
                    let cfg = FailoverCfg {
                        clients: cli.s11_clients.unwrap_or(if q { 60 } else { 300 }),
                        docs: cli.s11_docs.max(1),
                        rate: cli.s11_rate,
                        write_s: cli.s11_write.unwrap_or(if q { 3.0 } else { 5.0 }),
                        reconnect_ms: cli.s11_reconnect_ms,
                        max_wait_s: 60.0,
                    };
                    let desc = format!(
                        "{} clients on {} docs owned by one node, on the other nodes, writing at \
                         {}/s; kill -9 of the owner after {} s; clients reconnect after {}-{} ms \
                         until synced",
                        cfg.clients,
                        cfg.docs,
                        cfg.rate,
                        cfg.write_s,
                        cfg.reconnect_ms,
                        2 * cfg.reconnect_ms
                    );
                    (
                        "failover",
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::Failover(cfg),
                    )
                }
                12 => {
                    let cfg = MeetingsCfg {
                        reviews: cli.s12_reviews.unwrap_or(if q { 4 } else { 12 }).max(1),
                        writers: cli.s12_writers.unwrap_or(if q { 3 } else { 5 }).max(1),
                        observers: cli.s12_observers.unwrap_or(if q { 16 } else { 40 }),
                        rate: cli.s12_rate,
                        duration_s: cli.s12_duration.unwrap_or(if q { 8.0 } else { 30.0 }),
                        plain: cli.s12_plain,
                    };
                    let desc = format!(
                        "{} {} at once, each with {} writers at {}/s and {} read-only observers \
                         on its notes, {} s",
                        cfg.reviews,
                        if cfg.plain {
                            "plain documents shaped like meetings (no reviews)"
                        } else {
                            "reviews in their meeting"
                        },
                        cfg.writers,
                        cfg.rate,
                        cfg.observers,
                        cfg.duration_s
                    );
                    let name = if cfg.plain {
                        "meetings-plain"
                    } else {
                        "review-meetings"
                    };
                    (
                        name,
                        desc,
                        serde_json::to_value(&cfg)?,
                        Runner::Meetings(cfg),
                    )
                }
                other => bail!("unknown scenario {other}"),
            };
        eprintln!("\n== scenario {id}: {name}: {description}");
        let mut results = Vec::new();
        for &kind in &targets {
            let t0 = Instant::now();
            let dir = work_dir.join(format!("s{id}-{}", kind.name()));
            let seed = cli.seed.wrapping_add(u64::from(id) * 1000);
            let m = run_one(kind, &programs, &dir, &runner, trace.clone(), seed).await;
            eprintln!(
                "   {}: {} in {:.1} s",
                kind.name(),
                m.error
                    .as_deref()
                    .map(|e| format!("FAILED: {e}"))
                    .unwrap_or_else(|| "ok".into()),
                t0.elapsed().as_secs_f64()
            );
            for n in &m.notes {
                eprintln!("     note: {n}");
            }
            results.push(m);
        }
        report.scenarios.push(ScenarioReport {
            id,
            name: name.into(),
            description,
            config,
            results,
        });
    }
    report.total_s = t_all.elapsed().as_secs_f64();

    println!();
    print!("{}", report::table(&report.scenarios_view()));
    std::fs::create_dir_all(&results_dir)?;
    let out = results_dir.join(format!("{stamp}.json"));
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("\nreport: {}", out.display());
    println!("total: {:.0} s", report.total_s);
    if !cli.keep_work {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        println!("work dir kept: {}", work_dir.display());
    }
    Ok(())
}

/// Scenario 5's synthetic edits: chance of jumping to a random position before an edit,
/// and of an edit being a backspace. Tuned for a ~1 MB Yjs document from 100k edits.
const S5_JUMP: f64 = 0.3;
const S5_BACKSPACE: f64 = 0.1;

/// Pre-encodes a lone writer's transactions (see synth.rs), timing it.
fn encode(txns: &[Vec<trace::Patch>], seed: u64) -> (Arc<Vec<Vec<u8>>>, Arc<String>) {
    let t0 = Instant::now();
    let client = 1 + (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33);
    let (updates, text) = synth::encode_all(client, txns);
    eprintln!(
        "encoded {} updates ({} bytes) in {:.2} s",
        updates.len(),
        updates.iter().map(Vec::len).sum::<usize>(),
        t0.elapsed().as_secs_f64()
    );
    (Arc::new(updates), Arc::new(text))
}

#[derive(Debug)]
enum Runner {
    Typing(TypingCfg),
    Idle(IdleCfg),
    Kill(KillCfg),
    Failover(FailoverCfg),
    Meetings(MeetingsCfg),
    AllHands {
        cfg: AllHandsCfg,
        text: Arc<str>,
    },
    Storm {
        cfg: StormCfg,
        docs: Vec<Arc<BuiltDoc>>,
    },
    /// Pre-encoded updates of one writer and the text they produce.
    Replay {
        updates: Arc<Vec<Vec<u8>>>,
        text: Arc<String>,
        cfg: ReplayCfg,
    },
}

async fn run_one(
    kind: TargetKind,
    programs: &Programs,
    dir: &Path,
    runner: &Runner,
    trace: Arc<Trace>,
    seed: u64,
) -> Measurement {
    let mut target = match Target::new(kind, programs, dir) {
        Ok(t) => t,
        Err(e) => return failed(kind, e),
    };
    // observers present the read-only token
    target.read_only_token = matches!(runner, Runner::AllHands { .. });
    // the setup of scenario 12 is many people creating and joining reviews
    target.trust_loopback = matches!(runner, Runner::Meetings(_));
    if let Err(e) = target.start().await {
        return failed(kind, e);
    }
    let result = match runner {
        Runner::Typing(cfg) => scenarios::typing(&mut target, trace, cfg, seed).await,
        Runner::Idle(cfg) => scenarios::idle(&mut target, trace, cfg, seed).await,
        Runner::Kill(cfg) => scenarios::kill9(&mut target, cfg, seed).await,
        Runner::Failover(cfg) => failover::failover(&mut target, cfg, seed).await,
        Runner::Meetings(cfg) => reviews::meetings(&mut target, trace, cfg, seed).await,
        Runner::AllHands { cfg, text } => {
            audience::all_hands(&mut target, text.clone(), cfg, seed).await
        }
        Runner::Storm { cfg, docs } => audience::join_storm(&mut target, docs, cfg, seed).await,
        Runner::Replay { updates, text, cfg } => {
            scenarios::replay(&mut target, updates, text, cfg, seed).await
        }
    };
    let mut m = match result {
        Ok(m) => m,
        Err(e) => failed(kind, e),
    };
    if target.is_running() {
        match target.stop().await {
            Ok(info) => {
                m.stop = Some(match info.status {
                    Some(s) if info.killed => format!("killed after {:?}: {s}", info.took),
                    Some(s) => s.to_string(),
                    None => "unknown".into(),
                });
                if kind.persistent() && !info.status.map(|s| s.success()).unwrap_or(false) {
                    m.notes.push(format!(
                        "{} did not exit 0 on SIGTERM: {:?}",
                        kind.name(),
                        m.stop
                    ));
                }
            }
            Err(e) => m.notes.push(format!("stop: {e:#}")),
        }
    }
    if let Some(d) = target.data_dir() {
        if let Ok((a, b)) = procstat::disk_usage(d) {
            m.disk_bytes = Some(a);
            m.disk_alloc_bytes = Some(b);
        }
    }
    if m.error.is_some() {
        if let (Some(n), true) = (programs.debrief_nofile, kind.is_debrief()) {
            m.notes.push(format!(
                "Debrief was started with a soft RLIMIT_NOFILE of {n} (--debrief-nofile) and \
                 must raise it itself to what its connections need"
            ));
        }
        for log in target.log_paths() {
            m.notes.push(format!("server log: {}", log.display()));
        }
    }
    m
}

fn failed(kind: TargetKind, e: anyhow::Error) -> Measurement {
    let mut m = Measurement::new(kind.name());
    m.error = Some(format!("{e:#}"));
    m
}

fn default_debrief_bin(workspace: &Path) -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("debrief");
            if p.exists() {
                return p;
            }
        }
    }
    workspace.join("target/release/debrief")
}

fn machine_info() -> serde_json::Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    serde_json::json!({
        "cpus": cpus,
        "cpu_model": model,
        "mem_bytes": mem_kib * 1024,
        "node": node,
    })
}

/// UTC time as 2025-01-31T12-34-56Z (file-name safe).
fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl Report {
    fn scenarios_view(&self) -> Vec<report::ScenarioView<'_>> {
        self.scenarios
            .iter()
            .map(|s| report::ScenarioView {
                id: s.id,
                name: &s.name,
                description: &s.description,
                results: &s.results,
            })
            .collect()
    }
}
