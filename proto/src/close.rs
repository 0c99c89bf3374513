//! WebSocket close codes the server sends, and what each means to a client.
//!
//! Codes below 4000 are the standard ones of RFC 6455. Codes 4400–4499 mean "do not retry with
//! the same input": reconnecting would only repeat the same refusal. Codes 4500–4599 are
//! server-side conditions after which a reconnect (and the full resync it performs) is the cure.

/// The server is shutting down; reconnect later.
pub const GOING_AWAY: u16 = 1001;
/// A frame could not be decoded; the reason names the [`crate::DecodeError::code`].
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame arrived; the protocol is binary only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A frame exceeded the server's maximum frame size.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server failed (storage error); reconnecting loads the document afresh.
pub const INTERNAL_ERROR: u16 = 1011;
/// The document already has the maximum number of connections; try again later.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Access to the document was denied (no valid token for it); the reason says why. Stock
/// y-websocket clients do not retry a 44xx close.
pub const PERMISSION_DENIED: u16 = 4401;
/// A read-only connection tried to change the document; nothing of the change was kept.
pub const READ_ONLY: u16 = 4403;
/// Hocuspocus dialect: a document's messages waited for authentication longer than allowed, or
/// the socket sent no token in time. Both dialects: a frame did not arrive in full in time.
pub const AUTHENTICATION_TIMEOUT: u16 = 4408;
/// [`AUTHENTICATION_TIMEOUT`] under the name that fits a frame that took too long.
pub const TIMEOUT: u16 = AUTHENTICATION_TIMEOUT;
/// Hocuspocus dialect: too many documents, messages or bytes waiting for authentication on one
/// socket, or too many documents open on it.
pub const TOO_MANY_PENDING: u16 = 4429;
/// An update was refused because the document would exceed its maximum size.
pub const DOCUMENT_TOO_LARGE: u16 = 4413;
/// An update could not be applied (malformed, or it made the CRDT library fail); nothing of it
/// was kept.
pub const UPDATE_REJECTED: u16 = 4422;
/// The connection's session (or token) sent updates that failed part-way through applying too
/// often in a short time (each one makes the server rebuild the document); its updates are
/// refused for a while. Reading is not affected.
pub const TOO_MANY_FAILED_UPDATES: u16 = 4423;
/// An awareness state exceeded the maximum state size.
pub const AWARENESS_TOO_LARGE: u16 = 4431;
/// The server holds as much as it allows for clients that have not authenticated (server-wide,
/// or from the client's address): the socket is refused, or closed when it would hold more.
/// Nothing is wrong with the client's input; reconnecting later (with backoff) is the cure, as
/// HTTP 503 says. Distinct from [`TRY_AGAIN_LATER`], which says one document is full.
pub const SERVER_BUSY: u16 = 4503;
/// The connection's outgoing queue overflowed because the client did not read fast enough.
/// Reconnecting performs a full state-vector resync, so nothing is missed.
pub const SLOW_CONSUMER: u16 = 4508;
