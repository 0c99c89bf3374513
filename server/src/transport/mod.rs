//! Transport: HTTP and the two WebSocket dialects. Sockets are read and written here, frames are
//! decoded with `debrief-proto`, and everything a frame asks for is handed to the documents
//! layer. Depends on documents; the review API's routes are handed to it by the composition
//! root, and nothing below imports it.

pub mod admission;
pub mod collab;
pub mod http;
pub mod stateless;
pub mod web;
pub mod ws;
