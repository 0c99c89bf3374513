//! Storage: the storage interface ([`store`]) over two backends, embedded sled with its
//! write-ahead file and integrity manifest (the default), and PostgreSQL (`--postgres`). Knows
//! bytes, not yrs or sockets; imports nothing else of the server.

pub mod integrity;
pub mod postgres;
pub mod sled_store;
pub mod store;
pub mod types;
pub mod wal;
