//! The pending-write queue of spec 05: history appends and evicts waiting
//! to be flushed, merged latest-wins.
//!
//! History deltas cannot be re-derived from a meta snapshot, so they wait
//! here until a flush succeeds. At most one entry per id: queueing an
//! append cancels a pending evict of the same id and vice versa (the
//! newer one replaces the older at the end of the queue), so applying the
//! queue to the last flushed history gives the in-memory history.

use super::MsgId;

/// A queued history change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingOp {
    /// The id was appended to the delivered history.
    Append,
    /// The id was evicted from it.
    Evict,
}

/// One channel's queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingQueue {
    entries: Vec<(MsgId, PendingOp)>,
    /// Known bug `evict-wins-merge`: an append never cancels a pending
    /// evict (it is dropped instead).
    evict_wins: bool,
}

impl PendingQueue {
    /// An empty queue; `evict_wins` switches on the known bug.
    pub fn new(evict_wins: bool) -> Self {
        PendingQueue {
            entries: Vec::new(),
            evict_wins,
        }
    }

    /// Queue `op` for `id`, merging with a pending entry for the same id.
    pub fn queue(&mut self, id: MsgId, op: PendingOp) {
        if let Some(at) = self.entries.iter().position(|(queued, _)| *queued == id) {
            let (_, older) = self.entries[at];
            if self.evict_wins && older == PendingOp::Evict && op == PendingOp::Append {
                return;
            }
            self.entries.remove(at);
        }
        self.entries.push((id, op));
    }

    /// The combined delta: appends in queue order, then evicts.
    pub fn delta(&self) -> (Vec<MsgId>, Vec<MsgId>) {
        let pick = |want: PendingOp| {
            self.entries
                .iter()
                .filter(|(_, op)| *op == want)
                .map(|(id, _)| *id)
                .collect()
        };
        (pick(PendingOp::Append), pick(PendingOp::Evict))
    }

    /// Ids with a pending append.
    pub fn appends(&self) -> impl Iterator<Item = MsgId> + '_ {
        self.entries
            .iter()
            .filter(|(_, op)| *op == PendingOp::Append)
            .map(|(id, _)| *id)
    }

    /// Forget everything (after a successful flush, a removal, a reset).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_wins_in_both_directions() {
        let mut queue = PendingQueue::new(false);
        queue.queue(1, PendingOp::Append);
        queue.queue(2, PendingOp::Evict);
        queue.queue(1, PendingOp::Evict);
        queue.queue(2, PendingOp::Append);
        assert_eq!(queue.delta(), (vec![2], vec![1]));
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn the_evict_wins_bug_drops_a_re_append() {
        let mut queue = PendingQueue::new(true);
        queue.queue(1, PendingOp::Evict);
        queue.queue(1, PendingOp::Append);
        assert_eq!(queue.delta(), (vec![], vec![1]));
    }
}
