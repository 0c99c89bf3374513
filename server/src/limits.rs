//! The bounds of the transports, documents and storage, as named constants with the reason for
//! each value, and the defaults of the settings the command line may change. The review domain's
//! bounds (title and comment lengths, sessions per review, held anonymous items, …) sit beside
//! the rules they bound, in `reviews/`.
//!
//! [`Limits`] carries them at run time so that integration tests can lower a limit that would be
//! slow to reach at its production value; the defaults are always these constants.

use std::time::Duration;

/// Largest HTTP request body, except where a route sets its own (creating a review, which may
/// import a Markdown report). The largest command is a comment or anonymous item of 4,000
/// characters with a 500-character quote: even written entirely as JSON surrogate-pair escapes
/// (12 bytes a character) that is about 54 KB. Bodies are buffered whole before they are parsed,
/// so the bound is kept close to what a command can need (issue 16: it was 1 MiB for every
/// route).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest request a node passes on to the node serving reviews in a cluster
/// (`transport::forwarded_http`): the largest body any route takes (creating a review, 1 MiB)
/// and room for headers. The serving node applies each route's own limit.
pub const MAX_FORWARDED_REQUEST_BYTES: usize = 1024 * 1024 + 64 * 1024;

/// Default time between releases of held anonymous items (`--anonymous-cadence-secs`): often
/// enough that a comment appears while it matters, rarely enough that a batch holds several
/// people's items.
pub const DEFAULT_ANONYMOUS_CADENCE: Duration = Duration::from_secs(60);

/// Largest WebSocket message accepted. A post-mortem report of 100k characters is about 400 KB
/// as a full Yjs state, so 4 MiB lets a client push a whole large document in one SyncStep2 while
/// keeping per-connection buffering bounded.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Largest document, measured as its compacted state plus the log since. Ten times the largest
/// real report we expect; past it, writes are refused rather than letting one document exhaust
/// memory or make every cold load slow.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Most bytes a review's documents (report, discussion and notes) may hold together, each counted
/// as [`MAX_DOCUMENT_BYTES`] counts it. One report at the document limit plus half as much again
/// for its discussion and notes. Without it a review could hold three documents at the document
/// limit; with it, and the store's bound on disk per byte held (README, "Disk use"), one review
/// can take at most a known share of the disk. Past it, writes to any of the review's documents
/// are refused (close 4413 `review_quota_exceeded`, REST 413) and reads still work.
pub const MAX_REVIEW_BYTES: u64 = MAX_DOCUMENT_BYTES + MAX_DOCUMENT_BYTES / 2;

/// Most simultaneous connections to one document. A team's review has tens of people; an
/// all-hands one has the whole engineering organisation reading (issue 21: a thousand observers
/// and ten writers). Fan-out shares one frame among all connections of a dialect, so the cost of
/// one update is a pointer per connection, and the cap only bounds it.
pub const MAX_CONNECTIONS_PER_DOCUMENT: usize = 2000;

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

/// How often one document relays presence at most. A change after a quiet tick goes out at once;
/// changes within a tick after that are relayed together at its end, each client's latest state
/// only. Relaying every awareness message to everyone made presence 88 % of the frames of an
/// all-hands review (a thousand people renewing their state every 15 s, writers moving their
/// carets with each edit; issue 21). 50 ms keeps carets in step with typing.
pub const PRESENCE_TICK: Duration = Duration::from_millis(50);

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

/// How far past the document's clock for a client an update may insert or delete that client's
/// content, in clock units (characters, in UTF-16 units for text). A client's structs arrive
/// ahead of their predecessors only while those are still on their way: a reconnecting client
/// may send a fresh edit before the SyncStep2 that carries what it wrote while disconnected, so
/// the gap is at most what one person wrote offline. 16 Mi units is 160 times the largest report
/// we expect (100k characters), and keeps every accepted clock far below where yrs' clock
/// arithmetic breaks ([`MAX_CLOCK`]); a claim of another writer's clock 2^32−1 (issue 16) is
/// refused.
pub const MAX_CLOCK_AHEAD: u64 = 1 << 24;

/// Clocks an update may reach (exclusive). yrs 0.28 compares clocks after casting them to `i32`,
/// so a clock of 2^31 or more places a struct wrongly and makes later updates panic (see
/// `server/tests/fixtures/yrs-panic/README.md`). No real document comes near: it would take two
/// billion characters written by one client.
pub const MAX_CLOCK: u64 = i32::MAX as u64;

/// Document reloads the updates of one token (a review session, a shared token, or none at all
/// under open access) may cause within [`RELOAD_WINDOW`]; past it, that token's updates are
/// refused (close 4423) until the window has passed. Only an update that failed part-way through
/// applying (a malformed update that made yrs panic) makes a document reload, and rebuilding a
/// large report costs a core for a noticeable time: one author resending such updates drove
/// the server to 98 % CPU (issue 16). A healthy client never causes one; a broken client that
/// resends the same bad update on every reconnect is stopped after three.
pub const MAX_RELOADS_PER_TOKEN: usize = 3;

/// The window of [`MAX_RELOADS_PER_TOKEN`]. Ten minutes is longer than any reconnect backoff,
/// so a client in a reconnect loop stays stopped, and short enough that a person whose client was
/// fixed (or who reloaded the page) can write again soon.
pub const RELOAD_WINDOW: Duration = Duration::from_secs(600);

/// Tokens whose recent reloads are remembered for [`MAX_RELOADS_PER_TOKEN`]. Each entry costs a
/// few dozen bytes and exists only because its token made a document reload; past this many the
/// entry seen longest ago is forgotten, which bounds memory whatever an attacker does.
pub const MAX_RELOAD_TRACKED_TOKENS: usize = 10_000;

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

/// How long a `/collab` socket may stay open without sending a token for any document (from the
/// upgrade). A stock provider sends its tokens as soon as the socket opens; a socket that sends
/// none holds the server's resources for nothing (issue 16).
pub const FIRST_TOKEN_DEADLINE: Duration = Duration::from_secs(10);

/// How long an HTTP request (its head and body; for WebSockets, the upgrade request) may take to
/// arrive, from the connection's start or, on a kept-alive connection, from its first byte. hyper
/// enforces no such deadline as axum runs it (it has no timer), so a client could trickle a
/// request head forever; real requests take milliseconds, and the largest body (1 MiB) arrives
/// in 10 s at 100 KiB/s.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long a WebSocket frame, or a message in fragments, may take to arrive once its first
/// byte has: tungstenite buffers an incomplete frame whole, so a client that sends most of a
/// large frame and stops would hold up to [`MAX_FRAME_BYTES`] for as long as it liked (issue
/// 16). A 4 MiB frame (an offline client's whole document) arrives in 30 s at about 1.1 Mbit/s;
/// the frames of typing and presence take microseconds.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(30);

/// Bytes the whole server holds for clients that have not authenticated: HTTP requests not yet
/// answered, WebSocket frames not yet complete on sockets without an accepted token, and
/// messages waiting in `/collab`'s pre-authentication queues. Past it a socket that would hold
/// more is closed, and new WebSockets are refused, with 4503 (issue 16: 200 sockets queued
/// 804 MiB). 64 MiB is 16 frames of the largest size at once, or thousands of ordinary
/// handshakes (a stock client sends a few hundred bytes before its token is accepted), and keeps
/// the server's memory bounded whoever connects.
pub const UNAUTHENTICATED_BYTES: usize = 64 * 1024 * 1024;

/// Of [`UNAUTHENTICATED_BYTES`], what one client address may hold, so that one attacker cannot
/// take all of it from one machine: four frames of the largest size, far above what an office
/// behind one NAT address sends while its browsers connect.
pub const UNAUTHENTICATED_BYTES_PER_ADDRESS: usize = 16 * 1024 * 1024;

/// Room a new WebSocket needs in both budgets to be accepted: a stock handshake (token,
/// SyncStep1 and presence for a few documents) with room to spare.
pub const UNAUTHENTICATED_ADMISSION_BYTES: usize = 64 * 1024;

/// Attachments to one review document by one session token, over all sockets (issue 16: an
/// observer opened 1,000 attachments to the report through routing keys and locked everyone
/// else out). A person has the document open once per tab; 16 tabs is more than anyone uses.
/// Shared tokens (`--token`, `--read-only-token`, open access) stand for many people and are
/// not counted per token.
pub const MAX_ATTACHMENTS_PER_SESSION: usize = 16;

/// Attachments to one document from one `/collab` socket (routing keys `name\0n` make several
/// possible). A tab opens each document once; a few providers on the same document share a
/// socket in some apps.
pub const MAX_ATTACHMENTS_PER_SOCKET: usize = 8;

/// Of [`MAX_CONNECTIONS_PER_DOCUMENT`], the places read-only connections can never take, so that
/// readers (observers, or everyone reading a document in a phase they may not write it in) cannot
/// lock its writers out. A review has at most 50 facilitators and authors (the REST join limit
/// keeps 1,000 − 950 places for them): 100 places give each of them two tabs.
pub const CONNECTIONS_RESERVED_FOR_WRITERS: usize = 100;

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
    /// See [`MAX_REVIEW_BYTES`].
    pub max_review_bytes: u64,
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
    /// See [`FIRST_TOKEN_DEADLINE`].
    pub first_token_deadline: Duration,
    /// See [`REQUEST_DEADLINE`].
    pub request_deadline: Duration,
    /// See [`FRAME_DEADLINE`].
    pub frame_deadline: Duration,
    /// See [`UNAUTHENTICATED_BYTES`].
    pub unauthenticated_bytes: usize,
    /// See [`UNAUTHENTICATED_BYTES_PER_ADDRESS`].
    pub unauthenticated_bytes_per_address: usize,
    /// See [`UNAUTHENTICATED_ADMISSION_BYTES`].
    pub unauthenticated_admission_bytes: usize,
    /// See [`MAX_ATTACHMENTS_PER_SESSION`].
    pub max_attachments_per_session: usize,
    /// See [`MAX_ATTACHMENTS_PER_SOCKET`].
    pub max_attachments_per_socket: usize,
    /// See [`CONNECTIONS_RESERVED_FOR_WRITERS`].
    pub connections_reserved_for_writers: usize,
    /// See [`MAX_RELOADS_PER_TOKEN`].
    pub max_reloads_per_token: usize,
    /// See [`RELOAD_WINDOW`].
    pub reload_window: Duration,
    /// See [`WRITE_TIMEOUT`].
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_document_bytes: MAX_DOCUMENT_BYTES,
            max_review_bytes: MAX_REVIEW_BYTES,
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
            first_token_deadline: FIRST_TOKEN_DEADLINE,
            request_deadline: REQUEST_DEADLINE,
            frame_deadline: FRAME_DEADLINE,
            unauthenticated_bytes: UNAUTHENTICATED_BYTES,
            unauthenticated_bytes_per_address: UNAUTHENTICATED_BYTES_PER_ADDRESS,
            unauthenticated_admission_bytes: UNAUTHENTICATED_ADMISSION_BYTES,
            max_attachments_per_session: MAX_ATTACHMENTS_PER_SESSION,
            max_attachments_per_socket: MAX_ATTACHMENTS_PER_SOCKET,
            connections_reserved_for_writers: CONNECTIONS_RESERVED_FOR_WRITERS,
            max_reloads_per_token: MAX_RELOADS_PER_TOKEN,
            reload_window: RELOAD_WINDOW,
            write_timeout: WRITE_TIMEOUT,
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
