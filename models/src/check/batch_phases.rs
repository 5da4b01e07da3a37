//! D5 publish-after-fsync: no version visible and no `Committed` answer
//! before its batch's fsync returned OK; a failed fsync never leads to an
//! acknowledgement of that batch.
//!
//! Verifies, per batch: the phases come in order (validate → WAL append →
//! fsync → publish), each once; a batch is published only after its first
//! fsync returned OK (a failed fsync followed by a "successful" retry does
//! not count: fsyncgate), only if its WAL append succeeded, not after a
//! server crash, and with one commit sequence number per valid request.
//! Per client: every `Committed` acknowledgement (attempt result or `Ok`
//! outcome) is backed by a publication of that very attempt, under that
//! sequence number, no later than the acknowledgement.
//!
//! Does not verify: that validation was right (D8), the numbering of
//! published commits (D4), durability after a crash (D1), reads (see
//! `reads`). Batches with no valid request may skip WAL and fsync; this
//! file does not judge batching efficiency.

use crate::history::{
    AttemptResult, BatchId, BatchRequest, CommitSeq, LogEntry, OkValue, OpId, Outcome, SimTime,
    Verdict,
};
use crate::id_map::{IdMap, IdSet};
use crate::violation::{InvariantId, Secs};
use crate::window_map::WindowMap;

use super::event_owners::EventOwners;
use super::Report;

#[derive(Debug, Clone, Copy)]
struct Appended {
    ok: bool,
    epoch: u64,
    first_position: usize,
}

#[derive(Debug, Clone, Copy)]
struct Fsynced {
    time: SimTime,
    ok: bool,
    retried_after_failure: bool,
}

#[derive(Debug)]
struct BatchSlot<'h> {
    requests: &'h [BatchRequest],
    valid: usize,
    appended: Option<Appended>,
    fsync: Option<Fsynced>,
}

/// The batch registry and D5's state. A published batch is done: it leaves
/// the registry and one bit remembers it (records for it after that are
/// reported, except fsyncs, which cannot make its publication worse).
#[derive(Debug, Default)]
pub(crate) struct BatchPhases<'h> {
    batches: WindowMap<BatchSlot<'h>>,
    published: IdSet,
    epoch: u64,
    /// Latest publication per op: (attempt, commit seq, time).
    published_by_op: IdMap<(u32, CommitSeq, SimTime)>,
    /// Per op, the commit seq and time at which a recovery first exposed
    /// its event id: durable evidence that backs an acknowledgement as well
    /// as a publication does (a client that lost the response, retried and
    /// was told `receipt-exists` learns its commit this way).
    recovered_by_op: IdMap<(CommitSeq, SimTime)>,
    /// What the last recovery's log taught: its length, and whether one of
    /// its event ids belonged to no write then.
    last_log: RecoveredLogSeen,
}

/// A walk of a recovered log under way: where it started, and whether an
/// entry walked so far (or one before the start) had an event id that
/// belonged to no write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecoveryWalk {
    pub(crate) from: usize,
    unowned: bool,
}

/// See [`BatchPhases::on_recovered`].
#[derive(Debug, Default, Clone, Copy)]
struct RecoveredLogSeen {
    len: usize,
    had_unowned_event: bool,
}

fn ops_of(requests: &[BatchRequest]) -> Vec<OpId> {
    requests
        .iter()
        .filter_map(|r| r.origin.map(|o| o.op))
        .collect()
}

impl<'h> BatchPhases<'h> {
    /// Returns whether this is the batch's first validation.
    pub(crate) fn on_validated(
        &mut self,
        time: SimTime,
        batch: BatchId,
        requests: &'h [BatchRequest],
        report: &mut Report,
    ) -> bool {
        if self.batches.contains(batch) || self.published.contains(batch) {
            report.add(
                InvariantId::D5,
                time,
                ops_of(requests),
                format!("malformed history: batch {batch} is validated twice"),
            );
            return false;
        }
        let valid = requests
            .iter()
            .filter(|r| r.verdict == Verdict::Valid)
            .count();
        self.batches.insert(
            batch,
            BatchSlot {
                requests,
                valid,
                appended: None,
                fsync: None,
            },
        );
        true
    }

    /// Returns the batch's requests when this is its first WAL append.
    pub(crate) fn on_wal_appended(
        &mut self,
        time: SimTime,
        batch: BatchId,
        ok: bool,
        report: &mut Report,
    ) -> Option<&'h [BatchRequest]> {
        let epoch = self.epoch;
        let Some(slot) = self.batches.get_mut(batch) else {
            let message = if self.published.contains(batch) {
                format!("batch {batch} is appended to the WAL after it was published")
            } else {
                format!("malformed history: WAL append of batch {batch}, which was never validated")
            };
            report.add(InvariantId::D5, time, vec![], message);
            return None;
        };
        if slot.appended.is_some() {
            report.add(
                InvariantId::D5,
                time,
                ops_of(slot.requests),
                format!("batch {batch} is appended to the WAL twice"),
            );
            return None;
        }
        slot.appended = Some(Appended {
            ok,
            epoch,
            first_position: 0,
        });
        Some(slot.requests)
    }

    /// Record where the batch's first frame landed in the epoch's log.
    pub(crate) fn set_first_position(&mut self, batch: BatchId, first_position: usize) {
        if let Some(Some(appended)) = self
            .batches
            .get_mut(batch)
            .map(|slot| slot.appended.as_mut())
        {
            appended.first_position = first_position;
        }
    }

    pub(crate) fn on_fsync(
        &mut self,
        time: SimTime,
        batch: BatchId,
        ok: bool,
        report: &mut Report,
    ) {
        let Some(slot) = self.batches.get_mut(batch) else {
            if !self.published.contains(batch) {
                report.add(
                    InvariantId::D5,
                    time,
                    vec![],
                    format!("malformed history: fsync of batch {batch}, which was never validated"),
                );
            }
            return;
        };
        if slot.appended.is_none() {
            report.add(
                InvariantId::D5,
                time,
                ops_of(slot.requests),
                format!("batch {batch} is fsynced before its WAL append"),
            );
        }
        match &mut slot.fsync {
            None => {
                slot.fsync = Some(Fsynced {
                    time,
                    ok,
                    retried_after_failure: false,
                })
            }
            Some(first) if !first.ok => first.retried_after_failure = true,
            Some(_) => {}
        }
    }

    /// Check a publication; returns the batch's first frame position and
    /// requests when its frames exist in the current epoch.
    pub(crate) fn on_published(
        &mut self,
        time: SimTime,
        batch: BatchId,
        commit_seqs: &[CommitSeq],
        report: &mut Report,
    ) -> Option<(usize, &'h [BatchRequest])> {
        let epoch = self.epoch;
        let Some(slot) = self.batches.remove(batch) else {
            let message = if self.published.contains(batch) {
                format!("batch {batch} is published twice")
            } else {
                format!("malformed history: batch {batch} is published but was never validated")
            };
            report.add(InvariantId::D5, time, vec![], message);
            return None;
        };
        self.published.insert(batch);
        let problem = match (slot.appended, slot.fsync) {
            (None, _) => Some(format!("batch {batch} is published before its WAL append")),
            (Some(_), None) => Some(format!("batch {batch} is published before its fsync returned")),
            (Some(_), Some(fsync)) if !fsync.ok && fsync.retried_after_failure => Some(format!(
                "batch {batch} is published after its fsync failed at {} and was retried: a retried fsync does not make the lost writes durable",
                Secs(fsync.time)
            )),
            (Some(_), Some(fsync)) if !fsync.ok => Some(format!(
                "batch {batch} is published although its fsync failed at {}",
                Secs(fsync.time)
            )),
            (Some(_), Some(fsync)) if fsync.time > time => Some(format!(
                "batch {batch} is published at {}, before its fsync returned at {}",
                Secs(time),
                Secs(fsync.time)
            )),
            (Some(appended), Some(_)) if !appended.ok => {
                Some(format!("batch {batch} is published although its WAL append failed"))
            }
            (Some(appended), Some(_)) if appended.epoch != epoch => {
                Some(format!("batch {batch} is published after a server crash lost its in-flight state"))
            }
            _ if commit_seqs.len() != slot.valid => Some(format!(
                "batch {batch} publishes {} commit seqs for {} valid requests",
                commit_seqs.len(),
                slot.valid
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            report.add(InvariantId::D5, time, ops_of(slot.requests), problem);
        }
        let valid_requests = slot.requests.iter().filter(|r| r.verdict == Verdict::Valid);
        for (request, seq) in valid_requests.zip(commit_seqs) {
            if let Some(origin) = request.origin {
                self.published_by_op
                    .put(origin.op, (origin.attempt, *seq, time));
            }
        }
        let appended = slot.appended?;
        (appended.epoch == epoch).then_some((appended.first_position, slot.requests))
    }

    /// A recovery exposed `log`, which begins with the previous recovery's
    /// log when `extends_previous`.
    ///
    /// Walking that common prefix again changes nothing unless an event id
    /// in it now names another op than it did then. That needs a remapped
    /// event id, or a new one that the previous log already held (then it
    /// held an event id that belonged to no write): otherwise only the new
    /// entries are walked. Each entry is credited to the latest write that
    /// carried its event id (`owners`).
    pub(crate) fn on_recovered(
        &mut self,
        time: SimTime,
        log: &[LogEntry],
        extends_previous: bool,
        owners: &mut EventOwners,
    ) {
        let mut walk = self.recovery_walk(log.len(), extends_previous, owners);
        for entry in log.get(walk.from..).unwrap_or(&[]) {
            self.credit_recovered(&mut walk, time, entry, owners);
        }
        self.end_recovery_walk(walk, log.len(), owners);
    }

    /// Where [`BatchPhases::on_recovered`] starts walking a log of
    /// `log_len` entries (the caller may walk it itself, through
    /// [`BatchPhases::credit_recovered`] and
    /// [`BatchPhases::end_recovery_walk`]).
    pub(crate) fn recovery_walk(
        &self,
        log_len: usize,
        extends_previous: bool,
        owners: &EventOwners,
    ) -> RecoveryWalk {
        let changes = owners.changes();
        let prefix_unchanged = extends_previous
            && !changes.remapped
            && !(self.last_log.had_unowned_event && changes.mapped);
        if prefix_unchanged && self.last_log.len <= log_len {
            RecoveryWalk {
                from: self.last_log.len,
                unowned: self.last_log.had_unowned_event,
            }
        } else {
            RecoveryWalk {
                from: 0,
                unowned: false,
            }
        }
    }

    /// Credit the write that owns `entry`'s event id with its recovery at
    /// `time` (the first recovery to expose it counts).
    #[inline]
    pub(crate) fn credit_recovered(
        &mut self,
        walk: &mut RecoveryWalk,
        time: SimTime,
        entry: &LogEntry,
        owners: &EventOwners,
    ) {
        let Some(event_id) = entry.event_id else {
            return;
        };
        let Some(op) = owners.latest_owner(event_id) else {
            walk.unowned = true;
            return;
        };
        self.recovered_by_op
            .get_or_insert_with(op, || (entry.seq, time));
    }

    /// The walk of a log of `log_len` entries is over.
    pub(crate) fn end_recovery_walk(
        &mut self,
        walk: RecoveryWalk,
        log_len: usize,
        owners: &mut EventOwners,
    ) {
        self.last_log = RecoveredLogSeen {
            len: log_len,
            had_unowned_event: walk.unowned,
        };
        owners.clear_changes();
    }

    pub(crate) fn on_crash(&mut self) {
        self.epoch = self.epoch.saturating_add(1);
    }

    pub(crate) fn on_attempt_ended(
        &mut self,
        time: SimTime,
        op: OpId,
        attempt: u32,
        result: &AttemptResult,
        report: &mut Report,
    ) {
        if let AttemptResult::Committed { commit_seq } = result {
            self.check_ack(time, op, Some(attempt), *commit_seq, report);
        }
    }

    pub(crate) fn on_complete(
        &mut self,
        time: SimTime,
        op: OpId,
        outcome: &Outcome,
        report: &mut Report,
    ) {
        if let Outcome::Ok(OkValue::Committed { commit_seq }) = outcome {
            self.check_ack(time, op, None, *commit_seq, report);
        }
    }

    /// Check an acknowledgement of `op` (of `attempt`, or its `Ok`
    /// outcome) as commit `seq` at `time`. The common case, a publication
    /// no later than the acknowledgement, reports nothing and stays small;
    /// the explanations are out of line.
    #[inline]
    fn check_ack(
        &self,
        time: SimTime,
        op: OpId,
        attempt: Option<u32>,
        seq: CommitSeq,
        report: &mut Report,
    ) {
        match self.published_by_op.get(op) {
            Some(&(published_attempt, published_seq, published_at))
                if published_seq == seq && attempt.is_none_or(|a| a == published_attempt) =>
            {
                if published_at > time {
                    unbacked_ack(time, op, attempt, seq, Some(published_at), report);
                }
            }
            _ if self
                .recovered_by_op
                .get(op)
                .is_some_and(|&(recovered_seq, at)| recovered_seq == seq && at <= time) => {}
            _ => unbacked_ack(time, op, attempt, seq, None, report),
        }
    }
}

/// Report an acknowledgement of `op` (of `attempt`, or its `Ok` outcome)
/// as commit `seq` at `time` that no publication backs: its batch was
/// published only later (`published_at`), or never and no earlier recovery
/// exposed the commit (`None`).
#[cold]
#[inline(never)]
fn unbacked_ack(
    time: SimTime,
    op: OpId,
    attempt: Option<u32>,
    seq: CommitSeq,
    published_at: Option<SimTime>,
    report: &mut Report,
) {
    let what = match attempt {
        Some(attempt) => format!("op {op} attempt {attempt}"),
        None => format!("op {op}"),
    };
    let message = match published_at {
        Some(published_at) => format!(
            "{what} was acknowledged as commit seq {seq} at {}, before its batch was published at {}",
            Secs(time),
            Secs(published_at)
        ),
        None => format!(
            "{what} was acknowledged as commit seq {seq}, but no batch published it after a successful fsync and no earlier recovery exposed it"
        ),
    };
    report.add(InvariantId::D5, time, vec![op], message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventId;

    fn entry(seq: CommitSeq, event_id: EventId) -> LogEntry {
        LogEntry {
            seq,
            txn_id: seq,
            event_id: Some(event_id),
            writes: vec![],
        }
    }

    #[test]
    fn an_event_id_that_changes_owner_is_credited_by_the_next_recovery() {
        let log = vec![entry(1, 7)];
        let longer = vec![entry(1, 7), entry(2, 8)];
        let mut batches = BatchPhases::default();
        let mut owners = EventOwners::default();
        batches.on_recovered(10, &log, true, &mut owners);
        assert!(
            batches.recovered_by_op.get(3).is_none(),
            "event 7 has no op"
        );
        owners.claim(7, 3, true);
        owners.claim(8, 5, true);
        batches.on_recovered(20, &longer, true, &mut owners);
        assert_eq!(
            batches.recovered_by_op.get(3),
            Some(&(1, 20)),
            "the common prefix is walked again: it held an unowned event id"
        );
        assert_eq!(batches.recovered_by_op.get(5), Some(&(2, 20)));
        owners.claim(7, 4, true);
        batches.on_recovered(30, &longer, true, &mut owners);
        assert_eq!(
            batches.recovered_by_op.get(4),
            Some(&(1, 30)),
            "event 7 moved to op 4"
        );
        assert_eq!(batches.recovered_by_op.get(3), Some(&(1, 20)));
    }
}
