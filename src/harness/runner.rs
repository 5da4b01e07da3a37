//! Running one seed of one scenario.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use durasim_sim::{
    run, FaultConfig, Profile, RunConfig, RunStats, Tape, TraceDigest, TraceEvent, TraceMode,
};
use serde::{Deserialize, Serialize};

use super::scenario::{Finding, RunParams, Scenario};
use super::verdict::Verdict;

/// Everything that determines one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Scenario name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The named profile the faults came from.
    pub profile: Profile,
    /// The resolved fault configuration.
    pub faults: FaultConfig,
    /// Size and known bugs.
    pub params: RunParams,
    /// Replay this tape instead of drawing fresh decisions.
    pub tape: Option<Tape>,
    /// Keep the full trace or only its digest.
    pub trace: TraceMode,
}

impl RunSpec {
    /// A run of `scenario` at `seed` under `profile`, default size, no bugs.
    pub fn new(scenario: &dyn Scenario, seed: u64, profile: Profile) -> RunSpec {
        RunSpec {
            scenario: scenario.name().to_string(),
            seed,
            profile,
            faults: profile.resolve(seed),
            params: RunParams {
                size: scenario.default_size(),
                bugs: Default::default(),
            },
            tape: None,
            trace: TraceMode::DigestOnly,
        }
    }

    /// The command that reproduces this run from the shell.
    pub fn replay_command(&self) -> String {
        self.command("run")
    }

    /// The shell command running `durasim <verb>` (run, shrink) on this
    /// run's scenario, seed, profile, size and bugs.
    pub fn command(&self, verb: &str) -> String {
        let mut cmd = format!(
            "cargo run --release -- {verb} --scenario {} --seed {} --profile {} --size {}",
            self.scenario, self.seed, self.profile, self.params.size
        );
        for bug in &self.params.bugs {
            cmd.push_str(&format!(" --bug {bug}"));
        }
        cmd
    }
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// What the checker (or the runtime) said.
    pub verdict: Verdict,
    /// Every finding, in the checker's order.
    pub findings: Vec<Finding>,
    /// Digest of the run's trace.
    pub digest: TraceDigest,
    /// The tape of every decision drawn.
    pub tape: Tape,
    /// The trace, when kept.
    pub events: Option<Vec<TraceEvent>>,
    /// Counters.
    pub stats: RunStats,
    /// Operations the workload performed.
    pub operations: u64,
}

/// One line of a sweep's JSON output: serialisable, mergeable across shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedLine {
    /// Scenario name.
    pub scenario: String,
    /// Profile name.
    pub profile: Profile,
    /// The seed.
    pub seed: u64,
    /// Verdict key: "pass", an invariant id, or a failure class.
    pub verdict: String,
    /// Explanation, when not a pass.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Trace digest.
    pub digest: TraceDigest,
    /// Faults injected, per kind.
    pub faults: std::collections::BTreeMap<String, u64>,
    /// Simulated nanoseconds.
    pub sim_nanos: u64,
    /// Trace events.
    pub events: u64,
    /// Workload operations.
    pub operations: u64,
}

impl SeedResult {
    /// The JSON-lines record of this result.
    pub fn line(&self, spec: &RunSpec) -> SeedLine {
        SeedLine {
            scenario: spec.scenario.clone(),
            profile: spec.profile,
            seed: self.seed,
            verdict: self.verdict.key().to_string(),
            message: self.verdict.message().to_string(),
            digest: self.digest,
            faults: self.stats.faults_by_kind.clone(),
            sim_nanos: self.stats.sim_nanos,
            events: self.stats.events,
            operations: self.operations,
        }
    }
}

/// Run `spec` on `scenario`. `abort` is the wall-clock watchdog's flag.
pub fn run_seed(
    scenario: &dyn Scenario,
    spec: &RunSpec,
    abort: Option<Arc<AtomicBool>>,
) -> SeedResult {
    let mut config = RunConfig::new(spec.seed)
        .faults(spec.faults.clone())
        .trace(spec.trace)
        .disk(scenario.disk());
    config.tape = spec.tape.clone();
    config.time_limit = scenario.time_limit();
    config.abort = abort;
    let params = spec.params.clone();
    let outcome = run(config, |sim| scenario.run(sim, &params));
    let (verdict, findings, operations) = match outcome.result {
        Ok(report) => (
            Verdict::from_findings(&report.findings),
            report.findings,
            report.operations,
        ),
        Err(failure) => (Verdict::from_failure(&failure), Vec::new(), 0),
    };
    SeedResult {
        seed: spec.seed,
        verdict,
        findings,
        digest: outcome.digest,
        tape: outcome.tape,
        events: outcome.events,
        stats: outcome.stats,
        operations,
    }
}
