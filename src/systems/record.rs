//! Event recording shared by the systems under test.
//!
//! Every system writes what happened at the points its spec names
//! (reservation, send, batch phases, fsync results, retry attempts, repair
//! events, recovery results) into a [`Recorder`]: an append-only list of
//! events stamped with simulated time. Checkers read it after the run.
//!
//! Guarantees: events appear in the order the system produced them (one
//! thread, so this is also their real order), each stamped with the
//! simulated time at which it was recorded. The lock is never held across
//! an `.await`, and a panic elsewhere never wedges it (poisoning is
//! ignored: the list is append-only, so a half-finished push cannot exist).

use std::sync::{Arc, Mutex, MutexGuard};

use durasim_sim::clock;
use durasim_sim::SimTime;

/// One recorded event and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded<E> {
    /// Simulated time of the event (zero outside a run).
    pub time: SimTime,
    /// The event.
    pub event: E,
}

/// A shared, append-only event log. Cloning shares the log.
#[derive(Debug)]
pub struct Recorder<E> {
    events: Arc<Mutex<Vec<Recorded<E>>>>,
}

impl<E> Clone for Recorder<E> {
    fn clone(&self) -> Self {
        Recorder {
            events: Arc::clone(&self.events),
        }
    }
}

impl<E> Default for Recorder<E> {
    fn default() -> Self {
        Recorder {
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<E: Clone> Recorder<E> {
    /// An empty log.
    pub fn new() -> Recorder<E> {
        Recorder::default()
    }

    /// Append `event`, stamped with the current simulated time.
    pub fn record(&self, event: E) {
        let time = clock::try_now().unwrap_or(SimTime::ZERO);
        lock_recovering(&self.events).push(Recorded { time, event });
    }

    /// Every event so far, with times.
    pub fn snapshot(&self) -> Vec<Recorded<E>> {
        lock_recovering(&self.events).clone()
    }

    /// What `read` makes of every event so far, without copying the log.
    /// The log stays locked while `read` runs, so `read` must not use this
    /// recorder (or a clone of it).
    pub fn with_events<T>(&self, read: impl FnOnce(&[Recorded<E>]) -> T) -> T {
        read(&lock_recovering(&self.events))
    }

    /// Every event so far, without times.
    pub fn events(&self) -> Vec<E> {
        lock_recovering(&self.events)
            .iter()
            .map(|r| r.event.clone())
            .collect()
    }

    /// The latest event for which `pick` returns something, newest first,
    /// without copying the log.
    pub fn find_last<T>(&self, pick: impl FnMut(&E) -> Option<T>) -> Option<T> {
        let mut pick = pick;
        lock_recovering(&self.events)
            .iter()
            .rev()
            .find_map(|r| pick(&r.event))
    }

    /// Whether an event recorded at position `start` or later satisfies
    /// `pred`.
    pub fn any_since(&self, start: usize, pred: impl FnMut(&E) -> bool) -> bool {
        let mut pred = pred;
        lock_recovering(&self.events)
            .get(start..)
            .is_some_and(|later| later.iter().any(|r| pred(&r.event)))
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        lock_recovering(&self.events).len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lock a std mutex, taking the data even if a panicking holder poisoned
/// it. Every structure guarded this way is kept consistent between
/// statements (no multi-step invariant spans a panic point), so the data is
/// usable; refusing it would let one panicking task wedge every other.
pub fn lock_recovering<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
