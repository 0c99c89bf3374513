//! The action items of every review, kept in memory for the action items page (issue 20), so
//! that listing them does not read every review's discussion document on each request.
//!
//! The discussion document stays the only record: the index holds a copy of each review's
//! `actions` map. A review enters the index when it is first asked about, read from its
//! document on the document's own task ([`ActionIndex::fill`]); from then on every server write
//! of an action item puts the item's new state in the index from inside the same job
//! ([`ActionIndex::put`]). Jobs of one document run one after the other, so a fill sees every
//! write before it and every write after it finds the review filled: the copy cannot miss one.
//! Only the server writes the discussion document, and only through those jobs.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use super::basics::locked;
use super::meeting::{ActionKind, ActionStatus, StatusChange};

/// An action item as the index keeps it (the discussion document's fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Indexed {
    /// Its id.
    pub id: String,
    /// What will change.
    pub what: String,
    /// The contributing factor it addresses.
    pub why: String,
    /// Prevent, detect, mitigate or process.
    pub kind: ActionKind,
    /// The owning team.
    pub owner: String,
    /// Tracker link.
    #[serde(default)]
    pub link: Option<String>,
    /// Due day, YYYY-MM-DD.
    #[serde(default)]
    pub due: Option<String>,
    /// Where it stands.
    #[serde(default)]
    pub status: ActionStatus,
    /// When it was added, ms since the epoch.
    #[serde(default)]
    pub created_at: f64,
    /// Its last change, ms since the epoch.
    #[serde(default)]
    pub updated_at: f64,
    /// Who set which status, when (items added before issue 20 have none).
    #[serde(default)]
    pub history: Vec<StatusChange>,
}

/// How many of a review's action items are done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ActionCounts {
    /// Items whose status is `done`.
    pub done: usize,
    /// All its items.
    pub total: usize,
}

impl ActionCounts {
    /// The counts of `items`.
    pub fn of<'a>(items: impl IntoIterator<Item = &'a Indexed>) -> ActionCounts {
        items
            .into_iter()
            .fold(ActionCounts::default(), |c, i| ActionCounts {
                done: c.done + usize::from(i.status == ActionStatus::Done),
                total: c.total + 1,
            })
    }
}

/// Whether an action item's owner is `who`, compared as people type a team: without regard to
/// case or the spaces around it.
pub fn owned_by(owner: &str, who: &str) -> bool {
    let who = who.trim();
    !who.is_empty() && owner.trim().to_lowercase() == who.to_lowercase()
}

/// How many of `items` are not done yet and owned by one of `owners` (see [`owned_by`]).
pub fn open_owned_by<'a>(items: impl IntoIterator<Item = &'a Indexed>, owners: &[&str]) -> usize {
    items
        .into_iter()
        .filter(|i| i.status != ActionStatus::Done && owners.iter().any(|o| owned_by(&i.owner, o)))
        .count()
}

/// Review id → its action items by id; a review is present once filled.
#[derive(Debug, Default)]
pub struct ActionIndex {
    reviews: Mutex<HashMap<String, HashMap<String, Indexed>>>,
}

fn parse(item: &serde_json::Value) -> Option<Indexed> {
    serde_json::from_value(item.clone()).ok()
}

impl ActionIndex {
    /// Whether `review`'s items are in the index.
    pub fn filled(&self, review: &str) -> bool {
        locked(&self.reviews).contains_key(review)
    }

    /// Puts every item of `review`, as its document holds them now (run on its task).
    pub fn fill(&self, review: &str, items: &[serde_json::Value]) {
        let items = items
            .iter()
            .filter_map(parse)
            .map(|i| (i.id.clone(), i))
            .collect();
        locked(&self.reviews).insert(review.to_owned(), items);
    }

    /// A review with no items yet (just created).
    pub fn fill_empty(&self, review: &str) {
        locked(&self.reviews).insert(review.to_owned(), HashMap::new());
    }

    /// An item's new state, written by a job on the review's discussion; ignored until the
    /// review is filled (the fill will read it from the document).
    pub fn put(&self, review: &str, item: &serde_json::Value) {
        let Some(item) = parse(item) else {
            return;
        };
        if let Some(items) = locked(&self.reviews).get_mut(review) {
            items.insert(item.id.clone(), item);
        }
    }

    /// The items of a filled review.
    pub fn items(&self, review: &str) -> Option<Vec<Indexed>> {
        locked(&self.reviews)
            .get(review)
            .map(|items| items.values().cloned().collect())
    }

    /// How many of a filled review's items are done.
    pub fn counts(&self, review: &str) -> Option<ActionCounts> {
        locked(&self.reviews)
            .get(review)
            .map(|items| ActionCounts::of(items.values()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reviews::meeting::{self, ActionInput};

    #[test]
    fn the_index_follows_the_document_once_filled() {
        let doc = crate::documents::crdt::new_doc();
        let input = ActionInput {
            what: "Alert on queue depth".into(),
            why: "Backlog grew unnoticed".into(),
            kind: ActionKind::Detect,
            owner: "SRE".into(),
            link: None,
            due: Some("2026-01-31".into()),
            status: ActionStatus::Open,
        };
        let first = meeting::add_action(&doc, &input, "Ann").0.expect("added");
        let index = ActionIndex::default();
        // Not filled: a write is left for the fill to read.
        index.put("r", &first);
        assert_eq!(index.counts("r"), None);
        index.fill("r", &meeting::actions_json(&doc));
        assert_eq!(index.counts("r"), Some(ActionCounts { done: 0, total: 1 }));
        let id = first["id"].as_str().expect("an id");
        let done = meeting::set_status(&doc, id, ActionStatus::Done, "Bo")
            .0
            .expect("moved");
        index.put("r", &done);
        let second = meeting::add_action(&doc, &input, "Ann").0.expect("added");
        index.put("r", &second);
        assert_eq!(index.counts("r"), Some(ActionCounts { done: 1, total: 2 }));
        let items = index.items("r").expect("filled");
        let moved = items.iter().find(|i| i.id == id).expect("the first item");
        assert_eq!(moved.history.last().map(|c| c.by.as_str()), Some("Bo"));
        assert_eq!(moved.due.as_deref(), Some("2026-01-31"));
    }
}
