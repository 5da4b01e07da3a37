//! What a run records: one [`History`], a `Vec<Event>` in recorded order.
//!
//! A system under test pushes an [`Event`] each time something the checkers
//! care about happens, stamped with the simulated time it happened at. The
//! types are plain data (no references, no trait objects) so that recording
//! is a `Vec::push` and a history round-trips through serde unchanged.
//!
//! # Who records what
//! - **Clients** (Jepsen-style operations): [`EventKind::Invoke`] when an
//!   operation starts, [`EventKind::Complete`] when its outcome is known
//!   (`Ok`, `Failed` with `definite`, or `Unknown`). A user-level write may
//!   make several commit attempts: [`EventKind::AttemptStarted`] /
//!   [`EventKind::AttemptEnded`], with the backoff delay slept before each
//!   and the policy declared once by [`EventKind::BackoffPolicyDeclared`].
//! - **The commit coordinator** (spec 01): the two-phase channel
//!   (`ChannelDeclared`, `PermitReserved`, `PermitSent`, `PermitAborted`,
//!   `PermitDropped`, `PermitDelivered`) and each group-commit batch through
//!   its phases (`BatchValidated` → `WalAppended` → `FsyncReturned` →
//!   `Published`). A batch request carries an [`AttemptRef`] naming the
//!   client attempt it came from, so acknowledgements can be matched.
//! - **Crashes and recovery**: [`EventKind::ServerCrash`], then
//!   [`EventKind::Recovered`] with a [`Recovery`]: the recovered log and
//!   (optionally) the recovered page state. A recovery that crashes and is re-run records the
//!   crash and then the re-run's observation.
//! - **Repair workers** (spec 03): [`EventKind::Repair`] per lifecycle
//!   event, and [`EventKind::RepairSettled`] per commit at quiescence.
//! - **Queued writers** (spec 04): the `Queue*` events.
//! - **Lifecycle actors** (spec 06): [`EventKind::LifecycleActorEnded`]
//!   per actor outcome and [`EventKind::LifecycleObserved`] with the
//!   durable state read back at each iteration's end and after reconcile.
//! - **Snapshot persistence** (spec 05): the `Snap*` events: each public
//!   operation (`SnapInvoked` … `SnapReturned`) and, in between, every
//!   persistence call it issued and how it returned.
//! - **The harness**: [`EventKind::Phase`] markers (fault phase, heal phase
//!   with its liveness bound, quiescence, final crash).
//!
//! Recording rules the checkers rely on:
//! - every acknowledged attempt's batch request carries its `origin`
//!   ([`AttemptRef`]): that is how an acknowledgement is matched to the
//!   publication that backs it (D5);
//! - the WAL only grows between recoveries: each valid request of a batch
//!   that reached `WalAppended` is the next log position, and a published
//!   commit's sequence number is its position. After a failed fsync a
//!   correct system stops (fail-stop) until recovery;
//! - channels and queues live in server memory: after a `ServerCrash` they
//!   are declared again before use.
//!
//! Times should be non-decreasing in recorded order; the checkers do not
//! rely on it except where a rule is about time (and then they compare the
//! recorded times, so an out-of-order record shows up as a violation).

use serde::{Deserialize, Serialize};

/// Simulated time: nanoseconds since the start of the run.
pub type SimTime = u64;
/// A client operation's id, unique within a history.
pub type OpId = u64;
/// A simulated node or client process.
pub type ProcessId = u32;
/// A commit sequence number; the first commit is 1.
pub type CommitSeq = u64;
/// A transaction id. Not unique: two requests with one txn id are two commits.
pub type TxnId = u64;
/// A user-level write's id, unique per write; the exactly-once dedup key.
pub type EventId = u64;
/// A page of the versioned page store.
pub type PageId = u32;
/// A group-commit batch's id, unique within a history.
pub type BatchId = u64;
/// A two-phase channel's id.
pub type ChannelId = u32;
/// A reservation's sequence number within its channel: 1, 2, 3, …
pub type PermitSeq = u64;
/// A queue's id.
pub type QueueId = u32;
/// An item travelling through a queue.
pub type ItemId = u64;
/// A reliability channel (spec 05).
pub type SnapChannelId = u32;
/// A protocol message's id within its channel (spec 05).
pub type SnapMsgId = u64;

/// Everything one run recorded, in recorded order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The events, in the order they were recorded.
    pub events: Vec<Event>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty history with room for `events` events.
    pub fn with_capacity(events: usize) -> Self {
        Self {
            events: Vec::with_capacity(events),
        }
    }

    /// Record `kind` as having happened at `time`.
    pub fn push(&mut self, time: SimTime, kind: EventKind) {
        self.events.push(Event { time, kind });
    }

    /// Number of client operations invoked (the unit of the checking
    /// throughput figure).
    pub fn operation_count(&self) -> usize {
        self.events
            .iter()
            .filter(|event| matches!(event.kind, EventKind::Invoke { .. }))
            .count()
    }
}

/// One recorded event.
///
/// 48 bytes: a checker streams millions of them, so a rarely present
/// payload that would widen every event (a message, a read's version, a
/// lifecycle operation's name) is boxed. Serde and `Debug` see through the
/// boxes: the recorded format is the same as unboxed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub time: SimTime,
    /// What happened.
    pub kind: EventKind,
}

/// What happened. See the module docs for who records which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// A run phase began.
    Phase(Phase),

    /// A client operation was invoked.
    Invoke {
        /// The operation (unique in the history).
        op: OpId,
        /// The client process that invoked it.
        process: ProcessId,
        /// What it asks for.
        call: Call,
    },
    /// A client operation's outcome became known to its caller.
    Complete {
        /// The operation.
        op: OpId,
        /// Its outcome.
        outcome: Outcome,
    },

    /// The backoff policy in force for commit attempts started after this.
    BackoffPolicyDeclared(BackoffPolicy),
    /// A write's commit attempt started (after sleeping `delay_before`).
    AttemptStarted {
        /// The write operation.
        op: OpId,
        /// 1 for the first attempt, then 2, 3, …
        attempt: u32,
        /// How long the client slept before this attempt (0 for the first).
        delay_before: SimTime,
    },
    /// A commit attempt's result reached the client.
    AttemptEnded {
        /// The write operation.
        op: OpId,
        /// Which attempt.
        attempt: u32,
        /// What the client learnt.
        result: AttemptResult,
    },

    /// A two-phase channel exists with this capacity (spec 01).
    ChannelDeclared {
        /// The channel.
        channel: ChannelId,
        /// Its capacity (slots).
        capacity: u32,
    },
    /// A sender reserved a slot and got permit `permit`.
    PermitReserved {
        /// The channel.
        channel: ChannelId,
        /// The permit's sequence number (1, 2, 3, … in reservation order).
        permit: PermitSeq,
    },
    /// A permit's message was sent.
    PermitSent {
        /// The channel.
        channel: ChannelId,
        /// The permit.
        permit: PermitSeq,
    },
    /// A permit was released without sending.
    PermitAborted {
        /// The channel.
        channel: ChannelId,
        /// The permit.
        permit: PermitSeq,
    },
    /// A permit was dropped without send or abort (counts as an abort; the
    /// tracked channel variant reports it as leaked).
    PermitDropped {
        /// The channel.
        channel: ChannelId,
        /// The permit.
        permit: PermitSeq,
    },
    /// The receiver got a permit's message.
    PermitDelivered {
        /// The channel.
        channel: ChannelId,
        /// The permit.
        permit: PermitSeq,
    },

    /// Phase 1 of a group-commit batch: first-committer-wins validation.
    BatchValidated {
        /// The batch (unique in the history).
        batch: BatchId,
        /// The batch's requests in batch order, each with its verdict.
        requests: Vec<BatchRequest>,
    },
    /// Phase 2: the valid requests' frames were appended to the WAL, in
    /// batch order, as the next frames of the log.
    WalAppended {
        /// The batch.
        batch: BatchId,
        /// Whether the append reported success for the whole batch.
        ok: bool,
    },
    /// Phase 3: the batch's fsync returned.
    FsyncReturned {
        /// The batch.
        batch: BatchId,
        /// `true` for OK, `false` for an error (EIO).
        ok: bool,
    },
    /// Phase 4: the batch's valid requests became visible and were answered
    /// `Committed`, with these sequence numbers (one per valid request, in
    /// batch order).
    Published {
        /// The batch.
        batch: BatchId,
        /// The commit sequence numbers assigned.
        commit_seqs: Vec<CommitSeq>,
    },

    /// The server process crashed (volatile state lost).
    ServerCrash {
        /// The process.
        process: ProcessId,
        /// Whether it crashed while recovering.
        during_recovery: bool,
    },
    /// Recovery finished and exposes this log and state (boxed: recoveries
    /// are rare and large, events are many and small).
    Recovered(Box<Recovery>),

    /// A repair lifecycle event for one commit (spec 03).
    Repair {
        /// The commit.
        commit_seq: CommitSeq,
        /// Per-commit event sequence: 1, 2, 3, …
        event_seq: u32,
        /// What happened.
        kind: RepairEventKind,
    },
    /// A commit's repair state at quiescence.
    RepairSettled {
        /// The commit.
        commit_seq: CommitSeq,
        /// Its state.
        state: RepairState,
        /// For `Completed`: the systematic bytes and the repair symbols.
        symbols: Option<Box<RepairSymbols>>,
    },

    /// A bounded queue exists (spec 04).
    QueueDeclared {
        /// The queue.
        queue: QueueId,
        /// Its capacity.
        capacity: u32,
        /// What happens on enqueue when full.
        overflow: OverflowPolicy,
    },
    /// An item was enqueued.
    QueueEnqueued {
        /// The queue.
        queue: QueueId,
        /// The item.
        item: ItemId,
        /// Queue length right after.
        occupancy_after: u32,
    },
    /// A `Block` sender found the queue full and started waiting.
    QueueSenderBlocked {
        /// The queue.
        queue: QueueId,
        /// The item it waits to enqueue.
        item: ItemId,
    },
    /// A `Fail` enqueue returned an error because the queue was full.
    QueueEnqueueFailed {
        /// The queue.
        queue: QueueId,
        /// The item refused.
        item: ItemId,
    },
    /// An item was dequeued by the writer.
    QueueDequeued {
        /// The queue.
        queue: QueueId,
        /// The item.
        item: ItemId,
        /// Queue length right after.
        occupancy_after: u32,
    },
    /// `DropOldest` evicted the oldest item to make room.
    QueueDroppedOldest {
        /// The queue.
        queue: QueueId,
        /// The evicted item.
        item: ItemId,
    },
    /// A drop was reported (counted and surfaced to the user).
    QueueDropReported {
        /// The queue.
        queue: QueueId,
        /// The dropped item.
        item: ItemId,
    },

    // ----- spec 06: lifecycle operations over shared durable state -----
    /// A lifecycle actor's operation ended (its caller learnt this outcome)
    /// within iteration `iteration`.
    LifecycleActorEnded {
        /// The iteration (0, 1, 2, …; the reconcile pass has its own).
        iteration: u32,
        /// The actor (unique within its iteration).
        actor: u32,
        /// What it ran (boxed: an item name would widen every event).
        op: Box<LifecycleOp>,
        /// How it ended (boxed: an outcome can hold two names, and an
        /// inline one would make every event of every history half as
        /// large again; serde and `Debug` see through the box).
        outcome: Box<LifecycleOutcome>,
    },
    /// The durable state as read back at the end of an iteration, or after
    /// the final reconcile (`after_reconcile`: nothing is tolerated).
    LifecycleObserved {
        /// The iteration it closes (the reconcile pass: after the last).
        iteration: u32,
        /// Whether this is the state after the final reconcile.
        after_reconcile: bool,
        /// What was read back (boxed: observations are few and large).
        state: Box<LifecycleState>,
    },

    // ----- Snapshot persistence (spec 05) -----------------------------------
    /// A public operation of the reliability manager started.
    SnapInvoked {
        /// The operation (unique in the history).
        op: OpId,
        /// What it is.
        kind: SnapOpKind,
        /// The channel it targets (`None`: every channel).
        channel: Option<SnapChannelId>,
    },
    /// A save point began: `save_channel_meta` was called with the
    /// in-memory meta, and `history` is the in-memory delivered history.
    SnapSaveIssued {
        /// The operation.
        op: OpId,
        /// The channel.
        channel: SnapChannelId,
        /// What the save point holds.
        point: Box<SnapChannelState>,
    },
    /// `update_history` was called with one combined delta.
    SnapFlushIssued {
        /// The operation.
        op: OpId,
        /// The channel.
        channel: SnapChannelId,
        /// The delta: ids appended and evicted.
        delta: Box<SnapDelta>,
    },
    /// `drop_channel` was called.
    SnapDropIssued {
        /// The operation.
        op: OpId,
        /// The channel.
        channel: SnapChannelId,
    },
    /// A persistence call of `op` on `channel` returned.
    SnapCallReturned {
        /// The operation.
        op: OpId,
        /// The channel.
        channel: SnapChannelId,
        /// Which call.
        call: SnapCall,
        /// Whether it succeeded.
        ok: bool,
    },
    /// `load_channel` returned what the disk holds (`None`: it failed).
    SnapLoaded {
        /// The operation (a bootstrap).
        op: OpId,
        /// The channel.
        channel: SnapChannelId,
        /// The loaded state (meta `None` and empty history: no channel).
        loaded: Option<Box<SnapChannelState>>,
    },
    /// The operation returned to its caller.
    SnapReturned {
        /// The operation.
        op: OpId,
        /// What the caller saw.
        result: SnapResult,
    },
}

/// What a finished recovery exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The process.
    pub process: ProcessId,
    /// The recovered log, in log order.
    pub log: Vec<LogEntry>,
    /// The recovered page state, one entry per page, when the system has a
    /// page store.
    pub state: Option<Vec<PageVersion>>,
    /// Set when recovery detected corruption it could not repair and
    /// reported it (halting): the first commit sequence number affected.
    /// Must-exist commits from there on are excused from D1; nothing is
    /// excused when this is `None`.
    pub corruption_reported_from: Option<CommitSeq>,
}

/// Run phase markers (spec 07).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Workload and faults run.
    Fault,
    /// Faults stopped; liveness (L1) is judged from here.
    Heal {
        /// Every operation outstanding now (or invoked later) must complete
        /// within this much simulated time (from now, or from its invocation
        /// when later).
        bound: SimTime,
        /// Whether the system claims to resolve unknown outcomes: when
        /// `true`, an operation that ends `Unknown(TimedOut)` in the heal
        /// phase is still outstanding for L1. `Unknown(CallerCrashed)` never
        /// is (there is no caller left to tell).
        resolves_unknown: bool,
    },
    /// The system is idle: nothing may be outstanding (D6) and no repair
    /// may be pending (D9).
    Quiescence,
    /// The final crash of the run; its recovery is checked like any other.
    FinalCrash,
}

/// What a client operation asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// A user-level write (read-modify-write, committed by attempts). Its
    /// effect is the page writes of its commit requests.
    Write {
        /// The write's unique event id, when the system deduplicates by one.
        event_id: Option<EventId>,
    },
    /// A read of one page's current version.
    Read {
        /// The page.
        page: PageId,
    },
}

/// A client operation's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It succeeded.
    Ok(OkValue),
    /// It failed. `definite` means the system guarantees the operation did
    /// not take effect and never will (a must-not-exist); otherwise it may
    /// have (e.g. a convergence error after an attempt whose outcome was
    /// unknown).
    Failed {
        /// The error, as the caller saw it (e.g. `CommitConvergenceError`;
        /// boxed, see [`Event`]).
        error: Box<str>,
        /// Whether the failure guarantees no effect.
        definite: bool,
    },
    /// The caller does not know: it may or may not have taken effect (at
    /// most once).
    Unknown(UnknownReason),
}

/// Why an outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnknownReason {
    /// The caller gave up waiting (lost response, server crash).
    TimedOut,
    /// The invoking process crashed while the operation was in flight.
    CallerCrashed,
}

/// The value of a successful operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OkValue {
    /// A write committed with this commit sequence number.
    Committed {
        /// Its commit sequence number.
        commit_seq: CommitSeq,
    },
    /// A read saw this version of its page (`None`: never written).
    Read {
        /// The version seen (boxed, see [`Event`]).
        version: Option<Box<PageVersion>>,
    },
}

/// What a client learnt about one commit attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptResult {
    /// `Committed { commit_seq }`: the acknowledgement.
    Committed {
        /// The commit sequence number.
        commit_seq: CommitSeq,
    },
    /// The server rejected it.
    Rejected {
        /// Transient (retry with backoff) or permanent (never retry).
        class: RejectionClass,
        /// The reason, e.g. `conflict` or `receipt-exists` (boxed, see
        /// [`Event`]).
        reason: Box<str>,
    },
    /// No answer (timed out, server crashed).
    Unknown,
}

/// How a rejection may be handled (spec 02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectionClass {
    /// Retried with backoff while the window lasts.
    Transient,
    /// Never retried.
    Permanent,
}

/// The committed-write backoff policy (spec 02).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    /// `step(1)`: the delay before the second attempt, with no jitter.
    pub base_delay: SimTime,
    /// The cap of the curve.
    pub max_delay: SimTime,
    /// Jitter fraction in `0..=1`; jitter only shortens a delay.
    pub jitter: f64,
    /// Retries continue while the time since the first attempt is within
    /// this window.
    pub retry_window: SimTime,
}

/// Identifies the client attempt a server request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The write operation.
    pub op: OpId,
    /// The attempt number.
    pub attempt: u32,
}

/// One write of a commit: `page` gets `value` (a value or its digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PageWrite {
    /// The page.
    pub page: PageId,
    /// The value written.
    pub value: u64,
}

/// One request in a group-commit batch, as the coordinator validated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The client attempt it came from, when known.
    pub origin: Option<AttemptRef>,
    /// The request's txn id.
    pub txn_id: TxnId,
    /// The write's event id, when the system deduplicates by one.
    pub event_id: Option<EventId>,
    /// The basis: the commit sequence number the request read from.
    pub snapshot_seq: CommitSeq,
    /// Its write set with values.
    pub writes: Vec<PageWrite>,
    /// Validation's verdict.
    pub verdict: Verdict,
}

/// First-committer-wins verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Goes to the WAL.
    Valid,
    /// Rejected; never reaches the WAL.
    Conflict {
        /// Why, for humans.
        reason: String,
    },
}

/// One commit in a recovered log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its commit sequence number.
    pub seq: CommitSeq,
    /// Its txn id.
    pub txn_id: TxnId,
    /// Its event id, if any.
    pub event_id: Option<EventId>,
    /// Its writes.
    pub writes: Vec<PageWrite>,
}

/// A page's version: which commit wrote it and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PageVersion {
    /// The page.
    pub page: PageId,
    /// The commit that wrote this version.
    pub commit_seq: CommitSeq,
    /// The value.
    pub value: u64,
}

/// A repair lifecycle event (spec 03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepairEventKind {
    /// The systematic symbols are synced.
    CommitDurable,
    /// Repair is pending: durable but not repairable yet.
    DurableButNotRepairable,
    /// The commit was acknowledged.
    CommitAcked,
    /// A repair task started.
    RepairStarted,
    /// Repair symbols are synced: state `Completed`.
    RepairCompleted,
    /// Repair failed (or could not be scheduled, or was cancelled): `Failed`.
    RepairFailed,
    /// After a crash, recovery found the commit durable without valid
    /// repair symbols and re-scheduled its repair: `Pending` again.
    RecoveredPending,
    /// After a crash, recovery found the commit's repair symbols durable and
    /// valid: `Completed`.
    RecoveredCompleted,
}

impl RepairEventKind {
    /// Every kind, in declaration order.
    pub const ALL: [RepairEventKind; 8] = [
        RepairEventKind::CommitDurable,
        RepairEventKind::DurableButNotRepairable,
        RepairEventKind::CommitAcked,
        RepairEventKind::RepairStarted,
        RepairEventKind::RepairCompleted,
        RepairEventKind::RepairFailed,
        RepairEventKind::RecoveredPending,
        RepairEventKind::RecoveredCompleted,
    ];
}

/// A commit's repair state (spec 03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepairState {
    /// Repair disabled for it.
    NotScheduled,
    /// Waiting for or running a repair.
    Pending,
    /// Repair symbols durable.
    Completed,
    /// Repair failed, loudly.
    Failed,
}

/// The systematic bytes of a commit and its XOR parity symbol.
///
/// The systematic bytes are cut into `shard_size`-byte shards (the last one
/// zero-padded); `parity` is the XOR of all shards, so any one lost shard is
/// the XOR of the parity and the other shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairSymbols {
    /// Shard size in bytes (at least 1).
    pub shard_size: u32,
    /// The commit's systematic bytes.
    pub systematic: Vec<u8>,
    /// The parity shard, `shard_size` bytes.
    pub parity: Vec<u8>,
}

/// What a bounded queue does on enqueue when full (spec 04).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverflowPolicy {
    /// The sender waits for room.
    Block,
    /// The oldest item is evicted (and the drop reported).
    DropOldest,
    /// The enqueue returns an error at once.
    Fail,
}

/// A lifecycle actor's operation (spec 06).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LifecycleOp {
    /// Install (or re-install at the latest version) one item.
    Install {
        /// The item's name.
        item: String,
    },
    /// Remove one item.
    Remove {
        /// The item's name.
        item: String,
    },
    /// Update every installed item to its latest version, repairing what
    /// crashes left behind.
    UpdateAll,
    /// The final sequential reconcile pass (an update-all).
    Reconcile,
}

/// How a lifecycle actor's operation ended (spec 06).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LifecycleOutcome {
    /// It did what it was asked (a remove of an absent item included).
    Done,
    /// The documented transient: files and lockfile were written, the
    /// catalog write failed with storage busy and was rolled back.
    PartiallyApplied,
    /// The actor crashed mid-operation and was restarted (its restart ran
    /// recovery; the operation itself was not retried).
    Crashed,
    /// A cross-item collision: `item` declares something `with` owns.
    Collision {
        /// The item being installed.
        item: String,
        /// The installed item it collides with.
        with: String,
    },
    /// The lock on the lockfile could not be taken within the retry budget.
    LockBudgetExhausted,
    /// A storage-busy failure surfaced as an error.
    StorageBusy,
    /// Any other error, as the caller saw it.
    Failed {
        /// The error.
        error: String,
    },
}

/// The durable lifecycle state read back from disk (spec 06).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleState {
    /// The catalog's rows.
    pub catalog: Vec<CatalogRow>,
    /// The lockfile: its entries, or why it did not parse.
    pub lockfile: LockfileView,
    /// Every file under the item tree (paths; directories not listed).
    pub files: Vec<String>,
}

/// One catalog row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CatalogRow {
    /// The item's name.
    pub name: String,
    /// The installed version.
    pub version: u32,
    /// Whether the row is indexed (counts as installed); invariant 1 is
    /// about indexed rows.
    pub indexed: bool,
}

/// The lockfile as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockfileView {
    /// Well-formed (an absent lockfile reads as no entries).
    Entries(Vec<LockfileEntry>),
    /// Not well-formed JSON of the lockfile's shape.
    Malformed {
        /// The parser's complaint.
        error: String,
    },
}

impl Default for LockfileView {
    fn default() -> Self {
        LockfileView::Entries(Vec::new())
    }
}

/// One lockfile entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockfileEntry {
    /// The item's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Its files (paths under the item tree).
    pub files: Vec<String>,
}

// ----- Snapshot persistence (spec 05) ---------------------------------------

/// A public operation of spec 05's reliability manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SnapOpKind {
    /// Send a message (foreground).
    Send,
    /// Receive a message, duplicates included (foreground).
    Receive,
    /// Acknowledge an outgoing message (foreground).
    Ack,
    /// Mark a buffered message's dependencies met (foreground).
    MarkDepsMet,
    /// A background sweep (foreground: non-fatal).
    Sweep,
    /// Remove a channel (durability intent).
    Remove,
    /// Reset every channel (durability intent).
    Reset,
    /// Load every channel at start-up (durability intent).
    Bootstrap,
}

impl SnapOpKind {
    /// Whether the caller asked for a disk fact: a persistence failure
    /// must reach it. Otherwise the operation is foreground: persistence
    /// failures are logged and never surface.
    pub fn is_durability_intent(self) -> bool {
        matches!(
            self,
            SnapOpKind::Remove | SnapOpKind::Reset | SnapOpKind::Bootstrap
        )
    }
}

/// One of the persistence interface's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SnapCall {
    /// `save_channel_meta`.
    SaveMeta,
    /// `update_history`.
    UpdateHistory,
    /// `load_channel`.
    Load,
    /// `drop_channel`.
    Drop,
    /// `set_retrieval_hint`.
    SetHint,
}

/// What a spec 05 operation returned to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapResult {
    /// Success.
    Ok,
    /// A persistence error.
    PersistenceError,
    /// A protocol error unrelated to storage (unknown message, …).
    Rejected,
}

/// A channel's protocol state except its delivered history: what one
/// `save_channel_meta` snapshot holds. Lists are sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapMeta {
    /// The Lamport clock.
    pub lamport: u64,
    /// Unacknowledged outgoing messages: (id, resend count).
    pub outgoing: Vec<(SnapMsgId, u32)>,
    /// Messages waiting on dependencies: (id, missing ids, sorted).
    pub incoming: Vec<(SnapMsgId, Vec<SnapMsgId>)>,
    /// Outgoing repairs: (id, absolute due time in ms).
    pub repair_out: Vec<(SnapMsgId, u64)>,
    /// Incoming repair requests: (id, absolute due time in ms).
    pub repair_in: Vec<(SnapMsgId, u64)>,
}

/// A channel's whole protocol state, as a save point holds it in memory or
/// a load finds it on disk. No meta and an empty history: no channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapChannelState {
    /// The meta snapshot (`None`: never saved, or dropped).
    pub meta: Option<SnapMeta>,
    /// The delivered history, oldest first.
    pub history: Vec<SnapMsgId>,
}

/// One combined history delta (`update_history`). Applied as: remove every
/// evicted id, then move each appended id, in order, to the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapDelta {
    /// Ids appended, oldest append first.
    pub appends: Vec<SnapMsgId>,
    /// Ids evicted.
    pub evicts: Vec<SnapMsgId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Event>(), 48);
    }

    #[test]
    fn boxed_payloads_serialise_as_unboxed_ones() {
        let event = Event {
            time: 5,
            kind: EventKind::Complete {
                op: 1,
                outcome: Outcome::Ok(OkValue::Read {
                    version: Some(Box::new(PageVersion {
                        page: 2,
                        commit_seq: 3,
                        value: 4,
                    })),
                }),
            },
        };
        let json = serde_json::to_string(&event).expect("serialisable");
        assert_eq!(
            json,
            r#"{"time":5,"kind":{"Complete":{"op":1,"outcome":{"Ok":{"Read":{"version":{"page":2,"commit_seq":3,"value":4}}}}}}}"#
        );
        let failed = Outcome::Failed {
            error: "busy".into(),
            definite: false,
        };
        let json = serde_json::to_string(&failed).expect("serialisable");
        assert_eq!(json, r#"{"Failed":{"error":"busy","definite":false}}"#);
    }
}
