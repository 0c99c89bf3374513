//! Reads a ProseMirror document out of its shared `Y.XmlFragment` into the plain model
//! ([`super::model`]): elements by tag, marks from the text's formatting attributes.
//!
//! What a client wrote outside the schema still reads as something: an unknown element keeps
//! its content, text directly in the fragment is a paragraph. Nesting deeper than
//! [`super::MAX_DEPTH`] is cut off, so a hostile document cannot recurse the server away.

use debrief_proto::schema::{attr, mark, node, FRAGMENT};
use yrs::types::text::{Diff, YChange};
use yrs::types::xml::{XmlElementRef, XmlFragment, XmlOut, XmlTextRef};
use yrs::{Any, Doc, GetString, Out, ReadTxn, Text, Transact, Xml};

use super::model::{Block, Cell, Inline, Marks};
use super::MAX_DEPTH;

/// The document's fragment as blocks.
pub fn document(doc: &Doc) -> Vec<Block> {
    let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
    let txn = doc.transact();
    let children: Vec<XmlOut> = fragment.children(&txn).collect();
    blocks(&txn, &children, 0)
}

fn blocks<T: ReadTxn>(txn: &T, nodes: &[XmlOut], depth: usize) -> Vec<Block> {
    let mut out = Vec::new();
    for n in nodes {
        block(txn, n, depth, &mut out);
    }
    out
}

fn children<T: ReadTxn>(txn: &T, e: &XmlElementRef) -> Vec<XmlOut> {
    e.children(txn).collect()
}

/// A number attribute (as Yjs stores a JavaScript number, or as a string).
fn number<T: ReadTxn>(txn: &T, e: &XmlElementRef, name: &str) -> Option<i64> {
    match e.get_attribute(txn, name) {
        Some(Out::Any(Any::Number(yrs::any::Number::Int(n)))) => Some(n),
        Some(Out::Any(Any::Number(yrs::any::Number::Float(n)))) if n.is_finite() => Some(n as i64),
        Some(Out::Any(Any::String(s))) => s.trim().parse().ok(),
        _ => None,
    }
}

fn block<T: ReadTxn>(txn: &T, n: &XmlOut, depth: usize, out: &mut Vec<Block>) {
    if depth > MAX_DEPTH {
        return;
    }
    let e = match n {
        XmlOut::Element(e) => e,
        XmlOut::Text(t) => {
            out.push(Block::Paragraph(text(txn, t)));
            return;
        }
        XmlOut::Fragment(_) => return,
    };
    let kids = children(txn, e);
    let tag = e.tag().to_string();
    out.push(match tag.as_str() {
        node::HEADING => {
            let level = number(txn, e, attr::LEVEL).unwrap_or(2).clamp(1, 6) as u8;
            Block::Heading(level, inline(txn, &kids, depth))
        }
        node::PARAGRAPH => Block::Paragraph(inline(txn, &kids, depth)),
        node::BULLET_LIST | node::ORDERED_LIST => {
            let start = (tag == node::ORDERED_LIST)
                .then(|| number(txn, e, attr::START).unwrap_or(1).max(0) as u64);
            let items = kids
                .iter()
                .map(|item| match item {
                    XmlOut::Element(li) => blocks(txn, &children(txn, li), depth + 1),
                    other => blocks(txn, std::slice::from_ref(other), depth + 1),
                })
                .collect();
            Block::List(start, items)
        }
        node::CODE_BLOCK => {
            let language = match e.get_attribute(txn, attr::LANGUAGE) {
                Some(Out::Any(Any::String(s))) => Some(s.to_string()),
                _ => None,
            };
            let code: String = kids
                .iter()
                .map(|c| match c {
                    XmlOut::Text(t) => t.get_string(txn),
                    _ => String::new(),
                })
                .collect();
            Block::CodeBlock(language, code)
        }
        node::BLOCKQUOTE => Block::Blockquote(blocks(txn, &kids, depth + 1)),
        node::HORIZONTAL_RULE => Block::Rule,
        node::TABLE => {
            let rows = kids
                .iter()
                .filter_map(|row| match row {
                    XmlOut::Element(r) => Some(
                        children(txn, r)
                            .iter()
                            .map(|c| cell(txn, c, depth + 2))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect();
            Block::Table(rows)
        }
        _ => {
            // An unknown node keeps its content.
            out.extend(blocks(txn, &kids, depth + 1));
            return;
        }
    });
}

/// A cell's paragraphs joined by spaces.
fn cell<T: ReadTxn>(txn: &T, c: &XmlOut, depth: usize) -> Cell {
    let XmlOut::Element(cell) = c else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in children(txn, cell) {
        if let XmlOut::Element(pe) = &p {
            if !out.is_empty() {
                out.push(Inline::Text(" ".to_owned(), Marks::default()));
            }
            out.extend(inline(txn, &children(txn, pe), depth + 1));
        }
    }
    out
}

fn inline<T: ReadTxn>(txn: &T, nodes: &[XmlOut], depth: usize) -> Vec<Inline> {
    let mut out = Vec::new();
    if depth > MAX_DEPTH {
        return out;
    }
    for n in nodes {
        match n {
            XmlOut::Text(t) => out.extend(text(txn, t)),
            XmlOut::Element(e) if e.tag().as_ref() == node::HARD_BREAK => {
                out.push(Inline::HardBreak)
            }
            XmlOut::Element(e) => out.extend(inline(txn, &children(txn, e), depth + 1)),
            XmlOut::Fragment(_) => {}
        }
    }
    out
}

fn text<T: ReadTxn>(txn: &T, t: &XmlTextRef) -> Vec<Inline> {
    let mut out = Vec::new();
    for Diff {
        insert, attributes, ..
    } in t.diff(txn, YChange::identity)
    {
        let Out::Any(Any::String(s)) = insert else {
            continue;
        };
        let attrs = attributes.map(|a| *a).unwrap_or_default();
        let has = |m: &str| attrs.get(m).is_some_and(|v| !matches!(v, Any::Null));
        let link = match attrs.get(mark::LINK) {
            Some(Any::Map(link)) => match link.get(attr::HREF) {
                Some(Any::String(href)) => Some(href.to_string()),
                _ => None,
            },
            _ => None,
        };
        out.push(Inline::Text(
            s.to_string(),
            Marks {
                bold: has(mark::BOLD),
                italic: has(mark::ITALIC),
                strike: has(mark::STRIKE),
                code: has(mark::CODE),
                link,
            },
        ));
    }
    out
}
