//! Scenario 11, failover (issue 18): on a cluster target, clients on the surviving nodes write
//! to documents another node owns; that owner is killed with SIGKILL; every client reconnects
//! (after a short, jittered delay) until it is synced again. Measured: the time from the kill to
//! the first and to the last client synced, each client's reconnect-to-sync time, and the
//! confirmed updates the document lost (it must be none).
//!
//! Owns the scenario's clients and its bookkeeping of tokens; starting and killing nodes is the
//! target's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{ClientConfig, ClientStats, Counters, Event, SentLog, YClient};
use crate::measure::{FailoverRun, Latency, Measurement};
use crate::scenarios::{Phase, Ready};
use crate::target::{spread, Dialect, DocAddr, Target, CLUSTER_NODES};
use crate::trace::LocalEdit;

/// How long a client may take to connect and sync before the writing starts.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Quiet time after a Hocuspocus client's handshake before its acknowledgements are tracked,
/// so that the acknowledgement of the handshake's own SyncStep2 is not taken for an update's.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Serialize)]
pub struct FailoverCfg {
    /// Clients, all on the nodes that survive.
    pub clients: usize,
    /// Documents, all owned by the node that is killed.
    pub docs: usize,
    /// Updates per second per client.
    pub rate: f64,
    /// Seconds of writing before the kill.
    pub write_s: f64,
    /// A client waits this long, plus up to as much again at random, before each reconnect.
    pub reconnect_ms: u64,
    /// A client gives up reconnecting this long after the kill.
    pub max_wait_s: f64,
}

/// The node the cluster's documents are opened on first, and which is killed: the last one
/// started, so the first (which serves reviews) survives as it would in an operator's drill.
const OWNER: usize = CLUSTER_NODES - 1;

/// Where the `i`-th client goes: its document and its node. Nodes alternate fastest, so each
/// document has clients on every survivor.
pub fn placement(i: usize, docs: usize, survivors: usize) -> (usize, usize) {
    let survivors = survivors.max(1);
    ((i / survivors) % docs.max(1), spread(i, survivors))
}

/// The text an update of client `client` inserts: unique per update, so the loaded document
/// tells which survived; concurrent inserts at the end never split it.
fn token(client: usize, seq: u64) -> String {
    format!("<{client}.{seq}>")
}

/// The tokens in `text`.
fn tokens(text: &str) -> impl Iterator<Item = &str> + '_ {
    text.split_inclusive('>')
        .filter_map(|part| part.rfind('<').map(|at| &part[at..]))
        .filter(|t| t.ends_with('>'))
}

/// What one client saw.
#[derive(Debug, Default)]
struct Outcome {
    doc: usize,
    /// Tokens it sent, in order.
    sent: Vec<String>,
    /// Tokens confirmed before its connection ended: its own acknowledged ones (Hocuspocus),
    /// or other clients' it received (y-websocket: Debrief relays only what is committed).
    confirmed: Vec<String>,
    /// When its connection ended (None: it was never closed).
    closed_at: Option<Instant>,
    /// First reconnect attempt, and when it was synced again.
    reconnect_at: Option<Instant>,
    synced_at: Option<Instant>,
    attempts: u64,
    /// Why its first reconnect attempt failed, if it did.
    first_failure: Option<String>,
    error: Option<String>,
}

pub async fn failover(target: &mut Target, cfg: &FailoverCfg, seed: u64) -> Result<Measurement> {
    let mut m = Measurement::new(target.kind.name());
    if !target.kind.is_cluster() {
        m.notes
            .push("skipped: a failover needs a cluster target (debrief-cluster…)".into());
        return Ok(m);
    }
    let docs = cfg.docs.max(1);
    m.docs = docs as u64;
    m.clients = cfg.clients as u64;
    let by_ack = target.dialect() == Dialect::Hocuspocus;
    let ccfg = ClientConfig {
        dialect: target.dialect(),
        counters: Arc::new(Counters::default()),
    };
    let tag = seed % 100_000;
    let names: Vec<String> = (0..docs).map(|d| format!("failover-{tag}-{d}")).collect();
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Setup);

    let t_connect = Instant::now();
    // the owner: the first to load each document, holding it open with one opener
    let mut openers = JoinSet::new();
    for name in &names {
        let mut c = YClient::connect(
            &target.addr_on(name, OWNER)?,
            &ccfg,
            Arc::new(SentLog::default()),
            0,
            "opener".into(),
            false,
        )
        .await?;
        c.wait_synced(SETUP_TIMEOUT)
            .await
            .with_context(|| format!("opening {name} on node {OWNER}"))?;
        let mut ctl = ctl_rx.clone();
        openers.spawn(async move {
            // reads what it is sent until the owner dies or the run ends
            loop {
                tokio::select! {
                    f = c.recv_frame() => {
                        if !matches!(c.process(f).await, Ok(e) if e != Event::Closed) { return; }
                    }
                    r = ctl.changed() => if r.is_err() || *ctl.borrow() == Phase::Done { return; },
                }
            }
        });
    }

    let ready = Ready::new();
    let gate = Arc::new(Semaphore::new(64));
    let (out_tx, mut out_rx) = mpsc::channel::<Outcome>(cfg.clients.max(1));
    let mut set = JoinSet::new();
    for i in 0..cfg.clients {
        let (d, node) = placement(i, docs, OWNER);
        let addr = target.addr_on(&names[d], node)?;
        let ccfg = ccfg.clone();
        let ctl = ctl_rx.clone();
        let ready = ready.clone();
        let gate = gate.clone();
        let out = out_tx.clone();
        let cfg = cfg.clone();
        let cseed = seed ^ ((i as u64) << 16);
        set.spawn(async move {
            let setup = async {
                let _permit = gate.acquire().await?;
                let mut c = YClient::connect(
                    &addr,
                    &ccfg,
                    Arc::new(SentLog::default()),
                    0,
                    format!("client-{i}"),
                    true,
                )
                .await?;
                c.wait_synced(SETUP_TIMEOUT).await?;
                if by_ack {
                    settle(&mut c).await?;
                    c.track_acks = true;
                }
                Ok(c)
            };
            let c = ready.check(setup.await)?;
            ready.done();
            let mut o = Some(Outcome {
                doc: d,
                ..Default::default()
            });
            let r = client(c, &addr, &ccfg, ctl, &cfg, i, cseed, (&mut o, &out)).await;
            // a client that failed before it was synced again reports how far it got
            if let (Some(mut o), Err(e)) = (o, &r) {
                o.error = Some(format!("{e:#}"));
                let _ = out.send(o).await;
            }
            r
        });
    }
    drop(out_tx);
    ready
        .wait_for(cfg.clients, Duration::from_secs(300), &mut set)
        .await?;
    m.connect_s = Some(t_connect.elapsed().as_secs_f64());

    // ---- write, then kill -9 the owner
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(cfg.write_s);
    ctl_tx.send(Phase::Run { start, stop })?;
    tokio::time::sleep_until(stop.into()).await;
    let killed_at = target.kill_node(OWNER).await?;

    // ---- every client reports once synced again (or given up)
    let mut outcomes = Vec::new();
    let deadline = killed_at + Duration::from_secs_f64(cfg.max_wait_s) + Duration::from_secs(10);
    while outcomes.len() < cfg.clients {
        match tokio::time::timeout_at(deadline.into(), out_rx.recv()).await {
            Ok(Some(o)) => outcomes.push(o),
            Ok(None) => break,
            Err(_) => {
                m.notes.push(format!(
                    "{} clients did not report {:.0} s after the kill",
                    cfg.clients - outcomes.len(),
                    secs(deadline - killed_at)
                ));
                break;
            }
        }
    }

    // ---- what the documents hold now, loaded through a survivor
    let mut texts = Vec::new();
    for name in &names {
        texts.push(load(&target.addr_on(name, 0)?, &ccfg).await?);
    }
    let _ = ctl_tx.send(Phase::Done);
    crate::scenarios::join_all(&mut set, &mut m).await;
    // clients that reported only once the run was done (never closed, or given up late)
    while let Ok(o) = out_rx.try_recv() {
        outcomes.push(o);
    }
    openers.abort_all();
    while openers.join_next().await.is_some() {}

    m.failover = Some(summarize(&outcomes, &texts, killed_at, by_ack));
    Ok(m)
}

/// Handles frames until none came for [`SETTLE`].
async fn settle(c: &mut YClient) -> Result<()> {
    loop {
        match tokio::time::timeout(SETTLE, c.recv_frame()).await {
            Err(_) => return Ok(()),
            Ok(f) => {
                if c.process(f).await? == Event::Closed {
                    bail!("server closed the connection");
                }
            }
        }
    }
}

/// One client: writes from the start of the run until its connection ends, then reconnects
/// until synced, reports its outcome (taken out of `report.0`) on `report.1`, and stays
/// connected until the run is done.
#[allow(clippy::too_many_arguments)]
async fn client(
    mut c: YClient,
    addr: &DocAddr,
    ccfg: &ClientConfig,
    mut ctl: watch::Receiver<Phase>,
    cfg: &FailoverCfg,
    me: usize,
    seed: u64,
    report: (&mut Option<Outcome>, &mpsc::Sender<Outcome>),
) -> Result<ClientStats> {
    let (slot, out) = report;
    let o = slot
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no outcome to fill"))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let interval = 1.0 / cfg.rate.max(1e-6);
    let mut next: Option<Instant> = None;
    // ---- write until the connection ends
    let ended = loop {
        let phase = *ctl.borrow_and_update();
        let due = match phase {
            Phase::Done => break false,
            Phase::Setup => None,
            Phase::Run { start, .. } => Some(*next.get_or_insert_with(|| {
                start + Duration::from_secs_f64(rng.gen_range(0.0..interval))
            })),
        };
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            f = c.recv_frame() => {
                if !matches!(c.process(f).await, Ok(e) if e != Event::Closed) { break true; }
            }
            _ = tokio::time::sleep_until(due.unwrap_or(far).into()), if due.is_some() => {
                let t = token(me, o.sent.len() as u64);
                let pos = c.text_len();
                if c.edit(&[LocalEdit { pos, del: 0, ins: &t }]).await.is_err() {
                    o.sent.push(t);
                    break true;
                }
                o.sent.push(t);
                let at = due.unwrap_or_else(Instant::now)
                    + Duration::from_secs_f64(interval * rng.gen_range(0.5..1.5));
                next = Some(at.max(Instant::now()));
            }
            r = ctl.changed() => { r?; }
        }
    };
    if !ended {
        bail!("its connection was not closed by the owner's death");
    }
    o.closed_at = Some(Instant::now());
    o.confirmed = if c.track_acks {
        let acked = usize::try_from(c.tracked_acks).unwrap_or(usize::MAX);
        o.sent.iter().take(acked).cloned().collect()
    } else {
        let own = format!("<{me}.");
        tokens(&c.text_string())
            .filter(|t| !t.starts_with(&own))
            .map(str::to_owned)
            .collect()
    };
    drop(c);

    // ---- reconnect until synced
    let closed_at = o.closed_at.unwrap_or_else(Instant::now);
    let give_up = closed_at + Duration::from_secs_f64(cfg.max_wait_s);
    let mut last_err = None;
    let mut again = loop {
        let jitter = rng.gen_range(0..=cfg.reconnect_ms);
        tokio::time::sleep(Duration::from_millis(cfg.reconnect_ms + jitter)).await;
        let now = Instant::now();
        if now >= give_up {
            bail!(
                "not synced again after {} attempts: {}",
                o.attempts,
                last_err.unwrap_or_default()
            );
        }
        o.reconnect_at.get_or_insert(now);
        o.attempts += 1;
        let attempt = async {
            let mut c = YClient::connect(
                addr,
                ccfg,
                Arc::new(SentLog::default()),
                0,
                format!("client-{me}"),
                true,
            )
            .await?;
            c.wait_synced(give_up - now).await?;
            Ok::<_, anyhow::Error>(c)
        };
        match attempt.await {
            Ok(c) => break c,
            Err(e) => {
                let e = format!("{e:#}");
                o.first_failure.get_or_insert_with(|| {
                    format!(
                        "{e} ({:.0} ms after its socket closed)",
                        secs(now - closed_at) * 1e3
                    )
                });
                last_err = Some(e);
            }
        }
    };
    o.synced_at = Some(Instant::now());
    if let Some(o) = slot.take() {
        let _ = out.send(o).await;
    }
    // ---- stay, as people do, until the run is done
    loop {
        if *ctl.borrow_and_update() == Phase::Done {
            break;
        }
        tokio::select! {
            f = again.recv_frame() => {
                if !matches!(again.process(f).await, Ok(e) if e != Event::Closed) { break; }
            }
            r = ctl.changed() => { if r.is_err() { break; } }
        }
    }
    Ok(again.close().await)
}

/// A fresh client's text of the document at `addr`.
async fn load(addr: &DocAddr, ccfg: &ClientConfig) -> Result<String> {
    let mut c = YClient::connect(
        addr,
        ccfg,
        Arc::new(SentLog::default()),
        0,
        "loader".into(),
        false,
    )
    .await?;
    c.wait_synced(SETUP_TIMEOUT)
        .await
        .with_context(|| format!("loading {} after the failover", addr.doc))?;
    let text = c.text_string();
    c.close().await;
    Ok(text)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn summarize(
    outcomes: &[Outcome],
    texts: &[String],
    killed_at: Instant,
    by_ack: bool,
) -> FailoverRun {
    let present: Vec<HashSet<&str>> = texts.iter().map(|t| tokens(t).collect()).collect();
    let mut confirmed: Vec<HashSet<&str>> = vec![HashSet::new(); texts.len()];
    let mut sent: Vec<HashSet<&str>> = vec![HashSet::new(); texts.len()];
    let mut run = FailoverRun {
        confirmed_by: if by_ack {
            "server ack (SyncStatus 1)".into()
        } else {
            "another client received it".into()
        },
        ..Default::default()
    };
    let mut resync_us = Vec::new();
    let mut synced_at = Vec::new();
    for o in outcomes {
        if let Some(s) = sent.get_mut(o.doc) {
            s.extend(o.sent.iter().map(String::as_str));
        }
        if let Some(c) = confirmed.get_mut(o.doc) {
            c.extend(o.confirmed.iter().map(String::as_str));
        }
        run.closed += u64::from(o.closed_at.is_some());
        run.attempts += o.attempts;
        match (o.reconnect_at, o.synced_at) {
            (Some(a), Some(b)) => {
                run.synced_again += 1;
                resync_us.push(u32::try_from((b - a).as_micros()).unwrap_or(u32::MAX));
                synced_at.push(b);
            }
            _ => run.failed += 1,
        }
        if let Some(e) = &o.error {
            run.first_error.get_or_insert_with(|| e.clone());
        }
        if let Some(e) = &o.first_failure {
            run.retried += 1;
            run.first_retry_reason.get_or_insert_with(|| e.clone());
        }
    }
    for d in 0..texts.len() {
        run.sent += sent[d].len() as u64;
        run.confirmed += confirmed[d].len() as u64;
        run.lost += confirmed[d].difference(&present[d]).count() as u64;
        run.unconfirmed_present += sent[d]
            .iter()
            .filter(|t| !confirmed[d].contains(*t) && present[d].contains(*t))
            .count() as u64;
    }
    let ms = |t: &Instant| secs(t.saturating_duration_since(killed_at)) * 1e3;
    run.first_synced_ms = synced_at.iter().min().map(ms);
    run.last_synced_ms = synced_at.iter().max().map(ms);
    run.resync = Latency::from_micros(resync_us);
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_has_clients_on_every_survivor_and_none_on_the_owner() {
        let survivors = OWNER;
        let mut seen = HashSet::new();
        for i in 0..60 {
            let (doc, node) = placement(i, 6, survivors);
            assert!(node < survivors, "client {i} on node {node}");
            seen.insert((doc, node));
        }
        assert_eq!(seen.len(), 6 * survivors);
    }

    #[test]
    fn tokens_are_found_whole_between_others_and_text() {
        let text = format!("ab{}{}x<y{}", token(3, 0), token(12, 7), token(3, 1));
        let found: Vec<&str> = tokens(&text).collect();
        assert_eq!(found, ["<3.0>", "<12.7>", "<3.1>"]);
    }
}
