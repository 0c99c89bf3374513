//! The home page's list (issue 19): the reviews a browser's sessions belong to, last changed
//! first, with the role and name, what waits for the person (the report unread by them, the open
//! action items owned by their name or their review's team), the facilitator's next step, the
//! search, tokens that are no session answered back, and the exact errors for bad input.

use debrief_server::reviews::basics::now_ms;
use debrief_tests::api::{request, Reply, Review};
use debrief_tests::TestServer;
use serde_json::{json, Value};

async fn home(addr: std::net::SocketAddr, body: Value) -> Reply {
    let reply = request(addr, "POST", "/api/home", None, Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

fn titles(reply: &Reply) -> Vec<&str> {
    reply.body["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .map(|r| r["title"].as_str().expect("title"))
        .collect()
}

fn listed<'a>(reply: &'a Reply, title: &str) -> &'a Value {
    reply.body["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .find(|r| r["title"] == title)
        .unwrap_or_else(|| panic!("no review {title:?} in {}", reply.body))
}

async fn add(review: &Review, owner: &str) -> String {
    let body = json!({ "what": format!("Work for {owner}"), "why": "It broke", "kind": "detect", "owner": owner });
    let made = review.call("author", "POST", "/actions", Some(body)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    made.body["id"].as_str().expect("id").to_owned()
}

/// Returns once the server's clock (the same system clock) is past `ms`, so that the next change
/// is stamped later than the last one: waits on the clock, not for a guessed time.
async fn past(ms: u64) {
    while now_ms() <= ms {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_reviews_a_browser_joined_with_what_waits_for_each() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let checkout = Review::create_with(
        addr,
        json!({ "title": "Checkout errors", "team": "Payments", "severity": "SEV2", "incident_date": "2026-03-01" }),
    )
    .await;
    let queue = Review::create(addr, "Queue backlog").await;
    let closed = Review::create(addr, "Old DNS outage").await;
    let other = Review::create(addr, "Someone else's review").await;
    // Every change below is stamped later than the creations.
    past(now_ms()).await;

    // In "Checkout errors" this browser is an author; the report is out for review.
    checkout.move_to("review").await;
    add(&checkout, " payments ").await;
    let mine = add(&checkout, "author person").await;
    add(&checkout, "SRE").await;
    let done = add(&checkout, "Payments").await;
    let moved = checkout
        .call(
            "author",
            "POST",
            &format!("/actions/{done}/status"),
            Some(json!({ "status": "done" })),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let moved = checkout
        .call(
            "author",
            "POST",
            &format!("/actions/{mine}/status"),
            Some(json!({ "status": "in_progress" })),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    other.move_to("review").await;
    add(&other, "Payments").await;
    // "Old DNS outage" is closed and run by this browser.
    for phase in ["review", "meeting", "closed"] {
        closed.move_to(phase).await;
    }

    // A revoked session (its role's link replaced with `revoke_sessions`) and a made-up one.
    let revoked = other.sessions["participant"].clone();
    let rotated = other
        .call(
            "facilitator",
            "POST",
            "/invites/participant",
            Some(json!({ "revoke_sessions": true })),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let sessions = json!([
        checkout.sessions["author"],
        queue.sessions["facilitator"],
        closed.sessions["facilitator"],
        revoked,
        "dbs_not_a_session",
        queue.sessions["facilitator"],
    ]);

    let all = home(addr, json!({ "sessions": sessions })).await;
    assert_eq!(
        all.body["unknown_sessions"],
        json!([revoked, "dbs_not_a_session"])
    );
    assert_eq!(all.body["joined"], 3);
    assert_eq!(all.body["unavailable"], json!([]));
    assert_eq!(
        titles(&all),
        vec!["Old DNS outage", "Checkout errors", "Queue backlog"],
        "last changed first: the closing, then the last action item moved, then a creation"
    );
    let c = listed(&all, "Checkout errors");
    assert_eq!(c["phase"], "review");
    assert_eq!(c["severity"], "SEV2");
    assert_eq!(c["incident_date"], "2026-03-01");
    assert_eq!(c["team"], "Payments");
    assert_eq!(
        c["you"],
        json!({ "role": "author", "name": "author person" })
    );
    assert_eq!(
        c["waiting"],
        json!({ "unread_report": true, "my_actions": 2 }),
        "the team's open item and the one in progress owned by my name; not SRE's, not the done one"
    );
    assert_eq!(c["actions"], json!({ "done": 1, "total": 4 }));
    assert_eq!(c["facilitator"], Value::Null, "an author does not run it");
    assert!(c["changed_at"].as_u64() > c["created_at"].as_u64());

    let q = listed(&all, "Queue backlog");
    assert_eq!(q["phase"], "draft");
    assert_eq!(q["severity"], Value::Null);
    assert_eq!(q["changed_at"], q["created_at"]);
    assert_eq!(
        q["waiting"],
        json!({ "unread_report": false, "my_actions": 0 }),
        "nothing to read in draft"
    );
    assert_eq!(
        q["facilitator"],
        json!({ "next": "send_for_review", "read_count": 0, "people": 4 })
    );
    let d = listed(&all, "Old DNS outage");
    assert_eq!(d["facilitator"]["next"], "publish");
    assert_eq!(d["waiting"]["unread_report"], false, "reading is over");

    // Reading the report takes it off what waits; the others' marks are theirs.
    let read = checkout.call("author", "POST", "/read", None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let after = home(addr, json!({ "sessions": sessions })).await;
    assert_eq!(
        listed(&after, "Checkout errors")["waiting"]["unread_report"],
        false
    );
    let as_participant = home(
        addr,
        json!({ "sessions": [checkout.sessions["participant"]] }),
    )
    .await;
    assert_eq!(
        listed(&as_participant, "Checkout errors")["waiting"],
        json!({ "unread_report": true, "my_actions": 1 }),
        "another person in the same review: their own mark, and only the team's item"
    );

    // Publishing leaves the facilitator nothing to do; moving a review makes it the newest.
    closed.publish().await;
    past(
        listed(&after, "Checkout errors")["changed_at"]
            .as_u64()
            .expect("changed_at")
            .max(d["changed_at"].as_u64().expect("changed_at")),
    )
    .await;
    queue.move_to("review").await;
    let later = home(addr, json!({ "sessions": sessions })).await;
    assert_eq!(
        titles(&later),
        vec!["Queue backlog", "Old DNS outage", "Checkout errors"]
    );
    assert_eq!(
        listed(&later, "Old DNS outage")["facilitator"]["next"],
        Value::Null
    );
    assert_eq!(
        listed(&later, "Queue backlog")["facilitator"]["next"],
        "start_meeting"
    );
    assert_eq!(
        listed(&later, "Queue backlog")["waiting"]["unread_report"],
        true
    );

    // Two sessions of one review: the one with the stronger role is listed.
    let both = home(
        addr,
        json!({ "sessions": [checkout.sessions["observer"], checkout.sessions["facilitator"]] }),
    )
    .await;
    assert_eq!(titles(&both), vec!["Checkout errors"]);
    assert_eq!(both.body["reviews"][0]["you"]["role"], "facilitator");
    assert_eq!(
        both.body["reviews"][0]["facilitator"]["next"],
        "start_meeting"
    );

    // The search narrows by title, without regard to case or surrounding spaces.
    let found = home(addr, json!({ "sessions": sessions, "search": "  QUEUE " })).await;
    assert_eq!(titles(&found), vec!["Queue backlog"]);
    assert_eq!(found.body["joined"], 3);
    let none = home(
        addr,
        json!({ "sessions": sessions, "search": "nothing like it" }),
    )
    .await;
    assert!(titles(&none).is_empty());
    let blank = home(addr, json!({ "sessions": sessions, "search": "" })).await;
    assert_eq!(titles(&blank).len(), 3);
    let longest = home(
        addr,
        json!({ "sessions": sessions, "search": "é".repeat(200) }),
    )
    .await;
    assert!(titles(&longest).is_empty());
    let empty = home(addr, json!({ "sessions": [] })).await;
    assert_eq!(
        empty.body,
        json!({ "reviews": [], "joined": 0, "unknown_sessions": [], "unavailable": [] })
    );

    // Bad input: the exact errors.
    let post =
        |body: Value| async move { request(addr, "POST", "/api/home", None, Some(&body)).await };
    let many: Vec<String> = (0..101).map(|i| format!("dbs_{i}")).collect();
    assert_eq!(
        post(json!({ "sessions": many }))
            .await
            .assert_error(400, "too_many_sessions"),
        "send at most 100 sessions"
    );
    assert_eq!(
        post(json!({ "sessions": [], "search": "x".repeat(201) }))
            .await
            .assert_error(400, "invalid_search"),
        "the search text is at most 200 characters"
    );
    assert_eq!(
        post(json!({ "sessions": [], "limit": 5 }))
            .await
            .assert_error(400, "invalid_json"),
        "the request body is not valid: unknown field `limit`, expected `sessions` or `search` at line 1 column 8"
    );
    assert_eq!(
        post(json!({ "search": "x" }))
            .await
            .assert_error(400, "invalid_json"),
        "the request body is not valid: missing field `sessions` at line 1 column 14"
    );
}

/// What the home page shows of a review (its phase and when it last changed, stamped by the
/// phase move) is the same after `kill -9` and after a clean stop (SIGTERM).
#[tokio::test]
async fn the_home_page_is_the_same_after_kill_9_and_a_clean_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = debrief_tests::ChildServer::start_with(&data, &[], None).await;
    let mut review = Review::create(server.addr, "Restarted").await;
    let created = home(
        server.addr,
        json!({ "sessions": [review.sessions["author"]] }),
    )
    .await;
    past(
        listed(&created, "Restarted")["created_at"]
            .as_u64()
            .expect("created_at"),
    )
    .await;
    review.move_to("review").await;
    let before = home(
        server.addr,
        json!({ "sessions": [review.sessions["author"]] }),
    )
    .await;
    let seen = listed(&before, "Restarted").clone();
    assert_eq!(seen["phase"], "review");
    assert!(seen["changed_at"].as_u64() > seen["created_at"].as_u64());
    server.kill9().await;
    let server = debrief_tests::ChildServer::start_with(&data, &[], None).await;
    let after = home(
        server.addr,
        json!({ "sessions": [review.sessions["author"]] }),
    )
    .await;
    assert_eq!(listed(&after, "Restarted"), &seen, "after kill -9");
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
    let server = debrief_tests::ChildServer::start_with(&data, &[], None).await;
    review.addr = server.addr;
    let after = home(
        server.addr,
        json!({ "sessions": [review.sessions["author"]] }),
    )
    .await;
    assert_eq!(listed(&after, "Restarted"), &seen, "after a clean stop");
    server.terminate().await;
}
