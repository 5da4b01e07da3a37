//! `backoff`: spec 02's committed-write loop alone, against a store the
//! scheduler makes contentious, checked by the reference models
//! (`durasim_models::check`).
//!
//! Three writer processes apply events by read-modify-write through the
//! retry loop ([`crate::systems::backoff::RetryLoop`]) over the simulated
//! network: each attempt reads a page and its basis afresh, appends the
//! event id to the page's list and commits with the basis and the event id;
//! the store's answers are classified by
//! [`crate::systems::committed_write::classify_answer`] (conflicts are
//! transient, a lost answer is transient but may have applied, and
//! `receipt-exists` after such an attempt means the write converged). The
//! writers share two pages, so they also conflict with one another. The
//! store ([`store`]) is small and cheap; the scheduler crashes and pauses
//! it, the network loses, duplicates and delays messages, and the store's
//! own faults force conflicts, storms of conflicts, false `receipt-exists`
//! rejections and lost answers.
//!
//! Phases: `start_faults(store)`, a fault phase with the workload, `heal`,
//! a bounded wait for every writer, quiescence, `final_crash` and the last
//! recovery.
//!
//! # How a write ends
//! A writer's caller learns of a write's end the way spec 02 says: the
//! commit (`Ok`), a permanent rejection (returned, and kept as telemetry),
//! or a terminal `CommitConvergenceError` **delivered to the error handler
//! registered on the loop**. The handler is what completes such a write in
//! the history, not the loop's return value: a loop that gives up without
//! calling it has dropped the write silently, and D6 says so at
//! quiescence.
//!
//! # History translation
//! - writes → `Invoke` / `Complete` (`Ok(Committed)`; `Failed` — definite
//!   only when no attempt's outcome was unknown — for a convergence error
//!   or a permanent rejection; never `Unknown`: the loop resolves unknown
//!   attempts);
//! - `RetryEvent` → `AttemptStarted` (with the backoff slept before it) /
//!   `AttemptEnded` (with what the writer learnt from the store);
//! - the store records its own model events (see [`store`]);
//! - the backoff policy → `BackoffPolicyDeclared`; phases → `Phase`.
//!
//! Invariants checked: D6 (every write ends, applied or with a terminal
//! error delivered; definite failures never applied), D7 (one application
//! per event id), D11 (attempts within the retry window, the nominal curve,
//! no retry after a permanent rejection, no giving up inside the window),
//! L1 (writes finish after heal), and what the store's records feed: D1,
//! D3, D4, D5, D8, D10.
//!
//! Not mapped: reads as operations (writers read only inside attempts),
//! the disk (the store's log survives crashes by construction), writers as
//! fault targets (the scheduler crashes and pauses the store only;
//! partitions and message faults involve everyone).

mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models as models;
use durasim_models::{AttemptResult, Call, EventKind, OkValue, Outcome};
use durasim_sim::{choose_between, clock, Net, ProcessCtx, ProcessId, Sim, Site};

use self::store::StoreShared;
use super::history_check::{findings, Merger, Rank};
use super::rmw_client::{Msg, RmwProtocol};
use crate::harness::{RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::backoff::{
    BackoffPolicy, CommitConvergenceError, RetryBugs, RetryEvent, RetryLoop, WriteError,
};
use crate::systems::committed_write::{decode_list, encode_list};
use crate::systems::record::{lock_recovering, Recorder};

/// Known bug: a fixed retry budget instead of the retry window, and the
/// write dropped silently when it runs out (spec 02's historical bug).
pub const FIXED_RETRY_BUDGET: &str = "fixed-retry-budget";
/// Known bug: a permanent rejection is retried like a transient one.
pub const PERMANENT_RETRIED: &str = "permanent-retried";

/// The backoff scenario.
pub struct BackoffScenario;

const WRITERS: u32 = 3;
const PAGES: u64 = 2;
const FAULT_PHASE: Duration = Duration::from_millis(600);
/// L1: every write outstanding at heal finishes within this. The longest
/// wait is one backoff delay of a write that retried through the whole
/// fault phase (well under 1 s with the default curve), the rest of a
/// storm, and a commit.
const HEAL_BOUND: Duration = Duration::from_secs(10);
/// The writers' protocol: short timeouts (the store answers within a
/// sync), values as plain lists of event ids.
const PROTOCOL: RmwProtocol = RmwProtocol {
    read_timeout: Duration::from_millis(20),
    commit_timeout: Duration::from_millis(40),
    decode: decode_list,
    encode: encode_list,
};
/// A writer's pause before each event, ms.
const THINK_MS: Site = Site::value("backoff.think_ms");

/// Everything the writers and the supervisor record.
#[derive(Default)]
struct Journal {
    phases: Recorder<EventKind>,
    /// `Invoke` and `Complete` events.
    writes: Recorder<EventKind>,
    retries: Recorder<RetryEvent>,
    /// What the writer learnt from each attempt, by (op, attempt).
    results: Mutex<BTreeMap<(u64, u32), AttemptResult>>,
    writers_done: AtomicU32,
}

impl Journal {
    /// The terminal error reached the caller: the write ends `Failed`,
    /// definitely unapplied unless an attempt's outcome was unknown.
    fn convergence_error_delivered(&self, error: &CommitConvergenceError) {
        let op = error.write_id;
        let unknown = lock_recovering(&self.results)
            .range((op, 0)..=(op, u32::MAX))
            .any(|(_, result)| *result == AttemptResult::Unknown);
        self.writes.record(EventKind::Complete {
            op,
            outcome: Outcome::Failed {
                error: format!("CommitConvergenceError: {error}").into(),
                definite: !unknown,
            },
        });
    }
}

impl Scenario for BackoffScenario {
    fn name(&self) -> &'static str {
        "backoff"
    }

    fn summary(&self) -> &'static str {
        "committed-write retry loop vs a contentious store (storms, false receipts, lost answers); D6, D7, D11, L1"
    }

    fn spec(&self) -> &'static str {
        "02"
    }

    fn default_size(&self) -> u32 {
        30
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        let bugs = RetryBugs {
            fixed_retry_budget: params.bug(FIXED_RETRY_BUDGET),
            permanent_retried: params.bug(PERMANENT_RETRIED),
        };
        Box::pin(run(sim, u64::from(params.size), bugs))
    }
}

async fn run(sim: Sim, size: u64, bugs: RetryBugs) -> ScenarioReport {
    let journal = Arc::new(Journal::default());
    let shared = Arc::new(StoreShared::default());
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

    let (s, n) = (shared.clone(), net.clone());
    let store = sim.spawn_process("store", move |ctx| store::serve(ctx, n.clone(), s.clone()));
    for w in 0..u64::from(WRITERS) {
        let ops: Vec<u64> = (1..=size)
            .filter(|op| op % u64::from(WRITERS) == w)
            .collect();
        let (j, n) = (journal.clone(), net.clone());
        sim.spawn_process("writer", move |ctx| {
            let retry = RetryLoop::new(policy).with_bugs(bugs);
            writer(ctx, n.clone(), j.clone(), store, ops.clone(), retry)
        });
    }

    sim.start_faults(&[store]);
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
        || journal.writers_done.load(Ordering::Relaxed) >= WRITERS,
    )
    .await;
    journal
        .phases
        .record(EventKind::Phase(models::Phase::Quiescence));
    journal
        .phases
        .record(EventKind::Phase(models::Phase::FinalCrash));
    let recovered = shared.recoveries();
    sim.final_crash(&[store]);
    sim.wait_until(Duration::from_secs(1), Duration::from_millis(1), || {
        shared.recoveries() != recovered
    })
    .await;
    let history = history(&journal, &shared);
    ScenarioReport {
        findings: findings(&history),
        operations: history.operation_count() as u64,
    }
}

// ----- writers ---------------------------------------------------------------

/// A writer: applies events `ops` one at a time (op id = event id).
async fn writer(
    ctx: ProcessCtx,
    net: Net<Msg>,
    journal: Arc<Journal>,
    store: ProcessId,
    ops: Vec<u64>,
    retry: RetryLoop,
) {
    let endpoint = net.endpoint(&ctx);
    let retry = {
        let journal = journal.clone();
        retry
            .recording_into(journal.retries.clone())
            .on_terminal_error(move |error| journal.convergence_error_delivered(error))
    };
    let rid = AtomicU64::new(0);
    for op in ops {
        clock::sleep(Duration::from_millis(choose_between(&THINK_MS, 5, 40))).await;
        let page = (op % PAGES) as u32;
        journal.writes.record(EventKind::Invoke {
            op,
            process: ctx.id(),
            call: Call::Write { event_id: Some(op) },
        });
        let (result, _) = PROTOCOL
            .write(&retry, &endpoint, store, &rid, op, page, &journal.results)
            .await;
        let outcome = match result {
            Ok(commit_seq) => Outcome::Ok(OkValue::Committed { commit_seq }),
            Err(WriteError::Permanent(rejection)) => Outcome::Failed {
                error: format!("permanent rejection: {}", rejection.reason).into(),
                definite: false,
            },
            // Delivered through the registered error handler (see the
            // module notes), which completed the write.
            Err(WriteError::Convergence(_)) => continue,
        };
        journal.writes.record(EventKind::Complete { op, outcome });
    }
    journal.writers_done.fetch_add(1, Ordering::Relaxed);
}

// ----- history ---------------------------------------------------------------

/// One history from the phase markers, the store's events (one stream, in
/// real order, so one rank), the writes and their attempts.
fn history(journal: &Journal, shared: &StoreShared) -> models::History {
    let mut merger = Merger::default();
    for r in journal.phases.snapshot() {
        merger.push(r.time, Rank::Harness, r.event);
    }
    for r in shared.events.snapshot() {
        merger.push(r.time, Rank::Server, r.event);
    }
    for r in journal.writes.snapshot() {
        let rank = match r.event {
            EventKind::Invoke { .. } => Rank::Invoke,
            _ => Rank::Complete,
        };
        merger.push(r.time, rank, r.event);
    }
    let results = lock_recovering(&journal.results).clone();
    let mut slept: BTreeMap<u64, Duration> = BTreeMap::new();
    for r in journal.retries.snapshot() {
        let kind = match r.event {
            RetryEvent::AttemptStarted { write_id, attempt } => {
                let delay = slept.remove(&write_id).unwrap_or_default();
                EventKind::AttemptStarted {
                    op: write_id,
                    attempt,
                    delay_before: clock::duration_nanos(delay),
                }
            }
            RetryEvent::AttemptEnded {
                write_id, attempt, ..
            } => EventKind::AttemptEnded {
                op: write_id,
                attempt,
                // Every attempt records what it learnt before it returns.
                result: results
                    .get(&(write_id, attempt))
                    .cloned()
                    .unwrap_or(AttemptResult::Unknown),
            },
            RetryEvent::Backoff {
                write_id, delay, ..
            } => {
                slept.insert(write_id, delay);
                continue;
            }
            RetryEvent::Terminal(_) => continue,
        };
        merger.push(r.time, Rank::Attempt, kind);
    }
    merger.into_history()
}
