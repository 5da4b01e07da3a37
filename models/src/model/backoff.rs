//! The committed-write backoff contract (spec 02) for one write.
//!
//! A write makes attempts 1, 2, 3, …; attempt N+1 may only follow a
//! transient rejection (or an unknown result) of attempt N, decided while
//! the time since the first attempt is within the retry window, after
//! sleeping a delay on the nominal curve: `step(N) = min(base · 2^(N−1),
//! max)`, shortened by at most the jitter fraction. A permanent rejection
//! or a commit ends the attempts. A write that fails after a transient
//! rejection must have exhausted its window ("converge or fail loudly"):
//! even the longest next delay would have started the next attempt outside
//! it.
//!
//! Not modelled: what the handler computes, the network, the server.

use crate::history::{AttemptResult, BackoffPolicy, RejectionClass, SimTime};

impl BackoffPolicy {
    /// `step(n)`: the nominal delay (no jitter) before attempt `n + 1`.
    /// `step(0)` is 0: the first attempt is not delayed.
    pub fn nominal_step(&self, n: u32) -> SimTime {
        if n == 0 {
            return 0;
        }
        let doublings = n - 1;
        let step = if doublings >= 64 {
            u64::MAX
        } else {
            self.base_delay.saturating_mul(1_u64 << doublings)
        };
        step.min(self.max_delay)
    }

    /// The inclusive range the delay before attempt `n + 1` must lie in:
    /// `[⌊step(n) · (1 − jitter)⌋, step(n)]`.
    pub fn delay_range(&self, n: u32) -> (SimTime, SimTime) {
        let step = self.nominal_step(n);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        // `as` on a non-negative finite f64 saturates: no overflow.
        let min = (step as f64 * (1.0 - jitter)).floor() as u64;
        (min.min(step), step)
    }

    /// Whether the policy's numbers are usable (jitter in `0..=1`).
    pub fn is_valid(&self) -> bool {
        self.jitter.is_finite()
            && (0.0..=1.0).contains(&self.jitter)
            && self.base_delay <= self.max_delay
    }

    /// Whether a retry decided at `decided_at` is allowed for a write whose
    /// first attempt started at `first_started`.
    pub fn within_window(&self, first_started: SimTime, decided_at: SimTime) -> bool {
        decided_at.saturating_sub(first_started) <= self.retry_window
    }
}

/// A break of the backoff contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryBreach {
    /// Attempt numbers must go 1, 2, 3, …
    AttemptOutOfSequence {
        /// The number expected next.
        expected: u32,
        /// The number recorded.
        got: u32,
    },
    /// An attempt started while the previous one had no result yet.
    AttemptWhilePreviousInFlight {
        /// The attempt still in flight.
        in_flight: u32,
    },
    /// A result for an attempt that is not the one in flight.
    ResultForNoAttempt {
        /// The attempt named.
        attempt: u32,
    },
    /// The first attempt claims a backoff delay.
    FirstAttemptDelayed {
        /// The delay claimed.
        delay: SimTime,
    },
    /// An attempt after a permanent rejection.
    RetryAfterPermanent {
        /// When the permanent rejection arrived.
        rejected_at: SimTime,
    },
    /// An attempt after the write committed.
    RetryAfterCommit {
        /// When the commit was acknowledged.
        committed_at: SimTime,
    },
    /// A retry decided after the window closed.
    RetryOutsideWindow {
        /// When the first attempt started.
        first_started: SimTime,
        /// When the retry was decided (the previous result).
        decided_at: SimTime,
        /// The window.
        window: SimTime,
    },
    /// The delay slept is off the nominal curve.
    DelayOffCurve {
        /// The delay recorded.
        delay: SimTime,
        /// The allowed minimum.
        min: SimTime,
        /// The allowed maximum, `step(n)`.
        max: SimTime,
    },
    /// The attempt started sooner than the previous result plus the delay.
    DidNotSleep {
        /// When the previous result arrived.
        previous_result_at: SimTime,
        /// The delay claimed.
        delay: SimTime,
    },
    /// The write failed after a transient rejection inside the window.
    GaveUpInsideWindow {
        /// When the last transient rejection arrived.
        rejected_at: SimTime,
        /// When the first attempt started.
        first_started: SimTime,
        /// The window.
        window: SimTime,
    },
    /// The policy itself is unusable.
    InvalidPolicy,
}

/// How the last attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastResult {
    /// Still in flight.
    InFlight,
    /// Transient rejection or unknown: a retry is allowed (inside the window).
    Retryable { at: SimTime, transient: bool },
    /// Permanent rejection: no retry.
    Permanent { at: SimTime },
    /// Committed: done.
    Committed { at: SimTime },
}

/// The retry state of one write. The policy it runs under (the one in
/// force at its first attempt) is kept by the caller and passed to each
/// step, so that a table of writes does not hold a copy per write.
#[derive(Debug, Clone)]
pub struct WriteRetries {
    first_started: SimTime,
    attempts: u32,
    last: LastResult,
}

impl WriteRetries {
    /// A write whose first attempt starts at `time` with `delay_before`,
    /// under `policy`; each breach goes to `found`, in order.
    #[inline]
    pub fn first_attempt(
        policy: &BackoffPolicy,
        time: SimTime,
        attempt: u32,
        delay_before: SimTime,
        mut found: impl FnMut(RetryBreach),
    ) -> Self {
        if !policy.is_valid() {
            found(RetryBreach::InvalidPolicy);
        }
        if attempt != 1 {
            found(RetryBreach::AttemptOutOfSequence {
                expected: 1,
                got: attempt,
            });
        }
        if delay_before != 0 {
            found(RetryBreach::FirstAttemptDelayed {
                delay: delay_before,
            });
        }
        Self {
            first_started: time,
            attempts: 1,
            last: LastResult::InFlight,
        }
    }

    /// Attempt `attempt` starts at `time` after sleeping `delay_before`;
    /// each breach goes to `found`, in order.
    pub fn start_attempt(
        &mut self,
        policy: &BackoffPolicy,
        time: SimTime,
        attempt: u32,
        delay_before: SimTime,
        mut found: impl FnMut(RetryBreach),
    ) {
        let expected = self.attempts.saturating_add(1);
        if attempt != expected {
            found(RetryBreach::AttemptOutOfSequence {
                expected,
                got: attempt,
            });
        }
        match self.last {
            LastResult::InFlight => found(RetryBreach::AttemptWhilePreviousInFlight {
                in_flight: self.attempts,
            }),
            LastResult::Permanent { at } => {
                found(RetryBreach::RetryAfterPermanent { rejected_at: at })
            }
            LastResult::Committed { at } => {
                found(RetryBreach::RetryAfterCommit { committed_at: at })
            }
            LastResult::Retryable { at, .. } => {
                if !policy.within_window(self.first_started, at) {
                    found(RetryBreach::RetryOutsideWindow {
                        first_started: self.first_started,
                        decided_at: at,
                        window: policy.retry_window,
                    });
                }
                let (min, max) = policy.delay_range(self.attempts);
                if delay_before < min || delay_before > max {
                    found(RetryBreach::DelayOffCurve {
                        delay: delay_before,
                        min,
                        max,
                    });
                }
                if time < at.saturating_add(delay_before) {
                    found(RetryBreach::DidNotSleep {
                        previous_result_at: at,
                        delay: delay_before,
                    });
                }
            }
        }
        self.attempts = self.attempts.max(attempt);
        self.last = LastResult::InFlight;
    }

    /// Attempt `attempt`'s result arrived at `time`.
    #[inline]
    pub fn end_attempt(
        &mut self,
        time: SimTime,
        attempt: u32,
        result: &AttemptResult,
    ) -> Option<RetryBreach> {
        if attempt != self.attempts || self.last != LastResult::InFlight {
            return Some(RetryBreach::ResultForNoAttempt { attempt });
        }
        self.last = match result {
            AttemptResult::Committed { .. } => LastResult::Committed { at: time },
            AttemptResult::Rejected {
                class: RejectionClass::Permanent,
                ..
            } => LastResult::Permanent { at: time },
            AttemptResult::Rejected {
                class: RejectionClass::Transient,
                ..
            } => LastResult::Retryable {
                at: time,
                transient: true,
            },
            AttemptResult::Unknown => LastResult::Retryable {
                at: time,
                transient: false,
            },
        };
        None
    }

    /// The write ended with a failure: was giving up allowed?
    pub fn failed(&self, policy: &BackoffPolicy) -> Option<RetryBreach> {
        match self.last {
            // Giving up was premature only if even the longest next delay
            // (the nominal step, un-jittered) would have started the next
            // attempt inside the window: a loop may decide by the delay it
            // actually drew, which the history does not show.
            LastResult::Retryable {
                at,
                transient: true,
            } if policy.within_window(
                self.first_started,
                at.saturating_add(policy.nominal_step(self.attempts)),
            ) =>
            {
                Some(RetryBreach::GaveUpInsideWindow {
                    rejected_at: at,
                    first_started: self.first_started,
                    window: policy.retry_window,
                })
            }
            _ => None,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: SimTime = 1_000_000;

    fn spec_policy() -> BackoffPolicy {
        // base = 25 ms / 2^5 so that step(6) = 25 ms.
        BackoffPolicy {
            base_delay: 781_250,
            max_delay: 30_000 * MS,
            jitter: 0.5,
            retry_window: 40 * MS,
        }
    }

    fn first(policy: &BackoffPolicy) -> (WriteRetries, Vec<RetryBreach>) {
        let mut found = Vec::new();
        let write = WriteRetries::first_attempt(policy, 0, 1, 0, |breach| found.push(breach));
        (write, found)
    }

    fn start(
        write: &mut WriteRetries,
        policy: &BackoffPolicy,
        time: SimTime,
        attempt: u32,
        delay: SimTime,
    ) -> Vec<RetryBreach> {
        let mut found = Vec::new();
        write.start_attempt(policy, time, attempt, delay, |breach| found.push(breach));
        found
    }

    #[test]
    fn nominal_curve_matches_spec_02() {
        let policy = spec_policy();
        for n in 1..=3 {
            assert!(policy.nominal_step(n) < 5 * MS, "step({n})");
        }
        assert_eq!(policy.nominal_step(6), 25 * MS);
        assert_eq!(policy.nominal_step(7), 50 * MS);
        assert_eq!(policy.nominal_step(8), 100 * MS);
        assert_eq!(policy.nominal_step(20), policy.max_delay);
        assert_eq!(policy.nominal_step(u32::MAX), policy.max_delay);
        assert_eq!(policy.nominal_step(0), 0);
        assert_eq!(policy.delay_range(6), (12_500_000, 25 * MS));
    }

    #[test]
    fn giving_up_is_premature_only_if_the_next_attempt_would_start_inside_the_window() {
        let policy = spec_policy();
        let transient = AttemptResult::Rejected {
            class: RejectionClass::Transient,
            reason: "conflict".into(),
        };
        // step(1) = 0.78 ms: a rejection at 39.5 ms leaves no room for a
        // retry that starts inside the 40 ms window.
        let (mut write, _) = first(&policy);
        write.end_attempt(39_500_000, 1, &transient);
        assert_eq!(write.failed(&policy), None);
        // At 39 ms the next attempt would start by 39.78 ms: too early to quit.
        let (mut write, _) = first(&policy);
        write.end_attempt(39 * MS, 1, &transient);
        assert!(matches!(
            write.failed(&policy),
            Some(RetryBreach::GaveUpInsideWindow { .. })
        ));
    }

    #[test]
    fn retries_inside_the_window_on_the_curve_are_accepted() {
        let policy = spec_policy();
        let (mut write, breaches) = first(&policy);
        assert!(breaches.is_empty());
        let conflict = AttemptResult::Rejected {
            class: RejectionClass::Transient,
            reason: "conflict".into(),
        };
        assert_eq!(write.end_attempt(MS, 1, &conflict), None);
        assert!(start(&mut write, &policy, 2 * MS, 2, 700_000).is_empty());
        assert_eq!(
            write.end_attempt(3 * MS, 2, &AttemptResult::Committed { commit_seq: 4 }),
            None
        );
        assert_eq!(
            write.failed(&policy),
            None,
            "a committed write never 'gave up'"
        );
    }

    #[test]
    fn each_breach_of_the_contract_is_named() {
        let policy = spec_policy();
        let permanent = AttemptResult::Rejected {
            class: RejectionClass::Permanent,
            reason: "receipt-exists".into(),
        };
        let (mut write, _) = first(&policy);
        write.end_attempt(MS, 1, &permanent);
        assert!(matches!(
            start(&mut write, &policy, 3 * MS, 2, 781_250)[..],
            [RetryBreach::RetryAfterPermanent {
                rejected_at: MS,
                ..
            }]
        ));

        let transient = AttemptResult::Rejected {
            class: RejectionClass::Transient,
            reason: "conflict".into(),
        };
        let (mut write, _) = first(&policy);
        write.end_attempt(MS, 1, &transient);
        assert_eq!(
            start(&mut write, &policy, 10 * MS, 2, 5 * MS),
            vec![RetryBreach::DelayOffCurve {
                delay: 5 * MS,
                min: 390_625,
                max: 781_250
            }]
        );
        write.end_attempt(41 * MS, 2, &transient);
        assert!(matches!(
            start(&mut write, &policy, 43 * MS, 3, 1_562_500)[..],
            [RetryBreach::RetryOutsideWindow { .. }]
        ));

        let (mut write, _) = first(&policy);
        write.end_attempt(MS, 1, &transient);
        assert!(matches!(
            write.failed(&policy),
            Some(RetryBreach::GaveUpInsideWindow { .. })
        ));
        assert_eq!(
            start(&mut write, &policy, MS + 1, 2, 781_250),
            vec![RetryBreach::DidNotSleep {
                previous_result_at: MS,
                delay: 781_250
            }]
        );
    }
}
