//! D11 retry-bounded: attempts stay within the retry window, permanent
//! rejections are never retried, the nominal backoff curve holds — and a
//! write does not give up while its window is still open (spec 02: converge
//! or fail loudly, never a fixed budget).
//!
//! Verifies, per write, through [`crate::model::backoff::WriteRetries`]:
//! attempts numbered 1, 2, 3, … one at a time; the first not delayed; each
//! retry follows a transient rejection or an unknown result, decided inside
//! the window, after sleeping a delay in `[step(n)·(1−jitter), step(n)]`
//! and really sleeping it; nothing after a permanent rejection or a commit;
//! a failure right after a transient rejection only once the window is
//! exhausted. Malformed attempt records (no such open write, a result for
//! an attempt not in flight, no declared policy) are reported here.
//!
//! Does not verify: whether a rejection was justified, what the handler
//! computed, how long a commit attempt took.

use crate::history::{AttemptResult, BackoffPolicy, OpId, Outcome, SimTime};
use crate::model::backoff::{RetryBreach, WriteRetries};
use crate::violation::{InvariantId, Millis, Secs};
use crate::window_map::WindowMap;

use super::Report;

/// D11's state: the policies declared (the last one is in force) and each
/// open write's retries with the index of the policy it runs under.
#[derive(Debug, Default)]
pub(crate) struct RetryBounded {
    policies: Vec<BackoffPolicy>,
    writes: WindowMap<(u32, WriteRetries)>,
    missing_policy_reported: bool,
}

impl RetryBounded {
    pub(crate) fn on_policy(&mut self, time: SimTime, policy: BackoffPolicy, report: &mut Report) {
        if !policy.is_valid() {
            report.add(
                InvariantId::D11,
                time,
                vec![],
                format!(
                    "the declared backoff policy is invalid (jitter {}, base {}, max {})",
                    policy.jitter,
                    Millis(policy.base_delay),
                    Millis(policy.max_delay)
                ),
            );
        }
        self.policies.push(policy);
    }

    fn policy(&self, index: u32) -> Option<&BackoffPolicy> {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.policies.get(index))
    }

    pub(crate) fn on_attempt_started(
        &mut self,
        time: SimTime,
        op: OpId,
        attempt: u32,
        delay_before: SimTime,
        open_write: bool,
        report: &mut Report,
    ) {
        if !open_write {
            report.add(
                InvariantId::D11,
                time,
                vec![op],
                format!(
                    "malformed history: attempt {attempt} of op {op}, which is not an open write"
                ),
            );
            return;
        }
        let Some(in_force) = self.policies.len().checked_sub(1) else {
            if !self.missing_policy_reported {
                self.missing_policy_reported = true;
                report.add(
                    InvariantId::D11,
                    time,
                    vec![op],
                    "commit attempts are recorded without a declared backoff policy: the curve cannot be checked".to_string(),
                );
            }
            return;
        };
        let found = |breach| explain(time, op, attempt, breach, report);
        match self.writes.get_mut(op) {
            Some((index, write)) => {
                let policy = usize::try_from(*index)
                    .ok()
                    .and_then(|index| self.policies.get(index));
                if let Some(policy) = policy {
                    write.start_attempt(policy, time, attempt, delay_before, found);
                }
            }
            None => {
                let index = u32::try_from(in_force).unwrap_or(u32::MAX);
                if let Some(policy) = self.policy(index) {
                    let write =
                        WriteRetries::first_attempt(policy, time, attempt, delay_before, found);
                    self.writes.insert(op, (index, write));
                }
            }
        }
    }

    pub(crate) fn on_attempt_ended(
        &mut self,
        time: SimTime,
        op: OpId,
        attempt: u32,
        result: &AttemptResult,
        report: &mut Report,
    ) {
        let breach = match self.writes.get_mut(op) {
            Some((_, write)) => write.end_attempt(time, attempt, result),
            None if self.policies.is_empty() => None,
            None => Some(RetryBreach::ResultForNoAttempt { attempt }),
        };
        if let Some(breach) = breach {
            explain(time, op, attempt, breach, report);
        }
    }

    pub(crate) fn on_complete(
        &mut self,
        time: SimTime,
        op: OpId,
        outcome: &Outcome,
        report: &mut Report,
    ) {
        let Some((index, write)) = self.writes.remove(op) else {
            return;
        };
        if let (Outcome::Failed { .. }, Some(policy)) = (outcome, self.policy(index)) {
            if let Some(breach) = write.failed(policy) {
                explain(time, op, write.attempts(), breach, report);
            }
        }
    }
}

/// Report one breach (cold: correct writes break nothing).
#[cold]
fn explain(time: SimTime, op: OpId, attempt: u32, breach: RetryBreach, report: &mut Report) {
    let message = match breach {
        RetryBreach::AttemptOutOfSequence { expected, got } => {
            format!("op {op} records attempt {got} where attempt {expected} comes next")
        }
        RetryBreach::AttemptWhilePreviousInFlight { in_flight } => {
            format!("op {op} starts attempt {attempt} while attempt {in_flight} has no result yet")
        }
        RetryBreach::ResultForNoAttempt { attempt } => {
            format!("malformed history: op {op} records a result for attempt {attempt}, which is not in flight")
        }
        RetryBreach::FirstAttemptDelayed { delay } => {
            format!("op {op}'s first attempt claims a backoff delay of {}", Millis(delay))
        }
        RetryBreach::RetryAfterPermanent { rejected_at } => format!(
            "op {op} retries (attempt {attempt}) after a permanent rejection at {}: permanent rejections are never retried",
            Secs(rejected_at)
        ),
        RetryBreach::RetryAfterCommit { committed_at } => format!(
            "op {op} retries (attempt {attempt}) after it was committed at {}",
            Secs(committed_at)
        ),
        RetryBreach::RetryOutsideWindow {
            first_started,
            decided_at,
            window,
        } => format!(
            "op {op} retries (attempt {attempt}) after a rejection {} into its retry window of {}",
            Millis(decided_at.saturating_sub(first_started)),
            Millis(window)
        ),
        RetryBreach::DelayOffCurve { delay, min, max } => format!(
            "op {op} slept {} before attempt {attempt}; the nominal curve allows {} to {}",
            Millis(delay),
            Millis(min),
            Millis(max)
        ),
        RetryBreach::DidNotSleep {
            previous_result_at,
            delay,
        } => format!(
            "op {op} starts attempt {attempt} at {}, sooner than its previous result at {} plus the {} it claims to have slept",
            Secs(time),
            Secs(previous_result_at),
            Millis(delay)
        ),
        RetryBreach::GaveUpInsideWindow {
            rejected_at,
            first_started,
            window,
        } => format!(
            "op {op} fails after a transient rejection {} into its retry window of {}: a write must converge or exhaust its window",
            Millis(rejected_at.saturating_sub(first_started)),
            Millis(window)
        ),
        // Reported once, when the policy is declared.
        RetryBreach::InvalidPolicy => return,
    };
    report.add(InvariantId::D11, time, vec![op], message);
}
