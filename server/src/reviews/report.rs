//! The `report` document on the server side: seeding it with the template, and checking that a
//! comment's anchor (two encoded Yjs relative positions) points into it.
//!
//! Both run as jobs on the document's owner ([`crate::documents::doc::DocHandle::run`]); nothing here holds
//! a transaction beyond one call.

use debrief_proto::lib0::Reader;
use debrief_proto::schema::{attr, node, FRAGMENT, TEMPLATE};
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlOut, XmlTextPrelim};
use yrs::updates::decoder::Decode;
use yrs::{Any, BranchID, Doc, StickyIndex, Transact, Xml};

/// Largest encoded relative position accepted, in bytes: an item id is two varints, a root
/// type name is short; anything longer is not a position.
pub const MAX_POSITION_BYTES: usize = 256;

/// Writes the template into an empty report: the review title as a level-1 heading, then each
/// section as a level-2 heading followed by one empty paragraph. The section's guidance is not
/// content: the editor shows it as a placeholder in that empty paragraph (issue 17), so it never
/// reaches exports, versions or the library. Returns the update.
pub fn seed(doc: &Doc, title: &str) -> Vec<u8> {
    let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
    let mut txn = doc.transact_mut();
    let heading = |txn: &mut yrs::TransactionMut, level: i64, text: &str| {
        let h = fragment.push_back(txn, XmlElementPrelim::empty(node::HEADING));
        h.insert_attribute(txn, attr::LEVEL, Any::from(level));
        h.push_back(txn, XmlTextPrelim::new(text));
    };
    heading(&mut txn, 1, title);
    for section in TEMPLATE {
        heading(&mut txn, 2, section.title);
        fragment.push_back(&mut txn, XmlElementPrelim::empty(node::PARAGRAPH));
    }
    txn.encode_update_v1()
}

/// Why an anchor does not point into the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorError {
    /// The bytes are not an encoded relative position.
    Malformed,
    /// The position refers to something this report does not contain (another document, or an
    /// item that never existed).
    NotInReport,
}

/// Checks that both ends decode and resolve inside the report's fragment.
pub fn check_anchor(doc: &Doc, start: &[u8], end: &[u8]) -> Result<(), AnchorError> {
    let start = decode(start)?;
    let end = decode(end)?;
    // A document loaded from the store (after a restart, or an idle unload) knows its root types
    // only by name: updates do not carry a root's type, so the fragment stays an untyped branch
    // until it is asked for by type, and the walk below could not see it as XML. Declaring it
    // writes nothing (issue 16).
    doc.get_or_insert_xml_fragment(FRAGMENT);
    let txn = doc.transact();
    for pos in [&start, &end] {
        let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pos.get_offset(&txn).map(|o| o.branch)
        }))
        .map_err(|_| AnchorError::NotInReport)?;
        let Some(branch) = resolved else {
            return Err(AnchorError::NotInReport);
        };
        if !inside_fragment(branch) {
            return Err(AnchorError::NotInReport);
        }
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<StickyIndex, AnchorError> {
    if bytes.is_empty() || bytes.len() > MAX_POSITION_BYTES || !well_formed(bytes) {
        return Err(AnchorError::Malformed);
    }
    std::panic::catch_unwind(|| StickyIndex::decode_v1(bytes))
        .map_err(|_| AnchorError::Malformed)?
        .map_err(|_| AnchorError::Malformed)
}

/// Checks the layout of an encoded relative position with our own decoder first, so that yrs
/// never sees values it would panic on (a client id above 53 bits): a scope tag (0: item id,
/// 1: root type name, 2: type id), its fields, and the association, with nothing after it.
fn well_formed(bytes: &[u8]) -> bool {
    const MAX_CLIENT_ID: u64 = (1 << 53) - 1;
    let mut r = Reader::new(bytes);
    let scope_ok = match r.read_var_uint() {
        Ok(0 | 2) => {
            matches!(r.read_var_uint(), Ok(client) if client <= MAX_CLIENT_ID)
                && matches!(r.read_var_uint(), Ok(clock) if clock <= u64::from(u32::MAX))
        }
        Ok(1) => r.read_var_string().is_ok(),
        _ => false,
    };
    scope_ok && r.read_var_int().is_ok() && r.is_empty()
}

/// Whether `branch` is the report fragment or an XML node nested in it, walking parents up.
fn inside_fragment(branch: yrs::branch::BranchPtr) -> bool {
    let Ok(mut node) = XmlOut::try_from(branch) else {
        return false;
    };
    // Nesting in a ProseMirror document is shallow; the bound guards against a damaged document.
    for _ in 0..1024 {
        let parent = match &node {
            XmlOut::Fragment(f) => {
                if let BranchID::Root(name) = AsRef::<yrs::branch::Branch>::as_ref(f).id() {
                    return &*name == FRAGMENT;
                }
                f.parent()
            }
            XmlOut::Element(e) => e.parent(),
            XmlOut::Text(t) => t.parent(),
        };
        let Some(parent) = parent else {
            return false;
        };
        node = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{Assoc, GetString, IndexedSequence, Text, XmlTextRef};

    fn seeded() -> Doc {
        let doc = crate::documents::crdt::new_doc();
        seed(&doc, "Checkout outage");
        doc
    }

    /// Writes a sentence into the Summary section's paragraph and answers its text.
    fn first_paragraph_text(doc: &Doc) -> XmlTextRef {
        let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
        let mut txn = doc.transact_mut();
        // Index 0 is the title heading, 1 the Summary heading, 2 its empty paragraph.
        let p = fragment.get(&txn, 2).expect("summary paragraph");
        let p = p.into_xml_element().expect("paragraph element");
        assert_eq!(p.tag().as_ref(), node::PARAGRAPH);
        match p.get(&txn, 0) {
            Some(text) => text.into_xml_text().expect("xml text"),
            None => p.push_back(&mut txn, XmlTextPrelim::new("The checkout failed.")),
        }
    }

    /// Every section is a heading with an empty paragraph: its guidance is the editor's
    /// placeholder, never text of the report (issue 17).
    #[test]
    fn the_template_has_every_section_and_no_guidance_text() {
        let doc = seeded();
        let fragment = doc.get_or_insert_xml_fragment(FRAGMENT);
        let txn = doc.transact();
        assert_eq!(fragment.len(&txn) as usize, 1 + 2 * TEMPLATE.len());
        let xml = fragment.get_string(&txn);
        let mut expected = String::from("<heading level=\"1\">Checkout outage</heading>");
        for s in TEMPLATE {
            expected.push_str(&format!(
                "<heading level=\"2\">{}</heading><paragraph></paragraph>",
                s.title
            ));
            assert!(!xml.contains(s.help), "{}", s.help);
        }
        assert_eq!(xml, expected);
    }

    /// The web app shows the guidance from its own copy of the template (web/src/template.json),
    /// which must say what the server's template says.
    #[test]
    fn the_web_copy_of_the_template_matches() {
        let web: serde_json::Value =
            serde_json::from_str(include_str!("../../../web/src/template.json"))
                .expect("web/src/template.json is JSON");
        let ours: Vec<serde_json::Value> = TEMPLATE
            .iter()
            .map(|s| serde_json::json!({ "title": s.title, "help": s.help }))
            .collect();
        assert_eq!(web, serde_json::Value::Array(ours));
    }

    /// Issue 16: a report loaded from the store (as after any restart) has its root fragment
    /// only as an untyped branch until someone asks for it by type; anchors into it must still
    /// be accepted.
    #[test]
    fn anchors_resolve_in_a_report_loaded_from_the_store() {
        let seeded = crate::documents::crdt::new_doc();
        seed(&seeded, "Checkout outage");
        let (start, end) = {
            let text = first_paragraph_text(&seeded);
            let txn = seeded.transact();
            let s = text.sticky_index(&txn, 0, Assoc::After).expect("start");
            let e = text.sticky_index(&txn, 3, Assoc::Before).expect("end");
            (s.encode_v1(), e.encode_v1())
        };
        let update = {
            use yrs::{ReadTxn, StateVector};
            seeded
                .transact()
                .encode_state_as_update_v1(&StateVector::default())
        };
        let reloaded = crate::documents::crdt::load(None, [update.as_slice()]).expect("load");
        assert_eq!(check_anchor(&reloaded, &start, &end), Ok(()));
        // A position at the fragment itself (the end of the report) resolves too.
        let at_root = {
            let fragment = seeded.get_or_insert_xml_fragment(FRAGMENT);
            let txn = seeded.transact();
            let len = fragment.len(&txn);
            fragment
                .sticky_index(&txn, len, Assoc::Before)
                .expect("end of report")
                .encode_v1()
        };
        let reloaded = crate::documents::crdt::load(None, [update.as_slice()]).expect("load");
        assert_eq!(check_anchor(&reloaded, &start, &at_root), Ok(()));
    }

    #[test]
    fn anchors_must_resolve_inside_the_report() {
        let doc = seeded();
        let text = first_paragraph_text(&doc);
        let (start, end) = {
            let txn = doc.transact();
            let s = text.sticky_index(&txn, 0, Assoc::After).expect("start");
            let e = text.sticky_index(&txn, 3, Assoc::Before).expect("end");
            (s.encode_v1(), e.encode_v1())
        };
        assert_eq!(check_anchor(&doc, &start, &end), Ok(()));

        // The same positions mean nothing in another document.
        let other = crate::documents::crdt::new_doc();
        other
            .get_or_insert_text("t")
            .insert(&mut other.transact_mut(), 0, "hello");
        assert_eq!(
            check_anchor(&other, &start, &end),
            Err(AnchorError::NotInReport)
        );
        // A root type other than the fragment.
        let notes_root = StickyIndex::new(yrs::IndexScope::Root("notes".into()), Assoc::After);
        assert_eq!(
            check_anchor(&doc, &notes_root.encode_v1(), &end),
            Err(AnchorError::NotInReport)
        );
        assert_eq!(
            check_anchor(&doc, &[0xff, 0xff], &end),
            Err(AnchorError::Malformed)
        );
        assert_eq!(check_anchor(&doc, &[], &end), Err(AnchorError::Malformed));
        // A client id past 53 bits makes yrs panic; it is refused before yrs sees it.
        let huge = [
            0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0x80, 0x80, 0x80, 0x80, 0x10,
            0x00,
        ];
        assert_eq!(check_anchor(&doc, &huge, &end), Err(AnchorError::Malformed));
        let _ = text.get_string(&doc.transact());
    }
}
