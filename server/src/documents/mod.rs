//! Documents: one owner per open document applies updates with yrs, holds them until the store
//! has made them durable, then relays and acknowledges. The owner's decisions are a Sans-IO core
//! ([`core`], tested without sockets, timers or disks; what waits for which flush is its
//! [`holdback`]) driven by a task that does its I/O ([`doc`]); connections and server code talk
//! to it with [`command`]s. Also who may open what ([`access`]), the peers attached to a document
//! and the [`peer::Framing`] through which each transport encodes what the owner says (no dialect
//! bytes live here), presence, and the bounded queues. The [`registry`] spawns owners and hears
//! when one leaves memory ([`doc::Unload`]). In a cluster, the [`route`] decides where a document is served,
//! and one another node owns is served through it ([`remote`]), behind the same handle. Depends on storage (and the shared
//! limits and metrics) only.

pub mod access;
pub mod command;
pub mod compact;
pub mod core;
pub mod crdt;
pub mod doc;
pub mod holdback;
pub mod peer;
pub mod presence;
pub mod queue;
pub mod quota;
pub mod registry;
pub mod reloads;
pub mod remote;
pub mod route;
