//! What travels on a link sub-stream that carries a *lane*: the clients connected to one node
//! (their entry node) and attached to one document another node owns (`docs/cluster.md`,
//! "Routing: the internal link"). One lane per document and entry node carries every one of
//! those clients, its *members*, so that an update the owner relays crosses to the entry node
//! once, however many of its clients have the document open, and the entry node hands it to
//! each of them.
//!
//! Each payload of the sub-stream is one message, in the y-protocols style: a varUint type, then
//! its body. A member is named by a varUint the entry node chooses (unique among the lane's
//! members while it is one). The entry node has already decoded each client's dialect; what
//! crosses is free of either dialect, so one owner serves clients of both.
//!
//! Entry → owner ([`FromEntry`]):
//! - [`MSG_JOIN`]: `varUint(member), varString(token)`: a client joins with the token it
//!   presented (the owner decides its access, since only it knows the review's sessions);
//! - [`MSG_FRAME`]: `varUint(member)`, then a y-protocols frame as the member sent it (sync,
//!   awareness, awareness query), decoded with [`crate::ywire::decode_frame`];
//! - [`MSG_LEAVE`]: `varUint(member)`: the member left (or the entry node closed it).
//!
//! Owner → entry ([`FromOwner`]):
//! - [`MSG_TO`]: `varUint(member)`, then one message for that member alone ([`Said`]): a
//!   y-protocols message, a [`MSG_NOTICE`] about its own standing ([`Notice`]), a
//!   [`MSG_JOIN_FAILED`] ([`JoinFailure`], the answer to its join instead of a notice), or a
//!   [`MSG_CLOSE`] (`u16 BE code, varString(reason)`: the owner closes the member, and the entry
//!   closes its client the way its dialect does for that code). The first message to a member
//!   after its join is the owner's decision: a join failure, or anything else, which means the
//!   member is attached;
//! - [`MSG_ALL`]: `varUint(except)`, then a y-protocols message for every member attached at
//!   that point of the lane but the one numbered `except - 1` (`0`: none): a relay;
//! - [`MSG_CREDIT`]: `varUint(messages), varUint(bytes)`, what the owner took of the entry's
//!   messages since its last credit: at most [`WINDOW_MESSAGES`] messages and [`WINDOW_BYTES`]
//!   bytes (and one message more) are on their way at once, so the owner's sub-stream queue
//!   never overflows and clients whose owner is behind wait as they would on the owner's node;
//! - [`MSG_CLOSE`] on its own: the owner closes the whole lane with that code and reason.
//!
//! The owner sends what it sends to the lane's members in the order it decided it, so a member
//! hears of its attachment before any relay meant for it, and of a withdrawal before the first
//! relay no longer meant for it.
//!
//! Both ways, a message longer than a link message may be goes as [`MSG_PART`]s, the last of
//! them a [`MSG_PART_LAST`], each with a piece of it ([`split`]; reassembled by [`Reassembly`]):
//! a new member of a large document gets the whole state in one sync message.
//!
//! The sub-stream's end (its close frame) is the lane's end, in either direction: every member
//! of it ends.

use crate::lib0::{write_var_string, write_var_uint, Reader};
use crate::ywire::{MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC};
use crate::DecodeError;

/// Entry → owner: a member joins with its client's token.
pub const MSG_JOIN: u64 = 100;
/// Owner → entry, inside a [`MSG_TO`]: a [`Notice`].
pub const MSG_NOTICE: u64 = 101;
/// Owner → entry, inside a [`MSG_TO`]: a [`JoinFailure`].
pub const MSG_JOIN_FAILED: u64 = 102;
/// Owner → entry: the owner closes a member (inside a [`MSG_TO`]) or the whole lane (on its
/// own) with a code and reason.
pub const MSG_CLOSE: u64 = 103;
/// Either way: a piece of a message, more follow.
pub const MSG_PART: u64 = 104;
/// Either way: the last piece of a message.
pub const MSG_PART_LAST: u64 = 105;
/// Owner → entry: what the owner took of the entry's messages.
pub const MSG_CREDIT: u64 = 106;
/// Entry → owner: a member's y-protocols frame.
pub const MSG_FRAME: u64 = 107;
/// Entry → owner: a member left.
pub const MSG_LEAVE: u64 = 108;
/// Owner → entry: a message for one member.
pub const MSG_TO: u64 = 109;
/// Owner → entry: a message for every attached member but one.
pub const MSG_ALL: u64 = 110;

/// The longest piece the nodes cut a message into ([`split`]): well within a link message, and
/// several fit a sub-stream's queue.
pub const PART_BYTES: usize = 1 << 20;

/// How many of its messages the entry node may have on their way to the owner.
pub const WINDOW_MESSAGES: u64 = 128;
/// How many bytes of its messages the entry node may have on their way before it waits (one
/// message may pass it): with the largest message, well within a sub-stream's byte budget.
pub const WINDOW_BYTES: u64 = 2 << 20;

/// The pieces that carry `message` when a link message holds at most `max` bytes (`max` above
/// 1): the message itself when it fits, else parts of `max - 1` bytes behind their type.
pub fn split(message: Vec<u8>, max: usize) -> Vec<Vec<u8>> {
    if message.len() <= max {
        return vec![message];
    }
    let piece = max.saturating_sub(1).max(1);
    let count = message.len().div_ceil(piece);
    message
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let kind = if i + 1 == count {
                MSG_PART_LAST
            } else {
                MSG_PART
            };
            let mut out = Vec::with_capacity(chunk.len() + 1);
            write_var_uint(&mut out, kind);
            out.extend_from_slice(chunk);
            out
        })
        .collect()
}

/// Why a message could not be reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// The pieces passed the receiver's limit.
    #[error("a message in parts passed {limit} bytes")]
    TooLarge {
        /// The receiver's limit.
        limit: usize,
    },
}

/// Puts messages sent in parts together again, up to a limit.
#[derive(Debug)]
pub struct Reassembly {
    parts: Vec<u8>,
    started: bool,
    limit: usize,
}

impl Reassembly {
    /// A reassembly of messages of at most `limit` bytes.
    pub fn new(limit: usize) -> Reassembly {
        Reassembly {
            parts: Vec::new(),
            started: false,
            limit,
        }
    }

    /// Takes one link message: the whole message once it is complete (the payload itself when
    /// it was not in parts), `None` while parts are missing. Each side sends its messages one
    /// after another, so a whole message between parts means the sender gave the one in parts
    /// up (it closes the attachment): its parts are dropped.
    pub fn feed(&mut self, payload: Vec<u8>) -> Result<Option<Vec<u8>>, PartError> {
        let kind = match payload.first() {
            Some(&b) if u64::from(b) == MSG_PART || u64::from(b) == MSG_PART_LAST => u64::from(b),
            _ => {
                self.parts = Vec::new();
                self.started = false;
                return Ok(Some(payload));
            }
        };
        if self.parts.len() + payload.len() - 1 > self.limit {
            return Err(PartError::TooLarge { limit: self.limit });
        }
        self.parts.extend_from_slice(&payload[1..]);
        self.started = true;
        if kind == MSG_PART_LAST {
            self.started = false;
            return Ok(Some(std::mem::take(&mut self.parts)));
        }
        Ok(None)
    }
}

/// The [`MSG_CREDIT`] message for `messages` taken, of `bytes` together.
pub fn encode_credit(messages: u64, bytes: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    write_var_uint(&mut out, MSG_CREDIT);
    write_var_uint(&mut out, messages);
    write_var_uint(&mut out, bytes);
    out
}

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

/// The [`MSG_JOIN`] message of `member` with `token`.
pub fn encode_join(member: u64, token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len() + 12);
    write_var_uint(&mut out, MSG_JOIN);
    write_var_uint(&mut out, member);
    write_var_string(&mut out, token);
    out
}

/// The [`MSG_FRAME`] message carrying `member`'s y-protocols `frame`.
pub fn encode_frame(member: u64, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 10);
    write_var_uint(&mut out, MSG_FRAME);
    write_var_uint(&mut out, member);
    out.extend_from_slice(frame);
    out
}

/// The [`MSG_LEAVE`] message of `member`.
pub fn encode_leave(member: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    write_var_uint(&mut out, MSG_LEAVE);
    write_var_uint(&mut out, member);
    out
}

/// One message from the entry node, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromEntry<'a> {
    /// A member joins with this token.
    Join {
        /// The member.
        member: u64,
        /// Its client's token.
        token: &'a str,
    },
    /// A member's y-protocols frame, not decoded yet.
    Frame {
        /// The member.
        member: u64,
        /// The frame.
        frame: &'a [u8],
    },
    /// A member left.
    Leave {
        /// The member.
        member: u64,
    },
}

/// Decodes one payload an entry node sent (a whole message, put together from its parts).
pub fn decode_from_entry(payload: &[u8]) -> Result<FromEntry<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    let kind = r.read_var_uint()?;
    let decoded = match kind {
        MSG_JOIN => FromEntry::Join {
            member: r.read_var_uint()?,
            token: r.read_var_string()?,
        },
        MSG_FRAME => {
            let member = r.read_var_uint()?;
            let frame = r.read_bytes(r.remaining() as u64)?;
            return Ok(FromEntry::Frame { member, frame });
        }
        MSG_LEAVE => FromEntry::Leave {
            member: r.read_var_uint()?,
        },
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    all_read(&r, decoded)
}

/// The [`MSG_TO`] message carrying `said` (one message of [`Said`]'s forms) to `member`.
pub fn encode_to(member: u64, said: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(said.len() + 10);
    write_var_uint(&mut out, MSG_TO);
    write_var_uint(&mut out, member);
    out.extend_from_slice(said);
    out
}

/// The [`MSG_ALL`] message carrying the y-protocols `message` to every attached member but
/// `except`.
pub fn encode_all(except: Option<u64>, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 10);
    write_var_uint(&mut out, MSG_ALL);
    write_var_uint(&mut out, except.map_or(0, |m| m.saturating_add(1)));
    out.extend_from_slice(message);
    out
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

/// What the owner says to one member, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said<'a> {
    /// A y-protocols message (sync or awareness) for the client: the whole message, as it is.
    Message(&'a [u8]),
    /// A notice.
    Notice(Notice<'a>),
    /// The join was refused.
    JoinFailed(JoinFailure),
    /// The owner closes the member.
    Close {
        /// The close code (`debrief_proto::close`).
        code: u16,
        /// The close reason.
        reason: &'a str,
    },
}

/// One message from the owner, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromOwner<'a> {
    /// A message for one member.
    To {
        /// The member.
        member: u64,
        /// What it is told.
        said: Said<'a>,
    },
    /// A y-protocols message for every attached member but `except`.
    All {
        /// The member it is not for (the one whose update it relays), if any.
        except: Option<u64>,
        /// The message.
        message: &'a [u8],
    },
    /// The owner took this many more of the entry's messages.
    Credit {
        /// Messages taken.
        messages: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// The owner closes the whole lane.
    Close {
        /// The close code (`debrief_proto::close`).
        code: u16,
        /// The close reason.
        reason: &'a str,
    },
}

/// Decodes one payload an owner sent (a whole message, put together from its parts). A
/// y-protocols message is checked only for its type; the client it goes to decodes the rest.
pub fn decode_from_owner(payload: &[u8]) -> Result<FromOwner<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    let decoded = match r.read_var_uint()? {
        MSG_TO => {
            let member = r.read_var_uint()?;
            let said = decode_said(r.read_bytes(r.remaining() as u64)?)?;
            return Ok(FromOwner::To { member, said });
        }
        MSG_ALL => {
            let except = r.read_var_uint()?.checked_sub(1);
            let message = r.read_bytes(r.remaining() as u64)?;
            match Reader::new(message).read_var_uint()? {
                MSG_SYNC | MSG_AWARENESS | MSG_QUERY_AWARENESS => {}
                other => return Err(DecodeError::UnknownMessageType(other)),
            }
            return Ok(FromOwner::All { except, message });
        }
        MSG_CREDIT => FromOwner::Credit {
            messages: r.read_var_uint()?,
            bytes: r.read_var_uint()?,
        },
        MSG_CLOSE => {
            let (code, reason) = read_close(&mut r)?;
            FromOwner::Close { code, reason }
        }
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    all_read(&r, decoded)
}

/// `decoded`, if it was the whole payload `r` read.
fn all_read<T>(r: &Reader<'_>, decoded: T) -> Result<T, DecodeError> {
    match r.remaining() {
        0 => Ok(decoded),
        left => Err(DecodeError::TrailingBytes(left)),
    }
}

/// A close's code and reason.
fn read_close<'a>(r: &mut Reader<'a>) -> Result<(u16, &'a str), DecodeError> {
    let code = r.read_bytes(2)?;
    let code = u16::from_be_bytes([code[0], code[1]]);
    Ok((code, r.read_var_string()?))
}

/// Decodes what the owner says to one member (the body of a [`MSG_TO`]).
pub fn decode_said(payload: &[u8]) -> Result<Said<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    let kind = r.read_var_uint()?;
    let decoded = match kind {
        MSG_SYNC | MSG_AWARENESS | MSG_QUERY_AWARENESS => return Ok(Said::Message(payload)),
        MSG_NOTICE => Said::Notice(match r.read_var_uint()? {
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
        MSG_JOIN_FAILED => Said::JoinFailed(JoinFailure::from_byte(r.read_var_uint()?)?),
        MSG_CLOSE => {
            let (code, reason) = read_close(&mut r)?;
            Said::Close { code, reason }
        }
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    all_read(&r, decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_message_round_trips_and_nothing_else_is_one() {
        assert_eq!(
            decode_from_entry(&encode_join(7, "dbs_abc")),
            Ok(FromEntry::Join {
                member: 7,
                token: "dbs_abc"
            })
        );
        assert_eq!(
            decode_from_entry(&encode_join(0, "")),
            Ok(FromEntry::Join {
                member: 0,
                token: ""
            })
        );
        let step1 = [0u8, 0, 1, 0];
        assert_eq!(
            decode_from_entry(&encode_frame(300, &step1)),
            Ok(FromEntry::Frame {
                member: 300,
                frame: &step1[..]
            })
        );
        assert_eq!(
            decode_from_entry(&encode_leave(1 << 40)),
            Ok(FromEntry::Leave { member: 1 << 40 })
        );
        // A sync step 1 on its own is not an entry's message.
        assert_eq!(
            decode_from_entry(&step1),
            Err(DecodeError::UnknownMessageType(0))
        );
        let mut long = encode_join(1, "t");
        long.push(9);
        assert_eq!(decode_from_entry(&long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(
            decode_from_entry(&[MSG_JOIN as u8, 1, 5, b'a']),
            Err(DecodeError::LengthOverrun {
                declared: 5,
                remaining: 1
            })
        );
        assert_eq!(
            decode_from_entry(&[MSG_LEAVE as u8]),
            Err(DecodeError::Truncated)
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
                decode_from_owner(&encode_to(3, &encode_notice(&n))),
                Ok(FromOwner::To {
                    member: 3,
                    said: Said::Notice(n.clone())
                })
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
                decode_from_owner(&encode_to(9, &encode_join_failed(f))),
                Ok(FromOwner::To {
                    member: 9,
                    said: Said::JoinFailed(f)
                })
            );
        }
        assert_eq!(
            decode_from_owner(&encode_to(1, &encode_close(4403, "read_only: no"))),
            Ok(FromOwner::To {
                member: 1,
                said: Said::Close {
                    code: 4403,
                    reason: "read_only: no"
                }
            })
        );
        assert_eq!(
            decode_from_owner(&encode_close(1001, "server_shutting_down")),
            Ok(FromOwner::Close {
                code: 1001,
                reason: "server_shutting_down"
            })
        );
        // A sync message passes as it is, to one member or to all.
        let sync = [0u8, 1, 2, 0, 0];
        assert_eq!(
            decode_from_owner(&encode_to(2, &sync)),
            Ok(FromOwner::To {
                member: 2,
                said: Said::Message(&sync[..])
            })
        );
        assert_eq!(
            decode_from_owner(&encode_all(None, &sync)),
            Ok(FromOwner::All {
                except: None,
                message: &sync[..]
            })
        );
        assert_eq!(
            decode_from_owner(&encode_all(Some(0), &sync)),
            Ok(FromOwner::All {
                except: Some(0),
                message: &sync[..]
            })
        );
        assert_eq!(
            decode_from_owner(&encode_credit(32, 4000)),
            Ok(FromOwner::Credit {
                messages: 32,
                bytes: 4000
            })
        );
    }

    #[test]
    fn a_long_message_goes_in_parts_and_comes_back_whole() {
        let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let parts = split(message.clone(), 1000);
        assert_eq!(parts.len(), 11);
        assert!(parts.iter().all(|p| p.len() <= 1000));
        let mut whole = Reassembly::new(10_000);
        let mut got = None;
        for (i, part) in parts.into_iter().enumerate() {
            let fed = whole.feed(part).expect("within the limit");
            assert_eq!(fed.is_some(), i == 10);
            got = got.or(fed);
        }
        assert_eq!(got, Some(message));
        // Short messages pass as they are, before and after.
        assert_eq!(split(vec![0, 1, 2], 1000), vec![vec![0, 1, 2]]);
        assert_eq!(whole.feed(vec![0, 1, 2]), Ok(Some(vec![0, 1, 2])));
        // Past the limit, or a whole message between parts: errors.
        let mut small = Reassembly::new(100);
        let mut parts = split(vec![7; 300], 60).into_iter();
        let mut result = Ok(None);
        for part in parts.by_ref() {
            result = small.feed(part);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(PartError::TooLarge { limit: 100 }));
        // A whole message between parts: the sender gave the message in parts up.
        let mut mixed = Reassembly::new(1000);
        let parts = split(vec![7; 300], 60);
        assert_eq!(mixed.feed(parts[0].clone()), Ok(None));
        assert_eq!(mixed.feed(vec![0, 1]), Ok(Some(vec![0, 1])));
        let again = split(vec![9; 120], 60);
        assert_eq!(mixed.feed(again[0].clone()), Ok(None));
        assert_eq!(mixed.feed(again[1].clone()), Ok(None));
        assert_eq!(mixed.feed(again[2].clone()), Ok(Some(vec![9; 120])));
    }

    #[test]
    fn malformed_owner_messages_are_errors() {
        assert_eq!(decode_from_owner(&[]), Err(DecodeError::Truncated));
        // What a member is told only inside a MSG_TO.
        assert_eq!(
            decode_from_owner(&encode_notice(&Notice::Applied)),
            Err(DecodeError::UnknownMessageType(MSG_NOTICE))
        );
        assert_eq!(
            decode_from_owner(&[0, 0, 1, 0]),
            Err(DecodeError::UnknownMessageType(0))
        );
        assert_eq!(
            decode_from_owner(&encode_to(1, &[MSG_JOIN as u8, 0])),
            Err(DecodeError::UnknownMessageType(MSG_JOIN))
        );
        assert_eq!(
            decode_from_owner(&encode_to(1, &[MSG_NOTICE as u8, 9])),
            Err(DecodeError::UnknownMessageType(9))
        );
        assert_eq!(
            decode_from_owner(&encode_to(1, &[MSG_JOIN_FAILED as u8, 5])),
            Err(DecodeError::UnknownMessageType(5))
        );
        assert_eq!(
            decode_from_owner(&encode_to(1, &[MSG_CLOSE as u8, 0x11])),
            Err(DecodeError::LengthOverrun {
                declared: 2,
                remaining: 1
            })
        );
        // A relay carries a y-protocols message, nothing else.
        assert_eq!(
            decode_from_owner(&encode_all(None, &encode_notice(&Notice::Applied))),
            Err(DecodeError::UnknownMessageType(MSG_NOTICE))
        );
        assert_eq!(
            decode_from_owner(&[MSG_TO as u8]),
            Err(DecodeError::Truncated)
        );
        let mut applied = encode_to(1, &encode_notice(&Notice::Applied));
        applied.push(0);
        assert_eq!(
            decode_from_owner(&applied),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
