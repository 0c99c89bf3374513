//! Delivering webhook events: the body in the hook's format, the signature, one HTTP/1.1 POST
//! over TCP or TLS, and the task that takes deliveries from the outbox in order and retries them.
//!
//! The signature follows Stripe's scheme: `X-Debrief-Signature: t=<unix seconds>,v1=<hex>`, where
//! the hex is HMAC-SHA256, keyed with the hook's secret (the whole `whsec_…` string), over
//! `<t>.<body>`. A receiver recomputes it over the raw body and refuses an old `t`.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Event, EventType, Format, HookRecord, Webhooks};
use crate::reviews::basics::now_ms;
use crate::reviews::urls::{self, WebUrl};

/// Most bytes of a receiver's answer that are read (and dropped).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The `X-Debrief-Signature` value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body posted for `event` in `format`.
pub fn body(event: &Event, format: Format) -> Vec<u8> {
    let value = match format {
        Format::Json => serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        Format::Slack => serde_json::json!({ "text": slack_text(event) }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// One line for a chat channel. Slack and Mattermost read `&`, `<` and `>` as markup, so they
/// are escaped in everything people typed.
pub fn slack_text(event: &Event) -> String {
    let title = escape(&event.review.title);
    let str_of = |key: &str| event.data[key].as_str().map(escape).unwrap_or_default();
    let action = || {
        let a = &event.data["action"];
        let what = a["what"].as_str().map(escape).unwrap_or_default();
        let owner = a["owner"].as_str().map(escape).unwrap_or_default();
        let due = a["due"].as_str().map(escape);
        (what, owner, due)
    };
    match event.kind {
        EventType::ReviewCreated => format!("New post-mortem review: *{title}*"),
        EventType::PhaseChanged => format!(
            "*{title}* moved from {} to {}",
            str_of("from"),
            str_of("to")
        ),
        EventType::ReportReady => format!("*{title}*: the report is ready to read"),
        EventType::MeetingStarting => format!("*{title}*: the review meeting is starting"),
        EventType::ActionCreated => {
            let (what, owner, due) = action();
            let due = due.map(|d| format!(", due {d}")).unwrap_or_default();
            format!("*{title}*: new action item “{what}” (owner: {owner}{due})")
        }
        EventType::ActionDueSoon => {
            let (what, owner, due) = action();
            format!(
                "*{title}*: action item “{what}” (owner: {owner}) is due on {}",
                due.unwrap_or_default()
            )
        }
        EventType::ActionOverdue => {
            let (what, owner, due) = action();
            format!(
                "*{title}*: action item “{what}” (owner: {owner}) was due on {} and is not done",
                due.unwrap_or_default()
            )
        }
        EventType::ActionDone => {
            let (what, owner, _) = action();
            format!("*{title}*: action item “{what}” (owner: {owner}) is done")
        }
        EventType::Published => format!("*{title}* was published in the library"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// TLS settings for every delivery: Mozilla's root certificates, built in.
pub(crate) static TLS: LazyLock<Option<Arc<rustls::ClientConfig>>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // ring rather than aws-lc-rs, which needs CMake to build; rustls marks ring's provider
    // deprecated only because it has no post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
});

/// Posts `body` to `url` with `headers`; the answer's status, or why there is none. Reads at
/// most [`MAX_ANSWER_BYTES`] of the answer and follows no redirect. Unless `private` allows it,
/// sends only to public addresses: a name is looked up here and the connection goes to the
/// address that was checked, so a name that changes its answer between a check and a connection
/// cannot lead elsewhere.
pub async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
    private: bool,
) -> Result<u16, String> {
    let target = WebUrl::parse(url).ok_or_else(|| "the URL is not valid".to_owned())?;
    match tokio::time::timeout(timeout, post_to(&target, headers, body, private)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {} seconds",
            timeout.as_secs_f64()
        )),
    }
}

/// The addresses `target` may be sent to, in the order the lookup gave them.
async fn addresses(target: &WebUrl, private: bool) -> Result<Vec<SocketAddr>, String> {
    if !private && urls::local_name(&target.host) {
        return Err(PRIVATE_TARGET.to_owned());
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|_| format!("the host {} could not be looked up", target.host))?
        .collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| private || urls::public_address(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(if found.is_empty() {
            format!("the host {} has no address", target.host)
        } else {
            PRIVATE_TARGET.to_owned()
        });
    }
    Ok(allowed)
}

/// Why a delivery to this machine or a private network was not sent.
const PRIVATE_TARGET: &str = "not sent: the host is this machine or on a private network, which \
     this server does not send to (its operator can allow it with --webhooks-allow-private)";

async fn post_to(
    target: &WebUrl,
    headers: &[(&str, String)],
    body: Vec<u8>,
    private: bool,
) -> Result<u16, String> {
    let mut last = String::new();
    let mut connected = None;
    for addr in addresses(target, private).await? {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                connected = Some(tcp);
                break;
            }
            Err(e) => last = format!("could not connect: {}", e.kind()),
        }
    }
    let tcp = connected.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    if target.tls {
        let config = TLS
            .clone()
            .ok_or_else(|| "TLS is not available".to_owned())?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| "the host is not a valid TLS server name".to_owned())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS failed: {e}"))?;
        exchange(TokioIo::new(tls), target, headers, body).await
    } else {
        exchange(TokioIo::new(tcp), target, headers, body).await
    }
}

async fn exchange<IO>(
    io: IO,
    target: &WebUrl,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP failed: {e}"))?;
    // The connection's task ends with this exchange however it ends: answered, failed, timed
    // out (the caller drops this future) or cut short by shutdown.
    let _driving = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut request = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "Debrief-Webhooks/1");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("the request could not be made: {e}"))?;
    let result = async {
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP failed: {e}"))?;
        let status = answer.status().as_u16();
        // Read what a receiver sends back, up to a bound, so that it sees a clean exchange.
        let mut answer = answer.into_body();
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match answer.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        Ok(status)
    }
    .await;
    result
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Posts one delivery, signed with its hook's secret.
async fn attempt(
    delivery: &Delivery,
    hook: &HookRecord,
    timeout: Duration,
    private: bool,
) -> Result<u16, String> {
    let body = body(&delivery.event, hook.format);
    let t = now_ms() / 1000;
    let headers = [
        ("X-Debrief-Signature", signature(&hook.secret, t, &body)),
        ("X-Debrief-Event-Id", delivery.event.id.clone()),
        ("X-Debrief-Event", delivery.event.kind.as_str().to_owned()),
    ];
    post(&hook.url, &headers, body, timeout, private).await
}

/// A lane (hook and review), and what became of its delivery `u64`.
type Finished = (u64, (String, String), Result<u16, String>);

/// Delivers what the outbox holds until `shutdown`: the first waiting delivery of each hook and
/// review at a time, at most `settings.concurrency` at once. A delivery under way when the
/// server stops is abandoned and tried again after the restart (at least once).
pub async fn deliver_loop(webhooks: Arc<Webhooks>, shutdown: CancellationToken) {
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut lanes: Vec<(String, String)> = Vec::new();
    loop {
        let room = webhooks.settings.concurrency.saturating_sub(running.len());
        let (start, next) = webhooks.due(now_ms(), room);
        for (seq, delivery, hook) in start {
            let timeout = webhooks.settings.timeout;
            let private = webhooks.settings.allow_private;
            let lane = (delivery.hook.clone(), delivery.event.review.id.clone());
            lanes.push(lane.clone());
            running.spawn(async move {
                let outcome = attempt(&delivery, &hook, timeout, private).await;
                (seq, lane, outcome)
            });
        }
        let wait = next.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = webhooks.added.notified() => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((seq, lane, outcome)) = done {
                    lanes.retain(|l| *l != lane);
                    webhooks.finished(seq, &lane, outcome);
                }
            }
            () = sleep_or_forever(wait) => {}
        }
    }
    running.abort_all();
    for lane in lanes {
        webhooks.abandoned(&lane);
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_time_and_body() {
        // RFC 4231's second test case, with the time and the dot as part of the message.
        let sig = signature("Jefe", 1, b"what do ya want for nothing?");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"1.what do ya want for nothing?");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1,v1={expected}"));
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn slack_text_escapes_what_people_typed() {
        let clock = super::super::Clock::manual(0);
        let event = Event::new(
            &clock,
            EventType::ActionOverdue,
            "r1",
            "Checkout <down> & out",
            serde_json::json!({"action": {"what": "Add <alerts>", "owner": "SRE", "due": "2026-01-02"}}),
        );
        assert_eq!(
            slack_text(&event),
            "*Checkout &lt;down&gt; &amp; out*: action item “Add &lt;alerts&gt;” (owner: SRE) was due on 2026-01-02 and is not done"
        );
        let posted: serde_json::Value =
            serde_json::from_slice(&body(&event, Format::Slack)).expect("JSON");
        assert_eq!(posted.as_object().map(|o| o.len()), Some(1));
    }
}
