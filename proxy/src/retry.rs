//! Retries: which failed attempts a route tries again, and the budget that keeps retries from
//! multiplying an outage (linkerd2-proxy's model): over the last 10 seconds, retries may add at
//! most `budget_percent` of the route's requests, plus `min_per_second` so a quiet route can
//! still retry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::StatusCode;
use sluice_config::Retries;

use crate::error::ProxyError;

/// Request bodies up to this size are held in memory so a retry can send them again; a
/// larger body, or one of unknown length (chunked), is sent once, without retries.
pub const RETRY_MAX_BODY: u64 = 64 * 1024;

/// The sliding window the budget is counted over.
const WINDOW_SECONDS: u64 = 10;

/// A route's retry budget. Lock-free: one-second slots of atomic counters, reused round-robin.
/// Slots are reset by whichever request first enters a new second; a request racing that
/// reset may be counted in the old second, which the budget tolerates (it is a rate limit,
/// not an invoice).
#[derive(Debug)]
pub struct RetryBudget {
    /// Retries allowed per request, `budget_percent / 100`.
    ratio: f64,
    /// Retries allowed over the window whatever the traffic.
    reserve: f64,
    epoch: Instant,
    slots: [Slot; WINDOW_SECONDS as usize],
}

#[derive(Debug, Default)]
struct Slot {
    /// The second (since `epoch`) the counts belong to, plus one (0: never used).
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    /// The budget of a route with `retries`.
    pub fn new(retries: &Retries) -> Self {
        Self {
            ratio: retries.budget_percent / 100.0,
            reserve: f64::from(retries.min_per_second) * WINDOW_SECONDS as f64,
            epoch: Instant::now(),
            slots: Default::default(),
        }
    }

    /// Counts a request of the route (its first attempt).
    #[inline]
    pub fn deposit(&self, now: Instant) {
        self.slot(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is spent.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let current = self.second(now);
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.slots {
            let second = slot.second.load(Ordering::Acquire);
            if second != 0 && second + WINDOW_SECONDS > current {
                requests += slot.requests.load(Ordering::Relaxed);
                retries += slot.retries.load(Ordering::Relaxed);
            }
        }
        if retries as f64 + 1.0 > self.reserve + self.ratio * requests as f64 {
            return false;
        }
        self.slot(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Seconds since the budget was made, plus one.
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() + 1
    }

    fn slot(&self, now: Instant) -> &Slot {
        let second = self.second(now);
        let slot = &self.slots[(second % WINDOW_SECONDS) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }
}

/// Whether an attempt that ended in `error` is retried under `retries`.
pub fn retries_error(retries: &Retries, error: &ProxyError) -> bool {
    match error {
        ProxyError::Connect(_) | ProxyError::ConnectTimeout | ProxyError::Tls(_) => {
            retries.on.connect_failure
        }
        ProxyError::Reset(_) => retries.on.reset,
        _ => false,
    }
}

/// Whether an attempt answered with `status` is retried under `retries`.
#[inline]
pub fn retries_status(retries: &Retries, status: StatusCode) -> bool {
    retries.on.status(status)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_config::RetryOn;

    use super::*;

    fn retries(budget_percent: f64, min_per_second: u32) -> Retries {
        Retries {
            attempts: 1,
            on: RetryOn::default(),
            budget_percent,
            min_per_second,
            methods: Vec::new(),
        }
    }

    #[test]
    fn retries_are_capped_at_the_budget_share() {
        let budget = RetryBudget::new(&retries(20.0, 0));
        let now = Instant::now();
        for _ in 0..1000 {
            budget.deposit(now);
        }
        let granted = (0..1000).filter(|_| budget.try_withdraw(now)).count();
        assert_eq!(granted, 200);
    }

    #[test]
    fn the_reserve_allows_retries_on_a_quiet_route() {
        let budget = RetryBudget::new(&retries(20.0, 1));
        let now = Instant::now();
        // 1 per second over 10 s, no requests deposited.
        let granted = (0..100).filter(|_| budget.try_withdraw(now)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let budget = RetryBudget::new(&retries(50.0, 0));
        let start = Instant::now();
        for _ in 0..100 {
            budget.deposit(start);
        }
        assert_eq!((0..100).filter(|_| budget.try_withdraw(start)).count(), 50);
        // 11 s later the deposits and withdrawals of the first second have expired.
        let later = start + Duration::from_secs(11);
        assert!(!budget.try_withdraw(later));
        for _ in 0..10 {
            budget.deposit(later);
        }
        assert_eq!((0..10).filter(|_| budget.try_withdraw(later)).count(), 5);
    }
}
