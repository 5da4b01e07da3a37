//! One channel's protocol state (spec 05).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use durasim_models::{SnapChannelState, SnapMeta};

use super::MsgId;

/// An unacknowledged outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingEntry {
    /// How often the sweep resent it.
    pub resend_count: u32,
}

/// Everything about a channel except its delivered history: what one
/// `save_channel_meta` snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelMeta {
    /// The Lamport clock: +1 per send, max(local, remote) + 1 per receive.
    pub lamport: u64,
    /// Unacknowledged outgoing messages.
    pub outgoing: BTreeMap<MsgId, OutgoingEntry>,
    /// Received messages waiting on missing dependencies: id → missing ids.
    pub incoming: BTreeMap<MsgId, BTreeSet<MsgId>>,
    /// Outgoing repairs (answers to duplicates): id → absolute due time, ms.
    pub repair_out: BTreeMap<MsgId, u64>,
    /// Repair requests for missing dependencies: id → absolute due time, ms.
    pub repair_in: BTreeMap<MsgId, u64>,
}

impl ChannelMeta {
    /// The models' view of this meta.
    pub fn to_model(&self) -> SnapMeta {
        SnapMeta {
            lamport: self.lamport,
            outgoing: self
                .outgoing
                .iter()
                .map(|(id, e)| (*id, e.resend_count))
                .collect(),
            incoming: self
                .incoming
                .iter()
                .map(|(id, missing)| (*id, missing.iter().copied().collect()))
                .collect(),
            repair_out: self.repair_out.iter().map(|(id, t)| (*id, *t)).collect(),
            repair_in: self.repair_in.iter().map(|(id, t)| (*id, *t)).collect(),
        }
    }
}

/// A small bloom filter over message ids: 256 bits, 3 probes. It can only
/// grow, so the history rebuilds it once as many ids were evicted as it
/// holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bloom {
    bits: [u64; 4],
}

impl Bloom {
    fn probes(id: MsgId) -> [usize; 3] {
        let h = xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes());
        [
            (h & 0xff) as usize,
            ((h >> 8) & 0xff) as usize,
            ((h >> 16) & 0xff) as usize,
        ]
    }

    /// Add `id`.
    pub fn insert(&mut self, id: MsgId) {
        for bit in Self::probes(id) {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False: `id` was never inserted. True: it may have been.
    pub fn may_contain(&self, id: MsgId) -> bool {
        Self::probes(id)
            .iter()
            .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The delivered-message history: bounded, FIFO eviction, with a bloom
/// filter for the common "not delivered" answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredHistory {
    ids: VecDeque<MsgId>,
    capacity: usize,
    bloom: Bloom,
    evicted_since_rebuild: usize,
}

impl DeliveredHistory {
    /// An empty history holding at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        DeliveredHistory {
            ids: VecDeque::new(),
            capacity: capacity.max(1),
            bloom: Bloom::default(),
            evicted_since_rebuild: 0,
        }
    }

    /// A history loaded from disk, oldest first; the bloom filter is
    /// rebuilt from it. Ids beyond `capacity` are evicted, oldest first.
    pub fn from_ids(capacity: usize, ids: &[MsgId]) -> Self {
        let mut history = DeliveredHistory::new(capacity);
        let skip = ids.len().saturating_sub(history.capacity);
        history.ids.extend(ids.iter().skip(skip).copied());
        history.rebuild_bloom();
        history
    }

    fn rebuild_bloom(&mut self) {
        self.bloom = Bloom::default();
        for id in &self.ids {
            self.bloom.insert(*id);
        }
        self.evicted_since_rebuild = 0;
    }

    /// Whether `id` was delivered (and not evicted since).
    pub fn contains(&self, id: MsgId) -> bool {
        self.bloom.may_contain(id) && self.ids.contains(&id)
    }

    /// Append a delivered `id` (absent: the caller checked), evicting the
    /// oldest id when full; returns the evicted id.
    pub fn push(&mut self, id: MsgId) -> Option<MsgId> {
        debug_assert!(!self.ids.contains(&id), "id {id} is delivered twice");
        let evicted = if self.ids.len() >= self.capacity {
            self.ids.pop_front()
        } else {
            None
        };
        self.ids.push_back(id);
        self.bloom.insert(id);
        if evicted.is_some() {
            self.evicted_since_rebuild += 1;
            if self.evicted_since_rebuild >= self.capacity {
                self.rebuild_bloom();
            }
        }
        debug_assert!(self.ids.len() <= self.capacity);
        evicted
    }

    /// The ids, oldest first.
    pub fn ids(&self) -> Vec<MsgId> {
        self.ids.iter().copied().collect()
    }

    /// The bloom filter (a test hook: after a load it holds every id).
    pub fn bloom(&self) -> &Bloom {
        &self.bloom
    }

    /// Most ids held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing was delivered (or all was evicted and reloaded empty).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A channel's whole protocol state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// Everything but the history.
    pub meta: ChannelMeta,
    /// The delivered history.
    pub history: DeliveredHistory,
}

impl ChannelState {
    /// A fresh channel.
    pub fn new(history_capacity: usize) -> Self {
        ChannelState {
            meta: ChannelMeta::default(),
            history: DeliveredHistory::new(history_capacity),
        }
    }

    /// The models' view of this state (what a save point holds).
    pub fn to_model(&self) -> SnapChannelState {
        SnapChannelState {
            meta: Some(self.meta.to_model()),
            history: self.history.ids(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_evicts_fifo_and_the_bloom_keeps_up() {
        let mut history = DeliveredHistory::new(3);
        assert_eq!(history.push(1), None);
        assert_eq!(history.push(2), None);
        assert_eq!(history.push(3), None);
        assert_eq!(history.push(4), Some(1));
        assert!(!history.contains(1));
        assert!(history.contains(4));
        for id in 5..40 {
            history.push(id);
        }
        assert_eq!(history.ids(), vec![37, 38, 39]);
        let reloaded = DeliveredHistory::from_ids(3, &history.ids());
        assert!(history
            .ids()
            .iter()
            .all(|id| reloaded.bloom().may_contain(*id)));
    }
}
