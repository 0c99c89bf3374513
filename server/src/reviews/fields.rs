//! The fields people type when they create or join a review (title, severity, incident day,
//! display name): their bounds and how each is checked and normalised.

use crate::reviews::problem::{Problem, ProblemKind};
use crate::reviews::sessions::names;

/// Longest review title, in characters: a headline, not a summary.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest display name, in characters: fits beside a caret.
pub const MAX_NAME_CHARS: usize = 60;
/// Longest severity label (`SEV1`, `critical`, …).
pub const MAX_SEVERITY_CHARS: usize = 32;

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

/// Longest team label (`payments`, `Platform SRE`, …).
pub const MAX_TEAM_CHARS: usize = 60;
/// Longest contributing factor, in characters: a tag, not a sentence.
pub const MAX_FACTOR_CHARS: usize = 40;
/// Most contributing factors on one review: a review that names more has not chosen.
pub const MAX_FACTORS: usize = 12;

/// Trims, collapses inner whitespace and checks a team label. Teams are compared as written
/// once normalised, so "Payments" and "payments" are two teams.
pub fn validate_team(team: &str) -> Result<String, Problem> {
    let team = team.split_whitespace().collect::<Vec<_>>().join(" ");
    validate_text(&team, MAX_TEAM_CHARS, "invalid_team", "a team")
}

/// What a contributing factor may hold.
pub const FACTOR_RULE: &str = "a contributing factor is 1 to 40 characters: letters, digits, \
spaces and - / & ' . ( )";

/// Normalises one contributing factor (trimmed, inner whitespace collapsed, lower case, so that
/// the same factor written twice counts once across reviews) and checks it against
/// [`FACTOR_RULE`].
pub fn validate_factor(factor: &str) -> Result<String, Problem> {
    let factor = factor
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let chars = factor.chars().count();
    let allowed = |c: char| c.is_alphanumeric() || " -/&'.()".contains(c);
    if chars == 0 || chars > MAX_FACTOR_CHARS || !factor.chars().all(allowed) {
        return Err(Problem::new(
            ProblemKind::BadInput,
            "invalid_factor",
            FACTOR_RULE,
        ));
    }
    Ok(factor)
}

/// Checks a review's contributing factors: each one ([`validate_factor`]), at most
/// [`MAX_FACTORS`] once duplicates are dropped; the first one given of each is kept, in order.
pub fn validate_factors(factors: &[String]) -> Result<Vec<String>, Problem> {
    let mut out: Vec<String> = Vec::new();
    for factor in factors {
        let factor = validate_factor(factor)?;
        if !out.contains(&factor) {
            out.push(factor);
        }
    }
    if out.len() > MAX_FACTORS {
        return Err(Problem::new(
            ProblemKind::BadInput,
            "too_many_factors",
            format!("a review has at most {MAX_FACTORS} contributing factors"),
        ));
    }
    Ok(out)
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

    #[test]
    fn factors_are_normalised_deduplicated_and_bounded() {
        let given: Vec<String> = [
            "  Alerting   Gap ",
            "alerting gap",
            "On-call (night) & paging",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            validate_factors(&given).expect("valid"),
            vec!["alerting gap", "on-call (night) & paging"]
        );
        for bad in ["", "   ", "a<b", "x\u{7}", &"x".repeat(41)] {
            let refused = validate_factor(bad).expect_err(bad);
            assert_eq!(refused.code, "invalid_factor");
            assert_eq!(refused.message, FACTOR_RULE);
        }
        assert!(validate_factor(&"é".repeat(40)).is_ok());
        let many: Vec<String> = (0..13).map(|i| format!("factor {i}")).collect();
        let refused = validate_factors(&many).expect_err("too many");
        assert_eq!(refused.code, "too_many_factors");
        assert_eq!(
            refused.message,
            "a review has at most 12 contributing factors"
        );
    }

    #[test]
    fn teams_are_trimmed_and_bounded() {
        assert_eq!(
            validate_team(" Payments   SRE ").expect("valid"),
            "Payments SRE"
        );
        assert_eq!(
            validate_team(" ").expect_err("empty").message,
            "a team is 1 to 60 characters, without control characters"
        );
        assert!(validate_team(&"t".repeat(61)).is_err());
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
