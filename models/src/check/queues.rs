//! Bounded queues (spec 04), through [`crate::model::queue::BoundedQueue`]:
//!
//! | breach | invariant |
//! |--------|-----------|
//! | length beyond capacity (a `Block` sender that did not wait, a `DropOldest` enqueue without eviction, …); recorded occupancy differs from the model's; an overflow reaction the policy does not call for, or with room left; a drop never reported, or a report with no drop; records for an undeclared queue | D12 backpressure |
//! | an item leaves ahead of an older one | D4 order |
//! | an item leaves that was never queued | D3 no-phantom |
//!
//! A server crash loses every queue (in memory); queues are declared again
//! after a restart. Unreported drops are judged at the end of the history.
//!
//! Does not verify: coalescing, backend landing (exactly-once per
//! enqueued op is the queued writer's scenario), how long a sender waited.

use crate::history::{ItemId, OverflowPolicy, QueueId, SimTime};
use crate::model::queue::{BoundedQueue, QueueBreach};
use crate::violation::InvariantId;

use super::declared::Declared;
use super::Report;

/// Every declared queue.
#[derive(Debug)]
pub(crate) struct Queues {
    queues: Declared<BoundedQueue>,
    /// Queues lost in a crash keep their unreported drops for the end.
    lost: Vec<(QueueId, BoundedQueue)>,
}

impl Default for Queues {
    fn default() -> Self {
        Self {
            queues: Declared::new("queue"),
            lost: Vec::new(),
        }
    }
}

impl Queues {
    pub(crate) fn on_declared(
        &mut self,
        time: SimTime,
        queue: QueueId,
        capacity: u32,
        overflow: OverflowPolicy,
        report: &mut Report,
    ) {
        let model = BoundedQueue::new(capacity, overflow);
        if let Some(previous) = self
            .queues
            .declare(time, queue, capacity, "", model, report)
        {
            self.lost.push((queue, previous));
        }
    }

    fn apply(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        report: &mut Report,
        step: impl FnOnce(&mut BoundedQueue) -> Vec<QueueBreach>,
    ) {
        let Some(model) = self.queues.get_mut(time, queue, report) else {
            return;
        };
        for breach in step(model) {
            explain(time, queue, item, breach, report);
        }
    }

    pub(crate) fn on_enqueued(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        occupancy: u32,
        report: &mut Report,
    ) {
        self.apply(time, queue, item, report, |model| {
            model.enqueue(item, occupancy)
        });
    }

    pub(crate) fn on_blocked(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        report: &mut Report,
    ) {
        self.apply(time, queue, item, report, BoundedQueue::sender_blocked);
    }

    pub(crate) fn on_failed(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        report: &mut Report,
    ) {
        self.apply(time, queue, item, report, BoundedQueue::enqueue_failed);
    }

    pub(crate) fn on_dequeued(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        occupancy: u32,
        report: &mut Report,
    ) {
        self.apply(time, queue, item, report, |model| {
            model.dequeue(item, occupancy)
        });
    }

    pub(crate) fn on_dropped(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        report: &mut Report,
    ) {
        self.apply(time, queue, item, report, |model| model.drop_oldest(item));
    }

    pub(crate) fn on_drop_reported(
        &mut self,
        time: SimTime,
        queue: QueueId,
        item: ItemId,
        report: &mut Report,
    ) {
        self.apply(time, queue, item, report, |model| model.drop_reported(item));
    }

    pub(crate) fn on_crash(&mut self) {
        let queues = self.queues.take_all();
        self.lost.extend(queues);
    }

    pub(crate) fn finish(&self, end: SimTime, report: &mut Report) {
        let all = self
            .lost
            .iter()
            .map(|(id, model)| (*id, model))
            .chain(self.queues.iter());
        for (queue, model) in all {
            for breach in model.unreported_drops() {
                if let QueueBreach::DropNotReported { item } = breach {
                    explain(end, queue, item, breach, report);
                }
            }
        }
    }
}

fn explain(time: SimTime, queue: QueueId, item: ItemId, breach: QueueBreach, report: &mut Report) {
    let (invariant, message) = match breach {
        QueueBreach::OverCapacity { capacity } => (
            InvariantId::D12,
            format!("queue {queue}: item {item} is enqueued while the queue is full (capacity {capacity})"),
        ),
        QueueBreach::OccupancyMismatch { expected, recorded } => (
            InvariantId::D12,
            format!("queue {queue}: after item {item} the system reports {recorded} queued, the model counts {expected}"),
        ),
        QueueBreach::WrongOverflowReaction { policy } => (
            InvariantId::D12,
            format!("queue {queue}: item {item} met an overflow reaction its policy {policy:?} does not call for"),
        ),
        QueueBreach::OverflowWithRoom { len } => (
            InvariantId::D12,
            format!("queue {queue}: item {item} met an overflow reaction while only {len} items were queued"),
        ),
        QueueBreach::OutOfOrder { expected } => (
            InvariantId::D4,
            format!("queue {queue}: item {item} leaves ahead of the older item {expected}"),
        ),
        QueueBreach::NotQueued => (
            InvariantId::D3,
            format!("queue {queue}: item {item} leaves but was never queued"),
        ),
        QueueBreach::ReportWithoutDrop => (
            InvariantId::D12,
            format!("queue {queue}: a drop of item {item} is reported but it was never dropped"),
        ),
        QueueBreach::DropNotReported { item } => (
            InvariantId::D12,
            format!("queue {queue}: item {item} was dropped (DropOldest) but the drop was never reported"),
        ),
    };
    report.add(invariant, time, vec![], message);
}
