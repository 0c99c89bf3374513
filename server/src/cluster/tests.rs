//! Leases, claims, takeover, handover and the fence against a real PostgreSQL, a fresh database
//! per test (`testdb.rs`). Every wait is on a condition with a timeout. The machine may be
//! loaded (CI on two cores, next to other builds): a node that must stay live has a lease of
//! seconds, so a stalled renewal does not fence it, and a bound on how long something took is
//! a fraction or a multiple of the lease, loose enough for load and tight enough to fail when the
//! waiting logic is wrong. The figures themselves are printed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;

use super::metrics::ClusterMetrics;
use super::node::{LeaseState, Node};
use super::ownership::{fence, Claim, Claims, Ownership, Previous, Won};
use super::testdb::TestDb;
use super::{ClusterError, Fenced, NodeId, Settings, SettingsError};

/// The longest any test waits for something that should happen much sooner.
const PATIENCE: Duration = Duration::from_secs(15);

fn settings(lease_ms: u64, renew_ms: u64) -> Settings {
    Settings::new(
        Duration::from_millis(lease_ms),
        Duration::from_millis(renew_ms),
    )
    .expect("valid settings")
}

/// Rounds of the deadlock test, and the documents handed over and claimed in each.
const ROUNDS: usize = 3;
const DOCUMENTS: usize = 40;

/// Settings for a node that must stay live throughout a test, on a loaded machine too: it may
/// miss every renewal for ten seconds before it fences itself.
fn steady() -> Settings {
    settings(10_000, 250)
}

async fn register(db: &TestDb, settings: Settings) -> Node {
    Node::register(
        db.config(),
        "127.0.0.1:7001",
        settings,
        Arc::new(ClusterMetrics::default()),
    )
    .await
    .expect("register a node")
}

/// Waits until `check` holds, looking every few milliseconds, and fails after [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn won(node: &Node, name: &str) -> Won {
    match node.claim(name).await.expect("claim") {
        Claim::Won(won) => won,
        Claim::Held(held) => panic!("{name} is held: {held:?}"),
    }
}

/// Runs the fence in a transaction of its own and rolls it back.
async fn fence_passes(client: &mut Client, name: &str, owner: &NodeId, epoch: i64) -> bool {
    let tx = client.transaction().await.expect("begin");
    let passes = fence(&tx, name, owner, epoch).await.expect("fence");
    tx.rollback().await.expect("rollback");
    passes
}

async fn lease_seconds_left(client: &Client, node: &NodeId) -> f64 {
    client
        .query_one(
            "SELECT extract(epoch FROM lease_until - now())::float8 FROM nodes WHERE id = $1",
            &[&node.as_str()],
        )
        .await
        .expect("read the lease")
        .get(0)
}

#[test]
fn settings_refuse_leases_that_cannot_be_kept() {
    let ms = Duration::from_millis;
    assert_eq!(
        Settings::new(ms(50), ms(10)).map_err(|e| e.to_string()),
        Err("the lease must be at least 100 ms, not 50 ms".to_owned())
    );
    assert_eq!(
        Settings::new(ms(1000), ms(1000)).map_err(|e| e.to_string()),
        Err(
            "the lease must be renewed more often than it lasts: every 1000 ms is not less \
             than the lease of 1000 ms"
                .to_owned()
        )
    );
    assert_eq!(
        Settings::new(ms(1000), ms(0)),
        Err(SettingsError::ZeroRenewal)
    );
    assert_eq!(
        SettingsError::ZeroRenewal.to_string(),
        "the renewal interval must be more than zero"
    );
    let default = Settings::default();
    assert_eq!(
        (default.lease(), default.renew_every()),
        (Duration::from_secs(3), Duration::from_secs(1))
    );
}

#[tokio::test]
async fn a_node_registers_and_keeps_renewing_its_lease() {
    let db = TestDb::create().await;
    let node = register(&db, steady()).await;
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT address, extract(epoch FROM lease_until)::float8 FROM nodes WHERE id = $1",
            &[&node.id().as_str()],
        )
        .await
        .expect("the node's row");
    assert_eq!(row.get::<_, String>(0), "127.0.0.1:7001");
    let first: f64 = row.get(1);
    let left = lease_seconds_left(&client, node.id()).await;
    assert!(left > 0.0 && left <= 10.0, "lease left: {left} s");

    let metrics = node.metrics();
    until("three renewals", || async move {
        ClusterMetrics::read(&metrics.lease_renewals) >= 3
    })
    .await;
    let later: f64 = client
        .query_one(
            "SELECT extract(epoch FROM lease_until)::float8 FROM nodes WHERE id = $1",
            &[&node.id().as_str()],
        )
        .await
        .expect("the node's row")
        .get(0);
    assert!(later > first, "the lease moved from {first} to {later}");
    assert_eq!(*node.state().borrow(), LeaseState::Live);
    assert_eq!(ClusterMetrics::read(&node.metrics().renewals_failed), 0);

    // The schema is applied again by the next node without harm.
    let other = register(&db, steady()).await;
    assert_ne!(other.id(), node.id());
    let count: i64 = client
        .query_one("SELECT count(*) FROM nodes", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_lapsed_lease_is_judged_by_the_database_clock() {
    let db = TestDb::create().await;
    let client = db.client().await;
    let taker = register(&db, steady()).await;

    // A node whose lease the database says ends in an hour: nothing on this side has to wait
    // for anything but the database's answer.
    client
        .batch_execute(
            "INSERT INTO nodes (id, address, lease_until) \
             VALUES ('ghost', '127.0.0.9:7001', now() + interval '1 hour'); \
             INSERT INTO documents (name, owner, epoch) VALUES ('review.1.report', 'ghost', 4)",
        )
        .await
        .expect("a ghost owner");
    assert_eq!(
        taker.owner_of("review.1.report").await.expect("owner"),
        Ownership::Live {
            node: "ghost".into(),
            address: "127.0.0.9:7001".into(),
            epoch: 4
        }
    );
    match taker.claim("review.1.report").await.expect("claim") {
        Claim::Held(held) => {
            assert_eq!((held.owner.as_str(), held.epoch), ("ghost", 4));
            assert!(held.lease_left > Duration::from_secs(3500), "{held:?}");
        }
        Claim::Won(won) => panic!("took a live owner's document: {won:?}"),
    }
    // The database's clock passes the lease: lapsed at once.
    client
        .batch_execute(
            "UPDATE nodes SET lease_until = now() - interval '1 millisecond' WHERE id = 'ghost'",
        )
        .await
        .expect("end the ghost's lease");
    assert_eq!(
        taker.owner_of("review.1.report").await.expect("owner"),
        Ownership::Lapsed {
            node: "ghost".into(),
            epoch: 4
        }
    );
    assert_eq!(
        won(&taker, "review.1.report").await,
        Won {
            epoch: 5,
            from: Previous::Lapsed("ghost".into())
        }
    );

    // A real node that stops renewing (dropped: a crash, nothing handed over) is live until
    // its lease ends by the database's clock, then lapsed. Its lease leaves the test seconds to
    // look before it lapses, on a loaded machine too.
    let crashed = register(&db, settings(4000, 200)).await;
    let crashed_id = crashed.id().clone();
    assert_eq!(won(&crashed, "review.2.report").await.epoch, 1);
    drop(crashed);
    assert!(matches!(
        taker.owner_of("review.2.report").await.expect("owner"),
        Ownership::Live { node, epoch: 1, .. } if node == crashed_id.as_str()
    ));
    let looking = &taker;
    until("the crashed node's lease lapsed", || async move {
        matches!(
            looking.owner_of("review.2.report").await.expect("owner"),
            Ownership::Lapsed { epoch: 1, .. }
        )
    })
    .await;
    assert_eq!(
        won(&taker, "review.2.report").await,
        Won {
            epoch: 2,
            from: Previous::Lapsed(crashed_id.to_string())
        }
    );
    assert_eq!(ClusterMetrics::read(&taker.metrics().takeovers), 2);
    assert_eq!(ClusterMetrics::read(&taker.metrics().owned_documents), 2);
}

#[tokio::test]
async fn a_document_is_taken_over_only_after_its_owners_lease_lapsed() {
    let db = TestDb::create().await;
    let client = db.client().await;
    // An owner that must keep its lease for two lease lengths of a claimer's waiting, on a loaded
    // machine too: it renews twenty times per lease.
    let owner = register(&db, settings(2000, 100)).await;
    let other = register(&db, settings(2000, 100)).await;
    let lease = owner.settings().lease();
    let owner_id = owner.id().clone();
    assert_eq!(
        won(&owner, "review.1.notes").await,
        Won {
            epoch: 1,
            from: Previous::New
        }
    );

    // Two lease lengths of waiting do not take it from an owner that keeps renewing.
    match other.claim_within("review.1.notes", 2 * lease).await {
        Err(ClusterError::StillHeld { owner: held_by, .. }) => {
            assert_eq!(held_by, owner_id.as_str())
        }
        other => panic!("expected the document still held, got {other:?}"),
    }
    assert_eq!(owner.owns("review.1.notes"), Some(1));
    assert_eq!(owner.fenced_because(), None);
    assert_eq!(ClusterMetrics::read(&other.metrics().takeovers), 0);

    // Its owner dies: the waiting claimer takes it once the database says the lease ended.
    drop(owner);
    let started = Instant::now();
    let taken = other
        .claim_within("review.1.notes", PATIENCE)
        .await
        .expect("taken over");
    let failover = started.elapsed();
    assert_eq!(
        taken,
        Won {
            epoch: 2,
            from: Previous::Lapsed(owner_id.to_string())
        }
    );
    let lapsed: bool = client
        .query_one(
            "SELECT lease_until <= now() FROM nodes WHERE id = $1",
            &[&owner_id.as_str()],
        )
        .await
        .expect("the dead node's row")
        .get(0);
    assert!(lapsed, "taken over before the lease ended");
    // The lease, the claimer's next look (within 100 ms) and the claim itself: a bound of two
    // leases leaves a whole lease for a loaded machine, and still fails a claimer that waits for
    // its patience (15 s) instead of looking again when the lease ends.
    assert!(
        failover < 2 * lease,
        "took {failover:?}: the claimer should look again when the lease ends ({lease:?})"
    );
    eprintln!("takeover after the owner stopped renewing: {failover:?} (lease {lease:?})");
    assert_eq!(ClusterMetrics::read(&other.metrics().takeovers), 1);
    assert_eq!(other.owns("review.1.notes"), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_claimers_exactly_one_wins_and_epochs_rise() {
    let db = TestDb::create().await;
    let mut nodes = Vec::new();
    for _ in 0..6 {
        nodes.push(Arc::new(register(&db, steady()).await));
    }
    let mut last_epoch = 0;
    for round in 0..12 {
        let barrier = Arc::new(tokio::sync::Barrier::new(nodes.len()));
        let claims: Vec<_> = nodes
            .iter()
            .map(|node| {
                let node = node.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    node.claim("contested").await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut held = Vec::new();
        for (i, claim) in claims.into_iter().enumerate() {
            match claim.await.expect("join").expect("claim") {
                Claim::Won(won) => winners.push((i, won)),
                Claim::Held(h) => held.push(h),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (winner, won) = winners.remove(0);
        assert!(
            won.epoch > last_epoch,
            "round {round}: epoch {} after {last_epoch}",
            won.epoch
        );
        last_epoch = won.epoch;
        let expected_from = if round == 0 {
            Previous::New
        } else {
            Previous::Unowned
        };
        assert_eq!(won.from, expected_from, "round {round}");
        for h in &held {
            assert_eq!(h.owner, nodes[winner].id().as_str(), "round {round}");
            assert_eq!(h.epoch, won.epoch, "round {round}");
        }
        assert!(nodes[winner]
            .release("contested", won.epoch)
            .await
            .expect("release"));
    }
    assert_eq!(last_epoch, 12);
}

#[tokio::test]
async fn a_node_that_shuts_down_hands_its_documents_over_at_once() {
    let db = TestDb::create().await;
    let leaving = register(&db, steady()).await;
    let staying = register(&db, steady()).await;
    let leaving_id = leaving.id().clone();
    assert_eq!(won(&leaving, "review.1.report").await.epoch, 1);
    assert_eq!(won(&leaving, "review.1.discussion").await.epoch, 1);
    assert_eq!(ClusterMetrics::read(&leaving.metrics().owned_documents), 2);
    assert!(matches!(
        staying.claim("review.1.report").await.expect("claim"),
        Claim::Held(_)
    ));

    let state = leaving.state();
    let metrics = leaving.metrics().clone();
    assert_eq!(leaving.shut_down().await.expect("shut down"), 2);
    assert_eq!(*state.borrow(), LeaseState::Fenced(Fenced::Left));
    assert_eq!(ClusterMetrics::read(&metrics.handed_over), 2);
    assert_eq!(ClusterMetrics::read(&metrics.owned_documents), 0);

    // No waiting for a 5 s lease: one claim takes each.
    for name in ["review.1.report", "review.1.discussion"] {
        assert_eq!(
            won(&staying, name).await,
            Won {
                epoch: 2,
                from: Previous::Unowned
            }
        );
    }
    assert_eq!(ClusterMetrics::read(&staying.metrics().takeovers), 0);
    let client = db.client().await;
    let rows = client
        .query("SELECT 1 FROM nodes WHERE id = $1", &[&leaving_id.as_str()])
        .await
        .expect("nodes");
    assert!(rows.is_empty(), "the node left the table");
}

#[tokio::test]
async fn a_node_whose_connection_is_killed_observes_that_it_is_fenced() {
    let db = TestDb::create().await;
    let node = register(&db, settings(2000, 100)).await;
    let node_id = node.id().clone();
    assert_eq!(won(&node, "review.1.report").await.epoch, 1);
    let metrics = node.metrics();
    until("a first renewal", || async move {
        ClusterMetrics::read(&metrics.lease_renewals) >= 1
    })
    .await;

    // Cut the node off: its connections are terminated and it cannot connect again.
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            db.name()
        ))
        .await
        .expect("refuse connections");
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name()],
        )
        .await
        .expect("terminate");
    assert!(!killed.is_empty(), "the node had connections");

    let why = tokio::time::timeout(PATIENCE, node.fenced())
        .await
        .expect("the node noticed");
    assert_eq!(why, Fenced::RenewalMissed);
    assert!(ClusterMetrics::read(&node.metrics().renewals_failed) >= 1);
    assert_eq!(node.owns("review.1.report"), None);
    assert_eq!(ClusterMetrics::read(&node.metrics().owned_documents), 0);
    match node.claim("review.1.other").await {
        Err(ClusterError::Fenced(Fenced::RenewalMissed)) => {}
        other => panic!("a fenced node claimed: {other:?}"),
    }

    // Reachable again: the node stays fenced, and another node takes its document once the
    // database says the lease ended.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name()
        ))
        .await
        .expect("allow connections");
    let other = register(&db, steady()).await;
    assert_eq!(
        other
            .claim_within("review.1.report", PATIENCE)
            .await
            .expect("taken over"),
        Won {
            epoch: 2,
            from: Previous::Lapsed(node_id.to_string())
        }
    );
    assert_eq!(node.fenced_because(), Some(Fenced::RenewalMissed));
}

#[tokio::test]
async fn a_node_whose_lease_row_expired_observes_that_it_is_fenced() {
    let db = TestDb::create().await;
    let node = register(&db, steady()).await;
    assert_eq!(won(&node, "review.1.report").await.epoch, 1);
    let mut client = db.client().await;
    assert!(fence_passes(&mut client, "review.1.report", node.id(), 1).await);

    client
        .execute(
            "UPDATE nodes SET lease_until = now() - interval '1 second' WHERE id = $1",
            &[&node.id().as_str()],
        )
        .await
        .expect("end the lease");
    // The database's refusal fences the node at its next renewal: the reason says so (the
    // node's own timer, 10 s, would have said `RenewalMissed`).
    let why = tokio::time::timeout(PATIENCE, node.fenced())
        .await
        .expect("the node noticed");
    assert_eq!(why, Fenced::LeaseExpired);
    assert_eq!(ClusterMetrics::read(&node.metrics().renewals_failed), 1);
    assert!(!fence_passes(&mut client, "review.1.report", node.id(), 1).await);
    let tx = client.transaction().await.expect("begin");
    assert!(!node.fence(&tx, "review.1.report", 1).await.expect("fence"));
}

#[tokio::test]
async fn a_stale_epoch_fails_the_fence() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    let first = register(&db, steady()).await;
    let second = register(&db, steady()).await;
    assert_eq!(won(&first, "review.1.report").await.epoch, 1);
    assert!(fence_passes(&mut client, "review.1.report", first.id(), 1).await);
    assert!(!fence_passes(&mut client, "review.1.report", second.id(), 1).await);
    assert!(!fence_passes(&mut client, "review.1.other", first.id(), 1).await);

    // Claimed again by the same node (a reload): the old epoch's commits are fenced.
    assert_eq!(
        won(&first, "review.1.report").await,
        Won {
            epoch: 2,
            from: Previous::Myself
        }
    );
    assert!(!fence_passes(&mut client, "review.1.report", first.id(), 1).await);
    assert!(fence_passes(&mut client, "review.1.report", first.id(), 2).await);

    // Handed over and taken by another node.
    assert!(!first.release("review.1.report", 1).await.expect("release"));
    assert!(first.release("review.1.report", 2).await.expect("release"));
    assert!(!fence_passes(&mut client, "review.1.report", first.id(), 2).await);
    assert_eq!(won(&second, "review.1.report").await.epoch, 3);
    assert!(!fence_passes(&mut client, "review.1.report", first.id(), 3).await);
    assert!(fence_passes(&mut client, "review.1.report", second.id(), 3).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_a_commit_that_passed_the_fence() {
    let db = TestDb::create().await;
    let owner = register(&db, steady()).await;
    let taker = Arc::new(register(&db, steady()).await);
    assert_eq!(won(&owner, "review.1.report").await.epoch, 1);

    // The owner's commit passes the fence and is still open when its lease ends.
    let mut committing = db.client().await;
    let tx = committing.transaction().await.expect("begin");
    assert!(fence(&tx, "review.1.report", owner.id(), 1)
        .await
        .expect("fence"));
    let observer = db.client().await;
    observer
        .execute(
            "UPDATE nodes SET lease_until = now() - interval '1 second' WHERE id = $1",
            &[&owner.id().as_str()],
        )
        .await
        .expect("end the lease");

    // The taker's claim waits on the document's row until the commit ends.
    let claim = tokio::spawn({
        let taker = taker.clone();
        async move { taker.claim("review.1.report").await }
    });
    let looking = &observer;
    until("the claim waits on the row lock", || async move {
        let waiting: i64 = looking
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        waiting == 1
    })
    .await;
    assert!(!claim.is_finished());
    tx.commit().await.expect("the fenced-in commit");
    match claim.await.expect("join").expect("claim") {
        Claim::Won(won) => assert_eq!(won.epoch, 2),
        Claim::Held(held) => panic!("held: {held:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_claimed_together_are_taken_all_or_none() {
    let db = TestDb::create().await;
    let holder = register(&db, steady()).await;
    let claimer = register(&db, steady()).await;
    assert_eq!(won(&holder, "review.2.notes").await.epoch, 1);
    let review = ["review.2.report", "review.2.discussion", "review.2.notes"];

    // One of the three is held: none is taken, and the missing rows are not left behind.
    match claimer.claim_all(&review).await.expect("claim") {
        Claims::Held(held) => {
            assert_eq!(held.name, "review.2.notes");
            assert_eq!(held.owner, holder.id().as_str());
        }
        Claims::Won(won) => panic!("took a held document: {won:?}"),
    }
    assert_eq!(
        claimer.owner_of("review.2.report").await.expect("owner"),
        Ownership::Absent
    );
    assert_eq!(claimer.owns("review.2.report"), None);

    // Handed over: all three in one claim.
    assert!(holder.release("review.2.notes", 1).await.expect("release"));
    match claimer.claim_all(&review).await.expect("claim") {
        Claims::Won(won) => assert_eq!(
            won,
            vec![
                (
                    "review.2.discussion".to_owned(),
                    Won {
                        epoch: 1,
                        from: Previous::New
                    }
                ),
                (
                    "review.2.notes".to_owned(),
                    Won {
                        epoch: 2,
                        from: Previous::Unowned
                    }
                ),
                (
                    "review.2.report".to_owned(),
                    Won {
                        epoch: 1,
                        from: Previous::New
                    }
                ),
            ]
        ),
        Claims::Held(held) => panic!("held: {held:?}"),
    }
    assert_eq!(ClusterMetrics::read(&claimer.metrics().owned_documents), 3);

    // Two nodes claiming the same documents named in opposite orders: exactly one wins every
    // round, and neither deadlocks.
    let first = Arc::new(register(&db, steady()).await);
    let second = Arc::new(register(&db, steady()).await);
    for round in 0..10 {
        let a = format!("review.r{round}.report");
        let b = format!("review.r{round}.discussion");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let claims: Vec<_> = [
            (first.clone(), vec![a.clone(), b.clone()]),
            (second.clone(), vec![b.clone(), a.clone()]),
        ]
        .into_iter()
        .map(|(node, names)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                node.claim_all(&names).await
            })
        })
        .collect();
        let mut winners = 0;
        for claim in claims {
            match claim.await.expect("join").expect("claim without deadlock") {
                Claims::Won(won) => {
                    winners += 1;
                    assert!(won.iter().all(|(_, w)| w.epoch == 1), "{won:?}");
                }
                Claims::Held(_) => {}
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claimer_takes_a_handed_over_document_within_one_renewal_interval() {
    let db = TestDb::create().await;
    // A long lease: the claimer must not wait for it to lapse.
    let lease = Duration::from_secs(30);
    let owner = register(&db, settings(30_000, 200)).await;
    let claimer = Arc::new(register(&db, settings(30_000, 200)).await);
    assert_eq!(won(&owner, "review.1.report").await.epoch, 1);

    let waiting = tokio::spawn({
        let claimer = claimer.clone();
        async move {
            claimer
                .claim_within("review.1.report", Duration::from_secs(20))
                .await
        }
    });
    // The claimer has looked and found the document held: it is waiting.
    let metrics = claimer.metrics();
    until("the claimer found the document held", || async move {
        ClusterMetrics::read(&metrics.claims_held) >= 1
    })
    .await;
    let released = Instant::now();
    assert!(owner.release("review.1.report", 1).await.expect("release"));
    let won = waiting.await.expect("join").expect("claimed");
    let took = released.elapsed();
    assert_eq!(
        won,
        Won {
            epoch: 2,
            from: Previous::Unowned
        }
    );
    // One renewal interval (200 ms) and a claim; a quarter of the lease leaves seconds for a
    // loaded machine, and still fails a claimer that waits for the lease or for its patience.
    assert!(
        took < lease / 4,
        "took {took:?} after the handover, with a {lease:?} lease and 200 ms renewals"
    );
    eprintln!("claimed {took:?} after the handover (renewal interval 200 ms)");
}

/// How many sessions of the test database wait on a row lock.
async fn lock_waiters(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handover_and_a_claim_of_the_same_documents_do_not_deadlock() {
    let db = TestDb::create().await;
    // PostgreSQL looks for a deadlock only after a lock wait of deadlock_timeout (1 s by
    // default); sooner here.
    db.admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET deadlock_timeout = '20ms'",
            db.name()
        ))
        .await
        .expect("set deadlock_timeout");
    let mut observer = db.client().await;
    let claimer = Arc::new(register(&db, steady()).await);
    for round in 0..ROUNDS {
        let leaving = register(&db, steady()).await;
        let leaving_metrics = leaving.metrics().clone();
        let names: Vec<String> = (0..DOCUMENTS)
            .map(|i| format!("review.h{round}.{i:03}"))
            .collect();
        // Claimed one at a time in reverse name order: the rows' current versions lie in the
        // table in that order, so a statement that locks rows as it scans the table takes them
        // in the reverse of a claim's order.
        for name in names.iter().rev() {
            assert_eq!(won(&leaving, name).await.epoch, 1);
        }

        // The claim is caught halfway through locking its rows (a session holds the middle
        // one), and the handover starts while it waits: the moment at which locking in two
        // different orders deadlocks.
        let middle = &names[DOCUMENTS / 2];
        let pause = observer.transaction().await.expect("begin");
        pause
            .execute(
                "SELECT 1 FROM documents WHERE name = $1 FOR UPDATE",
                &[middle],
            )
            .await
            .expect("lock the middle row");
        let claim = tokio::spawn({
            let claimer = claimer.clone();
            let names = names.clone();
            async move {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                claimer.claim_all_within(&names, PATIENCE).await
            }
        });
        let looking = db.client().await;
        let looking = &looking;
        until("the claim waits on the middle row", || async move {
            lock_waiters(looking).await == 1
        })
        .await;
        let handover = tokio::spawn(leaving.shut_down());
        until("the handover waits too", || async move {
            lock_waiters(looking).await == 2
        })
        .await;
        pause.commit().await.expect("let the claim go on");

        let handed = handover.await.expect("join");
        let claimed = claim.await.expect("join");
        assert_eq!(
            handed.map_err(|e| format!("{e:?}")).expect("the handover"),
            DOCUMENTS as u64,
            "round {round}"
        );
        let claimed = claimed.map_err(|e| format!("{e:?}")).expect("the claim");
        assert_eq!(claimed.len(), DOCUMENTS, "round {round}");
        for (name, won) in &claimed {
            assert_eq!(
                won,
                &Won {
                    epoch: 2,
                    from: Previous::Unowned
                },
                "round {round}: {name}"
            );
        }
        // Both lock in name order: neither was a deadlock's victim (and saved by a retry).
        assert_eq!(ClusterMetrics::read(&leaving_metrics.deadlocks), 0);
    }
    assert_eq!(ClusterMetrics::read(&claimer.metrics().deadlocks), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_waited_on_a_lock_past_the_lease_does_not_revive_it() {
    let db = TestDb::create().await;
    let node = register(&db, steady()).await;
    let metrics = node.metrics();
    until("a first renewal", || async move {
        ClusterMetrics::read(&metrics.lease_renewals) >= 1
    })
    .await;

    // Another session holds the node's row, so the next renewal waits on its lock.
    let blocker = db.client().await;
    blocker.batch_execute("BEGIN").await.expect("begin");
    blocker
        .execute(
            "UPDATE nodes SET lease_until = lease_until WHERE id = $1",
            &[&node.id().as_str()],
        )
        .await
        .expect("lock the node's row");
    let looking = db.client().await;
    let looking = &looking;
    until("a renewal waits on the row", || async move {
        lock_waiters(looking).await == 1
    })
    .await;
    let renewals = ClusterMetrics::read(&node.metrics().lease_renewals);

    // While the renewal waits, the lease ends (by the database's clock, after the renewal's
    // statement began): another node would now see it lapsed and take the node's documents.
    blocker
        .execute(
            "UPDATE nodes SET lease_until = clock_timestamp() WHERE id = $1",
            &[&node.id().as_str()],
        )
        .await
        .expect("end the lease");
    blocker.batch_execute("COMMIT").await.expect("commit");

    let why = tokio::time::timeout(PATIENCE, node.fenced())
        .await
        .expect("the renewal was refused");
    assert_eq!(why, Fenced::LeaseExpired);
    assert_eq!(
        ClusterMetrics::read(&node.metrics().lease_renewals),
        renewals
    );
    let lapsed: bool = looking
        .query_one(
            "SELECT lease_until <= clock_timestamp() FROM nodes WHERE id = $1",
            &[&node.id().as_str()],
        )
        .await
        .expect("the node's row")
        .get(0);
    assert!(lapsed, "the lapsed lease was renewed");
}

/// Runs `operation`, which locks the rows of `names` in name order, so that PostgreSQL aborts
/// it to break a deadlock: one session holds the second row, so the operation takes the first
/// and waits; another holds the third and asks for the first; the second is let go, and the
/// operation, asking for the third, closes the cycle and is the one PostgreSQL aborts (the other
/// session looks for deadlocks only after a minute). The other session gets the first row and
/// ends; answers the operation's outcome.
async fn as_a_deadlock_victim<T, F>(db: &TestDb, names: [&str; 3], operation: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let [first, second, third] = names.map(str::to_owned);
    let lock = "SELECT 1 FROM documents WHERE name = $1 FOR UPDATE";
    let holds_second = db.client().await;
    holds_second.batch_execute("BEGIN").await.expect("begin");
    holds_second
        .execute(lock, &[&second])
        .await
        .expect("lock the second row");
    let holds_third = Arc::new(db.client().await);
    holds_third
        .batch_execute("BEGIN; SET LOCAL deadlock_timeout = '1min'")
        .await
        .expect("begin");
    holds_third
        .execute(lock, &[&third])
        .await
        .expect("lock the third row");

    let running = tokio::spawn(operation);
    let looking = db.client().await;
    let looking = &looking;
    until(
        "the operation holds the first row and waits",
        || async move { lock_waiters(looking).await == 1 },
    )
    .await;
    let asks_first = tokio::spawn({
        let holds_third = holds_third.clone();
        async move { holds_third.execute(lock, &[&first]).await }
    });
    until("the other session waits for the first row", || async move {
        lock_waiters(looking).await == 2
    })
    .await;
    holds_second
        .batch_execute("COMMIT")
        .await
        .expect("let the second row go");
    // The operation was aborted, which let the other session have the first row.
    asks_first
        .await
        .expect("join")
        .expect("the other session locks the first row");
    holds_third.batch_execute("COMMIT").await.expect("commit");
    running.await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_and_a_handover_chosen_as_a_deadlocks_victim_run_again() {
    let db = TestDb::create().await;
    db.admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET deadlock_timeout = '20ms'",
            db.name()
        ))
        .await
        .expect("set deadlock_timeout");
    let names = ["review.1.discussion", "review.1.notes", "review.1.report"];

    // A claim.
    let claimer = Arc::new(register(&db, steady()).await);
    db.client()
        .await
        .execute(
            "INSERT INTO documents (name, owner, epoch) SELECT unnest($1::text[]), NULL, 0",
            &[&names.to_vec()],
        )
        .await
        .expect("the documents' rows");
    let claimed = as_a_deadlock_victim(&db, names, {
        let claimer = claimer.clone();
        async move { claimer.claim_all(&names).await }
    })
    .await;
    match claimed.map_err(|e| format!("{e:?}")).expect("the claim") {
        Claims::Won(won) => assert_eq!(
            won.iter()
                .map(|(name, won)| (name.as_str(), won.epoch, won.from.clone()))
                .collect::<Vec<_>>(),
            names
                .iter()
                .map(|name| (*name, 1, Previous::Unowned))
                .collect::<Vec<_>>()
        ),
        Claims::Held(held) => panic!("held: {held:?}"),
    }
    assert!(ClusterMetrics::read(&claimer.metrics().deadlocks) >= 1);

    // A handover.
    let metrics = claimer.metrics().clone();
    let handed = as_a_deadlock_victim(&db, names, async move {
        match Arc::try_unwrap(claimer) {
            Ok(node) => node.shut_down().await,
            Err(_) => panic!("the node is shared"),
        }
    })
    .await;
    assert_eq!(
        handed.map_err(|e| format!("{e:?}")).expect("the handover"),
        3
    );
    let deadlocks = ClusterMetrics::read(&metrics.deadlocks);
    assert!(deadlocks >= 2, "{deadlocks} deadlocks");
    let observer = register(&db, steady()).await;
    for name in names {
        assert_eq!(
            observer.owner_of(name).await.expect("owner"),
            Ownership::Unowned { epoch: 1 }
        );
    }
}
