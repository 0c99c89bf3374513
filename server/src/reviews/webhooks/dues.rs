//! Due days of action items: an index of every action item written through the API since
//! webhooks exist (its due day, whether it is done, and which of "due soon" and "overdue" was
//! already told), and the scan that turns it into events. The scan runs every
//! `WebhookSettings::scan_every` and whenever a manual clock moves; each item fires each kind
//! at most once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::clock::day_number;
use super::{trees, Event, EventType, Webhooks};
use crate::reviews::basics::{locked, to_json};
use crate::storage::store::{MetaTree, Store, StoreError};

/// An item is "due soon" this many days before its due day (the day itself included).
pub const DUE_SOON_DAYS: i64 = 2;

/// What the index keeps of one action item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DueItem {
    /// The review.
    pub review: String,
    /// The review's title when the item last changed.
    pub title: String,
    /// The item as events show it: id, what, owner, kind, due, status, link.
    pub action: serde_json::Value,
    /// Its due day, `YYYY-MM-DD`.
    pub due: Option<String>,
    /// Whether it is done.
    pub done: bool,
    /// "Due soon" was told.
    #[serde(default)]
    pub told_soon: bool,
    /// "Overdue" was told.
    #[serde(default)]
    pub told_overdue: bool,
}

/// The index (one sled tree), read on each scan.
#[derive(Debug)]
pub struct Dues {
    tree: MetaTree,
    /// Held by every read-modify-write of the tree: an update and a scan of the same item never
    /// interleave (a scan writing back its stale copy would undo a status just set to done, and
    /// an update writing back its stale flags would tell "due soon" twice).
    writing: std::sync::Mutex<()>,
}

fn key(review: &str, action: &str) -> Vec<u8> {
    format!("{review}\0{action}").into_bytes()
}

impl Dues {
    pub(super) fn open(store: &Store) -> Result<Dues, StoreError> {
        Ok(Dues {
            tree: store.meta_tree(trees::DUES)?,
            writing: std::sync::Mutex::new(()),
        })
    }

    /// Records an item's latest fields; what was told stays told. Durable with the store's next
    /// flush (the caller's).
    pub fn update(
        &self,
        review: &str,
        title: &str,
        action: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let Some(id) = action["id"].as_str() else {
            return Ok(());
        };
        let k = key(review, id);
        let _one_at_a_time = locked(&self.writing);
        let old: Option<DueItem> = self
            .tree
            .get(&k)?
            .and_then(|v| serde_json::from_slice(&v).ok());
        let item = DueItem {
            review: review.to_owned(),
            title: title.to_owned(),
            action: action.clone(),
            due: action["due"].as_str().map(str::to_owned),
            done: action["status"] == "done",
            told_soon: old.as_ref().is_some_and(|o| o.told_soon),
            told_overdue: old.as_ref().is_some_and(|o| o.told_overdue),
        };
        self.tree.put(&k, &to_json(&item))
    }
}

/// The events due on `today` (a day number), with the index entries that record them as told.
fn scan(tree: &MetaTree, today: i64) -> Result<Vec<(Vec<u8>, DueItem, EventType)>, StoreError> {
    let mut out = Vec::new();
    for (k, v) in tree.entries()? {
        let Ok(mut item) = serde_json::from_slice::<DueItem>(&v) else {
            continue;
        };
        let Some(due) = item.due.as_deref().and_then(day_number) else {
            continue;
        };
        if item.done {
            continue;
        }
        let kind = if today > due && !item.told_overdue {
            item.told_overdue = true;
            // Past due, "due soon" is no longer news.
            item.told_soon = true;
            EventType::ActionOverdue
        } else if today <= due && due - today < DUE_SOON_DAYS && !item.told_soon {
            item.told_soon = true;
            EventType::ActionDueSoon
        } else {
            continue;
        };
        out.push((k, item, kind));
    }
    Ok(out)
}

impl Webhooks {
    /// Tells what is due soon or overdue on the clock's day, once per item and kind: each event
    /// goes into the outbox together with the mark that it was told, then both are made durable.
    pub async fn scan_dues(&self) -> Result<usize, StoreError> {
        let mut staged = Vec::new();
        let n = {
            let _one_at_a_time = locked(&self.dues.writing);
            let found = scan(&self.dues.tree, self.clock.today())?;
            let n = found.len();
            for (k, item, kind) in found {
                let data = serde_json::json!({ "action": item.action });
                let event = Event::new(&self.clock, kind, &item.review, &item.title, data);
                staged.extend(self.stage(event)?);
                self.dues.tree.put(&k, &to_json(&item))?;
            }
            n
        };
        if n > 0 {
            self.store.durable().await?;
            self.commit(&staged);
        }
        Ok(n)
    }
}

/// Scans every `scan_every`, and at once whenever a manual clock moves, until `shutdown`.
pub async fn scan_loop(webhooks: Arc<Webhooks>, shutdown: CancellationToken) {
    let clock = webhooks.clock.clone();
    loop {
        let at = clock.now_ms();
        match webhooks.scan_dues().await {
            Ok(_) => clock.scanned(at),
            Err(e) => tracing::warn!(error = %e, "action items' due days could not be scanned"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = clock.moved() => {}
            () = tokio::time::sleep(webhooks.settings.scan_every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_is_told_once_per_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _flusher) = Store::open(dir.path()).expect("open");
        let dues = Dues::open(&store).expect("dues");
        let action =
            serde_json::json!({"id": "a1", "what": "x", "due": "2026-03-10", "status": "open"});
        dues.update("r", "Title", &action).expect("update");
        let day = |d: &str| day_number(d).expect("a day");
        let tell = |today: i64| {
            let found = scan(&dues.tree, today).expect("scan");
            for (k, item, _) in &found {
                dues.tree.put(k, &to_json(item)).expect("put");
            }
            found.into_iter().map(|(_, _, k)| k).collect::<Vec<_>>()
        };
        assert!(tell(day("2026-03-07")).is_empty());
        assert_eq!(tell(day("2026-03-09")), vec![EventType::ActionDueSoon]);
        assert!(tell(day("2026-03-10")).is_empty());
        // A later change keeps what was told.
        dues.update("r", "Title", &action).expect("update");
        assert_eq!(tell(day("2026-03-11")), vec![EventType::ActionOverdue]);
        assert!(tell(day("2026-03-20")).is_empty());
        // Done items are never overdue.
        let done = serde_json::json!({"id": "a2", "due": "2026-03-01", "status": "done"});
        dues.update("r", "Title", &done).expect("update");
        assert!(tell(day("2026-03-20")).is_empty());
    }
}
