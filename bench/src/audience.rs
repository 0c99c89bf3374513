//! Large audiences (issue 21): scenario 8, the all-hands review (a few writers, a thousand
//! read-only observers, everyone's presence), and scenario 9, the join storm (hundreds of
//! clients open a large document within one second after a restart). Scenario 10 (ten
//! thousand sockets) is the typing workload of `scenarios.rs` with one writer per document.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, Transact, Update};

use crate::client::{ClientConfig, ClientStats, Counters, Event, SentLog, YClient, TEXT_NAME};
use crate::measure::{Latency, Measurement, StormRun};
use crate::scenarios::{fill_window, join_all, measured_window, CpuMark, Phase};
use crate::target::{DocAddr, Target};
use crate::trace::LocalEdit;

const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Stock clients (y-protocols awareness) renew an unchanged state every 15 s.
pub const STOCK_RENEW_S: f64 = 15.0;

// ---------------------------------------------------------------- 8: all-hands

/// Scenario 8: one document, a few writers, many read-only observers, presence from all.
#[derive(Debug, Clone, Serialize)]
pub struct AllHandsCfg {
    pub writers: usize,
    pub observers: usize,
    /// Edits per second per writer; each edit also sends the writer's caret.
    pub rate: f64,
    pub duration_s: f64,
    /// Every client renews its awareness state after this many seconds without sending one.
    pub renew_s: f64,
    pub initial_chars: usize,
    pub max_drain_s: f64,
}

/// Setup outcome counters: ready, or refused (connect or sync failed).
struct Joined {
    ready: AtomicUsize,
    refused: AtomicUsize,
    first_refusal: Mutex<Option<String>>,
    notify: Notify,
}

impl Joined {
    fn new() -> Arc<Self> {
        Arc::new(Joined {
            ready: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            first_refusal: Mutex::new(None),
            notify: Notify::new(),
        })
    }

    fn ok(&self) {
        self.ready.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn refused(&self, e: &anyhow::Error) {
        if let Ok(mut f) = self.first_refusal.lock() {
            f.get_or_insert_with(|| format!("{e:#}"));
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn settled(&self) -> usize {
        self.ready.load(Ordering::SeqCst) + self.refused.load(Ordering::SeqCst)
    }

    /// Waits until `n` clients are ready or refused.
    async fn wait(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if self.settled() >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} clients connected and synced ({} refused) after {timeout:?}",
                    self.ready.load(Ordering::SeqCst),
                    self.refused.load(Ordering::SeqCst)
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}

/// Receives until the phase is `Done`, renewing the awareness state every `renew`.
async fn observe(c: &mut YClient, ctl: &mut watch::Receiver<Phase>, renew: Duration) -> Result<()> {
    loop {
        let phase = *ctl.borrow_and_update();
        match phase {
            Phase::Done => return Ok(()),
            Phase::Run { .. } => c.recording = true,
            Phase::Setup => {}
        }
        let due = c.awareness_sent_at + renew;
        tokio::select! {
            f = c.recv_frame() => {
                if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
            }
            _ = tokio::time::sleep_until(due.into()) => c.send_awareness(0).await?,
            r = ctl.changed() => { r?; }
        }
    }
}

/// A writer: types short runs of the paper's text at its own caret, sending the caret with
/// each edit (inserts only: concurrent deletions of one character would make a delivery
/// that no server sends).
async fn write(
    mut c: YClient,
    mut ctl: watch::Receiver<Phase>,
    peers: Arc<AtomicU64>,
    text: Arc<str>,
    cfg: AllHandsCfg,
    seed: u64,
) -> Result<ClientStats> {
    let mut rng = StdRng::seed_from_u64(seed);
    let interval = 1.0 / cfg.rate.max(1e-6);
    let renew = Duration::from_secs_f64(cfg.renew_s);
    let chars: Vec<char> = text.chars().collect();
    let mut src = rng.gen_range(0..chars.len().max(1));
    let mut caret: Option<u32> = None;
    let mut next_tick: Option<Instant> = None;
    let mut window = c.counters.writer();
    loop {
        let phase = *ctl.borrow_and_update();
        let (start, stop) = match phase {
            Phase::Done => break,
            Phase::Setup => {
                let due = c.awareness_sent_at + renew;
                tokio::select! {
                    f = c.recv_frame() => {
                        if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
                    }
                    _ = tokio::time::sleep_until(due.into()) => c.send_awareness(0).await?,
                    r = ctl.changed() => { r?; }
                }
                continue;
            }
            Phase::Run { start, stop } => (start, stop),
        };
        if !c.recording {
            c.recording = true;
            c.set_peers(peers.load(Ordering::SeqCst));
        }
        let tick = *next_tick
            .get_or_insert_with(|| start + Duration::from_secs_f64(rng.gen_range(0.0..interval)));
        let due = c.awareness_sent_at + renew;
        if tick >= stop {
            window.done();
            tokio::select! {
                f = c.recv_frame() => {
                    if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
                }
                _ = tokio::time::sleep_until(due.into()) => c.send_awareness(caret.unwrap_or(0)).await?,
                r = ctl.changed() => { r?; }
            }
            continue;
        }
        tokio::select! {
            f = c.recv_frame() => {
                if c.process(f).await? == Event::Closed { bail!("server closed the connection"); }
            }
            _ = tokio::time::sleep_until(tick.into()) => {
                let len = c.text_len();
                let at = caret.get_or_insert_with(|| rng.gen_range(0..=len));
                let pos = (*at).min(len);
                let n = rng.gen_range(1..=6usize);
                let ins: String = (0..n).map(|k| chars.get((src + k) % chars.len().max(1)).copied().unwrap_or('x')).collect();
                src = (src + n) % chars.len().max(1);
                c.edit(&[LocalEdit { pos, del: 0, ins: &ins }]).await?;
                *at = pos + n as u32;
                c.send_awareness(*at).await?;
                let next = tick + Duration::from_secs_f64(interval * rng.gen_range(0.5..1.5));
                next_tick = Some(next.max(Instant::now()));
            }
            r = ctl.changed() => { r?; }
        }
    }
    Ok(c.close().await)
}

pub async fn all_hands(
    target: &mut Target,
    text: Arc<str>,
    cfg: &AllHandsCfg,
    seed: u64,
) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    m.docs = 1;
    m.clients = (cfg.writers + cfg.observers) as u64;
    let procs = target.processes()?;
    let counters = Arc::new(Counters::default());
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters: counters.clone(),
    };
    let doc = format!("allhands-{}", seed % 100_000);
    let log = Arc::new(SentLog::default());
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);
    let peers = Arc::new(AtomicU64::new(0));
    let renew = Duration::from_secs_f64(cfg.renew_s);
    let rss0 = procs.rss_bytes()?;
    m.rss_before_bytes = Some(rss0);
    let t0 = Instant::now();

    // writers first; the first one puts the initial text in
    let mut writers = JoinSet::new();
    let initial: String = text.chars().take(cfg.initial_chars).collect();
    for w in 0..cfg.writers {
        let addr = target.addr(&doc)?;
        let mut c = YClient::connect(&addr, &ccfg, log.clone(), 0, format!("writer-{w}"), true)
            .await
            .with_context(|| format!("writer {w}"))?;
        c.wait_synced(SYNC_TIMEOUT).await?;
        if w == 0 && !initial.is_empty() && c.text_len() == 0 {
            c.edit(&[LocalEdit {
                pos: 0,
                del: 0,
                ins: &initial,
            }])
            .await?;
        }
        let wseed = seed ^ ((w as u64) << 24);
        writers.spawn(write(
            c,
            ctl_rx.clone(),
            peers.clone(),
            text.clone(),
            cfg.clone(),
            wseed,
        ));
    }

    let joined = Joined::new();
    let gate = Arc::new(Semaphore::new(64));
    let mut observers = JoinSet::new();
    for i in 0..cfg.observers {
        let addr = target.observer_addr(&doc)?;
        let ccfg = ccfg.clone();
        let log = log.clone();
        let mut ctl = ctl_rx.clone();
        let joined = joined.clone();
        let gate = gate.clone();
        observers.spawn(async move {
            let setup = async {
                let _permit = gate.acquire().await?;
                let mut c =
                    YClient::connect(&addr, &ccfg, log, 0, format!("observer-{i}"), true).await?;
                c.wait_synced(SYNC_TIMEOUT).await?;
                c.skip_apply = true;
                Ok::<_, anyhow::Error>(c)
            };
            let mut c = match setup.await {
                Ok(c) => c,
                Err(e) => {
                    joined.refused(&e);
                    return Ok(None);
                }
            };
            joined.ok();
            observe(&mut c, &mut ctl, renew).await?;
            Ok::<_, anyhow::Error>(Some(c.close().await))
        });
    }
    joined.wait(cfg.observers, Duration::from_secs(600)).await?;
    m.connect_s = Some(secs(t0.elapsed()));
    let connected = joined.ready.load(Ordering::SeqCst);
    let refused = joined.refused.load(Ordering::SeqCst);
    m.refused = Some(refused as u64);
    if refused > 0 {
        let first = joined
            .first_refusal
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        m.notes.push(format!(
            "{refused} of {} observers could not join; first: {first}",
            cfg.observers
        ));
    }
    // every update reaches the other writers and every observer that joined
    peers.store((cfg.writers - 1 + connected) as u64, Ordering::SeqCst);
    // let the initial content and the joiners' presence settle
    tokio::time::sleep(Duration::from_millis(1000)).await;
    m.rss_loaded_bytes = procs.rss_bytes().ok();

    let (c0, c1) = measured_window(
        target.processes()?,
        &ctl_tx,
        &counters,
        (cfg.duration_s, cfg.max_drain_s),
        &mut m,
    )
    .await?;
    let mut stats = join_all(&mut writers, &mut m).await;
    let mut observer_stats = ClientStats::default();
    let mut errors = 0usize;
    let mut first_err = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = match tokio::time::timeout(left, observers.join_next()).await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(_) => {
                m.notes.push(format!(
                    "{} observers did not finish (a send blocked?); aborted",
                    observers.len()
                ));
                observers.abort_all();
                break;
            }
        };
        match r {
            Ok(Ok(Some(s))) => observer_stats.merge(s),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                errors += 1;
                first_err.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                errors += 1;
                first_err.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    if errors > 0 {
        m.notes.push(format!(
            "{errors} observers failed after joining; first: {}",
            first_err.unwrap_or_default()
        ));
    }
    stats.merge(observer_stats);
    fill_window(&mut m, &c0, &c1, &stats, &counters);
    m.undelivered = Some(m.expected_deliveries.saturating_sub(m.delivered));
    let clients = (cfg.writers + connected) as f64;
    let run_s = secs(c1.at - c0.at);
    if clients > 0.0 && run_s > 0.0 {
        m.awareness_frames_per_client_s =
            Some(stats.awareness_rx_frames_rec as f64 / clients / run_s);
        m.awareness_bytes_per_client_s =
            Some(stats.awareness_rx_bytes_rec as f64 / clients / run_s);
    }
    m.awareness_rx_frames = Some(stats.awareness_rx_frames_rec);
    m.awareness_rx_bytes = Some(stats.awareness_rx_bytes_rec);
    Ok(m)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------- 9: join storm

/// One storm: `joiners` clients open a document of about `mb` MB within `spread_s`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Storm {
    pub mb: f64,
    pub joiners: usize,
}

impl Storm {
    /// "4:150" = 4 MB, 150 joiners.
    pub fn parse(s: &str) -> Result<Self> {
        let (mb, n) = s
            .split_once(':')
            .with_context(|| format!("{s:?}: expected MB:JOINERS, e.g. 4:150"))?;
        let mb: f64 = mb.trim().parse().with_context(|| format!("{s:?}: MB"))?;
        let joiners: usize = n
            .trim()
            .parse()
            .with_context(|| format!("{s:?}: JOINERS"))?;
        if mb.is_nan() || mb <= 0.0 || joiners == 0 {
            bail!("{s:?}: MB and JOINERS must be positive");
        }
        Ok(Storm { mb, joiners })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StormCfg {
    pub storms: Vec<Storm>,
    /// Joiners start evenly spread over this many seconds.
    pub spread_s: f64,
    /// A joiner not synced after this long counts as failed.
    pub max_wait_s: f64,
}

/// A document to storm: the updates building it (sent in this order) and its text.
#[derive(Debug)]
pub struct BuiltDoc {
    pub mb: f64,
    pub updates: Vec<Vec<u8>>,
    pub text: String,
}

/// Scenario 9 against one target: per storm, build the document, restart, storm it
/// ("cold"); restart, change it once, storm it again ("warm").
pub async fn join_storm(
    target: &mut Target,
    docs: &[Arc<BuiltDoc>],
    cfg: &StormCfg,
    seed: u64,
) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    m.docs = cfg.storms.len() as u64;
    for (k, storm) in cfg.storms.iter().enumerate() {
        let Some(built) = docs.iter().find(|d| d.mb == storm.mb) else {
            bail!("no document built for {} MB", storm.mb);
        };
        let doc = format!("storm-{}-{k}", seed % 100_000);
        for warm in [false, true] {
            let mut run = StormRun {
                mb: storm.mb,
                joiners: storm.joiners as u64,
                variant: if warm { "warm" } else { "cold" }.into(),
                ..Default::default()
            };
            let r = storm_once(target, &doc, built, *storm, warm, cfg, seed, &mut run).await;
            if let Err(e) = r {
                run.error = Some(format!("{e:#}"));
                m.notes.push(format!(
                    "{} MB × {} {}: {e:#}",
                    storm.mb, storm.joiners, run.variant
                ));
                if !target.is_running() {
                    target
                        .start()
                        .await
                        .context("restarting after a failed storm")?;
                }
            }
            m.peak_rss_bytes = m.peak_rss_bytes.max(run.peak_rss_bytes);
            m.storms.push(run);
        }
    }
    Ok(m)
}

/// Restarts a persistent target; returns whether it did.
async fn restart(target: &mut Target) -> Result<bool> {
    if !target.persistent() {
        return Ok(false);
    }
    let info = target.stop().await?;
    if !info.status.map(|s| s.success()).unwrap_or(false) {
        bail!("the server did not exit 0 on SIGTERM: {:?}", info.status);
    }
    target.start().await?;
    Ok(true)
}

/// Hash of a received state (the same bytes for every joiner of one storm when the server
/// encodes the same state the same way).
fn payload_hash(b: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x5175_8E4B_D1C3_5F2B);
    }
    for &x in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(x)).wrapping_mul(0x5175_8E4B_D1C3_5F2B);
    }
    h
}

/// Each distinct state joiners received (the SyncStep2 and the updates after it), by hash.
type Received = Arc<Mutex<HashMap<u64, Option<Vec<Vec<u8>>>>>>;

/// The text a received state (and the updates after it) holds.
fn text_of(payloads: &[Vec<u8>]) -> Result<String> {
    let doc = Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Default::default()
    });
    let t = doc.get_or_insert_text(TEXT_NAME);
    for payload in payloads {
        let u = Update::decode_v1(payload).context("decoding the received state")?;
        doc.transact_mut()
            .apply_update(u)
            .context("applying the received state")?;
    }
    let s = t.get_string(&doc.transact());
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
async fn storm_once(
    target: &mut Target,
    doc: &str,
    built: &BuiltDoc,
    storm: Storm,
    warm: bool,
    cfg: &StormCfg,
    seed: u64,
    run: &mut StormRun,
) -> Result<()> {
    let counters = Arc::new(Counters::default());
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters: counters.clone(),
    };
    let mut expected = built.text.clone();
    if !warm {
        // build the document: a checker sees every update arrive (Debrief relays only
        // what is on disk)
        let addr = target.addr(doc)?;
        let t0 = Instant::now();
        let connect = |name: &str| {
            YClient::connect(
                &addr,
                &ccfg,
                Arc::new(SentLog::default()),
                0,
                name.into(),
                false,
            )
        };
        let mut checker = connect("checker").await?;
        checker.wait_synced(SYNC_TIMEOUT).await?;
        let mut builder = connect("builder").await?;
        builder.wait_synced(SYNC_TIMEOUT).await?;
        builder.discard_updates = true;
        let want = u32::try_from(expected.encode_utf16().count())?;
        let (done_tx, mut done_rx) = watch::channel(false);
        let check = tokio::spawn(async move {
            let deadline = Instant::now() + SYNC_TIMEOUT;
            while checker.text_len() < want {
                match tokio::time::timeout_at(deadline.into(), checker.next_event()).await {
                    Err(_) => {
                        bail!("the document was not complete {SYNC_TIMEOUT:?} after building")
                    }
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(Event::Closed)) => bail!("server closed the checker"),
                    Ok(Ok(_)) => {}
                }
            }
            let _ = done_tx.send(true);
            let text = checker.text_string();
            checker.close().await;
            Ok(text)
        });
        for u in &built.updates {
            builder.send_update(u.clone()).await?;
            // keep echoes and acknowledgements drained
            while let Some(f) = builder.try_recv_frame() {
                if builder.process(f).await? == Event::Closed {
                    bail!("server closed the builder");
                }
            }
        }
        // drain the builder while the checker waits
        loop {
            tokio::select! {
                f = builder.recv_frame() => {
                    if builder.process(f).await? == Event::Closed { bail!("server closed the builder"); }
                }
                r = done_rx.changed() => { if r.is_err() || *done_rx.borrow() { break; } }
            }
        }
        let text = check.await.context("checker task")??;
        builder.close().await;
        if text != expected {
            bail!(
                "after building, the document holds {} chars, expected {}",
                text.chars().count(),
                expected.chars().count()
            );
        }
        run.build_s = Some(secs(t0.elapsed()));
    }
    run.restarted = restart(target).await?;
    let procs = target.processes()?;
    // warm: one client makes a change, and a second one sees it, before the storm
    let mut warm_clients = Vec::new();
    if warm {
        let addr = target.addr(doc)?;
        let log = Arc::new(SentLog::default());
        let mut confirmer =
            YClient::connect(&addr, &ccfg, log.clone(), 0, "confirmer".into(), false).await?;
        confirmer.keep_sync_payload = true;
        confirmer.wait_synced(SYNC_TIMEOUT).await?;
        confirmer.sync_payload = None;
        confirmer.recording = true;
        let mut writer = YClient::connect(&addr, &ccfg, log, 1, "writer".into(), true).await?;
        writer.wait_synced(SYNC_TIMEOUT).await?;
        writer.recording = true;
        let mark = format!("warm-{}|", seed % 1000);
        writer
            .edit(&[LocalEdit {
                pos: 0,
                del: 0,
                ins: &mark,
            }])
            .await?;
        expected = format!("{mark}{expected}");
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while counters.delivered.load(Ordering::SeqCst) < 1 {
            tokio::select! {
                r = tokio::time::timeout_at(deadline.into(), confirmer.next_event()) => match r {
                    Err(_) => bail!("the warm change did not arrive at a second client"),
                    Ok(r) => if r? == Event::Closed { bail!("server closed the confirmer") },
                },
                f = writer.recv_frame() => {
                    if writer.process(f).await? == Event::Closed { bail!("server closed the writer"); }
                }
            }
        }
        warm_clients.push(confirmer);
        warm_clients.push(writer);
    }
    let rss0 = procs.rss_bytes()?;
    run.rss_before_bytes = Some(rss0);
    let c0 = CpuMark::take(&target.processes()?)?;

    // ---- the storm
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);
    let joined = Joined::new();
    let received: Received = Arc::default();
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    let spread = Duration::from_secs_f64(cfg.spread_s);
    let wait = Duration::from_secs_f64(cfg.max_wait_s);
    for i in 0..storm.joiners {
        let addr: DocAddr = target.addr(doc)?;
        let ccfg = ccfg.clone();
        let mut ctl = ctl_rx.clone();
        let joined = joined.clone();
        let received = received.clone();
        let at = t0 + spread.mul_f64(i as f64 / storm.joiners as f64);
        set.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let started = Instant::now();
            let setup = async {
                let mut c = YClient::connect(
                    &addr,
                    &ccfg,
                    Arc::new(SentLog::default()),
                    0,
                    format!("joiner-{i}"),
                    true,
                )
                .await?;
                c.keep_sync_payload = true;
                c.wait_synced(wait).await?;
                Ok::<_, anyhow::Error>(c)
            };
            let mut c = match setup.await {
                Ok(c) => c,
                Err(e) => {
                    joined.refused(&e);
                    return Err(e);
                }
            };
            let took = c.synced_frame_at.unwrap_or_else(Instant::now) - started;
            joined.ok();
            // stay, as people do, until the storm is over
            let r = observe(&mut c, &mut ctl, Duration::from_secs_f64(STOCK_RENEW_S)).await;
            // The storm may be declared over between the state and the frames sent right
            // behind it (Debrief sends the state it shares among joiners, then the changes
            // made since): read what was sent before a presence query's answer.
            let r = match r {
                Ok(()) => c.drain_until_presence_answer(Duration::from_secs(3)).await,
                Err(e) => Err(e),
            };
            // what it holds: the state, and the updates that followed it
            let mut state = vec![c.sync_payload.take().unwrap_or_default()];
            state.append(&mut c.sync_tail);
            c.close().await;
            let hash = state
                .iter()
                .fold(0u64, |h, p| h.rotate_left(7) ^ payload_hash(p));
            if let Ok(mut r) = received.lock() {
                r.entry(hash).or_insert(Some(state));
            }
            r.map(|()| (took, hash))
        });
    }
    let settled = joined
        .wait(storm.joiners, wait + spread + Duration::from_secs(5))
        .await;
    run.storm_s = Some(secs(t0.elapsed()));
    let c1 = CpuMark::take(&target.processes()?)?;
    run.server_cpu_s = Some(secs(c1.server_since(&c0)));
    run.loadgen_cpu_s = Some(secs(c1.me_since(&c0)));
    run.peak_rss_bytes = procs.peak_rss_bytes().ok();
    run.rss_after_bytes = procs.rss_bytes().ok();
    ctl_tx.send(Phase::Done)?;
    let mut took = Vec::new();
    let mut hashes = Vec::new();
    let mut failed = 0u64;
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((t, h))) => {
                took.push(u32::try_from(t.as_micros()).unwrap_or(u32::MAX));
                hashes.push(h);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_err.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    for c in warm_clients {
        c.close().await;
    }
    settled?;
    // ---- what every joiner got: each distinct state received is decoded once
    let distinct: Vec<(u64, Vec<Vec<u8>>)> = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .drain()
        .filter_map(|(h, p)| p.map(|p| (h, p)))
        .collect();
    let mut good = HashMap::new();
    for (h, p) in distinct {
        run.state_bytes = Some(p.first().map_or(0, |s| s.len() as u64));
        let ok = match text_of(&p) {
            Ok(t) => t == expected,
            Err(_) => false,
        };
        good.insert(h, ok);
    }
    run.synced = took.len() as u64;
    run.complete = hashes
        .iter()
        .filter(|h| good.get(h).copied().unwrap_or(false))
        .count() as u64;
    run.failed = failed;
    run.time_to_synced = Latency::from_micros(took);
    if failed > 0 {
        run.notes.push(format!(
            "{failed} joiners failed; first: {}",
            first_err.unwrap_or_default()
        ));
    }
    if run.complete < storm.joiners as u64 {
        bail!(
            "{} of {} joiners hold the full document",
            run.complete,
            storm.joiners
        );
    }
    Ok(())
}

/// Synthesises a document of about `mb` MB (10^6 bytes as a Yjs update): passages of the
/// paper's text inserted at random places by one writer, merged into updates of ~1 MB.
pub fn build_doc(mb: f64, text: &str, seed: u64) -> Result<BuiltDoc> {
    let chars: Vec<char> = text.chars().filter(|c| (*c as u32) <= 0xFFFF).collect();
    if chars.is_empty() {
        bail!("no text to build a document from");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let target_bytes = (mb * 1e6) as usize;
    let mut txns = Vec::new();
    let mut len: u32 = 0;
    let mut approx = 0usize;
    while approx < target_bytes {
        let n = rng.gen_range(40..400usize);
        let from = rng.gen_range(0..chars.len());
        let ins: String = (0..n).map(|k| chars[(from + k) % chars.len()]).collect();
        let pos = if len == 0 { 0 } else { rng.gen_range(0..=len) };
        approx += ins.len() + 12;
        len += n as u32;
        txns.push(vec![crate::trace::Patch {
            pos,
            del: 0,
            ins_len: n as u32,
            ins,
        }]);
    }
    let client = 1 + (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33);
    let (updates, text) = crate::synth::encode_all(client, &txns);
    // merge runs of updates into ~1 MB updates: fewer, larger frames to build it with
    let mut merged = Vec::new();
    let mut group: Vec<&[u8]> = Vec::new();
    let mut size = 0usize;
    for u in &updates {
        group.push(u);
        size += u.len();
        if size >= 1 << 20 {
            merged.push(yrs::merge_updates_v1(group.drain(..)).context("merging updates")?);
            size = 0;
        }
    }
    if !group.is_empty() {
        merged.push(yrs::merge_updates_v1(group.drain(..)).context("merging updates")?);
    }
    Ok(BuiltDoc {
        mb,
        updates: merged,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_specs_parse() {
        let s = Storm::parse("4:150").expect("parses");
        assert_eq!((s.mb, s.joiners), (4.0, 150));
        let s = Storm::parse(" 0.5 : 20 ").expect("parses");
        assert_eq!((s.mb, s.joiners), (0.5, 20));
        let e = Storm::parse("4x150").expect_err("no colon");
        assert_eq!(
            format!("{e:#}"),
            "\"4x150\": expected MB:JOINERS, e.g. 4:150"
        );
        let e = Storm::parse("4:0").expect_err("no joiners");
        assert_eq!(format!("{e:#}"), "\"4:0\": MB and JOINERS must be positive");
    }

    #[test]
    fn a_built_document_has_its_size_and_text() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let d = build_doc(0.2, &text, 7).expect("builds");
        let doc = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Default::default()
        });
        let t = doc.get_or_insert_text(TEXT_NAME);
        for u in &d.updates {
            let u = Update::decode_v1(u).expect("decodes");
            doc.transact_mut().apply_update(u).expect("applies");
        }
        assert_eq!(t.get_string(&doc.transact()), d.text);
        let state = {
            use yrs::{ReadTxn, StateVector};
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        };
        assert!(
            (180_000..260_000).contains(&state.len()),
            "state of {} bytes for 0.2 MB",
            state.len()
        );
        assert_eq!(
            text_of(std::slice::from_ref(&state)).expect("decodes"),
            d.text
        );
        assert_eq!(payload_hash(&state), payload_hash(&state.clone()));
        let mut other = state.clone();
        other[state.len() / 2] ^= 1;
        assert_ne!(payload_hash(&state), payload_hash(&other));
    }
}
