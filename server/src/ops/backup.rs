//! Online backups of a data directory and restoring them: the backup format and its checks.
//! This module reads and writes sled trees as keys and bytes, and copies the held-items file; it
//! does not know what either means.
//!
//! A backup is a folder:
//! - `store`: every sled tree, one after the other, as framed records (`u32 LE length | u32 LE
//!   CRC-32 | payload`), the payload a kind byte then `varUint8Array`s: `T name` starts a tree,
//!   `E key value` is one of its entries;
//! - `held/slots`: the held-items file, when the data directory has one;
//! - `manifest`: the number of keys and a digest of every tree, and the size and SHA-256 of
//!   `store` and `held/slots`, in the format of the data directory's manifest.
//!
//! Why this is consistent while the server runs: every update is in sled's memory before it is
//! acknowledged (the write-ahead file only makes it durable), so reading every tree after the
//! backup began sees everything acknowledged before it began. A compaction meanwhile writes a
//! document's snapshot and deletes the log entries it covers in one batch; the snapshot key sorts
//! after the log keys, so a backup holds the old snapshot with the old log, or the new snapshot
//! with the old or the new log, and loading skips log entries a snapshot covers.
//! Writes made while the backup runs may or may not be in it.

use std::io::{Read, Write};
use std::path::Path;

use debrief_proto::lib0::{write_var_uint8_array, Reader};
use sha2::{Digest, Sha256};

use crate::storage::integrity::{self, Manifest, Recorded, State};

const STORE: &str = "store";
const HELD: &str = "held/slots";
const TREE: u8 = b'T';
const ENTRY: u8 = b'E';
/// How often the held-items file is read again until two reads agree (it is written in place
/// while the server runs; two equal reads in a row are a state it was in).
const HELD_READS: usize = 50;

/// What a backup or a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Trees.
    pub trees: usize,
    /// Keys over every tree.
    pub keys: u64,
    /// Bytes of the `store` file.
    pub bytes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} trees, {} keys, {} bytes",
            self.trees, self.keys, self.bytes
        )
    }
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target exists and is not an empty folder.
    #[error("{0} exists and is not empty")]
    NotEmpty(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The backup does not hold what its manifest says.
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    /// Opening the restored store failed.
    #[error("{0}")]
    Store(#[from] crate::storage::store::StoreError),
}

/// Writes a backup of `db` and of `data_dir`'s held-items file into `to` (created; it must not
/// exist or be empty). Blocking.
pub fn write(db: &sled::Db, data_dir: &Path, to: &Path) -> Result<Summary, BackupError> {
    empty_target(to)?;
    std::fs::create_dir_all(to)?;
    let store_path = to.join(STORE);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&store_path)?);
    let mut trees = Vec::new();
    let mut names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| !integrity::is_own_tree(n))
        .collect();
    names.sort();
    let mut keys = 0;
    for name in names {
        let tree = db.open_tree(&name)?;
        frame(&mut out, TREE, &[name.as_bytes()])?;
        let mut hasher = TreeHasher::default();
        for kv in tree.iter() {
            let (k, v) = kv?;
            frame(&mut out, ENTRY, &[&k, &v])?;
            hasher.add(&k, &v);
        }
        keys += hasher.keys;
        trees.push(hasher.finish(name));
    }
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    let mut files = Vec::new();
    let (size, digest) = integrity::hash_file(&store_path)?;
    files.push(Recorded {
        name: STORE.to_owned(),
        size,
        digest,
    });
    if let Some(bytes) = stable_read(&data_dir.join(HELD))? {
        let path = to.join(HELD);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        files.push(Recorded {
            name: HELD.to_owned(),
            size: bytes.len() as u64,
            digest: hex::encode(Sha256::digest(&bytes)),
        });
    }
    let summary = Summary {
        trees: trees.len(),
        keys,
        bytes: size,
    };
    Manifest {
        state: State::Clean,
        generation: 0,
        wal_from: None,
        held: None,
        files,
        trees,
    }
    .write(to)?;
    Ok(summary)
}

/// Checks the backup in `from` against its manifest and writes it into the new data directory
/// `data_dir` (which must not exist or be empty), which then opens like one left by a clean stop.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Summary, BackupError> {
    let manifest = Manifest::read(from)
        .map_err(BackupError::Damaged)?
        .ok_or_else(|| BackupError::Damaged(format!("{} has no manifest", from.display())))?;
    let mut summary = verify(from, &manifest)?;
    crate::storage::postgres::refuse_marked(data_dir)?;
    empty_target(data_dir)?;
    std::fs::create_dir_all(data_dir)?;
    {
        let db = sled::Config::new().path(data_dir).open()?;
        let bytes = std::fs::read(from.join(STORE))?;
        let mut tree: Option<sled::Tree> = None;
        let mut batch = sled::Batch::default();
        for (kind, parts) in Frames::new(&bytes) {
            match (kind, parts.as_slice()) {
                (TREE, [name]) => {
                    if let Some(t) = tree.take() {
                        t.apply_batch(std::mem::take(&mut batch))?;
                    }
                    tree = Some(db.open_tree(name)?);
                }
                (ENTRY, [k, v]) => batch.insert(*k, *v),
                _ => return Err(BackupError::Damaged("an unknown record in store".into())),
            }
        }
        if let Some(t) = tree.take() {
            t.apply_batch(batch)?;
        }
        db.flush()?;
    }
    if manifest.files.iter().any(|f| f.name == HELD) {
        std::fs::create_dir_all(data_dir.join("held"))?;
        std::fs::copy(from.join(HELD), data_dir.join(HELD))?;
        std::fs::File::open(data_dir.join(HELD))?.sync_all()?;
    }
    // Opening the store writes its manifest; the flusher's end at a clean stop records every
    // file and tree.
    let (store, flusher) = crate::storage::store::Store::open(data_dir)?;
    drop(store);
    flusher.run();
    summary.bytes = manifest
        .files
        .iter()
        .find(|f| f.name == STORE)
        .map_or(0, |f| f.size);
    Ok(summary)
}

/// Checks every file and tree of the backup in `from` against `manifest`.
pub fn verify(from: &Path, manifest: &Manifest) -> Result<Summary, BackupError> {
    for f in &manifest.files {
        let (size, digest) = integrity::hash_file(&from.join(&f.name))
            .map_err(|e| BackupError::Damaged(format!("{}: {e}", f.name)))?;
        if size != f.size || digest != f.digest {
            return Err(BackupError::Damaged(format!(
                "{} is {size} bytes with SHA-256 {}; the manifest records {} bytes with {}",
                f.name,
                &digest[..16],
                f.size,
                &f.digest[..16.min(f.digest.len())]
            )));
        }
    }
    let bytes = std::fs::read(from.join(STORE))?;
    let mut frames = Frames::new(&bytes);
    let mut found = Vec::new();
    let mut current: Option<(String, TreeHasher)> = None;
    let mut keys = 0;
    for (kind, parts) in frames.by_ref() {
        match (kind, parts.as_slice()) {
            (TREE, [name]) => {
                if let Some((n, h)) = current.take() {
                    keys += h.keys;
                    found.push(h.finish(n));
                }
                current = Some((
                    String::from_utf8_lossy(name).into_owned(),
                    TreeHasher::default(),
                ));
            }
            (ENTRY, [k, v]) => match current.as_mut() {
                Some((_, h)) => h.add(k, v),
                None => return Err(BackupError::Damaged("an entry before any tree".into())),
            },
            _ => return Err(BackupError::Damaged("an unknown record in store".into())),
        }
    }
    if let Some(at) = frames.failed_at {
        return Err(BackupError::Damaged(format!(
            "store: the record at byte {at} is damaged"
        )));
    }
    if let Some((n, h)) = current.take() {
        keys += h.keys;
        found.push(h.finish(n));
    }
    let differ = integrity::compare_trees(&manifest.trees, &found);
    if !differ.is_empty() {
        return Err(BackupError::Damaged(differ.join("; ")));
    }
    Ok(Summary {
        trees: found.len(),
        keys,
        bytes: bytes.len() as u64,
    })
}

fn empty_target(to: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(to.display().to_string()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::Io(e)),
    }
}

/// The held-items file as it was at one moment: read until two reads in a row agree.
fn stable_read(path: &Path) -> Result<Option<Vec<u8>>, BackupError> {
    let read = || match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let mut last = read()?;
    for _ in 0..HELD_READS {
        let again = read()?;
        if again == last {
            return Ok(again);
        }
        last = again;
    }
    Err(BackupError::Io(std::io::Error::other(
        "the held-items file kept changing while it was copied; try again",
    )))
}

#[derive(Default)]
struct TreeHasher {
    hasher: Sha256,
    keys: u64,
}

impl TreeHasher {
    fn add(&mut self, k: &[u8], v: &[u8]) {
        integrity::hash_entry(&mut self.hasher, k, v);
        self.keys += 1;
    }

    fn finish(self, name: String) -> Recorded {
        Recorded {
            name,
            size: self.keys,
            digest: hex::encode(self.hasher.finalize()),
        }
    }
}

fn frame(out: &mut impl Write, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut payload = vec![kind];
    for p in parts {
        write_var_uint8_array(&mut payload, p);
    }
    let len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("entry too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
    out.write_all(&payload)
}

/// The records of a `store` file; iteration ends at the end or at the first damaged record
/// (then `failed_at` says where).
struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
    failed_at: Option<usize>,
}

impl<'a> Frames<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Frames {
            bytes,
            at: 0,
            failed_at: None,
        }
    }

    fn next_frame(&self) -> Option<(u8, Vec<&'a [u8]>, usize)> {
        let rest = self.bytes.get(self.at..)?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
        let payload = rest.get(8..8usize.checked_add(len)?)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let (&kind, body) = payload.split_first()?;
        let mut r = Reader::new(body);
        let mut parts = Vec::new();
        while !r.is_empty() {
            parts.push(r.read_var_uint8_array().ok()?);
        }
        Some((kind, parts, 8 + len))
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u8, Vec<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() || self.failed_at.is_some() {
            return None;
        }
        match self.next_frame() {
            Some((kind, parts, used)) => {
                self.at += used;
                Some((kind, parts))
            }
            None => {
                self.failed_at = Some(self.at);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_restores_every_tree_and_a_changed_byte_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        {
            let (store, flusher) = crate::storage::store::Store::open(&data).expect("open");
            store.append("doc", 0, &[b"hello"]).expect("append");
            let meta = store.meta_tree("reviews").expect("tree");
            for i in 0..5u8 {
                meta.put(&[i], &[i; 40]).expect("put");
            }
            let (mut held, _) = crate::reviews::anonymous::held::HeldFile::open(&data.join("held"))
                .expect("held file");
            held.write(&[b"held item".to_vec()]).expect("hold");
            let summary = write(store.db().expect("sled"), &data, &dir.path().join("backup"))
                .expect("backup");
            assert_eq!(summary.keys, 6);
            drop((store, meta));
            flusher.run();
        }
        let restored = dir.path().join("restored");
        restore(&dir.path().join("backup"), &restored).expect("restore");
        let (store, flusher) =
            crate::storage::store::Store::open(&restored).expect("open restored");
        assert_eq!(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(store.load(&std::sync::Arc::from("doc")))
                .expect("load")
                .updates()
                .expect("decode"),
            vec![&b"hello"[..]]
        );
        assert_eq!(
            store
                .meta_tree("reviews")
                .expect("tree")
                .entries()
                .expect("entries")
                .len(),
            5
        );
        drop(store);
        flusher.run();
        let (_, found) = crate::reviews::anonymous::held::HeldFile::open(&restored.join("held"))
            .expect("restored held");
        assert_eq!(
            found
                .payloads
                .iter()
                .map(|(_, p)| p.as_slice())
                .collect::<Vec<_>>(),
            vec![&b"held item"[..]]
        );

        let store_file = dir.path().join("backup").join(STORE);
        let mut bytes = std::fs::read(&store_file).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&store_file, &bytes).expect("write");
        let err =
            restore(&dir.path().join("backup"), &dir.path().join("again")).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("the backup is damaged: store is "),
            "{err}"
        );
        assert!(!dir.path().join("again").exists(), "nothing restored");
    }
}
