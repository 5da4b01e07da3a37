//! `lifecycle`: spec 06's concurrent lifecycle actors over one shared
//! durable state (catalog, lockfile, file tree), checked by D14
//! (`durasim_models::check`).
//!
//! One machine (`host`) holds the state on its disk. Per iteration the
//! supervisor releases new versions (a coin per item) and posts four
//! actors — install A, install B, remove A, update-all (A and B declare
//! distinct type ids) — which the host runs as concurrent tasks, each
//! starting after a drawn delay and serialising on the lock on the
//! lockfile ([`crate::systems::lifecycle`]). In the fault phase actors
//! crash at drawn writing steps and restart into the repair pass, the
//! lock is contended, the catalog's storage is busy, and the scheduler
//! crashes (process crash or power loss, tearing unsynced writes),
//! pauses and skews the host; a restarted host runs the repair pass
//! before anything else, and actors its previous incarnation had started
//! end `Crashed`. An iteration ends when its four actors have ended and
//! the host runs with its repair pass done; the supervisor then reads the
//! disk back. After the last iteration the faults heal and a sequential
//! reconcile (update-all) runs, then the disk is read back once more.
//!
//! # History translation
//! - each actor's outcome → `LifecycleActorEnded` (`Done`,
//!   `PartiallyApplied`, `Crashed`, `Collision`, `LockBudgetExhausted`,
//!   `StorageBusy`, `Failed`);
//! - each read-back → `LifecycleObserved`: catalog rows (indexed = state
//!   `installed`), the lockfile's entries or its parse error (absent:
//!   no entries), every file under the tree.
//!
//! Checked by the models: D14 (spec 06 invariants 1–5 after every
//! iteration, the documented transient tolerated only where reported and
//! only lockfile → catalog; strictly after reconcile). Checked here: the
//! catalog parses (a torn catalog is D14 too), and every iteration ends
//! within [`ITERATION_BOUND`] (L1).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models::{EventKind, History, LifecycleOp, LifecycleOutcome};
use durasim_sim::{choose_between, clock, ProcessCtx, ProcessId, Sim, Site};
use tokio::sync::Notify;

use super::history_check::findings;
use crate::harness::{Finding, RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::lifecycle::store::read_back;
use crate::systems::lifecycle::{
    self, ActorError, ActorOutcome, Applied, LifecycleBugs, LifecycleConfig, LockfileLock,
    Operation,
};
use crate::systems::record::{lock_recovering, Recorder};

/// Known bug (spec 06): the lockfile is rewritten in place.
pub const NON_ATOMIC_LOCKFILE_REPLACE: &str = "non-atomic-lockfile-replace";
/// Known bug (spec 06): crashed or failed installs leave orphan files.
pub const INSTALL_ORPHAN_FILES: &str = "install-orphan-files";

/// An iteration (or the reconcile) must end within this much simulated
/// time: the lock budget of each of four actors, with room for restarts.
pub const ITERATION_BOUND: Duration = Duration::from_secs(30);

/// Delay before an actor starts, µs.
const START_US: Site = Site::value("lifecycle.start_us");
/// Whether an item gets a new version this iteration (1) or not (0).
const RELEASE: Site = Site::value("lifecycle.release");
/// The supervisor re-checks at least this often while it waits (a paused
/// host resumes without telling it).
const RECHECK: Duration = Duration::from_millis(5);

/// The lifecycle scenario.
pub struct LifecycleScenario;

impl Scenario for LifecycleScenario {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    fn summary(&self) -> &'static str {
        "spec 06: install A, install B, remove A, update-all per iteration over catalog + JSON lockfile + file tree; actor crashes, lock contention, storage busy, power loss; reconcile; D14"
    }

    fn spec(&self) -> &'static str {
        "06"
    }

    fn default_size(&self) -> u32 {
        8
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        let config = LifecycleConfig {
            bugs: LifecycleBugs {
                non_atomic_lockfile_replace: params.bug(NON_ATOMIC_LOCKFILE_REPLACE),
                install_orphan_files: params.bug(INSTALL_ORPHAN_FILES),
            },
            ..LifecycleConfig::default()
        };
        Box::pin(async move {
            let run = drive(sim, params.size, config).await;
            ScenarioReport {
                findings: run.findings,
                operations: run.actor_runs,
            }
        })
    }
}

/// What [`drive`] returns.
#[derive(Debug)]
pub struct LifecycleRun {
    /// Every violation found (models and scenario checks).
    pub findings: Vec<Finding>,
    /// The recorded history.
    pub history: History,
    /// Actor runs (the reconcile included).
    pub actor_runs: u64,
    /// The host's process id.
    pub host: ProcessId,
}

/// One posted actor.
#[derive(Debug, Clone)]
struct Posted {
    iteration: u32,
    actor: u32,
    op: LifecycleOp,
    operation: Operation,
    /// The host incarnation that started it.
    started_by: Option<u32>,
    ended: bool,
}

/// What the supervisor and the host share (outside the host: it survives
/// host crashes, like the commands a user or a service manager issued).
struct Journal {
    config: Arc<LifecycleConfig>,
    events: Recorder<EventKind>,
    posted: Mutex<Vec<Posted>>,
    /// The host incarnation whose startup repair pass is done.
    recovered: Mutex<u32>,
    /// Rung when actors are posted (the host waits on it).
    work_posted: Notify,
    /// Rung when an actor ends or the host finished its repair pass (the
    /// supervisor waits on it).
    progress: Notify,
}

impl Journal {
    fn ended(&self, index: usize, outcome: LifecycleOutcome) {
        let mut posted = lock_recovering(&self.posted);
        let Some(p) = posted.get_mut(index) else {
            return;
        };
        if p.ended {
            return;
        }
        p.ended = true;
        self.events.record(EventKind::LifecycleActorEnded {
            iteration: p.iteration,
            actor: p.actor,
            op: Box::new(p.op.clone()),
            outcome: Box::new(outcome),
        });
        drop(posted);
        self.progress.notify_one();
    }
}

/// Run the workload: `iterations` iterations, then reconcile; check.
pub async fn drive(sim: Sim, iterations: u32, config: LifecycleConfig) -> LifecycleRun {
    let journal = Arc::new(Journal {
        config: Arc::new(config),
        events: Recorder::new(),
        posted: Mutex::default(),
        recovered: Mutex::new(0),
        work_posted: Notify::new(),
        progress: Notify::new(),
    });
    let j = journal.clone();
    let host = sim.spawn_process("host", move |ctx| run_host(ctx, j.clone()));
    sim.start_faults(&[host]);
    let mut found = Vec::new();
    let mut latest: BTreeMap<String, u32> = journal
        .config
        .items
        .iter()
        .map(|i| (i.name.clone(), 0))
        .collect();
    let mut actor_runs = 0;
    for iteration in 0..iterations {
        for version in latest.values_mut() {
            *version += choose_between(&RELEASE, 0, 1) as u32;
            *version = (*version).max(1);
        }
        let ops = [
            (
                LifecycleOp::Install { item: "A".into() },
                Operation::Install {
                    item: "A".into(),
                    version: latest["A"],
                },
            ),
            (
                LifecycleOp::Install { item: "B".into() },
                Operation::Install {
                    item: "B".into(),
                    version: latest["B"],
                },
            ),
            (
                LifecycleOp::Remove { item: "A".into() },
                Operation::Remove { item: "A".into() },
            ),
            (
                LifecycleOp::UpdateAll,
                Operation::UpdateAll {
                    latest: latest.clone(),
                },
            ),
        ];
        actor_runs += ops.len() as u64;
        post(&journal, iteration, ops.to_vec());
        if !settle(&sim, &journal, host, &mut found).await {
            break;
        }
        observe(&sim, &journal, host, iteration, false, &mut found);
    }
    sim.heal();
    let reconcile = iterations;
    post(
        &journal,
        reconcile,
        vec![(LifecycleOp::Reconcile, Operation::UpdateAll { latest })],
    );
    actor_runs += 1;
    if settle(&sim, &journal, host, &mut found).await {
        observe(&sim, &journal, host, reconcile, true, &mut found);
    }
    // One stream, recorded in order: the history as is.
    let recorded = journal.events.snapshot();
    let mut history = History::with_capacity(recorded.len());
    for r in recorded {
        history.push(r.time.as_nanos(), r.event);
    }
    found.extend(findings(&history));
    LifecycleRun {
        findings: found,
        history,
        actor_runs,
        host,
    }
}

fn post(journal: &Journal, iteration: u32, ops: Vec<(LifecycleOp, Operation)>) {
    let mut posted = lock_recovering(&journal.posted);
    for (actor, (op, operation)) in ops.into_iter().enumerate() {
        posted.push(Posted {
            iteration,
            actor: actor as u32,
            op,
            operation,
            started_by: None,
            ended: false,
        });
    }
    drop(posted);
    journal.work_posted.notify_one();
}

/// Wait until every posted actor ended and the host runs with its repair
/// pass done; false (and an L1 finding) past [`ITERATION_BOUND`].
async fn settle(sim: &Sim, journal: &Journal, host: ProcessId, found: &mut Vec<Finding>) -> bool {
    let start = sim.now();
    loop {
        let all_ended = lock_recovering(&journal.posted).iter().all(|p| p.ended);
        let recovered = *lock_recovering(&journal.recovered) == sim.incarnation(host);
        if all_ended && recovered && sim.is_running(host) {
            return true;
        }
        if sim.now().since(start) > ITERATION_BOUND {
            found.push(Finding {
                invariant: "L1".into(),
                time: sim.now(),
                ops: Vec::new(),
                message: format!(
                    "lifecycle actors still running {} s after their iteration was posted",
                    ITERATION_BOUND.as_secs()
                ),
            });
            return false;
        }
        let progress = journal.progress.notified();
        futures_util::pin_mut!(progress);
        let recheck = sim.sleep(RECHECK);
        futures_util::pin_mut!(recheck);
        futures_util::future::select(progress, recheck).await;
    }
}

/// Read the host's disk back (at one instant: the host is idle) and
/// record it.
fn observe(
    sim: &Sim,
    journal: &Journal,
    host: ProcessId,
    iteration: u32,
    after_reconcile: bool,
    found: &mut Vec<Finding>,
) {
    let (state, catalog_error) = read_back(&sim.disk_files(host));
    if let Some(error) = catalog_error {
        found.push(Finding {
            invariant: "D14".into(),
            time: sim.now(),
            ops: Vec::new(),
            message: format!("after iteration {iteration}: the catalog does not parse: {error}"),
        });
    }
    journal.events.record(EventKind::LifecycleObserved {
        iteration,
        after_reconcile,
        state: Box::new(state),
    });
}

// ----- the host --------------------------------------------------------------

/// One host incarnation: repair, end what the previous incarnation left
/// running as crashed, then run posted actors as they come.
async fn run_host(ctx: ProcessCtx, journal: Arc<Journal>) {
    let incarnation = ctx.incarnation();
    let disk = ctx.disk();
    let lock = LockfileLock::new();
    let config = journal.config.clone();
    // The directories: retried, an I/O error here is transient (EIO).
    for _ in 0..64 {
        if lifecycle::init(&disk).await.is_ok() {
            break;
        }
    }
    // A malformed lockfile cannot be repaired; the read-back reports it.
    let _ = lifecycle::recover(u32::MAX, &disk, &lock, &config).await;
    let orphaned: Vec<usize> = lock_recovering(&journal.posted)
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.ended && p.started_by.is_some_and(|by| by < incarnation))
        .map(|(i, _)| i)
        .collect();
    for index in orphaned {
        journal.ended(index, LifecycleOutcome::Crashed);
    }
    *lock_recovering(&journal.recovered) = incarnation;
    journal.progress.notify_one();
    loop {
        let ready: Vec<(usize, Posted)> = {
            let mut posted = lock_recovering(&journal.posted);
            posted
                .iter_mut()
                .enumerate()
                .filter(|(_, p)| p.started_by.is_none())
                .map(|(i, p)| {
                    p.started_by = Some(incarnation);
                    (i, p.clone())
                })
                .collect()
        };
        for (index, posted) in ready {
            let (journal, disk, lock) = (journal.clone(), disk.clone(), lock.clone());
            let sequential = posted.op == LifecycleOp::Reconcile;
            durasim_sim::task::spawn(async move {
                if !sequential {
                    clock::sleep(Duration::from_micros(choose_between(&START_US, 0, 3000))).await;
                }
                let outcome = lifecycle::run_actor(
                    posted.actor,
                    &disk,
                    &lock,
                    &journal.config,
                    &posted.operation,
                )
                .await;
                journal.ended(index, outcome_of(outcome));
            });
        }
        journal.work_posted.notified().await;
    }
}

fn outcome_of(outcome: ActorOutcome) -> LifecycleOutcome {
    match outcome {
        ActorOutcome::Applied(Applied::Done) => LifecycleOutcome::Done,
        ActorOutcome::Applied(Applied::PartiallyApplied) => LifecycleOutcome::PartiallyApplied,
        ActorOutcome::Crashed => LifecycleOutcome::Crashed,
        ActorOutcome::Failed(ActorError::Collision { item, with }) => {
            LifecycleOutcome::Collision { item, with }
        }
        ActorOutcome::Failed(ActorError::LockBudgetExhausted) => {
            LifecycleOutcome::LockBudgetExhausted
        }
        ActorOutcome::Failed(ActorError::StorageBusy) => LifecycleOutcome::StorageBusy,
        ActorOutcome::Failed(error) => LifecycleOutcome::Failed {
            error: error.to_string(),
        },
    }
}
