//! Counting every HTTP attempt by endpoint and outcome, for the engine's metrics and its call
//! budget (Brivo keys come with a monthly quota). Retries and token calls count: they spend the
//! quota like any other call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many attempts ended one way at one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallStat {
    /// Method and templated path, e.g. `PUT /groups/{id}/users/{id}` or `POST /oauth/token`.
    pub endpoint: &'static str,
    /// `ok`, or the snake_case [`crate::ErrorKind`] of the failure.
    pub outcome: &'static str,
    pub count: u64,
}

#[derive(Debug, Default)]
pub(crate) struct CallStats {
    by_endpoint: Mutex<HashMap<(&'static str, &'static str), u64>>,
    total: AtomicU64,
}

impl CallStats {
    pub(crate) fn record(&self, endpoint: &'static str, outcome: &'static str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut map = self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((endpoint, outcome)).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> Vec<CallStat> {
        let map = self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats: Vec<CallStat> = map
            .iter()
            .map(|(&(endpoint, outcome), &count)| CallStat {
                endpoint,
                outcome,
                count,
            })
            .collect();
        stats.sort();
        stats
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_endpoint_and_outcome() {
        let stats = CallStats::default();
        stats.record("GET /groups", "ok");
        stats.record("GET /groups", "ok");
        stats.record("GET /groups", "unavailable");
        stats.record("POST /oauth/token", "ok");
        assert_eq!(stats.total(), 4);
        assert_eq!(
            stats.snapshot(),
            vec![
                CallStat {
                    endpoint: "GET /groups",
                    outcome: "ok",
                    count: 2
                },
                CallStat {
                    endpoint: "GET /groups",
                    outcome: "unavailable",
                    count: 1
                },
                CallStat {
                    endpoint: "POST /oauth/token",
                    outcome: "ok",
                    count: 1
                },
            ]
        );
    }
}
