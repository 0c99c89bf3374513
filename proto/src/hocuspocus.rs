//! The Hocuspocus dialect: one socket carries many documents, and every frame holds exactly one
//! message addressed to a document by name (`varString(name)`, `varUint(type)`, body), except the
//! connection-level Ping and Pong, which are a bare one-byte frame.
//!
//! The bodies of Sync, Awareness and QueryAwareness are the y-protocols ones of [`crate::ywire`],
//! with the same type numbers, so a y-protocols message becomes a Hocuspocus one by putting the
//! document name in front of it ([`name_prefix`]).
//!
//! The document name field may carry a routing key, `name\0session`, used by providers that
//! multiplex several sessions of one document over a socket; [`document_of`] takes the name out.

use crate::lib0::{write_var_int, write_var_string, write_var_uint, Reader};
use crate::ywire::SyncMessage;
use crate::DecodeError;

/// A y-protocols sync message.
pub const MSG_SYNC: u64 = 0;
/// An awareness update.
pub const MSG_AWARENESS: u64 = 1;
/// Authentication (token, permission denied, authenticated).
pub const MSG_AUTH: u64 = 2;
/// A request for every awareness state.
pub const MSG_QUERY_AWARENESS: u64 = 3;
/// A sync message whose SyncStep1 does not ask for a counter-SyncStep1.
pub const MSG_SYNC_REPLY: u64 = 4;
/// An application message (a string), not a CRDT change.
pub const MSG_STATELESS: u64 = 5;
/// Server-to-server fan-out of a stateless message; clients must not send it.
pub const MSG_BROADCAST_STATELESS: u64 = 6;
/// Detach one document (client → server), or "this document's session was closed".
pub const MSG_CLOSE: u64 = 7;
/// Server → client: an update was applied (1) or refused (0).
pub const MSG_SYNC_STATUS: u64 = 8;
/// Connection-level keep-alive, a bare one-byte frame.
pub const MSG_PING: u8 = 9;
/// The answer to a Ping, a bare one-byte frame.
pub const MSG_PONG: u8 = 10;

/// Auth sub-types.
const AUTH_TOKEN: u64 = 0;
const AUTH_PERMISSION_DENIED: u64 = 1;
const AUTH_AUTHENTICATED: u64 = 2;

/// The access scope named in an `Authenticated` answer.
pub const SCOPE_READ_WRITE: &str = "read-write";
/// The access scope of a connection that may read but not change the document.
pub const SCOPE_READ_ONLY: &str = "readonly";

/// The auth sub-protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// Client → server: the token for this document, and (v4 providers) the provider's version.
    /// Server → client without a token: "send me a fresh token".
    Token {
        /// The token; `None` in the server's request for one.
        token: Option<&'a str>,
        /// The provider version string v4 providers append.
        provider_version: Option<&'a str>,
    },
    /// Server → client: access refused, with a reason.
    PermissionDenied(&'a str),
    /// Server → client: access granted with a scope ([`SCOPE_READ_WRITE`] or [`SCOPE_READ_ONLY`]).
    Authenticated(&'a str),
}

/// A message for one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocMessage<'a> {
    /// Type 0.
    Sync(SyncMessage<'a>),
    /// Type 4: like Sync, but a SyncStep1 in it is not answered with the server's own SyncStep1.
    SyncReply(SyncMessage<'a>),
    /// Type 1: an awareness update.
    Awareness(&'a [u8]),
    /// Type 2.
    Auth(Auth<'a>),
    /// Type 3.
    QueryAwareness,
    /// Type 5: an application payload.
    Stateless(&'a str),
    /// Type 6: server-to-server only.
    BroadcastStateless(&'a str),
    /// Type 7, with the reason the server gives (clients send none).
    Close(Option<&'a str>),
    /// Type 8: 1 applied, 0 refused (a signed varInt on the wire).
    SyncStatus(i64),
    /// A type this dialect does not define; its body is not read. The document name was readable,
    /// so the server can answer for that document instead of dropping the socket.
    Unknown(u64),
}

/// One frame of the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Connection-level keep-alive request.
    Ping,
    /// Connection-level keep-alive answer.
    Pong,
    /// A message for the document named by `key` (a name, or a `name\0session` routing key).
    Doc {
        /// The document name field as sent.
        key: &'a str,
        /// The message.
        message: DocMessage<'a>,
    },
}

/// Decodes one frame. A frame that is not whole (truncated, over-long varints, lengths past the
/// end, bytes left after the message, an unknown sync step or auth sub-type) is an error; an
/// unknown message type is not, see [`DocMessage::Unknown`].
pub fn decode_frame(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    match frame {
        [] => return Err(DecodeError::Empty),
        [MSG_PING] => return Ok(Frame::Ping),
        [MSG_PONG] => return Ok(Frame::Pong),
        _ => {}
    }
    let mut r = Reader::new(frame);
    let key = r.read_var_string()?;
    let message = match r.read_var_uint()? {
        MSG_SYNC => DocMessage::Sync(SyncMessage::decode(&mut r)?),
        MSG_SYNC_REPLY => DocMessage::SyncReply(SyncMessage::decode(&mut r)?),
        MSG_AWARENESS => DocMessage::Awareness(r.read_var_uint8_array()?),
        MSG_AUTH => DocMessage::Auth(decode_auth(&mut r)?),
        MSG_QUERY_AWARENESS => DocMessage::QueryAwareness,
        MSG_STATELESS => DocMessage::Stateless(r.read_var_string()?),
        MSG_BROADCAST_STATELESS => DocMessage::BroadcastStateless(r.read_var_string()?),
        MSG_CLOSE => DocMessage::Close(if r.is_empty() {
            None
        } else {
            Some(r.read_var_string()?)
        }),
        MSG_SYNC_STATUS => DocMessage::SyncStatus(r.read_var_int()?),
        other => {
            return Ok(Frame::Doc {
                key,
                message: DocMessage::Unknown(other),
            })
        }
    };
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(Frame::Doc { key, message })
}

fn decode_auth<'a>(r: &mut Reader<'a>) -> Result<Auth<'a>, DecodeError> {
    Ok(match r.read_var_uint()? {
        AUTH_TOKEN => {
            let token = if r.is_empty() {
                None
            } else {
                Some(r.read_var_string()?)
            };
            let provider_version = if r.is_empty() {
                None
            } else {
                Some(r.read_var_string()?)
            };
            Auth::Token {
                token,
                provider_version,
            }
        }
        AUTH_PERMISSION_DENIED => Auth::PermissionDenied(r.read_var_string()?),
        AUTH_AUTHENTICATED => Auth::Authenticated(r.read_var_string()?),
        other => return Err(DecodeError::UnknownAuthType(other)),
    })
}

/// The body (type and status, without the document name) of `SyncStatus(1)`: an update from the
/// client was applied (and, on this server, is durable). Static, so an acknowledgement costs no
/// allocation before it is prefixed.
pub const SYNC_STATUS_APPLIED: &[u8] = &[MSG_SYNC_STATUS as u8, 1];
/// The body of `SyncStatus(0)`: an update from the client was refused (a read-only connection).
pub const SYNC_STATUS_REFUSED: &[u8] = &[MSG_SYNC_STATUS as u8, 0];

/// The document name inside a name field that may be a `name\0session` routing key.
pub fn document_of(key: &str) -> &str {
    key.split_once('\0').map_or(key, |(name, _)| name)
}

/// The bytes that turn a y-protocols message into a Hocuspocus message for `key`.
pub fn name_prefix(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    write_var_string(&mut out, key);
    out
}

/// The whole frame for a message `body` (type and body, as [`DocMessage::encode_body`] makes it,
/// or a y-protocols message, which has the same shape) behind a [`name_prefix`].
pub fn prefixed(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(body);
    out
}

impl DocMessage<'_> {
    /// Appends the type and body (without the document name).
    pub fn encode_body_into(&self, out: &mut Vec<u8>) {
        match self {
            DocMessage::Sync(sync) | DocMessage::SyncReply(sync) => {
                let tag = if matches!(self, DocMessage::Sync(_)) {
                    MSG_SYNC
                } else {
                    MSG_SYNC_REPLY
                };
                write_var_uint(out, tag);
                sync.encode_into(out);
            }
            DocMessage::Awareness(update) => {
                write_var_uint(out, MSG_AWARENESS);
                crate::lib0::write_var_uint8_array(out, update);
            }
            DocMessage::Auth(auth) => {
                write_var_uint(out, MSG_AUTH);
                match auth {
                    Auth::Token {
                        token,
                        provider_version,
                    } => {
                        write_var_uint(out, AUTH_TOKEN);
                        for s in [token, provider_version].into_iter().flatten() {
                            write_var_string(out, s);
                        }
                    }
                    Auth::PermissionDenied(reason) => {
                        write_var_uint(out, AUTH_PERMISSION_DENIED);
                        write_var_string(out, reason);
                    }
                    Auth::Authenticated(scope) => {
                        write_var_uint(out, AUTH_AUTHENTICATED);
                        write_var_string(out, scope);
                    }
                }
            }
            DocMessage::QueryAwareness => write_var_uint(out, MSG_QUERY_AWARENESS),
            DocMessage::Stateless(payload) => {
                write_var_uint(out, MSG_STATELESS);
                write_var_string(out, payload);
            }
            DocMessage::BroadcastStateless(payload) => {
                write_var_uint(out, MSG_BROADCAST_STATELESS);
                write_var_string(out, payload);
            }
            DocMessage::Close(reason) => {
                write_var_uint(out, MSG_CLOSE);
                if let Some(reason) = reason {
                    write_var_string(out, reason);
                }
            }
            DocMessage::SyncStatus(status) => {
                write_var_uint(out, MSG_SYNC_STATUS);
                write_var_int(out, *status);
            }
            DocMessage::Unknown(tag) => write_var_uint(out, *tag),
        }
    }

    /// The type and body alone, to be sent behind a [`name_prefix`].
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_body_into(&mut out);
        out
    }

    /// The whole frame for the document (or routing key) `key`.
    pub fn encode(&self, key: &str) -> Vec<u8> {
        let mut out = name_prefix(key);
        self.encode_body_into(&mut out);
        out
    }
}

impl Frame<'_> {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Ping => vec![MSG_PING],
            Frame::Pong => vec![MSG_PONG],
            Frame::Doc { key, message } => message.encode(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_with_and_without_provider_version() {
        // The v4 provider: name "doc", Auth, Token, "secret", "4.7.0".
        let v4 = DocMessage::Auth(Auth::Token {
            token: Some("secret"),
            provider_version: Some("4.7.0"),
        })
        .encode("doc");
        assert_eq!(
            v4,
            [
                &[3u8, b'd', b'o', b'c', 2, 0, 6][..],
                b"secret",
                &[5],
                b"4.7.0"
            ]
            .concat()
        );
        let older = [&[3u8, b'd', b'o', b'c', 2, 0, 6][..], b"secret"].concat();
        assert_eq!(
            decode_frame(&older),
            Ok(Frame::Doc {
                key: "doc",
                message: DocMessage::Auth(Auth::Token {
                    token: Some("secret"),
                    provider_version: None
                })
            })
        );
        assert!(matches!(
            decode_frame(&v4),
            Ok(Frame::Doc {
                message: DocMessage::Auth(Auth::Token {
                    provider_version: Some("4.7.0"),
                    ..
                }),
                ..
            })
        ));
    }

    #[test]
    fn ping_and_pong_are_bare() {
        assert_eq!(decode_frame(&[9]), Ok(Frame::Ping));
        assert_eq!(decode_frame(&[10]), Ok(Frame::Pong));
        // A nine-byte document name is not a ping.
        let named = DocMessage::QueryAwareness.encode("123456789");
        assert_eq!(named[0], 9);
        assert_eq!(
            decode_frame(&named),
            Ok(Frame::Doc {
                key: "123456789",
                message: DocMessage::QueryAwareness
            })
        );
    }

    #[test]
    fn unknown_types_keep_the_document_and_broken_frames_fail() {
        assert_eq!(
            decode_frame(&[1, b'a', 42, 1, 2, 3]),
            Ok(Frame::Doc {
                key: "a",
                message: DocMessage::Unknown(42)
            })
        );
        assert_eq!(decode_frame(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode_frame(&[5, b'a']),
            Err(DecodeError::LengthOverrun {
                declared: 5,
                remaining: 1
            })
        );
        assert_eq!(
            decode_frame(&[1, b'a', 0, 0, 1, 0, 7]),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode_frame(&[1, b'a', 2, 9]),
            Err(DecodeError::UnknownAuthType(9))
        );
    }

    #[test]
    fn sync_status_is_a_signed_varint() {
        let ack = DocMessage::SyncStatus(1).encode("d");
        assert_eq!(ack, [1, b'd', 8, 1]);
        assert_eq!(DocMessage::SyncStatus(1).encode_body(), SYNC_STATUS_APPLIED);
        assert_eq!(DocMessage::SyncStatus(0).encode_body(), SYNC_STATUS_REFUSED);
        assert_eq!(prefixed(&name_prefix("d"), SYNC_STATUS_APPLIED), ack);
        assert_eq!(
            decode_frame(&ack),
            Ok(Frame::Doc {
                key: "d",
                message: DocMessage::SyncStatus(1)
            })
        );
    }

    #[test]
    fn routing_keys_name_their_document() {
        assert_eq!(document_of("report\0abc"), "report");
        assert_eq!(document_of("report"), "report");
    }
}
