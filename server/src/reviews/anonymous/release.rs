//! The release of held anonymous items: at every boundary of the cadence (or at a phase
//! boundary), each review's batch is shuffled, written into its discussion document with the
//! server's client id, its keys and votes recorded in one sled batch, and only then wiped from
//! the held-items file. Nothing here logs or counts anything about a person.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use debrief_proto::schema::{document_name, DocKind};
use rand::seq::SliceRandom;
use tokio_util::sync::CancellationToken;

use super::{item_id, new_item_id, Anonymity, HeldRecord};
use crate::documents::registry::Registry;
use crate::reviews::basics::{locked, now_ms, to_json};
use crate::reviews::records::Records;
use crate::reviews::sessions::Reviews;
use crate::reviews::threads::{self, AnonOp};
use crate::storage::store::MetaTree;

/// What a release of held items needs: the queue, the reviews (whose phase and mode decide what
/// may go out) and the documents it is written to.
#[derive(Debug, Clone)]
pub struct Releases {
    /// The held items.
    pub anonymity: Arc<Anonymity>,
    /// The reviews they belong to.
    pub reviews: Arc<Reviews>,
    /// Where the discussion documents are open.
    pub registry: Arc<Registry>,
}

/// Releases what every review may release now, stamped with boundary `at`: shuffled, written in
/// one transaction per review with the server's client id, then the keys and votes in one sled
/// batch, and only then wiped from the held-items file. `only` limits it to one review (a phase
/// change); `force` releases even a batch that only one person contributed to (the close).
pub async fn release(state: &Releases, at: u64, only: Option<&str>, force: bool) {
    let anonymity = &state.anonymity;
    let _one_at_a_time = anonymity.releasing.lock().await;
    for (review, records) in anonymity.all_held() {
        if only.is_some_and(|o| o != review) || !state.reviews.may_release(&review) {
            continue;
        }
        let Some(record) = state.reviews.record(&review) else {
            continue;
        };
        if !anonymity.batch_ready(&record, force) {
            continue;
        }
        if release_review(state, &review, records, at).await.is_ok() {
            locked(&anonymity.windows).remove(&review);
        }
    }
}

async fn release_review(
    state: &Releases,
    review: &str,
    mut records: Vec<(u32, HeldRecord)>,
    at: u64,
) -> Result<(), ()> {
    let anonymity = &state.anonymity;
    records.shuffle(&mut rand::thread_rng());
    // Items exist before they are supported, edited or retracted; later edits win.
    records.sort_by_key(|(_, r)| (r.op.stage(), r.rev));
    let retracted: HashSet<String> = records
        .iter()
        .filter_map(|(_, r)| match &r.op {
            AnonOp::Retract { item } => Some(item_id(item)),
            _ => None,
        })
        .collect();
    // An item edited before it was ever shown appears with its latest text, not as edited.
    let new_items: HashSet<String> = records
        .iter()
        .filter_map(|(_, r)| new_item_id(&r.op).map(str::to_owned))
        .collect();
    let latest_text: HashMap<String, String> = records
        .iter()
        .filter_map(|(_, r)| match &r.op {
            AnonOp::Edit { item, body } if new_items.contains(&item_id(item)) => {
                Some((item_id(item), body.clone()))
            }
            _ => None,
        })
        .collect();
    // The final state of each key (a retraction, applied last, wins over its item's key).
    let mut keys: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut votes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut pulses: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut ops = Vec::with_capacity(records.len());
    for (_, r) in &records {
        if let Some(k) = &r.key {
            if !retracted.contains(&item_id(&k.item)) {
                keys.insert(item_id(&k.item).into_bytes(), Some(to_json(k)));
            }
        }
        if let Some(v) = &r.voter {
            votes.insert(v.clone().into_bytes(), Some(Vec::new()));
        }
        match &r.op {
            AnonOp::Pulse { answer, scores } => {
                // Kept apart from the discussion, under a random id: sled writes the batch in
                // key order, which is no order of arrival.
                let mut key = review.as_bytes().to_vec();
                key.push(0);
                key.extend_from_slice(answer.as_bytes());
                pulses.insert(key, Some(to_json(scores)));
                continue;
            }
            AnonOp::Retract { item } => {
                keys.insert(item_id(item).into_bytes(), None);
            }
            AnonOp::Thread { comment: id, .. }
            | AnonOp::Reply { comment: id, .. }
            | AnonOp::Concern { concern: id, .. }
                if retracted.contains(id) =>
            {
                continue
            }
            AnonOp::Edit { item, .. }
                if retracted.contains(&item_id(item)) || new_items.contains(&item_id(item)) =>
            {
                continue
            }
            _ => {}
        }
        let mut op = r.op.clone();
        if let Some(text) = new_item_id(&op).and_then(|id| latest_text.get(id)) {
            match &mut op {
                AnonOp::Thread { body, .. }
                | AnonOp::Reply { body, .. }
                | AnonOp::Concern { body, .. } => text.clone_into(body),
                _ => {}
            }
        }
        ops.push(op);
    }
    let slots: Vec<u32> = records.iter().map(|(s, _)| *s).collect();
    // From here on the submitters are not told "pending": the items may appear any moment.
    locked(&anonymity.queue).releasing.extend(&slots);
    // A batch of pulse answers alone leaves the discussion as it is.
    let written = if ops.is_empty() {
        Ok(())
    } else {
        state
            .registry
            .open(&document_name(review, DocKind::Discussion))
            .run_essential(move |doc| ((), threads::release(doc, &ops, at as f64)))
            .await
    };
    let failed = |slots: &[u32]| {
        let mut queue = locked(&anonymity.queue);
        for slot in slots {
            queue.releasing.remove(slot);
        }
    };
    if written.is_err() {
        failed(&slots);
        // Kept in the queue: the next boundary tries again (applying is idempotent).
        tracing::warn!(review = %review, "anonymous release postponed: discussion unavailable");
        return Err(());
    }
    // Together: on PostgreSQL one commit carries all three or none (docs/anonymity.md).
    let recorded = MetaTree::apply_together(vec![
        (&anonymity.keys, keys),
        (&anonymity.votes, votes),
        (&anonymity.pulses, pulses),
    ]);
    if let Err(e) = recorded {
        tracing::error!(error = %e, "cannot record the keys and votes of released anonymous items");
        failed(&slots);
        return Err(());
    }
    if let Err(e) = anonymity.store.durable().await {
        tracing::error!(error = %e, "cannot flush the release of anonymous items");
        failed(&slots);
        return Err(());
    }
    let queue = anonymity.queue.clone();
    let wiped = tokio::task::spawn_blocking(move || locked(&queue).wipe(&slots)).await;
    if !matches!(wiped, Ok(Ok(()))) {
        // Released and recorded: only the wipe waits for the next boundary.
        tracing::error!("cannot wipe released anonymous items from the held-items file");
        return Err(());
    }
    Ok(())
}

/// Releases at every cadence boundary until `shutdown` is cancelled, then shows the read counts
/// that changed since the last one (a boundary too, so that a change tells nothing about who
/// just read).
pub async fn release_loop(releases: Releases, records: Arc<Records>, shutdown: CancellationToken) {
    loop {
        let now = now_ms();
        let next = releases.anonymity.next_boundary(now);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(next.saturating_sub(now))) => {}
        }
        release(&releases, next, None, false).await;
        records.publish_read_counts(&releases.registry).await;
    }
}
