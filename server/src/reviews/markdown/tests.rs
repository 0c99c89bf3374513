//! Examples of the Markdown conversion: the template, hostile input (issue 16), structure.

use std::collections::HashMap;
use std::sync::Arc;

use debrief_proto::schema::{attr, mark, node, FRAGMENT};
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
use yrs::types::Attrs;
use yrs::{Any, Text, Transact, Xml};

use super::{import, to_markdown};

fn round_trip(md: &str) -> String {
    let doc = crate::documents::crdt::new_doc();
    import(&doc, md).expect("import");
    to_markdown(&doc)
}

#[test]
fn deep_nesting_is_cut_off_not_a_stack_overflow() {
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

/// Issue 17: an unwritten template exports as its headings only (its guidance is the editor's
/// placeholder), and a report seeded before that, holding the guidance as text, exports the
/// same way; what someone wrote under a heading is kept, even when it quotes the guidance.
#[test]
fn the_template_exports_as_headings_without_guidance() {
    let doc = crate::documents::crdt::new_doc();
    super::super::report::seed(&doc, "Outage");
    let md = to_markdown(&doc);
    assert!(
        md.starts_with("# Outage\n\n## Summary\n\n## Impact\n\n## Lead-up\n"),
        "{md}"
    );
    assert!(!md.contains("Two or three sentences"), "{md}");

    let legacy = "# Outage\n\n## Summary\n\nTwo or three sentences a reader outside the team understands.\n\n## Impact\n\nCheckout failed for 12 minutes. Who and what was affected, for how long, in numbers.\n\n## Notes\n\nWhat the meeting should answer.\n\n## Open questions\n\n*What the meeting should answer.*\n";
    assert_eq!(
        round_trip(legacy),
        "# Outage\n\n## Summary\n\n## Impact\n\nCheckout failed for 12 minutes. Who and what was affected, for how long, in numbers.\n\n## Notes\n\nWhat the meeting should answer.\n\n## Open questions\n"
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
        "x d javascript:alert(2) [ok](https://example.com/?a=1&amp;b=2) [m](mailto:oncall@example.com) r\n\n\\<script>alert(3)\\</script>\n\n\\<div> \\<iframe src=\"javascript:alert(4)\"> \\</div>\n\n1\\. starts with a number, then an \\<i>entity\\</i>\n"
    );
    assert_eq!(round_trip(&out), out, "the export imports as itself");
}

/// Issue 16: what a client wrote into the report is exported as literal text, and a link
/// mark with another scheme keeps only its text.
#[test]
fn client_written_text_and_links_export_as_literal_text() {
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
        "run me \\<img src=x onerror=alert(1)> [ok](<https://example.com/a b)>)\n\n\\# not a heading  \n\\- nor a list, 2. nor this\n\n````js\na\n```\n<b>x</b>\n````\n"
    );
}

#[test]
fn structure_survives_a_round_trip() {
    assert_eq!(round_trip("**a** **b** `c` `d`\n"), "**a** **b** `c` `d`\n");
    let table =
        "|Time|Event|\n|----|-----|\n|14:05|Deploy of **v42**|\n|14:07|Errors \\| alerts|\n";
    assert_eq!(round_trip(table), table);
    let md = "# Title\n\nSome **bold**, _italic_, `code`, ~~gone~~ and a [link](https://example.com/a).\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n > \n > quoted\n\n```rust\nfn main() {}\n```\n\n---\n\nLast line  \nafter a break\n";
    assert_eq!(round_trip(md), md);
    assert_eq!(round_trip(&round_trip(md)), md);
}
