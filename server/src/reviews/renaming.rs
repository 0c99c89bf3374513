//! People's names replaced by their roles, for publishing a review to the library without them
//! (issue 17): "Dana restarted the primary" reads "Participant 2 restarted the primary".
//!
//! Who counts as a person here: everyone who joined the review (its sessions). Each display name
//! gets one label, the role it joined with ("Facilitator", "Author", "Participant",
//! "Observer"), numbered in the order people joined when a role has more than one name. A name
//! that joined with several roles takes the first of them in [`Role::ALL`] order.
//!
//! What is replaced: comment authors (by their participant id), and in every piece of text the
//! whole display name (any case) and each of its words of three letters or more (as written,
//! so that the name "Will" does not take the verb "will" with it). A word shared by two names
//! becomes "someone". Names of people who never joined cannot be known: the preview shows the
//! facilitator exactly what will be public before it is.
//!
//! Anonymous items have no author to replace; nothing here reads or writes one.

use std::collections::HashMap;

use super::{Role, SessionRecord};

/// What replaces a word shared by two names, where it cannot be told whose it is.
const AMBIGUOUS: &str = "someone";

/// One name (or one word of it) to look for.
#[derive(Debug)]
struct Needle {
    /// The name with its white space as single spaces; lower-cased when `any_case`.
    text: String,
    any_case: bool,
    label: String,
}

/// The replacement of a review's names by roles.
#[derive(Debug, Default)]
pub struct Renaming {
    /// Participant id → label, for comment authors.
    authors: HashMap<String, String>,
    /// Needles by their first word (letters and digits), lower-cased; longest first.
    needles: HashMap<String, Vec<Needle>>,
}

/// The words of `s` (runs of letters and digits) as byte ranges.
fn words(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(from) = start.take() {
            out.push((from, i));
        }
    }
    if let Some(from) = start {
        out.push((from, s.len()));
    }
    out
}

/// `s` with each run of white space as one space, trimmed.
fn spaced(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Renaming {
    /// The labels of everyone who joined: `sessions` of one review, in any order.
    pub fn new(sessions: &[SessionRecord]) -> Renaming {
        let mut sessions: Vec<&SessionRecord> = sessions.iter().collect();
        sessions.sort_by_key(|s| s.created_at);
        // One role per name (the first in Role::ALL order), names in the order they joined.
        let rank = |r: Role| Role::ALL.iter().position(|x| *x == r);
        let mut names: Vec<(String, String, Role)> = Vec::new();
        for s in &sessions {
            let name = spaced(&s.name);
            let key = name.to_lowercase();
            match names.iter_mut().find(|(k, _, _)| *k == key) {
                Some(n) if rank(s.role) < rank(n.2) => n.2 = s.role,
                Some(_) => {}
                None => names.push((key, name, s.role)),
            }
        }
        let mut labels: HashMap<String, String> = HashMap::new();
        for role in Role::ALL {
            let of_role: Vec<&String> =
                names.iter().filter(|n| n.2 == role).map(|n| &n.0).collect();
            let r = role.as_str();
            let title = format!("{}{}", r[..1].to_uppercase(), &r[1..]);
            for (i, key) in of_role.iter().enumerate() {
                let label = if of_role.len() == 1 {
                    title.clone()
                } else {
                    format!("{title} {}", i + 1)
                };
                labels.insert((*key).clone(), label);
            }
        }
        let mut renaming = Renaming::default();
        for s in &sessions {
            if let Some(label) = labels.get(&spaced(&s.name).to_lowercase()) {
                renaming
                    .authors
                    .insert(s.participant.clone(), label.clone());
            }
        }
        // Whole names, any case; then their words as written.
        let mut parts: HashMap<String, Option<String>> = HashMap::new();
        for (key, name, _) in &names {
            let label = &labels[key];
            renaming.add(Needle {
                text: key.clone(),
                any_case: true,
                label: label.clone(),
            });
            let split: Vec<&str> = name.split(' ').collect();
            if split.len() < 2 {
                continue;
            }
            for word in split {
                if word.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
                    parts
                        .entry(word.to_owned())
                        .and_modify(|l| {
                            if l.as_ref() != Some(label) {
                                *l = None;
                            }
                        })
                        .or_insert_with(|| Some(label.clone()));
                }
            }
        }
        for (word, label) in parts {
            if !renaming.has_whole_name(&word) {
                renaming.add(Needle {
                    text: word,
                    any_case: false,
                    label: label.unwrap_or_else(|| AMBIGUOUS.to_owned()),
                });
            }
        }
        for candidates in renaming.needles.values_mut() {
            candidates.sort_by_key(|n| std::cmp::Reverse(n.text.len()));
        }
        renaming
    }

    fn add(&mut self, needle: Needle) {
        let Some(&(a, b)) = words(&needle.text).first() else {
            return;
        };
        let first = needle.text[a..b].to_lowercase();
        self.needles.entry(first).or_default().push(needle);
    }

    /// Whether `word` is someone's whole name (which then wins over the same word of a longer
    /// name).
    fn has_whole_name(&self, word: &str) -> bool {
        let key = word.to_lowercase();
        self.needles
            .values()
            .flatten()
            .any(|n| n.any_case && n.text == key)
    }

    /// The label standing for a comment's author, by participant id; "Someone" for a session
    /// that no longer exists.
    pub fn author(&self, participant: &str) -> String {
        self.authors
            .get(participant)
            .cloned()
            .unwrap_or_else(|| "Someone".to_owned())
    }

    /// `text` with every name in it replaced by its label.
    pub fn text(&self, text: &str) -> String {
        if self.needles.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (a, b) in words(text) {
            if a < copied {
                continue;
            }
            let Some(candidates) = self.needles.get(&text[a..b].to_lowercase()) else {
                continue;
            };
            if let Some((end, label)) = candidates
                .iter()
                .find_map(|n| Some((matched(&text[a..], n)? + a, &n.label)))
            {
                out.push_str(&text[copied..a]);
                out.push_str(label);
                copied = end;
            }
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// Where `needle` ends when `text` starts with it (a space in it standing for any white space
/// in `text`) and no letter or digit follows: its length in `text`.
fn matched(text: &str, needle: &Needle) -> Option<usize> {
    let mut at = text.char_indices().peekable();
    for n in needle.text.chars() {
        let (_, c) = at.next()?;
        if n == ' ' {
            if !c.is_whitespace() {
                return None;
            }
            while at.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                at.next();
            }
        } else if needle.any_case {
            if !c.to_lowercase().eq(n.to_lowercase()) {
                return None;
            }
        } else if c != n {
            return None;
        }
    }
    match at.next() {
        Some((_, c)) if c.is_alphanumeric() => None,
        Some((end, _)) => Some(end),
        None => Some(text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &str, role: Role, at: u64) -> SessionRecord {
        SessionRecord {
            review: "r".into(),
            role,
            participant: format!("p-{name}-{at}"),
            name: name.into(),
            created_at: at,
        }
    }

    #[test]
    fn names_become_roles_numbered_when_a_role_has_several() {
        let r = Renaming::new(&[
            session("Fran Facil", Role::Facilitator, 1),
            session("Dana Scully", Role::Participant, 3),
            session("Ann", Role::Author, 2),
            session("Will Byers", Role::Participant, 4),
            session("dana scully", Role::Participant, 5),
        ]);
        assert_eq!(r.author("p-Fran Facil-1"), "Facilitator");
        assert_eq!(r.author("p-Ann-2"), "Author");
        assert_eq!(r.author("p-Dana Scully-3"), "Participant 1");
        // The same name joining again is the same person.
        assert_eq!(r.author("p-dana scully-5"), "Participant 1");
        assert_eq!(r.author("p-Will Byers-4"), "Participant 2");
        assert_eq!(r.author("gone"), "Someone");
        assert_eq!(
            r.text("DANA SCULLY asked Dana, and Scully's pager; we will ask Will and ann."),
            "Participant 1 asked Participant 1, and Participant 1's pager; we will ask Participant 2 and Author."
        );
        // Inside other words nothing changes.
        assert_eq!(r.text("Annual Danae Anne"), "Annual Danae Anne");
    }

    #[test]
    fn a_word_two_names_share_is_nobody_in_particular() {
        let r = Renaming::new(&[
            session("Alex Kim", Role::Author, 1),
            session("Alex Ray", Role::Participant, 2),
            session("Alex", Role::Observer, 3),
        ]);
        assert_eq!(
            r.text("Alex Kim paged Alex Ray; Kim and Ray told alex."),
            "Author paged Participant; Author and Participant told Observer."
        );
        let r = Renaming::new(&[
            session("Alex Kim", Role::Author, 1),
            session("Alex Ray", Role::Participant, 2),
        ]);
        assert_eq!(r.text("Then Alex left."), "Then someone left.");
    }

    #[test]
    fn names_with_marks_inside_are_found() {
        let r = Renaming::new(&[
            session("Siobhán O'Brien", Role::Participant, 1),
            session("Jean-Luc", Role::Author, 2),
        ]);
        assert_eq!(
            r.text("O'Brien and jean-luc; siobhán o'brien."),
            "Participant and Author; Participant."
        );
        assert_eq!(Renaming::new(&[]).text("Dana"), "Dana");
    }
}
