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

use crate::history::{Call, EventId, OkValue, OpId, Outcome, PageId, ProcessId, SimTime, UnknownReason};
use crate::id_map::IdMap;
use crate::violation::{InvariantId, Secs};

use super::{Phases, Report};

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

/// One operation's record.
#[derive(Debug, Clone)]
pub(crate) struct OpRecord {
    pub(crate) process: ProcessId,
    pub(crate) invoked_at: SimTime,
    pub(crate) read_page: Option<PageId>,
    pub(crate) event_id: Option<EventId>,
    pub(crate) completed: Option<(SimTime, Ending)>,
}

/// The operation table and D6's state.
#[derive(Debug, Default)]
pub(crate) struct OpLifecycle {
    ops: IdMap<OpRecord>,
    op_of_event: IdMap<OpId>,
    open: usize,
}

impl OpLifecycle {
    pub(crate) fn on_invoke(&mut self, time: SimTime, op: OpId, process: ProcessId, call: &Call, report: &mut Report) {
        if let Some(existing) = self.ops.get(op) {
            report.add(
                InvariantId::D6,
                time,
                vec![op],
                format!(
                    "malformed history: op {op} is invoked again (first invoked at {} by process {})",
                    Secs(existing.invoked_at),
                    existing.process
                ),
            );
            return;
        }
        let (read_page, event_id) = match call {
            Call::Write { event_id } => (None, *event_id),
            Call::Read { page } => (Some(*page), None),
        };
        if let Some(event_id) = event_id {
            if let Some(&other) = self.op_of_event.get(event_id) {
                report.add(
                    InvariantId::D7,
                    time,
                    vec![other, op],
                    format!("event id {event_id} is used by two writes (op {other} and op {op}): it could be applied twice"),
                );
            } else {
                self.op_of_event.insert(event_id, op);
            }
        }
        self.ops.insert(
            op,
            OpRecord {
                process,
                invoked_at: time,
                read_page,
                event_id,
                completed: None,
            },
        );
        self.open += 1;
    }

    pub(crate) fn on_complete(&mut self, time: SimTime, op: OpId, outcome: &Outcome, report: &mut Report) {
        let Some(record) = self.ops.get_mut(op) else {
            report.add(
                InvariantId::D6,
                time,
                vec![op],
                format!("malformed history: op {op} completes but was never invoked"),
            );
            return;
        };
        if let Some((completed_at, _)) = record.completed {
            report.add(
                InvariantId::D6,
                time,
                vec![op],
                format!("op {op} completes twice (first at {}): a write must end exactly once", Secs(completed_at)),
            );
            return;
        }
        if time < record.invoked_at {
            report.add(
                InvariantId::D6,
                time,
                vec![op],
                format!("malformed history: op {op} completes before it was invoked at {}", Secs(record.invoked_at)),
            );
        }
        let fits = match outcome {
            Outcome::Ok(OkValue::Committed { .. }) => record.read_page.is_none(),
            Outcome::Ok(OkValue::Read { .. }) => record.read_page.is_some(),
            Outcome::Failed { .. } | Outcome::Unknown(_) => true,
        };
        if !fits {
            report.add(
                InvariantId::D6,
                time,
                vec![op],
                format!("malformed history: op {op}'s outcome does not fit its call (a read answered as a write or the reverse)"),
            );
        }
        let ending = match outcome {
            Outcome::Ok(_) => Ending::Ok,
            Outcome::Failed { definite, .. } => Ending::Failed { definite: *definite },
            Outcome::Unknown(reason) => Ending::Unknown(*reason),
        };
        record.completed = Some((time, ending));
        self.open = self.open.saturating_sub(1);
    }

    /// The page an op reads, if it is a read.
    pub(crate) fn read_page(&self, op: OpId) -> Option<PageId> {
        self.ops.get(op).and_then(|record| record.read_page)
    }

    /// Whether `op` is an invoked, not yet completed write.
    pub(crate) fn is_open_write(&self, op: OpId) -> bool {
        self.ops
            .get(op)
            .is_some_and(|record| record.read_page.is_none() && record.completed.is_none())
    }

    /// Every operation, by id.
    pub(crate) fn records(&self) -> impl Iterator<Item = (OpId, &OpRecord)> {
        self.ops.iter()
    }

    pub(crate) fn on_quiescence(&mut self, time: SimTime, report: &mut Report) {
        if self.open == 0 {
            return;
        }
        for (op, record) in self.ops.iter() {
            if record.completed.is_none() {
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
    }

    pub(crate) fn finish(&self, phases: &Phases, ever_applied: impl Fn(EventId) -> bool, report: &mut Report) {
        for (op, record) in self.ops.iter() {
            let Some((completed_at, Ending::Failed { definite: true })) = record.completed else {
                continue;
            };
            let Some(event_id) = record.event_id else {
                continue;
            };
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
    }
}
