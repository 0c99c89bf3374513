//! Limits on guessing and flooding, per client address and per invite link, kept in memory only
//! (addresses are never stored or logged).
//!
//! A [`Throttle`] counts events per key in a fixed window; past the window's limit the key is
//! refused until the window ends, and each time that happens again the refusal lasts twice as
//! long (up to [`MAX_BACKOFF`]), so a script that keeps guessing slows down exponentially while a
//! person who mistyped a link once is not noticed. Behind a proxy every client shares the proxy's
//! address; the limits are then the proxy's.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a key is refused after repeated floods.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);
/// Keys tracked before expired ones are dropped; bounds the memory a scan of many addresses
/// can take.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    count: u32,
    /// How often this key went past the limit without a quiet window in between.
    strikes: u32,
    refused_until: Option<Instant>,
}

/// Counts events per key; refuses a key past `limit` events per `window`, with backoff.
#[derive(Debug)]
pub struct Throttle<K> {
    limit: u32,
    window: Duration,
    keys: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// `limit` events per `window` for each key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Throttle {
            limit,
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is refused now; `Err` carries how long until it may try again.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        match self.lock().get(key).and_then(|e| e.refused_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts one event of `key`; `Err` (how long to wait) when it is refused, this event
    /// included.
    pub fn hit(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut keys = self.lock();
        if keys.len() >= MAX_KEYS {
            let window = self.window;
            keys.retain(|_, e| {
                now.duration_since(e.window_start) < window
                    || e.refused_until.is_some_and(|u| u > now)
            });
        }
        let entry = keys.entry(key.clone()).or_insert(Entry {
            window_start: now,
            count: 0,
            strikes: 0,
            refused_until: None,
        });
        if let Some(until) = entry.refused_until {
            if until > now {
                return Err(until - now);
            }
            entry.refused_until = None;
        }
        if now.duration_since(entry.window_start) >= self.window {
            // A whole quiet window forgives earlier floods.
            if now.duration_since(entry.window_start) >= self.window * 2 {
                entry.strikes = 0;
            }
            entry.window_start = now;
            entry.count = 0;
        }
        entry.count += 1;
        if entry.count > self.limit {
            let backoff = self
                .window
                .saturating_mul(1u32 << entry.strikes.min(16))
                .min(MAX_BACKOFF);
            entry.strikes += 1;
            entry.refused_until = Some(now + backoff);
            entry.window_start = now + backoff;
            entry.count = 0;
            return Err(backoff);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry>> {
        crate::reviews::basics::locked(&self.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_a_key_is_refused_for_a_window_then_twice_as_long() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.hit(&"a").is_ok());
        }
        let wait = t.hit(&"a").expect_err("the fourth is refused");
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
        assert!(t.check(&"a").is_err());
        assert!(t.hit(&"b").is_ok(), "other keys are not affected");
        assert!(t.check(&"b").is_ok());
    }

    #[test]
    fn repeated_floods_back_off_exponentially() {
        let t = Throttle::new(1, Duration::from_millis(20));
        assert!(t.hit(&1).is_ok());
        let first = t.hit(&1).expect_err("refused");
        std::thread::sleep(first);
        assert!(t.hit(&1).is_ok());
        let second = t.hit(&1).expect_err("refused again");
        assert!(second > first, "{second:?} after {first:?}");
    }
}
