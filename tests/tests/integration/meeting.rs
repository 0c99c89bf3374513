//! The meeting and close-out through the real server: the timebox, agenda and action items,
//! the read count, versions pinned at each phase, export (compared to an expected Markdown file),
//! Markdown import and its round trip on a corpus, and the library.

use debrief_tests::api::{request, send, Reply, Review};
use debrief_tests::{Client, TestServer};
use serde_json::{json, Value};
use yrs::types::ToJson;
use yrs::{Map, ReadTxn, Transact};

fn corpus() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/postmortems");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus")
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).expect("read"))
        })
        .collect();
    out.sort();
    out
}

async fn get(review: &Review, role: &str, path: &str) -> Reply {
    review.call(role, "GET", path, None).await
}

/// A GET as `role` returning the body text (exports are not JSON).
async fn get_text(review: &Review, role: &str, path: &str) -> (u16, String) {
    let path = format!("/api/reviews/{}{path}", review.id);
    debrief_tests::api::get_text(review.addr, &path, &review.sessions[role]).await
}

async fn discussion(server: &TestServer, review: &Review) -> Client {
    let mut c = Client::connect_collab(
        &server.collab_url(),
        &review.doc("discussion"),
        &review.sessions["observer"],
    )
    .await;
    c.wait_synced().await;
    c
}

fn root(client: &Client, name: &str) -> Value {
    let txn = client.doc.transact();
    txn.get_map(name)
        .map(|m| serde_json::to_value(m.to_json(&txn)).expect("json"))
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn markdown_round_trips_through_a_review() {
    let server = TestServer::start().await;
    for (name, md) in corpus() {
        let review =
            Review::create_with(server.addr, json!({ "title": name, "report_markdown": md })).await;
        let (status, exported) = get_text(&review, "author", "/export.md").await;
        assert_eq!(status, 200);
        assert_eq!(exported, md, "{name} changed on the way through");
    }
    let huge = "x".repeat(600 * 1024);
    request(
        server.addr,
        "POST",
        "/api/reviews",
        None,
        Some(&json!({ "title": "t", "report_markdown": huge })),
    )
    .await
    .assert_error(413, "report_too_large");
}

#[tokio::test]
async fn the_timebox_agenda_actions_and_read_count() {
    let server = TestServer::start_with(
        tempfile::tempdir().expect("temp dir"),
        debrief_server::Config {
            anonymous_cadence: std::time::Duration::from_millis(300),
            ..debrief_server::Config::new("unused")
        },
    )
    .await;
    let review = Review::create(server.addr, "Meeting").await;
    let timer = |body: Value| {
        let review = review.clone();
        async move {
            review
                .call("facilitator", "POST", "/timer", Some(body))
                .await
        }
    };
    timer(json!({ "action": "start", "minutes": 30 }))
        .await
        .assert_error(409, "not_in_meeting");
    review.move_to("review").await;

    // Read marks count people once each, and never say who: the count everyone sees changes
    // only at the next release boundary, with every mark made since the last one.
    let mut watcher = Client::connect_collab(
        &server.collab_url(),
        &review.doc("discussion"),
        &review.sessions["observer"],
    )
    .await;
    watcher.wait_synced().await;
    // Boundaries fall every 300 ms, so the marks may straddle one: a mark's answer says which
    // boundary will count it, and until the first mark's boundary nobody sees any mark.
    let mut first_boundary = None;
    for role in ["participant", "participant", "author"] {
        let r = review.call(role, "POST", "/read", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["read"], true);
        let counted_after = r.body["counted_after"].as_u64().expect("counted_after");
        if *first_boundary.get_or_insert(counted_after) == counted_after {
            assert_eq!(r.body["read_count"], 0, "not shown before the boundary");
        }
    }
    let doc = watcher.doc.clone();
    watcher
        .wait_doc("the read count at the boundary", move |_| {
            let txn = doc.transact();
            txn.get_map("meeting")
                .and_then(|m| m.get(&txn, "readCount"))
                .is_some_and(|n| matches!(n, yrs::Out::Any(yrs::Any::Number(x)) if x == yrs::Number::Float(2.0)))
        })
        .await;
    let read = get(&review, "observer", "").await;
    assert_eq!(read.body["read_count"], 2);

    // Action items are validated.
    let good = json!({ "what": "Alert on queue depth", "why": "The backlog grew unnoticed", "kind": "detect", "owner": "Messaging", "link": "https://tracker.example/MSG-7", "due": "2026-12-15" });
    let made = review
        .call("participant", "POST", "/actions", Some(good.clone()))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["status"], "open");
    let id = made.body["id"].as_str().expect("id").to_owned();
    for (field, value, code) in [
        ("kind", "blame", "invalid_json"),
        ("link", "not a url", "invalid_link"),
        ("why", "", "invalid_why"),
    ] {
        let mut bad = good.clone();
        bad[field] = json!(value);
        review
            .call("participant", "POST", "/actions", Some(bad))
            .await
            .assert_error(400, code);
    }
    review
        .call("observer", "POST", "/actions", Some(good.clone()))
        .await
        .assert_error(403, "not_allowed");
    let mut done = good.clone();
    done["status"] = json!("in_progress");
    let updated = review
        .call(
            "author",
            "PATCH",
            &format!("/actions/{id}"),
            Some(done.clone()),
        )
        .await;
    assert_eq!(updated.body["status"], "in_progress");
    review
        .call("author", "PATCH", "/actions/nope", Some(done))
        .await
        .assert_error(404, "unknown_action");

    // The timebox, held by the server clock.
    review.move_to("meeting").await;
    timer(json!({ "action": "pause" }))
        .await
        .assert_error(409, "invalid_timer_action");
    timer(json!({ "action": "start", "minutes": 0 }))
        .await
        .assert_error(400, "invalid_minutes");
    review
        .call(
            "participant",
            "POST",
            "/timer",
            Some(json!({ "action": "start", "minutes": 30 })),
        )
        .await
        .assert_error(403, "not_allowed");
    let started = timer(json!({ "action": "start", "minutes": 30 })).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let ends = started.body["timer"]["endsAt"].as_u64().expect("endsAt");
    let now = started.body["server_time"].as_u64().expect("time");
    assert!(ends > now && ends - now <= 30 * 60_000);
    let paused = timer(json!({ "action": "pause" })).await;
    let left = paused.body["timer"]["remainingMs"]
        .as_u64()
        .expect("remaining");
    let extended = timer(json!({ "action": "extend", "minutes": 5 })).await;
    assert_eq!(
        extended.body["timer"]["remainingMs"].as_u64(),
        Some(left + 5 * 60_000)
    );
    review
        .call(
            "facilitator",
            "POST",
            "/agenda",
            Some(json!({ "item": "Concern: alerts were muted" })),
        )
        .await;
    // Someone who joins late sees the same clock and the same place on the agenda.
    let late = discussion(&server, &review).await;
    let meeting = root(&late, "meeting");
    assert_eq!(meeting["timer"]["state"], "paused");
    assert_eq!(
        meeting["timer"]["remainingMs"].as_u64(),
        Some(left + 5 * 60_000)
    );
    assert_eq!(meeting["agenda"], "Concern: alerts were muted");
    assert_eq!(meeting["readCount"], 2.0);
    assert_eq!(root(&late, "actions")[&id]["owner"], "Messaging");

    review.move_to("closed").await;
    review
        .call("participant", "POST", "/actions", Some(good))
        .await
        .assert_error(403, "not_allowed");
    review
        .call("participant", "POST", "/read", None)
        .await
        .assert_error(409, "review_closed");
}

/// An anchor around `text` in the first paragraph of the review's report, as the author's
/// client would encode it (base64 of Yjs relative positions), with the quote.
async fn anchor_on(server: &TestServer, review: &Review, text: &str) -> Value {
    use base64::Engine;
    use yrs::types::xml::{XmlFragment, XmlOut};
    use yrs::updates::encoder::Encode;
    use yrs::{Assoc, GetString, IndexedSequence};
    let mut author = Client::connect(&format!(
        "{}?token={}",
        server.ws_url(&review.doc("report")),
        review.sessions["author"]
    ))
    .await;
    author.wait_synced().await;
    let fragment = author.doc.get_or_insert_xml_fragment("default");
    let txn = author.doc.transact();
    let paragraph = fragment
        .children(&txn)
        .find_map(|n| match n {
            XmlOut::Element(e) if e.tag().as_ref() == "paragraph" => Some(e),
            _ => None,
        })
        .expect("a paragraph");
    let Some(XmlOut::Text(t)) = paragraph.get(&txn, 0) else {
        panic!("the paragraph holds text");
    };
    let at = t.get_string(&txn).find(text).expect("the text") as u32;
    let b64 = |p: yrs::StickyIndex| base64::engine::general_purpose::STANDARD.encode(p.encode_v1());
    let start = t.sticky_index(&txn, at, Assoc::After).expect("start");
    let end = t
        .sticky_index(&txn, at + text.len() as u32, Assoc::Before)
        .expect("end");
    json!({ "start": b64(start), "end": b64(end), "quote": text })
}

#[tokio::test]
async fn versions_export_and_the_library() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir,
        debrief_server::Config {
            anonymous_cadence: std::time::Duration::from_millis(200),
            ..debrief_server::Config::new("unused")
        },
    )
    .await;
    let md = "# Cache stampede\n\n## Summary\n\nThe cache expired for every key at once.\n";
    let review = Review::create_with(
        server.addr,
        json!({ "title": "Cache stampede", "report_markdown": md }),
    )
    .await;
    // Drafts stay private: no export for participants in draft.
    get(&review, "participant", "/export.md")
        .await
        .assert_error(403, "not_allowed");
    review.move_to("review").await;

    // Activity of every kind: a named thread with a reply, an anonymous comment, a hidden one,
    // a concern with support, an action item.
    let t = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "Which TTL was it?", "anchor": anchor_on(&server, &review, "cache expired").await })),
        )
        .await;
    let tid = t.body["id"].as_str().expect("id").to_owned();
    review
        .call(
            "author",
            "POST",
            &format!("/threads/{tid}/comments"),
            Some(json!({ "body": "One hour, for all keys." })),
        )
        .await;
    review
        .call(
            "participant",
            "POST",
            "/anonymous/threads",
            Some(json!({ "body": "We were warned about this in June." })),
        )
        .await;
    let hidden = review
        .call(
            "participant",
            "POST",
            "/anonymous/threads",
            Some(json!({ "body": "Someone should be fired." })),
        )
        .await;
    review
        .call(
            "author",
            "POST",
            "/concerns",
            Some(json!({ "body": "Nobody owns the cache" })),
        )
        .await;
    let mut watcher = discussion(&server, &review).await;
    watcher
        .wait_doc("the anonymous items", |doc| {
            let txn = doc.transact();
            let text = txn
                .get_map("concerns")
                .map(|m| format!("{:?}", m.to_json(&txn)))
                .unwrap_or_default();
            let threads = txn
                .get_map("threads")
                .map(|m| format!("{:?}", m.to_json(&txn)))
                .unwrap_or_default();
            text.contains("Nobody owns the cache") && threads.contains("Someone should be fired.")
        })
        .await;
    let concern = root(&watcher, "concerns")
        .as_object()
        .and_then(|c| c.keys().next().cloned())
        .expect("concern");
    for role in ["participant", "observer"] {
        let r = review
            .call(
                role,
                "POST",
                &format!("/concerns/{concern}/support"),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            r.status,
            if role == "observer" { 403 } else { 202 },
            "{}",
            r.body
        );
    }
    review
        .call(
            "facilitator",
            "POST",
            "/moderation/hide",
            Some(hidden.body["item"].clone()),
        )
        .await;
    review
        .call("author", "POST", "/actions", Some(json!({ "what": "Jitter cache TTLs", "why": "All keys expired together", "kind": "prevent", "owner": "Platform", "link": "https://tracker.example/PLAT-9" })))
        .await;
    watcher
        .wait_doc("the vote", |doc| {
            let txn = doc.transact();
            txn.get_map("concerns").is_some_and(|m| {
                let v = serde_json::to_value(m.to_json(&txn)).unwrap_or_default();
                v.as_object().is_some_and(|o| {
                    o.values()
                        .any(|c| c["votes"].as_array().is_some_and(|a| a.len() == 1))
                })
            })
        })
        .await;

    // Notes taken in the meeting, by a participant over the sync protocol.
    review.move_to("meeting").await;
    let mut notes = Client::connect_collab(
        &server.collab_url(),
        &review.doc("notes"),
        &review.sessions["participant"],
    )
    .await;
    notes.wait_synced().await;
    {
        use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
        let fragment = notes.doc.get_or_insert_xml_fragment("default");
        let mut txn = notes.doc.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        p.push_back(
            &mut txn,
            XmlTextPrelim::new("Agreed to jitter TTLs by 10%."),
        );
    }
    notes.round_trip().await;
    review.move_to("closed").await;

    // Versions: one per phase entered, each as it was then.
    let versions = get(&review, "observer", "/versions").await;
    let phases: Vec<&str> = versions.body["versions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["phase"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(phases, ["review", "meeting", "closed"]);
    let at_review = get(&review, "observer", "/versions/review").await;
    assert_eq!(at_review.body["report"], md);
    assert_eq!(at_review.body["notes"], "");
    let closed = get(&review, "observer", "/versions/closed").await;
    assert_eq!(closed.body["notes"], "Agreed to jitter TTLs by 10%.\n");
    get(&review, "observer", "/versions/draft")
        .await
        .assert_error(404, "unknown_version");

    // The export, compared whole.
    let expected = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/export/cache-stampede.md"),
    )
    .expect("expected export");
    let (status, exported) = get_text(&review, "observer", "/export.md").await;
    assert_eq!(status, 200);
    assert_eq!(
        exported, expected,
        "the export differs from fixtures/export/cache-stampede.md"
    );
    assert!(!exported.contains("fired"), "hidden items are left out");
    let (status, json_export) = get_text(&review, "observer", "/export.json").await;
    assert_eq!(status, 200);
    let j: Value = serde_json::from_str(&json_export).expect("json");
    assert_eq!(j["concerns"][0]["support"], 1);
    assert_eq!(j["threads"][1]["comments"][0]["author"], "Anonymous");
    assert_eq!(j["actions"][0]["kind"], "prevent");

    // The library: only closed reviews, searchable, reversible.
    review.publish().await;
    let found = request(
        server.addr,
        "GET",
        "/api/library?q=jitter%20ttls",
        None,
        None,
    )
    .await;
    assert_eq!(found.body["reviews"][0]["id"], review.id.as_str());
    let none = request(server.addr, "GET", "/api/library?q=kubernetes", None, None).await;
    assert_eq!(none.body["reviews"], json!([]));
    let entry = review.library_entry().await;
    assert_eq!(entry.body["markdown"], expected);
    assert_eq!(entry.body["names"], "kept");
    assert!(entry.body["html"]
        .as_str()
        .unwrap_or_default()
        .contains("<li><strong>participant person</strong>: Which TTL was it?</li>"));

    // Issue 17: the facilitator previews what would be public, with names replaced by roles, and
    // publishes exactly that; the choice is kept when moderation writes the entry again.
    let with_roles = expected
        .replace("**participant person**", "**Participant**")
        .replace("**author person**", "**Author**");
    let preview = get(&review, "facilitator", "/publish?names=roles").await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["markdown"], with_roles);
    assert!(preview.body["html"]
        .as_str()
        .unwrap_or_default()
        .contains("<li><strong>Participant</strong>: Which TTL was it?</li>"));
    let kept = get(&review, "facilitator", "/publish").await;
    assert_eq!(kept.body["markdown"], expected);
    get(&review, "author", "/publish?names=roles")
        .await
        .assert_error(403, "not_allowed");
    for bad in ["/publish?names=initials", "/publish?x=1"] {
        assert_eq!(
            get(&review, "facilitator", bad)
                .await
                .assert_error(400, "invalid_query"),
            "the only query parameter is names, kept or roles"
        );
    }
    let published = review
        .call(
            "facilitator",
            "POST",
            "/publish",
            Some(json!({ "published": true, "names": "roles" })),
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let entry = review.library_entry().await;
    assert_eq!(entry.body["markdown"], with_roles);
    assert_eq!(entry.body["names"], "roles");
    review
        .call(
            "facilitator",
            "POST",
            "/publish",
            Some(json!({ "published": true, "names": "nicknames" })),
        )
        .await
        .assert_error(400, "invalid_json");
    // Hiding after publishing takes the item out of the library too.
    let anonymous = root(&watcher, "threads")
        .as_object()
        .and_then(|t| {
            t.values().find_map(|t| {
                let c = &t["comments"][0];
                (c["body"] == "We were warned about this in June.")
                    .then(|| json!({ "kind": "comment", "thread": t["id"], "comment": c["id"] }))
            })
        })
        .expect("the anonymous comment");
    let hidden = review
        .call("facilitator", "POST", "/moderation/hide", Some(anonymous))
        .await;
    assert_eq!(hidden.status, 204, "{}", hidden.body);
    let entry = review.library_entry().await;
    assert!(!entry.body["markdown"]
        .as_str()
        .unwrap_or_default()
        .contains("warned"));
    assert_eq!(entry.body["names"], "roles");
    assert!(entry.body["markdown"]
        .as_str()
        .unwrap_or_default()
        .contains("- **Participant**: Which TTL was it?"));
    review
        .call(
            "author",
            "POST",
            "/publish",
            Some(json!({ "published": false })),
        )
        .await
        .assert_error(403, "not_allowed");
    review
        .call(
            "facilitator",
            "POST",
            "/publish",
            Some(json!({ "published": false })),
        )
        .await;
    review
        .library_entry()
        .await
        .assert_error(404, "not_published");
    let open = Review::create(server.addr, "Still open").await;
    open.call(
        "facilitator",
        "POST",
        "/publish",
        Some(json!({ "published": true })),
    )
    .await
    .assert_error(409, "not_closed");
    send(server.addr, "GET", "/api/library?x=1", None, None)
        .await
        .assert_error(400, "invalid_query");
}

/// Issue 16: comment bodies, names, quotes and action items reached `export.md` and the public
/// library unescaped, and `report_markdown` kept `javascript:` and `data:` links. Everything
/// people wrote now renders as the literal text, and only web and mail links are kept.
#[tokio::test]
async fn hostile_text_is_exported_and_published_as_literal_text() {
    let server = TestServer::start().await;
    let md = "# Hostile\n\nPlain words first.\n\n[click](javascript:alert(1)) and [data](data:text/html;base64,PHNjcmlwdD4=) and [fine](https://example.com/x?a=1&b=2)\n\n<script>alert(2)</script>\n";
    let mut review = Review::create_with(
        server.addr,
        json!({ "title": "Hostile", "report_markdown": md }),
    )
    .await;
    let mallory = review.join("participant", "<b>Mallory</b>").await;
    review.sessions.insert("mallory".to_owned(), mallory);
    review.move_to("review").await;
    let mut anchor = anchor_on(&server, &review, "Plain").await;
    anchor["quote"] = json!("<img src=x onerror=alert(5)>");
    let thread = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "Look <b>here</b>", "anchor": anchor })),
        )
        .await;
    assert_eq!(thread.status, 201, "{}", thread.body);
    let tid = thread.body["id"].as_str().expect("id");
    let reply = review
        .call(
            "mallory",
            "POST",
            &format!("/threads/{tid}/comments"),
            Some(json!({ "body": "<script>alert(3)</script> [x](javascript:alert(4))\n# not a heading" })),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let action = review
        .call(
            "mallory",
            "POST",
            "/actions",
            Some(json!({ "what": "<iframe src=javascript:alert(6)>", "why": "a | b & [c](data:x)", "kind": "mitigate", "owner": "**Ops**" })),
        )
        .await;
    assert_eq!(action.status, 201, "{}", action.body);
    review.move_to("meeting").await;
    review.move_to("closed").await;

    let expected = "# Hostile\n\
        \n\
        Plain words first.\n\
        \n\
        click and data and [fine](https://example.com/x?a=1&amp;b=2)\n\
        \n\
        \\<script>alert(2)\\</script>\n\
        \n\
        ## Comments\n\
        \n \
        > \n \
        > \\<img src=x onerror=alert(5)>\n\
        \n\
        - **participant person**: Look \\<b>here\\</b>\n\
        - **\\<b>Mallory\\</b>**: \\<script>alert(3)\\</script> \\[x\\](javascript:alert(4)) # not a heading\n\
        \n\
        ## Action items\n\
        \n\
        |What|Why|Kind|Owner|Link|Due|Status|\n\
        |----|---|----|-----|----|---|------|\n\
        |\\<iframe src=javascript:alert(6)>|a \\| b &amp; \\[c\\](data:x)|mitigate|\\*\\*Ops\\*\\*|||open|\n";
    let (status, exported) = get_text(&review, "observer", "/export.md").await;
    assert_eq!(status, 200);
    assert_eq!(exported, expected);
    let (_, exported_json) = get_text(&review, "observer", "/export.json").await;
    let j: Value = serde_json::from_str(&exported_json).expect("json");
    assert_eq!(
        j["report_markdown"],
        "# Hostile\n\nPlain words first.\n\nclick and data and [fine](https://example.com/x?a=1&amp;b=2)\n\n\\<script>alert(2)\\</script>\n"
    );
    // The JSON export is data, not Markdown: what was written, as written.
    assert_eq!(j["threads"][0]["comments"][0]["body"], "Look <b>here</b>");

    review.publish().await;
    let entry = review.library_entry().await;
    assert_eq!(entry.body["markdown"], expected);
}

/// Issue 22: library entries written by an older export (format 1 lost an ordered list's first
/// number) are written again from the review's documents before they are served, and stored so.
#[tokio::test]
async fn library_entries_of_an_older_export_are_written_again() {
    use debrief_server::reviews::records::{Published, Records, EXPORT_FORMAT};
    use debrief_server::storage::store::Store;

    /// Runs `f` on the library of a stopped server's data directory.
    async fn with_records<T>(dir: &std::path::Path, f: impl AsyncFnOnce(&Records) -> T) -> T {
        let (store, flusher) = Store::open(dir).expect("open the store");
        let flushing = std::thread::spawn(move || flusher.run());
        let records = Records::open(&store).expect("open the records");
        let out = f(&records).await;
        drop(records);
        drop(store);
        flushing.join().expect("the flusher ends");
        out
    }

    let mut server = TestServer::start().await;
    let md = "# Cache\n\n2024. The year the cache fell over\n\nUse ``a`b`` to see it.\n";
    let mut review = Review::create_with(
        server.addr,
        json!({ "title": "Cache", "report_markdown": md }),
    )
    .await;
    for phase in ["review", "meeting", "closed"] {
        review.move_to(phase).await;
    }
    review.publish().await;
    let (status, current) = get_text(&review, "observer", "/export.md").await;
    assert_eq!(status, 200);
    assert!(current.starts_with(md), "{current}");

    // What the first escaping export stored for it.
    server.stop().await;
    let old = "# Cache\n\n1. The year the cache fell over\n\nUse ``` a`b ``` to see it.\n";
    with_records(&server.data_dir(), async |records: &Records| {
        let entry = records.published(&review.id).expect("published");
        let entry = Published {
            markdown: old.to_owned(),
            format: 1,
            ..entry
        };
        records.publish(&entry).await.expect("store the old entry");
    })
    .await;

    let mut server = server.restart().await;
    review.addr = server.addr;
    let entry = review.library_entry().await;
    assert_eq!(entry.status, 200, "{}", entry.body);
    assert_eq!(entry.body["markdown"], current.as_str());
    server.stop().await;
    let stored = with_records(&server.data_dir(), async |records: &Records| {
        records.published(&review.id).expect("published")
    })
    .await;
    assert_eq!(stored.format, EXPORT_FORMAT);
    assert_eq!(stored.markdown, current);
}
