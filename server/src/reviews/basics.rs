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

/// The calendar day (UTC) of `ms` milliseconds since the Unix epoch, written YYYY-MM-DD.
pub fn day_of(ms: u64) -> String {
    date_of((ms / 86_400_000) as i64)
}

/// The calendar day (`YYYY-MM-DD`) of a day number (days since 1970-01-01).
pub fn date_of(day: i64) -> String {
    // Days counted from 0000-03-01 in 400-year cycles of 146,097 days, so that the leap day
    // ends each year of the count.
    let days = day + 719_468;
    let cycle = days.div_euclid(146_097);
    let in_cycle = days.rem_euclid(146_097);
    let year_in_cycle =
        (in_cycle - in_cycle / 1_460 + in_cycle / 36_524 - in_cycle / 146_096) / 365;
    let day_of_year = in_cycle - (365 * year_in_cycle + year_in_cycle / 4 - year_in_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_in_cycle + cycle * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The month (`YYYY-MM`, UTC) of a time in ms since the Unix epoch.
pub fn month_of(ms: u64) -> String {
    let mut day = day_of(ms);
    day.truncate(7);
    day
}

/// The month a review belongs to in views over time: its incident's month, or else the month
/// of `fallback_ms`.
pub fn review_month(incident_date: Option<&str>, fallback_ms: u64) -> String {
    match incident_date.and_then(|day| day.get(..7)) {
        Some(month) => month.to_owned(),
        None => month_of(fallback_ms),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_calendar_days() {
        assert_eq!(super::day_of(0), "1970-01-01");
        assert_eq!(super::day_of(951_782_400_000), "2000-02-29");
        assert_eq!(super::day_of(951_868_799_999), "2000-02-29");
        assert_eq!(super::day_of(951_868_800_000), "2000-03-01");
        assert_eq!(super::day_of(1_798_761_599_000), "2026-12-31");
        assert_eq!(super::day_of(1_798_761_600_000), "2027-01-01");
    }

    #[test]
    fn months_of_times() {
        use super::{month_of, review_month};
        assert_eq!(month_of(0), "1970-01");
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(month_of(1_709_251_199_999), "2024-02");
        assert_eq!(month_of(1_709_251_200_000), "2024-03");
        // 2000-12-31T12:00Z, 2100-03-01T00:00Z.
        assert_eq!(month_of(978_264_000_000), "2000-12");
        assert_eq!(month_of(4_107_542_400_000), "2100-03");
        assert_eq!(review_month(Some("2026-11-05"), 0), "2026-11");
        assert_eq!(review_month(None, 1_709_251_200_000), "2024-03");
    }
}
