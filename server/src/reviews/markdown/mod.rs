//! Markdown ↔ the ProseMirror documents of a review (`docs/schema.md`), on the server.
//!
//! Export reads the shared `Y.XmlFragment` into a plain model ([`read`]), brings it to the form
//! Markdown can carry ([`model::normalize`]) and writes it with the one Markdown writer
//! ([`write`], pulldown-cmark-to-cmark). Import ([`import()`]) parses CommonMark with
//! pulldown-cmark and builds the same nodes. `import(to_markdown(doc))` is `normalize(doc)`:
//! the round-trip property test (`proptests.rs`) holds every node and mark of the schema to it.
//!
//! Links keep only `http`, `https` and `mailto` targets, on import and on export ([`links`],
//! issue 16); everything people wrote is escaped by the writer so that it renders as itself.

pub mod html;
pub mod import;
pub mod links;
pub mod model;
pub mod read;
pub mod spans;
pub mod write;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use pulldown_cmark::Event;
use yrs::Doc;

pub use import::{import, ImportError};

/// Deepest nesting read or built; a damaged or hostile document cannot recurse further.
pub const MAX_DEPTH: usize = 32;

/// The document's fragment as Markdown. A report seeded before issue 17 holds each template
/// section's guidance as text; a paragraph that is exactly its section's guidance was never
/// written by anyone and is left out.
pub fn to_markdown(doc: &Doc) -> String {
    let blocks = without_guidance(model::normalize(&read::document(doc)));
    written(&write::document(&blocks))
}

/// `blocks` without a paragraph that follows a template section's level-2 heading and says
/// exactly that section's guidance (ignoring its marks).
fn without_guidance(blocks: Vec<model::Block>) -> Vec<model::Block> {
    use debrief_proto::schema::TEMPLATE;
    use model::{Block, Inline};
    let plain = |content: &[Inline]| -> String {
        content
            .iter()
            .map(|i| match i {
                Inline::Text(t, _) => t.as_str(),
                Inline::HardBreak => "\n",
            })
            .collect()
    };
    let mut section: Option<&'static str> = None;
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let guidance = section.take();
        match &block {
            Block::Heading(2, content) => {
                let title = plain(content);
                section = TEMPLATE
                    .iter()
                    .find(|s| s.title == title.trim())
                    .map(|s| s.help);
            }
            Block::Paragraph(content) if guidance == Some(plain(content).trim()) => continue,
            _ => {}
        }
        out.push(block);
    }
    out
}

/// Events as Markdown through the writer. The writer refuses only events no Markdown spells;
/// the normal form never gives it those (the property test says so), so this is a safety net:
/// once without bold, italic and strike, then nothing rather than anything unescaped. Logged
/// without content.
pub fn written(events: &[Event<'_>]) -> String {
    match write::text(events) {
        Ok(md) => md,
        Err(e) => {
            tracing::warn!(error = %e, "markdown writer refused a document; writing it without emphasis");
            let plain: Vec<Event<'_>> = events
                .iter()
                .filter(|e| !is_delimiter(e))
                .cloned()
                .collect();
            write::text(&plain).unwrap_or_else(|e| {
                tracing::error!(error = %e, "markdown writer refused a document");
                String::new()
            })
        }
    }
}

fn is_delimiter(e: &Event<'_>) -> bool {
    use pulldown_cmark::{Tag, TagEnd};
    matches!(
        e,
        Event::Start(Tag::Strong | Tag::Emphasis | Tag::Strikethrough)
            | Event::End(TagEnd::Strong | TagEnd::Emphasis | TagEnd::Strikethrough)
    )
}
