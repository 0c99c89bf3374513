//! The review domain: reviews and sessions, the phase table, comment threads, anonymous items,
//! the meeting, what a review keeps (pinned versions, read marks, the library) and its exports,
//! and the REST API over all of them. One file per resource:
//!
//! - reviews and sessions: [`sessions`] (reviews, invite links, sessions, the authorizer of
//!   review documents, and in it the limits on guessing and flooding and display names),
//!   [`fields`] (what people type: titles, names, dates);
//! - threads: [`threads`] (the discussion document's comment threads and concerns) and
//!   [`report`] (the report's template and anchors into it);
//! - anonymous items: [`anonymous`] (the queue, its release, keys and votes, and in it the
//!   held-items file);
//! - the meeting: [`meeting`] (timebox, agenda, action items, read count, hints);
//! - following action items through: [`actions`] (every review's items in memory, for the
//!   action items page) and [`trackers`] (tracker links and the server's patterns), with
//!   [`urls`] (the one reading of a web address, for tracker links and webhooks);
//! - records and export: [`records`] (pinned versions, read marks, the library), [`export`]
//!   and [`markdown`] (the one Markdown reader and writer of exports, versions and the library),
//!   [`renaming`] (people's names replaced by roles, for publishing without them);
//! - [`webhooks`]: events told to other systems (the outbox, signed deliveries with retries,
//!   due days of action items);
//! - signing in: [`identity`] (who is signed in, through a trusted proxy's headers or OpenID
//!   Connect, and whom that lets create reviews) and [`people`] (signed-in people and the
//!   sessions they joined, in trees of their own);
//! - [`api`]: the REST routes over all of the above;
//! - shared by all: [`policy`] (the phase table: roles, phases, release modes), [`problem`]
//!   (why a request is refused) and [`basics`] (clock, ids, locks).
//!
//! Imports run one way inside the room: `api` → the resources → `policy`, `problem`, `basics`.

pub mod actions;
pub mod anonymous;
pub mod api;
pub mod basics;
pub mod export;
pub mod fields;
pub mod identity;
pub mod markdown;
pub mod meeting;
pub mod oidc;
pub mod people;
pub mod policy;
pub mod problem;
pub mod pulse;
pub mod records;
pub mod renaming;
pub mod report;
pub mod sessions;
pub mod threads;
pub mod trackers;
pub mod urls;
pub mod webhooks;

pub use policy::{Phase, ReleaseMode, Role};
pub use problem::{Problem, ProblemKind};
pub use sessions::{ReviewAuthorizer, ReviewRecord, Reviews, SessionRecord};

/// The documents a node claims together with `name` when it loads it: a review's three
/// (`docs/schema.md`), in name order, since the review is the unit one node owns
/// (`docs/cluster.md`, "One owner per document"); any other document alone. Given to the
/// PostgreSQL backend, which does not know document names.
pub fn claim_group(name: &str) -> Vec<String> {
    use debrief_proto::schema::{document_name, parse_document_name, DocKind};
    match parse_document_name(name) {
        Some((review, _)) => {
            let mut group: Vec<String> = DocKind::ALL
                .into_iter()
                .map(|kind| document_name(review, kind))
                .collect();
            group.sort();
            group
        }
        None => vec![name.to_owned()],
    }
}

#[cfg(test)]
mod claim_group_tests {
    #[test]
    fn a_review_document_is_claimed_with_its_two_siblings_and_any_other_alone() {
        assert_eq!(
            crate::reviews::claim_group("review.r1.notes"),
            [
                "review.r1.discussion",
                "review.r1.notes",
                "review.r1.report"
            ]
        );
        assert_eq!(crate::reviews::claim_group("scratch"), ["scratch"]);
        assert_eq!(
            crate::reviews::claim_group("review.r1.other"),
            ["review.r1.other"]
        );
    }
}
