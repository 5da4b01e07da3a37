//! D6 no-silent-drop: every write ends in exactly one of "applied" or "a
//! terminal error delivered to the caller", and at quiescence nothing is
//! outstanding. Also D7's client side: one event id, one operation.
//!
//! Verifies:
//! - every invoked operation has completed when the `Quiescence` marker is
//!   recorded (an `Unknown` outcome counts as completed here: the caller
//!   was told; whether it *should* have been resolved is L1's question);
//! - an operation that failed *definitely* never took effect: its event id
//!   was never published nor exposed by any recovery;
//! - the operation records themselves: one invoke per op id, one
//!   completion, not before the invoke, an outcome that fits the call
//!   (malformed records are reported here, as D6);
//! - no two operations share an event id (D7).
//!
//! Does not verify: that acknowledged writes survive (D1), that an `Ok`
//! write was really committed (D5), retries (D11).

use crate::history::{
    Call, EventId, OkValue, OpId, Outcome, PageId, ProcessId, SimTime, UnknownReason,
};
use crate::id_map::IdSet;
use crate::violation::{InvariantId, Secs};
use crate::window_map::WindowMap;

use super::event_owners::EventOwners;
use super::{liveness, Phases, Report};

/// How an operation ended, as far as D6 and L1 care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `Ok`.
    Ok,
    /// `Failed`, definite or not.
    Failed { definite: bool },
    /// `Unknown`.
    Unknown(UnknownReason),
}

/// An invoked operation that has not completed yet.
#[derive(Debug, Clone)]
pub(crate) struct OpRecord {
    pub(crate) process: ProcessId,
    pub(crate) invoked_at: SimTime,
    pub(crate) read_page: Option<PageId>,
    pub(crate) event_id: Option<EventId>,
}

/// D6's state. Open operations are kept in full; a completed one leaves
/// one bit behind.
#[derive(Debug, Default)]
pub(crate) struct OpLifecycle {
    open: WindowMap<OpRecord>,
    invoked: IdSet,
    completed: IdSet,
    /// (op, event id, completion time) of every definite failure.
    definite_failures: Vec<(OpId, EventId, SimTime)>,
}

impl OpLifecycle {
    pub(crate) fn on_invoke(
        &mut self,
        time: SimTime,
        op: OpId,
        process: ProcessId,
        call: &Call,
        owners: &mut EventOwners,
        report: &mut Report,
    ) {
        let first_invoke = self.invoked.insert(op);
        let (read_page, event_id) = match call {
            Call::Write { event_id } => (None, *event_id),
            Call::Read { page } => (Some(*page), None),
        };
        let collision = event_id.and_then(|event_id| {
            owners
                .claim(event_id, op, first_invoke)
                .map(|owner| (event_id, owner))
        });
        if !first_invoke {
            invoked_again(time, op, process, report);
            return;
        }
        if let Some((event_id, owner)) = collision {
            event_id_shared(time, event_id, owner, op, report);
        }
        self.open.insert(
            op,
            OpRecord {
                process,
                invoked_at: time,
                read_page,
                event_id,
            },
        );
    }

    /// Returns the page the operation read, when it was an open read.
    pub(crate) fn on_complete(
        &mut self,
        time: SimTime,
        op: OpId,
        outcome: &Outcome,
        phases: &Phases,
        report: &mut Report,
    ) -> Option<PageId> {
        let Some(record) = self.open.remove(op) else {
            completion_without_open_op(time, op, self.completed.contains(op), report);
            return None;
        };
        self.completed.insert(op);
        if time < record.invoked_at {
            completion_before_invoke(time, op, record.invoked_at, report);
        }
        let fits = match outcome {
            Outcome::Ok(OkValue::Committed { .. }) => record.read_page.is_none(),
            Outcome::Ok(OkValue::Read { .. }) => record.read_page.is_some(),
            Outcome::Failed { .. } | Outcome::Unknown(_) => true,
        };
        if !fits {
            outcome_unfit(time, op, report);
        }
        let ending = match outcome {
            Outcome::Ok(_) => Ending::Ok,
            Outcome::Failed { definite, .. } => Ending::Failed {
                definite: *definite,
            },
            Outcome::Unknown(reason) => Ending::Unknown(*reason),
        };
        if let (Ending::Failed { definite: true }, Some(event_id)) = (ending, record.event_id) {
            self.definite_failures.push((op, event_id, time));
        }
        liveness::judge_completion(phases, op, &record, time, ending, report);
        record.read_page
    }

    /// Whether `op` is an invoked, not yet completed write.
    pub(crate) fn is_open_write(&self, op: OpId) -> bool {
        self.open
            .get(op)
            .is_some_and(|record| record.read_page.is_none())
    }

    pub(crate) fn on_quiescence(&mut self, time: SimTime, report: &mut Report) {
        for (op, record) in self.open.iter() {
            report.add(
                InvariantId::D6,
                time,
                vec![op],
                format!(
                    "op {op} (process {}) invoked at {} is still outstanding at quiescence: silently dropped",
                    record.process,
                    Secs(record.invoked_at)
                ),
            );
        }
    }

    pub(crate) fn finish(
        &self,
        phases: &Phases,
        ever_applied: impl Fn(EventId) -> bool,
        report: &mut Report,
    ) {
        for &(op, event_id, completed_at) in &self.definite_failures {
            if ever_applied(event_id) {
                report.add(
                    InvariantId::D6,
                    phases.end,
                    vec![op],
                    format!(
                        "op {op} (event {event_id}) failed definitely at {} but was applied: a write ends in exactly one of applied or failed",
                        Secs(completed_at)
                    ),
                );
            }
        }
        for (op, record) in self.open.iter() {
            liveness::judge_unfinished(phases, op, record, report);
        }
    }
}

// The explanations of the operation records' breaches, out of line: the
// handlers above run for every operation and almost never report.

#[cold]
#[inline(never)]
fn invoked_again(time: SimTime, op: OpId, process: ProcessId, report: &mut Report) {
    report.add(
        InvariantId::D6,
        time,
        vec![op],
        format!("malformed history: op {op} is invoked again (process {process})"),
    );
}

#[cold]
#[inline(never)]
fn event_id_shared(time: SimTime, event_id: EventId, owner: OpId, op: OpId, report: &mut Report) {
    report.add(
        InvariantId::D7,
        time,
        vec![owner, op],
        format!("event id {event_id} is used by two writes (op {owner} and op {op}): it could be applied twice"),
    );
}

#[cold]
#[inline(never)]
fn completion_without_open_op(time: SimTime, op: OpId, completed: bool, report: &mut Report) {
    let message = if completed {
        format!("op {op} completes twice: a write must end exactly once")
    } else {
        format!("malformed history: op {op} completes but was never invoked")
    };
    report.add(InvariantId::D6, time, vec![op], message);
}

#[cold]
#[inline(never)]
fn completion_before_invoke(time: SimTime, op: OpId, invoked_at: SimTime, report: &mut Report) {
    report.add(
        InvariantId::D6,
        time,
        vec![op],
        format!(
            "malformed history: op {op} completes before it was invoked at {}",
            Secs(invoked_at)
        ),
    );
}

#[cold]
#[inline(never)]
fn outcome_unfit(time: SimTime, op: OpId, report: &mut Report) {
    report.add(
        InvariantId::D6,
        time,
        vec![op],
        format!("malformed history: op {op}'s outcome does not fit its call (a read answered as a write or the reverse)"),
    );
}
