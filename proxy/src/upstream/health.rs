//! Passive health (outlier detection): endpoints failing in a row are ejected for a while.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sluice_config::OutlierDetection;

/// The outlier state of one endpoint. Lock-free: read on every request.
#[derive(Debug)]
pub(super) struct Health {
    settings: OutlierDetection,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`epoch`] until which the endpoint is ejected (0: never ejected).
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

/// What a recorded failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Still in service.
    Healthy,
    /// Ejected by this failure, for this long.
    Ejected(Duration),
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

impl Health {
    /// A healthy endpoint with these settings.
    pub(super) fn new(settings: OutlierDetection) -> Self {
        epoch();
        Self {
            settings,
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }

    /// Whether the endpoint takes traffic at `now`.
    #[inline]
    pub(super) fn is_healthy(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || millis(now) >= until
    }

    /// A success resets the failure streak.
    #[inline]
    pub(super) fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A failure (connect error, reset, timeout, 5xx); ejects at the configured streak.
    /// The n-th ejection of an endpoint lasts n x `base_ejection_time`, capped at
    /// `max_ejection_time` (Envoy's rule).
    pub(super) fn record_failure(&self, now: Instant) -> Verdict {
        let limit = self.settings.consecutive_failures;
        if limit == 0 {
            return Verdict::Healthy;
        }
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < limit || !self.is_healthy(now) {
            return Verdict::Healthy;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = self
            .settings
            .base_ejection_time
            .saturating_mul(n)
            .min(self.settings.max_ejection_time);
        let until = millis(now + duration).max(1);
        self.ejected_until.store(until, Ordering::Relaxed);
        Verdict::Ejected(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(failures: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_failures: failures,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
        }
    }

    #[test]
    fn ejects_after_a_streak_and_returns_after_the_ejection_time() {
        let health = Health::new(settings(3));
        let t0 = Instant::now();
        assert_eq!(health.record_failure(t0), Verdict::Healthy);
        health.record_success();
        assert_eq!(health.record_failure(t0), Verdict::Healthy);
        assert_eq!(health.record_failure(t0), Verdict::Healthy);
        assert_eq!(
            health.record_failure(t0),
            Verdict::Ejected(Duration::from_secs(10))
        );
        assert!(!health.is_healthy(t0 + Duration::from_secs(9)));
        assert!(health.is_healthy(t0 + Duration::from_secs(11)));
        let t1 = t0 + Duration::from_secs(11);
        for _ in 0..2 {
            assert_eq!(health.record_failure(t1), Verdict::Healthy);
        }
        assert_eq!(
            health.record_failure(t1),
            Verdict::Ejected(Duration::from_secs(20))
        );
        let t2 = t1 + Duration::from_secs(21);
        for _ in 0..2 {
            health.record_failure(t2);
        }
        assert_eq!(
            health.record_failure(t2),
            Verdict::Ejected(Duration::from_secs(25)),
            "capped"
        );
    }

    #[test]
    fn zero_turns_ejection_off() {
        let health = Health::new(settings(0));
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(health.record_failure(now), Verdict::Healthy);
        }
        assert!(health.is_healthy(now));
    }
}
