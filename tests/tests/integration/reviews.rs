//! Reviews through the real server: the phase table for every role, phase and document in both
//! dialects (including sockets that stay open across a phase change), the REST errors each bad
//! input gets, comment threads written by the server, and a restart.

use base64::Engine;
use debrief_proto::close;
use debrief_tests::api::{request, send, Review, ROLES};
use debrief_tests::{Client, TestServer};
use serde_json::json;
use yrs::types::xml::{XmlFragment, XmlOut, XmlTextPrelim};
use yrs::types::ToJson;
use yrs::updates::encoder::Encode;
use yrs::{Assoc, GetString, IndexedSequence, Map, Out, Transact};

/// What a role gets on a document in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused: close 4401 / `PermissionDenied("not_allowed: …")`.
    Denied,
    /// Loads; a change is refused (close 4403 / SyncStatus 0).
    Read,
    /// Loads and changes are applied (acknowledged in the Hocuspocus dialect).
    Write,
}
use Expect::{Denied as D, Read as R, Write as W};

/// The phase table (`docs/architecture.md`), written out independently of the server's code: for each phase and document,
/// the access of facilitator, author, participant, observer.
/// One document's row: its kind and the access of each role.
type Row = (&'static str, [Expect; 4]);

const TABLE: [(&str, [Row; 3]); 4] = [
    (
        "draft",
        [
            ("report", [R, W, D, D]),
            ("discussion", [R, R, D, D]),
            ("notes", [D, D, D, D]),
        ],
    ),
    (
        "review",
        [
            ("report", [R, W, R, R]),
            ("discussion", [R, R, R, R]),
            ("notes", [D, D, D, D]),
        ],
    ),
    (
        "meeting",
        [
            ("report", [W, W, R, R]),
            ("discussion", [R, R, R, R]),
            ("notes", [W, W, W, R]),
        ],
    ),
    (
        "closed",
        [
            ("report", [R, R, R, R]),
            ("discussion", [R, R, R, R]),
            ("notes", [R, R, R, R]),
        ],
    ),
];

fn ws_url(server: &TestServer, doc: &str, token: &str) -> String {
    format!("{}?token={token}", server.ws_url(doc))
}

/// Opens `doc` as `token` over `/ws/{doc}` and checks the expectation, writing once when the
/// document loads.
async fn probe_ws(server: &TestServer, doc: &str, token: &str, expect: Expect, what: &str) {
    let mut client = Client::connect(&ws_url(server, doc, token)).await;
    match expect {
        Expect::Denied => {
            let closed = client.wait_closed().await;
            assert_eq!(closed.code, close::PERMISSION_DENIED, "{what}: {closed:?}");
            assert!(
                closed.reason.starts_with("not_allowed: "),
                "{what}: {closed:?}"
            );
        }
        Expect::Read => {
            client.wait_synced().await;
            client.insert("probe", 0, "r");
            let closed = client.wait_closed().await;
            assert_eq!(closed.code, close::READ_ONLY, "{what}: {closed:?}");
        }
        Expect::Write => {
            client.wait_synced().await;
            client.insert("probe", 0, "w");
            client.round_trip().await;
            assert_eq!(client.closed(), None, "{what}");
            // The change is in the document: a fresh connection of the same session reads it.
            let mut again = Client::connect(&ws_url(server, doc, token)).await;
            again.wait_synced().await;
            assert!(again.text("probe").contains('w'), "{what}");
        }
    }
}

/// Opens `doc` as `token` over `/collab` and checks the expectation.
async fn probe_collab(server: &TestServer, doc: &str, token: &str, expect: Expect, what: &str) {
    let mut client = Client::connect_collab(&server.collab_url(), doc, token).await;
    match expect {
        Expect::Denied => {
            let denials = client.wait_denials(1).await;
            assert!(
                denials[0].starts_with("not_allowed: "),
                "{what}: {denials:?}"
            );
        }
        Expect::Read | Expect::Write => {
            let scope = client.wait_authenticated().await;
            client.wait_synced().await;
            client.round_trip().await;
            let acks = client.acks();
            client.insert("probe", 0, "c");
            if expect == Expect::Write {
                assert_eq!(scope, "read-write", "{what}");
                client.wait_acks(acks + 1).await;
            } else {
                assert_eq!(scope, "readonly", "{what}");
                client.wait_refusals(1).await;
            }
        }
    }
}

#[tokio::test]
async fn every_role_phase_and_document_in_both_dialects() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Checkout outage").await;
    for (i, (phase, docs)) in TABLE.iter().enumerate() {
        if i > 0 {
            review.move_to(phase).await;
        }
        for (kind, row) in docs {
            for (role, expect) in ROLES.iter().zip(row) {
                let doc = review.doc(kind);
                let token = &review.sessions[*role];
                let what = format!("{role} on {kind} in {phase}");
                probe_ws(&server, &doc, token, *expect, &format!("{what} (/ws)")).await;
                probe_collab(&server, &doc, token, *expect, &format!("{what} (/collab)")).await;
            }
        }
    }
}

#[tokio::test]
async fn a_phase_change_reaches_sockets_that_are_already_open() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Queue backlog").await;
    review.move_to("review").await;
    let report = review.doc("report");
    let notes = review.doc("notes");

    // The facilitator reads the report during review; the meeting lets them write, at once.
    let mut facilitator = Client::connect_collab(
        &server.collab_url(),
        &report,
        &review.sessions["facilitator"],
    )
    .await;
    assert_eq!(facilitator.wait_authenticated().await, "readonly");
    facilitator.wait_synced().await;
    // An author writing over both dialects.
    let mut author_collab =
        Client::connect_collab(&server.collab_url(), &report, &review.sessions["author"]).await;
    assert_eq!(author_collab.wait_authenticated().await, "read-write");
    author_collab.wait_synced().await;
    let mut author_ws =
        Client::connect(&ws_url(&server, &report, &review.sessions["author"])).await;
    author_ws.wait_synced().await;

    review.move_to("meeting").await;
    assert_eq!(facilitator.wait_scopes(2).await, ["readonly", "read-write"]);
    facilitator.round_trip().await;
    let acks = facilitator.acks();
    facilitator.insert("t", 0, "F");
    facilitator.wait_acks(acks + 1).await;

    // A participant takes notes over /ws during the meeting.
    let mut notes_ws =
        Client::connect(&ws_url(&server, &notes, &review.sessions["participant"])).await;
    notes_ws.wait_synced().await;
    notes_ws.insert("t", 0, "n");
    notes_ws.round_trip().await;

    review.move_to("closed").await;
    // Hocuspocus sockets are told with a new scope and their changes are refused from then on.
    assert_eq!(
        author_collab.wait_scopes(2).await,
        ["read-write", "readonly"]
    );
    assert_eq!(
        facilitator.wait_scopes(3).await,
        ["readonly", "read-write", "readonly"]
    );
    author_collab.insert("t", 0, "late");
    author_collab.wait_refusals(1).await;
    // y-websocket sockets have no such message: they are closed with 4403 and may reconnect to
    // read.
    for client in [&mut author_ws, &mut notes_ws] {
        let closed = client.wait_closed().await;
        assert_eq!(closed.code, close::READ_ONLY, "{closed:?}");
        assert_eq!(
            closed.reason,
            "read_only: write access was withdrawn; reconnect to read"
        );
    }
    let mut reader = Client::connect(&ws_url(&server, &report, &review.sessions["author"])).await;
    reader.wait_synced().await;
    assert_eq!(reader.text("t"), "F", "the refused change was not applied");
}

#[tokio::test]
async fn revoked_sessions_lose_their_open_sockets() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Revocation").await;
    review.move_to("review").await;
    let report = review.doc("report");
    let mut ws = Client::connect(&ws_url(&server, &report, &review.sessions["participant"])).await;
    ws.wait_synced().await;
    let mut collab = Client::connect_collab(
        &server.collab_url(),
        &report,
        &review.sessions["participant"],
    )
    .await;
    collab.wait_authenticated().await;
    collab.wait_synced().await;

    let rotated = review
        .call(
            "facilitator",
            "POST",
            "/invites/participant",
            Some(json!({ "revoke_sessions": true })),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let closed = ws.wait_closed().await;
    assert_eq!(closed.code, close::PERMISSION_DENIED);
    assert!(closed.reason.starts_with("invalid_token: "), "{closed:?}");
    let denials = collab.wait_denials(1).await;
    assert!(denials[0].starts_with("invalid_token: "), "{denials:?}");

    // The old link no longer joins; the new one does; the revoked session is refused by REST.
    let old = request(
        server.addr,
        "POST",
        "/api/join",
        None,
        Some(&json!({ "invite": review.invites["participant"], "name": "P" })),
    )
    .await;
    old.assert_error(401, "invalid_invite");
    let new_token = rotated.body["invite"]["token"].as_str().expect("token");
    let joined = request(
        server.addr,
        "POST",
        "/api/join",
        None,
        Some(&json!({ "invite": new_token, "name": "P" })),
    )
    .await;
    assert_eq!(joined.status, 201);
    review
        .call("participant", "GET", "", None)
        .await
        .assert_error(401, "invalid_token");
}

#[tokio::test]
async fn bad_inputs_get_their_documented_errors() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let review = Review::create(addr, "Errors").await;
    let other = Review::create(addr, "Another review").await;

    // Creating.
    request(
        addr,
        "POST",
        "/api/reviews",
        None,
        Some(&json!({ "title": "  " })),
    )
    .await
    .assert_error(400, "invalid_title");
    request(
        addr,
        "POST",
        "/api/reviews",
        None,
        Some(&json!({ "title": "x", "incident_date": "2026-02-30" })),
    )
    .await
    .assert_error(400, "invalid_incident_date");
    send(addr, "POST", "/api/reviews", None, Some("{not json"))
        .await
        .assert_error(400, "invalid_json");
    request(
        addr,
        "POST",
        "/api/reviews",
        None,
        Some(&json!({ "title": "x", "colour": "red" })),
    )
    .await
    .assert_error(400, "invalid_json");

    // Joining and tokens.
    request(
        addr,
        "POST",
        "/api/join",
        None,
        Some(&json!({ "invite": "dbi_nope", "name": "A" })),
    )
    .await
    .assert_error(401, "invalid_invite");
    request(
        addr,
        "POST",
        "/api/join",
        None,
        Some(&json!({ "invite": review.invites["author"], "name": "" })),
    )
    .await
    .assert_error(400, "invalid_name");
    request(
        addr,
        "POST",
        "/api/join",
        None,
        Some(&json!({ "invite": review.invites["author"], "name": "anonymous" })),
    )
    .await
    .assert_error(400, "invalid_name");
    let path = format!("/api/reviews/{}", review.id);
    request(addr, "GET", &path, None, None)
        .await
        .assert_error(401, "missing_token");
    request(addr, "GET", &path, Some("dbs_forged"), None)
        .await
        .assert_error(401, "invalid_token");
    request(addr, "GET", &path, Some(&other.sessions["author"]), None)
        .await
        .assert_error(403, "other_review");
    request(
        addr,
        "GET",
        "/api/reviews/0123456789abcdef",
        Some(&review.sessions["author"]),
        None,
    )
    .await
    .assert_error(404, "unknown_review");

    // Reading a review shows counts by role, never names.
    let read = review.call("observer", "GET", "", None).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.body["participants"],
        json!({ "facilitator": 1, "author": 1, "participant": 1, "observer": 1 })
    );
    assert_eq!(read.body["phase"], "draft");

    // Phases.
    let illegal = review
        .call(
            "facilitator",
            "POST",
            "/phase",
            Some(json!({ "phase": "closed" })),
        )
        .await;
    assert_eq!(
        illegal.assert_error(409, "illegal_transition"),
        "a review in draft cannot move to closed: it can only move to review"
    );
    review
        .call(
            "facilitator",
            "POST",
            "/phase",
            Some(json!({ "phase": "later" })),
        )
        .await
        .assert_error(400, "invalid_phase");
    let wrong_role = review
        .call(
            "author",
            "POST",
            "/phase",
            Some(json!({ "phase": "review" })),
        )
        .await;
    assert_eq!(
        wrong_role.assert_error(403, "not_allowed"),
        "only the facilitator can do this; authors cannot"
    );
    review
        .call("participant", "POST", "/invites/author", None)
        .await
        .assert_error(403, "not_allowed");
    review
        .call("facilitator", "POST", "/invites/boss", None)
        .await
        .assert_error(400, "invalid_role");

    // Comments: who and when.
    let early = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "hi" })),
        )
        .await;
    assert_eq!(
        early.assert_error(403, "not_allowed"),
        "participants cannot comment while the review is in draft"
    );
    review.move_to("review").await;
    review
        .call(
            "observer",
            "POST",
            "/threads",
            Some(json!({ "body": "hi" })),
        )
        .await
        .assert_error(403, "not_allowed");
    review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "x".repeat(4001) })),
        )
        .await
        .assert_error(413, "body_too_long");
    review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": " " })),
        )
        .await
        .assert_error(400, "invalid_body");

    // Anchors.
    let anchored = |start: &str, end: &str| json!({ "body": "b", "anchor": { "start": start, "end": end, "quote": "q" } });
    review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(anchored("%%%", "AA==")),
        )
        .await
        .assert_error(400, "invalid_anchor");
    review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(anchored("/////w==", "AA==")),
        )
        .await
        .assert_error(400, "invalid_anchor");
    // Well-formed positions that belong to another review's report.
    let (start, end) = anchor_in_summary(&server, &other).await;
    review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(anchored(&start, &end)),
        )
        .await
        .assert_error(422, "anchor_not_in_report");
    // A position in a root type of the report document other than the fragment.
    let notes_root = yrs::StickyIndex::new(yrs::IndexScope::Root("notes".into()), Assoc::After);
    let notes_root = b64(&notes_root.encode_v1());
    review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(anchored(&notes_root, &notes_root)),
        )
        .await
        .assert_error(422, "anchor_not_in_report");

    // Thread commands on things that do not exist, or are someone else's.
    let thread = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "mine" })),
        )
        .await;
    assert_eq!(thread.status, 201);
    let tid = thread.body["id"].as_str().expect("thread id");
    let cid = thread.body["comments"][0]["id"]
        .as_str()
        .expect("comment id");
    review
        .call(
            "author",
            "PATCH",
            &format!("/threads/{tid}/comments/{cid}"),
            Some(json!({ "body": "x" })),
        )
        .await
        .assert_error(403, "not_author");
    review
        .call(
            "author",
            "DELETE",
            &format!("/threads/{tid}/comments/{cid}"),
            None,
        )
        .await
        .assert_error(403, "not_author");
    review
        .call("author", "POST", &format!("/threads/{tid}/resolve"), None)
        .await
        .assert_error(403, "not_allowed");
    review
        .call(
            "author",
            "POST",
            "/threads/nope/comments",
            Some(json!({ "body": "x" })),
        )
        .await
        .assert_error(404, "unknown_thread");
    review
        .call(
            "participant",
            "PATCH",
            &format!("/threads/{tid}/comments/nope"),
            Some(json!({ "body": "x" })),
        )
        .await
        .assert_error(404, "unknown_comment");

    // Closed: nobody comments.
    review.move_to("meeting").await;
    review.move_to("closed").await;
    let closed = review
        .call(
            "facilitator",
            "POST",
            "/threads",
            Some(json!({ "body": "late" })),
        )
        .await;
    assert_eq!(
        closed.assert_error(403, "not_allowed"),
        "the review is closed: comments are read-only"
    );
    review
        .call(
            "facilitator",
            "POST",
            "/phase",
            Some(json!({ "phase": "draft" })),
        )
        .await
        .assert_error(409, "illegal_transition");

    // Unknown routes and methods answer JSON too.
    request(addr, "GET", "/api/nothing", None, None)
        .await
        .assert_error(404, "not_found");
    request(addr, "PUT", "/api/join", None, None)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn review_creation_can_require_a_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir,
        debrief_server::Config {
            creation_secret: Some(debrief_server::documents::peer::Credential::new(
                "let-me-create",
            )),
            ..debrief_server::Config::new("unused")
        },
    )
    .await;
    let body = json!({ "title": "Guarded" });
    request(server.addr, "POST", "/api/reviews", None, Some(&body))
        .await
        .assert_error(401, "creation_not_allowed");
    request(
        server.addr,
        "POST",
        "/api/reviews",
        Some("wrong"),
        Some(&body),
    )
    .await
    .assert_error(401, "creation_not_allowed");
    let ok = request(
        server.addr,
        "POST",
        "/api/reviews",
        Some("let-me-create"),
        Some(&body),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}

#[tokio::test]
async fn review_documents_need_a_session_and_others_follow_the_fallback() {
    // Without open access, documents outside reviews are not served at all.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(
        dir,
        debrief_server::Config {
            authorizer: std::sync::Arc::new(debrief_server::documents::access::ReviewsOnly),
            ..debrief_server::Config::new("unused")
        },
    )
    .await;
    let mut other = Client::connect(&server.ws_url("scratch")).await;
    let closed = other.wait_closed().await;
    assert_eq!(closed.code, close::PERMISSION_DENIED);
    assert!(
        closed.reason.starts_with("unknown_document: "),
        "{closed:?}"
    );
    // A review document with no session, or for a review that does not exist.
    let review = Review::create(server.addr, "Sessions").await;
    let mut anonymous = Client::connect(&server.ws_url(&review.doc("report"))).await;
    assert!(anonymous
        .wait_closed()
        .await
        .reason
        .starts_with("invalid_token: "));
    let mut missing = Client::connect_collab(
        &server.collab_url(),
        "review.00000000000000000000000000000000.report",
        &review.sessions["author"],
    )
    .await;
    let denials = missing.wait_denials(1).await;
    assert!(denials[0].starts_with("unknown_review: "), "{denials:?}");
}

/// Positions around the first word of the Summary paragraph of `review`'s report, read by the
/// review's author over the y-websocket dialect, as base64. The template leaves the paragraph
/// empty (its guidance is the editor's placeholder), so the author first writes "Two or three
/// causes." there, once.
async fn anchor_in_summary(server: &TestServer, review: &Review) -> (String, String) {
    let mut author = Client::connect(&ws_url(
        server,
        &review.doc("report"),
        &review.sessions["author"],
    ))
    .await;
    author.wait_synced().await;
    let doc = author.doc.clone();
    let fragment = doc.get_or_insert_xml_fragment("default");
    let written = {
        let mut txn = doc.transact_mut();
        let Some(XmlOut::Element(paragraph)) = fragment.get(&txn, 2) else {
            panic!("the Summary paragraph is the third node");
        };
        if paragraph.len(&txn) == 0 {
            paragraph.push_back(&mut txn, XmlTextPrelim::new("Two or three causes."));
            true
        } else {
            false
        }
    };
    if written {
        author.round_trip().await;
    }
    let txn = doc.transact();
    let Some(XmlOut::Element(paragraph)) = fragment.get(&txn, 2) else {
        panic!("the Summary paragraph is the third node");
    };
    let Some(XmlOut::Text(text)) = paragraph.get(&txn, 0) else {
        panic!("the paragraph holds text");
    };
    assert!(text.get_string(&txn).starts_with("Two or three"));
    let start = text.sticky_index(&txn, 0, Assoc::After).expect("start");
    let end = text.sticky_index(&txn, 3, Assoc::Before).expect("end");
    (b64(&start.encode_v1()), b64(&end.encode_v1()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `discussion` document as a `/collab` reader sees it: thread id → JSON.
async fn threads_seen(server: &TestServer, review: &Review, role: &str) -> serde_json::Value {
    let mut reader = Client::connect_collab(
        &server.collab_url(),
        &review.doc("discussion"),
        &review.sessions[role],
    )
    .await;
    reader.wait_authenticated().await;
    reader.wait_synced().await;
    let threads = reader.doc.get_or_insert_map("threads");
    let txn = reader.doc.transact();
    let mut out = serde_json::Map::new();
    for (id, value) in threads.iter(&txn) {
        let Out::YMap(thread) = value else {
            panic!("a thread is a map");
        };
        let json = serde_json::to_value(thread.to_json(&txn)).expect("json");
        out.insert(id.to_owned(), json);
    }
    serde_json::Value::Object(out)
}

#[tokio::test]
async fn threads_are_written_by_the_server_and_survive_a_restart() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Restart").await;
    let (start, end) = anchor_in_summary(&server, &review).await;
    review.move_to("review").await;
    let created = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "Is this true?", "anchor": { "start": start, "end": end, "quote": "Two" } })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let tid = created.body["id"].as_str().expect("id").to_owned();
    let reply = review
        .call(
            "author",
            "POST",
            &format!("/threads/{tid}/comments"),
            Some(json!({ "body": "Yes." })),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let resolved = review
        .call(
            "facilitator",
            "POST",
            &format!("/threads/{tid}/resolve"),
            None,
        )
        .await;
    assert_eq!(resolved.body["resolved"], true);

    let seen = threads_seen(&server, &review, "observer").await;
    let thread = &seen[&tid];
    assert_eq!(thread["anchor"]["quote"], "Two");
    assert_eq!(thread["resolved"], true);
    assert_eq!(
        thread["comments"][0]["author"]["name"],
        "participant person"
    );
    assert_eq!(thread["comments"][1]["body"], "Yes.");

    let server = server.restart().await;
    let review = Review {
        addr: server.addr,
        ..review
    };
    let read = review.call("participant", "GET", "", None).await;
    assert_eq!(read.status, 200, "sessions survive: {}", read.body);
    assert_eq!(read.body["phase"], "review");
    assert_eq!(read.body["title"], "Restart");
    assert_eq!(threads_seen(&server, &review, "observer").await, seen);
    // The template is still there, and invites still work.
    let (again, _) = anchor_in_summary(&server, &review).await;
    assert_eq!(again, start);
    review.join("observer", "Late reader").await;
    let read = review.call("facilitator", "GET", "", None).await;
    assert_eq!(read.body["participants"]["observer"], 2);
}

/// Issue 16: "Anonymous" could be impersonated with a zero-width space, a Cyrillic `о` or a
/// right-to-left override. Names are normalised at join, and look-alikes are refused.
#[tokio::test]
async fn display_names_are_normalised_and_anonymous_cannot_be_impersonated() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Names").await;
    let join = |name: &'static str| {
        let review = review.clone();
        async move {
            request(
                review.addr,
                "POST",
                "/api/join",
                None,
                Some(&json!({ "invite": review.invites["participant"], "name": name })),
            )
            .await
        }
    };
    for name in [
        "Anonymous\u{200B}",
        "An\u{043E}nymous",
        "\u{202E}Anonymous",
        "\u{FF21}nonymous",
        " anonymous\u{00A0}",
    ] {
        let message = join(name).await.assert_error(400, "invalid_name");
        assert_eq!(
            message, "\"Anonymous\" is reserved for anonymous items; choose another name",
            "{name:?}"
        );
    }
    join("\u{200B}\u{2066}")
        .await
        .assert_error(400, "invalid_name");
    // The normal form is what is stored and shown.
    let joined = join("\u{202E}Ada\u{200B}   Lovelace\u{FEFF}").await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.body["review"]["you"]["name"], "Ada Lovelace");
    let read = request(
        server.addr,
        "GET",
        &format!("/api/reviews/{}", review.id),
        joined.body["session"].as_str(),
        None,
    )
    .await;
    assert_eq!(read.body["you"]["name"], "Ada Lovelace");
    assert_eq!(read.body["participants"]["participant"], 2);
}

/// The join page names what an invite joins before anyone gives a name, and every session is
/// told what it may do in each phase: the same answers the server gives when it is tried.
#[tokio::test]
async fn invites_name_their_review_and_sessions_know_what_they_may_do() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Checkout outage").await;
    for role in ROLES {
        let found = request(
            server.addr,
            "POST",
            "/api/invite",
            None,
            Some(&json!({ "invite": review.invites[role] })),
        )
        .await;
        assert_eq!(found.status, 200, "{}", found.body);
        assert_eq!(
            found.body,
            json!({ "title": "Checkout outage", "phase": "draft", "role": role })
        );
    }
    request(
        server.addr,
        "POST",
        "/api/invite",
        None,
        Some(&json!({ "invite": "dbi_nope" })),
    )
    .await
    .assert_error(401, "invalid_invite");

    let name = |e: Expect| match e {
        D => "none",
        R => "read",
        W => "write",
    };
    for (i, (phase, docs)) in TABLE.iter().enumerate() {
        if i > 0 {
            review.move_to(phase).await;
        }
        for (r, role) in ROLES.iter().enumerate() {
            let read = review.call(role, "GET", "", None).await;
            // One person per role: who may post anonymously is who may comment.
            assert_eq!(
                read.body["anonymous"]["posters"],
                json!({ "draft": 1, "review": 3, "meeting": 3, "closed": 0 })
            );
            let may = &read.body["you"]["may"][phase];
            for (kind, row) in docs.iter().filter(|(k, _)| *k != "discussion") {
                assert_eq!(may[kind], name(row[r]), "{role} on {kind} in {phase}");
            }
            // Commenting as it is told: a general comment goes through exactly when `comment`.
            let tried = review
                .call(
                    role,
                    "POST",
                    "/threads",
                    Some(json!({ "body": "a comment" })),
                )
                .await;
            assert_eq!(
                may["comment"],
                tried.status == 201,
                "{role} commenting in {phase}: {}",
                tried.body
            );
            let action = review
                .call(
                    role,
                    "POST",
                    "/actions",
                    Some(json!({ "what": "Cap retries", "why": "Load", "kind": "prevent", "owner": "Payments" })),
                )
                .await;
            assert_eq!(
                may["actions"],
                action.status == 201,
                "{role} adding an action in {phase}: {}",
                action.body
            );
            assert_eq!(may["chair"], *role == "facilitator" && *phase == "meeting");
        }
    }
}
