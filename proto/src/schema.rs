//! The document schema contract shared by the server and the browser editor: the names of the
//! documents of a review, the ProseMirror/TipTap node and mark names stored in the `report` and
//! `notes` fragments, the report template, and the keys of the `discussion` document.
//!
//! Every name here is data that both sides must spell the same way; `docs/schema.md` documents
//! them for the browser. Nothing here touches yrs: the server builds the documents from these
//! names.

/// Name of the Y.XmlFragment that holds a ProseMirror document (TipTap's `Collaboration`
/// extension uses `default` unless told otherwise).
pub const FRAGMENT: &str = "default";

/// The documents of one review, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// The report body.
    Report,
    /// Comment threads and the review's state; only the server writes it.
    Discussion,
    /// Live meeting notes.
    Notes,
}

impl DocKind {
    /// Every kind, in a stable order.
    pub const ALL: [DocKind; 3] = [DocKind::Report, DocKind::Discussion, DocKind::Notes];

    /// The suffix of the document name.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Report => "report",
            DocKind::Discussion => "discussion",
            DocKind::Notes => "notes",
        }
    }
}

/// The prefix of every review document name.
pub const REVIEW_DOC_PREFIX: &str = "review.";

/// The name of a review's document: `review.{review id}.{kind}`.
pub fn document_name(review: &str, kind: DocKind) -> String {
    format!("{REVIEW_DOC_PREFIX}{review}.{}", kind.as_str())
}

/// Splits a review document name into the review id and the kind; `None` for any other name.
pub fn parse_document_name(name: &str) -> Option<(&str, DocKind)> {
    let rest = name.strip_prefix(REVIEW_DOC_PREFIX)?;
    let (review, kind) = rest.rsplit_once('.')?;
    let kind = DocKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
    (!review.is_empty() && !review.contains('.')).then_some((review, kind))
}

/// ProseMirror node names (TipTap StarterKit spelling).
pub mod node {
    /// A heading; attribute [`super::attr::LEVEL`] is 1–6.
    pub const HEADING: &str = "heading";
    /// A paragraph.
    pub const PARAGRAPH: &str = "paragraph";
    /// A bulleted list of [`LIST_ITEM`]s.
    pub const BULLET_LIST: &str = "bulletList";
    /// A numbered list of [`LIST_ITEM`]s.
    pub const ORDERED_LIST: &str = "orderedList";
    /// One item of a list; holds paragraphs and nested lists.
    pub const LIST_ITEM: &str = "listItem";
    /// Preformatted code; attribute [`super::attr::LANGUAGE`] is optional.
    pub const CODE_BLOCK: &str = "codeBlock";
    /// A quotation.
    pub const BLOCKQUOTE: &str = "blockquote";
    /// A thematic break.
    pub const HORIZONTAL_RULE: &str = "horizontalRule";
    /// A line break inside a paragraph.
    pub const HARD_BREAK: &str = "hardBreak";
    /// A table of [`TABLE_ROW`]s (TipTap's table extension).
    pub const TABLE: &str = "table";
    /// A row of [`TABLE_HEADER`] or [`TABLE_CELL`]s.
    pub const TABLE_ROW: &str = "tableRow";
    /// A header cell; holds paragraphs.
    pub const TABLE_HEADER: &str = "tableHeader";
    /// A cell; holds paragraphs.
    pub const TABLE_CELL: &str = "tableCell";
    /// Every node name, for validation and documentation.
    pub const ALL: [&str; 13] = [
        TABLE,
        TABLE_ROW,
        TABLE_HEADER,
        TABLE_CELL,
        HEADING,
        PARAGRAPH,
        BULLET_LIST,
        ORDERED_LIST,
        LIST_ITEM,
        CODE_BLOCK,
        BLOCKQUOTE,
        HORIZONTAL_RULE,
        HARD_BREAK,
    ];
}

/// ProseMirror mark names; in Yjs they are formatting attributes of the text.
pub mod mark {
    /// Bold.
    pub const BOLD: &str = "bold";
    /// Italic.
    pub const ITALIC: &str = "italic";
    /// Inline code.
    pub const CODE: &str = "code";
    /// Strike-through.
    pub const STRIKE: &str = "strike";
    /// A link; attribute [`super::attr::HREF`].
    pub const LINK: &str = "link";
    /// Every mark name.
    pub const ALL: [&str; 5] = [BOLD, ITALIC, CODE, STRIKE, LINK];
}

/// Attribute names of nodes and marks.
pub mod attr {
    /// Heading level (a number).
    pub const LEVEL: &str = "level";
    /// Code block language (a string or absent).
    pub const LANGUAGE: &str = "language";
    /// Link target.
    pub const HREF: &str = "href";
    /// First number of an ordered list (a number; absent means 1).
    pub const START: &str = "start";
}

/// One section of the report template: a level-2 heading and an empty paragraph, in which the
/// editor shows the section's guidance as a placeholder (never as text of the report). The web
/// app's copy is `web/src/template.json` (a server test keeps the two equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Heading text.
    pub title: &'static str,
    /// One line of guidance, shown while the section's paragraph is empty.
    pub help: &'static str,
}

/// The report template (`docs/architecture.md`, "The report template"), seeded by the server when a review is created, below a
/// level-1 heading holding the review's title.
pub const TEMPLATE: [Section; 11] = [
    Section {
        title: "Summary",
        help: "Two or three sentences a reader outside the team understands.",
    },
    Section {
        title: "Impact",
        help: "Who and what was affected, for how long, in numbers.",
    },
    Section {
        title: "Lead-up",
        help: "The conditions and changes before the incident.",
    },
    Section {
        title: "Timeline",
        help: "Facts only, each with a time and a link to its evidence; start before the incident.",
    },
    Section {
        title: "Detection",
        help: "How the problem was noticed, and how long that took.",
    },
    Section {
        title: "Response and recovery",
        help: "What was tried, what worked, how service came back.",
    },
    Section {
        title: "Contributing factors",
        help: "Plural: ask what made each action reasonable at the time, never who is to blame.",
    },
    Section {
        title: "What was surprising or hard",
        help: "What the people involved did not expect, and what made the work difficult.",
    },
    Section {
        title: "What went well, what went badly, where we were lucky",
        help: "One list each; luck is a risk to fix, not a success.",
    },
    Section {
        title: "Open questions",
        help: "What the meeting should answer.",
    },
    Section {
        title: "Action items",
        help: "Systemic improvements with an owning team, a kind and a tracking link; not \"be more careful\".",
    },
];

/// Keys of the `discussion` document. Root types: the map [`discussion::REVIEW`] and the map
/// [`discussion::THREADS`]; see `docs/schema.md` for the shape of each entry.
pub mod discussion {
    /// Root Y.Map with the review's state: `title`, `phase`.
    pub const REVIEW: &str = "review";
    /// Root Y.Map: thread id → thread (a Y.Map).
    pub const THREADS: &str = "threads";
    /// Thread and comment fields.
    pub mod field {
        /// Id of a thread or comment.
        pub const ID: &str = "id";
        /// Review title (in [`super::REVIEW`]).
        pub const TITLE: &str = "title";
        /// Review phase (in [`super::REVIEW`]).
        pub const PHASE: &str = "phase";
        /// Thread anchor: a map `{start, end, quote}` (base64 relative positions and the quoted
        /// text), or null for a general comment.
        pub const ANCHOR: &str = "anchor";
        /// Anchor start (base64 of an encoded Yjs relative position).
        pub const START: &str = "start";
        /// Anchor end.
        pub const END: &str = "end";
        /// Quoted text at the time of commenting.
        pub const QUOTE: &str = "quote";
        /// Whether the thread is resolved.
        pub const RESOLVED: &str = "resolved";
        /// Y.Array of comments (Y.Maps) of a thread, oldest first.
        pub const COMMENTS: &str = "comments";
        /// Comment text.
        pub const BODY: &str = "body";
        /// Author: a map `{participant, name}`.
        pub const AUTHOR: &str = "author";
        /// Participant id of an author.
        pub const PARTICIPANT: &str = "participant";
        /// Display name of an author.
        pub const NAME: &str = "name";
        /// Server time of creation, milliseconds since the Unix epoch.
        pub const CREATED_AT: &str = "createdAt";
        /// Server time of the last edit, or absent.
        pub const EDITED_AT: &str = "editedAt";
        /// True once the comment was deleted (its body is then empty).
        pub const DELETED: &str = "deleted";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_names_round_trip() {
        for kind in DocKind::ALL {
            let name = document_name("abc123", kind);
            assert_eq!(parse_document_name(&name), Some(("abc123", kind)));
        }
        assert_eq!(parse_document_name("review.abc.other"), None);
        assert_eq!(parse_document_name("review..report"), None);
        assert_eq!(parse_document_name("review.a.b.report"), None);
        assert_eq!(parse_document_name("notes"), None);
    }
}
