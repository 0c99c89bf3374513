//! Action items across reviews (issue 20): the list a browser gets with every session it holds,
//! its filters and order, status changes recorded with who and when (also after the review
//! closed), the done count in a review's record, published reviews' items for everyone, tracker
//! links and the server's tracker patterns, and the list after a restart.

use std::sync::Arc;

use debrief_server::reviews::trackers::Trackers;
use debrief_tests::api::{request, Reply, Review};
use debrief_tests::server::{binary_path, ChildServer};
use debrief_tests::TestServer;
use serde_json::{json, Value};

const PATTERN: &str = "PROJ-[0-9]+=https://tracker.example/browse/{}";

async fn search(addr: std::net::SocketAddr, body: Value) -> Reply {
    let reply = request(addr, "POST", "/api/actions/search", None, Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

fn whats(reply: &Reply) -> Vec<String> {
    reply.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["what"].as_str().expect("what").to_owned())
        .collect()
}

fn item<'a>(reply: &'a Reply, what: &str) -> &'a Value {
    reply.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["what"] == what)
        .unwrap_or_else(|| panic!("no item {what:?} in {}", reply.body))
}

fn history(item: &Value) -> Vec<(String, String)> {
    item["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|c| {
            (
                c["status"].as_str().expect("status").to_owned(),
                c["by"].as_str().expect("by").to_owned(),
            )
        })
        .collect()
}

async fn add(review: &Review, role: &str, body: Value) -> Value {
    let made = review.call(role, "POST", "/actions", Some(body)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    made.body
}

#[tokio::test]
async fn action_items_across_reviews_with_who_and_when() {
    let trackers = Trackers::parse(&[PATTERN]).expect("a valid pattern");
    let server = TestServer::start_with(
        tempfile::tempdir().expect("temp dir"),
        debrief_server::Config {
            trackers: Arc::new(trackers),
            ..debrief_server::Config::new("unused")
        },
    )
    .await;
    let checkout = Review::create(server.addr, "Checkout errors").await;
    let queue = Review::create(server.addr, "Queue backlog").await;
    let other = Review::create(server.addr, "Someone else's review").await;
    for r in [&checkout, &queue, &other] {
        r.move_to("review").await;
    }
    let late = add(&checkout, "participant", json!({ "what": "Roll back on error budget burn", "why": "The deploy ran for an hour", "kind": "mitigate", "owner": " Payments ", "due": "2020-01-31" })).await;
    let keyed = add(&checkout, "author", json!({ "what": "Load test checkout", "why": "Nobody knew the limit", "kind": "prevent", "owner": "SRE", "due": "2999-01-01", "link": "PROJ-42" })).await;
    assert_eq!(keyed["link"], "https://tracker.example/browse/PROJ-42");
    add(&queue, "author", json!({ "what": "Page on queue depth, see PROJ-7", "why": "The backlog grew unnoticed", "kind": "detect", "owner": "Messaging", "link": "https://github.com/acme/queue/issues/12" })).await;
    add(&other, "author", json!({ "what": "Not yours", "why": "Another team's review", "kind": "process", "owner": "Payments" })).await;

    // A link is a web address with a host; a key only when a pattern knows it.
    for link in ["https://user:pw@tracker.example/1", "OPS-1", "https://"] {
        let refused = checkout
            .call("author", "POST", "/actions", Some(json!({ "what": "w", "why": "y", "kind": "detect", "owner": "o", "link": link })))
            .await
            .assert_error(400, "invalid_link");
        assert_eq!(refused, "the tracking link is an http or https URL with a host name, or an issue key that the server's tracker patterns know");
    }

    // The browser sends every session it holds: items of both reviews, not of the third; a
    // session that is no session is left out and counted.
    let sessions = json!([
        checkout.sessions["participant"],
        queue.sessions["observer"],
        "dbs_not_a_session"
    ]);
    let all = search(server.addr, json!({ "sessions": sessions })).await;
    assert_eq!(
        whats(&all),
        vec![
            "Roll back on error budget burn",
            "Load test checkout",
            "Page on queue depth, see PROJ-7"
        ],
        "overdue first, then by due day (none last)"
    );
    assert_eq!(all.body["ignored_sessions"], 1);
    assert_eq!(all.body["total"], 3);
    let overdue = item(&all, "Roll back on error budget burn");
    assert_eq!(overdue["overdue"], true);
    assert_eq!(overdue["owner"], "Payments");
    assert_eq!(overdue["age_days"], 0);
    assert_eq!(overdue["review"]["title"], "Checkout errors");
    assert_eq!(overdue["review"]["phase"], "review");
    assert_eq!(overdue["may_change"], true);
    assert_eq!(
        history(overdue),
        vec![("open".to_owned(), "participant person".to_owned())]
    );
    let tracked = item(&all, "Load test checkout");
    assert_eq!(tracked["overdue"], false);
    assert_eq!(
        tracked["tracker"],
        json!({ "name": "tracker.example", "url": "https://tracker.example/browse/PROJ-42", "key": "PROJ-42" })
    );
    let queued = item(&all, "Page on queue depth, see PROJ-7");
    assert_eq!(queued["tracker"]["name"], "GitHub");
    assert_eq!(
        queued["references"],
        json!([{ "key": "PROJ-7", "url": "https://tracker.example/browse/PROJ-7", "name": "tracker.example" }])
    );
    // An observer reads along but does not move items.
    assert_eq!(queued["may_change"], false);
    let reviews: Vec<(&str, &Value)> = all.body["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .map(|r| (r["title"].as_str().expect("title"), &r["actions"]))
        .collect();
    assert_eq!(reviews.len(), 2, "{}", all.body["reviews"]);
    assert!(reviews.contains(&("Checkout errors", &json!({ "done": 0, "total": 2 }))));

    // Filters.
    let filtered = |extra: Value| {
        let mut body = json!({ "sessions": sessions });
        for (k, v) in extra.as_object().expect("filters") {
            body[k] = v.clone();
        }
        search(server.addr, body)
    };
    assert_eq!(
        whats(&filtered(json!({ "team": "payments" })).await),
        vec!["Roll back on error budget burn"]
    );
    assert_eq!(
        whats(&filtered(json!({ "overdue": true })).await),
        vec!["Roll back on error budget burn"]
    );
    assert_eq!(
        whats(&filtered(json!({ "review": queue.id })).await),
        vec!["Page on queue depth, see PROJ-7"]
    );
    assert_eq!(
        whats(&filtered(json!({ "kind": "prevent" })).await),
        vec!["Load test checkout"]
    );
    let limited = filtered(json!({ "limit": 1 })).await;
    assert_eq!(whats(&limited).len(), 1);
    assert_eq!(limited.body["total"], 3);
    assert!(whats(&filtered(json!({ "status": "done" })).await).is_empty());

    // Status changes are recorded with who and when.
    let id = late["id"].as_str().expect("id");
    let path = format!("/actions/{id}/status");
    let before = debrief_server::reviews::basics::now_ms() as f64;
    let moved = checkout
        .call(
            "participant",
            "POST",
            &path,
            Some(json!({ "status": "in_progress" })),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let again = checkout
        .call(
            "author",
            "POST",
            &path,
            Some(json!({ "status": "in_progress" })),
        )
        .await;
    assert_eq!(
        history(&again.body).len(),
        2,
        "the same status adds nothing"
    );
    checkout
        .call("observer", "POST", &path, Some(json!({ "status": "done" })))
        .await
        .assert_error(403, "not_allowed");
    let done = checkout
        .call("author", "POST", &path, Some(json!({ "status": "done" })))
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        history(&done.body),
        vec![
            ("open".to_owned(), "participant person".to_owned()),
            ("in_progress".to_owned(), "participant person".to_owned()),
            ("done".to_owned(), "author person".to_owned()),
        ]
    );
    let at = done.body["history"][2]["at"].as_f64().expect("at");
    assert!(at >= before, "stamped by the server's clock");
    let now_done = search(
        server.addr,
        json!({ "sessions": sessions, "review": checkout.id }),
    )
    .await;
    assert_eq!(
        whats(&now_done),
        vec!["Load test checkout", "Roll back on error budget burn"],
        "done items go last"
    );
    assert_eq!(
        item(&now_done, "Roll back on error budget burn")["overdue"],
        false
    );
    // The review's record says how many are done.
    let record = checkout.call("observer", "GET", "", None).await;
    assert_eq!(record.body["actions"], json!({ "done": 1, "total": 2 }));

    // Errors, with their codes and sentences.
    checkout
        .call(
            "participant",
            "POST",
            "/actions/0123456789abcdef/status",
            Some(json!({ "status": "done" })),
        )
        .await
        .assert_error(404, "unknown_action");
    checkout
        .call(
            "participant",
            "POST",
            &path,
            Some(json!({ "status": "finished" })),
        )
        .await
        .assert_error(400, "invalid_json");
    let get = |query: &'static str, bearer: Option<String>| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "GET",
                &format!("/api/actions{query}"),
                bearer.as_deref(),
                None,
            )
            .await
        }
    };
    for (query, code, message) in [
        ("?status=finished", "invalid_query", "the query parameters are status (open, in_progress, done), team, overdue (true or false), review, kind (prevent, detect, mitigate, process) and limit (a whole number)"),
        ("?colour=red", "invalid_query", "the query parameters are status (open, in_progress, done), team, overdue (true or false), review, kind (prevent, detect, mitigate, process) and limit (a whole number)"),
        ("?team=%20", "invalid_team", "a team is 1 to 100 characters"),
        ("?review=xyz", "invalid_review", "a review id is 32 lowercase hexadecimal digits"),
        ("?limit=0", "invalid_limit", "limit is a whole number from 1 to 500"),
    ] {
        assert_eq!(get(query, None).await.assert_error(400, code), message, "{query}");
    }
    assert_eq!(
        get("", Some("dbs_nope".into()))
            .await
            .assert_error(401, "invalid_token"),
        "the bearer token is no session: it was revoked, or its review is gone"
    );
    let many: Vec<String> = (0..101).map(|i| format!("dbs_{i}")).collect();
    let too_many = request(
        server.addr,
        "POST",
        "/api/actions/search",
        None,
        Some(&json!({ "sessions": many })),
    )
    .await;
    assert_eq!(
        too_many.assert_error(400, "too_many_sessions"),
        "send at most 100 sessions"
    );
    // One session through GET: its review only (nothing is published yet).
    let one = get("", Some(queue.sessions["participant"].clone())).await;
    assert_eq!(whats(&one), vec!["Page on queue depth, see PROJ-7"]);
    assert!(whats(&get("", None).await).is_empty());

    // After the meeting the team follows its items through.
    checkout.move_to("meeting").await;
    checkout.move_to("closed").await;
    let keyed_id = keyed["id"].as_str().expect("id");
    let closed = checkout
        .call(
            "participant",
            "POST",
            &format!("/actions/{keyed_id}/status"),
            Some(json!({ "status": "done" })),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    // A draft has no items to move.
    let draft = Review::create(server.addr, "Draft").await;
    draft
        .call(
            "author",
            "POST",
            "/actions/0123456789abcdef/status",
            Some(json!({ "status": "done" })),
        )
        .await
        .assert_error(403, "not_allowed");

    // Published with names replaced by roles: everyone sees the items, without names.
    let published = checkout
        .call(
            "facilitator",
            "POST",
            "/publish",
            Some(json!({ "published": true, "names": "roles" })),
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let public = get("", None).await;
    assert_eq!(whats(&public).len(), 2);
    let public_item = item(&public, "Roll back on error budget burn");
    assert_eq!(public_item["may_change"], false);
    assert_eq!(
        history(public_item),
        vec![
            ("open".to_owned(), "Participant".to_owned()),
            ("in_progress".to_owned(), "Participant".to_owned()),
            ("done".to_owned(), "Author".to_owned()),
        ]
    );
    // Whoever joined it still sees the names.
    let joined = search(
        server.addr,
        json!({ "sessions": [checkout.sessions["author"]] }),
    )
    .await;
    assert_eq!(
        history(item(&joined, "Roll back on error budget burn"))[2].1,
        "author person"
    );

    // After a restart the list is read again from the documents.
    let server = server.restart().await;
    let queue = Review {
        addr: server.addr,
        ..queue
    };
    let after = search(
        server.addr,
        json!({ "sessions": [queue.sessions["author"]] }),
    )
    .await;
    assert_eq!(
        whats(&after),
        vec![
            "Page on queue depth, see PROJ-7",
            "Roll back on error budget burn",
            "Load test checkout"
        ]
    );
    assert_eq!(
        history(item(&after, "Roll back on error budget burn")).len(),
        3
    );
}

/// `--tracker-pattern` on the real binary: a key given as the link becomes the pattern's link; a
/// bad pattern, from the flag or the environment, stops the server with its reason.
#[tokio::test]
async fn the_tracker_pattern_setting_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ChildServer::start_with(
        &dir.path().join("data"),
        &[
            "--tracker-pattern",
            "OPS-[0-9]{1,5}=https://acme.atlassian.net/browse/{}",
            "--tracker-pattern",
            PATTERN,
        ],
        None,
    )
    .await;
    let review = Review::create(server.addr, "Patterns").await;
    review.move_to("review").await;
    let made = add(&review, "author", json!({ "what": "Fix OPS-12 first", "why": "y", "kind": "prevent", "owner": "SRE", "link": "PROJ-9" })).await;
    assert_eq!(made["link"], "https://tracker.example/browse/PROJ-9");
    let listed = search(
        server.addr,
        json!({ "sessions": [review.sessions["author"]] }),
    )
    .await;
    let listed = item(&listed, "Fix OPS-12 first");
    assert_eq!(listed["tracker"]["key"], "PROJ-9");
    assert_eq!(
        listed["references"],
        json!([{ "key": "OPS-12", "url": "https://acme.atlassian.net/browse/OPS-12", "name": "Jira" }])
    );
    drop(server);

    let refused = |args: &[&str], env: Option<&str>| {
        let mut command = std::process::Command::new(binary_path());
        command
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("never"));
        if let Some(env) = env {
            command.env("DEBRIEF_TRACKER_PATTERN", env);
        }
        let out = command.output().expect("run the binary");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    assert_eq!(
        refused(&["--tracker-pattern", "PROJ-[0-9]+"], None),
        (
            Some(2),
            "error: --tracker-pattern \"PROJ-[0-9]+\": write it as REGEX=URL, the URL starting with http:// or https:// and holding {} where the matched text goes".to_owned()
        )
    );
    // Two patterns in the environment, separated by a comma; the second is wrong.
    assert_eq!(
        refused(&[], Some("A-[0-9]{1,3}=https://a.example/{},B-[0-9]+=https://b.example/")),
        (
            Some(2),
            "error: --tracker-pattern \"B-[0-9]+=https://b.example/\": the URL has no {} where the matched text goes".to_owned()
        )
    );
    assert!(!dir.path().join("never").exists(), "nothing was started");
}

/// Overdue is decided by the server's clock (the injectable one webhooks use), not the test's.
#[tokio::test]
async fn overdue_follows_the_servers_clock() {
    let day = 86_400_000;
    // 2030-03-02, 09:00 UTC.
    let clock = debrief_server::reviews::webhooks::Clock::manual(1_898_672_400_000);
    let server = TestServer::start_with(
        tempfile::tempdir().expect("temp dir"),
        debrief_server::Config {
            clock: clock.clone(),
            ..debrief_server::Config::new("unused")
        },
    )
    .await;
    let review = Review::create(server.addr, "Clocked").await;
    review.move_to("review").await;
    add(&review, "author", json!({ "what": "Due today", "why": "y", "kind": "detect", "owner": "SRE", "due": "2030-03-02" })).await;
    let sessions = json!({ "sessions": [review.sessions["author"]] });
    let today = search(server.addr, sessions.clone()).await;
    assert_eq!(today.body["today"], "2030-03-02");
    assert_eq!(item(&today, "Due today")["overdue"], false);
    clock.advance(std::time::Duration::from_millis(day));
    let tomorrow = search(server.addr, sessions).await;
    assert_eq!(tomorrow.body["today"], "2030-03-03");
    assert_eq!(item(&tomorrow, "Due today")["overdue"], true);
}
