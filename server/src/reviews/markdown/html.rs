//! A published review's Markdown as HTML for the library page (issue 17): the page shows a
//! formatted review, not Markdown source.
//!
//! The Markdown comes from the export, which escapes everything people wrote; this renders it
//! defensively all the same, because a library page is public: raw HTML in the source is shown
//! as text, links keep only the targets [`super::links`] allows (others keep their text) and
//! images become links to them, so that opening the page loads nothing from elsewhere.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use super::links::allowed_link;
use super::write::DIALECT;

/// `markdown` as HTML, safe to put into a page as is.
pub fn html(markdown: &str) -> String {
    // Per open link or image: whether its start was kept (so its end is too).
    let mut open: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, DIALECT).filter_map(|e| match e {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let kept = allowed_link(&dest_url);
            open.push(kept.is_some());
            kept.map(|href| {
                Event::Start(Tag::Link {
                    link_type,
                    dest_url: href.into(),
                    title,
                    id,
                })
            })
        }
        Event::End(TagEnd::Link | TagEnd::Image) => open
            .pop()
            .unwrap_or(false)
            .then_some(Event::End(TagEnd::Link)),
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_html_without_anything_active() {
        assert_eq!(
            html("## Impact\n\nWe **lost** _writes_.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"),
            "<h2>Impact</h2>\n<p>We <strong>lost</strong> <em>writes</em>.</p>\n<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody>\n<tr><td>1</td><td>2</td></tr>\n</tbody></table>\n"
        );
        assert_eq!(
            html("<script>alert(1)</script>\n\nx <img src=x onerror=alert(1)> [run](javascript:alert(1)) [doc](https://example.com/a \"t\") ![pic](https://example.com/p.png)"),
            "&lt;script&gt;alert(1)&lt;/script&gt;\n<p>x &lt;img src=x onerror=alert(1)&gt; run <a href=\"https://example.com/a\" title=\"t\">doc</a> <a href=\"https://example.com/p.png\">pic</a></p>\n"
        );
    }
}
