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

use crate::history::{SimTime, UnknownReason};
use crate::violation::{InvariantId, Secs};

use super::op_lifecycle::{Ending, OpLifecycle};
use super::{Phases, Report};

pub(crate) fn check(phases: &Phases, ops: &OpLifecycle, report: &mut Report) {
    let Some((heal_at, bound, resolves_unknown)) = phases.heal else {
        return;
    };
    for (op, record) in ops.records() {
        let finished_before_heal = record.completed.is_some_and(|(at, _)| at < heal_at);
        if finished_before_heal {
            continue;
        }
        let start: SimTime = record.invoked_at.max(heal_at);
        let deadline = start.saturating_add(bound);
        match record.completed {
            Some((at, _)) if at > deadline => report.add(
                InvariantId::L1,
                at,
                vec![op],
                format!(
                    "op {op} completed at {}, past its deadline {} (heal began at {}, bound {})",
                    Secs(at),
                    Secs(deadline),
                    Secs(heal_at),
                    Secs(bound)
                ),
            ),
            Some((at, Ending::Unknown(UnknownReason::TimedOut))) if resolves_unknown => report.add(
                InvariantId::L1,
                at,
                vec![op],
                format!(
                    "op {op} ended with an unknown outcome at {} in the heal phase, but the system claims to resolve outcomes",
                    Secs(at)
                ),
            ),
            Some(_) => {}
            None if phases.quiescence.is_none() && phases.end > deadline => report.add(
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
            ),
            None => {}
        }
    }
}
