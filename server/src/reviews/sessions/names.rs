//! Display names as people see them: the normal form a name is stored in, and the look-alike
//! test that keeps "Anonymous" for anonymous items (issue 16).
//!
//! A name is shown beside comments and carets, where "Anonymous" means an item nobody can trace.
//! If a person could join as `Anonymous` followed by a zero-width space, as `Anоnymous` with a
//! Cyrillic `о`, or behind a right-to-left override, their named comments would pass for
//! anonymous ones. So a name is normalised before it is checked and stored, and compared with
//! "Anonymous" by its confusable skeleton (Unicode TS #39), not by its bytes.
//!
//! This module knows strings only: no review, no store, no HTTP.

use unicode_normalization::UnicodeNormalization;

/// The name that marks anonymous items; no person may take it or anything that looks like it.
pub const RESERVED: &str = "Anonymous";

/// Code points that render as nothing: Unicode's default-ignorable code points (zero-width
/// spaces and joiners, the soft hyphen, bidi controls and isolates, variation selectors, fillers,
/// tags), and the interlinear annotation controls. Removed from names: they hide differences
/// between names that look the same, and bidi controls can reorder what follows them.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFFB}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

fn invisible(c: char) -> bool {
    INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The form a display name is checked and stored in: NFKC (so fullwidth, styled mathematical
/// and other compatibility forms become the plain letters they show), without invisible code
/// points, with every run of whitespace made one space, trimmed. Control characters other than
/// whitespace are kept, for the caller to refuse.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.nfkc().filter(|&c| !invisible(c)) {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// Whether `name` (normalised) looks like [`RESERVED`]: its confusable skeleton, with case
/// folded, equals that of "Anonymous". Case is folded before and after the skeleton because
/// the skeleton keeps case and some look-alikes map to capitals.
pub fn looks_reserved(name: &str) -> bool {
    fold(name) == fold(RESERVED)
}

fn fold(s: &str) -> String {
    let lower = s.to_lowercase();
    let skeleton: String = unicode_security::skeleton(&lower).collect();
    let lower = skeleton.to_lowercase();
    unicode_security::skeleton(&lower).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalize("  Ada   Lovelace "), "Ada Lovelace");
        assert_eq!(normalize("Ada\t\nLovelace"), "Ada Lovelace");
        assert_eq!(normalize("Ada\u{00A0}\u{3000}Lovelace"), "Ada Lovelace");
        assert_eq!(normalize("\u{202E}Ada\u{200B}\u{2066}"), "Ada");
        assert_eq!(normalize("Ａｄａ"), "Ada");
        assert_eq!(normalize("𝐀𝐝𝐚"), "Ada");
        assert_eq!(normalize("Jo\u{00AD}sé"), "José");
        // NFKC composes: the same name typed two ways is stored the same way.
        assert_eq!(normalize("Jose\u{0301}"), normalize("José"));
        assert_eq!(normalize("\u{200B}\u{200D} \u{FEFF}"), "");
        assert_eq!(normalize("Zoë 🙂"), "Zoë 🙂");
        assert_eq!(normalize("李 小龍"), "李 小龍");
        assert_eq!(
            normalize("a\u{7}b"),
            "a\u{7}b",
            "controls are left to refuse"
        );
    }

    #[test]
    fn look_alikes_of_anonymous_are_reserved() {
        for name in [
            "Anonymous",
            "anonymous",
            "ANONYMOUS",
            "Anоnymous",  // Cyrillic о
            "Аnonymous",  // Cyrillic А
            "Αnοnymοus",  // Greek Α and ο
            "Anonyrnous", // rn for m
            "Ano\u{0578}ymous",
        ] {
            assert!(looks_reserved(&normalize(name)), "{name:?}");
        }
        for raw in [
            "Anonymous\u{200B}",
            "\u{202E}Anonymous",
            "An\u{00AD}onymous",
            "Anonymous\u{E0001}",
            "Ａｎｏｎｙｍｏｕｓ",
            "𝐀𝐧𝐨𝐧𝐲𝐦𝐨𝐮𝐬",
            " Anonymous ",
        ] {
            assert!(looks_reserved(&normalize(raw)), "{raw:?}");
        }
        for name in ["Anon", "Anonymous Coward", "Ada", "Anonymity", "Amonymous"] {
            assert!(!looks_reserved(&normalize(name)), "{name:?}");
        }
    }
}
