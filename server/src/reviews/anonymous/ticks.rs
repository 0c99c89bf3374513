//! The clock of the held slots in the database (a node of a cluster, [`super::sealed`]): a tick
//! every [`BUSY_TICK`] while a document is open on this node, every [`IDLE_TICK`] otherwise,
//! whether or not anything was submitted. Nothing here logs a slot, a review or a submission.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::held::SLOTS;
use super::sealed::{Tick, BUSY_TICK, IDLE_TICK, MAX_WAITING, TICK_WRITES};
use super::{locked, Anonymity};
use crate::storage::store::StoreError;

/// Ticks run at shutdown, at most, so that what still waits is written before the node stops:
/// the submissions (which are answered then), and the wipes of released items, which would
/// otherwise stay sealed in the database after their release. Every slot may wait for a wipe
/// (a release of everything held), on top of the submissions.
const SHUTDOWN_TICKS: usize = (MAX_WAITING + SLOTS) / TICK_WRITES + 1;

impl Anonymity {
    /// One tick of the held slots in the database (nothing for the held-items file). An error
    /// is the store's; what the tick took waits for the next.
    pub async fn tick(&self) -> Result<(), StoreError> {
        let (tick, store) = {
            let mut queue = locked(&self.queue);
            match queue.place.sealed() {
                Some(sealed) => (sealed.plan(), sealed.store.clone()),
                None => return Ok(()),
            }
        };
        let Tick { writes, taken } = tick;
        let result = store.write_held_slots(writes).await;
        if let Some(sealed) = locked(&self.queue).place.sealed() {
            sealed.done(taken, &result);
        }
        result
    }

    /// Whether held items are written on ticks (in the database) rather than at once.
    fn ticks(&self) -> bool {
        locked(&self.queue).place.sealed().is_some()
    }

    /// Whether a submission or a wipe waits for a tick.
    fn anything_waiting(&self) -> bool {
        locked(&self.queue)
            .place
            .sealed()
            .is_some_and(|s| s.anything_waiting())
    }
}

/// Ticks the held slots until `shutdown`: every [`BUSY_TICK`] while `busy` says a document is
/// open on this node, every [`IDLE_TICK`] otherwise, never because something was submitted. At
/// shutdown, ticks of the same size write what still waits, submissions and wipes (at most
/// [`SHUTDOWN_TICKS`]), and anything left is answered with an error. Returns at once for the held-items file.
pub async fn tick_loop(
    anonymity: Arc<Anonymity>,
    busy: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: CancellationToken,
) {
    if !anonymity.ticks() {
        return;
    }
    let mut clock = tokio::time::interval(BUSY_TICK);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = clock.tick() => {}
        }
        if !busy() && last.elapsed() < IDLE_TICK {
            continue;
        }
        last = tokio::time::Instant::now();
        if let Err(e) = anonymity.tick().await {
            tracing::error!(error = %e, "cannot write the held anonymous slots; the next tick tries again");
        }
    }
    for _ in 0..SHUTDOWN_TICKS {
        if !anonymity.anything_waiting() {
            break;
        }
        if anonymity.tick().await.is_err() {
            break;
        }
    }
    if let Some(sealed) = locked(&anonymity.queue).place.sealed() {
        sealed.give_up();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::reviews::anonymous::sealed::HeldKey;
    use crate::reviews::anonymous::HeldPlace;
    use crate::storage::postgres::testdb::{query_text, TestDb, TestOwner};
    use crate::storage::postgres::PgSettings;
    use crate::storage::store::Store;

    /// Every row version of the held slots, as `xmin`/`ctid`: it changes when a tick ran.
    fn versions(db: &TestDb) -> Vec<String> {
        query_text(
            &db.url(),
            "SELECT xmin || '/' || ctid FROM held_slots ORDER BY slot, piece",
        )
        .expect("query")
    }

    /// The clock alone writes: a submission while nothing is open waits for a tick that does
    /// not come on its arrival (idle ticks are 30 s apart), and is acknowledged by the first
    /// busy tick once a document is open; busy ticks go on without any submission.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_submission_waits_for_the_clock_and_not_the_other_way_round() {
        let db = tokio::task::spawn_blocking(TestDb::create)
            .await
            .expect("create");
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = PgSettings {
            url: db.url(),
            patience: Duration::from_secs(5),
            timeout: crate::storage::postgres::DEFAULT_TIMEOUT,
            shared: false,
        };
        let path = dir.path().to_owned();
        let (store, flusher, anonymity) = tokio::task::spawn_blocking(move || {
            let opened = Store::open_postgres(&settings, &path, TestOwner::ownership())
                .expect("open the store");
            let key = HeldKey::new(zeroize::Zeroizing::new([9; 32]));
            let anonymity = Anonymity::open(
                &opened.store,
                HeldPlace::Sealed(key),
                Duration::from_secs(60),
            )
            .expect("open");
            (opened.store, opened.flusher, anonymity)
        })
        .await
        .expect("open");
        let busy = Arc::new(AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        let ticking = tokio::spawn(tick_loop(
            anonymity.clone(),
            Arc::new({
                let busy = busy.clone();
                move || busy.load(Ordering::Relaxed)
            }),
            shutdown.clone(),
        ));
        let before = versions(&db);
        let held = tokio::spawn({
            let anonymity = anonymity.clone();
            async move { anonymity.hold_pulse("review", "session", vec![3]).await }
        });
        // Nothing is open: no tick for 30 s, none on the submission's arrival.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!held.is_finished(), "acknowledged without a tick");
        assert_eq!(versions(&db), before, "a row was written on arrival");
        // A document opens: the next busy tick writes and acknowledges it.
        busy.store(true, Ordering::Relaxed);
        let receipt = tokio::time::timeout(Duration::from_secs(10), held)
            .await
            .expect("acknowledged within a busy tick")
            .expect("the task")
            .expect("held");
        assert!(!receipt.receipt.is_empty());
        let acknowledged = versions(&db);
        assert_ne!(acknowledged, before);
        // Busy ticks go on with nothing submitted.
        tokio::time::timeout(Duration::from_secs(10), async {
            while versions(&db) == acknowledged {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("another busy tick");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), ticking)
            .await
            .expect("the loop ends at shutdown")
            .expect("the task");
        drop(anonymity);
        drop(store);
        tokio::task::spawn_blocking(move || flusher.run())
            .await
            .expect("flusher");
    }
}
