//! A backend registration's health, as its calls show it.
//!
//! Model: every finished attempt is a success or a failure. A success
//! resets the consecutive-failure counter and makes the registration
//! `Healthy`; a failure increments it, becomes the last error, and makes
//! the registration `Degraded`, or `Unhealthy` once the counter reaches
//! the threshold. The last error stays after a success (it is the last
//! error seen, not a current one).

/// Consecutive failures after which a registration is `Unhealthy`.
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;

/// Health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The last attempt succeeded (or none was made yet).
    Healthy,
    /// Failing, fewer than the threshold in a row.
    Degraded,
    /// Failing at least the threshold in a row.
    Unhealthy,
}

/// A registration's health and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The state.
    pub state: Health,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The latest failure's error, if any attempt ever failed.
    pub last_error: Option<String>,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed.
    pub failed: u64,
}

/// Updates a [`HealthReport`] from attempt results.
#[derive(Debug, Clone)]
pub(crate) struct HealthTracker {
    report: HealthReport,
    unhealthy_after: u32,
}

impl HealthTracker {
    /// A healthy registration that turns `Unhealthy` after
    /// `unhealthy_after` (at least 1) consecutive failures.
    pub(crate) fn new(unhealthy_after: u32) -> HealthTracker {
        HealthTracker {
            report: HealthReport {
                state: Health::Healthy,
                consecutive_failures: 0,
                last_error: None,
                succeeded: 0,
                failed: 0,
            },
            unhealthy_after: unhealthy_after.max(1),
        }
    }

    /// An attempt succeeded.
    pub(crate) fn succeeded(&mut self) {
        self.report.succeeded += 1;
        self.report.consecutive_failures = 0;
        self.report.state = Health::Healthy;
    }

    /// An attempt failed with `error`.
    pub(crate) fn failed(&mut self, error: &str) {
        let r = &mut self.report;
        r.failed += 1;
        r.consecutive_failures = r.consecutive_failures.saturating_add(1);
        r.last_error = Some(error.to_string());
        r.state = if r.consecutive_failures >= self.unhealthy_after {
            Health::Unhealthy
        } else {
            Health::Degraded
        };
    }

    /// The current report.
    pub(crate) fn report(&self) -> HealthReport {
        self.report.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_degrade_then_make_unhealthy_and_a_success_heals() {
        let mut h = HealthTracker::new(3);
        assert_eq!(h.report().state, Health::Healthy);
        h.failed("busy");
        assert_eq!(h.report().state, Health::Degraded);
        h.failed("busy");
        h.failed("down");
        let r = h.report();
        assert_eq!(
            (r.state, r.consecutive_failures, r.last_error.as_deref()),
            (Health::Unhealthy, 3, Some("down"))
        );
        h.succeeded();
        let r = h.report();
        assert_eq!((r.state, r.consecutive_failures), (Health::Healthy, 0));
        assert_eq!((r.succeeded, r.failed), (1, 3));
        assert_eq!(r.last_error.as_deref(), Some("down"));
    }
}
