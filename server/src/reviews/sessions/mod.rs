//! Reviews and sessions: every review, its phase and invite links, and the sessions people
//! opened with them, kept in memory and in their own sled trees; and the [`ReviewAuthorizer`]
//! that decides every socket's access to a review's documents from the phase table
//! ([`policy`]). Beside it: the limits on guessing and flooding the endpoints that need no
//! session ([`guards`], [`throttle`]) and how display names are normalised ([`names`]).
//!
//! This module never touches documents or HTTP: the API seeds and writes documents through the
//! registry, and maps [`Problem`]s to HTTP statuses.
//!
//! Secrets: invite and session tokens are 256 random bits; only their SHA-256 hashes are stored
//! (in memory and on disk), so a copy of the database opens nothing. Tokens never reach logs.

pub mod guards;
pub mod names;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use debrief_proto::schema::{self, DocKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::documents::access::{Access, Authorizer, Denied};
use crate::reviews::basics::{locked, now_ms, random_hex, to_json};
use crate::reviews::fields::validate_name;
use crate::reviews::identity::sign_in_required;
use crate::reviews::policy::{self, Phase, ReleaseMode, Role};
use crate::reviews::problem::{Problem, ProblemKind};
use crate::reviews::sessions::guards::Guards;
use crate::storage::store::{MetaTree, Store, StoreError};

/// A review as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// Unguessable id (128 random bits, hex).
    pub id: String,
    /// Title.
    pub title: String,
    /// Day of the incident, `YYYY-MM-DD`.
    pub incident_date: Option<String>,
    /// Severity label.
    pub severity: Option<String>,
    /// Current phase.
    pub phase: Phase,
    /// Creation time, ms since the Unix epoch.
    pub created_at: u64,
    /// When held anonymous items are released.
    #[serde(default)]
    pub release: ReleaseMode,
    /// The facilitator allowed anonymous items in a small group: with fewer than three people who
    /// may post them, and in a batch that only one person contributed to.
    #[serde(default)]
    pub small_group_anonymity: bool,
    /// The team the review belongs to, for the culture pulse's trend across a team's reviews.
    #[serde(default)]
    pub team: Option<String>,
    /// Contributing factors tagged by the facilitator and authors (normalised, at most
    /// [`crate::reviews::fields::MAX_FACTORS`]).
    #[serde(default)]
    pub factors: Vec<String>,
    /// When the review closed, ms since the Unix epoch: who joined after it did not take part
    /// and is not asked the pulse. Absent for reviews closed before it was kept.
    #[serde(default)]
    pub closed_at: Option<u64>,
    /// When the review last moved its phase, ms since the Unix epoch (for "last changed" on the
    /// home page). Absent until its first move, and for reviews moved before it was kept.
    #[serde(default)]
    pub phase_changed_at: Option<u64>,
    /// Hex SHA-256 of each role's current invite token.
    pub(super) invites: HashMap<Role, String>,
    /// The roles whose current invite link needs the person joining to be signed in (their name
    /// is then the one their sign-in gives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sign_in_invites: Vec<Role>,
}

impl ReviewRecord {
    /// Whether joining through `role`'s invite link needs a signed-in person.
    pub fn invite_needs_sign_in(&self, role: Role) -> bool {
        self.sign_in_invites.contains(&role)
    }
}

/// A person's session in a review, as stored (keyed by the hash of its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The review.
    pub review: String,
    /// Their role.
    pub role: Role,
    /// Random id standing for the person in comment authorship (128 bits, hex).
    pub participant: String,
    /// Display name they chose.
    pub name: String,
    /// When they joined, ms since the Unix epoch.
    pub created_at: u64,
}

/// What creating a review needs.
#[derive(Debug, Clone)]
pub struct NewReview {
    /// Title (validated).
    pub title: String,
    /// Incident day (validated).
    pub incident_date: Option<String>,
    /// Severity (validated).
    pub severity: Option<String>,
    /// When anonymous items are released.
    pub release: ReleaseMode,
    /// See [`ReviewRecord::small_group_anonymity`].
    pub small_group_anonymity: bool,
    /// The team (validated).
    pub team: Option<String>,
    /// The roles whose invite links need a signed-in person (the caller checked that sign-in is
    /// configured).
    pub sign_in_invites: Vec<Role>,
}

/// A review just created, with the only copies of its invite tokens.
pub struct Created {
    /// The stored review.
    pub review: ReviewRecord,
    /// Each role's invite token, in [`Role::ALL`] order.
    pub invites: Vec<(Role, String)>,
}

impl std::fmt::Debug for Created {
    // Invite tokens are secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("review", &self.review.id)
            .finish_non_exhaustive()
    }
}

type Hash = [u8; 32];

#[derive(Debug, Default)]
struct State {
    reviews: HashMap<String, ReviewRecord>,
    invites: HashMap<Hash, (String, Role)>,
    sessions: HashMap<Hash, SessionRecord>,
    /// Sessions per review and role, kept with `sessions`.
    counts: HashMap<String, HashMap<Role, usize>>,
}

impl State {
    /// The review and the role `invite` joins.
    fn invite(&self, invite: &str) -> Result<(ReviewRecord, Role), Problem> {
        let Some((review_id, role)) = self.invites.get(&hash(invite)) else {
            return Err(invalid_invite());
        };
        let review = self
            .reviews
            .get(review_id)
            .cloned()
            .ok_or_else(|| unknown_review(review_id))?;
        Ok((review, *role))
    }

    fn add_session(&mut self, key: Hash, session: SessionRecord) {
        *self
            .counts
            .entry(session.review.clone())
            .or_default()
            .entry(session.role)
            .or_default() += 1;
        self.sessions.insert(key, session);
    }

    fn remove_session(&mut self, key: &Hash) {
        if let Some(s) = self.sessions.remove(key) {
            if let Some(n) = self
                .counts
                .get_mut(&s.review)
                .and_then(|c| c.get_mut(&s.role))
            {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// Most sessions one review holds: a large organisation's whole incident channel, while a
/// leaked link cannot grow memory without bound.
pub const MAX_SESSIONS_PER_REVIEW: usize = 1_000;
/// Of [`MAX_SESSIONS_PER_REVIEW`], the places only facilitators and authors may take, so that a
/// flood through the participant or observer link cannot lock the review's writers out.
pub const RESERVED_FOR_WRITERS: usize = 50;
/// Every review, in memory, written through to the store.
#[derive(Debug)]
pub struct Reviews {
    state: Mutex<State>,
    reviews_tree: MetaTree,
    sessions_tree: MetaTree,
    store: Store,
    /// One lock per review, held while its phase moves with everything that follows from it;
    /// moves of different reviews do not wait on each other. An entry lives as long as its
    /// review, which is in memory anyway.
    phase_moves: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Limits on guessing and flooding.
    pub guards: Guards,
}

impl Reviews {
    /// Loads every review and session from the store.
    pub fn open(store: &Store) -> Result<Arc<Reviews>, StoreError> {
        Reviews::open_with(store, Guards::default())
    }

    /// [`Reviews::open`] with other limits on guessing and flooding.
    pub fn open_with(store: &Store, guards: Guards) -> Result<Arc<Reviews>, StoreError> {
        let reviews_tree = store.meta_tree("reviews")?;
        let sessions_tree = store.meta_tree("sessions")?;
        let mut state = State::default();
        for (key, value) in reviews_tree.entries()? {
            let review: ReviewRecord = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("review {key:?}: {e}")))?;
            for (role, hash) in &review.invites {
                if let Some(hash) = parse_hash(hash) {
                    state.invites.insert(hash, (review.id.clone(), *role));
                }
            }
            state.reviews.insert(review.id.clone(), review);
        }
        for (key, value) in sessions_tree.entries()? {
            let session: SessionRecord = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
            let hash: Hash = key
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("session key".to_owned()))?;
            state.add_session(hash, session);
        }
        Ok(Arc::new(Reviews {
            state: Mutex::new(state),
            reviews_tree,
            sessions_tree,
            store: store.clone(),
            phase_moves: Mutex::new(HashMap::new()),
            guards,
        }))
    }

    /// A fresh review id, for seeding its documents before [`Reviews::insert`].
    pub fn new_id() -> String {
        random_hex(16)
    }

    /// Stores a new review under `id` (its documents already seeded) and returns its invite
    /// tokens; durable when this returns.
    pub async fn insert(&self, id: String, new: NewReview) -> Result<Created, Problem> {
        let tokens: Vec<(Role, String)> = Role::ALL
            .into_iter()
            .map(|r| (r, format!("dbi_{}", random_hex(32))))
            .collect();
        let review = ReviewRecord {
            id: id.clone(),
            title: new.title,
            incident_date: new.incident_date,
            severity: new.severity,
            phase: Phase::Draft,
            created_at: now_ms(),
            release: new.release,
            small_group_anonymity: new.small_group_anonymity,
            team: new.team,
            factors: Vec::new(),
            closed_at: None,
            phase_changed_at: None,
            sign_in_invites: new.sign_in_invites,
            invites: tokens
                .iter()
                .map(|(r, t)| (*r, hex::encode(hash(t))))
                .collect(),
        };
        {
            let mut state = self.lock();
            self.put_review(&review)?;
            for (role, token) in &tokens {
                state.invites.insert(hash(token), (id.clone(), *role));
            }
            state.reviews.insert(id, review.clone());
        }
        self.store.durable().await?;
        Ok(Created {
            review,
            invites: tokens,
        })
    }

    /// The review and the role an invite token joins, without joining (the join page names them).
    pub fn invite(&self, invite: &str) -> Result<(ReviewRecord, Role), Problem> {
        self.lock().invite(invite)
    }

    /// Joins the review an invite token belongs to as `name`, or, through a link that needs
    /// sign-in, as the signed-in person's name (`signed_in`; the typed name is then ignored);
    /// returns the session and its token (the only copy). Durable when this returns.
    pub async fn join(
        &self,
        invite: &str,
        name: &str,
        signed_in: Option<&str>,
    ) -> Result<(SessionRecord, ReviewRecord, String), Problem> {
        let needs_sign_in = |state: &State| {
            state
                .invite(invite)
                .is_ok_and(|(review, role)| review.invite_needs_sign_in(role))
        };
        let name = if needs_sign_in(&self.lock()) {
            validate_name(signed_in.ok_or_else(sign_in_to_join)?)?
        } else {
            validate_name(name)?
        };
        let token = format!("dbs_{}", random_hex(32));
        let (session, review) = {
            let mut state = self.lock();
            let (review, role) = state.invite(invite)?;
            if review.invite_needs_sign_in(role) && signed_in.is_none() {
                // The link was replaced by one that needs sign-in meanwhile.
                return Err(sign_in_to_join());
            }
            let review_id = review.id.clone();
            self.guards.may_join_through(&hash(invite))?;
            let session = SessionRecord {
                review: review_id,
                role,
                participant: random_hex(16),
                name,
                created_at: now_ms(),
            };
            let counts = state.counts.get(&session.review);
            let members: usize = counts.map_or(0, |c| c.values().sum());
            let readers: usize = [Role::Participant, Role::Observer]
                .iter()
                .map(|r| counts.and_then(|c| c.get(r)).copied().unwrap_or(0))
                .sum();
            let writer = matches!(role, Role::Facilitator | Role::Author);
            if members >= MAX_SESSIONS_PER_REVIEW {
                return Err(Problem::new(
                    ProblemKind::Conflict,
                    "review_full",
                    format!("a review holds at most {MAX_SESSIONS_PER_REVIEW} people"),
                ));
            }
            if !writer && readers >= MAX_SESSIONS_PER_REVIEW - RESERVED_FOR_WRITERS {
                return Err(Problem::new(
                    ProblemKind::Conflict,
                    "review_full",
                    format!(
                        "a review holds at most {} participants and observers; the other {RESERVED_FOR_WRITERS} places are kept for its facilitators and authors",
                        MAX_SESSIONS_PER_REVIEW - RESERVED_FOR_WRITERS
                    ),
                ));
            }
            let key = hash(&token);
            self.sessions_tree.put(&key, &to_json(&session))?;
            state.add_session(key, session.clone());
            (session, review)
        };
        self.store.durable().await?;
        Ok((session, review, token))
    }

    /// The session of `token` and its review, for a request on review `review_id`.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        review_id: &str,
    ) -> Result<(SessionRecord, ReviewRecord), Problem> {
        let Some(token) = token else {
            return Err(Problem::new(
                ProblemKind::Unauthenticated,
                "missing_token",
                "send the session token as `Authorization: Bearer <token>`",
            ));
        };
        let state = self.lock();
        let session = state
            .sessions
            .get(&hash(token))
            .cloned()
            .ok_or_else(invalid_session)?;
        if session.review != review_id {
            if !state.reviews.contains_key(review_id) {
                return Err(unknown_review(review_id));
            }
            return Err(Problem::new(
                ProblemKind::Forbidden,
                "other_review",
                "this session belongs to another review",
            ));
        }
        let review = state
            .reviews
            .get(review_id)
            .cloned()
            .ok_or_else(|| unknown_review(review_id))?;
        Ok((session, review))
    }

    /// The session whose token hashes to `hash` and its review (a signed-in person's linked
    /// sessions are known by their hashes); `None` when it ended.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<(SessionRecord, ReviewRecord)> {
        let state = self.lock();
        let session = state.sessions.get(hash)?.clone();
        let review = state.reviews.get(&session.review)?.clone();
        Some((session, review))
    }

    /// The session of `token` and its review, whichever review it is (the action items page asks
    /// with every session a browser holds); `None` for a token that is no session.
    pub fn by_token(&self, token: &str) -> Option<(SessionRecord, ReviewRecord)> {
        let state = self.lock();
        let session = state.sessions.get(&hash(token))?.clone();
        let review = state.reviews.get(&session.review)?.clone();
        Some((session, review))
    }

    /// Serialises the phase moves of one review (see the API's phase handler); other reviews'
    /// moves go on meanwhile, even while this one waits for its documents to flush.
    pub async fn phase_lock(&self, review: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = locked(&self.phase_moves)
            .entry(review.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// A review's record, if it exists.
    pub fn record(&self, review: &str) -> Option<ReviewRecord> {
        self.lock().reviews.get(review).cloned()
    }

    /// The phase of a review, if it exists.
    pub fn phase(&self, review: &str) -> Option<Phase> {
        self.lock().reviews.get(review).map(|r| r.phase)
    }

    /// Whether held anonymous items of `review` may be released now: always in batch mode, from
    /// the meeting on in meeting mode. Unknown reviews release nothing.
    pub fn may_release(&self, review: &str) -> bool {
        self.lock()
            .reviews
            .get(review)
            .is_some_and(|r| match r.release {
                ReleaseMode::Batch => true,
                ReleaseMode::Meeting => r.phase >= Phase::Meeting,
            })
    }

    /// Every session of a review: who joined it, with which role and name.
    pub fn sessions(&self, review_id: &str) -> Vec<SessionRecord> {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.review == review_id)
            .cloned()
            .collect()
    }

    /// Number of sessions of each role in a review.
    pub fn counts(&self, review_id: &str) -> HashMap<Role, usize> {
        let state = self.lock();
        let counts = state.counts.get(review_id);
        Role::ALL
            .into_iter()
            .map(|r| (r, counts.and_then(|c| c.get(&r)).copied().unwrap_or(0)))
            .collect()
    }

    /// Moves a review to `to`, which must be its next phase (or the phase it is in: a retry,
    /// answered with `false`); the caller must be its facilitator.
    /// Durable when this returns. New connections get the new access at once; the caller tells
    /// open documents (the API's phase handler).
    pub async fn set_phase(
        &self,
        session: &SessionRecord,
        to: Phase,
    ) -> Result<(ReviewRecord, bool), Problem> {
        policy::may_facilitate(session.role)?;
        let review = {
            let mut state = self.lock();
            let review = state
                .reviews
                .get_mut(&session.review)
                .ok_or_else(|| unknown_review(&session.review))?;
            if review.phase == to {
                // Moving again to where it is (a retry) changes nothing, and lets the caller
                // repeat what follows from the move.
                return Ok((review.clone(), false));
            }
            if review.phase.next() != Some(to) {
                let allowed = match review.phase.next() {
                    Some(next) => format!("it can only move to {}", next.as_str()),
                    None => "it is final".to_owned(),
                };
                return Err(Problem::new(
                    ProblemKind::Conflict,
                    "illegal_transition",
                    format!(
                        "a review in {} cannot move to {}: {allowed}",
                        review.phase.as_str(),
                        to.as_str()
                    ),
                ));
            }
            let mut updated = review.clone();
            let now = now_ms();
            updated.phase = to;
            updated.phase_changed_at = Some(now);
            if to == Phase::Closed {
                updated.closed_at = Some(now);
            }
            self.put_review(&updated)?;
            *review = updated.clone();
            updated
        };
        self.store.durable().await?;
        Ok((review, true))
    }

    /// Changes a review's record with `change` and stores it; durable when this returns.
    async fn update(
        &self,
        review: &str,
        change: impl FnOnce(&mut ReviewRecord),
    ) -> Result<ReviewRecord, Problem> {
        let updated = {
            let mut state = self.lock();
            let record = state
                .reviews
                .get_mut(review)
                .ok_or_else(|| unknown_review(review))?;
            let mut updated = record.clone();
            change(&mut updated);
            self.put_review(&updated)?;
            *record = updated.clone();
            updated
        };
        self.store.durable().await?;
        Ok(updated)
    }

    /// Sets the team of a review (`None` takes it out of every team); the caller must be its
    /// facilitator. Durable when this returns.
    pub async fn set_team(
        &self,
        session: &SessionRecord,
        team: Option<String>,
    ) -> Result<ReviewRecord, Problem> {
        policy::may_facilitate(session.role)?;
        self.update(&session.review, |r| r.team = team).await
    }

    /// Replaces the contributing factors of a review (already validated); the caller must be
    /// its facilitator or an author. Durable when this returns.
    pub async fn set_factors(
        &self,
        session: &SessionRecord,
        factors: Vec<String>,
    ) -> Result<ReviewRecord, Problem> {
        policy::may_tag_factors(session.role)?;
        self.update(&session.review, |r| r.factors = factors).await
    }

    /// Every review of `team`.
    pub fn of_team(&self, team: &str) -> Vec<ReviewRecord> {
        self.lock()
            .reviews
            .values()
            .filter(|r| r.team.as_deref() == Some(team))
            .cloned()
            .collect()
    }

    /// Replaces a role's invite link; with `revoke`, also ends every session of that role except
    /// the caller's; with `sign_in`, sets whether the new link needs a signed-in person (`None`:
    /// as the old one did; the caller checked that sign-in is configured). Returns the new token
    /// and whether it needs sign-in. Durable when this returns.
    pub async fn rotate(
        &self,
        session: &SessionRecord,
        role: Role,
        revoke: bool,
        sign_in: Option<bool>,
    ) -> Result<(String, bool), Problem> {
        policy::may_facilitate(session.role)?;
        let token = format!("dbi_{}", random_hex(32));
        let needs_sign_in;
        {
            let mut state = self.lock();
            let review = state
                .reviews
                .get_mut(&session.review)
                .ok_or_else(|| unknown_review(&session.review))?;
            let mut updated = review.clone();
            let old = updated.invites.insert(role, hex::encode(hash(&token)));
            match sign_in {
                Some(true) if !updated.sign_in_invites.contains(&role) => {
                    updated.sign_in_invites.push(role);
                }
                Some(false) => updated.sign_in_invites.retain(|r| *r != role),
                _ => {}
            }
            needs_sign_in = updated.invite_needs_sign_in(role);
            self.put_review(&updated)?;
            *review = updated;
            if let Some(old) = old.as_deref().and_then(parse_hash) {
                state.invites.remove(&old);
            }
            state
                .invites
                .insert(hash(&token), (session.review.clone(), role));
            if revoke {
                let doomed: Vec<Hash> = state
                    .sessions
                    .iter()
                    .filter(|(_, s)| {
                        s.review == session.review
                            && s.role == role
                            && s.participant != session.participant
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for key in doomed {
                    self.sessions_tree.remove(&key)?;
                    state.remove_session(&key);
                }
            }
        }
        self.store.durable().await?;
        Ok((token, needs_sign_in))
    }

    /// The access of session `token` to review document `name`.
    fn document_access(
        &self,
        token: &str,
        review_id: &str,
        kind: DocKind,
    ) -> Result<Access, Denied> {
        let state = self.lock();
        let Some(review) = state.reviews.get(review_id) else {
            return Err(Denied {
                code: "unknown_review".into(),
                message: "no review has this id".to_owned(),
            });
        };
        let Some(session) = state.sessions.get(&hash(token)) else {
            return Err(Denied {
                code: "invalid_token".into(),
                message: "the session token is not valid (unknown or revoked)".to_owned(),
            });
        };
        if session.review != review_id {
            return Err(Denied {
                code: "other_review".into(),
                message: "this session belongs to another review".to_owned(),
            });
        }
        policy::document_access(session.role, review.phase, kind).map_err(|r| Denied {
            code: r.code.into(),
            message: r.message,
        })
    }

    fn put_review(&self, review: &ReviewRecord) -> Result<(), StoreError> {
        self.reviews_tree
            .put(review.id.as_bytes(), &to_json(review))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        locked(&self.state)
    }
}

/// Decides access to every document: review documents by the session and the phase table,
/// others by the configured fallback (open access or shared tokens, see `--open-access`).
#[derive(Debug)]
pub struct ReviewAuthorizer {
    /// The review domain.
    pub reviews: Arc<Reviews>,
    /// Decides documents that belong to no review.
    pub others: Arc<dyn Authorizer>,
}

impl Authorizer for ReviewAuthorizer {
    fn authorize(&self, token: &str, document: &str) -> Result<Access, Denied> {
        match schema::parse_document_name(document) {
            Some((review, kind)) => self.reviews.document_access(token, review, kind),
            None => self.others.authorize(token, document),
        }
    }
}

fn invalid_invite() -> Problem {
    Problem::new(
        ProblemKind::Unauthenticated,
        "invalid_invite",
        "this invite link is not valid: it may have been rotated",
    )
}

/// The answer when no review has `id`.
pub fn unknown_review(id: &str) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        "unknown_review",
        format!("no review has the id {:?}", truncate(id, 64)),
    )
}

fn sign_in_to_join() -> Problem {
    sign_in_required(
        "this invite link needs you to sign in first; your name is then the one your sign-in gives",
    )
}

fn invalid_session() -> Problem {
    Problem::new(
        ProblemKind::Unauthenticated,
        "invalid_token",
        "the session token is not valid (unknown or revoked); join again with an invite link",
    )
}

fn hash(token: &str) -> Hash {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hash(hex_hash: &str) -> Option<Hash> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phase_moves_of_different_reviews_do_not_wait_on_each_other() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _flusher) = Store::open(dir.path()).expect("open");
        let reviews = Reviews::open(&store).expect("reviews");
        let moving_a = reviews.phase_lock("a").await;
        // Another review moves while review a's move is under way…
        let moving_b = reviews.phase_lock("b").now_or_never();
        assert!(moving_b.is_some(), "review b waited on review a");
        // …but a second move of review a waits for the first to finish.
        let mut again_a = Box::pin(reviews.phase_lock("a"));
        assert!(
            (&mut again_a).now_or_never().is_none(),
            "two moves of a at once"
        );
        drop(moving_a);
        assert!(
            again_a.now_or_never().is_some(),
            "a's next move stayed blocked"
        );
    }

    #[tokio::test]
    async fn a_flood_through_reader_links_leaves_room_for_writers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, flusher) = Store::open(dir.path()).expect("open");
        let flusher = tokio::task::spawn_blocking(move || flusher.run());
        let guards = Guards::unlimited();
        let reviews = Reviews::open_with(&store, guards).expect("reviews");
        let new = NewReview {
            title: "Flooded".into(),
            incident_date: None,
            severity: None,
            release: ReleaseMode::Batch,
            small_group_anonymity: false,
            team: None,
            sign_in_invites: Vec::new(),
        };
        let created = reviews
            .insert(Reviews::new_id(), new)
            .await
            .expect("created");
        let invite = |role: Role| {
            created
                .invites
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, t)| t.clone())
                .expect("invite")
        };
        let readers = MAX_SESSIONS_PER_REVIEW - RESERVED_FOR_WRITERS;
        for i in 0..readers {
            let role = if i % 2 == 0 {
                Role::Observer
            } else {
                Role::Participant
            };
            reviews
                .join(&invite(role), &format!("bot {i}"), None)
                .await
                .expect("room");
        }
        let full = reviews
            .join(&invite(Role::Observer), "one more bot", None)
            .await
            .expect_err("full for readers");
        assert_eq!(full.code, "review_full");
        assert_eq!(
            full.message,
            "a review holds at most 950 participants and observers; the other 50 places are kept for its facilitators and authors"
        );
        reviews
            .join(&invite(Role::Author), "Ana", None)
            .await
            .expect("a writer still joins");
        drop(reviews);
        drop(store);
        let _ = flusher.await;
    }
}
