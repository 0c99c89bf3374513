//! The review domain across failovers of the node that serves reviews (issue 18, test 7): the
//! review role moves to another node when its holder is stopped, killed or paused past its
//! lease, and the review goes on there — its phase, sessions, comments, and anonymous batches
//! released exactly once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use debrief_tests::api::{request, Review};
use debrief_tests::cluster::Cluster;
use debrief_tests::Client;
use serde_json::{json, Value};
use yrs::types::ToJson;
use yrs::{ReadTxn, Transact};

/// Short enough that a failover takes about two seconds, long enough for a loaded machine.
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(200);

/// How the review node is made to go.
#[derive(Debug, Clone, Copy)]
enum Going {
    Sigterm,
    Kill9,
    Paused,
}

/// The discussion (threads and concerns) as `token` reads it through the node at `addr`, once
/// it satisfies `cond` (a client that just synced may still be receiving the updates that
/// follow the state it was sent first).
async fn discussion(
    review: &Review,
    addr: SocketAddr,
    token: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let url = format!("ws://{addr}/collab");
    let mut client = Client::connect_collab(&url, &review.doc("discussion"), token).await;
    client.wait_synced().await;
    let doc = client.doc.clone();
    let read = move || {
        let txn = doc.transact();
        let root = |name: &str| {
            txn.get_map(name)
                .map(|m| serde_json::to_value(m.to_json(&txn)).expect("json"))
                .unwrap_or(Value::Null)
        };
        json!({ "threads": root("threads"), "concerns": root("concerns") })
    };
    let check = read.clone();
    client.wait_doc(what, move |_| cond(&check())).await;
    let d = read();
    client.close().await;
    d
}

/// How many concerns of the discussion say `body`.
fn concerns_saying(d: &Value, body: &str) -> usize {
    d["concerns"]
        .as_object()
        .map_or(0, |c| c.values().filter(|c| c["body"] == body).count())
}

/// How many comments of the discussion say `body`.
fn comments_saying(d: &Value, body: &str) -> usize {
    d["threads"].as_object().map_or(0, |threads| {
        threads
            .values()
            .flat_map(|t| t["comments"].as_array().into_iter().flatten())
            .filter(|c| c["body"] == body)
            .count()
    })
}

/// Two people raise a concern each, acknowledged (held) and not waited for.
async fn concerns_held(review: &Review, label: &str) -> [String; 2] {
    let bodies = [
        format!("Concern {label}: the alert was muted"),
        format!("Concern {label}: the dashboard lied"),
    ];
    for (role, body) in ["participant", "author"].iter().zip(&bodies) {
        let posted = review
            .call(role, "POST", "/concerns", Some(json!({ "body": body })))
            .await;
        assert_eq!(posted.status, 202, "{}", posted.body);
    }
    bodies
}

/// Connects to `url` again and again until a connection is synced, as a stock client does;
/// answers the closes on the way that a stock client would not retry (44xx).
async fn reconnect_until_synced(url: String) -> Vec<String> {
    let mut refusals = Vec::new();
    loop {
        if let Ok(mut client) = Client::try_connect(&url).await {
            match client.synced_or_closed().await {
                None => return refusals,
                Some(why) if why.starts_with("closed 44") => refusals.push(why),
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two people raise a concern each (a batch needs more than one poster), and both are
/// released: waited for on the discussion.
async fn concerns_released(review: &Review, via: SocketAddr, round: usize) -> [String; 2] {
    let bodies = concerns_held(review, &round.to_string()).await;
    discussion(
        review,
        via,
        &review.sessions["observer"],
        "the concerns to be released",
        |d| bodies.iter().all(|b| concerns_saying(d, b) >= 1),
    )
    .await;
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_domain_survives_failovers_of_the_review_node() {
    let mut cluster =
        Cluster::start_with_args(3, LEASE, RENEW, &["--anonymous-cadence-secs", "1"]).await;
    let first = cluster.review_node().await;
    only_one_serves_reviews(&cluster, first).await;
    // Created, joined and used through a node that does not serve reviews: it passes every
    // request on.
    let mut review =
        Review::create(other_than(&cluster, first), "Failover of the review node").await;
    review.move_to("review").await;
    let mut said = Vec::new();
    let mut raised = concerns_released(&review, other_than(&cluster, first), 0)
        .await
        .to_vec();
    let mut phase = "review";

    for (round, going) in [Going::Sigterm, Going::Kill9, Going::Paused]
        .into_iter()
        .enumerate()
    {
        let comment = format!("Named comment before the {going:?}");
        let made = review
            .call(
                "participant",
                "POST",
                "/threads",
                Some(json!({ "body": comment })),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        said.push(comment);

        // Two people's concerns, acknowledged just before the review node goes: held in the
        // database, released once, by whichever node holds the role then.
        raised.extend(concerns_held(&review, &format!("held at the {going:?}")).await);

        let serving = cluster.review_node().await;
        // A stock-style client of the discussion through another node reconnects across the
        // failover: it may be asked to come back (going away, try again later), never refused.
        let reconnecting = tokio::spawn(reconnect_until_synced(format!(
            "ws://{}/ws/{}?token={}",
            other_than(&cluster, serving),
            review.doc("discussion"),
            review.sessions["observer"]
        )));
        let node = cluster.take(serving);
        let went = Instant::now();
        let mut fenced_join = None;
        let mut paused = None;
        match going {
            Going::Sigterm => {
                let status = node.terminate().await;
                assert!(status.success(), "a clean stop exits 0: {status}");
            }
            Going::Kill9 => node.kill9().await,
            Going::Paused => {
                node.signal("STOP");
                // A join sent to the paused node: whatever it does once it runs again, another
                // node serves reviews by then, so the session must never be stored.
                let (addr, invite) = (node.addr, review.invites["participant"].clone());
                fenced_join = Some(tokio::spawn(async move {
                    request(
                        addr,
                        "POST",
                        "/api/join",
                        None,
                        Some(&json!({ "invite": invite, "name": "Joined during the pause" })),
                    )
                    .await
                }));
                paused = Some(node);
            }
        }
        let next = cluster.review_node().await;
        let taken = went.elapsed();
        assert_ne!(next, serving);
        only_one_serves_reviews(&cluster, next).await;
        let refusals = debrief_tests::within("the reconnecting client", reconnecting)
            .await
            .expect("the reconnecting task");
        assert!(
            refusals.is_empty(),
            "closes a stock client does not retry: {refusals:?}"
        );
        // Every request from now on goes through another node, which passes it on.
        review.addr = other_than(&cluster, next);
        eprintln!(
            "review node gone by {going:?}: node {next} serves reviews {} ms later (lease {} ms)",
            taken.as_millis(),
            LEASE.as_millis()
        );

        // Everything is there, and every session still works.
        for role in debrief_tests::api::ROLES {
            let read = review.call(role, "GET", "", None).await;
            assert_eq!(read.status, 200, "{role} after {going:?}: {}", read.body);
            assert_eq!(read.body["phase"], phase, "after {going:?}");
            assert_eq!(
                read.body["participants"]["participant"], 1,
                "after {going:?}"
            );
        }
        // Read through another node: a review's documents are forwarded to the node serving
        // reviews.
        let d = discussion(
            &review,
            other_than(&cluster, next),
            &review.sessions["facilitator"],
            "every comment",
            |d| said.iter().all(|c| comments_saying(d, c) >= 1),
        )
        .await;
        for comment in &said {
            assert_eq!(comments_saying(&d, comment), 1, "{comment} after {going:?}");
        }

        if let Some(paused) = paused {
            paused.signal("CONT");
            // It finds it lost its lease and the role: it stops writing and exits with an error
            // for its supervisor to start it again.
            let status = paused.exited().await;
            assert!(
                !status.success(),
                "the resumed node exits with an error: {status}"
            );
            let join = fenced_join.expect("a join").await.expect("the join task");
            assert_ne!(
                join.status, 201,
                "a join on the paused node is never acknowledged"
            );
            let stored = cluster
                .db
                .query(
                    "SELECT count(*) FROM meta \
                     WHERE position('Joined during the pause'::bytea in value) > 0",
                )
                .await;
            assert_eq!(stored, vec!["0"], "the fenced join was not stored");
        }

        // The review goes on where it is served now.
        if round == 0 {
            review.move_to("meeting").await;
            phase = "meeting";
        }
        raised.extend(concerns_released(&review, other_than(&cluster, next), round + 1).await);
        // A node started in place of the one that went.
        let replacement = cluster.start_node().await;
        cluster.nodes.push(Some(replacement));
    }

    // Every concern was released exactly once, across three holders of the review role, and
    // every named comment is there once.
    let serving = cluster.review_node().await;
    let via = other_than(&cluster, serving);
    let d = discussion(
        &review,
        via,
        &review.sessions["observer"],
        "everything",
        |d| {
            raised.iter().all(|b| concerns_saying(d, b) >= 1)
                && said.iter().all(|c| comments_saying(d, c) >= 1)
        },
    )
    .await;
    for body in &raised {
        assert_eq!(concerns_saying(&d, body), 1, "{body}");
    }
    for comment in &said {
        assert_eq!(comments_saying(&d, comment), 1, "{comment}");
    }
    // The node serving reviews decides the token of a connection forwarded to it.
    let url = format!("ws://{via}/collab");
    let mut stranger =
        Client::connect_collab(&url, &review.doc("discussion"), "no-such-session").await;
    assert_eq!(
        stranger.wait_denials(1).await[0],
        "invalid_token: the session token is not valid (unknown or revoked)"
    );
    review.move_to("closed").await;
}

/// Node `serving` alone says it serves reviews, and every running node answers the review API
/// (the others pass it on).
async fn only_one_serves_reviews(cluster: &Cluster, serving: usize) {
    for (i, node) in cluster.nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let expected = u64::from(i == serving);
        assert_eq!(
            node.metric("debrief_serves_reviews").await,
            expected,
            "node {i}"
        );
        let served = request(node.addr, "GET", "/api/openapi.json", None, None).await;
        assert_eq!(served.status, 200, "node {i}: {}", served.body);
    }
}

/// The address of a running node other than `serving`.
fn other_than(cluster: &Cluster, serving: usize) -> SocketAddr {
    cluster
        .nodes
        .iter()
        .enumerate()
        .find_map(|(i, n)| n.as_ref().filter(|_| i != serving).map(|n| n.addr))
        .expect("another running node")
}
