//! Updates that fail, and what they may cost others (issue 16): a refused update reloads its
//! document only when it may have changed it, reloads run off the runtime's threads and are
//! limited per connection and per session, and nobody can claim another writer's future clocks.

use debrief_proto::lib0::write_var_uint;
use debrief_tests::fixture;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use debrief_proto::hocuspocus::{name_prefix, Auth, DocMessage};
use debrief_proto::ywire::{Message, SyncMessage};
use debrief_tests::api::Review;
use debrief_tests::client::http_get;
use debrief_tests::{Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::{ReadTxn, Transact};

const RELOADS: &str = "debrief_documents_reloaded_total";

/// A v1 update holding one string item "x" written as `client` at `clock`, whose left origin
/// is `origin`: yrs holds it back as pending until that origin arrives.
fn forged_item(client: u64, clock: u32, origin: (u64, u32)) -> Vec<u8> {
    let mut u = Vec::new();
    for v in [1, 1, client, u64::from(clock)] {
        write_var_uint(&mut u, v);
    }
    u.push(0x84); // an item with a left origin and string content
    for v in [origin.0, u64::from(origin.1), 1] {
        write_var_uint(&mut u, v);
    }
    u.push(b'x');
    u.push(0); // empty delete set
    u
}

/// A v1 update that only deletes `len` clocks of `client` from `start`.
fn forged_deletion(client: u64, start: u32, len: u32) -> Vec<u8> {
    let mut u = vec![0];
    for v in [1, client, 1, u64::from(start), u64::from(len)] {
        write_var_uint(&mut u, v);
    }
    u
}

/// Item 11: a co-writer reads a victim's client id from presence and claims the victim's
/// future clocks: a pending struct near clock 2^32 (in release builds it made the victim's next
/// edit panic, which closed the victim), or a deletion of everything the victim will write.
/// Only the attacker is closed; the victim's later edits are applied and reach everyone.
#[tokio::test]
async fn a_claim_on_another_writers_future_clocks_closes_only_its_sender() {
    let server = TestServer::start().await;
    let url = server.collab_url();
    let mut victim = Client::connect_collab(&url, "forged", "victim").await;
    victim.wait_authenticated().await;
    victim.wait_synced().await;
    victim.insert("t", 0, "hello");
    victim.round_trip().await;
    let target = victim.doc.client_id().get();
    let next = victim
        .doc
        .transact()
        .state_vector()
        .get(&victim.doc.client_id());

    let claims = [
        forged_item(target, u32::MAX - 1, (target, u32::MAX - 2)),
        forged_deletion(target, next, u32::MAX - 2 - next),
    ];
    for claim in claims {
        let mut attacker = Client::connect_collab(&url, "forged", "attacker").await;
        attacker.wait_authenticated().await;
        attacker.wait_synced().await;
        attacker.send_update(&claim);
        let closed = attacker.wait_closed().await;
        assert_eq!(closed.code, 4422, "{closed:?}");
        assert!(
            closed
                .reason
                .starts_with("invalid_update: clock_too_far_ahead"),
            "{closed:?}"
        );
    }

    victim.insert("t", 5, " world");
    victim.round_trip().await;
    victim.insert("t", 11, "!");
    victim.round_trip().await;
    assert_eq!(victim.closed(), None, "the victim was disconnected");
    let mut third = Client::connect_collab(&url, "forged", "third").await;
    third.wait_text("t", "hello world!").await;
    assert_eq!(server.metric(RELOADS).await, 0);
}

/// Item 3: an update that cannot be decoded, or is refused before it touches the document,
/// changed nothing, so the document is not rebuilt for it.
#[tokio::test]
async fn an_update_refused_before_it_touches_the_document_does_not_reload_it() {
    let server = TestServer::start().await;
    let url = server.ws_url("refused");
    let mut writer = Client::connect(&url).await;
    writer.insert("t", 0, "kept");
    writer.round_trip().await;
    let refused: [(&[u8], &str); 2] = [
        (&[0x05, 0x01], "invalid_update"),
        (
            &forged_item(12345, u32::MAX - 1, (12345, 0)),
            "invalid_update: clock_too_far_ahead",
        ),
    ];
    for (update, reason) in refused {
        let mut bad = Client::connect_silent(&url).await;
        bad.send_update(update);
        let closed = bad.wait_closed().await;
        assert_eq!(closed.code, 4422, "{closed:?}");
        assert!(closed.reason.starts_with(reason), "{closed:?}");
    }
    assert_eq!(server.metric(RELOADS).await, 0, "nothing was reloaded");
    assert_eq!(server.metric("debrief_updates_rejected_total").await, 2);
    writer.insert("t", 4, " and more");
    let mut reader = Client::connect(&url).await;
    reader.wait_text("t", "kept and more").await;
}

/// Item 3: one session that keeps sending updates that break yrs (each one rebuilds the
/// document) is stopped after its allowance, with 4423; another author of the same review
/// writes on, and the stopped session can still read.
#[tokio::test]
async fn a_session_whose_updates_keep_breaking_the_document_is_stopped() {
    let (base, bad) = (fixture("base.bin"), fixture("bad-pending.bin"));
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "reloads").await;
    let doc = review.doc("report");
    let url = server.collab_url();
    let offender = review.join("author", "Offender").await;
    let colleague = review.join("author", "Colleague").await;
    let mut writer = Client::connect_collab(&url, &doc, &colleague).await;
    writer.wait_authenticated().await;
    writer.wait_synced().await;
    writer.send_update(&base);
    writer.round_trip().await;

    for attempt in 1..=3 {
        let mut c = Client::connect_collab(&url, &doc, &offender).await;
        c.wait_authenticated().await;
        c.send_update(&bad);
        let closed = c.wait_closed().await;
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (4422, "update_panicked")
        );
        assert_eq!(server.metric(RELOADS).await, attempt);
    }
    let mut c = Client::connect_collab(&url, &doc, &offender).await;
    c.wait_authenticated().await;
    c.send_update(&bad);
    let closed = c.wait_closed().await;
    assert_eq!(closed.code, 4423, "{closed:?}");
    assert!(
        closed.reason.starts_with("too_many_failed_updates"),
        "{closed:?}"
    );
    assert_eq!(server.metric(RELOADS).await, 3, "no fourth reload");

    writer.insert("after", 0, "still writing");
    writer.round_trip().await;
    let mut reader = Client::connect_collab(&url, &doc, &offender).await;
    reader.wait_authenticated().await;
    reader.wait_text("after", "still writing").await;
}

/// Item 3: one `/collab` socket sends an update that breaks yrs to each of several documents
/// at once; its first failure closes it, and nothing more of it is applied, so only one
/// document is rebuilt. (A regression test: in this setup the socket's close already won the
/// race before the change; the owner now also checks for it before applying.)
#[tokio::test]
async fn one_socket_makes_at_most_one_document_reload() {
    let (base, bad) = (fixture("base.bin"), fixture("bad-pending.bin"));
    let server = TestServer::start().await;
    let docs: Vec<String> = (0..5).map(|i| format!("many-{i}")).collect();
    for doc in &docs {
        let mut seed = Client::connect(&server.ws_url(doc)).await;
        seed.wait_synced().await;
        seed.send_update(&base);
        seed.round_trip().await;
    }
    // A raw socket: the test client speaks for one document only.
    let (mut socket, _) = tokio_tungstenite::connect_async(server.collab_url())
        .await
        .expect("connect");
    for doc in &docs {
        let token = DocMessage::Auth(Auth::Token {
            token: Some("attacker"),
            provider_version: None,
        })
        .encode(doc);
        socket
            .send(WsMessage::Binary(token.into()))
            .await
            .expect("send");
    }
    // Attached to every document (each sends its SyncStep1) before the burst.
    let mut attached = HashSet::new();
    debrief_tests::within("every document to accept the socket", async {
        while attached.len() < docs.len() {
            let Some(Ok(WsMessage::Binary(frame))) = socket.next().await else {
                panic!("the socket ended early");
            };
            for doc in &docs {
                let prefix = name_prefix(doc);
                // Sync (0), SyncStep1 (0) behind the document's name.
                if frame.starts_with(&prefix) && frame[prefix.len()..].starts_with(&[0, 0]) {
                    attached.insert(doc.clone());
                }
            }
        }
    })
    .await;
    for doc in &docs {
        let mut frame = name_prefix(doc);
        frame.extend(Message::Sync(SyncMessage::Update(&bad)).encode());
        socket
            .send(WsMessage::Binary(frame.into()))
            .await
            .expect("send");
    }
    let closed = debrief_tests::within("the socket to be closed", async {
        loop {
            match socket.next().await {
                Some(Ok(WsMessage::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("a close frame");
    assert_eq!(
        (u16::from(closed.code), closed.reason.as_str()),
        (4422, "update_panicked")
    );
    // Every document has handled the socket's messages once a newcomer's sync is answered.
    for doc in &docs {
        let mut reader = Client::connect(&server.ws_url(doc)).await;
        reader.wait_synced().await;
    }
    assert_eq!(server.metric(RELOADS).await, 1);
}

/// Item 3: while a large document is rebuilt again and again (every attacker uses a token of
/// its own, so no allowance stops them), a user of another document notices nothing: their
/// edits still make the round trip quickly, and `/healthz` answers.
#[tokio::test]
async fn other_documents_stay_responsive_while_a_large_one_is_rebuilt() {
    /// Rebuilds forced by the attack; each takes about half a second of CPU in a debug build.
    const ATTACKERS: usize = 12;
    /// Items of the large document.
    const ITEMS: u32 = 100_000;
    /// What a user would call "stalled"; rebuilding on the worker took far longer.
    const BOUND: Duration = Duration::from_millis(1500);
    let (base, bad) = (fixture("base.bin"), fixture("bad-pending.bin"));
    let server = TestServer::start().await;

    // A large report: a long text with every other character deleted (the deletion is written
    // directly as a delete set), so that the document holds 200k items.
    let big = server.ws_url("large");
    let mut seed = Client::connect(&big).await;
    seed.wait_synced().await;
    seed.send_update(&base);
    seed.insert("report", 0, &"ab".repeat(ITEMS as usize));
    seed.round_trip().await;
    let writer = seed.doc.client_id().get();
    let start = seed
        .doc
        .transact()
        .state_vector()
        .get(&seed.doc.client_id())
        - 2 * ITEMS;
    let mut every_other = vec![0];
    for v in [1, writer, u64::from(ITEMS)] {
        write_var_uint(&mut every_other, v);
    }
    for i in 0..ITEMS {
        write_var_uint(&mut every_other, u64::from(start + 2 * i + 1));
        write_var_uint(&mut every_other, 1);
    }
    seed.send_update(&every_other);
    seed.round_trip().await;

    let mut user = Client::connect(&server.ws_url("elsewhere")).await;
    user.wait_synced().await;
    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        attackers.push(Client::connect_silent(&format!("{big}?token=attacker-{i}")).await);
    }
    // All at once: their updates reach the document's queue together.
    for a in &attackers {
        a.send_update(&bad);
    }
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut edits = 0u32;
    while server.metric(RELOADS).await < ATTACKERS as u64 {
        let t = Instant::now();
        user.insert("t", edits, "x");
        user.round_trip().await;
        let (status, _) = http_get(server.addr, "/healthz").await;
        assert_eq!(status, 200);
        slowest = slowest.max(t.elapsed());
        edits += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the attack did not end"
        );
    }
    for a in &mut attackers {
        assert_eq!(a.wait_closed().await.code, 4422);
    }
    assert!(
        slowest < BOUND,
        "an edit and a health check took {slowest:?} while the large document was rebuilt \
         ({edits} round trips)"
    );
    assert!(edits > 0);
}
