//! D13 snapshot-restart (spec 05), through
//! [`crate::model::snapshot::SnapshotStore`]:
//!
//! | breach | invariant |
//! |--------|-----------|
//! | a load after restart finds a meta snapshot or a delivered history that is neither what the last successful call left nor what a later failed or unfinished call may have left | D13 |
//! | a save point whose meta save returned and whose history flush succeeded (or was not needed) leaves a durable history that differs from the in-memory history it saved: a delta lost from the pending-write queue, or a wrong merge | D13 |
//! | a foreground operation returns a persistence error; a durability-intent operation (bootstrap, remove, reset) returns `Ok` although one of its persistence calls failed, or a `remove`/`reset` returns `Ok` while its channels may still be on disk | D13 |
//! | a save point out of order: a second meta save, or a flush before the meta save returned or twice, in one operation on one channel | D13 |
//! | malformed records: an operation invoked twice or used before it was invoked, a call returning that was never issued | D13 |
//!
//! # Why the failure policy is D13
//! Spec 05's failure policy says what a caller may believe about the
//! durable protocol state. A foreground operation's change lives on in
//! memory and reaches the disk with the next snapshot, so a surfaced
//! persistence error tells the caller "not done" about an effect that the
//! restart will show; a durability-intent operation that swallows an error
//! tells the caller "on disk" when the restart may show otherwise. Both
//! are lies about what a restart recovers — the subject of D13 — and they
//! concern spec 05's operations, whose records no other checker reads
//! (D6 judges the commit service's client operations).
//!
//! Does not verify: retrieval hints, the protocol's own rules (dependency
//! cascades, Lamport order, FIFO eviction: the spec tests check them),
//! whether background sweeps save exactly the dirty channels.

use std::collections::BTreeMap;

use crate::history::{
    OpId, SimTime, SnapCall, SnapChannelId, SnapChannelState, SnapDelta, SnapMsgId, SnapOpKind,
    SnapResult,
};
use crate::model::snapshot::SnapshotStore;
use crate::violation::InvariantId;

use super::Report;

/// The history flush of one save point.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flush {
    NotIssued,
    Issued(SnapDelta),
    Succeeded,
    Failed,
}

/// One save point of an operation on one channel.
#[derive(Debug)]
struct SavePoint {
    state: SnapChannelState,
    meta_returned: bool,
    flush: Flush,
}

/// An operation between its invocation and its return.
#[derive(Debug)]
struct OpenOp {
    kind: SnapOpKind,
    channel: Option<SnapChannelId>,
    failed_calls: u32,
    points: BTreeMap<SnapChannelId, SavePoint>,
    drops_issued: BTreeMap<SnapChannelId, bool>,
}

/// The D13 checker.
#[derive(Debug, Default)]
pub(crate) struct SnapshotRestart {
    store: SnapshotStore,
    open: BTreeMap<OpId, OpenOp>,
    seen: std::collections::BTreeSet<OpId>,
}

fn list(ids: &[SnapMsgId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    format!("[{}]", ids.join(", "))
}

fn add(report: &mut Report, time: SimTime, op: OpId, message: String) {
    report.add(InvariantId::D13, time, vec![op], message);
}

/// `op`, when open; reported as malformed otherwise.
fn open_op<'a>(
    open: &'a mut BTreeMap<OpId, OpenOp>,
    time: SimTime,
    op: OpId,
    report: &mut Report,
) -> Option<&'a mut OpenOp> {
    if !open.contains_key(&op) {
        add(
                report,
                time,
                op,
            format!("malformed history: spec 05 operation {op} is used but not open (never invoked, or already returned)"),
        );
    }
    open.get_mut(&op)
}

impl SnapshotRestart {
    pub(crate) fn on_invoked(
        &mut self,
        time: SimTime,
        op: OpId,
        kind: SnapOpKind,
        channel: Option<SnapChannelId>,
        report: &mut Report,
    ) {
        if !self.seen.insert(op) {
            add(
                report,
                time,
                op,
                format!("malformed history: spec 05 operation {op} is invoked twice"),
            );
            return;
        }
        self.open.insert(
            op,
            OpenOp {
                kind,
                channel,
                failed_calls: 0,
                points: BTreeMap::new(),
                drops_issued: BTreeMap::new(),
            },
        );
    }

    pub(crate) fn on_save_issued(
        &mut self,
        time: SimTime,
        op: OpId,
        channel: SnapChannelId,
        point: &SnapChannelState,
        report: &mut Report,
    ) {
        let Some(open) = open_op(&mut self.open, time, op, report) else {
            return;
        };
        if open.points.contains_key(&channel) {
            add(
                report,
                time,
                op,
                format!("operation {op} saves channel {channel}'s meta twice: a save point has exactly one meta save"),
            );
        }
        open.points.insert(
            channel,
            SavePoint {
                state: point.clone(),
                meta_returned: false,
                flush: Flush::NotIssued,
            },
        );
        if let Some(meta) = &point.meta {
            self.store.save_issued(channel, meta);
        }
    }

    pub(crate) fn on_flush_issued(
        &mut self,
        time: SimTime,
        op: OpId,
        channel: SnapChannelId,
        delta: &SnapDelta,
        report: &mut Report,
    ) {
        let Some(open) = open_op(&mut self.open, time, op, report) else {
            return;
        };
        match open.points.get_mut(&channel) {
            Some(point) if point.meta_returned && point.flush == Flush::NotIssued => {
                point.flush = Flush::Issued(delta.clone());
            }
            _ => {
                add(
                    report,
                    time,
                    op,
                    format!("operation {op} flushes channel {channel}'s history outside a save point (before its meta save returned, or twice)"),
                );
                return;
            }
        }
        if delta.appends.is_empty() && delta.evicts.is_empty() {
            add(
                report,
                time,
                op,
                format!("operation {op} flushes an empty history delta on channel {channel}"),
            );
        }
        self.store.flush_issued(channel, delta);
    }

    pub(crate) fn on_drop_issued(
        &mut self,
        time: SimTime,
        op: OpId,
        channel: SnapChannelId,
        report: &mut Report,
    ) {
        let Some(open) = open_op(&mut self.open, time, op, report) else {
            return;
        };
        open.drops_issued.insert(channel, false);
        self.store.drop_issued(channel);
    }

    pub(crate) fn on_call_returned(
        &mut self,
        time: SimTime,
        op: OpId,
        channel: SnapChannelId,
        call: SnapCall,
        ok: bool,
        report: &mut Report,
    ) {
        let Some(open) = open_op(&mut self.open, time, op, report) else {
            return;
        };
        if !ok {
            open.failed_calls += 1;
        }
        let never_issued = match call {
            SnapCall::SaveMeta => match open.points.get_mut(&channel) {
                Some(point) if !point.meta_returned => {
                    point.meta_returned = true;
                    if ok {
                        if let Some(meta) = &point.state.meta {
                            self.store.save_succeeded(channel, meta);
                        }
                    }
                    false
                }
                _ => true,
            },
            SnapCall::UpdateHistory => match open.points.get_mut(&channel) {
                Some(point) => match std::mem::replace(&mut point.flush, Flush::Failed) {
                    Flush::Issued(delta) => {
                        if ok {
                            point.flush = Flush::Succeeded;
                            self.store.flush_succeeded(channel, &delta);
                        }
                        false
                    }
                    other => {
                        point.flush = other;
                        true
                    }
                },
                None => true,
            },
            SnapCall::Drop => match open.drops_issued.get_mut(&channel) {
                Some(done) if !*done => {
                    *done = true;
                    if ok {
                        self.store.drop_succeeded(channel);
                    }
                    false
                }
                _ => true,
            },
            SnapCall::Load | SnapCall::SetHint => false,
        };
        if never_issued {
            add(
                report,
                time,
                op,
                format!("malformed history: operation {op}'s {call:?} call on channel {channel} returns but was not issued (or returned already)"),
            );
        }
    }

    pub(crate) fn on_loaded(
        &mut self,
        time: SimTime,
        op: OpId,
        channel: SnapChannelId,
        loaded: Option<&SnapChannelState>,
        report: &mut Report,
    ) {
        let Some(open) = open_op(&mut self.open, time, op, report) else {
            return;
        };
        let Some(state) = loaded else {
            open.failed_calls += 1;
            return;
        };
        let durable = self.store.channel(channel);
        if !durable.meta.admits(&state.meta) {
            let n = durable.meta.possible.len();
            add(
                report,
                time,
                op,
                format!(
                    "after restart channel {channel} loads meta {}, but the last successful snapshot holds {} ({n} later save(s) in doubt, none matching)",
                    describe(state.meta.as_ref()),
                    describe(durable.meta.certain.as_ref()),
                ),
            );
        }
        if !durable.history.admits(&state.history) {
            let n = durable.history.possible.len();
            add(
                report,
                time,
                op,
                format!(
                    "after restart channel {channel} loads delivered history {}, but the flushed history is {} ({n} later flush(es) in doubt, none matching)",
                    list(&state.history),
                    list(&durable.history.certain),
                ),
            );
        }
        self.store.loaded(channel, state);
    }

    pub(crate) fn on_returned(
        &mut self,
        time: SimTime,
        op: OpId,
        result: SnapResult,
        report: &mut Report,
    ) {
        if open_op(&mut self.open, time, op, report).is_none() {
            return;
        }
        let Some(open) = self.open.remove(&op) else {
            return;
        };
        for (channel, point) in &open.points {
            let settled = matches!(point.flush, Flush::NotIssued | Flush::Succeeded);
            if !point.meta_returned || !settled {
                continue;
            }
            let durable = self.store.channel(*channel).history.certain;
            if durable != point.state.history {
                let how = if point.flush == Flush::Succeeded {
                    "ended with a successful history flush"
                } else {
                    "ended without a history flush"
                };
                add(
                    report,
                    time,
                    op,
                    format!(
                        "operation {op}'s save point on channel {channel} {how}, yet the durable delivered history is {} while memory holds {}: a history delta was lost",
                        list(&durable),
                        list(&point.state.history),
                    ),
                );
            }
        }
        self.judge_policy(time, op, &open, result, report);
    }

    fn judge_policy(
        &self,
        time: SimTime,
        op: OpId,
        open: &OpenOp,
        result: SnapResult,
        report: &mut Report,
    ) {
        let kind = open.kind;
        let failed = open.failed_calls > 0;
        if result == SnapResult::PersistenceError && !kind.is_durability_intent() {
            add(
                report,
                time,
                op,
                format!("foreground operation {op} ({kind:?}) surfaces a persistence error: foreground persistence failures are non-fatal"),
            );
        } else if result == SnapResult::PersistenceError && !failed {
            add(
                report,
                time,
                op,
                format!("operation {op} ({kind:?}) returns a persistence error although every persistence call succeeded"),
            );
        }
        if result != SnapResult::Ok || !kind.is_durability_intent() {
            return;
        }
        if failed {
            add(
                report,
                time,
                op,
                format!("durability-intent operation {op} ({kind:?}) returns Ok although {} persistence call(s) failed: the error was swallowed", open.failed_calls),
            );
        }
        let targets: Vec<SnapChannelId> = match (kind, open.channel) {
            (SnapOpKind::Remove, Some(channel)) => vec![channel],
            (SnapOpKind::Reset, _) => self.store.channel_ids(),
            _ => Vec::new(),
        };
        for channel in targets {
            if !self.store.channel(channel).certainly_absent() {
                add(
                    report,
                    time,
                    op,
                    format!("{kind:?} operation {op} returns Ok while channel {channel} may still be on disk"),
                );
            }
        }
    }
}

fn describe(meta: Option<&crate::history::SnapMeta>) -> String {
    let Some(meta) = meta else {
        return "nothing".into();
    };
    let pairs = |items: &[(SnapMsgId, u64)], sep: &str| {
        let items: Vec<String> = items
            .iter()
            .map(|(id, v)| format!("{id}{sep}{v}"))
            .collect();
        items.join(" ")
    };
    let outgoing: Vec<(SnapMsgId, u64)> = meta
        .outgoing
        .iter()
        .map(|(id, n)| (*id, u64::from(*n)))
        .collect();
    let waiting: Vec<String> = meta
        .incoming
        .iter()
        .map(|(id, missing)| format!("{id}<-{}", list(missing)))
        .collect();
    format!(
        "{{lamport {}; outgoing {}; waiting {}; repair out {}; repair in {}}}",
        meta.lamport,
        pairs(&outgoing, "x"),
        waiting.join(" "),
        pairs(&meta.repair_out, "@"),
        pairs(&meta.repair_in, "@"),
    )
}
