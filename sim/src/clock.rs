//! Simulated time.
//!
//! Model: one global simulated clock (madsim's) that starts at zero for each
//! run and only moves when every task is blocked; sleeping costs no wall
//! time. Each process may read "wall" time through [`wall_now`], offset by a
//! per-process skew that the fault scheduler can make jump.
//!
//! Resolution: madsim timers fire no earlier than 1 ms after they are set.
//! [`sleep`] keeps sub-millisecond delays exact by advancing the clock
//! inline (the calling task "spends" the time, as a CPU-bound or
//! device-bound step would) and then yielding, so a 50 µs disk write costs
//! 50 µs of simulated time. Timeouts (`madsim::time::timeout`) keep the 1 ms
//! floor.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Simulated time since the start of a run, in nanoseconds.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SimTime(u64);

impl SimTime {
    /// The start of the run.
    pub const ZERO: SimTime = SimTime(0);

    /// From nanoseconds since the start.
    pub const fn from_nanos(nanos: u64) -> SimTime {
        SimTime(nanos)
    }

    /// Nanoseconds since the start.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the start.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// As a duration since the start.
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> SimTime {
        SimTime(self.0.saturating_add(duration_nanos(d)))
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::fmt::Display for SimTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.6} s", self.as_secs_f64())
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX`.
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Simulated time now. Panics outside a run (a programming error: there is
/// no simulated clock to read).
pub fn now() -> SimTime {
    try_now().expect("durasim_sim::clock::now() called outside a simulated run")
}

/// Simulated time now, or `None` outside a run.
pub fn try_now() -> Option<SimTime> {
    madsim::time::TimeHandle::try_current().map(|handle| SimTime(duration_nanos(handle.elapsed())))
}

/// The current process's reading of wall-clock time: simulated time plus
/// its skew (which may be negative and may jump under the `crash` faults).
pub fn wall_now() -> SimTime {
    let base = now();
    let skew = crate::world::current_skew_nanos();
    SimTime(base.0.saturating_add_signed(skew))
}

/// Let `d` of simulated time pass for the calling task (see the module
/// notes on sub-millisecond delays).
pub async fn sleep(d: Duration) {
    crate::world::watchdog_point();
    if d >= Duration::from_millis(1) {
        madsim::time::sleep(d).await;
    } else {
        if !d.is_zero() {
            madsim::time::TimeHandle::current().advance(d);
        }
        madsim::task::yield_now().await;
    }
}
