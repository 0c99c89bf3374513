//! The workloads. Each runs against one started [`Target`] and fills a [`Measurement`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::{ClientConfig, ClientStats, Counters, Event, SentLog, YClient};
use crate::measure::{KillRun, Latency, Measurement};
use crate::procstat;
use crate::target::{Dialect, DocAddr, Processes, Target};
use crate::trace::{LocalEdit, RelativeCursor, Trace};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Several documents, each edited concurrently by a few clients at a steady rate.
#[derive(Debug, Clone, Serialize)]
pub struct TypingCfg {
    pub docs: usize,
    pub clients_per_doc: usize,
    /// Edits (trace transactions) per second per client.
    pub rate: f64,
    pub duration_s: f64,
    /// Characters of the trace's final text put into each document before measuring.
    pub initial_chars: usize,
    /// Send a cursor awareness update every this many edits (0: only on connect).
    pub awareness_every: u32,
    pub max_drain_s: f64,
    /// Clients of each document that edit (the first ones); 0: all of them.
    pub writers_per_doc: usize,
    /// A client renews its awareness state after this many seconds without sending one, as
    /// stock clients do (0: never).
    pub renew_s: f64,
    /// Connections being opened at once.
    pub connect_concurrency: usize,
    /// Report (RSS with all connected - RSS before) / connections.
    pub measure_rss: bool,
}

/// Many connections, each on its own small document, doing nothing.
#[derive(Debug, Clone, Serialize)]
pub struct IdleCfg {
    pub connections: usize,
    pub initial_chars: usize,
    pub hold_s: f64,
}

/// One writer replays edits as fast as a window of unacknowledged deliveries allows.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayCfg {
    pub observers: usize,
    /// Max updates in flight (sent but not yet delivered to every observer).
    pub window: u64,
    /// Give up after this long without any delivery.
    pub max_wait_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Setup,
    Run { start: Instant, stop: Instant },
    Done,
}

/// Counts clients connected and synced (or failed doing so), for a controller to wait on.
pub struct Ready {
    count: AtomicUsize,
    failed: AtomicUsize,
    notify: Notify,
}

impl Ready {
    pub fn new() -> Arc<Self> {
        Arc::new(Ready {
            count: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            notify: Notify::new(),
        })
    }
    pub fn done(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    /// Passes `r` through, counting an error as a failed client.
    pub fn check<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::SeqCst);
            self.notify.notify_waiters();
        }
        r
    }
    pub async fn wait_for<T: 'static>(
        &self,
        n: usize,
        timeout: Duration,
        set: &mut JoinSet<Result<T>>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if self.count.load(Ordering::SeqCst) >= n {
                return Ok(());
            }
            if self.failed.load(Ordering::SeqCst) > 0 {
                // surface the first error
                while let Some(r) = set.try_join_next() {
                    if let Ok(Err(e)) = r {
                        return Err(e.context(format!(
                            "{} of {n} clients failed while connecting",
                            self.failed.load(Ordering::SeqCst)
                        )));
                    }
                }
                bail!(
                    "{} of {n} clients failed while connecting",
                    self.failed.load(Ordering::SeqCst)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} clients connected and synced after {timeout:?}",
                    self.count.load(Ordering::SeqCst)
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// CPU time of the server and of this process.
pub struct CpuMark {
    server: procstat::CpuTime,
    /// Each server's own (a cluster target's nodes, in the order they started).
    nodes: Vec<procstat::CpuTime>,
    me: procstat::CpuTime,
    /// The server's PostgreSQL cluster, for the targets on PostgreSQL.
    database: Option<procstat::CpuTime>,
    pub at: Instant,
}

impl CpuMark {
    /// A cluster target's server time is its nodes' sum.
    pub fn take(procs: &Processes) -> Result<Self> {
        let mut server = procstat::CpuTime::default();
        let mut nodes = Vec::with_capacity(procs.servers.len());
        for pid in &procs.servers {
            let t = procstat::cpu_time(*pid)?;
            server.user += t.user;
            server.kernel += t.kernel;
            nodes.push(t);
        }
        Ok(CpuMark {
            server,
            nodes,
            me: procstat::cpu_time(std::process::id())?,
            database: procs.database.map(procstat::tree_cpu_time).transpose()?,
            at: Instant::now(),
        })
    }

    /// Server CPU time from `earlier` to this mark.
    pub fn server_since(&self, earlier: &CpuMark) -> Duration {
        self.server.since(earlier.server).total()
    }

    /// This process's CPU time from `earlier` to this mark.
    pub fn me_since(&self, earlier: &CpuMark) -> Duration {
        self.me.since(earlier.me).total()
    }
}

pub fn fill_window(
    m: &mut Measurement,
    c0: &CpuMark,
    c1: &CpuMark,
    stats: &ClientStats,
    counters: &Counters,
) {
    // deliveries per second over [first send, last delivery]; CPU over [c0, c1]
    let end = counters
        .last_delivery()
        .filter(|t| *t > c0.at)
        .unwrap_or(c1.at)
        .min(c1.at);
    let window = end - c0.at;
    m.window_s = Some(secs(window));
    m.sent = counters.sent.load(Ordering::Relaxed);
    m.expected_deliveries = counters.expected.load(Ordering::Relaxed);
    m.delivered = stats.delivered;
    m.unmatched = stats.unmatched;
    m.echoes = stats.echoes;
    m.awareness_rx = stats.awareness_rx;
    m.acks = stats.acks;
    if m.expected_deliveries > 0 {
        m.delivered_ratio = Some(m.delivered as f64 / m.expected_deliveries as f64);
    }
    if window > Duration::ZERO {
        m.delivered_per_s = Some(m.delivered as f64 / secs(window));
        m.sent_per_s = Some(m.sent as f64 / secs(window));
    }
    let cpu = c1.server.since(c0.server);
    m.server_cpu_s = Some(secs(cpu.total()));
    if c0.nodes.len() > 1 && c0.nodes.len() == c1.nodes.len() && cpu.total() > Duration::ZERO {
        m.node_cpu_share = c0
            .nodes
            .iter()
            .zip(&c1.nodes)
            .map(|(a, b)| secs(b.since(*a).total()) / secs(cpu.total()))
            .collect();
    }
    let database = match (c0.database, c1.database) {
        (Some(a), Some(b)) => Some(b.since(a).total()),
        _ => None,
    };
    m.database_cpu_s = database.map(secs);
    if m.delivered > 0 {
        m.database_cpu_us_per_delivery =
            database.map(|d| d.as_secs_f64() * 1e6 / m.delivered as f64);
    }
    if m.delivered > 0 {
        let per_delivery = |d: Duration| d.as_secs_f64() * 1e6 / m.delivered as f64;
        m.server_cpu_us_per_delivery = Some(per_delivery(cpu.total()));
        m.server_kernel_us_per_delivery = Some(per_delivery(cpu.kernel));
    }
    m.loadgen_cpu_s = Some(secs(c1.me.since(c0.me).total()));
    m.latency = Latency::from_micros(stats.latencies_us.clone());
}

/// How long deliveries may stop arriving before the drain gives up on the rest.
/// (Not every send is delivered: when two clients delete the same character at once,
/// the server's transaction for the second deletes nothing and may not be relayed.)
const STALL: Duration = Duration::from_secs(2);

/// Receives and applies frames until the controller says the scenario is done.
async fn listen_until_done(c: &mut YClient, ctl: &mut watch::Receiver<Phase>) -> Result<()> {
    loop {
        if *ctl.borrow_and_update() == Phase::Done {
            return Ok(());
        }
        tokio::select! {
            f = c.recv_frame() => {
                if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
            }
            r = ctl.changed() => { r?; }
        }
    }
}

/// Waits until every writer is done with the window and every expected delivery arrived,
/// deliveries stalled, or `max` passed.
pub async fn drain(counters: &Counters, max: Duration) -> bool {
    let started = Instant::now();
    let deadline = started + max;
    loop {
        if counters.outstanding() == 0 && counters.writers_in_window.load(Ordering::SeqCst) == 0 {
            return true;
        }
        let now = Instant::now();
        let last = counters.last_delivery().unwrap_or(started).max(started);
        if now >= deadline || now - last >= STALL {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn join_all(set: &mut JoinSet<Result<ClientStats>>, m: &mut Measurement) -> ClientStats {
    let mut total = ClientStats::default();
    let mut errors = 0usize;
    let mut first_err = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, set.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok(Ok(s)))) => total.merge(s),
            Ok(Some(Ok(Err(e)))) => {
                errors += 1;
                first_err.get_or_insert_with(|| format!("{e:#}"));
            }
            Ok(Some(Err(e))) => {
                errors += 1;
                first_err.get_or_insert_with(|| format!("task: {e}"));
            }
            Err(_) => {
                m.notes.push(format!(
                    "{} client tasks did not finish; aborted",
                    set.len()
                ));
                set.abort_all();
                break;
            }
        }
    }
    if errors > 0 {
        m.notes.push(format!(
            "{errors} clients failed; first: {}",
            first_err.unwrap_or_default()
        ));
    }
    total
}

// ---------------------------------------------------------------- typing

/// Runs the measured window of `duration_s` and the drain after it (at most `max_drain_s`), notes
/// the deliveries that did not arrive and the server's peak RSS, and ends the scenario: the
/// server's CPU marks at the window's start and after the drain.
pub async fn measured_window(
    procs: Processes,
    ctl: &watch::Sender<Phase>,
    counters: &Counters,
    (duration_s, max_drain_s): (f64, f64),
    m: &mut Measurement,
) -> Result<(CpuMark, CpuMark)> {
    let c0 = CpuMark::take(&procs)?;
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(duration_s);
    ctl.send(Phase::Run { start, stop })?;
    tokio::time::sleep_until(stop.into()).await;
    let complete = drain(counters, Duration::from_secs_f64(max_drain_s)).await;
    let c1 = CpuMark::take(&procs)?;
    if !complete {
        m.notes.push(format!(
            "drain ended with {} deliveries outstanding",
            counters.outstanding()
        ));
    }
    m.peak_rss_bytes = procs.peak_rss_bytes().ok();
    ctl.send(Phase::Done)?;
    Ok((c0, c1))
}

/// Scenarios 1-3: `docs` documents × `clients_per_doc` clients typing trace edits.
pub async fn typing(
    target: &mut Target,
    trace: Arc<Trace>,
    cfg: &TypingCfg,
    seed: u64,
) -> Result<Measurement> {
    let run_tag = seed % 100_000;
    let seat = |d: usize, _k: usize| target.addr(&format!("typing-{run_tag}-{d}"));
    typing_at(target, trace, cfg, seed, seat).await
}

/// [`typing`] with client `k` of document `d` connecting where `seat(d, k)` says.
pub async fn typing_at(
    target: &Target,
    trace: Arc<Trace>,
    cfg: &TypingCfg,
    seed: u64,
    seat: impl Fn(usize, usize) -> Result<DocAddr>,
) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    m.docs = cfg.docs as u64;
    m.clients = (cfg.docs * cfg.clients_per_doc) as u64;
    let procs = target.processes()?;
    let counters = Arc::new(Counters::default());
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters: counters.clone(),
    };
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);
    let ready = Ready::new();
    let connect_gate = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let rss0 = procs.rss_bytes()?;
    let initial: Arc<str> = trace
        .end_content
        .chars()
        .take(cfg.initial_chars)
        .collect::<String>()
        .into();
    let mut set = JoinSet::new();
    let t_connect = Instant::now();
    for d in 0..cfg.docs {
        let log = Arc::new(SentLog::default());
        for k in 0..cfg.clients_per_doc {
            let url = seat(d, k)?;
            let ccfg = ccfg.clone();
            let log = log.clone();
            let ctl = ctl_rx.clone();
            let ready = ready.clone();
            let gate = connect_gate.clone();
            let trace = trace.clone();
            let initial = initial.clone();
            let cfg = cfg.clone();
            let peers = (cfg.clients_per_doc - 1) as u64;
            let cseed = seed ^ ((d as u64) << 20) ^ (k as u64);
            set.spawn(async move {
                let setup = async {
                    let _permit = gate.acquire().await?;
                    let mut c =
                        YClient::connect(&url, &ccfg, log, peers, format!("bench-{d}-{k}"), true)
                            .await?;
                    c.wait_synced(SYNC_TIMEOUT).await?;
                    if k == 0 && !initial.is_empty() && c.text_len() == 0 {
                        c.edit(&[LocalEdit {
                            pos: 0,
                            del: 0,
                            ins: &initial,
                        }])
                        .await?;
                    }
                    Ok(c)
                };
                let c = ready.check(setup.await)?;
                ready.done();
                let writes = cfg.writers_per_doc == 0 || k < cfg.writers_per_doc;
                typing_client(c, ctl, trace, cfg, cseed, writes).await
            });
        }
    }
    let n = cfg.docs * cfg.clients_per_doc;
    ready
        .wait_for(n, Duration::from_secs(120), &mut set)
        .await?;
    m.connect_s = Some(secs(t_connect.elapsed()));
    // let the initial content reach everybody
    tokio::time::sleep(Duration::from_millis(500 + (n as u64) / 4)).await;
    if cfg.measure_rss {
        let rss1 = procs.rss_bytes()?;
        m.rss_before_bytes = Some(rss0);
        m.rss_loaded_bytes = Some(rss1);
        m.rss_per_conn_bytes = Some((rss1 as f64 - rss0 as f64) / n as f64);
    }

    let (c0, c1) = measured_window(
        target.processes()?,
        &ctl_tx,
        &counters,
        (cfg.duration_s, cfg.max_drain_s),
        &mut m,
    )
    .await?;
    let stats = join_all(&mut set, &mut m).await;
    fill_window(&mut m, &c0, &c1, &stats, &counters);
    Ok(m)
}

async fn typing_client(
    mut c: YClient,
    mut ctl: watch::Receiver<Phase>,
    trace: Arc<Trace>,
    cfg: TypingCfg,
    seed: u64,
    writes: bool,
) -> Result<ClientStats> {
    let mut rng = StdRng::seed_from_u64(seed);
    let interval = 1.0 / cfg.rate.max(1e-6);
    // far away when awareness is not renewed
    let renew = Duration::from_secs_f64(if cfg.renew_s > 0.0 { cfg.renew_s } else { 1e6 });
    let mut cursor: Option<RelativeCursor> = None;
    let mut next_tick: Option<Instant> = None;
    let mut edits: u32 = 0;
    let mut window = writes.then(|| c.counters.writer());
    loop {
        let phase = *ctl.borrow_and_update();
        match phase {
            Phase::Done => break,
            Phase::Setup => {
                let due = c.awareness_sent_at + renew;
                tokio::select! {
                    f = c.recv_frame() => {
                        if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
                    }
                    _ = tokio::time::sleep_until(due.into()) => {
                        c.send_awareness(0).await?;
                    }
                    r = ctl.changed() => { r?; }
                }
            }
            Phase::Run { start, stop } => {
                c.recording = true;
                let tick = *next_tick.get_or_insert_with(|| {
                    start + Duration::from_secs_f64(rng.gen_range(0.0..interval))
                });
                if writes && tick < stop {
                    tokio::select! {
                        f = c.recv_frame() => {
                            if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
                        }
                        _ = tokio::time::sleep_until(tick.into()) => {
                            let len = c.text_len();
                            let cur = cursor.get_or_insert_with(|| {
                                RelativeCursor::new(rng.gen_range(0..trace.txns.len()), rng.gen_range(0..=len))
                            });
                            let batch = cur.next(&trace, len);
                            c.edit(&batch).await?;
                            edits += 1;
                            if cfg.awareness_every > 0 && edits % cfg.awareness_every == 0 {
                                c.send_awareness(cur.cursor()).await?;
                            }
                            // jittered interval, no catch-up bursts when late
                            let next = tick + Duration::from_secs_f64(interval * rng.gen_range(0.5..1.5));
                            next_tick = Some(next.max(Instant::now()));
                        }
                        r = ctl.changed() => { r?; }
                    }
                } else {
                    if let Some(w) = window.as_mut() {
                        w.done();
                    }
                    let due = c.awareness_sent_at + renew;
                    tokio::select! {
                        f = c.recv_frame() => {
                            if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
                        }
                        _ = tokio::time::sleep_until(due.into()) => {
                            let at = cursor.as_ref().map_or(0, RelativeCursor::cursor);
                            c.send_awareness(at).await?;
                        }
                        r = ctl.changed() => { r?; }
                    }
                }
            }
        }
    }
    Ok(c.close().await)
}

// ---------------------------------------------------------------- idle

/// Scenario 4: many idle connections, one small document each.
pub async fn idle(
    target: &mut Target,
    trace: Arc<Trace>,
    cfg: &IdleCfg,
    seed: u64,
) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    m.docs = cfg.connections as u64;
    m.clients = cfg.connections as u64;
    let procs = target.processes()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = procs.rss_bytes()?;
    m.rss_before_bytes = Some(rss0);
    let counters = Arc::new(Counters::default());
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters,
    };
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);
    let ready = Ready::new();
    let gate = Arc::new(Semaphore::new(64));
    let text_len = trace.end_content.chars().count();
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    let run_tag = seed % 100_000;
    for i in 0..cfg.connections {
        let url = target.addr(&format!("idle-{run_tag}-{i}"))?;
        let ccfg = ccfg.clone();
        let mut ctl = ctl_rx.clone();
        let ready = ready.clone();
        let gate = gate.clone();
        // a different slice of the paper for each document
        let from = (i * 7919) % text_len.saturating_sub(cfg.initial_chars).max(1);
        let initial: String = trace
            .end_content
            .chars()
            .skip(from)
            .take(cfg.initial_chars)
            .collect();
        set.spawn(async move {
            let setup = async {
                let _permit = gate.acquire().await?;
                let mut c = YClient::connect(
                    &url,
                    &ccfg,
                    Arc::new(SentLog::default()),
                    0,
                    format!("idle-{i}"),
                    true,
                )
                .await?;
                c.wait_synced(SYNC_TIMEOUT).await?;
                c.edit(&[LocalEdit {
                    pos: 0,
                    del: 0,
                    ins: &initial,
                }])
                .await?;
                Ok(c)
            };
            let mut c = ready.check(setup.await)?;
            ready.done();
            listen_until_done(&mut c, &mut ctl).await?;
            Ok(c.close().await)
        });
    }
    ready
        .wait_for(cfg.connections, Duration::from_secs(300), &mut set)
        .await?;
    m.connect_s = Some(secs(t0.elapsed()));
    // settle: let writes land and allocations stop
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c0 = CpuMark::take(&target.processes()?)?;
    tokio::time::sleep(Duration::from_secs_f64(cfg.hold_s)).await;
    let c1 = CpuMark::take(&target.processes()?)?;
    let rss1 = procs.rss_bytes()?;
    m.rss_loaded_bytes = Some(rss1);
    m.rss_per_idle_conn_bytes = Some((rss1 as f64 - rss0 as f64) / cfg.connections as f64);
    let idle_cpu = c1.server.since(c0.server).total();
    m.idle_cpu_pct = Some(100.0 * secs(idle_cpu) / secs(c1.at - c0.at));
    m.window_s = Some(secs(c1.at - c0.at));
    m.server_cpu_s = Some(secs(idle_cpu));
    m.loadgen_cpu_s = Some(secs(c1.me.since(c0.me).total()));
    m.peak_rss_bytes = procs.peak_rss_bytes().ok();
    ctl_tx.send(Phase::Done)?;
    let stats = join_all(&mut set, &mut m).await;
    m.awareness_rx = stats.awareness_rx;
    Ok(m)
}

// ---------------------------------------------------------------- replay

/// Scenarios 5 and 6: one writer sends pre-encoded `updates` (see `synth.rs`), `observers`
/// receive; then the document is loaded by a fresh client, after a restart when the
/// target is persistent. `expect_text` is the text the document must end with.
pub async fn replay(
    target: &mut Target,
    updates: &[Vec<u8>],
    expect_text: &str,
    cfg: &ReplayCfg,
    seed: u64,
) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    m.docs = 1;
    m.clients = 1 + cfg.observers as u64;
    let procs = target.processes()?;
    let counters = Arc::new(Counters::default());
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters: counters.clone(),
    };
    let doc_name = format!("replay-{}", seed % 100_000);
    let url = target.addr(&doc_name)?;
    let log = Arc::new(SentLog::default());
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);
    let t_connect = Instant::now();
    let mut writer = YClient::connect(
        &url,
        &ccfg,
        log.clone(),
        cfg.observers as u64,
        "writer".into(),
        true,
    )
    .await?;
    writer.wait_synced(SYNC_TIMEOUT).await?;
    writer.discard_updates = true;
    let mut set: JoinSet<Result<(ClientStats, String)>> = JoinSet::new();
    for i in 0..cfg.observers {
        let mut c =
            YClient::connect(&url, &ccfg, log.clone(), 0, format!("observer-{i}"), true).await?;
        c.wait_synced(SYNC_TIMEOUT).await?;
        c.recording = true;
        let mut ctl = ctl_rx.clone();
        set.spawn(async move {
            listen_until_done(&mut c, &mut ctl).await?;
            let text = c.text_string();
            Ok((c.close().await, text))
        });
    }
    m.connect_s = Some(secs(t_connect.elapsed()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // ---- write
    writer.recording = true;
    let limit = cfg.window * cfg.observers.max(1) as u64;
    let max_wait = Duration::from_secs_f64(cfg.max_wait_s);
    let c0 = CpuMark::take(&target.processes()?)?;
    let stalled = |since: Instant| {
        let last = counters.last_delivery().unwrap_or(since).max(since);
        last.elapsed() > max_wait
    };
    for update in updates {
        let since = Instant::now();
        while counters.outstanding() >= limit {
            if stalled(since) {
                bail!(
                    "no delivery for {max_wait:?} with {} outstanding",
                    counters.outstanding()
                );
            }
            tokio::select! {
                f = writer.recv_frame() => {
                    if writer.process(f).await? == Event::Closed { bail!("server closed the writer"); }
                }
                _ = counters.progress.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        // the reference echoes every update back: keep the writer's socket drained
        while let Some(f) = writer.try_recv_frame() {
            if writer.process(f).await? == Event::Closed {
                bail!("server closed the writer");
            }
        }
        writer.send_update(update.clone()).await?;
    }
    let since = Instant::now();
    while counters.outstanding() > 0 && !stalled(since) {
        tokio::select! {
            f = writer.recv_frame() => {
                if writer.process(f).await? == Event::Closed { bail!("server closed the writer"); }
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    let c1 = CpuMark::take(&target.processes()?)?;
    if counters.outstanding() > 0 {
        m.notes.push(format!(
            "{} deliveries still outstanding after {max_wait:?} without one",
            counters.outstanding()
        ));
    }
    m.peak_rss_bytes = procs.peak_rss_bytes().ok();
    ctl_tx.send(Phase::Done)?;
    let writer_text = expect_text;
    m.doc_chars = Some(writer_text.chars().count() as u64);
    let mut stats = ClientStats::default();
    let mut content_ok = true;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((s, text))) => {
                if text != writer_text {
                    content_ok = false;
                    m.notes.push(format!(
                        "an observer ended with {} chars, the writer with {}",
                        text.chars().count(),
                        writer_text.chars().count()
                    ));
                }
                stats.merge(s)
            }
            Ok(Err(e)) => {
                content_ok = false;
                m.notes.push(format!("observer failed: {e:#}"));
            }
            Err(e) => {
                content_ok = false;
                m.notes.push(format!("observer task: {e}"));
            }
        }
    }
    stats.merge(writer.close().await);
    fill_window(&mut m, &c0, &c1, &stats, &counters);
    m.content_ok = Some(content_ok);

    // ---- cold load
    if target.persistent() {
        let info = target.stop().await?;
        m.stop = Some(format!("{:?}", info.status));
        if let Some(dir) = target.data_dir() {
            if let Ok((a, b)) = procstat::disk_usage(dir) {
                m.disk_bytes = Some(a);
                m.disk_alloc_bytes = Some(b);
            }
        }
        let took = target.start().await?;
        m.restart_ms = Some(took.as_secs_f64() * 1e3);
        m.cold_load_kind = Some("after restart".into());
    } else {
        m.cold_load_kind = Some("in memory, no restart".into());
    }
    let url = target.addr(&doc_name)?;
    let cold_load = load_once(&url, &ccfg).await.context("cold load")?;
    let (cold, text, encoded) = (cold_load.applied, cold_load.text, cold_load.encoded);
    m.doc_encoded_bytes = Some(encoded as u64);
    m.cold_load_connected_ms = Some(cold_load.connected.as_secs_f64() * 1e3);
    m.cold_load_received_ms = Some(cold_load.received.as_secs_f64() * 1e3);
    if text != writer_text {
        m.content_ok = Some(false);
        m.notes.push(format!(
            "cold load got {} chars, expected {}",
            text.chars().count(),
            writer_text.chars().count()
        ));
    }
    m.cold_load_ms = Some(cold.as_secs_f64() * 1e3);
    let warm = load_once(&url, &ccfg).await.context("warm load")?;
    m.warm_load_ms = Some(warm.applied.as_secs_f64() * 1e3);
    if let Ok(procs) = target.processes() {
        if let Ok(p) = procs.peak_rss_bytes() {
            m.peak_rss_bytes = Some(m.peak_rss_bytes.unwrap_or(0).max(p));
        }
    }
    Ok(m)
}

/// What a fresh client's load took.
struct Load {
    /// Connection opened: the WebSocket is open.
    connected: Duration,
    /// Connection opened: the SyncStep2 frame arrived.
    received: Duration,
    /// Connection opened: the document is applied.
    applied: Duration,
    text: String,
    encoded: usize,
}

/// Connect a fresh client and time until it holds the document.
async fn load_once(url: &DocAddr, ccfg: &ClientConfig) -> Result<Load> {
    let t0 = Instant::now();
    let mut c = YClient::connect(
        url,
        ccfg,
        Arc::new(SentLog::default()),
        0,
        "loader".into(),
        false,
    )
    .await?;
    let connected = c.connected_at - t0;
    c.wait_synced(Duration::from_secs(120)).await?;
    let applied = t0.elapsed();
    let received = c.synced_frame_at.map(|t| t - t0).unwrap_or(applied);
    let text = c.text_string();
    let encoded = c.encoded_len();
    c.close().await;
    if text.is_empty() {
        return Err(anyhow!("loaded an empty document"));
    }
    Ok(Load {
        connected,
        received,
        applied,
        text,
        encoded,
    })
}

// ---------------------------------------------------------------- kill -9

/// Scenario 7: confirmed updates, then kill -9, restart, and count what survived.
#[derive(Debug, Clone, Serialize)]
pub struct KillCfg {
    /// Updates the writer sends, each inserting one character.
    pub updates: usize,
    /// Rate of the paced run, updates per second.
    pub paced_rate: f64,
    /// Back-to-back run: at most this many updates sent but not yet confirmed (0: no limit,
    /// send all at once).
    pub window: u64,
    /// Stop waiting for confirmations after this long without one.
    pub max_wait_s: f64,
}

/// The character the `i`-th update inserts: distinct for each update (CJK ideographs,
/// one UTF-16 unit each), so the loaded text tells which updates survived.
fn kill_char(i: usize) -> char {
    u32::try_from(i)
        .ok()
        .and_then(|i| char::from_u32(0x4E00 + i))
        .unwrap_or('?')
}

/// Most updates [`kill_char`] tells apart (the CJK Unified Ideographs block).
pub const KILL_MAX_UPDATES: usize = 20_000;

/// Scenario 7. Runs back-to-back, then paced, each on its own document; each run ends
/// with a SIGKILL and a restart of the server on the same data directory.
pub async fn kill9(target: &mut Target, cfg: &KillCfg, seed: u64) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    if !target.persistent() {
        m.notes
            .push("skipped: keeps nothing on disk, so kill -9 loses every document".into());
        return Ok(m);
    }
    if cfg.updates > KILL_MAX_UPDATES {
        bail!("at most {KILL_MAX_UPDATES} updates");
    }
    let by_ack = target.dialect() == Dialect::Hocuspocus;
    m.docs = 2;
    m.clients = if by_ack { 1 } else { 2 };
    let tag = seed % 100_000;
    let modes = [None, Some(cfg.paced_rate)];
    for (i, rate) in modes.into_iter().enumerate() {
        let mut run = KillRun {
            mode: match rate {
                None if cfg.window > 0 => format!("back-to-back, window {}", cfg.window),
                None => "back-to-back".into(),
                Some(r) => format!("paced {r}/s"),
            },
            confirmed_by: if by_ack {
                "server ack (SyncStatus 1)".into()
            } else {
                "second client received it".into()
            },
            ..Default::default()
        };
        let doc = format!("kill-{tag}-{i}");
        match kill_once(target, &doc, cfg, rate, by_ack, &mut run).await {
            Ok(peak) => {
                m.peak_rss_bytes = m.peak_rss_bytes.max(peak);
            }
            Err(e) => {
                m.notes.push(format!("{}: {e:#}", run.mode));
                run.error = Some(format!("{e:#}"));
            }
        }
        if !target.is_running() {
            target
                .start()
                .await
                .context("restarting after a failed run")?;
        }
        if rate.is_none() {
            m.kill_b2b = Some(run);
        } else {
            m.kill_paced = Some(run);
        }
    }
    Ok(m)
}

/// Handles frames until none came for `quiet` (or `max` passed).
async fn settle(c: &mut YClient, quiet: Duration, max: Duration) -> Result<()> {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        let until = (Instant::now() + quiet).min(deadline);
        match tokio::time::timeout_at(until.into(), c.recv_frame()).await {
            Err(_) => return Ok(()),
            Ok(f) => {
                if c.process(f).await? == Event::Closed {
                    bail!("server closed the connection");
                }
            }
        }
    }
    Ok(())
}

/// One run of scenario 7; fills `run`, returns the server's peak RSS before the kill.
async fn kill_once(
    target: &mut Target,
    doc: &str,
    cfg: &KillCfg,
    rate: Option<f64>,
    by_ack: bool,
    run: &mut KillRun,
) -> Result<Option<u64>> {
    let procs = target.processes()?;
    let counters = Arc::new(Counters::default());
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters: counters.clone(),
    };
    let addr = target.addr(doc)?;
    let log = Arc::new(SentLog::default());
    let peers = u64::from(!by_ack);
    let mut writer =
        YClient::connect(&addr, &ccfg, log.clone(), peers, "writer".into(), true).await?;
    writer.wait_synced(SYNC_TIMEOUT).await?;
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);
    let mut observer = None;
    if !by_ack {
        // y-websocket has no acknowledgement: an update counts as confirmed when a second
        // client has received it (Debrief relays only what is on disk).
        let mut c = YClient::connect(&addr, &ccfg, log, 0, "observer".into(), false).await?;
        c.wait_synced(SYNC_TIMEOUT).await?;
        c.recording = true;
        let mut ctl = ctl_rx;
        observer = Some(tokio::spawn(async move {
            // ends with an error when the server is killed; the stats are what matters
            let r = listen_until_done(&mut c, &mut ctl).await;
            (
                c.stats.clone(),
                r.err().map(|e| (Instant::now(), format!("{e:#}"))),
            )
        }));
    }
    // no acknowledgement of the handshake may still be on its way when tracking starts
    settle(
        &mut writer,
        Duration::from_millis(300),
        Duration::from_secs(3),
    )
    .await?;
    writer.track_acks = by_ack;
    writer.recording = true;
    let confirmed = |w: &YClient| {
        if by_ack {
            w.tracked_acks
        } else {
            counters.delivered.load(Ordering::Relaxed)
        }
    };

    let n = cfg.updates;
    let t0 = Instant::now();
    let max_wait = Duration::from_secs_f64(cfg.max_wait_s);
    // Sending and waiting may end early (the server closing the writer); the kill,
    // restart and count happen anyway, for what was confirmed until then.
    let outcome: Result<()> = async {
        let mut buf = [0u8; 4];
        for i in 0..n {
            if let Some(r) = rate {
                let due = t0 + Duration::from_secs_f64(i as f64 / r);
                loop {
                    tokio::select! {
                        f = writer.recv_frame() => {
                            if writer.process(f).await? == Event::Closed { bail!("server closed the writer"); }
                        }
                        _ = tokio::time::sleep_until(due.into()) => break,
                    }
                }
            } else {
                while let Some(f) = writer.try_recv_frame() {
                    if writer.process(f).await? == Event::Closed {
                        bail!("server closed the writer");
                    }
                }
                // as fast as confirmations allow
                let since = Instant::now();
                while cfg.window > 0 && writer.stats.sent - confirmed(&writer) >= cfg.window {
                    if since.elapsed() >= max_wait {
                        bail!("no confirmation for {max_wait:?}");
                    }
                    tokio::select! {
                        f = writer.recv_frame() => {
                            if writer.process(f).await? == Event::Closed { bail!("server closed the writer"); }
                        }
                        _ = counters.progress.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            }
            let pos = writer.text_len();
            let ins = kill_char(i).encode_utf8(&mut buf);
            writer.edit(&[LocalEdit { pos, del: 0, ins }]).await?;
        }
        // wait for the confirmations
        let mut seen = confirmed(&writer);
        let mut progress_at = Instant::now();
        while seen < writer.stats.sent {
            if progress_at.elapsed() >= max_wait {
                bail!(
                    "{} updates unconfirmed {max_wait:?} after the last confirmation",
                    writer.stats.sent - seen
                );
            }
            tokio::select! {
                f = writer.recv_frame() => {
                    if writer.process(f).await? == Event::Closed { bail!("server closed the writer"); }
                }
                _ = counters.progress.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            let now = confirmed(&writer);
            if now != seen {
                seen = now;
                progress_at = Instant::now();
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        run.notes.push(format!(
            "after {} sent, {} confirmed: {e:#}",
            writer.stats.sent,
            confirmed(&writer)
        ));
    }
    run.sent = writer.stats.sent;
    let seen = confirmed(&writer);
    let last_at = if by_ack {
        writer.last_ack_at
    } else {
        counters.last_delivery()
    };
    run.confirmed = seen.min(run.sent);
    let peak = procs.peak_rss_bytes().ok();
    // ---- kill -9, right after the last confirmation
    let killed_at = target.kill().await?;
    if let Some(t) = last_at {
        run.send_s = Some(secs(t.saturating_duration_since(t0)));
        run.kill_after_ms = Some(secs(killed_at.saturating_duration_since(t)) * 1e3);
    }
    let _ = ctl_tx.send(Phase::Done);
    let latencies = match observer {
        Some(task) => match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok((stats, err))) => {
                if let Some((at, e)) = err.filter(|(at, _)| *at < killed_at) {
                    run.notes.push(format!(
                        "the observer failed {:.1} s before the kill: {e}",
                        secs(killed_at - at)
                    ));
                }
                stats.latencies_us
            }
            _ => Vec::new(),
        },
        None => writer.stats.ack_latencies_us.clone(),
    };
    run.confirm_latency = Latency::from_micros(latencies);
    drop(writer);

    // ---- restart on the same data directory and look
    let took = target.start().await?;
    run.restart_ms = secs(took) * 1e3;
    let loader_cfg = ClientConfig {
        dialect: target.dialect(),
        counters: Arc::new(Counters::default()),
    };
    let addr = target.addr(doc)?;
    let mut loader = YClient::connect(
        &addr,
        &loader_cfg,
        Arc::new(SentLog::default()),
        0,
        "loader".into(),
        false,
    )
    .await?;
    loader.wait_synced(SYNC_TIMEOUT).await?;
    let text = loader.text_string();
    loader.close().await;
    let present: HashSet<char> = text.chars().collect();
    let confirmed_n = usize::try_from(run.confirmed)?;
    let sent_n = usize::try_from(run.sent)?;
    run.loaded_chars = text.chars().count() as u64;
    run.survived = (0..confirmed_n)
        .filter(|i| present.contains(&kill_char(*i)))
        .count() as u64;
    run.lost = run.confirmed - run.survived;
    run.unconfirmed_survived = (confirmed_n..sent_n)
        .filter(|i| present.contains(&kill_char(*i)))
        .count() as u64;
    Ok(peak)
}
