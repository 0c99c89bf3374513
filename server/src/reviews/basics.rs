//! Small helpers every file of the review domain uses: the clock, random ids, records as JSON,
//! and a lock that survives a panic. Nothing here knows a review.

use std::sync::{Mutex, MutexGuard};

use rand::RngCore;
use serde::Serialize;
/// Locks `m`, also after a panic while it was held: the review domain's maps are changed by
/// replacing whole entries, so a panic cannot leave one half-written.
pub fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records are plain data and always serialise")
}
