//! How many document reloads each token has caused lately, so that a token whose updates keep
//! failing part-way (each failure rebuilds the whole document) can be stopped (issue 16). It
//! knows tokens only as keyed hashes, and only those that caused a reload; it never logs them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::{Limits, MAX_RELOAD_TRACKED_TOKENS};

/// Recent reloads per token, shared by every document owner.
#[derive(Debug)]
pub struct ReloadLimiter {
    per_token: usize,
    window: Duration,
    /// Keys tokens by a hash with a per-process random key: the table holds no token, and
    /// nobody can pick tokens that collide.
    hasher: RandomState,
    /// Number of tokens in `recent`, read without the lock: while no token has caused a reload
    /// (always, on a healthy server) checking an update costs one atomic load.
    tracked: AtomicUsize,
    /// When each token's recent reloads happened, oldest first, at most `per_token` of them.
    recent: Mutex<HashMap<u64, VecDeque<Instant>>>,
}

impl ReloadLimiter {
    /// A limiter enforcing `limits.max_reloads_per_token` per `limits.reload_window`.
    pub fn new(limits: &Limits) -> Self {
        ReloadLimiter {
            per_token: limits.max_reloads_per_token,
            window: limits.reload_window,
            hasher: RandomState::new(),
            tracked: AtomicUsize::new(0),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `token` has caused its allowance of reloads within the window: its updates are
    /// then refused until the oldest of them is older than the window.
    pub fn exhausted(&self, token: &str) -> bool {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return false;
        }
        let key = self.hasher.hash_one(token);
        let now = Instant::now();
        let recent = self.lock();
        recent.get(&key).is_some_and(|times| {
            times.len() >= self.per_token
                && times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
        })
    }

    /// Notes that an update sent with `token` made a document reload.
    pub fn record(&self, token: &str) {
        let key = self.hasher.hash_one(token);
        let now = Instant::now();
        let mut recent = self.lock();
        if !recent.contains_key(&key) && recent.len() >= MAX_RELOAD_TRACKED_TOKENS {
            let window = self.window;
            recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            if recent.len() >= MAX_RELOAD_TRACKED_TOKENS {
                let oldest = recent
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    recent.remove(&oldest);
                }
            }
        }
        let times = recent.entry(key).or_default();
        while times.len() >= self.per_token.max(1) {
            times.pop_front();
        }
        times.push_back(now);
        self.tracked.store(recent.len(), Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, VecDeque<Instant>>> {
        // Every change is a whole insert, push or removal: the table stays usable after a panic.
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_token: usize, window: Duration) -> ReloadLimiter {
        ReloadLimiter::new(&Limits {
            max_reloads_per_token: per_token,
            reload_window: window,
            ..Limits::default()
        })
    }

    #[test]
    fn a_token_is_stopped_after_its_allowance_and_others_are_not() {
        let l = limiter(3, Duration::from_secs(600));
        assert!(!l.exhausted("a"));
        for _ in 0..2 {
            l.record("a");
        }
        assert!(!l.exhausted("a"), "two of three");
        l.record("a");
        assert!(l.exhausted("a"));
        assert!(!l.exhausted("b"), "another token is not affected");
    }

    #[test]
    fn the_allowance_comes_back_after_the_window() {
        let l = limiter(1, Duration::from_millis(1));
        l.record("a");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!l.exhausted("a"));
    }

    #[test]
    fn memory_stays_bounded() {
        let l = limiter(3, Duration::from_secs(600));
        for i in 0..MAX_RELOAD_TRACKED_TOKENS + 50 {
            l.record(&i.to_string());
        }
        assert_eq!(l.lock().len(), MAX_RELOAD_TRACKED_TOKENS);
    }
}
