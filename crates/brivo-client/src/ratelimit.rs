//! A client-side limit on calls per second, shared by everything in the process that uses the
//! same API key.
//!
//! Brivo's gateway limits calls per API key (answering `403 Developer Over Qps`), not per
//! client object, so the engine's workers, the web handlers and a `doorsync token` command in
//! one process must draw from one budget. A process-wide registry hands out one limiter per
//! (API base URL, API key); keys are per environment at Brivo, and keying on the URL too keeps
//! separate emulators apart in tests.
//!
//! The limiter is a token bucket written as GCRA (a "theoretical arrival time"): each call
//! reserves the next free slot under a short lock and then sleeps until it, so waiters are served
//! in order and nothing polls. Calls are evenly spaced, with no saved-up burst (see `shape`). It
//! runs on tokio's clock, which tests can pause.
//!
//! Kept here rather than taken from governor, whose GCRA it matches: governor waits on its own
//! clock and timer (tokio's paused time, which the retry and pacing tests drive, does not move
//! it), has no way for one over-QPS answer to hold every caller of a key (`hold_for`), and
//! changes rate only by building a new limiter, which would split the key's budget between
//! clients made before and after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    state: Mutex<State>,
    /// The callers waiting for this key's slots, most urgent first.
    pub(crate) queue: Arc<crate::queue::Queue>,
}

#[derive(Debug)]
struct State {
    /// Time between two calls at the steady rate; `None` = no limit.
    interval: Option<Duration>,
    /// How far ahead of the steady schedule a burst may run (capacity - 1 intervals).
    tolerance: Duration,
    /// When the next call would be due if every earlier one had kept to the steady rate.
    next_due: Instant,
    /// No call before this instant (set when the server said we were over our QPS).
    hold_until: Option<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(per_second: f64) -> Self {
        let (interval, tolerance) = shape(per_second);
        RateLimiter {
            state: Mutex::new(State {
                interval,
                tolerance,
                next_due: Instant::now(),
                hold_until: None,
            }),
            queue: Default::default(),
        }
    }

    /// Waits until this caller may send one request.
    pub(crate) async fn acquire(&self) {
        if let Some(at) = self.reserve(Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Reserves the next slot; returns when to send, if not right away.
    fn reserve(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = state.hold_until.filter(|&until| until > now);
        let Some(interval) = state.interval else {
            return held;
        };
        let earliest = held.unwrap_or(now);
        // A caller may go once the steady schedule is no more than `tolerance` ahead of it.
        let slot = state.next_due.max(earliest);
        let send_at = slot
            .checked_sub(state.tolerance)
            .unwrap_or(slot)
            .max(earliest);
        state.next_due = slot + interval;
        (send_at > now).then_some(send_at)
    }

    /// Stops every caller until `now + wait`, because the server said this key is over its QPS:
    /// one 403 then pauses all the clones instead of each finding out on its own.
    pub(crate) fn hold_for(&self, wait: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + wait;
        if state.hold_until.is_none_or(|h| h < until) {
            state.hold_until = Some(until);
        }
        // Start the steady schedule afresh after the pause, with no saved-up burst.
        state.next_due = state.next_due.max(until);
    }

    fn set_rate(&self, per_second: f64) {
        let (interval, tolerance) = shape(per_second);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.interval = interval;
        state.tolerance = tolerance;
    }
}

/// The steady interval for a rate (no limit for 0, negative or non-finite), and no burst: Brivo
/// counts calls in fixed one-second windows, so a bucket that saved up a second's worth at the
/// end of one window and spent it with the next window's share would send twice the limit
/// within one window, and be answered over-QPS. Evenly spaced calls never exceed it.
fn shape(per_second: f64) -> (Option<Duration>, Duration) {
    if !(per_second.is_finite() && per_second > 0.0) {
        return (None, Duration::ZERO);
    }
    (
        Some(Duration::from_secs_f64(1.0 / per_second)),
        Duration::ZERO,
    )
}

/// Paces the calls of one API key across processes (several doorsync instances on one
/// database): when a client has one, it asks it for each call's turn instead of its own
/// in-process limiter.
pub trait Pacer: Send + Sync {
    /// Waits until this caller may send one request.
    fn turn(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The server said the key is over its QPS: no caller anywhere before `wait` has passed.
    fn hold(&self, wait: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

type Registry = Mutex<HashMap<(String, String), Weak<RateLimiter>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The limiter for this API base and key, shared with every live client that uses them. When
/// clients disagree on the rate, the most recently created one wins.
pub(crate) fn shared(api_url: &str, api_key: &str, per_second: f64) -> Arc<RateLimiter> {
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    // Forget limiters whose clients are all gone, so the map does not grow with test runs.
    map.retain(|_, limiter| limiter.strong_count() > 0);
    let key = (api_url.to_owned(), api_key.to_owned());
    if let Some(limiter) = map.get(&key).and_then(Weak::upgrade) {
        limiter.set_rate(per_second);
        return limiter;
    }
    let limiter = Arc::new(RateLimiter::new(per_second));
    map.insert(key, Arc::downgrade(&limiter));
    limiter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn evenly_spaced_so_no_one_second_window_exceeds_the_rate() {
        let limiter = RateLimiter::new(5.0);
        let start = Instant::now();
        let mut sent = vec![];
        for _ in 0..15 {
            limiter.acquire().await;
            sent.push(start.elapsed());
        }
        // The first at once, then one every 200 ms: no saved-up burst.
        assert_eq!(start.elapsed(), Duration::from_millis(14 * 200));
        for w in 0..3u64 {
            let window = Duration::from_secs(w)..Duration::from_secs(w + 1);
            let n = sent.iter().filter(|t| window.contains(t)).count();
            assert!(n <= 5, "{n} calls in second {w}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_budget() {
        let limiter = Arc::new(RateLimiter::new(10.0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // One at once, then 29 more at 100 ms each.
        assert_eq!(start.elapsed(), Duration::from_millis(2900));
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rate_spaces_every_call() {
        let limiter = RateLimiter::new(0.5);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_saves_up_nothing() {
        let limiter = RateLimiter::new(2.0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
        }
        // A minute idle saves no burst: the first at once, then 500 ms apart.
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_pauses_everyone() {
        let limiter = RateLimiter::new(100.0);
        limiter.hold_for(Duration::from_secs(1));
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(start.elapsed() < Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn registry_shares_by_url_and_key() {
        let a = shared("http://x/v1/api", "key-registry-test", 3.0);
        let b = shared("http://x/v1/api", "key-registry-test", 3.0);
        let c = shared("http://y/v1/api", "key-registry-test", 3.0);
        let d = shared("http://x/v1/api", "other-key-registry-test", 3.0);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(!Arc::ptr_eq(&a, &d));
        drop((a, b));
        let e = shared("http://x/v1/api", "key-registry-test", 3.0);
        assert_eq!(Arc::strong_count(&e), 1);
    }
}
