//! Webhooks (issue 20): a real HTTP receiver on loopback checks every delivery's signature;
//! deliveries are retried while the receiver is down, kept in order per review, delivered at
//! least once across `kill -9` of Debrief with the same event id, and posted in the Slack
//! format when asked; action items due soon and overdue are told when the injected clock says
//! so; bad requests get their exact errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use debrief_server::documents::peer::Credential;
use debrief_server::reviews::webhooks::clock::day_number;
use debrief_server::reviews::webhooks::{Clock, WebhookSettings};
use debrief_server::Config;
use debrief_tests::api::{request, Reply, Review};
use debrief_tests::{within, ChildServer, TestServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The admin's secret in tests that have one.
const ADMIN: &str = "the admin's secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn kind(&self) -> String {
        self.headers["x-debrief-event"].clone()
    }

    fn id(&self) -> String {
        self.headers["x-debrief-event-id"].clone()
    }

    /// Checks `X-Debrief-Signature` against `secret`, as a receiver would: HMAC-SHA256 over
    /// `<t>.<raw body>`, and `t` within five minutes of now.
    fn verify(&self, secret: &str) {
        let header = &self.headers["x-debrief-signature"];
        let (t, v1) = header
            .split_once(',')
            .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
            .unwrap_or_else(|| panic!("signature header {header:?}"));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.body);
        mac.verify_slice(&hex::decode(v1).expect("hex"))
            .unwrap_or_else(|_| panic!("the signature does not match the body"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let t: u64 = t.parse().expect("t is seconds");
        assert!(now.abs_diff(t) < 300, "t={t} is not now ({now})");
    }
}

/// What the receiver answers to one request: a status, or nothing at all (it holds the
/// connection open).
type Answer = Option<u16>;

/// How the receiver decides its answers; the test may change it.
type Decide = Arc<Mutex<Box<dyn FnMut(&Received) -> Answer + Send>>>;

/// A webhook receiver on loopback: hands each request to the test and answers as `decide` says.
struct Receiver {
    addr: SocketAddr,
    got: mpsc::Receiver<Received>,
    decide: Decide,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("an address")).await
    }

    async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind the receiver");
        let addr = listener.local_addr().expect("address");
        let (tx, got) = mpsc::channel(1000);
        let decide: Decide = Arc::new(Mutex::new(Box::new(|_| Some(200))));
        let deciding = decide.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let decide = deciding.clone();
                tokio::spawn(async move { serve(stream, tx, decide).await });
            }
        });
        Receiver {
            addr,
            got,
            decide,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn answer(&self, decide: impl FnMut(&Received) -> Answer + Send + 'static) {
        *self.decide.lock().expect("lock") = Box::new(decide);
    }

    async fn next(&mut self) -> Received {
        within("a webhook delivery", self.got.recv())
            .await
            .expect("the receiver runs")
    }

    /// Stops listening: connections are refused from now on.
    fn stop(self) -> SocketAddr {
        self.task.abort();
        self.addr
    }
}

async fn serve(mut stream: TcpStream, tx: mpsc::Sender<Received>, decide: Decide) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers["content-length"].parse().expect("a length");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let received = Received { headers, body };
    let answer = (decide.lock().expect("lock"))(&received);
    let _ = tx.send(received).await;
    match answer {
        Some(status) => {
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = stream.write_all(reply.as_bytes()).await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Retries a tenth of a second apart, so that tests wait for them without sleeping long.
fn quick() -> WebhookSettings {
    WebhookSettings {
        first_retry: Duration::from_millis(100),
        max_retry: Duration::from_millis(400),
        max_attempts: 100,
        timeout: Duration::from_secs(5),
        // The receivers of these tests are on loopback.
        allow_private: true,
        ..WebhookSettings::default()
    }
}

/// Sets the clock to `ms` and waits until the server's scan of due days at that time finished.
async fn move_clock(clock: &Clock, ms: u64) {
    clock.set(ms);
    within(
        "the scan of due days at the time set",
        clock.scanned_since(ms),
    )
    .await;
}

async fn start(secret: Option<&str>, clock: Clock) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        creation_secret: secret.map(Credential::new),
        webhooks: quick(),
        clock,
        ..Config::new(dir.path().join("data"))
    };
    TestServer::start_with(dir, config).await
}

/// Sets up a webhook for `review` as its facilitator; the answer.
async fn hook_for(review: &Review, url: &str, format: Option<&str>) -> Reply {
    let mut body = json!({ "review": review.id, "url": url });
    if let Some(f) = format {
        body["format"] = json!(f);
    }
    request(
        review.addr,
        "POST",
        "/api/webhooks",
        Some(&review.sessions["facilitator"]),
        Some(&body),
    )
    .await
}

/// The secret of a webhook that must have been set up.
fn secret_of(created: &Reply) -> String {
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["secret"].as_str().expect("secret").to_owned()
}

async fn add_action(review: &Review, what: &str, due: Option<&str>) -> String {
    let added = review
        .call(
            "author",
            "POST",
            "/actions",
            Some(json!({"what": what, "why": "the cause", "kind": "detect", "owner": "SRE", "due": due})),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    added.body["id"].as_str().expect("id").to_owned()
}

/// Waits until the review's only webhook lists attempts that satisfy `done`; returns them.
async fn attempts_until(review: &Review, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = format!("/api/webhooks?review={}", review.id);
    within("the webhook's attempts", async {
        loop {
            let listed = request(
                review.addr,
                "GET",
                &path,
                Some(&review.sessions["facilitator"]),
                None,
            )
            .await;
            assert_eq!(listed.status, 200, "{}", listed.body);
            let attempts = listed.body["webhooks"][0]["attempts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if done(&attempts) {
                return attempts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn every_event_of_a_review_arrives_signed_in_order() {
    let mut server = start(None, Clock::system()).await;
    let mut receiver = Receiver::start().await;
    let review = Review::create(server.addr, "Checkout outage").await;
    let secret = secret_of(&hook_for(&review, &receiver.url(), None).await);
    review.move_to("review").await;
    // Anonymous items are told to nobody: not even their count, here.
    let concern = review
        .call(
            "participant",
            "POST",
            "/concerns",
            Some(json!({ "body": "nobody reads the runbook" })),
        )
        .await;
    assert_eq!(concern.status, 202, "{}", concern.body);
    review.move_to("meeting").await;
    let action = add_action(&review, "Alert on queue depth", Some("2030-01-31")).await;
    let done = review
        .call(
            "participant",
            "PATCH",
            &format!("/actions/{action}"),
            Some(json!({"what": "Alert on queue depth", "why": "the cause", "kind": "detect", "owner": "SRE", "due": "2030-01-31", "status": "done"})),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    review.move_to("closed").await;
    review.publish().await;

    let mut seen = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..8 {
        let got = receiver.next().await;
        got.verify(&secret);
        let event = got.json();
        assert_eq!(event["id"], got.id(), "the header names the body's event");
        assert_eq!(event["type"], got.kind());
        assert_eq!(
            event["review"],
            json!({"id": review.id, "title": "Checkout outage"})
        );
        assert!(ids.insert(got.id()), "each event has its own id");
        let text = String::from_utf8_lossy(&got.body).into_owned();
        assert!(
            !text.contains("runbook") && !text.contains("participant person"),
            "{text}"
        );
        seen.push((got.kind(), event["data"].clone()));
    }
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "review.phase_changed",
            "review.report_ready",
            "review.phase_changed",
            "review.meeting_starting",
            "action.created",
            "action.done",
            "review.phase_changed",
            "review.published",
        ]
    );
    assert_eq!(seen[0].1, json!({"from": "draft", "to": "review"}));
    assert_eq!(seen[2].1, json!({"from": "review", "to": "meeting"}));
    assert_eq!(
        seen[4].1,
        json!({"action": {"id": action, "what": "Alert on queue depth", "owner": "SRE", "kind": "detect", "due": "2030-01-31", "status": "open", "link": null}})
    );
    assert_eq!(seen[5].1["action"]["status"], "done");
    assert_eq!(
        seen[7].1,
        json!({"link": format!("/library/{}", review.id)})
    );

    // The facilitator sees each attempt, newest first, and the secret never again.
    let attempts = attempts_until(&review, |a| a.len() == 8).await;
    assert!(attempts
        .iter()
        .all(|a| a["delivered"] == true && a["status"] == 200));
    assert_eq!(attempts[0]["event_type"], "review.published");
    let listed = request(
        server.addr,
        "GET",
        &format!("/api/webhooks?review={}", review.id),
        Some(&review.sessions["facilitator"]),
        None,
    )
    .await;
    assert!(!listed.body.to_string().contains(&secret));
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_the_event_once_it_is_up() {
    let mut server = start(None, Clock::system()).await;
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let addr = receiver.stop();
    let review = Review::create(server.addr, "Down receiver").await;
    let secret = secret_of(&hook_for(&review, &url, None).await);
    review.move_to("review").await;
    // Tried and refused at least twice, with the next retry announced…
    let attempts = attempts_until(&review, |a| a.len() >= 2).await;
    let failed = &attempts[0];
    assert_eq!(failed["delivered"], false);
    assert_eq!(failed["status"], Value::Null);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("could not connect")),
        "{failed}"
    );
    assert!(failed["next_retry"].as_u64().is_some());
    let event_id = failed["event_id"].as_str().expect("event id").to_owned();
    // …then the receiver comes back on the same port and gets it, with the same id, before the
    // event that followed it.
    let mut receiver = Receiver::start_on(addr).await;
    let first = receiver.next().await;
    first.verify(&secret);
    assert_eq!(first.id(), event_id);
    assert_eq!(first.kind(), "review.phase_changed");
    assert_eq!(receiver.next().await.kind(), "review.report_ready");
    let attempts = attempts_until(&review, |a| {
        a.first()
            .is_some_and(|a| a["delivered"] == true && a["event_type"] == "review.report_ready")
    })
    .await;
    assert!(attempts
        .iter()
        .any(|a| a["event_id"] == event_id.as_str() && a["delivered"] == true));
    server.stop().await;
}

#[tokio::test]
async fn a_review_waits_for_its_earlier_event_while_another_goes_on() {
    let mut server = start(None, Clock::system()).await;
    let mut receiver = Receiver::start().await;
    let first = Review::create(server.addr, "First").await;
    let other = Review::create(server.addr, "Other").await;
    let secrets: HashMap<String, String> = [
        (
            first.id.clone(),
            secret_of(&hook_for(&first, &receiver.url(), None).await),
        ),
        (
            other.id.clone(),
            secret_of(&hook_for(&other, &receiver.url(), None).await),
        ),
    ]
    .into();
    // The first review's first event is refused twice; the other review's are not.
    let refusals = Arc::new(Mutex::new(2));
    let first_id = first.id.clone();
    let left = refusals.clone();
    receiver.answer(move |r| {
        let mut left = left.lock().expect("lock");
        if r.json()["review"]["id"] == first_id.as_str() && *left > 0 {
            *left -= 1;
            Some(500)
        } else {
            Some(204)
        }
    });
    first.move_to("review").await;
    first.move_to("meeting").await;
    other.move_to("review").await;
    let mut of_first = Vec::new();
    let mut of_other = Vec::new();
    while of_first.len() < 6 || of_other.len() < 2 {
        let got = receiver.next().await;
        let event = got.json();
        got.verify(&secrets[event["review"]["id"].as_str().expect("review id")]);
        let kind = format!(
            "{} {}",
            got.kind(),
            event["data"]["to"].as_str().unwrap_or("")
        );
        if event["review"]["id"] == first.id.as_str() {
            of_first.push((got.id(), kind));
        } else {
            of_other.push((got.id(), kind));
        }
    }
    // The refused event was tried three times, with one id, and nothing of its review passed it.
    let kinds: Vec<&str> = of_first.iter().map(|(_, k)| k.trim()).collect();
    assert_eq!(
        kinds,
        [
            "review.phase_changed review",
            "review.phase_changed review",
            "review.phase_changed review",
            "review.report_ready",
            "review.phase_changed meeting",
            "review.meeting_starting",
        ]
    );
    assert!(of_first[..3].iter().all(|(id, _)| *id == of_first[0].0));
    let kinds: Vec<&str> = of_other.iter().map(|(_, k)| k.trim()).collect();
    assert_eq!(
        kinds,
        ["review.phase_changed review", "review.report_ready"]
    );
    assert_eq!(*refusals.lock().expect("lock"), 0);
    server.stop().await;
}

#[tokio::test]
async fn slack_and_mattermost_get_a_text_message() {
    let mut server = start(None, Clock::system()).await;
    let mut receiver = Receiver::start().await;
    let review = Review::create(server.addr, "Payments <EU> & more").await;
    let secret = secret_of(&hook_for(&review, &receiver.url(), Some("slack")).await);
    review.move_to("review").await;
    let got = receiver.next().await;
    got.verify(&secret);
    assert_eq!(got.kind(), "review.phase_changed");
    assert_eq!(
        got.json(),
        json!({"text": "*Payments &lt;EU&gt; &amp; more* moved from draft to review"})
    );
    assert_eq!(
        receiver.next().await.json(),
        json!({"text": "*Payments &lt;EU&gt; &amp; more*: the report is ready to read"})
    );
    server.stop().await;
}

/// Midnight UTC of a calendar day, in ms since the Unix epoch.
fn midnight(date: &str) -> u64 {
    day_number(date).expect("a day") as u64 * 86_400_000
}

#[tokio::test]
async fn due_soon_and_overdue_are_told_once_when_the_clock_says_so() {
    let clock = Clock::manual(midnight("2030-03-01") + 9 * 3_600_000);
    let mut server = start(None, clock.clone()).await;
    let mut receiver = Receiver::start().await;
    let review = Review::create(server.addr, "Cache stampede").await;
    let secret = secret_of(&hook_for(&review, &receiver.url(), None).await);
    review.move_to("review").await;
    let _ = (receiver.next().await, receiver.next().await);
    let due = add_action(&review, "Jitter the cache expiry", Some("2030-03-05")).await;
    add_action(&review, "Write the runbook", None).await;
    let created = receiver.next().await;
    assert_eq!(created.kind(), "action.created");
    assert_eq!(
        created.json()["at"],
        "2030-03-01T09:00:00.000Z",
        "events carry the clock's time"
    );
    assert_eq!(receiver.next().await.kind(), "action.created");

    // Two days before: nothing yet. The day before: due soon.
    // Two days before: nothing (the scan at that time has finished before the clock moves on,
    // so anything it told would arrive before the event below).
    move_clock(&clock, midnight("2030-03-03") + 3_600_000).await;
    move_clock(&clock, midnight("2030-03-04")).await;
    let soon = receiver.next().await;
    soon.verify(&secret);
    assert_eq!(soon.kind(), "action.due_soon");
    assert_eq!(soon.json()["data"]["action"]["id"], due.as_str());
    assert_eq!(soon.json()["data"]["action"]["due"], "2030-03-05");
    assert_eq!(soon.json()["at"], "2030-03-04T00:00:00.000Z");
    // On the day: nothing new. The day after: overdue, once however often the clock moves.
    move_clock(&clock, midnight("2030-03-05") + 12 * 3_600_000).await;
    move_clock(&clock, midnight("2030-03-06")).await;
    let overdue = receiver.next().await;
    assert_eq!(overdue.kind(), "action.overdue");
    assert_eq!(overdue.json()["data"]["action"]["id"], due.as_str());
    move_clock(&clock, midnight("2030-03-07")).await;
    move_clock(&clock, midnight("2030-04-01")).await;
    // The next event to arrive is the one made after those moves: nothing was told twice.
    review.move_to("meeting").await;
    assert_eq!(receiver.next().await.kind(), "review.phase_changed");

    // A done item is never overdue. (Moved from the action items page this time.)
    let late = add_action(&review, "Load-test the cache", Some("2030-04-03")).await;
    assert_eq!(receiver.next().await.kind(), "review.meeting_starting");
    assert_eq!(receiver.next().await.kind(), "action.created");
    let done = review
        .call(
            "participant",
            "POST",
            &format!("/actions/{late}/status"),
            Some(json!({"status": "done"})),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(receiver.next().await.kind(), "action.done");
    move_clock(&clock, midnight("2030-05-01")).await;
    review.move_to("closed").await;
    assert_eq!(receiver.next().await.kind(), "review.phase_changed");
    server.stop().await;
}

/// By default a webhook may not point at the server's own machine or a private network: whoever
/// may add one could otherwise make the server reach what only it can reach.
#[tokio::test]
async fn private_targets_need_the_operators_consent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = TestServer::start_with(dir, Config::new("")).await;
    let review = Review::create(server.addr, "Private").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.0.10/",
    ] {
        let refused = request(
            server.addr,
            "POST",
            "/api/webhooks",
            Some(&review.sessions["facilitator"]),
            Some(&json!({"review": review.id, "url": url})),
        )
        .await;
        assert_eq!(
            refused.assert_error(400, "private_url"),
            "the webhook URL points at this machine or a private network, which this server does not send to (its operator can allow it with --webhooks-allow-private)",
            "{url}"
        );
    }
    // A public one is taken; its path, a Slack URL's secret, is shown once, then shortened.
    let slack = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXX";
    let created = request(
        server.addr,
        "POST",
        "/api/webhooks",
        Some(&review.sessions["facilitator"]),
        Some(&json!({"review": review.id, "url": slack, "format": "slack"})),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["webhook"]["url"], slack);
    let listed = request(
        server.addr,
        "GET",
        &format!("/api/webhooks?review={}", review.id),
        Some(&review.sessions["facilitator"]),
        None,
    )
    .await;
    let urls: Vec<&Value> = listed.body["webhooks"]
        .as_array()
        .map(|l| l.iter().map(|h| &h["url"]).collect())
        .unwrap_or_default();
    assert_eq!(urls, [&json!("https://hooks.slack.com/services/…")]);
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_their_exact_errors() {
    let mut server = start(None, Clock::system()).await;
    let review = Review::create(server.addr, "Errors").await;
    let post = |bearer: Option<String>, body: Value| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "POST",
                "/api/webhooks",
                bearer.as_deref(),
                Some(&body),
            )
            .await
        }
    };
    let facilitator = Some(review.sessions["facilitator"].clone());
    for url in [
        "ftp://example.com/hook",
        "https://user:pw@example.com/",
        "not a url",
        "https://",
    ] {
        let bad = post(
            facilitator.clone(),
            json!({"review": review.id, "url": url}),
        )
        .await;
        assert_eq!(
            bad.assert_error(400, "invalid_url"),
            "the webhook URL is an http or https URL with a host, at most 2000 bytes, without credentials or spaces",
            "{url}"
        );
    }
    let long = format!("https://example.com/{}", "a".repeat(2000));
    post(
        facilitator.clone(),
        json!({"review": review.id, "url": long}),
    )
    .await
    .assert_error(400, "invalid_url");
    let bad = post(
        facilitator.clone(),
        json!({"review": review.id, "url": "https://example.com/", "format": "teams"}),
    )
    .await;
    assert_eq!(
        bad.assert_error(400, "invalid_format"),
        "format is \"json\" (the event as JSON) or \"slack\" (a text message for Slack or Mattermost)"
    );
    let bad = post(
        facilitator.clone(),
        json!({"review": review.id, "url": "https://example.com/", "secret": "mine"}),
    )
    .await;
    bad.assert_error(400, "invalid_json");
    let bad = post(
        Some(review.sessions["author"].clone()),
        json!({"review": review.id, "url": "https://example.com/"}),
    )
    .await;
    assert_eq!(
        bad.assert_error(403, "not_allowed"),
        "only the facilitator can do this; authors cannot"
    );
    let bad = post(
        None,
        json!({"review": review.id, "url": "https://example.com/"}),
    )
    .await;
    bad.assert_error(401, "missing_token");
    let bad = post(facilitator.clone(), json!({"url": "https://example.com/"})).await;
    assert_eq!(
        bad.assert_error(403, "admin_not_configured"),
        "webhooks for every review need the server's creation secret, and this server was started without one (--creation-secret); set up a webhook for one review instead"
    );
    for n in 0..5 {
        let ok = post(
            facilitator.clone(),
            json!({"review": review.id, "url": format!("https://example.com/{n}")}),
        )
        .await;
        assert_eq!(ok.status, 201, "{}", ok.body);
    }
    let bad = post(
        facilitator.clone(),
        json!({"review": review.id, "url": "https://example.com/6"}),
    )
    .await;
    assert_eq!(
        bad.assert_error(409, "too_many_webhooks"),
        "a review has at most 5 webhooks; remove one first"
    );
    let gone = request(
        server.addr,
        "DELETE",
        "/api/webhooks/wh_00000000000000000000000000000000",
        facilitator.as_deref(),
        None,
    )
    .await;
    assert_eq!(
        gone.assert_error(404, "unknown_webhook"),
        "no webhook has this id"
    );
    let listed = request(
        server.addr,
        "GET",
        "/api/webhooks?review=x&other=1",
        facilitator.as_deref(),
        None,
    )
    .await;
    listed.assert_error(400, "invalid_query");
    let listed = request(
        server.addr,
        "GET",
        "/api/webhooks",
        facilitator.as_deref(),
        None,
    )
    .await;
    listed.assert_error(403, "admin_not_configured");
    server.stop().await;
}

#[tokio::test]
async fn the_admin_hears_of_every_review_and_only_the_admin_sets_that_up() {
    let mut server = start(Some(ADMIN), Clock::system()).await;
    let mut receiver = Receiver::start().await;
    let wrong = request(
        server.addr,
        "POST",
        "/api/webhooks",
        Some("not the secret"),
        Some(&json!({ "url": receiver.url() })),
    )
    .await;
    assert_eq!(
        wrong.assert_error(401, "not_admin"),
        "webhooks for every review need the server's creation secret as `Authorization: Bearer <secret>`"
    );
    let created = request(
        server.addr,
        "POST",
        "/api/webhooks",
        Some(ADMIN),
        Some(&json!({ "url": receiver.url(), "format": "json" })),
    )
    .await;
    let secret = secret_of(&created);
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    let hook = created.body["webhook"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(created.body["webhook"]["review"], Value::Null);
    for title in ["One", "Two"] {
        let made = request(
            server.addr,
            "POST",
            "/api/reviews",
            Some(ADMIN),
            Some(&json!({ "title": title })),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let got = receiver.next().await;
        got.verify(&secret);
        assert_eq!(got.kind(), "review.created");
        assert_eq!(got.json()["review"]["title"], title);
        assert_eq!(got.json()["data"], json!({"phase": "draft"}));
    }
    // For one review, the admin's secret is checked too, and a review must exist.
    let missing = "0".repeat(32);
    let none = request(
        server.addr,
        "POST",
        "/api/webhooks",
        Some(ADMIN),
        Some(&json!({ "url": receiver.url(), "review": missing })),
    )
    .await;
    assert_eq!(
        none.assert_error(404, "unknown_review"),
        format!("no review has the id {missing:?}")
    );
    let listed = request(server.addr, "GET", "/api/webhooks", Some(ADMIN), None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["webhooks"].as_array().map(Vec::len), Some(1));
    assert!(!listed.body.to_string().contains(&secret));
    let removed = request(
        server.addr,
        "DELETE",
        &format!("/api/webhooks/{hook}"),
        Some("not the secret"),
        None,
    )
    .await;
    removed.assert_error(401, "not_admin");
    let removed = request(
        server.addr,
        "DELETE",
        &format!("/api/webhooks/{hook}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let listed = request(server.addr, "GET", "/api/webhooks", Some(ADMIN), None).await;
    assert_eq!(listed.body["webhooks"], json!([]));
    // Guessing the secret through a review's hooks meets the same limit as anywhere else.
    let mut limited = None;
    for _ in 0..50 {
        let guess = request(
            server.addr,
            "GET",
            &format!("/api/webhooks?review={missing}"),
            Some("a guess"),
            None,
        )
        .await;
        if guess.status == 429 {
            limited = Some(guess);
            break;
        }
        guess.assert_error(401, "invalid_token");
    }
    let limited = limited.expect("guesses of the secret are limited");
    assert_eq!(
        limited.assert_error(429, "rate_limited"),
        "too many wrong creation secrets from this address; wait before trying again"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_event_is_delivered_again_after_kill_9_with_the_same_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ChildServer::start_with(&data, &["--webhooks-allow-private"], None).await;
    let mut receiver = Receiver::start().await;
    // The receiver takes the first delivery and never answers it.
    receiver.answer(|_| None);
    let mut review = Review::create(server.addr, "Killed mid-delivery").await;
    let secret = secret_of(&hook_for(&review, &receiver.url(), None).await);
    review.move_to("review").await;
    let first = receiver.next().await;
    assert_eq!(first.kind(), "review.phase_changed");
    server.kill9().await;
    receiver.answer(|_| Some(200));
    let server = ChildServer::start_with(&data, &["--webhooks-allow-private"], None).await;
    review.addr = server.addr;
    let again = receiver.next().await;
    again.verify(&secret);
    assert_eq!(again.id(), first.id(), "the same event, with the same id");
    assert_eq!(again.body, first.body);
    assert_eq!(receiver.next().await.kind(), "review.report_ready");
    // And what the hook's owner sees survived too.
    let attempts = attempts_until(&review, |a| a.len() >= 2).await;
    assert!(attempts.iter().all(|a| a["delivered"] == true));
    assert!(server.terminate().await.success());
}
