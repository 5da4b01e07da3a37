//! `queued-writer`: spec 04's queued (write-behind) writer between
//! producers and a faulty backend, checked by the reference models
//! (`durasim_models::check`).
//!
//! One process holds the writer and four producers. Each producer appends
//! messages (mostly to its own stream, sometimes to another of the three,
//! so batches hold runs to coalesce and runs to keep apart), flushes every
//! few messages, and the last incarnation shuts the writer down once all
//! `size` messages were offered. The writer's setup is drawn per seed:
//! overflow policy (Block, DropOldest, Fail), capacity 1–6, batch window
//! 0–4 ms, `Required` or `BestEffort`. The backend is a
//! [`MemoryBackend`] that outlives the process; in the fault phase it is
//! slow, busy, down for a while, loses answers of applied calls and
//! rejects calls for good, and the writer task crashes
//! ([`WRITER_CRASH`](crate::systems::queued_writer::WRITER_CRASH)); the
//! scheduler crashes, pauses and skews the process (a process crash loses
//! the queue: write-behind is in memory).
//!
//! # History translation
//! - a message is an operation: `Invoke` (`Write`, event id = message id)
//!   when a producer offers it; `Complete` as the caller learns its end —
//!   the settlement handler's landing (`Ok(Committed)` at its backend
//!   position), terminal failure (`Failed`, definite unless it may have
//!   landed) or drop (`Failed`, definite), or the enqueue's refusal
//!   (`Failed`, definite). When the process restarts, every operation of
//!   the dead incarnation still open ends `Unknown(CallerCrashed)`, after a
//!   `ServerCrash`;
//! - writer events → `QueueDeclared` (a new queue per incarnation),
//!   `QueueEnqueued`, `QueueSenderBlocked`, `QueueEnqueueFailed`,
//!   `QueueDroppedOldest`, `QueueDropReported`, `QueueDequeued`; each
//!   attempt of a backend call → `AttemptStarted` / `AttemptEnded` for
//!   every message in it (`Committed` at its position, `receipt-exists` as
//!   a permanent rejection when an earlier attempt had applied it,
//!   transient and permanent errors as rejections, an attempt cut by a
//!   writer crash as `Unknown`); the writer's backoff policy →
//!   `BackoffPolicyDeclared`;
//! - each backend call that applied messages → one batch:
//!   `BatchValidated` (one request per message: txn and event id = the
//!   message id, snapshot = its position − 1 (appends are blind), its
//!   write = **the stream and payload digest its producer submitted**),
//!   `WalAppended`, `FsyncReturned`, `Published` at the positions;
//! - after quiescence the backend's log is read back as a `Recovered`
//!   log: each entry's write is the stream the message **actually** went
//!   to. A message on the wrong stream is "its commit with other data"
//!   (D3).
//!
//! Checked by the models: D6 (every message ends: landed, failed loudly,
//! dropped and reported, refused; nothing outstanding at quiescence; a
//! definite failure never landed), D7 (no message applied twice), D1/D3/D4
//! (the backend holds every landed message, as submitted, at its
//! position), D5 (a landing is reported only after the backend applied
//! it), D11 (retries on spec 02's curve, inside the window, none after a
//! permanent error), D12 (queue length ≤ capacity, overflow reactions only
//! when full and as the policy says, every drop reported), L1 (messages
//! outstanding at heal settle within the bound).
//!
//! Checked here, beyond the models: per stream, the backend's messages are
//! in enqueue order (D4); a `Required` writer's terminal failures each
//! reach a flush or the shutdown of their incarnation, and nothing else
//! does (D6: never swallowed, never invented).
//!
//! Not mapped: health counters (the spec tests check them), the
//! coordinator's fan-out (likewise), how long a blocked sender waited.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models as models;
use durasim_models::{
    AttemptRef, AttemptResult, BatchRequest, Call, EventKind, LogEntry, OkValue, Outcome,
    OverflowPolicy, PageWrite, Recovery, RejectionClass, UnknownReason, Verdict,
};
use durasim_sim::{choose_between, clock, ProcessCtx, ProcessId, Sim, Site};

use super::history_check::{digest, findings, Merger, Rank};
use crate::harness::{Finding, RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::backoff::BackoffPolicy;
use crate::systems::queued_writer::{
    BackendEvent, CallOutcome, FailureMode, FlushError, Latency, MemoryBackend,
    MemoryBackendConfig, Message, Overflow, QueuedWriter, QueuedWriterBugs, QueuedWriterConfig,
    Receipt, Settlement, StoredMessage, WriterEvent,
};
use crate::systems::record::{lock_recovering, Recorder};

/// Known bug (spec 04): shutdown does not flush the queued messages.
pub const SHUTDOWN_SKIPS_FLUSH: &str = "shutdown-skips-flush";
/// Known bug (spec 04): coalescing merges messages of different streams.
pub const COALESCE_ACROSS_STREAMS: &str = "coalesce-across-streams";

/// The queued-writer scenario.
pub struct QueuedWriterScenario;

const PRODUCERS: u32 = 4;
const STREAMS: u32 = 3;
/// A producer flushes after every this many messages.
const FLUSH_EVERY: u32 = 6;
const FAULT_PHASE: Duration = Duration::from_millis(400);
/// L1: everything outstanding at heal settles within this. The longest
/// wait is an outage that began just before heal (≤ 200 ms), the retry
/// window (250 ms) of a call caught in it, one backoff delay, and the
/// drain of a small queue.
const HEAL_BOUND: Duration = Duration::from_secs(3);
/// The writer's backoff: small, so that the window runs out inside the
/// fault phase when an outage is long.
const RETRY: BackoffPolicy = BackoffPolicy {
    base_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(50),
    jitter: 0.5,
    retry_window: Duration::from_millis(250),
};

/// The overflow policy: 0 Block, 1 DropOldest, 2 Fail.
const OVERFLOW: Site = Site::value("queued.overflow");
/// Queue capacity − 1.
const CAPACITY: Site = Site::value("queued.capacity");
/// Batch window, ms.
const WINDOW_MS: Site = Site::value("queued.window_ms");
/// 0 Required, 1 BestEffort.
const MODE: Site = Site::value("queued.mode");
/// Writer restart delay, ms.
const RESTART_MS: Site = Site::value("queued.restart_ms");
/// A producer's pause before each message, ms.
const THINK_MS: Site = Site::value("queued.think_ms");
/// Which stream a message goes to (low values: the producer's own).
const STREAM_CHOICE: Site = Site::value("queued.stream");

/// The writer's setup, drawn once per run.
#[derive(Debug, Clone, Copy)]
struct Setup {
    overflow: Overflow,
    capacity: usize,
    window: Duration,
    mode: FailureMode,
    restart: Duration,
}

impl Setup {
    fn draw() -> Setup {
        Setup {
            overflow: match choose_between(&OVERFLOW, 0, 2) {
                0 => Overflow::Block,
                1 => Overflow::DropOldest,
                _ => Overflow::Fail,
            },
            capacity: 1 + choose_between(&CAPACITY, 0, 5) as usize,
            window: Duration::from_millis(choose_between(&WINDOW_MS, 0, 4)),
            mode: if choose_between(&MODE, 0, 1) == 0 {
                FailureMode::Required
            } else {
                FailureMode::BestEffort
            },
            restart: Duration::from_millis(choose_between(&RESTART_MS, 1, 10)),
        }
    }
}

/// What the run recorded, across incarnations.
struct Journal {
    setup: Setup,
    bugs: QueuedWriterBugs,
    phases: Recorder<EventKind>,
    /// The callers' view: `Invoke`, `Complete`, `ServerCrash`.
    ops: Recorder<EventKind>,
    writer: Recorder<WriterEvent>,
    backend: MemoryBackend,
    /// What each producer submitted: message id → (stream, payload digest).
    intents: Mutex<BTreeMap<u64, (u32, u64)>>,
    /// Invoked and not completed.
    open: Mutex<BTreeSet<u64>>,
    /// `Required` terminal failures, by the incarnation they happened in.
    required_failed: Mutex<BTreeMap<u64, u32>>,
    /// Failures a flush or shutdown returned, with the incarnation.
    surfaced: Mutex<Vec<(u64, u32)>>,
    next_id: AtomicU64,
    /// The incarnation whose shutdown returned (0: none yet).
    finished_by: AtomicU32,
    done: AtomicBool,
}

impl Journal {
    fn invoke(&self, process: ProcessId, id: u64, stream: u32, payload: &[u8]) {
        lock_recovering(&self.intents).insert(id, (stream, digest(payload)));
        lock_recovering(&self.open).insert(id);
        self.ops.record(EventKind::Invoke {
            op: id,
            process,
            call: Call::Write { event_id: Some(id) },
        });
    }

    fn complete(&self, id: u64, outcome: Outcome) {
        lock_recovering(&self.open).remove(&id);
        self.ops.record(EventKind::Complete { op: id, outcome });
    }

    /// The settlement handler: the caller learns how a message ended.
    fn settled(&self, settlement: &Settlement, incarnation: u32) {
        match settlement {
            Settlement::Landed { id, position, .. } => self.complete(
                *id,
                Outcome::Ok(OkValue::Committed {
                    commit_seq: *position,
                }),
            ),
            Settlement::Failed(failure) => {
                if self.setup.mode == FailureMode::Required {
                    lock_recovering(&self.required_failed).insert(failure.id, incarnation);
                }
                self.complete(
                    failure.id,
                    Outcome::Failed {
                        error: failure.error.to_string().into(),
                        definite: !failure.may_have_applied,
                    },
                );
            }
            Settlement::Dropped { id, .. } => self.complete(
                *id,
                Outcome::Failed {
                    error: "dropped from the full queue (DropOldest)".into(),
                    definite: true,
                },
            ),
        }
    }

    /// A flush or shutdown returned these failures.
    fn surface(&self, result: Result<(), FlushError>, incarnation: u32) {
        if let Err(error) = result {
            let mut surfaced = lock_recovering(&self.surfaced);
            surfaced.extend(error.failures.iter().map(|f| (f.id, incarnation)));
        }
    }

    /// A new incarnation starts: the old one's callers are gone.
    fn restarted(&self, process: ProcessId) {
        self.ops.record(EventKind::ServerCrash {
            process,
            during_recovery: false,
        });
        let open = std::mem::take(&mut *lock_recovering(&self.open));
        for id in open {
            self.ops.record(EventKind::Complete {
                op: id,
                outcome: Outcome::Unknown(UnknownReason::CallerCrashed),
            });
        }
    }
}

impl Scenario for QueuedWriterScenario {
    fn name(&self) -> &'static str {
        "queued-writer"
    }

    fn summary(&self) -> &'static str {
        "write-behind writer: 4 producers, batching, coalescing, Block/DropOldest/Fail, faulty backend, writer crashes; D6, D7, D11, D12, L1"
    }

    fn spec(&self) -> &'static str {
        "04"
    }

    fn default_size(&self) -> u32 {
        80
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        let bugs = QueuedWriterBugs {
            shutdown_skips_flush: params.bug(SHUTDOWN_SKIPS_FLUSH),
            coalesce_across_streams: params.bug(COALESCE_ACROSS_STREAMS),
        };
        Box::pin(run(sim, u64::from(params.size), bugs))
    }
}

async fn run(sim: Sim, size: u64, bugs: QueuedWriterBugs) -> ScenarioReport {
    let journal = Arc::new(Journal {
        setup: Setup::draw(),
        bugs,
        phases: Recorder::new(),
        ops: Recorder::new(),
        writer: Recorder::new(),
        backend: MemoryBackend::new(MemoryBackendConfig {
            // At least 1 µs each way: an apply never shares an instant
            // with the attempt that made it or with its answer.
            request_latency: Latency::Drawn {
                min_us: 1,
                max_us: 1500,
            },
            response_latency: Latency::Drawn {
                min_us: 1,
                max_us: 1500,
            },
            buggify: true,
            fault_plan: None,
            recorder: Recorder::new(),
        }),
        intents: Mutex::default(),
        open: Mutex::default(),
        required_failed: Mutex::default(),
        surfaced: Mutex::default(),
        next_id: AtomicU64::new(0),
        finished_by: AtomicU32::new(0),
        done: AtomicBool::new(false),
    });
    journal
        .phases
        .record(EventKind::BackoffPolicyDeclared(models::BackoffPolicy {
            base_delay: clock::duration_nanos(RETRY.base_delay),
            max_delay: clock::duration_nanos(RETRY.max_delay),
            jitter: RETRY.jitter,
            retry_window: clock::duration_nanos(RETRY.retry_window),
        }));
    let j = journal.clone();
    let id = sim.spawn_process("app", move |ctx| app(ctx, j.clone(), size));
    sim.start_faults(&[id]);
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
        Duration::from_millis(5),
        || journal.done.load(Ordering::Relaxed),
    )
    .await;
    journal
        .phases
        .record(EventKind::Phase(models::Phase::Quiescence));
    let contents = journal.backend.contents();
    journal
        .phases
        .record(EventKind::Recovered(Box::new(Recovery {
            process: id,
            log: contents.iter().map(log_entry).collect(),
            state: None,
            corruption_reported_from: None,
        })));

    let (history, mut found) = history(&journal);
    found.extend(findings(&history));
    found.extend(stream_order(&journal, &contents, sim.now()));
    found.extend(failures_surfaced(&journal, sim.now()));
    ScenarioReport {
        findings: found,
        operations: history.operation_count() as u64,
    }
}

// ----- the process -----------------------------------------------------------

/// One incarnation: a fresh writer (the queue is in memory), the
/// producers, and the shutdown once every message was offered.
async fn app(ctx: ProcessCtx, journal: Arc<Journal>, size: u64) {
    let incarnation = ctx.incarnation();
    if incarnation > 1 {
        journal.restarted(ctx.id());
    }
    let setup = journal.setup;
    let handler_journal = journal.clone();
    let config = QueuedWriterConfig {
        batch_window: setup.window,
        capacity: setup.capacity,
        overflow: setup.overflow,
        failure_mode: setup.mode,
        retry: RETRY,
        restart_delay: setup.restart,
        recorder: journal.writer.clone(),
        on_settled: Some(Arc::new(move |s: &Settlement| {
            handler_journal.settled(s, incarnation)
        })),
        bugs: journal.bugs,
        ..QueuedWriterConfig::default()
    };
    let writer = QueuedWriter::start(Arc::new(journal.backend.clone()), config);
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (journal, writer) = (journal.clone(), writer.clone());
        let process = ctx.id();
        producers.push(durasim_sim::task::spawn(async move {
            produce(p, process, incarnation, &journal, &writer, size).await
        }));
    }
    for producer in producers {
        let _ = producer.await;
    }
    let result = writer.shutdown().await;
    journal.surface(result, incarnation);
    journal.finished_by.store(incarnation, Ordering::Relaxed);
    journal.done.store(true, Ordering::Relaxed);
}

/// Producer `p`: offer messages until `size` were offered in all.
async fn produce(
    p: u32,
    process: ProcessId,
    incarnation: u32,
    journal: &Journal,
    writer: &QueuedWriter,
    size: u64,
) {
    let mut offered = 0;
    loop {
        // The id first: a producer whose turn is over returns at once, so
        // the shutdown follows the last messages closely.
        let id = journal.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if id > size {
            return;
        }
        clock::sleep(Duration::from_millis(choose_between(&THINK_MS, 1, 35))).await;
        let stream = match choose_between(&STREAM_CHOICE, 0, 9) {
            choice @ 7..=9 => (p + choice as u32) % STREAMS,
            _ => p % STREAMS,
        };
        let payload = format!("message {id} for stream {stream}").into_bytes();
        journal.invoke(process, id, stream, &payload);
        if let Err(error) = writer.enqueue(stream, Message { id, payload }).await {
            journal.complete(
                id,
                Outcome::Failed {
                    error: error.to_string().into(),
                    definite: true,
                },
            );
        }
        offered += 1;
        if offered % FLUSH_EVERY == 0 {
            let result = writer.flush().await;
            journal.surface(result, incarnation);
        }
    }
}

// ----- history ---------------------------------------------------------------

fn log_entry(m: &StoredMessage) -> LogEntry {
    LogEntry {
        seq: m.position,
        txn_id: m.id,
        event_id: Some(m.id),
        writes: vec![PageWrite {
            page: m.stream,
            value: digest(&m.payload),
        }],
    }
}

fn overflow_policy(overflow: Overflow) -> OverflowPolicy {
    match overflow {
        Overflow::Block => OverflowPolicy::Block,
        Overflow::DropOldest => OverflowPolicy::DropOldest,
        Overflow::Fail => OverflowPolicy::Fail,
    }
}

/// One history from the phases, the callers' records, the writer's events
/// and the backend's applies; plus findings for backend messages no
/// producer submitted.
fn history(journal: &Journal) -> (models::History, Vec<Finding>) {
    let mut merger = Merger::default();
    let mut found = Vec::new();
    for r in journal.phases.snapshot() {
        merger.push(r.time, Rank::Harness, r.event);
    }
    for r in journal.ops.snapshot() {
        let rank = match r.event {
            EventKind::ServerCrash { .. } => Rank::Server,
            EventKind::Invoke { .. } => Rank::Invoke,
            _ => Rank::Complete,
        };
        merger.push(r.time, rank, r.event);
    }
    let intents = lock_recovering(&journal.intents).clone();
    for (batch, r) in journal
        .backend
        .recorder()
        .snapshot()
        .into_iter()
        .enumerate()
    {
        let batch = batch as u64 + 1;
        let BackendEvent::Applied {
            stream,
            attempt,
            entries,
        } = r.event;
        let mut requests = Vec::with_capacity(entries.len());
        for &(id, position) in &entries {
            let (page, value) = intents.get(&id).copied().unwrap_or_else(|| {
                found.push(Finding {
                    invariant: "D3".into(),
                    time: r.time,
                    ops: vec![id],
                    message: format!("the backend applied message {id} to stream {stream}, but no producer submitted it"),
                });
                (stream, 0)
            });
            requests.push(BatchRequest {
                origin: Some(AttemptRef { op: id, attempt }),
                txn_id: id,
                event_id: Some(id),
                snapshot_seq: position - 1,
                writes: vec![PageWrite { page, value }],
                verdict: Verdict::Valid,
            });
        }
        let commit_seqs = entries.iter().map(|&(_, position)| position).collect();
        merger.push(
            r.time,
            Rank::Coordinator,
            EventKind::BatchValidated { batch, requests },
        );
        merger.push(
            r.time,
            Rank::Coordinator,
            EventKind::WalAppended { batch, ok: true },
        );
        merger.push(
            r.time,
            Rank::Coordinator,
            EventKind::FsyncReturned { batch, ok: true },
        );
        merger.push(
            r.time,
            Rank::Coordinator,
            EventKind::Published { batch, commit_seqs },
        );
    }
    let mut queue = 0;
    let mut calls: BTreeMap<(u32, u64), Vec<u64>> = BTreeMap::new();
    for r in journal.writer.snapshot() {
        let kinds = match r.event {
            WriterEvent::Declared { capacity, overflow } => {
                queue += 1;
                vec![EventKind::QueueDeclared {
                    queue,
                    capacity: capacity as u32,
                    overflow: overflow_policy(overflow),
                }]
            }
            WriterEvent::Enqueued { id, queued, .. } => vec![EventKind::QueueEnqueued {
                queue,
                item: id,
                occupancy_after: queued as u32,
            }],
            WriterEvent::SenderBlocked { id } => {
                vec![EventKind::QueueSenderBlocked { queue, item: id }]
            }
            WriterEvent::EnqueueFailed { id } => {
                vec![EventKind::QueueEnqueueFailed { queue, item: id }]
            }
            WriterEvent::DroppedOldest { id } => {
                vec![EventKind::QueueDroppedOldest { queue, item: id }]
            }
            WriterEvent::DropReported { id } => {
                vec![EventKind::QueueDropReported { queue, item: id }]
            }
            WriterEvent::Dequeued { id, queued } => vec![EventKind::QueueDequeued {
                queue,
                item: id,
                occupancy_after: queued as u32,
            }],
            WriterEvent::CallStarted {
                call,
                ids,
                attempt,
                delay_before,
                ..
            } => {
                let kinds = ids
                    .iter()
                    .map(|&op| EventKind::AttemptStarted {
                        op,
                        attempt,
                        delay_before: clock::duration_nanos(delay_before),
                    })
                    .collect();
                calls.insert((queue, call), ids);
                kinds
            }
            WriterEvent::CallEnded {
                call,
                attempt,
                outcome,
            } => {
                let ids = calls.get(&(queue, call)).cloned().unwrap_or_default();
                ids.iter()
                    .enumerate()
                    .map(|(i, &op)| EventKind::AttemptEnded {
                        op,
                        attempt,
                        result: attempt_result(&outcome, i),
                    })
                    .collect()
            }
            WriterEvent::EnqueueRejected { .. }
            | WriterEvent::Landed { .. }
            | WriterEvent::Failed { .. }
            | WriterEvent::WriterCrashed
            | WriterEvent::WriterRestarted
            | WriterEvent::ShutdownStarted
            | WriterEvent::ShutdownFinished { .. } => Vec::new(),
        };
        for kind in kinds {
            merger.push(r.time, Rank::Attempt, kind);
        }
    }
    (merger.into_history(), found)
}

/// What the writer learnt about message `index` of a call from one attempt.
fn attempt_result(outcome: &CallOutcome, index: usize) -> AttemptResult {
    let rejected = |class, reason: &str| AttemptResult::Rejected {
        class,
        reason: reason.into(),
    };
    match outcome {
        CallOutcome::Ok(receipts) => match receipts.get(index) {
            Some(Receipt::Appended { position }) => AttemptResult::Committed {
                commit_seq: *position,
            },
            Some(Receipt::AlreadyApplied { .. }) => {
                rejected(RejectionClass::Permanent, "receipt-exists")
            }
            None => AttemptResult::Unknown,
        },
        CallOutcome::Transient(reason) => rejected(RejectionClass::Transient, reason),
        CallOutcome::Permanent(reason) => rejected(RejectionClass::Permanent, reason),
        CallOutcome::Interrupted => AttemptResult::Unknown,
    }
}

// ----- checks beyond the models ----------------------------------------------

/// D4 per stream: the backend's messages of each stream are in the order
/// they were enqueued.
fn stream_order(
    journal: &Journal,
    contents: &[StoredMessage],
    now: durasim_sim::SimTime,
) -> Vec<Finding> {
    let mut rank: BTreeMap<u64, usize> = BTreeMap::new();
    for event in journal.writer.events() {
        if let WriterEvent::Enqueued { id, .. } = event {
            let next = rank.len();
            rank.entry(id).or_insert(next);
        }
    }
    let mut last: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
    let mut found = Vec::new();
    for m in contents {
        let Some(&r) = rank.get(&m.id) else {
            continue;
        };
        if let Some(&(before, before_rank)) = last.get(&m.stream) {
            if before_rank > r {
                found.push(Finding {
                    invariant: "D4".into(),
                    time: now,
                    ops: vec![before, m.id],
                    message: format!(
                        "stream {}: message {} (position {}) landed after message {before}, which was enqueued later",
                        m.stream, m.id, m.position
                    ),
                });
            }
        }
        last.insert(m.stream, (m.id, r));
    }
    found
}

/// D6 for `Required` writers: every terminal failure of the incarnation
/// that shut down reached a flush or its shutdown, and nothing that did
/// not fail was returned as a failure.
fn failures_surfaced(journal: &Journal, now: durasim_sim::SimTime) -> Vec<Finding> {
    let failed = lock_recovering(&journal.required_failed).clone();
    let surfaced = lock_recovering(&journal.surfaced).clone();
    let finished_by = journal.finished_by.load(Ordering::Relaxed);
    let surfaced_ids: BTreeSet<u64> = surfaced.iter().map(|(id, _)| *id).collect();
    let mut found = Vec::new();
    for (&id, &incarnation) in &failed {
        if incarnation == finished_by && !surfaced_ids.contains(&id) {
            found.push(Finding {
                invariant: "D6".into(),
                time: now,
                ops: vec![id],
                message: format!("message {id} failed terminally on a Required backend, but no flush or shutdown returned the failure: swallowed"),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for (id, _) in surfaced {
        if !failed.contains_key(&id) || !seen.insert(id) {
            found.push(Finding {
                invariant: "D6".into(),
                time: now,
                ops: vec![id],
                message: format!("a flush or shutdown returned a failure of message {id}, which did not fail (or was already returned)"),
            });
        }
    }
    found
}
