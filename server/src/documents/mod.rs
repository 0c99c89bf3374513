//! Documents: one owner task per open document applies updates with yrs, holds them until the
//! store has made them durable, then relays and acknowledges. Also who may open what
//! ([`access`]), the peers attached to a document and their bounded queues. Depends on storage
//! only.

pub mod access;
pub mod command;
pub mod compact;
pub mod core;
pub mod crdt;
pub mod doc;
pub mod peer;
pub mod presence;
pub mod queue;
pub mod quota;
pub mod registry;
pub mod reloads;
