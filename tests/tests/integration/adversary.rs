//! The statistical adversary of `docs/anonymity.md`: several people post named and anonymous
//! items in the same windows, and an attacker who knows everyone's named activity (who posted a
//! named comment when) tries to name the author of each anonymous item from what the server
//! leaves behind — its trace-level log and copies of its data directory taken during the hold,
//! after the release and after a clean stop. Each attack must guess no better than chance. Both
//! tests run on sled and on PostgreSQL, where a copy is also the database: its rows in their order
//! on disk, its files and the write-ahead log.
//!
//! The people of the first attack are signed in, through an authenticating proxy's headers
//! (issue 19): they join with the name their sign-in gives, their sessions are linked to their
//! person records, and every request they make, anonymous submissions included, carries their
//! identity as a proxy sends it. The person records and claims must not bring the attacker any
//! closer to an author.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use debrief_tests::api::{request, Raw, Reply, Review, ROLES};
use debrief_tests::postgres::{files_under, Backend, HeldRow};
use debrief_tests::{ChildServer, Client};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use yrs::types::ToJson;
use yrs::{ReadTxn, Transact};

/// Bytes of one slot of the held-items file (`server/src/reviews/held.rs`).
const SLOT_BYTES: usize = debrief_server::reviews::anonymous::held::SLOT_BYTES;

/// Slots every tick of a cluster node rewrites, busy or idle (`server/src/reviews/anonymous/sealed.rs`).
const TICK_WRITES: usize = debrief_server::reviews::anonymous::sealed::TICK_WRITES;

/// Windows of the attack, and people posting in each (out of [`PEOPLE`]).
const WINDOWS: usize = 10;
const POSTERS_PER_WINDOW: usize = 3;
const PEOPLE: usize = 5;

/// One anonymous submission and the truth the attacker is after.
#[derive(Debug, Clone)]
struct Submission {
    window: usize,
    /// Index of the poster in `people`.
    author: usize,
    /// Posters of its window in the order they submitted.
    order: Vec<usize>,
    text: String,
    id: String,
    key: String,
}

/// Named activity the attacker knows: who posted a named comment, and when (ms since the epoch).
#[derive(Debug, Clone)]
struct Named {
    window: usize,
    person: usize,
    at_ms: u64,
    text: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// Where `needle` first occurs in the snapshot taken as one byte string (files in path order),
/// and in which file.
fn locate(snap: &[(PathBuf, Vec<u8>)], needle: &str) -> Option<(u64, PathBuf)> {
    let mut base = 0u64;
    for (path, bytes) in snap {
        if let Some(at) = find(bytes, needle.as_bytes()) {
            return Some((base + at as u64, path.clone()));
        }
        base += bytes.len() as u64;
    }
    None
}

/// Many strings looked for at once: one pass over each part of a copy finds any of them (a copy
/// of a cluster node is tens of thousands of rows and write-ahead segments of 16 MiB; looking
/// for each string in turn made most of the statistical adversary's time).
struct Needles {
    patterns: Vec<String>,
    searcher: aho_corasick::AhoCorasick,
}

impl Needles {
    fn new(patterns: Vec<String>) -> Needles {
        let searcher = aho_corasick::AhoCorasick::new(&patterns).expect("a searcher");
        Needles { patterns, searcher }
    }

    /// Every encoding ([`encodings`]) of each of `secrets`.
    fn encoded<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Needles {
        Needles::new(secrets.into_iter().flat_map(encodings).collect())
    }

    /// Where each pattern first occurs in the copy taken as one byte string (parts in order).
    fn first_places(&self, copy: &[(PathBuf, Vec<u8>)]) -> Located {
        let mut at: HashMap<String, u64> = HashMap::new();
        let mut base = 0u64;
        for (_, bytes) in copy {
            for m in self.searcher.find_overlapping_iter(bytes.as_slice()) {
                at.entry(self.patterns[m.pattern().as_usize()].clone())
                    .or_insert(base + m.start() as u64);
            }
            base += bytes.len() as u64;
        }
        Located {
            looked_for: self.patterns.iter().cloned().collect(),
            at,
        }
    }

    /// The parts of `copy` that hold any of the patterns, each with one pattern it holds.
    fn holders<'a>(&self, copy: &'a [(PathBuf, Vec<u8>)]) -> Vec<(&'a PathBuf, String)> {
        copy.iter()
            .filter_map(|(path, bytes)| {
                let m = self.searcher.find(bytes.as_slice())?;
                Some((path, self.patterns[m.pattern().as_usize()].clone()))
            })
            .collect()
    }
}

/// Where strings first occur in one copy ([`Needles::first_places`]): what [`locate`] answers,
/// found in one pass for all of them.
struct Located {
    looked_for: std::collections::HashSet<String>,
    at: HashMap<String, u64>,
}

impl Located {
    /// Where `needle` first occurs; it must be one of the strings looked for.
    fn at(&self, needle: &str) -> Option<u64> {
        assert!(
            self.looked_for.contains(needle),
            "{needle:?} was not looked for"
        );
        self.at.get(needle).copied()
    }
}

/// Every way a log line could carry `secret`: as text, hex, base64 (at any alignment) and as a
/// list of byte values, the way sled's debug output prints keys and values.
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut out = vec![
        secret.to_owned(),
        hex::encode(bytes),
        hex::encode_upper(bytes),
    ];
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ] {
        // Embedded in a longer value, the encoding of `bytes` depends on its offset modulo 3;
        // the middle of each alignment does not depend on what surrounds it.
        for pad in 0..3 {
            let mut padded = vec![0u8; pad];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let start = if pad == 0 { 0 } else { 4 };
            let end = encoded.len().saturating_sub(4);
            if end > start + 8 {
                out.push(encoded[start..end].to_owned());
            }
        }
    }
    let numbers: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    out.push(numbers.join(", "));
    out.push(numbers.join(","));
    out.push(numbers.join(" "));
    out
}

/// The time at the start of a log line (`2026-12-06T09:30:00.123456Z …`), ms since the epoch.
fn line_time(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?;
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = t.next()?.parse().ok()?;
    // Days since the epoch (proleptic Gregorian calendar).
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + day - 719_469;
    let ms = ((days * 86_400 + h * 3600 + min * 60) as f64 + secs) * 1000.0;
    Some(ms as u64)
}

/// How many of `guesses` (item → guessed author) are right.
fn hits(subs: &[Submission], guess: impl Fn(&Submission) -> usize) -> usize {
    subs.iter().filter(|s| guess(s) == s.author).count()
}

/// Chance is one in [`POSTERS_PER_WINDOW`]; an attack that works names nearly every author.
fn assert_chance(attack: &str, correct: usize, total: usize) {
    assert_chance_among(attack, correct, total, POSTERS_PER_WINDOW);
}

/// Asserts that an attack naming `correct` of `total` authors, each one of `candidates` people,
/// did no better than chance. The bound lies four standard deviations above chance, so a fair
/// run passes it with probability above 0.9999.
fn assert_chance_among(attack: &str, correct: usize, total: usize, candidates: usize) {
    let p = 1.0 / candidates as f64;
    let n = total as f64;
    let bound = n * p + 4.0 * (n * p * (1.0 - p)).sqrt();
    eprintln!("{attack}: named {correct} of {total} authors");
    assert!(
        (correct as f64) <= bound,
        "{attack}: named {correct} of {total} authors (chance {:.1}, bound {bound:.1})",
        n * p
    );
}

/// Asserts that no part of `copy` (a file of the data directory, a row, a database file, a
/// write-ahead segment) holds any of `secrets` in any encoding of [`encodings`].
fn assert_nowhere(copy: &[(PathBuf, Vec<u8>)], secrets: &[&str], when: &str) {
    let found = Needles::encoded(secrets.iter().copied()).holders(copy);
    assert!(
        found.is_empty(),
        "{when}: a held item, or its encoding, is stored: {found:?}"
    );
}

/// Off a cluster, the byte-level comparison of one acknowledged submission: its text is in the
/// held-items file only (in no table, row or log of the database either), and one slot of it is
/// all that changed there between copies taken before (`before`, when the file existed) and
/// after.
fn held_in_one_slot(
    held_file: &std::path::Path,
    before: &[(PathBuf, Vec<u8>)],
    after: &[(PathBuf, Vec<u8>)],
    text: &str,
) {
    let found: Vec<&std::path::Path> = holders(after, text)
        .into_iter()
        .map(PathBuf::as_path)
        .collect();
    assert_eq!(found, vec![held_file], "a held text outside the held file");
    let new = &after
        .iter()
        .find(|(p, _)| p.as_path() == held_file)
        .expect("held")
        .1;
    if let Some((_, old)) = before.iter().find(|(p, _)| p.as_path() == held_file) {
        assert_eq!(old.len(), new.len(), "the held file keeps its size");
        let changed = old
            .chunks(SLOT_BYTES)
            .zip(new.chunks(SLOT_BYTES))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 1, "one submission changes one slot");
    }
}

/// On a node of a cluster, every row of `held_slots` as a copy of the database shows it (what the
/// attacker looks at instead of a held file); elsewhere nothing.
async fn held_rows(backend: &Backend) -> Vec<HeldRow> {
    match backend {
        Backend::Cluster(db, _) => db.held_rows().await,
        _ => Vec::new(),
    }
}

/// On a node of a cluster, what the test keeps of each acknowledged submission, in order: the
/// slots whose rows changed around it (all an attacker without the secret learns) and the slot
/// that holds it (the test's knowledge, from opening the changed slots with the secret).
#[derive(Debug, Default)]
struct SealedHold {
    brackets: Vec<BTreeSet<u32>>,
    slots: Vec<u32>,
}

impl SealedHold {
    /// The checks of [`held_sealed`] for the submission just acknowledged: `before` are the held
    /// rows read right before it was submitted, `after` a copy taken once it was acknowledged,
    /// `held` every secret held so far, its text last.
    async fn acknowledged(
        &mut self,
        backend: &Backend,
        data: &std::path::Path,
        after: &[(PathBuf, Vec<u8>)],
        before: &[HeldRow],
        held: &[&str],
    ) {
        let now = held_rows(backend).await;
        let (changed, slot) = held_sealed(backend, data, after, (before, &now), held).await;
        self.brackets.push(changed);
        self.slots.push(slot);
    }
}

/// The slots of a cluster node's `held_slots` whose rows changed between two copies (a row
/// changed when its version moved or another transaction wrote it). Every tick rewrites whole
/// slots, so every row of a changed slot changed; asserted here.
fn changed_slots(before: &[HeldRow], after: &[HeldRow]) -> BTreeSet<u32> {
    let key = |r: &HeldRow| (r.slot, r.piece);
    let old: HashMap<(u32, u16), &HeldRow> = before.iter().map(|r| (key(r), r)).collect();
    assert_eq!(before.len(), after.len(), "held_slots keeps its rows");
    let mut changed: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for row in after {
        let entry = changed.entry(row.slot).or_default();
        entry.1 += 1;
        if old.get(&key(row)) != Some(&row) {
            entry.0 += 1;
        }
    }
    changed.retain(|_, (n, _)| *n > 0);
    for (slot, (n, of)) in &changed {
        assert_eq!(
            n, of,
            "slot {slot}: {n} of its {of} rows changed, not the whole slot"
        );
    }
    changed.into_keys().collect()
}

/// The slot whose content, opened with the cluster secret (the test's knowledge, not the
/// attacker's), holds `text`; exactly one does.
fn slot_holding(unsealed: &[(u32, Vec<u8>)], text: &str) -> u32 {
    let holding: Vec<u32> = unsealed
        .iter()
        .filter(|(_, plain)| find(plain, text.as_bytes()).is_some())
        .map(|(slot, _)| *slot)
        .collect();
    assert_eq!(holding.len(), 1, "{text:?} is held in slots {holding:?}");
    holding[0]
}

/// On a node of a cluster, the checks of one acknowledged submission, the equivalent of "it
/// lies in one slot of the held file and nowhere else": no part of `after` holds the text of any
/// item held so far (`held`, this one last) in any encoding (there is no held file), the rows of
/// `held_slots` changed only in whole slots and at least one tick's worth, and (opened with the
/// secret) the item lies in exactly one slot, one of those that changed. Only the changed slots
/// are opened: the others hold the bytes they held before the item was submitted, so none of
/// them can hold its text. Answers the slots that changed (all an attacker without the secret
/// learns) and the item's slot.
async fn held_sealed(
    backend: &Backend,
    data: &std::path::Path,
    after: &[(PathBuf, Vec<u8>)],
    (before, now): (&[HeldRow], &[HeldRow]),
    held: &[&str],
) -> (BTreeSet<u32>, u32) {
    let text = held.last().expect("the item just submitted");
    assert_nowhere(after, held, "acknowledged and held");
    assert!(
        !data.join("held").exists(),
        "a cluster node has no held file"
    );
    let changed = changed_slots(before, now);
    assert!(
        changed.len() >= TICK_WRITES,
        "the tick that acknowledged the item rewrote {} slots",
        changed.len()
    );
    let opened: Vec<u32> = changed.iter().copied().collect();
    let unsealed = backend
        .unsealed_only(Some(&opened))
        .await
        .expect("a cluster node");
    assert_eq!(unsealed.len(), opened.len(), "every changed slot opened");
    let slot = slot_holding(&unsealed, text);
    (changed, slot)
}

/// On a node of a cluster, waits (up to `patience`) until the slots that held items (`slots`)
/// are empty again (opened with the secret): released items are wiped by the ticks after their
/// release. Then every slot is opened once: all are empty.
async fn wait_wiped(backend: &Backend, slots: &[u32], patience: std::time::Duration) {
    let empty = |unsealed: &[(u32, Vec<u8>)]| {
        unsealed
            .iter()
            .all(|(_, plain)| plain.iter().all(|b| *b == 0))
    };
    debrief_tests::within_for(patience, "every released slot wiped", async {
        loop {
            let unsealed = backend
                .unsealed_only(Some(slots))
                .await
                .expect("a cluster node");
            if empty(&unsealed) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    let all = backend.unsealed().await.expect("a cluster node");
    assert!(empty(&all), "a held slot is not empty after the release");
}

/// The ticks that wiped released slots, as a copy shows them without the secret: the row
/// versions written after `pre` (taken before the release), grouped by the transaction that
/// wrote them, in transaction order, keeping the ticks every slot of which is in `held` (slots
/// the attacker saw written during the hold): re-seals of slots chosen at random hardly ever are.
fn wipe_ticks(pre: &[HeldRow], post: &[HeldRow], held: &BTreeSet<u32>) -> Vec<BTreeSet<u32>> {
    let old: HashMap<(u32, u16), u64> = pre.iter().map(|r| ((r.slot, r.piece), r.xmin)).collect();
    let mut ticks: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for row in post {
        if old.get(&(row.slot, row.piece)) != Some(&row.xmin) {
            ticks.entry(row.xmin).or_default().insert(row.slot);
        }
    }
    ticks
        .into_values()
        .filter(|slots| slots.iter().all(|s| held.contains(s)))
        .collect()
}

/// The release bridge of a cluster node: released items ranked by where they lie in a copy
/// after the release (the order the release wrote them in), the k-th given to the k-th tick of
/// wipes (a tick wipes [`TICK_WRITES`] released slots); then the author of the item is whoever's
/// submission was followed by the first change of one of that tick's slots, within the item's
/// window. `texts[i]` is item i's released text, `window[i]` its window, `brackets[i]` the slots
/// that changed around submission i, `anchors[i]` the person the attacker saw active right
/// before submission i. An item the bridge cannot place gets no guess.
struct Bridge<'a> {
    texts: Vec<&'a str>,
    window: Vec<usize>,
    brackets: &'a [BTreeSet<u32>],
    anchors: Vec<usize>,
}

impl Bridge<'_> {
    /// The bridge's guesses from what copies without the secret show: the held rows before the
    /// release (`pre`), after every released slot was wiped (`post`), and where the released
    /// items lie after the release. The attacker sees a tick of wipes for every
    /// [`TICK_WRITES`] released items (asserted: the attack has its material).
    fn guesses_from_rows(
        &self,
        pre: &[HeldRow],
        post: &[HeldRow],
        after_release: &Located,
    ) -> Vec<Option<usize>> {
        let held: BTreeSet<u32> = self.brackets.iter().flatten().copied().collect();
        let wipes = wipe_ticks(pre, post, &held);
        assert!(
            wipes.len() >= self.texts.len() / TICK_WRITES,
            "the attacker sees the ticks that wiped the released slots: {wipes:?}"
        );
        let guesses = self.guesses(after_release, &wipes);
        eprintln!(
            "the bridge: {} ticks of wipes seen, {} of {} items placed",
            wipes.len(),
            guesses.iter().flatten().count(),
            guesses.len()
        );
        guesses
    }

    fn guesses(&self, after_release: &Located, wipes: &[BTreeSet<u32>]) -> Vec<Option<usize>> {
        let mut ranked: Vec<(u64, usize)> = self
            .texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| after_release.at(t).map(|at| (at, i)))
            .collect();
        ranked.sort();
        let first_change = |slot: u32| self.brackets.iter().position(|b| b.contains(&slot));
        let mut out = vec![None; self.texts.len()];
        for (rank, (_, i)) in ranked.iter().enumerate() {
            let Some(tick) = wipes.get(rank / TICK_WRITES) else {
                continue;
            };
            out[*i] = tick
                .iter()
                .filter_map(|s| first_change(*s))
                .find(|j| self.window[*j] == self.window[*i])
                .map(|j| self.anchors[j]);
        }
        out
    }
}

async fn post(review: &Review, token: &str, path: &str, body: Value) -> Reply {
    let path = format!("/api/reviews/{}{path}", review.id);
    request(review.addr, "POST", &path, Some(token), Some(&body)).await
}

/// A person as the authenticating proxy names them (oauth2-proxy's headers).
#[derive(Debug, Clone)]
struct SignedIn {
    subject: String,
    name: String,
    email: String,
}

impl SignedIn {
    fn new(i: usize) -> SignedIn {
        SignedIn {
            subject: format!("subject-{i}-5f0c2a9e"),
            name: format!("Signed In Person {i}"),
            email: format!("adversary-person-{i}@example.org"),
        }
    }

    /// Every claim, as the attacker would look for it.
    fn claims(&self) -> [&str; 3] {
        [&self.subject, &self.name, &self.email]
    }
}

/// The proxy's flags: the identity headers are honoured from loopback, where the test runs.
const PROXY_FLAGS: [&str; 8] = [
    "--trusted-identity-header",
    "X-Forwarded-User",
    "--trusted-name-header",
    "X-Forwarded-Preferred-Username",
    "--trusted-email-header",
    "X-Forwarded-Email",
    "--trusted-proxy",
    "127.0.0.1",
];

/// A request through the proxy: with the person's identity headers (and a session token, when
/// given), as the proxy forwards every request of a signed-in person.
async fn as_person(
    addr: std::net::SocketAddr,
    person: &SignedIn,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> Reply {
    let body = body.to_string();
    let headers = [
        ("X-Forwarded-User", person.subject.as_str()),
        ("X-Forwarded-Preferred-Username", person.name.as_str()),
        ("X-Forwarded-Email", person.email.as_str()),
    ];
    Raw {
        method: "POST",
        path,
        bearer,
        body: Some(&body),
        headers: &headers,
        ..Raw::default()
    }
    .reply(addr)
    .await
    .0
}

/// The texts of every comment and concern the reader's discussion holds.
fn released_texts(client: &Client) -> Vec<String> {
    let txn = client.doc.transact();
    let mut out = Vec::new();
    for root in ["threads", "concerns"] {
        let Some(map) = txn.get_map(root) else {
            continue;
        };
        let v = serde_json::to_value(map.to_json(&txn)).unwrap_or(Value::Null);
        for entry in v.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(body) = entry["body"].as_str() {
                out.push(body.to_owned());
            }
            for c in entry["comments"].as_array().into_iter().flatten() {
                if let Some(body) = c["body"].as_str() {
                    out.push(body.to_owned());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_statistical_adversary_guesses_authors_no_better_than_chance() {
    statistical_adversary(Backend::Sled).await;
}

/// The same on PostgreSQL (issue 18): each copy is the data directory and the database (its
/// rows in their order on disk, its files and the write-ahead log).
#[tokio::test]
async fn the_statistical_adversary_guesses_authors_no_better_than_chance_on_postgres() {
    statistical_adversary(Backend::postgres().await).await;
}

/// The same on a node of a cluster (issue 18), where held items are sealed in `held_slots` and
/// rewritten on a clock: while held, no copy holds an item's text in any encoding, and the
/// attacker works on which held rows changed when instead of positions in a held file.
#[tokio::test]
async fn the_statistical_adversary_guesses_authors_no_better_than_chance_on_a_cluster_node() {
    statistical_adversary(Backend::cluster().await).await;
}

/// Where `needle` is stored in `copy`: every file or row holding it.
fn holders<'a>(copy: &'a [(PathBuf, Vec<u8>)], needle: &str) -> Vec<&'a PathBuf> {
    copy.iter()
        .filter(|(_, bytes)| find(bytes, needle.as_bytes()).is_some())
        .map(|(path, _)| path)
        .collect()
}

async fn statistical_adversary(backend: Backend) {
    // A node of a cluster keeps held items sealed in `held_slots`, rewritten on a clock: no
    // held file, and the attacker looks at the table's row versions instead.
    let sealed = matches!(backend, Backend::Cluster(..));
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    // Nothing is released while the windows run (so every copy taken during them holds every
    // item so far); closing the review releases them all.
    let flags = backend.args();
    let mut args = vec!["--anonymous-cadence-secs", "86400"];
    args.extend(PROXY_FLAGS);
    args.extend(flags.iter().map(String::as_str));
    let server = ChildServer::start_with(&data, &args, Some(&log)).await;
    // A signed-in facilitator creates the review; its participant link needs sign-in.
    let creator = SignedIn::new(99);
    let created = as_person(
        server.addr,
        &creator,
        "/api/reviews",
        None,
        json!({ "title": "Queue backlog", "sign_in_required": ["participant"] }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mut review = Review {
        addr: server.addr,
        id: created.body["review"]["id"]
            .as_str()
            .expect("id")
            .to_owned(),
        invites: ROLES
            .iter()
            .map(|r| {
                let token = created.body["invites"][r]["token"].as_str().expect("token");
                (r.to_string(), token.to_owned())
            })
            .collect(),
        sessions: HashMap::new(),
    };
    for role in ["facilitator", "author", "observer"] {
        let session = review.join(role, &format!("{role} person")).await;
        review.sessions.insert(role.to_owned(), session);
    }
    let signed: Vec<SignedIn> = (0..PEOPLE).map(SignedIn::new).collect();
    let mut people = Vec::new();
    for person in &signed {
        let joined = as_person(
            server.addr,
            person,
            "/api/join",
            None,
            json!({ "invite": review.invites["participant"], "name": "typed, ignored" }),
        )
        .await;
        assert_eq!(joined.status, 201, "{}", joined.body);
        assert_eq!(joined.body["review"]["you"]["name"], person.name.as_str());
        people.push(joined.body["session"].as_str().expect("session").to_owned());
    }
    review.move_to("review").await;
    let mut observer = Client::connect_collab(
        &server.collab_url(),
        &review.doc("discussion"),
        &review.sessions["observer"],
    )
    .await;
    observer.wait_synced().await;

    let mut rng = rand::thread_rng();
    let mut subs: Vec<Submission> = Vec::new();
    let mut named: Vec<Named> = Vec::new();
    // Snapshots of the data directory during the hold, one per window.
    let mut during: Vec<Vec<(PathBuf, Vec<u8>)>> = Vec::new();
    let held_file = data.join("held").join("slots");
    // On a cluster node, the slots whose rows changed around each submission, and (the test's
    // knowledge) the slot of each item.
    let mut hold = SealedHold::default();
    for window in 0..WINDOWS {
        let mut order: Vec<usize> = (0..PEOPLE).collect();
        order.shuffle(&mut rng);
        order.truncate(POSTERS_PER_WINDOW);
        for (rank, &person) in order.iter().enumerate() {
            // Named activity right before the anonymous submission: the attacker's anchor.
            let text = format!("Named note {window}.{rank} from Person {person}");
            let r = post(
                &review,
                &people[person],
                "/threads",
                json!({ "body": text }),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.body);
            named.push(Named {
                window,
                person,
                at_ms: now_ms(),
                text,
            });
            let before = files_under(&data);
            let held_before = held_rows(&backend).await;
            let text = format!("Anonymous worry number {window}-{rank}: the pager rota is thin");
            let (path, body) = if rank % 2 == 0 {
                ("/anonymous/threads", json!({ "body": text }))
            } else {
                ("/concerns", json!({ "body": text }))
            };
            let path = format!("/api/reviews/{}{path}", review.id);
            let r = as_person(
                review.addr,
                &signed[person],
                &path,
                Some(&people[person]),
                body,
            )
            .await;
            assert_eq!(r.status, 202, "{}", r.body);
            let item = &r.body["item"];
            let id = item["comment"]
                .as_str()
                .or(item["concern"].as_str())
                .expect("item id")
                .to_owned();
            let after = backend.copy(&data).await;
            assert!(locate(&before, &text).is_none());
            if sealed {
                let mut held: Vec<&str> = subs.iter().map(|s| s.text.as_str()).collect();
                held.push(&text);
                hold.acknowledged(&backend, &data, &after, &held_before, &held)
                    .await;
            } else {
                held_in_one_slot(&held_file, &before, &after, &text);
            }
            subs.push(Submission {
                window,
                author: person,
                order: order.clone(),
                text,
                id,
                key: r.body["key"].as_str().expect("key").to_owned(),
            });
        }
        // On a cluster node, every copy taken after a submission was searched for every item
        // held so far (in `held_sealed`): a copy of the window's end would add nothing.
        if !sealed {
            during.push(backend.copy(&data).await);
        }
        eprintln!();
    }
    // What the attacker saw of the held rows before the release.
    let held_pre = held_rows(&backend).await;
    // Closing releases whatever still waits for other people's items.
    review.move_to("meeting").await;
    review.move_to("closed").await;
    let all_out: Vec<String> = subs.iter().map(|s| s.text.clone()).collect();
    debrief_tests::within("every anonymous item released", async {
        loop {
            let seen = released_texts(&observer);
            if all_out.iter().all(|t| seen.contains(t)) {
                break;
            }
            observer.round_trip().await;
        }
    })
    .await;
    let seen = released_texts(&observer);
    for t in &all_out {
        assert_eq!(
            seen.iter().filter(|s| *s == t).count(),
            1,
            "{t} released once"
        );
    }
    if sealed {
        wait_wiped(&backend, &hold.slots, debrief_tests::WAIT).await;
    }
    let held_post = held_rows(&backend).await;
    let after_release = backend.copy(&data).await;
    assert!(
        after_release
            .iter()
            .filter(|(p, _)| *p == held_file)
            .all(|(_, b)| b.iter().all(|x| *x == 0)),
        "released items are wiped from the held file"
    );
    drop(observer);
    server.terminate().await;
    let after_stop = backend.copy(&data).await;

    // Everything the attacks look for, found in each copy in one pass.
    let needles = Needles::new(
        subs.iter()
            .flat_map(|s| [s.text.clone(), s.id.clone()])
            .chain(named.iter().map(|n| n.text.clone()))
            .chain(signed.iter().flat_map(|p| p.claims().map(str::to_owned)))
            .collect(),
    );
    let release_at = needles.first_places(&after_release);
    let stop_at = needles.first_places(&after_stop);
    let during_at: Vec<Located> = during.iter().map(|d| needles.first_places(d)).collect();
    // The attacks have their material: every item is in each copy.
    for (copy, when) in [
        (&release_at, "after the release"),
        (&stop_at, "after a stop"),
    ] {
        for s in &subs {
            assert!(
                copy.at(&s.text).is_some(),
                "{} is not stored {when}",
                s.text
            );
        }
    }
    // On a cluster node no copy taken during the hold holds a text (asserted above): the
    // attacks on positions during the hold have nothing to place there, and attack 1b takes
    // their place. Elsewhere every item lies in the copies taken during its hold.
    for s in subs.iter().filter(|_| !sealed) {
        assert!(
            during_at[s.window].at(&s.text).is_some(),
            "{} is held",
            s.text
        );
    }

    // Attack 1, on-disk order: in a copy taken during the hold, order the window's items by
    // where they lie, and give the k-th to the k-th poster of the window.
    let by_position = |snap: &Located, s: &Submission| -> usize {
        let mut placed: Vec<(u64, &Submission)> = subs
            .iter()
            .filter(|o| o.window == s.window)
            .filter_map(|o| snap.at(&o.text).map(|at| (at, o)))
            .collect();
        placed.sort_by_key(|(at, _)| *at);
        match placed.iter().position(|(_, o)| o.text == s.text) {
            Some(rank) => s.order[rank.min(s.order.len() - 1)],
            None => s.order[0],
        }
    };
    if !sealed {
        let correct = hits(&subs, |s| by_position(&during_at[s.window], s));
        assert_chance("on-disk order during the hold", correct, subs.len());
    }
    let correct = hits(&subs, |s| by_position(&release_at, s));
    assert_chance("on-disk order after the release", correct, subs.len());
    let correct = hits(&subs, |s| by_position(&stop_at, s));
    assert_chance("on-disk order after a clean stop", correct, subs.len());

    // Attack 1b, on a cluster node, the held rows: without the secret, the attacker sees which
    // slots' rows changed between copies taken right before and right after each submission
    // (the person active just before it, from the named note, is its likely author) and which
    // ticks wiped slots after the release (the row versions grouped by the transaction that
    // wrote them, `xmin`, in transaction order). It bridges the two through the order the
    // release wrote the items in, as a copy after the release shows it. Ticks once wiped the
    // released slots in that order and this named 24 of 30 authors; they now wipe them in slot
    // order (`Place::wipe`).
    if sealed {
        let bridge = Bridge {
            texts: subs.iter().map(|s| s.text.as_str()).collect(),
            window: subs.iter().map(|s| s.window).collect(),
            brackets: &hold.brackets,
            anchors: named.iter().map(|n| n.person).collect(),
        };
        let guesses = bridge.guesses_from_rows(&held_pre, &held_post, &release_at);
        let correct = subs
            .iter()
            .zip(&guesses)
            .filter(|(s, g)| g.unwrap_or(s.order[0]) == s.author)
            .count();
        assert_chance(
            "held rows changed at each submission, bridged by the release's wipes",
            correct,
            subs.len(),
        );
    }

    // Attack 2, beside named writes: the author of the named note stored nearest to the item.
    let nearest_note = |snap: &Located, s: &Submission| -> usize {
        let Some(at) = snap.at(&s.text) else {
            return s.order[0];
        };
        named
            .iter()
            .filter(|n| n.window == s.window)
            .filter_map(|n| snap.at(&n.text).map(|p| (p.abs_diff(at), n.person)))
            .min()
            .map_or(s.order[0], |(_, person)| person)
    };
    if !sealed {
        let correct = hits(&subs, |s| nearest_note(&during_at[s.window], s));
        assert_chance("nearest named write on disk", correct, subs.len());
    }

    // Attack 2b, beside the person records: every signed-in person is on disk (their record and
    // their session's link); give each item to the person whose claims are stored nearest to it.
    for person in &signed {
        assert!(
            stop_at.at(&person.email).is_some(),
            "the person record of {} is stored",
            person.name
        );
    }
    let nearest_person = |snap: &Located, s: &Submission| -> usize {
        let Some(at) = snap.at(&s.text).or_else(|| snap.at(&s.id)) else {
            return s.order[0];
        };
        s.order
            .iter()
            .filter_map(|&p| {
                signed[p]
                    .claims()
                    .iter()
                    .filter_map(|c| snap.at(c).map(|q| q.abs_diff(at)))
                    .min()
                    .map(|d| (d, p))
            })
            .min()
            .map_or(s.order[0], |(_, p)| p)
    };
    if !sealed {
        let correct = hits(&subs, |s| nearest_person(&during_at[s.window], s));
        assert_chance("nearest person record during the hold", correct, subs.len());
    }
    let correct = hits(&subs, |s| nearest_person(&stop_at, s));
    assert_chance(
        "nearest person record after a clean stop",
        correct,
        subs.len(),
    );

    // Attack 3, the trace log: any line that carries an item's text, id or key in any encoding,
    // and the named activity nearest to it in time.
    let lines = std::fs::read_to_string(&log).expect("read the log");
    assert!(lines.lines().count() > 50, "trace logging was on");
    let mut found: HashMap<String, u64> = HashMap::new();
    let mut leaks = Vec::new();
    let encoded: Vec<(&Submission, Vec<String>)> = subs
        .iter()
        .map(|s| {
            let all = [&s.text, &s.id, &s.key]
                .into_iter()
                .flat_map(|secret| encodings(secret))
                .collect();
            (s, all)
        })
        .collect();
    for line in lines.lines() {
        for (s, all) in &encoded {
            if let Some(e) = all.iter().find(|e| line.contains(e.as_str())) {
                leaks.push(format!("{e:?} in {line}"));
                if let Some(t) = line_time(line) {
                    found.entry(s.text.clone()).or_insert(t);
                }
            }
        }
    }
    let correct = hits(&subs, |s| match found.get(&s.text) {
        Some(t) => named
            .iter()
            .filter(|n| n.window == s.window)
            .min_by_key(|n| n.at_ms.abs_diff(*t))
            .map_or(s.order[0], |n| n.person),
        None => s.order[0],
    });
    assert_chance("nearest named activity in the log", correct, subs.len());
    assert!(
        leaks.is_empty(),
        "the log carries anonymous texts, ids or keys: {:?}",
        &leaks[..leaks.len().min(5)]
    );
    // Nor any claim of a signed-in person, in any encoding.
    let claims: Vec<String> = signed
        .iter()
        .chain([&creator])
        .flat_map(|p| p.claims().map(encodings))
        .flatten()
        .collect();
    let told: Vec<&str> = lines
        .lines()
        .filter(|l| claims.iter().any(|c| l.contains(c.as_str())))
        .collect();
    assert!(
        told.is_empty(),
        "the log carries claims: {:?}",
        &told[..told.len().min(5)]
    );
    assert!(line_time("2026-12-06T09:30:00.250000Z  INFO x").is_some_and(|t| t % 1000 == 250));
}

/// Reviews and people of the pulse attack: each of [`PULSE_PEOPLE`] people answers each review's
/// pulse once, in an order the attacker knows (who was active when).
const PULSE_REVIEWS: usize = 4;
const PULSE_PEOPLE: usize = 6;

/// One pulse answer and who gave it.
#[derive(Debug, Clone)]
struct PulseAnswer {
    review: usize,
    author: usize,
    /// The review's answerers in the order they answered.
    order: Vec<usize>,
    /// The scores as the server writes them (`[a,b,c,d,e]`), distinct across the test.
    scores: String,
    /// `SHA-256("pulse" ‖ session token ‖ review)`: what refuses a second answer.
    voter: String,
}

#[tokio::test]
async fn pulse_answers_cannot_be_linked_to_who_gave_them() {
    pulse_answers_unlinkable(Backend::Sled).await;
}

#[tokio::test]
async fn pulse_answers_cannot_be_linked_to_who_gave_them_on_postgres() {
    pulse_answers_unlinkable(Backend::postgres().await).await;
}

/// The same on a node of a cluster (issue 18), where held answers are sealed in `held_slots` and
/// written on ticks: while held, no copy holds an answer or its voter record in any encoding, and
/// the attacker works on which held rows changed when instead of positions in a held file. Ticks
/// run every second only while a document is open on the node, so one is kept open whenever the
/// node holds or releases answers.
#[tokio::test]
async fn pulse_answers_cannot_be_linked_to_who_gave_them_on_a_cluster_node() {
    pulse_answers_unlinkable(Backend::cluster().await).await;
}

/// On a node of a cluster, a client with the discussion of `review` open, so that the node ticks
/// every second (it ticks every 30 s while no document is open); elsewhere none is needed.
async fn keep_ticking(sealed: bool, server: &ChildServer, review: &Review) -> Option<Client> {
    if !sealed {
        return None;
    }
    let mut client = Client::connect_collab(
        &server.collab_url(),
        &review.doc("discussion"),
        &review.sessions["facilitator"],
    )
    .await;
    client.wait_synced().await;
    Some(client)
}

async fn pulse_answers_unlinkable(backend: Backend) {
    use sha2::Digest;
    let sealed = matches!(backend, Backend::Cluster(..));
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let flags = backend.args();
    let args = |cadence: &'static str| {
        let mut args = vec!["--anonymous-cadence-secs", cadence];
        args.extend(flags.iter().map(String::as_str));
        args
    };
    // Nothing is released while people answer: every copy taken meanwhile holds every answer.
    let server = ChildServer::start_with(&data, &args("86400"), Some(&log)).await;
    let held_file = data.join("held").join("slots");
    let mut rng = rand::thread_rng();
    let mut used = std::collections::HashSet::new();
    let mut answers: Vec<PulseAnswer> = Vec::new();
    let mut during: Vec<Vec<(PathBuf, Vec<u8>)>> = Vec::new();
    let mut reviews = Vec::new();
    let mut hold = SealedHold::default();
    let mut ticking = None;
    for r in 0..PULSE_REVIEWS {
        let review = Review::create(server.addr, &format!("Pulse {r}")).await;
        if ticking.is_none() {
            ticking = keep_ticking(sealed, &server, &review).await;
        }
        let mut people = Vec::new();
        for i in 0..PULSE_PEOPLE {
            people.push(review.join("participant", &format!("Person {i}")).await);
        }
        for phase in ["review", "meeting", "closed"] {
            review.move_to(phase).await;
        }
        let mut order: Vec<usize> = (0..PULSE_PEOPLE).collect();
        order.shuffle(&mut rng);
        for &person in &order {
            let scores: Vec<u8> = loop {
                let s: Vec<u8> = (0..5)
                    .map(|_| rand::Rng::gen_range(&mut rng, 1..=7))
                    .collect();
                if used.insert(s.clone()) {
                    break s;
                }
            };
            let text = serde_json::to_string(&scores).expect("scores");
            let voter = hex::encode(sha2::Sha256::digest(
                format!("pulse\0{}\0{}", people[person], review.id).as_bytes(),
            ));
            let before = files_under(&data);
            let held_before = held_rows(&backend).await;
            let held = post(
                &review,
                &people[person],
                "/pulse",
                json!({ "answers": scores }),
            )
            .await;
            assert_eq!(held.status, 202, "{}", held.body);
            let after = backend.copy(&data).await;
            assert!(locate(&before, &text).is_none());
            if sealed {
                // Sealed: neither the answer nor the record that refuses a second one is in any
                // copy, and the answer lies in one of the slots that changed.
                let mut secrets: Vec<&str> = answers
                    .iter()
                    .flat_map(|a| [a.voter.as_str(), a.scores.as_str()])
                    .collect();
                secrets.extend([voter.as_str(), text.as_str()]);
                hold.acknowledged(&backend, &data, &after, &held_before, &secrets)
                    .await;
            } else {
                held_in_one_slot(&held_file, &before, &after, &text);
            }
            answers.push(PulseAnswer {
                review: r,
                author: person,
                order: order.clone(),
                scores: text,
                voter,
            });
        }
        // On a cluster node every copy taken after an answer was searched for every answer held
        // so far: a copy of the review's end would add nothing.
        if !sealed {
            during.push(backend.copy(&data).await);
        }
        reviews.push((review, people));
    }
    drop(ticking);
    server.terminate().await;
    // What the attacker saw of the held rows before the release.
    let held_pre = held_rows(&backend).await;
    // Released after a restart: who answered is not known any more (it never was stored), so the
    // batch goes out after its ten boundaries.
    let log_after = dir.path().join("server-after.log");
    let server = ChildServer::start_with(&data, &args("1"), Some(&log_after)).await;
    let ticking = keep_ticking(sealed, &server, &reviews[0].0).await;
    let patience = std::time::Duration::from_secs(40);
    if sealed {
        wait_wiped(&backend, &hold.slots, patience).await;
    } else {
        debrief_tests::within_for(patience, "every pulse answer released", async {
            while !std::fs::read(&held_file).is_ok_and(|b| b.iter().all(|x| *x == 0)) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    let held_post = held_rows(&backend).await;
    let after_release = backend.copy(&data).await;
    // Every review's pulse shows its six answers.
    for (review, people) in &reviews {
        let path = format!("/api/reviews/{}/pulse", review.id);
        let shown = request(server.addr, "GET", &path, Some(&people[0]), None).await;
        assert_eq!(
            shown.body["results"]["answers"], PULSE_PEOPLE,
            "{}",
            shown.body
        );
    }
    drop(ticking);
    server.terminate().await;
    let after_stop = backend.copy(&data).await;

    // Every answer, found in each copy in one pass.
    let needles = Needles::new(answers.iter().map(|a| a.scores.clone()).collect());
    let release_at = needles.first_places(&after_release);
    let stop_at = needles.first_places(&after_stop);
    let during_at: Vec<Located> = during.iter().map(|d| needles.first_places(d)).collect();
    for a in &answers {
        assert!(release_at.at(&a.scores).is_some(), "an answer is released");
        assert!(stop_at.at(&a.scores).is_some(), "an answer is stored");
        if !sealed {
            assert!(
                during_at[a.review].at(&a.scores).is_some(),
                "an answer is held"
            );
        }
    }

    // The on-disk order attack, in copies during the hold, after the release and after a stop:
    // the k-th answer of a review by position is given to the k-th person who answered it.
    let by_position = |snap: &Located, a: &PulseAnswer| -> usize {
        let mut placed: Vec<(u64, &PulseAnswer)> = answers
            .iter()
            .filter(|o| o.review == a.review)
            .filter_map(|o| snap.at(&o.scores).map(|at| (at, o)))
            .collect();
        placed.sort_by_key(|(at, _)| *at);
        match placed.iter().position(|(_, o)| o.scores == a.scores) {
            Some(rank) => a.order[rank.min(a.order.len() - 1)],
            None => a.order[0],
        }
    };
    let chance = |attack: &str, guess: &dyn Fn(&PulseAnswer) -> usize| {
        let correct = answers.iter().filter(|a| guess(a) == a.author).count();
        assert_chance_among(attack, correct, answers.len(), PULSE_PEOPLE);
    };
    if !sealed {
        chance("pulse order during the hold", &|a| {
            by_position(&during_at[a.review], a)
        });
    }
    chance("pulse order after the release", &|a| {
        by_position(&release_at, a)
    });
    chance("pulse order after a clean stop", &|a| {
        by_position(&stop_at, a)
    });
    // On a cluster node, attack 1b of the statistical adversary in place of the order during the
    // hold: the slots whose rows changed around each answer (its author is known: who answered
    // when), bridged to the released answers by the ticks that wiped their slots.
    if sealed {
        let bridge = Bridge {
            texts: answers.iter().map(|a| a.scores.as_str()).collect(),
            window: answers.iter().map(|a| a.review).collect(),
            brackets: &hold.brackets,
            anchors: answers.iter().map(|a| a.author).collect(),
        };
        let guesses = bridge.guesses_from_rows(&held_pre, &held_post, &release_at);
        let by_answer: HashMap<&str, usize> = answers
            .iter()
            .zip(&guesses)
            .map(|(a, g)| (a.scores.as_str(), g.unwrap_or(a.order[0])))
            .collect();
        chance(
            "held rows changed at each answer, bridged by the release's wipes",
            &|a| by_answer[a.scores.as_str()],
        );
    }
    // The answers and the records that refuse a second answer are in no log line, in any
    // encoding, and no session token is stored.
    let mut lines = std::fs::read_to_string(&log).expect("read the log");
    lines.push_str(&std::fs::read_to_string(&log_after).expect("read the second log"));
    assert!(lines.lines().count() > 50, "trace logging was on");
    for a in &answers {
        for secret in [&a.scores, &a.voter] {
            for e in encodings(secret) {
                assert!(
                    !lines.contains(&e),
                    "{e:?} (a pulse answer's) is in the log"
                );
            }
        }
    }
    for (_, people) in &reviews {
        for token in people {
            assert!(
                locate(&after_stop, token).is_none(),
                "a session token is stored"
            );
        }
    }
}
