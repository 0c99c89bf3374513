//! The one error type of every decoder in this crate.
//!
//! Each variant is a distinct class of malformed input with a stable machine-readable
//! [`DecodeError::code`], which the server puts in close reasons so a client (or a test) can tell
//! the classes apart.

/// Why a byte sequence could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a value (a varint, a length-prefixed field or a
    /// message header).
    #[error("input ended in the middle of a value")]
    Truncated,
    /// A varUint used more than the 53 bits lib0 allows (JavaScript's safe integer range).
    #[error("variable-length integer exceeds 53 bits")]
    VarUintOverflow,
    /// A length prefix announced more bytes than the input still holds.
    #[error("length prefix of {declared} bytes exceeds the {remaining} bytes left")]
    LengthOverrun {
        /// The length the prefix announced.
        declared: u64,
        /// The bytes that were actually left.
        remaining: usize,
    },
    /// A message type that this protocol does not define.
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    /// A sync message whose step is not 0, 1 or 2.
    #[error("unknown sync step {0}")]
    UnknownSyncStep(u64),
    /// An auth message whose sub-type is not defined.
    #[error("unknown auth message type {0}")]
    UnknownAuthType(u64),
    /// A string field that is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A frame with no message in it.
    #[error("empty frame")]
    Empty,
    /// Bytes were left after the one message a Hocuspocus frame holds.
    #[error("{0} bytes left after the message")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// A stable, machine-readable name of the error class (used in close reasons and logs).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::VarUintOverflow => "varint_overflow",
            DecodeError::LengthOverrun { .. } => "length_overrun",
            DecodeError::UnknownMessageType(_) => "unknown_message_type",
            DecodeError::UnknownSyncStep(_) => "unknown_sync_step",
            DecodeError::UnknownAuthType(_) => "unknown_auth_type",
            DecodeError::InvalidUtf8 => "invalid_utf8",
            DecodeError::Empty => "empty_frame",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
        }
    }
}
