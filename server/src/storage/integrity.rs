//! Debrief's own record of what its data directory holds (the manifest), the checks made against
//! it before anything is served, and where damaged files are kept. This module owns the
//! manifest file, the `damaged/` folder and the generation key in sled; it knows files, trees
//! and bytes, never what a document or a review is.
//!
//! Why: sled checks a checksum on every message of its log, but when one fails at open it ends
//! its recovery there, without an error, and serves what came before: a flipped byte after a
//! clean stop lost a random share of every tree in tests, and opening the store rewrote the
//! damaged part of the file. So damage is looked for *before* sled opens the files, and the
//! files are copied aside first whenever it cannot be ruled out:
//! - at a clean stop the manifest records the size and SHA-256 of each of sled's files, and the
//!   number of keys and a digest of each tree; at open, files that differ are copied to
//!   `damaged/<time>/`, a scratch copy is opened to compare the trees, and the store is refused
//!   unless every tree is as recorded;
//! - while the server runs, each sled flush Debrief asks for first writes a new generation number
//!   into sled and, once the flush is done, into the manifest (with the oldest write-ahead
//!   segment still needed). After a crash the files are copied to `damaged/.staging` before sled
//!   opens them; a store whose generation is below the manifest's has lost flushed writes;
//! - a missing store, segment or held-items file that the manifest says exists is damage.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Name of the manifest in the data directory.
pub const MANIFEST: &str = "manifest";
/// Folder of the data directory where damaged files are kept.
pub const DAMAGED: &str = "damaged";
/// The sled tree that holds the generation.
const TREE: &str = "debrief.integrity";
const GENERATION_KEY: &[u8] = b"generation";
/// Entries of the data directory that are Debrief's own, not sled's.
const OURS: [&str; 6] = [
    MANIFEST,
    "manifest.new",
    DAMAGED,
    "wal",
    "held",
    ADMIN_SOCKET,
];
/// The administration socket `debrief backup` talks to (`crate::ops::admin`).
pub const ADMIN_SOCKET: &str = "admin.sock";
const HEADER: &str = "debrief-manifest 1";
/// Name of the report written beside kept files.
pub const REPORT: &str = "REPORT";

/// What the server does when it finds damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnDamage {
    /// Print what is damaged and exit without serving (the default).
    #[default]
    Refuse,
    /// Serve what can be read, refuse every change, and say so on `/readyz` and in the log.
    ReadOnly,
}

/// Whether the manifest was written at a clean stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Written after the final flush of a clean stop: files and trees are exact.
    Clean,
    /// Written while the server ran: the generation is a lower bound.
    Running,
}

/// A file's or tree's recorded size and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Path relative to the data directory, or tree name.
    pub name: String,
    /// Bytes of a file, keys of a tree.
    pub size: u64,
    /// SHA-256, hex.
    pub digest: String,
}

/// The manifest: `<data-dir>/manifest`, a text file ending in a CRC-32 of everything before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Clean or running.
    pub state: State,
    /// The generation written into sled by the flush this manifest follows.
    pub generation: u64,
    /// The oldest write-ahead segment the store still needs (running only).
    pub wal_from: Option<u64>,
    /// Size of `held/slots`, when it exists.
    pub held: Option<u64>,
    /// sled's files (clean only).
    pub files: Vec<Recorded>,
    /// sled's trees (clean only).
    pub trees: Vec<Recorded>,
}

impl Manifest {
    fn encode(&self) -> String {
        let mut out = format!("{HEADER}\n");
        let state = match self.state {
            State::Clean => "clean",
            State::Running => "running",
        };
        out.push_str(&format!("state {state}\ngeneration {}\n", self.generation));
        if let Some(g) = self.wal_from {
            out.push_str(&format!("wal-from {g}\n"));
        }
        if let Some(len) = self.held {
            out.push_str(&format!("held {len}\n"));
        }
        for f in &self.files {
            out.push_str(&format!("file {} {} {}\n", f.size, f.digest, f.name));
        }
        for t in &self.trees {
            out.push_str(&format!(
                "tree {} {} {}\n",
                t.size,
                t.digest,
                hex::encode(&t.name)
            ));
        }
        let crc = crc32fast::hash(out.as_bytes());
        out.push_str(&format!("check {crc:08x}\n"));
        out
    }

    fn decode(text: &str) -> Result<Manifest, String> {
        let body_end = text
            .rfind("check ")
            .ok_or_else(|| "it has no checksum line".to_owned())?;
        let (body, check) = text.split_at(body_end);
        let crc = u32::from_str_radix(check.trim_start_matches("check ").trim(), 16)
            .map_err(|_| "its checksum line is unreadable".to_owned())?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err("it fails its checksum".to_owned());
        }
        let mut lines = body.lines();
        if lines.next() != Some(HEADER) {
            return Err("it does not start with the manifest header".to_owned());
        }
        let mut m = Manifest {
            state: State::Running,
            generation: 0,
            wal_from: None,
            held: None,
            files: Vec::new(),
            trees: Vec::new(),
        };
        let bad = |line: &str| format!("unreadable line {line:?}");
        for line in lines {
            let mut parts = line.splitn(4, ' ');
            let word = parts.next().unwrap_or_default();
            let a = parts.next().unwrap_or_default();
            let num = || a.parse::<u64>().map_err(|_| bad(line));
            match word {
                "state" if a == "clean" => m.state = State::Clean,
                "state" if a == "running" => m.state = State::Running,
                "generation" => m.generation = num()?,
                "wal-from" => m.wal_from = Some(num()?),
                "held" => m.held = Some(num()?),
                "file" | "tree" => {
                    let digest = parts.next().ok_or_else(|| bad(line))?.to_owned();
                    let name = parts.next().ok_or_else(|| bad(line))?;
                    let name = if word == "tree" {
                        String::from_utf8_lossy(&hex::decode(name).map_err(|_| bad(line))?)
                            .into_owned()
                    } else {
                        name.to_owned()
                    };
                    let r = Recorded {
                        name,
                        size: num()?,
                        digest,
                    };
                    if word == "file" {
                        m.files.push(r);
                    } else {
                        m.trees.push(r);
                    }
                }
                _ => return Err(bad(line)),
            }
        }
        Ok(m)
    }

    /// Reads the manifest of `dir`: `Ok(None)` when there is none, `Err` (a damage line) when it
    /// cannot be read.
    pub fn read(dir: &Path) -> Result<Option<Manifest>, String> {
        match std::fs::read_to_string(dir.join(MANIFEST)) {
            Ok(text) => Manifest::decode(&text)
                .map(Some)
                .map_err(|why| format!("manifest: {why}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("manifest: {e}")),
        }
    }

    /// Replaces the manifest of `dir` atomically and durably (a new file, synced, renamed over
    /// the old one, and the folder synced).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let fresh = dir.join("manifest.new");
        {
            let mut f = std::fs::File::create(&fresh)?;
            f.write_all(self.encode().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&fresh, dir.join(MANIFEST))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The generation sled holds (0 when none was ever written).
pub fn stored_generation(db: &sled::Db) -> Result<Option<u64>, sled::Error> {
    let tree = db.open_tree(TREE)?;
    Ok(tree.get(GENERATION_KEY)?.and_then(|v| {
        let bytes: [u8; 8] = v.as_ref().try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    }))
}

/// Writes `generation` into sled (durable with the next flush).
pub fn store_generation(db: &sled::Db, generation: u64) -> Result<(), sled::Error> {
    db.open_tree(TREE)?
        .insert(GENERATION_KEY, &generation.to_be_bytes())?;
    Ok(())
}

/// sled's files in `dir` (relative path, full path), in name order: everything that is not
/// Debrief's own.
pub fn sled_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefix.is_empty() && OURS.contains(&name.as_str()) {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), out)?;
        } else if kind.is_file() {
            out.push((rel, entry.path()));
        }
    }
    Ok(())
}

/// Size and SHA-256 of every sled file in `dir`.
pub fn hash_files(dir: &Path) -> std::io::Result<Vec<Recorded>> {
    let mut out = Vec::new();
    for (name, path) in sled_files(dir)? {
        let (size, digest) = hash_file(&path)?;
        out.push(Recorded { name, size, digest });
    }
    Ok(out)
}

/// Size and SHA-256 (hex) of one file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Number of keys and a digest of every tree (every key and value, in key order), except the
/// generation's own tree, which differs from flush to flush.
pub fn tree_digests(db: &sled::Db) -> Result<Vec<Recorded>, sled::Error> {
    let mut out = Vec::new();
    for name in db.tree_names() {
        let name = String::from_utf8_lossy(&name).into_owned();
        if is_own_tree(&name) {
            continue;
        }
        let tree = db.open_tree(&name)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        for kv in tree.iter() {
            let (k, v) = kv?;
            hash_entry(&mut hasher, &k, &v);
            size += 1;
        }
        out.push(Recorded {
            name,
            size,
            digest: hex::encode(hasher.finalize()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether `tree` is this module's own (left out of digests and backups).
pub fn is_own_tree(tree: &str) -> bool {
    tree == TREE
}

/// Adds one entry of a tree to its digest.
pub fn hash_entry(hasher: &mut Sha256, k: &[u8], v: &[u8]) {
    hasher.update((k.len() as u64).to_le_bytes());
    hasher.update(k);
    hasher.update((v.len() as u64).to_le_bytes());
    hasher.update(v);
}

/// Damage lines for files that differ from the clean stop's record (empty when all match).
pub fn compare_files(recorded: &[Recorded], found: &[Recorded]) -> Vec<String> {
    let mut out = Vec::new();
    for r in recorded {
        match found.iter().find(|f| f.name == r.name) {
            None => out.push(format!("sled file {} is missing", r.name)),
            Some(f) if f.size != r.size => out.push(format!(
                "sled file {} is {} bytes; it was {} at the last clean stop",
                r.name, f.size, r.size
            )),
            Some(f) if f.digest != r.digest => out.push(format!(
                "sled file {} differs from the last clean stop (same size, different SHA-256)",
                r.name
            )),
            Some(_) => {}
        }
    }
    for f in found {
        if !recorded.iter().any(|r| r.name == f.name) {
            out.push(format!(
                "sled file {} was not there at the last clean stop",
                f.name
            ));
        }
    }
    out
}

/// Damage lines for trees that differ from the clean stop's record.
pub fn compare_trees(recorded: &[Recorded], found: &[Recorded]) -> Vec<String> {
    let mut out = Vec::new();
    for r in recorded {
        match found.iter().find(|f| f.name == r.name) {
            None => out.push(format!(
                "tree {}: missing; it held {} keys at the last clean stop",
                r.name, r.size
            )),
            Some(f) if f.size != r.size => out.push(format!(
                "tree {}: {} keys; it held {} at the last clean stop",
                r.name, f.size, r.size
            )),
            Some(f) if f.digest != r.digest => out.push(format!(
                "tree {}: {} keys as at the last clean stop, but their contents differ",
                r.name, f.size
            )),
            Some(_) => {}
        }
    }
    for f in found {
        if f.size > 0 && !recorded.iter().any(|r| r.name == f.name) {
            out.push(format!(
                "tree {}: {} keys; it did not exist at the last clean stop",
                f.name, f.size
            ));
        }
    }
    out
}

/// Copies every file under `from` (recursively) into `to`, syncing each.
pub fn copy_tree(from: &Path, to: &Path, skip_ours: bool) -> std::io::Result<u64> {
    let mut bytes = 0;
    let files = if skip_ours {
        sled_files(from)?
    } else {
        let mut all = Vec::new();
        walk_all(from, "", &mut all)?;
        all
    };
    for (rel, path) in files {
        let dest = to.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        bytes += std::fs::copy(&path, &dest)?;
        std::fs::File::open(&dest)?.sync_all()?;
    }
    Ok(bytes)
}

fn walk_all(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk_all(&entry.path(), &format!("{rel}/"), out)?;
        } else if kind.is_file() {
            out.push((rel, entry.path()));
        }
    }
    Ok(())
}

/// Copies what the damage concerns — sled's files, the write-ahead segments and the manifest, as
/// they are now (never the held-items file: anonymous submissions must not outlive their release
/// on disk) — into `<dir>/damaged/<UTC time>/` with a `REPORT`
/// of the damage lines, and returns that folder. Nothing in `dir` is changed or removed. When
/// the newest kept folder already has the same report (the same damage, found again by another
/// start), nothing is copied again and that folder is returned.
pub fn keep_aside(
    dir: &Path,
    damage: &[String],
    staged: Option<&Path>,
) -> std::io::Result<PathBuf> {
    let report = report_text(damage);
    let root = dir.join(DAMAGED);
    if let Some(latest) = newest_kept(&root)? {
        if std::fs::read_to_string(latest.join(REPORT)).ok().as_deref() == Some(&report) {
            if let Some(staged) = staged {
                std::fs::remove_dir_all(staged)?;
            }
            return Ok(latest);
        }
    }
    let target = fresh_folder(&root)?;
    match staged {
        // sled's files as they were before sled opened them.
        Some(staged) => std::fs::rename(staged, target.join("store"))?,
        None => {
            copy_tree(dir, &target.join("store"), true)?;
        }
    }
    for ours in [MANIFEST, "wal"] {
        let from = dir.join(ours);
        if from.is_dir() {
            copy_tree(&from, &target.join(ours), false)?;
        } else if from.is_file() {
            std::fs::copy(&from, target.join(ours))?;
        }
    }
    let mut f = std::fs::File::create(target.join(REPORT))?;
    f.write_all(report.as_bytes())?;
    f.sync_all()?;
    std::fs::File::open(&root)?.sync_all()?;
    Ok(target)
}

/// Copies one file into a fresh kept folder with a report (for damage found in one file only).
pub fn keep_file(dir: &Path, rel: &str, damage: &[String]) -> std::io::Result<PathBuf> {
    let root = dir.join(DAMAGED);
    let target = fresh_folder(&root)?;
    let dest = target.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(dir.join(rel), &dest)?;
    std::fs::write(target.join(REPORT), report_text(damage))?;
    Ok(target)
}

fn report_text(damage: &[String]) -> String {
    let mut report = String::new();
    for line in damage {
        report.push_str(line);
        report.push('\n');
    }
    report
}

fn newest_kept(root: &Path) -> std::io::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.pop().map(|n| root.join(n)))
}

fn fresh_folder(root: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let stamp = utc_stamp(std::time::SystemTime::now());
    for n in 0u32.. {
        let name = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let path = root.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name for a kept folder"))
}

/// `YYYYMMDDTHHMMSSZ` (UTC), which sorts in time order.
pub fn utc_stamp(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Staging folder for sled's files copied before sled opens them after a crash.
pub fn staging(dir: &Path) -> PathBuf {
    dir.join(DAMAGED).join(".staging")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips_and_a_changed_byte_fails_its_check() {
        let m = Manifest {
            state: State::Clean,
            generation: 42,
            wal_from: Some(3),
            held: Some(20 << 20),
            files: vec![Recorded {
                name: "blobs/7".into(),
                size: 10,
                digest: "ab".repeat(32),
            }],
            trees: vec![Recorded {
                name: "meta.reviews".into(),
                size: 5,
                digest: "cd".repeat(32),
            }],
        };
        let text = m.encode();
        assert_eq!(Manifest::decode(&text), Ok(m));
        let flipped = text.replacen("generation 42", "generation 43", 1);
        assert_eq!(
            Manifest::decode(&flipped),
            Err("it fails its checksum".to_owned())
        );
    }

    #[test]
    fn stamps_are_utc_civil_times() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096);
        assert_eq!(utc_stamp(at), "20240229T123456Z");
    }
}
