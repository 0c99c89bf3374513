//! A review as one Markdown document or one JSON object, converted on the server from its CRDT
//! documents: the report, then comment threads with their quotes (anonymous items as
//! "Anonymous"; hidden and deleted ones left out), concerns with their support, action items as
//! a table, and the meeting notes. The same text is what the library publishes.
//!
//! The Markdown is one stream of events written by the one writer ([`super::markdown::write`]):
//! the report and notes (Markdown from [`super::markdown`], read back as events) and the
//! sections built here. Everything people wrote (names, quotes, bodies, action items) is text
//! that the writer escapes, so that it renders as the literal text (issue 16).

use pulldown_cmark::{Alignment, Event, HeadingLevel, Parser, Tag, TagEnd};
use serde_json::{json, Value};

use super::markdown::write::DIALECT;
use super::renaming::Renaming;
use super::ReviewRecord;

/// The parts a review is exported from.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The review.
    pub review: ReviewRecord,
    /// The report as Markdown.
    pub report: String,
    /// The notes as Markdown.
    pub notes: String,
    /// The discussion document's roots as JSON (`threads`, `concerns`, `actions`, …).
    pub discussion: std::collections::HashMap<String, Value>,
}

fn sorted(v: &Value) -> Vec<&Value> {
    let mut items: Vec<&Value> = v
        .as_object()
        .map(|o| o.values().collect())
        .unwrap_or_default();
    items.sort_by(|a, b| {
        let t = |x: &Value| x["createdAt"].as_f64().unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    });
    items
}

fn visible(c: &Value) -> bool {
    c["deleted"] != true && c["hidden"] != true && c["body"].as_str().is_some_and(|b| !b.is_empty())
}

/// Who wrote a comment: "Anonymous", their name, or with `names` their role.
fn author(c: &Value, names: Option<&Renaming>) -> String {
    if c["anonymous"] == true || c["author"].is_null() {
        "Anonymous".to_owned()
    } else if let Some(names) = names {
        names.author(c["author"]["participant"].as_str().unwrap_or(""))
    } else {
        c["author"]["name"].as_str().unwrap_or("Someone").to_owned()
    }
}

/// Threads with at least one visible comment, as plain data.
fn threads(p: &Parts, names: Option<&Renaming>) -> Vec<Value> {
    sorted(&p.discussion["threads"])
        .into_iter()
        .filter_map(|t| {
            let comments: Vec<Value> = t["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| visible(c))
                .map(|c| json!({ "author": author(c, names), "body": c["body"], "createdAt": c["createdAt"] }))
                .collect();
            (!comments.is_empty()).then(|| {
                json!({
                    "quote": t["anchor"]["quote"],
                    "resolved": t["resolved"] == true,
                    "comments": comments,
                })
            })
        })
        .collect()
}

fn concerns(p: &Parts) -> Vec<Value> {
    let mut out: Vec<Value> = sorted(&p.discussion["concerns"])
        .into_iter()
        .filter(|c| visible(c))
        .map(|c| {
            json!({
                "body": c["body"],
                "support": c["votes"].as_array().map_or(0, Vec::len),
                "discussed": c["discussed"] == true,
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c["support"].as_u64().unwrap_or(0)));
    out
}

fn actions(p: &Parts) -> Vec<Value> {
    sorted(&p.discussion["actions"])
        .into_iter()
        .map(|a| {
            json!({
                "what": a["what"], "why": a["why"], "kind": a["kind"], "owner": a["owner"],
                "link": a["link"], "due": a["due"], "status": a["status"],
            })
        })
        .collect()
}

/// A comment's or concern's text on one line: line breaks of any kind become spaces, and the
/// ends are trimmed (Markdown would drop them).
fn one_line(v: &Value) -> String {
    v.as_str()
        .unwrap_or("")
        .replace(['\n', '\r'], " ")
        .trim()
        .to_owned()
}

fn text(s: impl Into<String>) -> Event<'static> {
    Event::Text(s.into().into())
}

fn heading(title: &str, out: &mut Vec<Event<'static>>) {
    let level = HeadingLevel::H2;
    out.push(Event::Start(Tag::Heading {
        level,
        id: None,
        classes: Vec::new(),
        attrs: Vec::new(),
    }));
    out.push(text(title));
    out.push(Event::End(TagEnd::Heading(level)));
}

fn paragraph(s: &str, out: &mut Vec<Event<'static>>) {
    out.push(Event::Start(Tag::Paragraph));
    out.push(text(s));
    out.push(Event::End(TagEnd::Paragraph));
}

/// A list item holding inline events (a tight list).
fn item(inline: Vec<Event<'static>>, out: &mut Vec<Event<'static>>) {
    out.push(Event::Start(Tag::Item));
    out.extend(inline);
    out.push(Event::End(TagEnd::Item));
}

fn list(items: impl FnOnce(&mut Vec<Event<'static>>), out: &mut Vec<Event<'static>>) {
    out.push(Event::Start(Tag::List(None)));
    items(out);
    out.push(Event::End(TagEnd::List(false)));
}

/// A quote as a block quote: its lines, trimmed, in paragraphs split at blank lines.
fn quote(q: &str, out: &mut Vec<Event<'static>>) {
    out.push(Event::Start(Tag::BlockQuote(None)));
    let normalized = q.replace("\r\n", "\n").replace('\r', "\n");
    for para in normalized.split("\n\n") {
        let lines: Vec<&str> = para
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        out.push(Event::Start(Tag::Paragraph));
        for (i, line) in lines.into_iter().enumerate() {
            if i > 0 {
                out.push(Event::SoftBreak);
            }
            out.push(text(line));
        }
        out.push(Event::End(TagEnd::Paragraph));
    }
    out.push(Event::End(TagEnd::BlockQuote(None)));
}

/// A Markdown document written by [`super::markdown`] as events again, to be written with the
/// rest of the export in one pass.
fn embedded(md: &str) -> impl Iterator<Item = Event<'static>> + '_ {
    Parser::new_ext(md, DIALECT).map(Event::into_static)
}

/// The title of the template's section for action items, and of the export's table of them.
const ACTION_ITEMS: &str = "Action items";

/// Where the section under the level-2 heading titled `title` in `events` ends: the index of the
/// next heading of level 1 or 2, or the end; `None` when there is no such heading.
fn section_end(events: &[Event<'_>], title: &str) -> Option<usize> {
    let is_section_heading = |e: &Event<'_>| {
        matches!(
            e,
            Event::Start(Tag::Heading {
                level: HeadingLevel::H1 | HeadingLevel::H2,
                ..
            })
        )
    };
    let mut at = 0;
    while at < events.len() {
        if let Event::Start(Tag::Heading {
            level: HeadingLevel::H2,
            ..
        }) = &events[at]
        {
            let mut heading = String::new();
            let mut end = at + 1;
            while end < events.len() && !matches!(events[end], Event::End(TagEnd::Heading(_))) {
                if let Event::Text(t) | Event::Code(t) = &events[end] {
                    heading.push_str(t);
                }
                end += 1;
            }
            if heading.trim() == title {
                let next = events[end..]
                    .iter()
                    .position(is_section_heading)
                    .map_or(events.len(), |i| end + i);
                return Some(next);
            }
            at = end;
        }
        at += 1;
    }
    None
}

/// The action items as a table; nothing when there are none.
fn action_table(actions: &[Value]) -> Vec<Event<'static>> {
    let mut out = Vec::new();
    if actions.is_empty() {
        return out;
    }
    const COLUMNS: [(&str, &str); 7] = [
        ("what", "What"),
        ("why", "Why"),
        ("kind", "Kind"),
        ("owner", "Owner"),
        ("link", "Link"),
        ("due", "Due"),
        ("status", "Status"),
    ];
    let row = |cells: Vec<String>, out: &mut Vec<Event<'static>>| {
        for c in cells {
            out.push(Event::Start(Tag::TableCell));
            if !c.is_empty() {
                out.push(text(c));
            }
            out.push(Event::End(TagEnd::TableCell));
        }
    };
    out.push(Event::Start(Tag::Table(vec![
        Alignment::None;
        COLUMNS.len()
    ])));
    out.push(Event::Start(Tag::TableHead));
    row(
        COLUMNS.map(|(_, title)| title.to_owned()).to_vec(),
        &mut out,
    );
    out.push(Event::End(TagEnd::TableHead));
    for a in actions {
        out.push(Event::Start(Tag::TableRow));
        row(COLUMNS.map(|(k, _)| one_line(&a[k])).to_vec(), &mut out);
        out.push(Event::End(TagEnd::TableRow));
    }
    out.push(Event::End(TagEnd::Table));
    out
}

/// The review as Markdown, written in one pass by the one writer ([`super::markdown::write`]);
/// with `names`, people's names replaced by their roles in all of it.
pub fn markdown(p: &Parts, names: Option<&Renaming>) -> String {
    let mut out: Vec<Event<'static>> = embedded(&p.report).collect();
    // The template has an "Action items" section: the tracked items go at its end, so that the
    // export has that heading once (issue 17). A report without one gets a section of its own
    // after the concerns.
    let mut table = action_table(&actions(p));
    if let Some(at) = section_end(&out, ACTION_ITEMS) {
        out.splice(at..at, std::mem::take(&mut table));
    }
    let threads = threads(p, names);
    if !threads.is_empty() {
        heading("Comments", &mut out);
        for t in &threads {
            match t["quote"].as_str() {
                Some(q) => quote(q, &mut out),
                None => paragraph("General comment:", &mut out),
            }
            list(
                |out| {
                    for c in t["comments"].as_array().into_iter().flatten() {
                        let who = c["author"].as_str().unwrap_or("Someone").to_owned();
                        item(
                            vec![
                                Event::Start(Tag::Strong),
                                text(who),
                                Event::End(TagEnd::Strong),
                                text(format!(": {}", one_line(&c["body"]))),
                            ],
                            out,
                        );
                    }
                    if t["resolved"] == true {
                        item(
                            vec![
                                Event::Start(Tag::Emphasis),
                                text("Resolved"),
                                Event::End(TagEnd::Emphasis),
                            ],
                            out,
                        );
                    }
                },
                &mut out,
            );
        }
    }
    let concerns = concerns(p);
    if !concerns.is_empty() {
        heading("Concerns", &mut out);
        list(
            |out| {
                for c in &concerns {
                    let discussed = if c["discussed"] == true {
                        ", discussed"
                    } else {
                        ""
                    };
                    let line = format!(
                        "{} ({} supporting{discussed})",
                        one_line(&c["body"]),
                        c["support"]
                    );
                    item(vec![text(line)], out);
                }
            },
            &mut out,
        );
    }
    if !table.is_empty() {
        heading(ACTION_ITEMS, &mut out);
        out.extend(table);
    }
    if !p.notes.trim().is_empty() {
        heading("Meeting notes", &mut out);
        out.extend(embedded(&p.notes));
    }
    if let Some(names) = names {
        for e in &mut out {
            if let Event::Text(t) | Event::Code(t) = e {
                *t = names.text(t).into();
            }
        }
    }
    super::markdown::written(&out)
}

/// The review as JSON.
pub fn json(p: &Parts) -> Value {
    json!({
        "review": {
            "id": p.review.id,
            "title": p.review.title,
            "incident_date": p.review.incident_date,
            "severity": p.review.severity,
            "phase": p.review.phase.as_str(),
        },
        "report_markdown": p.report,
        "threads": threads(p, None),
        "concerns": concerns(p),
        "actions": actions(p),
        "notes_markdown": p.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed review titled "T", as the export tests read it.
    fn closed_review() -> ReviewRecord {
        ReviewRecord {
            id: "r".into(),
            title: "T".into(),
            incident_date: None,
            severity: None,
            phase: super::super::Phase::Closed,
            created_at: 0,
            release: Default::default(),
            small_group_anonymity: false,
            team: None,
            factors: Vec::new(),
            closed_at: None,
            phase_changed_at: None,
            invites: Default::default(),
            sign_in_invites: Vec::new(),
        }
    }

    /// Issue 16: comment bodies, names, quotes, concerns and action items are emitted as the
    /// literal text, never as live HTML or links.
    #[test]
    fn what_people_wrote_is_exported_as_literal_text() {
        let review = closed_review();
        let discussion = [
            (
                "threads",
                json!({
                    "t1": {
                        "anchor": { "quote": "# quoted\n<b>bold</b>" },
                        "createdAt": 1.0,
                        "comments": [
                            { "author": { "name": "<img src=x onerror=alert(1)>" }, "body": "<script>alert(1)</script>", "createdAt": 1.0 },
                            { "author": { "name": "**Eve**" }, "body": "[x](javascript:alert(1)) &amp; ![i](data:x)\nsecond line", "createdAt": 2.0 },
                        ],
                    },
                    "t2": {
                        "createdAt": 3.0,
                        "comments": [
                            { "anonymous": true, "author": null, "body": "`code` _em_ ~~s~~ <https://x.example>", "createdAt": 3.0 },
                        ],
                    },
                }),
            ),
            (
                "concerns",
                json!({ "c1": { "body": "# <u>loud</u>", "votes": ["a"], "createdAt": 1.0 } }),
            ),
            (
                "actions",
                json!({ "a1": { "what": "<i>a</i> | b", "why": "[y](javascript:z)", "kind": "fix", "owner": "O\nwner", "link": "https://t.example/1", "status": "in_progress", "createdAt": 1.0 } }),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let parts = Parts {
            review,
            report: "# T\n".into(),
            notes: String::new(),
            discussion,
        };
        let md = markdown(&parts, None);
        assert_eq!(
            md,
            "# T\n\
             \n\
             ## Comments\n\
             \n \
             > \n \
             > \\# quoted\n \
             > \\<b>bold\\</b>\n\
             \n\
             - **\\<img src=x onerror=alert(1)>**: \\<script>alert(1)\\</script>\n\
             - **\\*\\*Eve\\*\\***: \\[x\\](javascript:alert(1)) &amp;amp; !\\[i\\](data:x) second line\n\
             \n\
             General comment:\n\
             \n\
             - **Anonymous**: \\`code\\` \\_em\\_ \\~\\~s\\~\\~ \\<https://x.example>\n\
             \n\
             ## Concerns\n\
             \n\
             - \\# \\<u>loud\\</u> (1 supporting)\n\
             \n\
             ## Action items\n\
             \n\
             |What|Why|Kind|Owner|Link|Due|Status|\n\
             |----|---|----|-----|----|---|------|\n\
             |\\<i>a\\</i> \\| b|\\[y\\](javascript:z)|fix|O wner|https://t.example/1||in_progress|\n"
        );
        // Read back, it holds no HTML, no link and no image: only text.
        for event in Parser::new_ext(&md, DIALECT) {
            assert!(
                !matches!(
                    event,
                    Event::Html(_)
                        | Event::InlineHtml(_)
                        | Event::Start(Tag::Link { .. } | Tag::Image { .. })
                ),
                "{event:?} in\n{md}"
            );
        }
    }

    /// Issue 17: a report from the template has an "Action items" section; the tracked items
    /// are its table, and the export says "Action items" once.
    #[test]
    fn action_items_are_one_section() {
        let review = closed_review();
        let discussion = [
            (
                "actions",
                json!({ "a1": { "what": "Alert on queue age", "why": "Seen late", "kind": "detect", "owner": "Payments", "status": "open", "createdAt": 1.0 } }),
            ),
            ("threads", json!({})),
            ("concerns", json!({})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let parts = Parts {
            review,
            report: "# T\n\n## Open questions\n\n## Action items\n\nSee the tracker.\n\n## Appendix\n\nLogs.\n".into(),
            notes: "Decided.\n".into(),
            discussion,
        };
        assert_eq!(
            markdown(&parts, None),
            "# T\n\n## Open questions\n\n## Action items\n\nSee the tracker.\n\n\
             |What|Why|Kind|Owner|Link|Due|Status|\n\
             |----|---|----|-----|----|---|------|\n\
             |Alert on queue age|Seen late|detect|Payments|||open|\n\n\
             ## Appendix\n\nLogs.\n\n## Meeting notes\n\nDecided.\n"
        );
    }

    /// Issue 17: published without names, every name of someone who joined is their role: in
    /// the report, quotes, comment authors and bodies, action items and notes. Anonymous
    /// comments stay "Anonymous".
    #[test]
    fn names_can_be_replaced_by_roles_everywhere() {
        use crate::reviews::{Role, SessionRecord};
        let person = |participant: &str, name: &str, role, at| SessionRecord {
            review: "r".into(),
            role,
            participant: participant.into(),
            name: name.into(),
            created_at: at,
        };
        let names = Renaming::new(&[
            person("pf", "Fran Okafor", Role::Facilitator, 1),
            person("pd", "Dana Scully", Role::Participant, 2),
            person("pm", "Mo", Role::Participant, 3),
        ]);
        let discussion = [
            (
                "threads",
                json!({ "t1": { "anchor": { "quote": "Dana restarted it" }, "createdAt": 1.0, "comments": [
                    { "author": { "participant": "pf", "name": "Fran Okafor" }, "body": "Thanks Dana, and mo too", "createdAt": 1.0 },
                    { "anonymous": true, "author": null, "body": "Fran rushed us", "createdAt": 2.0 },
                ] } }),
            ),
            ("concerns", json!({})),
            (
                "actions",
                json!({ "a1": { "what": "Pair Mo with Dana Scully", "why": "", "kind": "process", "owner": "Scully", "status": "open", "createdAt": 1.0 } }),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let parts = Parts {
            review: closed_review(),
            report: "# T\n\n**Dana Scully** restarted the primary; `Okafor` paged.\n".into(),
            notes: "Mo: done.\n".into(),
            discussion,
        };
        let md = markdown(&parts, Some(&names));
        assert_eq!(
            md,
            "# T\n\n**Participant 1** restarted the primary; `Facilitator` paged.\n\n\
             ## Comments\n\n \
             > \n \
             > Participant 1 restarted it\n\n\
             - **Facilitator**: Thanks Participant 1, and Participant 2 too\n\
             - **Anonymous**: Facilitator rushed us\n\n\
             ## Action items\n\n\
             |What|Why|Kind|Owner|Link|Due|Status|\n\
             |----|---|----|-----|----|---|------|\n\
             |Pair Participant 2 with Participant 1||process|Participant 1|||open|\n\n\
             ## Meeting notes\n\nParticipant 2: done.\n"
        );
        // Kept, the same review names everyone.
        assert!(markdown(&parts, None).contains("- **Fran Okafor**: Thanks Dana, and mo too"));
    }
}
