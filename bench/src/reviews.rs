//! Scenario 12's setup: real reviews in the meeting phase, made through the review API the way
//! the browser app makes them, with sessions for the clients that write the notes and for those
//! that only watch. Debrief targets only (the other servers have no reviews).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::sync::Arc;

use crate::audience::STOCK_RENEW_S;
use crate::measure::Measurement;
use crate::scenarios::{typing_at, TypingCfg};
use crate::target::{DocAddr, Target};
use crate::trace::Trace;

/// Sockets one session may hold open at once (the server's `MAX_ATTACHMENTS_PER_SESSION`):
/// clients of one role share sessions up to this many each.
const SOCKETS_PER_SESSION: usize = 16;

/// How long one request of the setup may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Scenario 12's shape.
#[derive(Debug, Clone, Serialize)]
pub struct MeetingsCfg {
    /// Reviews in their meeting, at once.
    pub reviews: usize,
    /// Clients of each review that type into its notes (participants).
    pub writers: usize,
    /// Clients of each review that watch its notes (observers, read-only).
    pub observers: usize,
    /// Edits per second per writer.
    pub rate: f64,
    pub duration_s: f64,
    /// The same shape on documents outside reviews (no sessions), which a cluster spreads over
    /// its nodes document by document: the control the reviews are compared with.
    pub plain: bool,
}

/// Scenario 12: `reviews` meetings at once, each with `writers` participants typing into its
/// notes and `observers` watching them, clients spread over a cluster's nodes; or, with
/// `plain`, the same on documents outside reviews. Besides the figures of scenarios 1-3, a
/// cluster target reports each node's share of the CPU and which node served reviews.
pub async fn meetings(
    target: &mut Target,
    trace: Arc<Trace>,
    cfg: &MeetingsCfg,
    seed: u64,
) -> Result<Measurement> {
    if !target.kind.is_debrief() {
        bail!("reviews are Debrief's own: scenario 12 runs on the Debrief targets only");
    }
    let typing = TypingCfg {
        docs: cfg.reviews,
        clients_per_doc: cfg.writers + cfg.observers,
        rate: cfg.rate,
        duration_s: cfg.duration_s,
        initial_chars: 2000,
        awareness_every: 4,
        max_drain_s: 15.0,
        writers_per_doc: cfg.writers.max(1),
        renew_s: STOCK_RENEW_S,
        connect_concurrency: 64,
        measure_rss: false,
    };
    let target = &*target;
    let mut m = if cfg.plain {
        let tag = seed % 100_000;
        let seat = |d: usize, _k: usize| target.addr(&format!("meeting-{tag}-{d}"));
        typing_at(target, trace, &typing, seed, seat).await?
    } else {
        let meetings = open_meetings(target, cfg).await?;
        let seat = |d: usize, k: usize| meetings[d].seat(target, k, cfg.writers);
        typing_at(target, trace, &typing, seed, seat).await?
    };
    if target.kind.is_cluster() {
        m.review_node = review_node(target).await?;
    }
    Ok(m)
}

/// Which of a cluster's nodes says it serves reviews (`debrief_serves_reviews 1`).
async fn review_node(target: &Target) -> Result<Option<usize>> {
    for (i, node) in target.http_addrs().into_iter().enumerate() {
        let (status, metrics) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            request(node, "GET", "/metrics", None, "", [127, 0, 0, 1].into()),
        )
        .await
        .map_err(|_| anyhow!("GET /metrics on {node}: no answer in {REQUEST_TIMEOUT:?}"))??;
        if status != 200 {
            bail!("GET /metrics on {node}: {status}");
        }
        if metrics
            .lines()
            .any(|l| l.trim() == "debrief_serves_reviews 1")
        {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// One review in its meeting: the notes document and the tokens its clients present.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub notes: String,
    /// Participant sessions, each for at most [`SOCKETS_PER_SESSION`] writers.
    writers: Vec<String>,
    /// Observer sessions, each for at most [`SOCKETS_PER_SESSION`] observers.
    observers: Vec<String>,
}

impl Meeting {
    /// Where client `k` of the review connects: the first `writers` write, the rest watch.
    pub fn seat(&self, target: &Target, k: usize, writers: usize) -> Result<DocAddr> {
        let (token, read_only) = self.session(k, writers)?;
        target.session_addr(&self.notes, token, read_only)
    }

    /// The session client `k` presents, and whether it only reads.
    fn session(&self, k: usize, writers: usize) -> Result<(&str, bool)> {
        let (tokens, i, read_only) = if k < writers {
            (&self.writers, k, false)
        } else {
            (&self.observers, k - writers, true)
        };
        let token = tokens
            .get(i / SOCKETS_PER_SESSION)
            .ok_or_else(|| anyhow!("no session for client {k} of {}", self.notes))?;
        Ok((token, read_only))
    }
}

/// Creates `cfg.reviews` reviews through the nodes in turn, moves each to its meeting, and
/// joins the sessions its clients need. Every request names another client address in
/// `X-Forwarded-For` (the target trusts loopback's), so the limits on creations and joins per
/// address, meant for people, do not throttle the setup.
pub async fn open_meetings(target: &Target, cfg: &MeetingsCfg) -> Result<Vec<Meeting>> {
    let nodes = target.http_addrs();
    if nodes.is_empty() {
        bail!("{} is not running", target.kind.name());
    }
    let mut api = Api { nodes, sent: 0 };
    let mut meetings = Vec::with_capacity(cfg.reviews);
    for r in 0..cfg.reviews {
        let created = api
            .expect(
                201,
                "POST",
                "/api/reviews",
                None,
                json!({ "title": format!("Bench review {r}") }),
            )
            .await
            .context("creating a review")?;
        let id = text(&created, &["review", "id"])?;
        let invite = |role: &str| text(&created, &["invites", role, "token"]);
        let facilitator = api.join(&invite("facilitator")?, "Facilitator").await?;
        for phase in ["review", "meeting"] {
            api.expect(
                200,
                "POST",
                &format!("/api/reviews/{id}/phase"),
                Some(&facilitator),
                json!({ "phase": phase }),
            )
            .await
            .with_context(|| format!("moving review {id} to {phase}"))?;
        }
        let writers = api
            .sessions(&invite("participant")?, "participant", cfg.writers)
            .await?;
        let observers = api
            .sessions(&invite("observer")?, "observer", cfg.observers)
            .await?;
        meetings.push(Meeting {
            notes: format!("review.{id}.notes"),
            writers,
            observers,
        });
    }
    Ok(meetings)
}

/// The review API of a target's nodes, asked in turn.
struct Api {
    nodes: Vec<SocketAddr>,
    sent: u32,
}

impl Api {
    /// Joins with `invite` as `name`; the session's token.
    async fn join(&mut self, invite: &str, name: &str) -> Result<String> {
        let joined = self
            .expect(
                201,
                "POST",
                "/api/join",
                None,
                json!({ "invite": invite, "name": name }),
            )
            .await
            .context("joining a review")?;
        text(&joined, &["session"])
    }

    /// The sessions `clients` clients of `role` share, joined with `invite`.
    async fn sessions(&mut self, invite: &str, role: &str, clients: usize) -> Result<Vec<String>> {
        let mut tokens = Vec::new();
        for s in 0..clients.div_ceil(SOCKETS_PER_SESSION) {
            tokens.push(self.join(invite, &format!("{role} {s}")).await?);
        }
        Ok(tokens)
    }

    /// One request to the next node, which must answer `status`; the JSON body.
    async fn expect(
        &mut self,
        status: u16,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> Result<Value> {
        let node = self.nodes[self.sent as usize % self.nodes.len()];
        // 10.x.y.z, another for every request
        let client = std::net::Ipv4Addr::from(0x0A00_0000 | (self.sent & 0x00FF_FFFF));
        self.sent += 1;
        let (got, text) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            request(node, method, path, bearer, &body.to_string(), client),
        )
        .await
        .map_err(|_| anyhow!("{method} {path} on {node}: no answer in {REQUEST_TIMEOUT:?}"))??;
        if got != status {
            bail!("{method} {path} on {node}: {got} {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: body {text:?}"))
    }
}

/// The string at `path` in `v`.
fn text(v: &Value, path: &[&str]) -> Result<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {} in {v}", path.join(".")))
}

/// One HTTP/1.1 request with a JSON body on a connection of its own; the status and the body.
async fn request(
    node: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
    client: std::net::Ipv4Addr,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(node)
        .await
        .with_context(|| format!("connecting to {node}"))?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {node}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nX-Forwarded-For: {client}\r\n\
         {auth}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8(answer).context("an answer that is not UTF-8")?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("an answer without a head: {answer:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The body of a chunked answer.
fn dechunk(mut rest: &str) -> Result<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| anyhow!("a chunk without its size line"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("a chunk size")?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| anyhow!("a chunk cut short"))?;
        body.push_str(chunk);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or_else(|| anyhow!("a chunk without its end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_joined_and_a_cut_one_refused() {
        assert_eq!(
            dechunk("5\r\n{\"a\":\r\n3;x=1\r\n 1}\r\n0\r\n\r\n").expect("whole"),
            "{\"a\": 1}"
        );
        assert_eq!(dechunk("0\r\n\r\n").expect("empty"), "");
        assert!(dechunk("5\r\n{\"a\"").is_err(), "a chunk cut short");
        assert!(dechunk("zz\r\n").is_err(), "a size that is not hex");
        assert!(dechunk("2\r\nab").is_err(), "a chunk without its end");
    }

    #[test]
    fn clients_of_a_role_share_sessions_sixteen_sockets_each() {
        let meeting = Meeting {
            notes: "review.r.notes".into(),
            writers: vec!["w0".into()],
            observers: vec!["o0".into(), "o1".into(), "o2".into()],
        };
        let token = |k: usize| meeting.session(k, 5).expect("a session");
        assert_eq!(token(0), ("w0", false));
        assert_eq!(token(4), ("w0", false));
        assert_eq!(token(5), ("o0", true));
        assert_eq!(token(5 + 15), ("o0", true));
        assert_eq!(token(5 + 16), ("o1", true));
        assert_eq!(token(5 + 47), ("o2", true));
        assert!(
            meeting.session(5 + 48, 5).is_err(),
            "past the sessions joined"
        );
    }
}
