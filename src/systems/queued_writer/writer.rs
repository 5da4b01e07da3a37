//! The queued writer: a bounded queue, the writer task that drains it in
//! batches, and the supervisor that restarts the writer when it crashes.
//! See the parent module for the guarantees.
//!
//! Implementation: all state lives in one [`State`] behind a std mutex
//! (never held across an `.await`) plus one `Notify` that wakes every
//! waiter on each change (senders waiting for room, the writer waiting for
//! messages, flushes waiting for settlements); waiters create their
//! `Notified` before checking, so no wake-up is lost. The writer task owns
//! nothing: the queue and the batch in flight (with each call's retry
//! state) are in `State`, so aborting the task at any await point loses
//! only what it was awaiting. Every state change that concerns a message
//! is made in one locked section and recorded inside it, so the recorded
//! order is the real order.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::{buggify_with, choose_between, clock, SimTime, Site};
use futures_util::FutureExt;
use tokio::sync::Notify;

use super::backend::{Backend, BackendCall, BackendError, Receipt};
use super::health::{HealthReport, HealthTracker, DEFAULT_UNHEALTHY_AFTER};
use super::{FailureMode, Message, MessageId, Overflow, StreamId};
use crate::systems::backoff::BackoffPolicy;
use crate::systems::record::{lock_recovering, Recorder};

/// Application fault: the writer task crashes a few ms from now, wherever
/// it is then (mid-call, backing off, collecting a batch).
pub const WRITER_CRASH: Site = Site::fault("queued.writer_crash", "writer-crash");
/// How many ms from the decision the crash lands.
pub const WRITER_CRASH_MS: Site = Site::value("queued.writer_crash_ms");

/// Batch window when the configuration says nothing.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Queue capacity when the configuration says nothing.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Largest capacity a configuration may give (larger is clamped).
pub const MAX_CAPACITY: usize = 1 << 20;
/// Time before a crashed writer task is restarted, by default.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(10);
/// Latest a writer crash decided at a fault site lands, ms after the
/// decision.
const CRASH_MS_MAX: u64 = 4;

/// Spec 04's known bugs, reproducible on demand. All off (the default) is
/// the correct writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuedWriterBugs {
    /// Shutdown stops the writer after the calls in flight, leaving every
    /// still-queued message neither landed nor failed.
    pub shutdown_skips_flush: bool,
    /// Coalescing merges consecutive messages of a batch whatever their
    /// streams: they all go in one call to the first message's stream.
    pub coalesce_across_streams: bool,
}

/// Receives every settlement, in the order they happen.
pub type SettleHandler = Arc<dyn Fn(&Settlement) + Send + Sync>;

/// Settings of a queued writer.
#[derive(Clone)]
pub struct QueuedWriterConfig {
    /// How long the writer collects after the first queued message.
    pub batch_window: Duration,
    /// Most messages queued at once (clamped to [1, [`MAX_CAPACITY`]]).
    pub capacity: usize,
    /// What an enqueue does when the queue is full.
    pub overflow: Overflow,
    /// Whether terminal failures are the caller's errors.
    pub failure_mode: FailureMode,
    /// Backoff for transient backend errors (spec 02).
    pub retry: BackoffPolicy,
    /// Consecutive failed attempts from which health is `Unhealthy`.
    pub unhealthy_after: u32,
    /// Time before a crashed writer task is restarted.
    pub restart_delay: Duration,
    /// Where events are recorded.
    pub recorder: Recorder<WriterEvent>,
    /// Hears of every landing, terminal failure and drop.
    pub on_settled: Option<SettleHandler>,
    /// Known bugs to reproduce (all off by default).
    pub bugs: QueuedWriterBugs,
}

impl Default for QueuedWriterConfig {
    fn default() -> Self {
        QueuedWriterConfig {
            batch_window: DEFAULT_BATCH_WINDOW,
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Block,
            failure_mode: FailureMode::Required,
            retry: BackoffPolicy::default(),
            unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
            restart_delay: DEFAULT_RESTART_DELAY,
            recorder: Recorder::new(),
            on_settled: None,
            bugs: QueuedWriterBugs::default(),
        }
    }
}

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// It is on the backend.
    Landed {
        /// The message.
        id: MessageId,
        /// Its stream.
        stream: StreamId,
        /// Its position in the backend's log.
        position: u64,
        /// An earlier, interrupted or unanswered attempt had applied it.
        already_applied: bool,
    },
    /// It failed terminally.
    Failed(OpFailure),
    /// `DropOldest` evicted it from the full queue; it never reached the
    /// backend.
    Dropped {
        /// The message.
        id: MessageId,
        /// Its stream.
        stream: StreamId,
    },
}

/// A message that failed terminally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFailure {
    /// The message.
    pub id: MessageId,
    /// Its stream.
    pub stream: StreamId,
    /// Why.
    pub error: OpError,
    /// Whether it may have landed anyway (an earlier attempt of its call
    /// ended transiently or was interrupted by a writer crash).
    pub may_have_applied: bool,
}

/// Why a message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The backend rejected its call for good.
    #[error("rejected by the backend: {reason}")]
    Rejected {
        /// The backend's reason.
        reason: String,
    },
    /// Transient errors outlasted the retry window.
    #[error("retry window exhausted after {attempts} attempt(s) in {elapsed:?}: {last_error}")]
    RetryWindowExhausted {
        /// Attempts made.
        attempts: u32,
        /// From the first attempt to giving up.
        elapsed: Duration,
        /// The last error.
        last_error: String,
    },
}

/// Why an enqueue was refused. The message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// `Fail` overflow: the queue is full.
    #[error("queue full")]
    Full,
    /// The writer is shutting down or shut down.
    #[error("queued writer closed")]
    Closed,
}

/// Terminal failures of a `Required` registration, surfaced by a flush or
/// shutdown. Each failure is surfaced once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} message(s) failed terminally, first: message {} ({})", failures.len(), failures[0].id, failures[0].error)]
pub struct FlushError {
    /// The failures, in the order they happened (never empty).
    pub failures: Vec<OpFailure>,
}

/// What the backend call's attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Applied: one receipt per message.
    Ok(Vec<Receipt>),
    /// Transient error (or an answer that breaks the contract).
    Transient(String),
    /// Permanent error.
    Permanent(String),
    /// The writer crashed while the attempt was in flight: outcome unknown.
    Interrupted,
}

/// What the queued writer did, for checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterEvent {
    /// The queue exists (once per writer).
    Declared {
        /// Its clamped capacity.
        capacity: usize,
        /// Its overflow policy.
        overflow: Overflow,
    },
    /// A message was queued; `queued` are queued now.
    Enqueued {
        /// The message.
        id: MessageId,
        /// Its stream.
        stream: StreamId,
        /// Queue length right after.
        queued: usize,
    },
    /// A `Block` sender found the queue full and waits.
    SenderBlocked {
        /// The message it waits to queue.
        id: MessageId,
    },
    /// A `Fail` enqueue found the queue full.
    EnqueueFailed {
        /// The message refused.
        id: MessageId,
    },
    /// An enqueue after (or blocked across) the start of shutdown.
    EnqueueRejected {
        /// The message refused.
        id: MessageId,
    },
    /// `DropOldest` evicted the oldest queued message.
    DroppedOldest {
        /// The evicted message.
        id: MessageId,
    },
    /// The drop was reported (settlement handler called, counted).
    DropReported {
        /// The dropped message.
        id: MessageId,
    },
    /// The writer took a message into a batch.
    Dequeued {
        /// The message.
        id: MessageId,
        /// Queue length right after.
        queued: usize,
    },
    /// An attempt of a backend call started.
    CallStarted {
        /// The call (unique per writer).
        call: u64,
        /// Its stream.
        stream: StreamId,
        /// Its messages, in order.
        ids: Vec<MessageId>,
        /// 1, 2, 3, …
        attempt: u32,
        /// The backoff slept before it (zero for the first).
        delay_before: Duration,
    },
    /// An attempt ended.
    CallEnded {
        /// The call.
        call: u64,
        /// The attempt.
        attempt: u32,
        /// How.
        outcome: CallOutcome,
    },
    /// A message landed.
    Landed {
        /// The message.
        id: MessageId,
        /// Its position in the backend's log.
        position: u64,
    },
    /// A message failed terminally.
    Failed {
        /// The message.
        id: MessageId,
        /// Why.
        error: String,
        /// Whether it may have landed anyway.
        may_have_applied: bool,
    },
    /// The writer task crashed.
    WriterCrashed,
    /// The supervisor restarted it.
    WriterRestarted,
    /// Shutdown began: the queue is closed.
    ShutdownStarted,
    /// The writer stopped; `abandoned` messages were still queued.
    ShutdownFinished {
        /// Messages left queued (0 unless a known bug is on).
        abandoned: usize,
    },
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Messages accepted into the queue.
    pub enqueued: u64,
    /// Messages landed.
    pub landed: u64,
    /// Messages failed terminally.
    pub failed: u64,
    /// Messages dropped by `DropOldest`.
    pub dropped: u64,
    /// Enqueues refused (full under `Fail`, or closed).
    pub refused: u64,
    /// Backend call attempts.
    pub backend_calls: u64,
    /// Writer task crashes.
    pub writer_crashes: u64,
    /// Most messages ever queued at once.
    pub queue_high_water: usize,
}

struct Settings {
    batch_window: Duration,
    capacity: usize,
    overflow: Overflow,
    failure_mode: FailureMode,
    retry: BackoffPolicy,
    restart_delay: Duration,
    bugs: QueuedWriterBugs,
}

/// A queued message.
struct Queued {
    /// Enqueue order (for flush marks).
    index: u64,
    stream: StreamId,
    message: Message,
}

/// A message inside a call.
struct CallMember {
    index: u64,
    id: MessageId,
    stream: StreamId,
}

/// One backend call of the batch in flight, with its retry state.
struct PendingCall {
    call: u64,
    stream: StreamId,
    members: Vec<CallMember>,
    messages: Arc<[Message]>,
    attempts: u32,
    first_started: Option<SimTime>,
    /// The next attempt starts no earlier than this, after this backoff.
    retry: Option<(SimTime, Duration)>,
    attempt_in_flight: bool,
    /// Some attempt ended transiently or was interrupted.
    uncertain: bool,
}

struct State {
    queue: VecDeque<Queued>,
    next_index: u64,
    /// Indices of accepted messages not yet settled.
    outstanding: BTreeSet<u64>,
    /// The batch in flight: its calls in order, the first is current.
    in_flight: VecDeque<PendingCall>,
    next_call: u64,
    health: HealthTracker,
    /// `Required` failures not yet surfaced by a flush or shutdown.
    unreported: Vec<OpFailure>,
    closed: bool,
    /// Stop after the calls in flight (the shutdown bug).
    stop: bool,
    /// The writer stopped for good (shutdown finished).
    exited: bool,
    writer: Option<madsim::task::AbortHandle>,
    stats: WriterStats,
}

struct Shared {
    settings: Settings,
    backend: Arc<dyn Backend>,
    state: Mutex<State>,
    changed: Notify,
    recorder: Recorder<WriterEvent>,
    on_settled: Option<SettleHandler>,
}

/// A queued write-behind writer in front of one backend. Cloning shares it.
#[derive(Clone)]
pub struct QueuedWriter {
    shared: Arc<Shared>,
}

/// What one offer to the queue came to.
enum Offer {
    Queued {
        dropped: Option<(MessageId, StreamId)>,
    },
    Refused(EnqueueError),
    Wait,
}

impl QueuedWriter {
    /// Start a writer (and its supervisor) in front of `backend`. Must run
    /// inside a simulation.
    pub fn start(backend: Arc<dyn Backend>, config: QueuedWriterConfig) -> QueuedWriter {
        let capacity = config.capacity.clamp(1, MAX_CAPACITY);
        let shared = Arc::new(Shared {
            settings: Settings {
                batch_window: config.batch_window,
                capacity,
                overflow: config.overflow,
                failure_mode: config.failure_mode,
                retry: config.retry,
                restart_delay: config.restart_delay,
                bugs: config.bugs,
            },
            backend,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_index: 0,
                outstanding: BTreeSet::new(),
                in_flight: VecDeque::new(),
                next_call: 1,
                health: HealthTracker::new(config.unhealthy_after),
                unreported: Vec::new(),
                closed: false,
                stop: false,
                exited: false,
                writer: None,
                stats: WriterStats::default(),
            }),
            changed: Notify::new(),
            recorder: config.recorder,
            on_settled: config.on_settled,
        });
        shared.recorder.record(WriterEvent::Declared {
            capacity,
            overflow: config.overflow,
        });
        durasim_sim::task::spawn(supervise(shared.clone()));
        QueuedWriter { shared }
    }

    /// Queue `message` for `stream`. Returns once it is queued (with
    /// `Block`, after waiting for room); the backend call happens later.
    pub async fn enqueue(&self, stream: StreamId, message: Message) -> Result<(), EnqueueError> {
        let shared = &*self.shared;
        let id = message.id;
        let mut message = Some(message);
        let mut blocked = false;
        loop {
            let changed = shared.changed.notified();
            match shared.offer(stream, &mut message, &mut blocked) {
                Offer::Queued { dropped } => {
                    shared.changed.notify_waiters();
                    if let Some((dropped, dropped_stream)) = dropped {
                        shared.report_drop(dropped, dropped_stream);
                    }
                    return Ok(());
                }
                Offer::Refused(error) => return Err(error),
                Offer::Wait => {
                    debug_assert!(message.as_ref().is_some_and(|m| m.id == id));
                    changed.await;
                }
            }
        }
    }

    /// Wait until every message accepted before this call has settled;
    /// then, for a `Required` registration, return the terminal failures
    /// not surfaced yet.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let shared = &*self.shared;
        let mark = lock_recovering(&shared.state).next_index;
        loop {
            let changed = shared.changed.notified();
            {
                let s = lock_recovering(&shared.state);
                if s.exited || s.outstanding.range(..mark).next().is_none() {
                    break;
                }
            }
            changed.await;
        }
        shared.take_failures()
    }

    /// Close the queue, let the writer drain everything accepted, stop it,
    /// and return (for `Required`) the terminal failures not surfaced yet.
    pub async fn shutdown(&self) -> Result<(), FlushError> {
        let shared = &*self.shared;
        {
            let mut s = lock_recovering(&shared.state);
            if !s.closed {
                s.closed = true;
                shared.recorder.record(WriterEvent::ShutdownStarted);
            }
            if shared.settings.bugs.shutdown_skips_flush {
                s.stop = true;
            }
        }
        shared.changed.notify_waiters();
        loop {
            let changed = shared.changed.notified();
            if lock_recovering(&shared.state).exited {
                break;
            }
            changed.await;
        }
        shared.take_failures()
    }

    /// Crash the writer task now, wherever it is (fault injection for
    /// tests; the fault site [`WRITER_CRASH`] does the same in runs). Its
    /// supervisor restarts it after the restart delay.
    pub fn crash_writer(&self) {
        if let Some(writer) = &lock_recovering(&self.shared.state).writer {
            writer.abort();
        }
    }

    /// The registration's health.
    pub fn health(&self) -> HealthReport {
        lock_recovering(&self.shared.state).health.report()
    }

    /// Counters.
    pub fn stats(&self) -> WriterStats {
        lock_recovering(&self.shared.state).stats
    }

    /// Messages queued now (not counting the batch in flight).
    pub fn queue_len(&self) -> usize {
        lock_recovering(&self.shared.state).queue.len()
    }

    /// The clamped capacity.
    pub fn capacity(&self) -> usize {
        self.shared.settings.capacity
    }

    /// Whether shutdown finished and the writer is gone.
    pub fn is_shut_down(&self) -> bool {
        lock_recovering(&self.shared.state).exited
    }
}

impl Shared {
    fn record(&self, event: WriterEvent) {
        self.recorder.record(event);
    }

    fn offer(&self, stream: StreamId, message: &mut Option<Message>, blocked: &mut bool) -> Offer {
        let mut guard = lock_recovering(&self.state);
        let s = &mut *guard;
        let Some(id) = message.as_ref().map(|m| m.id) else {
            return Offer::Refused(EnqueueError::Closed);
        };
        if s.closed {
            s.stats.refused += 1;
            self.record(WriterEvent::EnqueueRejected { id });
            return Offer::Refused(EnqueueError::Closed);
        }
        let mut dropped = None;
        if s.queue.len() >= self.settings.capacity {
            match self.settings.overflow {
                Overflow::Fail => {
                    s.stats.refused += 1;
                    self.record(WriterEvent::EnqueueFailed { id });
                    return Offer::Refused(EnqueueError::Full);
                }
                Overflow::Block => {
                    if !*blocked {
                        *blocked = true;
                        self.record(WriterEvent::SenderBlocked { id });
                    }
                    return Offer::Wait;
                }
                Overflow::DropOldest => {
                    if let Some(oldest) = s.queue.pop_front() {
                        s.outstanding.remove(&oldest.index);
                        s.stats.dropped += 1;
                        self.record(WriterEvent::DroppedOldest {
                            id: oldest.message.id,
                        });
                        dropped = Some((oldest.message.id, oldest.stream));
                    }
                }
            }
        }
        let Some(message) = message.take() else {
            return Offer::Refused(EnqueueError::Closed);
        };
        let index = s.next_index;
        s.next_index += 1;
        s.outstanding.insert(index);
        s.queue.push_back(Queued {
            index,
            stream,
            message,
        });
        s.stats.enqueued += 1;
        s.stats.queue_high_water = s.stats.queue_high_water.max(s.queue.len());
        self.record(WriterEvent::Enqueued {
            id,
            stream,
            queued: s.queue.len(),
        });
        Offer::Queued { dropped }
    }

    fn report_drop(&self, id: MessageId, stream: StreamId) {
        self.deliver(&[Settlement::Dropped { id, stream }]);
        self.record(WriterEvent::DropReported { id });
        self.changed.notify_waiters();
    }

    fn deliver(&self, settlements: &[Settlement]) {
        if let Some(handler) = &self.on_settled {
            for settlement in settlements {
                handler(settlement);
            }
        }
    }

    fn take_failures(&self) -> Result<(), FlushError> {
        let failures = std::mem::take(&mut lock_recovering(&self.state).unreported);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FlushError { failures })
        }
    }

    /// Crash the current writer `ms_max`-bounded ms from now, if the fault
    /// site says so.
    fn maybe_crash(&self, at: &'static str) {
        if !buggify_with(&WRITER_CRASH, || format!("writer task crashes ({at})")) {
            return;
        }
        let after = Duration::from_millis(choose_between(&WRITER_CRASH_MS, 0, CRASH_MS_MAX));
        let Some(writer) = lock_recovering(&self.state).writer.clone() else {
            return;
        };
        durasim_sim::task::spawn(async move {
            clock::sleep(after).await;
            writer.abort();
        });
    }

    fn has_pending_call(&self) -> bool {
        !lock_recovering(&self.state).in_flight.is_empty()
    }

    /// The current call's next attempt, if its backoff is still running.
    fn retry_at(&self) -> Option<SimTime> {
        lock_recovering(&self.state)
            .in_flight
            .front()
            .and_then(|c| c.retry.map(|(at, _)| at))
    }

    /// Start the current call's next attempt.
    fn start_attempt(&self) -> Option<(u64, StreamId, Arc<[Message]>, u32)> {
        let now = clock::now();
        let mut guard = lock_recovering(&self.state);
        let s = &mut *guard;
        let call = s.in_flight.front_mut()?;
        call.attempts += 1;
        call.attempt_in_flight = true;
        call.first_started.get_or_insert(now);
        let delay_before = call.retry.take().map_or(Duration::ZERO, |(_, d)| d);
        s.stats.backend_calls += 1;
        self.record(WriterEvent::CallStarted {
            call: call.call,
            stream: call.stream,
            ids: call.members.iter().map(|m| m.id).collect(),
            attempt: call.attempts,
            delay_before,
        });
        Some((call.call, call.stream, call.messages.clone(), call.attempts))
    }

    /// The current call's attempt came back with `result`.
    fn finish_attempt(&self, call_id: u64, result: Result<Vec<Receipt>, BackendError>) {
        let now = clock::now();
        let mut settled = Vec::new();
        {
            let mut guard = lock_recovering(&self.state);
            let s = &mut *guard;
            let Some(call) = s.in_flight.front_mut() else {
                return;
            };
            debug_assert_eq!(call.call, call_id, "only the current call is attempted");
            call.attempt_in_flight = false;
            let attempt = call.attempts;
            let outcome = match result {
                Ok(receipts) if receipts.len() == call.members.len() => CallOutcome::Ok(receipts),
                Ok(receipts) => CallOutcome::Transient(format!(
                    "backend answered {} receipt(s) for {} message(s)",
                    receipts.len(),
                    call.members.len()
                )),
                Err(BackendError::Transient(reason)) => CallOutcome::Transient(reason),
                Err(BackendError::Permanent(reason)) => CallOutcome::Permanent(reason),
            };
            self.record(WriterEvent::CallEnded {
                call: call_id,
                attempt,
                outcome: outcome.clone(),
            });
            match outcome {
                CallOutcome::Ok(receipts) => {
                    s.health.succeeded();
                    self.land(s, &receipts, &mut settled);
                }
                CallOutcome::Permanent(reason) => {
                    s.health
                        .failed(&BackendError::Permanent(reason.clone()).to_string());
                    let may_have_applied = call.uncertain;
                    self.fail_current(
                        s,
                        OpError::Rejected { reason },
                        may_have_applied,
                        &mut settled,
                    );
                }
                CallOutcome::Transient(reason) => {
                    s.health
                        .failed(&BackendError::Transient(reason.clone()).to_string());
                    call.uncertain = true;
                    self.retry_or_fail(s, now, reason, &mut settled);
                }
                CallOutcome::Interrupted => {}
            }
        }
        self.changed.notify_waiters();
        self.deliver(&settled);
    }

    /// The writer task died: an attempt in flight has an unknown outcome.
    fn on_writer_crash(&self) {
        let now = clock::now();
        let mut settled = Vec::new();
        {
            let mut guard = lock_recovering(&self.state);
            let s = &mut *guard;
            s.stats.writer_crashes += 1;
            s.writer = None;
            self.record(WriterEvent::WriterCrashed);
            if let Some(call) = s.in_flight.front_mut() {
                if call.attempt_in_flight {
                    call.attempt_in_flight = false;
                    call.uncertain = true;
                    self.record(WriterEvent::CallEnded {
                        call: call.call,
                        attempt: call.attempts,
                        outcome: CallOutcome::Interrupted,
                    });
                    let reason = "the writer crashed during the call".to_string();
                    self.retry_or_fail(s, now, reason, &mut settled);
                }
            }
        }
        self.changed.notify_waiters();
        self.deliver(&settled);
    }

    /// The current call's messages landed with `receipts`.
    fn land(&self, s: &mut State, receipts: &[Receipt], settled: &mut Vec<Settlement>) {
        let Some(call) = s.in_flight.pop_front() else {
            return;
        };
        for (member, receipt) in call.members.iter().zip(receipts) {
            s.outstanding.remove(&member.index);
            s.stats.landed += 1;
            let position = receipt.position();
            self.record(WriterEvent::Landed {
                id: member.id,
                position,
            });
            settled.push(Settlement::Landed {
                id: member.id,
                stream: member.stream,
                position,
                already_applied: matches!(receipt, Receipt::AlreadyApplied { .. }),
            });
        }
    }

    /// Retry the current call after its backoff delay if the window allows
    /// (decided now), else fail its messages.
    fn retry_or_fail(
        &self,
        s: &mut State,
        now: SimTime,
        reason: String,
        settled: &mut Vec<Settlement>,
    ) {
        let Some(call) = s.in_flight.front_mut() else {
            return;
        };
        let policy = &self.settings.retry;
        let first = call.first_started.unwrap_or(now);
        let elapsed = now.since(first);
        if elapsed <= policy.retry_window {
            let delay = policy.delay(call.attempts);
            call.retry = Some((now.plus(delay), delay));
            return;
        }
        let error = OpError::RetryWindowExhausted {
            attempts: call.attempts,
            elapsed,
            last_error: reason,
        };
        let may_have_applied = call.uncertain;
        self.fail_current(s, error, may_have_applied, settled);
    }

    /// The current call's messages failed terminally with `error`.
    fn fail_current(
        &self,
        s: &mut State,
        error: OpError,
        may_have_applied: bool,
        settled: &mut Vec<Settlement>,
    ) {
        let Some(call) = s.in_flight.pop_front() else {
            return;
        };
        for member in &call.members {
            s.outstanding.remove(&member.index);
            s.stats.failed += 1;
            self.record(WriterEvent::Failed {
                id: member.id,
                error: error.to_string(),
                may_have_applied,
            });
            let failure = OpFailure {
                id: member.id,
                stream: member.stream,
                error: error.clone(),
                may_have_applied,
            };
            if self.settings.failure_mode == FailureMode::Required {
                s.unreported.push(failure.clone());
            }
            settled.push(Settlement::Failed(failure));
        }
    }

    /// Wait for a first message and the batch window; `false` when the
    /// writer should stop instead.
    async fn collect(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            {
                let s = lock_recovering(&self.state);
                if s.stop {
                    return false;
                }
                if !s.queue.is_empty() {
                    break;
                }
                if s.closed {
                    return false;
                }
            }
            changed.await;
        }
        let deadline = clock::now().plus(self.settings.batch_window);
        loop {
            let changed = self.changed.notified();
            {
                let s = lock_recovering(&self.state);
                if s.stop {
                    return false;
                }
                if s.closed || s.queue.len() >= self.settings.capacity {
                    break;
                }
            }
            let now = clock::now();
            if now >= deadline {
                break;
            }
            let mut changed = std::pin::pin!(changed.fuse());
            let mut window = std::pin::pin!(clock::sleep(deadline.since(now)).fuse());
            futures_util::select_biased! {
                _ = changed => {}
                _ = window => {}
            }
        }
        true
    }

    /// Take every queued message into the batch in flight, as calls:
    /// consecutive messages of one stream share a call.
    fn form_batch(&self) {
        {
            let mut guard = lock_recovering(&self.state);
            let s = &mut *guard;
            let merge_any = self.settings.bugs.coalesce_across_streams;
            let mut groups: Vec<(StreamId, Vec<CallMember>, Vec<Message>)> = Vec::new();
            while let Some(queued) = s.queue.pop_front() {
                self.record(WriterEvent::Dequeued {
                    id: queued.message.id,
                    queued: s.queue.len(),
                });
                let member = CallMember {
                    index: queued.index,
                    id: queued.message.id,
                    stream: queued.stream,
                };
                match groups.last_mut() {
                    Some((stream, members, messages)) if merge_any || *stream == queued.stream => {
                        members.push(member);
                        messages.push(queued.message);
                    }
                    _ => groups.push((queued.stream, vec![member], vec![queued.message])),
                }
            }
            for (stream, members, messages) in groups {
                let call = s.next_call;
                s.next_call += 1;
                s.in_flight.push_back(PendingCall {
                    call,
                    stream,
                    members,
                    messages: messages.into(),
                    attempts: 0,
                    first_started: None,
                    retry: None,
                    attempt_in_flight: false,
                    uncertain: false,
                });
            }
        }
        self.changed.notify_waiters();
    }

    /// Drive the current call through one attempt (after its backoff).
    async fn drive_call(&self) {
        if let Some(at) = self.retry_at() {
            let now = clock::now();
            if at > now {
                clock::sleep(at.since(now)).await;
            }
        }
        let Some((call, stream, messages, attempt)) = self.start_attempt() else {
            return;
        };
        self.maybe_crash("during a backend call");
        let result = self
            .backend
            .append(BackendCall {
                stream,
                messages: &messages,
                attempt,
            })
            .await;
        self.finish_attempt(call, result);
    }
}

/// One life of the writer task: finish the batch in flight, then collect
/// and dispatch batches until told to stop.
async fn write(shared: Arc<Shared>) {
    loop {
        while shared.has_pending_call() {
            shared.drive_call().await;
        }
        if !shared.collect().await {
            return;
        }
        shared.maybe_crash("collecting a batch");
        shared.form_batch();
    }
}

/// Run the writer task, restarting it after each crash, until it stops.
async fn supervise(shared: Arc<Shared>) {
    loop {
        let task = durasim_sim::task::spawn(write(shared.clone()));
        lock_recovering(&shared.state).writer = Some(task.abort_handle());
        match task.await {
            Ok(()) => break,
            Err(_) => {
                shared.on_writer_crash();
                clock::sleep(shared.settings.restart_delay).await;
                shared.record(WriterEvent::WriterRestarted);
            }
        }
    }
    {
        let mut s = lock_recovering(&shared.state);
        s.exited = true;
        s.writer = None;
        shared.record(WriterEvent::ShutdownFinished {
            abandoned: s.queue.len(),
        });
    }
    shared.changed.notify_waiters();
}
