//! Spec 03: asynchronous repair workers.
//!
//! A commit's systematic bytes are made durable on the critical path
//! (appended to the `data` log and synced); its repair symbols — XOR parity
//! over fixed-size shards of those bytes — are generated afterwards by
//! background workers and made durable in the `parity` log. Between the
//! ack and the parity's sync the commit is *durable but not repairable*;
//! that window is observable per commit.
//!
//! Guarantees:
//! - Events per commit, numbered 1, 2, 3, … and stamped with simulated
//!   time: `CommitDurable` → (`DurableButNotRepairable`) → `CommitAcked` →
//!   `RepairStarted` → `RepairCompleted` | `RepairFailed`. `CommitAcked`
//!   never precedes `CommitDurable`. After a restart, a commit whose parity
//!   is missing starts its new incarnation's events with `RecoveredPending`,
//!   and one whose parity verifies with `RecoveredCompleted`.
//! - Every scheduled repair ends `Completed` or `Failed`, loudly: errors
//!   in generation, append or sync fail it; a panic is caught at the task
//!   boundary and fails only that commit's repair (locks recover from
//!   poisoning); a task cancelled before it starts fails; a failure to
//!   schedule fails the repair at once (the commit stays durable and acked,
//!   its receipt says `repair_pending: false`).
//! - The repair state is durable: on recovery, commits with no valid
//!   parity record are re-scheduled, never forgotten.
//! - `Completed` means the parity record is synced and regenerates any one
//!   lost shard of the systematic bytes ([`verify_parity`] checks the code
//!   itself, not a flag).
//! - At most [`RepairConfig::workers`] repairs generate at once; their
//!   parity records reach the log by group commit (the worker that gets
//!   the log appends every record waiting by then, with one fsync).
//!
//! Two halves: [`RepairWorkers`] (the parity log and the workers, for
//! commits some log made durable) and [`RepairCoordinator`] (its own
//! systematic `data` log on the critical path, in front of the workers).
//! A system with a log of its own, such as the group commit over the WAL,
//! uses the workers alone.
//!
//! Dropping the coordinator does not abandon repairs: each worker owns what
//! it needs and runs to its end; [`RepairCoordinator::wait_for_background_repair`]
//! joins them and reports panics.
//!
//! Faults (buggify, fault phase only): slow generation, failing
//! generation, a panicking worker, a failure to schedule. Tests may pin the
//! generation fault per commit with [`RepairConfig::fault_plan`].
//!
//! Known bugs (spec 03's catalogue, off by default):
//! [`RepairConfig::panic_abandons_others`] and
//! [`RepairConfig::forget_pending_on_recovery`].
//!
//! On disk, a parity record is a WAL frame (see [`super::wal_format`])
//! with `commit_seq` = the commit, `txn_id` = checksum of the systematic
//! bytes it protects, `pages` = [shard size, systematic length] and
//! `payload` = the parity shard.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::{buggify_with, choose_between, clock, Disk, SimTime, Site};
use futures_util::FutureExt;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::record::{lock_recovering, Recorder};
use super::wal::{CommitLog, Wal, WalConfig, WalError, WalEvent};
use super::wal_format::{checksum, scan, Frame, DEFAULT_BLOCK};

/// Application fault: repair generation is slow.
pub const SLOW_GENERATION: Site = Site::fault("repair.slow_generation", "repair-slow");
/// How slow, µs.
pub const SLOW_GENERATION_US: Site = Site::value("repair.slow_generation_us");
/// Application fault: repair generation fails.
pub const GENERATION_FAILS: Site = Site::fault("repair.generation_fails", "repair-fail");
/// Application fault: a repair worker panics.
pub const WORKER_PANICS: Site = Site::fault("repair.worker_panic", "repair-panic");
/// Application fault: the repair task cannot be scheduled.
pub const SCHEDULE_FAILS: Site = Site::fault("repair.schedule_fails", "repair-fail");

/// What generation does for one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationFault {
    /// Generate normally.
    None,
    /// Take this long first.
    Slow(Duration),
    /// Return an error.
    Fail,
    /// Panic.
    Panic,
    /// Refuse to schedule the task at all.
    CannotSchedule,
}

/// Chooses the generation fault per commit seq (overrides buggify).
pub type FaultPlan = Arc<dyn Fn(u64) -> GenerationFault + Send + Sync>;

/// Settings.
#[derive(Clone)]
pub struct RepairConfig {
    /// Whether commits get repair symbols at all.
    pub enabled: bool,
    /// Directory holding the `data` and `parity` logs.
    pub dir: String,
    /// Shard size in bytes for the parity code.
    pub shard_size: usize,
    /// Block size of the `data` and `parity` logs (a multiple of the
    /// disk's sector size; see [`WalConfig::block_size`]).
    pub block_size: u64,
    /// Workers generating at once.
    pub workers: usize,
    /// Per-commit generation faults, instead of buggify.
    pub fault_plan: Option<FaultPlan>,
    /// Where events are recorded.
    pub recorder: Recorder<RepairEvent>,
    /// Where the coordinator's systematic `data` log records what it does
    /// (appends, fsyncs, discards, recoveries), if anywhere.
    pub data_log_recorder: Option<Recorder<WalEvent>>,
    /// Known bug `repair-panic-abandons-others`: a panicking worker
    /// poisons the pool, and every repair that starts after it gives up
    /// silently, leaving its commit `Pending` for good. `false` (correct):
    /// a panic fails only its own commit.
    pub panic_abandons_others: bool,
    /// Known bug `repair-pending-forgotten`: recovery does not re-schedule
    /// commits whose parity is missing; it reports them `NotScheduled`, as
    /// if repair had never been asked for. `false` (correct): they are
    /// re-scheduled.
    pub forget_pending_on_recovery: bool,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            enabled: true,
            dir: "repair".into(),
            shard_size: 512,
            block_size: DEFAULT_BLOCK,
            workers: 2,
            fault_plan: None,
            recorder: Recorder::new(),
            data_log_recorder: None,
            panic_abandons_others: false,
            forget_pending_on_recovery: false,
        }
    }
}

/// A commit's repair state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairState {
    /// No repair was ever scheduled (repair disabled, or unknown seq).
    NotScheduled,
    /// Scheduled, not finished: durable but not repairable.
    Pending,
    /// Parity durable and verified by construction.
    Completed,
    /// Repair failed (loudly).
    Failed,
}

/// What happened to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairEventKind {
    /// Its systematic bytes are synced.
    CommitDurable,
    /// Its repair is pending: a media fault now could not be healed.
    DurableButNotRepairable,
    /// The writer got its receipt.
    CommitAcked,
    /// Recovery found it without parity and re-scheduled its repair.
    RecoveredPending,
    /// Recovery found its parity durable and verified: `Completed`.
    RecoveredCompleted,
    /// A worker started generating.
    RepairStarted,
    /// Parity is durable.
    RepairCompleted,
    /// The repair failed.
    RepairFailed {
        /// Why.
        reason: String,
    },
}

/// One event of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairEvent {
    /// The commit.
    pub commit_seq: u64,
    /// Position among this commit's events (1, 2, 3, …).
    pub event_seq: u32,
    /// Simulated time.
    pub time: SimTime,
    /// What happened.
    pub kind: RepairEventKind,
}

/// What the writer gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The commit's seq.
    pub commit_seq: u64,
    /// Always true: a receipt is only given for a durable commit.
    pub durable: bool,
    /// True when a repair was scheduled and is still to come.
    pub repair_pending: bool,
}

/// Joined workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackgroundReport {
    /// Workers joined.
    pub joined: usize,
    /// Of which panicked (caught; their commits are `Failed`).
    pub panicked: usize,
}

impl BackgroundReport {
    /// Whether any worker panicked.
    pub fn any_panicked(&self) -> bool {
        self.panicked > 0
    }
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairRecovery {
    /// Durable commits found.
    pub commits: u64,
    /// Of which had valid parity.
    pub completed: u64,
    /// Commits re-scheduled for repair.
    pub rescheduled: Vec<u64>,
}

/// Errors of the commit path.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The systematic log failed; the commit is not durable.
    #[error("commit not durable: {0}")]
    Log(#[from] WalError),
}

/// One parity record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityRecord {
    /// The commit it protects.
    pub commit_seq: u64,
    /// Checksum of the systematic bytes it protects.
    pub systematic_checksum: u64,
    /// Shard size.
    pub shard_size: usize,
    /// Length of the systematic bytes.
    pub systematic_len: usize,
    /// XOR of all shards.
    pub parity: Vec<u8>,
}

impl ParityRecord {
    fn to_frame(&self) -> Frame {
        Frame {
            commit_seq: self.commit_seq,
            txn_id: self.systematic_checksum,
            event_id: None,
            pages: vec![self.shard_size as u32, self.systematic_len as u32],
            payload: self.parity.clone(),
        }
    }

    fn from_frame(frame: &Frame) -> Option<ParityRecord> {
        let [shard_size, systematic_len] = frame.pages.as_slice() else {
            return None;
        };
        Some(ParityRecord {
            commit_seq: frame.commit_seq,
            systematic_checksum: frame.txn_id,
            shard_size: *shard_size as usize,
            systematic_len: *systematic_len as usize,
            parity: frame.payload.clone(),
        })
    }
}

/// `data` cut into `shard_size` shards, the last zero-padded.
pub fn shards(data: &[u8], shard_size: usize) -> Vec<Vec<u8>> {
    let size = shard_size.max(1);
    data.chunks(size)
        .map(|c| {
            let mut shard = c.to_vec();
            shard.resize(size, 0);
            shard
        })
        .collect()
}

/// XOR of every shard of `data` (the last one zero-padded), without
/// materialising the shards.
pub fn xor_parity(data: &[u8], shard_size: usize) -> Vec<u8> {
    let mut parity = vec![0u8; shard_size.max(1)];
    for chunk in data.chunks(shard_size.max(1)) {
        xor_into(&mut parity, chunk);
    }
    parity
}

fn xor_into(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// Rebuild the one missing shard (`None`) from the others and the parity.
/// `None` when not exactly one shard is missing.
pub fn regenerate_shard(shards: &[Option<Vec<u8>>], parity: &[u8]) -> Option<Vec<u8>> {
    if shards.iter().filter(|s| s.is_none()).count() != 1 {
        return None;
    }
    let mut rebuilt = parity.to_vec();
    for shard in shards.iter().flatten() {
        xor_into(&mut rebuilt, shard);
    }
    Some(rebuilt)
}

/// Whether `record` protects `data`: its checksum and length match, and
/// every shard, erased in turn, is regenerated exactly from the others.
///
/// Shard `i` rebuilds as `parity ⊕ (⊕ of the others)`, which equals shard
/// `i` exactly when `parity ⊕ (⊕ of all shards)` is zero, i.e. when the
/// parity equals the recomputed XOR: one pass instead of erasing each
/// shard in turn (`tests/spec03_repair.rs` checks the two agree).
pub fn verify_parity(data: &[u8], record: &ParityRecord) -> bool {
    record.systematic_checksum == checksum(data)
        && record.systematic_len == data.len()
        && record.parity.len() == record.shard_size.max(1)
        && xor_parity(data, record.shard_size) == record.parity
}

/// Read the durable commits and parity records out of a disk image (as
/// `Sim::disk_files` gives it), for checkers: commits by seq, and the
/// parity records found.
pub fn read_image(
    files: &BTreeMap<String, Vec<u8>>,
    dir: &str,
    block_size: u64,
) -> (BTreeMap<u64, Vec<u8>>, Vec<ParityRecord>) {
    let bytes = files.get(&format!("{dir}/data/log"));
    let commits = scan(bytes.map_or(&[][..], Vec::as_slice), block_size, true)
        .frames()
        .map(|(_, f)| (f.commit_seq, f.payload.clone()))
        .collect();
    (commits, read_parity_image(files, dir, block_size))
}

/// The parity records of repair directory `dir` in a disk image, in log
/// order (a later record for the same commit supersedes an earlier one).
pub fn read_parity_image(
    files: &BTreeMap<String, Vec<u8>>,
    dir: &str,
    block_size: u64,
) -> Vec<ParityRecord> {
    let config = parity_log_config(dir, block_size);
    let bytes = files.get(&config.log_path());
    scan(
        bytes.map_or(&[][..], Vec::as_slice),
        config.block_size,
        config.contiguous_seqs,
    )
    .frames()
    .filter_map(|(_, f)| ParityRecord::from_frame(f))
    .collect()
}

struct CommitEntry {
    state: RepairState,
    events: Vec<RepairEvent>,
    /// Kept until the repair settles.
    systematic: Option<Arc<Vec<u8>>>,
}

struct Book {
    commits: BTreeMap<u64, CommitEntry>,
}

/// Parity records waiting for the parity log, and the fates of those a
/// fellow worker wrote.
#[derive(Default)]
struct ParityQueue {
    next_ticket: u64,
    waiting: Vec<(u64, Frame)>,
    written: BTreeMap<u64, Result<(), String>>,
}

struct Inner {
    config: RepairConfig,
    parity: tokio::sync::Mutex<Wal>,
    parity_queue: Mutex<ParityQueue>,
    book: Mutex<Book>,
    workers: Semaphore,
    cancelled: AtomicBool,
    /// Set by a panicking worker, only with the known bug
    /// [`RepairConfig::panic_abandons_others`].
    poisoned: AtomicBool,
    tasks: Mutex<Vec<madsim::task::JoinHandle<bool>>>,
}

/// The background half of spec 03: the parity log and the workers that
/// fill it, for commits whose systematic bytes some log made durable.
///
/// [`RepairCoordinator`] puts it behind its own systematic log; a system
/// with a log of its own (a group commit over a WAL) uses it directly:
/// [`RepairWorkers::open`] with the commits its recovery found, then
/// [`RepairWorkers::protect`] for each commit as it becomes durable.
#[derive(Clone)]
pub struct RepairWorkers {
    inner: Arc<Inner>,
}

impl RepairWorkers {
    /// Recover the parity log under `config.dir` and match it against the
    /// durable commits `durable` (commit seq, systematic bytes): a commit
    /// whose parity record verifies is `Completed` (its events in this
    /// incarnation start with `RecoveredCompleted`); every other one is
    /// re-scheduled (`RecoveredPending`) when repair is enabled, never
    /// forgotten.
    pub async fn open(
        disk: &Disk,
        config: RepairConfig,
        durable: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<(RepairWorkers, RepairRecovery), WalError> {
        let (parity, parity_recovery) = Wal::open(
            disk,
            parity_log_config(&config.dir, config.block_size),
            None,
        )
        .await?;
        let verified: BTreeMap<u64, ParityRecord> = parity_recovery
            .frames
            .iter()
            .filter_map(|(_, f)| ParityRecord::from_frame(f))
            .map(|r| (r.commit_seq, r))
            .collect();
        let mut recovery = RepairRecovery::default();
        let mut completed = Vec::new();
        let mut commits = BTreeMap::new();
        for (seq, systematic) in durable {
            recovery.commits += 1;
            let repaired = verified
                .get(&seq)
                .is_some_and(|r| verify_parity(&systematic, r));
            let (state, systematic) = if repaired {
                recovery.completed += 1;
                completed.push(seq);
                (RepairState::Completed, None)
            } else if config.enabled && !config.forget_pending_on_recovery {
                recovery.rescheduled.push(seq);
                (RepairState::Pending, Some(Arc::new(systematic)))
            } else {
                // Repair disabled, or (known bug) a repair the crash
                // interrupted is silently dropped.
                (RepairState::NotScheduled, None)
            };
            commits.insert(
                seq,
                CommitEntry {
                    state,
                    events: Vec::new(),
                    systematic,
                },
            );
        }
        let workers = config.workers.max(1);
        let repair = RepairWorkers {
            inner: Arc::new(Inner {
                config,
                parity: tokio::sync::Mutex::new(parity),
                parity_queue: Mutex::new(ParityQueue::default()),
                book: Mutex::new(Book { commits }),
                workers: Semaphore::new(workers),
                cancelled: AtomicBool::new(false),
                poisoned: AtomicBool::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        for seq in completed {
            repair.inner.event(seq, RepairEventKind::RecoveredCompleted);
        }
        for &seq in &recovery.rescheduled {
            repair.inner.event(seq, RepairEventKind::RecoveredPending);
            repair.spawn_repair(seq);
        }
        Ok((repair, recovery))
    }

    /// Commit `seq`'s `systematic` bytes are durable and its writer is
    /// about to be acknowledged: record that, mark the repair `Pending`
    /// and schedule it (spec 03's critical path from `CommitDurable` on).
    /// The receipt says whether a repair is still to come.
    pub fn protect(&self, seq: u64, systematic: Vec<u8>) -> Receipt {
        let inner = &self.inner;
        lock_recovering(&inner.book).commits.insert(
            seq,
            CommitEntry {
                state: RepairState::NotScheduled,
                events: Vec::new(),
                systematic: None,
            },
        );
        inner.event(seq, RepairEventKind::CommitDurable);
        if !inner.config.enabled {
            inner.event(seq, RepairEventKind::CommitAcked);
            return Receipt {
                commit_seq: seq,
                durable: true,
                repair_pending: false,
            };
        }
        if let Some(entry) = lock_recovering(&inner.book).commits.get_mut(&seq) {
            entry.state = RepairState::Pending;
            entry.systematic = Some(Arc::new(systematic));
        }
        inner.event(seq, RepairEventKind::DurableButNotRepairable);
        inner.event(seq, RepairEventKind::CommitAcked);
        let planned_refusal = inner
            .config
            .fault_plan
            .as_ref()
            .is_some_and(|plan| plan(seq) == GenerationFault::CannotSchedule);
        let cannot_schedule = planned_refusal
            || inner.cancelled.load(Ordering::Relaxed)
            || buggify_with(&SCHEDULE_FAILS, || {
                format!("repair of commit {seq} cannot be scheduled")
            });
        if cannot_schedule {
            inner.settle(
                seq,
                Err("the repair task could not be scheduled".to_string()),
            );
            return Receipt {
                commit_seq: seq,
                durable: true,
                repair_pending: false,
            };
        }
        self.spawn_repair(seq);
        Receipt {
            commit_seq: seq,
            durable: true,
            repair_pending: true,
        }
    }

    fn spawn_repair(&self, seq: u64) {
        let inner = Arc::clone(&self.inner);
        let task = durasim_sim::task::spawn(async move { inner.run_repair(seq).await });
        lock_recovering(&self.inner.tasks).push(task);
    }

    /// Repair state of commit `seq` (`NotScheduled` for unknown seqs).
    pub fn repair_state_for(&self, seq: u64) -> RepairState {
        lock_recovering(&self.inner.book)
            .commits
            .get(&seq)
            .map_or(RepairState::NotScheduled, |e| e.state)
    }

    /// Time from `DurableButNotRepairable` (or `RecoveredPending`) to
    /// `RepairCompleted` (`None` until completed in this incarnation).
    pub fn durable_not_repairable_window(&self, seq: u64) -> Option<Duration> {
        let book = lock_recovering(&self.inner.book);
        let events = &book.commits.get(&seq)?.events;
        let time_of = |wanted: fn(&RepairEventKind) -> bool| {
            events.iter().find(|e| wanted(&e.kind)).map(|e| e.time)
        };
        let opened = time_of(|k| {
            matches!(
                k,
                RepairEventKind::DurableButNotRepairable | RepairEventKind::RecoveredPending
            )
        })?;
        let closed = time_of(|k| matches!(k, RepairEventKind::RepairCompleted))?;
        Some(closed.since(opened))
    }

    /// Events of commit `seq` in this incarnation.
    pub fn events_for(&self, seq: u64) -> Vec<RepairEvent> {
        lock_recovering(&self.inner.book)
            .commits
            .get(&seq)
            .map(|e| e.events.clone())
            .unwrap_or_default()
    }

    /// Commits whose repair is still pending.
    pub fn pending_background_repair_count(&self) -> usize {
        lock_recovering(&self.inner.book)
            .commits
            .values()
            .filter(|e| e.state == RepairState::Pending)
            .count()
    }

    /// Commits by repair state.
    pub fn states(&self) -> BTreeMap<u64, RepairState> {
        lock_recovering(&self.inner.book)
            .commits
            .iter()
            .map(|(seq, e)| (*seq, e.state))
            .collect()
    }

    /// Join every worker scheduled so far (and any they led to), and say
    /// how many panicked.
    pub async fn wait_for_background_repair(&self) -> BackgroundReport {
        let mut report = BackgroundReport::default();
        loop {
            let tasks = std::mem::take(&mut *lock_recovering(&self.inner.tasks));
            if tasks.is_empty() {
                return report;
            }
            for task in tasks {
                report.joined += 1;
                // A join error means the task was killed with its process
                // (or stopped by `stop_all`): its commit is re-scheduled by
                // the next recovery.
                if task.await.unwrap_or(false) {
                    report.panicked += 1;
                }
            }
        }
    }

    /// Fail every repair that has not started yet (they end `Failed`,
    /// "cancelled before start"); running ones finish.
    pub fn cancel_pending(&self) {
        self.inner.cancelled.store(true, Ordering::Relaxed);
    }

    /// Stop every worker at once, as a crash of the process would: for a
    /// server that fails-stop and recovers within the same process. Their
    /// commits stay `Pending` here; the next [`RepairWorkers::open`] finds
    /// them without parity and re-schedules them.
    pub fn stop_all(&self) {
        for task in lock_recovering(&self.inner.tasks).iter() {
            task.abort();
        }
    }
}

/// The spec 03 repair coordinator: a systematic `data` log on the
/// critical path plus the [`RepairWorkers`] behind it.
#[derive(Clone)]
pub struct RepairCoordinator {
    data: Arc<tokio::sync::Mutex<Wal>>,
    workers: RepairWorkers,
}

impl RepairCoordinator {
    /// Recover both logs from `disk` and re-schedule every commit whose
    /// parity is missing (when repair is enabled).
    pub async fn open(
        disk: &Disk,
        config: RepairConfig,
    ) -> Result<(RepairCoordinator, RepairRecovery), WalError> {
        let (data, data_recovery) = Wal::open(
            disk,
            WalConfig {
                block_size: config.block_size,
                ..WalConfig::new(&format!("{}/data", config.dir))
            },
            config.data_log_recorder.clone(),
        )
        .await?;
        let durable = data_recovery
            .frames
            .into_iter()
            .map(|(_, f)| (f.commit_seq, f.payload));
        let (workers, recovery) = RepairWorkers::open(disk, config, durable).await?;
        let coordinator = RepairCoordinator {
            data: Arc::new(tokio::sync::Mutex::new(data)),
            workers,
        };
        Ok((coordinator, recovery))
    }

    /// The critical path: make `systematic` durable, acknowledge it, and
    /// schedule its repair. Fails only when the bytes are not durable. The
    /// commit's frame carries its commit seq as txn id.
    pub async fn commit(&self, systematic: Vec<u8>) -> Result<Receipt, RepairError> {
        self.commit_frame(None, systematic).await
    }

    /// [`RepairCoordinator::commit`], with the writer's own txn id in the
    /// commit's frame (so a checker can tell whose bytes recovery found).
    pub async fn commit_as(
        &self,
        txn_id: u64,
        systematic: Vec<u8>,
    ) -> Result<Receipt, RepairError> {
        self.commit_frame(Some(txn_id), systematic).await
    }

    async fn commit_frame(
        &self,
        txn_id: Option<u64>,
        systematic: Vec<u8>,
    ) -> Result<Receipt, RepairError> {
        let seq = {
            let mut data = self.data.lock().await;
            let seq = data.synced_seq() + 1;
            let frame = Frame {
                commit_seq: seq,
                txn_id: txn_id.unwrap_or(seq),
                event_id: None,
                pages: Vec::new(),
                payload: systematic.clone(),
            };
            let written = match data.append_batch(&[frame]).await {
                Ok(_) => data.sync().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // Not durable: never acknowledge it, and throw its bytes
                // away before anything else is appended.
                data.discard_unsynced().await?;
                return Err(e.into());
            }
            seq
        };
        // Durable: from here to the receipt nothing awaits, so no crash
        // can fall between `CommitDurable` and `CommitAcked`.
        Ok(self.workers.protect(seq, systematic))
    }

    /// The background half.
    pub fn workers(&self) -> &RepairWorkers {
        &self.workers
    }

    /// Repair state of commit `seq` (`NotScheduled` for unknown seqs).
    pub fn repair_state_for(&self, seq: u64) -> RepairState {
        self.workers.repair_state_for(seq)
    }

    /// See [`RepairWorkers::durable_not_repairable_window`].
    pub fn durable_not_repairable_window(&self, seq: u64) -> Option<Duration> {
        self.workers.durable_not_repairable_window(seq)
    }

    /// Events of commit `seq` in this incarnation.
    pub fn events_for(&self, seq: u64) -> Vec<RepairEvent> {
        self.workers.events_for(seq)
    }

    /// Commits whose repair is still pending.
    pub fn pending_background_repair_count(&self) -> usize {
        self.workers.pending_background_repair_count()
    }

    /// Commits by repair state.
    pub fn states(&self) -> BTreeMap<u64, RepairState> {
        self.workers.states()
    }

    /// See [`RepairWorkers::wait_for_background_repair`].
    pub async fn wait_for_background_repair(&self) -> BackgroundReport {
        self.workers.wait_for_background_repair().await
    }

    /// See [`RepairWorkers::cancel_pending`].
    pub fn cancel_pending(&self) {
        self.workers.cancel_pending()
    }
}

/// Where the parity log of a repair directory lives and how it is laid
/// out: records for any commit, in any order.
fn parity_log_config(dir: &str, block_size: u64) -> WalConfig {
    WalConfig {
        contiguous_seqs: false,
        block_size,
        ..WalConfig::new(&format!("{dir}/parity"))
    }
}

impl Inner {
    fn event(&self, seq: u64, kind: RepairEventKind) {
        let event = {
            let mut book = lock_recovering(&self.book);
            let Some(entry) = book.commits.get_mut(&seq) else {
                return;
            };
            let event = RepairEvent {
                commit_seq: seq,
                event_seq: entry.events.len() as u32 + 1,
                time: clock::now(),
                kind,
            };
            entry.events.push(event.clone());
            event
        };
        self.config.recorder.record(event);
    }

    /// End a repair: `Completed` or `Failed` with its event.
    fn settle(&self, seq: u64, result: Result<(), String>) {
        if let Some(entry) = lock_recovering(&self.book).commits.get_mut(&seq) {
            entry.systematic = None;
            entry.state = match result {
                Ok(()) => RepairState::Completed,
                Err(_) => RepairState::Failed,
            };
        }
        let kind = match result {
            Ok(()) => RepairEventKind::RepairCompleted,
            Err(reason) => RepairEventKind::RepairFailed { reason },
        };
        self.event(seq, kind);
    }

    fn fault_for(&self, seq: u64) -> GenerationFault {
        if let Some(plan) = &self.config.fault_plan {
            return plan(seq);
        }
        if buggify_with(&WORKER_PANICS, || {
            format!("repair worker of commit {seq} panics")
        }) {
            return GenerationFault::Panic;
        }
        if buggify_with(&GENERATION_FAILS, || {
            format!("repair generation of commit {seq} fails")
        }) {
            return GenerationFault::Fail;
        }
        if buggify_with(&SLOW_GENERATION, || {
            format!("repair generation of commit {seq} is slow")
        }) {
            let us = choose_between(&SLOW_GENERATION_US, 1_000, 200_000);
            return GenerationFault::Slow(Duration::from_micros(us));
        }
        GenerationFault::None
    }

    /// A repair task: wait for a worker slot, then generate, append and
    /// sync the parity. Returns whether the worker panicked.
    async fn run_repair(self: Arc<Self>, seq: u64) -> bool {
        let Ok(slot) = self.workers.acquire().await else {
            self.settle(seq, Err("cancelled before start".into()));
            return false;
        };
        if self.cancelled.load(Ordering::Relaxed) {
            self.settle(seq, Err("cancelled before start".into()));
            return false;
        }
        if self.poisoned.load(Ordering::Relaxed) {
            // Known bug: the worker finds the pool poisoned by another
            // worker's panic and gives up without a word; the commit is
            // left `Pending` for good.
            return false;
        }
        let work = AssertUnwindSafe(self.repair(seq, slot))
            .catch_unwind()
            .await;
        match work {
            Ok(result) => {
                self.settle(seq, result);
                false
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                if self.config.panic_abandons_others {
                    self.poisoned.store(true, Ordering::Relaxed);
                }
                self.settle(seq, Err(format!("worker panicked: {message}")));
                true
            }
        }
    }

    /// Generate (holding a worker `slot`), then make the parity durable.
    async fn repair(&self, seq: u64, slot: SemaphorePermit<'_>) -> Result<(), String> {
        self.event(seq, RepairEventKind::RepairStarted);
        let systematic = lock_recovering(&self.book)
            .commits
            .get(&seq)
            .and_then(|e| e.systematic.clone())
            .ok_or_else(|| format!("systematic bytes of commit {seq} are gone"))?;
        match self.fault_for(seq) {
            GenerationFault::None | GenerationFault::CannotSchedule => {}
            GenerationFault::Slow(d) => clock::sleep(d).await,
            GenerationFault::Fail => return Err("repair generation failed".into()),
            GenerationFault::Panic => {
                // An injected panic unwinds like any other, but skips the
                // panic hook: sweeps inject thousands, and the hook would
                // print (and capture a backtrace for) each one.
                std::panic::resume_unwind(Box::new(format!(
                    "repair worker for commit {seq} panicked"
                )))
            }
        }
        let record = ParityRecord {
            commit_seq: seq,
            systematic_checksum: checksum(&systematic),
            shard_size: self.config.shard_size.max(1),
            systematic_len: systematic.len(),
            parity: xor_parity(&systematic, self.config.shard_size),
        };
        // The slot bounds generation; writing waits for the parity log.
        drop(slot);
        self.write_parity(record.to_frame()).await
    }

    /// Append `frame` to the parity log and sync it. Group commit: the
    /// worker that gets the log writes every record waiting by then as one
    /// batch with one fsync; the others find their fate decided when their
    /// turn comes.
    async fn write_parity(&self, frame: Frame) -> Result<(), String> {
        let ticket = {
            let mut queue = lock_recovering(&self.parity_queue);
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.waiting.push((ticket, frame));
            ticket
        };
        let mut parity = self.parity.lock().await;
        let (tickets, frames): (Vec<u64>, Vec<Frame>) = {
            let mut queue = lock_recovering(&self.parity_queue);
            if let Some(fate) = queue.written.remove(&ticket) {
                return fate;
            }
            std::mem::take(&mut queue.waiting).into_iter().unzip()
        };
        if !tickets.contains(&ticket) {
            // Taken by a writer that was stopped before it decided.
            return Err("parity record lost with the worker writing it".into());
        }
        let written = match parity.append_batch(&frames).await {
            Ok(_) => parity.sync().await,
            Err(e) => Err(e),
        };
        let fate = match written {
            Ok(()) => Ok(()),
            Err(e) => {
                // The records' fate is unknown: discard them so a later
                // sync can never be mistaken for their durability.
                let _ = parity.discard_unsynced().await;
                Err(format!("parity not durable: {e}"))
            }
        };
        let mut queue = lock_recovering(&self.parity_queue);
        for other in tickets.into_iter().filter(|t| *t != ticket) {
            queue.written.insert(other, fate.clone());
        }
        fate
    }
}
