//! Sweeps: many seeds across threads, with a summary.
//!
//! Worker threads run outside any simulation (each run builds its own
//! runtime on the worker's thread) and pull seeds from a shared counter, so
//! a result never depends on which thread ran it. Every failing seed is
//! run a second time and its digest compared before it is reported. A
//! watchdog thread stops runs that exceed the wall-clock limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durasim_sim::Profile;
use serde::{Deserialize, Serialize};

use super::runner::{run_seed, RunSpec, SeedLine, SeedResult};
use super::scenario::{RunParams, Scenario};

/// What to sweep.
#[derive(Clone)]
pub struct SweepPlan {
    /// The scenario.
    pub scenario: &'static dyn Scenario,
    /// Seeds to run, in order.
    pub seeds: Vec<u64>,
    /// Fault profile.
    pub profile: Profile,
    /// Size and bugs.
    pub params: RunParams,
    /// Worker threads.
    pub jobs: usize,
    /// Wall-clock limit per run before the watchdog calls it a livelock.
    pub watchdog: Duration,
}

/// One seed's outcome inside a sweep.
#[derive(Debug, Clone)]
pub struct SweepItem {
    /// The spec that ran.
    pub spec: RunSpec,
    /// What it gave.
    pub result: SeedResult,
    /// For failures: whether a second run gave the same digest.
    pub confirmed: Option<bool>,
}

/// Aggregated figures of one or more sweeps (merges across shards).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that failed, per verdict key (invariant id or failure class).
    pub failures: BTreeMap<String, u64>,
    /// First failing seed per verdict key.
    pub first_failing_seed: BTreeMap<String, u64>,
    /// Failures whose digest differed on the confirming re-run.
    pub nondeterministic: u64,
    /// Faults injected, per kind.
    pub faults: BTreeMap<String, u64>,
    /// Simulated nanoseconds, summed over seeds.
    pub sim_nanos: u64,
    /// Trace events, summed.
    pub events: u64,
    /// Workload operations, summed.
    pub operations: u64,
    /// Wall-clock seconds the sweep took.
    pub wall_secs: f64,
}

impl SweepSummary {
    /// Fold one seed's line in.
    pub fn add(&mut self, line: &SeedLine) {
        self.seeds += 1;
        if line.verdict != "pass" {
            *self.failures.entry(line.verdict.clone()).or_default() += 1;
            let first = self
                .first_failing_seed
                .entry(line.verdict.clone())
                .or_insert(line.seed);
            *first = (*first).min(line.seed);
        }
        for (kind, n) in &line.faults {
            *self.faults.entry(kind.clone()).or_default() += n;
        }
        self.sim_nanos += line.sim_nanos;
        self.events += line.events;
        self.operations += line.operations;
    }

    /// Merge another summary (another shard, another scenario).
    pub fn merge(&mut self, other: &SweepSummary) {
        self.seeds += other.seeds;
        for (k, n) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += n;
        }
        for (k, &s) in &other.first_failing_seed {
            let first = self.first_failing_seed.entry(k.clone()).or_insert(s);
            *first = (*first).min(s);
        }
        self.nondeterministic += other.nondeterministic;
        for (k, n) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += n;
        }
        self.sim_nanos += other.sim_nanos;
        self.events += other.events;
        self.operations += other.operations;
        self.wall_secs += other.wall_secs;
    }

    /// Seeds that failed, all kinds.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The summary table.
    pub fn table(&self, title: &str) -> String {
        let wall = self.wall_secs.max(1e-9);
        let sim_secs = self.sim_nanos as f64 / 1e9;
        let mut out = String::new();
        out.push_str(&format!("{title}\n"));
        out.push_str(&format!("  seeds run              {:>12}\n", self.seeds));
        out.push_str(&format!("  seeds failed           {:>12}\n", self.failed()));
        for (key, n) in &self.failures {
            let first = self.first_failing_seed.get(key).copied().unwrap_or(0);
            out.push_str(&format!("    {key:<20} {n:>12}   (first seed {first})\n"));
        }
        if self.nondeterministic > 0 {
            out.push_str(&format!(
                "  NONDETERMINISTIC       {:>12}   (digest differed on re-run)\n",
                self.nondeterministic
            ));
        }
        out.push_str("  faults injected\n");
        if self.faults.is_empty() {
            out.push_str("    (none)\n");
        }
        for (kind, n) in &self.faults {
            out.push_str(&format!("    {kind:<20} {n:>12}\n"));
        }
        out.push_str(&format!("  simulated time         {sim_secs:>12.1} s\n"));
        out.push_str(&format!(
            "  wall time              {:>12.2} s\n",
            self.wall_secs
        ));
        out.push_str(&format!(
            "  simulated s / wall s   {:>12.0}\n",
            sim_secs / wall
        ));
        out.push_str(&format!(
            "  seeds / s              {:>12.0}\n",
            self.seeds as f64 / wall
        ));
        out.push_str(&format!(
            "  events / s             {:>12.0}\n",
            self.events as f64 / wall
        ));
        out
    }
}

/// Run `plan`, calling `on_item` (from worker threads, one call at a time)
/// for every seed as it completes. Returns the failing seeds' items sorted
/// by seed, and the summary of all of them.
///
/// A passing seed is folded into the summary and dropped as soon as it
/// completes, so a sweep's memory does not grow with its number of seeds
/// (each item holds its run's whole tape).
pub fn sweep(
    plan: &SweepPlan,
    on_item: &(dyn Fn(&SweepItem) + Sync),
) -> (Vec<SweepItem>, SweepSummary) {
    let next = AtomicU64::new(0);
    let collected: Mutex<(Vec<SweepItem>, SweepSummary)> = Mutex::default();
    let jobs = plan.jobs.max(1);
    let watchdog = Watchdog::new(jobs, plan.watchdog);
    // Wall-clock figures and worker threads live outside every simulation.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| watchdog.watch(&done));
        let workers: Vec<_> = (0..jobs)
            .map(|worker| {
                let (next, collected, watchdog) = (&next, &collected, &watchdog);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = plan.seeds.get(i) else {
                        break;
                    };
                    let item = run_one(plan, seed, watchdog, worker);
                    // One lock both orders the `on_item` calls and guards
                    // the results.
                    let mut collected = collected.lock().unwrap_or_else(|p| p.into_inner());
                    on_item(&item);
                    let (failures, summary) = &mut *collected;
                    summary.add(&item.result.line(&item.spec));
                    if item.confirmed == Some(false) {
                        summary.nondeterministic += 1;
                    }
                    if !item.result.verdict.passed() {
                        failures.push(item);
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        done.store(true, Ordering::Relaxed);
    });
    let (mut failures, mut summary) = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by_key(|item| item.spec.seed);
    summary.wall_secs = started.elapsed().as_secs_f64();
    (failures, summary)
}

fn run_one(plan: &SweepPlan, seed: u64, watchdog: &Watchdog, worker: usize) -> SweepItem {
    let mut spec = RunSpec::new(plan.scenario, seed, plan.profile);
    spec.params = plan.params.clone();
    let result = watchdog.guard(worker, |abort| run_seed(plan.scenario, &spec, Some(abort)));
    let confirmed = (!result.verdict.passed()).then(|| {
        let again = watchdog.guard(worker, |abort| run_seed(plan.scenario, &spec, Some(abort)));
        again.digest == result.digest && again.verdict == result.verdict
    });
    SweepItem {
        spec,
        result,
        confirmed,
    }
}

/// A run in progress on one worker: when it started, and its abort flag.
type Watched = Option<(Instant, Arc<AtomicBool>)>;

/// Per-worker wall-clock deadlines, checked by one watchdog thread.
struct Watchdog {
    limit: Duration,
    slots: Vec<Mutex<Watched>>,
}

impl Watchdog {
    fn new(workers: usize, limit: Duration) -> Watchdog {
        Watchdog {
            limit,
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Run `f` with an abort flag the watchdog raises after the limit.
    fn guard<R>(&self, worker: usize, f: impl FnOnce(Arc<AtomicBool>) -> R) -> R {
        let flag = Arc::new(AtomicBool::new(false));
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        if let Some(slot) = self.slots.get(worker) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, flag.clone()));
        }
        let out = f(flag);
        if let Some(slot) = self.slots.get(worker) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        out
    }

    fn watch(&self, done: &AtomicBool) {
        while !done.load(Ordering::Relaxed) {
            // The watchdog is a wall-clock timer by design; it never runs
            // inside a simulation.
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            for slot in &self.slots {
                if let Some((start, flag)) = &*slot.lock().unwrap_or_else(|p| p.into_inner()) {
                    if now.duration_since(*start) > self.limit {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
