//! Anonymous comments, replies, concerns and votes (`docs/anonymity.md`): the adversary test
//! that records everything others receive and reads the store and the trace-level logs, keys
//! that edit and retract, moderation, rate limits, release modes, and a crash in a batch window.
//! The adversary and the crash run on sled, on PostgreSQL and on a node of a cluster.

use std::collections::HashSet;

use debrief_tests::api::{request, Reply, Review};
use debrief_tests::postgres::{Backend, Part};
use debrief_tests::{ChildServer, Client, TestServer};
use serde_json::{json, Value};
use yrs::types::ToJson;
use yrs::{ReadTxn, Transact};

/// The `discussion` replica of `client` as JSON: `{threads, concerns}`.
fn discussion_json(client: &Client) -> Value {
    let txn = client.doc.transact();
    let root = |name: &str| {
        txn.get_map(name)
            .map(|m| serde_json::to_value(m.to_json(&txn)).expect("json"))
            .unwrap_or(Value::Null)
    };
    json!({ "threads": root("threads"), "concerns": root("concerns") })
}

/// A `/collab` reader of the review's discussion for `role`, synced.
async fn discussion_reader(url: &str, review: &Review, token: &str) -> Client {
    let mut c = Client::connect_collab(url, &review.doc("discussion"), token).await;
    c.wait_authenticated().await;
    c.wait_synced().await;
    c
}

/// Waits until the reader's discussion satisfies `cond`.
async fn wait_discussion(reader: &mut Client, what: &str, cond: impl Fn(&Value) -> bool) {
    let doc = reader.doc.clone();
    reader
        .wait_doc(what, move |_| {
            let txn = doc.transact();
            let root = |name: &str| {
                txn.get_map(name)
                    .map(|m| serde_json::to_value(m.to_json(&txn)).expect("json"))
                    .unwrap_or(Value::Null)
            };
            cond(&json!({ "threads": root("threads"), "concerns": root("concerns") }))
        })
        .await;
}

fn concern_with<'a>(d: &'a Value, body: &str) -> Option<&'a Value> {
    d["concerns"]
        .as_object()?
        .values()
        .find(|c| c["body"] == body)
}

fn comment_with<'a>(d: &'a Value, body: &str) -> Option<&'a Value> {
    d["threads"]
        .as_object()?
        .values()
        .flat_map(|t| t["comments"].as_array().into_iter().flatten())
        .find(|c| c["body"] == body)
}

async fn post(review: &Review, token: &str, path: &str, body: Value) -> Reply {
    let path = format!("/api/reviews/{}{path}", review.id);
    request(review.addr, "POST", &path, Some(token), Some(&body)).await
}

/// Every file under `dir`, concatenated.
fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

/// Whether `haystack` holds a loopback address other than `own`, the address where a node of a
/// cluster listens for its links (which the node records in the database for the other nodes,
/// and which is no client's).
fn holds_address(haystack: &[u8], own: Option<&str>) -> bool {
    memchr::memmem::find_iter(haystack, b"127.0.0.1").any(|at| {
        let rest = &haystack[at..];
        !own.is_some_and(|own| {
            rest.starts_with(own.as_bytes()) && !rest.get(own.len()).is_some_and(u8::is_ascii_digit)
        })
    })
}

#[tokio::test]
async fn the_adversary_cannot_link_anonymous_items_to_their_author() {
    adversary_cannot_link(Backend::Sled).await;
}

/// The same on PostgreSQL (issue 18): the database's rows, its files and the write-ahead log
/// are read as the data directory is.
#[tokio::test]
async fn the_adversary_cannot_link_anonymous_items_to_their_author_on_postgres() {
    adversary_cannot_link(Backend::postgres().await).await;
}

/// The same on a node of a cluster (issue 18), whose held items are sealed slots of the table
/// `held_slots`, written on ticks, instead of the held file: the copy has no held file, and the
/// slots, opened with the cluster secret (which the test holds), are read where the held file
/// is read on the other backends.
#[tokio::test]
async fn the_adversary_cannot_link_anonymous_items_to_their_author_on_a_cluster_node() {
    adversary_cannot_link(Backend::cluster().await).await;
}

async fn adversary_cannot_link(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    const CADENCE_MS: u64 = 3000;
    let flags = backend.args();
    let mut args = vec!["--anonymous-cadence-secs", "3"];
    args.extend(flags.iter().map(String::as_str));
    let server = ChildServer::start_with(&data, &args, Some(&log)).await;
    let mut review = Review::create(server.addr, "Database failover").await;
    let url = server.collab_url();

    // Zelda writes anonymously; Bob and Carol are named; everyone else watches.
    let zelda = review.join("participant", "Zelda Quux").await;
    let bob = review.join("participant", "Bob Named").await;
    let carol = review.join("participant", "Carol Named").await;
    let zelda_participant = {
        let r = request(
            review.addr,
            "GET",
            &format!("/api/reviews/{}", review.id),
            Some(&zelda),
            None,
        )
        .await;
        r.body["you"]["participant"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    review.sessions.insert("bob".into(), bob.clone());
    review.move_to("review").await;

    // Zelda is present in the report (her name and Yjs client id are in awareness) and reads
    // the discussion, like a browser would.
    let zelda_report = {
        let mut c = Client::connect_collab(&url, &review.doc("report"), &zelda).await;
        c.wait_synced().await;
        c
    };
    let zelda_client_id = zelda_report.doc.client_id().get();
    zelda_report.set_awareness(
        zelda_client_id,
        1,
        r##"{"user":{"name":"Zelda Quux","color":"#123456"}}"##,
    );
    let zelda_discussion = discussion_reader(&url, &review, &zelda).await;
    let zelda_ids: HashSet<u64> = [zelda_client_id, zelda_discussion.doc.client_id().get()].into();

    // What everyone else receives, over both dialects and every document.
    let mut watchers = Vec::new();
    for token in [
        &bob,
        &carol,
        &review.sessions["observer"],
        &review.sessions["facilitator"],
    ] {
        for kind in ["report", "discussion"] {
            let mut ws = Client::connect(&format!(
                "{}?token={token}",
                server.ws_url(&review.doc(kind))
            ))
            .await;
            ws.wait_synced().await;
            let mut collab = Client::connect_collab(&url, &review.doc(kind), token).await;
            collab.wait_synced().await;
            watchers.push(ws);
            watchers.push(collab);
        }
    }
    let mut rest_seen: Vec<String> = Vec::new();

    // Named activity and an earlier concern, released first.
    let named = post(
        &review,
        &carol,
        "/threads",
        json!({ "body": "Named: why a manual failover?" }),
    )
    .await;
    assert_eq!(named.status, 201);
    rest_seen.push(named.body.to_string());
    let named_thread = named.body["id"].as_str().expect("id").to_owned();
    let early = post(
        &review,
        &bob,
        "/concerns",
        json!({ "body": "Concern: the runbook is stale" }),
    )
    .await;
    assert_eq!(early.status, 202, "{}", early.body);
    // A batch holds more than one person's items: Carol's goes out with Bob's.
    let carols = post(
        &review,
        &carol,
        "/concerns",
        json!({ "body": "Concern: too few people know the failover" }),
    )
    .await;
    assert_eq!(carols.status, 202, "{}", carols.body);
    let mut observer = discussion_reader(&url, &review, &review.sessions["observer"]).await;
    wait_discussion(&mut observer, "the first concern", |d| {
        concern_with(d, "Concern: the runbook is stale").is_some()
    })
    .await;
    let early_id = concern_with(&discussion_json(&observer), "Concern: the runbook is stale")
        .expect("concern")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Zelda's anonymous activity, among named replies by Bob.
    let secret_texts = [
        "Anonymous: the on-call was alone for six hours",
        "Anonymous reply: nobody could have caught this",
        "Concern: we punish people who escalate",
    ];
    let a = post(
        &review,
        &zelda,
        "/anonymous/threads",
        json!({ "body": secret_texts[0] }),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let bob_reply = post(
        &review,
        &bob,
        &format!("/threads/{named_thread}/comments"),
        json!({ "body": "Named reply from Bob" }),
    )
    .await;
    rest_seen.push(bob_reply.body.to_string());
    let r = post(
        &review,
        &zelda,
        &format!("/anonymous/threads/{named_thread}/comments"),
        json!({ "body": secret_texts[1] }),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let c = post(
        &review,
        &zelda,
        "/concerns",
        json!({ "body": secret_texts[2] }),
    )
    .await;
    assert_eq!(c.status, 202, "{}", c.body);
    let v = post(
        &review,
        &zelda,
        &format!("/concerns/{early_id}/support"),
        json!({}),
    )
    .await;
    assert_eq!(v.status, 202, "{}", v.body);
    // Bob posts in the same window, so Zelda's items are not alone in their batch.
    let bobs = post(
        &review,
        &bob,
        "/concerns",
        json!({ "body": "Concern: alerts page the wrong team" }),
    )
    .await;
    assert_eq!(bobs.status, 202, "{}", bobs.body);
    let item_ids: Vec<String> = [&a, &r, &c]
        .iter()
        .map(|x| {
            let item = &x.body["item"];
            item["comment"]
                .as_str()
                .or(item["concern"].as_str())
                .expect("item id")
                .to_owned()
        })
        .collect();
    let keys: Vec<String> = [&a, &r, &c]
        .iter()
        .map(|x| x.body["key"].as_str().expect("key").to_owned())
        .collect();
    for reply in [&a, &r, &c, &v] {
        // The submitter learns only when it appears.
        assert_eq!(reply.body["release"], "batch");
        assert_eq!(
            reply.body["release_after"].as_u64().expect("time") % CADENCE_MS,
            0
        );
    }

    wait_discussion(&mut observer, "Zelda's items and vote", |d| {
        secret_texts[..2]
            .iter()
            .all(|t| comment_with(d, t).is_some())
            && concern_with(d, secret_texts[2]).is_some()
            && concern_with(d, "Concern: the runbook is stale")
                .is_some_and(|c| c["votes"].as_array().is_some_and(|v| v.len() == 1))
    })
    .await;
    for w in &mut watchers {
        w.round_trip().await;
    }
    let read = request(
        review.addr,
        "GET",
        &format!("/api/reviews/{}", review.id),
        Some(&bob),
        None,
    )
    .await;
    rest_seen.push(read.body.to_string());
    // Exports and pinned versions carry no author either.
    review.move_to("meeting").await;
    for path in [
        "export.md",
        "export.json",
        "versions",
        "versions/review",
        "versions/meeting",
    ] {
        let url = format!("/api/reviews/{}/{path}", review.id);
        let (status, body) = debrief_tests::api::get_text(review.addr, &url, &bob).await;
        assert_eq!(status, 200, "{path}: {body}");
        if path == "export.md" {
            for t in &secret_texts {
                assert!(body.contains(t), "the export holds every anonymous item");
            }
            assert!(body.contains("**Anonymous**"), "{body}");
        }
        rest_seen.push(body);
    }
    let final_view = discussion_json(&observer);

    // In the document: no author on anonymous items, times on batch boundaries, and nothing
    // but the server ever wrote the discussion.
    for t in &secret_texts[..2] {
        let comment = comment_with(&final_view, t).expect("released");
        assert_eq!(comment["author"], Value::Null);
        assert_eq!(comment["anonymous"], true);
        assert_eq!(
            comment["createdAt"].as_f64().expect("time") as u64 % CADENCE_MS,
            0
        );
    }
    let concern = concern_with(&final_view, secret_texts[2]).expect("released");
    assert_eq!(
        concern["createdAt"].as_f64().expect("time") as u64 % CADENCE_MS,
        0
    );
    let writers: Vec<u64> = {
        let txn = observer.doc.transact();
        txn.state_vector().iter().map(|(c, _)| c.get()).collect()
    };
    let client_ids: HashSet<u64> = watchers
        .iter()
        .map(|w| w.doc.client_id().get())
        .chain(zelda_ids.iter().copied())
        .collect();
    assert!(!writers.is_empty());
    for w in &writers {
        assert!(
            !client_ids.contains(w),
            "a client's id {w} wrote the discussion"
        );
    }

    // Everything the others received: anonymous texts arrive only at batch boundaries, never
    // together with anything of Zelda's.
    let zelda_marks = [
        "Zelda Quux".to_owned(),
        zelda_participant.clone(),
        zelda.clone(),
        review.invites["participant"].clone(),
    ];
    let mut released_at = Vec::new();
    for w in &watchers {
        for (at, frame) in w.frames() {
            let anonymous = secret_texts.iter().any(|t| contains(&frame, t));
            if anonymous {
                released_at.push(at);
                for mark in &zelda_marks {
                    assert!(
                        !contains(&frame, mark),
                        "a frame with an anonymous item carries {mark}"
                    );
                }
            }
            assert!(
                !contains(&frame, &zelda),
                "Zelda's session token was sent to someone"
            );
        }
    }
    assert!(
        !released_at.is_empty(),
        "the watchers received the anonymous items"
    );
    for at in &released_at {
        assert!(
            at % CADENCE_MS < CADENCE_MS / 2,
            "an anonymous item arrived {} ms after a boundary",
            at % CADENCE_MS
        );
    }
    for body in &rest_seen {
        for mark in &zelda_marks {
            assert!(
                !body.contains(mark.as_str()),
                "a REST answer to someone else carries {mark}"
            );
        }
    }

    // The store and the logs, read after the server stopped.
    drop(watchers);
    let links = server.links.map(|a| a.to_string());
    server.terminate().await;
    let mut copy = backend.copy(&data).await;
    // The held items: in the held file of the data directory, which the copy holds; on a node
    // of a cluster, in sealed slots of the database, which it holds sealed. Opened with the
    // secret, they are read as the held file is, and as stored records.
    let opened: Vec<(std::path::PathBuf, Vec<u8>)> = match backend.unsealed().await {
        Some(slots) => {
            assert!(
                !data.join("held").exists(),
                "a cluster node has no held file"
            );
            slots
                .into_iter()
                .map(|(slot, plain)| (format!("held_slots/{slot} (opened)").into(), plain))
                .collect()
        }
        None => Vec::new(),
    };
    copy.extend(opened.iter().cloned());
    // Released items are wiped from where they were held (docs/anonymity.md: "Then the slots are
    // wiped"), also when the server stopped soon after their release.
    let held_file = data.join("held").join("slots");
    assert_eq!(
        copy.iter().any(|(path, _)| *path == held_file),
        opened.is_empty(),
        "the items were held in the held file or, on a node of a cluster, in sealed slots"
    );
    for (path, bytes) in copy
        .iter()
        .filter(|(path, _)| *path == held_file || opened.iter().any(|(p, _)| p == path))
    {
        for t in &secret_texts {
            assert!(
                !contains(bytes, t),
                "{} still holds the released item {t:?} after a clean stop",
                path.display()
            );
        }
    }
    // The copy sees what was stored: named writes, in the write-ahead log too.
    for part in [None, Some(Part::Row), Some(Part::Wal)] {
        if part.is_some() && matches!(backend, Backend::Sled) {
            continue;
        }
        assert!(
            copy.iter()
                .any(|(path, bytes)| (part.is_none() || Part::of(path) == part)
                    && contains(bytes, "Named: why a manual failover?")),
            "the copy ({part:?}) holds the named comment"
        );
    }
    for (path, bytes) in &copy {
        for secret in [
            &zelda,
            &review.invites["participant"],
            &keys[0],
            &keys[1],
            &keys[2],
        ] {
            assert!(
                !contains(bytes, secret),
                "a token or key is stored in clear in {}",
                path.display()
            );
        }
        // The write-ahead log is the whole PostgreSQL cluster's, other tests' data included.
        if Part::of(path) != Some(Part::Wal) {
            assert!(
                !holds_address(bytes, links.as_deref()),
                "an address is stored in {}",
                path.display()
            );
        }
    }
    // Every stored record (a sled entry, a table's row) that is about an anonymous item.
    let records: Vec<Vec<u8>> = match &backend {
        Backend::Sled => {
            let db = sled::open(&data).expect("open the store after the server stopped");
            let mut records = Vec::new();
            for name in db.tree_names() {
                let tree = db.open_tree(&name).expect("tree");
                for kv in tree.iter() {
                    let (k, v) = kv.expect("entry");
                    let mut record = k.to_vec();
                    record.extend_from_slice(&v);
                    records.push(record);
                }
            }
            records
        }
        Backend::Postgres(_) | Backend::Cluster(..) => copy
            .iter()
            .filter(|(path, _)| Part::of(path) == Some(Part::Row))
            .chain(&opened)
            .map(|(_, row)| row.clone())
            .collect(),
    };
    let zelda_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(zelda.as_bytes()))
    };
    let mut about_anonymous = 0;
    for record in &records {
        if secret_texts.iter().any(|t| contains(record, t))
            || item_ids.iter().any(|id| contains(record, id))
        {
            about_anonymous += 1;
            for mark in zelda_marks.iter().chain([&zelda_hash]) {
                assert!(
                    !contains(record, mark),
                    "a stored record links an anonymous item to {mark}"
                );
            }
        }
    }
    assert!(about_anonymous > 0, "the released items are stored");
    let logs = std::fs::read_to_string(&log).expect("read the log");
    assert!(logs.lines().count() > 20, "trace logging was on");
    for line in logs.lines() {
        for mark in zelda_marks.iter().chain(&keys).chain(&item_ids) {
            assert!(
                !line.contains(mark.as_str()),
                "the log mentions {mark}: {line}"
            );
        }
        for t in &secret_texts {
            assert!(!line.contains(t), "the log holds an anonymous text: {line}");
        }
        for id in &zelda_ids {
            assert!(
                !line.contains(&id.to_string()),
                "the log holds Zelda's client id: {line}"
            );
        }
        if line.contains("127.0.0.1") {
            assert!(
                line.contains("listening"),
                "the log holds an address: {line}"
            );
        }
    }
}

/// A review on an in-process server whose anonymous items are released every 200 ms.
async fn quick_server() -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    TestServer::start_with(
        dir,
        debrief_server::Config {
            anonymous_cadence: std::time::Duration::from_millis(200),
            ..debrief_server::Config::new("unused")
        },
    )
    .await
}

#[tokio::test]
async fn keys_edit_and_retract_moderation_hides_and_votes_count_once() {
    let server = quick_server().await;
    let review = Review::create(server.addr, "Keys").await;
    review.move_to("review").await;
    let pat = review.sessions["participant"].clone();
    let fay = review.sessions["facilitator"].clone();
    let mut watcher =
        discussion_reader(&server.collab_url(), &review, &review.sessions["observer"]).await;

    let raised = post(&review, &pat, "/concerns", json!({ "body": "First words" })).await;
    assert_eq!(raised.status, 202);
    let concern = raised.body["item"]["concern"]
        .as_str()
        .expect("id")
        .to_owned();
    let key = raised.body["key"].as_str().expect("key").to_owned();
    // A wrong key is refused, whoever sends it.
    post(
        &review,
        &pat,
        &format!("/anonymous/{concern}/edit"),
        json!({ "key": "0".repeat(64), "body": "x" }),
    )
    .await
    .assert_error(403, "wrong_key");
    post(
        &review,
        &pat,
        &format!("/anonymous/{concern}/edit"),
        json!({ "key": key, "body": "Second words" }),
    )
    .await;
    wait_discussion(&mut watcher, "the edited concern", |d| {
        concern_with(d, "Second words").is_some()
    })
    .await;
    assert!(
        concern_with(&discussion_json(&watcher), "First words").is_none(),
        "held text was replaced"
    );
    assert_eq!(
        concern_with(&discussion_json(&watcher), "Second words").expect("released")["editedAt"],
        Value::Null,
        "edited before anyone saw it: shown as written, not as edited"
    );

    // Anyone may support it once.
    let support = |token: String| {
        let review = review.clone();
        let concern = concern.clone();
        async move {
            post(
                &review,
                &token,
                &format!("/concerns/{concern}/support"),
                json!({}),
            )
            .await
        }
    };
    assert_eq!(support(pat.clone()).await.status, 202);
    assert_eq!(support(fay.clone()).await.status, 202);
    support(pat.clone())
        .await
        .assert_error(409, "already_supported");
    wait_discussion(&mut watcher, "two votes", |d| {
        concern_with(d, "Second words")
            .is_some_and(|c| c["votes"].as_array().is_some_and(|v| v.len() == 2))
    })
    .await;
    post(&review, &pat, "/concerns/nope/support", json!({}))
        .await
        .assert_error(404, "unknown_concern");

    // Edited after release, then retracted: the key stops working.
    post(
        &review,
        &pat,
        &format!("/anonymous/{concern}/edit"),
        json!({ "key": key, "body": "Third words" }),
    )
    .await;
    wait_discussion(&mut watcher, "the second edit", |d| {
        concern_with(d, "Third words").is_some_and(|c| c["editedAt"].as_f64().is_some())
    })
    .await;
    let retracted = post(
        &review,
        &pat,
        &format!("/anonymous/{concern}/retract"),
        json!({ "key": key }),
    )
    .await;
    assert_eq!(retracted.status, 202);
    wait_discussion(&mut watcher, "the retraction", |d| {
        concern_with(d, "Third words").is_none()
    })
    .await;
    post(
        &review,
        &pat,
        &format!("/anonymous/{concern}/retract"),
        json!({ "key": key }),
    )
    .await
    .assert_error(403, "wrong_key");

    // An anonymous comment hidden by the facilitator: gone for everyone, marked hidden.
    let said = post(
        &review,
        &pat,
        "/anonymous/threads",
        json!({ "body": "Something abusive" }),
    )
    .await;
    let item = said.body["item"].clone();
    wait_discussion(&mut watcher, "the comment", |d| {
        comment_with(d, "Something abusive").is_some()
    })
    .await;
    post(&review, &pat, "/moderation/hide", item.clone())
        .await
        .assert_error(403, "not_allowed");
    let hidden = post(&review, &fay, "/moderation/hide", item.clone()).await;
    assert_eq!(hidden.status, 204, "{}", hidden.body);
    wait_discussion(&mut watcher, "the hidden comment", |d| {
        d["threads"].as_object().is_some_and(|t| {
            t.values()
                .any(|t| t["comments"][0]["hidden"] == true && t["comments"][0]["body"] == "")
        })
    })
    .await;
    let key = said.body["key"].as_str().expect("key");
    let comment = item["comment"].as_str().expect("comment id");
    post(
        &review,
        &pat,
        &format!("/anonymous/{comment}/edit"),
        json!({ "key": key, "body": "back" }),
    )
    .await
    .assert_error(404, "unknown_item");

    // Observers cannot post, and a flood is cut off in memory.
    post(
        &review,
        &review.sessions["observer"],
        "/concerns",
        json!({ "body": "x" }),
    )
    .await
    .assert_error(403, "not_allowed");
    let mut limited = None;
    for i in 0..40 {
        let r = post(
            &review,
            &review.sessions["author"],
            "/concerns",
            json!({ "body": format!("flood {i}") }),
        )
        .await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
    }
    let (at, r) = limited.expect("the flood is limited");
    assert_eq!(at, 30, "the first 30 submissions pass");
    r.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn meeting_mode_holds_items_until_the_meeting_starts() {
    let server = quick_server().await;
    let held = Review::create_with(
        server.addr,
        json!({ "title": "Held", "anonymous_release": "meeting" }),
    )
    .await;
    let batch = Review::create(server.addr, "Batch").await;
    held.move_to("review").await;
    batch.move_to("review").await;
    let url = server.collab_url();
    let mut held_watch = discussion_reader(&url, &held, &held.sessions["observer"]).await;
    let mut batch_watch = discussion_reader(&url, &batch, &batch.sessions["observer"]).await;

    let r = post(
        &held,
        &held.sessions["participant"],
        "/concerns",
        json!({ "body": "Held concern" }),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["release"], "meeting");
    assert_eq!(r.body["release_after"], Value::Null);
    // A later batch of another review has been released; the held one has not.
    post(
        &batch,
        &batch.sessions["participant"],
        "/concerns",
        json!({ "body": "Batch concern" }),
    )
    .await;
    wait_discussion(&mut batch_watch, "the other review's batch", |d| {
        concern_with(d, "Batch concern").is_some()
    })
    .await;
    held_watch.round_trip().await;
    assert!(concern_with(&discussion_json(&held_watch), "Held concern").is_none());

    held.move_to("meeting").await;
    wait_discussion(&mut held_watch, "the release at the meeting", |d| {
        concern_with(d, "Held concern").is_some()
    })
    .await;
    request(
        server.addr,
        "POST",
        "/api/reviews",
        None,
        Some(&json!({ "title": "x", "anonymous_release": "later" })),
    )
    .await
    .assert_error(400, "invalid_release");
}

#[tokio::test]
async fn a_crash_in_a_batch_window_releases_every_held_item_exactly_once() {
    crash_in_a_batch_window(Backend::Sled).await;
}

#[tokio::test]
async fn a_crash_in_a_batch_window_releases_every_held_item_exactly_once_on_postgres() {
    crash_in_a_batch_window(Backend::postgres().await).await;
}

/// On a node of a cluster (issue 18) the held items are sealed in the database: their text is in
/// no copy of it (rows, files, write-ahead log) nor of the data directory, and another node,
/// started on the same database with a data directory of its own once the first was killed,
/// releases each of them once.
#[tokio::test]
async fn a_crash_in_a_batch_window_releases_every_held_item_exactly_once_on_a_cluster_node() {
    crash_in_a_batch_window(Backend::cluster().await).await;
}

async fn crash_in_a_batch_window(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let cluster = matches!(backend, Backend::Cluster(..));
    let flags = backend.args();
    let args = |cadence: &'static str| {
        let mut args = vec!["--anonymous-cadence-secs", cadence];
        args.extend(flags.iter().map(String::as_str));
        args
    };
    // A window far longer than the test: nothing is released before the crash.
    let server = ChildServer::start_with(&data, &args("86400"), None).await;
    let review = Review::create(server.addr, "Crash").await;
    review.move_to("review").await;
    // Its own texts: other tests write to the same PostgreSQL's write-ahead log.
    let tag = hex::encode(rand::random::<[u8; 6]>());
    let bodies: Vec<String> = (0..5).map(|i| format!("held item {i} {tag}")).collect();
    // Someone reads the discussion, as people who post do (on a cluster node, held slots are
    // written every second while a document is open).
    let reader =
        discussion_reader(&server.collab_url(), &review, &review.sessions["observer"]).await;
    for b in &bodies {
        let r = post(
            &review,
            &review.sessions["participant"],
            "/concerns",
            json!({ "body": b }),
        )
        .await;
        assert_eq!(r.status, 202);
        let r = post(
            &review,
            &review.sessions["author"],
            "/anonymous/threads",
            json!({ "body": b }),
        )
        .await;
        assert_eq!(r.status, 202);
    }
    if cluster {
        // Acknowledged, so written, and sealed: no copy holds their text.
        for (path, bytes) in backend.copy(&data).await {
            for b in &bodies {
                assert!(
                    !contains(&bytes, b),
                    "a held item is in the clear in {}",
                    path.display()
                );
            }
        }
        assert!(!data.join("held").exists(), "no held-items file");
    }
    drop(reader);
    server.kill9().await;

    // A node of a cluster starts on a data directory of its own, as on another machine, and
    // serves reviews once it took the review role over (the killed node's lease lapsed).
    let data = if cluster {
        dir.path().join("another-node")
    } else {
        data
    };
    let server = ChildServer::start_with(&data, &args("1"), None).await;
    if cluster {
        debrief_tests::within("the new node to take the review role over", async {
            while server.metric("debrief_serves_reviews").await != 1 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    let review = Review {
        addr: server.addr,
        ..review
    };
    let mut watcher =
        discussion_reader(&server.collab_url(), &review, &review.sessions["observer"]).await;
    // Who wrote the recovered items is not known (it never was stored), so they wait for a
    // batch that two people are known to have contributed to; then they go out with it.
    let markers = |round: u32| {
        let review = review.clone();
        async move {
            for role in ["participant", "author"] {
                let r = post(
                    &review,
                    &review.sessions[role],
                    "/concerns",
                    json!({ "body": format!("marker {round} {role}") }),
                )
                .await;
                assert_eq!(r.status, 202, "{}", r.body);
            }
        }
    };
    markers(1).await;
    wait_discussion(&mut watcher, "every held item", |d| {
        bodies
            .iter()
            .all(|b| concern_with(d, b).is_some() && comment_with(d, b).is_some())
            && concern_with(d, "marker 1 author").is_some()
    })
    .await;
    // One more release boundary passes with nothing new.
    markers(2).await;
    wait_discussion(&mut watcher, "a later batch", |d| {
        concern_with(d, "marker 2 author").is_some()
            && concern_with(d, "marker 2 participant").is_some()
    })
    .await;
    let d = discussion_json(&watcher);
    assert_eq!(
        d["concerns"].as_object().map(|c| c.len()),
        Some(bodies.len() + 4)
    );
    assert_eq!(
        d["threads"].as_object().map(|t| t.len()),
        Some(bodies.len())
    );
    server.terminate().await;
}

#[tokio::test]
async fn small_groups_are_refused_and_a_lone_persons_batch_waits_for_a_second() {
    let server = quick_server().await;
    let url = server.collab_url();

    // In draft only the author may comment: one possible poster, so no anonymous items.
    let small = Review::create(server.addr, "Small").await;
    let refused = post(
        &small,
        &small.sessions["author"],
        "/concerns",
        json!({ "body": "x" }),
    )
    .await;
    let message = refused.assert_error(409, "too_few_for_anonymity");
    assert_eq!(
        message,
        "anonymous items need at least 3 people who may post them in this review, or the \
         others could tell who wrote them; 1 can now (the facilitator can allow smaller groups \
         when creating a review)"
    );
    // Unless the facilitator allowed small groups at creation; then a lone item is not held
    // back either.
    let allowed = Review::create_with(
        server.addr,
        json!({ "title": "Allowed", "small_group_anonymity": true }),
    )
    .await;
    let view = allowed.call("author", "GET", "", None).await;
    assert_eq!(view.body["anonymous"]["small_group_anonymity"], true);
    let mut allowed_watch =
        discussion_reader(&url, &allowed, &allowed.sessions["facilitator"]).await;
    let r = post(
        &allowed,
        &allowed.sessions["author"],
        "/concerns",
        json!({ "body": "Alone but allowed" }),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["release_after"], r.body["release_by"]);
    wait_discussion(&mut allowed_watch, "the allowed lone item", |d| {
        concern_with(d, "Alone but allowed").is_some()
    })
    .await;

    // In review, three may post. Pat's concern alone waits past the boundaries ...
    let review = Review::create(server.addr, "Mixing").await;
    review.move_to("review").await;
    let mut watch = discussion_reader(&url, &review, &review.sessions["observer"]).await;
    let lone = post(
        &review,
        &review.sessions["participant"],
        "/concerns",
        json!({ "body": "Pat alone" }),
    )
    .await;
    assert_eq!(lone.status, 202, "{}", lone.body);
    let receipt = lone.body["receipt"].as_str().expect("receipt").to_owned();
    let after = lone.body["release_after"].as_u64().expect("after");
    let by = lone.body["release_by"].as_u64().expect("by");
    assert_eq!(by - after, 10 * 200, "at the latest ten boundaries later");
    // ... while another review's batch of two people goes out.
    let other = Review::create(server.addr, "Other").await;
    other.move_to("review").await;
    let mut other_watch = discussion_reader(&url, &other, &other.sessions["observer"]).await;
    for role in ["participant", "author"] {
        post(
            &other,
            &other.sessions[role],
            "/concerns",
            json!({ "body": format!("other {role}") }),
        )
        .await;
    }
    wait_discussion(&mut other_watch, "the other review's batch", |d| {
        concern_with(d, "other participant").is_some() && concern_with(d, "other author").is_some()
    })
    .await;
    watch.round_trip().await;
    assert!(concern_with(&discussion_json(&watch), "Pat alone").is_none());
    // The submitter can ask when it will appear; nobody else holds the receipt.
    let pending = post(
        &review,
        &review.sessions["participant"],
        "/anonymous/pending",
        json!({ "receipts": [receipt, "not-a-receipt"] }),
    )
    .await;
    assert_eq!(pending.status, 200, "{}", pending.body);
    let listed = pending.body["pending"].as_array().expect("pending");
    assert_eq!(listed.len(), 1, "{}", pending.body);
    assert_eq!(listed[0]["receipt"], receipt.as_str());
    assert!(listed[0]["release_by"].as_u64() > listed[0]["release_after"].as_u64());
    // A second person's item: both go out in the same batch.
    post(
        &review,
        &review.sessions["author"],
        "/concerns",
        json!({ "body": "Ana too" }),
    )
    .await;
    wait_discussion(&mut watch, "the mixed batch", |d| {
        concern_with(d, "Pat alone").is_some() && concern_with(d, "Ana too").is_some()
    })
    .await;
    let d = discussion_json(&watch);
    assert_eq!(
        concern_with(&d, "Pat alone").expect("pat")["createdAt"],
        concern_with(&d, "Ana too").expect("ana")["createdAt"],
        "released together"
    );
    let pending = post(
        &review,
        &review.sessions["participant"],
        "/anonymous/pending",
        json!({ "receipts": [receipt] }),
    )
    .await;
    assert_eq!(pending.body["pending"], json!([]), "released");

    // A lone item that nobody joins goes out after ten boundaries all the same.
    let quiet = Review::create(server.addr, "Quiet").await;
    quiet.move_to("review").await;
    let mut quiet_watch = discussion_reader(&url, &quiet, &quiet.sessions["observer"]).await;
    post(
        &quiet,
        &quiet.sessions["participant"],
        "/concerns",
        json!({ "body": "Nobody joined me" }),
    )
    .await;
    wait_discussion(&mut quiet_watch, "the lone item after the bound", |d| {
        concern_with(d, "Nobody joined me").is_some()
    })
    .await;
}
