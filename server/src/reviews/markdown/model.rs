//! A ProseMirror document of a review (`docs/schema.md`) as plain data, and its normal form: what
//! of it Markdown can carry. Export reads the Yjs fragment into this model ([`super::read`]),
//! normalises it and writes it ([`super::write`]); the round-trip property test compares
//! documents in this form.
//!
//! This module knows no yrs and no Markdown syntax; the normalisation rules are listed in
//! `docs/schema.md` ("Markdown: what a round trip keeps") and at [`normalize`].

use super::{links, spans};

/// The marks of a stretch of text. Only a link's `href` counts: other link attributes
/// (TipTap's `target`, `rel`) are presentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Marks {
    /// `bold`.
    pub bold: bool,
    /// `italic`.
    pub italic: bool,
    /// `strike`.
    pub strike: bool,
    /// `code`.
    pub code: bool,
    /// `link`, by target.
    pub link: Option<String>,
}

/// The marks Markdown writes as delimiter runs (`**`, `_`, `~~`), whose edges have rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    /// `bold`.
    Bold,
    /// `italic`.
    Italic,
    /// `strike`.
    Strike,
}

impl Delimited {
    /// Every delimiter mark, in the order spans of equal length nest, outermost first: `***a***`
    /// reads as italic around bold.
    pub const ALL: [Delimited; 3] = [Delimited::Italic, Delimited::Bold, Delimited::Strike];

    /// Whether `marks` holds this mark.
    pub fn on(self, marks: &Marks) -> bool {
        match self {
            Delimited::Bold => marks.bold,
            Delimited::Italic => marks.italic,
            Delimited::Strike => marks.strike,
        }
    }

    pub(super) fn set(self, marks: &mut Marks, on: bool) {
        match self {
            Delimited::Bold => marks.bold = on,
            Delimited::Italic => marks.italic = on,
            Delimited::Strike => marks.strike = on,
        }
    }
}

/// Inline content of a paragraph, heading or table cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inline {
    /// Text with its marks.
    Text(String, Marks),
    /// A `hardBreak`.
    HardBreak,
}

/// One item of a list: its blocks.
pub type Item = Vec<Block>;

/// One table cell: a line of inline content (a cell's paragraphs joined by spaces).
pub type Cell = Vec<Inline>;

/// A block node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// `heading`, level 1–6.
    Heading(u8, Vec<Inline>),
    /// `paragraph`.
    Paragraph(Vec<Inline>),
    /// `bulletList` (`None`) or `orderedList` with its first number.
    List(Option<u64>, Vec<Item>),
    /// `codeBlock`: language and text.
    CodeBlock(Option<String>, String),
    /// `blockquote`.
    Blockquote(Vec<Block>),
    /// `horizontalRule`.
    Rule,
    /// `table`: rows of cells, the first row the header.
    Table(Vec<Vec<Cell>>),
}

/// The largest first number of an ordered list Markdown reads (nine digits).
pub const MAX_LIST_START: u64 = 999_999_999;

/// A bound on normalisation passes over a line, per character: each pass that changes
/// anything takes at least one mark off a character or removes one.
const PASSES_PER_CHAR: usize = 4;

/// The document in the form Markdown can carry, so that `import(export(doc))` gives back
/// exactly `normalize(doc)`. The rules, numbered as in `docs/schema.md` ("Markdown: what a
/// round trip keeps"):
///
/// 1. Adjacent text with the same marks is one text, empty text is nothing, NUL is U+FFFD;
///    links keep only web and mail targets ([`links::allowed_link`]), others lose the mark.
/// 2. Text holds no line-break characters: they are spaces.
/// 3. Headings and table cells are one line: a hard break there is a space; a cell does not
///    end in a backslash outside a code span.
/// 4. Lines (split at hard breaks) do not start or end with spaces or tabs outside code spans
///    and links; hard breaks never start or end a paragraph, and never follow each other.
/// 5. Bold, italic and strike, as the spans [`spans::nest`] writes, never start or end with
///    whitespace, and where they touch a letter or digit of the same line and link they start
///    and end on a letter or digit: Markdown's delimiter runs cannot open or close otherwise.
/// 6. Empty paragraphs, block quotes and list items, and lists left without items, are
///    dropped; a list item does not start with a horizontal rule; a code block's language is
///    its first word and its line ends are `\n`; an ordered list starts at most at
///    [`MAX_LIST_START`]; a heading level is 1–6; a table's rows are as wide as the widest.
pub fn normalize(blocks: &[Block]) -> Vec<Block> {
    blocks.iter().filter_map(block).collect()
}

fn block(b: &Block) -> Option<Block> {
    Some(match b {
        Block::Heading(level, content) => Block::Heading((*level).clamp(1, 6), line(content)),
        Block::Paragraph(content) => {
            let content = lines(content);
            if content.is_empty() {
                return None;
            }
            Block::Paragraph(content)
        }
        Block::List(start, items) => {
            let items: Vec<Item> = items
                .iter()
                .map(|item| list_item(item))
                .filter(|item| !item.is_empty())
                .collect();
            if items.is_empty() {
                return None;
            }
            Block::List(start.map(|n| n.min(MAX_LIST_START)), items)
        }
        Block::CodeBlock(language, text) => {
            let language = language
                .as_deref()
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_owned);
            let text = text.replace("\r\n", "\n").replace(['\r'], "\n");
            Block::CodeBlock(language, text.replace('\0', "\u{FFFD}"))
        }
        Block::Blockquote(children) => {
            let children = normalize(children);
            if children.is_empty() {
                return None;
            }
            Block::Blockquote(children)
        }
        Block::Rule => Block::Rule,
        Block::Table(rows) => {
            let width = rows.iter().map(Vec::len).max().unwrap_or(0);
            if width == 0 {
                return None;
            }
            Block::Table(
                rows.iter()
                    .map(|row| {
                        let mut cells: Vec<Cell> = row.iter().map(|c| table_cell(c)).collect();
                        cells.resize(width, Vec::new());
                        cells
                    })
                    .collect(),
            )
        }
    })
}

/// A list item's blocks; a horizontal rule does not start one (rule 6).
fn list_item(blocks: &[Block]) -> Vec<Block> {
    let mut item = normalize(blocks);
    while item.first() == Some(&Block::Rule) {
        item.remove(0);
    }
    item
}

/// A table cell: one line, not ending in a backslash outside a code span (GFM reads `\\|` at
/// a cell's end as an escaped pipe, and the writer has no other spelling).
fn table_cell(content: &[Inline]) -> Cell {
    let mut cell = line(content);
    loop {
        match cell.last_mut() {
            Some(Inline::Text(t, marks)) if !marks.code && t.ends_with('\\') => {
                t.pop();
                cell = line(&cell);
            }
            _ => return cell,
        }
    }
}

/// Inline content of a heading or cell: one line.
fn line(content: &[Inline]) -> Vec<Inline> {
    let spaced: Vec<Inline> = content
        .iter()
        .map(|i| match i {
            Inline::HardBreak => Inline::Text(" ".to_owned(), Marks::default()),
            text => text.clone(),
        })
        .collect();
    lines(&spaced)
}

/// Inline content of a paragraph (rules 1, 2, 4 and 5), repeated until nothing changes.
fn lines(content: &[Inline]) -> Vec<Inline> {
    let mut current = texts(content);
    let chars: usize = current
        .iter()
        .map(|i| match i {
            Inline::Text(t, _) => t.chars().count(),
            Inline::HardBreak => 1,
        })
        .sum();
    for _ in 0..=chars * PASSES_PER_CHAR {
        let next = pass(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// One character of a line with its marks.
pub(super) type Char = (char, Marks);

/// Rules 1 and 2: clean text, allowed links, no line-break characters.
fn texts(content: &[Inline]) -> Vec<Inline> {
    let cleaned = content.iter().map(|i| match i {
        Inline::Text(text, marks) => {
            let mut marks = marks.clone();
            marks.link = marks.link.as_deref().and_then(links::allowed_link);
            let text = text
                .replace('\0', "\u{FFFD}")
                .replace("\r\n", " ")
                .replace(['\n', '\r'], " ");
            Inline::Text(text, marks)
        }
        Inline::HardBreak => Inline::HardBreak,
    });
    merge(cleaned)
}

/// Merges adjacent text with the same marks and drops empty text.
fn merge(content: impl IntoIterator<Item = Inline>) -> Vec<Inline> {
    let mut out: Vec<Inline> = Vec::new();
    for i in content {
        match i {
            Inline::Text(text, _) if text.is_empty() => {}
            Inline::Text(text, marks) => match out.last_mut() {
                Some(Inline::Text(prev, prev_marks)) if *prev_marks == marks => {
                    prev.push_str(&text)
                }
                _ => out.push(Inline::Text(text, marks)),
            },
            Inline::HardBreak => out.push(Inline::HardBreak),
        }
    }
    out
}

/// Rules 4 and 5, once.
fn pass(content: &[Inline]) -> Vec<Inline> {
    // Hard breaks: none first, last or twice in a row.
    let mut broken: Vec<Vec<Char>> = vec![Vec::new()];
    for i in content {
        match i {
            Inline::Text(text, marks) => {
                if let Some(last) = broken.last_mut() {
                    last.extend(text.chars().map(|c| (c, marks.clone())));
                }
            }
            Inline::HardBreak => broken.push(Vec::new()),
        }
    }
    let mut out = Vec::new();
    let mut first = true;
    for mut chars in broken {
        spans::shrink(&mut chars);
        trim(&mut chars);
        if chars.is_empty() {
            continue;
        }
        if !first {
            out.push(Inline::HardBreak);
        }
        first = false;
        out.extend(
            chars
                .into_iter()
                .map(|(c, marks)| Inline::Text(c.to_string(), marks)),
        );
    }
    merge(out)
}

/// Whether the character sits outside code spans and links, where Markdown strips edge
/// whitespace of a line.
fn bare(ch: &Char) -> bool {
    !ch.1.code && ch.1.link.is_none()
}

/// Rule 4: spaces and tabs at the ends of a line, outside code spans and links, go.
fn trim(chars: &mut Vec<Char>) {
    let blank = |ch: &Char| matches!(ch.0, ' ' | '\t') && bare(ch);
    while chars.last().is_some_and(blank) {
        chars.pop();
    }
    let lead = chars.iter().take_while(|ch| blank(ch)).count();
    chars.drain(..lead);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Inline {
        Inline::Text(text.to_owned(), Marks::default())
    }

    fn b(text: &str) -> Inline {
        Inline::Text(
            text.to_owned(),
            Marks {
                bold: true,
                ..Marks::default()
            },
        )
    }

    #[test]
    fn marks_leave_whitespace_and_word_inner_punctuation() {
        assert_eq!(
            normalize(&[Block::Paragraph(vec![t("a"), b(" x. "), t("b")])]),
            [Block::Paragraph(vec![t("a "), b("x."), t(" b")])]
        );
        assert_eq!(
            normalize(&[Block::Paragraph(vec![t("a"), b(".x"), t(" b")])]),
            [Block::Paragraph(vec![t("a."), b("x"), t(" b")])]
        );
        assert_eq!(
            normalize(&[Block::Paragraph(vec![t("("), b(".x."), t(")")])]),
            [Block::Paragraph(vec![t("("), b(".x."), t(")")])]
        );
        assert_eq!(
            normalize(&[Block::Paragraph(vec![t("("), b("."), t("b")])]),
            [Block::Paragraph(vec![t("(.b")])]
        );
        // Only the dots touching the letters lose the mark, and in one pass, however long.
        let dots = ".".repeat(10_000);
        assert_eq!(
            normalize(&[Block::Paragraph(vec![t("a"), b(&dots), t("b")])]),
            [Block::Paragraph(vec![t("a."), b(&dots[2..]), t(".b")])]
        );
    }

    #[test]
    fn lines_lose_edge_blanks_and_extra_breaks() {
        assert_eq!(
            normalize(&[Block::Paragraph(vec![
                Inline::HardBreak,
                t("  a "),
                Inline::HardBreak,
                t(" "),
                Inline::HardBreak,
                t("\tb"),
                Inline::HardBreak,
            ])]),
            [Block::Paragraph(vec![t("a"), Inline::HardBreak, t("b")])]
        );
        assert_eq!(normalize(&[Block::Paragraph(vec![t("  ")])]), []);
        assert_eq!(
            normalize(&[Block::Heading(9, vec![t("a"), Inline::HardBreak, t("b ")])]),
            [Block::Heading(6, vec![t("a b")])]
        );
    }
}
