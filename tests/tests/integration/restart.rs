//! Restarts in the middle of reviews (issue 16): the real binary on one data directory, stopped
//! cleanly (SIGTERM) or killed (`kill -9`) between steps, and every step checked to work again
//! afterwards with everything done before it still there.

use std::path::PathBuf;

use base64::Engine;
use debrief_tests::api::{Reply, Review};
use debrief_tests::{ChildServer, Client};
use serde_json::{json, Value};
use tempfile::TempDir;
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlOut, XmlTextPrelim};
use yrs::types::ToJson;
use yrs::updates::encoder::Encode;
use yrs::{Assoc, Doc, GetString, IndexedSequence, ReadTxn, Transact};

/// The report's fragment (`docs/schema.md`).
const FRAGMENT: &str = "default";

/// How a restart ends the running server.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGTERM: sockets closed, store flushed and compacted, exit 0.
    Clean,
    /// SIGKILL: whatever was acknowledged must be there after the restart.
    Kill9,
}

/// The real binary on one data directory, restarted on demand.
struct Restarting {
    _dir: TempDir,
    data: PathBuf,
    args: Vec<String>,
    server: Option<ChildServer>,
}

impl Restarting {
    async fn start(args: &[&str]) -> Restarting {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let server = ChildServer::start_with(&data, args, None).await;
        serving_reviews(&server, args).await;
        Restarting {
            _dir: dir,
            data,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            server: Some(server),
        }
    }

    fn server(&self) -> &ChildServer {
        self.server.as_ref().expect("the server runs")
    }

    /// Stops the server the way `stop` says, starts it again on the same data, and points
    /// `review` at the new address.
    async fn restart(&mut self, stop: Stop, review: &mut Review) {
        let server = self.server.take().expect("the server runs");
        match stop {
            Stop::Clean => {
                let status = server.terminate().await;
                assert!(status.success(), "a clean stop exits 0: {status}");
            }
            Stop::Kill9 => server.kill9().await,
        }
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let server = ChildServer::start_with(&self.data, &args, None).await;
        serving_reviews(&server, &args).await;
        review.addr = server.addr;
        self.server = Some(server);
    }

    async fn terminate(mut self) {
        if let Some(server) = self.server.take() {
            assert!(server.terminate().await.success());
        }
    }
}

/// A y-websocket client of one of the review's documents as `role`, synced.
async fn open(review: &Review, kind: &str, role: &str) -> Client {
    let url = format!(
        "ws://{}/ws/{}?token={}",
        review.addr,
        review.doc(kind),
        review.sessions[role]
    );
    let mut client = Client::connect(&url).await;
    client.wait_synced().await;
    client
}

/// The `report` or `notes` document as `role` reads it: the text of each top-level node.
async fn doc_lines(review: &Review, kind: &str, role: &str) -> Vec<String> {
    let client = open(review, kind, role).await;
    let fragment = client.doc.get_or_insert_xml_fragment(FRAGMENT);
    let txn = client.doc.transact();
    let lines = fragment
        .children(&txn)
        .map(|n| match n {
            XmlOut::Element(e) => e
                .children(&txn)
                .map(|c| match c {
                    XmlOut::Text(t) => t.get_string(&txn),
                    _ => String::new(),
                })
                .collect(),
            _ => String::new(),
        })
        .collect();
    drop(txn);
    client.close().await;
    lines
}

/// An anchor around `text` in the report as `role`'s freshly loaded client encodes it (base64
/// of Yjs relative positions), with the quote: what the browser sends for a selection.
async fn anchor_on(review: &Review, role: &str, text: &str) -> Value {
    let client = open(review, "report", role).await;
    let fragment = client.doc.get_or_insert_xml_fragment(FRAGMENT);
    let anchor = {
        let txn = client.doc.transact();
        let (t, at) = fragment
            .children(&txn)
            .find_map(|n| {
                let XmlOut::Element(e) = n else { return None };
                let Some(XmlOut::Text(t)) = e.get(&txn, 0) else {
                    return None;
                };
                let at = t.get_string(&txn).find(text)?;
                Some((t, at as u32))
            })
            .unwrap_or_else(|| panic!("{text:?} is in the report"));
        let b64 =
            |p: yrs::StickyIndex| base64::engine::general_purpose::STANDARD.encode(p.encode_v1());
        let start = t.sticky_index(&txn, at, Assoc::After).expect("start");
        let end = t
            .sticky_index(&txn, at + text.len() as u32, Assoc::Before)
            .expect("end");
        json!({ "start": b64(start), "end": b64(end), "quote": text })
    };
    client.close().await;
    anchor
}

/// Posts an anchored comment as `role`; the reply.
async fn comment_on(review: &Review, role: &str, anchor: &Value, body: &str) -> Reply {
    review
        .call(
            role,
            "POST",
            "/threads",
            Some(json!({ "body": body, "anchor": anchor })),
        )
        .await
}

/// Issue 16: after any restart, every comment on selected text in a review that existed before
/// it was refused with 422 `anchor_not_in_report` (the reloaded report's root type was not
/// known as XML to the anchor check).
#[tokio::test]
async fn anchored_comments_work_after_a_clean_stop_and_after_kill_9() {
    anchored_comments_across_restarts(&[]).await;
}

/// The same review on PostgreSQL (issue 18): created, joined, commented on and moved to the
/// review phase, then stopped cleanly and killed, and everything still there each time.
#[tokio::test]
async fn a_review_in_postgres_survives_clean_stops_and_kill_9() {
    let db = debrief_tests::postgres::TestDb::create().await;
    let url = db.url();
    anchored_comments_across_restarts(&["--postgres", &url]).await;
    let stored = db
        .query("SELECT count(*) FROM meta WHERE tree = 'reviews'")
        .await;
    assert_eq!(stored, vec!["2"], "both reviews are rows of the database");
}

/// The same review on the lone node of a cluster (issue 18): the review role it held is handed
/// over at SIGTERM and lapses after `kill -9`; each time it starts again the node takes the role
/// back and serves the review from the database, with every comment and the phase.
#[tokio::test]
async fn a_review_on_a_cluster_node_survives_clean_stops_and_kill_9() {
    let backend = debrief_tests::postgres::Backend::cluster().await;
    let mut args = backend.args();
    args.extend(["--cluster-lease-ms".to_owned(), "2000".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    anchored_comments_across_restarts(&args).await;
}

/// On a node of a cluster, waits until it serves reviews (after `kill -9` it takes the review
/// role back once its earlier lease lapsed).
async fn serving_reviews(server: &ChildServer, args: &[&str]) {
    if args.contains(&"--cluster-listen") {
        server
            .wait_metric("debrief_serves_reviews", |served| served == 1)
            .await;
    }
}

/// Comments, anchored and general, in a review that the server restarts under (started with
/// `args`); after every restart the phase and every comment made before are still there.
async fn anchored_comments_across_restarts(args: &[&str]) {
    let mut run = Restarting::start(args).await;
    let mut review = Review::create(run.server().addr, "Anchors after restarts").await;
    append_paragraph(&review, "report", "author", "Two or three causes.").await;
    review.move_to("review").await;
    let before = anchor_on(&review, "author", "Two or three").await;
    let made = comment_on(&review, "participant", &before, "Before any restart").await;
    assert_eq!(made.status, 201, "{}", made.body);

    let mut made_so_far = 1;
    for stop in [Stop::Clean, Stop::Kill9, Stop::Clean] {
        run.restart(stop, &mut review).await;
        assert_eq!(phase(&review).await, "review", "after {stop:?}");
        let kept = comments(&discussion(&review).await);
        assert_eq!(
            kept.len(),
            made_so_far,
            "every comment is still there after {stop:?}"
        );
        // From a page loaded after the restart, on text nobody touched, for every commenter;
        // and an anchor made before the restart still points into the same report.
        let fresh = anchor_on(&review, "participant", "Two or three").await;
        assert_eq!(fresh, before, "the same text gives the same positions");
        for role in ["facilitator", "author", "participant"] {
            let made = comment_on(&review, role, &fresh, &format!("{role} after {stop:?}")).await;
            assert_eq!(made.status, 201, "{role} after {stop:?}: {}", made.body);
            made_so_far += 1;
        }
    }
    // A general comment worked all along, and still does; an anchor into another review's
    // report is still refused.
    let general = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "general" })),
        )
        .await;
    assert_eq!(general.status, 201, "{}", general.body);
    let other = Review::create(run.server().addr, "Other").await;
    append_paragraph(&other, "report", "author", "Two or three causes.").await;
    let foreign = anchor_on(&other, "author", "Two or three").await;
    comment_on(&review, "participant", &foreign, "elsewhere")
        .await
        .assert_error(422, "anchor_not_in_report");
    run.terminate().await;
}

/// The discussion document's roots as `role` sees them: threads, concerns, actions, meeting.
fn discussion_of(doc: &Doc) -> Value {
    let txn = doc.transact();
    let root = |name: &str| {
        txn.get_map(name)
            .map(|m| serde_json::to_value(m.to_json(&txn)).expect("json"))
            .unwrap_or(Value::Null)
    };
    json!({
        "threads": root("threads"),
        "concerns": root("concerns"),
        "actions": root("actions"),
        "meeting": root("meeting"),
    })
}

/// Waits until the discussion, as the observer reads it from a freshly opened socket, satisfies
/// `cond`; returns it.
async fn wait_discussion(review: &Review, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut reader = open(review, "discussion", "observer").await;
    reader.wait_doc(what, |doc| cond(&discussion_of(doc))).await;
    let seen = discussion_of(&reader.doc);
    reader.close().await;
    seen
}

/// The discussion as the observer reads it now.
async fn discussion(review: &Review) -> Value {
    wait_discussion(review, "the discussion", |_| true).await
}

/// Every comment of every thread, as (thread id, comment JSON).
fn comments(d: &Value) -> Vec<(String, Value)> {
    d["threads"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(id, t)| {
            t["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |c| (id.clone(), c.clone()))
        })
        .collect()
}

/// The id of the thread holding a comment with `body`.
fn thread_with(d: &Value, body: &str) -> Option<String> {
    comments(d)
        .into_iter()
        .find(|(_, c)| c["body"] == body)
        .map(|(id, _)| id)
}

/// The concern with `body`.
fn concern_with<'a>(d: &'a Value, body: &str) -> Option<&'a Value> {
    d["concerns"]
        .as_object()?
        .values()
        .find(|c| c["body"] == body)
}

fn votes(concern: Option<&Value>) -> usize {
    concern
        .and_then(|c| c["votes"].as_array())
        .map_or(0, Vec::len)
}

/// Appends a paragraph with `text` to the fragment of `kind` as `role`, and waits until the
/// server has it on disk.
async fn append_paragraph(review: &Review, kind: &str, role: &str, text: &str) {
    let mut client = open(review, kind, role).await;
    {
        let fragment = client.doc.get_or_insert_xml_fragment(FRAGMENT);
        let mut txn = client.doc.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        p.push_back(&mut txn, XmlTextPrelim::new(text));
    }
    client.round_trip().await;
    assert_eq!(client.closed(), None, "{role} may write the {kind}");
    client.close().await;
}

/// A GET of an export as `role`: status and body text.
async fn export(review: &Review, role: &str, file: &str) -> (u16, String) {
    let path = format!("/api/reviews/{}/{file}", review.id);
    debrief_tests::api::get_text(review.addr, &path, &review.sessions[role]).await
}

/// The review's current phase as the facilitator reads it.
async fn phase(review: &Review) -> Value {
    let read = review.call("facilitator", "GET", "", None).await;
    assert_eq!(read.status, 200, "sessions survive restarts: {}", read.body);
    read.body["phase"].clone()
}

const SUMMARY: &str = "The checkout API returned errors for 40 minutes after a config push.";
const TIMELINE: &str = "14:02 config push; 14:05 first alert; 14:42 rollback complete.";
const DETECTION: &str = "Detected by the error-rate alert three minutes after the push.";
const ANON_COMMENT: &str = "The push skipped the canary stage, as it often does.";
const CONCERN: &str = "Config pushes have no canary at all.";
const CONCERN_AFTER: &str = "Nobody rehearses a restore";
const NOTE_1: &str = "Agreed: config pushes go through the canary.";
const NOTE_2: &str = "Platform owns the rollout tooling.";

/// Issue 16: one review from creation to export, with the server restarted between every step,
/// alternately stopped cleanly and killed. After each restart the step is checked to still work
/// and everything done before it to still be there. Four people who may post (facilitator,
/// author, two participants) and an observer who watches.
#[tokio::test]
async fn a_full_review_survives_a_restart_between_every_step() {
    let mut run = Restarting::start(&["--anonymous-cadence-secs", "1"]).await;
    let mut review = Review::create_with(
        run.server().addr,
        json!({ "title": "Checkout errors", "incident_date": "2026-03-02", "severity": "SEV-2" }),
    )
    .await;
    let second = review.join("participant", "Second participant").await;
    review.sessions.insert("participant2".to_owned(), second);

    // Created: the review, its sessions and the seeded report are there.
    run.restart(Stop::Clean, &mut review).await;
    let read = review.call("author", "GET", "", None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["title"], "Checkout errors");
    assert_eq!(read.body["phase"], "draft");
    assert_eq!(
        read.body["participants"],
        json!({ "facilitator": 1, "author": 1, "participant": 2, "observer": 1 })
    );
    assert_eq!(
        doc_lines(&review, "report", "author").await[0],
        "Checkout errors"
    );

    // Draft: the author writes the report over the sync protocol.
    {
        let mut author = open(&review, "report", "author").await;
        {
            let fragment = author.doc.get_or_insert_xml_fragment(FRAGMENT);
            let mut txn = author.doc.transact_mut();
            let Some(XmlOut::Element(summary)) = fragment.get(&txn, 2) else {
                panic!("the Summary paragraph is the third node");
            };
            // The template leaves it empty: its guidance is the editor's placeholder.
            assert_eq!(summary.len(&txn), 0, "the Summary paragraph starts empty");
            summary.push_back(&mut txn, XmlTextPrelim::new(SUMMARY));
            let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            p.push_back(&mut txn, XmlTextPrelim::new(TIMELINE));
        }
        author.round_trip().await;
        author.close().await;
    }
    run.restart(Stop::Kill9, &mut review).await;
    let report = doc_lines(&review, "report", "facilitator").await;
    assert_eq!(report[2], SUMMARY);
    assert_eq!(report.last().map(String::as_str), Some(TIMELINE));
    append_paragraph(&review, "report", "author", DETECTION).await;
    assert_eq!(
        doc_lines(&review, "report", "facilitator")
            .await
            .last()
            .map(String::as_str),
        Some(DETECTION)
    );

    // Review: named comments, anchored and general, and a reply.
    review.move_to("review").await;
    let anchor = anchor_on(&review, "participant", "checkout API").await;
    let first = comment_on(&review, "participant", &anchor, "Which config?").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let first = first.body["id"].as_str().expect("thread id").to_owned();
    let general = review
        .call(
            "participant2",
            "POST",
            "/threads",
            Some(json!({ "body": "Thanks for the quick write-up." })),
        )
        .await;
    assert_eq!(general.status, 201, "{}", general.body);
    let reply = review
        .call(
            "author",
            "POST",
            &format!("/threads/{first}/comments"),
            Some(json!({ "body": "The payment provider timeout." })),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let before = discussion(&review).await;
    assert_eq!(comments(&before).len(), 3);

    run.restart(Stop::Clean, &mut review).await;
    assert_eq!(phase(&review).await, "review");
    assert_eq!(discussion(&review).await, before);
    let anchor = anchor_on(&review, "participant2", "first alert").await;
    let second = comment_on(&review, "participant2", &anchor, "Which alert fired?").await;
    assert_eq!(second.status, 201, "{}", second.body);
    let second = second.body["id"].as_str().expect("thread id").to_owned();
    let reply = review
        .call(
            "facilitator",
            "POST",
            &format!("/threads/{first}/comments"),
            Some(json!({ "body": "Let us look at the timeout in the meeting." })),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let resolved = review
        .call(
            "participant2",
            "POST",
            &format!("/threads/{second}/resolve"),
            None,
        )
        .await;
    assert_eq!(resolved.body["resolved"], true, "{}", resolved.body);

    // Anonymous items, killed while they may still be held: they are released after it.
    let anchor = anchor_on(&review, "participant", "config push").await;
    let said = review
        .call(
            "participant2",
            "POST",
            "/anonymous/threads",
            Some(json!({ "body": ANON_COMMENT, "anchor": anchor })),
        )
        .await;
    assert_eq!(said.status, 202, "{}", said.body);
    let key = said.body["key"].as_str().expect("key").to_owned();
    let comment_id = said.body["item"]["comment"]
        .as_str()
        .expect("comment id")
        .to_owned();
    let raised = review
        .call(
            "participant",
            "POST",
            "/concerns",
            Some(json!({ "body": CONCERN })),
        )
        .await;
    assert_eq!(raised.status, 202, "{}", raised.body);
    let concern = raised.body["item"]["concern"]
        .as_str()
        .expect("concern id")
        .to_owned();
    run.restart(Stop::Kill9, &mut review).await;
    // Who wrote what was held is not known after a crash (it never was stored), so it goes out
    // with the next batch that two people are known to have contributed to.
    for role in ["facilitator", "author"] {
        let r = review
            .call(
                role,
                "POST",
                "/concerns",
                Some(json!({ "body": format!("{CONCERN_AFTER} ({role})") })),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let released = wait_discussion(&review, "the anonymous items", |d| {
        thread_with(d, ANON_COMMENT).is_some()
            && concern_with(d, CONCERN).is_some()
            && concern_with(d, &format!("{CONCERN_AFTER} (author)")).is_some()
    })
    .await;
    let anonymous = comments(&released)
        .into_iter()
        .find(|(_, c)| c["body"] == ANON_COMMENT)
        .map(|(_, c)| c)
        .expect("the anonymous comment");
    assert!(anonymous["author"].is_null(), "{anonymous}");
    assert_eq!(
        comments(&released).len(),
        6,
        "named comments are still there"
    );
    for role in ["facilitator", "author", "participant2"] {
        let r = review
            .call(
                role,
                "POST",
                &format!("/concerns/{concern}/support"),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, 202, "{role}: {}", r.body);
    }
    wait_discussion(&review, "three votes", |d| {
        votes(concern_with(d, CONCERN)) == 3
    })
    .await;
    // Read marks are shown at the next release boundary; a crash before it loses none.
    for role in ["participant", "participant2"] {
        let r = review.call(role, "POST", "/read", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    run.restart(Stop::Kill9, &mut review).await;
    let supported = wait_discussion(&review, "three votes and two read marks", |d| {
        votes(concern_with(d, CONCERN)) == 3 && d["meeting"]["readCount"] == 2.0
    })
    .await;
    let read = review.call("observer", "GET", "", None).await;
    assert_eq!(read.body["read_count"], 2, "{}", read.body);

    run.restart(Stop::Clean, &mut review).await;
    assert_eq!(discussion(&review).await, supported);
    review
        .call(
            "participant2",
            "POST",
            &format!("/concerns/{concern}/support"),
            Some(json!({})),
        )
        .await
        .assert_error(409, "already_supported");
    let r = review
        .call(
            "participant",
            "POST",
            &format!("/concerns/{concern}/support"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let edited = format!("{ANON_COMMENT} (edited)");
    let r = review
        .call(
            "participant2",
            "POST",
            &format!("/anonymous/{comment_id}/edit"),
            Some(json!({ "key": key, "body": edited })),
        )
        .await;
    assert_eq!(r.status, 202, "the key works after a restart: {}", r.body);
    wait_discussion(&review, "the edit and the fourth vote", |d| {
        thread_with(d, &edited).is_some() && votes(concern_with(d, CONCERN)) == 4
    })
    .await;

    // Meeting: notes, the timebox, the agenda, action items.
    review.move_to("meeting").await;
    append_paragraph(&review, "notes", "participant", NOTE_1).await;
    let started = review
        .call(
            "facilitator",
            "POST",
            "/timer",
            Some(json!({ "action": "start", "minutes": 30 })),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let ends_at = started.body["timer"]["endsAt"].clone();
    let agenda = review
        .call(
            "facilitator",
            "POST",
            "/agenda",
            Some(json!({ "item": format!("Concern: {CONCERN}") })),
        )
        .await;
    assert_eq!(agenda.status, 204, "{}", agenda.body);
    let action = json!({ "what": "Canary every config push", "why": "The push reached all hosts at once", "kind": "prevent", "owner": "Platform", "link": "https://tracker.example/PLAT-12", "due": "2026-04-01" });
    let made = review
        .call("author", "POST", "/actions", Some(action.clone()))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let action_id = made.body["id"].as_str().expect("action id").to_owned();
    let in_meeting = discussion(&review).await;

    run.restart(Stop::Kill9, &mut review).await;
    assert_eq!(phase(&review).await, "meeting");
    let after = discussion(&review).await;
    assert_eq!(after, in_meeting);
    assert_eq!(after["meeting"]["timer"]["state"], "running");
    assert_eq!(after["meeting"]["timer"]["endsAt"], ends_at);
    assert_eq!(after["meeting"]["agenda"], format!("Concern: {CONCERN}"));
    assert_eq!(after["actions"][&action_id]["owner"], "Platform");
    assert_eq!(doc_lines(&review, "notes", "observer").await, [NOTE_1]);
    let paused = review
        .call(
            "facilitator",
            "POST",
            "/timer",
            Some(json!({ "action": "pause" })),
        )
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    let remaining = paused.body["timer"]["remainingMs"].clone();
    let mut done = action.clone();
    done["status"] = json!("in_progress");
    let updated = review
        .call(
            "author",
            "PATCH",
            &format!("/actions/{action_id}"),
            Some(done),
        )
        .await;
    assert_eq!(updated.body["status"], "in_progress", "{}", updated.body);
    let ticked = review
        .call(
            "facilitator",
            "POST",
            &format!("/concerns/{concern}/discussed"),
            Some(json!({ "discussed": true })),
        )
        .await;
    assert_eq!(ticked.status, 204, "{}", ticked.body);
    append_paragraph(&review, "notes", "participant2", NOTE_2).await;
    append_paragraph(
        &review,
        "report",
        "facilitator",
        "Follow-up in the meeting.",
    )
    .await;
    let late_meeting = wait_discussion(&review, "the concern ticked off", |d| {
        concern_with(d, CONCERN).is_some_and(|c| c["discussed"] == true)
    })
    .await;

    run.restart(Stop::Clean, &mut review).await;
    let after = discussion(&review).await;
    assert_eq!(after, late_meeting);
    assert_eq!(after["meeting"]["timer"]["state"], "paused");
    assert_eq!(after["meeting"]["timer"]["remainingMs"], remaining);
    assert_eq!(after["actions"][&action_id]["status"], "in_progress");
    assert_eq!(
        doc_lines(&review, "notes", "observer").await,
        [NOTE_1, NOTE_2]
    );

    // Closed: frozen, exported, published.
    review.move_to("closed").await;
    run.restart(Stop::Kill9, &mut review).await;
    assert_eq!(phase(&review).await, "closed");
    comment_on(&review, "participant", &anchor, "too late")
        .await
        .assert_error(403, "not_allowed");
    let versions = review.call("observer", "GET", "/versions", None).await;
    let phases: Vec<&str> = versions.body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["phase"].as_str())
        .collect();
    assert_eq!(phases, ["review", "meeting", "closed"]);
    let (status, md) = export(&review, "observer", "export.md").await;
    assert_eq!(status, 200, "{md}");
    for line in [
        "# Checkout errors",
        SUMMARY,
        TIMELINE,
        DETECTION,
        "Follow-up in the meeting.",
        " > checkout API",
        "- **participant person**: Which config?",
        "- **author person**: The payment provider timeout.",
        "- **facilitator person**: Let us look at the timeout in the meeting.",
        "- **Second participant**: Thanks for the quick write-up.",
        "- **Second participant**: Which alert fired?",
        " > config push",
        "- **Anonymous**: The push skipped the canary stage, as it often does. (edited)",
        "- Config pushes have no canary at all. (4 supporting, discussed)",
        "|Canary every config push|The push reached all hosts at once|prevent|Platform|https://tracker.example/PLAT-12|2026-04-01|in_progress|",
        NOTE_1,
        NOTE_2,
    ] {
        assert!(
            md.lines().any(|l| l == line),
            "the export lacks {line:?}:\n{md}"
        );
    }
    let (status, exported_json) = export(&review, "observer", "export.json").await;
    assert_eq!(status, 200, "{exported_json}");
    let j: Value = serde_json::from_str(&exported_json).expect("json export");
    assert_eq!(j["review"]["severity"], "SEV-2");
    assert_eq!(j["review"]["incident_date"], "2026-03-02");
    assert_eq!(j["review"]["phase"], "closed");
    assert_eq!(j["threads"].as_array().map(Vec::len), Some(4));
    assert_eq!(j["concerns"][0]["support"], 4);
    assert_eq!(j["actions"][0]["status"], "in_progress");

    run.restart(Stop::Clean, &mut review).await;
    assert_eq!(
        export(&review, "observer", "export.md").await,
        (200, md.clone())
    );
    assert_eq!(
        export(&review, "author", "export.json").await,
        (200, exported_json)
    );
    review.publish().await;
    run.restart(Stop::Kill9, &mut review).await;
    let entry = review.library_entry().await;
    assert_eq!(entry.status, 200, "{}", entry.body);
    assert_eq!(entry.body["markdown"], md.as_str());

    // Published again with names replaced by roles (issue 17): what the preview showed is what
    // the library holds after a kill -9 and after a clean stop, with the choice kept.
    let preview = review
        .call("facilitator", "GET", "/publish?names=roles", None)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    let roles = preview.body["markdown"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        roles.contains("- **Participant 2**: Which alert fired?"),
        "{roles}"
    );
    let published = review
        .call(
            "facilitator",
            "POST",
            "/publish",
            Some(json!({ "published": true, "names": "roles" })),
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    for stop in [Stop::Kill9, Stop::Clean] {
        run.restart(stop, &mut review).await;
        let entry = review.library_entry().await;
        assert_eq!(entry.body["names"], "roles", "{}", entry.body);
        assert_eq!(entry.body["markdown"], roles.as_str());
        assert_eq!(entry.body["html"], preview.body["html"]);
    }
    run.terminate().await;
}

/// Issue 17: what the join page and the app are told — the review and role an invite joins, what
/// each session may do in each phase, and how many may post anonymously — reads the same after
/// a clean stop and after `kill -9`, in draft and in review.
#[tokio::test]
async fn invites_and_what_sessions_may_do_survive_restarts() {
    let mut run = Restarting::start(&[]).await;
    let mut review = Review::create(run.server().addr, "Cache stampede").await;
    let told = |review: &Review| {
        let review = review.clone();
        async move {
            let mut seen = Vec::new();
            for role in debrief_tests::api::ROLES {
                let invite = debrief_tests::api::request(
                    review.addr,
                    "POST",
                    "/api/invite",
                    None,
                    Some(&json!({ "invite": review.invites[role] })),
                )
                .await;
                assert_eq!(invite.status, 200, "{}", invite.body);
                let read = review.call(role, "GET", "", None).await;
                assert_eq!(read.status, 200, "{}", read.body);
                seen.push((
                    invite.body,
                    read.body["you"]["may"].clone(),
                    read.body["anonymous"]["posters"].clone(),
                ));
            }
            seen
        }
    };
    let mut current = "draft";
    for (to, stop) in [
        (None, Stop::Clean),
        (None, Stop::Kill9),
        (Some("review"), Stop::Kill9),
        (None, Stop::Clean),
    ] {
        if let Some(phase) = to {
            review.move_to(phase).await;
            current = phase;
        }
        let before = told(&review).await;
        assert_eq!(
            before[0].0,
            json!({ "title": "Cache stampede", "phase": current, "role": "facilitator" })
        );
        run.restart(stop, &mut review).await;
        assert_eq!(told(&review).await, before, "after {stop:?}");
    }
    run.terminate().await;
}
