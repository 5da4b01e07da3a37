//! Spec 04: the queued (write-behind) writer — batching, same-stream
//! coalescing, backpressure, health, shutdown flush.
//!
//! A [`Coordinator`] fans each append out to its registered backends. A
//! backend registered with [`WritePolicy::Queued`] gets a [`QueuedWriter`]:
//! a bounded queue drained by its own writer task, so the caller's enqueue
//! returns as soon as the message is queued.
//!
//! Guarantees of the queued writer:
//! - **Landing.** Every accepted message ends exactly once: it lands on the
//!   backend (once: see the backend contract in [`Backend`]), or it fails
//!   terminally and the failure is reported, or — `DropOldest` only — it
//!   is dropped and the drop is reported. The settlement handler
//!   ([`QueuedWriterConfig::on_settled`]) hears of each, Kafka-producer
//!   style; a `Required` registration's terminal failures are also
//!   returned by the next [`QueuedWriter::flush`] or
//!   [`QueuedWriter::shutdown`], each failure exactly once.
//! - **Batching.** The writer waits for a first message, then collects for
//!   up to `batch_window` (less when the queue fills up or shutdown
//!   starts), then takes every queued message as one batch.
//! - **Coalescing.** Consecutive messages of the same stream inside a batch
//!   go to the backend in one call; messages of different streams are
//!   never merged. So backend calls ≤ messages, per batch and overall
//!   (retries aside).
//! - **Order.** Calls run one at a time in batch order, and a call is
//!   retried until it settles before the next starts: per stream, messages
//!   land in enqueue order (a failed message leaves a gap, never a swap).
//! - **Capacity.** At most `capacity` messages are queued (waiting, not yet
//!   taken into a batch). When full: `Block` makes the sender wait for a
//!   drain; `DropOldest` evicts the oldest queued message, counts it and
//!   reports it; `Fail` returns [`EnqueueError::Full`] at once.
//! - **Retries.** A transient backend error is retried with spec 02's
//!   backoff curve ([`BackoffPolicy::delay`]) while the time since the
//!   call's first attempt, when the error arrives, is within the retry
//!   window; after that the call's messages fail terminally. A permanent
//!   error is never retried. A failure says whether the messages may
//!   have landed anyway (any earlier attempt ended transiently or was
//!   interrupted).
//! - **Health.** Every attempt's result updates the registration's
//!   [`HealthReport`]: a success resets the consecutive-failure counter
//!   and makes it `Healthy`; each failure counts, keeps the error as the
//!   last error, and makes it `Degraded`, then `Unhealthy` from
//!   `unhealthy_after` consecutive failures on. A writer crash is not a
//!   backend failure and changes nothing.
//! - **Crashes.** The writer task can crash at any await point
//!   ([`QueuedWriter::crash_writer`]; fault site [`WRITER_CRASH`]). Its
//!   supervisor restarts it after `restart_delay`. The queue and the batch
//!   in flight live outside the task: the restarted writer resumes the
//!   batch, treating an interrupted attempt as one with an unknown outcome
//!   (retried after its backoff delay; the backend's idempotency keeps the
//!   landing exactly-once).
//! - **Shutdown** closes the queue (later and still-blocked enqueues get
//!   [`EnqueueError::Closed`]), then waits until every accepted message
//!   has settled and the writer has stopped. Nothing queued before it is
//!   lost.
//!
//! Where spec 04 is silent: drops are reported through the settlement
//! handler and counters, not as flush errors (load shedding is not a
//! backend failure); a message that fails leaves a gap in its stream and
//! later messages still go; a `BestEffort` registration's failures reach
//! the handler and the health report only.
//!
//! Everything is recorded as [`WriterEvent`]s (queue occupancy, calls and
//! their attempts, settlements, crashes) for checkers.
//!
//! [`QueuedWriterBugs`] switches on spec 04's known bugs for the catalogue;
//! every switch is off by default.
//!
//! [`BackoffPolicy::delay`]: crate::systems::backoff::BackoffPolicy::delay

mod backend;
mod coordinator;
mod health;
mod memory;
mod writer;

pub use backend::{Backend, BackendCall, BackendError, BackendFuture, Receipt};
pub use coordinator::{
    AppendError, AppendReport, Coordinator, CoordinatorError, Registration, WritePolicy,
};
pub use health::{Health, HealthReport, DEFAULT_UNHEALTHY_AFTER};
pub use memory::{
    BackendEvent, CallFault, CallFaultPlan, CallRecord, Latency, MemoryBackend,
    MemoryBackendConfig, StoredMessage, BUSY, LOST_ANSWER, OUTAGE, OUTAGE_MS, REJECT, REQUEST_US,
    RESPONSE_US, SLOW, SLOW_MS,
};
pub use writer::{
    CallOutcome, EnqueueError, FlushError, OpError, OpFailure, QueuedWriter, QueuedWriterBugs,
    QueuedWriterConfig, SettleHandler, Settlement, WriterEvent, WriterStats, DEFAULT_BATCH_WINDOW,
    DEFAULT_CAPACITY, DEFAULT_RESTART_DELAY, MAX_CAPACITY, WRITER_CRASH, WRITER_CRASH_MS,
};

/// A stream: the unit of ordering and of coalescing.
pub type StreamId = u32;

/// A message's id, unique per message: the backend's idempotency key.
pub type MessageId = u64;

/// One message appended to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique id, chosen by the caller (the idempotency key).
    pub id: MessageId,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// What an enqueue does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The sender waits until the writer drains room.
    Block,
    /// The oldest queued message is evicted, counted and reported.
    DropOldest,
    /// The enqueue returns [`EnqueueError::Full`] at once.
    Fail,
}

/// Whose problem a backend failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// A terminal failure is the caller's error: returned by `append` for
    /// immediate backends, by `flush`/`shutdown` for queued ones.
    Required,
    /// Failures are reported (handler, health) but are not the caller's error.
    BestEffort,
}
