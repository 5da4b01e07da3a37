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

use durasim_models::{EventKind, History};
use durasim_sim::SimTime;

use crate::harness::Finding;

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
#[derive(Debug, Default)]
pub(crate) struct Merger {
    events: Vec<(u64, Rank, usize, EventKind)>,
}

impl Merger {
    /// Add `kind`, recorded at `time` in a stream of rank `rank`. Events
    /// pushed for one stream must be pushed in their recorded order.
    pub(crate) fn push(&mut self, time: SimTime, rank: Rank, kind: EventKind) {
        let n = self.events.len();
        self.events.push((time.as_nanos(), rank, n, kind));
    }

    /// The merged history.
    pub(crate) fn into_history(mut self) -> History {
        self.events
            .sort_by_key(|(time, rank, n, _)| (*time, *rank, *n));
        let mut history = History::with_capacity(self.events.len());
        for (time, _, _, kind) in self.events {
            history.push(time, kind);
        }
        history
    }
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
