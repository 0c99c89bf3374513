//! The clock that decides when an action item is due soon or overdue, and stamps events: the
//! system's, or a manual one that tests move forward (the scan runs at once when it moves, so no
//! test waits for a timer). Also the calendar arithmetic the due dates need.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

pub use crate::reviews::basics::date_of;

/// Where "now" comes from for webhook events and due dates.
#[derive(Debug, Clone)]
pub struct Clock {
    /// `None`: the system clock; otherwise milliseconds since the Unix epoch, moved by hand.
    manual: Option<Arc<AtomicU64>>,
    /// Woken when a manual clock moves.
    moved: Arc<Notify>,
    /// The clock's time when the last scan of due days began (for tests: a scan at a time they
    /// set has finished).
    scanned: Arc<watch::Sender<u64>>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock {
            manual: None,
            moved: Arc::new(Notify::new()),
            scanned: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A clock that stands at `start_ms` until [`Clock::advance`] or [`Clock::set`] moves it.
    pub fn manual(start_ms: u64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(start_ms))),
            moved: Arc::new(Notify::new()),
            scanned: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => crate::reviews::basics::now_ms(),
        }
    }

    /// Moves a manual clock forward by `by` and wakes whoever waits on it; the system clock
    /// cannot be moved (nothing happens).
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(ms) = &self.manual {
            ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
            self.moved.notify_one();
        }
    }

    /// Sets a manual clock to `ms` and wakes whoever waits on it.
    pub fn set(&self, ms: u64) {
        if let Some(at) = &self.manual {
            at.store(ms, Ordering::SeqCst);
            self.moved.notify_one();
        }
    }

    /// Completes when a manual clock moved since the last call returned (never for the system
    /// clock). One waiter: the scan of due dates.
    pub async fn moved(&self) {
        if self.manual.is_some() {
            self.moved.notified().await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Records that a scan of due days that began at `at_ms` (this clock's time) has finished.
    pub fn scanned(&self, at_ms: u64) {
        self.scanned.send_if_modified(|last| {
            let later = at_ms > *last;
            *last = (*last).max(at_ms);
            later
        });
    }

    /// Completes once a scan that began at `at_ms` or later has finished: what it found is in
    /// the outbox.
    pub async fn scanned_since(&self, at_ms: u64) {
        let mut seen = self.scanned.subscribe();
        let _ = seen.wait_for(|last| *last >= at_ms).await;
    }

    /// Today's day number (days since 1970-01-01), in UTC.
    pub fn today(&self) -> i64 {
        (self.now_ms() / 86_400_000) as i64
    }
}

/// The day number (days since 1970-01-01) of a calendar day written `YYYY-MM-DD`.
pub fn day_number(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Years counted from March, so that the leap day is the last of its year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// An instant as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn timestamp(ms: u64) -> String {
    let day = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        date_of(day),
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_agree() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2000-03-01"), Some(11_017));
        assert_eq!(date_of(11_017), "2000-03-01");
        assert_eq!(
            date_of(day_number("2024-02-29").expect("a day")),
            "2024-02-29"
        );
        for day in (-1_000..30_000).step_by(7) {
            assert_eq!(day_number(&date_of(day)), Some(day), "day {day}");
        }
        assert_eq!(timestamp(1_765_065_600_123), "2025-12-07T00:00:00.123Z");
        assert_eq!(day_number("2026-13-01"), None);
    }

    #[tokio::test]
    async fn a_manual_clock_moves_only_by_hand() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        let waiting = clock.moved();
        tokio::pin!(waiting);
        // Registered before the move, so the move wakes it.
        assert!(futures_util::poll!(&mut waiting).is_pending());
        clock.advance(std::time::Duration::from_secs(1));
        waiting.await;
        assert_eq!(clock.now_ms(), 2_000);
    }
}
