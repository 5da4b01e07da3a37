//! An ordered map from `u64` ids to values that is fast for the dense ids
//! real histories use (0, 1, 2, …) and still correct for adversarial ones.
//!
//! Ids below `dense.len()` live in a `Vec`; every other id lives in a
//! `BTreeMap`. The split point only grows, and growing migrates the sparse
//! entries it now covers, so each id has exactly one home. Growth per insert
//! is bounded (to `2 · len + DENSE_SLACK`), so a history holding one huge id
//! costs one `BTreeMap` entry, not gigabytes. Iteration is in key order:
//! the dense part, then the sparse part (all of whose keys are larger).

use std::collections::BTreeMap;

/// How far past the dense part an id may be and still extend it.
const DENSE_SLACK: u64 = 1 << 16;

/// Ordered `u64 → V` map; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct IdMap<V> {
    dense: Vec<Option<V>>,
    sparse: BTreeMap<u64, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            dense: Vec::new(),
            sparse: BTreeMap::new(),
        }
    }
}

impl<V> IdMap<V> {
    fn dense_index(&self, id: u64) -> Option<usize> {
        let index = usize::try_from(id).ok()?;
        (index < self.dense.len()).then_some(index)
    }

    /// The value for `id`, if any.
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        match self.dense_index(id) {
            Some(index) => self.dense.get(index).and_then(Option::as_ref),
            None => self.sparse.get(&id),
        }
    }

    /// The value for `id`, mutably, if any.
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match self.dense_index(id) {
            Some(index) => self.dense.get_mut(index).and_then(Option::as_mut),
            None => self.sparse.get_mut(&id),
        }
    }

    /// Whether `id` has a value.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Set the value for `id`, returning the previous one.
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        self.grow_to_cover(id);
        match self.dense_index(id) {
            Some(index) => self
                .dense
                .get_mut(index)
                .and_then(|slot| slot.replace(value)),
            None => self.sparse.insert(id, value),
        }
    }

    /// The value for `id`, inserting `make()` first when absent.
    pub(crate) fn get_or_insert_with(&mut self, id: u64, make: impl FnOnce() -> V) -> &mut V {
        self.grow_to_cover(id);
        if let Some(index) = self.dense_index(id) {
            if let Some(slot) = self.dense.get_mut(index) {
                return slot.get_or_insert_with(make);
            }
        }
        self.sparse.entry(id).or_insert_with(make)
    }

    /// Remove and return the value for `id`.
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        match self.dense_index(id) {
            Some(index) => self.dense.get_mut(index).and_then(Option::take),
            None => self.sparse.remove(&id),
        }
    }

    /// All entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let dense = self
            .dense
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| slot.as_ref().map(|value| (index as u64, value)));
        dense.chain(self.sparse.iter().map(|(id, value)| (*id, value)))
    }

    /// Remove every entry.
    pub(crate) fn clear(&mut self) {
        self.dense.clear();
        self.sparse.clear();
    }

    fn grow_to_cover(&mut self, id: u64) {
        let len = self.dense.len() as u64;
        if id < len || id >= len.saturating_mul(2).saturating_add(DENSE_SLACK) {
            return;
        }
        let Ok(new_len) = usize::try_from(id.saturating_add(1)) else {
            return;
        };
        self.dense.resize_with(new_len, || None);
        if self.sparse.is_empty() {
            return;
        }
        // Keep "every id below dense.len() lives in dense" true.
        let moved: Vec<u64> = self
            .sparse
            .range(..id.saturating_add(1))
            .map(|(k, _)| *k)
            .collect();
        for key in moved {
            if let (Some(value), Ok(index)) = (self.sparse.remove(&key), usize::try_from(key)) {
                if let Some(slot) = self.dense.get_mut(index) {
                    *slot = Some(value);
                }
            }
        }
    }
}

/// Ordered set of `u64` ids with the same dense fast path as [`IdMap`].
#[derive(Debug, Clone, Default)]
pub(crate) struct IdSet {
    map: IdMap<()>,
}

impl IdSet {
    /// Add `id`; returns whether it was new.
    pub(crate) fn insert(&mut self, id: u64) -> bool {
        self.map.insert(id, ()).is_none()
    }

    /// Whether `id` is present.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.map.contains(id)
    }

    /// Remove every id.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_ids_round_trip_in_key_order() {
        let mut map = IdMap::default();
        for id in [5_u64, u64::MAX, 0, 70_000, 3, 1 << 40] {
            assert_eq!(map.insert(id, id.wrapping_mul(3)), None);
        }
        assert_eq!(map.insert(3, 1), Some(9));
        let keys: Vec<u64> = map.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![0, 3, 5, 70_000, 1 << 40, u64::MAX]);
        assert_eq!(map.get(u64::MAX), Some(&u64::MAX.wrapping_mul(3)));
        assert_eq!(map.remove(70_000), Some(210_000));
        assert!(!map.contains(70_000));
    }

    #[test]
    fn growing_the_dense_part_migrates_sparse_entries() {
        let mut map = IdMap::default();
        map.insert(100_000, 'a');
        assert!(
            map.dense.is_empty(),
            "100 000 is beyond the first growth step"
        );
        for id in 0..60_000 {
            map.insert(id, 'b');
        }
        map.insert(100_001, 'c');
        assert_eq!(map.get(100_000), Some(&'a'));
        assert!(
            map.sparse.is_empty(),
            "the covered sparse entry moved to dense"
        );
        *map.get_or_insert_with(100_000, || 'z') = 'd';
        assert_eq!(map.get(100_000), Some(&'d'));
    }
}
