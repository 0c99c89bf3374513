//! How user-written text and links are written into Markdown, so that what people wrote renders
//! as the literal text they wrote and never as markup, HTML or a script link (issue 16).
//!
//! Exports, versions and the public library are Markdown that others render: a comment body
//! `<script>…</script>` or `[x](javascript:…)` must show as those characters. Text gets a
//! backslash before every character that can open inline syntax (CommonMark renders an escaped
//! ASCII punctuation character as itself), and lines that could open a block get their first
//! marker escaped. Links keep only the schemes [`ALLOWED_SCHEMES`], on import and on export.
//!
//! This module knows strings only; `markdown.rs` and `export.rs` decide where each applies.

/// The only link schemes kept: web pages and mail. Everything else (`javascript:`, `data:`,
/// `vbscript:`, `file:`, relative links whose meaning depends on where the Markdown is shown)
/// is dropped, keeping the link's text.
pub const ALLOWED_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// Text inside a line: a backslash before each character that could start emphasis, code,
/// a link or image, strikethrough, raw HTML or an autolink, or an entity reference.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '~' | '&') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A line (already escaped with [`inline`], marks written) that will start a block line: a
/// backslash before a first character that would make it a heading, quote, list item, thematic
/// break, setext underline or table delimiter row, and before the `.` or `)` of an ordered-list
/// number.
pub fn line_start(line: &str) -> String {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        // Four spaces make a code block at a block start and plain text in a continuation line:
        // nothing opens there.
        return line.to_owned();
    }
    let (head, rest) = line.split_at(indent);
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let at = if digits > 0 {
        // `1.` or `1)` followed by a space or the line's end opens an ordered list (numbers up
        // to nine digits).
        let mut after = rest[digits..].chars();
        match (after.next(), after.next()) {
            (Some('.' | ')'), None | Some(' ' | '\t')) if digits <= 9 => Some(digits),
            _ => None,
        }
    } else {
        match rest.chars().next() {
            // `*`, `_`, `~`, `` ` ``, `<` and `[` of the text are escaped by [`inline`]; at a
            // line start they are the marks' own syntax.
            Some('#' | '>' | '-' | '+' | '=' | '|' | ':') => Some(0),
            _ => None,
        }
    };
    match at {
        Some(i) => format!("{head}{}\\{}", &rest[..i], &rest[i..]),
        None => line.to_owned(),
    }
}

/// Every line of `text` through [`line_start`].
pub fn line_starts(text: &str) -> String {
    text.split('\n')
        .map(line_start)
        .collect::<Vec<_>>()
        .join("\n")
}

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

/// An allowed link target as a Markdown link destination: characters that would end it or
/// change how it reads percent-encoded, `&` and `\` escaped so no entity or escape is decoded.
pub fn destination(href: &str) -> String {
    let mut out = String::with_capacity(href.len());
    for c in href.chars() {
        match c {
            '&' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '(' | ')' | '<' | '>' | '"' | '\'' | '`' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// How many backticks a code span or fence needs around `text`: one more than its longest
/// run, at least `min`.
pub fn fence_len(text: &str, min: usize) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    (longest + 1).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_text_is_escaped() {
        assert_eq!(
            inline("<script>alert(1)</script>"),
            "\\<script>alert(1)\\</script>"
        );
        assert_eq!(
            inline("[x](javascript:alert(1))"),
            "\\[x\\](javascript:alert(1))"
        );
        assert_eq!(inline("a & b &amp; c"), "a \\& b \\&amp; c");
        assert_eq!(inline("*a* _b_ `c` ~d~"), "\\*a\\* \\_b\\_ \\`c\\` \\~d\\~");
        assert_eq!(inline("plain, text: 1.5?"), "plain, text: 1.5?");
    }

    #[test]
    fn block_openers_are_escaped_at_line_starts() {
        for (line, want) in [
            ("# h", "\\# h"),
            ("> q", "\\> q"),
            ("- l", "\\- l"),
            ("+ l", "\\+ l"),
            ("===", "\\==="),
            ("|a|", "\\|a|"),
            (":--", "\\:--"),
            ("1. one", "1\\. one"),
            ("12) twelve", "12\\) twelve"),
            ("  # indented", "  \\# indented"),
            ("2026 was", "2026 was"),
            ("1.5 hours", "1.5 hours"),
            ("1.", "1\\."),
            ("    # code", "    # code"),
            ("plain", "plain"),
            ("", ""),
        ] {
            assert_eq!(line_start(line), want, "{line:?}");
        }
        assert_eq!(line_starts("a\\\n# b"), "a\\\n\\# b");
    }

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

    #[test]
    fn destinations_cannot_break_out() {
        assert_eq!(
            destination("https://x.example/a b(c)<d>\"e\"&f\\g"),
            "https://x.example/a%20b%28c%29%3Cd%3E%22e%22\\&f\\\\g"
        );
        assert_eq!(
            destination("https://x.example/?q=1&r=2"),
            "https://x.example/?q=1\\&r=2"
        );
    }

    #[test]
    fn fences_outgrow_the_text() {
        assert_eq!(fence_len("a", 1), 1);
        assert_eq!(fence_len("a`b", 1), 2);
        assert_eq!(fence_len("``", 1), 3);
        assert_eq!(fence_len("x\n```\ny", 3), 4);
        assert_eq!(fence_len("plain", 3), 3);
    }
}
