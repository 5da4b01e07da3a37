//! Spec 01: the group commit coordinator.
//!
//! Writers submit [`CommitRequest`]s through the two-phase channel
//! ([`super::channel`]); one coordinator batches them and runs four strict
//! phases per batch:
//!
//! 1. **Validate**: first-committer-wins. A request conflicts when a page
//!    it writes was committed after its snapshot seq, or is written by an
//!    earlier valid request of the same batch. A request whose event id
//!    was already applied is rejected for good (`receipt-exists`).
//! 2. **Append**: one sequential append of every valid request's frame;
//!    a log that returns the wrong number of offsets fails the batch.
//! 3. **Fsync**: exactly one per batch with a valid request, none otherwise.
//! 4. **Publish**, only after the fsync returned OK: commit seqs (monotonic,
//!    gap-free) become official, pages get their new versions, event ids
//!    are marked applied, and writers get `Committed { wal_offset,
//!    commit_seq }`; a [`PublishHook`] sees each commit right before its
//!    writer's answer (spec 03's repair starts there).
//!
//! Guarantees: no `Committed` response and no visible version before the
//! batch's fsync returned OK; conflicted and rejected requests never reach
//! the log; after a failed append or fsync the batch is never acknowledged
//! and the fsync is never retried: the log's unsynced bytes are discarded
//! durably and the batch's writers get `Failed` (definitely not applied),
//! or, if even the discard fails, the coordinator halts and they get
//! `Unknown`. Every batch's phases are recorded ([`CommitEvent::Phase`]) so
//! a checker can verify the order.
//!
//! The batching loop waits for a first request, then drains more, waiting
//! up to `drain_timeout` (100 µs simulated by default) for each next one,
//! until `max_batch_size` (16). madsim timers have a 1 ms floor, so a
//! sub-millisecond drain wait is spent with [`durasim_sim::clock::sleep`]
//! (exact) and followed by one more look at the channel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::{buggify_with, clock, Site};
use tokio::sync::oneshot;

use super::channel::{self, ChannelEvent, ChannelOptions, Permit, ReserveError, Sender, TryRecv};
use super::record::{lock_recovering, Recorder};
use super::wal::{CommitLog, Recovery, WalError};
use super::wal_format::Frame;

/// Application fault: reject a commit as if its basis moved (transient).
pub const FORCE_CONFLICT: Site = Site::fault("commit.force_conflict", "conflict");
/// Application fault: reject a commit as already applied (permanent).
pub const FORCE_RECEIPT_EXISTS: Site = Site::fault("commit.force_receipt_exists", "receipt-exists");

/// A commit request. Txn ids are not unique: two requests with the same
/// txn id are two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The writer's transaction id.
    pub txn_id: u64,
    /// Event id for exactly-once dedup (`None`: no dedup).
    pub event_id: Option<u64>,
    /// The commit seq the writer read at: pages committed after it conflict.
    pub snapshot_seq: u64,
    /// Pages written.
    pub write_set_pages: Vec<u32>,
    /// Value written to each page.
    pub payload: Vec<u8>,
}

/// Why a request conflicted (transient: retrying against fresh state may
/// succeed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictReason {
    /// `page` was committed at `committed_seq`, after the request's snapshot.
    CommittedSinceSnapshot {
        /// The page.
        page: u32,
        /// When it was committed.
        committed_seq: u64,
    },
    /// An earlier valid request in the same batch writes `page`.
    EarlierInBatch {
        /// The page.
        page: u32,
    },
    /// Injected: the server behaves as if the basis moved.
    Forced,
}

/// Why a request was rejected for good (never retry it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermanentReason {
    /// The event id was already applied (idempotent dedup).
    ReceiptExists {
        /// The event id.
        event_id: Option<u64>,
    },
}

impl PermanentReason {
    /// The stable name of the reason, as telemetry shows it.
    pub fn name(&self) -> &'static str {
        match self {
            PermanentReason::ReceiptExists { .. } => "receipt-exists",
        }
    }
}

/// The coordinator's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResponse {
    /// Durable and visible.
    Committed {
        /// Offset of the request's frame in the log.
        wal_offset: u64,
        /// Its commit sequence number.
        commit_seq: u64,
    },
    /// Transient rejection; never reached the log.
    Conflict {
        /// Why.
        reason: ConflictReason,
    },
    /// Permanent rejection; never reached the log.
    Rejected {
        /// Why.
        reason: PermanentReason,
    },
    /// Definitely not applied (its batch failed and was discarded durably).
    Failed {
        /// What failed.
        reason: String,
    },
    /// The outcome is unknown (the coordinator stopped before answering).
    Unknown {
        /// Why.
        reason: String,
    },
}

/// One visible version of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageVersion {
    /// The commit that wrote it.
    pub commit_seq: u64,
    /// The value.
    pub value: Vec<u8>,
}

/// What is committed and visible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedState {
    /// Last published commit seq.
    pub commit_seq: u64,
    /// Every visible version of every page, oldest first.
    pub pages: BTreeMap<u32, Vec<PageVersion>>,
    /// Applied event ids and the commit that applied each.
    pub applied_events: BTreeMap<u64, u64>,
}

impl CommittedState {
    /// The state a recovered log describes.
    pub fn from_recovery(recovery: &Recovery) -> CommittedState {
        let mut state = CommittedState::default();
        for (_, frame) in &recovery.frames {
            state.apply(frame);
        }
        state
    }

    fn apply(&mut self, frame: &Frame) {
        self.commit_seq = frame.commit_seq;
        for &page in &frame.pages {
            self.pages.entry(page).or_default().push(PageVersion {
                commit_seq: frame.commit_seq,
                value: frame.payload.clone(),
            });
        }
        if let Some(event) = frame.event_id {
            self.applied_events.insert(event, frame.commit_seq);
        }
    }

    /// The latest version of `page`.
    pub fn latest(&self, page: u32) -> Option<&PageVersion> {
        self.pages.get(&page).and_then(|v| v.last())
    }

    /// The seq that last wrote `page` (0 if never).
    pub fn last_write(&self, page: u32) -> u64 {
        self.latest(page).map_or(0, |v| v.commit_seq)
    }
}

/// Called for each published commit with its frame, in commit order, after
/// its batch's fsync returned OK and right before its writer is answered:
/// where a system starts work that needs the commit durable (spec 03's
/// repair). It must not block.
#[derive(Clone)]
pub struct PublishHook(pub Arc<dyn Fn(&Frame) + Send + Sync>);

impl std::fmt::Debug for PublishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishHook")
    }
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    /// Most requests per batch.
    pub max_batch_size: usize,
    /// How long to wait for each further request while draining a batch.
    pub drain_timeout: Duration,
    /// Capacity of the channel (clamped to [1, 65535]).
    pub channel_capacity: usize,
    /// Where batches record their phases and outcomes.
    pub recorder: Recorder<CommitEvent>,
    /// Where the channel records its events, if anywhere.
    pub channel_recorder: Option<Recorder<ChannelEvent>>,
    /// Known bugs switched on (none by default).
    pub bugs: CoordinatorBugs,
    /// Called for each published commit (see [`PublishHook`]).
    pub on_published: Option<PublishHook>,
}

/// Spec 01's coordinator bugs, historical ones and breaches of its rules,
/// for canary runs. Every field is off by default, which is the correct
/// behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoordinatorBugs {
    /// Publish (make visible and acknowledge) a batch before its fsync.
    pub publish_before_fsync: bool,
    /// Treat a failed fsync as success and acknowledge the batch.
    pub ack_failed_fsync: bool,
    /// Validate each request against committed pages only, forgetting the
    /// pages of earlier valid requests in the same batch: two writes read
    /// at the same seq and batched together both commit.
    pub ignore_in_batch_conflicts: bool,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            max_batch_size: 16,
            drain_timeout: Duration::from_micros(100),
            channel_capacity: channel::DEFAULT_CAPACITY,
            recorder: Recorder::new(),
            channel_recorder: None,
            bugs: CoordinatorBugs::default(),
            on_published: None,
        }
    }
}

/// A phase of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BatchPhase {
    /// First-committer-wins validation.
    Validate,
    /// The one sequential log append.
    Append,
    /// The one fsync.
    Fsync,
    /// Publishing seqs and versions, answering writers.
    Publish,
}

/// What the coordinator did, for checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitEvent {
    /// A batch was formed from these (permit seq, txn id) pairs.
    BatchFormed {
        /// Batch number (1, 2, 3, …).
        batch: u64,
        /// Permit seq and txn id of each request, in batch order.
        requests: Vec<(u64, u64)>,
    },
    /// The batch entered `phase`.
    Phase {
        /// Batch number.
        batch: u64,
        /// The phase.
        phase: BatchPhase,
    },
    /// A request conflicted.
    Conflict {
        /// Batch number.
        batch: u64,
        /// Its txn id.
        txn_id: u64,
        /// Why.
        reason: ConflictReason,
    },
    /// A request was rejected for good.
    Rejected {
        /// Batch number.
        batch: u64,
        /// Its txn id.
        txn_id: u64,
        /// Why.
        reason: PermanentReason,
    },
    /// The batch's frames were appended at these offsets.
    Appended {
        /// Batch number.
        batch: u64,
        /// Offsets the log returned.
        offsets: Vec<u64>,
    },
    /// The batch's fsync returned.
    Fsync {
        /// Batch number.
        batch: u64,
        /// Whether it returned OK.
        ok: bool,
    },
    /// A request was published.
    Published {
        /// Batch number.
        batch: u64,
        /// Its txn id.
        txn_id: u64,
        /// Its event id.
        event_id: Option<u64>,
        /// Its commit seq.
        commit_seq: u64,
        /// Its frame's offset.
        wal_offset: u64,
        /// Its pages.
        pages: Vec<u32>,
    },
    /// The batch failed; its valid requests were not acknowledged.
    BatchFailed {
        /// Batch number.
        batch: u64,
        /// What failed.
        reason: String,
        /// True when the discard succeeded (writers got `Failed`), false
        /// when the coordinator halted (writers' outcome unknown).
        discarded: bool,
    },
    /// The run loop ended cleanly.
    Shutdown,
}

/// Phases of each batch in the order they ran.
pub fn phase_orders(events: &[CommitEvent]) -> BTreeMap<u64, Vec<BatchPhase>> {
    let mut orders: BTreeMap<u64, Vec<BatchPhase>> = BTreeMap::new();
    for event in events {
        if let CommitEvent::Phase { batch, phase } = event {
            orders.entry(*batch).or_default().push(*phase);
        }
    }
    orders
}

/// Fsyncs issued per batch (batches without one are absent).
pub fn fsyncs_per_batch(events: &[CommitEvent]) -> BTreeMap<u64, u32> {
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for event in events {
        if let CommitEvent::Fsync { batch, .. } = event {
            *counts.entry(*batch).or_default() += 1;
        }
    }
    counts
}

/// A request in the channel with the way back to its writer.
pub struct Submission {
    request: CommitRequest,
    reply: oneshot::Sender<CommitResponse>,
}

/// Deterministic rejections for tests, independent of buggify.
#[derive(Debug, Clone, Default)]
struct Forced {
    conflicts: u64,
    conflict_always: bool,
    receipt_exists: u64,
}

/// Writers' handle: submit requests, read committed state.
#[derive(Clone)]
pub struct CommitClient {
    tx: Sender<Submission>,
    state: Arc<Mutex<CommittedState>>,
}

/// A reserved place in the coordinator's queue.
pub struct CommitPermit {
    permit: Permit<Submission>,
}

/// A sent request's pending answer.
pub struct PendingCommit {
    reply: oneshot::Receiver<CommitResponse>,
}

impl PendingCommit {
    /// Wait for the answer. A coordinator that stopped before answering
    /// gives `Unknown`.
    pub async fn response(self) -> CommitResponse {
        self.reply
            .await
            .unwrap_or_else(|_| CommitResponse::Unknown {
                reason: "coordinator stopped before answering".into(),
            })
    }
}

impl CommitPermit {
    /// The permit's number in the channel.
    pub fn seq(&self) -> u64 {
        self.permit.seq()
    }

    /// Send the request (cannot fail).
    pub fn send(self, request: CommitRequest) -> PendingCommit {
        let (reply, rx) = oneshot::channel();
        self.permit.send(Submission { request, reply });
        PendingCommit { reply: rx }
    }

    /// Give the place back.
    pub fn abort(self) {
        self.permit.abort();
    }
}

impl CommitClient {
    /// Reserve a place (waits while the channel is full).
    pub async fn reserve(&self) -> Result<CommitPermit, ReserveError> {
        Ok(CommitPermit {
            permit: self.tx.reserve().await?,
        })
    }

    /// Reserve, send and wait for the answer.
    pub async fn commit(&self, request: CommitRequest) -> CommitResponse {
        match self.reserve().await {
            Ok(permit) => permit.send(request).response().await,
            Err(ReserveError::Closed) => CommitResponse::Failed {
                reason: "coordinator is shut down".into(),
            },
        }
    }

    /// The latest committed version of `page`.
    pub fn read_page(&self, page: u32) -> Option<PageVersion> {
        lock_recovering(&self.state).latest(page).cloned()
    }

    /// The last published commit seq (a snapshot to read at).
    pub fn commit_seq(&self) -> u64 {
        lock_recovering(&self.state).commit_seq
    }

    /// A consistent read of `page`: the commit seq to use as the basis of
    /// a write, and the page's latest version at that seq.
    pub fn read_snapshot(&self, page: u32) -> (u64, Option<PageVersion>) {
        let state = lock_recovering(&self.state);
        (state.commit_seq, state.latest(page).cloned())
    }

    /// The commit that applied `event_id`, if any.
    pub fn applied_seq(&self, event_id: u64) -> Option<u64> {
        lock_recovering(&self.state)
            .applied_events
            .get(&event_id)
            .copied()
    }
}

/// Control of a running coordinator.
#[derive(Clone)]
pub struct CoordinatorHandle {
    tx: Sender<Submission>,
    state: Arc<Mutex<CommittedState>>,
    forced: Arc<Mutex<Forced>>,
    recorder: Recorder<CommitEvent>,
}

impl CoordinatorHandle {
    /// Stop taking requests; the coordinator finishes what was reserved
    /// and its run loop returns.
    pub fn shutdown(&self) {
        self.tx.close();
    }

    /// Reject the next `n` requests as conflicts (transient).
    pub fn force_conflicts(&self, n: u64) {
        lock_recovering(&self.forced).conflicts += n;
    }

    /// Reject every request as a conflict while `on`.
    pub fn force_conflicts_always(&self, on: bool) {
        lock_recovering(&self.forced).conflict_always = on;
    }

    /// Reject the next `n` requests as already applied (permanent).
    pub fn force_receipt_exists(&self, n: u64) {
        lock_recovering(&self.forced).receipt_exists += n;
    }

    /// A copy of the committed state.
    pub fn state(&self) -> CommittedState {
        lock_recovering(&self.state).clone()
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<CommitEvent> {
        self.recorder.events()
    }

    /// Slots of the channel taken now.
    pub fn channel_in_use(&self) -> usize {
        self.tx.in_use()
    }
}

/// Why the coordinator stopped without a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A batch failed and its unsynced bytes could not be discarded: the
    /// log's state is unknown and only recovery may continue.
    #[error("batch {batch} failed ({reason}) and the log could not be repaired: {source}")]
    Halted {
        /// The batch.
        batch: u64,
        /// What failed first.
        reason: String,
        /// Why the discard failed.
        source: WalError,
    },
}

/// What a coordinator did before it shut down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoordinatorSummary {
    /// Batches processed.
    pub batches: u64,
    /// Requests published.
    pub committed: u64,
    /// Fsyncs issued.
    pub fsyncs: u64,
}

/// The coordinator: owns the log and the receiving end of the channel.
pub struct Coordinator<L> {
    log: L,
    rx: channel::Receiver<Submission>,
    state: Arc<Mutex<CommittedState>>,
    forced: Arc<Mutex<Forced>>,
    config: GroupCommitConfig,
    next_batch: u64,
    summary: CoordinatorSummary,
}

/// A coordinator with its writers' client and its control handle.
pub struct GroupCommit<L> {
    /// Run it with [`Coordinator::run`].
    pub coordinator: Coordinator<L>,
    /// For writers.
    pub client: CommitClient,
    /// For control and inspection.
    pub handle: CoordinatorHandle,
}

/// Build a coordinator over `log`, starting from the state `recovery`
/// describes.
pub fn group_commit<L: CommitLog>(
    log: L,
    recovery: &Recovery,
    config: GroupCommitConfig,
) -> GroupCommit<L> {
    let (tx, rx) = channel::channel_with(ChannelOptions {
        capacity: config.channel_capacity,
        tracked: true,
        recorder: config.channel_recorder.clone(),
        bug_deliver_in_send_order: false,
    });
    let state = Arc::new(Mutex::new(CommittedState::from_recovery(recovery)));
    let forced = Arc::new(Mutex::new(Forced::default()));
    let handle = CoordinatorHandle {
        tx: tx.clone(),
        state: Arc::clone(&state),
        forced: Arc::clone(&forced),
        recorder: config.recorder.clone(),
    };
    let client = CommitClient {
        tx,
        state: Arc::clone(&state),
    };
    GroupCommit {
        coordinator: Coordinator {
            log,
            rx,
            state,
            forced,
            config,
            next_batch: 1,
            summary: CoordinatorSummary::default(),
        },
        client,
        handle,
    }
}

/// A request that passed validation, with its tentative seq.
struct Valid {
    submission: Submission,
    commit_seq: u64,
}

impl<L: CommitLog> Coordinator<L> {
    /// Run batches until shut down (clean: returns the summary) or until a
    /// failure leaves the log in an unknown state (returns the error; the
    /// caller restarts from recovery).
    pub async fn run(mut self) -> Result<CoordinatorSummary, CoordinatorError> {
        while let Some(first) = self.rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch_size.max(1) {
                match self.drain_next().await {
                    Some(next) => batch.push(next),
                    None => break,
                }
            }
            self.process(batch).await?;
        }
        self.config.recorder.record(CommitEvent::Shutdown);
        Ok(self.summary)
    }

    /// The next request if one arrives within the drain timeout.
    async fn drain_next(&self) -> Option<(u64, Submission)> {
        match self.rx.try_recv() {
            TryRecv::Message(seq, s) => return Some((seq, s)),
            TryRecv::Ended => return None,
            TryRecv::Empty => {}
        }
        let wait = self.config.drain_timeout;
        if wait >= Duration::from_millis(1) {
            return durasim_sim::clock::timeout(wait, self.rx.recv())
                .await
                .ok()
                .flatten();
        }
        clock::sleep(wait).await;
        match self.rx.try_recv() {
            TryRecv::Message(seq, s) => Some((seq, s)),
            TryRecv::Empty | TryRecv::Ended => None,
        }
    }

    fn record(&self, event: CommitEvent) {
        self.config.recorder.record(event);
    }

    fn phase(&self, batch: u64, phase: BatchPhase) {
        self.record(CommitEvent::Phase { batch, phase });
    }

    async fn process(&mut self, batch: Vec<(u64, Submission)>) -> Result<(), CoordinatorError> {
        let id = self.next_batch;
        self.next_batch += 1;
        self.summary.batches += 1;
        self.record(CommitEvent::BatchFormed {
            batch: id,
            requests: batch
                .iter()
                .map(|(seq, s)| (*seq, s.request.txn_id))
                .collect(),
        });
        let batch: Vec<Submission> = batch.into_iter().map(|(_, s)| s).collect();

        self.phase(id, BatchPhase::Validate);
        let valid = self.validate(id, batch);
        if valid.is_empty() {
            return Ok(());
        }

        self.phase(id, BatchPhase::Append);
        let frames: Vec<Frame> = valid
            .iter()
            .map(|v| Frame {
                commit_seq: v.commit_seq,
                txn_id: v.submission.request.txn_id,
                event_id: v.submission.request.event_id,
                pages: v.submission.request.write_set_pages.clone(),
                payload: v.submission.request.payload.clone(),
            })
            .collect();
        let offsets = match self.log.append_batch(&frames).await {
            Ok(offsets) if offsets.len() == frames.len() => offsets,
            Ok(offsets) => {
                let reason = format!(
                    "log returned {} offsets for {} frames",
                    offsets.len(),
                    frames.len()
                );
                return self.fail_batch(id, valid, reason).await;
            }
            Err(e) => return self.fail_batch(id, valid, format!("append: {e}")).await,
        };
        self.record(CommitEvent::Appended {
            batch: id,
            offsets: offsets.clone(),
        });

        let bugs = self.config.bugs;
        if bugs.publish_before_fsync {
            self.phase(id, BatchPhase::Publish);
            self.publish(id, valid, offsets);
            let _ = self.fsync_batch(id).await;
            // Already acknowledged: nothing is left to undo.
            return Ok(());
        }

        let synced = self.fsync_batch(id).await;
        if let Err(e) = synced {
            if !bugs.ack_failed_fsync {
                return self.fail_batch(id, valid, format!("fsync: {e}")).await;
            }
        }

        self.phase(id, BatchPhase::Publish);
        self.publish(id, valid, offsets);
        Ok(())
    }

    /// Phase 3: one fsync for batch `id`, counted and recorded.
    async fn fsync_batch(&mut self, id: u64) -> Result<(), WalError> {
        self.phase(id, BatchPhase::Fsync);
        self.summary.fsyncs += 1;
        let synced = self.log.sync().await;
        self.record(CommitEvent::Fsync {
            batch: id,
            ok: synced.is_ok(),
        });
        synced
    }

    /// Phase 1. Returns the valid requests with tentative seqs; answers
    /// the others.
    fn validate(&self, batch: u64, submissions: Vec<Submission>) -> Vec<Valid> {
        // Held, not copied: validation never awaits, and only this task
        // changes the state.
        let state = lock_recovering(&self.state);
        let mut claimed_pages = BTreeSet::new();
        let mut claimed_events = BTreeSet::new();
        let mut valid = Vec::new();
        for submission in submissions {
            let request = &submission.request;
            let verdict = self
                .forced_verdict(request)
                .or_else(|| receipt_exists(&state, &claimed_events, request))
                .or_else(|| page_conflict(&state, &claimed_pages, request));
            match verdict {
                Some(CommitResponse::Conflict { reason }) => {
                    self.record(CommitEvent::Conflict {
                        batch,
                        txn_id: request.txn_id,
                        reason: reason.clone(),
                    });
                    let _ = submission.reply.send(CommitResponse::Conflict { reason });
                }
                Some(CommitResponse::Rejected { reason }) => {
                    self.record(CommitEvent::Rejected {
                        batch,
                        txn_id: request.txn_id,
                        reason: reason.clone(),
                    });
                    let _ = submission.reply.send(CommitResponse::Rejected { reason });
                }
                Some(other) => {
                    let _ = submission.reply.send(other);
                }
                None => {
                    if !self.config.bugs.ignore_in_batch_conflicts {
                        claimed_pages.extend(request.write_set_pages.iter().copied());
                    }
                    claimed_events.extend(request.event_id);
                    let commit_seq = state.commit_seq + 1 + valid.len() as u64;
                    valid.push(Valid {
                        submission,
                        commit_seq,
                    });
                }
            }
        }
        valid
    }

    /// Injected rejections: the deterministic knobs first, then buggify.
    fn forced_verdict(&self, request: &CommitRequest) -> Option<CommitResponse> {
        let conflict = CommitResponse::Conflict {
            reason: ConflictReason::Forced,
        };
        let receipt = CommitResponse::Rejected {
            reason: PermanentReason::ReceiptExists {
                event_id: request.event_id,
            },
        };
        {
            let mut forced = lock_recovering(&self.forced);
            if forced.receipt_exists > 0 {
                forced.receipt_exists -= 1;
                return Some(receipt);
            }
            if forced.conflict_always {
                return Some(conflict);
            }
            if forced.conflicts > 0 {
                forced.conflicts -= 1;
                return Some(conflict);
            }
        }
        let txn = request.txn_id;
        if buggify_with(&FORCE_CONFLICT, || {
            format!("txn {txn} rejected as if its basis moved")
        }) {
            return Some(conflict);
        }
        if buggify_with(&FORCE_RECEIPT_EXISTS, || {
            format!("txn {txn} rejected as already applied")
        }) {
            return Some(receipt);
        }
        None
    }

    /// Phase 4: make the batch official and visible, then answer.
    fn publish(&mut self, batch: u64, valid: Vec<Valid>, offsets: Vec<u64>) {
        let mut answers = Vec::with_capacity(valid.len());
        {
            let mut state = lock_recovering(&self.state);
            for (v, wal_offset) in valid.into_iter().zip(offsets) {
                let request = &v.submission.request;
                // Tentative seqs were numbered from this same state, and
                // only this task publishes: they are the next ones.
                debug_assert_eq!(v.commit_seq, state.commit_seq + 1);
                let frame = Frame {
                    commit_seq: v.commit_seq,
                    txn_id: request.txn_id,
                    event_id: request.event_id,
                    pages: request.write_set_pages.clone(),
                    payload: request.payload.clone(),
                };
                state.apply(&frame);
                answers.push((v, wal_offset, frame));
            }
        }
        for (v, wal_offset, frame) in answers {
            let request = &v.submission.request;
            self.record(CommitEvent::Published {
                batch,
                txn_id: request.txn_id,
                event_id: request.event_id,
                commit_seq: v.commit_seq,
                wal_offset,
                pages: request.write_set_pages.clone(),
            });
            self.summary.committed += 1;
            if let Some(hook) = &self.config.on_published {
                (hook.0)(&frame);
            }
            let _ = v.submission.reply.send(CommitResponse::Committed {
                wal_offset,
                commit_seq: v.commit_seq,
            });
        }
    }

    /// A failed append or fsync: never acknowledge, never retry the fsync;
    /// discard the unsynced bytes durably, then tell the writers.
    async fn fail_batch(
        &mut self,
        batch: u64,
        valid: Vec<Valid>,
        reason: String,
    ) -> Result<(), CoordinatorError> {
        match self.log.discard_unsynced().await {
            Ok(()) => {
                self.record(CommitEvent::BatchFailed {
                    batch,
                    reason: reason.clone(),
                    discarded: true,
                });
                for v in valid {
                    let _ = v.submission.reply.send(CommitResponse::Failed {
                        reason: reason.clone(),
                    });
                }
                Ok(())
            }
            Err(source) => {
                self.record(CommitEvent::BatchFailed {
                    batch,
                    reason: reason.clone(),
                    discarded: false,
                });
                for v in valid {
                    let _ = v.submission.reply.send(CommitResponse::Unknown {
                        reason: reason.clone(),
                    });
                }
                Err(CoordinatorError::Halted {
                    batch,
                    reason,
                    source,
                })
            }
        }
    }
}

fn receipt_exists(
    state: &CommittedState,
    claimed_events: &BTreeSet<u64>,
    request: &CommitRequest,
) -> Option<CommitResponse> {
    let event = request.event_id?;
    (state.applied_events.contains_key(&event) || claimed_events.contains(&event)).then_some(
        CommitResponse::Rejected {
            reason: PermanentReason::ReceiptExists {
                event_id: Some(event),
            },
        },
    )
}

fn page_conflict(
    state: &CommittedState,
    claimed_pages: &BTreeSet<u32>,
    request: &CommitRequest,
) -> Option<CommitResponse> {
    request.write_set_pages.iter().find_map(|&page| {
        let committed_seq = state.last_write(page);
        let reason = if committed_seq > request.snapshot_seq {
            ConflictReason::CommittedSinceSnapshot {
                page,
                committed_seq,
            }
        } else if claimed_pages.contains(&page) {
            ConflictReason::EarlierInBatch { page }
        } else {
            return None;
        };
        Some(CommitResponse::Conflict { reason })
    })
}
