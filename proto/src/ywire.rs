//! The y-protocols messages of the y-websocket dialect: sync (step 1, step 2, update),
//! awareness, auth and query-awareness.
//!
//! A frame holds one or more messages back to back; [`decode_frame`] reads all of them. Outgoing,
//! the server sends one message per frame, because stock y-websocket clients read only the first
//! message of a frame (see `docs/architecture.md`, "Wire formats").

use crate::lib0::{write_var_string, write_var_uint, write_var_uint8_array, Reader};
use crate::DecodeError;

/// Message type tag of sync messages.
pub const MSG_SYNC: u64 = 0;
/// Message type tag of awareness messages.
pub const MSG_AWARENESS: u64 = 1;
/// Message type tag of auth messages.
pub const MSG_AUTH: u64 = 2;
/// Message type tag of query-awareness messages.
pub const MSG_QUERY_AWARENESS: u64 = 3;

/// The encoding of an empty state vector (`varUint(0)` entries): what a client that has nothing
/// of the document sends in its SyncStep1.
pub const EMPTY_STATE_VECTOR: &[u8] = &[0];

/// Sync step tags inside a sync message.
const STEP1: u64 = 0;
const STEP2: u64 = 1;
const UPDATE: u64 = 2;

/// The y-protocols sync sub-protocol. Payloads borrow from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMessage<'a> {
    /// "Here is my state vector; send me what I lack."
    Step1(&'a [u8]),
    /// "Here is what you lacked" (a v1 update).
    Step2(&'a [u8]),
    /// A live incremental v1 update.
    Update(&'a [u8]),
}

impl<'a> SyncMessage<'a> {
    /// Reads the body of a sync message (after its type tag).
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let step = r.read_var_uint()?;
        let payload = match step {
            STEP1 | STEP2 | UPDATE => r.read_var_uint8_array()?,
            other => return Err(DecodeError::UnknownSyncStep(other)),
        };
        Ok(match step {
            STEP1 => SyncMessage::Step1(payload),
            STEP2 => SyncMessage::Step2(payload),
            _ => SyncMessage::Update(payload),
        })
    }

    /// Appends the body (step tag and payload).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (step, payload) = match self {
            SyncMessage::Step1(p) => (STEP1, p),
            SyncMessage::Step2(p) => (STEP2, p),
            SyncMessage::Update(p) => (UPDATE, p),
        };
        write_var_uint(out, step);
        write_var_uint8_array(out, payload);
    }

    /// The update carried by step 2 or an update message; `None` for step 1.
    pub fn update(&self) -> Option<&'a [u8]> {
        match self {
            SyncMessage::Step1(_) => None,
            SyncMessage::Step2(u) | SyncMessage::Update(u) => Some(u),
        }
    }
}

/// The y-protocols auth sub-protocol; clients define only "permission denied".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMessage<'a> {
    /// The server refused access, with a human-readable reason.
    PermissionDenied(&'a str),
}

/// One y-protocols message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Document sync.
    Sync(SyncMessage<'a>),
    /// An awareness update (see [`crate::awareness`] for its contents).
    Awareness(&'a [u8]),
    /// Authentication.
    Auth(AuthMessage<'a>),
    /// A request for the full awareness state.
    QueryAwareness,
}

impl<'a> Message<'a> {
    /// Reads one message (type tag and body).
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        match r.read_var_uint()? {
            MSG_SYNC => Ok(Message::Sync(SyncMessage::decode(r)?)),
            MSG_AWARENESS => Ok(Message::Awareness(r.read_var_uint8_array()?)),
            MSG_AUTH => match r.read_var_uint()? {
                0 => Ok(Message::Auth(AuthMessage::PermissionDenied(
                    r.read_var_string()?,
                ))),
                other => Err(DecodeError::UnknownAuthType(other)),
            },
            MSG_QUERY_AWARENESS => Ok(Message::QueryAwareness),
            other => Err(DecodeError::UnknownMessageType(other)),
        }
    }

    /// Appends the encoded message.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Message::Sync(sync) => {
                write_var_uint(out, MSG_SYNC);
                sync.encode_into(out);
            }
            Message::Awareness(update) => {
                write_var_uint(out, MSG_AWARENESS);
                write_var_uint8_array(out, update);
            }
            Message::Auth(AuthMessage::PermissionDenied(reason)) => {
                write_var_uint(out, MSG_AUTH);
                write_var_uint(out, 0);
                write_var_string(out, reason);
            }
            Message::QueryAwareness => write_var_uint(out, MSG_QUERY_AWARENESS),
        }
    }

    /// The message as its own frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            Message::Sync(SyncMessage::Step1(p))
            | Message::Sync(SyncMessage::Step2(p))
            | Message::Sync(SyncMessage::Update(p))
            | Message::Awareness(p) => p.len() + 12,
            Message::Auth(AuthMessage::PermissionDenied(r)) => r.len() + 12,
            Message::QueryAwareness => 1,
        }
    }
}

/// Decodes every message of a frame. A frame with no message, or with trailing bytes that do not
/// form a whole message, is an error: the frame is rejected as a whole, so a connection never acts
/// on half of a broken frame.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Message<'_>>, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut r = Reader::new(frame);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Message::decode(&mut r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_class_is_distinct() {
        assert_eq!(decode_frame(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_frame(&[0x00]), Err(DecodeError::Truncated));
        assert_eq!(
            decode_frame(&[0x07]),
            Err(DecodeError::UnknownMessageType(7))
        );
        assert_eq!(
            decode_frame(&[0x00, 0x05, 0x00]),
            Err(DecodeError::UnknownSyncStep(5))
        );
        assert_eq!(
            decode_frame(&[0x02, 0x01]),
            Err(DecodeError::UnknownAuthType(1))
        );
        assert!(matches!(
            decode_frame(&[0x00, 0x02, 0x10, 0x00]),
            Err(DecodeError::LengthOverrun { declared: 16, .. })
        ));
        assert_eq!(
            decode_frame(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::VarUintOverflow)
        );
    }

    #[test]
    fn the_empty_state_vector_is_what_an_empty_yrs_document_sends() {
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Transact};
        let doc = yrs::Doc::new();
        let sv = doc.transact().state_vector().encode_v1();
        assert_eq!(sv, EMPTY_STATE_VECTOR);
    }

    #[test]
    fn several_messages_in_one_frame() {
        let mut frame = Message::Sync(SyncMessage::Step1(&[0])).encode();
        frame.extend(Message::QueryAwareness.encode());
        let msgs = decode_frame(&frame).expect("valid frame");
        assert_eq!(
            msgs,
            vec![
                Message::Sync(SyncMessage::Step1(&[0])),
                Message::QueryAwareness
            ]
        );
    }
}
