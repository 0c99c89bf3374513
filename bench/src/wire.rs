//! Framing of the Yjs messages on the websocket, per dialect.
//!
//! - y-websocket: a frame is one or more y-protocols messages (`varUint(type)` + body); the
//!   document is named by the URL.
//! - Hocuspocus: a frame is one message, `varString(document)` + `varUint(type)` + body;
//!   types 0 (Sync), 1 (Awareness) and 3 (QueryAwareness) have the y-protocols bodies, so
//!   their y-protocols encoding is reused after the document name. Ping / Pong are bare
//!   one-byte frames without a document name.
//!
//! The lib0 primitives (varUint, signed varInt, varString) are written out here rather than
//! taken from yrs so that the Hocuspocus-only parts (auth, sync status) read exactly the way
//! the JavaScript side writes them.

use anyhow::{bail, Context, Result};
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;

use crate::target::Dialect;

/// Hocuspocus message types.
pub mod hp {
    pub const SYNC: u64 = 0;
    pub const AWARENESS: u64 = 1;
    pub const AUTH: u64 = 2;
    pub const QUERY_AWARENESS: u64 = 3;
    pub const SYNC_REPLY: u64 = 4;
    pub const STATELESS: u64 = 5;
    pub const BROADCAST_STATELESS: u64 = 6;
    pub const CLOSE: u64 = 7;
    pub const SYNC_STATUS: u64 = 8;
    pub const PING: u8 = 9;
    pub const PONG: u8 = 10;

    /// Auth sub-types.
    pub const AUTH_TOKEN: u64 = 0;
    pub const AUTH_PERMISSION_DENIED: u64 = 1;
    pub const AUTH_AUTHENTICATED: u64 = 2;
}

/// Token the bench presents (Debrief's default and the bench's Hocuspocus accept any).
pub const TOKEN: &str = "bench";
/// Token the bench's observers present where read-only access exists (Debrief is started
/// with it as `--read-only-token`).
pub const READ_ONLY_TOKEN: &str = "bench-observer";
/// Provider version announced in the auth message.
pub const PROVIDER_VERSION: &str = "4.7.0";

// ------------------------------------------------------------------ lib0

pub fn write_var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn write_var_string(out: &mut Vec<u8>, s: &str) {
    write_var_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a received frame.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).context("message ends early")?;
        self.pos += 1;
        Ok(b)
    }

    pub fn var_uint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift > 63 {
                bail!("varUint too long");
            }
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    /// lib0 signed varInt: first byte = continuation bit, sign bit, 6 value bits; then
    /// 7 bits per byte.
    pub fn var_int(&mut self) -> Result<i64> {
        let first = self.byte()?;
        let negative = first & 0x40 != 0;
        let mut v = u64::from(first & 0x3F);
        let mut more = first & 0x80 != 0;
        let mut shift = 6u32;
        while more {
            let b = self.byte()?;
            if shift > 62 {
                bail!("varInt too long");
            }
            v |= u64::from(b & 0x7F) << shift;
            more = b & 0x80 != 0;
            shift += 7;
        }
        let v = i64::try_from(v).context("varInt out of range")?;
        Ok(if negative { -v } else { v })
    }

    pub fn var_bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.var_uint()?)?;
        let end = self.pos.checked_add(n).context("length overflow")?;
        let s = self.buf.get(self.pos..end).context("message ends early")?;
        self.pos = end;
        Ok(s)
    }

    pub fn var_string(&mut self) -> Result<String> {
        let b = self.var_bytes()?;
        Ok(std::str::from_utf8(b).context("invalid utf-8")?.to_owned())
    }
}

// ------------------------------------------------------------------ messages

/// One received message, whatever the dialect.
#[derive(Debug)]
pub enum Incoming {
    /// A y-protocols message (sync, awareness, awareness query).
    Y(Message),
    /// Hocuspocus SyncReply: a sync message whose SyncStep1 is not answered.
    SyncReply(SyncMessage),
    Authenticated(String),
    PermissionDenied(String),
    /// The server asks for a (fresh) token.
    TokenRequest,
    /// Hocuspocus SyncStatus: `true` = the update was applied (acknowledged).
    SyncStatus(bool),
    Stateless,
    /// The server closed this document's session.
    Close(String),
    Ping,
    Pong,
    /// A message for another document or of an unknown type.
    Ignored,
}

/// Encodes a y-protocols message for `doc` in `dialect`.
pub fn encode(dialect: Dialect, doc: &str, msg: &Message) -> Vec<u8> {
    match dialect {
        Dialect::YWebsocket => msg.encode_v1(),
        Dialect::Hocuspocus => {
            let body = msg.encode_v1();
            let mut out = Vec::with_capacity(body.len() + doc.len() + 2);
            write_var_string(&mut out, doc);
            out.extend_from_slice(&body);
            out
        }
    }
}

/// Hocuspocus Auth Token message: `varString(doc) 2 0 varString(token) varString(version)`.
pub fn hp_auth_token(doc: &str, token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_string(&mut out, doc);
    write_var_uint(&mut out, hp::AUTH);
    write_var_uint(&mut out, hp::AUTH_TOKEN);
    write_var_string(&mut out, token);
    write_var_string(&mut out, PROVIDER_VERSION);
    out
}

pub fn hp_pong() -> Vec<u8> {
    vec![hp::PONG]
}

/// Decodes one received binary frame.
pub fn decode(dialect: Dialect, doc: &str, frame: &[u8]) -> Result<Vec<Incoming>> {
    match dialect {
        Dialect::YWebsocket => {
            let mut decoder = DecoderV1::new(yrs::encoding::read::Cursor::new(frame));
            let msgs: Vec<Message> = MessageReader::new(&mut decoder)
                .collect::<Result<_, _>>()
                .context("decoding y-protocols message")?;
            Ok(msgs
                .into_iter()
                .map(|m| match m {
                    Message::Auth(Some(reason)) => Incoming::PermissionDenied(reason),
                    m => Incoming::Y(m),
                })
                .collect())
        }
        Dialect::Hocuspocus => Ok(vec![
            decode_hocuspocus(doc, frame).context("decoding Hocuspocus message")?
        ]),
    }
}

fn decode_hocuspocus(doc: &str, frame: &[u8]) -> Result<Incoming> {
    if frame.len() == 1 {
        match frame[0] {
            hp::PING => return Ok(Incoming::Ping),
            hp::PONG => return Ok(Incoming::Pong),
            _ => {}
        }
    }
    let mut r = Reader::new(frame);
    let name = r.var_string()?;
    // a session-aware address is "doc\0session"
    let plain = name.split('\0').next().unwrap_or("");
    if plain != doc {
        return Ok(Incoming::Ignored);
    }
    let ty = r.var_uint()?;
    Ok(match ty {
        hp::SYNC | hp::SYNC_REPLY => {
            let sync = SyncMessage::decode_v1(r.rest()).context("sync body")?;
            if ty == hp::SYNC {
                Incoming::Y(Message::Sync(sync))
            } else {
                Incoming::SyncReply(sync)
            }
        }
        hp::AWARENESS | hp::QUERY_AWARENESS => {
            // same body as y-protocols: decode type + body together
            let start = frame.len() - r.rest().len() - 1;
            Incoming::Y(Message::decode_v1(&frame[start..]).context("awareness")?)
        }
        hp::AUTH => match r.var_uint()? {
            hp::AUTH_TOKEN => Incoming::TokenRequest,
            hp::AUTH_PERMISSION_DENIED => {
                Incoming::PermissionDenied(r.var_string().unwrap_or_default())
            }
            hp::AUTH_AUTHENTICATED => Incoming::Authenticated(r.var_string().unwrap_or_default()),
            other => bail!("unknown auth message type {other}"),
        },
        hp::STATELESS | hp::BROADCAST_STATELESS => Incoming::Stateless,
        hp::CLOSE => Incoming::Close(r.var_string().unwrap_or_default()),
        hp::SYNC_STATUS => match r.var_int()? {
            1 => Incoming::SyncStatus(true),
            0 => Incoming::SyncStatus(false),
            other => bail!("SyncStatus {other}"),
        },
        _ => Incoming::Ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::StateVector;

    #[test]
    fn var_uint_and_int() {
        let mut out = Vec::new();
        write_var_uint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        assert_eq!(Reader::new(&out).var_uint().expect("decodes"), 300);
        // lib0 writeVarInt: 1 -> [0x01], -1 -> [0x41], 100 -> [0xA4, 0x01]
        assert_eq!(Reader::new(&[0x01]).var_int().expect("decodes"), 1);
        assert_eq!(Reader::new(&[0x00]).var_int().expect("decodes"), 0);
        assert_eq!(Reader::new(&[0x41]).var_int().expect("decodes"), -1);
        assert_eq!(Reader::new(&[0xA4, 0x01]).var_int().expect("decodes"), 100);
    }

    #[test]
    fn hocuspocus_frames() {
        let doc = "d1";
        let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default()));
        let f = encode(Dialect::Hocuspocus, doc, &step1);
        assert_eq!(f, [2, b'd', b'1', 0, 0, 1, 0]);
        match decode(Dialect::Hocuspocus, doc, &f)
            .expect("decodes")
            .as_slice()
        {
            [Incoming::Y(m)] => assert_eq!(*m, step1),
            other => panic!("{other:?}"),
        }
        let auth = hp_auth_token(doc, TOKEN);
        assert_eq!(&auth[..5], [2, b'd', b'1', 2, 0]);
        // Authenticated read-write
        let mut a = Vec::new();
        write_var_string(&mut a, doc);
        a.extend([2, 2]);
        write_var_string(&mut a, "read-write");
        assert!(matches!(
            decode(Dialect::Hocuspocus, doc, &a).expect("decodes")[0],
            Incoming::Authenticated(ref s) if s == "read-write"
        ));
        // SyncStatus(1), another document, ping
        let s = [2, b'd', b'1', 8, 1];
        assert!(matches!(
            decode(Dialect::Hocuspocus, doc, &s).expect("decodes")[0],
            Incoming::SyncStatus(true)
        ));
        let other = [2, b'x', b'1', 8, 1];
        assert!(matches!(
            decode(Dialect::Hocuspocus, doc, &other).expect("decodes")[0],
            Incoming::Ignored
        ));
        assert!(matches!(
            decode(Dialect::Hocuspocus, doc, &[9]).expect("decodes")[0],
            Incoming::Ping
        ));
        // awareness query
        assert!(matches!(
            decode(Dialect::Hocuspocus, doc, &[2, b'd', b'1', 3]).expect("decodes")[0],
            Incoming::Y(Message::AwarenessQuery)
        ));
    }
}
