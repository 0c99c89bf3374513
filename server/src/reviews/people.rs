//! Signed-in people and the review sessions they joined, in two trees of their own
//! (`meta.people`, `meta.person_sessions`), so that a person's reviews can be found from any
//! browser they sign in with.
//!
//! What is kept of a person is what their provider said at their last join: issuer, subject,
//! name, e-mail, groups. A link names a session by the hash of its token (as `meta.sessions`
//! does), never by the token. Nothing here is about anonymous items: they are written without a
//! session (`docs/anonymity.md`), so a person's links lead to their named sessions only.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::sync::Mutex;

use crate::reviews::basics::{locked, now_ms, to_json};
use crate::reviews::identity::Person;
use crate::reviews::problem::Problem;
use crate::storage::store::{MetaTree, Store, StoreError};

/// The trees of this file, named in one place.
pub mod trees {
    /// Person key → [`super::PersonRecord`].
    pub const PEOPLE: &str = "people";
    /// Person key ‖ SHA-256 of a session token → [`super::SessionLink`].
    pub const LINKS: &str = "person_sessions";
}

/// Most sessions linked to one person: far more reviews than one person takes part in, while a
/// person who joined without end cannot make a read unbounded. Linking one more first forgets
/// the links of sessions that ended, then the oldest.
pub const MAX_LINKS_PER_PERSON: usize = 2_000;

/// A person as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersonRecord {
    /// The identity's source (OpenID issuer, or `trusted-header`).
    pub issuer: String,
    /// The provider's stable id.
    pub subject: String,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// When the record was last written, ms since the Unix epoch.
    pub updated_at: u64,
}

/// A session a person joined, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionLink {
    /// The session's review.
    pub review: String,
    /// When it was linked, ms since the Unix epoch.
    pub linked_at: u64,
}

/// The people's trees.
#[derive(Debug)]
pub struct People {
    people: MetaTree,
    links: MetaTree,
    store: Store,
    /// One link written at a time, so the bound holds.
    linking: Mutex<()>,
    /// Most links per person ([`MAX_LINKS_PER_PERSON`]; smaller in tests).
    max_links: usize,
}

impl People {
    /// Opens the trees.
    pub fn open(store: &Store) -> Result<People, StoreError> {
        Ok(People {
            people: store.meta_tree(trees::PEOPLE)?,
            links: store.meta_tree(trees::LINKS)?,
            store: store.clone(),
            linking: Mutex::new(()),
            max_links: MAX_LINKS_PER_PERSON,
        })
    }

    /// Links the session of `token` in `review` to `person`, and keeps what the provider says of
    /// them now; at [`MAX_LINKS_PER_PERSON`], first forgets links whose session is not `live`,
    /// then the oldest. Durable when this returns.
    pub async fn link(
        &self,
        person: &Person,
        token: &str,
        review: &str,
        live: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<(), Problem> {
        let key = hex::decode(person.key()).unwrap_or_default();
        let record = PersonRecord {
            issuer: person.issuer.clone(),
            subject: person.subject.clone(),
            name: person.name.clone(),
            email: person.email.clone(),
            groups: person.groups.clone(),
            updated_at: now_ms(),
        };
        self.people.put(&key, &to_json(&record))?;
        let mut link_key = key;
        link_key.extend_from_slice(&session_hash(token));
        let link = SessionLink {
            review: review.to_owned(),
            linked_at: now_ms(),
        };
        {
            let _one_at_a_time = locked(&self.linking);
            let key = &link_key[..link_key.len() - 32];
            let mut linked = self.links_of(key)?;
            if linked.len() >= self.max_links {
                linked.retain(|(_, hash)| {
                    let keep = live(hash);
                    if !keep {
                        let mut k = key.to_vec();
                        k.extend_from_slice(hash);
                        let _ = self.links.remove(&k);
                    }
                    keep
                });
                // Oldest last: forget from the end until there is room for one more.
                while linked.len() >= self.max_links {
                    let Some((_, hash)) = linked.pop() else {
                        break;
                    };
                    let mut k = key.to_vec();
                    k.extend_from_slice(&hash);
                    self.links.remove(&k)?;
                }
            }
            self.links.put(&link_key, &to_json(&link))?;
        }
        self.store.durable().await?;
        Ok(())
    }

    /// The links under a person's key: (when linked, session hash), newest first.
    fn links_of(&self, key: &[u8]) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let mut found: Vec<(u64, [u8; 32])> = Vec::new();
        for (k, v) in self.links.entries_with_prefix(key, self.max_links + 1)? {
            let Some(hash) = k
                .get(key.len()..)
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
            else {
                continue;
            };
            let at = serde_json::from_slice::<SessionLink>(&v).map_or(0, |l| l.linked_at);
            found.push((at, hash));
        }
        found.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        Ok(found)
    }

    /// The hashes of the session tokens linked to `person`, newest link first (at most
    /// [`MAX_LINKS_PER_PERSON`]).
    pub fn sessions_of(&self, person: &Person) -> Result<Vec<[u8; 32]>, StoreError> {
        let key = hex::decode(person.key()).unwrap_or_default();
        Ok(self.links_of(&key)?.into_iter().map(|(_, h)| h).collect())
    }
}

/// SHA-256 of a session token: how `meta.sessions` and the links name a session.
pub fn session_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the bound, linking one more forgets the links of ended sessions first, then the
    /// oldest; reading gives the newest first.
    #[tokio::test]
    async fn links_stay_bounded_forgetting_ended_sessions_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = Store::open(dir.path()).expect("open");
        let flusher = tokio::task::spawn_blocking(move || flusher.run());
        let people = People {
            max_links: 3,
            ..People::open(&store).expect("trees")
        };
        let person = Person {
            issuer: "trusted-header".into(),
            subject: "ana".into(),
            name: "Ana".into(),
            email: None,
            groups: Vec::new(),
        };
        let everything_live = |_: &[u8; 32]| true;
        for token in ["t1", "t2", "t3"] {
            people
                .link(&person, token, "r", everything_live)
                .await
                .expect("link");
            // Links are ordered by the millisecond they were made.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let hashes = |tokens: &[&str]| tokens.iter().map(|t| session_hash(t)).collect::<Vec<_>>();
        assert_eq!(
            people.sessions_of(&person).expect("read"),
            hashes(&["t3", "t2", "t1"])
        );
        // t2's session ended: it goes, though t1 is older.
        let ended = session_hash("t2");
        people
            .link(&person, "t4", "r", |h| *h != ended)
            .await
            .expect("link");
        assert_eq!(
            people.sessions_of(&person).expect("read"),
            hashes(&["t4", "t3", "t1"])
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        // All live: the oldest goes.
        people
            .link(&person, "t5", "r", everything_live)
            .await
            .expect("link");
        assert_eq!(
            people.sessions_of(&person).expect("read"),
            hashes(&["t5", "t4", "t3"])
        );
        drop(people);
        drop(store);
        flusher.await.expect("flusher");
    }
}
