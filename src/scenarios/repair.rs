//! `repair`: spec 03's repair coordinator alone, checked by the reference
//! models (`durasim_models::check`).
//!
//! One process runs the [`RepairCoordinator`] on its simulated disk (the
//! systematic `data` log, the `parity` log, two workers) and one writer
//! inside it that commits `size` blobs of systematic bytes one at a time
//! (varying lengths, a few parity shards each). Every (re)start recovers
//! both logs, which re-schedules every commit whose parity is missing;
//! the writer then carries on with the next blob. The fault scheduler
//! crashes (process and power loss, on a timer and at I/O points) and
//! pauses the process; the disk tears unsynced writes and fails fsyncs;
//! buggified repair faults make generation slow, fail or panic, and
//! scheduling fail — in the fault phase only.
//!
//! Phases: setup, `start_faults(process)`, the fault phase with the
//! writer, `heal`, a bounded wait for the writer, a bounded wait for the
//! repairs to settle, quiescence, `final_crash`, and the last recovery
//! read back.
//!
//! # History translation
//! - a commit call → `Invoke` / `Complete` (`Ok(Committed)`; `Failed`,
//!   definite when its bytes were discarded durably; `Unknown(CallerCrashed)`
//!   when the process died inside the call, recorded once the next
//!   incarnation has recovered). The call is a group-commit batch of one
//!   (batch id = op id) whose phases come from the `data` log's own records
//!   ([`WalEvent`]): `BatchValidated` and `WalAppended` at the append (a
//!   failed append where its discard or the call ends), `FsyncReturned`,
//!   `Published` with the receipt's commit seq. The request writes page
//!   `op` with the digest of its bytes, and its frame carries `op` as txn
//!   id, so a recovered entry is matched to its writer and its bytes are
//!   compared (D3). One call's records are one stream, in its own order;
//! - a discard of unsynced bytes (after a failed append or fsync) rewrites
//!   the durable prefix: recorded as a `Recovered` of the log read back
//!   from the disk, as in `commit-service`;
//! - recovery → `Recovered` with the `data` log read back from the disk
//!   (no page state), or with `corruption_reported_from` when it reports
//!   damage (the process then halts);
//! - restarts → `ServerCrash`;
//! - `RepairEvent` → `Repair`, numbered across incarnations; the states
//!   at quiescence → `RepairSettled`, a `Completed` one with the symbols
//!   the disk holds after the final crash (see [`super::repair_history`]);
//! - phases → `Phase` markers.
//!
//! Invariants checked: D9 (repair events in spec 03's order across crashes
//! and recoveries, nothing `Pending` at quiescence, every `Completed`
//! repair's durable parity recomputed from and regenerating the durable
//! systematic bytes), D1 (acknowledged systematic bytes survive every
//! crash), D3 (recovered bytes are the bytes committed, nothing that was
//! never appended), D4 (commit seqs 1, 2, 3, … in the recovered log,
//! publications in log position), D5 (acknowledged only after the fsync
//! returned OK), D6 (every call ends), D10 (recovery idempotent), L1
//! (calls finish after heal).
//!
//! Not mapped: D2, D7, D8 (one page per commit, no event ids, no
//! concurrency control), D11, D12 (no retries, no channels); reads.
//!
//! Known bugs: [`PANIC_ABANDONS_OTHERS`], [`PENDING_FORGOTTEN`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models as models;
use durasim_models::{
    AttemptRef, BatchRequest, Call, EventKind, LogEntry, OkValue, Outcome, PageWrite, UnknownReason,
};
use durasim_sim::{clock, Disk, ProcessCtx, ProcessId, Sim, SimTime};

use super::history_check::{digest, findings, Merger, Rank};
use super::repair_history::{push_repair_events, settled_records};
use crate::harness::{RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::record::{lock_recovering, Recorded, Recorder};
use crate::systems::repair::{
    read_image, RepairConfig, RepairCoordinator, RepairError, RepairEvent, RepairState,
};
use crate::systems::wal::{WalConfig, WalError, WalEvent};
use crate::systems::wal_format::{self, Frame};

/// The repair scenario.
pub struct RepairScenario;

/// Known bug: a panicking repair worker abandons the other commits'
/// repairs, leaving them `Pending` (spec 03: a panic fails only its own
/// commit).
pub const PANIC_ABANDONS_OTHERS: &str = "repair-panic-abandons-others";
/// Known bug: after a crash, recovery does not re-schedule commits whose
/// parity is missing (spec 03: never silently forgotten).
pub const PENDING_FORGOTTEN: &str = "repair-pending-forgotten";

const REPAIR_DIR: &str = "repair";
/// Parity shard size: a blob is one to six shards.
const SHARD_SIZE: usize = 128;
const FAULT_PHASE: Duration = Duration::from_millis(1000);
/// L1: a call outstanding at heal finishes within this.
const HEAL_BOUND: Duration = Duration::from_secs(5);
/// At quiescence every repair has settled within this.
const REPAIR_SETTLE_BOUND: Duration = Duration::from_secs(5);

/// What the writer's calls did, in its order.
#[derive(Debug, Clone)]
enum CallRec {
    /// Call `op` started; the `data` log's records from `wal_from` on are
    /// its own (until the next call or recovery).
    Invoke { op: u64, wal_from: usize },
    /// Its unsynced bytes were discarded: the log the rewrite left.
    Discarded { log: Vec<LogEntry> },
    /// It returned.
    Complete { op: u64, outcome: CallOutcome },
}

#[derive(Debug, Clone, Copy)]
enum CallOutcome {
    Committed(u64),
    Failed { definite: bool },
    CallerCrashed,
}

/// Process-level records.
#[derive(Debug, Clone)]
enum ProcessRec {
    Crash {
        during_recovery: bool,
    },
    Recovered {
        log: Vec<LogEntry>,
        corruption_from: Option<u64>,
    },
}

/// Everything recorded, shared by the process and the supervisor.
#[derive(Default)]
struct Journal {
    phases: Recorder<EventKind>,
    calls: Recorder<CallRec>,
    process: Recorder<ProcessRec>,
    /// The `data` log's records, across incarnations.
    data_log: Recorder<WalEvent>,
    /// One recorder per opening of the coordinator, in order.
    repairs: Mutex<Vec<Recorder<RepairEvent>>>,
    current: Mutex<Option<RepairCoordinator>>,
    opened: AtomicU64,
    next_op: AtomicU64,
    in_flight: Mutex<Option<u64>>,
    writer_done: AtomicBool,
    recovering: AtomicBool,
    settled: Mutex<BTreeMap<u64, RepairState>>,
}

/// How a run is set up: the workload size and the known bugs on.
#[derive(Clone, Copy)]
struct Setup {
    size: u64,
    panic_abandons_others: bool,
    forget_pending_on_recovery: bool,
}

impl Scenario for RepairScenario {
    fn name(&self) -> &'static str {
        "repair"
    }

    fn summary(&self) -> &'static str {
        "repair coordinator alone: systematic + parity logs, 2 workers, repair faults, crashes; D9, D1, D3-D6, D10, L1"
    }

    fn spec(&self) -> &'static str {
        "03, 07"
    }

    fn default_size(&self) -> u32 {
        60
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        let setup = Setup {
            size: u64::from(params.size),
            panic_abandons_others: params.bug(PANIC_ABANDONS_OTHERS),
            forget_pending_on_recovery: params.bug(PENDING_FORGOTTEN),
        };
        Box::pin(run(sim, setup))
    }
}

async fn run(sim: Sim, setup: Setup) -> ScenarioReport {
    let journal = Arc::new(Journal::default());
    let j = journal.clone();
    let id = sim.spawn_process("repair", move |ctx| process(ctx, j.clone(), setup));
    sim.start_faults(&[id]);
    journal
        .phases
        .record(EventKind::Phase(models::Phase::Fault));
    sim.sleep(FAULT_PHASE).await;
    sim.heal();
    journal.phases.record(EventKind::Phase(models::Phase::Heal {
        bound: clock::duration_nanos(HEAL_BOUND),
        resolves_unknown: false,
    }));
    let poll = Duration::from_millis(5);
    sim.wait_until(HEAL_BOUND + Duration::from_secs(1), poll, || {
        journal.writer_done.load(Ordering::Relaxed)
    })
    .await;
    sim.wait_until(REPAIR_SETTLE_BOUND, poll, || {
        repairs_pending(&journal) == Some(0)
    })
    .await;
    journal
        .phases
        .record(EventKind::Phase(models::Phase::Quiescence));
    let states = lock_recovering(&journal.current)
        .as_ref()
        .map(RepairCoordinator::states)
        .unwrap_or_default();
    *lock_recovering(&journal.settled) = states;
    journal
        .phases
        .record(EventKind::Phase(models::Phase::FinalCrash));
    let opened = journal.opened.load(Ordering::Relaxed);
    sim.final_crash(&[id]);
    sim.wait_until(Duration::from_secs(2), Duration::from_millis(2), || {
        journal.opened.load(Ordering::Relaxed) != opened
    })
    .await;
    let image = sim.disk_files(id);
    let history = history(&journal, id, &image);
    ScenarioReport {
        findings: findings(&history),
        operations: history.operation_count() as u64,
    }
}

/// Repairs still pending in the live coordinator (`None`: none is open).
fn repairs_pending(journal: &Journal) -> Option<usize> {
    lock_recovering(&journal.current)
        .as_ref()
        .map(RepairCoordinator::pending_background_repair_count)
}

// ----- the process -----------------------------------------------------------

/// The process's init: recover, settle the call a crash interrupted, then
/// write until the workload is done (and stay up for the workers).
async fn process(ctx: ProcessCtx, journal: Arc<Journal>, setup: Setup) {
    if ctx.incarnation() > 1 {
        let during_recovery = journal.recovering.load(Ordering::Relaxed);
        journal
            .process
            .record(ProcessRec::Crash { during_recovery });
    }
    *lock_recovering(&journal.current) = None;
    let disk = ctx.disk();
    let Some(repair) = recover(&disk, &journal, setup).await else {
        // Recovery reported damage: halt loudly (recorded).
        std::future::pending::<()>().await;
        return;
    };
    if let Some(op) = lock_recovering(&journal.in_flight).take() {
        journal.calls.record(CallRec::Complete {
            op,
            outcome: CallOutcome::CallerCrashed,
        });
    }
    write(&disk, &journal, &repair, setup.size).await;
    journal.writer_done.store(true, Ordering::Relaxed);
    std::future::pending::<()>().await;
}

/// Open the coordinator (recovering both logs), retrying I/O errors, and
/// record what the `data` log exposes. `None` when recovery reports damage.
async fn recover(disk: &Disk, journal: &Journal, setup: Setup) -> Option<RepairCoordinator> {
    journal.recovering.store(true, Ordering::Relaxed);
    let opened = loop {
        let recorder = Recorder::new();
        lock_recovering(&journal.repairs).push(recorder.clone());
        let config = RepairConfig {
            dir: REPAIR_DIR.into(),
            shard_size: SHARD_SIZE,
            recorder,
            data_log_recorder: Some(journal.data_log.clone()),
            panic_abandons_others: setup.panic_abandons_others,
            forget_pending_on_recovery: setup.forget_pending_on_recovery,
            ..RepairConfig::default()
        };
        match RepairCoordinator::open(disk, config).await {
            Ok((repair, _)) => break Ok(repair),
            Err(WalError::Corrupt(_)) => break Err(()),
            Err(_) => clock::sleep(Duration::from_millis(5)).await,
        }
    };
    journal.recovering.store(false, Ordering::Relaxed);
    let (log, corruption_from) = data_log_on_disk(disk);
    match opened {
        Ok(repair) => {
            journal.process.record(ProcessRec::Recovered {
                log,
                corruption_from: None,
            });
            *lock_recovering(&journal.current) = Some(repair.clone());
            journal.opened.fetch_add(1, Ordering::Relaxed);
            Some(repair)
        }
        Err(()) => {
            journal.process.record(ProcessRec::Recovered {
                log,
                corruption_from,
            });
            None
        }
    }
}

/// The `data` log as the disk holds it now: its valid entries, and where
/// damage starts if the scan found damage rather than a torn tail.
fn data_log_on_disk(disk: &Disk) -> (Vec<LogEntry>, Option<u64>) {
    let config = data_log_config();
    let bytes = disk.current_bytes(&config.log_path()).unwrap_or_default();
    let scan = wal_format::scan(&bytes, config.block_size, config.contiguous_seqs);
    let log: Vec<LogEntry> = scan.frames().map(|(_, f)| entry(f)).collect();
    let damaged = !matches!(scan.outcome, wal_format::ScanOutcome::Clean { .. });
    let from = damaged.then(|| log.last().map_or(1, |e| e.seq + 1));
    (log, from)
}

fn data_log_config() -> WalConfig {
    WalConfig::new(&format!("{REPAIR_DIR}/data"))
}

/// A recovered frame as the models see it: the writer's op (its txn id)
/// wrote page `op` with the digest of the bytes.
fn entry(frame: &Frame) -> LogEntry {
    LogEntry {
        seq: frame.commit_seq,
        txn_id: frame.txn_id,
        event_id: None,
        writes: vec![PageWrite {
            page: frame.txn_id as u32,
            value: digest(&frame.payload),
        }],
    }
}

/// The systematic bytes of op `op`: 64 to 700 bytes of a pattern of its
/// own (one to six parity shards).
fn blob(op: u64) -> Vec<u8> {
    let len = 64 + (op * 149 % 637) as usize;
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31) ^ op.wrapping_mul(0x9e37)) as u8)
        .collect()
}

/// Commit blobs one at a time until `size` calls were made.
async fn write(disk: &Disk, journal: &Journal, repair: &RepairCoordinator, size: u64) {
    loop {
        if journal.next_op.load(Ordering::Relaxed) >= size {
            return;
        }
        // Think time spreads the calls over the fault phase.
        let next = journal.next_op.load(Ordering::Relaxed) + 1;
        clock::sleep(Duration::from_millis(8 + next * 7 % 10)).await;
        let op = journal.next_op.fetch_add(1, Ordering::Relaxed) + 1;
        if op > size {
            return;
        }
        *lock_recovering(&journal.in_flight) = Some(op);
        let wal_from = journal.data_log.len();
        journal.calls.record(CallRec::Invoke { op, wal_from });
        let result = repair.commit_as(op, blob(op)).await;
        let outcome = match result {
            Ok(receipt) => CallOutcome::Committed(receipt.commit_seq),
            Err(RepairError::Log(_)) => {
                // Definitely not applied only if its bytes were discarded
                // durably; the rewrite left a new log on disk.
                let discarded = journal
                    .data_log
                    .any_since(wal_from, |e| matches!(e, WalEvent::Discarded { .. }));
                if discarded {
                    let (log, _) = data_log_on_disk(disk);
                    journal.calls.record(CallRec::Discarded { log });
                }
                CallOutcome::Failed {
                    definite: discarded,
                }
            }
        };
        journal.calls.record(CallRec::Complete { op, outcome });
        *lock_recovering(&journal.in_flight) = None;
    }
}

// ----- history ---------------------------------------------------------------

fn history(
    journal: &Journal,
    process: ProcessId,
    image: &BTreeMap<String, Vec<u8>>,
) -> models::History {
    let mut merger = Merger::default();
    for r in journal.phases.snapshot() {
        let quiescence = matches!(r.event, EventKind::Phase(models::Phase::Quiescence));
        merger.push(r.time, Rank::Harness, r.event);
        if quiescence {
            let (systematic, parity) = read_image(image, REPAIR_DIR, wal_format::DEFAULT_BLOCK);
            let settled = settled_records(&lock_recovering(&journal.settled), &systematic, &parity);
            for record in settled {
                merger.push(r.time, Rank::Harness, record);
            }
        }
    }
    for r in journal.process.snapshot() {
        let (rank, kind) = match r.event {
            ProcessRec::Crash { during_recovery } => (
                Rank::Crash,
                EventKind::ServerCrash {
                    process,
                    during_recovery,
                },
            ),
            ProcessRec::Recovered {
                log,
                corruption_from,
            } => (Rank::Server, recovered(process, log, corruption_from)),
        };
        merger.push(r.time, rank, kind);
    }
    calls(journal, process, &mut merger);
    push_repair_events(&lock_recovering(&journal.repairs), &mut merger);
    merger.into_history()
}

fn recovered(process: ProcessId, log: Vec<LogEntry>, corruption_from: Option<u64>) -> EventKind {
    EventKind::Recovered(Box::new(models::Recovery {
        process,
        log,
        state: None,
        corruption_reported_from: corruption_from,
    }))
}

/// Each call's records, as one stream in its own order: invocation, its
/// batch of one through the `data` log's phases, a discard, completion.
fn calls(journal: &Journal, process: ProcessId, merger: &mut Merger) {
    let wal = journal.data_log.snapshot();
    let records = journal.calls.snapshot();
    // Where each call's `data` log records end: the next call's start.
    let starts: Vec<usize> = records
        .iter()
        .filter_map(|r| match r.event {
            CallRec::Invoke { wal_from, .. } => Some(wal_from),
            _ => None,
        })
        .collect();
    // When each call that failed returned.
    let failed_at: BTreeMap<u64, SimTime> = records
        .iter()
        .filter_map(|r| match r.event {
            CallRec::Complete {
                op,
                outcome: CallOutcome::Failed { .. },
            } => Some((op, r.time)),
            _ => None,
        })
        .collect();
    let mut next_start = starts.iter().skip(1);
    // Ranked as invocations: a call's records at one instant keep the
    // order they are pushed in.
    let mut push = |time: SimTime, kind: EventKind| merger.push(time, Rank::Invoke, kind);
    for r in records {
        match r.event {
            CallRec::Invoke { op, wal_from } => {
                push(
                    r.time,
                    EventKind::Invoke {
                        op,
                        process,
                        call: Call::Write { event_id: None },
                    },
                );
                let end = next_start.next().copied().unwrap_or(wal.len());
                // A recovery ends the call's records (it died inside).
                let own: Vec<&Recorded<WalEvent>> = wal
                    .get(wal_from..end.max(wal_from))
                    .unwrap_or(&[])
                    .iter()
                    .take_while(|w| !matches!(w.event, WalEvent::Recovered { .. }))
                    .collect();
                batch_of_one(op, &own, failed_at.get(&op).copied(), &mut push);
            }
            CallRec::Discarded { log } => push(r.time, recovered(process, log, None)),
            CallRec::Complete { op, outcome } => {
                if let CallOutcome::Committed(seq) = outcome {
                    push(
                        r.time,
                        EventKind::Published {
                            batch: op,
                            commit_seqs: vec![seq],
                        },
                    );
                }
                let outcome = match outcome {
                    CallOutcome::Committed(commit_seq) => {
                        Outcome::Ok(OkValue::Committed { commit_seq })
                    }
                    CallOutcome::Failed { definite } => Outcome::Failed {
                        error: "commit not durable".into(),
                        definite,
                    },
                    CallOutcome::CallerCrashed => Outcome::Unknown(UnknownReason::CallerCrashed),
                };
                push(r.time, EventKind::Complete { op, outcome });
            }
        }
    }
}

/// The phases of call `op`'s batch from its own `data` log records
/// (`own`): validated and appended when the append landed, then the
/// fsync's result. When no append landed, a call that failed (at
/// `failed_at`) had its append fail or refused: recorded at its first
/// later record (a discard) or when it returned. A call that died inside
/// never got that far (a write in flight when the process dies never
/// lands).
fn batch_of_one(
    op: u64,
    own: &[&Recorded<WalEvent>],
    failed_at: Option<SimTime>,
    push: &mut impl FnMut(SimTime, EventKind),
) {
    let request = BatchRequest {
        origin: Some(AttemptRef { op, attempt: 1 }),
        txn_id: op,
        event_id: None,
        snapshot_seq: 0,
        writes: vec![PageWrite {
            page: op as u32,
            value: digest(&blob(op)),
        }],
        verdict: models::Verdict::Valid,
    };
    let validated = |batch| EventKind::BatchValidated {
        batch,
        requests: vec![request.clone()],
    };
    let appended = own
        .iter()
        .find_map(|w| matches!(w.event, WalEvent::Appended { .. }).then_some(w.time));
    let Some(appended) = appended else {
        if let Some(returned) = failed_at {
            let at = own.first().map_or(returned, |w| w.time);
            push(at, validated(op));
            push(
                at,
                EventKind::WalAppended {
                    batch: op,
                    ok: false,
                },
            );
        }
        return;
    };
    push(appended, validated(op));
    push(
        appended,
        EventKind::WalAppended {
            batch: op,
            ok: true,
        },
    );
    let fsync = own.iter().find_map(|w| match w.event {
        WalEvent::Synced { .. } => Some((w.time, true)),
        WalEvent::SyncFailed => Some((w.time, false)),
        _ => None,
    });
    if let Some((time, ok)) = fsync {
        push(time, EventKind::FsyncReturned { batch: op, ok });
    }
}
