//! Every bound the server enforces, as named constants with the reason for each value.
//!
//! [`Limits`] carries them at run time so that integration tests can lower a limit that would be
//! slow to reach at its production value; the defaults are always these constants.

use std::time::Duration;

/// Largest WebSocket message accepted. A post-mortem report of 100k characters is about 400 KB
/// as a full Yjs state, so 4 MiB lets a client push a whole large document in one SyncStep2 while
/// keeping per-connection buffering bounded.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Largest document, measured as its compacted state plus the log since. Ten times the largest
/// real report we expect; past it, writes are refused rather than letting one document exhaust
/// memory or make every cold load slow.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Most simultaneous connections to one document. A review has tens of people; a thousand leaves
/// room for many tabs each while bounding the fan-out cost of one update.
pub const MAX_CONNECTIONS_PER_DOCUMENT: usize = 1000;

/// Largest awareness state (JSON text) of one client. Presence is a name, a colour and a cursor:
/// a few hundred bytes. 64 KiB is generous and stops presence from being used as a data channel.
pub const MAX_AWARENESS_STATE_BYTES: usize = 64 * 1024;

/// Shortest time between two presence queries (QueryAwareness) of one connection to one document
/// that are answered. An answer is the document's whole awareness table, so answering every
/// query let one 64 KiB frame of one-byte queries bring back 65,536 tables (33 MiB; issue 16).
/// A stock client asks at most once per connection, and from then on hears every presence change
/// as it is relayed, so a second query within the interval could only repeat what it is told
/// anyway: the first query of an interval is answered (in order with the content, like any
/// presence), the others of that interval are dropped. One second is far more often than any
/// client needs a fresh table, and bounds a flood to one table per second per connection.
pub const PRESENCE_QUERY_INTERVAL: Duration = Duration::from_secs(1);

/// Frames waiting to be written to one connection. With fan-out sharing the same bytes this is
/// mostly pointers; a client this far behind is closed so it resynchronises on reconnect.
pub const OUTBOX_CAPACITY: usize = 1024;

/// How long one frame write may take before the client counts as not reading at all.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the close frame may take to write. Short, because a connection being closed is
/// often one that stopped reading; the socket is dropped afterwards either way.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Commands waiting for a document owner. Senders wait when it is full, which slows down only the
/// connection that is sending faster than the document can absorb.
pub const DOC_COMMAND_CAPACITY: usize = 256;

/// A document with no connection is unloaded from memory after this long. Long enough to survive
/// a page reload without a cold load, short enough that idle reviews free their memory.
pub const IDLE_UNLOAD_AFTER: Duration = Duration::from_secs(30);

/// Log records (one per group commit of the document) after which a document's log is
/// compacted into a snapshot. Every compaction rewrites the whole snapshot (CPU on the same cores
/// as the relays, and disk that sled reclaims slowly); in bench scenario 5 (100k edits, when a
/// record still held one update) 10,000 used less CPU and about half the disk of 1,000, with
/// noisy p99 either way. Documents are also compacted when unloaded and at shutdown, so cold
/// loads read one snapshot; only a crash leaves up to this many records to replay.
pub const COMPACT_AFTER_ENTRIES: u64 = 10_000;

/// Log bytes after which a document's log is compacted into a snapshot (or the snapshot's own
/// size, when that is larger: see `Owner::maybe_compact`).
pub const COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;

/// Longest document name. Names are derived from review ids plus a suffix; 200 is far beyond that
/// and keeps storage keys small.
pub const MAX_DOCUMENT_NAME_LEN: usize = 200;

/// How long shutdown waits for connections to close and documents to flush before giving up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Documents one `/collab` socket may have attached, waiting or refused at once. A review uses
/// three; an editor with many documents open in one tab stays well below this.
pub const MAX_DOCUMENTS_PER_SOCKET: usize = 256;

/// Documents of one `/collab` socket whose messages wait for authentication (no token yet, or
/// the document still loading). A client opens documents a few at a time.
pub const MAX_PENDING_DOCUMENTS: usize = 16;

/// Messages one `/collab` socket may have waiting for authentication, over all its documents.
/// A provider sends three per document (token, SyncStep1, awareness) before the answer.
pub const MAX_PENDING_MESSAGES: usize = 1000;

/// Bytes one `/collab` socket may have waiting for authentication. One frame of the largest size
/// (an offline client's whole document in a SyncStep2) always fits.
pub const MAX_PENDING_BYTES: usize = MAX_FRAME_BYTES;

/// How long a document's messages may wait for its authentication to complete.
pub const AUTHENTICATION_DEADLINE: Duration = Duration::from_secs(10);

/// Interval of the connection-level Ping on `/collab`. The stock provider reconnects after 30 s
/// without any message; a quiet socket hears a Ping well before that.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

/// How long a stateless command may take before the connection stops waiting for it.
pub const STATELESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds in force for one server instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// See [`MAX_DOCUMENT_BYTES`].
    pub max_document_bytes: u64,
    /// See [`MAX_CONNECTIONS_PER_DOCUMENT`].
    pub max_connections_per_document: usize,
    /// See [`MAX_AWARENESS_STATE_BYTES`].
    pub max_awareness_state_bytes: usize,
    /// See [`OUTBOX_CAPACITY`].
    pub outbox_capacity: usize,
    /// See [`IDLE_UNLOAD_AFTER`].
    pub idle_unload_after: Duration,
    /// See [`COMPACT_AFTER_ENTRIES`].
    pub compact_after_entries: u64,
    /// See [`COMPACT_AFTER_BYTES`].
    pub compact_after_bytes: u64,
    /// See [`MAX_DOCUMENTS_PER_SOCKET`].
    pub max_documents_per_socket: usize,
    /// See [`MAX_PENDING_DOCUMENTS`].
    pub max_pending_documents: usize,
    /// See [`MAX_PENDING_MESSAGES`].
    pub max_pending_messages: usize,
    /// See [`MAX_PENDING_BYTES`].
    pub max_pending_bytes: usize,
    /// See [`AUTHENTICATION_DEADLINE`].
    pub authentication_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_document_bytes: MAX_DOCUMENT_BYTES,
            max_connections_per_document: MAX_CONNECTIONS_PER_DOCUMENT,
            max_awareness_state_bytes: MAX_AWARENESS_STATE_BYTES,
            outbox_capacity: OUTBOX_CAPACITY,
            idle_unload_after: IDLE_UNLOAD_AFTER,
            compact_after_entries: COMPACT_AFTER_ENTRIES,
            compact_after_bytes: COMPACT_AFTER_BYTES,
            max_documents_per_socket: MAX_DOCUMENTS_PER_SOCKET,
            max_pending_documents: MAX_PENDING_DOCUMENTS,
            max_pending_messages: MAX_PENDING_MESSAGES,
            max_pending_bytes: MAX_PENDING_BYTES,
            authentication_deadline: AUTHENTICATION_DEADLINE,
        }
    }
}

/// Checks a document name: 1 to [`MAX_DOCUMENT_NAME_LEN`] characters from `A–Z a–z 0–9 . _ : -`.
/// The charset keeps names safe in URLs, logs and storage keys (no NUL, which separates key parts).
pub fn valid_document_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DOCUMENT_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
