//! The one-line test API:
//!
//! ```
//! durasim::check("toy-log").seeds(0..20).profile(durasim::Profile::Chaos).run();
//! ```
//!
//! A failing seed panics with the scenario, seed, profile, violated
//! invariant, its explanation and the exact command that replays it.
//! Environment overrides, like madsim's `MADSIM_TEST_SEED`:
//! `DURASIM_SEED` (one seed), `DURASIM_SEEDS` (`N`, `A..B` or `A..=B`),
//! `DURASIM_PROFILE` (a profile name), `DURASIM_JOBS` (threads).

use std::ops::Range;
use std::time::Duration;

use durasim_sim::Profile;

use crate::harness::{
    sweep, HarnessError, Registry, RunParams, SeedRange, SweepPlan, SweepSummary,
};
use crate::scenarios;

/// A pending check of one scenario over seeds; see the module docs.
#[derive(Clone)]
#[must_use = "a check does nothing until .run()"]
pub struct Check {
    registry: Registry,
    scenario: String,
    seeds: Range<u64>,
    profile: Profile,
    size: Option<u32>,
    bugs: Vec<String>,
    jobs: Option<usize>,
}

/// Start a check of `scenario` (seeds 0..100, `swarm` profile by default).
pub fn check(scenario: &str) -> Check {
    check_in(scenarios::registry(), scenario)
}

/// Start a check of `scenario` from `registry` (your own scenarios: see
/// [`Registry`]).
pub fn check_in(registry: Registry, scenario: &str) -> Check {
    Check {
        registry,
        scenario: scenario.to_string(),
        seeds: 0..100,
        profile: Profile::Swarm,
        size: None,
        bugs: Vec::new(),
        jobs: None,
    }
}

/// Why a check failed.
#[derive(Debug)]
pub enum CheckFailure {
    /// Bad input (unknown scenario, bad env override, …).
    Input(HarnessError),
    /// A seed failed; the message says how to replay it.
    Failed(String),
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckFailure::Input(e) => write!(f, "durasim check: {e}"),
            CheckFailure::Failed(m) => f.write_str(m),
        }
    }
}

fn env(var: &'static str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

impl Check {
    /// Run these seeds.
    pub fn seeds(mut self, seeds: Range<u64>) -> Check {
        self.seeds = seeds;
        self
    }

    /// Run only this seed.
    pub fn seed(mut self, seed: u64) -> Check {
        self.seeds = seed..seed.saturating_add(1);
        self
    }

    /// Under this fault profile.
    pub fn profile(mut self, profile: Profile) -> Check {
        self.profile = profile;
        self
    }

    /// With this workload size (default: the scenario's).
    pub fn size(mut self, size: u32) -> Check {
        self.size = Some(size);
        self
    }

    /// With known bug `name` switched on.
    pub fn bug(mut self, name: &str) -> Check {
        self.bugs.push(name.to_string());
        self
    }

    /// On this many threads (default: all cores).
    pub fn jobs(mut self, jobs: usize) -> Check {
        self.jobs = Some(jobs);
        self
    }

    /// Apply the environment overrides.
    fn with_env(mut self) -> Result<Check, HarnessError> {
        if let Some(v) = env("DURASIM_SEED") {
            let seed = v.trim().parse::<u64>().map_err(|e| HarnessError::BadEnv {
                var: "DURASIM_SEED",
                value: v.clone(),
                reason: e.to_string(),
            })?;
            self = self.seed(seed);
        } else if let Some(v) = env("DURASIM_SEEDS") {
            self.seeds = v.parse::<SeedRange>()?.0;
        }
        if let Some(v) = env("DURASIM_PROFILE") {
            self.profile = v.parse().map_err(|reason| HarnessError::BadEnv {
                var: "DURASIM_PROFILE",
                value: v.clone(),
                reason,
            })?;
        }
        if let Some(v) = env("DURASIM_JOBS") {
            let jobs = v
                .trim()
                .parse::<usize>()
                .map_err(|e| HarnessError::BadEnv {
                    var: "DURASIM_JOBS",
                    value: v.clone(),
                    reason: e.to_string(),
                })?;
            self.jobs = Some(jobs.max(1));
        }
        Ok(self)
    }

    /// Run, returning the summary or the first failure.
    pub fn try_run(self) -> Result<SweepSummary, CheckFailure> {
        let this = self.with_env().map_err(CheckFailure::Input)?;
        let scenario = this
            .registry
            .find(&this.scenario)
            .map_err(CheckFailure::Input)?;
        for bug in &this.bugs {
            this.registry
                .check_bug(scenario.name(), bug)
                .map_err(CheckFailure::Input)?;
        }
        let plan = SweepPlan {
            scenario,
            seeds: this.seeds.clone().collect(),
            profile: this.profile,
            params: RunParams {
                size: this.size.unwrap_or_else(|| scenario.default_size()),
                bugs: this.bugs.iter().cloned().collect(),
            },
            jobs: this.jobs.unwrap_or_else(default_jobs),
            watchdog: Duration::from_secs(60),
        };
        let (items, summary) = sweep(&plan, &|_| {});
        match items.iter().find(|i| !i.result.verdict.passed()) {
            None => Ok(summary),
            Some(item) => {
                let v = &item.result.verdict;
                let deterministic = match item.confirmed {
                    Some(false) => " — NONDETERMINISTIC: the re-run's digest differed",
                    _ => "",
                };
                Err(CheckFailure::Failed(format!(
                    "durasim: scenario `{}` failed at seed {} under profile `{}`\n  \
                     invariant: {}\n  explanation: {}\n  failing seeds: {} of {}{deterministic}\n  \
                     replay: {}\n  shrink: {}",
                    item.spec.scenario,
                    item.spec.seed,
                    item.spec.profile,
                    v.key(),
                    v.message(),
                    summary.failed(),
                    summary.seeds,
                    item.spec.replay_command(),
                    item.spec.command("shrink"),
                )))
            }
        }
    }

    /// Run, panicking with a replay command on the first failing seed.
    pub fn run(self) -> SweepSummary {
        match self.try_run() {
            Ok(summary) => summary,
            Err(failure) => panic!("{failure}"),
        }
    }
}

/// All cores (worker threads sit outside every simulation).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
