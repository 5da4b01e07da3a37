//! The recovered log against the durable log model
//! ([`crate::model::durable_log`]). One file because one replay decides
//! them all; each finding maps to exactly one invariant:
//!
//! | finding | invariant |
//! |---------|-----------|
//! | a published commit, or one an earlier recovery exposed, is missing | D1 acked-durable |
//! | an entry holds a strict subset of its commit's writes | D2 atomic |
//! | an entry was never appended, or holds other data than committed | D3 no-phantom |
//! | seqs not 1, 2, 3, … in log order; an issued commit at another seq; a publication out of log position | D4 order |
//! | an event id applied twice (published or recovered) | D7 exactly-once |
//! | an entry is a request validation rejected | D8 first-committer-wins |
//! | recovery over unchanged durable state answers differently | D10 recovery-idempotent |
//!
//! A recovery that reports corruption (`corruption_reported_from`) excuses
//! the must-exist commits from there on: mid-log loss reported loudly is
//! allowed, silent loss is D1. When two recoveries see the same durable
//! state (nothing appended in between) and differ, only D10 is reported
//! for the second: the first was already checked in full.
//!
//! Does not verify: the page state (see `recovered_state`), phases (D5),
//! serialisability of what was appended (D8 in `first_committer_wins`).

use crate::history::{BatchRequest, CommitSeq, EventId, LogEntry, PageVersion, SimTime, Verdict};
use crate::model::durable_log::{DurableLog, Expected, LogFinding};
use crate::violation::{InvariantId, Secs};

use super::Report;

/// D1/D2/D3/D4/D7/D8/D10 state over the durable log.
#[derive(Debug, Default)]
pub(crate) struct RecoveredLog<'h> {
    model: DurableLog<'h>,
    last_crash: Option<SimTime>,
}

impl<'h> RecoveredLog<'h> {
    pub(crate) fn on_validated(&mut self, requests: &'h [BatchRequest]) {
        for request in requests {
            if request.verdict != Verdict::Valid {
                self.model.note_rejected(request);
            }
        }
    }

    /// Append the batch's valid requests; returns the first one's position.
    pub(crate) fn on_appended(&mut self, requests: &'h [BatchRequest]) -> usize {
        let first = self.model.frames().len();
        for request in requests.iter().filter(|r| r.verdict == Verdict::Valid) {
            self.model.append(request);
        }
        first
    }

    pub(crate) fn on_published(
        &mut self,
        time: SimTime,
        first_position: usize,
        requests: &'h [BatchRequest],
        commit_seqs: &[CommitSeq],
        report: &mut Report,
    ) {
        let valid = requests.iter().filter(|r| r.verdict == Verdict::Valid);
        for (offset, seq) in valid
            .zip(commit_seqs)
            .enumerate()
            .map(|(i, (_, seq))| (i, *seq))
        {
            let findings = self
                .model
                .publish(first_position.saturating_add(offset), seq, time);
            for finding in findings {
                self.explain(time, finding, report);
            }
        }
    }

    pub(crate) fn on_crash(&mut self, time: SimTime) {
        self.last_crash = Some(time);
    }

    /// Check a recovery; `visit` sees the entries past the old base when
    /// the log cleanly extends it (see [`DurableLog::recover_visiting`]),
    /// and the return value says whether it did.
    pub(crate) fn on_recovered(
        &mut self,
        time: SimTime,
        log: &'h [LogEntry],
        state: Option<&'h [PageVersion]>,
        corruption_reported_from: Option<CommitSeq>,
        report: &mut Report,
        visit: impl FnMut(&'h LogEntry),
    ) -> bool {
        let (findings, visited) =
            self.model
                .recover_visiting(time, log, state, corruption_reported_from, visit);
        for finding in findings {
            self.explain(time, finding, report);
        }
        visited
    }

    /// The durable log model, as of now.
    pub(crate) fn model(&self) -> &DurableLog<'h> {
        &self.model
    }

    /// Whether `event_id` was ever published or recovered.
    pub(crate) fn ever_applied(&self, event_id: EventId) -> bool {
        self.model.ever_applied(event_id)
    }

    fn explain(&self, time: SimTime, finding: LogFinding<'h>, report: &mut Report) {
        let crash = match self.last_crash {
            Some(at) => format!("the crash at {}", Secs(at)),
            None => format!("the recovery at {}", Secs(time)),
        };
        let op_of =
            |request: &BatchRequest| request.origin.map(|o| o.op).into_iter().collect::<Vec<_>>();
        let (invariant, ops, message) = match finding {
            LogFinding::PublishedOutOfPosition {
                expected,
                assigned,
                request,
            } => (
                InvariantId::D4,
                op_of(request),
                format!(
                    "txn {} is published as commit seq {assigned}, but its place in the log makes it commit seq {expected}",
                    request.txn_id
                ),
            ),
            LogFinding::EventPublishedTwice { event_id, seq, request } => (
                InvariantId::D7,
                op_of(request),
                format!(
                    "event {event_id} is published again as commit seq {seq} (txn {}) although it was already applied",
                    request.txn_id
                ),
            ),
            LogFinding::SeqOutOfOrder { index, seq, expected } => (
                InvariantId::D4,
                vec![],
                format!(
                    "recovered log entry {} has commit seq {seq} where {expected} belongs: seqs must be unique, ascending and gap-free",
                    index.saturating_add(1)
                ),
            ),
            LogFinding::MustExistMissing { expected, seq } => {
                let ops = expected.origin().map(|o| o.op).into_iter().collect();
                let message = match expected {
                    Expected::Frame {
                        published_at: Some(published_at),
                        ..
                    } => format!(
                        "commit seq {seq} (txn {}) was acknowledged at {} but is missing after {crash}",
                        expected.txn_id(),
                        Secs(published_at)
                    ),
                    Expected::Frame { published_at: None, .. } => format!(
                        "commit seq {seq} (txn {}) is missing after {crash}",
                        expected.txn_id()
                    ),
                    Expected::Observed { observed_at, .. } => format!(
                        "commit seq {seq} (txn {}) was exposed by the recovery at {} but is missing after {crash}",
                        expected.txn_id(),
                        Secs(observed_at)
                    ),
                };
                (InvariantId::D1, ops, message)
            }
            LogFinding::Partial { entry, writes_expected } => (
                InvariantId::D2,
                vec![],
                format!(
                    "recovered commit seq {} (txn {}) holds {} of its {writes_expected} writes: partially visible",
                    entry.seq,
                    entry.txn_id,
                    entry.writes.len()
                ),
            ),
            LogFinding::Corrupt { entry } => (
                InvariantId::D3,
                vec![],
                format!(
                    "recovered commit seq {} (txn {}) holds data that was never committed: a torn or corrupt frame exposed as data",
                    entry.seq, entry.txn_id
                ),
            ),
            LogFinding::Misplaced { entry, issued_seq } => (
                InvariantId::D4,
                vec![],
                format!(
                    "recovered commit seq {} (txn {}) was issued as commit seq {issued_seq}: recovered order differs from commit order",
                    entry.seq, entry.txn_id
                ),
            ),
            LogFinding::RejectedPresent { entry, request } => {
                let reason = match &request.verdict {
                    Verdict::Conflict { reason } => reason.as_str(),
                    Verdict::Valid => "valid",
                };
                (
                    InvariantId::D8,
                    op_of(request),
                    format!(
                        "recovered commit seq {} (txn {}) is a request validation rejected ({reason}): a conflicting write reached the log",
                        entry.seq, entry.txn_id
                    ),
                )
            }
            LogFinding::Phantom { entry } => (
                InvariantId::D3,
                vec![],
                format!(
                    "recovered commit seq {} (txn {}) was never appended: nothing visible may be something never submitted",
                    entry.seq, entry.txn_id
                ),
            ),
            LogFinding::EventRecoveredTwice { event_id, seq } => (
                InvariantId::D7,
                vec![],
                format!("the recovered log applies event {event_id} twice (again at commit seq {seq})"),
            ),
            LogFinding::NotIdempotent {
                previous_at,
                difference,
            } => (
                InvariantId::D10,
                vec![],
                format!(
                    "recovery over the same durable state as the recovery at {} answered differently: {difference}",
                    Secs(previous_at)
                ),
            ),
        };
        report.add(invariant, time, ops, message);
    }
}
