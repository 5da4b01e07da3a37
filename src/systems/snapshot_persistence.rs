//! Spec 05: a reliability manager whose per-channel protocol state is kept
//! in memory and persisted through a small, atomic, snapshot-based
//! interface, with a pending-write retry queue for history deltas.
//!
//! - [`state`]: one channel's protocol state — outgoing buffer with resend
//!   counts, incoming buffer with missing dependencies, Lamport clock,
//!   bounded FIFO delivered history with a bloom filter (rebuilt on load),
//!   outgoing and incoming repair buffers with absolute times in ms.
//! - [`store`]: the five-operation [`Persistence`] interface and its
//!   contract; [`disk_store`]: its implementation on `SimDisk`;
//!   [`codec`]: the schema-versioned encoding.
//! - [`pending`]: the pending-write queue (latest-wins merge).
//! - [`outage`]: storage outages, an application-level fault.
//! - [`manager`]: the [`ReliabilityManager`]: protocol operations, save
//!   points and the failure policy.
//!
//! Guarantees:
//! - **Save points.** Every public operation that mutates a channel (send,
//!   receive — a duplicate receive too, it mutates the repair buffers —,
//!   ack, mark-dependencies-met after its delivery cascade) ends with
//!   exactly one meta save followed by at most one history flush (none
//!   when the pending queue is empty). A background sweep saves each
//!   channel it changed once, and touches no idle channel. The manager's
//!   operations take `&mut self`: a save point is never interleaved with
//!   another operation on the same channel.
//! - **Failure policy.** Foreground operations are non-fatal: a failed
//!   save or flush is counted and logged, the operation succeeds, memory
//!   stays the source of truth and the next save point resynchronises the
//!   disk. Durability-intent operations (bootstrap, remove, reset) return
//!   the persistence error.
//! - **Pending queue.** History appends and evicts are queued as ids; a
//!   flush sends the whole queue and clears it only on success, so the
//!   next save point retries it. Latest wins: queueing an append cancels
//!   a pending evict of the same id and vice versa. Every pending append
//!   is in the in-memory history. Removal and reset clear the queue.
//! - **Restart.** Bootstrap loads each configured channel; what it returns
//!   is durable (the load republishes it) and equals the last successful
//!   snapshot plus the flushed history, or a state a failed call may have
//!   left (D13).
//!
//! [`SnapshotBugs`] switches on spec 05's known bugs; all are off by
//! default. Everything is recorded as `durasim_models` `Snap*` events when
//! a recorder is configured.

pub mod codec;
pub mod disk_store;
pub mod manager;
pub mod outage;
pub mod pending;
pub mod state;
pub mod store;

pub use codec::{CodecError, SCHEMA_VERSION};
pub use disk_store::DiskStore;
pub use manager::{
    Incoming, ManagerConfig, OpError, Received, ReliabilityManager, SnapshotBugs, SweepReport,
};
pub use outage::{OutageStore, OUTAGE_MS, STORAGE_OUTAGE};
pub use pending::{PendingOp, PendingQueue};
pub use state::{Bloom, ChannelMeta, ChannelState, DeliveredHistory, OutgoingEntry};
pub use store::{ChannelData, PersistError, Persistence};

/// A channel id.
pub type ChannelId = u32;
/// A message id, unique within its channel and direction.
pub type MsgId = u64;
