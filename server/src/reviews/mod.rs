//! The review domain: reviews, their phases, invite links and sessions, kept in memory and in
//! their own sled trees, and the [`ReviewAuthorizer`] that decides every socket's access to a
//! review's documents from the phase table ([`policy`]).
//!
//! This module never touches documents or HTTP: [`api`] seeds and writes documents through the
//! registry, and maps [`Problem`]s to HTTP statuses.
//!
//! Secrets: invite and session tokens are 256 random bits; only their SHA-256 hashes are stored
//! (in memory and on disk), so a copy of the database opens nothing. Tokens never reach logs.

pub mod anonymous;
pub mod api;
pub mod api_meeting;
pub mod export;
pub mod held;
pub mod markdown;
pub mod meeting;
pub mod names;
pub mod policy;
pub mod records;
pub mod report;
pub mod threads;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use debrief_proto::schema::{self, DocKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::documents::access::{Access, Authorizer, Denied};
use crate::storage::store::{MetaTree, Store, StoreError};
pub use policy::{Phase, Role};

/// Longest review title, in characters: a headline, not a summary.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest display name, in characters: fits beside a caret.
pub const MAX_NAME_CHARS: usize = 60;
/// Longest severity label (`SEV1`, `critical`, …).
pub const MAX_SEVERITY_CHARS: usize = 32;

/// What kind of failure a [`Problem`] is; [`api`] maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request is malformed or a value is out of range (400).
    BadInput,
    /// No valid credential (401).
    Unauthenticated,
    /// The credential does not allow this (403).
    Forbidden,
    /// The thing named does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// A value is too large (413).
    TooLarge,
    /// Too many requests in a short time (429).
    TooManyRequests,
    /// A referenced value does not resolve (422).
    Unprocessable,
    /// The server cannot do it now (503).
    Unavailable,
}

/// A refused request: kind, stable code and one human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Maps to the HTTP status.
    pub kind: ProblemKind,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
    /// For a refusal that ends: how long until trying again makes sense.
    pub retry_after: Option<std::time::Duration>,
}

impl Problem {
    /// A problem of `kind`.
    pub fn new(kind: ProblemKind, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `rate_limited`, to try again after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Problem {
            retry_after: Some(wait),
            ..Problem::new(ProblemKind::TooManyRequests, "rate_limited", message)
        }
    }

    fn from_refusal(r: policy::Refusal) -> Self {
        Problem::new(ProblemKind::Forbidden, r.code, r.message)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "review store failed");
        Problem::new(
            ProblemKind::Unavailable,
            "store_unavailable",
            "the store cannot be written; try again",
        )
    }
}

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
    pub release: anonymous::ReleaseMode,
    /// The facilitator allowed anonymous items in a small group: with fewer than three people who
    /// may post them, and in a batch that only one person contributed to.
    #[serde(default)]
    pub small_group_anonymity: bool,
    /// Hex SHA-256 of each role's current invite token.
    invites: HashMap<Role, String>,
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
    pub release: anonymous::ReleaseMode,
    /// See [`ReviewRecord::small_group_anonymity`].
    pub small_group_anonymity: bool,
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
/// Reviews one client address may create per minute (then it waits, twice as long each time
/// it floods again): far above what a person does, so one script cannot block others.
pub const CREATIONS_PER_ADDRESS: u32 = 10;
/// Wrong creation secrets one address may send per minute before it must wait.
pub const WRONG_SECRETS_PER_ADDRESS: u32 = 5;
/// Joins (right or wrong) one address may make per minute: a team joining from behind one NAT
/// fits; a script guessing invites does not.
pub const JOINS_PER_ADDRESS: u32 = 60;
/// Wrong invite tokens one address may send per minute before it must wait.
pub const WRONG_INVITES_PER_ADDRESS: u32 = 10;
/// Sessions one invite link may create per minute: a whole team joining at the start of a
/// meeting fits; a script filling the review with sessions does not.
pub const JOINS_PER_INVITE: u32 = 30;

/// The in-memory limits on guessing and flooding ([`throttle`]).
#[derive(Debug)]
pub struct Guards {
    creations: throttle::Throttle<std::net::IpAddr>,
    wrong_secrets: throttle::Throttle<std::net::IpAddr>,
    joins: throttle::Throttle<std::net::IpAddr>,
    wrong_invites: throttle::Throttle<std::net::IpAddr>,
    invites: throttle::Throttle<Hash>,
}

impl Default for Guards {
    fn default() -> Self {
        let minute = std::time::Duration::from_secs(60);
        Guards {
            creations: throttle::Throttle::new(CREATIONS_PER_ADDRESS, minute),
            wrong_secrets: throttle::Throttle::new(WRONG_SECRETS_PER_ADDRESS, minute),
            joins: throttle::Throttle::new(JOINS_PER_ADDRESS, minute),
            wrong_invites: throttle::Throttle::new(WRONG_INVITES_PER_ADDRESS, minute),
            invites: throttle::Throttle::new(JOINS_PER_INVITE, minute),
        }
    }
}

impl Guards {
    /// Refuses an address that sent too many wrong creation secrets lately.
    pub fn may_try_secret(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        self.wrong_secrets.check(&addr).map_err(|wait| {
            Problem::rate_limited(
                "too many wrong creation secrets from this address; wait before trying again",
                wait,
            )
        })
    }

    /// Counts a wrong creation secret from `addr`; the refusal to answer instead when this one
    /// went past [`WRONG_SECRETS_PER_ADDRESS`].
    pub fn wrong_secret(&self, addr: std::net::IpAddr) -> Option<Problem> {
        self.wrong_secrets.hit(&addr).err().map(|wait| {
            Problem::rate_limited(
                "too many wrong creation secrets from this address; wait before trying again",
                wait,
            )
        })
    }

    /// Counts a creation from `addr`, refusing past [`CREATIONS_PER_ADDRESS`].
    pub fn may_create(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        self.creations.hit(&addr).map_err(|wait| {
            Problem::rate_limited(
                format!(
                    "this address created {CREATIONS_PER_ADDRESS} reviews in the last minute; \
                     try again shortly"
                ),
                wait,
            )
        })
    }

    /// Counts a join from `addr`, refusing past [`JOINS_PER_ADDRESS`] or after too many wrong
    /// invites.
    pub fn may_join(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        let wait = self
            .wrong_invites
            .check(&addr)
            .err()
            .or_else(|| self.joins.hit(&addr).err());
        match wait {
            Some(wait) => Err(Problem::rate_limited(
                "too many joins or wrong invite links from this address; wait before trying again",
                wait,
            )),
            None => Ok(()),
        }
    }

    /// Counts a wrong invite token from `addr`; the refusal to answer instead when this one
    /// went past [`WRONG_INVITES_PER_ADDRESS`].
    pub fn wrong_invite(&self, addr: std::net::IpAddr) -> Option<Problem> {
        self.wrong_invites.hit(&addr).err().map(|wait| {
            Problem::rate_limited(
                "too many joins or wrong invite links from this address; wait before trying again",
                wait,
            )
        })
    }
}

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

    /// Joins the review an invite token belongs to; returns the session and its token (the only
    /// copy). Durable when this returns.
    pub async fn join(
        &self,
        invite: &str,
        name: &str,
    ) -> Result<(SessionRecord, ReviewRecord, String), Problem> {
        let name = validate_name(name)?;
        let token = format!("dbs_{}", random_hex(32));
        let (session, review) = {
            let mut state = self.lock();
            let Some((review_id, role)) = state.invites.get(&hash(invite)).cloned() else {
                return Err(Problem::new(
                    ProblemKind::Unauthenticated,
                    "invalid_invite",
                    "this invite link is not valid: it may have been rotated",
                ));
            };
            let review = state
                .reviews
                .get(&review_id)
                .cloned()
                .ok_or_else(|| unknown_review(&review_id))?;
            self.guards.invites.hit(&hash(invite)).map_err(|wait| {
                Problem::rate_limited(
                    format!(
                        "this invite link was used to join {JOINS_PER_INVITE} times in the last \
                         minute; try again shortly"
                    ),
                    wait,
                )
            })?;
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
                anonymous::ReleaseMode::Batch => true,
                anonymous::ReleaseMode::Meeting => r.phase >= Phase::Meeting,
            })
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
    /// open documents ([`api`]).
    pub async fn set_phase(
        &self,
        session: &SessionRecord,
        to: Phase,
    ) -> Result<(ReviewRecord, bool), Problem> {
        policy::may_facilitate(session.role).map_err(Problem::from_refusal)?;
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
            updated.phase = to;
            self.put_review(&updated)?;
            *review = updated.clone();
            updated
        };
        self.store.durable().await?;
        Ok((review, true))
    }

    /// Replaces a role's invite link; with `revoke`, also ends every session of that role except
    /// the caller's. Returns the new token. Durable when this returns.
    pub async fn rotate(
        &self,
        session: &SessionRecord,
        role: Role,
        revoke: bool,
    ) -> Result<String, Problem> {
        policy::may_facilitate(session.role).map_err(Problem::from_refusal)?;
        let token = format!("dbi_{}", random_hex(32));
        {
            let mut state = self.lock();
            let review = state
                .reviews
                .get_mut(&session.review)
                .ok_or_else(|| unknown_review(&session.review))?;
            let mut updated = review.clone();
            let old = updated.invites.insert(role, hex::encode(hash(&token)));
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
        Ok(token)
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
                code: "unknown_review",
                message: "no review has this id".to_owned(),
            });
        };
        let Some(session) = state.sessions.get(&hash(token)) else {
            return Err(Denied {
                code: "invalid_token",
                message: "the session token is not valid (unknown or revoked)".to_owned(),
            });
        };
        if session.review != review_id {
            return Err(Denied {
                code: "other_review",
                message: "this session belongs to another review".to_owned(),
            });
        }
        policy::document_access(session.role, review.phase, kind).map_err(|r| Denied {
            code: r.code,
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

fn unknown_review(id: &str) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        "unknown_review",
        format!("no review has the id {:?}", truncate(id, 64)),
    )
}

fn invalid_session() -> Problem {
    Problem::new(
        ProblemKind::Unauthenticated,
        "invalid_token",
        "the session token is not valid (unknown or revoked); join again with an invite link",
    )
}

/// Normalises and checks a display name ([`names::normalize`]); the normal form is what is
/// stored and shown. "Anonymous" and its look-alikes are reserved: it stands for anonymous items.
pub fn validate_name(name: &str) -> Result<String, Problem> {
    let name = validate_text(
        &names::normalize(name),
        MAX_NAME_CHARS,
        "invalid_name",
        "a display name",
    )?;
    if names::looks_reserved(&name) {
        return Err(Problem::new(
            ProblemKind::BadInput,
            "invalid_name",
            "\"Anonymous\" is reserved for anonymous items; choose another name",
        ));
    }
    Ok(name)
}

/// Trims and checks a review title.
pub fn validate_title(title: &str) -> Result<String, Problem> {
    validate_text(title, MAX_TITLE_CHARS, "invalid_title", "a title")
}

/// Trims and checks a severity label.
pub fn validate_severity(severity: &str) -> Result<String, Problem> {
    validate_text(
        severity,
        MAX_SEVERITY_CHARS,
        "invalid_severity",
        "a severity",
    )
}

fn validate_text(
    text: &str,
    max: usize,
    code: &'static str,
    what: &str,
) -> Result<String, Problem> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > max || text.chars().any(char::is_control) {
        return Err(Problem::new(
            ProblemKind::BadInput,
            code,
            format!("{what} is 1 to {max} characters, without control characters"),
        ));
    }
    Ok(text.to_owned())
}

/// Checks a calendar day written `YYYY-MM-DD`.
pub fn validate_date(date: &str) -> Result<String, Problem> {
    let bad = || {
        Problem::new(
            ProblemKind::BadInput,
            "invalid_incident_date",
            "the incident date is a calendar day written YYYY-MM-DD",
        )
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let num = |s: &str| -> Option<u32> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (num(y), num(m), num(d)) else {
        return Err(bad());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days {
        return Err(bad());
    }
    Ok(date.to_owned())
}

/// Locks `m`, also after a panic while it was held: the review domain's maps are changed by
/// replacing whole entries, so a panic cannot leave one half-written.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(token: &str) -> Hash {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hash(hex_hash: &str) -> Option<Hash> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records are plain data and always serialise")
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

    #[test]
    fn dates_are_checked_as_calendar_days() {
        assert!(validate_date("2024-02-29").is_ok());
        assert!(validate_date("2023-02-29").is_err());
        assert!(validate_date("2023-13-01").is_err());
        assert!(validate_date("2023-1-01").is_err());
        assert!(validate_date("+023-01-01").is_err());
        assert_eq!(
            validate_date("yesterday").expect_err("refused").code,
            "invalid_incident_date"
        );
    }

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
        let unlimited = || throttle::Throttle::new(u32::MAX, std::time::Duration::from_secs(60));
        let guards = Guards {
            creations: unlimited(),
            wrong_secrets: unlimited(),
            joins: unlimited(),
            wrong_invites: unlimited(),
            invites: throttle::Throttle::new(u32::MAX, std::time::Duration::from_secs(60)),
        };
        let reviews = Reviews::open_with(&store, guards).expect("reviews");
        let new = NewReview {
            title: "Flooded".into(),
            incident_date: None,
            severity: None,
            release: anonymous::ReleaseMode::Batch,
            small_group_anonymity: false,
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
                .join(&invite(role), &format!("bot {i}"))
                .await
                .expect("room");
        }
        let full = reviews
            .join(&invite(Role::Observer), "one more bot")
            .await
            .expect_err("full for readers");
        assert_eq!(full.code, "review_full");
        assert_eq!(
            full.message,
            "a review holds at most 950 participants and observers; the other 50 places are kept for its facilitators and authors"
        );
        reviews
            .join(&invite(Role::Author), "Ana")
            .await
            .expect("a writer still joins");
        drop(reviews);
        drop(store);
        let _ = flusher.await;
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Ada ").expect("valid"), "Ada");
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(61)).is_err());
        assert!(validate_name("a\u{7}b").is_err());
    }

    /// Issue 16: "Anonymous" could be impersonated with invisible, bidi and look-alike code
    /// points.
    #[test]
    fn names_are_normalised_and_anonymous_cannot_be_impersonated() {
        assert_eq!(
            validate_name("\u{202E}Ada\u{200B}  Lovelace\t").expect("valid"),
            "Ada Lovelace"
        );
        assert_eq!(validate_name("Ｇｒａｃｅ").expect("valid"), "Grace");
        for name in [
            "Anonymous\u{200B}",
            "An\u{043E}nymous",
            "\u{202E}Anonymous",
            "anonymous",
        ] {
            let refused = validate_name(name).expect_err(name);
            assert_eq!(refused.code, "invalid_name", "{name:?}");
            assert_eq!(
                refused.message,
                "\"Anonymous\" is reserved for anonymous items; choose another name"
            );
        }
        // Nothing but invisible code points is an empty name; the bound counts the normal form.
        assert_eq!(
            validate_name("\u{200B}\u{FEFF}").expect_err("empty").code,
            "invalid_name"
        );
        assert!(validate_name(&format!("{}\u{200B}", "x".repeat(60))).is_ok());
    }
}
