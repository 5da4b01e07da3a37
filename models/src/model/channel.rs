//! The bounded two-phase channel (spec 01): reserve → permit 1, 2, 3, …;
//! then send, abort, or drop (= abort). A slot is held from reservation
//! until delivery or abort, and never more than `capacity` are held.
//! Delivery is strictly in reservation order, skipping aborted permits:
//! the receiver sees permit `n` only after every earlier permit was
//! delivered or aborted, and only once `n` was sent.
//!
//! Not modelled: how long a blocked reservation waits, timeouts, the
//! message contents.

use crate::history::PermitSeq;
use crate::id_map::IdMap;

/// A permit's state; it starts `Reserved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PermitState {
    /// Reserved, not yet sent.
    #[default]
    Reserved,
    /// Sent, not yet delivered.
    Sent,
    /// Aborted or dropped: skipped by delivery.
    Aborted,
    /// Delivered.
    Delivered,
}

/// A misuse or a broken guarantee of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBreach {
    /// Permits must be numbered 1, 2, 3, … in reservation order.
    PermitOutOfSequence {
        /// The number expected.
        expected: PermitSeq,
    },
    /// A reservation beyond capacity.
    OverCapacity {
        /// Slots held before it.
        held: u32,
        /// The capacity.
        capacity: u32,
    },
    /// Send/abort/drop of a permit that is not in the `Reserved` state.
    NotReserved {
        /// Its state, if it exists.
        state: Option<PermitState>,
    },
    /// Delivered ahead of an earlier permit still held.
    DeliveredOutOfOrder {
        /// The earliest permit still held.
        expected: PermitSeq,
    },
    /// Delivered a permit that was never sent (or was aborted, or never
    /// reserved).
    DeliveredUnsent {
        /// Its state, if it exists.
        state: Option<PermitState>,
    },
    /// Delivered a permit a second time.
    DeliveredTwice,
}

/// One channel's state; see the module docs.
#[derive(Debug, Clone)]
pub struct TwoPhaseChannel {
    capacity: u32,
    permits: IdMap<PermitState>,
    last_reserved: PermitSeq,
    next_to_deliver: PermitSeq,
    held: u32,
}

impl TwoPhaseChannel {
    /// An empty channel with `capacity` slots.
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            permits: IdMap::default(),
            last_reserved: 0,
            next_to_deliver: 1,
            held: 0,
        }
    }

    /// Slots held now.
    pub fn held(&self) -> u32 {
        self.held
    }

    /// `permit` was reserved; each breach goes to `found`, in order.
    pub fn reserve(&mut self, permit: PermitSeq, mut found: impl FnMut(ChannelBreach)) {
        let expected = self.last_reserved.saturating_add(1);
        let mut fresh = false;
        self.permits.get_or_insert_with(permit, || {
            fresh = true;
            PermitState::Reserved
        });
        if permit != expected || !fresh {
            found(ChannelBreach::PermitOutOfSequence { expected });
        }
        if self.held >= self.capacity {
            found(ChannelBreach::OverCapacity {
                held: self.held,
                capacity: self.capacity,
            });
        }
        if fresh {
            self.held = self.held.saturating_add(1);
        }
        self.last_reserved = self.last_reserved.max(permit);
    }

    /// `permit`'s message was sent.
    pub fn send(&mut self, permit: PermitSeq) -> Option<ChannelBreach> {
        self.transition_reserved(permit, PermitState::Sent)
    }

    /// `permit` was aborted or dropped.
    pub fn abort(&mut self, permit: PermitSeq) -> Option<ChannelBreach> {
        let breach = self.transition_reserved(permit, PermitState::Aborted);
        if breach.is_none() {
            self.held = self.held.saturating_sub(1);
        }
        breach
    }

    fn transition_reserved(
        &mut self,
        permit: PermitSeq,
        next: PermitState,
    ) -> Option<ChannelBreach> {
        match self.permits.get_mut(permit) {
            Some(state) if *state == PermitState::Reserved => {
                *state = next;
                None
            }
            other => Some(ChannelBreach::NotReserved {
                state: other.map(|state| *state),
            }),
        }
    }

    /// The receiver got `permit`.
    pub fn deliver(&mut self, permit: PermitSeq) -> Option<ChannelBreach> {
        self.skip_finished();
        let next = self.next_to_deliver;
        let slot = self.permits.get_mut(permit);
        let breach = match slot.as_deref().copied() {
            Some(PermitState::Delivered) => return Some(ChannelBreach::DeliveredTwice),
            Some(PermitState::Sent) if permit == next => None,
            Some(PermitState::Sent) => Some(ChannelBreach::DeliveredOutOfOrder { expected: next }),
            Some(PermitState::Reserved) if permit > next => {
                Some(ChannelBreach::DeliveredOutOfOrder { expected: next })
            }
            other => Some(ChannelBreach::DeliveredUnsent { state: other }),
        };
        if let Some(slot) = slot {
            if *slot != PermitState::Aborted {
                *slot = PermitState::Delivered;
                self.held = self.held.saturating_sub(1);
            }
            if permit == next {
                // Delivered or aborted now: what `skip_finished` would do
                // first thing next time.
                self.next_to_deliver = next.saturating_add(1);
            }
        }
        breach
    }

    /// Permits sent but not delivered, in order.
    pub fn sent_undelivered(&self) -> Vec<PermitSeq> {
        self.permits
            .iter()
            .filter(|(_, state)| **state == PermitState::Sent)
            .map(|(permit, _)| permit)
            .collect()
    }

    fn skip_finished(&mut self) {
        while matches!(
            self.permits.get(self.next_to_deliver),
            Some(PermitState::Aborted | PermitState::Delivered)
        ) {
            self.next_to_deliver = self.next_to_deliver.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve(channel: &mut TwoPhaseChannel, permit: PermitSeq) -> Vec<ChannelBreach> {
        let mut found = Vec::new();
        channel.reserve(permit, |breach| found.push(breach));
        found
    }

    #[test]
    fn delivery_follows_reservation_order_and_skips_aborts() {
        let mut channel = TwoPhaseChannel::new(3);
        for permit in 1..=3 {
            assert!(reserve(&mut channel, permit).is_empty());
        }
        assert_eq!(
            reserve(&mut channel, 4),
            vec![ChannelBreach::OverCapacity {
                held: 3,
                capacity: 3
            }]
        );
        assert_eq!(channel.send(3), None);
        assert_eq!(channel.abort(2), None);
        assert_eq!(
            channel.deliver(3),
            Some(ChannelBreach::DeliveredOutOfOrder { expected: 1 })
        );

        let mut channel = TwoPhaseChannel::new(3);
        for permit in 1..=3 {
            reserve(&mut channel, permit);
        }
        channel.send(3);
        channel.abort(2);
        assert_eq!(
            channel.deliver(1),
            Some(ChannelBreach::DeliveredUnsent {
                state: Some(PermitState::Reserved)
            })
        );
        let mut channel = TwoPhaseChannel::new(3);
        for permit in 1..=3 {
            reserve(&mut channel, permit);
        }
        channel.send(3);
        channel.abort(2);
        channel.send(1);
        assert_eq!(channel.deliver(1), None);
        assert_eq!(channel.deliver(3), None);
        assert_eq!(channel.deliver(3), Some(ChannelBreach::DeliveredTwice));
        assert_eq!(channel.held(), 0);
        assert!(channel.sent_undelivered().is_empty());
        assert_eq!(
            channel.send(2),
            Some(ChannelBreach::NotReserved {
                state: Some(PermitState::Aborted)
            })
        );

        let mut channel = TwoPhaseChannel::new(2);
        assert_eq!(
            channel.deliver(1),
            Some(ChannelBreach::DeliveredUnsent { state: None })
        );
        assert!(reserve(&mut channel, 1).is_empty());
        assert_eq!(channel.send(1), None);
        assert_eq!(channel.deliver(1), None, "permit 1 is still the next one");
    }
}
