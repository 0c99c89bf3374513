//! Markdown ↔ the ProseMirror documents of a review (`docs/schema.md`), on the server: export
//! walks the shared `Y.XmlFragment` (nodes, marks as text attributes) and writes CommonMark;
//! import parses CommonMark (pulldown-cmark) and builds the same nodes, so that Markdown →
//! review → Markdown keeps headings, paragraphs, nested lists, block quotes, code blocks, rules,
//! marks and links.
//!
//! Tables are GFM tables: a first row of header cells, then body rows; a cell holds inline text.
//!
//! What people wrote is written so that it renders as itself ([`super::mdtext`]), and links keep
//! only `http`, `https` and `mailto` targets, on import and on export (issue 16).

use std::collections::HashMap;
use std::sync::Arc;

use super::mdtext;
use debrief_proto::schema::{attr, mark, node, FRAGMENT};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use yrs::types::text::{Diff, YChange};
use yrs::types::xml::{
    XmlElementPrelim, XmlElementRef, XmlFragment, XmlOut, XmlTextPrelim, XmlTextRef,
};
use yrs::types::Attrs;
use yrs::{Any, Doc, GetString, Out, ReadTxn, Text, Transact, TransactionMut, Xml};

/// Deepest nesting rendered or built; a damaged or hostile document cannot recurse further.
const MAX_DEPTH: usize = 32;

/// The document's fragment as Markdown.
pub fn to_markdown(doc: &Doc) -> String {
    let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
    let txn = doc.transact();
    let mut out = String::new();
    let children: Vec<XmlOut> = fragment.children(&txn).collect();
    blocks(&txn, &children, &mut out, 0);
    let trimmed = out.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}\n")
    }
}

fn blocks<T: ReadTxn>(txn: &T, nodes: &[XmlOut], out: &mut String, depth: usize) {
    for n in nodes {
        block(txn, n, out, depth);
    }
}

fn tag_of(e: &XmlElementRef) -> String {
    e.tag().to_string()
}

fn block<T: ReadTxn>(txn: &T, n: &XmlOut, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let XmlOut::Element(e) = n else {
        if let XmlOut::Text(t) = n {
            out.push_str(&inline_text(txn, t));
            out.push_str("\n\n");
        }
        return;
    };
    let children: Vec<XmlOut> = e.children(txn).collect();
    match tag_of(e).as_str() {
        node::HEADING => {
            let level = match e.get_attribute(txn, attr::LEVEL) {
                Some(Out::Any(Any::Number(yrs::any::Number::Int(n)))) => n as usize,
                Some(Out::Any(Any::Number(yrs::any::Number::Float(n)))) => n as usize,
                Some(Out::Any(Any::String(s))) => s.parse().unwrap_or(2),
                _ => 2,
            }
            .clamp(1, 6);
            out.push_str(&"#".repeat(level));
            out.push(' ');
            // After a hard break the heading's next line must not open a block either.
            let text = inline(txn, &children, depth);
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            out.push_str(first);
            if !rest.is_empty() {
                out.push('\n');
                out.push_str(&mdtext::line_starts(rest));
            }
            out.push_str("\n\n");
        }
        node::PARAGRAPH => {
            // No line of a paragraph (a hard break starts one) may read as a heading, quote,
            // list item or any other block.
            out.push_str(&mdtext::line_starts(&inline(txn, &children, depth)));
            out.push_str("\n\n");
        }
        node::BULLET_LIST | node::ORDERED_LIST => {
            let ordered = tag_of(e) == node::ORDERED_LIST;
            for (i, item) in children.iter().enumerate() {
                let marker = if ordered {
                    format!("{}. ", i + 1)
                } else {
                    "- ".to_owned()
                };
                let mut inner = String::new();
                if let XmlOut::Element(li) = item {
                    let parts: Vec<XmlOut> = li.children(txn).collect();
                    blocks(txn, &parts, &mut inner, depth + 1);
                }
                let inner = inner.trim_end();
                let pad = " ".repeat(marker.len());
                // Lists are written tight: the blocks of an item follow each other line by line.
                for (j, line) in inner.lines().filter(|l| !l.is_empty()).enumerate() {
                    out.push_str(if j == 0 { &marker } else { &pad });
                    out.push_str(line);
                    out.push('\n');
                }
                if inner.is_empty() {
                    out.push_str(marker.trim_end());
                    out.push('\n');
                }
            }
            out.push('\n');
        }
        node::CODE_BLOCK => {
            // The info string is a language name; anything else could end the fence line.
            let language: String = match e.get_attribute(txn, attr::LANGUAGE) {
                Some(Out::Any(Any::String(s))) => s
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '#'))
                    .collect(),
                _ => String::new(),
            };
            let text: String = children
                .iter()
                .map(|c| match c {
                    XmlOut::Text(t) => t.get_string(txn),
                    _ => String::new(),
                })
                .collect();
            let fence = "`".repeat(mdtext::fence_len(&text, 3));
            out.push_str(&format!("{fence}{language}\n{text}\n{fence}\n\n"));
        }
        node::BLOCKQUOTE => {
            let mut inner = String::new();
            blocks(txn, &children, &mut inner, depth + 1);
            for line in inner.trim_end().lines() {
                out.push('>');
                if !line.is_empty() {
                    out.push(' ');
                    out.push_str(line);
                }
                out.push('\n');
            }
            out.push('\n');
        }
        node::HORIZONTAL_RULE => out.push_str("---\n\n"),
        node::TABLE => {
            let mut rows: Vec<Vec<String>> = Vec::new();
            for row in &children {
                let XmlOut::Element(r) = row else { continue };
                let cells = r
                    .children(txn)
                    .map(|c| match c {
                        XmlOut::Element(cell) => {
                            let parts: Vec<XmlOut> = cell.children(txn).collect();
                            let mut text = String::new();
                            for p in &parts {
                                if let XmlOut::Element(pe) = p {
                                    let inner: Vec<XmlOut> = pe.children(txn).collect();
                                    if !text.is_empty() {
                                        text.push(' ');
                                    }
                                    text.push_str(&inline(txn, &inner, depth + 2));
                                }
                            }
                            text.replace('|', "\\|").replace('\n', " ")
                        }
                        _ => String::new(),
                    })
                    .collect();
                rows.push(cells);
            }
            let width = rows.iter().map(Vec::len).max().unwrap_or(0);
            if width > 0 {
                for (i, row) in rows.iter().enumerate() {
                    let mut cells = row.clone();
                    cells.resize(width, String::new());
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                    if i == 0 {
                        out.push_str(&format!("|{}\n", "---|".repeat(width)));
                    }
                }
                out.push('\n');
            }
        }
        _ => {
            // An unknown node keeps its text.
            blocks(txn, &children, out, depth + 1);
        }
    }
}

fn inline<T: ReadTxn>(txn: &T, nodes: &[XmlOut], depth: usize) -> String {
    let mut s = String::new();
    if depth > MAX_DEPTH {
        return s;
    }
    for n in nodes {
        match n {
            XmlOut::Text(t) => s.push_str(&inline_text(txn, t)),
            XmlOut::Element(e) if tag_of(e) == node::HARD_BREAK => s.push_str("\\\n"),
            XmlOut::Element(e) => {
                let children: Vec<XmlOut> = e.children(txn).collect();
                s.push_str(&inline(txn, &children, depth + 1));
            }
            XmlOut::Fragment(_) => {}
        }
    }
    s
}

fn inline_text<T: ReadTxn>(txn: &T, t: &XmlTextRef) -> String {
    let mut s = String::new();
    for chunk in t.diff(txn, YChange::identity) {
        let Diff {
            insert, attributes, ..
        } = chunk;
        let Out::Any(Any::String(text)) = insert else {
            continue;
        };
        let attrs = attributes.map(|a| *a).unwrap_or_default();
        s.push_str(&marked(&text, &attrs));
    }
    s
}

/// Text with its marks as Markdown; code spans are literal, everything else is escaped.
fn marked(text: &str, attrs: &Attrs) -> String {
    let has = |m: &str| attrs.contains_key(m);
    if text.is_empty() {
        return String::new();
    }
    let mut s = if has(mark::CODE) {
        let ticks = "`".repeat(mdtext::fence_len(text, 1));
        // A code span drops one space at each end when both are there, and a backtick at an
        // end would join the fence: pad with a space in both cases.
        let spaced = text.starts_with(' ') && text.ends_with(' ') && !text.trim().is_empty();
        let pad = if text.starts_with('`') || text.ends_with('`') || spaced {
            " "
        } else {
            ""
        };
        format!("{ticks}{pad}{text}{pad}{ticks}")
    } else {
        mdtext::inline(text)
    };
    if s.trim().is_empty() {
        return s;
    }
    // Markdown emphasis cannot start or end with a space: keep it outside the markers.
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    let (head, rest) = s.split_at(lead);
    let (core, tail) = rest.split_at(rest.len() - trail);
    let mut core = core.to_owned();
    if core.is_empty() {
        return s;
    }
    if has(mark::STRIKE) {
        core = format!("~~{core}~~");
    }
    if has(mark::ITALIC) {
        core = format!("_{core}_");
    }
    if has(mark::BOLD) {
        core = format!("**{core}**");
    }
    if let Some(Any::Map(link)) = attrs.get(mark::LINK) {
        // A link to any other scheme (written by a client) keeps its text only.
        if let Some(href) = match link.get(attr::HREF) {
            Some(Any::String(href)) => mdtext::allowed_link(href),
            _ => None,
        } {
            core = format!("[{core}]({})", mdtext::destination(&href));
        }
    }
    s = format!("{head}{core}{tail}");
    s
}

/// Why Markdown could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Replaces the (empty) fragment of `doc` with the Markdown document; returns the update.
pub fn import(doc: &Doc, markdown: &str) -> Result<Vec<u8>, ImportError> {
    let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
    let mut txn = doc.transact_mut();
    let mut b = Builder {
        stack: Vec::new(),
        text: None,
        marks: HashMap::new(),
        code: None,
        in_head: false,
    };
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    for event in Parser::new_ext(markdown, options) {
        b.event(&mut txn, &fragment, event)?;
    }
    Ok(txn.encode_update_v1())
}

struct Builder {
    /// Open block elements, innermost last; empty means the fragment.
    stack: Vec<XmlElementRef>,
    /// The text node inline content is appended to.
    text: Option<XmlTextRef>,
    /// Marks in force.
    marks: HashMap<&'static str, Any>,
    /// Inside a code block: its text so far.
    code: Option<String>,
    /// Inside a table head: cells are header cells.
    in_head: bool,
}

impl Builder {
    fn open(
        &mut self,
        txn: &mut TransactionMut,
        fragment: &yrs::XmlFragmentRef,
        tag: &str,
    ) -> Result<XmlElementRef, ImportError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ImportError::TooDeep);
        }
        // A block never opens inside a paragraph: close the implicit one of a tight list item.
        if tag != node::HARD_BREAK {
            self.close_inline_block();
        }
        let el = match self.stack.last() {
            Some(parent) => parent.push_back(txn, XmlElementPrelim::empty(tag)),
            None => fragment.push_back(txn, XmlElementPrelim::empty(tag)),
        };
        self.stack.push(el.clone());
        self.text = None;
        Ok(el)
    }

    fn close(&mut self) {
        self.stack.pop();
        self.text = None;
    }

    /// The element inline content goes into: the open paragraph or heading, or a new paragraph
    /// (a tight list item holds text directly in Markdown, a paragraph in ProseMirror).
    fn inline_parent(
        &mut self,
        txn: &mut TransactionMut,
        fragment: &yrs::XmlFragmentRef,
    ) -> Result<XmlElementRef, ImportError> {
        match self.stack.last() {
            Some(e) if [node::PARAGRAPH, node::HEADING].contains(&e.tag().as_ref()) => {
                Ok(e.clone())
            }
            _ => self.open(txn, fragment, node::PARAGRAPH),
        }
    }

    fn push_text(
        &mut self,
        txn: &mut TransactionMut,
        fragment: &yrs::XmlFragmentRef,
        text: &str,
        extra: Option<(&'static str, Any)>,
    ) -> Result<(), ImportError> {
        if let Some(code) = &mut self.code {
            code.push_str(text);
            return Ok(());
        }
        let parent = self.inline_parent(txn, fragment)?;
        let t = match &self.text {
            Some(t) => t.clone(),
            None => {
                let t = parent.push_back(txn, XmlTextPrelim::new(""));
                self.text = Some(t.clone());
                t
            }
        };
        let mut attrs: Attrs = self
            .marks
            .iter()
            .map(|(k, v)| (Arc::from(*k), v.clone()))
            .collect();
        if let Some((k, v)) = extra {
            attrs.insert(Arc::from(k), v);
        }
        let at = t.len(txn);
        t.insert_with_attributes(txn, at, text, attrs);
        Ok(())
    }

    fn event(
        &mut self,
        txn: &mut TransactionMut,
        fragment: &yrs::XmlFragmentRef,
        event: Event<'_>,
    ) -> Result<(), ImportError> {
        let empty = || Any::Map(Arc::new(HashMap::new()));
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph | Tag::HtmlBlock => {
                    self.open(txn, fragment, node::PARAGRAPH)?;
                }
                Tag::Heading { level, .. } => {
                    let h = self.open(txn, fragment, node::HEADING)?;
                    let n = match level {
                        HeadingLevel::H1 => 1,
                        HeadingLevel::H2 => 2,
                        HeadingLevel::H3 => 3,
                        HeadingLevel::H4 => 4,
                        HeadingLevel::H5 => 5,
                        HeadingLevel::H6 => 6,
                    };
                    h.insert_attribute(txn, attr::LEVEL, Any::from(n as i64));
                }
                Tag::BlockQuote(_) => {
                    self.open(txn, fragment, node::BLOCKQUOTE)?;
                }
                Tag::CodeBlock(kind) => {
                    let el = self.open(txn, fragment, node::CODE_BLOCK)?;
                    if let CodeBlockKind::Fenced(lang) = kind {
                        let lang = lang.split_whitespace().next().unwrap_or("");
                        if !lang.is_empty() {
                            el.insert_attribute(txn, attr::LANGUAGE, Any::from(lang));
                        }
                    }
                    self.code = Some(String::new());
                }
                Tag::List(start) => {
                    let tag = if start.is_some() {
                        node::ORDERED_LIST
                    } else {
                        node::BULLET_LIST
                    };
                    self.open(txn, fragment, tag)?;
                }
                Tag::Item => {
                    self.open(txn, fragment, node::LIST_ITEM)?;
                }
                Tag::Emphasis => {
                    self.marks.insert(mark::ITALIC, empty());
                }
                Tag::Strong => {
                    self.marks.insert(mark::BOLD, empty());
                }
                Tag::Strikethrough => {
                    self.marks.insert(mark::STRIKE, empty());
                }
                Tag::Link { dest_url, .. } => {
                    // Other schemes (`javascript:`, `data:`, …) import as plain text.
                    if let Some(href) = mdtext::allowed_link(&dest_url) {
                        let link = HashMap::from([(attr::HREF.to_owned(), Any::from(href))]);
                        self.marks.insert(mark::LINK, Any::Map(Arc::new(link)));
                    }
                }
                Tag::Table(_) => {
                    self.open(txn, fragment, node::TABLE)?;
                }
                Tag::TableHead => {
                    self.in_head = true;
                    self.open(txn, fragment, node::TABLE_ROW)?;
                }
                Tag::TableRow => {
                    self.open(txn, fragment, node::TABLE_ROW)?;
                }
                Tag::TableCell => {
                    let tag = if self.in_head {
                        node::TABLE_HEADER
                    } else {
                        node::TABLE_CELL
                    };
                    self.open(txn, fragment, tag)?;
                    self.open(txn, fragment, node::PARAGRAPH)?;
                }
                _ => {}
            },
            Event::End(end) => match end {
                TagEnd::Paragraph | TagEnd::HtmlBlock => self.close_inline_block(),
                TagEnd::Heading(_) => self.close_inline_block(),
                TagEnd::BlockQuote(_) | TagEnd::List(_) | TagEnd::Item => {
                    self.close_inline_block();
                    self.close();
                }
                TagEnd::CodeBlock => {
                    let code = self.code.take().unwrap_or_default();
                    let code = code.strip_suffix('\n').unwrap_or(&code);
                    if let Some(el) = self.stack.last() {
                        if !code.is_empty() {
                            el.push_back(txn, XmlTextPrelim::new(code));
                        }
                    }
                    self.close();
                }
                TagEnd::Emphasis => {
                    self.marks.remove(mark::ITALIC);
                }
                TagEnd::Strong => {
                    self.marks.remove(mark::BOLD);
                }
                TagEnd::Strikethrough => {
                    self.marks.remove(mark::STRIKE);
                }
                TagEnd::Link => {
                    self.marks.remove(mark::LINK);
                }
                TagEnd::TableCell => {
                    self.close_inline_block();
                    self.close();
                }
                TagEnd::TableHead => {
                    self.in_head = false;
                    self.close();
                }
                TagEnd::TableRow | TagEnd::Table => self.close(),
                _ => {}
            },
            Event::Text(t) => self.push_text(txn, fragment, &t, None)?,
            Event::Code(c) => self.push_text(txn, fragment, &c, Some((mark::CODE, empty())))?,
            Event::SoftBreak => self.push_text(txn, fragment, " ", None)?,
            Event::HardBreak => {
                let parent = self.inline_parent(txn, fragment)?;
                parent.push_back(txn, XmlElementPrelim::empty(node::HARD_BREAK));
                self.text = None;
            }
            Event::Rule => {
                self.open(txn, fragment, node::HORIZONTAL_RULE)?;
                self.close();
            }
            // Raw HTML is kept as the text it is. An HTML block is a paragraph of its lines
            // (each ends with its line break), joined like soft breaks.
            Event::Html(h) => {
                if self.text.is_some() {
                    self.push_text(txn, fragment, " ", None)?;
                }
                self.push_text(txn, fragment, h.trim_end_matches('\n'), None)?;
            }
            Event::InlineHtml(h) => self.push_text(txn, fragment, &h, None)?,
            _ => {}
        }
        Ok(())
    }

    /// Closes the innermost element if it is a paragraph or heading.
    fn close_inline_block(&mut self) {
        if self
            .stack
            .last()
            .is_some_and(|e| [node::PARAGRAPH, node::HEADING].contains(&e.tag().as_ref()))
        {
            self.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(md: &str) -> String {
        let doc = crate::documents::crdt::new_doc();
        import(&doc, md).expect("import");
        to_markdown(&doc)
    }

    #[test]
    fn deep_nesting_is_cut_off_not_a_stack_overflow() {
        use yrs::types::xml::XmlElementPrelim;
        let doc = crate::documents::crdt::new_doc();
        let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
        {
            let mut txn = doc.transact_mut();
            let mut el = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            for _ in 0..20_000 {
                el = el.push_back(&mut txn, XmlElementPrelim::empty("strong"));
            }
        }
        let _ = to_markdown(&doc);
    }

    #[test]
    fn the_template_exports_as_headings_and_paragraphs() {
        let doc = crate::documents::crdt::new_doc();
        super::super::report::seed(&doc, "Outage");
        let md = to_markdown(&doc);
        assert!(
            md.starts_with("# Outage\n\n## Summary\n\nTwo or three sentences"),
            "{md}"
        );
    }

    /// Issue 16: imported Markdown keeps only web and mail links, and raw HTML, entities and
    /// block markers in text come back as the literal text.
    #[test]
    fn hostile_markdown_imports_as_literal_text() {
        let md = "[x](javascript:alert(1)) [d](data:text/html,<b>hi</b>) <javascript:alert(2)> [ok](https://example.com/?a=1&b=2) [m](mailto:oncall@example.com) [r](/relative)\n\n<script>alert(3)</script>\n\n<div>\n<iframe src=\"javascript:alert(4)\">\n</div>\n\n1\\. starts with a number, then an &lt;i&gt;entity&lt;/i&gt;\n";
        let doc = crate::documents::crdt::new_doc();
        import(&doc, md).expect("import");
        let out = to_markdown(&doc);
        assert_eq!(
            out,
            "x d javascript:alert(2) [ok](https://example.com/?a=1\\&b=2) [m](mailto:oncall@example.com) r\n\n\\<script>alert(3)\\</script>\n\n\\<div> \\<iframe src=\"javascript:alert(4)\"> \\</div>\n\n1\\. starts with a number, then an \\<i>entity\\</i>\n"
        );
        assert_eq!(round_trip(&out), out, "the export imports as itself");
    }

    /// Issue 16: what a client wrote into the report is exported as literal text, and a link
    /// mark with another scheme keeps only its text.
    #[test]
    fn client_written_text_and_links_export_as_literal_text() {
        use yrs::types::xml::XmlElementPrelim;
        let doc = crate::documents::crdt::new_doc();
        let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
        {
            let mut txn = doc.transact_mut();
            let link = |href: &str| {
                let target = HashMap::from([(attr::HREF.to_owned(), Any::from(href))]);
                Attrs::from([(Arc::from(mark::LINK), Any::Map(Arc::new(target)))])
            };
            let p = fragment.push_back(&mut txn, XmlElementPrelim::empty(node::PARAGRAPH));
            let t = p.push_back(&mut txn, XmlTextPrelim::new(""));
            t.insert_with_attributes(&mut txn, 0, "run me", link("javascript:alert(1)"));
            t.insert(&mut txn, 6, " <img src=x onerror=alert(1)> ");
            t.insert_with_attributes(&mut txn, 37, "ok", link("https://example.com/a b)"));
            let p = fragment.push_back(&mut txn, XmlElementPrelim::empty(node::PARAGRAPH));
            p.push_back(&mut txn, XmlTextPrelim::new("# not a heading"));
            p.push_back(&mut txn, XmlElementPrelim::empty(node::HARD_BREAK));
            p.push_back(&mut txn, XmlTextPrelim::new("- nor a list, 2. nor this"));
            let code = fragment.push_back(&mut txn, XmlElementPrelim::empty(node::CODE_BLOCK));
            code.insert_attribute(&mut txn, attr::LANGUAGE, Any::from("js\n<b>"));
            code.push_back(&mut txn, XmlTextPrelim::new("a\n```\n<b>x</b>"));
        }
        assert_eq!(
            to_markdown(&doc),
            "run me \\<img src=x onerror=alert(1)> [ok](https://example.com/a%20b%29)\n\n\\# not a heading\\\n\\- nor a list, 2. nor this\n\n````jsb\na\n```\n<b>x</b>\n````\n"
        );
    }

    #[test]
    fn structure_survives_a_round_trip() {
        assert_eq!(round_trip("**a** **b** `c` `d`\n"), "**a** **b** `c` `d`\n");
        let table = "| Time | Event |\n|---|---|\n| 14:05 | Deploy of **v42** |\n| 14:07 | Errors \\| alerts |\n";
        assert_eq!(round_trip(table), table);
        let md = "# Title\n\nSome **bold**, _italic_, `code`, ~~gone~~ and a [link](https://example.com/a).\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n```rust\nfn main() {}\n```\n\n---\n\nLast line\\\nafter a break\n";
        assert_eq!(round_trip(md), md);
        assert_eq!(round_trip(&round_trip(md)), md);
    }
}
