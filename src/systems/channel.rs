//! Spec 01: the two-phase bounded channel between many writers and the one
//! write coordinator.
//!
//! Guarantees:
//! - At most `capacity` slots are taken at any time: a slot is taken by
//!   [`Sender::reserve`] and given back when the receiver takes the message
//!   or the permit is aborted. `reserve` waits (in simulated time) while the
//!   channel is full; [`Sender::try_reserve_for`] gives up after a timeout
//!   without taking anything.
//! - Permits are numbered 1, 2, 3, … in reservation order.
//! - [`Permit::send`] cannot fail. [`Permit::abort`] and dropping a permit
//!   give the slot back; the tracked variant ([`tracked`]) also counts
//!   permits dropped without `send` or `abort` as leaked.
//! - Delivery is in reservation order, not send order: the receiver sees
//!   permit `n` only after every permit below `n` was delivered or aborted.
//! - Capacity defaults to 16; configured capacities are clamped to
//!   [1, 65535] ([`clamp_capacity`]). Sizing helpers follow the spec's
//!   formulas exactly ([`littles_law_capacity`], [`optimal_batch_size`],
//!   [`conformal_batch_size`]).
//!
//! Every state change can be recorded as a [`ChannelEvent`] (with the
//! number of slots in use, so a checker can verify D12 backpressure).
//!
//! Implementation: one state behind a std mutex (never held across an
//! `.await`) and a `Notify` that wakes every waiter on each change; waiters
//! re-check the state. Waiters create their `Notified` future before
//! checking, so no wake-up is lost between the check and the wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::record::{lock_recovering, Recorder};

/// Capacity when the configuration says nothing.
pub const DEFAULT_CAPACITY: usize = 16;
/// Smallest capacity a configuration may give.
pub const MIN_CAPACITY: usize = 1;
/// Largest capacity a configuration may give.
pub const MAX_CAPACITY: usize = 65_535;

/// A configured capacity clamped to [`MIN_CAPACITY`, `MAX_CAPACITY`]
/// (negative and zero become 1).
pub fn clamp_capacity(requested: i64) -> usize {
    let max = MAX_CAPACITY as i64;
    requested.clamp(MIN_CAPACITY as i64, max) as usize
}

/// Little's law sizing: `ceil(λ · t_commit · max(burst, 1) · max(jitter, 1))`,
/// at least 1. `arrivals_per_s` is λ. A non-finite or non-positive product
/// gives 1; an enormous one saturates.
pub fn littles_law_capacity(
    arrivals_per_s: f64,
    commit_latency: Duration,
    burst_factor: f64,
    jitter_factor: f64,
) -> usize {
    let in_flight = arrivals_per_s
        * commit_latency.as_secs_f64()
        * burst_factor.max(1.0)
        * jitter_factor.max(1.0);
    // `as` saturates and maps NaN to 0, which `max(1)` turns into 1.
    (in_flight.ceil() as usize).max(1)
}

/// Batch size that balances one fsync against per-request validation:
/// `round(sqrt(t_fsync / t_validate))` clamped to [1, capacity]. A zero
/// validation time gives `capacity`.
pub fn optimal_batch_size(fsync: Duration, validate: Duration, capacity: usize) -> usize {
    let capacity = capacity.max(1);
    let ratio = fsync.as_secs_f64() / validate.as_secs_f64();
    let size = ratio.sqrt().round();
    if size.is_nan() {
        // 0 / 0: nothing to balance.
        return 1;
    }
    (size as usize).clamp(1, capacity)
}

/// The "conformal" variant of [`optimal_batch_size`]: uses the 0.9 quantile
/// (nearest rank) of observed fsync and validation times; 1 when either
/// sample set is empty.
pub fn conformal_batch_size(
    fsync_samples: &[Duration],
    validate_samples: &[Duration],
    capacity: usize,
) -> usize {
    match (quantile_90(fsync_samples), quantile_90(validate_samples)) {
        (Some(fsync), Some(validate)) => optimal_batch_size(fsync, validate, capacity),
        _ => 1,
    }
}

/// The 0.9 quantile by nearest rank: the smallest sample with at least 90%
/// of the samples at or below it.
pub fn quantile_90(samples: &[Duration]) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    // ceil(0.9 · n) computed in integers: (9n + 9) / 10.
    let rank = (9 * sorted.len()).div_ceil(10).max(1);
    sorted.get(rank - 1).copied()
}

/// What happened in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// Permit `seq` took a slot; `in_use` slots are now taken.
    Reserved {
        /// Permit number.
        seq: u64,
        /// Slots taken after this reservation.
        in_use: usize,
    },
    /// `try_reserve_for` gave up without taking a slot.
    ReserveTimedOut,
    /// Permit `seq` was sent.
    Sent {
        /// Permit number.
        seq: u64,
    },
    /// Permit `seq` gave its slot back without sending.
    Aborted {
        /// Permit number.
        seq: u64,
        /// True when the permit was dropped without `send` or `abort`.
        dropped: bool,
    },
    /// The receiver took permit `seq`'s message.
    Delivered {
        /// Permit number.
        seq: u64,
    },
    /// The channel was closed to new reservations.
    Closed,
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// The channel is closed (the receiver is gone or shut down).
    #[error("channel closed")]
    Closed,
}

/// A reserved slot's state.
enum Slot<T> {
    Reserved,
    Sent(T),
    Aborted,
}

struct State<T> {
    capacity: usize,
    /// Number given to the next reservation.
    next_seq: u64,
    /// Every reservation not yet delivered or skipped, by number. Numbers
    /// are contiguous, so the first key is always the next to deliver.
    slots: BTreeMap<u64, Slot<T>>,
    /// Slots taken: reserved or sent, not yet delivered.
    in_use: usize,
    /// Highest `in_use` ever seen.
    high_water: usize,
    senders: usize,
    closed: bool,
    /// See [`ChannelOptions::bug_deliver_in_send_order`].
    bug_deliver_in_send_order: bool,
    leaked: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Notify,
    tracked: bool,
    recorder: Option<Recorder<ChannelEvent>>,
}

impl<T> Shared<T> {
    fn record(&self, event: ChannelEvent) {
        if let Some(r) = &self.recorder {
            r.record(event);
        }
    }

    fn wake(&self) {
        self.changed.notify_waiters();
    }

    fn release(&self, seq: u64, dropped: bool) {
        {
            let mut s = lock_recovering(&self.state);
            if let Some(slot) = s.slots.get_mut(&seq) {
                *slot = Slot::Aborted;
                s.in_use -= 1;
            }
            if dropped && self.tracked {
                s.leaked += 1;
            }
        }
        self.record(ChannelEvent::Aborted { seq, dropped });
        self.wake();
    }
}

/// Options of a channel.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    /// Capacity (clamped to [1, 65535]).
    pub capacity: usize,
    /// Count permits dropped without send or abort.
    pub tracked: bool,
    /// Where to record events.
    pub recorder: Option<Recorder<ChannelEvent>>,
    /// Known bug (off by default): deliver a sent message while an earlier
    /// reservation is still unsent, i.e. in send order instead of
    /// reservation order.
    pub bug_deliver_in_send_order: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            capacity: DEFAULT_CAPACITY,
            tracked: false,
            recorder: None,
            bug_deliver_in_send_order: false,
        }
    }
}

/// A channel of `capacity` (clamped).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel_with(ChannelOptions {
        capacity,
        ..ChannelOptions::default()
    })
}

/// A tracked channel of `capacity`: it counts leaked permits.
pub fn tracked<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel_with(ChannelOptions {
        capacity,
        tracked: true,
        ..ChannelOptions::default()
    })
}

/// A channel with explicit options.
pub fn channel_with<T>(options: ChannelOptions) -> (Sender<T>, Receiver<T>) {
    let capacity = clamp_capacity(i64::try_from(options.capacity).unwrap_or(i64::MAX));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            capacity,
            next_seq: 1,
            slots: BTreeMap::new(),
            in_use: 0,
            high_water: 0,
            senders: 1,
            closed: false,
            leaked: 0,
            bug_deliver_in_send_order: options.bug_deliver_in_send_order,
        }),
        changed: Notify::new(),
        tracked: options.tracked,
        recorder: options.recorder,
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// The writers' side. Clone it for each writer.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        lock_recovering(&self.shared.state).senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        lock_recovering(&self.shared.state).senders -= 1;
        self.shared.wake();
    }
}

impl<T> Sender<T> {
    /// Take a slot without waiting, if one is free.
    fn take_slot(&self) -> Option<Result<Permit<T>, ReserveError>> {
        let (seq, in_use) = {
            let mut s = lock_recovering(&self.shared.state);
            if s.closed {
                return Some(Err(ReserveError::Closed));
            }
            if s.in_use >= s.capacity {
                return None;
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            s.slots.insert(seq, Slot::Reserved);
            s.in_use += 1;
            s.high_water = s.high_water.max(s.in_use);
            (seq, s.in_use)
        };
        self.shared.record(ChannelEvent::Reserved { seq, in_use });
        Some(Ok(Permit {
            shared: Arc::clone(&self.shared),
            seq,
            settled: false,
        }))
    }

    /// Phase 1: take a slot, waiting in simulated time while the channel is
    /// full. Fails only when the channel is closed.
    pub async fn reserve(&self) -> Result<Permit<T>, ReserveError> {
        loop {
            let changed = self.shared.changed.notified();
            if let Some(result) = self.take_slot() {
                return result;
            }
            changed.await;
        }
    }

    /// [`reserve`](Self::reserve), giving up after `timeout` (simulated;
    /// madsim timers fire no earlier than 1 ms). `None` means it timed out
    /// and took nothing: that is how a writer cancels while waiting.
    pub async fn try_reserve_for(
        &self,
        timeout: Duration,
    ) -> Option<Result<Permit<T>, ReserveError>> {
        // `reserve` takes its slot without an await between the check and
        // the take, so cancelling it at the timeout cannot leave a slot
        // half taken.
        match durasim_sim::clock::timeout(timeout, self.reserve()).await {
            Ok(result) => Some(result),
            Err(_) => {
                self.shared.record(ChannelEvent::ReserveTimedOut);
                None
            }
        }
    }

    /// Close the channel to new reservations (existing permits may still
    /// send; the receiver drains them, then sees the end).
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        lock_recovering(&self.shared.state).in_use
    }

    /// The clamped capacity.
    pub fn capacity(&self) -> usize {
        lock_recovering(&self.shared.state).capacity
    }

    /// Permits dropped without send or abort (tracked channels; always 0
    /// otherwise).
    pub fn leaked_permits(&self) -> u64 {
        lock_recovering(&self.shared.state).leaked
    }
}

fn close<T>(shared: &Shared<T>) {
    let was_open = {
        let mut s = lock_recovering(&shared.state);
        !std::mem::replace(&mut s.closed, true)
    };
    if was_open {
        shared.record(ChannelEvent::Closed);
    }
    shared.wake();
}

/// A reserved slot. Send into it, abort it, or drop it (= abort).
pub struct Permit<T> {
    shared: Arc<Shared<T>>,
    seq: u64,
    settled: bool,
}

impl<T> std::fmt::Debug for Permit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("seq", &self.seq).finish()
    }
}

impl<T> Permit<T> {
    /// This permit's number (1, 2, 3, … in reservation order).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Phase 2: hand `value` over. Cannot fail: the slot is already taken.
    pub fn send(mut self, value: T) {
        self.settled = true;
        if let Some(slot) = lock_recovering(&self.shared.state).slots.get_mut(&self.seq) {
            *slot = Slot::Sent(value);
        }
        self.shared.record(ChannelEvent::Sent { seq: self.seq });
        self.shared.wake();
    }

    /// Give the slot back without sending.
    pub fn abort(mut self) {
        self.settled = true;
        self.shared.release(self.seq, false);
    }
}

impl<T> Drop for Permit<T> {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.release(self.seq, true);
        }
    }
}

/// The coordinator's side.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// What a non-blocking receive found.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecv<T> {
    /// The next message in reservation order, with its permit number.
    Message(u64, T),
    /// Nothing deliverable yet (empty, or waiting for an earlier permit).
    Empty,
    /// Closed (or every sender gone) and nothing left outstanding.
    Ended,
}

/// The known bug's delivery: the first sent message, whatever reservations
/// before it are still unsent.
fn take_first_sent<T>(slots: &mut BTreeMap<u64, Slot<T>>) -> Option<(u64, T)> {
    let seq = slots
        .iter()
        .find(|(_, slot)| matches!(slot, Slot::Sent(_)))
        .map(|(&seq, _)| seq)?;
    match slots.remove(&seq) {
        Some(Slot::Sent(value)) => Some((seq, value)),
        _ => None,
    }
}

impl<T> Receiver<T> {
    /// Take the next message in reservation order without waiting.
    pub fn try_recv(&self) -> TryRecv<T> {
        let delivered = {
            let mut guard = lock_recovering(&self.shared.state);
            let s = &mut *guard;
            loop {
                let Some(entry) = s.slots.first_entry() else {
                    let ended = s.closed || s.senders == 0;
                    return if ended {
                        TryRecv::Ended
                    } else {
                        TryRecv::Empty
                    };
                };
                match entry.get() {
                    Slot::Reserved if s.bug_deliver_in_send_order => {
                        match take_first_sent(&mut s.slots) {
                            Some(delivered) => {
                                s.in_use -= 1;
                                break delivered;
                            }
                            None => return TryRecv::Empty,
                        }
                    }
                    Slot::Reserved => return TryRecv::Empty,
                    Slot::Aborted => {
                        entry.remove();
                    }
                    Slot::Sent(_) => {
                        if let (seq, Slot::Sent(value)) = entry.remove_entry() {
                            s.in_use -= 1;
                            break (seq, value);
                        }
                    }
                }
            }
        };
        self.shared
            .record(ChannelEvent::Delivered { seq: delivered.0 });
        self.shared.wake();
        TryRecv::Message(delivered.0, delivered.1)
    }

    /// Wait for the next message in reservation order; `None` once the
    /// channel is closed (or every sender is gone) and drained.
    pub async fn recv(&self) -> Option<(u64, T)> {
        loop {
            let changed = self.shared.changed.notified();
            match self.try_recv() {
                TryRecv::Message(seq, value) => return Some((seq, value)),
                TryRecv::Ended => return None,
                TryRecv::Empty => changed.await,
            }
        }
    }

    /// Close the channel to new reservations.
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        lock_recovering(&self.shared.state).in_use
    }

    /// The most slots ever taken at once.
    pub fn high_water(&self) -> usize {
        lock_recovering(&self.shared.state).high_water
    }

    /// Permits dropped without send or abort (tracked channels).
    pub fn leaked_permits(&self) -> u64 {
        lock_recovering(&self.shared.state).leaked
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Nobody will take messages any more: writers waiting for a slot
        // must not wait forever.
        close(&self.shared);
    }
}
