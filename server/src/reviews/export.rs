//! A review as one Markdown document or one JSON object, converted on the server from its CRDT
//! documents: the report, then comment threads with their quotes (anonymous items as
//! "Anonymous"; hidden and deleted ones left out), concerns with their support, action items as
//! a table, and the meeting notes. The same text is what the library publishes.
//!
//! Everything people wrote (names, quotes, bodies, action items) is escaped so that it renders as
//! the literal text ([`super::mdtext`]); the report and notes come escaped from `markdown.rs`.

use serde_json::{json, Value};

use super::{mdtext, ReviewRecord};

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

fn author(c: &Value) -> String {
    if c["anonymous"] == true || c["author"].is_null() {
        "Anonymous".to_owned()
    } else {
        c["author"]["name"].as_str().unwrap_or("Someone").to_owned()
    }
}

/// Threads with at least one visible comment, as plain data.
fn threads(p: &Parts) -> Vec<Value> {
    sorted(&p.discussion["threads"])
        .into_iter()
        .filter_map(|t| {
            let comments: Vec<Value> = t["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| visible(c))
                .map(|c| json!({ "author": author(c), "body": c["body"], "createdAt": c["createdAt"] }))
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

/// A table cell: escaped text on one line, its pipes escaped for the table.
fn cell(v: &Value) -> String {
    mdtext::inline(&one_line(v.as_str().unwrap_or(""))).replace('|', "\\|")
}

/// A table cell of a value the server checked: on one line, pipes escaped.
fn plain_cell(v: &Value) -> String {
    one_line(v.as_str().unwrap_or("")).replace('|', "\\|")
}

/// A quote as a block quote, each line escaped so that none opens a block inside it.
fn quote_lines(text: &str) -> String {
    text.replace('\r', "\n")
        .lines()
        .map(|l| format!("> {}\n", mdtext::line_start(&mdtext::inline(l))))
        .collect()
}

/// A comment or concern on one line: line breaks of any kind become spaces.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// A comment's or concern's text, escaped, for the middle of a line.
fn text(v: &Value) -> String {
    mdtext::inline(&one_line(v.as_str().unwrap_or("")))
}

/// The review as Markdown.
pub fn markdown(p: &Parts) -> String {
    let mut out = String::new();
    out.push_str(p.report.trim_end());
    out.push_str("\n\n");
    let threads = threads(p);
    if !threads.is_empty() {
        out.push_str("## Comments\n\n");
        for t in &threads {
            match t["quote"].as_str() {
                Some(q) => out.push_str(&quote_lines(q)),
                None => out.push_str("General comment:\n"),
            }
            out.push('\n');
            for c in t["comments"].as_array().into_iter().flatten() {
                let body = text(&c["body"]);
                let who = mdtext::inline(c["author"].as_str().unwrap_or("Someone"));
                out.push_str(&format!("- **{who}**: {body}\n"));
            }
            if t["resolved"] == true {
                out.push_str("- _Resolved_\n");
            }
            out.push('\n');
        }
    }
    let concerns = concerns(p);
    if !concerns.is_empty() {
        out.push_str("## Concerns\n\n");
        for c in &concerns {
            // The body starts the list item's text, where it could open a block.
            let body = mdtext::line_start(&text(&c["body"]));
            let discussed = if c["discussed"] == true {
                ", discussed"
            } else {
                ""
            };
            out.push_str(&format!(
                "- {body} ({} supporting{discussed})\n",
                c["support"]
            ));
        }
        out.push('\n');
    }
    let actions = actions(p);
    if !actions.is_empty() {
        out.push_str("## Action items\n\n| What | Why | Kind | Owner | Link | Due | Status |\n|---|---|---|---|---|---|---|\n");
        for a in &actions {
            // Kind, due day and status are values the server checked (names and a date), written
            // as they are; the rest is what people wrote.
            let fields = ["what", "why", "kind", "owner", "link", "due", "status"].map(|k| {
                if matches!(k, "kind" | "due" | "status") {
                    plain_cell(&a[k])
                } else {
                    cell(&a[k])
                }
            });
            out.push_str(&format!("| {} |\n", fields.join(" | ")));
        }
        out.push('\n');
    }
    if !p.notes.trim().is_empty() {
        out.push_str("## Meeting notes\n\n");
        out.push_str(p.notes.trim_end());
        out.push('\n');
    }
    format!("{}\n", out.trim_end())
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
        "threads": threads(p),
        "concerns": concerns(p),
        "actions": actions(p),
        "notes_markdown": p.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: comment bodies, names, quotes, concerns and action items are emitted as the
    /// literal text, never as live HTML or links.
    #[test]
    fn what_people_wrote_is_exported_as_literal_text() {
        let review = ReviewRecord {
            id: "r".into(),
            title: "T".into(),
            incident_date: None,
            severity: None,
            phase: super::super::Phase::Closed,
            created_at: 0,
            release: Default::default(),
            small_group_anonymity: false,
            invites: Default::default(),
        };
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
        assert_eq!(
            markdown(&parts),
            "# T\n\
             \n\
             ## Comments\n\
             \n\
             > \\# quoted\n\
             > \\<b>bold\\</b>\n\
             \n\
             - **\\<img src=x onerror=alert(1)>**: \\<script>alert(1)\\</script>\n\
             - **\\*\\*Eve\\*\\***: \\[x\\](javascript:alert(1)) \\&amp; !\\[i\\](data:x) second line\n\
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
             | What | Why | Kind | Owner | Link | Due | Status |\n\
             |---|---|---|---|---|---|---|\n\
             | \\<i>a\\</i> \\| b | \\[y\\](javascript:z) | fix | O wner | https://t.example/1 |  | in_progress |\n"
        );
    }
}
