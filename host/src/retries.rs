//! When a failed webhook call is tried again (README: "Retries"): off unless `webhook.retries`
//! says how many times. A connection failure, a timeout, 429, 502, 503 and 504 are tried again
//! (anything else would fail the same way, 410 included); the waits double from
//! `webhook.retry_delay`, each with a quarter of jitter either way so that many senders' retries
//! do not arrive together, a `Retry-After` the webhook sent is waited at least, and no attempt
//! starts later than `webhook.retry_for` after the first. Pure logic: `webhook.rs` runs it.

use std::time::Duration;

/// The configured policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 is off.
    pub retries: u32,
    /// The wait before the first retry; each next one doubles.
    pub first_delay: Duration,
    /// No attempt starts later than this after the first began.
    pub give_up_after: Duration,
}

/// A wait is never longer than this, however many doublings the schedule reaches.
const MAX_DELAY: Duration = Duration::from_secs(300);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 0, first_delay: Duration::from_secs(1), give_up_after: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    pub fn is_on(&self) -> bool {
        self.retries > 0
    }

    /// How long to wait before attempt `attempt + 1`, after attempt `attempt` (from 1) failed with
    /// `status` (0: no HTTP answer) `elapsed` after the first began; `None` to give up now.
    /// `jitter` is a number in [0, 1).
    pub fn wait(
        &self,
        attempt: u32,
        status: u16,
        retry_after: Option<Duration>,
        elapsed: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt > self.retries || !retried(status) {
            return None;
        }
        let doubled = self.first_delay.saturating_mul(1 << (attempt - 1).min(20)).min(MAX_DELAY);
        let scheduled = doubled.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0));
        let wait = scheduled.max(retry_after.unwrap_or_default());
        (elapsed + wait <= self.give_up_after).then_some(wait)
    }
}

/// Whether a call that ended with `status` may succeed if tried again.
fn retried(status: u16) -> bool {
    matches!(status, 0 | 429 | 502 | 503 | 504)
}

/// A `Retry-After` header's wait: seconds, or an HTTP date (RFC 9110).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { retries: 3, first_delay: Duration::from_secs(1), give_up_after: Duration::from_secs(60) }
    }

    #[test]
    fn the_waits_double_with_jitter_and_end_after_the_last_retry() {
        let p = policy();
        let wait = |attempt, jitter| p.wait(attempt, 503, None, Duration::ZERO, jitter);
        assert_eq!(wait(1, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(wait(2, 0.5), Some(Duration::from_secs(2)));
        assert_eq!(wait(3, 0.5), Some(Duration::from_secs(4)));
        assert_eq!(wait(4, 0.5), None, "three retries, then the error");
        assert_eq!(wait(1, 0.0), Some(Duration::from_millis(750)));
        assert_eq!(wait(1, 0.999_999).map(|d| d.as_millis()), Some(1249));
        assert_eq!(RetryPolicy::default().wait(1, 503, None, Duration::ZERO, 0.5), None, "off by default");
    }

    #[test]
    fn only_what_may_succeed_later_is_tried_again() {
        let p = policy();
        for status in [0, 429, 502, 503, 504] {
            assert!(p.wait(1, status, None, Duration::ZERO, 0.5).is_some(), "{status}");
        }
        for status in [200, 400, 404, 410, 500, 501] {
            assert_eq!(p.wait(1, status, None, Duration::ZERO, 0.5), None, "{status}");
        }
    }

    #[test]
    fn retry_after_is_waited_at_least_and_the_total_is_capped() {
        let p = policy();
        assert_eq!(p.wait(1, 429, Some(Duration::from_secs(5)), Duration::ZERO, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(p.wait(1, 503, Some(Duration::from_millis(10)), Duration::ZERO, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(p.wait(2, 503, None, Duration::from_secs(59), 0.5), None, "past retry_for: give up now");
        assert_eq!(
            p.wait(1, 503, Some(Duration::from_secs(120)), Duration::ZERO, 0.5),
            None,
            "a Retry-After beyond it too"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Sun, 09 Sep 2001 01:46:50 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(retry_after("Sat, 01 Jan 2000 00:00:00 GMT", now), Some(Duration::ZERO), "a date passed: now");
        assert_eq!(retry_after("soon", now), None);
    }
}
