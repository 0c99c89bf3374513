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

use crate::reviews::basics::{now_ms, to_json};
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

/// Most sessions linked to one person that are read back: far more reviews than one person
/// takes part in, while a person who joined without end cannot make a read unbounded.
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
}

impl People {
    /// Opens the trees.
    pub fn open(store: &Store) -> Result<People, StoreError> {
        Ok(People {
            people: store.meta_tree(trees::PEOPLE)?,
            links: store.meta_tree(trees::LINKS)?,
            store: store.clone(),
        })
    }

    /// Links the session of `token` in `review` to `person`, and keeps what the provider says of
    /// them now. Durable when this returns.
    pub async fn link(&self, person: &Person, token: &str, review: &str) -> Result<(), Problem> {
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
        self.links.put(&link_key, &to_json(&link))?;
        self.store.durable().await?;
        Ok(())
    }

    /// The hashes of the session tokens linked to `person`, newest link first (at most
    /// [`MAX_LINKS_PER_PERSON`]).
    pub fn sessions_of(&self, person: &Person) -> Result<Vec<[u8; 32]>, StoreError> {
        let key = hex::decode(person.key()).unwrap_or_default();
        let mut found: Vec<(u64, [u8; 32])> = Vec::new();
        for (k, v) in self.links.entries_with_prefix(&key, MAX_LINKS_PER_PERSON)? {
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
        Ok(found.into_iter().map(|(_, h)| h).collect())
    }
}

/// SHA-256 of a session token: how `meta.sessions` and the links name a session.
pub fn session_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
