//! Counts for events that a flood repeats thousands of times a second (a failed accept, a refused
//! connection), so that the log gets one line per interval with how many, not one per event.

use std::time::{Duration, Instant};

pub struct Tally {
    interval: Duration,
    last_line: Option<Instant>,
    unlogged: u64,
}

impl Tally {
    pub fn new(interval: Duration) -> Tally {
        Tally {
            interval,
            last_line: None,
            unlogged: 0,
        }
    }

    /// Counts one; `Some(n)` when a line is due now, for the `n` counted since the last one.
    pub fn count(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        self.due(now)
    }

    /// What was counted but not yet logged, once an interval has passed since the last line.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        let quiet = self
            .last_line
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if self.unlogged == 0 || !quiet {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_one_line_per_interval_with_the_count() {
        let mut t = Tally::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.count(t0), Some(1));
        let lines = (1..=780)
            .filter_map(|i| t.count(t0 + Duration::from_millis(i * 5)))
            .collect::<Vec<_>>();
        assert!(lines.is_empty(), "{lines:?}");
        assert_eq!(t.due(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.due(t0 + Duration::from_secs(10)), Some(780));
        assert_eq!(t.due(t0 + Duration::from_secs(30)), None, "nothing new");
        assert_eq!(t.count(t0 + Duration::from_secs(31)), Some(1));
    }
}
