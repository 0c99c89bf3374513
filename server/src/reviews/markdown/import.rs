//! Markdown → a review's ProseMirror document: parses CommonMark with GFM tables and
//! strikethrough (pulldown-cmark) and builds the nodes and marks of `docs/schema.md` in the
//! document's `Y.XmlFragment`, with the server's client id (a review created from Markdown).
//!
//! Links keep only web and mail targets ([`super::links`]); raw HTML is kept as the text it is.

use std::collections::HashMap;
use std::sync::Arc;

use debrief_proto::schema::{attr, mark, node, FRAGMENT};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};
use yrs::types::xml::{XmlElementPrelim, XmlElementRef, XmlFragment, XmlTextPrelim, XmlTextRef};
use yrs::types::Attrs;
use yrs::{Any, Doc, Text, Transact, TransactionMut, Xml};

use super::{links, write::DIALECT, MAX_DEPTH};

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
    for event in Parser::new_ext(markdown, DIALECT) {
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
                Tag::List(None) => {
                    self.open(txn, fragment, node::BULLET_LIST)?;
                }
                Tag::List(Some(start)) => {
                    // The first number is kept: `2024. The year…` is a list starting at 2024.
                    let list = self.open(txn, fragment, node::ORDERED_LIST)?;
                    let start = i64::try_from(start).unwrap_or(i64::MAX);
                    list.insert_attribute(txn, attr::START, Any::from(start));
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
                    if let Some(href) = links::allowed_link(&dest_url) {
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
