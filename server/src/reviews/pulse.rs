//! The culture pulse: after a review closes, each person who took part may answer a handful of
//! Westrum-style statements once, on a 7-point scale. Answers travel the anonymous path
//! (`reviews::anonymous`: held in a random slot without a session, released in batches, stored
//! under random ids), and what anyone reads is an aggregate of at least [`MIN_ANSWERS`] answers:
//! per review, and per month across a team's reviews. This file holds the statements, who may
//! answer, and the aggregates; nothing here knows a session's token.

use serde::{Deserialize, Serialize};

use super::policy::{Phase, Role};
use super::problem::{Problem, ProblemKind};
use super::sessions::{ReviewRecord, SessionRecord};

/// The statements, in the order answers give their scores. After Westrum's typology of
/// organisational culture: whether people speak without fear, whether failure leads to inquiry
/// rather than blame, whether information reaches who needs it, and whether the messenger is
/// heard.
pub const STATEMENTS: [&str; 5] = [
    "I could say what I thought in this review without fear.",
    "The review looked for causes in the system, not in people.",
    "Information I needed reached me when I needed it.",
    "Failures here lead to inquiry, not blame.",
    "People who bring bad news here are heard, not punished.",
];

/// The lowest score: strongly disagree.
pub const MIN_SCORE: u8 = 1;
/// The highest score: strongly agree.
pub const MAX_SCORE: u8 = 7;
/// Answers a review (or a month of a team's trend) needs before anything of them is shown:
/// with fewer, people who know who answered could work out a person's scores.
pub const MIN_ANSWERS: usize = 5;

/// Checks a set of scores: one whole number from 1 to 7 for each statement.
pub fn validate_scores(scores: &[i64]) -> Result<Vec<u8>, Problem> {
    let bad = || {
        Problem::new(
            ProblemKind::BadInput,
            "invalid_answers",
            format!(
                "answer each of the {} statements, in order, with a whole number from {MIN_SCORE} \
                 (strongly disagree) to {MAX_SCORE} (strongly agree)",
                STATEMENTS.len()
            ),
        )
    };
    if scores.len() != STATEMENTS.len() {
        return Err(bad());
    }
    scores
        .iter()
        .map(|s| {
            u8::try_from(*s)
                .ok()
                .filter(|s| (MIN_SCORE..=MAX_SCORE).contains(s))
                .ok_or_else(bad)
        })
        .collect()
}

/// Whether `session` is asked the pulse of `review`: once it is closed, the facilitator,
/// authors and participants who joined before it closed. Observers are not: they watched and
/// could not speak, and the statements ask how speaking went; their answers would dilute those of
/// the people the pulse is for. Whoever joined after the close did not take part.
pub fn may_answer(session: &SessionRecord, review: &ReviewRecord) -> Result<(), Problem> {
    if review.phase != Phase::Closed {
        return Err(Problem::new(
            ProblemKind::Conflict,
            "not_closed",
            "the pulse opens once the review is closed",
        ));
    }
    if session.role == Role::Observer {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "the pulse asks the people who took part in the review; observers do not answer it",
        ));
    }
    if review.closed_at.is_some_and(|at| session.created_at > at) {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "the pulse asks the people who took part in the review; this session joined after it closed",
        ));
    }
    Ok(())
}

/// What the answers say about one statement.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatementResult {
    /// The statement.
    pub statement: &'static str,
    /// How many answered it.
    pub count: u32,
    /// The mean score, from 1 to 7, rounded to two decimals.
    pub mean: f64,
    /// How many gave each score, from 1 (strongly disagree) to 7 (strongly agree).
    #[schema(min_items = 7, max_items = 7)]
    pub distribution: Vec<u32>,
}

/// Every statement's result over a set of answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Aggregate {
    /// How many people answered (at least 5).
    #[schema(minimum = 5)]
    pub answers: u32,
    /// One result per statement, in the order of the statements.
    pub statements: Vec<StatementResult>,
}

/// The results as they were last shown: how many answered, and per statement how many gave each
/// score. Stored per review (`meta.pulse_shown`); it moves on only in steps of at least
/// [`MIN_ANSWERS`] answers ([`next_shown`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// How many answers it holds.
    pub answers: u32,
    /// Per statement, the count of each score from 1 to 7.
    pub distributions: Vec<Vec<u32>>,
}

impl Shown {
    /// The distributions of `answers` (score lists read from the store; a list of the wrong
    /// length or with a score out of range is left out).
    pub fn of(answers: &[Vec<u8>]) -> Shown {
        let mut distributions = vec![vec![0u32; usize::from(MAX_SCORE)]; STATEMENTS.len()];
        let mut count = 0;
        for answer in answers {
            let valid = answer.len() == STATEMENTS.len()
                && answer.iter().all(|s| (MIN_SCORE..=MAX_SCORE).contains(s));
            if !valid {
                continue;
            }
            count += 1;
            for (i, score) in answer.iter().enumerate() {
                distributions[i][usize::from(score - MIN_SCORE)] += 1;
            }
        }
        Shown {
            answers: count,
            distributions,
        }
    }

    /// Several reviews' results together (a month of a team's trend).
    fn add(&mut self, other: &Shown) {
        self.answers += other.answers;
        for (mine, theirs) in self.distributions.iter_mut().zip(&other.distributions) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
    }
}

/// What a review's pulse shows now, from what it showed last (`shown`) and every released answer:
/// nothing below [`MIN_ANSWERS`]; then the first results; then the same results until at least
/// [`MIN_ANSWERS`] more answers were released, when they move on to all of them. Answers are
/// never taken back, so two results anyone sees differ by at least five people's answers: a
/// batch released alone (one person's answer, after waiting ten boundaries) cannot be read off
/// the difference.
pub fn next_shown(shown: Option<Shown>, answers: &[Vec<u8>]) -> Option<Shown> {
    let now = Shown::of(answers);
    let needed = shown.as_ref().map_or(0, |s| s.answers) + MIN_ANSWERS as u32;
    if now.answers >= needed {
        Some(now)
    } else {
        shown
    }
}

impl Aggregate {
    /// The aggregate of `answers` taken together, or `None` with fewer than [`MIN_ANSWERS`].
    pub fn of(answers: &[Vec<u8>]) -> Option<Aggregate> {
        Aggregate::from_shown(&Shown::of(answers))
    }

    /// The results `shown` holds, or `None` with fewer than [`MIN_ANSWERS`] answers.
    pub fn from_shown(shown: &Shown) -> Option<Aggregate> {
        if (shown.answers as usize) < MIN_ANSWERS || shown.distributions.len() != STATEMENTS.len() {
            return None;
        }
        let statements = STATEMENTS
            .iter()
            .zip(&shown.distributions)
            .map(|(statement, distribution)| {
                let sum: u64 = distribution
                    .iter()
                    .zip(u64::from(MIN_SCORE)..)
                    .map(|(n, score)| u64::from(*n) * score)
                    .sum();
                let mean = sum as f64 / f64::from(shown.answers);
                StatementResult {
                    statement,
                    count: shown.answers,
                    mean: (mean * 100.0).round() / 100.0,
                    distribution: distribution.clone(),
                }
            })
            .collect();
        Some(Aggregate {
            answers: shown.answers,
            statements,
        })
    }
}

/// One month of a team's trend.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// The team's reviews of that month whose pulse is shown (each had at least five answers).
    pub reviews: u32,
    /// Their answers together.
    pub aggregate: Aggregate,
}

/// A team's trend from its reviews' months and what each review's pulse shows
/// ([`next_shown`]), oldest month first. A review whose pulse shows nothing does not count, and
/// a month adds up what its reviews show, not their answers as they are now: a month cannot be
/// set against a review's own results to give away answers released since.
pub fn trend(reviews: Vec<(String, Option<Shown>)>) -> Vec<TrendMonth> {
    let mut months: std::collections::BTreeMap<String, (u32, Shown)> =
        std::collections::BTreeMap::new();
    for (month, shown) in reviews {
        let Some(shown) = shown.filter(|s| Aggregate::from_shown(s).is_some()) else {
            continue;
        };
        let entry = months.entry(month).or_insert_with(|| (0, Shown::of(&[])));
        entry.0 += 1;
        entry.1.add(&shown);
    }
    months
        .into_iter()
        .filter_map(|(month, (reviews, shown))| {
            Some(TrendMonth {
                month,
                reviews,
                aggregate: Aggregate::from_shown(&shown)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trend_leaves_out_reviews_below_five_answers() {
        let shown = |answers: Vec<Vec<u8>>| next_shown(None, &answers);
        let months = trend(vec![
            ("2026-10".into(), shown(vec![vec![7, 7, 7, 7, 7]; 5])),
            ("2026-10".into(), shown(vec![vec![1, 1, 1, 1, 1]; 4])),
            ("2026-09".into(), shown(vec![vec![4, 4, 4, 4, 4]; 6])),
            ("2026-10".into(), shown(vec![vec![3, 3, 3, 3, 3]; 5])),
        ]);
        assert_eq!(months.len(), 2);
        assert_eq!(months[0].month, "2026-09");
        assert_eq!(months[0].aggregate.answers, 6);
        assert_eq!(months[1].reviews, 2);
        assert_eq!(months[1].aggregate.answers, 10);
        assert_eq!(months[1].aggregate.statements[0].mean, 5.0);
    }

    use super::*;

    #[test]
    fn nothing_is_shown_below_five_answers() {
        let four = vec![vec![7, 7, 7, 7, 7]; 4];
        assert_eq!(Aggregate::of(&four), None);
        let mut five = four.clone();
        five.push(vec![1, 2, 3, 4, 5]);
        let shown = Aggregate::of(&five).expect("five answers are shown");
        assert_eq!(shown.answers, 5);
        assert_eq!(shown.statements[0].count, 5);
        assert_eq!(shown.statements[0].distribution, [1, 0, 0, 0, 0, 0, 4]);
        assert_eq!(shown.statements[0].mean, 5.8);
        assert_eq!(shown.statements[2].mean, 6.2);
        // A damaged answer does not count towards the five.
        let mut damaged = four;
        damaged.push(vec![9, 9, 9, 9, 9]);
        assert_eq!(Aggregate::of(&damaged), None);
    }

    /// Results move on only in steps of five answers: no two results differ by one person.
    #[test]
    fn results_move_on_in_steps_of_five() {
        let mut answers = vec![vec![4, 4, 4, 4, 4]; 4];
        assert_eq!(next_shown(None, &answers), None);
        answers.push(vec![7, 7, 7, 7, 7]);
        let first = next_shown(None, &answers).expect("shown from five");
        assert_eq!(first.answers, 5);
        for n in 6..10 {
            answers.push(vec![1, 1, 1, 1, 1]);
            assert_eq!(
                next_shown(Some(first.clone()), &answers),
                Some(first.clone()),
                "{n} answers still show the first five"
            );
        }
        answers.push(vec![1, 1, 1, 1, 1]);
        let second = next_shown(Some(first.clone()), &answers).expect("shown");
        assert_eq!(second.answers, 10);
        let shown = Aggregate::from_shown(&second).expect("results");
        assert_eq!(shown.statements[0].distribution, [5, 0, 0, 4, 0, 0, 1]);
        assert_eq!(shown.statements[0].mean, 2.8);
    }

    #[test]
    fn scores_are_checked() {
        assert_eq!(
            validate_scores(&[1, 2, 3, 4, 7]).expect("valid"),
            [1, 2, 3, 4, 7]
        );
        for bad in [
            &[1, 2, 3, 4][..],
            &[1, 2, 3, 4, 8],
            &[0, 2, 3, 4, 5],
            &[1, 2, 3, 4, 5, 6],
        ] {
            let refused = validate_scores(bad).expect_err("refused");
            assert_eq!(refused.code, "invalid_answers");
            assert_eq!(
                refused.message,
                "answer each of the 5 statements, in order, with a whole number from 1 (strongly \
                 disagree) to 7 (strongly agree)"
            );
        }
    }
}
