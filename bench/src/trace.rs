//! Editing traces: the automerge-paper typing trace (read in place from the
//! shared data folder) and a synthetic single-character trace.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// One patch: at `pos` (in characters), delete `del` characters, then insert `ins`.
#[derive(Debug, Clone)]
pub struct Patch {
    pub pos: u32,
    pub del: u32,
    pub ins: String,
    /// `ins` length in characters (UTF-16 code units, see [`Trace::bmp_only`]).
    pub ins_len: u32,
}

/// A transaction of the trace: its patches are applied in order, in one Yjs transaction.
pub type Txn = Vec<Patch>;

#[derive(Debug)]
pub struct Trace {
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

#[derive(Deserialize)]
struct RawTrace {
    #[serde(rename = "startContent")]
    start_content: String,
    #[serde(rename = "endContent")]
    end_content: String,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    patches: Vec<(u32, u32, String)>,
}

impl Trace {
    /// Reads a gzipped trace in the `{startContent, endContent, txns:[{patches}]}` format.
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening trace {} (see --data-dir)", path.display()))?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut json)
            .with_context(|| format!("gunzipping {}", path.display()))?;
        let raw: RawTrace =
            serde_json::from_slice(&json).with_context(|| format!("parsing {}", path.display()))?;
        let txns: Vec<Txn> = raw
            .txns
            .into_iter()
            .map(|t| {
                t.patches
                    .into_iter()
                    .map(|(pos, del, ins)| {
                        let ins_len = ins.chars().count() as u32;
                        Patch {
                            pos,
                            del,
                            ins,
                            ins_len,
                        }
                    })
                    .collect()
            })
            .collect();
        if txns.is_empty() {
            bail!("trace {} has no transactions", path.display());
        }
        let trace = Trace {
            start_content: raw.start_content,
            end_content: raw.end_content,
            txns,
        };
        if !trace.bmp_only() {
            // Yrs text offsets are UTF-16 units; trace offsets are Unicode chars.
            // They agree only when no character lies outside the BMP.
            bail!(
                "trace {} contains characters outside the BMP; char/UTF-16 offset \
                 conversion is not implemented",
                path.display()
            );
        }
        Ok(trace)
    }

    /// True when every character fits one UTF-16 unit, so char offsets = yrs UTF-16 offsets.
    pub fn bmp_only(&self) -> bool {
        let bmp = |s: &str| s.chars().all(|c| (c as u32) <= 0xFFFF);
        bmp(&self.start_content)
            && bmp(&self.end_content)
            && self.txns.iter().flatten().all(|p| bmp(&p.ins))
    }

    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(Vec::len).sum()
    }
}

/// Replays the *shape* of a trace at a moving cursor of a document shared with others:
/// the distance between consecutive trace edits is kept (so typing runs, backspaces and
/// jumps look like the original), but positions are clamped to the current document.
#[derive(Debug, Clone)]
pub struct RelativeCursor {
    idx: usize,
    prev_end: i64,
    cursor: i64,
}

/// One edit to apply at a concrete position of the local document.
#[derive(Debug, Clone)]
pub struct LocalEdit<'a> {
    pub pos: u32,
    pub del: u32,
    pub ins: &'a str,
}

impl RelativeCursor {
    pub fn new(start_txn: usize, cursor: u32) -> Self {
        RelativeCursor {
            idx: start_txn,
            prev_end: -1,
            cursor: i64::from(cursor),
        }
    }

    pub fn cursor(&self) -> u32 {
        self.cursor.max(0) as u32
    }

    /// Next trace transaction mapped onto a document of `len` characters.
    pub fn next<'a>(&mut self, trace: &'a Trace, len: u32) -> Vec<LocalEdit<'a>> {
        let txn = &trace.txns[self.idx % trace.txns.len()];
        self.idx += 1;
        let mut len = i64::from(len);
        let mut out = Vec::with_capacity(txn.len());
        for p in txn {
            let pos = i64::from(p.pos);
            let delta = if self.prev_end < 0 {
                0
            } else {
                pos - self.prev_end
            };
            // big jumps land somewhere plausible rather than always at an end
            let target = (self.cursor + delta).clamp(0, len);
            let del = i64::from(p.del).min(len - target);
            out.push(LocalEdit {
                pos: target as u32,
                del: del as u32,
                ins: &p.ins,
            });
            len = len - del + i64::from(p.ins_len);
            self.cursor = target + i64::from(p.ins_len);
            self.prev_end = pos + i64::from(p.ins_len);
        }
        out
    }
}

/// Synthetic trace of `n` single-character edits: typing runs that jump to a random
/// position with probability `jump`, and backspaces with probability `backspace`.
/// Produces a document whose Yjs encoding is large for its text (many short items).
pub fn single_char_edits(n: usize, jump: f64, backspace: f64, seed: u64) -> Vec<Patch> {
    let mut rng = StdRng::seed_from_u64(seed);
    let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz      ,.etaoin".chars().collect();
    let mut len: u32 = 0;
    let mut cursor: u32 = 0;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if len > 0 && rng.gen_bool(jump) {
            cursor = rng.gen_range(0..=len);
        }
        if cursor > 0 && rng.gen_bool(backspace) {
            cursor -= 1;
            len -= 1;
            out.push(Patch {
                pos: cursor,
                del: 1,
                ins: String::new(),
                ins_len: 0,
            });
        } else {
            let c = alphabet[rng.gen_range(0..alphabet.len())];
            out.push(Patch {
                pos: cursor,
                del: 0,
                ins: c.to_string(),
                ins_len: 1,
            });
            cursor += 1;
            len += 1;
        }
    }
    out
}
