//! `commit-service`: specs 01 and 02 end to end, checked by the reference
//! models (`durasim_models::check`).
//!
//! One server process runs the group-commit coordinator
//! ([`crate::systems::group_commit`]) over the WAL ([`crate::systems::wal`])
//! on its simulated disk; its init recovers the WAL, so every restart
//! re-runs recovery. Client processes talk to it over the simulated
//! network (two calls: read a page with its basis, commit a request) and
//! apply events by read-modify-write with the spec 02 retry loop
//! ([`crate::systems::backoff::RetryLoop`]): each write has a unique event
//! id, each attempt reads afresh and commits with the basis and the event
//! id, and the answers are classified as in
//! [`crate::systems::committed_write`] (conflict and "not applied" are
//! transient, a lost answer is transient but may have applied, and
//! `receipt-exists` after such an attempt means the write converged).
//!
//! Spec 03 runs behind the group commit: once a batch's fsync returned OK,
//! each of its commits gets a repair of its systematic bytes (its frame as
//! the WAL stores it) from the repair workers
//! ([`crate::systems::repair::RepairWorkers`]), whose parity log lives in
//! `repair/` on the server's disk. Every recovery opens the workers over
//! the commits the WAL recovered: commits whose parity is missing are
//! re-scheduled. Repair faults (slow, failing or panicking generation, a
//! failure to schedule) are buggified, so they fire in the fault phase
//! only.
//!
//! Workload: four clients write `size` events in bursts, each client
//! starting its next write on a common tick, so group commit batches
//! several commits under one fsync and applies spec 01's
//! first-committer-wins rule inside a batch (two clients write the same
//! page in each burst). Writes spread evenly instead would reach the
//! coordinator one at a time and leave nearly every batch a single commit.
//!
//! Phases: setup, `start_faults(server)`, a fault phase with the workload,
//! `heal`, a bounded wait for every client, a bounded wait for the repairs
//! to settle, quiescence, `final_crash`, and the last recovery read back.
//!
//! # History translation
//! - client calls → `Invoke` / `Complete` (`Ok(Committed)`, `Failed` —
//!   definite only when no attempt's outcome was unknown — never `Unknown`:
//!   the loop resolves unknown attempts);
//! - `RetryEvent` → `AttemptStarted` (with the backoff slept before it) /
//!   `AttemptEnded` (with what the client learnt: committed, rejected
//!   transient or permanent, or unknown when the answer was lost);
//! - `ChannelEvent` → `Permit*` (one channel id per coordinator
//!   generation, declared when the coordinator is built);
//! - `CommitEvent` → `BatchValidated` (the requests come from the server's
//!   own record of what it submitted under each permit) / `WalAppended` /
//!   `FsyncReturned` / `Published`; an append that failed is observed by a
//!   wrapper around the WAL;
//! - WAL recovery → `Recovered` with the log and the page state it
//!   implies. After a failed append or fsync the coordinator discards the
//!   unsynced bytes by rewriting the durable prefix of the log: that
//!   starts a new log epoch exactly like a recovery, so it is recorded as
//!   a `Recovered` of the log the rewrite left on disk (read back from the
//!   disk, not from the coordinator's memory);
//! - a server restart → `ServerCrash` (with `during_recovery` when the
//!   incarnation died inside recovery), recorded when the new incarnation
//!   starts; a coordinator that halts (its discard failed) is fail-stop:
//!   the server drops everything in memory and recovers again, recorded as
//!   a `ServerCrash` too;
//! - `RepairEvent` → `Repair` (per commit, numbered across the worker
//!   incarnations, see [`super::repair_history`]); the workers' states at
//!   quiescence → `RepairSettled`, a `Completed` one with its symbols read
//!   from the disk the final crash left (systematic bytes from the WAL,
//!   parity from the parity log);
//! - phases → `Phase` markers.
//!
//! Page values are byte strings; the models hold a `u64` per write, so a
//! write's value is the 64-bit digest of its payload (see
//! [`super::history_check::digest`]).
//!
//! Invariants checked: all that the history feeds — D1 (acknowledged and
//! previously recovered commits survive), D2/D3 (whole, never phantom
//! commits in the recovered log and page state), D4 (log order, permit
//! order), D5 (publish after fsync, acknowledgements backed by a
//! publication or by an earlier recovery that exposed the commit), D6 (every write ends, definite failures never applied,
//! nothing left in a channel), D7 (one application per event id), D8
//! (first committer wins), D9 (repair events in spec 03's order across
//! crashes and recoveries, nothing `Pending` at quiescence, every
//! `Completed` repair's durable parity recomputed from and regenerating
//! the durable systematic bytes), D10 (recovery idempotent), D11 (retry
//! window, curve, no retry after permanent rejections), D12 (channel
//! capacity), L1 (writes finish after heal).
//!
//! Not mapped: reads as operations (clients read only inside attempts, which the
//! models do not see as `Read` calls), clients as fault targets (the
//! fault scheduler crashes and pauses the server only; partitions and
//! message faults involve everyone).
//!
//! Receipt convergence: a write whose answer was lost while its batch's
//! fsync made it durable (the server crashed before publishing), and whose
//! retry is then told `receipt-exists` by the recovered server, completes
//! `Ok` with the commit seq recovery gave it — spec 02's convergence rule.
//! The history records exactly that; D5 accepts such an acknowledgement
//! because a recovery exposed the commit at that seq before it (and D1
//! then requires it to stay).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models as models;
use durasim_models::{
    AttemptRef, AttemptResult, BatchRequest, Call, EventKind, LogEntry, OkValue, Outcome,
    PageWrite, RejectionClass,
};
use durasim_sim::{clock, Disk, DiskConfig, Endpoint, Net, ProcessCtx, ProcessId, Sim, SimTime};

use super::history_check::{digest, findings, permit_event, Merger, Rank};
use super::repair_history::{push_repair_events, settled_records};
use super::rmw_client::{Msg, RmwProtocol};
use crate::harness::{RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::backoff::{AttemptOutcome, BackoffPolicy, RetryEvent, RetryLoop, WriteError};
use crate::systems::channel::{ChannelEvent, ReserveError};
use crate::systems::group_commit::{
    group_commit, BatchPhase, CommitClient, CommitEvent, CommitRequest, CommitResponse,
    CommittedState, CoordinatorBugs, GroupCommitConfig, PublishHook,
};
use crate::systems::record::{lock_recovering, Recorded, Recorder};
use crate::systems::repair::{
    read_parity_image, RepairConfig, RepairEvent, RepairState, RepairWorkers,
};
use crate::systems::wal::{CommitLog, Recovery, Wal, WalConfig, WalError};
use crate::systems::wal_format::{self, Frame};

/// The commit-service scenario.
pub struct CommitService;

/// Known bug (spec 01): the coordinator publishes a batch before its fsync.
pub const PUBLISH_BEFORE_FSYNC: &str = "publish-before-fsync";
/// Known bug (spec 01): the coordinator acknowledges a batch whose fsync
/// failed.
pub const ACK_FAILED_FSYNC: &str = "ack-failed-fsync";
/// Known bug (spec 01): recovery accepts a torn tail batch.
pub const ACCEPT_TORN_TAIL: &str = "recovery-accepts-torn-tail";
/// Known bug (spec 01): validation misses a conflict with an earlier
/// request of the same batch.
pub const IN_BATCH_CONFLICT_MISSED: &str = "in-batch-conflict-missed";

const CLIENTS: u32 = 4;
const PAGES: u32 = 3;
const WAL_DIR: &str = "wal";
/// Where the repair workers keep their parity log.
const REPAIR_DIR: &str = "repair";
/// Shard size of the parity code: a commit's frame is a few shards.
const SHARD_SIZE: usize = 64;
/// At quiescence every repair has settled within this (after heal no
/// repair fault fires, so this is a few parity syncs per commit).
const REPAIR_SETTLE_BOUND: Duration = Duration::from_secs(5);
const FAULT_PHASE: Duration = Duration::from_millis(1500);
/// Clients start their writes on multiples of this: 25 writes per client
/// (the default size) span the first second of the fault phase.
const BURST_TICK: Duration = Duration::from_millis(40);
/// L1: every write outstanding at heal finishes within this. The longest
/// wait is one backoff delay of a write that retried through the whole
/// fault phase (under 2 s with the default curve) plus a commit.
const HEAL_BOUND: Duration = Duration::from_secs(20);
/// The clients' protocol: a commit may wait for a group-commit batch and
/// its repair-log neighbours; values hold 32-byte events.
const PROTOCOL: RmwProtocol = RmwProtocol {
    read_timeout: Duration::from_millis(30),
    commit_timeout: Duration::from_millis(250),
    decode: decode_events,
    encode: encode_events,
};

/// Server-side records the systems do not make themselves.
#[derive(Debug, Clone)]
enum ServerRec {
    /// The server lost its memory (restart, or a halted coordinator).
    Crash { during_recovery: bool },
    /// Recovery (or a discard of unsynced bytes) exposed this log.
    Recovered {
        log: Vec<LogEntry>,
        state: Vec<models::PageVersion>,
        corruption_from: Option<u64>,
    },
    /// Coordinator generation `generation` was built with a channel.
    Declared { generation: u32, capacity: u32 },
    /// The WAL append of `batch` (of `generation`) failed.
    AppendFailed { generation: u32, batch: u64 },
}

/// Client-side records.
#[derive(Debug, Clone)]
enum ClientRec {
    Invoke { op: u64, process: ProcessId },
    Complete { op: u64, outcome: Outcome },
}

/// What the server submitted under one permit.
#[derive(Debug, Clone)]
struct Submitted {
    origin: AttemptRef,
    request: CommitRequest,
}

/// One coordinator's recorders.
struct Generation {
    id: u32,
    commits: Recorder<CommitEvent>,
    channel: Recorder<ChannelEvent>,
}

/// Everything recorded, shared by the processes and the supervisor.
#[derive(Default)]
struct Journal {
    phases: Recorder<EventKind>,
    server: Recorder<ServerRec>,
    clients: Recorder<ClientRec>,
    retries: Recorder<RetryEvent>,
    results: Mutex<BTreeMap<(u64, u32), AttemptResult>>,
    generations: Mutex<Vec<Generation>>,
    submitted: Mutex<BTreeMap<(u32, u64), Submitted>>,
    /// The txn ids each batch handed to the WAL, in order: its valid
    /// requests (a duplicated message makes two identical requests, of
    /// which validation keeps one; this says which).
    appended: Mutex<BTreeMap<(u32, u64), Vec<u64>>>,
    recovering: AtomicBool,
    clients_done: AtomicU64,
    /// One recorder per opening of the repair workers, in order.
    repairs: Mutex<Vec<Recorder<RepairEvent>>>,
    /// The repair workers of the serving generation.
    current_repair: Mutex<Option<RepairWorkers>>,
    /// Successful openings of the repair workers (the end of a recovery).
    repairs_opened: AtomicU64,
    /// The workers' repair states at quiescence.
    settled: Mutex<BTreeMap<u64, RepairState>>,
}

/// The server disk's sector, and the WAL's block: 512-byte sectors (as on
/// 512e drives) keep a batch of a few small commits to one sector, so the
/// log stays small and every recovery rewrite cheap.
const SECTOR: u64 = 512;

/// The server's known bugs switched on for a run (none by default).
#[derive(Debug, Clone, Copy, Default)]
struct ServerBugs {
    coordinator: CoordinatorBugs,
    accept_torn_tail: bool,
}

impl ServerBugs {
    fn from_params(params: &RunParams) -> ServerBugs {
        ServerBugs {
            coordinator: CoordinatorBugs {
                publish_before_fsync: params.bug(PUBLISH_BEFORE_FSYNC),
                ack_failed_fsync: params.bug(ACK_FAILED_FSYNC),
                ignore_in_batch_conflicts: params.bug(IN_BATCH_CONFLICT_MISSED),
            },
            accept_torn_tail: params.bug(ACCEPT_TORN_TAIL),
        }
    }
}

fn wal_config(bugs: ServerBugs) -> WalConfig {
    WalConfig {
        block_size: SECTOR,
        bug_accept_torn_tail: bugs.accept_torn_tail,
        ..WalConfig::new(WAL_DIR)
    }
}

impl Scenario for CommitService {
    fn name(&self) -> &'static str {
        "commit-service"
    }

    fn summary(&self) -> &'static str {
        "group commit over the WAL + repair workers + retrying read-modify-write clients; full model check (D1-D12, L1)"
    }

    fn spec(&self) -> &'static str {
        "01, 02, 03, 07"
    }

    fn default_size(&self) -> u32 {
        100
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(120)
    }

    fn disk(&self) -> DiskConfig {
        DiskConfig {
            sector_size: SECTOR as u32,
            ..DiskConfig::default()
        }
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        Box::pin(run(sim, params))
    }
}

async fn run(sim: Sim, params: &RunParams) -> ScenarioReport {
    let size = params.size;
    let bugs = ServerBugs::from_params(params);
    let journal = Arc::new(Journal::default());
    let net: Net<Msg> = Net::new();
    let policy = BackoffPolicy::default();
    journal
        .phases
        .record(EventKind::BackoffPolicyDeclared(models::BackoffPolicy {
            base_delay: clock::duration_nanos(policy.base_delay),
            max_delay: clock::duration_nanos(policy.max_delay),
            jitter: policy.jitter,
            retry_window: clock::duration_nanos(policy.retry_window),
        }));

    let (j, n) = (journal.clone(), net.clone());
    let server = sim.spawn_process("server", move |ctx| serve(ctx, n.clone(), j.clone(), bugs));
    let per_client = size.div_ceil(CLIENTS).max(1);
    for c in 0..CLIENTS {
        let first = u64::from(c * per_client) + 1;
        let last = u64::from(((c + 1) * per_client).min(size));
        let (j, n) = (journal.clone(), net.clone());
        sim.spawn_process("client", move |ctx| {
            client(ctx, n.clone(), j.clone(), server, first..=last, policy)
        });
    }

    sim.start_faults(&[server]);
    journal
        .phases
        .record(EventKind::Phase(models::Phase::Fault));
    sim.sleep(FAULT_PHASE).await;
    sim.heal();
    journal.phases.record(EventKind::Phase(models::Phase::Heal {
        bound: clock::duration_nanos(HEAL_BOUND),
        resolves_unknown: true,
    }));
    sim.wait_until(
        HEAL_BOUND + Duration::from_secs(1),
        Duration::from_millis(10),
        || journal.clients_done.load(Ordering::Relaxed) >= u64::from(CLIENTS),
    )
    .await;
    sim.sleep(Duration::from_millis(5)).await;
    sim.wait_until(REPAIR_SETTLE_BOUND, Duration::from_millis(5), || {
        repairs_pending(&journal) == Some(0)
    })
    .await;
    journal
        .phases
        .record(EventKind::Phase(models::Phase::Quiescence));
    let states = lock_recovering(&journal.current_repair)
        .as_ref()
        .map(RepairWorkers::states)
        .unwrap_or_default();
    *lock_recovering(&journal.settled) = states;
    journal
        .phases
        .record(EventKind::Phase(models::Phase::FinalCrash));
    let opened = journal.repairs_opened.load(Ordering::Relaxed);
    sim.final_crash(&[server]);
    let crashed = sim.now();
    // The final recovery: the WAL, then the repair workers.
    sim.wait_until(Duration::from_secs(2), Duration::from_millis(2), || {
        recoveries_after(&journal, crashed) > 0
            && journal.repairs_opened.load(Ordering::Relaxed) != opened
    })
    .await;
    let image = sim.disk_files(server);
    let history = history(&journal, server, &image);
    ScenarioReport {
        findings: findings(&history),
        operations: history.operation_count() as u64,
    }
}

/// Repairs still pending in the serving generation (`None`: no workers).
fn repairs_pending(journal: &Journal) -> Option<usize> {
    lock_recovering(&journal.current_repair)
        .as_ref()
        .map(RepairWorkers::pending_background_repair_count)
}

fn recoveries_after(journal: &Journal, time: SimTime) -> usize {
    journal
        .server
        .snapshot()
        .iter()
        .filter(|r| r.time >= time && matches!(r.event, ServerRec::Recovered { .. }))
        .count()
}

// ----- server ---------------------------------------------------------------

/// The server's init: runs on every (re)start.
async fn serve(ctx: ProcessCtx, net: Net<Msg>, journal: Arc<Journal>, bugs: ServerBugs) {
    if ctx.incarnation() > 1 {
        let during_recovery = journal.recovering.load(Ordering::Relaxed);
        journal.server.record(ServerRec::Crash { during_recovery });
    }
    *lock_recovering(&journal.current_repair) = None;
    let endpoint = Arc::new(net.endpoint(&ctx));
    let disk = ctx.disk();
    loop {
        let Some((wal, recovery)) = recover(&disk, &journal, bugs).await else {
            // Recovery reported corruption: halt loudly (recorded), serve
            // nothing.
            std::future::pending::<()>().await;
            return;
        };
        let Some(repair) = recover_repairs(&disk, &journal, &recovery).await else {
            std::future::pending::<()>().await;
            return;
        };
        serve_generation(&disk, &endpoint, &journal, wal, recovery, bugs, &repair).await;
        // The coordinator halted: fail-stop, memory is gone (the repair
        // workers stop as a crash would stop them); recover again.
        repair.stop_all();
        *lock_recovering(&journal.current_repair) = None;
        journal.server.record(ServerRec::Crash {
            during_recovery: false,
        });
    }
}

/// Open the repair workers over the commits WAL recovery found (their
/// systematic bytes: each commit's frame as the WAL stores it), retrying
/// I/O errors; they re-schedule every commit whose parity is missing.
/// `None` when the parity log reports corruption (halt, loudly).
async fn recover_repairs(
    disk: &Disk,
    journal: &Journal,
    recovery: &Recovery,
) -> Option<RepairWorkers> {
    journal.recovering.store(true, Ordering::Relaxed);
    let opened = loop {
        let recorder = Recorder::new();
        lock_recovering(&journal.repairs).push(recorder.clone());
        let config = RepairConfig {
            dir: REPAIR_DIR.into(),
            shard_size: SHARD_SIZE,
            block_size: SECTOR,
            recorder,
            ..RepairConfig::default()
        };
        let durable = recovery
            .frames
            .iter()
            .map(|(_, f)| (f.commit_seq, wal_format::frame_bytes(f)));
        match RepairWorkers::open(disk, config, durable).await {
            Ok((repair, _)) => break Some(repair),
            Err(WalError::Corrupt(_)) => break None,
            Err(_) => clock::sleep(Duration::from_millis(5)).await,
        }
    };
    journal.recovering.store(false, Ordering::Relaxed);
    if let Some(repair) = &opened {
        *lock_recovering(&journal.current_repair) = Some(repair.clone());
        journal.repairs_opened.fetch_add(1, Ordering::Relaxed);
    }
    opened
}

/// Recover the WAL, retrying I/O errors; record what it exposes.
async fn recover(disk: &Disk, journal: &Journal, bugs: ServerBugs) -> Option<(Wal, Recovery)> {
    journal.recovering.store(true, Ordering::Relaxed);
    let opened = loop {
        match Wal::open(disk, wal_config(bugs), None).await {
            Ok(opened) => break Some(opened),
            Err(WalError::Corrupt(_)) => break None,
            Err(_) => clock::sleep(Duration::from_millis(5)).await,
        }
    };
    journal.recovering.store(false, Ordering::Relaxed);
    match opened {
        Some((wal, recovery)) => {
            let frames: Vec<Frame> = recovery.frames.iter().map(|(_, f)| f.clone()).collect();
            let state = CommittedState::from_recovery(&recovery);
            journal.server.record(recovered(&frames, &state, None));
            Some((wal, recovery))
        }
        None => {
            // Report what precedes the damage, and where the damage starts.
            let bytes = disk
                .current_bytes(&wal_config(bugs).log_path())
                .unwrap_or_default();
            let scan = wal_format::scan(&bytes, SECTOR, true);
            let frames: Vec<Frame> = scan.frames().map(|(_, f)| f.clone()).collect();
            let from = frames.last().map_or(1, |f| f.commit_seq + 1);
            let recovery = Recovery {
                frames: scan.frames().cloned().collect(),
                torn_tail_bytes: 0,
            };
            let state = CommittedState::from_recovery(&recovery);
            journal
                .server
                .record(recovered(&frames, &state, Some(from)));
            None
        }
    }
}

fn recovered(frames: &[Frame], state: &CommittedState, corruption_from: Option<u64>) -> ServerRec {
    let log = frames
        .iter()
        .map(|f| LogEntry {
            seq: f.commit_seq,
            txn_id: f.txn_id,
            event_id: f.event_id,
            writes: page_writes(&f.pages, &f.payload),
        })
        .collect();
    let state = state
        .pages
        .iter()
        .filter_map(|(&page, versions)| {
            versions.last().map(|v| models::PageVersion {
                page,
                commit_seq: v.commit_seq,
                value: digest(&v.value),
            })
        })
        .collect();
    ServerRec::Recovered {
        log,
        state,
        corruption_from,
    }
}

fn page_writes(pages: &[u32], payload: &[u8]) -> Vec<PageWrite> {
    let value = digest(payload);
    pages
        .iter()
        .map(|&page| PageWrite { page, value })
        .collect()
}

/// The WAL as the coordinator sees it, observed: a failed append, and the
/// log a discard leaves on disk.
struct ObservedLog {
    wal: Wal,
    disk: Disk,
    generation: u32,
    commits: Recorder<CommitEvent>,
    journal: Arc<Journal>,
}

impl ObservedLog {
    fn current_batch(&self) -> u64 {
        self.commits
            .find_last(|e| match e {
                CommitEvent::BatchFormed { batch, .. } => Some(*batch),
                _ => None,
            })
            .unwrap_or(0)
    }
}

impl CommitLog for ObservedLog {
    async fn append_batch(&mut self, frames: &[Frame]) -> Result<Vec<u64>, WalError> {
        let batch = self.current_batch();
        lock_recovering(&self.journal.appended).insert(
            (self.generation, batch),
            frames.iter().map(|f| f.txn_id).collect(),
        );
        let result = self.wal.append_batch(frames).await;
        if result.is_err() {
            self.journal.server.record(ServerRec::AppendFailed {
                generation: self.generation,
                batch,
            });
        }
        result
    }

    async fn sync(&mut self) -> Result<(), WalError> {
        self.wal.sync().await
    }

    async fn discard_unsynced(&mut self) -> Result<(), WalError> {
        self.wal.discard_unsynced().await?;
        // The rewrite made the log on disk durable: read it back.
        let bytes = self
            .disk
            .current_bytes(&self.wal.config().log_path())
            .unwrap_or_default();
        let scan = wal_format::scan(&bytes, self.wal.config().block_size, true);
        let recovery = Recovery {
            frames: scan.frames().cloned().collect(),
            torn_tail_bytes: 0,
        };
        let frames: Vec<Frame> = recovery.frames.iter().map(|(_, f)| f.clone()).collect();
        let state = CommittedState::from_recovery(&recovery);
        self.journal.server.record(recovered(&frames, &state, None));
        Ok(())
    }
}

/// One coordinator generation: build it, serve until it halts.
async fn serve_generation(
    disk: &Disk,
    endpoint: &Arc<Endpoint<Msg>>,
    journal: &Arc<Journal>,
    wal: Wal,
    recovery: Recovery,
    bugs: ServerBugs,
    repair: &RepairWorkers,
) {
    let commits = Recorder::new();
    let channel = Recorder::new();
    let generation = {
        let mut generations = lock_recovering(&journal.generations);
        let id = generations.len() as u32 + 1;
        generations.push(Generation {
            id,
            commits: commits.clone(),
            channel: channel.clone(),
        });
        id
    };
    // Spec 03: once a batch is durable, each of its commits gets a repair
    // of its systematic bytes (its frame as the WAL stores it).
    let protect = repair.clone();
    let config = GroupCommitConfig {
        recorder: commits.clone(),
        channel_recorder: Some(channel),
        bugs: bugs.coordinator,
        on_published: Some(PublishHook(Arc::new(move |frame: &Frame| {
            protect.protect(frame.commit_seq, wal_format::frame_bytes(frame));
        }))),
        ..GroupCommitConfig::default()
    };
    journal.server.record(ServerRec::Declared {
        generation,
        capacity: config.channel_capacity as u32,
    });
    let log = ObservedLog {
        wal,
        disk: disk.clone(),
        generation,
        commits,
        journal: journal.clone(),
    };
    let gc = group_commit(log, &recovery, config);
    let mut coordinator = durasim_sim::task::spawn(gc.coordinator.run());
    let mut handlers = Vec::new();
    loop {
        let next = {
            let recv = std::pin::pin!(endpoint.recv());
            match futures_util::future::select(&mut coordinator, recv).await {
                futures_util::future::Either::Left(_) => None,
                futures_util::future::Either::Right(((from, msg), _)) => Some((from, msg)),
            }
        };
        let Some((from, msg)) = next else { break };
        if let Msg::Read { rid, page } = msg {
            // A read never waits: answer it here rather than in a task.
            answer_read(&gc.client, endpoint, from, rid, page);
            continue;
        }
        handlers.retain(|h: &madsim::task::JoinHandle<()>| !h.is_finished());
        let (client, endpoint, journal) = (gc.client.clone(), endpoint.clone(), journal.clone());
        handlers.push(durasim_sim::task::spawn(async move {
            handle(client, &endpoint, &journal, generation, from, msg).await
        }));
    }
    for h in &handlers {
        h.abort();
    }
    drop(handlers);
    drop(gc.client);
    drop(gc.handle);
}

/// Answer a read with the page's committed value and the seq it was read at.
fn answer_read(
    client: &CommitClient,
    endpoint: &Endpoint<Msg>,
    from: ProcessId,
    rid: u64,
    page: u32,
) {
    let (basis, version) = client.read_snapshot(page);
    endpoint.send(
        from,
        Msg::ReadOk {
            rid,
            basis,
            value: version.map(|v| v.value),
        },
    );
}

/// Answer one message.
async fn handle(
    client: CommitClient,
    endpoint: &Endpoint<Msg>,
    journal: &Journal,
    generation: u32,
    from: ProcessId,
    msg: Msg,
) {
    match msg {
        Msg::Read { rid, page } => answer_read(&client, endpoint, from, rid, page),
        Msg::Commit {
            rid,
            origin,
            request,
        } => {
            let response = match client.reserve().await {
                Ok(permit) => {
                    lock_recovering(&journal.submitted).insert(
                        (generation, permit.seq()),
                        Submitted {
                            origin,
                            request: request.clone(),
                        },
                    );
                    permit.send(request.clone()).response().await
                }
                Err(ReserveError::Closed) => CommitResponse::Failed {
                    reason: "coordinator is shut down".into(),
                },
            };
            let applied = match &response {
                CommitResponse::Rejected { .. } => {
                    request.event_id.and_then(|e| client.applied_seq(e))
                }
                _ => None,
            };
            endpoint.send(
                from,
                Msg::Answer {
                    rid,
                    response,
                    applied,
                },
            );
        }
        Msg::ReadOk { .. } | Msg::Answer { .. } => {}
    }
}

// ----- clients ---------------------------------------------------------------

/// A client: applies events `ops` one at a time (op id = event id).
async fn client(
    ctx: ProcessCtx,
    net: Net<Msg>,
    journal: Arc<Journal>,
    server: ProcessId,
    ops: std::ops::RangeInclusive<u64>,
    policy: BackoffPolicy,
) {
    let endpoint = net.endpoint(&ctx);
    let retry = RetryLoop::new(policy).recording_into(journal.retries.clone());
    let rid = AtomicU64::new(0);
    for op in ops {
        // Writes start in bursts: every client waits for the next common
        // tick, so the server gets several commits at once and group commit
        // forms real batches (one fsync for several commits, and spec 01's
        // first-committer-wins rule inside a batch). Each burst has two
        // clients writing the same page (client 0's and client 3's ops map
        // to the same page while they keep step).
        let into = clock::now().as_nanos() % clock::duration_nanos(BURST_TICK);
        clock::sleep(BURST_TICK - Duration::from_nanos(into)).await;
        let page = ((op * 7) % u64::from(PAGES)) as u32;
        journal.clients.record(ClientRec::Invoke {
            op,
            process: ctx.id(),
        });
        let (result, maybe_applied) = PROTOCOL
            .write(&retry, &endpoint, server, &rid, op, page, &journal.results)
            .await;
        let outcome = match result {
            Ok(commit_seq) => Outcome::Ok(OkValue::Committed { commit_seq }),
            Err(WriteError::Convergence(e)) => Outcome::Failed {
                error: format!("CommitConvergenceError: {e}").into(),
                definite: !maybe_applied,
            },
            Err(WriteError::Permanent(e)) => Outcome::Failed {
                error: e.reason.into(),
                definite: false,
            },
        };
        journal.clients.record(ClientRec::Complete { op, outcome });
    }
    journal.clients_done.fetch_add(1, Ordering::Relaxed);
}

/// Bytes of one event in a page's value: its id and a body derived from
/// it, like a small row. Values of a few hundred bytes make batches span
/// several sectors, so a power loss can tear a batch between its header
/// and its frames, which is what recovery must withstand.
const EVENT_BYTES: usize = 32;

/// A page's value: its events, in order.
fn encode_events(events: &[u64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(events.len() * EVENT_BYTES);
    for &event in events {
        let id = event.to_le_bytes();
        for _ in 0..EVENT_BYTES / 8 {
            bytes.extend_from_slice(&id);
        }
    }
    bytes
}

/// The events of a value written by [`encode_events`].
fn decode_events(value: Option<&[u8]>) -> Vec<u64> {
    value
        .unwrap_or_default()
        .chunks_exact(EVENT_BYTES)
        .filter_map(|c| c[..8].try_into().ok().map(u64::from_le_bytes))
        .collect()
}

// ----- history ---------------------------------------------------------------

/// The run's history; `image` is the server's disk after the final
/// recovery (the repair symbols are read from it).
fn history(
    journal: &Journal,
    server: ProcessId,
    image: &BTreeMap<String, Vec<u8>>,
) -> models::History {
    let mut merger = Merger::with_capacity(recorded_count(journal));
    journal.phases.with_events(|phases| {
        for r in phases {
            merger.push(r.time, Rank::Harness, r.event.clone());
            if matches!(r.event, EventKind::Phase(models::Phase::Quiescence)) {
                // Each commit's repair state at quiescence, right after the
                // marker.
                for settled in settled_repairs(journal, image) {
                    merger.push(r.time, Rank::Harness, settled);
                }
            }
        }
    });
    push_repair_events(&lock_recovering(&journal.repairs), &mut merger);
    journal.clients.with_events(|clients| {
        for r in clients {
            match r.event {
                ClientRec::Invoke { op, process } => merger.push(
                    r.time,
                    Rank::Invoke,
                    EventKind::Invoke {
                        op,
                        process,
                        call: Call::Write { event_id: Some(op) },
                    },
                ),
                ClientRec::Complete { op, ref outcome } => merger.push(
                    r.time,
                    Rank::Complete,
                    EventKind::Complete {
                        op,
                        outcome: outcome.clone(),
                    },
                ),
            }
        }
    });
    attempts(journal, &mut merger);
    let submitted = lock_recovering(&journal.submitted);
    let appended = lock_recovering(&journal.appended);
    let generations = lock_recovering(&journal.generations);
    let numbers = BatchNumbers::new(&generations);
    let mut append_failed: BTreeMap<(u32, u64), SimTime> = BTreeMap::new();
    journal.server.with_events(|records| {
        for r in records {
            let (rank, kind) = match r.event {
                ServerRec::Crash { during_recovery } => (
                    Rank::Crash,
                    EventKind::ServerCrash {
                        process: server,
                        during_recovery,
                    },
                ),
                ServerRec::Recovered {
                    ref log,
                    ref state,
                    corruption_from,
                } => (
                    Rank::Server,
                    EventKind::Recovered(Box::new(models::Recovery {
                        process: server,
                        log: log.clone(),
                        state: Some(state.clone()),
                        corruption_reported_from: corruption_from,
                    })),
                ),
                ServerRec::Declared {
                    generation,
                    capacity,
                } => (
                    Rank::Server,
                    EventKind::ChannelDeclared {
                        channel: generation,
                        capacity,
                    },
                ),
                ServerRec::AppendFailed { generation, batch } => {
                    // Part of its batch's story: placed with the
                    // coordinator's records (see `batches`).
                    append_failed.insert((generation, batch), r.time);
                    continue;
                }
            };
            merger.push(r.time, rank, kind);
        }
    });
    for generation in generations.iter() {
        generation.commits.with_events(|events| {
            batches(
                generation.id,
                events,
                &numbers,
                &submitted,
                &appended,
                &append_failed,
                &mut merger,
            )
        });
        permits(generation, &mut merger);
    }
    merger.into_history()
}

/// How many records the journal holds: room enough for the history.
fn recorded_count(journal: &Journal) -> usize {
    let repairs: usize = lock_recovering(&journal.repairs)
        .iter()
        .map(Recorder::len)
        .sum();
    let generations: usize = lock_recovering(&journal.generations)
        .iter()
        .map(|g| g.commits.len() + g.channel.len())
        .sum();
    journal.phases.len()
        + lock_recovering(&journal.settled).len()
        + repairs
        + journal.clients.len()
        + journal.retries.len()
        + journal.server.len()
        + generations
}

/// `RepairSettled` records: the states at quiescence, with the symbols of
/// completed repairs as the final crash left them on disk.
fn settled_repairs(journal: &Journal, image: &BTreeMap<String, Vec<u8>>) -> Vec<EventKind> {
    let wal = image
        .get(&WalConfig::new(WAL_DIR).log_path())
        .map_or(&[][..], Vec::as_slice);
    let systematic: BTreeMap<u64, Vec<u8>> = wal_format::scan(wal, SECTOR, true)
        .frames()
        .map(|(_, f)| (f.commit_seq, wal_format::frame_bytes(f)))
        .collect();
    let parity = read_parity_image(image, REPAIR_DIR, SECTOR);
    settled_records(&lock_recovering(&journal.settled), &systematic, &parity)
}

fn attempts(journal: &Journal, merger: &mut Merger) {
    let results = lock_recovering(&journal.results);
    let mut slept: BTreeMap<u64, Duration> = BTreeMap::new();
    journal.retries.with_events(|retries| {
        for r in retries {
            match r.event {
                RetryEvent::AttemptStarted { write_id, attempt } => {
                    let delay = if attempt <= 1 {
                        Duration::ZERO
                    } else {
                        slept.remove(&write_id).unwrap_or_default()
                    };
                    merger.push(
                        r.time,
                        Rank::Attempt,
                        EventKind::AttemptStarted {
                            op: write_id,
                            attempt,
                            delay_before: clock::duration_nanos(delay),
                        },
                    );
                }
                RetryEvent::AttemptEnded {
                    write_id,
                    attempt,
                    ref outcome,
                } => {
                    // What the client learnt, as the attempt recorded it;
                    // the loop's own classification when missing (it cannot
                    // tell a lost answer from a rejection, so never
                    // `Committed`).
                    let result = match results.get(&(write_id, attempt)) {
                        Some(result) => result.clone(),
                        None => match outcome.clone() {
                            AttemptOutcome::Applied => AttemptResult::Unknown,
                            AttemptOutcome::Transient(reason) => AttemptResult::Rejected {
                                class: RejectionClass::Transient,
                                reason: reason.into(),
                            },
                            AttemptOutcome::Permanent(reason) => AttemptResult::Rejected {
                                class: RejectionClass::Permanent,
                                reason: reason.into(),
                            },
                        },
                    };
                    merger.push(
                        r.time,
                        Rank::Attempt,
                        EventKind::AttemptEnded {
                            op: write_id,
                            attempt,
                            result,
                        },
                    );
                }
                RetryEvent::Backoff {
                    write_id, delay, ..
                } => {
                    slept.insert(write_id, delay);
                }
                RetryEvent::Terminal(_) => {}
            }
        }
    });
}

/// Batches are numbered 1, 2, 3, … per coordinator generation; the
/// history numbers them 1, 2, 3, … across generations, so a violation
/// names a batch a reader can find.
struct BatchNumbers {
    /// Batches formed by the generations before each one, by generation.
    before: BTreeMap<u32, u64>,
}

impl BatchNumbers {
    fn new(generations: &[Generation]) -> BatchNumbers {
        let mut before = BTreeMap::new();
        let mut total = 0;
        for generation in generations {
            before.insert(generation.id, total);
            total += generation
                .commits
                .find_last(|e| match e {
                    CommitEvent::BatchFormed { batch, .. } => Some(*batch),
                    _ => None,
                })
                .unwrap_or(0);
        }
        BatchNumbers { before }
    }

    fn id(&self, generation: u32, batch: u64) -> u64 {
        self.before.get(&generation).copied().unwrap_or(0) + batch
    }
}

/// Coordinator generation `generation`'s batches, from its recorded
/// `CommitEvent`s (`events`), the server's record of what it submitted
/// under each permit, and the times of failed appends (a failed append
/// follows its batch's validation in the coordinator's own order, even
/// when a crash makes both one instant).
fn batches(
    generation: u32,
    events: &[Recorded<CommitEvent>],
    numbers: &BatchNumbers,
    submitted: &BTreeMap<(u32, u64), Submitted>,
    appended: &BTreeMap<(u32, u64), Vec<u64>>,
    append_failed: &BTreeMap<(u32, u64), SimTime>,
    merger: &mut Merger,
) {
    // First pass: each batch's permits, rejections (in validation order)
    // and published seqs.
    let mut formed: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut rejected: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    let mut published: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for r in events {
        match &r.event {
            CommitEvent::BatchFormed { batch, requests } => {
                formed.insert(*batch, requests.iter().map(|(permit, _)| *permit).collect());
            }
            CommitEvent::Conflict {
                batch,
                txn_id,
                reason,
            } => rejected
                .entry(*batch)
                .or_default()
                .push((*txn_id, format!("conflict: {reason:?}"))),
            CommitEvent::Rejected {
                batch,
                txn_id,
                reason,
            } => rejected
                .entry(*batch)
                .or_default()
                .push((*txn_id, reason.name().to_string())),
            CommitEvent::Published {
                batch, commit_seq, ..
            } => published.entry(*batch).or_default().push(*commit_seq),
            _ => {}
        }
    }
    let mut published_done = std::collections::BTreeSet::new();
    for r in events {
        let kind = match r.event {
            CommitEvent::Phase {
                batch,
                phase: BatchPhase::Validate,
            } => {
                let permits = formed.get(&batch).map_or(&[][..], Vec::as_slice);
                let valid = appended
                    .get(&(generation, batch))
                    .map_or(&[][..], Vec::as_slice);
                let mut next_valid = valid.iter().peekable();
                let mut rejections = rejected.get(&batch).map_or(&[][..], Vec::as_slice).iter();
                let requests = permits
                    .iter()
                    .map(|permit| {
                        let sub = submitted.get(&(generation, *permit));
                        let txn_id = sub.map_or(0, |s| s.request.txn_id);
                        // The valid requests are the WAL's frames in order;
                        // the others were rejected, in validation order.
                        let verdict = if next_valid.peek() == Some(&&txn_id) {
                            next_valid.next();
                            models::Verdict::Valid
                        } else {
                            let reason = rejections
                                .next()
                                .map_or_else(|| "rejected".to_string(), |(_, r)| r.clone());
                            models::Verdict::Conflict { reason }
                        };
                        BatchRequest {
                            origin: sub.map(|s| s.origin),
                            txn_id,
                            event_id: sub.and_then(|s| s.request.event_id),
                            snapshot_seq: sub.map_or(0, |s| s.request.snapshot_seq),
                            writes: sub.map_or_else(Vec::new, |s| {
                                page_writes(&s.request.write_set_pages, &s.request.payload)
                            }),
                            verdict,
                        }
                    })
                    .collect();
                EventKind::BatchValidated {
                    batch: numbers.id(generation, batch),
                    requests,
                }
            }
            CommitEvent::Phase {
                batch,
                phase: BatchPhase::Append,
            } => match append_failed.get(&(generation, batch)) {
                Some(&failed_at) => {
                    let kind = EventKind::WalAppended {
                        batch: numbers.id(generation, batch),
                        ok: false,
                    };
                    merger.push(failed_at, Rank::Coordinator, kind);
                    continue;
                }
                None => continue,
            },
            CommitEvent::Appended { batch, .. } => EventKind::WalAppended {
                batch: numbers.id(generation, batch),
                ok: true,
            },
            CommitEvent::Fsync { batch, ok } => EventKind::FsyncReturned {
                batch: numbers.id(generation, batch),
                ok,
            },
            CommitEvent::Published { batch, .. } if published_done.insert(batch) => {
                EventKind::Published {
                    batch: numbers.id(generation, batch),
                    // Published once per batch (`published_done`).
                    commit_seqs: published.remove(&batch).unwrap_or_default(),
                }
            }
            _ => continue,
        };
        merger.push(r.time, Rank::Coordinator, kind);
    }
}

/// A coordinator generation's channel (channel id = generation).
fn permits(generation: &Generation, merger: &mut Merger) {
    let channel = generation.id;
    generation.channel.with_events(|events| {
        for r in events {
            if let Some(kind) = permit_event(channel, &r.event) {
                merger.push(r.time, Rank::Channel, kind);
            }
        }
    });
}
