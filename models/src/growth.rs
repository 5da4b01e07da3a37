//! How the checkers' large tables grow.
//!
//! A checker's per-operation and per-frame tables reach millions of
//! entries in a long history. Grown by doubling, each step reallocates:
//! the allocator copies the table into fresh pages (a page fault each, the
//! dominant cost on a virtual machine) and the old pages are thrown away.
//! Reserving capacity [`GROWTH_FACTOR`] times ahead reallocates far less
//! often; capacity that is never written is address space, not memory
//! (the pages are not touched), so the tables still cost what they hold.

/// How far ahead of the length a growing table reserves capacity.
const GROWTH_FACTOR: usize = 8;

/// Make room in `vec` for `len_needed` elements; when that needs a
/// reallocation, reserve [`GROWTH_FACTOR`] times the current length at
/// once.
#[inline]
pub(crate) fn reserve_ahead<T>(vec: &mut Vec<T>, len_needed: usize) {
    if len_needed > vec.capacity() {
        reserve_ahead_cold(vec, len_needed);
    }
}

#[cold]
#[inline(never)]
fn reserve_ahead_cold<T>(vec: &mut Vec<T>, len_needed: usize) {
    let target = len_needed.max(vec.len().saturating_mul(GROWTH_FACTOR));
    vec.reserve_exact(target.saturating_sub(vec.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_reserves_several_times_its_length() {
        let mut vec: Vec<u64> = (0..100).collect();
        vec.shrink_to_fit();
        reserve_ahead(&mut vec, 101);
        assert!(vec.capacity() >= 800, "capacity {}", vec.capacity());
        let capacity = vec.capacity();
        reserve_ahead(&mut vec, 700);
        assert_eq!(vec.capacity(), capacity, "room enough: no reallocation");
        reserve_ahead(&mut vec, 5000);
        assert!(vec.capacity() >= 5000);
    }
}
