//! An ordered map from `u64` ids to values for tables whose live entries
//! sit in a window that slides forward: ids are handed out in increasing
//! order and entries are removed roughly in the order they came (open
//! operations, writes with attempts in flight, batches not yet published).
//! Its memory follows the live window, not the largest id ever seen.
//!
//! Ids in `base .. base + slots.len()` live in a `VecDeque`; every other id
//! lives in a `BTreeMap`, so each id has exactly one home. The window grows
//! at either end by at most [`GAP_MAX`] empty slots per insert (an id
//! further away goes to the `BTreeMap`; extending over sparse ids migrates
//! them), and it drops empty slots at the front as entries are removed. So an adversarial history costs `O(GAP_MAX)` per
//! insert at worst and never more memory than that, while the ids real
//! histories use stay on the fast path. Iteration is in key order.
//!
//! An entry that is never removed (a batch a crash orphaned before its
//! publication) would pin the front of the window, which would then grow
//! with every id handed out after it: once the window is more than twice
//! as long as the entries it holds, plus [`STALE_SLACK`], its front
//! entries move to the `BTreeMap` (below the window, so key order holds).
//! Each entry moves at most once per insert, and the window stays in
//! proportion to what it holds.

use std::collections::{BTreeMap, VecDeque};

/// How many empty slots one insert may add at either end of the window.
const GAP_MAX: u64 = 64;

/// How many slots beyond twice its entries the window may hold before its
/// front entries move to the sparse part (a few in unit tests, so that
/// small tables take that path too).
const STALE_SLACK: usize = if cfg!(test) { 4 } else { 1024 };

/// Ordered `u64 → V` map; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct WindowMap<V> {
    /// The id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<V>>,
    /// How many of `slots` hold a value.
    live: usize,
    sparse: BTreeMap<u64, V>,
}

impl<V> Default for WindowMap<V> {
    fn default() -> Self {
        Self {
            base: 0,
            slots: VecDeque::new(),
            live: 0,
            sparse: BTreeMap::new(),
        }
    }
}

impl<V> WindowMap<V> {
    #[inline]
    fn slot_index(&self, id: u64) -> Option<usize> {
        let offset = usize::try_from(id.checked_sub(self.base)?).ok()?;
        (offset < self.slots.len()).then_some(offset)
    }

    /// The first id past the window (`None`: past `u64::MAX`).
    #[inline]
    fn end(&self) -> Option<u64> {
        self.base.checked_add(self.slots.len() as u64)
    }

    /// The value for `id`, if any.
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        match self.slot_index(id) {
            Some(index) => self.slots.get(index).and_then(Option::as_ref),
            None => self.sparse.get(&id),
        }
    }

    /// The value for `id`, mutably, if any.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match self.slot_index(id) {
            Some(index) => self.slots.get_mut(index).and_then(Option::as_mut),
            None => self.sparse.get_mut(&id),
        }
    }

    /// Whether `id` has a value.
    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Set the value for `id`, returning the previous one.
    #[inline]
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        if let Some(index) = self.slot_index(id) {
            return self.fill_slot(index, value);
        }
        if self.slots.is_empty() {
            // An empty window starts over at `id`.
            self.base = id;
            self.slots.push_back(Some(value));
            self.live = 1;
            return self.sparse.remove(&id);
        }
        match self.end() {
            Some(end) if id >= end && id - end <= GAP_MAX => {
                // Sparse entries below the window (stale ones moved out of
                // its front) stay where they are: only one at or past `end`
                // can move into the slots the window grows by.
                if self
                    .sparse
                    .last_key_value()
                    .is_some_and(|(last, _)| *last >= end)
                {
                    self.extend_to(end, id);
                    return self.fill_slot(self.slots.len() - 1, value);
                }
                for _ in end..id {
                    self.slots.push_back(None);
                }
                self.slots.push_back(Some(value));
                self.live += 1;
                None
            }
            _ if id < self.base && self.base - id <= GAP_MAX => {
                // A little behind the window (ids need not arrive in order).
                self.extend_front_to(id);
                self.fill_slot(0, value)
            }
            _ => self.sparse.insert(id, value),
        }
    }

    /// Put `value` in window slot `index`, returning what it held.
    #[inline]
    fn fill_slot(&mut self, index: usize, value: V) -> Option<V> {
        let previous = self
            .slots
            .get_mut(index)
            .and_then(|slot| slot.replace(value));
        self.live += usize::from(previous.is_none());
        previous
    }

    /// Remove and return the value for `id`.
    #[inline]
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        let Some(index) = self.slot_index(id) else {
            return self.sparse.remove(&id);
        };
        let removed = self.slots.get_mut(index).and_then(Option::take);
        if removed.is_some() {
            self.live -= 1;
        }
        self.trim_front();
        removed
    }

    /// Drop the empty slots at the front, and move front entries to the
    /// sparse part while the window is out of proportion to its entries
    /// (see the module docs).
    #[inline]
    fn trim_front(&mut self) {
        loop {
            match self.slots.front() {
                Some(None) => {}
                Some(Some(_)) if self.slots.len() > 2 * self.live + STALE_SLACK => {
                    if let Some(Some(value)) = self.slots.front_mut().map(Option::take) {
                        self.live -= 1;
                        self.sparse.insert(self.base, value);
                    }
                }
                _ => return,
            }
            self.slots.pop_front();
            self.base = self.base.wrapping_add(1);
        }
    }

    /// All entries in key order: sparse ids below the window, the window,
    /// sparse ids above it.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let (below, above) = if self.slots.is_empty() {
            (self.sparse.range(..), None)
        } else {
            let above = self.end().map(|end| self.sparse.range(end..));
            (self.sparse.range(..self.base), above)
        };
        let base = self.base;
        let window = self
            .slots
            .iter()
            .enumerate()
            .filter_map(move |(offset, slot)| {
                slot.as_ref()
                    .map(|value| (base.wrapping_add(offset as u64), value))
            });
        below
            .map(|(id, value)| (*id, value))
            .chain(window)
            .chain(above.into_iter().flatten().map(|(id, value)| (*id, value)))
    }

    /// Grow the window back to `id` (its new first slot), moving sparse
    /// entries it now covers into their slots.
    fn extend_front_to(&mut self, id: u64) {
        while self.base > id {
            self.base -= 1;
            let value = if self.sparse.is_empty() {
                None
            } else {
                self.sparse.remove(&self.base)
            };
            self.live += usize::from(value.is_some());
            self.slots.push_front(value);
        }
    }

    /// Grow the window from `end` to cover `id` (its new last slot),
    /// moving sparse entries it now covers into their slots.
    #[cold]
    fn extend_to(&mut self, end: u64, id: u64) {
        let mut next = end;
        loop {
            let value = self.sparse.remove(&next);
            self.live += usize::from(value.is_some());
            self.slots.push_back(value);
            if next == id {
                break;
            }
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every id has one home and `live` counts the occupied slots.
    fn assert_consistent<V: std::fmt::Debug>(map: &WindowMap<V>) {
        let occupied = map.slots.iter().filter(|slot| slot.is_some()).count();
        assert_eq!(map.live, occupied);
        let end = map.end();
        assert!(map
            .sparse
            .keys()
            .all(|id| *id < map.base || end.is_some_and(|end| *id >= end)));
    }

    #[test]
    fn an_entry_never_removed_moves_out_of_the_way() {
        let mut map = WindowMap::default();
        map.insert(0, 0_u64);
        for id in 1..10_000_u64 {
            map.insert(id, id);
            if id > 8 {
                assert_eq!(map.remove(id - 8), Some(id - 8));
            }
        }
        assert!(
            map.slots.len() <= 2 * map.live + STALE_SLACK,
            "the window follows the live entries: {} slots for {}",
            map.slots.len(),
            map.live
        );
        assert_eq!(map.get(0), Some(&0), "the pinned entry is still there");
        assert!(map.sparse.contains_key(&0));
        let keys: Vec<u64> = map.iter().map(|(id, _)| id).collect();
        assert_eq!(
            keys,
            [0].into_iter().chain(9_992..10_000).collect::<Vec<_>>()
        );
        assert_eq!(map.remove(0), Some(0));
        assert_consistent(&map);
    }

    proptest! {
        #[test]
        fn it_behaves_as_an_ordered_map(
            steps in proptest::collection::vec((any::<bool>(), 0_u64..3_000, 0_u8..4), 1..2_000)
        ) {
            let mut map = WindowMap::default();
            let mut reference = BTreeMap::new();
            let mut next = 0_u64;
            for (remove, offset, far) in steps {
                // Mostly ids near the newest, sometimes far behind or ahead.
                let id = match far {
                    0 => offset.wrapping_mul(7_919),
                    1 => next,
                    _ => next.saturating_sub(offset % 64),
                };
                if remove {
                    prop_assert_eq!(map.remove(id), reference.remove(&id));
                } else {
                    next = next.max(id + 1);
                    prop_assert_eq!(map.insert(id, next), reference.insert(id, next));
                }
                prop_assert_eq!(map.get(id), reference.get(&id));
            }
            assert_consistent(&map);
            let all: Vec<(u64, u64)> = map.iter().map(|(id, value)| (id, *value)).collect();
            let expected: Vec<(u64, u64)> = reference.into_iter().collect();
            prop_assert_eq!(all, expected);
        }
    }

    #[test]
    fn the_window_follows_live_ids_and_strays_stay_sparse() {
        let mut map = WindowMap::default();
        for id in 100..110_u64 {
            assert_eq!(map.insert(id, id * 2), None);
        }
        assert_eq!(map.insert(95, 0), None, "just behind: the front grows");
        assert_eq!((map.base, map.slots.len()), (95, 15));
        assert_eq!(map.remove(95), Some(0), "and slides back");
        assert_eq!((map.base, map.slots.len()), (100, 10));
        assert_eq!(map.insert(20, 0), None, "far behind: sparse");
        assert_eq!(map.insert(1_000, 1), None, "far ahead: sparse");
        assert_eq!(map.insert(u64::MAX, 2), None);
        assert_eq!(map.slots.len(), 10);
        for id in 100..108 {
            assert_eq!(map.remove(id), Some(id * 2));
        }
        assert_eq!((map.base, map.slots.len()), (108, 2), "the front slid");
        assert_eq!(map.insert(109, 7), Some(218));
        let keys: Vec<u64> = map.iter().map(|(id, _)| id).collect();
        assert_eq!(keys, vec![20, 108, 109, 1_000, u64::MAX]);
        assert_eq!(map.get(20), Some(&0));
        assert_eq!(map.remove(108), Some(216));
        assert_eq!(map.remove(109), Some(7));
        assert!(map.slots.is_empty());
        let keys: Vec<u64> = map.iter().map(|(id, _)| id).collect();
        assert_eq!(
            keys,
            vec![20, 1_000, u64::MAX],
            "an empty window hides nothing"
        );
    }

    #[test]
    fn extending_over_sparse_ids_moves_them_into_the_window() {
        let mut map = WindowMap::default();
        map.insert(1, 'a');
        map.insert(100, 'b');
        map.insert(80, 'c');
        assert_eq!(map.slots.len(), 1, "80 and 100 are more than GAP_MAX ahead");
        for id in 2..=70 {
            map.insert(id, 'd');
        }
        assert_eq!(map.sparse.len(), 2);
        assert_eq!(map.insert(100, 'e'), Some('b'), "100 is within reach now");
        assert!(map.sparse.is_empty(), "80 moved into the window on the way");
        assert_eq!(map.get(80), Some(&'c'));
        assert_eq!(map.slots.len(), 100);
        let mut start_over = WindowMap::default();
        start_over.insert(7, 'x');
        start_over.insert(300, 'y');
        start_over.remove(7);
        assert_eq!(start_over.insert(300, 'z'), Some('y'), "found in sparse");
        assert_eq!(start_over.iter().collect::<Vec<_>>(), vec![(300, &'z')]);
        assert!(start_over.sparse.is_empty());
        start_over.insert(200, 'w');
        assert!(
            start_over.sparse.contains_key(&200),
            "more than GAP_MAX behind"
        );
        start_over.insert(250, 'v');
        start_over.insert(201, 'u');
        assert_eq!(start_over.base, 201, "the front grew back twice");
        assert!(start_over.sparse.contains_key(&200));
        start_over.insert(199, 't');
        assert!(start_over.sparse.is_empty(), "growing over 200 moved it in");
        assert_eq!(start_over.get(200), Some(&'w'));
        let keys: Vec<u64> = start_over.iter().map(|(id, _)| id).collect();
        assert_eq!(keys, vec![199, 200, 201, 250, 300]);
    }
}
