//! Wire formats of Debrief, and nothing else: lib0 primitives, the y-protocols messages spoken by
//! stock `y-websocket` clients, the Hocuspocus dialect's framing, the frames of the cluster's internal link ([`link`]) and of a
//! connection forwarded over it ([`forward`]), awareness payloads, the close codes the server uses, and the
//! document schema contract ([`schema`]) the browser editor shares.
//!
//! This crate never performs I/O and has no async runtime, storage or HTTP dependency, so that
//! every decoder can be unit- and property-tested on plain byte slices (see `docs/architecture.md`, "Decoders without I/O").
//! Decoding never panics: every malformed input maps to a [`DecodeError`] variant.

pub mod awareness;
pub mod close;
pub mod error;
pub mod forward;
pub mod forward_http;
pub mod hocuspocus;
pub mod lib0;
pub mod link;
pub mod schema;
pub mod ywire;

pub use error::DecodeError;
