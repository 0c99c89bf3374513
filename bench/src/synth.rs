//! Pre-encodes a single writer's edits as Yjs v1 updates, without a Yjs document.
//!
//! Yrs finds a text index by walking the document's items, so a writer making 100k
//! edits at random positions spends minutes of CPU (quadratic) — in the same process,
//! on the same 2 cores as the servers being measured. This module instead keeps the
//! writer's character sequence (with tombstones) in a chunked list and writes each
//! edit's update directly in the lib0 v1 format: one `ContentString` item whose origin
//! is the character left of the insertion point and whose right origin is the next
//! item (possibly deleted) — exactly the item Yjs/yrs would create for a local insert
//! — plus a delete set for deletions. Done once, before the measured window.

use crate::client::TEXT_NAME;
use crate::trace::Patch;

const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Entry {
    clock: u32,
    ch: char,
    deleted: bool,
}

#[derive(Debug, Default)]
struct Chunk {
    entries: Vec<Entry>,
    visible: usize,
}

/// The writer's view of the text: every character ever inserted, in document order.
#[derive(Debug, Default)]
struct Sequence {
    chunks: Vec<Chunk>,
    visible: usize,
}

impl Sequence {
    /// (chunk, offset) of the `i`-th visible character.
    fn find_visible(&self, mut i: usize) -> Option<(usize, usize)> {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.visible {
                for (o, e) in chunk.entries.iter().enumerate() {
                    if !e.deleted {
                        if i == 0 {
                            return Some((c, o));
                        }
                        i -= 1;
                    }
                }
            } else {
                i -= chunk.visible;
            }
        }
        None
    }

    fn next_pos(&self, c: usize, o: usize) -> Option<(usize, usize)> {
        if o + 1 < self.chunks[c].entries.len() {
            return Some((c, o + 1));
        }
        (c + 1..self.chunks.len())
            .find(|&k| !self.chunks[k].entries.is_empty())
            .map(|k| (k, 0))
    }

    fn first_pos(&self) -> Option<(usize, usize)> {
        self.chunks
            .iter()
            .position(|c| !c.entries.is_empty())
            .map(|k| (k, 0))
    }

    fn at(&self, (c, o): (usize, usize)) -> Entry {
        self.chunks[c].entries[o]
    }

    /// Inserts `new` before full-sequence position `at` (None: at the end).
    fn insert_at(&mut self, at: Option<(usize, usize)>, new: &[Entry]) {
        if self.chunks.is_empty() {
            self.chunks.push(Chunk::default());
        }
        let (c, o) = at.unwrap_or_else(|| {
            let last = self.chunks.len() - 1;
            (last, self.chunks[last].entries.len())
        });
        let chunk = &mut self.chunks[c];
        chunk.entries.splice(o..o, new.iter().copied());
        chunk.visible += new.len();
        self.visible += new.len();
        if chunk.entries.len() > 2 * CHUNK {
            let tail = chunk.entries.split_off(CHUNK);
            let tail_visible = tail.iter().filter(|e| !e.deleted).count();
            chunk.visible -= tail_visible;
            self.chunks.insert(
                c + 1,
                Chunk {
                    entries: tail,
                    visible: tail_visible,
                },
            );
        }
    }

    fn text(&self) -> String {
        self.chunks
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| !e.deleted)
            .map(|e| e.ch)
            .collect()
    }
}

/// Turns one writer's edits into the updates a Yjs client would send.
#[derive(Debug)]
pub struct UpdateWriter {
    client: u64,
    clock: u32,
    seq: Sequence,
}

fn var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn var_string(out: &mut Vec<u8>, s: &str) {
    var_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl UpdateWriter {
    pub fn new(client: u64) -> Self {
        UpdateWriter {
            client,
            clock: 0,
            seq: Sequence::default(),
        }
    }

    pub fn text(&self) -> String {
        self.seq.text()
    }

    /// Applies one transaction (its patches in order) and returns its v1 update, or None
    /// when it changes nothing.
    pub fn txn(&mut self, patches: &[Patch]) -> Option<Vec<u8>> {
        // (origin clock, right origin clock, first clock, text)
        let mut items: Vec<(Option<u32>, Option<u32>, u32, &str)> = Vec::new();
        let mut deleted: Vec<u32> = Vec::new();
        for p in patches {
            let pos = (p.pos as usize).min(self.seq.visible);
            let del = (p.del as usize).min(self.seq.visible - pos);
            for _ in 0..del {
                // after each deletion the next character moves into `pos`
                if let Some((c, o)) = self.seq.find_visible(pos) {
                    let chunk = &mut self.seq.chunks[c];
                    chunk.entries[o].deleted = true;
                    chunk.visible -= 1;
                    self.seq.visible -= 1;
                    deleted.push(chunk.entries[o].clock);
                }
            }
            if p.ins.is_empty() {
                continue;
            }
            let (origin, right_pos) = if pos == 0 {
                (None, self.seq.first_pos())
            } else {
                let left = self.seq.find_visible(pos - 1);
                match left {
                    Some(l) => (Some(self.seq.at(l).clock), self.seq.next_pos(l.0, l.1)),
                    None => (None, None),
                }
            };
            let right = right_pos.map(|r| self.seq.at(r).clock);
            let first = self.clock;
            let new: Vec<Entry> = p
                .ins
                .chars()
                .enumerate()
                .map(|(k, ch)| Entry {
                    clock: first + k as u32,
                    ch,
                    deleted: false,
                })
                .collect();
            self.clock += new.len() as u32;
            self.seq.insert_at(right_pos, &new);
            items.push((origin, right, first, &p.ins));
        }
        if items.is_empty() && deleted.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(32);
        // structs
        if items.is_empty() {
            var_uint(&mut out, 0);
        } else {
            var_uint(&mut out, 1);
            var_uint(&mut out, items.len() as u64);
            var_uint(&mut out, self.client);
            var_uint(&mut out, u64::from(items[0].2));
            for (origin, right, _, text) in &items {
                let mut info: u8 = 4; // ContentString
                if origin.is_some() {
                    info |= 0x80;
                }
                if right.is_some() {
                    info |= 0x40;
                }
                out.push(info);
                if let Some(o) = origin {
                    var_uint(&mut out, self.client);
                    var_uint(&mut out, u64::from(*o));
                }
                if let Some(r) = right {
                    var_uint(&mut out, self.client);
                    var_uint(&mut out, u64::from(*r));
                }
                if origin.is_none() && right.is_none() {
                    var_uint(&mut out, 1); // parent is a root type, by name
                    var_string(&mut out, TEXT_NAME);
                }
                var_string(&mut out, text);
            }
        }
        // delete set
        if deleted.is_empty() {
            var_uint(&mut out, 0);
        } else {
            deleted.sort_unstable();
            let mut ranges: Vec<(u32, u32)> = Vec::new();
            for c in deleted {
                match ranges.last_mut() {
                    Some((start, len)) if *start + *len == c => *len += 1,
                    _ => ranges.push((c, 1)),
                }
            }
            var_uint(&mut out, 1);
            var_uint(&mut out, self.client);
            var_uint(&mut out, ranges.len() as u64);
            for (start, len) in ranges {
                var_uint(&mut out, u64::from(start));
                var_uint(&mut out, u64::from(len));
            }
        }
        Some(out)
    }
}

/// Encodes all `txns`; returns the updates and the final text.
pub fn encode_all(client: u64, txns: &[Vec<Patch>]) -> (Vec<Vec<u8>>, String) {
    let mut w = UpdateWriter::new(client);
    let updates = txns.iter().filter_map(|t| w.txn(t)).collect();
    (updates, w.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::single_char_edits;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, Transact, Update};

    fn check(txns: &[Vec<Patch>]) {
        let (updates, text) = encode_all(12345, txns);
        let doc = Doc::new();
        let t = doc.get_or_insert_text(TEXT_NAME);
        for u in &updates {
            let u = Update::decode_v1(u).expect("decodes");
            doc.transact_mut().apply_update(u).expect("applies");
        }
        assert_eq!(t.get_string(&doc.transact()), text);
    }

    #[test]
    fn synthetic_single_chars_match_yrs() {
        let txns: Vec<Vec<Patch>> = single_char_edits(5000, 0.5, 0.1, 7)
            .into_iter()
            .map(|p| vec![p])
            .collect();
        check(&txns);
    }

    #[test]
    fn multi_char_and_range_deletes_match_yrs() {
        let p = |pos, del, ins: &str| Patch {
            pos,
            del,
            ins: ins.into(),
            ins_len: ins.chars().count() as u32,
        };
        let txns = vec![
            vec![p(0, 0, "hello world")],
            vec![p(5, 6, "")],
            vec![p(0, 0, ">> ")],
            vec![p(8, 0, ", there")],
            vec![p(2, 3, "XYZ")],
            vec![p(0, 100, "")],
            vec![p(0, 0, "again")],
        ];
        check(&txns);
    }
}
