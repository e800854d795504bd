//! When to try a failed call again, and how long to wait first.
//!
//! Exponential backoff with "full jitter": attempt `n` waits a uniformly random time in
//! `[0, min(cap, base * 2^n)]`, so that many clients failing together do not retry in step.
//! A server's `Retry-After` is a floor: the client never comes back sooner than asked.

use std::time::Duration;

use crate::error::{BrivoError, ErrorKind};

/// Which failures a call may be retried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryMode {
    /// Repeating the call leaves the same state (GET, PUT, DELETE, membership changes): retry on
    /// every retryable failure.
    Idempotent,
    /// A create or an action: retry only when the server certainly did not act on it
    /// (over-QPS, 429, no connection). Anything else is left to the caller, who can look first.
    OnlyUnprocessed,
}

impl RetryMode {
    pub(crate) fn allows(self, err: &BrivoError) -> bool {
        match self {
            RetryMode::Idempotent => err.retryable(),
            RetryMode::OnlyUnprocessed => err.request_not_processed(),
        }
    }
}

/// The backoff policy of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The upper bound of the jitter window for the `attempt`-th retry (0-based).
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `attempt` (0-based), given a uniform random `unit` in
    /// `[0, 1)`. Kept pure so that its bounds can be tested without randomness.
    pub(crate) fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// How long to wait before retrying after `err`, or `None` when the server asked for a wait
    /// longer than the cap: then holding the caller is pointless, and the error (with its
    /// `retry_after`) goes back to the caller to reschedule.
    pub(crate) fn delay_for(&self, attempt: u32, err: &BrivoError) -> Option<Duration> {
        let jitter = self.delay_with(attempt, random_unit());
        match err.retry_after() {
            Some(asked) if asked > self.cap => None,
            // Over-QPS windows are a second long: come back right when asked, plus a little
            // jitter so that clones sharing the key do not all return in the same millisecond.
            Some(asked) if err.kind() == ErrorKind::OverQps => Some(
                asked
                    + self
                        .delay_with(0, random_unit())
                        .min(Duration::from_millis(100)),
            ),
            Some(asked) => Some(asked.max(jitter)),
            None => Some(jitter),
        }
    }
}

/// A uniform random number in `[0, 1)` from the operating system. Jitter needs no
/// cryptographic quality, but getrandom is already a dependency and never blocks after boot.
pub(crate) fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back to no jitter rather than failing the call.
        return 0.5;
    }
    // The top 53 bits fill an f64 mantissa exactly.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn policy() -> Backoff {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = policy();
        assert_eq!(b.ceiling(0), Duration::from_millis(200));
        assert_eq!(b.ceiling(1), Duration::from_millis(400));
        assert_eq!(b.ceiling(4), Duration::from_millis(3200));
        assert_eq!(b.ceiling(5), Duration::from_secs(5));
        assert_eq!(b.ceiling(63), Duration::from_secs(5));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = policy();
        assert_eq!(b.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay_with(0, 0.5), Duration::from_millis(100));
        assert!(b.delay_with(2, 0.999_999) <= Duration::from_millis(800));
        for attempt in 0..10 {
            for _ in 0..50 {
                let unit = random_unit();
                assert!((0.0..1.0).contains(&unit));
                assert!(b.delay_with(attempt, unit) <= b.ceiling(attempt));
            }
        }
    }

    fn error_with_retry_after(status: u16, body: &str, after: &'static str) -> BrivoError {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(after));
        BrivoError::from_response(
            "GET /groups",
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    }

    #[test]
    fn retry_after_is_a_floor_and_long_waits_are_refused() {
        let b = policy();
        let qps = error_with_retry_after(403, "<h1>Developer Over Qps</h1>", "1");
        let wait = b.delay_for(3, &qps).unwrap();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_millis(1100));
        let busy = error_with_retry_after(503, "", "2");
        let wait = b.delay_for(0, &busy).unwrap();
        assert!(wait >= Duration::from_secs(2) && wait <= b.cap);
        let too_long = error_with_retry_after(429, "", "60");
        assert_eq!(b.delay_for(0, &too_long), None);
    }

    #[test]
    fn modes() {
        let busy = error_with_retry_after(503, "", "1");
        let qps = error_with_retry_after(403, "<h1>Developer Over Qps</h1>", "1");
        let missing = error_with_retry_after(404, "{}", "1");
        assert!(RetryMode::Idempotent.allows(&busy));
        assert!(!RetryMode::OnlyUnprocessed.allows(&busy));
        assert!(RetryMode::OnlyUnprocessed.allows(&qps));
        assert!(!RetryMode::Idempotent.allows(&missing));
    }
}
