//! Which write operation owns each event id: one table that serves both
//! D7's client side (`op_lifecycle`: the first write to claim an event id
//! owns it, a second claimer is reported) and D5's recovery credit
//! (`batch_phases`: a recovered entry is credited to the latest write that
//! carried its event id).
//!
//! The two differ only on malformed or duplicate records, so the table
//! keeps the latest claimer of each id and remembers the first one apart,
//! for the few ids where it is another op (or none: a repeated invoke of
//! one op moves the latest claim but does not claim for D7).
//!
//! Checks nothing itself.

use std::collections::BTreeMap;

use crate::history::{EventId, OpId};
use crate::id_map::IdMap;

/// How the table changed since [`EventOwners::clear_changes`] was last
/// called.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OwnerChanges {
    /// An event id got an owner, or another one.
    pub(crate) mapped: bool,
    /// An event id that had an owner got another one.
    pub(crate) remapped: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct EventOwners {
    /// The latest write invoked with each event id.
    latest: IdMap<OpId>,
    /// D7's owner of the event ids where it is not the latest claimer
    /// (`None`: only a repeated invoke claimed it).
    first_where_other: BTreeMap<EventId, Option<OpId>>,
    changes: OwnerChanges,
}

impl EventOwners {
    /// Write `op` was invoked carrying `event_id`; `first_invoke` says
    /// whether this is `op`'s first invocation (a repeated one is
    /// malformed and does not claim the id for D7). Returns the op that
    /// owns `event_id` for D7 when this first invocation collides with it.
    #[inline]
    pub(crate) fn claim(
        &mut self,
        event_id: EventId,
        op: OpId,
        first_invoke: bool,
    ) -> Option<OpId> {
        let previous = self.latest.insert(event_id, op);
        self.changes.mapped = true;
        self.changes.remapped |= previous.is_some_and(|previous| previous != op);
        if previous.is_none() && self.first_where_other.is_empty() && first_invoke {
            // The common case: a fresh id, claimed by its first write.
            return None;
        }
        let owner = match self.first_where_other.get(&event_id) {
            Some(owner) => *owner,
            None => previous,
        };
        let owner_now = owner.or(first_invoke.then_some(op));
        if owner_now == Some(op) {
            self.first_where_other.remove(&event_id);
        } else {
            self.first_where_other.insert(event_id, owner_now);
        }
        owner.filter(|_| first_invoke)
    }

    /// The latest write invoked with `event_id`.
    #[inline]
    pub(crate) fn latest_owner(&self, event_id: EventId) -> Option<OpId> {
        self.latest.get(event_id).copied()
    }

    /// How the table changed since the last [`EventOwners::clear_changes`].
    pub(crate) fn changes(&self) -> OwnerChanges {
        self.changes
    }

    /// Forget the changes so far.
    pub(crate) fn clear_changes(&mut self) {
        self.changes = OwnerChanges::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claimer_owns_an_id_and_the_latest_is_credited() {
        let mut owners = EventOwners::default();
        assert_eq!(owners.claim(7, 1, true), None);
        assert!(!owners.changes().remapped);
        owners.clear_changes();
        assert_eq!(owners.claim(7, 2, true), Some(1), "op 2 collides with op 1");
        assert_eq!(owners.latest_owner(7), Some(2));
        assert!(owners.changes().remapped);
        assert_eq!(owners.claim(7, 3, true), Some(1), "op 1 still owns it");
        assert_eq!(
            owners.claim(7, 2, false),
            None,
            "a repeated invoke claims nothing"
        );
        assert_eq!(owners.latest_owner(7), Some(2));
    }

    #[test]
    fn a_repeated_invoke_maps_an_id_without_owning_it() {
        let mut owners = EventOwners::default();
        assert_eq!(owners.claim(9, 4, false), None);
        assert_eq!(owners.latest_owner(9), Some(4));
        assert_eq!(owners.claim(9, 5, true), None, "nobody owned it for D7");
        assert_eq!(owners.claim(9, 6, true), Some(5));
        assert_eq!(owners.claim(8, 6, true), None);
    }
}
