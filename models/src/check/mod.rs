//! The checkers: one pass over a history, every applicable invariant.
//!
//! [`check`] walks the events once, in recorded order, and routes each to
//! the checkers that care about it (a static `match`, no dynamic dispatch:
//! checking is linear in the history plus `log n` factors only where
//! adversarial ids force the sparse path). Each checker lives in its own
//! file, opens by saying what it verifies and what it does not, and keeps
//! only the state it needs.
//!
//! # Malformed and adversarial histories
//! A checker never panics and never trusts an id. A history that breaks the
//! recording rules (a completion before its invocation, an attempt for an
//! operation never invoked, an fsync for a batch never validated, …) is
//! reported as a violation of the invariant whose evidence it corrupts,
//! with a message that says the record is malformed:
//! - operation lifecycle records (invoke, complete) → D6;
//! - commit attempts → D11;
//! - batch phase records → D5;
//! - channel and queue records → D12;
//! - repair records → D9;
//! - recovered logs → D3/D4 (see `recovered_log`);
//! - snapshot persistence records (spec 05) → D13;
//! - lifecycle records (spec 06) → D14.
//!
//! # Adding an invariant
//! Its events in [`crate::EventKind`], a `check/<name>.rs` with a struct
//! exposing `on_*` methods and a `finish`, and one arm per event in
//! `Driver::observe`: D13 (`snapshot_restart`) and D14
//! (`lifecycle_consistent`) were added that way.

mod batch_phases;
mod channels;
mod declared;
mod event_owners;
mod first_committer_wins;
mod lifecycle_consistent;
mod liveness;
mod op_lifecycle;
mod queues;
mod reads;
mod recovered_log;
mod recovered_state;
mod repair_settles;
mod retry_bounded;
mod snapshot_restart;

use crate::history::{EventKind, History, OpId, Phase, Recovery, SimTime};
use crate::violation::{InvariantId, Violation};

/// Run every checker over `history`; violations sorted by time, invariant,
/// operations, message.
pub fn check(history: &History) -> Vec<Violation> {
    let mut driver = Driver::new();
    // The latest time is only read when the history is over: a local,
    // not a field every event loads and stores.
    let mut end = 0;
    for event in &history.events {
        end = end.max(event.time);
        driver.observe(event.time, &event.kind);
    }
    driver.phases.end = end;
    let mut violations = driver.finish();
    violations.sort_by(|a, b| {
        (a.time, a.invariant, &a.ops, &a.message).cmp(&(b.time, b.invariant, &b.ops, &b.message))
    });
    violations
}

/// The violations of one invariant (a filtered [`check`]: one pass over
/// the history is cheaper than any partial one, and checkers share
/// models).
pub fn check_invariant(history: &History, invariant: InvariantId) -> Vec<Violation> {
    let mut violations = check(history);
    violations.retain(|violation| violation.invariant == invariant);
    violations
}

/// Where checkers put what they find.
#[derive(Debug, Default)]
pub(crate) struct Report {
    violations: Vec<Violation>,
}

impl Report {
    pub(crate) fn add(
        &mut self,
        invariant: InvariantId,
        time: SimTime,
        ops: Vec<OpId>,
        message: String,
    ) {
        self.violations
            .push(Violation::new(invariant, time, ops, message));
    }
}

/// Run phases as recorded by the harness.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Phases {
    /// First heal marker: time, bound, whether unknowns must resolve.
    pub(crate) heal: Option<(SimTime, SimTime, bool)>,
    /// First quiescence marker's time.
    pub(crate) quiescence: Option<SimTime>,
    /// Latest time recorded anywhere (set when the history is over).
    pub(crate) end: SimTime,
}

struct Driver<'h> {
    report: Report,
    phases: Phases,
    ops: op_lifecycle::OpLifecycle,
    owners: event_owners::EventOwners,
    batches: batch_phases::BatchPhases<'h>,
    log: recovered_log::RecoveredLog<'h>,
    state: recovered_state::RecoveredState<'h>,
    fcw: first_committer_wins::FirstCommitterWins,
    reads: reads::Reads,
    retries: retry_bounded::RetryBounded,
    channels: channels::Channels,
    queues: queues::Queues,
    repairs: repair_settles::RepairSettles,
    lifecycle: lifecycle_consistent::LifecycleConsistent,
    snapshots: snapshot_restart::SnapshotRestart,
}

impl<'h> Driver<'h> {
    fn new() -> Self {
        Self {
            report: Report::default(),
            phases: Phases::default(),
            ops: op_lifecycle::OpLifecycle::default(),
            owners: event_owners::EventOwners::default(),
            batches: batch_phases::BatchPhases::default(),
            log: recovered_log::RecoveredLog::default(),
            state: recovered_state::RecoveredState::default(),
            fcw: first_committer_wins::FirstCommitterWins::default(),
            reads: reads::Reads::default(),
            retries: retry_bounded::RetryBounded::default(),
            channels: channels::Channels::default(),
            queues: queues::Queues::default(),
            repairs: repair_settles::RepairSettles::default(),
            lifecycle: lifecycle_consistent::LifecycleConsistent::default(),
            snapshots: snapshot_restart::SnapshotRestart::default(),
        }
    }

    fn observe(&mut self, time: SimTime, kind: &'h EventKind) {
        let report = &mut self.report;
        match kind {
            EventKind::Phase(phase) => self.on_phase(time, *phase),
            EventKind::Invoke { op, process, call } => {
                self.ops
                    .on_invoke(time, *op, *process, call, &mut self.owners, report)
            }
            EventKind::Complete { op, outcome } => {
                let read_page = self
                    .ops
                    .on_complete(time, *op, outcome, &self.phases, report);
                self.batches.on_complete(time, *op, outcome, report);
                self.retries.on_complete(time, *op, outcome, report);
                self.reads
                    .on_complete(time, *op, read_page, outcome, self.log.model(), report);
            }
            EventKind::BackoffPolicyDeclared(policy) => {
                self.retries.on_policy(time, *policy, report)
            }
            EventKind::AttemptStarted {
                op,
                attempt,
                delay_before,
            } => {
                let known = self.ops.is_open_write(*op);
                self.retries
                    .on_attempt_started(time, *op, *attempt, *delay_before, known, report);
            }
            EventKind::AttemptEnded {
                op,
                attempt,
                result,
            } => {
                self.retries
                    .on_attempt_ended(time, *op, *attempt, result, report);
                self.batches
                    .on_attempt_ended(time, *op, *attempt, result, report);
            }
            EventKind::ChannelDeclared { channel, capacity } => {
                self.channels.on_declared(time, *channel, *capacity, report)
            }
            EventKind::PermitReserved { channel, permit } => {
                self.channels.on_reserved(time, *channel, *permit, report)
            }
            EventKind::PermitSent { channel, permit } => {
                self.channels.on_sent(time, *channel, *permit, report)
            }
            EventKind::PermitAborted { channel, permit }
            | EventKind::PermitDropped { channel, permit } => {
                self.channels.on_aborted(time, *channel, *permit, report)
            }
            EventKind::PermitDelivered { channel, permit } => {
                self.channels.on_delivered(time, *channel, *permit, report)
            }
            EventKind::BatchValidated { batch, requests } => {
                if self.batches.on_validated(time, *batch, requests, report) {
                    self.log.on_validated(requests);
                }
            }
            EventKind::WalAppended { batch, ok } => {
                if let Some(requests) = self.batches.on_wal_appended(time, *batch, *ok, report) {
                    let first = self.log.on_appended(requests);
                    self.batches.set_first_position(*batch, first);
                    self.fcw.on_appended(time, requests, report);
                }
            }
            EventKind::FsyncReturned { batch, ok } => {
                self.batches.on_fsync(time, *batch, *ok, report)
            }
            EventKind::Published { batch, commit_seqs } => {
                if let Some((first, requests)) =
                    self.batches.on_published(time, *batch, commit_seqs, report)
                {
                    self.log
                        .on_published(time, first, requests, commit_seqs, report);
                    self.reads.on_published(time, requests, commit_seqs, report);
                }
            }
            EventKind::ServerCrash { .. } => {
                self.log.on_crash(time);
                self.batches.on_crash();
                self.channels.on_crash();
                self.queues.on_crash();
                self.repairs.on_crash();
            }
            EventKind::Recovered(recovery) => self.on_recovered(time, recovery),
            EventKind::Repair {
                commit_seq,
                event_seq,
                kind,
            } => self
                .repairs
                .on_event(time, *commit_seq, *event_seq, *kind, report),
            EventKind::RepairSettled {
                commit_seq,
                state,
                symbols,
            } => self
                .repairs
                .on_settled(time, *commit_seq, *state, symbols.as_deref(), report),
            EventKind::QueueDeclared {
                queue,
                capacity,
                overflow,
            } => self
                .queues
                .on_declared(time, *queue, *capacity, *overflow, report),
            EventKind::QueueEnqueued {
                queue,
                item,
                occupancy_after,
            } => self
                .queues
                .on_enqueued(time, *queue, *item, *occupancy_after, report),
            EventKind::QueueSenderBlocked { queue, item } => {
                self.queues.on_blocked(time, *queue, *item, report)
            }
            EventKind::QueueEnqueueFailed { queue, item } => {
                self.queues.on_failed(time, *queue, *item, report)
            }
            EventKind::QueueDequeued {
                queue,
                item,
                occupancy_after,
            } => self
                .queues
                .on_dequeued(time, *queue, *item, *occupancy_after, report),
            EventKind::QueueDroppedOldest { queue, item } => {
                self.queues.on_dropped(time, *queue, *item, report)
            }
            EventKind::QueueDropReported { queue, item } => {
                self.queues.on_drop_reported(time, *queue, *item, report)
            }
            EventKind::LifecycleActorEnded {
                iteration,
                actor,
                op,
                outcome,
            } => self
                .lifecycle
                .on_actor_ended(time, *iteration, *actor, op, outcome, report),
            EventKind::LifecycleObserved {
                iteration,
                after_reconcile,
                state,
            } => self
                .lifecycle
                .on_observed(time, *iteration, *after_reconcile, state, report),
            // ----- Snapshot persistence (spec 05) -----
            EventKind::SnapInvoked { op, kind, channel } => self
                .snapshots
                .on_invoked(time, *op, *kind, *channel, report),
            EventKind::SnapSaveIssued { op, channel, point } => self
                .snapshots
                .on_save_issued(time, *op, *channel, point, report),
            EventKind::SnapFlushIssued { op, channel, delta } => self
                .snapshots
                .on_flush_issued(time, *op, *channel, delta, report),
            EventKind::SnapDropIssued { op, channel } => {
                self.snapshots.on_drop_issued(time, *op, *channel, report)
            }
            EventKind::SnapCallReturned {
                op,
                channel,
                call,
                ok,
            } => self
                .snapshots
                .on_call_returned(time, *op, *channel, *call, *ok, report),
            EventKind::SnapLoaded {
                op,
                channel,
                loaded,
            } => self
                .snapshots
                .on_loaded(time, *op, *channel, loaded.as_deref(), report),
            EventKind::SnapReturned { op, result } => {
                self.snapshots.on_returned(time, *op, *result, report)
            }
        }
    }

    /// A recovery: the durable log judges it, and when it keeps the
    /// previous log as its prefix the batches' recovery credit and the page
    /// replay ride on the durable log's walk of the new entries (each would
    /// walk exactly those) instead of walking them again.
    fn on_recovered(&mut self, time: SimTime, recovery: &'h Recovery) {
        let log = &recovery.log;
        let state = recovery.state.as_deref();
        let corruption_from = recovery.corruption_reported_from;
        let report = &mut self.report;
        let base_len = self.log.model().base().len();
        let mut walk = self.batches.recovery_walk(log.len(), true, &self.owners);
        let replay_from = self.state.replay_from(log.len(), true);
        let visited = if walk.from == base_len && replay_from == Some(base_len) {
            let (batches, replayed, owners) = (&mut self.batches, &mut self.state, &self.owners);
            self.log
                .on_recovered(time, log, state, corruption_from, report, |entry| {
                    batches.credit_recovered(&mut walk, time, entry, owners);
                    replayed.replay(entry);
                })
        } else {
            self.log
                .on_recovered(time, log, state, corruption_from, report, |_| {});
            false
        };
        if visited {
            self.batches
                .end_recovery_walk(walk, log.len(), &mut self.owners);
            self.state.end_replay(time, log, state, report);
        } else {
            let extends_previous = self.log.model().extends_previous();
            self.batches
                .on_recovered(time, log, extends_previous, &mut self.owners);
            self.state
                .on_recovered(time, log, extends_previous, state, report);
        }
        self.fcw.on_recovered(log, self.state.replayed());
        self.reads.on_recovered(time, log, report);
    }

    fn on_phase(&mut self, time: SimTime, phase: Phase) {
        match phase {
            Phase::Heal {
                bound,
                resolves_unknown,
            } => {
                self.phases
                    .heal
                    .get_or_insert((time, bound, resolves_unknown));
            }
            Phase::Quiescence => {
                if self.phases.quiescence.is_none() {
                    self.phases.quiescence = Some(time);
                    self.ops.on_quiescence(time, &mut self.report);
                    self.channels.on_quiescence(time, &mut self.report);
                }
            }
            Phase::Fault | Phase::FinalCrash => {}
        }
    }

    fn finish(mut self) -> Vec<Violation> {
        let report = &mut self.report;
        self.ops.finish(
            &self.phases,
            |event_id| self.log.ever_applied(event_id),
            report,
        );
        self.reads.finish(report);
        self.queues.finish(self.phases.end, report);
        self.repairs.finish(&self.phases, report);
        self.lifecycle.finish(report);
        self.report.violations
    }
}
