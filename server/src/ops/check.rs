//! `debrief check`: verifies a data directory offline, and the held-items check that the server
//! also makes at start. This module only reads the data directory: everything that could change
//! a file (sled's recovery, the held file's wiping of bad slots) runs on a scratch copy.

use std::path::{Path, PathBuf};

use crate::reviews::anonymous::held::HeldFile;
use crate::storage::integrity::OnDamage;
use crate::storage::store::{Store, StoreError};

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Nothing is damaged.
    Healthy,
    /// One line per damaged thing.
    Damaged(Vec<String>),
}

/// Checks `dir` exactly as the server does at start (manifest, sled's files and trees, the
/// generation, the write-ahead segments), plus every slot of the held-items file — on a copy, so
/// that `dir` is never changed. `Err` when it cannot be checked at all.
pub fn check(dir: &Path) -> Result<Checked, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a data directory", dir.display()));
    }
    if crate::ops::admin::server_running(dir) {
        return Err(format!(
            "a server is running on {}; stop it first (or take a backup with `debrief backup`)",
            dir.display()
        ));
    }
    let scratch = Scratch::new().map_err(|e| format!("making a scratch folder: {e}"))?;
    let copy = scratch.0.join("data");
    crate::storage::integrity::copy_tree(dir, &copy, false)
        .map_err(|e| format!("copying {}: {e}", dir.display()))?;
    // The copy's kept folders would only be noise in it.
    let _ = std::fs::remove_dir_all(copy.join(crate::storage::integrity::DAMAGED));
    let mut lines = match Store::open_checked(&copy, OnDamage::Refuse) {
        Ok(opened) => {
            drop(opened.store);
            Vec::new()
        }
        Err(StoreError::Damaged(d)) => d.lines,
        Err(e) => return Err(e.to_string()),
    };
    lines.extend(held_damage_in(&copy.join("held")).map_err(|e| format!("held/slots: {e}"))?);
    Ok(if lines.is_empty() {
        Checked::Healthy
    } else {
        Checked::Damaged(lines)
    })
}

fn held_damage_in(held_dir: &Path) -> std::io::Result<Vec<String>> {
    match HeldFile::open(held_dir) {
        Ok((_, found)) if found.damaged.is_empty() => Ok(Vec::new()),
        Ok((_, found)) => Ok(vec![format!(
            "held/slots: slot(s) {} fail their checksum: a write or a wipe cut short by a crash, \
             or damage to a held anonymous item",
            found
                .damaged
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )]),
        Err(e) => Ok(vec![format!("held/slots: {e}")]),
    }
}

/// A scratch folder under the system's temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("debrief-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
