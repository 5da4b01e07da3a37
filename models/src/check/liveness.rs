//! L1 liveness: once faults stop (the `Heal` marker), all outstanding work
//! completes within the declared bound.
//!
//! Verifies, for every operation outstanding at heal start or invoked
//! after it, with `start = max(heal start, invocation)`:
//! - it completes by `start + bound`;
//! - when the system claims to resolve unknown outcomes
//!   (`resolves_unknown`), it does not end `Unknown(TimedOut)` during the
//!   heal phase (an unknown outcome is still outstanding work);
//!   `Unknown(CallerCrashed)` always counts as an ending;
//! - an operation that never completes is L1's when the history runs past
//!   its deadline without a `Quiescence` marker. With a quiescence marker
//!   it is D6's (silently dropped), and L1 stays silent to keep one
//!   diagnosis per fault.
//!
//! Does not verify: repairs (D9 at quiescence), anything before the heal
//! marker, histories without one.

use crate::history::{OpId, SimTime, UnknownReason};
use crate::violation::{InvariantId, Secs};

use super::op_lifecycle::{Ending, OpRecord};
use super::{Phases, Report};

/// The deadline of an op invoked at `invoked_at`, if a heal phase began.
fn deadline(phases: &Phases, invoked_at: SimTime) -> Option<(SimTime, SimTime, SimTime, bool)> {
    let (heal_at, bound, resolves_unknown) = phases.heal?;
    let start = invoked_at.max(heal_at);
    Some((
        start.saturating_add(bound),
        heal_at,
        bound,
        resolves_unknown,
    ))
}

/// Judge an op that completed at `completed_at` (called in history order,
/// so a heal marker recorded later does not apply to it). Before the heal
/// marker there is nothing to judge: that test is all most completions
/// cost.
#[inline]
pub(crate) fn judge_completion(
    phases: &Phases,
    op: OpId,
    record: &OpRecord,
    completed_at: SimTime,
    ending: Ending,
    report: &mut Report,
) {
    if phases.heal.is_some() {
        judge_completion_after_heal(phases, op, record, completed_at, ending, report);
    }
}

/// [`judge_completion`] once a heal marker was recorded.
#[inline(never)]
fn judge_completion_after_heal(
    phases: &Phases,
    op: OpId,
    record: &OpRecord,
    completed_at: SimTime,
    ending: Ending,
    report: &mut Report,
) {
    let Some((deadline, heal_at, bound, resolves_unknown)) = deadline(phases, record.invoked_at)
    else {
        return;
    };
    if completed_at < heal_at {
        return;
    }
    if completed_at > deadline {
        report.add(
            InvariantId::L1,
            completed_at,
            vec![op],
            format!(
                "op {op} completed at {}, past its deadline {} (heal began at {}, bound {})",
                Secs(completed_at),
                Secs(deadline),
                Secs(heal_at),
                Secs(bound)
            ),
        );
    } else if resolves_unknown && ending == Ending::Unknown(UnknownReason::TimedOut) {
        report.add(
            InvariantId::L1,
            completed_at,
            vec![op],
            format!(
                "op {op} ended with an unknown outcome at {} in the heal phase, but the system claims to resolve outcomes",
                Secs(completed_at)
            ),
        );
    }
}

/// Judge an op that never completed, at the end of the history.
pub(crate) fn judge_unfinished(phases: &Phases, op: OpId, record: &OpRecord, report: &mut Report) {
    let Some((deadline, heal_at, bound, _)) = deadline(phases, record.invoked_at) else {
        return;
    };
    if phases.quiescence.is_none() && phases.end > deadline {
        report.add(
            InvariantId::L1,
            deadline,
            vec![op],
            format!(
                "op {op} (process {}) is still outstanding at {}, its deadline (heal began at {}, bound {})",
                record.process,
                Secs(deadline),
                Secs(heal_at),
                Secs(bound)
            ),
        );
    }
}
