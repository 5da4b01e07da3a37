//! D9 repair-settles: at quiescence no repair is `Pending`, and every
//! `Completed` repair's symbols verify against the systematic bytes.
//!
//! Verifies, per commit, through [`crate::model::repair`]: lifecycle
//! events numbered 1, 2, 3, … and in the order spec 03 allows
//! (`CommitAcked` never before `CommitDurable`, a repair starts only after
//! the ack or after a crash re-schedules it, nothing after `Completed` or
//! `Failed`); a crash sends running repairs back to `Pending`; after a
//! crash, recovery's `RecoveredPending` / `RecoveredCompleted` re-derive a
//! commit's state from disk, except that a `Completed` repair must not come
//! back without its symbols. Each
//! `RepairSettled` record must agree with the events, must not be
//! `Pending`, and, when `Completed`, must carry symbols whose XOR parity
//! is recomputed (a matching parity is exactly one from which every shard
//! is rebuilt as if lost). When
//! the history has a `Quiescence` marker, a commit whose events leave it
//! `Pending` is reported even without a settled record.
//!
//! Does not verify: how long the durable-but-not-repairable window lasted,
//! codes other than single XOR parity.

use crate::history::{CommitSeq, RepairEventKind, RepairState, RepairSymbols, SimTime};
use crate::id_map::{IdMap, IdSet};
use crate::model::repair::{verify_symbols, ParityError, RepairBreach, RepairLifecycle, Stage};
use crate::violation::InvariantId;

use super::{Phases, Report};

/// D9's state.
#[derive(Debug, Default)]
pub(crate) struct RepairSettles {
    commits: IdMap<RepairLifecycle>,
    /// Commits with a settled record.
    settled: IdSet,
    /// Server crashes so far. A crash reaches each commit at its next
    /// event ([`RepairLifecycle::apply_after_crashes`]): it sends a running
    /// repair back to `Pending` and lets recovery speak. Visiting every
    /// open repair at each crash instead would cost hundreds of thousands
    /// of cold look-ups per crash in a long run, for the same result.
    crashes: u64,
}

impl RepairSettles {
    #[inline]
    pub(crate) fn on_event(
        &mut self,
        time: SimTime,
        commit_seq: CommitSeq,
        event_seq: u32,
        kind: RepairEventKind,
        report: &mut Report,
    ) {
        let lifecycle = self
            .commits
            .get_or_insert_with(commit_seq, RepairLifecycle::new);
        let breaches = lifecycle.apply_after_crashes(self.crashes, event_seq, kind);
        for breach in breaches.into_iter().flatten() {
            let message = match breach {
                RepairBreach::EventOutOfSequence { expected, got } => format!(
                    "commit seq {commit_seq}: repair event {kind:?} is numbered {got} where {expected} comes next"
                ),
                RepairBreach::UnexpectedEvent {
                    stage: Stage::Completed,
                    event: RepairEventKind::RecoveredPending,
                } => format!(
                    "commit seq {commit_seq}'s repair was Completed, but after the crash recovery found no valid repair symbols (they were not durable)"
                ),
                RepairBreach::UnexpectedEvent { stage, event } => {
                    format!("commit seq {commit_seq}: repair event {event:?} is not allowed in stage {stage:?}")
                }
            };
            report.add(InvariantId::D9, time, vec![], message);
        }
    }

    pub(crate) fn on_crash(&mut self) {
        self.crashes += 1;
    }

    pub(crate) fn on_settled(
        &mut self,
        time: SimTime,
        commit_seq: CommitSeq,
        state: RepairState,
        symbols: Option<&RepairSymbols>,
        report: &mut Report,
    ) {
        if !self.settled.insert(commit_seq) {
            report.add(
                InvariantId::D9,
                time,
                vec![],
                format!(
                    "malformed history: commit seq {commit_seq}'s repair state is settled twice"
                ),
            );
            return;
        }
        let derived = self
            .commits
            .get(commit_seq)
            .map_or(RepairState::NotScheduled, RepairLifecycle::state);
        let problem = if state == RepairState::Pending {
            Some("is still Pending at quiescence".to_string())
        } else if state != derived {
            Some(format!(
                "is settled as {state:?} but its events leave it {derived:?}"
            ))
        } else if state == RepairState::Completed {
            match symbols.map(verify_symbols) {
                None => Some("is Completed but no repair symbols were recorded".to_string()),
                Some(Ok(())) => None,
                Some(Err(error)) => Some(describe_parity(&error)),
            }
        } else {
            None
        };
        if let Some(problem) = problem {
            report.add(
                InvariantId::D9,
                time,
                vec![],
                format!("commit seq {commit_seq}'s repair {problem}"),
            );
        }
    }

    pub(crate) fn finish(&self, phases: &Phases, report: &mut Report) {
        let Some(quiescence) = phases.quiescence else {
            return;
        };
        for (commit_seq, lifecycle) in self.commits.iter() {
            if lifecycle.state() == RepairState::Pending && !self.settled.contains(commit_seq) {
                report.add(
                    InvariantId::D9,
                    quiescence,
                    vec![],
                    format!("commit seq {commit_seq}'s repair is still Pending at quiescence (its events never settle it)"),
                );
            }
        }
    }
}

fn describe_parity(error: &ParityError) -> String {
    match error {
        ParityError::ZeroShardSize => "is Completed with shard size 0".to_string(),
        ParityError::ParityLength { expected, got } => {
            format!("is Completed but its parity is {got} bytes, not one {expected}-byte shard")
        }
        ParityError::ParityMismatch { offset } => {
            format!("is Completed but its parity does not match the systematic bytes (first at byte {offset})")
        }
    }
}
