//! The internal link between two nodes (`docs/cluster.md`, "Routing: the internal link" and
//! "Authentication between nodes"). The server listens and dials through `links.rs`; documents
//! are forwarded over it as lanes (`transport/forwarded.rs`, `documents/remote.rs`) and requests
//! of the review API as forwarded requests (`transport/forwarded_http.rs`).
//!
//! - **Authentication.** TLS 1.3 with a certificate each node makes for itself at start
//!   ([`Endpoint::new`]), then a challenge inside the encrypted channel: each side sends its node
//!   id and a 32-byte nonce, and proves it holds the cluster secret with an HMAC over both ids,
//!   both nonces and the TLS exporter value of this very session ([`proof`]). The dialer proves
//!   first; the acceptor, which faces whoever connects, checks that proof before it sends its
//!   own, so it never hands a proof to a peer that has not proved itself. The key of that HMAC
//!   is derived from the [`ClusterSecret`] for this purpose only. The whole handshake has a time
//!   limit, every handshake message a size limit, and an endpoint runs at most
//!   [`LinkSettings::max_handshakes`] as the acceptor at once.
//! - **The secret.** Read as hex or base64 text from a file only its owner may read, or from
//!   [`SECRET_ENV`]; it and the key derived from it are wiped from memory when dropped and never
//!   shown by `Debug`.
//! - **Sub-streams.** A [`Link`] carries many [`SubStream`]s, one per document a node forwards,
//!   in the frames of `debrief_proto::link`. Each sub-stream's queue is bounded in messages and
//!   bytes, the queues of a link together in bytes, and the bytes waiting for sub-streams not yet
//!   accepted too; a sub-stream whose message would pass a bound is closed as a slow reader
//!   (both sides learn why), never waited for, so one slow document cannot hold up the link's
//!   other documents. Each side may have [`LinkSettings::max_streams`] open at once; the peer's
//!   one more is refused and the link goes on.
//! - **Liveness.** Each side sends a heartbeat; a link on which no frame begins for longer than
//!   [`LinkSettings::silent_after`] (or whose writes stall that long), or on which a frame does
//!   not arrive in full that long after its first byte, is closed, and every sub-stream on it
//!   observes why.
//! - **Tasks.** Each link's reader and writer run on the endpoint's `TaskTracker` and end when
//!   the link closes or the shutdown token is cancelled.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use debrief_proto::link::{self as wire, Frame, FrameError, Kind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use super::NodeId;
use crate::limits;

/// The environment variable [`ClusterSecret::read`] falls back to.
pub const SECRET_ENV: &str = "DEBRIEF_CLUSTER_SECRET";
/// The shortest cluster secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;

/// HKDF's info string: `K_link` is derived from the cluster secret for the link only.
const KEY_INFO: &[u8] = b"debrief cluster link key v1";
/// HKDF's info string of `K_held`, the key that seals held anonymous items in the database
/// (`docs/cluster.md`, "Anonymity in PostgreSQL"): a key of its own, so that nothing the link
/// does with `K_link` bears on it.
const HELD_KEY_INFO: &[u8] = b"debrief held anonymous slots key v1";
/// The label of the TLS exporter value the proofs are bound to (RFC 5705, RFC 8446 7.5).
const EXPORTER_LABEL: &[u8] = b"EXPORTER-debrief-link";
/// What every proof starts with.
const PROOF_DOMAIN: &[u8] = b"debrief link";
/// The name the dialer asks for in TLS; no certificate is checked against it (see
/// [`ProofFollows`]).
const TLS_NAME: &str = "debrief-link";
/// The ALPN protocol both sides must agree on; a TLS peer that does not offer it is not a node
/// of this version.
pub const ALPN: &[u8] = b"debrief-link/1";
/// A node id's length: 32 lowercase hex digits ([`NodeId::random`]).
const NODE_ID_BYTES: usize = 32;
/// The largest body of a handshake message: a hello with the longest id and a nonce.
const HANDSHAKE_MAX_BODY: usize = wire::BODY_HEADER_BYTES + NODE_ID_BYTES + 32;
/// Close frames and refusals the reader sends wait here; a link that lets this fill is stuck.
const CONTROL_QUEUE: usize = 1024;
/// Frames waiting for the writer, from every sub-stream of the link.
const DATA_QUEUE: usize = 256;
/// Incoming sub-streams not yet taken by [`Link::accept_stream`].
const INCOMING_QUEUE: usize = 256;

/// The cluster secret every node of a cluster is given (never stored in the database). Its bytes
/// are wiped from memory when it is dropped, and its `Debug` shows their number only.
pub struct ClusterSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterSecret({} bytes)", self.0.len())
    }
}

/// Where a secret came from, as an error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// A secret file.
    File(PathBuf),
    /// The environment variable [`SECRET_ENV`].
    Env,
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::File(path) => write!(f, "the cluster secret file {}", path.display()),
            SecretOrigin::Env => f.write_str(SECRET_ENV),
        }
    }
}

/// Why no cluster secret could be had. Every message is one line naming where the secret came
/// from and what it must be.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither a file nor the environment variable gave one.
    #[error(
        "no cluster secret: give a secret file or set {SECRET_ENV} (at least 32 random bytes as hex or base64)"
    )]
    Missing,
    /// The file could not be read.
    #[error("cannot read the cluster secret file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file may be read or written by its group or by others.
    #[error(
        "the cluster secret file {path} has mode {mode:04o}, open to its group or others: it must be readable by its owner only (chmod 600 {path})"
    )]
    OpenMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Neither hex nor base64 once surrounding whitespace is trimmed.
    #[error(
        "{0} is neither hex nor base64: it must hold at least 32 random bytes as hex or base64 (such as `openssl rand -hex 32` prints)"
    )]
    NotEncoded(SecretOrigin),
    /// Decoded, fewer bytes than [`MIN_SECRET_BYTES`].
    #[error(
        "{origin} holds {len} bytes once decoded; it must hold at least 32 random bytes (64 hex digits or 44 base64 characters)"
    )]
    Short {
        /// Where it came from.
        origin: SecretOrigin,
        /// Its decoded length.
        len: usize,
    },
    /// Too short to resist guessing (bytes given directly to [`ClusterSecret::new`]).
    #[error("the cluster secret is {0} bytes; it must be at least 32 random bytes")]
    TooShort(usize),
}

/// Permission bits of a secret file that let its group or others in; any of them refuses it.
const OPEN_MODE_BITS: u32 = 0o077;

/// Base64 of the standard alphabet, with or without its padding: `openssl rand -base64` pads,
/// other tools do not, and both are the same secret.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl ClusterSecret {
    /// A secret of these bytes, refused when shorter than [`MIN_SECRET_BYTES`].
    pub fn new(bytes: Vec<u8>) -> Result<ClusterSecret, SecretError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(ClusterSecret(bytes))
    }

    /// The secret from `file` when given, else from [`SECRET_ENV`]: hex or base64 text, padded
    /// or not, whitespace around it trimmed. A file must not be open to its group or others.
    pub fn read(file: Option<&Path>) -> Result<ClusterSecret, SecretError> {
        ClusterSecret::read_from(file, std::env::var_os(SECRET_ENV))
    }

    /// [`ClusterSecret::read`] with the environment variable's value given.
    pub fn read_from(
        file: Option<&Path>,
        env: Option<OsString>,
    ) -> Result<ClusterSecret, SecretError> {
        use std::os::unix::ffi::OsStringExt;
        match (file, env) {
            (Some(path), _) => {
                let text = read_private(path)?;
                ClusterSecret::decode(&text, SecretOrigin::File(path.to_owned()))
            }
            (None, Some(value)) if !value.is_empty() => {
                let text = Zeroizing::new(value.into_vec());
                ClusterSecret::decode(&text, SecretOrigin::Env)
            }
            (None, _) => Err(SecretError::Missing),
        }
    }

    /// The secret written as `text`: hex when it is an even number of hex digits, else base64 of
    /// the standard alphabet (padded or not), whitespace around it trimmed. The two forms are
    /// told apart by their characters only; base64 of random bytes made of hex digits alone is
    /// too unlikely to matter. Anything else is refused rather than taken as raw bytes, so a
    /// secret has one meaning on every node whatever tool wrote it.
    fn decode(text: &[u8], origin: SecretOrigin) -> Result<ClusterSecret, SecretError> {
        use base64::Engine as _;
        let text = text.trim_ascii();
        let hex_digits = text.len() % 2 == 0 && text.iter().all(u8::is_ascii_hexdigit);
        let decoded = if hex_digits {
            hex::decode(text).ok()
        } else {
            BASE64.decode(text).ok()
        };
        let Some(bytes) = decoded.map(Zeroizing::new) else {
            return Err(SecretError::NotEncoded(origin));
        };
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::Short {
                origin,
                len: bytes.len(),
            });
        }
        Ok(ClusterSecret(bytes))
    }

    /// `K_held`: HKDF-SHA256 of the secret, without salt, with [`HELD_KEY_INFO`]; wiped from
    /// memory when dropped. Every node of a cluster derives the same one, so the node that takes
    /// the review role over can unseal what another node held.
    pub fn held_key(&self) -> Zeroizing<[u8; 32]> {
        hkdf_sha256(&self.0, HELD_KEY_INFO)
    }

    /// `K_link`: HKDF-SHA256 (RFC 5869) of the secret, without salt, with [`KEY_INFO`].
    fn link_key(&self) -> LinkKey {
        LinkKey(hkdf_sha256(&self.0, KEY_INFO))
    }
}

/// The bytes of a secret file, refused when its mode lets its group or others read or write it
/// (checked on the open file, so a file swapped after the check is not read instead).
fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let unreadable = |source| SecretError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mode = file.metadata().map_err(unreadable)?.permissions().mode() & 0o7777;
    if mode & OPEN_MODE_BITS != 0 {
        return Err(SecretError::OpenMode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = Zeroizing::new(Vec::new());
    file.read_to_end(&mut text).map_err(unreadable)?;
    Ok(text)
}

/// `K_link`, wiped from memory when dropped; its `Debug` shows no byte of it.
struct LinkKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// HKDF-SHA256 with an absent salt, one block of output. The intermediate key is wiped too.
fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut extract = mac(&[0; 32]);
    extract.update(ikm);
    let prk = Zeroizing::new(<[u8; 32]>::from(extract.finalize().into_bytes()));
    let mut expand = mac(prk.as_slice());
    expand.update(info);
    expand.update(&[1]);
    Zeroizing::new(expand.finalize().into_bytes().into())
}

/// Which end of a link a node is: the one that opened the TCP connection or the one that
/// accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Dialer,
    Acceptor,
}

impl Role {
    fn name(self) -> &'static [u8] {
        match self {
            Role::Dialer => b"dialer",
            Role::Acceptor => b"acceptor",
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Dialer => Role::Acceptor,
            Role::Acceptor => Role::Dialer,
        }
    }
}

/// What both sides of one handshake know: the ids and nonces (dialer's first) and the exporter.
struct Transcript<'a> {
    dialer: &'a str,
    acceptor: &'a str,
    dialer_nonce: &'a [u8; 32],
    acceptor_nonce: &'a [u8; 32],
    exporter: &'a [u8; 32],
}

/// The proof the side playing `role` sends:
/// `HMAC-SHA256(K_link, "debrief link" ‖ role ‖ dialer id ‖ acceptor id ‖ dialer nonce ‖
/// acceptor nonce ‖ exporter)`, each variable-length field behind its 2-byte length.
fn proof(key: &LinkKey, role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
    let mut m = mac(key.0.as_slice());
    m.update(PROOF_DOMAIN);
    for field in [role.name(), t.dialer.as_bytes(), t.acceptor.as_bytes()] {
        // Fits: role names and ids are at most NODE_ID_BYTES.
        m.update(&(field.len() as u16).to_be_bytes());
        m.update(field);
    }
    m.update(t.dialer_nonce);
    m.update(t.acceptor_nonce);
    m.update(t.exporter);
    m
}

/// Messages waiting for one sub-stream's reader. Its reader forwards each message to a socket
/// or a document at once, so a queue this long means it has stopped keeping up.
pub const STREAM_QUEUE: usize = 256;
/// Bytes waiting for one sub-stream's reader: two messages of the largest size
/// ([`limits::MAX_FRAME_BYTES`], 4 MiB), so a reader one large message behind is not yet slow,
/// while 256 large messages (1 GiB) can never pile up behind one sub-stream.
pub const STREAM_QUEUE_BYTES: usize = 2 * limits::MAX_FRAME_BYTES;
/// Bytes waiting for the readers of all sub-streams of one link together (16 messages of the
/// largest size). The per-sub-stream budget alone would let a peer that opens thousands of
/// sub-streams make a node hold gigabytes; with this, a node holds at most this much per peer
/// (a cluster has a handful of nodes). Readers that keep up hold next to nothing, so a link
/// that reaches it has slow readers, and a sub-stream a frame arrives for then is closed as a
/// slow reader.
pub const LINK_QUEUE_BYTES: usize = 16 * limits::MAX_FRAME_BYTES;
/// Bytes that may arrive for sub-streams the peer opened and this node has not yet taken with
/// [`Link::accept_stream`] (two messages of the largest size): a peer cannot park data in
/// sub-streams nobody reads, beyond the little a new sub-stream's first message needs.
pub const INCOMING_QUEUE_BYTES: usize = 2 * limits::MAX_FRAME_BYTES;
/// Sub-streams each side may have open at once on a link. One per forwarded socket and
/// document, so a node forwarding a few thousand clients' documents to one owner fits, while a
/// peer opening sub-streams without end is refused (each costs a queue and a map entry).
pub const MAX_STREAMS: usize = 4096;
/// Handshakes an endpoint runs at once as the acceptor. A cluster has a handful of nodes, each
/// dialling a node at most once at a time (all of them together after a restart), so 64 leaves
/// room for reconnects while a flood of connections that never finish their handshake holds at
/// most 64 TLS sessions and tasks, each for at most the handshake limit.
pub const MAX_HANDSHAKES: usize = 64;

/// Time limits and queue sizes of links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    /// The TLS handshake and the challenge together must finish within this.
    pub handshake_limit: Duration,
    /// How often each side sends a heartbeat.
    pub heartbeat_every: Duration,
    /// A link on which no frame begins for this long, or whose write stalls this long, is
    /// closed. Also the time a frame has to arrive in full once its first byte has.
    pub silent_after: Duration,
    /// Messages waiting for a sub-stream's reader; one more closes the sub-stream.
    pub stream_queue: usize,
    /// Bytes waiting for a sub-stream's reader; a message that would pass it closes the
    /// sub-stream.
    pub stream_queue_bytes: usize,
    /// Bytes waiting for all sub-streams' readers of a link; a message that would pass it closes
    /// the sub-stream it is for.
    pub link_queue_bytes: usize,
    /// Bytes waiting in sub-streams not yet accepted; a message that would pass it closes the
    /// sub-stream it is for.
    pub incoming_queue_bytes: usize,
    /// Sub-streams each side may have open at once on a link.
    pub max_streams: usize,
    /// Handshakes the acceptor runs at once; one more connection is closed at once.
    pub max_handshakes: usize,
    /// The largest payload of one frame.
    pub max_payload: usize,
}

impl Default for LinkSettings {
    /// A 5 s handshake; a heartbeat every second and silence judged after the default lease
    /// (3 s); payloads up to the document message limit, [`limits::MAX_FRAME_BYTES`]; the
    /// queue and count limits of the constants above.
    fn default() -> LinkSettings {
        LinkSettings {
            handshake_limit: Duration::from_secs(5),
            heartbeat_every: Duration::from_secs(1),
            silent_after: super::Settings::default().lease(),
            stream_queue: STREAM_QUEUE,
            stream_queue_bytes: STREAM_QUEUE_BYTES,
            link_queue_bytes: LINK_QUEUE_BYTES,
            incoming_queue_bytes: INCOMING_QUEUE_BYTES,
            max_streams: MAX_STREAMS,
            max_handshakes: MAX_HANDSHAKES,
            max_payload: limits::MAX_FRAME_BYTES,
        }
    }
}

impl LinkSettings {
    /// The largest frame body a reader accepts: the payload limit plus the body's header and the
    /// longest document name.
    pub fn max_body(&self) -> usize {
        self.max_payload + wire::BODY_HEADER_BYTES + wire::MAX_NAME_BYTES
    }
}

/// Why a link could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP or TLS failed.
    #[error("link I/O: {0}")]
    Io(#[from] io::Error),
    /// The certificate or TLS configuration could not be made.
    #[error("link TLS set-up: {0}")]
    Setup(String),
    /// The handshake took longer than allowed.
    #[error("link handshake did not finish within {} ms", .0.as_millis())]
    HandshakeTimeout(Duration),
    /// A frame could not be decoded or was too large.
    #[error("link frame: {0}")]
    Frame(#[from] FrameError),
    /// The acceptor closed the connection after this dialer's proof instead of proving itself.
    /// An acceptor that finds the proof wrong does so, but so does one that stops, crashes or
    /// reaches its handshake limit at that moment: the secret is only the likeliest cause.
    #[error(
        "link handshake: the peer closed the connection after this node's proof (most likely a different cluster secret)"
    )]
    ProofRefused,
    /// The acceptor has as many handshakes in progress as it allows; the connection was closed
    /// at once.
    #[error("link: {0} handshakes are in progress already; the connection was refused")]
    Busy(usize),
    /// This side has as many sub-streams open on the link as it allows.
    #[error("the link has {0} sub-streams of this node open already; close one first")]
    TooManyStreams(usize),
    /// A handshake message was not the one expected.
    #[error("link handshake: {0}")]
    BadHandshake(&'static str),
    /// The peer's proof did not match: it does not hold this cluster's secret, or someone is in
    /// the middle.
    #[error("link handshake: the peer's proof is wrong (it does not hold this cluster's secret)")]
    WrongProof,
    /// The link is closed.
    #[error("the link is closed: {0}")]
    LinkClosed(LinkClosed),
    /// The sub-stream is closed.
    #[error("the sub-stream is closed: {0}")]
    StreamClosed(StreamClosed),
    /// The node at the address dialled is not the one expected there.
    #[error("link handshake: the node at this address is {found}, not {expected}")]
    WrongPeer {
        /// The node the dialer meant to reach.
        expected: NodeId,
        /// The node that answered (and would have had to prove it).
        found: NodeId,
    },
    /// A node id that is not 32 lowercase hex digits.
    #[error("a node id must be 32 lowercase hex digits")]
    BadNodeId,
    /// This side has opened every sub-stream id it has on this link; a new link is needed.
    #[error("the link has no sub-stream ids left; open a new link")]
    NoStreamIds,
    /// A sub-stream id that is already open (never reused while open).
    #[error("sub-stream id {0} is already open on this link")]
    StreamIdInUse(u32),
    /// A payload larger than [`LinkSettings::max_payload`].
    #[error("a payload of {size} bytes exceeds the link's limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a link closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkClosed {
    /// This node is shutting down.
    Shutdown,
    /// [`Link::close`] or the `Link` was dropped.
    Local,
    /// The peer closed the connection.
    PeerClosed,
    /// No frame began (or a write stalled) for this long.
    Silent(Duration),
    /// A frame began but did not arrive in full within this long.
    SlowFrame(Duration),
    /// The connection failed.
    Io(String),
    /// The peer sent something this format does not allow.
    Protocol(String),
    /// Control frames could not be queued: the peer does not read.
    Stuck,
    /// This node opened every sub-stream id the link has (2^31 of them): a new link is needed.
    OutOfIds,
}

impl fmt::Display for LinkClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkClosed::Shutdown => f.write_str("this node is shutting down"),
            LinkClosed::Local => f.write_str("closed by this node"),
            LinkClosed::PeerClosed => f.write_str("the peer closed the connection"),
            LinkClosed::OutOfIds => f.write_str("this node used every sub-stream id of the link"),
            LinkClosed::Silent(d) => write!(f, "the peer was silent for {} ms", d.as_millis()),
            LinkClosed::SlowFrame(d) => write!(
                f,
                "a frame from the peer did not arrive in full within {} ms of its first byte",
                d.as_millis()
            ),
            LinkClosed::Io(e) => write!(f, "connection failed: {e}"),
            LinkClosed::Protocol(e) => write!(f, "protocol error: {e}"),
            LinkClosed::Stuck => f.write_str("the peer does not read its control frames"),
        }
    }
}

/// Why a sub-stream closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamClosed {
    /// Closed on this side.
    Local,
    /// The peer closed it.
    ByPeer,
    /// This side's reader did not keep up; the peer was told.
    SlowReader,
    /// The peer's reader did not keep up.
    PeerSlowReader,
    /// The peer had no room for another sub-stream.
    Refused,
    /// The whole link closed.
    Link(LinkClosed),
}

impl fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamClosed::Local => f.write_str("closed by this node"),
            StreamClosed::ByPeer => f.write_str("closed by the peer"),
            StreamClosed::SlowReader => f.write_str("its reader here did not keep up"),
            StreamClosed::PeerSlowReader => f.write_str("its reader on the peer did not keep up"),
            StreamClosed::Refused => f.write_str("the peer refused it (too many sub-streams)"),
            StreamClosed::Link(why) => write!(f, "the link closed: {why}"),
        }
    }
}

/// Accepts any certificate, and this is safe only because of what follows it: the certificate is
/// one the peer made for itself at start, so no authority could vouch for it anyway. What
/// authenticates the peer is the HMAC proof exchanged right after the TLS handshake, which only a
/// holder of the cluster secret can compute and which is bound to this TLS session's exporter
/// value, so a machine in the middle (two TLS sessions, two exporters) cannot relay it. A link is
/// used for nothing before both proofs are checked. The handshake signature is still verified, so
/// the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct ProofFollows(Arc<CryptoProvider>);

impl ServerCertVerifier for ProofFollows {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "the link speaks TLS 1.3 only".to_owned(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Refuses a TLS session in which the peer did not agree on [`ALPN`] (a peer offering another
/// protocol is refused by TLS itself; one offering none gets this far).
fn agreed_alpn(protocol: Option<&[u8]>) -> Result<(), LinkError> {
    if protocol == Some(ALPN) {
        Ok(())
    } else {
        Err(LinkError::BadHandshake(
            "the peer did not agree on the ALPN protocol debrief-link/1",
        ))
    }
}

/// Whether `id` has the form of a node id: 32 lowercase hex digits.
pub(super) fn valid_node_id(id: &str) -> bool {
    id.len() == NODE_ID_BYTES && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn setup_error(e: impl fmt::Display) -> LinkError {
    LinkError::Setup(e.to_string())
}

/// One node's end of all its links: its id, `K_link`, its TLS configurations (with the
/// certificate it made at start), and the tracker and token its links' tasks run under.
pub struct Endpoint {
    id: NodeId,
    key: LinkKey,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    settings: LinkSettings,
    /// Permits for handshakes in progress as the acceptor ([`LinkSettings::max_handshakes`]).
    handshakes: Semaphore,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint for node `id`, with a certificate made now. Links' tasks run on `tracker` and
    /// end when `shutdown` is cancelled.
    pub fn new(
        id: NodeId,
        secret: &ClusterSecret,
        settings: LinkSettings,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Endpoint, LinkError> {
        if !valid_node_id(id.as_str()) {
            return Err(LinkError::BadNodeId);
        }
        // ring, as for webhooks (`reviews/webhooks/deliver.rs`); deprecated only for lacking a
        // post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified =
            rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()]).map_err(setup_error)?;
        let cert = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup_error)?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(setup_error)?;
        // No resumption: every link runs a full handshake with fresh keys, so a proof is always
        // bound to a session both sides just made, never to one carried over from a ticket.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ProofFollows(provider)))
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Endpoint {
            id,
            key: secret.link_key(),
            server: Arc::new(server),
            client: Arc::new(client),
            settings,
            handshakes: Semaphore::new(settings.max_handshakes),
            tracker,
            shutdown,
        })
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Opens a link to node `expected`, listening at `addr`; fails before sending a proof if
    /// another node answers there.
    pub async fn connect(&self, addr: SocketAddr, expected: &NodeId) -> Result<Link, LinkError> {
        let (tls, peer) = self.dial(addr, expected).await?;
        Ok(self.start(tls, peer, Role::Dialer))
    }

    /// Runs the handshake on a connection this node's listener accepted. With
    /// [`LinkSettings::max_handshakes`] handshakes in progress already, the connection is closed
    /// at once ([`LinkError::Busy`]): connections that never finish cannot pile up.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Link, LinkError> {
        let Ok(_permit) = self.handshakes.try_acquire() else {
            drop(tcp);
            return Err(LinkError::Busy(self.settings.max_handshakes));
        };
        let (tls, peer) = self.answer(tcp).await?;
        Ok(self.start(tls, peer, Role::Acceptor))
    }

    /// TLS and the challenge as the dialer, within the handshake limit.
    async fn dial(
        &self,
        addr: SocketAddr,
        expected: &NodeId,
    ) -> Result<(TlsStream<TcpStream>, NodeId), LinkError> {
        self.limited(async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(TLS_NAME).map_err(setup_error)?;
            let mut tls = TlsConnector::from(self.client.clone())
                .connect(name, tcp)
                .await?;
            agreed_alpn(tls.get_ref().1.alpn_protocol())?;
            let exporter = tls
                .get_ref()
                .1
                .export_keying_material([0; 32], EXPORTER_LABEL, None)
                .map_err(setup_error)?;
            let peer = self
                .challenge(&mut tls, Role::Dialer, &exporter, Some(expected))
                .await?;
            Ok((TlsStream::from(tls), peer))
        })
        .await
    }

    /// TLS and the challenge as the acceptor, within the handshake limit.
    async fn answer(&self, tcp: TcpStream) -> Result<(TlsStream<TcpStream>, NodeId), LinkError> {
        self.limited(async {
            tcp.set_nodelay(true)?;
            let mut tls = TlsAcceptor::from(self.server.clone()).accept(tcp).await?;
            agreed_alpn(tls.get_ref().1.alpn_protocol())?;
            let exporter = tls
                .get_ref()
                .1
                .export_keying_material([0; 32], EXPORTER_LABEL, None)
                .map_err(setup_error)?;
            let peer = self
                .challenge(&mut tls, Role::Acceptor, &exporter, None)
                .await?;
            Ok((TlsStream::from(tls), peer))
        })
        .await
    }

    async fn limited<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, LinkError>>,
    ) -> Result<T, LinkError> {
        let limit = self.settings.handshake_limit;
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Err(LinkError::LinkClosed(LinkClosed::Shutdown)),
            r = tokio::time::timeout(limit, work) => match r {
                Ok(r) => r,
                Err(_) => Err(LinkError::HandshakeTimeout(limit)),
            },
        }
    }

    /// The mutual challenge inside TLS: hellos (id and nonce) both ways, then the dialer's proof,
    /// which the acceptor checks before it sends its own. The acceptor faces whoever connects,
    /// so it hands a proof made with `K_link` only to a peer that has proved it holds the secret
    /// (a wrong secret on the dialer's side gets the connection closed, never a proof); the
    /// dialer checks the acceptor's proof in turn.
    async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        role: Role,
        exporter: &[u8; 32],
        expected: Option<&NodeId>,
    ) -> Result<NodeId, LinkError> {
        let nonce: [u8; 32] = rand::random();
        write_frame(
            io,
            &Frame {
                kind: Kind::Hello,
                stream: 0,
                name: self.id.as_str().to_owned(),
                payload: nonce.to_vec(),
            },
        )
        .await?;
        let hello = read_frame(io, HANDSHAKE_MAX_BODY).await?;
        if hello.kind != Kind::Hello {
            return Err(LinkError::BadHandshake("expected a hello"));
        }
        let Ok(peer_nonce) = <[u8; 32]>::try_from(hello.payload.as_slice()) else {
            return Err(LinkError::BadHandshake("a hello's nonce is not 32 bytes"));
        };
        if !valid_node_id(&hello.name) {
            return Err(LinkError::BadNodeId);
        }
        if hello.name == self.id.as_str() {
            return Err(LinkError::BadHandshake("the peer has this node's id"));
        }
        let peer = NodeId(hello.name);
        if let Some(expected) = expected {
            if &peer != expected {
                return Err(LinkError::WrongPeer {
                    expected: expected.clone(),
                    found: peer,
                });
            }
        }
        let (dialer, acceptor, dialer_nonce, acceptor_nonce) = match role {
            Role::Dialer => (&self.id, &peer, &nonce, &peer_nonce),
            Role::Acceptor => (&peer, &self.id, &peer_nonce, &nonce),
        };
        let transcript = Transcript {
            dialer: dialer.as_str(),
            acceptor: acceptor.as_str(),
            dialer_nonce,
            acceptor_nonce,
            exporter,
        };
        match role {
            Role::Dialer => {
                self.send_proof(io, role, &transcript).await?;
                match read_frame(io, HANDSHAKE_MAX_BODY).await {
                    Err(LinkError::Io(e))
                        if matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        Err(LinkError::ProofRefused)
                    }
                    Err(e) => Err(e),
                    Ok(theirs) => self.check_proof(&theirs, role, &transcript),
                }?;
            }
            Role::Acceptor => {
                let theirs = read_frame(io, HANDSHAKE_MAX_BODY).await?;
                self.check_proof(&theirs, role, &transcript)?;
                self.send_proof(io, role, &transcript).await?;
            }
        }
        Ok(peer)
    }

    /// Sends the proof of the side playing `role`.
    async fn send_proof<S: AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        role: Role,
        transcript: &Transcript<'_>,
    ) -> Result<(), LinkError> {
        let mine = proof(&self.key, role, transcript).finalize().into_bytes();
        write_frame(
            io,
            &Frame {
                kind: Kind::Proof,
                stream: 0,
                name: String::new(),
                payload: mine.to_vec(),
            },
        )
        .await
    }

    /// Checks the proof the peer of the side playing `role` sent, in constant time
    /// (`verify_slice`); any difference ends the connection.
    fn check_proof(
        &self,
        theirs: &Frame,
        role: Role,
        transcript: &Transcript<'_>,
    ) -> Result<(), LinkError> {
        if theirs.kind != Kind::Proof {
            return Err(LinkError::BadHandshake("expected a proof"));
        }
        proof(&self.key, role.other(), transcript)
            .verify_slice(&theirs.payload)
            .map_err(|_| LinkError::WrongProof)
    }

    /// Starts the reader and writer of an authenticated connection.
    fn start(&self, tls: TlsStream<TcpStream>, peer: NodeId, role: Role) -> Link {
        let (read, write) = tokio::io::split(tls);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let shared = Arc::new(Shared {
            streams: Mutex::new(Streams::default()),
            queued: AtomicUsize::new(0),
            closed: OnceLock::new(),
            control: control_tx,
            data: data_tx,
            cancel: self.shutdown.child_token(),
            // The dialer's sub-streams are odd, the acceptor's even: ids never collide.
            next_id: AtomicU64::new(match role {
                Role::Dialer => 1,
                Role::Acceptor => 2,
            }),
            peer_parity: match role {
                Role::Dialer => 0,
                Role::Acceptor => 1,
            },
            settings: self.settings,
        });
        self.tracker
            .spawn(reader(read, shared.clone(), incoming_tx));
        self.tracker
            .spawn(writer(write, shared.clone(), control_rx, data_rx));
        Link {
            shared,
            peer,
            incoming: incoming_rx,
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, frame: &Frame) -> Result<(), LinkError> {
    let mut buf = Vec::with_capacity(wire::LENGTH_BYTES + frame.body_len());
    frame.encode(&mut buf)?;
    io.write_all(&buf).await?;
    io.flush().await?;
    Ok(())
}

/// Reads one frame, refusing a length prefix above `max_body` before reading the body.
async fn read_frame<R: AsyncRead + Unpin>(io: &mut R, max_body: usize) -> Result<Frame, LinkError> {
    let mut prefix = [0; wire::LENGTH_BYTES];
    io.read_exact(&mut prefix).await?;
    let len = wire::body_length(prefix, max_body)?;
    let mut body = vec![0; len];
    io.read_exact(&mut body).await?;
    Ok(Frame::decode_body(&body)?)
}

/// A sub-stream's receiving end, as the reader task sees it.
struct Entry {
    tx: mpsc::Sender<Vec<u8>>,
    reason: Arc<OnceLock<StreamClosed>>,
    /// Bytes in this sub-stream's queue: added by the reader (under the map's lock) before a
    /// message is queued, taken off by the sub-stream as it reads or drops them.
    queued: Arc<AtomicUsize>,
    /// Opened by the peer and not yet taken by [`Link::accept_stream`].
    pending: bool,
}

/// A link's open sub-streams and what they hold, behind one lock.
#[derive(Default)]
struct Streams {
    map: HashMap<u32, Entry>,
    /// How many of `map` this node opened, and how many the peer did.
    opened_here: usize,
    opened_by_peer: usize,
    /// Bytes queued in sub-streams that are `pending`.
    pending_bytes: usize,
}

impl Streams {
    /// Removes a sub-stream's entry, keeping the counts.
    fn remove(&mut self, id: u32, peer_parity: u32) -> Option<Entry> {
        let entry = self.map.remove(&id)?;
        if id % 2 == peer_parity {
            self.opened_by_peer -= 1;
        } else {
            self.opened_here -= 1;
        }
        if entry.pending {
            self.pending_bytes -= entry.queued.load(Ordering::Relaxed);
        }
        Some(entry)
    }
}

/// What a link's handle, its sub-streams and its two tasks share.
struct Shared {
    streams: Mutex<Streams>,
    /// Bytes waiting in all sub-stream queues of the link, accepted or not
    /// ([`LinkSettings::link_queue_bytes`]).
    queued: AtomicUsize,
    closed: OnceLock<LinkClosed>,
    control: mpsc::Sender<Frame>,
    data: mpsc::Sender<Frame>,
    cancel: CancellationToken,
    /// The next id this side opens; counted in 64 bits so running past `u32::MAX` is seen
    /// rather than wrapping onto an id that may still be open.
    next_id: AtomicU64,
    peer_parity: u32,
    settings: LinkSettings,
}

impl Shared {
    fn streams(&self) -> MutexGuard<'_, Streams> {
        // A panic while holding this lock leaves the map consistent (every change is one call).
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the link (the first reason stays) and every sub-stream on it.
    fn close_link(&self, why: LinkClosed) {
        let drained: Vec<Entry> = {
            let mut streams = self.streams();
            if self.closed.set(why).is_err() {
                Vec::new()
            } else {
                let drained = streams.map.drain().map(|(_, e)| e).collect();
                *streams = Streams::default();
                drained
            }
        };
        if let Some(why) = self.closed.get() {
            for entry in drained {
                let _ = entry.reason.set(StreamClosed::Link(why.clone()));
            }
        }
        self.cancel.cancel();
    }

    fn closed_because(&self) -> LinkClosed {
        self.closed.get().cloned().unwrap_or(LinkClosed::Shutdown)
    }

    /// A new sub-stream's entry, unless the link is closed or the side that opens it has
    /// [`LinkSettings::max_streams`] open already.
    fn register(&self, id: u32, reason: Arc<OnceLock<StreamClosed>>) -> Result<Queue, LinkError> {
        let (tx, rx) = mpsc::channel(self.settings.stream_queue.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let mut streams = self.streams();
        if let Some(why) = self.closed.get() {
            return Err(LinkError::LinkClosed(why.clone()));
        }
        if self.cancel.is_cancelled() {
            return Err(LinkError::LinkClosed(LinkClosed::Shutdown));
        }
        let by_peer = id % 2 == self.peer_parity;
        let opened = if by_peer {
            streams.opened_by_peer
        } else {
            streams.opened_here
        };
        if streams.map.contains_key(&id) {
            // Never replace a live sub-stream's entry.
            return Err(LinkError::StreamIdInUse(id));
        }
        if opened >= self.settings.max_streams {
            return Err(LinkError::TooManyStreams(self.settings.max_streams));
        }
        if by_peer {
            streams.opened_by_peer += 1;
        } else {
            streams.opened_here += 1;
        }
        streams.map.insert(
            id,
            Entry {
                tx,
                reason,
                queued: queued.clone(),
                pending: by_peer,
            },
        );
        Ok(Queue { rx, queued })
    }

    /// Closes one sub-stream if it is open, telling the peer `code` through the control queue.
    /// Returns whether it was open.
    fn close_stream(&self, id: u32, why: StreamClosed, code: Option<u16>) -> bool {
        let Some(entry) = self.streams().remove(id, self.peer_parity) else {
            return false;
        };
        let _ = entry.reason.set(why);
        if let Some(code) = code {
            self.tell(id, code);
        }
        true
    }

    /// Queues a close frame for the peer; a control queue that is full means the peer does not
    /// read, and closes the link.
    fn tell(&self, id: u32, code: u16) {
        if self.control.try_send(Frame::close(id, code)).is_err() {
            self.close_link(LinkClosed::Stuck);
        }
    }

    /// Queues a message that arrived for sub-stream `id` unless that would pass one of the
    /// budgets: its queue's messages or bytes, the link's bytes, or, while nobody has accepted
    /// the sub-stream, the bytes of sub-streams waiting to be accepted. Returns whether the
    /// sub-stream must be closed as a slow reader. A message for a sub-stream that is not open
    /// (closed here meanwhile) is dropped.
    fn deliver(&self, id: u32, payload: Vec<u8>) -> bool {
        let settings = &self.settings;
        let len = payload.len();
        let mut streams = self.streams();
        let streams = &mut *streams;
        let Some(entry) = streams.map.get_mut(&id) else {
            return false;
        };
        let fits = entry.queued.load(Ordering::Relaxed) + len <= settings.stream_queue_bytes
            && self.queued.load(Ordering::Relaxed) + len <= settings.link_queue_bytes
            && (!entry.pending || streams.pending_bytes + len <= settings.incoming_queue_bytes);
        if !fits {
            return true;
        }
        // Counted before it is queued, so the reader never takes off more than was added.
        entry.queued.fetch_add(len, Ordering::Relaxed);
        self.queued.fetch_add(len, Ordering::Relaxed);
        match entry.tx.try_send(payload) {
            Ok(()) => {
                if entry.pending {
                    streams.pending_bytes += len;
                }
                false
            }
            Err(e) => {
                entry.queued.fetch_sub(len, Ordering::Relaxed);
                self.queued.fetch_sub(len, Ordering::Relaxed);
                matches!(e, mpsc::error::TrySendError::Full(_))
            }
        }
    }

    /// Marks an incoming sub-stream as taken: what it holds no longer counts as waiting.
    fn accepted(&self, id: u32) {
        let mut streams = self.streams();
        let streams = &mut *streams;
        if let Some(entry) = streams.map.get_mut(&id) {
            if entry.pending {
                entry.pending = false;
                streams.pending_bytes -= entry.queued.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes `len` bytes that a sub-stream read or dropped off the link's count.
    fn drained(&self, queued: &AtomicUsize, len: usize) {
        queued.fetch_sub(len, Ordering::Relaxed);
        self.queued.fetch_sub(len, Ordering::Relaxed);
    }
}

/// A sub-stream's queue and the count of the bytes in it.
#[derive(Debug)]
struct Queue {
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

/// An authenticated link to one peer node. Dropping it closes the link.
pub struct Link {
    shared: Arc<Shared>,
    peer: NodeId,
    incoming: mpsc::Receiver<SubStream>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("closed", &self.shared.closed.get())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The peer's node id, as it proved with the cluster secret.
    pub fn peer(&self) -> &NodeId {
        &self.peer
    }

    /// Opens a sub-stream for `document`.
    pub async fn open(&self, document: &str) -> Result<SubStream, LinkError> {
        if document.is_empty() || document.len() > wire::MAX_NAME_BYTES {
            return Err(LinkError::Frame(FrameError::BadName));
        }
        let next = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let Ok(id) = u32::try_from(next) else {
            // Closed, so that whoever needs this peer (`Links::get`) dials a new link; the
            // sub-streams still open on this one end with it, and their clients reconnect.
            self.shared.close_link(LinkClosed::OutOfIds);
            return Err(LinkError::NoStreamIds);
        };
        let reason = Arc::new(OnceLock::new());
        let queue = self.shared.register(id, reason.clone())?;
        let stream = SubStream {
            id,
            document: document.to_owned(),
            queue,
            reason,
            shared: self.shared.clone(),
        };
        let open = Frame {
            kind: Kind::Open,
            stream: id,
            name: document.to_owned(),
            payload: Vec::new(),
        };
        stream.enqueue(open).await?;
        Ok(stream)
    }

    /// The next sub-stream the peer opened; `Err` with the reason once the link is closed.
    pub async fn accept_stream(&mut self) -> Result<SubStream, LinkClosed> {
        tokio::select! {
            biased;
            Some(s) = self.incoming.recv() => {
                s.shared.accepted(s.id);
                Ok(s)
            }
            _ = self.shared.cancel.cancelled() => Err(self.shared.closed_because()),
        }
    }

    /// Takes the sub-streams the peer opens off the link, so that one task can accept them
    /// while others share the link behind an `Arc` to open their own (the registry of dialled
    /// links, `links.rs`). From then on [`Link::accept_stream`] only waits for the link to close.
    pub fn take_incoming(&mut self) -> Incoming {
        let (_, closed) = mpsc::channel(1);
        Incoming {
            shared: self.shared.clone(),
            rx: std::mem::replace(&mut self.incoming, closed),
        }
    }

    /// Whether the link is closed (or closing): a registry drops such a link instead of
    /// handing it out.
    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Resolves when the link is closed, with why.
    pub async fn closed(&self) -> LinkClosed {
        self.shared.cancel.cancelled().await;
        self.shared.closed_because()
    }

    /// Closes the link and every sub-stream on it.
    pub fn close(&self) {
        self.shared.close_link(LinkClosed::Local);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}

/// The sub-streams a peer opens on a link, taken off it with [`Link::take_incoming`]. It does
/// not keep the link open: the link closes when its last `Link` handle is dropped.
pub struct Incoming {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<SubStream>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("closed", &self.shared.closed.get())
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The next sub-stream the peer opened; `Err` with the reason once the link is closed (as
    /// [`Link::accept_stream`]).
    pub async fn accept(&mut self) -> Result<SubStream, LinkClosed> {
        tokio::select! {
            biased;
            Some(s) = self.rx.recv() => {
                s.shared.accepted(s.id);
                Ok(s)
            }
            _ = self.shared.cancel.cancelled() => Err(self.shared.closed_because()),
        }
    }
}

/// One document's sub-stream on a link: bytes both ways, a bounded queue of what arrived.
/// Dropping it closes it.
pub struct SubStream {
    id: u32,
    document: String,
    queue: Queue,
    reason: Arc<OnceLock<StreamClosed>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for SubStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubStream")
            .field("id", &self.id)
            .field("document", &self.document)
            .field("closed", &self.reason.get())
            .finish()
    }
}

impl SubStream {
    /// The sub-stream's id on its link.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The document it is for.
    pub fn document(&self) -> &str {
        &self.document
    }

    /// Why it is closed, once it is.
    pub fn closed_because(&self) -> Option<StreamClosed> {
        self.reason.get().cloned()
    }

    /// Queues `bytes` for the peer. Waits while the link's writer is behind, never longer than
    /// the link stays open (a writer stalled for [`LinkSettings::silent_after`] closes it).
    pub async fn send(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        self.sender().send(bytes).await
    }

    /// A handle that sends on this sub-stream, so that one task can send while another
    /// receives. It does not keep the sub-stream open: once it is closed, sends fail.
    pub fn sender(&self) -> StreamSender {
        StreamSender {
            id: self.id,
            reason: self.reason.clone(),
            shared: self.shared.clone(),
        }
    }

    async fn enqueue(&self, frame: Frame) -> Result<(), LinkError> {
        self.sender().enqueue(frame).await
    }

    /// The next message from the peer. After the sub-stream closed, what had arrived before is
    /// still returned, then `Err` with why it closed.
    pub async fn recv(&mut self) -> Result<Vec<u8>, StreamClosed> {
        match self.queue.rx.recv().await {
            Some(bytes) => {
                self.shared.drained(&self.queue.queued, bytes.len());
                Ok(bytes)
            }
            None => Err(self.reason.get().cloned().unwrap_or(StreamClosed::Local)),
        }
    }

    /// Closes the sub-stream. The close frame follows what was sent on it before, in order.
    pub async fn close(&mut self) {
        if self.shared.close_stream(self.id, StreamClosed::Local, None) {
            let _ = self
                .enqueue(Frame::close(self.id, wire::CLOSE_NORMAL))
                .await;
        }
    }
}

/// Sends on a sub-stream ([`SubStream::sender`]).
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    reason: Arc<OnceLock<StreamClosed>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for StreamSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSender")
            .field("id", &self.id)
            .finish()
    }
}

impl StreamSender {
    /// Queues `bytes` for the peer, as [`SubStream::send`].
    pub async fn send(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        let limit = self.shared.settings.max_payload;
        if bytes.len() > limit {
            return Err(LinkError::PayloadTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        if let Some(why) = self.reason.get() {
            return Err(LinkError::StreamClosed(why.clone()));
        }
        self.enqueue(Frame {
            kind: Kind::Data,
            stream: self.id,
            name: String::new(),
            payload: bytes,
        })
        .await
    }

    async fn enqueue(&self, frame: Frame) -> Result<(), LinkError> {
        tokio::select! {
            r = self.shared.data.send(frame) => {
                r.map_err(|_| LinkError::LinkClosed(self.shared.closed_because()))
            }
            _ = self.shared.cancel.cancelled() => {
                Err(LinkError::LinkClosed(self.shared.closed_because()))
            }
        }
    }
}

impl Drop for SubStream {
    fn drop(&mut self) {
        // Dropped without `close`: the close frame may overtake data still queued for the peer.
        self.shared
            .close_stream(self.id, StreamClosed::Local, Some(wire::CLOSE_NORMAL));
        // What is still queued goes with the queue; the reader adds no more once the entry is
        // gone.
        let left = self.queue.queued.load(Ordering::Relaxed);
        self.shared.drained(&self.queue.queued, left);
    }
}

/// Reads frames until the link closes. A frame must begin within `silent_after` (heartbeats
/// see to that on a live link), and once its first byte is in, arrive in full within
/// `silent_after` too: a peer trickling a frame's bytes keeps nothing open.
async fn reader(
    mut io: ReadHalf<TlsStream<TcpStream>>,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<SubStream>,
) {
    let silent_after = shared.settings.silent_after;
    let max_body = shared.settings.max_body();
    loop {
        let first = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            r = tokio::time::timeout(silent_after, io.read_u8()) => r,
        };
        let read = match first {
            Err(_) => Err(LinkClosed::Silent(silent_after)),
            Ok(Err(e)) => Err(io_closed(e)),
            Ok(Ok(first)) => tokio::select! {
                _ = shared.cancel.cancelled() => break,
                r = tokio::time::timeout(silent_after, read_rest(&mut io, first, max_body)) => {
                    match r {
                        Err(_) => Err(LinkClosed::SlowFrame(silent_after)),
                        Ok(Err(LinkError::Io(e))) => Err(io_closed(e)),
                        Ok(Err(e)) => Err(LinkClosed::Protocol(e.to_string())),
                        Ok(Ok(frame)) => Ok(frame),
                    }
                }
            },
        };
        let frame = match read {
            Ok(frame) => frame,
            Err(why) => {
                shared.close_link(why);
                break;
            }
        };
        if let Err(e) = dispatch(&shared, &incoming, frame) {
            shared.close_link(LinkClosed::Protocol(e.to_owned()));
            break;
        }
    }
    // Ended by the shutdown token: the sub-streams learn it (a reason set before stays).
    shared.close_link(LinkClosed::Shutdown);
}

/// Why a link whose read failed with `e` closed.
fn io_closed(e: io::Error) -> LinkClosed {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        LinkClosed::PeerClosed
    } else {
        LinkClosed::Io(e.to_string())
    }
}

/// The rest of a frame whose first byte is `first`, refusing a length prefix above `max_body`
/// before reading the body.
async fn read_rest<R: AsyncRead + Unpin>(
    io: &mut R,
    first: u8,
    max_body: usize,
) -> Result<Frame, LinkError> {
    let mut prefix = [first; wire::LENGTH_BYTES];
    io.read_exact(&mut prefix[1..]).await?;
    let len = wire::body_length(prefix, max_body)?;
    let mut body = vec![0; len];
    io.read_exact(&mut body).await?;
    Ok(Frame::decode_body(&body)?)
}

/// Handles one frame that arrived; `Err` names a breach of the protocol, which closes the link.
fn dispatch(
    shared: &Arc<Shared>,
    incoming: &mpsc::Sender<SubStream>,
    frame: Frame,
) -> Result<(), &'static str> {
    match frame.kind {
        Kind::Heartbeat => Ok(()),
        Kind::Hello | Kind::Proof => Err("a handshake message after the handshake"),
        Kind::Open => {
            let id = frame.stream;
            if id % 2 != shared.peer_parity {
                return Err("the peer opened a sub-stream with one of this node's ids");
            }
            if frame.name.is_empty() {
                return Err("a sub-stream opened without a document name");
            }
            let reason = Arc::new(OnceLock::new());
            let queue = match shared.register(id, reason.clone()) {
                Ok(queue) => queue,
                Err(LinkError::StreamIdInUse(_)) => {
                    return Err("the peer opened a sub-stream that is open")
                }
                Err(LinkError::TooManyStreams(_)) => {
                    // One past the cap: refused, the link and its other sub-streams go on.
                    shared.tell(id, wire::CLOSE_BUSY);
                    return Ok(());
                }
                Err(_) => return Ok(()),
            };
            let stream = SubStream {
                id,
                document: frame.name,
                queue,
                reason,
                shared: shared.clone(),
            };
            if let Err(
                mpsc::error::TrySendError::Full(stream) | mpsc::error::TrySendError::Closed(stream),
            ) = incoming.try_send(stream)
            {
                // Nobody takes new sub-streams fast enough: refuse this one (its drop then finds
                // it closed and sends nothing more).
                shared.close_stream(stream.id, StreamClosed::Refused, Some(wire::CLOSE_BUSY));
            }
            Ok(())
        }
        Kind::Data => {
            if shared.deliver(frame.stream, frame.payload) {
                shared.close_stream(
                    frame.stream,
                    StreamClosed::SlowReader,
                    Some(wire::CLOSE_SLOW_READER),
                );
            }
            Ok(())
        }
        Kind::Close => {
            let why = match frame.close_reason() {
                Ok(wire::CLOSE_SLOW_READER) => StreamClosed::PeerSlowReader,
                Ok(wire::CLOSE_BUSY) => StreamClosed::Refused,
                _ => StreamClosed::ByPeer,
            };
            shared.close_stream(frame.stream, why, None);
            Ok(())
        }
    }
}

/// Writes queued frames (control first) and a heartbeat every `heartbeat_every`, each write
/// within `silent_after`.
async fn writer(
    mut io: WriteHalf<TlsStream<TcpStream>>,
    shared: Arc<Shared>,
    mut control: mpsc::Receiver<Frame>,
    mut data: mpsc::Receiver<Frame>,
) {
    let settings = shared.settings;
    let mut beat = tokio::time::interval(settings.heartbeat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            Some(f) = control.recv() => f,
            Some(f) = data.recv() => f,
            _ = beat.tick() => Frame::bare(Kind::Heartbeat, 0),
        };
        let write = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            r = tokio::time::timeout(settings.silent_after, write_frame(&mut io, &frame)) => r,
        };
        match write {
            Ok(Ok(())) => {}
            Err(_) => {
                shared.close_link(LinkClosed::Silent(settings.silent_after));
                break;
            }
            Ok(Err(e)) => {
                shared.close_link(LinkClosed::Io(e.to_string()));
                break;
            }
        }
    }
    shared.close_link(LinkClosed::Shutdown);
    // Best effort: tell the peer with a TLS close, without waiting on a peer that does not read.
    let _ = tokio::time::timeout(Duration::from_millis(100), io.shutdown()).await;
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
