//! Transport: HTTP and the two WebSocket dialects. Sockets are read and written here, frames are
//! decoded with `debrief-proto`, and everything a frame asks for is handed to the documents
//! layer. Depends on documents (and on storage only for the readiness probe); the review API's
//! routes are handed to it by the composition root, and nothing below imports it.
//!
//! The two dialects stand side by side: [`ws`] (y-websocket) and [`collab`] (Hocuspocus) share
//! the socket machinery of [`socket`] and never import each other. [`forwarded`] serves, on a
//! document this node owns, clients whose sockets another cluster node holds (their dialect is
//! that node's business), over a sub-stream of the cluster's internal link.

pub mod admission;
pub mod collab;
pub mod forwarded;
pub mod forwarded_http;
pub mod http;
pub mod socket;
pub mod state;
pub mod stateless;
pub mod web;
pub mod ws;
