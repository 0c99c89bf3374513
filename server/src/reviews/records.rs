//! What a review keeps beyond its live documents: versions pinned at each phase change, the
//! read marks behind the read count, and the server's library of published reviews. Each lives
//! in its own sled tree; nothing here names a person. The read count is shown in the discussion
//! document at release boundaries ([`Records::publish_read_counts`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use debrief_proto::schema::{document_name, DocKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::basics::locked;
use super::meeting;
use super::policy::Phase;
use super::problem::{Problem, ProblemKind};
use crate::documents::registry::Registry;
use crate::storage::store::{MetaTree, Store, StoreError};

/// One pinned version: every document's full state when the review entered `phase`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    /// The phase entered.
    pub phase: Phase,
    /// When, ms since the epoch.
    pub at: u64,
    /// Full v1 state of `report`.
    pub report: Vec<u8>,
    /// Full v1 state of `notes`.
    pub notes: Vec<u8>,
}

impl Version {
    /// How people call it.
    pub fn label(phase: Phase) -> &'static str {
        match phase {
            Phase::Draft => "as drafted",
            Phase::Review => "as sent for review",
            Phase::Meeting => "as at the meeting",
            Phase::Closed => "as closed",
        }
    }
}

/// A review in the library.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// Review id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Incident day.
    pub incident_date: Option<String>,
    /// Severity.
    pub severity: Option<String>,
    /// When it was published, ms since the epoch.
    pub published_at: u64,
    /// The export, as published (nothing hidden by moderation).
    pub markdown: String,
    /// Which [`EXPORT_FORMAT`] wrote `markdown`; entries stored before there was one are 0.
    #[serde(default)]
    pub format: u32,
    /// Whether people's names were kept or replaced by roles (entries stored before there was
    /// a choice kept them); writing the entry again keeps the choice.
    #[serde(default)]
    pub names: Names,
    /// The review's contributing factors (kept up to date when they are tagged after
    /// publishing); none for entries stored before there were any.
    #[serde(default)]
    pub factors: Vec<String>,
    /// How many of its action items are of each kind, when it was published.
    #[serde(default)]
    pub action_kinds: ActionKinds,
}

/// How many action items of each kind a review has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionKinds {
    /// Stop it from happening again.
    pub prevent: u32,
    /// Find it sooner.
    pub detect: u32,
    /// Make it hurt less.
    pub mitigate: u32,
    /// Change how people work together.
    pub process: u32,
}

impl ActionKinds {
    /// Counts the action items of a discussion's `actions` map (id → item with a `kind`).
    pub fn count(actions: Option<&serde_json::Value>) -> ActionKinds {
        let mut kinds = ActionKinds::default();
        let Some(items) = actions.and_then(serde_json::Value::as_object) else {
            return kinds;
        };
        for item in items.values() {
            let slot = match item.get("kind").and_then(serde_json::Value::as_str) {
                Some("prevent") => &mut kinds.prevent,
                Some("detect") => &mut kinds.detect,
                Some("mitigate") => &mut kinds.mitigate,
                Some("process") => &mut kinds.process,
                _ => continue,
            };
            *slot += 1;
        }
        kinds
    }
}

/// How often each contributing factor was tagged on published reviews, per month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorCounts {
    /// Every month from the first to the last that has a published review, `YYYY-MM`.
    pub months: Vec<String>,
    /// Each factor with its count in each of `months`, most frequent first (then by name).
    pub factors: Vec<(String, Vec<u32>)>,
    /// Published reviews counted.
    pub reviews: u32,
}

/// The months from `first` to `last` (`YYYY-MM`), both included; empty when either does not
/// read as a month or `last` is before `first`.
fn months_between(first: &str, last: &str) -> Vec<String> {
    let parse = |m: &str| -> Option<(i64, i64)> {
        let (y, mo) = m.split_once('-')?;
        Some((y.parse().ok()?, mo.parse().ok()?))
    };
    let (Some((mut y, mut m)), Some(end)) = (parse(first), parse(last)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while (y, m) <= end && out.len() < 1_200 {
        out.push(format!("{y:04}-{m:02}"));
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
    }
    out
}

impl FactorCounts {
    /// Counts the factors of `entries` by month (their incident's month, or the month they were
    /// published).
    pub fn of(entries: &[Published]) -> FactorCounts {
        let mut per: HashMap<String, HashMap<String, u32>> = HashMap::new();
        let mut seen: Vec<String> = Vec::new();
        for entry in entries {
            let month =
                super::basics::review_month(entry.incident_date.as_deref(), entry.published_at);
            seen.push(month.clone());
            for factor in &entry.factors {
                *per.entry(factor.clone())
                    .or_default()
                    .entry(month.clone())
                    .or_default() += 1;
            }
        }
        seen.sort();
        let months = match (seen.first(), seen.last()) {
            (Some(first), Some(last)) => months_between(first, last),
            _ => Vec::new(),
        };
        let mut factors: Vec<(String, Vec<u32>)> = per
            .into_iter()
            .map(|(factor, counts)| {
                let row = months
                    .iter()
                    .map(|m| counts.get(m).copied().unwrap_or(0))
                    .collect();
                (factor, row)
            })
            .collect();
        factors.sort_by(|a, b| {
            let total = |r: &[u32]| r.iter().sum::<u32>();
            total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0))
        });
        FactorCounts {
            months,
            factors,
            reviews: entries.len() as u32,
        }
    }
}

/// What a publication does with people's names (issue 17).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Names {
    /// Comment authors and text as people wrote them.
    #[default]
    Kept,
    /// Everyone who joined the review appears as their role ("Participant 2"), as comment
    /// author and wherever their name is written (`reviews::renaming`).
    Roles,
}

/// The version of the Markdown export that library entries are written with. Raise it when the
/// export changes in a way stored entries must follow; an older entry is written again from its
/// documents before it is served. 1: what people wrote is escaped and only web and mail links are
/// kept (issue 16); entries published before it carried their text as live HTML. 2: written by
/// pulldown-cmark-to-cmark so that the export reads back as the document (issue 22); format 1
/// lost an ordered list's first number and broke code spans holding backticks.
pub const EXPORT_FORMAT: u32 = 2;

impl Published {
    /// Whether `markdown` was written by an older export and must be written again.
    pub fn is_stale(&self) -> bool {
        self.format < EXPORT_FORMAT
    }
}

/// The trees.
#[derive(Debug)]
pub struct Records {
    versions: MetaTree,
    reads: MetaTree,
    library: MetaTree,
    store: Store,
    /// The read count everyone sees, per review: it changes only at release boundaries, with
    /// every mark made since the last one, so a change does not say who just read.
    shown: Mutex<HashMap<String, u64>>,
    /// Reviews with marks not yet counted in what is shown.
    unshown: Mutex<HashSet<String>>,
    /// Every published review's id and names choice, newest first: read from the library once,
    /// forgotten when something is published or taken out (see [`Records::published_names`]).
    heads: Mutex<Option<Vec<(String, Names)>>>,
}

/// The read mark of the session with token `session`: a hash, so the store does not hold the
/// token, the same for marking and for asking whether it is there.
fn read_mark(session: &str) -> String {
    hex::encode(Sha256::digest(format!("read\0{session}").as_bytes()))
}

fn key(review: &str, rest: &str) -> Vec<u8> {
    let mut k = review.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(rest.as_bytes());
    k
}

impl Records {
    /// Opens the trees.
    pub fn open(store: &Store) -> Result<Arc<Records>, StoreError> {
        let reads = store.meta_tree("reads")?;
        // A stop (or a crash) may have come between a mark and the boundary that shows it: every
        // review with marks is shown again at the first boundary (nothing changes where the
        // discussion already shows its count).
        let unshown: HashSet<String> = reads
            .keys()?
            .into_iter()
            .filter_map(|k| {
                let end = k.iter().position(|b| *b == 0)?;
                String::from_utf8(k[..end].to_vec()).ok()
            })
            .collect();
        Ok(Arc::new(Records {
            versions: store.meta_tree("versions")?,
            reads,
            library: store.meta_tree("library")?,
            store: store.clone(),
            shown: Mutex::new(HashMap::new()),
            unshown: Mutex::new(unshown),
            heads: Mutex::new(None),
        }))
    }

    /// Pins a version; durable when this returns.
    pub async fn pin(&self, review: &str, version: &Version) -> Result<(), Problem> {
        let bytes = serde_json::to_vec(version).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.versions
            .put(&key(review, version.phase.as_str()), &bytes)?;
        self.store.durable().await?;
        Ok(())
    }

    /// Every pinned version of a review, in phase order.
    pub fn versions(&self, review: &str) -> Result<Vec<Version>, Problem> {
        let mut out = Vec::new();
        for phase in Phase::ALL {
            if let Some(raw) = self.versions.get(&key(review, phase.as_str()))? {
                let v: Version = serde_json::from_slice(&raw)
                    .map_err(|e| StoreError::Corrupt(format!("version: {e}")))?;
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The read count everyone sees (see [`Records::publish_read_counts`]).
    pub fn published_read_count(&self, review: &str) -> u64 {
        if let Some(n) = locked(&self.shown).get(review) {
            return *n;
        }
        // First asked since the start: every mark stored so far is shown.
        let n = self.read_count(review).unwrap_or(0);
        *locked(&self.shown).entry(review.to_owned()).or_insert(n)
    }

    /// Marks the report read by the session with token `session`, once; it is counted in what
    /// everyone sees at the next release boundary. Returns the count shown now. Durable when
    /// this returns.
    pub async fn mark_read(&self, review: &str, session: &str) -> Result<u64, Problem> {
        // What is shown is settled before the mark exists, so it cannot include it.
        let shown = self.published_read_count(review);
        if self.reads.put_new(&key(review, &read_mark(session)), &[])? {
            locked(&self.unshown).insert(review.to_owned());
        }
        self.store.durable().await?;
        Ok(shown)
    }

    /// Whether the session with token `session` marked `review`'s report read (its own mark,
    /// for its own home page; nobody learns from it whether someone else read).
    pub fn has_read(&self, review: &str, session: &str) -> Result<bool, Problem> {
        Ok(self.reads.get(&key(review, &read_mark(session)))?.is_some())
    }

    /// The reviews whose count changed since it was last shown, with their new counts; the
    /// caller shows them and then calls [`Records::shown`].
    pub fn unshown_counts(&self) -> Vec<(String, u64)> {
        let reviews: Vec<String> = locked(&self.unshown).drain().collect();
        reviews
            .into_iter()
            .filter_map(|r| self.read_count(&r).ok().map(|n| (r, n)))
            .collect()
    }

    /// Shows, in each review's discussion, the read counts that changed since the last call (at a
    /// release boundary, so that a change says nothing about who just read: several people's
    /// marks arrive together). A count that could not be shown waits for the next boundary.
    pub async fn publish_read_counts(&self, registry: &Arc<Registry>) {
        for (review, count) in self.unshown_counts() {
            let shown = registry
                .open(&document_name(&review, DocKind::Discussion))
                .run(move |doc| match meeting::read_count(doc, count) {
                    (Ok(()), update) => (true, update),
                    (Err(_), _) => (false, None),
                })
                .await
                .unwrap_or(false);
            self.shown(&review, count, shown);
        }
    }

    /// Records that `count` is now shown for `review`; `false` puts it back for the next boundary.
    pub fn shown(&self, review: &str, count: u64, ok: bool) {
        if ok {
            locked(&self.shown).insert(review.to_owned(), count);
        } else {
            locked(&self.unshown).insert(review.to_owned());
        }
    }

    /// How many sessions of a review marked the report read.
    pub fn read_count(&self, review: &str) -> Result<u64, Problem> {
        Ok(self.reads.count_prefix(&key(review, ""))? as u64)
    }

    /// Publishes (or re-publishes) a review; durable when this returns.
    pub async fn publish(&self, entry: &Published) -> Result<(), Problem> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.library.put(entry.id.as_bytes(), &bytes)?;
        *locked(&self.heads) = None;
        self.store.durable().await?;
        Ok(())
    }

    /// Takes a review out of the library; durable when this returns.
    pub async fn unpublish(&self, review: &str) -> Result<(), Problem> {
        self.library.remove(review.as_bytes())?;
        *locked(&self.heads) = None;
        self.store.durable().await?;
        Ok(())
    }

    /// A published review.
    pub fn published(&self, review: &str) -> Result<Published, Problem> {
        let raw = self.library.get(review.as_bytes())?.ok_or_else(|| {
            Problem::new(
                ProblemKind::NotFound,
                "not_published",
                "no published review has this id",
            )
        })?;
        Ok(serde_json::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("library: {e}")))?)
    }

    /// Every published review's id and what was done with names, newest first (read from the
    /// library once, then kept until the library changes).
    pub fn published_names(&self) -> Result<Vec<(String, Names)>, Problem> {
        // Held while reading: a publication that lands meanwhile forgets the result after it.
        let mut kept = locked(&self.heads);
        if let Some(heads) = kept.as_ref() {
            return Ok(heads.clone());
        }
        let heads = self.read_published_names()?;
        *kept = Some(heads.clone());
        Ok(heads)
    }

    fn read_published_names(&self) -> Result<Vec<(String, Names)>, Problem> {
        /// What is read of an entry (its text is skipped).
        #[derive(Deserialize)]
        struct Head {
            id: String,
            published_at: u64,
            #[serde(default)]
            names: Names,
        }
        let mut out = Vec::new();
        for (_, raw) in self.library.entries()? {
            let head: Head = serde_json::from_slice(&raw)
                .map_err(|e| StoreError::Corrupt(format!("library: {e}")))?;
            out.push(head);
        }
        out.sort_by_key(|h| std::cmp::Reverse(h.published_at));
        Ok(out.into_iter().map(|h| (h.id, h.names)).collect())
    }

    /// Every published review.
    pub fn all_published(&self) -> Result<Vec<Published>, Problem> {
        let mut out = Vec::new();
        for (_, raw) in self.library.entries()? {
            out.push(
                serde_json::from_slice(&raw)
                    .map_err(|e| StoreError::Corrupt(format!("library: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Published reviews whose title or text contains every word of `query`, newest first.
    pub fn search(&self, query: &str) -> Result<Vec<Published>, Problem> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut out = Vec::new();
        for (_, raw) in self.library.entries()? {
            let entry: Published = serde_json::from_slice(&raw)
                .map_err(|e| StoreError::Corrupt(format!("library: {e}")))?;
            let hay = format!("{}\n{}", entry.title, entry.markdown).to_lowercase();
            if words.iter().all(|w| hay.contains(w.as_str())) {
                out.push(entry);
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.published_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_are_counted_per_month_with_empty_months_between() {
        let entry = |date: Option<&str>, at: u64, factors: &[&str]| Published {
            id: "r".into(),
            title: "t".into(),
            incident_date: date.map(String::from),
            severity: None,
            published_at: at,
            markdown: String::new(),
            format: EXPORT_FORMAT,
            names: Names::Kept,
            factors: factors.iter().map(|f| f.to_string()).collect(),
            action_kinds: ActionKinds::default(),
        };
        let counts = FactorCounts::of(&[
            entry(Some("2026-09-03"), 0, &["capacity", "alerting gap"]),
            // No incident day: the month it was published (2026-11-15).
            entry(None, 1_794_700_800_000, &["alerting gap"]),
            entry(Some("2026-11-20"), 0, &["alerting gap", "runbook gap"]),
            entry(Some("2026-10-01"), 0, &[]),
        ]);
        assert_eq!(counts.months, ["2026-09", "2026-10", "2026-11"]);
        assert_eq!(
            counts.factors,
            vec![
                ("alerting gap".to_owned(), vec![1, 0, 2]),
                ("capacity".to_owned(), vec![1, 0, 0]),
                ("runbook gap".to_owned(), vec![0, 0, 1]),
            ]
        );
        assert_eq!(counts.reviews, 4);
        assert_eq!(months_between("2025-11", "2026-02").len(), 4);
    }

    #[test]
    fn action_kinds_are_counted() {
        let actions = serde_json::json!({
            "a": {"kind": "prevent"}, "b": {"kind": "detect"}, "c": {"kind": "prevent"},
            "d": {"kind": "process"}, "e": {"what": "no kind"}
        });
        assert_eq!(
            ActionKinds::count(Some(&actions)),
            ActionKinds {
                prevent: 2,
                detect: 1,
                mitigate: 0,
                process: 1
            }
        );
        assert_eq!(ActionKinds::count(None), ActionKinds::default());
    }

    #[test]
    fn entries_stored_before_the_export_format_are_stale() {
        let old = r#"{"id":"r","title":"t","incident_date":null,"severity":null,"published_at":1,"markdown":"<script>"}"#;
        let entry: Published = serde_json::from_str(old).expect("an old entry still reads");
        assert_eq!(entry.format, 0);
        assert!(entry.is_stale());
        // Issue 22: entries of the first escaping export are written again too.
        let first = Published {
            format: 1,
            ..entry.clone()
        };
        assert!(first.is_stale());
        let current = Published {
            format: EXPORT_FORMAT,
            ..entry
        };
        assert!(!current.is_stale());
    }
}
