//! A bounded FIFO queue with an overflow policy (spec 04): `Block` (the
//! sender waits until there is room), `DropOldest` (the oldest item is
//! evicted, and every eviction must be reported), `Fail` (the enqueue
//! errors at once). Length never exceeds capacity; items leave in the order
//! they came; the recorded occupancy must be the model's.
//!
//! Not modelled: batching and coalescing in the writer, backends.

use std::collections::{BTreeSet, VecDeque};

use crate::history::{ItemId, OverflowPolicy};

/// A broken guarantee of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBreach {
    /// An enqueue while the queue was full.
    OverCapacity {
        /// The capacity.
        capacity: u32,
    },
    /// The recorded occupancy differs from the model's.
    OccupancyMismatch {
        /// The model's.
        expected: u32,
        /// The recorded one.
        recorded: u32,
    },
    /// An overflow reaction that the policy does not call for.
    WrongOverflowReaction {
        /// The policy.
        policy: OverflowPolicy,
    },
    /// An overflow reaction while there was room.
    OverflowWithRoom {
        /// Items queued.
        len: u32,
    },
    /// An item left ahead of an older one.
    OutOfOrder {
        /// The item that should have left.
        expected: ItemId,
    },
    /// An item left that was not queued.
    NotQueued,
    /// A drop report for an item that was not dropped.
    ReportWithoutDrop,
    /// A drop never reported.
    DropNotReported {
        /// The item.
        item: ItemId,
    },
}

/// One queue's state; see the module docs.
#[derive(Debug, Clone)]
pub struct BoundedQueue {
    capacity: u32,
    overflow: OverflowPolicy,
    items: VecDeque<ItemId>,
    unreported_drops: BTreeSet<ItemId>,
}

impl BoundedQueue {
    /// An empty queue.
    pub fn new(capacity: u32, overflow: OverflowPolicy) -> Self {
        Self {
            capacity,
            overflow,
            items: VecDeque::new(),
            unreported_drops: BTreeSet::new(),
        }
    }

    fn len(&self) -> u32 {
        u32::try_from(self.items.len()).unwrap_or(u32::MAX)
    }

    fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    fn check_occupancy(&self, recorded: u32, breaches: &mut Vec<QueueBreach>) {
        if recorded != self.len() {
            breaches.push(QueueBreach::OccupancyMismatch {
                expected: self.len(),
                recorded,
            });
        }
    }

    fn check_overflow_reaction(&self, reaction: OverflowPolicy, breaches: &mut Vec<QueueBreach>) {
        if self.overflow != reaction {
            breaches.push(QueueBreach::WrongOverflowReaction {
                policy: self.overflow,
            });
        }
        if !self.is_full() {
            breaches.push(QueueBreach::OverflowWithRoom { len: self.len() });
        }
    }

    /// `item` was enqueued; the system says the length is now `occupancy_after`.
    pub fn enqueue(&mut self, item: ItemId, occupancy_after: u32) -> Vec<QueueBreach> {
        let mut breaches = Vec::new();
        if self.is_full() {
            breaches.push(QueueBreach::OverCapacity {
                capacity: self.capacity,
            });
        }
        self.items.push_back(item);
        self.check_occupancy(occupancy_after, &mut breaches);
        breaches
    }

    /// A `Block` sender started waiting.
    pub fn sender_blocked(&mut self) -> Vec<QueueBreach> {
        let mut breaches = Vec::new();
        self.check_overflow_reaction(OverflowPolicy::Block, &mut breaches);
        breaches
    }

    /// A `Fail` enqueue errored.
    pub fn enqueue_failed(&mut self) -> Vec<QueueBreach> {
        let mut breaches = Vec::new();
        self.check_overflow_reaction(OverflowPolicy::Fail, &mut breaches);
        breaches
    }

    /// `DropOldest` evicted `item`.
    pub fn drop_oldest(&mut self, item: ItemId) -> Vec<QueueBreach> {
        let mut breaches = Vec::new();
        self.check_overflow_reaction(OverflowPolicy::DropOldest, &mut breaches);
        self.take(item, &mut breaches);
        self.unreported_drops.insert(item);
        breaches
    }

    /// The drop of `item` was reported.
    pub fn drop_reported(&mut self, item: ItemId) -> Vec<QueueBreach> {
        if self.unreported_drops.remove(&item) {
            Vec::new()
        } else {
            vec![QueueBreach::ReportWithoutDrop]
        }
    }

    /// `item` was dequeued; the length is now `occupancy_after`.
    pub fn dequeue(&mut self, item: ItemId, occupancy_after: u32) -> Vec<QueueBreach> {
        let mut breaches = Vec::new();
        self.take(item, &mut breaches);
        self.check_occupancy(occupancy_after, &mut breaches);
        breaches
    }

    fn take(&mut self, item: ItemId, breaches: &mut Vec<QueueBreach>) {
        match self.items.front() {
            Some(front) if *front == item => {
                self.items.pop_front();
            }
            Some(front) => {
                let expected = *front;
                match self.items.iter().position(|queued| *queued == item) {
                    Some(index) => {
                        breaches.push(QueueBreach::OutOfOrder { expected });
                        self.items.remove(index);
                    }
                    None => breaches.push(QueueBreach::NotQueued),
                }
            }
            None => breaches.push(QueueBreach::NotQueued),
        }
    }

    /// Drops never reported, in item order.
    pub fn unreported_drops(&self) -> Vec<QueueBreach> {
        self.unreported_drops
            .iter()
            .map(|item| QueueBreach::DropNotReported { item: *item })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_waits_and_fifo_order_is_kept() {
        let mut queue = BoundedQueue::new(2, OverflowPolicy::Block);
        assert!(queue.enqueue(1, 1).is_empty());
        assert_eq!(
            queue.sender_blocked(),
            vec![QueueBreach::OverflowWithRoom { len: 1 }]
        );
        assert!(queue.enqueue(2, 2).is_empty());
        assert!(queue.sender_blocked().is_empty());
        assert_eq!(
            queue.enqueue(3, 3),
            vec![QueueBreach::OverCapacity { capacity: 2 }]
        );
        assert_eq!(
            queue.dequeue(2, 2),
            vec![QueueBreach::OutOfOrder { expected: 1 }]
        );
        assert_eq!(
            queue.dequeue(1, 0),
            vec![QueueBreach::OccupancyMismatch {
                expected: 1,
                recorded: 0
            }]
        );
    }

    #[test]
    fn drop_oldest_evicts_the_front_and_needs_a_report() {
        let mut queue = BoundedQueue::new(1, OverflowPolicy::DropOldest);
        queue.enqueue(1, 1);
        assert!(queue.drop_oldest(1).is_empty());
        assert!(queue.enqueue(2, 1).is_empty());
        assert_eq!(
            queue.unreported_drops(),
            vec![QueueBreach::DropNotReported { item: 1 }]
        );
        assert!(queue.drop_reported(1).is_empty());
        assert_eq!(queue.drop_reported(1), vec![QueueBreach::ReportWithoutDrop]);
        assert!(queue.unreported_drops().is_empty());
        assert_eq!(
            queue.enqueue_failed(),
            vec![QueueBreach::WrongOverflowReaction {
                policy: OverflowPolicy::DropOldest
            }]
        );
    }
}
