//! Shared by the model-checked scenarios: ordering recorded streams into
//! one [`History`] and turning the models' violations into findings.
//!
//! The systems record into separate [`Recorder`](crate::systems::record::Recorder)s
//! (one per event type). A history needs one order. Within one stream the
//! recorded order is the real order; across streams events are ordered by
//! simulated time, and events of one instant by a fixed rank per stream
//! ([`Rank`]) chosen so that every causal chain that can happen inside one
//! instant keeps its order (a publication before the acknowledgement it
//! causes; an invocation before its first attempt and a completion after
//! its last; a crash after everything the dying incarnation did).

use durasim_models::{ChannelId, EventKind, History};
use durasim_sim::SimTime;

use crate::harness::Finding;
use crate::systems::channel::ChannelEvent;

/// Where an event sorts among the events of the same simulated instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// Run phases and policy declarations.
    Harness,
    /// Server lifecycle: recoveries and channel declarations.
    Server,
    /// The commit coordinator's batches.
    Coordinator,
    /// Repair lifecycle events (spec 03): after the publication that
    /// starts a repair.
    Repair,
    /// The two-phase channel.
    Channel,
    /// A client operation starts.
    Invoke,
    /// Commit attempts of the retry loop.
    Attempt,
    /// A client operation's outcome.
    Complete,
    /// A server crash: after everything its incarnation did at that instant
    /// (a restarted incarnation needs disk I/O, so it starts later).
    Crash,
}

/// Events from several streams, to be put into one order.
///
/// Only the sort keys are sorted: an event is moved once, from where it
/// was pushed into the history, instead of at every step of a sort.
#[derive(Debug, Default)]
pub(crate) struct Merger {
    /// One per event: time, rank and push position packed into one
    /// integer that orders as the triple `(time, rank, position)` does
    /// (see [`Merger::key`]). Positions differ, so no two keys are equal.
    keys: Vec<u128>,
    /// The events in push order; each is taken out once, by its key.
    events: Vec<Option<EventKind>>,
}

/// Bits of a key that hold the push position.
const POSITION_BITS: u32 = 48;

impl Merger {
    /// An empty merger with room for `events` events.
    pub(crate) fn with_capacity(events: usize) -> Merger {
        Merger {
            keys: Vec::with_capacity(events),
            events: Vec::with_capacity(events),
        }
    }

    /// Add `kind`, recorded at `time` in a stream of rank `rank`. Events
    /// pushed for one stream must be pushed in their recorded order.
    pub(crate) fn push(&mut self, time: SimTime, rank: Rank, kind: EventKind) {
        self.keys.push(Merger::key(time, rank, self.events.len()));
        self.events.push(Some(kind));
    }

    /// `(time, rank, position)` as one integer: time in the high 64 bits,
    /// then the rank, then the position in the low [`POSITION_BITS`].
    fn key(time: SimTime, rank: Rank, position: usize) -> u128 {
        let position = position as u128;
        assert!(position < 1 << POSITION_BITS, "too many events to merge");
        (u128::from(time.as_nanos()) << 64) | ((rank as u128) << POSITION_BITS) | position
    }

    /// The merged history: by time, then rank, then push order.
    pub(crate) fn into_history(self) -> History {
        let Merger {
            mut keys,
            mut events,
        } = self;
        // The keys are distinct, so any sort gives the same order; the
        // stable one finds the pushed streams' sorted runs and merges them.
        keys.sort();
        let mut history = History::with_capacity(keys.len());
        let mask = (1u128 << POSITION_BITS) - 1;
        for key in keys {
            let position = (key & mask) as usize;
            let kind = events[position].take().expect("each event is merged once");
            history.push((key >> 64) as u64, kind);
        }
        history
    }
}

/// The history event for what channel `channel` recorded, or `None` for
/// what the channel models do not see (a reservation that timed out
/// without taking a slot, the channel closing).
pub(crate) fn permit_event(channel: ChannelId, event: &ChannelEvent) -> Option<EventKind> {
    Some(match *event {
        ChannelEvent::Reserved { seq, .. } => EventKind::PermitReserved {
            channel,
            permit: seq,
        },
        ChannelEvent::Sent { seq } => EventKind::PermitSent {
            channel,
            permit: seq,
        },
        ChannelEvent::Aborted {
            seq,
            dropped: false,
        } => EventKind::PermitAborted {
            channel,
            permit: seq,
        },
        ChannelEvent::Aborted { seq, dropped: true } => EventKind::PermitDropped {
            channel,
            permit: seq,
        },
        ChannelEvent::Delivered { seq } => EventKind::PermitDelivered {
            channel,
            permit: seq,
        },
        ChannelEvent::ReserveTimedOut | ChannelEvent::Closed => return None,
    })
}

/// Run every checker of the models over `history`; one finding per
/// violation.
pub(crate) fn findings(history: &History) -> Vec<Finding> {
    durasim_models::check(history)
        .into_iter()
        .map(|v| Finding {
            invariant: v.invariant.to_string(),
            time: SimTime::from_nanos(v.time),
            ops: v.ops,
            message: v.message,
        })
        .collect()
}

/// A page value's digest, as the models' `PageWrite.value` (a `u64`)
/// holds it: XXH3 64 of the payload bytes, the WAL's own checksum. Two
/// different payloads collide with negligible probability, so "same
/// digest" stands for "same value" in the checks.
pub(crate) fn digest(payload: &[u8]) -> u64 {
    crate::systems::wal_format::checksum(payload)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RANKS: [Rank; 9] = [
        Rank::Harness,
        Rank::Server,
        Rank::Coordinator,
        Rank::Repair,
        Rank::Channel,
        Rank::Invoke,
        Rank::Attempt,
        Rank::Complete,
        Rank::Crash,
    ];

    /// An event that names its push position, so an order can be read back.
    fn tagged(position: usize) -> EventKind {
        EventKind::PermitSent {
            channel: 0,
            permit: position as u64,
        }
    }

    /// The merged history as (time, event) pairs, in its order.
    fn merged_order(merger: Merger) -> Vec<(u64, EventKind)> {
        merger
            .into_history()
            .events
            .into_iter()
            .map(|event| (event.time, event.kind))
            .collect()
    }

    proptest! {
        /// The merge is a stable sort by (time, rank): equal keys keep their
        /// push order. Few distinct times and ranks, so ties are common.
        #[test]
        fn merges_as_a_stable_sort_by_time_then_rank(
            pushed in proptest::collection::vec((0u64..4, 0usize..RANKS.len()), 0..200),
        ) {
            let mut merger = Merger::default();
            for (position, &(time, rank)) in pushed.iter().enumerate() {
                merger.push(SimTime::from_nanos(time), RANKS[rank], tagged(position));
            }
            let mut expected: Vec<(u64, Rank, usize)> = pushed
                .iter()
                .enumerate()
                .map(|(position, &(time, rank))| (time, RANKS[rank], position))
                .collect();
            expected.sort_by_key(|&(time, rank, _)| (time, rank));
            let merged = merged_order(merger);
            let expected: Vec<(u64, EventKind)> = expected
                .into_iter()
                .map(|(time, _, position)| (time, tagged(position)))
                .collect();
            prop_assert_eq!(merged, expected);
        }
    }

    #[test]
    fn the_latest_time_and_rank_sort_last() {
        let mut merger = Merger::default();
        merger.push(SimTime::from_nanos(u64::MAX), Rank::Crash, tagged(0));
        merger.push(SimTime::from_nanos(u64::MAX), Rank::Harness, tagged(1));
        merger.push(SimTime::ZERO, Rank::Crash, tagged(2));
        assert_eq!(
            merged_order(merger),
            vec![(0, tagged(2)), (u64::MAX, tagged(1)), (u64::MAX, tagged(0))]
        );
    }
}
