//! Sync between clients: convergence, late joiners, awareness, one instance per document.

use debrief_tests::server::binary_path;
use debrief_tests::{ChildServer, Client, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PIECES: [&str; 6] = ["a", "é", "😀", "👩‍🚒", "post-mortem ", "\n"];

/// Random inserts and deletes at random UTF-16 positions (never splitting a surrogate pair,
/// as a browser editor never does).
fn random_edit(client: &Client, rng: &mut StdRng) {
    let text = client.text("t");
    let boundaries: Vec<u32> = std::iter::once(0)
        .chain(text.chars().scan(0u32, |acc, c| {
            *acc += c.len_utf16() as u32;
            Some(*acc)
        }))
        .collect();
    let at = boundaries[rng.gen_range(0..boundaries.len())];
    if rng.gen_bool(0.25) && boundaries.len() > 2 {
        let i = boundaries.iter().position(|b| *b == at).expect("boundary");
        if let Some(end) = boundaries.get(i + 1) {
            client.remove("t", at, end - at);
            return;
        }
    }
    client.insert("t", at, PIECES[rng.gen_range(0..PIECES.len())]);
}

/// The text once the server holds every client's edits: each client round-trips (so its edits
/// are applied), then a fresh client reads the server's copy.
async fn settled_text(url: &str, clients: &mut [Client]) -> String {
    for c in clients.iter_mut() {
        c.round_trip().await;
    }
    let mut reader = Client::connect(url).await;
    reader.wait_synced().await;
    reader.text("t")
}

/// Two clients of `url`, both synced.
async fn two_synced(url: &str) -> (Client, Client) {
    let mut a = Client::connect(url).await;
    let mut b = Client::connect(url).await;
    a.wait_synced().await;
    b.wait_synced().await;
    (a, b)
}

#[tokio::test]
async fn several_worker_threads_serve_many_documents() {
    // Owners on different threads append and sync at the same moments: some sync on their own
    // thread, some queue for the flusher thread while another sync runs.
    let data = tempfile::tempdir().expect("temp dir");
    let server =
        ChildServer::start_with(data.path(), &["--open-access", "--workers", "3"], None).await;
    let mut docs = Vec::new();
    for d in 0..6 {
        let url = server.ws_url(&format!("threads-{d}"));
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut c = Client::connect(&url).await;
            c.wait_synced().await;
            clients.push(c);
        }
        docs.push((url, clients));
    }
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let (_, clients) = &docs[rng.gen_range(0..docs.len())];
        random_edit(&clients[rng.gen_range(0..clients.len())], &mut rng);
    }
    for (url, clients) in &mut docs {
        let expected = settled_text(url, clients).await;
        for c in clients.iter_mut() {
            c.wait_text("t", &expected).await;
        }
        assert!(
            expected.chars().count() > 10,
            "edits were kept: {expected:?}"
        );
    }
}

#[test]
fn a_worker_count_of_zero_is_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(binary_path())
        .args(["--workers", "0", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().next(),
        Some("error: invalid value '0' for '--workers <WORKERS>': 0 is not in 1..=256")
    );
}

#[tokio::test]
async fn concurrent_edits_converge() {
    let server = TestServer::start().await;
    let url = server.ws_url("converge");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&url).await;
        c.wait_synced().await;
        clients.push(c);
    }
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..150 {
        let i = rng.gen_range(0..clients.len());
        random_edit(&clients[i], &mut rng);
    }
    let expected = settled_text(&url, &mut clients).await;
    for c in &mut clients {
        c.wait_text("t", &expected).await;
    }
    assert!(
        expected.chars().count() > 50,
        "edits were kept: {expected:?}"
    );
}

#[tokio::test]
async fn late_joiner_gets_everything() {
    let server = TestServer::start().await;
    let url = server.ws_url("late");
    let mut writer = Client::connect(&url).await;
    writer.wait_synced().await;
    for (i, word) in ["Summary: ", "the cache ", "expired 😀"].iter().enumerate() {
        let at = writer.text_len("t");
        writer.insert("t", at, word);
        assert!(i < 3);
    }
    let mut late = Client::connect(&url).await;
    late.wait_synced().await;
    late.wait_text("t", "Summary: the cache expired 😀").await;
    // And the late joiner's own edit reaches the first client.
    late.insert("t", 0, "# ");
    writer
        .wait_text("t", "# Summary: the cache expired 😀")
        .await;
}

#[tokio::test]
async fn awareness_is_relayed_echoed_and_removed_on_disconnect() {
    let server = TestServer::start().await;
    let url = server.ws_url("presence");
    let (mut ada, mut bob) = two_synced(&url).await;
    let state = r##"{"user":{"name":"Ada","color":"#30bced"}}"##;
    ada.set_awareness(1001, 1, state);
    bob.wait_awareness(1001, Some(state)).await;
    ada.wait_awareness(1001, Some(state)).await; // echoed to the sender too

    // A late joiner receives current presence right after connecting.
    let mut carol = Client::connect(&url).await;
    carol.wait_awareness(1001, Some(state)).await;

    // Query-awareness is answered with the full table.
    let mut dave = Client::connect_silent(&url).await;
    dave.wait_awareness(1001, Some(state)).await;
    dave.query_awareness();

    // A stale clock does not overwrite.
    ada.set_awareness(1001, 1, r#"{"user":{"name":"Mallory"}}"#);
    ada.set_awareness(1001, 2, r#"{"user":{"name":"Ada L."}}"#);
    bob.wait_awareness(1001, Some(r#"{"user":{"name":"Ada L."}}"#))
        .await;

    ada.close().await;
    bob.wait_awareness(1001, None).await;
    carol.wait_awareness(1001, None).await;
}

/// A caret sent right after an edit refers to that edit's text; it must not reach the others
/// first (an update waits for its group commit, presence does not need to), or their editors
/// could not place it.
#[tokio::test]
async fn presence_sent_after_an_edit_arrives_after_it() {
    let server = TestServer::start().await;
    let url = server.ws_url("caret-order");
    let (ada, mut bob) = two_synced(&url).await;
    let before = bob.frames().len();
    for round in 1..=5u64 {
        let at = ada.text_len("t");
        ada.insert("t", at, &format!("line {round}\n"));
        let state = format!(r#"{{"user":{{"name":"Ada"}},"cursor":"after line {round}"}}"#);
        ada.set_awareness(1001, round, &state);
        bob.wait_awareness(1001, Some(&state)).await;
    }
    let frames = bob.frames();
    let kinds: Vec<&str> = frames[before..]
        .iter()
        .map(|(_, f)| match f.first() {
            Some(0) => "update",
            Some(1) => "presence",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["update", "presence"].repeat(5),
        "frames bob received in order"
    );
    bob.wait_text("t", "line 1\nline 2\nline 3\nline 4\nline 5\n")
        .await;
}

#[tokio::test]
async fn many_sockets_opening_one_unloaded_document_share_one_instance() {
    let server = TestServer::start().await;
    let url = server.ws_url("stampede");
    let connects = (0..40).map(|_| Client::connect(&url));
    let mut clients = futures_util::future::join_all(connects).await;
    for (i, c) in clients.iter().enumerate() {
        c.insert("t", 0, &format!("[{i}]"));
    }
    let expected = settled_text(&url, &mut clients).await;
    for i in 0..40 {
        assert!(
            expected.contains(&format!("[{i}]")),
            "edit {i} kept in {expected:?}"
        );
    }
    for c in &mut clients {
        c.wait_text("t", &expected).await;
    }
    for c in &mut clients {
        c.wait_synced().await;
        assert!(c.closed().is_none());
    }
    assert_eq!(server.metric("debrief_documents_loaded").await, 1);
}

#[tokio::test]
async fn documents_are_isolated() {
    let server = TestServer::start().await;
    let mut x = Client::connect(&server.ws_url("doc-x")).await;
    let mut y = Client::connect(&server.ws_url("doc-y")).await;
    x.wait_synced().await;
    y.wait_synced().await;
    x.insert("t", 0, "only in x");
    y.insert("t", 0, "only in y");
    let mut x2 = Client::connect(&server.ws_url("doc-x")).await;
    x2.wait_text("t", "only in x").await;
    let mut y2 = Client::connect(&server.ws_url("doc-y")).await;
    y2.wait_text("t", "only in y").await;
}
