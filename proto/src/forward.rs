//! What travels on a link sub-stream that carries one forwarded attachment: a client connected to
//! one node (its entry node) and attached to a document another node owns (`docs/cluster.md`,
//! "Routing: the internal link").
//!
//! Each payload of the sub-stream is one message, in the y-protocols style: a varUint type, then
//! its body. The entry node has already decoded the client's dialect; what crosses is free of
//! either dialect, so one owner serves clients of both.
//!
//! Entry → owner:
//! - first, and only first, [`MSG_JOIN`]: `varString(token)`, the token the client presented
//!   (the owner decides its access, since only it knows the review's sessions);
//! - then y-protocols frames as a client sends them (sync, awareness, awareness query), decoded
//!   with [`crate::ywire::decode_frame`].
//!
//! Owner → entry, one message per payload:
//! - y-protocols messages for the client (sync, awareness), as they are;
//! - [`MSG_NOTICE`]: what the owner tells the client about its own standing ([`Notice`]);
//! - [`MSG_JOIN_FAILED`]: the document could not take the attachment ([`JoinFailure`]);
//! - [`MSG_CLOSE`]: `u16 BE code, varString(reason)`: the owner closes the attachment, and the
//!   entry closes its client the way its dialect does for that code.
//!
//! The sub-stream's end (its close frame) is the attachment's end, in either direction.

use crate::lib0::{write_var_string, write_var_uint, Reader};
use crate::ywire::{MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC};
use crate::DecodeError;

/// Entry → owner: the client's token; the first message of every forwarded attachment.
pub const MSG_JOIN: u64 = 100;
/// Owner → entry: a [`Notice`].
pub const MSG_NOTICE: u64 = 101;
/// Owner → entry: a [`JoinFailure`].
pub const MSG_JOIN_FAILED: u64 = 102;
/// Owner → entry: the owner closes the attachment with a code and reason.
pub const MSG_CLOSE: u64 = 103;

/// Access to a document as the link says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireAccess {
    /// Read and change.
    ReadWrite,
    /// Read and be present only.
    ReadOnly,
}

/// What an owner tells a forwarded attachment about its own standing; the entry node turns it
/// into its client's dialect as it would a notice of a document it owned itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice<'a> {
    /// Attached with this access.
    Opened(WireAccess),
    /// The access changed to this.
    Access(WireAccess),
    /// Access was withdrawn, with the refusal's stable code and its sentence.
    Withdrawn {
        /// Stable name of the refusal (`invalid_token`, …).
        code: &'a str,
        /// One human sentence.
        message: &'a str,
    },
    /// An update is applied and durable.
    Applied,
    /// An update held something new and was refused (read-only).
    Refused,
}

/// Why a document could not take a forwarded attachment (the owner's join refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// The document was unloading; the entry may try again.
    Unloading,
    /// The document has as many connections as it may.
    Full,
    /// The places left are kept for writers.
    FullForReaders,
    /// The session has the document open as often as it may.
    TooManyForSession,
    /// The owner is shutting down.
    ShuttingDown,
}

impl JoinFailure {
    fn to_byte(self) -> u8 {
        match self {
            JoinFailure::Unloading => 0,
            JoinFailure::Full => 1,
            JoinFailure::FullForReaders => 2,
            JoinFailure::TooManyForSession => 3,
            JoinFailure::ShuttingDown => 4,
        }
    }

    fn from_byte(b: u64) -> Result<JoinFailure, DecodeError> {
        Ok(match b {
            0 => JoinFailure::Unloading,
            1 => JoinFailure::Full,
            2 => JoinFailure::FullForReaders,
            3 => JoinFailure::TooManyForSession,
            4 => JoinFailure::ShuttingDown,
            other => return Err(DecodeError::UnknownMessageType(other)),
        })
    }
}

const NOTICE_OPENED_RW: u64 = 0;
const NOTICE_OPENED_RO: u64 = 1;
const NOTICE_ACCESS_RW: u64 = 2;
const NOTICE_ACCESS_RO: u64 = 3;
const NOTICE_WITHDRAWN: u64 = 4;
const NOTICE_APPLIED: u64 = 5;
const NOTICE_REFUSED: u64 = 6;

/// The [`MSG_JOIN`] message for `token`.
pub fn encode_join(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len() + 4);
    write_var_uint(&mut out, MSG_JOIN);
    write_var_string(&mut out, token);
    out
}

/// The token of a [`MSG_JOIN`] message; anything else is an error (the first message of an
/// attachment must be its join).
pub fn decode_join(payload: &[u8]) -> Result<&str, DecodeError> {
    let mut r = Reader::new(payload);
    match r.read_var_uint()? {
        MSG_JOIN => {}
        other => return Err(DecodeError::UnknownMessageType(other)),
    }
    let token = r.read_var_string()?;
    match r.remaining() {
        0 => Ok(token),
        left => Err(DecodeError::TrailingBytes(left)),
    }
}

/// The [`MSG_NOTICE`] message for `notice`.
pub fn encode_notice(notice: &Notice<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    write_var_uint(&mut out, MSG_NOTICE);
    let access = |ro: bool, rw: u64, ro_kind: u64| if ro { ro_kind } else { rw };
    match notice {
        Notice::Opened(a) => write_var_uint(
            &mut out,
            access(
                *a == WireAccess::ReadOnly,
                NOTICE_OPENED_RW,
                NOTICE_OPENED_RO,
            ),
        ),
        Notice::Access(a) => write_var_uint(
            &mut out,
            access(
                *a == WireAccess::ReadOnly,
                NOTICE_ACCESS_RW,
                NOTICE_ACCESS_RO,
            ),
        ),
        Notice::Withdrawn { code, message } => {
            write_var_uint(&mut out, NOTICE_WITHDRAWN);
            write_var_string(&mut out, code);
            write_var_string(&mut out, message);
        }
        Notice::Applied => write_var_uint(&mut out, NOTICE_APPLIED),
        Notice::Refused => write_var_uint(&mut out, NOTICE_REFUSED),
    }
    out
}

/// The [`MSG_JOIN_FAILED`] message for `failure`.
pub fn encode_join_failed(failure: JoinFailure) -> Vec<u8> {
    let mut out = Vec::with_capacity(2);
    write_var_uint(&mut out, MSG_JOIN_FAILED);
    write_var_uint(&mut out, u64::from(failure.to_byte()));
    out
}

/// The [`MSG_CLOSE`] message for `code` and `reason`.
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 5);
    write_var_uint(&mut out, MSG_CLOSE);
    out.extend_from_slice(&code.to_be_bytes());
    write_var_string(&mut out, reason);
    out
}

/// One message from the owner, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromOwner<'a> {
    /// A y-protocols message (sync or awareness) for the client: the whole payload, as it is.
    Message(&'a [u8]),
    /// A notice.
    Notice(Notice<'a>),
    /// The join was refused.
    JoinFailed(JoinFailure),
    /// The owner closes the attachment.
    Close {
        /// The close code (`debrief_proto::close`).
        code: u16,
        /// The close reason.
        reason: &'a str,
    },
}

/// Decodes one payload an owner sent. A y-protocols message is checked only for its type; the
/// client it goes to decodes the rest.
pub fn decode_from_owner(payload: &[u8]) -> Result<FromOwner<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    let kind = r.read_var_uint()?;
    let decoded = match kind {
        MSG_SYNC | MSG_AWARENESS | MSG_QUERY_AWARENESS => return Ok(FromOwner::Message(payload)),
        MSG_NOTICE => FromOwner::Notice(match r.read_var_uint()? {
            NOTICE_OPENED_RW => Notice::Opened(WireAccess::ReadWrite),
            NOTICE_OPENED_RO => Notice::Opened(WireAccess::ReadOnly),
            NOTICE_ACCESS_RW => Notice::Access(WireAccess::ReadWrite),
            NOTICE_ACCESS_RO => Notice::Access(WireAccess::ReadOnly),
            NOTICE_WITHDRAWN => {
                let code = r.read_var_string()?;
                let message = r.read_var_string()?;
                Notice::Withdrawn { code, message }
            }
            NOTICE_APPLIED => Notice::Applied,
            NOTICE_REFUSED => Notice::Refused,
            other => return Err(DecodeError::UnknownMessageType(other)),
        }),
        MSG_JOIN_FAILED => FromOwner::JoinFailed(JoinFailure::from_byte(r.read_var_uint()?)?),
        MSG_CLOSE => {
            let code = r.read_bytes(2)?;
            let code = u16::from_be_bytes([code[0], code[1]]);
            let reason = r.read_var_string()?;
            FromOwner::Close { code, reason }
        }
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    match r.remaining() {
        0 => Ok(decoded),
        left => Err(DecodeError::TrailingBytes(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_round_trips_and_nothing_else_is_a_join() {
        assert_eq!(decode_join(&encode_join("dbs_abc")), Ok("dbs_abc"));
        assert_eq!(decode_join(&encode_join("")), Ok(""));
        // A sync step 1 is not a join.
        assert_eq!(
            decode_join(&[0, 0, 1, 0]),
            Err(DecodeError::UnknownMessageType(0))
        );
        let mut long = encode_join("t");
        long.push(9);
        assert_eq!(decode_join(&long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(
            decode_join(&[100, 5, b'a']),
            Err(DecodeError::LengthOverrun {
                declared: 5,
                remaining: 1
            })
        );
    }

    #[test]
    fn every_owner_message_round_trips() {
        let notices = [
            Notice::Opened(WireAccess::ReadWrite),
            Notice::Opened(WireAccess::ReadOnly),
            Notice::Access(WireAccess::ReadWrite),
            Notice::Access(WireAccess::ReadOnly),
            Notice::Withdrawn {
                code: "session_revoked",
                message: "the facilitator removed this session",
            },
            Notice::Applied,
            Notice::Refused,
        ];
        for n in notices {
            assert_eq!(
                decode_from_owner(&encode_notice(&n)),
                Ok(FromOwner::Notice(n.clone()))
            );
        }
        for f in [
            JoinFailure::Unloading,
            JoinFailure::Full,
            JoinFailure::FullForReaders,
            JoinFailure::TooManyForSession,
            JoinFailure::ShuttingDown,
        ] {
            assert_eq!(
                decode_from_owner(&encode_join_failed(f)),
                Ok(FromOwner::JoinFailed(f))
            );
        }
        assert_eq!(
            decode_from_owner(&encode_close(4403, "read_only: no")),
            Ok(FromOwner::Close {
                code: 4403,
                reason: "read_only: no"
            })
        );
        // A sync message passes as it is.
        let sync = [0u8, 1, 2, 0, 0];
        assert_eq!(decode_from_owner(&sync), Ok(FromOwner::Message(&sync[..])));
    }

    #[test]
    fn malformed_owner_messages_are_errors() {
        assert_eq!(decode_from_owner(&[]), Err(DecodeError::Truncated));
        assert_eq!(
            decode_from_owner(&[MSG_JOIN as u8, 0]),
            Err(DecodeError::UnknownMessageType(MSG_JOIN))
        );
        assert_eq!(
            decode_from_owner(&[MSG_NOTICE as u8, 9]),
            Err(DecodeError::UnknownMessageType(9))
        );
        assert_eq!(
            decode_from_owner(&[MSG_JOIN_FAILED as u8, 5]),
            Err(DecodeError::UnknownMessageType(5))
        );
        assert_eq!(
            decode_from_owner(&[MSG_CLOSE as u8, 0x11]),
            Err(DecodeError::LengthOverrun {
                declared: 2,
                remaining: 1
            })
        );
        let mut applied = encode_notice(&Notice::Applied);
        applied.push(0);
        assert_eq!(
            decode_from_owner(&applied),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
