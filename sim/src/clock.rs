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
//! 50 µs of simulated time. Timeouts ([`timeout`]) keep the 1 ms floor.
//!
//! Cost: madsim finds its clock through the runtime's context, cloning its
//! handles on every call; a run reads the clock for nearly every event, so
//! [`run`](crate::run) caches the running clock's handle per thread (see
//! [`enter_run`]) and the functions here read it directly.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use madsim::time::{error::Elapsed, TimeHandle};
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
    with_time(|handle| SimTime(duration_nanos(handle.elapsed())))
}

thread_local! {
    /// The clock of the run on this thread, while [`run`](crate::run) runs one.
    static RUN_CLOCK: RefCell<Option<TimeHandle>> = const { RefCell::new(None) };
}

/// Cache the clock of the madsim runtime now entered on this thread (call
/// from inside it) for the run about to start, until the returned guard is
/// dropped: then the clock cached before (the enclosing run's, when runs
/// nest) is restored, whether the run returned or unwound.
pub(crate) fn enter_run() -> RunClock {
    RunClock {
        enclosing: RUN_CLOCK.with(|clock| clock.replace(TimeHandle::try_current())),
    }
}

/// Keeps a run's clock cached; see [`enter_run`].
pub(crate) struct RunClock {
    enclosing: Option<TimeHandle>,
}

impl Drop for RunClock {
    fn drop(&mut self) {
        let enclosing = self.enclosing.take();
        RUN_CLOCK.with(|clock| clock.replace(enclosing));
    }
}

/// `f` on the running clock: the cached one inside a run, else madsim's
/// current one (a bare madsim runtime); `None` outside any runtime.
fn with_time<R>(f: impl FnOnce(&TimeHandle) -> R) -> Option<R> {
    RUN_CLOCK.with(|clock| match &*clock.borrow() {
        Some(handle) => Some(f(handle)),
        None => TimeHandle::try_current().map(|handle| f(&handle)),
    })
}

/// The running clock's handle. Panics outside a run, like [`now`].
fn time_handle() -> TimeHandle {
    with_time(TimeHandle::clone).expect("simulated time used outside a simulated run")
}

/// `future`, or [`Elapsed`] if `duration` of simulated time passes first
/// (at least 1 ms: madsim's timer floor). The deadline is fixed now, when
/// the timeout is made; `future` is polled before the deadline is checked.
pub fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    let mut deadline = Sleep::new(duration);
    async move {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(move |cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            Pin::new(&mut deadline).poll(cx).map(|()| Err(Elapsed))
        })
        .await
    }
}

/// A madsim sleep that sets its timer once per waker.
///
/// madsim's `Sleep` adds a timer every time it is polled while pending,
/// and timers cannot be cancelled: a task woken for another reason (a
/// message, a notification) while it also waits on a deadline would add
/// one more timer per wake-up, each of which later wakes the task for
/// nothing and adds timers again. This wrapper polls the inner sleep only
/// when no timer holding the same waker is set yet.
struct Sleep {
    inner: madsim::time::Sleep,
    /// The waker the inner sleep's timer will wake.
    armed_for: Option<Waker>,
}

impl Sleep {
    fn new(duration: Duration) -> Sleep {
        Sleep {
            inner: time_handle().sleep(duration),
            armed_for: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.is_elapsed() {
            return Poll::Ready(());
        }
        if self
            .armed_for
            .as_ref()
            .is_some_and(|armed| armed.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll(cx);
        if polled.is_pending() {
            self.armed_for = Some(cx.waker().clone());
        }
        polled
    }
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
        Sleep::new(d).await;
    } else {
        if !d.is_zero() {
            with_time(|handle| handle.advance(d));
        }
        madsim::task::yield_now().await;
    }
}
