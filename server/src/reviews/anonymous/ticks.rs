//! The clock of the held slots in the database (a node of a cluster, [`super::sealed`]): a tick
//! every [`BUSY_TICK`] while a document is open on this node, every [`IDLE_TICK`] otherwise,
//! whether or not anything was submitted. Nothing here logs a slot, a review or a submission.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::sealed::{Tick, BUSY_TICK, IDLE_TICK, MAX_WAITING, TICK_WRITES};
use super::{locked, Anonymity};
use crate::storage::store::StoreError;

/// Ticks run at shutdown, at most, so that submissions still waiting are written (and answered)
/// before the node stops.
const SHUTDOWN_TICKS: usize = MAX_WAITING / TICK_WRITES + 1;

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

    fn submissions_waiting(&self) -> bool {
        locked(&self.queue)
            .place
            .sealed()
            .is_some_and(|s| s.submissions_waiting())
    }
}

/// Ticks the held slots until `shutdown`: every [`BUSY_TICK`] while `busy` says a document is
/// open on this node, every [`IDLE_TICK`] otherwise, never because something was submitted. At
/// shutdown, ticks of the same size write what still waits (at most [`SHUTDOWN_TICKS`]), and
/// anything left is answered with an error. Returns at once for the held-items file.
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
        if !anonymity.submissions_waiting() {
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
