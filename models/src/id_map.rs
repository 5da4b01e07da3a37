//! An ordered map from `u64` ids to values that is fast for the dense ids
//! real histories use (0, 1, 2, …) and still correct for adversarial ones.
//!
//! Ids below `dense.len()` live in a `Vec`; every other id lives in a
//! `BTreeMap`. The split point only grows, and growing migrates the sparse
//! entries it now covers, so each id has exactly one home. The dense part
//! grows to cover an id only while it stays at most `2 · inserts +
//! DENSE_SLACK` long, so its size is linear in what was inserted: a history
//! holding a few huge ids costs a few `BTreeMap` entries, not gigabytes.
//! Iteration is in key order: the dense part, then the sparse part (all of
//! whose keys are larger).
//!
//! Tables whose live ids slide forward (entries removed roughly in the
//! order they came) use [`crate::window_map::WindowMap`] instead.

use std::collections::{BTreeMap, BTreeSet};

use crate::growth::reserve_ahead;

/// How far past the dense part an id may be and still extend it.
const DENSE_SLACK: u64 = 1 << 16;

/// Ordered `u64 → V` map; see the module docs. A dense slot holds a plain
/// `V` (the default until set) and one bit says whether it is set, so a
/// `u64` value costs 8 bytes a slot rather than the 16 of `Option<u64>`.
#[derive(Debug, Clone)]
pub(crate) struct IdMap<V> {
    dense: Vec<V>,
    /// Bit `i` is set when `dense[i]` holds a value.
    present: Vec<u64>,
    sparse: BTreeMap<u64, V>,
    /// Entries in both parts (nothing is ever removed).
    inserted: u64,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            dense: Vec::new(),
            present: Vec::new(),
            sparse: BTreeMap::new(),
            inserted: 0,
        }
    }
}

/// The length a dense part of `len` slots grows to so that it covers `id`,
/// in a table that saw `inserted` inserts (not counting the one under way);
/// `None` when `id` must stay sparse. It at least doubles, so filling ids in
/// order grows it rarely, and never past `2 · (inserted + 1) + DENSE_SLACK`.
fn grown_len(len: u64, id: u64, inserted: u64) -> Option<usize> {
    let limit = inserted
        .saturating_add(1)
        .saturating_mul(2)
        .saturating_add(DENSE_SLACK);
    if id < len || id >= limit {
        return None;
    }
    let doubled = len.saturating_mul(2).min(limit);
    usize::try_from(id.saturating_add(1).max(doubled)).ok()
}

/// The indexes of the set bits of `words`, in order (a word at a time:
/// empty stretches cost one test per 64 slots).
fn set_bits(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(word, &bits)| {
        let mut rest = bits;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            Some(word * 64 + bit)
        })
    })
}

/// The word and mask of bit `index`.
#[inline]
fn bit(index: usize) -> (usize, u64) {
    (index / 64, 1 << (index % 64))
}

impl<V: Default> IdMap<V> {
    #[inline]
    fn dense_index(&self, id: u64) -> Option<usize> {
        let index = usize::try_from(id).ok()?;
        (index < self.dense.len()).then_some(index)
    }

    #[inline]
    fn is_set(&self, index: usize) -> bool {
        let (word, mask) = bit(index);
        self.present.get(word).is_some_and(|bits| bits & mask != 0)
    }

    /// Mark dense slot `index` set; returns whether it was set before.
    #[inline]
    fn set(&mut self, index: usize) -> bool {
        let (word, mask) = bit(index);
        let Some(bits) = self.present.get_mut(word) else {
            return false;
        };
        let was = *bits & mask != 0;
        *bits |= mask;
        was
    }

    /// The value for `id`, if any.
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        match self.dense_index(id) {
            Some(index) if self.is_set(index) => self.dense.get(index),
            Some(_) => None,
            None => self.sparse.get(&id),
        }
    }

    /// The value for `id`, mutably, if any.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match self.dense_index(id) {
            Some(index) if self.is_set(index) => self.dense.get_mut(index),
            Some(_) => None,
            None => self.sparse.get_mut(&id),
        }
    }

    /// Set the value for `id`, returning the previous one.
    #[inline]
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        match self.dense_index(id) {
            Some(index) => self.insert_dense(index, value),
            None => self.insert_outside(id, value),
        }
    }

    /// Set the value for `id`; returns whether `id` had none (an
    /// [`IdMap::insert`] that does not hand the previous value back).
    #[inline]
    pub(crate) fn put(&mut self, id: u64, value: V) -> bool {
        let Some(index) = self.dense_index(id) else {
            return self.insert_outside(id, value).is_none();
        };
        let was_set = self.set(index);
        if let Some(slot) = self.dense.get_mut(index) {
            *slot = value;
        }
        self.inserted += u64::from(!was_set);
        !was_set
    }

    #[inline]
    fn insert_dense(&mut self, index: usize, value: V) -> Option<V> {
        let was_set = self.set(index);
        let previous = self
            .dense
            .get_mut(index)
            .map(|slot| std::mem::replace(slot, value))
            .filter(|_| was_set);
        self.inserted += u64::from(!was_set);
        previous
    }

    /// [`IdMap::insert`] for an id past the dense part: grow it, or use the
    /// sparse part.
    #[cold]
    #[inline(never)]
    fn insert_outside(&mut self, id: u64, value: V) -> Option<V> {
        self.grow_to_cover(id);
        if let Some(index) = self.dense_index(id) {
            return self.insert_dense(index, value);
        }
        let previous = self.sparse.insert(id, value);
        self.inserted += u64::from(previous.is_none());
        previous
    }

    /// The value for `id`, inserting `make()` first when absent.
    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, id: u64, make: impl FnOnce() -> V) -> &mut V {
        if self.dense_index(id).is_none() {
            self.grow_to_cover_cold(id);
        }
        let Some(index) = self.dense_index(id) else {
            let inserted = &mut self.inserted;
            return self.sparse.entry(id).or_insert_with(|| {
                *inserted += 1;
                make()
            });
        };
        let fresh = !self.set(index);
        if fresh {
            self.inserted += 1;
        }
        // `index` is below `dense.len()`, so this is the slot; the fallback
        // only satisfies the types.
        let slot = match self.dense.get_mut(index) {
            Some(slot) => slot,
            None => return self.sparse.entry(id).or_insert_with(make),
        };
        if fresh {
            *slot = make();
        }
        slot
    }

    /// All entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let dense = set_bits(&self.present)
            .filter_map(|index| self.dense.get(index).map(|value| (index as u64, value)));
        dense.chain(self.sparse.iter().map(|(id, value)| (*id, value)))
    }

    #[cold]
    #[inline(never)]
    fn grow_to_cover_cold(&mut self, id: u64) {
        self.grow_to_cover(id);
    }

    fn grow_to_cover(&mut self, id: u64) {
        let Some(new_len) = grown_len(self.dense.len() as u64, id, self.inserted) else {
            return;
        };
        reserve_ahead(&mut self.dense, new_len);
        self.dense.resize_with(new_len, V::default);
        self.present.resize(new_len.div_ceil(64), 0);
        // Keep "every id below dense.len() lives in dense" true.
        while let Some(entry) = self.sparse.first_entry() {
            let Some(index) = usize::try_from(*entry.key())
                .ok()
                .filter(|index| *index < self.dense.len())
            else {
                break;
            };
            let value = entry.remove();
            self.set(index);
            if let Some(slot) = self.dense.get_mut(index) {
                *slot = value;
            }
        }
    }
}

/// Set of `u64` ids with the same dense/sparse split as [`IdMap`]: dense
/// ids are bits of a `Vec<u64>`, the rest live in a `BTreeSet`.
///
/// [`IdSet::clear`] costs what was inserted since the last clear, not the
/// size of the dense part: the words that became non-zero are remembered
/// and only they are zeroed, so a set cleared at every recovery keeps its
/// dense part (and its fast path) at no more than linear total cost.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdSet {
    words: Vec<u64>,
    sparse: BTreeSet<u64>,
    /// Indexes of the words that are non-zero.
    dirty: Vec<usize>,
    /// Ids inserted since the set was made, clears notwithstanding: the
    /// dense part's size is bounded by the work done, and a set refilled
    /// after a clear keeps growing its dense part.
    inserted: u64,
}

/// Ids per dense word.
const BITS: u64 = u64::BITS as u64;

impl IdSet {
    /// The word index and bit mask of `id` when it is in the dense part.
    #[inline]
    fn dense_slot(&self, id: u64) -> Option<(usize, u64)> {
        let index = usize::try_from(id / BITS).ok()?;
        (index < self.words.len()).then(|| (index, 1_u64 << (id % BITS)))
    }

    /// Add `id`; returns whether it was new.
    #[inline]
    pub(crate) fn insert(&mut self, id: u64) -> bool {
        let new = match self.dense_slot(id) {
            Some((index, mask)) => self.set_bit(index, mask),
            None => return self.insert_outside(id),
        };
        self.inserted += u64::from(new);
        new
    }

    /// [`IdSet::insert`] for an id past the dense part: grow it, or use
    /// the sparse part.
    #[cold]
    #[inline(never)]
    fn insert_outside(&mut self, id: u64) -> bool {
        self.grow_to_cover(id);
        let new = match self.dense_slot(id) {
            Some((index, mask)) => self.set_bit(index, mask),
            None => self.sparse.insert(id),
        };
        self.inserted += u64::from(new);
        new
    }

    /// Whether `id` is present.
    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        match self.dense_slot(id) {
            Some((index, mask)) => self.words.get(index).is_some_and(|word| word & mask != 0),
            None => self.sparse.contains(&id),
        }
    }

    /// Remove every id.
    pub(crate) fn clear(&mut self) {
        for index in self.dirty.drain(..) {
            if let Some(word) = self.words.get_mut(index) {
                *word = 0;
            }
        }
        self.sparse.clear();
    }

    #[inline]
    fn set_bit(&mut self, index: usize, mask: u64) -> bool {
        let Some(word) = self.words.get_mut(index) else {
            return false;
        };
        let was = *word;
        *word |= mask;
        if was == 0 {
            self.dirty.push(index);
        }
        was & mask == 0
    }

    fn grow_to_cover(&mut self, id: u64) {
        let bits = (self.words.len() as u64).saturating_mul(BITS);
        let Some(new_bits) = grown_len(bits, id, self.inserted) else {
            return;
        };
        self.words.resize(new_bits.div_ceil(BITS as usize), 0);
        // Keep "every id the dense part covers lives in it" true.
        while let Some(first) = self.sparse.first().copied() {
            let Some((index, mask)) = self.dense_slot(first) else {
                break;
            };
            self.sparse.pop_first();
            self.set_bit(index, mask);
        }
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
        assert!(map.get(70_000).is_some() && map.get(70_001).is_none());
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

    #[test]
    fn sets_keep_dense_and_sparse_ids_and_clear_cheaply() {
        let mut set = IdSet::default();
        for id in [3_u64, 64, 100_000, u64::MAX, 0] {
            assert!(set.insert(id));
            assert!(!set.insert(id), "{id} is already there");
        }
        assert_eq!(set.sparse.len(), 2, "100 000 is beyond the first growth");
        for id in 0..60_000 {
            set.insert(id);
        }
        assert!(!set.insert(100_000));
        set.insert(100_001);
        assert_eq!(set.sparse.len(), 1, "only u64::MAX stays sparse");
        assert!(set.contains(100_000) && set.contains(u64::MAX) && !set.contains(60_000));
        let words = set.words.len();
        set.clear();
        assert_eq!(set.words.len(), words, "clearing keeps the dense part");
        assert!(set.words.iter().all(|word| *word == 0));
        assert!(!set.contains(64) && !set.contains(u64::MAX));
        assert!(set.insert(90_000), "an id near the old ones is dense again");
        assert!(
            set.insert(150_000),
            "past the old dense part, within what was inserted before the clear"
        );
        assert!(set.sparse.is_empty(), "refilling after a clear stays dense");
    }
}
