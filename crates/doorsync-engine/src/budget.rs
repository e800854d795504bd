//! Pacing the drift audit within a monthly provider call budget. Changes always go first: the
//! audit gets half of what is left of the month's budget, spread evenly over what is left of the
//! month.

use jiff::Timestamp;
use std::time::Duration;

/// The share of the remaining budget the audit may spend.
const AUDIT_SHARE: f64 = 0.5;

/// How long to wait before the next audit, given the month's budget, the calls used so far, the
/// cost of one audit in calls and the time left in the month.
pub fn next_audit_delay(
    budget: u64,
    used: u64,
    audit_cost: u64,
    month_left: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let remaining = budget.saturating_sub(used) as f64 * AUDIT_SHARE;
    let audits = remaining / audit_cost.max(1) as f64;
    if audits < 1.0 {
        // Not even one audit fits: wait for the month to turn.
        return month_left.max(min);
    }
    let delay = month_left.as_secs_f64() / audits;
    Duration::from_secs_f64(delay).clamp(min, max)
}

/// Time from `now` to the first instant of the next UTC month.
pub fn month_left(now: Timestamp) -> Duration {
    let d = now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let first = d.first_of_month();
    let next = first
        .checked_add(jiff::Span::new().months(1))
        .unwrap_or(first);
    let end = jiff::tz::TimeZone::UTC
        .to_timestamp(next.to_datetime(jiff::civil::Time::midnight()))
        .unwrap_or(now);
    end.duration_since(now).try_into().unwrap_or(Duration::ZERO)
}

/// `YYYY-MM` in UTC: the month a call counts against.
pub fn month_key(now: Timestamp) -> String {
    now.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn audits_spread_half_the_remaining_budget_over_the_month() {
        // 100,000 calls, none used, an audit of 100 calls, 30 days left: 500 audits, every 86.4 min.
        let month = Duration::from_secs(30 * 24 * 3600);
        let d = next_audit_delay(100_000, 0, 100, month, MIN, MAX);
        assert_eq!(d.as_secs(), 30 * 24 * 3600 / 500);
        // The more is used, the slower the audit.
        assert!(next_audit_delay(100_000, 90_000, 100, month, MIN, MAX) > d);
        // A cheap audit on a big budget is held to the minimum.
        assert_eq!(
            next_audit_delay(100_000, 0, 1, Duration::from_secs(3600), MIN, MAX),
            MIN
        );
        // An exhausted budget waits for the next month.
        assert_eq!(
            next_audit_delay(100_000, 100_000, 100, month, MIN, MAX),
            month
        );
    }

    #[test]
    fn months_end_at_utc_midnight_on_the_first() {
        let now: Timestamp = "2026-11-30T23:00:00Z".parse().unwrap();
        assert_eq!(month_left(now), Duration::from_secs(3600));
        assert_eq!(month_key(now), "2026-11");
    }
}
