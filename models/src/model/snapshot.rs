//! Spec 05's snapshot store: what the disk may hold for each channel.
//!
//! Per channel the durable state is a meta snapshot (or none) and a
//! delivered history. The model keeps, for each of the two, the
//! **certain** value — what the last successful call (or the last
//! successful load, which is a durable fact) left — and the **possible**
//! values of calls issued after it that failed or never returned: such a
//! call may or may not have reached the disk. A successful call makes its
//! value certain and forgets the possible ones; a load must find a
//! certain or possible value.
//!
//! A history flush is a delta against the certain history
//! ([`apply_delta`]): the pending-write queue of spec 05 sends everything
//! queued since the last success, so a success lands the whole queue on
//! the certain state, whatever failed attempts did before it.
//!
//! Not modelled: retrieval hints, the protocol itself (the in-memory state
//! is what the system reports at each save point).

use std::collections::BTreeMap;

use crate::history::{SnapChannelId, SnapChannelState, SnapDelta, SnapMeta, SnapMsgId};

/// `history` after `delta`: every evicted id removed, then each appended
/// id (in order) moved to the end — the FIFO history's own order, since an
/// id is appended only when it is absent from the in-memory history.
pub fn apply_delta(history: &[SnapMsgId], delta: &SnapDelta) -> Vec<SnapMsgId> {
    let mut out: Vec<SnapMsgId> = history
        .iter()
        .copied()
        .filter(|id| !delta.evicts.contains(id) && !delta.appends.contains(id))
        .collect();
    for id in &delta.appends {
        if let Some(at) = out.iter().position(|x| x == id) {
            out.remove(at);
        }
        out.push(*id);
    }
    out
}

/// A value that is certain, plus values that may have replaced it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates<T> {
    /// What the last success left.
    pub certain: T,
    /// Values of later calls whose outcome is unknown or failed.
    pub possible: Vec<T>,
}

impl<T: PartialEq + Clone> Candidates<T> {
    fn maybe(&mut self, value: T) {
        if value != self.certain && !self.possible.contains(&value) {
            self.possible.push(value);
        }
    }

    fn settle(&mut self, value: T) {
        self.certain = value;
        self.possible.clear();
    }

    /// Whether `value` may be what the disk holds.
    pub fn admits(&self, value: &T) -> bool {
        self.certain == *value || self.possible.contains(value)
    }
}

/// One channel's durable candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableChannel {
    /// The meta snapshot.
    pub meta: Candidates<Option<SnapMeta>>,
    /// The delivered history.
    pub history: Candidates<Vec<SnapMsgId>>,
}

impl DurableChannel {
    /// Whether a load that found `state` agrees with the model.
    pub fn admits(&self, state: &SnapChannelState) -> bool {
        self.meta.admits(&state.meta) && self.history.admits(&state.history)
    }

    /// Whether no channel is certainly on disk and none may be.
    pub fn certainly_absent(&self) -> bool {
        self.meta.certain.is_none()
            && self.history.certain.is_empty()
            && self.meta.possible.iter().all(Option::is_none)
            && self.history.possible.iter().all(Vec::is_empty)
    }
}

/// Every channel's durable candidates; absent channels have none.
#[derive(Debug, Clone, Default)]
pub struct SnapshotStore {
    channels: BTreeMap<SnapChannelId, DurableChannel>,
}

impl SnapshotStore {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// `channel`'s candidates (an absent channel's are empty and certain).
    pub fn channel(&self, channel: SnapChannelId) -> DurableChannel {
        self.channels.get(&channel).cloned().unwrap_or_default()
    }

    fn entry(&mut self, channel: SnapChannelId) -> &mut DurableChannel {
        self.channels.entry(channel).or_default()
    }

    /// Every channel the model has heard of.
    pub fn channel_ids(&self) -> Vec<SnapChannelId> {
        self.channels.keys().copied().collect()
    }

    /// A meta save was issued: it may land from now on.
    pub fn save_issued(&mut self, channel: SnapChannelId, meta: &SnapMeta) {
        self.entry(channel).meta.maybe(Some(meta.clone()));
    }

    /// The meta save returned OK: `meta` is durable.
    pub fn save_succeeded(&mut self, channel: SnapChannelId, meta: &SnapMeta) {
        self.entry(channel).meta.settle(Some(meta.clone()));
    }

    /// The history delta a flush would produce on the certain history.
    pub fn flushed(&self, channel: SnapChannelId, delta: &SnapDelta) -> Vec<SnapMsgId> {
        apply_delta(&self.channel(channel).history.certain, delta)
    }

    /// A history flush was issued.
    pub fn flush_issued(&mut self, channel: SnapChannelId, delta: &SnapDelta) {
        let next = self.flushed(channel, delta);
        self.entry(channel).history.maybe(next);
    }

    /// A history flush returned OK.
    pub fn flush_succeeded(&mut self, channel: SnapChannelId, delta: &SnapDelta) {
        let next = self.flushed(channel, delta);
        self.entry(channel).history.settle(next);
    }

    /// A drop was issued.
    pub fn drop_issued(&mut self, channel: SnapChannelId) {
        let entry = self.entry(channel);
        entry.meta.maybe(None);
        entry.history.maybe(Vec::new());
    }

    /// A drop returned OK: the channel is gone.
    pub fn drop_succeeded(&mut self, channel: SnapChannelId) {
        let entry = self.entry(channel);
        entry.meta.settle(None);
        entry.history.settle(Vec::new());
    }

    /// A load returned `state`, made durable by the load: it is certain.
    pub fn loaded(&mut self, channel: SnapChannelId, state: &SnapChannelState) {
        let entry = self.entry(channel);
        entry.meta.settle(state.meta.clone());
        entry.history.settle(state.history.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(appends: &[u64], evicts: &[u64]) -> SnapDelta {
        SnapDelta {
            appends: appends.to_vec(),
            evicts: evicts.to_vec(),
        }
    }

    #[test]
    fn a_delta_removes_evicts_then_moves_appends_to_the_end() {
        assert_eq!(
            apply_delta(&[1, 2, 3], &delta(&[4, 1], &[2])),
            vec![3, 4, 1]
        );
        assert_eq!(apply_delta(&[], &delta(&[], &[9])), Vec::<u64>::new());
        // Applying the same delta twice changes nothing more.
        let once = apply_delta(&[1, 2, 3], &delta(&[4], &[1]));
        assert_eq!(apply_delta(&once, &delta(&[4], &[1])), once);
    }

    #[test]
    fn a_failed_flush_stays_possible_until_a_success_settles() {
        let mut store = SnapshotStore::new();
        store.flush_succeeded(1, &delta(&[1, 2], &[]));
        store.flush_issued(1, &delta(&[3], &[]));
        let channel = store.channel(1);
        assert!(channel.history.admits(&vec![1, 2]));
        assert!(channel.history.admits(&vec![1, 2, 3]));
        assert!(!channel.history.admits(&vec![1]));
        store.flush_succeeded(1, &delta(&[3, 4], &[1]));
        let channel = store.channel(1);
        assert_eq!(channel.history.certain, vec![2, 3, 4]);
        assert!(channel.history.possible.is_empty());
    }

    #[test]
    fn a_drop_in_doubt_admits_both_and_a_success_removes_the_channel() {
        let mut store = SnapshotStore::new();
        store.save_succeeded(2, &SnapMeta::default());
        store.drop_issued(2);
        assert!(store.channel(2).admits(&SnapChannelState::default()));
        assert!(!store.channel(2).certainly_absent());
        store.drop_succeeded(2);
        assert!(store.channel(2).certainly_absent());
    }
}
