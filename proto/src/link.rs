//! Frames of the internal link between cluster nodes (`docs/cluster.md`, "Routing: the internal
//! link").
//!
//! A frame on the wire is a 4-byte big-endian length followed by that many bytes of body:
//!
//! ```text
//! length: u32 BE | kind: u8 | sub-stream: u32 BE | name length: u16 BE | name (UTF-8) | payload
//! ```
//!
//! The length counts the body only. A reader first decodes the length with [`body_length`], which
//! refuses a length above the reader's limit before a single byte of the body is read or
//! buffered, then reads exactly that many bytes and decodes them with [`Frame::decode_body`].
//! The document name travels on [`Kind::Open`] only; other frames leave it empty.

use std::fmt;

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Bytes of the body before the name: kind, sub-stream id and name length.
pub const BODY_HEADER_BYTES: usize = 1 + 4 + 2;
/// The largest document name a frame can carry (bytes of UTF-8).
pub const MAX_NAME_BYTES: usize = 1024;
/// Everything a frame holds besides its payload, at most: the length prefix, the body's header
/// and the longest name.
pub const MAX_OVERHEAD_BYTES: usize = LENGTH_BYTES + BODY_HEADER_BYTES + MAX_NAME_BYTES;

/// Close reason: the other side closed the sub-stream (its reader is gone or it is done).
pub const CLOSE_NORMAL: u16 = 1;
/// Close reason: the receiving side's reader did not keep up and its queue was full.
pub const CLOSE_SLOW_READER: u16 = 2;
/// Close reason: the receiving side had no room for another incoming sub-stream.
pub const CLOSE_BUSY: u16 = 3;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Handshake: the sender's node id (in the name field) and its 32-byte nonce (payload).
    Hello,
    /// Handshake: the sender's 32-byte HMAC proof (payload).
    Proof,
    /// A new sub-stream for the document named in the frame.
    Open,
    /// Bytes on a sub-stream.
    Data,
    /// A sub-stream is closed; the payload is a 2-byte big-endian reason code (`CLOSE_*`).
    Close,
    /// Nothing but a sign of life (sub-stream 0, no name, no payload).
    Heartbeat,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Hello => 1,
            Kind::Proof => 2,
            Kind::Open => 3,
            Kind::Data => 4,
            Kind::Close => 5,
            Kind::Heartbeat => 6,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Proof,
            3 => Kind::Open,
            4 => Kind::Data,
            5 => Kind::Close,
            6 => Kind::Heartbeat,
            _ => return None,
        })
    }
}

/// Why link bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announced more than the reader accepts.
    #[error("link frame of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The body length the prefix announced.
        declared: u64,
        /// The reader's limit for a body.
        limit: usize,
    },
    /// The body ended before its header or name did.
    #[error("link frame ended in the middle of its header")]
    Truncated,
    /// A kind byte this format does not define.
    #[error("unknown link frame kind {0}")]
    UnknownKind(u8),
    /// The name is longer than [`MAX_NAME_BYTES`] or not UTF-8.
    #[error("link frame has an invalid document name")]
    BadName,
    /// A close frame whose payload is not a 2-byte reason.
    #[error("link close frame without a 2-byte reason")]
    BadClose,
}

impl FrameError {
    /// A stable machine-readable name of the error class.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "too_large",
            FrameError::Truncated => "truncated",
            FrameError::UnknownKind(_) => "unknown_kind",
            FrameError::BadName => "bad_name",
            FrameError::BadClose => "bad_close",
        }
    }
}

/// One frame of the link.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The sub-stream it belongs to (0 for handshake and heartbeat frames).
    pub stream: u32,
    /// The document's name on [`Kind::Open`], the node id on [`Kind::Hello`], else empty.
    pub name: String,
    /// The bytes it carries.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads are document contents and tokens: their size only.
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("stream", &self.stream)
            .field("name", &self.name)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

impl Frame {
    /// A frame without name or payload.
    pub fn bare(kind: Kind, stream: u32) -> Frame {
        Frame {
            kind,
            stream,
            name: String::new(),
            payload: Vec::new(),
        }
    }

    /// A close frame for `stream` with one of the `CLOSE_*` reasons.
    pub fn close(stream: u32, reason: u16) -> Frame {
        Frame {
            kind: Kind::Close,
            stream,
            name: String::new(),
            payload: reason.to_be_bytes().to_vec(),
        }
    }

    /// The reason code of a close frame.
    pub fn close_reason(&self) -> Result<u16, FrameError> {
        match self.payload.as_slice() {
            [a, b] => Ok(u16::from_be_bytes([*a, *b])),
            _ => Err(FrameError::BadClose),
        }
    }

    /// The body's length on the wire (what the length prefix says).
    pub fn body_len(&self) -> usize {
        BODY_HEADER_BYTES + self.name.len() + self.payload.len()
    }

    /// Appends the frame, length prefix included, to `out`. A name longer than
    /// [`MAX_NAME_BYTES`] is refused (nothing is appended).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        if self.name.len() > MAX_NAME_BYTES {
            return Err(FrameError::BadName);
        }
        let body = self.body_len();
        let Ok(len) = u32::try_from(body) else {
            return Err(FrameError::TooLarge {
                declared: body as u64,
                limit: u32::MAX as usize,
            });
        };
        out.reserve(LENGTH_BYTES + body);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.stream.to_be_bytes());
        // Fits: checked against MAX_NAME_BYTES above.
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.payload);
        Ok(())
    }

    /// Decodes a body (the bytes after the length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
        let [kind, s0, s1, s2, s3, n0, n1, rest @ ..] = body else {
            return Err(FrameError::Truncated);
        };
        let kind = Kind::from_byte(*kind).ok_or(FrameError::UnknownKind(*kind))?;
        let stream = u32::from_be_bytes([*s0, *s1, *s2, *s3]);
        let name_len = usize::from(u16::from_be_bytes([*n0, *n1]));
        if name_len > MAX_NAME_BYTES {
            return Err(FrameError::BadName);
        }
        if rest.len() < name_len {
            return Err(FrameError::Truncated);
        }
        let (name, payload) = rest.split_at(name_len);
        let name = std::str::from_utf8(name).map_err(|_| FrameError::BadName)?;
        let frame = Frame {
            kind,
            stream,
            name: name.to_owned(),
            payload: payload.to_vec(),
        };
        if kind == Kind::Close {
            frame.close_reason()?;
        }
        Ok(frame)
    }
}

/// The body length a length prefix announces, refused when above `limit` (the largest body the
/// reader accepts) or too short to hold a body's header.
pub fn body_length(prefix: [u8; LENGTH_BYTES], limit: usize) -> Result<usize, FrameError> {
    let declared = u32::from_be_bytes(prefix);
    let len = declared as usize;
    if len > limit {
        return Err(FrameError::TooLarge {
            declared: u64::from(declared),
            limit,
        });
    }
    if len < BODY_HEADER_BYTES {
        return Err(FrameError::Truncated);
    }
    Ok(len)
}

/// Decodes one whole frame (length prefix and body) from the start of `bytes`, returning it and
/// the bytes it took; `Ok(None)` when `bytes` holds only part of a frame (read more), an error as
/// soon as the prefix is over `limit`.
pub fn decode(bytes: &[u8], limit: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<LENGTH_BYTES>() else {
        return Ok(None);
    };
    let len = body_length(*prefix, limit)?;
    let Some(body) = rest.get(..len) else {
        return Ok(None);
    };
    Ok(Some((Frame::decode_body(body)?, LENGTH_BYTES + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(stream: u32, payload: &[u8]) -> Frame {
        Frame {
            kind: Kind::Data,
            stream,
            name: String::new(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn frames_round_trip() {
        let open = Frame {
            kind: Kind::Open,
            stream: 7,
            name: "review-1/discussion".to_owned(),
            payload: Vec::new(),
        };
        for frame in [
            open,
            data(7, b"\x00\x01update"),
            Frame::close(7, CLOSE_SLOW_READER),
            Frame::bare(Kind::Heartbeat, 0),
        ] {
            let mut out = Vec::new();
            frame.encode(&mut out).expect("encodes");
            assert_eq!(out.len(), LENGTH_BYTES + frame.body_len());
            assert_eq!(decode(&out, 1 << 20), Ok(Some((frame, out.len()))));
        }
        assert_eq!(
            Frame::close(3, CLOSE_BUSY).close_reason(),
            Ok(CLOSE_BUSY),
            "the reason survives"
        );
    }

    #[test]
    fn exact_wire_layout() {
        let mut out = Vec::new();
        Frame {
            kind: Kind::Open,
            stream: 258,
            name: "ab".to_owned(),
            payload: vec![9],
        }
        .encode(&mut out)
        .expect("encodes");
        assert_eq!(out, [0, 0, 0, 10, 3, 0, 0, 1, 2, 0, 2, b'a', b'b', 9]);
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body() {
        let mut out = Vec::new();
        data(1, &[0; 100]).encode(&mut out).expect("encodes");
        // Only the prefix has arrived: the limit is enough to refuse it.
        assert_eq!(
            decode(&out[..LENGTH_BYTES], 50),
            Err(FrameError::TooLarge {
                declared: 107,
                limit: 50
            })
        );
        assert_eq!(
            decode(&[0xff; 4], 1 << 20)
                .expect_err("refused")
                .to_string(),
            "link frame of 4294967295 bytes exceeds the limit of 1048576 bytes"
        );
    }

    #[test]
    fn truncated_input_waits_or_fails() {
        let mut out = Vec::new();
        data(1, b"hello").encode(&mut out).expect("encodes");
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        // A prefix shorter than any header.
        assert_eq!(
            decode(&[0, 0, 0, 3, 4, 0, 0], 100),
            Err(FrameError::Truncated)
        );
        // A name running past the body.
        assert_eq!(
            Frame::decode_body(&[3, 0, 0, 0, 1, 0, 9, b'a']),
            Err(FrameError::Truncated)
        );
    }

    #[test]
    fn garbage_gives_a_clear_error() {
        assert_eq!(
            Frame::decode_body(&[99, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(99))
        );
        assert_eq!(
            FrameError::UnknownKind(99).to_string(),
            "unknown link frame kind 99"
        );
        assert_eq!(
            Frame::decode_body(&[3, 0, 0, 0, 1, 0, 2, 0xff, 0xfe]),
            Err(FrameError::BadName)
        );
        assert_eq!(
            Frame::decode_body(&[3, 0, 0, 0, 1, 0xff, 0xff]),
            Err(FrameError::BadName)
        );
        assert_eq!(
            Frame::decode_body(&[5, 0, 0, 0, 1, 0, 0, 1]),
            Err(FrameError::BadClose)
        );
        let long = Frame {
            kind: Kind::Open,
            stream: 1,
            name: "x".repeat(MAX_NAME_BYTES + 1),
            payload: Vec::new(),
        };
        let mut out = Vec::new();
        assert_eq!(long.encode(&mut out), Err(FrameError::BadName));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes, 32);
            let _ = Frame::decode_body(&bytes);
        }

        #[test]
        fn any_frame_round_trips(
            stream in any::<u32>(),
            name in "[a-z0-9/-]{0,40}",
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let frame = Frame { kind: Kind::Open, stream, name, payload };
            let mut out = Vec::new();
            frame.encode(&mut out).expect("encodes");
            prop_assert_eq!(decode(&out, 1 << 16), Ok(Some((frame, out.len()))));
        }
    }
}
