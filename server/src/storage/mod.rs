//! Storage: the embedded sled store, its write-ahead file and its integrity manifest. Knows
//! bytes, not yrs or sockets; imports nothing else of the server.

pub mod integrity;
pub mod store;
pub mod wal;
