//! The file that holds anonymous submissions until their release: fixed-size slots at random
//! positions, written in place, synced, and wiped after the release.
//!
//! Why not sled: sled is log-structured. Everything written to it lands at the end of its file in
//! the order it arrived, next to whatever else was written at that moment (a named comment, a
//! join, a read mark), and stays there until sled happens to rewrite that segment. Someone who
//! copies the data directory and knows who was active when can then order held items by arrival
//! and place each next to its author's own writes. This file has no such order:
//! - it is created at its full size, zero-filled and synced, before the first item is written,
//!   so its length and allocation never change with what is held;
//! - each item goes into a free slot chosen uniformly at random; every slot is the same size, so
//!   neither position nor length says when an item arrived or who wrote it;
//! - an item is written and synced before its submission is acknowledged (so it survives
//!   `kill -9`), and its slot is overwritten with zeros, and synced, once its release is durable.
//!
//! Slot layout: `"DBH1"`, payload length (u32 LE), CRC-32 of the payload (u32 LE), the payload,
//! zeros. An all-zero slot is free. A slot whose header or checksum does not hold was cut short
//! by a crash (never acknowledged: the sync had not returned) or wiped halfway (already released),
//! or it is damaged; it is reported, zeroed and reused.
//!
//! This module knows slots and bytes only; `anonymous.rs` says what a payload means.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::Rng;

/// Bytes of one slot: a 4,000-character comment in four-byte characters (16,000 bytes) with a
/// 500-character quote, its ids and key hash, encoded, with room to spare.
pub const SLOT_BYTES: usize = 20 * 1024;
/// Slots in the file: how many anonymous submissions the whole server can hold at once. A
/// release empties them every cadence, so this is many minutes of a busy server's anonymous
/// items, and 20 MiB of disk.
pub const SLOTS: usize = 1024;

const MAGIC: [u8; 4] = *b"DBH1";
const HEADER: usize = 12;
/// Largest payload a slot takes.
pub const MAX_PAYLOAD: usize = SLOT_BYTES - HEADER;
const FILE_NAME: &str = "slots";

/// The held-items file of a data directory.
#[derive(Debug)]
pub struct HeldFile {
    dir: PathBuf,
    /// Open once the file exists (it is created on the first write).
    file: Option<File>,
    /// Which slots hold something.
    used: Vec<bool>,
}

/// What [`HeldFile::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every slot that holds a payload whose checksum holds.
    pub payloads: Vec<(u32, Vec<u8>)>,
    /// Slots that held something else: cut short, wiped halfway, or damaged. Zeroed by now.
    pub damaged: Vec<u32>,
}

impl HeldFile {
    /// Opens the file in `dir` if it exists and reads back what it holds.
    pub fn open(dir: &Path) -> std::io::Result<(HeldFile, Recovered)> {
        let mut held = HeldFile {
            dir: dir.to_owned(),
            file: None,
            used: vec![false; SLOTS],
        };
        let path = dir.join(FILE_NAME);
        let mut found = Recovered::default();
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((held, found)),
            Err(e) => return Err(e),
        };
        let mut all = Vec::with_capacity(SLOTS * SLOT_BYTES);
        file.read_to_end(&mut all)?;
        if all.len() != SLOTS * SLOT_BYTES {
            return Err(std::io::Error::other(format!(
                "{} is {} bytes, not {}: it was not written by this version, or it is damaged",
                path.display(),
                all.len(),
                SLOTS * SLOT_BYTES
            )));
        }
        for (i, slot) in all.chunks_exact(SLOT_BYTES).enumerate() {
            if slot.iter().all(|b| *b == 0) {
                continue;
            }
            match decode(slot) {
                Some(payload) => {
                    held.used[i] = true;
                    found.payloads.push((i as u32, payload.to_vec()));
                }
                None => found.damaged.push(i as u32),
            }
        }
        held.file = Some(file);
        if !found.damaged.is_empty() {
            held.wipe(&found.damaged)?;
        }
        Ok((held, found))
    }

    /// Writes each payload into a free slot chosen at random, syncs once, and returns the slots
    /// in the order of `payloads`. Fails without writing when a payload is too large or there
    /// are not enough free slots.
    pub fn write(&mut self, payloads: &[Vec<u8>]) -> Result<Vec<u32>, HeldError> {
        if payloads.iter().any(|p| p.len() > MAX_PAYLOAD) {
            return Err(HeldError::TooLarge);
        }
        let mut free: Vec<u32> = (0..SLOTS as u32)
            .filter(|i| !self.used[*i as usize])
            .collect();
        if free.len() < payloads.len() {
            return Err(HeldError::Full);
        }
        let file = self.file()?;
        let mut rng = rand::rngs::OsRng;
        let mut slots = Vec::with_capacity(payloads.len());
        let mut buf = vec![0u8; SLOT_BYTES];
        for payload in payloads {
            let slot = free.swap_remove(rng.gen_range(0..free.len()));
            encode(payload, &mut buf);
            file.write_all_at(&buf, offset(slot))?;
            slots.push(slot);
        }
        file.sync_data()?;
        for slot in &slots {
            self.used[*slot as usize] = true;
        }
        Ok(slots)
    }

    /// Overwrites `slots` with zeros and syncs once.
    pub fn wipe(&mut self, slots: &[u32]) -> std::io::Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let zeros = vec![0u8; SLOT_BYTES];
        for slot in slots {
            file.write_all_at(&zeros, offset(*slot))?;
        }
        file.sync_data()?;
        for slot in slots {
            self.used[*slot as usize] = false;
        }
        Ok(())
    }

    /// The open file, created (zero-filled at full size, synced, then renamed into place) on
    /// first use.
    fn file(&mut self) -> std::io::Result<&File> {
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(FILE_NAME);
            let fresh = self.dir.join(format!("{FILE_NAME}.new"));
            {
                let mut f = File::create(&fresh)?;
                let zeros = vec![0u8; SLOT_BYTES * 64];
                for _ in 0..SLOTS / 64 {
                    f.write_all(&zeros)?;
                }
                f.sync_all()?;
            }
            std::fs::rename(&fresh, &path)?;
            File::open(&self.dir)?.sync_all()?;
            self.file = Some(OpenOptions::new().read(true).write(true).open(&path)?);
        }
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("held file missing"))
    }
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    /// Every slot is taken.
    #[error("every slot of the held-items file is taken")]
    Full,
    /// The payload does not fit a slot.
    #[error("the item does not fit a slot")]
    TooLarge,
    /// The file could not be written or synced.
    #[error("held-items file: {0}")]
    Io(#[from] std::io::Error),
    /// The held slots in the database could not be written (a node of a cluster).
    #[error("held slots: {0}")]
    Store(#[from] crate::storage::store::StoreError),
}

fn offset(slot: u32) -> u64 {
    u64::from(slot) * SLOT_BYTES as u64
}

/// Writes a slot's bytes for `payload` into `buf` (a slot long); also what a sealed slot holds.
pub(super) fn encode(payload: &[u8], buf: &mut [u8]) {
    buf.fill(0);
    buf[..4].copy_from_slice(&MAGIC);
    buf[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    buf[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf[HEADER..HEADER + payload.len()].copy_from_slice(payload);
}

/// The payload of a slot's bytes, if its header and checksum hold.
pub(super) fn decode(slot: &[u8]) -> Option<&[u8]> {
    if slot[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(slot[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(slot[8..12].try_into().ok()?);
    let payload = slot.get(HEADER..HEADER + len)?;
    (crc32fast::hash(payload) == crc && slot[HEADER + len..].iter().all(|b| *b == 0))
        .then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_survive_a_reopen_and_wiped_slots_are_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut held, found) = HeldFile::open(dir.path()).expect("open");
        assert!(found.payloads.is_empty());
        assert!(!dir.path().join(FILE_NAME).exists(), "created on first use");
        let slots = held
            .write(&[b"one".to_vec(), b"two".to_vec(), b"three".to_vec()])
            .expect("write");
        held.wipe(&slots[1..2]).expect("wipe");
        drop(held);
        let raw = std::fs::read(dir.path().join(FILE_NAME)).expect("read");
        assert_eq!(raw.len(), SLOTS * SLOT_BYTES);
        let wiped = offset(slots[1]) as usize;
        assert!(raw[wiped..wiped + SLOT_BYTES].iter().all(|b| *b == 0));
        assert!(!raw.windows(3).any(|w| w == b"two"));
        let (_, found) = HeldFile::open(dir.path()).expect("reopen");
        let mut got: Vec<(u32, Vec<u8>)> = found.payloads;
        got.sort();
        let mut want = vec![(slots[0], b"one".to_vec()), (slots[2], b"three".to_vec())];
        want.sort();
        assert_eq!(got, want);
        assert!(found.damaged.is_empty());
    }

    #[test]
    fn a_damaged_slot_is_reported_and_zeroed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut held, _) = HeldFile::open(dir.path()).expect("open");
        let slots = held
            .write(&[b"kept".to_vec(), b"torn".to_vec()])
            .expect("write");
        drop(held);
        let path = dir.path().join(FILE_NAME);
        let mut raw = std::fs::read(&path).expect("read");
        raw[offset(slots[1]) as usize + HEADER] ^= 0xff;
        std::fs::write(&path, &raw).expect("write");
        let (_, found) = HeldFile::open(dir.path()).expect("reopen");
        assert_eq!(found.payloads, vec![(slots[0], b"kept".to_vec())]);
        assert_eq!(found.damaged, vec![slots[1]]);
        let raw = std::fs::read(&path).expect("read");
        let at = offset(slots[1]) as usize;
        assert!(raw[at..at + SLOT_BYTES].iter().all(|b| *b == 0));
    }

    #[test]
    fn positions_are_spread_over_the_file_in_no_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut held, _) = HeldFile::open(dir.path()).expect("open");
        let mut slots = Vec::new();
        for i in 0..200u32 {
            slots.extend(held.write(&[i.to_le_bytes().to_vec()]).expect("write"));
        }
        // Rank correlation between arrival and position: near zero for random slots (its
        // standard deviation is 1/sqrt(199) ≈ 0.07), 1 for slots taken in order.
        let n = slots.len() as f64;
        let mut by_pos: Vec<(u32, usize)> = slots.iter().copied().zip(0..).collect();
        by_pos.sort();
        let d2: f64 = by_pos
            .iter()
            .enumerate()
            .map(|(rank, (_, arrival))| (rank as f64 - *arrival as f64).powi(2))
            .sum();
        let rho = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
        assert!(rho.abs() < 0.35, "rank correlation {rho}");
        assert!(matches!(
            held.write(&[vec![0u8; MAX_PAYLOAD + 1]]),
            Err(HeldError::TooLarge)
        ));
    }
}
