//! Bold, italic and strike as Markdown delimiter spans: how the writer nests them over runs of
//! text ([`nest`]), and where a span's delimiter run can stand ([`shrink`], rule 5 of
//! [`super::model::normalize`]). One nesting for both, so that the rule judges exactly the
//! spans that are written.
//!
//! CommonMark opens a run only if it is left-flanking and closes it only if right-flanking:
//! not next to whitespace on the inside, and, with punctuation on the inside, only with
//! whitespace or punctuation on the outside. The check here is that rule, a little stricter
//! where the exact source characters depend on the writer's escaping.

use super::model::{Char, Delimited, Marks};

/// How the writer nests delimiter spans over runs of text (one link, one line): at each run,
/// the open spans its marks no longer have close — with every span opened inside them, which
/// reopen — and the marks it adds open, the longest-lasting first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A span of the mark opens.
    Open(Delimited),
    /// The innermost open span, of this mark, closes.
    Close(Delimited),
    /// The run with this index.
    Run(usize),
}

/// The steps of [`Step`] for runs with these marks.
pub fn nest(runs: &[&Marks]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut open: Vec<Delimited> = Vec::new();
    for (k, marks) in runs.iter().enumerate() {
        if let Some(p) = open.iter().position(|m| !m.on(marks)) {
            for m in open.drain(p..).rev() {
                out.push(Step::Close(m));
            }
        }
        let mut needed: Vec<Delimited> = Delimited::ALL
            .into_iter()
            .filter(|m| m.on(marks) && !open.contains(m))
            .collect();
        needed.sort_by_key(|m| std::cmp::Reverse(runs[k..].iter().take_while(|r| m.on(r)).count()));
        for m in needed {
            out.push(Step::Open(m));
            open.push(m);
        }
        out.push(Step::Run(k));
    }
    for m in open.into_iter().rev() {
        out.push(Step::Close(m));
    }
    out
}

/// Rule 5, once over a line: every span as [`nest`] writes it, in each stretch of one link,
/// loses its mark on a first or last character where a delimiter run could not open or close.
pub fn shrink(chars: &mut [Char]) {
    let mut g = 0;
    while g < chars.len() {
        let mut g_end = g;
        while g_end < chars.len() && chars[g_end].1.link == chars[g].1.link {
            g_end += 1;
        }
        shrink_group(&mut chars[g..g_end]);
        g = g_end;
    }
}

fn shrink_group(chars: &mut [Char]) {
    // Runs: maximal stretches of the same marks, as (first, end) character indices.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in 0..chars.len() {
        match runs.last_mut() {
            Some((_, end)) if chars[*end - 1].1 == chars[i].1 => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    let marks: Vec<&Marks> = runs.iter().map(|(a, _)| &chars[*a].1).collect();
    let steps = nest(&marks);
    // Each open span: its mark, its first character, and whether a span nested in it opens
    // at that character (then a delimiter, punctuation, is its inner edge).
    let mut open: Vec<(Delimited, Option<usize>, bool)> = Vec::new();
    // Each span: mark, first and last character, whether nested spans sit at either edge.
    let mut spans: Vec<(Delimited, usize, usize, bool, bool)> = Vec::new();
    let mut last = 0;
    let mut just_closed = false;
    for step in steps {
        match step {
            Step::Open(m) => {
                for span in open.iter_mut().filter(|s| s.1.is_none()) {
                    span.2 = true;
                }
                open.push((m, None, false));
            }
            Step::Run(k) => {
                let (a, b) = runs[k];
                for span in open.iter_mut() {
                    span.1.get_or_insert(a);
                }
                last = b - 1;
                just_closed = false;
            }
            Step::Close(m) => {
                if let Some((_, Some(first), nested_open)) = open.pop() {
                    spans.push((m, first, last, nested_open, just_closed));
                }
                just_closed = true;
            }
        }
    }
    // Each edge moves inwards past every character it cannot stand on, in one go, so that a
    // long run of punctuation costs one pass, not one pass per character.
    let mut failed: Vec<(Delimited, usize)> = Vec::new();
    for (m, first, last, nested_open, nested_close) in spans {
        let mut lo = first;
        while lo <= last
            && edge_fails(
                &chars[lo],
                nested_open && lo == first,
                lo.checked_sub(1).map(|j| &chars[j]),
            )
        {
            failed.push((m, lo));
            lo += 1;
        }
        let mut hi = last;
        while hi >= lo && edge_fails(&chars[hi], nested_close && hi == last, chars.get(hi + 1)) {
            failed.push((m, hi));
            if hi == lo {
                break;
            }
            hi -= 1;
        }
    }
    for (m, at) in failed {
        m.set(&mut chars[at].1, false);
    }
}

/// Whether a delimiter run cannot stand between `inside` (the span's edge character; behind
/// another span's delimiter when `nested`) and `outside` (the character beyond, if any).
fn edge_fails(inside: &Char, nested: bool, outside: Option<&Char>) -> bool {
    if inside.0.is_whitespace() {
        return true;
    }
    let inner_word = inside.0.is_alphanumeric() && !inside.1.code && !nested;
    // A link's bracket or a code span's backtick stands between: punctuation.
    let outer_word = outside.is_some_and(|o| {
        o.1.link == inside.1.link
            && !o.1.code
            && !o.0.is_whitespace()
            && !o.0.is_ascii_punctuation()
    });
    outer_word && !inner_word
}
