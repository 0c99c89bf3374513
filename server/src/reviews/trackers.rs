//! Tracker links of action items (issue 20): a link is an `http(s)` URL with a host, shown with
//! the tracker's name (GitHub, GitLab, Jira, Linear, Shortcut, or the host), and the server's
//! `--tracker-pattern REGEX=URL` settings turn matching text (`PROJ-123`) into links: in an
//! item's `what`, and as its `link` (a key given as the link is stored as the pattern's URL).
//!
//! Patterns are parsed once at start-up; a bad one stops the server with a sentence that names
//! it ([`Trackers::parse`]).

use regex_automata::meta::Regex;
use serde::Serialize;

use super::urls::WebUrl;

/// Most patterns a server takes.
pub const MAX_PATTERNS: usize = 32;
/// Most references found in one text.
pub const MAX_REFERENCES: usize = 10;

/// One `REGEX=URL` setting: text matching `regex` links to `url` with the match put for `{}`.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: Regex,
    /// The same, anchored at both ends: the whole text is a key.
    whole: Regex,
    prefix: String,
    suffix: String,
    name: String,
}

/// The server's tracker patterns (none by default).
#[derive(Debug, Clone, Default)]
pub struct Trackers {
    patterns: Vec<Pattern>,
}

/// The tracker an item's link points into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TrackerLink {
    /// The tracker's name: `GitHub`, `GitLab`, `Jira`, `Linear`, `Shortcut`, or the link's host.
    #[schema(min_length = 1)]
    pub name: String,
    /// The link.
    #[schema(pattern = "^https?://")]
    pub url: String,
    /// The issue key, when the link is one of a server pattern's links (`PROJ-123`); else null.
    #[schema(required = true)]
    pub key: Option<String>,
}

/// Text in an item that a server pattern turns into a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reference {
    /// The matched text, as written (`PROJ-123`).
    #[schema(min_length = 1)]
    pub key: String,
    /// Where it links to.
    #[schema(pattern = "^https?://")]
    pub url: String,
    /// The tracker's name (from the pattern's link).
    #[schema(min_length = 1)]
    pub name: String,
}

/// The host of an `http`/`https` URL (see [`WebUrl::parse`]), lower-cased, an IPv6 address in
/// brackets; `None` when `url` is not one.
pub fn link_host(url: &str) -> Option<String> {
    WebUrl::parse(url).map(|u| u.host_in_url())
}

/// The name people know a tracker by, from its host.
pub fn tracker_name(host: &str) -> String {
    let host = host.strip_prefix("www.").unwrap_or(host);
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if under("github.com") {
        "GitHub".into()
    } else if under("gitlab.com") || host.starts_with("gitlab.") {
        "GitLab".into()
    } else if under("atlassian.net") || host.starts_with("jira.") {
        "Jira".into()
    } else if under("linear.app") {
        "Linear".into()
    } else if under("shortcut.com") || under("app.shortcut.com") {
        "Shortcut".into()
    } else {
        host.to_owned()
    }
}

/// Splits a setting into its patterns: each `REGEX=URL`, repeated flags or commas between
/// them. A comma ends a pattern only once its `=http…` part has begun, so commas in a regex
/// (`[0-9]{1,5}`) stay in it; a comma in a link is written `%2C`.
pub fn split_settings<S: AsRef<str>>(values: &[S]) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        let mut current = String::new();
        for c in value.as_ref().chars() {
            if c == ',' && url_started(&current) {
                out.push(std::mem::take(&mut current));
            } else {
                current.push(c);
            }
        }
        out.push(current);
    }
    out.into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn url_started(pattern: &str) -> bool {
    let lower = pattern.to_ascii_lowercase();
    lower.contains("=http://") || lower.contains("=https://")
}

impl Trackers {
    /// Parses `REGEX=URL` settings (see [`split_settings`]). The URL is an `http`/`https` link
    /// with `{}` once, where the matched text goes; the regex must not match empty text.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Trackers, String> {
        let settings = split_settings(values);
        if settings.len() > MAX_PATTERNS {
            return Err(format!(
                "--tracker-pattern: at most {MAX_PATTERNS} patterns, not {}",
                settings.len()
            ));
        }
        let mut patterns = Vec::new();
        for setting in settings {
            let bad = |why: &str| format!("--tracker-pattern {setting:?}: {why}");
            let lower = setting.to_ascii_lowercase();
            let at = [lower.find("=https://"), lower.find("=http://")]
                .into_iter()
                .flatten()
                .min()
                .ok_or_else(|| bad("write it as REGEX=URL, the URL starting with http:// or https:// and holding {} where the matched text goes"))?;
            let (source, url) = (&setting[..at], &setting[at + 1..]);
            if source.is_empty() {
                return Err(bad("the regular expression before `=` is empty"));
            }
            let Some((prefix, suffix)) = url.split_once("{}") else {
                return Err(bad("the URL has no {} where the matched text goes"));
            };
            if suffix.contains("{}") {
                return Err(bad("the URL holds {} more than once"));
            }
            let Some(host) = link_host(&format!("{prefix}X{suffix}")) else {
                return Err(bad("the URL is not a valid http or https link"));
            };
            let regex = Regex::new(source).map_err(|e| {
                bad(&format!(
                    "the regular expression does not compile: {}",
                    e.to_string().lines().next().unwrap_or("")
                ))
            })?;
            if regex.is_match("") {
                return Err(bad("the regular expression matches empty text"));
            }
            let whole = Regex::new(&format!("^(?:{source})$"))
                .map_err(|_| bad("the regular expression does not compile"))?;
            patterns.push(Pattern {
                source: source.to_owned(),
                regex,
                whole,
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
                name: tracker_name(&host),
            });
        }
        Ok(Trackers { patterns })
    }

    /// Whether the server has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as configured (`REGEX`), for the start-up log.
    pub fn describe(&self) -> Vec<&str> {
        self.patterns.iter().map(|p| p.source.as_str()).collect()
    }

    /// A key that one pattern matches whole (`PROJ-123`): that pattern's link for it.
    pub fn expand(&self, key: &str) -> Option<String> {
        self.patterns
            .iter()
            .find(|p| p.whole.is_match(key))
            .map(|p| format!("{}{}{}", p.prefix, key, p.suffix))
    }

    /// What an item's (validated) link shows: the tracker's name, and the key when the link is
    /// a pattern's link for a key it matches.
    pub fn link(&self, url: &str) -> Option<TrackerLink> {
        let host = link_host(url)?;
        let pattern = self.patterns.iter().find_map(|p| {
            let key = url.strip_prefix(p.prefix.as_str())?;
            let key = key.strip_suffix(p.suffix.as_str())?;
            p.whole.is_match(key).then_some((p, key))
        });
        Some(match pattern {
            Some((p, key)) => TrackerLink {
                name: p.name.clone(),
                url: url.to_owned(),
                key: Some(key.to_owned()),
            },
            None => TrackerLink {
                name: tracker_name(&host),
                url: url.to_owned(),
                key: None,
            },
        })
    }

    /// Text in `text` that a pattern matches, as links, in order (at most [`MAX_REFERENCES`]);
    /// a match counts only when it neither starts nor ends inside a word.
    pub fn references(&self, text: &str) -> Vec<Reference> {
        let mut found: Vec<(usize, Reference)> = Vec::new();
        for p in &self.patterns {
            for m in p.regex.find_iter(text) {
                let key = &text[m.range()];
                let before = text[..m.start()].chars().next_back();
                let after = text[m.end()..].chars().next();
                let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
                let inside = found
                    .iter()
                    .any(|(at, r)| m.start() < at + r.key.len() && *at < m.end());
                if key.is_empty() || !edge(before) || !edge(after) || inside {
                    continue;
                }
                found.push((
                    m.start(),
                    Reference {
                        key: key.to_owned(),
                        url: format!("{}{}{}", p.prefix, key, p.suffix),
                        name: p.name.clone(),
                    },
                ));
            }
        }
        found.sort_by_key(|(at, _)| *at);
        found
            .into_iter()
            .take(MAX_REFERENCES)
            .map(|(_, r)| r)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_need_a_host_and_a_web_scheme() {
        assert_eq!(
            link_host("https://github.com/acme/api/issues/12").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            link_host("HTTP://Tracker.Example:8080").as_deref(),
            Some("tracker.example")
        );
        assert_eq!(link_host("https://[::1]:8443/x").as_deref(), Some("[::1]"));
        for bad in [
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://user:pw@evil.example/",
            "https://exa mple.com",
            "https://-bad-.example/",
            "https://example.com:99999999/",
            "ftp://example.com/",
            "https://a..b/",
        ] {
            assert_eq!(link_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_trackers_are_named() {
        let t = Trackers::default();
        let name = |u: &str| t.link(u).map(|l| l.name);
        assert_eq!(
            name("https://github.com/a/b/issues/1").as_deref(),
            Some("GitHub")
        );
        assert_eq!(
            name("https://gitlab.com/a/b/-/issues/1").as_deref(),
            Some("GitLab")
        );
        assert_eq!(
            name("https://gitlab.acme.io/a/-/issues/1").as_deref(),
            Some("GitLab")
        );
        assert_eq!(
            name("https://acme.atlassian.net/browse/OPS-1").as_deref(),
            Some("Jira")
        );
        assert_eq!(
            name("https://linear.app/acme/issue/ENG-1").as_deref(),
            Some("Linear")
        );
        assert_eq!(
            name("https://app.shortcut.com/acme/story/1").as_deref(),
            Some("Shortcut")
        );
        assert_eq!(
            name("https://www.tracker.example/1").as_deref(),
            Some("tracker.example")
        );
    }

    #[test]
    fn patterns_turn_keys_into_links() {
        let t = Trackers::parse(&[
            "PROJ-[0-9]+=https://tracker.example/browse/{},OPS-[0-9]{1,5}=https://acme.atlassian.net/browse/{}",
        ])
        .expect("valid patterns");
        assert_eq!(t.describe(), vec!["PROJ-[0-9]+", "OPS-[0-9]{1,5}"]);
        assert_eq!(
            t.expand("PROJ-12").as_deref(),
            Some("https://tracker.example/browse/PROJ-12")
        );
        assert_eq!(t.expand("PROJ-12x"), None);
        let refs = t.references("Fix OPS-7 and PROJ-12, not XPROJ-3 or PROJ-4a");
        let keys: Vec<&str> = refs.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["OPS-7", "PROJ-12"]);
        assert_eq!(refs[0].name, "Jira");
        let link = t
            .link("https://tracker.example/browse/PROJ-12")
            .expect("a link");
        assert_eq!(link.key.as_deref(), Some("PROJ-12"));
        assert_eq!(link.name, "tracker.example");
    }

    #[test]
    fn bad_patterns_are_named() {
        let err = |s: &str| Trackers::parse(&[s]).expect_err("refused");
        assert_eq!(
            err("PROJ-[0-9]+"),
            "--tracker-pattern \"PROJ-[0-9]+\": write it as REGEX=URL, the URL starting with http:// or https:// and holding {} where the matched text goes"
        );
        assert_eq!(
            err("PROJ-[0-9]+=https://t.example/browse/"),
            "--tracker-pattern \"PROJ-[0-9]+=https://t.example/browse/\": the URL has no {} where the matched text goes"
        );
        assert!(err("PROJ-[0-9=https://t.example/{}")
            .starts_with("--tracker-pattern \"PROJ-[0-9=https://t.example/{}\": the regular expression does not compile"));
        assert_eq!(
            err("[0-9]*=https://t.example/{}"),
            "--tracker-pattern \"[0-9]*=https://t.example/{}\": the regular expression matches empty text"
        );
        assert_eq!(
            err("X-[0-9]+=https://user@t.example/{}"),
            "--tracker-pattern \"X-[0-9]+=https://user@t.example/{}\": the URL is not a valid http or https link"
        );
    }
}
