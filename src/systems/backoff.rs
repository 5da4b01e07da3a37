//! Spec 02: committed-write backoff — converge or fail loudly.
//!
//! A committed write carrying user intent is retried on **transient**
//! rejections (the basis moved) with exponential backoff for as long as a
//! retry window allows, and never on **permanent** ones (`receipt-exists`:
//! retrying would apply the event twice). When the window runs out the
//! write fails with a terminal [`CommitConvergenceError`] delivered to the
//! registered error handler: it is never silently dropped.
//!
//! Guarantees:
//! - One exponential curve, no immediate-retry special case: the delay
//!   before attempt N+1 is `step(N) = min(base · 2^(N−1), max_delay)`. The
//!   defaults give step(1..=3) < 5 ms, step(6) = 25 ms, step(7) = 50 ms,
//!   step(8) = 100 ms and step(20) = max_delay.
//! - Jitter only shortens: `delay · (1 − jitter · r)`, `r` in [0, 1) drawn
//!   from the run's seeded chooser at [`JITTER_DRAW`] (0 outside a run).
//! - A retry is scheduled only if it would start within the window measured
//!   from the first attempt; window 0 means the first transient rejection
//!   is terminal.
//! - Permanent rejections end the write at once and are kept as telemetry
//!   records naming the reason.
//! - Policies from configuration are validated: negative, NaN, infinite or
//!   absurdly large values are rejected with an error naming the field;
//!   jitter is clamped to [0, 1], `max_delay` raised to `base_delay`, and a
//!   zero base raised to 1 µs (a zero delay would retry without simulated
//!   time passing).
//!
//! Every attempt, its outcome and every delay are recorded as
//! [`RetryEvent`]s with simulated times (D11: attempts within the window,
//! permanent rejections never retried, nominal curve).
//!
//! [`RetryBugs`] switches on spec 02's historical bugs for the known-bug
//! catalogue; every switch is off by default.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::{choose_between, clock, Site};
use serde::{Deserialize, Serialize};

use super::record::{lock_recovering, Recorder};

/// The jitter draw `r`, in units of 2^-32.
pub const JITTER_DRAW: Site = Site::value("backoff.jitter");

/// Default base delay: 25 ms / 32, so that step(6) is exactly 25 ms.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_nanos(781_250);
/// Default cap on one delay.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Default jitter fraction.
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default retry window.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(30);
/// Smallest base delay a configuration may give.
pub const MIN_BASE_DELAY: Duration = Duration::from_micros(1);
/// Largest value any duration field may take (one day).
pub const MAX_CONFIG_MS: f64 = 86_400_000.0;

/// How a committed write backs off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// step(1).
    pub base_delay: Duration,
    /// Cap on any one delay.
    pub max_delay: Duration,
    /// Fraction in [0, 1] by which jitter may shorten a delay.
    pub jitter: f64,
    /// How long after the first attempt retries may still start.
    pub retry_window: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            jitter: DEFAULT_JITTER,
            retry_window: DEFAULT_RETRY_WINDOW,
        }
    }
}

impl BackoffPolicy {
    /// `step(n)` with no jitter: `min(base · 2^(n−1), max_delay)`; `n` = 0
    /// counts as 1.
    pub fn nominal_delay(&self, step: u32) -> Duration {
        let doublings = step.max(1) - 1;
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// `step(n)` shortened by jitter draw `r` (clamped to [0, 1)).
    pub fn delay_with_draw(&self, step: u32, r: f64) -> Duration {
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let keep = 1.0 - self.jitter.clamp(0.0, 1.0) * r;
        self.nominal_delay(step).mul_f64(keep.clamp(0.0, 1.0))
    }

    /// `step(n)` with jitter drawn from the run's chooser.
    pub fn delay(&self, step: u32) -> Duration {
        if self.jitter <= 0.0 {
            return self.nominal_delay(step);
        }
        const SCALE: u64 = 1 << 32;
        let r = choose_between(&JITTER_DRAW, 0, SCALE - 1) as f64 / SCALE as f64;
        self.delay_with_draw(step, r)
    }

    /// A policy from configuration (see the module notes for the rules).
    pub fn from_config(config: &BackoffConfig) -> Result<BackoffPolicy, BackoffConfigError> {
        let defaults = BackoffPolicy::default();
        let ms = |field: &'static str, value: Option<f64>, default: Duration| {
            value.map_or(Ok(default), |v| {
                check_number(field, v, MAX_CONFIG_MS).map(|v| Duration::from_secs_f64(v / 1000.0))
            })
        };
        let base_delay =
            ms("base_delay_ms", config.base_delay_ms, defaults.base_delay)?.max(MIN_BASE_DELAY);
        let max_delay =
            ms("max_delay_ms", config.max_delay_ms, defaults.max_delay)?.max(base_delay);
        let retry_window = ms(
            "retry_window_ms",
            config.retry_window_ms,
            defaults.retry_window,
        )?;
        let jitter = match config.jitter {
            None => defaults.jitter,
            Some(j) => check_number("jitter", j, f64::MAX)?.min(1.0),
        };
        Ok(BackoffPolicy {
            base_delay,
            max_delay,
            jitter,
            retry_window,
        })
    }
}

fn check_number(field: &'static str, value: f64, max: f64) -> Result<f64, BackoffConfigError> {
    if value.is_nan() {
        Err(BackoffConfigError::NotANumber { field })
    } else if value < 0.0 {
        Err(BackoffConfigError::Negative { field, value })
    } else if value > max {
        Err(BackoffConfigError::TooLarge { field, value })
    } else {
        Ok(value)
    }
}

/// A backoff policy as configuration gives it (absent fields: defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Base delay, ms.
    pub base_delay_ms: Option<f64>,
    /// Cap on one delay, ms.
    pub max_delay_ms: Option<f64>,
    /// Jitter fraction (clamped to [0, 1]).
    pub jitter: Option<f64>,
    /// Retry window, ms.
    pub retry_window_ms: Option<f64>,
}

/// A configuration value the policy cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffConfigError {
    /// A negative value.
    #[error("backoff.{field} must not be negative, got {value}")]
    Negative {
        /// Field name.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// NaN.
    #[error("backoff.{field} must be a number, got NaN")]
    NotANumber {
        /// Field name.
        field: &'static str,
    },
    /// Infinite or beyond the sane range.
    #[error("backoff.{field} is too large: {value} (at most one day)")]
    TooLarge {
        /// Field name.
        field: &'static str,
        /// The value given.
        value: f64,
    },
}

/// Retries the historical loop allowed before it gave up (spec 02: "a
/// fixed budget of 5 retries dropped writes under a burst of 8
/// conflicts").
pub const FIXED_RETRY_BUDGET: u32 = 5;

/// Spec 02's historical bugs, reproducible on demand. All off (the
/// default) is the correct loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryBugs {
    /// Give up after [`FIXED_RETRY_BUDGET`] retries whatever the retry
    /// window says, and give up silently: no terminal error is recorded
    /// and the registered error handler is not called, so a caller that
    /// learns of terminal errors through it (spec 02) never hears of the
    /// write again. The loop still returns the error value it has, as the
    /// historical loop did to an event dispatcher that discarded it.
    pub fixed_retry_budget: bool,
    /// Treat a permanent rejection like a transient one: back off and
    /// re-run the handler, although the server said the write must never
    /// be retried (`receipt-exists`).
    pub permanent_retried: bool,
}

/// How the server turned an attempt down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Retry against fresh state (e.g. a conflict: the basis moved).
    Transient {
        /// Why.
        reason: String,
    },
    /// Never retry (e.g. `receipt-exists`).
    Permanent {
        /// The stable reason name.
        reason: String,
    },
}

/// The write did not converge within the retry window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write {write_id} did not converge: {attempts} attempt(s) in {elapsed:?}, last rejection: {last_reason}")]
pub struct CommitConvergenceError {
    /// The write (its event id).
    pub write_id: u64,
    /// Attempts made.
    pub attempts: u32,
    /// Time from the first attempt to giving up.
    pub elapsed: Duration,
    /// The last transient rejection.
    pub last_reason: String,
}

/// A write was rejected for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write {write_id} rejected permanently: {reason}")]
pub struct PermanentRejection {
    /// The write.
    pub write_id: u64,
    /// The stable reason name.
    pub reason: String,
}

/// How a committed write ended without applying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Terminal: retries ran out of window (also sent to the error handler).
    #[error(transparent)]
    Convergence(#[from] CommitConvergenceError),
    /// Rejected for good (also kept as telemetry).
    #[error(transparent)]
    Permanent(#[from] PermanentRejection),
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The write applied.
    Applied,
    /// Rejected, will be retried if the window allows.
    Transient(String),
    /// Rejected for good.
    Permanent(String),
}

/// What the retry loop did, for checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryEvent {
    /// Attempt `attempt` (1-based) of write `write_id` started.
    AttemptStarted {
        /// The write.
        write_id: u64,
        /// Attempt number.
        attempt: u32,
    },
    /// It ended.
    AttemptEnded {
        /// The write.
        write_id: u64,
        /// Attempt number.
        attempt: u32,
        /// How.
        outcome: AttemptOutcome,
    },
    /// The loop waits `delay` before the next attempt.
    Backoff {
        /// The write.
        write_id: u64,
        /// The attempt that was rejected.
        attempt: u32,
        /// The delay.
        delay: Duration,
    },
    /// The write failed terminally.
    Terminal(CommitConvergenceError),
}

/// Receives terminal errors.
pub type ErrorHandler = Arc<dyn Fn(&CommitConvergenceError) + Send + Sync>;

/// Runs committed writes with the policy's backoff.
#[derive(Clone)]
pub struct RetryLoop {
    policy: BackoffPolicy,
    error_handler: Option<ErrorHandler>,
    telemetry: Arc<Mutex<Vec<PermanentRejection>>>,
    recorder: Recorder<RetryEvent>,
    bugs: RetryBugs,
}

impl RetryLoop {
    /// A loop with `policy`, no error handler yet.
    pub fn new(policy: BackoffPolicy) -> RetryLoop {
        RetryLoop {
            policy,
            error_handler: None,
            telemetry: Arc::default(),
            recorder: Recorder::new(),
            bugs: RetryBugs::default(),
        }
    }

    /// Reproduce the historical bugs switched on in `bugs` (for the
    /// known-bug catalogue; the default is the correct loop).
    pub fn with_bugs(mut self, bugs: RetryBugs) -> RetryLoop {
        self.bugs = bugs;
        self
    }

    /// Deliver terminal errors to `handler`.
    pub fn on_terminal_error(
        mut self,
        handler: impl Fn(&CommitConvergenceError) + Send + Sync + 'static,
    ) -> RetryLoop {
        self.error_handler = Some(Arc::new(handler));
        self
    }

    /// Record into `recorder`.
    pub fn recording_into(mut self, recorder: Recorder<RetryEvent>) -> RetryLoop {
        self.recorder = recorder;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Permanent rejections seen so far (telemetry).
    pub fn permanent_rejections(&self) -> Vec<PermanentRejection> {
        lock_recovering(&self.telemetry).clone()
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<RetryEvent> {
        self.recorder.events()
    }

    /// Run write `write_id`: call `attempt(n)` for n = 1, 2, … until it
    /// applies, is rejected for good, or the window closes.
    pub async fn run<T, F, Fut>(&self, write_id: u64, mut attempt: F) -> Result<T, WriteError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Rejection>>,
    {
        let start = clock::now();
        let mut n: u32 = 0;
        loop {
            n += 1;
            self.recorder.record(RetryEvent::AttemptStarted {
                write_id,
                attempt: n,
            });
            let reason = match attempt(n).await {
                Ok(value) => {
                    self.ended(write_id, n, AttemptOutcome::Applied);
                    return Ok(value);
                }
                Err(Rejection::Permanent { reason }) if self.bugs.permanent_retried => {
                    self.ended(write_id, n, AttemptOutcome::Permanent(reason.clone()));
                    self.backoff(write_id, n, self.policy.delay(n)).await;
                    continue;
                }
                Err(Rejection::Permanent { reason }) => {
                    self.ended(write_id, n, AttemptOutcome::Permanent(reason.clone()));
                    let rejection = PermanentRejection { write_id, reason };
                    lock_recovering(&self.telemetry).push(rejection.clone());
                    return Err(rejection.into());
                }
                Err(Rejection::Transient { reason }) => reason,
            };
            self.ended(write_id, n, AttemptOutcome::Transient(reason.clone()));
            let delay = self.policy.delay(n);
            let elapsed = clock::now().since(start);
            let error = CommitConvergenceError {
                write_id,
                attempts: n,
                elapsed,
                last_reason: reason,
            };
            if self.bugs.fixed_retry_budget {
                // The historical bug: a budget instead of the window, and
                // out of budget, out of mind.
                if n > FIXED_RETRY_BUDGET {
                    return Err(error.into());
                }
            } else if elapsed.saturating_add(delay) >= self.policy.retry_window {
                self.recorder.record(RetryEvent::Terminal(error.clone()));
                if let Some(handler) = &self.error_handler {
                    handler(&error);
                }
                return Err(error.into());
            }
            self.backoff(write_id, n, delay).await;
        }
    }

    async fn backoff(&self, write_id: u64, attempt: u32, delay: Duration) {
        self.recorder.record(RetryEvent::Backoff {
            write_id,
            attempt,
            delay,
        });
        clock::sleep(delay).await;
    }

    fn ended(&self, write_id: u64, attempt: u32, outcome: AttemptOutcome) {
        self.recorder.record(RetryEvent::AttemptEnded {
            write_id,
            attempt,
            outcome,
        });
    }
}
