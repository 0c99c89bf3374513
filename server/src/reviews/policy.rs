//! The phase table (`docs/architecture.md`, "The phase table") as code: who may open which document of a review, and who
//! may do what, in each phase. Pure functions, so the whole table is unit-tested here and
//! enforced by every caller (both WebSocket dialects and the REST commands) from one place.

use debrief_proto::schema::DocKind;
use serde::{Deserialize, Serialize};

use crate::documents::access::Access;

/// A person's role in one review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Creates the review, moves phases, moderates.
    Facilitator,
    /// Writes the report.
    Author,
    /// Reads, comments, takes notes.
    Participant,
    /// Reads only.
    Observer,
}

impl Role {
    /// Every role, in the order invites are listed.
    pub const ALL: [Role; 4] = [
        Role::Facilitator,
        Role::Author,
        Role::Participant,
        Role::Observer,
    ];

    /// The role's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Facilitator => "facilitator",
            Role::Author => "author",
            Role::Participant => "participant",
            Role::Observer => "observer",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    fn plural(self) -> &'static str {
        match self {
            Role::Facilitator => "facilitators",
            Role::Author => "authors",
            Role::Participant => "participants",
            Role::Observer => "observers",
        }
    }
}

/// Where a review is in its lifecycle. Phases only move forward, one step at a time.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Authors write the report.
    Draft,
    /// Everyone reads and comments.
    Review,
    /// The live meeting: notes open.
    Meeting,
    /// Frozen.
    Closed,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [Phase::Draft, Phase::Review, Phase::Meeting, Phase::Closed];

    /// The phase's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Draft => "draft",
            Phase::Review => "review",
            Phase::Meeting => "meeting",
            Phase::Closed => "closed",
        }
    }

    /// The only phase this one may move to.
    pub fn next(self) -> Option<Phase> {
        match self {
            Phase::Draft => Some(Phase::Review),
            Phase::Review => Some(Phase::Meeting),
            Phase::Meeting => Some(Phase::Closed),
            Phase::Closed => None,
        }
    }
}

/// Why the table refuses something: a stable code and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code (`not_allowed`, `read_only`).
    pub code: &'static str,
    /// Human sentence naming the role, phase and document or action.
    pub message: String,
}

fn refuse(message: String) -> Refusal {
    Refusal {
        code: "not_allowed",
        message,
    }
}

/// What `role` may do with the `kind` document of a review in `phase`:
///
/// | document | draft | review | meeting | closed |
/// |---|---|---|---|---|
/// | report | authors write; facilitator reads; others denied | authors write; others read | authors and facilitator write; others read | all read |
/// | discussion | facilitator and authors read; others denied | all read | all read | all read |
/// | notes | denied | denied | facilitator, authors, participants write; observers read | all read |
///
/// Nobody writes `discussion` over a socket: the server writes it for them.
pub fn document_access(role: Role, phase: Phase, kind: DocKind) -> Result<Access, Refusal> {
    use Access::{ReadOnly, ReadWrite};
    let denied = || {
        refuse(format!(
            "{} cannot open the {} while the review is in {}",
            role.plural(),
            kind.as_str(),
            phase.as_str()
        ))
    };
    let private_draft = matches!(role, Role::Participant | Role::Observer);
    match (kind, phase) {
        (_, Phase::Closed) => Ok(ReadOnly),
        (DocKind::Report, Phase::Draft) if private_draft => Err(denied()),
        (DocKind::Report, Phase::Draft | Phase::Review) => match role {
            Role::Author => Ok(ReadWrite),
            _ => Ok(ReadOnly),
        },
        (DocKind::Report, Phase::Meeting) => match role {
            Role::Author | Role::Facilitator => Ok(ReadWrite),
            _ => Ok(ReadOnly),
        },
        (DocKind::Discussion, Phase::Draft) if private_draft => Err(denied()),
        (DocKind::Discussion, _) => Ok(ReadOnly),
        (DocKind::Notes, Phase::Draft | Phase::Review) => Err(denied()),
        (DocKind::Notes, Phase::Meeting) => match role {
            Role::Observer => Ok(ReadOnly),
            _ => Ok(ReadWrite),
        },
    }
}

/// Whether `role` may add, reply to, edit, delete, resolve or reopen comments in `phase`:
/// authors only in draft; everyone but observers in review and meeting; nobody once closed.
pub fn may_comment(role: Role, phase: Phase) -> Result<(), Refusal> {
    let allowed = match phase {
        Phase::Draft => role == Role::Author,
        Phase::Review | Phase::Meeting => role != Role::Observer,
        Phase::Closed => false,
    };
    if allowed {
        Ok(())
    } else if phase == Phase::Closed {
        Err(refuse(
            "the review is closed: comments are read-only".to_owned(),
        ))
    } else {
        Err(refuse(format!(
            "{} cannot comment while the review is in {}",
            role.plural(),
            phase.as_str()
        )))
    }
}

/// Whether `role` may run the review (move phases, rotate invite links).
pub fn may_facilitate(role: Role) -> Result<(), Refusal> {
    if role == Role::Facilitator {
        Ok(())
    } else {
        Err(refuse(format!(
            "only the facilitator can do this; {} cannot",
            role.plural()
        )))
    }
}

/// Whether `role` may tag a review's contributing factors: those who write the analysis, the
/// facilitator and the authors, in every phase.
pub fn may_tag_factors(role: Role) -> Result<(), Refusal> {
    if matches!(role, Role::Facilitator | Role::Author) {
        Ok(())
    } else {
        Err(refuse(format!(
            "only the facilitator and authors tag contributing factors; {} cannot",
            role.plural()
        )))
    }
}

/// When a review releases its held anonymous items: `batch` at every boundary of the server's
/// cadence, `meeting` all at once when the meeting starts (and at every boundary after that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseMode {
    /// At every cadence boundary.
    #[default]
    Batch,
    /// All at once when the meeting starts (and at every boundary after that).
    Meeting,
}

impl ReleaseMode {
    /// Name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseMode::Batch => "batch",
            ReleaseMode::Meeting => "meeting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: DocKind) -> Vec<(Role, Phase, Option<Access>)> {
        let mut out = Vec::new();
        for role in Role::ALL {
            for phase in Phase::ALL {
                out.push((role, phase, document_access(role, phase, kind).ok()));
            }
        }
        out
    }

    #[test]
    fn only_authors_write_the_report_before_the_meeting() {
        use Access::*;
        let rows = table(DocKind::Report);
        let get = |r, p| rows.iter().find(|x| x.0 == r && x.1 == p).map(|x| x.2);
        assert_eq!(get(Role::Author, Phase::Draft), Some(Some(ReadWrite)));
        assert_eq!(get(Role::Facilitator, Phase::Draft), Some(Some(ReadOnly)));
        assert_eq!(get(Role::Participant, Phase::Draft), Some(None));
        assert_eq!(get(Role::Observer, Phase::Draft), Some(None));
        assert_eq!(get(Role::Participant, Phase::Review), Some(Some(ReadOnly)));
        assert_eq!(
            get(Role::Facilitator, Phase::Meeting),
            Some(Some(ReadWrite))
        );
        for role in Role::ALL {
            assert_eq!(get(role, Phase::Closed), Some(Some(ReadOnly)));
        }
    }

    #[test]
    fn nobody_writes_the_discussion_and_notes_open_at_the_meeting() {
        for (role, phase, access) in table(DocKind::Discussion) {
            assert_ne!(access, Some(Access::ReadWrite), "{role:?} {phase:?}");
        }
        for (role, phase, access) in table(DocKind::Notes) {
            let expected = match (phase, role) {
                (Phase::Draft | Phase::Review, _) => None,
                (Phase::Meeting, Role::Observer) | (Phase::Closed, _) => Some(Access::ReadOnly),
                (Phase::Meeting, _) => Some(Access::ReadWrite),
            };
            assert_eq!(access, expected, "{role:?} {phase:?}");
        }
    }

    #[test]
    fn refusals_name_the_role_document_and_phase() {
        let r =
            document_access(Role::Participant, Phase::Draft, DocKind::Report).expect_err("refused");
        assert_eq!(r.code, "not_allowed");
        assert_eq!(
            r.message,
            "participants cannot open the report while the review is in draft"
        );
        assert_eq!(
            may_comment(Role::Participant, Phase::Draft)
                .expect_err("refused")
                .message,
            "participants cannot comment while the review is in draft"
        );
        assert!(may_comment(Role::Author, Phase::Draft).is_ok());
        assert!(may_comment(Role::Observer, Phase::Review).is_err());
        assert!(may_comment(Role::Facilitator, Phase::Closed).is_err());
    }

    #[test]
    fn phases_move_forward_one_step() {
        assert_eq!(Phase::Draft.next(), Some(Phase::Review));
        assert_eq!(Phase::Closed.next(), None);
    }
}
