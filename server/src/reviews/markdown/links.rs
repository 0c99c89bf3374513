//! Which link targets a review's Markdown keeps: web pages and mail only, on import and on
//! export, so that a document or a Markdown file cannot carry a script link into an export, a
//! version or the public library (issue 16).
//!
//! Escaping of what people wrote is the writer's job ([`super::write`]); this module knows
//! strings only.

/// The only link schemes kept: web pages and mail. Everything else (`javascript:`, `data:`,
/// `vbscript:`, `file:`, relative links whose meaning depends on where the Markdown is shown)
/// is dropped, keeping the link's text.
pub const ALLOWED_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// The link target as it is kept and written: surrounding whitespace and the tabs and line
/// breaks browsers ignore inside URLs removed; `None` unless its scheme is one of
/// [`ALLOWED_SCHEMES`].
pub fn allowed_link(href: &str) -> Option<String> {
    let href: String = href
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (scheme, _) = href.split_once(':')?;
    let well_formed = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (well_formed
        && ALLOWED_SCHEMES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme)))
    .then_some(href)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_and_mail_links_are_kept() {
        assert_eq!(
            allowed_link("https://example.com/a"),
            Some("https://example.com/a".to_owned())
        );
        assert_eq!(
            allowed_link(" HTTP://example.com "),
            Some("HTTP://example.com".to_owned())
        );
        assert_eq!(
            allowed_link("mailto:oncall@example.com"),
            Some("mailto:oncall@example.com".to_owned())
        );
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "file:///etc/passwd",
            "/relative",
            "javascript&#58;alert(1)",
            "",
        ] {
            assert_eq!(allowed_link(bad), None, "{bad:?}");
        }
    }
}
